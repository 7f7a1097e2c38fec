/* Agent protocol tests on the fake net (dataplane/fake.h): two or three
 * embedded agents driven by this one thread, on a clock the test moves.
 * Nothing sleeps and nothing depends on wall time: every timeout, every
 * reordering and every lost peer happens exactly when the test says. */
#include "rpc/agent_impl.h"
#include "tests/lib/fake_agent.h"
#include "tests/lib/fake_net.h"

#include <criterion/criterion.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/tensorwire.h>

#define MS UINT64_C(1000000)
#define T0 (UINT64_C(1000) * MS) /* tick-aligned start */

#define A_ADDR "fake://1"
#define B_ADDR "fake://2"
#define C_ADDR "fake://3"

/* ---- the world ---------------------------------------------------------- */

/* Read by executor threads too (tw_loop_clock), hence atomic. */
static _Atomic uint64_t fake_now;

static uint64_t fake_clock(void *ctx)
{
	(void)ctx;
	return atomic_load(&fake_now);
}

struct counts {
	int echo, relay, inc;
};

static struct world {
	tw_fake_net *net;
	uint32_t n;
	tw_agent *ag[3];
	struct counts k[3];
	uint64_t drive_step; /* clock moved by each drive hook call */
} W;

static const char *const names[] = {"A", "B", "C"};
static const char *const addrs[] = {A_ADDR, B_ADDR, C_ADDR};

/* One iteration of agent i's loop, as its owner. */
static int poll_one(uint32_t i)
{
	if (W.ag[i] == NULL)
		return 0;
	tw_agent_fake_enter(W.ag[i]);
	return tw_agent_poll(W.ag[i]);
}

static int poll_all(void)
{
	int work = 0;
	for (uint32_t i = 0; i < W.n; i++)
		work += poll_one(i);
	return work;
}

/* Poll everyone until two rounds in a row did nothing. A bounded number
 * of rounds: a world that never goes quiet is a failure, not a hang. */
static void settle(void)
{
	int quiet = 0;
	for (int i = 0; i < 100000 && quiet < 2; i++)
		quiet = poll_all() != 0 ? 0 : quiet + 1;
	cr_assert_geq(quiet, 2, "the agents never went quiet");
}

/* Executor threads are real threads: poll until expr holds, a bounded
 * number of rounds (a liveness bound, not a time one). */
#define POLL_UNTIL(expr)                                                     \
	do {                                                                 \
		for (long i_ = 0; i_ < 5000000 && !(expr); i_++) {           \
			poll_all();                                          \
			sched_yield();                                       \
		}                                                            \
		cr_assert(expr, "never: %s", #expr);                         \
	} while (0)

static void advance(uint64_t ns)
{
	atomic_fetch_add(&fake_now, ns);
	settle();
}

/* Graceful shutdown's hook: every agent gets a turn. */
static void drive(void *arg)
{
	(void)arg;
	if (W.drive_step != 0)
		atomic_fetch_add(&fake_now, W.drive_step);
	poll_all();
}

/* ---- functions the agents serve ------------------------------------------ */

static tw_status h_echo(tw_call_ctx *ctx, const tw_value *args,
			const tw_value *kwargs, tw_value *result, void *arg)
{
	(void)ctx;
	(void)kwargs;
	struct counts *k = arg;
	k->echo++;
	const tw_value *x;
	if (tw_value_get_item(args, 0, &x) != TW_OK)
		return TW_EINVAL;
	return tw_value_clone(result, x);
}

static tw_status h_inc(tw_call_ctx *ctx, const tw_value *args,
		       const tw_value *kwargs, tw_value *result, void *arg)
{
	(void)ctx;
	(void)kwargs;
	struct counts *k = arg;
	k->inc++;
	const tw_value *x;
	int64_t v;
	if (tw_value_get_item(args, 0, &x) != TW_OK ||
	    tw_value_get_int(x, &v) != TW_OK)
		return TW_EINVAL;
	*result = tw_value_int(v + 1);
	return TW_OK;
}

/* Async: forwards its argument to C's t::inc and answers with C's answer,
 * without holding its loop meanwhile. */
static tw_status h_relay(tw_call_ctx *ctx, const tw_value *args,
			 const tw_value *kwargs, tw_value *result, void *arg)
{
	(void)kwargs;
	(void)result;
	struct counts *k = arg;
	k->relay++;
	tw_future *f = NULL;
	tw_status st = tw_rpc_async(tw_call_agent(ctx), "C", "t::inc", args,
				    NULL, 1000, &f);
	if (st != TW_OK)
		return st;
	tw_call_defer(ctx, f);
	tw_future_release(f);
	return TW_OK;
}

/* Blocking (executor thread): waits for the test's gate, then echoes. */
static atomic_int block_gate, block_runs;

static tw_status h_block(tw_call_ctx *ctx, const tw_value *args,
			 const tw_value *kwargs, tw_value *result, void *arg)
{
	(void)ctx;
	(void)kwargs;
	(void)arg;
	atomic_fetch_add(&block_runs, 1);
	while (!atomic_load(&block_gate))
		sched_yield();
	const tw_value *x;
	if (tw_value_get_item(args, 0, &x) != TW_OK)
		return TW_EINVAL;
	return tw_value_clone(result, x);
}

static tw_status setup(tw_agent *a, void *arg)
{
	tw_status st = tw_agent_register(a, "t::block", h_block, arg,
					 TW_FN_BLOCKING);
	if (st == TW_OK)
		st = tw_agent_register(a, "t::echo", h_echo, arg, 0);
	if (st == TW_OK)
		st = tw_agent_register(a, "t::inc", h_inc, arg, 0);
	if (st == TW_OK)
		st = tw_agent_register(a, "t::relay", h_relay, arg, 0);
	return st;
}

typedef void (*tweak_fn)(uint32_t rank, struct tw_agent_opts *o);

static void world_up(uint32_t n, tweak_fn tweak)
{
	memset(&W, 0, sizeof(W));
	atomic_store(&fake_now, T0);
	W.n = n;
	cr_assert_eq(tw_fake_net_create(&W.net), TW_OK);
	for (uint32_t r = 0; r < n; r++) {
		struct tw_agent_opts o;
		tw_agent_opts_init(&o, sizeof(o));
		o.name = names[r];
		o.rank = r;
		o.world_size = n;
		o.embedded = true;
		o.executor_threads = 1;
		o.setup = setup;
		o.setup_arg = &W.k[r];
		if (tweak != NULL)
			tweak(r, &o);
		struct tw_agent_fake h = {
			.net = W.net, .clock = fake_clock, .names = names,
			.addrs = addrs, .drive = drive,
		};
		tw_status st = tw_agent_init_fake(&o, &h, &W.ag[r]);
		cr_assert_eq(st, TW_OK, "agent %s: %s", names[r], tw_errmsg(st));
	}
}

static void agent_down(uint32_t i, bool graceful)
{
	tw_agent_fake_enter(W.ag[i]);
	cr_assert_eq(tw_agent_shutdown(W.ag[i], graceful), TW_OK);
	W.ag[i] = NULL;
}

static void world_down(bool graceful)
{
	for (uint32_t i = 0; i < W.n; i++)
		if (W.ag[i] != NULL)
			agent_down(i, graceful);
	cr_assert_eq(tw_fake_net_destroy(W.net), TW_OK);
	W.net = NULL;
}

static struct tw_agent_stats stats(uint32_t i)
{
	struct tw_agent_stats s;
	tw_agent_get_stats(W.ag[i], &s);
	return s;
}

static struct tw_fake_net_stats net_stats(void)
{
	struct tw_fake_net_stats s;
	tw_fake_net_get_stats(W.net, &s);
	return s;
}

/* ---- calls ---------------------------------------------------------------- */

static tw_future *call(uint32_t from, const char *to, const char *fn,
		       int64_t v, int64_t timeout_ms)
{
	tw_value args;
	cr_assert_eq(tw_value_tuple(&args, 1), TW_OK);
	cr_assert_eq(tw_value_set_item(&args, 0, tw_value_int(v)), TW_OK);
	tw_future *f = NULL;
	cr_assert_eq(tw_rpc_async(W.ag[from], to, fn, &args, NULL, timeout_ms,
				  &f),
		     TW_OK);
	tw_value_destroy(&args);
	return f;
}

static int64_t result_int(tw_future *f)
{
	cr_assert(tw_future_done(f), "future still pending");
	const tw_error *e = tw_future_error(f);
	cr_assert_eq(tw_future_status(f), TW_OK, "failed: %s",
		     e != NULL ? e->msg : "?");
	int64_t v = -1;
	cr_assert_eq(tw_value_get_int(tw_future_value(f), &v), TW_OK);
	return v;
}

static const tw_error *failure(tw_future *f, tw_status kind)
{
	cr_assert(tw_future_done(f), "future still pending");
	const tw_error *e = tw_future_error(f);
	cr_assert_not_null(e, "succeeded, expected %s", tw_status_name(kind));
	cr_assert_eq(e->kind, kind, "failed with %s (%s), expected %s",
		     tw_status_name(e->kind), e->msg, tw_status_name(kind));
	return e;
}

/* ---- the tests -------------------------------------------------------------- */

Test(protocol, call_and_response_step_by_step)
{
	world_up(2, NULL);
	tw_future *f = call(0, "B", "t::echo", 42, 1000);

	/* A's loop takes the call and puts the CALL frame on the wire. */
	poll_one(0);
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), 1);
	cr_assert_eq(W.k[1].echo, 0);
	/* B's loop receives, serves and answers in the same iteration. */
	poll_one(1);
	cr_assert_eq(W.k[1].echo, 1);
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), 0);
	cr_assert_eq(tw_fake_net_queued(W.net, B_ADDR, A_ADDR), 1);
	cr_assert_not(tw_future_done(f));
	/* A's loop matches the RET to the pending call. */
	poll_one(0);
	cr_assert_eq(result_int(f), 42);
	cr_assert_eq(tw_agent_outstanding(W.ag[0]), 0);

	settle();
	struct tw_agent_stats sa = stats(0), sb = stats(1);
	cr_assert_eq(sa.calls_sent, 1);
	cr_assert_eq(sb.calls_served, 1);
	cr_assert_eq(sa.late_responses + sb.late_responses, 0);
	cr_assert_eq(sa.bad_frames + sb.bad_frames, 0);
	struct tw_fake_net_stats ns = net_stats();
	cr_assert_eq(ns.sent, 2);
	cr_assert_eq(ns.delivered, 2);
	cr_assert_eq(ns.conns, 1);
	tw_future_release(f);
	world_down(true);
}

Test(protocol, timeout_fires_at_deadline_not_a_tick_before)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_future *f = call(0, "B", "t::echo", 1, 100);
	settle();
	cr_assert_eq(W.k[1].echo, 1, "B answered; the answer is held");
	cr_assert_eq(tw_fake_net_queued(W.net, B_ADDR, A_ADDR), 1);

	advance(99 * MS); /* one tick before */
	cr_assert_not(tw_future_done(f));
	advance(MS - 1); /* one nanosecond before */
	cr_assert_not(tw_future_done(f));
	cr_assert_eq(stats(0).timeouts, 0);
	advance(1);
	const tw_error *e = failure(f, TW_ETIMEDOUT);
	cr_assert_str_eq(e->msg, "RPC ran for more than set timeout (100 ms) "
				 "and will now be marked with an error");
	cr_assert_eq(e->origin, 0);
	cr_assert_eq(stats(0).timeouts, 1);
	cr_assert_eq(tw_agent_outstanding(W.ag[0]), 0);
	tw_future_release(f);
	world_down(false);
}

Test(protocol, late_response_after_timeout_is_dropped_and_counted)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_future *f = call(0, "B", "t::echo", 5, 50);
	settle();
	advance(50 * MS);
	failure(f, TW_ETIMEDOUT);
	cr_assert_eq(stats(0).late_responses, 0);

	/* The RET arrives after all: nobody waits for it. */
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, false), TW_OK);
	settle();
	cr_assert_eq(tw_fake_net_queued(W.net, NULL, NULL), 0);
	cr_assert_eq(stats(0).late_responses, 1);
	cr_assert_eq(stats(0).bad_frames, 0);
	/* Completed once: the late value did not overwrite the timeout. */
	failure(f, TW_ETIMEDOUT);
	cr_assert_null(tw_future_value(f));

	/* The connection is fine: the next call completes. */
	tw_future *g = call(0, "B", "t::echo", 6, 50);
	settle();
	cr_assert_eq(result_int(g), 6);
	tw_future_release(f);
	tw_future_release(g);
	world_down(true);
}

static int order[8], norder;

static void record_order(tw_future *f, void *arg)
{
	(void)f;
	order[norder++] = (int)(intptr_t)arg;
}

Test(protocol, reversed_responses_complete_their_own_futures)
{
	world_up(2, NULL);
	norder = 0;
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_future *f[5];
	for (int i = 0; i < 5; i++) {
		f[i] = call(0, "B", "t::echo", 100 + i, 1000);
		cr_assert_eq(tw_future_then(f[i], record_order, (void *)(intptr_t)i),
			     TW_OK);
	}
	settle();
	cr_assert_eq(W.k[1].echo, 5);
	cr_assert_eq(tw_fake_net_queued(W.net, B_ADDR, A_ADDR), 5);
	cr_assert_eq(tw_fake_net_reverse(W.net, B_ADDR, A_ADDR), 5);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, false), TW_OK);
	settle();
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(result_int(f[i]), 100 + i, "future %d", i);
		tw_future_release(f[i]);
	}
	cr_assert_eq(norder, 5);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(order[i], 4 - i, "completion %d was call %d", i,
			     order[i]);
	cr_assert_eq(stats(0).late_responses, 0);
	world_down(true);
}

Test(protocol, reorder_by_permutation)
{
	world_up(2, NULL);
	norder = 0;
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_future *f[4];
	for (int i = 0; i < 4; i++) {
		f[i] = call(0, "B", "t::echo", 10 * i, 1000);
		cr_assert_eq(tw_future_then(f[i], record_order, (void *)(intptr_t)i),
			     TW_OK);
	}
	settle();
	const size_t bad[4] = {0, 1, 1, 3};
	cr_assert_eq(tw_fake_net_reorder(W.net, B_ADDR, A_ADDR, bad, 4), TW_EINVAL);
	const size_t perm[4] = {2, 0, 3, 1};
	cr_assert_eq(tw_fake_net_reorder(W.net, B_ADDR, A_ADDR, perm, 4), TW_OK);
	/* One at a time, through the hold. */
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(tw_fake_net_deliver(W.net, B_ADDR, A_ADDR, 1), 1);
		settle();
		cr_assert_eq(norder, i + 1);
		cr_assert_eq(order[i], (int)perm[i]);
		cr_assert_eq(tw_fake_net_queued(W.net, B_ADDR, A_ADDR),
			     (size_t)(3 - i));
	}
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(result_int(f[i]), 10 * i);
		tw_future_release(f[i]);
	}
	world_down(true);
}

Test(protocol, call_held_past_its_deadline_is_dropped_by_the_callee)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, B_ADDR, true), TW_OK);

	/* Held for less than its budget: it runs. */
	tw_future *ok = call(0, "B", "t::echo", 3, 50);
	settle();
	advance(30 * MS);
	cr_assert_eq(tw_fake_net_deliver(W.net, A_ADDR, B_ADDR, SIZE_MAX), 1);
	settle();
	cr_assert_eq(W.k[1].echo, 1);
	cr_assert_eq(result_int(ok), 3);

	/* Held past it: the caller times out, the callee never runs it. */
	tw_future *f = call(0, "B", "t::echo", 4, 50);
	settle();
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), 1);
	advance(50 * MS);
	failure(f, TW_ETIMEDOUT);
	cr_assert_eq(tw_fake_net_deliver(W.net, A_ADDR, B_ADDR, SIZE_MAX), 1);
	settle();
	cr_assert_eq(tw_fake_net_queued(W.net, NULL, NULL), 0);
	cr_assert_eq(W.k[1].echo, 1, "the expired call's handler ran");
	struct tw_agent_stats sb = stats(1);
	cr_assert_eq(sb.calls_served, 2, "B received both calls");
	cr_assert_eq(sb.exec_expired, 1);
	cr_assert_eq(stats(0).late_responses, 0, "B answered the expired call");
	cr_assert_eq(stats(0).timeouts, 1);

	tw_future_release(ok);
	tw_future_release(f);
	world_down(true);
}

Test(protocol, peer_death_fails_pending_calls)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_future *f[3];
	for (int i = 0; i < 3; i++)
		f[i] = call(0, "B", "t::echo", i, 0); /* no timeout at all */
	settle();
	cr_assert_eq(W.k[1].echo, 3);
	for (int i = 0; i < 3; i++)
		cr_assert_not(tw_future_done(f[i]));

	cr_assert_eq(tw_fake_net_break(W.net, A_ADDR, B_ADDR), 1);
	settle();
	for (int i = 0; i < 3; i++) {
		const tw_error *e = failure(f[i], TW_EUNREACHABLE);
		cr_assert(strstr(e->msg, "unreachable") != NULL, "%s", e->msg);
		tw_future_release(f[i]);
	}
	cr_assert_eq(tw_agent_outstanding(W.ag[0]), 0);
	cr_assert_eq(tw_fake_net_queued(W.net, NULL, NULL), 0,
		     "answers in flight died with the connection");
	cr_assert_eq(stats(0).conns_closed, 1);
	cr_assert_eq(stats(1).conns_closed, 1);
	cr_assert_eq(stats(0).late_responses, 0);

	/* B is gone for good: a new call fails at once, it does not hang. */
	cr_assert_eq(tw_fake_net_set_down(W.net, B_ADDR, true), TW_OK);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, false), TW_OK);
	tw_future *g = call(0, "B", "t::echo", 7, 0);
	settle();
	failure(g, TW_EUNREACHABLE);
	/* Back again: the agent connects anew. */
	cr_assert_eq(tw_fake_net_set_down(W.net, B_ADDR, false), TW_OK);
	tw_future *h = call(0, "B", "t::echo", 8, 0);
	settle();
	cr_assert_eq(result_int(h), 8);
	cr_assert_eq(net_stats().conns, 2);
	tw_future_release(g);
	tw_future_release(h);
	world_down(true);
}

static void delay_calls(uint32_t rank, struct tw_agent_opts *o)
{
	if (rank == 0) {
		o->fault_delay_type = TW_MSG_CALL;
		o->fault_delay_ms = 30;
	}
}

Test(protocol, fault_delay_runs_on_the_fake_clock)
{
	world_up(2, delay_calls);
	tw_future *f = call(0, "B", "t::echo", 9, 1000);
	settle();
	cr_assert_eq(net_stats().sent, 0, "the CALL left before its delay");
	advance(29 * MS);
	cr_assert_eq(net_stats().sent, 0);
	cr_assert_eq(W.k[1].echo, 0);
	cr_assert_not(tw_future_done(f));
	advance(MS);
	/* Sent, served and answered (RETs are not delayed) at 30 ms. */
	cr_assert_eq(W.k[1].echo, 1);
	cr_assert_eq(result_int(f), 9);
	cr_assert_eq(net_stats().sent, 2);
	tw_future_release(f);
	world_down(true);
}

Test(protocol, nested_async_call_a_b_c)
{
	world_up(3, NULL);
	/* C's answer to B is held: B's handler has deferred and its loop
	 * is free meanwhile. */
	cr_assert_eq(tw_fake_net_hold(W.net, C_ADDR, B_ADDR, true), TW_OK);
	tw_future *f = call(0, "B", "t::relay", 41, 1000);
	settle();
	cr_assert_eq(W.k[1].relay, 1);
	cr_assert_eq(W.k[2].inc, 1);
	cr_assert_not(tw_future_done(f));
	cr_assert_eq(tw_agent_outstanding(W.ag[1]), 1, "B waits for C");

	tw_future *g = call(0, "B", "t::echo", 5, 1000);
	settle();
	cr_assert_eq(result_int(g), 5, "B serves while its handler waits");

	cr_assert_eq(tw_fake_net_hold(W.net, C_ADDR, B_ADDR, false), TW_OK);
	settle();
	cr_assert_eq(result_int(f), 42);
	cr_assert_eq(tw_agent_outstanding(W.ag[1]), 0);
	cr_assert_eq(stats(1).calls_sent, 1);
	cr_assert_eq(stats(2).calls_served, 1);
	cr_assert_eq(stats(0).calls_sent, 2);
	tw_future_release(f);
	tw_future_release(g);
	world_down(true);
}

/* An embedded owner starts its call itself when no iteration runs: the
 * frame is on the net when tw_rpc_async returns. A handler's call (inside
 * an iteration) goes through its loop's ring, and the owner's next call
 * queues behind it: one thread's calls leave in the order it made them. */
Test(protocol, owner_calls_keep_their_order)
{
	world_up(3, NULL);
	tw_agent_fake_enter(W.ag[0]);
	tw_future *f = call(0, "B", "t::echo", 1, 1000);
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), 0,
		     "an owner's call starts in its loop's next iteration");
	poll_one(0);
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), 1);
	settle();
	cr_assert_eq(result_int(f), 1);
	tw_future_release(f);

	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, C_ADDR, true), TW_OK);
	tw_agent_fake_enter(W.ag[0]);
	tw_future *r = call(0, "B", "t::relay", 10, 1000);
	poll_one(0);
	poll_one(1); /* B's handler calls C from inside B's iteration */
	cr_assert_eq(W.k[1].relay, 1);
	tw_future *g = call(1, "C", "t::echo", 20, 1000); /* B's owner */
	poll_one(1);
	cr_assert_eq(tw_fake_net_queued(W.net, B_ADDR, C_ADDR), 2);
	cr_assert_eq(tw_fake_net_deliver(W.net, B_ADDR, C_ADDR, 1), 1);
	poll_one(2);
	cr_assert_eq(W.k[2].inc, 1, "the handler's call came first");
	cr_assert_eq(W.k[2].echo, 0);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, C_ADDR, false), TW_OK);
	settle();
	cr_assert_eq(W.k[2].echo, 1);
	cr_assert_eq(result_int(g), 20);
	cr_assert_eq(result_int(r), 11);
	tw_future_release(g);
	tw_future_release(r);
	world_down(true);
}

Test(protocol, nested_call_fails_through_with_its_origin)
{
	world_up(3, NULL);
	tw_future *f = call(0, "B", "t::relay", 1, 1000);
	/* C dies while B waits for it: A learns, from B, that C is gone. */
	cr_assert_eq(tw_fake_net_hold(W.net, C_ADDR, B_ADDR, true), TW_OK);
	settle();
	cr_assert_eq(W.k[2].inc, 1);
	cr_assert_eq(tw_fake_net_break(W.net, B_ADDR, C_ADDR), 1);
	settle();
	const tw_error *e = failure(f, TW_EUNREACHABLE);
	cr_assert_eq(e->origin, 1, "raised on B, which lost C");
	tw_future_release(f);
	world_down(true);
}

Test(protocol, duplicated_response_is_dropped)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_dup_next(W.net, B_ADDR, A_ADDR, TW_MSG_RET), TW_OK);
	tw_future *f = call(0, "B", "t::echo", 11, 1000);
	settle();
	cr_assert_eq(result_int(f), 11);
	cr_assert_eq(net_stats().duplicated, 1);
	cr_assert_eq(stats(0).late_responses, 1, "the copy found no call");
	cr_assert_eq(stats(0).bad_frames, 0);
	tw_future *g = call(0, "B", "t::echo", 12, 1000);
	settle();
	cr_assert_eq(result_int(g), 12);
	cr_assert_eq(stats(0).late_responses, 1, "the rule was one-shot");
	tw_future_release(f);
	tw_future_release(g);
	world_down(true);
}

Test(protocol, dropped_call_times_out)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_drop_next(W.net, A_ADDR, B_ADDR, TW_MSG_CALL),
		     TW_OK);
	tw_future *f = call(0, "B", "t::echo", 1, 20);
	tw_future *g = call(0, "B", "t::echo", 2, 20);
	settle();
	cr_assert_eq(W.k[1].echo, 1, "only the second CALL arrived");
	cr_assert_eq(result_int(g), 2);
	cr_assert_not(tw_future_done(f));
	advance(20 * MS);
	failure(f, TW_ETIMEDOUT);
	cr_assert_eq(net_stats().dropped, 1);
	tw_future_release(f);
	tw_future_release(g);
	world_down(true);
}

/* A CALL from A to B whose header is sound and whose payload is not. */
static size_t bad_payload_call(unsigned char *buf, uint64_t req_id)
{
	const unsigned char junk[8] = {0xff, 0xfe, 0xfd, 0xfc, 0, 1, 2, 3};
	tw_frame_hdr h = {0};
	h.version = TW_FRAME_VERSION;
	h.type = TW_MSG_CALL;
	h.req_id = req_id;
	h.src = 0;
	h.dst = 1;
	h.payload_len = sizeof(junk);
	h.total_len = TW_FRAME_HDR_SIZE + sizeof(junk);
	tw_frame_hdr_encode(buf, &h);
	memcpy(buf + TW_FRAME_HDR_SIZE, junk, sizeof(junk));
	return TW_FRAME_HDR_SIZE + sizeof(junk);
}

Test(protocol, malformed_payload_is_refused_and_the_connection_kept)
{
	world_up(2, NULL);
	tw_future *f0 = call(0, "B", "t::echo", 0, 1000);
	settle();
	cr_assert_eq(result_int(f0), 0);

	cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, B_ADDR, true), TW_OK);
	tw_future *f1 = call(0, "B", "t::echo", 1, 1000);
	settle();
	unsigned char frame[64];
	size_t len = bad_payload_call(frame, 999999);
	cr_assert_eq(tw_fake_net_inject(W.net, A_ADDR, B_ADDR, frame, len), TW_OK);
	tw_future *f2 = call(0, "B", "t::echo", 2, 1000);
	settle();
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), 3);
	cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, B_ADDR, false), TW_OK);
	settle();

	cr_assert_eq(result_int(f1), 1);
	cr_assert_eq(result_int(f2), 2);
	cr_assert_eq(stats(1).bad_frames, 1);
	cr_assert_eq(W.k[1].echo, 3);
	/* B refused it with an EXCEPTION for request 999999, which A never
	 * made: counted as late there. */
	cr_assert_eq(stats(0).late_responses, 1);
	cr_assert_eq(stats(0).conns_closed + stats(1).conns_closed, 0);
	cr_assert_eq(net_stats().refused, 0, "the header was sound");
	tw_future_release(f0);
	tw_future_release(f1);
	tw_future_release(f2);
	world_down(true);
}

Test(protocol, malformed_header_closes_the_connection)
{
	world_up(2, NULL);
	tw_future *f0 = call(0, "B", "t::echo", 0, 1000);
	settle();
	cr_assert_eq(result_int(f0), 0);

	/* A call in flight on the connection when it goes. */
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_future *f = call(0, "B", "t::echo", 1, 0);
	settle();
	unsigned char frame[64];
	size_t len = bad_payload_call(frame, 5);
	frame[0] ^= 0xff; /* magic */
	cr_assert_eq(tw_fake_net_inject(W.net, A_ADDR, B_ADDR, frame, len), TW_OK);
	settle();

	/* As uring.c and dpdk.c: after a bad header nothing on the
	 * connection can be trusted; the transport refuses and closes. */
	cr_assert_eq(net_stats().refused, 1);
	failure(f, TW_EUNREACHABLE);
	cr_assert_eq(stats(0).conns_closed, 1);
	cr_assert_eq(stats(1).conns_closed, 1);
	cr_assert_eq(tw_fake_net_queued(W.net, NULL, NULL), 0);

	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, false), TW_OK);
	tw_future *g = call(0, "B", "t::echo", 2, 1000);
	settle();
	cr_assert_eq(result_int(g), 2, "a new connection works");
	tw_future_release(f0);
	tw_future_release(f);
	tw_future_release(g);
	world_down(true);
}

Test(protocol, graceful_shutdown_waits_for_outstanding_calls)
{
	world_up(2, NULL);
	tw_future *f = call(0, "B", "t::echo", 21, 0);
	/* Nothing polled yet: A's shutdown must see the call through. */
	cr_assert_not(tw_future_done(f));
	agent_down(0, true);
	cr_assert_eq(result_int(f), 21);
	cr_assert_eq(W.k[1].echo, 1);
	tw_future_release(f);
	world_down(true);
}

Test(protocol, graceful_shutdown_is_bounded_by_call_timeouts)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_future *f = call(0, "B", "t::echo", 1, 100);
	W.drive_step = MS; /* time passes while A waits */
	agent_down(0, true);
	failure(f, TW_ETIMEDOUT);
	cr_assert_geq(atomic_load(&fake_now), T0 + 100 * MS);
	cr_assert_lt(atomic_load(&fake_now), T0 + 102 * MS);
	W.drive_step = 0;
	tw_future_release(f);
	world_down(true);
}

Test(protocol, immediate_shutdown_fails_pending_calls)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_future *f = call(0, "B", "t::echo", 1, 0);
	settle();
	agent_down(0, false);
	const tw_error *e = failure(f, TW_ESHUTDOWN);
	cr_assert_str_eq(e->msg, "RPC agent is shutting down");
	/* B sees A leave. */
	settle();
	cr_assert_eq(stats(1).conns_closed, 1);
	tw_future_release(f);
	world_down(false);
}

Test(protocol, blocking_call_deadline_on_the_fake_clock)
{
	world_up(2, NULL);
	atomic_store(&block_gate, 1);
	atomic_store(&block_runs, 0);
	/* The executor checks the deadline on the loop's clock: on the fake
	 * one this call is far from expired. */
	tw_future *f = call(0, "B", "t::block", 1, 1000);
	POLL_UNTIL(tw_future_done(f));
	cr_assert_eq(result_int(f), 1);

	/* The executor's one thread busy; a second call waits in its queue
	 * past its deadline and never runs. */
	atomic_store(&block_gate, 0);
	tw_future *g1 = call(0, "B", "t::block", 2, 0);
	POLL_UNTIL(atomic_load(&block_runs) == 2);
	tw_future *g2 = call(0, "B", "t::block", 3, 50);
	POLL_UNTIL(stats(1).calls_served == 3);
	advance(50 * MS);
	failure(g2, TW_ETIMEDOUT);
	atomic_store(&block_gate, 1);
	POLL_UNTIL(tw_future_done(g1) && stats(1).exec_jobs == 3 &&
		   stats(0).late_responses == 1);
	cr_assert_eq(result_int(g1), 2);
	cr_assert_eq(atomic_load(&block_runs), 2, "the expired call ran");
	cr_assert_eq(stats(1).exec_expired, 1);
	tw_future_release(f);
	tw_future_release(g1);
	tw_future_release(g2);
	world_down(true);
}

Test(protocol, init_checks_the_member_list)
{
	tw_fake_net *net;
	cr_assert_eq(tw_fake_net_create(&net), TW_OK);
	struct tw_agent_opts o;
	tw_agent_opts_init(&o, sizeof(o));
	o.name = "B"; /* rank 0 is "A" */
	o.rank = 0;
	o.world_size = 2;
	o.embedded = true;
	struct tw_agent_fake h = {.net = net, .clock = fake_clock,
				  .names = names, .addrs = addrs};
	tw_agent *a = NULL;
	cr_assert_eq(tw_agent_init_fake(&o, &h, &a), TW_EINVAL);
	cr_assert_null(a);
	cr_assert(strstr(tw_errmsg(TW_EINVAL), "rank 0") != NULL, "%s",
		  tw_errmsg(TW_EINVAL));
	o.name = "A";
	o.embedded = false;
	cr_assert_eq(tw_agent_init_fake(&o, &h, &a), TW_EINVAL);
	cr_assert_eq(tw_fake_net_destroy(net), TW_OK);
}

/* ---- the fake transport alone: its contract ------------------------------ */

struct ep {
	tw_transport *t;
	tw_conn *last;       /* last connection announced */
	int up, closed;
	tw_status close_st;
	int frames;
	uint64_t req_ids[8];
	size_t off;
	uint64_t rx_ns;
};

static void ep_on_frame(void *ctx, tw_conn *c, const tw_frame_hdr *hp,
			tw_buf *buf, size_t off, size_t len)
{
	struct ep *e = ctx;
	(void)c;
	tw_frame_hdr h;
	cr_assert_eq(tw_frame_hdr_decode((char *)buf->data + off, NULL, &h),
		     TW_OK);
	cr_assert(h.type == hp->type && h.req_id == hp->req_id &&
		  h.src == hp->src && h.dst == hp->dst &&
		  h.timeout_ms == hp->timeout_ms &&
		  h.payload_len == hp->payload_len &&
		  h.seg_count == hp->seg_count, "the header handed up is the frame's");
	cr_assert_eq(hp->total_len, len);
	e->off = off;
	e->rx_ns = e->t->rx_ns;
	cr_assert_lt(e->frames, 8);
	e->req_ids[e->frames++] = h.req_id;
}

static void ep_on_conn(void *ctx, tw_conn *c, tw_status st)
{
	struct ep *e = ctx;
	if (st == TW_OK) {
		e->up++;
		e->last = c;
	} else {
		e->closed++;
		e->close_st = st;
	}
}

struct sreq {
	struct tw_send_req r;
	struct iovec iov[2];
	unsigned char hdr[TW_FRAME_HDR_SIZE];
	unsigned char body[16];
	int done;
	tw_status st;
};

static void sreq_done(struct tw_send_req *r, tw_status st)
{
	struct sreq *s = (struct sreq *)r;
	s->done++;
	s->st = st;
}

static void sreq_init(struct sreq *s, uint64_t req_id)
{
	memset(s, 0, sizeof(*s));
	tw_frame_hdr h = {0};
	h.version = TW_FRAME_VERSION;
	h.type = TW_MSG_ACK;
	h.req_id = req_id;
	h.payload_len = sizeof(s->body);
	h.total_len = TW_FRAME_HDR_SIZE + sizeof(s->body);
	tw_frame_hdr_encode(s->hdr, &h);
	/* Two iovecs: the transport gathers them into one frame. */
	s->iov[0] = (struct iovec){s->hdr, sizeof(s->hdr)};
	s->iov[1] = (struct iovec){s->body, sizeof(s->body)};
	s->r.iov = s->iov;
	s->r.niov = 2;
	s->r.len = h.total_len;
	s->r.type = TW_MSG_ACK;
	s->r.done = sreq_done;
}

Test(fake_net, transport_contract)
{
	atomic_store(&fake_now, T0);
	tw_fake_net *net;
	cr_assert_eq(tw_fake_net_create(&net), TW_OK);
	tw_loop *l[2];
	struct ep e[2];
	memset(e, 0, sizeof(e));
	for (int i = 0; i < 2; i++) {
		struct tw_loop_opts lo;
		tw_loop_opts_init(&lo, sizeof(lo));
		lo.clock = fake_clock;
		cr_assert_eq(tw_loop_create(&lo, &l[i]), TW_OK);
		struct tw_transport_cbs cbs = {.ctx = &e[i], .on_frame = ep_on_frame,
					       .on_conn = ep_on_conn};
		cr_assert_eq(tw_fake_transport_create(net, l[i], &cbs, &e[i].t), TW_OK);
	}
	char bound[64];
	cr_assert_eq(e[1].t->ops->listen(e[1].t, "fake://7", bound, sizeof(bound)),
		     TW_OK);
	cr_assert_str_eq(bound, "fake://7");
	cr_assert_eq(e[0].t->ops->listen(e[0].t, "fake://7", NULL, 0), TW_EBUSY);
	cr_assert_eq(e[0].t->ops->listen(e[0].t, "tcp://x:1", NULL, 0), TW_EINVAL);
	tw_conn *c = NULL;
	cr_assert_eq(e[0].t->ops->connect(e[0].t, "fake://8", &c), TW_EUNREACHABLE);
	cr_assert_eq(e[0].t->ops->connect(e[0].t, "fake://7", &c), TW_OK);

	struct sreq s[3];
	for (int i = 0; i < 3; i++) {
		sreq_init(&s[i], 10 + (uint64_t)i);
		cr_assert_eq(tw_transport_send(e[0].t, c, &s[i].r), TW_OK);
		cr_assert_eq(s[i].done, 0, "done inside send");
	}
	/* The sender's next poll completes the sends, once each. */
	atomic_store(&fake_now, T0 + 5 * MS);
	tw_loop_poll_once(l[0]);
	cr_assert_eq(e[0].up, 1);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(s[i].done, 1);
		cr_assert_eq(s[i].st, TW_OK);
	}
	tw_loop_poll_once(l[0]);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(s[i].done, 1);
	/* Anonymous sender (not listening): reorder by the wildcard. */
	cr_assert_eq(tw_fake_net_queued(net, NULL, "fake://7"), 3);
	tw_fake_net_set_auto(net, false);
	tw_loop_poll_once(l[1]);
	cr_assert_eq(e[1].up, 1);
	cr_assert_eq(e[1].frames, 0, "auto delivery is off");
	const size_t perm[3] = {1, 2, 0};
	cr_assert_eq(tw_fake_net_reorder(net, NULL, "fake://7", perm, 3), TW_OK);
	const size_t perm4[4] = {0, 1, 2, 3};
	cr_assert_eq(tw_fake_net_reorder(net, NULL, "fake://7", perm4, 4),
		     TW_ENOENT, "only 3 queued");
	cr_assert_eq(tw_fake_net_deliver(net, NULL, NULL, 2), 2);
	tw_loop_poll_once(l[1]);
	cr_assert_eq(e[1].frames, 2);
	cr_assert_eq(e[1].req_ids[0], 11);
	cr_assert_eq(e[1].req_ids[1], 12);
	cr_assert_eq(e[1].off % 64, 0);
	cr_assert_neq(e[1].off, 0);
	cr_assert_eq(e[1].rx_ns, T0, "stamped when it entered the net");
	cr_assert_eq(e[1].t->rx_ns, 0, "only while on_frame runs");

	/* Close: the last frame still arrives, then the peer's end closes. */
	e[0].t->ops->close(e[0].t, c);
	cr_assert_eq(e[0].closed, 0, "on_conn never from inside close");
	cr_assert_eq(tw_transport_send(e[0].t, c, &s[0].r), TW_EUNREACHABLE);
	tw_loop_poll_once(l[0]);
	cr_assert_eq(e[0].closed, 1);
	cr_assert_eq(e[0].close_st, TW_ESHUTDOWN);
	tw_fake_net_set_auto(net, true);
	tw_loop_poll_once(l[1]);
	cr_assert_eq(e[1].frames, 3);
	cr_assert_eq(e[1].req_ids[2], 10);
	cr_assert_eq(e[1].closed, 1);
	cr_assert_eq(e[1].close_st, TW_EUNREACHABLE);

	struct tw_fake_net_stats ns;
	tw_fake_net_get_stats(net, &ns);
	cr_assert_eq(ns.sent, 3);
	cr_assert_eq(ns.delivered, 3);
	cr_assert_eq(tw_fake_net_destroy(net), TW_EBUSY);
	for (int i = 0; i < 2; i++) {
		e[i].t->ops->destroy(e[i].t);
		tw_loop_destroy(l[i]);
	}
	cr_assert_eq(tw_fake_net_destroy(net), TW_OK);
}

Test(fake_net, sends_pending_at_a_break_end_with_it)
{
	atomic_store(&fake_now, T0);
	tw_fake_net *net;
	cr_assert_eq(tw_fake_net_create(&net), TW_OK);
	tw_loop *l[2];
	struct ep e[2];
	memset(e, 0, sizeof(e));
	for (int i = 0; i < 2; i++) {
		struct tw_loop_opts lo;
		tw_loop_opts_init(&lo, sizeof(lo));
		lo.clock = fake_clock;
		cr_assert_eq(tw_loop_create(&lo, &l[i]), TW_OK);
		struct tw_transport_cbs cbs = {.ctx = &e[i], .on_frame = ep_on_frame,
					       .on_conn = ep_on_conn};
		cr_assert_eq(tw_fake_transport_create(net, l[i], &cbs, &e[i].t), TW_OK);
		char a[16];
		snprintf(a, sizeof(a), "fake://%d", i + 1);
		cr_assert_eq(e[i].t->ops->listen(e[i].t, a, NULL, 0), TW_OK);
	}
	tw_conn *c = NULL;
	cr_assert_eq(e[0].t->ops->connect(e[0].t, "fake://2", &c), TW_OK);
	struct sreq s;
	sreq_init(&s, 1);
	cr_assert_eq(tw_transport_send(e[0].t, c, &s.r), TW_OK);
	cr_assert_eq(tw_fake_net_break(net, "fake://2", NULL), 1);
	tw_loop_poll_once(l[0]);
	tw_loop_poll_once(l[1]);
	cr_assert_eq(s.done, 1);
	cr_assert_eq(s.st, TW_EUNREACHABLE, "done before the close upcall");
	cr_assert_eq(e[0].closed, 1);
	cr_assert_eq(e[0].close_st, TW_EUNREACHABLE);
	cr_assert_eq(e[1].closed, 1);
	cr_assert_eq(e[1].frames, 0, "the frame died with the connection");
	cr_assert_eq(e[0].up, 0, "closed before it was announced");
	for (int i = 0; i < 2; i++) {
		e[i].t->ops->destroy(e[i].t);
		tw_loop_destroy(l[i]);
	}
	cr_assert_eq(tw_fake_net_destroy(net), TW_OK);
}
