/* The aten:: builtins every agent serves: torch's schemas (as
 * native_functions.yaml writes them) bound by the registry, and adapters
 * that turn the bound values into kernel arguments (rpc/ops) and the
 * kernel's results into values. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/err.h"
#include "rpc/invoke.h"
#include "rpc/ops/ops.h"

#define ERRLEN 512

#define ADAPTER(name)                                                          \
	static tw_status name(tw_call_ctx *ctx, const tw_value *b,             \
			      uint32_t nb, tw_value *result, void *arg)

#define UNUSED_ADAPTER_ARGS                                                    \
	do {                                                                   \
		(void)ctx;                                                     \
		(void)nb;                                                      \
		(void)arg;                                                     \
	} while (0)

/* ---- conversions ---- */

/* Fail a builtin with st and msg: the remote error value, and the reason
 * recorded for the serving thread as every failure records one. */
static tw_status fail(tw_value *result, tw_status st, const char *msg)
{
	const char *m = msg != NULL && msg[0] ? msg : tw_strerror(st);
	tw_value_destroy(result);
	tw_value_error(result, st, 0, m);
	if (m != tw_err_last())
		tw_fail(st, "%s", m);
	return st;
}

static tw_status failf(tw_value *result, tw_status st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static tw_status failf(tw_value *result, tw_status st, const char *fmt, ...)
{
	char m[ERRLEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	return fail(result, st, m);
}

static const tw_tensor *T(const tw_value *v)
{
	return v->u.tensor;
}

static tw_scalar S(const tw_value *v)
{
	switch (v->kind) {
	case TW_KIND_BOOL:
		return tw_scalar_bool(v->u.b);
	case TW_KIND_INT:
		return tw_scalar_int(v->u.i);
	default:
		return tw_scalar_double(v->u.d);
	}
}

/* torch's ScalarType codes (c10/core/ScalarType.h). */
static tw_status dtype_of(const tw_value *v, tw_dtype *out, bool *has,
			  tw_value *result)
{
	*has = false;
	if (v->kind == TW_KIND_NONE)
		return TW_OK;
	static const int map[] = {
		[0] = TW_UINT8,     [1] = TW_INT8,    [2] = TW_INT16,
		[3] = TW_INT32,     [4] = TW_INT64,   [5] = TW_FLOAT16,
		[6] = TW_FLOAT32,   [7] = TW_FLOAT64, [8] = -1,
		[9] = -1,           [10] = -1,        [11] = TW_BOOL,
		[12] = -1,          [13] = -1,        [14] = -1,
		[15] = TW_BFLOAT16,
	};
	int64_t c = v->u.i;
	if (c < 0 || c >= (int64_t)(sizeof(map) / sizeof(map[0])) || map[c] < 0)
		return failf(
			result, TW_ETYPE,
			"unsupported dtype: ScalarType code %lld (tensorwire supports uint8=0, int8=1, int16=2, int32=3, int64=4, float16=5, float32=6, float64=7, bool=11, bfloat16=15)",
			(long long)c);
	*out = (tw_dtype)map[c];
	*has = true;
	return TW_OK;
}

/* An int list (SymInt[], int[1]) into dims[TW_TENSOR_MAX_DIMS]. */
static tw_status ints_of(const tw_value *v, const char *what, int64_t *dims,
			 unsigned *n, tw_value *result)
{
	*n = 0;
	if (v->kind == TW_KIND_NONE)
		return TW_OK;
	if (v->len > TW_TENSOR_MAX_DIMS)
		return failf(
			result, TW_ERUNTIME,
			"%s has %u entries: tensorwire tensors have at most %d dims",
			what, v->len, TW_TENSOR_MAX_DIMS);
	for (uint32_t i = 0; i < v->len; i++)
		dims[i] = v->u.items[i].u.i;
	*n = v->len;
	return TW_OK;
}

/* layout, device, pin_memory of a factory: only what a CPU tensor is. */
static tw_status check_options(const tw_value *b, uint32_t at, tw_value *result)
{
	const tw_value *layout = &b[at], *device = &b[at + 1],
		       *pin = &b[at + 2];
	if (layout->kind == TW_KIND_INT && layout->u.i != 0)
		return failf(
			result, TW_EVALUE,
			"unsupported layout %lld: tensorwire only makes strided tensors (layout=torch.strided, 0)",
			(long long)layout->u.i);
	if (device->kind == TW_KIND_STRING &&
	    strcmp(device->u.str, "cpu") != 0 &&
	    strcmp(device->u.str, "cpu:0") != 0)
		return failf(
			result, TW_EVALUE,
			"unsupported device '%s': tensorwire builtins run on the cpu",
			device->u.str);
	if (pin->kind == TW_KIND_BOOL && pin->u.b)
		return fail(
			result, TW_EVALUE,
			"pin_memory=True is not supported by tensorwire builtins");
	return TW_OK;
}

/* Move a kernel's result tensor into *result. A view of borrowed bytes
 * (no buf) is copied: the value must not outlive the call's arguments. */
static tw_status ret_tensor(tw_value *result, tw_tensor *out)
{
	tw_status st;
	if (out->buf == NULL) {
		tw_tensor c;
		st = tw_op_clone(out, &c);
		if (st != TW_OK) /* a copy over the bounds says which */
			return fail(result, st, tw_errmsg(st));
		*out = c;
	}
	tw_value v;
	st = tw_value_tensor(&v, out);
	tw_tensor_release(out);
	if (st != TW_OK)
		return fail(result, st, "cannot make the result value");
	tw_value_destroy(result);
	*result = v;
	return TW_OK;
}

static tw_status ret_pair(tw_value *result, tw_tensor *x, tw_tensor *y)
{
	tw_value t, a = tw_value_none(), c = tw_value_none();
	tw_status st = tw_value_tuple(&t, 2);
	if (st == TW_OK)
		st = ret_tensor(&a, x);
	else
		tw_tensor_release(x);
	if (st == TW_OK)
		st = ret_tensor(&c, y);
	else
		tw_tensor_release(y);
	if (st != TW_OK) {
		tw_value_destroy(&t);
		tw_value_destroy(&a);
		tw_value_destroy(&c);
		return fail(result, st, "cannot make the result value");
	}
	tw_value_set_item(&t, 0, a);
	tw_value_set_item(&t, 1, c);
	tw_value_destroy(result);
	*result = t;
	return TW_OK;
}

/* A kernel's result, or its failure as the remote error: the reason the
 * kernel recorded (tw_errmsg), read before any other call can replace it. */
static tw_status done(tw_status st, tw_value *result, tw_tensor *out)
{
	if (st != TW_OK)
		return fail(result, st, tw_errmsg(st));
	return ret_tensor(result, out);
}

/* ---- elementwise ---- */

typedef tw_status (*unary_fn)(const tw_tensor *, tw_tensor *);
typedef tw_status (*binary_fn)(const tw_tensor *, const tw_tensor *,
			       tw_tensor *);
typedef tw_status (*binary_alpha_fn)(const tw_tensor *, const tw_tensor *,
				     const tw_scalar *, tw_tensor *);
typedef tw_status (*scalar_fn)(const tw_tensor *, const tw_scalar *,
			       tw_tensor *);
typedef tw_status (*scalar_alpha_fn)(const tw_tensor *, const tw_scalar *,
				     const tw_scalar *, tw_tensor *);

/* The kernel behind an adapter family travels in the registration's arg,
 * boxed (object and function pointers do not mix in ISO C). */
struct kfn {
	unary_fn unary;
	binary_fn binary;
	binary_alpha_fn binary_alpha;
	scalar_fn scalar;
	scalar_alpha_fn scalar_alpha;
};

static const struct kfn k_add = {.binary_alpha = tw_op_add,
				 .scalar_alpha = tw_op_add_scalar};
static const struct kfn k_sub = {.binary_alpha = tw_op_sub,
				 .scalar_alpha = tw_op_sub_scalar};
static const struct kfn k_mul = {.binary = tw_op_mul,
				 .scalar = tw_op_mul_scalar};
static const struct kfn k_pow = {.binary = tw_op_pow,
				 .scalar = tw_op_pow_scalar};
static const struct kfn k_matmul = {.binary = tw_op_matmul};
static const struct kfn k_mm = {.binary = tw_op_mm};
static const struct kfn k_neg = {.unary = tw_op_neg};
static const struct kfn k_abs = {.unary = tw_op_abs};
static const struct kfn k_relu = {.unary = tw_op_relu};
static const struct kfn k_sigmoid = {.unary = tw_op_sigmoid};
static const struct kfn k_tanh = {.unary = tw_op_tanh};
static const struct kfn k_exp = {.unary = tw_op_exp};
static const struct kfn k_log = {.unary = tw_op_log};
static const struct kfn k_sqrt = {.unary = tw_op_sqrt};
static const struct kfn k_t = {.unary = tw_op_t};
static const struct kfn k_max = {.unary = tw_op_max};
static const struct kfn k_min = {.unary = tw_op_min};

/* (Tensor self) */
ADAPTER(a_unary)
{
	(void)ctx;
	(void)nb;
	const struct kfn *k = arg;
	tw_tensor out;
	tw_status st = k->unary(T(&b[0]), &out);
	return done(st, result, &out);
}

/* (Tensor self, Tensor other) */
ADAPTER(a_binary)
{
	(void)ctx;
	(void)nb;
	const struct kfn *k = arg;
	tw_tensor out;
	tw_status st = k->binary(T(&b[0]), T(&b[1]), &out);
	return done(st, result, &out);
}

/* (Tensor self, Tensor other, *, Scalar alpha=1) */
ADAPTER(a_binary_alpha)
{
	(void)ctx;
	(void)nb;
	const struct kfn *k = arg;
	tw_tensor out;
	tw_scalar alpha = S(&b[2]);
	tw_status st = k->binary_alpha(T(&b[0]), T(&b[1]), &alpha, &out);
	return done(st, result, &out);
}

/* (Tensor self, Scalar other) */
ADAPTER(a_scalar)
{
	(void)ctx;
	(void)nb;
	const struct kfn *k = arg;
	tw_tensor out;
	tw_scalar s = S(&b[1]);
	tw_status st = k->scalar(T(&b[0]), &s, &out);
	return done(st, result, &out);
}

/* (Tensor self, Scalar other, Scalar alpha=1) */
ADAPTER(a_scalar_alpha)
{
	(void)ctx;
	(void)nb;
	const struct kfn *k = arg;
	tw_tensor out;
	tw_scalar s = S(&b[1]), alpha = S(&b[2]);
	tw_status st = k->scalar_alpha(T(&b[0]), &s, &alpha, &out);
	return done(st, result, &out);
}

/* div.Tensor / div.Scalar (arg NULL), div.Tensor_mode / div.Scalar_mode
 * (rounding_mode at b[2]); arg non-NULL for the Scalar forms. */
static tw_status div_common(const tw_value *b, uint32_t nb, bool scalar,
			    tw_value *result)
{
	tw_rounding mode = TW_ROUND_NONE;
	tw_status st;
	if (nb > 2 && b[2].kind == TW_KIND_STRING) {
		st = tw_ops_rounding_from_name(b[2].u.str, &mode);
		if (st != TW_OK)
			return fail(result, st, tw_errmsg(st));
	}
	tw_tensor out;
	if (scalar) {
		tw_scalar s = S(&b[1]);
		st = tw_op_div_scalar(T(&b[0]), &s, mode, &out);
	} else {
		st = tw_op_div(T(&b[0]), T(&b[1]), mode, &out);
	}
	return done(st, result, &out);
}

ADAPTER(a_div)
{
	(void)ctx;
	(void)arg;
	return div_common(b, nb, false, result);
}

ADAPTER(a_div_scalar)
{
	(void)ctx;
	(void)arg;
	return div_common(b, nb, true, result);
}

/* pow.Scalar(Scalar self, Tensor exponent) */
ADAPTER(a_pow_scalar_base)
{
	UNUSED_ADAPTER_ARGS;
	tw_tensor out;
	tw_scalar base = S(&b[0]);
	tw_status st = tw_op_pow_scalar_base(&base, T(&b[1]), &out);
	return done(st, result, &out);
}

/* ---- reductions ---- */

typedef tw_status (*reduce_fn)(const tw_tensor *, const int64_t *, unsigned,
			       bool, const tw_dtype *, tw_tensor *);

/* sum / mean (arg: 0 sum, 1 mean; plain: (self, *, dtype); dim: (self,
 * dim, keepdim, *, dtype)). */
static tw_status reduce_common(const tw_value *b, bool with_dim, bool mean,
			       tw_value *result)
{
	reduce_fn f = mean ? tw_op_mean : tw_op_sum;
	int64_t dims[TW_TENSOR_MAX_DIMS];
	unsigned nd = 0;
	bool keepdim = false;
	const tw_value *dtv = &b[1];
	tw_status st;
	if (with_dim) {
		st = ints_of(&b[1], "dim", dims, &nd, result);
		if (st != TW_OK)
			return st;
		keepdim = b[2].u.b;
		dtv = &b[3];
	}
	tw_dtype dt;
	bool has;
	st = dtype_of(dtv, &dt, &has, result);
	if (st != TW_OK)
		return st;
	tw_tensor out;
	st = f(T(&b[0]), nd ? dims : NULL, nd, keepdim, has ? &dt : NULL, &out);
	return done(st, result, &out);
}

ADAPTER(a_sum)
{
	UNUSED_ADAPTER_ARGS;
	return reduce_common(b, false, false, result);
}
ADAPTER(a_sum_dim)
{
	UNUSED_ADAPTER_ARGS;
	return reduce_common(b, true, false, result);
}
ADAPTER(a_mean)
{
	UNUSED_ADAPTER_ARGS;
	return reduce_common(b, false, true, result);
}
ADAPTER(a_mean_dim)
{
	UNUSED_ADAPTER_ARGS;
	return reduce_common(b, true, true, result);
}

/* max.dim / min.dim(Tensor self, int dim, bool keepdim=False)
 * -> (Tensor values, Tensor indices); arg non-NULL for min. */
ADAPTER(a_extreme_dim)
{
	(void)ctx;
	(void)nb;
	tw_tensor v, i;
	tw_status st = (arg != NULL ? tw_op_min_dim : tw_op_max_dim)(
		T(&b[0]), b[1].u.i, b[2].u.b, &v, &i);
	if (st != TW_OK)
		return fail(result, st, tw_errmsg(st));
	return ret_pair(result, &v, &i);
}

/* argmax(Tensor self, int? dim=None, bool keepdim=False) */
ADAPTER(a_argmax)
{
	UNUSED_ADAPTER_ARGS;
	tw_tensor out;
	int64_t dim = b[1].kind == TW_KIND_INT ? b[1].u.i : 0;
	tw_status st = tw_op_argmax(T(&b[0]),
				    b[1].kind == TW_KIND_INT ? &dim : NULL,
				    b[2].u.b, &out);
	return done(st, result, &out);
}

/* ---- shapes ---- */

/* transpose.int(Tensor(a) self, int dim0, int dim1) */
ADAPTER(a_transpose)
{
	UNUSED_ADAPTER_ARGS;
	tw_tensor out;
	tw_status st = tw_op_transpose(T(&b[0]), b[1].u.i, b[2].u.i, &out);
	return done(st, result, &out);
}

/* reshape / view (Tensor(a) self, SymInt[] shape); arg non-NULL: view. */
ADAPTER(a_reshape)
{
	(void)ctx;
	(void)nb;
	int64_t shape[TW_TENSOR_MAX_DIMS];
	unsigned n;
	tw_status st = ints_of(&b[1], arg != NULL ? "size" : "shape", shape, &n,
			       result);
	if (st != TW_OK)
		return st;
	tw_tensor out;
	st = (arg != NULL ? tw_op_view : tw_op_reshape)(T(&b[0]), shape, n,
							&out);
	return done(st, result, &out);
}

/* cat / stack (Tensor[] tensors, int dim=0); arg non-NULL: stack. */
ADAPTER(a_cat)
{
	(void)ctx;
	(void)nb;
	const tw_value *lv = &b[0];
	tw_tensor small[16] = {{0}};
	tw_tensor *ts = small;
	if (lv->len > 16) {
		ts = malloc((size_t)lv->len * sizeof(*ts));
		if (ts == NULL)
			return fail(result, TW_ENOMEM, NULL);
	}
	/* Plain copies of the descriptors: the kernel only reads them. */
	for (uint32_t i = 0; i < lv->len; i++)
		ts[i] = *lv->u.items[i].u.tensor;
	tw_tensor out;
	tw_status st = (arg != NULL ? tw_op_stack : tw_op_cat)(ts, lv->len,
							       b[1].u.i, &out);
	if (ts != small)
		free(ts);
	return done(st, result, &out);
}

/* clone(Tensor self, *, MemoryFormat? memory_format=None) */
ADAPTER(a_clone)
{
	UNUSED_ADAPTER_ARGS;
	/* contiguous_format (0) and preserve_format (1): a contiguous copy
	 * is both for what tensorwire holds. */
	if (b[1].kind == TW_KIND_INT && b[1].u.i != 0 && b[1].u.i != 1)
		return failf(
			result, TW_EVALUE,
			"unsupported memory_format %lld: tensorwire makes contiguous copies (contiguous_format=0, preserve_format=1)",
			(long long)b[1].u.i);
	tw_tensor out;
	tw_status st = tw_op_clone(T(&b[0]), &out);
	return done(st, result, &out);
}

/* ---- factories ---- */

/* ones / zeros(SymInt[] size, *, ScalarType? dtype=None, Layout? layout,
 * Device? device, bool? pin_memory); arg non-NULL: ones. */
ADAPTER(a_fill01)
{
	(void)ctx;
	(void)nb;
	int64_t shape[TW_TENSOR_MAX_DIMS];
	unsigned n;
	tw_dtype dt;
	bool has;
	tw_status st = ints_of(&b[0], "size", shape, &n, result);
	if (st == TW_OK)
		st = dtype_of(&b[1], &dt, &has, result);
	if (st == TW_OK)
		st = check_options(b, 2, result);
	if (st != TW_OK)
		return st;
	tw_tensor out;
	st = (arg != NULL ? tw_op_ones : tw_op_zeros)(n, shape,
						      has ? &dt : NULL, &out);
	return done(st, result, &out);
}

/* full(SymInt[] size, Scalar fill_value, *, dtype, layout, device, pin) */
ADAPTER(a_full)
{
	UNUSED_ADAPTER_ARGS;
	int64_t shape[TW_TENSOR_MAX_DIMS];
	unsigned n;
	tw_dtype dt;
	bool has;
	tw_status st = ints_of(&b[0], "size", shape, &n, result);
	if (st == TW_OK)
		st = dtype_of(&b[2], &dt, &has, result);
	if (st == TW_OK)
		st = check_options(b, 3, result);
	if (st != TW_OK)
		return st;
	tw_scalar fill = S(&b[1]);
	tw_tensor out;
	st = tw_op_full(n, shape, &fill, has ? &dt : NULL, &out);
	return done(st, result, &out);
}

/* arange(end), arange.start(start, end), arange.start_step(start, end,
 * step=1); arg: the number of Scalars (1, 2, 3). */
ADAPTER(a_arange)
{
	(void)ctx;
	(void)nb;
	unsigned ns = (unsigned)(uintptr_t)arg;
	tw_scalar start = tw_scalar_int(0), end, step = tw_scalar_int(1);
	if (ns == 1) {
		end = S(&b[0]);
	} else {
		start = S(&b[0]);
		end = S(&b[1]);
		if (ns == 3)
			step = S(&b[2]);
	}
	tw_dtype dt;
	bool has;
	tw_status st = dtype_of(&b[ns], &dt, &has, result);
	if (st == TW_OK)
		st = check_options(b, ns + 1, result);
	if (st != TW_OK)
		return st;
	tw_tensor out;
	st = tw_op_arange(&start, &end, &step, has ? &dt : NULL, &out);
	return done(st, result, &out);
}

/* rand / randn(SymInt[] size, *, dtype, layout, device, pin): seed 0;
 * rand.seed / randn.seed(SymInt[] size, *, int seed, dtype, layout,
 * device, pin). arg bit 0: randn; bit 1: seeded. */
ADAPTER(a_random)
{
	(void)ctx;
	(void)nb;
	unsigned how = (unsigned)(uintptr_t)arg;
	bool normal = how & 1u, seeded = how & 2u;
	uint32_t at = seeded ? 2 : 1;
	uint64_t seed = seeded ? (uint64_t)b[1].u.i : 0;
	int64_t shape[TW_TENSOR_MAX_DIMS];
	unsigned n;
	tw_dtype dt;
	bool has;
	tw_status st = ints_of(&b[0], "size", shape, &n, result);
	if (st == TW_OK)
		st = dtype_of(&b[at], &dt, &has, result);
	if (st == TW_OK)
		st = check_options(b, at + 1, result);
	if (st != TW_OK)
		return st;
	tw_tensor out;
	st = (normal ? tw_op_randn : tw_op_rand)(n, shape, seed,
						 has ? &dt : NULL, &out);
	return done(st, result, &out);
}

/* ---- the table ---- */

#define FACTORY_OPTS                                                           \
	"ScalarType? dtype=None, Layout? layout=None, Device? device=None, "   \
	"bool? pin_memory=None"

static const struct builtin {
	const char *schema;
	tw_schema_handler_fn fn;
	const void *arg;
} builtins[] = {
	{"aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor",
	 a_binary_alpha, &k_add},
	{"aten::add.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor",
	 a_scalar_alpha, &k_add},
	{"aten::sub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor",
	 a_binary_alpha, &k_sub},
	{"aten::sub.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor",
	 a_scalar_alpha, &k_sub},
	{"aten::mul.Tensor(Tensor self, Tensor other) -> Tensor", a_binary,
	 &k_mul},
	{"aten::mul.Scalar(Tensor self, Scalar other) -> Tensor", a_scalar,
	 &k_mul},
	{"aten::div.Tensor(Tensor self, Tensor other) -> Tensor", a_div, NULL},
	{"aten::div.Scalar(Tensor self, Scalar other) -> Tensor", a_div_scalar,
	 NULL},
	{"aten::div.Tensor_mode(Tensor self, Tensor other, *, str? rounding_mode) -> Tensor",
	 a_div, NULL},
	{"aten::div.Scalar_mode(Tensor self, Scalar other, *, str? rounding_mode) -> Tensor",
	 a_div_scalar, NULL},
	{"aten::neg(Tensor self) -> Tensor", a_unary, &k_neg},
	{"aten::abs(Tensor self) -> Tensor", a_unary, &k_abs},
	{"aten::relu(Tensor self) -> Tensor", a_unary, &k_relu},
	{"aten::sigmoid(Tensor self) -> Tensor", a_unary, &k_sigmoid},
	{"aten::tanh(Tensor self) -> Tensor", a_unary, &k_tanh},
	{"aten::exp(Tensor self) -> Tensor", a_unary, &k_exp},
	{"aten::log(Tensor self) -> Tensor", a_unary, &k_log},
	{"aten::sqrt(Tensor self) -> Tensor", a_unary, &k_sqrt},
	{"aten::pow.Tensor_Tensor(Tensor self, Tensor exponent) -> Tensor",
	 a_binary, &k_pow},
	{"aten::pow.Scalar(Scalar self, Tensor exponent) -> Tensor",
	 a_pow_scalar_base, NULL},
	{"aten::pow.Tensor_Scalar(Tensor self, Scalar exponent) -> Tensor",
	 a_scalar, &k_pow},
	{"aten::sum(Tensor self, *, ScalarType? dtype=None) -> Tensor", a_sum,
	 NULL},
	{"aten::sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor",
	 a_sum_dim, NULL},
	{"aten::mean(Tensor self, *, ScalarType? dtype=None) -> Tensor", a_mean,
	 NULL},
	{"aten::mean.dim(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor",
	 a_mean_dim, NULL},
	{"aten::max(Tensor self) -> Tensor", a_unary, &k_max},
	{"aten::max.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)",
	 a_extreme_dim, NULL},
	{"aten::min(Tensor self) -> Tensor", a_unary, &k_min},
	{"aten::min.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)",
	 a_extreme_dim, &k_min},
	{"aten::argmax(Tensor self, int? dim=None, bool keepdim=False) -> Tensor",
	 a_argmax, NULL},
	{"aten::matmul(Tensor self, Tensor other) -> Tensor", a_binary,
	 &k_matmul},
	{"aten::mm(Tensor self, Tensor mat2) -> Tensor", a_binary, &k_mm},
	{"aten::t(Tensor(a) self) -> Tensor(a)", a_unary, &k_t},
	{"aten::transpose.int(Tensor(a) self, int dim0, int dim1) -> Tensor(a)",
	 a_transpose, NULL},
	{"aten::reshape(Tensor(a) self, SymInt[] shape) -> Tensor(a)",
	 a_reshape, NULL},
	{"aten::view(Tensor(a) self, SymInt[] size) -> Tensor(a)", a_reshape,
	 &k_t /* any non-NULL: view */},
	{"aten::cat(Tensor[] tensors, int dim=0) -> Tensor", a_cat, NULL},
	{"aten::stack(Tensor[] tensors, int dim=0) -> Tensor", a_cat,
	 &k_t /* any non-NULL: stack */},
	{"aten::clone(Tensor self, *, MemoryFormat? memory_format=None) -> Tensor",
	 a_clone, NULL},
	{"aten::ones(SymInt[] size, *, " FACTORY_OPTS ") -> Tensor", a_fill01,
	 &k_t /* any non-NULL: ones */},
	{"aten::zeros(SymInt[] size, *, " FACTORY_OPTS ") -> Tensor", a_fill01,
	 NULL},
	{"aten::full(SymInt[] size, Scalar fill_value, *, " FACTORY_OPTS
	 ") -> Tensor",
	 a_full, NULL},
	{"aten::arange(Scalar end, *, " FACTORY_OPTS ") -> Tensor", a_arange,
	 (const void *)(uintptr_t)1},
	{"aten::arange.start(Scalar start, Scalar end, *, " FACTORY_OPTS
	 ") -> Tensor",
	 a_arange, (const void *)(uintptr_t)2},
	{"aten::arange.start_step(Scalar start, Scalar end, Scalar step=1, *, " FACTORY_OPTS
	 ") -> Tensor",
	 a_arange, (const void *)(uintptr_t)3},
	{"aten::rand(SymInt[] size, *, " FACTORY_OPTS ") -> Tensor", a_random,
	 (const void *)(uintptr_t)0},
	{"aten::rand.seed(SymInt[] size, *, int seed, " FACTORY_OPTS
	 ") -> Tensor",
	 a_random, (const void *)(uintptr_t)2},
	{"aten::randn(SymInt[] size, *, " FACTORY_OPTS ") -> Tensor", a_random,
	 (const void *)(uintptr_t)1},
	{"aten::randn.seed(SymInt[] size, *, int seed, " FACTORY_OPTS
	 ") -> Tensor",
	 a_random, (const void *)(uintptr_t)3},
};

tw_status aten_register_builtins(struct registry *r)
{
	for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
		tw_status st = reg_add_schema(r, builtins[i].schema,
					      builtins[i].fn,
					      (void *)builtins[i].arg, 0);
		if (st != TW_OK)
			return st;
	}
	return TW_OK;
}
