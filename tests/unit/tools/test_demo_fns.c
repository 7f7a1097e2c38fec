/* The demo functions tw-worker serves to anyone (tools/demo_fns.c), on the
 * fake net: they answer bad input with a clear error, never with a wrong
 * result, undefined behaviour or a stalled executor. */
#include "tests/unit/rpc/fake_world.h"
#include "tools/demo_fns.h"

static tw_status setup_demo(tw_agent *a, void *arg)
{
	tw_status st = setup(a, arg);
	if (st == TW_OK)
		st = demo_register(a);
	return st;
}

static void with_demo(uint32_t rank, struct tw_agent_opts *o)
{
	(void)rank;
	o->setup = setup_demo;
}

static tw_future *call2(const char *fn, tw_value x, tw_value y)
{
	tw_value args;
	cr_assert_eq(tw_value_tuple(&args, 2), TW_OK);
	tw_value_set_item(&args, 0, x);
	tw_value_set_item(&args, 1, y);
	tw_future *f = NULL;
	tw_status st = tw_rpc_async(W.ag[0], "B", fn, &args, NULL, 1000, &f);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	tw_value_destroy(&args);
	return f;
}

Test(demo_fns, add_refuses_an_overflow)
{
	world_up(2, with_demo);
	tw_future *f = call2("demo::add", tw_value_int(40), tw_value_int(2));
	settle();
	cr_assert_eq(result_int(f), 42);
	tw_future_release(f);

	f = call2("demo::add", tw_value_int(INT64_MAX), tw_value_int(1));
	settle();
	const tw_error *e = failure(f, TW_EVALUE);
	cr_assert_str_eq(e->msg, "demo::add: 9223372036854775807 + 1 "
				 "overflows a 64-bit integer");
	cr_assert_eq(e->origin, 1);
	tw_future_release(f);
	f = call2("demo::add", tw_value_int(INT64_MIN), tw_value_int(-1));
	settle();
	failure(f, TW_EVALUE);
	tw_future_release(f);
	/* Floats do not overflow: they go to inf, as Python's do. */
	f = call2("demo::add", tw_value_double(1.5), tw_value_int(2));
	settle();
	cr_assert_eq(tw_future_status(f), TW_OK);
	cr_assert_eq(tw_future_value(f)->u.d, 3.5);
	tw_future_release(f);
	f = call2("demo::add", tw_value_int(1), tw_value_none());
	settle();
	failure(f, TW_ETYPE);
	tw_future_release(f);
	world_down(true);
}

Test(demo_fns, slow_refuses_a_sleep_out_of_bounds)
{
	world_up(2, with_demo);
	const int64_t bad[] = {-1, DEMO_SLOW_MAX_MS + 1, INT64_MIN, INT64_MAX};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tw_future *f = call(0, "B", "demo::slow", bad[i], 1000);
		POLL_UNTIL(tw_future_done(f));
		const tw_error *e = failure(f, TW_EVALUE);
		cr_assert(strstr(e->msg, "demo::slow: ms must be 0 .. 60000") !=
				  NULL,
			  "%s", e->msg);
		tw_future_release(f);
	}
	tw_future *f = call(0, "B", "demo::slow", 0, 1000);
	POLL_UNTIL(tw_future_done(f));
	cr_assert_eq(tw_future_status(f), TW_OK);
	tw_future_release(f);
	world_down(true);
}

Test(demo_fns, check_positive_and_echo_refuse_missing_arguments)
{
	world_up(2, with_demo);
	tw_value none;
	cr_assert_eq(tw_value_tuple(&none, 0), TW_OK);
	const char *fns[] = {"demo::echo", "demo::check_positive", "demo::add",
			     "demo::slow"};
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		tw_future *f = NULL;
		cr_assert_eq(tw_rpc_async(W.ag[0], "B", fns[i], &none, NULL,
					  1000, &f),
			     TW_OK);
		POLL_UNTIL(tw_future_done(f));
		cr_assert_neq(tw_future_status(f), TW_OK, "%s", fns[i]);
		tw_future_release(f);
	}
	tw_value_destroy(&none);
	tw_future *f = call(0, "B", "demo::check_positive", -3, 1000);
	settle();
	cr_assert_str_eq(failure(f, TW_EVALUE)->msg,
			 "expected a positive value, got -3");
	tw_future_release(f);
	world_down(true);
}
