/* Refcounted buffers (heap, user, slice), fixed-size buffer pools, and the
 * huge-page mappings of large receive buffers with their reuse cache. */
#include <tensorwire/buf.h>

#include <pthread.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dataplane/buf_impl.h"
#include "dataplane/err.h"
#include "dataplane/ring.h"

/* Heap buffers put the header in front of the data, padded so the data
 * starts on the next 64-byte boundary of the one allocation. */
#define HEAP_HDR_SIZE                                                          \
	((sizeof(tw_buf) + TW_BUF_ALIGN - 1) & ~(size_t)(TW_BUF_ALIGN - 1))

/* Largest buffer or region we hand out: objects above PTRDIFF_MAX break
 * pointer subtraction, and sanitizers abort on such requests instead of
 * failing them. */
#define BUF_SIZE_MAX ((size_t)PTRDIFF_MAX)

#define POOL_COUNT_MAX (UINT32_C(1) << 24)
#define POOL_NAME_MAX 32

static inline size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* ------------------------------------------------------------------ */
/* Heap, user and slice buffers                                        */

tw_status tw_buf_alloc(size_t size, tw_buf **out)
{
	if (out == NULL)
		return TW_EINVAL;
	*out = NULL;
	if (size > BUF_SIZE_MAX - HEAP_HDR_SIZE - (TW_BUF_ALIGN - 1))
		return TW_EOVERFLOW;

	/* One block: a heap buffer costs one allocation, and the header and
	 * the first bytes of data share a page. The total is a multiple of
	 * the alignment, as C17 aligned_alloc requires. */
	size_t total = align_up(HEAP_HDR_SIZE + size, TW_BUF_ALIGN);
	unsigned char *mem = aligned_alloc(TW_BUF_ALIGN, total);
	if (mem == NULL)
		return TW_ENOMEM;

	tw_buf *b = (tw_buf *)mem;
	b->data = mem + HEAP_HDR_SIZE;
	b->size = size;
	atomic_init(&b->refcnt, 1);
	b->kind = TW_BUF_HEAP;
	b->flags_ = 0;
	b->reserved_ = 0;
	b->owner.pool = NULL;
	*out = b;
	return TW_OK;
}

/* b (freed by tw_buf_release after release runs) wraps data. */
static void user_init(tw_buf *b, void *data, size_t size,
		      tw_buf_release_fn release, void *ctx)
{
	b->data = data;
	b->size = size;
	atomic_init(&b->refcnt, 1);
	b->kind = TW_BUF_USER;
	b->flags_ = 0;
	b->reserved_ = 0;
	b->owner.user.fn = release;
	b->owner.user.ctx = ctx;
}

tw_status tw_buf_from_user(void *data, size_t size, tw_buf_release_fn release,
			   void *ctx, tw_buf **out)
{
	if (out == NULL)
		return TW_EINVAL;
	*out = NULL;
	if (data == NULL && size != 0)
		return TW_EINVAL;
	if (size > BUF_SIZE_MAX)
		return TW_EOVERFLOW;

	tw_buf *b = malloc(sizeof(*b));
	if (b == NULL)
		return TW_ENOMEM;
	user_init(b, data, size, release, ctx);
	*out = b;
	return TW_OK;
}

tw_status tw_buf_slice(tw_buf *parent, size_t offset, size_t size, tw_buf **out)
{
	if (out == NULL)
		return TW_EINVAL;
	*out = NULL;
	if (parent == NULL)
		return TW_EINVAL;
	/* Written so that offset + size cannot wrap. */
	if (offset > parent->size || size > parent->size - offset)
		return TW_EINVAL;

	/* A slice of a slice hangs off the root: chains never grow, and the
	 * intermediate slice may go away first. */
	tw_buf *root = parent->kind == TW_BUF_SLICE ? parent->owner.parent
						    : parent;
	tw_buf *b = malloc(sizeof(*b));
	if (b == NULL)
		return TW_ENOMEM;
	b->data = (unsigned char *)parent->data + offset;
	b->size = size;
	atomic_init(&b->refcnt, 1);
	b->kind = TW_BUF_SLICE;
	b->flags_ = 0;
	b->reserved_ = 0;
	b->owner.parent = tw_buf_retain(root);
	*out = b;
	return TW_OK;
}

static void pool_put(tw_buf_pool *pool, tw_buf *b);

void tw_buf_release(tw_buf *b)
{
	if (b == NULL)
		return;

	/* acq_rel. Release: this thread's reads and writes of the bytes
	 * happen before the drop of its reference. Acquire (for the thread
	 * that drops the last one): every other holder's accesses, released
	 * by their own decrements, happen before we free the memory, hand it
	 * back to the pool or call the owner's release callback. */
	uint32_t old = atomic_fetch_sub_explicit(&b->refcnt, 1,
						 memory_order_acq_rel);
	if (old != 1) {
		if (old == 0) {
			/* Released with no reference: a caller bug. Only a
			 * pool buffer can still be read here (heap ones are
			 * gone); undo rather than push it on the free list
			 * twice. */
			atomic_fetch_add_explicit(&b->refcnt, 1,
						  memory_order_relaxed);
		}
		return;
	}

	switch ((tw_buf_kind)b->kind) {
	case TW_BUF_HEAP:
		free(b); /* the header starts the allocation */
		break;
	case TW_BUF_POOL:
		pool_put(b->owner.pool, b);
		break;
	case TW_BUF_USER:
		if (b->owner.user.fn != NULL)
			b->owner.user.fn(b->owner.user.ctx, b->data, b->size);
		free(b);
		break;
	case TW_BUF_SLICE: {
		tw_buf *root = b->owner.parent;
		free(b);
		tw_buf_release(root);
		break;
	}
	}
}

/* ------------------------------------------------------------------ */
/* Pools                                                               */

/* A pool header in its own cache line: threads working on neighbouring
 * buffers do not bounce each other's refcounts. */
struct pool_hdr {
	alignas(TW_BUF_ALIGN) tw_buf b;
};
_Static_assert(sizeof(struct pool_hdr) == TW_BUF_ALIGN,
	       "a pool buffer header fills exactly one cache line");

struct tw_buf_pool {
	/* Read-only after create. */
	struct pool_hdr *hdrs; /* count headers */
	unsigned char *region; /* count * buf_size bytes of data: the
				* whole mapping */
	size_t region_len;
	size_t buf_size;
	uint32_t count;
	char name[POOL_NAME_MAX];
	/* MPMC ring of free headers. It lives in the same allocation, after
	 * this struct, on cache lines of its own: every get and put lands
	 * there, while the fields above are only read. */
	tw_ring *free;
	/* The buffer put last, kept out of the ring for the next get. The
	 * ring alone is FIFO, which hands out the buffer that has been idle
	 * longest, so every get of a large pool writes to cold memory
	 * (measured: a small message's encode took 360 ns instead of 130).
	 * This slot makes the common get-after-put reuse a warm buffer. Its
	 * own cache line: both ends write it. */
	alignas(TW_RING_CACHE_LINE) _Atomic(tw_buf *) hot;
};

/* Offset of the free ring in the pool's allocation. */
#define POOL_RING_OFF align_up(sizeof(tw_buf_pool), TW_RING_CACHE_LINE)

void tw_buf_pool_opts_init(struct tw_buf_pool_opts *opts, size_t opts_size)
{
	if (opts == NULL || opts_size < sizeof(opts->opts_size))
		return;

	struct tw_buf_pool_opts d = {
		.opts_size = opts_size,
		.buf_size = 4096,
		.count = 2048,
		.prefault = 1,
		.hugepages = -1,
		.name = NULL,
	};
	/* A caller built against an older, shorter struct gets only the
	 * fields it knows about written. */
	size_t n = opts_size < sizeof(d) ? opts_size : sizeof(d);
	unsigned char *dst = (unsigned char *)opts;
	const unsigned char *src = (const unsigned char *)&d;
	for (size_t i = 0; i < n; i++)
		dst[i] = src[i];
}

/* Copy the fields of *in that its opts_size covers over the defaults. */
static tw_status pool_opts_get(const struct tw_buf_pool_opts *in,
			       struct tw_buf_pool_opts *o)
{
	if (in == NULL || in->opts_size < sizeof(in->opts_size))
		return TW_EINVAL;
	tw_buf_pool_opts_init(o, sizeof(*o));

#define OPT_COPY(field)                                                        \
	do {                                                                   \
		if (offsetof(struct tw_buf_pool_opts, field) +                 \
			    sizeof(in->field) <=                               \
		    in->opts_size)                                             \
			o->field = in->field;                                  \
	} while (0)
	OPT_COPY(buf_size);
	OPT_COPY(count);
	OPT_COPY(prefault);
	OPT_COPY(hugepages);
	OPT_COPY(name);
#undef OPT_COPY
	return TW_OK;
}

/* len bytes (not faulted in) starting on a 2 MiB boundary, advised
 * MADV_HUGEPAGE, or NULL. Over-maps and trims, since older kernels do not
 * align anonymous mappings for us; advises before the first touch, since
 * advice does not convert pages already faulted. Advice only: THP may be
 * disabled, and every user works without. */
static void *thp_map(size_t len)
{
	if (len > SIZE_MAX - TW_THP_SIZE)
		return NULL;
	size_t over = len + TW_THP_SIZE;
	unsigned char *p = mmap(NULL, over, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	uintptr_t start = ((uintptr_t)p + TW_THP_SIZE - 1) &
			  ~(uintptr_t)(TW_THP_SIZE - 1);
	size_t head = start - (uintptr_t)p;
	size_t tail = over - head - len;
	if (head != 0)
		munmap(p, head);
	if (tail != 0)
		munmap((unsigned char *)start + len, tail);
	(void)madvise((void *)start, len, MADV_HUGEPAGE);
	return (void *)start;
}

/* Map len bytes for pool data, on huge pages if thp. Returns the region
 * or NULL. */
static void *pool_map(size_t len, int thp, int prefault)
{
	if (!thp) {
		/* Without THP the kernel can populate in one go. */
		int flags = MAP_PRIVATE | MAP_ANONYMOUS;
		if (prefault)
			flags |= MAP_POPULATE;
		void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0);
		return p == MAP_FAILED ? NULL : p;
	}

	unsigned char *p = thp_map(len);
	if (p == NULL)
		return NULL;
	if (prefault) {
		/* One write per base page faults everything in (a huge page at
		 * the first touch of each 2 MiB when THP is on). */
		long psz = sysconf(_SC_PAGESIZE);
		size_t pg = psz > 0 ? (size_t)psz : 4096;
		for (size_t off = 0; off < len; off += pg)
			((volatile unsigned char *)p)[off] = 0;
	}
	return p;
}

tw_status tw_buf_pool_create(const struct tw_buf_pool_opts *opts,
			     tw_buf_pool **out)
{
	struct tw_buf_pool_opts o;
	tw_status st;

	if (out == NULL)
		return TW_EINVAL;
	*out = NULL;
	st = pool_opts_get(opts, &o);
	if (st != TW_OK)
		return st;
	if (o.count == 0 || o.count > POOL_COUNT_MAX || o.buf_size == 0)
		return TW_EINVAL;
	if (o.hugepages < -1 || o.hugepages > 1)
		return TW_EINVAL;
	if (o.buf_size > BUF_SIZE_MAX - (TW_BUF_ALIGN - 1))
		return TW_EOVERFLOW;
	size_t buf_size = align_up(o.buf_size, TW_BUF_ALIGN);
	if (buf_size > BUF_SIZE_MAX / o.count)
		return TW_EOVERFLOW;
	size_t len = buf_size * o.count;

	/* The free ring holds every header at once, so a put never fails. */
	uint32_t ring_count = 1;
	while (ring_count < o.count)
		ring_count <<= 1;
	size_t ring_sz = tw_ring_memsize(ring_count);
	/* ring_sz is a multiple of 64, so the total suits aligned_alloc. */
	tw_buf_pool *pool = aligned_alloc(TW_RING_CACHE_LINE,
					  POOL_RING_OFF + ring_sz);
	if (pool == NULL)
		return TW_ENOMEM;
	pool->free = (tw_ring *)((unsigned char *)pool + POOL_RING_OFF);
	atomic_init(&pool->hot, NULL);
	st = tw_ring_init(pool->free, ring_count, TW_RING_F_MPMC);
	if (st != TW_OK)
		goto err_pool;

	int thp = o.hugepages == -1 ? len >= TW_THP_SIZE : o.hugepages;
	pool->region = pool_map(len, thp, o.prefault != 0);
	if (pool->region == NULL) {
		st = TW_ENOMEM;
		goto err_pool;
	}
	pool->region_len = len;

	pool->hdrs = aligned_alloc(TW_BUF_ALIGN,
				   (size_t)o.count * sizeof(struct pool_hdr));
	if (pool->hdrs == NULL) {
		st = TW_ENOMEM;
		goto err_map;
	}
	pool->buf_size = buf_size;
	pool->count = o.count;
	snprintf(pool->name, sizeof(pool->name), "%s",
		 o.name != NULL ? o.name : "");

	for (uint32_t i = 0; i < o.count; i++) {
		tw_buf *b = &pool->hdrs[i].b;
		b->data = pool->region + (size_t)i * buf_size;
		b->size = buf_size;
		atomic_init(&b->refcnt, 0);
		b->kind = TW_BUF_POOL;
		b->flags_ = 0;
		b->reserved_ = 0;
		b->owner.pool = pool;
		void *p = b;
		/* Cannot fail: the ring has room for all count. */
		(void)tw_ring_sp_enqueue_bulk(pool->free, &p, 1, NULL);
	}
	*out = pool;
	return TW_OK;

err_map:
	munmap(pool->region, pool->region_len);
err_pool:
	free(pool);
	return st;
}

tw_buf *tw_buf_pool_get(tw_buf_pool *pool)
{
	void *p;

	if (pool == NULL)
		return NULL;
	/* The warm one first. Acquire: pairs with the putter's release
	 * exchange, so its last user's accesses are done. The plain load
	 * first spares an empty slot the locked exchange. */
	tw_buf *b = atomic_load_explicit(&pool->hot, memory_order_relaxed);
	if (b != NULL &&
	    (b = atomic_exchange_explicit(&pool->hot, NULL,
					  memory_order_acquire)) != NULL) {
		atomic_store_explicit(&b->refcnt, 1, memory_order_relaxed);
		return b;
	}
	/* The ring's acquire (A1) pairs with the putter's release (R0): the
	 * last user's accesses to the header and data are done. */
	if (tw_ring_mc_dequeue_burst(pool->free, &p, 1, NULL) == 0)
		return NULL;
	b = p;
	/* Relaxed: nobody else can see b until we return it. */
	atomic_store_explicit(&b->refcnt, 1, memory_order_relaxed);
	return b;
}

unsigned tw_buf_pool_get_burst(tw_buf_pool *pool, tw_buf **bufs, unsigned n)
{
	if (pool == NULL || bufs == NULL)
		return 0;
	/* tw_buf * and void * share a representation on every target we
	 * build for; the build uses -fno-strict-aliasing, as DPDK's mempool
	 * does for the same cast. */
	unsigned got = tw_ring_mc_dequeue_burst(pool->free, (void **)bufs, n,
						NULL);
	if (got < n && atomic_load_explicit(&pool->hot, memory_order_relaxed) &&
	    (bufs[got] = atomic_exchange_explicit(
		     &pool->hot, NULL, memory_order_acquire)) != NULL)
		got++;
	for (unsigned i = 0; i < got; i++)
		atomic_store_explicit(&bufs[i]->refcnt, 1,
				      memory_order_relaxed);
	return got;
}

/* Return a header whose refcount reached zero. Never allocates. */
static void pool_put(tw_buf_pool *pool, tw_buf *b)
{
	/* Release: our uses of b happen before the next getter's. Acquire:
	 * the previous putter's uses of the one we push on to the ring (whose
	 * enqueue then publishes them). */
	b = atomic_exchange_explicit(&pool->hot, b, memory_order_acq_rel);
	if (b == NULL)
		return;
	void *p = b;
	/* Cannot fail (room for every header); the ring's release (R0)
	 * publishes our use of the buffer to the next getter. */
	(void)tw_ring_mp_enqueue_bulk(pool->free, &p, 1, NULL);
}

size_t tw_buf_pool_buf_size(const tw_buf_pool *pool)
{
	return pool != NULL ? pool->buf_size : 0;
}

uint32_t tw_buf_pool_count(const tw_buf_pool *pool)
{
	return pool != NULL ? pool->count : 0;
}

uint32_t tw_buf_pool_in_use(const tw_buf_pool *pool)
{
	if (pool == NULL)
		return 0;
	/* Derived from the free ring rather than kept in a counter: no
	 * extra atomic on get/put, and exact whenever the ring is quiescent.
	 * Under traffic the ring count is a snapshot that can overshoot. */
	uint32_t free_n = tw_ring_count(pool->free) +
			  (atomic_load_explicit(&pool->hot,
						memory_order_relaxed) != NULL);
	if (free_n > pool->count)
		free_n = pool->count;
	return pool->count - free_n;
}

void tw_buf_pool_region(const tw_buf_pool *pool, void **base, size_t *len)
{
	if (base != NULL)
		*base = pool != NULL ? pool->region : NULL;
	if (len != NULL)
		*len = pool != NULL ? pool->region_len : 0;
}

tw_status tw_buf_pool_destroy(tw_buf_pool *pool)
{
	if (pool == NULL)
		return TW_OK;
	if (tw_buf_pool_in_use(pool) != 0)
		return TW_EBUSY;
	free(pool->hdrs);
	munmap(pool->region, pool->region_len);
	free(pool);
	return TW_OK;
}

/* ------------------------------------------------------------------ */
/* Large receive buffers and their cache (buf_impl.h)                  */

struct tw_bigbuf_cache {
	/* The owner's reference plus one per lent buffer. acq_rel on the
	 * decrements: whoever drops the last one frees the cache after
	 * every other holder's use of it (their unlocks included). */
	_Atomic uint32_t refs;
	pthread_mutex_t mu; /* everything below */
	bool closed;        /* owner gone: unmap what comes back */
	uint32_t n;
	size_t bytes, max_bytes;
	struct {
		void *p;
		size_t len;
	} ent[TW_BIGBUF_CACHE_N];
};

/* One lent buffer: its header and its release context in one block.
 * tw_buf_release calls the release callback, then frees the header, which
 * starts the block: the context is read before it goes. */
struct bigbuf {
	tw_buf b;            /* first */
	tw_bigbuf_cache *bc; /* NULL: no cache, unmap on release */
	size_t maplen;       /* of the mapping at b.data */
};

static void bigcache_put(tw_bigbuf_cache *bc)
{
	if (atomic_fetch_sub_explicit(&bc->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (uint32_t i = 0; i < bc->n; i++)
		munmap(bc->ent[i].p, bc->ent[i].len);
	pthread_mutex_destroy(&bc->mu);
	free(bc);
}

tw_status tw_bigbuf_cache_create(size_t max_bytes, tw_bigbuf_cache **out)
{
	if (out == NULL)
		return TW_EINVAL;
	tw_bigbuf_cache *bc = calloc(1, sizeof(*bc));
	*out = bc;
	if (bc == NULL)
		return tw_fail_static(TW_ENOMEM,
				      "big buffer cache: out of memory");
	atomic_init(&bc->refs, 1);
	pthread_mutex_init(&bc->mu, NULL);
	bc->max_bytes = max_bytes;
	return TW_OK;
}

void tw_bigbuf_cache_close(tw_bigbuf_cache *bc)
{
	if (bc == NULL)
		return;
	pthread_mutex_lock(&bc->mu);
	bc->closed = true;
	pthread_mutex_unlock(&bc->mu);
	bigcache_put(bc);
}

void tw_bigbuf_cache_usage(tw_bigbuf_cache *bc, uint32_t *n, size_t *bytes)
{
	uint32_t cn = 0;
	size_t cb = 0;
	if (bc != NULL) {
		pthread_mutex_lock(&bc->mu);
		cn = bc->n;
		cb = bc->bytes;
		pthread_mutex_unlock(&bc->mu);
	}
	if (n != NULL)
		*n = cn;
	if (bytes != NULL)
		*bytes = cb;
}

/* Last reference to a big buffer, on any thread: keep the mapping for the
 * next large frame, or unmap it. The mutex orders our use of the bytes
 * (ended by tw_buf_release's acq_rel) before the next taker's. */
static void big_release(void *ctx, void *data, size_t size)
{
	(void)size;
	struct bigbuf *bb = ctx;
	tw_bigbuf_cache *bc = bb->bc;
	bool kept = false;
	if (bc != NULL) {
		pthread_mutex_lock(&bc->mu);
		if (!bc->closed && bc->n < TW_BIGBUF_CACHE_N &&
		    bb->maplen <= bc->max_bytes - bc->bytes) {
			bc->ent[bc->n].p = data;
			bc->ent[bc->n].len = bb->maplen;
			bc->n++;
			bc->bytes += bb->maplen;
			kept = true;
		}
		pthread_mutex_unlock(&bc->mu);
	}
	if (!kept)
		munmap(data, bb->maplen);
	if (bc != NULL)
		bigcache_put(bc);
	/* bb itself is the header tw_buf_release frees next. */
}

/* The smallest cached mapping of at least len bytes that is not more than
 * twice too big (a small frame must not pin a huge one), or NULL. */
static void *bigcache_take(tw_bigbuf_cache *bc, size_t len, size_t *got)
{
	void *p = NULL;
	pthread_mutex_lock(&bc->mu);
	uint32_t best = UINT32_MAX;
	for (uint32_t i = 0; i < bc->n; i++)
		if (bc->ent[i].len >= len && bc->ent[i].len / 2 <= len &&
		    (best == UINT32_MAX || bc->ent[i].len < bc->ent[best].len))
			best = i;
	if (best != UINT32_MAX) {
		p = bc->ent[best].p;
		*got = bc->ent[best].len;
		bc->bytes -= *got;
		bc->ent[best] = bc->ent[--bc->n];
	}
	pthread_mutex_unlock(&bc->mu);
	return p;
}

tw_status tw_bigbuf_alloc(tw_bigbuf_cache *bc, size_t size, tw_buf **out,
			  bool *hit)
{
	if (hit != NULL)
		*hit = false;
	if (out == NULL)
		return TW_EINVAL;
	*out = NULL;
	if (size < TW_THP_SIZE)
		return tw_buf_alloc(size, out);
	if (size > BUF_SIZE_MAX - 2 * TW_THP_SIZE)
		return tw_fail_static(TW_EOVERFLOW, "big buffer: size beyond "
						    "the address space");
	size_t len = align_up(size, TW_THP_SIZE);
	struct bigbuf *bb = malloc(sizeof(*bb));
	if (bb == NULL)
		return tw_fail_static(TW_ENOMEM, "big buffer: out of memory");
	void *p = NULL;
	size_t got = len;
	if (bc != NULL)
		p = bigcache_take(bc, len, &got);
	if (p != NULL && hit != NULL)
		*hit = true;
	if (p == NULL && (p = thp_map(len)) == NULL) {
		free(bb);
		return tw_fail_static(TW_ENOMEM, "big buffer: mmap failed");
	}
	bb->bc = bc;
	bb->maplen = got;
	if (bc != NULL) {
		/* Relaxed: made from the owner's reference, which the caller
		 * holds (bc is open) and which orders everything before. */
		atomic_fetch_add_explicit(&bc->refs, 1, memory_order_relaxed);
	}
	user_init(&bb->b, p, size, big_release, bb);
	*out = &bb->b;
	return TW_OK;
}
