/* Unit tests for rpc/ops/factory.c: zeros, ones, full, arange and the documented rand/randn generator. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops_test.h"

Test(factory, zeros_ones_full)
{
	tw_tensor t;
	cr_assert_eq(tw_op_zeros(2, SHAPE(2, 3), NULL, &t), TW_OK);
	cr_assert_eq(t.dtype, TW_FLOAT32);
	expect_values(&t, (double[]){0, 0, 0, 0, 0, 0}, 0, 0, "zeros");
	tw_tensor_release(&t);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(tw_op_ones(1, SHAPE(37), &DT5[i], &t), TW_OK);
		cr_assert_eq(t.dtype, DT5[i]);
		for (int k = 0; k < 37; k++)
			cr_assert_eq(flat(&t, k), 1.0);
		tw_tensor_release(&t);
	}
	tw_dtype h = TW_FLOAT16;
	cr_assert_eq(tw_op_ones(1, SHAPE(2), &h, &t), TW_OK);
	cr_assert_eq(((uint16_t *)t.data)[1], 0x3c00);
	tw_tensor_release(&t);
	/* full infers the dtype from the fill value. */
	struct {
		tw_scalar s;
		tw_dtype want;
		double v;
	} cases[] = {
		{{.kind = TW_SCALAR_BOOL, .b = true}, TW_BOOL, 1},
		{{.kind = TW_SCALAR_INT, .i = -7}, TW_INT64, -7},
		{{.kind = TW_SCALAR_DOUBLE, .d = 2.5}, TW_FLOAT32, 2.5},
	};
	for (int c = 0; c < 3; c++) {
		cr_assert_eq(tw_op_full(2, SHAPE(3, 5), &cases[c].s, NULL, &t),
			     TW_OK);
		cr_assert_eq(t.dtype, cases[c].want);
		for (int k = 0; k < 15; k++)
			cr_assert_eq(flat(&t, k), cases[c].v);
		tw_tensor_release(&t);
	}
	tw_dtype i32 = TW_INT32, f64 = TW_FLOAT64;
	cr_assert_eq(tw_op_full(0, NULL, &cases[2].s, &i32, &t), TW_OK);
	cr_assert_eq(flat(&t, 0), 2); /* truncated */
	tw_tensor_release(&t);
	cr_assert_eq(tw_op_full(1, SHAPE(0), &cases[1].s, &f64, &t), TW_OK);
	expect_shape(&t, 1, SHAPE(0));
	tw_tensor_release(&t);
	tw_scalar big = tw_scalar_int(INT64_C(1) << 33);
	expect_err(tw_op_full(1, SHAPE(2), &big, &i32, &t), TW_ERUNTIME,
		   "value cannot be converted to type int without overflow");
	expect_err(
		tw_op_zeros(2, SHAPE(-1, 2), NULL, &t), TW_ERUNTIME,
		"Trying to create tensor with negative dimension -1: [-1, 2]");
	expect_err(tw_op_ones(2, SHAPE(INT64_MAX, 4), NULL, &t), TW_EOVERFLOW,
		   NULL);
}

static void arange_case(tw_scalar s, tw_scalar e, tw_scalar st,
			const tw_dtype *dt, tw_dtype want_dt, int64_t want_n,
			double first, double step)
{
	tw_tensor t;
	cr_assert_eq(tw_op_arange(&s, &e, &st, dt, &t), TW_OK, "%s",
		     tw_err_last());
	cr_assert_eq(t.dtype, want_dt);
	expect_shape(&t, 1, &want_n);
	for (int64_t k = 0; k < want_n; k++)
		cr_assert(close_enough(flat(&t, k),
				       to_dtype(first + step * (double)k,
						want_dt),
				       1e-6, 1e-6),
			  "arange elem %lld: %g", (long long)k, flat(&t, k));
	tw_tensor_release(&t);
}

Test(factory, arange)
{
	tw_scalar i0 = tw_scalar_int(0), i10 = tw_scalar_int(10),
		  i3 = tw_scalar_int(3);
	tw_scalar im3 = tw_scalar_int(-3), im10 = tw_scalar_int(-10),
		  i1 = tw_scalar_int(1);
	tw_dtype i32 = TW_INT32, f64 = TW_FLOAT64;
	arange_case(i0, i10, i3, NULL, TW_INT64, 4, 0, 3);
	arange_case(i0, im10, im3, NULL, TW_INT64, 4, 0, -3);
	arange_case(i0, i10, i1, &i32, TW_INT32, 10, 0, 1);
	arange_case(i0, i0, i1, NULL, TW_INT64, 0, 0, 1);
	arange_case(tw_scalar_double(1), tw_scalar_double(2.5), i1, NULL,
		    TW_FLOAT32, 2, 1, 1);
	arange_case(i0, i1, tw_scalar_double(0.1), NULL, TW_FLOAT32, 10, 0,
		    0.1);
	arange_case(i0, i1, tw_scalar_double(0.1), &f64, TW_FLOAT64, 10, 0,
		    0.1);
	arange_case(tw_scalar_double(-1), tw_scalar_double(1),
		    tw_scalar_double(0.5), &i32, TW_INT32, 4, -1,
		    0); /* the step truncates to 0, as torch */
	tw_tensor t;
	tw_scalar z = tw_scalar_int(0);
	expect_err(tw_op_arange(&i0, &i10, &z, NULL, &t), TW_ERUNTIME,
		   "step must be nonzero");
	expect_err(tw_op_arange(&i0, &i10, &im3, NULL, &t), TW_ERUNTIME,
		   "upper bound and larger bound inconsistent with step sign");
	tw_scalar inf = tw_scalar_double(INFINITY);
	expect_err(tw_op_arange(&i0, &inf, &i1, NULL, &t), TW_ERUNTIME,
		   "unsupported range: 0 -> inf");
	tw_dtype b = TW_BOOL;
	expect_err(tw_op_arange(&i0, &i10, &i1, &b, &t), TW_ETYPE,
		   "\"arange_cpu\" not implemented for 'Bool'");
}

Test(factory, arange_int_step_truncation)
{
	/* Explicit int dtype with a fractional step: the step truncates to 0. */
	tw_scalar s = tw_scalar_double(-1), e = tw_scalar_double(1),
		  st = tw_scalar_double(0.5);
	tw_dtype i64 = TW_INT64;
	tw_tensor t;
	expect_err(tw_op_arange(&s, &e, &st, &i64, &t), TW_ERUNTIME,
		   "step must be nonzero");
}

Test(factory, rand_randn)
{
	int64_t n = 200000;
	tw_tensor a, b, c;
	cr_assert_eq(tw_op_rand(1, &n, 42, NULL, &a), TW_OK);
	cr_assert_eq(a.dtype, TW_FLOAT32);
	cr_assert_eq(tw_op_rand(2, SHAPE(400, 500), 42, NULL, &b), TW_OK);
	cr_assert_eq(memcmp(a.data, b.data, (size_t)n * 4), 0,
		     "same seed, same values");
	cr_assert_eq(tw_op_rand(1, &n, 43, NULL, &c), TW_OK);
	cr_assert_neq(memcmp(a.data, c.data, (size_t)n * 4), 0);
	double s = 0, s2 = 0, mn = 1, mx = 0;
	for (int64_t k = 0; k < n; k++) {
		double x = ((float *)a.data)[k];
		cr_assert(x >= 0 && x < 1);
		s += x;
		s2 += x * x;
		mn = x < mn ? x : mn;
		mx = x > mx ? x : mx;
	}
	double mean = s / (double)n, var = s2 / (double)n - mean * mean;
	cr_assert(fabs(mean - 0.5) < 0.01, "rand mean %g", mean);
	cr_assert(fabs(var - 1.0 / 12) < 0.005, "rand var %g", var);
	cr_assert(mn < 0.001 && mx > 0.999);
	tw_tensor_release(&a);
	tw_tensor_release(&b);
	tw_tensor_release(&c);
	/* The documented generator. */
	tw_dtype f64 = TW_FLOAT64;
	cr_assert_eq(tw_op_rand(1, SHAPE(3), 7, &f64, &a), TW_OK);
	for (int k = 0; k < 3; k++)
		cr_assert_eq(((double *)a.data)[k],
			     (double)(tw_ops_random_u64(7, (uint64_t)k) >> 11) *
				     0x1.0p-53);
	tw_tensor_release(&a);
	/* SplitMix64 seeded with 0: its first output, as published. */
	cr_assert_eq(tw_ops_random_u64(0, 0), UINT64_C(0xe220a8397b1dcdaf));

	n = 200001; /* odd: the last pair is half used */
	for (int d = 0; d < 2; d++) {
		tw_dtype dt = d ? TW_FLOAT64 : TW_FLOAT32;
		cr_assert_eq(tw_op_randn(1, &n, 1234, &dt, &a), TW_OK);
		cr_assert_eq(tw_op_randn(1, &n, 1234, &dt, &b), TW_OK);
		cr_assert(tw_tensor_equal(&a, &b));
		s = s2 = 0;
		double s4 = 0;
		int64_t beyond3 = 0;
		for (int64_t k = 0; k < n; k++) {
			double x = flat(&a, k);
			cr_assert(isfinite(x));
			s += x;
			s2 += x * x;
			s4 += x * x * x * x;
			beyond3 += fabs(x) > 3;
		}
		mean = s / (double)n;
		var = s2 / (double)n - mean * mean;
		cr_assert(fabs(mean) < 0.01, "randn mean %g", mean);
		cr_assert(fabs(var - 1) < 0.02, "randn var %g", var);
		cr_assert(fabs(s4 / (double)n - 3) < 0.1, "randn kurtosis %g",
			  s4 / (double)n);
		/* P(|x| > 3) = 0.0027 */
		cr_assert(beyond3 > 400 && beyond3 < 700, "tail %lld",
			  (long long)beyond3);
		tw_tensor_release(&a);
		tw_tensor_release(&b);
	}
	tw_dtype i64 = TW_INT64;
	expect_err(tw_op_rand(1, SHAPE(2), 1, &i64, &a), TW_ETYPE,
		   "\"check_uniform_bounds\" not implemented for 'Long'");
	expect_err(tw_op_randn(1, SHAPE(2), 1, &i64, &a), TW_ETYPE,
		   "\"normal_kernel_cpu\" not implemented for 'Long'");
}

/*
 * Every factory's refusal reads back through tw_errmsg in torch's words,
 * and a success of the same factory right after leaves it in place: the
 * factories record nothing when they succeed.
 */
Test(factory, reasons)
{
	tw_tensor t;
	const char *neg = "Trying to create tensor with negative dimension "
			  "-2: [3, -2]";
	expect_err(tw_op_ones(2, SHAPE(3, -2), NULL, &t), TW_ERUNTIME, neg);
	cr_assert_eq(tw_op_ones(2, SHAPE(3, 2), NULL, &t), TW_OK);
	tw_tensor_release(&t);
	cr_assert_eq(tw_op_zeros(1, SHAPE(0), NULL, &t), TW_OK);
	tw_tensor_release(&t);
	expect_reason_kept(TW_ERUNTIME, neg);
	tw_scalar big = tw_scalar_double(1e30);
	tw_dtype i64 = TW_INT64, i32 = TW_INT32;
	const char *over = "value cannot be converted to type int64_t without "
			   "overflow";
	expect_err(tw_op_full(1, SHAPE(2), &big, &i64, &t), TW_ERUNTIME, over);
	cr_assert_eq(tw_op_full(1, SHAPE(2), &big, NULL, &t), TW_OK);
	tw_tensor_release(&t);
	expect_reason_kept(TW_ERUNTIME, over);
	tw_scalar i0 = tw_scalar_int(0), i5 = tw_scalar_int(5);
	tw_scalar im1 = tw_scalar_int(-1), i1 = tw_scalar_int(1);
	const char *sign = "upper bound and larger bound inconsistent with "
			   "step sign";
	expect_err(tw_op_arange(&i0, &i5, &im1, NULL, &t), TW_ERUNTIME, sign);
	cr_assert_eq(tw_op_arange(&i0, &i5, &i1, &i32, &t), TW_OK);
	tw_tensor_release(&t);
	expect_reason_kept(TW_ERUNTIME, sign);
	const char *randi = "\"normal_kernel_cpu\" not implemented for 'Int'";
	expect_err(tw_op_randn(1, SHAPE(4), 9, &i32, &t), TW_ETYPE, randi);
	cr_assert_eq(tw_op_randn(1, SHAPE(4), 9, NULL, &t), TW_OK);
	tw_tensor_release(&t);
	cr_assert_eq(tw_op_rand(1, SHAPE(4), 9, NULL, &t), TW_OK);
	tw_tensor_release(&t);
	expect_reason_kept(TW_ETYPE, randi);
}

/* The serving thread's bounds: checked before anything is allocated, a
 * shape whose product overflows included; without bounds, none apply. */
Test(factory, bounds)
{
	static _Atomic uint64_t refused;
	const tw_ops_limits lim = {.max_elems = 1 << 20,
				   .max_bytes = 1 << 20,
				   .refused = &refused};
	tw_tensor t;
	int64_t ovf[] = {INT64_C(1) << 62, 8}; /* product overflows int64 */
	int64_t big[] = {1 << 11, 1 << 10};    /* 2^21 elements */
	int64_t mid[] = {1 << 19};             /* 2^19 floats: 2 MiB */
	tw_ops_limits_set(&lim);
	cr_assert_eq(tw_op_zeros(2, ovf, NULL, &t), TW_ERUNTIME);
	cr_assert(strstr(tw_errmsg(TW_ERUNTIME),
			 "zeros(): a tensor of 18446744073709551615 elements "
			 "is over this worker's limit of 1048576 elements "
			 "(tw_agent_opts.max_tensor_elems)") != NULL,
		  "%s", tw_errmsg(TW_ERUNTIME));
	cr_assert_eq(tw_op_ones(2, big, NULL, &t), TW_ERUNTIME);
	cr_assert_eq(tw_op_rand(1, mid, 1, NULL, &t), TW_ERUNTIME);
	cr_assert(strstr(tw_errmsg(TW_ERUNTIME),
			 "rand(): a tensor of 2097152 bytes is over this "
			 "worker's limit of 1048576 bytes "
			 "(tw_agent_opts.max_tensor_bytes)") != NULL,
		  "%s", tw_errmsg(TW_ERUNTIME));
	tw_dtype u8 = TW_BOOL;
	cr_assert_eq(tw_op_zeros(1, mid, &u8, &t), TW_OK, "2^19 bools fit");
	tw_tensor_release(&t);
	cr_assert_eq(atomic_load(&refused), 3);
	tw_ops_limits_set(NULL);
	cr_assert_eq(tw_op_ones(1, mid, NULL, &t), TW_OK, "no bounds");
	tw_tensor_release(&t);
}
