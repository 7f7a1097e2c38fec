/* Unit tests for rpc/ops/reduce.c: sum, mean, max, min, argmax, argmin over every dtype, dim set and layout against reference loops. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops_test.h"

/* Reference sum (or mean) over the dims in mask. */
static void ref_reduce(const tw_tensor *a, const bool *mask, bool mean,
		       double *want, int64_t wn)
{
	for (int64_t i = 0; i < wn; i++)
		want[i] = 0;
	int64_t count = 1;
	for (unsigned d = 0; d < a->ndim; d++)
		if (mask[d])
			count *= a->shape[d];
	int64_t n = nel(a);
	int64_t idx[TW_TENSOR_MAX_DIMS];
	for (int64_t k = 0; k < n; k++) {
		unravel(k, a->ndim, a->shape, idx);
		int64_t o = 0;
		for (unsigned d = 0; d < a->ndim; d++)
			if (!mask[d])
				o = o * a->shape[d] + idx[d];
		want[o] += getd(a, idx);
	}
	if (mean)
		for (int64_t i = 0; i < wn; i++)
			want[i] /= (double)count;
}

static void check_reduce(const tw_tensor *a, const int64_t *dims, unsigned nd,
			 bool keepdim, bool mean)
{
	bool mask[TW_TENSOR_MAX_DIMS] = {false};
	if (nd == 0)
		for (unsigned d = 0; d < a->ndim; d++)
			mask[d] = true;
	for (unsigned i = 0; i < nd; i++)
		mask[dims[i] < 0 ? dims[i] + a->ndim : dims[i]] = true;
	int64_t shape[TW_TENSOR_MAX_DIMS];
	unsigned ond = 0;
	int64_t wn = 1;
	for (unsigned d = 0; d < a->ndim; d++) {
		if (!mask[d]) {
			shape[ond++] = a->shape[d];
			wn *= a->shape[d];
		} else if (keepdim) {
			shape[ond++] = 1;
		}
	}
	tw_tensor out;
	tw_status st = mean ? tw_op_mean(a, dims, nd, keepdim, NULL, &out)
			    : tw_op_sum(a, dims, nd, keepdim, NULL, &out);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	tw_dtype want_dt = mean                      ? (tw_dtype)a->dtype
			   : isf((tw_dtype)a->dtype) ? (tw_dtype)a->dtype
						     : TW_INT64;
	cr_assert_eq(out.dtype, want_dt);
	expect_shape(&out, ond, shape);
	double *want = malloc(sizeof(double) * (size_t)(wn > 0 ? wn : 1));
	ref_reduce(a, mask, mean, want, wn);
	for (int64_t i = 0; i < wn; i++)
		want[i] = to_dtype(want[i], want_dt);
	expect_values(&out, want, want_dt == TW_FLOAT32 ? 1e-5 : 1e-12, 1e-5,
		      mean ? "mean" : "sum");
	free(want);
	tw_tensor_release(&out);
}

Test(reduce, sum_mean_every_dtype)
{
	const int64_t d0[] = {0}, d1[] = {-1}, d02[] = {0, 2}, d21[] = {2, 1};
	struct {
		const int64_t *dims;
		unsigned n;
	} sets[] = {
		{NULL, 0}, {d0, 1}, {d1, 1}, {d02, 2}, {d21, 2},
	};
	for (int i = 0; i < 5; i++) {
		tw_tensor a0 = mk(DT5[i], 3, SHAPE(3, 4, 5), 70 + i, G_ANY);
		tw_tensor an = noncontig(&a0);
		for (int nc = 0; nc < 2; nc++) {
			const tw_tensor *a = nc ? &an : &a0;
			for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]);
			     s++) {
				for (int kd = 0; kd < 2; kd++) {
					check_reduce(a, sets[s].dims, sets[s].n,
						     kd, false);
					if (isf(DT5[i]))
						check_reduce(a, sets[s].dims,
							     sets[s].n, kd,
							     true);
				}
			}
		}
		tw_tensor_release(&a0);
		tw_tensor_release(&an);
	}
}

Test(reduce, mean_refuses_integers)
{
	const char *names[] = {"Bool", "Int", "Long"};
	for (int i = 0; i < 3; i++) {
		tw_tensor a = mk(DT5[i], 1, SHAPE(4), 1, G_ANY);
		tw_tensor out;
		char msg[200];
		snprintf(
			msg, sizeof(msg),
			"mean(): could not infer output dtype. Input dtype must be either a floating point or complex dtype. Got: %s",
			names[i]);
		expect_err(tw_op_mean(&a, NULL, 0, false, NULL, &out),
			   TW_ERUNTIME, msg);
		/* With a floating dtype it works: mean of the converted values. */
		tw_dtype f64 = TW_FLOAT64;
		cr_assert_eq(tw_op_mean(&a, NULL, 0, false, &f64, &out), TW_OK);
		cr_assert_eq(out.dtype, TW_FLOAT64);
		double s = 0;
		for (int k = 0; k < 4; k++)
			s += flat(&a, k);
		cr_assert_float_eq(flat(&out, 0), s / 4, 1e-12);
		tw_tensor_release(&out);
		tw_dtype i64 = TW_INT64;
		expect_err(
			tw_op_mean(&a, NULL, 0, false, &i64, &out), TW_ERUNTIME,
			"mean(): could not infer output dtype. Optional dtype must be either a floating point or complex dtype. Got: Long");
		tw_tensor_release(&a);
	}
}

Test(reduce, sum_dtype_and_errors)
{
	tw_tensor a = mk(TW_INT32, 2, SHAPE(3, 4), 3, G_ANY);
	tw_tensor out;
	tw_dtype f32 = TW_FLOAT32;
	cr_assert_eq(tw_op_sum(&a, NULL, 0, false, &f32, &out), TW_OK);
	cr_assert_eq(out.dtype, TW_FLOAT32);
	cr_assert_eq(out.ndim, 0);
	double s = 0;
	for (int k = 0; k < 12; k++)
		s += flat(&a, k);
	cr_assert_float_eq(flat(&out, 0), s, 1e-6);
	tw_tensor_release(&out);
	expect_err(tw_op_sum(&a, SHAPE(0, -2), 2, false, NULL, &out),
		   TW_ERUNTIME,
		   "dim 0 appears multiple times in the list of dims");
	expect_err(
		tw_op_sum(&a, SHAPE(2), 1, false, NULL, &out), TW_EVALUE,
		"Dimension out of range (expected to be in range of [-2, 1], but got 2)");
	/* Zero-dim input: dim 0 / -1 is allowed and keeps zero dims. */
	tw_tensor z = mk(TW_FLOAT64, 0, NULL, 1, G_ANY);
	cr_assert_eq(tw_op_sum(&z, SHAPE(-1), 1, true, NULL, &out), TW_OK);
	cr_assert_eq(out.ndim, 0);
	cr_assert_eq(flat(&out, 0), flat(&z, 0));
	tw_tensor_release(&out);
	tw_tensor_release(&z);
	tw_tensor_release(&a);
}

Test(reduce, empty)
{
	tw_tensor a = mk(TW_FLOAT32, 2, SHAPE(0, 3), 1, G_ANY);
	tw_tensor out;
	cr_assert_eq(tw_op_sum(&a, NULL, 0, false, NULL, &out), TW_OK);
	cr_assert_eq(out.ndim, 0);
	cr_assert_eq(flat(&out, 0), 0.0);
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_mean(&a, NULL, 0, false, NULL, &out), TW_OK);
	cr_assert(isnan(flat(&out, 0)));
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_sum(&a, SHAPE(0), 1, false, NULL, &out), TW_OK);
	expect_shape(&out, 1, SHAPE(3));
	expect_values(&out, (double[]){0, 0, 0}, 0, 0, "sum over empty dim");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_mean(&a, SHAPE(0), 1, true, NULL, &out), TW_OK);
	expect_shape(&out, 2, SHAPE(1, 3));
	cr_assert(isnan(flat(&out, 0)) && isnan(flat(&out, 2)));
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_sum(&a, SHAPE(1), 1, false, NULL, &out), TW_OK);
	expect_shape(&out, 1, SHAPE(0));
	tw_tensor_release(&out);

	expect_err(
		tw_op_max(&a, &out), TW_ERUNTIME,
		"max(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim with the 'dim' argument.");
	expect_err(
		tw_op_min(&a, &out), TW_ERUNTIME,
		"min(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim with the 'dim' argument.");
	expect_err(
		tw_op_argmax(&a, NULL, false, &out), TW_ERUNTIME,
		"argmax(): Expected reduction dim to be specified for input.numel() == 0.");
	tw_tensor v, ix;
	expect_err(tw_op_max_dim(&a, 0, false, &v, &ix), TW_EVALUE,
		   "max(): Expected reduction dim 0 to have non-zero size.");
	int64_t d0 = 0;
	expect_err(tw_op_argmax(&a, &d0, false, &out), TW_EVALUE,
		   "argmax(): Expected reduction dim 0 to have non-zero size.");
	/* Reducing a non-empty dim of an empty tensor is fine. */
	cr_assert_eq(tw_op_max_dim(&a, 1, false, &v, &ix), TW_OK);
	expect_shape(&v, 1, SHAPE(0));
	expect_shape(&ix, 1, SHAPE(0));
	tw_tensor_release(&v);
	tw_tensor_release(&ix);
	tw_tensor_release(&a);
}

/* Reference extreme along dim d (or all when d < 0): value and first index. */
static void ref_extreme(const tw_tensor *a, int d, bool is_max, double *vals,
			int64_t *idxs)
{
	int64_t outer = 1, R, inner = 1;
	if (d < 0) {
		R = nel(a);
	} else {
		R = a->shape[d];
		for (int k = 0; k < d; k++)
			outer *= a->shape[k];
		for (unsigned k = (unsigned)d + 1; k < a->ndim; k++)
			inner *= a->shape[k];
	}
	for (int64_t o = 0; o < outer; o++) {
		for (int64_t i = 0; i < inner; i++) {
			double best = 0;
			int64_t bi = -1;
			for (int64_t r = 0; r < R; r++) {
				double x = flat(a, (o * R + r) * inner + i);
				bool better = bi < 0 ||
					      (isnan(x) && !isnan(best)) ||
					      (!isnan(best) &&
					       (is_max ? x > best : x < best));
				if (better) {
					best = x;
					bi = r;
				}
			}
			vals[o * inner + i] = best;
			idxs[o * inner + i] = bi;
		}
	}
}

Test(reduce, max_min_argmax_every_dtype)
{
	for (int i = 0; i < 5; i++) {
		tw_tensor a0 = mk(DT5[i], 3, SHAPE(4, 3, 5), 80 + i, G_TIES);
		tw_tensor an = noncontig(&a0);
		for (int nc = 0; nc < 2; nc++) {
			const tw_tensor *a = nc ? &an : &a0;
			for (int is_max = 0; is_max < 2; is_max++) {
				double vals[60];
				int64_t idxs[60];
				tw_tensor out, v, ix;
				/* All dims. */
				ref_extreme(a, -1, is_max, vals, idxs);
				cr_assert_eq((is_max ? tw_op_max
						     : tw_op_min)(a, &out),
					     TW_OK);
				cr_assert_eq(out.ndim, 0);
				cr_assert_eq(out.dtype, DT5[i]);
				cr_assert_eq(flat(&out, 0), vals[0]);
				tw_tensor_release(&out);
				tw_status st = (is_max ? tw_op_argmax
						       : tw_op_argmin)(
					a, NULL, false, &out);
				if (DT5[i] == TW_BOOL) {
					expect_err(
						st, TW_ETYPE,
						is_max ? "\"argmax_cpu\" not implemented for 'Bool'"
						       : "\"argmin_cpu\" not implemented for 'Bool'");
				} else {
					cr_assert_eq(st, TW_OK);
					cr_assert_eq(out.dtype, TW_INT64);
					cr_assert_eq(out.ndim, 0);
					cr_assert_eq(flati(&out, 0), idxs[0]);
					tw_tensor_release(&out);
					cr_assert_eq((is_max ? tw_op_argmax
							     : tw_op_argmin)(
							     a, NULL, true,
							     &out),
						     TW_OK);
					expect_shape(&out, 3, SHAPE(1, 1, 1));
					tw_tensor_release(&out);
				}
				/* Each dim, keepdim or not. */
				for (int d = 0; d < 3; d++) {
					ref_extreme(a, d, is_max, vals, idxs);
					for (int kd = 0; kd < 2; kd++) {
						int64_t dim =
							d -
							(kd ? 3
							    : 0); /* negative too */
						cr_assert_eq(
							(is_max ? tw_op_max_dim
								: tw_op_min_dim)(
								a, dim, kd, &v,
								&ix),
							TW_OK);
						int64_t shape[3];
						unsigned ond = 0;
						for (int k = 0; k < 3; k++)
							if (k != d)
								shape[ond++] =
									a->shape[k];
							else if (kd)
								shape[ond++] =
									1;
						expect_shape(&v, ond, shape);
						expect_shape(&ix, ond, shape);
						cr_assert_eq(v.dtype, DT5[i]);
						cr_assert_eq(ix.dtype,
							     TW_INT64);
						int64_t n = nel(&v);
						for (int64_t k = 0; k < n;
						     k++) {
							cr_assert_eq(flat(&v,
									  k),
								     vals[k]);
							cr_assert_eq(
								flati(&ix, k),
								idxs[k],
								"dim %d elem %lld",
								d,
								(long long)k);
						}
						tw_tensor_release(&v);
						tw_tensor_release(&ix);
						if (DT5[i] == TW_BOOL)
							continue;
						cr_assert_eq(
							(is_max ? tw_op_argmax
								: tw_op_argmin)(
								a, &dim, kd,
								&out),
							TW_OK);
						expect_shape(&out, ond, shape);
						for (int64_t k = 0; k < n; k++)
							cr_assert_eq(flati(&out,
									   k),
								     idxs[k]);
						tw_tensor_release(&out);
					}
				}
			}
		}
		tw_tensor_release(&a0);
		tw_tensor_release(&an);
	}
}

Test(reduce, nan_wins)
{
	tw_tensor a = mk_vals(TW_FLOAT32, 2, SHAPE(2, 4),
			      (double[]){1, NAN, 9, NAN, -3, 2, 8, 1});
	tw_tensor out, v, ix;
	cr_assert_eq(tw_op_max(&a, &out), TW_OK);
	cr_assert(isnan(flat(&out, 0)));
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_argmin(&a, NULL, false, &out), TW_OK);
	cr_assert_eq(flati(&out, 0), 1);
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_max_dim(&a, 1, false, &v, &ix), TW_OK);
	cr_assert(isnan(flat(&v, 0)));
	cr_assert_eq(flati(&ix, 0), 1);
	cr_assert_eq(flat(&v, 1), 8);
	cr_assert_eq(flati(&ix, 1), 2);
	tw_tensor_release(&v);
	tw_tensor_release(&ix);
	tw_tensor_release(&a);
}

Test(reduce, large_sum)
{
	int64_t n = 1 << 20;
	tw_tensor a = mk(TW_FLOAT32, 1, &n, 5, G_ANY);
	double s = 0;
	const float *p = a.data;
	for (int64_t k = 0; k < n; k++)
		s += p[k];
	tw_tensor out;
	cr_assert_eq(tw_op_sum(&a, NULL, 0, false, NULL, &out), TW_OK);
	cr_assert(fabs(flat(&out, 0) - s) <= 1e-6 * fabs(s) + 1e-3,
		  "%.9g vs %.9g", flat(&out, 0), s);
	tw_tensor_release(&out);
	tw_tensor_release(&a);
}

/*
 * Every family's refusal reads back through tw_errmsg in torch's words,
 * and a success of the same family right after leaves it in place: the
 * kernels record nothing when they succeed.
 */
Test(reduce, reasons)
{
	tw_tensor a = mk(TW_FLOAT32, 2, SHAPE(3, 4), 1, G_ANY);
	tw_tensor e = mk(TW_FLOAT32, 2, SHAPE(0, 4), 2, G_ANY);
	tw_tensor bo = mk(TW_BOOL, 1, SHAPE(5), 3, G_ANY);
	tw_tensor out, v, ix;

	/* sum and mean */
	const char *twice = "dim 1 appears multiple times in the list of dims";
	expect_err(tw_op_sum(&a, SHAPE(1, -1), 2, false, NULL, &out),
		   TW_ERUNTIME, twice);
	cr_assert_eq(tw_op_sum(&a, SHAPE(1), 1, false, NULL, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ERUNTIME, twice);
	tw_dtype h = TW_FLOAT16;
	const char *meanh = "\"mean\" not implemented for 'Half'";
	expect_err(tw_op_mean(&a, NULL, 0, false, &h, &out), TW_ETYPE, meanh);
	cr_assert_eq(tw_op_mean(&a, NULL, 0, true, NULL, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ETYPE, meanh);

	/* max and min over everything, and along a dim */
	const char *empty = "min(): Expected reduction dim to be specified "
			    "for input.numel() == 0. Specify the reduction "
			    "dim with the 'dim' argument.";
	expect_err(tw_op_min(&e, &out), TW_ERUNTIME, empty);
	cr_assert_eq(tw_op_min(&a, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ERUNTIME, empty);
	const char *range = "Dimension out of range (expected to be in range "
			    "of [-2, 1], but got -3)";
	expect_err(tw_op_min_dim(&a, -3, false, &v, &ix), TW_EVALUE, range);
	cr_assert_eq(tw_op_min_dim(&a, -2, true, &v, &ix), TW_OK);
	tw_tensor_release(&v);
	tw_tensor_release(&ix);
	expect_reason_kept(TW_EVALUE, range);

	/* argmax and argmin */
	const char *argb = "\"argmin_cpu\" not implemented for 'Bool'";
	expect_err(tw_op_argmin(&bo, NULL, false, &out), TW_ETYPE, argb);
	cr_assert_eq(tw_op_argmin(&a, NULL, false, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ETYPE, argb);

	tw_tensor_release(&a);
	tw_tensor_release(&e);
	tw_tensor_release(&bo);
}
