/* tensorwire buffers: refcounted byte buffers and fixed-size buffer pools. */
#ifndef TENSORWIRE_BUF_H
#define TENSORWIRE_BUF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/status.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TW_BUF_ALIGN 64u

typedef struct tw_buf tw_buf;
typedef struct tw_buf_pool tw_buf_pool;

/* Called once when the last reference to a user buffer goes. */
typedef void (*tw_buf_release_fn)(void *ctx, void *data, size_t size);

/* What owns a buffer's bytes. */
typedef enum tw_buf_kind {
	TW_BUF_HEAP = 0, /* one malloc'd block, freed with the buffer */
	TW_BUF_POOL = 1, /* fixed-size slot of a tw_buf_pool, returned to it */
	TW_BUF_USER = 2, /* caller's memory; release callback on last ref */
	TW_BUF_SLICE =
		3, /* window into a parent buffer, which it keeps alive */
} tw_buf_kind;

/*
 * A reference-counted span of bytes. Fields are public for fast reads; only
 * tw_buf_* functions change them. data is 64-byte aligned for heap and pool
 * buffers; user and slice buffers are aligned as their memory is.
 * Reference counting is atomic: any thread may retain or release.
 */
struct tw_buf {
	void *data;
	size_t size; /* usable bytes at data */
	_Atomic uint32_t refcnt;
	uint8_t kind;   /* tw_buf_kind */
	uint8_t flags_; /* internal */
	uint16_t reserved_;
	union {
		tw_buf_pool *pool; /* TW_BUF_POOL */
		tw_buf *parent;    /* TW_BUF_SLICE */
		struct {
			tw_buf_release_fn fn;
			void *ctx;
		} user; /* TW_BUF_USER */
	} owner;
};

/* Allocate a heap buffer of size bytes (64-byte aligned, uninitialised),
 * refcount 1. size may be 0. Returns TW_ENOMEM or TW_EOVERFLOW on failure. */
tw_status tw_buf_alloc(size_t size, tw_buf **out);

/* Wrap caller memory: the buffer references data without copying and calls
 * release(ctx, data, size) exactly once, from whichever thread drops the last
 * reference. release may be NULL for memory that outlives every reference.
 * Allocates the (small) header; refcount 1. */
tw_status tw_buf_from_user(void *data, size_t size, tw_buf_release_fn release,
			   void *ctx, tw_buf **out);

/* A buffer viewing [offset, offset + size) of parent, which it retains until
 * the slice is released. Slicing a slice refers to the root buffer.
 * TW_EINVAL when the window is out of parent's bounds. */
tw_status tw_buf_slice(tw_buf *parent, size_t offset, size_t size,
		       tw_buf **out);

/* Take one more reference. Returns b for convenience; b must be live. */
static inline tw_buf *tw_buf_retain(tw_buf *b)
{
	/* Relaxed: a new reference is made from an existing one, which already
	 * orders everything before it (as in shared_ptr). */
	atomic_fetch_add_explicit(&b->refcnt, 1, memory_order_relaxed);
	return b;
}

/* Drop one reference; the last one frees, returns to the pool, or calls the
 * release callback. NULL is accepted and ignored. */
void tw_buf_release(tw_buf *b);

/* Current reference count (a snapshot, for tests and diagnostics). */
static inline uint32_t tw_buf_refcnt(const tw_buf *b)
{
	return atomic_load_explicit(&b->refcnt, memory_order_relaxed);
}

/* Pool options. Set size to sizeof(struct tw_buf_pool_opts) so the struct
 * can grow without breaking callers (as SPDK's opts_size). */
struct tw_buf_pool_opts {
	size_t opts_size;
	size_t buf_size;  /* bytes per buffer; rounded up to 64 */
	uint32_t count;   /* number of buffers; 1 .. 2^24 */
	int prefault;     /* touch every page at creation (default 1) */
	int hugepages;    /* madvise(MADV_HUGEPAGE) the data region (default:
			   * when the region is 2 MiB or more) ; -1 = auto */
	const char *name; /* for diagnostics; copied; may be NULL */
};

/* Fill opts with defaults: 2048 buffers of 4 KiB, prefaulted, auto THP. */
void tw_buf_pool_opts_init(struct tw_buf_pool_opts *opts, size_t opts_size);

/* Create a pool: one mapping holds every buffer's bytes, 64-byte aligned,
 * so taking a buffer never calls malloc. */
tw_status tw_buf_pool_create(const struct tw_buf_pool_opts *opts,
			     tw_buf_pool **out);

/* Take a buffer (refcount 1), or NULL when the pool is empty. Lock-free and
 * safe from any thread; a buffer may be released on another thread. */
tw_buf *tw_buf_pool_get(tw_buf_pool *pool);

/* Take up to n buffers at once; returns how many were taken (burst). */
unsigned tw_buf_pool_get_burst(tw_buf_pool *pool, tw_buf **bufs, unsigned n);

/* Size of every buffer in the pool (after rounding). */
size_t tw_buf_pool_buf_size(const tw_buf_pool *pool);

/* Number of buffers in the pool / currently taken (snapshot). */
uint32_t tw_buf_pool_count(const tw_buf_pool *pool);
uint32_t tw_buf_pool_in_use(const tw_buf_pool *pool);

/* Base address and length of the pool's data region, for registering the
 * memory with io_uring or DPDK. */
void tw_buf_pool_region(const tw_buf_pool *pool, void **base, size_t *len);

/* Destroy a pool. Every buffer must have come back: otherwise returns
 * TW_EBUSY and leaves the pool intact (a leak is the caller's bug, and
 * tests rely on seeing it). NULL is accepted. */
tw_status tw_buf_pool_destroy(tw_buf_pool *pool);

#ifdef __cplusplus
}
#endif
#endif
