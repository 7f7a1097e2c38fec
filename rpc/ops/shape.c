/* Shape ops: t, transpose, view and reshape (views when strides allow), cat, stack, clone. */
#include <string.h>

#include "dataplane/err.h"
#include "rpc/ops/ops.h"

/* A new handle on a's bytes with the given geometry; shares a's buffer
 * reference (or its borrowed bytes). */
static void make_view(const tw_tensor *a, unsigned ndim, const int64_t *shape,
		      const int64_t *strides, tw_tensor *out)
{
	tw_tensor v;
	tw_tensor_ref(&v, a);
	v.ndim = (uint8_t)ndim;
	for (unsigned d = 0; d < TW_TENSOR_MAX_DIMS; d++) {
		v.shape[d] = d < ndim ? shape[d] : 0;
		v.strides[d] = d < ndim ? strides[d] : 0;
	}
	*out = v;
}

tw_status tw_op_transpose(const tw_tensor *a, int64_t dim0, int64_t dim1,
			  tw_tensor *out)
{
	tw_status st = tw_ops_check("transpose", a, false, NULL);
	if (st != TW_OK)
		return st;
	if (out == NULL || out == a)
		return tw_fail_static(TW_EINVAL, "transpose(): bad out");
	unsigned d0, d1;
	if ((st = tw_ops_wrap_dim(dim0, a->ndim, &d0)) != TW_OK ||
	    (st = tw_ops_wrap_dim(dim1, a->ndim, &d1)) != TW_OK)
		return st;
	int64_t shape[TW_TENSOR_MAX_DIMS], strides[TW_TENSOR_MAX_DIMS];
	memcpy(shape, a->shape, sizeof(shape));
	memcpy(strides, a->strides, sizeof(strides));
	if (a->ndim > 0) {
		shape[d0] = a->shape[d1];
		shape[d1] = a->shape[d0];
		strides[d0] = a->strides[d1];
		strides[d1] = a->strides[d0];
	}
	make_view(a, a->ndim, shape, strides, out);
	return TW_OK;
}

tw_status tw_op_t(const tw_tensor *a, tw_tensor *out)
{
	tw_status st = tw_ops_check("t", a, false, NULL);
	if (st != TW_OK)
		return st;
	if (a->ndim > 2)
		return tw_fail(
			TW_ERUNTIME,
			"t() expects a tensor with <= 2 dimensions, but self is %uD",
			a->ndim);
	if (a->ndim < 2)
		return tw_op_transpose(a, 0, 0, out);
	return tw_op_transpose(a, 0, 1, out);
}

/* torch's infer_size: resolve one -1 against numel. */
static tw_status infer_shape(int64_t numel, const int64_t *shape, unsigned ndim,
			     int64_t *res)
{
	int64_t newsize = 1;
	int infer = -1;
	for (unsigned d = 0; d < ndim; d++) {
		if (shape[d] == -1) {
			if (infer >= 0)
				return tw_fail_static(
					TW_ERUNTIME,
					"only one dimension can be inferred");
			infer = (int)d;
		} else if (shape[d] >= 0) {
			if (__builtin_mul_overflow(newsize, shape[d], &newsize))
				newsize = -1; /* cannot match any numel */
		} else {
			return tw_fail(TW_ERUNTIME,
				       "invalid shape dimension %lld",
				       (long long)shape[d]);
		}
		res[d] = shape[d];
	}
	if (newsize >= 0 && (numel == newsize || (infer >= 0 && newsize > 0 &&
						  numel % newsize == 0))) {
		if (infer < 0)
			return TW_OK;
		if (newsize != 0) {
			res[infer] = numel / newsize;
			return TW_OK;
		}
	}
	char buf[200];
	tw_ops_format_shape(buf, sizeof(buf), ndim, shape);
	if (infer >= 0 && newsize == 0 && numel == 0)
		return tw_fail(
			TW_ERUNTIME,
			"cannot reshape tensor of 0 elements into shape %s because the unspecified dimension size -1 can be any value and is ambiguous",
			buf);
	return tw_fail(TW_ERUNTIME,
		       "shape '%s' is invalid for input of size %lld", buf,
		       (long long)numel);
}

/*
 * torch's computeStride: strides that let a tensor of (oldshape,
 * oldstride) be viewed as newshape, or false. Dims of the old tensor that
 * are contiguous with each other form chunks; a view may split and merge
 * dims only within a chunk.
 */
static bool compute_stride(unsigned ond, const int64_t *oshape,
			   const int64_t *ostride, int64_t numel, unsigned nnd,
			   const int64_t *nshape, int64_t *nstride)
{
	if (ond == 0) {
		for (unsigned d = 0; d < nnd; d++)
			nstride[d] = 1;
		return true;
	}
	if (numel == 0) {
		bool same = ond == nnd;
		for (unsigned d = 0; same && d < nnd; d++)
			same = oshape[d] == nshape[d];
		if (same) {
			memcpy(nstride, ostride, nnd * sizeof(int64_t));
			return true;
		}
		tw_tensor_contiguous_strides(nnd, nshape, nstride);
		return true;
	}
	int64_t view_d = (int64_t)nnd - 1;
	int64_t chunk_base_stride = ostride[ond - 1];
	int64_t tensor_numel = 1;
	int64_t view_numel = 1;
	for (int64_t td = (int64_t)ond - 1; td >= 0; td--) {
		tensor_numel *= oshape[td];
		if (td == 0 ||
		    (oshape[td - 1] != 1 &&
		     ostride[td - 1] != tensor_numel * chunk_base_stride)) {
			while (view_d >= 0 && (view_numel < tensor_numel ||
					       nshape[view_d] == 1)) {
				nstride[view_d] = view_numel *
						  chunk_base_stride;
				view_numel *= nshape[view_d];
				view_d--;
			}
			if (view_numel != tensor_numel)
				return false;
			if (td > 0) {
				chunk_base_stride = ostride[td - 1];
				tensor_numel = 1;
				view_numel = 1;
			}
		}
	}
	return view_d == -1;
}

static tw_status view_or_reshape(const char *name, bool copy_ok,
				 const tw_tensor *a, const int64_t *shape,
				 unsigned ndim, tw_tensor *out)
{
	int64_t numel;
	tw_status st = tw_ops_check(name, a, false, &numel);
	if (st != TW_OK)
		return st;
	if (out == NULL || out == a || (ndim > 0 && shape == NULL))
		return tw_fail(TW_EINVAL, "%s(): bad arguments", name);
	if (ndim > TW_TENSOR_MAX_DIMS)
		return tw_fail(TW_EINVAL, "%s(): at most %d dims", name,
			       TW_TENSOR_MAX_DIMS);
	int64_t nshape[TW_TENSOR_MAX_DIMS], nstride[TW_TENSOR_MAX_DIMS];
	st = infer_shape(numel, shape, ndim, nshape);
	if (st != TW_OK)
		return st;
	if (compute_stride(a->ndim, a->shape, a->strides, numel, ndim, nshape,
			   nstride)) {
		make_view(a, ndim, nshape, nstride, out);
		return TW_OK;
	}
	if (!copy_ok)
		return tw_fail_static(
			TW_ERUNTIME,
			"view size is not compatible with input tensor's size and stride (at least one dimension spans across two contiguous subspaces). Use .reshape(...) instead.");
	tw_tensor c;
	st = tw_ops_limit_new("reshape", (tw_dtype)a->dtype, a->ndim, a->shape);
	if (st != TW_OK)
		return st;
	st = tw_tensor_contiguous(&c, a);
	if (st != TW_OK)
		return tw_fail_static(st, "cannot copy the input");
	tw_tensor_contiguous_strides(ndim, nshape, nstride);
	make_view(&c, ndim, nshape, nstride, out);
	tw_tensor_release(&c);
	return TW_OK;
}

tw_status tw_op_view(const tw_tensor *a, const int64_t *shape, unsigned ndim,
		     tw_tensor *out)
{
	return view_or_reshape("view", false, a, shape, ndim, out);
}

tw_status tw_op_reshape(const tw_tensor *a, const int64_t *shape, unsigned ndim,
			tw_tensor *out)
{
	return view_or_reshape("reshape", true, a, shape, ndim, out);
}

tw_status tw_op_clone(const tw_tensor *a, tw_tensor *out)
{
	tw_status st = tw_ops_check("clone", a, false, NULL);
	if (st != TW_OK)
		return st;
	if (out == NULL || out == a)
		return tw_fail_static(TW_EINVAL, "clone(): bad out");
	st = tw_ops_limit_new("clone", (tw_dtype)a->dtype, a->ndim, a->shape);
	if (st != TW_OK)
		return st;
	st = tw_tensor_contiguous(out, a);
	if (st != TW_OK)
		return tw_fail_static(st, "cannot copy the input");
	return TW_OK;
}

/* Validate a tensor list and promote its dtypes. */
static tw_status check_list(const char *name, const tw_tensor *ts, size_t n,
			    tw_tensor *out, tw_dtype *dt)
{
	if (out == NULL || (n > 0 && ts == NULL))
		return tw_fail(TW_EINVAL, "%s(): bad arguments", name);
	tw_ops_promo pr;
	tw_ops_promo_init(&pr);
	for (size_t i = 0; i < n; i++) {
		tw_status st = tw_ops_check(name, &ts[i], true, NULL);
		if (st != TW_OK)
			return st;
		tw_ops_promo_tensor(&pr, &ts[i]);
	}
	*dt = tw_ops_promo_result(&pr);
	return TW_OK;
}

/* The view of o that is index i along dim, as a tensor of shape, ndim. */
static tw_tensor slice_view(const tw_tensor *o, unsigned dim, int64_t start,
			    int64_t len)
{
	tw_tensor v = *o;
	v.buf = NULL;
	v.shape[dim] = len;
	v.data = (char *)o->data +
		 start * o->strides[dim] *
			 (int64_t)tw_dtype_size((tw_dtype)o->dtype);
	return v;
}

tw_status tw_op_cat(const tw_tensor *ts, size_t n, int64_t dim, tw_tensor *out)
{
	if (n == 0)
		return tw_fail_static(
			TW_ERUNTIME,
			"torch.cat(): expected a non-empty list of Tensors");
	tw_dtype dt;
	tw_status st = check_list("cat", ts, n, out, &dt);
	if (st != TW_OK)
		return st;
	for (size_t i = 0; i < n; i++)
		if (ts[i].ndim == 0)
			return tw_fail(
				TW_ERUNTIME,
				"zero-dimensional tensor (at position %zu) cannot be concatenated",
				i);
	/* Legacy rule: 1-D empty tensors are skipped whatever their size. */
	const tw_tensor *ref = NULL;
	for (size_t i = 0; i < n && ref == NULL; i++) {
		if (!(ts[i].ndim == 1 && ts[i].shape[0] == 0))
			ref = &ts[i];
	}
	if (ref == NULL) {
		int64_t zero = 0;
		return tw_ops_alloc("cat", out, dt, 1, &zero, false);
	}
	unsigned d;
	st = tw_ops_wrap_dim(dim, ref->ndim, &d);
	if (st != TW_OK)
		return st;
	int64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		const tw_tensor *t = &ts[i];
		if (t->ndim == 1 && t->shape[0] == 0)
			continue;
		if (t->ndim != ref->ndim)
			return tw_fail(
				TW_ERUNTIME,
				"Tensors must have same number of dimensions: got %u and %u",
				ref->ndim, t->ndim);
		for (unsigned k = 0; k < ref->ndim; k++)
			if (k != d && t->shape[k] != ref->shape[k])
				return tw_fail(
					TW_ERUNTIME,
					"Sizes of tensors must match except in dimension %u. Expected size %lld but got size %lld for tensor number %zu in the list.",
					d, (long long)ref->shape[k],
					(long long)t->shape[k], i);
		if (__builtin_add_overflow(total, t->shape[d], &total))
			return tw_fail_static(TW_EOVERFLOW,
					      "cat(): result too large");
	}
	int64_t oshape[TW_TENSOR_MAX_DIMS];
	memcpy(oshape, ref->shape, sizeof(oshape));
	oshape[d] = total;
	tw_tensor o;
	st = tw_ops_alloc("cat", &o, dt, ref->ndim, oshape, false);
	if (st != TW_OK)
		return st;
	int64_t at = 0;
	for (size_t i = 0; i < n; i++) {
		const tw_tensor *t = &ts[i];
		int64_t tn = 0;
		tw_tensor_numel(t, &tn);
		if (tn == 0)
			continue; /* nothing to copy; at moves by 0 too */
		tw_tensor dst = slice_view(&o, d, at, t->shape[d]);
		tw_ops_copy_into(&dst, t);
		at += t->shape[d];
	}
	*out = o;
	return TW_OK;
}

tw_status tw_op_stack(const tw_tensor *ts, size_t n, int64_t dim,
		      tw_tensor *out)
{
	if (n == 0)
		return tw_fail_static(TW_ERUNTIME,
				      "stack expects a non-empty TensorList");
	tw_dtype dt;
	tw_status st = check_list("stack", ts, n, out, &dt);
	if (st != TW_OK)
		return st;
	const tw_tensor *ref = &ts[0];
	if (ref->ndim + 1u > TW_TENSOR_MAX_DIMS)
		return tw_fail(TW_EINVAL, "stack(): at most %d dims",
			       TW_TENSOR_MAX_DIMS);
	for (size_t i = 1; i < n; i++) {
		bool same = ts[i].ndim == ref->ndim;
		for (unsigned k = 0; same && k < ref->ndim; k++)
			same = ts[i].shape[k] == ref->shape[k];
		if (!same) {
			char s0[200], s1[200];
			tw_ops_format_shape(s0, sizeof(s0), ref->ndim,
					    ref->shape);
			tw_ops_format_shape(s1, sizeof(s1), ts[i].ndim,
					    ts[i].shape);
			return tw_fail(
				TW_ERUNTIME,
				"stack expects each tensor to be equal size, but got %s at entry 0 and %s at entry %zu",
				s0, s1, i);
		}
	}
	unsigned d;
	st = tw_ops_wrap_dim(dim, ref->ndim + 1u, &d);
	if (st != TW_OK)
		return st;
	if ((uint64_t)n > (uint64_t)INT64_MAX)
		return tw_fail_static(TW_EOVERFLOW, "stack(): too many");
	int64_t oshape[TW_TENSOR_MAX_DIMS];
	unsigned ond = ref->ndim + 1u;
	for (unsigned k = 0, j = 0; k < ond; k++)
		oshape[k] = k == d ? (int64_t)n : ref->shape[j++];
	tw_tensor o;
	st = tw_ops_alloc("stack", &o, dt, ond, oshape, false);
	if (st != TW_OK)
		return st;
	int64_t onumel = 0;
	tw_tensor_numel(&o, &onumel);
	for (size_t i = 0; i < n && onumel > 0; i++) {
		/* Entry i: o with dim d fixed at i, i.e. o's geometry minus
		 * dim d, starting at i * stride[d]. */
		tw_tensor dst = slice_view(&o, d, (int64_t)i, 1);
		for (unsigned k = d; k + 1 < ond; k++) {
			dst.shape[k] = dst.shape[k + 1];
			dst.strides[k] = dst.strides[k + 1];
		}
		dst.ndim = (uint8_t)(ond - 1);
		tw_ops_copy_into(&dst, &ts[i]);
	}
	*out = o;
	return TW_OK;
}
