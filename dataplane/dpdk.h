/* DPDK ethdev transport: frames over Ethernet/IPv4/UDP with eRPC-style
 * reliability (sessions, credits, go-back-N retransmission). */
#ifndef TW_DATAPLANE_DPDK_H
#define TW_DATAPLANE_DPDK_H

#include <stdbool.h>
#include <stdint.h>

#include <tensorwire/dpdk.h>

#include "dataplane/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Layout. One tw_dpdk_env per process and port: it initialises the EAL
 * (once per process), configures the port with one RX/TX queue pair per
 * run loop, creates the mempools and starts the port. Each run loop then
 * creates one transport on its own queue pair. A transport is used only on
 * its loop's thread; its poller calls rte_eth_rx_burst / rte_eth_tx_burst
 * and never blocks.
 *
 * Addresses are "udp://IP:PORT/MAC" (MAC as aa:bb:cc:dd:ee:ff). Queue q
 * of a port owns UDP port udp_base_port + q, so the port number of a
 * destination selects the run loop that serves it. Peers learn each
 * other's MAC, IP and port from the rendezvous: there is no ARP. listen()
 * takes "udp://IP:PORT" with IP the port's local_ip (or 0.0.0.0) and PORT
 * this queue's port (or 0); bound gets the full address, MAC included.
 * connect() needs the MAC.
 *
 * Steering. A packet that lands on the wrong queue (RSS spreads flows by
 * hash; memif delivers on the queue index the sender used; af_packet
 * fans out by hash) is handed to the owning queue through a per-queue
 * multi-producer ring (software steering). Ports that accept rte_flow
 * rules "UDP dst port = base + q -> queue q" get them at env init, and
 * then steering is done by the NIC.
 *
 * Packets (dataplane/dpdk_pkt.h has the byte layout): Ethernet, IPv4
 * (IHL 5, DF, never fragmented), UDP, then a 70-byte tensorwire packet
 * header and up to mss bytes of one frame. mss = mtu - 20 - 8 - 70 (1402
 * for the default 1500). IPv4 and UDP checksums are offloaded when the
 * port offers it and computed in software otherwise; on receive, every
 * field is checked (dpdk_pkt.c) and a bad packet is dropped and counted.
 *
 * Reliability, after eRPC, at the frame level (this layer knows no RPC
 * meaning):
 * - A session is set up by a CONNECT / ACCEPT exchange that carries both
 *   session numbers (random), each side's mss (the smaller one is used)
 *   and a setup block: each side's random first packet number and nonce,
 *   and a mac keyed with the group's secret over both endpoints, both
 *   session numbers and the nonces (dpdk_pkt.h). With a secret, a setup
 *   that does not verify is dropped; with admission (the agent's: the
 *   members' endpoints from the rendezvous, ops->admit), so is a CONNECT
 *   from anyone else. Neither gets an answer.
 * - Each direction of a session numbers its packets (u32, serial
 *   arithmetic) and its frames. A frame larger than mss is split into
 *   ceil(len / mss) packets, each carrying its frame number, offset and
 *   the frame's total length.
 * - credits bounds the packets in flight (sent, not acked) per session.
 * - Every packet carries a cumulative ack (the next packet number the
 *   sender of the ack expects): data going the other way acknowledges
 *   for free; otherwise one ACK packet per session per loop iteration in
 *   which data arrived. Except for the packet that ends a small frame
 *   (a call, a reply) with at most DACK_PKTS (4; a quarter of credits
 *   if less) packets unacked, the frame's earlier packets in the same
 *   burst included: its ack waits up to
 *   ack_delay_ns (100 us) for a packet of ours to carry it (the reply,
 *   the caller's next call), so a call and its reply cost two packets,
 *   not four (and, tagged, two tags to make and two to check fewer).
 * - The receiver accepts packets strictly in order; a packet up to the
 *   receive window ahead is held (no copy) until the gap fills, and the
 *   first one past a gap makes it send a NAK (an ACK with the NAK flag)
 *   once per gap. Anything older than the next expected packet is a
 *   duplicate or stale and is dropped (then acked again).
 * - On a NAK the sender resends the first missing packet only (fast
 *   retransmit, once per hole): the receiver holds what followed it and
 *   acknowledges past all of it when the hole fills. When the session's
 *   retransmission timer (rto_ns, on the loop's timer wheel; doubling up
 *   to 8x while nothing progresses) fires, it goes back to the oldest
 *   unacked packet and sends everything again from there (go-back-N, as
 *   eRPC). Packets are rebuilt from the frame's iovecs: nothing is copied
 *   to be kept for retransmission.
 * - A frame is delivered exactly once and in order; the send request's
 *   done runs only when every packet of the frame has been acked (and
 *   every external buffer the NIC held has been released, below).
 * - An idle session sends a keepalive (an ACK asking for an ACK) every
 *   dead_ns / 4; a session that has heard nothing valid from its peer for
 *   dead_ns is declared dead: pending sends get done(TW_EUNREACHABLE), then
 *   on_conn(c, TW_EUNREACHABLE). A RESET from the peer (sent on close, on
 *   a protocol error, or, without a secret, in answer to a packet for a
 *   session it does not know: a restarted peer) ends the session the
 *   same way. With a secret nothing is ever sent in answer to a packet
 *   for an unknown session (it would be an oracle for session numbers).
 * - A session's packets are taken only from its peer's MAC, IP and UDP
 *   port (addr_drops otherwise).
 * - Per-packet tags (issue 18): with a secret, unless no_pkt_tag, a
 *   session is tagged (both ends must ask, in CONNECT and ACCEPT). Every
 *   packet after the set-up carries a tag (SipHash-2-4 up to 256 bytes,
 *   UMAC-64 above) under a key of the
 *   session and direction (from the secret and both nonces) and a packet
 *   number (the tag's nonce); a packet whose tag does not verify (tag_drops) or whose
 *   number was seen (replay_drops) is dropped unanswered before it
 *   touches the session: a stranger can neither inject, end, nor keep
 *   alive a session, even seeing all of its traffic.
 *
 * How this maps to eRPC's request/response scheme: eRPC keeps a response in
 * its session slot until the client's next request on that slot
 * acknowledges it, and a retransmitted request carrying an already-seen
 * request number gets the stored response instead of a second execution.
 * Here the same guarantee comes one layer down: a CALL frame is delivered
 * to the RPC layer at most once whatever the retransmissions (duplicates
 * are dropped by packet number), the RET frame travels back as an
 * ordinary frame that the callee's transport keeps (the bytes, via the
 * send request the RPC layer does not complete) and retransmits until the
 * caller acknowledges it, and only then does done free it. The response's
 * packets piggyback the acknowledgement of the request. Request ids stay
 * the RPC layer's business (matching responses, timeouts); a dead session
 * fails every call pending on it with TW_EUNREACHABLE.
 *
 * Zero copy. Sending: an iovec segment of zc_threshold bytes or more is
 * attached to mbufs as an external buffer (rte_pktmbuf_attach_extbuf)
 * instead of being copied; each frame has one rte_mbuf_ext_shared_info
 * whose refcount holds one reference for the transport plus one per mbuf
 * the PMD has not freed yet, and done runs only when the frame is acked
 * and that count has dropped to zero. Needs a port that takes multi-segment
 * packets and the EAL in IOVA-as-VA mode (or memory the NIC can read:
 * tw_dpdk_mem_register); otherwise segments are copied. Do not use memif's
 * zero-copy=yes mode with it: memif zero-copy reads only its own regions.
 * Receiving: a frame that fits in one packet is handed up in place (its
 * tw_buf wraps the mbuf, which goes back to the pool when the last
 * reference is released, from any thread), unless the layer above already
 * holds half of the queue's receive mbufs: then it is copied, so that a
 * consumer that keeps frames cannot starve the queue (and with it the
 * acks that would let its own sends complete). A multi-packet frame is
 * copied once, packet by packet, into its final 64-byte aligned buffer
 * (pooled up to rx_pool_buf_size, else its own mapping, 2 MiB aligned
 * with THP advice from 2 MiB on). Packets we build come from a separate
 * transmit pool for the same reason.
 *
 * Idle loops. DPDK gives no wakeup: a loop that sleeps when idle would not
 * see packets until its next timer. The transport keeps a timer armed
 * every idle_wake_ns (default 1 ms) so that such a loop polls the port at
 * least that often; once the port has been quiet for 100 ms the period
 * doubles at each empty wake up to idle_wake_max_ns (default 4 ms), so an
 * idle worker costs under 1% of a core (the wakes are its CPU; a wake
 * that finds nothing does not restart the loop's spin). Loops on dedicated
 * cores should spin (spin_ns = UINT64_MAX).
 *
 * net_af_xdp. The PMD makes a queue's receive pool the XDP socket's UMEM,
 * sized as objects x object size from the first object, so that pool is
 * created densely packed (no page-boundary gaps, which --no-huge pools
 * otherwise have: objects past the UMEM end were refused by the kernel
 * and stalled the socket's transmit ring). The socket's UMEM descriptor,
 * which the 22.11 PMD leaves open on close, is closed by
 * tw_dpdk_env_destroy so that a later port can bind the same queue. veth
 * offers it one queue pair.
 *
 * Not done (yet): IPv6, VLANs, jumbo frames spanning mbufs on receive,
 * congestion control (eRPC's Timely), NIC timestamps, rx interrupts.
 */

typedef struct tw_dpdk_env tw_dpdk_env;

/* Options: struct tw_dpdk_opts and tw_dpdk_opts_init, in the public
 * <tensorwire/dpdk.h>. A field left at 0 by an older caller's shorter
 * struct takes its default (tw_dpdk_opts_get). */
void tw_dpdk_opts_get(const struct tw_dpdk_opts *in, struct tw_dpdk_opts *o);

/* Check o for a port with nqueues queue pairs: TW_EINVAL with the reason
 * (tw_errmsg) for the first bad field. No side effects. */
tw_status tw_dpdk_opts_check(const struct tw_dpdk_opts *o, uint32_t nqueues);

/* Initialise the EAL (first call in the process) and the port, with
 * nqueues queue pairs (one per run loop), and start it. TW_ENOTSUP when
 * the EAL or the port cannot be brought up (no port, too few queues);
 * tw_errmsg(st) then says what failed. */
tw_status tw_dpdk_env_init(const struct tw_dpdk_opts *o, uint16_t nqueues,
			   tw_dpdk_env **out);

/* Stop and close the port, free its pools. Every transport must be
 * destroyed and every received buffer released first (TW_EBUSY
 * otherwise, and nothing is freed). */
tw_status tw_dpdk_env_destroy(tw_dpdk_env *env);

/* tw_dpdk_eal_cleanup (public, <tensorwire/dpdk.h>) is rte_eal_cleanup
 * once every env is gone. While an env is still up it does nothing (and
 * says so on stderr): rte_eal_cleanup closes every port, and a run loop
 * still polling one would call into a closed device. */

/* The port's address and facts, for rendezvous and tests. */
struct tw_dpdk_port_info {
	uint16_t port_id, nqueues;
	uint8_t mac[6];
	char driver[32];
	bool tx_ip_csum, tx_udp_csum, rx_ip_csum, rx_udp_csum;
	bool multi_seg; /* chains on transmit: zero-copy possible */
	bool iova_va;
	bool flow_steering; /* rte_flow rules installed */
	uint16_t mss;       /* frame bytes per packet */
};
void tw_dpdk_env_info(const tw_dpdk_env *env, struct tw_dpdk_port_info *i);

/* Make [base, base + len) readable by the NIC (rte_extmem_register and a
 * DMA map on the port's device), for zero-copy from that memory on real
 * NICs in IOVA-as-PA setups. Optional with vdevs. */
tw_status tw_dpdk_mem_register(tw_dpdk_env *env, void *base, size_t len);

/* A transport on queue pair `queue` of env (TW_EBUSY if it has one), run
 * by loop l: create, use and destroy it on l's thread only. destroy fails
 * every session (TW_ESHUTDOWN), flushes and waits (up to 2 s) for the NIC
 * to release external buffers, so call it between iterations, as
 * uring's. */
tw_status tw_dpdk_transport_create(tw_loop *l, tw_dpdk_env *env, uint16_t queue,
				   const struct tw_dpdk_opts *o,
				   const struct tw_transport_cbs *cbs,
				   tw_transport **out);

/*
 * Who may open a session with t (the provider calls it after create, with
 * the agent's group's secret): secret (len bytes, copied; 0 = none) keys
 * the mac of the setup block in CONNECT and ACCEPT (dpdk_pkt.h). With a
 * secret, a CONNECT or ACCEPT without a verified block is dropped
 * silently (counted: auth_drops). admit_only: a CONNECT is taken only
 * from an endpoint (MAC, IP and UDP port all matching) that ops->admit
 * gave, none before its first call; any other is dropped silently
 * (admit_drops), and packets from such endpoints for sessions we do not
 * know get no RESET either. A CONNECT dropped while the list is not
 * installed yet is sent again by the peer's session timer (rto_ns,
 * backing off to 8x) until its dead_ns. Without this call: no secret,
 * every CONNECT taken (until ops->admit is called). Loop thread.
 */
tw_status tw_dpdk_transport_secure(tw_transport *t, const void *secret,
				   size_t len, bool admit_only);

/* Bad-packet reasons (dpdk_pkt.h's twp_err), counted separately. */
#define TW_DPDK_BAD_REASONS 32

struct tw_dpdk_stats {
	uint64_t frames_tx, frames_rx, bytes_tx, bytes_rx;
	uint64_t pkts_tx, pkts_rx; /* every packet of ours */
	uint64_t data_pkts_tx;     /* data packets, retransmits included */
	uint64_t retransmits;      /* data packets sent again */
	uint64_t rto_fires, fast_rexmits, naks_tx;
	uint64_t acks_tx, pings_tx, resets_tx, resets_rx;
	uint64_t dup_pkts;   /* data older than expected: dropped */
	uint64_t ooo_pkts;   /* ahead of expected: held */
	uint64_t ooo_drops;  /* ahead beyond the window: dropped */
	uint64_t bad_pkts;   /* failed validation */
	uint64_t bad_frames; /* frame header or packet sequence
			      * wrong: session ended (TW_EPROTO) */
	uint64_t bad_by_reason[TW_DPDK_BAD_REASONS];
	uint64_t foreign_pkts; /* valid, not for a session of ours */
	uint64_t steered_out, steered_in, steer_drops;
	uint64_t tx_full;           /* tx_burst took less than offered */
	uint64_t tx_nombuf;         /* no mbuf to build a packet */
	uint64_t zc_segs, zc_bytes; /* external buffers attached */
	uint64_t copied_bytes;      /* frame bytes copied into mbufs */
	uint64_t rx_inplace;        /* frames handed up in their mbuf */
	uint64_t rx_copied;         /* frames reassembled by copy */
	uint64_t sessions_opened, sessions_accepted, sessions_dead;
	uint64_t sessions_closed;
	uint64_t pauses;           /* pause(s, true) on a session not paused */
	uint64_t paused_drops;     /* data dropped unacked while paused */
	uint64_t admit_drops;      /* CONNECTs from endpoints not admitted */
	uint64_t auth_drops;       /* CONNECT/ACCEPTs whose setup block did
				* not verify (or had none) */
	uint64_t addr_drops;       /* a session's packets from another source
				* MAC, IP or UDP port than its peer's, and,
				* with a secret, RESETs not proven */
	uint64_t tag_drops;        /* a tagged session's packets whose tag did
				* not verify */
	uint64_t replay_drops;     /* ... whose tag did, but whose packet
				* number was taken already (or is 64 behind) */
	uint64_t asm_waits;        /* first packets of frames not taken: no
				* room under asm_bytes (they come again) */
	uint64_t asm_stalls;       /* sessions ended by a frame in assembly
				* moving less than 64 KiB in asm_stall_ns */
	uint64_t asm_reserved;     /* gauge: bytes reserved for frames in
				* assembly on this loop now (asm_bytes
				* bounds the worker's loops together) */
	uint64_t ooo_cap_drops;    /* out-of-order packets dropped: ooo_max
				 * held over all sessions */
	uint64_t ooo_held;         /* gauge: out-of-order packets held now */
	uint64_t sessions_unacked; /* ended: rexmit_max timeouts in a row
				    * with nothing acknowledged */
	uint64_t accept_timeouts;  /* accepted sessions ended: no packet
				    * from the peer after its CONNECT within
				    * accept_timeout_ns (a replayed CONNECT) */
	uint64_t unproven_evicted; /* ... ended early: 8 unproven sessions
				    * of its endpoint were there when another
				    * CONNECT of it came */
	uint64_t connect_replays;  /* CONNECTs refused, unanswered: a
				    * member's that verified, with a counter
				    * taken before (a replay) */
	uint64_t sessions_full;    /* sessions not made for want of a slot
				    * of max_sessions (or memory): a
				    * member's CONNECT that verified
				    * (answered with a RESET), or our own
				    * connect */
	uint64_t sessions_live;    /* gauge: sessions in the table now */
	uint64_t cookies_tx;       /* COOKIEs sent: a member's CONNECT that
				    * verified without a fresh cookie of
				    * ours (a first one, or a replay): no
				    * slot taken */
	uint64_t cookie_stale;     /* ... of which the cookie it carried was
				    * not ours or had aged */
	uint64_t cookies_rx;       /* COOKIEs taken by our connects */
};
void tw_dpdk_get_stats(const tw_transport *t, struct tw_dpdk_stats *s);

#ifdef __cplusplus
}
#endif
#endif
