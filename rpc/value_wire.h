/* Internal: the tw_value payload codec (docs/wire.md, "Values"). message.c
 * frames it; this file knows tags, varints and tensor descriptors. */
#ifndef TW_RPC_VALUE_WIRE_H
#define TW_RPC_VALUE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <tensorwire/buf.h>
#include <tensorwire/frame.h>
#include <tensorwire/status.h>
#include <tensorwire/tensor.h>
#include <tensorwire/value.h>

/* Longest LEB128 encoding of a 64-bit value. */
#define TW_WIRE_VARINT_MAX 10

/* Dicts up to this size are checked for duplicate keys pairwise; larger
 * ones are sorted (O(n log n)) in scratch space counted by the decoder. */
#define TW_WIRE_DICT_SMALL 8

/* ---- encoder ---- */

/* Tensors whose checked descriptor the sizing pass keeps for the writer. */
#define TW_WIRE_PLAN_TENSORS 4

/* What the sizing pass learns about a value. */
typedef struct tw_wire_plan {
	uint64_t payload_len; /* encoded bytes of the value */
	uint32_t nseg;        /* tensors, each one segment, in encoding order */
	uint64_t seg_area;    /* bytes of the segment area laid out from an
			       * aligned start: sum of spans plus the pads
			       * between them (the frame adds it to head_len) */
	/* The first TW_WIRE_PLAN_TENSORS tensors as the sizing pass copied
	 * and then checked them, and their spans: the writer encodes and
	 * hands out these copies, never the caller's tensors again, so a
	 * tensor changed between the passes cannot make the frame describe
	 * or read more than was checked. Later tensors are re-read and
	 * re-checked by the writer (and must then match the plan's sizes). */
	tw_tensor tensors[TW_WIRE_PLAN_TENSORS];
	uint64_t spans[TW_WIRE_PLAN_TENSORS];
} tw_wire_plan;

/*
 * Sizing pass: check that v can be encoded (kinds, depth <=
 * TW_VALUE_MAX_DEPTH counting the root as 1, UTF-8 strings and keys without
 * duplicates, lengths < 2^32 - 1, valid tensors, error kinds, at most
 * TW_FRAME_MAX_SEGS tensors, payload < 2^32) and measure it. TW_EINVAL when
 * it cannot (or TW_ENOMEM from the duplicate-key check of a large dict).
 */
tw_status tw_wire_plan_value(const tw_value *v, tw_wire_plan *plan);

/* Called once per tensor in encoding order (index 0, 1, ...) with its byte
 * span: the caller fills the segment table and gathers the bytes. */
typedef void (*tw_wire_seg_fn)(void *ctx, uint32_t idx, const tw_tensor *t,
			       uint64_t span);

/*
 * Write v (already planned) into dst, exactly plan->payload_len bytes.
 * TW_EINVAL if v no longer matches the plan (it changed in between): the
 * caller then drops the frame. The first TW_WIRE_PLAN_TENSORS tensors are
 * written from plan->tensors (seg_fn gets those copies), not from v.
 */
tw_status tw_wire_write_value(const tw_value *v, const tw_wire_plan *plan,
			      uint8_t *dst, tw_wire_seg_fn seg_fn, void *ctx);

/*
 * One pass instead of the two above, for a value that fits room bytes at
 * dst with at most max_seg tensors (the common small message): write v,
 * making the sizing pass's checks as it goes, each tensor checked in a copy
 * that is what gets encoded and handed to seg_fn. Fills out's payload_len,
 * nseg and seg_area (not its tensor copies). TW_ENOSPC when the room or the
 * tensor count runs out (the bytes written are then garbage and seg_fn may
 * have been called: undo what it did, and plan and write instead);
 * TW_EINVAL / TW_ENOMEM as tw_wire_plan_value.
 */
tw_status tw_wire_write_checked(const tw_value *v, uint8_t *dst, size_t room,
				uint32_t max_seg, tw_wire_seg_fn seg_fn,
				void *ctx, tw_wire_plan *out);

/* ---- decoder ---- */

/*
 * Internal tw_value flag: set by the decoder, with TW_VALUE_BORROWED, on
 * the TENSOR nodes it builds in a message's arena, whose descriptor it has
 * checked (get_tensor: in the one pass, or in pass 1 on the same bytes
 * pass 2 builds from) and which nothing in the library changes until
 * the message is released. tw_value_clone then takes the descriptor as
 * checked. Only a shortcut for the early refusal tw_value_tensor makes:
 * every consumer of a tensor (the encoder's sizing pass, rpc/tensor.c)
 * re-validates it anyway, so a value forged with this bit cannot get an
 * unchecked layout read.
 */
#define TW_VALUE_WIRE_CHECKED_ 0x80u

/*
 * Internal tw_value flag on RREF nodes: u.rref points at the id inside a
 * live RRef handle (rpc/rref.c), not at a bare id. Without
 * TW_VALUE_BORROWED the node owns one reference on the handle
 * (tw_rref_value, a clone): tw_value_destroy releases it, tw_value_clone
 * takes another. With it, someone else holds the handle (a received
 * message's RRefs, held by the message). The encoders refuse such a node
 * with TW_WIRE_FORK_NEEDED: a handle is never sent as it is, the sender
 * forks it for the receiver first (rref_fork_payload).
 */
#define TW_VALUE_RREF_HANDLE_ 0x40u
#define TW_WIRE_FORK_NEEDED TW_EBUSY

/* What a received message keeps alive until tw_in_msg_release (the RRef
 * handles its RREF nodes point at: rref.c); release frees it. */
struct tw_msg_hold {
	void (*release)(struct tw_msg_hold *h);
};

/* The handle an RREF node with TW_VALUE_RREF_HANDLE_ points into: take or
 * drop one reference (rref.c). */
void rref_id_retain(const tw_rref_id *id);
void rref_id_release(const tw_rref_id *id);

/* One received frame's payload, as the decoder sees it. */
typedef struct tw_wire_in {
	const uint8_t *frame;    /* frame start (8-byte aligned) */
	const tw_frame_hdr *hdr; /* validated: header and segment layout */
	tw_buf *buf;             /* stored in decoded tensors, not retained */
	/* The segment offsets tw_frame_check_segments gave for this frame
	 * (seg_count entries), or NULL: tw_wire_build finds them itself. */
	const uint64_t *seg_offsets;
	uint32_t max_depth; /* 1 .. TW_VALUE_MAX_DEPTH */
	uint32_t max_nodes; /* values + dict entries */
} tw_wire_in;

/* What pass 1 measured; pass 2 lays its arena out from it. */
typedef struct tw_wire_layout {
	size_t arena_size; /* bytes pass 2 needs (0: scalar payload) */
	size_t nodes_off;  /* internal: segment offsets, segment bitmap and
			    * dict scratch come first, value nodes after */
	uint32_t nrref;    /* RREF nodes in the tree */
} tw_wire_layout;

/*
 * Pass 1: validate the payload (everything that needs no memory: tags,
 * varints, lengths, UTF-8, depth, node count, dtypes, shapes, spans against
 * segment lengths, trailing bytes) and count the arena bytes pass 2 needs.
 * TW_EPROTO on any fault, recorded for tw_errmsg. Work is linear in the
 * payload size.
 */
tw_status tw_wire_check(const tw_wire_in *in, tw_wire_layout *lay);

/*
 * Pass 2, on a payload tw_wire_check accepted into lay: build the value
 * tree in arena (lay->arena_size bytes, 8-byte aligned) with
 * TW_VALUE_BORROWED on every node, strings pointing into the frame,
 * tensors into their segments, and run the two checks that need the arena
 * as scratch: unique dict keys (O(n log n)) and each segment used by
 * exactly one tensor. Pass 1's other checks are not made again (the same
 * code walks the same bytes); only what keeps the walk itself in bounds
 * is. TW_EPROTO (recorded for tw_errmsg; a reason starting "internal"
 * means the passes disagree); nothing to undo on failure, since the tree
 * holds no references.
 */
tw_status tw_wire_build(const tw_wire_in *in, const tw_wire_layout *lay,
			void *arena, tw_value *out);

/*
 * Both passes in one, for trees that fit a small arena (the common call):
 * the same walker making every check of tw_wire_check and tw_wire_build,
 * each byte read once, building into arena (size bytes, 8-byte aligned).
 * Needs in->seg_offsets when the frame has segments. TW_OK with lay
 * filled (arena_size: the bytes used) and *out built; TW_EPROTO on a
 * fault (recorded for tw_errmsg); TW_ENOSPC when the tree needs more room
 * than size (or a large dict's scratch): nothing is wrong yet, and
 * nothing is recorded; run tw_wire_check and tw_wire_build instead.
 */
tw_status tw_wire_decode_small(const tw_wire_in *in, void *arena, size_t size,
			       tw_wire_layout *lay, tw_value *out);

#endif
