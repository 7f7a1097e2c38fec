/* The control plane with real workers (issue 12). Graceful shutdown that
 * always ends and loses nothing: fire-and-forget chains and nested calls
 * made by handlers while their workers are already in the shutdown barrier
 * complete; a stopped member makes the others' shutdown end at its
 * deadline, naming it; a stopped rank 0 too; a dead rank 0 ends it as
 * unreachable. And the rendezvous refuses a worker without the group's
 * secret at tw_agent_init, saying so. */
#include "harness.h"

#include <signal.h>

/* Hops of each chain; every worker starts one. */
#define CHAIN_HOPS 120

static void chain_done(tw_future *f, void *arg)
{
	struct h_worker *w = arg;
	if (tw_future_status(f) != TW_OK) {
		const tw_error *e = tw_future_error(f);
		fprintf(stderr, "[rank %d] chain hop failed: %s: %s\n", w->rank,
			tw_status_name(tw_future_status(f)), e ? e->msg : "");
		atomic_fetch_add(&w->sh->counter, 1000000);
	}
}

/* Fire chain(n) at the next worker and forget it (its failure is
 * counted). */
static tw_status chain_fire(tw_agent *a, struct h_worker *w, int64_t n)
{
	tw_value av[1] = {tw_value_int(n)};
	tw_value t = H_TUPLE(av);
	tw_future *f;
	tw_status st = tw_rpc_async(a, h_names[(w->rank + 1) % w->world],
				    "chain", &t, NULL, -1, &f);
	if (st != TW_OK)
		return st;
	st = tw_future_then(f, chain_done, w);
	tw_future_release(f);
	return st;
}

/* chain(n): count this hop, fire chain(n - 1) at the next worker without
 * waiting, answer at once. */
static tw_status fn_chain(tw_call_ctx *ctx, const tw_value *args,
			  const tw_value *kwargs, tw_value *result, void *arg)
{
	struct h_worker *w = arg;
	int64_t n = args->u.items[0].u.i;
	atomic_fetch_add(&w->sh->counter, 1);
	if (n > 0) {
		tw_status st = chain_fire(tw_call_agent(ctx), w, n - 1);
		if (st != TW_OK) {
			fprintf(stderr, "[rank %d] chain: %s\n", w->rank,
				tw_errmsg(st));
			atomic_fetch_add(&w->sh->counter, 1000000);
		}
	}
	*result = tw_value_none();
	return TW_OK;
}

/* relay(to, x) (blocking): sleeps 300 ms, so that every worker is in its
 * shutdown by then, and answers add(x, 1) called on worker to. */
static tw_status fn_relay(tw_call_ctx *ctx, const tw_value *args,
			  const tw_value *kwargs, tw_value *result, void *arg)
{
	h_sleep_ms(300);
	const char *to = args->u.items[0].u.str;
	tw_value av[2] = {args->u.items[1], tw_value_int(1)};
	tw_value t = H_TUPLE(av);
	tw_value e;
	tw_status st = tw_rpc_sync(tw_call_agent(ctx), to, "add", &t, NULL, -1,
				   result, &e);
	if (st != TW_OK) {
		*result = e;
		return st;
	}
	return TW_OK;
}

static tw_status setup(tw_agent *a, void *arg)
{
	tw_status st = h_register_all(a, NULL);
	if (st == TW_OK)
		st = tw_agent_register(a, "chain", fn_chain, arg, 0);
	if (st == TW_OK)
		st = tw_agent_register(a, "relay", fn_relay, arg,
				       TW_FN_BLOCKING);
	return st;
}

static void opts(struct tw_agent_opts *o, struct h_worker *w)
{
	h_opts(o, w);
	o->setup = setup;
	o->setup_arg = w;
	o->shutdown_timeout_ms = 30000;
}

/* ---- chains ---- */

static int w_chains(struct h_worker *w)
{
	struct tw_agent_opts o;
	opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_errmsg(st));
	/* Start a chain and leave at once: every hop after the first is a
	 * call a handler makes while its worker is in the barrier. */
	st = chain_fire(a, w, CHAIN_HOPS);
	W_ASSERT(w, st == TW_OK, "chain: %s", tw_errmsg(st));
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_errmsg(st));
	return 0;
}

Test(shutdown, fire_and_forget_chains_complete, .timeout = 120)
{
	struct h_shared *sh = h_shared_new();
	h_run_group(3, w_chains, NULL, sh, 0);
	cr_assert_eq(atomic_load(&sh->counter), 3 * (CHAIN_HOPS + 1),
		     "hops counted %" PRId64 " (a failed hop adds 1000000)",
		     atomic_load(&sh->counter));
	munmap(sh, sizeof(*sh));
}

/* ---- nested calls ---- */

static void relay_done(tw_future *f, void *arg)
{
	struct h_worker *w = arg;
	const tw_value *v = tw_future_value(f);
	if (tw_future_status(f) == TW_OK && v != NULL && v->kind == TW_KIND_INT)
		atomic_store(&w->sh->counter, v->u.i);
	else
		atomic_store(&w->sh->counter, -1);
}

static int w_nested(struct h_worker *w)
{
	struct tw_agent_opts o;
	opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_errmsg(st));
	if (w->rank == 0) {
		/* w1's blocking handler calls w2 once all three are in the
		 * barrier; nobody here waits for it but shutdown. */
		tw_value av[2] = {H_STR("w2"), tw_value_int(41)};
		tw_value t = H_TUPLE(av);
		tw_future *f;
		st = tw_rpc_async(a, "w1", "relay", &t, NULL, 0, &f);
		W_ASSERT(w, st == TW_OK, "relay: %s", tw_errmsg(st));
		W_ASSERT(w, tw_future_then(f, relay_done, w) == TW_OK, "then");
		tw_future_release(f);
	}
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_errmsg(st));
	return 0;
}

Test(shutdown, nested_calls_from_handlers_complete, .timeout = 120)
{
	struct h_shared *sh = h_shared_new();
	h_run_group(3, w_nested, NULL, sh, 0);
	cr_assert_eq(atomic_load(&sh->counter), 42, "relay answered %" PRId64,
		     atomic_load(&sh->counter));
	munmap(sh, sizeof(*sh));
}

/* ---- a stopped member ---- */

static int w_stopped(struct h_worker *w)
{
	struct tw_agent_opts o;
	opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_errmsg(st));
	if (w->rank == 2) {
		w->sh->status[2] = getpid();
		atomic_store(&w->sh->flag[2], 1);
		raise(SIGSTOP); /* and never shuts down */
		return 0;
	}
	uint64_t until = h_now_ms() + 20000;
	while (!atomic_load(&w->sh->flag[2]) && h_now_ms() < until)
		h_sleep_ms(2);
	W_ASSERT(w, atomic_load(&w->sh->flag[2]), "w2 never stopped");
	uint64_t t0 = h_now_ms();
	st = tw_agent_shutdown_timeout(a, true, 2000);
	uint64_t took = h_now_ms() - t0;
	snprintf(w->sh->msg[w->rank], sizeof(w->sh->msg[0]), "%s",
		 tw_errmsg(st));
	W_ASSERT(w, st == TW_ETIMEDOUT, "shutdown: %s: %s", tw_status_name(st),
		 tw_errmsg(st));
	/* The deadline, not the call timeouts nor the group limit. */
	W_ASSERT(w, took < 20000, "took %" PRIu64 " ms", took);
	atomic_fetch_add(&w->sh->counter, 1);
	if (w->rank == 0) {
		/* The last one out ends the stopped worker. */
		until = h_now_ms() + 20000;
		while (atomic_load(&w->sh->counter) < 2 && h_now_ms() < until)
			h_sleep_ms(5);
		kill(w->sh->status[2], SIGKILL);
	}
	return 0;
}

Test(shutdown, a_stopped_member_ends_at_the_deadline_named, .timeout = 120)
{
	struct h_shared *sh = h_shared_new();
	for (int r = 0; r < 3; r++)
		atomic_store(&sh->flag[r], 0);
	h_run_group(3, w_stopped, NULL, sh, 1u << 2);
	for (int r = 0; r < 2; r++) {
		cr_assert(strstr(sh->msg[r], "'w2' (id 2)") != NULL &&
				  strstr(sh->msg[r], "2000 ms") != NULL,
			  "rank %d: %s", r, sh->msg[r]);
	}
	munmap(sh, sizeof(*sh));
}

/* ---- rank 0 dies during the barrier ---- */

static int w_rank0_dies(struct h_worker *w)
{
	struct tw_agent_opts o;
	opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 0) {
		/* Once the others are on their way into the barrier (it waits
		 * for us), die. */
		W_ASSERT(w, h_wait_all(w->sh->flag, 3, 0, 20000),
			 "the others never began their shutdown");
		h_sleep_ms(200);
		kill(getpid(), SIGKILL);
		return 1;
	}
	atomic_store(&w->sh->flag[w->rank], 1);
	st = tw_agent_shutdown(a, true);
	snprintf(w->sh->msg[w->rank], sizeof(w->sh->msg[0]), "%s",
		 tw_errmsg(st));
	W_ASSERT(w, st == TW_EUNREACHABLE, "shutdown: %s: %s",
		 tw_status_name(st), tw_errmsg(st));
	return 0;
}

Test(shutdown, a_dead_rank_0_ends_the_barrier_unreachable, .timeout = 120)
{
	struct h_shared *sh = h_shared_new();
	h_run_group(3, w_rank0_dies, NULL, sh, 1u << 0);
	for (int r = 1; r < 3; r++)
		cr_assert(strstr(sh->msg[r], "rank 0") != NULL, "rank %d: %s",
			  r, sh->msg[r]);
	munmap(sh, sizeof(*sh));
}

/* ---- a stopped rank 0 ---- */

static int w_rank0_stopped(struct h_worker *w)
{
	struct tw_agent_opts o;
	opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_errmsg(st));
	if (w->rank == 0) {
		/* The rendezvous thread stops with us: not before every
		 * worker has its member list. */
		uint64_t t = h_now_ms() + 20000;
		while ((!atomic_load(&w->sh->flag[1]) ||
			!atomic_load(&w->sh->flag[2])) &&
		       h_now_ms() < t)
			h_sleep_ms(2);
		w->sh->status[0] = getpid();
		atomic_store(&w->sh->flag[0], 1);
		raise(SIGSTOP);
		return 0;
	}
	atomic_store(&w->sh->flag[w->rank], 1);
	uint64_t until = h_now_ms() + 20000;
	while (!atomic_load(&w->sh->flag[0]) && h_now_ms() < until)
		h_sleep_ms(2);
	W_ASSERT(w, atomic_load(&w->sh->flag[0]), "w0 never stopped");
	st = tw_agent_shutdown_timeout(a, true, 1500);
	snprintf(w->sh->msg[w->rank], sizeof(w->sh->msg[0]), "%s",
		 tw_errmsg(st));
	W_ASSERT(w, st == TW_ETIMEDOUT, "shutdown: %s: %s", tw_status_name(st),
		 tw_errmsg(st));
	if (atomic_fetch_add(&w->sh->counter, 1) == 1)
		kill(w->sh->status[0], SIGKILL); /* the last one out */
	return 0;
}

Test(shutdown, a_stopped_rank_0_ends_at_the_deadline, .timeout = 120)
{
	struct h_shared *sh = h_shared_new();
	h_run_group(3, w_rank0_stopped, NULL, sh, 1u << 0);
	for (int r = 1; r < 3; r++)
		cr_assert(strstr(sh->msg[r], "no answer from the rendezvous "
					     "host (rank 0)") != NULL &&
				  strstr(sh->msg[r], "1500 ms") != NULL,
			  "rank %d: %s", r, sh->msg[r]);
	munmap(sh, sizeof(*sh));
}

/* ---- the group's secret at the rendezvous ---- */

struct secrets {
	const char *s[2];
};

static int w_secret(struct h_worker *w)
{
	const struct secrets *c = w->arg;
	struct tw_agent_opts o;
	opts(&o, w);
	o.secret = c->s[w->rank];
	o.init_timeout_ms = 3000;
	tw_agent *a = NULL;
	tw_status st = h_init_err(w->sh->msg[w->rank],
				  sizeof(w->sh->msg[w->rank]), &o, &a);
	w->sh->status[w->rank] = st;
	if (st == TW_OK)
		tw_agent_shutdown(a, false);
	return 0;
}

Test(rendezvous, another_secret_or_none_refused_at_init, .timeout = 60)
{
	static const struct secrets cases[] = {
		{{"alpha", "beta"}}, {{"alpha", NULL}}, {{NULL, "beta"}}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct h_shared *sh = h_shared_new();
		h_run_group(2, w_secret, (void *)&cases[i], sh, 0);
		cr_assert_eq(sh->status[1], TW_EAUTH, "case %zu: %s: %s", i,
			     tw_status_name(sh->status[1]), sh->msg[1]);
		cr_assert(strstr(sh->msg[1], "authentication failed") &&
				  strstr(sh->msg[1], "secret"),
			  "case %zu: %s", i, sh->msg[1]);
		/* Rank 0 waited for a rank 1 that never joined. */
		cr_assert_eq(sh->status[0], TW_ETIMEDOUT, "case %zu: %s", i,
			     sh->msg[0]);
		munmap(sh, sizeof(*sh));
	}
}
