/* Reassembling frames from a byte stream (stream_rx.h): what io_uring's
 * and shm's receive sides share. */
#include <stdio.h>
#include <string.h>

#include "dataplane/err.h"
#include "dataplane/loop.h"
#include "dataplane/stream_rx.h"

static inline size_t align64(size_t v)
{
	return (v + TW_FRAME_SEG_ALIGN - 1) & ~(size_t)(TW_FRAME_SEG_ALIGN - 1);
}

const char *rxs_why_str(enum rxs_why why)
{
	switch (why) {
	case RXS_BAD_HDR:
		return "a frame header does not decode";
	case RXS_REFUSED:
		return "a frame header was refused";
	case RXS_NOMEM:
		return "no memory for a frame";
	case RXS_STALL:
		return "a frame moved less than 64 KiB in stall_timeout_ms";
	}
	return "stream";
}

/* ------------------------------------------------------------------ */
/* What a frame reserves (asm_worker_bytes, asm_host_bytes)            */

static void asm_free(struct rxs *s)
{
	struct rxs_env *e = s->env;
	uint64_t n = s->asm_res;
	s->asm_res = 0;
	atomic_fetch_sub_explicit(e->worker_bytes, n, memory_order_relaxed);
	if (s->host_bytes != NULL)
		atomic_fetch_sub_explicit(s->host_bytes, n,
					  memory_order_relaxed);
	e->asm_freed = true;
}

/* Reserve need bytes against the worker's bound and the peer host's;
 * each is always granted when nothing is reserved there. */
static bool asm_take(struct rxs *s, uint64_t need)
{
	struct rxs_env *e = s->env;
	uint64_t w = atomic_fetch_add_explicit(e->worker_bytes, need,
					       memory_order_relaxed);
	if (w != 0 && w + need > e->worker_max) {
		atomic_fetch_sub_explicit(e->worker_bytes, need,
					  memory_order_relaxed);
		return false;
	}
	if (s->host_bytes != NULL) {
		uint64_t h = atomic_fetch_add_explicit(s->host_bytes, need,
						       memory_order_relaxed);
		if (h != 0 && h + need > e->host_max) {
			atomic_fetch_sub_explicit(s->host_bytes, need,
						  memory_order_relaxed);
			atomic_fetch_sub_explicit(e->worker_bytes, need,
						  memory_order_relaxed);
			return false;
		}
	}
	s->asm_res = need;
	return true;
}

static void wait_end(struct rxs *s)
{
	if (!(*s->hold & HOLD_ROOM))
		return;
	TAILQ_REMOVE(&s->env->waiters, s, wait_link);
	s->env->nwaiters--;
	*s->hold &= (uint8_t)~HOLD_ROOM;
}

void rxs_release(struct rxs *s)
{
	wait_end(s);
	if (s->asm_res != 0)
		asm_free(s);
	tw_buf_release(s->cur);
	s->cur = NULL;
	tw_buf_release(s->pool_buf);
	s->pool_buf = NULL;
}

/* ------------------------------------------------------------------ */
/* Reassembly                                                          */

/* What a complete header led to. */
enum rs { RS_GO, RS_SKIP, RS_STOP };

/* An intact header refused (transport.h, on_refused): skip its frame or
 * end the connection once what is queued has left. */
static enum rs refuse(struct rxs *s, const tw_frame_hdr *h, tw_status why)
{
	struct rxs_env *e = s->env;
	tw_transport *tr = e->tr;
	tw_conn *c = s->conn;
	e->cnt.frames_refused++;
	bool skip = false;
	if (tr->cbs.on_refused != NULL)
		skip = tr->cbs.on_refused(tr->cbs.ctx, c, h, why);
	if (*s->closing)
		return RS_STOP;
	if (why == TW_EOVERFLOW && skip) {
		e->cnt.frames_skipped++;
		s->hdr_have = 0;
		s->skip = h->total_len - TW_FRAME_HDR_SIZE;
		return RS_SKIP;
	}
	e->cnt.bad_frames++;
	tw_status st = why == TW_EVERSION ? TW_EVERSION : TW_EPROTO;
	if (tr->cbs.on_refused != NULL)
		tr->ops->close_after_send(tr, c, st);
	else
		e->ops->fail(s, st, RXS_REFUSED);
	return RS_STOP;
}

/* Where s's frame (header in s->h) lands. RS_STOP: closed, or it waits
 * for room (HOLD_ROOM; counted in asm_waits when first). */
static enum rs place(struct rxs *s, bool first)
{
	struct rxs_env *e = s->env;
	tw_status st = TW_OK;
	uint64_t need = s->h.total_len;
	size_t psz = tw_buf_pool_buf_size(e->pool);
	tw_buf *b = NULL;
	size_t off = 0;
	bool large = need > e->large_frame;
	if (need > psz && !asm_take(s, need)) {
		/* Wait for room, reading nothing meanwhile. */
		if (!(*s->hold & HOLD_ROOM)) {
			e->cnt.asm_waits += first;
			TAILQ_INSERT_TAIL(&e->waiters, s, wait_link);
			e->nwaiters++;
			e->ops->room_wait(s);
			if (!tw_timer_armed(&e->wait_tm))
				tw_loop_timer_after(e->tr->loop, &e->wait_tm,
						    RXS_RETRY_NS);
		}
		return RS_STOP;
	}
	if (large) {
		bool hit = false;
		st = tw_bigbuf_alloc(e->bc, (size_t)need, &b, &hit);
		e->cnt.large_cache_hits += hit;
	} else if (need <= psz) {
		/* Every frame carved from the shared buffer so far has been
		 * let go (ours is the only reference left): start it over,
		 * where the cache is still warm, instead of marching the
		 * copy through cold lines. Acquire: pairs with the releases
		 * (acq_rel) of the frames' last users, whose reads of the
		 * bytes must come before we overwrite them. A ping-pong
		 * reuses the same 1-2 KiB every round trip this way. */
		if (s->pool_buf && s->pool_off != 0 &&
		    atomic_load_explicit(&s->pool_buf->refcnt,
					 memory_order_acquire) == 1)
			s->pool_off = 0;
		if (s->pool_buf &&
		    align64(s->pool_off) + need <= s->pool_buf->size) {
			b = s->pool_buf;
			off = align64(s->pool_off);
		} else {
			tw_buf_release(s->pool_buf);
			s->pool_off = 0;
			s->pool_buf = tw_buf_pool_get(e->pool);
			b = s->pool_buf;
		}
		if (b == NULL)
			st = tw_buf_alloc((size_t)need, &b);
		else
			tw_buf_retain(b); /* cur's own reference */
	} else {
		st = tw_buf_alloc((size_t)need, &b);
	}
	if (st != TW_OK || b == NULL) {
		e->ops->fail(s, st == TW_OK ? TW_ENOMEM : st, RXS_NOMEM);
		return RS_STOP;
	}
	memcpy((unsigned char *)b->data + off, s->hdr, TW_FRAME_HDR_SIZE);
	s->cur = b;
	s->off = off;
	s->need = need;
	s->have = TW_FRAME_HDR_SIZE;
	s->large = large;
	e->cnt.large_frames += large;
	return RS_GO;
}

/* The header is complete: check it and pick where the frame lands. */
static enum rs start(struct rxs *s)
{
	struct rxs_env *e = s->env;
	tw_frame_hdr h;
	tw_status st = tw_frame_hdr_decode(s->hdr, &e->tr->limits, &h);
	if (__builtin_expect(st != TW_OK || !tw_conn_frame_fits(s->conn, &h),
			     0)) {
		if (st == TW_EVERSION)
			return refuse(s, &h, TW_EVERSION);
		if (st == TW_EPROTO) {
			/* Intact but for its size? Then the stream can be
			 * kept in sync by skipping it. */
			tw_frame_limits wide = e->tr->limits;
			wide.max_total = TW_FRAME_MAX_TOTAL;
			st = tw_frame_hdr_decode(s->hdr, &wide, &h);
		}
		if (st == TW_OK)
			return refuse(s, &h, TW_EOVERFLOW);
		e->cnt.bad_frames++;
		e->ops->fail(s, TW_EPROTO, RXS_BAD_HDR);
		return RS_STOP;
	}
	s->h = h;
	return place(s, true);
}

void rxs_deliver(struct rxs *s)
{
	struct rxs_env *e = s->env;
	tw_buf *b = s->cur;
	size_t off = s->off, len = (size_t)s->need;
	s->cur = NULL;
	s->hdr_have = 0;
	s->large = false;
	if (b == s->pool_buf)
		s->pool_off = off + len;
	if (s->asm_res != 0)
		asm_free(s);
	e->cnt.frames_rx++;
	e->cnt.bytes_rx += len;
	e->tr->cbs.on_frame(e->tr->cbs.ctx, s->conn, &s->h, b, off, len);
	tw_buf_release(b);
}

size_t rxs_feed(struct rxs *s, const unsigned char *p, size_t n)
{
	size_t took = 0;
	while (took < n && !*s->closing) {
		size_t k;
		if (s->cur != NULL) {
			uint64_t left = s->need - s->have;
			k = left < n - took ? (size_t)left : n - took;
			memcpy((unsigned char *)s->cur->data + s->off + s->have,
			       p + took, k);
			s->have += k;
			took += k;
			if (s->have == s->need)
				rxs_deliver(s);
			continue;
		}
		if (__builtin_expect(*s->hold & s->env->stop_holds, 0))
			break;
		if (__builtin_expect(s->skip != 0, 0)) {
			k = s->skip < n - took ? (size_t)s->skip : n - took;
			s->skip -= k;
			took += k;
			continue;
		}
		k = TW_FRAME_HDR_SIZE - s->hdr_have;
		if (k > n - took)
			k = n - took;
		memcpy(s->hdr + s->hdr_have, p + took, k);
		s->hdr_have += (uint32_t)k;
		took += k;
		if (s->hdr_have < TW_FRAME_HDR_SIZE)
			break;
		enum rs r = start(s);
		if (r == RS_STOP)
			break;
		if (r == RS_GO && s->have == s->need)
			rxs_deliver(s); /* a bare header */
	}
	s->rx_n += took;
	return took;
}

/* ------------------------------------------------------------------ */
/* Waiting for room, stalls                                            */

int rxs_retry_waiters(struct rxs_env *e)
{
	e->asm_freed = false;
	int work = 0;
	/* Each once, oldest first; one still without room goes back at the
	 * tail. */
	for (uint32_t n = e->nwaiters; n > 0; n--) {
		struct rxs *s = TAILQ_FIRST(&e->waiters);
		wait_end(s);
		if (*s->closing || place(s, false) != RS_GO)
			continue; /* closed, or waiting again */
		work++;
		if (s->have == s->need)
			rxs_deliver(s);
		if (!*s->closing)
			e->ops->room_found(s);
	}
	if (e->nwaiters != 0 && !tw_timer_armed(&e->wait_tm))
		tw_loop_timer_after(e->tr->loop, &e->wait_tm, RXS_RETRY_NS);
	return work;
}

static void wait_fire(struct tw_timer *tm, void *arg)
{
	(void)tm;
	struct rxs_env *e = arg;
	if (e->nwaiters != 0)
		(void)rxs_retry_waiters(e);
}

static void sweep(struct tw_timer *tm, void *arg)
{
	(void)tm;
	struct rxs_env *e = arg;
	uint64_t now = tw_loop_now(e->tr->loop);
	struct rxs *s;
	TAILQ_FOREACH(s, &e->all, link)
	{
		/* A partial frame must move RXS_STALL_MIN_BYTES per window
		 * (or end): a byte now and then (slowloris) would otherwise
		 * hold its reserved assembly bytes for ever. */
		bool watch = rxs_partial(s) && !*s->closing && *s->hold == 0;
		if (!watch || !s->stall_watched ||
		    s->rx_n - s->stall_mark >= RXS_STALL_MIN_BYTES) {
			/* A window starts: at the first sweep that sees the
			 * frame partial, and after each RXS_STALL_MIN_BYTES. */
			s->stall_watched = watch;
			s->stall_mark = s->rx_n;
			s->stall_since = now;
			continue;
		}
		if (now - s->stall_since >= e->stall_ns) {
			e->cnt.stalls++;
			e->ops->fail(s, TW_ETIMEDOUT, RXS_STALL);
		}
	}
	tw_loop_timer_after(e->tr->loop, &e->sweep_tm, e->stall_ns / 4);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */

void rxs_attach(struct rxs_env *e, struct rxs *s, tw_conn *c,
		const bool *closing, uint8_t *hold)
{
	memset(s, 0, sizeof(*s));
	s->env = e;
	s->conn = c;
	s->closing = closing;
	s->hold = hold;
	TAILQ_INSERT_TAIL(&e->all, s, link);
}

void rxs_detach(struct rxs *s)
{
	rxs_release(s);
	TAILQ_REMOVE(&s->env->all, s, link);
}

/* ------------------------------------------------------------------ */
/* The transport's share                                               */

tw_status rxs_env_init(struct rxs_env *e, tw_transport *tr,
		       const struct rxs_ops *ops, const char *who,
		       const char *name, uint32_t pool_buf_size,
		       uint32_t pool_count, uint64_t cache_bytes)
{
	memset(e, 0, sizeof(*e));
	e->tr = tr;
	e->ops = ops;
	e->stop_holds = 0xff;
	TAILQ_INIT(&e->waiters);
	TAILQ_INIT(&e->all);
	tw_timer_init(&e->wait_tm, wait_fire, e);
	tw_timer_init(&e->sweep_tm, sweep, e);
	struct tw_buf_pool_opts po;
	tw_buf_pool_opts_init(&po, sizeof(po));
	po.buf_size = pool_buf_size;
	po.count = pool_count;
	po.prefault = 1;
	po.name = name;
	tw_status st = tw_buf_pool_create(&po, &e->pool);
	if (st != TW_OK)
		return tw_fail(st, "%s: receive pool of %u x %u bytes: %s", who,
			       pool_count, pool_buf_size, tw_strerror(st));
	st = tw_bigbuf_cache_create((size_t)cache_bytes, &e->bc);
	if (st != TW_OK) {
		(void)tw_buf_pool_destroy(e->pool);
		e->pool = NULL;
	}
	return st;
}

void rxs_env_start(struct rxs_env *e)
{
	if (e->stall_ns != 0)
		tw_loop_timer_after(e->tr->loop, &e->sweep_tm, e->stall_ns / 4);
}

void rxs_env_stop(struct rxs_env *e)
{
	struct tw_timer_wheel *w = tw_loop_timers(e->tr->loop);
	tw_timer_cancel(w, &e->sweep_tm);
	tw_timer_cancel(w, &e->wait_tm);
}

void rxs_env_fini(struct rxs_env *e, bool leak, const char *who)
{
	/* Buffers still lent unmap themselves when they come back. */
	tw_bigbuf_cache_close(e->bc);
	e->bc = NULL;
	if (!leak && e->pool != NULL && tw_buf_pool_destroy(e->pool) != TW_OK)
		fprintf(stderr,
			"tensorwire: %s transport destroyed while receive "
			"buffers are still held; leaking the pool\n",
			who);
	e->pool = NULL;
}
