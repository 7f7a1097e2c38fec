/* Log-linear histograms (include/tensorwire/hist.h): merging, bucket
 * bounds, quantiles. Recording is inline in the header. */
#include <string.h>

#include <tensorwire/hist.h>

_Static_assert(TW_HIST_BUCKETS == 1024, "the layout hist.h describes");

static inline uint64_t ld(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void tw_hist_init(struct tw_hist *h)
{
	memset(h, 0, sizeof(*h));
}

void tw_hist_add(struct tw_hist *dst, const struct tw_hist *src)
{
	uint64_t n = ld(&src->count);
	if (n == 0)
		return;
	uint64_t mn = ld(&src->min), mx = ld(&src->max);
	if (dst->count == 0 || mn < dst->min)
		dst->min = mn;
	if (mx > dst->max)
		dst->max = mx;
	dst->count += n;
	dst->sum += ld(&src->sum);
	dst->saturated += ld(&src->saturated);
	for (uint32_t i = 0; i < TW_HIST_BUCKETS; i++)
		dst->b[i] += ld(&src->b[i]);
}

uint64_t tw_hist_bucket_low(uint32_t i)
{
	if (i < (2u << TW_HIST_SUB_BITS))
		return i;
	uint32_t g = i >> TW_HIST_SUB_BITS; /* >= 2 */
	uint64_t m = i & ((1u << TW_HIST_SUB_BITS) - 1);
	return ((UINT64_C(1) << TW_HIST_SUB_BITS) + m) << (g - 1);
}

uint64_t tw_hist_bucket_high(uint32_t i)
{
	if (i < (2u << TW_HIST_SUB_BITS))
		return i;
	uint32_t g = i >> TW_HIST_SUB_BITS;
	return tw_hist_bucket_low(i) + (UINT64_C(1) << (g - 1)) - 1;
}

uint64_t tw_hist_quantile(const struct tw_hist *h, double q)
{
	uint64_t n = 0;
	for (uint32_t i = 0; i < TW_HIST_BUCKETS; i++)
		n += ld(&h->b[i]);
	if (n == 0)
		return 0;
	uint64_t mn = ld(&h->min), mx = ld(&h->max);
	if (q >= 1.0)
		return mx;
	if (q < 0.0)
		q = 0.0;
	/* Nearest rank: the ceil(q * n)-th value, at least the first. */
	double r = q * (double)n;
	uint64_t rank = (uint64_t)r;
	if ((double)rank < r)
		rank++;
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (uint32_t i = 0; i < TW_HIST_BUCKETS; i++) {
		seen += ld(&h->b[i]);
		if (seen >= rank) {
			uint64_t lo = tw_hist_bucket_low(i);
			uint64_t v = lo + (tw_hist_bucket_high(i) - lo) / 2;
			return v < mn ? mn : v > mx ? mx : v;
		}
	}
	return mx;
}

double tw_hist_mean(const struct tw_hist *h)
{
	uint64_t n = ld(&h->count);
	return n == 0 ? 0.0 : (double)ld(&h->sum) / (double)n;
}
