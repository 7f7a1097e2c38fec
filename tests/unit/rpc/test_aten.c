/* aten:: builtins and schema'd functions through the registry's invoke
 * path (the one every agent dispatch uses), in process: binding, overload
 * choice, adapters, results checked against the kernels. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include <tensorwire/schema.h>

#include "dataplane/err.h"
#include "rpc/invoke.h"
#include "rpc/ops/ops.h"

static struct registry reg;

static void setup(void)
{
	cr_assert_eq(registry_init(&reg), TW_OK);
	cr_assert_eq(reg_register_builtins(&reg), TW_OK);
}

static void teardown(void)
{
	registry_fini(&reg);
}

TestSuite(aten, .init = setup, .fini = teardown);

/* A tensor value of dtype dt from doubles. */
static tw_value tv(tw_dtype dt, unsigned ndim, const int64_t *shape,
		   const double *vals)
{
	tw_tensor t;
	cr_assert_eq(tw_tensor_alloc(&t, dt, ndim, shape), TW_OK);
	int64_t n;
	tw_tensor_numel(&t, &n);
	for (int64_t i = 0; i < n; i++) {
		tw_scalar s = tw_scalar_double(vals[i]);
		if (dt == TW_INT32 || dt == TW_INT64 || dt == TW_BOOL)
			s = tw_scalar_int((int64_t)vals[i]);
		tw_ops_scalar_store(&s, dt,
				    (char *)t.data +
					    i * (int64_t)tw_dtype_size(dt));
	}
	tw_value v;
	cr_assert_eq(tw_value_tensor(&v, &t), TW_OK);
	tw_tensor_release(&t);
	return v;
}

static const int64_t S23[] = {2, 3};
static const double V6[] = {1, -2, 3, 4.5, 0.25, 6};
static const double P6[] = {1, 2, 3, 4.5, 0.25, 6};

static tw_value ints(int n, const int64_t *v)
{
	tw_value l;
	cr_assert_eq(tw_value_list(&l, (uint32_t)n), TW_OK);
	for (int i = 0; i < n; i++)
		tw_value_set_item(&l, (uint32_t)i, tw_value_int(v[i]));
	return l;
}

static tw_value str(const char *s)
{
	tw_value v;
	cr_assert_eq(tw_value_cstring(&v, s), TW_OK);
	return v;
}

/* args: n owned values moved into a tuple; kwargs: NULL-terminated
 * (key, value) pairs in kw / kwv. Returns the status; *res owned. */
static tw_status call(const char *fn, int n, tw_value *argv, int nk,
		      const char **keys, tw_value *kwv, tw_value *res)
{
	const struct reg_entry *e = registry_find(&reg, fn, strlen(fn));
	cr_assert_not_null(e, "%s not registered", fn);
	tw_value args, kwargs;
	cr_assert_eq(tw_value_tuple(&args, (uint32_t)n), TW_OK);
	for (int i = 0; i < n; i++)
		tw_value_set_item(&args, (uint32_t)i, argv[i]);
	cr_assert_eq(tw_value_dict(&kwargs, (uint32_t)nk), TW_OK);
	for (int i = 0; i < nk; i++)
		cr_assert_eq(tw_value_dict_set(&kwargs, (uint32_t)i, keys[i],
					       kwv[i]),
			     TW_OK);
	*res = tw_value_none();
	tw_status st = reg_invoke(e, NULL, &args, &kwargs, res);
	tw_value_destroy(&args);
	tw_value_destroy(&kwargs);
	return st;
}

#define CALL(fn, res, ...)                                                     \
	({                                                                     \
		tw_value av_[] = {__VA_ARGS__};                                \
		call(fn, (int)(sizeof(av_) / sizeof(av_[0])), av_, 0, NULL,    \
		     NULL, res);                                               \
	})

static void expect_tensor(const tw_value *r, const tw_tensor *want)
{
	cr_assert_eq(r->kind, TW_KIND_TENSOR, "kind %d", r->kind);
	cr_assert(tw_tensor_equal(r->u.tensor, want), "tensor differs");
}

static const char *errmsg(const tw_value *r)
{
	cr_assert_eq(r->kind, TW_KIND_ERROR);
	return r->u.err->msg;
}

Test(aten, add_overloads_and_alpha)
{
	tw_value a = tv(TW_FLOAT32, 2, S23, V6), b = tv(TW_FLOAT32, 2, S23, P6);
	tw_tensor want;
	tw_scalar one = tw_scalar_int(1), two = tw_scalar_int(2);
	tw_value r;
	/* add.Tensor */
	tw_value a1, b1;
	tw_value_clone(&a1, &a);
	tw_value_clone(&b1, &b);
	cr_assert_eq(CALL("aten::add", &r, a1, b1), TW_OK);
	cr_assert_eq(tw_op_add(a.u.tensor, b.u.tensor, &one, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	/* add.Scalar for (tensor, 2) */
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::add", &r, a1, tw_value_int(2)), TW_OK);
	cr_assert_eq(tw_op_add_scalar(a.u.tensor, &two, &one, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	/* alpha as a kwarg */
	tw_value_clone(&a1, &a);
	tw_value_clone(&b1, &b);
	tw_value av[2] = {a1, b1};
	const char *k[1] = {"alpha"};
	tw_value kv[1] = {tw_value_int(2)};
	cr_assert_eq(call("aten::add", 2, av, 1, k, kv, &r), TW_OK);
	cr_assert_eq(tw_op_add(a.u.tensor, b.u.tensor, &two, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	tw_value_destroy(&a);
	tw_value_destroy(&b);
}

Test(aten, broadcasting_and_promotion)
{
	int64_t s21[] = {2, 1}, s3[] = {3};
	double v2[] = {1, 2}, v3[] = {10, 20, 30};
	tw_value r;
	cr_assert_eq(CALL("aten::add", &r, tv(TW_INT32, 2, s21, v2),
			  tv(TW_FLOAT32, 1, s3, v3)),
		     TW_OK);
	const tw_tensor *t = r.u.tensor;
	cr_assert_eq(t->ndim, 2);
	cr_assert_eq(t->shape[0], 2);
	cr_assert_eq(t->shape[1], 3);
	cr_assert_eq(t->dtype, TW_FLOAT32);
	cr_assert_eq(((float *)t->data)[5], 32.0f);
	tw_value_destroy(&r);
	/* int32 tensor + int Scalar stays int32; + float Scalar is float32 */
	cr_assert_eq(CALL("aten::mul", &r, tv(TW_INT32, 1, s3, v3),
			  tw_value_int(3)),
		     TW_OK);
	cr_assert_eq(r.u.tensor->dtype, TW_INT32);
	cr_assert_eq(((int32_t *)r.u.tensor->data)[2], 90);
	tw_value_destroy(&r);
	cr_assert_eq(CALL("aten::mul", &r, tv(TW_INT64, 1, s3, v3),
			  tw_value_double(0.5)),
		     TW_OK);
	cr_assert_eq(r.u.tensor->dtype, TW_FLOAT32);
	tw_value_destroy(&r);
	/* int64 + float64 tensors -> float64 */
	cr_assert_eq(CALL("aten::sub", &r, tv(TW_INT64, 1, s3, v3),
			  tv(TW_FLOAT64, 1, s3, v3)),
		     TW_OK);
	cr_assert_eq(r.u.tensor->dtype, TW_FLOAT64);
	tw_value_destroy(&r);
}

Test(aten, no_match_message)
{
	tw_value r;
	tw_status st = CALL("aten::add", &r, tv(TW_FLOAT32, 2, S23, V6),
			    str("str"));
	cr_assert_eq(st, TW_ETYPE);
	const char *m = errmsg(&r);
	cr_assert(
		strstr(m,
		       "Failed to match operator name aten::add and arguments (args: (Tensor, str), kwargs: {}) to a builtin operator") !=
			NULL,
		"%s", m);
	cr_assert(
		strstr(m,
		       "aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor") !=
			NULL,
		"%s", m);
	cr_assert(
		strstr(m,
		       "aten::add.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor") !=
			NULL,
		"%s", m);
	cr_assert_eq(r.u.err->kind, TW_ETYPE);
	tw_value_destroy(&r);
	/* single overload: the binding error names the argument and type */
	st = CALL("aten::mm", &r, tv(TW_FLOAT32, 2, S23, V6), tw_value_int(1));
	cr_assert_eq(st, TW_ETYPE);
	m = errmsg(&r);
	cr_assert(
		strstr(m,
		       "Expected a value of type 'Tensor' for argument 'mat2' but instead found type 'int'") !=
			NULL,
		"%s", m);
	tw_value_destroy(&r);
	/* missing and extra arguments */
	st = CALL("aten::mm", &r, tv(TW_FLOAT32, 2, S23, V6));
	cr_assert_eq(st, TW_ETYPE);
	cr_assert(strstr(errmsg(&r), "missing value for argument 'mat2'") !=
			  NULL,
		  "%s", errmsg(&r));
	tw_value_destroy(&r);
}

typedef tw_status (*unary_fn)(const tw_tensor *, tw_tensor *);

Test(aten, unary_ops)
{
	static const struct {
		const char *name;
		unary_fn f;
	} u[] = {
		{"aten::neg", tw_op_neg},   {"aten::abs", tw_op_abs},
		{"aten::relu", tw_op_relu}, {"aten::sigmoid", tw_op_sigmoid},
		{"aten::tanh", tw_op_tanh}, {"aten::exp", tw_op_exp},
		{"aten::log", tw_op_log},   {"aten::sqrt", tw_op_sqrt},
		{"aten::t", tw_op_t},       {"aten::max", tw_op_max},
		{"aten::min", tw_op_min},   {"aten::clone", tw_op_clone},
	};
	static const tw_dtype dts[] = {TW_FLOAT32, TW_FLOAT64, TW_INT32,
				       TW_INT64};
	for (size_t d = 0; d < 4; d++) {
		tw_value a = tv(dts[d], 2, S23, P6);
		for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
			tw_value a1, r;
			tw_value_clone(&a1, &a);
			cr_assert_eq(CALL(u[i].name, &r, a1), TW_OK, "%s",
				     u[i].name);
			tw_tensor want;
			cr_assert_eq(u[i].f(a.u.tensor, &want), TW_OK);
			expect_tensor(&r, &want);
			tw_tensor_release(&want);
			tw_value_destroy(&r);
		}
		tw_value_destroy(&a);
	}
	/* bool: neg refuses it, as torch */
	int64_t s2[] = {2};
	double bv[] = {1, 0};
	tw_value r;
	tw_status st = CALL("aten::neg", &r, tv(TW_BOOL, 1, s2, bv));
	cr_assert_neq(st, TW_OK);
	cr_assert_eq(r.u.err->kind, st);
	cr_assert(strstr(errmsg(&r), "bool") != NULL ||
			  strstr(errmsg(&r), "Bool") != NULL,
		  "%s", errmsg(&r));
	tw_value_destroy(&r);
}

Test(aten, binary_ops)
{
	tw_value a = tv(TW_FLOAT32, 2, S23, P6), b = tv(TW_FLOAT64, 2, S23, V6);
	const tw_tensor *x = a.u.tensor, *y = b.u.tensor;
	tw_tensor want;
	tw_value r, a1, b1;
	tw_scalar one = tw_scalar_int(1), two = tw_scalar_int(2);
#define BIN(name, KERNEL)                                                      \
	do {                                                                   \
		tw_value_clone(&a1, &a);                                       \
		tw_value_clone(&b1, &b);                                       \
		cr_assert_eq(CALL(name, &r, a1, b1), TW_OK, name);             \
		cr_assert_eq(KERNEL, TW_OK);                                   \
		expect_tensor(&r, &want);                                      \
		tw_tensor_release(&want);                                      \
		tw_value_destroy(&r);                                          \
	} while (0)
	BIN("aten::sub", tw_op_sub(x, y, &one, &want));
	BIN("aten::mul", tw_op_mul(x, y, &want));
	BIN("aten::div", tw_op_div(x, y, TW_ROUND_NONE, &want));
	BIN("aten::pow", tw_op_pow(x, y, &want));
	/* Scalar overloads */
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::sub", &r, a1, tw_value_int(2)), TW_OK);
	cr_assert_eq(tw_op_sub_scalar(x, &two, &one, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::div", &r, a1, tw_value_int(2)), TW_OK);
	cr_assert_eq(tw_op_div_scalar(x, &two, TW_ROUND_NONE, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::pow", &r, a1, tw_value_int(2)), TW_OK);
	cr_assert_eq(tw_op_pow_scalar(x, &two, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::pow", &r, tw_value_int(2), a1), TW_OK);
	cr_assert_eq(tw_op_pow_scalar_base(&two, x, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	/* div with rounding_mode (kwarg only): div.Tensor_mode */
	tw_value_clone(&a1, &a);
	tw_value_clone(&b1, &b);
	tw_value av[2] = {a1, b1};
	const char *k[1] = {"rounding_mode"};
	tw_value kv[1] = {str("floor")};
	cr_assert_eq(call("aten::div", 2, av, 1, k, kv, &r), TW_OK);
	cr_assert_eq(tw_op_div(x, y, TW_ROUND_FLOOR, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	/* bad rounding mode: the kernel's message */
	tw_value_clone(&a1, &a);
	tw_value av2[2] = {a1, tw_value_int(2)};
	tw_value kv2[1] = {str("up")};
	cr_assert_eq(call("aten::div", 2, av2, 1, k, kv2, &r), TW_EVALUE);
	cr_assert(strstr(errmsg(&r), "rounding_mode") != NULL, "%s",
		  errmsg(&r));
	tw_value_destroy(&r);
	tw_value_destroy(&a);
	tw_value_destroy(&b);
}

Test(aten, reductions)
{
	tw_value a = tv(TW_FLOAT32, 2, S23, V6);
	const tw_tensor *x = a.u.tensor;
	tw_value r, a1;
	tw_tensor want, wi;
	int64_t d1[] = {1};
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::sum", &r, a1), TW_OK);
	cr_assert_eq(tw_op_sum(x, NULL, 0, false, NULL, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	/* sum.dim_IntList with keepdim and dtype (float64 = 7) as kwargs */
	tw_value_clone(&a1, &a);
	tw_value av[2] = {a1, ints(1, d1)};
	const char *k[2] = {"keepdim", "dtype"};
	tw_value kv[2] = {tw_value_bool(true), tw_value_int(7)};
	cr_assert_eq(call("aten::sum", 2, av, 2, k, kv, &r), TW_OK);
	tw_dtype f64 = TW_FLOAT64;
	cr_assert_eq(tw_op_sum(x, d1, 1, true, &f64, &want), TW_OK);
	expect_tensor(&r, &want);
	cr_assert_eq(r.u.tensor->dtype, TW_FLOAT64);
	cr_assert_eq(r.u.tensor->ndim, 2);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	/* a single int for int[1]? dim */
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::mean", &r, a1, tw_value_int(1)), TW_OK);
	cr_assert_eq(tw_op_mean(x, d1, 1, false, NULL, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::mean", &r, a1), TW_OK);
	cr_assert_eq(tw_op_mean(x, NULL, 0, false, NULL, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	/* max.dim / min.dim -> (values, indices) */
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::max", &r, a1, tw_value_int(1)), TW_OK);
	cr_assert_eq(r.kind, TW_KIND_TUPLE);
	cr_assert_eq(tw_op_max_dim(x, 1, false, &want, &wi), TW_OK);
	expect_tensor(&r.u.items[0], &want);
	expect_tensor(&r.u.items[1], &wi);
	tw_tensor_release(&want);
	tw_tensor_release(&wi);
	tw_value_destroy(&r);
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::min", &r, a1, tw_value_int(0),
			  tw_value_bool(true)),
		     TW_OK);
	cr_assert_eq(tw_op_min_dim(x, 0, true, &want, &wi), TW_OK);
	expect_tensor(&r.u.items[0], &want);
	expect_tensor(&r.u.items[1], &wi);
	tw_tensor_release(&want);
	tw_tensor_release(&wi);
	tw_value_destroy(&r);
	/* argmax, with and without dim */
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::argmax", &r, a1), TW_OK);
	cr_assert_eq(tw_op_argmax(x, NULL, false, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	tw_value_clone(&a1, &a);
	int64_t dm1 = -1;
	cr_assert_eq(CALL("aten::argmax", &r, a1, tw_value_int(-1)), TW_OK);
	cr_assert_eq(tw_op_argmax(x, &dm1, false, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	/* a kernel error: the kernel's kind and message */
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::max", &r, a1, tw_value_int(5)), TW_EVALUE);
	cr_assert(strstr(errmsg(&r), "Dimension out of range") != NULL, "%s",
		  errmsg(&r));
	tw_value_destroy(&r);
	tw_value_destroy(&a);
}

Test(aten, linalg_and_shapes)
{
	int64_t s32[] = {3, 2}, s6[] = {6};
	tw_value a = tv(TW_FLOAT32, 2, S23, V6), b = tv(TW_FLOAT32, 2, s32, P6);
	const tw_tensor *x = a.u.tensor, *y = b.u.tensor;
	tw_value r, a1, b1;
	tw_tensor want;
	tw_value_clone(&a1, &a);
	tw_value_clone(&b1, &b);
	cr_assert_eq(CALL("aten::mm", &r, a1, b1), TW_OK);
	cr_assert_eq(tw_op_mm(x, y, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	tw_value_clone(&a1, &a);
	tw_value_clone(&b1, &b);
	cr_assert_eq(CALL("aten::matmul", &r, a1, b1), TW_OK);
	cr_assert_eq(tw_op_matmul(x, y, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	/* mm shape mismatch: torch's message */
	tw_value_clone(&a1, &a);
	tw_value_clone(&b1, &a);
	cr_assert_eq(CALL("aten::mm", &r, a1, b1), TW_ERUNTIME);
	cr_assert(
		strstr(errmsg(&r),
		       "mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)") !=
			NULL,
		"%s", errmsg(&r));
	tw_value_destroy(&r);
	/* transpose.int, reshape, view */
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::transpose", &r, a1, tw_value_int(0),
			  tw_value_int(1)),
		     TW_OK);
	cr_assert_eq(tw_op_transpose(x, 0, 1, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::reshape", &r, a1, ints(1, s6)), TW_OK);
	cr_assert_eq(tw_op_reshape(x, s6, 1, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	tw_value_clone(&a1, &a);
	int64_t sm[] = {3, -1};
	cr_assert_eq(CALL("aten::view", &r, a1, ints(2, sm)), TW_OK);
	cr_assert_eq(tw_op_view(x, sm, 2, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	/* cat / stack of a list of tensors; dim as kwarg */
	tw_tensor two[2] = {*x, *x};
	for (int s = 0; s < 2; s++) {
		const char *fn = s ? "aten::stack" : "aten::cat";
		tw_value l;
		cr_assert_eq(tw_value_list(&l, 2), TW_OK);
		tw_value_clone(&a1, &a);
		tw_value_set_item(&l, 0, a1);
		tw_value_clone(&a1, &a);
		tw_value_set_item(&l, 1, a1);
		tw_value av[1] = {l};
		const char *k[1] = {"dim"};
		tw_value kv[1] = {tw_value_int(1)};
		cr_assert_eq(call(fn, 1, av, 1, k, kv, &r), TW_OK, "%s", fn);
		cr_assert_eq((s ? tw_op_stack : tw_op_cat)(two, 2, 1, &want),
			     TW_OK);
		expect_tensor(&r, &want);
		tw_tensor_release(&want);
		tw_value_destroy(&r);
	}
	tw_value_destroy(&a);
	tw_value_destroy(&b);
}

Test(aten, factories)
{
	int64_t sh[] = {2, 3};
	tw_value r;
	tw_tensor want;
	cr_assert_eq(CALL("aten::ones", &r, ints(2, sh)), TW_OK);
	cr_assert_eq(tw_op_ones(2, sh, NULL, &want), TW_OK);
	expect_tensor(&r, &want);
	cr_assert_eq(r.u.tensor->dtype, TW_FLOAT32);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	/* zeros with dtype int32 (3) */
	tw_value av[1] = {ints(2, sh)};
	const char *k[1] = {"dtype"};
	tw_value kv[1] = {tw_value_int(3)};
	cr_assert_eq(call("aten::zeros", 1, av, 1, k, kv, &r), TW_OK);
	cr_assert_eq(r.u.tensor->dtype, TW_INT32);
	tw_value_destroy(&r);
	/* bad dtype code, device, layout */
	tw_value av2[1] = {ints(2, sh)};
	tw_value kv2[1] = {tw_value_int(9)};
	cr_assert_eq(call("aten::zeros", 1, av2, 1, k, kv2, &r), TW_ETYPE);
	cr_assert(strstr(errmsg(&r), "ScalarType code 9") != NULL, "%s",
		  errmsg(&r));
	tw_value_destroy(&r);
	tw_value av3[1] = {ints(2, sh)};
	const char *kd[1] = {"device"};
	tw_value kv3[1] = {str("cuda:0")};
	cr_assert_eq(call("aten::zeros", 1, av3, 1, kd, kv3, &r), TW_EVALUE);
	cr_assert(strstr(errmsg(&r), "cuda:0") != NULL, "%s", errmsg(&r));
	tw_value_destroy(&r);
	tw_value av4[1] = {ints(2, sh)};
	tw_value kv4[1] = {str("cpu")};
	cr_assert_eq(call("aten::ones", 1, av4, 1, kd, kv4, &r), TW_OK);
	tw_value_destroy(&r);
	/* full: dtype follows the fill */
	cr_assert_eq(CALL("aten::full", &r, ints(2, sh), tw_value_int(7)),
		     TW_OK);
	tw_scalar seven = tw_scalar_int(7);
	cr_assert_eq(tw_op_full(2, sh, &seven, NULL, &want), TW_OK);
	expect_tensor(&r, &want);
	cr_assert_eq(r.u.tensor->dtype, TW_INT64);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	/* arange: three overloads */
	tw_scalar z = tw_scalar_int(0), one = tw_scalar_int(1),
		  five = tw_scalar_int(5), two = tw_scalar_int(2),
		  half = tw_scalar_double(0.5);
	cr_assert_eq(CALL("aten::arange", &r, tw_value_int(5)), TW_OK);
	cr_assert_eq(tw_op_arange(&z, &five, &one, NULL, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	cr_assert_eq(CALL("aten::arange", &r, tw_value_int(2), tw_value_int(5)),
		     TW_OK);
	cr_assert_eq(tw_op_arange(&two, &five, &one, NULL, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	cr_assert_eq(CALL("aten::arange", &r, tw_value_int(0), tw_value_int(2),
			  tw_value_double(0.5)),
		     TW_OK);
	cr_assert_eq(tw_op_arange(&z, &two, &half, NULL, &want), TW_OK);
	expect_tensor(&r, &want);
	cr_assert_eq(r.u.tensor->dtype, TW_FLOAT32);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	/* rand / randn: torch's schemas seed 0; the .seed overloads take seed */
	cr_assert_eq(CALL("aten::rand", &r, ints(2, sh)), TW_OK);
	cr_assert_eq(tw_op_rand(2, sh, 0, NULL, &want), TW_OK);
	expect_tensor(&r, &want);
	tw_tensor_release(&want);
	tw_value_destroy(&r);
	for (int n = 0; n < 2; n++) {
		tw_value av5[1] = {ints(2, sh)};
		const char *ks[2] = {"seed", "dtype"};
		tw_value kv5[2] = {tw_value_int(42), tw_value_int(7)};
		cr_assert_eq(call(n ? "aten::randn" : "aten::rand", 1, av5, 2,
				  ks, kv5, &r),
			     TW_OK);
		tw_dtype f64 = TW_FLOAT64;
		cr_assert_eq((n ? tw_op_randn : tw_op_rand)(2, sh, 42, &f64,
							    &want),
			     TW_OK);
		expect_tensor(&r, &want);
		tw_tensor_release(&want);
		tw_value_destroy(&r);
	}
	/* negative size: kernel error */
	int64_t neg[] = {-1, 2};
	cr_assert_eq(CALL("aten::zeros", &r, ints(2, neg)), TW_ERUNTIME);
	cr_assert(strstr(errmsg(&r), "negative dimension") != NULL, "%s",
		  errmsg(&r));
	tw_value_destroy(&r);
}

/* A kernel's refusal becomes the remote error with the reason the kernel
 * recorded (tw_errmsg), whole and in torch's words, whatever the adapter:
 * never an older reason of the same kind left on the thread. */
Test(aten, kernel_reason_is_the_message)
{
	int64_t neg[] = {2, -1};
	tw_value a = tv(TW_FLOAT32, 2, S23, V6), r, a1, b1;
	tw_fail_static(TW_ERUNTIME, "a stale reason");
	tw_value_clone(&a1, &a);
	tw_value_clone(&b1, &a);
	cr_assert_eq(CALL("aten::mm", &r, a1, b1), TW_ERUNTIME);
	cr_assert_str_eq(errmsg(&r), "mat1 and mat2 shapes cannot be "
				     "multiplied (2x3 and 2x3)");
	tw_value_destroy(&r);
	tw_fail_static(TW_EVALUE, "a stale reason");
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::max", &r, a1, tw_value_int(-3)), TW_EVALUE);
	cr_assert_str_eq(errmsg(&r), "Dimension out of range (expected to be "
				     "in range of [-2, 1], but got -3)");
	tw_value_destroy(&r);
	tw_value_clone(&a1, &a);
	tw_value av[2] = {a1, tw_value_double(2)};
	const char *k[1] = {"rounding_mode"};
	tw_value kv[1] = {str("nearest")};
	cr_assert_eq(call("aten::div", 2, av, 1, k, kv, &r), TW_EVALUE);
	cr_assert_str_eq(errmsg(&r),
			 "div expected rounding_mode to be one of "
			 "None, 'trunc', or 'floor' but found 'nearest'");
	tw_value_destroy(&r);
	int64_t s32[] = {3, 2};
	tw_value_clone(&a1, &a);
	cr_assert_eq(CALL("aten::view", &r, a1, ints(2, s32)), TW_OK);
	tw_value tr;
	cr_assert_eq(CALL("aten::t", &tr, r), TW_OK);
	int64_t s6[] = {6};
	cr_assert_eq(CALL("aten::view", &r, tr, ints(1, s6)), TW_ERUNTIME);
	cr_assert_str_eq(errmsg(&r),
			 "view size is not compatible with input "
			 "tensor's size and stride (at least one dimension "
			 "spans across two contiguous subspaces). Use "
			 ".reshape(...) instead.");
	tw_value_destroy(&r);
	cr_assert_eq(CALL("aten::zeros", &r, ints(2, neg)), TW_ERUNTIME);
	cr_assert_str_eq(errmsg(&r), "Trying to create tensor with negative "
				     "dimension -1: [2, -1]");
	tw_value_destroy(&r);
	tw_value_destroy(&a);
}

/* A view of a tensor with borrowed bytes (no buf) comes back as a copy. */
Test(aten, view_of_borrowed_bytes)
{
	float data[6] = {1, 2, 3, 4, 5, 6};
	tw_tensor t;
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 2, S23, NULL, data, NULL),
		     TW_OK);
	tw_value v, r;
	cr_assert_eq(tw_value_tensor(&v, &t), TW_OK);
	cr_assert_eq(CALL("aten::t", &r, v), TW_OK);
	cr_assert_not_null(r.u.tensor->buf);
	cr_assert_neq(r.u.tensor->data, (void *)data);
	cr_assert_eq(r.u.tensor->shape[0], 3);
	cr_assert_eq(((float *)r.u.tensor->data)[1], 4.0f);
	tw_value_destroy(&r);
}

/* ---- user functions by schema ---- */

static tw_status u_scale(tw_call_ctx *ctx, const tw_value *b, uint32_t nb,
			 tw_value *result, void *arg)
{
	(void)ctx;
	(void)arg;
	cr_assert_eq(nb, 3);
	/* (int x, float factor=2.0, *, bool neg=False): int to float done */
	cr_assert_eq(b[0].kind, TW_KIND_INT);
	cr_assert_eq(b[1].kind, TW_KIND_DOUBLE);
	double r = (double)b[0].u.i * b[1].u.d;
	*result = tw_value_double(b[2].u.b ? -r : r);
	return TW_OK;
}

static tw_status u_scale_str(tw_call_ctx *ctx, const tw_value *b, uint32_t nb,
			     tw_value *result, void *arg)
{
	(void)ctx;
	(void)arg;
	(void)nb;
	return tw_value_cstring(result, b[0].u.str);
}

static tw_status plain(tw_call_ctx *ctx, const tw_value *args,
		       const tw_value *kwargs, tw_value *result, void *arg)
{
	(void)ctx;
	(void)args;
	(void)kwargs;
	(void)arg;
	*result = tw_value_int(1);
	return TW_OK;
}

Test(aten, user_functions)
{
	tw_status st = reg_add_schema(
		&reg,
		"demo::scale(int x, float factor=2.0, *, bool neg=False) -> float",
		u_scale, NULL, 0);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	tw_value r;
	cr_assert_eq(CALL("demo::scale", &r, tw_value_int(3)), TW_OK);
	cr_assert_eq(r.u.d, 6.0);
	/* int to float for factor; kwarg-only neg */
	tw_value av[2] = {tw_value_int(3), tw_value_int(4)};
	const char *k[1] = {"neg"};
	tw_value kv[1] = {tw_value_bool(true)};
	cr_assert_eq(call("demo::scale", 2, av, 1, k, kv, &r), TW_OK);
	cr_assert_eq(r.u.d, -12.0);
	/* bool is not an int */
	cr_assert_eq(CALL("demo::scale", &r, tw_value_bool(true)), TW_ETYPE);
	cr_assert(
		strstr(errmsg(&r),
		       "Expected a value of type 'int' for argument 'x' but instead found type 'bool'") !=
			NULL,
		"%s", errmsg(&r));
	tw_value_destroy(&r);
	/* unknown kwarg, duplicated, extra, missing */
	tw_value av2[1] = {tw_value_int(1)};
	const char *k2[1] = {"beta"};
	tw_value kv2[1] = {tw_value_int(1)};
	cr_assert_eq(call("demo::scale", 1, av2, 1, k2, kv2, &r), TW_ETYPE);
	cr_assert(strstr(errmsg(&r), "Unknown keyword argument 'beta'") != NULL,
		  "%s", errmsg(&r));
	tw_value_destroy(&r);
	tw_value av3[1] = {tw_value_int(1)};
	const char *k3[1] = {"x"};
	tw_value kv3[1] = {tw_value_int(1)};
	cr_assert_eq(call("demo::scale", 1, av3, 1, k3, kv3, &r), TW_ETYPE);
	cr_assert(strstr(errmsg(&r),
			 "specified both as positional and keyword") != NULL,
		  "%s", errmsg(&r));
	tw_value_destroy(&r);
	cr_assert_eq(CALL("demo::scale", &r, tw_value_int(1), tw_value_int(1),
			  tw_value_int(1)),
		     TW_ETYPE);
	tw_value_destroy(&r);
	cr_assert_eq(call("demo::scale", 0, NULL, 0, NULL, NULL, &r), TW_ETYPE);
	cr_assert(strstr(errmsg(&r), "missing value for argument 'x'") != NULL,
		  "%s", errmsg(&r));
	tw_value_destroy(&r);

	/* a second overload; the same overload twice is EBUSY */
	st = reg_add_schema(&reg, "demo::scale.str(str s) -> str", u_scale_str,
			    NULL, 0);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	cr_assert_eq(reg_add_schema(&reg, "demo::scale.str(str t) -> str",
				    u_scale_str, NULL, 0),
		     TW_EBUSY);
	cr_assert_str_eq(tw_errmsg(TW_EBUSY),
			 "function 'demo::scale.str' is already registered");
	cr_assert_eq(reg_add_schema(&reg, "demo::scale(int y) -> float",
				    u_scale, NULL, 0),
		     TW_EBUSY);
	cr_assert_str_eq(tw_errmsg(TW_EBUSY),
			 "function 'demo::scale' is already registered");
	cr_assert_eq(reg_add_schema(&reg, "demo::scale.b(int y) -> float",
				    u_scale, NULL, TW_FN_BLOCKING),
		     TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "overload 'demo::scale.b' has flags 0x1 but "
			 "'demo::scale' was registered with 0x0: all overloads "
			 "of a name run in the same place");
	cr_assert_eq(CALL("demo::scale", &r, str("hi")), TW_OK);
	cr_assert_str_eq(r.u.str, "hi");
	tw_value_destroy(&r);
	cr_assert_eq(CALL("demo::scale", &r, tw_value_int(2)), TW_OK);
	cr_assert_eq(r.u.d, 4.0);
	cr_assert_eq(CALL("demo::scale", &r, tw_value_none()), TW_ETYPE);
	cr_assert(strstr(errmsg(&r),
			 "Failed to match operator name demo::scale") != NULL,
		  "%s", errmsg(&r));
	tw_value_destroy(&r);

	/* plain and schema'd names do not mix */
	cr_assert_eq(registry_add(&reg, "demo::scale", plain, NULL, 0),
		     TW_EBUSY);
	cr_assert_str_eq(tw_errmsg(TW_EBUSY),
			 "function 'demo::scale' is already registered");
	cr_assert_eq(registry_add(&reg, "demo::plain", plain, NULL, 0), TW_OK);
	cr_assert_eq(reg_add_schema(&reg, "demo::plain(int x) -> int", u_scale,
				    NULL, 0),
		     TW_EBUSY);
	cr_assert_str_eq(tw_errmsg(TW_EBUSY),
			 "function 'demo::plain' is already registered "
			 "(without a schema: it takes no overloads)");
	/* a plain entry still runs through reg_invoke */
	cr_assert_eq(CALL("demo::plain", &r, tw_value_none()), TW_OK);
	cr_assert_eq(r.u.i, 1);
	/* parse errors */
	cr_assert_eq(reg_add_schema(&reg, "demo::bad(int x", u_scale, NULL, 0),
		     TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "expected ')' or ',' after argument 'x' at 15");
}

Test(aten, list_functions)
{
	cr_assert_eq(registry_add(&reg, "demo::plain", plain, NULL,
				  TW_FN_BLOCKING),
		     TW_OK);
	tw_value l;
	cr_assert_eq(reg_list_functions(&reg, &l), TW_OK);
	cr_assert_eq(l.kind, TW_KIND_LIST);
	cr_assert_geq(l.len, 50);
	bool add = false, plainf = false, list = false;
	for (uint32_t i = 0; i < l.len; i++) {
		const tw_value *t = &l.u.items[i];
		cr_assert_eq(t->kind, TW_KIND_TUPLE);
		cr_assert_eq(t->len, 3);
		if (i > 0)
			cr_assert_lt(strcmp(l.u.items[i - 1].u.items[0].u.str,
					    t->u.items[0].u.str),
				     0);
		const char *n = t->u.items[0].u.str, *s = t->u.items[1].u.str;
		if (strcmp(n, "aten::add.Tensor") == 0) {
			add = true;
			cr_assert_str_eq(
				s,
				"aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor");
		}
		if (strcmp(n, "demo::plain") == 0) {
			plainf = true;
			cr_assert_str_eq(s, "");
			cr_assert(t->u.items[2].u.b);
		}
		if (strcmp(n, "tw::list_functions") == 0)
			list = true;
		/* every builtin schema prints as it was written */
		if (s[0] != '\0') {
			tw_schema *p;
			cr_assert_eq(tw_schema_parse(s, &p), TW_OK, "%s", s);
			tw_schema_free(p);
		}
	}
	cr_assert(add && plainf && list);
	tw_value_destroy(&l);
	/* tw::list_functions through invoke */
	tw_value r;
	cr_assert_eq(call("tw::list_functions", 0, NULL, 0, NULL, NULL, &r),
		     TW_OK);
	cr_assert_eq(r.kind, TW_KIND_LIST);
	tw_value_destroy(&r);
}

/* ---- bounds (tw_ops_limits: the agent's max_tensor_*, max_op_work,
 * loop_work_max) ---- */

static _Atomic uint64_t refused;
static const tw_ops_limits small_lim = {.max_elems = 1000,
					.max_bytes = 4000,
					.max_work = 100000,
					.offload_work = 0,
					.refused = &refused};

/* A float32 tensor value of shape (ndim, shape) filled with v. */
static tw_value filled(unsigned ndim, const int64_t *shape, float v)
{
	tw_tensor t;
	cr_assert_eq(tw_tensor_alloc(&t, TW_FLOAT32, ndim, shape), TW_OK);
	int64_t n;
	tw_tensor_numel(&t, &n);
	for (int64_t i = 0; i < n; i++)
		((float *)t.data)[i] = v;
	tw_value tv_;
	cr_assert_eq(tw_value_tensor(&tv_, &t), TW_OK);
	tw_tensor_release(&t);
	return tv_;
}

/* One float standing for n elements (stride 0), borrowed. */
static float one_elem = 1.0f;
static tw_value expanded(unsigned ndim, const int64_t *shape)
{
	int64_t strides[TW_TENSOR_MAX_DIMS] = {0};
	tw_tensor t;
	cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, ndim, shape, strides,
				    &one_elem, NULL),
		     TW_OK);
	tw_value v;
	cr_assert_eq(tw_value_tensor(&v, &t), TW_OK);
	return v;
}

static void expect_refused(tw_status st, tw_value *r, const char *option)
{
	cr_assert_eq(st, TW_ERUNTIME, "got %s", tw_status_name(st));
	cr_assert(strstr(errmsg(r), option) != NULL, "%s", errmsg(r));
	cr_assert(strstr(errmsg(r), "over this worker's limit") != NULL, "%s",
		  errmsg(r));
	tw_value_destroy(r);
}

Test(aten, bounds_refuse_before_allocating_and_are_counted)
{
	atomic_store(&refused, 0);
	tw_ops_limits_set(&small_lim);
	tw_value r;
	int64_t big[] = {1 << 20, 1 << 20}; /* 2^40 elements: 4 TiB */
	expect_refused(CALL("aten::ones", &r, ints(2, big)), &r,
		       "tw_agent_opts.max_tensor_elems");
	expect_refused(CALL("aten::rand", &r, ints(2, big)), &r,
		       "tw_agent_opts.max_tensor_elems");
	expect_refused(CALL("aten::full", &r, ints(2, big), tw_value_int(7)),
		       &r, "tw_agent_opts.max_tensor_elems");
	expect_refused(CALL("aten::arange", &r, tw_value_int(1000000000)), &r,
		       "tw_agent_opts.max_tensor_elems");
	/* 1000 float64 elements: within the count, 8000 bytes over 4000 */
	int64_t k1000[] = {1000};
	tw_value av[1] = {ints(1, k1000)};
	const char *k[1] = {"dtype"};
	tw_value kv[1] = {tw_value_int(7)};
	expect_refused(call("aten::zeros", 1, av, 1, k, kv, &r), &r,
		       "tw_agent_opts.max_tensor_bytes");

	/* Broadcasting: two 1000-element operands make 10^6. */
	int64_t col[] = {1000, 1}, row[] = {1, 1000};
	expect_refused(CALL("aten::add", &r, filled(2, col, 1),
			    filled(2, row, 2)),
		       &r, "tw_agent_opts.max_tensor_elems");
	/* A stride-0 input: 4 bytes standing for 2^60 elements. Its sum
	 * touches them all (work), its negation would create them. */
	int64_t huge[] = {INT64_C(1) << 30, INT64_C(1) << 30};
	expect_refused(CALL("aten::sum", &r, expanded(2, huge)), &r,
		       "tw_agent_opts.max_op_work");
	expect_refused(CALL("aten::max", &r, expanded(2, huge)), &r,
		       "tw_agent_opts.max_op_work");
	expect_refused(CALL("aten::neg", &r, expanded(2, huge)), &r,
		       "tw_agent_opts.max_tensor_elems");
	/* A copy of it: reshape, clone, cat, a borrowed view's result. */
	int64_t flat[] = {-1};
	expect_refused(CALL("aten::reshape", &r, expanded(2, huge),
			    ints(1, flat)),
		       &r, "tw_agent_opts.max_tensor_elems");
	expect_refused(CALL("aten::clone", &r, expanded(2, huge)), &r,
		       "tw_agent_opts.max_tensor_elems");
	expect_refused(CALL("aten::t", &r, expanded(2, huge)), &r,
		       "tw_agent_opts.max_tensor_elems");
	/* Matrix products: 10x1000 @ 1000x10 is 100 results from 10^5
	 * multiply-adds; x100 of them are over max_work. */
	int64_t a1[] = {10, 10000}, b1[] = {10000, 10};
	expect_refused(CALL("aten::mm", &r, expanded(2, a1), expanded(2, b1)),
		       &r, "tw_agent_opts.max_op_work");
	expect_refused(CALL("aten::matmul", &r, expanded(2, a1),
			    expanded(2, b1)),
		       &r, "tw_agent_opts.max_op_work");
	tw_value lst;
	cr_assert_eq(tw_value_list(&lst, 2), TW_OK);
	int64_t half[] = {600};
	tw_value_set_item(&lst, 0, filled(1, half, 1));
	tw_value_set_item(&lst, 1, filled(1, half, 1));
	expect_refused(CALL("aten::cat", &r, lst), &r,
		       "tw_agent_opts.max_tensor_elems");
	cr_assert_eq(atomic_load(&refused), 15);

	/* Within the bounds, as before. */
	int64_t sh[] = {10, 10};
	cr_assert_eq(CALL("aten::ones", &r, ints(2, sh)), TW_OK);
	tw_value_destroy(&r);
	int64_t a2[] = {10, 100}, b2[] = {100, 10};
	cr_assert_eq(CALL("aten::mm", &r, expanded(2, a2), expanded(2, b2)),
		     TW_OK);
	cr_assert_eq(((float *)r.u.tensor->data)[0], 100.0f);
	tw_value_destroy(&r);
	int64_t e1000[] = {100000};
	cr_assert_eq(CALL("aten::sum", &r, expanded(1, e1000)), TW_OK);
	cr_assert_eq(((float *)r.u.tensor->data)[0], 100000.0f);
	tw_value_destroy(&r);
	cr_assert_eq(atomic_load(&refused), 15);
	tw_ops_limits_set(NULL);
}

Test(aten, work_over_offload_asks_to_move_and_does_nothing)
{
	tw_ops_limits lim = {.offload_work = 100};
	tw_ops_limits_set(&lim);
	tw_value r;
	int64_t n200[] = {200}, n50[] = {50};
	cr_assert_eq(CALL("aten::neg", &r, filled(1, n200, 1)), TW_EBUSY);
	cr_assert(tw_ops_offload_take());
	cr_assert_not(tw_ops_offload_take(), "taken once");
	tw_value_destroy(&r);
	cr_assert_eq(CALL("aten::sum", &r, expanded(1, n200)), TW_EBUSY);
	cr_assert(tw_ops_offload_take());
	tw_value_destroy(&r);
	/* Small work stays. */
	cr_assert_eq(CALL("aten::neg", &r, filled(1, n50, 1)), TW_OK);
	cr_assert_not(tw_ops_offload_take());
	tw_value_destroy(&r);
	/* Without an offload bound (the executor's), it runs. */
	lim.offload_work = 0;
	cr_assert_eq(CALL("aten::neg", &r, filled(1, n200, 1)), TW_OK);
	cr_assert_eq(((float *)r.u.tensor->data)[199], -1.0f);
	tw_value_destroy(&r);
	tw_ops_limits_set(NULL);
}
