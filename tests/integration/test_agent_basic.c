/* Agent basics across processes: joining, worker info, rpc_sync and
 * rpc_async, kwargs, calls to self, nested async calls, remote errors. */
#include "harness.h"

/* ---- joining ---- */

static int w_join(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.num_loops = w->arg ? 2 : 1;
	char err[256];
	tw_agent *a;
	tw_status st = h_init_err(err, sizeof(err), &o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s (%s)", tw_status_name(st), err);
	W_ASSERT(w, tw_agent_world_size(a) == (uint32_t)w->world, "world");
	tw_worker_info me, wi;
	tw_agent_self(a, &me);
	W_ASSERT(w, me.id == (uint32_t)w->rank, "self id %u", me.id);
	W_ASSERT(w, strcmp(me.name, h_names[w->rank]) == 0, "self name %s",
		 me.name);
	for (int r = 0; r < w->world; r++) {
		W_ASSERT(w, tw_agent_worker_info(a, h_names[r], &wi) == TW_OK,
			 "info %d", r);
		W_ASSERT(w, wi.id == (uint32_t)r, "id of %s: %u", h_names[r],
			 wi.id);
		/* io_uring: the loop's TCP address; DPDK: "udp://IP:PORT/MAC"
		 * with the MAC of the worker's veth end. */
		char mac[32];
		snprintf(mac, sizeof(mac), "/02:00:00:00:0b:%02x", r + 1);
		if (h_dpdk())
			W_ASSERT(w,
				 strncmp(wi.addr, "udp://", 6) == 0 &&
					 strstr(wi.addr, mac) != NULL,
				 "addr %s", wi.addr);
		else
			W_ASSERT(w,
				 strncmp(wi.addr, "tcp://127.0.0.1:", 16) == 0,
				 "addr %s", wi.addr);
		tw_worker_info wj;
		W_ASSERT(w,
			 tw_agent_worker_info_by_id(a, (uint32_t)r, &wj) ==
				 TW_OK,
			 "by id");
		W_ASSERT(w,
			 strcmp(wj.name, h_names[r]) == 0 &&
				 strcmp(wj.addr, wi.addr) == 0,
			 "by id %d: %s %s", r, wj.name, wj.addr);
		for (int q = 0; q < r; q++) {
			tw_worker_info wq;
			tw_agent_worker_info_by_id(a, (uint32_t)q, &wq);
			W_ASSERT(w, strcmp(wq.addr, wi.addr) != 0,
				 "distinct addrs");
		}
	}
	W_ASSERT(w, tw_agent_worker_info(a, "nobody", &wi) == TW_ENOENT,
		 "unknown name");
	W_ASSERT(w,
		 tw_agent_worker_info_by_id(a, (uint32_t)w->world, &wi) ==
			 TW_ENOENT,
		 "unknown id");
	/* Everyone calls everyone once (self included). */
	for (int r = 0; r < w->world; r++) {
		tw_value r_, e_;
		tw_value none[1];
		tw_value args = {.kind = TW_KIND_TUPLE,
				 .flags = TW_VALUE_BORROWED,
				 .len = 0,
				 .u.items = none};
		st = tw_rpc_sync(a, h_names[r], "whoami", &args, NULL, -1, &r_,
				 &e_);
		W_ASSERT(w, st == TW_OK, "whoami on %d: %s", r,
			 tw_status_name(st));
		W_ASSERT(w,
			 r_.kind == TW_KIND_TUPLE &&
				 r_.u.items[0].u.i == w->rank &&
				 strcmp(r_.u.items[1].u.str, h_names[r]) == 0,
			 "whoami result");
		tw_value_destroy(&r_);
	}
	/* Which transport carried those calls: with same_host (the
	 * default), the same-host one for every peer (all are on this
	 * host), none fallen back to TCP; without it, TCP only. */
	struct tw_agent_stats s;
	tw_agent_get_stats(a, &s);
	uint64_t peers = (uint64_t)w->world - 1;
	if (o.same_host)
		W_ASSERT(w, s.conns_shm >= peers && s.same_host_fallbacks == 0,
			 "shm connections %" PRIu64 ", fallbacks %" PRIu64,
			 s.conns_shm, s.same_host_fallbacks);
	else
		W_ASSERT(w, s.conns_shm == 0, "shm connections %" PRIu64,
			 s.conns_shm);
	W_ASSERT(w, s.conns_same_host >= peers || h_dpdk(),
		 "same-host connections %" PRIu64, s.conns_same_host);
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

Test(agent, join_2_workers, .timeout = 60)
{
	h_run_group(2, w_join, NULL, NULL, 0);
}

Test(agent, join_4_workers_2_loops, .timeout = 60)
{
	h_run_group(4, w_join, (void *)1, NULL, 0);
}

/* ---- authentication (docs/wire.md 5.1) ---- */

/* Rank 0 calls rank 1. Both have the group's secret (h_opts), or, with
 * arg, rank 1 another one: then the call fails with TW_EAUTH and says
 * why (or, once the rendezvous authenticates too, joining fails). */
static int w_secret(struct h_worker *w)
{
	bool wrong = w->arg != NULL;
	struct tw_agent_opts o;
	h_opts(&o, w);
	if (wrong) {
		o.init_timeout_ms = 5000;
		if (w->rank == 1)
			o.secret = "not-the-group-secret";
	}
	char err[256];
	tw_agent *a;
	tw_status st = h_init_err(err, sizeof(err), &o, &a);
	if (wrong && (st == TW_EAUTH || st == TW_ETIMEDOUT))
		return 0;
	W_ASSERT(w, st == TW_OK, "init: %s (%s)", tw_status_name(st), err);
	if (w->rank == 0) {
		tw_value r_, e_, none[1];
		tw_value args = {.kind = TW_KIND_TUPLE,
				 .flags = TW_VALUE_BORROWED,
				 .len = 0,
				 .u.items = none};
		st = tw_rpc_sync(a, h_names[1], "whoami", &args, NULL, 10000,
				 &r_, &e_);
		struct tw_agent_stats s;
		tw_agent_get_stats(a, &s);
		if (!wrong) {
			W_ASSERT(w, st == TW_OK, "whoami: %s (%s)",
				 tw_status_name(st), tw_errmsg(st));
			tw_value_destroy(&r_);
			W_ASSERT(w, s.auth_ok == 1 && s.auth_failed == 0,
				 "authenticated %" PRIu64 ", failed %" PRIu64,
				 s.auth_ok, s.auth_failed);
		} else if (h_dpdk()) {
			/* DPDK proves the secret in the session's setup
			 * (dataplane/dpdk_pkt.h): w1's CONNECT does not
			 * verify and is dropped unanswered, so no session
			 * and no handshake ever start; the call fails as
			 * for a peer that does not answer. */
			W_ASSERT(w, st == TW_EUNREACHABLE, "whoami: %s (%s)",
				 tw_status_name(st), tw_errmsg(st));
			tw_value_destroy(&e_);
			W_ASSERT(w, s.auth_ok == 0 && s.auth_failed == 0,
				 "authenticated %" PRIu64 ", failed %" PRIu64,
				 s.auth_ok, s.auth_failed);
		} else {
			W_ASSERT(w, st == TW_EAUTH, "whoami: %s (%s)",
				 tw_status_name(st), tw_errmsg(st));
			W_ASSERT(w,
				 strstr(tw_errmsg(st),
					"authentication failed: worker 'w1' "
					"does not know this group's secret") !=
					 NULL,
				 "%s", tw_errmsg(st));
			tw_value_destroy(&e_);
			W_ASSERT(w, s.auth_failed == 1, "failed %" PRIu64,
				 s.auth_failed);
		}
	}
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

Test(auth, two_workers_sharing_the_secret, .timeout = 60)
{
	h_run_group(2, w_secret, NULL, NULL, 0);
}

Test(auth, worker_with_another_secret_is_refused, .timeout = 60)
{
	h_run_group(2, w_secret, (void *)1, NULL, 0);
}

/* ---- echo, add, kwargs ---- */

static int w_echo(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 0) {
		int64_t v;
		tw_value args[2] = {tw_value_int(40), tw_value_int(2)};
		tw_value t = H_TUPLE(args);
		st = h_call_int(a, "w1", "add", &t, &v);
		W_ASSERT(w, st == TW_OK && v == 42, "add: %s %" PRId64,
			 tw_status_name(st), v);

		/* A nested value, echoed equal, by three handlers. */
		tw_value tree, s, l, d;
		tw_value_tuple(&tree, 1);
		tw_value_dict(&d, 3);
		tw_value_cstring(&s, "héllo");
		tw_value_dict_set(&d, 0, "s", s);
		tw_value_list(&l, 3);
		tw_value_set_item(&l, 0, tw_value_double(1.5));
		tw_value_set_item(&l, 1, tw_value_bool(true));
		tw_value_set_item(&l, 2, tw_value_none());
		tw_value_dict_set(&d, 1, "l", l);
		tw_value b;
		tw_value_bytes(&b, "\0\1\2", 3);
		tw_value_dict_set(&d, 2, "b", b);
		tw_value_set_item(&tree, 0, d);
		const char *fns[] = {"echo", "echo_borrow", "echo_blocking"};
		for (int i = 0; i < 3; i++) {
			tw_value r, e;
			st = tw_rpc_sync(a, "w1", fns[i], &tree, NULL, -1, &r,
					 &e);
			W_ASSERT(w, st == TW_OK, "%s: %s", fns[i],
				 tw_status_name(st));
			W_ASSERT(w, tw_value_equal(&r, &tree.u.items[0]),
				 "%s: not equal", fns[i]);
			tw_value_destroy(&r);
		}
		tw_value_destroy(&tree);

		/* args as a list, kwargs */
		tw_value lst;
		tw_value_list(&lst, 2);
		tw_value_set_item(&lst, 0, tw_value_int(1));
		tw_value_set_item(&lst, 1, tw_value_int(2));
		st = h_call_int(a, "w1", "add", &lst, &v);
		W_ASSERT(w, st == TW_OK && v == 3, "add list");
		tw_value_destroy(&lst);
		tw_value kw;
		tw_value_dict(&kw, 2);
		tw_value_dict_set(&kw, 0, "x", tw_value_int(5));
		tw_value_dict_set(&kw, 1, "y", tw_value_int(6));
		tw_value r, e;
		st = tw_rpc_sync(a, "w1", "kw", NULL, &kw, -1, &r, &e);
		W_ASSERT(w, st == TW_OK && r.kind == TW_KIND_INT && r.u.i == 11,
			 "kw");
		tw_value_destroy(&kw);

		/* rpc_async: many in flight, checked in any order */
		tw_future *fs[64];
		for (int i = 0; i < 64; i++) {
			tw_value aa[2] = {tw_value_int(i), tw_value_int(1000)};
			tw_value ta = H_TUPLE(aa);
			st = tw_rpc_async(a, "w1", "add", &ta, NULL, -1,
					  &fs[i]);
			W_ASSERT(w, st == TW_OK, "async %d", i);
		}
		for (int i = 63; i >= 0; i--) {
			st = tw_future_wait(fs[i], -1);
			W_ASSERT(w, st == TW_OK, "wait %d: %s", i,
				 tw_status_name(st));
			const tw_value *rv = tw_future_value(fs[i]);
			W_ASSERT(w,
				 rv && rv->kind == TW_KIND_INT &&
					 rv->u.i == i + 1000,
				 "value %d", i);
			tw_future_release(fs[i]);
		}

		/* immediate failures */
		tw_future *f;
		W_ASSERT(w,
			 tw_rpc_async(a, "nobody", "add", NULL, NULL, -1, &f) ==
				 TW_ENOENT,
			 "unknown worker");
		W_ASSERT(w, f == NULL, "no future");
		tw_value notargs = tw_value_int(3);
		W_ASSERT(w,
			 tw_rpc_async(a, "w1", "add", &notargs, NULL, -1, &f) ==
				 TW_EINVAL,
			 "args not a tuple");
		W_ASSERT(w,
			 tw_rpc_async(a, "w1", "", NULL, NULL, -1, &f) ==
				 TW_EINVAL,
			 "empty fn");
		W_ASSERT(w,
			 tw_agent_register(a, "echo", fn_echo, NULL, 0) ==
				 TW_EBUSY,
			 "duplicate registration");
		/* registration at any time */
		W_ASSERT(w,
			 tw_agent_register(a, "late", fn_echo, NULL, 0) ==
				 TW_OK,
			 "late");
	}
	W_ASSERT(w, tw_agent_outstanding(a) == 0, "outstanding");
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

Test(agent, echo_add_kwargs_async, .timeout = 60)
{
	h_run_group(2, w_echo, NULL, NULL, 0);
}

/* ---- calls to self ---- */

static int w_self(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	const char *me = h_names[w->rank];
	int64_t v;
	tw_value args[2] = {tw_value_int(20), tw_value_int(22)};
	tw_value t = H_TUPLE(args);
	st = h_call_int(a, me, "add", &t, &v);
	W_ASSERT(w, st == TW_OK && v == 42, "self add: %s", tw_status_name(st));

	/* echo of an owned string, on the loop and on the executor, and the
	 * borrowed-move variant */
	tw_value s;
	tw_value_cstring(&s, "self-echo");
	tw_value a1[1] = {s};
	tw_value t1 = H_TUPLE(a1);
	const char *fns[] = {"echo", "echo_borrow", "echo_blocking"};
	for (int i = 0; i < 3; i++) {
		tw_value r, e;
		st = tw_rpc_sync(a, me, fns[i], &t1, NULL, -1, &r, &e);
		W_ASSERT(w, st == TW_OK && tw_value_equal(&r, &s), "self %s",
			 fns[i]);
		tw_value_destroy(&r);
	}
	tw_value_destroy(&s);

	/* errors, unknown function, nested to self */
	tw_value e, r;
	tw_value ra[2] = {tw_value_int(TW_EVALUE), H_STR("bad value")};
	tw_value rt = H_TUPLE(ra);
	st = tw_rpc_sync(a, me, "raise", &rt, NULL, -1, &r, &e);
	W_ASSERT(w, st == TW_EVALUE, "self raise: %s", tw_status_name(st));
	W_ASSERT(w,
		 e.kind == TW_KIND_ERROR &&
			 e.u.err->origin == (uint32_t)w->rank &&
			 strcmp(e.u.err->msg, "bad value") == 0,
		 "self raise error");
	tw_value_destroy(&e);
	st = tw_rpc_sync(a, me, "nope", NULL, NULL, -1, &r, &e);
	W_ASSERT(w, st == TW_ENOFUNC && strstr(e.u.err->msg, "'nope'") != NULL,
		 "self nofunc");
	tw_value_destroy(&e);
	tw_value na[2] = {H_STR(me), tw_value_int(7)};
	tw_value nt = H_TUPLE(na);
	st = h_call_int(a, me, "nested", &nt, &v);
	W_ASSERT(w, st == TW_OK && v == 9, "nested to self: %s %" PRId64,
		 tw_status_name(st), v);

	/* self timeout */
	tw_future *f;
	st = tw_rpc_async(a, me, "never", NULL, NULL, 50, &f);
	W_ASSERT(w, st == TW_OK, "never");
	st = tw_future_wait(f, -1);
	W_ASSERT(w, st == TW_ETIMEDOUT, "self timeout: %s", tw_status_name(st));
	tw_future_release(f);
	h_never_finish(); /* its late answer is dropped */

	W_ASSERT(w, tw_agent_outstanding(a) == 0, "outstanding");
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

Test(agent, self_calls_single_worker, .timeout = 60)
{
	h_run_group(1, w_self, NULL, NULL, 0);
}

Test(agent, self_calls_in_group, .timeout = 60)
{
	h_run_group(2, w_self, NULL, NULL, 0);
}

/* ---- nested calls A -> B -> (async) C ---- */

static int w_nested(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 0) {
		int64_t v;
		/* w0 -> w1.nested("w2", 40): w1 calls w2.add(40, 1) async, +1 */
		tw_value na[2] = {H_STR("w2"), tw_value_int(40)};
		tw_value nt = H_TUPLE(na);
		st = h_call_int(a, "w1", "nested", &nt, &v);
		W_ASSERT(w, st == TW_OK && v == 42, "nested: %s %" PRId64,
			 tw_status_name(st), v);
		/* many at once, and a cycle back to the caller: w1 -> w0 */
		tw_future *fs[200];
		for (int i = 0; i < 200; i++) {
			tw_value xa[2] = {H_STR(i & 1 ? "w0" : "w2"),
					  tw_value_int(i)};
			tw_value xt = H_TUPLE(xa);
			st = tw_rpc_async(a, "w1", "nested", &xt, NULL, -1,
					  &fs[i]);
			W_ASSERT(w, st == TW_OK, "async nested %d", i);
		}
		for (int i = 0; i < 200; i++) {
			st = tw_future_wait(fs[i], -1);
			W_ASSERT(w, st == TW_OK, "nested %d: %s", i,
				 tw_status_name(st));
			W_ASSERT(w, tw_future_value(fs[i])->u.i == i + 2,
				 "nested %d value", i);
			tw_future_release(fs[i]);
		}
		/* the inner call's error comes back with its origin */
		tw_value ea[2] = {H_STR("nobody"), tw_value_int(1)};
		tw_value et = H_TUPLE(ea);
		tw_value r, e;
		st = tw_rpc_sync(a, "w1", "nested", &et, NULL, -1, &r, &e);
		W_ASSERT(w, st == TW_ENOENT, "nested to unknown: %s",
			 tw_status_name(st));
		W_ASSERT(w, e.kind == TW_KIND_ERROR && e.u.err->origin == 1,
			 "origin");
		tw_value_destroy(&e);
	}
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

Test(agent, nested_async_calls, .timeout = 60)
{
	h_run_group(3, w_nested, NULL, NULL, 0);
}

/* ---- remote errors ---- */

static int w_errors(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 0) {
		struct {
			tw_status kind;
			const char *msg;
		} cases[] = {
			{TW_EVALUE, "ValueError: expected a positive number"},
			{TW_ETYPE, "TypeError: unsupported operand"},
			{TW_ERUNTIME, "RuntimeError: something broke"},
		};
		const char *fns[] = {"raise", "raise_blocking"};
		for (int f = 0; f < 2; f++) {
			for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]);
			     i++) {
				tw_value ra[2] = {tw_value_int(cases[i].kind),
						  H_STR(cases[i].msg)};
				tw_value rt = H_TUPLE(ra);
				tw_value r, e;
				st = tw_rpc_sync(a, "w1", fns[f], &rt, NULL, -1,
						 &r, &e);
				W_ASSERT(w, st == cases[i].kind, "%s kind %s",
					 fns[f], tw_status_name(st));
				W_ASSERT(w, e.kind == TW_KIND_ERROR,
					 "error value");
				W_ASSERT(w, e.u.err->kind == cases[i].kind,
					 "err kind");
				W_ASSERT(w, e.u.err->origin == 1, "origin %u",
					 e.u.err->origin);
				W_ASSERT(w,
					 strcmp(e.u.err->msg, cases[i].msg) ==
						 0,
					 "msg '%s'", e.u.err->msg);
				W_ASSERT(w, r.kind == TW_KIND_NONE,
					 "no result");
				/* The reason, as torch prints a remote exception. */
				char want[256];
				snprintf(want, sizeof(want),
					 "On worker 'w1' (id 1): %s",
					 cases[i].msg);
				W_ASSERT(w, strcmp(tw_errmsg(st), want) == 0,
					 "reason '%s'", tw_errmsg(st));
				tw_value_destroy(&e);

				/* the same through a future */
				tw_future *fu;
				st = tw_rpc_async(a, "w1", fns[f], &rt, NULL,
						  -1, &fu);
				W_ASSERT(w, st == TW_OK, "async");
				W_ASSERT(w,
					 tw_future_wait(fu, -1) ==
						 cases[i].kind,
					 "async kind");
				/* A future's wait gives the message as it is. */
				W_ASSERT(w,
					 strcmp(tw_errmsg(cases[i].kind),
						cases[i].msg) == 0,
					 "future reason '%s'",
					 tw_errmsg(cases[i].kind));
				const tw_error *er = tw_future_error(fu);
				W_ASSERT(w,
					 er && er->kind == cases[i].kind &&
						 er->origin == 1 &&
						 strcmp(er->msg,
							cases[i].msg) == 0,
					 "future error");
				W_ASSERT(w, tw_future_value(fu) == NULL,
					 "no value");
				tw_future_release(fu);
			}
		}
		/* unknown function */
		tw_value r, e;
		st = tw_rpc_sync(a, "w1", "no::such_fn", NULL, NULL, -1, &r,
				 &e);
		W_ASSERT(w, st == TW_ENOFUNC, "nofunc: %s", tw_status_name(st));
		W_ASSERT(w,
			 strstr(e.u.err->msg, "no::such_fn") &&
				 strstr(e.u.err->msg, "w1"),
			 "nofunc msg: %s", e.u.err->msg);
		W_ASSERT(w, e.u.err->origin == 1, "nofunc origin");
		char want[512];
		snprintf(want, sizeof(want), "On worker 'w1' (id 1): %s",
			 e.u.err->msg);
		W_ASSERT(w, strcmp(tw_errmsg(st), want) == 0, "reason '%s'",
			 tw_errmsg(st));
		tw_value_destroy(&e);
		/* immediate failures: the error value and the reason agree */
		st = tw_rpc_sync(a, "w9", "add", NULL, NULL, -1, &r, &e);
		W_ASSERT(w, st == TW_ENOENT, "unknown worker: %s",
			 tw_status_name(st));
		W_ASSERT(w,
			 strcmp(tw_errmsg(st),
				"no worker named 'w9' (world size 2)") == 0 &&
				 strcmp(e.u.err->msg, tw_errmsg(st)) == 0,
			 "reason '%s'", tw_errmsg(st));
		tw_value_destroy(&e);
		/* a handler failing without a message gets one */
		st = tw_rpc_sync(a, "w1", "fail_plain", NULL, NULL, -1, &r, &e);
		W_ASSERT(w,
			 st == TW_ERUNTIME &&
				 strstr(e.u.err->msg, "fail_plain"),
			 "plain failure: %s", tw_status_name(st));
		tw_value_destroy(&e);
		/* bad arguments reported by the handler */
		st = tw_rpc_sync(a, "w1", "add", NULL, NULL, -1, &r, &e);
		W_ASSERT(w, st == TW_EBADARGS, "badargs: %s",
			 tw_status_name(st));
		tw_value_destroy(&e);
		/* a type error from mixed operands */
		tw_value ba[2] = {tw_value_int(1), H_STR("x")};
		tw_value bt = H_TUPLE(ba);
		st = tw_rpc_sync(a, "w1", "add", &bt, NULL, -1, &r, &e);
		W_ASSERT(w, st == TW_ETYPE && e.u.err->origin == 1,
			 "type error");
		tw_value_destroy(&e);
	}
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

Test(agent, remote_errors_keep_kind_message_origin, .timeout = 60)
{
	h_run_group(2, w_errors, NULL, NULL, 0);
}

/* ---- calls by id, every worker's info, the default timeout at run time,
 * wait_all and collect_all (issue 11) ---- */

static int w_conveniences(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 0) {
		/* get_worker_infos: rank order, as get_worker_info each */
		tw_worker_info wi[H_MAX_WORKERS];
		uint32_t n = 0;
		st = tw_agent_worker_infos(a, wi, H_MAX_WORKERS, &n);
		W_ASSERT(w, st == TW_OK && n == (uint32_t)w->world,
			 "infos: %s %u", tw_errmsg(st), n);
		for (uint32_t r = 0; r < n; r++) {
			tw_worker_info one;
			tw_agent_worker_info(a, h_names[r], &one);
			W_ASSERT(w,
				 wi[r].id == r &&
					 strcmp(wi[r].name, one.name) == 0 &&
					 strcmp(wi[r].addr, one.addr) == 0,
				 "info %u", r);
		}
		st = tw_agent_worker_infos(a, wi, 1, &n);
		W_ASSERT(w, st == TW_ENOSPC && n == (uint32_t)w->world,
			 "too small");

		/* calls by id: another worker, and self */
		for (uint32_t r = 0; r < n; r++) {
			tw_value none[1];
			tw_value args = {.kind = TW_KIND_TUPLE,
					 .flags = TW_VALUE_BORROWED,
					 .len = 0,
					 .u.items = none};
			tw_value res, e;
			st = tw_rpc_sync_id(a, r, "whoami", &args, NULL, -1,
					    &res, &e);
			W_ASSERT(w, st == TW_OK, "whoami by id %u: %s", r,
				 tw_errmsg(st));
			W_ASSERT(w,
				 res.u.items[0].u.i == 0 &&
					 strcmp(res.u.items[1].u.str,
						h_names[r]) == 0,
				 "whoami %u", r);
			tw_value_destroy(&res);
		}
		tw_future *f;
		st = tw_rpc_async_id(a, n, "whoami", NULL, NULL, -1, &f);
		W_ASSERT(w, st == TW_ENOENT, "unknown id: %s",
			 tw_status_name(st));

		/* the default timeout, changed at run time: later calls only */
		W_ASSERT(w, tw_agent_default_timeout(a) == 60000, "default");
		st = tw_agent_set_default_timeout(a, 3000);
		W_ASSERT(w, st == TW_OK, "set");
		tw_value sa[1] = {tw_value_int(300)};
		tw_value st300 = H_TUPLE(sa);
		tw_future *kept, *cut;
		st = tw_rpc_async(a, "w1", "sleep", &st300, NULL, -1, &kept);
		W_ASSERT(w, st == TW_OK, "sleep call");
		st = tw_agent_set_default_timeout(a, 100);
		W_ASSERT(w, st == TW_OK, "set 100");
		st = tw_rpc_async(a, "w2", "sleep", &st300, NULL, -1, &cut);
		W_ASSERT(w, st == TW_OK, "sleep call 2");
		W_ASSERT(w, tw_future_wait(cut, -1) == TW_ETIMEDOUT,
			 "later call cut");
		W_ASSERT(w,
			 strstr(tw_future_error(cut)->msg, "(100 ms)") != NULL,
			 "%s", tw_future_error(cut)->msg);
		W_ASSERT(w, tw_future_wait(kept, -1) == TW_OK,
			 "earlier call kept 3000");
		tw_future_release(kept);
		tw_future_release(cut);
		W_ASSERT(w, tw_agent_set_default_timeout(a, -1) == TW_EINVAL,
			 "negative");
		W_ASSERT(w, tw_agent_set_default_timeout(a, 0) == TW_OK,
			 "none");

		/* wait_all fails fast: a 1.5 s call is not waited for */
		tw_value ra[2] = {tw_value_int(TW_EVALUE),
				  H_STR("ValueError: no")};
		tw_value rt = H_TUPLE(ra);
		tw_value la[1] = {tw_value_int(1500)};
		tw_value lt = H_TUPLE(la);
		tw_value aa[2] = {tw_value_int(1), tw_value_int(2)};
		tw_value at = H_TUPLE(aa);
		tw_future *g[3];
		W_ASSERT(w,
			 tw_rpc_async(a, "w1", "add", &at, NULL, -1, &g[0]) ==
				 TW_OK,
			 "add");
		W_ASSERT(w,
			 tw_rpc_async(a, "w1", "sleep", &lt, NULL, -1, &g[1]) ==
				 TW_OK,
			 "slow");
		W_ASSERT(w,
			 tw_rpc_async(a, "w2", "raise", &rt, NULL, -1, &g[2]) ==
				 TW_OK,
			 "raise");
		uint64_t t0 = h_now_ms();
		st = tw_future_wait_all(g, 3, 10000);
		W_ASSERT(w, st == TW_EVALUE, "wait_all: %s",
			 tw_status_name(st));
		W_ASSERT(w, h_now_ms() - t0 < 1200, "waited %" PRIu64 " ms",
			 h_now_ms() - t0);
		W_ASSERT(w,
			 strcmp(tw_errmsg(st), "future 2 (of 3) failed: "
					       "ValueError: no") == 0,
			 "reason '%s'", tw_errmsg(st));
		st = tw_agent_wait_all(a, g, 3, 10000);
		W_ASSERT(w, st == TW_EVALUE, "agent wait_all");
		W_ASSERT(w,
			 strcmp(tw_errmsg(st),
				"future 2 (of 3) failed: On "
				"worker 'w2' (id 2): ValueError: no") == 0,
			 "reason '%s'", tw_errmsg(st));
		/* collect_all: every outcome, once all are in */
		tw_future *all;
		W_ASSERT(w, tw_future_collect_all(g, 3, &all) == TW_OK,
			 "collect");
		W_ASSERT(w, tw_future_wait(all, -1) == TW_OK, "collected");
		const tw_value *l = tw_future_value(all);
		W_ASSERT(w,
			 l->len == 3 && l->u.items[0].u.i == 3 &&
				 l->u.items[1].u.i == 1500 &&
				 l->u.items[2].kind == TW_KIND_ERROR &&
				 l->u.items[2].u.err->origin == 2,
			 "list");
		tw_future_release(all);
		for (int i = 0; i < 3; i++)
			tw_future_release(g[i]);
	}
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

Test(agent, by_id_infos_timeout_wait_all, .timeout = 60)
{
	h_run_group(3, w_conveniences, NULL, NULL, 0);
}
