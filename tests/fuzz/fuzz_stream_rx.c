/* libFuzzer target for the stream reassembler (dataplane/stream_rx.c), the
 * one every byte from an io_uring or shm peer goes through: any stream,
 * cut anywhere, fed to two connections that share a small assembly bound,
 * must deliver only frames whose length is their header's, 64-byte
 * aligned, and give back every byte it reserved. The first bytes of the
 * input choose the cuts and the answers (skip a refused frame or not, no
 * on_refused at all, pause after each frame, land large frames in place
 * as io_uring does). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/loop.h"
#include "dataplane/stream_rx.h"
#include "dataplane/util.h"
#include "tests/lib/stream_rx_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A check failed: crash so the fuzzer keeps the input. */
static void fail(void)
{
	abort();
}

static struct {
	tw_loop *l;
	tw_transport tr;
	struct rxs_env e;
	_Atomic uint64_t worker, host;
	bool skip, pause;
} F;

static void on_frame(void *ctx, tw_conn *c, const tw_frame_hdr *h, tw_buf *b,
		     size_t off, size_t len)
{
	(void)ctx;
	tw_frame_hdr again;
	if (len != h->total_len || off % TW_FRAME_SEG_ALIGN != 0 ||
	    off + len > b->size)
		fail();
	/* The header at the frame's start is the one checked. */
	if (tw_frame_hdr_decode((unsigned char *)b->data + off, &F.tr.limits,
				&again) != TW_OK ||
	    again.total_len != h->total_len || again.req_id != h->req_id)
		fail();
	struct hconn *fc = hconn_of(c);
	/* What the frame reserved is given back before it goes up. */
	if (fc->rx.asm_res != 0)
		fail();
	if (F.pause)
		fc->hold |= HOLD_PAUSE;
}

static bool on_refused(void *ctx, tw_conn *c, const tw_frame_hdr *h,
		       tw_status st)
{
	(void)ctx;
	(void)c;
	if (st != TW_EVERSION && st != TW_EOVERFLOW)
		fail();
	if (st == TW_EOVERFLOW && h->total_len < TW_FRAME_HDR_SIZE)
		fail();
	return F.skip;
}

static void setup_once(void)
{
	if (F.l != NULL)
		return;
	struct tw_loop_opts lo;
	tw_loop_opts_init(&lo, sizeof(lo));
	if (tw_loop_create(&lo, &F.l) != TW_OK)
		fail();
	F.tr.ops = &h_transport_ops;
	F.tr.loop = F.l;
	F.tr.cbs.on_frame = on_frame;
	F.tr.cbs.on_conn = h_on_conn;
	F.tr.limits.max_total = 64u << 10;
	if (rxs_env_init(&F.e, &F.tr, &h_rxs_ops, "fuzz", "fuzz-rx", 2048, 4,
			 4u << 20) != TW_OK)
		fail();
	F.e.large_frame = 8192;
	F.e.worker_bytes = &F.worker;
	F.e.worker_max = 64u << 10;
	F.e.host_max = 32u << 10;
}

/* Feed p[0, n) to c: in place while a large frame lands (in_place), else
 * through rxs_feed. What a held or closed c does not take is dropped. */
static void feed(struct hconn *c, const uint8_t *p, size_t n, bool in_place)
{
	while (n > 0 && !c->closing) {
		size_t k;
		if (in_place && rxs_large(&c->rx)) {
			uint64_t left = rxs_left(&c->rx);
			k = left < n ? (size_t)left : n;
			memcpy(rxs_dst(&c->rx), p, k);
			rxs_landed(&c->rx, k);
		} else {
			k = rxs_feed(&c->rx, p, n);
			if (k > n)
				fail();
			if (k == 0)
				return;
		}
		p += k;
		n -= k;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	setup_once();
	uint8_t flags = data[0];
	size_t cut = (size_t)data[1] * 4 + 1, cut2 = (size_t)data[2] + 1;
	data += 3;
	size = size - 3;
	F.skip = flags & 1;
	F.tr.cbs.on_refused = (flags & 2) ? NULL : on_refused;
	F.pause = (flags & 4) != 0;
	F.e.stop_holds = (flags & 8) ? (HOLD_ROOM | HOLD_LINGER) : 0xff;
	bool in_place = (flags & 16) != 0;

	struct hconn a, b;
	hconn_attach(&a, &F.e, &F.tr, &F.host);
	hconn_attach(&b, &F.e, &F.tr, &F.host);
	b.base.rx_max = (flags & 32) ? 4096 : 0;

	/* The same stream to both, cut differently, turn by turn. */
	size_t ia = 0, ib = 0;
	while (ia < size || ib < size) {
		size_t ka = size - ia < cut ? size - ia : cut;
		size_t kb = size - ib < cut2 ? size - ib : cut2;
		feed(&a, data + ia, ka, in_place);
		feed(&b, data + ib, kb, !in_place);
		ia += ka;
		ib += kb;
		/* A paused connection goes on at the next turn. */
		a.hold &= (uint8_t)~HOLD_PAUSE;
		b.hold &= (uint8_t)~HOLD_PAUSE;
		if (rxs_room_freed(&F.e))
			(void)rxs_retry_waiters(&F.e);
		/* The bounds count exactly what the frames hold. */
		if (atomic_load(&F.worker) != a.rx.asm_res + b.rx.asm_res ||
		    atomic_load(&F.host) != a.rx.asm_res + b.rx.asm_res)
			fail();
	}
	if (a.rx.rx_n > size || b.rx.rx_n > size)
		fail();
	rxs_detach(&a.rx);
	rxs_detach(&b.rx);
	if (atomic_load(&F.worker) != 0 || atomic_load(&F.host) != 0 ||
	    F.e.nwaiters != 0 || !TAILQ_EMPTY(&F.e.all))
		fail();
	/* Its timer may be armed: nothing waits any more, so it finds
	 * nothing when it fires. */
	return 0;
}
