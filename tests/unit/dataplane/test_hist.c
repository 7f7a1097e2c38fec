/* Log-linear histograms against exact answers: the bucket layout, and
 * quantiles of known data within the stated relative error. */
#include <tensorwire/hist.h>

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static struct tw_hist *hist_new(void)
{
	struct tw_hist *h = malloc(sizeof(*h));
	cr_assert_not_null(h);
	tw_hist_init(h);
	return h;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest rank on sorted data: the ceil(q n)-th value, at least the
 * first. */
static uint64_t exact_quantile(const uint64_t *sorted, size_t n, double q)
{
	double r = q * (double)n;
	size_t rank = (size_t)r;
	if ((double)rank < r)
		rank++;
	if (rank == 0)
		rank = 1;
	return sorted[rank - 1];
}

/* splitmix64: the same data every run. */
static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static const double qs[] = {0.0,  0.01,  0.25,   0.5,     0.9,
			    0.99, 0.999, 0.9999, 0.99999, 1.0};

static void check_quantiles(const struct tw_hist *h, uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		uint64_t want = exact_quantile(v, n, qs[i]);
		uint64_t got = tw_hist_quantile(h, qs[i]);
		double err = fabs((double)got - (double)want);
		cr_assert(err <= (double)want * TW_HIST_REL_ERR,
			  "q=%g: got %llu, exact %llu (error %.4f%%, bound "
			  "%.4f%%)",
			  qs[i], (unsigned long long)got,
			  (unsigned long long)want, 100.0 * err / (double)want,
			  100.0 * TW_HIST_REL_ERR);
	}
}

Test(hist, buckets_tile_the_range_without_gaps)
{
	uint64_t next = 0;
	for (uint32_t i = 0; i < TW_HIST_BUCKETS; i++) {
		uint64_t lo = tw_hist_bucket_low(i),
			 hi = tw_hist_bucket_high(i);
		cr_assert_eq(lo, next, "bucket %u starts at %llu", i,
			     (unsigned long long)lo);
		cr_assert_geq(hi, lo);
		cr_assert_eq(tw_hist_index(lo), i);
		cr_assert_eq(tw_hist_index(hi), i);
		/* Its width is within the stated share of its values. */
		cr_assert_leq((double)(hi - lo + 1),
			      2.0 * TW_HIST_REL_ERR * (double)(lo ? lo : 1) +
				      1.0);
		next = hi + 1;
	}
	cr_assert_eq(next, TW_HIST_LIMIT);
}

Test(hist, small_values_are_exact)
{
	struct tw_hist *h = hist_new();
	uint64_t v[64];
	for (uint64_t i = 0; i < 64; i++) {
		v[i] = 63 - i;
		tw_hist_record(h, v[i]);
	}
	cr_assert_eq(h->count, 64);
	cr_assert_eq(h->min, 0);
	cr_assert_eq(h->max, 63);
	cr_assert_eq(h->sum, 63 * 64 / 2);
	for (uint32_t k = 1; k <= 64; k++)
		cr_assert_eq(tw_hist_quantile(h, k / 64.0), k - 1);
	free(h);
}

Test(hist, quantiles_of_a_heavy_tail_within_the_bound)
{
	/* Latencies from 1 us to ~100 ms: a log-uniform body and a tail. */
	size_t n = 200000;
	uint64_t *v = malloc(n * sizeof(*v));
	struct tw_hist *h = hist_new();
	uint64_t s = 42;
	for (size_t i = 0; i < n; i++) {
		double u = (double)(rnd(&s) >> 11) / 9007199254740992.0;
		double x = 1000.0 * pow(10.0, 3.0 * u);
		if (i % 1000 == 0)
			x *= 100.0;
		v[i] = (uint64_t)x;
		tw_hist_record(h, v[i]);
	}
	check_quantiles(h, v, n);
	cr_assert_eq(h->count, n);
	free(v);
	free(h);
}

Test(hist, quantiles_of_a_narrow_peak_within_the_bound)
{
	/* A round trip's typical shape: 7-9 us, a few slow ones. */
	size_t n = 100000;
	uint64_t *v = malloc(n * sizeof(*v));
	struct tw_hist *h = hist_new();
	uint64_t s = 7;
	for (size_t i = 0; i < n; i++) {
		v[i] = 7000 + rnd(&s) % 2000;
		if (i % 5000 == 1)
			v[i] = 250000 + rnd(&s) % 1000;
		tw_hist_record(h, v[i]);
	}
	check_quantiles(h, v, n);
	free(v);
	free(h);
}

Test(hist, merged_halves_equal_the_whole)
{
	struct tw_hist *a = hist_new(), *b = hist_new(), *all = hist_new();
	struct tw_hist *m = hist_new();
	uint64_t s = 3;
	for (int i = 0; i < 50000; i++) {
		uint64_t x = rnd(&s) % 10000000;
		tw_hist_record(i % 3 ? a : b, x);
		tw_hist_record(all, x);
	}
	tw_hist_add(m, a);
	tw_hist_add(m, b);
	cr_assert_eq(memcmp(m, all, sizeof(*m)), 0,
		     "merging two histograms gives the histogram of both");
	tw_hist_add(m, hist_new()); /* an empty one changes nothing */
	cr_assert_eq(memcmp(m, all, sizeof(*m)), 0);
	free(a);
	free(b);
	free(all);
	free(m);
}

Test(hist, values_past_the_limit_saturate)
{
	struct tw_hist *h = hist_new();
	tw_hist_record(h, 5);
	tw_hist_record(h, TW_HIST_LIMIT);
	tw_hist_record(h, UINT64_MAX);
	cr_assert_eq(h->saturated, 2);
	cr_assert_eq(h->count, 3);
	cr_assert_eq(h->max, TW_HIST_LIMIT - 1);
	cr_assert_eq(h->b[TW_HIST_BUCKETS - 1], 2);
	cr_assert_eq(tw_hist_quantile(h, 1.0), TW_HIST_LIMIT - 1);
	cr_assert_eq(tw_hist_quantile(h, 0.0), 5);
	free(h);
}

Test(hist, empty_reads_zero)
{
	struct tw_hist *h = hist_new();
	cr_assert_eq(tw_hist_quantile(h, 0.5), 0);
	cr_assert_eq(tw_hist_quantile(h, 1.0), 0);
	cr_assert_eq(tw_hist_mean(h), 0.0);
	tw_hist_record(h, 1000);
	tw_hist_record(h, 3000);
	cr_assert_eq(tw_hist_mean(h), 2000.0);
	free(h);
}
