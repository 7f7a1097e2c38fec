/* io_uring transport, sending: each connection's send queue, the batches
 * it goes out in, the choice of how each batch goes (uring.h, "Sending"),
 * and the one completion every way ends in, zero-copy notifications
 * included. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dataplane/uring_impl.h"

/* One batch: c->iov[0, niov) holds its bytes, from the sq head on. */
struct tx_batch {
	uint32_t niov;
	uint32_t nreq; /* requests it covers, the last maybe
			* only in part */
	uint64_t bytes;
	bool zc; /* its requests are zero-copy ones */
};

static void req_done(struct uconn *c, struct tw_send_req *r, tw_status st)
{
	c->held--;
	if (__builtin_expect(c->rx_hold & HOLD_LINGER, 0) && c->held == 0)
		uconn_dirty(c); /* close_after_send: the poller closes it */
	if (st == TW_OK)
		c->t->st.frames_tx++;
	r->done(r, st);
}

/* Run done(st) for r and what follows it on a queue nothing else reaches
 * any more (done may free r: read the next first). */
static void done_list(struct uconn *c, struct tw_send_req *r, tw_status st)
{
	while (r) {
		struct tw_send_req *n = STAILQ_NEXT(r, link_);
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

static bool send_retryable(int res)
{
	return res == -EINTR || res == -EAGAIN || res == -ENOBUFS ||
	       res == -ENOMEM;
}

/* ------------------------------------------------------------------ */
/* The queue and its batches                                           */

/* n bytes went out: move the sq head past them; fully sent requests are
 * appended to out. */
static void sq_advance(struct uconn *c, uint64_t n, struct tw_send_queue *out)
{
	struct tw_send_req *r;
	while ((r = STAILQ_FIRST(&c->sq)) != NULL) {
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
		STAILQ_REMOVE_HEAD(&c->sq, link_);
		if (c->batch_n)
			c->batch_n--;
		STAILQ_INSERT_TAIL(out, r, link_);
	}
}

/* The next batch from the sq head: as many requests as fit (IOV_CAP
 * iovecs, BATCH_BYTES_MAX), zero-copy ones only with their own kind. */
static void tx_build(struct uconn *c, struct tx_batch *b)
{
	struct ut *t = c->t;
	uint32_t n = 0, k = 0;
	uint64_t total = 0;
	struct tw_send_req *head = STAILQ_FIRST(&c->sq), *r;
	b->zc = !c->copying && t->o.zc_threshold != UINT64_MAX &&
		req_zc(t, head);
	STAILQ_FOREACH(r, &c->sq, link_)
	{
		if (r != head && req_zc(t, r) != b->zc)
			break;
		uint32_t i = r == head ? r->iov_idx_ : 0;
		size_t off = r == head ? c->head_off : 0;
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
	b->niov = n;
	b->nreq = k;
	b->bytes = total;
}

/* A small frame in pieces (header and payload, pad, a small tensor) or a
 * few small frames: one plain send of a copy costs less than the
 * sendmsg's msghdr copy, iovec import and per-piece skb appends (a 1 KiB
 * tensor echo spent ~0.6 us more per direction than a no-op call with
 * them). Tensors of 16 KiB and more are never copied (DESIGN.md). Leaves
 * b as it was when the copy buffer cannot be had. */
static void tx_gather(struct uconn *c, struct tx_batch *b)
{
	if (c->gbuf == NULL && (c->gbuf = malloc(GATHER_COPY_MAX)) == NULL)
		return;
	size_t o = 0;
	for (uint32_t i = 0; i < b->niov; i++) {
		memcpy(c->gbuf + o, c->iov[i].iov_base, c->iov[i].iov_len);
		o += c->iov[i].iov_len;
	}
	c->iov[0].iov_base = c->gbuf;
	c->iov[0].iov_len = o;
	b->niov = 1;
}

/*
 * How batch b goes out:
 *  - zero-copy (SENDMSG_ZC) when its requests have a segment of
 *    zc_threshold bytes or more and c has not fallen back to copying;
 *  - else a batch of at most GATHER_COPY_MAX bytes in several pieces is
 *    first copied into one (tx_gather);
 *  - then one contiguous segment of at most DIRECT_SEND_MAX bytes is
 *    sent at once with send(2) (TX_DIRECT; the io_uring send takes over
 *    what the socket has no room for), a longer one by IORING_OP_SEND,
 *    several by IORING_OP_SENDMSG.
 */
static enum tx_how tx_pick(struct uconn *c, struct tx_batch *b)
{
	if (b->zc)
		return TX_SENDMSG_ZC;
	if (b->niov > 1 && b->bytes <= GATHER_COPY_MAX)
		tx_gather(c, b);
	if (b->niov == 1 && b->bytes <= DIRECT_SEND_MAX)
		return TX_DIRECT;
	return b->niov == 1 ? TX_SEND : TX_SENDMSG;
}

/* ------------------------------------------------------------------ */
/* Completion: the one end of every send                               */

/* Complete the zero-copy operations at the FIFO head whose notification
 * came: requests never finish out of order. */
static void zc_drain(struct uconn *c)
{
	struct zc_op *op;
	while ((op = STAILQ_FIRST(&c->zc)) != NULL && op->result_seen &&
	       op->notified) {
		STAILQ_REMOVE_HEAD(&c->zc, link);
		struct tw_send_req *h = STAILQ_FIRST(&op->reqs);
		free(op);
		done_list(c, h, c->closing ? c->close_st : TW_OK);
	}
	uconn_finalize(c);
}

/*
 * A send ended, whichever way it went (a direct send, or the CQE of an
 * io_uring one): res bytes of the batch went, or -errno. The requests it
 * finished are done now, or, for a zero-copy send (op), once the kernel
 * has notified that it let go of their pages. Then what a closing
 * connection, an error or bytes still queued call for.
 */
static void tx_complete(struct uconn *c, int res, struct zc_op *op)
{
	struct ut *t = c->t;
	struct tw_send_queue h = STAILQ_HEAD_INITIALIZER(h);

	if (res >= 0) {
		t->st.bytes_tx += (uint64_t)res;
		sq_advance(c, (uint64_t)res, op ? &op->reqs : &h);
	}
	if (c->closing) {
		if (op != NULL) {
			/* What the send covered and did not finish may
			 * still be read by the kernel: it waits for the
			 * notification too. */
			struct tw_send_req *r;
			for (uint32_t i = 0; i < c->batch_n; i++) {
				if ((r = STAILQ_FIRST(&c->sq)) == NULL)
					break;
				STAILQ_REMOVE_HEAD(&c->sq, link_);
				STAILQ_INSERT_TAIL(&op->reqs, r, link_);
			}
		}
		/* The kernel is done with the rest: fail it. */
		struct tw_send_req *rest = STAILQ_FIRST(&c->sq);
		STAILQ_INIT(&c->sq);
		c->batch_n = 0;
		done_list(c, STAILQ_FIRST(&h), c->close_st);
		done_list(c, rest, c->close_st);
		if (op != NULL)
			zc_drain(c);
		else
			uconn_finalize(c);
		return;
	}
	c->batch_n = 0;
	if (op != NULL) {
		if (res == -EINVAL || res == -EOPNOTSUPP) {
			/* No zero-copy here: the plain way from now on,
			 * this batch again included. */
			c->copying = true;
			res = -EAGAIN;
		}
		zc_drain(c);
	} else {
		done_list(c, STAILQ_FIRST(&h), TW_OK);
	}
	if (c->closing) /* by a done callback */
		return;
	if (res < 0 && !send_retryable(res)) {
		c->base.why = strerrordesc_np(-res);
		uconn_fail(c, TW_EUNREACHABLE);
		return;
	}
	if (!STAILQ_EMPTY(&c->sq))
		uconn_dirty(c);
}

static void on_send(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	struct uconn *c = container_of(ur, struct uconn, send_req);
	c->tx_busy = TX_NONE;
	c->ops--;
	tx_complete(c, cqe->res, NULL);
}

/* Both CQEs of a zero-copy send: its result, then (F_MORE on the result)
 * the notification that the kernel let go of the pages. */
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
	op->result_seen = true;
	if (!(cqe->flags & IORING_CQE_F_MORE))
		op->notified = true; /* no notification will follow */
	c->tx_busy = TX_NONE;
	c->ops--;
	tx_complete(c, res, op);
}

/* ------------------------------------------------------------------ */
/* Flushing: a batch out, the way tx_pick says                         */

/* Submit b as an io_uring send of kind how. 0 when the SQ is full (c
 * waits on the dirty list), else 1. */
static int tx_submit(struct uconn *c, enum tx_how how, const struct tx_batch *b)
{
	struct ut *t = c->t;
	struct zc_op *op = NULL;
	if (how == TX_SENDMSG_ZC && (op = calloc(1, sizeof(*op))) == NULL)
		how = b->niov == 1 ? TX_SEND : TX_SENDMSG;
	struct io_uring_sqe *sqe = sqe_get(t);
	if (sqe == NULL) {
		free(op);
		uconn_dirty(c); /* retry next iteration */
		return 0;
	}
	memset(&c->msg, 0, sizeof(c->msg));
	c->msg.msg_iov = c->iov;
	c->msg.msg_iovlen = b->niov;
	switch (how) {
	case TX_SENDMSG_ZC:
		op->req.fn = on_zc;
		op->c = c;
		STAILQ_INIT(&op->reqs);
		io_uring_prep_sendmsg_zc(sqe, c->fd, &c->msg,
					 MSG_NOSIGNAL | MSG_WAITALL);
		sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
		io_uring_sqe_set_data(sqe, &op->req);
		/* The tail is the op in flight until its result comes. */
		STAILQ_INSERT_TAIL(&c->zc, op, link);
		t->st.zc_sends++;
		break;
	case TX_SEND:
		/* One segment (a small frame alone, the usual RPC case): a
		 * plain send spares the kernel the msghdr copy and iovec
		 * import of sendmsg. */
		io_uring_prep_send(sqe, c->fd, c->iov[0].iov_base,
				   c->iov[0].iov_len,
				   MSG_NOSIGNAL | MSG_WAITALL);
		io_uring_sqe_set_data(sqe, &c->send_req);
		break;
	case TX_SENDMSG:
	default: /* TX_NONE and TX_DIRECT never come here */
		io_uring_prep_sendmsg(sqe, c->fd, &c->msg,
				      MSG_NOSIGNAL | MSG_WAITALL);
		io_uring_sqe_set_data(sqe, &c->send_req);
		break;
	}
	c->tx_busy = (uint8_t)how;
	t->tx_hows[how]++;
	c->batch_n = b->nreq;
	c->ops++;
	t->st.sendmsg_calls++;
	/* An answer may follow: read for it directly while it comes. */
	urx_active(c);
	return 1;
}

int utx_flush(struct uconn *c)
{
	struct ut *t = c->t;
	if (c->closing || c->state != C_OPEN || c->tx_busy != TX_NONE ||
	    STAILQ_EMPTY(&c->sq))
		return 0;
	if (c->iov == NULL) {
		c->iov = malloc(IOV_CAP * sizeof(*c->iov));
		if (c->iov == NULL) {
			uconn_fail(c, TW_ENOMEM);
			return 1;
		}
	}
	struct tx_batch b;
	tx_build(c, &b);
	if (b.niov == 0) {
		/* Nothing but empty requests at the head: sent. */
		tx_complete(c, 0, NULL);
		return 1;
	}
	enum tx_how how = tx_pick(c, &b);
	if (how == TX_DIRECT) {
		/* The kernel takes the bytes at once when the socket has
		 * room, as it would inside io_uring_enter, without the SQE,
		 * the CQE and the trip through the completion queue. */
		ssize_t r = send(c->fd, c->iov[0].iov_base, c->iov[0].iov_len,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r > 0) {
			t->st.direct_sends++;
			t->st.sendmsg_calls++;
			t->tx_hows[TX_DIRECT]++;
			urx_active(c);
			c->batch_n = b.nreq;
			tx_complete(c, (int)r, NULL);
			return 1;
		}
		if (r < 0 && errno != EWOULDBLOCK && !send_retryable(-errno)) {
			c->base.why = strerrordesc_np(errno);
			uconn_fail(c, TW_EUNREACHABLE);
			return 1;
		}
		how = TX_SEND; /* no room: the io_uring send waits for it */
	}
	return tx_submit(c, how, &b);
}

/* ------------------------------------------------------------------ */
/* The queue's ends                                                    */

void utx_conn_init(struct uconn *c)
{
	STAILQ_INIT(&c->sq);
	STAILQ_INIT(&c->zc);
	c->tx_busy = TX_NONE;
	c->send_req.fn = on_send;
}

tw_status utx_send(tw_transport *tt, tw_conn *cc, struct tw_send_req *r)
{
	struct ut *t = UT(tt);
	struct uconn *c = (struct uconn *)(void *)cc;
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
	STAILQ_INSERT_TAIL(&c->sq, r, link_);
	c->held++;
	if (c->tx_busy == TX_NONE && c->state == C_OPEN)
		uconn_dirty(c);
	return TW_OK;
}

void utx_close(struct uconn *c, tw_status st)
{
	struct tw_send_queue fail = STAILQ_HEAD_INITIALIZER(fail);
	if (c->tx_busy != TX_NONE) {
		/* Keep the batch in flight (the kernel may be reading it:
		 * its completion ends it); detach what follows. */
		struct tw_send_req *r = STAILQ_FIRST(&c->sq);
		for (uint32_t i = 1; r && i < c->batch_n; i++)
			r = STAILQ_NEXT(r, link_);
		if (r)
			STAILQ_SPLIT_AFTER(&c->sq, r, &fail, link_);
		uconn_cancel(
			c,
			c->tx_busy == TX_SENDMSG_ZC
				? (void *)&STAILQ_LAST(&c->zc, zc_op, link)->req
				: (void *)&c->send_req);
	} else {
		STAILQ_CONCAT(&fail, &c->sq);
	}
	done_list(c, STAILQ_FIRST(&fail), st);
}

void utx_conn_free(struct uconn *c)
{
	free(c->iov);
	free(c->gbuf);
}
