/* Internal: completing a future straight from a received frame, for the
 * agent (call.c), without tw_future_complete_msg's move of the message;
 * waiting for a group of futures with the agent's own wait. */
#ifndef TW_RPC_FUTURE_IMPL_H
#define TW_RPC_FUTURE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/future.h>
#include <tensorwire/message.h>

/*
 * Claim f for completion and lend its message slot: decode the response
 * into it (in place: a decoded tw_in_msg must not move), then end with
 * future_msg_end (decoded: complete as tw_future_complete_msg would) or
 * future_msg_fail (decode failed; the slot holds nothing). NULL when f was
 * completed already (nothing to end).
 */
tw_in_msg *future_msg_begin(tw_future *f);
void future_msg_end(tw_future *f);
void future_msg_fail(tw_future *f, tw_status kind, uint32_t origin,
		     const char *msg);

/* Autograd metadata owned by a future or a reply (autograd.h): the ids
 * and a copy of the mask. */
struct ag_own {
	int64_t context_id, message_id;
	uint32_t mask_len;
	uint8_t mask[];
};
/* A copy of m (NULL without memory, or for m NULL). */
struct ag_own *ag_own_new(const tw_ag_meta *m);
static inline tw_ag_meta ag_own_meta(const struct ag_own *o)
{
	return (tw_ag_meta){.context_id = o->context_id,
			    .message_id = o->message_id,
			    .grad_mask = o->mask,
			    .mask_len = o->mask_len};
}
/* Give f owned metadata o (replacing any), before f completes. */
void future_ag_give(tw_future *f, struct ag_own *o);

/* After failure: whether the error came from another worker (an
 * EXCEPTION frame, or a chain from such a future) rather than being
 * raised on this one (tw_future_fail, or the agent failing a call). */
bool future_error_relayed(const tw_future *f);

/*
 * tw_future_wait_all with the wait for the group's own future given:
 * wait(f, timeout_ms, ctx) as tw_future_wait (NULL: tw_future_wait), so
 * that an embedded agent's owner can poll its loop meanwhile
 * (tw_agent_wait_all). Returns TW_OK, the first failed input's kind with
 * *failed its index (not explained: the caller words it), or the wait's
 * own failure (TW_ETIMEDOUT, explained) with *failed SIZE_MAX.
 */
typedef tw_status (*future_wait_fn)(tw_future *f, int64_t timeout_ms,
				    void *ctx);
tw_status future_wait_all_with(tw_future *const *futs, size_t n,
			       int64_t timeout_ms, future_wait_fn wait,
			       void *ctx, size_t *failed);

/*
 * What a waiter of f may poll to complete it itself (the agent: the run
 * loop its answer arrives on, lent to the waiter: tw_loop_borrow_until).
 * drive returns whether f is done; it may give up early (the waiter then
 * waits as usual). f owns one reference to ctx, dropped by release when f
 * is freed. Set once, before f is shared.
 */
struct future_driver {
	bool (*drive)(tw_future *f, void *ctx, uint64_t deadline_ns);
	/* A wait found f done (NULL: nothing): the waiter may still do a
	 * little of what its driver has waiting (send calls it posted). */
	void (*done_wait)(void *ctx);
	void (*retain)(void *ctx);
	void (*release)(void *ctx);
};
void future_set_driver(tw_future *f, const struct future_driver *d, void *ctx);

/* dst, completed from src's completion (a callback of src), gets src's
 * driver: its waiters poll what completes src. Before dst is shared. */
void future_share_driver(tw_future *dst, const tw_future *src);

#endif
