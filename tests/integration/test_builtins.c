/* Builtin aten:: operators and schema'd user functions between processes:
 * overload choice, kwargs, broadcasting and promotion, torch's errors, and
 * the remote function list. */
#include "harness.h"

#include <tensorwire/schema.h>

#include "rpc/ops/ops.h"

/* demo::poly(int x, int a=1, *, int b=0, float c=0.5) -> float */
static tw_status fn_poly(tw_call_ctx *ctx, const tw_value *b, uint32_t nb,
			 tw_value *result, void *arg)
{
	if (nb != 4)
		return TW_EINVAL;
	*result = tw_value_double((double)(b[1].u.i * b[0].u.i + b[2].u.i) +
				  b[3].u.d);
	return TW_OK;
}

static tw_status setup_builtins(tw_agent *a, void *arg)
{
	tw_status st = h_register_all(a, arg);
	if (st != TW_OK)
		return st;
	return tw_agent_register_schema(
		a,
		"demo::poly(int x, int a=1, *, int b=0, float c=0.5) -> float",
		fn_poly, NULL, 0);
}

/* An owned float-ish tensor value of dtype dt from doubles. */
static tw_value mk(tw_dtype dt, unsigned ndim, const int64_t *shape,
		   const double *vals)
{
	tw_tensor t;
	if (tw_tensor_alloc(&t, dt, ndim, shape) != TW_OK)
		abort();
	int64_t n;
	tw_tensor_numel(&t, &n);
	for (int64_t i = 0; i < n; i++) {
		tw_scalar s = dt == TW_FLOAT32 || dt == TW_FLOAT64
				      ? tw_scalar_double(vals[i])
				      : tw_scalar_int((int64_t)vals[i]);
		tw_ops_scalar_store(&s, dt,
				    (char *)t.data +
					    i * (int64_t)tw_dtype_size(dt));
	}
	tw_value v;
	tw_value_tensor(&v, &t);
	tw_tensor_release(&t);
	return v;
}

static double at(const tw_value *v, int64_t i)
{
	const tw_tensor *t = v->u.tensor;
	double d = 0;
	tw_ops_convert_one(&d, TW_FLOAT64,
			   (const char *)t->data +
				   i * (int64_t)tw_dtype_size(t->dtype),
			   t->dtype);
	return d;
}

static tw_value ilist(int n, const int64_t *v)
{
	tw_value l;
	tw_value_list(&l, (uint32_t)n);
	for (int i = 0; i < n; i++)
		tw_value_set_item(&l, (uint32_t)i, tw_value_int(v[i]));
	return l;
}

static void destroy_all(tw_value *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		tw_value_destroy(&v[i]);
}

/* kwargs dict from (key, value) pairs (values moved). */
static tw_value kw(int n, const char **keys, tw_value *vals)
{
	tw_value d;
	tw_value_dict(&d, (uint32_t)n);
	for (int i = 0; i < n; i++)
		tw_value_dict_set(&d, (uint32_t)i, keys[i], vals[i]);
	return d;
}

static int w_builtins(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.setup = setup_builtins;
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	const char *peer = h_names[(w->rank + 1) % w->world];
	tw_value r, e;
	static const int64_t s23[] = {2, 3}, s21[] = {2, 1}, s3[] = {3},
			     s32[] = {3, 2};
	static const double v6[] = {1, 2, 3, 4, 5, 6}, v3[] = {10, 20, 30};

	/* aten::add.Tensor across processes */
	{
		tw_value av[2] = {mk(TW_FLOAT32, 2, s23, v6),
				  mk(TW_FLOAT32, 2, s23, v6)};
		tw_value args = H_TUPLE(av);
		st = tw_rpc_sync(a, peer, "aten::add", &args, NULL, -1, &r, &e);
		W_ASSERT(w, st == TW_OK, "add: %s %s", tw_status_name(st),
			 e.kind == TW_KIND_ERROR ? e.u.err->msg : "");
		W_ASSERT(w,
			 r.kind == TW_KIND_TENSOR &&
				 r.u.tensor->dtype == TW_FLOAT32 &&
				 r.u.tensor->ndim == 2 && at(&r, 5) == 12.0,
			 "add result");
		tw_value_destroy(&r);
		/* alpha kwarg: a + 3 * b */
		const char *k[1] = {"alpha"};
		tw_value kv[1] = {tw_value_int(3)};
		tw_value kwargs = kw(1, k, kv);
		st = tw_rpc_sync(a, peer, "aten::add", &args, &kwargs, -1, &r,
				 &e);
		W_ASSERT(w, st == TW_OK, "add alpha: %s", tw_status_name(st));
		W_ASSERT(w, at(&r, 1) == 8.0, "alpha result %g", at(&r, 1));
		tw_value_destroy(&r);
		tw_value_destroy(&kwargs);
		destroy_all(av, 2);
	}
	/* add.Scalar chosen for (tensor, 2) */
	{
		tw_value av[2] = {mk(TW_INT32, 1, s3, v3), tw_value_int(2)};
		tw_value args = H_TUPLE(av);
		st = tw_rpc_sync(a, peer, "aten::add", &args, NULL, -1, &r, &e);
		W_ASSERT(w, st == TW_OK, "add.Scalar: %s", tw_status_name(st));
		W_ASSERT(w, r.u.tensor->dtype == TW_INT32 && at(&r, 2) == 32.0,
			 "add.Scalar result");
		tw_value_destroy(&r);
		destroy_all(av, 2);
	}
	/* broadcasting and int/float promotion */
	{
		static const double v2[] = {1, 2};
		tw_value av[2] = {mk(TW_INT64, 2, s21, v2),
				  mk(TW_FLOAT64, 1, s3, v3)};
		tw_value args = H_TUPLE(av);
		st = tw_rpc_sync(a, peer, "aten::mul", &args, NULL, -1, &r, &e);
		W_ASSERT(w, st == TW_OK, "mul: %s", tw_status_name(st));
		const tw_tensor *t = r.u.tensor;
		W_ASSERT(w,
			 t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3,
			 "broadcast shape");
		W_ASSERT(w, t->dtype == TW_FLOAT64, "promoted dtype %d",
			 t->dtype);
		W_ASSERT(w, at(&r, 5) == 60.0, "mul result");
		tw_value_destroy(&r);
		destroy_all(av, 2);
		tw_value bv[2] = {mk(TW_INT32, 1, s3, v3),
				  tw_value_double(0.5)};
		args = (tw_value)H_TUPLE(bv);
		st = tw_rpc_sync(a, peer, "aten::mul", &args, NULL, -1, &r, &e);
		W_ASSERT(w,
			 st == TW_OK && r.u.tensor->dtype == TW_FLOAT32 &&
				 at(&r, 0) == 5.0,
			 "int32 * 0.5 -> float32");
		tw_value_destroy(&r);
		destroy_all(bv, 2);
	}
	/* mm */
	{
		tw_value av[2] = {mk(TW_FLOAT64, 2, s23, v6),
				  mk(TW_FLOAT64, 2, s32, v6)};
		tw_value args = H_TUPLE(av);
		st = tw_rpc_sync(a, peer, "aten::mm", &args, NULL, -1, &r, &e);
		W_ASSERT(w, st == TW_OK, "mm: %s", tw_status_name(st));
		/* [[1,2,3],[4,5,6]] @ [[1,2],[3,4],[5,6]] = [[22,28],[49,64]] */
		W_ASSERT(w,
			 r.u.tensor->shape[0] == 2 &&
				 r.u.tensor->shape[1] == 2 && at(&r, 0) == 22 &&
				 at(&r, 3) == 64,
			 "mm result");
		tw_value_destroy(&r);
		destroy_all(av, 2);
	}
	/* sum.dim_IntList with keepdim kwarg */
	{
		static const int64_t d1[] = {1};
		tw_value av[2] = {mk(TW_FLOAT32, 2, s23, v6), ilist(1, d1)};
		tw_value args = H_TUPLE(av);
		const char *k[1] = {"keepdim"};
		tw_value kv[1] = {tw_value_bool(true)};
		tw_value kwargs = kw(1, k, kv);
		st = tw_rpc_sync(a, peer, "aten::sum", &args, &kwargs, -1, &r,
				 &e);
		W_ASSERT(w, st == TW_OK, "sum: %s", tw_status_name(st));
		W_ASSERT(w,
			 r.u.tensor->ndim == 2 && r.u.tensor->shape[0] == 2 &&
				 r.u.tensor->shape[1] == 1 && at(&r, 0) == 6 &&
				 at(&r, 1) == 15,
			 "sum result");
		tw_value_destroy(&r);
		tw_value_destroy(&kwargs);
		destroy_all(av, 2);
	}
	/* rand.seed: the same tensor from every worker and locally */
	{
		static const int64_t s44[] = {4, 4};
		tw_tensor want;
		W_ASSERT(w, tw_op_rand(2, s44, 7, NULL, &want) == TW_OK,
			 "local rand");
		for (int q = 0; q < w->world; q++) {
			tw_value av[1] = {ilist(2, s44)};
			tw_value args = H_TUPLE(av);
			const char *k[1] = {"seed"};
			tw_value kv[1] = {tw_value_int(7)};
			tw_value kwargs = kw(1, k, kv);
			st = tw_rpc_sync(a, h_names[q], "aten::rand", &args,
					 &kwargs, -1, &r, &e);
			W_ASSERT(w, st == TW_OK, "rand.seed on %d: %s", q,
				 tw_status_name(st));
			W_ASSERT(w, tw_tensor_equal(r.u.tensor, &want),
				 "rand.seed differs on %d", q);
			tw_value_destroy(&r);
			tw_value_destroy(&kwargs);
			destroy_all(av, 1);
		}
		tw_tensor_release(&want);
	}
	/* a user function by schema: kwargs and defaults */
	{
		tw_value av[1] = {tw_value_int(5)};
		tw_value args = H_TUPLE(av);
		const char *k[1] = {"b"};
		tw_value kv[1] = {tw_value_int(3)};
		tw_value kwargs = kw(1, k, kv);
		st = tw_rpc_sync(a, peer, "demo::poly", &args, &kwargs, -1, &r,
				 &e);
		W_ASSERT(w,
			 st == TW_OK && r.kind == TW_KIND_DOUBLE &&
				 r.u.d == 8.5,
			 "poly: %s %g", tw_status_name(st), r.u.d);
		tw_value_destroy(&kwargs);
		/* wrong type: names the argument and the expected type */
		tw_value bv[1] = {H_STR("five")};
		args = (tw_value)H_TUPLE(bv);
		st = tw_rpc_sync(a, peer, "demo::poly", &args, NULL, -1, &r,
				 &e);
		W_ASSERT(w, st == TW_ETYPE, "poly(str): %s",
			 tw_status_name(st));
		W_ASSERT(
			w,
			e.kind == TW_KIND_ERROR &&
				strstr(e.u.err->msg,
				       "Expected a value of type 'int' for argument 'x' but instead found type 'str'") !=
					NULL,
			"message: %s",
			e.kind == TW_KIND_ERROR ? e.u.err->msg : "-");
		W_ASSERT(w,
			 e.u.err->origin ==
				 (uint32_t)((w->rank + 1) % w->world),
			 "origin %u", e.u.err->origin);
		tw_value_destroy(&e);
	}
	/* no matching overload */
	{
		tw_value av[2] = {mk(TW_FLOAT32, 1, s3, v3), H_STR("str")};
		tw_value args = H_TUPLE(av);
		st = tw_rpc_sync(a, peer, "aten::add", &args, NULL, -1, &r, &e);
		W_ASSERT(w, st == TW_ETYPE, "add(t, str): %s",
			 tw_status_name(st));
		const char *m = e.u.err->msg;
		W_ASSERT(
			w,
			strstr(m,
			       "Failed to match operator name aten::add and arguments (args: (Tensor, str), kwargs: {}) to a builtin operator") !=
					NULL &&
				strstr(m, "aten::add.Tensor(") != NULL &&
				strstr(m, "aten::add.Scalar(") != NULL,
			"message: %s", m);
		tw_value_destroy(&e);
		destroy_all(av, 1);
	}
	/* a kernel error travels with its kind and message */
	{
		tw_value av[2] = {mk(TW_FLOAT32, 2, s23, v6),
				  mk(TW_FLOAT32, 2, s23, v6)};
		tw_value args = H_TUPLE(av);
		st = tw_rpc_sync(a, peer, "aten::mm", &args, NULL, -1, &r, &e);
		W_ASSERT(
			w,
			st == TW_ERUNTIME &&
				strstr(e.u.err->msg,
				       "mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)") !=
					NULL,
			"mm error: %s", tw_status_name(st));
		tw_value_destroy(&e);
		destroy_all(av, 2);
	}
	/* the remote worker's function list */
	{
		tw_value l;
		st = tw_rpc_list_functions(a, peer, -1, &l);
		W_ASSERT(w, st == TW_OK && l.kind == TW_KIND_LIST, "list: %s",
			 tw_status_name(st));
		bool add = false, poly = false, echo = false;
		for (uint32_t i = 0; i < l.len; i++) {
			const tw_value *t = &l.u.items[i];
			const char *n = t->u.items[0].u.str,
				   *s = t->u.items[1].u.str;
			if (strcmp(n, "aten::add.Tensor") == 0)
				add = strcmp(s,
					     "aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor") ==
				      0;
			if (strcmp(n, "demo::poly") == 0)
				poly = strcmp(s,
					      "demo::poly(int x, int a=1, *, int b=0, float c=0.5) -> float") ==
				       0;
			if (strcmp(n, "echo") == 0)
				echo = s[0] == '\0';
		}
		W_ASSERT(w, add && poly && echo, "list contents %d %d %d", add,
			 poly, echo);
		tw_value mine;
		W_ASSERT(w, tw_agent_list_functions(a, &mine) == TW_OK,
			 "own list");
		W_ASSERT(w, tw_value_equal(&mine, &l), "lists differ");
		tw_value_destroy(&mine);
		tw_value_destroy(&l);
	}
	/* registration rules on a live agent */
	{
		W_ASSERT(w,
			 tw_agent_register_schema(a,
						  "demo::poly(int y) -> float",
						  fn_poly, NULL, 0) == TW_EBUSY,
			 "dup overload");
		W_ASSERT(w,
			 strcmp(tw_errmsg(TW_EBUSY), "function 'demo::poly' is "
						     "already registered") == 0,
			 "%s", tw_errmsg(TW_EBUSY));
		W_ASSERT(w,
			 tw_agent_register_schema(a, "echo(int y) -> int",
						  fn_poly, NULL, 0) == TW_EBUSY,
			 "plain name");
		W_ASSERT(w,
			 tw_agent_register(a, "aten::add", fn_echo, NULL, 0) ==
				 TW_EBUSY,
			 "plain over schema");
		W_ASSERT(w,
			 strcmp(tw_errmsg(TW_EBUSY), "function 'aten::add' is "
						     "already registered") == 0,
			 "%s", tw_errmsg(TW_EBUSY));
		W_ASSERT(w,
			 tw_agent_register_schema(a, "demo::(int y) -> float",
						  fn_poly, NULL,
						  0) == TW_EINVAL,
			 "parse error");
		W_ASSERT(w, strstr(tw_errmsg(TW_EINVAL), " at 6") != NULL, "%s",
			 tw_errmsg(TW_EINVAL));
	}
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

/* Bounds between processes: a call over max_frame fails at its caller
 * (TW_EOVERFLOW) while another call is in flight on the same connection,
 * which goes on working; a builtin over max_tensor_elems is refused by
 * its callee; one over loop_work_max runs on the callee's executor and
 * gives the right result. */
static int w_bounds(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.setup = setup_builtins;
	o.max_frame = 1 << 20;
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	const char *peer = h_names[(w->rank + 1) % w->world];
	tw_value r, e;

	/* An ordinary call in flight, then an oversized one on the same
	 * connection. */
	static const double v3[] = {1, 2, 3};
	static const int64_t s3[] = {3};
	tw_value small[1] = {mk(TW_FLOAT32, 1, s3, v3)};
	tw_value sargs = H_TUPLE(small);
	tw_future *f = NULL;
	st = tw_rpc_async(a, peer, "echo", &sargs, NULL, 10000, &f);
	W_ASSERT(w, st == TW_OK, "small call: %s", tw_status_name(st));
	int64_t big_n = (1 << 20) / 4 + 1; /* 1 MiB + 4 bytes of tensor */
	tw_tensor bt;
	W_ASSERT(w, tw_tensor_zeros(&bt, TW_FLOAT32, 1, &big_n) == TW_OK,
		 "alloc");
	tw_value big[1];
	tw_value_tensor(&big[0], &bt);
	tw_tensor_release(&bt);
	tw_value bargs = H_TUPLE(big);
	tw_future *g = NULL;
	st = tw_rpc_async(a, peer, "echo", &bargs, NULL, 10000, &g);
	W_ASSERT(w, st == TW_EOVERFLOW && g == NULL, "big call: %s",
		 tw_status_name(st));
	W_ASSERT(w, strstr(tw_errmsg(st), "(tw_agent_opts.max_frame)") != NULL,
		 "%s", tw_errmsg(st));
	st = tw_rpc_sync(a, peer, "echo", &bargs, NULL, 10000, &r, &e);
	W_ASSERT(w, st == TW_EOVERFLOW, "big sync call: %s",
		 tw_status_name(st));
	tw_value_destroy(&e);
	destroy_all(big, 1);
	st = tw_agent_wait(a, f, -1);
	W_ASSERT(w, st == TW_OK, "the call in flight: %s", tw_errmsg(st));
	tw_future_release(f);
	st = tw_rpc_sync(a, peer, "echo", &sargs, NULL, 10000, &r, &e);
	W_ASSERT(w, st == TW_OK && at(&r, 2) == 3.0, "after: %s",
		 tw_errmsg(st));
	tw_value_destroy(&r);
	destroy_all(small, 1);

	/* A factory over the callee's bounds. */
	{
		static const int64_t huge[] = {1 << 20, 1 << 20};
		tw_value av[1] = {ilist(2, huge)};
		tw_value args = H_TUPLE(av);
		st = tw_rpc_sync(a, peer, "aten::ones", &args, NULL, 10000, &r,
				 &e);
		W_ASSERT(w, st == TW_ERUNTIME, "ones: %s", tw_status_name(st));
		W_ASSERT(w,
			 e.kind == TW_KIND_ERROR &&
				 strstr(e.u.err->msg,
					"tw_agent_opts.max_tensor_elems") !=
					 NULL,
			 "ones: %s", tw_errmsg(st));
		tw_value_destroy(&e);
		destroy_all(av, 1);
	}
	/* Over loop_work_max (2^16): on the callee's executor. */
	{
		int64_t n = 100000; /* 400 KB: within max_frame */
		tw_tensor t;
		W_ASSERT(w, tw_tensor_alloc(&t, TW_FLOAT32, 1, &n) == TW_OK,
			 "alloc");
		for (int64_t i = 0; i < n; i++)
			((float *)t.data)[i] = 0.5f;
		tw_value av[1];
		tw_value_tensor(&av[0], &t);
		tw_tensor_release(&t);
		tw_value args = H_TUPLE(av);
		st = tw_rpc_sync(a, peer, "aten::sum", &args, NULL, 10000, &r,
				 &e);
		W_ASSERT(w, st == TW_OK && at(&r, 0) == 50000.0, "sum: %s",
			 tw_errmsg(st));
		tw_value_destroy(&r);
		destroy_all(av, 1);
	}
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

Test(builtins, bounds_between_2_workers, .timeout = 60)
{
	h_run_group(2, w_bounds, NULL, NULL, 0);
}

Test(builtins, between_2_workers, .timeout = 60)
{
	h_run_group(2, w_builtins, NULL, NULL, 0);
}

Test(builtins, between_3_workers, .timeout = 60)
{
	h_run_group(3, w_builtins, NULL, NULL, 0);
}
