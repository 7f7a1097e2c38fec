/* Frame header encode/validate and the segment layout check (docs/wire.md). */
#include <endian.h>
#include <stdbool.h>
#include <string.h>

#include <tensorwire/frame.h>

#include "dataplane/err.h"

/* Header field offsets: docs/wire.md, "Header". The first 20 bytes keep
 * their place in every version so a v1 receiver can answer a newer peer. */
enum {
	OFF_MAGIC = 0,
	OFF_VERSION = 4,
	OFF_TYPE = 5,
	OFF_FLAGS = 6,
	OFF_REQ_ID = 8,
	OFF_SRC = 16,
	OFF_DST = 20,
	OFF_TIMEOUT = 24,
	OFF_PAYLOAD_LEN = 28,
	OFF_SEG_COUNT = 32,
	OFF_RESERVED = 36,
	OFF_TOTAL_LEN = 40,
};
_Static_assert(OFF_TOTAL_LEN + 8 == TW_FRAME_HDR_SIZE, "header layout");

/* Defaults for {0} limit fields (frame.h). */
#define DEF_MAX_TOTAL ((UINT64_C(1) << 30) + (UINT64_C(64) << 10))
#define DEF_MAX_SEGS 4096u
#define DEF_MAX_PAYLOAD (64u << 20)

/* Unaligned little-endian access: frames may sit anywhere in a receive
 * buffer, and the compiler turns these into plain loads on x86/arm64. */
static inline uint16_t ld16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}
static inline uint32_t ld32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}
static inline uint64_t ld64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}
static inline void st16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}
static inline void st32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}
static inline void st64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static inline uint64_t align_seg(uint64_t off)
{
	return (off + TW_FRAME_SEG_ALIGN - 1) &
	       ~(uint64_t)(TW_FRAME_SEG_ALIGN - 1);
}

void tw_frame_hdr_encode(void *dst, const tw_frame_hdr *h)
{
	uint8_t *p = dst;

	st32(p + OFF_MAGIC, TW_FRAME_MAGIC);
	p[OFF_VERSION] = h->version;
	p[OFF_TYPE] = h->type;
	st16(p + OFF_FLAGS, h->flags);
	st64(p + OFF_REQ_ID, h->req_id);
	st32(p + OFF_SRC, h->src);
	st32(p + OFF_DST, h->dst);
	st32(p + OFF_TIMEOUT, h->timeout_ms);
	st32(p + OFF_PAYLOAD_LEN, h->payload_len);
	st32(p + OFF_SEG_COUNT, h->seg_count);
	st32(p + OFF_RESERVED, 0);
	st64(p + OFF_TOTAL_LEN, h->total_len);
}

/* Limits in force: {0} fields take defaults, and no field may raise a hard
 * format limit (a receiver can be stricter than the format, never looser). */
static void effective_limits(const tw_frame_limits *lim, tw_frame_limits *eff)
{
	eff->max_total = DEF_MAX_TOTAL;
	eff->max_segs = DEF_MAX_SEGS;
	eff->max_payload = DEF_MAX_PAYLOAD;
	if (lim) {
		if (lim->max_total)
			eff->max_total = lim->max_total;
		if (lim->max_segs)
			eff->max_segs = lim->max_segs;
		if (lim->max_payload)
			eff->max_payload = lim->max_payload;
	}
	if (eff->max_total > TW_FRAME_MAX_TOTAL)
		eff->max_total = TW_FRAME_MAX_TOTAL;
	if (eff->max_segs > TW_FRAME_MAX_SEGS)
		eff->max_segs = TW_FRAME_MAX_SEGS;
}

/* After the magic matched, hand back what was read (req_id and src at
 * least) so the receiver can address an EXCEPTION to the request. msg is
 * static: a refusal costs a store, not a format (dataplane/err.h). */
static tw_status hdr_fail(tw_frame_hdr *out, const tw_frame_hdr *h,
			  const char *msg)
{
	*out = *h;
	return tw_fail_static(TW_EPROTO, msg);
}

tw_status tw_frame_hdr_decode(const void *src, const tw_frame_limits *lim,
			      tw_frame_hdr *out)
{
	const uint8_t *p = src;
	tw_frame_limits eff;
	tw_frame_hdr h;
	uint64_t head;

	memset(&h, 0, sizeof(h));
	memset(out, 0, sizeof(*out));
	if (ld32(p + OFF_MAGIC) != TW_FRAME_MAGIC)
		return tw_fail_static(TW_EPROTO, "header: bad magic");

	/* Fields at 0..20 are stable across versions (docs/wire.md, "Versions"):
	 * read them before the version check so a newer peer's request can
	 * be answered with an EXCEPTION naming our version. */
	h.version = p[OFF_VERSION];
	h.type = p[OFF_TYPE];
	h.flags = ld16(p + OFF_FLAGS);
	h.req_id = ld64(p + OFF_REQ_ID);
	h.src = ld32(p + OFF_SRC);
	if (h.version == 0)
		return hdr_fail(out, &h, "header: version 0");
	if (h.version > TW_FRAME_VERSION) {
		*out = h;
		return tw_fail_static(TW_EVERSION,
				      "header: newer wire version");
	}

	h.dst = ld32(p + OFF_DST);
	h.timeout_ms = ld32(p + OFF_TIMEOUT);
	h.payload_len = ld32(p + OFF_PAYLOAD_LEN);
	h.seg_count = ld32(p + OFF_SEG_COUNT);
	h.total_len = ld64(p + OFF_TOTAL_LEN);

	if (h.type == 0)
		return hdr_fail(out, &h, "header: message type 0");
	if (h.flags & ~TW_FRAME_F_KNOWN)
		return hdr_fail(out, &h, "header: unknown flags");
	if (ld32(p + OFF_RESERVED) != 0)
		return hdr_fail(out, &h, "header: reserved bytes not zero");

	effective_limits(lim, &eff);
	if (h.seg_count > eff.max_segs)
		return hdr_fail(out, &h, "header: seg_count over limit");
	if (h.payload_len > eff.max_payload)
		return hdr_fail(out, &h, "header: payload_len over limit");
	if (h.total_len > eff.max_total)
		return hdr_fail(out, &h, "header: total_len over limit");
	/* seg_count <= 65535 and payload_len < 2^32: no overflow in u64. */
	head = tw_frame_head_len(h.seg_count, h.payload_len);
	if (h.total_len < head)
		return hdr_fail(
			out, &h,
			"header: total_len shorter than header, table and payload");
	if (h.seg_count == 0 && h.total_len != head)
		return hdr_fail(
			out, &h,
			"header: total_len longer than payload without segments");

	*out = h;
	return TW_OK;
}

/* Pad bytes are part of the frame: requiring zeros keeps one encoding per
 * message (docs/wire.md) and keeps stale memory from leaking unnoticed.
 * True when frame bytes [from, to) are all zero. Pads (under 64 bytes,
 * checked on every frame received) end on a 64-byte boundary of the frame
 * and start past the header, so whole 8-byte words of the frame cover
 * them, the first shifted down to the pad's own bytes: no byte loop. */
static bool pad_zero(const uint8_t *f, uint64_t from, uint64_t to)
{
	if (from == to)
		return true;
	uint64_t at = from & ~(uint64_t)7;
	uint64_t acc = ld64(f + at) >> (8 * (from - at));
	for (at += 8; at < to; at += 8)
		acc |= ld64(f + at);
	return acc == 0;
}

tw_status tw_frame_check_segments(const void *frame, size_t len,
				  const tw_frame_hdr *h, uint64_t *offsets)
{
	const uint8_t *f = frame;
	uint64_t total = h->total_len;
	uint64_t end, off;

	if ((uint64_t)len != total)
		return tw_fail_static(TW_EPROTO,
				      "frame: length differs from total_len");
	end = (uint64_t)TW_FRAME_HDR_SIZE + 8u * (uint64_t)h->seg_count +
	      h->payload_len;
	off = tw_frame_head_len(h->seg_count, h->payload_len);
	if (off > total)
		return tw_fail_static(TW_EPROTO,
				      "frame: total_len shorter than head");
	if (h->seg_count == 0) {
		if (off != total)
			return tw_fail_static(
				TW_EPROTO,
				"frame: trailing bytes after payload");
		return TW_OK;
	}
	if (!pad_zero(f, end, off))
		return tw_fail_static(TW_EPROTO, "frame: payload pad not zero");

	/* off <= total <= 2^40 throughout, so align_seg cannot wrap, and each
	 * length is compared against the room left before it is added. */
	for (uint32_t i = 0; i < h->seg_count; i++) {
		uint64_t n = tw_frame_seg_len(frame, i);
		uint64_t start = align_seg(off);

		if (start > total)
			return tw_fail_static(
				TW_EPROTO,
				"frame: segment starts past total_len");
		if (!pad_zero(f, off, start))
			return tw_fail_static(TW_EPROTO,
					      "frame: segment pad not zero");
		if (n > total - start)
			return tw_fail_static(
				TW_EPROTO,
				"frame: segment runs past total_len");
		if (offsets)
			offsets[i] = start;
		off = start + n;
	}
	if (off != total)
		return tw_fail_static(
			TW_EPROTO,
			"frame: total_len does not end at the last segment");
	return TW_OK;
}

uint64_t tw_frame_seg_len(const void *frame, uint32_t i)
{
	return ld64((const uint8_t *)frame + TW_FRAME_HDR_SIZE +
		    8u * (uint64_t)i);
}
