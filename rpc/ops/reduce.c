/* Reductions: sum and mean over any set of dims, max/min/argmax/argmin over all or one dim. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/err.h"
#include "rpc/ops/ops.h"

/* ---- sum / mean ------------------------------------------------------- */

/*
 * The input is walked in its own row-major order against an accumulator
 * array shaped like the result with stride 0 over the reduced dims. After
 * the N-d loop merges dims, a row is either a reduction (accumulator
 * stride 0: a multi-lane sum) or elementwise accumulation into a row of
 * the result (acc[k] += x[k]); both vectorize. Floats accumulate in double,
 * integers in wrapping 64-bit.
 */
#define SUM_LANES 8

#define SUM_ROW(NAME, T, A, CONV)                                                 \
	static inline void NAME##_acc(A *restrict ao, const T *restrict ai,       \
				      int64_t n)                                  \
	{                                                                         \
		TW_OPS_VLOOP(n, k, { ao[k] += CONV(ai[k]); });                    \
	}                                                                         \
	static void NAME(char *const *p, const int64_t *s, int64_t n,             \
			 void *ctx)                                               \
	{                                                                         \
		(void)ctx;                                                        \
		A *acc = (A *)(void *)p[0];                                       \
		const T *in = (const T *)(const void *)p[1];                      \
		const int64_t es = (int64_t)sizeof(T);                            \
		if (s[0] == 0) {                                                  \
			A total = 0;                                              \
			if (s[1] == es) {                                         \
				A l[SUM_LANES] = {0};                             \
				int64_t k = 0;                                    \
				for (; k + SUM_LANES <= n; k += SUM_LANES)        \
					for (int j = 0; j < SUM_LANES; j++)       \
						l[j] += CONV(in[k + j]);          \
				for (; k < n; k++)                                \
					total += CONV(in[k]);                     \
				total += ((l[0] + l[1]) + (l[2] + l[3])) +        \
					 ((l[4] + l[5]) + (l[6] + l[7]));         \
			} else {                                                  \
				for (int64_t k = 0; k < n; k++)                   \
					total += CONV(*(                          \
						const T *)(const void             \
								   *)(p[1] +      \
								      k * s[1])); \
			}                                                         \
			*acc += total;                                            \
		} else if (s[0] == (int64_t)sizeof(A) && s[1] == es) {            \
			NAME##_acc(acc, in, n);                                   \
		} else {                                                          \
			for (int64_t k = 0; k < n; k++)                           \
				*(A *)(void *)(p[0] + k * s[0]) += CONV(          \
					*(const T *)(const void *)(p[1] +         \
								   k * s[1]));    \
		}                                                                 \
	}

static inline int64_t f2i64(double x)
{
	if (x >= -9223372036854775808.0 && x < 9223372036854775808.0)
		return (int64_t)x;
	return INT64_MIN;
}

#define CONV_BOOL(x) ((x) != 0)
#define CONV_D(x) ((double)(x))
#define CONV_U(x) ((uint64_t)(int64_t)(x))
#define CONV_FU(x) ((uint64_t)f2i64((double)(x)))

SUM_ROW(sumd_b, uint8_t, double, CONV_BOOL)
SUM_ROW(sumd_i32, int32_t, double, CONV_D)
SUM_ROW(sumd_i64, int64_t, double, CONV_D)
SUM_ROW(sumd_f32, float, double, CONV_D)
SUM_ROW(sumd_f64, double, double, CONV_D)
SUM_ROW(sumu_b, uint8_t, uint64_t, CONV_BOOL)
SUM_ROW(sumu_i32, int32_t, uint64_t, CONV_U)
SUM_ROW(sumu_i64, int64_t, uint64_t, CONV_U)
SUM_ROW(sumu_f32, float, uint64_t, CONV_FU)
SUM_ROW(sumu_f64, double, uint64_t, CONV_FU)

static tw_ops_row_fn sum_row(tw_dtype in, bool float_acc)
{
	switch (in) {
	case TW_BOOL:
		return float_acc ? sumd_b : sumu_b;
	case TW_INT32:
		return float_acc ? sumd_i32 : sumu_i32;
	case TW_INT64:
		return float_acc ? sumd_i64 : sumu_i64;
	case TW_FLOAT32:
		return float_acc ? sumd_f32 : sumu_f32;
	default:
		return float_acc ? sumd_f64 : sumu_f64;
	}
}

/* Mark the reduced dims; dims NULL or empty means all. */
static tw_status reduce_mask(const char *name, const tw_tensor *a,
			     const int64_t *dims, unsigned ndims,
			     bool mask[TW_TENSOR_MAX_DIMS])
{
	memset(mask, 0, TW_TENSOR_MAX_DIMS * sizeof(bool));
	if (dims == NULL || ndims == 0) {
		for (unsigned d = 0; d < a->ndim; d++)
			mask[d] = true;
		return TW_OK;
	}
	bool seen[TW_TENSOR_MAX_DIMS] = {false};
	for (unsigned i = 0; i < ndims; i++) {
		unsigned d;
		tw_status st = tw_ops_wrap_dim(dims[i], a->ndim, &d);
		if (st != TW_OK)
			return st;
		if (seen[d])
			return tw_fail(
				TW_ERUNTIME,
				"dim %u appears multiple times in the list of dims",
				d);
		seen[d] = true;
		if (d < a->ndim)
			mask[d] = true;
	}
	(void)name;
	return TW_OK;
}

/* The result shape of a reduction. */
static unsigned reduced_shape(const tw_tensor *a, const bool *mask,
			      bool keepdim, int64_t *shape)
{
	unsigned n = 0;
	for (unsigned d = 0; d < a->ndim; d++) {
		if (!mask[d])
			shape[n++] = a->shape[d];
		else if (keepdim)
			shape[n++] = 1;
	}
	return n;
}

static tw_status sum_mean(const char *name, bool mean, const tw_tensor *a,
			  const int64_t *dims, unsigned ndims, bool keepdim,
			  const tw_dtype *dtype, tw_tensor *out)
{
	int64_t numel;
	tw_status st = tw_ops_check(name, a, true, &numel);
	if (st == TW_OK) /* the input's logical elements: stride 0 counts */
		st = tw_ops_limit_work(name, (uint64_t)numel);
	if (st != TW_OK)
		return st;
	if (out == NULL || (ndims > 0 && dims == NULL))
		return tw_fail(TW_EINVAL, "%s(): bad arguments", name);
	tw_dtype in = (tw_dtype)a->dtype;
	tw_dtype odt;
	if (dtype != NULL) {
		if (!tw_ops_dtype_supported(*dtype))
			return tw_fail(TW_ETYPE,
				       "\"%s\" not implemented for '%s'", name,
				       tw_ops_torch_dtype_name(*dtype));
		odt = *dtype;
	} else if (mean) {
		odt = in;
	} else {
		odt = tw_ops_dtype_is_integral(in) ? TW_INT64 : in;
	}
	if (mean && !tw_ops_dtype_is_floating(odt))
		return tw_fail(
			TW_ERUNTIME,
			"mean(): could not infer output dtype. %s dtype must be either a floating point or complex dtype. Got: %s",
			dtype != NULL ? "Optional" : "Input",
			tw_ops_torch_dtype_name(odt));

	bool mask[TW_TENSOR_MAX_DIMS];
	st = reduce_mask(name, a, dims, ndims, mask);
	if (st != TW_OK)
		return st;
	int64_t oshape[TW_TENSOR_MAX_DIMS];
	unsigned ond = reduced_shape(a, mask, keepdim, oshape);
	tw_tensor o;
	st = tw_ops_alloc(name, &o, odt, ond, oshape, false);
	if (st != TW_OK)
		return st;
	int64_t onumel;
	tw_tensor_numel(&o, &onumel);

	/* Accumulator: the result's elements in 8-byte slots, laid out as
	 * the input with every reduced dim of size 1. */
	bool float_acc = tw_ops_dtype_is_floating(odt);
	void *acc = calloc(onumel > 0 ? (size_t)onumel : 1, 8);
	if (acc == NULL) {
		tw_tensor_release(&o);
		return tw_fail_static(TW_ENOMEM,
				      "cannot allocate the accumulator");
	}
	int64_t count = 1; /* elements per result element */
	int64_t strides[2][TW_TENSOR_MAX_DIMS];
	int64_t step = 8;
	for (unsigned d = a->ndim; d-- > 0;) {
		if (mask[d]) {
			strides[0][d] = 0;
			count *= a->shape[d];
		} else {
			strides[0][d] = a->shape[d] == 1 ? 0 : step;
			step *= a->shape[d];
		}
	}
	tw_ops_bcast_strides(a, a->ndim, a->shape, strides[1]);
	tw_ops_iter it;
	tw_ops_iter_init(&it, a->ndim, a->shape, 2,
			 (const int64_t(*)[TW_TENSOR_MAX_DIMS])strides);
	char *base[2] = {acc, a->data};
	tw_ops_iter_run(&it, base, sum_row(in, float_acc), NULL);

	/* Finish: divide for the mean, convert to the result dtype. */
	char *dst = o.data;
	size_t osz = tw_dtype_size(odt);
	for (int64_t i = 0; i < onumel; i++) {
		if (float_acc) {
			double v = ((double *)acc)[i];
			if (mean)
				v /= (double)count; /* 0 / 0 is nan, as torch */
			tw_ops_convert_one(dst + (size_t)i * osz, odt, &v,
					   TW_FLOAT64);
		} else {
			int64_t v = (int64_t)((uint64_t *)acc)[i];
			tw_ops_convert_one(dst + (size_t)i * osz, odt, &v,
					   TW_INT64);
		}
	}
	free(acc);
	*out = o;
	return TW_OK;
}

tw_status tw_op_sum(const tw_tensor *a, const int64_t *dims, unsigned ndims,
		    bool keepdim, const tw_dtype *dtype, tw_tensor *out)
{
	return sum_mean("sum", false, a, dims, ndims, keepdim, dtype, out);
}

tw_status tw_op_mean(const tw_tensor *a, const int64_t *dims, unsigned ndims,
		     bool keepdim, const tw_dtype *dtype, tw_tensor *out)
{
	return sum_mean("mean", true, a, dims, ndims, keepdim, dtype, out);
}

/* ---- max / min / argmax / argmin ------------------------------------- */

/*
 * On a contiguous input viewed as (outer, R, inner), reducing R: the
 * running best of each of the inner columns is updated row by row, a
 * compare-and-select loop over inner that vectorizes; inner == 1 is a
 * plain scan. BETTER(x, best) is strict, so the first extreme wins, and a
 * NaN beats every number (and no later NaN beats it).
 */
#define FMAX_BETTER(x, b) ((x) > (b) || ((x) != (x) && (b) == (b)))
#define FMIN_BETTER(x, b) ((x) < (b) || ((x) != (x) && (b) == (b)))
#define IMAX_BETTER(x, b) ((x) > (b))
#define IMIN_BETTER(x, b) ((x) < (b))
#define LOAD_PLAIN(x) (x)
#define LOAD_BOOL(x) ((uint8_t)((x) != 0))

#define EXT_KERNEL(NAME, T, BETTER, LOAD)                                      \
	static inline void NAME##_cols(T *restrict v, int64_t *restrict ix,    \
				       const T *restrict row, int64_t r,       \
				       int64_t inner)                          \
	{                                                                      \
		TW_OPS_VLOOP(inner, i, {                                       \
			T x = LOAD(row[i]);                                    \
			bool b = BETTER(x, v[i]);                              \
			v[i] = b ? x : v[i];                                   \
			ix[i] = b ? r : ix[i];                                 \
		});                                                            \
	}                                                                      \
	static void NAME(const void *in_, int64_t outer, int64_t R,            \
			 int64_t inner, void *vals_, int64_t *idx)             \
	{                                                                      \
		const T *in = in_;                                             \
		T *vals = vals_;                                               \
		for (int64_t o = 0; o < outer; o++) {                          \
			const T *blk = in + o * R * inner;                     \
			T *v = vals + o * inner;                               \
			int64_t *ix = idx + o * inner;                         \
			if (inner == 1) {                                      \
				T best = LOAD(blk[0]);                         \
				int64_t bi = 0;                                \
				for (int64_t r = 1; r < R; r++) {              \
					T x = LOAD(blk[r]);                    \
					if (BETTER(x, best)) {                 \
						best = x;                      \
						bi = r;                        \
					}                                      \
				}                                              \
				v[0] = best;                                   \
				ix[0] = bi;                                    \
				continue;                                      \
			}                                                      \
			for (int64_t i = 0; i < inner; i++) {                  \
				v[i] = LOAD(blk[i]);                           \
				ix[i] = 0;                                     \
			}                                                      \
			for (int64_t r = 1; r < R; r++)                        \
				NAME##_cols(v, ix, blk + r * inner, r, inner); \
		}                                                              \
	}

EXT_KERNEL(max_b, uint8_t, IMAX_BETTER, LOAD_BOOL)
EXT_KERNEL(max_i32, int32_t, IMAX_BETTER, LOAD_PLAIN)
EXT_KERNEL(max_i64, int64_t, IMAX_BETTER, LOAD_PLAIN)
EXT_KERNEL(max_f32, float, FMAX_BETTER, LOAD_PLAIN)
EXT_KERNEL(max_f64, double, FMAX_BETTER, LOAD_PLAIN)
EXT_KERNEL(min_b, uint8_t, IMIN_BETTER, LOAD_BOOL)
EXT_KERNEL(min_i32, int32_t, IMIN_BETTER, LOAD_PLAIN)
EXT_KERNEL(min_i64, int64_t, IMIN_BETTER, LOAD_PLAIN)
EXT_KERNEL(min_f32, float, FMIN_BETTER, LOAD_PLAIN)
EXT_KERNEL(min_f64, double, FMIN_BETTER, LOAD_PLAIN)

typedef void (*ext_fn)(const void *, int64_t, int64_t, int64_t, void *,
		       int64_t *);

static ext_fn ext_kernel(tw_dtype dt, bool is_max)
{
	switch (dt) {
	case TW_BOOL:
		return is_max ? max_b : min_b;
	case TW_INT32:
		return is_max ? max_i32 : min_i32;
	case TW_INT64:
		return is_max ? max_i64 : min_i64;
	case TW_FLOAT32:
		return is_max ? max_f32 : min_f32;
	default:
		return is_max ? max_f64 : min_f64;
	}
}

/* a itself when contiguous (borrowed), else a contiguous copy in *tmp. */
static tw_status contiguous_of(const char *name, const tw_tensor *a,
			       tw_tensor *tmp, const tw_tensor **c)
{
	memset(tmp, 0, sizeof(*tmp));
	if (tw_tensor_is_contiguous(a)) {
		*c = a;
		return TW_OK;
	}
	tw_status st = tw_ops_limit_new(name, (tw_dtype)a->dtype, a->ndim,
					a->shape);
	if (st != TW_OK)
		return st;
	st = tw_tensor_contiguous(tmp, a);
	if (st != TW_OK)
		return tw_fail_static(st, "cannot copy the input");
	*c = tmp;
	return TW_OK;
}

/*
 * The common core: reduce a over dim (all dims flattened when dim is NULL)
 * into values (when want_values) and indices (when want_indices).
 */
struct ext_req {
	const char *name;
	bool is_max;
	bool want_values, want_indices;
	bool is_arg; /* argmax/argmin: bool refused, their own messages */
};

static tw_status extreme(const struct ext_req *rq, const tw_tensor *a,
			 const int64_t *dim, bool keepdim, tw_tensor *values,
			 tw_tensor *indices)
{
	int64_t numel;
	tw_status st = tw_ops_check(rq->name, a, true, &numel);
	if (st == TW_OK)
		st = tw_ops_limit_work(rq->name, (uint64_t)numel);
	if (st != TW_OK)
		return st;
	if ((rq->want_values && values == NULL) ||
	    (rq->want_indices && indices == NULL) ||
	    (values != NULL && values == indices))
		return tw_fail(TW_EINVAL, "%s(): bad out", rq->name);
	if (rq->is_arg && a->dtype == TW_BOOL)
		return tw_fail(TW_ETYPE,
			       "\"%s_cpu\" not implemented for 'Bool'",
			       rq->name);

	int64_t outer = 1, R = numel, inner = 1;
	int64_t oshape[TW_TENSOR_MAX_DIMS];
	unsigned ond = 0;
	if (dim == NULL) {
		if (numel == 0) {
			if (rq->is_arg)
				return tw_fail(
					TW_ERUNTIME,
					"%s(): Expected reduction dim to be specified for input.numel() == 0.",
					rq->name);
			return tw_fail(
				TW_ERUNTIME,
				"%s(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim with the 'dim' argument.",
				rq->name);
		}
		if (keepdim) {
			ond = a->ndim;
			for (unsigned d = 0; d < ond; d++)
				oshape[d] = 1;
		}
	} else {
		unsigned d;
		st = tw_ops_wrap_dim(*dim, a->ndim, &d);
		if (st != TW_OK)
			return st;
		if (a->ndim > 0) {
			R = a->shape[d];
			if (R == 0)
				return tw_fail(
					TW_EVALUE,
					"%s(): Expected reduction dim %u to have non-zero size.",
					rq->name, d);
			for (unsigned k = 0; k < d; k++)
				outer *= a->shape[k];
			for (unsigned k = d + 1; k < a->ndim; k++)
				inner *= a->shape[k];
			bool mask[TW_TENSOR_MAX_DIMS] = {false};
			mask[d] = true;
			ond = reduced_shape(a, mask, keepdim, oshape);
		} else {
			R = 1;
		}
	}

	tw_tensor v, ix, tmp;
	memset(&v, 0, sizeof(v));
	memset(&ix, 0, sizeof(ix));
	st = tw_ops_alloc(rq->name, &v, (tw_dtype)a->dtype, ond, oshape, false);
	if (st == TW_OK)
		st = tw_ops_alloc(rq->name, &ix, TW_INT64, ond, oshape, false);
	const tw_tensor *c = NULL;
	if (st == TW_OK)
		st = contiguous_of(rq->name, a, &tmp, &c);
	if (st != TW_OK) {
		tw_tensor_release(&v);
		tw_tensor_release(&ix);
		return st;
	}
	if (outer * inner > 0)
		ext_kernel((tw_dtype)a->dtype, rq->is_max)(
			c->data, outer, R, inner, v.data, ix.data);
	tw_tensor_release(&tmp);
	if (rq->want_values)
		*values = v;
	else
		tw_tensor_release(&v);
	if (rq->want_indices)
		*indices = ix;
	else
		tw_tensor_release(&ix);
	return TW_OK;
}

tw_status tw_op_max(const tw_tensor *a, tw_tensor *out)
{
	struct ext_req rq = {"max", true, true, false, false};
	return extreme(&rq, a, NULL, false, out, NULL);
}

tw_status tw_op_min(const tw_tensor *a, tw_tensor *out)
{
	struct ext_req rq = {"min", false, true, false, false};
	return extreme(&rq, a, NULL, false, out, NULL);
}

tw_status tw_op_max_dim(const tw_tensor *a, int64_t dim, bool keepdim,
			tw_tensor *values, tw_tensor *indices)
{
	struct ext_req rq = {"max", true, true, true, false};
	return extreme(&rq, a, &dim, keepdim, values, indices);
}

tw_status tw_op_min_dim(const tw_tensor *a, int64_t dim, bool keepdim,
			tw_tensor *values, tw_tensor *indices)
{
	struct ext_req rq = {"min", false, true, true, false};
	return extreme(&rq, a, &dim, keepdim, values, indices);
}

tw_status tw_op_argmax(const tw_tensor *a, const int64_t *dim, bool keepdim,
		       tw_tensor *out)
{
	struct ext_req rq = {"argmax", true, false, true, true};
	return extreme(&rq, a, dim, keepdim, NULL, out);
}

tw_status tw_op_argmin(const tw_tensor *a, const int64_t *dim, bool keepdim,
		       tw_tensor *out)
{
	struct ext_req rq = {"argmin", false, false, true, true};
	return extreme(&rq, a, dim, keepdim, NULL, out);
}
