/* io_uring TCP transport: owns its sockets, the provided-buffer ring its
 * receives land in, its receive pool, and every send queue. */
#include "dataplane/uring.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/buf_impl.h"
#include "dataplane/err.h"

/* liburing 2.3's headers predate the zero-copy usage report. */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

#define container_of(p, type, member)                                    \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

#define IOV_CAP 1024u                  /* IOV_MAX on Linux */
#define BATCH_BYTES_MAX (1ull << 30)   /* cqe->res is an int */
#define RECV_CHUNK_MAX (1u << 30)
#define DRAIN_NS (2ull * 1000 * 1000 * 1000)
#define HOT_MAX 16u                    /* busy-polled connections, at most */
/* Batches up to this size go out as one contiguous copy (see conn_flush). */
#define GATHER_COPY_MAX 4096u
/* Contiguous sends up to this size try a direct send first. */
#define DIRECT_SEND_MAX (64u << 10)

struct ut;

/* One zero-copy send: its requests wait here for the notification. */
struct zc_op {
	struct tw_uring_req req;   /* user_data of both of its CQEs */
	struct uconn *c;
	struct zc_op *next;
	struct tw_send_req *head, *tail;
	bool result_seen;          /* the send CQE came */
	bool notified;             /* the notification came (or none will) */
};

enum { C_CONNECTING, C_OPEN };

struct uconn {
	tw_conn base;              /* first: tw_conn * converts both ways */
	struct ut *t;
	int fd;
	uint8_t state;
	bool closing, fd_closed, reaped, dirty, copying;
	bool want_recv, want_connect;
	bool recv_armed;           /* multishot recv in flight */
	bool ms_cancel;            /* its cancel asked for (large frame) */
	bool lrecv_armed;          /* plain recv of a large frame in flight */
	short hot_rev;             /* busy_poll: poll(2) revents this pass */
	bool connect_armed;
	bool send_busy;            /* a send operation in flight */
	bool send_zc;              /* ... and it is zero-copy */
	bool hot;                  /* in t->hot: busy-polled while active */
	uint64_t last_active;      /* loop clock of its last rx or tx */
	tw_status close_st;
	uint32_t ops;              /* CQE-producing operations in flight,
				    * notifications excepted */
	struct uconn *prev, *next; /* t->conns */
	struct uconn *dnext;       /* t's dirty list */
	struct uconn *rnext;       /* t's reap list */

	/* Sending. sq holds requests with bytes left, in order; only the
	 * head can be partly sent (iov_idx_ + head_off). */
	struct tw_send_req *sq_head, *sq_tail;
	uint32_t held;             /* requests whose done has not run */
	uint32_t batch_n;          /* requests of sq in the send in flight */
	size_t head_off;
	struct iovec *iov;         /* IOV_CAP, for the send in flight */
	unsigned char *gbuf;       /* GATHER_COPY_MAX: small batches, copied */
	struct msghdr msg;
	struct zc_op *zc_head, *zc_tail, *zc_cur;

	struct tw_uring_req recv_req, lrecv_req, send_req, connect_req,
		cancel_req;
	struct sockaddr_in peer;

	/* Reassembly. cur is the current frame's buffer once its header is
	 * complete; pool_buf is the pool buffer small frames share. */
	struct {
		uint8_t hdr[TW_FRAME_HDR_SIZE];
		uint32_t hdr_have;
		tw_frame_hdr h;    /* hdr decoded, once it is complete */
		tw_buf *cur;
		size_t off;
		uint64_t need, have;
		bool large;
		tw_buf *pool_buf;
		size_t pool_off;
	} rx;
};

struct ulis {
	struct ut *t;
	int fd;
	bool armed, closing, want;
	uint32_t ops;
	struct tw_uring_req acc_req, cancel_req;
	struct ulis *next;
};

struct ut {
	tw_transport base;         /* first */
	struct tw_uring_opts o;
	struct io_uring *ring;
	struct tw_poller poller;
	bool poller_on, destroying;

	/* Provided buffers. */
	struct io_uring_buf_ring *br;
	size_t br_len;
	unsigned char *pb;         /* recv_buf_count * recv_buf_size */
	size_t pb_len;
	int bgid;
	int br_mask;

	tw_buf_pool *pool;
	tw_bigbuf_cache *bc;       /* large frames' buffers (large_cache_bytes) */

	struct uconn *conns;       /* every connection not yet freed */
	uint32_t nconns;
	struct uconn *dirty_head, *dirty_tail;
	struct uconn *reap_head, *reap_tail;
	struct ulis *lis;
	bool lis_want;
	uint64_t next_id;
	struct tw_uring_stats st;

	/* Busy-polled connections (see busy_poll) and where their direct
	 * reads land before the reassembler copies them out. */
	struct uconn *hot[HOT_MAX];
	uint32_t nhot;
	unsigned char *scratch;    /* recv_buf_size bytes */

	/* Congestion control by where the peer is ("" = the system's);
	 * copies of the options' strings. */
	char cc_local[TW_URING_CC_NAME_MAX], cc_remote[TW_URING_CC_NAME_MAX];
};

static const struct tw_transport_ops uring_ops;

static inline struct ut *UT(tw_transport *t)
{
	return (struct ut *)(void *)t;
}

static inline size_t align64(size_t v)
{
	return (v + TW_FRAME_SEG_ALIGN - 1) & ~(size_t)(TW_FRAME_SEG_ALIGN - 1);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* Options                                                             */

void tw_uring_opts_init(struct tw_uring_opts *o, size_t opts_size)
{
	if (o == NULL || opts_size < sizeof(o->opts_size))
		return;
	struct tw_uring_opts d = {
		.opts_size = opts_size,
		.transport = TW_TRANSPORT_URING,
		.listen_host = "127.0.0.1",
		.recv_buf_size = 64u << 10,
		.recv_buf_count = 64,
		.max_queued = 4096,
		.zc_threshold = 16u << 10,
		.large_frame = 256u << 10,
		.sockbuf = 0,
		.rx_pool_buf_size = 64u << 10,
		.rx_pool_count = 128,
		.large_cache_bytes = 128u << 20,
		.busy_poll_conns = 4,
		.busy_poll_ns = 200u * 1000,
		.cc_local = "reno",
		.cc_remote = NULL,
	};
	memcpy(o, &d, opts_size < sizeof(d) ? opts_size : sizeof(d));
}

/* Callers built against a shorter struct keep working: fields are
 * copied whole or not at all, the struct only grows at its end. */
void tw_uring_opts_get(const struct tw_uring_opts *in, struct tw_uring_opts *o)
{
	tw_uring_opts_init(o, sizeof(*o));
	if (in == NULL)
		return;
	size_t n = in->opts_size < sizeof(*o) ? in->opts_size : sizeof(*o);
	size_t keep = sizeof(o->opts_size);
	memcpy((char *)o + keep, (const char *)in + keep,
	       n > keep ? n - keep : 0);
	o->opts_size = sizeof(*o);
}

tw_status tw_uring_opts_check(const struct tw_uring_opts *in)
{
	tw_status st = tw_transport_opts_check_head(in, TW_TRANSPORT_URING,
						    "tw_uring_opts_init");
	if (st != TW_OK)
		return st;
	struct tw_uring_opts o;
	tw_uring_opts_get(in, &o);
	uint32_t n = o.recv_buf_count;
	if (n == 0 || n > 32768 || (n & (n - 1)) != 0)
		return tw_fail(TW_EINVAL, "io_uring: recv_buf_count %u is not a "
					  "power of 2 in 1..32768", n);
	if (o.recv_buf_size == 0)
		return tw_fail(TW_EINVAL, "io_uring: recv_buf_size must be > 0");
	if (o.max_queued == 0)
		return tw_fail(TW_EINVAL, "io_uring: max_queued must be > 0");
	if (o.rx_pool_buf_size < TW_FRAME_HDR_SIZE || o.rx_pool_count == 0)
		return tw_fail(TW_EINVAL, "io_uring: rx_pool_buf_size must be at "
					  "least %u and rx_pool_count > 0",
			       TW_FRAME_HDR_SIZE);
	if (o.busy_poll_conns > HOT_MAX)
		return tw_fail(TW_EINVAL, "io_uring: busy_poll_conns %u is above %u",
			       o.busy_poll_conns, HOT_MAX);
	if ((o.cc_local && strlen(o.cc_local) >= TW_URING_CC_NAME_MAX) ||
	    (o.cc_remote && strlen(o.cc_remote) >= TW_URING_CC_NAME_MAX))
		return tw_fail(TW_EINVAL, "io_uring: a congestion control name "
					  "is longer than %d bytes",
			       TW_URING_CC_NAME_MAX - 1);
	return TW_OK;
}

/* ------------------------------------------------------------------ */
/* Addresses and sockets                                               */

static tw_status parse_addr(const char *addr, struct sockaddr_in *sa)
{
	static const char pfx[] = "tcp://";
	if (addr == NULL || strncmp(addr, pfx, sizeof(pfx) - 1) != 0)
		return TW_EINVAL;
	const char *h = addr + sizeof(pfx) - 1;
	const char *colon = strrchr(h, ':');
	if (colon == NULL || colon == h)
		return TW_EINVAL;
	size_t hl = (size_t)(colon - h);
	char host[64];
	if (hl >= sizeof(host))
		return TW_EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	const char *p = colon + 1;
	if (*p == '\0')
		return TW_EINVAL;
	unsigned long port = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return TW_EINVAL;
		port = port * 10 + (unsigned long)(*p - '0');
		if (port > 65535)
			return TW_EINVAL;
	}
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (strcmp(host, "localhost") == 0)
		sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return TW_EINVAL;
	return TW_OK;
}

static void sock_setup(struct ut *t, int fd)
{
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (t->o.sockbuf > 0) {
		int b = t->o.sockbuf;
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &b, sizeof(b));
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &b, sizeof(b));
	}
}

/* An open connection gets its congestion control by where its peer is
 * (uring.h, "Congestion control"). A refusal leaves it on the system's,
 * which still works. */
static void cc_setup(struct ut *t, int fd, bool local)
{
	const char *cc = local ? t->cc_local : t->cc_remote;
	if (cc[0] == '\0')
		return;
	if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc,
		       (socklen_t)strlen(cc)) == 0)
		t->st.cc_set++;
	else
		t->st.cc_failed++;
}

/* Whether fd's peer is on this host (loopback, or our own address):
 * then the kernel always copies zero-copy sends (limits README, pitfall
 * 5), so trying SEND_ZC first only costs the first big send its speed. */
static bool same_host(int fd, const struct sockaddr_in *peer)
{
	struct sockaddr_in p, me;
	socklen_t pl = sizeof(p), ml = sizeof(me);
	if (peer == NULL) {
		if (getpeername(fd, (struct sockaddr *)&p, &pl) != 0 ||
		    p.sin_family != AF_INET)
			return false;
		peer = &p;
	}
	if ((ntohl(peer->sin_addr.s_addr) >> 24) == 127)
		return true;
	return getsockname(fd, (struct sockaddr *)&me, &ml) == 0 &&
	       me.sin_family == AF_INET &&
	       me.sin_addr.s_addr == peer->sin_addr.s_addr;
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

static struct io_uring_sqe *sqe_get(struct ut *t)
{
	return tw_loop_sqe(t->base.loop);
}

static void mark_dirty(struct uconn *c)
{
	struct ut *t = c->t;
	if (c->dirty || c->reaped)
		return;
	c->dirty = true;
	c->dnext = NULL;
	if (t->dirty_tail)
		t->dirty_tail->dnext = c;
	else
		t->dirty_head = c;
	t->dirty_tail = c;
}

static void req_done(struct uconn *c, struct tw_send_req *r, tw_status st)
{
	c->held--;
	if (st == TW_OK)
		c->t->st.frames_tx++;
	r->next_ = NULL;
	r->done(r, st);
}

/* Run done(st) for a detached list (done may free r: read next first). */
static void done_list(struct uconn *c, struct tw_send_req *r, tw_status st)
{
	while (r) {
		struct tw_send_req *n = r->next_;
		req_done(c, r, st);
		r = n;
	}
}

static bool req_zc(const struct ut *t, const struct tw_send_req *r)
{
	for (uint32_t i = 0; i < r->niov; i++)
		if ((uint64_t)r->iov[i].iov_len >= t->o.zc_threshold)
			return true;
	return false;
}

static void cancel_op(struct uconn *c, void *user_data)
{
	struct io_uring_sqe *sqe = sqe_get(c->t);
	if (sqe == NULL)
		return; /* shutdown() already ends it */
	io_uring_prep_cancel(sqe, user_data, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data(sqe, &c->cancel_req);
	c->ops++;
}

static void rx_release(struct uconn *c)
{
	tw_buf_release(c->rx.cur);
	c->rx.cur = NULL;
	tw_buf_release(c->rx.pool_buf);
	c->rx.pool_buf = NULL;
}

static void cancel_op(struct uconn *c, void *user_data);

/* c moved bytes: keep (or start) busy-polling it, and stop its multishot
 * recv meanwhile (uring.h, "Busy polling"). */
static void conn_active(struct uconn *c)
{
	struct ut *t = c->t;
	c->last_active = tw_loop_now(t->base.loop);
	if (!c->hot) {
		if (t->nhot >= t->o.busy_poll_conns || t->scratch == NULL)
			return;
		c->hot = true;
		c->hot_rev = POLLIN; /* read at once, polled from the next pass */
		t->hot[t->nhot++] = c;
	}
	if (c->recv_armed && !c->ms_cancel && !c->closing) {
		c->ms_cancel = true;
		cancel_op(c, &c->recv_req);
		t->st.busy_starts++;
	}
}

static void hot_drop(struct ut *t, uint32_t i)
{
	t->hot[i]->hot = false;
	t->hot[i] = t->hot[--t->nhot];
}

/* ------------------------------------------------------------------ */
/* Closing                                                             */

static void maybe_finalize(struct uconn *c)
{
	if (!c->closing || c->ops != 0)
		return;
	if (!c->fd_closed) {
		c->fd_closed = true;
		if (c->fd >= 0) {
			if (c->zc_head) {
				/* Pages may still sit in the send queue of a
				 * peer that never acks: reset so the kernel
				 * lets go of them (and notifies). */
				struct linger lg = { .l_onoff = 1, .l_linger = 0 };
				(void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER,
						 &lg, sizeof(lg));
			}
			close(c->fd);
			c->fd = -1;
		}
	}
	if (c->zc_head || c->reaped)
		return;
	struct ut *t = c->t;
	c->reaped = true;
	c->rnext = NULL;
	if (t->reap_tail)
		t->reap_tail->rnext = c;
	else
		t->reap_head = c;
	t->reap_tail = c;
}

/* Start closing c with st (idempotent). Requests the kernel cannot be
 * reading fail now; the rest when their operation completes. */
static void conn_fail(struct uconn *c, tw_status st)
{
	if (c->closing)
		return;
	c->closing = true;
	c->close_st = st;
	c->want_recv = false;
	c->want_connect = false;

	struct tw_send_req *fail = NULL;
	if (c->send_busy) {
		/* Keep the batch in flight; detach what follows it. */
		struct tw_send_req *r = c->sq_head;
		for (uint32_t i = 1; r && i < c->batch_n; i++)
			r = r->next_;
		if (r) {
			fail = r->next_;
			r->next_ = NULL;
			c->sq_tail = r;
		}
	} else {
		fail = c->sq_head;
		c->sq_head = c->sq_tail = NULL;
	}

	if (c->fd >= 0)
		(void)shutdown(c->fd, SHUT_RDWR);
	if (c->recv_armed)
		cancel_op(c, &c->recv_req);
	if (c->lrecv_armed)
		cancel_op(c, &c->lrecv_req);
	if (c->connect_armed)
		cancel_op(c, &c->connect_req);
	if (c->send_busy)
		cancel_op(c, c->send_zc ? (void *)&c->zc_cur->req
					: (void *)&c->send_req);

	done_list(c, fail, st);
	maybe_finalize(c);
}

/* ------------------------------------------------------------------ */
/* Receiving                                                           */

static void on_recv(struct tw_uring_req *ur, struct io_uring_cqe *cqe);
static void on_lrecv(struct tw_uring_req *ur, struct io_uring_cqe *cqe);

static void arm_recv(struct uconn *c)
{
	struct ut *t = c->t;
	if (c->hot) {
		/* Busy-polled: busy_poll reads it until it cools down. */
		c->want_recv = false;
		return;
	}
	if (c->closing || c->recv_armed || c->lrecv_armed)
		return;
	struct io_uring_sqe *sqe = sqe_get(t);
	if (sqe == NULL) {
		c->want_recv = true;
		mark_dirty(c);
		return;
	}
	c->want_recv = false;
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = (uint16_t)t->bgid;
	io_uring_sqe_set_data(sqe, &c->recv_req);
	c->recv_armed = true;
	c->ms_cancel = false;
	c->ops++;
	t->st.recv_rearms++;
}

static void arm_lrecv(struct uconn *c)
{
	struct ut *t = c->t;
	if (c->closing)
		return;
	struct io_uring_sqe *sqe = sqe_get(t);
	if (sqe == NULL) {
		c->want_recv = true;
		mark_dirty(c);
		return;
	}
	c->want_recv = false;
	uint64_t left = c->rx.need - c->rx.have;
	unsigned len = left > RECV_CHUNK_MAX ? RECV_CHUNK_MAX : (unsigned)left;
	/* No MSG_WAITALL: a request the kernel has polled once and must
	 * wait for again is handed to an io-wq worker, which then blocks in
	 * recv on a third thread (on 2 cores beside two spinning loops, it
	 * takes turns with one of them). Without it every recv takes what
	 * has arrived and completes; on_lrecv asks for the rest. */
	io_uring_prep_recv(sqe, c->fd,
			   (unsigned char *)c->rx.cur->data + c->rx.off +
				   c->rx.have,
			   len, 0);
	io_uring_sqe_set_data(sqe, &c->lrecv_req);
	c->lrecv_armed = true;
	c->ops++;
	t->st.large_recvs++;
}

/* The header is complete: check it and pick where the frame lands. */
static bool rx_start(struct uconn *c)
{
	struct ut *t = c->t;
	tw_frame_hdr h;
	tw_status st = tw_frame_hdr_decode(c->rx.hdr, &t->base.limits, &h, NULL);
	c->rx.h = h;
	if (st != TW_OK) {
		t->st.bad_frames++;
		conn_fail(c, st == TW_EVERSION ? TW_EVERSION : TW_EPROTO);
		return false;
	}
	uint64_t need = h.total_len;
	tw_buf *b = NULL;
	size_t off = 0;
	bool large = need > t->o.large_frame;
	if (large) {
		bool hit = false;
		st = tw_bigbuf_alloc(t->bc, (size_t)need, &b, &hit);
		t->st.large_cache_hits += hit;
	} else if (need <= tw_buf_pool_buf_size(t->pool)) {
		/* Every frame carved from the shared buffer so far has been
		 * let go (ours is the only reference left): start it over,
		 * where the cache is still warm, instead of marching the
		 * copy through cold lines. Acquire: pairs with the releases
		 * (acq_rel) of the frames' last users, whose reads of the
		 * bytes must come before we overwrite them. A ping-pong
		 * reuses the same 1-2 KiB every round trip this way. */
		if (c->rx.pool_buf && c->rx.pool_off != 0 &&
		    atomic_load_explicit(&c->rx.pool_buf->refcnt,
					 memory_order_acquire) == 1)
			c->rx.pool_off = 0;
		if (c->rx.pool_buf &&
		    align64(c->rx.pool_off) + need <= c->rx.pool_buf->size) {
			b = c->rx.pool_buf;
			off = align64(c->rx.pool_off);
		} else {
			tw_buf_release(c->rx.pool_buf);
			c->rx.pool_off = 0;
			c->rx.pool_buf = tw_buf_pool_get(t->pool);
			b = c->rx.pool_buf;
		}
		if (b == NULL)
			st = tw_buf_alloc((size_t)need, &b);
		else
			tw_buf_retain(b); /* cur's own reference */
	} else {
		st = tw_buf_alloc((size_t)need, &b);
	}
	if (st != TW_OK || b == NULL) {
		conn_fail(c, st == TW_OK ? TW_ENOMEM : st);
		return false;
	}
	memcpy((unsigned char *)b->data + off, c->rx.hdr, TW_FRAME_HDR_SIZE);
	c->rx.cur = b;
	c->rx.off = off;
	c->rx.need = need;
	c->rx.have = TW_FRAME_HDR_SIZE;
	c->rx.large = large;
	if (large)
		t->st.large_frames++;
	return true;
}

static void rx_deliver(struct uconn *c)
{
	struct ut *t = c->t;
	tw_buf *b = c->rx.cur;
	size_t off = c->rx.off, len = (size_t)c->rx.need;
	c->rx.cur = NULL;
	c->rx.hdr_have = 0;
	c->rx.large = false;
	if (b == c->rx.pool_buf)
		c->rx.pool_off = off + len;
	t->st.frames_rx++;
	t->st.bytes_rx += len;
	t->base.cbs.on_frame(t->base.cbs.ctx, &c->base, &c->rx.h, b, off, len);
	tw_buf_release(b);
}

/* Feed n stream bytes through the reassembler. */
static void rx_bytes(struct uconn *c, const unsigned char *p, size_t n)
{
	while (n > 0 && !c->closing) {
		if (c->rx.cur == NULL) {
			size_t k = TW_FRAME_HDR_SIZE - c->rx.hdr_have;
			if (k > n)
				k = n;
			memcpy(c->rx.hdr + c->rx.hdr_have, p, k);
			c->rx.hdr_have += (uint32_t)k;
			p += k;
			n -= k;
			if (c->rx.hdr_have < TW_FRAME_HDR_SIZE)
				return;
			if (!rx_start(c))
				return;
		} else {
			uint64_t left = c->rx.need - c->rx.have;
			size_t k = left < n ? (size_t)left : n;
			memcpy((unsigned char *)c->rx.cur->data + c->rx.off +
				       c->rx.have,
			       p, k);
			c->rx.have += k;
			p += k;
			n -= k;
		}
		if (c->rx.have == c->rx.need)
			rx_deliver(c);
	}
}

static void recycle(struct ut *t, unsigned bid)
{
	io_uring_buf_ring_add(t->br, t->pb + (size_t)bid * t->o.recv_buf_size,
			      t->o.recv_buf_size, (unsigned short)bid,
			      t->br_mask, 0);
	io_uring_buf_ring_advance(t->br, 1);
}

static void on_recv(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	struct uconn *c = container_of(ur, struct uconn, recv_req);
	struct ut *t = c->t;
	int res = cqe->res;
	bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;

	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		if (res > 0 && !c->closing) {
			t->st.recv_cqes++;
			conn_active(c);
			rx_bytes(c, t->pb + (size_t)bid * t->o.recv_buf_size,
				 (size_t)res);
		}
		recycle(t, bid);
	}
	if (!more) {
		c->recv_armed = false;
		c->ops--;
	}
	if (c->closing) {
		maybe_finalize(c);
		return;
	}
	if (res == 0 || (res < 0 && res != -ENOBUFS && res != -ECANCELED &&
			 res != -EINTR && res != -EAGAIN)) {
		/* EOF, reset or any other socket error. */
		conn_fail(c, TW_EUNREACHABLE);
		return;
	}
	if (res == -ENOBUFS)
		t->st.recv_nobufs++;
	if (c->rx.cur && c->rx.large) {
		/* Let the rest of a large frame land in place: stop the
		 * multishot recv; its last CQE starts the plain recv. */
		if (more && !c->ms_cancel) {
			c->ms_cancel = true;
			cancel_op(c, &c->recv_req);
		} else if (!more) {
			arm_lrecv(c);
		}
		return;
	}
	if (!more)
		arm_recv(c);
}

static void on_lrecv(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	struct uconn *c = container_of(ur, struct uconn, lrecv_req);
	int res = cqe->res;
	c->lrecv_armed = false;
	c->ops--;
	if (c->closing) {
		maybe_finalize(c);
		return;
	}
	if (res > 0) {
		conn_active(c);
		c->rx.have += (uint64_t)res;
		if (c->rx.have == c->rx.need) {
			rx_deliver(c);
			arm_recv(c);
		} else if (!c->hot) {
			arm_lrecv(c); /* else busy_poll reads the rest */
		}
		return;
	}
	if (res == -EINTR || res == -EAGAIN) {
		if (!c->hot)
			arm_lrecv(c);
		return;
	}
	conn_fail(c, TW_EUNREACHABLE);
}

/* A connection leaves busy polling: its own receive again (the plain recv
 * when a large frame is landing and none is armed yet). */
static void rearm(struct uconn *c)
{
	if (c->rx.cur && c->rx.large) {
		if (!c->closing && !c->recv_armed && !c->lrecv_armed)
			arm_lrecv(c);
	} else {
		arm_recv(c);
	}
}

/* Read the busy-polled connections directly (uring.h, "Busy polling").
 * Connections idle for busy_poll_ns leave the list. */
static int busy_poll(struct ut *t)
{
	uint64_t now = tw_loop_now(t->base.loop);
	int work = 0;
	/* Which of them have anything to read: one poll(2) for all. tcp_poll
	 * reads the socket's state without its lock, where a recv that finds
	 * nothing still takes and releases it; on loopback the peer's CPU
	 * delivers our segments under that same lock, so empty recvs spinning
	 * on it slowed every arrival (the spin lock's slow path was the top
	 * symbol of a busy-polling client's profile, 9%; the 1 KiB echo p50
	 * went from 1.01x to 0.98x the raw io_uring ping-pong, median of 12
	 * paired rounds: perf/RESULTS.md). Not the rest of a large frame:
	 * that streams in, and a poll before each read of it cost the 1 MiB
	 * echo 8%. */
	struct pollfd pf[HOT_MAX];
	struct uconn *pc[HOT_MAX];
	nfds_t np = 0;
	for (uint32_t i = 0; i < t->nhot; i++) {
		struct uconn *c = t->hot[i];
		c->hot_rev = POLLIN;
		if (!(c->rx.cur && c->rx.large)) {
			pc[np] = c;
			pf[np++] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
		}
	}
	if (np != 0 && poll(pf, np, 0) >= 0)
		for (nfds_t i = 0; i < np; i++)
			pc[i]->hot_rev = pf[i].revents;
	for (uint32_t i = 0; i < t->nhot;) {
		struct uconn *c = t->hot[i];
		if (c->closing || now > c->last_active + t->o.busy_poll_ns) {
			hot_drop(t, i);
			rearm(c);
			continue;
		}
		i++;
		bool large = c->rx.cur && c->rx.large;
		/* An io_uring recv of this connection still in flight (a
		 * large frame's plain recv, or a multishot winding down
		 * whose last CQE starts one) reads for us meanwhile. */
		if (c->state != C_OPEN || c->lrecv_armed ||
		    (large && c->recv_armed))
			continue;
		/* Bytes io_uring has already read wait unreaped in the CQ
		 * (or its overflow list): a direct read would overtake
		 * them. Checked before every read, since delivering a frame
		 * may submit and so complete operations. */
		if (io_uring_cq_ready(t->ring) != 0 ||
		    (IO_URING_READ_ONCE(*t->ring->sq.kflags) &
		     IORING_SQ_CQ_OVERFLOW))
			break;
		if (c->hot_rev == 0)
			continue; /* nothing to read, or not polled this pass */
		unsigned char *dst = t->scratch;
		size_t len = t->o.recv_buf_size;
		if (large) {
			/* The rest of a large frame: straight into place,
			 * as much as has arrived. */
			uint64_t left = c->rx.need - c->rx.have;
			dst = (unsigned char *)c->rx.cur->data + c->rx.off +
			      c->rx.have;
			len = left > RECV_CHUNK_MAX ? RECV_CHUNK_MAX
						    : (size_t)left;
		}
		ssize_t r = recv(c->fd, dst, len, MSG_DONTWAIT);
		if (r < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR)
				conn_fail(c, TW_EUNREACHABLE);
			continue;
		}
		work++;
		if (r == 0) { /* EOF */
			conn_fail(c, TW_EUNREACHABLE);
			continue;
		}
		t->st.busy_recvs++;
		c->last_active = now;
		if (large) {
			c->rx.have += (uint64_t)r;
			if (c->rx.have == c->rx.need) {
				rx_deliver(c);
				t->st.busy_frames++;
			}
			continue;
		}
		uint64_t frames = t->st.frames_rx;
		rx_bytes(c, t->scratch, (size_t)r);
		t->st.busy_frames += t->st.frames_rx - frames;
		/* A large frame began: the next polls read its rest in
		 * place (a multishot still winding down hands it to a
		 * plain recv instead: on_recv). */
		if (!c->closing && c->rx.cur && c->rx.large && c->recv_armed &&
		    !c->ms_cancel) {
			c->ms_cancel = true;
			cancel_op(c, &c->recv_req);
		}
	}
	return work;
}

/* The loop is about to sleep: only a multishot recv can wake it, so every
 * busy-polled connection gets its own back. */
static void u_idle(void *arg)
{
	struct ut *t = arg;
	while (t->nhot != 0) {
		struct uconn *c = t->hot[t->nhot - 1];
		hot_drop(t, t->nhot - 1);
		rearm(c);
	}
}

/* ------------------------------------------------------------------ */
/* Sending                                                             */

static void on_send(struct tw_uring_req *ur, struct io_uring_cqe *cqe);
static void on_zc(struct tw_uring_req *ur, struct io_uring_cqe *cqe);

/* n bytes went out: move the sq head past them; fully sent requests are
 * appended to *out (a list through next_). */
static void sq_advance(struct uconn *c, uint64_t n, struct tw_send_req **oh,
		       struct tw_send_req **ot)
{
	struct tw_send_req *r;
	while ((r = c->sq_head) != NULL) {
		while (r->iov_idx_ < r->niov) {
			size_t l = r->iov[r->iov_idx_].iov_len - c->head_off;
			if (n < l) {
				c->head_off += (size_t)n;
				r->sent_ += n;
				return;
			}
			n -= l;
			r->sent_ += l;
			r->iov_idx_++;
			c->head_off = 0;
		}
		c->sq_head = r->next_;
		if (c->sq_head == NULL)
			c->sq_tail = NULL;
		if (c->batch_n)
			c->batch_n--;
		r->next_ = NULL;
		if (*ot)
			(*ot)->next_ = r;
		else
			*oh = r;
		*ot = r;
	}
}

/* Build the iovecs of one batch from the sq head. */
static uint32_t build_batch(struct uconn *c, bool zc, uint32_t *nreq,
			    uint64_t *bytes)
{
	struct ut *t = c->t;
	uint32_t n = 0, k = 0;
	uint64_t total = 0;
	for (struct tw_send_req *r = c->sq_head; r; r = r->next_) {
		if (r != c->sq_head && req_zc(t, r) != zc)
			break;
		uint32_t i = r == c->sq_head ? r->iov_idx_ : 0;
		size_t off = r == c->sq_head ? c->head_off : 0;
		k++;
		for (; i < r->niov; i++, off = 0) {
			size_t l = r->iov[i].iov_len - off;
			if (l == 0)
				continue;
			if (n == IOV_CAP || total >= BATCH_BYTES_MAX)
				goto full;
			if (l > BATCH_BYTES_MAX - total)
				l = (size_t)(BATCH_BYTES_MAX - total);
			c->iov[n].iov_base = (char *)r->iov[i].iov_base + off;
			c->iov[n].iov_len = l;
			n++;
			total += l;
		}
	}
full:
	*nreq = k;
	*bytes = total;
	return n;
}

static bool send_retryable(int res)
{
	return res == -EINTR || res == -EAGAIN || res == -ENOBUFS ||
	       res == -ENOMEM;
}

static int conn_flush(struct uconn *c)
{
	struct ut *t = c->t;
	if (c->closing || c->state != C_OPEN || c->send_busy || !c->sq_head)
		return 0;
	if (c->iov == NULL) {
		c->iov = malloc(IOV_CAP * sizeof(*c->iov));
		if (c->iov == NULL) {
			conn_fail(c, TW_ENOMEM);
			return 1;
		}
	}
	bool zc = !c->copying && t->o.zc_threshold != UINT64_MAX &&
		  req_zc(t, c->sq_head);
	uint32_t nreq;
	uint64_t bytes;
	uint32_t niov = build_batch(c, zc, &nreq, &bytes);
	if (niov == 0) {
		/* Nothing but empty requests at the head. */
		struct tw_send_req *h = NULL, *tl = NULL;
		c->batch_n = 0;
		sq_advance(c, 0, &h, &tl);
		done_list(c, h, TW_OK);
		if (c->sq_head && !c->closing)
			mark_dirty(c);
		return 1;
	}
	if (!zc && niov > 1 && bytes <= GATHER_COPY_MAX) {
		/* A small frame in pieces (header and payload, pad, a small
		 * tensor) or a few small frames: one plain send of a copy
		 * costs less than the sendmsg's msghdr copy, iovec import
		 * and per-piece skb appends (a 1 KiB tensor echo spent ~0.6
		 * us more per direction than a no-op call with them).
		 * Tensors of 16 KiB and more are never copied (DESIGN.md). */
		if (c->gbuf == NULL)
			c->gbuf = malloc(GATHER_COPY_MAX);
		if (c->gbuf != NULL) {
			size_t o = 0;
			for (uint32_t i = 0; i < niov; i++) {
				memcpy(c->gbuf + o, c->iov[i].iov_base,
				       c->iov[i].iov_len);
				o += c->iov[i].iov_len;
			}
			c->iov[0].iov_base = c->gbuf;
			c->iov[0].iov_len = o;
			niov = 1;
		}
	}
	if (!zc && niov == 1 && bytes <= DIRECT_SEND_MAX) {
		/* Small and contiguous: a plain send(MSG_DONTWAIT) now. The
		 * kernel takes the bytes at once when the socket has room,
		 * as it would inside io_uring_enter, without the SQE, the
		 * CQE and the trip through the completion queue. When it
		 * has no room, the io_uring send below waits for it. */
		ssize_t r = send(c->fd, c->iov[0].iov_base, c->iov[0].iov_len,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r > 0) {
			struct tw_send_req *h = NULL, *tl = NULL;
			t->st.direct_sends++;
			t->st.sendmsg_calls++;
			t->st.bytes_tx += (uint64_t)r;
			conn_active(c);
			c->batch_n = nreq;
			sq_advance(c, (uint64_t)r, &h, &tl);
			c->batch_n = 0;
			done_list(c, h, TW_OK);
			if (!c->closing && c->sq_head)
				mark_dirty(c);
			return 1;
		}
		if (r < 0 && errno != EWOULDBLOCK && !send_retryable(-errno)) {
			conn_fail(c, TW_EUNREACHABLE);
			return 1;
		}
	}
	struct zc_op *op = NULL;
	if (zc) {
		op = calloc(1, sizeof(*op));
		if (op == NULL)
			zc = false;
	}
	struct io_uring_sqe *sqe = sqe_get(t);
	if (sqe == NULL) {
		free(op);
		mark_dirty(c); /* retry next iteration */
		return 0;
	}
	memset(&c->msg, 0, sizeof(c->msg));
	c->msg.msg_iov = c->iov;
	c->msg.msg_iovlen = niov;
	if (zc) {
		op->req.fn = on_zc;
		op->c = c;
		io_uring_prep_sendmsg_zc(sqe, c->fd, &c->msg,
					 MSG_NOSIGNAL | MSG_WAITALL);
		sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
		io_uring_sqe_set_data(sqe, &op->req);
		if (c->zc_tail)
			c->zc_tail->next = op;
		else
			c->zc_head = op;
		c->zc_tail = op;
		c->zc_cur = op;
		t->st.zc_sends++;
	} else if (niov == 1) {
		/* One segment (a small frame alone, the usual RPC case): a
		 * plain send spares the kernel the msghdr copy and iovec
		 * import of sendmsg. */
		io_uring_prep_send(sqe, c->fd, c->iov[0].iov_base,
				   c->iov[0].iov_len, MSG_NOSIGNAL | MSG_WAITALL);
		io_uring_sqe_set_data(sqe, &c->send_req);
	} else {
		io_uring_prep_sendmsg(sqe, c->fd, &c->msg,
				      MSG_NOSIGNAL | MSG_WAITALL);
		io_uring_sqe_set_data(sqe, &c->send_req);
	}
	c->send_busy = true;
	c->send_zc = zc;
	c->batch_n = nreq;
	c->ops++;
	t->st.sendmsg_calls++;
	/* An answer may follow: read for it directly while it comes. */
	conn_active(c);
	return 1;
}

static void on_send(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	struct uconn *c = container_of(ur, struct uconn, send_req);
	struct ut *t = c->t;
	int res = cqe->res;
	struct tw_send_req *h = NULL, *tl = NULL;

	c->send_busy = false;
	c->ops--;
	if (res > 0) {
		t->st.bytes_tx += (uint64_t)res;
		sq_advance(c, (uint64_t)res, &h, &tl);
	}
	c->batch_n = 0;
	if (c->closing) {
		/* The kernel is done with these: fail all that is left. */
		struct tw_send_req *rest = c->sq_head;
		c->sq_head = c->sq_tail = NULL;
		done_list(c, h, c->close_st);
		done_list(c, rest, c->close_st);
		maybe_finalize(c);
		return;
	}
	done_list(c, h, TW_OK);
	if (c->closing)
		return;
	if (res < 0 && !send_retryable(res)) {
		conn_fail(c, TW_EUNREACHABLE);
		return;
	}
	if (c->sq_head)
		mark_dirty(c);
}

/* Complete the zero-copy operations at the FIFO head whose notification
 * came: requests never finish out of order. */
static void zc_drain(struct uconn *c)
{
	struct zc_op *op;
	while ((op = c->zc_head) != NULL && op->result_seen && op->notified) {
		c->zc_head = op->next;
		if (c->zc_head == NULL)
			c->zc_tail = NULL;
		struct tw_send_req *h = op->head;
		free(op);
		done_list(c, h, c->closing ? c->close_st : TW_OK);
	}
	maybe_finalize(c);
}

static void on_zc(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	struct zc_op *op = (struct zc_op *)(void *)ur;
	struct uconn *c = op->c;
	struct ut *t = c->t;
	int res = cqe->res;

	if (cqe->flags & IORING_CQE_F_NOTIF) {
		t->st.zc_notifs++;
		if ((uint32_t)res & IORING_NOTIF_USAGE_ZC_COPIED) {
			t->st.zc_copied++;
			c->copying = true;
		}
		op->notified = true;
		zc_drain(c);
		return;
	}

	/* The send's own completion. */
	op->result_seen = true;
	if (!(cqe->flags & IORING_CQE_F_MORE))
		op->notified = true; /* no notification will follow */
	c->send_busy = false;
	c->send_zc = false;
	c->zc_cur = NULL;
	c->ops--;
	if (res > 0) {
		t->st.bytes_tx += (uint64_t)res;
		sq_advance(c, (uint64_t)res, &op->head, &op->tail);
	}
	if (c->closing) {
		/* Whatever the op covered waits for its notification. */
		struct tw_send_req *r = c->sq_head;
		for (uint32_t i = 0; r && i < c->batch_n; i++) {
			struct tw_send_req *n = r->next_;
			r->next_ = NULL;
			if (op->tail)
				op->tail->next_ = r;
			else
				op->head = r;
			op->tail = r;
			r = n;
		}
		c->sq_head = r;
		if (r == NULL)
			c->sq_tail = NULL;
		struct tw_send_req *rest = c->sq_head;
		c->sq_head = c->sq_tail = NULL;
		c->batch_n = 0;
		done_list(c, rest, c->close_st);
		zc_drain(c);
		return;
	}
	c->batch_n = 0;
	if (res == -EINVAL || res == -EOPNOTSUPP) {
		/* No zero-copy here: send it again the plain way. */
		c->copying = true;
		zc_drain(c);
		if (!c->closing && c->sq_head)
			mark_dirty(c);
		return;
	}
	if (res < 0 && !send_retryable(res)) {
		zc_drain(c);
		conn_fail(c, TW_EUNREACHABLE);
		return;
	}
	zc_drain(c);
	if (!c->closing && c->sq_head)
		mark_dirty(c);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */

static void on_connect(struct tw_uring_req *ur, struct io_uring_cqe *cqe);

static void on_cancel(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	(void)cqe;
	struct uconn *c = container_of(ur, struct uconn, cancel_req);
	c->ops--;
	maybe_finalize(c);
}

static struct uconn *conn_new(struct ut *t, int fd, uint8_t state)
{
	struct uconn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->base.t = &t->base;
	c->base.id = ++t->next_id;
	c->t = t;
	c->fd = fd;
	c->state = state;
	c->recv_req.fn = on_recv;
	c->lrecv_req.fn = on_lrecv;
	c->send_req.fn = on_send;
	c->connect_req.fn = on_connect;
	c->cancel_req.fn = on_cancel;
	c->next = t->conns;
	if (t->conns)
		t->conns->prev = c;
	t->conns = c;
	t->nconns++;
	return c;
}

static void conn_free(struct uconn *c)
{
	struct ut *t = c->t;
	for (uint32_t i = 0; c->hot && i < t->nhot; i++)
		if (t->hot[i] == c)
			hot_drop(t, i);
	if (c->prev)
		c->prev->next = c->next;
	else
		t->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	t->nconns--;
	rx_release(c);
	free(c->iov);
	free(c->gbuf);
	free(c);
}

static void arm_connect(struct uconn *c)
{
	struct io_uring_sqe *sqe = sqe_get(c->t);
	if (sqe == NULL) {
		c->want_connect = true;
		mark_dirty(c);
		return;
	}
	c->want_connect = false;
	io_uring_prep_connect(sqe, c->fd, (struct sockaddr *)&c->peer,
			      sizeof(c->peer));
	io_uring_sqe_set_data(sqe, &c->connect_req);
	c->connect_armed = true;
	c->ops++;
}

static void on_connect(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	struct uconn *c = container_of(ur, struct uconn, connect_req);
	struct ut *t = c->t;
	c->connect_armed = false;
	c->ops--;
	if (c->closing) {
		maybe_finalize(c);
		return;
	}
	if (cqe->res < 0) {
		conn_fail(c, TW_EUNREACHABLE);
		return;
	}
	c->state = C_OPEN;
	t->st.conns_connected++;
	/* Now that it is bound, our own non-loopback address counts too. */
	cc_setup(t, c->fd, same_host(c->fd, &c->peer));
	t->base.cbs.on_conn(t->base.cbs.ctx, &c->base, TW_OK);
	if (c->closing)
		return;
	arm_recv(c);
	if (c->sq_head)
		mark_dirty(c);
}

static tw_status u_connect(tw_transport *tt, const char *addr, tw_conn **out)
{
	struct ut *t = UT(tt);
	struct sockaddr_in sa;
	if (out == NULL)
		return TW_EINVAL;
	*out = NULL;
	if (t->destroying)
		return TW_ESHUTDOWN;
	tw_status st = parse_addr(addr, &sa);
	if (st != TW_OK)
		return st;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno == ENOMEM || errno == ENOBUFS ? TW_ENOMEM : TW_EIO;
	sock_setup(t, fd);
	struct uconn *c = conn_new(t, fd, C_CONNECTING);
	if (c == NULL) {
		close(fd);
		return TW_ENOMEM;
	}
	c->peer = sa;
	c->copying = !t->o.zc_same_host && same_host(fd, &sa);
	arm_connect(c);
	*out = &c->base;
	return TW_OK;
}

static tw_status u_send(tw_transport *tt, tw_conn *cc, struct tw_send_req *r)
{
	struct ut *t = UT(tt);
	struct uconn *c = (struct uconn *)(void *)cc;
	if (c == NULL || r == NULL || r->done == NULL ||
	    (r->niov != 0 && r->iov == NULL))
		return TW_EINVAL;
	if (c->closing)
		return TW_EUNREACHABLE;
	if (c->held >= t->o.max_queued)
		return TW_ENOSPC;
	r->next_ = NULL;
	r->sent_ = 0;
	r->iov_idx_ = 0;
	r->flags_ = 0;
	if (c->sq_tail)
		c->sq_tail->next_ = r;
	else
		c->sq_head = r;
	c->sq_tail = r;
	c->held++;
	if (!c->send_busy && c->state == C_OPEN)
		mark_dirty(c);
	return TW_OK;
}

static void u_close(tw_transport *tt, tw_conn *cc)
{
	(void)tt;
	if (cc == NULL)
		return;
	conn_fail((struct uconn *)(void *)cc, TW_ESHUTDOWN);
}

/* ------------------------------------------------------------------ */
/* Listening                                                           */

static void on_accept(struct tw_uring_req *ur, struct io_uring_cqe *cqe);

static void arm_accept(struct ulis *l)
{
	struct ut *t = l->t;
	struct io_uring_sqe *sqe = sqe_get(t);
	if (sqe == NULL) {
		l->want = true;
		t->lis_want = true;
		return;
	}
	l->want = false;
	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data(sqe, &l->acc_req);
	l->armed = true;
	l->ops++;
}

static void conn_accepted(struct ut *t, int fd)
{
	sock_setup(t, fd);
	struct uconn *c = conn_new(t, fd, C_OPEN);
	if (c == NULL) {
		close(fd);
		return;
	}
	bool local = same_host(fd, NULL);
	c->copying = !t->o.zc_same_host && local;
	cc_setup(t, fd, local);
	t->st.conns_accepted++;
	t->base.cbs.on_conn(t->base.cbs.ctx, &c->base, TW_OK);
	arm_recv(c);
}

static void on_accept(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	struct ulis *l = container_of(ur, struct ulis, acc_req);
	struct ut *t = l->t;
	bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
	if (!more) {
		l->armed = false;
		l->ops--;
	}
	if (cqe->res >= 0) {
		if (l->closing)
			close(cqe->res);
		else
			conn_accepted(t, cqe->res);
	}
	if (!more && !l->closing)
		arm_accept(l);
}

static void on_lis_cancel(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	(void)cqe;
	struct ulis *l = container_of(ur, struct ulis, cancel_req);
	l->ops--;
}

static tw_status u_listen(tw_transport *tt, const char *addr, char *bound,
			  size_t bound_len)
{
	struct ut *t = UT(tt);
	struct sockaddr_in sa;
	if (t->destroying)
		return TW_ESHUTDOWN;
	tw_status st = parse_addr(addr, &sa);
	if (st != TW_OK)
		return st;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return TW_EIO;
	int one = 1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sock_setup(t, fd); /* accepted sockets inherit buffer sizes */
	socklen_t sl = sizeof(sa);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, 1024) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
		int e = errno;
		close(fd);
		return e == EADDRINUSE || e == EADDRNOTAVAIL || e == EACCES
			       ? TW_EINVAL
			       : TW_EIO;
	}
	struct ulis *l = calloc(1, sizeof(*l));
	if (l == NULL) {
		close(fd);
		return TW_ENOMEM;
	}
	l->t = t;
	l->fd = fd;
	l->acc_req.fn = on_accept;
	l->cancel_req.fn = on_lis_cancel;
	l->next = t->lis;
	t->lis = l;
	arm_accept(l);
	if (bound != NULL && bound_len > 0) {
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip));
		int n = snprintf(bound, bound_len, "tcp://%s:%u", ip,
				 (unsigned)ntohs(sa.sin_port));
		if (n < 0 || (size_t)n >= bound_len)
			return TW_EOVERFLOW; /* listening all the same */
	}
	return TW_OK;
}

/* ------------------------------------------------------------------ */
/* The poller                                                          */

static int conn_service(struct uconn *c)
{
	if (c->closing)
		return 0;
	if (c->want_connect) {
		arm_connect(c);
		return 1;
	}
	int work = 0;
	if (c->want_recv) {
		if (c->rx.cur && c->rx.large && !c->recv_armed)
			arm_lrecv(c);
		else
			arm_recv(c);
		work = 1;
	}
	return work + conn_flush(c);
}

static void dirty_unlink(struct ut *t, struct uconn *c)
{
	struct uconn *prev = NULL, *p = t->dirty_head;
	while (p && p != c) {
		prev = p;
		p = p->dnext;
	}
	if (p == NULL)
		return;
	if (prev)
		prev->dnext = c->dnext;
	else
		t->dirty_head = c->dnext;
	if (t->dirty_tail == c)
		t->dirty_tail = prev;
	c->dirty = false;
}

static int reap(struct ut *t)
{
	int work = 0;
	struct uconn *c;
	while ((c = t->reap_head) != NULL) {
		t->reap_head = c->rnext;
		if (t->reap_head == NULL)
			t->reap_tail = NULL;
		if (c->dirty) /* rare: closed while waiting for an SQE */
			dirty_unlink(t, c);
		t->st.conns_closed++;
		rx_release(c);
		/* Sends the fault injector still holds must not reach c once
		 * it is freed. */
		tw_fault_conn_closed(&t->base, &c->base, c->close_st);
		t->base.cbs.on_conn(t->base.cbs.ctx, &c->base, c->close_st);
		conn_free(c);
		work++;
	}
	return work;
}

static int service_dirty(struct ut *t)
{
	int work = 0;
	/* A snapshot: what gets dirty meanwhile waits for the next turn. */
	struct uconn *c = t->dirty_head;
	t->dirty_head = t->dirty_tail = NULL;
	while (c) {
		struct uconn *n = c->dnext;
		c->dirty = false;
		c->dnext = NULL;
		work += conn_service(c);
		c = n;
	}
	return work;
}

static int u_poll(void *arg)
{
	struct ut *t = arg;
	int work = 0;
	if (t->lis_want) {
		t->lis_want = false;
		for (struct ulis *l = t->lis; l; l = l->next)
			if (l->want && !l->closing) {
				arm_accept(l);
				work++;
			}
	}
	/* Sends first (a call waiting to go out should not wait for our
	 * reads), then the direct reads, then the answers they made. */
	if (t->dirty_head != NULL)
		work += service_dirty(t);
	if (t->nhot != 0) {
		int b = busy_poll(t);
		if (b != 0 && t->dirty_head != NULL)
			b += service_dirty(t);
		work += b;
	}
	work += reap(t);
	return work;
}

/* ------------------------------------------------------------------ */
/* Create and destroy                                                  */

static tw_status bufring_setup(struct ut *t)
{
	uint32_t n = t->o.recv_buf_count;
	t->br_len = (size_t)n * sizeof(struct io_uring_buf);
	long pg = sysconf(_SC_PAGESIZE);
	t->br_len = (t->br_len + (size_t)pg - 1) & ~((size_t)pg - 1);
	void *br = mmap(NULL, t->br_len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (br == MAP_FAILED)
		return TW_ENOMEM;
	t->br = br;
	t->pb_len = (size_t)n * t->o.recv_buf_size;
	void *pb = mmap(NULL, t->pb_len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (pb == MAP_FAILED) {
		munmap(br, t->br_len);
		t->br = NULL;
		return TW_ENOMEM;
	}
	t->pb = pb;
	io_uring_buf_ring_init(t->br);
	t->br_mask = io_uring_buf_ring_mask(n);

	/* Group ids are per ring, and several transports may share one. */
	static _Atomic unsigned next_bgid;
	int ret = -EEXIST;
	for (unsigned tries = 0; tries < 65536 && ret == -EEXIST; tries++) {
		struct io_uring_buf_reg reg;
		memset(&reg, 0, sizeof(reg));
		reg.ring_addr = (uint64_t)(uintptr_t)t->br;
		reg.ring_entries = n;
		reg.bgid = (uint16_t)(atomic_fetch_add(&next_bgid, 1) & 0xffff);
		ret = io_uring_register_buf_ring(t->ring, &reg, 0);
		if (ret == 0)
			t->bgid = reg.bgid;
	}
	if (ret != 0) {
		munmap(t->pb, t->pb_len);
		munmap(t->br, t->br_len);
		t->pb = NULL;
		t->br = NULL;
		return ret == -ENOMEM ? TW_ENOMEM : TW_ENOTSUP;
	}
	for (uint32_t i = 0; i < n; i++)
		io_uring_buf_ring_add(t->br, t->pb + (size_t)i * t->o.recv_buf_size,
				      t->o.recv_buf_size, (unsigned short)i,
				      t->br_mask, (int)i);
	io_uring_buf_ring_advance(t->br, (int)n);
	return TW_OK;
}

/* Without unmap (an unclean drain) the memory stays, and so do the
 * pointers: late completions may still recycle into it. */
static void bufring_free(struct ut *t, bool unmap)
{
	if (t->br == NULL)
		return;
	(void)io_uring_unregister_buf_ring(t->ring, t->bgid);
	if (!unmap)
		return;
	munmap(t->pb, t->pb_len);
	munmap(t->br, t->br_len);
	t->br = NULL;
	t->pb = NULL;
}

tw_status tw_uring_transport_create(tw_loop *l, const struct tw_uring_opts *in,
				    const struct tw_transport_cbs *cbs,
				    tw_transport **out)
{
	if (out == NULL)
		return TW_EINVAL;
	*out = NULL;
	if (l == NULL || cbs == NULL || cbs->on_frame == NULL ||
	    cbs->on_conn == NULL)
		return TW_EINVAL;
	tw_status cst = tw_uring_opts_check(in);
	if (cst != TW_OK)
		return cst;
	struct tw_uring_opts o;
	tw_uring_opts_get(in, &o);

	struct io_uring *ring = tw_loop_uring(l);
	if (ring == NULL)
		return TW_ENOTSUP;
	struct ut *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return TW_ENOMEM;
	t->base.ops = &uring_ops;
	t->base.loop = l;
	t->base.cbs = *cbs;
	t->o = o;
	t->ring = ring;
	snprintf(t->cc_local, sizeof(t->cc_local), "%s",
		 o.cc_local ? o.cc_local : "");
	snprintf(t->cc_remote, sizeof(t->cc_remote), "%s",
		 o.cc_remote ? o.cc_remote : "");
	/* the caller's */
	t->o.cc_local = t->o.cc_remote = t->o.listen_host = NULL;

	struct tw_buf_pool_opts po;
	tw_buf_pool_opts_init(&po, sizeof(po));
	po.buf_size = o.rx_pool_buf_size;
	po.count = o.rx_pool_count;
	po.prefault = 1;
	po.name = "uring-rx";
	tw_status st = tw_buf_pool_create(&po, &t->pool);
	if (st != TW_OK)
		goto err;
	st = tw_bigbuf_cache_create(o.large_cache_bytes, &t->bc);
	if (st != TW_OK)
		goto err;
	st = bufring_setup(t);
	if (st != TW_OK)
		goto err;
	if (t->o.busy_poll_conns > HOT_MAX)
		t->o.busy_poll_conns = HOT_MAX;
	/* The ordering argument needs the kernel to read for io_uring only
	 * inside our own io_uring_enter. */
	if ((ring->flags & (IORING_SETUP_DEFER_TASKRUN |
			    IORING_SETUP_TASKRUN_FLAG)) !=
	    (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG))
		t->o.busy_poll_conns = 0;
	if (t->o.busy_poll_conns != 0 &&
	    (t->scratch = malloc(o.recv_buf_size)) == NULL) {
		bufring_free(t, true);
		st = TW_ENOMEM;
		goto err;
	}
	t->poller.fn = u_poll;
	t->poller.idle = u_idle;
	t->poller.arg = t;
	tw_loop_add_poller(l, &t->poller);
	t->poller_on = true;
	*out = &t->base;
	return TW_OK;
err:
	tw_bigbuf_cache_close(t->bc);
	(void)tw_buf_pool_destroy(t->pool);
	free(t);
	return st;
}

/* Run the ring until every operation of ours has completed. Completions
 * go to their owners as the loop would send them. */
static bool drain(struct ut *t)
{
	uint64_t deadline = mono_ns() + DRAIN_NS;
	for (;;) {
		bool lis_busy = false;
		for (struct ulis *l = t->lis; l; l = l->next)
			lis_busy |= l->ops != 0;
		(void)u_poll(t);
		if (t->nconns == 0 && !lis_busy)
			return true;
		if (mono_ns() > deadline)
			return false;
		(void)io_uring_submit(t->ring);
		struct io_uring_cqe *cqe;
		unsigned got = 0;
		while (io_uring_peek_cqe(t->ring, &cqe) == 0) {
			uint64_t ud = cqe->user_data;
			struct tw_uring_req *r =
				ud == LIBURING_UDATA_TIMEOUT
					? NULL
					: (struct tw_uring_req *)(uintptr_t)ud;
			struct io_uring_cqe copy = *cqe;
			io_uring_cqe_seen(t->ring, cqe);
			if (r != NULL && r->fn != NULL)
				r->fn(r, &copy);
			got++;
		}
		if (got == 0) {
			struct __kernel_timespec ts = { .tv_sec = 0,
							.tv_nsec = 1000000 };
			(void)io_uring_wait_cqe_timeout(t->ring, &cqe, &ts);
		}
	}
}

static void u_destroy(tw_transport *tt)
{
	struct ut *t = UT(tt);
	if (t == NULL)
		return;
	t->destroying = true;
	for (struct ulis *l = t->lis; l; l = l->next) {
		l->closing = true;
		l->want = false;
		(void)shutdown(l->fd, SHUT_RDWR);
		if (l->armed) {
			struct io_uring_sqe *sqe = sqe_get(t);
			if (sqe) {
				io_uring_prep_cancel(sqe, &l->acc_req,
						     IORING_ASYNC_CANCEL_ALL);
				io_uring_sqe_set_data(sqe, &l->cancel_req);
				l->ops++;
			}
		}
	}
	for (struct uconn *c = t->conns; c; c = c->next)
		conn_fail(c, TW_ESHUTDOWN);
	bool clean = drain(t);
	if (t->poller_on)
		tw_loop_remove_poller(t->base.loop, &t->poller);
	struct ulis *l = t->lis;
	while (l) {
		struct ulis *n = l->next;
		close(l->fd);
		if (l->ops == 0)
			free(l); /* else the kernel may still post to it */
		l = n;
	}
	/* Without a clean drain the kernel may still own some memory: leak
	 * it rather than free it from under an operation. */
	bufring_free(t, clean);
	free(t->scratch);
	t->scratch = NULL;
	t->nhot = 0;
	/* Buffers still lent unmap themselves when they come back. */
	tw_bigbuf_cache_close(t->bc);
	if (clean) {
		if (tw_buf_pool_destroy(t->pool) != TW_OK)
			fprintf(stderr, "tensorwire: uring transport destroyed "
					"while receive buffers are still held; "
					"leaking the pool\n");
		free(t);
	}
}

void tw_uring_get_stats(const tw_transport *tt, struct tw_uring_stats *s)
{
	if (s == NULL)
		return;
	if (tt == NULL) {
		memset(s, 0, sizeof(*s));
		return;
	}
	*s = ((const struct ut *)(const void *)tt)->st;
}

static const struct tw_transport_ops uring_ops = {
	.name = "uring",
	.listen = u_listen,
	.connect = u_connect,
	.send = u_send,
	.close = u_close,
	.destroy = u_destroy,
};
