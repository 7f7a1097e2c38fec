/* Unit tests for dataplane/frame.c: header codec, limits, segment layout. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include <tensorwire/frame.h>

#include "tests/lib/reason.h"

static tw_frame_hdr base_hdr(void)
{
	tw_frame_hdr h = {
		.version = TW_FRAME_VERSION,
		.type = 1,
		.flags = 0,
		.req_id = 0x1122334455667788ull,
		.src = 7,
		.dst = 9,
		.timeout_ms = 1500,
		.payload_len = 10,
		.seg_count = 0,
		.total_len = TW_FRAME_HDR_SIZE + 10,
	};
	return h;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

Test(frame, head_len)
{
	cr_assert_eq(tw_frame_head_len(0, 0), 48);
	cr_assert_eq(tw_frame_head_len(0, 5), 53);
	cr_assert_eq(tw_frame_head_len(1, 0), 64);
	cr_assert_eq(tw_frame_head_len(1, 8), 64);
	cr_assert_eq(tw_frame_head_len(1, 9), 128);
	cr_assert_eq(tw_frame_head_len(65535, UINT32_MAX) % 64, 0);
}

Test(frame, encode_layout_is_little_endian)
{
	tw_frame_hdr h = base_hdr();
	uint8_t b[48];
	/* clang-format off */
	static const uint8_t want[48] = {
		0x54, 0x57, 0x52, 0x50, /* magic "TWRP" */
		1, 1, 0, 0,             /* version, type, flags */
		0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* req_id */
		7, 0, 0, 0,   /* src */
		9, 0, 0, 0,   /* dst */
		0xdc, 0x05, 0, 0, /* timeout 1500 */
		10, 0, 0, 0,  /* payload_len */
		0, 0, 0, 0,   /* seg_count */
		0, 0, 0, 0,   /* reserved */
		58, 0, 0, 0, 0, 0, 0, 0, /* total_len */
	};
	/* clang-format on */

	memset(b, 0xee, sizeof(b));
	tw_frame_hdr_encode(b, &h);
	cr_assert_arr_eq(b, want, 48);
	cr_assert_eq(memcmp(b, "TWRP", 4), 0);
}

Test(frame, round_trip)
{
	tw_frame_hdr h = base_hdr(), g;
	uint8_t b[48];

	tw_frame_hdr_encode(b, &h);
	cr_assert_eq(tw_frame_hdr_decode(b, NULL, &g), TW_OK);
	cr_assert_eq(g.version, h.version);
	cr_assert_eq(g.type, h.type);
	cr_assert_eq(g.flags, 0);
	cr_assert_eq(g.req_id, h.req_id);
	cr_assert_eq(g.src, h.src);
	cr_assert_eq(g.dst, h.dst);
	cr_assert_eq(g.timeout_ms, h.timeout_ms);
	cr_assert_eq(g.payload_len, h.payload_len);
	cr_assert_eq(g.seg_count, h.seg_count);
	cr_assert_eq(g.total_len, h.total_len);
}

/* Expect TW_EPROTO for the header at b, explained as want. */
static void expect_proto(uint8_t *b, const tw_frame_limits *lim,
			 const char *want)
{
	tw_frame_hdr g;

	reason_forget();
	cr_assert_eq(tw_frame_hdr_decode(b, lim, &g), TW_EPROTO, "%s", want);
	cr_assert_str_eq(tw_errmsg(TW_EPROTO), want);
}

Test(frame, rejects_each_bad_field)
{
	tw_frame_hdr h = base_hdr();
	uint8_t b[48];

	tw_frame_hdr_encode(b, &h);
	b[0] ^= 1; /* magic */
	expect_proto(b, NULL, "header: bad magic");

	tw_frame_hdr_encode(b, &h);
	b[4] = 0; /* version 0 */
	expect_proto(b, NULL, "header: version 0");

	tw_frame_hdr_encode(b, &h);
	b[5] = 0; /* type 0 */
	expect_proto(b, NULL, "header: message type 0");

	tw_frame_hdr_encode(b, &h);
	b[6] = 2; /* flags: bit 0 (AUTOGRAD) is known, bit 1 is not */
	expect_proto(b, NULL, "header: unknown flags");
	tw_frame_hdr_encode(b, &h);
	b[7] = 0x80;
	expect_proto(b, NULL, "header: unknown flags");

	for (int i = 36; i < 40; i++) { /* reserved */
		tw_frame_hdr_encode(b, &h);
		b[i] = 1;
		expect_proto(b, NULL, "header: reserved bytes not zero");
	}

	tw_frame_hdr_encode(b, &h);
	put64(b + 40, TW_FRAME_HDR_SIZE + 9); /* shorter than payload */
	expect_proto(
		b, NULL,
		"header: total_len shorter than header, table and payload");
	tw_frame_hdr_encode(b, &h);
	put64(b + 40, TW_FRAME_HDR_SIZE + 11); /* longer, no segments */
	expect_proto(b, NULL,
		     "header: total_len longer than payload without segments");
	tw_frame_hdr_encode(b, &h);
	put64(b + 40, UINT64_MAX);
	expect_proto(b, NULL, "header: total_len over limit");
}

Test(frame, req_id_readable_on_proto_error)
{
	tw_frame_hdr h = base_hdr(), g;
	uint8_t b[48];

	tw_frame_hdr_encode(b, &h);
	b[6] = 2; /* an unknown flag */
	cr_assert_eq(tw_frame_hdr_decode(b, NULL, &g), TW_EPROTO);
	cr_assert_eq(g.req_id, h.req_id);
	cr_assert_eq(g.src, h.src);
}

Test(frame, newer_version_fills_stable_fields)
{
	tw_frame_hdr h = base_hdr(), g;
	uint8_t b[48];

	tw_frame_hdr_encode(b, &h);
	b[4] = 2;
	/* A v2 header may reuse reserved and later fields freely. */
	memset(b + 20, 0xab, 28);
	reason_forget();
	cr_assert_eq(tw_frame_hdr_decode(b, NULL, &g), TW_EVERSION);
	cr_assert_str_eq(tw_errmsg(TW_EVERSION), "header: newer wire version");
	cr_assert_eq(g.version, 2);
	cr_assert_eq(g.type, 1);
	cr_assert_eq(g.req_id, h.req_id);
	cr_assert_eq(g.src, 7);
	cr_assert_eq(g.total_len, 0);

	b[4] = 255;
	cr_assert_eq(tw_frame_hdr_decode(b, NULL, &g), TW_EVERSION);
	/* The magic still comes first: a foreign stream is not "a newer us". */
	b[3] = 0;
	cr_assert_eq(tw_frame_hdr_decode(b, NULL, &g), TW_EPROTO);
	cr_assert_str_eq(tw_errmsg(TW_EPROTO), "header: bad magic");
}

Test(frame, limits_default_and_custom)
{
	tw_frame_hdr h = base_hdr();
	tw_frame_limits lim = {0};
	uint8_t b[48];

	/* default max_segs 4096 */
	h.seg_count = 4096;
	h.payload_len = 0;
	h.total_len = tw_frame_head_len(4096, 0);
	tw_frame_hdr_encode(b, &h);
	cr_assert_eq(tw_frame_hdr_decode(b, NULL, &h), TW_OK);
	h.seg_count = 4097;
	h.total_len = tw_frame_head_len(4097, 0);
	tw_frame_hdr_encode(b, &h);
	expect_proto(b, NULL, "header: seg_count over limit");
	/* raised up to the format's hard limit, not beyond */
	lim.max_segs = 100000;
	cr_assert_eq(tw_frame_hdr_decode(b, &lim, &h), TW_OK);
	h.seg_count = 65536;
	h.total_len = tw_frame_head_len(65536, 0);
	tw_frame_hdr_encode(b, &h);
	expect_proto(b, &lim, "header: seg_count over limit");

	/* default max_payload 64 MiB */
	h = base_hdr();
	h.payload_len = 64u << 20;
	h.total_len = TW_FRAME_HDR_SIZE + h.payload_len;
	tw_frame_hdr_encode(b, &h);
	cr_assert_eq(tw_frame_hdr_decode(b, NULL, &h), TW_OK);
	h.payload_len++;
	h.total_len++;
	tw_frame_hdr_encode(b, &h);
	expect_proto(b, NULL, "header: payload_len over limit");
	lim = (tw_frame_limits){.max_payload = 100};
	h = base_hdr();
	h.payload_len = 101;
	h.total_len = TW_FRAME_HDR_SIZE + 101;
	tw_frame_hdr_encode(b, &h);
	expect_proto(b, &lim, "header: payload_len over limit");

	/* max_total: default 1 GiB + 64 KiB; hard 2^40 */
	h = base_hdr();
	h.seg_count = 1;
	h.payload_len = 0;
	h.total_len = (UINT64_C(1) << 30) + (UINT64_C(64) << 10);
	tw_frame_hdr_encode(b, &h);
	cr_assert_eq(tw_frame_hdr_decode(b, NULL, &h), TW_OK);
	h.total_len++;
	tw_frame_hdr_encode(b, &h);
	expect_proto(b, NULL, "header: total_len over limit");
	lim = (tw_frame_limits){.max_total = UINT64_MAX};
	cr_assert_eq(tw_frame_hdr_decode(b, &lim, &h), TW_OK);
	h.total_len = TW_FRAME_MAX_TOTAL + 1;
	tw_frame_hdr_encode(b, &h);
	expect_proto(b, &lim, "header: total_len over limit");
}

/* Build a frame of n segments with the given lengths into a zeroed buffer;
 * returns total_len. */
static uint64_t build(uint8_t *f, size_t cap, uint32_t plen, uint32_t n,
		      const uint64_t *lens, tw_frame_hdr *h)
{
	uint64_t off = tw_frame_head_len(n, plen);

	memset(f, 0, cap);
	for (uint32_t i = 0; i < n; i++) {
		put64(f + 48 + 8 * i, lens[i]);
		off = (off + 63) & ~(uint64_t)63;
		memset(f + off, 0x5a, lens[i]);
		off += lens[i];
	}
	*h = base_hdr();
	h->payload_len = plen;
	h->seg_count = n;
	h->total_len = off;
	memset(f + 48 + 8 * n, 0x33, plen);
	tw_frame_hdr_encode(f, h);
	return off;
}

Test(frame, segments_layout)
{
	static uint8_t f[4096];
	uint64_t lens[4] = {10, 0, 64, 1};
	uint64_t offs[4];
	tw_frame_hdr h, g;
	uint64_t total = build(f, sizeof(f), 20, 4, lens, &h);

	cr_assert_eq(tw_frame_hdr_decode(f, NULL, &g), TW_OK);
	cr_assert_eq(tw_frame_check_segments(f, total, &g, offs), TW_OK, "%s",
		     tw_errmsg(TW_EPROTO));
	cr_assert_eq(offs[0], 128); /* 48 + 32 + 20 = 100 -> 128 */
	cr_assert_eq(offs[1], 192); /* 138 -> 192; empty */
	cr_assert_eq(offs[2], 192); /* already aligned */
	cr_assert_eq(offs[3], 256);
	cr_assert_eq(total, 257);
	for (uint32_t i = 0; i < 4; i++)
		cr_assert_eq(tw_frame_seg_len(f, i), lens[i]);
	cr_assert_eq(tw_frame_check_segments(f, total, &g, NULL), TW_OK);

	/* no segments: exactly header + payload */
	total = build(f, sizeof(f), 5, 0, NULL, &h);
	cr_assert_eq(total, 53);
	cr_assert_eq(tw_frame_check_segments(f, total, &h, NULL), TW_OK);
	cr_assert_eq(tw_frame_check_segments(f, total + 1, &h, NULL),
		     TW_EPROTO);
	cr_assert_str_eq(tw_errmsg(TW_EPROTO),
			 "frame: length differs from total_len");
}

/* Expect tw_frame_check_segments to refuse, explained as want. */
static void expect_bad_layout(const uint8_t *f, size_t len,
			      const tw_frame_hdr *h, const char *want)
{
	reason_forget();
	cr_assert_eq(tw_frame_check_segments(f, len, h, NULL), TW_EPROTO, "%s",
		     want);
	cr_assert_str_eq(tw_errmsg(TW_EPROTO), want);
}

Test(frame, segments_lies)
{
	static uint8_t f[4096];
	uint64_t lens[3] = {100, 7, 64};
	tw_frame_hdr h;
	uint64_t total = build(f, sizeof(f), 3, 3, lens, &h);

	cr_assert_eq(tw_frame_check_segments(f, total, &h, NULL), TW_OK);

	expect_bad_layout(f, total - 1, &h,
			  "frame: length differs from total_len");

	/* segment longer than the frame */
	put64(f + 48, 1u << 20);
	expect_bad_layout(f, total, &h, "frame: segment runs past total_len");
	/* length that would wrap offsets */
	put64(f + 48, UINT64_MAX - 10);
	expect_bad_layout(f, total, &h, "frame: segment runs past total_len");
	put64(f + 48, UINT64_MAX);
	expect_bad_layout(f, total, &h, "frame: segment runs past total_len");
	/* shorter: layout ends before total_len */
	put64(f + 48, 100);
	put64(f + 48 + 16, 63);
	expect_bad_layout(f, total, &h,
			  "frame: total_len does not end at the last segment");
	put64(f + 48 + 16, 64);

	/* non-zero pad after payload, and between segments */
	f[48 + 24 + 3] = 1;
	expect_bad_layout(f, total, &h, "frame: payload pad not zero");
	f[48 + 24 + 3] = 0;
	f[128 + 100] = 1;
	expect_bad_layout(f, total, &h, "frame: segment pad not zero");
	f[128 + 100] = 0;
	cr_assert_eq(tw_frame_check_segments(f, total, &h, NULL), TW_OK);

	/* a header that lies about total_len (caller passed an unchecked one) */
	h.total_len = 10;
	expect_bad_layout(f, 10, &h, "frame: total_len shorter than head");
}

Test(frame, trailing_empty_segment_keeps_its_pad)
{
	static uint8_t f[1024];
	uint64_t lens[2] = {1, 0};
	uint64_t offs[2];
	tw_frame_hdr h;
	uint64_t total = build(f, sizeof(f), 0, 2, lens, &h);

	/* The empty last segment starts (and ends) at the next 64 boundary. */
	cr_assert_eq(total, 128);
	cr_assert_eq(tw_frame_check_segments(f, total, &h, offs), TW_OK);
	cr_assert_eq(offs[0], 64);
	cr_assert_eq(offs[1], 128);
}
