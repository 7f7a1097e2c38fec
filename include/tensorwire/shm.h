/* tensorwire same-host transport options: frames between processes on one
 * kernel through rings in shared memory, set up over a unix socket. Pass a
 * struct tw_shm_opts as tw_agent_opts.transport_opts to tune it. */
#ifndef TENSORWIRE_SHM_H
#define TENSORWIRE_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The transport's name in tw_agent_opts.transport. */
#define TW_TRANSPORT_SHM "shm"

/*
 * Every run loop listens on a unix socket (SOCK_SEQPACKET) in dir; its
 * address is "shm://" and the socket's absolute path
 * ("shm:///run/user/1000/tw-4242-0-5f3a9c01.sock"). A path is used, not
 * an abstract name, because abstract unix sockets belong to one network
 * namespace and same-host peers may live in others: a peer must see the
 * same directory (for containers, mount one into each). The socket file
 * is made with socket_mode before anyone can connect and removed when the
 * transport is destroyed.
 *
 * A connection starts on the socket itself: small frames, while the layer
 * above authenticates the peer. Once it has (tw_transport_trusted), the
 * connecting side creates a sealed memfd holding one ring per direction
 * and two eventfd doorbells and passes them over the socket; the other
 * side checks and maps it, and both switch to the rings without
 * reordering a frame. The socket stays open as the liveness channel: a
 * peer process that dies is noticed within milliseconds.
 *
 * 0 in a numeric field is not "the default": start from
 * tw_shm_opts_init, then change what you need.
 */
struct tw_shm_opts {
	size_t opts_size;            /* sizeof(struct tw_shm_opts) */
	const char *transport;       /* TW_TRANSPORT_SHM (set by init) */
	const char *dir;             /* directory of the listening sockets, an
				* absolute path every peer can reach
				* (default NULL: $XDG_RUNTIME_DIR when it
				* is set to an absolute path, else
				* /dev/shm) */
	uint32_t socket_mode;        /* permissions of the listening socket
				* (default 0600: processes of this user
				* only; 0 is refused) */
	uint32_t ring_size;          /* bytes of each direction's ring, per
				* connection: a power of 2 from 64 KiB to
				* 1 GiB (default 4 MiB). Frames larger
				* than the ring stream through it in
				* pieces. */
	uint32_t max_queued;         /* sends held per connection before
				* TW_ENOSPC (default 4096) */
	uint32_t rx_pool_buf_size;   /* receive pool buffer size: smaller
				    * frames share these (default 64 KiB) */
	uint32_t rx_pool_count;      /* receive pool buffers (default 128) */
	uint32_t large_frame;        /* frames above this land in their own
				    * buffer, 2 MiB aligned from 2 MiB on
				    * (default 256 KiB) */
	size_t large_cache_bytes;    /* big receive buffers kept for reuse
				    * once released (default 128 MiB) */
	uint64_t asm_worker_bytes;   /* bytes reserved for frames being
				    * assembled that do not fit a receive
				    * pool buffer, all loops together
				    * (default 4 GiB + 256 KiB). A header
				    * that would pass it waits, its ring
				    * unread, until room frees; one frame
				    * is always admitted when none is in
				    * assembly. */
	uint32_t stall_timeout_ms;   /* a partial frame that moves less than
				    * 64 KiB in this long closes its
				    * connection with TW_ETIMEDOUT (default
				    * 30000; 0 = never) */
	uint32_t max_conns;          /* accepted connections, all loops
				    * together; more are closed at once
				    * (default 2048) */
	uint32_t connect_timeout_ms; /* a connect that finds the listener's
				      * backlog full retries for this long
				      * (default 10000) */
	bool no_rings; /* never set up the rings: every frame stays on the
			* socket (default false; for tests and diagnosis) */
	uint64_t cma_threshold; /* send segments of a frame's body of this
				 * many bytes or more by cross-memory attach:
				 * the receiver copies them straight from the
				 * sender's memory into its buffer with
				 * process_vm_readv, one copy instead of two
				 * through the ring. Only where the receiver
				 * may read the sender (same user, or
				 * CAP_SYS_PTRACE; Yama's ptrace_scope >= 1 and
				 * other restrictions stop it), which each side
				 * checks once per connection, falling back to
				 * the ring. Default UINT64_MAX (never): on
				 * this project's VMs process_vm_readv copies
				 * at ~6 GB/s where memcpy does ~10.6, and the
				 * ring's two copies run on the two processes'
				 * cores at once, so a 64 MiB echo took 18-21 ms
				 * by CMA and 15-16 ms by the ring. CMA halves
				 * the CPU a byte costs: worth it where both
				 * sides' cores are busy (16 x 64 MiB echoes in
				 * flight: 2.7-5.2 GB/s each way by CMA, 1.6-5.9
				 * by the ring, noisy) or copies are cheap
				 * against the kernel's (256 KiB is a sane
				 * threshold then) */
};

/* Defaults into *o; opts_size is the caller's sizeof, so that a program
 * built against an older, shorter struct keeps working. */
void tw_shm_opts_init(struct tw_shm_opts *o, size_t opts_size);

#ifdef __cplusplus
}
#endif
#endif
