/* The stream reassembler (dataplane/stream_rx.c) on its own, driven with
 * byte streams made here: headers split anywhere, bare headers, frames
 * over the limits refused and skipped or ended, the worker's and the
 * host's assembly bounds and waiting for room, large frames landing in
 * place, holds, and the stall check on a fake clock the test moves. No
 * socket, no transport: a connection is a struct rxs and two flags. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/loop.h"
#include "dataplane/stream_rx.h"
#include "dataplane/util.h"
#include "tests/lib/stream_rx_harness.h"

#define MS UINT64_C(1000000)
#define POOL_BUF 4096u
#define LARGE (64u << 10) /* frames over this: the cache, in place */
#define MAXF 64

static _Atomic uint64_t fake_ns;

static uint64_t fake_clock(void *ctx)
{
	(void)ctx;
	return atomic_load(&fake_ns);
}

/* What was delivered, in order. */
struct got {
	struct hconn *c;
	tw_frame_hdr h;
	size_t len;
	unsigned char *bytes; /* a copy */
};

static struct {
	tw_loop *l;
	tw_transport tr;
	struct rxs_env e;
	_Atomic uint64_t worker, host;
	struct got got[MAXF];
	unsigned ngot;
	int refused;
	tw_status refused_st;
	bool skip;           /* on_refused's answer */
	bool misaligned;     /* a frame whose bytes were not 64-byte aligned */
	bool pause_on_frame; /* on_frame pauses its connection */
} T;

static void on_frame(void *ctx, tw_conn *c, const tw_frame_hdr *h, tw_buf *b,
		     size_t off, size_t len)
{
	(void)ctx;
	cr_assert_lt(T.ngot, MAXF);
	struct got *g = &T.got[T.ngot++];
	g->c = hconn_of(c);
	g->h = *h;
	g->len = len;
	g->bytes = malloc(len);
	cr_assert_not_null(g->bytes);
	memcpy(g->bytes, (unsigned char *)b->data + off, len);
	T.misaligned |= off % TW_FRAME_SEG_ALIGN != 0;
	if (T.pause_on_frame)
		g->c->hold |= HOLD_PAUSE;
}

static bool on_refused(void *ctx, tw_conn *c, const tw_frame_hdr *h,
		       tw_status st)
{
	(void)ctx;
	(void)c;
	(void)h;
	T.refused++;
	T.refused_st = st;
	return T.skip;
}

/* A fresh module: worker bound w, host bound h (0: no host bound). */
static void setup_env(uint64_t w, uint64_t h, uint64_t stall_ns)
{
	memset(&T, 0, sizeof(T));
	atomic_store(&fake_ns, 1000 * MS);
	struct tw_loop_opts lo;
	tw_loop_opts_init(&lo, sizeof(lo));
	lo.clock = fake_clock;
	lo.tick_ns = MS;
	cr_assert_eq(tw_loop_create(&lo, &T.l), TW_OK);
	T.tr.ops = &h_transport_ops;
	T.tr.loop = T.l;
	T.tr.cbs.on_frame = on_frame;
	T.tr.cbs.on_conn = h_on_conn;
	T.tr.cbs.on_refused = on_refused;
	T.tr.limits.max_total = 4u << 20;
	cr_assert_eq(rxs_env_init(&T.e, &T.tr, &h_rxs_ops, "test", "test-rx",
				  POOL_BUF, 4, 16u << 20),
		     TW_OK);
	T.e.large_frame = LARGE;
	T.e.worker_bytes = &T.worker;
	T.e.worker_max = w;
	T.e.host_max = h;
	T.e.stall_ns = stall_ns;
	rxs_env_start(&T.e);
}

static void conn_init(struct hconn *c, bool host)
{
	hconn_attach(c, &T.e, &T.tr, host ? &T.host : NULL);
}

static void teardown_env(struct hconn **cs, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		rxs_detach(&cs[i]->rx);
	cr_assert_eq(atomic_load(&T.worker), 0, "every reservation let go");
	cr_assert_eq(atomic_load(&T.host), 0);
	rxs_env_stop(&T.e);
	rxs_env_fini(&T.e, false, "test");
	for (unsigned i = 0; i < T.ngot; i++)
		free(T.got[i].bytes);
	tw_loop_destroy(T.l);
}

/* The header of a frame of total bytes at p: req_id id; version the
 * header's (TW_FRAME_VERSION normally). */
static void make_hdr(unsigned char *p, uint64_t total, uint64_t id,
		     uint8_t version)
{
	tw_frame_hdr h = {
		.version = version,
		.type = 1,
		.req_id = id,
		.payload_len = (uint32_t)(total - TW_FRAME_HDR_SIZE),
		.total_len = total,
	};
	tw_frame_hdr_encode(p, &h);
}

/* A whole frame at p: its body a pattern of id. */
static void make_frame(unsigned char *p, uint64_t total, uint64_t id)
{
	make_hdr(p, total, id, TW_FRAME_VERSION);
	for (uint64_t i = TW_FRAME_HDR_SIZE; i < total; i++)
		p[i] = (unsigned char)(id * 31 + i);
}

static void check_got(unsigned i, struct hconn *c, uint64_t total, uint64_t id)
{
	cr_assert_lt(i, T.ngot, "frame %u delivered", i);
	struct got *g = &T.got[i];
	cr_assert_eq(g->c, c);
	cr_assert_eq(g->len, total);
	cr_assert_eq(g->h.total_len, total);
	cr_assert_eq(g->h.req_id, id);
	unsigned char *want = malloc(total);
	make_frame(want, total, id);
	cr_assert(memcmp(g->bytes, want, total) == 0, "frame %u's bytes", i);
	free(want);
}

/* The fixture of the tests on one connection, C, with room to spare. */
static struct hconn C;

static void one_conn(void)
{
	setup_env(64u << 20, 0, 0);
	conn_init(&C, false);
}

static void one_conn_done(void)
{
	struct hconn *cs[] = {&C};
	teardown_env(cs, 1);
}

/* Feed all n bytes in pieces of at most step (0: one byte at a time,
 * then growing), each taken whole. */
static void feed_all(struct hconn *c, const unsigned char *p, size_t n,
		     size_t step)
{
	size_t at = 0, k = 1;
	while (at < n) {
		size_t want = step ? step : k++;
		if (want > n - at)
			want = n - at;
		cr_assert_eq(rxs_feed(&c->rx, p + at, want), want);
		at += want;
	}
}

Test(stream_rx, headers_split_anywhere, .init = one_conn, .fini = one_conn_done)
{
	/* A bare header, a small frame, one over the pool buffer, a large
	 * one (a mapping from the cache, from 2 MiB on): back to back. */
	const uint64_t sz[] = {TW_FRAME_HDR_SIZE, 100, POOL_BUF + 1,
			       (2u << 20) + 7, 200};
	size_t n = 0;
	for (unsigned i = 0; i < 5; i++)
		n += sz[i];
	unsigned char *s = malloc(n);
	size_t at = 0;
	for (unsigned i = 0; i < 5; i++) {
		make_frame(s + at, sz[i], 10 + i);
		at += sz[i];
	}
	/* One byte at a time, then ever longer pieces: every header split
	 * at many places. */
	const size_t steps[] = {1, 0, 7, 47, 49, 4096, 1 << 20};
	for (unsigned r = 0; r < 7; r++) {
		unsigned base = T.ngot;
		feed_all(&C, s, n, steps[r]);
		cr_assert_eq(T.ngot, base + 5, "round %u", r);
		for (unsigned i = 0; i < 5; i++)
			check_got(base + i, &C, sz[i], 10 + i);
	}
	cr_assert_not(T.misaligned);
	cr_assert_eq(C.rx.rx_n, 7 * n, "every byte counted for stalls");
	cr_assert_eq(T.e.cnt.frames_rx, 35);
	cr_assert_eq(T.e.cnt.bytes_rx, 7 * n);
	cr_assert_eq(T.e.cnt.large_frames, 7);
	cr_assert_eq(T.e.cnt.large_cache_hits, 6, "the large buffer reused");
	cr_assert_eq(C.fails + C.cas + T.refused, 0);
	cr_assert_eq(atomic_load(&T.worker), 0, "reservations let go");
	free(s);
}

Test(stream_rx, large_frame_lands_in_place, .init = one_conn,
     .fini = one_conn_done)
{
	const uint64_t total = 3 * LARGE;
	unsigned char *f = malloc(total);
	make_frame(f, total, 5);
	/* The header and a little: the rest is the transport's to land. */
	cr_assert_eq(rxs_feed(&C.rx, f, 100), 100);
	cr_assert(rxs_large(&C.rx));
	cr_assert_eq(rxs_left(&C.rx), total - 100);
	cr_assert_eq(atomic_load(&T.worker), total, "reserved whole");
	uint64_t at = 100;
	while (at < total) {
		uint64_t k = rxs_left(&C.rx) < 10000 ? rxs_left(&C.rx) : 10000;
		memcpy(rxs_dst(&C.rx), f + at, k);
		rxs_landed(&C.rx, k);
		at += k;
	}
	cr_assert_eq(T.ngot, 1);
	check_got(0, &C, total, 5);
	cr_assert_not(rxs_large(&C.rx));
	cr_assert_eq(C.rx.rx_n, total);
	cr_assert_eq(atomic_load(&T.worker), 0);
	cr_assert(T.e.asm_freed);
	free(f);
}

Test(stream_rx, oversize_refused_and_skipped, .init = one_conn,
     .fini = one_conn_done)
{
	T.skip = true;
	/* Over t->limits (4 MiB), then over the connection's own rx_max. */
	const uint64_t big = (4u << 20) + 64;
	const uint64_t mid = 3000;
	C.base.rx_max = 2048;
	size_t n = big + 100 + mid + 100;
	unsigned char *s = malloc(n);
	make_frame(s, big, 1);
	make_frame(s + big, 100, 2);
	make_frame(s + big + 100, mid, 3);
	make_frame(s + big + 100 + mid, 100, 4);
	feed_all(&C, s, n, 65536 + 13);
	cr_assert_eq(T.refused, 2);
	cr_assert_eq(T.refused_st, TW_EOVERFLOW);
	cr_assert_eq(T.ngot, 2, "the frames after each refused one");
	check_got(0, &C, 100, 2);
	check_got(1, &C, 100, 4);
	cr_assert_eq(T.e.cnt.frames_refused, 2);
	cr_assert_eq(T.e.cnt.frames_skipped, 2);
	cr_assert_eq(T.e.cnt.bad_frames, 0);
	cr_assert_eq(atomic_load(&T.worker), 0, "nothing reserved to skip");
	cr_assert_eq(C.rx.rx_n, n);
	cr_assert_eq(C.fails + C.cas, 0);
	free(s);
}

Test(stream_rx, oversize_not_skipped_ends_after_send, .init = one_conn,
     .fini = one_conn_done)
{
	T.skip = false;
	unsigned char s[2 * TW_FRAME_HDR_SIZE + 100];
	make_hdr(s, (4u << 20) + 64, 1, TW_FRAME_VERSION); /* its header */
	make_frame(s + TW_FRAME_HDR_SIZE, 100, 2);
	size_t took = rxs_feed(&C.rx, s, TW_FRAME_HDR_SIZE + 100);
	cr_assert_eq(C.cas, 1);
	cr_assert_eq(C.cas_st, TW_EPROTO);
	cr_assert_eq(took, TW_FRAME_HDR_SIZE, "nothing past the refused one");
	cr_assert_eq(rxs_feed(&C.rx, s + took, 100), 0, "lingering: no more");
	cr_assert_eq(T.ngot, 0);
	cr_assert_eq(T.e.cnt.bad_frames, 1);
	cr_assert_eq(C.fails, 0);
}

Test(stream_rx, newer_version_ends_after_send, .init = one_conn,
     .fini = one_conn_done)
{
	T.skip = true; /* no skipping a version we do not speak */
	unsigned char s[100];
	make_hdr(s, 100, 1, TW_FRAME_VERSION + 1);
	cr_assert_eq(rxs_feed(&C.rx, s, 100), TW_FRAME_HDR_SIZE);
	cr_assert_eq(T.refused_st, TW_EVERSION);
	cr_assert_eq(C.cas, 1);
	cr_assert_eq(C.cas_st, TW_EVERSION);
	cr_assert_eq(T.e.cnt.frames_skipped, 0);
}

Test(stream_rx, refused_without_on_refused_fails, .init = one_conn,
     .fini = one_conn_done)
{
	T.tr.cbs.on_refused = NULL;
	unsigned char s[TW_FRAME_HDR_SIZE];
	make_hdr(s, (4u << 20) + 64, 1, TW_FRAME_VERSION);
	cr_assert_eq(rxs_feed(&C.rx, s, sizeof(s)), sizeof(s));
	cr_assert_eq(C.fails, 1);
	cr_assert_eq(C.fail_st, TW_EPROTO);
	cr_assert_eq(C.fail_why, RXS_REFUSED);
	cr_assert_eq(C.cas, 0);
}

Test(stream_rx, garbage_header_fails, .init = one_conn, .fini = one_conn_done)
{
	unsigned char s[TW_FRAME_HDR_SIZE + 10];
	memset(s, 0x5a, sizeof(s));
	make_hdr(s, 100, 1, TW_FRAME_VERSION);
	s[0] ^= 0xff; /* the magic */
	cr_assert_eq(rxs_feed(&C.rx, s, sizeof(s)), TW_FRAME_HDR_SIZE);
	cr_assert_eq(C.fails, 1);
	cr_assert_eq(C.fail_st, TW_EPROTO);
	cr_assert_eq(C.fail_why, RXS_BAD_HDR);
	cr_assert_eq(T.refused, 0, "not intact: not the layer above's call");
	cr_assert_eq(T.e.cnt.bad_frames, 1);
	cr_assert_eq(rxs_feed(&C.rx, s, 10), 0, "closed: nothing taken");
	cr_assert_str_eq(rxs_why_str(RXS_BAD_HDR),
			 "a frame header does not decode");
}

/* A module whose worker bound is worker, connections a and b on it, and
 * a frame of fsz bytes for each (fa: id 1, fb: id 2). */
static void two_conns(uint64_t worker, struct hconn *a, struct hconn *b,
		      unsigned char *fa, unsigned char *fb, uint64_t fsz)
{
	setup_env(worker, 0, 0);
	conn_init(a, false);
	conn_init(b, false);
	make_frame(fa, fsz, 1);
	make_frame(fb, fsz, 2);
}

/* Two frames over the pool buffer where the worker's bound holds one:
 * the second waits (reading nothing past its header), and goes on when
 * the first lets go. */
Test(stream_rx, worker_budget_exhausted_waits)
{
	const uint64_t fsz = 3 * POOL_BUF;
	struct hconn a, b;
	unsigned char fa[3 * POOL_BUF], fb[3 * POOL_BUF];
	two_conns(fsz + fsz / 2, &a, &b, fa, fb, fsz);
	cr_assert_eq(rxs_feed(&a.rx, fa, 1000), 1000);
	cr_assert_eq(atomic_load(&T.worker), fsz);
	size_t took = rxs_feed(&b.rx, fb, 1000);
	cr_assert_eq(took, TW_FRAME_HDR_SIZE, "b stops after its header");
	cr_assert_eq(b.room_waits, 1);
	cr_assert(b.hold & HOLD_ROOM);
	cr_assert_eq(T.e.nwaiters, 1);
	cr_assert_eq(T.e.cnt.asm_waits, 1);
	cr_assert_eq(rxs_feed(&b.rx, fb + took, 10), 0, "held: nothing");
	cr_assert_not(rxs_room_freed(&T.e));
	/* A retry while a still holds its room: b waits on, counted once. */
	atomic_store(&fake_ns, atomic_load(&fake_ns) + 2 * MS);
	(void)tw_loop_poll_once(T.l);
	cr_assert_eq(T.e.nwaiters, 1);
	cr_assert_eq(T.e.cnt.asm_waits, 1);
	cr_assert_eq(b.room_founds, 0);
	feed_all(&a, fa + 1000, fsz - 1000, 999);
	cr_assert_eq(T.ngot, 1);
	cr_assert(rxs_room_freed(&T.e));
	cr_assert_eq(rxs_retry_waiters(&T.e), 1);
	cr_assert_eq(b.room_founds, 1);
	cr_assert_not(b.hold & HOLD_ROOM);
	cr_assert_eq(T.e.nwaiters, 0);
	feed_all(&b, fb + took, fsz - took, 4000);
	cr_assert_eq(T.ngot, 2);
	check_got(0, &a, fsz, 1);
	check_got(1, &b, fsz, 2);
	struct hconn *cs[] = {&a, &b};
	teardown_env(cs, 2);
}

/* The timer retries a waiter on its own (no poller saw room freed). */
Test(stream_rx, waiter_retried_by_timer)
{
	const uint64_t fsz = 2 * POOL_BUF;
	struct hconn a, b;
	unsigned char fa[2 * POOL_BUF], fb[2 * POOL_BUF];
	two_conns(fsz, &a, &b, fa, fb, fsz);
	cr_assert_eq(rxs_feed(&a.rx, fa, 100), 100);
	cr_assert_eq(rxs_feed(&b.rx, fb, 100), TW_FRAME_HDR_SIZE);
	feed_all(&a, fa + 100, fsz - 100, 0);
	cr_assert_eq(T.ngot, 1);
	cr_assert_eq(b.room_founds, 0);
	atomic_store(&fake_ns, atomic_load(&fake_ns) + 2 * MS);
	(void)tw_loop_poll_once(T.l);
	cr_assert_eq(b.room_founds, 1, "the retry timer placed b's frame");
	feed_all(&b, fb + TW_FRAME_HDR_SIZE, fsz - TW_FRAME_HDR_SIZE, 0);
	check_got(1, &b, fsz, 2);
	struct hconn *cs[] = {&a, &b};
	teardown_env(cs, 2);
}

/* One frame alone is granted whatever its size; the peer host's bound
 * holds a second one from the same host, not one from another. */
Test(stream_rx, host_budget)
{
	const uint64_t fsz = 4 * POOL_BUF;
	setup_env(fsz / 2 + 3 * fsz, fsz / 2, 0);
	struct hconn a, b, other;
	conn_init(&a, true);
	conn_init(&b, true);
	conn_init(&other, false); /* no host bound */
	unsigned char f[4 * POOL_BUF];
	make_frame(f, fsz, 1);
	cr_assert_eq(rxs_feed(&a.rx, f, 100), 100, "alone: granted");
	cr_assert_eq(atomic_load(&T.host), fsz);
	cr_assert_eq(rxs_feed(&b.rx, f, 100), TW_FRAME_HDR_SIZE);
	cr_assert(b.hold & HOLD_ROOM, "the host's share is spent");
	cr_assert_eq(atomic_load(&T.worker), fsz, "b's try given back");
	cr_assert_eq(atomic_load(&T.host), fsz);
	cr_assert_eq(rxs_feed(&other.rx, f, 100), 100);
	cr_assert_eq(atomic_load(&T.worker), 2 * fsz);
	/* Closing b while it waits lets go of its place in the queue. */
	b.closing = true;
	rxs_release(&b.rx);
	cr_assert_eq(T.e.nwaiters, 0);
	cr_assert_not(b.hold & HOLD_ROOM);
	struct hconn *cs[] = {&a, &b, &other};
	teardown_env(cs, 3);
}

/* A hold in stop_holds stops at the next frame boundary, not inside a
 * frame: bytes in hand finish the frame they belong to. */
Test(stream_rx, hold_stops_at_a_boundary, .init = one_conn,
     .fini = one_conn_done)
{
	unsigned char s[300];
	make_frame(s, 100, 1);
	make_frame(s + 100, 200, 2);
	T.pause_on_frame = true;
	cr_assert_eq(rxs_feed(&C.rx, s, 300), 100, "paused by on_frame");
	cr_assert_eq(T.ngot, 1);
	cr_assert_eq(rxs_feed(&C.rx, s + 100, 200), 0);
	/* A transport whose read bytes have nowhere else to go (io_uring)
	 * reads on while paused. */
	T.pause_on_frame = false;
	T.e.stop_holds = HOLD_ROOM | HOLD_LINGER;
	cr_assert_eq(rxs_feed(&C.rx, s + 100, 200), 200);
	check_got(1, &C, 200, 2);
}

/* A partial frame must move RXS_STALL_MIN_BYTES per window of stall_ns;
 * one that trickles is ended, one that moves enough is not, a held one
 * is not watched. */
Test(stream_rx, stall_on_fake_clock)
{
	const uint64_t stall = 40 * MS;
	setup_env(64u << 20, 0, stall);
	struct hconn slow, fast, held, idle;
	conn_init(&slow, false);
	conn_init(&fast, false);
	conn_init(&held, false);
	conn_init(&idle, false);
	const uint64_t total = 4u << 20;
	unsigned char *f = malloc(total);
	make_frame(f, total, 9);
	cr_assert_eq(rxs_feed(&slow.rx, f, 10), 10, "a partial header");
	cr_assert_eq(rxs_feed(&fast.rx, f, 100), 100);
	cr_assert_eq(rxs_feed(&held.rx, f, 100), 100);
	held.hold |= HOLD_PAUSE;
	uint64_t now = atomic_load(&fake_ns), fed = 100;
	unsigned fed_slow = 10;
	/* 10 ms steps for 200 ms: sweeps every stall / 4. */
	for (unsigned i = 1; i <= 20; i++) {
		now += 10 * MS;
		atomic_store(&fake_ns, now);
		if (fed_slow < TW_FRAME_HDR_SIZE - 1 && !slow.closing) {
			cr_assert_eq(rxs_feed(&slow.rx, f + fed_slow, 1), 1);
			fed_slow++;
		}
		cr_assert_eq(rxs_feed(&fast.rx, f + fed, 40000), 40000);
		fed += 40000;
		(void)tw_loop_poll_once(T.l);
		if (i * 10 * MS < stall)
			cr_assert_eq(slow.fails, 0, "not before stall_ns");
	}
	cr_assert_eq(slow.fails, 1);
	cr_assert_eq(slow.fail_st, TW_ETIMEDOUT);
	cr_assert_eq(slow.fail_why, RXS_STALL);
	cr_assert_eq(fast.fails + held.fails + idle.fails, 0);
	cr_assert_eq(T.e.cnt.stalls, 1);
	free(f);
	struct hconn *cs[] = {&slow, &fast, &held, &idle};
	teardown_env(cs, 4);
}
