/* tensorwire futures: the result of an asynchronous call, completed once by
 * whichever thread has it (usually a run loop), waited on or chained. */
#ifndef TENSORWIRE_FUTURE_H
#define TENSORWIRE_FUTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/message.h>
#include <tensorwire/status.h>
#include <tensorwire/value.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_future tw_future;

/*
 * Errors: every function here that fails records why (tw_errmsg,
 * status.h): TW_EINVAL names the NULL or bad argument, TW_EBUSY says the
 * future is already completed (completing) or still pending (reading).
 * Those that report a completed future's failure as their status
 * (tw_future_wait, tw_future_status, tw_future_take_value) record the
 * future's error message as its explanation, so that
 *   st = tw_future_wait(f, -1); if (st) puts(tw_errmsg(st));
 * prints why the call failed. The structured error (kind, origin worker,
 * message) stays readable with tw_future_error.
 *
 * Lifetime: a future is reference counted. The creator holds one reference;
 * every tw_future_then registration and every pending completer holds its
 * own internally. Release yours with tw_future_release when done reading.
 *
 * Completion happens exactly once, through one of tw_future_complete,
 * tw_future_complete_msg or tw_future_fail; later attempts return
 * TW_EBUSY and leave the future unchanged. Completion is a single atomic
 * state change: readers that see it done see the value.
 */
tw_status tw_future_create(tw_future **out);
tw_future *tw_future_retain(tw_future *f);
void tw_future_release(tw_future *f);

/* Complete with a value, which the future takes (moved; *v becomes NONE). */
tw_status tw_future_complete(tw_future *f, tw_value *v);

/* Complete with a decoded message's payload without copying: the future
 * takes over the message (its receive buffer stays alive with it) and *m is
 * left empty. An EXCEPTION message completes the future as failed. */
tw_status tw_future_complete_msg(tw_future *f, tw_in_msg *m);

/* Complete as failed: kind (not TW_OK; TW_EINVAL otherwise), origin
 * worker, message (copied). */
tw_status tw_future_fail(tw_future *f, tw_status kind, uint32_t origin,
			 const char *msg);

/* Complete as failed with an error value (moved). */
tw_status tw_future_fail_value(tw_future *f, tw_value *err);

/* True once completed (acquire: the value is visible). */
bool tw_future_done(const tw_future *f);

/*
 * Wait until completed or timeout_ms passes (< 0 waits forever, 0 polls).
 * Spins briefly, then sleeps on a futex. Returns the future's status
 * (TW_OK or its error kind, with its message as the explanation) once
 * completed, TW_ETIMEDOUT if the wait ran out first (the future itself is
 * unaffected). An embedded agent's owner waits with tw_agent_wait.
 */
tw_status tw_future_wait(tw_future *f, int64_t timeout_ms);

/* After completion: TW_OK, or the error's kind (its message explains it).
 * TW_EBUSY while pending (tw_status has no EAGAIN). */
tw_status tw_future_status(const tw_future *f);

/* After successful completion: the value, borrowed from the future (valid
 * while you hold a reference). NULL while pending or failed. */
const tw_value *tw_future_value(const tw_future *f);

/* After failure: the error (kind, origin worker, message). NULL otherwise. */
const tw_error *tw_future_error(const tw_future *f);

/* An owned copy of the value (tensors shared by reference). *out is NONE
 * unless TW_OK; TW_EBUSY while pending, the error's kind after failure. */
tw_status tw_future_take_value(const tw_future *f, tw_value *out);

/*
 * Run cb(f, arg) once f completes: on the completing thread (for RPC
 * results, the run loop — so cb must not block), or at once on the calling
 * thread if f is already done. The first callback of a future needs no
 * allocation; more allocate a small node (TW_ENOMEM possible).
 */
typedef void (*tw_future_cb)(tw_future *f, void *arg);
tw_status tw_future_then(tw_future *f, tw_future_cb cb, void *arg);

/*
 * Chaining: a new future completed with fn's result when f completes.
 * fn(src, arg, out) runs as a callback; returning TW_OK completes the new
 * future with *out, an error status fails it with that kind (and with *out
 * when fn set it to an error value of that kind, as handlers do). If src
 * failed, fn is not called and the new future fails with a copy of src's
 * error.
 */
typedef tw_status (*tw_future_map_fn)(tw_future *src, void *arg, tw_value *out);
tw_status tw_future_chain(tw_future *f, tw_future_map_fn fn, void *arg,
			  tw_future **out);

/* ---- groups (torch.futures.wait_all, collect_all) ---- */

/*
 * Wait until every one of futs[0 .. n) has completed, or until one fails:
 * as torch.futures.wait_all, the first failure (the first to fail, in
 * time) returns at once, without waiting for the rest. Returns TW_OK when
 * all succeeded (read the values with tw_future_value); the failed
 * future's kind, with tw_errmsg giving its index and message ("future 2
 * (of 4) failed: <message>"); TW_ETIMEDOUT when timeout_ms passes first
 * (< 0 waits forever, 0 only looks), saying how many are still pending;
 * TW_EINVAL for a NULL array or entry; TW_ENOMEM. The futures are not
 * consumed (release them as usual) and are unaffected by the wait's end.
 * n = 0 is TW_OK at once. torch returns the list of values; here they
 * stay in the futures. Any thread, but an embedded agent's owner must use
 * tw_agent_wait_all (agent.h): nothing would poll its loop. Watching the
 * futures costs one allocation (none when all are done already) and a
 * callback on each (tw_future_then), which stays until its future
 * completes: after an early return, the group is freed once the last
 * input completes (an input never completed keeps it, as it keeps every
 * callback registered on it).
 */
tw_status tw_future_wait_all(tw_future *const *futs, size_t n,
			     int64_t timeout_ms);

/*
 * A new future (*out, yours to release) completed once every one of
 * futs[0 .. n) has: its value is a list of n, item i a copy of futs[i]'s
 * value (tensors shared by reference), or, for an input that failed, an
 * error value (TW_KIND_ERROR: kind, origin, message) — torch's
 * collect_all gives the list of futures, each to be asked for its value
 * or error; here the list holds them directly. *out never fails: a copy
 * that runs out of memory becomes a TW_ENOMEM error value in its slot.
 * Never blocks: each input's slot is filled by a callback on the thread
 * that completes it (for RPC results, a run loop; embedded, the owner's
 * polling), so wait for *out as for any future. n = 0 gives a future
 * completed with an empty list. TW_EINVAL for a NULL out, array or entry,
 * TW_EOVERFLOW for n over a list's capacity, TW_ENOMEM (then *out is NULL,
 * and callbacks already registered run harmlessly).
 */
tw_status tw_future_collect_all(tw_future *const *futs, size_t n,
				tw_future **out);

#ifdef __cplusplus
}
#endif
#endif
