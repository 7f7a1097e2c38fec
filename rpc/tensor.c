/* Tensor descriptors: dtype table, shape/stride validation, strided copy and compare. */
#include <stdlib.h>
#include <string.h>

#include <tensorwire/tensor.h>

#include "dataplane/err.h"

/*
 * Invariant of every tensor this file accepts or produces: the element count,
 * the contiguous byte count and the byte span all fit in int64 (so also in
 * size_t), and the product of the non-zero dimensions does too. The last
 * rule is stricter than "numel fits" only for empty tensors; it keeps
 * contiguous strides representable for every valid shape, so no later
 * multiplication of a shape by a stride can overflow.
 *
 * The tw_tensor struct is public and callers may fill it by hand, so every
 * entry point re-validates what it reads rather than trusting the fields.
 */

struct dtype_info {
	const char *name;
	uint8_t size;
};

static const struct dtype_info dtype_table[TW_DTYPE_COUNT_] = {
	[TW_BOOL] = {"bool", 1},       [TW_UINT8] = {"uint8", 1},
	[TW_INT8] = {"int8", 1},       [TW_INT16] = {"int16", 2},
	[TW_INT32] = {"int32", 4},     [TW_INT64] = {"int64", 8},
	[TW_FLOAT16] = {"float16", 2}, [TW_BFLOAT16] = {"bfloat16", 2},
	[TW_FLOAT32] = {"float32", 4}, [TW_FLOAT64] = {"float64", 8},
};

size_t tw_dtype_size(tw_dtype dtype)
{
	/* The enum may hold any int a caller cast into it: compare unsigned. */
	if ((unsigned)dtype >= TW_DTYPE_COUNT_)
		return 0;
	return dtype_table[dtype].size;
}

const char *tw_dtype_name(tw_dtype dtype)
{
	if ((unsigned)dtype >= TW_DTYPE_COUNT_)
		return "?";
	return dtype_table[dtype].name;
}

tw_status tw_dtype_from_name(const char *name, tw_dtype *out)
{
	if (name == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_dtype_from_name: name or out "
				      "is NULL");
	for (unsigned i = 0; i < TW_DTYPE_COUNT_; i++) {
		if (strcmp(name, dtype_table[i].name) == 0) {
			*out = (tw_dtype)i;
			return TW_OK;
		}
	}
	return tw_fail(TW_EINVAL,
		       "unknown dtype '%.64s' (bool, uint8, int8, "
		       "int16, int32, int64, float16, bfloat16, float32, "
		       "float64)",
		       name);
}

static tw_status no_data(int64_t numel)
{
	return tw_fail(TW_EINVAL,
		       "tensor of %lld elements has no data "
		       "(NULL)",
		       (long long)numel);
}

/* a * b for non-negative a and b; false when the product exceeds INT64_MAX. */
static bool mul_nonneg(int64_t a, int64_t b, int64_t *out)
{
	return !__builtin_mul_overflow(a, b, out);
}

/* What a valid layout implies: filled by check_layout. */
struct layout {
	int64_t numel;
	int64_t nbytes; /* numel * element size */
	int64_t span;   /* bytes from data to one past the last element */
};

/*
 * Validate dtype, ndim, shape and strides and compute the sizes, all in
 * checked int64 arithmetic. strides may be NULL (contiguous).
 */
static tw_status check_layout(unsigned dtype, unsigned ndim,
			      const int64_t *shape, const int64_t *strides,
			      struct layout *lo)
{
	if (dtype >= TW_DTYPE_COUNT_)
		return tw_fail(TW_EINVAL, "tensor dtype %u is not a tw_dtype",
			       dtype);
	if (ndim > TW_TENSOR_MAX_DIMS)
		return tw_fail(TW_EINVAL,
			       "tensor of %u dims, over "
			       "TW_TENSOR_MAX_DIMS (%u)",
			       ndim, TW_TENSOR_MAX_DIMS);
	if (ndim > 0 && shape == NULL)
		return tw_fail(TW_EINVAL, "tensor of %u dims without a shape",
			       ndim);

	int64_t esize = (int64_t)dtype_table[dtype].size;
	int64_t numel = 1;   /* product of all dims */
	int64_t nonzero = 1; /* product of the non-zero dims */
	for (unsigned d = 0; d < ndim; d++) {
		if (shape[d] < 0)
			return tw_fail(TW_EINVAL,
				       "tensor shape[%u] is negative "
				       "(%lld)",
				       d, (long long)shape[d]);
		if (strides != NULL && strides[d] < 0)
			return tw_fail(TW_EINVAL,
				       "tensor strides[%u] is negative "
				       "(%lld)",
				       d, (long long)strides[d]);
		if (shape[d] == 0) {
			numel = 0;
			continue;
		}
		if (!mul_nonneg(nonzero, shape[d], &nonzero))
			return tw_fail_static(TW_EOVERFLOW,
					      "tensor element count "
					      "overflows int64");
	}
	if (numel != 0)
		numel = nonzero;

	int64_t nbytes;
	if (!mul_nonneg(numel, esize, &nbytes))
		return tw_fail_static(TW_EOVERFLOW,
				      "tensor byte size overflows "
				      "int64");

	/* The span is the offset of the last element plus one element. With
	 * no strides it equals nbytes; broadcast (stride 0) views span less. */
	int64_t span = 0;
	if (numel > 0 && strides == NULL) {
		span = nbytes;
	} else if (numel > 0) {
		int64_t last = 0;
		for (unsigned d = 0; d < ndim; d++) {
			int64_t off;
			if (!mul_nonneg(shape[d] - 1, strides[d], &off) ||
			    __builtin_add_overflow(last, off, &last))
				return tw_fail_static(TW_EOVERFLOW,
						      "tensor span "
						      "(shape by strides) "
						      "overflows int64");
		}
		if (__builtin_add_overflow(last, 1, &last) ||
		    !mul_nonneg(last, esize, &span))
			return tw_fail_static(TW_EOVERFLOW,
					      "tensor span (shape "
					      "by strides) overflows int64");
	}

	lo->numel = numel;
	lo->nbytes = nbytes;
	lo->span = span;
	return TW_OK;
}

static tw_status check_tensor(const tw_tensor *t, struct layout *lo)
{
	if (t == NULL)
		return tw_fail_static(TW_EINVAL, "tensor is NULL");
	tw_status st = check_layout(t->dtype, t->ndim, t->shape, t->strides,
				    lo);
	if (st != TW_OK)
		return st;
	/* Bytes to read need an address; an empty tensor may have none. */
	if (lo->numel > 0 && t->data == NULL)
		return no_data(lo->numel);
	return TW_OK;
}

void tw_tensor_contiguous_strides(unsigned ndim, const int64_t *shape,
				  int64_t *strides)
{
	if (shape == NULL || strides == NULL || ndim > TW_TENSOR_MAX_DIMS)
		return;
	/* As torch: a dim of size 0 or 1 steps like size 1, so strides stay
	 * meaningful for empty tensors. Saturate rather than overflow on
	 * shapes check_layout would reject. */
	int64_t acc = 1;
	for (unsigned d = ndim; d-- > 0;) {
		strides[d] = acc;
		int64_t n = shape[d] > 1 ? shape[d] : 1;
		if (!mul_nonneg(acc, n, &acc))
			acc = INT64_MAX;
	}
}

tw_status tw_tensor_init(tw_tensor *t, tw_dtype dtype, unsigned ndim,
			 const int64_t *shape, const int64_t *strides,
			 void *data, tw_buf *buf)
{
	if (t == NULL)
		return tw_fail_static(TW_EINVAL, "tw_tensor_init: t is NULL");

	struct layout lo;
	tw_status st = check_layout((unsigned)dtype, ndim, shape, strides, &lo);
	if (st != TW_OK)
		return st;
	if (lo.numel > 0 && data == NULL)
		return no_data(lo.numel);

	if (buf != NULL) {
		/* Integer addresses: comparing pointers into different objects
		 * is undefined, and data may well point outside buf. */
		uintptr_t lo_addr = (uintptr_t)buf->data;
		uintptr_t p = (uintptr_t)data;
		if (p < lo_addr || p - lo_addr > buf->size ||
		    (uint64_t)lo.span > buf->size - (p - lo_addr))
			return tw_fail(TW_EINVAL,
				       "tensor bytes [data, data + "
				       "%lld) lie outside its buf of %zu bytes",
				       (long long)lo.span, buf->size);
	}

	/* Build in a local so a failure above leaves *t untouched. */
	tw_tensor nt;
	memset(&nt, 0, sizeof(nt));
	nt.data = data;
	nt.dtype = (uint8_t)dtype;
	nt.ndim = (uint8_t)ndim;
	for (unsigned d = 0; d < ndim; d++)
		nt.shape[d] = shape[d];
	if (strides != NULL) {
		for (unsigned d = 0; d < ndim; d++)
			nt.strides[d] = strides[d];
	} else {
		tw_tensor_contiguous_strides(ndim, shape, nt.strides);
	}
	if (buf != NULL)
		nt.buf = tw_buf_retain(buf);
	*t = nt;
	return TW_OK;
}

static tw_status tensor_new(tw_tensor *t, tw_dtype dtype, unsigned ndim,
			    const int64_t *shape, bool zero)
{
	if (t == NULL)
		return tw_fail_static(TW_EINVAL, "tw_tensor_alloc: t is NULL");

	struct layout lo;
	tw_status st = check_layout((unsigned)dtype, ndim, shape, NULL, &lo);
	if (st != TW_OK)
		return st;

	tw_buf *buf;
	st = tw_buf_alloc((size_t)lo.nbytes, &buf);
	if (st != TW_OK)
		return tw_fail(st,
			       "cannot allocate %lld bytes for a %s tensor: "
			       "%s",
			       (long long)lo.nbytes, dtype_table[dtype].name,
			       tw_strerror(st));
	if (zero && lo.nbytes > 0)
		memset(buf->data, 0, (size_t)lo.nbytes);

	st = tw_tensor_init(t, dtype, ndim, shape, NULL, buf->data, buf);
	/* init took its own reference (or failed): drop the allocation's. */
	tw_buf_release(buf);
	return st;
}

tw_status tw_tensor_alloc(tw_tensor *t, tw_dtype dtype, unsigned ndim,
			  const int64_t *shape)
{
	return tensor_new(t, dtype, ndim, shape, false);
}

tw_status tw_tensor_zeros(tw_tensor *t, tw_dtype dtype, unsigned ndim,
			  const int64_t *shape)
{
	return tensor_new(t, dtype, ndim, shape, true);
}

void tw_tensor_ref(tw_tensor *dst, const tw_tensor *src)
{
	if (dst == NULL)
		return;
	if (src == NULL) {
		memset(dst, 0, sizeof(*dst));
		return;
	}
	/* dst == src must still end with two references; otherwise one copy
	 * (on every tensor a value clones) and no temporary. */
	if (dst != src)
		*dst = *src;
	if (dst->buf != NULL)
		tw_buf_retain(dst->buf);
}

void tw_tensor_release(tw_tensor *t)
{
	static const tw_tensor zero;
	if (t == NULL)
		return;
	tw_buf_release(t->buf);
	/* A copy of zeros: vector stores, not memset's rep stos start-up,
	 * on every tensor value destroyed. */
	*t = zero;
}

tw_status tw_tensor_numel(const tw_tensor *t, int64_t *out)
{
	struct layout lo;
	if (out == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_tensor_numel: out is NULL");
	tw_status st = check_tensor(t, &lo);
	if (st == TW_OK)
		*out = lo.numel;
	return st;
}

tw_status tw_tensor_nbytes(const tw_tensor *t, size_t *out)
{
	struct layout lo;
	if (out == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_tensor_nbytes: out is NULL");
	tw_status st = check_tensor(t, &lo);
	if (st == TW_OK)
		*out = (size_t)lo.nbytes;
	return st;
}

/* Dims and strides below this in a tensor of at most two dims keep every
 * product check_layout makes below 2^53: nothing can overflow. */
#define SMALL_DIM (INT64_C(1) << 24)

/*
 * tw_tensor_span of a small tensor of one or two dims, each at least 1 (so
 * numel > 0 and data must be set): for those the checks of check_layout
 * reduce to these, and its answer to this sum. Every tensor sent or
 * received is measured, and nearly all are such. false: not one of them,
 * check_layout decides.
 */
static bool span_small(const tw_tensor *t, size_t *out)
{
	if (t->ndim - 1u >= 2u || t->dtype >= TW_DTYPE_COUNT_ ||
	    t->data == NULL)
		return false;
	int64_t last = 0;
	for (unsigned d = 0; d < t->ndim; d++) {
		if ((uint64_t)t->shape[d] - 1 >= SMALL_DIM - 1 ||
		    (uint64_t)t->strides[d] >= SMALL_DIM)
			return false;
		last += (t->shape[d] - 1) * t->strides[d];
	}
	*out = (size_t)((last + 1) * (int64_t)dtype_table[t->dtype].size);
	return true;
}

tw_status tw_tensor_span(const tw_tensor *t, size_t *out)
{
	struct layout lo;
	if (out == NULL)
		return tw_fail_static(TW_EINVAL, "tw_tensor_span: out is NULL");
	if (t != NULL && span_small(t, out))
		return TW_OK;
	tw_status st = check_tensor(t, &lo);
	if (st == TW_OK)
		*out = (size_t)lo.span;
	return st;
}

bool tw_tensor_is_contiguous(const tw_tensor *t)
{
	struct layout lo;
	if (check_tensor(t, &lo) != TW_OK)
		return false;
	if (lo.numel == 0)
		return true;
	int64_t expected = 1;
	for (unsigned d = t->ndim; d-- > 0;) {
		/* A size-1 dim is never stepped over: its stride is moot. */
		if (t->shape[d] == 1)
			continue;
		if (t->strides[d] != expected)
			return false;
		expected *= t->shape[d]; /* <= numel: cannot overflow */
	}
	return true;
}

/*
 * Row-major walk over the elements of up to two tensors of the same shape,
 * tracking each one's byte offset. Offsets stay below the span, which
 * check_layout proved fits in int64, so the updates cannot overflow.
 */
struct walk {
	unsigned ndim;
	int64_t shape[TW_TENSOR_MAX_DIMS];
	int64_t idx[TW_TENSOR_MAX_DIMS];
	int64_t step[2][TW_TENSOR_MAX_DIMS]; /* byte strides */
	int64_t off[2];
};

static void walk_init(struct walk *w, const tw_tensor *a, const tw_tensor *b)
{
	int64_t esize = (int64_t)dtype_table[a->dtype].size;
	memset(w, 0, sizeof(*w));
	w->ndim = a->ndim;
	for (unsigned d = 0; d < a->ndim; d++) {
		w->shape[d] = a->shape[d];
		/* A size-1 dim may carry any stride, even one whose byte
		 * value overflows; it is never stepped, so make it 0. */
		if (a->shape[d] == 1)
			continue;
		w->step[0][d] = a->strides[d] * esize;
		w->step[1][d] = b != NULL ? b->strides[d] * esize : 0;
	}
}

/* Advance to the next element in row-major order. */
static void walk_next(struct walk *w)
{
	for (unsigned d = w->ndim; d-- > 0;) {
		w->off[0] += w->step[0][d];
		w->off[1] += w->step[1][d];
		if (++w->idx[d] < w->shape[d])
			return;
		/* Wrap this dim and carry into the next outer one. */
		w->off[0] -= w->step[0][d] * w->shape[d];
		w->off[1] -= w->step[1][d] * w->shape[d];
		w->idx[d] = 0;
	}
}

/* Copy one element; fixed sizes let the compiler use plain loads. */
static inline void copy_elem(uint8_t *dst, const uint8_t *src, size_t esize)
{
	switch (esize) {
	case 1:
		memcpy(dst, src, 1);
		break;
	case 2:
		memcpy(dst, src, 2);
		break;
	case 4:
		memcpy(dst, src, 4);
		break;
	default:
		memcpy(dst, src, 8);
		break;
	}
}

tw_status tw_tensor_contiguous(tw_tensor *dst, const tw_tensor *src)
{
	struct layout lo;
	if (dst == NULL || dst == src)
		return tw_fail_static(TW_EINVAL, "tw_tensor_contiguous: dst is "
						 "NULL or the same as src");
	tw_status st = check_tensor(src, &lo);
	if (st != TW_OK)
		return st;

	tw_tensor out;
	st = tw_tensor_alloc(&out, (tw_dtype)src->dtype, src->ndim, src->shape);
	if (st != TW_OK)
		return st;
	if (lo.numel == 0)
		goto done;

	if (tw_tensor_is_contiguous(src)) {
		memcpy(out.data, src->data, (size_t)lo.nbytes);
		goto done;
	}

	/* The innermost dim is walked here, the outer ones by walk_next, so
	 * the index bookkeeping runs once per row rather than per element. */
	size_t esize = dtype_table[src->dtype].size;
	const uint8_t *s = src->data;
	uint8_t *o = out.data;
	unsigned ndim = src->ndim; /* >= 1: a 0-dim tensor is contiguous */
	int64_t inner = src->shape[ndim - 1];
	int64_t istep = inner > 1 ? src->strides[ndim - 1] * (int64_t)esize : 0;
	int64_t rows = lo.numel / inner;
	struct walk w;
	tw_tensor outer = *src;
	outer.ndim = (uint8_t)(ndim - 1);
	walk_init(&w, &outer, NULL);
	for (int64_t r = 0; r < rows; r++) {
		const uint8_t *p = s + w.off[0];
		for (int64_t i = 0; i < inner; i++) {
			copy_elem(o, p, esize);
			o += esize;
			p += istep;
		}
		walk_next(&w);
	}

done:
	*dst = out;
	return TW_OK;
}

bool tw_tensor_equal(const tw_tensor *a, const tw_tensor *b)
{
	struct layout la, lb;
	if (check_tensor(a, &la) != TW_OK || check_tensor(b, &lb) != TW_OK)
		return false;
	if (a->dtype != b->dtype || a->ndim != b->ndim)
		return false;
	for (unsigned d = 0; d < a->ndim; d++)
		if (a->shape[d] != b->shape[d])
			return false;
	if (la.numel == 0)
		return true;
	if (tw_tensor_is_contiguous(a) && tw_tensor_is_contiguous(b))
		return memcmp(a->data, b->data, (size_t)la.nbytes) == 0;

	/* Bitwise, as documented: +0.0 and -0.0 differ, equal NaNs match. */
	size_t esize = dtype_table[a->dtype].size;
	const uint8_t *pa = a->data;
	const uint8_t *pb = b->data;
	struct walk w;
	walk_init(&w, a, b);
	for (int64_t n = 0; n < la.numel; n++) {
		if (memcmp(pa + w.off[0], pb + w.off[1], esize) != 0)
			return false;
		walk_next(&w);
	}
	return true;
}
