/* tensorwire futures: the result of an asynchronous call, completed once by
 * whichever thread has it (usually a run loop), waited on or chained. */
#ifndef TENSORWIRE_FUTURE_H
#define TENSORWIRE_FUTURE_H

#include <stdbool.h>
#include <stdint.h>

#include <tensorwire/message.h>
#include <tensorwire/status.h>
#include <tensorwire/value.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_future tw_future;

/*
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

/* Complete as failed: kind (not TW_OK), origin worker, message (copied). */
tw_status tw_future_fail(tw_future *f, tw_status kind, uint32_t origin,
			 const char *msg);

/* Complete as failed with an error value (moved). */
tw_status tw_future_fail_value(tw_future *f, tw_value *err);

/* True once completed (acquire: the value is visible). */
bool tw_future_done(const tw_future *f);

/*
 * Wait until completed or timeout_ms passes (< 0 waits forever, 0 polls).
 * Spins briefly, then sleeps on a futex. Returns the future's status
 * (TW_OK or its error kind) once completed, TW_ETIMEDOUT if the wait ran
 * out first (the future itself is unaffected).
 */
tw_status tw_future_wait(tw_future *f, int64_t timeout_ms);

/* After completion: TW_OK, or the error's kind. TW_EBUSY while pending
 * (tw_status has no EAGAIN). */
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

#ifdef __cplusplus
}
#endif
#endif
