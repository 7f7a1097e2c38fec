/* Same-host transport: the transport itself (options, create, destroy),
 * its connections' lifecycle from connect or accept to close, the trust
 * switch from the socket to the rings, the poller and its idle hook.
 * Sockets are shm_sock.c's, the mapping shm_map.c's, receiving
 * shm_rx.c's, sending shm_tx.c's. */
#include "dataplane/shm.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dataplane/clock.h"
#include "dataplane/err.h"
#include "dataplane/shm_impl.h"

/* How long destroy waits for the kernel to finish our operations. */
#define DRAIN_NS (2ull * 1000 * 1000 * 1000)

static const struct tw_transport_ops shm_ops;

/* ------------------------------------------------------------------ */
/* Options                                                             */

void tw_shm_opts_init(struct tw_shm_opts *o, size_t opts_size)
{
	if (o == NULL || opts_size < sizeof(o->opts_size))
		return;
	struct tw_shm_opts d = {
		.opts_size = opts_size,
		.transport = TW_TRANSPORT_SHM,
		.dir = NULL,
		.socket_mode = 0600,
		.ring_size = 4u << 20,
		.max_queued = 4096,
		.rx_pool_buf_size = 64u << 10,
		.rx_pool_count = 128,
		.large_frame = 256u << 10,
		.large_cache_bytes = 128u << 20,
		.asm_worker_bytes = 4 * SHM_FRAME_DEFAULT_MAX,
		.stall_timeout_ms = 30000,
		.max_conns = 2048,
		.connect_timeout_ms = 10000,
		.no_rings = false,
		.cma_threshold = UINT64_MAX,
	};
	memcpy(o, &d, opts_size < sizeof(d) ? opts_size : sizeof(d));
}

void tw_shm_opts_get(const struct tw_shm_opts *in, struct tw_shm_opts *o)
{
	tw_shm_opts_init(o, sizeof(*o));
	tw_opts_copy(o, sizeof(*o), in);
}

const char *tw_shm_default_dir(void)
{
	const char *x = getenv("XDG_RUNTIME_DIR");
	return x != NULL && x[0] == '/' ? x : "/dev/shm";
}

/* Room left in a path for "/tw-<pid>-<n>-<8 hex>.sock". */
#define SOCK_NAME_MAX 44u

tw_status tw_shm_opts_check(const struct tw_shm_opts *in)
{
	tw_status st = tw_transport_opts_check_head(in, TW_TRANSPORT_SHM,
						    "tw_shm_opts_init");
	if (st != TW_OK)
		return st;
	struct tw_shm_opts o;
	tw_shm_opts_get(in, &o);
	uint64_t r = o.ring_size;
	if (r < SHM_RING_MIN || r > SHM_RING_MAX || (r & (r - 1)) != 0)
		return tw_fail(TW_EINVAL,
			       "shm: ring_size %u is not a power of 2 from "
			       "64 KiB to 1 GiB",
			       o.ring_size);
	if (o.dir != NULL &&
	    (o.dir[0] != '/' || strlen(o.dir) + SOCK_NAME_MAX >= SHM_PATH_MAX))
		return tw_fail(TW_EINVAL,
			       "shm: dir '%.80s' is not an absolute path of "
			       "at most %u bytes",
			       o.dir, SHM_PATH_MAX - SOCK_NAME_MAX - 1);
	if (o.socket_mode == 0 || o.socket_mode > 0777)
		return tw_fail(TW_EINVAL,
			       "shm: socket_mode %o is not a permission mode "
			       "(1..0777)",
			       o.socket_mode);
	if (o.max_queued == 0)
		return tw_fail(TW_EINVAL, "shm: max_queued must be > 0");
	if (o.rx_pool_buf_size < TW_FRAME_HDR_SIZE || o.rx_pool_count == 0)
		return tw_fail(TW_EINVAL,
			       "shm: rx_pool_buf_size must be at least %u and "
			       "rx_pool_count > 0",
			       TW_FRAME_HDR_SIZE);
	if (o.asm_worker_bytes == 0)
		return tw_fail(TW_EINVAL, "shm: asm_worker_bytes must be > 0");
	if (o.stall_timeout_ms != 0 && o.stall_timeout_ms < 4)
		return tw_fail(TW_EINVAL,
			       "shm: stall_timeout_ms %u: 0 (never) or at "
			       "least 4",
			       o.stall_timeout_ms);
	if (o.max_conns == 0)
		return tw_fail(TW_EINVAL, "shm: max_conns must be > 0");
	return TW_OK;
}

/* ------------------------------------------------------------------ */
/* Closing                                                             */

static void on_cancel(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	(void)cqe;
	struct sconn *c = container_of(ur, struct sconn, cancel_req);
	c->ops--;
	sconn_fail(c, c->close_st, NULL);
}

/* Cancel what is armed for a closing c (each once). False when the SQ
 * had no room: the service tries again. */
static bool cancel_ops(struct sconn *c)
{
	struct {
		bool armed;
		void *ud;
		uint8_t bit;
	} ops[] = {
		{c->sock_armed, &c->sock_req, 1},
		{c->out_armed, &c->out_req, 2},
		{c->bell_armed, &c->bell_req, 4},
		{c->ring_busy, &c->ring_req, 8},
	};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (!ops[i].armed || (c->cancelled & ops[i].bit))
			continue;
		struct io_uring_sqe *sqe = tw_loop_sqe(c->t->base.loop);
		if (sqe == NULL)
			return false;
		io_uring_prep_cancel(sqe, ops[i].ud, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data(sqe, &c->cancel_req);
		c->cancelled |= ops[i].bit;
		c->ops++;
	}
	return true;
}

/* Nothing in flight any more: close the socket, queue c for its close
 * upcall. */
static void finalize(struct sconn *c)
{
	if (!c->closing || c->ops != 0 || c->reaped)
		return;
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	c->reaped = true;
	STAILQ_INSERT_TAIL(&c->t->reap, c, reap_link);
}

void sconn_fail(struct sconn *c, tw_status st, const char *why)
{
	struct st *t = c->t;
	if (!c->closing) {
		c->closing = true;
		c->close_st = st;
		if (why != NULL)
			c->base.why = why;
		struct tw_timer_wheel *w = tw_loop_timers(t->base.loop);
		tw_timer_cancel(w, &c->linger_tm);
		tw_timer_cancel(w, &c->connect_tm);
		/* The peer sees its hang up now, whatever we still wait for. */
		if (c->fd >= 0)
			(void)shutdown(c->fd, SHUT_RDWR);
		/* Every queued byte was copied (into the ring or the socket)
		 * or never will be: nothing the kernel reads is ours. */
		stx_fail_all(c, st);
	}
	if (!cancel_ops(c))
		sconn_dirty(c);
	finalize(c);
}

void sconn_proto(struct sconn *c, const char *why)
{
	if (c->closing)
		return;
	c->t->st.proto_errors++;
	sconn_fail(c, TW_EPROTO, why);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */

static void linger_fire(struct tw_timer *tm, void *arg);

static void connect_fire(struct tw_timer *tm, void *arg)
{
	(void)tm;
	struct sconn *c = arg;
	if (c->state == SC_CONNECTING && !c->closing)
		sconn_dirty(c);
}

struct sconn *sconn_new(struct st *t, int fd, uint8_t state, bool accepted)
{
	struct sconn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->base.t = &t->base;
	c->base.id = ++t->next_id;
	c->t = t;
	c->fd = fd;
	c->state = state;
	c->accepted = accepted;
	c->my_bell = c->peer_bell = -1;
	for (unsigned i = 0; i < SETUP_NFDS; i++)
		c->setup_fds[i] = -1;
	STAILQ_INIT(&c->sq);
	STAILQ_INIT(&c->wq);
	c->cancel_req.fn = on_cancel;
	tw_timer_init(&c->linger_tm, linger_fire, c);
	tw_timer_init(&c->connect_tm, connect_fire, c);
	srx_conn_init(c);
	TAILQ_INSERT_HEAD(&t->conns, c, link);
	t->nconns++;
	return c;
}

static void sconn_free(struct sconn *c)
{
	struct st *t = c->t;
	srx_conn_free(c);
	shm_map_free(c);
	for (unsigned i = 0; i < SETUP_NFDS; i++)
		if (c->setup_fds[i] >= 0)
			close(c->setup_fds[i]);
	if (c->fd >= 0)
		close(c->fd);
	if (c->counted)
		atomic_fetch_sub_explicit(&t->sh->conns, 1,
					  memory_order_relaxed);
	if (c->in_rconns)
		TAILQ_REMOVE(&t->rconns, c, rlink);
	TAILQ_REMOVE(&t->conns, c, link);
	t->nconns--;
	free(c->stash);
	free(c);
}

static void s_close(tw_transport *tt, tw_conn *cc)
{
	(void)tt;
	if (cc != NULL)
		sconn_fail(SC(cc), TW_ESHUTDOWN, NULL);
}

static void s_pause(tw_transport *tt, tw_conn *cc, bool paused)
{
	struct sconn *c = SC(cc);
	if (c == NULL || c->closing)
		return;
	if (paused && !(c->rx_hold & HOLD_PAUSE))
		ST(tt)->st.pauses++;
	srx_hold(c, HOLD_PAUSE, paused);
}

/* The deadline of close_after_send: the peer did not take it all. */
static void linger_fire(struct tw_timer *tm, void *arg)
{
	(void)tm;
	struct sconn *c = arg;
	c->t->st.lingers_cut++;
	sconn_fail(c, c->linger_st, NULL);
}

static bool linger_check(struct sconn *c)
{
	if (!(c->rx_hold & HOLD_LINGER) || c->closing || c->held != 0 ||
	    c->ctl_due != 0)
		return false;
	sconn_fail(c, c->linger_st, NULL);
	return true;
}

static void s_close_after_send(tw_transport *tt, tw_conn *cc, tw_status st)
{
	(void)tt;
	struct sconn *c = SC(cc);
	if (c == NULL || c->closing || (c->rx_hold & HOLD_LINGER))
		return;
	c->linger_st = st;
	srx_hold(c, HOLD_LINGER, true);
	if (c->announced && linger_check(c))
		return;
	tw_loop_timer_after(c->t->base.loop, &c->linger_tm,
			    TW_CLOSE_AFTER_SEND_NS);
	sconn_dirty(c); /* the service closes it once the queue is empty */
}

/* ------------------------------------------------------------------ */
/* The switch to the rings (shm.h, "Set-up")                           */

static void rconns_add(struct sconn *c)
{
	if (c->in_rconns)
		return;
	c->in_rconns = true;
	TAILQ_INSERT_TAIL(&c->t->rconns, c, rlink);
}

static void on_bell(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	struct sconn *c = container_of(ur, struct sconn, bell_req);
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		c->bell_armed = false;
		c->ops--;
	}
	if (c->closing) {
		sconn_fail(c, c->close_st, NULL);
		return;
	}
	if (cqe->res > 0) {
		c->t->st.wakeups++;
		/* Empty the counter without ever blocking: the peer shares
		 * the eventfd and may have cleared O_NONBLOCK. */
		struct iovec v = {&c->bell_sink, sizeof(c->bell_sink)};
		(void)preadv2(c->my_bell, &v, 1, -1, RWF_NOWAIT);
	}
	/* The rings are read by the poller, which runs after completions;
	 * an ended poll is armed again by the service. */
	if (!c->bell_armed)
		sconn_dirty(c);
}

static void bell_arm(struct sconn *c)
{
	if (c->bell_armed || c->closing || c->my_bell < 0)
		return;
	struct io_uring_sqe *sqe = tw_loop_sqe(c->t->base.loop);
	if (sqe == NULL) {
		sconn_dirty(c);
		return;
	}
	c->bell_req.fn = on_bell;
	io_uring_prep_poll_multishot(sqe, c->my_bell, POLLIN);
	io_uring_sqe_set_data(sqe, &c->bell_req);
	c->bell_armed = true;
	c->ops++;
}

/* The connecting side, trusted and READY: make the rings, send SETUP. */
static void maybe_setup(struct sconn *c)
{
	struct st *t = c->t;
	if (!c->trusted || !c->peer_ready || c->setup_done || c->accepted ||
	    t->o.no_rings)
		return;
	c->setup_done = true;
	uint64_t ring = t->o.ring_size;
	if (c->peer_max_ring < ring)
		ring = c->peer_max_ring;
	if (shm_map_create(c, ring, c->setup_fds) != TW_OK) {
		/* Stay on the socket; the peer waits for nothing. */
		t->st.ring_refusals++;
		return;
	}
	c->mapped = true;
	c->ctl_due |= CTL_SETUP;
	sconn_dirty(c);
}

/* c is trusted and announced: the accepting side says READY. */
static void trust_start(struct sconn *c)
{
	if (c->t->o.no_rings)
		return;
	if (c->accepted) {
		c->ctl_due |= CTL_READY;
		sconn_dirty(c);
	} else {
		maybe_setup(c);
	}
}

static void s_trusted(tw_transport *tt, tw_conn *cc)
{
	(void)tt;
	struct sconn *c = SC(cc);
	if (c == NULL || c->closing || c->trusted)
		return;
	c->trusted = true;
	if (c->announced)
		trust_start(c);
}

/* The peer's SWITCH named its address of the mapping: if we can read its
 * memory there (shm_cma_probe), tell its producer it may send CMA
 * records. A peer that cannot be read gets the ring, and the count. */
static void cma_start(struct sconn *c, uint64_t peer_addr)
{
	struct st *t = c->t;
	if (t->o.cma_threshold == UINT64_MAX)
		return;
	if (!shm_cma_probe(c, peer_addr)) {
		t->st.cma_denied++;
		return;
	}
	c->cma_rx = true;
	t->st.cma_conns++;
	atomic_store_explicit(&c->rxr.ctl->cma_ok, 1, memory_order_relaxed);
}

static bool pow2_ring(uint64_t r)
{
	return r >= SHM_RING_MIN && r <= SHM_RING_MAX && (r & (r - 1)) == 0;
}

static void close_all(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

void shm_on_ctl(struct sconn *c, const struct shm_msg *m, const void *body,
		int *fds, unsigned nfds)
{
	struct st *t = c->t;
	if (m->type != SM_SETUP && nfds != 0) {
		close_all(fds, nfds);
		sconn_proto(c, "shm: descriptors with a control message");
		return;
	}
	switch (m->type) {
	case SM_READY: {
		struct shm_ready r;
		if (c->accepted || c->peer_ready || m->len != sizeof(r))
			break;
		memcpy(&r, body, sizeof(r));
		if (!pow2_ring(r.max_ring))
			break;
		c->peer_ready = true;
		c->peer_max_ring = r.max_ring;
		maybe_setup(c);
		return;
	}
	case SM_SETUP: {
		struct shm_setup s;
		/* Descriptors come only once we trust the peer (before,
		 * the socket was read without room for them). */
		if (!c->accepted || !c->trusted || c->mapped || t->o.no_rings ||
		    (c->ctl_due & CTL_NORING) || m->len != sizeof(s) ||
		    nfds != SETUP_NFDS)
			break;
		memcpy(&s, body, sizeof(s));
		if (s.version != SHM_SETUP_VERSION || s.flags != 0)
			break;
		const char *why;
		tw_status st = shm_map_accept(c, s.ring_size, fds, &why);
		if (st == TW_EPROTO) {
			sconn_proto(c, why);
			return;
		}
		if (st != TW_OK) {
			/* Ours to lack (memory): no rings, both stay on the
			 * socket. */
			t->st.ring_refusals++;
			c->noring_why = NORING_MEMORY;
			c->ctl_due |= CTL_NORING;
			sconn_dirty(c);
			return;
		}
		c->mapped = true;
		bell_arm(c);
		rconns_add(c);
		c->ctl_due |= CTL_SWITCH;
		sconn_dirty(c);
		return;
	}
	case SM_SWITCH: {
		struct shm_switch sw;
		if (m->len != sizeof(sw) || !c->mapped || c->rx_ring ||
		    (c->accepted && !c->tx_ring))
			break;
		memcpy(&sw, body, sizeof(sw));
		/* Every byte after this message is in the ring. */
		c->rx_ring = true;
		rconns_add(c);
		cma_start(c, sw.map_addr);
		if (!c->accepted) {
			bell_arm(c);
			c->ctl_due |= CTL_SWITCH;
		} else {
			t->st.rings_up++;
		}
		sconn_dirty(c);
		return;
	}
	case SM_NORING: {
		if (c->accepted || !c->mapped || c->rx_ring ||
		    m->len != sizeof(struct shm_noring))
			break;
		/* The peer could not map: its doorbell is not armed, ours
		 * neither; both stay on the socket. */
		shm_map_free(c);
		c->mapped = false;
		t->st.ring_refusals++;
		return;
	}
	default:
		break;
	}
	close_all(fds, nfds);
	sconn_proto(c, "shm: a socket message out of place in the set-up "
		       "protocol, or malformed");
}

/* ------------------------------------------------------------------ */
/* The poller                                                          */

/* The peer hung up: what it published is delivered first (unless c is
 * held), then c ends. */
static void hup_drain(struct sconn *c)
{
	/* At most the ring's bytes in passes of RX_PASS_BYTES, or its
	 * records in passes of RX_PASS_RECORDS: bounded. */
	for (uint64_t i = 0; i < 1 + c->rxr.size / 8 / RX_PASS_RECORDS; i++)
		if (c->closing || c->rx_hold != 0 || srx_ring(c) == 0)
			break;
}

static int conn_service(struct sconn *c)
{
	struct st *t = c->t;
	if (c->closing) {
		sconn_fail(c, c->close_st, NULL); /* retry the cancels */
		return 0;
	}
	int work = 0;
	if (c->state == SC_CONNECTING) {
		if (shm_connect_retry(c) == 0 || c->closing)
			return 0;
		work++;
	}
	if (!c->announced) {
		/* Trusted before this (right after connect returned): the
		 * set-up starts now. Trusted from inside on_conn: it started
		 * there. */
		bool trusted = c->trusted;
		c->announced = true;
		c->known = true;
		if (!c->accepted)
			t->st.conns_connected++;
		t->base.cbs.on_conn(t->base.cbs.ctx, &c->base, TW_OK);
		if (c->closing)
			return 1;
		if (trusted)
			trust_start(c);
		work++;
	}
	if (!c->sock_armed)
		shm_sock_arm(c);
	if (c->mapped && !c->bell_armed && (c->accepted || c->rx_ring))
		bell_arm(c);
	if (c->sock_hup && c->rx_hold != 0) {
		t->st.peer_gone++;
		sconn_fail(c, TW_EUNREACHABLE,
			   "the peer closed the connection (or its process "
			   "ended)");
		return 1;
	}
	if (c->rx_ring && c->sock_hup)
		hup_drain(c);
	if (c->sock_rd || c->stash_len != 0)
		work += shm_sock_read(c);
	if (c->closing)
		return 1;
	work += stx_flush(c);
	if (__builtin_expect(c->rx_hold & HOLD_LINGER, 0) && linger_check(c))
		work++;
	return work;
}

static int service_dirty(struct st *t)
{
	int work = 0;
	/* Up to the tail as it is now: what gets dirty meanwhile waits for
	 * the next turn. */
	struct sconn *last = STAILQ_LAST(&t->dirty, sconn, dirty_link);
	struct sconn *c;
	while ((c = STAILQ_FIRST(&t->dirty)) != NULL) {
		STAILQ_REMOVE_HEAD(&t->dirty, dirty_link);
		c->dirty = false;
		work += conn_service(c);
		if (c == last)
			break;
	}
	return work;
}

static int reap(struct st *t)
{
	int work = 0;
	struct sconn *c;
	while ((c = STAILQ_FIRST(&t->reap)) != NULL) {
		STAILQ_REMOVE_HEAD(&t->reap, reap_link);
		if (c->dirty) {
			STAILQ_REMOVE(&t->dirty, c, sconn, dirty_link);
			c->dirty = false;
		}
		t->st.conns_closed++;
		srx_release(c);
		tw_fault_conn_closed(&t->base, &c->base, c->close_st);
		if (c->known)
			t->base.cbs.on_conn(t->base.cbs.ctx, &c->base,
					    c->close_st);
		sconn_free(c);
		work++;
	}
	return work;
}

static int s_poll(void *arg)
{
	struct st *t = arg;
	int work = 0;
	if (t->lis_ready)
		work += shm_accept_ready(t);
	if (!STAILQ_EMPTY(&t->dirty))
		work += service_dirty(t);
	if (rxs_room_freed(&t->rxe))
		work += rxs_retry_waiters(&t->rxe);
	/* The rings: what came in, then what waits for room. A connection
	 * closed meanwhile stays on the list (skipped) until reap frees
	 * it, after this walk. */
	struct sconn *c;
	TAILQ_FOREACH(c, &t->rconns, rlink)
	{
		if (c->closing)
			continue;
		if (c->rx_ring)
			work += srx_ring(c);
		if (c->tx_ring && !c->closing &&
		    (!STAILQ_EMPTY(&c->sq) || !STAILQ_EMPTY(&c->wq)))
			work += stx_flush(c);
	}
	/* Sends the frames just delivered made. */
	if (!STAILQ_EMPTY(&t->dirty))
		work += service_dirty(t);
	work += reap(t);
	return work;
}

static void on_kick(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	(void)cqe;
	struct st *t = container_of(ur, struct st, kick_req);
	t->kick_armed = false;
}

/* The loop is about to sleep: say so in every ring we would be woken
 * for, then look once more (shm.h, "Waking"). */
static void s_idle(void *arg)
{
	struct st *t = arg;
	bool any = false;
	struct sconn *c;
	TAILQ_FOREACH(c, &t->rconns, rlink)
	{
		if (c->closing)
			continue;
		if (c->rx_ring && c->rx_hold == 0) {
			atomic_store_explicit(&c->rxr.ctl->cons_sleeping, 1,
					      memory_order_seq_cst);
			c->slept_rx = any = true;
		}
		/* Waiting for room, or for the peer to read what it reads
		 * from our memory (CMA): its head's moves matter. */
		if (c->tx_ring && (c->tx_blocked || !STAILQ_EMPTY(&c->wq))) {
			atomic_store_explicit(&c->txr.ctl->prod_waiting, 1,
					      memory_order_seq_cst);
			c->slept_tx = any = true;
		}
	}
	if (!any)
		return;
	/* Dekker, the sleeper's side: our flags before the loads of the
	 * peers' indexes (stx_wake_peer has the other half). */
	atomic_thread_fence(memory_order_seq_cst);
	bool kick = false;
	TAILQ_FOREACH(c, &t->rconns, rlink)
	{
		uint64_t n;
		if (c->slept_rx && (!shm_ring_avail(&c->rxr, &n) || n != 0))
			kick = true;
		if (c->slept_tx && stx_could_move(c))
			kick = true;
	}
	if (!kick || t->kick_armed)
		return;
	/* Bytes or room came between the flags and the sleep: a NOP's
	 * completion ends the sleep at once (the sleep submits it). */
	struct io_uring_sqe *sqe = tw_loop_sqe(t->base.loop);
	if (sqe == NULL)
		return;
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data(sqe, &t->kick_req);
	t->kick_armed = true;
	t->st.kicks++;
}

/* ------------------------------------------------------------------ */
/* Create and destroy                                                  */

struct tw_shm_shared *tw_shm_shared_create(void)
{
	return calloc(1, sizeof(struct tw_shm_shared));
}

void tw_shm_shared_destroy(struct tw_shm_shared *sh)
{
	free(sh);
}

tw_status tw_shm_transport_create(tw_loop *l, const struct tw_shm_opts *in,
				  const struct tw_transport_cbs *cbs,
				  struct tw_shm_shared *sh, tw_transport **out)
{
	if (out == NULL)
		return TW_EINVAL;
	*out = NULL;
	if (l == NULL || cbs == NULL || cbs->on_frame == NULL ||
	    cbs->on_conn == NULL)
		return TW_EINVAL;
	tw_status st = tw_shm_opts_check(in);
	if (st != TW_OK)
		return st;
	if (tw_loop_uring(l) == NULL)
		return tw_fail(TW_ENOTSUP,
			       "shm: the loop has no io_uring (its doorbells "
			       "and sockets are polled there)");
	struct st *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return TW_ENOMEM;
	t->base.ops = &shm_ops;
	t->base.loop = l;
	t->base.cbs = *cbs;
	tw_shm_opts_get(in, &t->o);
	t->o.dir = NULL; /* the caller's string is not kept */
	TAILQ_INIT(&t->conns);
	TAILQ_INIT(&t->rconns);
	STAILQ_INIT(&t->dirty);
	STAILQ_INIT(&t->reap);
	t->kick_req.fn = on_kick;
	t->sh = sh;
	if (sh == NULL) {
		t->own_sh = true;
		t->sh = tw_shm_shared_create();
	}
	if (t->sh == NULL) {
		free(t);
		return TW_ENOMEM;
	}
	st = shm_map_probe(t);
	if (st == TW_OK && (t->rbuf = malloc(SM_BUF_SIZE)) == NULL)
		st = tw_fail_static(TW_ENOMEM, "shm: out of memory");
	if (st == TW_OK)
		st = srx_setup(t);
	if (st != TW_OK) {
		free(t->rbuf);
		if (t->own_sh)
			tw_shm_shared_destroy(t->sh);
		free(t);
		return st;
	}
	rxs_env_start(&t->rxe);
	t->poller.fn = s_poll;
	t->poller.idle = s_idle;
	t->poller.arg = t;
	tw_loop_add_poller(l, &t->poller);
	t->poller_on = true;
	*out = &t->base;
	return TW_OK;
}

/* Run the ring until every operation of ours has completed; other
 * users' completions go to them as the loop would send them. */
static bool drain(struct st *t)
{
	struct io_uring *ring = tw_loop_uring(t->base.loop);
	uint64_t deadline = tw_now_ns() + DRAIN_NS;
	for (;;) {
		(void)s_poll(t);
		if (t->nconns == 0 && !shm_lis_busy(t) && !t->kick_armed)
			return true;
		if (tw_now_ns() > deadline)
			return false;
		(void)io_uring_submit(ring);
		struct io_uring_cqe *cqe;
		unsigned got = 0;
		while (io_uring_peek_cqe(ring, &cqe) == 0) {
			uint64_t ud = cqe->user_data;
			struct tw_uring_req *r =
				ud == LIBURING_UDATA_TIMEOUT
					? NULL
					: (struct tw_uring_req *)(uintptr_t)ud;
			struct io_uring_cqe copy = *cqe;
			io_uring_cqe_seen(ring, cqe);
			if (r != NULL && r->fn != NULL)
				r->fn(r, &copy);
			got++;
		}
		if (got == 0) {
			struct __kernel_timespec ts = {.tv_sec = 0,
						       .tv_nsec = 1000000};
			(void)io_uring_wait_cqe_timeout(ring, &cqe, &ts);
		}
	}
}

static void s_destroy(tw_transport *tt)
{
	struct st *t = ST(tt);
	if (t == NULL)
		return;
	t->destroying = true;
	shm_lis_close_all(t);
	rxs_env_stop(&t->rxe);
	struct sconn *c;
	TAILQ_FOREACH(c, &t->conns, link)
	sconn_fail(c, TW_ESHUTDOWN, NULL);
	bool clean = drain(t);
	if (t->poller_on)
		tw_loop_remove_poller(t->base.loop, &t->poller);
	clean &= shm_lis_free_all(t, false);
	srx_teardown(t);
	free(t->rbuf);
	t->rbuf = NULL;
	/* Without a clean drain the kernel may still post to memory of
	 * ours: leak it rather than free it from under an operation. */
	if (clean) {
		if (t->own_sh)
			tw_shm_shared_destroy(t->sh);
		free(t);
	}
}

static tw_status s_listen(tw_transport *tt, const char *addr, char *bound,
			  size_t bound_len)
{
	struct st *t = ST(tt);
	if (t->destroying)
		return TW_ESHUTDOWN;
	return shm_listen(t, addr, bound, bound_len);
}

static tw_status s_connect(tw_transport *tt, const char *addr, tw_conn **out)
{
	struct st *t = ST(tt);
	if (out == NULL)
		return TW_EINVAL;
	*out = NULL;
	if (t->destroying)
		return TW_ESHUTDOWN;
	return shm_connect(t, addr, out);
}

void tw_shm_get_stats(const tw_transport *tt, struct tw_shm_stats *s)
{
	if (s == NULL)
		return;
	if (tt == NULL) {
		memset(s, 0, sizeof(*s));
		return;
	}
	const struct st *t = (const struct st *)(const void *)tt;
	*s = t->st;
	RXS_COUNTS_ADD(s, &t->rxe.cnt);
}

static const struct tw_transport_ops shm_ops = {
	.name = TW_TRANSPORT_SHM,
	.listen = s_listen,
	.connect = s_connect,
	.send = stx_send,
	.close = s_close,
	.pause = s_pause,
	.close_after_send = s_close_after_send,
	.trusted = s_trusted,
	.destroy = s_destroy,
};
