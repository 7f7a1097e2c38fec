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
	TW_MSG_TYPE_COUNT_             /* not a type */
} tw_msg_type;

/* "CALL", ..., or "?" */
const char *tw_msg_type_name(unsigned type);

/* Check that payload has the shape its type requires (table above). */
tw_status tw_msg_check_shape(unsigned type, const tw_value *payload);

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
	tw_value payload;
	tw_buf *buf;  /* reference on the receive buffer */
	void *arena_; /* internal */
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
