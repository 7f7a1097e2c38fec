/* Messages: type names and payload shapes, the zero-copy frame encoder and
 * the validating decoder (docs/wire.md). */
#include <endian.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/message.h>

#include "dataplane/err.h"
#include "rpc/value_wire.h"

/* Defaults of tw_decode_limits (message.h). */
#define DEF_MAX_NODES (1u << 20)

/* tw_out_msg.flags_: where the iov and seg_bufs arrays live. */
#define OUT_ARRAYS_INLINE 0x1u /* in the tw_out_msg itself */

/* Pads are under 64 bytes and only read by the transport: one shared block
 * serves every message. */
static const uint8_t zero_block[TW_FRAME_SEG_ALIGN];

static const char *const type_names[TW_MSG_TYPE_COUNT_] = {
	[TW_MSG_CALL] = "CALL",
	[TW_MSG_RET] = "RET",
	[TW_MSG_EXCEPTION] = "EXCEPTION",
	[TW_MSG_REMOTE_CALL] = "REMOTE_CALL",
	[TW_MSG_REMOTE_RET] = "REMOTE_RET",
	[TW_MSG_RREF_FETCH_CALL] = "RREF_FETCH_CALL",
	[TW_MSG_RREF_FETCH_RET] = "RREF_FETCH_RET",
	[TW_MSG_RREF_USER_DELETE] = "RREF_USER_DELETE",
	[TW_MSG_RREF_FORK_REQUEST] = "RREF_FORK_REQUEST",
	[TW_MSG_RREF_CHILD_ACCEPT] = "RREF_CHILD_ACCEPT",
	[TW_MSG_ACK] = "ACK",
	[TW_MSG_JOIN] = "JOIN",
	[TW_MSG_SHUTDOWN] = "SHUTDOWN",
	[TW_MSG_AUTH] = "AUTH",
	[TW_MSG_AG_BACKWARD] = "AG_BACKWARD",
	[TW_MSG_AG_CLEANUP] = "AG_CLEANUP",
};

const char *tw_msg_type_name(unsigned type)
{
	if (type == 0 || type >= TW_MSG_TYPE_COUNT_)
		return "?";
	return type_names[type];
}

static bool is_kind(const tw_value *v, tw_kind k)
{
	return v->kind == k;
}

/* Tuple of n whose items have the given kinds. */
static bool is_tuple_of(const tw_value *v, unsigned n, const tw_kind *kinds)
{
	if (!is_kind(v, TW_KIND_TUPLE) || v->len != n || v->u.items == NULL)
		return false;
	for (unsigned i = 0; i < n; i++)
		if (!is_kind(&v->u.items[i], kinds[i]))
			return false;
	return true;
}

/* AG_BACKWARD: (int ctx >= 0, int msg >= 0, list of tensor|None, bool). */
static bool ag_backward_ok(const tw_value *p)
{
	static const tw_kind k[] = {TW_KIND_INT, TW_KIND_INT, TW_KIND_LIST,
				    TW_KIND_BOOL};
	if (!is_tuple_of(p, 4, k) || p->u.items[0].u.i < 0 ||
	    p->u.items[1].u.i < 0)
		return false;
	const tw_value *g = &p->u.items[2];
	for (uint32_t i = 0; i < g->len; i++)
		if (g->u.items[i].kind != TW_KIND_TENSOR &&
		    g->u.items[i].kind != TW_KIND_NONE)
			return false;
	return true;
}

int tw_msg_ag_type(unsigned type)
{
	switch (type) {
	case TW_MSG_CALL:
	case TW_MSG_REMOTE_CALL:
	case TW_MSG_RREF_FETCH_CALL:
	case TW_MSG_RET:
	case TW_MSG_REMOTE_RET:
	case TW_MSG_RREF_FETCH_RET:
		return 1;
	default:
		return 0;
	}
}

tw_value tw_msg_ag_wrap(const tw_ag_meta *m, const tw_value *inner,
			tw_value items[4])
{
	items[0] = tw_value_int(m->context_id);
	items[1] = tw_value_int(m->message_id);
	items[2] = tw_value_bytes_borrow(m->grad_mask, m->mask_len);
	items[3] = *inner;
	items[3].flags |= TW_VALUE_BORROWED;
	return (tw_value){.kind = TW_KIND_TUPLE,
			  .flags = TW_VALUE_BORROWED,
			  .len = 4,
			  .u.items = items};
}

/* The envelope's mask against the number of tensors in the frame. */
static bool ag_mask_ok(const tw_value *env, uint32_t nseg)
{
	const tw_value *m = &env->u.items[2];
	if (m->len != (nseg + 7u) / 8u)
		return false;
	if (nseg % 8u == 0 || m->len == 0)
		return true;
	return (((const uint8_t *)m->u.str)[m->len - 1] >> (nseg % 8u)) == 0;
}

tw_status tw_msg_check_frame_shape(unsigned type, unsigned flags,
				   const tw_value *p)
{
	static const tw_kind env[] = {TW_KIND_INT, TW_KIND_INT, TW_KIND_BYTES};
	if (!(flags & TW_FRAME_F_AUTOGRAD))
		return tw_msg_check_shape(type, p);
	if (!tw_msg_ag_type(type))
		return tw_fail(TW_EINVAL,
			       "message: a %s does not carry autograd "
			       "metadata",
			       tw_msg_type_name(type));
	if (p == NULL || !is_kind(p, TW_KIND_TUPLE) || p->len != 4 ||
	    p->u.items == NULL || !is_kind(&p->u.items[0], env[0]) ||
	    !is_kind(&p->u.items[1], env[1]) ||
	    !is_kind(&p->u.items[2], env[2]) || p->u.items[0].u.i < 0 ||
	    p->u.items[1].u.i < 0)
		return tw_fail_static(TW_EINVAL,
				      "message: an autograd envelope must be "
				      "(int context_id >= 0, int message_id "
				      ">= 0, bytes grad_mask, payload)");
	return tw_msg_check_shape(type, &p->u.items[3]);
}

tw_status tw_msg_check_shape(unsigned type, const tw_value *p)
{
	static const tw_kind call[] = {TW_KIND_STRING, TW_KIND_TUPLE,
				       TW_KIND_DICT, TW_KIND_RREF};
	static const tw_kind fork[] = {TW_KIND_RREF, TW_KIND_INT};
	bool ok;

	if (p == NULL)
		return tw_fail_static(TW_EINVAL, "message: no payload");
	switch (type) {
	case TW_MSG_CALL:
		ok = is_tuple_of(p, 3, call);
		break;
	case TW_MSG_REMOTE_CALL:
		ok = is_tuple_of(p, 4, call);
		break;
	case TW_MSG_EXCEPTION:
		ok = is_kind(p, TW_KIND_ERROR);
		break;
	case TW_MSG_REMOTE_RET:
	case TW_MSG_RREF_FETCH_CALL:
	case TW_MSG_RREF_USER_DELETE:
	case TW_MSG_RREF_CHILD_ACCEPT:
		ok = is_kind(p, TW_KIND_RREF);
		break;
	case TW_MSG_RREF_FORK_REQUEST:
		/* The int names a worker: it must be a worker id. */
		ok = is_tuple_of(p, 2, fork) && p->u.items[1].u.i >= 0 &&
		     p->u.items[1].u.i <= UINT32_MAX;
		break;
	case TW_MSG_ACK:
		ok = is_kind(p, TW_KIND_NONE);
		break;
	case TW_MSG_AUTH:
		ok = is_kind(p, TW_KIND_BYTES);
		break;
	case TW_MSG_AG_BACKWARD:
		ok = ag_backward_ok(p);
		break;
	case TW_MSG_AG_CLEANUP:
		ok = is_kind(p, TW_KIND_INT) && p->u.i >= 0;
		break;
	case TW_MSG_RET:
	case TW_MSG_RREF_FETCH_RET:
	case TW_MSG_JOIN:
	case TW_MSG_SHUTDOWN:
		ok = true;
		break;
	default:
		ok = false;
		break;
	}
	return ok ? TW_OK
		  : tw_fail(TW_EINVAL, "message: a %s payload must be %s",
			    tw_msg_type_name(type),
			    type == TW_MSG_CALL
				    ? "(str fn, tuple args, dict kwargs)"
			    : type == TW_MSG_REMOTE_CALL
				    ? "(str fn, tuple args, dict kwargs, rref)"
			    : type == TW_MSG_EXCEPTION ? "an error value"
			    : type == TW_MSG_RREF_FORK_REQUEST
				    ? "(rref, int worker id)"
			    : type == TW_MSG_ACK  ? "None"
			    : type == TW_MSG_AUTH ? "bytes"
			    : type == TW_MSG_AG_BACKWARD
				    ? "(int context_id >= 0, int message_id "
				      ">= 0, list of tensor or None, bool)"
			    : type == TW_MSG_AG_CLEANUP
				    ? "an int context_id >= 0"
			    : type < TW_MSG_TYPE_COUNT_
				    ? "an rref"
				    : "of a known message type");
}

/* ===================== encoder ===================== */

static inline uint64_t align_seg(uint64_t off)
{
	return (off + TW_FRAME_SEG_ALIGN - 1) &
	       ~(uint64_t)(TW_FRAME_SEG_ALIGN - 1);
}

/* Gathers tensors as the writer meets them, in segment order. Offsets
 * count from the end of the frame head, which is segment-aligned whenever
 * there are segments, so alignment there is alignment in the frame. */
struct gather {
	tw_out_msg *m;
	uint8_t *table; /* segment table in the head buffer */
	uint64_t off;   /* where the next segment's pad starts */
};

static void gather_seg(void *ctx, uint32_t idx, const tw_tensor *t,
		       uint64_t span)
{
	struct gather *g = ctx;
	tw_out_msg *m = g->m;
	uint64_t start = align_seg(g->off);
	uint64_t le = htole64(span);

	memcpy(g->table + 8u * (size_t)idx, &le, sizeof(le));
	if (start > g->off) {
		m->iov[m->niov].iov_base = (void *)zero_block;
		m->iov[m->niov].iov_len = (size_t)(start - g->off);
		m->niov++;
	}
	/* The tensor's own bytes, strided view and all: no copy, no
	 * repacking (docs/wire.md, "Tensors"). */
	if (span) {
		m->iov[m->niov].iov_base = t->data;
		m->iov[m->niov].iov_len = (size_t)span;
		m->niov++;
	}
	m->seg_bufs[idx] = t->buf ? tw_buf_retain(t->buf) : NULL;
	g->off = start + span;
}

static void out_clear(tw_out_msg *out)
{
	out->head = NULL;
	out->iov = NULL;
	out->niov = 0;
	out->nseg = 0;
	out->total_len = 0;
	out->seg_bufs = NULL;
	out->flags_ = 0;
	out->reserved_ = 0;
}

/* The frame head around a payload already in place at f: header, segment
 * table (gathered), pad; iov[0] covers it. */
static void head_finish(tw_out_msg *out, uint8_t *f, const tw_frame_hdr *hdr,
			const tw_wire_plan *plan, uint64_t head_len)
{
	tw_frame_hdr h = *hdr;
	uint64_t pay_end = TW_FRAME_HDR_SIZE + 8u * (uint64_t)plan->nseg +
			   plan->payload_len;

	h.version = TW_FRAME_VERSION;
	h.payload_len = (uint32_t)plan->payload_len;
	h.seg_count = plan->nseg;
	h.total_len = head_len + plan->seg_area;
	tw_frame_hdr_encode(f, &h);
	memset(f + pay_end, 0, (size_t)(head_len - pay_end));
	out->iov[0].iov_base = f;
	out->iov[0].iov_len = (size_t)head_len;
	out->nseg = plan->nseg;
	out->total_len = h.total_len;
}

/*
 * The usual message, in one pass: a payload that fits a pool buffer with
 * at most TW_OUT_MSG_INLINE_SEGS tensors is written, checked as it goes,
 * after room for that many segment-table entries, then moved down behind
 * the real table (a call's payload is a few dozen bytes). No sizing pass:
 * each node is visited once, and the value's memory is read once.
 * TW_ENOSPC: the pool is empty, or it did not fit; nothing is left held.
 */
static tw_status encode_one_pass(tw_buf_pool *pool, const tw_frame_hdr *hdr,
				 const tw_value *payload, tw_out_msg *out)
{
	const size_t res = TW_FRAME_HDR_SIZE + 8u * TW_OUT_MSG_INLINE_SEGS;
	size_t size = tw_buf_pool_buf_size(pool);
	tw_wire_plan plan;
	uint64_t head_len;
	tw_status st;

	if (size < res + TW_FRAME_SEG_ALIGN)
		return TW_ENOSPC;
	tw_buf *b = tw_buf_pool_get(pool);
	if (b == NULL)
		return TW_ENOSPC;
	uint8_t *f = b->data;
	out->head = b;
	out->iov = out->iov_inline_;
	out->seg_bufs = out->bufs_inline_;
	out->flags_ = OUT_ARRAYS_INLINE;
	out->niov = 1;
	/* NULL first so a failed pass releases only what it retained. */
	for (uint32_t i = 0; i < TW_OUT_MSG_INLINE_SEGS; i++)
		out->seg_bufs[i] = NULL;
	struct gather g = {.m = out, .table = f + TW_FRAME_HDR_SIZE, .off = 0};
	st = tw_wire_write_checked(payload, f + res, size - res,
				   TW_OUT_MSG_INLINE_SEGS, gather_seg, &g,
				   &plan);
	if (st == TW_OK) {
		head_len = tw_frame_head_len(plan.nseg,
					     (uint32_t)plan.payload_len);
		if (head_len + plan.seg_area > TW_FRAME_MAX_TOTAL ||
		    g.off != plan.seg_area)
			st = TW_EINVAL;
		else if (head_len > size)
			st = TW_ENOSPC;
	}
	if (st != TW_OK) {
		out->nseg = TW_OUT_MSG_INLINE_SEGS;
		tw_out_msg_release(out);
		return st;
	}
	memmove(f + TW_FRAME_HDR_SIZE + 8u * plan.nseg, f + res,
		(size_t)plan.payload_len);
	head_finish(out, f, hdr, &plan, head_len);
	return TW_OK;
}

/* An encoded autograd envelope whose mask does not fit its tensors is
 * the caller's mistake: nothing is sent. */
static tw_status ag_encoded(const tw_frame_hdr *hdr, const tw_value *payload,
			    tw_out_msg *out, tw_status st)
{
	if (st != TW_OK || !(hdr->flags & TW_FRAME_F_AUTOGRAD) ||
	    ag_mask_ok(payload, out->nseg))
		return st;
	tw_out_msg_release(out);
	return tw_fail(TW_EINVAL,
		       "encode: grad_mask of %u bytes for %u tensors (must be "
		       "ceil(tensors / 8) bytes, unused bits 0)",
		       payload->u.items[2].len, out->nseg);
}

tw_status tw_msg_encode(tw_buf_pool *pool, const tw_frame_hdr *hdr,
			const tw_value *payload, tw_out_msg *out)
{
	tw_wire_plan plan;
	tw_buf *b = NULL;
	uint64_t head_len, total, need, arrays_off = 0;
	uint8_t *f;
	tw_status st;

	if (out == NULL)
		return tw_fail_static(TW_EINVAL, "encode: no out message");
	out_clear(out);
	if (hdr == NULL || payload == NULL)
		return tw_fail_static(TW_EINVAL,
				      "encode: no header or payload");
	if (hdr->type == 0 || hdr->type >= TW_MSG_TYPE_COUNT_ ||
	    (hdr->flags & ~TW_FRAME_F_KNOWN))
		return tw_fail(TW_EINVAL,
			       "encode: header type %u or flags %#x "
			       "not valid",
			       (unsigned)hdr->type, (unsigned)hdr->flags);
	st = tw_msg_check_frame_shape(hdr->type, hdr->flags, payload);
	if (st != TW_OK)
		return st;
	if (pool != NULL) {
		st = encode_one_pass(pool, hdr, payload, out);
		if (st != TW_ENOSPC)
			return ag_encoded(hdr, payload, out, st);
	}

	/* Larger, or with many tensors: measure, then write. */
	st = tw_wire_plan_value(payload, &plan);
	if (st != TW_OK)
		return st;

	head_len = tw_frame_head_len(plan.nseg, (uint32_t)plan.payload_len);
	total = head_len + plan.seg_area;
	if (total > TW_FRAME_MAX_TOTAL)
		return tw_fail_static(TW_EINVAL,
				      "encode: the frame would exceed "
				      "its limit (1 GiB + 64 KiB)");

	/* Few tensors: arrays inline in out. Many: in the head buffer after
	 * the frame head, so one buffer (pool or heap) is all we take. */
	need = head_len;
	if (plan.nseg > TW_OUT_MSG_INLINE_SEGS) {
		arrays_off = (head_len + 15) & ~(uint64_t)15;
		need = arrays_off +
		       (1 + 2 * (uint64_t)plan.nseg) * sizeof(struct iovec) +
		       (uint64_t)plan.nseg * sizeof(tw_buf *);
	}
	if (need > SIZE_MAX)
		return tw_fail_static(TW_EINVAL, "encode: the frame head does "
						 "not fit in memory");
	if (pool != NULL && need <= tw_buf_pool_buf_size(pool)) {
		b = tw_buf_pool_get(pool);
		if (b == NULL)
			return tw_fail_static(TW_ENOSPC,
					      "encode: the send pool "
					      "is empty");
	} else {
		st = tw_buf_alloc((size_t)need, &b);
		if (st != TW_OK)
			return st;
	}
	f = b->data;
	if (arrays_off) {
		out->iov = (struct iovec *)(f + arrays_off);
		out->seg_bufs =
			(tw_buf **)(out->iov + 1 + 2 * (size_t)plan.nseg);
	} else {
		out->iov = out->iov_inline_;
		out->seg_bufs = out->bufs_inline_;
		out->flags_ = OUT_ARRAYS_INLINE;
	}
	/* NULL first so a failed write releases only what it retained. */
	for (uint32_t i = 0; i < plan.nseg; i++)
		out->seg_bufs[i] = NULL;
	out->head = b;
	out->nseg = plan.nseg;

	struct gather g = {.m = out, .table = f + TW_FRAME_HDR_SIZE, .off = 0};

	out->niov = 1;
	st = tw_wire_write_value(payload, &plan,
				 f + TW_FRAME_HDR_SIZE + 8u * plan.nseg,
				 gather_seg, &g);
	if (st == TW_OK && g.off != plan.seg_area)
		st = TW_EINVAL;
	if (st != TW_OK) {
		tw_out_msg_release(out);
		return st;
	}
	head_finish(out, f, hdr, &plan, head_len);
	return ag_encoded(hdr, payload, out, TW_OK);
}

void tw_out_msg_copy(const tw_out_msg *m, void *dst)
{
	uint8_t *d = dst;

	for (uint32_t i = 0; i < m->niov; i++) {
		memcpy(d, m->iov[i].iov_base, m->iov[i].iov_len);
		d += m->iov[i].iov_len;
	}
}

void tw_out_msg_release(tw_out_msg *m)
{
	if (m == NULL)
		return;
	/* seg_bufs may live in the head buffer: release them first. */
	for (uint32_t i = 0; i < m->nseg && m->seg_bufs; i++)
		tw_buf_release(m->seg_bufs[i]);
	tw_buf_release(m->head);
	out_clear(m);
}

/* ===================== decoder ===================== */

static void in_clear(tw_in_msg *m)
{
	m->payload = tw_value_none();
	memset(&m->ag, 0, sizeof(m->ag));
	m->buf = NULL;
	m->arena_ = NULL;
	m->arena_size_ = 0;
	m->nrref_ = 0;
	m->hold_ = NULL;
}

/* Segments whose offsets the decoder keeps on its stack for pass 2 (more
 * and pass 2 finds them itself). */
#define STACK_SEGS 8

tw_status tw_msg_decode(tw_buf *buf, size_t offset, size_t len,
			const tw_frame_hdr *hdr, const tw_decode_limits *lim,
			tw_in_msg *out)
{
	const uint8_t *f;
	tw_wire_layout lay;
	tw_wire_in in;
	tw_value v;
	void *arena = NULL;
	tw_status st;
	uint64_t offs[STACK_SEGS];

	/* Our caller's mistakes, not the peer's: TW_EINVAL. */
	if (out == NULL)
		return tw_fail_static(TW_EINVAL,
				      "caller: no tw_in_msg to decode into");
	in_clear(out);
	memset(&out->hdr, 0, sizeof(out->hdr));
	if (buf == NULL || offset > buf->size || len > buf->size - offset)
		return tw_fail_static(TW_EINVAL,
				      "caller: frame outside the buffer");
	f = (const uint8_t *)buf->data + offset;
	if ((uintptr_t)f % 8)
		return tw_fail_static(TW_EINVAL,
				      "caller: frame start not 8-byte aligned");

	if (len < TW_FRAME_HDR_SIZE)
		return tw_fail_static(TW_EPROTO,
				      "frame: shorter than the header");
	if (hdr != NULL) {
		/* Decoded and checked by whoever received the frame, against
		 * their limits: a header is decoded once. */
		out->hdr = *hdr;
	} else {
		st = tw_frame_hdr_decode(f, lim ? &lim->frame : NULL,
					 &out->hdr);
		if (st != TW_OK)
			return st;
	}
	if (out->hdr.type >= TW_MSG_TYPE_COUNT_)
		return tw_fail_static(TW_EPROTO,
				      "header: unknown message type");
	/* The segment layout, checked once: pass 2 takes the offsets from
	 * here when they fit on the stack. It also holds a given header to
	 * the bytes: len must be its total_len, and its table and payload
	 * must lie inside them. */
	bool have_offs = out->hdr.seg_count <= STACK_SEGS;
	st = tw_frame_check_segments(f, len, &out->hdr,
				     have_offs ? offs : NULL);
	if (st != TW_OK)
		return st;

	in.frame = f;
	in.hdr = &out->hdr;
	in.buf = buf;
	in.seg_offsets = have_offs ? offs : NULL;
	in.max_depth = TW_VALUE_MAX_DEPTH;
	in.max_nodes = DEF_MAX_NODES;
	if (lim && lim->max_depth && lim->max_depth < TW_VALUE_MAX_DEPTH)
		in.max_depth = lim->max_depth;
	if (lim && lim->max_nodes)
		in.max_nodes = lim->max_nodes;

	/* Small trees (the common call) stay in the message: no malloc, and
	 * one pass over the payload that makes both passes' checks. */
	st = tw_wire_decode_small(&in, out->arena_inline_,
				  sizeof(out->arena_inline_), &lay, &v);
	if (st == TW_OK) {
		arena = out->arena_inline_;
	} else if (st != TW_ENOSPC) {
		return st;
	} else {
		/* Larger: measure first, then build. */
		st = tw_wire_check(&in, &lay);
		if (st != TW_OK)
			return st;
		if (lay.arena_size <= sizeof(out->arena_inline_)) {
			arena = out->arena_inline_;
		} else {
			arena = malloc(lay.arena_size);
			if (arena == NULL)
				return tw_fail_static(
					TW_ENOMEM,
					"decode arena allocation failed");
		}
		st = tw_wire_build(&in, &lay, arena, &v);
	}
	if (st == TW_OK && tw_msg_check_frame_shape(
				   out->hdr.type, out->hdr.flags, &v) != TW_OK)
		st = tw_fail_static(
			TW_EPROTO,
			"payload: shape does not match the message type");
	else if (st == TW_OK && (out->hdr.flags & TW_FRAME_F_AUTOGRAD)) {
		if (!ag_mask_ok(&v, out->hdr.seg_count)) {
			st = tw_fail_static(TW_EPROTO,
					    "payload: autograd grad_mask does "
					    "not fit the tensors");
		} else {
			out->ag.context_id = v.u.items[0].u.i;
			out->ag.message_id = v.u.items[1].u.i;
			out->ag.grad_mask = (const uint8_t *)v.u.items[2].u.str;
			out->ag.mask_len = v.u.items[2].len;
			v = v.u.items[3];
		}
	}
	if (st != TW_OK) {
		if (arena != out->arena_inline_)
			free(arena);
		return st;
	}
	out->payload = v;
	out->buf = tw_buf_retain(buf);
	out->arena_ = arena;
	out->arena_size_ = lay.arena_size;
	out->nrref_ = lay.nrref;
	return TW_OK;
}

void tw_in_msg_release(tw_in_msg *m)
{
	if (m == NULL)
		return;
	if (m->hold_ != NULL)
		m->hold_->release(m->hold_);
	if (m->arena_ != NULL && m->arena_ != (void *)m->arena_inline_)
		free(m->arena_);
	tw_buf_release(m->buf);
	in_clear(m);
}
