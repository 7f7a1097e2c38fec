/* Test fixture: two or three embedded agents on a fake net (tests/lib),
 * driven by the test's one thread on a clock the test moves, serving a few
 * functions, with helpers to call and read results. Included by the agent
 * protocol tests (test_call.c, test_serve.c, test_agent.c): nothing sleeps
 * and nothing depends on wall time. */
#ifndef TW_TESTS_FAKE_WORLD_H
#define TW_TESTS_FAKE_WORLD_H

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

/* Each test file uses part of the fixture. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"

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
#define POLL_UNTIL(expr)                                                       \
	do {                                                                   \
		for (long i_ = 0; i_ < 5000000 && !(expr); i_++) {             \
			poll_all();                                            \
			sched_yield();                                         \
		}                                                              \
		cr_assert(expr, "never: %s", #expr);                           \
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
static atomic_int block_now, block_max; /* running at once, and the most */

static tw_status h_block(tw_call_ctx *ctx, const tw_value *args,
			 const tw_value *kwargs, tw_value *result, void *arg)
{
	(void)ctx;
	(void)kwargs;
	(void)arg;
	atomic_fetch_add(&block_runs, 1);
	int now = atomic_fetch_add(&block_now, 1) + 1;
	int max = atomic_load(&block_max);
	while (now > max &&
	       !atomic_compare_exchange_weak(&block_max, &max, now))
		;
	while (!atomic_load(&block_gate))
		sched_yield();
	atomic_fetch_sub(&block_now, 1);
	const tw_value *x;
	if (tw_value_get_item(args, 0, &x) != TW_OK)
		return TW_EINVAL;
	return tw_value_clone(result, x);
}

/* Fails without an error value and without recording a reason. */
static tw_status h_bare(tw_call_ctx *ctx, const tw_value *args,
			const tw_value *kwargs, tw_value *result, void *arg)
{
	(void)ctx;
	(void)args;
	(void)kwargs;
	(void)result;
	(void)arg;
	return TW_EVALUE;
}

static tw_status setup(tw_agent *a, void *arg)
{
	tw_status st = tw_agent_register(a, "t::block", h_block, arg,
					 TW_FN_BLOCKING);
	if (st == TW_OK)
		st = tw_agent_register(a, "t::bare", h_bare, arg, 0);
	if (st == TW_OK)
		st = tw_agent_register(a, "t::echo", h_echo, arg, 0);
	if (st == TW_OK)
		st = tw_agent_register(a, "t::inc", h_inc, arg, 0);
	if (st == TW_OK)
		st = tw_agent_register(a, "t::relay", h_relay, arg, 0);
	return st;
}

typedef void (*tweak_fn)(uint32_t rank, struct tw_agent_opts *o);

static struct tw_fake_net_stats ns_base; /* net_stats() counts from here */

/* Every agent's connection to every other, opened and authenticated: the
 * handshakes (docs/wire.md 5.1) are not what most tests look at, and
 * their frames are not counted in net_stats(). */
static void world_connect(void)
{
	for (uint32_t i = 0; i < W.n; i++) {
		tw_agent_fake_enter(W.ag[i]);
		for (uint32_t j = 0; j < W.n; j++) {
			tw_status st = TW_OK;
			if (j != i)
				cr_assert_not_null(conn_get(&W.ag[i]->loops[0],
							    j, &st),
						   "%s", tw_strerror(st));
		}
	}
	settle();
	for (uint32_t i = 0; i < W.n; i++)
		for (uint32_t j = 0; j < W.n; j++)
			cr_assert(j == i || W.ag[i]->loops[0].out[j]->authed,
				  "%s -> %s not authenticated", names[i],
				  names[j]);
	tw_fake_net_get_stats(W.net, &ns_base);
}

/* The world with no connection yet (world_up opens them all). */
static void world_up_lazy(uint32_t n, tweak_fn tweak)
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
			.net = W.net,
			.clock = fake_clock,
			.names = names,
			.addrs = addrs,
			.drive = drive,
		};
		tw_status st = tw_agent_init_fake(&o, &h, &W.ag[r]);
		cr_assert_eq(st, TW_OK, "agent %s: %s", names[r],
			     tw_errmsg(st));
	}
	memset(&ns_base, 0, sizeof(ns_base));
}

static void world_up(uint32_t n, tweak_fn tweak)
{
	world_up_lazy(n, tweak);
	world_connect();
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
	s.sent -= ns_base.sent;
	s.injected -= ns_base.injected;
	s.delivered -= ns_base.delivered;
	s.dropped -= ns_base.dropped;
	s.duplicated -= ns_base.duplicated;
	s.refused -= ns_base.refused;
	s.conns -= ns_base.conns;
	s.broken -= ns_base.broken;
	return s;
}

/* ---- calls ---------------------------------------------------------------- */

static tw_future *call(uint32_t from, const char *to, const char *fn, int64_t v,
		       int64_t timeout_ms)
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

static tw_value int_args(int64_t v)
{
	tw_value args;
	cr_assert_eq(tw_value_tuple(&args, 1), TW_OK);
	cr_assert_eq(tw_value_set_item(&args, 0, tw_value_int(v)), TW_OK);
	return args;
}

static tw_future *call_id(uint32_t from, uint32_t to, const char *fn, int64_t v,
			  int64_t timeout_ms)
{
	tw_value args = int_args(v);
	tw_future *f = NULL;
	tw_status st = tw_rpc_async_id(W.ag[from], to, fn, &args, NULL,
				       timeout_ms, &f);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	tw_value_destroy(&args);
	return f;
}

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

#endif
