/* Internal: completing a future straight from a received frame, for the
 * agent (call.c), without tw_future_complete_msg's move of the message. */
#ifndef TW_RPC_FUTURE_IMPL_H
#define TW_RPC_FUTURE_IMPL_H

#include <tensorwire/future.h>

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

#endif
