/* io_uring TCP transport: the transport itself (options, create, destroy,
 * the poller that services connections), its connections' lifecycle from
 * connect or accept to close, and listening. Receiving is uring_rx.c's,
 * sending uring_tx.c's. */
#include "dataplane/uring.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/clock.h"
#include "dataplane/err.h"
#include "dataplane/log.h"
#include "dataplane/netaddr.h"
#include "dataplane/uring_impl.h"

/* How long destroy waits for the kernel to finish our operations. */
#define DRAIN_NS (2ull * 1000 * 1000 * 1000)

static const struct tw_transport_ops uring_ops;

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
		.asm_worker_bytes = 4 * URING_FRAME_DEFAULT_MAX,
		.asm_host_bytes = 2 * URING_FRAME_DEFAULT_MAX,
		.stall_timeout_ms = 30000,
		.max_conns_per_host = 512,
		.max_conns = 2048,
		.user_timeout_ms = 300000,
		.connect_timeout_ms = 10000,
		.rto_max_ms = 1000,
	};
	memcpy(o, &d, opts_size < sizeof(d) ? opts_size : sizeof(d));
}

/* Callers built against a shorter struct keep working: fields are
 * copied whole or not at all, the struct only grows at its end. */
void tw_uring_opts_get(const struct tw_uring_opts *in, struct tw_uring_opts *o)
{
	tw_uring_opts_init(o, sizeof(*o));
	tw_opts_copy(o, sizeof(*o), in);
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
		return tw_fail(TW_EINVAL,
			       "io_uring: recv_buf_count %u is not a "
			       "power of 2 in 1..32768",
			       n);
	if (o.recv_buf_size == 0)
		return tw_fail(TW_EINVAL,
			       "io_uring: recv_buf_size must be > 0");
	if (o.max_queued == 0)
		return tw_fail(TW_EINVAL, "io_uring: max_queued must be > 0");
	if (o.rx_pool_buf_size < TW_FRAME_HDR_SIZE || o.rx_pool_count == 0)
		return tw_fail(TW_EINVAL,
			       "io_uring: rx_pool_buf_size must be at "
			       "least %u and rx_pool_count > 0",
			       TW_FRAME_HDR_SIZE);
	if (o.busy_poll_conns > HOT_MAX)
		return tw_fail(TW_EINVAL,
			       "io_uring: busy_poll_conns %u is above %u",
			       o.busy_poll_conns, HOT_MAX);
	if (o.asm_host_bytes == 0 || o.asm_worker_bytes < o.asm_host_bytes)
		return tw_fail(TW_EINVAL,
			       "io_uring: asm_host_bytes %llu must be > 0 and "
			       "asm_worker_bytes %llu at least as much",
			       (unsigned long long)o.asm_host_bytes,
			       (unsigned long long)o.asm_worker_bytes);
	if (o.max_conns_per_host == 0 || o.max_conns < o.max_conns_per_host)
		return tw_fail(TW_EINVAL,
			       "io_uring: max_conns_per_host %u must be > 0 "
			       "and max_conns %u at least as much",
			       o.max_conns_per_host, o.max_conns);
	if (o.user_timeout_ms != 0 && o.user_timeout_ms < 1000)
		return tw_fail(TW_EINVAL,
			       "io_uring: user_timeout_ms %u: 0 (the "
			       "system's) or at least 1000",
			       o.user_timeout_ms);
	if (o.rto_max_ms != 0 && (o.rto_max_ms < 1000 || o.rto_max_ms > 120000))
		return tw_fail(TW_EINVAL,
			       "io_uring: rto_max_ms %u: 0 (the system's) or "
			       "1000 to 120000 (the kernel's range)",
			       o.rto_max_ms);
	if (o.stall_timeout_ms != 0 && o.stall_timeout_ms < 4)
		return tw_fail(TW_EINVAL,
			       "io_uring: stall_timeout_ms %u: 0 (never) or "
			       "at least 4",
			       o.stall_timeout_ms);
	if ((o.cc_local && strlen(o.cc_local) >= TW_URING_CC_NAME_MAX) ||
	    (o.cc_remote && strlen(o.cc_remote) >= TW_URING_CC_NAME_MAX))
		return tw_fail(TW_EINVAL,
			       "io_uring: a congestion control name "
			       "is longer than %d bytes",
			       TW_URING_CC_NAME_MAX - 1);
	return TW_OK;
}

/* ------------------------------------------------------------------ */
/* Addresses and sockets                                               */

static void sock_setup(struct ut *t, int fd)
{
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	if (t->o.user_timeout_ms != 0) {
		/* A vanished host: unacked data fails the connection after
		 * user_timeout_ms; an idle one is probed from half of it, or
		 * of 30 s if less (3 probes a sixth apart), to fail sooner.
		 * Linux applies the user timeout to a zero window too: a
		 * connection its peer pauses (backpressure) longer than this
		 * fails, hence a default well above any sane pause. */
		unsigned ut = t->o.user_timeout_ms;
		unsigned ka = ut < KEEPALIVE_MAX_MS ? ut : KEEPALIVE_MAX_MS;
		int idle = (int)(ka / 2000), intvl = (int)(ka / 6000), cnt = 3;
		if (idle < 1)
			idle = 1;
		if (intvl < 1)
			intvl = 1;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut,
				 sizeof(ut));
		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle,
				 sizeof(idle));
		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
				 sizeof(intvl));
		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt,
				 sizeof(cnt));
	}
	if (t->o.rto_max_ms != 0) {
		int v = (int)t->o.rto_max_ms;
		if (setsockopt(fd, IPPROTO_TCP, TW_TCP_RTO_MAX_MS, &v,
			       sizeof(v)) != 0)
			t->st.rto_max_unset++;
	}
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
 * 5), so trying SEND_ZC first only costs the first big send its speed.
 * A peer in another network namespace or container of this kernel has
 * addresses of its own: the layer above says so (u_set_local). */
static bool same_host(int fd, const struct sockaddr *peer)
{
	struct sockaddr_storage p, me;
	socklen_t pl = sizeof(p), ml = sizeof(me);
	if (peer == NULL) {
		if (getpeername(fd, (struct sockaddr *)&p, &pl) != 0)
			return false;
		peer = (const struct sockaddr *)&p;
	}
	if (tw_netaddr_is_loopback(peer))
		return true;
	return getsockname(fd, (struct sockaddr *)&me, &ml) == 0 &&
	       tw_netaddr_same_ip((const struct sockaddr *)&me, peer);
}

/* ------------------------------------------------------------------ */
/* Closing                                                             */

void uconn_cancel(struct uconn *c, void *user_data)
{
	struct io_uring_sqe *sqe = sqe_get(c->t);
	if (sqe == NULL)
		return; /* shutdown() already ends it */
	io_uring_prep_cancel(sqe, user_data, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data(sqe, &c->cancel_req);
	c->ops++;
}

void uconn_finalize(struct uconn *c)
{
	if (!c->closing || c->ops != 0)
		return;
	if (!c->fd_closed) {
		c->fd_closed = true;
		if (c->fd >= 0) {
			if (!STAILQ_EMPTY(&c->zc)) {
				/* Pages may still sit in the send queue of a
				 * peer that never acks: reset so the kernel
				 * lets go of them (and notifies). */
				struct linger lg = {.l_onoff = 1,
						    .l_linger = 0};
				(void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER,
						 &lg, sizeof(lg));
			}
			close(c->fd);
			c->fd = -1;
		}
	}
	if (!STAILQ_EMPTY(&c->zc) || c->reaped)
		return;
	c->reaped = true;
	STAILQ_INSERT_TAIL(&c->t->reap, c, reap_link);
}

/* Start closing c with st (idempotent). Requests the kernel cannot be
 * reading fail now; the rest when their operation completes. */
void uconn_fail(struct uconn *c, tw_status st)
{
	if (c->closing)
		return;
	c->closing = true;
	c->close_st = st;
	c->want_connect = false;
	tw_timer_cancel(tw_loop_timers(c->t->base.loop), &c->linger_tm);
	tw_timer_cancel(tw_loop_timers(c->t->base.loop), &c->connect_tm);
	if (c->fd >= 0)
		(void)shutdown(c->fd, SHUT_RDWR);
	urx_close(c);
	if (c->connect_armed)
		uconn_cancel(c, &c->connect_req);
	utx_close(c, st);
	uconn_finalize(c);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */

static void on_connect(struct tw_uring_req *ur, struct io_uring_cqe *cqe);

static void on_cancel(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	(void)cqe;
	struct uconn *c = container_of(ur, struct uconn, cancel_req);
	c->ops--;
	uconn_finalize(c);
}

/* ------------------------------------------------------------------ */
/* Limits shared by a worker's transports                              */

struct tw_uring_shared *tw_uring_shared_create(void)
{
	struct tw_uring_shared *sh = calloc(1, sizeof(*sh));
	if (sh != NULL && pthread_mutex_init(&sh->lock, NULL) != 0) {
		free(sh);
		return NULL;
	}
	return sh;
}

void tw_uring_shared_destroy(struct tw_uring_shared *sh)
{
	if (sh == NULL)
		return;
	pthread_mutex_destroy(&sh->lock);
	free(sh);
}

/* Entries are claimed and freed under sh->lock (a connection made or
 * gone, never per frame), so a lookup scans the whole probe sequence
 * and a freed slot breaks no chain. The counters in an entry stay
 * atomics: the loops holding it add and take without the lock. */
struct uring_host *uring_host_get(struct tw_uring_shared *sh, uint64_t host)
{
	if (host == 0)
		return &sh->other;
	uint32_t i = (uint32_t)((host * 0x9e3779b97f4a7c15ull) >> 53);
	struct uring_host *hs = NULL;
	pthread_mutex_lock(&sh->lock);
	for (uint32_t k = 0; k < URING_HOSTS; k++) {
		struct uring_host *e = &sh->hosts[(i + k) % URING_HOSTS];
		uint64_t h = atomic_load_explicit(&e->host,
						  memory_order_relaxed);
		if (h == host) {
			hs = e;
			break;
		}
		if (h == 0 && hs == NULL)
			hs = e; /* the first free slot, if host has none */
	}
	if (hs != NULL) {
		atomic_store_explicit(&hs->host, host, memory_order_relaxed);
		hs->refs++;
	}
	pthread_mutex_unlock(&sh->lock);
	return hs != NULL ? hs : &sh->other; /* a full table: they share */
}

void uring_host_put(struct tw_uring_shared *sh, struct uring_host *hs)
{
	if (hs == &sh->other)
		return;
	pthread_mutex_lock(&sh->lock);
	if (--hs->refs == 0)
		atomic_store_explicit(&hs->host, 0, memory_order_relaxed);
	pthread_mutex_unlock(&sh->lock);
}

static void linger_fire(struct tw_timer *tm, void *arg);

/* A connect unanswered for connect_timeout_ms (a SYN dropped on the way:
 * the kernel alone would retry for about two minutes) fails. */
static void connect_fire(struct tw_timer *tm, void *arg)
{
	(void)tm;
	struct uconn *c = arg;
	if (c->state != C_CONNECTING || c->closing)
		return;
	c->t->st.connect_timeouts++;
	c->base.why = "no answer to the connection request within "
		      "connect_timeout_ms";
	uconn_fail(c, TW_EUNREACHABLE);
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
	urx_conn_init(c);
	utx_conn_init(c);
	c->connect_req.fn = on_connect;
	c->cancel_req.fn = on_cancel;
	uconn_set_host(c, &t->sh->other);
	tw_timer_init(&c->linger_tm, linger_fire, c);
	tw_timer_init(&c->connect_tm, connect_fire, c);
	TAILQ_INSERT_HEAD(&t->conns, c, link);
	t->nconns++;
	return c;
}

static void conn_free(struct uconn *c)
{
	struct ut *t = c->t;
	urx_conn_free(c);
	if (c->counted) {
		atomic_fetch_sub_explicit(&c->hs->conns, 1,
					  memory_order_relaxed);
		atomic_fetch_sub_explicit(&t->sh->conns, 1,
					  memory_order_relaxed);
	}
	uring_host_put(t->sh, c->hs);
	TAILQ_REMOVE(&t->conns, c, link);
	t->nconns--;
	utx_conn_free(c);
	free(c);
}

static void arm_connect(struct uconn *c)
{
	struct io_uring_sqe *sqe = sqe_get(c->t);
	if (sqe == NULL) {
		c->want_connect = true;
		uconn_dirty(c);
		return;
	}
	c->want_connect = false;
	io_uring_prep_connect(sqe, c->fd, (struct sockaddr *)&c->peer,
			      c->peer_len);
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
		uconn_finalize(c);
		return;
	}
	if (cqe->res < 0) {
		c->base.why = strerrordesc_np(-cqe->res);
		uconn_fail(c, TW_EUNREACHABLE);
		return;
	}
	c->state = C_OPEN;
	tw_timer_cancel(tw_loop_timers(t->base.loop), &c->connect_tm);
	t->st.conns_connected++;
	/* Now that it is bound, our own non-loopback address counts too. */
	cc_setup(t, c->fd,
		 c->local || same_host(c->fd, (struct sockaddr *)&c->peer));
	t->base.cbs.on_conn(t->base.cbs.ctx, &c->base, TW_OK);
	if (c->closing)
		return;
	urx_open(c);
	if (!STAILQ_EMPTY(&c->sq))
		uconn_dirty(c);
}

/* A URL this transport cannot use, said so. */
static tw_status bad_addr(const char *verb, const char *addr)
{
	return tw_fail(TW_EINVAL,
		       "io_uring: cannot %s '%.80s': not tcp://IPv4:port, "
		       "tcp://[IPv6]:port or tcp://localhost:port",
		       verb, addr ? addr : "(null)");
}

static tw_status u_connect(tw_transport *tt, const char *addr, tw_conn **out)
{
	struct ut *t = UT(tt);
	struct sockaddr_storage sa;
	socklen_t sl;
	if (out == NULL)
		return TW_EINVAL;
	*out = NULL;
	if (t->destroying)
		return TW_ESHUTDOWN;
	if (tw_netaddr_parse(addr, &sa, &sl) != TW_OK)
		return bad_addr("connect to", addr);
	int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return tw_fail(errno == ENOMEM || errno == ENOBUFS ? TW_ENOMEM
								   : TW_EIO,
			       "io_uring: no socket to connect to %.80s: %s",
			       addr, strerror(errno));
	sock_setup(t, fd);
	struct uconn *c = conn_new(t, fd, C_CONNECTING);
	if (c == NULL) {
		close(fd);
		return tw_fail_static(TW_ENOMEM,
				      "io_uring: no memory for a connection");
	}
	c->peer = sa;
	c->peer_len = sl;
	tw_conn_set_peer_sa(&c->base, (struct sockaddr *)&sa);
	uconn_set_host(c, uring_host_get(t->sh, c->base.peer_host));
	c->copying = !t->o.zc_same_host &&
		     same_host(fd, (struct sockaddr *)&sa);
	arm_connect(c);
	if (t->o.connect_timeout_ms != 0)
		tw_loop_timer_after(t->base.loop, &c->connect_tm,
				    (uint64_t)t->o.connect_timeout_ms *
					    1000000u);
	*out = &c->base;
	return TW_OK;
}

/* The layer above learned that c's peer runs on this kernel (another
 * network namespace, a container): the same-host congestion control and
 * no zero-copy attempts, as for loopback. Before the connection is up
 * this only marks it; on_connect applies it. */
static void u_set_local(tw_transport *tt, tw_conn *cc, bool local)
{
	struct ut *t = UT(tt);
	struct uconn *c = (struct uconn *)(void *)cc;
	if (c == NULL || c->closing || c->local == local)
		return;
	c->local = local;
	if (!local)
		return; /* an address of this host stays one */
	/* Over veth or loopback the kernel copies zero-copy sends; a peer
	 * reached through its own NIC (an SR-IOV VF) would not: then set
	 * zc_same_host. Never clears a copy fallback already taken. */
	if (!t->o.zc_same_host)
		c->copying = true;
	if (c->state == C_OPEN)
		cc_setup(t, c->fd, true);
}

static void u_close(tw_transport *tt, tw_conn *cc)
{
	(void)tt;
	if (cc == NULL)
		return;
	uconn_fail((struct uconn *)(void *)cc, TW_ESHUTDOWN);
}

static void u_pause(tw_transport *tt, tw_conn *cc, bool paused)
{
	struct uconn *c = (struct uconn *)(void *)cc;
	if (c == NULL || c->closing)
		return;
	if (paused && !(c->rx_hold & HOLD_PAUSE))
		UT(tt)->st.pauses++;
	urx_hold(c, HOLD_PAUSE, paused);
}

/* The deadline of close_after_send: the peer did not take it all. */
static void linger_fire(struct tw_timer *tm, void *arg)
{
	(void)tm;
	struct uconn *c = arg;
	c->t->st.lingers_cut++;
	uconn_fail(c, c->linger_st);
}

/* Whether a closing-after-send c has sent everything: then close it. */
static bool linger_check(struct uconn *c)
{
	if (!(c->rx_hold & HOLD_LINGER) || c->closing || c->held != 0)
		return false;
	uconn_fail(c, c->linger_st);
	return true;
}

static void u_close_after_send(tw_transport *tt, tw_conn *cc, tw_status st)
{
	(void)tt;
	struct uconn *c = (struct uconn *)(void *)cc;
	if (c == NULL || c->closing || (c->rx_hold & HOLD_LINGER))
		return;
	c->linger_st = st;
	urx_hold(c, HOLD_LINGER, true);
	if (c->state == C_OPEN && linger_check(c))
		return;
	tw_loop_timer_after(c->t->base.loop, &c->linger_tm,
			    TW_CLOSE_AFTER_SEND_NS);
	uconn_dirty(c); /* the poller closes it once the queue is empty */
}

/* ------------------------------------------------------------------ */
/* Listening                                                           */

static void on_accept(struct tw_uring_req *ur, struct io_uring_cqe *cqe);

/* Cancel l's multishot accept (its last completion still comes). */
static void lis_cancel(struct ulis *l)
{
	struct io_uring_sqe *sqe = sqe_get(l->t);
	if (sqe == NULL)
		return;
	io_uring_prep_cancel(sqe, &l->acc_req, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data(sqe, &l->cancel_req);
	l->ops++;
}

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
	struct sockaddr_storage pa;
	socklen_t pl = sizeof(pa);
	bool known = getpeername(fd, (struct sockaddr *)&pa, &pl) == 0 &&
		     (pa.ss_family == AF_INET || pa.ss_family == AF_INET6);
	tw_conn probe = {0};
	if (known)
		tw_conn_set_peer_sa(&probe, (struct sockaddr *)&pa);
	/* Connections per peer host and in all (uring.h, "Limits"): the
	 * excess is closed before anyone sees it. */
	struct uring_host *hs = uring_host_get(t->sh, probe.peer_host);
	uint32_t nh = atomic_fetch_add_explicit(&hs->conns, 1,
						memory_order_relaxed);
	uint32_t na = atomic_fetch_add_explicit(&t->sh->conns, 1,
						memory_order_relaxed);
	if (nh >= t->o.max_conns_per_host || na >= t->o.max_conns) {
		atomic_fetch_sub_explicit(&hs->conns, 1, memory_order_relaxed);
		atomic_fetch_sub_explicit(&t->sh->conns, 1,
					  memory_order_relaxed);
		uring_host_put(t->sh, hs);
		t->st.conns_refused++;
		TW_LOG(TW_LOG_WARN, "conn_refused",
		       "transport=uring peer=%s reason=\"%s (%u)\"",
		       probe.peer[0] ? probe.peer : "-",
		       nh >= t->o.max_conns_per_host ? "max_conns_per_host"
						     : "max_conns",
		       nh >= t->o.max_conns_per_host ? t->o.max_conns_per_host
						     : t->o.max_conns);
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
		return;
	}
	sock_setup(t, fd);
	struct uconn *c = conn_new(t, fd, C_OPEN);
	if (c == NULL) {
		atomic_fetch_sub_explicit(&hs->conns, 1, memory_order_relaxed);
		atomic_fetch_sub_explicit(&t->sh->conns, 1,
					  memory_order_relaxed);
		uring_host_put(t->sh, hs);
		close(fd);
		return;
	}
	c->counted = true;
	uconn_set_host(c, hs);
	if (known) {
		c->peer = pa;
		c->peer_len = pl;
		c->base.peer_host = probe.peer_host;
		memcpy(c->base.peer, probe.peer, sizeof(c->base.peer));
	}
	bool local = known && same_host(fd, (struct sockaddr *)&pa);
	c->copying = !t->o.zc_same_host && local;
	cc_setup(t, fd, local);
	t->st.conns_accepted++;
	t->base.cbs.on_conn(t->base.cbs.ctx, &c->base, TW_OK);
	urx_open(c);
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
	int res = cqe->res;
	if (res >= 0) {
		l->backoff_ns = 0;
		if (l->closing)
			close(res);
		else
			conn_accepted(t, res);
	} else if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS ||
		   res == -ENOMEM) {
		/* Re-arming at once would fail again at once: spinning. */
		t->st.accept_errors++;
		if (!l->failing && !l->closing) {
			l->failing = true;
			if (more)
				lis_cancel(l);
		}
	}
	if (more || l->closing)
		return;
	if (l->failing) {
		l->failing = false;
		l->backoff_ns = l->backoff_ns == 0 ? ACCEPT_BACKOFF_MIN_NS
				: l->backoff_ns >= ACCEPT_BACKOFF_MAX_NS / 2
					? ACCEPT_BACKOFF_MAX_NS
					: 2 * l->backoff_ns;
		t->st.accept_backoffs++;
		tw_loop_timer_after(t->base.loop, &l->backoff_tm,
				    l->backoff_ns);
		return;
	}
	arm_accept(l);
}

static void backoff_fire(struct tw_timer *tm, void *arg)
{
	(void)tm;
	struct ulis *l = arg;
	if (!l->closing && !l->armed)
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
	struct sockaddr_storage sa;
	socklen_t sl;
	if (t->destroying)
		return TW_ESHUTDOWN;
	if (tw_netaddr_parse(addr, &sa, &sl) != TW_OK)
		return bad_addr("listen on", addr);
	int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return tw_fail(TW_EIO, "io_uring: cannot listen on %.80s: %s",
			       addr, strerror(errno));
	int one = 1, zero = 0;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* [::] serves IPv4 peers too, whatever net.ipv6.bindv6only says. */
	if (sa.ss_family == AF_INET6 &&
	    tw_netaddr_is_wildcard((struct sockaddr *)&sa))
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero,
				 sizeof(zero));
	sock_setup(t, fd); /* accepted sockets inherit buffer sizes */
	if (bind(fd, (struct sockaddr *)&sa, sl) != 0 ||
	    listen(fd, 1024) != 0 ||
	    (sl = sizeof(sa),
	     getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)) {
		int e = errno;
		close(fd);
		return tw_fail(e == EADDRINUSE || e == EADDRNOTAVAIL ||
					       e == EACCES
				       ? TW_EINVAL
				       : TW_EIO,
			       "io_uring: cannot listen on %.128s: %s%s", addr,
			       strerror(e),
			       e == EADDRNOTAVAIL ? " (not an address of this "
						    "host)"
						  : "");
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
	tw_timer_init(&l->backoff_tm, backoff_fire, l);
	SLIST_INSERT_HEAD(&t->lis, l, link);
	arm_accept(l);
	if (bound != NULL && bound_len > 0 &&
	    !tw_netaddr_url((struct sockaddr *)&sa, bound, bound_len))
		return TW_EOVERFLOW; /* listening all the same */
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
	int w = urx_retry(c) + utx_flush(c);
	if (__builtin_expect(c->rx_hold & HOLD_LINGER, 0) && linger_check(c))
		w++;
	return w;
}

static int reap(struct ut *t)
{
	int work = 0;
	struct uconn *c;
	while ((c = STAILQ_FIRST(&t->reap)) != NULL) {
		STAILQ_REMOVE_HEAD(&t->reap, reap_link);
		if (c->dirty) {
			/* Rare: closed while waiting for an SQE. A walk, as
			 * the list is singly linked. */
			STAILQ_REMOVE(&t->dirty, c, uconn, dirty_link);
			c->dirty = false;
		}
		t->st.conns_closed++;
		urx_release(c);
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
	/* Up to the tail as it is now: what gets dirty meanwhile (c again
	 * included) waits for the next turn. Taken off one at a time, so
	 * c->dirty always says whether c is on the list. */
	struct uconn *last = STAILQ_LAST(&t->dirty, uconn, dirty_link);
	struct uconn *c;
	while ((c = STAILQ_FIRST(&t->dirty)) != NULL) {
		STAILQ_REMOVE_HEAD(&t->dirty, dirty_link);
		c->dirty = false;
		work += conn_service(c);
		if (c == last)
			break;
	}
	return work;
}

static int u_poll(void *arg)
{
	struct ut *t = arg;
	int work = 0;
	if (t->lis_want) {
		t->lis_want = false;
		struct ulis *l;
		SLIST_FOREACH(l, &t->lis, link)
		if (l->want && !l->closing) {
			arm_accept(l);
			work++;
		}
	}
	/* Sends first (a call waiting to go out should not wait for our
	 * reads), then the direct reads, then the answers they made. */
	if (!STAILQ_EMPTY(&t->dirty))
		work += service_dirty(t);
	if (rxs_room_freed(&t->rxe))
		work += rxs_retry_waiters(&t->rxe);
	if (t->nhot != 0) {
		int b = urx_busy_poll(t);
		if (b != 0 && !STAILQ_EMPTY(&t->dirty))
			b += service_dirty(t);
		work += b;
	}
	work += reap(t);
	return work;
}

/* ------------------------------------------------------------------ */
/* Create and destroy                                                  */

tw_status tw_uring_transport_create(tw_loop *l, const struct tw_uring_opts *in,
				    const struct tw_transport_cbs *cbs,
				    tw_transport **out)
{
	return tw_uring_transport_create_in(l, in, cbs, NULL, out);
}

tw_status tw_uring_transport_create_in(tw_loop *l,
				       const struct tw_uring_opts *in,
				       const struct tw_transport_cbs *cbs,
				       struct tw_uring_shared *sh,
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
	TAILQ_INIT(&t->conns);
	STAILQ_INIT(&t->dirty);
	STAILQ_INIT(&t->reap);
	t->sh = sh;
	if (sh == NULL) {
		t->sh = tw_uring_shared_create();
		t->own_sh = true;
		if (t->sh == NULL) {
			free(t);
			return TW_ENOMEM;
		}
	}
	snprintf(t->cc_local, sizeof(t->cc_local), "%s",
		 o.cc_local ? o.cc_local : "");
	snprintf(t->cc_remote, sizeof(t->cc_remote), "%s",
		 o.cc_remote ? o.cc_remote : "");
	/* the caller's */
	t->o.cc_local = t->o.cc_remote = t->o.listen_host = NULL;
	t->o.advertise_host = NULL;

	if (t->o.busy_poll_conns > HOT_MAX)
		t->o.busy_poll_conns = HOT_MAX;
	/* The ordering argument of busy polling (uring.h) needs the kernel
	 * to read for io_uring only inside our own io_uring_enter. */
	if ((ring->flags &
	     (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG)) !=
	    (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG))
		t->o.busy_poll_conns = 0;
	tw_status st = urx_setup(t);
	if (st != TW_OK) {
		if (t->own_sh)
			tw_uring_shared_destroy(t->sh);
		free(t);
		return st;
	}
	rxs_env_start(&t->rxe);
	t->poller.fn = u_poll;
	t->poller.idle = urx_idle;
	t->poller.arg = t;
	tw_loop_add_poller(l, &t->poller);
	t->poller_on = true;
	*out = &t->base;
	return TW_OK;
}

/* Run the ring until every operation of ours has completed. Completions
 * go to their owners as the loop would send them. */
static bool drain(struct ut *t)
{
	uint64_t deadline = tw_now_ns() + DRAIN_NS;
	for (;;) {
		bool lis_busy = false;
		struct ulis *l;
		SLIST_FOREACH(l, &t->lis, link)
		lis_busy |= l->ops != 0;
		(void)u_poll(t);
		if (t->nconns == 0 && !lis_busy)
			return true;
		if (tw_now_ns() > deadline)
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
			struct __kernel_timespec ts = {.tv_sec = 0,
						       .tv_nsec = 1000000};
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
	struct ulis *l, *ln;
	SLIST_FOREACH(l, &t->lis, link)
	{
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
	struct tw_timer_wheel *w = tw_loop_timers(t->base.loop);
	rxs_env_stop(&t->rxe);
	SLIST_FOREACH(l, &t->lis, link)
	tw_timer_cancel(w, &l->backoff_tm);
	struct uconn *c;
	TAILQ_FOREACH(c, &t->conns, link)
	uconn_fail(c, TW_ESHUTDOWN);
	bool clean = drain(t);
	if (t->poller_on)
		tw_loop_remove_poller(t->base.loop, &t->poller);
	for (l = SLIST_FIRST(&t->lis); l != NULL; l = ln) {
		ln = SLIST_NEXT(l, link);
		close(l->fd);
		if (l->ops == 0)
			free(l); /* else the kernel may still post to it */
	}
	/* Without a clean drain the kernel may still own some memory: leak
	 * it rather than free it from under an operation. */
	urx_teardown(t, clean);
	if (clean) {
		if (t->own_sh)
			tw_uring_shared_destroy(t->sh);
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
	const struct ut *t = (const struct ut *)(const void *)tt;
	*s = t->st;
	RXS_COUNTS_ADD(s, &t->rxe.cnt);
	s->large_frames += t->rxe.cnt.large_frames;
	s->large_cache_hits += t->rxe.cnt.large_cache_hits;
}

static const struct tw_transport_ops uring_ops = {
	.name = "uring",
	.listen = u_listen,
	.connect = u_connect,
	.send = utx_send,
	.close = u_close,
	.pause = u_pause,
	.close_after_send = u_close_after_send,
	.set_local = u_set_local,
	.destroy = u_destroy,
};
