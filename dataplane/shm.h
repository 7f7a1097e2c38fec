/* Same-host transport: frames between processes of one kernel through
 * rings in a shared mapping, set up over a unix socket. */
#ifndef TW_DATAPLANE_SHM_H
#define TW_DATAPLANE_SHM_H

#include <stdbool.h>

#include <tensorwire/shm.h>

#include "dataplane/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * How it moves bytes:
 *
 * Addresses are "shm://" and an absolute path of a unix socket
 * (SOCK_SEQPACKET). listen() on a path ending in '/' (a directory: what
 * the provider's listen_addr gives, from tw_shm_opts.dir) makes a socket
 * of its own in it, "tw-<pid>-<n>-<random>.sock" (unguessable, and apart
 * from processes of other pid namespaces sharing the directory), and
 * bound gets its address; on any other path it listens there, replacing
 * a stale socket file that nobody listens on. The file is bound, given
 * socket_mode, and only then listened on, so nobody connects through
 * looser permissions; destroy() removes it (if it is still ours). Paths
 * are at most 107 bytes.
 *
 * Set-up (shm_sock.c for the socket, shm_map.c for the mapping):
 *
 *   connect()      a plain non-blocking connect (a full backlog is
 *                  retried for connect_timeout_ms); sends may be queued
 *                  at once; on_conn(c, TW_OK) follows from the poller.
 *                  A path with no listener refuses at once.
 *   untrusted      frames travel over the socket itself, as DATA
 *                  messages of at most 32 KiB of the frame stream; a
 *                  message carrying file descriptors ends the
 *                  connection (TW_EPROTO): none is accepted (the kernel
 *                  discards them) until the layer above trusts c.
 *   trusted        (ops->trusted, from the layer above once its
 *                  handshake proved the peer) the accepting side sends
 *                  READY (the largest ring it maps); the connecting
 *                  side, trusted and READY, creates a memfd of
 *                  shm_map_size(ring) bytes (min of both sides'
 *                  ring_size), seals it (F_SEAL_SHRINK | F_SEAL_GROW |
 *                  F_SEAL_SEAL), maps it and two eventfds, and sends
 *                  SETUP with the three descriptors. The accepting side
 *                  maps it only after checking, before any access, that
 *                  the descriptor is a memfd on tmpfs with those seals
 *                  and neither write seal, of exactly that size, and
 *                  that both doorbells are eventfds: a peer cannot make
 *                  it take SIGBUS by shrinking the file afterwards. A
 *                  bad SETUP ends the connection (TW_EPROTO); a mapping
 *                  the kernel refuses (memory) is answered NORING and
 *                  both sides stay on the socket.
 *   the switch     the accepting side answers SWITCH and writes every
 *                  byte after it to its ring; the connecting side, on
 *                  reading it, sends its own SWITCH and does the same.
 *                  A receiver reads the socket up to the peer's SWITCH,
 *                  then the ring: the stream of frames is cut at a byte,
 *                  not a frame, and continues where it stopped, so
 *                  frames queued meanwhile keep their order, even one
 *                  half sent on the socket. Anything on the socket
 *                  after a SWITCH is a protocol error. SWITCH carries
 *                  the sender's address of the mapping, for CMA below.
 *
 * Rings (shm_ring.h has the layout): per connection one mapping, two
 * single-producer single-consumer byte rings (ring_size each), head and
 * tail on lines of their own. The producer copies as much of its send
 * queue as fits into one DATA record and publishes it; a request is done
 * (TW_OK) once its last byte is in the ring. The consumer copies frames
 * out into receive buffers as the rx path of a stream transport does
 * (small frames into shared pool buffers, large ones into buffers of
 * their own), handing room back as it copies, so a frame of any size up
 * to the limit passes through a ring of any size. Memory for a frame
 * above a pool buffer is reserved (asm_worker_bytes) when its header is
 * read, as io_uring does; a header that does not fit waits, the ring
 * unread.
 *
 * Large tensors (CMA, off by default: tw_shm_opts.cma_threshold says
 * when it pays): a segment of a frame's body of cma_threshold bytes or
 * more is not copied into the ring: a CMA record names its
 * address and length, and the receiver reads it with process_vm_readv
 * straight into the frame it assembles (1 MiB per call, one call per
 * pass), then moves its head past the record; the sender's request is
 * done only then (it waits in sconn.wq, in order with those behind it).
 * A receiver announces it takes CMA records (cma_ok in its consumer
 * line) only after reading the peer's mapping at the address its SWITCH
 * named and finding the random bytes the connecting side wrote there:
 * permission (same user or CAP_SYS_PTRACE, no Yama or LSM refusal) and
 * the right process (SO_PEERCRED's pid, seen from our pid namespace).
 * Otherwise the ring carries everything (cma_denied). A frame's header
 * always travels in the ring (the receiver reads it before it places
 * the frame); a CMA record outside a frame's body, past its end or at
 * memory the peer lacks ends the connection (TW_EPROTO).
 *
 * Hostile peers: the consumer reads the producer's tail once per pass,
 * and refuses a tail behind its head, more than ring_size ahead, or not
 * a multiple of 8; a record header without the magic, of an unknown
 * type, longer than the ring or than what was published; frame headers
 * as every transport does. A pass takes at most RX_PASS_BYTES and
 * RX_PASS_RECORDS from a ring, so one connection cannot hold the loop.
 * The producer refuses a head ahead of its tail or more than ring_size
 * behind. Any violation ends that connection with TW_EPROTO (why names
 * it, proto_errors counts it); the rest go on. A partial frame that
 * stops moving ends by stall_timeout_ms. Nothing ever loops on a count
 * the peer wrote without a bound of ours.
 *
 * Waking: run loops poll the rings while awake. Before a loop sleeps
 * (the poller's idle hook) each connection's consumer sets
 * cons_sleeping in its inbound ring, and a producer waiting for room
 * sets prod_waiting in its outbound one; then, after a full fence, both
 * look once more and kick the loop awake (a NOP on its io_uring) if
 * bytes or room came meanwhile. A producer, after publishing and a full
 * fence, rings the peer's eventfd only if cons_sleeping was set (and
 * clears it, so a sleep costs one ring); a consumer handing room back
 * does the same with prod_waiting. The store and fence on one side and
 * the fence and load on the other are the two halves of Dekker's
 * pattern: either the sleeper sees the bytes or the producer sees the
 * flag. Every doorbell is a multishot POLL_ADD on the loop's io_uring,
 * so an idle worker sleeps in the kernel, costing nothing. Writes to the
 * peer's doorbell go through io_uring (one in flight per connection): a
 * peer sharing the eventfd could clear O_NONBLOCK and fill its counter,
 * which would block a write(2), never the loop.
 *
 * Liveness: the socket stays open, watched by a multishot poll: its hang
 * up (the peer closed, or its process died) ends the connection at once,
 * after the bytes already in the ring are delivered (unless c is paused:
 * then at once): every request not done gets done(TW_EUNREACHABLE), then
 * on_conn(c, TW_EUNREACHABLE) with a why. A CMA read that finds the
 * peer's process gone does the same.
 *
 * Backpressure and the rest of the seam: send() only queues; at most
 * max_queued requests wait per connection (TW_ENOSPC beyond). pause()
 * stops reading c: its ring fills, the producer waits for room, its
 * queue fills and its sends get TW_ENOSPC. close_after_send,
 * on_refused and rx_max as transport.h says. close() and destroy() end
 * every request with done(st) before on_conn(c, st), which comes from
 * the poller, never from inside close(); destroy() runs the loop's ring
 * until the kernel has finished with every operation of the transport.
 * set_local changes nothing: every peer is local. Socket messages land
 * in one buffer of the transport's; a connection keeps only what it
 * could not take while held.
 */

/* Options: struct tw_shm_opts and tw_shm_opts_init, in the public
 * <tensorwire/shm.h>. Check them: TW_EINVAL with the reason (tw_errmsg)
 * for the first bad field; no side effects. */
tw_status tw_shm_opts_check(const struct tw_shm_opts *o);

/* in, or the defaults for what an older caller's shorter struct lacks
 * (in == NULL: all defaults), into *o (o->dir still the caller's). */
void tw_shm_opts_get(const struct tw_shm_opts *in, struct tw_shm_opts *o);

/* The directory sockets go in when opts say none: $XDG_RUNTIME_DIR when
 * absolute, else /dev/shm. */
const char *tw_shm_default_dir(void);

/* What the transports of one worker share: the counters behind
 * asm_worker_bytes and max_conns. Destroy it after every transport
 * using it. */
struct tw_shm_shared;
struct tw_shm_shared *tw_shm_shared_create(void);
void tw_shm_shared_destroy(struct tw_shm_shared *sh);

/* A transport on loop l (polled by the calling thread from now on),
 * counting its limits in sh (NULL: its own). */
tw_status tw_shm_transport_create(tw_loop *l, const struct tw_shm_opts *o,
				  const struct tw_transport_cbs *cbs,
				  struct tw_shm_shared *sh, tw_transport **out);

struct tw_shm_stats {
	uint64_t frames_rx, frames_tx, bytes_rx, bytes_tx;
	/* Of those, frames received and bytes sent over the socket (before
	 * the switch, or on a connection without rings). */
	uint64_t sock_frames_rx, sock_bytes_tx;
	uint64_t conns_accepted, conns_connected, conns_closed;
	uint64_t conns_refused;   /* accepted beyond max_conns, closed */
	uint64_t accept_errors;   /* accepts failed for want of fds/memory */
	uint64_t rings_up;        /* connections switched to rings */
	uint64_t ring_refusals;   /* SETUPs answered NORING (ours or the
				  * peer's), or that could not be made */
	uint64_t ring_records;    /* DATA records written (ring copies) */
	uint64_t ring_full_waits; /* flushes that stopped for want of room */
	uint64_t doorbells;       /* peer doorbells rung (eventfd writes) */
	uint64_t wakeups;         /* our doorbells that rang */
	uint64_t kicks;           /* sleeps cut short: bytes or room came
				  * between the flags and the sleep */
	uint64_t proto_errors;    /* connections ended for breaking the
				  * protocol: rings, records, socket
				  * messages, set-up */
	uint64_t bad_frames;      /* ... frame headers among them */
	uint64_t frames_refused;  /* intact headers refused (version, size) */
	uint64_t frames_skipped;  /* ... of them skipped, the stream in sync */
	uint64_t asm_waits;       /* headers that waited for room */
	uint64_t stalls;          /* connections closed for a stalled frame */
	uint64_t pauses;      /* pause(c, true) on a connection not paused */
	uint64_t lingers_cut; /* close_after_send ended by its deadline */
	uint64_t peer_gone;   /* connections whose socket hung up */
	/* Cross-memory attach (tw_shm_opts.cma_threshold). */
	uint64_t cma_conns;  /* connections we read the peer's memory on */
	uint64_t cma_denied; /* ... where the probe could not: the ring */
	uint64_t cma_sends;  /* CMA records we wrote */
	uint64_t cma_reads;  /* process_vm_readv calls that read bytes */
	uint64_t cma_bytes;  /* bytes received that way */
};
void tw_shm_get_stats(const tw_transport *t, struct tw_shm_stats *s);

#ifdef __cplusplus
}
#endif
#endif
