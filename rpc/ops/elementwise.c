/* Elementwise kernels: binary ops with broadcasting and torch's promotion, unary ops, dtype casts. */
#include <math.h>
#include <string.h>

#include "dataplane/err.h"
#include "rpc/ops/ops.h"

/* Kernel tables are indexed by the five compute dtypes. */
enum { D_BOOL, D_I32, D_I64, D_F32, D_F64, D_COUNT };

static int dix(tw_dtype dt)
{
	switch (dt) {
	case TW_BOOL:
		return D_BOOL;
	case TW_INT32:
		return D_I32;
	case TW_INT64:
		return D_I64;
	case TW_FLOAT32:
		return D_F32;
	default:
		return D_F64;
	}
}

/* ---- scalar helpers -------------------------------------------------- */

static inline uint64_t powu64(uint64_t b, uint64_t e)
{
	uint64_t r = 1;
	while (e != 0) {
		if (e & 1)
			r *= b;
		b *= b;
		e >>= 1;
	}
	return r;
}

/* torch's powi: exact, wrapping; negative exponents give 0, 1 or -1. */
static inline int64_t powi64(int64_t a, int64_t b)
{
	if (b < 0) {
		if (a == 1)
			return 1;
		if (a == -1)
			return ((uint64_t)b & 1) ? -1 : 1;
		return 0;
	}
	return (int64_t)powu64((uint64_t)a, (uint64_t)b);
}

static inline int32_t powi32(int32_t a, int32_t b)
{
	return (int32_t)(uint32_t)(uint64_t)powi64(a, b);
}

/* Python's // on floats, as torch's div_floor_floating. */
static inline double floordiv_f64(double a, double b)
{
	if (b == 0)
		return a / b;
	double mod = fmod(a, b);
	double div = (a - mod) / b;
	if (mod != 0 && (b < 0) != (mod < 0))
		div -= 1.0;
	if (div == 0)
		return copysign(0.0, a / b);
	double fl = floor(div);
	if (div - fl > 0.5)
		fl += 1.0;
	return fl;
}

static inline float floordiv_f32(float a, float b)
{
	if (b == 0)
		return a / b;
	float mod = fmodf(a, b);
	float div = (a - mod) / b;
	if (mod != 0 && (b < 0) != (mod < 0))
		div -= 1.0f;
	if (div == 0)
		return copysignf(0.0f, a / b);
	float fl = floorf(div);
	if (div - fl > 0.5f)
		fl += 1.0f;
	return fl;
}

/* Integer division without undefined behaviour; y != 0 checked by the
 * caller. x / -1 is negation (wrapping INT_MIN to itself). */
#define IDIV_TRUNC(T, U, x, y) ((y) == -1 ? (T)((U)0 - (U)(x)) : (T)((x) / (y)))
#define IDIV_FLOOR(T, U, x, y)                                                 \
	((y) == -1 ? (T)((U)0 - (U)(x))                                        \
		   : (T)((x) / (y) -                                           \
			 (((x) % (y) != 0) && (((x) < 0) != ((y) < 0)))))

/* ---- binary kernels -------------------------------------------------- */

enum binop {
	B_ADD,       /* a + b */
	B_ADD_ALPHA, /* a + alpha * b */
	B_SUB,       /* a - b */
	B_MUL,
	B_DIV, /* floats only: integers are cast first */
	B_DIV_TRUNC,
	B_DIV_FLOOR,
	B_POW,
	B_MAX,
	B_MIN,
	B_COUNT
};

struct bin_ctx {
	union {
		uint8_t b;
		int32_t i32;
		int64_t i64;
		float f32;
		double f64;
	} alpha;
	int zerodiv; /* set by integer division on a zero divisor */
};

/*
 * One row of out = EXPR(x, y). The output row is contiguous (outputs are
 * fresh tensors walked in their own order); the common input layouts get
 * their own loops: both contiguous, one a broadcast scalar. Bool is read as
 * bytes and normalised (x != 0), never as C bool, since a byte from the
 * network may hold any value.
 */
#define BIN_KERNEL(NAME, T, PRE, EXPR)                                         \
	/* restrict holds for parameters (gcc ignores it on locals). */        \
	static inline void NAME##_vv(T *restrict o, const T *restrict pa,      \
				     const T *restrict pb, int64_t n,          \
				     struct bin_ctx *ctx)                      \
	{                                                                      \
		PRE                                                            \
		TW_OPS_VLOOP(n, k, {                                           \
			const T x = pa[k];                                     \
			const T y = pb[k];                                     \
			o[k] = (T)(EXPR);                                      \
		});                                                            \
	}                                                                      \
	static inline void NAME##_vs(T *restrict o, const T *restrict pa,      \
				     const T y, int64_t n,                     \
				     struct bin_ctx *ctx)                      \
	{                                                                      \
		PRE                                                            \
		TW_OPS_VLOOP(n, k, {                                           \
			const T x = pa[k];                                     \
			o[k] = (T)(EXPR);                                      \
		});                                                            \
	}                                                                      \
	static inline void NAME##_sv(T *restrict o, const T x,                 \
				     const T *restrict pb, int64_t n,          \
				     struct bin_ctx *ctx)                      \
	{                                                                      \
		PRE                                                            \
		TW_OPS_VLOOP(n, k, {                                           \
			const T y = pb[k];                                     \
			o[k] = (T)(EXPR);                                      \
		});                                                            \
	}                                                                      \
	TW_OPS_CLONES static void NAME(char *const *p, const int64_t *s,       \
				       int64_t n, void *ctx_)                  \
	{                                                                      \
		struct bin_ctx *ctx = ctx_;                                    \
		T *o = (T *)(void *)p[0];                                      \
		const T *pa = (const T *)(const void *)p[1];                   \
		const T *pb = (const T *)(const void *)p[2];                   \
		const int64_t es = (int64_t)sizeof(T);                         \
		if (s[1] == es && s[2] == es) {                                \
			NAME##_vv(o, pa, pb, n, ctx);                          \
		} else if (s[1] == es && s[2] == 0) {                          \
			NAME##_vs(o, pa, pb[0], n, ctx);                       \
		} else if (s[1] == 0 && s[2] == es) {                          \
			NAME##_sv(o, pa[0], pb, n, ctx);                       \
		} else {                                                       \
			PRE                                                    \
			for (int64_t k = 0; k < n; k++) {                      \
				const T x =                                    \
					*(const T *)(const void *)(p[1] +      \
								   k * s[1]);  \
				const T y =                                    \
					*(const T *)(const void *)(p[2] +      \
								   k * s[2]);  \
				o[k] = (T)(EXPR);                              \
			}                                                      \
		}                                                              \
	}

#define NOPRE

/* add */
BIN_KERNEL(add_b, uint8_t, NOPRE, (x != 0) | (y != 0))
BIN_KERNEL(add_i32, int32_t, NOPRE, (uint32_t)x + (uint32_t)y)
BIN_KERNEL(add_i64, int64_t, NOPRE, (uint64_t)x + (uint64_t)y)
BIN_KERNEL(add_f32, float, NOPRE, x + y)
BIN_KERNEL(add_f64, double, NOPRE, x + y)
/* add with alpha */
BIN_KERNEL(adda_b, uint8_t, const uint8_t al = ctx->alpha.b;
	   , (x != 0) | (al & (y != 0)))
BIN_KERNEL(adda_i32, int32_t, const uint32_t al = (uint32_t)ctx->alpha.i32;
	   , (uint32_t)x + al * (uint32_t)y)
BIN_KERNEL(adda_i64, int64_t, const uint64_t al = (uint64_t)ctx->alpha.i64;
	   , (uint64_t)x + al * (uint64_t)y)
BIN_KERNEL(adda_f32, float, const float al = ctx->alpha.f32;, x + al * y)
BIN_KERNEL(adda_f64, double, const double al = ctx->alpha.f64;, x + al * y)
/* sub */
BIN_KERNEL(sub_i32, int32_t, NOPRE, (uint32_t)x - (uint32_t)y)
BIN_KERNEL(sub_i64, int64_t, NOPRE, (uint64_t)x - (uint64_t)y)
BIN_KERNEL(sub_f32, float, NOPRE, x - y)
BIN_KERNEL(sub_f64, double, NOPRE, x - y)
/* mul */
BIN_KERNEL(mul_b, uint8_t, NOPRE, (x != 0) & (y != 0))
BIN_KERNEL(mul_i32, int32_t, NOPRE, (uint32_t)x *(uint32_t)y)
BIN_KERNEL(mul_i64, int64_t, NOPRE, (uint64_t)x *(uint64_t)y)
BIN_KERNEL(mul_f32, float, NOPRE, x *y)
BIN_KERNEL(mul_f64, double, NOPRE, x *y)
/* true division */
BIN_KERNEL(div_f32, float, NOPRE, x / y)
BIN_KERNEL(div_f64, double, NOPRE, x / y)
/* rounding divisions */
BIN_KERNEL(divt_i32, int32_t, NOPRE,
	   y == 0 ? (ctx->zerodiv = 1, 0) : IDIV_TRUNC(int32_t, uint32_t, x, y))
BIN_KERNEL(divt_i64, int64_t, NOPRE,
	   y == 0 ? (ctx->zerodiv = 1, 0) : IDIV_TRUNC(int64_t, uint64_t, x, y))
BIN_KERNEL(divt_f32, float, NOPRE, truncf(x / y))
BIN_KERNEL(divt_f64, double, NOPRE, trunc(x / y))
BIN_KERNEL(divf_i32, int32_t, NOPRE,
	   y == 0 ? (ctx->zerodiv = 1, 0) : IDIV_FLOOR(int32_t, uint32_t, x, y))
BIN_KERNEL(divf_i64, int64_t, NOPRE,
	   y == 0 ? (ctx->zerodiv = 1, 0) : IDIV_FLOOR(int64_t, uint64_t, x, y))
BIN_KERNEL(divf_f32, float, NOPRE, floordiv_f32(x, y))
BIN_KERNEL(divf_f64, double, NOPRE, floordiv_f64(x, y))
/* pow */
BIN_KERNEL(pow_i32, int32_t, NOPRE, powi32(x, y))
BIN_KERNEL(pow_i64, int64_t, NOPRE, powi64(x, y))
BIN_KERNEL(pow_f32, float, NOPRE, powf(x, y))
BIN_KERNEL(pow_f64, double, NOPRE, pow(x, y))
/* maximum / minimum: NaN propagates */
BIN_KERNEL(max_b, uint8_t, NOPRE, (x != 0) | (y != 0))
BIN_KERNEL(max_i32, int32_t, NOPRE, x > y ? x : y)
BIN_KERNEL(max_i64, int64_t, NOPRE, x > y ? x : y)
BIN_KERNEL(max_f32, float, NOPRE, (x > y || x != x) ? x : y)
BIN_KERNEL(max_f64, double, NOPRE, (x > y || x != x) ? x : y)
BIN_KERNEL(min_b, uint8_t, NOPRE, (x != 0) & (y != 0))
BIN_KERNEL(min_i32, int32_t, NOPRE, x < y ? x : y)
BIN_KERNEL(min_i64, int64_t, NOPRE, x < y ? x : y)
BIN_KERNEL(min_f32, float, NOPRE, (x < y || x != x) ? x : y)
BIN_KERNEL(min_f64, double, NOPRE, (x < y || x != x) ? x : y)

/* NULL: the dtype is refused (or cast away) before dispatch. */
static const tw_ops_row_fn bin_table[B_COUNT][D_COUNT] = {
	[B_ADD] = {add_b, add_i32, add_i64, add_f32, add_f64},
	[B_ADD_ALPHA] = {adda_b, adda_i32, adda_i64, adda_f32, adda_f64},
	[B_SUB] = {NULL, sub_i32, sub_i64, sub_f32, sub_f64},
	[B_MUL] = {mul_b, mul_i32, mul_i64, mul_f32, mul_f64},
	[B_DIV] = {NULL, NULL, NULL, div_f32, div_f64},
	[B_DIV_TRUNC] = {NULL, divt_i32, divt_i64, divt_f32, divt_f64},
	[B_DIV_FLOOR] = {NULL, divf_i32, divf_i64, divf_f32, divf_f64},
	[B_POW] = {NULL, pow_i32, pow_i64, pow_f32, pow_f64},
	[B_MAX] = {max_b, max_i32, max_i64, max_f32, max_f64},
	[B_MIN] = {min_b, min_i32, min_i64, min_f32, min_f64},
};

/* ---- unary kernels --------------------------------------------------- */

enum unop {
	U_NEG,
	U_ABS,
	U_RELU,
	U_SIGMOID,
	U_TANH,
	U_EXP,
	U_LOG,
	U_SQRT,
	/* pow with a Scalar exponent, torch's special cases first */
	U_SQUARE,
	U_CUBE,
	U_RSQRT,
	U_RECIP,
	U_RSQUARE,
	U_POWS, /* general exponent from the ctx */
	U_COUNT
};

struct un_ctx {
	union {
		int32_t i32;
		int64_t i64;
		float f32;
		double f64;
	} e;
};

#define UN_KERNEL(NAME, T, PRE, EXPR)                                          \
	static inline void NAME##_v(T *restrict o, const T *restrict pa,       \
				    int64_t n, const struct un_ctx *ctx)       \
	{                                                                      \
		PRE                                                            \
		TW_OPS_VLOOP(n, k, {                                           \
			const T x = pa[k];                                     \
			o[k] = (T)(EXPR);                                      \
		});                                                            \
	}                                                                      \
	TW_OPS_CLONES static void NAME(char *const *p, const int64_t *s,       \
				       int64_t n, void *ctx_)                  \
	{                                                                      \
		const struct un_ctx *ctx = ctx_;                               \
		T *o = (T *)(void *)p[0];                                      \
		if (s[1] == (int64_t)sizeof(T)) {                              \
			NAME##_v(o, (const T *)(const void *)p[1], n, ctx);    \
			return;                                                \
		}                                                              \
		PRE                                                            \
		for (int64_t k = 0; k < n; k++) {                              \
			const T x =                                            \
				*(const T *)(const void *)(p[1] + k * s[1]);   \
			o[k] = (T)(EXPR);                                      \
		}                                                              \
	}

UN_KERNEL(neg_i32, int32_t, NOPRE, 0u - (uint32_t)x)
UN_KERNEL(neg_i64, int64_t, NOPRE, (uint64_t)0 - (uint64_t)x)
UN_KERNEL(neg_f32, float, NOPRE, -x)
UN_KERNEL(neg_f64, double, NOPRE, -x)
UN_KERNEL(abs_i32, int32_t, NOPRE, x < 0 ? 0u - (uint32_t)x : (uint32_t)x)
UN_KERNEL(abs_i64, int64_t, NOPRE,
	  x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x)
UN_KERNEL(abs_f32, float, NOPRE, fabsf(x))
UN_KERNEL(abs_f64, double, NOPRE, fabs(x))
UN_KERNEL(relu_i32, int32_t, NOPRE, x < 0 ? 0 : x)
UN_KERNEL(relu_i64, int64_t, NOPRE, x < 0 ? 0 : x)
UN_KERNEL(relu_f32, float, NOPRE, x < 0 ? 0.0f : x) /* keeps NaN */
UN_KERNEL(relu_f64, double, NOPRE, x < 0 ? 0.0 : x)
UN_KERNEL(sigmoid_f32, float, NOPRE, 1.0f / (1.0f + expf(-x)))
UN_KERNEL(sigmoid_f64, double, NOPRE, 1.0 / (1.0 + exp(-x)))
UN_KERNEL(tanh_f32, float, NOPRE, tanhf(x))
UN_KERNEL(tanh_f64, double, NOPRE, tanh(x))
UN_KERNEL(exp_f32, float, NOPRE, expf(x))
UN_KERNEL(exp_f64, double, NOPRE, exp(x))
UN_KERNEL(log_f32, float, NOPRE, logf(x))
UN_KERNEL(log_f64, double, NOPRE, log(x))
UN_KERNEL(sqrt_f32, float, NOPRE, sqrtf(x))
UN_KERNEL(sqrt_f64, double, NOPRE, sqrt(x))
UN_KERNEL(sq_i32, int32_t, NOPRE, (uint32_t)x *(uint32_t)x)
UN_KERNEL(sq_i64, int64_t, NOPRE, (uint64_t)x *(uint64_t)x)
UN_KERNEL(sq_f32, float, NOPRE, x *x)
UN_KERNEL(sq_f64, double, NOPRE, x *x)
UN_KERNEL(cube_i32, int32_t, NOPRE, (uint32_t)x *(uint32_t)x *(uint32_t)x)
UN_KERNEL(cube_i64, int64_t, NOPRE, (uint64_t)x *(uint64_t)x *(uint64_t)x)
UN_KERNEL(cube_f32, float, NOPRE, x *x *x)
UN_KERNEL(cube_f64, double, NOPRE, x *x *x)
UN_KERNEL(rsqrt_f32, float, NOPRE, 1.0f / sqrtf(x))
UN_KERNEL(rsqrt_f64, double, NOPRE, 1.0 / sqrt(x))
UN_KERNEL(recip_f32, float, NOPRE, 1.0f / x)
UN_KERNEL(recip_f64, double, NOPRE, 1.0 / x)
UN_KERNEL(rsq_f32, float, NOPRE, 1.0f / (x * x))
UN_KERNEL(rsq_f64, double, NOPRE, 1.0 / (x * x))
UN_KERNEL(pows_i32, int32_t, const int32_t e = ctx->e.i32;, powi32(x, e))
UN_KERNEL(pows_i64, int64_t, const int64_t e = ctx->e.i64;, powi64(x, e))
UN_KERNEL(pows_f32, float, const float e = ctx->e.f32;, powf(x, e))
UN_KERNEL(pows_f64, double, const double e = ctx->e.f64;, pow(x, e))

static const tw_ops_row_fn un_table[U_COUNT][D_COUNT] = {
	[U_NEG] = {NULL, neg_i32, neg_i64, neg_f32, neg_f64},
	[U_ABS] = {NULL, abs_i32, abs_i64, abs_f32, abs_f64},
	[U_RELU] = {NULL, relu_i32, relu_i64, relu_f32, relu_f64},
	[U_SIGMOID] = {NULL, NULL, NULL, sigmoid_f32, sigmoid_f64},
	[U_TANH] = {NULL, NULL, NULL, tanh_f32, tanh_f64},
	[U_EXP] = {NULL, NULL, NULL, exp_f32, exp_f64},
	[U_LOG] = {NULL, NULL, NULL, log_f32, log_f64},
	[U_SQRT] = {NULL, NULL, NULL, sqrt_f32, sqrt_f64},
	[U_SQUARE] = {NULL, sq_i32, sq_i64, sq_f32, sq_f64},
	[U_CUBE] = {NULL, cube_i32, cube_i64, cube_f32, cube_f64},
	[U_RSQRT] = {NULL, NULL, NULL, rsqrt_f32, rsqrt_f64},
	[U_RECIP] = {NULL, NULL, NULL, recip_f32, recip_f64},
	[U_RSQUARE] = {NULL, NULL, NULL, rsq_f32, rsq_f64},
	[U_POWS] = {NULL, pows_i32, pows_i64, pows_f32, pows_f64},
};

/* ---- operands -------------------------------------------------------- */

/*
 * An operand brought to the compute dtype: a view of the caller's tensor
 * when the dtype already matches, a converted copy otherwise, or a zero-dim
 * tensor over local bytes for Scalars and zero-dim tensors.
 */
struct operand {
	tw_tensor t;
	tw_tensor owned; /* released at the end; zeroed when unused */
	uint64_t local;  /* storage of a zero-dim operand */
};

static tw_status operand_scalar(struct operand *op, const tw_scalar *s,
				tw_dtype ct)
{
	memset(op, 0, sizeof(*op));
	tw_ops_scalar_store(s, ct, &op->local);
	return tw_tensor_init(&op->t, ct, 0, NULL, NULL, &op->local, NULL);
}

static tw_status operand_tensor(struct operand *op, const tw_tensor *t,
				tw_dtype ct)
{
	memset(op, 0, sizeof(*op));
	if (t->dtype == ct) {
		op->t = *t;
		op->t.buf = NULL; /* borrowed for the call */
		return TW_OK;
	}
	if (t->ndim == 0) {
		tw_ops_convert_one(&op->local, ct, t->data, (tw_dtype)t->dtype);
		return tw_tensor_init(&op->t, ct, 0, NULL, NULL, &op->local,
				      NULL);
	}
	tw_status st = tw_op_cast(t, ct, &op->owned);
	if (st != TW_OK)
		return st;
	op->t = op->owned;
	op->t.buf = NULL;
	return TW_OK;
}

static void operand_release(struct operand *op)
{
	tw_tensor_release(&op->owned);
}

/* One side of a binary op: a tensor or a Scalar. */
struct side {
	const tw_tensor *t;
	const tw_scalar *s;
};

static tw_dtype side_dtype(const struct side *x)
{
	if (x->t != NULL)
		return (tw_dtype)x->t->dtype;
	return x->s->kind == TW_SCALAR_BOOL  ? TW_BOOL
	       : x->s->kind == TW_SCALAR_INT ? TW_INT64
					     : TW_FLOAT64;
}

static tw_status side_operand(struct operand *op, const struct side *x,
			      tw_dtype ct)
{
	if (x->t != NULL)
		return operand_tensor(op, x->t, ct);
	return operand_scalar(op, x->s, ct);
}

/* Run fn over out = f(a, b) with broadcasting; allocates out. */
static tw_status run_binary(const char *name, const tw_tensor *a,
			    const tw_tensor *b, tw_dtype ct, tw_ops_row_fn fn,
			    void *ctx, tw_tensor *out)
{
	unsigned nd;
	int64_t shape[TW_TENSOR_MAX_DIMS];
	tw_status st = tw_ops_broadcast_shapes(a->ndim, a->shape, b->ndim,
					       b->shape, &nd, shape);
	if (st != TW_OK)
		return st;
	tw_tensor o;
	st = tw_ops_alloc(name, &o, ct, nd, shape, false);
	if (st != TW_OK)
		return st;

	int64_t strides[3][TW_TENSOR_MAX_DIMS];
	tw_ops_bcast_strides(&o, nd, shape, strides[0]);
	tw_ops_bcast_strides(a, nd, shape, strides[1]);
	tw_ops_bcast_strides(b, nd, shape, strides[2]);
	tw_ops_iter it;
	tw_ops_iter_init(&it, nd, shape, 3,
			 (const int64_t(*)[TW_TENSOR_MAX_DIMS])strides);
	char *base[3] = {o.data, a->data, b->data};
	tw_ops_iter_run(&it, base, fn, ctx);
	*out = o;
	return TW_OK;
}

/* Run a unary row kernel over a (of dtype ct); allocates out. */
static tw_status run_unary(const char *name, const tw_tensor *a, tw_dtype ct,
			   tw_ops_row_fn fn, void *ctx, tw_tensor *out)
{
	tw_tensor o;
	tw_status st = tw_ops_alloc(name, &o, ct, a->ndim, a->shape, false);
	if (st != TW_OK)
		return st;
	int64_t strides[2][TW_TENSOR_MAX_DIMS];
	tw_ops_bcast_strides(&o, a->ndim, a->shape, strides[0]);
	tw_ops_bcast_strides(a, a->ndim, a->shape, strides[1]);
	tw_ops_iter it;
	tw_ops_iter_init(&it, a->ndim, a->shape, 2,
			 (const int64_t(*)[TW_TENSOR_MAX_DIMS])strides);
	char *base[2] = {o.data, a->data};
	tw_ops_iter_run(&it, base, fn, ctx);
	*out = o;
	return TW_OK;
}

/* ---- binary entry points --------------------------------------------- */

struct binreq {
	const char *name; /* for dtype messages */
	enum binop op;
	const tw_scalar *alpha; /* add/sub only; NULL is 1 */
};

static tw_status check_side(const char *name, const struct side *x)
{
	if (x->t != NULL)
		return tw_ops_check(name, x->t, true, NULL);
	if (x->s == NULL)
		return tw_fail(TW_EINVAL, "%s(): NULL scalar", name);
	return TW_OK;
}

static tw_status binary(const struct binreq *rq, struct side a, struct side b,
			tw_tensor *out)
{
	tw_status st;
	if (out == NULL)
		return tw_fail(TW_EINVAL, "%s(): NULL out", rq->name);
	if ((st = check_side(rq->name, &a)) != TW_OK ||
	    (st = check_side(rq->name, &b)) != TW_OK)
		return st;

	tw_ops_promo pr;
	tw_ops_promo_init(&pr);
	if (a.t != NULL)
		tw_ops_promo_tensor(&pr, a.t);
	else
		tw_ops_promo_scalar(&pr, a.s);
	if (b.t != NULL)
		tw_ops_promo_tensor(&pr, b.t);
	else
		tw_ops_promo_scalar(&pr, b.s);
	tw_dtype ct = tw_ops_promo_result(&pr);

	struct bin_ctx ctx;
	memset(&ctx, 0, sizeof(ctx));
	enum binop op = rq->op;

	switch (op) {
	case B_ADD:
	case B_SUB: {
		if (op == B_SUB) {
			tw_dtype da = side_dtype(&a), db = side_dtype(&b);
			if (da == TW_BOOL && db == TW_BOOL)
				return tw_fail_static(
					TW_ERUNTIME,
					"Subtraction, the `-` operator, with two bool tensors is not supported. Use the `^` or `logical_xor()` operator instead.");
			if (da == TW_BOOL || db == TW_BOOL)
				return tw_fail_static(
					TW_ERUNTIME,
					"Subtraction, the `-` operator, with a bool tensor is not supported. If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.");
		}
		if (rq->alpha == NULL)
			break;
		const tw_scalar *al = rq->alpha;
		if (al->kind == TW_SCALAR_BOOL && ct != TW_BOOL)
			return tw_fail_static(
				TW_ERUNTIME,
				"Boolean alpha only supported for Boolean results.");
		if (al->kind == TW_SCALAR_DOUBLE &&
		    !tw_ops_dtype_is_floating(ct))
			return tw_fail_static(
				TW_ERUNTIME,
				"For integral input tensors, argument alpha must not be a floating point number.");
		st = tw_ops_scalar_to(al, ct, &ctx.alpha);
		if (st != TW_OK)
			return st;
		/* alpha == 1 keeps the plain loop. */
		bool one;
		switch (ct) {
		case TW_BOOL:
			one = ctx.alpha.b != 0;
			break;
		case TW_INT32:
			one = ctx.alpha.i32 == 1;
			break;
		case TW_INT64:
			one = ctx.alpha.i64 == 1;
			break;
		case TW_FLOAT32:
			one = ctx.alpha.f32 == 1.0f;
			break;
		default:
			one = ctx.alpha.f64 == 1.0;
			break;
		}
		if (one)
			break;
		if (op == B_SUB) {
			/* a - alpha*b == a + (-alpha)*b, wrapping for ints. */
			switch (ct) {
			case TW_INT32:
				ctx.alpha.i32 =
					(int32_t)(0u - (uint32_t)ctx.alpha.i32);
				break;
			case TW_INT64:
				ctx.alpha.i64 =
					(int64_t)(0u - (uint64_t)ctx.alpha.i64);
				break;
			case TW_FLOAT32:
				ctx.alpha.f32 = -ctx.alpha.f32;
				break;
			case TW_FLOAT64:
				ctx.alpha.f64 = -ctx.alpha.f64;
				break;
			default:
				break; /* bool refused above */
			}
		}
		op = B_ADD_ALPHA;
		break;
	}
	case B_DIV:
		if (!tw_ops_dtype_is_floating(ct))
			ct = TW_FLOAT32;
		break;
	case B_DIV_TRUNC:
	case B_DIV_FLOOR:
		if (ct == TW_BOOL)
			return tw_fail_static(
				TW_ETYPE,
				op == B_DIV_TRUNC
					? "\"div_trunc_cpu\" not implemented for 'Bool'"
					: "\"div_floor_cpu\" not implemented for 'Bool'");
		break;
	case B_POW:
		if (ct == TW_BOOL)
			return tw_fail_static(
				TW_ETYPE, "\"pow\" not implemented for 'Bool'");
		break;
	default:
		break;
	}

	tw_ops_row_fn fn = bin_table[op][dix(ct)];
	if (fn == NULL) /* unreachable: every NULL slot is refused above */
		return tw_fail(TW_ETYPE, "\"%s\" not implemented for '%s'",
			       rq->name, tw_ops_torch_dtype_name(ct));

	struct operand oa, ob;
	st = side_operand(&oa, &a, ct);
	if (st != TW_OK)
		return st;
	st = side_operand(&ob, &b, ct);
	if (st != TW_OK) {
		operand_release(&oa);
		return st;
	}
	tw_tensor o;
	st = run_binary(rq->name, &oa.t, &ob.t, ct, fn, &ctx, &o);
	operand_release(&oa);
	operand_release(&ob);
	if (st != TW_OK)
		return st;
	if (ctx.zerodiv) {
		tw_tensor_release(&o);
		return tw_fail_static(TW_EVALUE, "ZeroDivisionError");
	}
	*out = o;
	return TW_OK;
}

#define TS(x) ((struct side){.t = (x), .s = NULL})
#define SS(x) ((struct side){.t = NULL, .s = (x)})

tw_status tw_op_add(const tw_tensor *a, const tw_tensor *b,
		    const tw_scalar *alpha, tw_tensor *out)
{
	struct binreq rq = {"add", B_ADD, alpha};
	return binary(&rq, TS(a), TS(b), out);
}

tw_status tw_op_add_scalar(const tw_tensor *a, const tw_scalar *b,
			   const tw_scalar *alpha, tw_tensor *out)
{
	struct binreq rq = {"add", B_ADD, alpha};
	return binary(&rq, TS(a), SS(b), out);
}

tw_status tw_op_sub(const tw_tensor *a, const tw_tensor *b,
		    const tw_scalar *alpha, tw_tensor *out)
{
	struct binreq rq = {"sub", B_SUB, alpha};
	return binary(&rq, TS(a), TS(b), out);
}

tw_status tw_op_sub_scalar(const tw_tensor *a, const tw_scalar *b,
			   const tw_scalar *alpha, tw_tensor *out)
{
	struct binreq rq = {"sub", B_SUB, alpha};
	return binary(&rq, TS(a), SS(b), out);
}

tw_status tw_op_rsub(const tw_tensor *a, const tw_tensor *b,
		     const tw_scalar *alpha, tw_tensor *out)
{
	struct binreq rq = {"sub", B_SUB, alpha};
	return binary(&rq, TS(b), TS(a), out);
}

tw_status tw_op_rsub_scalar(const tw_tensor *a, const tw_scalar *b,
			    const tw_scalar *alpha, tw_tensor *out)
{
	struct binreq rq = {"sub", B_SUB, alpha};
	return binary(&rq, SS(b), TS(a), out);
}

tw_status tw_op_mul(const tw_tensor *a, const tw_tensor *b, tw_tensor *out)
{
	struct binreq rq = {"mul", B_MUL, NULL};
	return binary(&rq, TS(a), TS(b), out);
}

tw_status tw_op_mul_scalar(const tw_tensor *a, const tw_scalar *b,
			   tw_tensor *out)
{
	struct binreq rq = {"mul", B_MUL, NULL};
	return binary(&rq, TS(a), SS(b), out);
}

tw_status tw_ops_rounding_from_name(const char *name, tw_rounding *out)
{
	if (name == NULL)
		*out = TW_ROUND_NONE;
	else if (strcmp(name, "trunc") == 0)
		*out = TW_ROUND_TRUNC;
	else if (strcmp(name, "floor") == 0)
		*out = TW_ROUND_FLOOR;
	else
		return tw_fail(
			TW_EVALUE,
			"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found '%s'",
			name);
	return TW_OK;
}

static enum binop div_op(tw_rounding mode)
{
	return mode == TW_ROUND_TRUNC   ? B_DIV_TRUNC
	       : mode == TW_ROUND_FLOOR ? B_DIV_FLOOR
					: B_DIV;
}

tw_status tw_op_div(const tw_tensor *a, const tw_tensor *b, tw_rounding mode,
		    tw_tensor *out)
{
	struct binreq rq = {"div", div_op(mode), NULL};
	return binary(&rq, TS(a), TS(b), out);
}

tw_status tw_op_div_scalar(const tw_tensor *a, const tw_scalar *b,
			   tw_rounding mode, tw_tensor *out)
{
	struct binreq rq = {"div", div_op(mode), NULL};
	return binary(&rq, TS(a), SS(b), out);
}

tw_status tw_op_pow(const tw_tensor *a, const tw_tensor *b, tw_tensor *out)
{
	struct binreq rq = {"pow", B_POW, NULL};
	return binary(&rq, TS(a), TS(b), out);
}

tw_status tw_op_pow_scalar_base(const tw_scalar *base, const tw_tensor *b,
				tw_tensor *out)
{
	struct binreq rq = {"pow", B_POW, NULL};
	return binary(&rq, SS(base), TS(b), out);
}

tw_status tw_op_maximum(const tw_tensor *a, const tw_tensor *b, tw_tensor *out)
{
	struct binreq rq = {"maximum", B_MAX, NULL};
	return binary(&rq, TS(a), TS(b), out);
}

tw_status tw_op_minimum(const tw_tensor *a, const tw_tensor *b, tw_tensor *out)
{
	struct binreq rq = {"minimum", B_MIN, NULL};
	return binary(&rq, TS(a), TS(b), out);
}

/* ---- unary entry points ---------------------------------------------- */

/* Apply unary op u to a, computing in ct (a is cast first when needed). */
static tw_status unary_in(const char *name, const tw_tensor *a, enum unop u,
			  tw_dtype ct, const struct un_ctx *ctx, tw_tensor *out)
{
	struct operand oa;
	tw_status st = operand_tensor(&oa, a, ct);
	if (st != TW_OK)
		return st;
	st = run_unary(name, &oa.t, ct, un_table[u][dix(ct)], (void *)ctx, out);
	operand_release(&oa);
	return st;
}

/* bool_msg, torch's refusal of a bool input, is kept by pointer
 * (tw_fail_static): a string literal. */
static tw_status unary_keep(const char *name, const tw_tensor *a, enum unop u,
			    const char *bool_msg, tw_tensor *out)
{
	tw_status st = tw_ops_check(name, a, true, NULL);
	if (st != TW_OK)
		return st;
	if (out == NULL)
		return tw_fail(TW_EINVAL, "%s(): NULL out", name);
	if (a->dtype == TW_BOOL)
		return tw_fail_static(u == U_ABS ? TW_ETYPE : TW_ERUNTIME,
				      bool_msg);
	struct un_ctx ctx = {{0}};
	return unary_in(name, a, u, (tw_dtype)a->dtype, &ctx, out);
}

/* Float ops: bool and integer inputs compute in the default float32. */
static tw_status unary_float(const char *name, const tw_tensor *a, enum unop u,
			     tw_tensor *out)
{
	tw_status st = tw_ops_check(name, a, true, NULL);
	if (st != TW_OK)
		return st;
	if (out == NULL)
		return tw_fail(TW_EINVAL, "%s(): NULL out", name);
	tw_dtype ct = a->dtype == TW_FLOAT64 ? TW_FLOAT64 : TW_FLOAT32;
	struct un_ctx ctx = {{0}};
	return unary_in(name, a, u, ct, &ctx, out);
}

tw_status tw_op_neg(const tw_tensor *a, tw_tensor *out)
{
	return unary_keep(
		"neg", a, U_NEG,
		"Negation, the `-` operator, on a bool tensor is not supported. If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.",
		out);
}

tw_status tw_op_abs(const tw_tensor *a, tw_tensor *out)
{
	return unary_keep("abs", a, U_ABS,
			  "\"abs_cpu\" not implemented for 'Bool'", out);
}

tw_status tw_op_relu(const tw_tensor *a, tw_tensor *out)
{
	return unary_keep("relu", a, U_RELU,
			  "Boolean inputs not supported for relu", out);
}

tw_status tw_op_sigmoid(const tw_tensor *a, tw_tensor *out)
{
	return unary_float("sigmoid", a, U_SIGMOID, out);
}

tw_status tw_op_tanh(const tw_tensor *a, tw_tensor *out)
{
	return unary_float("tanh", a, U_TANH, out);
}

tw_status tw_op_exp(const tw_tensor *a, tw_tensor *out)
{
	return unary_float("exp", a, U_EXP, out);
}

tw_status tw_op_log(const tw_tensor *a, tw_tensor *out)
{
	return unary_float("log", a, U_LOG, out);
}

tw_status tw_op_sqrt(const tw_tensor *a, tw_tensor *out)
{
	return unary_float("sqrt", a, U_SQRT, out);
}

/*
 * pow.Tensor_Scalar: as torch's pow_tensor_scalar, exponents 2 and 3 (and
 * for floats 0.5, -0.5, -1, -2) take dedicated loops; others go through
 * powi / powf / pow with the exponent converted to the compute dtype.
 */
tw_status tw_op_pow_scalar(const tw_tensor *a, const tw_scalar *e,
			   tw_tensor *out)
{
	tw_status st = tw_ops_check("pow", a, true, NULL);
	if (st != TW_OK)
		return st;
	if (e == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL, "pow(): NULL argument");
	if (tw_ops_dtype_is_integral((tw_dtype)a->dtype) &&
	    e->kind != TW_SCALAR_DOUBLE) {
		int64_t ev = e->kind == TW_SCALAR_INT ? e->i : e->b;
		if (ev < 0)
			return tw_fail_static(
				TW_ERUNTIME,
				"Integers to negative integer powers are not allowed.");
	}
	tw_dtype ct = tw_ops_result_type_scalar(a, e);
	if (ct == TW_BOOL)
		return tw_fail_static(TW_ETYPE,
				      "\"pow\" not implemented for 'Bool'");

	struct un_ctx ctx;
	memset(&ctx, 0, sizeof(ctx));
	enum unop u = U_POWS;
	double ed = tw_scalar_to_double(e);
	bool fl = tw_ops_dtype_is_floating(ct);
	if (ed == 2.0)
		u = U_SQUARE;
	else if (ed == 3.0)
		u = U_CUBE;
	else if (fl && ed == 0.5)
		u = U_SQRT;
	else if (fl && ed == -0.5)
		u = U_RSQRT;
	else if (fl && ed == -1.0)
		u = U_RECIP;
	else if (fl && ed == -2.0)
		u = U_RSQUARE;
	else
		tw_ops_scalar_store(e, ct, &ctx.e);
	return unary_in("pow", a, u, ct, &ctx, out);
}

/* ---- casts --------------------------------------------------------- */

tw_status tw_op_cast(const tw_tensor *a, tw_dtype dt, tw_tensor *out)
{
	tw_status st = tw_ops_check("to", a, true, NULL);
	if (st != TW_OK)
		return st;
	if (out == NULL || out == a)
		return tw_fail_static(TW_EINVAL, "to(): bad out");
	if (!tw_ops_dtype_supported(dt))
		return tw_fail(TW_ETYPE, "\"to\" not implemented for '%s'",
			       tw_ops_torch_dtype_name(dt));
	tw_tensor o;
	st = tw_ops_alloc("to", &o, dt, a->ndim, a->shape, false);
	if (st != TW_OK)
		return st;
	tw_ops_copy_into(&o, a);
	*out = o;
	return TW_OK;
}
