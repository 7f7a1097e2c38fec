/* Same-host transport, receiving: the reassembler every byte goes through
 * (from a socket DATA message or a ring record: one stream, so the switch
 * between them may fall inside a frame), the inbound ring's pass, the
 * receive buffers and what a frame may reserve. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "dataplane/err.h"
#include "dataplane/shm_impl.h"

static inline size_t align64(size_t v)
{
	return (v + TW_FRAME_SEG_ALIGN - 1) & ~(size_t)(TW_FRAME_SEG_ALIGN - 1);
}

/* ------------------------------------------------------------------ */
/* Holding                                                             */

void srx_hold(struct sconn *c, uint8_t bit, bool on)
{
	if (on) {
		c->rx_hold |= bit;
		return;
	}
	c->rx_hold &= (uint8_t)~bit;
	/* Read on: what the socket buffer or the ring still holds. */
	if (c->rx_hold == 0 && !c->closing)
		sconn_dirty(c);
}

/* ------------------------------------------------------------------ */
/* What a frame reserves (shm.h, asm_worker_bytes)                     */

static void asm_free(struct sconn *c)
{
	struct st *t = c->t;
	atomic_fetch_sub_explicit(&t->sh->asm_bytes, c->asm_res,
				  memory_order_relaxed);
	c->asm_res = 0;
	t->asm_freed = true;
}

/* Always granted when nothing is reserved. */
static bool asm_take(struct sconn *c, uint64_t need)
{
	struct st *t = c->t;
	uint64_t w = atomic_fetch_add_explicit(&t->sh->asm_bytes, need,
					       memory_order_relaxed);
	if (w != 0 && w + need > t->o.asm_worker_bytes) {
		atomic_fetch_sub_explicit(&t->sh->asm_bytes, need,
					  memory_order_relaxed);
		return false;
	}
	c->asm_res = need;
	return true;
}

static void wait_end(struct sconn *c)
{
	if (!(c->rx_hold & HOLD_ROOM))
		return;
	TAILQ_REMOVE(&c->t->waiters, c, wait_link);
	c->t->nwaiters--;
	c->rx_hold &= (uint8_t)~HOLD_ROOM;
}

void srx_release(struct sconn *c)
{
	wait_end(c);
	if (c->asm_res != 0)
		asm_free(c);
	tw_buf_release(c->rx.cur);
	c->rx.cur = NULL;
	tw_buf_release(c->rx.pool_buf);
	c->rx.pool_buf = NULL;
}

/* ------------------------------------------------------------------ */
/* Reassembly                                                          */

enum rs { RS_GO, RS_SKIP, RS_STOP };

/* An intact header refused (transport.h, on_refused). */
static enum rs rx_refuse(struct sconn *c, const tw_frame_hdr *h, tw_status why)
{
	struct st *t = c->t;
	t->st.frames_refused++;
	bool skip = false;
	if (t->base.cbs.on_refused != NULL)
		skip = t->base.cbs.on_refused(t->base.cbs.ctx, &c->base, h,
					      why);
	if (c->closing)
		return RS_STOP;
	if (why == TW_EOVERFLOW && skip) {
		t->st.frames_skipped++;
		c->rx.hdr_have = 0;
		c->rx.skip = h->total_len - TW_FRAME_HDR_SIZE;
		return RS_SKIP;
	}
	t->st.bad_frames++;
	tw_status st = why == TW_EVERSION ? TW_EVERSION : TW_EPROTO;
	if (t->base.cbs.on_refused != NULL)
		t->base.ops->close_after_send(&t->base, &c->base, st);
	else
		sconn_fail(c, st, "a frame header was refused");
	return RS_STOP;
}

/* Where c's frame (header in c->rx.h) lands. RS_STOP: closed, or it
 * waits for room (HOLD_ROOM). */
static enum rs rx_place(struct sconn *c, bool first)
{
	struct st *t = c->t;
	tw_status st = TW_OK;
	uint64_t need = c->rx.h.total_len;
	size_t psz = tw_buf_pool_buf_size(t->pool);
	tw_buf *b = NULL;
	size_t off = 0;
	if (need > psz && !asm_take(c, need)) {
		if (!(c->rx_hold & HOLD_ROOM)) {
			t->st.asm_waits += first;
			TAILQ_INSERT_TAIL(&t->waiters, c, wait_link);
			t->nwaiters++;
			c->rx_hold |= HOLD_ROOM;
			if (!tw_timer_armed(&t->wait_tm))
				tw_loop_timer_after(t->base.loop, &t->wait_tm,
						    ASM_RETRY_NS);
		}
		return RS_STOP;
	}
	if (need > t->o.large_frame) {
		st = tw_bigbuf_alloc(t->bc, (size_t)need, &b, NULL);
	} else if (need <= psz) {
		/* Frames carved from the shared pool buffer so far all let
		 * go: start it over, where the cache is warm. Acquire: pairs
		 * with the frames' last releases, whose reads come first. */
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
		sconn_fail(c, st == TW_OK ? TW_ENOMEM : st,
			   "no memory for a frame");
		return RS_STOP;
	}
	memcpy((unsigned char *)b->data + off, c->rx.hdr, TW_FRAME_HDR_SIZE);
	c->rx.cur = b;
	c->rx.off = off;
	c->rx.need = need;
	c->rx.have = TW_FRAME_HDR_SIZE;
	return RS_GO;
}

/* The header is complete: check it, then place the frame. */
static enum rs rx_start(struct sconn *c)
{
	struct st *t = c->t;
	tw_frame_hdr h;
	tw_status st = tw_frame_hdr_decode(c->rx.hdr, &t->base.limits, &h);
	if (__builtin_expect(st != TW_OK || !tw_conn_frame_fits(&c->base, &h),
			     0)) {
		if (st == TW_EVERSION)
			return rx_refuse(c, &h, TW_EVERSION);
		if (st == TW_EPROTO) {
			/* Intact but for its size? Then skipping it keeps
			 * the stream in sync. */
			tw_frame_limits wide = t->base.limits;
			wide.max_total = TW_FRAME_MAX_TOTAL;
			st = tw_frame_hdr_decode(c->rx.hdr, &wide, &h);
		}
		if (st == TW_OK)
			return rx_refuse(c, &h, TW_EOVERFLOW);
		t->st.bad_frames++;
		sconn_proto(c, "a frame header does not decode");
		return RS_STOP;
	}
	c->rx.h = h;
	return rx_place(c, true);
}

static void rx_deliver(struct sconn *c)
{
	struct st *t = c->t;
	tw_buf *b = c->rx.cur;
	size_t off = c->rx.off, len = (size_t)c->rx.need;
	c->rx.cur = NULL;
	c->rx.hdr_have = 0;
	if (b == c->rx.pool_buf)
		c->rx.pool_off = off + len;
	if (c->asm_res != 0)
		asm_free(c);
	t->st.frames_rx++;
	t->st.bytes_rx += len;
	if (!c->rx_ring)
		t->st.sock_frames_rx++;
	t->base.cbs.on_frame(t->base.cbs.ctx, &c->base, &c->rx.h, b, off, len);
	tw_buf_release(b);
}

size_t srx_feed(struct sconn *c, const unsigned char *p, size_t n)
{
	size_t took = 0;
	while (took < n && !c->closing && c->rx_hold == 0) {
		size_t k;
		if (c->rx.cur != NULL) {
			uint64_t left = c->rx.need - c->rx.have;
			k = left < n - took ? (size_t)left : n - took;
			memcpy((unsigned char *)c->rx.cur->data + c->rx.off +
				       c->rx.have,
			       p + took, k);
			c->rx.have += k;
			took += k;
			c->rx_n += k;
			if (c->rx.have == c->rx.need)
				rx_deliver(c);
			continue;
		}
		if (__builtin_expect(c->rx.skip != 0, 0)) {
			k = c->rx.skip < n - took ? (size_t)c->rx.skip
						  : n - took;
			c->rx.skip -= k;
			took += k;
			c->rx_n += k;
			continue;
		}
		k = TW_FRAME_HDR_SIZE - c->rx.hdr_have;
		if (k > n - took)
			k = n - took;
		memcpy(c->rx.hdr + c->rx.hdr_have, p + took, k);
		c->rx.hdr_have += (uint32_t)k;
		took += k;
		c->rx_n += k;
		if (c->rx.hdr_have < TW_FRAME_HDR_SIZE)
			break;
		enum rs r = rx_start(c);
		if (r == RS_STOP)
			break;
		if (r == RS_GO && c->rx.have == c->rx.need)
			rx_deliver(c); /* a bare header */
	}
	return took;
}

/* ------------------------------------------------------------------ */
/* The inbound ring                                                    */

static const char *ring_why(enum shm_ring_err e)
{
	switch (e) {
	case SHM_RING_BAD_TAIL:
		return "shm: the peer's ring tail is behind our head, past the "
		       "ring's size or unaligned";
	case SHM_RING_BAD_REC:
		return "shm: a ring record header without the magic or of an "
		       "unknown type";
	case SHM_RING_BAD_LEN:
		return "shm: a ring record longer than the ring or than what "
		       "was published";
	case SHM_RING_SHORT_HDR:
		return "shm: less than a record header published at a record "
		       "boundary";
	case SHM_RING_BAD_CMA:
		return "shm: a CMA record we did not ask for, of a bad length "
		       "or wrapping addresses";
	case SHM_RING_OK:
		break;
	}
	return "shm: ring";
}

/* One chunk of a CMA record (r->rec_left bytes at r->cma_addr in the
 * peer) straight into the frame being assembled. Returns the bytes
 * taken: 0 when c is held or ended. */
static uint64_t rx_cma(struct sconn *c, struct shm_ring *r)
{
	struct st *t = c->t;
	if (c->rx.cur == NULL) {
		/* A refused frame's body being skipped: nothing to read. */
		if (c->rx.hdr_have == 0 && c->rx.skip >= r->rec_left) {
			uint64_t k = r->rec_left;
			c->rx.skip -= k;
			c->rx_n += k;
			return k;
		}
		sconn_proto(c, "shm: a CMA record outside a frame's body");
		return 0;
	}
	if (r->rec_left > c->rx.need - c->rx.have) {
		sconn_proto(c, "shm: a CMA record past its frame's end");
		return 0;
	}
	uint64_t n = r->rec_left < CMA_CHUNK ? r->rec_left : CMA_CHUNK;
	struct iovec l = {(unsigned char *)c->rx.cur->data + c->rx.off +
				  c->rx.have,
			  (size_t)n};
	struct iovec rm = {(void *)(uintptr_t)r->cma_addr, (size_t)n};
	ssize_t got = process_vm_readv(c->peer_pid, &l, 1, &rm, 1, 0);
	if (got != (ssize_t)n) {
		/* Memory the peer does not have is its lie; a peer that
		 * cannot be read any more is gone (or changed its mind). */
		if (got >= 0 || errno == EFAULT) {
			sconn_proto(c, "shm: a CMA record names memory the "
				       "peer does not have");
		} else if (errno == ESRCH) {
			t->st.peer_gone++;
			sconn_fail(c, TW_EUNREACHABLE,
				   "the peer's process ended");
		} else {
			sconn_fail(c, TW_EUNREACHABLE,
				   "shm: the peer's memory could not be read "
				   "(CMA) any more");
		}
		return 0;
	}
	t->st.cma_reads++;
	t->st.cma_bytes += n;
	c->rx.have += n;
	c->rx_n += n;
	if (c->rx.have == c->rx.need)
		rx_deliver(c);
	return n;
}

int srx_ring(struct sconn *c)
{
	struct shm_ring *r = &c->rxr;
	if (c->slept_rx) {
		/* Awake again: a producer need not ring us. Relaxed: one that
		 * still sees 1 only spends a spare ring. */
		atomic_store_explicit(&r->ctl->cons_sleeping, 0,
				      memory_order_relaxed);
		c->slept_rx = false;
	}
	if (c->rx_hold != 0 || c->closing)
		return 0;
	uint64_t avail;
	if (!shm_ring_avail(r, &avail)) {
		sconn_proto(c, ring_why(SHM_RING_BAD_TAIL));
		return 1;
	}
	if (avail == 0)
		return 0;
	uint64_t start = r->pos, bytes = 0;
	unsigned recs = 0;
	/* Bounded by our own counts, whatever the peer published. */
	while (avail != 0 && bytes < RX_PASS_BYTES && !c->closing &&
	       c->rx_hold == 0) {
		if (!r->in_rec) {
			if (recs == RX_PASS_RECORDS)
				break;
			uint32_t type;
			uint64_t at = r->pos;
			enum shm_ring_err e =
				shm_ring_next_rec(r, avail, c->cma_rx, &type);
			if (e != SHM_RING_OK) {
				sconn_proto(c, ring_why(e));
				return 1;
			}
			recs++;
			avail -= r->pos - at;
			if (!r->in_rec) /* empty: only its header */
				continue;
		}
		uint64_t before = r->pos;
		if (r->rec_type == SHM_REC_CMA) {
			uint64_t k = rx_cma(c, r);
			if (k == 0)
				break; /* held, or ended */
			shm_ring_cma_took(r, k);
			avail -= r->pos - before;
			bytes += k;
			continue;
		}
		uint64_t span = shm_ring_span(r);
		size_t k = srx_feed(c, shm_ring_at(r), (size_t)span);
		shm_ring_took(r, k);
		avail -= r->pos - before;
		bytes += k;
		if (k < span)
			break; /* held, or closing */
	}
	if (c->closing)
		return 1;
	if (r->pos == start)
		return bytes != 0; /* a CMA record under way */
	shm_ring_release(r);
	/* The producer may wait for this room (or for us to have read its
	 * memory). What is left waits for the next pass, after the other
	 * connections'. */
	stx_wake_peer(c, &r->ctl->prod_waiting);
	return 1;
}

/* ------------------------------------------------------------------ */
/* Waiting for room, stalls                                            */

int srx_retry_waiters(struct st *t)
{
	t->asm_freed = false;
	int work = 0;
	for (uint32_t n = t->nwaiters; n > 0; n--) {
		struct sconn *c = TAILQ_FIRST(&t->waiters);
		wait_end(c);
		if (c->closing)
			continue;
		if (rx_place(c, false) == RS_GO) {
			work++;
			if (c->rx.have == c->rx.need)
				rx_deliver(c);
			if (!c->closing && c->rx_hold == 0)
				sconn_dirty(c); /* the rest of it */
		}
	}
	if (t->nwaiters != 0 && !tw_timer_armed(&t->wait_tm))
		tw_loop_timer_after(t->base.loop, &t->wait_tm, ASM_RETRY_NS);
	return work;
}

void srx_sweep(struct tw_timer *tm, void *arg)
{
	(void)tm;
	struct st *t = arg;
	uint64_t now = tw_loop_now(t->base.loop);
	uint64_t limit = (uint64_t)t->o.stall_timeout_ms * 1000000u;
	struct sconn *c;
	TAILQ_FOREACH(c, &t->conns, link)
	{
		/* A partial frame must move STALL_MIN_BYTES per window: a
		 * peer publishing a byte now and then (or nothing) would
		 * otherwise hold what its frame reserved for ever. */
		bool partial = c->rx.hdr_have != 0 || c->rx.skip != 0;
		bool watch = partial && !c->closing && c->rx_hold == 0;
		if (!watch || !c->stall_watched ||
		    c->rx_n - c->stall_mark >= STALL_MIN_BYTES) {
			c->stall_watched = watch;
			c->stall_mark = c->rx_n;
			c->stall_since = now;
			continue;
		}
		if (now - c->stall_since >= limit) {
			t->st.stalls++;
			sconn_fail(c, TW_ETIMEDOUT,
				   "a frame moved less than 64 KiB in "
				   "stall_timeout_ms");
		}
	}
	tw_loop_timer_after(t->base.loop, &t->sweep_tm, limit / 4);
}

/* ------------------------------------------------------------------ */
/* The receive side's memory                                           */

tw_status srx_setup(struct st *t)
{
	struct tw_buf_pool_opts po;
	tw_buf_pool_opts_init(&po, sizeof(po));
	po.buf_size = t->o.rx_pool_buf_size;
	po.count = t->o.rx_pool_count;
	po.prefault = 1;
	po.name = "shm-rx";
	tw_status st = tw_buf_pool_create(&po, &t->pool);
	if (st != TW_OK)
		return tw_fail(st, "shm: receive pool of %u x %u bytes: %s",
			       t->o.rx_pool_count, t->o.rx_pool_buf_size,
			       tw_strerror(st));
	st = tw_bigbuf_cache_create(t->o.large_cache_bytes, &t->bc);
	if (st != TW_OK) {
		(void)tw_buf_pool_destroy(t->pool);
		t->pool = NULL;
	}
	return st;
}

void srx_teardown(struct st *t)
{
	tw_bigbuf_cache_close(t->bc);
	t->bc = NULL;
	if (t->pool != NULL && tw_buf_pool_destroy(t->pool) != TW_OK)
		fprintf(stderr, "tensorwire: shm transport destroyed while "
				"receive buffers are still held; leaking the "
				"pool\n");
	t->pool = NULL;
}
