/* Shared machinery of the op kernels: dtype promotion, broadcasting, dims, errors, conversion, the N-d loop. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dataplane/err.h"
#include "rpc/ops/ops.h"

double tw_scalar_to_double(const tw_scalar *s)
{
	switch (s->kind) {
	case TW_SCALAR_BOOL:
		return s->b ? 1.0 : 0.0;
	case TW_SCALAR_INT:
		return (double)s->i;
	default:
		return s->d;
	}
}

bool tw_ops_dtype_supported(tw_dtype dt)
{
	return dt == TW_BOOL || dt == TW_INT32 || dt == TW_INT64 ||
	       dt == TW_FLOAT32 || dt == TW_FLOAT64;
}

bool tw_ops_dtype_is_floating(tw_dtype dt)
{
	return dt == TW_FLOAT16 || dt == TW_BFLOAT16 || dt == TW_FLOAT32 ||
	       dt == TW_FLOAT64;
}

bool tw_ops_dtype_is_integral(tw_dtype dt)
{
	return (unsigned)dt <= TW_INT64;
}

const char *tw_ops_torch_dtype_name(tw_dtype dt)
{
	static const char *const names[TW_DTYPE_COUNT_] = {
		[TW_BOOL] = "Bool",     [TW_UINT8] = "Byte",
		[TW_INT8] = "Char",     [TW_INT16] = "Short",
		[TW_INT32] = "Int",     [TW_INT64] = "Long",
		[TW_FLOAT16] = "Half",  [TW_BFLOAT16] = "BFloat16",
		[TW_FLOAT32] = "Float", [TW_FLOAT64] = "Double",
	};
	if ((unsigned)dt >= TW_DTYPE_COUNT_)
		return "?";
	return names[dt];
}

/* 0 bool, 1 integer, 2 floating. */
static int category(tw_dtype dt)
{
	if (dt == TW_BOOL)
		return 0;
	return tw_ops_dtype_is_floating(dt) ? 2 : 1;
}

tw_dtype tw_ops_promote_types(tw_dtype a, tw_dtype b)
{
	if (a == b)
		return a;
	int ca = category(a), cb = category(b);
	if (ca != cb)
		return ca > cb ? a : b;
	if (ca == 2) {
		/* float16 < float32 < float64; bfloat16 beside float16. */
		if ((a == TW_FLOAT16 && b == TW_BFLOAT16) ||
		    (a == TW_BFLOAT16 && b == TW_FLOAT16))
			return TW_FLOAT32;
		return tw_dtype_size(a) >= tw_dtype_size(b) ? a : b;
	}
	/* Integers: uint8 with a signed type needs the next signed size. */
	if (a == TW_UINT8 || b == TW_UINT8) {
		tw_dtype s = a == TW_UINT8 ? b : a;
		return s == TW_INT8 ? TW_INT16 : s;
	}
	return tw_dtype_size(a) >= tw_dtype_size(b) ? a : b;
}

void tw_ops_promo_init(tw_ops_promo *p)
{
	p->dim = p->zero = p->wrapped = -1;
}

static int promo_add(int cur, tw_dtype dt)
{
	return cur < 0 ? (int)dt : (int)tw_ops_promote_types((tw_dtype)cur, dt);
}

void tw_ops_promo_tensor(tw_ops_promo *p, const tw_tensor *t)
{
	if (t->ndim > 0)
		p->dim = promo_add(p->dim, (tw_dtype)t->dtype);
	else
		p->zero = promo_add(p->zero, (tw_dtype)t->dtype);
}

void tw_ops_promo_scalar(tw_ops_promo *p, const tw_scalar *s)
{
	/* A double Scalar stands for the default dtype, as in torch's
	 * update_result_type_state for wrapped numbers. */
	tw_dtype dt = s->kind == TW_SCALAR_BOOL  ? TW_BOOL
		      : s->kind == TW_SCALAR_INT ? TW_INT64
						 : TW_FLOAT32;
	p->wrapped = promo_add(p->wrapped, dt);
}

/* torch's combine_categories: the higher tier wins unless the lower one is
 * of a higher category. */
static int combine(int higher, int lower)
{
	if (higher >= 0 && tw_ops_dtype_is_floating((tw_dtype)higher))
		return higher;
	if (higher == TW_BOOL ||
	    (lower >= 0 && tw_ops_dtype_is_floating((tw_dtype)lower))) {
		if (higher < 0)
			return lower;
		if (lower < 0)
			return higher;
		return (int)tw_ops_promote_types((tw_dtype)higher,
						 (tw_dtype)lower);
	}
	return higher >= 0 ? higher : lower;
}

tw_dtype tw_ops_promo_result(const tw_ops_promo *p)
{
	int r = combine(p->dim, combine(p->zero, p->wrapped));
	return r < 0 ? TW_FLOAT32 : (tw_dtype)r;
}

tw_dtype tw_ops_result_type(const tw_tensor *a, const tw_tensor *b)
{
	tw_ops_promo p;
	tw_ops_promo_init(&p);
	tw_ops_promo_tensor(&p, a);
	tw_ops_promo_tensor(&p, b);
	return tw_ops_promo_result(&p);
}

tw_dtype tw_ops_result_type_scalar(const tw_tensor *a, const tw_scalar *s)
{
	tw_ops_promo p;
	tw_ops_promo_init(&p);
	tw_ops_promo_tensor(&p, a);
	tw_ops_promo_scalar(&p, s);
	return tw_ops_promo_result(&p);
}

tw_status tw_ops_broadcast_shapes(unsigned na, const int64_t *sa, unsigned nb,
				  const int64_t *sb, unsigned *nout,
				  int64_t *out)
{
	unsigned n = na > nb ? na : nb;
	if (n > TW_TENSOR_MAX_DIMS)
		return tw_fail_static(TW_EINVAL, "too many dims");
	int64_t res[TW_TENSOR_MAX_DIMS];
	for (unsigned i = 0; i < n; i++) {
		/* i counts from the trailing dim. */
		int64_t x = i < na ? sa[na - 1 - i] : 1;
		int64_t y = i < nb ? sb[nb - 1 - i] : 1;
		if (x != y && x != 1 && y != 1)
			return tw_fail(
				TW_ERUNTIME,
				"The size of tensor a (%lld) must match the size of tensor b (%lld) at non-singleton dimension %u",
				(long long)x, (long long)y, n - 1 - i);
		res[n - 1 - i] = x == 1 ? y : x;
	}
	memcpy(out, res, n * sizeof(int64_t));
	*nout = n;
	return TW_OK;
}

tw_status tw_ops_wrap_dim(int64_t dim, unsigned ndim, unsigned *out)
{
	int64_t n = ndim > 0 ? (int64_t)ndim : 1;
	if (dim < -n || dim >= n)
		return tw_fail(
			TW_EVALUE,
			"Dimension out of range (expected to be in range of [%lld, %lld], but got %lld)",
			(long long)-n, (long long)(n - 1), (long long)dim);
	*out = (unsigned)(dim < 0 ? dim + n : dim);
	return TW_OK;
}

tw_status tw_ops_check(const char *op, const tw_tensor *t, bool need_supported,
		       int64_t *numel)
{
	int64_t n;
	if (t == NULL)
		return tw_fail(TW_EINVAL, "%s(): NULL tensor", op);
	tw_status st = tw_tensor_numel(t, &n);
	if (st != TW_OK)
		return tw_fail(st, "%s(): malformed tensor (%s)", op,
			       tw_status_name(st));
	if (need_supported && !tw_ops_dtype_supported((tw_dtype)t->dtype))
		return tw_fail(TW_ETYPE, "\"%s\" not implemented for '%s'", op,
			       tw_ops_torch_dtype_name((tw_dtype)t->dtype));
	/* Kernels load elements as their C type: the address must suit it
	 * (strides are in elements, so the base decides). */
	if (need_supported && n > 0 &&
	    (uintptr_t)t->data % tw_dtype_size((tw_dtype)t->dtype) != 0)
		return tw_fail(
			TW_EINVAL,
			"%s(): tensor data is not aligned to its %zu-byte elements (clone it first)",
			op, tw_dtype_size((tw_dtype)t->dtype));
	if (numel != NULL)
		*numel = n;
	return TW_OK;
}

void tw_ops_format_shape(char *buf, size_t len, unsigned ndim,
			 const int64_t *shape)
{
	size_t used = 0;
	if (len == 0)
		return;
	buf[0] = '\0';
	int w = snprintf(buf, len, "[");
	used = w > 0 ? (size_t)w : 0;
	for (unsigned d = 0; d < ndim && used < len; d++) {
		w = snprintf(buf + used, len - used, "%s%lld", d ? ", " : "",
			     (long long)shape[d]);
		if (w < 0)
			return;
		used += (size_t)w;
	}
	if (used < len)
		snprintf(buf + used, len - used, "]");
}

/* ---- conversion ---------------------------------------------------- */

/* float -> integer without undefined behaviour: truncation toward zero, and
 * the minimum for NaN and values out of range (as x86 cvttsd2si). */
static inline int64_t f2i64(double x)
{
	if (x >= -9223372036854775808.0 && x < 9223372036854775808.0)
		return (int64_t)x;
	return INT64_MIN;
}

static inline int32_t f2i32(double x)
{
	if (x > -2147483649.0 && x < 2147483648.0)
		return (int32_t)x;
	return INT32_MIN;
}

void tw_ops_convert_one(void *dst, tw_dtype ddt, const void *src, tw_dtype sdt)
{
	/* Read into the widest type of the source's category. */
	bool isf = sdt == TW_FLOAT32 || sdt == TW_FLOAT64;
	double f = 0;
	int64_t i = 0;
	switch (sdt) {
	case TW_BOOL: {
		uint8_t v;
		memcpy(&v, src, 1);
		i = v != 0;
		break;
	}
	case TW_INT32: {
		int32_t v;
		memcpy(&v, src, 4);
		i = v;
		break;
	}
	case TW_INT64:
		memcpy(&i, src, 8);
		break;
	case TW_FLOAT32: {
		float v;
		memcpy(&v, src, 4);
		f = v;
		break;
	}
	case TW_FLOAT64:
		memcpy(&f, src, 8);
		break;
	default:
		return;
	}
	switch (ddt) {
	case TW_BOOL: {
		uint8_t v = isf ? f != 0 : i != 0;
		memcpy(dst, &v, 1);
		break;
	}
	case TW_INT32: {
		int32_t v = isf ? f2i32(f) : (int32_t)(uint32_t)i;
		memcpy(dst, &v, 4);
		break;
	}
	case TW_INT64: {
		int64_t v = isf ? f2i64(f) : i;
		memcpy(dst, &v, 8);
		break;
	}
	case TW_FLOAT32: {
		float v = isf ? (float)f : (float)i;
		memcpy(dst, &v, 4);
		break;
	}
	case TW_FLOAT64: {
		double v = isf ? f : (double)i;
		memcpy(dst, &v, 8);
		break;
	}
	default:
		break;
	}
}

void tw_ops_scalar_store(const tw_scalar *s, tw_dtype dt, void *dst)
{
	switch (s->kind) {
	case TW_SCALAR_BOOL: {
		uint8_t v = s->b;
		tw_ops_convert_one(dst, dt, &v, TW_BOOL);
		break;
	}
	case TW_SCALAR_INT:
		tw_ops_convert_one(dst, dt, &s->i, TW_INT64);
		break;
	default:
		tw_ops_convert_one(dst, dt, &s->d, TW_FLOAT64);
		break;
	}
}

/* c10 names the C++ type in its overflow message. */
static const char *cxx_type_name(tw_dtype dt)
{
	switch (dt) {
	case TW_BOOL:
		return "bool";
	case TW_INT32:
		return "int";
	case TW_INT64:
		return "int64_t";
	case TW_FLOAT32:
		return "float";
	default:
		return "double";
	}
}

tw_status tw_ops_scalar_to(const tw_scalar *s, tw_dtype dt, void *dst)
{
	bool over = false;
	if (s->kind == TW_SCALAR_INT) {
		if (dt == TW_INT32)
			over = s->i < INT32_MIN || s->i > INT32_MAX;
	} else if (s->kind == TW_SCALAR_DOUBLE) {
		double d = s->d;
		if (dt == TW_INT32)
			over = !(d > -2147483649.0 && d < 2147483648.0);
		else if (dt == TW_INT64)
			over = !(d >= -9223372036854775808.0 &&
				 d < 9223372036854775808.0);
		else if (dt == TW_FLOAT32)
			over = isfinite(d) && fabs(d) > 3.4028234663852886e38;
	}
	if (over)
		return tw_fail(
			TW_ERUNTIME,
			"value cannot be converted to type %s without overflow",
			cxx_type_name(dt));
	tw_ops_scalar_store(s, dt, dst);
	return TW_OK;
}

/* ---- the N-d loop ------------------------------------------------- */

void tw_ops_bcast_strides(const tw_tensor *t, unsigned ndim,
			  const int64_t *shape, int64_t *bstrides)
{
	int64_t esize = (int64_t)tw_dtype_size((tw_dtype)t->dtype);
	unsigned off = ndim - t->ndim;
	for (unsigned d = 0; d < ndim; d++) {
		if (d < off || t->shape[d - off] == 1 || shape[d] == 1)
			bstrides[d] = 0;
		else
			bstrides[d] = t->strides[d - off] * esize;
	}
}

void tw_ops_iter_init(tw_ops_iter *it, unsigned ndim, const int64_t *shape,
		      unsigned nops,
		      const int64_t (*strides)[TW_TENSOR_MAX_DIMS])
{
	memset(it, 0, sizeof(*it));
	it->nops = nops;
	int64_t numel = 1;
	for (unsigned d = 0; d < ndim; d++)
		numel *= shape[d]; /* shapes come from validated tensors */
	it->numel = numel;

	/* Keep the dims that are stepped over (size > 1), outermost first. */
	unsigned n = 0;
	for (unsigned d = 0; d < ndim; d++) {
		if (shape[d] == 1 && numel != 0)
			continue;
		it->shape[n] = shape[d];
		for (unsigned k = 0; k < nops; k++)
			it->stride[k][n] = strides[k][d];
		n++;
	}
	if (n == 0) {
		it->shape[0] = 1;
		it->ndim = 1;
		return;
	}
	/* Merge dim d into d + 1 when every operand steps over d exactly as
	 * one full run of d + 1. */
	unsigned m = 0; /* last kept dim */
	for (unsigned d = 1; d < n; d++) {
		bool ok = true;
		for (unsigned k = 0; k < nops && ok; k++)
			ok = it->stride[k][m] ==
			     it->stride[k][d] * it->shape[d];
		if (ok) {
			it->shape[m] *= it->shape[d];
			for (unsigned k = 0; k < nops; k++)
				it->stride[k][m] = it->stride[k][d];
		} else {
			m++;
			it->shape[m] = it->shape[d];
			for (unsigned k = 0; k < nops; k++)
				it->stride[k][m] = it->stride[k][d];
		}
	}
	it->ndim = m + 1;
}

void tw_ops_iter_run(const tw_ops_iter *it, char *const *base, tw_ops_row_fn fn,
		     void *ctx)
{
	if (it->numel == 0)
		return;
	unsigned nd = it->ndim;
	unsigned nops = it->nops;
	int64_t inner = it->shape[nd - 1];
	int64_t rows = it->numel / inner;
	int64_t istr[TW_OPS_MAX_OPERANDS];
	int64_t off[TW_OPS_MAX_OPERANDS] = {0};
	int64_t idx[TW_TENSOR_MAX_DIMS] = {0};
	char *p[TW_OPS_MAX_OPERANDS] = {0};
	for (unsigned k = 0; k < nops; k++)
		istr[k] = it->stride[k][nd - 1];

	for (int64_t r = 0; r < rows; r++) {
		for (unsigned k = 0; k < nops; k++)
			p[k] = base[k] + off[k];
		fn(p, istr, inner, ctx);
		/* Step the outer dims, innermost of them first. */
		for (unsigned d = nd - 1; d-- > 0;) {
			for (unsigned k = 0; k < nops; k++)
				off[k] += it->stride[k][d];
			if (++idx[d] < it->shape[d])
				break;
			for (unsigned k = 0; k < nops; k++)
				off[k] -= it->stride[k][d] * it->shape[d];
			idx[d] = 0;
		}
	}
}

/* ---- copy with conversion ------------------------------------------ */

/* Same-dtype row copy for any element size. */
#define COPY_ROW(NAME, T)                                                      \
	static void NAME(char *const *p, const int64_t *s, int64_t n,          \
			 void *ctx)                                            \
	{                                                                      \
		(void)ctx;                                                     \
		if (s[0] == (int64_t)sizeof(T) &&                              \
		    s[1] == (int64_t)sizeof(T)) {                              \
			memcpy(p[0], p[1], (size_t)n * sizeof(T));             \
			return;                                                \
		}                                                              \
		for (int64_t k = 0; k < n; k++)                                \
			memcpy(p[0] + k * s[0], p[1] + k * s[1], sizeof(T));   \
	}
COPY_ROW(copy_row1, uint8_t)
COPY_ROW(copy_row2, uint16_t)
COPY_ROW(copy_row4, uint32_t)
COPY_ROW(copy_row8, uint64_t)

/*
 * Converting row copies, one per (destination, source) pair: a contiguous
 * loop the compiler vectorizes, and a strided one (the destination may be
 * a slice of a cat/stack result).
 */
#define CONV_ROW(NAME, TD, TS, EXPR)                                           \
	static inline void NAME##_c(TD *restrict o, const TS *restrict a,      \
				    int64_t n)                                 \
	{                                                                      \
		TW_OPS_VLOOP(n, k, {                                           \
			const TS x = a[k];                                     \
			o[k] = (TD)(EXPR);                                     \
		});                                                            \
	}                                                                      \
	static void NAME(char *const *p, const int64_t *s, int64_t n,          \
			 void *ctx)                                            \
	{                                                                      \
		(void)ctx;                                                     \
		if (s[0] == (int64_t)sizeof(TD) &&                             \
		    s[1] == (int64_t)sizeof(TS)) {                             \
			NAME##_c((TD *)(void *)p[0],                           \
				 (const TS *)(const void *)p[1], n);           \
			return;                                                \
		}                                                              \
		for (int64_t k = 0; k < n; k++) {                              \
			TS x;                                                  \
			memcpy(&x, p[1] + k * s[1], sizeof(TS));               \
			TD v = (TD)(EXPR);                                     \
			memcpy(p[0] + k * s[0], &v, sizeof(TD));               \
		}                                                              \
	}

#define TO_BOOL(x) ((x) != 0)
#define PLAIN(x) (x)
#define WRAP32(x) ((uint32_t)(x))

CONV_ROW(cv_b_i32, uint8_t, int32_t, TO_BOOL(x))
CONV_ROW(cv_b_i64, uint8_t, int64_t, TO_BOOL(x))
CONV_ROW(cv_b_f32, uint8_t, float, TO_BOOL(x))
CONV_ROW(cv_b_f64, uint8_t, double, TO_BOOL(x))
CONV_ROW(cv_i32_b, int32_t, uint8_t, TO_BOOL(x))
CONV_ROW(cv_i32_i64, int32_t, int64_t, WRAP32(x))
CONV_ROW(cv_i32_f32, int32_t, float, f2i32(x))
CONV_ROW(cv_i32_f64, int32_t, double, f2i32(x))
CONV_ROW(cv_i64_b, int64_t, uint8_t, TO_BOOL(x))
CONV_ROW(cv_i64_i32, int64_t, int32_t, PLAIN(x))
CONV_ROW(cv_i64_f32, int64_t, float, f2i64(x))
CONV_ROW(cv_i64_f64, int64_t, double, f2i64(x))
CONV_ROW(cv_f32_b, float, uint8_t, TO_BOOL(x))
CONV_ROW(cv_f32_i32, float, int32_t, PLAIN(x))
CONV_ROW(cv_f32_i64, float, int64_t, PLAIN(x))
CONV_ROW(cv_f32_f64, float, double, PLAIN(x))
CONV_ROW(cv_f64_b, double, uint8_t, TO_BOOL(x))
CONV_ROW(cv_f64_i32, double, int32_t, PLAIN(x))
CONV_ROW(cv_f64_i64, double, int64_t, PLAIN(x))
CONV_ROW(cv_f64_f32, double, float, PLAIN(x))

static int conv_index(tw_dtype dt)
{
	switch (dt) {
	case TW_BOOL:
		return 0;
	case TW_INT32:
		return 1;
	case TW_INT64:
		return 2;
	case TW_FLOAT32:
		return 3;
	default:
		return 4;
	}
}

/* [destination][source]; the diagonal is the plain copy. */
static const tw_ops_row_fn conv_table[5][5] = {
	{NULL, cv_b_i32, cv_b_i64, cv_b_f32, cv_b_f64},
	{cv_i32_b, NULL, cv_i32_i64, cv_i32_f32, cv_i32_f64},
	{cv_i64_b, cv_i64_i32, NULL, cv_i64_f32, cv_i64_f64},
	{cv_f32_b, cv_f32_i32, cv_f32_i64, NULL, cv_f32_f64},
	{cv_f64_b, cv_f64_i32, cv_f64_i64, cv_f64_f32, NULL},
};

void tw_ops_copy_into(const tw_tensor *dst, const tw_tensor *src)
{
	int64_t strides[2][TW_TENSOR_MAX_DIMS];
	tw_ops_iter it;
	tw_ops_bcast_strides(dst, dst->ndim, dst->shape, strides[0]);
	tw_ops_bcast_strides(src, dst->ndim, dst->shape, strides[1]);
	tw_ops_iter_init(&it, dst->ndim, dst->shape, 2,
			 (const int64_t(*)[TW_TENSOR_MAX_DIMS])strides);
	char *base[2] = {dst->data, src->data};
	if (dst->dtype == src->dtype) {
		tw_ops_row_fn fn;
		switch (tw_dtype_size((tw_dtype)dst->dtype)) {
		case 1:
			fn = copy_row1;
			break;
		case 2:
			fn = copy_row2;
			break;
		case 4:
			fn = copy_row4;
			break;
		default:
			fn = copy_row8;
			break;
		}
		tw_ops_iter_run(&it, base, fn, NULL);
		return;
	}
	tw_ops_iter_run(&it, base,
			conv_table[conv_index((tw_dtype)dst->dtype)]
				  [conv_index((tw_dtype)src->dtype)],
			NULL);
}

/* ---- bounds ------------------------------------------------------------ */

static _Thread_local const tw_ops_limits *ops_lim;
static _Thread_local bool ops_offload;

void tw_ops_limits_set(const tw_ops_limits *l)
{
	ops_lim = l;
	ops_offload = false;
}

const tw_ops_limits *tw_ops_limits_get(void)
{
	return ops_lim;
}

bool tw_ops_offload_take(void)
{
	bool r = ops_offload;
	ops_offload = false;
	return r;
}

/* "sum(): work of 17179869184 elements is over this worker's limit of
 * 4294967296 elements (tw_agent_opts.max_op_work)". */
static tw_status refuse(const tw_ops_limits *l, const char *op,
			const char *what, uint64_t n, const char *unit,
			uint64_t max, const char *opt)
{
	if (l->refused != NULL)
		atomic_fetch_add_explicit(l->refused, 1, memory_order_relaxed);
	return tw_fail(
		TW_ERUNTIME,
		"%s(): %s %llu %s is over this worker's limit of %llu %s (tw_agent_opts.%s)",
		op, what, (unsigned long long)n, unit, (unsigned long long)max,
		unit, opt);
}

tw_status tw_ops_limit_work(const char *op, uint64_t work)
{
	const tw_ops_limits *l = ops_lim;
	if (l == NULL)
		return TW_OK;
	if (l->max_work != 0 && work > l->max_work)
		return refuse(l, op, "work of", work, "elements", l->max_work,
			      "max_op_work");
	if (l->offload_work != 0 && work > l->offload_work) {
		ops_offload = true;
		return tw_fail_static(TW_EBUSY,
				      "work over loop_work_max: to be run on "
				      "the executor");
	}
	return TW_OK;
}

tw_status tw_ops_limit_new(const char *op, tw_dtype dt, unsigned ndim,
			   const int64_t *shape)
{
	const tw_ops_limits *l = ops_lim;
	if (l == NULL)
		return TW_OK;
	/* Saturating: a shape whose product overflows is over any bound. */
	uint64_t n = 1;
	for (unsigned d = 0; d < ndim; d++) {
		uint64_t s = shape[d] < 0 ? 0 : (uint64_t)shape[d];
		if (__builtin_mul_overflow(n, s, &n))
			n = UINT64_MAX;
	}
	if (l->max_elems != 0 && n > l->max_elems)
		return refuse(l, op, "a tensor of", n, "elements", l->max_elems,
			      "max_tensor_elems");
	uint64_t bytes;
	if (__builtin_mul_overflow(n, (uint64_t)tw_dtype_size(dt), &bytes))
		bytes = UINT64_MAX;
	if (l->max_bytes != 0 && bytes > l->max_bytes)
		return refuse(l, op, "a tensor of", bytes, "bytes",
			      l->max_bytes, "max_tensor_bytes");
	return tw_ops_limit_work(op, n);
}

tw_status tw_ops_alloc(const char *op, tw_tensor *out, tw_dtype dt,
		       unsigned ndim, const int64_t *shape, bool zero)
{
	tw_status st = tw_ops_limit_new(op, dt, ndim, shape);
	if (st != TW_OK)
		return st;
	st = zero ? tw_tensor_zeros(out, dt, ndim, shape)
		  : tw_tensor_alloc(out, dt, ndim, shape);
	if (st != TW_OK)
		return tw_fail_static(st, "cannot allocate the result");
	return TW_OK;
}
