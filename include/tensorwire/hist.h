/* tensorwire histograms: log-linear (HdrHistogram-style) latency
 * histograms of constant size, with a bounded relative error. */
#ifndef TENSORWIRE_HIST_H
#define TENSORWIRE_HIST_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Values (nanoseconds, or any unsigned count) fall into buckets: values
 * below 2^(TW_HIST_SUB_BITS + 1) each have their own, and every power of
 * two above is cut into 2^TW_HIST_SUB_BITS buckets of equal width. A
 * bucket's width is then at most 2^-TW_HIST_SUB_BITS of the values in
 * it, and a quantile, reported as its bucket's middle, is within
 * TW_HIST_REL_ERR (2^-6, 1.6%) of the exact one. Values from
 * TW_HIST_LIMIT (2^36: 68.7 s in ns) up are recorded as TW_HIST_LIMIT - 1
 * and counted in saturated.
 *
 * A histogram is 8 KiB, never allocates, and is recorded by one thread
 * (tw_hist_record: a count-leading-zeros, shifts and five relaxed
 * stores) while any thread reads it (tw_hist_add into a copy): every
 * field is read and written with relaxed atomics, so a reader sees each
 * bucket whole though not all of them at one instant. Histograms merge
 * by adding buckets (tw_hist_add): one per thread, summed on read.
 */
#define TW_HIST_SUB_BITS 5
#define TW_HIST_MAX_BITS 36
#define TW_HIST_LIMIT (UINT64_C(1) << TW_HIST_MAX_BITS)
#define TW_HIST_BUCKETS                                                        \
	((TW_HIST_MAX_BITS - TW_HIST_SUB_BITS + 1) << TW_HIST_SUB_BITS)
#define TW_HIST_REL_ERR (1.0 / (1 << (TW_HIST_SUB_BITS + 1)))

struct tw_hist {
	uint64_t count;     /* values recorded */
	uint64_t sum;       /* their sum (wraps after 2^64) */
	uint64_t min, max;  /* exact; 0 while count is 0 */
	uint64_t saturated; /* values at or over TW_HIST_LIMIT */
	uint64_t b[TW_HIST_BUCKETS];
};

/* The bucket of v (v < TW_HIST_LIMIT). */
static inline uint32_t tw_hist_index(uint64_t v)
{
	if (v < (UINT64_C(2) << TW_HIST_SUB_BITS))
		return (uint32_t)v;
	uint32_t e = 63u - (uint32_t)__builtin_clzll(v); /* > SUB_BITS */
	uint32_t shift = e - TW_HIST_SUB_BITS;
	return ((e - TW_HIST_SUB_BITS + 1) << TW_HIST_SUB_BITS) |
	       (uint32_t)((v >> shift) & ((1u << TW_HIST_SUB_BITS) - 1));
}

static inline void tw_hist_store_(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* Record v. The histogram's one writer only (see above). */
static inline void tw_hist_record(struct tw_hist *h, uint64_t v)
{
	if (__builtin_expect(v >= TW_HIST_LIMIT, 0)) {
		v = TW_HIST_LIMIT - 1;
		tw_hist_store_(&h->saturated, h->saturated + 1);
	}
	uint32_t i = tw_hist_index(v);
	tw_hist_store_(&h->b[i], h->b[i] + 1);
	if (h->count == 0 || v < h->min)
		tw_hist_store_(&h->min, v);
	if (v > h->max)
		tw_hist_store_(&h->max, v);
	tw_hist_store_(&h->sum, h->sum + v);
	tw_hist_store_(&h->count, h->count + 1);
}

/* Empty h. */
void tw_hist_init(struct tw_hist *h);

/* dst += src (src may be recorded meanwhile by its writer: read with
 * relaxed loads; dst is the caller's). */
void tw_hist_add(struct tw_hist *dst, const struct tw_hist *src);

/* Smallest and largest value bucket i holds (i < TW_HIST_BUCKETS). */
uint64_t tw_hist_bucket_low(uint32_t i);
uint64_t tw_hist_bucket_high(uint32_t i);

/*
 * The q-quantile (0 <= q <= 1) by nearest rank: the middle of the bucket
 * holding the ceil(q * n)-th smallest value (at least the first), within
 * TW_HIST_REL_ERR of that value and clamped to [min, max]; q >= 1 gives
 * max, an empty histogram 0. n counts the buckets, so a histogram being
 * recorded meanwhile still gives one of its values.
 */
uint64_t tw_hist_quantile(const struct tw_hist *h, double q);

/* sum / count (0 when empty). */
double tw_hist_mean(const struct tw_hist *h);

#ifdef __cplusplus
}
#endif
#endif
