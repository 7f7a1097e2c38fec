/* Running registered functions: plain handlers, or schema'd overloads
 * whose arguments are bound (and the overload chosen) here, on whatever
 * thread serves the call. Also the function list and its builtin. */
#include "rpc/invoke.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/err.h"
#include "rpc/agent_impl.h"

tw_status reg_invoke(const struct reg_entry *e, tw_call_ctx *ctx,
		     const tw_value *args, const tw_value *kwargs,
		     tw_value *result)
{
	if (e->ext == NULL)
		return e->fn(ctx, args, kwargs, result, e->arg);

	const tw_schema *schemas[REG_MAX_OVERLOADS];
	const struct reg_overload *ovs[REG_MAX_OVERLOADS];
	size_t n = 0;
	/* Acquire pairs with the release append in registry_add_overload. */
	for (const struct reg_entry *x = e; x != NULL && n < REG_MAX_OVERLOADS;
	     x = atomic_load_explicit(&((struct reg_entry *)x)->next_overload,
				      memory_order_acquire)) {
		ovs[n] = x->ext;
		schemas[n] = ovs[n]->schema;
		n++;
	}
	tw_value bound[TW_SCHEMA_MAX_ARGS];
	size_t chosen = 0;
	tw_status st;
	if (n == 1)
		st = tw_schema_bind(schemas[0], args, kwargs, bound);
	else
		st = tw_schema_match(schemas, n, args, kwargs, &chosen, bound);
	if (st != TW_OK) {
		/* The binding's explanation (torch's message) becomes the
		 * remote error's: read before anything else may record one
		 * (tw_value_error copies it before it could fail). */
		const char *why = tw_errmsg(st);
		tw_value_destroy(result);
		tw_value_error(result, st, 0, why);
		return st;
	}
	const struct reg_overload *ov = ovs[chosen];
	size_t nargs = tw_schema_nargs(ov->schema);
	st = ov->fn(ctx, bound, (uint32_t)nargs, result, ov->arg);
	tw_schema_bound_release(bound, nargs);
	return st;
}

tw_status reg_schema_dispatch(tw_call_ctx *ctx, const tw_value *args,
			      const tw_value *kwargs, tw_value *result,
			      void *arg)
{
	return reg_invoke(arg, ctx, args, kwargs, result);
}

static void overload_free(void *p)
{
	struct reg_overload *ov = p;
	if (ov == NULL)
		return;
	tw_schema_free(ov->schema);
	free(ov);
}

tw_status reg_add_schema(struct registry *r, const char *schema,
			 tw_schema_handler_fn fn, void *arg, unsigned flags)
{
	if (r == NULL || schema == NULL || fn == NULL)
		return tw_fail_static(TW_EINVAL, "a schema and a handler are "
						 "required");
	struct reg_overload *ov = calloc(1, sizeof(*ov));
	if (ov == NULL)
		return tw_fail_static(TW_ENOMEM, "out of memory registering "
						 "a function");
	/* A schema that does not parse: the parser's message, with its
	 * position, is the reason. */
	tw_status st = tw_schema_parse(schema, &ov->schema);
	if (st != TW_OK) {
		free(ov);
		return st;
	}
	ov->fn = fn;
	ov->arg = arg;
	/* Refusals (taken, flags) explain themselves (registry.c). */
	st = registry_add_overload(r, tw_schema_name(ov->schema),
				   tw_schema_overload(ov->schema),
				   reg_schema_dispatch, ov, overload_free,
				   flags);
	if (st != TW_OK)
		overload_free(ov);
	return st;
}

/* ---- the list of functions ---- */

struct fn_item {
	char *qname;
	const struct reg_entry *e;
};

static int item_cmp(const void *x, const void *y)
{
	const struct fn_item *a = x, *b = y;
	return strcmp(a->qname, b->qname);
}

tw_status reg_list_functions(struct registry *r, tw_value *out)
{
	const struct reg_entry **es;
	size_t n;
	tw_status st = registry_snapshot(r, &es, &n);
	if (st != TW_OK)
		return st;
	struct fn_item *items = calloc(n ? n : 1, sizeof(*items));
	tw_value list = tw_value_none();
	if (items == NULL) {
		st = TW_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct reg_entry *e = es[i];
		const char *ovn = e->overload != NULL ? e->overload : "";
		size_t len = e->name_len + 1 + strlen(ovn) + 1;
		items[i].e = e;
		items[i].qname = malloc(len);
		if (items[i].qname == NULL) {
			st = TW_ENOMEM;
			goto out;
		}
		snprintf(items[i].qname, len, "%s%s%s", e->name,
			 ovn[0] ? "." : "", ovn);
	}
	qsort(items, n, sizeof(*items), item_cmp);
	st = tw_value_list(&list, (uint32_t)n);
	for (size_t i = 0; st == TW_OK && i < n; i++) {
		const struct reg_entry *e = items[i].e;
		tw_value t, name, sch;
		st = tw_value_tuple(&t, 3);
		if (st != TW_OK)
			break;
		st = tw_value_cstring(&name, items[i].qname);
		if (st == TW_OK) {
			tw_value_set_item(&t, 0, name);
			if (e->ext != NULL) {
				const tw_schema *s =
					((const struct reg_overload *)e->ext)
						->schema;
				size_t need = tw_schema_format(s, NULL, 0) + 1;
				char *txt = malloc(need);
				if (txt == NULL) {
					st = TW_ENOMEM;
				} else {
					tw_schema_format(s, txt, need);
					st = tw_value_cstring(&sch, txt);
					free(txt);
				}
			} else {
				st = tw_value_cstring(&sch, "");
			}
		}
		if (st == TW_OK) {
			tw_value_set_item(&t, 1, sch);
			tw_value_set_item(&t, 2,
					  tw_value_bool(e->flags &
							TW_FN_BLOCKING));
			tw_value_set_item(&list, (uint32_t)i, t);
		} else {
			tw_value_destroy(&t);
		}
	}
out:
	if (items != NULL)
		for (size_t i = 0; i < n; i++)
			free(items[i].qname);
	free(items);
	free(es);
	if (st != TW_OK) {
		tw_value_destroy(&list);
		return st == TW_ENOMEM
			       ? tw_fail_static(st, "out of memory "
						    "listing the functions")
			       : st;
	}
	*out = list;
	return TW_OK;
}

static tw_status b_list_functions(tw_call_ctx *ctx, const tw_value *bound,
				  uint32_t nbound, tw_value *result, void *arg)
{
	(void)ctx;
	(void)bound;
	(void)nbound;
	return reg_list_functions(arg, result);
}

tw_status reg_register_builtins(struct registry *r)
{
	tw_status st = aten_register_builtins(r);
	if (st != TW_OK)
		return st;
	return reg_add_schema(r, "tw::list_functions() -> Any",
			      b_list_functions, r, 0);
}
