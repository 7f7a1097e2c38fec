/* Unit tests for the builtin op kernels: every op and dtype against straightforward reference loops. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <tensorwire/tensor.h>

#include "dataplane/err.h"
#include "rpc/ops/ops.h"

#define SHAPE(...) ((const int64_t[]){ __VA_ARGS__ })
#define NDIMS(...) ((unsigned)(sizeof((int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t)))

static const tw_dtype DT5[5] = { TW_BOOL, TW_INT32, TW_INT64, TW_FLOAT32,
				 TW_FLOAT64 };

static bool isf(tw_dtype d)
{
	return d == TW_FLOAT32 || d == TW_FLOAT64;
}

/* ---- element access over logical indices ------------------------------ */

static int64_t nel(const tw_tensor *t)
{
	int64_t n = -1;
	cr_assert_eq(tw_tensor_numel(t, &n), TW_OK);
	return n;
}

static void unravel(int64_t k, unsigned nd, const int64_t *shape, int64_t *idx)
{
	for (unsigned d = nd; d-- > 0;) {
		idx[d] = k % shape[d];
		k /= shape[d];
	}
}

static char *eptr(const tw_tensor *t, const int64_t *idx)
{
	int64_t off = 0;
	for (unsigned d = 0; d < t->ndim; d++)
		off += idx[d] * t->strides[d];
	return (char *)t->data + off * (int64_t)tw_dtype_size((tw_dtype)t->dtype);
}

static double getd(const tw_tensor *t, const int64_t *idx)
{
	const char *p = eptr(t, idx);
	switch (t->dtype) {
	case TW_BOOL: return *(const uint8_t *)p != 0;
	case TW_INT32: { int32_t v; memcpy(&v, p, 4); return v; }
	case TW_INT64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
	case TW_FLOAT32: { float v; memcpy(&v, p, 4); return v; }
	default: { double v; memcpy(&v, p, 8); return v; }
	}
}

static int64_t geti(const tw_tensor *t, const int64_t *idx)
{
	const char *p = eptr(t, idx);
	switch (t->dtype) {
	case TW_BOOL: return *(const uint8_t *)p != 0;
	case TW_INT32: { int32_t v; memcpy(&v, p, 4); return v; }
	case TW_INT64: { int64_t v; memcpy(&v, p, 8); return v; }
	default: cr_assert_fail("geti on a float tensor"); return 0;
	}
}

static void setd(tw_tensor *t, const int64_t *idx, double v)
{
	char *p = eptr(t, idx);
	switch (t->dtype) {
	case TW_BOOL: *(uint8_t *)p = v != 0; break;
	case TW_INT32: { int32_t x = (int32_t)v; memcpy(p, &x, 4); break; }
	case TW_INT64: { int64_t x = (int64_t)v; memcpy(p, &x, 8); break; }
	case TW_FLOAT32: { float x = (float)v; memcpy(p, &x, 4); break; }
	default: memcpy(p, &v, 8); break;
	}
}

static double flat(const tw_tensor *t, int64_t k)
{
	int64_t idx[TW_TENSOR_MAX_DIMS];
	unravel(k, t->ndim, t->shape, idx);
	return getd(t, idx);
}

static int64_t flati(const tw_tensor *t, int64_t k)
{
	int64_t idx[TW_TENSOR_MAX_DIMS];
	unravel(k, t->ndim, t->shape, idx);
	return geti(t, idx);
}

/* ---- tensor construction ---------------------------------------------- */

enum gen { G_ANY, G_NONZERO, G_EXP, G_POS, G_TIES };

static uint32_t hash32(uint32_t seed, uint64_t k)
{
	uint64_t z = (uint64_t)seed * 0x9e3779b97f4a7c15ULL + k * 0xbf58476d1ce4e5b9ULL + 1;
	z ^= z >> 31;
	z *= 0x94d049bb133111ebULL;
	z ^= z >> 29;
	return (uint32_t)z;
}

static double gen_value(tw_dtype dt, enum gen g, uint32_t h)
{
	switch (g) {
	case G_ANY:
		if (dt == TW_BOOL) return h & 1;
		if (isf(dt)) return ((double)(h % 2001) - 1000.0) / 250.0;
		return (double)(h % 41) - 20.0;
	case G_NONZERO: {
		double v = gen_value(dt, G_ANY, h);
		return v == 0 ? 1 : v;
	}
	case G_EXP:
		if (dt == TW_BOOL) return h & 1;
		if (isf(dt)) return (double)(h % 9) / 4.0 - 1.0;
		return h % 5;
	case G_POS:
		if (dt == TW_BOOL) return 1;
		if (isf(dt)) return (double)(h % 1000 + 1) / 250.0;
		return h % 20 + 1;
	default: /* G_TIES: few distinct values */
		if (dt == TW_BOOL) return h & 1;
		return (double)(h % 4) - 1.0;
	}
}

static tw_tensor mk(tw_dtype dt, unsigned nd, const int64_t *shape,
		    uint32_t seed, enum gen g)
{
	tw_tensor t;
	cr_assert_eq(tw_tensor_alloc(&t, dt, nd, shape), TW_OK);
	int64_t n = nel(&t);
	int64_t idx[TW_TENSOR_MAX_DIMS];
	for (int64_t k = 0; k < n; k++) {
		unravel(k, nd, shape, idx);
		setd(&t, idx, gen_value(dt, g, hash32(seed, (uint64_t)k)));
	}
	return t;
}

static tw_tensor mk_vals(tw_dtype dt, unsigned nd, const int64_t *shape,
			 const double *vals)
{
	tw_tensor t;
	cr_assert_eq(tw_tensor_alloc(&t, dt, nd, shape), TW_OK);
	int64_t n = nel(&t);
	int64_t idx[TW_TENSOR_MAX_DIMS];
	for (int64_t k = 0; k < n; k++) {
		unravel(k, nd, shape, idx);
		setd(&t, idx, vals[k]);
	}
	return t;
}

/* The transposed copy of t laid out so that its transpose view has t's
 * shape: a non-contiguous tensor with t's values. */
static tw_tensor noncontig(const tw_tensor *t)
{
	/* Materialise values in reversed dim order, then view back. */
	int64_t rshape[TW_TENSOR_MAX_DIMS];
	unsigned nd = t->ndim;
	for (unsigned d = 0; d < nd; d++)
		rshape[d] = t->shape[nd - 1 - d];
	tw_tensor r;
	cr_assert_eq(tw_tensor_alloc(&r, (tw_dtype)t->dtype, nd, rshape), TW_OK);
	int64_t n = nel(t);
	int64_t idx[TW_TENSOR_MAX_DIMS], ridx[TW_TENSOR_MAX_DIMS];
	for (int64_t k = 0; k < n; k++) {
		unravel(k, nd, t->shape, idx);
		for (unsigned d = 0; d < nd; d++)
			ridx[d] = idx[nd - 1 - d];
		memcpy(eptr(&r, ridx), eptr(t, idx),
		       tw_dtype_size((tw_dtype)t->dtype));
	}
	tw_tensor v = r;
	for (unsigned d = 0; d < nd; d++) {
		v.shape[d] = r.shape[nd - 1 - d];
		v.strides[d] = r.strides[nd - 1 - d];
	}
	return v; /* owns r's reference */
}

/* ---- checking --------------------------------------------------------- */

static void expect_shape(const tw_tensor *t, unsigned nd, const int64_t *shape)
{
	cr_assert_eq(t->ndim, nd, "ndim %u, expected %u", t->ndim, nd);
	for (unsigned d = 0; d < nd; d++)
		cr_assert_eq(t->shape[d], shape[d], "dim %u: %lld, expected %lld",
			     d, (long long)t->shape[d], (long long)shape[d]);
}

static bool close_enough(double got, double want, double rtol, double atol)
{
	if (isnan(want))
		return isnan(got);
	if (isinf(want))
		return got == want;
	return fabs(got - want) <= atol + rtol * fabs(want);
}

static double rtol_of(tw_dtype dt)
{
	return dt == TW_FLOAT32 ? 2e-6 : dt == TW_FLOAT64 ? 1e-13 : 0;
}

static void expect_values(const tw_tensor *t, const double *want, double rtol,
			  double atol, const char *what)
{
	int64_t n = nel(t);
	for (int64_t k = 0; k < n; k++) {
		double g = flat(t, k);
		if (isf((tw_dtype)t->dtype)) {
			cr_assert(close_enough(g, want[k], rtol, atol),
				  "%s: element %lld is %.9g, expected %.9g", what,
				  (long long)k, g, want[k]);
		} else {
			cr_assert_eq(g, want[k],
				     "%s: element %lld is %.17g, expected %.17g",
				     what, (long long)k, g, want[k]);
		}
	}
}

/* st, the status a kernel just returned, is want; with msg, the reason
 * the kernel recorded (tw_errmsg) is msg, torch's words. */
static void expect_err(tw_status st, tw_status want, const char *msg)
{
	const char *why = tw_errmsg(st);
	cr_assert_eq(st, want, "status %s, expected %s (%s)",
		     tw_status_name(st), tw_status_name(want), why);
	if (msg != NULL)
		cr_assert_str_eq(why, msg);
}

/* ---- reference binary ops --------------------------------------------- */

enum rop { R_ADD, R_SUB, R_MUL, R_DIV, R_DIVT, R_DIVF, R_POW, R_MAX, R_MIN,
	   R_COUNT };

static const char *const rop_name[R_COUNT] = { "add", "sub", "mul", "div",
	"div_trunc", "div_floor", "pow", "maximum", "minimum" };

static double ipow(double b, double e)
{
	if (e < 0)
		return b == 1 ? 1 : b == -1 ? (fmod(-e, 2) != 0 ? -1 : 1) : 0;
	double r = 1;
	for (int i = 0; i < (int)e; i++)
		r *= b;
	return r;
}

/* x, y already converted to the compute dtype rt. */
static double ref_bin(enum rop op, double x, double y, double alpha,
		      tw_dtype rt)
{
	bool f = isf(rt);
	switch (op) {
	case R_ADD:
		if (rt == TW_BOOL)
			return (x != 0) || (alpha != 0 && y != 0);
		return x + alpha * y;
	case R_SUB: return x - alpha * y;
	case R_MUL: return rt == TW_BOOL ? (x != 0 && y != 0) : x * y;
	case R_DIV: return x / y;
	case R_DIVT:
		/* trunc of the quotient as rounded in the compute dtype */
		return rt == TW_FLOAT32 ? truncf((float)x / (float)y) : trunc(x / y);
	case R_DIVF:
		/* Python's //: the floor of the exact quotient (long double
		 * resolves it for these operands), IEEE for a zero divisor */
		if (y == 0)
			return x / y;
		return (double)floorl((long double)x / (long double)y);
	case R_POW: return f ? pow(x, y) : ipow(x, y);
	case R_MAX:
		if (isnan(x) || isnan(y)) return NAN;
		return x > y ? x : y;
	default:
		if (isnan(x) || isnan(y)) return NAN;
		return x < y ? x : y;
	}
}

/* Round a double to what the dtype holds (the reference computes in
 * double from inputs already in the compute dtype). */
static double to_dtype(double v, tw_dtype dt)
{
	switch (dt) {
	case TW_BOOL: return v != 0;
	case TW_INT32: return (double)(int32_t)v;
	case TW_INT64: return (double)(int64_t)v;
	case TW_FLOAT32: return (double)(float)v;
	default: return v;
	}
}

static tw_dtype rank_promote(tw_dtype a, tw_dtype b)
{
	/* bool < int32 < int64 < float32 < float64 among the five. */
	int ra = 0, rb = 0;
	for (int i = 0; i < 5; i++) {
		if (DT5[i] == a) ra = i;
		if (DT5[i] == b) rb = i;
	}
	return ra > rb ? a : b;
}

static tw_status call_bin(enum rop op, const tw_tensor *a, const tw_tensor *b,
			  const tw_scalar *alpha, tw_tensor *out)
{
	switch (op) {
	case R_ADD: return tw_op_add(a, b, alpha, out);
	case R_SUB: return tw_op_sub(a, b, alpha, out);
	case R_MUL: return tw_op_mul(a, b, out);
	case R_DIV: return tw_op_div(a, b, TW_ROUND_NONE, out);
	case R_DIVT: return tw_op_div(a, b, TW_ROUND_TRUNC, out);
	case R_DIVF: return tw_op_div(a, b, TW_ROUND_FLOOR, out);
	case R_POW: return tw_op_pow(a, b, out);
	case R_MAX: return tw_op_maximum(a, b, out);
	default: return tw_op_minimum(a, b, out);
	}
}

static void ref_bcast(const tw_tensor *a, const tw_tensor *b, unsigned *nd,
		      int64_t *shape)
{
	unsigned n = a->ndim > b->ndim ? a->ndim : b->ndim;
	for (unsigned i = 0; i < n; i++) {
		int64_t x = i < a->ndim ? a->shape[a->ndim - 1 - i] : 1;
		int64_t y = i < b->ndim ? b->shape[b->ndim - 1 - i] : 1;
		shape[n - 1 - i] = x == 1 ? y : x;
	}
	*nd = n;
}

/* The element of t that output index oidx (of nd dims) reads. */
static double bread(const tw_tensor *t, unsigned nd, const int64_t *oidx)
{
	int64_t idx[TW_TENSOR_MAX_DIMS];
	unsigned off = nd - t->ndim;
	for (unsigned d = 0; d < t->ndim; d++)
		idx[d] = t->shape[d] == 1 ? 0 : oidx[d + off];
	return getd(t, idx);
}

/*
 * Check out == ref(op)(a, b) with broadcasting, computed in ct and
 * returned as rt (rt differs from ct only for true division of integers).
 */
static void check_bin(enum rop op, const tw_tensor *a, const tw_tensor *b,
		      double alpha, tw_dtype rt, const tw_tensor *out,
		      const char *what)
{
	unsigned nd;
	int64_t shape[TW_TENSOR_MAX_DIMS];
	ref_bcast(a, b, &nd, shape);
	cr_assert_eq(out->dtype, rt, "%s: dtype %s, expected %s", what,
		     tw_dtype_name((tw_dtype)out->dtype), tw_dtype_name(rt));
	expect_shape(out, nd, shape);
	cr_assert(tw_tensor_is_contiguous(out));
	int64_t n = nel(out);
	double *want = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
	int64_t idx[TW_TENSOR_MAX_DIMS];
	for (int64_t k = 0; k < n; k++) {
		unravel(k, nd, shape, idx);
		double x = to_dtype(bread(a, nd, idx), rt);
		double y = to_dtype(bread(b, nd, idx), rt);
		want[k] = to_dtype(ref_bin(op, x, y, alpha, rt), rt);
	}
	double rtol = rtol_of(rt);
	if (op == R_POW)
		rtol *= 8;
	expect_values(out, want, rtol, rt == TW_FLOAT32 ? 1e-6 : 1e-12, what);
	free(want);
}

/* Expected dtype of op on two same-tier operands of dtypes da, db. */
static tw_dtype expect_dtype(enum rop op, tw_dtype da, tw_dtype db)
{
	tw_dtype ct = rank_promote(da, db);
	if (op == R_DIV && !isf(ct))
		return TW_FLOAT32;
	return ct;
}

/* Whether torch refuses op on this promoted dtype. */
static bool refused(enum rop op, tw_dtype da, tw_dtype db)
{
	tw_dtype ct = rank_promote(da, db);
	if (op == R_SUB)
		return da == TW_BOOL || db == TW_BOOL;
	if (op == R_DIVT || op == R_DIVF || op == R_POW)
		return ct == TW_BOOL;
	return false;
}

static enum gen rhs_gen(enum rop op)
{
	if (op == R_DIV || op == R_DIVT || op == R_DIVF)
		return G_NONZERO;
	if (op == R_POW)
		return G_EXP;
	return G_ANY;
}

/* ======================================================================= */

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
	tw_tensor *all[] = { &i32, &f32, &b1, &z64, &zi64, &zi32 };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		tw_tensor_release(all[i]);
}

Test(promote, broadcast_shapes_and_dims)
{
	unsigned nd;
	int64_t out[TW_TENSOR_MAX_DIMS];
	cr_assert_eq(tw_ops_broadcast_shapes(2, SHAPE(3, 1), 2, SHAPE(1, 4),
					     &nd, out), TW_OK);
	cr_assert(nd == 2 && out[0] == 3 && out[1] == 4);
	cr_assert_eq(tw_ops_broadcast_shapes(3, SHAPE(2, 3, 4), 1, SHAPE(4),
					     &nd, out), TW_OK);
	cr_assert(nd == 3 && out[0] == 2 && out[1] == 3 && out[2] == 4);
	cr_assert_eq(tw_ops_broadcast_shapes(0, NULL, 2, SHAPE(0, 5), &nd, out), TW_OK);
	cr_assert(nd == 2 && out[0] == 0 && out[1] == 5);
	expect_err(tw_ops_broadcast_shapes(2, SHAPE(2, 3), 2, SHAPE(2, 4), &nd,
					   out), TW_ERUNTIME,
		   "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1");
	unsigned d;
	cr_assert_eq(tw_ops_wrap_dim(-1, 3, &d), TW_OK);
	cr_assert_eq(d, 2);
	cr_assert_eq(tw_ops_wrap_dim(-1, 0, &d), TW_OK);
	cr_assert_eq(d, 0);
	expect_err(tw_ops_wrap_dim(2, 2, &d), TW_EVALUE,
		   "Dimension out of range (expected to be in range of [-2, 1], but got 2)");
}

/* Every binary op on every dtype, with broadcasting (2,3,4) op (3,1). */
Test(binary, every_op_every_dtype)
{
	for (int op = 0; op < R_COUNT; op++) {
		for (int i = 0; i < 5; i++) {
			tw_dtype dt = DT5[i];
			tw_tensor a = mk(dt, 3, SHAPE(2, 3, 4), 10 + i, G_ANY);
			tw_tensor b = mk(dt, 2, SHAPE(3, 1), 20 + i, rhs_gen(op));
			tw_tensor out;
			tw_status st = call_bin(op, &a, &b, NULL, &out);
			char what[64];
			snprintf(what, sizeof(what), "%s %s", rop_name[op],
				 tw_dtype_name(dt));
			if (refused(op, dt, dt)) {
				cr_assert(st == TW_ERUNTIME || st == TW_ETYPE,
					  "%s accepted", what);
			} else {
				cr_assert_eq(st, TW_OK, "%s: %s", what, tw_errmsg(st));
				check_bin(op, &a, &b, 1, expect_dtype(op, dt, dt),
					  &out, what);
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
				tw_tensor a = mk(DT5[i], 2, SHAPE(3, 1), 30 + i, G_ANY);
				tw_tensor b = mk(DT5[j], 2, SHAPE(1, 4), 40 + j,
						 rhs_gen(op));
				tw_tensor out;
				char what[80];
				snprintf(what, sizeof(what), "%s %s,%s", rop_name[op],
					 tw_dtype_name(DT5[i]), tw_dtype_name(DT5[j]));
				tw_status st = call_bin(op, &a, &b, NULL, &out);
				if (refused(op, DT5[i], DT5[j])) {
					cr_assert_neq(st, TW_OK, "%s accepted", what);
				} else {
					cr_assert_eq(st, TW_OK, "%s: %s", what, tw_errmsg(st));
					check_bin(op, &a, &b, 1,
						  expect_dtype(op, DT5[i], DT5[j]),
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
	struct { tw_dtype a, z, want; } cases[] = {
		{ TW_INT32, TW_FLOAT64, TW_FLOAT64 },
		{ TW_FLOAT32, TW_FLOAT64, TW_FLOAT32 },
		{ TW_INT32, TW_INT64, TW_INT32 },
		{ TW_BOOL, TW_INT32, TW_INT32 },
		{ TW_BOOL, TW_FLOAT64, TW_FLOAT64 },
		{ TW_INT64, TW_FLOAT32, TW_FLOAT32 },
		{ TW_FLOAT64, TW_INT64, TW_FLOAT64 },
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
		{ TW_INT32, { .kind = TW_SCALAR_INT, .i = 5 }, TW_INT32 },
		{ TW_INT32, { .kind = TW_SCALAR_DOUBLE, .d = 2.5 }, TW_FLOAT32 },
		{ TW_INT64, { .kind = TW_SCALAR_DOUBLE, .d = -1.25 }, TW_FLOAT32 },
		{ TW_FLOAT32, { .kind = TW_SCALAR_DOUBLE, .d = 0.1 }, TW_FLOAT32 },
		{ TW_FLOAT64, { .kind = TW_SCALAR_DOUBLE, .d = 0.1 }, TW_FLOAT64 },
		{ TW_FLOAT32, { .kind = TW_SCALAR_INT, .i = 3 }, TW_FLOAT32 },
		{ TW_BOOL, { .kind = TW_SCALAR_INT, .i = 5 }, TW_INT64 },
		{ TW_BOOL, { .kind = TW_SCALAR_BOOL, .b = true }, TW_BOOL },
		{ TW_BOOL, { .kind = TW_SCALAR_DOUBLE, .d = 2.5 }, TW_FLOAT32 },
		{ TW_INT64, { .kind = TW_SCALAR_BOOL, .b = true }, TW_INT64 },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		tw_tensor a = mk(cases[c].a, 2, SHAPE(3, 4), 7 + (uint32_t)c, G_ANY);
		tw_tensor st = scalar_tensor(&cases[c].s, cases[c].want);
		tw_tensor out;
		cr_assert_eq(tw_op_add_scalar(&a, &cases[c].s, NULL, &out),
			     TW_OK, "%s", tw_err_last());
		check_bin(R_ADD, &a, &st, 1, cases[c].want, &out, "add.Scalar");
		tw_tensor_release(&out);
		cr_assert_eq(tw_op_mul_scalar(&a, &cases[c].s, &out), TW_OK);
		check_bin(R_MUL, &a, &st, 1, cases[c].want, &out, "mul.Scalar");
		tw_tensor_release(&out);
		if (cases[c].a != TW_BOOL && cases[c].s.kind != TW_SCALAR_BOOL) {
			cr_assert_eq(tw_op_sub_scalar(&a, &cases[c].s, NULL,
						      &out), TW_OK);
			check_bin(R_SUB, &a, &st, 1, cases[c].want, &out,
				  "sub.Scalar");
			tw_tensor_release(&out);
			cr_assert_eq(tw_op_rsub_scalar(&a, &cases[c].s, NULL,
						       &out), TW_OK);
			check_bin(R_SUB, &st, &a, 1, cases[c].want, &out,
				  "rsub.Scalar");
			tw_tensor_release(&out);
		}
		if (tw_scalar_to_double(&cases[c].s) != 0) {
			tw_dtype dw = isf(cases[c].want) ? cases[c].want : TW_FLOAT32;
			cr_assert_eq(tw_op_div_scalar(&a, &cases[c].s,
						      TW_ROUND_NONE, &out), TW_OK);
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
	cr_assert_eq(tw_op_add_scalar(&fa, &half, &three, &out),
		     TW_OK);
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

	expect_err(tw_op_add(&a, &b, &half, &out), TW_ERUNTIME,
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

	tw_tensor *all[] = { &a, &b, &fa, &ba, &bb };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		tw_tensor_release(all[i]);
}

Test(binary, integer_wraparound)
{
	tw_tensor a = mk_vals(TW_INT32, 1, SHAPE(3),
			      (double[]){ INT32_MAX, INT32_MIN, 65536 });
	tw_tensor b = mk_vals(TW_INT32, 1, SHAPE(3), (double[]){ 1, -1, 65536 });
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
	cr_assert_eq(tw_op_div(&a, &b, TW_ROUND_TRUNC, &out),
		     TW_OK);
	cr_assert_eq(flati(&out, 1), INT32_MIN); /* INT_MIN / -1 */
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_div(&a, &b, TW_ROUND_FLOOR, &out),
		     TW_OK);
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
	expect_err(tw_op_sub(&b, &b, NULL, &out), TW_ERUNTIME,
		   "Subtraction, the `-` operator, with two bool tensors is not supported. Use the `^` or `logical_xor()` operator instead.");
	const char *one = "Subtraction, the `-` operator, with a bool tensor is not supported. If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.";
	expect_err(tw_op_sub(&b, &i, NULL, &out), TW_ERUNTIME, one);
	expect_err(tw_op_sub(&i, &b, NULL, &out), TW_ERUNTIME, one);
	tw_scalar t = tw_scalar_bool(true);
	expect_err(tw_op_sub_scalar(&i, &t, NULL, &out),
		   TW_ERUNTIME, one);
	tw_tensor_release(&b);
	tw_tensor_release(&i);
}

Test(binary, division)
{
	tw_tensor a = mk_vals(TW_INT64, 1, SHAPE(6), (double[]){ 7, -7, 7, -7, 0, 1 });
	tw_tensor b = mk_vals(TW_INT64, 1, SHAPE(6), (double[]){ 2, 2, -2, -2, 0, 0 });
	tw_tensor out;
	/* True division: int / int -> float32; by zero -> nan / inf. */
	cr_assert_eq(tw_op_div(&a, &b, TW_ROUND_NONE, &out), TW_OK);
	cr_assert_eq(out.dtype, TW_FLOAT32);
	expect_values(&out, (double[]){ 3.5, -3.5, -3.5, 3.5, NAN, INFINITY }, 0, 0,
		      "int true div");
	tw_tensor_release(&out);
	/* Rounding modes on the nonzero part. */
	tw_tensor a4 = mk_vals(TW_INT64, 1, SHAPE(4), (double[]){ 7, -7, 7, -7 });
	tw_tensor b4 = mk_vals(TW_INT64, 1, SHAPE(4), (double[]){ 2, 2, -2, -2 });
	cr_assert_eq(tw_op_div(&a4, &b4, TW_ROUND_TRUNC, &out), TW_OK);
	cr_assert_eq(out.dtype, TW_INT64);
	expect_values(&out, (double[]){ 3, -3, -3, 3 }, 0, 0, "trunc");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_div(&a4, &b4, TW_ROUND_FLOOR, &out), TW_OK);
	expect_values(&out, (double[]){ 3, -4, -4, 3 }, 0, 0, "floor");
	tw_tensor_release(&out);
	/* Integer division by zero is torch's ZeroDivisionError. */
	expect_err(tw_op_div(&a, &b, TW_ROUND_FLOOR, &out),
		   TW_EVALUE, "ZeroDivisionError");
	expect_err(tw_op_div(&a, &b, TW_ROUND_TRUNC, &out),
		   TW_EVALUE, "ZeroDivisionError");
	tw_scalar zero = tw_scalar_int(0);
	expect_err(tw_op_div_scalar(&a, &zero, TW_ROUND_FLOOR, &out), TW_EVALUE, "ZeroDivisionError");
	/* Floats: floor is Python's //, by zero IEEE. */
	tw_tensor fa = mk_vals(TW_FLOAT64, 1, SHAPE(5), (double[]){ 7.5, -7.5, 1, -1, 0 });
	tw_tensor fb = mk_vals(TW_FLOAT64, 1, SHAPE(5), (double[]){ 2, 2, 0, 0, 0 });
	cr_assert_eq(tw_op_div(&fa, &fb, TW_ROUND_FLOOR, &out), TW_OK);
	expect_values(&out, (double[]){ 3, -4, INFINITY, -INFINITY, NAN }, 0, 0,
		      "float floor");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_div(&fa, &fb, TW_ROUND_TRUNC, &out), TW_OK);
	expect_values(&out, (double[]){ 3, -3, INFINITY, -INFINITY, NAN }, 0, 0,
		      "float trunc");
	tw_tensor_release(&out);
	/* Bool with a rounding mode is refused. */
	tw_tensor bb = mk(TW_BOOL, 1, SHAPE(2), 1, G_ANY);
	expect_err(tw_op_div(&bb, &bb, TW_ROUND_FLOOR, &out),
		   TW_ETYPE, "\"div_floor_cpu\" not implemented for 'Bool'");
	/* bool / bool true division is float32. */
	cr_assert_eq(tw_op_div(&bb, &bb, TW_ROUND_NONE, &out), TW_OK);
	cr_assert_eq(out.dtype, TW_FLOAT32);
	tw_tensor_release(&out);
	tw_rounding rm;
	cr_assert_eq(tw_ops_rounding_from_name(NULL, &rm), TW_OK);
	cr_assert_eq(rm, TW_ROUND_NONE);
	cr_assert_eq(tw_ops_rounding_from_name("floor", &rm), TW_OK);
	cr_assert_eq(rm, TW_ROUND_FLOOR);
	expect_err(tw_ops_rounding_from_name("round", &rm),
		   TW_EVALUE,
		   "div expected rounding_mode to be one of None, 'trunc', or 'floor' but found 'round'");
	tw_tensor *all[] = { &a, &b, &a4, &b4, &fa, &fb, &bb };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		tw_tensor_release(all[i]);
}

Test(binary, pow)
{
	tw_tensor out;
	/* Integer Tensor_Tensor with negative exponents: 0, 1 or -1. */
	tw_tensor a = mk_vals(TW_INT32, 1, SHAPE(6), (double[]){ 2, 1, -1, -1, 3, -2 });
	tw_tensor e = mk_vals(TW_INT32, 1, SHAPE(6), (double[]){ -1, -3, -3, -2, 4, 3 });
	cr_assert_eq(tw_op_pow(&a, &e, &out), TW_OK);
	expect_values(&out, (double[]){ 0, 1, -1, 1, 81, -8 }, 0, 0, "powi");
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
	const double exps[] = { 2, 3, 0.5, -0.5, -1, -2, 1.5, 0, 1, 4 };
	for (int i = 1; i < 5; i++) {
		tw_tensor x = mk(DT5[i], 2, SHAPE(3, 5), 50 + i, G_POS);
		for (size_t k = 0; k < sizeof(exps) / sizeof(exps[0]); k++) {
			bool integral_exp = exps[k] == floor(exps[k]);
			tw_scalar s = integral_exp ? tw_scalar_int((int64_t)exps[k])
						   : tw_scalar_double(exps[k]);
			tw_status st = tw_op_pow_scalar(&x, &s, &out);
			if (!isf(DT5[i]) && integral_exp && exps[k] < 0) {
				cr_assert_eq(st, TW_ERUNTIME);
				continue;
			}
			cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
			tw_dtype rt = isf(DT5[i]) ? DT5[i]
				      : integral_exp ? DT5[i] : TW_FLOAT32;
			tw_tensor se = scalar_tensor(&s, rt);
			check_bin(R_POW, &x, &se, 1, rt, &out, "pow.Tensor_Scalar");
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
	tw_tensor a = mk_vals(TW_FLOAT32, 1, SHAPE(4), (double[]){ NAN, 1, 5, -2 });
	tw_tensor b = mk_vals(TW_FLOAT32, 1, SHAPE(4), (double[]){ 1, NAN, 3, -1 });
	tw_tensor out;
	cr_assert_eq(tw_op_maximum(&a, &b, &out), TW_OK);
	expect_values(&out, (double[]){ NAN, NAN, 5, -1 }, 0, 0, "maximum");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_minimum(&a, &b, &out), TW_OK);
	expect_values(&out, (double[]){ NAN, NAN, 3, -2 }, 0, 0, "minimum");
	tw_tensor_release(&out);
	tw_tensor_release(&a);
	tw_tensor_release(&b);
}

Test(binary, float_division_by_zero)
{
	tw_tensor a = mk_vals(TW_FLOAT32, 1, SHAPE(3), (double[]){ 1, -1, 0 });
	tw_scalar z = tw_scalar_double(0.0);
	tw_tensor out;
	cr_assert_eq(tw_op_div_scalar(&a, &z, TW_ROUND_NONE, &out),
		     TW_OK);
	expect_values(&out, (double[]){ INFINITY, -INFINITY, NAN }, 0, 0, "x / 0.");
	tw_tensor_release(&out);
	tw_tensor_release(&a);
}

/* ---- unary ------------------------------------------------------------- */

enum uop { U_NEG, U_ABS, U_RELU, U_SIGMOID, U_TANH, U_EXP, U_LOG, U_SQRT, U_N };
static const char *const uop_name[U_N] = { "neg", "abs", "relu", "sigmoid",
	"tanh", "exp", "log", "sqrt" };

static tw_status call_un(int op, const tw_tensor *a, tw_tensor *out)
{
	switch (op) {
	case U_NEG: return tw_op_neg(a, out);
	case U_ABS: return tw_op_abs(a, out);
	case U_RELU: return tw_op_relu(a, out);
	case U_SIGMOID: return tw_op_sigmoid(a, out);
	case U_TANH: return tw_op_tanh(a, out);
	case U_EXP: return tw_op_exp(a, out);
	case U_LOG: return tw_op_log(a, out);
	default: return tw_op_sqrt(a, out);
	}
}

static double ref_un(int op, double x)
{
	switch (op) {
	case U_NEG: return -x;
	case U_ABS: return fabs(x);
	case U_RELU: return x < 0 ? 0 : x;
	case U_SIGMOID: return 1 / (1 + exp(-x));
	case U_TANH: return tanh(x);
	case U_EXP: return exp(x);
	case U_LOG: return log(x);
	default: return sqrt(x);
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
				cr_assert_eq(st, TW_OK, "%s %s: %s", uop_name[op],
					     tw_dtype_name(dt), tw_errmsg(st));
				tw_dtype rt = keeps ? dt : dt == TW_FLOAT64 ? TW_FLOAT64
									  : TW_FLOAT32;
				cr_assert_eq(out.dtype, rt, "%s %s", uop_name[op],
					     tw_dtype_name(dt));
				expect_shape(&out, 2, SHAPE(5, 7));
				double want[35];
				for (int k = 0; k < 35; k++)
					want[k] = to_dtype(ref_un(op, to_dtype(flat(a, k), rt)), rt);
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
	expect_err(tw_op_neg(&b, &out), TW_ERUNTIME,
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
	tw_tensor a = mk_vals(TW_FLOAT64, 1, SHAPE(3), (double[]){ NAN, -1, 2 });
	tw_tensor out;
	cr_assert_eq(tw_op_relu(&a, &out), TW_OK);
	expect_values(&out, (double[]){ NAN, 0, 2 }, 0, 0, "relu");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_cast(&a, TW_INT32, &out), TW_OK);
	expect_values(&out, (double[]){ INT32_MIN, -1, 2 }, 0, 0, "cast nan->int");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_cast(&a, TW_BOOL, &out), TW_OK);
	expect_values(&out, (double[]){ 1, 1, 1 }, 0, 0, "cast -> bool");
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
							&out), TW_OK);
				cr_assert_eq(out.dtype, DT5[j]);
				expect_shape(&out, 2, SHAPE(9, 33));
				cr_assert(tw_tensor_is_contiguous(&out));
				for (int64_t k = 0; k < 9 * 33; k++) {
					double x = flat(&a0, k);
					double want = DT5[j] == TW_BOOL ? x != 0
						      : isf(DT5[j]) ? to_dtype(x, DT5[j])
								    : trunc(x);
					cr_assert_eq(flat(&out, k), want, "%s -> %s",
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
	tw_tensor f = mk_vals(TW_FLOAT32, 1, SHAPE(3), (double[]){ 1e20, -1e20, NAN });
	tw_tensor out;
	cr_assert_eq(tw_op_cast(&f, TW_INT64, &out), TW_OK);
	cr_assert(flati(&out, 0) == INT64_MIN && flati(&out, 1) == INT64_MIN &&
		  flati(&out, 2) == INT64_MIN);
	tw_tensor_release(&out);
	tw_tensor l = mk_vals(TW_INT64, 1, SHAPE(1), (double[]){ 4294967297.0 });
	cr_assert_eq(tw_op_cast(&l, TW_INT32, &out), TW_OK);
	cr_assert_eq(flati(&out, 0), 1);
	tw_tensor_release(&out);
	tw_tensor_release(&l);
	tw_tensor_release(&f);
}

/* ---- reductions -------------------------------------------------------- */

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
	bool mask[TW_TENSOR_MAX_DIMS] = { false };
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
	tw_dtype want_dt = mean ? (tw_dtype)a->dtype
				: isf((tw_dtype)a->dtype) ? (tw_dtype)a->dtype : TW_INT64;
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
	const int64_t d0[] = { 0 }, d1[] = { -1 }, d02[] = { 0, 2 }, d21[] = { 2, 1 };
	struct { const int64_t *dims; unsigned n; } sets[] = {
		{ NULL, 0 }, { d0, 1 }, { d1, 1 }, { d02, 2 }, { d21, 2 },
	};
	for (int i = 0; i < 5; i++) {
		tw_tensor a0 = mk(DT5[i], 3, SHAPE(3, 4, 5), 70 + i, G_ANY);
		tw_tensor an = noncontig(&a0);
		for (int nc = 0; nc < 2; nc++) {
			const tw_tensor *a = nc ? &an : &a0;
			for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
				for (int kd = 0; kd < 2; kd++) {
					check_reduce(a, sets[s].dims, sets[s].n, kd, false);
					if (isf(DT5[i]))
						check_reduce(a, sets[s].dims, sets[s].n, kd, true);
				}
			}
		}
		tw_tensor_release(&a0);
		tw_tensor_release(&an);
	}
}

Test(reduce, mean_refuses_integers)
{
	const char *names[] = { "Bool", "Int", "Long" };
	for (int i = 0; i < 3; i++) {
		tw_tensor a = mk(DT5[i], 1, SHAPE(4), 1, G_ANY);
		tw_tensor out;
		char msg[200];
		snprintf(msg, sizeof(msg),
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
		expect_err(tw_op_mean(&a, NULL, 0, false, &i64, &out),
			   TW_ERUNTIME,
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
		   TW_ERUNTIME, "dim 0 appears multiple times in the list of dims");
	expect_err(tw_op_sum(&a, SHAPE(2), 1, false, NULL, &out),
		   TW_EVALUE,
		   "Dimension out of range (expected to be in range of [-2, 1], but got 2)");
	/* Zero-dim input: dim 0 / -1 is allowed and keeps zero dims. */
	tw_tensor z = mk(TW_FLOAT64, 0, NULL, 1, G_ANY);
	cr_assert_eq(tw_op_sum(&z, SHAPE(-1), 1, true, NULL, &out),
		     TW_OK);
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
	cr_assert_eq(tw_op_sum(&a, SHAPE(0), 1, false, NULL, &out),
		     TW_OK);
	expect_shape(&out, 1, SHAPE(3));
	expect_values(&out, (double[]){ 0, 0, 0 }, 0, 0, "sum over empty dim");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_mean(&a, SHAPE(0), 1, true, NULL, &out),
		     TW_OK);
	expect_shape(&out, 2, SHAPE(1, 3));
	cr_assert(isnan(flat(&out, 0)) && isnan(flat(&out, 2)));
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_sum(&a, SHAPE(1), 1, false, NULL, &out),
		     TW_OK);
	expect_shape(&out, 1, SHAPE(0));
	tw_tensor_release(&out);

	expect_err(tw_op_max(&a, &out), TW_ERUNTIME,
		   "max(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim with the 'dim' argument.");
	expect_err(tw_op_min(&a, &out), TW_ERUNTIME,
		   "min(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim with the 'dim' argument.");
	expect_err(tw_op_argmax(&a, NULL, false, &out), TW_ERUNTIME,
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
					      (!isnan(best) && (is_max ? x > best : x < best));
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
				cr_assert_eq((is_max ? tw_op_max : tw_op_min)(a, &out), TW_OK);
				cr_assert_eq(out.ndim, 0);
				cr_assert_eq(out.dtype, DT5[i]);
				cr_assert_eq(flat(&out, 0), vals[0]);
				tw_tensor_release(&out);
				tw_status st = (is_max ? tw_op_argmax : tw_op_argmin)(a, NULL, false, &out);
				if (DT5[i] == TW_BOOL) {
					expect_err(st, TW_ETYPE, is_max
						   ? "\"argmax_cpu\" not implemented for 'Bool'"
						   : "\"argmin_cpu\" not implemented for 'Bool'");
				} else {
					cr_assert_eq(st, TW_OK);
					cr_assert_eq(out.dtype, TW_INT64);
					cr_assert_eq(out.ndim, 0);
					cr_assert_eq(flati(&out, 0), idxs[0]);
					tw_tensor_release(&out);
					cr_assert_eq((is_max ? tw_op_argmax : tw_op_argmin)(a, NULL, true, &out), TW_OK);
					expect_shape(&out, 3, SHAPE(1, 1, 1));
					tw_tensor_release(&out);
				}
				/* Each dim, keepdim or not. */
				for (int d = 0; d < 3; d++) {
					ref_extreme(a, d, is_max, vals, idxs);
					for (int kd = 0; kd < 2; kd++) {
						int64_t dim = d - (kd ? 3 : 0); /* negative too */
						cr_assert_eq((is_max ? tw_op_max_dim : tw_op_min_dim)(a, dim, kd, &v, &ix), TW_OK);
						int64_t shape[3];
						unsigned ond = 0;
						for (int k = 0; k < 3; k++)
							if (k != d)
								shape[ond++] = a->shape[k];
							else if (kd)
								shape[ond++] = 1;
						expect_shape(&v, ond, shape);
						expect_shape(&ix, ond, shape);
						cr_assert_eq(v.dtype, DT5[i]);
						cr_assert_eq(ix.dtype, TW_INT64);
						int64_t n = nel(&v);
						for (int64_t k = 0; k < n; k++) {
							cr_assert_eq(flat(&v, k), vals[k]);
							cr_assert_eq(flati(&ix, k), idxs[k], "dim %d elem %lld", d, (long long)k);
						}
						tw_tensor_release(&v);
						tw_tensor_release(&ix);
						if (DT5[i] == TW_BOOL)
							continue;
						cr_assert_eq((is_max ? tw_op_argmax : tw_op_argmin)(a, &dim, kd, &out), TW_OK);
						expect_shape(&out, ond, shape);
						for (int64_t k = 0; k < n; k++)
							cr_assert_eq(flati(&out, k), idxs[k]);
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
			      (double[]){ 1, NAN, 9, NAN, -3, 2, 8, 1 });
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

/* ---- linalg ------------------------------------------------------------ */

/* Reference matmul with torch's semantics (shapes from the test). */
static void check_matmul(const tw_tensor *a, const tw_tensor *b,
			 const tw_tensor *out, unsigned ond, const int64_t *oshape)
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
	double eps = a->dtype == TW_FLOAT32 ? 6e-8 : a->dtype == TW_FLOAT64 ? 1.2e-16 : 0;
	int64_t bidx[TW_TENSOR_MAX_DIMS], ia[TW_TENSOR_MAX_DIMS], ib[TW_TENSOR_MAX_DIMS];
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
						is = (int64_t)((uint64_t)is + (uint64_t)geti(a, ia) * (uint64_t)geti(b, ib));
				}
				if (isf((tw_dtype)a->dtype)) {
					double g = flat(out, o);
					double tol = 2 * (double)(k + 1) * eps * sabs + 1e-30;
					cr_assert(fabs(g - s) <= tol,
						  "matmul elem %lld: %.9g vs %.9g", (long long)o, g, s);
				} else if (a->dtype == TW_INT32) {
					cr_assert_eq(flati(out, o), (int32_t)(uint32_t)is);
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
			mm_case(dt, 2, SHAPE(5, 7), 1, SHAPE(7), 1, SHAPE(5), tr);
			mm_case(dt, 1, SHAPE(7), 2, SHAPE(7, 3), 1, SHAPE(3), tr);
			mm_case(dt, 2, SHAPE(5, 7), 2, SHAPE(7, 3), 2, SHAPE(5, 3), tr);
			mm_case(dt, 2, SHAPE(13, 300), 2, SHAPE(300, 37), 2, SHAPE(13, 37), tr);
			mm_case(dt, 3, SHAPE(2, 5, 7), 2, SHAPE(7, 3), 3, SHAPE(2, 5, 3), tr);
			mm_case(dt, 2, SHAPE(5, 7), 3, SHAPE(2, 7, 3), 3, SHAPE(2, 5, 3), tr);
			mm_case(dt, 3, SHAPE(2, 5, 7), 1, SHAPE(7), 2, SHAPE(2, 5), tr);
			mm_case(dt, 1, SHAPE(7), 3, SHAPE(2, 7, 3), 2, SHAPE(2, 3), tr);
			mm_case(dt, 4, SHAPE(2, 1, 5, 7), 3, SHAPE(3, 7, 4), 4,
				SHAPE(2, 3, 5, 4), tr);
			/* Empty shapes. */
			mm_case(dt, 2, SHAPE(0, 7), 2, SHAPE(7, 3), 2, SHAPE(0, 3), tr);
			mm_case(dt, 2, SHAPE(5, 0), 2, SHAPE(0, 3), 2, SHAPE(5, 3), tr);
			mm_case(dt, 3, SHAPE(0, 5, 7), 2, SHAPE(7, 3), 3, SHAPE(0, 5, 3), tr);
		}
	}
}

Test(linalg, mm_large_256)
{
	mm_case(TW_FLOAT32, 2, SHAPE(256, 256), 2, SHAPE(256, 256), 2,
		SHAPE(256, 256), false);
	mm_case(TW_FLOAT64, 2, SHAPE(13, 260), 2, SHAPE(260, 1030), 2,
		SHAPE(13, 1030), true);
	mm_case(TW_INT64, 2, SHAPE(97, 300), 2, SHAPE(300, 45), 2, SHAPE(97, 45),
		false);
}

Test(linalg, broadcast_stride0_operand)
{
	/* b: a (4, 3) matrix whose rows are all one 3-vector (stride 0). */
	float row[3] = { 1.5f, -2, 0.25f };
	tw_tensor b;
	cr_assert_eq(tw_tensor_init(&b, TW_FLOAT32, 2, SHAPE(4, 3), SHAPE(0, 1),
				    row, NULL), TW_OK);
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
	expect_err(tw_op_mm(&a, &d, &out), TW_ERUNTIME,
		   "expected mat1 and mat2 to have the same dtype, but got: float != double");
	expect_err(tw_op_matmul(&v, &vd, &out), TW_ERUNTIME,
		   "dot : expected both vectors to have same dtype, but found Float and Double");
	expect_err(tw_op_matmul(&v, &v4, &out), TW_ERUNTIME,
		   "inconsistent tensor size, expected tensor [3] and src [4] to have the same number of elements, but got 3 and 4 elements respectively");
	expect_err(tw_op_matmul(&a, &v4, &out), TW_ERUNTIME,
		   "size mismatch, got input (2), mat (2x3), vec (4)");
	expect_err(tw_op_matmul(&z, &v, &out), TW_ERUNTIME,
		   "both arguments to matmul need to be at least 1D, but they are 0D and 1D");
	expect_err(tw_op_mm(&bo, &bo, &out), TW_ETYPE,
		   "\"addmm_impl_cpu_\" not implemented for 'Bool'");
	expect_err(tw_op_matmul(&a, &b3, &out), TW_ERUNTIME,
		   "Expected size for first two dimensions of batch2 tensor to be: [2, 3] but got: [2, 4].");
	expect_err(tw_op_matmul(&a3, &b3, &out), TW_ERUNTIME,
		   "The size of tensor a (3) must match the size of tensor b (2) at non-singleton dimension 0");
	tw_tensor *all[] = { &a, &b, &d, &v, &v4, &vd, &z, &bo, &b3, &a3 };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		tw_tensor_release(all[i]);
}

/* ---- shape ops --------------------------------------------------------- */

static void expect_same_values(const tw_tensor *got, const tw_tensor *want)
{
	int64_t n = nel(want);
	cr_assert_eq(nel(got), n);
	for (int64_t k = 0; k < n; k++)
		cr_assert_eq(flat(got, k), flat(want, k), "element %lld", (long long)k);
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
			cr_assert_eq(getd(&t, (int64_t[]){ j, i }), getd(&a, (int64_t[]){ i, j }));
	tw_tensor_release(&a); /* the view keeps the bytes alive */
	cr_assert_eq(getd(&t, (int64_t[]){ 0, 0 }), getd(&t, (int64_t[]){ 0, 0 }));
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
	cr_assert_eq(getd(&t, (int64_t[]){ 3, 1, 0 }), getd(&c, (int64_t[]){ 0, 1, 3 }));
	tw_tensor_release(&t);
	expect_err(tw_op_transpose(&c, 0, 3, &t), TW_EVALUE,
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
	expect_err(tw_op_view(&t, SHAPE(24), 1, &v), TW_ERUNTIME,
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
	expect_err(tw_op_reshape(&e, SHAPE(0, -1), 2, &r), TW_ERUNTIME,
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
				cr_assert_eq(getd(&out, (int64_t[]){ i, j }),
					     (double)(float)getd(&ts[t], (int64_t[]){ i, c }));
	}
	tw_tensor_release(&out);
	/* Along dim 0 with a legacy empty 1-D tensor skipped. */
	tw_tensor e = mk(TW_FLOAT64, 1, SHAPE(0), 1, G_ANY);
	tw_tensor two[3] = { ts[0], e, ts[0] };
	cr_assert_eq(tw_op_cat(two, 3, 0, &out), TW_OK);
	cr_assert_eq(out.dtype, TW_FLOAT64); /* still promotes */
	expect_shape(&out, 2, SHAPE(4, 3));
	for (int64_t k = 0; k < 12; k++)
		cr_assert_eq(flat(&out, k), flat(&ts[0], k % 6));
	tw_tensor_release(&out);
	/* Errors. */
	expect_err(tw_op_cat(ts, 0, 0, &out), TW_ERUNTIME,
		   "torch.cat(): expected a non-empty list of Tensors");
	expect_err(tw_op_cat(ts, 3, 0, &out), TW_ERUNTIME,
		   "Sizes of tensors must match except in dimension 0. Expected size 3 but got size 1 for tensor number 1 in the list.");
	tw_tensor z = mk(TW_INT32, 0, NULL, 1, G_ANY);
	tw_tensor zz[2] = { ts[0], z };
	expect_err(tw_op_cat(zz, 2, 0, &out), TW_ERUNTIME,
		   "zero-dimensional tensor (at position 1) cannot be concatenated");
	tw_tensor three = mk(TW_INT32, 3, SHAPE(2, 3, 1), 1, G_ANY);
	tw_tensor mix[2] = { ts[0], three };
	expect_err(tw_op_cat(mix, 2, 0, &out), TW_ERUNTIME,
		   "Tensors must have same number of dimensions: got 2 and 3");
	expect_err(tw_op_cat(ts, 3, 2, &out), TW_EVALUE,
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
		ts[i] = mk(i == 1 ? TW_BOOL : TW_INT32, 2, SHAPE(2, 3), 10 + i, G_ANY);
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
					int64_t oi[3], s[2] = { i, j };
					for (unsigned k = 0, q = 0; k < 3; k++)
						oi[k] = k == d ? t : s[q++];
					cr_assert_eq(getd(&out, oi), getd(&ts[t], s));
				}
		tw_tensor_release(&out);
	}
	tw_tensor out;
	expect_err(tw_op_stack(ts, 0, 0, &out), TW_ERUNTIME,
		   "stack expects a non-empty TensorList");
	tw_tensor other = mk(TW_INT32, 2, SHAPE(2, 4), 1, G_ANY);
	tw_tensor bad[2] = { ts[0], other };
	expect_err(tw_op_stack(bad, 2, 0, &out), TW_ERUNTIME,
		   "stack expects each tensor to be equal size, but got [2, 3] at entry 0 and [2, 4] at entry 1");
	expect_err(tw_op_stack(ts, 3, 3, &out), TW_EVALUE,
		   "Dimension out of range (expected to be in range of [-3, 2], but got 3)");
	/* Zero-dim tensors stack into a vector. */
	tw_tensor zs[2] = { mk(TW_FLOAT32, 0, NULL, 1, G_ANY), mk(TW_FLOAT32, 0, NULL, 2, G_ANY) };
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

/* ---- factories --------------------------------------------------------- */

Test(factory, zeros_ones_full)
{
	tw_tensor t;
	cr_assert_eq(tw_op_zeros(2, SHAPE(2, 3), NULL, &t), TW_OK);
	cr_assert_eq(t.dtype, TW_FLOAT32);
	expect_values(&t, (double[]){ 0, 0, 0, 0, 0, 0 }, 0, 0, "zeros");
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
	struct { tw_scalar s; tw_dtype want; double v; } cases[] = {
		{ { .kind = TW_SCALAR_BOOL, .b = true }, TW_BOOL, 1 },
		{ { .kind = TW_SCALAR_INT, .i = -7 }, TW_INT64, -7 },
		{ { .kind = TW_SCALAR_DOUBLE, .d = 2.5 }, TW_FLOAT32, 2.5 },
	};
	for (int c = 0; c < 3; c++) {
		cr_assert_eq(tw_op_full(2, SHAPE(3, 5), &cases[c].s, NULL, &t), TW_OK);
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
	expect_err(tw_op_zeros(2, SHAPE(-1, 2), NULL, &t), TW_ERUNTIME,
		   "Trying to create tensor with negative dimension -1: [-1, 2]");
	expect_err(tw_op_ones(2, SHAPE(INT64_MAX, 4), NULL, &t),
		   TW_EOVERFLOW, NULL);
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
		cr_assert(close_enough(flat(&t, k), to_dtype(first + step * (double)k, want_dt),
				       1e-6, 1e-6), "arange elem %lld: %g", (long long)k,
			  flat(&t, k));
	tw_tensor_release(&t);
}

Test(factory, arange)
{
	tw_scalar i0 = tw_scalar_int(0), i10 = tw_scalar_int(10), i3 = tw_scalar_int(3);
	tw_scalar im3 = tw_scalar_int(-3), im10 = tw_scalar_int(-10), i1 = tw_scalar_int(1);
	tw_dtype i32 = TW_INT32, f64 = TW_FLOAT64;
	arange_case(i0, i10, i3, NULL, TW_INT64, 4, 0, 3);
	arange_case(i0, im10, im3, NULL, TW_INT64, 4, 0, -3);
	arange_case(i0, i10, i1, &i32, TW_INT32, 10, 0, 1);
	arange_case(i0, i0, i1, NULL, TW_INT64, 0, 0, 1);
	arange_case(tw_scalar_double(1), tw_scalar_double(2.5), i1, NULL, TW_FLOAT32, 2, 1, 1);
	arange_case(i0, i1, tw_scalar_double(0.1), NULL, TW_FLOAT32, 10, 0, 0.1);
	arange_case(i0, i1, tw_scalar_double(0.1), &f64, TW_FLOAT64, 10, 0, 0.1);
	arange_case(tw_scalar_double(-1), tw_scalar_double(1), tw_scalar_double(0.5), &i32,
		    TW_INT32, 4, -1, 0); /* the step truncates to 0, as torch */
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
	tw_scalar s = tw_scalar_double(-1), e = tw_scalar_double(1), st = tw_scalar_double(0.5);
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
	cr_assert_eq(memcmp(a.data, b.data, (size_t)n * 4), 0, "same seed, same values");
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
			     (double)(tw_ops_random_u64(7, (uint64_t)k) >> 11) * 0x1.0p-53);
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
		cr_assert(fabs(s4 / (double)n - 3) < 0.1, "randn kurtosis %g", s4 / (double)n);
		/* P(|x| > 3) = 0.0027 */
		cr_assert(beyond3 > 400 && beyond3 < 700, "tail %lld", (long long)beyond3);
		tw_tensor_release(&a);
		tw_tensor_release(&b);
	}
	tw_dtype i64 = TW_INT64;
	expect_err(tw_op_rand(1, SHAPE(2), 1, &i64, &a), TW_ETYPE,
		   "\"check_uniform_bounds\" not implemented for 'Long'");
	expect_err(tw_op_randn(1, SHAPE(2), 1, &i64, &a), TW_ETYPE,
		   "\"normal_kernel_cpu\" not implemented for 'Long'");
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
	cr_assert_eq(tw_op_div_scalar(&ei, &zero, TW_ROUND_TRUNC, &out),
		     TW_OK);
	tw_tensor_release(&out);
	tw_tensor_release(&ei);
	tw_tensor_release(&e);
	tw_tensor_release(&v);
	tw_tensor_release(&z);
}

Test(edge, eight_dims)
{
	tw_tensor a = mk(TW_FLOAT64, 8, SHAPE(2, 1, 2, 1, 2, 1, 2, 1), 1, G_ANY);
	tw_tensor b = mk(TW_INT32, 8, SHAPE(1, 2, 1, 2, 1, 2, 1, 3), 2, G_ANY);
	tw_tensor out;
	cr_assert_eq(tw_op_add(&a, &b, NULL, &out), TW_OK);
	check_bin(R_ADD, &a, &b, 1, TW_FLOAT64, &out, "8-d add");
	tw_tensor_release(&out);
	tw_tensor an = noncontig(&a);
	cr_assert_eq(tw_op_mul(&an, &b, &out), TW_OK);
	check_bin(R_MUL, &an, &b, 1, TW_FLOAT64, &out, "8-d mul noncontig");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_sum(&b, SHAPE(1, 3, 7), 3, true, NULL, &out),
		     TW_OK);
	expect_shape(&out, 8, SHAPE(1, 1, 1, 1, 1, 2, 1, 1));
	tw_tensor_release(&out);
	/* Broadcasting past 8 dims is refused, not overrun. */
	tw_tensor_release(&an);
	tw_tensor_release(&a);
	tw_tensor_release(&b);
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
		cr_assert_eq(((int64_t *)out.data)[k], 2 * ((int64_t *)c.data)[k]);
	tw_tensor_release(&out);
	tw_tensor_release(&c);
	tw_tensor_release(&a);
	tw_tensor_release(&b);
}

Test(edge, broadcast_views_and_strides)
{
	/* An expanded (stride 0) view and a strided slice as inputs. */
	double row[5] = { 1, 2, 3, 4, 5 };
	tw_tensor ex;
	cr_assert_eq(tw_tensor_init(&ex, TW_FLOAT64, 2, SHAPE(3, 5), SHAPE(0, 1), row,
				    NULL), TW_OK);
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
	expect_values(&out, (double[]){ 3, 6, 9, 12, 15 }, 0, 0, "sum of expanded");
	tw_tensor_release(&out);
	cr_assert_eq(tw_op_argmax(&every2, (int64_t[]){ 1 }, false, &out),
		     TW_OK);
	tw_tensor_release(&out);
	tw_tensor_release(&big);
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
	expect_err(tw_op_add(&a, &b, NULL, &out), TW_ERUNTIME,
		   "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 0");
	/* Misaligned data is refused by compute kernels; clone realigns. */
	_Alignas(8) uint8_t raw8[4 * 5];
	memset(raw8, 0, sizeof(raw8));
	tw_tensor mis;
	cr_assert_eq(tw_tensor_init(&mis, TW_FLOAT32, 1, SHAPE(4), NULL, raw8 + 1, NULL),
		     TW_OK);
	expect_err(tw_op_neg(&mis, &out), TW_EINVAL,
		   "neg(): tensor data is not aligned to its 4-byte elements (clone it first)");
	tw_tensor al;
	cr_assert_eq(tw_op_clone(&mis, &al), TW_OK);
	cr_assert_eq(tw_op_neg(&al, &out), TW_OK);
	tw_tensor_release(&out);
	tw_tensor_release(&al);
	/* Bool bytes other than 0/1 read as true. */
	uint8_t raw[2] = { 2, 0 };
	tw_tensor rb;
	cr_assert_eq(tw_tensor_init(&rb, TW_BOOL, 1, SHAPE(2), NULL, raw, NULL), TW_OK);
	cr_assert_eq(tw_op_mul(&rb, &rb, &out), TW_OK);
	cr_assert_eq(((uint8_t *)out.data)[0], 1);
	cr_assert_eq(((uint8_t *)out.data)[1], 0);
	tw_tensor_release(&out);
	tw_tensor_release(&b);
	tw_tensor_release(&h);
	tw_tensor_release(&a);
}
