/* io_uring transport, receiving: the provided-buffer ring, reassembly of
 * frames into their buffers, the multishot and large-frame recvs, and busy
 * polling. */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/uring_impl.h"

static inline size_t align64(size_t v)
{
	return (v + TW_FRAME_SEG_ALIGN - 1) & ~(size_t)(TW_FRAME_SEG_ALIGN - 1);
}

void urx_release(struct uconn *c)
{
	tw_buf_release(c->rx.cur);
	c->rx.cur = NULL;
	tw_buf_release(c->rx.pool_buf);
	c->rx.pool_buf = NULL;
}

/* c moved bytes: keep (or start) busy-polling it, and stop its multishot
 * recv meanwhile (uring.h, "Busy polling"). */
void urx_active(struct uconn *c)
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
		uconn_cancel(c, &c->recv_req);
		t->st.busy_starts++;
	}
}

void urx_hot_drop(struct ut *t, uint32_t i)
{
	t->hot[i]->hot = false;
	t->hot[i] = t->hot[--t->nhot];
}

/* ------------------------------------------------------------------ */
/* Receiving                                                           */

static void on_recv(struct tw_uring_req *ur, struct io_uring_cqe *cqe);
static void on_lrecv(struct tw_uring_req *ur, struct io_uring_cqe *cqe);

void urx_arm_recv(struct uconn *c)
{
	struct ut *t = c->t;
	if (c->hot) {
		/* Busy-polled: urx_busy_poll reads it until it cools down. */
		c->want_recv = false;
		return;
	}
	if (c->closing || c->recv_armed || c->lrecv_armed)
		return;
	struct io_uring_sqe *sqe = sqe_get(t);
	if (sqe == NULL) {
		c->want_recv = true;
		uconn_dirty(c);
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

void urx_arm_lrecv(struct uconn *c)
{
	struct ut *t = c->t;
	if (c->closing)
		return;
	struct io_uring_sqe *sqe = sqe_get(t);
	if (sqe == NULL) {
		c->want_recv = true;
		uconn_dirty(c);
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
		uconn_fail(c, st == TW_EVERSION ? TW_EVERSION : TW_EPROTO);
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
		uconn_fail(c, st == TW_OK ? TW_ENOMEM : st);
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
			urx_active(c);
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
		uconn_finalize(c);
		return;
	}
	if (res == 0 || (res < 0 && res != -ENOBUFS && res != -ECANCELED &&
			 res != -EINTR && res != -EAGAIN)) {
		/* EOF, reset or any other socket error. */
		uconn_fail(c, TW_EUNREACHABLE);
		return;
	}
	if (res == -ENOBUFS)
		t->st.recv_nobufs++;
	if (c->rx.cur && c->rx.large) {
		/* Let the rest of a large frame land in place: stop the
		 * multishot recv; its last CQE starts the plain recv. */
		if (more && !c->ms_cancel) {
			c->ms_cancel = true;
			uconn_cancel(c, &c->recv_req);
		} else if (!more) {
			urx_arm_lrecv(c);
		}
		return;
	}
	if (!more)
		urx_arm_recv(c);
}

static void on_lrecv(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	struct uconn *c = container_of(ur, struct uconn, lrecv_req);
	int res = cqe->res;
	c->lrecv_armed = false;
	c->ops--;
	if (c->closing) {
		uconn_finalize(c);
		return;
	}
	if (res > 0) {
		urx_active(c);
		c->rx.have += (uint64_t)res;
		if (c->rx.have == c->rx.need) {
			rx_deliver(c);
			urx_arm_recv(c);
		} else if (!c->hot) {
			urx_arm_lrecv(c); /* else urx_busy_poll reads the rest */
		}
		return;
	}
	if (res == -EINTR || res == -EAGAIN) {
		if (!c->hot)
			urx_arm_lrecv(c);
		return;
	}
	uconn_fail(c, TW_EUNREACHABLE);
}

void urx_conn_init(struct uconn *c)
{
	c->recv_req.fn = on_recv;
	c->lrecv_req.fn = on_lrecv;
}

/* A connection leaves busy polling: its own receive again (the plain recv
 * when a large frame is landing and none is armed yet). */
static void rearm(struct uconn *c)
{
	if (c->rx.cur && c->rx.large) {
		if (!c->closing && !c->recv_armed && !c->lrecv_armed)
			urx_arm_lrecv(c);
	} else {
		urx_arm_recv(c);
	}
}

/* Read the busy-polled connections directly (uring.h, "Busy polling").
 * Connections idle for busy_poll_ns leave the list. */
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
			urx_hot_drop(t, i);
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
				uconn_fail(c, TW_EUNREACHABLE);
			continue;
		}
		work++;
		if (r == 0) { /* EOF */
			uconn_fail(c, TW_EUNREACHABLE);
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
			uconn_cancel(c, &c->recv_req);
		}
	}
	return work;
}

/* The loop is about to sleep: only a multishot recv can wake it, so every
 * busy-polled connection gets its own back. */
void urx_idle(void *arg)
{
	struct ut *t = arg;
	while (t->nhot != 0) {
		struct uconn *c = t->hot[t->nhot - 1];
		urx_hot_drop(t, t->nhot - 1);
		rearm(c);
	}
}

tw_status urx_bufring_setup(struct ut *t)
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
void urx_bufring_free(struct ut *t, bool unmap)
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

