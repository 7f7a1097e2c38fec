/* Internal: what the transports share of dataplane/buf.c beyond the public
 * buffers and pools: the allocator for large receive buffers, with the
 * cache that keeps their memory faulted in between frames. */
#ifndef TW_DATAPLANE_BUF_IMPL_H
#define TW_DATAPLANE_BUF_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/buf.h>
#include <tensorwire/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A transparent huge page. Buffers of this size or more get a mapping of
 * their own, 2 MiB aligned and advised MADV_HUGEPAGE, so that the bytes
 * landing in it fault in huge pages rather than 4 KiB ones. */
#define TW_THP_SIZE ((size_t)2 << 20)

/* Mappings a cache keeps at most, whatever its byte bound. */
#define TW_BIGBUF_CACHE_N 8u

/*
 * Big receive buffers, kept for reuse. A fresh mapping costs the kernel a
 * zeroing and a fault per page (2 MiB each with THP) before any byte
 * lands: copying into fresh pages runs at ~2.7 GB/s against ~21 GB/s into
 * faulted ones (DESIGN.md), about a third of a large receive. A cache
 * keeps the mappings of released buffers, up to max_bytes and
 * TW_BIGBUF_CACHE_N of them, for the next large frame.
 *
 * One cache per transport instance: its owner allocates from it on its
 * loop thread. Buffers come back through their release callback on
 * whichever thread drops the last reference (tw_buf_release), so the
 * cache takes a mutex there and on allocation, never on the loop's way
 * for small frames. The cache lives until its owner has closed it and
 * every buffer it lent has come back.
 */
typedef struct tw_bigbuf_cache tw_bigbuf_cache;

/* A cache keeping at most max_bytes of released mappings (0: none kept,
 * every buffer is unmapped on release). TW_ENOMEM. */
tw_status tw_bigbuf_cache_create(size_t max_bytes, tw_bigbuf_cache **out);

/* The owner lets go of bc (its transport is destroyed): from now on
 * buffers coming back are unmapped; the cached mappings go with the last
 * of them. bc must not be used by the caller afterwards. NULL is
 * accepted. */
void tw_bigbuf_cache_close(tw_bigbuf_cache *bc);

/* What bc holds now: mappings and their bytes (a snapshot, for tests and
 * diagnostics; takes the mutex). */
void tw_bigbuf_cache_usage(tw_bigbuf_cache *bc, uint32_t *n, size_t *bytes);

/*
 * A buffer of size bytes (uninitialised, 64-byte aligned, refcount 1) for
 * a frame received in place. Below TW_THP_SIZE a heap buffer
 * (tw_buf_alloc). From TW_THP_SIZE on, a mapping rounded up to a multiple
 * of 2 MiB: the smallest one cached in bc that is at most twice that
 * (*hit = true), else a fresh one, 2 MiB aligned with THP advice, faulted
 * in by the kernel as the bytes land. Its last release hands the mapping
 * back to bc or unmaps it. bc may be NULL: no cache. hit may be NULL.
 * TW_ENOMEM, TW_EOVERFLOW, with the reason recorded (tw_errmsg).
 * Only while bc is open (its owner's reference is what makes the lent
 * buffer's own one safe to take); releases may come from any thread.
 */
tw_status tw_bigbuf_alloc(tw_bigbuf_cache *bc, size_t size, tw_buf **out,
			  bool *hit);

#ifdef __cplusplus
}
#endif
#endif
