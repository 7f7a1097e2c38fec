/* Unit tests for rpc/ops/shape.c: t, transpose, view and reshape (views when strides allow), cat, stack, clone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops_test.h"

static void expect_same_values(const tw_tensor *got, const tw_tensor *want)
{
	int64_t n = nel(want);
	cr_assert_eq(nel(got), n);
	for (int64_t k = 0; k < n; k++)
		cr_assert_eq(flat(got, k), flat(want, k), "element %lld",
			     (long long)k);
}

Test(shape, t_and_transpose)
{
	tw_tensor a = mk(TW_INT64, 2, SHAPE(3, 4), 1, G_ANY);
	tw_tensor t;
	cr_assert_eq(tw_op_t(&a, &t), TW_OK);
	expect_shape(&t, 2, SHAPE(4, 3));
	cr_assert_eq(t.data, a.data); /* a view */
	cr_assert_eq(t.buf, a.buf);
	for (int64_t i = 0; i < 3; i++)
		for (int64_t j = 0; j < 4; j++)
			cr_assert_eq(getd(&t, (int64_t[]){j, i}),
				     getd(&a, (int64_t[]){i, j}));
	tw_tensor_release(&a); /* the view keeps the bytes alive */
	cr_assert_eq(getd(&t, (int64_t[]){0, 0}), getd(&t, (int64_t[]){0, 0}));
	tw_tensor_release(&t);

	tw_tensor v = mk(TW_FLOAT32, 1, SHAPE(5), 1, G_ANY);
	cr_assert_eq(tw_op_t(&v, &t), TW_OK);
	expect_shape(&t, 1, SHAPE(5));
	tw_tensor_release(&t);
	tw_tensor c = mk(TW_FLOAT32, 3, SHAPE(2, 3, 4), 1, G_ANY);
	expect_err(tw_op_t(&c, &t), TW_ERUNTIME,
		   "t() expects a tensor with <= 2 dimensions, but self is 3D");
	cr_assert_eq(tw_op_transpose(&c, 0, -1, &t), TW_OK);
	expect_shape(&t, 3, SHAPE(4, 3, 2));
	cr_assert_eq(getd(&t, (int64_t[]){3, 1, 0}),
		     getd(&c, (int64_t[]){0, 1, 3}));
	tw_tensor_release(&t);
	expect_err(
		tw_op_transpose(&c, 0, 3, &t), TW_EVALUE,
		"Dimension out of range (expected to be in range of [-3, 2], but got 3)");
	tw_tensor z = mk(TW_FLOAT32, 0, NULL, 1, G_ANY);
	cr_assert_eq(tw_op_transpose(&z, 0, -1, &t), TW_OK);
	cr_assert_eq(t.ndim, 0);
	tw_tensor_release(&t);
	tw_tensor_release(&z);
	tw_tensor_release(&c);
	tw_tensor_release(&v);
}

Test(shape, view_and_reshape)
{
	tw_tensor a = mk(TW_FLOAT64, 2, SHAPE(4, 6), 2, G_ANY);
	tw_tensor v, r, t;
	cr_assert_eq(tw_op_view(&a, SHAPE(2, -1, 3), 3, &v), TW_OK);
	expect_shape(&v, 3, SHAPE(2, 4, 3));
	cr_assert_eq(v.data, a.data);
	expect_same_values(&v, &a);
	tw_tensor_release(&v);
	/* A transposed tensor: merging its dims is not a view... */
	cr_assert_eq(tw_op_t(&a, &t), TW_OK);
	expect_err(
		tw_op_view(&t, SHAPE(24), 1, &v), TW_ERUNTIME,
		"view size is not compatible with input tensor's size and stride (at least one dimension spans across two contiguous subspaces). Use .reshape(...) instead.");
	/* ...but splitting a dim is. */
	cr_assert_eq(tw_op_view(&t, SHAPE(2, 3, 4), 3, &v), TW_OK);
	cr_assert_eq(v.data, a.data);
	expect_same_values(&v, &t);
	tw_tensor_release(&v);
	/* reshape copies only when it must. */
	cr_assert_eq(tw_op_reshape(&t, SHAPE(24), 1, &r), TW_OK);
	cr_assert_neq(r.data, a.data);
	cr_assert(tw_tensor_is_contiguous(&r));
	expect_same_values(&r, &t);
	tw_tensor_release(&r);
	cr_assert_eq(tw_op_reshape(&a, SHAPE(-1), 1, &r), TW_OK);
	cr_assert_eq(r.data, a.data);
	tw_tensor_release(&r);
	/* Size-1 dims may be added and dropped anywhere. */
	cr_assert_eq(tw_op_view(&t, SHAPE(1, 6, 1, 4, 1), 5, &v), TW_OK);
	expect_same_values(&v, &t);
	tw_tensor_release(&v);
	/* Errors. */
	expect_err(tw_op_view(&a, SHAPE(5, -1), 2, &v), TW_ERUNTIME,
		   "shape '[5, -1]' is invalid for input of size 24");
	expect_err(tw_op_view(&a, SHAPE(-1, -1), 2, &v), TW_ERUNTIME,
		   "only one dimension can be inferred");
	expect_err(tw_op_reshape(&a, SHAPE(2, -2), 2, &v), TW_ERUNTIME,
		   "invalid shape dimension -2");
	expect_err(tw_op_reshape(&a, SHAPE(5, 5), 2, &v), TW_ERUNTIME,
		   "shape '[5, 5]' is invalid for input of size 24");
	/* 0-dim <-> (1,) and empties. */
	tw_tensor z = mk(TW_INT32, 0, NULL, 1, G_ANY);
	cr_assert_eq(tw_op_view(&z, SHAPE(1, 1), 2, &v), TW_OK);
	expect_shape(&v, 2, SHAPE(1, 1));
	cr_assert_eq(tw_op_view(&v, NULL, 0, &r), TW_OK);
	cr_assert_eq(r.ndim, 0);
	tw_tensor_release(&r);
	tw_tensor_release(&v);
	tw_tensor e = mk(TW_FLOAT32, 2, SHAPE(0, 4), 1, G_ANY);
	cr_assert_eq(tw_op_reshape(&e, SHAPE(4, 0, 2), 3, &r), TW_OK);
	expect_shape(&r, 3, SHAPE(4, 0, 2));
	tw_tensor_release(&r);
	expect_err(
		tw_op_reshape(&e, SHAPE(0, -1), 2, &r), TW_ERUNTIME,
		"cannot reshape tensor of 0 elements into shape [0, -1] because the unspecified dimension size -1 can be any value and is ambiguous");
	tw_tensor_release(&e);
	tw_tensor_release(&z);
	tw_tensor_release(&t);
	tw_tensor_release(&a);
}

Test(shape, cat)
{
	tw_tensor ts[3];
	ts[0] = mk(TW_INT32, 2, SHAPE(2, 3), 1, G_ANY);
	ts[1] = mk(TW_INT64, 2, SHAPE(2, 1), 2, G_ANY);
	tw_tensor tmp = mk(TW_FLOAT32, 2, SHAPE(4, 2), 3, G_ANY);
	ts[2] = noncontig(&tmp); /* (4, 2) laid out transposed */
	tw_tensor_release(&tmp);
	tw_tensor tv;
	cr_assert_eq(tw_op_t(&ts[2], &tv), TW_OK); /* (2, 4) */
	tw_tensor_release(&ts[2]);
	ts[2] = tv;
	tw_tensor out;
	cr_assert_eq(tw_op_cat(ts, 3, -1, &out), TW_OK);
	cr_assert_eq(out.dtype, TW_FLOAT32);
	expect_shape(&out, 2, SHAPE(2, 8));
	for (int64_t i = 0; i < 2; i++) {
		int64_t j = 0;
		for (int t = 0; t < 3; t++)
			for (int64_t c = 0; c < ts[t].shape[1]; c++, j++)
				cr_assert_eq(
					getd(&out, (int64_t[]){i, j}),
					(double)(float)getd(&ts[t],
							    (int64_t[]){i, c}));
	}
	tw_tensor_release(&out);
	/* Along dim 0 with a legacy empty 1-D tensor skipped. */
	tw_tensor e = mk(TW_FLOAT64, 1, SHAPE(0), 1, G_ANY);
	tw_tensor two[3] = {ts[0], e, ts[0]};
	cr_assert_eq(tw_op_cat(two, 3, 0, &out), TW_OK);
	cr_assert_eq(out.dtype, TW_FLOAT64); /* still promotes */
	expect_shape(&out, 2, SHAPE(4, 3));
	for (int64_t k = 0; k < 12; k++)
		cr_assert_eq(flat(&out, k), flat(&ts[0], k % 6));
	tw_tensor_release(&out);
	/* Errors. */
	expect_err(tw_op_cat(ts, 0, 0, &out), TW_ERUNTIME,
		   "torch.cat(): expected a non-empty list of Tensors");
	expect_err(
		tw_op_cat(ts, 3, 0, &out), TW_ERUNTIME,
		"Sizes of tensors must match except in dimension 0. Expected size 3 but got size 1 for tensor number 1 in the list.");
	tw_tensor z = mk(TW_INT32, 0, NULL, 1, G_ANY);
	tw_tensor zz[2] = {ts[0], z};
	expect_err(
		tw_op_cat(zz, 2, 0, &out), TW_ERUNTIME,
		"zero-dimensional tensor (at position 1) cannot be concatenated");
	tw_tensor three = mk(TW_INT32, 3, SHAPE(2, 3, 1), 1, G_ANY);
	tw_tensor mix[2] = {ts[0], three};
	expect_err(tw_op_cat(mix, 2, 0, &out), TW_ERUNTIME,
		   "Tensors must have same number of dimensions: got 2 and 3");
	expect_err(
		tw_op_cat(ts, 3, 2, &out), TW_EVALUE,
		"Dimension out of range (expected to be in range of [-2, 1], but got 2)");
	tw_tensor_release(&three);
	tw_tensor_release(&z);
	tw_tensor_release(&e);
	for (int i = 0; i < 3; i++)
		tw_tensor_release(&ts[i]);
}

Test(shape, stack)
{
	tw_tensor ts[3];
	for (int i = 0; i < 3; i++)
		ts[i] = mk(i == 1 ? TW_BOOL : TW_INT32, 2, SHAPE(2, 3), 10 + i,
			   G_ANY);
	for (int64_t dim = -3; dim < 3; dim++) {
		tw_tensor out;
		cr_assert_eq(tw_op_stack(ts, 3, dim, &out), TW_OK);
		cr_assert_eq(out.dtype, TW_INT32);
		unsigned d = (unsigned)(dim < 0 ? dim + 3 : dim);
		int64_t want[3];
		for (unsigned k = 0, j = 0; k < 3; k++)
			want[k] = k == d ? 3 : ts[0].shape[j++];
		expect_shape(&out, 3, want);
		for (int t = 0; t < 3; t++)
			for (int64_t i = 0; i < 2; i++)
				for (int64_t j = 0; j < 3; j++) {
					int64_t oi[3], s[2] = {i, j};
					for (unsigned k = 0, q = 0; k < 3; k++)
						oi[k] = k == d ? t : s[q++];
					cr_assert_eq(getd(&out, oi),
						     getd(&ts[t], s));
				}
		tw_tensor_release(&out);
	}
	tw_tensor out;
	expect_err(tw_op_stack(ts, 0, 0, &out), TW_ERUNTIME,
		   "stack expects a non-empty TensorList");
	tw_tensor other = mk(TW_INT32, 2, SHAPE(2, 4), 1, G_ANY);
	tw_tensor bad[2] = {ts[0], other};
	expect_err(
		tw_op_stack(bad, 2, 0, &out), TW_ERUNTIME,
		"stack expects each tensor to be equal size, but got [2, 3] at entry 0 and [2, 4] at entry 1");
	expect_err(
		tw_op_stack(ts, 3, 3, &out), TW_EVALUE,
		"Dimension out of range (expected to be in range of [-3, 2], but got 3)");
	/* Zero-dim tensors stack into a vector. */
	tw_tensor zs[2] = {mk(TW_FLOAT32, 0, NULL, 1, G_ANY),
			   mk(TW_FLOAT32, 0, NULL, 2, G_ANY)};
	cr_assert_eq(tw_op_stack(zs, 2, 0, &out), TW_OK);
	expect_shape(&out, 1, SHAPE(2));
	cr_assert_eq(flat(&out, 1), flat(&zs[1], 0));
	tw_tensor_release(&out);
	tw_tensor_release(&zs[0]);
	tw_tensor_release(&zs[1]);
	tw_tensor_release(&other);
	for (int i = 0; i < 3; i++)
		tw_tensor_release(&ts[i]);
}

Test(shape, clone)
{
	tw_tensor a = mk(TW_INT64, 3, SHAPE(2, 3, 4), 1, G_ANY);
	tw_tensor n = noncontig(&a);
	tw_tensor c;
	cr_assert_eq(tw_op_clone(&n, &c), TW_OK);
	cr_assert(tw_tensor_is_contiguous(&c));
	cr_assert_neq(c.data, n.data);
	expect_same_values(&c, &a);
	tw_tensor_release(&c);
	/* Any dtype: clone is a copy. */
	tw_tensor h;
	cr_assert_eq(tw_tensor_zeros(&h, TW_FLOAT16, 1, SHAPE(3)), TW_OK);
	cr_assert_eq(tw_op_clone(&h, &c), TW_OK);
	cr_assert_eq(c.dtype, TW_FLOAT16);
	tw_tensor_release(&c);
	tw_tensor_release(&h);
	tw_tensor_release(&n);
	tw_tensor_release(&a);
}

/*
 * Every shape op's refusal reads back through tw_errmsg in torch's words,
 * and a success of the same op right after (a view costs no more than
 * its bookkeeping) leaves it in place: the ops record nothing when they
 * succeed.
 */
Test(shape, reasons)
{
	tw_tensor a = mk(TW_INT32, 2, SHAPE(2, 3), 1, G_ANY);
	tw_tensor c = mk(TW_INT32, 3, SHAPE(2, 3, 4), 2, G_ANY);
	tw_tensor out, t;

	const char *t3 = "t() expects a tensor with <= 2 dimensions, but "
			 "self is 3D";
	expect_err(tw_op_t(&c, &out), TW_ERUNTIME, t3);
	cr_assert_eq(tw_op_t(&a, &t), TW_OK);
	expect_reason_kept(TW_ERUNTIME, t3);
	const char *range = "Dimension out of range (expected to be in range "
			    "of [-3, 2], but got -4)";
	expect_err(tw_op_transpose(&c, -4, 0, &out), TW_EVALUE, range);
	cr_assert_eq(tw_op_transpose(&c, -3, 2, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_EVALUE, range);
	const char *span = "view size is not compatible with input tensor's "
			   "size and stride (at least one dimension spans "
			   "across two contiguous subspaces). Use "
			   ".reshape(...) instead.";
	expect_err(tw_op_view(&t, SHAPE(6), 1, &out), TW_ERUNTIME, span);
	cr_assert_eq(tw_op_view(&a, SHAPE(6), 1, &out), TW_OK);
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_reshape(&t, SHAPE(6), 1, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ERUNTIME, span);
	const char *bad = "shape '[4, -1]' is invalid for input of size 6";
	expect_err(tw_op_reshape(&a, SHAPE(4, -1), 2, &out), TW_ERUNTIME, bad);
	cr_assert_eq(tw_op_reshape(&a, SHAPE(3, -1), 2, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ERUNTIME, bad);

	tw_tensor pair[2] = {a, c};
	const char *nd = "Tensors must have same number of dimensions: got 2 "
			 "and 3";
	expect_err(tw_op_cat(pair, 2, 0, &out), TW_ERUNTIME, nd);
	tw_tensor same[2] = {a, a};
	cr_assert_eq(tw_op_cat(same, 2, 1, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ERUNTIME, nd);
	const char *eq = "stack expects each tensor to be equal size, but got "
			 "[2, 3] at entry 0 and [2, 3, 4] at entry 1";
	expect_err(tw_op_stack(pair, 2, 0, &out), TW_ERUNTIME, eq);
	cr_assert_eq(tw_op_stack(same, 2, -1, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ERUNTIME, eq);
	/* clone refuses only what is not a tensor: its reason is ours. */
	const char *null = "clone(): NULL tensor";
	expect_err(tw_op_clone(NULL, &out), TW_EINVAL, null);
	cr_assert_eq(tw_op_clone(&t, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_EINVAL, null);

	tw_tensor_release(&t);
	tw_tensor_release(&a);
	tw_tensor_release(&c);
}
