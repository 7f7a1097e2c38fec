/* Unit tests for tensor descriptors: validation, contiguity, copy, equality. */
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include <tensorwire/tensor.h>

static const size_t expect_size[TW_DTYPE_COUNT_] = {
	[TW_BOOL] = 1,    [TW_UINT8] = 1,   [TW_INT8] = 1,    [TW_INT16] = 2,
	[TW_INT32] = 4,   [TW_INT64] = 8,   [TW_FLOAT16] = 2, [TW_BFLOAT16] = 2,
	[TW_FLOAT32] = 4, [TW_FLOAT64] = 8,
};

static const char *const expect_name[TW_DTYPE_COUNT_] = {
	[TW_BOOL] = "bool",       [TW_UINT8] = "uint8",
	[TW_INT8] = "int8",       [TW_INT16] = "int16",
	[TW_INT32] = "int32",     [TW_INT64] = "int64",
	[TW_FLOAT16] = "float16", [TW_BFLOAT16] = "bfloat16",
	[TW_FLOAT32] = "float32", [TW_FLOAT64] = "float64",
};

/* Counts releases of user buffers, to see bytes really go away. */
static int released;
static void count_release(void *ctx, void *data, size_t size)
{
	(void)ctx;
	(void)data;
	(void)size;
	released++;
}

/* A 2x3 int32 tensor holding 0..5. */
static void make_iota_2x3(tw_tensor *t)
{
	int64_t shape[2] = {2, 3};
	cr_assert_eq(tw_tensor_alloc(t, TW_INT32, 2, shape), TW_OK);
	int32_t *p = t->data;
	for (int i = 0; i < 6; i++)
		p[i] = i;
}

Test(dtype, sizes_and_names)
{
	for (unsigned d = 0; d < TW_DTYPE_COUNT_; d++) {
		cr_assert_eq(tw_dtype_size((tw_dtype)d), expect_size[d],
			     "dtype %u", d);
		cr_assert_str_eq(tw_dtype_name((tw_dtype)d), expect_name[d]);
		tw_dtype back = TW_DTYPE_COUNT_;
		cr_assert_eq(tw_dtype_from_name(expect_name[d], &back), TW_OK);
		cr_assert_eq(back, (tw_dtype)d);
	}
	cr_assert_eq(tw_dtype_size(TW_DTYPE_COUNT_), 0);
	cr_assert_eq(tw_dtype_size((tw_dtype)-1), 0);
	cr_assert_str_eq(tw_dtype_name((tw_dtype)200), "?");

	tw_dtype out = TW_INT8;
	cr_assert_eq(tw_dtype_from_name("float", &out), TW_EINVAL);
	cr_assert_eq(tw_dtype_from_name("Float32", &out), TW_EINVAL);
	cr_assert_eq(tw_dtype_from_name("", &out), TW_EINVAL);
	cr_assert_eq(tw_dtype_from_name(NULL, &out), TW_EINVAL);
	cr_assert_eq(tw_dtype_from_name("int8", NULL), TW_EINVAL);
	cr_assert_eq(out, TW_INT8);
}

Test(alloc, every_dtype)
{
	int64_t shape[2] = {2, 3};
	for (unsigned d = 0; d < TW_DTYPE_COUNT_; d++) {
		tw_tensor t;
		cr_assert_eq(tw_tensor_alloc(&t, (tw_dtype)d, 2, shape), TW_OK);
		cr_assert_not_null(t.buf);
		cr_assert_eq(t.data, t.buf->data);
		cr_assert_eq((uintptr_t)t.data % 64, 0, "64-byte aligned");
		cr_assert_eq(tw_buf_refcnt(t.buf), 1);
		cr_assert_eq(t.dtype, d);
		cr_assert_eq(t.ndim, 2);
		cr_assert_eq(t.strides[0], 3);
		cr_assert_eq(t.strides[1], 1);
		size_t nbytes, span;
		int64_t numel;
		cr_assert_eq(tw_tensor_numel(&t, &numel), TW_OK);
		cr_assert_eq(numel, 6);
		cr_assert_eq(tw_tensor_nbytes(&t, &nbytes), TW_OK);
		cr_assert_eq(nbytes, 6 * expect_size[d]);
		cr_assert_eq(tw_tensor_span(&t, &span), TW_OK);
		cr_assert_eq(span, nbytes);
		cr_assert_geq(t.buf->size, nbytes);
		cr_assert(tw_tensor_is_contiguous(&t));
		tw_tensor_release(&t);
		cr_assert_null(t.buf);
		cr_assert_null(t.data);
	}
}

Test(alloc, zeros_are_zero)
{
	int64_t shape[3] = {3, 5, 7};
	tw_tensor t;
	cr_assert_eq(tw_tensor_zeros(&t, TW_FLOAT64, 3, shape), TW_OK);
	const uint8_t *p = t.data;
	for (size_t i = 0; i < 3 * 5 * 7 * 8; i++)
		cr_assert_eq(p[i], 0);
	tw_tensor_release(&t);
}

Test(alloc, scalar_0dim)
{
	tw_tensor t;
	cr_assert_eq(tw_tensor_zeros(&t, TW_FLOAT32, 0, NULL), TW_OK);
	int64_t numel;
	size_t nbytes, span;
	cr_assert_eq(tw_tensor_numel(&t, &numel), TW_OK);
	cr_assert_eq(numel, 1);
	cr_assert_eq(tw_tensor_nbytes(&t, &nbytes), TW_OK);
	cr_assert_eq(nbytes, 4);
	cr_assert_eq(tw_tensor_span(&t, &span), TW_OK);
	cr_assert_eq(span, 4);
	cr_assert(tw_tensor_is_contiguous(&t));
	*(float *)t.data = 2.5f;

	tw_tensor c;
	cr_assert_eq(tw_tensor_contiguous(&c, &t), TW_OK);
	cr_assert_eq(*(float *)c.data, 2.5f);
	cr_assert(tw_tensor_equal(&c, &t));
	tw_tensor_release(&c);
	tw_tensor_release(&t);
}

Test(alloc, empty)
{
	int64_t shape[3] = {3, 0, 2};
	tw_tensor t;
	cr_assert_eq(tw_tensor_alloc(&t, TW_INT64, 3, shape), TW_OK);
	int64_t numel;
	size_t nbytes, span;
	cr_assert_eq(tw_tensor_numel(&t, &numel), TW_OK);
	cr_assert_eq(numel, 0);
	cr_assert_eq(tw_tensor_nbytes(&t, &nbytes), TW_OK);
	cr_assert_eq(nbytes, 0);
	cr_assert_eq(tw_tensor_span(&t, &span), TW_OK);
	cr_assert_eq(span, 0);
	/* As torch: a zero dim steps like a one. */
	cr_assert_eq(t.strides[0], 2);
	cr_assert_eq(t.strides[1], 2);
	cr_assert_eq(t.strides[2], 1);
	cr_assert(tw_tensor_is_contiguous(&t));

	tw_tensor c;
	cr_assert_eq(tw_tensor_contiguous(&c, &t), TW_OK);
	cr_assert(tw_tensor_equal(&c, &t));
	tw_tensor_release(&c);
	tw_tensor_release(&t);

	/* Bytes need no address when there are none: data may be NULL,
	 * and any strides describe an empty tensor. */
	int64_t strides[3] = {1000, 7, 0};
	cr_assert_eq(tw_tensor_init(&t, TW_INT64, 3, shape, strides, NULL,
				    NULL),
		     TW_OK);
	cr_assert(tw_tensor_is_contiguous(&t));
	tw_tensor_release(&t);
}

Test(init, eight_dims_ok_nine_rejected)
{
	int64_t shape[9] = {2, 2, 2, 2, 2, 2, 2, 2, 2};
	tw_tensor t;
	cr_assert_eq(tw_tensor_alloc(&t, TW_UINT8, 8, shape), TW_OK);
	int64_t numel;
	cr_assert_eq(tw_tensor_numel(&t, &numel), TW_OK);
	cr_assert_eq(numel, 256);
	cr_assert_eq(t.strides[0], 128);
	cr_assert_eq(t.strides[7], 1);
	tw_tensor_release(&t);

	uint8_t bytes[512];
	cr_assert_eq(tw_tensor_alloc(&t, TW_UINT8, 9, shape), TW_EINVAL);
	cr_assert_eq(tw_tensor_zeros(&t, TW_UINT8, 9, shape), TW_EINVAL);
	cr_assert_eq(tw_tensor_init(&t, TW_UINT8, 9, shape, NULL, bytes, NULL),
		     TW_EINVAL);
	cr_assert_eq(tw_tensor_init(&t, TW_UINT8, 1000, shape, NULL, bytes,
				    NULL),
		     TW_EINVAL);
}

Test(init, bad_arguments)
{
	int64_t shape[2] = {2, 3};
	float data[6];
	tw_tensor t, before;
	memset(&t, 0xA5, sizeof(t));
	before = t;

	cr_assert_eq(tw_tensor_init(NULL, TW_FLOAT32, 2, shape, NULL, data,
				    NULL),
		     TW_EINVAL);
	cr_assert_eq(tw_tensor_init(&t, TW_DTYPE_COUNT_, 2, shape, NULL, data,
				    NULL),
		     TW_EINVAL);
	cr_assert_eq(tw_tensor_init(&t, (tw_dtype)-1, 2, shape, NULL, data,
				    NULL),
		     TW_EINVAL);
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 2, NULL, NULL, data, NULL),
		     TW_EINVAL);
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 2, shape, NULL, NULL, NULL),
		     TW_EINVAL, "bytes to address but no address");
	cr_assert_eq(tw_tensor_alloc(NULL, TW_FLOAT32, 2, shape), TW_EINVAL);
	cr_assert_eq(tw_tensor_alloc(&t, TW_FLOAT32, 2, NULL), TW_EINVAL);

	int64_t neg_shape[2] = {2, -1};
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 2, neg_shape, NULL, data,
				    NULL),
		     TW_EINVAL);
	cr_assert_eq(tw_tensor_alloc(&t, TW_FLOAT32, 2, neg_shape), TW_EINVAL);
	int64_t neg_strides[2] = {3, -1};
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 2, shape, neg_strides, data,
				    NULL),
		     TW_EINVAL);
	int64_t neg_strides0[2] = {-3, 1};
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 2, shape, neg_strides0,
				    data, NULL),
		     TW_EINVAL);

	cr_assert_eq(memcmp(&t, &before, sizeof(t)), 0,
		     "failed init leaves t untouched");
}

Test(init, overflow_rejected)
{
	uint8_t data[16];
	tw_tensor t;

	int64_t numel_ovf[2] = {INT64_MAX, 2};
	cr_assert_eq(tw_tensor_init(&t, TW_UINT8, 2, numel_ovf, NULL, data,
				    NULL),
		     TW_EOVERFLOW);
	cr_assert_eq(tw_tensor_alloc(&t, TW_UINT8, 2, numel_ovf), TW_EOVERFLOW);

	int64_t sq[2] = {INT64_C(1) << 32, INT64_C(1) << 31};
	cr_assert_eq(tw_tensor_init(&t, TW_UINT8, 2, sq, NULL, data, NULL),
		     TW_EOVERFLOW);

	/* numel fits, numel * element size does not. */
	int64_t bytes_ovf[1] = {INT64_MAX / 4};
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT64, 1, bytes_ovf, NULL, data,
				    NULL),
		     TW_EOVERFLOW);

	/* Small numel, but the strides reach past INT64_MAX bytes. */
	int64_t shape2[2] = {2, 2};
	int64_t far[2] = {INT64_MAX, 1};
	cr_assert_eq(tw_tensor_init(&t, TW_UINT8, 2, shape2, far, data, NULL),
		     TW_EOVERFLOW);
	int64_t far_bytes[2] = {INT64_MAX / 2, 1};
	cr_assert_eq(tw_tensor_init(&t, TW_INT32, 2, shape2, far_bytes, data,
				    NULL),
		     TW_EOVERFLOW);
	int64_t sum_ovf[2] = {INT64_MAX / 2 + 1, INT64_MAX / 2 + 1};
	cr_assert_eq(tw_tensor_init(&t, TW_UINT8, 2, shape2, sum_ovf, data,
				    NULL),
		     TW_EOVERFLOW);

	/* An empty tensor whose other dims multiply past int64 is refused
	 * too: its contiguous strides would not be representable. */
	int64_t empty_ovf[3] = {INT64_MAX, 4, 0};
	cr_assert_eq(tw_tensor_init(&t, TW_UINT8, 3, empty_ovf, NULL, NULL,
				    NULL),
		     TW_EOVERFLOW);

	/* A broadcast view of a huge shape spans one element: fine. */
	int64_t big[1] = {INT64_MAX / 8};
	int64_t zero[1] = {0};
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT64, 1, big, zero, data, NULL),
		     TW_OK);
	size_t span;
	cr_assert_eq(tw_tensor_span(&t, &span), TW_OK);
	cr_assert_eq(span, 8);
	tw_tensor_release(&t);
}

Test(init, hand_filled_struct_revalidated)
{
	tw_tensor t;
	make_iota_2x3(&t);
	tw_tensor bad = t;
	int64_t numel;
	size_t n;

	bad.ndim = 9;
	cr_assert_eq(tw_tensor_numel(&bad, &numel), TW_EINVAL);
	cr_assert_not(tw_tensor_is_contiguous(&bad));
	bad = t;
	bad.shape[0] = -2;
	cr_assert_eq(tw_tensor_nbytes(&bad, &n), TW_EINVAL);
	bad = t;
	bad.dtype = 77;
	cr_assert_eq(tw_tensor_span(&bad, &n), TW_EINVAL);
	cr_assert_not(tw_tensor_equal(&bad, &t));
	bad = t;
	bad.shape[0] = INT64_MAX;
	cr_assert_eq(tw_tensor_numel(&bad, &numel), TW_EOVERFLOW);
	tw_tensor out;
	cr_assert_eq(tw_tensor_contiguous(&out, &bad), TW_EOVERFLOW);

	cr_assert_eq(tw_tensor_numel(NULL, &numel), TW_EINVAL);
	cr_assert_eq(tw_tensor_numel(&t, NULL), TW_EINVAL);
	cr_assert_eq(tw_tensor_nbytes(&t, NULL), TW_EINVAL);
	cr_assert_eq(tw_tensor_span(&t, NULL), TW_EINVAL);
	cr_assert_not(tw_tensor_is_contiguous(NULL));
	cr_assert_not(tw_tensor_equal(NULL, &t));
	tw_tensor_release(&t);
}

Test(init, span_inside_buf)
{
	tw_buf *buf;
	cr_assert_eq(tw_buf_alloc(64, &buf), TW_OK);
	uint8_t *base = buf->data;
	tw_tensor t;

	/* 16 float32 fill the buffer exactly. */
	int64_t full[1] = {16};
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 1, full, NULL, base, buf),
		     TW_OK);
	cr_assert_eq(t.buf, buf);
	cr_assert_eq(tw_buf_refcnt(buf), 2, "init takes a reference");
	tw_tensor_release(&t);
	cr_assert_eq(tw_buf_refcnt(buf), 1);

	/* One element too many, or starting one byte late. */
	int64_t over[1] = {17};
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 1, over, NULL, base, buf),
		     TW_EINVAL);
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 1, full, NULL, base + 1,
				    buf),
		     TW_EINVAL);
	/* Before the buffer, and far after it. */
	cr_assert_eq(tw_tensor_init(&t, TW_UINT8, 1, full, NULL, base - 1, buf),
		     TW_EINVAL);
	cr_assert_eq(tw_tensor_init(&t, TW_UINT8, 1, full, NULL, base + 4096,
				    buf),
		     TW_EINVAL);
	cr_assert_eq(tw_buf_refcnt(buf), 1, "failed init takes no reference");

	/* Strided: column 3 of a 4x4 float32 matrix ends exactly at the end. */
	int64_t col[1] = {4};
	int64_t col_stride[1] = {4};
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 1, col, col_stride,
				    base + 12, buf),
		     TW_OK);
	tw_tensor_release(&t);
	/* A stride that walks off the end is caught though numel is small. */
	int64_t long_stride[1] = {5};
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 1, col, long_stride,
				    base + 4, buf),
		     TW_EINVAL);

	/* An empty tensor addresses nothing: the end of buf is a fine place. */
	int64_t none[1] = {0};
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 1, none, NULL, base + 64,
				    buf),
		     TW_OK);
	tw_tensor_release(&t);
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 1, none, NULL, base + 65,
				    buf),
		     TW_EINVAL);

	tw_buf_release(buf);
}

Test(init, user_buffer_freed_after_last_ref)
{
	static float mem[8];
	tw_buf *buf;
	released = 0;
	cr_assert_eq(tw_buf_from_user(mem, sizeof(mem), count_release, NULL,
				      &buf),
		     TW_OK);
	int64_t shape[1] = {8};
	tw_tensor a, b;
	cr_assert_eq(tw_tensor_init(&a, TW_FLOAT32, 1, shape, NULL, mem, buf),
		     TW_OK);
	tw_buf_release(buf); /* the tensor keeps it alive now */
	cr_assert_eq(released, 0);
	tw_tensor_ref(&b, &a);
	cr_assert_eq(b.data, a.data);
	cr_assert_eq(tw_buf_refcnt(buf), 2);
	tw_tensor_release(&a);
	cr_assert_eq(released, 0);
	tw_tensor_release(&b);
	cr_assert_eq(released, 1);
	tw_tensor_release(&b); /* cleared handle: a no-op */
	tw_tensor_release(NULL);
	cr_assert_eq(released, 1);
}

Test(init, ref_edge_cases)
{
	tw_tensor t;
	make_iota_2x3(&t);
	tw_tensor_ref(&t, &t); /* dst == src: now two references */
	cr_assert_eq(tw_buf_refcnt(t.buf), 2);
	tw_buf_release(t.buf);
	tw_tensor z;
	memset(&z, 0xFF, sizeof(z));
	tw_tensor_ref(&z, NULL);
	cr_assert_null(z.buf);
	cr_assert_null(z.data);
	tw_tensor_ref(NULL, &t);
	cr_assert_eq(tw_buf_refcnt(t.buf), 1);
	tw_tensor_release(&t);
}

static tw_tensor view(tw_dtype dt, unsigned ndim, const int64_t *shape,
		      const int64_t *strides, void *data)
{
	tw_tensor t;
	cr_assert_eq(tw_tensor_init(&t, dt, ndim, shape, strides, data, NULL),
		     TW_OK);
	return t;
}

Test(contiguity, rule)
{
	static uint8_t mem[4096];
	tw_tensor t;

	t = view(TW_UINT8, 2, (int64_t[]){2, 3}, (int64_t[]){3, 1}, mem);
	cr_assert(tw_tensor_is_contiguous(&t));
	/* Transposed 3x2 view of a 2x3 matrix. */
	t = view(TW_UINT8, 2, (int64_t[]){3, 2}, (int64_t[]){1, 3}, mem);
	cr_assert_not(tw_tensor_is_contiguous(&t));
	/* Size-1 dims may carry any stride (torch's rule). */
	t = view(TW_UINT8, 2, (int64_t[]){1, 3}, (int64_t[]){99, 1}, mem);
	cr_assert(tw_tensor_is_contiguous(&t));
	t = view(TW_UINT8, 2, (int64_t[]){3, 1}, (int64_t[]){1, 7}, mem);
	cr_assert(tw_tensor_is_contiguous(&t));
	t = view(TW_UINT8, 3, (int64_t[]){2, 1, 3}, (int64_t[]){3, 0, 1}, mem);
	cr_assert(tw_tensor_is_contiguous(&t));
	t = view(TW_UINT8, 2, (int64_t[]){1, 1}, (int64_t[]){5, 5}, mem);
	cr_assert(tw_tensor_is_contiguous(&t));
	/* Padded rows: row stride 4 for 3 columns. */
	t = view(TW_UINT8, 2, (int64_t[]){2, 3}, (int64_t[]){4, 1}, mem);
	cr_assert_not(tw_tensor_is_contiguous(&t));
	/* Broadcast. */
	t = view(TW_UINT8, 1, (int64_t[]){3}, (int64_t[]){0}, mem);
	cr_assert_not(tw_tensor_is_contiguous(&t));
	/* Every other element. */
	t = view(TW_UINT8, 1, (int64_t[]){3}, (int64_t[]){2}, mem);
	cr_assert_not(tw_tensor_is_contiguous(&t));
	/* Empty tensors are contiguous whatever their strides. */
	t = view(TW_UINT8, 2, (int64_t[]){0, 3}, (int64_t[]){1, 9}, mem);
	cr_assert(tw_tensor_is_contiguous(&t));
	/* 0-dim. */
	t = view(TW_UINT8, 0, NULL, NULL, mem);
	cr_assert(tw_tensor_is_contiguous(&t));
}

Test(contiguity, strides_for_shape)
{
	int64_t s[4];
	tw_tensor_contiguous_strides(3, (int64_t[]){2, 3, 4}, s);
	cr_assert_eq(s[0], 12);
	cr_assert_eq(s[1], 4);
	cr_assert_eq(s[2], 1);
	tw_tensor_contiguous_strides(3, (int64_t[]){2, 0, 3}, s);
	cr_assert_eq(s[0], 3);
	cr_assert_eq(s[1], 3);
	cr_assert_eq(s[2], 1);
	s[0] = 42;
	tw_tensor_contiguous_strides(9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1},
				     s);
	cr_assert_eq(s[0], 42, "ndim 9 ignored");
	tw_tensor_contiguous_strides(1, NULL, s);
	tw_tensor_contiguous_strides(1, (int64_t[]){2}, NULL);
	/* Absurd shapes saturate rather than overflow (UBSan watches). */
	tw_tensor_contiguous_strides(3, (int64_t[]){1, INT64_MAX, INT64_MAX},
				     s);
	cr_assert_eq(s[0], INT64_MAX);
	cr_assert_eq(s[1], INT64_MAX);
	cr_assert_eq(s[2], 1);
}

Test(copy, transposed)
{
	tw_tensor m;
	make_iota_2x3(&m);
	tw_tensor tr;
	cr_assert_eq(tw_tensor_init(&tr, TW_INT32, 2, (int64_t[]){3, 2},
				    (int64_t[]){1, 3}, m.data, m.buf),
		     TW_OK);
	cr_assert_not(tw_tensor_is_contiguous(&tr));

	tw_tensor c;
	cr_assert_eq(tw_tensor_contiguous(&c, &tr), TW_OK);
	cr_assert_neq(c.buf, m.buf);
	cr_assert_eq((uintptr_t)c.data % 64, 0);
	cr_assert(tw_tensor_is_contiguous(&c));
	cr_assert_eq(c.shape[0], 3);
	cr_assert_eq(c.shape[1], 2);
	const int32_t want[6] = {0, 3, 1, 4, 2, 5};
	cr_assert_arr_eq(c.data, want, sizeof(want));
	cr_assert(tw_tensor_equal(&c, &tr), "same elements, other strides");
	cr_assert_not(tw_tensor_equal(&c, &m), "other shape");

	cr_assert_eq(tw_tensor_contiguous(&tr, &tr), TW_EINVAL,
		     "dst aliases src");
	cr_assert_eq(tw_tensor_contiguous(NULL, &tr), TW_EINVAL);
	cr_assert_eq(tw_tensor_contiguous(&c, NULL), TW_EINVAL);

	tw_tensor_release(&c);
	tw_tensor_release(&tr);
	tw_tensor_release(&m);
}

Test(copy, broadcast_stride0)
{
	tw_tensor row;
	cr_assert_eq(tw_tensor_alloc(&row, TW_FLOAT64, 1, (int64_t[]){4}),
		     TW_OK);
	double *r = row.data;
	for (int i = 0; i < 4; i++)
		r[i] = 0.5 * i;
	tw_tensor b;
	cr_assert_eq(tw_tensor_init(&b, TW_FLOAT64, 2, (int64_t[]){3, 4},
				    (int64_t[]){0, 1}, row.data, row.buf),
		     TW_OK);
	size_t span;
	cr_assert_eq(tw_tensor_span(&b, &span), TW_OK);
	cr_assert_eq(span, 32);

	tw_tensor c;
	cr_assert_eq(tw_tensor_contiguous(&c, &b), TW_OK);
	const double *p = c.data;
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 4; j++)
			cr_assert_eq(p[i * 4 + j], 0.5 * j);
	cr_assert(tw_tensor_equal(&b, &c));

	/* Column broadcast too: every element of a row is the same. */
	tw_tensor col;
	cr_assert_eq(tw_tensor_init(&col, TW_FLOAT64, 2, (int64_t[]){4, 5},
				    (int64_t[]){1, 0}, row.data, row.buf),
		     TW_OK);
	tw_tensor c2;
	cr_assert_eq(tw_tensor_contiguous(&c2, &col), TW_OK);
	p = c2.data;
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 5; j++)
			cr_assert_eq(p[i * 5 + j], 0.5 * i);

	tw_tensor_release(&c2);
	tw_tensor_release(&col);
	tw_tensor_release(&c);
	tw_tensor_release(&b);
	tw_tensor_release(&row);
}

Test(copy, permuted_3d_every_dtype)
{
	/* A 2x3x4 tensor viewed with dims permuted to 4x2x3: element
	 * [i][j][k] of the view is [j][k][i] of the source. */
	for (unsigned d = 0; d < TW_DTYPE_COUNT_; d++) {
		size_t es = expect_size[d];
		tw_tensor src;
		cr_assert_eq(tw_tensor_alloc(&src, (tw_dtype)d, 3,
					     (int64_t[]){2, 3, 4}),
			     TW_OK);
		uint8_t *s = src.data;
		for (size_t i = 0; i < 24 * es; i++)
			s[i] = (uint8_t)(i * 7 + 1);
		tw_tensor v;
		cr_assert_eq(tw_tensor_init(
				     &v, (tw_dtype)d, 3, (int64_t[]){4, 2, 3},
				     (int64_t[]){1, 12, 4}, src.data, src.buf),
			     TW_OK);
		tw_tensor c;
		cr_assert_eq(tw_tensor_contiguous(&c, &v), TW_OK);
		const uint8_t *o = c.data;
		for (int i = 0; i < 4; i++)
			for (int j = 0; j < 2; j++)
				for (int k = 0; k < 3; k++) {
					size_t so =
						(size_t)(j * 12 + k * 4 + i) *
						es;
					size_t oo =
						(size_t)(i * 6 + j * 3 + k) *
						es;
					cr_assert_arr_eq(o + oo, s + so, es);
				}
		cr_assert(tw_tensor_equal(&c, &v));
		tw_tensor_release(&c);
		tw_tensor_release(&v);
		tw_tensor_release(&src);
	}
}

Test(copy, size1_dim_with_huge_stride)
{
	/* Legal by torch's rule; no byte-stride arithmetic may overflow. */
	static int16_t mem[6] = {1, 2, 3, 4, 5, 6};
	tw_tensor v = view(TW_INT16, 3, (int64_t[]){3, 1, 2},
			   (int64_t[]){1, INT64_MAX, 3}, mem);
	cr_assert_not(tw_tensor_is_contiguous(&v));
	tw_tensor c;
	cr_assert_eq(tw_tensor_contiguous(&c, &v), TW_OK);
	const int16_t want[6] = {1, 4, 2, 5, 3, 6};
	cr_assert_arr_eq(c.data, want, sizeof(want));
	cr_assert(tw_tensor_equal(&c, &v));
	tw_tensor_release(&c);

	tw_tensor last = view(TW_INT16, 2, (int64_t[]){6, 1},
			      (int64_t[]){1, INT64_MAX}, mem);
	cr_assert(tw_tensor_is_contiguous(&last));
	cr_assert_eq(tw_tensor_contiguous(&c, &last), TW_OK);
	cr_assert_arr_eq(c.data, mem, sizeof(mem));
	tw_tensor_release(&c);
}

Test(copy, eight_dims_strided)
{
	/* Every other element along the last dim of a 2^8 x 2 array. */
	tw_tensor src;
	int64_t shape9[8] = {2, 2, 2, 2, 2, 2, 2, 4};
	cr_assert_eq(tw_tensor_alloc(&src, TW_INT32, 8, shape9), TW_OK);
	int32_t *s = src.data;
	for (int i = 0; i < 512; i++)
		s[i] = i;
	int64_t shape[8] = {2, 2, 2, 2, 2, 2, 2, 2};
	int64_t strides[8] = {256, 128, 64, 32, 16, 8, 4, 2};
	tw_tensor v;
	cr_assert_eq(tw_tensor_init(&v, TW_INT32, 8, shape, strides, src.data,
				    src.buf),
		     TW_OK);
	tw_tensor c;
	cr_assert_eq(tw_tensor_contiguous(&c, &v), TW_OK);
	const int32_t *o = c.data;
	for (int i = 0; i < 256; i++)
		cr_assert_eq(o[i], 2 * i);
	tw_tensor_release(&c);
	tw_tensor_release(&v);
	tw_tensor_release(&src);
}

Test(equal, bitwise_elements)
{
	tw_tensor a, b;
	cr_assert_eq(tw_tensor_zeros(&a, TW_FLOAT32, 1, (int64_t[]){3}), TW_OK);
	cr_assert_eq(tw_tensor_zeros(&b, TW_FLOAT32, 1, (int64_t[]){3}), TW_OK);
	cr_assert(tw_tensor_equal(&a, &b));
	cr_assert(tw_tensor_equal(&a, &a));

	((float *)b.data)[2] = -0.0f;
	cr_assert_not(tw_tensor_equal(&a, &b), "-0.0 and 0.0 differ bitwise");
	((float *)a.data)[2] = __builtin_nanf("");
	((float *)b.data)[2] = __builtin_nanf("");
	cr_assert(tw_tensor_equal(&a, &b), "identical NaN bits are equal");
	((float *)b.data)[1] = 1.0f;
	cr_assert_not(tw_tensor_equal(&a, &b));

	tw_tensor i32;
	cr_assert_eq(tw_tensor_zeros(&i32, TW_INT32, 1, (int64_t[]){3}), TW_OK);
	tw_tensor z;
	cr_assert_eq(tw_tensor_zeros(&z, TW_FLOAT32, 1, (int64_t[]){3}), TW_OK);
	cr_assert_not(tw_tensor_equal(&z, &i32), "dtype differs");
	tw_tensor z2;
	cr_assert_eq(tw_tensor_zeros(&z2, TW_FLOAT32, 2, (int64_t[]){3, 1}),
		     TW_OK);
	cr_assert_not(tw_tensor_equal(&z, &z2), "ndim differs");

	/* Empty tensors of equal shape are equal. */
	tw_tensor e1, e2;
	cr_assert_eq(tw_tensor_alloc(&e1, TW_INT8, 2, (int64_t[]){0, 5}),
		     TW_OK);
	cr_assert_eq(tw_tensor_alloc(&e2, TW_INT8, 2, (int64_t[]){0, 5}),
		     TW_OK);
	cr_assert(tw_tensor_equal(&e1, &e2));
	tw_tensor e3;
	cr_assert_eq(tw_tensor_alloc(&e3, TW_INT8, 2, (int64_t[]){5, 0}),
		     TW_OK);
	cr_assert_not(tw_tensor_equal(&e1, &e3));

	tw_tensor *all[] = {&a, &b, &i32, &z, &z2, &e1, &e2, &e3};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		tw_tensor_release(all[i]);
}

Test(equal, strided_both_sides)
{
	/* Two different strided layouts of the same logical 3x2 matrix. */
	static const int32_t rowmajor[6] = {0, 3, 1, 4, 2, 5};
	static const int32_t colmajor[6] = {0, 1, 2, 3, 4, 5};
	static int32_t padded[12] = {0, 3, 9, 1, 4, 9, 2, 5, 9};
	tw_tensor a = view(TW_INT32, 2, (int64_t[]){3, 2}, (int64_t[]){2, 1},
			   (void *)rowmajor);
	tw_tensor b = view(TW_INT32, 2, (int64_t[]){3, 2}, (int64_t[]){1, 3},
			   (void *)colmajor);
	tw_tensor c = view(TW_INT32, 2, (int64_t[]){3, 2}, (int64_t[]){3, 1},
			   padded);
	cr_assert(tw_tensor_equal(&a, &b));
	cr_assert(tw_tensor_equal(&b, &c));
	padded[7] = 6;
	cr_assert_not(tw_tensor_equal(&b, &c));
}

/* Each refusal says what was wrong (tw_errmsg). */
Test(tensor, refusals_say_why)
{
	tw_tensor t;
	int64_t shape[3] = {2, -3, 4};
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 3, shape, NULL, NULL, NULL),
		     TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "tensor shape[1] is negative (-3)");
	int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
	cr_assert_eq(tw_tensor_alloc(&t, TW_FLOAT32, 9, nine), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "tensor of 9 dims, over TW_TENSOR_MAX_DIMS (8)");
	int64_t ok[2] = {2, 2};
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 2, ok, NULL, NULL, NULL),
		     TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "tensor of 4 elements has no data (NULL)");
	int64_t huge[2] = {INT64_MAX / 2, 4};
	cr_assert_eq(tw_tensor_alloc(&t, TW_FLOAT32, 2, huge), TW_EOVERFLOW);
	cr_assert_str_eq(tw_errmsg(TW_EOVERFLOW),
			 "tensor element count overflows int64");
	tw_dtype d;
	cr_assert_eq(tw_dtype_from_name("float128", &d), TW_EINVAL);
	cr_assert(strncmp(tw_errmsg(TW_EINVAL),
			  "unknown dtype 'float128' "
			  "(bool, ",
			  30) == 0,
		  "%s", tw_errmsg(TW_EINVAL));
	size_t n;
	cr_assert_eq(tw_tensor_span(NULL, &n), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), "tensor is NULL");
}
