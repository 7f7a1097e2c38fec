/* Unit tests of tw_buf (heap, user, slice), tw_buf_pool and the large
 * receive buffers with their cache (buf_impl.h). */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <tensorwire/buf.h>
#include <tensorwire/status.h>

#include "dataplane/buf_impl.h"
#include "dataplane/ring.h"

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

static int aligned64(const void *p)
{
	return ((uintptr_t)p & 63) == 0;
}

/* ------------------------------------------------------------------ */
/* Heap buffers                                                        */

Test(buf, heap_alloc_release_and_alignment)
{
	static const size_t sizes[] = {0, 1, 63, 64, 65, 4095, 4096, 1 << 20};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		tw_buf *b = NULL;
		cr_assert_eq(tw_buf_alloc(sizes[i], &b), TW_OK);
		cr_assert_not_null(b);
		cr_expect(aligned64(b->data), "size %zu", sizes[i]);
		cr_expect_eq(b->size, sizes[i]);
		cr_expect_eq(b->kind, TW_BUF_HEAP);
		cr_expect_eq(tw_buf_refcnt(b), 1);
		/* Every byte is ours (ASan checks the bounds). */
		memset(b->data, 0xa5, b->size);
		cr_expect_eq(tw_buf_retain(b), b);
		cr_expect_eq(tw_buf_refcnt(b), 2);
		tw_buf_release(b);
		cr_expect_eq(tw_buf_refcnt(b), 1);
		tw_buf_release(b);
	}
	tw_buf_release(NULL);
}

Test(buf, heap_alloc_validation)
{
	tw_buf *b = (tw_buf *)&b; /* must be reset to NULL on failure */

	cr_expect_eq(tw_buf_alloc(16, NULL), TW_EINVAL);
	cr_expect_eq(tw_buf_alloc(SIZE_MAX, &b), TW_EOVERFLOW);
	cr_expect_null(b);
	cr_expect_eq(tw_buf_alloc(SIZE_MAX - 64, &b), TW_EOVERFLOW);
	cr_expect_eq(tw_buf_alloc((size_t)PTRDIFF_MAX, &b), TW_EOVERFLOW);
	if (!UNDER_ASAN) {
		/* Representable but far beyond memory: ENOMEM, not a crash.
		 * (ASan aborts on such requests instead of failing them.) */
		cr_expect_eq(tw_buf_alloc((size_t)1 << 52, &b), TW_ENOMEM);
		cr_expect_null(b);
	}
}

/* ------------------------------------------------------------------ */
/* User buffers                                                        */

struct release_rec {
	atomic_int calls;
	void *ctx, *data;
	size_t size;
	pthread_t thread;
};

static void record_release(void *ctx, void *data, size_t size)
{
	struct release_rec *r = ctx;
	r->ctx = ctx;
	r->data = data;
	r->size = size;
	r->thread = pthread_self();
	atomic_fetch_add(&r->calls, 1);
}

Test(buf, user_buffer_callback_once)
{
	struct release_rec rec = {0};
	char mem[100];
	tw_buf *b;

	cr_assert_eq(tw_buf_from_user(mem, sizeof(mem), record_release, &rec,
				      &b),
		     TW_OK);
	cr_expect_eq(b->kind, TW_BUF_USER);
	cr_expect_eq(b->data, (void *)mem);
	cr_expect_eq(b->size, sizeof(mem));
	tw_buf_retain(b);
	tw_buf_release(b);
	cr_expect_eq(atomic_load(&rec.calls), 0, "not while referenced");
	tw_buf_release(b);
	cr_expect_eq(atomic_load(&rec.calls), 1);
	cr_expect_eq(rec.ctx, &rec);
	cr_expect_eq(rec.data, (void *)mem);
	cr_expect_eq(rec.size, sizeof(mem));

	/* No callback: memory that outlives every reference. */
	cr_assert_eq(tw_buf_from_user(mem, 10, NULL, NULL, &b), TW_OK);
	tw_buf_release(b);
	/* Empty user buffer with no memory at all. */
	cr_assert_eq(tw_buf_from_user(NULL, 0, record_release, &rec, &b),
		     TW_OK);
	tw_buf_release(b);
	cr_expect_eq(atomic_load(&rec.calls), 2);
}

Test(buf, user_buffer_validation)
{
	char mem[8];
	tw_buf *b = (tw_buf *)&b;

	cr_expect_eq(tw_buf_from_user(mem, 8, NULL, NULL, NULL), TW_EINVAL);
	cr_expect_eq(tw_buf_from_user(NULL, 8, NULL, NULL, &b), TW_EINVAL);
	cr_expect_null(b);
	cr_expect_eq(tw_buf_from_user(mem, SIZE_MAX, NULL, NULL, &b),
		     TW_EOVERFLOW);
}

struct last_ref_arg {
	tw_buf *b;
	atomic_int go;
};

static void *release_when_told(void *arg)
{
	struct last_ref_arg *a = arg;
	while (!atomic_load(&a->go))
		sched_yield();
	tw_buf_release(a->b);
	return NULL;
}

Test(buf, user_callback_runs_on_last_releasers_thread)
{
	struct release_rec rec = {0};
	struct last_ref_arg a = {0};
	char mem[32];
	pthread_t t;

	cr_assert_eq(tw_buf_from_user(mem, sizeof(mem), record_release, &rec,
				      &a.b),
		     TW_OK);
	tw_buf_retain(a.b); /* the thread's reference */
	cr_assert_eq(pthread_create(&t, NULL, release_when_told, &a), 0);
	tw_buf_release(a.b); /* ours goes first */
	cr_expect_eq(atomic_load(&rec.calls), 0);
	atomic_store(&a.go, 1);
	pthread_join(t, NULL);
	cr_expect_eq(atomic_load(&rec.calls), 1);
	cr_expect(pthread_equal(rec.thread, t), "called on the last releaser");
}

#define RACE_THREADS 4

struct race_arg {
	tw_buf *b;
	atomic_int *start;
};

static void *race_release(void *arg)
{
	struct race_arg *a = arg;
	while (!atomic_load(a->start))
		;
	tw_buf_release(a->b);
	return NULL;
}

Test(buf, user_callback_once_under_racing_releases)
{
	int rounds = UNDER_ASAN ? 100 : 300;

	for (int round = 0; round < rounds; round++) {
		struct release_rec rec = {0};
		struct race_arg args[RACE_THREADS];
		pthread_t t[RACE_THREADS];
		atomic_int start = 0;
		tw_buf *b;

		cr_assert_eq(tw_buf_from_user(&rec, 1, record_release, &rec,
					      &b),
			     TW_OK);
		for (int i = 1; i < RACE_THREADS; i++)
			tw_buf_retain(b);
		for (int i = 0; i < RACE_THREADS; i++) {
			args[i] = (struct race_arg){.b = b, .start = &start};
			cr_assert_eq(pthread_create(&t[i], NULL, race_release,
						    &args[i]),
				     0);
		}
		atomic_store(&start, 1);
		for (int i = 0; i < RACE_THREADS; i++)
			pthread_join(t[i], NULL);
		cr_assert_eq(atomic_load(&rec.calls), 1, "round %d", round);
	}
}

/* ------------------------------------------------------------------ */
/* Slices                                                              */

Test(buf, slice_keeps_parent_alive)
{
	tw_buf *p, *s;

	cr_assert_eq(tw_buf_alloc(256, &p), TW_OK);
	memset(p->data, 0, 256);
	cr_assert_eq(tw_buf_slice(p, 64, 128, &s), TW_OK);
	cr_expect_eq(s->kind, TW_BUF_SLICE);
	cr_expect_eq(s->data, (unsigned char *)p->data + 64);
	cr_expect_eq(s->size, 128);
	cr_expect_eq(s->owner.parent, p);
	cr_expect_eq(tw_buf_refcnt(p), 2);
	tw_buf_release(p);
	/* The parent's bytes are still valid through the slice (ASan would
	 * report a use after free otherwise). */
	memset(s->data, 0x5a, s->size);
	cr_expect_eq(((unsigned char *)s->data)[127], 0x5a);
	tw_buf_release(s);
}

Test(buf, slice_of_slice_refers_to_root)
{
	tw_buf *root, *s1, *s2;

	cr_assert_eq(tw_buf_alloc(1000, &root), TW_OK);
	cr_assert_eq(tw_buf_slice(root, 100, 500, &s1), TW_OK);
	cr_assert_eq(tw_buf_slice(s1, 50, 200, &s2), TW_OK);
	cr_expect_eq(s2->owner.parent, root, "not the intermediate slice");
	cr_expect_eq(s2->data, (unsigned char *)root->data + 150);
	cr_expect_eq(s2->size, 200);
	cr_expect_eq(tw_buf_refcnt(root), 3);
	cr_expect_eq(tw_buf_refcnt(s1), 1, "s2 does not pin s1");
	/* Drop in an order where the intermediate goes first. */
	tw_buf_release(s1);
	tw_buf_release(root);
	cr_expect_eq(tw_buf_refcnt(root), 1);
	memset(s2->data, 1, s2->size);
	tw_buf_release(s2);
}

Test(buf, slice_bounds_validation)
{
	tw_buf *p, *s = (tw_buf *)&s;

	cr_assert_eq(tw_buf_alloc(100, &p), TW_OK);
	cr_expect_eq(tw_buf_slice(p, 0, 101, &s), TW_EINVAL);
	cr_expect_null(s);
	cr_expect_eq(tw_buf_slice(p, 101, 0, &s), TW_EINVAL);
	cr_expect_eq(tw_buf_slice(p, 50, 51, &s), TW_EINVAL);
	cr_expect_eq(tw_buf_slice(p, 1, SIZE_MAX, &s), TW_EINVAL,
		     "offset + size wraps");
	cr_expect_eq(tw_buf_slice(p, SIZE_MAX, 2, &s), TW_EINVAL);
	cr_expect_eq(tw_buf_slice(NULL, 0, 0, &s), TW_EINVAL);
	cr_expect_eq(tw_buf_slice(p, 0, 1, NULL), TW_EINVAL);
	cr_expect_eq(tw_buf_refcnt(p), 1, "failed slices hold nothing");

	/* Empty slices at either end and the whole buffer are fine. */
	cr_assert_eq(tw_buf_slice(p, 100, 0, &s), TW_OK);
	tw_buf_release(s);
	cr_assert_eq(tw_buf_slice(p, 0, 0, &s), TW_OK);
	tw_buf_release(s);
	cr_assert_eq(tw_buf_slice(p, 0, 100, &s), TW_OK);
	tw_buf_release(s);
	tw_buf_release(p);
}

Test(buf, slice_of_user_buffer_delays_callback)
{
	struct release_rec rec = {0};
	char mem[64];
	tw_buf *u, *s;

	cr_assert_eq(tw_buf_from_user(mem, sizeof(mem), record_release, &rec,
				      &u),
		     TW_OK);
	cr_assert_eq(tw_buf_slice(u, 8, 8, &s), TW_OK);
	tw_buf_release(u);
	cr_expect_eq(atomic_load(&rec.calls), 0);
	tw_buf_release(s);
	cr_expect_eq(atomic_load(&rec.calls), 1);
	cr_expect_eq(rec.size, sizeof(mem), "callback gets the whole buffer");
}

/* ------------------------------------------------------------------ */
/* Pools                                                               */

static tw_buf_pool *make_pool(uint32_t count, size_t buf_size)
{
	struct tw_buf_pool_opts o;
	tw_buf_pool *pool = NULL;

	tw_buf_pool_opts_init(&o, sizeof(o));
	o.count = count;
	o.buf_size = buf_size;
	o.name = "test";
	cr_assert_eq(tw_buf_pool_create(&o, &pool), TW_OK);
	return pool;
}

Test(buf, pool_opts_defaults)
{
	struct tw_buf_pool_opts o;

	memset(&o, 0xff, sizeof(o));
	tw_buf_pool_opts_init(&o, sizeof(o));
	cr_expect_eq(o.opts_size, sizeof(o));
	cr_expect_eq(o.buf_size, 4096);
	cr_expect_eq(o.count, 2048);
	cr_expect_eq(o.prefault, 1);
	cr_expect_eq(o.hugepages, -1);
	cr_expect_null(o.name);
	tw_buf_pool_opts_init(NULL, sizeof(o));

	/* A caller built against a shorter struct: fields past its size are
	 * neither written nor read. */
	size_t short_size = offsetof(struct tw_buf_pool_opts, count) +
			    sizeof(o.count);
	memset(&o, 0xff, sizeof(o));
	tw_buf_pool_opts_init(&o, short_size);
	cr_expect_eq(o.count, 2048);
	cr_expect_eq(o.prefault, -1, "beyond opts_size: untouched");
	o.count = 4;
	o.buf_size = 64;
	tw_buf_pool *pool;
	cr_assert_eq(tw_buf_pool_create(&o, &pool), TW_OK,
		     "garbage past opts_size is ignored");
	cr_expect_eq(tw_buf_pool_count(pool), 4);
	cr_expect_eq(tw_buf_pool_destroy(pool), TW_OK);
}

Test(buf, pool_get_until_empty)
{
	tw_buf_pool *pool = make_pool(8, 100);
	tw_buf *b[9];
	void *base;
	size_t len;

	cr_expect_eq(tw_buf_pool_buf_size(pool), 128, "rounded up to 64");
	cr_expect_eq(tw_buf_pool_count(pool), 8);
	cr_expect_eq(tw_buf_pool_in_use(pool), 0);
	tw_buf_pool_region(pool, &base, &len);
	cr_expect(aligned64(base));
	cr_expect_eq(len, 8 * 128);

	for (int i = 0; i < 8; i++) {
		b[i] = tw_buf_pool_get(pool);
		cr_assert_not_null(b[i]);
		cr_expect_eq(b[i]->kind, TW_BUF_POOL);
		cr_expect_eq(b[i]->owner.pool, pool);
		cr_expect_eq(b[i]->size, 128);
		cr_expect_eq(tw_buf_refcnt(b[i]), 1);
		cr_expect(aligned64(b[i]->data));
		cr_expect_geq((char *)b[i]->data, (char *)base);
		cr_expect_leq((char *)b[i]->data + 128, (char *)base + len);
		memset(b[i]->data, i, 128);
		cr_expect_eq(tw_buf_pool_in_use(pool), (uint32_t)i + 1);
	}
	cr_expect_null(tw_buf_pool_get(pool), "empty pool gives NULL");
	/* Distinct, non-overlapping slots. */
	for (int i = 0; i < 8; i++)
		for (int k = 0; k < 128; k++)
			cr_assert_eq(((unsigned char *)b[i]->data)[k], i);

	tw_buf_release(b[3]);
	cr_expect_eq(tw_buf_pool_in_use(pool), 7);
	b[3] = tw_buf_pool_get(pool);
	cr_expect_not_null(b[3]);
	/* Retained buffers go back only with the last reference. */
	tw_buf_retain(b[0]);
	tw_buf_release(b[0]);
	cr_expect_eq(tw_buf_pool_in_use(pool), 8);
	for (int i = 0; i < 8; i++)
		tw_buf_release(b[i]);
	cr_expect_eq(tw_buf_pool_in_use(pool), 0);
	cr_expect_eq(tw_buf_pool_destroy(pool), TW_OK);
}

/* The buffer put last comes back first (its bytes are warm in cache);
 * the rest keep their order; counts and destroy see it as free. */
Test(buf, pool_reuses_last_put)
{
	tw_buf_pool *pool = make_pool(8, 100);
	tw_buf *a = tw_buf_pool_get(pool), *b = tw_buf_pool_get(pool);
	cr_assert(a != NULL && b != NULL && a != b);
	tw_buf_release(a);
	cr_expect_eq(tw_buf_pool_in_use(pool), 1);
	cr_expect_eq(tw_buf_pool_get(pool), a, "last put is first got");
	tw_buf_release(b);
	tw_buf_release(a);
	cr_expect_eq(tw_buf_pool_in_use(pool), 0);
	tw_buf *c = tw_buf_pool_get(pool);
	cr_expect_eq(c, a);
	tw_buf *all[8] = {c};
	cr_expect_eq(tw_buf_pool_get_burst(pool, all + 1, 8), 7);
	for (int i = 0; i < 8; i++)
		for (int k = i + 1; k < 8; k++)
			cr_assert_neq(all[i], all[k]);
	cr_expect_null(tw_buf_pool_get(pool));
	for (int i = 0; i < 8; i++)
		tw_buf_release(all[i]);
	cr_expect_eq(tw_buf_pool_in_use(pool), 0);
	cr_expect_eq(tw_buf_pool_destroy(pool), TW_OK);
}

Test(buf, pool_get_burst)
{
	tw_buf_pool *pool = make_pool(16, 64);
	tw_buf *b[32];

	cr_expect_eq(tw_buf_pool_get_burst(pool, b, 0), 0);
	cr_expect_eq(tw_buf_pool_get_burst(pool, b, 10), 10);
	cr_expect_eq(tw_buf_pool_get_burst(pool, b + 10, 10), 6,
		     "what is left");
	cr_expect_eq(tw_buf_pool_get_burst(pool, b + 16, 4), 0);
	cr_expect_eq(tw_buf_pool_in_use(pool), 16);
	for (int i = 0; i < 16; i++) {
		cr_expect_eq(tw_buf_refcnt(b[i]), 1);
		for (int k = 0; k < i; k++)
			cr_assert_neq(b[i], b[k], "handed out twice");
	}
	for (int i = 0; i < 16; i++)
		tw_buf_release(b[i]);
	cr_expect_eq(tw_buf_pool_in_use(pool), 0);
	cr_expect_eq(tw_buf_pool_get_burst(NULL, b, 4), 0);
	cr_expect_eq(tw_buf_pool_get_burst(pool, NULL, 4), 0);
	cr_expect_eq(tw_buf_pool_destroy(pool), TW_OK);
}

Test(buf, pool_destroy_busy_then_ok)
{
	tw_buf_pool *pool = make_pool(4, 64);
	tw_buf *b = tw_buf_pool_get(pool), *s;

	cr_expect_eq(tw_buf_pool_destroy(pool), TW_EBUSY);
	/* Still intact and usable. */
	cr_expect_eq(tw_buf_pool_in_use(pool), 1);
	cr_assert_eq(tw_buf_slice(b, 0, 32, &s), TW_OK);
	tw_buf_release(b);
	cr_expect_eq(tw_buf_pool_destroy(pool), TW_EBUSY, "a slice pins it");
	tw_buf_release(s);
	cr_expect_eq(tw_buf_pool_in_use(pool), 0);
	cr_expect_eq(tw_buf_pool_destroy(pool), TW_OK);
	cr_expect_eq(tw_buf_pool_destroy(NULL), TW_OK);
}

Test(buf, pool_double_release_is_contained)
{
	tw_buf_pool *pool = make_pool(2, 64);
	tw_buf *b = tw_buf_pool_get(pool);

	tw_buf_release(b);
	/* A caller bug, but it must not put the header on the free list
	 * twice (two owners of one slot later). */
	tw_buf_release(b);
	cr_expect_eq(tw_buf_refcnt(b), 0);
	cr_expect_eq(tw_buf_pool_in_use(pool), 0);
	tw_buf *x = tw_buf_pool_get(pool), *y = tw_buf_pool_get(pool);
	cr_expect_not_null(x);
	cr_expect_not_null(y);
	cr_expect_neq(x, y);
	cr_expect_null(tw_buf_pool_get(pool));
	tw_buf_release(x);
	tw_buf_release(y);
	cr_expect_eq(tw_buf_pool_destroy(pool), TW_OK);
}

Test(buf, pool_validation)
{
	struct tw_buf_pool_opts o;
	tw_buf_pool *pool = (tw_buf_pool *)&pool;

	tw_buf_pool_opts_init(&o, sizeof(o));
	o.count = 4;
	o.buf_size = 64;
	cr_expect_eq(tw_buf_pool_create(NULL, &pool), TW_EINVAL);
	cr_expect_null(pool);
	cr_expect_eq(tw_buf_pool_create(&o, NULL), TW_EINVAL);

	o.count = 0;
	cr_expect_eq(tw_buf_pool_create(&o, &pool), TW_EINVAL);
	o.count = (1u << 24) + 1;
	cr_expect_eq(tw_buf_pool_create(&o, &pool), TW_EINVAL);
	o.count = 4;
	o.buf_size = 0;
	cr_expect_eq(tw_buf_pool_create(&o, &pool), TW_EINVAL);
	o.buf_size = SIZE_MAX;
	cr_expect_eq(tw_buf_pool_create(&o, &pool), TW_EOVERFLOW);
	o.buf_size = SIZE_MAX - 10;
	cr_expect_eq(tw_buf_pool_create(&o, &pool), TW_EOVERFLOW);
	o.count = 1u << 24;
	o.buf_size = (size_t)1 << 40;
	cr_expect_eq(tw_buf_pool_create(&o, &pool), TW_EOVERFLOW,
		     "count * size overflows");
	o.buf_size = 64;
	o.hugepages = 2;
	cr_expect_eq(tw_buf_pool_create(&o, &pool), TW_EINVAL);
	o.hugepages = -1;
	o.opts_size = 0;
	cr_expect_eq(tw_buf_pool_create(&o, &pool), TW_EINVAL);
	o.opts_size = sizeof(o);

	/* Fits size_t, not the address space: ENOMEM. */
	o.count = 1u << 24;
	o.buf_size = (size_t)1 << 32;
	o.prefault = 0;
	cr_expect_eq(tw_buf_pool_create(&o, &pool), TW_ENOMEM);
	cr_expect_null(pool);

	/* NULL-tolerant accessors. */
	void *base = &base;
	size_t len = 1;
	tw_buf_pool_region(NULL, &base, &len);
	cr_expect_null(base);
	cr_expect_eq(len, 0);
	cr_expect_eq(tw_buf_pool_count(NULL), 0);
	cr_expect_eq(tw_buf_pool_in_use(NULL), 0);
	cr_expect_eq(tw_buf_pool_buf_size(NULL), 0);
	cr_expect_null(tw_buf_pool_get(NULL));
}

Test(buf, pool_mapping_modes)
{
	/* Huge pages asked for, prefaulted: 4 MiB on a 2 MiB boundary. */
	struct tw_buf_pool_opts o;
	tw_buf_pool *pool;
	void *base;
	size_t len;

	tw_buf_pool_opts_init(&o, sizeof(o));
	o.count = 64;
	o.buf_size = 64 << 10;
	o.hugepages = 1;
	cr_assert_eq(tw_buf_pool_create(&o, &pool), TW_OK);
	tw_buf_pool_region(pool, &base, &len);
	cr_expect_eq(len, (size_t)4 << 20);
	cr_expect_eq((uintptr_t)base & ((2u << 20) - 1), 0, "THP aligned");
	tw_buf *b = tw_buf_pool_get(pool);
	memset(b->data, 1, b->size);
	tw_buf_release(b);
	cr_expect_eq(tw_buf_pool_destroy(pool), TW_OK);

	/* Neither: plain lazy mapping. */
	o.hugepages = 0;
	o.prefault = 0;
	o.name = "a name longer than the thirty-one characters kept";
	cr_assert_eq(tw_buf_pool_create(&o, &pool), TW_OK);
	b = tw_buf_pool_get(pool);
	memset(b->data, 1, b->size);
	tw_buf_release(b);
	cr_expect_eq(tw_buf_pool_destroy(pool), TW_OK);

	/* Prefault without THP (MAP_POPULATE), and a single buffer. */
	o.prefault = 1;
	o.count = 1;
	cr_assert_eq(tw_buf_pool_create(&o, &pool), TW_OK);
	b = tw_buf_pool_get(pool);
	cr_expect_not_null(b);
	cr_expect_null(tw_buf_pool_get(pool));
	cr_expect_eq(tw_buf_pool_destroy(pool), TW_EBUSY);
	tw_buf_release(b);
	cr_expect_eq(tw_buf_pool_destroy(pool), TW_OK);
}

/* ------------------------------------------------------------------ */
/* Multi-threaded hammer: get here, release there                      */

#define HAMMER_THREADS 4
#define HAMMER_POOL 256

struct hammer {
	tw_buf_pool *pool;
	tw_ring *handoff; /* buffers travelling between threads */
	unsigned char *base;
	_Atomic uint8_t owned[HAMMER_POOL]; /* 1 while a thread holds it */
	unsigned iters;
	atomic_uint ready;
	atomic_uint errors;
	atomic_ulong moved;
};

struct hammer_arg {
	struct hammer *h;
	unsigned id;
};

static unsigned slot_of(struct hammer *h, tw_buf *b)
{
	return (unsigned)(((unsigned char *)b->data - h->base) /
			  tw_buf_pool_buf_size(h->pool));
}

/* Claim the slot as ours: a second owner of the same buffer at once
 * (a duplicate on the free list) fails the exchange. */
static void take(struct hammer *h, tw_buf *b, unsigned id)
{
	unsigned s = slot_of(h, b);
	if (s >= HAMMER_POOL || tw_buf_refcnt(b) != 1 ||
	    atomic_exchange(&h->owned[s], 1) != 0) {
		atomic_fetch_add(&h->errors, 1);
		return;
	}
	/* Stamp the bytes; whoever releases checks them. */
	memset(b->data, (int)(id + 1), 64);
}

static void give_back(struct hammer *h, tw_buf *b)
{
	unsigned s = slot_of(h, b);
	unsigned char stamp = ((unsigned char *)b->data)[0];
	for (int i = 1; i < 64; i++)
		if (((unsigned char *)b->data)[i] != stamp)
			atomic_fetch_add(&h->errors, 1);
	if (s < HAMMER_POOL)
		atomic_store(&h->owned[s], 0);
	tw_buf_release(b);
}

static void *hammer_thread(void *arg)
{
	struct hammer_arg *a = arg;
	struct hammer *h = a->h;
	tw_buf *got[8];
	void *pass[8];
	unsigned long moved = 0;

	atomic_fetch_add(&h->ready, 1);
	while (atomic_load(&h->ready) < HAMMER_THREADS)
		sched_yield();
	for (unsigned it = 0; it < h->iters; it++) {
		unsigned want = 1 + (it + a->id) % 8, n;
		if (it & 1) {
			n = tw_buf_pool_get_burst(h->pool, got, want);
		} else {
			got[0] = tw_buf_pool_get(h->pool);
			n = got[0] != NULL;
		}
		for (unsigned i = 0; i < n; i++)
			take(h, got[i], a->id);
		/* Hand some to whoever dequeues next, release the rest
		 * here, and release some of what others handed us. */
		unsigned keep = n / 2;
		for (unsigned i = 0; i < keep; i++)
			give_back(h, got[i]);
		for (unsigned i = keep; i < n; i++)
			pass[i - keep] = got[i];
		/* The handoff ring holds the whole pool: never full. */
		if (tw_ring_mp_enqueue_bulk(h->handoff, pass, n - keep, NULL) !=
		    n - keep)
			atomic_fetch_add(&h->errors, 1);
		unsigned m = tw_ring_mc_dequeue_burst(h->handoff, pass, 8,
						      NULL);
		for (unsigned i = 0; i < m; i++)
			give_back(h, pass[i]);
		moved += n;
		if (n == 0)
			sched_yield();
	}
	atomic_fetch_add(&h->moved, moved);
	return NULL;
}

Test(buf, pool_hammer_across_threads, .timeout = 60)
{
	static struct hammer h; /* owned[] is sizeable; keep it off stack */
	struct hammer_arg args[HAMMER_THREADS];
	pthread_t t[HAMMER_THREADS];
	struct timespec t0, t1;

	memset(&h, 0, sizeof(h));
	h.pool = make_pool(HAMMER_POOL, 64);
	h.iters = UNDER_ASAN ? 100000 : 400000;
	void *base;
	tw_buf_pool_region(h.pool, &base, NULL);
	h.base = base;
	cr_assert_eq(tw_ring_create(HAMMER_POOL, TW_RING_F_MPMC, &h.handoff),
		     TW_OK);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < HAMMER_THREADS; i++) {
		args[i] = (struct hammer_arg){.h = &h, .id = i};
		cr_assert_eq(pthread_create(&t[i], NULL, hammer_thread,
					    &args[i]),
			     0);
	}
	for (unsigned i = 0; i < HAMMER_THREADS; i++)
		pthread_join(t[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);

	/* Whatever is still in transit goes back now. */
	void *left[HAMMER_POOL];
	unsigned m = tw_ring_sc_dequeue_burst(h.handoff, left, HAMMER_POOL,
					      NULL);
	for (unsigned i = 0; i < m; i++)
		give_back(&h, left[i]);
	double dt = (double)(t1.tv_sec - t0.tv_sec) +
		    (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
	fprintf(stderr, "buf pool hammer: %d threads, %lu buffers in %.3f s\n",
		HAMMER_THREADS, (unsigned long)atomic_load(&h.moved), dt);

	cr_expect_eq(atomic_load(&h.errors), 0);
	cr_expect_gt(atomic_load(&h.moved), 0);
	cr_expect_eq(tw_buf_pool_in_use(h.pool), 0, "no buffer lost");
	/* Every buffer can be taken again, each exactly once. */
	tw_buf *all[HAMMER_POOL + 1];
	cr_expect_eq(tw_buf_pool_get_burst(h.pool, all, HAMMER_POOL + 1),
		     HAMMER_POOL);
	for (unsigned i = 0; i < HAMMER_POOL; i++)
		tw_buf_release(all[i]);
	cr_expect_eq(tw_buf_pool_destroy(h.pool), TW_OK);
	tw_ring_free(h.handoff);
}

/* ------------------------------------------------------------------ */
/* Large receive buffers and their cache                               */

#define MIB ((size_t)1 << 20)

/* Whether [p, p + len) is mapped at all (mincore fails with ENOMEM on a
 * hole): how a test sees that a released buffer was unmapped. */
static bool mapped(const void *p, size_t len)
{
	long pg = sysconf(_SC_PAGESIZE);
	unsigned char vec[1024];
	uintptr_t a = (uintptr_t)p & ~((uintptr_t)pg - 1);
	size_t n = ((uintptr_t)p + len - a + (size_t)pg - 1) / (size_t)pg;
	if (n > sizeof(vec))
		n = sizeof(vec);
	return mincore((void *)a, n * (size_t)pg, vec) == 0;
}

/* The VmFlags line of the /proc/self/smaps entry holding p ("" if none). */
static void vm_flags(const void *p, char *out, size_t n)
{
	out[0] = '\0';
	FILE *f = fopen("/proc/self/smaps", "r");
	cr_assert_not_null(f);
	char line[512];
	bool in = false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
			continue;
		}
		if (in && strncmp(line, "VmFlags:", 8) == 0) {
			size_t k = strlen(line + 8);
			if (k >= n)
				k = n - 1;
			memcpy(out, line + 8, k);
			out[k] = '\0';
			break;
		}
	}
	fclose(f);
}

Test(bigbuf, below_2mib_is_a_heap_buffer)
{
	tw_bigbuf_cache *bc;
	cr_assert_eq(tw_bigbuf_cache_create(64 * MIB, &bc), TW_OK);
	static const size_t sizes[] = {0, 1, 4096, 2 * MIB - 1};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		tw_buf *b = NULL;
		bool hit = true;
		cr_assert_eq(tw_bigbuf_alloc(bc, sizes[i], &b, &hit), TW_OK);
		cr_expect_eq(b->kind, TW_BUF_HEAP);
		cr_expect_eq(b->size, sizes[i]);
		cr_expect(aligned64(b->data));
		cr_expect_not(hit);
		if (sizes[i])
			memset(b->data, 7, sizes[i]);
		tw_buf_release(b);
	}
	uint32_t n;
	size_t bytes;
	tw_bigbuf_cache_usage(bc, &n, &bytes);
	cr_expect_eq(n, 0, "heap buffers never enter the cache");
	cr_expect_eq(bytes, 0);
	tw_bigbuf_cache_close(bc);
}

Test(bigbuf, from_2mib_a_huge_page_mapping)
{
	static const size_t sizes[] = {2 * MIB, 2 * MIB + 1, 5 * MIB + 64};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		tw_buf *b = NULL;
		cr_assert_eq(tw_bigbuf_alloc(NULL, sizes[i], &b, NULL), TW_OK);
		cr_expect_eq(b->kind, TW_BUF_USER);
		cr_expect_eq(b->size, sizes[i], "the size asked for");
		cr_expect_eq((uintptr_t)b->data & (2 * MIB - 1), 0,
			     "2 MiB aligned");
		char fl[256];
		vm_flags(b->data, fl, sizeof(fl));
		cr_expect(strstr(fl, " hg") != NULL,
			  "advised MADV_HUGEPAGE: VmFlags%s", fl);
		/* writable end to end, the rounded-up tail mapped too */
		memset(b->data, 1, b->size);
		size_t maplen = (sizes[i] + 2 * MIB - 1) & ~(2 * MIB - 1);
		cr_expect(mapped(b->data, maplen));
		void *p = b->data;
		/* A slice keeps it; without a cache the last release unmaps. */
		tw_buf *s = NULL;
		cr_assert_eq(tw_buf_slice(b, 64, 64, &s), TW_OK);
		tw_buf_release(b);
		cr_expect(mapped(p, 4096));
		tw_buf_release(s);
		cr_expect_not(mapped(p, 4096), "unmapped on the last release");
	}
}

Test(bigbuf, validation)
{
	tw_buf *b = (tw_buf *)1;
	bool hit = true;
	cr_expect_eq(tw_bigbuf_alloc(NULL, 4 * MIB, NULL, &hit), TW_EINVAL);
	cr_expect_not(hit);
	cr_expect_eq(tw_bigbuf_alloc(NULL, SIZE_MAX, &b, NULL), TW_EOVERFLOW);
	cr_expect_null(b);
	cr_expect(strstr(tw_errmsg(TW_EOVERFLOW), "big buffer") != NULL,
		  "the reason is recorded: %s", tw_errmsg(TW_EOVERFLOW));
	cr_expect_eq(tw_bigbuf_cache_create(0, NULL), TW_EINVAL);
	tw_bigbuf_cache_close(NULL);
	uint32_t n = 9;
	size_t bytes = 9;
	tw_bigbuf_cache_usage(NULL, &n, &bytes);
	cr_expect_eq(n, 0);
	cr_expect_eq(bytes, 0);
}

/* A released mapping serves the next large frame: same memory, already
 * faulted in. Not a much smaller frame: that would pin the big one. */
Test(bigbuf, cache_reuses_released_mappings)
{
	tw_bigbuf_cache *bc;
	cr_assert_eq(tw_bigbuf_cache_create(64 * MIB, &bc), TW_OK);
	tw_buf *b;
	bool hit = true;
	cr_assert_eq(tw_bigbuf_alloc(bc, 4 * MIB, &b, &hit), TW_OK);
	cr_expect_not(hit, "an empty cache");
	void *p = b->data;
	memset(p, 3, b->size);
	tw_buf_release(b);
	uint32_t n;
	size_t bytes;
	tw_bigbuf_cache_usage(bc, &n, &bytes);
	cr_expect_eq(n, 1);
	cr_expect_eq(bytes, 4 * MIB);
	cr_expect(mapped(p, 4 * MIB), "kept, not unmapped");

	/* 3 MiB rounds up to the same 4 MiB. */
	cr_assert_eq(tw_bigbuf_alloc(bc, 3 * MIB, &b, &hit), TW_OK);
	cr_expect(hit);
	cr_expect_eq(b->data, p, "the same mapping");
	cr_expect_eq(b->size, 3 * MIB);
	cr_expect_eq(((unsigned char *)b->data)[4096], 3, "still faulted in");
	tw_bigbuf_cache_usage(bc, &n, &bytes);
	cr_expect_eq(n, 0);
	cr_expect_eq(bytes, 0);
	tw_buf_release(b);

	/* 2 MiB is half of 4: still fine. An 8 MiB mapping is more than
	 * twice what 2 MiB needs: a fresh one instead. */
	tw_buf *big;
	cr_assert_eq(tw_bigbuf_alloc(bc, 8 * MIB, &big, &hit), TW_OK);
	cr_expect_not(hit);
	void *pbig = big->data;
	tw_buf_release(big);
	cr_assert_eq(tw_bigbuf_alloc(bc, 2 * MIB, &b, &hit), TW_OK);
	cr_expect(hit, "the 4 MiB one");
	cr_expect_eq(b->data, p);
	tw_buf *c;
	cr_assert_eq(tw_bigbuf_alloc(bc, 2 * MIB, &c, &hit), TW_OK);
	cr_expect_not(hit, "8 MiB is more than twice too big");
	cr_expect_neq(c->data, pbig);
	tw_buf_release(c);
	tw_buf_release(b);
	/* The smallest that fits: 4 MiB (with 2 and 8 on offer). */
	cr_assert_eq(tw_bigbuf_alloc(bc, 4 * MIB, &b, &hit), TW_OK);
	cr_expect(hit);
	cr_expect_eq(b->data, p);
	tw_buf_release(b);
	tw_bigbuf_cache_close(bc);
}

/* At most max_bytes and TW_BIGBUF_CACHE_N mappings; the rest unmapped. */
Test(bigbuf, cache_bounds)
{
	enum { N = TW_BIGBUF_CACHE_N + 2 };
	tw_bigbuf_cache *bc;
	tw_buf *b[N];
	void *p[N];
	uint32_t n;
	size_t bytes;

	/* Bytes: 5 MiB hold two 2 MiB mappings, not a third. */
	cr_assert_eq(tw_bigbuf_cache_create(5 * MIB, &bc), TW_OK);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(tw_bigbuf_alloc(bc, 2 * MIB, &b[i], NULL), TW_OK);
		p[i] = b[i]->data;
	}
	for (int i = 0; i < 3; i++)
		tw_buf_release(b[i]);
	tw_bigbuf_cache_usage(bc, &n, &bytes);
	cr_expect_eq(n, 2);
	cr_expect_eq(bytes, 4 * MIB);
	cr_expect(mapped(p[0], 4096) && mapped(p[1], 4096));
	cr_expect_not(mapped(p[2], 4096), "beyond the bytes: unmapped");
	/* A mapping bigger than the room left is not kept either. */
	cr_assert_eq(tw_bigbuf_alloc(bc, 6 * MIB, &b[0], NULL), TW_OK);
	p[0] = b[0]->data;
	tw_buf_release(b[0]);
	cr_expect_not(mapped(p[0], 4096));
	tw_bigbuf_cache_usage(bc, &n, &bytes);
	cr_expect_eq(bytes, 4 * MIB);
	tw_bigbuf_cache_close(bc);

	/* Entries: plenty of bytes, TW_BIGBUF_CACHE_N mappings. */
	cr_assert_eq(tw_bigbuf_cache_create(1024 * MIB, &bc), TW_OK);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(tw_bigbuf_alloc(bc, 2 * MIB, &b[i], NULL), TW_OK);
		p[i] = b[i]->data;
	}
	for (int i = 0; i < N; i++)
		tw_buf_release(b[i]);
	tw_bigbuf_cache_usage(bc, &n, &bytes);
	cr_expect_eq(n, TW_BIGBUF_CACHE_N);
	cr_expect_eq(bytes, TW_BIGBUF_CACHE_N * 2 * MIB);
	for (int i = 0; i < N; i++)
		cr_expect_eq(mapped(p[i], 4096), i < (int)TW_BIGBUF_CACHE_N,
			     "mapping %d", i);
	/* All of them come back out, then the cache is empty. */
	for (int i = 0; i < (int)TW_BIGBUF_CACHE_N; i++) {
		bool hit = false;
		cr_assert_eq(tw_bigbuf_alloc(bc, 2 * MIB, &b[i], &hit), TW_OK);
		cr_expect(hit, "take %d", i);
	}
	bool hit = true;
	cr_assert_eq(tw_bigbuf_alloc(bc, 2 * MIB, &b[N - 1], &hit), TW_OK);
	cr_expect_not(hit);
	tw_buf_release(b[N - 1]);
	for (int i = 0; i < (int)TW_BIGBUF_CACHE_N; i++)
		tw_buf_release(b[i]);
	tw_bigbuf_cache_close(bc);

	/* max_bytes 0: nothing kept. */
	cr_assert_eq(tw_bigbuf_cache_create(0, &bc), TW_OK);
	cr_assert_eq(tw_bigbuf_alloc(bc, 2 * MIB, &b[0], NULL), TW_OK);
	p[0] = b[0]->data;
	tw_buf_release(b[0]);
	cr_expect_not(mapped(p[0], 4096));
	tw_bigbuf_cache_close(bc);
}

/* A buffer released on another thread goes back into the cache; one
 * released after its owner closed the cache is unmapped, and the cache
 * goes with it (ASan and LSan check the frees). */
Test(bigbuf, release_from_another_thread)
{
	tw_bigbuf_cache *bc;
	cr_assert_eq(tw_bigbuf_cache_create(64 * MIB, &bc), TW_OK);
	struct last_ref_arg a = {0};
	pthread_t t;
	cr_assert_eq(tw_bigbuf_alloc(bc, 4 * MIB, &a.b, NULL), TW_OK);
	void *p = a.b->data;
	memset(p, 5, a.b->size);
	atomic_store(&a.go, 1);
	cr_assert_eq(pthread_create(&t, NULL, release_when_told, &a), 0);
	pthread_join(t, NULL);
	bool hit = false;
	tw_buf *b;
	cr_assert_eq(tw_bigbuf_alloc(bc, 4 * MIB, &b, &hit), TW_OK);
	cr_expect(hit);
	cr_expect_eq(b->data, p);

	/* Close while a buffer is lent and the cache holds another. */
	tw_buf *kept;
	cr_assert_eq(tw_bigbuf_alloc(bc, 2 * MIB, &kept, NULL), TW_OK);
	void *pk = kept->data;
	tw_buf_release(kept);
	a = (struct last_ref_arg){.b = b};
	cr_assert_eq(pthread_create(&t, NULL, release_when_told, &a), 0);
	tw_bigbuf_cache_close(bc);
	cr_expect(mapped(pk, 4096),
		  "cached mappings live as long as a lent one");
	atomic_store(&a.go, 1);
	pthread_join(t, NULL);
	cr_expect_not(mapped(p, 4096), "released after close: unmapped");
	cr_expect_not(mapped(pk, 4096), "the cache went with the last buffer");
}

#define BIG_THREADS 3

struct big_race {
	tw_ring *handoff; /* buffers from the owner to the releasers */
	atomic_int stop;
	atomic_ulong released;
};

static void *big_releaser(void *arg)
{
	struct big_race *r = arg;
	for (;;) {
		void *p;
		if (tw_ring_mc_dequeue_burst(r->handoff, &p, 1, NULL) == 1) {
			tw_buf *b = p;
			/* the owner wrote our id's pattern; check, dirty it */
			unsigned char *d = b->data;
			if (d[0] != d[b->size - 1])
				abort();
			d[0] ^= 0xff;
			tw_buf_release(b);
			atomic_fetch_add(&r->released, 1);
			continue;
		}
		if (atomic_load(&r->stop))
			return NULL;
		sched_yield();
	}
}

/* The owner allocates while other threads release at the same time: no
 * mapping is handed out twice or lost (the bounds hold throughout). */
Test(bigbuf, racing_releases, .timeout = 60)
{
	struct big_race r = {0};
	tw_bigbuf_cache *bc;
	cr_assert_eq(tw_bigbuf_cache_create(16 * MIB, &bc), TW_OK);
	/* Few in flight: each holds up to 6 MiB. */
	cr_assert_eq(tw_ring_create(8, TW_RING_F_MPMC, &r.handoff), TW_OK);
	pthread_t t[BIG_THREADS];
	for (int i = 0; i < BIG_THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, big_releaser, &r), 0);
	unsigned rounds = UNDER_ASAN ? 500 : 3000, hits = 0;
	for (unsigned i = 0; i < rounds; i++) {
		tw_buf *b;
		bool hit;
		size_t sz = (i % 3 + 1) * 2 * MIB - 64 * (i % 5);
		cr_assert_eq(tw_bigbuf_alloc(bc, sz, &b, &hit), TW_OK);
		hits += hit;
		unsigned char *d = b->data;
		d[0] = d[b->size - 1] = (unsigned char)i;
		void *p = b;
		while (tw_ring_mp_enqueue_bulk(r.handoff, &p, 1, NULL) == 0)
			sched_yield();
		uint32_t n;
		size_t bytes;
		tw_bigbuf_cache_usage(bc, &n, &bytes);
		cr_assert_leq(n, TW_BIGBUF_CACHE_N);
		cr_assert_leq(bytes, 16 * MIB);
	}
	atomic_store(&r.stop, 1);
	for (int i = 0; i < BIG_THREADS; i++)
		pthread_join(t[i], NULL);
	cr_expect_eq(atomic_load(&r.released), rounds);
	cr_expect_gt(hits, 0, "hits %u of %u", hits, rounds);
	tw_bigbuf_cache_close(bc);
	tw_ring_free(r.handoff);
}
