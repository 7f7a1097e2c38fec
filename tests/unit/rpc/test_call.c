/* Calls out (rpc/call.c) on the fake net: responses matched to their
 * calls, timeouts to the tick on the fake clock, late, reordered, duplicated
 * and lost frames, peer death, calls by id, the default timeout, and every
 * immediate refusal with its reason. */
#include "tests/unit/rpc/fake_world.h"

Test(call, call_and_response_step_by_step)
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
	cr_assert_eq(ns.conns, 0, "on the connection world_up opened");
	tw_future_release(f);
	world_down(true);
}

Test(call, timeout_fires_at_deadline_not_a_tick_before)
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

Test(call, late_response_after_timeout_is_dropped_and_counted)
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

Test(call, reversed_responses_complete_their_own_futures)
{
	world_up(2, NULL);
	norder = 0;
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_future *f[5];
	for (int i = 0; i < 5; i++) {
		f[i] = call(0, "B", "t::echo", 100 + i, 1000);
		cr_assert_eq(tw_future_then(f[i], record_order,
					    (void *)(intptr_t)i),
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

Test(call, reorder_by_permutation)
{
	world_up(2, NULL);
	norder = 0;
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_future *f[4];
	for (int i = 0; i < 4; i++) {
		f[i] = call(0, "B", "t::echo", 10 * i, 1000);
		cr_assert_eq(tw_future_then(f[i], record_order,
					    (void *)(intptr_t)i),
			     TW_OK);
	}
	settle();
	const size_t bad[4] = {0, 1, 1, 3};
	cr_assert_eq(tw_fake_net_reorder(W.net, B_ADDR, A_ADDR, bad, 4),
		     TW_EINVAL);
	const size_t perm[4] = {2, 0, 3, 1};
	cr_assert_eq(tw_fake_net_reorder(W.net, B_ADDR, A_ADDR, perm, 4),
		     TW_OK);
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

Test(call, peer_death_fails_pending_calls)
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

	/* Both connections, A's to B and B's to A. */
	cr_assert_eq(tw_fake_net_break(W.net, A_ADDR, B_ADDR), 2);
	settle();
	for (int i = 0; i < 3; i++) {
		const tw_error *e = failure(f[i], TW_EUNREACHABLE);
		cr_assert(strstr(e->msg, "unreachable") != NULL, "%s", e->msg);
		tw_future_release(f[i]);
	}
	cr_assert_eq(tw_agent_outstanding(W.ag[0]), 0);
	cr_assert_eq(tw_fake_net_queued(W.net, NULL, NULL), 0,
		     "answers in flight died with the connection");
	cr_assert_eq(stats(0).conns_closed, 2);
	cr_assert_eq(stats(1).conns_closed, 2);
	cr_assert_eq(stats(0).late_responses, 0);

	/* B is gone for good: a new call fails at once, it does not hang. */
	cr_assert_eq(tw_fake_net_set_down(W.net, B_ADDR, true), TW_OK);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, false), TW_OK);
	tw_future *g = call(0, "B", "t::echo", 7, 0);
	settle();
	failure(g, TW_EUNREACHABLE);
	/* Back again: after the backoff (10 ms) the agent connects anew. */
	cr_assert_eq(tw_fake_net_set_down(W.net, B_ADDR, false), TW_OK);
	advance(10 * MS);
	tw_future *h = call(0, "B", "t::echo", 8, 0);
	settle();
	cr_assert_eq(result_int(h), 8);
	cr_assert_eq(net_stats().conns, 1);
	tw_future_release(g);
	tw_future_release(h);
	world_down(true);
}

/* Reconnecting backs off: after a failed connection attempt the next
 * waits 10 ms, doubling per failure in a row up to 1 s; calls meanwhile
 * fail at once, naming the cause and the wait; a connection that
 * completes its handshake ends the backoff. */
Test(call, reconnecting_backs_off_and_says_why)
{
	world_up_lazy(2, NULL);
	cr_assert_eq(tw_fake_net_set_down(W.net, B_ADDR, true), TW_OK);
	uint64_t waits[] = {10, 20, 40, 80, 160, 320, 640, 1000, 1000};
	for (unsigned i = 0; i < sizeof(waits) / sizeof(waits[0]); i++) {
		tw_future *f = call(0, "B", "t::echo", 1, 0);
		settle();
		failure(f, TW_EUNREACHABLE);
		tw_future_release(f);
		cr_assert_eq(stats(0).connect_failures, i + 1);
		/* Within the wait: no attempt, the call fails at once. */
		advance(waits[i] * MS - 1);
		f = call(0, "B", "t::echo", 2, 0);
		settle();
		const tw_error *e = failure(f, TW_EUNREACHABLE);
		char want[96];
		snprintf(want, sizeof(want), "failed %u time%s in a row", i + 1,
			 i == 0 ? "" : "s");
		cr_assert(strstr(e->msg, want) != NULL &&
				  strstr(e->msg, "next attempt is in 1 ms") !=
					  NULL &&
				  strstr(e->msg, "worker 'B'") != NULL &&
				  strstr(e->msg, "is down") != NULL,
			  "wait %u: %s", i, e->msg);
		tw_future_release(f);
		cr_assert_eq(stats(0).connect_failures, i + 1, "no attempt");
		cr_assert_eq(stats(0).redial_waits, i + 1);
		advance(1);
	}
	/* Up again: the next attempt connects, and ends the backoff. */
	cr_assert_eq(tw_fake_net_set_down(W.net, B_ADDR, false), TW_OK);
	tw_future *f = call(0, "B", "t::echo", 3, 0);
	settle();
	cr_assert_eq(result_int(f), 3);
	tw_future_release(f);
	cr_assert_eq(tw_fake_net_break(W.net, A_ADDR, B_ADDR), 1);
	settle();
	/* A connection lost after its handshake: the next call reconnects
	 * at once. */
	f = call(0, "B", "t::echo", 4, 0);
	settle();
	cr_assert_eq(result_int(f), 4);
	tw_future_release(f);
	cr_assert_eq(stats(0).connect_failures, 9);
	world_down(true);
}

static void delay_calls(uint32_t rank, struct tw_agent_opts *o)
{
	if (rank == 0) {
		o->fault_delay_type = TW_MSG_CALL;
		o->fault_delay_ms = 30;
	}
}

Test(call, fault_delay_runs_on_the_fake_clock)
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

Test(call, owner_calls_keep_their_order)
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

Test(call, duplicated_response_is_dropped)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_dup_next(W.net, B_ADDR, A_ADDR, TW_MSG_RET),
		     TW_OK);
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

Test(call, dropped_call_times_out)
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

Test(call, calls_by_id)
{
	world_up(2, NULL);
	tw_future *f = call_id(0, 1, "t::echo", 7, 1000);
	tw_future *g = call_id(0, 0, "t::inc", 8, 1000); /* to self */
	settle();
	cr_assert_eq(result_int(f), 7);
	cr_assert_eq(result_int(g), 9);
	cr_assert_eq(W.k[1].echo, 1);
	cr_assert_eq(W.k[0].inc, 1, "a call to self runs here");
	tw_future_release(f);
	tw_future_release(g);

	tw_value args = int_args(1);
	tw_future *h = (tw_future *)0x1;
	cr_assert_eq(tw_rpc_async_id(W.ag[0], 2, "t::echo", &args, NULL, 1000,
				     &h),
		     TW_ENOENT);
	cr_assert_null(h);
	cr_assert_str_eq(tw_errmsg(TW_ENOENT),
			 "no worker with id 2 (world size 2: ids 0 to 1)");
	cr_assert_eq(tw_rpc_async_id(W.ag[0], UINT32_MAX, "t::echo", &args,
				     NULL, 1000, &h),
		     TW_ENOENT);
	cr_assert_str_eq(tw_errmsg(TW_ENOENT), "no worker with id 4294967295 "
					       "(world size 2: ids 0 to 1)");

	/* rpc_sync by id to self: the embedded owner polls its own loop. */
	tw_agent_fake_enter(W.ag[0]);
	tw_value r, e;
	cr_assert_eq(tw_rpc_sync_id(W.ag[0], 0, "t::inc", &args, NULL, 1000, &r,
				    &e),
		     TW_OK);
	cr_assert_eq(r.u.i, 2);
	tw_value_destroy(&r);
	cr_assert_eq(tw_rpc_sync_id(W.ag[0], 0, "t::nope", &args, NULL, 1000,
				    &r, &e),
		     TW_ENOFUNC);
	/* Raised by this worker (a call to self): its message alone. */
	cr_assert_eq(e.kind, TW_KIND_ERROR);
	cr_assert_str_eq(tw_errmsg(TW_ENOFUNC), e.u.err->msg);
	cr_assert(strstr(e.u.err->msg, "t::nope") != NULL, "%s", e.u.err->msg);
	tw_value_destroy(&e);
	cr_assert_eq(tw_rpc_sync_id(W.ag[0], 9, "t::inc", &args, NULL, 1000, &r,
				    &e),
		     TW_ENOENT);
	cr_assert_str_eq(e.u.err->msg,
			 "no worker with id 9 (world size 2: ids 0 to 1)");
	cr_assert_str_eq(tw_errmsg(TW_ENOENT), e.u.err->msg);
	tw_value_destroy(&e);
	tw_value_destroy(&args);
	world_down(true);
}

Test(call, default_timeout_changes_later_calls_only)
{
	world_up(2, NULL);
	cr_assert_eq(tw_agent_default_timeout(W.ag[0]), 60000);
	cr_assert_eq(tw_agent_default_timeout(NULL), -1);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	cr_assert_eq(tw_agent_set_default_timeout(W.ag[0], 50), TW_OK);
	cr_assert_eq(tw_agent_default_timeout(W.ag[0]), 50);
	tw_future *f = call(0, "B", "t::echo", 1, -1);
	cr_assert_eq(tw_agent_set_default_timeout(W.ag[0], 200), TW_OK);
	tw_future *g = call(0, "B", "t::echo", 2, -1);
	tw_future *x = call(0, "B", "t::echo", 3, 20); /* its own */
	cr_assert_eq(tw_agent_set_default_timeout(W.ag[0], -5), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "default timeout must not be "
			 "negative (got -5 ms; 0 = no timeout)");
	cr_assert_eq(tw_agent_default_timeout(W.ag[0]), 200, "unchanged");
	settle();

	advance(20 * MS);
	failure(x, TW_ETIMEDOUT);
	cr_assert_not(tw_future_done(f));
	advance(30 * MS);
	const tw_error *e = failure(f, TW_ETIMEDOUT);
	cr_assert_str_eq(e->msg, "RPC ran for more than set timeout (50 ms) "
				 "and will now be marked with an error");
	cr_assert_not(tw_future_done(g), "made after the change: 200 ms");
	advance(150 * MS - 1);
	cr_assert_not(tw_future_done(g));
	advance(1);
	e = failure(g, TW_ETIMEDOUT);
	cr_assert(strstr(e->msg, "(200 ms)") != NULL, "%s", e->msg);

	/* 0 = no timeout, for calls made from now on. */
	cr_assert_eq(tw_agent_set_default_timeout(W.ag[0], 0), TW_OK);
	tw_future *h = call(0, "B", "t::echo", 4, -1);
	settle();
	advance(100000 * MS);
	cr_assert_not(tw_future_done(h));
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, false), TW_OK);
	settle();
	cr_assert_eq(result_int(h), 4);
	tw_future_release(f);
	tw_future_release(g);
	tw_future_release(x);
	tw_future_release(h);
	world_down(true);
}

/* Immediate refusals of tw_rpc_async name what was wrong. */
Test(call, async_refusals_say_why)
{
	world_up(2, NULL);
	tw_agent *a = W.ag[0];
	tw_future *f = (tw_future *)0x1;
	tw_value args = int_args(1);
	cr_assert_eq(tw_rpc_async(a, "w9", "t::echo", &args, NULL, 100, &f),
		     TW_ENOENT);
	cr_assert_null(f);
	cr_assert_str_eq(tw_errmsg(TW_ENOENT),
			 "no worker named 'w9' (world size 2)");
	tw_value none = tw_value_none();
	cr_assert_eq(tw_rpc_async(a, "B", "t::echo", &none, NULL, 100, &f),
		     TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), "args must be a tuple or list "
					       "(or NULL for none), got None");
	tw_value i = tw_value_int(3);
	cr_assert_eq(tw_rpc_async(a, "B", "t::echo", &i, NULL, 100, &f),
		     TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), "args must be a tuple or list "
					       "(or NULL for none), got int");
	cr_assert_eq(tw_rpc_async(a, "B", "t::echo", &args, &args, 100, &f),
		     TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), "kwargs must be a dict (or NULL "
					       "for none), got Tuple[int]");
	cr_assert_eq(tw_rpc_async(a, "B", "", &args, NULL, 100, &f), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), "tw_rpc_async: no function name "
					       "(fn is NULL or empty)");
	cr_assert_eq(tw_rpc_async(a, NULL, "t::echo", &args, NULL, 100, &f),
		     TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "tw_rpc_async: no destination (to is NULL)");
	/* The wire's refusals, found by their path. */
	tw_value bad = tw_value_string_borrow("\xff", 1);
	tw_value bt = {.kind = TW_KIND_TUPLE,
		       .flags = TW_VALUE_BORROWED,
		       .len = 1,
		       .u.items = &bad};
	cr_assert_eq(tw_rpc_async(a, "B", "t::echo", &bt, NULL, 100, &f),
		     TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "args[0] is a string that is not valid UTF-8");
	tw_kv kv[2] = {{.key = "a", .key_len = 1, .val = tw_value_int(1)},
		       {.key = "a", .key_len = 1, .val = tw_value_int(2)}};
	tw_value dup = {.kind = TW_KIND_DICT,
			.flags = TW_VALUE_BORROWED,
			.len = 2,
			.u.entries = kv};
	cr_assert_eq(tw_rpc_async(a, "B", "t::echo", &args, &dup, 100, &f),
		     TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), "kwargs has the key 'a' twice");
	cr_assert_eq(tw_rpc_async(a, "B", "t::\xff", &args, NULL, 100, &f),
		     TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "the function name is not valid UTF-8");
	/* Another kind than the last failure's: its description. */
	cr_assert_str_eq(tw_errmsg(TW_ENOSPC), tw_strerror(TW_ENOSPC));
	tw_value_destroy(&args);
	settle();
	world_down(true);
}

/* A handler that fails without an error value is explained by the reason
 * it recorded; one that recorded none by its kind alone, never by an
 * older reason of the same kind left on the serving thread. */

static tw_value nested_args(unsigned levels)
{
	tw_value v = tw_value_int(1);
	for (unsigned d = 0; d + 1 < levels; d++) {
		tw_value l;
		cr_assert_eq(tw_value_list(&l, 1), TW_OK);
		cr_assert_eq(tw_value_set_item(&l, 0, v), TW_OK);
		v = l;
	}
	tw_value args;
	cr_assert_eq(tw_value_tuple(&args, 1), TW_OK);
	cr_assert_eq(tw_value_set_item(&args, 0, v), TW_OK);
	return args;
}

/* The depth limit, the same to self and to another worker, and a message
 * that names it and the path over it. */
Test(call, nesting_too_deep_is_named)
{
	world_up(2, NULL);
	const char *to[2] = {"A", "B"};
	tw_value ok = nested_args(TW_VALUE_MAX_DEPTH - 1);
	tw_value deep = nested_args(TW_VALUE_MAX_DEPTH);
	char want[1024];
	int n = snprintf(want, sizeof(want), "value nested too deep: args");
	for (unsigned d = 1; d < TW_VALUE_MAX_DEPTH; d++)
		n += snprintf(want + n, sizeof(want) - (size_t)n, "[0]");
	snprintf(want + n, sizeof(want) - (size_t)n,
		 " is a list at depth 64 "
		 "(args and kwargs are depth 1); a call's arguments may nest "
		 "at most 63 deep, as TW_VALUE_MAX_DEPTH (64) counts the "
		 "call's own payload tuple");
	for (int i = 0; i < 2; i++) {
		tw_future *f = NULL;
		tw_status st = tw_rpc_async(W.ag[0], to[i], "t::echo", &ok,
					    NULL, 1000, &f);
		cr_assert_eq(st, TW_OK, "%s: %s", to[i], tw_errmsg(st));
		settle();
		cr_assert_eq(tw_future_status(f), TW_OK, "%s", to[i]);
		tw_future_release(f);
		cr_assert_eq(tw_rpc_async(W.ag[0], to[i], "t::echo", &deep,
					  NULL, 1000, &f),
			     TW_EINVAL, "%s", to[i]);
		cr_assert_str_eq(tw_errmsg(TW_EINVAL), want, "to %s", to[i]);
	}
	/* In kwargs, by key. */
	tw_value kw;
	cr_assert_eq(tw_value_dict(&kw, 1), TW_OK);
	tw_value inner = deep.u.items[0];
	deep.u.items[0] = tw_value_none();
	cr_assert_eq(tw_value_dict_set(&kw, 0, "x", inner), TW_OK);
	tw_future *f = NULL;
	cr_assert_eq(tw_rpc_async(W.ag[0], "B", "t::echo", NULL, &kw, 1000, &f),
		     TW_EINVAL);
	cr_assert(strncmp(tw_errmsg(TW_EINVAL),
			  "value nested too deep: "
			  "kwargs['x'][0][0]",
			  40) == 0,
		  "%s", tw_errmsg(TW_EINVAL));
	tw_value_destroy(&kw);
	tw_value_destroy(&ok);
	tw_value_destroy(&deep);
	world_down(true);
}

static tw_status setup_st;
static char setup_msg[256];

/* A setup callback that calls out: too early, and told so. */
static tw_status setup_calls(tw_agent *a, void *arg)
{
	tw_status st = setup(a, arg);
	tw_future *f = NULL;
	setup_st = tw_rpc_async(a, "B", "t::echo", NULL, NULL, 100, &f);
	snprintf(setup_msg, sizeof(setup_msg), "%s", tw_errmsg(setup_st));
	return st;
}

static void tweak_setup_calls(uint32_t rank, struct tw_agent_opts *o)
{
	if (rank == 0)
		o->setup = setup_calls;
}

Test(call, call_before_init_finished_says_so)
{
	world_up(2, tweak_setup_calls);
	cr_assert_eq(setup_st, TW_EINVAL);
	cr_assert_str_eq(
		setup_msg,
		"the agent has not joined its group yet: "
		"calls start once tw_agent_init has returned (not from "
		"its setup callback)");
	world_down(true);
}

static tw_status late_st;
static char late_msg[256];

/* Runs as the call fails in the teardown: the agent is going away. */
static void call_again(tw_future *f, void *arg)
{
	(void)f;
	tw_future *g = NULL;
	late_st = tw_rpc_async(arg, "B", "t::echo", NULL, NULL, 100, &g);
	snprintf(late_msg, sizeof(late_msg), "%s", tw_errmsg(late_st));
}

Test(call, call_during_shutdown_says_so)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_future *f = call(0, "B", "t::echo", 1, 0);
	settle();
	cr_assert_eq(tw_future_then(f, call_again, W.ag[0]), TW_OK);
	agent_down(0, false);
	failure(f, TW_ESHUTDOWN);
	cr_assert_eq(late_st, TW_ESHUTDOWN);
	cr_assert_str_eq(late_msg, "the agent is shutting down: no new calls");
	tw_future_release(f);
	world_down(false);
}

/* Nobody polls A: its loop's ring fills and the call after is refused as
 * backpressure; once polled, everything queued completes. */
Test(call, full_ring_is_backpressure)
{
	world_up(2, NULL);
	tw_agent_fake_enter(W.ag[0]);
	size_t cap = AGENT_LOOP_RING + 16, n = 0;
	tw_future **fs = calloc(cap, sizeof(*fs));
	cr_assert_not_null(fs);
	tw_value args = int_args(5);
	tw_status st = TW_OK;
	while (n < cap) {
		st = tw_rpc_async(W.ag[0], "B", "t::echo", &args, NULL, 0,
				  &fs[n]);
		if (st != TW_OK)
			break;
		n++;
	}
	cr_assert_eq(st, TW_ENOSPC, "never refused after %zu calls", n);
	cr_assert_leq(n, AGENT_LOOP_RING);
	cr_assert_geq(n, AGENT_LOOP_RING / 2);
	cr_assert(strstr(tw_errmsg(TW_ENOSPC), "backpressure; retry") != NULL,
		  "%s", tw_errmsg(TW_ENOSPC));
	cr_assert_str_eq(tw_errmsg(TW_ENOSPC),
			 "the run loop's queue is full "
			 "(16384 messages): backpressure; retry once some "
			 "calls complete");
	settle();
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(result_int(fs[i]), 5);
		tw_future_release(fs[i]);
	}
	free(fs);
	tw_value_destroy(&args);
	world_down(true);
}

/* An embedded owner's wait_all polls its loop (calls to self complete
 * there); tw_future_wait_all would only look. */
Test(call, embedded_wait_all_polls_the_loop)
{
	world_up(2, NULL);
	tw_agent_fake_enter(W.ag[0]);
	tw_future *f[2];
	f[0] = call(0, "A", "t::inc", 1, 1000);
	f[1] = call(0, "A", "t::inc", 2, 1000);
	cr_assert_eq(tw_future_wait_all(f, 2, 0), TW_ETIMEDOUT,
		     "nothing polled the loop yet");
	cr_assert_eq(tw_agent_wait_all(W.ag[0], f, 2, 1000), TW_OK);
	cr_assert_eq(result_int(f[0]), 2);
	cr_assert_eq(result_int(f[1]), 3);
	tw_future_release(f[0]);
	tw_future_release(f[1]);

	f[0] = call(0, "A", "t::inc", 1, 1000);
	f[1] = call(0, "A", "t::nope", 2, 1000);
	cr_assert_eq(tw_agent_wait_all(W.ag[0], f, 2, 1000), TW_ENOFUNC);
	/* Raised here (a call to self): no worker prefix. */
	char want[512];
	snprintf(want, sizeof(want), "future 1 (of 2) failed: %s",
		 tw_future_error(f[1])->msg);
	cr_assert_str_eq(tw_errmsg(TW_ENOFUNC), want);
	tw_future_release(f[0]);
	tw_future_release(f[1]);

	/* collect_all completes on the loop too: wait for it as for any. */
	f[0] = call(0, "A", "t::inc", 10, 1000);
	f[1] = call(0, "A", "t::nope", 2, 1000);
	tw_future *all = NULL;
	cr_assert_eq(tw_future_collect_all(f, 2, &all), TW_OK);
	cr_assert_eq(tw_agent_wait(W.ag[0], all, 1000), TW_OK);
	const tw_value *l = tw_future_value(all);
	cr_assert_eq(l->u.items[0].u.i, 11);
	cr_assert_eq(l->u.items[1].kind, TW_KIND_ERROR);
	cr_assert_eq(l->u.items[1].u.err->kind, TW_ENOFUNC);
	tw_future_release(all);
	tw_future_release(f[0]);
	tw_future_release(f[1]);

	/* A remote error names its worker, as torch prints it. */
	tw_value noargs;
	cr_assert_eq(tw_value_tuple(&noargs, 0), TW_OK);
	tw_future *g = NULL;
	cr_assert_eq(tw_rpc_async(W.ag[0], "B", "t::echo", &noargs, NULL, 1000,
				  &g),
		     TW_OK);
	settle();
	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(tw_agent_wait_all(W.ag[0], &g, 1, 1000), TW_EINVAL);
	snprintf(want, sizeof(want),
		 "future 0 (of 1) failed: On worker 'B' "
		 "(id 1): %s",
		 tw_future_error(g)->msg);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), want);
	tw_future_release(g);
	tw_value_destroy(&noargs);
	world_down(true);
}

/* ---- the frame limit: the caller fails first ------------------------------ */

static void small_frames(uint32_t rank, struct tw_agent_opts *o)
{
	(void)rank;
	o->max_frame = 64 * 1024;
}

/* args: one float32 tensor of n elements (owned). */
static tw_value tensor_args(int64_t n)
{
	tw_tensor t;
	cr_assert_eq(tw_tensor_zeros(&t, TW_FLOAT32, 1, &n), TW_OK);
	tw_value args, v;
	cr_assert_eq(tw_value_tensor(&v, &t), TW_OK);
	tw_tensor_release(&t);
	cr_assert_eq(tw_value_tuple(&args, 1), TW_OK);
	tw_value_set_item(&args, 0, v);
	return args;
}

Test(call, call_over_max_frame_fails_at_the_caller_and_sends_nothing)
{
	world_up(2, small_frames);
	tw_future *ok = call(0, "B", "t::echo", 1, 1000);
	settle();
	cr_assert_eq(result_int(ok), 1);
	tw_future_release(ok);
	uint64_t sent = net_stats().sent;

	tw_value args = tensor_args(20000); /* 80 KB of tensor */
	tw_future *f = NULL;
	tw_status st = tw_rpc_async(W.ag[0], "B", "t::echo", &args, NULL, 1000,
				    &f);
	tw_value_destroy(&args);
	cr_assert_eq(st, TW_EOVERFLOW);
	cr_assert_null(f);
	const char *why = tw_errmsg(st);
	cr_assert(strstr(why,
			 "call to 't::echo' on worker 'B' is a frame of") !=
			  NULL,
		  "%s", why);
	cr_assert(strstr(why, "over the limit of 65536 bytes "
			      "(tw_agent_opts.max_frame)") != NULL,
		  "%s", why);
	cr_assert_eq(net_stats().sent, sent, "nothing was sent");
	cr_assert_eq(stats(0).oversize, 1);
	cr_assert_eq(tw_agent_outstanding(W.ag[0]), 0);

	/* The connection goes on serving. */
	args = tensor_args(1000);
	cr_assert_eq(tw_rpc_async(W.ag[0], "B", "t::echo", &args, NULL, 1000,
				  &f),
		     TW_OK);
	tw_value_destroy(&args);
	ok = call(0, "B", "t::echo", 2, 1000);
	settle();
	cr_assert_eq(tw_future_status(f), TW_OK);
	cr_assert_eq(result_int(ok), 2);
	cr_assert_eq(stats(0).conns_closed + stats(1).conns_closed, 0);
	tw_future_release(f);
	tw_future_release(ok);
	world_down(true);
}

Test(call, result_over_max_frame_comes_back_as_an_overflow_error)
{
	world_up(2, small_frames);
	/* aten::zeros([20000]) on B: an 80 KB result, over B's 64 KiB. */
	tw_value args, sz;
	cr_assert_eq(tw_value_list(&sz, 1), TW_OK);
	tw_value_set_item(&sz, 0, tw_value_int(20000));
	cr_assert_eq(tw_value_tuple(&args, 1), TW_OK);
	tw_value_set_item(&args, 0, sz);
	tw_future *f = NULL;
	cr_assert_eq(tw_rpc_async(W.ag[0], "B", "aten::zeros", &args, NULL,
				  1000, &f),
		     TW_OK);
	tw_value_destroy(&args);
	POLL_UNTIL(tw_future_done(f));
	const tw_error *e = failure(f, TW_EOVERFLOW);
	cr_assert_eq(e->origin, 1);
	cr_assert(strstr(e->msg, "result of function 'aten::zeros' on worker "
				 "'B' is a frame of") != NULL,
		  "%s", e->msg);
	cr_assert(strstr(e->msg, "(tw_agent_opts.max_frame)") != NULL, "%s",
		  e->msg);
	cr_assert_eq(stats(1).oversize, 1);
	tw_future_release(f);
	tw_future *ok = call(0, "B", "t::echo", 3, 1000);
	settle();
	cr_assert_eq(result_int(ok), 3);
	cr_assert_eq(stats(0).conns_closed + stats(1).conns_closed, 0);
	tw_future_release(ok);
	world_down(true);
}
