/* tensorwire messages: types, payload shapes, and the zero-copy encoder and
 * validating decoder that turn a tw_value into a frame and back. */
#ifndef TENSORWIRE_MESSAGE_H
#define TENSORWIRE_MESSAGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <tensorwire/buf.h>
#include <tensorwire/frame.h>
#include <tensorwire/status.h>
#include <tensorwire/value.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Message types (after torch's MessageType). Wire values: append only. */
typedef enum tw_msg_type {
	TW_MSG_CALL = 1,      /* tuple(str qualname, tuple args, dict kwargs) */
	TW_MSG_RET = 2,       /* any value: the result */
	TW_MSG_EXCEPTION = 3, /* error value */
	TW_MSG_REMOTE_CALL = 4, /* tuple(str, tuple, dict, rref result_id) */
	TW_MSG_REMOTE_RET = 5,  /* rref */
	TW_MSG_RREF_FETCH_CALL = 6,    /* rref */
	TW_MSG_RREF_FETCH_RET = 7,     /* any value */
	TW_MSG_RREF_USER_DELETE = 8,   /* rref */
	TW_MSG_RREF_FORK_REQUEST = 9,  /* tuple(rref, int fork_dst_worker) */
	TW_MSG_RREF_CHILD_ACCEPT = 10, /* rref */
	TW_MSG_ACK = 11,               /* none */
	TW_MSG_JOIN = 12,              /* any value (agent-defined) */
	TW_MSG_SHUTDOWN = 13,          /* any value (agent-defined) */
	TW_MSG_AUTH = 14,              /* bytes: a handshake step (wire.md) */
	/* Distributed autograd (wire.md §5.2): gradients for the send
	 * function a forward message recorded, answered RET(None) or
	 * EXCEPTION: tuple(int context_id, int message_id, list grads
	 * (tensor or None each), bool retain_graph). */
	TW_MSG_AG_BACKWARD = 15,
	TW_MSG_AG_CLEANUP = 16, /* int context_id; answered ACK */
	TW_MSG_TYPE_COUNT_      /* not a type */
} tw_msg_type;

/*
 * Autograd metadata of a forward message (a frame flagged
 * TW_FRAME_F_AUTOGRAD: CALL, REMOTE_CALL, RREF_FETCH_CALL and their
 * answers RET, REMOTE_RET, RREF_FETCH_RET). On the wire the payload is
 * tuple(int context_id, int message_id, bytes grad_mask, <the type's
 * payload>); decoded, tw_in_msg.payload is the inner value and .ag these.
 * context_id carries its creator's worker id in bits 48..63 (as torch's);
 * both ids are >= 0. grad_mask has one bit per tensor of the inner value
 * (bit i % 8 of byte i / 8, tensors numbered depth first): set when that
 * tensor requires grad; exactly ceil(tensors / 8) bytes, unused bits 0.
 */
typedef struct tw_ag_meta {
	int64_t context_id;
	int64_t message_id;
	const uint8_t *grad_mask; /* borrowed: the message's, or the caller's */
	uint32_t mask_len;
} tw_ag_meta;

/* The creator worker of a context id (bits 48..63). */
static inline uint32_t tw_ag_context_worker(int64_t context_id)
{
	return (uint32_t)((uint64_t)context_id >> 48);
}

/* Whether type may carry TW_FRAME_F_AUTOGRAD. */
int tw_msg_ag_type(unsigned type);

/*
 * The envelope of m around inner, for tw_msg_encode with hdr->flags |=
 * TW_FRAME_F_AUTOGRAD: a borrowed tuple over items[4] (caller storage,
 * alive until the encode returns), nothing allocated.
 */
tw_value tw_msg_ag_wrap(const tw_ag_meta *m, const tw_value *inner,
			tw_value items[4]);

/* "CALL", ..., or "?" */
const char *tw_msg_type_name(unsigned type);

/* Check that payload has the shape its type requires (table above). */
tw_status tw_msg_check_shape(unsigned type, const tw_value *payload);
/* The same for a frame with header flags (an autograd envelope checked
 * around the type's shape; its mask against the tensors at encode and
 * decode). */
tw_status tw_msg_check_frame_shape(unsigned type, unsigned flags,
				   const tw_value *payload);

/* Limits a decoder applies; {0} fields take defaults. */
typedef struct tw_decode_limits {
	tw_frame_limits frame;
	uint32_t max_depth; /* nesting, default and maximum TW_VALUE_MAX_DEPTH */
	uint32_t max_nodes; /* values + entries in one payload, default 1 << 20 */
} tw_decode_limits;

/* Room the encoder reserves inline for iovecs and tensor references before it
 * falls back to the heap (messages with more tensors than this). */
#define TW_OUT_MSG_INLINE_SEGS 8

/*
 * An encoded message ready for a gather send: iov[0] covers header, segment
 * table and payload in one buffer (head); then each tensor's bytes as they
 * sit in the tensor's own memory, with pads from a shared zero block.
 * Nothing of a tensor is copied; the message holds a reference on each
 * tensor's buffer until tw_out_msg_release (after send completion).
 */
/* Both tw_out_msg and tw_in_msg point into their own inline storage after
 * encode/decode: never copy or move one; pass pointers. */
typedef struct tw_out_msg {
	tw_buf *head;
	struct iovec *iov;
	uint32_t niov;
	uint32_t nseg;
	uint64_t total_len;
	tw_buf **seg_bufs; /* nseg entries, NULL where a tensor has no buf */
	uint32_t flags_;   /* internal */
	uint32_t reserved_;
	struct iovec iov_inline_[1 + 2 * TW_OUT_MSG_INLINE_SEGS];
	tw_buf *bufs_inline_[TW_OUT_MSG_INLINE_SEGS];
} tw_out_msg;

/*
 * Encode hdr (type, flags, req_id, src, dst, timeout_ms; the length fields
 * are computed) and payload into a buffer from pool (or a heap buffer when
 * the head does not fit a pool buffer; pool may be NULL for always-heap).
 * Returns TW_ENOSPC when the pool is empty, TW_EINVAL for a payload that
 * does not match its type's shape or exceeds a format limit (depth,
 * segments, 4 GiB payload), TW_ENOMEM. On failure out holds nothing.
 */
tw_status tw_msg_encode(tw_buf_pool *pool, const tw_frame_hdr *hdr,
			const tw_value *payload, tw_out_msg *out);

/* Copy the whole frame into dst (total_len bytes): for tests, loopback and
 * transports that must linearise. */
void tw_out_msg_copy(const tw_out_msg *m, void *dst);

/* Release the head buffer and every tensor reference. */
void tw_out_msg_release(tw_out_msg *m);

/* Inline arena in tw_in_msg: small messages decode without malloc. */
#define TW_IN_MSG_INLINE_ARENA 1024

/*
 * A received message after validation. payload and everything under it are
 * borrowed (TW_VALUE_BORROWED): strings and tensors point into the receive
 * buffer, which the message keeps alive. Use tw_value_clone to keep a value
 * longer, or tw_tensor_ref to keep one tensor.
 */
struct tw_msg_hold; /* internal */

typedef struct tw_in_msg {
	tw_frame_hdr hdr;
	tw_value payload; /* inside an autograd envelope: the inner value */
	tw_ag_meta ag;    /* hdr.flags & TW_FRAME_F_AUTOGRAD, else zeros */
	tw_buf *buf;      /* reference on the receive buffer */
	void *arena_;     /* internal */
	size_t arena_size_;
	uint32_t nrref_;           /* internal: RREF nodes in payload */
	struct tw_msg_hold *hold_; /* internal: what the message keeps */
	_Alignas(16) unsigned char arena_inline_[TW_IN_MSG_INLINE_ARENA];
} tw_in_msg;

/*
 * Validate and decode the frame at buf->data + offset, len bytes (the
 * frame start must be 8-byte aligned, and 64-byte aligned for tensors to
 * be 64-byte aligned). Takes a reference on buf on success. Checks every
 * field: header, segment layout, tags, varints, lengths, UTF-8, nesting
 * depth, dtype, ndim, shape products, strides against segment bounds, each
 * segment used by exactly one tensor, no trailing bytes, the type's shape.
 *
 * hdr is the frame's header when the caller has decoded it already (a
 * transport hands the header it checked up with the frame), or NULL to
 * decode it here against lim->frame. A given header must be what
 * tw_frame_hdr_decode returned TW_OK for on these bytes, under whatever
 * frame limits the caller applies: it is copied to out->hdr, not decoded
 * again, and lim->frame is not used. The rest of the frame is still
 * checked against it (len == total_len, segment layout, payload), so a
 * header that does not describe the bytes cannot make the decoder read
 * outside them. lim (NULL = defaults) bounds the payload either way.
 *
 * Returns TW_EPROTO (TW_EVERSION for a newer version, only when hdr is
 * NULL: out->hdr then holds the stable fields for an answer), TW_ENOMEM,
 * or TW_EINVAL for the caller's mistakes (no out, a frame outside buf, a
 * misaligned start); tw_errmsg(st) names the fault ("tensor: ndim over
 * 8"). On failure nothing is held and out->payload is NONE.
 */
tw_status tw_msg_decode(tw_buf *buf, size_t offset, size_t len,
			const tw_frame_hdr *hdr, const tw_decode_limits *lim,
			tw_in_msg *out);

/* Release the receive buffer reference and arena; payload becomes NONE. */
void tw_in_msg_release(tw_in_msg *m);

#ifdef __cplusplus
}
#endif
#endif
