/* Packets of the DPDK transport: Ethernet/IPv4/UDP headers and the
 * tensorwire packet header, built and checked on plain bytes (no EAL). */
#ifndef TW_DATAPLANE_DPDK_PKT_H
#define TW_DATAPLANE_DPDK_PKT_H

#include <nettle/umac.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * On the wire (network order for L2-L4, little-endian for ours):
 *
 *   0  Ethernet: dst MAC, src MAC, type 0x0800                  14 bytes
 *  14  IPv4: version 4, IHL 5, TOS 0, total length, id 0, DF set,
 *      fragment offset 0, TTL 64, protocol 17, header checksum,
 *      src, dst                                                 20 bytes
 *  34  UDP: src port, dst port, length, checksum (0 = none)      8 bytes
 *  42  tensorwire packet header                                 70 bytes
 *       0 u16 magic 0x5754 ("TW")   2 u8 version 5   3 u8 reserved 0
 *       4 u64 tag         keyed tag of bytes 12 .. the end of the UDP
 *                         payload (the rest of this header and the frame
 *                         bytes), n of them: up to TWP_TAG_SIP_MAX,
 *                         SipHash-2-4 (libsodium crypto_shorthash) under
 *                         the first 16 bytes of the sending direction's
 *                         key of a tagged session (twp_session_keys);
 *                         longer, UMAC-64 (RFC 4418; GNU Nettle's umac64)
 *                         under its last 16, the packet's pn (8 bytes as
 *                         on the wire) the nonce; 0 in CONNECT and ACCEPT
 *                         and in untagged sessions
 *      12 u8 type         13 u8 flags
 *      14 u64 dst_sess    receiver's session number (0 in CONNECT)
 *      22 u64 src_sess    sender's session number (0 in a RESET that
 *                         answers a packet for an unknown session)
 *      30 u64 pn          packet number: counts every packet the sender
 *                         sends on the session (retransmits anew), for
 *                         the receiver's replay window; 0 in CONNECT and
 *                         ACCEPT
 *      38 u32 seq         DATA: packet number in this direction
 *      42 u32 ack         next packet number the sender expects
 *      46 u32 msg         DATA: frame number in this direction
 *      50 u32 len         frame bytes that follow
 *      54 u64 frame_off   DATA: where they go in the frame
 *      62 u64 frame_len   DATA: the frame's length; CONNECT/ACCEPT: the
 *                         sender's mss (largest len it accepts)
 * 112  len bytes of the frame; in CONNECT and ACCEPT, the setup block
 *
 * CONNECT and ACCEPT carry the 52-byte setup block (len 52), and may set
 * flag TAG: the sender will tag this session's packets. A session is
 * tagged when the CONNECT and the ACCEPT both set it (each side: a group
 * secret and tags not turned off, tw_dpdk_opts.no_pkt_tag):
 *
 *   0 u8[16] nonce  fresh for each session the sender opens or accepts
 *  16 u32    isn    the sender's first DATA packet number (random)
 *  20 u8[32] mac    HMAC-SHA256, keyed with the group's secret, of
 *                   twp_setup_mac's message: the label
 *                   "tensorwire dpdk setup 4", type, flags, the sender's
 *                   then the receiver's endpoint (MAC, IPv4, UDP port as
 *                   on the wire), src_sess, dst_sess (u64 each), mss
 *                   (frame_len), isn, this nonce and, in an ACCEPT, the
 *                   CONNECT's nonce (16 zero bytes in a CONNECT); all
 *                   zero without a secret.
 *
 * A receiver with a secret drops (silently, counted) a CONNECT or ACCEPT
 * whose mac does not verify: a session exists only between holders of
 * the secret, and the ACCEPT, bound to the CONNECT's nonce, cannot be
 * replayed from an earlier session.
 *
 * With a secret, an acceptor takes no slot for a CONNECT until it
 * carries a cookie of the acceptor's, as SYN cookies or DTLS's
 * HelloVerifyRequest: a CONNECT without one, or with one that is not the
 * acceptor's for this CONNECT and not under a second old, is answered
 * with a COOKIE, which keeps no state. COOKIE: dst_sess the CONNECT's
 * src_sess, src_sess 0, flags 0, frame_len the acceptor's mss, and a
 * setup block whose nonce is the cookie (TWP_COOKIE_LEN bytes), isn 0,
 * and mac as above with the CONNECT's nonce as the peer nonce. The
 * connector then sends its CONNECT again (same session, nonce and
 * counter), len TWP_SETUP_LEN + TWP_COOKIE_LEN: the setup block, then
 * the cookie, which its mac covers in the place of the peer nonce. A
 * CONNECT captured from the wire and replayed after its cookie aged
 * draws a COOKIE to the member it names, and takes nothing.
 *
 * A tagged session's keys (twp_session_keys): BLAKE2b (crypto_generichash)
 * keyed with a hash of the group's secret, over a label, both session
 * numbers and both nonces, gives 32 bytes: the connector's sending key,
 * then the acceptor's (16 bytes each). Every other packet of the session
 * must carry the right tag and a packet number not seen yet (a window of
 * 64 below the highest), or it is dropped, counted and unanswered, before
 * it changes anything.
 *
 * The 16-byte mbuf private area makes the frame bytes 64-byte aligned in
 * a received mbuf: struct rte_mbuf (128) + private area (16) + headroom
 * (128) + headers (112) = 384 bytes from the 64-byte aligned mbuf, so a
 * frame that fits in one packet goes up without a copy.
 */
#define TWP_ETH_LEN 14u
#define TWP_IP_LEN 20u
#define TWP_UDP_LEN 8u
#define TWP_L2L4_LEN 42u
#define TWP_HDR_LEN 70u
#define TWP_HEADERS (TWP_L2L4_LEN + TWP_HDR_LEN)                 /* 112 */
#define TWP_OVERHEAD_L3 (TWP_IP_LEN + TWP_UDP_LEN + TWP_HDR_LEN) /* 98 */
#define TWP_MAGIC 0x5754u
#define TWP_VERSION 5u
#define TWP_TAG_OFF 4u     /* the tag, in the tensorwire header */
#define TWP_TAGGED_OFF 12u /* where the bytes it covers start */
#define TWP_KEY_LEN 32u    /* a direction's tag keys: SipHash's, UMAC's */
/* Tagged bytes up to which SipHash tags a packet: faster than UMAC over
 * short packets with a cold cache (UMAC's state is 2.5 KB), 4x slower
 * over full ones (perf/RESULTS.md). */
#define TWP_TAG_SIP_MAX 256u
#define TWP_MIN_MSS 64u /* holds the setup block */
#define TWP_MAX_MSS 65535u

enum twp_type {
	TWP_DATA = 1,
	TWP_ACK = 2, /* flags: ACK_REQ (keepalive), NAK (gap seen) */
	TWP_CONNECT = 3,
	TWP_ACCEPT = 4,
	TWP_RESET = 5,
	TWP_COOKIE = 6, /* the acceptor's answer to a CONNECT without a
			 * valid cookie: no session yet (below) */
};

#define TWP_F_ACK_REQ 0x01u
#define TWP_F_NAK 0x02u
#define TWP_F_TAG 0x04u /* CONNECT/ACCEPT: the sender tags this session */

struct twp_hdr {
	uint8_t type, flags;
	uint64_t dst_sess, src_sess;
	uint64_t pn;
	uint32_t seq, ack, msg, len;
	uint64_t frame_off, frame_len;
	uint64_t tag; /* as on the wire; 0 until twp_tag_set */
};

/* One end of a flow: MAC, IPv4 and UDP port in network byte order. */
struct twp_ep {
	uint8_t mac[6];
	uint32_t ip;   /* network order */
	uint16_t port; /* network order */
};

/* Why a packet was refused. Values index tw_dpdk_stats.bad_by_reason. */
enum twp_err {
	TWP_OK = 0,
	TWP_E_SHORT,    /* shorter than the headers */
	TWP_E_ETH_DST,  /* not our MAC */
	TWP_E_ETH_TYPE, /* not IPv4 (VLAN tags included) */
	TWP_E_IP_VERSION,
	TWP_E_IP_IHL,   /* options (IHL != 5) */
	TWP_E_IP_LEN,   /* total length vs the frame */
	TWP_E_IP_FRAG,  /* MF set, fragment offset != 0, DF clear, or
			 * longer than mss allows (kernel-reassembled) */
	TWP_E_IP_PROTO, /* not UDP */
	TWP_E_IP_TTL,
	TWP_E_IP_CSUM,
	TWP_E_IP_DST, /* not our address */
	TWP_E_IP_SRC, /* multicast, broadcast, zero */
	TWP_E_UDP_LEN,
	TWP_E_UDP_CSUM,
	TWP_E_UDP_PORT, /* not one of our queues' ports */
	TWP_E_MAGIC,
	TWP_E_VERSION,
	TWP_E_TYPE,
	TWP_E_FLAGS,
	TWP_E_RESERVED,
	TWP_E_LEN,     /* len vs UDP length, or over mss */
	TWP_E_FIELDS,  /* a field the type must leave zero is not */
	TWP_E_FRAME,   /* frame_off + len > frame_len, ... */
	TWP_E_ETH_SRC, /* multicast source MAC */
	TWP_ERR_COUNT_
};

/* The setup block of CONNECT and ACCEPT (above). */
#define TWP_NONCE_LEN 16u
#define TWP_SETUP_MAC_LEN 32u
#define TWP_SETUP_LEN (TWP_NONCE_LEN + 4u + TWP_SETUP_MAC_LEN) /* 52 */
#define TWP_COOKIE_LEN 16u /* a COOKIE's nonce; after a CONNECT's block */
/* A CONNECT nonce's first 8 bytes: the connector's CONNECT counter
 * (docs/wire.md 8), little-endian. */
uint64_t twp_nonce_counter(const uint8_t nonce[TWP_NONCE_LEN]);
void twp_nonce_set_counter(uint8_t nonce[TWP_NONCE_LEN], uint64_t c);

struct twp_setup {
	uint8_t nonce[TWP_NONCE_LEN];
	uint32_t isn;
	uint8_t mac[TWP_SETUP_MAC_LEN];
};

void twp_setup_encode(uint8_t *dst, const struct twp_setup *s);
void twp_setup_decode(const uint8_t *src, struct twp_setup *s);

/* The mac of a CONNECT, ACCEPT or COOKIE h sent from src to dst carrying
 * s (its mac field is not read), keyed with key (key_len bytes, > 0).
 * peer_nonce: the CONNECT's nonce for an ACCEPT or a COOKIE, the cookie
 * for a CONNECT that carries one, NULL for one that does not. */
void twp_setup_mac(const void *key, size_t key_len, const struct twp_hdr *h,
		   const struct twp_ep *src, const struct twp_ep *dst,
		   const struct twp_setup *s, const uint8_t *peer_nonce,
		   uint8_t out[TWP_SETUP_MAC_LEN]);

/* Whether s->mac is that mac (compared in constant time). */
bool twp_setup_verify(const void *key, size_t key_len, const struct twp_hdr *h,
		      const struct twp_ep *src, const struct twp_ep *dst,
		      const struct twp_setup *s, const uint8_t *peer_nonce);

/* The keys of a tagged session (above): k_conn tags what the connector
 * sends, k_acc what the acceptor sends. secret: the group's (len > 0). */
void twp_session_keys(const void *secret, size_t secret_len, uint64_t conn_sess,
		      uint64_t acc_sess,
		      const uint8_t conn_nonce[TWP_NONCE_LEN],
		      const uint8_t acc_nonce[TWP_NONCE_LEN],
		      uint8_t k_conn[TWP_KEY_LEN], uint8_t k_acc[TWP_KEY_LEN]);

/* A direction's tag state: SipHash's key, and UMAC-64 keyed once per
 * session (its subkeys come from the key by AES, a few microseconds),
 * 2.5 KB. */
struct twp_mac {
	uint8_t sip[16];
	struct umac64_ctx u;
};
void twp_mac_init(struct twp_mac *m, const uint8_t key[TWP_KEY_LEN]);

/* The tag of the n bytes at th (a tensorwire header and its frame bytes,
 * n >= TWP_HDR_LEN), under m, with the header's pn as the nonce: a sender
 * never tags two packets with one pn. twp_tag_set writes it into the
 * header, twp_tag_ok says whether the header carries it (constant
 * time). */
uint64_t twp_tag(struct twp_mac *m, const uint8_t *th, size_t n);
void twp_tag_set(struct twp_mac *m, uint8_t *th, size_t n);
bool twp_tag_ok(struct twp_mac *m, const uint8_t *th, size_t n);

/* Name of a twp_err, for logs and test messages. */
const char *twp_err_name(enum twp_err e);

/* The receiver's view of itself. */
struct twp_local {
	uint8_t mac[6];
	uint32_t ip;        /* network order */
	uint16_t base_port; /* host order */
	uint16_t nports;    /* ports base .. base + nports - 1 are ours */
	uint32_t mss;       /* largest len accepted */
};

/* What a valid packet said. payload points into the packet. */
struct twp_pkt {
	struct twp_ep src;
	uint16_t dst_port; /* host order */
	uint16_t queue;    /* dst_port - base_port */
	struct twp_hdr h;
	const uint8_t *payload;
};

/*
 * Check every field of the len bytes at p against local: Ethernet (our
 * MAC, IPv4 type, unicast source), IPv4 (version, IHL 5, total length
 * within the frame (Ethernet padding may follow), no fragments (DF set,
 * no MF, offset 0, total length at most mss + TWP_OVERHEAD_L3), UDP, TTL,
 * our address, a sane source, header checksum unless ip_csum_ok), UDP
 * (length, one of our ports, checksum unless l4_csum_ok or 0), and the
 * tensorwire header (magic, version, type, flags, reserved, per-type
 * fields, len == UDP payload - header, len <= mss, frame bounds; CONNECT
 * and ACCEPT: len TWP_SETUP_LEN). The setup block's mac and the tag are
 * the transport's to verify (it holds the keys).
 */
enum twp_err twp_parse(const uint8_t *p, size_t len,
		       const struct twp_local *local, bool ip_csum_ok,
		       bool l4_csum_ok, struct twp_pkt *out);

/* Encode / decode the 70-byte tensorwire header (decode checks nothing;
 * a tagged packet's tag comes from twp_tag_set, once its bytes are in). */
void twp_hdr_encode(uint8_t *dst, const struct twp_hdr *h);
void twp_hdr_decode(const uint8_t *src, struct twp_hdr *h);

/*
 * Write Ethernet + IPv4 + UDP (42 bytes) at dst for a UDP payload of
 * udp_payload bytes from src to dst_ep. The IPv4 header checksum is
 * computed unless ip_csum_offload (then 0). The UDP checksum field is left
 * 0: finish it with twp_udp_csum_set, or leave it 0 (none), or put the
 * pseudo-header sum there for offload with twp_udp_phdr_set.
 */
void twp_l2l4_build(uint8_t *dst, const struct twp_ep *src,
		    const struct twp_ep *dst_ep, uint32_t udp_payload,
		    bool ip_csum_offload);

/* Internet checksum pieces: a 32-bit running sum over byte ranges that
 * may start at an odd offset of the covered data (odd = that offset is
 * odd), then folding. */
uint32_t twp_csum_add(uint32_t sum, const void *p, size_t len, bool odd);
uint16_t twp_csum_fold(uint32_t sum);

/* Set the UDP checksum of the packet at pkt (built by twp_l2l4_build)
 * given the sum of the UDP payload bytes (twp_csum_add from offset 0 of
 * the payload). */
void twp_udp_csum_set(uint8_t *pkt, uint32_t payload_sum);

/* For checksum offload: the pseudo-header sum, not inverted. */
void twp_udp_phdr_set(uint8_t *pkt);

/* Parse "udp://A.B.C.D:PORT[/aa:bb:cc:dd:ee:ff]" (port and IP in network
 * order); need_mac makes the MAC mandatory. has_mac says if one was there. */
int twp_addr_parse(const char *s, struct twp_ep *ep, bool need_mac,
		   bool *has_mac);
/* Format ep as "udp://A.B.C.D:PORT/aa:bb:cc:dd:ee:ff". Returns the length
 * snprintf would have written. */
int twp_addr_format(char *dst, size_t n, const struct twp_ep *ep);

#ifdef __cplusplus
}
#endif
#endif
