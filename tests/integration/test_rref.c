/* Remote references across processes (docs/rref.md): tw_remote to a peer
 * and to self, to_here of tensors byte-exact, creation errors, proxies,
 * 10,000 short-lived RRefs with the owner's counters back to zero, an
 * owner killed under its users, and with three workers RRefs passed on
 * (A -> B -> C), returned, nested in values, and 100 users of one value.
 * Two run loops per worker, so requests and answers of one RRef travel on
 * different connections. Over io_uring, and over DPDK as rref_procs_dpdk
 * (TW_TEST_TRANSPORT=dpdk, harness.h). */
#include "harness.h"

#include <pthread.h>
#include <stdarg.h>

#include <tensorwire/rref.h>

/* Where a worker is, told by SIGALRM shortly before the harness's group
 * limit kills a stuck group without a word. */
static const char *volatile phase = "start";
static char phase_buf[96];
static int phase_rank;

static void on_alarm(int sig)
{
	(void)sig;
	char buf[160];
	int n = snprintf(buf, sizeof(buf), "[rank %d] still in: %s\n",
			 phase_rank, phase);
	if (n > 0)
		(void)!write(2, buf, (size_t)n);
}

static void watch(struct h_worker *w)
{
	phase_rank = w->rank;
	signal(SIGALRM, on_alarm);
	alarm(H_GROUP_LIMIT_S - 5);
}

static tw_value h_ints(tw_value *items, int64_t x, int64_t y)
{
	items[0] = tw_value_int(x);
	items[1] = tw_value_int(y);
	return (tw_value){.kind = TW_KIND_TUPLE,
			  .flags = TW_VALUE_BORROWED,
			  .len = 2,
			  .u.items = items};
}

static int to_here_int(struct h_worker *w, tw_rref *r, int64_t *v)
{
	tw_value out, err;
	tw_status st = tw_rref_to_here(r, 30000, &out, &err);
	W_ASSERT(w, st == TW_OK, "to_here: %s (%s)", tw_status_name(st),
		 tw_errmsg(st));
	W_ASSERT(w, out.kind == TW_KIND_INT, "kind %d", out.kind);
	*v = out.u.i;
	tw_value_destroy(&out);
	return 0;
}

/* A tensor of n bytes, byte i = (i * 7 + n) & 255. */
static int tensor_round_trip(struct h_worker *w, tw_agent *a, const char *to,
			     int64_t n)
{
	snprintf(phase_buf, sizeof(phase_buf), "tensor of %lld bytes to %s",
		 (long long)n, to);
	phase = phase_buf;
	tw_tensor t;
	W_ASSERT(w, tw_tensor_alloc(&t, TW_UINT8, 1, &n) == TW_OK, "alloc");
	uint8_t *p = t.data;
	for (int64_t i = 0; i < n; i++)
		p[i] = (uint8_t)((i * 7 + n) & 255);
	tw_value tv, args;
	W_ASSERT(w, tw_value_tensor(&tv, &t) == TW_OK, "value");
	tw_value_tuple(&args, 1);
	tw_value_set_item(&args, 0, tv);
	tw_rref *r;
	tw_status st = tw_remote(a, to, "echo", &args, NULL, -1, &r);
	W_ASSERT(w, st == TW_OK, "remote %lld: %s", (long long)n,
		 tw_errmsg(st));
	tw_value_destroy(&args);
	tw_tensor_release(&t);
	tw_value out, err;
	st = tw_rref_to_here(r, 60000, &out, &err);
	W_ASSERT(w, st == TW_OK, "to_here %lld: %s", (long long)n,
		 tw_errmsg(st));
	W_ASSERT(w, out.kind == TW_KIND_TENSOR, "kind");
	const tw_tensor *o = out.u.tensor;
	size_t nb = 0;
	W_ASSERT(w, tw_tensor_nbytes(o, &nb) == TW_OK && nb == (size_t)n,
		 "%zu bytes, expected %lld", nb, (long long)n);
	const uint8_t *q = o->data;
	for (int64_t i = 0; i < n; i++)
		W_ASSERT(w, q[i] == (uint8_t)((i * 7 + n) & 255),
			 "byte %lld of %lld", (long long)i, (long long)n);
	tw_value_destroy(&out);
	tw_rref_release(r);
	return 0;
}

/* Short-lived RRefs made one after another (a third to self), each
 * released at once, every tenth fetched first. */
#define N_SHORT 10000

static int w_basics(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.num_loops = 2;
	watch(w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	phase = "after init";
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 0) {
		tw_value it[2];
		tw_value args = h_ints(it, 40, 2);
		int64_t v;
		/* to a peer */
		tw_rref *r;
		W_ASSERT(w,
			 tw_remote(a, "w1", "add", &args, NULL, -1, &r) ==
				 TW_OK,
			 "remote");
		W_ASSERT(w, !tw_rref_is_owner(r), "user");
		if (to_here_int(w, r, &v) != 0)
			return 1;
		W_ASSERT(w, v == 42, "value %lld", (long long)v);
		W_ASSERT(w, tw_rref_confirmed_by_owner(r), "confirmed");
		phase = "proxies";
		/* a proxy: add(value, 8) on the owner */
		tw_value pit[1] = {tw_value_int(8)};
		tw_value pargs = H_TUPLE(pit);
		tw_value res, err;
		st = tw_rref_rpc_sync(r, "add", &pargs, NULL, -1, &res, &err);
		W_ASSERT(w, st == TW_OK && res.u.i == 50, "proxy: %s",
			 tw_errmsg(st));
		tw_rref *r2;
		W_ASSERT(w,
			 tw_rref_remote(r, "add", &pargs, NULL, -1, &r2) ==
				 TW_OK,
			 "remote proxy");
		tw_rref_release(r);
		if (to_here_int(w, r2, &v) != 0)
			return 1;
		W_ASSERT(w, v == 50, "remote proxy value %lld", (long long)v);
		tw_rref_release(r2);

		phase = "to self";
		/* to self */
		W_ASSERT(w,
			 tw_remote(a, "w0", "add", &args, NULL, -1, &r) ==
				 TW_OK,
			 "remote self");
		W_ASSERT(w, tw_rref_is_owner(r), "owner");
		if (to_here_int(w, r, &v) != 0)
			return 1;
		const tw_value *lv;
		W_ASSERT(w,
			 tw_rref_local_value(r, &lv) == TW_OK && lv->u.i == 42,
			 "local value");
		tw_rref_release(r);

		phase = "creation error";
		/* a creation error: kind, message, origin */
		tw_value eit[2] = {tw_value_int(TW_EVALUE),
				   tw_value_string_borrow("boom", 4)};
		tw_value eargs = H_TUPLE(eit);
		W_ASSERT(w,
			 tw_remote(a, "w1", "raise", &eargs, NULL, -1, &r) ==
				 TW_OK,
			 "remote raise");
		st = tw_rref_to_here(r, 30000, &res, &err);
		W_ASSERT(w, st == TW_EVALUE, "raise: %s", tw_status_name(st));
		W_ASSERT(w,
			 err.kind == TW_KIND_ERROR && err.u.err->origin == 1 &&
				 strcmp(err.u.err->msg, "boom") == 0,
			 "error value");
		W_ASSERT(w, strstr(tw_errmsg(st), "On worker 'w1'") != NULL,
			 "%s", tw_errmsg(st));
		tw_value_destroy(&err);
		tw_rref_release(r);

		phase = "tensors";
		uint64_t t_tensors = h_now_ms();
		/* Tensors byte-exact, to a peer and to self. Up to 64 MiB over
		 * DPDK too, as agent_load_dpdk echoes on the same vdev
		 * (net_af_packet on veth): the whole series takes about 1.8 s
		 * there (2.8 s under ASan) on 2 cores, well inside the group's
		 * limit. (agent_loss stops at 4 MiB, but only because 10% loss
		 * makes large tensors slow; agent_dpdk skips 64 MiB only where
		 * 1 MiB took over 150 ms.) */
		const int64_t sizes[] = {0, 1, 4097, 1 << 20, 64 << 20};
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			if (tensor_round_trip(w, a, "w1", sizes[i]) != 0 ||
			    tensor_round_trip(w, a, "w0", sizes[i]) != 0)
				return 1;
		}

		fprintf(stderr, "[rank 0] tensors, 0 B to 64 MiB: %llu ms\n",
			(unsigned long long)(h_now_ms() - t_tensors));
		phase = "many short-lived";
		uint64_t t_short = h_now_ms();
		/* many short-lived RRefs, some fetched, all released */
		for (int i = 0; i < N_SHORT; i++) {
			snprintf(phase_buf, sizeof(phase_buf),
				 "short-lived RRef %d", i);
			phase = phase_buf;
			tw_value ai[2];
			tw_value aa = h_ints(ai, i, 1);
			W_ASSERT(w,
				 tw_remote(a, i % 3 ? "w1" : "w0", "add", &aa,
					   NULL, -1, &r) == TW_OK,
				 "remote %d", i);
			if (i % 10 == 0) {
				if (to_here_int(w, r, &v) != 0)
					return 1;
				W_ASSERT(w, v == i + 1, "value %d", i);
			}
			tw_rref_release(r);
		}
		phase = "draining";
		/* Released handles go once their confirmations came; our
		 * own values, and our deletes, once the loops ran them. */
		struct tw_rref_stats s;
		uint64_t until = h_now_ms() + 20000;
		do {
			h_sleep_ms(2);
			tw_agent_rref_stats(a, &s);
		} while ((s.owned != 0 || s.users != 0 ||
			  tw_agent_outstanding(a) != 0) &&
			 h_now_ms() < until);
		W_ASSERT(w, s.users == 0, "users %llu",
			 (unsigned long long)s.users);
		W_ASSERT(w, s.owned == 0, "owned %llu",
			 (unsigned long long)s.owned);
		W_ASSERT(w, s.pending_users == 0, "pending");
		W_ASSERT(w, s.owner_users == 0 && s.forks_pending == 0,
			 "owner users %llu, forks pending %llu",
			 (unsigned long long)s.owner_users,
			 (unsigned long long)s.forks_pending);
		fprintf(stderr, "[rank 0] %d short-lived RRefs: %llu ms\n",
			N_SHORT, (unsigned long long)(h_now_ms() - t_short));
		atomic_store(&w->sh->flag[0], 1);
	} else {
		phase = "owner: waiting for w0";
		/* The owner: everything it held goes once w0 is done. */
		W_ASSERT(w, h_wait_all(w->sh->flag, 1, -1, 40000), "w0 done");
		struct tw_rref_stats s;
		uint64_t until = h_now_ms() + 5000;
		do {
			tw_agent_rref_stats(a, &s);
			if (s.owned == 0)
				break;
			h_sleep_ms(2);
		} while (h_now_ms() < until);
		W_ASSERT(w, s.owned == 0 && s.owner_users == 0,
			 "owned %llu users %llu", (unsigned long long)s.owned,
			 (unsigned long long)s.owner_users);
		W_ASSERT(w, s.refused == 0, "refused %llu",
			 (unsigned long long)s.refused);
		W_ASSERT(w,
			 s.forks_pending == 0 && s.users == 0 &&
				 s.pending_users == 0,
			 "forks pending %llu, users %llu, pending %llu",
			 (unsigned long long)s.forks_pending,
			 (unsigned long long)s.users,
			 (unsigned long long)s.pending_users);
		W_ASSERT(w, s.deletes_received >= N_SHORT * 2 / 3,
			 "deletes %llu",
			 (unsigned long long)s.deletes_received);
	}
	phase = "shutdown";
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s: %s", tw_status_name(st),
		 tw_errmsg(st));
	return 0;
}

Test(rref, remote_to_here_proxies_tensors_no_leak, .timeout = 300)
{
	h_run_group(2, w_basics, NULL, NULL, 0);
}

/* ---- threads: many application threads on two loops ---- */

struct thr_arg {
	tw_agent *a;
	int idx;
	_Atomic int bad;
};

static void *thr_main(void *p)
{
	struct thr_arg *t = p;
	for (int i = 0; i < 300; i++) {
		tw_value it[2];
		tw_value args = h_ints(it, i, t->idx);
		tw_rref *r;
		const char *to = (i + t->idx) % 3 ? "w1" : "w0";
		if (tw_remote(t->a, to, "add", &args, NULL, -1, &r) != TW_OK) {
			atomic_store(&t->bad, 1);
			return NULL;
		}
		if (i % 2 == 0) {
			tw_value out, err;
			tw_status st = tw_rref_to_here(r, 30000, &out, &err);
			if (st != TW_OK || out.kind != TW_KIND_INT ||
			    out.u.i != i + t->idx)
				atomic_store(&t->bad, 1);
			tw_value_destroy(&out);
			tw_value_destroy(&err);
		}
		if (i % 5 == 0) {
			tw_value pit[1] = {tw_value_int(1)};
			tw_value pargs = H_TUPLE(pit);
			tw_value out, err;
			tw_status st = tw_rref_rpc_sync(r, "add", &pargs, NULL,
							30000, &out, &err);
			if (st != TW_OK || out.u.i != i + t->idx + 1)
				atomic_store(&t->bad, 1);
			tw_value_destroy(&out);
			tw_value_destroy(&err);
		}
		tw_rref_release(r);
	}
	return NULL;
}

static int w_threads(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.num_loops = 2;
	watch(w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	phase = "threads";
	if (w->rank == 0) {
		pthread_t th[4];
		struct thr_arg ta[4];
		for (int i = 0; i < 4; i++) {
			ta[i].a = a;
			ta[i].idx = i;
			atomic_init(&ta[i].bad, 0);
			W_ASSERT(w,
				 pthread_create(&th[i], NULL, thr_main,
						&ta[i]) == 0,
				 "thread");
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			W_ASSERT(w, !atomic_load(&ta[i].bad), "thread %d", i);
		}
		struct tw_rref_stats s;
		uint64_t until = h_now_ms() + 20000;
		do {
			h_sleep_ms(2);
			tw_agent_rref_stats(a, &s);
		} while ((s.owned != 0 || s.users != 0 ||
			  tw_agent_outstanding(a) != 0) &&
			 h_now_ms() < until);
		W_ASSERT(w, s.owned == 0 && s.users == 0,
			 "owned %llu users %llu", (unsigned long long)s.owned,
			 (unsigned long long)s.users);
		atomic_store(&w->sh->flag[0], 1);
	} else {
		W_ASSERT(w, h_wait_all(w->sh->flag, 1, -1, 40000), "w0 done");
		struct tw_rref_stats s;
		uint64_t until = h_now_ms() + 5000;
		do {
			tw_agent_rref_stats(a, &s);
			if (s.owned == 0)
				break;
			h_sleep_ms(2);
		} while (h_now_ms() < until);
		W_ASSERT(w, s.owned == 0 && s.refused == 0,
			 "owned %llu refused %llu", (unsigned long long)s.owned,
			 (unsigned long long)s.refused);
	}
	phase = "shutdown";
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s: %s", tw_status_name(st),
		 tw_errmsg(st));
	return 0;
}

Test(rref, four_threads_two_loops, .timeout = 120)
{
	h_run_group(2, w_threads, NULL, NULL, 0);
}

/* ---- the owner killed under its users ---- */

static int w_owner_killed(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 0) {
		tw_value it[2];
		tw_value args = h_ints(it, 1, 2);
		tw_rref *r;
		W_ASSERT(w,
			 tw_remote(a, "w1", "add", &args, NULL, -1, &r) ==
				 TW_OK,
			 "remote");
		int64_t v;
		if (to_here_int(w, r, &v) != 0)
			return 1;
		tw_future *f;
		W_ASSERT(w,
			 tw_rpc_async(a, "w1", "die", NULL, NULL, 0, &f) ==
				 TW_OK,
			 "die");
		st = tw_future_wait(f, 30000);
		W_ASSERT(w, st == TW_EUNREACHABLE, "die: %s",
			 tw_status_name(st));
		tw_future_release(f);
		tw_value out, err;
		st = tw_rref_to_here(r, 30000, &out, &err);
		W_ASSERT(w, st == TW_EUNREACHABLE, "to_here: %s",
			 tw_status_name(st));
		tw_value_destroy(&err);
		/* A user created after the death fails the same way: at
		 * once once the death is known (rank 0 tells the group within
		 * ~100 ms), else from to_here. */
		tw_rref *r2 = NULL;
		st = tw_remote(a, "w1", "add", &args, NULL, -1, &r2);
		W_ASSERT(w, st == TW_OK || st == TW_EUNREACHABLE, "remote: %s",
			 tw_status_name(st));
		if (st == TW_OK) {
			st = tw_rref_to_here(r2, 30000, &out, &err);
			W_ASSERT(w, st == TW_EUNREACHABLE, "to_here 2: %s",
				 tw_status_name(st));
			tw_value_destroy(&err);
		}
		tw_rref_release(r);
		tw_rref_release(r2);
		st = tw_agent_shutdown(a, true);
		W_ASSERT(w, st == TW_OK, "shutdown: %s: %s", tw_status_name(st),
			 tw_errmsg(st));
		return 0;
	}
	for (;;)
		h_sleep_ms(1000);
}

Test(rref, owner_killed, .timeout = 120)
{
	h_run_group(2, w_owner_killed, NULL, NULL, 1u << 1);
}

/* ---- three workers: RRefs passed on, returned, nested, 100 users ----
 *
 * w0 drives; w1 and w2 serve the r:: functions below, which keep, pass
 * on, return and use RRefs, and show their counters. Every RRef the
 * application holds lives in its process's slot table (kept[]). */

#define KEEP_MAX 256

static pthread_mutex_t kept_mu = PTHREAD_MUTEX_INITIALIZER;
static tw_rref *kept[KEEP_MAX];

/* Keep r (its reference moves in); the slot, or -1 when full. */
static int kept_put(tw_rref *r)
{
	pthread_mutex_lock(&kept_mu);
	int s = -1;
	for (int i = 0; i < KEEP_MAX && s < 0; i++)
		if (kept[i] == NULL) {
			kept[i] = r;
			s = i;
		}
	pthread_mutex_unlock(&kept_mu);
	return s;
}

/* Slot i, retained (take = emptied, its reference moves out); NULL when
 * empty. */
static tw_rref *kept_get(int64_t i, bool take)
{
	if (i < 0 || i >= KEEP_MAX)
		return NULL;
	pthread_mutex_lock(&kept_mu);
	tw_rref *r = kept[i];
	if (take)
		kept[i] = NULL;
	else if (r != NULL)
		tw_rref_retain(r);
	pthread_mutex_unlock(&kept_mu);
	return r;
}

static tw_status h_fail(tw_value *result, tw_status kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static tw_status h_fail(tw_value *result, tw_status kind, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	tw_value_error(result, kind, 0, msg);
	return kind;
}

/*
 * Wait until r's owner has confirmed it (never long: one round trip).
 * Some tests wait for it before an RRef reaches its owner, to check the
 * counters at known points; sent_to_its_owner_before_its_remote_call
 * checks the other order.
 */
static bool wait_confirmed(tw_rref *r)
{
	uint64_t until = h_now_ms() + 20000;
	while (!tw_rref_confirmed_by_owner(r) && h_now_ms() < until)
		h_sleep_ms(1);
	return tw_rref_confirmed_by_owner(r);
}

static tw_status arg_int(const tw_value *args, uint32_t i, int64_t *out)
{
	const tw_value *x;
	tw_status st = tw_value_get_item(args, i, &x);
	return st == TW_OK ? tw_value_get_int(x, out) : st;
}

static tw_status arg_str(const tw_value *args, uint32_t i, const char **out)
{
	const tw_value *x;
	size_t n;
	tw_status st = tw_value_get_item(args, i, &x);
	return st == TW_OK ? tw_value_get_string(x, out, &n) : st;
}

/* Every RREF node of v, in walk order, kept: slots appended to list
 * (n of them so far). */
static tw_status keep_walk(const tw_value *v, tw_value *slots, uint32_t *n,
			   unsigned depth)
{
	tw_status st = TW_OK;
	switch (v->kind) {
	case TW_KIND_LIST:
	case TW_KIND_TUPLE:
		for (uint32_t i = 0; i < v->len && st == TW_OK && depth < 8;
		     i++)
			st = keep_walk(&v->u.items[i], slots, n, depth + 1);
		return st;
	case TW_KIND_DICT:
		for (uint32_t i = 0; i < v->len && st == TW_OK && depth < 8;
		     i++)
			st = keep_walk(&v->u.entries[i].val, slots, n,
				       depth + 1);
		return st;
	case TW_KIND_RREF: {
		if (*n >= slots->len)
			return TW_EINVAL;
		tw_rref *r;
		st = tw_rref_from_value(v, &r);
		if (st != TW_OK)
			return st;
		int s = kept_put(r);
		if (s < 0) {
			tw_rref_release(r);
			return TW_ENOSPC;
		}
		slots->u.items[(*n)++] = tw_value_int(s);
		return TW_OK;
	}
	default:
		return TW_OK;
	}
}

/* r::keep(...): keeps every RRef found in its arguments, nested ones
 * too; answers their slots, a list in walk order. */
static tw_status fn_keep(tw_call_ctx *ctx, const tw_value *args,
			 const tw_value *kwargs, tw_value *result, void *arg)
{
	tw_value slots;
	uint32_t n = 0;
	if (tw_value_list(&slots, 16) != TW_OK)
		return TW_ENOMEM;
	tw_status st = keep_walk(args, &slots, &n, 0);
	if (st != TW_OK) {
		tw_value_destroy(&slots);
		return h_fail(result, st, "keep: %s", tw_errmsg(st));
	}
	slots.len = n; /* the rest are NONE: nothing to free */
	*result = slots;
	return TW_OK;
}

/* r::pass(to, rref): passes its argument on, as received, to r::keep on
 * worker `to`; answers what that answers. */
static tw_status fn_pass(tw_call_ctx *ctx, const tw_value *args,
			 const tw_value *kwargs, tw_value *result, void *arg)
{
	const char *to;
	const tw_value *rv;
	if (arg_str(args, 0, &to) != TW_OK ||
	    tw_value_get_item(args, 1, &rv) != TW_OK)
		return h_fail(result, TW_EBADARGS, "pass(to, rref)");
	tw_value it[1] = {*rv};
	tw_value t = H_TUPLE(it);
	tw_future *f;
	tw_status st = tw_rpc_async(tw_call_agent(ctx), to, "r::keep", &t, NULL,
				    -1, &f);
	if (st != TW_OK)
		return h_fail(result, st, "pass: %s", tw_errmsg(st));
	tw_call_defer(ctx, f);
	tw_future_release(f);
	return TW_OK;
}

/* r::send_kept(slot, to): the RRef kept in slot, sent to r::keep on `to`
 * (the slot keeps it); answers what that answers. */
static tw_status fn_send_kept(tw_call_ctx *ctx, const tw_value *args,
			      const tw_value *kwargs, tw_value *result,
			      void *arg)
{
	int64_t s;
	const char *to;
	if (arg_int(args, 0, &s) != TW_OK || arg_str(args, 1, &to) != TW_OK)
		return h_fail(result, TW_EBADARGS, "send_kept(slot, to)");
	tw_rref *r = kept_get(s, false);
	if (r == NULL)
		return h_fail(result, TW_EINVAL, "slot %lld empty",
			      (long long)s);
	tw_value t, rv;
	tw_status st = tw_rref_value(r, &rv);
	tw_rref_release(r);
	if (st != TW_OK || tw_value_tuple(&t, 1) != TW_OK)
		return TW_ENOMEM;
	tw_value_set_item(&t, 0, rv);
	tw_future *f;
	st = tw_rpc_async(tw_call_agent(ctx), to, "r::keep", &t, NULL, -1, &f);
	tw_value_destroy(&t);
	if (st != TW_OK)
		return h_fail(result, st, "send_kept: %s", tw_errmsg(st));
	tw_call_defer(ctx, f);
	tw_future_release(f);
	return TW_OK;
}

/* r::give(slot): the RRef kept in slot, returned (the slot keeps it). */
static tw_status fn_give(tw_call_ctx *ctx, const tw_value *args,
			 const tw_value *kwargs, tw_value *result, void *arg)
{
	int64_t s;
	if (arg_int(args, 0, &s) != TW_OK)
		return h_fail(result, TW_EBADARGS, "give(slot)");
	tw_rref *r = kept_get(s, false);
	if (r == NULL)
		return h_fail(result, TW_EINVAL, "slot %lld empty",
			      (long long)s);
	tw_status st = tw_rref_value(r, result);
	tw_rref_release(r);
	return st;
}

/* r::drop(slot): releases the RRef kept in slot. */
static tw_status fn_drop(tw_call_ctx *ctx, const tw_value *args,
			 const tw_value *kwargs, tw_value *result, void *arg)
{
	int64_t s;
	if (arg_int(args, 0, &s) != TW_OK)
		return h_fail(result, TW_EBADARGS, "drop(slot)");
	tw_rref *r = kept_get(s, true);
	if (r == NULL)
		return h_fail(result, TW_EINVAL, "slot %lld empty",
			      (long long)s);
	tw_rref_release(r);
	return TW_OK;
}

/* r::make(to, x): tw_remote(to, add(x, 1)), returned as an RRef (blocking:
 * when `to` is the caller it waits for the confirmation, wait_confirmed). */
static tw_status fn_make(tw_call_ctx *ctx, const tw_value *args,
			 const tw_value *kwargs, tw_value *result, void *arg)
{
	const char *to;
	int64_t x;
	if (arg_str(args, 0, &to) != TW_OK || arg_int(args, 1, &x) != TW_OK)
		return h_fail(result, TW_EBADARGS, "make(to, x)");
	tw_value it[2];
	tw_value aa = h_ints(it, x, 1);
	tw_rref *r;
	tw_status st = tw_remote(tw_call_agent(ctx), to, "add", &aa, NULL, -1,
				 &r);
	if (st != TW_OK)
		return h_fail(result, st, "make: %s", tw_errmsg(st));
	if (tw_rref_get_id(r).owner == tw_call_caller(ctx) &&
	    !wait_confirmed(r)) {
		tw_rref_release(r);
		return h_fail(result, TW_ETIMEDOUT, "make: not confirmed");
	}
	st = tw_rref_value(r, result);
	tw_rref_release(r); /* the result holds it now */
	return st;
}

/* The workers r::make_list's RRefs live on, and how they nest: a list
 * [R0, R1, R2, {"r": R3}, (R4,)], Rk = add(x + k, 1) owned by
 * nest_owner[k]. */
static const char *const nest_owner[5] = {"w0", "w1", "w2", "w2", "w0"};

static tw_status nest_item(tw_agent *a, int k, int64_t x, tw_value *out)
{
	tw_value it[2];
	tw_value aa = h_ints(it, x + k, 1);
	tw_rref *r;
	tw_status st = tw_remote(a, nest_owner[k], "add", &aa, NULL, -1, &r);
	if (st != TW_OK)
		return st;
	/* fetched by w0: its own (wait_confirmed) */
	if (strcmp(nest_owner[k], "w0") == 0 && !wait_confirmed(r)) {
		tw_rref_release(r);
		return TW_ETIMEDOUT;
	}
	st = tw_rref_value(r, out);
	tw_rref_release(r);
	return st;
}

/* r::make_list(x) (blocking, as r::make: its caller is w0): the nested
 * RRefs above (run by tw_remote: its value is a value holding RRefs). */
static tw_status fn_make_list(tw_call_ctx *ctx, const tw_value *args,
			      const tw_value *kwargs, tw_value *result,
			      void *arg)
{
	int64_t x;
	if (arg_int(args, 0, &x) != TW_OK)
		return h_fail(result, TW_EBADARGS, "make_list(x)");
	tw_agent *a = tw_call_agent(ctx);
	tw_value l, d, t, v;
	tw_status st = tw_value_list(&l, 5);
	if (st != TW_OK)
		return st;
	for (int k = 0; k < 3 && st == TW_OK; k++)
		if ((st = nest_item(a, k, x, &v)) == TW_OK)
			tw_value_set_item(&l, (uint32_t)k, v);
	if (st == TW_OK && (st = tw_value_dict(&d, 1)) == TW_OK) {
		if ((st = nest_item(a, 3, x, &v)) == TW_OK)
			tw_value_dict_set(&d, 0, "r", v);
		tw_value_set_item(&l, 3, d);
	}
	if (st == TW_OK && (st = tw_value_tuple(&t, 1)) == TW_OK) {
		if ((st = nest_item(a, 4, x, &v)) == TW_OK)
			tw_value_set_item(&t, 0, v);
		tw_value_set_item(&l, 4, t);
	}
	if (st != TW_OK) {
		tw_value_destroy(&l);
		return h_fail(result, st, "make_list: %s", tw_errmsg(st));
	}
	*result = l;
	return TW_OK;
}

/* r::check(slot, expected, kind) (blocking: it waits): uses the RRef kept
 * in slot, as its holder would: to_here is `expected` (kind 0) or fails
 * with kind "boom"; the proxies rpc_sync and remote add 1 and 2 to it (or
 * fail alike). Answers (is_owner, confirmed_by_owner, owner id). */
static tw_status fn_check(tw_call_ctx *ctx, const tw_value *args,
			  const tw_value *kwargs, tw_value *result, void *arg)
{
	int64_t s, want, kind;
	if (arg_int(args, 0, &s) != TW_OK || arg_int(args, 1, &want) != TW_OK ||
	    arg_int(args, 2, &kind) != TW_OK)
		return h_fail(result, TW_EBADARGS,
			      "check(slot, expected, kind)");
	tw_rref *r = kept_get(s, false);
	if (r == NULL)
		return h_fail(result, TW_EINVAL, "slot %lld empty",
			      (long long)s);
	tw_rref_id id = tw_rref_get_id(r);
	tw_value out = tw_value_none(), err = tw_value_none();
	tw_value pit[1] = {tw_value_int(1)};
	tw_value pargs = H_TUPLE(pit);
	tw_rref *r2 = NULL;
	tw_status st = tw_rref_to_here(r, 30000, &out, &err);
	tw_status bad = TW_OK;
	char why[400] = "";
#define CHECK_FAIL(...)                                                        \
	do {                                                                   \
		if (bad == TW_OK) {                                            \
			bad = TW_EVALUE;                                       \
			snprintf(why, sizeof(why), __VA_ARGS__);               \
		}                                                              \
	} while (0)
	if (kind == 0 &&
	    (st != TW_OK || out.kind != TW_KIND_INT || out.u.i != want))
		CHECK_FAIL("to_here: %s (%s), kind %d value %lld, expected "
			   "%lld",
			   tw_status_name(st), st ? tw_errmsg(st) : "",
			   out.kind,
			   out.kind == TW_KIND_INT ? (long long)out.u.i : -1LL,
			   (long long)want);
	if (kind != 0 && (st != (tw_status)kind || err.kind != TW_KIND_ERROR ||
			  err.u.err->origin != id.owner ||
			  strcmp(err.u.err->msg, "boom") != 0))
		CHECK_FAIL("to_here: %s, expected %s \"boom\" from %u",
			   tw_status_name(st), tw_status_name((tw_status)kind),
			   id.owner);
	tw_value_destroy(&out);
	tw_value_destroy(&err);
	st = tw_rref_rpc_sync(r, "add", &pargs, NULL, 30000, &out, &err);
	if (kind == 0 &&
	    (st != TW_OK || out.kind != TW_KIND_INT || out.u.i != want + 1))
		CHECK_FAIL("rpc_sync proxy: %s", tw_status_name(st));
	if (kind != 0 && st != (tw_status)kind)
		CHECK_FAIL("rpc_sync proxy: %s, expected %s",
			   tw_status_name(st), tw_status_name((tw_status)kind));
	tw_value_destroy(&out);
	tw_value_destroy(&err);
	pit[0] = tw_value_int(2);
	st = tw_rref_remote(r, "add", &pargs, NULL, 30000, &r2);
	if (st != TW_OK) {
		CHECK_FAIL("remote proxy: %s", tw_status_name(st));
	} else {
		st = tw_rref_to_here(r2, 30000, &out, &err);
		if (kind == 0 && (st != TW_OK || out.kind != TW_KIND_INT ||
				  out.u.i != want + 2))
			CHECK_FAIL("remote proxy's to_here: %s",
				   tw_status_name(st));
		if (kind != 0 && st != (tw_status)kind)
			CHECK_FAIL("remote proxy's to_here: %s, expected %s",
				   tw_status_name(st),
				   tw_status_name((tw_status)kind));
		tw_value_destroy(&out);
		tw_value_destroy(&err);
		tw_rref_release(r2);
	}
#undef CHECK_FAIL
	bool owner = tw_rref_is_owner(r),
	     confirmed = tw_rref_confirmed_by_owner(r);
	tw_rref_release(r);
	if (bad != TW_OK)
		return h_fail(result, bad, "check slot %lld: %s", (long long)s,
			      why);
	tw_value_tuple(result, 3);
	tw_value_set_item(result, 0, tw_value_int(owner));
	tw_value_set_item(result, 1, tw_value_int(confirmed));
	tw_value_set_item(result, 2, tw_value_int(id.owner));
	return TW_OK;
}

/* r::users(created_on, local_id): the owner's counts of one value,
 * (status, users, forks in flight, self fork). */
static tw_status fn_users(tw_call_ctx *ctx, const tw_value *args,
			  const tw_value *kwargs, tw_value *result, void *arg)
{
	int64_t c, l;
	if (arg_int(args, 0, &c) != TW_OK || arg_int(args, 1, &l) != TW_OK)
		return h_fail(result, TW_EBADARGS, "users(created_on, id)");
	uint32_t users = 0, forks = 0;
	bool self = false;
	tw_status st = tw_agent_rref_value_users(
		tw_call_agent(ctx),
		(tw_guid){.created_on = (uint32_t)c, .local_id = (uint64_t)l},
		&users, &forks, &self);
	tw_value_tuple(result, 4);
	tw_value_set_item(result, 0, tw_value_int(st));
	tw_value_set_item(result, 1, tw_value_int(users));
	tw_value_set_item(result, 2, tw_value_int(forks));
	tw_value_set_item(result, 3, tw_value_int(self));
	return TW_OK;
}

#define NSTATS 5

static void stats_of(tw_agent *a, int64_t c[NSTATS])
{
	struct tw_rref_stats s;
	tw_agent_rref_stats(a, &s);
	c[0] = (int64_t)s.owned;
	c[1] = (int64_t)s.owner_users;
	c[2] = (int64_t)s.forks_pending;
	c[3] = (int64_t)s.users;
	c[4] = (int64_t)s.pending_users;
}

static const char *const stat_names[NSTATS] = {
	"owned", "owner_users", "forks_pending", "users", "pending_users"};

/* r::stats(): (owned, owner_users, forks_pending, users, pending_users). */
static tw_status fn_stats(tw_call_ctx *ctx, const tw_value *args,
			  const tw_value *kwargs, tw_value *result, void *arg)
{
	int64_t c[NSTATS];
	stats_of(tw_call_agent(ctx), c);
	tw_value_tuple(result, NSTATS);
	for (int i = 0; i < NSTATS; i++)
		tw_value_set_item(result, (uint32_t)i, tw_value_int(c[i]));
	return TW_OK;
}

static tw_status rr_setup(tw_agent *a, void *arg)
{
	tw_status st = h_register_all(a, arg);
	st |= tw_agent_register(a, "r::keep", fn_keep, NULL, 0);
	st |= tw_agent_register(a, "r::pass", fn_pass, NULL, 0);
	st |= tw_agent_register(a, "r::send_kept", fn_send_kept, NULL, 0);
	st |= tw_agent_register(a, "r::give", fn_give, NULL, 0);
	st |= tw_agent_register(a, "r::drop", fn_drop, NULL, 0);
	st |= tw_agent_register(a, "r::make", fn_make, NULL, TW_FN_BLOCKING);
	st |= tw_agent_register(a, "r::make_list", fn_make_list, NULL,
				TW_FN_BLOCKING);
	st |= tw_agent_register(a, "r::check", fn_check, NULL, TW_FN_BLOCKING);
	st |= tw_agent_register(a, "r::users", fn_users, NULL, 0);
	st |= tw_agent_register(a, "r::stats", fn_stats, NULL, 0);
	return st == TW_OK ? TW_OK : TW_EINVAL;
}

/* ---- w0's side: calls with checked answers ---- */

/* rpc_sync fn on `to`; its result in *res (owned); non-zero (and a
 * message) on failure. */
static int call(struct h_worker *w, tw_agent *a, const char *to, const char *fn,
		const tw_value *args, tw_value *res)
{
	tw_value err;
	tw_status st = tw_rpc_sync(a, to, fn, args, NULL, 30000, res, &err);
	W_ASSERT(w, st == TW_OK, "%s on %s: %s (%s)", fn, to,
		 tw_status_name(st), tw_errmsg(st));
	return 0;
}

/* Item i of a list or tuple of ints. */
static int64_t int_at(const tw_value *v, uint32_t i)
{
	const tw_value *x;
	int64_t n = -999999;
	if (tw_value_get_item(v, i, &x) == TW_OK)
		tw_value_get_int(x, &n);
	return n;
}

/* r::keep(rref) on `to`: the slot it kept r in. */
static int keep_on(struct h_worker *w, tw_agent *a, const char *to, tw_rref *r,
		   int64_t *slot)
{
	tw_value it[1], res;
	W_ASSERT(w, tw_rref_value(r, &it[0]) == TW_OK, "rref value");
	tw_value t = H_TUPLE(it);
	int rc = call(w, a, to, "r::keep", &t, &res);
	tw_value_destroy(&it[0]);
	if (rc != 0)
		return rc;
	*slot = int_at(&res, 0);
	W_ASSERT(w, res.len == 1 && *slot >= 0, "kept %u", res.len);
	tw_value_destroy(&res);
	return 0;
}

/* fn(slot[, more ints]) on `to`, its result discarded. */
static int slot_call(struct h_worker *w, tw_agent *a, const char *to,
		     const char *fn, int64_t slot, int64_t x, int64_t y,
		     tw_value *res)
{
	tw_value it[3] = {tw_value_int(slot), tw_value_int(x), tw_value_int(y)};
	tw_value t = H_TUPLE(it);
	tw_value r;
	if (call(w, a, to, fn, &t, &r) != 0)
		return 1;
	if (res != NULL)
		*res = r;
	else
		tw_value_destroy(&r);
	return 0;
}

/* The counters of `to` (this worker's own, read directly, when to is
 * NULL). */
static int stats_on(struct h_worker *w, tw_agent *a, const char *to,
		    int64_t c[NSTATS])
{
	if (to == NULL) {
		stats_of(a, c);
		return 0;
	}
	tw_value res;
	if (call(w, a, to, "r::stats", NULL, &res) != 0)
		return 1;
	for (uint32_t i = 0; i < NSTATS; i++)
		c[i] = int_at(&res, i);
	tw_value_destroy(&res);
	return 0;
}

/* Every worker's counters back to zero (deletes, fork accepts and their
 * ACKs drain asynchronously: wait for them, within a bound). */
static int all_clean(struct h_worker *w, tw_agent *a)
{
	const char *who[3] = {NULL, "w1", "w2"};
	for (int k = 0; k < 3; k++) {
		int64_t c[NSTATS];
		uint64_t until = h_now_ms() + 10000;
		bool zero;
		do {
			if (stats_on(w, a, who[k], c) != 0)
				return 1;
			zero = true;
			for (int i = 0; i < NSTATS; i++)
				zero = zero && c[i] == 0;
			if (!zero)
				h_sleep_ms(2);
		} while (!zero && h_now_ms() < until);
		for (int i = 0; i < NSTATS; i++)
			W_ASSERT(w, c[i] == 0, "w%d: %s %lld", k, stat_names[i],
				 (long long)c[i]);
	}
	return 0;
}

/* A -> B -> C: w0 makes an RRef owned by `owner` (add(x, 1), or a
 * creation error when raise), has w1 pass it on to w2 as received, lets
 * go of its own at once (before the pass is answered) and has w2 use it. */
static int pass_abc(struct h_worker *w, tw_agent *a, const char *owner,
		    int64_t x, bool raise)
{
	snprintf(phase_buf, sizeof(phase_buf), "A->B->C, owner %s%s", owner,
		 raise ? ", an error" : "");
	phase = phase_buf;
	tw_value it[2];
	tw_value aa = h_ints(it, x, 1);
	tw_value eit[2] = {tw_value_int(TW_EVALUE),
			   tw_value_string_borrow("boom", 4)};
	tw_value ea = H_TUPLE(eit);
	tw_rref *r;
	tw_status st = tw_remote(a, owner, raise ? "raise" : "add",
				 raise ? &ea : &aa, NULL, -1, &r);
	W_ASSERT(w, st == TW_OK, "remote: %s", tw_errmsg(st));
	/* w1 or w2 may be its owner, on the way: wait_confirmed */
	W_ASSERT(w, wait_confirmed(r), "not confirmed");
	tw_value pit[2] = {H_STR("w2"), tw_value_none()};
	W_ASSERT(w, tw_rref_value(r, &pit[1]) == TW_OK, "value");
	tw_value pargs = H_TUPLE(pit);
	tw_future *f;
	st = tw_rpc_async(a, "w1", "r::pass", &pargs, NULL, 30000, &f);
	tw_value_destroy(&pit[1]);
	W_ASSERT(w, st == TW_OK, "pass: %s", tw_errmsg(st));
	tw_rref_release(r); /* at once: the forks in flight keep the value */
	st = tw_future_wait(f, 30000);
	W_ASSERT(w, st == TW_OK, "pass: %s (%s)", tw_status_name(st),
		 tw_errmsg(st));
	int64_t slot = int_at(tw_future_value(f), 0);
	tw_future_release(f);
	W_ASSERT(w, slot >= 0, "slot %lld", (long long)slot);
	tw_value res;
	if (slot_call(w, a, "w2", "r::check", slot, x + 1,
		      raise ? TW_EVALUE : 0, &res) != 0)
		return 1;
	bool owner_here = strcmp(owner, "w2") == 0;
	W_ASSERT(w, int_at(&res, 0) == owner_here && int_at(&res, 1) == 1,
		 "at C: owner %lld confirmed %lld", (long long)int_at(&res, 0),
		 (long long)int_at(&res, 1));
	W_ASSERT(w, int_at(&res, 2) == owner[1] - '0', "owner id %lld",
		 (long long)int_at(&res, 2));
	tw_value_destroy(&res);
	return slot_call(w, a, "w2", "r::drop", slot, 0, 0, NULL);
}

/* Our own value id: wait until it has one user, no fork in flight and
 * no self fork; freed meanwhile fails. */
static int wait_own_users(struct h_worker *w, tw_agent *a, tw_guid id)
{
	uint64_t until = h_now_ms() + 10000;
	uint32_t users, forks;
	bool self;
	for (;;) {
		W_ASSERT(w,
			 tw_agent_rref_value_users(a, id, &users, &forks,
						   &self) == TW_OK,
			 "freed while a user holds it");
		if (users == 1 && forks == 0 && !self)
			return 0;
		W_ASSERT(w, h_now_ms() < until,
			 "users %u forks %u self %d, expected 1 user", users,
			 forks, self);
		h_sleep_ms(1);
	}
}

static int w0_pass(struct h_worker *w, tw_agent *a)
{
	/* owned by B (sent to its owner, then from it), by A (from the
	 * owner, then user to user), by C (back to its owner at the end) */
	if (pass_abc(w, a, "w1", 10, false) != 0 ||
	    pass_abc(w, a, "w0", 20, false) != 0 ||
	    pass_abc(w, a, "w2", 30, false) != 0 ||
	    pass_abc(w, a, "w1", 40, true) != 0 ||
	    pass_abc(w, a, "w2", 50, true) != 0)
		return 1;

	/* A's own value kept by B (tw_rref_from_value), A lets go: B's
	 * user alone keeps it; B later sends its kept RRef on to C and
	 * drops it; C uses it, then C's user alone keeps it. */
	phase = "A -> B keeps -> C";
	tw_value it[2];
	tw_value aa = h_ints(it, 7, 1);
	tw_rref *r;
	W_ASSERT(w, tw_remote(a, "w0", "add", &aa, NULL, -1, &r) == TW_OK,
		 "remote");
	tw_guid id = tw_rref_get_id(r).rref;
	int64_t sb, sc;
	if (keep_on(w, a, "w1", r, &sb) != 0)
		return 1;
	tw_rref_release(r);
	/* B's fork is in flight until its CHILD_ACCEPT reaches us */
	if (wait_own_users(w, a, id) != 0)
		return 1;
	tw_value sit[2] = {tw_value_int(sb), H_STR("w2")};
	tw_value sargs = H_TUPLE(sit), res;
	if (call(w, a, "w1", "r::send_kept", &sargs, &res) != 0)
		return 1;
	sc = int_at(&res, 0);
	tw_value_destroy(&res);
	if (slot_call(w, a, "w1", "r::drop", sb, 0, 0, NULL) != 0 ||
	    slot_call(w, a, "w2", "r::check", sc, 8, 0, &res) != 0)
		return 1;
	W_ASSERT(w, int_at(&res, 0) == 0 && int_at(&res, 1) == 1, "at C");
	tw_value_destroy(&res);
	/* B's delete and C's fork: one user, C's (the delete and the fork
	 * may still be on their way) */
	if (wait_own_users(w, a, id) != 0)
		return 1;
	if (slot_call(w, a, "w2", "r::drop", sc, 0, 0, NULL) != 0)
		return 1;
	return 0;
}

/* An RRef returned from a call: by a handler that made it (owned by the
 * caller, the handler's worker, a third), through a future, and one
 * nobody claims (deleted with its message). */
static int w0_returned(struct h_worker *w, tw_agent *a)
{
	static const char *const owners[3] = {"w0", "w1", "w2"};
	for (int k = 0; k < 3; k++) {
		snprintf(phase_buf, sizeof(phase_buf), "returned, owned by %s",
			 owners[k]);
		phase = phase_buf;
		tw_value it[2] = {H_STR(owners[k]), tw_value_int(60 + k)};
		tw_value t = H_TUPLE(it), res;
		if (call(w, a, "w1", "r::make", &t, &res) != 0)
			return 1;
		tw_rref *r;
		tw_status st = tw_rref_from_value(&res, &r);
		W_ASSERT(w, st == TW_OK, "from_value: %s", tw_errmsg(st));
		tw_value_destroy(&res); /* the result's reference; r stays */
		W_ASSERT(w, tw_rref_is_owner(r) == (k == 0), "owner %d", k);
		int64_t v;
		if (to_here_int(w, r, &v) != 0)
			return 1;
		W_ASSERT(w, v == 61 + k, "value %lld", (long long)v);
		tw_value pit[1] = {tw_value_int(1)};
		tw_value pargs = H_TUPLE(pit), err;
		st = tw_rref_rpc_sync(r, "add", &pargs, NULL, 30000, &res,
				      &err);
		W_ASSERT(w, st == TW_OK && res.u.i == 62 + k, "proxy: %s",
			 tw_errmsg(st));
		W_ASSERT(w, tw_rref_confirmed_by_owner(r), "confirmed");
		tw_rref_release(r);
	}
	phase = "returned through a future";
	tw_value it[2] = {H_STR("w1"), tw_value_int(70)};
	tw_value t = H_TUPLE(it), res;
	tw_future *f;
	W_ASSERT(w,
		 tw_rpc_async(a, "w2", "r::make", &t, NULL, 30000, &f) == TW_OK,
		 "make");
	tw_status st = tw_future_wait(f, 30000);
	W_ASSERT(w, st == TW_OK, "make: %s", tw_errmsg(st));
	tw_rref *r;
	st = tw_rref_from_value(tw_future_value(f), &r);
	W_ASSERT(w, st == TW_OK, "from_value: %s", tw_errmsg(st));
	tw_future_release(f); /* the message's reference goes, ours stays */
	int64_t v;
	if (to_here_int(w, r, &v) != 0)
		return 1;
	W_ASSERT(w, v == 71, "value %lld", (long long)v);
	tw_rref_release(r);
	phase = "returned, unclaimed";
	it[0] = H_STR("w2");
	it[1] = tw_value_int(80);
	if (call(w, a, "w1", "r::make", &t, &res) != 0)
		return 1;
	W_ASSERT(w, res.kind == TW_KIND_RREF, "kind %d", res.kind);
	tw_value_destroy(&res);
	return 0;
}

/* The RREF nodes of v in walk order (at most max). */
static void rref_nodes(const tw_value *v, const tw_value **out, int *n, int max)
{
	if (v->kind == TW_KIND_RREF) {
		if (*n < max)
			out[*n] = v;
		(*n)++;
	} else if (v->kind == TW_KIND_LIST || v->kind == TW_KIND_TUPLE) {
		for (uint32_t i = 0; i < v->len; i++)
			rref_nodes(&v->u.items[i], out, n, max);
	} else if (v->kind == TW_KIND_DICT) {
		for (uint32_t i = 0; i < v->len; i++)
			rref_nodes(&v->u.entries[i].val, out, n, max);
	}
}

/* v holds r::make_list(x)'s five RRefs: each works here. */
static int use_nested(struct h_worker *w, const tw_value *v, int64_t x)
{
	const tw_value *nodes[5];
	int n = 0;
	rref_nodes(v, nodes, &n, 5);
	W_ASSERT(w, n == 5, "%d RRefs in the value", n);
	for (int k = 0; k < 5; k++) {
		tw_rref *r;
		tw_status st = tw_rref_from_value(nodes[k], &r);
		W_ASSERT(w, st == TW_OK, "item %d: %s", k, tw_errmsg(st));
		W_ASSERT(w,
			 tw_rref_is_owner(r) ==
					 (strcmp(nest_owner[k], "w0") == 0) &&
				 strcmp(tw_rref_owner_name(r), nest_owner[k]) ==
					 0,
			 "item %d owned by %s", k, tw_rref_owner_name(r));
		int64_t got;
		if (to_here_int(w, r, &got) != 0)
			return 1;
		W_ASSERT(w, got == x + k + 1, "item %d: %lld", k,
			 (long long)got);
		tw_rref_release(r);
	}
	return 0;
}

/* Nested RRefs: an RRef (owned by w1) whose value holds five RRefs owned
 * by w0, w1 and w2, in a list, a dict and a tuple; fetched twice (each
 * fetch forks them anew), returned by a proxy, and passed on to w2,
 * which uses them. */
static int w0_nested(struct h_worker *w, tw_agent *a)
{
	phase = "nested";
	tw_value it[1] = {tw_value_int(1000)};
	tw_value args = H_TUPLE(it);
	tw_rref *outer;
	tw_status st = tw_remote(a, "w1", "r::make_list", &args, NULL, -1,
				 &outer);
	W_ASSERT(w, st == TW_OK, "remote: %s", tw_errmsg(st));
	for (int round = 0; round < 2; round++) {
		tw_value v, err;
		st = tw_rref_to_here(outer, 30000, &v, &err);
		W_ASSERT(w, st == TW_OK, "to_here: %s (%s)", tw_status_name(st),
			 tw_errmsg(st));
		W_ASSERT(w, v.kind == TW_KIND_LIST && v.len == 5, "list");
		if (use_nested(w, &v, 1000) != 0)
			return 1;
		if (round == 1) {
			phase = "nested, passed on";
			tw_value kit[1] = {v};
			tw_value kargs = H_TUPLE(kit), res;
			if (call(w, a, "w2", "r::keep", &kargs, &res) != 0)
				return 1;
			W_ASSERT(w, res.len == 5, "w2 kept %u", res.len);
			for (uint32_t k = 0; k < 5; k++) {
				tw_value cres;
				int64_t s = int_at(&res, k);
				if (slot_call(w, a, "w2", "r::check", s,
					      1000 + k + 1, 0, &cres) != 0)
					return 1;
				W_ASSERT(w,
					 int_at(&cres, 0) ==
						 (strcmp(nest_owner[k], "w2") ==
						  0),
					 "at w2, item %u: owner %lld", k,
					 (long long)int_at(&cres, 0));
				tw_value_destroy(&cres);
				if (slot_call(w, a, "w2", "r::drop", s, 0, 0,
					      NULL) != 0)
					return 1;
			}
			tw_value_destroy(&res);
		}
		tw_value_destroy(&v);
	}
	phase = "nested, by proxy";
	tw_value res, err;
	st = tw_rref_rpc_sync(outer, "echo", NULL, NULL, 30000, &res, &err);
	W_ASSERT(w, st == TW_OK, "echo proxy: %s (%s)", tw_status_name(st),
		 tw_errmsg(st));
	if (use_nested(w, &res, 1000) != 0)
		return 1;
	tw_value_destroy(&res);
	tw_rref_release(outer);
	return 0;
}

/* The owner's (w2's) counts of one value: (status, users, forks, self). */
static int users_of(struct h_worker *w, tw_agent *a, tw_guid id, int64_t c[4])
{
	tw_value it[2] = {tw_value_int(id.created_on),
			  tw_value_int((int64_t)id.local_id)};
	tw_value t = H_TUPLE(it), res;
	if (call(w, a, "w2", "r::users", &t, &res) != 0)
		return 1;
	for (uint32_t i = 0; i < 4; i++)
		c[i] = int_at(&res, i);
	tw_value_destroy(&res);
	return 0;
}

/* Wait until the owner counts n users of id, no fork in flight, no self
 * fork; with fall, the count only falls meanwhile: below n, or the value
 * freed, fails at once. n == 0: wait until the value is freed. */
static int wait_users(struct h_worker *w, tw_agent *a, tw_guid id, int64_t n,
		      bool fall)
{
	uint64_t until = h_now_ms() + 10000;
	int64_t c[4];
	for (;;) {
		if (users_of(w, a, id, c) != 0)
			return 1;
		if (n == 0 && c[0] == TW_ENOENT)
			return 0;
		W_ASSERT(w, c[0] == TW_OK, "value freed with %lld users left",
			 (long long)n);
		W_ASSERT(w, !fall || c[1] >= n, "%lld users, expected %lld",
			 (long long)c[1], (long long)n);
		if (n > 0 && c[1] == n && c[2] == 0 && c[3] == 0)
			return 0;
		W_ASSERT(w, h_now_ms() < until,
			 "users %lld forks %lld self %lld, expected %lld users",
			 (long long)c[1], (long long)c[2], (long long)c[3],
			 (long long)n);
		h_sleep_ms(1);
	}
}

/* 100 users of one value (owned by w2), 50 on w1 (each a fork w0 sent)
 * and 50 on w0 (each returned by w1: a fork of a fork), released one by
 * one, alternately: the owner counts each release, and frees the value
 * on the last one, not before. */
static int w0_hundred(struct h_worker *w, tw_agent *a)
{
	phase = "100 users: forking";
	tw_value it[2];
	tw_value aa = h_ints(it, 41, 1);
	tw_rref *r, *mine[50];
	int64_t slots[50];
	W_ASSERT(w, tw_remote(a, "w2", "add", &aa, NULL, -1, &r) == TW_OK,
		 "remote");
	tw_guid id = tw_rref_get_id(r).rref;
	/* passed on at once, pending: w1's first FORK_REQUESTs may reach w2
	 * before w0's REMOTE_CALL (another connection) */
	for (int k = 0; k < 50; k++)
		if (keep_on(w, a, "w1", r, &slots[k]) != 0)
			return 1;
	for (int k = 0; k < 50; k++) {
		tw_value res;
		if (slot_call(w, a, "w1", "r::give", slots[k], 0, 0, &res) != 0)
			return 1;
		tw_status st = tw_rref_from_value(&res, &mine[k]);
		W_ASSERT(w, st == TW_OK, "from_value: %s", tw_errmsg(st));
		tw_value_destroy(&res);
		W_ASSERT(w, !tw_rref_is_owner(mine[k]), "a user");
	}
	/* Every fork known to the owner: w0's confirmed, w1's none
	 * pending; with w0's first handle, 101 users. */
	uint64_t until = h_now_ms() + 10000;
	int64_t c[NSTATS];
	for (;;) {
		int conf = 0;
		for (int k = 0; k < 50; k++)
			conf += tw_rref_confirmed_by_owner(mine[k]);
		if (stats_on(w, a, "w1", c) != 0)
			return 1;
		if (conf == 50 && c[3] == 50 && c[4] == 0)
			break;
		W_ASSERT(w, h_now_ms() < until,
			 "w0: %d of 50 confirmed, w1: %lld users, %lld "
			 "pending",
			 conf, (long long)c[3], (long long)c[4]);
		h_sleep_ms(1);
	}
	phase = "100 users: releasing";
	if (wait_users(w, a, id, 101, true) != 0)
		return 1;
	tw_rref_release(r);
	if (wait_users(w, a, id, 100, true) != 0)
		return 1;
	for (int k = 0; k < 100; k++) {
		snprintf(phase_buf, sizeof(phase_buf), "100 users: release %d",
			 k);
		phase = phase_buf;
		if (k % 2 == 0)
			tw_rref_release(mine[k / 2]);
		else if (slot_call(w, a, "w1", "r::drop", slots[k / 2], 0, 0,
				   NULL) != 0)
			return 1;
		if (wait_users(w, a, id, 99 - k, true) != 0)
			return 1;
	}
	if (stats_on(w, a, "w2", c) != 0)
		return 1;
	W_ASSERT(w, c[0] == 0 && c[1] == 0, "w2 owns %lld, %lld users",
		 (long long)c[0], (long long)c[1]);
	return 0;
}

static int w_three(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.num_loops = 2;
	o.setup = rr_setup;
	watch(w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	phase = "after init";
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	/* Every worker's init returned before the first RRef moves, so the
	 * counters the test checks start from known points. */
	atomic_store(&w->sh->ready[w->rank], 1);
	W_ASSERT(w, h_wait_all(w->sh->ready, w->world, -1, 20000), "ready");
	if (w->rank == 0) {
		uint64_t t0 = h_now_ms();
		int rc = w0_pass(w, a) || w0_returned(w, a) ||
			 w0_nested(w, a) || w0_hundred(w, a);
		if (rc == 0) {
			phase = "all clean";
			rc = all_clean(w, a);
		}
		/* done or failed: the others stop waiting either way */
		atomic_store(&w->sh->flag[0], 1);
		if (rc != 0)
			return 1;
		fprintf(stderr, "[rank 0] three workers: %llu ms\n",
			(unsigned long long)(h_now_ms() - t0));
	} else {
		phase = "serving w0";
		W_ASSERT(w, h_wait_all(w->sh->flag, 1, -1, 45000), "w0 done");
	}
	for (int i = 0; i < KEEP_MAX; i++)
		W_ASSERT(w, kept[i] == NULL, "slot %d still kept", i);
	phase = "shutdown";
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s: %s", tw_status_name(st),
		 tw_errmsg(st));
	return 0;
}

Test(rref, three_workers_pass_return_nest_100_users, .timeout = 300)
{
	h_run_group(3, w_three, NULL, NULL, 0);
}

/* ---- an RRef passed on before its REMOTE_CALL reached the owner ----
 *
 * The REMOTE_CALL goes through loop (owner % nloops) (call_ctl_async), the
 * call carrying the RRef through the caller's loop, so with several loops
 * the RRef may arrive first; here forced: w0 delays its REMOTE_CALLs by
 * fault injection (one loop each). Sent to a third worker, its
 * FORK_REQUEST waits at the owner for the REMOTE_CALL (main 24be691).
 *
 * Found by these tests and fixed in rpc/rref.c (docs/rref.md): an RRef
 * sent to its owner before its REMOTE_CALL reached the owner (the owner
 * now makes its entry on the first of the two, as torch's
 * getOrCreateOwnerRRef: sent_to_its_owner_before_its_remote_call), and
 * RRef control messages of a worker still inside tw_agent_init (now held
 * until init returns; the window cannot be forced from outside, so no
 * test of its own).
 */

static int pass_early(struct h_worker *w, tw_agent *a, const char *to)
{
	phase = "sent before its REMOTE_CALL";
	tw_value it[2];
	tw_value aa = h_ints(it, 1, 1);
	tw_rref *r;
	W_ASSERT(w, tw_remote(a, "w1", "add", &aa, NULL, -1, &r) == TW_OK,
		 "remote");
	int64_t slot;
	int rc = keep_on(w, a, to, r, &slot);
	if (rc == 0) {
		tw_value res;
		rc = slot_call(w, a, to, "r::check", slot, 2, 0, &res);
		if (rc == 0)
			tw_value_destroy(&res);
		if (rc == 0)
			rc = slot_call(w, a, to, "r::drop", slot, 0, 0, NULL);
	}
	tw_rref_release(r);
	return rc != 0 ? rc : all_clean(w, a);
}

static int w_early(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.setup = rr_setup;
	if (w->rank == 0) {
		o.fault_delay_type = TW_MSG_REMOTE_CALL;
		o.fault_delay_ms = 300;
	}
	watch(w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	atomic_store(&w->sh->ready[w->rank], 1);
	W_ASSERT(w, h_wait_all(w->sh->ready, w->world, -1, 20000), "ready");
	if (w->rank == 0) {
		int rc = pass_early(w, a, w->arg);
		atomic_store(&w->sh->flag[0], 1);
		if (rc != 0)
			return 1;
	} else {
		phase = "serving w0";
		W_ASSERT(w, h_wait_all(w->sh->flag, 1, -1, 45000), "w0 done");
	}
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s: %s", tw_status_name(st),
		 tw_errmsg(st));
	return 0;
}

/* ---- a user killed: its owners drop its forks (members that die) ---- */

#define DEAD_RREFS 50

/* Shared with the workers (MAP_SHARED before they fork). */
struct death {
	_Atomic uint64_t killed_ms; /* h_now_ms() just before the kill */
	int victim;                 /* the rank that kills itself */
};

static struct death *death_new(int victim)
{
	struct death *d = mmap(NULL, sizeof(*d), PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert(d != MAP_FAILED);
	memset(d, 0, sizeof(*d));
	d->victim = victim;
	return d;
}

/* The victim: RRefs on every other worker (DEAD_RREFS in all, round
 * robin), all confirmed, held when it is SIGKILLed. The others: each owns
 * its share with one user fork each until the victim dies, then none,
 * within a generous deadline (the time taken is printed, not asserted);
 * the victim is dead to them and calls to it fail at once, naming it. */
static int w_user_killed(struct h_worker *w)
{
	struct death *d = w->arg;
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.num_loops = 2;
	watch(w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	int v = d->victim;
	uint64_t share[H_MAX_WORKERS] = {0};
	for (int i = 0; i < DEAD_RREFS; i++) {
		int owner = i % (w->world - 1);
		share[owner >= v ? owner + 1 : owner]++;
	}
	if (w->rank == v) {
		phase = "victim: creating";
		tw_rref *r[DEAD_RREFS];
		for (int i = 0; i < DEAD_RREFS; i++) {
			int owner = i % (w->world - 1);
			char to[8];
			snprintf(to, sizeof(to), "w%d",
				 owner >= v ? owner + 1 : owner);
			tw_value it[2];
			tw_value args = h_ints(it, i, 1);
			W_ASSERT(w,
				 tw_remote(a, to, "add", &args, NULL, -1,
					   &r[i]) == TW_OK,
				 "remote %d: %s", i, tw_errmsg(TW_EINVAL));
		}
		for (int i = 0; i < DEAD_RREFS; i++) {
			int64_t x;
			if (to_here_int(w, r[i], &x) != 0)
				return 1;
			W_ASSERT(w, x == i + 1, "value %d", i);
			W_ASSERT(w, tw_rref_confirmed_by_owner(r[i]), "conf");
		}
		atomic_store(&w->sh->flag[v], 1);
		phase = "victim: waiting for the owners to count";
		W_ASSERT(w, h_wait_all(w->sh->flag, w->world, v, 40000),
			 "the owners never counted");
		atomic_store(&d->killed_ms, h_now_ms());
		kill(getpid(), SIGKILL); /* holding every handle */
		for (;;)
			h_sleep_ms(1000);
	}
	phase = "owner: waiting for the victim's users";
	W_ASSERT(w, h_wait_all(&w->sh->flag[v], 1, -1, 40000),
		 "the victim never made its users");
	struct tw_rref_stats s;
	tw_agent_rref_stats(a, &s);
	uint64_t mine = share[w->rank];
	W_ASSERT(w, s.owned == mine && s.owner_users == mine,
		 "owned %llu users %llu, want %llu",
		 (unsigned long long)s.owned, (unsigned long long)s.owner_users,
		 (unsigned long long)mine);
	W_ASSERT(w, tw_agent_worker_alive(a, (uint32_t)v), "alive before");
	atomic_store(&w->sh->flag[w->rank], 1);

	phase = "owner: waiting for the victim's forks to go";
	uint64_t until = h_now_ms() + 30000;
	do {
		h_sleep_ms(1);
		tw_agent_rref_stats(a, &s);
	} while ((s.owned != 0 || s.owner_users != 0) && h_now_ms() < until);
	uint64_t now = h_now_ms(), killed = atomic_load(&d->killed_ms);
	W_ASSERT(w, s.owned == 0 && s.owner_users == 0,
		 "after 30 s: owned %llu users %llu",
		 (unsigned long long)s.owned,
		 (unsigned long long)s.owner_users);
	W_ASSERT(w, s.dead_users_dropped == mine, "dropped %llu, want %llu",
		 (unsigned long long)s.dead_users_dropped,
		 (unsigned long long)mine);
	W_ASSERT(w, s.refused == 0, "refused %llu",
		 (unsigned long long)s.refused);
	fprintf(stderr,
		"[rank %d] worker %d's %llu forks dropped %llu ms after its "
		"SIGKILL\n",
		w->rank, v, (unsigned long long)mine,
		(unsigned long long)(killed != 0 && now > killed ? now - killed
								 : 0));
	W_ASSERT(w, !tw_agent_worker_alive(a, (uint32_t)v), "dead after");
	char to[8];
	snprintf(to, sizeof(to), "w%d", v);
	tw_future *f = NULL;
	st = tw_rpc_async(a, to, "add", NULL, NULL, -1, &f);
	W_ASSERT(w, st == TW_EUNREACHABLE && f == NULL, "call: %s",
		 tw_status_name(st));
	char want[64];
	snprintf(want, sizeof(want), "worker '%s' (id %d) is dead", to, v);
	W_ASSERT(w, strstr(tw_errmsg(st), want) != NULL, "%s", tw_errmsg(st));

	phase = "shutdown";
	if (v == 0) {
		/* No rendezvous host, no barrier. */
		st = tw_agent_shutdown(a, false);
	} else {
		st = tw_agent_shutdown(a, true);
	}
	W_ASSERT(w, st == TW_OK, "shutdown: %s: %s", tw_status_name(st),
		 tw_errmsg(st));
	return 0;
}

Test(rref, sent_to_a_third_worker_before_its_remote_call, .timeout = 120)
{
	h_run_group(3, w_early, "w2", NULL, 0);
}

/* bug 1 */
Test(rref, sent_to_its_owner_before_its_remote_call, .timeout = 120)
{
	h_run_group(3, w_early, "w1", NULL, 0);
}

Test(rref, killed_user_forks_dropped_by_owners, .timeout = 120)
{
	struct death *d = death_new(2);
	h_run_group(3, w_user_killed, d, NULL, 1u << 2);
	munmap(d, sizeof(*d));
}

/* The user killed is rank 0, the rendezvous host: its owner learns it
 * from its own control connection closing. */
Test(rref, killed_rank_0_forks_dropped_by_owner, .timeout = 120)
{
	struct death *d = death_new(0);
	h_run_group(2, w_user_killed, d, NULL, 1u << 0);
	munmap(d, sizeof(*d));
}
