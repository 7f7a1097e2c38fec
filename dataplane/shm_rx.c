/* Same-host transport, receiving: how the stream's bytes reach the
 * reassembler (stream_rx.c) from a socket DATA message or a ring record
 * (one stream, so the switch between them may fall inside a frame), the
 * inbound ring's pass, and CMA records read straight into place. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "dataplane/err.h"
#include "dataplane/shm_impl.h"

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
/* Reassembly (stream_rx.h)                                            */

static void rx_fail(struct rxs *s, tw_status st, enum rxs_why why)
{
	struct sconn *c = container_of(s, struct sconn, rx);
	if (why == RXS_BAD_HDR)
		sconn_proto(c, rxs_why_str(why));
	else
		sconn_fail(c, st, rxs_why_str(why));
}

static void rx_room_wait(struct rxs *s)
{
	container_of(s, struct sconn, rx)->rx_hold |= HOLD_ROOM;
}

/* The rest of the frame is where it was (the socket's stash, the ring):
 * read on. */
static void rx_room_found(struct rxs *s)
{
	struct sconn *c = container_of(s, struct sconn, rx);
	if (c->rx_hold == 0)
		sconn_dirty(c);
}

static const struct rxs_ops rx_ops = {
	.fail = rx_fail,
	.room_wait = rx_room_wait,
	.room_found = rx_room_found,
};

void srx_conn_init(struct sconn *c)
{
	rxs_attach(&c->t->rxe, &c->rx, &c->base, &c->closing, &c->rx_hold);
}

void srx_release(struct sconn *c)
{
	rxs_release(&c->rx);
}

void srx_conn_free(struct sconn *c)
{
	rxs_detach(&c->rx);
}

size_t srx_feed(struct sconn *c, const unsigned char *p, size_t n)
{
	struct st *t = c->t;
	uint64_t frames = t->rxe.cnt.frames_rx;
	size_t took = rxs_feed(&c->rx, p, n);
	if (!c->rx_ring)
		t->st.sock_frames_rx += t->rxe.cnt.frames_rx - frames;
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
			rxs_skipped(&c->rx, k);
			return k;
		}
		sconn_proto(c, "shm: a CMA record outside a frame's body");
		return 0;
	}
	if (r->rec_left > rxs_left(&c->rx)) {
		sconn_proto(c, "shm: a CMA record past its frame's end");
		return 0;
	}
	uint64_t n = r->rec_left < CMA_CHUNK ? r->rec_left : CMA_CHUNK;
	struct iovec l = {rxs_dst(&c->rx), (size_t)n};
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
	rxs_landed(&c->rx, n);
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
/* The receive side's memory                                           */

tw_status srx_setup(struct st *t)
{
	struct rxs_env *e = &t->rxe;
	tw_status st = rxs_env_init(e, &t->base, &rx_ops, "shm", "shm-rx",
				    t->o.rx_pool_buf_size, t->o.rx_pool_count,
				    t->o.large_cache_bytes);
	if (st != TW_OK)
		return st;
	e->large_frame = t->o.large_frame;
	e->worker_bytes = &t->sh->asm_bytes;
	e->worker_max = t->o.asm_worker_bytes;
	e->stall_ns = (uint64_t)t->o.stall_timeout_ms * 1000000u;
	/* Any hold stops it: what is not taken stays where it is. */
	e->stop_holds = 0xff;
	return TW_OK;
}

void srx_teardown(struct st *t)
{
	rxs_env_fini(&t->rxe, false, "shm");
}
