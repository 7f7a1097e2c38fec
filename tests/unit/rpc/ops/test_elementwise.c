/* Unit tests for rpc/ops/elementwise.c: binary (Tensor and Scalar overloads), unary and cast kernels on every dtype against reference loops. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops_test.h"

/* ---- binary ------------------------------------------------------------ */

/* Every binary op on every dtype, with broadcasting (2,3,4) op (3,1). */
Test(binary, every_op_every_dtype)
{
	for (int op = 0; op < R_COUNT; op++) {
		for (int i = 0; i < 5; i++) {
			tw_dtype dt = DT5[i];
			tw_tensor a = mk(dt, 3, SHAPE(2, 3, 4), 10 + i, G_ANY);
			tw_tensor b = mk(dt, 2, SHAPE(3, 1), 20 + i,
					 rhs_gen(op));
			tw_tensor out;
			tw_status st = call_bin(op, &a, &b, NULL, &out);
			char what[64];
			snprintf(what, sizeof(what), "%s %s", rop_name[op],
				 tw_dtype_name(dt));
			if (refused(op, dt, dt)) {
				cr_assert(st == TW_ERUNTIME || st == TW_ETYPE,
					  "%s accepted", what);
			} else {
				cr_assert_eq(st, TW_OK, "%s: %s", what,
					     tw_errmsg(st));
				check_bin(op, &a, &b, 1,
					  expect_dtype(op, dt, dt), &out, what);
				tw_tensor_release(&out);
			}
			tw_tensor_release(&a);
			tw_tensor_release(&b);
		}
	}
}

/* Every pair of dtypes: the promoted result and its values. */
Test(binary, promotion_pairs)
{
	for (int op = 0; op < R_COUNT; op++) {
		for (int i = 0; i < 5; i++) {
			for (int j = 0; j < 5; j++) {
				tw_tensor a = mk(DT5[i], 2, SHAPE(3, 1), 30 + i,
						 G_ANY);
				tw_tensor b = mk(DT5[j], 2, SHAPE(1, 4), 40 + j,
						 rhs_gen(op));
				tw_tensor out;
				char what[80];
				snprintf(what, sizeof(what), "%s %s,%s",
					 rop_name[op], tw_dtype_name(DT5[i]),
					 tw_dtype_name(DT5[j]));
				tw_status st = call_bin(op, &a, &b, NULL, &out);
				if (refused(op, DT5[i], DT5[j])) {
					cr_assert_neq(st, TW_OK, "%s accepted",
						      what);
				} else {
					cr_assert_eq(st, TW_OK, "%s: %s", what,
						     tw_errmsg(st));
					check_bin(op, &a, &b, 1,
						  expect_dtype(op, DT5[i],
							       DT5[j]),
						  &out, what);
					tw_tensor_release(&out);
				}
				tw_tensor_release(&a);
				tw_tensor_release(&b);
			}
		}
	}
}

/* Zero-dim tensors count only when of a higher category. */
Test(binary, zero_dim_participates_like_scalar)
{
	struct {
		tw_dtype a, z, want;
	} cases[] = {
		{TW_INT32, TW_FLOAT64, TW_FLOAT64},
		{TW_FLOAT32, TW_FLOAT64, TW_FLOAT32},
		{TW_INT32, TW_INT64, TW_INT32},
		{TW_BOOL, TW_INT32, TW_INT32},
		{TW_BOOL, TW_FLOAT64, TW_FLOAT64},
		{TW_INT64, TW_FLOAT32, TW_FLOAT32},
		{TW_FLOAT64, TW_INT64, TW_FLOAT64},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		tw_tensor a = mk(cases[c].a, 2, SHAPE(2, 3), 5, G_ANY);
		tw_tensor z = mk(cases[c].z, 0, NULL, 6, G_NONZERO);
		tw_tensor out;
		cr_assert_eq(tw_op_add(&a, &z, NULL, &out), TW_OK);
		check_bin(R_ADD, &a, &z, 1, cases[c].want, &out, "add 0-dim");
		tw_tensor_release(&out);
		/* Either side. */
		cr_assert_eq(tw_op_mul(&z, &a, &out), TW_OK);
		check_bin(R_MUL, &z, &a, 1, cases[c].want, &out, "mul 0-dim");
		tw_tensor_release(&out);
		tw_tensor_release(&a);
		tw_tensor_release(&z);
	}
	/* Two zero-dim tensors promote normally. */
	tw_tensor x = mk(TW_INT32, 0, NULL, 1, G_ANY);
	tw_tensor y = mk(TW_FLOAT64, 0, NULL, 2, G_ANY);
	tw_tensor out;
	cr_assert_eq(tw_op_add(&x, &y, NULL, &out), TW_OK);
	check_bin(R_ADD, &x, &y, 1, TW_FLOAT64, &out, "0-dim + 0-dim");
	cr_assert_eq(out.ndim, 0);
	tw_tensor_release(&out);
	tw_tensor_release(&x);
	tw_tensor_release(&y);
}

/* A Scalar as a reference operand: a zero-dim tensor of the compute dtype. */
static tw_tensor scalar_tensor(const tw_scalar *s, tw_dtype ct)
{
	tw_tensor t;
	cr_assert_eq(tw_tensor_alloc(&t, ct, 0, NULL), TW_OK);
	setd(&t, NULL, to_dtype(tw_scalar_to_double(s), ct));
	return t;
}

Test(scalar, overloads_and_promotion)
{
	struct {
		tw_dtype a;
		tw_scalar s;
		tw_dtype want;
	} cases[] = {
		{TW_INT32, {.kind = TW_SCALAR_INT, .i = 5}, TW_INT32},
		{TW_INT32, {.kind = TW_SCALAR_DOUBLE, .d = 2.5}, TW_FLOAT32},
		{TW_INT64, {.kind = TW_SCALAR_DOUBLE, .d = -1.25}, TW_FLOAT32},
		{TW_FLOAT32, {.kind = TW_SCALAR_DOUBLE, .d = 0.1}, TW_FLOAT32},
		{TW_FLOAT64, {.kind = TW_SCALAR_DOUBLE, .d = 0.1}, TW_FLOAT64},
		{TW_FLOAT32, {.kind = TW_SCALAR_INT, .i = 3}, TW_FLOAT32},
		{TW_BOOL, {.kind = TW_SCALAR_INT, .i = 5}, TW_INT64},
		{TW_BOOL, {.kind = TW_SCALAR_BOOL, .b = true}, TW_BOOL},
		{TW_BOOL, {.kind = TW_SCALAR_DOUBLE, .d = 2.5}, TW_FLOAT32},
		{TW_INT64, {.kind = TW_SCALAR_BOOL, .b = true}, TW_INT64},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		tw_tensor a = mk(cases[c].a, 2, SHAPE(3, 4), 7 + (uint32_t)c,
				 G_ANY);
		tw_tensor st = scalar_tensor(&cases[c].s, cases[c].want);
		tw_tensor out;
		cr_assert_eq(tw_op_add_scalar(&a, &cases[c].s, NULL, &out),
			     TW_OK, "%s", tw_err_last());
		check_bin(R_ADD, &a, &st, 1, cases[c].want, &out, "add.Scalar");
		tw_tensor_release(&out);
		cr_assert_eq(tw_op_mul_scalar(&a, &cases[c].s, &out), TW_OK);
		check_bin(R_MUL, &a, &st, 1, cases[c].want, &out, "mul.Scalar");
		tw_tensor_release(&out);
		if (cases[c].a != TW_BOOL &&
		    cases[c].s.kind != TW_SCALAR_BOOL) {
			cr_assert_eq(tw_op_sub_scalar(&a, &cases[c].s, NULL,
						      &out),
				     TW_OK);
			check_bin(R_SUB, &a, &st, 1, cases[c].want, &out,
				  "sub.Scalar");
			tw_tensor_release(&out);
			cr_assert_eq(tw_op_rsub_scalar(&a, &cases[c].s, NULL,
						       &out),
				     TW_OK);
			check_bin(R_SUB, &st, &a, 1, cases[c].want, &out,
				  "rsub.Scalar");
			tw_tensor_release(&out);
		}
		if (tw_scalar_to_double(&cases[c].s) != 0) {
			tw_dtype dw = isf(cases[c].want) ? cases[c].want
							 : TW_FLOAT32;
			cr_assert_eq(tw_op_div_scalar(&a, &cases[c].s,
						      TW_ROUND_NONE, &out),
				     TW_OK);
			tw_tensor sd = scalar_tensor(&cases[c].s, dw);
			check_bin(R_DIV, &a, &sd, 1, dw, &out, "div.Scalar");
			tw_tensor_release(&sd);
			tw_tensor_release(&out);
		}
		tw_tensor_release(&st);
		tw_tensor_release(&a);
	}
}

Test(binary, alpha)
{
	tw_tensor a = mk(TW_INT32, 2, SHAPE(2, 5), 1, G_ANY);
	tw_tensor b = mk(TW_INT32, 1, SHAPE(5), 2, G_ANY);
	tw_tensor out;
	tw_scalar three = tw_scalar_int(3);
	cr_assert_eq(tw_op_add(&a, &b, &three, &out), TW_OK);
	check_bin(R_ADD, &a, &b, 3, TW_INT32, &out, "add alpha 3");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_sub(&a, &b, &three, &out), TW_OK);
	check_bin(R_SUB, &a, &b, 3, TW_INT32, &out, "sub alpha 3");
	tw_tensor_release(&out);
	/* rsub: b - alpha * a */
	cr_assert_eq(tw_op_rsub(&a, &b, &three, &out), TW_OK);
	check_bin(R_SUB, &b, &a, 3, TW_INT32, &out, "rsub alpha 3");
	tw_tensor_release(&out);

	tw_tensor fa = mk(TW_FLOAT32, 2, SHAPE(2, 5), 3, G_ANY);
	tw_scalar half = tw_scalar_double(0.5);
	cr_assert_eq(tw_op_sub(&fa, &b, &half, &out), TW_OK);
	check_bin(R_SUB, &fa, &b, 0.5, TW_FLOAT32, &out, "sub alpha 0.5");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_add_scalar(&fa, &half, &three, &out), TW_OK);
	tw_tensor sh = scalar_tensor(&half, TW_FLOAT32);
	check_bin(R_ADD, &fa, &sh, 3, TW_FLOAT32, &out, "add.Scalar alpha");
	tw_tensor_release(&out);
	tw_tensor_release(&sh);

	/* Bool: a || (alpha && b). */
	tw_tensor ba = mk(TW_BOOL, 1, SHAPE(8), 4, G_ANY);
	tw_tensor bb = mk(TW_BOOL, 1, SHAPE(8), 5, G_ANY);
	tw_scalar bf = tw_scalar_bool(false);
	cr_assert_eq(tw_op_add(&ba, &bb, &bf, &out), TW_OK);
	check_bin(R_ADD, &ba, &bb, 0, TW_BOOL, &out, "bool add alpha False");
	tw_tensor_release(&out);

	expect_err(
		tw_op_add(&a, &b, &half, &out), TW_ERUNTIME,
		"For integral input tensors, argument alpha must not be a floating point number.");
	tw_scalar bt = tw_scalar_bool(true);
	expect_err(tw_op_add(&fa, &b, &bt, &out), TW_ERUNTIME,
		   "Boolean alpha only supported for Boolean results.");
	tw_scalar big = tw_scalar_int(INT64_C(1) << 40);
	expect_err(tw_op_add(&a, &b, &big, &out), TW_ERUNTIME,
		   "value cannot be converted to type int without overflow");
	/* int + float tensor: float result, a float alpha is fine. */
	cr_assert_eq(tw_op_add(&a, &fa, &half, &out), TW_OK);
	check_bin(R_ADD, &a, &fa, 0.5, TW_FLOAT32, &out, "int + float alpha");
	tw_tensor_release(&out);

	tw_tensor *all[] = {&a, &b, &fa, &ba, &bb};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		tw_tensor_release(all[i]);
}

Test(binary, integer_wraparound)
{
	tw_tensor a = mk_vals(TW_INT32, 1, SHAPE(3),
			      (double[]){INT32_MAX, INT32_MIN, 65536});
	tw_tensor b = mk_vals(TW_INT32, 1, SHAPE(3), (double[]){1, -1, 65536});
	tw_tensor out;
	cr_assert_eq(tw_op_add(&a, &b, NULL, &out), TW_OK);
	cr_assert_eq(flati(&out, 0), INT32_MIN);
	cr_assert_eq(flati(&out, 1), INT32_MAX);
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_mul(&a, &b, &out), TW_OK);
	cr_assert_eq(flati(&out, 1), INT32_MIN); /* INT_MIN * -1 wraps */
	cr_assert_eq(flati(&out, 2), 0);         /* 2^32 wraps to 0 */
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_neg(&a, &out), TW_OK);
	cr_assert_eq(flati(&out, 1), INT32_MIN);
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_abs(&a, &out), TW_OK);
	cr_assert_eq(flati(&out, 1), INT32_MIN);
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_div(&a, &b, TW_ROUND_TRUNC, &out), TW_OK);
	cr_assert_eq(flati(&out, 1), INT32_MIN); /* INT_MIN / -1 */
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_div(&a, &b, TW_ROUND_FLOOR, &out), TW_OK);
	cr_assert_eq(flati(&out, 1), INT32_MIN);
	tw_tensor_release(&out);
	tw_tensor_release(&a);
	tw_tensor_release(&b);
}

Test(binary, sub_bool_refused)
{
	tw_tensor b = mk(TW_BOOL, 1, SHAPE(4), 1, G_ANY);
	tw_tensor i = mk(TW_INT32, 1, SHAPE(4), 2, G_ANY);
	tw_tensor out;
	expect_err(
		tw_op_sub(&b, &b, NULL, &out), TW_ERUNTIME,
		"Subtraction, the `-` operator, with two bool tensors is not supported. Use the `^` or `logical_xor()` operator instead.");
	const char *one =
		"Subtraction, the `-` operator, with a bool tensor is not supported. If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.";
	expect_err(tw_op_sub(&b, &i, NULL, &out), TW_ERUNTIME, one);
	expect_err(tw_op_sub(&i, &b, NULL, &out), TW_ERUNTIME, one);
	tw_scalar t = tw_scalar_bool(true);
	expect_err(tw_op_sub_scalar(&i, &t, NULL, &out), TW_ERUNTIME, one);
	tw_tensor_release(&b);
	tw_tensor_release(&i);
}

Test(binary, division)
{
	tw_tensor a = mk_vals(TW_INT64, 1, SHAPE(6),
			      (double[]){7, -7, 7, -7, 0, 1});
	tw_tensor b = mk_vals(TW_INT64, 1, SHAPE(6),
			      (double[]){2, 2, -2, -2, 0, 0});
	tw_tensor out;
	/* True division: int / int -> float32; by zero -> nan / inf. */
	cr_assert_eq(tw_op_div(&a, &b, TW_ROUND_NONE, &out), TW_OK);
	cr_assert_eq(out.dtype, TW_FLOAT32);
	expect_values(&out, (double[]){3.5, -3.5, -3.5, 3.5, NAN, INFINITY}, 0,
		      0, "int true div");
	tw_tensor_release(&out);
	/* Rounding modes on the nonzero part. */
	tw_tensor a4 = mk_vals(TW_INT64, 1, SHAPE(4), (double[]){7, -7, 7, -7});
	tw_tensor b4 = mk_vals(TW_INT64, 1, SHAPE(4), (double[]){2, 2, -2, -2});
	cr_assert_eq(tw_op_div(&a4, &b4, TW_ROUND_TRUNC, &out), TW_OK);
	cr_assert_eq(out.dtype, TW_INT64);
	expect_values(&out, (double[]){3, -3, -3, 3}, 0, 0, "trunc");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_div(&a4, &b4, TW_ROUND_FLOOR, &out), TW_OK);
	expect_values(&out, (double[]){3, -4, -4, 3}, 0, 0, "floor");
	tw_tensor_release(&out);
	/* Integer division by zero is torch's ZeroDivisionError. */
	expect_err(tw_op_div(&a, &b, TW_ROUND_FLOOR, &out), TW_EVALUE,
		   "ZeroDivisionError");
	expect_err(tw_op_div(&a, &b, TW_ROUND_TRUNC, &out), TW_EVALUE,
		   "ZeroDivisionError");
	tw_scalar zero = tw_scalar_int(0);
	expect_err(tw_op_div_scalar(&a, &zero, TW_ROUND_FLOOR, &out), TW_EVALUE,
		   "ZeroDivisionError");
	/* Floats: floor is Python's //, by zero IEEE. */
	tw_tensor fa = mk_vals(TW_FLOAT64, 1, SHAPE(5),
			       (double[]){7.5, -7.5, 1, -1, 0});
	tw_tensor fb = mk_vals(TW_FLOAT64, 1, SHAPE(5),
			       (double[]){2, 2, 0, 0, 0});
	cr_assert_eq(tw_op_div(&fa, &fb, TW_ROUND_FLOOR, &out), TW_OK);
	expect_values(&out, (double[]){3, -4, INFINITY, -INFINITY, NAN}, 0, 0,
		      "float floor");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_div(&fa, &fb, TW_ROUND_TRUNC, &out), TW_OK);
	expect_values(&out, (double[]){3, -3, INFINITY, -INFINITY, NAN}, 0, 0,
		      "float trunc");
	tw_tensor_release(&out);
	/* Bool with a rounding mode is refused. */
	tw_tensor bb = mk(TW_BOOL, 1, SHAPE(2), 1, G_ANY);
	expect_err(tw_op_div(&bb, &bb, TW_ROUND_FLOOR, &out), TW_ETYPE,
		   "\"div_floor_cpu\" not implemented for 'Bool'");
	/* bool / bool true division is float32. */
	cr_assert_eq(tw_op_div(&bb, &bb, TW_ROUND_NONE, &out), TW_OK);
	cr_assert_eq(out.dtype, TW_FLOAT32);
	tw_tensor_release(&out);
	tw_rounding rm;
	cr_assert_eq(tw_ops_rounding_from_name(NULL, &rm), TW_OK);
	cr_assert_eq(rm, TW_ROUND_NONE);
	cr_assert_eq(tw_ops_rounding_from_name("floor", &rm), TW_OK);
	cr_assert_eq(rm, TW_ROUND_FLOOR);
	expect_err(
		tw_ops_rounding_from_name("round", &rm), TW_EVALUE,
		"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found 'round'");
	tw_tensor *all[] = {&a, &b, &a4, &b4, &fa, &fb, &bb};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		tw_tensor_release(all[i]);
}

Test(binary, pow)
{
	tw_tensor out;
	/* Integer Tensor_Tensor with negative exponents: 0, 1 or -1. */
	tw_tensor a = mk_vals(TW_INT32, 1, SHAPE(6),
			      (double[]){2, 1, -1, -1, 3, -2});
	tw_tensor e = mk_vals(TW_INT32, 1, SHAPE(6),
			      (double[]){-1, -3, -3, -2, 4, 3});
	cr_assert_eq(tw_op_pow(&a, &e, &out), TW_OK);
	expect_values(&out, (double[]){0, 1, -1, 1, 81, -8}, 0, 0, "powi");
	tw_tensor_release(&out);

	tw_scalar m1 = tw_scalar_int(-1);
	expect_err(tw_op_pow_scalar(&a, &m1, &out), TW_ERUNTIME,
		   "Integers to negative integer powers are not allowed.");
	tw_tensor bt = mk(TW_BOOL, 1, SHAPE(3), 1, G_ANY);
	expect_err(tw_op_pow_scalar(&bt, &m1, &out), TW_ERUNTIME,
		   "Integers to negative integer powers are not allowed.");
	expect_err(tw_op_pow(&bt, &bt, &out), TW_ETYPE,
		   "\"pow\" not implemented for 'Bool'");
	/* bool ** 2 is int64 (bool tensor with an int Scalar). */
	tw_scalar two = tw_scalar_int(2);
	cr_assert_eq(tw_op_pow_scalar(&bt, &two, &out), TW_OK);
	cr_assert_eq(out.dtype, TW_INT64);
	tw_tensor_release(&out);

	/* Tensor_Scalar on every dtype and special exponent. */
	const double exps[] = {2, 3, 0.5, -0.5, -1, -2, 1.5, 0, 1, 4};
	for (int i = 1; i < 5; i++) {
		tw_tensor x = mk(DT5[i], 2, SHAPE(3, 5), 50 + i, G_POS);
		for (size_t k = 0; k < sizeof(exps) / sizeof(exps[0]); k++) {
			bool integral_exp = exps[k] == floor(exps[k]);
			tw_scalar s = integral_exp
					      ? tw_scalar_int((int64_t)exps[k])
					      : tw_scalar_double(exps[k]);
			tw_status st = tw_op_pow_scalar(&x, &s, &out);
			if (!isf(DT5[i]) && integral_exp && exps[k] < 0) {
				cr_assert_eq(st, TW_ERUNTIME);
				continue;
			}
			cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
			tw_dtype rt = isf(DT5[i])    ? DT5[i]
				      : integral_exp ? DT5[i]
						     : TW_FLOAT32;
			tw_tensor se = scalar_tensor(&s, rt);
			check_bin(R_POW, &x, &se, 1, rt, &out,
				  "pow.Tensor_Scalar");
			tw_tensor_release(&se);
			tw_tensor_release(&out);
		}
		tw_tensor_release(&x);
	}
	/* pow.Scalar: scalar base, tensor exponent. */
	tw_tensor ex = mk(TW_INT32, 1, SHAPE(7), 3, G_EXP);
	cr_assert_eq(tw_op_pow_scalar_base(&two, &ex, &out), TW_OK);
	tw_tensor s2 = scalar_tensor(&two, TW_INT32);
	check_bin(R_POW, &s2, &ex, 1, TW_INT32, &out, "pow.Scalar");
	tw_tensor_release(&out);
	tw_tensor_release(&s2);
	tw_scalar twof = tw_scalar_double(2.0);
	cr_assert_eq(tw_op_pow_scalar_base(&twof, &ex, &out), TW_OK);
	s2 = scalar_tensor(&twof, TW_FLOAT32);
	check_bin(R_POW, &s2, &ex, 1, TW_FLOAT32, &out, "pow.Scalar float");
	tw_tensor_release(&out);
	tw_tensor_release(&s2);
	tw_tensor_release(&ex);
	tw_tensor_release(&a);
	tw_tensor_release(&e);
	tw_tensor_release(&bt);
}

Test(binary, maximum_minimum_nan)
{
	tw_tensor a = mk_vals(TW_FLOAT32, 1, SHAPE(4),
			      (double[]){NAN, 1, 5, -2});
	tw_tensor b = mk_vals(TW_FLOAT32, 1, SHAPE(4),
			      (double[]){1, NAN, 3, -1});
	tw_tensor out;
	cr_assert_eq(tw_op_maximum(&a, &b, &out), TW_OK);
	expect_values(&out, (double[]){NAN, NAN, 5, -1}, 0, 0, "maximum");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_minimum(&a, &b, &out), TW_OK);
	expect_values(&out, (double[]){NAN, NAN, 3, -2}, 0, 0, "minimum");
	tw_tensor_release(&out);
	tw_tensor_release(&a);
	tw_tensor_release(&b);
}

Test(binary, float_division_by_zero)
{
	tw_tensor a = mk_vals(TW_FLOAT32, 1, SHAPE(3), (double[]){1, -1, 0});
	tw_scalar z = tw_scalar_double(0.0);
	tw_tensor out;
	cr_assert_eq(tw_op_div_scalar(&a, &z, TW_ROUND_NONE, &out), TW_OK);
	expect_values(&out, (double[]){INFINITY, -INFINITY, NAN}, 0, 0,
		      "x / 0.");
	tw_tensor_release(&out);
	tw_tensor_release(&a);
}

/* ---- unary ------------------------------------------------------------- */

enum uop { U_NEG, U_ABS, U_RELU, U_SIGMOID, U_TANH, U_EXP, U_LOG, U_SQRT, U_N };
static const char *const uop_name[U_N] = {"neg",  "abs", "relu", "sigmoid",
					  "tanh", "exp", "log",  "sqrt"};

static tw_status call_un(int op, const tw_tensor *a, tw_tensor *out)
{
	switch (op) {
	case U_NEG:
		return tw_op_neg(a, out);
	case U_ABS:
		return tw_op_abs(a, out);
	case U_RELU:
		return tw_op_relu(a, out);
	case U_SIGMOID:
		return tw_op_sigmoid(a, out);
	case U_TANH:
		return tw_op_tanh(a, out);
	case U_EXP:
		return tw_op_exp(a, out);
	case U_LOG:
		return tw_op_log(a, out);
	default:
		return tw_op_sqrt(a, out);
	}
}

static double ref_un(int op, double x)
{
	switch (op) {
	case U_NEG:
		return -x;
	case U_ABS:
		return fabs(x);
	case U_RELU:
		return x < 0 ? 0 : x;
	case U_SIGMOID:
		return 1 / (1 + exp(-x));
	case U_TANH:
		return tanh(x);
	case U_EXP:
		return exp(x);
	case U_LOG:
		return log(x);
	default:
		return sqrt(x);
	}
}

Test(unary, every_op_every_dtype)
{
	for (int op = 0; op < U_N; op++) {
		for (int i = 0; i < 5; i++) {
			tw_dtype dt = DT5[i];
			tw_tensor a0 = mk(dt, 2, SHAPE(5, 7), 60 + i, G_ANY);
			/* Non-contiguous input too. */
			tw_tensor an = noncontig(&a0);
			for (int nc = 0; nc < 2; nc++) {
				const tw_tensor *a = nc ? &an : &a0;
				tw_tensor out;
				tw_status st = call_un(op, a, &out);
				bool keeps = op <= U_RELU;
				if (keeps && dt == TW_BOOL) {
					cr_assert_neq(st, TW_OK);
					continue;
				}
				cr_assert_eq(st, TW_OK, "%s %s: %s",
					     uop_name[op], tw_dtype_name(dt),
					     tw_errmsg(st));
				tw_dtype rt = keeps              ? dt
					      : dt == TW_FLOAT64 ? TW_FLOAT64
								 : TW_FLOAT32;
				cr_assert_eq(out.dtype, rt, "%s %s",
					     uop_name[op], tw_dtype_name(dt));
				expect_shape(&out, 2, SHAPE(5, 7));
				double want[35];
				for (int k = 0; k < 35; k++)
					want[k] = to_dtype(
						ref_un(op, to_dtype(flat(a, k),
								    rt)),
						rt);
				expect_values(&out, want, rtol_of(rt) * 2,
					      rt == TW_FLOAT32 ? 1e-7 : 1e-15,
					      uop_name[op]);
				tw_tensor_release(&out);
			}
			tw_tensor_release(&a0);
			tw_tensor_release(&an);
		}
	}
}

Test(unary, bool_refusals)
{
	tw_tensor b = mk(TW_BOOL, 1, SHAPE(3), 1, G_ANY);
	tw_tensor out;
	expect_err(
		tw_op_neg(&b, &out), TW_ERUNTIME,
		"Negation, the `-` operator, on a bool tensor is not supported. If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.");
	expect_err(tw_op_abs(&b, &out), TW_ETYPE,
		   "\"abs_cpu\" not implemented for 'Bool'");
	expect_err(tw_op_relu(&b, &out), TW_ERUNTIME,
		   "Boolean inputs not supported for relu");
	cr_assert_eq(tw_op_exp(&b, &out), TW_OK);
	cr_assert_eq(out.dtype, TW_FLOAT32);
	tw_tensor_release(&out);
	tw_tensor_release(&b);
}

Test(unary, relu_keeps_nan_and_casts)
{
	tw_tensor a = mk_vals(TW_FLOAT64, 1, SHAPE(3), (double[]){NAN, -1, 2});
	tw_tensor out;
	cr_assert_eq(tw_op_relu(&a, &out), TW_OK);
	expect_values(&out, (double[]){NAN, 0, 2}, 0, 0, "relu");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_cast(&a, TW_INT32, &out), TW_OK);
	expect_values(&out, (double[]){INT32_MIN, -1, 2}, 0, 0,
		      "cast nan->int");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_cast(&a, TW_BOOL, &out), TW_OK);
	expect_values(&out, (double[]){1, 1, 1}, 0, 0, "cast -> bool");
	tw_tensor_release(&out);
	tw_tensor_release(&a);
}

Test(unary, cast_every_pair)
{
	for (int i = 0; i < 5; i++) {
		tw_tensor a0 = mk(DT5[i], 2, SHAPE(9, 33), 100 + i, G_ANY);
		tw_tensor an = noncontig(&a0);
		for (int j = 0; j < 5; j++) {
			for (int nc = 0; nc < 2; nc++) {
				tw_tensor out;
				cr_assert_eq(tw_op_cast(nc ? &an : &a0, DT5[j],
							&out),
					     TW_OK);
				cr_assert_eq(out.dtype, DT5[j]);
				expect_shape(&out, 2, SHAPE(9, 33));
				cr_assert(tw_tensor_is_contiguous(&out));
				for (int64_t k = 0; k < 9 * 33; k++) {
					double x = flat(&a0, k);
					double want = DT5[j] == TW_BOOL ? x != 0
						      : isf(DT5[j])
							      ? to_dtype(x,
									 DT5[j])
							      : trunc(x);
					cr_assert_eq(flat(&out, k), want,
						     "%s -> %s",
						     tw_dtype_name(DT5[i]),
						     tw_dtype_name(DT5[j]));
				}
				tw_tensor_release(&out);
			}
		}
		tw_tensor_release(&a0);
		tw_tensor_release(&an);
	}
	/* Out of range and NaN become the minimum, int64 wraps into int32. */
	tw_tensor f = mk_vals(TW_FLOAT32, 1, SHAPE(3),
			      (double[]){1e20, -1e20, NAN});
	tw_tensor out;
	cr_assert_eq(tw_op_cast(&f, TW_INT64, &out), TW_OK);
	cr_assert(flati(&out, 0) == INT64_MIN && flati(&out, 1) == INT64_MIN &&
		  flati(&out, 2) == INT64_MIN);
	tw_tensor_release(&out);
	tw_tensor l = mk_vals(TW_INT64, 1, SHAPE(1), (double[]){4294967297.0});
	cr_assert_eq(tw_op_cast(&l, TW_INT32, &out), TW_OK);
	cr_assert_eq(flati(&out, 0), 1);
	tw_tensor_release(&out);
	tw_tensor_release(&l);
	tw_tensor_release(&f);
}

/* ---- edge shapes and layouts ------------------------------------------ */

Test(edge, empty_and_zero_dim_operands)
{
	tw_tensor e = mk(TW_FLOAT32, 2, SHAPE(0, 3), 1, G_ANY);
	tw_tensor v = mk(TW_INT64, 1, SHAPE(3), 1, G_ANY);
	tw_tensor z = mk(TW_INT32, 0, NULL, 1, G_ANY);
	tw_tensor out;
	cr_assert_eq(tw_op_add(&e, &v, NULL, &out), TW_OK);
	cr_assert_eq(out.dtype, TW_FLOAT32);
	expect_shape(&out, 2, SHAPE(0, 3));
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_div(&e, &z, TW_ROUND_FLOOR, &out), TW_OK);
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_exp(&e, &out), TW_OK);
	expect_shape(&out, 2, SHAPE(0, 3));
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_mul(&z, &z, &out), TW_OK);
	cr_assert_eq(out.ndim, 0);
	cr_assert_eq(flat(&out, 0), flat(&z, 0) * flat(&z, 0));
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_sub(&z, &v, NULL, &out), TW_OK);
	check_bin(R_SUB, &z, &v, 1, TW_INT64, &out, "0-dim - vec");
	tw_tensor_release(&out);
	/* Empty integer division by an all-zero... nothing runs, no error. */
	tw_tensor ei = mk(TW_INT32, 1, SHAPE(0), 1, G_ANY);
	tw_scalar zero = tw_scalar_int(0);
	cr_assert_eq(tw_op_div_scalar(&ei, &zero, TW_ROUND_TRUNC, &out), TW_OK);
	tw_tensor_release(&out);
	tw_tensor_release(&ei);
	tw_tensor_release(&e);
	tw_tensor_release(&v);
	tw_tensor_release(&z);
}

Test(edge, large_contiguous_add)
{
	int64_t n = 1 << 20;
	tw_tensor a = mk(TW_FLOAT32, 1, &n, 1, G_ANY);
	tw_tensor b = mk(TW_FLOAT32, 1, &n, 2, G_ANY);
	tw_tensor out;
	cr_assert_eq(tw_op_add(&a, &b, NULL, &out), TW_OK);
	const float *pa = a.data, *pb = b.data, *po = out.data;
	for (int64_t k = 0; k < n; k++)
		cr_assert_eq(po[k], pa[k] + pb[k]);
	tw_tensor_release(&out);
	/* Odd lengths exercise the scalar tail of the blocked loops. */
	int64_t m = 1000003;
	tw_tensor c = mk(TW_INT64, 1, &m, 3, G_ANY);
	tw_scalar two = tw_scalar_int(2);
	cr_assert_eq(tw_op_mul_scalar(&c, &two, &out), TW_OK);
	for (int64_t k = 0; k < m; k++)
		cr_assert_eq(((int64_t *)out.data)[k],
			     2 * ((int64_t *)c.data)[k]);
	tw_tensor_release(&out);
	tw_tensor_release(&c);
	tw_tensor_release(&a);
	tw_tensor_release(&b);
}

Test(edge, broadcast_views_and_strides)
{
	/* An expanded (stride 0) view and a strided slice as inputs. */
	double row[5] = {1, 2, 3, 4, 5};
	tw_tensor ex;
	cr_assert_eq(tw_tensor_init(&ex, TW_FLOAT64, 2, SHAPE(3, 5),
				    SHAPE(0, 1), row, NULL),
		     TW_OK);
	tw_tensor big = mk(TW_FLOAT64, 2, SHAPE(3, 10), 4, G_ANY);
	tw_tensor every2 = big; /* columns 0, 2, 4, 6, 8 */
	every2.shape[1] = 5;
	every2.strides[1] = 2;
	every2.buf = NULL;
	for (int op = 0; op < R_COUNT; op++) {
		tw_tensor out;
		cr_assert_eq(call_bin(op, &ex, &every2, NULL, &out), TW_OK,
			     "%s", tw_err_last());
		check_bin(op, &ex, &every2, 1, TW_FLOAT64, &out, rop_name[op]);
		tw_tensor_release(&out);
	}
	tw_tensor out;
	cr_assert_eq(tw_op_sum(&ex, SHAPE(0), 1, false, NULL, &out), TW_OK);
	expect_values(&out, (double[]){3, 6, 9, 12, 15}, 0, 0,
		      "sum of expanded");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_argmax(&every2, (int64_t[]){1}, false, &out), TW_OK);
	tw_tensor_release(&out);
	tw_tensor_release(&big);
}

/* ---- reasons ----------------------------------------------------------- */

/*
 * Every family's refusal reads back through tw_errmsg in torch's words,
 * and a success of the same family right after leaves it in place: the
 * kernels record nothing when they succeed. A reason answers its own
 * status only.
 */
Test(elementwise, reasons)
{
	tw_tensor f = mk(TW_FLOAT32, 2, SHAPE(2, 3), 1, G_ANY);
	tw_tensor g = mk(TW_FLOAT32, 1, SHAPE(4), 2, G_ANY);
	tw_tensor bo = mk(TW_BOOL, 1, SHAPE(3), 3, G_ANY);
	tw_tensor h;
	cr_assert_eq(tw_tensor_zeros(&h, TW_FLOAT16, 1, SHAPE(3)), TW_OK);
	tw_scalar two = tw_scalar_int(2), yes = tw_scalar_bool(true);
	tw_tensor out;

	/* Binary, Tensor overloads. */
	const char *bcast = "The size of tensor a (3) must match the size of "
			    "tensor b (4) at non-singleton dimension 1";
	expect_err(tw_op_mul(&f, &g, &out), TW_ERUNTIME, bcast);
	cr_assert_eq(tw_op_mul(&f, &f, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ERUNTIME, bcast);
	cr_assert_str_eq(tw_errmsg(TW_ETYPE), tw_strerror(TW_ETYPE));

	/* Binary, Scalar overloads. */
	const char *subb = "Subtraction, the `-` operator, with a bool tensor "
			   "is not supported. If you are trying to invert a "
			   "mask, use the `~` or `logical_not()` operator "
			   "instead.";
	expect_err(tw_op_rsub_scalar(&bo, &two, NULL, &out), TW_ERUNTIME, subb);
	cr_assert_eq(tw_op_rsub_scalar(&f, &two, NULL, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ERUNTIME, subb);
	const char *powb = "\"pow\" not implemented for 'Bool'";
	expect_err(tw_op_pow_scalar_base(&yes, &bo, &out), TW_ETYPE, powb);
	cr_assert_eq(tw_op_pow_scalar_base(&two, &f, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ETYPE, powb);
	const char *zdiv = "ZeroDivisionError";
	tw_tensor i = mk(TW_INT64, 1, SHAPE(3), 4, G_ANY);
	tw_scalar zero = tw_scalar_int(0);
	expect_err(tw_op_div_scalar(&i, &zero, TW_ROUND_TRUNC, &out), TW_EVALUE,
		   zdiv);
	cr_assert_eq(tw_op_div_scalar(&i, &two, TW_ROUND_TRUNC, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_EVALUE, zdiv);
	tw_rounding rm;
	const char *mode = "div expected rounding_mode to be one of None, "
			   "'trunc', or 'floor' but found 'half_even'";
	expect_err(tw_ops_rounding_from_name("half_even", &rm), TW_EVALUE,
		   mode);
	cr_assert_eq(tw_ops_rounding_from_name("floor", &rm), TW_OK);
	expect_reason_kept(TW_EVALUE, mode);

	/* Unary ops that keep the dtype, and those that compute in float. */
	const char *absb = "\"abs_cpu\" not implemented for 'Bool'";
	expect_err(tw_op_abs(&bo, &out), TW_ETYPE, absb);
	cr_assert_eq(tw_op_abs(&f, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ETYPE, absb);
	const char *sqrth = "\"sqrt\" not implemented for 'Half'";
	expect_err(tw_op_sqrt(&h, &out), TW_ETYPE, sqrth);
	cr_assert_eq(tw_op_sqrt(&f, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ETYPE, sqrth);
	tw_scalar m2 = tw_scalar_int(-2);
	const char *negp = "Integers to negative integer powers are not "
			   "allowed.";
	expect_err(tw_op_pow_scalar(&i, &m2, &out), TW_ERUNTIME, negp);
	cr_assert_eq(tw_op_pow_scalar(&f, &m2, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ERUNTIME, negp);

	/* Casts. */
	const char *toh = "\"to\" not implemented for 'Half'";
	expect_err(tw_op_cast(&f, TW_FLOAT16, &out), TW_ETYPE, toh);
	cr_assert_eq(tw_op_cast(&f, TW_INT64, &out), TW_OK);
	tw_tensor_release(&out);
	expect_reason_kept(TW_ETYPE, toh);

	tw_tensor *all[] = {&f, &g, &bo, &h, &i};
	for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++)
		tw_tensor_release(all[k]);
}
