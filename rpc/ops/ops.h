/* Builtin tensor operator kernels (aten::add, aten::mm, ...): the C layer the schema glue calls. */
#ifndef TW_RPC_OPS_H
#define TW_RPC_OPS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/status.h>
#include <tensorwire/tensor.h>

/*
 * Contract shared by every tw_op_* function (each one below only states what
 * differs):
 *
 * - Semantics are torch's (CPU, default dtype float32): same result dtype,
 *   same shape, same broadcasting, same errors. Where an op is named after
 *   an aten schema, its parameters are that schema's, in order.
 * - Compute kernels take bool, int32, int64, float32 and float64 tensors;
 *   other dtypes fail with TW_ETYPE. Pure view and copy ops (t, transpose,
 *   reshape, view, clone) take every dtype.
 * - Inputs are valid tw_tensors (as tw_tensor_init accepts) and may be
 *   strided, broadcast (stride 0) or empty; they are never modified. A
 *   malformed input (NULL, bad ndim/shape/strides) is TW_EINVAL, and so is
 *   a compute-kernel input whose data address is not a multiple of its
 *   element size (tw_op_clone, which copies bytewise, makes an aligned
 *   copy).
 * - Results go to *out (and *indices for max/min with a dim). Compute ops
 *   return a freshly allocated contiguous tensor (tw_tensor_alloc) that the
 *   caller releases with tw_tensor_release. View ops (t, transpose, view,
 *   and reshape when no copy is needed) return a handle sharing the input's
 *   bytes: it holds its own reference on the input's tw_buf, or, when the
 *   input's buf is NULL (borrowed bytes), borrows them too. *out is written
 *   only on success and must not be one of the inputs.
 * - Errors: a status, and the reason recorded for the calling thread as
 *   every tensorwire failure is (tw_errmsg(st), status.h), worded as torch
 *   words it. The status follows the Python exception torch raises:
 *     RuntimeError                      -> TW_ERUNTIME
 *     "not implemented for 'Bool'" and other dtype refusals -> TW_ETYPE
 *     IndexError (dim out of range, reduction over an empty dim),
 *     ZeroDivisionError                 -> TW_EVALUE
 *   plus TW_EINVAL (bad arguments from C), TW_ENOMEM and TW_EOVERFLOW (a
 *   size that does not fit). Success records nothing, so the hot path
 *   pays for no reason; a fixed reason is recorded by pointer, without
 *   formatting (tw_fail_static).
 * - Integer arithmetic wraps (two's complement) as torch's does; no op
 *   invokes C undefined behaviour on any input bytes. float -> integer
 *   conversions truncate toward zero; NaN and out-of-range values become the
 *   target's minimum (what x86 cvtt* produces, and so what torch gives).
 * - Kernels allocate only before their loops (outputs, dtype-converted
 *   copies of inputs, pack buffers), never inside them.
 */

/* ------------------------------------------------------------------------
 * Scalars: the torch "Scalar" argument (number from Python).
 */

typedef enum tw_scalar_kind {
	TW_SCALAR_BOOL = 0,
	TW_SCALAR_INT = 1,    /* Python int: int64 */
	TW_SCALAR_DOUBLE = 2, /* Python float: double */
} tw_scalar_kind;

typedef struct tw_scalar {
	tw_scalar_kind kind;
	union {
		bool b;
		int64_t i;
		double d;
	};
} tw_scalar;

static inline tw_scalar tw_scalar_bool(bool v)
{
	tw_scalar s = {.kind = TW_SCALAR_BOOL, .b = v};
	return s;
}

static inline tw_scalar tw_scalar_int(int64_t v)
{
	tw_scalar s = {.kind = TW_SCALAR_INT, .i = v};
	return s;
}

static inline tw_scalar tw_scalar_double(double v)
{
	tw_scalar s = {.kind = TW_SCALAR_DOUBLE, .d = v};
	return s;
}

/* The value as a double (bool: 0/1). */
double tw_scalar_to_double(const tw_scalar *s);

/* ------------------------------------------------------------------------
 * Type promotion and broadcasting (promote.c).
 */

/* True for the dtypes the compute kernels take. */
bool tw_ops_dtype_supported(tw_dtype dt);

/* True for float16, bfloat16, float32, float64. */
bool tw_ops_dtype_is_floating(tw_dtype dt);

/* True for bool and the integer dtypes. */
bool tw_ops_dtype_is_integral(tw_dtype dt);

/* torch's ScalarType name for messages: "Bool", "Int", "Long", "Float",
 * "Double", "Byte", "Char", "Short", "Half", "BFloat16". */
const char *tw_ops_torch_dtype_name(tw_dtype dt);

/* torch.promote_types over all ten dtypes (category, then size; uint8 with
 * int8 gives int16, float16 with bfloat16 gives float32). */
tw_dtype tw_ops_promote_types(tw_dtype a, tw_dtype b);

/*
 * torch.result_type, incrementally. Operands are ranked in three tiers:
 * tensors with dims (ndim > 0, even if empty), zero-dim tensors, and
 * Scalars (a double Scalar counts as the default dtype float32, an int one
 * as int64, a bool one as bool). A lower tier changes the result only when
 * it is of a higher category (bool < integer < floating) than the tiers
 * above it: int32 tensor + 5 -> int32, int32 tensor + 2.5 -> float32,
 * float32 tensor + float64 zero-dim tensor -> float32, int32 tensor +
 * float64 zero-dim tensor -> float64.
 */
typedef struct tw_ops_promo {
	int dim, zero, wrapped; /* a tw_dtype, or -1 when no operand yet */
} tw_ops_promo;

void tw_ops_promo_init(tw_ops_promo *p);
void tw_ops_promo_tensor(tw_ops_promo *p, const tw_tensor *t);
void tw_ops_promo_scalar(tw_ops_promo *p, const tw_scalar *s);
/* The result; float32 when no operand was added. */
tw_dtype tw_ops_promo_result(const tw_ops_promo *p);

tw_dtype tw_ops_result_type(const tw_tensor *a, const tw_tensor *b);
tw_dtype tw_ops_result_type_scalar(const tw_tensor *a, const tw_scalar *s);

/*
 * numpy broadcasting of two shapes (aligned at the trailing dim; sizes
 * equal or one of them 1). out has room for TW_TENSOR_MAX_DIMS dims.
 * TW_ERUNTIME "The size of tensor a (3) must match the size of tensor b (4)
 * at non-singleton dimension 1" when they do not broadcast.
 */
tw_status tw_ops_broadcast_shapes(unsigned na, const int64_t *sa, unsigned nb,
				  const int64_t *sb, unsigned *nout,
				  int64_t *out);

/* Wrap a possibly negative dim into [0, ndim) as torch does (a zero-dim
 * tensor accepts -1 and 0). TW_EVALUE "Dimension out of range (expected to
 * be in range of [-2, 1], but got 2)" otherwise. */
tw_status tw_ops_wrap_dim(int64_t dim, unsigned ndim, unsigned *out);

/* ------------------------------------------------------------------------
 * Elementwise ops (elementwise.c). Binary ops broadcast a and b and compute
 * in the promoted dtype. The *_scalar forms take the Scalar overload
 * (aten::add.Scalar etc.); alpha may be NULL for the default 1.
 */

/* aten::add.Tensor / add.Scalar: a + alpha * b. Bool results are logical
 * or. Errors as torch: a bool alpha with a non-bool result ("Boolean alpha
 * only supported for Boolean results."), a floating alpha with an integral
 * result ("For integral input tensors, argument alpha must not be a
 * floating point number."), an alpha that does not fit the result dtype
 * ("value cannot be converted to type int without overflow"). */
tw_status tw_op_add(const tw_tensor *a, const tw_tensor *b,
		    const tw_scalar *alpha, tw_tensor *out);
tw_status tw_op_add_scalar(const tw_tensor *a, const tw_scalar *b,
			   const tw_scalar *alpha, tw_tensor *out);

/* aten::sub.Tensor / sub.Scalar: a - alpha * b. Any bool operand is a
 * TW_ERUNTIME ("Subtraction, the `-` operator, with a bool tensor is not
 * supported. ..."), as in torch. */
tw_status tw_op_sub(const tw_tensor *a, const tw_tensor *b,
		    const tw_scalar *alpha, tw_tensor *out);
tw_status tw_op_sub_scalar(const tw_tensor *a, const tw_scalar *b,
			   const tw_scalar *alpha, tw_tensor *out);

/* aten::rsub.Tensor / rsub.Scalar: b - alpha * a. */
tw_status tw_op_rsub(const tw_tensor *a, const tw_tensor *b,
		     const tw_scalar *alpha, tw_tensor *out);
tw_status tw_op_rsub_scalar(const tw_tensor *a, const tw_scalar *b,
			    const tw_scalar *alpha, tw_tensor *out);

/* aten::mul.Tensor / mul.Scalar. Bool results are logical and. */
tw_status tw_op_mul(const tw_tensor *a, const tw_tensor *b, tw_tensor *out);
tw_status tw_op_mul_scalar(const tw_tensor *a, const tw_scalar *b,
			   tw_tensor *out);

/*
 * aten::div.Tensor / div.Scalar (TW_ROUND_NONE) and div.Tensor_mode /
 * div.Scalar_mode. True division computes in the promoted dtype, or in
 * float32 when that is bool or integer (int / int -> float32); division by
 * zero gives inf or nan. "trunc" and "floor" keep the promoted dtype; on an
 * integer dtype a zero divisor is TW_EVALUE "ZeroDivisionError" (torch's
 * message), on bool TW_ETYPE. floor on floats is Python's //.
 */
typedef enum tw_rounding {
	TW_ROUND_NONE = 0,
	TW_ROUND_TRUNC = 1,
	TW_ROUND_FLOOR = 2,
} tw_rounding;

/* The schema's "str? rounding_mode": NULL means none. TW_EVALUE "div
 * expected rounding_mode to be one of None, 'trunc', or 'floor' but found
 * 'x'" otherwise. */
tw_status tw_ops_rounding_from_name(const char *name, tw_rounding *out);

tw_status tw_op_div(const tw_tensor *a, const tw_tensor *b, tw_rounding mode,
		    tw_tensor *out);
tw_status tw_op_div_scalar(const tw_tensor *a, const tw_scalar *b,
			   tw_rounding mode, tw_tensor *out);

/*
 * aten::pow.Tensor_Tensor, pow.Tensor_Scalar, pow.Scalar (scalar base,
 * tensor exponent). Integer results use exact integer powers (wrapping);
 * a negative integer exponent element gives 0, 1 or -1 as torch's powi
 * does, but a negative integer Scalar exponent on an integral tensor is
 * TW_ERUNTIME "Integers to negative integer powers are not allowed.".
 * A bool result is TW_ETYPE ("pow" not implemented for 'Bool').
 */
tw_status tw_op_pow(const tw_tensor *a, const tw_tensor *b, tw_tensor *out);
tw_status tw_op_pow_scalar(const tw_tensor *a, const tw_scalar *exponent,
			   tw_tensor *out);
tw_status tw_op_pow_scalar_base(const tw_scalar *base, const tw_tensor *b,
				tw_tensor *out);

/* aten::maximum / aten::minimum (also max.other / min.other): elementwise,
 * NaN propagates. */
tw_status tw_op_maximum(const tw_tensor *a, const tw_tensor *b, tw_tensor *out);
tw_status tw_op_minimum(const tw_tensor *a, const tw_tensor *b, tw_tensor *out);

/*
 * Unary ops. neg, abs and relu keep the dtype (integers wrap: abs and neg
 * of INT_MIN are INT_MIN) and refuse bool as torch does. sigmoid, tanh,
 * exp, log and sqrt compute in float32 for bool and integer inputs (torch
 * promotes them to the default float dtype) and keep float64.
 */
tw_status tw_op_neg(const tw_tensor *a, tw_tensor *out);
tw_status tw_op_abs(const tw_tensor *a, tw_tensor *out);
tw_status tw_op_relu(const tw_tensor *a, tw_tensor *out);
tw_status tw_op_sigmoid(const tw_tensor *a, tw_tensor *out);
tw_status tw_op_tanh(const tw_tensor *a, tw_tensor *out);
tw_status tw_op_exp(const tw_tensor *a, tw_tensor *out);
tw_status tw_op_log(const tw_tensor *a, tw_tensor *out);
tw_status tw_op_sqrt(const tw_tensor *a, tw_tensor *out);

/* aten::to.dtype (always a copy): a contiguous copy of a converted to dt.
 * To bool: x != 0. Between the supported dtypes only. */
tw_status tw_op_cast(const tw_tensor *a, tw_dtype dt, tw_tensor *out);

/* ------------------------------------------------------------------------
 * Reductions (reduce.c). dims/ndims is the schema's "int[1]? dim": NULL
 * or ndims 0 reduces every dim. Dims are wrapped; a repeated dim is
 * TW_ERUNTIME "dim 0 appears multiple times in the list of dims".
 * keepdim keeps reduced dims as size 1.
 */

/* aten::sum / sum.dim_IntList. Result dtype: *dtype when not NULL, else
 * int64 for bool and integer inputs, else the input's. Floats accumulate
 * in double, integers in wrapping int64. The sum over no elements is 0. */
tw_status tw_op_sum(const tw_tensor *a, const int64_t *dims, unsigned ndims,
		    bool keepdim, const tw_dtype *dtype, tw_tensor *out);

/* aten::mean / mean.dim. The result dtype (*dtype, else the input's) must
 * be floating: TW_ERUNTIME "mean(): could not infer output dtype. Input
 * dtype must be either a floating point or complex dtype. Got: Long"
 * otherwise. The mean over no elements is nan. */
tw_status tw_op_mean(const tw_tensor *a, const int64_t *dims, unsigned ndims,
		     bool keepdim, const tw_dtype *dtype, tw_tensor *out);

/* aten::max / aten::min (no dim): a zero-dim tensor of a's dtype; NaN
 * wins. An empty input is TW_ERUNTIME "max(): Expected reduction dim to be
 * specified for input.numel() == 0. Specify the reduction dim with the
 * 'dim' argument." */
tw_status tw_op_max(const tw_tensor *a, tw_tensor *out);
tw_status tw_op_min(const tw_tensor *a, tw_tensor *out);

/* aten::max.dim / min.dim: (values of a's dtype, int64 indices of the
 * first maximum or first NaN along dim). A dim of size 0 is TW_EVALUE
 * "max(): Expected reduction dim 0 to have non-zero size.". */
tw_status tw_op_max_dim(const tw_tensor *a, int64_t dim, bool keepdim,
			tw_tensor *values, tw_tensor *indices);
tw_status tw_op_min_dim(const tw_tensor *a, int64_t dim, bool keepdim,
			tw_tensor *values, tw_tensor *indices);

/* aten::argmax / argmin: int64 index of the first extreme (first NaN).
 * dim NULL: index into the flattened tensor, zero-dim result (keepdim: all
 * dims of size 1). Bool input is TW_ETYPE ("argmax_cpu" not implemented
 * for 'Bool'). */
tw_status tw_op_argmax(const tw_tensor *a, const int64_t *dim, bool keepdim,
		       tw_tensor *out);
tw_status tw_op_argmin(const tw_tensor *a, const int64_t *dim, bool keepdim,
		       tw_tensor *out);

/* ------------------------------------------------------------------------
 * Matrix products (linalg.c): float32, float64, int32, int64; both operands
 * of one dtype (no promotion, as torch). Cache-blocked, packed kernel.
 */

/* aten::mm: (n x k) @ (k x m). TW_ERUNTIME "self must be a matrix",
 * "mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)", "expected
 * mat1 and mat2 to have the same dtype, but got: float != double". */
tw_status tw_op_mm(const tw_tensor *a, const tw_tensor *b, tw_tensor *out);

/*
 * aten::matmul: 1-D @ 1-D is a dot product (zero-dim result); 2-D @ 2-D is
 * mm; 1-D @ 2-D and 2-D @ 1-D prepend / append a dim of 1 and drop it
 * after; N-D (N > 2 on either side) is a batched product whose batch dims
 * (all but the last two) broadcast, a 1-D operand again gaining and losing
 * a dim. Zero-dim operands are TW_ERUNTIME.
 */
tw_status tw_op_matmul(const tw_tensor *a, const tw_tensor *b, tw_tensor *out);

/* ------------------------------------------------------------------------
 * Shape ops (shape.c).
 */

/* aten::t: a view, transposed for 2-D, unchanged for 0-D and 1-D; more
 * dims is TW_ERUNTIME "t() expects a tensor with <= 2 dimensions, but self
 * is 3D". */
tw_status tw_op_t(const tw_tensor *a, tw_tensor *out);

/* aten::transpose.int: a view with dims dim0 and dim1 swapped. */
tw_status tw_op_transpose(const tw_tensor *a, int64_t dim0, int64_t dim1,
			  tw_tensor *out);

/*
 * aten::view: a view with a new shape (one entry may be -1, inferred).
 * Needs strides that allow it (torch's computeStride): TW_ERUNTIME "view
 * size is not compatible with input tensor's size and stride (at least one
 * dimension spans across two contiguous subspaces). Use .reshape(...)
 * instead." Bad shapes: "shape '[2, 5]' is invalid for input of size 6",
 * "only one dimension can be inferred", "invalid shape dimension -2".
 */
tw_status tw_op_view(const tw_tensor *a, const int64_t *shape, unsigned ndim,
		     tw_tensor *out);

/* aten::reshape: a view when view would succeed, else a contiguous copy. */
tw_status tw_op_reshape(const tw_tensor *a, const int64_t *shape, unsigned ndim,
			tw_tensor *out);

/* aten::cat: concatenation along dim of n tensors, promoted to their
 * result type. As torch, 1-D tensors of size 0 are skipped. */
tw_status tw_op_cat(const tw_tensor *ts, size_t n, int64_t dim, tw_tensor *out);

/* aten::stack: n tensors of one shape stacked along a new dim. */
tw_status tw_op_stack(const tw_tensor *ts, size_t n, int64_t dim,
		      tw_tensor *out);

/* aten::clone: a contiguous copy (any dtype). */
tw_status tw_op_clone(const tw_tensor *a, tw_tensor *out);

/* ------------------------------------------------------------------------
 * Factories (factory.c). dtype NULL means torch's default for the op.
 * A negative size is TW_ERUNTIME "Trying to create tensor with negative
 * dimension -1: [-1, 2]".
 */

/* aten::zeros / aten::ones: default float32. */
tw_status tw_op_zeros(unsigned ndim, const int64_t *shape,
		      const tw_dtype *dtype, tw_tensor *out);
tw_status tw_op_ones(unsigned ndim, const int64_t *shape, const tw_dtype *dtype,
		     tw_tensor *out);

/* aten::full: the default dtype follows the fill value (bool -> bool, int
 * -> int64, double -> float32). A fill that overflows the dtype is
 * TW_ERUNTIME "value cannot be converted to type int without overflow". */
tw_status tw_op_full(unsigned ndim, const int64_t *shape, const tw_scalar *fill,
		     const tw_dtype *dtype, tw_tensor *out);

/*
 * aten::arange.start_step: [start, end) by step. Default dtype int64 when
 * all three are int (or bool), else float32. Length: for an int64 result
 * ceil((end - start) / step) in integer arithmetic, otherwise
 * ceil((double)(end - start) / step), as torch. Element i is start + i *
 * step computed in int64 (integer results) or double. TW_ERUNTIME "step
 * must be nonzero", "upper bound and larger bound inconsistent with step
 * sign", "unsupported range: 0 -> inf". For aten::arange(end) pass start 0
 * and step 1.
 */
tw_status tw_op_arange(const tw_scalar *start, const tw_scalar *end,
		       const tw_scalar *step, const tw_dtype *dtype,
		       tw_tensor *out);

/*
 * aten::rand / aten::randn with an explicit seed (torch's generator is
 * not reproduced; ours is documented instead). Element i of the row-major
 * result is a function of (seed, i) only, so a given seed and numel always
 * give the same values whatever the shape, machine or build.
 * The generator is SplitMix64 used as a counter-based generator (Steele,
 * Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA
 * 2014): x_i = mix64(seed + (i + 1) * 0x9e3779b97f4a7c15), see
 * tw_ops_random_u64. rand: float64 (x_i >> 11) * 2^-53, float32
 * (x_i >> 40) * 2^-24, in [0, 1). randn: Box-Muller on pairs (2j, 2j+1):
 * u1 = ((x_2j >> 11) + 1) * 2^-53 in (0, 1], u2 = (x_2j+1 >> 11) * 2^-53,
 * r = sqrt(-2 ln u1), element 2j = r cos(2 pi u2), element 2j+1 =
 * r sin(2 pi u2), computed in double and rounded to the dtype. Default
 * dtype float32; integer dtypes are TW_ETYPE as in torch.
 */
tw_status tw_op_rand(unsigned ndim, const int64_t *shape, uint64_t seed,
		     const tw_dtype *dtype, tw_tensor *out);
tw_status tw_op_randn(unsigned ndim, const int64_t *shape, uint64_t seed,
		      const tw_dtype *dtype, tw_tensor *out);

/* The generator behind rand/randn: 64 random bits for counter i. */
uint64_t tw_ops_random_u64(uint64_t seed, uint64_t i);

/* ------------------------------------------------------------------------
 * Bounds (promote.c): what the calling thread's kernels may create and do.
 *
 * A serving agent sets them around each handler (rpc/serve.c); with none
 * set (NULL, as in tools and tests that call kernels directly) nothing is
 * bounded. Every tensor a kernel allocates (results, dtype-converted or
 * contiguous copies of inputs) is checked before its allocation:
 * max_elems elements and max_bytes bytes, then its element count as work;
 * kernels whose work is not their output's (reductions: the input's
 * logical element count, a stride-0 input counting every element it
 * stands for; matrix products: m * k * n multiply-adds per batch) check
 * that first. Work over max_work is refused; work over offload_work asks
 * the caller to run the kernel elsewhere (the agent's executor): the
 * kernel fails with TW_EBUSY before allocating anything, and
 * tw_ops_offload_take() returns true once. A refusal is TW_ERUNTIME with
 * a message naming the limit and its option (opt_prefix + name, e.g.
 * "tw_agent_opts.max_tensor_elems") and increments *refused. 0 = no
 * bound for each field.
 */
typedef struct tw_ops_limits {
	uint64_t max_elems;
	uint64_t max_bytes;
	uint64_t max_work;
	uint64_t offload_work;
	_Atomic uint64_t *refused; /* NULL = not counted */
} tw_ops_limits;

/* The calling thread's bounds (NULL = none); l must outlive its use. */
void tw_ops_limits_set(const tw_ops_limits *l);
const tw_ops_limits *tw_ops_limits_get(void);

/* Whether a kernel asked to run elsewhere since the last call (and
 * forget it). */
bool tw_ops_offload_take(void);

/* Check work (logical elements touched) against the thread's bounds. */
tw_status tw_ops_limit_work(const char *op, uint64_t work);

/* Check a new tensor of (dt, ndim, shape) against the thread's bounds:
 * element count, bytes, and its element count as work. */
tw_status tw_ops_limit_new(const char *op, tw_dtype dt, unsigned ndim,
			   const int64_t *shape);

/* tw_ops_limit_new, then tw_tensor_alloc (zero: tw_tensor_zeros). An
 * allocation failure is recorded as "cannot allocate the result". */
tw_status tw_ops_alloc(const char *op, tw_tensor *out, tw_dtype dt,
		       unsigned ndim, const int64_t *shape, bool zero);

/* ------------------------------------------------------------------------
 * Helpers the ops files share (not for the glue).
 */

/* Validate t (layout, as tensor.c does) and, when need_supported, that its
 * dtype is one the compute kernels take (TW_ETYPE naming op otherwise).
 * numel may be NULL. */
tw_status tw_ops_check(const char *op, const tw_tensor *t, bool need_supported,
		       int64_t *numel);

/* Format a shape as torch prints it: "[2, 3]". */
void tw_ops_format_shape(char *buf, size_t len, unsigned ndim,
			 const int64_t *shape);

/* Convert the first element of src (dtype sdt) to dtype ddt at dst. Both
 * supported dtypes; bool sources are read as byte != 0. */
void tw_ops_convert_one(void *dst, tw_dtype ddt, const void *src, tw_dtype sdt);

/* Checked Scalar conversion (c10's checked_convert): TW_ERUNTIME "value
 * cannot be converted to type int without overflow" when s does not fit
 * dt. Writes one element of dt at dst. */
tw_status tw_ops_scalar_to(const tw_scalar *s, tw_dtype dt, void *dst);

/* Unchecked Scalar conversion, as a wrapped-number tensor is cast. */
void tw_ops_scalar_store(const tw_scalar *s, tw_dtype dt, void *dst);

/* Copy (and convert) src into dst, a view of the same shape whose bytes
 * the caller owns. Supported dtypes only (same dtypes: any). */
void tw_ops_copy_into(const tw_tensor *dst, const tw_tensor *src);

/*
 * N-d loop over up to TW_OPS_MAX_OPERANDS operands sharing one iteration
 * shape. Each operand has byte strides per dim (0 for a broadcast dim).
 * init drops size-1 dims and merges dims that are contiguous for every
 * operand, so a run of contiguous operands becomes one row. run calls
 * fn(ptrs, inner byte strides, n, ctx) once per innermost row.
 */
#define TW_OPS_MAX_OPERANDS 3

typedef void (*tw_ops_row_fn)(char *const *ptrs, const int64_t *strides,
			      int64_t n, void *ctx);

typedef struct tw_ops_iter {
	unsigned ndim; /* >= 1 after init */
	unsigned nops;
	int64_t numel;
	int64_t shape[TW_TENSOR_MAX_DIMS];
	int64_t stride[TW_OPS_MAX_OPERANDS][TW_TENSOR_MAX_DIMS];
} tw_ops_iter;

void tw_ops_iter_init(tw_ops_iter *it, unsigned ndim, const int64_t *shape,
		      unsigned nops,
		      const int64_t (*strides)[TW_TENSOR_MAX_DIMS]);
void tw_ops_iter_run(const tw_ops_iter *it, char *const *base, tw_ops_row_fn fn,
		     void *ctx);

/* Byte strides of t broadcast to (ndim, shape), aligned at the trailing
 * dim: 0 for dims t lacks or has as size 1. */
void tw_ops_bcast_strides(const tw_tensor *t, unsigned ndim,
			  const int64_t *shape, int64_t *bstrides);

/* Fixed-length inner loops: gcc -O2 (the "very cheap" vectorizer cost
 * model) vectorizes a loop only when no scalar epilogue is needed, so the
 * kernels run blocks of TW_OPS_VBLOCK and finish with a scalar tail. */
#define TW_OPS_VBLOCK 16
#define TW_OPS_VLOOP(n, k, BODY)                                               \
	do {                                                                   \
		int64_t vb_ = 0;                                               \
		for (; vb_ + TW_OPS_VBLOCK <= (n); vb_ += TW_OPS_VBLOCK)       \
			for (int vj_ = 0; vj_ < TW_OPS_VBLOCK; vj_++) {        \
				const int64_t k = vb_ + vj_;                   \
				BODY                                           \
			}                                                      \
		for (int64_t k = vb_; k < (n); k++)                            \
			BODY                                                   \
	} while (0)

/* Run a kernel in an AVX2 clone where the CPU has it (gcc on x86-64). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&         \
	!defined(TW_OPS_NO_CLONES)
#define TW_OPS_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TW_OPS_CLONES
#endif

#endif
