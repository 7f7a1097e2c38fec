/* tensorwire status codes: the one error vocabulary of the library. */
#ifndef TENSORWIRE_STATUS_H
#define TENSORWIRE_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Every fallible function returns a tw_status; TW_OK is 0 and every failure
 * is positive. The same codes are the "kind" of a remote error (tw_error), so
 * a failure keeps its meaning when it crosses the wire. Values are part of
 * the wire format (docs/wire.md): never renumber, only append.
 */
typedef enum tw_status {
	TW_OK = 0,
	TW_EINVAL = 1,    /* caller passed an invalid argument */
	TW_ENOMEM = 2,    /* allocation failed */
	TW_ENOSPC = 3,    /* bounded resource full (pool, ring, queue) */
	TW_EOVERFLOW = 4, /* size arithmetic would overflow or exceed a limit */
	TW_EPROTO = 5,    /* malformed or unexpected data from the network */
	TW_EVERSION = 6,  /* peer speaks a wire version we do not */
	TW_ETIMEDOUT = 7, /* deadline passed */
	TW_EUNREACHABLE = 8, /* peer dead or not reachable */
	TW_ESHUTDOWN = 9,    /* agent shutting down */
	TW_ENOFUNC = 10,     /* no function by that name */
	TW_EBADARGS = 11,    /* arguments do not bind to the function */
	TW_ETYPE = 12,       /* type error (remote TypeError) */
	TW_EVALUE = 13,      /* value error (remote ValueError) */
	TW_ERUNTIME = 14,    /* runtime error (remote RuntimeError) */
	TW_EAUTH = 15,       /* authentication / authorisation failure */
	TW_EBUSY = 16,       /* resource still in use */
	TW_ENOTSUP = 17,     /* operation not supported */
	TW_EIO = 18,         /* operating-system I/O error */
	TW_ENOENT = 19,      /* no such object (worker, key, ...) */
	TW_STATUS_COUNT_     /* not a status: number of codes */
} tw_status;

/* Short stable name ("TW_EPROTO") of a status; "TW_E?" when unknown. */
const char *tw_status_name(tw_status s);

/* Human-readable description of a status; never NULL. */
const char *tw_strerror(tw_status s);

/*
 * Why a call failed: the one way an error explains itself.
 *
 * A status says what kind of failure; its explanation says which option,
 * argument, limit, worker or byte was at fault, in words:
 *   tw_agent_init:  "worker name 'w1' is already taken by rank 1"
 *   tw_rpc_async:   "no worker named 'w9' (world size 2)"
 *   tw_schema_bind: torch's message, "aten::add() Expected a value of ..."
 *   tw_msg_decode:  "header: total_len over limit"
 *
 * Every failure a tensorwire function returns is recorded for the calling
 * thread before the function returns: its explanation, or, when it has
 * nothing to add to its status, the fact that it has none.
 * tw_errmsg(st), called on that thread with the status it returned, gives
 * the explanation back, or tw_strerror(st) when there was none. When the
 * thread's last recorded failure has another status than st (an earlier
 * failure, or st is not what the last call returned), tw_errmsg gives
 * tw_strerror(st) too: never a stale reason of another kind, and never
 * NULL. TW_OK changes nothing, and tw_errmsg(TW_OK) is "success".
 *
 * Explanations are per thread (two threads failing at once each read
 * their own) and at most TW_ERRMSG_MAX - 1 bytes: a longer one (torch's
 * overload-matching message lists every schema tried) is cut, never
 * overflowed. Read it before the thread's next tensorwire call, which may
 * replace it; copy it to keep it. Reading it costs nothing; recording one
 * on a hot path's refusal (a full ring) costs two stores, no formatting.
 *
 * Failures that arrive later, through a future (a remote error, a
 * timeout, a peer's death), are values rather than returns: the future's
 * tw_error carries kind, message and origin worker (future.h). Functions
 * that report one as their status record its message: tw_future_wait,
 * tw_future_status, tw_agent_wait as it is; tw_rpc_sync as torch prints
 * a remote exception ("On worker 'w1' (id 1): <message>") when another
 * worker raised it; tw_future_wait_all with the failed future's index
 * ("future 2 (of 4) failed: <message>").
 */
#define TW_ERRMSG_MAX 4096

const char *tw_errmsg(tw_status st);

#ifdef __cplusplus
}
#endif
#endif
