/* The agent (rpc/agent.c) on the fake net: a malformed header closes the
 * connection, graceful and immediate shutdown, the member list checked at
 * init, every worker's info in rank order. */
#include "tests/unit/rpc/fake_world.h"

Test(agent, malformed_header_closes_the_connection)
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
	cr_assert_eq(tw_fake_net_inject(W.net, A_ADDR, B_ADDR, frame, len),
		     TW_OK);
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

Test(agent, graceful_shutdown_waits_for_outstanding_calls)
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

Test(agent, graceful_shutdown_is_bounded_by_call_timeouts)
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

Test(agent, immediate_shutdown_fails_pending_calls)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_future *f = call(0, "B", "t::echo", 1, 0);
	settle();
	agent_down(0, false);
	const tw_error *e = failure(f, TW_ESHUTDOWN);
	cr_assert_str_eq(e->msg, "RPC agent is shutting down");
	/* B sees A leave (both connections). */
	settle();
	cr_assert_eq(stats(1).conns_closed, 2);
	tw_future_release(f);
	world_down(false);
}

Test(agent, init_checks_the_member_list)
{
	tw_fake_net *net;
	cr_assert_eq(tw_fake_net_create(&net), TW_OK);
	struct tw_agent_opts o;
	tw_agent_opts_init(&o, sizeof(o));
	o.name = "B"; /* rank 0 is "A" */
	o.rank = 0;
	o.world_size = 2;
	o.embedded = true;
	struct tw_agent_fake h = {.net = net,
				  .clock = fake_clock,
				  .names = names,
				  .addrs = addrs};
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

Test(agent, worker_infos_in_rank_order)
{
	world_up(3, NULL);
	tw_worker_info wi[4];
	uint32_t n = 0;
	cr_assert_eq(tw_agent_worker_infos(W.ag[1], wi, 4, &n), TW_OK);
	cr_assert_eq(n, 3);
	for (uint32_t i = 0; i < 3; i++) {
		cr_assert_eq(wi[i].id, i);
		cr_assert_str_eq(wi[i].name, names[i]);
		cr_assert_str_eq(wi[i].addr, addrs[i]);
	}
	memset(wi, 0, sizeof(wi));
	cr_assert_eq(tw_agent_worker_infos(W.ag[1], wi, 2, &n), TW_ENOSPC);
	cr_assert_eq(n, 3, "the count needed");
	cr_assert_eq(wi[0].name[0], '\0', "nothing written");
	cr_assert_str_eq(tw_errmsg(TW_ENOSPC),
			 "room for 2 worker infos, 3 needed (the world size)");
	cr_assert_eq(tw_agent_worker_infos(W.ag[1], NULL, 0, &n), TW_ENOSPC);
	cr_assert_eq(n, 3);
	cr_assert_eq(tw_agent_worker_infos(W.ag[1], NULL, 3, &n), TW_EINVAL);
	cr_assert_eq(tw_agent_worker_infos(W.ag[1], wi, 3, NULL), TW_EINVAL);

	tw_worker_info one;
	cr_assert_eq(tw_agent_worker_info(W.ag[0], "w9", &one), TW_ENOENT);
	cr_assert_str_eq(tw_errmsg(TW_ENOENT),
			 "no worker named 'w9' (world size 3)");
	cr_assert_eq(tw_agent_worker_info_by_id(W.ag[0], 3, &one), TW_ENOENT);
	cr_assert_str_eq(tw_errmsg(TW_ENOENT),
			 "no worker with id 3 (world size 3: ids 0 to 2)");
	world_down(true);
}

/* The default timeout read at run time: a change applies to calls made
 * after it; calls already made keep the deadline they got. */

/* A newer wire version (docs/wire.md §3): the receiver answers an
 * EXCEPTION(TW_EVERSION) to src / req_id before it closes; the caller
 * gets it (here as a late response: the injected request was never A's
 * call), and a new connection works. */
Test(agent, newer_version_is_answered_before_the_close)
{
	world_up(2, NULL);
	tw_future *f0 = call(0, "B", "t::echo", 0, 1000);
	settle();
	cr_assert_eq(result_int(f0), 0);
	unsigned char frame[64];
	size_t len = bad_payload_call(frame, 999999);
	frame[4] = TW_FRAME_VERSION + 1;
	cr_assert_eq(tw_fake_net_inject(W.net, A_ADDR, B_ADDR, frame, len),
		     TW_OK);
	settle();
	cr_assert_eq(net_stats().refused, 1);
	cr_assert_eq(stats(1).bad_frames, 1);
	cr_assert_eq(stats(0).late_responses, 1, "the answer arrived");
	cr_assert_eq(stats(0).conns_closed, 1);
	cr_assert_eq(stats(1).conns_closed, 1);
	tw_future *g = call(0, "B", "t::echo", 2, 1000);
	settle();
	cr_assert_eq(result_int(g), 2, "a new connection works");
	tw_future_release(f0);
	tw_future_release(g);
	world_down(true);
}

/* A call over the receiver's frame limit with an intact header: answered
 * with EXCEPTION(TW_EOVERFLOW) naming the limit, skipped, and the
 * connection goes on serving the calls behind it. */
Test(agent, call_over_the_limit_is_answered_and_the_connection_kept)
{
	world_up(2, NULL);
	tw_future *f0 = call(0, "B", "t::echo", 0, 1000);
	settle();
	cr_assert_eq(result_int(f0), 0);
	W.ag[1]->loops[0].t->limits.max_total = 4096;
	static char junk[8192];
	memset(junk, 'x', sizeof(junk) - 1);
	tw_value big, args;
	cr_assert_eq(tw_value_string(&big, junk, sizeof(junk) - 1), TW_OK);
	cr_assert_eq(tw_value_tuple(&args, 1), TW_OK);
	cr_assert_eq(tw_value_set_item(&args, 0, big), TW_OK);
	tw_future *f = NULL;
	cr_assert_eq(tw_rpc_async(W.ag[0], "B", "t::echo", &args, NULL, 1000,
				  &f),
		     TW_OK);
	tw_value_destroy(&args);
	tw_future *g = call(0, "B", "t::echo", 2, 1000);
	settle();
	const tw_error *e = failure(f, TW_EOVERFLOW);
	cr_assert(strstr(e->msg, "limit of 4096 bytes") != NULL, "%s", e->msg);
	cr_assert_eq(result_int(g), 2, "the call behind it is served");
	cr_assert_eq(stats(0).conns_closed + stats(1).conns_closed, 0);
	cr_assert_eq(net_stats().refused, 1);
	tw_future_release(f0);
	tw_future_release(f);
	tw_future_release(g);
	world_down(true);
}

/* Worker names follow torch's rule: letters, digits, '-', '_', ':';
 * anything else is refused before anything starts, saying so; so are a
 * negative shutdown deadline. */
Test(agent, init_checks_names_and_shutdown_timeout)
{
	struct tw_agent_opts o;
	tw_agent_opts_init(&o, sizeof(o));
	cr_assert_eq(o.shutdown_timeout_ms, 60000);
	o.rank = 0;
	o.world_size = 1;
	o.rendezvous = "tcp://127.0.0.1:1";
	const char *bad[] = {"a b", "w.1", "w/1", "caf\xc3\xa9", "tab\t"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tw_agent *a = NULL;
		o.name = bad[i];
		cr_assert_eq(tw_agent_init(&o, &a), TW_EINVAL, "'%s'", bad[i]);
		cr_assert_null(a);
		cr_assert(strstr(tw_errmsg(TW_EINVAL), "is not allowed") &&
				  strstr(tw_errmsg(TW_EINVAL), "':'"),
			  "%s", tw_errmsg(TW_EINVAL));
	}
	tw_agent *a = NULL;
	o.name = "trainer:0_a-b";
	o.shutdown_timeout_ms = -1;
	cr_assert_eq(tw_agent_init(&o, &a), TW_EINVAL);
	cr_assert(strstr(tw_errmsg(TW_EINVAL), "shutdown_timeout_ms"), "%s",
		  tw_errmsg(TW_EINVAL));
}
