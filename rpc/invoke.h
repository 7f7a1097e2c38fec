/* Internal: running registered functions, plain or by schema (binding and
 * overload matching), the builtin functions every agent serves, and the
 * function list. */
#ifndef TW_RPC_INVOKE_H
#define TW_RPC_INVOKE_H

#include <stddef.h>

#include <tensorwire/agent.h>
#include <tensorwire/schema.h>
#include <tensorwire/status.h>
#include <tensorwire/value.h>

#include "rpc/registry.h"

/* What a schema'd registry entry carries in ext. */
struct reg_overload {
	tw_schema *schema;
	tw_schema_handler_fn fn;
	void *arg;
};

/* Most overloads one name may have (torch's largest aten op has ~30). */
#define REG_MAX_OVERLOADS 64

/*
 * Run entry e (as registry_find returned it) on a call: a plain entry runs
 * its handler with args and kwargs; a schema'd one binds them to its
 * overloads (tw_schema_bind for one, tw_schema_match for several) and runs
 * the chosen overload's handler with the bound values. A binding failure
 * is TW_ETYPE (TW_EINVAL for args that are not a tuple or list, kwargs
 * not a dict) with an error value in *result carrying the binding's
 * explanation (torch's message) as its message.
 * No allocation on the way unless binding converts a list. ctx may be
 * NULL (tests).
 */
tw_status reg_invoke(const struct reg_entry *e, tw_call_ctx *ctx,
		     const tw_value *args, const tw_value *kwargs,
		     tw_value *result);

/* The entry point every schema'd table entry has as fn (arg = the entry):
 * reg_invoke. So every dispatch path (loop, executor, calls to self)
 * binds. */
tw_status reg_schema_dispatch(tw_call_ctx *ctx, const tw_value *args,
			      const tw_value *kwargs, tw_value *result,
			      void *arg);

/* Parse schema and add it as an overload (see tw_agent_register_schema);
 * failures record their reason (tw_errmsg). */
tw_status reg_add_schema(struct registry *r, const char *schema,
			 tw_schema_handler_fn fn, void *arg, unsigned flags);

/* The list of tw_agent_list_functions. */
tw_status reg_list_functions(struct registry *r, tw_value *out);

/* Register the aten:: builtins (rpc/aten.c). */
tw_status aten_register_builtins(struct registry *r);

/* Everything every agent serves: the aten:: builtins and
 * tw::list_functions. Called by tw_agent_init before the user's setup. */
tw_status reg_register_builtins(struct registry *r);

#endif
