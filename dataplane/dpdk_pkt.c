/* Packet headers of the DPDK transport: build, checksum and validate
 * Ethernet/IPv4/UDP and the tensorwire packet header on plain bytes. */
#include "dataplane/dpdk_pkt.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#define ETH_TYPE_IPV4 0x0800u
#define IP_PROTO_UDP 17u
#define IP_DF 0x4000u
#define TWP_IP_TTL 64u
/* Largest frame the format allows (TW_FRAME_MAX_TOTAL). */
#define FRAME_MAX (UINT64_C(1) << 40)

static const char *const err_names[TWP_ERR_COUNT_] = {
	[TWP_OK] = "ok",
	[TWP_E_SHORT] = "short",
	[TWP_E_ETH_DST] = "eth-dst",
	[TWP_E_ETH_TYPE] = "eth-type",
	[TWP_E_IP_VERSION] = "ip-version",
	[TWP_E_IP_IHL] = "ip-ihl",
	[TWP_E_IP_LEN] = "ip-len",
	[TWP_E_IP_FRAG] = "ip-frag",
	[TWP_E_IP_PROTO] = "ip-proto",
	[TWP_E_IP_TTL] = "ip-ttl",
	[TWP_E_IP_CSUM] = "ip-csum",
	[TWP_E_IP_DST] = "ip-dst",
	[TWP_E_IP_SRC] = "ip-src",
	[TWP_E_UDP_LEN] = "udp-len",
	[TWP_E_UDP_CSUM] = "udp-csum",
	[TWP_E_UDP_PORT] = "udp-port",
	[TWP_E_MAGIC] = "magic",
	[TWP_E_VERSION] = "version",
	[TWP_E_TYPE] = "type",
	[TWP_E_FLAGS] = "flags",
	[TWP_E_RESERVED] = "reserved",
	[TWP_E_LEN] = "len",
	[TWP_E_FIELDS] = "fields",
	[TWP_E_FRAME] = "frame",
	[TWP_E_ETH_SRC] = "eth-src",
};

const char *twp_err_name(enum twp_err e)
{
	if ((unsigned)e >= TWP_ERR_COUNT_ || err_names[e] == NULL)
		return "?";
	return err_names[e];
}

/* ------------------------------------------------------------------ */
/* Byte access                                                         */

static inline uint16_t rd_be16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline void wr_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline uint32_t rd_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline void wr_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline uint64_t rd_le64(const uint8_t *p)
{
	return (uint64_t)rd_le32(p) | (uint64_t)rd_le32(p + 4) << 32;
}

static inline void wr_le64(uint8_t *p, uint64_t v)
{
	wr_le32(p, (uint32_t)v);
	wr_le32(p + 4, (uint32_t)(v >> 32));
}

uint64_t twp_nonce_counter(const uint8_t nonce[TWP_NONCE_LEN])
{
	return rd_le64(nonce);
}

void twp_nonce_set_counter(uint8_t nonce[TWP_NONCE_LEN], uint64_t c)
{
	wr_le64(nonce, c);
}

/* ------------------------------------------------------------------ */
/* Checksums                                                           */

/*
 * Sums are kept in host order: adding the 16-bit words as they load on
 * this machine gives the byte-swapped ones' complement sum on a
 * little-endian host, which, stored back the same way, lands as the right
 * bytes (RFC 1071's byte-order independence). A range that starts at an
 * odd offset of the covered data has its bytes in the other half of each
 * word: its sum is byte-swapped before it is added.
 */
static inline uint32_t fold32(uint64_t s)
{
	s = (s & 0xffffffffu) + (s >> 32);
	s = (s & 0xffffffffu) + (s >> 32);
	uint32_t r = (uint32_t)s;
	r = (r & 0xffffu) + (r >> 16);
	r = (r & 0xffffu) + (r >> 16);
	return r;
}

uint32_t twp_csum_add(uint32_t sum, const void *data, size_t len, bool odd)
{
	const uint8_t *p = data;
	uint64_t acc = 0;
	while (len >= 32) {
		uint32_t w[8];
		memcpy(w, p, sizeof(w));
		acc += (uint64_t)w[0] + w[1] + w[2] + w[3] + w[4] + w[5] +
		       w[6] + w[7];
		p += 32;
		len -= 32;
	}
	while (len >= 4) {
		uint32_t w;
		memcpy(&w, p, 4);
		acc += w;
		p += 4;
		len -= 4;
	}
	if (len >= 2) {
		uint16_t w;
		memcpy(&w, p, 2);
		acc += w;
		p += 2;
		len -= 2;
	}
	if (len) {
		/* The lone last byte is the first of its word. */
		uint8_t tail[2] = {p[0], 0};
		uint16_t w;
		memcpy(&w, tail, 2);
		acc += w;
	}
	uint32_t piece = fold32(acc);
	if (odd)
		piece = ((piece & 0xffu) << 8) | (piece >> 8);
	sum += piece;
	return (sum & 0xffffu) + (sum >> 16);
}

uint16_t twp_csum_fold(uint32_t sum)
{
	sum = (sum & 0xffffu) + (sum >> 16);
	sum = (sum & 0xffffu) + (sum >> 16);
	return (uint16_t)sum;
}

/* Sum of the UDP pseudo-header of the IPv4 header at ip. */
static uint32_t phdr_sum(const uint8_t *ip, uint16_t udp_len)
{
	uint8_t ph[12];
	memcpy(ph, ip + 12, 8); /* src, dst */
	ph[8] = 0;
	ph[9] = IP_PROTO_UDP;
	wr_be16(ph + 10, udp_len);
	return twp_csum_add(0, ph, sizeof(ph), false);
}

void twp_udp_csum_set(uint8_t *pkt, uint32_t payload_sum)
{
	uint8_t *ip = pkt + TWP_ETH_LEN, *udp = ip + TWP_IP_LEN;
	uint16_t ulen = rd_be16(udp + 4);
	udp[6] = udp[7] = 0;
	uint32_t s = phdr_sum(ip, ulen);
	s = twp_csum_add(s, udp, TWP_UDP_LEN, false);
	/* The payload starts at offset 8 of the UDP datagram: even. */
	s += payload_sum;
	uint16_t c = (uint16_t)~twp_csum_fold(s);
	if (c == 0)
		c = 0xffff; /* 0 means "no checksum" in UDP over IPv4 */
	memcpy(udp + 6, &c, 2);
}

void twp_udp_phdr_set(uint8_t *pkt)
{
	uint8_t *ip = pkt + TWP_ETH_LEN, *udp = ip + TWP_IP_LEN;
	uint16_t c = twp_csum_fold(phdr_sum(ip, rd_be16(udp + 4)));
	memcpy(udp + 6, &c, 2);
}

/* ------------------------------------------------------------------ */
/* Building                                                            */

void twp_hdr_encode(uint8_t *d, const struct twp_hdr *h)
{
	d[0] = (uint8_t)(TWP_MAGIC & 0xff);
	d[1] = (uint8_t)(TWP_MAGIC >> 8);
	d[2] = TWP_VERSION;
	d[3] = 0;
	wr_le64(d + TWP_TAG_OFF, h->tag);
	d[12] = h->type;
	d[13] = h->flags;
	wr_le64(d + 14, h->dst_sess);
	wr_le64(d + 22, h->src_sess);
	wr_le64(d + 30, h->pn);
	wr_le32(d + 38, h->seq);
	wr_le32(d + 42, h->ack);
	wr_le32(d + 46, h->msg);
	wr_le32(d + 50, h->len);
	wr_le64(d + 54, h->frame_off);
	wr_le64(d + 62, h->frame_len);
}

void twp_hdr_decode(const uint8_t *s, struct twp_hdr *h)
{
	h->tag = rd_le64(s + TWP_TAG_OFF);
	h->type = s[12];
	h->flags = s[13];
	h->dst_sess = rd_le64(s + 14);
	h->src_sess = rd_le64(s + 22);
	h->pn = rd_le64(s + 30);
	h->seq = rd_le32(s + 38);
	h->ack = rd_le32(s + 42);
	h->msg = rd_le32(s + 46);
	h->len = rd_le32(s + 50);
	h->frame_off = rd_le64(s + 54);
	h->frame_len = rd_le64(s + 62);
}

void twp_l2l4_build(uint8_t *d, const struct twp_ep *src,
		    const struct twp_ep *dst, uint32_t udp_payload,
		    bool ip_csum_offload)
{
	memcpy(d, dst->mac, 6);
	memcpy(d + 6, src->mac, 6);
	wr_be16(d + 12, ETH_TYPE_IPV4);

	uint8_t *ip = d + TWP_ETH_LEN;
	ip[0] = 0x45;
	ip[1] = 0;
	wr_be16(ip + 2, (uint16_t)(TWP_IP_LEN + TWP_UDP_LEN + udp_payload));
	wr_be16(ip + 4, 0); /* id: DF, never fragmented (RFC 6864) */
	wr_be16(ip + 6, IP_DF);
	ip[8] = TWP_IP_TTL;
	ip[9] = IP_PROTO_UDP;
	ip[10] = ip[11] = 0;
	memcpy(ip + 12, &src->ip, 4);
	memcpy(ip + 16, &dst->ip, 4);
	if (!ip_csum_offload) {
		uint16_t c = (uint16_t)~twp_csum_fold(
			twp_csum_add(0, ip, TWP_IP_LEN, false));
		memcpy(ip + 10, &c, 2);
	}

	uint8_t *udp = ip + TWP_IP_LEN;
	memcpy(udp, &src->port, 2);
	memcpy(udp + 2, &dst->port, 2);
	wr_be16(udp + 4, (uint16_t)(TWP_UDP_LEN + udp_payload));
	udp[6] = udp[7] = 0;
}

/* ------------------------------------------------------------------ */
/* The setup block                                                     */

void twp_setup_encode(uint8_t *d, const struct twp_setup *s)
{
	memcpy(d, s->nonce, TWP_NONCE_LEN);
	wr_le32(d + TWP_NONCE_LEN, s->isn);
	memcpy(d + TWP_NONCE_LEN + 4, s->mac, TWP_SETUP_MAC_LEN);
}

void twp_setup_decode(const uint8_t *src, struct twp_setup *s)
{
	memcpy(s->nonce, src, TWP_NONCE_LEN);
	s->isn = rd_le32(src + TWP_NONCE_LEN);
	memcpy(s->mac, src + TWP_NONCE_LEN + 4, TWP_SETUP_MAC_LEN);
}

static const char setup_label[] = "tensorwire dpdk setup 5";

static size_t put_ep(uint8_t *d, const struct twp_ep *ep)
{
	memcpy(d, ep->mac, 6);
	memcpy(d + 6, &ep->ip, 4);
	memcpy(d + 10, &ep->port, 2);
	return 12;
}

void twp_setup_mac(const void *key, size_t key_len, const struct twp_hdr *h,
		   const struct twp_ep *src, const struct twp_ep *dst,
		   const struct twp_setup *s, const uint8_t *peer_nonce,
		   uint8_t out[TWP_SETUP_MAC_LEN])
{
	uint8_t m[sizeof(setup_label) - 1 + 2 + 12 + 12 + 8 + 8 + 8 + 4 +
		  2 * TWP_NONCE_LEN];
	size_t n = sizeof(setup_label) - 1;
	memcpy(m, setup_label, n);
	m[n++] = h->type;
	m[n++] = h->flags;
	n += put_ep(m + n, src);
	n += put_ep(m + n, dst);
	wr_le64(m + n, h->src_sess);
	wr_le64(m + n + 8, h->dst_sess);
	wr_le64(m + n + 16, h->frame_len);
	wr_le32(m + n + 24, s->isn);
	n += 28;
	memcpy(m + n, s->nonce, TWP_NONCE_LEN);
	n += TWP_NONCE_LEN;
	if (peer_nonce != NULL)
		memcpy(m + n, peer_nonce, TWP_NONCE_LEN);
	else
		memset(m + n, 0, TWP_NONCE_LEN);
	n += TWP_NONCE_LEN;
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, key, key_len);
	crypto_auth_hmacsha256_update(&st, m, n);
	crypto_auth_hmacsha256_final(&st, out);
	sodium_memzero(&st, sizeof(st));
}

bool twp_setup_verify(const void *key, size_t key_len, const struct twp_hdr *h,
		      const struct twp_ep *src, const struct twp_ep *dst,
		      const struct twp_setup *s, const uint8_t *peer_nonce)
{
	uint8_t want[TWP_SETUP_MAC_LEN];
	twp_setup_mac(key, key_len, h, src, dst, s, peer_nonce, want);
	return crypto_verify_32(want, s->mac) == 0;
}

/* ------------------------------------------------------------------ */
/* Per-packet tags                                                     */

static const char key_label[] = "tensorwire dpdk tag keys 3";

void twp_session_keys(const void *secret, size_t secret_len, uint64_t conn_sess,
		      uint64_t acc_sess,
		      const uint8_t conn_nonce[TWP_NONCE_LEN],
		      const uint8_t acc_nonce[TWP_NONCE_LEN],
		      uint8_t k_conn[TWP_KEY_LEN], uint8_t k_acc[TWP_KEY_LEN])
{
	/* The secret, of any length, into a BLAKE2b key; then the
	 * session's: both numbers and both fresh nonces, so that no two
	 * sessions (nor a session replayed from an old CONNECT) share a
	 * key. */
	uint8_t master[crypto_generichash_KEYBYTES];
	crypto_generichash_state st;
	crypto_generichash_init(&st, NULL, 0, sizeof(master));
	crypto_generichash_update(&st, (const uint8_t *)key_label,
				  sizeof(key_label));
	crypto_generichash_update(&st, secret, secret_len);
	crypto_generichash_final(&st, master, sizeof(master));
	uint8_t m[16 + 2 * TWP_NONCE_LEN], out[2 * TWP_KEY_LEN]; /* 64 */
	wr_le64(m, conn_sess);
	wr_le64(m + 8, acc_sess);
	memcpy(m + 16, conn_nonce, TWP_NONCE_LEN);
	memcpy(m + 16 + TWP_NONCE_LEN, acc_nonce, TWP_NONCE_LEN);
	crypto_generichash(out, sizeof(out), m, sizeof(m), master,
			   sizeof(master));
	memcpy(k_conn, out, TWP_KEY_LEN);
	memcpy(k_acc, out + TWP_KEY_LEN, TWP_KEY_LEN);
	sodium_memzero(master, sizeof(master));
	sodium_memzero(out, sizeof(out));
	sodium_memzero(&st, sizeof(st));
}

_Static_assert(crypto_shorthash_KEYBYTES + UMAC_KEY_SIZE == TWP_KEY_LEN,
	       "SipHash and UMAC keys");
_Static_assert(crypto_shorthash_BYTES == 8 && UMAC64_DIGEST_SIZE == 8,
	       "64-bit tags");
_Static_assert(2 * TWP_KEY_LEN <= crypto_generichash_BYTES_MAX, "keys");

/* Where the packet number sits in the tensorwire header (the nonce). */
#define PN_OFF 30u

void twp_mac_init(struct twp_mac *m, const uint8_t key[TWP_KEY_LEN])
{
	memcpy(m->sip, key, sizeof(m->sip));
	umac64_set_key(&m->u, key + sizeof(m->sip));
}

uint64_t twp_tag(struct twp_mac *m, const uint8_t *th, size_t n)
{
	uint8_t out[8];
	size_t len = n - TWP_TAGGED_OFF;
	if (len <= TWP_TAG_SIP_MAX) {
		crypto_shorthash(out, th + TWP_TAGGED_OFF, len, m->sip);
		return rd_le64(out);
	}
	/* UMAC-64: its pad comes from AES of the nonce, unique per key:
	 * the sender's pn, which it never reuses. */
	umac64_set_nonce(&m->u, 8, th + PN_OFF);
	umac64_update(&m->u, len, th + TWP_TAGGED_OFF);
	umac64_digest(&m->u, sizeof(out), out);
	return rd_le64(out);
}

void twp_tag_set(struct twp_mac *m, uint8_t *th, size_t n)
{
	wr_le64(th + TWP_TAG_OFF, twp_tag(m, th, n));
}

bool twp_tag_ok(struct twp_mac *m, const uint8_t *th, size_t n)
{
	/* One comparison of the whole word: no early exit on the first
	 * byte that differs. */
	volatile uint64_t d = twp_tag(m, th, n) ^ rd_le64(th + TWP_TAG_OFF);
	return d == 0;
}

/* ------------------------------------------------------------------ */
/* Validation                                                          */

static enum twp_err check_hdr(const struct twp_hdr *h)
{
	switch (h->type) {
	case TWP_DATA:
		if (h->flags != 0)
			return TWP_E_FLAGS;
		if (h->dst_sess == 0 || h->src_sess == 0)
			return TWP_E_FIELDS;
		if (h->frame_len > FRAME_MAX || h->frame_off > h->frame_len ||
		    h->len > h->frame_len - h->frame_off)
			return TWP_E_FRAME;
		/* Only an empty frame travels in an empty packet. */
		if (h->len == 0 && h->frame_len != 0)
			return TWP_E_FRAME;
		return TWP_OK;
	case TWP_ACK:
		if (h->flags & ~(TWP_F_ACK_REQ | TWP_F_NAK))
			return TWP_E_FLAGS;
		if (h->len != 0)
			return TWP_E_LEN;
		if (h->dst_sess == 0 || h->src_sess == 0 || h->seq != 0 ||
		    h->msg != 0 || h->frame_off != 0 || h->frame_len != 0)
			return TWP_E_FIELDS;
		return TWP_OK;
	case TWP_CONNECT:
	case TWP_ACCEPT:
		if (h->flags & ~TWP_F_TAG)
			return TWP_E_FLAGS;
		if (h->len != TWP_SETUP_LEN &&
		    (h->type != TWP_CONNECT ||
		     h->len != TWP_SETUP_LEN + TWP_COOKIE_LEN))
			return TWP_E_LEN;
		if ((h->type == TWP_CONNECT) != (h->dst_sess == 0) ||
		    h->src_sess == 0 || h->pn != 0 || h->tag != 0 ||
		    h->seq != 0 || h->ack != 0 || h->msg != 0 ||
		    h->frame_off != 0 || h->frame_len < TWP_MIN_MSS ||
		    h->frame_len > TWP_MAX_MSS)
			return TWP_E_FIELDS;
		return TWP_OK;
	case TWP_COOKIE:
		if (h->flags != 0)
			return TWP_E_FLAGS;
		if (h->len != TWP_SETUP_LEN)
			return TWP_E_LEN;
		if (h->dst_sess == 0 || h->src_sess != 0 || h->pn != 0 ||
		    h->tag != 0 || h->seq != 0 || h->ack != 0 || h->msg != 0 ||
		    h->frame_off != 0 || h->frame_len < TWP_MIN_MSS ||
		    h->frame_len > TWP_MAX_MSS)
			return TWP_E_FIELDS;
		return TWP_OK;
	case TWP_RESET:
		if (h->flags != 0)
			return TWP_E_FLAGS;
		if (h->len != 0)
			return TWP_E_LEN;
		if (h->dst_sess == 0 || h->seq != 0 || h->ack != 0 ||
		    h->msg != 0 || h->frame_off != 0 || h->frame_len != 0)
			return TWP_E_FIELDS;
		return TWP_OK;
	default:
		return TWP_E_TYPE;
	}
}

enum twp_err twp_parse(const uint8_t *p, size_t len,
		       const struct twp_local *local, bool ip_csum_ok,
		       bool l4_csum_ok, struct twp_pkt *out)
{
	if (p == NULL || len < TWP_HEADERS)
		return TWP_E_SHORT;

	/* Ethernet */
	if (memcmp(p, local->mac, 6) != 0)
		return TWP_E_ETH_DST;
	if (p[6] & 1)
		return TWP_E_ETH_SRC;
	if (rd_be16(p + 12) != ETH_TYPE_IPV4)
		return TWP_E_ETH_TYPE;

	/* IPv4 */
	const uint8_t *ip = p + TWP_ETH_LEN;
	if ((ip[0] >> 4) != 4)
		return TWP_E_IP_VERSION;
	if ((ip[0] & 0xf) != 5)
		return TWP_E_IP_IHL;
	uint16_t tot = rd_be16(ip + 2);
	/* Shorter Ethernet frames are padded to 60 bytes: the IP total
	 * length, not the frame, says where the packet ends. */
	if (tot < TWP_OVERHEAD_L3 || (size_t)tot > len - TWP_ETH_LEN)
		return TWP_E_IP_LEN;
	/* Reserved bit, MF or an offset: we never fragment, so any
	 * fragment is not ours (and would be a reassembly attack surface).
	 * Neither is a datagram the kernel reassembled before the PMD saw
	 * it (net_af_packet's fanout asks for PACKET_FANOUT_FLAG_DEFRAG
	 * and DPDK 22.11 cannot turn it off): its header has no fragment
	 * bits left, but it lacks DF unless its largest fragment had it
	 * (which no stack that fragments sets), or it is longer than one
	 * of our packets can be at this MTU (mss + headers). */
	uint16_t frag = rd_be16(ip + 6);
	if (frag != IP_DF || tot > (uint32_t)local->mss + TWP_OVERHEAD_L3)
		return TWP_E_IP_FRAG;
	if (ip[8] == 0)
		return TWP_E_IP_TTL;
	if (ip[9] != IP_PROTO_UDP)
		return TWP_E_IP_PROTO;
	if (memcmp(ip + 16, &local->ip, 4) != 0)
		return TWP_E_IP_DST;
	uint8_t s0 = ip[12];
	uint32_t sip;
	memcpy(&sip, ip + 12, 4);
	if (sip == 0 || sip == 0xffffffffu || (s0 & 0xf0) == 0xe0)
		return TWP_E_IP_SRC;
	if (!ip_csum_ok &&
	    twp_csum_fold(twp_csum_add(0, ip, TWP_IP_LEN, false)) != 0xffff)
		return TWP_E_IP_CSUM;

	/* UDP */
	const uint8_t *udp = ip + TWP_IP_LEN;
	uint16_t ulen = rd_be16(udp + 4);
	if (ulen != tot - TWP_IP_LEN)
		return TWP_E_UDP_LEN;
	uint16_t dport = rd_be16(udp + 2);
	if (dport < local->base_port ||
	    (uint32_t)dport - local->base_port >= local->nports)
		return TWP_E_UDP_PORT;
	uint16_t ucs;
	memcpy(&ucs, udp + 6, 2);
	if (!l4_csum_ok && ucs != 0) {
		uint32_t s = phdr_sum(ip, ulen);
		s = twp_csum_add(s, udp, ulen, false);
		if (twp_csum_fold(s) != 0xffff)
			return TWP_E_UDP_CSUM;
	}

	/* Ours */
	const uint8_t *th = udp + TWP_UDP_LEN;
	if (th[0] != (TWP_MAGIC & 0xff) || th[1] != (TWP_MAGIC >> 8))
		return TWP_E_MAGIC;
	if (th[2] != TWP_VERSION)
		return TWP_E_VERSION;
	if (th[3] != 0)
		return TWP_E_RESERVED;
	struct twp_hdr h;
	twp_hdr_decode(th, &h);
	if ((uint32_t)ulen - TWP_UDP_LEN - TWP_HDR_LEN != h.len)
		return TWP_E_LEN;
	if (h.len > local->mss)
		return TWP_E_LEN;
	enum twp_err e = check_hdr(&h);
	if (e != TWP_OK)
		return e;

	if (out != NULL) {
		memcpy(out->src.mac, p + 6, 6);
		out->src.ip = sip;
		memcpy(&out->src.port, udp, 2);
		out->dst_port = dport;
		out->queue = (uint16_t)(dport - local->base_port);
		out->h = h;
		out->payload = th + TWP_HDR_LEN;
	}
	return TWP_OK;
}

/* ------------------------------------------------------------------ */
/* Addresses                                                           */

static int parse_mac(const char *s, uint8_t mac[6])
{
	for (int i = 0; i < 6; i++) {
		unsigned v = 0;
		for (int k = 0; k < 2; k++) {
			char c = *s++;
			unsigned d;
			if (c >= '0' && c <= '9')
				d = (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				d = (unsigned)(c - 'a' + 10);
			else if (c >= 'A' && c <= 'F')
				d = (unsigned)(c - 'A' + 10);
			else
				return -1;
			v = v * 16 + d;
		}
		mac[i] = (uint8_t)v;
		if (i < 5 && *s++ != ':')
			return -1;
	}
	return *s == '\0' ? 0 : -1;
}

int twp_addr_parse(const char *s, struct twp_ep *ep, bool need_mac,
		   bool *has_mac)
{
	static const char pfx[] = "udp://";
	if (s == NULL || ep == NULL || strncmp(s, pfx, sizeof(pfx) - 1) != 0)
		return -1;
	s += sizeof(pfx) - 1;
	const char *colon = strchr(s, ':');
	if (colon == NULL || colon == s || colon - s >= 16)
		return -1;
	char ip[16];
	memcpy(ip, s, (size_t)(colon - s));
	ip[colon - s] = '\0';
	struct in_addr a;
	if (inet_pton(AF_INET, ip, &a) != 1)
		return -1;
	const char *p = colon + 1;
	unsigned long port = 0;
	int digits = 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		port = port * 10 + (unsigned long)(*p - '0');
		if (++digits > 5 || port > 65535)
			return -1;
	}
	if (digits == 0)
		return -1;
	memset(ep, 0, sizeof(*ep));
	ep->ip = a.s_addr;
	ep->port = htons((uint16_t)port);
	bool mac = false;
	if (*p == '/') {
		if (parse_mac(p + 1, ep->mac) != 0)
			return -1;
		mac = true;
	} else if (*p != '\0') {
		return -1;
	}
	if (need_mac && !mac)
		return -1;
	if (has_mac)
		*has_mac = mac;
	return 0;
}

int twp_addr_format(char *dst, size_t n, const struct twp_ep *ep)
{
	char ip[INET_ADDRSTRLEN];
	struct in_addr a = {.s_addr = ep->ip};
	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	return snprintf(dst, n, "udp://%s:%u/%02x:%02x:%02x:%02x:%02x:%02x", ip,
			(unsigned)ntohs(ep->port), ep->mac[0], ep->mac[1],
			ep->mac[2], ep->mac[3], ep->mac[4], ep->mac[5]);
}
