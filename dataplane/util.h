/* Internal: the two idioms every file shares: container_of, and copying a
 * caller's options struct, which carries its own size, over defaults. */
#ifndef TW_DATAPLANE_UTIL_H
#define TW_DATAPLANE_UTIL_H

#include <stddef.h>
#include <string.h>

/* The object that embeds member at p. */
#define container_of(p, type, member)                                          \
	((type *)(void *)((char *)(p) - (offsetof(type, member))))

/*
 * Options structs start with size_t opts_size (the caller's sizeof) and
 * only ever grow at their end (as SPDK's): a program built against an
 * older, shorter struct keeps working. Copy the fields the caller's struct
 * has, whole, from src (NULL: none) over dst, which holds the defaults and
 * is dst_size bytes; dst's opts_size stays its own.
 */
static inline void tw_opts_copy(void *dst, size_t dst_size, const void *src)
{
	if (src == NULL)
		return;
	size_t n = *(const size_t *)src;
	if (n > dst_size)
		n = dst_size;
	size_t keep = sizeof(size_t);
	if (n > keep)
		memcpy((char *)dst + keep, (const char *)src + keep, n - keep);
}

#endif
