/* Internal to the io_uring transport: its objects and what its files
 * (uring.c: the transport, connections, listening, the poller; uring_rx.c:
 * receiving; uring_tx.c: sending) call of one another. */
#ifndef TW_DATAPLANE_URING_IMPL_H
#define TW_DATAPLANE_URING_IMPL_H

#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dataplane/buf_impl.h"
#include "dataplane/list.h"
#include "dataplane/stream_rx.h"
#include "dataplane/uring.h"
#include "dataplane/util.h"

/* liburing 2.3's headers predate the zero-copy usage report. */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

#define IOV_CAP 1024u                /* IOV_MAX on Linux */
#define BATCH_BYTES_MAX (1ull << 30) /* cqe->res is an int */
#define RECV_CHUNK_MAX (1u << 30)
#define HOT_MAX 16u /* busy-polled connections, at most */
/* Keepalive probing is derived from user_timeout_ms, capped at this. */
#define KEEPALIVE_MAX_MS 30000u

/* <linux/tcp.h> of Linux 6.15; Debian 12's headers predate it. */
#ifndef TCP_RTO_MAX_MS
#define TW_TCP_RTO_MAX_MS 44
#else
#define TW_TCP_RTO_MAX_MS TCP_RTO_MAX_MS
#endif
/* Batches up to this size go out as one contiguous copy (see tx_pick). */
#define GATHER_COPY_MAX 4096u
/* Contiguous sends up to this size try a direct send first. */
#define DIRECT_SEND_MAX (64u << 10)

struct ut;

/* The default frame limit (frame.h), which every assembly bound admits. */
#define URING_FRAME_DEFAULT_MAX ((UINT64_C(1) << 30) + (UINT64_C(64) << 10))
/* Accepting again after it failed for want of fds or memory. */
#define ACCEPT_BACKOFF_MIN_NS (10ull * 1000 * 1000)
#define ACCEPT_BACKOFF_MAX_NS (1000ull * 1000 * 1000)
/* Peer hosts with connections at once that get an entry of their own:
 * at least the default max_conns, so that a table full of one attacker's
 * addresses needs more connections than a worker admits. */
#define URING_HOSTS 2048u

/* One peer host's share of a worker's limits. host 0: a free entry.
 * refs (under tw_uring_shared.lock): connections pointing at it; the
 * entry is free again when the last one goes. */
struct uring_host {
	_Atomic uint64_t host;
	_Atomic uint64_t asm_bytes;
	_Atomic uint32_t conns;
	uint32_t refs;
};

struct tw_uring_shared {
	/* Taken only to find, claim or free a host entry (a connection
	 * made, accepted or freed), never per frame. */
	pthread_mutex_t lock;
	_Atomic uint64_t asm_bytes;
	_Atomic uint32_t conns;
	struct uring_host other; /* hosts not known, or past the table */
	struct uring_host hosts[URING_HOSTS];
};

/* One zero-copy send: its requests wait here for the notification. */
struct zc_op {
	struct tw_uring_req req; /* user_data of both of its CQEs */
	struct uconn *c;
	STAILQ_ENTRY(zc_op) link;  /* in c->zc */
	struct tw_send_queue reqs; /* the requests it finishes */
	bool result_seen;          /* the send CQE came */
	bool notified;             /* the notification came (or none will) */
};

enum { C_CONNECTING, C_OPEN };

/*
 * What reads a connection's socket: its receive mode (uring.h,
 * "Receiving" and "Busy polling"). It changes only through rx_to
 * (uring_rx.c), and rx_next picks the reader that follows one that
 * ended:
 *
 *   IDLE      -- open, or a reader ended ------------> rx_next's pick:
 *                                           MULTISHOT, INPLACE or DIRECT
 *   MULTISHOT -- busy polling takes c, or a large
 *                frame begins ----------------------> STOPPING
 *   MULTISHOT, STOPPING -- last CQE (no F_MORE) ----> IDLE
 *   INPLACE   -- its CQE ---------------------------> IDLE
 *   DIRECT    -- busy polling lets go of c ---------> rx_next's pick
 *   SQE_WAIT  -- the dirty list finds an SQE -------> rx_next's pick
 *   any       -- the connection closes -------------> CLOSED, for good
 *
 * Arming takes an SQE; without one the mode becomes SQE_WAIT. Busy
 * polling (c->hot) is not a mode: it is which connections the poller
 * reads directly while they are active, whatever io_uring still has
 * armed for them; rx_direct_ok says when such a read is safe.
 */
enum rx_mode {
	RX_IDLE,      /* nothing armed: not open yet, or a reader just ended */
	RX_MULTISHOT, /* the multishot recv into provided buffers is armed */
	RX_STOPPING,  /* ... and its cancel is asked for; its last CQE
		       * decides what follows */
	RX_INPLACE,   /* a plain recv of a large frame's rest, into place, is
		       * in flight */
	RX_DIRECT,    /* busy-polled with nothing armed: the poller reads */
	RX_SQE_WAIT,  /* a reader is due but the SQ was full: the dirty list
		       * retries */
	RX_CLOSED,    /* closing: what was armed is cancelled, nothing more
		       * will be (its CQEs still come, counted in ops) */
};
#define RX_MODES (RX_CLOSED + 1)

/* How a batch goes out (tx_pick in uring_tx.c chooses), and which kind
 * of send a connection has in flight (TX_NONE: none). */
enum tx_how {
	TX_NONE,
	TX_DIRECT,     /* send(2) MSG_DONTWAIT from the loop, at once: never
			* in flight */
	TX_SEND,       /* IORING_OP_SEND: one segment */
	TX_SENDMSG,    /* IORING_OP_SENDMSG: several */
	TX_SENDMSG_ZC, /* IORING_OP_SENDMSG_ZC: done after the kernel's
			* notification */
};
#define TX_HOWS (TX_SENDMSG_ZC + 1)

struct uconn {
	tw_conn base; /* first: tw_conn * converts both ways */
	struct ut *t;
	int fd;
	uint8_t state;
	uint8_t rx_mode; /* enum rx_mode */
	bool closing, fd_closed, reaped, dirty, copying;
	bool want_connect;
	bool connect_armed;
	uint8_t tx_busy; /* enum tx_how of the send in flight */
	uint8_t rx_hold; /* HOLD_* bits (stream_rx.h): no reader armed while
			  * any is set */
	bool counted;    /* accepted: counted in the shared conns */
	tw_status linger_st;
	struct uring_host *hs; /* its peer host's share of the limits */
	/* Bytes read past a header that waits for room (HOLD_ROOM). */
	unsigned char *stash;
	size_t stash_len, stash_cap;
	struct tw_timer linger_tm;
	struct tw_timer connect_tm; /* connect_timeout_ms */
	/* Busy polling (uring_rx.c). */
	bool hot;             /* in t->hot: busy-polled while active */
	short hot_rev;        /* poll(2) revents this pass */
	uint64_t last_active; /* loop clock of its last rx or tx */
	tw_status close_st;
	uint32_t ops;                   /* CQE-producing operations in flight,
					 * notifications excepted */
	TAILQ_ENTRY(uconn) link;        /* in t->conns */
	STAILQ_ENTRY(uconn) dirty_link; /* in t->dirty while dirty */
	STAILQ_ENTRY(uconn) reap_link;  /* in t->reap once reaped */

	/* Sending. sq holds requests with bytes left, in order; only the
	 * head can be partly sent (iov_idx_ + head_off). */
	struct tw_send_queue sq;
	uint32_t held;    /* requests whose done has not run */
	uint32_t batch_n; /* requests of sq in the send in flight */
	size_t head_off;
	struct iovec *iov;   /* IOV_CAP, for the send in flight */
	unsigned char *gbuf; /* GATHER_COPY_MAX: small batches, copied */
	struct msghdr msg;
	/* Zero-copy sends waiting for their notification, oldest first;
	 * while tx_busy is TX_SENDMSG_ZC the tail is the one in flight. */
	STAILQ_HEAD(, zc_op) zc;

	struct tw_uring_req recv_req, lrecv_req, send_req, connect_req,
		cancel_req;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	/* The layer above knows the peer runs on this host's kernel
	 * (tw_transport_set_local): same-host treatment whatever its
	 * address. */
	bool local;

	/* Reassembly (stream_rx.h). */
	struct rxs rx;
};

struct ulis {
	struct ut *t;
	int fd;
	bool armed, closing, want;
	uint32_t ops;
	struct tw_uring_req acc_req, cancel_req;
	SLIST_ENTRY(ulis) link; /* in t->lis */
	bool failing;           /* an accept failed for want of fds or memory */
	uint64_t backoff_ns;    /* current pause before accepting again */
	struct tw_timer backoff_tm;
};

struct ut {
	tw_transport base; /* first */
	struct tw_uring_opts o;
	struct io_uring *ring;
	struct tw_poller poller;
	bool poller_on, destroying;

	/* Provided buffers. */
	struct io_uring_buf_ring *br;
	size_t br_len;
	unsigned char *pb; /* recv_buf_count * recv_buf_size */
	size_t pb_len;
	int bgid;
	int br_mask;

	/* Reassembly's share: the receive pool, large frames' buffers
	 * (large_cache_bytes), the bounds, waiting for room, stalls. */
	struct rxs_env rxe;

	TAILQ_HEAD(, uconn) conns; /* every connection not yet freed */
	uint32_t nconns;
	/* Connections with work for the poller: c->dirty says whether c is
	 * on it (set and cleared with the insert and the removal). */
	STAILQ_HEAD(, uconn) dirty;
	/* Closed connections whose close upcall is due, oldest first; once
	 * on it c->reaped stays set until c is freed. */
	STAILQ_HEAD(, uconn) reap;
	SLIST_HEAD(, ulis) lis; /* newest first */
	bool lis_want;
	uint64_t next_id;
	struct tw_uring_stats st;
	/* Receive modes entered, by mode: for tests and debugging (how a
	 * connection got where it is), not part of the public stats. */
	uint32_t rx_enters[RX_MODES];
	/* Batches sent, by how they went (a direct send the socket had no
	 * room for counts as the io_uring send that followed): same use. */
	uint32_t tx_hows[TX_HOWS];

	/* Busy-polled connections (see urx_busy_poll) and where their direct
	 * reads land before the reassembler copies them out. */
	struct uconn *hot[HOT_MAX];
	uint32_t nhot;
	unsigned char *scratch; /* recv_buf_size bytes */

	/* Limits shared by the worker's transports (own_sh when alone). */
	struct tw_uring_shared *sh;
	bool own_sh;

	/* Congestion control by where the peer is ("" = the system's);
	 * copies of the options' strings. */
	char cc_local[TW_URING_CC_NAME_MAX], cc_remote[TW_URING_CC_NAME_MAX];
};

static inline struct ut *UT(tw_transport *t)
{
	return (struct ut *)(void *)t;
}

static inline struct io_uring_sqe *sqe_get(struct ut *t)
{
	return tw_loop_sqe(t->base.loop);
}

static inline void uconn_dirty(struct uconn *c)
{
	struct ut *t = c->t;
	if (c->dirty || c->reaped)
		return;
	c->dirty = true;
	STAILQ_INSERT_TAIL(&t->dirty, c, dirty_link);
}

/* What the files call of one another (internal: the shared library
 * exports only the public API, scripts/gen-exports.py). */
/* uring.c */
/* Start closing c with st (idempotent): what reads and sends is cancelled,
 * requests the kernel cannot be reading end now, the rest as their
 * operations complete; on_conn(c, st) once nothing is in flight. */
void uconn_fail(struct uconn *c, tw_status st);
/* A closing c's operation ended: close the socket, and queue c for its
 * close upcall, once nothing is in flight any more. */
void uconn_finalize(struct uconn *c);
/* Cancel c's operation whose user_data is user_data (its completion
 * still comes; the cancel's own is counted in c->ops). */
void uconn_cancel(struct uconn *c, void *user_data);

/* The share of host (tw_conn.peer_host) in sh's table, held until
 * uring_host_put: the entry a host already has, else a free one, else
 * (host unknown, or the table full) the shared `other`. */
struct uring_host *uring_host_get(struct tw_uring_shared *sh, uint64_t host);
void uring_host_put(struct tw_uring_shared *sh, struct uring_host *hs);

/* c's peer host is hs: its share of the limits, the assembly bytes its
 * frames reserve included. */
static inline void uconn_set_host(struct uconn *c, struct uring_host *hs)
{
	c->hs = hs;
	c->rx.host_bytes = &hs->asm_bytes;
}

/* uring_rx.c */
/* Stop or resume reading c for reason bit (HOLD_*). */
void urx_hold(struct uconn *c, uint8_t bit, bool on);
/* The receive side's memory: the reassembly's (the pool small frames are
 * copied into, the cache of large frames' buffers; t->rxe), the
 * provided-buffer ring, and the scratch buffer of direct reads when busy
 * polling is on. */
tw_status urx_setup(struct ut *t);
/* Free it. Unless clean (the kernel is done with every operation), the
 * provided buffers and the pool are leaked rather than freed from under
 * the kernel. */
void urx_teardown(struct ut *t, bool clean);
/* c is new: its reader and its reassembly (attached to t->rxe). */
void urx_conn_init(struct uconn *c);
/* c is open: start reading it. */
void urx_open(struct uconn *c);
/* The dirty list's turn: arm the reader that lacked an SQE. 1 if it did
 * anything. */
int urx_retry(struct uconn *c);
/* c is closing: cancel whatever reads it (rx_mode becomes CLOSED). */
void urx_close(struct uconn *c);
/* c is being freed: it leaves busy polling; its buffers are released. */
void urx_conn_free(struct uconn *c);
/* Let go of the frame being reassembled and the shared pool buffer. */
void urx_release(struct uconn *c);
/* c moved bytes (either way): keep or start busy-polling it. */
void urx_active(struct uconn *c);
/* The poller's direct reads; returns work done. */
int urx_busy_poll(struct ut *t);
/* The loop's idle hook: every busy-polled connection gets its own
 * io_uring reader back before the loop sleeps. */
void urx_idle(void *arg);

/* uring_tx.c */
void utx_conn_init(struct uconn *c);
/* The transport's send op: queue r on c. */
tw_status utx_send(tw_transport *tt, tw_conn *cc, struct tw_send_req *r);
/* Send what c has queued, unless a send is in flight. 1 if it did
 * anything. */
int utx_flush(struct uconn *c);
/* c is closing (uconn_fail): the requests the kernel cannot be reading
 * (all but the batch in flight) end now with st, the send in flight is
 * cancelled, and its completion ends the rest. */
void utx_close(struct uconn *c, tw_status st);
void utx_conn_free(struct uconn *c);

#endif
