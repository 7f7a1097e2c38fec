/* Unit and stress tests of dataplane/ring.h (SPSC, MPSC, MPMC). */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "dataplane/ring.h"

/* CI runs the suite plain and under ASan+UBSan on 2 cores: keep the stress
 * tests well under 20 s either way by moving fewer items when
 * instrumented. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif
#define SCALE(plain, asan) (UNDER_ASAN ? (asan) : (plain))

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Threads outnumber cores here: a thread that finds the ring full or
 * empty gives its core away rather than spin out its time slice. */
static void backoff(void)
{
	sched_yield();
}

static void *item(uintptr_t v)
{
	return (void *)v;
}

/* ------------------------------------------------------------------ */
/* Init and layout                                                     */

Test(ring, memsize_and_init_validation)
{
	cr_expect_eq(tw_ring_memsize(0), 0);
	cr_expect_eq(tw_ring_memsize(3), 0, "non power of two is rejected");
	cr_expect_eq(tw_ring_memsize(1000), 0);
	cr_expect_eq(tw_ring_memsize(TW_RING_SZ_MAX + 1), 0);
	cr_expect_eq(tw_ring_memsize(UINT32_MAX), 0);
	cr_expect_eq(tw_ring_memsize(1), sizeof(tw_ring) + 64);
	cr_expect_eq(tw_ring_memsize(64),
		     sizeof(tw_ring) + 64 * sizeof(void *));
	cr_expect_gt(tw_ring_memsize(TW_RING_SZ_MAX), (size_t)TW_RING_SZ_MAX);
	cr_expect_eq(tw_ring_memsize(1024) % 64, 0);

	tw_ring *r = NULL;
	cr_expect_eq(tw_ring_create(0, 0, &r), TW_EINVAL);
	cr_expect_null(r);
	cr_expect_eq(tw_ring_create(6, 0, &r), TW_EINVAL,
		     "rejected, not rounded up");
	cr_expect_null(r);
	cr_expect_eq(tw_ring_create(8, 0x80, &r), TW_EINVAL, "unknown flag");
	cr_expect_null(r);
	cr_expect_eq(tw_ring_create(8, 0, NULL), TW_EINVAL);
	cr_expect_eq(tw_ring_init(NULL, 8, 0), TW_EINVAL);

	/* Caller memory must be cache-line aligned. */
	size_t sz = tw_ring_memsize(8);
	unsigned char *mem = aligned_alloc(64, sz + 64);
	cr_assert_not_null(mem);
	cr_expect_eq(tw_ring_init((tw_ring *)(mem + 8), 8, 0), TW_EINVAL);
	cr_expect_eq(tw_ring_init((tw_ring *)mem, 8, TW_RING_F_SPSC), TW_OK);
	tw_ring *cm = (tw_ring *)mem;
	cr_expect_eq(tw_ring_capacity(cm), 8);
	cr_expect_eq(tw_ring_count(cm), 0);
	cr_expect_eq(tw_ring_free_count(cm), 8);
	free(mem);

	cr_assert_eq(tw_ring_create(1, TW_RING_F_MPSC, &r), TW_OK);
	cr_expect_eq(tw_ring_capacity(r), 1);
	tw_ring_free(r);
	tw_ring_free(NULL);
}

Test(ring, layout)
{
	/* The static asserts in ring.h check this too; here it is visible. */
	cr_expect_eq(offsetof(tw_ring, prod) % 64, 0);
	cr_expect_eq(offsetof(tw_ring, cons) % 64, 0);
	cr_expect_geq(offsetof(tw_ring, cons) - offsetof(tw_ring, prod), 128);
	cr_expect_geq(offsetof(tw_ring, slots) - offsetof(tw_ring, cons), 128);
	cr_expect_eq(offsetof(tw_ring, slots) % 64, 0);
}

/* ------------------------------------------------------------------ */
/* Burst vs bulk                                                       */

Test(ring, bulk_is_all_or_nothing)
{
	tw_ring *r;
	void *in[16], *out[16];
	unsigned fs = 99, av = 99;

	for (uintptr_t i = 0; i < 16; i++)
		in[i] = item(i + 1);
	cr_assert_eq(tw_ring_create(8, TW_RING_F_MPMC, &r), TW_OK);

	cr_expect_eq(tw_ring_enqueue_bulk(r, in, 9, &fs), 0, "more than fits");
	cr_expect_eq(fs, 8);
	cr_expect_eq(tw_ring_count(r), 0);
	cr_expect_eq(tw_ring_mp_enqueue_bulk(r, in, 5, &fs), 5);
	cr_expect_eq(fs, 3);
	cr_expect_eq(tw_ring_sp_enqueue_bulk(r, in + 5, 4, &fs), 0);
	cr_expect_eq(fs, 3);
	cr_expect_eq(tw_ring_count(r), 5);
	cr_expect_eq(tw_ring_sp_enqueue_bulk(r, in + 5, 3, NULL), 3);
	cr_expect(tw_ring_full(r));
	cr_expect_eq(tw_ring_enqueue_bulk(r, in, 1, &fs), 0);
	cr_expect_eq(fs, 0);

	cr_expect_eq(tw_ring_dequeue_bulk(r, out, 9, &av), 0);
	cr_expect_eq(av, 8);
	cr_expect_eq(tw_ring_mc_dequeue_bulk(r, out, 6, &av), 6);
	cr_expect_eq(av, 2);
	cr_expect_eq(tw_ring_sc_dequeue_bulk(r, out + 6, 3, &av), 0);
	cr_expect_eq(tw_ring_sc_dequeue_bulk(r, out + 6, 2, &av), 2);
	cr_expect_eq(av, 0);
	for (int i = 0; i < 8; i++)
		cr_expect_eq(out[i], in[i], "FIFO order at %d", i);
	cr_expect(tw_ring_empty(r));
	cr_expect_eq(tw_ring_dequeue_bulk(r, out, 1, NULL), 0);
	cr_expect_eq(tw_ring_dequeue_bulk(r, out, 0, &av), 0, "n = 0");
	tw_ring_free(r);
}

Test(ring, burst_takes_what_fits)
{
	tw_ring *r;
	void *in[16], *out[16];
	unsigned fs = 99, av = 99;

	for (uintptr_t i = 0; i < 16; i++)
		in[i] = item(100 + i);
	cr_assert_eq(tw_ring_create(8, TW_RING_F_SPSC, &r), TW_OK);

	cr_expect_eq(tw_ring_enqueue_burst(r, in, 5, &fs), 5);
	cr_expect_eq(fs, 3);
	cr_expect_eq(tw_ring_mp_enqueue_burst(r, in + 5, 10, &fs), 3,
		     "only 3 fit");
	cr_expect_eq(fs, 0);
	cr_expect_eq(tw_ring_sp_enqueue_burst(r, in, 4, &fs), 0, "full");
	cr_expect_eq(tw_ring_count(r), 8);
	cr_expect_eq(tw_ring_free_count(r), 0);

	cr_expect_eq(tw_ring_dequeue_burst(r, out, 3, &av), 3);
	cr_expect_eq(av, 5);
	cr_expect_eq(tw_ring_mc_dequeue_burst(r, out + 3, 16, &av), 5,
		     "all that is there");
	cr_expect_eq(av, 0);
	cr_expect_eq(tw_ring_sc_dequeue_burst(r, out, 4, &av), 0, "empty");
	for (int i = 0; i < 8; i++)
		cr_expect_eq(out[i], in[i], "FIFO order at %d", i);

	/* NULL is an ordinary entry. */
	void *nul = NULL;
	out[0] = item(1);
	cr_expect_eq(tw_ring_enqueue_burst(r, &nul, 1, NULL), 1);
	cr_expect_eq(tw_ring_dequeue_burst(r, out, 1, NULL), 1);
	cr_expect_null(out[0]);
	tw_ring_free(r);
}

Test(ring, single_slot_ring)
{
	tw_ring *r;
	void *o;

	cr_assert_eq(tw_ring_create(1, TW_RING_F_MPMC, &r), TW_OK);
	for (uintptr_t i = 0; i < 1000; i++) {
		void *v = item(i);
		cr_assert_eq(tw_ring_enqueue_bulk(r, &v, 1, NULL), 1);
		cr_assert_eq(tw_ring_enqueue_burst(r, &v, 1, NULL), 0);
		cr_assert_eq(tw_ring_dequeue_bulk(r, &o, 1, NULL), 1);
		cr_assert_eq(o, v);
	}
	tw_ring_free(r);
}

/* ------------------------------------------------------------------ */
/* Wraparound of the free-running u32 indices                           */

static void cycle_across(uint32_t start, unsigned flags)
{
	tw_ring *r;
	void *in[8], *out[8];
	uintptr_t next_in = 0, next_out = 0;

	cr_assert_eq(tw_ring_create(8, flags, &r), TW_OK);
	cr_assert_eq(tw_ring_test_set_index_(r, start), TW_OK);
	cr_expect_eq(tw_ring_count(r), 0);
	cr_expect_eq(tw_ring_free_count(r), 8);

	/* Uneven batch sizes so the wrap falls inside batches, at
	 * different slots each time round, with the ring both nearly full
	 * and nearly empty as it happens. */
	for (unsigned step = 0; step < 200; step++) {
		unsigned ne = 1 + step % 7, nd = 1 + (step * 5) % 6;
		uint32_t before = tw_ring_count(r);
		unsigned fs;

		for (unsigned i = 0; i < ne; i++)
			in[i] = item(next_in + i);
		unsigned got = tw_ring_enqueue_burst(r, in, ne, &fs);
		cr_assert_eq(got, ne < 8 - before ? ne : 8 - before);
		cr_assert_eq(fs, 8 - before - got);
		next_in += got;
		cr_assert_eq(tw_ring_count(r), before + got);
		cr_assert_eq(tw_ring_free_count(r), 8 - before - got);

		unsigned av;
		unsigned d = tw_ring_dequeue_burst(r, out, nd, &av);
		cr_assert_eq(d, nd < before + got ? nd : before + got);
		cr_assert_eq(av, before + got - d);
		for (unsigned i = 0; i < d; i++)
			cr_assert_eq(out[i], item(next_out + i),
				     "start %#x step %u: FIFO broken", start,
				     step);
		next_out += d;
	}
	/* The indices really crossed zero. */
	uint32_t head = tw_ring_ht_head_(atomic_load(&r->prod.ht));
	cr_expect_eq(head - start, (uint32_t)next_in);
	if ((uint64_t)start + next_in > UINT32_MAX)
		cr_expect_lt(head, start, "head wrapped");
	cr_expect_eq(tw_ring_test_set_index_(r, 0),
		     tw_ring_count(r) == 0 ? TW_OK : TW_EINVAL);
	tw_ring_free(r);
}

Test(ring, wraparound_of_u32_indices)
{
	static const uint32_t starts[] = {
		UINT32_MAX - 3, UINT32_MAX,     UINT32_MAX - 100,
		0x7ffffffcu,    UINT32_MAX - 7,
	};
	for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
		cycle_across(starts[i], TW_RING_F_SPSC);
		cycle_across(starts[i], TW_RING_F_MPMC);
	}
}

Test(ring, full_and_empty_at_wrap)
{
	tw_ring *r;
	void *in[4] = {item(1), item(2), item(3), item(4)}, *out[4];

	cr_assert_eq(tw_ring_create(4, TW_RING_F_MPMC, &r), TW_OK);
	/* prod.head - cons.tail == 4 exactly as the u32 wraps: full must not
	 * read as empty (the reason a masked count would be wrong). */
	cr_assert_eq(tw_ring_test_set_index_(r, UINT32_MAX - 1), TW_OK);
	cr_expect_eq(tw_ring_enqueue_bulk(r, in, 4, NULL), 4);
	cr_expect_eq(tw_ring_count(r), 4);
	cr_expect(tw_ring_full(r));
	cr_expect_eq(tw_ring_enqueue_burst(r, in, 1, NULL), 0);
	cr_expect_eq(tw_ring_test_set_index_(r, 0), TW_EINVAL, "not empty");
	cr_expect_eq(tw_ring_dequeue_bulk(r, out, 4, NULL), 4);
	for (int i = 0; i < 4; i++)
		cr_expect_eq(out[i], in[i]);
	cr_expect(tw_ring_empty(r));
	cr_expect_eq(tw_ring_ht_tail_(atomic_load(&r->cons.ht)), 2u);
	cr_expect_eq(tw_ring_ht_head_(atomic_load(&r->cons.ht)), 2u);
	tw_ring_free(r);
}

/* ------------------------------------------------------------------ */
/* SPSC: millions of items, order checked                              */

struct spsc_ctx {
	tw_ring *r;
	uintptr_t n;
	atomic_uint errors;
	atomic_int done; /* producer finished: an empty ring is final */
};

static void *spsc_producer(void *arg)
{
	struct spsc_ctx *c = arg;
	void *batch[32];
	uintptr_t next = 0;

	while (next < c->n) {
		unsigned want = 1 + (unsigned)(next % 32);
		if (want > c->n - next)
			want = (unsigned)(c->n - next);
		for (unsigned i = 0; i < want; i++)
			batch[i] = item(next + i);
		unsigned got = tw_ring_sp_enqueue_burst(c->r, batch, want,
							NULL);
		if (got == 0)
			backoff();
		next += got;
	}
	atomic_store(&c->done, 1);
	return NULL;
}

Test(ring, spsc_stream_millions, .timeout = 60)
{
	struct spsc_ctx c = {.n = SCALE(40000000u, 8000000u)};
	pthread_t t;
	void *batch[64];
	uintptr_t expect = 0;

	cr_assert_eq(tw_ring_create(1024, TW_RING_F_SPSC, &c.r), TW_OK);
	double t0 = now_s();
	cr_assert_eq(pthread_create(&t, NULL, spsc_producer, &c), 0);
	while (expect < c.n) {
		int done = atomic_load(&c.done);
		unsigned got = tw_ring_dequeue_burst(c.r, batch, 64, NULL);
		if (got == 0 && done)
			break; /* lost items: fail below, do not hang */
		if (got == 0)
			backoff();
		for (unsigned i = 0; i < got; i++)
			if (batch[i] != item(expect + i))
				atomic_fetch_add(&c.errors, 1);
		expect += got;
	}
	pthread_join(t, NULL);
	double dt = now_s() - t0;
	fprintf(stderr, "ring spsc: %lu items in %.3f s (%.1f Mitems/s)\n",
		(unsigned long)c.n, dt, (double)c.n / dt / 1e6);
	cr_expect_eq(atomic_load(&c.errors), 0, "items out of order");
	cr_expect_eq(expect, c.n, "items lost");
	cr_expect(tw_ring_empty(c.r));
	tw_ring_free(c.r);
}

/* ------------------------------------------------------------------ */
/* MPSC stress: (producer id, sequence) arrives exactly once, in order  */

#define MPSC_PRODUCERS 4
#define SEQ_BITS 28 /* id in the bits above: fits a 32-bit pointer too */

struct mpsc_ctx {
	tw_ring *r;
	uintptr_t per_producer;
	atomic_uint ready;
	atomic_uint done; /* producers finished */
};

struct mpsc_arg {
	struct mpsc_ctx *c;
	uintptr_t id;
};

static void *mpsc_producer(void *arg)
{
	struct mpsc_arg *a = arg;
	struct mpsc_ctx *c = a->c;
	void *batch[16];
	uintptr_t seq = 0;
	unsigned k = (unsigned)a->id;

	/* Start together so the producers really contend on prod.head. */
	atomic_fetch_add(&c->ready, 1);
	while (atomic_load(&c->ready) < MPSC_PRODUCERS)
		backoff();
	while (seq < c->per_producer) {
		unsigned want = 1 + (k++ % 16);
		if (want > c->per_producer - seq)
			want = (unsigned)(c->per_producer - seq);
		for (unsigned i = 0; i < want; i++)
			batch[i] = item(a->id << SEQ_BITS | (seq + i));
		/* Mix bulk and burst, default and explicit mp. */
		unsigned got = (k & 1) ? tw_ring_enqueue_burst(c->r, batch,
							       want, NULL)
				       : tw_ring_mp_enqueue_bulk(c->r, batch,
								 want, NULL);
		if (got == 0)
			backoff();
		seq += got;
	}
	atomic_fetch_add(&c->done, 1);
	return NULL;
}

Test(ring, mpsc_stress_per_producer_order, .timeout = 60)
{
	struct mpsc_ctx c = {.per_producer = SCALE(8000000u, 2000000u)};
	struct mpsc_arg args[MPSC_PRODUCERS];
	pthread_t t[MPSC_PRODUCERS];
	uintptr_t next[MPSC_PRODUCERS] = {0};
	uintptr_t total = c.per_producer * MPSC_PRODUCERS, seen = 0;
	unsigned bad_id = 0, out_of_order = 0;
	void *batch[32];

	cr_assert_lt(c.per_producer, (uintptr_t)1 << SEQ_BITS);
	cr_assert_eq(tw_ring_create(512, TW_RING_F_MPSC, &c.r), TW_OK);
	double t0 = now_s();
	for (int i = 0; i < MPSC_PRODUCERS; i++) {
		args[i] = (struct mpsc_arg){.c = &c, .id = (uintptr_t)i};
		cr_assert_eq(pthread_create(&t[i], NULL, mpsc_producer,
					    &args[i]),
			     0);
	}
	while (seen < total) {
		/* Read before dequeuing: every item of a finished producer is
		 * then visible to the dequeue. */
		unsigned done = atomic_load(&c.done);
		unsigned got =
			(seen & 1)
				? tw_ring_dequeue_burst(c.r, batch, 32, NULL)
				: tw_ring_sc_dequeue_burst(c.r, batch, 7, NULL);
		if (got == 0 && done == MPSC_PRODUCERS)
			break; /* lost items: fail below, do not hang */
		if (got == 0)
			backoff();
		for (unsigned i = 0; i < got; i++) {
			uintptr_t v = (uintptr_t)batch[i];
			uintptr_t id = v >> SEQ_BITS;
			uintptr_t seq = v & (((uintptr_t)1 << SEQ_BITS) - 1);
			if (id >= MPSC_PRODUCERS) {
				bad_id++;
				continue;
			}
			/* Exactly the next one: a loss, duplicate or reorder
			 * all show up here. */
			if (seq != next[id])
				out_of_order++;
			next[id] = seq + 1;
		}
		seen += got;
	}
	for (int i = 0; i < MPSC_PRODUCERS; i++)
		pthread_join(t[i], NULL);
	double dt = now_s() - t0;
	fprintf(stderr,
		"ring mpsc: %d producers, %lu items in %.3f s (%.1f Mitems/s)\n",
		MPSC_PRODUCERS, (unsigned long)total, dt,
		(double)total / dt / 1e6);
	cr_expect_eq(bad_id, 0);
	cr_expect_eq(out_of_order, 0);
	for (int i = 0; i < MPSC_PRODUCERS; i++)
		cr_expect_eq(next[i], c.per_producer, "producer %d", i);
	cr_expect(tw_ring_empty(c.r));
	tw_ring_free(c.r);
}

/* ------------------------------------------------------------------ */
/* MPMC stress: every item consumed exactly once                        */

#define MPMC_PRODUCERS 3
#define MPMC_CONSUMERS 3

struct mpmc_ctx {
	tw_ring *r;
	uintptr_t per_producer;
	_Atomic uint8_t *hits; /* one counter per item */
	atomic_uintptr_t consumed;
	atomic_uint ready;
	atomic_uint errors;
	atomic_uint done; /* producers finished */
};

struct mpmc_arg {
	struct mpmc_ctx *c;
	uintptr_t id;
};

static void mpmc_start(struct mpmc_ctx *c)
{
	atomic_fetch_add(&c->ready, 1);
	while (atomic_load(&c->ready) < MPMC_PRODUCERS + MPMC_CONSUMERS)
		backoff();
}

static void *mpmc_producer(void *arg)
{
	struct mpmc_arg *a = arg;
	struct mpmc_ctx *c = a->c;
	void *batch[16];
	uintptr_t base = a->id * c->per_producer, seq = 0;
	unsigned k = (unsigned)a->id;

	mpmc_start(c);
	while (seq < c->per_producer) {
		unsigned want = 1 + (k++ % 16);
		if (want > c->per_producer - seq)
			want = (unsigned)(c->per_producer - seq);
		for (unsigned i = 0; i < want; i++)
			batch[i] = item(base + seq + i);
		unsigned got = (k & 1) ? tw_ring_mp_enqueue_burst(c->r, batch,
								  want, NULL)
				       : tw_ring_enqueue_bulk(c->r, batch, want,
							      NULL);
		if (got == 0)
			backoff();
		seq += got;
	}
	atomic_fetch_add(&c->done, 1);
	return NULL;
}

static void *mpmc_consumer(void *arg)
{
	struct mpmc_arg *a = arg;
	struct mpmc_ctx *c = a->c;
	uintptr_t total = c->per_producer * MPMC_PRODUCERS;
	uintptr_t last[MPMC_PRODUCERS];
	void *batch[16];
	unsigned k = (unsigned)a->id;

	for (int i = 0; i < MPMC_PRODUCERS; i++)
		last[i] = UINTPTR_MAX;
	mpmc_start(c);
	while (atomic_load_explicit(&c->consumed, memory_order_relaxed) <
	       total) {
		unsigned want = 1 + (k++ % 16);
		unsigned done = atomic_load(&c->done);
		unsigned got = (k & 1) ? tw_ring_mc_dequeue_burst(c->r, batch,
								  want, NULL)
				       : tw_ring_dequeue_bulk(c->r, batch, want,
							      NULL);
		if (got == 0) {
			/* Producers gone and the ring empty: whatever is
			 * missing is lost; stop instead of hanging. */
			if (done == MPMC_PRODUCERS && tw_ring_empty(c->r))
				break;
			backoff();
			continue;
		}
		for (unsigned i = 0; i < got; i++) {
			uintptr_t v = (uintptr_t)batch[i];
			if (v >= total) {
				atomic_fetch_add(&c->errors, 1);
				continue;
			}
			atomic_fetch_add_explicit(&c->hits[v], 1,
						  memory_order_relaxed);
			/* One consumer sees a subsequence of the FIFO, so
			 * each producer's items still arrive in order. */
			uintptr_t p = v / c->per_producer;
			if (last[p] != UINTPTR_MAX && v <= last[p])
				atomic_fetch_add(&c->errors, 1);
			last[p] = v;
		}
		atomic_fetch_add_explicit(&c->consumed, got,
					  memory_order_relaxed);
	}
	return NULL;
}

Test(ring, mpmc_stress_exactly_once, .timeout = 60)
{
	struct mpmc_ctx c = {.per_producer = SCALE(4000000u, 1000000u)};
	struct mpmc_arg pa[MPMC_PRODUCERS], ca[MPMC_CONSUMERS];
	pthread_t pt[MPMC_PRODUCERS], ct[MPMC_CONSUMERS];
	uintptr_t total = c.per_producer * MPMC_PRODUCERS;

	c.hits = calloc(total, sizeof(*c.hits));
	cr_assert_not_null(c.hits);
	cr_assert_eq(tw_ring_create(256, TW_RING_F_MPMC, &c.r), TW_OK);
	double t0 = now_s();
	for (int i = 0; i < MPMC_CONSUMERS; i++) {
		ca[i] = (struct mpmc_arg){.c = &c, .id = (uintptr_t)i};
		cr_assert_eq(
			pthread_create(&ct[i], NULL, mpmc_consumer, &ca[i]), 0);
	}
	for (int i = 0; i < MPMC_PRODUCERS; i++) {
		pa[i] = (struct mpmc_arg){.c = &c, .id = (uintptr_t)i};
		cr_assert_eq(
			pthread_create(&pt[i], NULL, mpmc_producer, &pa[i]), 0);
	}
	for (int i = 0; i < MPMC_PRODUCERS; i++)
		pthread_join(pt[i], NULL);
	for (int i = 0; i < MPMC_CONSUMERS; i++)
		pthread_join(ct[i], NULL);
	double dt = now_s() - t0;
	fprintf(stderr,
		"ring mpmc: %dP/%dC, %lu items in %.3f s (%.1f Mitems/s)\n",
		MPMC_PRODUCERS, MPMC_CONSUMERS, (unsigned long)total, dt,
		(double)total / dt / 1e6);

	unsigned missing = 0, dup = 0;
	for (uintptr_t i = 0; i < total; i++) {
		uint8_t h = atomic_load(&c.hits[i]);
		missing += h == 0;
		dup += h > 1;
	}
	cr_expect_eq(atomic_load(&c.errors), 0, "bad or reordered items");
	cr_expect_eq(missing, 0, "items lost");
	cr_expect_eq(dup, 0, "items duplicated");
	cr_expect_eq(atomic_load(&c.consumed), total);
	cr_expect(tw_ring_empty(c.r));
	tw_ring_free(c.r);
	free(c.hits);
}
