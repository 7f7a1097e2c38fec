/* Factories: zeros, ones, full, arange, and seeded rand/randn on a counter-based generator. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dataplane/err.h"
#include "rpc/ops/ops.h"

static tw_status check_shape(const char *name, unsigned ndim,
			     const int64_t *shape, tw_tensor *out)
{
	if (out == NULL || (ndim > 0 && shape == NULL))
		return tw_fail(TW_EINVAL, "%s(): bad arguments", name);
	if (ndim > TW_TENSOR_MAX_DIMS)
		return tw_fail(TW_EINVAL, "%s(): at most %d dims", name,
			       TW_TENSOR_MAX_DIMS);
	for (unsigned d = 0; d < ndim; d++) {
		if (shape[d] < 0) {
			char buf[200];
			tw_ops_format_shape(buf, sizeof(buf), ndim, shape);
			return tw_fail(
				TW_ERUNTIME,
				"Trying to create tensor with negative dimension %lld: %s",
				(long long)shape[d], buf);
		}
	}
	return TW_OK;
}

static tw_status new_tensor(const char *name, tw_dtype dt, unsigned ndim,
			    const int64_t *shape, bool zero, tw_tensor *out,
			    int64_t *numel)
{
	tw_status st = check_shape(name, ndim, shape, out);
	if (st != TW_OK)
		return st;
	if (tw_dtype_size(dt) == 0)
		return tw_fail(TW_EINVAL, "%s(): bad dtype", name);
	st = tw_ops_limit_new(name, dt, ndim, shape);
	if (st != TW_OK)
		return st;
	st = zero ? tw_tensor_zeros(out, dt, ndim, shape)
		  : tw_tensor_alloc(out, dt, ndim, shape);
	if (st != TW_OK)
		return tw_fail(st, "%s(): cannot allocate the tensor", name);
	if (numel != NULL)
		tw_tensor_numel(out, numel);
	return TW_OK;
}

static void fill16(uint16_t *restrict p, uint16_t v, int64_t n)
{
	TW_OPS_VLOOP(n, k, { p[k] = v; });
}

static void fill32(uint32_t *restrict p, uint32_t v, int64_t n)
{
	TW_OPS_VLOOP(n, k, { p[k] = v; });
}

static void fill64(uint64_t *restrict p, uint64_t v, int64_t n)
{
	TW_OPS_VLOOP(n, k, { p[k] = v; });
}

/* Fill n elements of size es with the pattern at elem. */
static void fill_elems(void *data, int64_t n, const void *elem, size_t es)
{
	switch (es) {
	case 1:
		memset(data, *(const uint8_t *)elem, (size_t)n);
		break;
	case 2: {
		uint16_t v;
		memcpy(&v, elem, 2);
		fill16(data, v, n);
		break;
	}
	case 4: {
		uint32_t v;
		memcpy(&v, elem, 4);
		fill32(data, v, n);
		break;
	}
	default: {
		uint64_t v;
		memcpy(&v, elem, 8);
		fill64(data, v, n);
		break;
	}
	}
}

tw_status tw_op_zeros(unsigned ndim, const int64_t *shape,
		      const tw_dtype *dtype, tw_tensor *out)
{
	tw_dtype dt = dtype != NULL ? *dtype : TW_FLOAT32;
	return new_tensor("zeros", dt, ndim, shape, true, out, NULL);
}

tw_status tw_op_ones(unsigned ndim, const int64_t *shape, const tw_dtype *dtype,
		     tw_tensor *out)
{
	tw_dtype dt = dtype != NULL ? *dtype : TW_FLOAT32;
	int64_t n;
	tw_status st = new_tensor("ones", dt, ndim, shape, false, out, &n);
	if (st != TW_OK)
		return st;
	/* The bits of 1 in every dtype (half: 0x3c00, bfloat16: 0x3f80). */
	uint64_t one = 0;
	switch (dt) {
	case TW_FLOAT16: {
		uint16_t h = 0x3c00;
		memcpy(&one, &h, 2);
		break;
	}
	case TW_BFLOAT16: {
		uint16_t h = 0x3f80;
		memcpy(&one, &h, 2);
		break;
	}
	case TW_FLOAT32: {
		float f = 1.0f;
		memcpy(&one, &f, 4);
		break;
	}
	case TW_FLOAT64: {
		double f = 1.0;
		memcpy(&one, &f, 8);
		break;
	}
	default: {
		/* Little-endian integers: the low byte is 1. */
		uint8_t b[8] = {1};
		memcpy(&one, b, 8);
		break;
	}
	}
	fill_elems(out->data, n, &one, tw_dtype_size(dt));
	return TW_OK;
}

tw_status tw_op_full(unsigned ndim, const int64_t *shape, const tw_scalar *fill,
		     const tw_dtype *dtype, tw_tensor *out)
{
	if (fill == NULL)
		return tw_fail_static(TW_EINVAL, "full(): NULL fill");
	tw_dtype dt;
	if (dtype != NULL)
		dt = *dtype;
	else
		dt = fill->kind == TW_SCALAR_BOOL  ? TW_BOOL
		     : fill->kind == TW_SCALAR_INT ? TW_INT64
						   : TW_FLOAT32;
	if (!tw_ops_dtype_supported(dt))
		return tw_fail(TW_ETYPE,
			       "\"fill_cpu\" not implemented for '%s'",
			       tw_ops_torch_dtype_name(dt));
	uint64_t v = 0;
	tw_status st = check_shape("full", ndim, shape, out);
	if (st != TW_OK)
		return st;
	st = tw_ops_scalar_to(fill, dt, &v);
	if (st != TW_OK)
		return st;
	int64_t n;
	st = new_tensor("full", dt, ndim, shape, false, out, &n);
	if (st != TW_OK)
		return st;
	fill_elems(out->data, n, &v, tw_dtype_size(dt));
	return TW_OK;
}

/* A Scalar as torch prints it in range messages. */
static void scalar_str(char *buf, size_t len, const tw_scalar *s)
{
	switch (s->kind) {
	case TW_SCALAR_BOOL:
		snprintf(buf, len, "%s", s->b ? "true" : "false");
		break;
	case TW_SCALAR_INT:
		snprintf(buf, len, "%lld", (long long)s->i);
		break;
	default:
		snprintf(buf, len, "%g", s->d);
		break;
	}
}

tw_status tw_op_arange(const tw_scalar *start, const tw_scalar *end,
		       const tw_scalar *step, const tw_dtype *dtype,
		       tw_tensor *out)
{
	if (start == NULL || end == NULL || step == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL, "arange(): NULL argument");
	tw_dtype dt;
	if (dtype != NULL)
		dt = *dtype;
	else if (start->kind == TW_SCALAR_DOUBLE ||
		 end->kind == TW_SCALAR_DOUBLE ||
		 step->kind == TW_SCALAR_DOUBLE)
		dt = TW_FLOAT32;
	else
		dt = TW_INT64;
	if (!tw_ops_dtype_supported(dt) || dt == TW_BOOL)
		return tw_fail(TW_ETYPE,
			       "\"arange_cpu\" not implemented for '%s'",
			       tw_ops_torch_dtype_name(dt));

	/* torch's arange_check_bounds, on the values as doubles. */
	double ds = tw_scalar_to_double(start), de = tw_scalar_to_double(end);
	double dst = tw_scalar_to_double(step);
	if (!(dst > 0 || dst < 0))
		return tw_fail_static(TW_ERUNTIME, "step must be nonzero");
	if (!isfinite(ds) || !isfinite(de)) {
		char a[64], b[64];
		scalar_str(a, sizeof(a), start);
		scalar_str(b, sizeof(b), end);
		return tw_fail(TW_ERUNTIME, "unsupported range: %s -> %s", a,
			       b);
	}
	if (!((dst > 0 && de >= ds) || (dst < 0 && de <= ds)))
		return tw_fail_static(
			TW_ERUNTIME,
			"upper bound and larger bound inconsistent with step sign");

	bool integral = tw_ops_dtype_is_integral(dt);
	int64_t xs = 0, xst = 0, xe = 0;
	tw_status st;
	if (integral) {
		/* Integer results step in int64, as torch's accscalar_t. */
		if ((st = tw_ops_scalar_to(start, TW_INT64, &xs)) != TW_OK ||
		    (st = tw_ops_scalar_to(end, TW_INT64, &xe)) != TW_OK ||
		    (st = tw_ops_scalar_to(step, TW_INT64, &xst)) != TW_OK)
			return st;
		/* A fractional step may truncate to 0: torch then repeats
		 * start for int32 (the length comes from the doubles) and
		 * divides by zero for int64; refuse that one. */
		if (xst == 0 && dt == TW_INT64)
			return tw_fail_static(TW_ERUNTIME,
					      "step must be nonzero");
	}
	double size_d;
	if (dt == TW_INT64) {
		int64_t sgn = (xst > 0) - (xst < 0);
		int64_t num;
		if (__builtin_sub_overflow(xe, xs, &num) ||
		    __builtin_add_overflow(num, xst - sgn, &num))
			return tw_fail_static(
				TW_ERUNTIME,
				"invalid size, possible overflow?");
		size_d = (double)(num / xst);
	} else {
		size_d = ceil((de - ds) / dst);
	}
	if (!(size_d >= 0 && size_d < 9223372036854775808.0))
		return tw_fail_static(TW_ERUNTIME,
				      "invalid size, possible overflow?");
	int64_t n = (int64_t)size_d;
	st = new_tensor("arange", dt, 1, &n, false, out, NULL);
	if (st != TW_OK)
		return st;
	switch (dt) {
	case TW_INT32: {
		int32_t *p = out->data;
		for (int64_t i = 0; i < n; i++)
			p[i] = (int32_t)(uint32_t)((uint64_t)xs +
						   (uint64_t)i * (uint64_t)xst);
		break;
	}
	case TW_INT64: {
		int64_t *p = out->data;
		for (int64_t i = 0; i < n; i++)
			p[i] = (int64_t)((uint64_t)xs +
					 (uint64_t)i * (uint64_t)xst);
		break;
	}
	case TW_FLOAT32: {
		float *p = out->data;
		for (int64_t i = 0; i < n; i++)
			p[i] = (float)(ds + dst * (double)i);
		break;
	}
	default: {
		double *p = out->data;
		for (int64_t i = 0; i < n; i++)
			p[i] = ds + dst * (double)i;
		break;
	}
	}
	return TW_OK;
}

uint64_t tw_ops_random_u64(uint64_t seed, uint64_t i)
{
	/* SplitMix64: the (i + 1)-th state of the Weyl sequence, mixed. */
	uint64_t z = seed + (i + 1) * UINT64_C(0x9e3779b97f4a7c15);
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static tw_status random_dtype(const char *kernel, const tw_dtype *dtype,
			      tw_dtype *dt)
{
	*dt = dtype != NULL ? *dtype : TW_FLOAT32;
	if (*dt != TW_FLOAT32 && *dt != TW_FLOAT64)
		return tw_fail(TW_ETYPE, "\"%s\" not implemented for '%s'",
			       kernel, tw_ops_torch_dtype_name(*dt));
	return TW_OK;
}

tw_status tw_op_rand(unsigned ndim, const int64_t *shape, uint64_t seed,
		     const tw_dtype *dtype, tw_tensor *out)
{
	tw_dtype dt;
	tw_status st = random_dtype("check_uniform_bounds", dtype, &dt);
	if (st != TW_OK)
		return st;
	int64_t n;
	st = new_tensor("rand", dt, ndim, shape, false, out, &n);
	if (st != TW_OK)
		return st;
	if (dt == TW_FLOAT32) {
		float *p = out->data;
		for (int64_t i = 0; i < n; i++)
			p[i] = (float)(tw_ops_random_u64(seed, (uint64_t)i) >>
				       40) *
			       0x1.0p-24f;
	} else {
		double *p = out->data;
		for (int64_t i = 0; i < n; i++)
			p[i] = (double)(tw_ops_random_u64(seed, (uint64_t)i) >>
					11) *
			       0x1.0p-53;
	}
	return TW_OK;
}

tw_status tw_op_randn(unsigned ndim, const int64_t *shape, uint64_t seed,
		      const tw_dtype *dtype, tw_tensor *out)
{
	tw_dtype dt;
	tw_status st = random_dtype("normal_kernel_cpu", dtype, &dt);
	if (st != TW_OK)
		return st;
	int64_t n;
	st = new_tensor("randn", dt, ndim, shape, false, out, &n);
	if (st != TW_OK)
		return st;
	const double two_pi = 6.283185307179586476925286766559;
	for (int64_t j = 0; j < n; j += 2) {
		uint64_t x1 = tw_ops_random_u64(seed, (uint64_t)j);
		uint64_t x2 = tw_ops_random_u64(seed, (uint64_t)j + 1);
		double u1 = (double)((x1 >> 11) + 1) * 0x1.0p-53; /* (0, 1] */
		double u2 = (double)(x2 >> 11) * 0x1.0p-53;       /* [0, 1) */
		double r = sqrt(-2.0 * log(u1));
		double z0 = r * cos(two_pi * u2);
		double z1 = r * sin(two_pi * u2);
		if (dt == TW_FLOAT32) {
			float *p = out->data;
			p[j] = (float)z0;
			if (j + 1 < n)
				p[j + 1] = (float)z1;
		} else {
			double *p = out->data;
			p[j] = z0;
			if (j + 1 < n)
				p[j + 1] = z1;
		}
	}
	return TW_OK;
}
