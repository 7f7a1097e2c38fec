/* libFuzzer target for the DPDK transport's packets (dataplane/dpdk_pkt.c):
 * any bytes are refused with a named reason that does not depend on what
 * the NIC verified (checksum reasons aside), or accepted as a packet
 * whose fields are within bounds and which the builder writes again byte
 * for byte (the fields the format leaves free excepted). Addresses too:
 * what parses formats and parses back to the same endpoint.
 *
 * Input: one control byte, then the Ethernet frame (or address text).
 *   bit 7     address mode (bit 0 then: the MAC is required)
 *   bit 0, 1  the NIC verified the IPv4 / UDP checksum
 *   bit 2, 3  the receiver's mss: 1426, 64, 65535, 0
 *   bit 4-6   its number of UDP ports (queues) from 31850: 0..7 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "dataplane/dpdk_pkt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A check failed: say which, then crash so the fuzzer keeps the input. */
#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c)) {                                                    \
			fprintf(stderr, "fuzz_dpdk_pkt:%d: %s\n", __LINE__,    \
				#c);                                           \
			abort();                                               \
		}                                                              \
	} while (0)

#define FRAME_MAX (UINT64_C(1) << 40)

static const uint8_t LOCAL_MAC[6] = {0x02, 0, 0, 0, 0x01, 0x02};

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* RFC 1071 over big-endian words, a byte at a time: the reference for
 * the library's host-order sums. */
static uint16_t ref_sum(uint32_t acc, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2) {
		acc += (uint32_t)p[i] << 8 | p[i + 1];
		acc = (acc & 0xffff) + (acc >> 16);
	}
	if (n & 1)
		acc += (uint32_t)p[n - 1] << 8;
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return (uint16_t)acc;
}

/* The library's sum of any bytes, cut anywhere, is the reference's. */
static void check_csum(const uint8_t *p, size_t n)
{
	size_t cut = n ? p[0] % (n + 1) : 0;
	uint32_t s = twp_csum_add(0, p, cut, false);
	s = twp_csum_add(s, p + cut, n - cut, (cut & 1) != 0);
	uint16_t got = twp_csum_fold(s);
	uint16_t whole = twp_csum_fold(twp_csum_add(0, p, n, false));
	CHECK(got == whole);
	uint8_t b[2];
	memcpy(b, &got, 2);
	uint16_t ref = ref_sum(0, p, n);
	/* 0 and 0xffff are the same number in ones' complement; the fold
	 * gives 0 only for an all-zero sum */
	CHECK(be16(b) == ref || (be16(b) == 0 && ref == 0xffff) ||
	      (be16(b) == 0xffff && ref == 0));
}

/* What each type may say (dpdk_pkt.h), restated independently. */
static void check_hdr(const struct twp_hdr *h)
{
	CHECK(h->type >= TWP_DATA && h->type <= TWP_COOKIE);
	switch (h->type) {
	case TWP_DATA:
		CHECK(h->flags == 0);
		CHECK(h->dst_sess != 0 && h->src_sess != 0);
		CHECK(h->frame_len <= FRAME_MAX);
		CHECK(h->frame_off <= h->frame_len);
		CHECK(h->frame_off + h->len <= h->frame_len);
		CHECK(h->len != 0 || (h->frame_len == 0 && h->frame_off == 0));
		break;
	case TWP_ACK:
		CHECK((h->flags & ~(TWP_F_ACK_REQ | TWP_F_NAK)) == 0);
		CHECK(h->len == 0);
		CHECK(h->dst_sess != 0 && h->src_sess != 0);
		CHECK(h->seq == 0 && h->msg == 0);
		CHECK(h->frame_off == 0 && h->frame_len == 0);
		break;
	case TWP_CONNECT:
	case TWP_ACCEPT:
		/* the setup block; the tag flag; no tag, no packet number */
		CHECK((h->flags & ~TWP_F_TAG) == 0);
		/* a CONNECT may carry the acceptor's cookie after it */
		CHECK(h->len == TWP_SETUP_LEN ||
		      (h->type == TWP_CONNECT &&
		       h->len == TWP_SETUP_LEN + TWP_COOKIE_LEN));
		CHECK(h->pn == 0 && h->tag == 0);
		CHECK((h->dst_sess == 0) == (h->type == TWP_CONNECT));
		CHECK(h->src_sess != 0);
		CHECK(h->seq == 0 && h->ack == 0 && h->msg == 0);
		CHECK(h->frame_off == 0);
		CHECK(h->frame_len >= TWP_MIN_MSS &&
		      h->frame_len <= TWP_MAX_MSS);
		break;
	case TWP_COOKIE:
		/* the acceptor keeps no session: src_sess 0 */
		CHECK(h->flags == 0 && h->len == TWP_SETUP_LEN);
		CHECK(h->dst_sess != 0 && h->src_sess == 0);
		CHECK(h->pn == 0 && h->tag == 0);
		CHECK(h->seq == 0 && h->ack == 0 && h->msg == 0);
		CHECK(h->frame_off == 0);
		CHECK(h->frame_len >= TWP_MIN_MSS &&
		      h->frame_len <= TWP_MAX_MSS);
		break;
	case TWP_RESET:
		CHECK(h->flags == 0 && h->len == 0);
		CHECK(h->dst_sess != 0);
		CHECK(h->seq == 0 && h->ack == 0 && h->msg == 0);
		CHECK(h->frame_off == 0 && h->frame_len == 0);
		break;
	default:
		break;
	}
}

/* Field by field: the structs have padding the parser leaves alone. */
static bool same_pkt(const struct twp_pkt *a, const struct twp_pkt *b)
{
	const struct twp_hdr *x = &a->h, *y = &b->h;
	return memcmp(a->src.mac, b->src.mac, 6) == 0 &&
	       a->src.ip == b->src.ip && a->src.port == b->src.port &&
	       a->dst_port == b->dst_port && a->queue == b->queue &&
	       x->type == y->type && x->flags == y->flags &&
	       x->dst_sess == y->dst_sess && x->src_sess == y->src_sess &&
	       x->pn == y->pn && x->tag == y->tag && x->seq == y->seq &&
	       x->ack == y->ack && x->msg == y->msg && x->len == y->len &&
	       x->frame_off == y->frame_off && x->frame_len == y->frame_len;
}

/* p (n bytes) was accepted as pk: bounds, then build it again. */
static void accepted(const uint8_t *p, size_t n, const struct twp_local *l,
		     bool ip_ok, bool l4_ok, const struct twp_pkt *pk)
{
	const uint8_t *ip = p + TWP_ETH_LEN, *udp = ip + TWP_IP_LEN;
	uint16_t tot = be16(ip + 2);

	CHECK(n >= TWP_HEADERS);
	CHECK(pk->payload == p + TWP_HEADERS);
	CHECK((size_t)TWP_HEADERS + pk->h.len <= n);
	CHECK(TWP_OVERHEAD_L3 + pk->h.len == tot);
	CHECK(pk->h.len <= l->mss);
	CHECK(pk->queue < l->nports);
	CHECK(pk->dst_port == l->base_port + pk->queue);
	CHECK((pk->src.mac[0] & 1) == 0);
	const uint8_t *sip = (const uint8_t *)&pk->src.ip;
	CHECK(pk->src.ip != 0 && pk->src.ip != 0xffffffffu &&
	      (sip[0] & 0xf0) != 0xe0);
	check_hdr(&pk->h);

	/* The builder, from what the parser returned. */
	size_t len = TWP_HEADERS + pk->h.len;
	uint8_t *b = malloc(len);
	CHECK(b != NULL);
	struct twp_ep dst = {.ip = l->ip, .port = htons(pk->dst_port)};
	memcpy(dst.mac, l->mac, 6);
	twp_l2l4_build(b, &pk->src, &dst, TWP_HDR_LEN + pk->h.len, false);
	twp_hdr_encode(b + TWP_L2L4_LEN, &pk->h);
	memcpy(b + TWP_HEADERS, pk->payload, pk->h.len);
	uint8_t *bip = b + TWP_ETH_LEN, *budp = bip + TWP_IP_LEN;

	/* What we build, we take, as it was. */
	struct twp_pkt again;
	CHECK(twp_parse(b, len, l, false, false, &again) == TWP_OK);
	CHECK(same_pkt(&again, pk));
	CHECK(again.payload == b + TWP_HEADERS);

	CHECK(memcmp(b, p, TWP_ETH_LEN) == 0);
	/* IPv4: TOS, id, DF and TTL are the sender's choice; with them
	 * copied, the header is ours (its checksum too, unless the NIC
	 * checked it and the parser did not). */
	bip[1] = ip[1];
	memcpy(bip + 4, ip + 4, 2);
	bip[6] = (uint8_t)((bip[6] & ~0x40) | (ip[6] & 0x40));
	bip[8] = ip[8];
	bip[10] = bip[11] = 0;
	uint16_t c = (uint16_t)~ref_sum(0, bip, TWP_IP_LEN);
	bip[10] = (uint8_t)(c >> 8);
	bip[11] = (uint8_t)c;
	CHECK(memcmp(bip, ip, 10) == 0 && memcmp(bip + 12, ip + 12, 8) == 0);
	/* A checksum of 0 verifies as 0xffff too (ones' complement has
	 * two zeros): the one alias a sender may choose. */
	if (!ip_ok)
		CHECK(be16(ip + 10) == c ||
		      (c == 0 && be16(ip + 10) == 0xffff));
	/* UDP: none (0), or the one checksum that verifies. */
	CHECK(memcmp(budp, udp, 6) == 0);
	if (udp[6] == 0 && udp[7] == 0) {
		CHECK(budp[6] == 0 && budp[7] == 0);
	} else {
		twp_udp_csum_set(b,
				 twp_csum_add(0, b + TWP_L2L4_LEN,
					      TWP_HDR_LEN + pk->h.len, false));
		if (!l4_ok)
			CHECK(memcmp(budp + 6, udp + 6, 2) == 0);
		CHECK(twp_parse(b, len, l, false, false, NULL) == TWP_OK);
	}
	/* Ours: one encoding per header, then the payload. */
	CHECK(memcmp(b + TWP_L2L4_LEN, udp + TWP_UDP_LEN,
		     TWP_HDR_LEN + pk->h.len) == 0);
	free(b);

	/* Anything cut from the packet is not a packet. */
	enum twp_err e = twp_parse(p, TWP_ETH_LEN + (size_t)tot - 1, l, ip_ok,
				   l4_ok, NULL);
	CHECK(e == TWP_E_SHORT || e == TWP_E_IP_LEN);
}

static void packet(const uint8_t *p, size_t n, uint8_t ctl)
{
	static const uint32_t mss[4] = {1426, 64, 65535, 0};
	struct twp_local l = {.ip = htonl(0x0a4d0002), /* 10.77.0.2 */
			      .base_port = 31850,
			      .nports = (uint16_t)((ctl >> 4) & 7),
			      .mss = mss[(ctl >> 2) & 3]};
	memcpy(l.mac, LOCAL_MAC, 6);
	bool ip_ok = ctl & 1, l4_ok = (ctl >> 1) & 1;

	struct twp_pkt pk, before;
	memset(&pk, 0xa5, sizeof(pk));
	memcpy(&before, &pk, sizeof(pk));
	enum twp_err e = twp_parse(p, n, &l, ip_ok, l4_ok, &pk);
	CHECK((unsigned)e < TWP_ERR_COUNT_);
	CHECK(strcmp(twp_err_name(e), "?") != 0);
	CHECK(twp_parse(p, n, &l, ip_ok, l4_ok, NULL) == e);

	/* Checking less never refuses more: only the checksum reasons go
	 * when the NIC has verified the checksums. */
	enum twp_err off = twp_parse(p, n, &l, true, true, NULL);
	if (e == TWP_E_IP_CSUM || e == TWP_E_UDP_CSUM)
		CHECK(off != TWP_E_IP_CSUM && off != TWP_E_UDP_CSUM);
	else
		CHECK(off == e);

	if (e != TWP_OK) {
		CHECK(memcmp(&pk, &before, sizeof(pk)) == 0);
		return;
	}
	accepted(p, n, &l, ip_ok, l4_ok, &pk);
}

static void address(const uint8_t *d, size_t n, bool need_mac)
{
	char s[128];
	if (n >= sizeof(s))
		n = sizeof(s) - 1;
	memcpy(s, d, n);
	s[n] = '\0';

	struct twp_ep ep, back;
	bool has = false, has2 = false;
	memset(&ep, 0, sizeof(ep));
	if (twp_addr_parse(s, &ep, need_mac, &has) != 0)
		return;
	CHECK(!need_mac || has);
	/* What needs no MAC parses the same with or without one required. */
	if (!need_mac) {
		CHECK(twp_addr_parse(s, &back, true, NULL) == (has ? 0 : -1));
	}
	char f[64];
	int len = twp_addr_format(f, sizeof(f), &ep);
	CHECK(len > 0 && (size_t)len < sizeof(f) && strlen(f) == (size_t)len);
	CHECK(twp_addr_parse(f, &back, true, &has2) == 0 && has2);
	CHECK(memcmp(&back, &ep, sizeof(ep)) == 0);
	/* The format is canonical: formatting again changes nothing. */
	char g[64];
	CHECK(twp_addr_format(g, sizeof(g), &back) == len);
	CHECK(strcmp(f, g) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	check_csum(data + 1, size - 1);
	if (data[0] & 0x80)
		address(data + 1, size - 1, data[0] & 1);
	else
		packet(data + 1, size - 1, data[0]);
	return 0;
}
