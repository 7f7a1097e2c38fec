/* Helpers the op kernels' tests share: element access, tensor builders,
 * assertions and the reference binary ops (static inline: each test
 * uses some). */
#ifndef TW_TESTS_OPS_TEST_H
#define TW_TESTS_OPS_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <tensorwire/tensor.h>

#include "dataplane/err.h"
#include "rpc/ops/ops.h"

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIMS(...)                                                             \
	((unsigned)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

static const tw_dtype DT5[5] = {TW_BOOL, TW_INT32, TW_INT64, TW_FLOAT32,
				TW_FLOAT64};

static inline bool isf(tw_dtype d)
{
	return d == TW_FLOAT32 || d == TW_FLOAT64;
}

/* ---- element access over logical indices ------------------------------ */

/* Index arrays below start zeroed: inlined, gcc cannot see that a zero-dim
 * tensor reads none of them (-Wmaybe-uninitialized). */

static inline int64_t nel(const tw_tensor *t)
{
	int64_t n = -1;
	cr_assert_eq(tw_tensor_numel(t, &n), TW_OK);
	return n;
}

static inline void unravel(int64_t k, unsigned nd, const int64_t *shape,
			   int64_t *idx)
{
	for (unsigned d = nd; d-- > 0;) {
		idx[d] = k % shape[d];
		k /= shape[d];
	}
}

static inline char *eptr(const tw_tensor *t, const int64_t *idx)
{
	int64_t off = 0;
	for (unsigned d = 0; d < t->ndim; d++)
		off += idx[d] * t->strides[d];
	return (char *)t->data +
	       off * (int64_t)tw_dtype_size((tw_dtype)t->dtype);
}

static inline double getd(const tw_tensor *t, const int64_t *idx)
{
	const char *p = eptr(t, idx);
	switch (t->dtype) {
	case TW_BOOL:
		return *(const uint8_t *)p != 0;
	case TW_INT32: {
		int32_t v;
		memcpy(&v, p, 4);
		return v;
	}
	case TW_INT64: {
		int64_t v;
		memcpy(&v, p, 8);
		return (double)v;
	}
	case TW_FLOAT32: {
		float v;
		memcpy(&v, p, 4);
		return v;
	}
	default: {
		double v;
		memcpy(&v, p, 8);
		return v;
	}
	}
}

static inline int64_t geti(const tw_tensor *t, const int64_t *idx)
{
	const char *p = eptr(t, idx);
	switch (t->dtype) {
	case TW_BOOL:
		return *(const uint8_t *)p != 0;
	case TW_INT32: {
		int32_t v;
		memcpy(&v, p, 4);
		return v;
	}
	case TW_INT64: {
		int64_t v;
		memcpy(&v, p, 8);
		return v;
	}
	default:
		cr_assert_fail("geti on a float tensor");
		return 0;
	}
}

static inline void setd(tw_tensor *t, const int64_t *idx, double v)
{
	char *p = eptr(t, idx);
	switch (t->dtype) {
	case TW_BOOL:
		*(uint8_t *)p = v != 0;
		break;
	case TW_INT32: {
		int32_t x = (int32_t)v;
		memcpy(p, &x, 4);
		break;
	}
	case TW_INT64: {
		int64_t x = (int64_t)v;
		memcpy(p, &x, 8);
		break;
	}
	case TW_FLOAT32: {
		float x = (float)v;
		memcpy(p, &x, 4);
		break;
	}
	default:
		memcpy(p, &v, 8);
		break;
	}
}

static inline double flat(const tw_tensor *t, int64_t k)
{
	int64_t idx[TW_TENSOR_MAX_DIMS] = {0};
	unravel(k, t->ndim, t->shape, idx);
	return getd(t, idx);
}

static inline int64_t flati(const tw_tensor *t, int64_t k)
{
	int64_t idx[TW_TENSOR_MAX_DIMS] = {0};
	unravel(k, t->ndim, t->shape, idx);
	return geti(t, idx);
}

/* ---- tensor construction ---------------------------------------------- */

enum gen { G_ANY, G_NONZERO, G_EXP, G_POS, G_TIES };

static inline uint32_t hash32(uint32_t seed, uint64_t k)
{
	uint64_t z = (uint64_t)seed * 0x9e3779b97f4a7c15ULL +
		     k * 0xbf58476d1ce4e5b9ULL + 1;
	z ^= z >> 31;
	z *= 0x94d049bb133111ebULL;
	z ^= z >> 29;
	return (uint32_t)z;
}

static inline double gen_value(tw_dtype dt, enum gen g, uint32_t h)
{
	switch (g) {
	case G_ANY:
		if (dt == TW_BOOL)
			return h & 1;
		if (isf(dt))
			return ((double)(h % 2001) - 1000.0) / 250.0;
		return (double)(h % 41) - 20.0;
	case G_NONZERO: {
		double v = gen_value(dt, G_ANY, h);
		return v == 0 ? 1 : v;
	}
	case G_EXP:
		if (dt == TW_BOOL)
			return h & 1;
		if (isf(dt))
			return (double)(h % 9) / 4.0 - 1.0;
		return h % 5;
	case G_POS:
		if (dt == TW_BOOL)
			return 1;
		if (isf(dt))
			return (double)(h % 1000 + 1) / 250.0;
		return h % 20 + 1;
	default: /* G_TIES: few distinct values */
		if (dt == TW_BOOL)
			return h & 1;
		return (double)(h % 4) - 1.0;
	}
}

static inline tw_tensor mk(tw_dtype dt, unsigned nd, const int64_t *shape,
			   uint32_t seed, enum gen g)
{
	tw_tensor t;
	cr_assert_eq(tw_tensor_alloc(&t, dt, nd, shape), TW_OK);
	int64_t n = nel(&t);
	int64_t idx[TW_TENSOR_MAX_DIMS] = {0};
	for (int64_t k = 0; k < n; k++) {
		unravel(k, nd, shape, idx);
		setd(&t, idx, gen_value(dt, g, hash32(seed, (uint64_t)k)));
	}
	return t;
}

static inline tw_tensor mk_vals(tw_dtype dt, unsigned nd, const int64_t *shape,
				const double *vals)
{
	tw_tensor t;
	cr_assert_eq(tw_tensor_alloc(&t, dt, nd, shape), TW_OK);
	int64_t n = nel(&t);
	int64_t idx[TW_TENSOR_MAX_DIMS] = {0};
	for (int64_t k = 0; k < n; k++) {
		unravel(k, nd, shape, idx);
		setd(&t, idx, vals[k]);
	}
	return t;
}

/* The transposed copy of t laid out so that its transpose view has t's
 * shape: a non-contiguous tensor with t's values. */
static inline tw_tensor noncontig(const tw_tensor *t)
{
	/* Materialise values in reversed dim order, then view back. */
	int64_t rshape[TW_TENSOR_MAX_DIMS];
	unsigned nd = t->ndim;
	for (unsigned d = 0; d < nd; d++)
		rshape[d] = t->shape[nd - 1 - d];
	tw_tensor r;
	cr_assert_eq(tw_tensor_alloc(&r, (tw_dtype)t->dtype, nd, rshape),
		     TW_OK);
	int64_t n = nel(t);
	int64_t idx[TW_TENSOR_MAX_DIMS] = {0};
	int64_t ridx[TW_TENSOR_MAX_DIMS] = {0};
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

static inline void expect_shape(const tw_tensor *t, unsigned nd,
				const int64_t *shape)
{
	cr_assert_eq(t->ndim, nd, "ndim %u, expected %u", t->ndim, nd);
	for (unsigned d = 0; d < nd; d++)
		cr_assert_eq(t->shape[d], shape[d],
			     "dim %u: %lld, expected %lld", d,
			     (long long)t->shape[d], (long long)shape[d]);
}

static inline bool close_enough(double got, double want, double rtol,
				double atol)
{
	if (isnan(want))
		return isnan(got);
	if (isinf(want))
		return got == want;
	return fabs(got - want) <= atol + rtol * fabs(want);
}

static inline double rtol_of(tw_dtype dt)
{
	return dt == TW_FLOAT32 ? 2e-6 : dt == TW_FLOAT64 ? 1e-13 : 0;
}

static inline void expect_values(const tw_tensor *t, const double *want,
				 double rtol, double atol, const char *what)
{
	int64_t n = nel(t);
	for (int64_t k = 0; k < n; k++) {
		double g = flat(t, k);
		if (isf((tw_dtype)t->dtype)) {
			cr_assert(close_enough(g, want[k], rtol, atol),
				  "%s: element %lld is %.9g, expected %.9g",
				  what, (long long)k, g, want[k]);
		} else {
			cr_assert_eq(
				g, want[k],
				"%s: element %lld is %.17g, expected %.17g",
				what, (long long)k, g, want[k]);
		}
	}
}

/* st, the status a kernel just returned, is want; with msg, the reason
 * the kernel recorded (tw_errmsg) is msg, torch's words. */
static inline void expect_err(tw_status st, tw_status want, const char *msg)
{
	const char *why = tw_errmsg(st);
	cr_assert_eq(st, want, "status %s, expected %s (%s)",
		     tw_status_name(st), tw_status_name(want), why);
	if (msg != NULL)
		cr_assert_str_eq(why, msg);
}

/* After a success: the reason st's failure recorded is still msg. The
 * kernels record nothing when they succeed (their hot path pays for no
 * reason), so a success cannot replace, clear or stale it. */
static inline void expect_reason_kept(tw_status st, const char *msg)
{
	cr_assert_str_eq(tw_errmsg(st), msg, "a success replaced the reason");
}

/* ---- reference binary ops --------------------------------------------- */

enum rop {
	R_ADD,
	R_SUB,
	R_MUL,
	R_DIV,
	R_DIVT,
	R_DIVF,
	R_POW,
	R_MAX,
	R_MIN,
	R_COUNT
};

static const char *const rop_name[R_COUNT] = {"add", "sub",       "mul",
					      "div", "div_trunc", "div_floor",
					      "pow", "maximum",   "minimum"};

static inline double ipow(double b, double e)
{
	if (e < 0)
		return b == 1 ? 1 : b == -1 ? (fmod(-e, 2) != 0 ? -1 : 1) : 0;
	double r = 1;
	for (int i = 0; i < (int)e; i++)
		r *= b;
	return r;
}

/* x, y already converted to the compute dtype rt. */
static inline double ref_bin(enum rop op, double x, double y, double alpha,
			     tw_dtype rt)
{
	bool f = isf(rt);
	switch (op) {
	case R_ADD:
		if (rt == TW_BOOL)
			return (x != 0) || (alpha != 0 && y != 0);
		return x + alpha * y;
	case R_SUB:
		return x - alpha * y;
	case R_MUL:
		return rt == TW_BOOL ? (x != 0 && y != 0) : x * y;
	case R_DIV:
		return x / y;
	case R_DIVT:
		/* trunc of the quotient as rounded in the compute dtype */
		return rt == TW_FLOAT32 ? truncf((float)x / (float)y)
					: trunc(x / y);
	case R_DIVF:
		/* Python's //: the floor of the exact quotient (long double
		 * resolves it for these operands), IEEE for a zero divisor */
		if (y == 0)
			return x / y;
		return (double)floorl((long double)x / (long double)y);
	case R_POW:
		return f ? pow(x, y) : ipow(x, y);
	case R_MAX:
		if (isnan(x) || isnan(y))
			return NAN;
		return x > y ? x : y;
	default:
		if (isnan(x) || isnan(y))
			return NAN;
		return x < y ? x : y;
	}
}

/* Round a double to what the dtype holds (the reference computes in
 * double from inputs already in the compute dtype). */
static inline double to_dtype(double v, tw_dtype dt)
{
	switch (dt) {
	case TW_BOOL:
		return v != 0;
	case TW_INT32:
		return (double)(int32_t)v;
	case TW_INT64:
		return (double)(int64_t)v;
	case TW_FLOAT32:
		return (double)(float)v;
	default:
		return v;
	}
}

static inline tw_dtype rank_promote(tw_dtype a, tw_dtype b)
{
	/* bool < int32 < int64 < float32 < float64 among the five. */
	int ra = 0, rb = 0;
	for (int i = 0; i < 5; i++) {
		if (DT5[i] == a)
			ra = i;
		if (DT5[i] == b)
			rb = i;
	}
	return ra > rb ? a : b;
}

static inline tw_status call_bin(enum rop op, const tw_tensor *a,
				 const tw_tensor *b, const tw_scalar *alpha,
				 tw_tensor *out)
{
	switch (op) {
	case R_ADD:
		return tw_op_add(a, b, alpha, out);
	case R_SUB:
		return tw_op_sub(a, b, alpha, out);
	case R_MUL:
		return tw_op_mul(a, b, out);
	case R_DIV:
		return tw_op_div(a, b, TW_ROUND_NONE, out);
	case R_DIVT:
		return tw_op_div(a, b, TW_ROUND_TRUNC, out);
	case R_DIVF:
		return tw_op_div(a, b, TW_ROUND_FLOOR, out);
	case R_POW:
		return tw_op_pow(a, b, out);
	case R_MAX:
		return tw_op_maximum(a, b, out);
	default:
		return tw_op_minimum(a, b, out);
	}
}

static inline void ref_bcast(const tw_tensor *a, const tw_tensor *b,
			     unsigned *nd, int64_t *shape)
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
static inline double bread(const tw_tensor *t, unsigned nd, const int64_t *oidx)
{
	int64_t idx[TW_TENSOR_MAX_DIMS] = {0};
	unsigned off = nd - t->ndim;
	for (unsigned d = 0; d < t->ndim; d++)
		idx[d] = t->shape[d] == 1 ? 0 : oidx[d + off];
	return getd(t, idx);
}

/*
 * Check out == ref(op)(a, b) with broadcasting, computed in ct and
 * returned as rt (rt differs from ct only for true division of integers).
 */
static inline void check_bin(enum rop op, const tw_tensor *a,
			     const tw_tensor *b, double alpha, tw_dtype rt,
			     const tw_tensor *out, const char *what)
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
	int64_t idx[TW_TENSOR_MAX_DIMS] = {0};
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
static inline tw_dtype expect_dtype(enum rop op, tw_dtype da, tw_dtype db)
{
	tw_dtype ct = rank_promote(da, db);
	if (op == R_DIV && !isf(ct))
		return TW_FLOAT32;
	return ct;
}

/* Whether torch refuses op on this promoted dtype. */
static inline bool refused(enum rop op, tw_dtype da, tw_dtype db)
{
	tw_dtype ct = rank_promote(da, db);
	if (op == R_SUB)
		return da == TW_BOOL || db == TW_BOOL;
	if (op == R_DIVT || op == R_DIVF || op == R_POW)
		return ct == TW_BOOL;
	return false;
}

static inline enum gen rhs_gen(enum rop op)
{
	if (op == R_DIV || op == R_DIVT || op == R_DIVF)
		return G_NONZERO;
	if (op == R_POW)
		return G_EXP;
	return G_ANY;
}

#endif
