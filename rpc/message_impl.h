/* Internal: decoding a frame whose header the receiver has decoded
 * already (the agent's dispatch reads it to pick the handler). */
#ifndef TW_RPC_MESSAGE_IMPL_H
#define TW_RPC_MESSAGE_IMPL_H

#include <tensorwire/message.h>

/*
 * tw_msg_decode with default limits, taking h as the frame's header
 * instead of decoding it again: h must be what tw_frame_hdr_decode
 * returned TW_OK for on these bytes (buf->data + offset), with default
 * limits (a zeroed tw_frame_limits). Everything else is checked as
 * tw_msg_decode checks it.
 */
tw_status msg_decode_with_hdr(tw_buf *buf, size_t offset, size_t len,
			      const tw_frame_hdr *h, tw_in_msg *out);

#endif
