/* Same-host transport, sending: each connection's queue, the control
 * messages that go before it on the socket, the queue's bytes as socket
 * DATA messages (before the switch) or ring records (after), and the
 * peer's doorbell. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/shm_impl.h"

static void req_done(struct sconn *c, struct tw_send_req *r, tw_status st)
{
	c->held--;
	if (__builtin_expect(c->rx_hold & HOLD_LINGER, 0) && c->held == 0)
		sconn_dirty(c); /* close_after_send: the service closes it */
	if (st == TW_OK)
		c->t->st.frames_tx++;
	r->done(r, st);
}

/* done(st) for r and what follows it, on a list nothing else reaches
 * (done may free r: the next is read first). */
static void done_list(struct sconn *c, struct tw_send_req *r, tw_status st)
{
	while (r != NULL) {
		struct tw_send_req *n = STAILQ_NEXT(r, link_);
		req_done(c, r, st);
		r = n;
	}
}

void stx_fail_all(struct sconn *c, tw_status st)
{
	/* Those waiting for the peer to read them first: they are older.
	 * (A peer still reading their memory reads ours, not theirs to
	 * keep; nothing of ours depends on it.) */
	struct tw_send_req *w = STAILQ_FIRST(&c->wq);
	struct tw_send_req *r = STAILQ_FIRST(&c->sq);
	STAILQ_INIT(&c->wq);
	STAILQ_INIT(&c->sq);
	c->head_off = 0;
	c->q_bytes = 0;
	done_list(c, w, st);
	done_list(c, r, st);
}

/* n bytes of the queue went: move its head past them; requests sent
 * whole are appended to out. */
static void sq_advance(struct sconn *c, uint64_t n, struct tw_send_queue *out)
{
	struct tw_send_req *r;
	while ((r = STAILQ_FIRST(&c->sq)) != NULL) {
		while (r->iov_idx_ < r->niov) {
			size_t l = r->iov[r->iov_idx_].iov_len - c->head_off;
			if (n < l) {
				c->head_off += (size_t)n;
				c->q_bytes -= n;
				r->sent_ += n;
				return;
			}
			n -= l;
			c->q_bytes -= l;
			r->sent_ += l;
			r->iov_idx_++;
			c->head_off = 0;
		}
		STAILQ_REMOVE_HEAD(&c->sq, link_);
		STAILQ_INSERT_TAIL(out, r, link_);
	}
}

/* The queue's next bytes, at most max of them in at most cap pieces,
 * into iov (without moving the head). Returns their count. */
static uint64_t sq_gather(struct sconn *c, struct iovec *iov, unsigned cap,
			  uint64_t max, unsigned *niov)
{
	uint64_t total = 0;
	unsigned n = 0;
	struct tw_send_req *head = STAILQ_FIRST(&c->sq), *r;
	STAILQ_FOREACH(r, &c->sq, link_)
	{
		uint32_t i = r == head ? r->iov_idx_ : 0;
		size_t off = r == head ? c->head_off : 0;
		for (; i < r->niov; i++, off = 0) {
			size_t l = r->iov[i].iov_len - off;
			if (l == 0)
				continue;
			if (n == cap || total == max)
				goto full;
			if (l > max - total)
				l = (size_t)(max - total);
			iov[n++] = (struct iovec){
				(char *)r->iov[i].iov_base + off, l};
			total += l;
		}
	}
full:
	*niov = n;
	return total;
}

/* ------------------------------------------------------------------ */
/* The peer's doorbell                                                 */

static void on_ring(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	(void)cqe; /* a failed write: the peer's doorbell is its own
		    * business (full, or not ours to fix) */
	struct sconn *c = container_of(ur, struct sconn, ring_req);
	c->ring_busy = false;
	c->ops--;
	if (c->closing) {
		sconn_fail(c, c->close_st, NULL); /* finalizes at ops 0 */
		return;
	}
	if (c->ring_again) {
		c->ring_again = false;
		stx_ring_bell(c);
	}
}

void stx_ring_bell(struct sconn *c)
{
	if (c->closing || c->peer_bell < 0)
		return;
	if (c->ring_busy) {
		/* The write in flight may have landed before the peer
		 * slept: one more after it. */
		c->ring_again = true;
		return;
	}
	struct io_uring_sqe *sqe = tw_loop_sqe(c->t->base.loop);
	if (sqe == NULL) {
		/* The SQ is full even after a submit: the peer is rung by
		 * the next flush that finds it asleep. */
		return;
	}
	c->ring_req.fn = on_ring;
	c->bell_one = 1;
	/* Through io_uring, never write(2): the peer shares the eventfd
	 * and could make a write block (shm.h, "Waking"). */
	io_uring_prep_write(sqe, c->peer_bell, &c->bell_one,
			    sizeof(c->bell_one), 0);
	io_uring_sqe_set_data(sqe, &c->ring_req);
	c->ring_busy = true;
	c->ops++;
	c->t->st.doorbells++;
}

void stx_wake_peer(struct sconn *c, _Atomic uint32_t *flag)
{
	/* Dekker, this side: our release store of the index (tail or head)
	 * before the load of the peer's sleep flag, which a release store
	 * and a later load do not guarantee (StoreLoad) without the fence.
	 * The sleeper stores its flag, fences, then reads our index: either
	 * it sees what we published, or we see its flag. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(flag, memory_order_relaxed) == 0)
		return;
	/* One ring per sleep: whoever clears the flag rings. */
	if (atomic_exchange_explicit(flag, 0, memory_order_relaxed) == 0)
		return;
	stx_ring_bell(c);
}

/* ------------------------------------------------------------------ */
/* Control messages                                                    */

/* Send the control messages due, in order. 1 when none is left, 0 when
 * the socket is full, -1 when c failed. */
static int ctl_flush(struct sconn *c)
{
	while (c->ctl_due != 0 && !c->closing) {
		struct shm_msg h = {0};
		struct iovec iov[2];
		unsigned n = 1;
		const int *fds = NULL;
		unsigned nfds = 0;
		uint8_t bit;
		union {
			struct shm_ready ready;
			struct shm_setup setup;
			struct shm_noring noring;
			struct shm_switch sw;
		} body;
		memset(&body, 0, sizeof(body));
		if (c->ctl_due & CTL_READY) {
			bit = CTL_READY;
			h.type = SM_READY;
			body.ready.max_ring = c->t->o.ring_size;
			h.len = sizeof(body.ready);
		} else if (c->ctl_due & CTL_SETUP) {
			bit = CTL_SETUP;
			h.type = SM_SETUP;
			body.setup.version = SHM_SETUP_VERSION;
			body.setup.ring_size = c->rxr.size;
			h.len = sizeof(body.setup);
			fds = c->setup_fds;
			nfds = SETUP_NFDS;
		} else if (c->ctl_due & CTL_NORING) {
			bit = CTL_NORING;
			h.type = SM_NORING;
			body.noring.why = c->noring_why;
			h.len = sizeof(body.noring);
		} else {
			bit = CTL_SWITCH;
			h.type = SM_SWITCH;
			body.sw.map_addr = (uint64_t)(uintptr_t)c->map;
			h.len = sizeof(body.sw);
		}
		if (h.len != 0)
			iov[n++] = (struct iovec){&body, h.len};
		int r = shm_sock_send(c, &h, iov, n, fds, nfds);
		if (r <= 0)
			return r;
		c->ctl_due &= (uint8_t)~bit;
		if (bit == CTL_SETUP)
			for (unsigned i = 0; i < SETUP_NFDS; i++) {
				close(c->setup_fds[i]);
				c->setup_fds[i] = -1;
			}
		if (bit == CTL_SWITCH) {
			/* Every byte from here on goes to the ring. */
			c->tx_ring = true;
			if (c->rx_ring)
				c->t->st.rings_up++;
		}
	}
	return c->closing ? -1 : 1;
}

/* ------------------------------------------------------------------ */
/* The queue to the socket                                             */

static int sock_flush(struct sconn *c)
{
	int work = 0;
	/* A bounded turn: 2 MiB, then the next service. */
	for (int i = 0; i < 64 && !STAILQ_EMPTY(&c->sq); i++) {
		unsigned n;
		uint64_t k = sq_gather(c, c->siov + 1, SOCK_IOV - 1,
				       SM_DATA_MAX, &n);
		if (k == 0 && n == 0) {
			/* Requests without bytes: sent. */
			struct tw_send_queue d = STAILQ_HEAD_INITIALIZER(d);
			sq_advance(c, 0, &d);
			done_list(c, STAILQ_FIRST(&d), TW_OK);
			work++;
			continue;
		}
		c->shdr = (struct shm_msg){.type = SM_DATA, .len = (uint32_t)k};
		int r = shm_sock_send(c, &c->shdr, c->siov, n + 1, NULL, 0);
		if (r <= 0)
			return work;
		work++;
		c->t->st.bytes_tx += k;
		c->t->st.sock_bytes_tx += k;
		struct tw_send_queue d = STAILQ_HEAD_INITIALIZER(d);
		sq_advance(c, k, &d);
		done_list(c, STAILQ_FIRST(&d), TW_OK);
		if (c->closing || c->tx_ring || c->ctl_due != 0)
			return work; /* a done closed c or started a switch */
	}
	if (!STAILQ_EMPTY(&c->sq))
		sconn_dirty(c);
	return work;
}

/* ------------------------------------------------------------------ */
/* The queue to the ring                                               */

/* Whether pieces of len bytes may go by CMA to this peer. */
static inline bool cma_on(const struct sconn *c)
{
	/* Relaxed: the peer's word, read anew each flush; a peer that
	 * lies only gets records it cannot read. */
	return c->t->o.cma_threshold != UINT64_MAX &&
	       atomic_load_explicit(&c->txr.ctl->cma_ok,
				    memory_order_relaxed) != 0;
}

/*
 * sq_gather for the ring: the queue's next bytes for a DATA record (at
 * most max, in at most cap pieces), stopping before a piece that goes
 * by CMA: then *cma names it (else its len is 0). A piece goes by CMA
 * when it is cma_threshold bytes or more of a frame's body: a request
 * is one frame, and its first TW_FRAME_HDR_SIZE bytes (the header the
 * receiver must read itself) always travel in the ring.
 */
static uint64_t ring_gather(struct sconn *c, struct iovec *iov, unsigned cap,
			    uint64_t max, unsigned *niov, struct shm_cma *cma)
{
	uint64_t thr = c->t->o.cma_threshold, total = 0;
	bool cma_ok = cma_on(c);
	unsigned n = 0;
	cma->len = 0;
	struct tw_send_req *head = STAILQ_FIRST(&c->sq), *r;
	STAILQ_FOREACH(r, &c->sq, link_)
	{
		uint32_t i = r == head ? r->iov_idx_ : 0;
		size_t off = r == head ? c->head_off : 0;
		uint64_t roff = r == head ? r->sent_ : 0; /* in the frame */
		for (; i < r->niov; i++, off = 0) {
			size_t l = r->iov[i].iov_len - off;
			char *p = (char *)r->iov[i].iov_base + off;
			if (l == 0)
				continue;
			bool stop = false;
			if (cma_ok && l >= thr) {
				uint64_t hdr = roff < TW_FRAME_HDR_SIZE
						       ? TW_FRAME_HDR_SIZE -
								 roff
						       : 0;
				if (hdr == 0) {
					if (total == 0) {
						cma->addr =
							(uint64_t)(uintptr_t)p;
						cma->len = l;
					}
					goto full;
				}
				if (l - hdr >= thr) {
					l = (size_t)
						hdr; /* the header, then CMA */
					stop = true;
				}
			}
			if (n == cap || total == max)
				goto full;
			if (l > max - total)
				l = (size_t)(max - total);
			iov[n++] = (struct iovec){p, l};
			total += l;
			roff += l;
			if (stop)
				goto full;
		}
	}
full:
	*niov = n;
	return total;
}

/* Requests the last record finished: done now, or (some of their bytes
 * are the peer's to read from our memory, or one ahead of them is)
 * once the peer's head passes the end of their last CMA record. */
static void ring_sent(struct sconn *c, struct tw_send_queue *fin,
		      struct tw_send_queue *d)
{
	struct tw_send_req *r;
	while ((r = STAILQ_FIRST(fin)) != NULL) {
		STAILQ_REMOVE_HEAD(fin, link_);
		if (r->flags_ & REQ_CMA) {
			r->sent_ = c->last_cma_pos;
			STAILQ_INSERT_TAIL(&c->wq, r, link_);
		} else if (!STAILQ_EMPTY(&c->wq)) {
			r->sent_ = 0; /* as soon as those ahead */
			STAILQ_INSERT_TAIL(&c->wq, r, link_);
		} else {
			STAILQ_INSERT_TAIL(d, r, link_);
		}
	}
}

/* Waiting requests the peer's head has passed: to d. */
static void wq_release(struct sconn *c, uint64_t head, struct tw_send_queue *d)
{
	struct tw_send_req *r;
	while ((r = STAILQ_FIRST(&c->wq)) != NULL && r->sent_ <= head) {
		STAILQ_REMOVE_HEAD(&c->wq, link_);
		STAILQ_INSERT_TAIL(d, r, link_);
	}
}

bool stx_could_move(struct sconn *c)
{
	uint64_t room;
	if (!shm_ring_room(&c->txr, &room))
		return true;
	uint64_t head = c->txr.pos + room - c->txr.size;
	struct tw_send_req *w = STAILQ_FIRST(&c->wq);
	if (w != NULL && w->sent_ <= head)
		return true;
	if (!c->tx_blocked)
		return false;
	/* Room as ring_flush uses it: whole multiples of 8, and a small
	 * record only for all that is queued. */
	uint64_t need = c->q_bytes < RING_MIN_RECORD ? c->q_bytes
						     : RING_MIN_RECORD;
	return (room & ~(uint64_t)7) >= sizeof(struct shm_rec) + need;
}

static int ring_flush(struct sconn *c)
{
	struct st *t = c->t;
	struct shm_ring *r = &c->txr;
	if (c->slept_tx) {
		atomic_store_explicit(&r->ctl->prod_waiting, 0,
				      memory_order_relaxed);
		c->slept_tx = false;
	}
	if (STAILQ_EMPTY(&c->sq) && STAILQ_EMPTY(&c->wq))
		return 0;
	uint64_t room;
	if (!shm_ring_room(r, &room)) {
		sconn_proto(c, "shm: the peer's ring head is ahead of our tail "
			       "or more than the ring behind it");
		return 1;
	}
	struct tw_send_queue d = STAILQ_HEAD_INITIALIZER(d);
	wq_release(c, r->pos + room - r->size, &d);
	/* Records end at multiples of 8; the consumer's head need not (it
	 * hands room back byte by byte inside a record): a partial 8 bytes
	 * of room waits until it passes them. */
	room &= ~(uint64_t)7;
	uint64_t start = r->pos;
	struct iovec iov[SOCK_IOV];
	/* A bounded turn, as the consumer's pass is: a loop that sends and
	 * receives at once gives both directions the same share (copying
	 * all the room in at once, up to the ring's size, starved its own
	 * receiving: 16 x 64 MiB echoes in flight moved half as fast). */
	uint64_t copied = 0;
	while (!STAILQ_EMPTY(&c->sq) && room > sizeof(struct shm_rec) &&
	       copied < TX_PASS_BYTES) {
		uint64_t cap = room - sizeof(struct shm_rec);
		struct tw_send_queue fin = STAILQ_HEAD_INITIALIZER(fin);
		struct shm_cma cma;
		unsigned n;
		uint64_t k = ring_gather(c, iov, SOCK_IOV, cap, &n, &cma);
		if (k != 0) {
			/* No trickle of small records into a nearly full
			 * ring: unless what goes in it fits, wait for a page
			 * of room. */
			if (k == cap && cap < RING_MIN_RECORD)
				break;
			uint64_t at = r->pos + sizeof(struct shm_rec);
			for (unsigned i = 0; i < n; i++) {
				shm_ring_copy_in(r, at, iov[i].iov_base,
						 iov[i].iov_len);
				at += iov[i].iov_len;
			}
			shm_ring_put_hdr(r, SHM_REC_DATA, (uint32_t)k);
			uint64_t whole = sizeof(struct shm_rec) + shm_align8(k);
			r->pos += whole;
			room -= whole;
			copied += k;
			t->st.ring_records++;
			t->st.bytes_tx += k;
			sq_advance(c, k, &fin);
			ring_sent(c, &fin, &d);
			continue;
		}
		if (cma.len != 0) {
			/* The peer reads these bytes from our memory; the
			 * request waits for its head to pass the record. */
			if (room < sizeof(struct shm_rec) + sizeof(cma))
				break;
			shm_ring_copy_in(r, r->pos + sizeof(struct shm_rec),
					 &cma, sizeof(cma));
			shm_ring_put_hdr(r, SHM_REC_CMA, sizeof(cma));
			r->pos += sizeof(struct shm_rec) + sizeof(cma);
			room -= sizeof(struct shm_rec) + sizeof(cma);
			c->last_cma_pos = r->pos;
			STAILQ_FIRST(&c->sq)->flags_ |= REQ_CMA;
			t->st.cma_sends++;
			t->st.bytes_tx += cma.len;
			sq_advance(c, cma.len, &fin);
			ring_sent(c, &fin, &d);
			continue;
		}
		/* Only requests without bytes at the head: sent. */
		sq_advance(c, 0, &fin);
		ring_sent(c, &fin, &d);
	}
	/* Waiting for room (not merely for the next turn). */
	bool full = !STAILQ_EMPTY(&c->sq) && copied < TX_PASS_BYTES;
	if (full && !c->tx_blocked)
		t->st.ring_full_waits++;
	c->tx_blocked = full;
	if (r->pos != start) {
		shm_ring_publish(r);
		stx_wake_peer(c, &r->ctl->cons_sleeping);
	}
	bool done = !STAILQ_EMPTY(&d);
	done_list(c, STAILQ_FIRST(&d), TW_OK);
	return r->pos != start || done;
}

int stx_flush(struct sconn *c)
{
	if (c->closing || c->state != SC_OPEN || !c->announced)
		return 0;
	int work = 0;
	if (c->ctl_due != 0) {
		int r = ctl_flush(c);
		if (r <= 0)
			return r < 0;
		work++;
	}
	if (c->out_wait)
		return work; /* the socket is full: POLLOUT calls us */
	if (c->tx_ring)
		work += ring_flush(c);
	else if (!STAILQ_EMPTY(&c->sq))
		work += sock_flush(c);
	return work;
}

/* ------------------------------------------------------------------ */
/* The queue's entry                                                   */

tw_status stx_send(tw_transport *tt, tw_conn *cc, struct tw_send_req *r)
{
	struct st *t = ST(tt);
	struct sconn *c = SC(cc);
	if (c == NULL || r == NULL || r->done == NULL ||
	    (r->niov != 0 && r->iov == NULL))
		return TW_EINVAL;
	if (c->closing || (c->rx_hold & HOLD_LINGER))
		return TW_EUNREACHABLE;
	if (c->held >= t->o.max_queued)
		return TW_ENOSPC;
	r->sent_ = 0;
	r->iov_idx_ = 0;
	r->flags_ = 0;
	for (uint32_t i = 0; i < r->niov; i++)
		c->q_bytes += r->iov[i].iov_len;
	STAILQ_INSERT_TAIL(&c->sq, r, link_);
	c->held++;
	sconn_dirty(c);
	return TW_OK;
}
