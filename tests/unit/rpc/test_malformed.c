/* Malformed frames: a programmatic corpus of hostile inputs, each refused
 * with TW_EPROTO (or TW_EVERSION) and a reason, holding nothing; plus
 * every-byte truncation and every-bit/byte flips of a valid frame. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/tensorwire.h>

#include "tests/lib/reason.h"
#include "tests/lib/two_pass.h"

/* ---- building frames by hand ---- */

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* A well-laid-out frame of the given type around raw payload bytes and
 * nseg segments (filled with 0x11); *len gets total_len. */
static tw_buf *mk(unsigned type, const void *pay, size_t plen, uint32_t nseg,
		  const uint64_t *seglens, size_t *len)
{
	uint64_t off = tw_frame_head_len(nseg, (uint32_t)plen);
	tw_frame_hdr h = {.version = 1,
			  .type = (uint8_t)type,
			  .req_id = 77,
			  .src = 3,
			  .dst = 4};
	uint64_t total = off;
	tw_buf *b;

	for (uint32_t i = 0; i < nseg; i++)
		total = ((total + 63) & ~(uint64_t)63) + seglens[i];
	cr_assert_eq(tw_buf_alloc((size_t)total, &b), TW_OK);
	memset(b->data, 0, (size_t)total);
	uint8_t *f = b->data;
	h.payload_len = (uint32_t)plen;
	h.seg_count = nseg;
	h.total_len = total;
	tw_frame_hdr_encode(f, &h);
	memcpy(f + 48 + 8 * nseg, pay, plen);
	for (uint32_t i = 0; i < nseg; i++) {
		put64(f + 48 + 8 * i, seglens[i]);
		off = (off + 63) & ~(uint64_t)63;
		memset(f + off, 0x11, (size_t)seglens[i]);
		off += seglens[i];
	}
	*len = (size_t)total;
	return b;
}

/* When the header at b decodes, the decoder given that header (as a
 * transport hands it up) gives the verdict want, and the reason why it
 * gave when it decoded the header itself: one decoder either way. */
static void same_with_hdr(tw_buf *b, size_t len, const tw_decode_limits *lim,
			  tw_status want, const char *why, const char *what)
{
	tw_frame_hdr h;
	tw_in_msg in;

	if (len < TW_FRAME_HDR_SIZE ||
	    tw_frame_hdr_decode(b->data, lim ? &lim->frame : NULL, &h) != TW_OK)
		return;
	reason_forget();
	tw_status st = tw_msg_decode(b, 0, len, &h, lim, &in);
	if (st == TW_OK)
		tw_in_msg_release(&in);
	cr_assert_eq(st, want, "%s, header given: got %s (%s)", what,
		     tw_status_name(st), tw_errmsg(st));
	if (st != TW_OK)
		cr_assert_str_eq(tw_errmsg(st), why, "%s, header given", what);
	cr_assert_eq(tw_buf_refcnt(b), 1, "%s", what);
}

#define SHAPE_FAULT "payload: shape does not match the message type"

/* Pass 1 then pass 2, whatever the tree's size, reach the verdict st of
 * tw_msg_decode (which may have taken one pass) on the frame at b: the
 * same tree when it accepted (*in), and when it refused in the payload,
 * a refusal too -- for the same reason when same_reason is set (one
 * fault; with several the passes may meet another first: pass 1 leaves
 * duplicate keys to pass 2). The type's shape is not theirs to check. */
static void same_in_two_passes(tw_buf *b, size_t len,
			       const tw_decode_limits *lim, tw_status st,
			       const tw_in_msg *in, const char *why,
			       bool same_reason, const char *what)
{
	tw_value v;
	void *arena;

	reason_forget();
	tw_status st2 = two_pass_decode(b, len, lim, &v, &arena);
	if (st2 == TW_EINVAL)
		return; /* header or layout: found before the payload */
	if (st == TW_OK) {
		cr_assert_eq(st2, TW_OK,
			     "%s: two passes refuse what one took: %s", what,
			     tw_errmsg(st2));
		cr_assert(tw_value_equal(&in->payload, &v),
			  "%s: two passes build another tree", what);
	} else if (st2 == TW_OK) {
		cr_assert_str_eq(why, SHAPE_FAULT, "%s: two passes took it",
				 what);
	} else {
		cr_assert_eq(st2, TW_EPROTO, "%s", what);
		cr_assert_neq(strncmp(tw_errmsg(st2), "internal", 8), 0,
			      "%s: %s", what, tw_errmsg(st2));
		if (same_reason && strcmp(why, SHAPE_FAULT) != 0)
			cr_assert_str_eq(tw_errmsg(st2), why,
					 "%s: two passes say otherwise", what);
	}
	free(arena);
}

/* Decode must fail with want, give a reason, hold nothing. Consumes b. */
static void expect_bad_lim(tw_buf *b, size_t len, tw_status want,
			   const tw_decode_limits *lim, const char *what)
{
	tw_in_msg in;
	reason_forget();
	tw_status st = tw_msg_decode(b, 0, len, NULL, lim, &in);
	const char *why = reason(st);

	if (getenv("TW_TEST_VERBOSE")) /* see what each case is refused for */
		fprintf(stderr, "%-44s -> %s: %s\n", what, tw_status_name(st),
			why ? why : "-");
	cr_assert_eq(st, want, "%s: got %s (%s)", what, tw_status_name(st),
		     why ? why : "-");
	cr_assert_not_null(why, "%s: no reason given", what);
	/* The two decoder passes must agree on what is malformed. */
	cr_assert_neq(strncmp(why, "internal", 8), 0, "%s: %s", what, why);
	cr_assert_eq(in.payload.kind, TW_KIND_NONE, "%s", what);
	cr_assert_null(in.buf, "%s", what);
	cr_assert_eq(tw_buf_refcnt(b), 1, "%s: buffer reference leaked", what);
	char first[128];
	snprintf(first, sizeof(first), "%s", why);
	same_with_hdr(b, len, lim, st, first, what);
	same_in_two_passes(b, len, lim, st, NULL, first, true, what);
	tw_buf_release(b);
}

static void expect_bad(tw_buf *b, size_t len, const char *what)
{
	expect_bad_lim(b, len, TW_EPROTO, NULL, what);
}

static void expect_ok(tw_buf *b, size_t len, const char *what)
{
	tw_in_msg in;
	tw_status st = tw_msg_decode(b, 0, len, NULL, NULL, &in);

	cr_assert_eq(st, TW_OK, "%s: %s (%s)", what, tw_status_name(st),
		     tw_errmsg(st));
	same_in_two_passes(b, len, NULL, st, &in, NULL, false, what);
	tw_in_msg_release(&in);
	cr_assert_eq(tw_buf_refcnt(b), 1);
	tw_buf_release(b);
}

/* Payload-only cases: RET around raw bytes. */
#define PAY(s) (s), (sizeof(s) - 1)

static void bad_ret(const void *pay, size_t plen, const char *what)
{
	size_t len;
	tw_buf *b = mk(TW_MSG_RET, pay, plen, 0, NULL, &len);
	expect_bad(b, len, what);
}

static void ok_ret(const void *pay, size_t plen, const char *what)
{
	size_t len;
	tw_buf *b = mk(TW_MSG_RET, pay, plen, 0, NULL, &len);
	expect_ok(b, len, what);
}

/* ---- a valid CALL frame with tensors, to mutate ---- */

static tw_value cstr(const char *s)
{
	tw_value v;
	cr_assert_eq(tw_value_cstring(&v, s), TW_OK);
	return v;
}

static tw_value tens(tw_dtype dt, unsigned ndim, const int64_t *shape,
		     const int64_t *strides)
{
	tw_tensor t;
	tw_value v;
	size_t span;

	cr_assert_eq(tw_tensor_alloc(&t, dt, ndim, shape), TW_OK);
	if (strides)
		memcpy(t.strides, strides, ndim * sizeof(int64_t));
	cr_assert_eq(tw_tensor_span(&t, &span), TW_OK);
	for (size_t i = 0; i < span; i++)
		((uint8_t *)t.data)[i] = (uint8_t)(i + 1);
	cr_assert_eq(tw_value_tensor(&v, &t), TW_OK);
	tw_tensor_release(&t);
	return v;
}

/* CALL("mod.f", (tensor f32[4], tensor i8[3,2] transposed, 5, "s"),
 *      {"k": tensor i16[2]}) */
static tw_buf *valid_call(size_t *len)
{
	static const int64_t s4[1] = {4}, s32[2] = {3, 2}, st[2] = {1, 3},
			     s2[1] = {2};
	tw_value call, args, kw;
	tw_frame_hdr h = {.type = TW_MSG_CALL, .req_id = 5, .src = 1, .dst = 2};
	tw_out_msg m;
	tw_buf *b;

	cr_assert_eq(tw_value_tuple(&args, 4), TW_OK);
	tw_value_set_item(&args, 0, tens(TW_FLOAT32, 1, s4, NULL));
	tw_value_set_item(&args, 1, tens(TW_INT8, 2, s32, st));
	tw_value_set_item(&args, 2, tw_value_int(5));
	tw_value_set_item(&args, 3, cstr("s"));
	cr_assert_eq(tw_value_dict(&kw, 1), TW_OK);
	cr_assert_eq(tw_value_dict_set(&kw, 0, "k",
				       tens(TW_INT16, 1, s2, NULL)),
		     TW_OK);
	cr_assert_eq(tw_value_tuple(&call, 3), TW_OK);
	tw_value_set_item(&call, 0, cstr("mod.f"));
	tw_value_set_item(&call, 1, args);
	tw_value_set_item(&call, 2, kw);
	cr_assert_eq(tw_msg_encode(NULL, &h, &call, &m), TW_OK);
	cr_assert_eq(tw_buf_alloc((size_t)m.total_len, &b), TW_OK);
	tw_out_msg_copy(&m, b->data);
	*len = (size_t)m.total_len;
	tw_out_msg_release(&m);
	tw_value_destroy(&call);
	return b;
}

/* A private copy of the valid frame to break. */
static tw_buf *copy_of(const tw_buf *src, size_t len)
{
	tw_buf *b;
	cr_assert_eq(tw_buf_alloc(len, &b), TW_OK);
	memcpy(b->data, src->data, len);
	return b;
}

#define F(b) ((uint8_t *)(b)->data)

/* ---- header and layout ---- */

Test(malformed, header_fields)
{
	size_t len;
	tw_buf *v = valid_call(&len), *b;
	uint8_t *f;
	uint32_t plen, nseg;

	b = copy_of(v, len);
	expect_ok(b, len, "control");

	b = copy_of(v, len);
	F(b)[0] ^= 0x01;
	expect_bad(b, len, "bad magic");
	b = copy_of(v, len);
	F(b)[4] = 0;
	expect_bad(b, len, "version 0");
	b = copy_of(v, len);
	F(b)[5] = 0;
	expect_bad(b, len, "type 0");
	b = copy_of(v, len);
	F(b)[5] = TW_MSG_TYPE_COUNT_;
	expect_bad(b, len, "unknown type");
	b = copy_of(v, len);
	F(b)[5] = 0xff;
	expect_bad(b, len, "type 255");
	b = copy_of(v, len);
	F(b)[7] = 0x40;
	expect_bad(b, len, "flags");
	b = copy_of(v, len);
	F(b)[38] = 1;
	expect_bad(b, len, "reserved");

	f = F(v);
	plen = f[28] | f[29] << 8 | f[30] << 16 | (uint32_t)f[31] << 24;
	nseg = f[32] | f[33] << 8;
	b = copy_of(v, len);
	put32(F(b) + 28, plen + 1);
	expect_bad(b, len, "payload_len + 1");
	b = copy_of(v, len);
	put32(F(b) + 28, plen - 1);
	expect_bad(b, len, "payload_len - 1");
	b = copy_of(v, len);
	put32(F(b) + 28, UINT32_MAX);
	expect_bad(b, len, "payload_len 2^32 - 1");
	b = copy_of(v, len);
	put32(F(b) + 32, nseg + 1);
	expect_bad(b, len, "seg_count + 1");
	b = copy_of(v, len);
	put32(F(b) + 32, 0);
	expect_bad(b, len, "seg_count 0 with tensors");
	b = copy_of(v, len);
	put32(F(b) + 32, 70000);
	expect_bad(b, len, "seg_count over the format limit");
	b = copy_of(v, len);
	put64(F(b) + 40, len + 1);
	expect_bad(b, len, "total_len + 1");
	b = copy_of(v, len);
	put64(F(b) + 40, len - 1);
	expect_bad(b, len, "total_len - 1");
	b = copy_of(v, len);
	put64(F(b) + 40, UINT64_MAX);
	expect_bad(b, len, "total_len 2^64 - 1");
	b = copy_of(v, len);
	expect_bad(b, len - 1, "frame shorter than total_len");
	b = copy_of(v, len);
	expect_bad(b, 47, "shorter than a header");

	tw_decode_limits lim = {.frame = {.max_segs = 2}};
	b = copy_of(v, len);
	expect_bad_lim(b, len, TW_EPROTO, &lim,
		       "seg_count over the receiver's limit");
	lim = (tw_decode_limits){.frame = {.max_payload = 16}};
	b = copy_of(v, len);
	expect_bad_lim(b, len, TW_EPROTO, &lim,
		       "payload over the receiver's limit");
	lim = (tw_decode_limits){.frame = {.max_total = 128}};
	b = copy_of(v, len);
	expect_bad_lim(b, len, TW_EPROTO, &lim,
		       "total over the receiver's limit");

	tw_buf_release(v);
}

Test(malformed, newer_version_is_answerable)
{
	size_t len;
	tw_buf *v = valid_call(&len), *b = copy_of(v, len);
	tw_in_msg in;

	F(b)[4] = 2;
	reason_forget();
	cr_assert_eq(tw_msg_decode(b, 0, len, NULL, NULL, &in), TW_EVERSION);
	cr_assert_not_null(reason(TW_EVERSION));
	/* enough to address an EXCEPTION(TW_EVERSION) back */
	cr_assert_eq(in.hdr.version, 2);
	cr_assert_eq(in.hdr.req_id, 5);
	cr_assert_eq(in.hdr.src, 1);
	cr_assert_eq(in.hdr.type, TW_MSG_CALL);
	cr_assert_eq(in.payload.kind, TW_KIND_NONE);
	cr_assert_eq(tw_buf_refcnt(b), 1);
	expect_bad_lim(b, len, TW_EVERSION, NULL, "newer version");
	tw_buf_release(v);
}

Test(malformed, segment_table_lies)
{
	size_t len;
	tw_buf *v = valid_call(&len), *b;
	uint64_t s0 = get64(F(v) + 48);

	b = copy_of(v, len);
	put64(F(b) + 48, s0 + 1);
	expect_bad(b, len, "segment 0 one byte longer");
	b = copy_of(v, len);
	put64(F(b) + 48, s0 - 1);
	expect_bad(b, len, "segment 0 one byte shorter");
	b = copy_of(v, len);
	put64(F(b) + 48, (uint64_t)1 << 63);
	expect_bad(b, len, "segment 0 of 2^63 bytes");
	b = copy_of(v, len);
	put64(F(b) + 48, UINT64_MAX);
	expect_bad(b, len, "segment 0 of 2^64 - 1 bytes");
	b = copy_of(v, len);
	put64(F(b) + 48 + 16, 0);
	expect_bad(b, len, "last segment empty");
	/* Swapping two segment lengths keeps the total but not the layout
	 * the tensors describe. */
	b = copy_of(v, len);
	put64(F(b) + 48, get64(F(v) + 56));
	put64(F(b) + 56, s0);
	expect_bad(b, len, "segment lengths swapped");

	/* first pad byte after the payload, and a pad byte between segments */
	uint32_t plen = F(v)[28] | F(v)[29] << 8;
	size_t pad = 48 + 3 * 8 + plen;
	cr_assert_lt(pad % 64, 63);
	b = copy_of(v, len);
	F(b)[pad] = 0x80;
	expect_bad(b, len, "non-zero payload pad");
	size_t seg0 = tw_frame_head_len(3, plen);
	b = copy_of(v, len);
	F(b)[seg0 + s0] = 1;
	expect_bad(b, len, "non-zero pad between segments");
	tw_buf_release(v);
}

Test(malformed, truncated_at_every_byte)
{
	size_t len;
	tw_buf *v = valid_call(&len);

	for (size_t cut = 0; cut < len; cut++) {
		tw_buf *b = copy_of(v, len);
		char what[64];

		snprintf(what, sizeof(what), "truncated to %zu of %zu", cut,
			 len);
		expect_bad(b, cut, what);
	}
	/* and a frame of total_len followed by more bytes in the buffer is
	 * fine: the caller says where the frame ends */
	tw_buf *b;
	cr_assert_eq(tw_buf_alloc(len + 64, &b), TW_OK);
	memcpy(b->data, v->data, len);
	expect_ok(b, len, "frame inside a larger buffer");
	b = copy_of(v, len);
	tw_buf *big;
	cr_assert_eq(tw_buf_alloc(len + 1, &big), TW_OK);
	memcpy(big->data, v->data, len);
	F(big)[len] = 0;
	expect_bad(big, len + 1, "one trailing byte after total_len");
	tw_buf_release(b);
	tw_buf_release(v);
}

/* ---- values ---- */

Test(malformed, scalars_and_varints)
{
	ok_ret(PAY("\x02\x80\x01"), "control: int 64");
	bad_ret(PAY(""), "empty payload");
	bad_ret(PAY("\x0c"), "unknown tag 12");
	bad_ret(PAY("\xff"), "tag 255");
	bad_ret(PAY("\x01\x02"), "bool 2");
	bad_ret(PAY("\x01\xff"), "bool 255");
	bad_ret(PAY("\x01"), "bool truncated");
	bad_ret(PAY("\x02\x80\x00"), "overlong varint (0x80 0x00)");
	bad_ret(PAY("\x02\x81\x80\x80\x00"), "overlong varint, 4 bytes");
	bad_ret(PAY("\x02\x80"), "varint truncated");
	bad_ret(PAY("\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02"),
		"varint overflows 64 bits (10th byte 2)");
	bad_ret(PAY("\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\x81\x00"),
		"varint of 11 bytes");
	ok_ret(PAY("\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
	       "control: 10-byte varint");
	bad_ret(PAY("\x03\x00\x00\x00\x00\x00\x00\xf0"), "double truncated");
	bad_ret(PAY("\x00\x00"), "trailing byte after none");
	bad_ret(PAY("\x02\x02\x02\x02"), "trailing value after int");
}

Test(malformed, strings_and_bytes)
{
	ok_ret(PAY("\x04\x02hi\x00"), "control: string");
	bad_ret(PAY("\x04\x02hi"), "string without NUL");
	bad_ret(PAY("\x04\x02hi!"), "string with a non-zero terminator");
	bad_ret(PAY("\x04\x05hi\x00"), "string longer than the payload");
	bad_ret(PAY("\x04\xff\xff\xff\xff\x0f"
		    "a\x00"),
		"string of 2^32 - 1 bytes");
	bad_ret(PAY("\x04\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"),
		"string of 2^63 bytes");
	bad_ret(PAY("\x04\x02\xc3\x28\x00"), "invalid UTF-8");
	bad_ret(PAY("\x04\x02\xc0\x80\x00"), "overlong UTF-8 NUL");
	bad_ret(PAY("\x04\x03\xed\xa0\x80\x00"), "UTF-16 surrogate in UTF-8");
	bad_ret(PAY("\x04\x01\xe2\x00"), "truncated UTF-8 sequence");
	bad_ret(PAY("\x05\x03"
		    "ab"),
		"bytes longer than the payload");
	bad_ret(PAY("\x05\xff\xff\xff\xff\x0f"), "bytes of 2^32 - 1");
}

Test(malformed, containers)
{
	ok_ret(PAY("\x09\x02\x01"
		   "a\x00\x00\x01"
		   "b\x00\x00"),
	       "control: dict");
	bad_ret(PAY("\x07\x80\x80\x80\x80\x08\x00"),
		"list count 2^31, one item");
	bad_ret(PAY("\x08\xff\xff\xff\xff\x0f"),
		"tuple count 2^32 - 1, no items");
	bad_ret(PAY("\x07\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"),
		"list count 2^63");
	bad_ret(PAY("\x07\x03\x00\x00"), "list shorter than its count");
	bad_ret(PAY("\x09\x80\x80\x80\x80\x08\x00\x00\x00"), "dict count 2^31");
	bad_ret(PAY("\x09\x02\x01"
		    "a\x00\x00\x01"
		    "a\x00\x00"),
		"duplicate keys");
	bad_ret(PAY("\x09\x02\x00\x00\x00\x00\x00\x00"),
		"duplicate empty keys");
	bad_ret(PAY("\x09\x01\x02"
		    "a\x00\x00\x00"),
		"key with embedded NUL");
	bad_ret(PAY("\x09\x01\x01\xff\x00\x00"), "key not UTF-8");
	bad_ret(PAY("\x09\x01\x01"
		    "a\x01\x00"),
		"key without NUL");
	bad_ret(PAY("\x09\x01\x01"
		    "a\x00"),
		"dict value missing");

	/* a large dict with one duplicate far apart: the sorted check */
	uint8_t p[2048];
	size_t n = 0, last;
	p[n++] = TW_KIND_DICT;
	p[n++] = 0x80 | (200 & 0x7f); /* uvarint 200 */
	p[n++] = 200 >> 7;
	for (int i = 0; i < 200; i++) {
		char key[8];
		snprintf(key, sizeof(key), "key%03d", i == 199 ? 3 : i);
		p[n++] = 6;
		last = n;
		memcpy(p + n, key, 6);
		n += 6;
		p[n++] = 0;
		p[n++] = TW_KIND_NONE;
	}
	bad_ret(p, n, "duplicate in a 200-entry dict");
	memcpy(p + last, "key199", 6);
	ok_ret(p, n, "control: 200 distinct keys");
}

/* n nested list headers then a NONE, or a bare chain without an end. */
static void depth_bomb(unsigned n, bool ok)
{
	uint8_t *p = malloc(2 * (size_t)n + 1);
	for (unsigned i = 0; i < n; i++) {
		p[2 * i] = TW_KIND_LIST;
		p[2 * i + 1] = 1;
	}
	p[2 * (size_t)n] = TW_KIND_NONE;
	if (ok)
		ok_ret(p, 2 * (size_t)n + 1, "control: depth 64");
	else
		bad_ret(p, 2 * (size_t)n + 1, "depth bomb");
	free(p);
}

Test(malformed, depth_and_nodes)
{
	depth_bomb(TW_VALUE_MAX_DEPTH, true);
	depth_bomb(TW_VALUE_MAX_DEPTH + 1, false);
	depth_bomb(1000000, false);

	/* node limit */
	size_t len;
	tw_decode_limits lim = {.max_nodes = 10};
	static const uint8_t l11[] = {0x07, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
	tw_buf *b = mk(TW_MSG_RET, l11, sizeof(l11), 0, NULL, &len);
	expect_bad_lim(b, len, TW_EPROTO, &lim, "11 nodes over a limit of 10");
}

Test(malformed, rref_and_error)
{
	ok_ret(PAY("\x0a\x01\x02\x03\x04\x05"), "control: rref");
	bad_ret(PAY("\x0a\x80\x80\x80\x80\x10\x02\x03\x04\x05"),
		"rref owner 2^32");
	bad_ret(PAY("\x0a\x01\x80\x80\x80\x80\x10\x03\x04\x05"),
		"rref created_on 2^32");
	bad_ret(PAY("\x0a\x01\x02\x03\x80\x80\x80\x80\x10\x05"),
		"fork created_on 2^32");
	bad_ret(PAY("\x0a\x01\x02\x03\x04"), "rref truncated");
	ok_ret(PAY("\x0b\x0d\x01\x02hi\x00"), "control: error");
	bad_ret(PAY("\x0b\x00\x01\x02hi\x00"), "error kind 0 (TW_OK)");
	bad_ret(PAY("\x0b\x63\x01\x02hi\x00"), "error kind 99");
	bad_ret(PAY("\x0b\x14\x01\x02hi\x00"), "error kind TW_STATUS_COUNT_");
	bad_ret(PAY("\x0b\x0d\x80\x80\x80\x80\x10\x02hi\x00"),
		"error origin 2^32");
	bad_ret(PAY("\x0b\x0d\x01\x02hi"), "error message without NUL");
	bad_ret(PAY("\x0b\x0d\x01\x02\xff\xfe\x00"), "error message not UTF-8");
}

/* ---- tensors ---- */

static void tensor_case(const void *pay, size_t plen, uint32_t nseg,
			const uint64_t *lens, bool ok, const char *what)
{
	size_t len;
	tw_buf *b = mk(TW_MSG_RET, pay, plen, nseg, lens, &len);

	if (ok)
		expect_ok(b, len, what);
	else
		expect_bad(b, len, what);
}

Test(malformed, tensors)
{
	static const uint64_t l8[1] = {8}, l16[1] = {16}, l0[1] = {0},
			      l88[2] = {8, 8};

	/* float32[2]: dtype 8, ndim 1, shape 2, stride 1, nbytes 8, seg 0 */
	tensor_case(PAY("\x06\x08\x01\x02\x01\x08\x00"), 1, l8, true,
		    "control: tensor");
	tensor_case(PAY("\x06\x0a\x01\x02\x01\x08\x00"), 1, l8, false,
		    "dtype 10");
	tensor_case(PAY("\x06\xff\x01\x02\x01\x08\x00"), 1, l8, false,
		    "dtype 255");
	tensor_case(PAY("\x06\x08\x09\x01\x01\x01\x01\x01\x01\x01\x01\x01"
			"\x01\x01\x01\x01\x01\x01\x01\x01\x01\x04\x00"),
		    1, l8, false, "ndim 9");
	tensor_case(PAY("\x06\x08\x01\x02"), 1, l8, false,
		    "descriptor truncated");
	/* shape 2^62 x 2^62 overflows numel */
	tensor_case(PAY("\x06\x01\x02"
			"\x80\x80\x80\x80\x80\x80\x80\x80\x40"
			"\x80\x80\x80\x80\x80\x80\x80\x80\x40"
			"\x01\x01\x08\x00"),
		    1, l8, false, "shape product overflows");
	/* shape 2^63 does not fit int64 */
	tensor_case(PAY("\x06\x01\x01\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"
			"\x01\x08\x00"),
		    1, l8, false, "shape 2^63");
	/* span overflow: shape 2, stride 2^62, float32 */
	tensor_case(PAY("\x06\x08\x01\x02\x80\x80\x80\x80\x80\x80\x80\x80\x40"
			"\x08\x00"),
		    1, l8, false, "span overflows");
	tensor_case(PAY("\x06\x08\x01\x02\x02\x08\x00"), 1, l8, false,
		    "span (12) != nbytes (8)");
	tensor_case(PAY("\x06\x08\x01\x02\x02\x0c\x00"), 1, l8, false,
		    "nbytes (12) != segment length (8)");
	tensor_case(PAY("\x06\x08\x01\x02\x01\x10\x00"), 1, l16, false,
		    "nbytes == segment length != span");
	tensor_case(PAY("\x06\x08\x01\x02\x01\x08\x01"), 1, l8, false,
		    "segment index out of range");
	tensor_case(PAY("\x06\x08\x01\x02\x01\x08\x80\x80\x80\x80\x10"), 1, l8,
		    false, "segment index 2^32");
	tensor_case(PAY("\x06\x08\x01\x02\x01\x08\x00"), 0, NULL, false,
		    "tensor without segments");
	tensor_case(PAY("\x07\x02"
			"\x06\x08\x01\x02\x01\x08\x00"
			"\x06\x08\x01\x02\x01\x08\x00"),
		    2, l88, false, "segment used twice");
	tensor_case(PAY("\x07\x02"
			"\x06\x08\x01\x02\x01\x08\x00"
			"\x06\x08\x01\x02\x01\x08\x00"),
		    1, l8, false, "more tensors than segments");
	tensor_case(PAY("\x06\x08\x01\x02\x01\x08\x00"), 2, l88, false,
		    "segment unused");
	tensor_case(PAY("\x07\x02"
			"\x06\x08\x01\x02\x01\x08\x01"
			"\x06\x08\x01\x02\x01\x08\x00"),
		    2, l88, true, "control: segments referenced out of order");
	/* empty tensor: shape 0, nbytes 0, an empty segment */
	tensor_case(PAY("\x06\x08\x01\x00\x01\x00\x00"), 1, l0, true,
		    "control: empty tensor");
	tensor_case(PAY("\x06\x08\x01\x00\x01\x04\x00"), 1, l0, false,
		    "empty tensor claiming 4 bytes");
}

/* ---- payload shapes ---- */

static void shape_case(unsigned type, const void *pay, size_t plen, bool ok,
		       const char *what)
{
	size_t len;
	tw_buf *b = mk(type, pay, plen, 0, NULL, &len);

	if (ok)
		expect_ok(b, len, what);
	else
		expect_bad(b, len, what);
}

Test(malformed, payload_shapes)
{
	shape_case(TW_MSG_CALL,
		   PAY("\x08\x03\x04\x01"
		       "f\x00\x08\x00\x09\x00"),
		   true, "control: CALL");
	shape_case(TW_MSG_CALL, PAY("\x02\x02"), false, "CALL of an int");
	shape_case(TW_MSG_CALL, PAY("\x08\x03\x02\x02\x08\x00\x09\x00"), false,
		   "CALL with an int name");
	shape_case(TW_MSG_CALL,
		   PAY("\x08\x02\x04\x01"
		       "f\x00\x08\x00"),
		   false, "CALL tuple of 2");
	shape_case(TW_MSG_CALL,
		   PAY("\x07\x03\x04\x01"
		       "f\x00\x08\x00\x09\x00"),
		   false, "CALL as a list");
	shape_case(TW_MSG_CALL,
		   PAY("\x08\x03\x04\x01"
		       "f\x00\x07\x00\x09\x00"),
		   false, "CALL with list args");
	shape_case(TW_MSG_CALL,
		   PAY("\x08\x03\x04\x01"
		       "f\x00\x08\x00\x00"),
		   false, "CALL with none kwargs");
	shape_case(TW_MSG_REMOTE_CALL,
		   PAY("\x08\x03\x04\x01"
		       "f\x00\x08\x00\x09\x00"),
		   false, "REMOTE_CALL without rref");
	shape_case(TW_MSG_EXCEPTION, PAY("\x04\x01x\x00"), false,
		   "EXCEPTION of a string");
	shape_case(TW_MSG_ACK, PAY("\x02\x00"), false, "ACK of an int");
	shape_case(TW_MSG_REMOTE_RET, PAY("\x00"), false, "REMOTE_RET of none");
	shape_case(TW_MSG_RREF_FORK_REQUEST,
		   PAY("\x08\x02\x0a\x01\x02\x03\x04\x05\x02\x01"), false,
		   "FORK_REQUEST to worker -1");
	shape_case(TW_MSG_RREF_FORK_REQUEST,
		   PAY("\x08\x02\x0a\x01\x02\x03\x04\x05\x02\x02"), true,
		   "control: FORK_REQUEST to worker 1");
}

Test(malformed, header_bytes_inverted)
{
	size_t len;
	tw_buf *v = valid_call(&len);

	for (int i = 0; i < 8; i++) {
		tw_buf *b = copy_of(v, len);
		F(b)[i] ^= 0xff;
		/* version 1 -> 254: newer, the rest is then not ours to judge */
		expect_bad_lim(b, len, i == 4 ? TW_EVERSION : TW_EPROTO, NULL,
			       "header byte inverted");
	}
	tw_buf_release(v);
}

/* ---- every bit, every byte ---- */

/* Decode must not crash; on success the value is released cleanly. */
static void try_decode(tw_buf *b, size_t len)
{
	tw_in_msg in;
	reason_forget();
	tw_status st = tw_msg_decode(b, 0, len, NULL, NULL, &in);
	const char *why = reason(st);

	char first[128] = "";
	if (st == TW_OK) {
		char text[256];
		tw_value_format(&in.payload, text, sizeof(text));
	} else {
		cr_assert(st == TW_EPROTO || st == TW_EVERSION, "%s",
			  tw_status_name(st));
		cr_assert_not_null(why);
		cr_assert_neq(strncmp(why, "internal", 8), 0, "%s", why);
		cr_assert_eq(in.payload.kind, TW_KIND_NONE);
		snprintf(first, sizeof(first), "%s", why);
	}
	same_in_two_passes(b, len, NULL, st, &in, first, false,
			   "mutated frame");
	if (st == TW_OK)
		tw_in_msg_release(&in);
	cr_assert_eq(tw_buf_refcnt(b), 1);
	same_with_hdr(b, len, NULL, st, first, "mutated frame");
}

Test(malformed, every_bit_flipped)
{
	size_t len;
	tw_buf *v = valid_call(&len), *b = copy_of(v, len);
	unsigned accepted = 0;

	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			F(b)[i] ^= (uint8_t)(1u << bit);
			tw_in_msg in;
			if (tw_msg_decode(b, 0, len, NULL, NULL, &in) ==
			    TW_OK) {
				accepted++;
				tw_in_msg_release(&in);
			}
			try_decode(b, len);
			F(b)[i] ^= (uint8_t)(1u << bit);
		}
	}
	/* Flips in tensor bytes, ids and the timeout are legal frames. */
	cr_assert_gt(accepted, 0);
	cr_assert_lt(accepted, len * 8);
	tw_buf_release(b);
	tw_buf_release(v);
}

Test(malformed, every_byte_replaced)
{
	static const uint8_t vals[] = {0x00, 0x01, 0x7f, 0x80, 0xff};
	size_t len;
	tw_buf *v = valid_call(&len), *b = copy_of(v, len);

	for (size_t i = 0; i < len; i++) {
		uint8_t keep = F(b)[i];
		for (size_t k = 0; k < sizeof(vals); k++) {
			F(b)[i] = vals[k];
			try_decode(b, len);
		}
		F(b)[i] = (uint8_t)~keep;
		try_decode(b, len);
		F(b)[i] = keep;
	}
	tw_buf_release(b);
	tw_buf_release(v);
}
