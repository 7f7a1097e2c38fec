/* Unit tests for rpc/ops/promote.c, the kernels' shared machinery: type promotion, broadcasting, dims, input checks, the N-d loop. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops_test.h"

Test(promote, promote_types_table)
{
	cr_assert_eq(tw_ops_promote_types(TW_UINT8, TW_INT8), TW_INT16);
	cr_assert_eq(tw_ops_promote_types(TW_INT8, TW_UINT8), TW_INT16);
	cr_assert_eq(tw_ops_promote_types(TW_UINT8, TW_INT32), TW_INT32);
	cr_assert_eq(tw_ops_promote_types(TW_FLOAT16, TW_BFLOAT16), TW_FLOAT32);
	cr_assert_eq(tw_ops_promote_types(TW_INT64, TW_FLOAT16), TW_FLOAT16);
	cr_assert_eq(tw_ops_promote_types(TW_BOOL, TW_UINT8), TW_UINT8);
	for (int i = 0; i < 5; i++)
		for (int j = 0; j < 5; j++)
			cr_assert_eq(tw_ops_promote_types(DT5[i], DT5[j]),
				     rank_promote(DT5[i], DT5[j]));
}

Test(promote, result_type_tiers)
{
	tw_tensor i32 = mk(TW_INT32, 1, SHAPE(3), 1, G_ANY);
	tw_tensor f32 = mk(TW_FLOAT32, 1, SHAPE(3), 1, G_ANY);
	tw_tensor b1 = mk(TW_BOOL, 1, SHAPE(3), 1, G_ANY);
	tw_tensor z64 = mk(TW_FLOAT64, 0, NULL, 1, G_ANY);
	tw_tensor zi64 = mk(TW_INT64, 0, NULL, 1, G_ANY);
	tw_tensor zi32 = mk(TW_INT32, 0, NULL, 1, G_ANY);
	tw_scalar s5 = tw_scalar_int(5), s25 = tw_scalar_double(2.5);
	tw_scalar st = tw_scalar_bool(true);

	cr_assert_eq(tw_ops_result_type(&i32, &z64), TW_FLOAT64);
	cr_assert_eq(tw_ops_result_type(&f32, &z64), TW_FLOAT32);
	cr_assert_eq(tw_ops_result_type(&i32, &zi64), TW_INT32);
	cr_assert_eq(tw_ops_result_type(&b1, &zi64), TW_INT64);
	cr_assert_eq(tw_ops_result_type(&zi32, &zi64), TW_INT64);
	cr_assert_eq(tw_ops_result_type(&zi32, &f32), TW_FLOAT32);
	cr_assert_eq(tw_ops_result_type_scalar(&i32, &s5), TW_INT32);
	cr_assert_eq(tw_ops_result_type_scalar(&i32, &s25), TW_FLOAT32);
	cr_assert_eq(tw_ops_result_type_scalar(&f32, &s25), TW_FLOAT32);
	cr_assert_eq(tw_ops_result_type_scalar(&z64, &s25), TW_FLOAT64);
	cr_assert_eq(tw_ops_result_type_scalar(&zi32, &s25), TW_FLOAT32);
	cr_assert_eq(tw_ops_result_type_scalar(&b1, &s5), TW_INT64);
	cr_assert_eq(tw_ops_result_type_scalar(&b1, &st), TW_BOOL);
	cr_assert_eq(tw_ops_result_type_scalar(&b1, &s25), TW_FLOAT32);
	tw_tensor *all[] = {&i32, &f32, &b1, &z64, &zi64, &zi32};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		tw_tensor_release(all[i]);
}

Test(promote, broadcast_shapes_and_dims)
{
	unsigned nd;
	int64_t out[TW_TENSOR_MAX_DIMS];
	cr_assert_eq(tw_ops_broadcast_shapes(2, SHAPE(3, 1), 2, SHAPE(1, 4),
					     &nd, out),
		     TW_OK);
	cr_assert(nd == 2 && out[0] == 3 && out[1] == 4);
	cr_assert_eq(tw_ops_broadcast_shapes(3, SHAPE(2, 3, 4), 1, SHAPE(4),
					     &nd, out),
		     TW_OK);
	cr_assert(nd == 3 && out[0] == 2 && out[1] == 3 && out[2] == 4);
	cr_assert_eq(tw_ops_broadcast_shapes(0, NULL, 2, SHAPE(0, 5), &nd, out),
		     TW_OK);
	cr_assert(nd == 2 && out[0] == 0 && out[1] == 5);
	expect_err(
		tw_ops_broadcast_shapes(2, SHAPE(2, 3), 2, SHAPE(2, 4), &nd,
					out),
		TW_ERUNTIME,
		"The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1");
	unsigned d;
	cr_assert_eq(tw_ops_wrap_dim(-1, 3, &d), TW_OK);
	cr_assert_eq(d, 2);
	cr_assert_eq(tw_ops_wrap_dim(-1, 0, &d), TW_OK);
	cr_assert_eq(d, 0);
	expect_err(
		tw_ops_wrap_dim(2, 2, &d), TW_EVALUE,
		"Dimension out of range (expected to be in range of [-2, 1], but got 2)");
}

/* ---- the N-d loop and input checks, through the ops -------------------- */

Test(edge, eight_dims)
{
	tw_tensor a = mk(TW_FLOAT64, 8, SHAPE(2, 1, 2, 1, 2, 1, 2, 1), 1,
			 G_ANY);
	tw_tensor b = mk(TW_INT32, 8, SHAPE(1, 2, 1, 2, 1, 2, 1, 3), 2, G_ANY);
	tw_tensor out;
	cr_assert_eq(tw_op_add(&a, &b, NULL, &out), TW_OK);
	check_bin(R_ADD, &a, &b, 1, TW_FLOAT64, &out, "8-d add");
	tw_tensor_release(&out);
	tw_tensor an = noncontig(&a);
	cr_assert_eq(tw_op_mul(&an, &b, &out), TW_OK);
	check_bin(R_MUL, &an, &b, 1, TW_FLOAT64, &out, "8-d mul noncontig");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_sum(&b, SHAPE(1, 3, 7), 3, true, NULL, &out), TW_OK);
	expect_shape(&out, 8, SHAPE(1, 1, 1, 1, 1, 2, 1, 1));
	tw_tensor_release(&out);
	/* Broadcasting past 8 dims is refused, not overrun. */
	tw_tensor_release(&an);
	tw_tensor_release(&a);
	tw_tensor_release(&b);
}

Test(errors, malformed_and_unsupported)
{
	tw_tensor a = mk(TW_FLOAT32, 1, SHAPE(3), 1, G_ANY);
	tw_tensor out;
	cr_assert_eq(tw_op_add(NULL, &a, NULL, &out), TW_EINVAL);
	cr_assert_eq(tw_op_add(&a, &a, NULL, NULL), TW_EINVAL);
	tw_tensor bad = a;
	bad.ndim = 9;
	cr_assert_eq(tw_op_neg(&bad, &out), TW_EINVAL);
	bad = a;
	bad.strides[0] = -1;
	cr_assert_eq(tw_op_sum(&bad, NULL, 0, false, NULL, &out), TW_EINVAL);
	tw_tensor h;
	cr_assert_eq(tw_tensor_zeros(&h, TW_FLOAT16, 1, SHAPE(3)), TW_OK);
	expect_err(tw_op_add(&a, &h, NULL, &out), TW_ETYPE,
		   "\"add\" not implemented for 'Half'");
	expect_err(tw_op_mm(&h, &h, &out), TW_ETYPE, NULL);
	/* No buffer from the caller: the reason is the thread's... */
	cr_assert_eq(tw_op_add(&a, &h, NULL, &out), TW_ETYPE);
	/* ...and whole, never cut to a size the caller guessed. */
	cr_assert_str_eq(tw_errmsg(TW_ETYPE),
			 "\"add\" not implemented for 'Half'");
	tw_tensor b = mk(TW_FLOAT32, 1, SHAPE(4), 1, G_ANY);
	expect_err(
		tw_op_add(&a, &b, NULL, &out), TW_ERUNTIME,
		"The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 0");
	/* Misaligned data is refused by compute kernels; clone realigns. */
	_Alignas(8) uint8_t raw8[4 * 5];
	memset(raw8, 0, sizeof(raw8));
	tw_tensor mis;
	cr_assert_eq(tw_tensor_init(&mis, TW_FLOAT32, 1, SHAPE(4), NULL,
				    raw8 + 1, NULL),
		     TW_OK);
	expect_err(
		tw_op_neg(&mis, &out), TW_EINVAL,
		"neg(): tensor data is not aligned to its 4-byte elements (clone it first)");
	tw_tensor al;
	cr_assert_eq(tw_op_clone(&mis, &al), TW_OK);
	cr_assert_eq(tw_op_neg(&al, &out), TW_OK);
	tw_tensor_release(&out);
	tw_tensor_release(&al);
	/* Bool bytes other than 0/1 read as true. */
	uint8_t raw[2] = {2, 0};
	tw_tensor rb;
	cr_assert_eq(tw_tensor_init(&rb, TW_BOOL, 1, SHAPE(2), NULL, raw, NULL),
		     TW_OK);
	cr_assert_eq(tw_op_mul(&rb, &rb, &out), TW_OK);
	cr_assert_eq(((uint8_t *)out.data)[0], 1);
	cr_assert_eq(((uint8_t *)out.data)[1], 0);
	tw_tensor_release(&out);
	tw_tensor_release(&b);
	tw_tensor_release(&h);
	tw_tensor_release(&a);
}

/*
 * The shared helpers' refusals read back through tw_errmsg in torch's
 * words (or, for what C callers get wrong, ours), and a success right
 * after leaves them in place: they record nothing when they succeed. A
 * reason answers its own status only.
 */
Test(promote, reasons)
{
	unsigned nd, d;
	int64_t shape[TW_TENSOR_MAX_DIMS];
	const char *bc = "The size of tensor a (2) must match the size of "
			 "tensor b (5) at non-singleton dimension 0";
	expect_err(tw_ops_broadcast_shapes(2, SHAPE(2, 1), 2, SHAPE(5, 3), &nd,
					   shape),
		   TW_ERUNTIME, bc);
	cr_assert_eq(tw_ops_broadcast_shapes(2, SHAPE(2, 1), 1, SHAPE(3), &nd,
					     shape),
		     TW_OK);
	expect_reason_kept(TW_ERUNTIME, bc);
	cr_assert_str_eq(tw_errmsg(TW_EVALUE), tw_strerror(TW_EVALUE));
	const char *range = "Dimension out of range (expected to be in range "
			    "of [-1, 0], but got 1)";
	expect_err(tw_ops_wrap_dim(1, 0, &d), TW_EVALUE, range);
	cr_assert_eq(tw_ops_wrap_dim(-1, 0, &d), TW_OK);
	expect_reason_kept(TW_EVALUE, range);
	int32_t i32;
	tw_scalar big = tw_scalar_int(INT64_C(1) << 31);
	const char *over = "value cannot be converted to type int without "
			   "overflow";
	expect_err(tw_ops_scalar_to(&big, TW_INT32, &i32), TW_ERUNTIME, over);
	tw_scalar fits = tw_scalar_int(INT32_MAX);
	cr_assert_eq(tw_ops_scalar_to(&fits, TW_INT32, &i32), TW_OK);
	expect_reason_kept(TW_ERUNTIME, over);
	tw_tensor a = mk(TW_FLOAT32, 1, SHAPE(3), 1, G_ANY);
	const char *null = "relu(): NULL tensor";
	expect_err(tw_ops_check("relu", NULL, true, NULL), TW_EINVAL, null);
	cr_assert_eq(tw_ops_check("relu", &a, true, NULL), TW_OK);
	expect_reason_kept(TW_EINVAL, null);
	tw_tensor_release(&a);
}
