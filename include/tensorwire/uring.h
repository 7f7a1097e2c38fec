/* tensorwire io_uring transport options: the default transport, TCP over
 * io_uring, which runs on any Linux box. Pass a struct tw_uring_opts as
 * tw_agent_opts.transport_opts to tune it. */
#ifndef TENSORWIRE_URING_H
#define TENSORWIRE_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The transport's name in tw_agent_opts.transport. */
#define TW_TRANSPORT_URING "uring"

/* Longest congestion control name + 1 (the kernel's TCP_CA_NAME_MAX). */
#define TW_URING_CC_NAME_MAX 16

/*
 * Every run loop owns one io_uring and serves on its own TCP port. Small
 * frames go out with a plain send(2) and busy connections are read with
 * recv(2) (cheaper than the ring on this kind of guest, see
 * docs/architecture.md); large frames, multishot receive and idle sleep
 * stay on io_uring. Tensor segments of zc_threshold bytes or more leave
 * with SEND_ZC to other hosts.
 *
 * Congestion control: connections within this host use cc_local, "reno"
 * by default, whatever the system's default is. On loopback there is no
 * network to share and a pacing algorithm such as BBR (this image's
 * default) only adds timer delays: a raw 1 MiB ping-pong takes 565 us
 * under BBR against 211 us under reno (perf/RESULTS.md). Connections to
 * other hosts keep the system's choice unless cc_remote names one. A name
 * must be available to this process (net.ipv4.tcp_allowed_congestion_control
 * unless privileged): tw_agent_init checks both and fails with a reason.
 *
 * 0 in a numeric field is not "the default": start from
 * tw_uring_opts_init, then change what you need.
 */
struct tw_uring_opts {
	size_t opts_size;          /* sizeof(struct tw_uring_opts) */
	const char *transport;     /* TW_TRANSPORT_URING (set by init) */
	const char *listen_host;   /* where to serve, which the other
				    * workers connect to: an IPv4 or IPv6
				    * address ("10.0.0.2", "fd00::2" or
				    * "[fd00::2]"), "0.0.0.0" / "::" for
				    * every interface (then the address
				    * announced is the one that reaches
				    * the rendezvous), an interface name
				    * ("eth1": its first IPv4 address,
				    * else its first global IPv6 one), or
				    * a host name, resolved by
				    * tw_agent_init, never on a run loop
				    * (a link-local IPv6 address is refused:
				    * its zone is this host's; default
				    * "127.0.0.1") */
	uint32_t recv_buf_size;    /* provided-buffer size (default 64 KiB) */
	uint32_t recv_buf_count;   /* provided buffers per loop (default 64,
				    * power of 2, at most 32768) */
	uint32_t max_queued;       /* sends held per connection before
				    * TW_ENOSPC (default 4096) */
	uint64_t zc_threshold;     /* SEND_ZC for segments >= this (default
				    * 16 KiB); UINT64_MAX disables */
	uint32_t large_frame;      /* frames above this are received straight
				    * into their own buffer (default 256 KiB) */
	int sockbuf;               /* SO_SNDBUF/SO_RCVBUF, 0 = kernel default */
	uint32_t rx_pool_buf_size; /* receive pool buffer size (default 64 KiB) */
	uint32_t rx_pool_count;    /* receive pool buffers (default 128) */
	size_t large_cache_bytes; /* big receive buffers (2 MiB and up) kept
				   * for reuse once released, at most 8 and
				   * this many bytes (default 128 MiB; 0 =
				   * always a fresh mapping) */
	bool zc_same_host;        /* try SEND_ZC on connections within this
				   * host too: loopback, and peers on this
				   * kernel in other network namespaces or
				   * containers (default false: over
				   * loopback and veth the kernel always
				   * copies, so it only costs; set it when
				   * such peers are reached through NICs of
				   * their own, e.g. SR-IOV VFs; tests set
				   * it to exercise the path) */
	uint32_t busy_poll_conns; /* connections read with a direct recv on
				   * every poll while active (default 4, at
				   * most 16; 0 = off) */
	uint64_t busy_poll_ns;    /* ... active = bytes in or out within
				   * this long (default 200 us) */
	const char *cc_local;     /* TCP congestion control of connections
				   * within this host (default "reno"; NULL
				   * or "" = the system's) */
	const char *cc_remote;    /* ... of connections to other hosts
				   * (default NULL: the system's) */
	/* Hardening: what a peer can make this worker hold (all of them
	 * checked by tw_agent_init, with a reason on refusal). */
	uint64_t asm_worker_bytes;   /* bytes reserved for frames being
				    * assembled that do not fit a receive
				    * pool buffer, all loops together
				    * (default 4 GiB + 256 KiB: four frames
				    * of the default 1 GiB + 64 KiB limit).
				    * Memory is committed only as bytes
				    * arrive; a header that would pass this
				    * waits (its connection unread) until
				    * room frees, counted in asm_waits.
				    * At least one frame is always admitted
				    * when none is in assembly, so a bound
				    * below the frame limit only serializes
				    * big frames. */
	uint64_t asm_host_bytes;     /* ... of them from one peer host
				    * (default 2 GiB + 128 KiB) */
	uint32_t stall_timeout_ms;   /* a partial frame that moves less
				    * than 64 KiB in this long (a byte now
				    * and then is no progress) closes its
				    * connection with TW_ETIMEDOUT
				    * (default 30000; 0 = never) */
	uint32_t max_conns_per_host; /* accepted connections from one
				      * peer host; more are closed at once
				      * (default 512: on loopback every
				      * worker of a same-host group is one
				      * host) */
	uint32_t max_conns;          /* ... from all hosts, all loops
				      * together (default 2048) */
	uint32_t user_timeout_ms;    /* TCP_USER_TIMEOUT: a vanished peer
				      * host fails a connection with data
				      * in flight within this long, an idle
				      * one by keepalive within about
				      * min(this, 30 s). Linux applies it to
				      * a zero window too: a connection the
				      * peer pauses (backpressure) longer
				      * than this fails, so keep it above
				      * the longest pause you accept
				      * (default 300000; 0 = the system's) */
	uint32_t connect_timeout_ms; /* a connection request unanswered
				      * this long fails (a SYN dropped on
				      * the way; the kernel alone retries
				      * for about 2 minutes), its calls
				      * with TW_EUNREACHABLE saying so
				      * (default 10000; 0 = the system's) */
	uint16_t listen_port;        /* run loop i serves TCP port listen_port +
			       * i, so that a firewall can open a known
			       * range (default 0: ports the kernel picks;
			       * the range must fit below 65536) */
	const char *advertise_host;  /* the address the other workers are
				      * told to connect to, when not the
				      * one served on (NAT, a wildcard on
				      * a host with several routes): as
				      * listen_host, but not a wildcard;
				      * the ports stay those served
				      * (default NULL: the served one) */
	uint32_t rto_max_ms;         /* TCP's retransmission backoff capped
				      * at this (TCP_RTO_MAX_MS, Linux 6.15
				      * and later; older kernels keep their
				      * 120 s, counted in rto_max_unset): a
				      * link that comes back carries the
				      * queued calls within about this long,
				      * however long it was down (default
				      * 1000, the kernel's least; 0 = the
				      * system's) */
};

/* Defaults into *o; opts_size is the caller's sizeof, so that a program
 * built against an older, shorter struct keeps working. */
void tw_uring_opts_init(struct tw_uring_opts *o, size_t opts_size);

#ifdef __cplusplus
}
#endif
#endif
