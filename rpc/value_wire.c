/* The tw_value payload codec: the encoder's writer (one checking pass, or
 * sizing then writing), and the validating decoder: one walker, run once
 * for small trees, twice (measure, then build) for the rest (docs/wire.md,
 * "Values" and section 6). */
#include <endian.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/err.h"
#include "rpc/utf8.h"
#include "rpc/value_wire.h"

/* Strings, bytes, keys and error messages: the u32 length of tw_value with
 * UINT32_MAX kept free, as the value constructors do. */
#define MAX_STR_LEN (UINT32_MAX - 1u)

/* Smallest encodings, used to bound counts by the bytes left before any
 * work or memory is spent on them. */
#define MIN_ITEM_BYTES 1u  /* a NONE tag */
#define MIN_ENTRY_BYTES 3u /* key length 0, its NUL, a NONE tag */

#define ARENA_ALIGN 8u

static inline uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/*
 * Depth counts nested containers, as tw_value_clone/equal do: the root
 * container is at depth 1, scalars add nothing. A container deeper than the
 * limit is refused; recursion in every walk below is bounded by it.
 */
static inline bool is_container(unsigned kind)
{
	return kind == TW_KIND_LIST || kind == TW_KIND_TUPLE ||
	       kind == TW_KIND_DICT;
}

static inline uint64_t zigzag(int64_t i)
{
	uint64_t u = (uint64_t)i;
	return (u << 1) ^ (0 - (u >> 63));
}

static inline int64_t unzigzag(uint64_t u)
{
	uint64_t v = (u >> 1) ^ (0 - (u & 1));
	int64_t i;
	memcpy(&i, &v, sizeof(i)); /* two's complement reinterpretation */
	return i;
}

static inline unsigned uvarint_len(uint64_t v)
{
	unsigned n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Keys order by length first: cheap, and equal keys must match there. */
static int key_cmp(const tw_kv *a, const tw_kv *b)
{
	if (a->key_len != b->key_len)
		return a->key_len < b->key_len ? -1 : 1;
	return memcmp(a->key, b->key, a->key_len);
}

static void sift_down(const tw_kv **v, size_t root, size_t n)
{
	for (;;) {
		size_t child = 2 * root + 1;
		if (child >= n)
			return;
		if (child + 1 < n && key_cmp(v[child], v[child + 1]) < 0)
			child++;
		if (key_cmp(v[root], v[child]) >= 0)
			return;
		const tw_kv *t = v[root];
		v[root] = v[child];
		v[child] = t;
		root = child;
	}
}

/*
 * True when two of the n keys pointed at are equal. A few are compared
 * pairwise; more are heapsorted: O(n log n) comparisons whatever the keys,
 * no allocation, unlike qsort or a hash table an attacker can aim
 * collisions at. Reorders p.
 */
static bool dup_keys(const tw_kv **p, uint32_t n)
{
	if (n <= TW_WIRE_DICT_SMALL) {
		for (uint32_t i = 0; i < n; i++)
			for (uint32_t j = i + 1; j < n; j++)
				if (key_cmp(p[i], p[j]) == 0)
					return true;
		return false;
	}
	for (size_t i = n / 2; i-- > 0;)
		sift_down(p, i, n);
	for (size_t end = n; end-- > 1;) {
		const tw_kv *t = p[0];
		p[0] = p[end];
		p[end] = t;
		sift_down(p, 0, end);
	}
	for (uint32_t i = 1; i < n; i++)
		if (key_cmp(p[i - 1], p[i]) == 0)
			return true;
	return false;
}

/* ===================== encoder: sizing pass ===================== */

struct plan_ctx {
	uint64_t len;
	uint64_t seg_area;
	uint32_t nseg;
	tw_wire_plan *out; /* its tensors and spans are filled as we go */
};

/* The checks both encoders make (the sizing pass, and the checking
 * writer of the one-pass encoder). */

static bool text_ok(const char *s, uint64_t n, bool key)
{
	if (n > MAX_STR_LEN || (n && s == NULL))
		return false;
	/* Keys are C strings in the API (tw_value_dict_get): an embedded NUL
	 * would make two distinct wire keys look alike. */
	if (key && n && memchr(s, 0, n))
		return false;
	return n == 0 || tw_utf8_valid(s, n);
}

/* Copy *t into *snap and check the copy (what is sent is exactly what was
 * checked, whatever the caller's tensor does meanwhile). */
static bool tensor_snap(const tw_tensor *t, tw_tensor *snap, size_t *span)
{
	if (t == NULL)
		return false;
	*snap = *t;
	return tw_tensor_span(snap, span) == TW_OK;
}

/* The peer rejects duplicate keys: refuse here, where it is the caller's
 * bug, rather than there, where it looks like a bad peer. n: the dict's
 * set entries. */
static tw_status dict_keys_ok(const tw_value *v, uint32_t n)
{
	const tw_kv *e = v->u.entries;
	const tw_kv *small[TW_WIRE_DICT_SMALL];
	const tw_kv **scratch = small;
	bool dup;

	if (n > TW_WIRE_DICT_SMALL) {
		scratch = malloc((size_t)n * sizeof(*scratch));
		if (scratch == NULL)
			return tw_fail_static(TW_ENOMEM, "encode: no memory to "
							 "check a dict's keys");
	}
	n = 0;
	for (uint32_t i = 0; i < v->len; i++)
		if (e[i].key != NULL)
			scratch[n++] = &e[i];
	dup = dup_keys(scratch, n);
	if (scratch != small)
		free(scratch);
	return dup ? tw_fail_static(TW_EINVAL,
				    "encode: a dict has a repeated key")
		   : TW_OK;
}

static tw_status plan_text(struct plan_ctx *c, const char *s, uint64_t n,
			   bool key)
{
	if (!text_ok(s, n, key))
		return tw_fail_static(
			TW_EINVAL,
			"encode: a string or dict key is too long, not valid UTF-8, or (a key) holds a NUL");
	c->len += uvarint_len(n) + n + 1;
	return TW_OK;
}

static unsigned tensor_desc_len(const tw_tensor *t, uint64_t span, uint32_t idx)
{
	unsigned n = 2; /* dtype, ndim */
	for (unsigned d = 0; d < t->ndim; d++)
		n += uvarint_len((uint64_t)t->shape[d]) +
		     uvarint_len((uint64_t)t->strides[d]);
	return n + uvarint_len(span) + uvarint_len(idx);
}

static tw_status plan_dict(struct plan_ctx *c, const tw_value *v,
			   unsigned depth);

static tw_status plan(struct plan_ctx *c, const tw_value *v, unsigned depth)
{
	tw_status st = TW_OK;

	if (is_container(v->kind) && depth > TW_VALUE_MAX_DEPTH)
		return tw_fail_static(
			TW_EINVAL,
			"encode: containers nested more than TW_VALUE_MAX_DEPTH (64) deep");
	c->len += 1; /* tag */
	switch (v->kind) {
	case TW_KIND_NONE:
		break;
	case TW_KIND_BOOL:
		c->len += 1;
		break;
	case TW_KIND_INT:
		c->len += uvarint_len(zigzag(v->u.i));
		break;
	case TW_KIND_DOUBLE:
		c->len += 8;
		break;
	case TW_KIND_STRING:
		st = plan_text(c, v->u.str, v->len, false);
		break;
	case TW_KIND_BYTES:
		if (v->len > MAX_STR_LEN || (v->len && v->u.str == NULL))
			return tw_fail_static(
				TW_EINVAL,
				"encode: a bytes value is too long or has no data");
		c->len += uvarint_len(v->len) + v->len;
		break;
	case TW_KIND_TENSOR: {
		/* The first few are checked in the plan's copies, which the
		 * writer then sends. */
		bool kept = c->nseg < TW_WIRE_PLAN_TENSORS;
		tw_tensor scratch;
		tw_tensor *snap = kept ? &c->out->tensors[c->nseg] : &scratch;
		size_t span;

		if (c->nseg >= TW_FRAME_MAX_SEGS)
			return tw_fail_static(
				TW_EINVAL,
				"encode: more than 4096 tensors in one message");
		if (!tensor_snap(v->u.tensor, snap, &span))
			return tw_fail_static(
				TW_EINVAL,
				"encode: a tensor is malformed (dtype, shape, strides or data)");
		if (kept)
			c->out->spans[c->nseg] = span;
		c->len += tensor_desc_len(snap, span, c->nseg);
		/* Spans are < 2^63 each; the running area is checked against
		 * the frame limit before the next one is added. */
		c->seg_area = align_up(c->seg_area, TW_FRAME_SEG_ALIGN) + span;
		if (c->seg_area > TW_FRAME_MAX_TOTAL)
			return tw_fail_static(
				TW_EINVAL,
				"encode: the tensors' bytes exceed the frame limit");
		c->nseg++;
		break;
	}
	case TW_KIND_LIST:
	case TW_KIND_TUPLE:
		if (v->len && v->u.items == NULL)
			return tw_fail_static(
				TW_EINVAL,
				"encode: a list or tuple has a length but no items");
		c->len += uvarint_len(v->len);
		for (uint32_t i = 0; i < v->len && st == TW_OK; i++)
			st = plan(c, &v->u.items[i], depth + 1);
		break;
	case TW_KIND_DICT:
		st = plan_dict(c, v, depth);
		break;
	case TW_KIND_RREF: {
		const tw_rref_id *r = v->u.rref;

		if (r == NULL)
			return tw_fail_static(
				TW_EINVAL,
				"encode: an rref value without its id");
		if (v->flags & TW_VALUE_RREF_HANDLE_)
			return tw_fail_static(TW_WIRE_FORK_NEEDED,
					      "encode: an RRef handle must be "
					      "forked before it is sent");
		c->len += uvarint_len(r->owner) +
			  uvarint_len(r->rref.created_on) +
			  uvarint_len(r->rref.local_id) +
			  uvarint_len(r->fork.created_on) +
			  uvarint_len(r->fork.local_id);
		break;
	}
	case TW_KIND_ERROR: {
		const tw_error *e = v->u.err;

		if (e == NULL || e->kind == TW_OK ||
		    (unsigned)e->kind >= TW_STATUS_COUNT_)
			return tw_fail_static(
				TW_EINVAL,
				"encode: an error value without a valid kind");
		c->len += 1 + uvarint_len(e->origin);
		st = plan_text(c, e->msg, e->msg_len, false);
		break;
	}
	default:
		return tw_fail_static(TW_EINVAL,
				      "encode: a value of unknown kind");
	}
	/* Checked as we go so a huge tree stops early, not after the walk. */
	if (st == TW_OK && c->len > UINT32_MAX)
		return tw_fail_static(TW_EINVAL,
				      "encode: the payload would exceed 4 GiB");
	return st;
}

static tw_status plan_dict(struct plan_ctx *c, const tw_value *v,
			   unsigned depth)
{
	const tw_kv *e = v->u.entries;
	tw_status st = TW_OK;
	uint32_t n = 0;

	if (v->len && e == NULL)
		return tw_fail_static(
			TW_EINVAL,
			"encode: a dict has a length but no entries");
	for (uint32_t i = 0; i < v->len && st == TW_OK; i++) {
		/* An entry never set (tw_value_dict leaves NULL keys) holds
		 * nothing: it is not sent. */
		if (e[i].key == NULL)
			continue;
		n++;
		st = plan_text(c, e[i].key, e[i].key_len, true);
		if (st == TW_OK)
			st = plan(c, &e[i].val, depth + 1);
	}
	if (st != TW_OK)
		return st;
	c->len += uvarint_len(n);
	return dict_keys_ok(v, n);
}

tw_status tw_wire_plan_value(const tw_value *v, tw_wire_plan *out)
{
	struct plan_ctx c = {0};
	tw_status st;

	if (v == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL, "encode: no value or no plan");
	c.out = out;
	st = plan(&c, v, 1);
	if (st != TW_OK)
		return st;
	out->payload_len = c.len;
	out->nseg = c.nseg;
	out->seg_area = c.seg_area;
	return TW_OK;
}

/* ===================== encoder: writer ===================== */

/* Every put checks room: the value may have changed since it was planned
 * (a caller's bug), and that must not become a buffer overrun.
 *
 * Two modes. Planned (plan != NULL): the sizing pass has checked v, the
 * writer fills exactly the planned bytes and sends the plan's tensor
 * copies. Checking (plan == NULL, tw_wire_write_checked): no sizing pass;
 * the writer makes its checks itself as it goes, into whatever room it is
 * given, and says TW_ENOSPC when that is not enough. */
struct wr {
	uint8_t *p;
	uint8_t *end;
	uint32_t nseg;
	uint32_t max_seg;
	const tw_wire_plan *plan;
	tw_wire_seg_fn seg_fn;
	void *ctx;
	uint64_t seg_area; /* checking: as tw_wire_plan's */
	tw_status st;      /* checking: why it stopped (TW_EINVAL if unset) */
};

static bool put_bytes(struct wr *w, const void *src, size_t n)
{
	if ((size_t)(w->end - w->p) < n) {
		w->st = w->plan ? TW_EINVAL : TW_ENOSPC;
		return false;
	}
	if (n)
		memcpy(w->p, src, n);
	w->p += n;
	return true;
}

static bool put_u8(struct wr *w, uint8_t b)
{
	return put_bytes(w, &b, 1);
}

static bool put_uvarint_slow(struct wr *w, uint64_t v)
{
	uint8_t b[TW_WIRE_VARINT_MAX];
	unsigned n = 0;

	while (v >= 0x80) {
		b[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	b[n++] = (uint8_t)v;
	return put_bytes(w, b, n);
}

static inline bool put_uvarint(struct wr *w, uint64_t v)
{
	if (v < 0x80 && w->p != w->end) {
		*w->p++ = (uint8_t)v; /* one byte: most lengths and counts */
		return true;
	}
	if (v < 0x4000 && w->end - w->p >= 2) {
		w->p[0] = (uint8_t)(v | 0x80);
		w->p[1] = (uint8_t)(v >> 7);
		w->p += 2;
		return true;
	}
	return put_uvarint_slow(w, v);
}

static bool write_value(struct wr *w, const tw_value *v, unsigned depth);

/* A check of the checking mode failed, for reason (static). */
static bool wr_bad(struct wr *w, tw_status st, const char *reason)
{
	w->st = tw_fail_static(st, reason);
	return false;
}

static bool put_text(struct wr *w, const char *s, uint32_t n, bool key)
{
	if (w->plan == NULL && !text_ok(s, n, key))
		return wr_bad(
			w, TW_EINVAL,
			"encode: a string or dict key is too long, not valid UTF-8, or (a key) holds a NUL");
	return put_uvarint(w, n) && put_bytes(w, s, n) && put_u8(w, 0);
}

static bool write_tensor(struct wr *w, const tw_tensor *t)
{
	uint32_t idx = w->nseg;
	tw_tensor snap;
	size_t span;
	bool ok;

	if (idx >= w->max_seg)
		return wr_bad(w, w->plan ? TW_EINVAL : TW_ENOSPC,
			      "encode: more than 4096 tensors in one message");
	if (w->plan != NULL && idx < TW_WIRE_PLAN_TENSORS) {
		/* The sizing pass's checked copy: the caller's tensor is not
		 * read again. */
		t = &w->plan->tensors[idx];
		span = (size_t)w->plan->spans[idx];
	} else {
		/* Checked here, in our own copy, which is what is sent. */
		if (!tensor_snap(t, &snap, &span))
			return wr_bad(
				w, TW_EINVAL,
				"encode: a tensor is malformed (dtype, shape, strides or data)");
		t = &snap;
		if (w->plan == NULL) {
			w->seg_area = align_up(w->seg_area,
					       TW_FRAME_SEG_ALIGN) +
				      span;
			if (w->seg_area > TW_FRAME_MAX_TOTAL)
				return wr_bad(
					w, TW_EINVAL,
					"encode: the tensors' bytes exceed the frame limit");
		}
	}
	ok = put_u8(w, t->dtype) && put_u8(w, t->ndim);
	for (unsigned d = 0; ok && d < t->ndim; d++)
		ok = put_uvarint(w, (uint64_t)t->shape[d]);
	for (unsigned d = 0; ok && d < t->ndim; d++)
		ok = put_uvarint(w, (uint64_t)t->strides[d]);
	ok = ok && put_uvarint(w, span) && put_uvarint(w, idx);
	if (!ok)
		return false;
	w->nseg++;
	w->seg_fn(w->ctx, idx, t, span);
	return true;
}

static bool write_dict(struct wr *w, const tw_value *v, unsigned depth)
{
	const tw_kv *e = v->u.entries;
	uint32_t n = 0;

	if (v->len && e == NULL)
		return wr_bad(w, TW_EINVAL,
			      "encode: a dict has a length but no entries");
	for (uint32_t i = 0; i < v->len; i++)
		n += e[i].key != NULL;
	if (!put_uvarint(w, n))
		return false;
	for (uint32_t i = 0; i < v->len; i++) {
		if (e[i].key == NULL)
			continue;
		if (!put_text(w, e[i].key, e[i].key_len, true) ||
		    !write_value(w, &e[i].val, depth + 1))
			return false;
	}
	if (w->plan == NULL && n > 1) {
		tw_status st = dict_keys_ok(v, n);
		if (st != TW_OK) {
			w->st = st; /* dict_keys_ok said why */
			return false;
		}
	}
	return true;
}

static bool write_value(struct wr *w, const tw_value *v, unsigned depth)
{
	if (is_container(v->kind) && depth > TW_VALUE_MAX_DEPTH)
		return wr_bad(
			w, TW_EINVAL,
			"encode: containers nested more than TW_VALUE_MAX_DEPTH (64) deep");
	if (!put_u8(w, v->kind))
		return false;
	switch (v->kind) {
	case TW_KIND_NONE:
		return true;
	case TW_KIND_BOOL:
		return put_u8(w, v->u.b ? 1 : 0);
	case TW_KIND_INT:
		return put_uvarint(w, zigzag(v->u.i));
	case TW_KIND_DOUBLE: {
		uint64_t bits;

		memcpy(&bits, &v->u.d, sizeof(bits));
		bits = htole64(bits);
		return put_bytes(w, &bits, sizeof(bits));
	}
	case TW_KIND_STRING:
		return put_text(w, v->u.str, v->len, false);
	case TW_KIND_BYTES:
		if (w->plan == NULL && v->len && v->u.str == NULL)
			return wr_bad(
				w, TW_EINVAL,
				"encode: a bytes value is too long or has no data");
		return put_uvarint(w, v->len) && put_bytes(w, v->u.str, v->len);
	case TW_KIND_TENSOR:
		return write_tensor(w, v->u.tensor);
	case TW_KIND_LIST:
	case TW_KIND_TUPLE:
		if (w->plan == NULL && v->len && v->u.items == NULL)
			return wr_bad(
				w, TW_EINVAL,
				"encode: a list or tuple has a length but no items");
		if (!put_uvarint(w, v->len))
			return false;
		for (uint32_t i = 0; i < v->len; i++)
			if (!write_value(w, &v->u.items[i], depth + 1))
				return false;
		return true;
	case TW_KIND_DICT:
		return write_dict(w, v, depth);
	case TW_KIND_RREF: {
		const tw_rref_id *r = v->u.rref;

		if (r == NULL)
			return wr_bad(w, TW_EINVAL,
				      "encode: an rref value without its id");
		if (v->flags & TW_VALUE_RREF_HANDLE_)
			return wr_bad(w, TW_WIRE_FORK_NEEDED,
				      "encode: an RRef handle must be forked "
				      "before it is sent");
		return put_uvarint(w, r->owner) &&
		       put_uvarint(w, r->rref.created_on) &&
		       put_uvarint(w, r->rref.local_id) &&
		       put_uvarint(w, r->fork.created_on) &&
		       put_uvarint(w, r->fork.local_id);
	}
	case TW_KIND_ERROR: {
		const tw_error *e = v->u.err;

		if (e == NULL || e->kind == TW_OK ||
		    (unsigned)e->kind >= TW_STATUS_COUNT_)
			return wr_bad(
				w, TW_EINVAL,
				"encode: an error value without a valid kind");
		return put_u8(w, (uint8_t)e->kind) &&
		       put_uvarint(w, e->origin) &&
		       put_text(w, e->msg, e->msg_len, false);
	}
	default:
		return wr_bad(w, TW_EINVAL, "encode: a value of unknown kind");
	}
}

tw_status tw_wire_write_value(const tw_value *v, const tw_wire_plan *plan,
			      uint8_t *dst, tw_wire_seg_fn seg_fn, void *ctx)
{
	struct wr w = {
		.p = dst,
		.end = dst + plan->payload_len,
		.max_seg = plan->nseg,
		.plan = plan,
		.seg_fn = seg_fn,
		.ctx = ctx,
	};

	if (!write_value(&w, v, 1) || w.p != w.end || w.nseg != plan->nseg)
		return tw_fail_static(TW_EINVAL,
				      "encode: the value changed "
				      "between planning and writing");
	return TW_OK;
}

tw_status tw_wire_write_checked(const tw_value *v, uint8_t *dst, size_t room,
				uint32_t max_seg, tw_wire_seg_fn seg_fn,
				void *ctx, tw_wire_plan *out)
{
	struct wr w = {
		.p = dst,
		.end = dst + room,
		.max_seg = max_seg,
		.seg_fn = seg_fn,
		.ctx = ctx,
		.st = TW_EINVAL,
	};

	if (!write_value(&w, v, 1))
		return w.st;
	out->payload_len = (uint64_t)(w.p - dst);
	out->nseg = w.nseg;
	out->seg_area = w.seg_area;
	return TW_OK;
}

/* ===================== decoder ===================== */

/*
 * One walker reads a payload, whatever it reads it for, so each check is
 * written once (walk_value below). Its modes:
 *
 *   W_MEASURE  pass 1 (tw_wire_check): builds nothing; counts the arena
 *              bytes of the tree and the sort scratch of its largest dict.
 *   W_BUILD    pass 2 (tw_wire_build), on bytes pass 1 accepted: builds
 *              the tree in the arena pass 1 sized, and makes the two
 *              checks that need memory (unique dict keys, one tensor per
 *              segment).
 *   W_ONE      both at once (tw_wire_decode_small), into a small arena:
 *              the common call, each byte read once. A tree that outgrows
 *              the arena, or a dict that needs sort scratch, stops it
 *              without a fault (TW_ENOSPC): the caller then runs the two
 *              passes.
 *
 * Two kinds of check. Those on where the walk is -- the bounds of every
 * read, arena room, the indexes it stores through (ndim, segment), the
 * recursion depth, counts against the bytes left, where the payload ends
 * -- keep the walker itself safe on any input, and run in every mode.
 * Those on what the bytes say -- UTF-8 and terminators, dtypes, shapes and
 * spans, bool and error values, worker id ranges, the node limit -- go
 * through PROVED: pass 2 walks the bytes pass 1 accepted with the same
 * code, so it takes pass 1's word for them instead of paying twice. (The
 * frame does not change while it is decoded: it is the receiver's
 * buffer.) Should pass 2 fail anything but its own two checks, the passes
 * disagree: reported as an internal fault, which tests and the fuzzer
 * watch for.
 */
enum walk_mode { W_MEASURE, W_BUILD, W_ONE };

/* A check on what the bytes say: made unless pass 1 made it already. */
#define PROVED(m, ok) ((m) == W_BUILD || (ok))

/* Read cursor. Every read is bounds-checked in every mode. */
struct rd {
	const uint8_t *p;
	const uint8_t *end;
	const char *why; /* the first fault */
};

static bool rd_fail(struct rd *r, const char *why)
{
	if (r->why == NULL)
		r->why = why;
	return false;
}

static inline size_t rd_left(const struct rd *r)
{
	return (size_t)(r->end - r->p);
}

static bool get_u8(struct rd *r, uint8_t *out)
{
	if (r->p == r->end)
		return rd_fail(r, "value: truncated");
	*out = *r->p++;
	return true;
}

/*
 * LEB128, canonical only: at most 10 bytes, the 10th may only carry bit 63,
 * and the last byte is non-zero unless it is the only one. One encoding per
 * number keeps re-encoding byte-exact and closes a covert channel. (Part of
 * reading, so made in every mode; only long varints get here.)
 */
static bool get_uvarint_slow(struct rd *r, uint64_t *out)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < TW_WIRE_VARINT_MAX; i++) {
		uint8_t b;

		if (r->p == r->end)
			return rd_fail(r, "varint: truncated");
		b = *r->p++;
		if (i == TW_WIRE_VARINT_MAX - 1 && b > 1)
			return rd_fail(r, "varint: overflows 64 bits");
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			if (b == 0 && i > 0)
				return rd_fail(r, "varint: overlong encoding");
			*out = v;
			return true;
		}
	}
	return rd_fail(r, "varint: overflows 64 bits");
}

/* One byte (most lengths, counts and dims) inline; the rest, with every
 * check, out of line. */
static inline bool get_uvarint(struct rd *r, uint64_t *out)
{
	if (r->p != r->end && *r->p < 0x80) {
		*out = *r->p++;
		return true;
	}
	/* Two bytes (dims and spans up to 16 KiB): the second is the last
	 * and, not being the only one, must be non-zero. */
	if (r->end - r->p >= 2 && r->p[1] < 0x80 && r->p[1] != 0) {
		*out = (uint64_t)(r->p[0] & 0x7f) | (uint64_t)r->p[1] << 7;
		r->p += 2;
		return true;
	}
	return get_uvarint_slow(r, out);
}

/* A varint that must fit a u32 (worker ids): why names the field. */
static inline bool get_u32(struct rd *r, uint32_t *out, const char *why,
			   enum walk_mode m)
{
	uint64_t v;

	if (!get_uvarint(r, &v))
		return false;
	if (!PROVED(m, v <= UINT32_MAX))
		return rd_fail(r, why);
	*out = (uint32_t)v;
	return true;
}

/* len, bytes, NUL, UTF-8 (the STRING body, dict keys, error messages). */
static inline bool get_text(struct rd *r, const char **s, uint32_t *len,
			    bool key, enum walk_mode m)
{
	uint64_t n;

	if (!get_uvarint(r, &n))
		return false;
	if (!PROVED(m, n <= MAX_STR_LEN))
		return rd_fail(r, "string: length over 2^32 - 2");
	if (n >= rd_left(r))
		return rd_fail(r, "string: runs past the payload");
	if (!PROVED(m, r->p[n] == 0))
		return rd_fail(r, "string: missing NUL terminator");
	if (!PROVED(m, !key || !memchr(r->p, 0, n)))
		return rd_fail(r, "dict: key contains NUL");
	if (!PROVED(m, tw_utf8_valid((const char *)r->p, n)))
		return rd_fail(r, "string: invalid UTF-8");
	*s = (const char *)r->p;
	*len = (uint32_t)n;
	r->p += n + 1;
	return true;
}

/* Copied over a descriptor to clear it: plain vector stores, where a
 * memset of the struct becomes a rep stos with its start-up cost. */
static const tw_tensor zero_tensor;

/* A tensor descriptor, read into *t (data and buf left to the caller);
 * *seg gets its segment index. Inlined into each mode's walker, as
 * walk_value is, so its tests of m fold away. */
static inline __attribute__((always_inline)) bool
get_tensor(struct rd *r, const tw_wire_in *in, tw_tensor *t, uint32_t *seg,
	   enum walk_mode m)
{
	uint8_t dtype, ndim;
	uint64_t nbytes, idx;
	size_t span;

	*t = zero_tensor;
	if (!get_u8(r, &dtype) || !get_u8(r, &ndim))
		return false;
	if (!PROVED(m, tw_dtype_size((tw_dtype)dtype) != 0))
		return rd_fail(r, "tensor: unknown dtype");
	/* Bounds the shape and strides stores below: every mode. */
	if (ndim > TW_TENSOR_MAX_DIMS)
		return rd_fail(r, "tensor: ndim over 8");
	t->dtype = dtype;
	t->ndim = ndim;
	for (unsigned i = 0; i < 2u * ndim; i++) {
		uint64_t x;

		if (!get_uvarint(r, &x))
			return false;
		if (!PROVED(m, x <= INT64_MAX))
			return rd_fail(r,
				       "tensor: shape or stride over 2^63 - 1");
		if (i < ndim)
			t->shape[i] = (int64_t)x;
		else
			t->strides[i - ndim] = (int64_t)x;
	}
	if (!get_uvarint(r, &nbytes) || !get_uvarint(r, &idx))
		return false;
	/* An index into the segment offsets and bitmap: every mode. Below
	 * seg_count (a u32), it fits a u32. */
	if (idx >= in->hdr->seg_count)
		return rd_fail(r, "tensor: segment index out of range");
	*seg = (uint32_t)idx;
	if (m == W_BUILD)
		return true; /* what follows, pass 1 has PROVED */
	/* tensor.c's own rules (numel, nbytes and span fit int64), so every
	 * decoded tensor is one the tensor API accepts. Any non-NULL data
	 * will do for the check. */
	t->data = (void *)in->frame;
	if (tw_tensor_span(t, &span) != TW_OK)
		return rd_fail(r, "tensor: element count or span overflows");
	if ((uint64_t)span != nbytes)
		return rd_fail(
			r,
			"tensor: nbytes differs from the span of shape and strides");
	if (nbytes != tw_frame_seg_len(in->frame, *seg))
		return rd_fail(
			r, "tensor: nbytes differs from its segment length");
	return true;
}

struct walk {
	struct rd r;
	const tw_wire_in *in;
	/* in's limits, copied: every node checks them, and a load from the
	 * walk beats two dependent ones through in. */
	uint64_t nodes_left; /* values + dict entries still allowed (not
			      * counted in W_BUILD) */
	uint32_t max_depth;
	uint32_t ntensors;
	uint32_t nrref; /* RREF nodes (the receiver adopts them) */
	/* W_MEASURE */
	uint64_t need;     /* node bytes */
	uint32_t max_dict; /* largest dict that needs sort scratch */
	/* W_BUILD, W_ONE */
	const uint64_t *offsets;
	uint64_t *bitmap; /* segments taken */
	const tw_kv **scratch;
	uint8_t *next; /* node bump pointer */
	uint8_t *end;
	bool own_check; /* failed one of the two that need memory */
	bool too_big;   /* W_ONE: the tree outgrew the arena */
};

/*
 * Room for a node of n bytes: the arena's next bytes when building. When
 * measuring, the bytes are counted and the caller's scratch stands in, so
 * the walk stores the same way in every mode. NULL when the arena is
 * full: no fault in one pass (the caller runs two), pass 1 and 2 disagree
 * in pass 2.
 */
static inline void *node_alloc(struct walk *w, size_t n, void *scratch,
			       enum walk_mode m)
{
	void *p = w->next;

	n = (size_t)align_up(n, ARENA_ALIGN);
	if (m == W_MEASURE) {
		w->need += n;
		return scratch;
	}
	if ((size_t)(w->end - w->next) < n) {
		if (m == W_ONE)
			w->too_big = true;
		rd_fail(&w->r, "internal: decode arena overrun");
		return NULL;
	}
	w->next += n;
	return p;
}

/* The receiver's node limit (a bound on its work and memory): pass 1
 * counts for pass 2. */
static inline bool count_nodes(struct walk *w, uint64_t n, enum walk_mode m)
{
	if (m == W_BUILD)
		return true;
	if (n > w->nodes_left)
		return rd_fail(&w->r, "value: too many nodes");
	w->nodes_left -= n;
	return true;
}

/* A walk over in's payload, set up field by field: zeroing the whole
 * struct (`= {0}`) becomes a rep stos, whose start-up cost the one pass
 * would pay on every message. The arena's fields are arena_init's;
 * walk_payload places the cursor. */
static inline void walk_start(struct walk *w, const tw_wire_in *in)
{
	w->r.why = NULL;
	w->in = in;
	w->nodes_left = in->max_nodes;
	w->max_depth = in->max_depth;
	w->ntensors = 0;
	w->nrref = 0;
	w->need = 0;
	w->max_dict = 0;
	w->own_check = false;
	w->too_big = false;
}

/* One of the two checks that need memory (bitmap, sort scratch) failed. */
static bool own_fail(struct walk *w, const char *why)
{
	w->own_check = true;
	return rd_fail(&w->r, why);
}

static bool walk_measure(struct walk *w, tw_value *v, unsigned depth);
static bool walk_build(struct walk *w, tw_value *v, unsigned depth);
static bool walk_one(struct walk *w, tw_value *v, unsigned depth);

/* The walker's recursion, into the copy of itself for mode m. */
static inline __attribute__((always_inline)) bool
walk_child(struct walk *w, tw_value *v, unsigned depth, enum walk_mode m)
{
	switch (m) {
	case W_MEASURE:
		return walk_measure(w, v, depth);
	case W_BUILD:
		return walk_build(w, v, depth);
	default:
		return walk_one(w, v, depth);
	}
}

/*
 * Read one value into *v (any node when measuring: a scratch). Always
 * inlined into one function per mode (below), where m is a constant: the
 * one pass, the hot path, carries no test of its mode, and PROVED costs
 * pass 2 nothing.
 */
static inline __attribute__((always_inline)) bool
walk_value(struct walk *w, tw_value *v, unsigned depth, enum walk_mode m)
{
	struct rd *r = &w->r;
	uint8_t tag;

	memset(v, 0, sizeof(*v));
	v->flags = TW_VALUE_BORROWED;
	if (!count_nodes(w, 1, m) || !get_u8(r, &tag))
		return false;
	/* Bounds the recursion too: every mode. */
	if (is_container(tag) && depth > w->max_depth)
		return rd_fail(r, "value: nesting too deep");
	v->kind = tag;
	switch (tag) {
	case TW_KIND_NONE:
		return true;
	case TW_KIND_BOOL: {
		uint8_t byte;

		if (!get_u8(r, &byte))
			return false;
		if (!PROVED(m, byte <= 1))
			return rd_fail(r, "bool: not 0 or 1");
		v->u.b = byte != 0;
		return true;
	}
	case TW_KIND_INT: {
		uint64_t u;

		if (!get_uvarint(r, &u))
			return false;
		v->u.i = unzigzag(u);
		return true;
	}
	case TW_KIND_DOUBLE: {
		uint64_t bits;

		if (rd_left(r) < 8)
			return rd_fail(r, "double: truncated");
		memcpy(&bits, r->p, 8);
		bits = le64toh(bits);
		memcpy(&v->u.d, &bits, 8);
		r->p += 8;
		return true;
	}
	case TW_KIND_STRING:
		return get_text(r, &v->u.str, &v->len, false, m);
	case TW_KIND_BYTES: {
		uint64_t n;

		if (!get_uvarint(r, &n))
			return false;
		if (!PROVED(m, n <= MAX_STR_LEN))
			return rd_fail(r, "bytes: length over 2^32 - 2");
		if (n > rd_left(r))
			return rd_fail(r, "bytes: run past the payload");
		v->u.str = (const char *)r->p;
		v->len = (uint32_t)n;
		r->p += n;
		return true;
	}
	case TW_KIND_TENSOR: {
		/* Read straight into its node: no copy of the descriptor. In
		 * one pass, a full arena sends us to two passes (too_big),
		 * whose first reports any fault of the descriptor itself. */
		tw_tensor scratch;
		tw_tensor *t = node_alloc(w, sizeof(*t), &scratch, m);
		uint32_t seg;

		if (t == NULL || !get_tensor(r, w->in, t, &seg, m))
			return false;
		w->ntensors++;
		if (m == W_MEASURE) {
			/* Indices are below seg_count, so one more tensor
			 * than segments means some segment is used twice. */
			if (w->ntensors > w->in->hdr->seg_count)
				return rd_fail(
					r, "tensor: segment referenced twice");
			return true;
		}
		uint64_t bit = UINT64_C(1) << (seg % 64);
		if (w->bitmap[seg / 64] & bit)
			return own_fail(w, "tensor: segment referenced twice");
		w->bitmap[seg / 64] |= bit;
		/* Zero copy: the bytes stay in the receive buffer. No
		 * reference: the message holds the one that keeps it alive. */
		t->data = (void *)(w->in->frame + w->offsets[seg]);
		t->buf = w->in->buf;
		v->u.tensor = t;
		v->flags |= TW_VALUE_WIRE_CHECKED_;
		return true;
	}
	case TW_KIND_LIST:
	case TW_KIND_TUPLE: {
		tw_value scratch;
		tw_value *items;
		uint64_t n;

		if (!get_uvarint(r, &n))
			return false;
		/* Bound the count by what the bytes left could hold before
		 * walking or reserving anything for it (payload_len is a
		 * u32, so n fits one too). */
		if (n > rd_left(r) / MIN_ITEM_BYTES)
			return rd_fail(r, "list: count exceeds the bytes left");
		v->len = (uint32_t)n;
		if (n == 0)
			return true;
		items = node_alloc(w, (size_t)n * sizeof(tw_value), &scratch,
				   m);
		if (items == NULL)
			return false;
		v->u.items = items;
		for (uint32_t i = 0; i < n; i++)
			if (!walk_child(w, m == W_MEASURE ? items : &items[i],
					depth + 1, m))
				return false;
		return true;
	}
	case TW_KIND_DICT: {
		tw_kv scratch;
		tw_kv *e;
		uint64_t n;

		if (!get_uvarint(r, &n))
			return false;
		if (n > rd_left(r) / MIN_ENTRY_BYTES)
			return rd_fail(r, "dict: count exceeds the bytes left");
		if (!count_nodes(w, n, m))
			return false;
		if (n > TW_WIRE_DICT_SMALL) {
			/* Its duplicate-key check sorts, in scratch that
			 * pass 1 sizes and one pass does not have. */
			if (m == W_MEASURE && n > w->max_dict)
				w->max_dict = (uint32_t)n;
			if (m == W_ONE) {
				w->too_big = true;
				return rd_fail(r,
					       "internal: dict needs scratch");
			}
		}
		v->len = (uint32_t)n;
		if (n == 0)
			return true;
		e = node_alloc(w, (size_t)n * sizeof(tw_kv), &scratch, m);
		if (e == NULL)
			return false;
		v->u.entries = e;
		for (uint32_t i = 0; i < n; i++) {
			tw_kv *k = m == W_MEASURE ? e : &e[i];

			k->reserved_ = 0;
			if (!get_text(r, &k->key, &k->key_len, true, m) ||
			    !walk_child(w, &k->val, depth + 1, m))
				return false;
		}
		if (m == W_MEASURE)
			return true;
		const tw_kv *small[TW_WIRE_DICT_SMALL];
		const tw_kv **p = n <= TW_WIRE_DICT_SMALL ? small : w->scratch;
		for (uint32_t i = 0; i < n; i++)
			p[i] = &e[i];
		if (dup_keys(p, (uint32_t)n))
			return own_fail(w, "dict: duplicate key");
		return true;
	}
	case TW_KIND_RREF: {
		tw_rref_id scratch;
		tw_rref_id *id = node_alloc(w, sizeof(*id), &scratch, m);

		w->nrref++;

		if (id == NULL)
			return false;
		memset(id, 0, sizeof(*id));
		v->u.rref = id;
		return get_u32(r, &id->owner, "rref: owner over 2^32 - 1", m) &&
		       get_u32(r, &id->rref.created_on,
			       "rref: created_on over 2^32 - 1", m) &&
		       get_uvarint(r, &id->rref.local_id) &&
		       get_u32(r, &id->fork.created_on,
			       "rref: fork created_on over 2^32 - 1", m) &&
		       get_uvarint(r, &id->fork.local_id);
	}
	case TW_KIND_ERROR: {
		tw_error scratch;
		tw_error *e = node_alloc(w, sizeof(*e), &scratch, m);
		uint8_t kind;

		if (e == NULL || !get_u8(r, &kind))
			return false;
		if (!PROVED(m, kind != TW_OK && kind < TW_STATUS_COUNT_))
			return rd_fail(
				r, "error: kind is not a tw_status failure");
		memset(e, 0, sizeof(*e));
		e->kind = (tw_status)kind;
		v->u.err = e;
		return get_u32(r, &e->origin, "error: origin over 2^32 - 1",
			       m) &&
		       get_text(r, &e->msg, &e->msg_len, false, m);
	}
	default:
		return rd_fail(r, "value: unknown tag");
	}
}

/* Pass 1 builds nothing: its nodes are this frame's, whatever v says, so
 * the compiler sees no store of them outlive it and drops them. */
static bool walk_measure(struct walk *w, tw_value *v, unsigned depth)
{
	tw_value node;

	(void)v;
	return walk_value(w, &node, depth, W_MEASURE);
}

static bool walk_build(struct walk *w, tw_value *v, unsigned depth)
{
	return walk_value(w, v, depth, W_BUILD);
}

static bool walk_one(struct walk *w, tw_value *v, unsigned depth)
{
	return walk_value(w, v, depth, W_ONE);
}

static const uint8_t *payload_start(const tw_wire_in *in)
{
	return in->frame + TW_FRAME_HDR_SIZE + 8u * (size_t)in->hdr->seg_count;
}

/* The walk over the whole payload: its one value, then no byte may be
 * left over and every segment must have been taken by a tensor. (Cheap,
 * and what shows the passes disagree: every mode.) */
static bool walk_payload(struct walk *w, tw_value *out, enum walk_mode m)
{
	const uint8_t *p = payload_start(w->in);

	w->r.p = p;
	w->r.end = p + w->in->hdr->payload_len;
	if (!walk_child(w, out, 1, m))
		return false;
	if (w->r.p != w->r.end)
		return rd_fail(&w->r,
			       "value: trailing bytes after the payload value");
	if (w->ntensors != w->in->hdr->seg_count)
		return rd_fail(&w->r,
			       "frame: segment not referenced by any tensor");
	return true;
}

/* Scratch regions ahead of the nodes: segment offsets, segment bitmap, dict
 * sort pointers. */
static size_t offsets_bytes(uint32_t nseg)
{
	return (size_t)nseg * sizeof(uint64_t);
}

static size_t bitmap_bytes(uint32_t nseg)
{
	return ((size_t)nseg + 63) / 64 * sizeof(uint64_t);
}

tw_status tw_wire_check(const tw_wire_in *in, tw_wire_layout *lay)
{
	uint32_t nseg = in->hdr->seg_count;
	struct walk w;
	tw_value scratch;
	uint64_t front;

	walk_start(&w, in);
	if (!walk_payload(&w, &scratch, W_MEASURE))
		return tw_fail_static(TW_EPROTO, w.r.why);
	front = offsets_bytes(nseg) + bitmap_bytes(nseg) +
		(uint64_t)w.max_dict * sizeof(const tw_kv *);
	/* Nodes <= max_nodes and tensors <= 65535 keep this far below
	 * SIZE_MAX on 64-bit; the check is for 32-bit hosts. */
	if (front + w.need > SIZE_MAX)
		return tw_fail_static(
			TW_EPROTO,
			"value: decoded tree too large for this host");
	lay->nodes_off = (size_t)front;
	lay->arena_size = (size_t)(front + w.need);
	lay->nrref = w.nrref;
	return TW_OK;
}

/* Point w at arena (size bytes): segment offsets (from in->seg_offsets,
 * or found here), a cleared segment bitmap, sort scratch up to nodes_off,
 * nodes after. False when the layout is broken. */
static inline bool arena_init(struct walk *w, uint8_t *a, size_t size,
			      size_t nodes_off)
{
	const tw_wire_in *in = w->in;
	uint32_t nseg = in->hdr->seg_count;
	size_t boff = offsets_bytes(nseg);
	size_t soff = boff + bitmap_bytes(nseg);

	if (nodes_off < soff || nodes_off > size)
		return false;
	w->offsets = (const uint64_t *)a;
	w->bitmap = (uint64_t *)(a + boff);
	w->scratch = (const tw_kv **)(a + soff);
	w->next = a + nodes_off;
	w->end = a + size;
	if (nseg == 1 && in->seg_offsets != NULL) {
		/* The common message, one tensor: two stores, no calls. */
		w->bitmap[0] = 0;
		memcpy(a, in->seg_offsets, sizeof(uint64_t));
	} else if (nseg) {
		memset(w->bitmap, 0, bitmap_bytes(nseg));
		if (in->seg_offsets != NULL)
			/* The caller's check of the layout found them. */
			memcpy(a, in->seg_offsets, offsets_bytes(nseg));
		else if (tw_frame_check_segments(in->frame, in->hdr->total_len,
						 in->hdr,
						 (uint64_t *)a) != TW_OK)
			/* Checked by the caller; this only finds them. */
			return false;
	}
	return true;
}

tw_status tw_wire_build(const tw_wire_in *in, const tw_wire_layout *lay,
			void *arena, tw_value *out)
{
	struct walk w;

	*out = tw_value_none();
	walk_start(&w, in);
	if (!arena_init(&w, arena, lay->arena_size, lay->nodes_off)) {
		rd_fail(&w.r, "internal: decode arena layout");
	} else if (walk_payload(&w, out, W_BUILD)) {
		return TW_OK;
	} else if (!w.own_check) {
		/* Anything but pass 2's own checks was pass 1's to find:
		 * say so, so tests and the fuzzer notice when the two
		 * passes disagree. */
		w.r.why = "internal: pass 2 refused what pass 1 accepted";
	}
	*out = tw_value_none();
	return tw_fail_static(TW_EPROTO, w.r.why);
}

tw_status tw_wire_decode_small(const tw_wire_in *in, void *arena, size_t size,
			       tw_wire_layout *lay, tw_value *out)
{
	uint32_t nseg = in->hdr->seg_count;
	size_t soff = offsets_bytes(nseg) + bitmap_bytes(nseg);
	struct walk w;

	*out = tw_value_none();
	walk_start(&w, in);
	/* No dict scratch: dicts that need it go to two passes. */
	if ((nseg != 0 && in->seg_offsets == NULL) ||
	    !arena_init(&w, arena, size, soff))
		return TW_ENOSPC;
	if (!walk_payload(&w, out, W_ONE)) {
		*out = tw_value_none();
		if (w.too_big)
			return TW_ENOSPC;
		return tw_fail_static(TW_EPROTO, w.r.why);
	}
	lay->nodes_off = soff;
	lay->arena_size = (size_t)(w.next - (uint8_t *)arena);
	lay->nrref = w.nrref;
	return TW_OK;
}
