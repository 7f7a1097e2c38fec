/* DLPack export and import: tensors cross into NumPy/PyTorch/JAX without a copy. */
#include <stdlib.h>
#include <string.h>

#include <tensorwire/tensor.h>

#include "dataplane/err.h"

/*
 * An exported tensor is one allocation: the DLManagedTensor the consumer
 * sees, then the shape and strides arrays it points at. manager_ctx points
 * back at this block; the buffer reference is what keeps the bytes alive.
 */
struct export_block {
	DLManagedTensor mt; /* first: the deleter gets this address back */
	tw_buf *buf;        /* reference held for the consumer; may be NULL */
	int64_t shape[TW_TENSOR_MAX_DIMS];
	int64_t strides[TW_TENSOR_MAX_DIMS];
};

static void export_deleter(DLManagedTensor *self)
{
	if (self == NULL)
		return;
	struct export_block *eb = self->manager_ctx;
	tw_buf_release(eb->buf);
	free(eb);
}

static bool dtype_to_dl(tw_dtype dtype, DLDataType *dl)
{
	static const DLDataType map[TW_DTYPE_COUNT_] = {
		[TW_BOOL] = {kDLBool, 8, 1},
		[TW_UINT8] = {kDLUInt, 8, 1},
		[TW_INT8] = {kDLInt, 8, 1},
		[TW_INT16] = {kDLInt, 16, 1},
		[TW_INT32] = {kDLInt, 32, 1},
		[TW_INT64] = {kDLInt, 64, 1},
		[TW_FLOAT16] = {kDLFloat, 16, 1},
		[TW_BFLOAT16] = {kDLBfloat, 16, 1},
		[TW_FLOAT32] = {kDLFloat, 32, 1},
		[TW_FLOAT64] = {kDLFloat, 64, 1},
	};
	if ((unsigned)dtype >= TW_DTYPE_COUNT_)
		return false;
	*dl = map[dtype];
	return true;
}

static bool dtype_from_dl(DLDataType dl, tw_dtype *out)
{
	if (dl.lanes != 1)
		return false;
	switch (dl.code) {
	case kDLBool:
		if (dl.bits != 8)
			return false;
		*out = TW_BOOL;
		return true;
	case kDLUInt:
		/* Producers that predate kDLBool send bool as 8-bit uint; it
		 * is read as uint8, which is what those bytes are. */
		if (dl.bits != 8)
			return false;
		*out = TW_UINT8;
		return true;
	case kDLInt:
		switch (dl.bits) {
		case 8:
			*out = TW_INT8;
			return true;
		case 16:
			*out = TW_INT16;
			return true;
		case 32:
			*out = TW_INT32;
			return true;
		case 64:
			*out = TW_INT64;
			return true;
		}
		return false;
	case kDLFloat:
		switch (dl.bits) {
		case 16:
			*out = TW_FLOAT16;
			return true;
		case 32:
			*out = TW_FLOAT32;
			return true;
		case 64:
			*out = TW_FLOAT64;
			return true;
		}
		return false;
	case kDLBfloat:
		if (dl.bits != 16)
			return false;
		*out = TW_BFLOAT16;
		return true;
	}
	return false;
}

tw_status tw_tensor_to_dlpack(const tw_tensor *t, DLManagedTensor **out)
{
	if (t == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_tensor_to_dlpack: t or out "
				      "is NULL");

	/* tw_tensor_span validates dtype, ndim, shape, strides and data. */
	size_t span;
	tw_status st = tw_tensor_span(t, &span);
	if (st != TW_OK)
		return st;
	DLDataType dl;
	if (!dtype_to_dl((tw_dtype)t->dtype, &dl))
		return tw_fail(TW_EINVAL, "dtype %s has no DLPack type",
			       tw_dtype_name((tw_dtype)t->dtype));

	struct export_block *eb = calloc(1, sizeof(*eb));
	if (eb == NULL)
		return tw_fail_static(TW_ENOMEM, "out of memory exporting a "
						 "tensor to DLPack");
	for (unsigned d = 0; d < t->ndim; d++) {
		eb->shape[d] = t->shape[d];
		eb->strides[d] = t->strides[d];
	}
	if (t->buf != NULL)
		eb->buf = tw_buf_retain(t->buf);

	DLTensor *dt = &eb->mt.dl_tensor;
	dt->data = t->data;
	dt->device.device_type = kDLCPU;
	dt->device.device_id = 0;
	dt->ndim = t->ndim;
	dt->dtype = dl;
	/* Non-NULL even for ndim 0: some consumers read shape unconditionally. */
	dt->shape = eb->shape;
	/* Explicit strides always: NULL (compact) is deprecated since v0.8
	 * and our views are often not compact. */
	dt->strides = eb->strides;
	dt->byte_offset = 0;
	eb->mt.manager_ctx = eb;
	eb->mt.deleter = export_deleter;
	*out = &eb->mt;
	return TW_OK;
}

/* Last buffer reference gone: hand the memory back to its producer. */
static void import_release(void *ctx, void *data, size_t size)
{
	DLManagedTensor *mt = ctx;
	if (mt->deleter != NULL)
		mt->deleter(mt);
}

tw_status tw_tensor_from_dlpack(DLManagedTensor *mt, tw_tensor *out)
{
	if (mt == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL, "tw_tensor_from_dlpack: mt or "
						 "out is NULL");

	/* Everything is validated before the first side effect, so any
	 * failure leaves mt entirely the caller's. */
	const DLTensor *dt = &mt->dl_tensor;
	if (dt->device.device_type != kDLCPU &&
	    dt->device.device_type != kDLCUDAHost)
		return tw_fail(TW_ENOTSUP,
			       "DLPack device type %d: only CPU "
			       "(1) and CUDA host (3) memory can be imported",
			       (int)dt->device.device_type);
	tw_dtype dtype;
	if (!dtype_from_dl(dt->dtype, &dtype))
		return tw_fail(TW_ENOTSUP,
			       "DLPack dtype (code %u, %u bits, %u "
			       "lanes) has no tensorwire dtype",
			       (unsigned)dt->dtype.code,
			       (unsigned)dt->dtype.bits,
			       (unsigned)dt->dtype.lanes);
	if (dt->ndim < 0 || dt->ndim > TW_TENSOR_MAX_DIMS)
		return tw_fail(TW_EINVAL,
			       "DLPack tensor of %d dims (0 to %u "
			       "import)",
			       (int)dt->ndim, TW_TENSOR_MAX_DIMS);
	unsigned ndim = (unsigned)dt->ndim;
	if (ndim > 0 && dt->shape == NULL)
		return tw_fail(TW_EINVAL,
			       "DLPack tensor of %u dims without a "
			       "shape",
			       ndim);

	/* byte_offset is where element [0, ..., 0] really starts. */
	uintptr_t base = (uintptr_t)dt->data;
	uintptr_t data_addr;
	if (dt->byte_offset > (uint64_t)(UINTPTR_MAX - base))
		return tw_fail_static(TW_EOVERFLOW,
				      "DLPack byte_offset "
				      "overflows the data address");
	data_addr = base + (uintptr_t)dt->byte_offset;
	if (base == 0 && dt->byte_offset != 0)
		return tw_fail_static(TW_EINVAL, "DLPack tensor with a "
						 "byte_offset but no data");
	void *data = (void *)data_addr;

	/* A borrowed view first: validates shape, strides, sizes and data. */
	tw_tensor view;
	tw_status st = tw_tensor_init(&view, dtype, ndim, dt->shape,
				      dt->strides, data, NULL);
	if (st != TW_OK)
		return st;
	size_t span;
	st = tw_tensor_span(&view, &span);
	if (st != TW_OK)
		return st;

	tw_buf *buf;
	st = tw_buf_from_user(data, span, import_release, mt, &buf);
	if (st != TW_OK)
		return tw_fail_wrap(st, st,
				    "cannot wrap the DLPack tensor's "
				    "bytes");
	/* The buffer's one reference becomes the tensor's. */
	view.buf = buf;
	*out = view;
	return TW_OK;
}
