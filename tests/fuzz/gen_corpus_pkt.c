/* Writes the fuzz_dpdk_pkt seed corpus: valid packets of every type for a
 * few receivers, one near miss per refusal reason, and addresses.
 * Usage: gen_corpus_pkt DIR (the checked-in copy is
 * tests/fuzz/corpus/fuzz_dpdk_pkt). Input layout: fuzz_dpdk_pkt.c. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dpdk_pkt.h"

/* Control bytes (fuzz_dpdk_pkt.c): ports from 31850, mss, offloads. */
#define C_PORTS(n) ((uint8_t)((n) << 4))
#define C_MSS_1426 0x00u
#define C_MSS_64 0x04u
#define C_MSS_65535 0x08u
#define C_IP_OK 0x01u
#define C_L4_OK 0x02u
#define C_ADDR 0x80u
#define C_DEFAULT (C_PORTS(2) | C_MSS_1426)

static const char *outdir;
static unsigned written;

static void die(const char *what)
{
	fprintf(stderr, "gen_corpus_pkt: %s\n", what);
	exit(1);
}

static void save(const char *name, uint8_t ctl, const void *p, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	f = fopen(path, "wb");
	if (f == NULL || fputc(ctl, f) == EOF ||
	    (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0)
		die(path);
	written++;
}

static void be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* From 10.77.0.1:31850 to 10.77.0.2:31851 (queue 1 of the default
 * receiver), UDP checksum computed unless no_udp_csum. */
static size_t build(uint8_t *p, const struct twp_hdr *h, bool no_udp_csum)
{
	struct twp_ep a = {.mac = {0x02, 0, 0, 0, 0x01, 0x01}};
	struct twp_ep b = {.mac = {0x02, 0, 0, 0, 0x01, 0x02}};
	a.ip = inet_addr("10.77.0.1");
	b.ip = inet_addr("10.77.0.2");
	a.port = htons(31850);
	b.port = htons(31851);
	twp_l2l4_build(p, &a, &b, TWP_HDR_LEN + h->len, false);
	twp_hdr_encode(p + TWP_L2L4_LEN, h);
	for (uint32_t i = 0; i < h->len; i++)
		p[TWP_HEADERS + i] = (uint8_t)(i * 7 + 1);
	if (!no_udp_csum)
		twp_udp_csum_set(p, twp_csum_add(0, p + TWP_L2L4_LEN,
						 TWP_HDR_LEN + h->len, false));
	return TWP_HEADERS + h->len;
}

/* The IPv4 and UDP checksums again, after a change. */
static void fix(uint8_t *p)
{
	uint8_t *ip = p + TWP_ETH_LEN;
	ip[10] = ip[11] = 0;
	uint16_t c = (uint16_t)~twp_csum_fold(twp_csum_add(0, ip, 20, false));
	memcpy(ip + 10, &c, 2);
	uint16_t ulen = (uint16_t)(ip[24] << 8 | ip[25]);
	uint16_t tot = (uint16_t)(ip[2] << 8 | ip[3]);
	if (ulen >= TWP_UDP_LEN && ulen + TWP_IP_LEN <= tot)
		twp_udp_csum_set(p, twp_csum_add(0, p + TWP_L2L4_LEN,
						 ulen - TWP_UDP_LEN, false));
}

static struct twp_hdr data(uint32_t len)
{
	struct twp_hdr h = {.type = TWP_DATA,
			    .dst_sess = 0x10005,
			    .src_sess = 0x20007,
			    .seq = 41,
			    .ack = 17,
			    .msg = 3,
			    .len = len,
			    .frame_off = 1426,
			    .frame_len = 1426 + (uint64_t)len + 10};
	return h;
}

static uint8_t pkt[TWP_ETH_LEN + 65535];

static void valid(void)
{
	const struct {
		const char *name;
		struct twp_hdr h;
		uint8_t ctl;
	} v[] = {
		{"ok-data-300", data(300), C_DEFAULT},
		{"ok-data-1", data(1), C_DEFAULT},
		{"ok-data-1426", data(1426), C_DEFAULT},
		{"ok-data-empty-frame",
		 {.type = TWP_DATA, .dst_sess = 7, .src_sess = 8, .seq = 5},
		 C_DEFAULT},
		{"ok-data-last-of-frame",
		 {.type = TWP_DATA,
		  .dst_sess = 1,
		  .src_sess = 2,
		  .len = 100,
		  .frame_off = 4900,
		  .frame_len = 5000},
		 C_PORTS(7) | C_MSS_1426 | C_L4_OK},
		{"ok-data-frame-2p40",
		 {.type = TWP_DATA,
		  .dst_sess = 1,
		  .src_sess = 2,
		  .len = 64,
		  .frame_off = (UINT64_C(1) << 40) - 64,
		  .frame_len = UINT64_C(1) << 40},
		 C_PORTS(2) | C_MSS_64},
		{"ok-ack",
		 {.type = TWP_ACK, .dst_sess = 5, .src_sess = 6, .ack = 99},
		 C_DEFAULT},
		{"ok-ack-nak-req",
		 {.type = TWP_ACK,
		  .flags = TWP_F_NAK | TWP_F_ACK_REQ,
		  .dst_sess = 5,
		  .src_sess = 6,
		  .ack = 1},
		 C_DEFAULT | C_IP_OK},
		{"ok-connect-tag",
		 {.type = TWP_CONNECT,
		  .flags = TWP_F_TAG,
		  .src_sess = UINT64_C(0x8000123456780001),
		  .len = TWP_SETUP_LEN,
		  .frame_len = 1426},
		 C_DEFAULT},
		{"ok-accept-tag",
		 {.type = TWP_ACCEPT,
		  .flags = TWP_F_TAG,
		  .dst_sess = UINT64_C(0x8000123456780001),
		  .src_sess = 3,
		  .len = TWP_SETUP_LEN,
		  .frame_len = 65535},
		 C_DEFAULT},
		{"ok-data-tagged",
		 {.type = TWP_DATA,
		  .dst_sess = UINT64_MAX,
		  .src_sess = UINT64_C(1) << 48,
		  .pn = 77,
		  .tag = UINT64_C(0x0123456789abcdef),
		  .len = 100,
		  .frame_len = 100},
		 C_DEFAULT},
		{"ok-connect-setup",
		 {.type = TWP_CONNECT,
		  .src_sess = 9,
		  .len = TWP_SETUP_LEN,
		  .frame_len = 1426},
		 C_DEFAULT},
		{"ok-connect-cookie",
		 {.type = TWP_CONNECT,
		  .flags = TWP_F_TAG,
		  .src_sess = 9,
		  .len = TWP_SETUP_LEN + TWP_COOKIE_LEN,
		  .frame_len = 1426},
		 C_DEFAULT},
		{"ok-cookie",
		 {.type = TWP_COOKIE,
		  .dst_sess = 9,
		  .len = TWP_SETUP_LEN,
		  .frame_len = 1402},
		 C_DEFAULT},
		{"ok-accept-setup-mss-64",
		 {.type = TWP_ACCEPT,
		  .dst_sess = 9,
		  .src_sess = 3,
		  .len = TWP_SETUP_LEN,
		  .frame_len = 64},
		 C_PORTS(2) | C_MSS_64},
		{"ok-reset",
		 {.type = TWP_RESET, .dst_sess = 3, .src_sess = 4},
		 C_DEFAULT},
		{"ok-reset-unknown",
		 {.type = TWP_RESET, .dst_sess = 3},
		 C_DEFAULT | C_IP_OK | C_L4_OK},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		save(v[i].name, v[i].ctl, pkt, build(pkt, &v[i].h, false));

	struct twp_hdr h = data(200);
	size_t n = build(pkt, &h, true);
	save("ok-data-no-udp-csum", C_DEFAULT, pkt, n);
	n = build(pkt, &h, false);
	memset(pkt + n, 0, 20);
	save("ok-data-eth-padding", C_DEFAULT, pkt, n + 20);
	/* the largest IPv4 packet, for the largest mss */
	h = data(65535 - TWP_OVERHEAD_L3);
	h.frame_off = 0;
	h.frame_len = h.len;
	save("ok-data-max", C_PORTS(2) | C_MSS_65535, pkt,
	     build(pkt, &h, false));
	/* the sender's free fields: TOS, id, no DF, TTL 1 */
	h = data(40);
	n = build(pkt, &h, false);
	pkt[15] = 0xb8;
	be16(pkt + 18, 0x1234);
	pkt[20] = 0;
	pkt[22] = 1;
	fix(pkt);
	save("ok-data-free-ip-fields", C_DEFAULT, pkt, n);
}

/* One refusal each: a valid DATA packet with one thing wrong (checksums
 * fixed after, unless the checksum is the thing). */
static void invalid(void)
{
	struct twp_hdr h0 = data(100);
	size_t n0 = build(pkt, &h0, false);
	static uint8_t base[TWP_HEADERS + 100];
	memcpy(base, pkt, n0);
	const struct {
		const char *name;
		size_t off; /* byte to flip bits of, or SIZE_MAX */
		uint8_t bits;
		size_t len; /* 0: n0 */
		bool fix;
	} b[] = {
		{"bad-short", SIZE_MAX, 0, TWP_HEADERS - 1, false},
		{"bad-eth-dst", 5, 0x01, 0, false},
		{"bad-eth-src-mcast", 6, 0x01, 0, false},
		{"bad-eth-type", 12, 0x8e, 0, false}, /* IPv6 */
		{"bad-ip-version", 14, 0x20, 0, true},
		{"bad-ip-ihl", 14, 0x03, 0, true},
		{"bad-ip-len", 16, 0x7f, 0, true},
		{"bad-ip-truncated", SIZE_MAX, 0, TWP_HEADERS + 99, false},
		{"bad-ip-frag", 20, 0x20, 0, true},  /* MF */
		{"bad-ip-ttl", 22, 64, 0, true},     /* 0 */
		{"bad-ip-proto", 23, 0x17, 0, true}, /* TCP */
		{"bad-ip-csum", 24, 0xff, 0, false},
		{"bad-ip-src", 26, 10 ^ 224, 0, true}, /* multicast */
		{"bad-ip-dst", 33, 0x01, 0, true},
		{"bad-udp-len", 39, 0x9a, 0, true},  /* 0 */
		{"bad-udp-port", 37, 0x07, 0, true}, /* 31852 */
		{"bad-udp-csum", 40, 0xff, 0, false},
		{"bad-magic", 42, 'T' ^ 'X', 0, true},
		{"bad-version", 44, 0x01, 0, true},
		{"bad-type", 42 + 12, 0x07, 0, true},
		{"bad-flags", 42 + 13, 0x01, 0, true},
		{"bad-reserved", 45, 0x01, 0, true},
		{"bad-len", 42 + 50, 0x01, 0, true},
		{"bad-fields", SIZE_MAX, 0, 0, true},  /* dst_sess 0 */
		{"bad-frame", 42 + 69, 0x01, 0, true}, /* > 2^40 */
	};
	for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
		memcpy(pkt, base, n0);
		if (b[i].off != SIZE_MAX)
			pkt[b[i].off] ^= b[i].bits;
		if (strcmp(b[i].name, "bad-fields") == 0)
			memset(pkt + 42 + 14, 0, 8);
		if (b[i].fix)
			fix(pkt);
		save(b[i].name, C_DEFAULT, pkt, b[i].len ? b[i].len : n0);
	}
	/* a port outside the receiver's range, and a receiver with none */
	save("bad-no-ports", C_PORTS(0), base, n0);
	save("bad-over-mss", C_PORTS(2) | C_MSS_64, base, n0);
	/* control packets with a field their type leaves zero */
	struct twp_hdr c = {
		.type = TWP_ACK, .dst_sess = 5, .src_sess = 6, .seq = 1};
	save("bad-ack-seq", C_DEFAULT, pkt, build(pkt, &c, false));
	c = (struct twp_hdr){.type = TWP_CONNECT,
			     .src_sess = 9,
			     .len = TWP_SETUP_LEN,
			     .frame_len = 63};
	save("bad-connect-mss", C_DEFAULT, pkt, build(pkt, &c, false));
	c = (struct twp_hdr){.type = TWP_CONNECT,
			     .src_sess = 9,
			     .len = TWP_SETUP_LEN - 1,
			     .frame_len = 1426};
	save("bad-connect-setup-len", C_DEFAULT, pkt, build(pkt, &c, false));
	c = (struct twp_hdr){.type = TWP_RESET, .dst_sess = 3, .len = 4};
	save("bad-reset-len", C_DEFAULT, pkt, build(pkt, &c, false));
}

static void addresses(void)
{
	static const struct {
		const char *name, *s;
		uint8_t need_mac;
	} a[] = {
		{"addr-full", "udp://10.1.2.3:31850/02:0a:0B:cc:dd:ef", 1},
		{"addr-no-mac", "udp://10.1.2.3:0", 0},
		{"addr-max", "udp://255.255.255.255:65535/ff:ff:ff:ff:ff:ff",
		 0},
		{"addr-bad-port", "udp://10.1.2.3:65536/02:00:00:00:00:01", 1},
		{"addr-bad-mac", "udp://10.1.2.3:5/02:00:00:00:00", 1},
		{"addr-bad-ip", "udp://10.1.2:5/02:00:00:00:00:01", 0},
	};
	for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++)
		save(a[i].name, (uint8_t)(C_ADDR | a[i].need_mac), a[i].s,
		     strlen(a[i].s));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen_corpus_pkt DIR\n");
		return 2;
	}
	outdir = argv[1];
	valid();
	invalid();
	addresses();
	printf("gen_corpus_pkt: wrote %u files to %s\n", written, outdir);
	return 0;
}
