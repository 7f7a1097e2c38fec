/* tensorwire remote references: tw_remote and RRefs, as torch's
 * rpc.remote() and RRef (docs/rref.md has the protocol). */
#ifndef TENSORWIRE_RREF_H
#define TENSORWIRE_RREF_H

#include <stdbool.h>
#include <stdint.h>
#include <tensorwire/agent.h>
#include <tensorwire/future.h>
#include <tensorwire/status.h>
#include <tensorwire/value.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A handle on a remote (or local) value: a user RRef, or on its owner an
 * owner RRef. Reference counted; any thread. After tw_agent_shutdown only
 * tw_rref_release may be called on it (it then frees the handle and tells
 * nobody). */
typedef struct tw_rref tw_rref;

/*
 * Run fn (a plain handler, a function by schema or an aten:: builtin) on
 * worker to, keep its result there, and return at once with *out, a
 * handle holding one reference (tw_rref_release it). When to is this
 * worker, the owner RRef is created here and the function runs as a call
 * to self, with no network (torch's pyRemoteBuiltin). Otherwise *out is a
 * user RRef, pending until the owner confirms it (REMOTE_RET):
 * timeout_ms bounds that creation (negative = the agent's default, 0 =
 * none). args and kwargs as tw_rpc_async, copied before return.
 * Immediate failures as tw_rpc_async (TW_ENOENT, TW_EINVAL also before
 * tw_agent_init returned, TW_ENOSPC, TW_ESHUTDOWN, TW_ENOMEM; TW_EBUSY
 * when this worker owns RREF_MAX_OWNED values), each with a reason; errors
 * of the function and of the creation come out of tw_rref_to_here.
 */
tw_status tw_remote(tw_agent *a, const char *to, const char *fn,
		    const tw_value *args, const tw_value *kwargs,
		    int64_t timeout_ms, tw_rref **out);
/* tw_remote addressed by worker id. */
tw_status tw_remote_id(tw_agent *a, uint32_t to, const char *fn,
		       const tw_value *args, const tw_value *kwargs,
		       int64_t timeout_ms, tw_rref **out);

/*
 * The value, copied to the caller: *out gets it (owned). On the owner,
 * once the function returned (waits for it); on a user, fetched from the
 * owner (RREF_FETCH_CALL), sent at once, also while the creation is
 * pending (it reaches the owner after the REMOTE_CALL). timeout_ms as
 * tw_rpc_sync's: the fetch's deadline, or on the owner this wait's. A
 * fetch the owner refuses as unknown while the creation is pending waits
 * for the creation's outcome (and is sent once more if it is confirmed:
 * it overtook its REMOTE_CALL). Errors: the
 * function's own (kind, message and origin worker, in err if not NULL,
 * as tw_rpc_sync); a creation that timed out: TW_ETIMEDOUT with torch's
 * message (TW_RREF_CREATION_TIMEOUT_MSG); the owner gone:
 * TW_EUNREACHABLE; TW_ETIMEDOUT when this wait passes timeout_ms. Not
 * from a handler on a run loop (TW_EINVAL): use tw_rref_to_here_async.
 * An embedded owner thread polls its loop while it waits.
 */
tw_status tw_rref_to_here(tw_rref *r, int64_t timeout_ms, tw_value *out,
			  tw_value *err);
/* The same as a future (its value, or its error); any thread, handlers
 * too. On the owner timeout_ms does not apply (the future completes when
 * the function returns). */
tw_status tw_rref_to_here_async(tw_rref *r, int64_t timeout_ms,
				tw_future **out);

/* torch's RRef creation timeout message, reported by to_here. */
#define TW_RREF_CREATION_TIMEOUT_MSG                                           \
	"RRef creation via rpc.remote() timed out, and it is possible that "   \
	"the RRef on the owner node does not exist."

/*
 * Owner only: the value itself, borrowed while r is held (*out points into
 * the owner's entry). TW_EINVAL on a user ("RRef ... is not owned by
 * worker 'A': call to_here"); TW_EBUSY while the function still runs;
 * the function's error kind (and reason) if it failed.
 */
tw_status tw_rref_local_value(tw_rref *r, const tw_value **out);

/* The owner's worker info, its name (valid while the agent lives). */
tw_status tw_rref_owner(const tw_rref *r, tw_worker_info *out);
const char *tw_rref_owner_name(const tw_rref *r);
/* Whether this handle is the owner's. */
bool tw_rref_is_owner(const tw_rref *r);
/* Whether the owner knows this user (always true on the owner). */
bool tw_rref_confirmed_by_owner(const tw_rref *r);
/* The ids as on the wire (owner, RRef id, this handle's fork id). */
tw_rref_id tw_rref_get_id(const tw_rref *r);

/* References: retain returns r. The last release of a user sends the
 * owner a user delete (once confirmed); of an owner handle, drops its
 * self fork. The owner frees the value when no user and no fork in flight
 * remains. NULL is accepted by release. */
tw_rref *tw_rref_retain(tw_rref *r);
void tw_rref_release(tw_rref *r);

/*
 * Proxies, as torch's rref.rpc_sync().f(...), rref.rpc_async().f(...) and
 * rref.remote().f(...): run fn on the RRef's owner with the RRef's value
 * as its first positional argument, then args (a tuple or list; NULL =
 * none) and kwargs (a dict; NULL = none). The owner waits for the value
 * first; an error of the RRef's creation is the call's error, the
 * function's errors come back as from tw_rpc_async. They go through the
 * function "tw::rref_call" every agent serves, which answers only the
 * holder of the RRef (TW_EINVAL otherwise). r is held until the call is
 * answered (tw_rref_remote: until the new RRef is confirmed), so a
 * release right after the call cannot free the value before the owner
 * read it. A user not yet confirmed waits for its confirmation before
 * the call leaves. Immediate failures as tw_rpc_async's.
 */
tw_status tw_rref_rpc_async(tw_rref *r, const char *fn, const tw_value *args,
			    const tw_value *kwargs, int64_t timeout_ms,
			    tw_future **out);
/* tw_rref_rpc_async then wait, as tw_rpc_sync (the same result, err and
 * explanation; not from a handler on a run loop). */
tw_status tw_rref_rpc_sync(tw_rref *r, const char *fn, const tw_value *args,
			   const tw_value *kwargs, int64_t timeout_ms,
			   tw_value *result, tw_value *err);
/* A new RRef, owned by r's owner, of fn(value of r, *args, **kwargs). */
tw_status tw_rref_remote(tw_rref *r, const char *fn, const tw_value *args,
			 const tw_value *kwargs, int64_t timeout_ms,
			 tw_rref **out);

/*
 * RRefs are values (torch: an RRef passed as an argument or returned).
 * tw_rref_value makes *out an RREF value holding a new reference on r:
 * put it anywhere in args, kwargs or a handler's result (containers own
 * it; tw_value_destroy releases it, tw_value_clone takes another). Each
 * send forks r for the receiver, who gets a user RRef of its own (or, on
 * the owner, its own handle); r's value is not freed while a fork is in
 * flight (G2). TW_EINVAL for NULL.
 */
tw_status tw_rref_value(tw_rref *r, tw_value *out);
/*
 * The RRef an RREF value names, as a new reference (release it): in a
 * handler, from its arguments (valid while the handler runs: take the
 * reference to keep it); from a call's result or a fetched value; from
 * tw_rref_value. A received RRef is pending until its owner confirms the
 * fork (tw_rref_confirmed_by_owner); to_here and the proxies wait for it.
 * TW_EINVAL when v is not an RREF value, or names no handle of this
 * worker: a bare id (tw_value_rref), or a fork the receiver could not
 * take (an RRef its owner no longer has).
 */
tw_status tw_rref_from_value(const tw_value *v, tw_rref **out);

/* The function behind the proxies (args: RRef, fn, args, kwargs). */
#define TW_RREF_CALL_FN "tw::rref_call"

/* RRef counters of the agent (snapshot; any thread). */
struct tw_rref_stats {
	uint64_t owned;         /* values this worker owns */
	uint64_t owner_users;   /* user forks recorded over all owned values
			       * (not those in flight) */
	uint64_t forks_pending; /* forks this worker sent (RRefs in values)
				 * whose receivers have not accepted yet */
	uint64_t users;         /* user handles live on this worker */
	uint64_t pending_users; /* of them, not confirmed yet */
	uint64_t deletes_sent, deletes_received;
	uint64_t refused; /* RRef frames with unknown or foreign ids */
	uint64_t waiting; /* fetches and proxy calls waiting, on this
			   * owner, for values not computed yet */
	uint64_t dead_users_dropped; /* user forks dropped from owned values
				      * because their holder died */
};
/* All zero for a NULL agent. */
void tw_agent_rref_stats(const tw_agent *a, struct tw_rref_stats *out);
/* Owner side, one value: its user forks recorded, the forks the owner sent
 * of it still in flight (users too, kept apart until their receivers
 * accept), and whether an owner handle is alive. TW_ENOENT (with a reason) when
 * this worker owns no RRef rref (never, or freed); TW_EINVAL for NULL
 * arguments. Any thread. */
tw_status tw_agent_rref_value_users(const tw_agent *a, tw_guid rref,
				    uint32_t *users, uint32_t *forks_pending,
				    bool *self_fork);

#ifdef __cplusplus
}
#endif
#endif
