/* Unit tests of tw_buf (heap, user, slice) and tw_buf_pool, plus the
 * tw_status name table the buffer API reports through. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tensorwire/buf.h>
#include <tensorwire/status.h>

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
/* Status names                                                        */

Test(status, every_code_has_a_name)
{
	for (int s = 0; s < TW_STATUS_COUNT_; s++) {
		const char *n = tw_status_name((tw_status)s);
		const char *d = tw_strerror((tw_status)s);
		cr_assert_not_null(n);
		cr_assert_not_null(d);
		cr_expect_eq(strncmp(n, "TW_", 3), 0, "code %d: %s", s, n);
		cr_expect_neq(strcmp(n, "TW_E?"), 0, "code %d unnamed", s);
		cr_expect_gt(strlen(d), 0);
	}
	cr_expect_str_eq(tw_status_name(TW_OK), "TW_OK");
	cr_expect_str_eq(tw_status_name(TW_EPROTO), "TW_EPROTO");
	cr_expect_str_eq(tw_status_name(TW_ENOENT), "TW_ENOENT");
	cr_expect_str_eq(tw_status_name(TW_STATUS_COUNT_), "TW_E?");
	cr_expect_str_eq(tw_status_name((tw_status)-1), "TW_E?");
	cr_expect_str_eq(tw_status_name((tw_status)1000), "TW_E?");
	cr_expect_not_null(tw_strerror((tw_status)-7));
	cr_expect_not_null(tw_strerror(TW_STATUS_COUNT_));
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
				      &b), TW_OK);
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
				      &a.b), TW_OK);
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
					      &b), TW_OK);
		for (int i = 1; i < RACE_THREADS; i++)
			tw_buf_retain(b);
		for (int i = 0; i < RACE_THREADS; i++) {
			args[i] = (struct race_arg){.b = b, .start = &start};
			cr_assert_eq(pthread_create(&t[i], NULL, race_release,
						    &args[i]), 0);
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
				      &u), TW_OK);
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
	cr_expect_eq(tw_buf_pool_get_burst(pool, b + 10, 10), 6, "what is left");
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
	tw_ring *handoff;       /* buffers travelling between threads */
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
		unsigned m = tw_ring_mc_dequeue_burst(h->handoff, pass, 8, NULL);
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
					    &args[i]), 0);
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
