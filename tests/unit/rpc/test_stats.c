/* Statistics (rpc/stats*.c, <tensorwire/stats.h>) on the fake net, on a
 * clock the test moves: counters count what happened, calls by outcome
 * and kind, and histograms hold the exact latencies the clock made. */
#include "tests/unit/rpc/fake_world.h"

#include <math.h>

static tw_stats *snap(uint32_t i)
{
	tw_stats *s = NULL;
	cr_assert_eq(tw_stats_take(W.ag[i], &s), TW_OK, "%s",
		     tw_errmsg(TW_EINVAL));
	return s;
}

/* The function entry called name, or -1. */
static int fn_index(const tw_stats *s, const char *name)
{
	for (uint32_t i = 0; i < tw_stats_nfunctions(s); i++)
		if (strcmp(tw_stats_function(s, i), name) == 0)
			return (int)i;
	return -1;
}

static int peer_index(const tw_stats *s, int64_t id)
{
	for (uint32_t i = 0; i < tw_stats_npeers(s); i++)
		if (tw_stats_peer_id(s, i) == id)
			return (int)i;
	return -1;
}

static void assert_near(uint64_t got, uint64_t want)
{
	cr_assert_leq(fabs((double)got - (double)want),
		      (double)want * TW_HIST_REL_ERR, "got %llu, want %llu",
		      (unsigned long long)got, (unsigned long long)want);
}

Test(stats, calls_counted_by_outcome_and_kind)
{
	world_up(2, NULL);
	const int n = 10;
	for (int i = 0; i < n; i++) {
		tw_future *f = call(0, "B", "t::echo", i, 1000);
		settle();
		cr_assert_eq(result_int(f), i);
		tw_future_release(f);
	}
	/* Errors of three kinds: an unknown function, a handler's
	 * TW_EVALUE, a timeout. */
	tw_future *e1 = call(0, "B", "t::nope", 0, 1000);
	tw_future *e2 = call(0, "B", "t::bare", 0, 1000);
	settle();
	failure(e1, TW_ENOFUNC);
	failure(e2, TW_EVALUE);
	cr_assert_eq(tw_fake_net_drop_next(W.net, A_ADDR, B_ADDR, TW_MSG_CALL),
		     TW_OK);
	tw_future *e3 = call(0, "B", "t::echo", 0, 20);
	settle();
	advance(20 * MS);
	failure(e3, TW_ETIMEDOUT);

	tw_stats *sa = snap(0), *sb = snap(1);
	const struct tw_stats_counters *ca = tw_stats_counters(sa);
	const struct tw_stats_counters *cb = tw_stats_counters(sb);
	cr_assert_eq(ca->calls_ok, n);
	cr_assert_eq(ca->calls_failed[TW_ENOFUNC], 1);
	cr_assert_eq(ca->calls_failed[TW_EVALUE], 1);
	cr_assert_eq(ca->calls_failed[TW_ETIMEDOUT], 1);
	cr_assert_eq(ca->agent.timeouts, 1);
	uint64_t other = 0;
	for (unsigned k = 1; k < TW_STATUS_COUNT_; k++)
		other += ca->calls_failed[k];
	cr_assert_eq(other, 3, "no other failure counted");
	cr_assert_eq(ca->agent.calls_sent, n + 3);
	cr_assert_eq(cb->served_ok, n);
	cr_assert_eq(cb->served_failed[TW_ENOFUNC], 1);
	cr_assert_eq(cb->served_failed[TW_EVALUE], 1);
	cr_assert_eq(ca->pending, 0);
	cr_assert_geq(ca->pending_hwm, 1);
	cr_assert_eq(ca->conns_open, 2, "ours to B and B's to us");
	/* Every frame the one counted as sent the other counted as
	 * received (the dropped CALL excepted), headers and all. */
	cr_assert_eq(ca->frames_out, cb->frames_in + 1);
	cr_assert_eq(cb->frames_out, ca->frames_in);
	cr_assert_gt(ca->bytes_out, cb->bytes_in);
	cr_assert_eq(cb->bytes_out, ca->bytes_in);

	/* Round trips: the 12 answered calls, none of the timed out one. */
	cr_assert_eq(tw_stats_total(sa, TW_STATS_RTT)->count, n + 2);
	cr_assert_eq(tw_stats_total(sb, TW_STATS_SERVE)->count, n + 2);
	int ie = fn_index(sa, "t::echo");
	cr_assert_geq(ie, 0);
	cr_assert_eq(tw_stats_function_hist(sa, ie, TW_STATS_RTT)->count, n);
	cr_assert_eq(tw_stats_function_hist(sa, ie, TW_STATS_SERVE)->count, 0);
	int ip = peer_index(sa, 1);
	cr_assert_geq(ip, 0);
	cr_assert_str_eq(tw_stats_peer_name(sa, ip), "B");
	cr_assert_eq(tw_stats_peer_hist(sa, ip, TW_STATS_RTT)->count, n + 2);
	/* B served t::echo n times (and the failed ones under their own
	 * names; the unknown one has no function to be counted under). */
	ie = fn_index(sb, "t::echo");
	cr_assert_eq(tw_stats_function_hist(sb, ie, TW_STATS_SERVE)->count, n);
	cr_assert_lt(fn_index(sb, "t::nope"), 0);
	tw_stats_free(sa);
	tw_stats_free(sb);
	world_down(true);
}

Test(stats, latencies_are_the_clocks)
{
	world_up(2, NULL);
	/* Call i: its CALL held on the wire for i ms, its answer for 2i ms.
	 * The caller's round trip is 3i ms, the callee's serve time i ms
	 * (from the frame's entry into the net to the answer's send). */
	const int n = 100;
	for (int i = 1; i <= n; i++) {
		cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, B_ADDR, true),
			     TW_OK);
		tw_future *f = call(0, "B", "t::inc", i, 0);
		settle();
		atomic_fetch_add(&fake_now, (uint64_t)i * MS);
		cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true),
			     TW_OK);
		cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, B_ADDR, false),
			     TW_OK);
		settle();
		atomic_fetch_add(&fake_now, 2 * (uint64_t)i * MS);
		cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, false),
			     TW_OK);
		settle();
		cr_assert_eq(result_int(f), i + 1);
		tw_future_release(f);
	}
	tw_stats *sa = snap(0), *sb = snap(1);
	const struct tw_hist *rtt = tw_stats_total(sa, TW_STATS_RTT);
	const struct tw_hist *srv = tw_stats_total(sb, TW_STATS_SERVE);
	cr_assert_eq(rtt->count, n);
	cr_assert_eq(rtt->min, 3 * MS);
	cr_assert_eq(rtt->max, 3 * n * MS);
	cr_assert_eq(rtt->sum, 3 * MS * n * (n + 1) / 2);
	/* Nearest rank over 3, 6, ..., 300 ms. */
	assert_near(tw_hist_quantile(rtt, 0.5), 150 * MS);
	assert_near(tw_hist_quantile(rtt, 0.9), 270 * MS);
	assert_near(tw_hist_quantile(rtt, 0.99), 297 * MS);
	cr_assert_eq(srv->count, n);
	cr_assert_eq(srv->min, 1 * MS);
	cr_assert_eq(srv->max, n * MS);
	assert_near(tw_hist_quantile(srv, 0.5), 50 * MS);
	assert_near(tw_hist_quantile(srv, 0.999), 100 * MS);
	int i = fn_index(sb, "t::inc");
	cr_assert_eq(memcmp(tw_stats_function_hist(sb, i, TW_STATS_SERVE), srv,
			    sizeof(*srv)),
		     0, "the one function's histogram is the whole");
	tw_stats_free(sa);
	tw_stats_free(sb);
	world_down(true);
}

static void two_fns(uint32_t rank, struct tw_agent_opts *o)
{
	(void)rank;
	o->stats_functions = 2;
	o->stats_peers = 1; /* A only: B is "other" */
}

Test(stats, tables_are_bounded_and_overflow_to_other)
{
	world_up(2, two_fns);
	const char *fns[] = {"t::echo", "t::inc", "t::echo", "t::bare",
			     "t::x1",   "t::x2",  "t::x3"};
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		tw_future *f = call(0, "B", fns[i], 1, 1000);
		settle();
		tw_future_release(f);
	}
	/* Names this long are never copied. */
	char longname[300];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	tw_future *f = call(0, "B", longname, 1, 1000);
	settle();
	tw_future_release(f);

	tw_stats *sa = snap(0);
	cr_assert_eq(tw_stats_nfunctions(sa), 3, "two names and other");
	cr_assert_str_eq(tw_stats_function(sa, 0), "t::echo");
	cr_assert_str_eq(tw_stats_function(sa, 1), "t::inc");
	cr_assert_str_eq(tw_stats_function(sa, 2), "other");
	cr_assert_eq(tw_stats_function_hist(sa, 0, TW_STATS_RTT)->count, 2);
	cr_assert_eq(tw_stats_function_hist(sa, 2, TW_STATS_RTT)->count, 5);
	cr_assert_eq(tw_stats_counters(sa)->untracked_fn_calls, 5);
	cr_assert_eq(tw_stats_npeers(sa), 1);
	cr_assert_eq(tw_stats_peer_id(sa, 0), -1, "B is past stats_peers");
	cr_assert_str_eq(tw_stats_peer_name(sa, 0), "other");
	cr_assert_eq(W.ag[0]->fns.n, 2, "nothing added past the bound");
	tw_stats_free(sa);
	world_down(true);
}

Test(stats, json_and_text_carry_the_figures)
{
	world_up(2, NULL);
	for (int i = 0; i < 3; i++) {
		tw_future *f = call(0, "B", "t::echo", i, 1000);
		settle();
		tw_future_release(f);
	}
	tw_future *f = call(0, "B", "t::bare", 0, 1000);
	settle();
	tw_future_release(f);
	tw_stats *s = snap(0);
	char *j = NULL, *t = NULL;
	cr_assert_eq(tw_stats_json(s, &j), TW_OK);
	cr_assert_eq(tw_stats_text(s, &t), TW_OK);
	cr_assert_not_null(strstr(j, "\"worker\":\"A\""));
	cr_assert_not_null(strstr(j, "\"calls_ok\":3,"));
	/* The list's last counter: none left out for want of room. */
	cr_assert_not_null(strstr(j, "\"untracked_fn_calls\":0}"));
	cr_assert_not_null(strstr(j, "\"calls_failed\":{\"TW_EVALUE\":1}"));
	cr_assert_not_null(strstr(j, "{\"name\":\"t::echo\",\"id\":0,"
				     "\"rtt\":{\"count\":3,"));
	cr_assert_not_null(strstr(j, "{\"name\":\"B\",\"id\":1,"));
	cr_assert_not_null(strstr(t, "worker A (rank 0)"));
	cr_assert_not_null(strstr(t, "calls_failed  TW_EVALUE"));
	cr_assert_not_null(strstr(t, "rtt   t::echo"));
	free(j);
	free(t);
	cr_assert_eq(tw_stats_take(NULL, &s), TW_EINVAL);
	cr_assert_eq(tw_stats_json(NULL, &j), TW_EINVAL);
	tw_stats_free(s);
	world_down(true);
}
