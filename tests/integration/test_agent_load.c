/* Load and payloads: 10,000 concurrent calls, several calling threads and
 * loops, and tensors of 0 B to 64 MiB echoed byte-exact. */
#include "harness.h"

#define NCALLS 10000

/* Issue n echo calls of base+i, retrying on backpressure; check all. */
static int many_calls(struct h_worker *w, tw_agent *a, const char *to,
		      int64_t base, int n)
{
	tw_future **fs = calloc((size_t)n, sizeof(*fs));
	W_ASSERT(w, fs != NULL, "calloc");
	int enospc = 0;
	for (int i = 0; i < n; i++) {
		tw_value args[1] = {tw_value_int(base + i)};
		tw_value t = H_TUPLE(args);
		tw_status st;
		while ((st = tw_rpc_async(a, to, "echo", &t, NULL, -1,
					  &fs[i])) == TW_ENOSPC) {
			enospc++;
			sched_yield();
		}
		W_ASSERT(w, st == TW_OK, "async %d: %s", i, tw_status_name(st));
	}
	for (int i = 0; i < n; i++) {
		tw_status st = tw_future_wait(fs[i], -1);
		W_ASSERT(w, st == TW_OK, "call %d: %s", i, tw_status_name(st));
		const tw_value *v = tw_future_value(fs[i]);
		W_ASSERT(w, v && v->kind == TW_KIND_INT && v->u.i == base + i,
			 "value %d", i);
		tw_future_release(fs[i]);
	}
	free(fs);
	return 0;
}

static int w_many(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 0) {
		if (many_calls(w, a, "w1", 0, NCALLS) != 0)
			return 1;
		/* and to self */
		if (many_calls(w, a, "w0", 1 << 20, 2000) != 0)
			return 1;
		struct tw_agent_stats s;
		tw_agent_get_stats(a, &s);
		W_ASSERT(w, s.calls_started == NCALLS + 2000,
			 "started %" PRIu64, s.calls_started);
		W_ASSERT(w, s.calls_sent == NCALLS, "sent %" PRIu64,
			 s.calls_sent);
		W_ASSERT(w, s.late_responses == 0 && s.bad_frames == 0,
			 "clean");
	}
	W_ASSERT(w, tw_agent_outstanding(a) == 0, "outstanding");
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

Test(load, ten_thousand_concurrent_calls, .timeout = 120)
{
	h_run_group(2, w_many, NULL, NULL, 0);
}

/* Several application threads over two loops, both ways at once. */
struct caller_arg {
	struct h_worker *w;
	tw_agent *a;
	const char *to;
	int64_t base;
	int rc;
};

static void *caller(void *p)
{
	struct caller_arg *c = p;
	c->rc = many_calls(c->w, c->a, c->to, c->base, 2500);
	return NULL;
}

static int w_threads(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.num_loops = 2;
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	struct caller_arg ca[3];
	pthread_t th[3];
	for (int i = 0; i < 3; i++) {
		ca[i] = (struct caller_arg){
			.w = w,
			.a = a,
			.to = h_names[(w->rank + 1 + i) % w->world],
			.base = (int64_t)i << 32};
		pthread_create(&th[i], NULL, caller, &ca[i]);
	}
	int rc = 0;
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		rc |= ca[i].rc;
	}
	W_ASSERT(w, rc == 0, "callers");
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

Test(load, threads_and_loops_both_ways, .timeout = 120)
{
	h_run_group(2, w_threads, NULL, NULL, 0);
}

/* ---- tensors ---- */

static int echo_tensor(struct h_worker *w, tw_agent *a, const char *fn,
		       size_t n)
{
	tw_tensor t;
	int64_t shape[1] = {(int64_t)n};
	W_ASSERT(w, tw_tensor_alloc(&t, TW_UINT8, 1, shape) == TW_OK,
		 "alloc %zu", n);
	unsigned char *p = t.data;
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 31u + 7u + (i >> 12));
	tw_value tv;
	W_ASSERT(w, tw_value_tensor(&tv, &t) == TW_OK, "value");
	tw_value args[1] = {tv};
	tw_value targs = H_TUPLE(args);
	tw_value r, e;
	tw_status st = tw_rpc_sync(a, "w1", fn, &targs, NULL, 30000, &r, &e);
	W_ASSERT(w, st == TW_OK, "%s %zu B: %s", fn, n, tw_status_name(st));
	const tw_tensor *rt;
	W_ASSERT(w, tw_value_get_tensor(&r, &rt) == TW_OK, "tensor back");
	W_ASSERT(w,
		 rt->dtype == TW_UINT8 && rt->ndim == 1 &&
			 rt->shape[0] == (int64_t)n,
		 "shape");
	W_ASSERT(w, n == 0 || memcmp(rt->data, t.data, n) == 0,
		 "bytes differ (%zu B)", n);
	W_ASSERT(w, tw_tensor_equal(rt, &t), "equal");
	tw_value_destroy(&r);
	tw_value_destroy(&tv);
	tw_tensor_release(&t);
	return 0;
}

static int w_tensors(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 0) {
		size_t sizes[] = {0, 1, 4096, (size_t)64 << 20};
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			if (echo_tensor(w, a, "echo", sizes[i]) != 0)
				return 1;
			if (echo_tensor(w, a, "echo_borrow", sizes[i]) != 0)
				return 1;
		}
		if (echo_tensor(w, a, "echo_blocking", 4096) != 0)
			return 1;
		if (echo_tensor(w, a, "echo_blocking", (size_t)1 << 20) != 0)
			return 1;

		/* A strided float32 view (a transpose) and two tensors in one
		 * call, in kwargs. */
		tw_tensor m;
		int64_t shape[2] = {33, 17};
		W_ASSERT(w, tw_tensor_alloc(&m, TW_FLOAT32, 2, shape) == TW_OK,
			 "alloc");
		float *fp = m.data;
		for (int i = 0; i < 33 * 17; i++)
			fp[i] = (float)i * 0.5f;
		tw_tensor tr;
		int64_t tshape[2] = {17, 33}, tstr[2] = {1, 17};
		W_ASSERT(w,
			 tw_tensor_init(&tr, TW_FLOAT32, 2, tshape, tstr,
					m.data, m.buf) == TW_OK,
			 "view");
		tw_value pair, v1, v2;
		tw_value_list(&pair, 2);
		tw_value_tensor(&v1, &m);
		tw_value_tensor(&v2, &tr);
		tw_value_set_item(&pair, 0, v1);
		tw_value_set_item(&pair, 1, v2);
		tw_value args[1] = {pair};
		tw_value t = H_TUPLE(args);
		tw_value r, e;
		st = tw_rpc_sync(a, "w1", "echo", &t, NULL, -1, &r, &e);
		W_ASSERT(w, st == TW_OK, "pair: %s", tw_status_name(st));
		W_ASSERT(w, tw_value_equal(&r, &pair), "pair equal");
		tw_value_destroy(&r);
		tw_value_destroy(&pair);
		tw_tensor_release(&tr);
		tw_tensor_release(&m);
	}
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

Test(load, tensors_echoed_byte_exact, .timeout = 120)
{
	h_run_group(2, w_tensors, NULL, NULL, 0);
}
