/* Unit tests for the DPDK transport's packets (dataplane/dpdk_pkt.c) on
 * plain bytes: building, checksums, parsing and every refusal. No EAL:
 * they run in every build, with or without DPDK. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dataplane/dpdk_pkt.h"

static const uint8_t MAC_A[6] = {0x02, 0, 0, 0, 0x01, 0x01};
static const uint8_t MAC_B[6] = {0x02, 0, 0, 0, 0x01, 0x02};

/* B: two queues, ports 31850 and 31851. */
static struct twp_local local_b(void)
{
	struct twp_local l;
	memset(&l, 0, sizeof(l));
	memcpy(l.mac, MAC_B, 6);
	l.ip = inet_addr("10.77.0.2");
	l.base_port = 31850;
	l.nports = 2;
	l.mss = 1426;
	return l;
}

static void eps(struct twp_ep *a, struct twp_ep *b)
{
	memset(a, 0, sizeof(*a));
	memset(b, 0, sizeof(*b));
	memcpy(a->mac, MAC_A, 6);
	memcpy(b->mac, MAC_B, 6);
	a->ip = inet_addr("10.77.0.1");
	b->ip = inet_addr("10.77.0.2");
	a->port = htons(31850);
	b->port = htons(31851);
}

/* A complete packet from A to B's queue 1 with a correct UDP checksum. */
static size_t mkpkt(uint8_t *p, const struct twp_hdr *h, const uint8_t *pl)
{
	struct twp_ep a, b;
	eps(&a, &b);
	twp_l2l4_build(p, &a, &b, TWP_HDR_LEN + h->len, false);
	twp_hdr_encode(p + TWP_L2L4_LEN, h);
	if (h->len)
		memcpy(p + TWP_HEADERS, pl, h->len);
	uint32_t sum = twp_csum_add(0, p + TWP_L2L4_LEN, TWP_HDR_LEN + h->len,
				    false);
	twp_udp_csum_set(p, sum);
	return TWP_HEADERS + h->len;
}

static struct twp_hdr data_hdr(uint32_t len)
{
	struct twp_hdr h = {.type = TWP_DATA,
			    .dst_sess = 0x10005,
			    .src_sess = 0x20007,
			    .pn = 0xf00d,
			    .seq = 41,
			    .ack = 17,
			    .msg = 3,
			    .len = len,
			    .frame_off = 1426,
			    .frame_len = 1426 + len + 10};
	return h;
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* RFC 1071 over big-endian words, a byte at a time: the reference the
 * library's word-at-a-time, host-order sums are checked against. */
static uint16_t ref_sum(uint32_t acc, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		acc += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		acc += (uint32_t)p[n - 1] << 8;
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return (uint16_t)acc;
}

/* The IPv4 header checksum the header at ip should carry. */
static uint16_t ref_ip_csum(const uint8_t *ip)
{
	uint8_t h[20];
	memcpy(h, ip, 20);
	h[10] = h[11] = 0;
	return (uint16_t)~ref_sum(0, h, 20);
}

/* The UDP checksum the datagram after the IPv4 header at ip should carry
 * (0 sent as 0xffff: 0 means none). */
static uint16_t ref_udp_csum(const uint8_t *ip)
{
	const uint8_t *udp = ip + 20;
	uint16_t ulen = be16(udp + 4);
	uint8_t ph[12];
	memcpy(ph, ip + 12, 8);
	ph[8] = 0;
	ph[9] = 17;
	ph[10] = udp[4];
	ph[11] = udp[5];
	uint8_t *d = malloc(ulen);
	cr_assert_not_null(d);
	memcpy(d, udp, ulen);
	d[6] = d[7] = 0;
	uint16_t c = (uint16_t)~ref_sum(ref_sum(0, ph, 12), d, ulen);
	free(d);
	return c == 0 ? 0xffff : c;
}

/* Recompute the IPv4 header and UDP checksums after a mutation, so that
 * the check under test is the one that fires. */
static void fix_csums(uint8_t *p, size_t len)
{
	uint8_t *ip = p + TWP_ETH_LEN;
	ip[10] = ip[11] = 0;
	uint16_t c = (uint16_t)~twp_csum_fold(twp_csum_add(0, ip, 20, false));
	memcpy(ip + 10, &c, 2);
	uint16_t ulen = be16(ip + 24);
	if (ulen >= 8 && TWP_L2L4_LEN + (size_t)ulen - 8 <= len)
		twp_udp_csum_set(p, twp_csum_add(0, p + TWP_L2L4_LEN,
						 (size_t)ulen - 8, false));
}

static enum twp_err parse(const uint8_t *p, size_t n, const struct twp_local *l)
{
	return twp_parse(p, n, l, false, false, NULL);
}

#define ASSERT_ERR(got, want)                                                  \
	do {                                                                   \
		enum twp_err g_ = (got), w_ = (want);                          \
		cr_assert_eq(g_, w_, "got %s, want %s", twp_err_name(g_),      \
			     twp_err_name(w_));                                \
	} while (0)

/* ================================================================== */
/* Building and parsing                                                */

/* Every field of h came back from the packet, and so did the addresses. */
static void expect_fields(const struct twp_pkt *pk, const struct twp_hdr *h)
{
	cr_assert_eq(pk->h.type, h->type);
	cr_assert_eq(pk->h.flags, h->flags);
	cr_assert_eq(pk->h.dst_sess, h->dst_sess);
	cr_assert_eq(pk->h.src_sess, h->src_sess);
	cr_assert_eq(pk->h.pn, h->pn);
	cr_assert_eq(pk->h.seq, h->seq);
	cr_assert_eq(pk->h.ack, h->ack);
	cr_assert_eq(pk->h.msg, h->msg);
	cr_assert_eq(pk->h.len, h->len);
	cr_assert_eq(pk->h.frame_off, h->frame_off);
	cr_assert_eq(pk->h.frame_len, h->frame_len);
	cr_assert_eq(pk->queue, 1);
	cr_assert_eq(pk->dst_port, 31851);
	cr_assert_eq(pk->src.ip, inet_addr("10.77.0.1"));
	cr_assert_eq(pk->src.port, htons(31850));
	cr_assert_eq(memcmp(pk->src.mac, MAC_A, 6), 0);
}

Test(dpdk_pkt, roundtrip_every_type)
{
	uint8_t pl[300], p[2048];
	for (size_t i = 0; i < sizeof(pl); i++)
		pl[i] = (uint8_t)(i * 7 + 1);
	const struct twp_hdr hs[] = {
		data_hdr(sizeof(pl)),
		data_hdr(1),
		/* the first and the last packet of a frame */
		{.type = TWP_DATA,
		 .dst_sess = 1,
		 .src_sess = 2,
		 .seq = 0,
		 .len = 100,
		 .frame_off = 0,
		 .frame_len = 5000},
		{.type = TWP_DATA,
		 .dst_sess = UINT64_MAX,
		 .src_sess = UINT64_C(1) << 63,
		 .pn = UINT64_MAX,
		 .seq = UINT32_MAX,
		 .ack = UINT32_MAX,
		 .msg = UINT32_MAX,
		 .len = 100,
		 .frame_off = 4900,
		 .frame_len = 5000},
		/* an empty frame */
		{.type = TWP_DATA, .dst_sess = 7, .src_sess = 8, .seq = 5},
		{.type = TWP_ACK, .dst_sess = 5, .src_sess = 6, .ack = 99},
		{.type = TWP_ACK,
		 .flags = TWP_F_ACK_REQ,
		 .dst_sess = 5,
		 .src_sess = 6,
		 .ack = 0},
		{.type = TWP_ACK,
		 .flags = TWP_F_NAK,
		 .dst_sess = UINT32_MAX,
		 .src_sess = UINT32_MAX,
		 .ack = UINT32_MAX},
		{.type = TWP_ACK,
		 .flags = TWP_F_NAK | TWP_F_ACK_REQ,
		 .dst_sess = 5,
		 .src_sess = 6,
		 .ack = 1},
		{.type = TWP_CONNECT,
		 .src_sess = 9,
		 .len = TWP_SETUP_LEN,
		 .frame_len = 1426},
		{.type = TWP_CONNECT,
		 .flags = TWP_F_TAG,
		 .src_sess = UINT64_MAX,
		 .len = TWP_SETUP_LEN,
		 .frame_len = TWP_MIN_MSS},
		{.type = TWP_CONNECT,
		 .src_sess = 9,
		 .len = TWP_SETUP_LEN,
		 .frame_len = TWP_MAX_MSS},
		{.type = TWP_ACCEPT,
		 .flags = TWP_F_TAG,
		 .dst_sess = 9,
		 .src_sess = UINT64_C(0xfedcba9876543210),
		 .len = TWP_SETUP_LEN,
		 .frame_len = 1000},
		{.type = TWP_RESET, .dst_sess = 3, .src_sess = 4, .pn = 12},
		/* a RESET answering a packet for a session we do not know */
		{.type = TWP_RESET, .dst_sess = 3, .src_sess = 0},
	};
	struct twp_local l = local_b();
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++) {
		size_t n = mkpkt(p, &hs[i], pl);
		cr_assert_eq(n, TWP_HEADERS + hs[i].len);
		struct twp_pkt pk;
		memset(&pk, 0xa5, sizeof(pk));
		ASSERT_ERR(twp_parse(p, n, &l, false, false, &pk), TWP_OK);
		expect_fields(&pk, &hs[i]);
		cr_assert_eq(pk.payload, p + TWP_HEADERS);
		cr_assert_eq(memcmp(pk.payload, pl, hs[i].len), 0);
		/* the same without an output, and with the checksums the
		 * NIC would have verified */
		ASSERT_ERR(parse(p, n, &l), TWP_OK);
		ASSERT_ERR(twp_parse(p, n, &l, true, true, NULL), TWP_OK);
		/* the header's wire bytes are the only encoding of it */
		uint8_t again[TWP_HDR_LEN];
		twp_hdr_encode(again, &pk.h);
		cr_assert_eq(memcmp(again, p + TWP_L2L4_LEN, TWP_HDR_LEN), 0);
	}
}

/* The bytes the builder writes, at the offsets dpdk_pkt.h documents. */
Test(dpdk_pkt, wire_layout)
{
	uint8_t pl[300], p[2048];
	for (size_t i = 0; i < sizeof(pl); i++)
		pl[i] = (uint8_t)(i * 7 + 1);
	struct twp_hdr h = data_hdr(sizeof(pl));
	size_t n = mkpkt(p, &h, pl);
	cr_assert_eq(n, 112 + sizeof(pl));
	/* Ethernet */
	cr_assert_eq(memcmp(p, MAC_B, 6), 0);
	cr_assert_eq(memcmp(p + 6, MAC_A, 6), 0);
	cr_assert_eq(be16(p + 12), 0x0800);
	/* IPv4: 45 00 len 0000 4000 40 11 csum src dst */
	const uint8_t *ip = p + 14;
	cr_assert_eq(ip[0], 0x45);
	cr_assert_eq(ip[1], 0);
	cr_assert_eq(be16(ip + 2), 20 + 8 + 70 + sizeof(pl));
	cr_assert_eq(be16(ip + 4), 0);
	cr_assert_eq(be16(ip + 6), 0x4000, "DF, offset 0");
	cr_assert_eq(ip[8], 64);
	cr_assert_eq(ip[9], 17);
	cr_assert_eq(be16(ip + 10), ref_ip_csum(ip));
	const uint8_t src[4] = {10, 77, 0, 1}, dst[4] = {10, 77, 0, 2};
	cr_assert_eq(memcmp(ip + 12, src, 4), 0);
	cr_assert_eq(memcmp(ip + 16, dst, 4), 0);
	/* UDP */
	const uint8_t *udp = p + 34;
	cr_assert_eq(be16(udp), 31850);
	cr_assert_eq(be16(udp + 2), 31851);
	cr_assert_eq(be16(udp + 4), 8 + 70 + sizeof(pl));
	cr_assert_eq(be16(udp + 6), ref_udp_csum(ip));
	/* ours: little-endian at fixed offsets */
	const uint8_t *th = p + 42;
	cr_assert_eq(th[0], 'T');
	cr_assert_eq(th[1], 'W');
	cr_assert_eq(th[2], 5);
	cr_assert_eq(th[3], 0);
	for (int i = 4; i < 12; i++)
		cr_assert_eq(th[i], 0, "no tag from the encoder");
	cr_assert_eq(th[12], TWP_DATA);
	cr_assert_eq(th[13], 0);
	const uint8_t want[56] = {
		0x05, 0x00, 0x01, 0x00, 0, 0, 0, 0, /* dst_sess 0x10005 */
		0x07, 0x00, 0x02, 0x00, 0, 0, 0, 0, /* src_sess 0x20007 */
		0x0d, 0xf0, 0,    0,    0, 0, 0, 0, /* pn 0xf00d */
		41,   0,    0,    0,                /* seq */
		17,   0,    0,    0,                /* ack */
		3,    0,    0,    0,                /* msg */
		0x2c, 0x01, 0,    0,                /* len 300 */
		0x92, 0x05, 0,    0,    0, 0, 0, 0, /* frame_off 1426 */
		0xc8, 0x06, 0,    0,    0, 0, 0, 0, /* frame_len 1736 */
	};
	cr_assert_eq(memcmp(th + 14, want, sizeof(want)), 0);
	cr_assert_eq(memcmp(p + 112, pl, sizeof(pl)), 0);
	/* a known IPv4 header's checksum (RFC 1071 style example) */
	uint8_t kip[20] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40,
			   0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
			   0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
	uint16_t c = (uint16_t)~twp_csum_fold(twp_csum_add(0, kip, 20, false));
	uint8_t cb[2];
	memcpy(cb, &c, 2);
	cr_assert_eq(cb[0], 0xb8);
	cr_assert_eq(cb[1], 0x61);
}

/* Ethernet pads short frames and some NICs leave a trailer: the IP total
 * length, not the frame, says where the packet ends. */
Test(dpdk_pkt, trailing_bytes_ignored)
{
	uint8_t pl[10] = {1, 2, 3}, p[256];
	struct twp_hdr h = data_hdr(sizeof(pl));
	size_t n = mkpkt(p, &h, pl);
	memset(p + n, 0xee, sizeof(p) - n);
	struct twp_local l = local_b();
	struct twp_pkt pk;
	for (size_t pad = 0; pad <= sizeof(p) - n; pad += 7) {
		ASSERT_ERR(twp_parse(p, n + pad, &l, false, false, &pk),
			   TWP_OK);
		cr_assert_eq(pk.h.len, sizeof(pl));
	}
}

/* ================================================================== */
/* Checksums                                                           */

/* A sum over pieces cut at odd and even offsets equals the sum over the
 * whole: what lets the transport checksum iovecs and external buffers. */
Test(dpdk_pkt, checksum_pieces)
{
	uint8_t buf[5000];
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < sizeof(buf); i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
	for (size_t len = 0; len < 200; len++) {
		uint32_t whole = twp_csum_add(0, buf, len, false);
		for (size_t cut = 0; cut <= len; cut++) {
			uint32_t s = twp_csum_add(0, buf, cut, false);
			s = twp_csum_add(s, buf + cut, len - cut, cut & 1);
			cr_assert_eq(twp_csum_fold(s), twp_csum_fold(whole),
				     "len %zu cut %zu", len, cut);
		}
	}
	/* many pieces of random sizes over a big buffer */
	for (int round = 0; round < 50; round++) {
		size_t off = 0;
		uint32_t s = 0;
		while (off < sizeof(buf)) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			size_t n = 1 + x % 97;
			if (n > sizeof(buf) - off)
				n = sizeof(buf) - off;
			s = twp_csum_add(s, buf + off, n, off & 1);
			off += n;
		}
		cr_assert_eq(twp_csum_fold(s),
			     twp_csum_fold(
				     twp_csum_add(0, buf, sizeof(buf), false)));
	}
}

/* The library's sums, stored as they are, are the reference's big-endian
 * checksums: IPv4 header and UDP, for every payload length up to past a
 * few unrolled blocks, at odd and even buffer addresses. */
Test(dpdk_pkt, checksums_match_reference)
{
	static uint8_t raw[2 + TWP_HEADERS + 300], pl[300];
	uint64_t x = 0x2545f4914f6cdd1dull;
	for (size_t i = 0; i < sizeof(pl); i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pl[i] = (uint8_t)x;
	}
	struct twp_local l = local_b();
	l.mss = 65535;
	for (size_t mis = 0; mis < 2; mis++) {
		uint8_t *p = raw + mis;
		for (uint32_t len = 1; len <= sizeof(pl); len++) {
			struct twp_hdr h = data_hdr(len);
			size_t n = mkpkt(p, &h, pl);
			const uint8_t *ip = p + TWP_ETH_LEN;
			cr_assert_eq(be16(ip + 10), ref_ip_csum(ip), "len %u",
				     len);
			cr_assert_eq(be16(ip + 26), ref_udp_csum(ip), "len %u",
				     len);
			ASSERT_ERR(parse(p, n, &l), TWP_OK);
		}
	}
}

/* A datagram whose checksum computes to 0 carries 0xffff (0 would say
 * "no checksum"), and the receiver takes it. */
Test(dpdk_pkt, udp_checksum_zero_sent_as_ffff)
{
	uint8_t p[256];
	struct twp_local l = local_b();
	struct twp_hdr h = data_hdr(2);
	h.frame_off = 0;
	h.frame_len = 2;
	bool found = false;
	for (uint32_t w = 0; w <= 0xffff && !found; w++) {
		uint8_t pl[2] = {(uint8_t)(w >> 8), (uint8_t)w};
		size_t n = mkpkt(p, &h, pl);
		if (p[40] != 0xff || p[41] != 0xff)
			continue;
		found = true;
		cr_assert_eq(ref_udp_csum(p + TWP_ETH_LEN), 0xffff);
		ASSERT_ERR(parse(p, n, &l), TWP_OK);
		/* the same datagram with the checksum left out */
		p[40] = p[41] = 0;
		ASSERT_ERR(parse(p, n, &l), TWP_OK);
	}
	cr_assert(found, "no payload makes the checksum 0");
}

/* UDP checksum 0 means none was computed: accepted unchecked, whatever
 * the payload. */
Test(dpdk_pkt, udp_checksum_none)
{
	uint8_t pl[64], p[256];
	memset(pl, 0x33, sizeof(pl));
	struct twp_hdr h = data_hdr(sizeof(pl));
	size_t n = mkpkt(p, &h, pl);
	p[40] = p[41] = 0;
	struct twp_local l = local_b();
	ASSERT_ERR(parse(p, n, &l), TWP_OK);
	p[n - 1] ^= 0xff;
	ASSERT_ERR(parse(p, n, &l), TWP_OK);
}

/* Offload: the builder leaves the IPv4 checksum 0 for the NIC, and
 * twp_udp_phdr_set leaves the pseudo-header sum where the NIC finishes
 * the UDP checksum; finishing it as a NIC does gives what the software
 * path computes. */
Test(dpdk_pkt, checksum_offload)
{
	uint8_t pl[123], sw[512], hw[512];
	for (size_t i = 0; i < sizeof(pl); i++)
		pl[i] = (uint8_t)(i ^ 0x5a);
	struct twp_hdr h = data_hdr(sizeof(pl));
	size_t n = mkpkt(sw, &h, pl);
	cr_assert(sw[24] != 0 || sw[25] != 0);

	struct twp_ep a, b;
	eps(&a, &b);
	twp_l2l4_build(hw, &a, &b, TWP_HDR_LEN + h.len, true);
	twp_hdr_encode(hw + TWP_L2L4_LEN, &h);
	memcpy(hw + TWP_HEADERS, pl, h.len);
	cr_assert_eq(hw[24], 0);
	cr_assert_eq(hw[25], 0);
	struct twp_local l = local_b();
	ASSERT_ERR(twp_parse(hw, n, &l, false, true, NULL), TWP_E_IP_CSUM);
	ASSERT_ERR(twp_parse(hw, n, &l, true, true, NULL), TWP_OK);

	twp_udp_phdr_set(hw);
	/* The NIC: ones' complement sum of the datagram from the UDP
	 * header on, the pseudo-header sum already in the checksum field. */
	uint16_t c = (uint16_t)~ref_sum(0, hw + 34,
					TWP_UDP_LEN + TWP_HDR_LEN + h.len);
	if (c == 0)
		c = 0xffff;
	cr_assert_eq(c, be16(sw + 40));
	/* and the rest of the packet is the software one */
	cr_assert_eq(memcmp(hw + 34, sw + 34, 6), 0);
	cr_assert_eq(memcmp(hw + 42, sw + 42, n - 42), 0);
}

/* ================================================================== */
/* Refusals                                                            */

enum { FIX = 1, NOFIX = 0 };

struct mut {
	const char *what;
	enum twp_err want;
	int fix;
	void (*fn)(uint8_t *p, size_t *len);
};

#define MUT(name, body)                                                        \
	static void name(uint8_t *p, size_t *len)                              \
	{                                                                      \
		(void)p;                                                       \
		(void)len;                                                     \
		body;                                                          \
	}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Offsets: Ethernet 0, IPv4 14, UDP 34, ours 42 (see dpdk_pkt.h); the
 * base packet is data_hdr(100): 188 bytes, frame_off 1426. */
MUT(m_empty, *len = 0)
MUT(m_eth_cut, *len = TWP_ETH_LEN - 1)
MUT(m_eth_only, *len = TWP_ETH_LEN)
MUT(m_ip_cut, *len = TWP_ETH_LEN + TWP_IP_LEN - 1)
MUT(m_udp_cut, *len = TWP_L2L4_LEN - 1)
MUT(m_l2l4_only, *len = TWP_L2L4_LEN)
MUT(m_hdr_cut, *len = TWP_HEADERS - 1)
MUT(m_short_payload, *len -= 1)
MUT(m_eth_dst, p[5] ^= 1)
MUT(m_eth_dst_bcast, memset(p, 0xff, 6))
MUT(m_eth_src_mcast, p[6] |= 1)
MUT(m_eth_ipv6, p[12] = 0x86; p[13] = 0xdd)
MUT(m_eth_vlan, p[12] = 0x81; p[13] = 0x00)
MUT(m_eth_arp, p[12] = 0x08; p[13] = 0x06)
MUT(m_ip_v6, p[14] = 0x65)
MUT(m_ip_v0, p[14] = 0x05)
MUT(m_ip_ihl6, p[14] = 0x46)
MUT(m_ip_ihl4, p[14] = 0x44)
MUT(m_ip_ihl15, p[14] = 0x4f)
MUT(m_ip_len_big, p[16] = 0x7f)
MUT(m_ip_len_one_over, put_be16(p + 16, (uint16_t)(*len - 14 + 1)))
MUT(m_ip_len_small, put_be16(p + 16, 60))
MUT(m_ip_len_73, put_be16(p + 16, TWP_OVERHEAD_L3 - 1))
MUT(m_ip_mf, p[20] |= 0x20)
MUT(m_ip_off, p[21] = 1)
MUT(m_ip_off_high, p[20] |= 0x1f)
MUT(m_ip_evil, p[20] |= 0x80)
MUT(m_ip_no_df, p[20] &= (uint8_t)~0x40)
MUT(m_ip_mf_no_df, p[20] = 0x20)
MUT(m_ip_last_frag, p[20] = 0; p[21] = 0xb9) /* offset 1480, MF clear */
MUT(m_ip_ttl0, p[22] = 0)
MUT(m_ip_tcp, p[23] = 6)
MUT(m_ip_icmp, p[23] = 1)
MUT(m_ip_dst, p[33] ^= 1)
MUT(m_ip_src0, memset(p + 26, 0, 4))
MUT(m_ip_src_bcast, memset(p + 26, 0xff, 4))
MUT(m_ip_src_mcast, p[26] = 224)
MUT(m_ip_src_mcast_top, p[26] = 239)
MUT(m_ip_csum, p[24] ^= 0x40)
MUT(m_ip_csum_tos, p[15] ^= 0x10)
MUT(m_udp_len, p[39] += 1)
MUT(m_udp_len_small, p[39] -= 1)
MUT(m_udp_len_0, put_be16(p + 38, 0))
MUT(m_udp_port_low, put_be16(p + 36, 80))
MUT(m_udp_port_below, put_be16(p + 36, 31849))
MUT(m_udp_port_high, put_be16(p + 36, 31852))
MUT(m_udp_csum, p[40] ^= 0x11)
MUT(m_payload_flip, p[*len - 1] ^= 0x80)
MUT(m_hdr_flip, p[42 + 14] ^= 0x01)
MUT(m_src_port_flip, p[34] ^= 0x01)
MUT(m_magic, p[42] = 'X')
MUT(m_magic_swapped, p[42] = 'W'; p[43] = 'T')
MUT(m_version0, p[44] = 0)
MUT(m_version, p[44] = 3) /* the last version */
MUT(m_type0, p[42 + 12] = 0)
MUT(m_type7, p[42 + 12] = 7)
MUT(m_type255, p[42 + 12] = 255)
MUT(m_flags, p[42 + 13] = 1)
MUT(m_flags_high, p[42 + 13] = 0x80)
MUT(m_reserved, p[45] = 1)
MUT(m_len_field, p[42 + 50] += 1)
MUT(m_len_field_small, p[42 + 50] -= 1)
MUT(m_len_field_huge, p[42 + 53] = 0x80)
MUT(m_frame_over, put_le64(p + 42 + 62, 5))
MUT(m_frame_one_short, put_le64(p + 42 + 62, 1426 + 100 - 1))
MUT(m_frame_huge, p[42 + 69] = 0x01)
MUT(m_frame_2p40_1, put_le64(p + 42 + 62, (UINT64_C(1) << 40) + 1))
MUT(m_frame_max, put_le64(p + 42 + 62, UINT64_MAX))
MUT(m_off_past, put_le64(p + 42 + 54, UINT64_C(0xffffff)))
MUT(m_off_wrap, put_le64(p + 42 + 54, UINT64_MAX - 50))
MUT(m_dst0, put_le64(p + 42 + 14, 0))
MUT(m_src0, put_le64(p + 42 + 22, 0))

static const struct mut muts[] = {
	{"empty", TWP_E_SHORT, NOFIX, m_empty},
	{"ethernet cut", TWP_E_SHORT, NOFIX, m_eth_cut},
	{"ethernet only", TWP_E_SHORT, NOFIX, m_eth_only},
	{"ipv4 header cut", TWP_E_SHORT, NOFIX, m_ip_cut},
	{"udp header cut", TWP_E_SHORT, NOFIX, m_udp_cut},
	{"no tensorwire header", TWP_E_SHORT, NOFIX, m_l2l4_only},
	{"tensorwire header cut", TWP_E_SHORT, NOFIX, m_hdr_cut},
	{"truncated payload", TWP_E_IP_LEN, NOFIX, m_short_payload},
	{"eth dst", TWP_E_ETH_DST, NOFIX, m_eth_dst},
	{"eth dst broadcast", TWP_E_ETH_DST, NOFIX, m_eth_dst_bcast},
	{"eth src multicast", TWP_E_ETH_SRC, NOFIX, m_eth_src_mcast},
	{"ipv6", TWP_E_ETH_TYPE, NOFIX, m_eth_ipv6},
	{"vlan", TWP_E_ETH_TYPE, NOFIX, m_eth_vlan},
	{"arp", TWP_E_ETH_TYPE, NOFIX, m_eth_arp},
	{"ip version 6", TWP_E_IP_VERSION, FIX, m_ip_v6},
	{"ip version 0", TWP_E_IP_VERSION, FIX, m_ip_v0},
	{"ip options", TWP_E_IP_IHL, FIX, m_ip_ihl6},
	{"ip ihl 4", TWP_E_IP_IHL, FIX, m_ip_ihl4},
	{"ip ihl 15", TWP_E_IP_IHL, FIX, m_ip_ihl15},
	{"ip len > frame", TWP_E_IP_LEN, FIX, m_ip_len_big},
	{"ip len one past the frame", TWP_E_IP_LEN, FIX, m_ip_len_one_over},
	{"ip len < headers", TWP_E_IP_LEN, FIX, m_ip_len_small},
	{"ip len one short of headers", TWP_E_IP_LEN, FIX, m_ip_len_73},
	{"fragment MF", TWP_E_IP_FRAG, FIX, m_ip_mf},
	{"fragment offset", TWP_E_IP_FRAG, FIX, m_ip_off},
	{"fragment offset high bits", TWP_E_IP_FRAG, FIX, m_ip_off_high},
	{"reserved flag", TWP_E_IP_FRAG, FIX, m_ip_evil},
	{"DF clear (reassembled)", TWP_E_IP_FRAG, FIX, m_ip_no_df},
	{"fragment MF without DF", TWP_E_IP_FRAG, FIX, m_ip_mf_no_df},
	{"last fragment", TWP_E_IP_FRAG, FIX, m_ip_last_frag},
	{"ttl 0", TWP_E_IP_TTL, FIX, m_ip_ttl0},
	{"tcp", TWP_E_IP_PROTO, FIX, m_ip_tcp},
	{"icmp", TWP_E_IP_PROTO, FIX, m_ip_icmp},
	{"ip dst", TWP_E_IP_DST, FIX, m_ip_dst},
	{"ip src 0", TWP_E_IP_SRC, FIX, m_ip_src0},
	{"ip src broadcast", TWP_E_IP_SRC, FIX, m_ip_src_bcast},
	{"ip src 224/4", TWP_E_IP_SRC, FIX, m_ip_src_mcast},
	{"ip src 239/8", TWP_E_IP_SRC, FIX, m_ip_src_mcast_top},
	{"ip checksum", TWP_E_IP_CSUM, NOFIX, m_ip_csum},
	{"ip tos changed", TWP_E_IP_CSUM, NOFIX, m_ip_csum_tos},
	{"udp len > ip", TWP_E_UDP_LEN, FIX, m_udp_len},
	{"udp len < ip", TWP_E_UDP_LEN, FIX, m_udp_len_small},
	{"udp len 0", TWP_E_UDP_LEN, FIX, m_udp_len_0},
	{"udp port 80", TWP_E_UDP_PORT, FIX, m_udp_port_low},
	{"udp port base - 1", TWP_E_UDP_PORT, FIX, m_udp_port_below},
	{"udp port base + nports", TWP_E_UDP_PORT, FIX, m_udp_port_high},
	{"udp checksum", TWP_E_UDP_CSUM, NOFIX, m_udp_csum},
	{"payload bit flip", TWP_E_UDP_CSUM, NOFIX, m_payload_flip},
	{"header bit flip", TWP_E_UDP_CSUM, NOFIX, m_hdr_flip},
	{"src port bit flip", TWP_E_UDP_CSUM, NOFIX, m_src_port_flip},
	{"magic", TWP_E_MAGIC, FIX, m_magic},
	{"magic big-endian", TWP_E_MAGIC, FIX, m_magic_swapped},
	{"version 0", TWP_E_VERSION, FIX, m_version0},
	{"version 3", TWP_E_VERSION, FIX, m_version},
	{"type 0", TWP_E_TYPE, FIX, m_type0},
	{"type 7", TWP_E_TYPE, FIX, m_type7},
	{"type 255", TWP_E_TYPE, FIX, m_type255},
	{"data flags", TWP_E_FLAGS, FIX, m_flags},
	{"data flags high", TWP_E_FLAGS, FIX, m_flags_high},
	{"reserved", TWP_E_RESERVED, FIX, m_reserved},
	{"len > udp payload", TWP_E_LEN, FIX, m_len_field},
	{"len < udp payload", TWP_E_LEN, FIX, m_len_field_small},
	{"len 2^31 more", TWP_E_LEN, FIX, m_len_field_huge},
	{"off + len > frame_len", TWP_E_FRAME, FIX, m_frame_over},
	{"off + len = frame_len + 1", TWP_E_FRAME, FIX, m_frame_one_short},
	{"frame_len > 2^40", TWP_E_FRAME, FIX, m_frame_huge},
	{"frame_len 2^40 + 1", TWP_E_FRAME, FIX, m_frame_2p40_1},
	{"frame_len 2^64 - 1", TWP_E_FRAME, FIX, m_frame_max},
	{"frame_off > frame_len", TWP_E_FRAME, FIX, m_off_past},
	{"frame_off + len wraps", TWP_E_FRAME, FIX, m_off_wrap},
	{"dst_sess 0", TWP_E_FIELDS, FIX, m_dst0},
	{"src_sess 0", TWP_E_FIELDS, FIX, m_src0},
};

Test(dpdk_pkt, malformed_data_packets)
{
	uint8_t pl[100], base[2048], p[2048];
	for (size_t i = 0; i < sizeof(pl); i++)
		pl[i] = (uint8_t)i;
	struct twp_hdr h = data_hdr(sizeof(pl));
	size_t n0 = mkpkt(base, &h, pl);
	struct twp_local l = local_b();
	ASSERT_ERR(parse(base, n0, &l), TWP_OK);
	bool seen[TWP_ERR_COUNT_] = {false};
	for (size_t i = 0; i < sizeof(muts) / sizeof(muts[0]); i++) {
		size_t n = n0;
		memcpy(p, base, n0);
		muts[i].fn(p, &n);
		if (muts[i].fix)
			fix_csums(p, n);
		/* exactly n bytes on the heap: ASan sees any overread */
		uint8_t *heap = malloc(n ? n : 1);
		cr_assert_not_null(heap);
		memcpy(heap, p, n);
		struct twp_pkt pk;
		memset(&pk, 0x5a, sizeof(pk));
		struct twp_pkt before;
		memcpy(&before, &pk, sizeof(pk));
		enum twp_err e = twp_parse(heap, n, &l, false, false, &pk);
		free(heap);
		cr_assert_eq(e, muts[i].want, "%s: got %s, want %s",
			     muts[i].what, twp_err_name(e),
			     twp_err_name(muts[i].want));
		cr_assert_eq(memcmp(&pk, &before, sizeof(pk)), 0,
			     "%s: a refused packet leaves out alone",
			     muts[i].what);
		seen[e] = true;
	}
	ASSERT_ERR(twp_parse(NULL, 100, &l, false, false, NULL), TWP_E_SHORT);
	/* checksums the NIC verified are not checked again */
	memcpy(p, base, n0);
	m_ip_csum(p, NULL);
	ASSERT_ERR(twp_parse(p, n0, &l, true, false, NULL), TWP_OK);
	memcpy(p, base, n0);
	m_udp_csum(p, NULL);
	ASSERT_ERR(twp_parse(p, n0, &l, false, true, NULL), TWP_OK);
	/* every data-packet reason above; the rest are control packets' */
	for (enum twp_err e = TWP_E_SHORT; e < TWP_ERR_COUNT_; e++)
		cr_assert(seen[e], "no case refused with %s", twp_err_name(e));
}

/* Every length short of the headers is "short", whatever the bytes. */
Test(dpdk_pkt, every_short_length)
{
	uint8_t base[TWP_HEADERS];
	struct twp_hdr h = {.type = TWP_RESET, .dst_sess = 3};
	cr_assert_eq(mkpkt(base, &h, NULL), TWP_HEADERS);
	struct twp_local l = local_b();
	ASSERT_ERR(parse(base, TWP_HEADERS, &l), TWP_OK);
	for (size_t n = 0; n < TWP_HEADERS; n++) {
		uint8_t *heap = malloc(n ? n : 1);
		memcpy(heap, base, n);
		/* the IP total length still claims the whole packet */
		enum twp_err e = parse(heap, n, &l);
		free(heap);
		cr_assert_eq(e, TWP_E_SHORT, "len %zu: %s", n, twp_err_name(e));
	}
}

/* IPv4 fragments, and what the kernel makes of them: net_af_packet's
 * fanout reassembles (PACKET_FANOUT_FLAG_DEFRAG, which DPDK 22.11 cannot
 * turn off) and hands the PMD one datagram with no fragment bits left.
 * Its header keeps DF only when the largest fragment had it (Linux
 * ip_frag_reasm), which a stack that fragments never sets; and a
 * datagram longer than a packet at our MTU can only be a reassembly.
 * Both are refused as fragments, as the fragments themselves are. */
Test(dpdk_pkt, fragments_and_reassembled_datagrams)
{
	static uint8_t pl[3000], p[TWP_HEADERS + 3000], q[TWP_HEADERS + 3000];
	for (size_t i = 0; i < sizeof(pl); i++)
		pl[i] = (uint8_t)(i * 7 + 1);
	struct twp_local l = local_b();
	l.mss = 1500 - TWP_IP_LEN - 8 - TWP_HDR_LEN; /* MTU 1500 */
	uint8_t *ip = p + TWP_ETH_LEN;

	/* The largest packet at this MTU, DF set: ours. */
	struct twp_hdr h = data_hdr(l.mss);
	size_t n = mkpkt(p, &h, pl);
	cr_assert_eq(be16(ip + 2), l.mss + TWP_OVERHEAD_L3);
	ASSERT_ERR(parse(p, n, &l), TWP_OK);

	/* A sender's stack fragmented a 1000-byte datagram (no DF) and the
	 * kernel put it together again: offset 0, MF clear, DF clear. */
	h = data_hdr(1000);
	n = mkpkt(p, &h, pl);
	ASSERT_ERR(parse(p, n, &l), TWP_OK);
	memcpy(q, p, n);
	q[TWP_ETH_LEN + 6] = 0;
	fix_csums(q, n);
	ASSERT_ERR(parse(q, n, &l), TWP_E_IP_FRAG);
	/* Its fragments as they travel: the first (MF), the second
	 * (offset 520 bytes = 65 units, MF clear), with or without DF. */
	for (int df = 0; df < 2; df++) {
		memcpy(q, p, TWP_ETH_LEN + 20 + 520);
		uint8_t *qi = q + TWP_ETH_LEN;
		qi[2] = (uint8_t)((20 + 520) >> 8);
		qi[3] = (uint8_t)(20 + 520);
		qi[6] = (uint8_t)(0x20 | (df ? 0x40 : 0));
		qi[7] = 0;
		fix_csums(q, TWP_ETH_LEN + 20 + 520);
		ASSERT_ERR(parse(q, TWP_ETH_LEN + 20 + 520, &l), TWP_E_IP_FRAG);
		size_t rest = n - TWP_ETH_LEN - 20 - 520;
		memcpy(qi + 20, ip + 20 + 520, rest);
		qi[2] = (uint8_t)((20 + rest) >> 8);
		qi[3] = (uint8_t)(20 + rest);
		qi[6] = (uint8_t)(df ? 0x40 : 0);
		qi[7] = 65;
		fix_csums(q, TWP_ETH_LEN + 20 + rest);
		enum twp_err e = parse(q, TWP_ETH_LEN + 20 + rest, &l);
		/* refused before its bytes are read as a header */
		ASSERT_ERR(e, TWP_E_IP_FRAG);
	}

	/* Reassembled from fragments that all carried DF (crafted): DF
	 * kept, but longer than a packet at our MTU can be. */
	h = data_hdr(l.mss + 1);
	h.frame_len = h.frame_off + l.mss + 1;
	n = mkpkt(p, &h, pl);
	cr_assert_eq(be16(ip + 2), l.mss + TWP_OVERHEAD_L3 + 1);
	cr_assert_eq(be16(ip + 6), 0x4000);
	ASSERT_ERR(parse(p, n, &l), TWP_E_IP_FRAG);
	h = data_hdr(2900);
	n = mkpkt(p, &h, pl);
	ASSERT_ERR(parse(p, n, &l), TWP_E_IP_FRAG);
	/* ... even when the NIC says the checksums are good */
	ASSERT_ERR(twp_parse(p, n, &l, true, true, NULL), TWP_E_IP_FRAG);
	/* A reassembly no longer than our packets, from DF fragments, is
	 * indistinguishable from one (docs/limits.md). */
}

/* Length boundaries: len up to mss, the largest packet IPv4 can carry,
 * the smallest one (a control packet, 88 bytes). */
Test(dpdk_pkt, length_boundaries)
{
	enum { MAXLEN = 65535 - TWP_OVERHEAD_L3 }; /* 65461 */
	uint8_t *pl = calloc(1, MAXLEN), *p = malloc(TWP_ETH_LEN + 65535);
	cr_assert(pl != NULL && p != NULL);
	for (size_t i = 0; i < MAXLEN; i++)
		pl[i] = (uint8_t)(i * 13);
	struct twp_local l = local_b();
	struct twp_hdr h = {.type = TWP_DATA,
			    .dst_sess = 1,
			    .src_sess = 1,
			    .len = l.mss,
			    .frame_len = l.mss + 1};
	size_t n = mkpkt(p, &h, pl);
	ASSERT_ERR(parse(p, n, &l), TWP_OK);
	/* Longer than a packet can be at our MTU: what the kernel
	 * reassembled (af_packet's fanout defragments), refused as a
	 * fragment before its checksum is summed. */
	h.len = l.mss + 1;
	n = mkpkt(p, &h, pl);
	ASSERT_ERR(parse(p, n, &l), TWP_E_IP_FRAG);
	h.frame_len = l.mss + 1;
	l.mss = 0;
	h.len = 1;
	n = mkpkt(p, &h, pl);
	ASSERT_ERR(parse(p, n, &l), TWP_E_IP_FRAG);

	/* The largest: IP total length 65535. */
	l.mss = TWP_MAX_MSS;
	h.len = MAXLEN;
	h.frame_len = MAXLEN;
	n = mkpkt(p, &h, pl);
	cr_assert_eq(n, TWP_ETH_LEN + 65535);
	cr_assert_eq(be16(p + 16), 65535);
	cr_assert_eq(be16(p + 38), 65535 - 20);
	cr_assert_eq(be16(p + 40), ref_udp_csum(p + 14));
	struct twp_pkt pk;
	ASSERT_ERR(twp_parse(p, n, &l, false, false, &pk), TWP_OK);
	cr_assert_eq(pk.h.len, MAXLEN);
	cr_assert_eq(memcmp(pk.payload, pl, MAXLEN), 0);
	ASSERT_ERR(parse(p, n - 1, &l), TWP_E_IP_LEN);

	/* The smallest: headers only. */
	struct twp_hdr a = {.type = TWP_ACK, .dst_sess = 1, .src_sess = 2};
	n = mkpkt(p, &a, NULL);
	cr_assert_eq(n, TWP_HEADERS);
	ASSERT_ERR(parse(p, n, &l), TWP_OK);
	free(pl);
	free(p);
}

/* The frame bounds of DATA: at the edges accepted, one past refused. */
Test(dpdk_pkt, frame_bounds)
{
	uint8_t pl[16] = {0}, p[256];
	struct twp_local l = local_b();
	const uint64_t MAXF = UINT64_C(1) << 40;
	const struct {
		uint32_t len;
		uint64_t off, flen;
		enum twp_err want;
	} c[] = {
		{16, 0, 16, TWP_OK}, /* the whole frame */
		{16, 0, 17, TWP_OK},
		{16, 1, 17, TWP_OK}, /* the end of it */
		{16, 2, 17, TWP_E_FRAME},
		{16, 0, 15, TWP_E_FRAME},
		{16, MAXF - 16, MAXF, TWP_OK}, /* the largest frame */
		{16, MAXF - 15, MAXF, TWP_E_FRAME},
		{16, MAXF - 16, MAXF + 1, TWP_E_FRAME},
		{16, UINT64_MAX, UINT64_MAX, TWP_E_FRAME},
		{16, UINT64_MAX - 15, 15, TWP_E_FRAME}, /* off + len wraps */
		{0, 0, 0, TWP_OK},                      /* an empty frame */
		{0, 0, 1, TWP_E_FRAME}, /* an empty packet, a frame not */
		{0, 1, 1, TWP_E_FRAME},
		{0, 1, 0, TWP_E_FRAME},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct twp_hdr h = {.type = TWP_DATA,
				    .dst_sess = 1,
				    .src_sess = 2,
				    .len = c[i].len,
				    .frame_off = c[i].off,
				    .frame_len = c[i].flen};
		size_t n = mkpkt(p, &h, pl);
		enum twp_err e = parse(p, n, &l);
		cr_assert_eq(e, c[i].want, "case %zu: got %s, want %s", i,
			     twp_err_name(e), twp_err_name(c[i].want));
	}
}

/* Which destination ports are ours: base .. base + nports - 1, the queue
 * is the offset; none when nports is 0; no wrap at 65535. */
Test(dpdk_pkt, port_range)
{
	uint8_t p[256];
	struct twp_hdr h = {.type = TWP_RESET, .dst_sess = 3};
	size_t n = mkpkt(p, &h, NULL); /* to 31851 */
	const struct {
		uint16_t base, nports;
		enum twp_err want;
		uint16_t queue;
	} c[] = {
		{31850, 2, TWP_OK, 1},
		{31851, 1, TWP_OK, 0},
		{31851, 0, TWP_E_UDP_PORT, 0},
		{31850, 1, TWP_E_UDP_PORT, 0},
		{31852, 100, TWP_E_UDP_PORT, 0},
		{31800, 52, TWP_OK, 51},
		{31800, 51, TWP_E_UDP_PORT, 0},
		{0, 65535, TWP_OK, 31851},
		{65535, 65535, TWP_E_UDP_PORT, 0}, /* base + n wraps */
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct twp_local l = local_b();
		l.base_port = c[i].base;
		l.nports = c[i].nports;
		struct twp_pkt pk;
		enum twp_err e = twp_parse(p, n, &l, false, false, &pk);
		cr_assert_eq(e, c[i].want, "case %zu: got %s", i,
			     twp_err_name(e));
		if (e == TWP_OK) {
			cr_assert_eq(pk.queue, c[i].queue, "case %zu", i);
			cr_assert_eq(pk.dst_port, 31851);
		}
	}
}

/* Per type: which flags and fields it may set. Each case changes one
 * field of a valid packet of its type. */
enum hfield {
	H_NONE,
	H_FLAGS,
	H_DST,
	H_SRC,
	H_SEQ,
	H_ACK,
	H_MSG,
	H_LEN,
	H_OFF,
	H_FLEN,
	H_PN
};

struct hcase {
	const char *what;
	uint8_t type;
	enum hfield field;
	uint64_t value;
	enum twp_err want;
};

static const struct hcase hcases[] = {
	{"ack", TWP_ACK, H_NONE, 0, TWP_OK},
	{"ack both flags", TWP_ACK, H_FLAGS, 3, TWP_OK},
	{"ack flag 4", TWP_ACK, H_FLAGS, 4, TWP_E_FLAGS},
	{"ack flag 0x80", TWP_ACK, H_FLAGS, 0x80, TWP_E_FLAGS},
	{"ack len", TWP_ACK, H_LEN, 4, TWP_E_LEN},
	{"ack dst 0", TWP_ACK, H_DST, 0, TWP_E_FIELDS},
	{"ack src 0", TWP_ACK, H_SRC, 0, TWP_E_FIELDS},
	{"ack seq", TWP_ACK, H_SEQ, 1, TWP_E_FIELDS},
	{"ack any ack", TWP_ACK, H_ACK, UINT32_MAX, TWP_OK},
	{"ack msg", TWP_ACK, H_MSG, 1, TWP_E_FIELDS},
	{"ack frame_off", TWP_ACK, H_OFF, 1, TWP_E_FIELDS},
	{"ack frame_len", TWP_ACK, H_FLEN, 1, TWP_E_FIELDS},

	{"connect", TWP_CONNECT, H_NONE, 0, TWP_OK},
	{"connect tag flag", TWP_CONNECT, H_FLAGS, TWP_F_TAG, TWP_OK},
	{"connect flags", TWP_CONNECT, H_FLAGS, 1, TWP_E_FLAGS},
	{"connect pn", TWP_CONNECT, H_PN, 1, TWP_E_FIELDS},
	{"connect len 0", TWP_CONNECT, H_LEN, 0, TWP_E_LEN},
	{"connect len", TWP_CONNECT, H_LEN, 4, TWP_E_LEN},
	{"connect dst", TWP_CONNECT, H_DST, 1, TWP_E_FIELDS},
	{"connect src 0", TWP_CONNECT, H_SRC, 0, TWP_E_FIELDS},
	{"connect seq", TWP_CONNECT, H_SEQ, 1, TWP_E_FIELDS},
	{"connect ack", TWP_CONNECT, H_ACK, 1, TWP_E_FIELDS},
	{"connect msg", TWP_CONNECT, H_MSG, 1, TWP_E_FIELDS},
	{"connect frame_off", TWP_CONNECT, H_OFF, 1, TWP_E_FIELDS},
	{"connect mss 0", TWP_CONNECT, H_FLEN, 0, TWP_E_FIELDS},
	{"connect mss 63", TWP_CONNECT, H_FLEN, 63, TWP_E_FIELDS},
	{"connect mss 64", TWP_CONNECT, H_FLEN, 64, TWP_OK},
	{"connect mss 65535", TWP_CONNECT, H_FLEN, 65535, TWP_OK},
	{"connect mss 65536", TWP_CONNECT, H_FLEN, 65536, TWP_E_FIELDS},
	{"connect setup block", TWP_CONNECT, H_LEN, TWP_SETUP_LEN, TWP_OK},
	{"connect len 51", TWP_CONNECT, H_LEN, TWP_SETUP_LEN - 1, TWP_E_LEN},
	{"connect len 53", TWP_CONNECT, H_LEN, TWP_SETUP_LEN + 1, TWP_E_LEN},
	{"connect with a cookie", TWP_CONNECT, H_LEN,
	 TWP_SETUP_LEN + TWP_COOKIE_LEN, TWP_OK},
	{"connect len 67", TWP_CONNECT, H_LEN,
	 TWP_SETUP_LEN + TWP_COOKIE_LEN - 1, TWP_E_LEN},
	{"connect len 69", TWP_CONNECT, H_LEN,
	 TWP_SETUP_LEN + TWP_COOKIE_LEN + 1, TWP_E_LEN},

	{"accept", TWP_ACCEPT, H_NONE, 0, TWP_OK},
	{"accept tag flag", TWP_ACCEPT, H_FLAGS, TWP_F_TAG, TWP_OK},
	{"accept flags", TWP_ACCEPT, H_FLAGS, 2, TWP_E_FLAGS},
	{"accept pn", TWP_ACCEPT, H_PN, 1, TWP_E_FIELDS},
	{"accept len", TWP_ACCEPT, H_LEN, 1, TWP_E_LEN},
	{"accept dst 0", TWP_ACCEPT, H_DST, 0, TWP_E_FIELDS},
	{"accept src 0", TWP_ACCEPT, H_SRC, 0, TWP_E_FIELDS},
	{"accept seq", TWP_ACCEPT, H_SEQ, 1, TWP_E_FIELDS},
	{"accept ack", TWP_ACCEPT, H_ACK, 1, TWP_E_FIELDS},
	{"accept msg", TWP_ACCEPT, H_MSG, 1, TWP_E_FIELDS},
	{"accept frame_off", TWP_ACCEPT, H_OFF, 1, TWP_E_FIELDS},
	{"accept mss 63", TWP_ACCEPT, H_FLEN, 63, TWP_E_FIELDS},
	{"accept mss 65536", TWP_ACCEPT, H_FLEN, 65536, TWP_E_FIELDS},
	{"accept setup block", TWP_ACCEPT, H_LEN, TWP_SETUP_LEN, TWP_OK},
	{"accept len 51", TWP_ACCEPT, H_LEN, TWP_SETUP_LEN - 1, TWP_E_LEN},
	{"accept with a cookie's len", TWP_ACCEPT, H_LEN,
	 TWP_SETUP_LEN + TWP_COOKIE_LEN, TWP_E_LEN},

	{"cookie", TWP_COOKIE, H_NONE, 0, TWP_OK},
	{"cookie tag flag", TWP_COOKIE, H_FLAGS, TWP_F_TAG, TWP_E_FLAGS},
	{"cookie len", TWP_COOKIE, H_LEN, TWP_SETUP_LEN + TWP_COOKIE_LEN,
	 TWP_E_LEN},
	{"cookie dst 0", TWP_COOKIE, H_DST, 0, TWP_E_FIELDS},
	{"cookie src", TWP_COOKIE, H_SRC, 9, TWP_E_FIELDS},
	{"cookie pn", TWP_COOKIE, H_PN, 1, TWP_E_FIELDS},
	{"cookie seq", TWP_COOKIE, H_SEQ, 1, TWP_E_FIELDS},
	{"cookie ack", TWP_COOKIE, H_ACK, 1, TWP_E_FIELDS},
	{"cookie msg", TWP_COOKIE, H_MSG, 1, TWP_E_FIELDS},
	{"cookie frame_off", TWP_COOKIE, H_OFF, 1, TWP_E_FIELDS},
	{"cookie mss 63", TWP_COOKIE, H_FLEN, 63, TWP_E_FIELDS},
	{"type 7", 7, H_NONE, 0, TWP_E_TYPE},

	{"reset", TWP_RESET, H_NONE, 0, TWP_OK},
	{"reset src 0", TWP_RESET, H_SRC, 0, TWP_OK},
	{"reset flags", TWP_RESET, H_FLAGS, 1, TWP_E_FLAGS},
	{"reset len", TWP_RESET, H_LEN, 2, TWP_E_LEN},
	{"reset dst 0", TWP_RESET, H_DST, 0, TWP_E_FIELDS},
	{"reset seq", TWP_RESET, H_SEQ, 1, TWP_E_FIELDS},
	{"reset ack", TWP_RESET, H_ACK, 1, TWP_E_FIELDS},
	{"reset msg", TWP_RESET, H_MSG, 1, TWP_E_FIELDS},
	{"reset frame_off", TWP_RESET, H_OFF, 1, TWP_E_FIELDS},
	{"reset frame_len", TWP_RESET, H_FLEN, 1, TWP_E_FIELDS},

	{"data", TWP_DATA, H_NONE, 0, TWP_OK},
	{"data flag ack-req", TWP_DATA, H_FLAGS, TWP_F_ACK_REQ, TWP_E_FLAGS},
	{"data dst 0", TWP_DATA, H_DST, 0, TWP_E_FIELDS},
	{"data src 0", TWP_DATA, H_SRC, 0, TWP_E_FIELDS},
	{"data any seq", TWP_DATA, H_SEQ, UINT32_MAX, TWP_OK},
	{"data any msg", TWP_DATA, H_MSG, UINT32_MAX, TWP_OK},
	{"data any pn", TWP_DATA, H_PN, UINT64_MAX, TWP_OK},
	{"data tag flag", TWP_DATA, H_FLAGS, TWP_F_TAG, TWP_E_FLAGS},
	{"ack tag flag", TWP_ACK, H_FLAGS, TWP_F_TAG, TWP_E_FLAGS},
	{"data 64-bit sessions", TWP_DATA, H_DST, UINT64_MAX, TWP_OK},
	{"ack 64-bit sessions", TWP_ACK, H_SRC, UINT64_C(1) << 48, TWP_OK},
};

/* A valid header of type t, then c's change. */
static struct twp_hdr hcase_hdr(const struct hcase *c)
{
	struct twp_hdr h = {.type = c->type, .dst_sess = 3, .src_sess = 9};
	switch (c->type) {
	case TWP_ACK:
		h.ack = 99;
		break;
	case TWP_CONNECT:
		h.dst_sess = 0;
		h.len = TWP_SETUP_LEN;
		h.frame_len = 1426;
		break;
	case TWP_ACCEPT:
		h.len = TWP_SETUP_LEN;
		h.frame_len = 1426;
		break;
	case TWP_COOKIE:
		h.src_sess = 0;
		h.len = TWP_SETUP_LEN;
		h.frame_len = 1426;
		break;
	case TWP_DATA:
		h.seq = 7;
		h.ack = 8;
		h.msg = 2;
		h.len = 4;
		h.frame_len = 4;
		break;
	default:
		break;
	}
	switch (c->field) {
	case H_FLAGS:
		h.flags = (uint8_t)c->value;
		break;
	case H_DST:
		h.dst_sess = c->value;
		break;
	case H_SRC:
		h.src_sess = c->value;
		break;
	case H_SEQ:
		h.seq = (uint32_t)c->value;
		break;
	case H_ACK:
		h.ack = (uint32_t)c->value;
		break;
	case H_MSG:
		h.msg = (uint32_t)c->value;
		break;
	case H_LEN:
		h.len = (uint32_t)c->value;
		break;
	case H_OFF:
		h.frame_off = c->value;
		break;
	case H_FLEN:
		h.frame_len = c->value;
		break;
	case H_PN:
		h.pn = c->value;
		break;
	case H_NONE:
		break;
	}
	return h;
}

Test(dpdk_pkt, per_type_fields)
{
	uint8_t p[256], pl[TWP_SETUP_LEN + TWP_COOKIE_LEN + 1] = {1, 2, 3, 4};
	struct twp_local l = local_b();
	for (size_t i = 0; i < sizeof(hcases) / sizeof(hcases[0]); i++) {
		struct twp_hdr h = hcase_hdr(&hcases[i]);
		size_t n = mkpkt(p, &h, pl);
		struct twp_pkt pk;
		enum twp_err e = twp_parse(p, n, &l, false, false, &pk);
		cr_assert_eq(e, hcases[i].want, "%s: got %s, want %s",
			     hcases[i].what, twp_err_name(e),
			     twp_err_name(hcases[i].want));
		if (e == TWP_OK)
			expect_fields(&pk, &h);
	}
}

/* The reasons that follow the checksum checks do not depend on whether
 * the NIC verified the checksums; the checksum reasons vanish when it
 * did. */
Test(dpdk_pkt, reasons_independent_of_offload)
{
	uint8_t pl[100], base[512], p[512];
	memset(pl, 7, sizeof(pl));
	struct twp_hdr h = data_hdr(sizeof(pl));
	size_t n0 = mkpkt(base, &h, pl);
	struct twp_local l = local_b();
	for (size_t i = 0; i < sizeof(muts) / sizeof(muts[0]); i++) {
		size_t n = n0;
		memcpy(p, base, n0);
		muts[i].fn(p, &n);
		if (muts[i].fix)
			fix_csums(p, n);
		enum twp_err e = twp_parse(p, n, &l, true, true, NULL);
		if (muts[i].want == TWP_E_IP_CSUM ||
		    muts[i].want == TWP_E_UDP_CSUM)
			cr_assert_eq(e, TWP_OK, "%s: got %s", muts[i].what,
				     twp_err_name(e));
		else
			cr_assert_eq(e, muts[i].want, "%s: got %s",
				     muts[i].what, twp_err_name(e));
	}
}

/* Random corruption of a valid packet: never a crash or an out-of-bounds
 * read (ASan), and almost never accepted. */
Test(dpdk_pkt, random_corruption)
{
	uint8_t pl[64], base[512], p[512];
	for (size_t i = 0; i < sizeof(pl); i++)
		pl[i] = (uint8_t)(i * 3);
	struct twp_hdr h = data_hdr(sizeof(pl));
	h.frame_off = 0;
	h.frame_len = sizeof(pl);
	size_t n0 = mkpkt(base, &h, pl);
	struct twp_local l = local_b();
	uint64_t x = 0x9e3779b97f4a7c15ull;
	int accepted = 0;
	for (int round = 0; round < 20000; round++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t n = n0;
		memcpy(p, base, n0);
		int flips = 1 + (int)(x % 4);
		for (int k = 0; k < flips; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			p[x % n0] ^= (uint8_t)(1u << (x >> 32) % 8);
		}
		if (x & 1)
			n = (size_t)((x >> 8) % (n0 + 1));
		uint8_t *heap = malloc(n ? n : 1);
		memcpy(heap, p, n);
		struct twp_pkt pk;
		if (twp_parse(heap, n, &l, false, false, &pk) == TWP_OK) {
			accepted++;
			cr_assert_leq(pk.payload + pk.h.len, heap + n);
		}
		free(heap);
	}
	/* a flip in the UDP checksum field alone, or the IP total length
	 * shrinking onto Ethernet padding, can leave a valid packet */
	cr_assert_lt(accepted, 200, "accepted %d", accepted);
}

Test(dpdk_pkt, reason_names)
{
	for (enum twp_err e = TWP_OK; e < TWP_ERR_COUNT_; e++) {
		cr_assert_str_neq(twp_err_name(e), "?");
		for (enum twp_err f = TWP_OK; f < e; f++)
			cr_assert_str_neq(twp_err_name(e), twp_err_name(f));
	}
	cr_assert_str_eq(twp_err_name(TWP_ERR_COUNT_), "?");
	cr_assert_str_eq(twp_err_name((enum twp_err) - 1), "?");
}

/* ================================================================== */
/* Addresses                                                           */

Test(dpdk_pkt, addresses)
{
	struct twp_ep ep;
	bool has = false;
	cr_assert_eq(twp_addr_parse("udp://10.1.2.3:31850/02:0a:0B:cc:dd:ef",
				    &ep, true, &has),
		     0);
	cr_assert(has);
	cr_assert_eq(ep.ip, inet_addr("10.1.2.3"));
	cr_assert_eq(ep.port, htons(31850));
	const uint8_t mac[6] = {2, 0x0a, 0x0b, 0xcc, 0xdd, 0xef};
	cr_assert_eq(memcmp(ep.mac, mac, 6), 0);
	char s[64];
	cr_assert_eq(twp_addr_format(s, sizeof(s), &ep), 38);
	cr_assert_str_eq(s, "udp://10.1.2.3:31850/02:0a:0b:cc:dd:ef");
	/* format, parse: the same endpoint */
	struct twp_ep back;
	cr_assert_eq(twp_addr_parse(s, &back, true, NULL), 0);
	cr_assert_eq(memcmp(&back, &ep, sizeof(ep)), 0);
	cr_assert_eq(twp_addr_parse("udp://10.1.2.3:0", &ep, false, &has), 0);
	cr_assert(!has);
	cr_assert_eq(ep.port, 0);
	cr_assert_eq(twp_addr_parse("udp://255.255.255.255:65535", &ep, false,
				    NULL),
		     0);
	cr_assert_eq(ep.port, 0xffff);
	/* the longest address there is, and a buffer one byte short */
	memset(&ep, 0xff, sizeof(ep));
	cr_assert_eq(twp_addr_format(s, sizeof(s), &ep), 45);
	cr_assert_str_eq(s, "udp://255.255.255.255:65535/ff:ff:ff:ff:ff:ff");
	cr_assert_eq(twp_addr_format(s, 45, &ep), 45);
	cr_assert_eq(strlen(s), 44, "cut, terminated");
	static const char *bad[] = {
		"udp://10.1.2.3:5", /* MAC needed */
		"tcp://10.1.2.3:5/02:00:00:00:00:01",
		"udp:/10.1.2.3:5/02:00:00:00:00:01",
		"udp://10.1.2:5/02:00:00:00:00:01",
		"udp://10.1.2.3/02:00:00:00:00:01",
		"udp://:5/02:00:00:00:00:01",
		"udp://10.1.2.3:/02:00:00:00:00:01",
		"udp://10.1.2.3:65536/02:00:00:00:00:01",
		"udp://10.1.2.3:000005/02:00:00:00:00:01",
		"udp://10.1.2.3:-5/02:00:00:00:00:01",
		"udp://10.1.2.3:5/02:00:00:00:00",
		"udp://10.1.2.3:5/02:00:00:00:00:",
		"udp://10.1.2.3:5/02:00:00:00:00:0",
		"udp://10.1.2.3:5/02:00:00:00:00:01:02",
		"udp://10.1.2.3:5/02:00:00:00:00:01/",
		"udp://10.1.2.3:5/02-00-00-00-00-01",
		"udp://10.1.2.3:5/0g:00:00:00:00:01",
		"udp://10.1.2.3:5/",
		"udp://host:5/02:00:00:00:00:01",
		"udp://1000.1.2.3:5/02:00:00:00:00:01",
		"udp://010.001.002.003.004:5/02:00:00:00:00:01",
		"udp://10.1.2.3:5x",
		"udp://",
		"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_neq(twp_addr_parse(bad[i], &ep, true, NULL), 0, "%s",
			      bad[i]);
	cr_assert_neq(twp_addr_parse(NULL, &ep, false, NULL), 0);
	cr_assert_neq(twp_addr_parse("udp://10.1.2.3:5", NULL, false, NULL), 0);
}

/* The setup block of CONNECT and ACCEPT: its bytes where dpdk_pkt.h puts
 * them, through a parsed packet. */
Test(dpdk_pkt, setup_block_layout)
{
	struct twp_setup s, back;
	for (unsigned i = 0; i < TWP_NONCE_LEN; i++)
		s.nonce[i] = (uint8_t)(0x10 + i);
	s.isn = 0xa1b2c3d4u;
	for (unsigned i = 0; i < TWP_SETUP_MAC_LEN; i++)
		s.mac[i] = (uint8_t)(0x80 + i);
	uint8_t b[TWP_SETUP_LEN];
	twp_setup_encode(b, &s);
	cr_assert_eq(TWP_SETUP_LEN, 52);
	cr_assert_eq(memcmp(b, s.nonce, 16), 0);
	cr_assert_eq(b[16], 0xd4);
	cr_assert_eq(b[19], 0xa1);
	cr_assert_eq(memcmp(b + 20, s.mac, 32), 0);
	twp_setup_decode(b, &back);
	cr_assert_eq(memcmp(back.nonce, s.nonce, 16), 0);
	cr_assert_eq(back.isn, s.isn);
	cr_assert_eq(memcmp(back.mac, s.mac, 32), 0);

	/* in a CONNECT, as the receiver parses it; the smallest mss holds it */
	struct twp_hdr h = {.type = TWP_CONNECT,
			    .src_sess = 9,
			    .len = TWP_SETUP_LEN,
			    .frame_len = 1426};
	uint8_t p[256];
	size_t n = mkpkt(p, &h, b);
	struct twp_local l = local_b();
	l.mss = TWP_MIN_MSS;
	struct twp_pkt pk;
	ASSERT_ERR(twp_parse(p, n, &l, false, false, &pk), TWP_OK);
	cr_assert_eq(pk.h.len, TWP_SETUP_LEN);
	twp_setup_decode(pk.payload, &back);
	cr_assert_eq(back.isn, s.isn);
}

/* The mac covers every field dpdk_pkt.h lists: a change to any one of
 * them, or another key, and it no longer verifies. */
Test(dpdk_pkt, setup_mac_covers_every_field)
{
	static const char key[] = "the group's secret";
	static const char other[] = "the group's secreT";
	/* Not the NUL: HMAC pads a key with zeros, so "k" and "k\0" are
	 * the same key (crypto_auth_hmacsha256 as RFC 2104). */
	const size_t KEYLEN = sizeof(key) - 1;
	struct twp_ep a, b;
	eps(&a, &b);
	struct twp_hdr h = {.type = TWP_ACCEPT,
			    .dst_sess = 0x1234abcd,
			    .src_sess = 0x5678ef01,
			    .len = TWP_SETUP_LEN,
			    .frame_len = 1426};
	struct twp_setup s = {.isn = 77};
	uint8_t pn[TWP_NONCE_LEN];
	for (unsigned i = 0; i < TWP_NONCE_LEN; i++) {
		s.nonce[i] = (uint8_t)i;
		pn[i] = (uint8_t)(0xf0 ^ i);
	}
	twp_setup_mac(key, KEYLEN, &h, &a, &b, &s, pn, s.mac);
	cr_assert(twp_setup_verify(key, KEYLEN, &h, &a, &b, &s, pn));
	/* deterministic: the same inputs, the same mac */
	uint8_t m2[TWP_SETUP_MAC_LEN];
	twp_setup_mac(key, KEYLEN, &h, &a, &b, &s, pn, m2);
	cr_assert_eq(memcmp(m2, s.mac, sizeof(m2)), 0);

	cr_assert(!twp_setup_verify(other, KEYLEN, &h, &a, &b, &s, pn));
	cr_assert(!twp_setup_verify(key, KEYLEN - 1, &h, &a, &b, &s, pn));
	/* the CONNECT's nonce (an ACCEPT answers one CONNECT) */
	cr_assert(!twp_setup_verify(key, KEYLEN, &h, &a, &b, &s, NULL));
	uint8_t pn2[TWP_NONCE_LEN];
	memcpy(pn2, pn, sizeof(pn2));
	pn2[15] ^= 1;
	cr_assert(!twp_setup_verify(key, KEYLEN, &h, &a, &b, &s, pn2));
	/* the endpoints, both ways round */
	cr_assert(!twp_setup_verify(key, KEYLEN, &h, &b, &a, &s, pn));
	for (int f = 0; f < 3; f++) {
		struct twp_ep x = a, y = b;
		if (f == 0)
			x.mac[5] ^= 1, y.mac[5] ^= 1;
		else if (f == 1)
			x.ip ^= htonl(1), y.ip ^= htonl(1);
		else
			x.port ^= htons(1), y.port ^= htons(1);
		cr_assert(!twp_setup_verify(key, KEYLEN, &h, &x, &b, &s, pn),
			  "src field %d", f);
		cr_assert(!twp_setup_verify(key, KEYLEN, &h, &a, &y, &s, pn),
			  "dst field %d", f);
	}
	/* the header's fields it names */
	for (int f = 0; f < 7; f++) {
		struct twp_hdr g = h;
		if (f == 0)
			g.type = TWP_CONNECT;
		else if (f == 1)
			g.src_sess ^= 1;
		else if (f == 2)
			g.dst_sess ^= 1;
		else if (f == 3)
			g.src_sess ^= UINT64_C(1) << 63;
		else if (f == 4)
			g.dst_sess ^= UINT64_C(1) << 40;
		else if (f == 5)
			g.flags ^= TWP_F_TAG; /* no downgrade of tags */
		else
			g.frame_len = 1425;
		cr_assert(!twp_setup_verify(key, KEYLEN, &g, &a, &b, &s, pn),
			  "header field %d", f);
	}
	/* the block's: isn, nonce, the mac itself */
	struct twp_setup t = s;
	t.isn++;
	cr_assert(!twp_setup_verify(key, KEYLEN, &h, &a, &b, &t, pn));
	t = s;
	t.nonce[0] ^= 0x80;
	cr_assert(!twp_setup_verify(key, KEYLEN, &h, &a, &b, &t, pn));
	t = s;
	t.mac[31] ^= 1;
	cr_assert(!twp_setup_verify(key, KEYLEN, &h, &a, &b, &t, pn));
	/* fields the mac leaves out (they are zero by the parser's rules)
	 * do not matter: seq, ack, msg */
	struct twp_hdr g = h;
	g.seq = g.ack = g.msg = 5;
	cr_assert(twp_setup_verify(key, KEYLEN, &g, &a, &b, &s, pn));
}

/* The per-packet tag (dpdk_pkt.h): per session and direction keys, and a
 * tag over every byte after it, header and frame. */
Test(dpdk_pkt, tag_keys_and_coverage)
{
	static const char key[] = "the group's secret";
	uint8_t nc[TWP_NONCE_LEN], na[TWP_NONCE_LEN];
	for (unsigned i = 0; i < TWP_NONCE_LEN; i++) {
		nc[i] = (uint8_t)i;
		na[i] = (uint8_t)(0x40 + i);
	}
	uint8_t kc[TWP_KEY_LEN], ka[TWP_KEY_LEN], x[TWP_KEY_LEN],
		y[TWP_KEY_LEN];
	const uint64_t sc = UINT64_C(0x123456789abc0001),
		       sa = UINT64_C(0x0fedcba987650002);
	twp_session_keys(key, sizeof(key) - 1, sc, sa, nc, na, kc, ka);
	cr_assert(memcmp(kc, ka, TWP_KEY_LEN) != 0, "one key per direction");
	twp_session_keys(key, sizeof(key) - 1, sc, sa, nc, na, x, y);
	cr_assert(memcmp(kc, x, TWP_KEY_LEN) == 0 &&
		  memcmp(ka, y, TWP_KEY_LEN) == 0);
	/* anything else, and the keys are others */
	for (int f = 0; f < 5; f++) {
		uint8_t n2[TWP_NONCE_LEN];
		memcpy(n2, f == 3 ? na : nc, TWP_NONCE_LEN);
		n2[7] ^= 1;
		if (f == 0)
			twp_session_keys("another secret", 14, sc, sa, nc, na,
					 x, y);
		else if (f == 1)
			twp_session_keys(key, sizeof(key) - 1, sc ^ 1, sa, nc,
					 na, x, y);
		else if (f == 2)
			twp_session_keys(key, sizeof(key) - 1, sc, sa ^ 1, nc,
					 na, x, y);
		else if (f == 3)
			twp_session_keys(key, sizeof(key) - 1, sc, sa, nc, n2,
					 x, y);
		else
			twp_session_keys(key, sizeof(key) - 1, sc, sa, n2, na,
					 x, y);
		cr_assert(memcmp(kc, x, TWP_KEY_LEN) != 0 &&
				  memcmp(ka, y, TWP_KEY_LEN) != 0,
			  "input %d", f);
	}

	uint8_t pl[200], p[512];
	for (size_t i = 0; i < sizeof(pl); i++)
		pl[i] = (uint8_t)(i * 3);
	struct twp_hdr h = data_hdr(sizeof(pl));
	size_t n = mkpkt(p, &h, pl);
	uint8_t *th = p + TWP_L2L4_LEN;
	size_t tn = n - TWP_L2L4_LEN;
	struct twp_mac mc, ma;
	twp_mac_init(&mc, kc);
	twp_mac_init(&ma, ka);
	cr_assert(!twp_tag_ok(&mc, th, tn), "an untagged packet");
	twp_tag_set(&mc, th, tn);
	cr_assert(twp_tag_ok(&mc, th, tn));
	cr_assert(!twp_tag_ok(&ma, th, tn), "the other direction's key");
	/* up to 256 tagged bytes (these are 258), the tag is SipHash-2-4
	 * under the key's first 16 bytes */
	uint8_t ref[8];
	crypto_shorthash(ref, th + TWP_TAGGED_OFF, 256, kc);
	cr_assert_neq(memcmp(ref, th + TWP_TAG_OFF, 8), 0);
	uint64_t t256 = twp_tag(&mc, th, TWP_TAGGED_OFF + 256);
	cr_assert_eq(memcmp(ref, &t256, 8), 0);
	/* longer, Nettle's UMAC-64 under its last 16, the packet number
	 * (8 bytes as on the wire, at 30) the nonce */
	struct umac64_ctx u;
	umac64_set_key(&u, kc + 16);
	umac64_set_nonce(&u, 8, th + 30);
	umac64_update(&u, tn - TWP_TAGGED_OFF, th + TWP_TAGGED_OFF);
	umac64_digest(&u, sizeof(ref), ref);
	cr_assert_eq(memcmp(ref, th + TWP_TAG_OFF, 8), 0);
	/* the same bytes under another packet number: another tag */
	uint64_t tag1 = twp_tag(&mc, th, tn);
	th[30] ^= 1;
	cr_assert_neq(twp_tag(&mc, th, tn), tag1);
	th[30] ^= 1;
	cr_assert_eq(twp_tag(&mc, th, tn), tag1, "the state carries over");
	/* every covered byte counts; so does the tag's own */
	for (size_t i = 0; i < tn; i++) {
		if (i < TWP_TAG_OFF)
			continue; /* magic, version, reserved: the parser's */
		th[i] ^= 0x20;
		cr_assert(!twp_tag_ok(&mc, th, tn), "byte %zu", i);
		th[i] ^= 0x20;
	}
	/* and a shorter packet (the same bytes cut) does not verify */
	cr_assert(!twp_tag_ok(&mc, th, tn - 1));
	/* still a valid packet for the parser, which leaves the tag alone */
	struct twp_local l = local_b();
	twp_udp_csum_set(p, twp_csum_add(0, th, tn, false));
	struct twp_pkt pk;
	ASSERT_ERR(twp_parse(p, n, &l, false, false, &pk), TWP_OK);
	cr_assert_eq(pk.h.tag,
		     (uint64_t)ref[0] | (uint64_t)ref[1] << 8 |
			     (uint64_t)ref[2] << 16 | (uint64_t)ref[3] << 24 |
			     (uint64_t)ref[4] << 32 | (uint64_t)ref[5] << 40 |
			     (uint64_t)ref[6] << 48 | (uint64_t)ref[7] << 56);
}
