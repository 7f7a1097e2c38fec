/* Matrix products: mm and matmul (dot, mv, batched with broadcasting) over a cache-blocked packed kernel. */
#include <stdlib.h>
#include <string.h>

#include "dataplane/err.h"
#include "rpc/ops/ops.h"

/*
 * The blocked product follows the BLIS/GotoBLAS loop nest: for a KC x NC
 * block of B packed into NR-wide column panels (kept in L2/L3) and an
 * MC x KC block of A packed into MR-tall row panels (kept in L2), a
 * register-blocked micro-kernel computes each MR x NR tile of C from one A
 * panel and one B panel (the B panel, KC x NR, stays in L1). Packing also
 * absorbs any strides, so transposed or broadcast operands cost nothing
 * extra. The micro-kernel accumulates in 2 x MR vectors of 32 bytes (GCC
 * vector extensions: plain C the compiler maps onto SSE2, or AVX2 in the
 * clone picked at run time).
 *
 * Integer products use unsigned arithmetic (the same bits as torch's
 * wrapping int32/int64 products, without signed-overflow UB).
 */
#define MR 6
#define KC 256
#define MC 96   /* multiple of MR */
#define NC 1024 /* multiple of every NR */

typedef float v8f __attribute__((vector_size(32)));
typedef double v4d __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef uint64_t v4u __attribute__((vector_size(32)));

static inline int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* clang-format off */
#define GEMM_DEFINE(SUF, T, VT, VL)                                           \
	enum { NR_##SUF = 2 * (VL) };                                         \
                                                                              \
	/* B[k][j] for k < kc, j < nc into panels of NR columns, zero-padded. */ \
	static void pack_b_##SUF(T *restrict dst, const T *b, int64_t rs,     \
				 int64_t cs, int64_t kc, int64_t nc)          \
	{                                                                     \
		for (int64_t j0 = 0; j0 < nc; j0 += NR_##SUF) {               \
			int64_t w = min64(NR_##SUF, nc - j0);                 \
			for (int64_t k = 0; k < kc; k++) {                    \
				const T *src = b + k * rs + j0 * cs;          \
				if (cs == 1 && w == NR_##SUF) {               \
					memcpy(dst, src, sizeof(T) * NR_##SUF); \
				} else {                                      \
					int64_t j = 0;                        \
					for (; j < w; j++)                    \
						dst[j] = src[j * cs];         \
					for (; j < NR_##SUF; j++)             \
						dst[j] = 0;                   \
				}                                             \
				dst += NR_##SUF;                              \
			}                                                     \
		}                                                             \
	}                                                                     \
                                                                              \
	/* A[i][k] for i < mc, k < kc into panels of MR rows, zero-padded. */ \
	static void pack_a_##SUF(T *restrict dst, const T *a, int64_t rs,     \
				 int64_t cs, int64_t mc, int64_t kc)          \
	{                                                                     \
		for (int64_t i0 = 0; i0 < mc; i0 += MR) {                     \
			int64_t h = min64(MR, mc - i0);                       \
			for (int64_t k = 0; k < kc; k++) {                    \
				const T *src = a + i0 * rs + k * cs;          \
				int64_t i = 0;                                \
				for (; i < h; i++)                            \
					dst[i] = src[i * rs];                 \
				for (; i < MR; i++)                           \
					dst[i] = 0;                           \
				dst += MR;                                    \
			}                                                     \
		}                                                             \
	}                                                                     \
                                                                              \
	/* C[0..m)[0..n) += Apanel * Bpanel over kc. */                       \
	static inline __attribute__((always_inline)) void ukr_##SUF(          \
		int64_t kc, const T *restrict ap, const T *restrict bp,       \
		T *restrict c, int64_t ldc, int64_t m, int64_t n)             \
	{                                                                     \
		VT c00 = { 0 }, c01 = { 0 }, c10 = { 0 }, c11 = { 0 };        \
		VT c20 = { 0 }, c21 = { 0 }, c30 = { 0 }, c31 = { 0 };        \
		VT c40 = { 0 }, c41 = { 0 }, c50 = { 0 }, c51 = { 0 };        \
		for (int64_t k = 0; k < kc; k++) {                            \
			VT b0, b1;                                            \
			memcpy(&b0, bp, sizeof(VT));                          \
			memcpy(&b1, bp + (VL), sizeof(VT));                   \
			T a;                                                  \
			a = ap[0]; c00 += a * b0; c01 += a * b1;              \
			a = ap[1]; c10 += a * b0; c11 += a * b1;              \
			a = ap[2]; c20 += a * b0; c21 += a * b1;              \
			a = ap[3]; c30 += a * b0; c31 += a * b1;              \
			a = ap[4]; c40 += a * b0; c41 += a * b1;              \
			a = ap[5]; c50 += a * b0; c51 += a * b1;              \
			ap += MR;                                             \
			bp += NR_##SUF;                                       \
		}                                                             \
		VT acc[MR][2] = { { c00, c01 }, { c10, c11 }, { c20, c21 },   \
				  { c30, c31 }, { c40, c41 }, { c50, c51 } }; \
		if (m == MR && n == NR_##SUF) {                               \
			for (int i = 0; i < MR; i++) {                        \
				VT r0, r1;                                    \
				T *row = c + i * ldc;                         \
				memcpy(&r0, row, sizeof(VT));                 \
				memcpy(&r1, row + (VL), sizeof(VT));          \
				r0 += acc[i][0];                              \
				r1 += acc[i][1];                              \
				memcpy(row, &r0, sizeof(VT));                 \
				memcpy(row + (VL), &r1, sizeof(VT));          \
			}                                                     \
			return;                                               \
		}                                                             \
		T tile[MR][NR_##SUF];                                         \
		memcpy(tile, acc, sizeof(tile));                              \
		for (int64_t i = 0; i < m; i++)                               \
			for (int64_t j = 0; j < n; j++)                       \
				c[i * ldc + j] += tile[i][j];                 \
	}                                                                     \
                                                                              \
	/* C (m x n, row stride ldc, zeroed) += A (m x k) * B (k x n). */     \
	TW_OPS_CLONES static void gemm_##SUF(                                 \
		int64_t m, int64_t n, int64_t k, const T *A, int64_t ars,     \
		int64_t acs, const T *B, int64_t brs, int64_t bcs, T *C,      \
		int64_t ldc, T *apack, T *bpack)                              \
	{                                                                     \
		for (int64_t jc = 0; jc < n; jc += NC) {                      \
			int64_t nc = min64(NC, n - jc);                       \
			for (int64_t pc = 0; pc < k; pc += KC) {              \
				int64_t kc = min64(KC, k - pc);               \
				pack_b_##SUF(bpack, B + pc * brs + jc * bcs,  \
					     brs, bcs, kc, nc);               \
				for (int64_t ic = 0; ic < m; ic += MC) {      \
					int64_t mc = min64(MC, m - ic);       \
					pack_a_##SUF(apack,                   \
						     A + ic * ars + pc * acs, \
						     ars, acs, mc, kc);       \
					for (int64_t jr = 0; jr < nc;         \
					     jr += NR_##SUF) {                \
						const T *bp = bpack + jr * kc; \
						for (int64_t ir = 0; ir < mc; \
						     ir += MR) {              \
							ukr_##SUF(kc, apack + ir * kc, bp, \
								  C + (ic + ir) * ldc + jc + jr, \
								  ldc,        \
								  min64(MR, mc - ir), \
								  min64(NR_##SUF, nc - jr)); \
						}                             \
					}                                     \
				}                                             \
			}                                                     \
		}                                                             \
	}                                                                     \
                                                                              \
	/* sum_k a[k] * b[k], 8 partial sums. */                              \
	static T dot_##SUF(int64_t k, const T *a, int64_t sa, const T *b,     \
			   int64_t sb)                                        \
	{                                                                     \
		T l[8] = { 0 };                                               \
		T t = 0;                                                      \
		int64_t i = 0;                                                \
		if (sa == 1 && sb == 1) {                                     \
			for (; i + 8 <= k; i += 8)                            \
				for (int j = 0; j < 8; j++)                   \
					l[j] += a[i + j] * b[i + j];          \
		}                                                             \
		for (; i < k; i++)                                            \
			t += a[i * sa] * b[i * sb];                           \
		return t + ((l[0] + l[1]) + (l[2] + l[3])) +                  \
		       ((l[4] + l[5]) + (l[6] + l[7]));                       \
	}                                                                     \
                                                                              \
	/* c[j] += av * b[j * bcs] */                                         \
	static void axpy_##SUF(T *restrict c, const T av, const T *restrict b, \
			       int64_t bcs, int64_t n)                        \
	{                                                                     \
		if (bcs == 1)                                                 \
			TW_OPS_VLOOP(n, j, { c[j] += av * b[j]; });           \
		else                                                          \
			for (int64_t j = 0; j < n; j++)                       \
				c[j] += av * b[j * bcs];                      \
	}                                                                     \
                                                                              \
	/* One matrix product; the vector shapes skip packing. */             \
	static void product_##SUF(int64_t m, int64_t n, int64_t k,            \
				  const void *A_, int64_t ars, int64_t acs,   \
				  const void *B_, int64_t brs, int64_t bcs,   \
				  void *C_, int64_t ldc, void *apack,         \
				  void *bpack)                                \
	{                                                                     \
		const T *A = A_, *B = B_;                                     \
		T *C = C_;                                                    \
		if (m == 0 || n == 0 || k == 0)                               \
			return;                                               \
		if (n == 1) {                                                 \
			for (int64_t i = 0; i < m; i++)                       \
				C[i * ldc] = dot_##SUF(k, A + i * ars, acs, B, brs); \
			return;                                               \
		}                                                             \
		if (m == 1) {                                                 \
			for (int64_t p = 0; p < k; p++)                       \
				axpy_##SUF(C, A[p * acs], B + p * brs, bcs, n); \
			return;                                               \
		}                                                             \
		gemm_##SUF(m, n, k, A, ars, acs, B, brs, bcs, C, ldc, apack,  \
			   bpack);                                            \
	}
/* clang-format on */

GEMM_DEFINE(f32, float, v8f, 8)
GEMM_DEFINE(f64, double, v4d, 4)
GEMM_DEFINE(u32, uint32_t, v8u, 8)
GEMM_DEFINE(u64, uint64_t, v4u, 4)

typedef void (*product_fn)(int64_t, int64_t, int64_t, const void *, int64_t,
			   int64_t, const void *, int64_t, int64_t, void *,
			   int64_t, void *, void *);

static product_fn product_for(tw_dtype dt)
{
	switch (dt) {
	case TW_FLOAT32:
		return product_f32;
	case TW_FLOAT64:
		return product_f64;
	case TW_INT32:
		return product_u32;
	default:
		return product_u64;
	}
}

/* c10's dtype names in the mm messages. */
static const char *cxx_name(tw_dtype dt)
{
	switch (dt) {
	case TW_BOOL:
		return "bool";
	case TW_INT32:
		return "int";
	case TW_INT64:
		return "long int";
	case TW_FLOAT32:
		return "float";
	case TW_FLOAT64:
		return "double";
	default:
		return tw_dtype_name(dt);
	}
}

/* A matrix operand: shape (rows, cols) with element strides, plus batch
 * dims (broadcast to the product's batch shape later). */
struct mat {
	int64_t rows, cols, rs, cs;
	unsigned nbatch;
	int64_t bshape[TW_TENSOR_MAX_DIMS];
	int64_t bstride[TW_TENSOR_MAX_DIMS];
};

static void mat_of(const tw_tensor *t, bool vec_is_row, struct mat *m)
{
	memset(m, 0, sizeof(*m));
	unsigned nd = t->ndim;
	if (nd == 1) {
		/* 1-D: a row vector (1 x k) on the left, a column (k x 1) on
		 * the right, as matmul's unsqueeze. */
		if (vec_is_row) {
			m->rows = 1;
			m->cols = t->shape[0];
			m->cs = t->strides[0];
		} else {
			m->rows = t->shape[0];
			m->cols = 1;
			m->rs = t->strides[0];
		}
		return;
	}
	m->rows = t->shape[nd - 2];
	m->cols = t->shape[nd - 1];
	m->rs = t->strides[nd - 2];
	m->cs = t->strides[nd - 1];
	m->nbatch = nd - 2;
	for (unsigned d = 0; d + 2 < nd; d++) {
		m->bshape[d] = t->shape[d];
		m->bstride[d] = t->strides[d];
	}
}

/* Batch strides of m broadcast to (nb, bshape), in elements. */
static void batch_strides(const struct mat *m, unsigned nb,
			  const int64_t *bshape, int64_t *out)
{
	unsigned off = nb - m->nbatch;
	for (unsigned d = 0; d < nb; d++) {
		if (d < off || m->bshape[d - off] == 1 || bshape[d] == 1)
			out[d] = 0;
		else
			out[d] = m->bstride[d - off];
	}
}

/*
 * The product of a (a_vec: 1-D) and b over broadcast batch dims, into a
 * fresh tensor whose shape drops the dims 1-D operands gained.
 */
static tw_status batched(const tw_tensor *a, const tw_tensor *b, tw_tensor *out)
{
	struct mat ma, mb;
	mat_of(a, true, &ma);
	mat_of(b, false, &mb);
	int64_t m = ma.rows, k = ma.cols, n = mb.cols;

	unsigned nb;
	int64_t bshape[TW_TENSOR_MAX_DIMS];
	tw_status st = tw_ops_broadcast_shapes(ma.nbatch, ma.bshape, mb.nbatch,
					       mb.bshape, &nb, bshape);
	if (st != TW_OK)
		return st;
	int64_t batch = 1;
	for (unsigned d = 0; d < nb; d++)
		if (__builtin_mul_overflow(batch, bshape[d], &batch))
			return tw_fail_static(TW_EOVERFLOW,
					      "matmul(): batch size overflows");

	if (mb.rows != k) {
		if (a->ndim == 2 && b->ndim == 1)
			return tw_fail(
				TW_ERUNTIME,
				"size mismatch, got input (%lld), mat (%lldx%lld), vec (%lld)",
				(long long)m, (long long)m, (long long)k,
				(long long)mb.rows);
		if (nb == 0)
			return tw_fail(
				TW_ERUNTIME,
				"mat1 and mat2 shapes cannot be multiplied (%lldx%lld and %lldx%lld)",
				(long long)m, (long long)k, (long long)mb.rows,
				(long long)n);
		return tw_fail(
			TW_ERUNTIME,
			"Expected size for first two dimensions of batch2 tensor to be: [%lld, %lld] but got: [%lld, %lld].",
			(long long)batch, (long long)k, (long long)batch,
			(long long)mb.rows);
	}

	int64_t oshape[TW_TENSOR_MAX_DIMS];
	unsigned ond = nb;
	memcpy(oshape, bshape, nb * sizeof(int64_t));
	if (a->ndim >= 2)
		oshape[ond++] = m;
	if (b->ndim >= 2)
		oshape[ond++] = n;
	if (ond > TW_TENSOR_MAX_DIMS)
		return tw_fail_static(TW_EINVAL, "too many dims");
	/* The work is the multiply-adds (saturating), before the result. */
	uint64_t work = 1;
	const int64_t dims[4] = {batch, m, k, n};
	for (int i = 0; i < 4; i++)
		if (__builtin_mul_overflow(work, (uint64_t)dims[i], &work))
			work = UINT64_MAX;
	st = tw_ops_limit_work(a->ndim >= 2 && b->ndim >= 2 ? "matmul" : "dot",
			       work);
	if (st != TW_OK)
		return st;
	tw_tensor o;
	st = tw_ops_alloc("matmul", &o, (tw_dtype)a->dtype, ond, oshape, true);
	if (st != TW_OK)
		return st;
	if (batch == 0 || m == 0 || n == 0 || k == 0) {
		*out = o;
		return TW_OK;
	}

	int64_t sa[TW_TENSOR_MAX_DIMS], sb[TW_TENSOR_MAX_DIMS];
	batch_strides(&ma, nb, bshape, sa);
	batch_strides(&mb, nb, bshape, sb);

	/*
	 * When B is the same matrix for every batch and A's batch dims step
	 * exactly like more rows, the whole product is one tall matrix
	 * product (torch folds the same way): B is packed once.
	 */
	int64_t expect;
	bool fold = nb > 0 && !__builtin_mul_overflow(ma.rs, m, &expect);
	for (unsigned d = nb; fold && d-- > 0;) {
		if (bshape[d] == 1)
			continue;
		if (sb[d] != 0 || sa[d] != expect ||
		    __builtin_mul_overflow(expect, bshape[d], &expect))
			fold = false;
	}
	int64_t rows = m, nmats = batch;
	if (fold) {
		rows = m * batch;
		nmats = 1;
	}

	size_t es = tw_dtype_size((tw_dtype)a->dtype);
	void *apack = NULL, *bpack = NULL;
	if (rows > 1 && n > 1) {
		int64_t ncp = min64(NC, (n + 15) / 16 * 16);
		apack = aligned_alloc(64, (size_t)MC * KC * es);
		bpack = aligned_alloc(64, (size_t)ncp * KC * es);
		if (apack == NULL || bpack == NULL) {
			free(apack);
			free(bpack);
			tw_tensor_release(&o);
			return tw_fail_static(TW_ENOMEM,
					      "cannot allocate pack buffers");
		}
	}

	product_fn fn = product_for((tw_dtype)a->dtype);
	const char *pa = a->data, *pb = b->data;
	char *pc = o.data;
	int64_t idx[TW_TENSOR_MAX_DIMS] = {0};
	int64_t offa = 0, offb = 0;
	for (int64_t i = 0; i < nmats; i++) {
		fn(rows, n, k, pa + offa * (int64_t)es, ma.rs, ma.cs,
		   pb + offb * (int64_t)es, mb.rs, mb.cs,
		   pc + i * m * n * (int64_t)es, n, apack, bpack);
		for (unsigned d = nb; d-- > 0;) {
			offa += sa[d];
			offb += sb[d];
			if (++idx[d] < bshape[d])
				break;
			offa -= sa[d] * bshape[d];
			offb -= sb[d] * bshape[d];
			idx[d] = 0;
		}
	}
	free(apack);
	free(bpack);
	*out = o;
	return TW_OK;
}

static tw_status check_pair(const char *name, const tw_tensor *a,
			    const tw_tensor *b, tw_tensor *out)
{
	tw_status st;
	if ((st = tw_ops_check(name, a, true, NULL)) != TW_OK ||
	    (st = tw_ops_check(name, b, true, NULL)) != TW_OK)
		return st;
	if (out == NULL)
		return tw_fail(TW_EINVAL, "%s(): NULL out", name);
	return TW_OK;
}

static tw_status check_dtypes(const tw_tensor *a, const tw_tensor *b)
{
	if (a->dtype != b->dtype)
		return tw_fail(
			TW_ERUNTIME,
			"expected mat1 and mat2 to have the same dtype, but got: %s != %s",
			cxx_name((tw_dtype)a->dtype),
			cxx_name((tw_dtype)b->dtype));
	if (a->dtype == TW_BOOL)
		return tw_fail_static(
			TW_ETYPE,
			"\"addmm_impl_cpu_\" not implemented for 'Bool'");
	return TW_OK;
}

tw_status tw_op_mm(const tw_tensor *a, const tw_tensor *b, tw_tensor *out)
{
	tw_status st = check_pair("mm", a, b, out);
	if (st != TW_OK)
		return st;
	if (a->ndim != 2)
		return tw_fail_static(TW_ERUNTIME, "self must be a matrix");
	if (b->ndim != 2)
		return tw_fail_static(TW_ERUNTIME, "mat2 must be a matrix");
	if (a->shape[1] != b->shape[0])
		return tw_fail(
			TW_ERUNTIME,
			"mat1 and mat2 shapes cannot be multiplied (%lldx%lld and %lldx%lld)",
			(long long)a->shape[0], (long long)a->shape[1],
			(long long)b->shape[0], (long long)b->shape[1]);
	st = check_dtypes(a, b);
	if (st != TW_OK)
		return st;
	return batched(a, b, out);
}

tw_status tw_op_matmul(const tw_tensor *a, const tw_tensor *b, tw_tensor *out)
{
	tw_status st = check_pair("matmul", a, b, out);
	if (st != TW_OK)
		return st;
	if (a->ndim == 0 || b->ndim == 0)
		return tw_fail(
			TW_ERUNTIME,
			"both arguments to matmul need to be at least 1D, but they are %uD and %uD",
			a->ndim, b->ndim);
	if (a->ndim == 1 && b->ndim == 1) {
		if (a->dtype != b->dtype)
			return tw_fail(
				TW_ERUNTIME,
				"dot : expected both vectors to have same dtype, but found %s and %s",
				tw_ops_torch_dtype_name((tw_dtype)a->dtype),
				tw_ops_torch_dtype_name((tw_dtype)b->dtype));
		if (a->dtype == TW_BOOL)
			return tw_fail_static(
				TW_ETYPE, "\"dot\" not implemented for 'Bool'");
		if (a->shape[0] != b->shape[0])
			return tw_fail(
				TW_ERUNTIME,
				"inconsistent tensor size, expected tensor [%lld] and src [%lld] to have the same number of elements, but got %lld and %lld elements respectively",
				(long long)a->shape[0], (long long)b->shape[0],
				(long long)a->shape[0], (long long)b->shape[0]);
		return batched(a, b, out);
	}
	st = check_dtypes(a, b);
	if (st != TW_OK)
		return st;
	return batched(a, b, out);
}
