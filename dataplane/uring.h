/* io_uring TCP transport: the default transport, runs on any Linux box. */
#ifndef TW_DATAPLANE_URING_H
#define TW_DATAPLANE_URING_H

#include <stdbool.h>

#include <tensorwire/uring.h>

#include "dataplane/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * How it moves bytes:
 *
 * Addresses are "tcp://host:port" with host an IPv4 literal or "localhost";
 * port 0 listens on an ephemeral port (listen's bound gets the real one).
 * Every socket has TCP_NODELAY. connect() returns at once and connects with
 * IORING_OP_CONNECT; sends queue meanwhile; on_conn(c, TW_OK) reports the
 * connection (or on_conn(c, TW_EUNREACHABLE) its failure). Listeners accept
 * with one multishot accept each.
 *
 * Receiving: one multishot recv per connection into a provided-buffer ring
 * shared by the transport (recv_buf_count buffers of recv_buf_size). Frames
 * up to large_frame bytes are copied out at once into pooled, pre-faulted
 * buffers (rx_pool_count x rx_pool_buf_size; consecutive small frames share
 * a buffer, each at a 64-byte aligned offset; a heap buffer when the pool is
 * empty or the frame does not fit), so provided buffers go straight back to
 * the kernel. A frame above large_frame lands once in its own 64-byte
 * aligned buffer (2 MiB aligned and MADV_HUGEPAGE from 2 MiB on): the
 * multishot recv is cancelled, plain recvs read the rest into place (each
 * takes what has arrived: with MSG_WAITALL the kernel would hand a recv it
 * must wait for again to an io-wq thread), then the multishot recv is
 * re-armed. Released big buffers are kept
 * (large_cache_bytes) so the next large frame lands in memory that is
 * already faulted in rather than pay the kernel's zeroing again. Every header is checked with
 * tw_frame_hdr_decode against t->limits; a bad one closes the connection
 * with the decoder's status (TW_EPROTO, or TW_EVERSION for a newer wire
 * version) and counts bad_frames; an intact header of a newer version or
 * over the limits goes to on_refused first ("Refused headers" below). on_frame may retain buf; buffers must be
 * back before destroy, or the receive pool is leaked rather than unmapped
 * from under them.
 *
 * Sending and backpressure: send() only queues (it never blocks and never
 * calls done itself). A connection holds at most max_queued requests whose
 * done has not run yet, counting queued, in-flight and zero-copy requests
 * awaiting their notification; beyond that send() returns TW_ENOSPC and does
 * not take r. The caller keeps r and retries after some done has run (the
 * RPC layer reports it to its user as backpressure). A poller flushes each
 * connection that has queued bytes and no send in flight as ONE sendmsg
 * whose iovecs concatenate as many queued requests as fit (IOV_MAX iovecs,
 * 1 GiB); partial sends resume where they stopped. A batch of at most
 * 4 KiB in several pieces (a small frame's header, pad and small tensor,
 * or a few small frames) is copied into one per-connection buffer first;
 * a contiguous batch of at most 64 KiB is tried with a plain
 * send(MSG_DONTWAIT) at once, its requests done on success (the kernel
 * copies small sends inline either way; this spares the SQE, the CQE and
 * the completion's trip), the io_uring send taking over whatever the
 * socket had no room for. A request with an iovec
 * segment of zc_threshold bytes or more goes out with SENDMSG_ZC (batched
 * only with other such requests) and its done runs after the kernel's
 * notification; when a notification reports that the kernel copied anyway
 * (always so over loopback), the connection switches to plain sendmsg for
 * good (zc_copied counts such notifications). Connections within this host
 * (a loopback peer, or our own address) never try SEND_ZC unless
 * zc_same_host asks for it. (uring_tx.c: tx_pick makes this choice per
 * batch; every way a batch goes ends in tx_complete.)
 *
 * Busy polling: on loopback a recv(MSG_DONTWAIT) spin answers a small
 * message 10-20% sooner than an io_uring recv can (limits README: TCP spin
 * 6.4-7.9 us round trips against 7.2-9.4 us for the best io_uring
 * ping-pong), because the io_uring path adds a poll wake-up in the
 * sender's softirq, task_work, an io_uring_enter and a CQE to every
 * arrival. So up to busy_poll_conns recently active connections (bytes
 * in or out within busy_poll_ns) are read by every poll of the loop with
 * a plain recv(MSG_DONTWAIT) into a scratch buffer, fed through the same
 * reassembler, and their multishot recv is cancelled meanwhile (left
 * armed, its wake-up and task_work would still run on every arrival, and
 * it would win the race for the bytes a third of the time). A connection
 * idle for busy_poll_ns, and every one when the loop is about to sleep
 * (its idle hook), gets its multishot recv back: it is what wakes a
 * sleeping loop. The two never reorder bytes: with DEFER_TASKRUN the
 * kernel reads for io_uring only inside this thread's io_uring_enter, and
 * a direct read runs only when the completion queue holds nothing
 * unreaped. A large frame's rest still lands in place by its own recv.
 * Only on DEFER_TASKRUN|TASKRUN_FLAG rings (the loop's first choice).
 * Which reader a connection has at a time (multishot, its cancel under
 * way, a large frame's plain recv, direct reads) is its receive mode:
 * enum rx_mode in uring_impl.h, changed in one place (uring_rx.c).
 *
 * Closing: when the peer closes or resets, or a send fails, every request
 * not done yet gets done(r, TW_EUNREACHABLE) exactly once (requests the
 * kernel may still read only when it has let go of them), then on_conn(c,
 * TW_EUNREACHABLE). close() does the same with TW_ESHUTDOWN; on_conn always
 * comes later, from the loop, never from inside close(). Connections are
 * freed after on_conn. destroy() closes everything (on_conn(c, TW_ESHUTDOWN)
 * for each connection still open, done for every send), runs the loop's
 * ring itself until the kernel has finished with every request of this
 * transport (completions of other users are dispatched to them as the loop
 * would), then unregisters the provided buffers and frees all. So call it
 * on the loop thread but outside io_uring completion callbacks (this
 * transport's upcalls included): between tw_loop_poll_once calls, or from a
 * loop message, poller or timer.
 *
 * Congestion control: connections within this host (as for SEND_ZC above)
 * use cc_local, "reno" by default, whatever the system's default is. On
 * loopback there is no network to share, only the receiver's window, and
 * a pacing algorithm costs: with this image's default, BBR (lo has no fq
 * qdisc, so TCP paces itself with timers), a raw 1 MiB io_uring ping-pong
 * takes 565 us against 211 us under reno, a raw 64 MiB stream 3.5-4.0
 * GB/s against 5.0-6.9, and a 64 MiB echo fell into a ~1.9 GB/s mode in
 * most runs (perf/RESULTS.md). Connections to other hosts keep the
 * system's choice unless cc_remote names one. The name is set once the
 * connection is open (connected or accepted); a kernel refusal (module
 * not loaded, not in net.ipv4.tcp_allowed_congestion_control for an
 * unprivileged process) leaves the connection on the system's algorithm
 * and counts in cc_failed. reno is built into every kernel and always
 * allowed.
 *
 * Limits (what a peer can make a worker hold; options in uring.h):
 * memory for a frame is committed only as its bytes arrive (a pool
 * buffer, or a lazily faulted mapping for a large one). Frames above a
 * receive pool buffer reserve their total_len against asm_worker_bytes
 * (all loops of a provider) and asm_host_bytes (their peer host) when
 * the header arrives; a header that would pass either waits, its
 * connection unread (bytes already read beyond it are kept, at most a
 * few receive buffers), until room frees: never dropped, counted in
 * asm_waits. A frame is always admitted when nothing is in assembly.
 * Smaller frames share the connection's pool buffer (one at a time).
 * A partial frame without progress for stall_timeout_ms ends its
 * connection (TW_ETIMEDOUT, stalls), checked by one timer per transport
 * every quarter of it. Accepted connections beyond max_conns_per_host
 * from one host or max_conns in all are closed at once (conns_refused).
 * An accept that fails for want of fds or memory (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM) pauses accepting on that listener 10 ms, doubling to
 * 1 s while it keeps failing (accept_errors, accept_backoffs). Every
 * socket has SO_KEEPALIVE and, unless user_timeout_ms is 0,
 * TCP_USER_TIMEOUT = user_timeout_ms, TCP_KEEPIDLE = half of it,
 * TCP_KEEPINTVL = a sixth, TCP_KEEPCNT = 3.
 *
 * Refused headers (transport.h, on_refused): a header of another
 * version, or one over t->limits or c->rx_max that is otherwise intact,
 * goes to on_refused; a skipped frame's bytes are read and dropped. A
 * connection that must end after it (close_after_send) stops reading at
 * once and closes when its send queue is empty, or after
 * TW_CLOSE_AFTER_SEND_NS (lingers_cut).
 *
 * Pausing (transport.h, pause): a paused connection's multishot recv is
 * cancelled, busy polling skips it, and no reader is armed again until
 * it is resumed: its socket fills and TCP stops the peer. Frames in the
 * bytes already read (one receive buffer, or a direct read's) are still
 * delivered.
 *
 * Not done (yet): fixed files and a registered send buffer table; IPv6.
 */

/* Options: struct tw_uring_opts and tw_uring_opts_init, in the public
 * <tensorwire/uring.h>. Check them: TW_EINVAL with the reason (tw_errmsg)
 * for the first bad field; no side effects. */
tw_status tw_uring_opts_check(const struct tw_uring_opts *o);

/* in, or the defaults for what an older caller's shorter struct lacks
 * (in == NULL: all defaults), into *o. */
void tw_uring_opts_get(const struct tw_uring_opts *in, struct tw_uring_opts *o);

/* A transport on loop l (which must be polled by the calling thread from
 * now on: the ring is bound to it). Its limits per worker and per peer
 * host (asm_*_bytes, max_conns*) count its own connections only. */
tw_status tw_uring_transport_create(tw_loop *l, const struct tw_uring_opts *o,
				    const struct tw_transport_cbs *cbs,
				    tw_transport **out);

/* What the transports of one worker (the provider's loops) share: the
 * counters behind asm_worker_bytes, asm_host_bytes, max_conns and
 * max_conns_per_host (atomics; a table of 2048 peer hosts with
 * connections open, an entry freed with its host's last connection;
 * past that the rest share one entry). Destroy it after every transport using it. */
struct tw_uring_shared;
struct tw_uring_shared *tw_uring_shared_create(void);
void tw_uring_shared_destroy(struct tw_uring_shared *sh);
/* tw_uring_transport_create, counting in sh (NULL: its own). */
tw_status tw_uring_transport_create_in(tw_loop *l,
				       const struct tw_uring_opts *o,
				       const struct tw_transport_cbs *cbs,
				       struct tw_uring_shared *sh,
				       tw_transport **out);

struct tw_uring_stats {
	uint64_t frames_rx, frames_tx, bytes_rx, bytes_tx;
	uint64_t sendmsg_calls, zc_sends, zc_copied, bad_frames, conns_closed;
	/* sendmsg_calls counts every send operation, zc_sends those of them
	 * that were SENDMSG_ZC; zc_notifs the notifications received. */
	uint64_t zc_notifs;
	uint64_t recv_cqes;        /* multishot recv completions with data */
	uint64_t recv_rearms;      /* multishot recv (re)armed */
	uint64_t recv_nobufs;      /* provided buffers ran out (-ENOBUFS) */
	uint64_t large_frames;     /* frames received into their own buffer */
	uint64_t large_recvs;      /* plain recv operations for them */
	uint64_t large_cache_hits; /* of their buffers, reused from the cache */
	uint64_t conns_accepted, conns_connected;
	uint64_t connect_timeouts; /* connects failed at connect_timeout_ms */
	uint64_t busy_recvs;       /* direct recvs that returned bytes */
	uint64_t busy_frames;      /* frames completed by them */
	uint64_t direct_sends;     /* of sendmsg_calls, plain send()s at once */
	uint64_t busy_starts;   /* multishot recvs stopped for busy polling */
	uint64_t cc_set;        /* connections given cc_local / cc_remote */
	uint64_t cc_failed;     /* ... that the kernel refused */
	uint64_t rto_max_unset; /* sockets whose rto_max_ms the kernel
				 * refused (before Linux 6.15) */
	/* Hardening (uring.h, "Limits"). */
	uint64_t pauses;         /* pause(c, true) on a connection not paused */
	uint64_t asm_waits;      /* headers that waited for room to assemble */
	uint64_t stalls;         /* connections closed for a stalled frame */
	uint64_t frames_refused; /* intact headers refused (version, size) */
	uint64_t frames_skipped; /* ... of them skipped, the stream in sync */
	uint64_t conns_refused;  /* accepted connections closed at once:
				  * max_conns_per_host or max_conns */
	uint64_t accept_errors;  /* accepts failed for want of fds or memory */
	uint64_t accept_backoffs; /* ... after which accepting paused */
	uint64_t lingers_cut;     /* close_after_send ended by its deadline */
};
void tw_uring_get_stats(const tw_transport *t, struct tw_uring_stats *s);

#ifdef __cplusplus
}
#endif
#endif
