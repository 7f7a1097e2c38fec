/* Unit tests for the message codec (rpc/message.c, rpc/value_wire.c):
 * round trips of every kind and dtype, zero copy both ways, limits, pools. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/tensorwire.h>

#include "rpc/value_wire.h"

/* ---- helpers ---- */

static tw_frame_hdr hdr_of(unsigned type)
{
	tw_frame_hdr h = {0};
	h.type = (uint8_t)type;
	h.req_id = 42;
	h.src = 1;
	h.dst = 2;
	h.timeout_ms = 100;
	return h;
}

/* The frame linearised into a fresh 64-aligned receive buffer. */
static tw_buf *linearise(const tw_out_msg *m)
{
	tw_buf *b;

	cr_assert_eq(tw_buf_alloc((size_t)m->total_len, &b), TW_OK);
	tw_out_msg_copy(m, b->data);
	return b;
}

static tw_buf_pool *mkpool(size_t size, uint32_t count);

/* v encoded with a pool (64 KiB buffers: the one-pass encoder whenever it
 * fits) gives exactly ref's bytes, and holds nothing once released. */
static void same_with_pool(const tw_frame_hdr *h, const tw_value *v,
			   const tw_out_msg *ref)
{
	tw_buf_pool *pool = mkpool(64u << 10, 2);
	tw_out_msg m;
	tw_status st = tw_msg_encode(pool, h, v, &m);

	cr_assert_eq(st, TW_OK, "pool encode: %s", tw_status_name(st));
	cr_assert_eq(m.total_len, ref->total_len);
	cr_assert_eq(m.nseg, ref->nseg);
	uint8_t *a = malloc((size_t)ref->total_len + 1);
	uint8_t *b = malloc((size_t)ref->total_len + 1);
	tw_out_msg_copy(ref, a);
	tw_out_msg_copy(&m, b);
	cr_assert_eq(memcmp(a, b, (size_t)ref->total_len), 0,
		     "one-pass frame differs from the two-pass one");
	free(a);
	free(b);
	tw_out_msg_release(&m);
	cr_assert_eq(tw_buf_pool_in_use(pool), 0);
	cr_assert_eq(tw_buf_pool_destroy(pool), TW_OK);
}

/* Encode v as type, decode the copy, compare; returns the decoded message
 * (caller releases it and the buffer) when keep is set. */
static void round_trip_keep(unsigned type, const tw_value *v, tw_in_msg *in,
			    tw_buf **rb)
{
	tw_frame_hdr h = hdr_of(type);
	tw_out_msg m;
	tw_status st;

	st = tw_msg_encode(NULL, &h, v, &m);
	cr_assert_eq(st, TW_OK, "encode: %s", tw_status_name(st));
	*rb = linearise(&m);
	st = tw_msg_decode(*rb, 0, (size_t)m.total_len, NULL, NULL, in);
	cr_assert_eq(st, TW_OK, "decode: %s (%s)", tw_status_name(st),
		     tw_errmsg(st));
	cr_assert(tw_value_equal(v, &in->payload), "decoded value differs");
	cr_assert_eq(in->hdr.type, type);
	cr_assert_eq(in->hdr.req_id, 42);
	cr_assert_eq(in->hdr.src, 1);
	cr_assert_eq(in->hdr.dst, 2);
	cr_assert_eq(in->hdr.timeout_ms, 100);
	cr_assert_eq(in->hdr.total_len, m.total_len);
	cr_assert_eq(tw_buf_refcnt(*rb), 2);

	/* Given the header a transport decoded, as the agent does: the
	 * same message. */
	tw_in_msg again;
	st = tw_msg_decode(*rb, 0, (size_t)m.total_len, &in->hdr, NULL, &again);
	cr_assert_eq(st, TW_OK, "decode with header: %s", tw_errmsg(st));
	cr_assert(tw_value_equal(v, &again.payload), "decoded value differs");
	cr_assert_eq(memcmp(&again.hdr, &in->hdr, sizeof(in->hdr)), 0);
	tw_in_msg_release(&again);

	/* Canonical encoding: re-encoding the decoded value gives the same
	 * bytes (tensors are renumbered in order, as the encoder does). */
	tw_out_msg m2;
	cr_assert_eq(tw_msg_encode(NULL, &h, &in->payload, &m2), TW_OK);
	cr_assert_eq(m2.total_len, m.total_len);
	uint8_t *copy = malloc((size_t)m2.total_len + 1);
	tw_out_msg_copy(&m2, copy);
	cr_assert_eq(memcmp(copy, (*rb)->data, (size_t)m.total_len), 0,
		     "re-encoding is not byte-identical");
	free(copy);
	tw_out_msg_release(&m2);

	/* From a pool, small messages take the one-pass encoder (message.c,
	 * encode_one_pass): the same bytes as the two passes above. */
	same_with_pool(&h, v, &m);
	tw_out_msg_release(&m);
}

static void round_trip(unsigned type, const tw_value *v)
{
	tw_in_msg in;
	tw_buf *rb;

	round_trip_keep(type, v, &in, &rb);
	tw_in_msg_release(&in);
	cr_assert_eq(in.payload.kind, TW_KIND_NONE);
	cr_assert_eq(tw_buf_refcnt(rb), 1);
	tw_buf_release(rb);
}

static void rt_ret(tw_value v)
{
	round_trip(TW_MSG_RET, &v);
	tw_value_destroy(&v);
}

static tw_value str(const char *s)
{
	tw_value v;
	cr_assert_eq(tw_value_cstring(&v, s), TW_OK);
	return v;
}

/* A contiguous tensor value with patterned bytes; *t keeps a handle. */
static tw_value tensor_val(tw_dtype dt, unsigned ndim, const int64_t *shape,
			   tw_tensor *keep)
{
	tw_tensor t;
	tw_value v;
	size_t n;

	cr_assert_eq(tw_tensor_alloc(&t, dt, ndim, shape), TW_OK);
	cr_assert_eq(tw_tensor_nbytes(&t, &n), TW_OK);
	for (size_t i = 0; i < n; i++)
		((uint8_t *)t.data)[i] = (uint8_t)(i * 7 + dt);
	if (dt == TW_BOOL)
		for (size_t i = 0; i < n; i++)
			((uint8_t *)t.data)[i] &= 1;
	cr_assert_eq(tw_value_tensor(&v, &t), TW_OK);
	if (keep)
		*keep = t;
	else
		tw_tensor_release(&t);
	return v;
}

static tw_value call_payload(const char *fn, tw_value args, tw_value kwargs)
{
	tw_value v;

	cr_assert_eq(tw_value_tuple(&v, 3), TW_OK);
	cr_assert_eq(tw_value_set_item(&v, 0, str(fn)), TW_OK);
	cr_assert_eq(tw_value_set_item(&v, 1, args), TW_OK);
	cr_assert_eq(tw_value_set_item(&v, 2, kwargs), TW_OK);
	return v;
}

static tw_value empty(tw_kind k)
{
	tw_value v;
	if (k == TW_KIND_DICT)
		cr_assert_eq(tw_value_dict(&v, 0), TW_OK);
	else if (k == TW_KIND_LIST)
		cr_assert_eq(tw_value_list(&v, 0), TW_OK);
	else
		cr_assert_eq(tw_value_tuple(&v, 0), TW_OK);
	return v;
}

/* ---- scalars and blobs ---- */

Test(wire, scalars)
{
	static const int64_t ints[] = {0,
				       1,
				       -1,
				       63,
				       -64,
				       64,
				       -65,
				       127,
				       128,
				       8191,
				       -8192,
				       INT32_MAX,
				       INT32_MIN,
				       (int64_t)1 << 62,
				       INT64_MAX,
				       INT64_MIN,
				       INT64_MIN + 1};
	static const double dbls[] = {0.0,    -0.0,     1.5,      -2.25e300,
				      5e-324, INFINITY, -INFINITY};

	rt_ret(tw_value_none());
	rt_ret(tw_value_bool(true));
	rt_ret(tw_value_bool(false));
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
		rt_ret(tw_value_int(ints[i]));
	for (size_t i = 0; i < sizeof(dbls) / sizeof(dbls[0]); i++)
		rt_ret(tw_value_double(dbls[i]));
	rt_ret(tw_value_double(NAN));
}

Test(wire, int_encoding_is_zigzag_leb128)
{
	tw_frame_hdr h = hdr_of(TW_MSG_RET);
	tw_value v = tw_value_int(-65); /* zigzag 129 = 0x81 0x01 */
	tw_out_msg m;
	const uint8_t *p;

	cr_assert_eq(tw_msg_encode(NULL, &h, &v, &m), TW_OK);
	cr_assert_eq(m.total_len, 48 + 3);
	p = (const uint8_t *)m.iov[0].iov_base + 48;
	cr_assert_eq(p[0], TW_KIND_INT);
	cr_assert_eq(p[1], 0x81);
	cr_assert_eq(p[2], 0x01);
	tw_out_msg_release(&m);

	v = tw_value_int(INT64_MIN); /* zigzag 2^64-1: ten bytes */
	cr_assert_eq(tw_msg_encode(NULL, &h, &v, &m), TW_OK);
	cr_assert_eq(m.total_len, 48 + 11);
	tw_out_msg_release(&m);
}

Test(wire, strings_and_bytes)
{
	tw_value v;
	static char big[70000];

	rt_ret(str(""));
	rt_ret(str("hello"));
	rt_ret(str("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"));
	memset(big, 'x', sizeof(big) - 1);
	rt_ret(str(big));
	cr_assert_eq(tw_value_bytes(&v, "", 0), TW_OK);
	rt_ret(v);
	cr_assert_eq(tw_value_bytes(&v, "a\0b\xff", 4), TW_OK);
	rt_ret(v);
	/* A string with an embedded NUL is valid UTF-8 and travels whole. */
	cr_assert_eq(tw_value_string(&v, "a\0b", 3), TW_OK);
	rt_ret(v);
}

Test(wire, decoded_strings_point_into_the_frame)
{
	tw_value v = str("zero copy");
	tw_in_msg in;
	tw_buf *rb;
	const uint8_t *lo, *hi;

	round_trip_keep(TW_MSG_RET, &v, &in, &rb);
	lo = rb->data;
	hi = lo + rb->size;
	cr_assert((const uint8_t *)in.payload.u.str >= lo &&
		  (const uint8_t *)in.payload.u.str < hi);
	cr_assert_eq(in.payload.u.str[in.payload.len], '\0');
	cr_assert(in.payload.flags & TW_VALUE_BORROWED);
	tw_in_msg_release(&in);
	tw_buf_release(rb);
	tw_value_destroy(&v);
}

Test(wire, rref_and_error)
{
	tw_rref_id id = {
		.owner = UINT32_MAX,
		.rref = {.created_on = 3, .local_id = UINT64_MAX},
		.fork = {.created_on = 0, .local_id = 12345},
	};
	tw_value v;

	cr_assert_eq(tw_value_rref(&v, &id), TW_OK);
	rt_ret(v);
	cr_assert_eq(tw_value_error(&v, TW_EVALUE, 7, "bad value \xc3\xa9"),
		     TW_OK);
	rt_ret(v);
	cr_assert_eq(tw_value_error(&v, TW_ENOENT, 0, ""), TW_OK);
	rt_ret(v);
}

/* ---- containers ---- */

Test(wire, containers)
{
	tw_value l, t, d, inner;

	rt_ret(empty(TW_KIND_LIST));
	rt_ret(empty(TW_KIND_TUPLE));
	rt_ret(empty(TW_KIND_DICT));

	cr_assert_eq(tw_value_list(&l, 4), TW_OK);
	cr_assert_eq(tw_value_set_item(&l, 0, tw_value_int(1)), TW_OK);
	cr_assert_eq(tw_value_set_item(&l, 1, str("two")), TW_OK);
	cr_assert_eq(tw_value_tuple(&t, 2), TW_OK);
	cr_assert_eq(tw_value_set_item(&t, 0, tw_value_double(3.0)), TW_OK);
	cr_assert_eq(tw_value_set_item(&t, 1, tw_value_none()), TW_OK);
	cr_assert_eq(tw_value_set_item(&l, 2, t), TW_OK);
	cr_assert_eq(tw_value_dict(&d, 3), TW_OK);
	cr_assert_eq(tw_value_dict_set(&d, 0, "a", tw_value_bool(true)), TW_OK);
	cr_assert_eq(tw_value_dict_set(&d, 1, "", tw_value_int(-5)), TW_OK);
	cr_assert_eq(tw_value_list(&inner, 1), TW_OK);
	cr_assert_eq(tw_value_dict_set(&d, 2, "\xce\xbb", inner), TW_OK);
	cr_assert_eq(tw_value_set_item(&l, 3, d), TW_OK);
	rt_ret(l);
}

Test(wire, big_dict_and_unset_entries)
{
	tw_value d;
	char key[32];
	tw_in_msg in;
	tw_buf *rb;

	cr_assert_eq(tw_value_dict(&d, 5000), TW_OK);
	for (uint32_t i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "k%u", i * 7919u % 5000u);
		cr_assert_eq(tw_value_dict_set(&d, i, key, tw_value_int(i)),
			     TW_OK);
	}
	rt_ret(d);

	/* Entries never set are not part of the dict: not sent. */
	cr_assert_eq(tw_value_dict(&d, 4), TW_OK);
	cr_assert_eq(tw_value_dict_set(&d, 1, "x", tw_value_int(1)), TW_OK);
	cr_assert_eq(tw_value_dict_set(&d, 3, "y", tw_value_int(2)), TW_OK);
	tw_frame_hdr h = hdr_of(TW_MSG_RET);
	tw_out_msg m;
	const tw_value *got;

	cr_assert_eq(tw_msg_encode(NULL, &h, &d, &m), TW_OK);
	rb = linearise(&m);
	cr_assert_eq(tw_msg_decode(rb, 0, (size_t)m.total_len, NULL, NULL, &in),
		     TW_OK);
	cr_assert_eq(in.payload.len, 2);
	cr_assert_eq(tw_value_dict_get(&in.payload, "x", &got), TW_OK);
	cr_assert_eq(got->u.i, 1);
	cr_assert_eq(tw_value_dict_get(&in.payload, "y", &got), TW_OK);
	cr_assert_eq(got->u.i, 2);
	tw_in_msg_release(&in);
	tw_buf_release(rb);
	tw_out_msg_release(&m);
	tw_value_destroy(&d);
}

/* n nested lists around leaf. */
static tw_value nest(unsigned n, tw_value leaf)
{
	tw_value v = leaf;

	for (unsigned i = 0; i < n; i++) {
		tw_value l;
		cr_assert_eq(tw_value_list(&l, 1), TW_OK);
		cr_assert_eq(tw_value_set_item(&l, 0, v), TW_OK);
		v = l;
	}
	return v;
}

Test(wire, nesting_limit)
{
	tw_frame_hdr h = hdr_of(TW_MSG_RET);
	tw_out_msg m;
	tw_value v;

	/* 64 containers deep, with a scalar inside: the limit itself. */
	v = nest(TW_VALUE_MAX_DEPTH, tw_value_int(1));
	round_trip(TW_MSG_RET, &v);
	tw_value_destroy(&v);
	v = nest(TW_VALUE_MAX_DEPTH - 1, empty(TW_KIND_DICT));
	round_trip(TW_MSG_RET, &v);
	tw_value_destroy(&v);

	/* One more is refused by the encoder (the decoder: test_malformed). */
	v = nest(TW_VALUE_MAX_DEPTH, empty(TW_KIND_LIST));
	cr_assert_eq(tw_msg_encode(NULL, &h, &v, &m), TW_EINVAL);
	cr_assert_null(m.head);
	cr_assert_eq(m.niov, 0);
	tw_value_destroy(&v);
}

Test(wire, decode_limits_are_applied)
{
	tw_frame_hdr h = hdr_of(TW_MSG_RET);
	tw_decode_limits lim = {.max_depth = 3};
	tw_out_msg m;
	tw_in_msg in;
	tw_value v = nest(4, tw_value_none());
	tw_buf *rb;
	size_t len;

	cr_assert_eq(tw_msg_encode(NULL, &h, &v, &m), TW_OK);
	rb = linearise(&m);
	len = (size_t)m.total_len;
	cr_assert_eq(tw_msg_decode(rb, 0, len, NULL, &lim, &in), TW_EPROTO);
	cr_assert_str_eq(tw_errmsg(TW_EPROTO), "value: nesting too deep");
	lim.max_depth = 4;
	cr_assert_eq(tw_msg_decode(rb, 0, len, NULL, &lim, &in), TW_OK);
	tw_in_msg_release(&in);
	/* 4 lists + 1 none = 5 nodes */
	lim = (tw_decode_limits){.max_nodes = 4};
	cr_assert_eq(tw_msg_decode(rb, 0, len, NULL, &lim, &in), TW_EPROTO);
	cr_assert_str_eq(tw_errmsg(TW_EPROTO), "value: too many nodes");
	lim.max_nodes = 5;
	cr_assert_eq(tw_msg_decode(rb, 0, len, NULL, &lim, &in), TW_OK);
	tw_in_msg_release(&in);
	/* frame limits pass through */
	lim = (tw_decode_limits){.frame = {.max_payload = 4}};
	cr_assert_eq(tw_msg_decode(rb, 0, len, NULL, &lim, &in), TW_EPROTO);
	cr_assert_str_eq(tw_errmsg(TW_EPROTO),
			 "header: payload_len over limit");
	cr_assert_eq(tw_buf_refcnt(rb), 1);
	tw_buf_release(rb);
	tw_out_msg_release(&m);
	tw_value_destroy(&v);
}

/* A receiver that decoded the header itself (a transport, against its own
 * limits) hands it to the decoder: not decoded again, lim->frame not
 * consulted, and the bytes still checked against it. */
Test(wire, decode_takes_a_header_already_decoded)
{
	int64_t shape[1] = {3};
	tw_value args, call;
	tw_frame_hdr h = hdr_of(TW_MSG_CALL), g, lie;
	tw_out_msg m;
	tw_in_msg in;
	tw_buf *rb;
	size_t len;

	cr_assert_eq(tw_value_tuple(&args, 1), TW_OK);
	tw_value_set_item(&args, 0, tensor_val(TW_FLOAT32, 1, shape, NULL));
	call = call_payload("aten::neg", args, empty(TW_KIND_DICT));
	cr_assert_eq(tw_msg_encode(NULL, &h, &call, &m), TW_OK);
	rb = linearise(&m);
	len = (size_t)m.total_len;

	/* A transport whose limits are looser than the decoder's defaults
	 * accepted it: its word stands, lim->frame is not applied again. */
	tw_frame_limits loose = {.max_payload = UINT32_MAX};
	tw_decode_limits strict = {.frame = {.max_payload = 4}};
	cr_assert_eq(tw_frame_hdr_decode(rb->data, &loose, &g), TW_OK);
	cr_assert_eq(tw_msg_decode(rb, 0, len, NULL, &strict, &in), TW_EPROTO);
	cr_assert_eq(tw_msg_decode(rb, 0, len, &g, &strict, &in), TW_OK, "%s",
		     tw_errmsg(TW_EPROTO));
	cr_assert(tw_value_equal(&call, &in.payload));
	cr_assert_eq(memcmp(&in.hdr, &g, sizeof(g)), 0);
	tw_in_msg_release(&in);

	/* The payload's own limits still apply. */
	tw_decode_limits shallow = {.max_depth = 1};
	cr_assert_eq(tw_msg_decode(rb, 0, len, &g, &shallow, &in), TW_EPROTO);
	cr_assert_str_eq(tw_errmsg(TW_EPROTO), "value: nesting too deep");

	/* A header that does not describe the bytes is refused, and nothing
	 * outside them is read. */
	lie = g;
	lie.total_len += 64;
	cr_assert_eq(tw_msg_decode(rb, 0, len, &lie, NULL, &in), TW_EPROTO);
	cr_assert_str_eq(tw_errmsg(TW_EPROTO),
			 "frame: length differs from total_len");
	lie = g;
	lie.seg_count = 0;
	cr_assert_eq(tw_msg_decode(rb, 0, len, &lie, NULL, &in), TW_EPROTO);
	lie = g;
	lie.seg_count = 2;
	cr_assert_eq(tw_msg_decode(rb, 0, len, &lie, NULL, &in), TW_EPROTO);
	lie = g;
	lie.payload_len = 1000;
	cr_assert_eq(tw_msg_decode(rb, 0, len, &lie, NULL, &in), TW_EPROTO);
	lie = g;
	lie.type = TW_MSG_RET + 100;
	cr_assert_eq(tw_msg_decode(rb, 0, len, &lie, NULL, &in), TW_EPROTO);
	cr_assert_str_eq(tw_errmsg(TW_EPROTO), "header: unknown message type");
	lie = g;
	lie.type = TW_MSG_EXCEPTION; /* a CALL's payload is not an error */
	cr_assert_eq(tw_msg_decode(rb, 0, len, &lie, NULL, &in), TW_EPROTO);
	cr_assert_eq(in.payload.kind, TW_KIND_NONE);
	cr_assert_null(in.buf);

	cr_assert_eq(tw_buf_refcnt(rb), 1);
	tw_buf_release(rb);
	tw_out_msg_release(&m);
	tw_value_destroy(&call);
}

/* ---- tensors ---- */

Test(wire, every_dtype)
{
	static const int64_t shape[2] = {2, 3};

	for (unsigned dt = 0; dt < TW_DTYPE_COUNT_; dt++)
		rt_ret(tensor_val((tw_dtype)dt, 2, shape, NULL));
}

Test(wire, empty_and_scalar_tensors)
{
	static const int64_t s0[2] = {0, 3};
	static const int64_t s1[3] = {4, 0, 5};
	tw_value l;

	rt_ret(tensor_val(TW_FLOAT32, 0, NULL, NULL)); /* 0-dim: one element */
	rt_ret(tensor_val(TW_FLOAT64, 2, s0, NULL));   /* empty */
	rt_ret(tensor_val(TW_INT8, 3, s1, NULL));
	/* empty segments between non-empty ones keep the layout aligned */
	cr_assert_eq(tw_value_list(&l, 4), TW_OK);
	tw_value_set_item(&l, 0, tensor_val(TW_UINT8, 0, NULL, NULL));
	tw_value_set_item(&l, 1, tensor_val(TW_FLOAT64, 2, s0, NULL));
	tw_value_set_item(&l, 2, tensor_val(TW_INT16, 0, NULL, NULL));
	tw_value_set_item(&l, 3, tensor_val(TW_FLOAT64, 2, s0, NULL));
	rt_ret(l);
}

Test(wire, non_contiguous_tensors_travel_as_views)
{
	static const int64_t shape[2] = {3, 4};
	tw_tensor base, tr, bc;
	tw_value v;
	tw_in_msg in;
	tw_buf *rb;
	const tw_tensor *dt;

	tw_value_destroy((tw_value[]){tensor_val(TW_FLOAT32, 2, shape, &base)});
	/* transposed: shape [4, 3], strides [1, 4] */
	int64_t tshape[2] = {4, 3}, tstr[2] = {1, 4};
	cr_assert_eq(tw_tensor_init(&tr, TW_FLOAT32, 2, tshape, tstr, base.data,
				    base.buf),
		     TW_OK);
	cr_assert_not(tw_tensor_is_contiguous(&tr));
	cr_assert_eq(tw_value_tensor(&v, &tr), TW_OK);
	round_trip_keep(TW_MSG_RET, &v, &in, &rb);
	dt = in.payload.u.tensor;
	cr_assert_eq(dt->strides[0], 1);
	cr_assert_eq(dt->strides[1], 4);
	cr_assert_eq(dt->shape[0], 4);
	tw_in_msg_release(&in);
	tw_buf_release(rb);
	tw_value_destroy(&v);

	/* broadcast row: shape [5, 4], strides [0, 1]; span is one row */
	int64_t bshape[2] = {5, 4}, bstr[2] = {0, 1};
	cr_assert_eq(tw_tensor_init(&bc, TW_FLOAT32, 2, bshape, bstr, base.data,
				    base.buf),
		     TW_OK);
	cr_assert_eq(tw_value_tensor(&v, &bc), TW_OK);
	round_trip_keep(TW_MSG_RET, &v, &in, &rb);
	dt = in.payload.u.tensor;
	cr_assert_eq(dt->strides[0], 0);
	cr_assert_eq(tw_frame_seg_len(rb->data, 0), 16);
	tw_in_msg_release(&in);
	tw_buf_release(rb);
	tw_value_destroy(&v);

	tw_tensor_release(&tr);
	tw_tensor_release(&bc);
	cr_assert_eq(tw_buf_refcnt(base.buf), 1);
	tw_tensor_release(&base);
}

Test(wire, hundred_tensors)
{
	tw_value l;
	tw_tensor keep[100];
	tw_frame_hdr h = hdr_of(TW_MSG_RET);
	tw_out_msg m;

	cr_assert_eq(tw_value_list(&l, 100), TW_OK);
	for (int i = 0; i < 100; i++) {
		int64_t shape[1] = {i};
		tw_value_set_item(&l, (uint32_t)i,
				  tensor_val((tw_dtype)(i % TW_DTYPE_COUNT_), 1,
					     shape, &keep[i]));
	}
	round_trip(TW_MSG_RET, &l);

	/* iovecs beyond the inline room live in the head buffer */
	cr_assert_eq(tw_msg_encode(NULL, &h, &l, &m), TW_OK);
	cr_assert_eq(m.nseg, 100);
	cr_assert(m.iov != m.iov_inline_);
	cr_assert_leq(m.niov, 1 + 2 * 100);
	for (int i = 0; i < 100; i++) {
		cr_assert_eq(m.seg_bufs[i], keep[i].buf);
		cr_assert_eq(tw_buf_refcnt(keep[i].buf), 3);
	}
	uint64_t sum = 0;
	for (uint32_t i = 0; i < m.niov; i++) {
		cr_assert_neq(m.iov[i].iov_len, 0);
		sum += m.iov[i].iov_len;
	}
	cr_assert_eq(sum, m.total_len);
	tw_out_msg_release(&m);
	tw_value_destroy(&l);
	for (int i = 0; i < 100; i++) {
		cr_assert_eq(tw_buf_refcnt(keep[i].buf), 1);
		tw_tensor_release(&keep[i]);
	}
}

Test(wire, one_mib_tensor_is_never_copied)
{
	int64_t shape[1] = {1 << 18};
	tw_tensor t;
	tw_value args, kw, call;
	tw_frame_hdr h = hdr_of(TW_MSG_CALL);
	tw_out_msg m;
	tw_in_msg in;
	tw_buf *rb;

	cr_assert_eq(tw_value_tuple(&args, 1), TW_OK);
	tw_value_set_item(&args, 0, tensor_val(TW_FLOAT32, 1, shape, &t));
	kw = empty(TW_KIND_DICT);
	call = call_payload("aten::neg", args, kw);

	cr_assert_eq(tw_msg_encode(NULL, &h, &call, &m), TW_OK);
	cr_assert_eq(m.niov, 2); /* head is 64-aligned: no pad before it */
	cr_assert_eq(m.iov[1].iov_base, t.data, "encoder copied the tensor");
	cr_assert_eq(m.iov[1].iov_len, 1u << 20);
	cr_assert_eq(m.seg_bufs[0], t.buf);
	cr_assert_eq(tw_buf_refcnt(t.buf), 3); /* t, the value, the message */

	rb = linearise(&m);
	cr_assert_eq(tw_msg_decode(rb, 0, (size_t)m.total_len, NULL, NULL, &in),
		     TW_OK, "%s", tw_errmsg(TW_EPROTO));
	const tw_tensor *dt = in.payload.u.items[1].u.items[0].u.tensor;
	const uint8_t *lo = rb->data;
	cr_assert((const uint8_t *)dt->data >= lo &&
			  (const uint8_t *)dt->data + (1u << 20) <=
				  lo + rb->size,
		  "decoded tensor does not point into the receive buffer");
	cr_assert_eq(((uintptr_t)dt->data) % 64, 0);
	cr_assert_eq(dt->buf, rb);
	cr_assert_eq(memcmp(dt->data, t.data, 1u << 20), 0);
	cr_assert(tw_value_equal(&call, &in.payload));

	/* Keeping a tensor past the message takes a reference. */
	tw_tensor kept;
	tw_tensor_ref(&kept, dt);
	cr_assert_eq(tw_buf_refcnt(rb), 3);
	tw_in_msg_release(&in);
	cr_assert_eq(tw_buf_refcnt(rb), 2);
	tw_tensor_release(&kept);
	cr_assert_eq(tw_buf_refcnt(rb), 1);
	tw_buf_release(rb);

	tw_out_msg_release(&m);
	tw_value_destroy(&call);
	cr_assert_eq(tw_buf_refcnt(t.buf), 1);
	tw_tensor_release(&t);
}

Test(wire, tensor_without_buf_is_borrowed)
{
	static float data[4] = {1, 2, 3, 4};
	int64_t shape[1] = {4};
	tw_tensor t;
	tw_value v;
	tw_frame_hdr h = hdr_of(TW_MSG_RET);
	tw_out_msg m;

	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 1, shape, NULL, data, NULL),
		     TW_OK);
	cr_assert_eq(tw_value_tensor(&v, &t), TW_OK);
	cr_assert_eq(tw_msg_encode(NULL, &h, &v, &m), TW_OK);
	cr_assert_null(m.seg_bufs[0]);
	cr_assert_eq(m.iov[1].iov_base, data);
	tw_out_msg_release(&m);
	round_trip(TW_MSG_RET, &v);
	tw_value_destroy(&v);
}

Test(wire, decoded_clone_outlives_message)
{
	int64_t shape[2] = {2, 2};
	tw_value v = tensor_val(TW_INT64, 2, shape, NULL), c;
	tw_in_msg in;
	tw_buf *rb;

	round_trip_keep(TW_MSG_RET, &v, &in, &rb);
	cr_assert_eq(tw_value_clone(&c, &in.payload), TW_OK);
	cr_assert_eq(tw_buf_refcnt(rb), 3);
	tw_in_msg_release(&in);
	cr_assert(tw_value_equal(&c, &v));
	tw_value_destroy(&c);
	cr_assert_eq(tw_buf_refcnt(rb), 1);
	tw_buf_release(rb);
	tw_value_destroy(&v);
}

/* What the writer hands the frame for each tensor. */
struct seen_seg {
	uint32_t n;
	const void *data[8];
	int64_t dim0[8];
	uint64_t span[8];
};

static void seen_seg_fn(void *ctx, uint32_t idx, const tw_tensor *t,
			uint64_t span)
{
	struct seen_seg *s = ctx;

	cr_assert_eq(idx, s->n);
	s->data[idx] = t->data;
	s->dim0[idx] = t->shape[0];
	s->span[idx] = span;
	s->n++;
}

/* A tensor changed between the sizing and the writing pass (a caller's
 * race) is encoded and gathered exactly as the sizing pass checked it:
 * the writer never reads the caller's shape, strides or data again, so
 * the send cannot read past the span that was checked. */
Test(wire, tensor_changed_between_passes_is_sent_as_planned)
{
	int64_t shape[1] = {4};
	tw_value v = tensor_val(TW_FLOAT32, 1, shape, NULL);
	tw_tensor *t = v.u.tensor;
	void *data = t->data;
	tw_wire_plan p1, p2;
	uint8_t ref[64], out[64];
	struct seen_seg s1 = {0}, s2 = {0};

	cr_assert_eq(tw_wire_plan_value(&v, &p1), TW_OK);
	cr_assert_eq(p1.nseg, 1);
	cr_assert_leq(p1.payload_len, sizeof(ref));
	cr_assert_eq(tw_wire_write_value(&v, &p1, ref, seen_seg_fn, &s1),
		     TW_OK);
	cr_assert_eq(s1.span[0], 16);

	cr_assert_eq(tw_wire_plan_value(&v, &p2), TW_OK);
	/* Grown past its memory, moved, then made invalid outright. */
	t->shape[0] = 1000000;
	t->strides[0] = 3;
	t->data = (uint8_t *)data + 4096;
	cr_assert_eq(tw_wire_write_value(&v, &p2, out, seen_seg_fn, &s2),
		     TW_OK);
	cr_assert_eq(s2.n, 1);
	cr_assert_eq(s2.span[0], 16, "span as planned, not the new 12 MB");
	cr_assert_eq(s2.dim0[0], 4);
	cr_assert_eq(s2.data[0], data);
	cr_assert_eq(memcmp(ref, out, (size_t)p1.payload_len), 0,
		     "descriptor as planned");
	t->shape[0] = -1;
	memset(&s2, 0, sizeof(s2));
	cr_assert_eq(tw_wire_write_value(&v, &p2, out, seen_seg_fn, &s2),
		     TW_OK);
	cr_assert_eq(s2.span[0], 16);
	/* The next encode sees the change and refuses it. */
	cr_assert_eq(tw_wire_plan_value(&v, &p2), TW_EINVAL);

	t->shape[0] = 4;
	t->strides[0] = 1;
	t->data = data;
	tw_value_destroy(&v);
}

/* Tensors past the plan's copies are re-read and re-checked by the writer;
 * a changed span there no longer adds up to the planned segment area, and
 * the frame encoder drops such a frame (message.c). */
Test(wire, tensors_past_the_plan_copies_are_rechecked)
{
	int64_t shape[1] = {4};
	const unsigned n = TW_WIRE_PLAN_TENSORS + 1;
	tw_value v, *last;
	tw_wire_plan p;
	uint8_t out[256];
	struct seen_seg s = {0};

	cr_assert_leq(n, 8);
	cr_assert_eq(tw_value_tuple(&v, n), TW_OK);
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(tw_value_set_item(&v, i,
					       tensor_val(TW_FLOAT32, 1, shape,
							  NULL)),
			     TW_OK);
	cr_assert_eq(tw_wire_plan_value(&v, &p), TW_OK);
	cr_assert_leq(p.payload_len, sizeof(out));
	last = &v.u.items[n - 1];
	last->u.tensor->shape[0] = -1;
	cr_assert_eq(tw_wire_write_value(&v, &p, out, seen_seg_fn, &s),
		     TW_EINVAL, "an invalid tensor past the copies is refused");
	last->u.tensor->shape[0] = 4;
	tw_value_destroy(&v);
}

/* The decoder marks its tensors as checked for tw_value_clone; the clone,
 * which the caller may change, does not carry the mark, and a value forged
 * with it still cannot get a bad layout onto the wire. */
Test(wire, decoded_tensor_mark_is_not_cloned_or_trusted_by_the_encoder)
{
	int64_t shape[2] = {2, 3};
	tw_value v = tensor_val(TW_INT32, 2, shape, NULL), c, c2, f;
	tw_in_msg in;
	tw_buf *rb;
	tw_tensor bad;
	tw_out_msg m;
	tw_frame_hdr h = hdr_of(TW_MSG_RET);

	round_trip_keep(TW_MSG_RET, &v, &in, &rb);
	cr_assert(in.payload.flags & TW_VALUE_WIRE_CHECKED_);
	cr_assert_eq(tw_value_clone(&c, &in.payload), TW_OK);
	cr_assert_eq(c.flags & TW_VALUE_WIRE_CHECKED_, 0);
	cr_assert(tw_value_equal(&c, &v));
	/* A clone of the clone checks again. */
	c.u.tensor->shape[0] = -2;
	cr_assert_eq(tw_value_clone(&c2, &c), TW_EINVAL);
	c.u.tensor->shape[0] = 2;
	tw_value_destroy(&c);
	tw_in_msg_release(&in);
	tw_buf_release(rb);

	/* Forged: borrowed, marked, and overflowing. */
	bad = *v.u.tensor;
	bad.shape[0] = INT64_MAX;
	f = (tw_value){.kind = TW_KIND_TENSOR,
		       .flags = TW_VALUE_BORROWED | TW_VALUE_WIRE_CHECKED_};
	f.u.tensor = &bad;
	cr_assert_eq(tw_msg_encode(NULL, &h, &f, &m), TW_EINVAL);
	cr_assert_eq(tw_value_clone(&c, &f), TW_OK);
	cr_assert_eq(tw_msg_encode(NULL, &h, &c, &m), TW_EINVAL);
	tw_value_destroy(&c);
	tw_value_destroy(&v);
}

/* ---- message types ---- */

Test(wire, every_message_type)
{
	tw_rref_id id = {.owner = 1, .rref = {2, 3}, .fork = {4, 5}};
	tw_value r, call, rcall, fork, err;

	call = call_payload("mod.fn", empty(TW_KIND_TUPLE),
			    empty(TW_KIND_DICT));
	round_trip(TW_MSG_CALL, &call);

	cr_assert_eq(tw_value_tuple(&rcall, 4), TW_OK);
	tw_value_set_item(&rcall, 0, str("mod.fn"));
	tw_value_set_item(&rcall, 1, empty(TW_KIND_TUPLE));
	tw_value_set_item(&rcall, 2, empty(TW_KIND_DICT));
	cr_assert_eq(tw_value_rref(&r, &id), TW_OK);
	tw_value_set_item(&rcall, 3, r);
	round_trip(TW_MSG_REMOTE_CALL, &rcall);

	cr_assert_eq(tw_value_rref(&r, &id), TW_OK);
	round_trip(TW_MSG_REMOTE_RET, &r);
	round_trip(TW_MSG_RREF_FETCH_CALL, &r);
	round_trip(TW_MSG_RREF_USER_DELETE, &r);
	round_trip(TW_MSG_RREF_CHILD_ACCEPT, &r);

	cr_assert_eq(tw_value_tuple(&fork, 2), TW_OK);
	tw_value_set_item(&fork, 0, r);
	tw_value_set_item(&fork, 1, tw_value_int(9));
	round_trip(TW_MSG_RREF_FORK_REQUEST, &fork);

	cr_assert_eq(tw_value_error(&err, TW_ERUNTIME, 3, "boom"), TW_OK);
	round_trip(TW_MSG_EXCEPTION, &err);
	round_trip(TW_MSG_RET, &call);
	round_trip(TW_MSG_RREF_FETCH_RET, &err);
	round_trip(TW_MSG_JOIN, &call);
	round_trip(TW_MSG_SHUTDOWN, &err);
	tw_value none = tw_value_none();
	round_trip(TW_MSG_ACK, &none);

	tw_value_destroy(&call);
	tw_value_destroy(&rcall);
	tw_value_destroy(&fork);
	tw_value_destroy(&err);
}

/* ---- distributed autograd (wire.md §5.2) ---- */

/* A CALL with two tensors in an autograd envelope: decoded, the payload is
 * the inner call and .ag the metadata, the mask pointing into the frame;
 * both encoders write the same bytes. */
Test(wire, autograd_envelope_round_trip)
{
	int64_t shape[1] = {4};
	tw_value args;
	cr_assert_eq(tw_value_tuple(&args, 2), TW_OK);
	tw_value_set_item(&args, 0, tensor_val(TW_FLOAT32, 1, shape, NULL));
	tw_value_set_item(&args, 1, tensor_val(TW_FLOAT64, 1, shape, NULL));
	tw_value call = call_payload("mod.fn", args, empty(TW_KIND_DICT));
	uint8_t mask = 0x2; /* the second tensor requires grad */
	tw_ag_meta meta = {.context_id = (INT64_C(3) << 48) | 7,
			   .message_id = (INT64_C(1) << 48) | 99,
			   .grad_mask = &mask,
			   .mask_len = 1};
	tw_value items[4];
	tw_value env = tw_msg_ag_wrap(&meta, &call, items);
	tw_frame_hdr h = hdr_of(TW_MSG_CALL);
	h.flags = TW_FRAME_F_AUTOGRAD;
	tw_out_msg m;
	cr_assert_eq(tw_msg_encode(NULL, &h, &env, &m), TW_OK, "%s",
		     tw_errmsg(TW_EINVAL));
	cr_assert_eq(m.nseg, 2);
	same_with_pool(&h, &env, &m);
	tw_buf *rb = linearise(&m);
	tw_in_msg in;
	cr_assert_eq(tw_msg_decode(rb, 0, (size_t)m.total_len, NULL, NULL, &in),
		     TW_OK, "%s", tw_errmsg(TW_EPROTO));
	cr_assert_eq(in.hdr.flags, TW_FRAME_F_AUTOGRAD);
	cr_assert(tw_value_equal(&call, &in.payload));
	cr_assert_eq(in.ag.context_id, meta.context_id);
	cr_assert_eq(in.ag.message_id, meta.message_id);
	cr_assert_eq(in.ag.mask_len, 1);
	cr_assert_eq(in.ag.grad_mask[0], 0x2);
	cr_assert((const uint8_t *)in.ag.grad_mask >
			  (const uint8_t *)rb->data &&
		  (const uint8_t *)in.ag.grad_mask <
			  (const uint8_t *)rb->data + m.total_len);
	cr_assert_eq(tw_ag_context_worker(in.ag.context_id), 3);
	tw_in_msg_release(&in);
	cr_assert_eq(in.ag.context_id, 0);
	/* The same frame without the flag is a CALL whose payload is not a
	 * call: refused. */
	((uint8_t *)rb->data)[6] = 0;
	cr_assert_eq(tw_msg_decode(rb, 0, (size_t)m.total_len, NULL, NULL, &in),
		     TW_EPROTO);
	tw_buf_release(rb);
	tw_out_msg_release(&m);

	/* Every forward type carries one; a message without tensors has an
	 * empty mask. */
	tw_rref_id id = {.owner = 1, .rref = {2, 3}, .fork = {4, 5}};
	tw_value r;
	cr_assert_eq(tw_value_rref(&r, &id), TW_OK);
	const unsigned fwd[] = {TW_MSG_REMOTE_RET, TW_MSG_RREF_FETCH_CALL,
				TW_MSG_RET, TW_MSG_RREF_FETCH_RET};
	meta.mask_len = 0;
	for (unsigned k = 0; k < 4; k++) {
		env = tw_msg_ag_wrap(&meta, &r, items);
		h = hdr_of(fwd[k]);
		h.flags = TW_FRAME_F_AUTOGRAD;
		cr_assert_eq(tw_msg_encode(NULL, &h, &env, &m), TW_OK, "%s",
			     tw_msg_type_name(fwd[k]));
		rb = linearise(&m);
		cr_assert_eq(tw_msg_decode(rb, 0, (size_t)m.total_len, NULL,
					   NULL, &in),
			     TW_OK);
		cr_assert(tw_value_equal(&r, &in.payload));
		cr_assert_eq(in.ag.mask_len, 0);
		tw_in_msg_release(&in);
		tw_buf_release(rb);
		tw_out_msg_release(&m);
	}
	tw_value_destroy(&r);
	tw_value_destroy(&call);
}

/* What the encoder refuses in an envelope, and the decoder refuses from a
 * peer: the flag on a type that has no forward role, a mask that does not
 * fit the tensors, negative ids, a malformed envelope. */
Test(wire, autograd_envelope_refused)
{
	int64_t shape[1] = {3};
	tw_value t = tensor_val(TW_FLOAT32, 1, shape, NULL);
	uint8_t mask[2] = {0x1, 0};
	tw_ag_meta meta = {.context_id = 1,
			   .message_id = 2,
			   .grad_mask = mask,
			   .mask_len = 1};
	tw_value items[4];
	tw_frame_hdr h = hdr_of(TW_MSG_RET);
	h.flags = TW_FRAME_F_AUTOGRAD;
	tw_out_msg m;
	tw_buf_pool *pool = mkpool(64u << 10, 2);
	for (int p = 0; p < 2; p++) {
		tw_buf_pool *pl = p ? pool : NULL;
		tw_value env = tw_msg_ag_wrap(&meta, &t, items);
		cr_assert_eq(tw_msg_encode(pl, &h, &env, &m), TW_OK);
		tw_out_msg_release(&m);
		/* mask too long, too short, a bit past the tensors */
		meta.mask_len = 2;
		env = tw_msg_ag_wrap(&meta, &t, items);
		cr_assert_eq(tw_msg_encode(pl, &h, &env, &m), TW_EINVAL);
		cr_assert(strstr(tw_errmsg(TW_EINVAL), "grad_mask") != NULL);
		meta.mask_len = 0;
		env = tw_msg_ag_wrap(&meta, &t, items);
		cr_assert_eq(tw_msg_encode(pl, &h, &env, &m), TW_EINVAL);
		meta.mask_len = 1;
		mask[0] = 0x3;
		env = tw_msg_ag_wrap(&meta, &t, items);
		cr_assert_eq(tw_msg_encode(pl, &h, &env, &m), TW_EINVAL);
		mask[0] = 0x1;
		meta.context_id = -1;
		env = tw_msg_ag_wrap(&meta, &t, items);
		cr_assert_eq(tw_msg_encode(pl, &h, &env, &m), TW_EINVAL);
		meta.context_id = 1;
		/* not a forward type */
		h.type = TW_MSG_EXCEPTION;
		env = tw_msg_ag_wrap(&meta, &t, items);
		cr_assert_eq(tw_msg_encode(pl, &h, &env, &m), TW_EINVAL);
		cr_assert(strstr(tw_errmsg(TW_EINVAL), "EXCEPTION") != NULL);
		h.type = TW_MSG_RET;
		cr_assert_eq(tw_buf_pool_in_use(pool), 0);
	}
	cr_assert_eq(tw_buf_pool_destroy(pool), TW_OK);

	/* From a peer: a RET whose (unflagged) payload looks like an
	 * envelope with a mask of the wrong size, then flagged by hand. */
	tw_value bad[4] = {tw_value_int(1), tw_value_int(2),
			   tw_value_bytes_borrow(mask, 2), t};
	bad[3].flags |= TW_VALUE_BORROWED;
	tw_value env = {.kind = TW_KIND_TUPLE,
			.flags = TW_VALUE_BORROWED,
			.len = 4,
			.u.items = bad};
	h.flags = 0;
	cr_assert_eq(tw_msg_encode(NULL, &h, &env, &m), TW_OK);
	tw_buf *rb = linearise(&m);
	tw_in_msg in;
	((uint8_t *)rb->data)[6] = TW_FRAME_F_AUTOGRAD;
	cr_assert_eq(tw_msg_decode(rb, 0, (size_t)m.total_len, NULL, NULL, &in),
		     TW_EPROTO);
	cr_assert(strstr(tw_errmsg(TW_EPROTO), "grad_mask") != NULL, "%s",
		  tw_errmsg(TW_EPROTO));
	/* ... and on a frame type that has no forward role. */
	((uint8_t *)rb->data)[5] = TW_MSG_JOIN;
	cr_assert_eq(tw_msg_decode(rb, 0, (size_t)m.total_len, NULL, NULL, &in),
		     TW_EPROTO);
	tw_buf_release(rb);
	tw_out_msg_release(&m);
	tw_value_destroy(&t);
}

/* AG_BACKWARD and AG_CLEANUP: their shapes, both ways. */
Test(wire, autograd_messages)
{
	int64_t shape[2] = {2, 2};
	tw_value bw, grads;
	cr_assert_eq(tw_value_list(&grads, 2), TW_OK);
	tw_value_set_item(&grads, 0, tensor_val(TW_FLOAT32, 2, shape, NULL));
	cr_assert_eq(tw_value_tuple(&bw, 4), TW_OK);
	tw_value_set_item(&bw, 0, tw_value_int(INT64_C(1) << 48));
	tw_value_set_item(&bw, 1, tw_value_int(5));
	tw_value_set_item(&bw, 2, grads);
	tw_value_set_item(&bw, 3, tw_value_bool(true));
	round_trip(TW_MSG_AG_BACKWARD, &bw);
	tw_value c = tw_value_int(INT64_C(2) << 48 | 1);
	round_trip(TW_MSG_AG_CLEANUP, &c);
	cr_assert_str_eq(tw_msg_type_name(TW_MSG_AG_BACKWARD), "AG_BACKWARD");
	cr_assert_str_eq(tw_msg_type_name(TW_MSG_AG_CLEANUP), "AG_CLEANUP");

	tw_frame_hdr h = hdr_of(TW_MSG_AG_BACKWARD);
	tw_out_msg m;
	/* a gradient that is neither a tensor nor None */
	tw_value_set_item(&bw.u.items[2], 1, tw_value_int(3));
	cr_assert_eq(tw_msg_encode(NULL, &h, &bw, &m), TW_EINVAL);
	cr_assert(strstr(tw_errmsg(TW_EINVAL), "AG_BACKWARD") != NULL);
	tw_value_set_item(&bw.u.items[2], 1, tw_value_none());
	tw_value_set_item(&bw, 1, tw_value_int(-5));
	cr_assert_eq(tw_msg_encode(NULL, &h, &bw, &m), TW_EINVAL);
	tw_value_set_item(&bw, 1, tw_value_int(5));
	tw_value_set_item(&bw, 3, tw_value_int(1)); /* retain_graph not bool */
	cr_assert_eq(tw_msg_encode(NULL, &h, &bw, &m), TW_EINVAL);
	h.type = TW_MSG_AG_CLEANUP;
	c = tw_value_int(-1);
	cr_assert_eq(tw_msg_encode(NULL, &h, &c, &m), TW_EINVAL);
	tw_value_destroy(&bw);
}

Test(wire, shapes_checked_on_encode)
{
	tw_frame_hdr h = hdr_of(TW_MSG_CALL);
	tw_value i = tw_value_int(1), t3, fork, r;
	tw_rref_id id = {0};
	tw_out_msg m;

	cr_assert_eq(tw_msg_encode(NULL, &h, &i, &m), TW_EINVAL);
	t3 = call_payload("f", empty(TW_KIND_LIST), empty(TW_KIND_DICT));
	cr_assert_eq(tw_msg_encode(NULL, &h, &t3, &m),
		     TW_EINVAL); /* args list */
	tw_value_destroy(&t3);
	h.type = TW_MSG_EXCEPTION;
	cr_assert_eq(tw_msg_encode(NULL, &h, &i, &m), TW_EINVAL);
	h.type = TW_MSG_ACK;
	cr_assert_eq(tw_msg_encode(NULL, &h, &i, &m), TW_EINVAL);
	h.type = TW_MSG_RREF_FORK_REQUEST;
	cr_assert_eq(tw_value_tuple(&fork, 2), TW_OK);
	cr_assert_eq(tw_value_rref(&r, &id), TW_OK);
	tw_value_set_item(&fork, 0, r);
	tw_value_set_item(&fork, 1, tw_value_int(-1)); /* not a worker id */
	cr_assert_eq(tw_msg_encode(NULL, &h, &fork, &m), TW_EINVAL);
	tw_value_destroy(&fork);

	h.type = 0;
	cr_assert_eq(tw_msg_encode(NULL, &h, &i, &m), TW_EINVAL);
	h.type = TW_MSG_TYPE_COUNT_;
	cr_assert_eq(tw_msg_encode(NULL, &h, &i, &m), TW_EINVAL);
	h.type = TW_MSG_RET;
	h.flags = 1; /* AUTOGRAD around a bare int: no envelope */
	cr_assert_eq(tw_msg_encode(NULL, &h, &i, &m), TW_EINVAL);
	h.flags = 2; /* unknown */
	cr_assert_eq(tw_msg_encode(NULL, &h, &i, &m), TW_EINVAL);

	cr_assert_str_eq(tw_msg_type_name(TW_MSG_CALL), "CALL");
	cr_assert_str_eq(tw_msg_type_name(TW_MSG_SHUTDOWN), "SHUTDOWN");
	cr_assert_str_eq(tw_msg_type_name(0), "?");
	cr_assert_str_eq(tw_msg_type_name(99), "?");
}

/* The same verdicts from both encoders: the two passes (no pool) and the
 * one-pass writer (a pool), which must also hold nothing afterwards. */
static void refuses(tw_buf_pool *pool)
{
	tw_frame_hdr h = hdr_of(TW_MSG_RET);
	tw_out_msg m;
	tw_value v, d, items[3];
	tw_error e = {.kind = TW_OK, .msg = "x", .msg_len = 1};
	tw_kv kv[2] = {
		{.key = "a", .key_len = 1, .val = {0}},
		{.key = "a", .key_len = 1, .val = {0}},
	};

	v = tw_value_string_borrow("\xff\xfe", 2);
	cr_assert_eq(tw_msg_encode(pool, &h, &v, &m), TW_EINVAL);
	v = (tw_value){.kind = TW_KIND_ERROR, .flags = TW_VALUE_BORROWED};
	v.u.err = &e;
	cr_assert_eq(tw_msg_encode(pool, &h, &v, &m), TW_EINVAL);
	e.kind = TW_STATUS_COUNT_;
	cr_assert_eq(tw_msg_encode(pool, &h, &v, &m), TW_EINVAL);
	d = (tw_value){
		.kind = TW_KIND_DICT, .flags = TW_VALUE_BORROWED, .len = 2};
	d.u.entries = kv;
	cr_assert_eq(tw_msg_encode(pool, &h, &d, &m), TW_EINVAL);
	kv[1].key = "b\0";
	kv[1].key_len = 2; /* NUL inside a key */
	cr_assert_eq(tw_msg_encode(pool, &h, &d, &m), TW_EINVAL);
	kv[1].key_len = 1;
	cr_assert_eq(tw_msg_encode(pool, &h, &d, &m), TW_OK);
	tw_out_msg_release(&m);
	v = (tw_value){.kind = TW_KIND_COUNT_};
	cr_assert_eq(tw_msg_encode(pool, &h, &v, &m), TW_EINVAL);
	v = (tw_value){.kind = TW_KIND_TENSOR};
	cr_assert_eq(tw_msg_encode(pool, &h, &v, &m), TW_EINVAL);
	/* A list that says it has items and has none; bytes with no data. */
	d = (tw_value){
		.kind = TW_KIND_LIST, .flags = TW_VALUE_BORROWED, .len = 2};
	cr_assert_eq(tw_msg_encode(pool, &h, &d, &m), TW_EINVAL);
	d = (tw_value){
		.kind = TW_KIND_BYTES, .flags = TW_VALUE_BORROWED, .len = 2};
	cr_assert_eq(tw_msg_encode(pool, &h, &d, &m), TW_EINVAL);
	/* A good tensor before a bad string: the tensor is let go again. */
	tw_tensor t;
	int64_t shape[1] = {16};
	items[0] = tensor_val(TW_FLOAT32, 1, shape, &t);
	items[1] = tw_value_string_borrow("ok", 2);
	items[2] = tw_value_string_borrow("\xc0\x80", 2); /* overlong NUL */
	d = (tw_value){
		.kind = TW_KIND_TUPLE, .flags = TW_VALUE_BORROWED, .len = 3};
	d.u.items = items;
	uint32_t refs = tw_buf_refcnt(t.buf);
	cr_assert_eq(tw_msg_encode(pool, &h, &d, &m), TW_EINVAL);
	cr_assert_eq(tw_buf_refcnt(t.buf), refs);
	tw_value_destroy(&items[0]);
	tw_tensor_release(&t);
	cr_assert_eq(tw_msg_encode(pool, &h, NULL, &m), TW_EINVAL);
	cr_assert_eq(tw_msg_encode(pool, NULL, &v, &m), TW_EINVAL);
	cr_assert_eq(tw_msg_encode(pool, &h, &v, NULL), TW_EINVAL);
	if (pool != NULL)
		cr_assert_eq(tw_buf_pool_in_use(pool), 0);
}

Test(wire, encoder_refuses_what_peers_would_reject)
{
	tw_buf_pool *pool = mkpool(4096, 2);

	refuses(NULL);
	refuses(pool);
	cr_assert_eq(tw_buf_pool_destroy(pool), TW_OK);
}

/* What the one-pass encoder cannot take (more tensors than a message holds
 * inline, more bytes than the pool buffer less its reserved segment table)
 * goes through the two passes, whole and identical, with nothing leaked
 * from the attempt. */
Test(wire, one_pass_falls_back_to_two)
{
	tw_buf_pool *pool = mkpool(4096, 2);
	tw_frame_hdr h = hdr_of(TW_MSG_RET);
	const uint32_t n = TW_OUT_MSG_INLINE_SEGS + 1;
	int64_t shape[1] = {8};
	tw_tensor keep[TW_OUT_MSG_INLINE_SEGS + 1];
	tw_value l, v;
	tw_out_msg m, ref;

	cr_assert_eq(tw_value_list(&l, n), TW_OK);
	for (uint32_t i = 0; i < n; i++)
		tw_value_set_item(&l, i,
				  tensor_val(TW_INT32, 1, shape, &keep[i]));
	cr_assert_eq(tw_msg_encode(NULL, &h, &l, &ref), TW_OK);
	same_with_pool(&h, &l, &ref);
	cr_assert_eq(tw_msg_encode(pool, &h, &l, &m), TW_OK);
	cr_assert_eq(m.head->kind, TW_BUF_POOL);
	cr_assert_eq(m.nseg, n);
	for (uint32_t i = 0; i < n; i++)
		cr_assert_eq(tw_buf_refcnt(keep[i].buf), 4, "tensor %u", i);
	tw_out_msg_release(&m);
	tw_out_msg_release(&ref);
	for (uint32_t i = 0; i < n; i++) {
		cr_assert_eq(tw_buf_refcnt(keep[i].buf), 2);
		tw_tensor_release(&keep[i]);
	}
	tw_value_destroy(&l);

	/* 4000 bytes of string: past the one-pass room (4096 less the
	 * header and 8 table entries), within a pool buffer for two passes. */
	static char s[4001];
	memset(s, 'z', 4000);
	v = str(s);
	cr_assert_eq(tw_msg_encode(NULL, &h, &v, &ref), TW_OK);
	cr_assert_eq(tw_msg_encode(pool, &h, &v, &m), TW_OK);
	cr_assert_eq(m.head->kind, TW_BUF_POOL);
	cr_assert_eq(m.total_len, ref.total_len);
	cr_assert_eq(memcmp(m.head->data, ref.head->data, (size_t)m.total_len),
		     0);
	tw_out_msg_release(&m);
	tw_out_msg_release(&ref);
	tw_value_destroy(&v);
	cr_assert_eq(tw_buf_pool_in_use(pool), 0);
	cr_assert_eq(tw_buf_pool_destroy(pool), TW_OK);
}

/* ---- buffers ---- */

static tw_buf_pool *mkpool(size_t size, uint32_t count)
{
	struct tw_buf_pool_opts o;
	tw_buf_pool *p;

	tw_buf_pool_opts_init(&o, sizeof(o));
	o.buf_size = size;
	o.count = count;
	o.prefault = 0;
	cr_assert_eq(tw_buf_pool_create(&o, &p), TW_OK);
	return p;
}

Test(wire, pool_buffers_and_exhaustion)
{
	tw_buf_pool *pool = mkpool(4096, 2);
	tw_frame_hdr h = hdr_of(TW_MSG_RET);
	tw_value v = str("pooled");
	tw_out_msg a, b, c;

	cr_assert_eq(tw_msg_encode(pool, &h, &v, &a), TW_OK);
	cr_assert_eq(a.head->kind, TW_BUF_POOL);
	cr_assert_eq(tw_msg_encode(pool, &h, &v, &b), TW_OK);
	cr_assert_eq(tw_buf_pool_in_use(pool), 2);
	cr_assert_eq(tw_msg_encode(pool, &h, &v, &c), TW_ENOSPC);
	cr_assert_null(c.head);
	tw_out_msg_release(&a);
	cr_assert_eq(tw_msg_encode(pool, &h, &v, &c), TW_OK);
	tw_out_msg_release(&b);
	tw_out_msg_release(&c);
	tw_out_msg_release(&c); /* idempotent */
	cr_assert_eq(tw_buf_pool_in_use(pool), 0);
	cr_assert_eq(tw_buf_pool_destroy(pool), TW_OK);
	tw_value_destroy(&v);
}

Test(wire, heap_fallback_for_big_heads)
{
	tw_buf_pool *pool = mkpool(4096, 1);
	tw_frame_hdr h = hdr_of(TW_MSG_RET);
	static char big[10000];
	tw_value v, l;
	tw_out_msg m;

	memset(big, 'q', sizeof(big) - 1);
	v = str(big);
	cr_assert_eq(tw_msg_encode(pool, &h, &v, &m), TW_OK);
	cr_assert_eq(m.head->kind, TW_BUF_HEAP);
	cr_assert_eq(tw_buf_pool_in_use(pool), 0);
	tw_out_msg_release(&m);
	tw_value_destroy(&v);

	/* Many tensors: the iovec arrays go in the pool buffer's spare room
	 * while they fit, else everything moves to the heap. */
	cr_assert_eq(tw_value_list(&l, 20), TW_OK);
	for (uint32_t i = 0; i < 20; i++)
		tw_value_set_item(&l, i, tensor_val(TW_UINT8, 0, NULL, NULL));
	cr_assert_eq(tw_msg_encode(pool, &h, &l, &m), TW_OK);
	cr_assert_eq(m.head->kind, TW_BUF_POOL);
	cr_assert((uint8_t *)m.iov > (uint8_t *)m.head->data &&
		  (uint8_t *)m.iov < (uint8_t *)m.head->data + m.head->size);
	round_trip(TW_MSG_RET, &l);
	tw_out_msg_release(&m);
	tw_value_destroy(&l);

	cr_assert_eq(tw_value_list(&l, 300), TW_OK);
	for (uint32_t i = 0; i < 300; i++)
		tw_value_set_item(&l, i, tensor_val(TW_UINT8, 0, NULL, NULL));
	cr_assert_eq(tw_msg_encode(pool, &h, &l, &m), TW_OK);
	cr_assert_eq(m.head->kind, TW_BUF_HEAP);
	round_trip(TW_MSG_RET, &l);
	tw_out_msg_release(&m);
	tw_value_destroy(&l);
	cr_assert_eq(tw_buf_pool_destroy(pool), TW_OK);
}

Test(wire, decode_at_an_offset_and_alignment_rule)
{
	tw_frame_hdr h = hdr_of(TW_MSG_RET);
	tw_value v = str("offset");
	tw_out_msg m;
	tw_in_msg in;
	tw_buf *rb;

	cr_assert_eq(tw_msg_encode(NULL, &h, &v, &m), TW_OK);
	cr_assert_eq(tw_buf_alloc(256 + (size_t)m.total_len, &rb), TW_OK);
	tw_out_msg_copy(&m, (uint8_t *)rb->data + 128);
	cr_assert_eq(tw_msg_decode(rb, 128, (size_t)m.total_len, NULL, NULL,
				   &in),
		     TW_OK);
	cr_assert(tw_value_equal(&v, &in.payload));
	tw_in_msg_release(&in);

	memmove((uint8_t *)rb->data + 132, (uint8_t *)rb->data + 128,
		(size_t)m.total_len);
	cr_assert_eq(tw_msg_decode(rb, 132, (size_t)m.total_len, NULL, NULL,
				   &in),
		     TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "caller: frame start not 8-byte aligned");
	cr_assert_eq(in.payload.kind, TW_KIND_NONE);
	cr_assert_eq(tw_msg_decode(rb, 0, rb->size + 1, NULL, NULL, &in),
		     TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "caller: frame outside the buffer");
	cr_assert_eq(tw_msg_decode(rb, rb->size + 1, 0, NULL, NULL, &in),
		     TW_EINVAL);
	cr_assert_eq(tw_msg_decode(NULL, 0, 0, NULL, NULL, &in), TW_EINVAL);
	cr_assert_eq(tw_buf_refcnt(rb), 1);
	tw_buf_release(rb);
	tw_out_msg_release(&m);
	tw_value_destroy(&v);
}

Test(wire, big_payload_uses_a_malloc_arena)
{
	tw_value l;
	tw_in_msg in;
	tw_buf *rb;

	cr_assert_eq(tw_value_list(&l, 1000), TW_OK);
	for (uint32_t i = 0; i < 1000; i++)
		tw_value_set_item(&l, i, tw_value_int(i));
	round_trip_keep(TW_MSG_RET, &l, &in, &rb);
	cr_assert(in.arena_ != (void *)in.arena_inline_);
	tw_in_msg_release(&in);
	tw_buf_release(rb);
	tw_value_destroy(&l);

	tw_value s = str("small");
	round_trip_keep(TW_MSG_RET, &s, &in, &rb);
	cr_assert(in.arena_ == NULL || in.arena_ == (void *)in.arena_inline_);
	tw_in_msg_release(&in);
	tw_buf_release(rb);
	tw_value_destroy(&s);
}

/* docs/wire.md's worked example, byte for byte:
 * CALL req 7 from worker 1 to 2, "add"((5, tensor int32[2]), {}) */
Test(wire, docs_example_frame)
{
	/* clang-format off */
	static const uint8_t want[] = {
		/* header */
		0x54, 0x57, 0x52, 0x50, 0x01, 0x01, 0x00, 0x00,
		0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x15, 0x00, 0x00, 0x00,
		0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x88, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		/* segment table */
		0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		/* payload: tuple(3) */
		0x08, 0x03,
		0x04, 0x03, 'a', 'd', 'd', 0x00, /* "add" */
		0x08, 0x02,                      /* args tuple(2) */
		0x02, 0x0a,                      /* int 5 */
		0x06, 0x04, 0x01, 0x02, 0x01, 0x08, 0x00, /* tensor */
		0x09, 0x00,                      /* dict {} */
		/* zero pad to 64: 48 + 8 + 21 = 77 -> 128 (51 bytes) */
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		/* segment 0: int32 {1, -1} */
		0x01, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff,
	};
	/* clang-format on */
	int32_t data[2] = {1, -1};
	int64_t shape[1] = {2};
	tw_tensor t;
	tw_value args, tv, call;
	tw_frame_hdr h = {.type = TW_MSG_CALL, .req_id = 7, .src = 1, .dst = 2};
	tw_out_msg m;
	uint8_t got[sizeof(want)];

	_Static_assert(sizeof(want) == 136, "example length");
	cr_assert_eq(tw_tensor_init(&t, TW_INT32, 1, shape, NULL, data, NULL),
		     TW_OK);
	cr_assert_eq(tw_value_tensor(&tv, &t), TW_OK);
	cr_assert_eq(tw_value_tuple(&args, 2), TW_OK);
	tw_value_set_item(&args, 0, tw_value_int(5));
	tw_value_set_item(&args, 1, tv);
	call = call_payload("add", args, empty(TW_KIND_DICT));
	cr_assert_eq(tw_msg_encode(NULL, &h, &call, &m), TW_OK);
	cr_assert_eq(m.total_len, sizeof(want));
	tw_out_msg_copy(&m, got);
	for (size_t i = 0; i < sizeof(want); i++)
		cr_assert_eq(got[i], want[i], "byte %zu: %02x != %02x", i,
			     got[i], want[i]);
	tw_out_msg_release(&m);
	tw_value_destroy(&call);
}
