/* tensorwire frames: the fixed wire header and the segment layout that
 * every transport moves. Knows nothing of what a message means. */
#ifndef TENSORWIRE_FRAME_H
#define TENSORWIRE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include <tensorwire/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Frame = header (48 bytes)
 *       | segment table: seg_count little-endian u64 byte lengths
 *       | payload (payload_len bytes)
 *       | zero padding to a multiple of 64 (only when seg_count > 0)
 *       | segment 0 | zero padding to 64 | segment 1 | ... | last segment
 * Every segment starts at a 64-byte aligned offset from the frame start;
 * total_len ends exactly at the end of the last segment (no trailing pad).
 * docs/wire.md is the byte-by-byte reference.
 */
#define TW_FRAME_MAGIC 0x50525754u /* bytes "TWRP" */
#define TW_FRAME_VERSION 1u
#define TW_FRAME_HDR_SIZE 48u
#define TW_FRAME_SEG_ALIGN 64u
/* Hard format limits; tw_frame_limits may only lower them. */
#define TW_FRAME_MAX_SEGS 65535u
#define TW_FRAME_MAX_TOTAL (UINT64_C(1) << 40)

/* Header flags (docs/wire.md §1.1). AUTOGRAD: the payload is an autograd
 * envelope around the type's own payload (§5.2, message.h). */
#define TW_FRAME_F_AUTOGRAD 0x0001u
#define TW_FRAME_F_KNOWN (TW_FRAME_F_AUTOGRAD)

/* Host-order view of the header. */
typedef struct tw_frame_hdr {
	uint8_t version;
	uint8_t type;   /* message type, meaning owned by rpc/ */
	uint16_t flags; /* TW_FRAME_F_*; others must be 0 */
	uint64_t req_id;
	uint32_t src;        /* sending worker id */
	uint32_t dst;        /* destination worker id */
	uint32_t timeout_ms; /* caller's remaining budget, 0 = none */
	uint32_t payload_len;
	uint32_t seg_count;
	uint64_t total_len;
} tw_frame_hdr;

/* What a receiver accepts; {0} fields take the defaults below. */
typedef struct tw_frame_limits {
	uint64_t max_total;   /* default 1 GiB + 64 KiB */
	uint32_t max_segs;    /* default 4096 */
	uint32_t max_payload; /* default 64 MiB */
} tw_frame_limits;

/* Bytes of header + table + payload, padded to 64 when nseg > 0. */
static inline uint64_t tw_frame_head_len(uint32_t nseg, uint32_t payload_len)
{
	uint64_t n = (uint64_t)TW_FRAME_HDR_SIZE + 8u * (uint64_t)nseg +
		     payload_len;
	return nseg ? (n + TW_FRAME_SEG_ALIGN - 1) &
			       ~(uint64_t)(TW_FRAME_SEG_ALIGN - 1)
		    : n;
}

/* Write h as the 48 header bytes at dst (version and magic from h->version
 * and TW_FRAME_MAGIC; reserved bytes zeroed). */
void tw_frame_hdr_encode(void *dst, const tw_frame_hdr *h);

/*
 * Parse and check the 48 header bytes at src against lim (NULL = defaults):
 * magic, version, flags, reserved, type != 0, seg_count and payload_len
 * within limits, head length <= total_len <= max_total. Enough for a stream
 * transport to learn how many bytes the frame needs before it has them.
 * Returns TW_EVERSION for a newer version (out is still filled, so the
 * receiver can answer), TW_EPROTO for anything else wrong; tw_errmsg(st)
 * then names the field ("header: seg_count over limit").
 */
tw_status tw_frame_hdr_decode(const void *src, const tw_frame_limits *lim,
			      tw_frame_hdr *out);

/*
 * Check a whole frame of len bytes whose header was decoded into h: len ==
 * total_len and the segment table lays out exactly to total_len. When
 * offsets is not NULL it receives each segment's offset from the frame
 * start (h->seg_count entries). TW_EPROTO on any mismatch, which
 * tw_errmsg(st) names.
 */
tw_status tw_frame_check_segments(const void *frame, size_t len,
				  const tw_frame_hdr *h, uint64_t *offsets);

/* Length of segment i as stored in the table (no bounds check: i must be
 * below a validated seg_count). */
uint64_t tw_frame_seg_len(const void *frame, uint32_t i);

#ifdef __cplusplus
}
#endif
#endif
