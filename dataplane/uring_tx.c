/* io_uring transport, sending: the per-connection send queues, batches and
 * how they go out (direct send, copy, sendmsg, zero-copy), and their
 * completions. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dataplane/uring_impl.h"

static void req_done(struct uconn *c, struct tw_send_req *r, tw_status st)
{
	c->held--;
	if (st == TW_OK)
		c->t->st.frames_tx++;
	r->next_ = NULL;
	r->done(r, st);
}

/* Run done(st) for a detached list (done may free r: read next first). */
void utx_done_list(struct uconn *c, struct tw_send_req *r, tw_status st)
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

int utx_flush(struct uconn *c)
{
	struct ut *t = c->t;
	if (c->closing || c->state != C_OPEN || c->send_busy || !c->sq_head)
		return 0;
	if (c->iov == NULL) {
		c->iov = malloc(IOV_CAP * sizeof(*c->iov));
		if (c->iov == NULL) {
			uconn_fail(c, TW_ENOMEM);
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
		utx_done_list(c, h, TW_OK);
		if (c->sq_head && !c->closing)
			uconn_dirty(c);
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
			urx_active(c);
			c->batch_n = nreq;
			sq_advance(c, (uint64_t)r, &h, &tl);
			c->batch_n = 0;
			utx_done_list(c, h, TW_OK);
			if (!c->closing && c->sq_head)
				uconn_dirty(c);
			return 1;
		}
		if (r < 0 && errno != EWOULDBLOCK && !send_retryable(-errno)) {
			uconn_fail(c, TW_EUNREACHABLE);
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
		uconn_dirty(c); /* retry next iteration */
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
	urx_active(c);
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
		utx_done_list(c, h, c->close_st);
		utx_done_list(c, rest, c->close_st);
		uconn_finalize(c);
		return;
	}
	utx_done_list(c, h, TW_OK);
	if (c->closing)
		return;
	if (res < 0 && !send_retryable(res)) {
		uconn_fail(c, TW_EUNREACHABLE);
		return;
	}
	if (c->sq_head)
		uconn_dirty(c);
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
		utx_done_list(c, h, c->closing ? c->close_st : TW_OK);
	}
	uconn_finalize(c);
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
		utx_done_list(c, rest, c->close_st);
		zc_drain(c);
		return;
	}
	c->batch_n = 0;
	if (res == -EINVAL || res == -EOPNOTSUPP) {
		/* No zero-copy here: send it again the plain way. */
		c->copying = true;
		zc_drain(c);
		if (!c->closing && c->sq_head)
			uconn_dirty(c);
		return;
	}
	if (res < 0 && !send_retryable(res)) {
		zc_drain(c);
		uconn_fail(c, TW_EUNREACHABLE);
		return;
	}
	zc_drain(c);
	if (!c->closing && c->sq_head)
		uconn_dirty(c);
}

void utx_conn_init(struct uconn *c)
{
	c->send_req.fn = on_send;
}

tw_status utx_send(tw_transport *tt, tw_conn *cc, struct tw_send_req *r)
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
		uconn_dirty(c);
	return TW_OK;
}

