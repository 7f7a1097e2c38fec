/* tensorwire tensors: dtype, shape and strides over bytes owned by a tw_buf. */
#ifndef TENSORWIRE_TENSOR_H
#define TENSORWIRE_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/buf.h>
#include <tensorwire/dlpack.h>
#include <tensorwire/status.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TW_TENSOR_MAX_DIMS 8

/* Errors: the functions below that validate a tensor (init, numel,
 * nbytes, span, contiguous, DLPack import and export) say what was wrong
 * when they fail (tw_errmsg, status.h): which dim's shape or stride is
 * negative, which size overflows, a dtype or device they do not take. */

/* Element types. Values are part of the wire format: append only. */
typedef enum tw_dtype {
	TW_BOOL = 0,
	TW_UINT8 = 1,
	TW_INT8 = 2,
	TW_INT16 = 3,
	TW_INT32 = 4,
	TW_INT64 = 5,
	TW_FLOAT16 = 6,
	TW_BFLOAT16 = 7,
	TW_FLOAT32 = 8,
	TW_FLOAT64 = 9,
	TW_DTYPE_COUNT_ /* not a dtype */
} tw_dtype;

/*
 * A strided view of elements. shape and strides are in elements (as torch and
 * DLPack); strides may be 0 (broadcast) but never negative. data points at
 * element [0, ..., 0]. buf, when not NULL, is a reference this tensor holds
 * on the buffer that owns the bytes (released by tw_tensor_release); a NULL
 * buf means the bytes are borrowed and the caller keeps them alive.
 *
 * The struct is a handle: copying it does not copy the bytes. Use
 * tw_tensor_ref to make a second handle that holds its own reference.
 */
typedef struct tw_tensor {
	void *data;
	tw_buf *buf;
	uint8_t dtype; /* tw_dtype */
	uint8_t ndim; /* 0 .. TW_TENSOR_MAX_DIMS; 0 is a scalar of one element */
	uint16_t reserved_;
	uint32_t reserved2_;
	int64_t shape[TW_TENSOR_MAX_DIMS];
	int64_t strides[TW_TENSOR_MAX_DIMS];
} tw_tensor;

/* Bytes per element of dtype, 0 for an invalid dtype. */
size_t tw_dtype_size(tw_dtype dtype);

/* Stable lower-case name ("float32"), or "?" for an invalid dtype. */
const char *tw_dtype_name(tw_dtype dtype);

/* Parse a dtype name as printed by tw_dtype_name; TW_EINVAL if unknown
 * (tw_errmsg lists the names). */
tw_status tw_dtype_from_name(const char *name, tw_dtype *out);

/*
 * Describe existing bytes as a tensor. strides NULL means contiguous
 * row-major. Validates dtype, ndim, non-negative shape and strides and that
 * the element count and byte span fit in int64; when buf is not NULL, also
 * that every addressed byte lies inside buf, and takes a reference on it.
 */
tw_status tw_tensor_init(tw_tensor *t, tw_dtype dtype, unsigned ndim,
			 const int64_t *shape, const int64_t *strides,
			 void *data, tw_buf *buf);

/* Allocate a new contiguous tensor with uninitialised bytes in a fresh
 * 64-byte aligned heap buffer. */
tw_status tw_tensor_alloc(tw_tensor *t, tw_dtype dtype, unsigned ndim,
			  const int64_t *shape);

/* Same, zero-filled. */
tw_status tw_tensor_zeros(tw_tensor *t, tw_dtype dtype, unsigned ndim,
			  const int64_t *shape);

/* A second handle to the same bytes with its own buffer reference. */
void tw_tensor_ref(tw_tensor *dst, const tw_tensor *src);

/* Drop this handle's buffer reference and clear the handle. */
void tw_tensor_release(tw_tensor *t);

/* Number of elements (product of shape; 1 for ndim 0), with overflow check. */
tw_status tw_tensor_numel(const tw_tensor *t, int64_t *out);

/* numel * element size: the bytes a contiguous copy would occupy. */
tw_status tw_tensor_nbytes(const tw_tensor *t, size_t *out);

/* Bytes from data to one past the last addressed element: what must be
 * sent to carry a strided tensor as-is (0 when numel is 0). */
tw_status tw_tensor_span(const tw_tensor *t, size_t *out);

/* True when strides are row-major compact (dims of size 1 may have any
 * stride, as in torch). Empty tensors are contiguous. */
bool tw_tensor_is_contiguous(const tw_tensor *t);

/* Fill strides with row-major compact strides for shape. */
void tw_tensor_contiguous_strides(unsigned ndim, const int64_t *shape,
				  int64_t *strides);

/* A contiguous copy of src in a new heap buffer (dst must not alias src). */
tw_status tw_tensor_contiguous(tw_tensor *dst, const tw_tensor *src);

/* True when dtype, shape and every element are bitwise equal (strides may
 * differ). */
bool tw_tensor_equal(const tw_tensor *a, const tw_tensor *b);

/*
 * DLPack export: a DLManagedTensor viewing t's bytes without a copy. It holds
 * its own reference on t's buffer (t may be released at once); the consumer
 * calls ->deleter exactly once. A tensor with a NULL buf is exported too, and
 * the caller must keep its bytes alive until the deleter runs.
 */
tw_status tw_tensor_to_dlpack(const tw_tensor *t, DLManagedTensor **out);

/*
 * DLPack import: a tensor over the managed tensor's bytes without a copy.
 * On success tensorwire owns mt and calls mt->deleter when the last buffer
 * reference goes; on failure mt is untouched and still the caller's.
 * Accepts CPU (and CUDA-host) memory, lanes 1, the dtypes above (8-bit
 * kDLBool imports as TW_BOOL, 8-bit kDLUInt as TW_UINT8), NULL strides and
 * non-negative strides. TW_ENOTSUP for another device, dtype or lanes;
 * TW_EINVAL for a bad ndim, shape or stride; TW_EOVERFLOW for sizes; each
 * saying which (tw_errmsg).
 */
tw_status tw_tensor_from_dlpack(DLManagedTensor *mt, tw_tensor *out);

#ifdef __cplusplus
}
#endif
#endif
