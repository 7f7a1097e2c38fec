/* Unit tests for rpc/ops/linalg.c: mm and matmul (dot, mv, batched, broadcast) on every dtype against a reference product, and torch's refusals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops_test.h"

/* Reference matmul with torch's semantics (shapes from the test). */
static void check_matmul(const tw_tensor *a, const tw_tensor *b,
			 const tw_tensor *out, unsigned ond,
			 const int64_t *oshape)
{
	expect_shape(out, ond, oshape);
	cr_assert_eq(out->dtype, a->dtype);
	/* View a as (..., m, k) and b as (..., k, n). */
	bool av = a->ndim == 1, bv = b->ndim == 1;
	int64_t k = a->shape[a->ndim - 1];
	int64_t m = av ? 1 : a->shape[a->ndim - 2];
	int64_t n = bv ? 1 : b->shape[b->ndim - 1];
	unsigned nba = av ? 0 : a->ndim - 2, nbb = bv ? 0 : b->ndim - 2;
	unsigned nb = nba > nbb ? nba : nbb;
	int64_t bshape[TW_TENSOR_MAX_DIMS];
	int64_t batch = 1;
	for (unsigned i = 0; i < nb; i++) {
		int64_t x = i < nb - nba ? 1 : a->shape[i - (nb - nba)];
		int64_t y = i < nb - nbb ? 1 : b->shape[i - (nb - nbb)];
		bshape[i] = x == 1 ? y : x;
		batch *= bshape[i];
	}
	double eps = a->dtype == TW_FLOAT32   ? 6e-8
		     : a->dtype == TW_FLOAT64 ? 1.2e-16
					      : 0;
	int64_t bidx[TW_TENSOR_MAX_DIMS], ia[TW_TENSOR_MAX_DIMS],
		ib[TW_TENSOR_MAX_DIMS];
	int64_t o = 0;
	for (int64_t bt = 0; bt < batch; bt++) {
		unravel(bt, nb, bshape, bidx);
		for (unsigned i = 0; i < nba; i++)
			ia[i] = a->shape[i] == 1 ? 0 : bidx[i + nb - nba];
		for (unsigned i = 0; i < nbb; i++)
			ib[i] = b->shape[i] == 1 ? 0 : bidx[i + nb - nbb];
		for (int64_t i = 0; i < m; i++) {
			for (int64_t j = 0; j < n; j++, o++) {
				double s = 0, sabs = 0;
				int64_t is = 0; /* exact for ints (wrapping) */
				for (int64_t p = 0; p < k; p++) {
					if (av) {
						ia[0] = p;
					} else {
						ia[nba] = i;
						ia[nba + 1] = p;
					}
					if (bv) {
						ib[0] = p;
					} else {
						ib[nbb] = p;
						ib[nbb + 1] = j;
					}
					double x = getd(a, ia), y = getd(b, ib);
					s += x * y;
					sabs += fabs(x * y);
					if (!isf((tw_dtype)a->dtype))
						is = (int64_t)((uint64_t)is +
							       (uint64_t)geti(
								       a, ia) *
								       (uint64_t)geti(
									       b,
									       ib));
				}
				if (isf((tw_dtype)a->dtype)) {
					double g = flat(out, o);
					double tol = 2 * (double)(k + 1) * eps *
							     sabs +
						     1e-30;
					cr_assert(
						fabs(g - s) <= tol,
						"matmul elem %lld: %.9g vs %.9g",
						(long long)o, g, s);
				} else if (a->dtype == TW_INT32) {
					cr_assert_eq(flati(out, o),
						     (int32_t)(uint32_t)is);
				} else {
					cr_assert_eq(flati(out, o), is);
				}
			}
		}
	}
}

static void mm_case(tw_dtype dt, unsigned na, const int64_t *sa, unsigned nb,
		    const int64_t *sb, unsigned ond, const int64_t *oshape,
		    bool transposed_inputs)
{
	tw_tensor a = mk(dt, na, sa, 90 + na, G_ANY);
	tw_tensor b = mk(dt, nb, sb, 91 + nb, G_ANY);
	if (transposed_inputs) {
		tw_tensor an = noncontig(&a), bn = noncontig(&b);
		tw_tensor_release(&a);
		tw_tensor_release(&b);
		a = an;
		b = bn;
	}
	tw_tensor out;
	cr_assert_eq(tw_op_matmul(&a, &b, &out), TW_OK, "%s", tw_err_last());
	check_matmul(&a, &b, &out, ond, oshape);
	tw_tensor_release(&out);
	if (na == 2 && nb == 2) {
		cr_assert_eq(tw_op_mm(&a, &b, &out), TW_OK);
		check_matmul(&a, &b, &out, ond, oshape);
		tw_tensor_release(&out);
	}
	tw_tensor_release(&a);
	tw_tensor_release(&b);
}

Test(linalg, matmul_shapes_every_dtype)
{
	for (int i = 1; i < 5; i++) {
		tw_dtype dt = DT5[i];
		for (int tr = 0; tr < 2; tr++) {
			mm_case(dt, 1, SHAPE(7), 1, SHAPE(7), 0, NULL, tr);
			mm_case(dt, 2, SHAPE(5, 7), 1, SHAPE(7), 1, SHAPE(5),
				tr);
			mm_case(dt, 1, SHAPE(7), 2, SHAPE(7, 3), 1, SHAPE(3),
				tr);
			mm_case(dt, 2, SHAPE(5, 7), 2, SHAPE(7, 3), 2,
				SHAPE(5, 3), tr);
			mm_case(dt, 2, SHAPE(13, 300), 2, SHAPE(300, 37), 2,
				SHAPE(13, 37), tr);
			mm_case(dt, 3, SHAPE(2, 5, 7), 2, SHAPE(7, 3), 3,
				SHAPE(2, 5, 3), tr);
			mm_case(dt, 2, SHAPE(5, 7), 3, SHAPE(2, 7, 3), 3,
				SHAPE(2, 5, 3), tr);
			mm_case(dt, 3, SHAPE(2, 5, 7), 1, SHAPE(7), 2,
				SHAPE(2, 5), tr);
			mm_case(dt, 1, SHAPE(7), 3, SHAPE(2, 7, 3), 2,
				SHAPE(2, 3), tr);
			mm_case(dt, 4, SHAPE(2, 1, 5, 7), 3, SHAPE(3, 7, 4), 4,
				SHAPE(2, 3, 5, 4), tr);
			/* Empty shapes. */
			mm_case(dt, 2, SHAPE(0, 7), 2, SHAPE(7, 3), 2,
				SHAPE(0, 3), tr);
			mm_case(dt, 2, SHAPE(5, 0), 2, SHAPE(0, 3), 2,
				SHAPE(5, 3), tr);
			mm_case(dt, 3, SHAPE(0, 5, 7), 2, SHAPE(7, 3), 3,
				SHAPE(0, 5, 3), tr);
		}
	}
}

Test(linalg, mm_large_256)
{
	mm_case(TW_FLOAT32, 2, SHAPE(256, 256), 2, SHAPE(256, 256), 2,
		SHAPE(256, 256), false);
	mm_case(TW_FLOAT64, 2, SHAPE(13, 260), 2, SHAPE(260, 1030), 2,
		SHAPE(13, 1030), true);
	mm_case(TW_INT64, 2, SHAPE(97, 300), 2, SHAPE(300, 45), 2,
		SHAPE(97, 45), false);
}

Test(linalg, broadcast_stride0_operand)
{
	/* b: a (4, 3) matrix whose rows are all one 3-vector (stride 0). */
	float row[3] = {1.5f, -2, 0.25f};
	tw_tensor b;
	cr_assert_eq(tw_tensor_init(&b, TW_FLOAT32, 2, SHAPE(4, 3), SHAPE(0, 1),
				    row, NULL),
		     TW_OK);
	tw_tensor a = mk(TW_FLOAT32, 2, SHAPE(2, 4), 1, G_ANY);
	tw_tensor out;
	cr_assert_eq(tw_op_mm(&a, &b, &out), TW_OK);
	check_matmul(&a, &b, &out, 2, SHAPE(2, 3));
	tw_tensor_release(&out);
	tw_tensor_release(&a);
}

Test(linalg, errors)
{
	tw_tensor a = mk(TW_FLOAT32, 2, SHAPE(2, 3), 1, G_ANY);
	tw_tensor b = mk(TW_FLOAT32, 2, SHAPE(4, 5), 1, G_ANY);
	tw_tensor d = mk(TW_FLOAT64, 2, SHAPE(3, 5), 1, G_ANY);
	tw_tensor v = mk(TW_FLOAT32, 1, SHAPE(3), 1, G_ANY);
	tw_tensor v4 = mk(TW_FLOAT32, 1, SHAPE(4), 1, G_ANY);
	tw_tensor vd = mk(TW_FLOAT64, 1, SHAPE(3), 1, G_ANY);
	tw_tensor z = mk(TW_FLOAT32, 0, NULL, 1, G_ANY);
	tw_tensor bo = mk(TW_BOOL, 2, SHAPE(3, 3), 1, G_ANY);
	tw_tensor b3 = mk(TW_FLOAT32, 3, SHAPE(2, 4, 5), 1, G_ANY);
	tw_tensor a3 = mk(TW_FLOAT32, 3, SHAPE(3, 2, 3), 1, G_ANY);
	tw_tensor out;
	expect_err(tw_op_mm(&a, &b, &out), TW_ERUNTIME,
		   "mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)");
	expect_err(tw_op_matmul(&a, &b, &out), TW_ERUNTIME,
		   "mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)");
	expect_err(tw_op_mm(&v, &b, &out), TW_ERUNTIME,
		   "self must be a matrix");
	expect_err(tw_op_mm(&a, &v, &out), TW_ERUNTIME,
		   "mat2 must be a matrix");
	expect_err(
		tw_op_mm(&a, &d, &out), TW_ERUNTIME,
		"expected mat1 and mat2 to have the same dtype, but got: float != double");
	expect_err(
		tw_op_matmul(&v, &vd, &out), TW_ERUNTIME,
		"dot : expected both vectors to have same dtype, but found Float and Double");
	expect_err(
		tw_op_matmul(&v, &v4, &out), TW_ERUNTIME,
		"inconsistent tensor size, expected tensor [3] and src [4] to have the same number of elements, but got 3 and 4 elements respectively");
	expect_err(tw_op_matmul(&a, &v4, &out), TW_ERUNTIME,
		   "size mismatch, got input (2), mat (2x3), vec (4)");
	expect_err(
		tw_op_matmul(&z, &v, &out), TW_ERUNTIME,
		"both arguments to matmul need to be at least 1D, but they are 0D and 1D");
	expect_err(tw_op_mm(&bo, &bo, &out), TW_ETYPE,
		   "\"addmm_impl_cpu_\" not implemented for 'Bool'");
	expect_err(
		tw_op_matmul(&a, &b3, &out), TW_ERUNTIME,
		"Expected size for first two dimensions of batch2 tensor to be: [2, 3] but got: [2, 4].");
	expect_err(
		tw_op_matmul(&a3, &b3, &out), TW_ERUNTIME,
		"The size of tensor a (3) must match the size of tensor b (2) at non-singleton dimension 0");
	tw_tensor *all[] = {&a, &b, &d, &v, &v4, &vd, &z, &bo, &b3, &a3};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		tw_tensor_release(all[i]);
}

/*
 * mm's and matmul's refusals read back through tw_errmsg in torch's
 * words, and a product right after leaves them in place: the kernels
 * record nothing when they succeed.
 */
Test(linalg, reasons)
{
	tw_tensor a = mk(TW_FLOAT32, 2, SHAPE(2, 3), 1, G_ANY);
	tw_tensor b = mk(TW_FLOAT32, 2, SHAPE(3, 2), 2, G_ANY);
	tw_tensor d = mk(TW_FLOAT64, 2, SHAPE(3, 2), 3, G_ANY);
	tw_tensor v = mk(TW_FLOAT32, 1, SHAPE(3), 4, G_ANY);
	tw_tensor z = mk(TW_FLOAT32, 0, NULL, 5, G_ANY);
	tw_tensor out;

	const char *dt = "expected mat1 and mat2 to have the same dtype, but "
			 "got: float != double";
	expect_err(tw_op_mm(&a, &d, &out), TW_ERUNTIME, dt);
	cr_assert_eq(tw_op_mm(&a, &b, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ERUNTIME, dt);
	const char *zd = "both arguments to matmul need to be at least 1D, "
			 "but they are 1D and 0D";
	expect_err(tw_op_matmul(&v, &z, &out), TW_ERUNTIME, zd);
	cr_assert_eq(tw_op_matmul(&v, &v, &out), TW_OK);
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_matmul(&a, &v, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ERUNTIME, zd);

	tw_tensor *all[] = {&a, &b, &d, &v, &z};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		tw_tensor_release(all[i]);
}
