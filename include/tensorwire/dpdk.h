/* tensorwire DPDK transport options: kernel bypass on hosts with a NIC of
 * their own. Pass a struct tw_dpdk_opts as tw_agent_opts.transport_opts
 * (with transport = TW_TRANSPORT_DPDK) to run a worker over DPDK. */
#ifndef TENSORWIRE_DPDK_H
#define TENSORWIRE_DPDK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The transport's name in tw_agent_opts.transport. In a build without
 * DPDK, choosing it fails tw_agent_init with TW_ENOTSUP and a reason. */
#define TW_TRANSPORT_DPDK "dpdk"

/*
 * The agent brings up one DPDK port with one RX/TX queue pair per run
 * loop; loop i serves queue i at UDP port udp_base_port + i, and its
 * address "udp://IP:PORT/MAC" reaches the other workers through the
 * rendezvous (which stays TCP, as torch's TCPStore; so does the shutdown
 * barrier). Frames travel in UDP/IPv4 packets that tensorwire builds
 * itself, with its own reliability (sessions, credits, retransmission):
 * there is no ARP, so the workers must share an Ethernet segment (or be
 * vdevs wired to each other, as net_memif). README, "Deploying on a NIC
 * host", has the set-up.
 *
 * 0 in a numeric field is not "the default": start from
 * tw_dpdk_opts_init, then change what you need.
 */
struct tw_dpdk_opts {
	size_t opts_size;      /* sizeof(struct tw_dpdk_opts) */
	const char *transport; /* TW_TRANSPORT_DPDK (set by init) */

	/* The port. */
	const char *eal_args;      /* EAL arguments, split at white space
				    * (e.g. "-l 0 --no-huge -m 256 --no-pci
				    * --file-prefix=w1 --vdev=net_memif0,
				    * role=server,socket=x"). Used by the first
				    * DPDK user of the process only: the EAL
				    * starts once per process and cannot start
				    * again after tw_dpdk_eal_cleanup. NULL =
				    * the application called rte_eal_init
				    * itself. The thread calling tw_agent_init
				    * keeps its CPU affinity (the EAL would
				    * pin it to the main lcore). */
	const char *port;          /* PCI address ("0000:03:00.0") or vdev
				    * name ("net_memif0"); a vdev name with
				    * arguments is probed when no such port
				    * exists; NULL = the first port */
	const char *local_ip;      /* this worker's IPv4 address, in its
				    * packets and its address. Only the MAC
				    * steers packets, but on a shared segment
				    * it should be unique and in the NIC's
				    * subnet. NULL (default) = a private one
				    * from the rank: 10.A.B.C with
				    * A*65536 + B*256 + C = rank + 1 */
	uint16_t udp_base_port;    /* loop i serves base + i (default 31850) */
	uint16_t mtu;              /* IP MTU (default 1500, 576 .. 9000) */
	uint16_t rx_desc, tx_desc; /* descriptors per queue (default 1024) */
	uint32_t mbufs;            /* mbufs per queue pool (default 8191) */
	uint32_t mbuf_cache;       /* mempool cache (default 256) */
	uint32_t ext_mbufs;        /* data-less mbufs per queue for external
				    * buffers (default 4095) */
	uint32_t steer_ring;       /* software steering ring per queue
				    * (default 4096, power of 2) */
	bool no_offload;           /* ignore the port's checksum offloads */
	bool no_flow;              /* do not try rte_flow steering */

	/* Sessions. */
	uint32_t credits;          /* packets in flight per session (default
				    * 64, at most 1024); more helps large
				    * tensors on fast links, costs mbufs */
	uint32_t rx_window;        /* out-of-order packets held per session
				    * (0 = credits, at most 1024) */
	uint64_t rto_ns;           /* retransmission timeout (default 5 ms) */
	uint64_t dead_ns;          /* a session silent this long ends and
				    * its calls fail with TW_EUNREACHABLE
				    * (default 30 s, at least 4 rto_ns;
				    * keepalives every dead_ns / 4). A
				    * member that dies is learned from the
				    * rendezvous at once, not from this; a
				    * paused one resumes within it intact */
	uint64_t idle_wake_ns;     /* a sleeping loop polls the port at least
				    * this often (default 1 ms; 0 = never:
				    * loops must spin); see idle_wake_max_ns */
	uint32_t max_sessions;     /* per loop (default 1024, < 65536) */
	uint32_t max_queued;       /* sends held per session before
				    * TW_ENOSPC (default 4096) */
	uint64_t zc_threshold;     /* attach tensor segments of this many
				    * bytes or more as external buffers
				    * (default 16 KiB); UINT64_MAX = never */
	uint32_t rx_pool_buf_size; /* reassembly pool buffers (64 KiB) */
	uint32_t rx_pool_count;    /* (default 64) */
	uint32_t burst;            /* packets per rx/tx burst (default 32) */
	bool sw_udp_csum_off;      /* send UDP checksum 0 when not offloaded
				    * (saves a pass over the data; the
				    * receiver still checks nonzero ones) */
	bool no_pkt_tag;           /* with a group secret, every packet of a
				    * session carries a keyed tag (SipHash,
				    * UMAC-64 over long packets)
				    * checked before it is taken: a host on
				    * the segment cannot inject, replay or
				    * end a session. true = no tags, for
				    * fabrics the operator trusts: the
				    * session's set-up is still proven, its
				    * packets no longer are (README, "Trust
				    * model"); a session is tagged only if
				    * both ends want it */

	/* Bounds on what a peer's sessions can make a loop hold
	 * (docs/limits.md, "DPDK sessions"). */
	uint64_t asm_bytes;         /* bytes reserved, per worker (its loops
				    * together; per env), for frames
				    * being assembled from several packets
				    * (default 2 x (1 GiB + 64 KiB)); a frame
				    * that does not fit waits, unacked (its
				    * sender retransmits), until room frees.
				    * Memory behind a reservation is
				    * committed only as its bytes arrive */
	uint64_t asm_stall_ns;      /* a frame in assembly that moves less
				    * than 64 KiB in this long (a packet now
				    * and then is no progress) ends its session
				    * with TW_ETIMEDOUT, freeing its bytes
				    * (default 30 s) */
	uint32_t ooo_max;           /* out-of-order packets held, over all
				    * sessions of a loop (0 = a quarter of
				    * mbufs; below mbufs): past it they are
				    * dropped and come again, so sessions
				    * together leave receive buffers free */
	uint32_t rexmit_max;        /* retransmission timeouts in a row
				    * without the peer acknowledging
				    * anything before the session ends with
				    * TW_EUNREACHABLE and its sends fail
				    * (0 = twice dead_ns at the longest
				    * backoff: dead_ns / (4 rto_ns) + 3, so
				    * that a silent peer ends by dead_ns
				    * first; this catches one that sends
				    * keepalives but acks nothing) */
	uint64_t accept_timeout_ns; /* a session we accepted whose peer sends
				     * nothing after its CONNECT (a CONNECT
				     * replayed from the wire: the replayer
				     * has no key) ends after this long,
				     * ACCEPTs repeated meanwhile, instead of
				     * holding its slot for dead_ns (default
				     * 3 s, at least rto_ns) */

	/* Acknowledgements. */
	uint64_t ack_delay_ns; /* the packet that ends a small frame (a call,
				* a reply of up to 4 packets, and at most a
				* quarter of credits unacked) is acknowledged
				* by our next packet (the reply, the next
				* call) or after this long, whichever comes
				* first: one ACK packet fewer per call each
				* way (default 100 us;
				* 0 = acknowledge every packet at once; used
				* up to rto_ns / 4; a loop that sleeps may add
				* a timer tick, 1 ms). A sender of one-packet
				* frames with credits 1 waits this long
				* between frames: set 0 for that */

	/* Idle. */
	uint64_t idle_wake_max_ns; /* a loop whose port has seen nothing for
				    * 100 ms polls it ever less often while
				    * it sleeps, idle_wake_ns doubling up to
				    * this (default 4 ms): an idle worker
				    * stays well under 1% of a core. A call
				    * that reaches a loop asleep that long
				    * waits up to this for it; spin
				    * (tw_loop_opts.spin_ns) or set this to
				    * idle_wake_ns (no backoff) where that
				    * matters */
};

/* Defaults into *o; opts_size is the caller's sizeof, so that a program
 * built against an older, shorter struct keeps working. Available in
 * every build. */
void tw_dpdk_opts_init(struct tw_dpdk_opts *o, size_t opts_size);

/* At process end, once every DPDK agent of the process has shut down:
 * release the EAL (rte_eal_cleanup: its memory and hugepage files; DPDK
 * 22.11 leaves the run directory /var/run/dpdk/<file-prefix> behind). The
 * EAL cannot start again afterwards, so no DPDK agent can
 * start in this process after it. While a port is still up it does
 * nothing (and says so on stderr). A no-op when no agent started the EAL,
 * or in a build without DPDK. */
void tw_dpdk_eal_cleanup(void);

#ifdef __cplusplus
}
#endif
#endif
