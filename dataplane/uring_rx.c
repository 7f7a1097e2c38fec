/* io_uring transport, receiving: each connection's receive mode (what
 * reads its socket), reassembly of frames into their buffers, the
 * provided-buffer ring, and busy polling. */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/err.h"
#include "dataplane/uring_impl.h"

/* A large frame is being reassembled: its rest lands in place. */
static inline bool rx_large(const struct uconn *c)
{
	return rxs_large(&c->rx);
}

/* ------------------------------------------------------------------ */
/* Receive modes (uring_impl.h, enum rx_mode)                          */

/*
 * The one place a connection's receive mode changes: enter to, doing what
 * entering it takes. MULTISHOT and INPLACE arm their recv (without an SQE
 * the mode becomes SQE_WAIT and c waits on the dirty list); STOPPING asks
 * for the multishot's cancel; CLOSED cancels whatever is armed. Nothing
 * leaves CLOSED.
 */
static void rx_to(struct uconn *c, enum rx_mode to)
{
	struct ut *t = c->t;
	struct io_uring_sqe *sqe;

	if (c->rx_mode == RX_CLOSED)
		return;
	switch (to) {
	case RX_MULTISHOT:
		if ((sqe = sqe_get(t)) == NULL)
			goto no_sqe;
		io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = (uint16_t)t->bgid;
		io_uring_sqe_set_data(sqe, &c->recv_req);
		c->ops++;
		t->st.recv_rearms++;
		break;
	case RX_INPLACE: {
		if ((sqe = sqe_get(t)) == NULL)
			goto no_sqe;
		uint64_t left = rxs_left(&c->rx);
		unsigned len = left > RECV_CHUNK_MAX ? RECV_CHUNK_MAX
						     : (unsigned)left;
		/* No MSG_WAITALL: a request the kernel has polled once and
		 * must wait for again is handed to an io-wq worker, which
		 * then blocks in recv on a third thread (on 2 cores beside
		 * two spinning loops, it takes turns with one of them).
		 * Without it every recv takes what has arrived and
		 * completes; on_inplace asks for the rest. */
		io_uring_prep_recv(sqe, c->fd, rxs_dst(&c->rx), len, 0);
		io_uring_sqe_set_data(sqe, &c->lrecv_req);
		c->ops++;
		t->st.large_recvs++;
		break;
	}
	case RX_STOPPING:
		uconn_cancel(c, &c->recv_req);
		break;
	case RX_CLOSED:
		if (c->rx_mode == RX_MULTISHOT || c->rx_mode == RX_STOPPING)
			uconn_cancel(c, &c->recv_req);
		else if (c->rx_mode == RX_INPLACE)
			uconn_cancel(c, &c->lrecv_req);
		break;
	case RX_IDLE:
	case RX_DIRECT:
	case RX_SQE_WAIT:
		break;
	}
	c->rx_mode = (uint8_t)to;
	t->rx_enters[to]++;
	return;
no_sqe:
	c->rx_mode = RX_SQE_WAIT;
	t->rx_enters[RX_SQE_WAIT]++;
	uconn_dirty(c);
}

/*
 * Who reads next, when nothing does (IDLE: a reader just ended; DIRECT or
 * SQE_WAIT). The rest of a large frame gets a plain recv into place,
 * except on a busy-polled connection whose plain recv just returned
 * (after_inplace): the poller reads the rest in place. Otherwise a
 * busy-polled connection is read directly, any other by the multishot.
 */
static enum rx_mode rx_next(const struct uconn *c, bool after_inplace)
{
	if (__builtin_expect(c->rx_hold != 0, 0))
		return RX_IDLE; /* paused, waiting for room, or closing */
	if (c->hot && (after_inplace || !rx_large(c)))
		return RX_DIRECT;
	return rx_large(c) ? RX_INPLACE : RX_MULTISHOT;
}

/* The multishot must make way (busy polling reads instead, or a large
 * frame's rest is to land in place): stop it. True if it was armed. */
static bool rx_stop_multishot(struct uconn *c)
{
	if (c->rx_mode != RX_MULTISHOT)
		return false;
	rx_to(c, RX_STOPPING);
	return true;
}

/* Whether the poller may recv() c's socket itself now: no io_uring recv
 * of it reads for us meanwhile. One does while a large frame's plain recv
 * is in flight, and while a large frame lands and the multishot is still
 * armed or winding down (its last CQE starts that plain recv). A
 * multishot winding down for busy polling alone does not hold the poller
 * back: what io_uring read waits in the CQ, which urx_busy_poll checks
 * before every direct read. */
static bool rx_direct_ok(const struct uconn *c)
{
	if (c->rx_mode == RX_INPLACE || c->rx_hold != 0)
		return false;
	return !(rx_large(c) &&
		 (c->rx_mode == RX_MULTISHOT || c->rx_mode == RX_STOPPING));
}

void urx_open(struct uconn *c)
{
	rx_to(c, rx_next(c, false));
}

int urx_retry(struct uconn *c)
{
	if (c->rx_mode != RX_SQE_WAIT)
		return 0;
	rx_to(c, rx_next(c, false));
	return 1;
}

void urx_close(struct uconn *c)
{
	rx_to(c, RX_CLOSED);
}

void urx_hold(struct uconn *c, uint8_t bit, bool on)
{
	if (on) {
		c->rx_hold |= bit;
		/* What reads now stops; an io_uring recv in flight ends and
		 * its completion picks IDLE (rx_next). */
		if (c->rx_mode == RX_MULTISHOT)
			rx_to(c, RX_STOPPING);
		else if (c->rx_mode == RX_DIRECT || c->rx_mode == RX_SQE_WAIT)
			rx_to(c, RX_IDLE);
		return;
	}
	c->rx_hold &= (uint8_t)~bit;
	if (c->rx_hold == 0 && c->rx_mode == RX_IDLE && c->state == C_OPEN &&
	    !c->closing)
		rx_to(c, rx_next(c, false));
}

/* ------------------------------------------------------------------ */
/* Reassembly (stream_rx.h)                                            */

static void rx_fail(struct rxs *s, tw_status st, enum rxs_why why)
{
	struct uconn *c = container_of(s, struct uconn, rx);
	if (why == RXS_STALL)
		c->base.why = rxs_why_str(why);
	uconn_fail(c, st);
}

static void rx_room_wait(struct rxs *s)
{
	urx_hold(container_of(s, struct uconn, rx), HOLD_ROOM, true);
}

/* The frame that waited has room: the bytes read past its header, then
 * read on. */
static void rx_room_found(struct rxs *s);

static const struct rxs_ops rx_ops = {
	.fail = rx_fail,
	.room_wait = rx_room_wait,
	.room_found = rx_room_found,
};

void urx_release(struct uconn *c)
{
	free(c->stash);
	c->stash = NULL;
	c->stash_len = c->stash_cap = 0;
	rxs_release(&c->rx);
}

/* Keep n bytes read past a header that waits for room. */
static void rx_stash(struct uconn *c, const unsigned char *p, size_t n)
{
	if (c->stash_len + n > c->stash_cap) {
		size_t cap = c->stash_cap ? 2 * c->stash_cap : 4096;
		while (cap < c->stash_len + n)
			cap *= 2;
		unsigned char *s = realloc(c->stash, cap);
		if (s == NULL) {
			uconn_fail(c, TW_ENOMEM);
			return;
		}
		c->stash = s;
		c->stash_cap = cap;
	}
	memcpy(c->stash + c->stash_len, p, n);
	c->stash_len += n;
}

/* Feed n stream bytes through the reassembler. What it does not take
 * waits in the stash while a frame waits for room; when closing after
 * the sends (HOLD_LINGER), it is dropped. */
static void rx_bytes(struct uconn *c, const unsigned char *p, size_t n)
{
	size_t k = rxs_feed(&c->rx, p, n);
	if (__builtin_expect(k < n, 0) && !c->closing &&
	    (c->rx_hold & (HOLD_ROOM | HOLD_LINGER)) == HOLD_ROOM)
		rx_stash(c, p + k, n - k);
}

static void rx_room_found(struct rxs *s)
{
	struct uconn *c = container_of(s, struct uconn, rx);
	unsigned char *p = c->stash;
	size_t n = c->stash_len;
	c->stash = NULL;
	c->stash_len = c->stash_cap = 0;
	if (n != 0)
		rx_bytes(c, p, n);
	free(p);
	if (!(c->rx_hold & HOLD_ROOM)) /* not waiting again */
		urx_hold(c, HOLD_ROOM, false);
}

/* ------------------------------------------------------------------ */
/* The io_uring recvs                                                  */

static void recycle(struct ut *t, unsigned bid)
{
	io_uring_buf_ring_add(t->br, t->pb + (size_t)bid * t->o.recv_buf_size,
			      t->o.recv_buf_size, (unsigned short)bid,
			      t->br_mask, 0);
	io_uring_buf_ring_advance(t->br, 1);
}

/* A CQE of the multishot recv (MULTISHOT or STOPPING). */
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
			urx_active(c);
			rx_bytes(c, t->pb + (size_t)bid * t->o.recv_buf_size,
				 (size_t)res);
		}
		recycle(t, bid);
	}
	if (!more) {
		/* It ended: nothing is left to cancel, whatever follows. */
		c->ops--;
		rx_to(c, RX_IDLE);
	}
	if (c->closing) {
		uconn_finalize(c);
		return;
	}
	if (res == 0 || (res < 0 && res != -ENOBUFS && res != -ECANCELED &&
			 res != -EINTR && res != -EAGAIN)) {
		/* EOF, reset or any other socket error. */
		c->base.why = res == 0 ? "the peer closed it"
				       : strerrordesc_np(-res);
		uconn_fail(c, TW_EUNREACHABLE);
		return;
	}
	if (res == -ENOBUFS)
		t->st.recv_nobufs++;
	if (more) {
		/* Let the rest of a large frame land in place: stop the
		 * multishot recv; its last CQE starts the plain recv. */
		if (rx_large(c))
			rx_stop_multishot(c);
		return;
	}
	rx_to(c, rx_next(c, false));
}

/* The CQE of a large frame's plain recv (INPLACE). */
static void on_inplace(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	struct uconn *c = container_of(ur, struct uconn, lrecv_req);
	int res = cqe->res;
	c->ops--;
	rx_to(c, RX_IDLE);
	if (c->closing) {
		uconn_finalize(c);
		return;
	}
	if (res > 0) {
		urx_active(c);
		rxs_landed(&c->rx, (uint64_t)res);
	} else if (res != -EINTR && res != -EAGAIN) {
		c->base.why = res == 0 ? "the peer closed it"
				       : strerrordesc_np(-res);
		uconn_fail(c, TW_EUNREACHABLE);
		return;
	}
	/* The rest of the frame (or the next ones): busy polling reads
	 * on if c is hot. */
	rx_to(c, rx_next(c, true));
}

void urx_conn_init(struct uconn *c)
{
	rxs_attach(&c->t->rxe, &c->rx, &c->base, &c->closing, &c->rx_hold);
	c->rx_mode = RX_IDLE;
	c->recv_req.fn = on_recv;
	c->lrecv_req.fn = on_inplace;
}

/* ------------------------------------------------------------------ */
/* Busy polling (uring.h, "Busy polling")                              */

static void hot_drop(struct ut *t, uint32_t i)
{
	t->hot[i]->hot = false;
	t->hot[i] = t->hot[--t->nhot];
}

/* c left busy polling: its own io_uring reader again, unless one is
 * still armed (its completion picks the next). */
static void rx_cool(struct uconn *c)
{
	if (c->rx_mode == RX_DIRECT || c->rx_mode == RX_SQE_WAIT)
		rx_to(c, rx_next(c, false));
}

/* c moved bytes: keep (or start) busy-polling it, and stop its multishot
 * recv meanwhile. */
void urx_active(struct uconn *c)
{
	struct ut *t = c->t;
	c->last_active = tw_loop_now(t->base.loop);
	if (!c->hot) {
		if (t->nhot >= t->o.busy_poll_conns || t->scratch == NULL)
			return;
		c->hot = true;
		c->hot_rev =
			POLLIN; /* read at once, polled from the next pass */
		t->hot[t->nhot++] = c;
	}
	if (rx_stop_multishot(c))
		t->st.busy_starts++;
}

void urx_conn_free(struct uconn *c)
{
	struct ut *t = c->t;
	for (uint32_t i = 0; c->hot && i < t->nhot; i++)
		if (t->hot[i] == c)
			hot_drop(t, i);
	urx_release(c);
	rxs_detach(&c->rx);
}

/* Read the busy-polled connections directly. Connections idle for
 * busy_poll_ns leave the list. */
int urx_busy_poll(struct ut *t)
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
		if (!rx_large(c)) {
			pc[np] = c;
			pf[np++] = (struct pollfd){.fd = c->fd,
						   .events = POLLIN};
		}
	}
	if (np != 0 && poll(pf, np, 0) >= 0)
		for (nfds_t i = 0; i < np; i++)
			pc[i]->hot_rev = pf[i].revents;
	for (uint32_t i = 0; i < t->nhot;) {
		struct uconn *c = t->hot[i];
		if (c->closing || now > c->last_active + t->o.busy_poll_ns) {
			hot_drop(t, i);
			rx_cool(c);
			continue;
		}
		i++;
		if (c->state != C_OPEN || !rx_direct_ok(c))
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
		bool large = rx_large(c);
		unsigned char *dst = t->scratch;
		size_t len = t->o.recv_buf_size;
		if (large) {
			/* The rest of a large frame: straight into place,
			 * as much as has arrived. */
			uint64_t left = rxs_left(&c->rx);
			dst = rxs_dst(&c->rx);
			len = left > RECV_CHUNK_MAX ? RECV_CHUNK_MAX
						    : (size_t)left;
		}
		ssize_t r = recv(c->fd, dst, len, MSG_DONTWAIT);
		if (r < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR) {
				c->base.why = strerrordesc_np(errno);
				uconn_fail(c, TW_EUNREACHABLE);
			}
			continue;
		}
		work++;
		if (r == 0) { /* EOF */
			c->base.why = "the peer closed it";
			uconn_fail(c, TW_EUNREACHABLE);
			continue;
		}
		t->st.busy_recvs++;
		c->last_active = now;
		if (large) {
			t->st.busy_frames += rxs_left(&c->rx) == (uint64_t)r;
			rxs_landed(&c->rx, (uint64_t)r);
			continue;
		}
		uint64_t frames = t->rxe.cnt.frames_rx;
		rx_bytes(c, t->scratch, (size_t)r);
		t->st.busy_frames += t->rxe.cnt.frames_rx - frames;
		/* A large frame began: the next polls read its rest in
		 * place (a multishot still winding down hands it to a
		 * plain recv instead: on_recv). */
		if (rx_large(c))
			rx_stop_multishot(c);
	}
	return work;
}

/* The loop is about to sleep: only an io_uring recv can wake it. */
void urx_idle(void *arg)
{
	struct ut *t = arg;
	while (t->nhot != 0) {
		struct uconn *c = t->hot[t->nhot - 1];
		hot_drop(t, t->nhot - 1);
		rx_cool(c);
	}
}

/* ------------------------------------------------------------------ */
/* The receive side's memory                                           */

static tw_status bufring_setup(struct ut *t)
{
	uint32_t n = t->o.recv_buf_count;
	t->br_len = (size_t)n * sizeof(struct io_uring_buf);
	long pg = sysconf(_SC_PAGESIZE);
	t->br_len = (t->br_len + (size_t)pg - 1) & ~((size_t)pg - 1);
	void *br = mmap(NULL, t->br_len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (br == MAP_FAILED)
		return tw_fail_static(TW_ENOMEM, "io_uring: mapping the "
						 "provided-buffer ring failed");
	t->br = br;
	t->pb_len = (size_t)n * t->o.recv_buf_size;
	void *pb = mmap(NULL, t->pb_len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (pb == MAP_FAILED) {
		munmap(br, t->br_len);
		t->br = NULL;
		return tw_fail(TW_ENOMEM,
			       "io_uring: mapping %zu bytes of "
			       "provided buffers failed",
			       t->pb_len);
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
		return tw_fail(ret == -ENOMEM ? TW_ENOMEM : TW_ENOTSUP,
			       "io_uring: registering the provided-buffer "
			       "ring failed: %s",
			       strerror(-ret));
	}
	for (uint32_t i = 0; i < n; i++)
		io_uring_buf_ring_add(t->br,
				      t->pb + (size_t)i * t->o.recv_buf_size,
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

tw_status urx_setup(struct ut *t)
{
	struct rxs_env *e = &t->rxe;
	tw_status st = rxs_env_init(e, &t->base, &rx_ops, "io_uring",
				    "uring-rx", t->o.rx_pool_buf_size,
				    t->o.rx_pool_count, t->o.large_cache_bytes);
	if (st != TW_OK)
		return st;
	e->large_frame = t->o.large_frame;
	e->worker_bytes = &t->sh->asm_bytes;
	e->worker_max = t->o.asm_worker_bytes;
	e->host_max = t->o.asm_host_bytes;
	e->stall_ns = (uint64_t)t->o.stall_timeout_ms * 1000000u;
	/* Bytes read while paused have nowhere else to go. */
	e->stop_holds = HOLD_ROOM | HOLD_LINGER;
	st = bufring_setup(t);
	if (st == TW_OK && t->o.busy_poll_conns != 0 &&
	    (t->scratch = malloc(t->o.recv_buf_size)) == NULL) {
		bufring_free(t, true);
		st = tw_fail_static(TW_ENOMEM, "io_uring: out of memory");
	}
	if (st != TW_OK)
		rxs_env_fini(e, false, "uring");
	return st;
}

void urx_teardown(struct ut *t, bool clean)
{
	bufring_free(t, clean);
	free(t->scratch);
	t->scratch = NULL;
	t->nhot = 0;
	rxs_env_fini(&t->rxe, !clean, "uring");
}
