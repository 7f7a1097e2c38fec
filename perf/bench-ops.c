/* bench-ops: aten::add and aten::mm kernels on float32 against memcpy and a naive triple loop in the same run. */
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tensorwire/tensor.h>

#include "rpc/ops/ops.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void fill(float *p, int64_t n, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (int64_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (float)(x % 2001) / 1000.0f - 1.0f;
	}
}

/* Right after the failing call: its reason (tw_errmsg) is ours. */
static void die(const char *what, tw_status st)
{
	fprintf(stderr, "bench-ops: %s: %s (%s)\n", what, tw_status_name(st),
		tw_errmsg(st));
	exit(1);
}

/* Seconds per call of the op, median of trials of at least min_s each. */
#define TRIALS 7

static volatile uint8_t sink;

static double time_add(const tw_tensor *a, const tw_tensor *b, double min_s)
{
	double t[TRIALS];
	for (int r = 0; r < TRIALS; r++) {
		int reps = 0;
		double t0 = now(), el;
		do {
			tw_tensor out;
			tw_status st = tw_op_add(a, b, NULL, &out);
			if (st != TW_OK)
				die("add", st);
			sink ^= ((uint8_t *)out.data)[0];
			tw_tensor_release(&out);
			reps++;
			el = now() - t0;
		} while (el < min_s);
		t[r] = el / reps;
	}
	return median(t, TRIALS);
}

static double time_memcpy(void *dst, const void *src, size_t bytes,
			  double min_s)
{
	double t[TRIALS];
	for (int r = 0; r < TRIALS; r++) {
		int reps = 0;
		double t0 = now(), el;
		do {
			memcpy(dst, src, bytes);
			sink ^= ((uint8_t *)dst)[reps % 64];
			reps++;
			el = now() - t0;
		} while (el < min_s);
		t[r] = el / reps;
	}
	return median(t, TRIALS);
}

/* The anchor for mm: C = A B by the textbook i-j-k loop. */
static void naive_mm(int64_t n, const float *A, const float *B, float *C)
{
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < n; j++) {
			float s = 0;
			for (int64_t k = 0; k < n; k++)
				s += A[i * n + k] * B[k * n + j];
			C[i * n + j] = s;
		}
}

static void bench_add(const char *mode, const size_t *sizes, int nsizes)
{
	for (int s = 0; s < nsizes; s++) {
		size_t bytes = sizes[s];
		int64_t n = (int64_t)(bytes / sizeof(float));
		tw_tensor a, b;
		if (tw_tensor_alloc(&a, TW_FLOAT32, 1, &n) != TW_OK ||
		    tw_tensor_alloc(&b, TW_FLOAT32, 1, &n) != TW_OK)
			die("alloc", TW_ENOMEM);
		fill(a.data, n, 1);
		fill(b.data, n, 2);
		void *dst = malloc(bytes);
		if (dst == NULL)
			die("alloc", TW_ENOMEM);
		memset(dst, 1, bytes); /* pre-fault the memcpy destination */

		double min_s = 0.1;
		double tm = time_memcpy(dst, a.data, bytes, min_s);
		double ta = time_add(&a, &b, min_s);
		double gb_add = 3.0 * (double)bytes / ta / 1e9;
		double gb_cpy = 2.0 * (double)bytes / tm / 1e9;
		printf("RESULT add mode=%s bytes=%zu add_us=%.1f add_GBps=%.2f memcpy_us=%.1f memcpy_GBps=%.2f bw_ratio=%.2f time_ratio=%.2f\n",
		       mode, bytes, ta * 1e6, gb_add, tm * 1e6, gb_cpy,
		       gb_add / gb_cpy, ta / tm);
		free(dst);
		tw_tensor_release(&a);
		tw_tensor_release(&b);
	}
}

static void bench_mm(int64_t n)
{
	int64_t shape[2] = {n, n};
	tw_tensor a, b;
	if (tw_tensor_alloc(&a, TW_FLOAT32, 2, shape) != TW_OK ||
	    tw_tensor_alloc(&b, TW_FLOAT32, 2, shape) != TW_OK)
		die("alloc", TW_ENOMEM);
	fill(a.data, n * n, 3);
	fill(b.data, n * n, 4);
	float *c = malloc((size_t)(n * n) * sizeof(float));
	if (c == NULL)
		die("alloc", TW_ENOMEM);

	double flops = 2.0 * (double)n * (double)n * (double)n;
	double t[TRIALS];
	int ntr = n >= 1024 ? 3 : 5;
	for (int r = 0; r < ntr; r++) {
		double t0 = now();
		naive_mm(n, a.data, b.data, c);
		t[r] = now() - t0;
	}
	double tn = median(t, ntr);

	tw_tensor out;
	double maxdiff = 0;
	for (int r = 0; r < TRIALS; r++) {
		int reps = 0;
		double t0 = now(), el;
		do {
			tw_status st = tw_op_mm(&a, &b, &out);
			if (st != TW_OK)
				die("mm", st);
			if (r == 0 && reps == 0) {
				const float *o = out.data;
				for (int64_t i = 0; i < n * n; i++) {
					double d = fabs((double)o[i] -
							(double)c[i]);
					maxdiff = d > maxdiff ? d : maxdiff;
				}
			}
			tw_tensor_release(&out);
			reps++;
			el = now() - t0;
		} while (el < 0.2);
		t[r] = el / reps;
	}
	double to = median(t, TRIALS);
	printf("RESULT mm n=%lld op_ms=%.2f op_GFLOPs=%.2f naive_ms=%.1f naive_GFLOPs=%.2f speedup=%.1f maxdiff=%.2g\n",
	       (long long)n, to * 1e3, flops / to / 1e9, tn * 1e3,
	       flops / tn / 1e9, tn / to, maxdiff);
	free(c);
	tw_tensor_release(&a);
	tw_tensor_release(&b);
}

int main(int argc, char **argv)
{
	(void)argv;
	const size_t sizes[] = {1u << 20, 16u << 20, 64u << 20};
	int quick = argc > 1; /* any argument: add only */

	/* As the op is called: glibc returns large outputs to the kernel on
	 * free, so each call writes freshly mapped pages. */
	bench_add("fresh", sizes, 3);
	/* With freed memory kept in the heap (already faulted in): the
	 * kernel's own bandwidth. */
	mallopt(M_MMAP_THRESHOLD, 1 << 30);
	mallopt(M_TRIM_THRESHOLD, 1 << 30);
	bench_add("warm", sizes, 3);

	if (!quick) {
		bench_mm(256);
		bench_mm(512);
		bench_mm(1024);
	}
	return sink == 255 ? 1 : 0;
}
