/* Members that die (rpc/agent.c agent_member_dead, rpc/rref.c
 * rref_member_dead; docs/architecture.md) on the fake net: the signal acts
 * once per member, drops the user forks the dead member held on this
 * owner (freeing what nothing else keeps), fails pending calls to it and
 * refuses new ones at once, naming it. The signal's source (rank 0's
 * notices, rdv_watch) is tested in test_rendezvous.c and, end to end with
 * real processes, in tests/integration/test_rref.c. */
#include "dataplane/log.h"
#include "rpc/rref.h"
#include "tests/unit/rpc/fake_world.h"

static struct tw_rref_stats rstats(uint32_t i)
{
	struct tw_rref_stats s;
	tw_agent_rref_stats(W.ag[i], &s);
	return s;
}

static tw_rref *remote_int(uint32_t from, const char *to, int64_t v)
{
	tw_value args = int_args(v);
	tw_rref *r = NULL;
	tw_agent_fake_enter(W.ag[from]);
	tw_status st = tw_remote(W.ag[from], to, "t::inc", &args, NULL, 1000,
				 &r);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	tw_value_destroy(&args);
	return r;
}

static uint32_t users_of(uint32_t owner, tw_rref *r, tw_status *st)
{
	uint32_t nu = 0, nf = 0;
	bool sf = false;
	*st = tw_agent_rref_value_users(W.ag[owner], tw_rref_get_id(r).rref,
					&nu, &nf, &sf);
	return nu;
}

/* As the watch does, on the owner's thread outside an iteration. */
static void declare_dead(uint32_t at, uint32_t rank)
{
	tw_agent_fake_enter(W.ag[at]);
	agent_member_dead(W.ag[at], rank);
}

Test(agent_death, a_dead_users_forks_are_dropped_once)
{
	world_up(3, NULL);
	/* On A: two values B uses, one C uses, and one of A's own. */
	tw_rref *rb = remote_int(1, "A", 1);
	tw_rref *rb2 = remote_int(1, "A", 2);
	tw_rref *rc = remote_int(2, "A", 3);
	tw_rref *ra = remote_int(0, "A", 4);
	settle();
	cr_assert(tw_rref_confirmed_by_owner(rb) &&
		  tw_rref_confirmed_by_owner(rc));
	struct tw_rref_stats s = rstats(0);
	cr_assert_eq(s.owned, 4);
	cr_assert_eq(s.owner_users, 3);
	cr_assert_eq(s.dead_users_dropped, 0);
	tw_status st;
	cr_assert_eq(users_of(0, rb, &st), 1);
	cr_assert(tw_agent_worker_alive(W.ag[0], 1));

	/* B dies (its process, say: the net takes it down). */
	cr_assert_eq(tw_fake_net_set_down(W.net, B_ADDR, true), TW_OK);
	declare_dead(0, 1);
	settle();
	s = rstats(0);
	cr_assert_eq(s.dead_users_dropped, 2);
	cr_assert_eq(s.owner_users, 1, "C's fork stays");
	cr_assert_eq(s.owned, 2, "C's value and A's own");
	users_of(0, rb, &st);
	cr_assert_eq(st, TW_ENOENT, "B's value is freed");
	users_of(0, rb2, &st);
	cr_assert_eq(st, TW_ENOENT);
	cr_assert_eq(users_of(0, rc, &st), 1);
	cr_assert_eq(st, TW_OK);
	cr_assert_not(tw_agent_worker_alive(W.ag[0], 1));
	cr_assert(tw_agent_worker_alive(W.ag[0], 0), "itself");
	cr_assert(tw_agent_worker_alive(W.ag[0], 2));
	cr_assert_not(tw_agent_worker_alive(W.ag[0], 3), "out of range");
	cr_assert_not(tw_agent_worker_alive(NULL, 0));
	cr_assert(tw_agent_worker_alive(W.ag[2], 1), "C was not told");

	/* Once per member: told again (the watch's next tick), nothing
	 * moves; this worker itself and unknown ranks are ignored. */
	declare_dead(0, 1);
	declare_dead(0, 0);
	declare_dead(0, 7);
	settle();
	s = rstats(0);
	cr_assert_eq(s.dead_users_dropped, 2);
	cr_assert_eq(s.owner_users, 1);
	cr_assert(tw_agent_worker_alive(W.ag[0], 0));

	/* The rest go as usual, and leave nothing. */
	tw_agent_fake_enter(W.ag[2]);
	tw_rref_release(rc);
	tw_agent_fake_enter(W.ag[0]);
	tw_rref_release(ra);
	settle();
	s = rstats(0);
	cr_assert_eq(s.owned, 0);
	cr_assert_eq(s.owner_users, 0);
	cr_assert_eq(s.refused, 0);
	agent_down(1, false);
	tw_rref_release(rb); /* after its agent: frees itself only */
	tw_rref_release(rb2);
	world_down(true);
}

/* A value whose function still runs when its only user dies stays until
 * the function returns, then goes: nobody is left to fetch it. */
Test(agent_death, a_running_value_goes_when_its_function_returns)
{
	world_up(2, NULL);
	atomic_store(&block_gate, 0);
	tw_value args = int_args(5);
	tw_rref *r = NULL;
	tw_agent_fake_enter(W.ag[1]);
	cr_assert_eq(tw_remote(W.ag[1], "A", "t::block", &args, NULL, 1000, &r),
		     TW_OK);
	tw_value_destroy(&args);
	POLL_UNTIL(atomic_load(&block_runs) == 1);
	cr_assert_eq(rstats(0).owned, 1);
	declare_dead(0, 1);
	settle();
	struct tw_rref_stats s = rstats(0);
	cr_assert_eq(s.dead_users_dropped, 1);
	cr_assert_eq(s.owner_users, 0);
	cr_assert_eq(s.owned, 1, "its function still runs");
	atomic_store(&block_gate, 1);
	POLL_UNTIL(rstats(0).owned == 0);
	agent_down(1, false);
	tw_rref_release(r);
	world_down(true);
}

/* Calls: pending ones to the dead member fail, naming it; new ones fail
 * at once (tw_rpc_async itself, and RRef requests), by name and by id;
 * calls to the living and to self go on. */
/* Lines logged, for the checks that an event was logged once. */
static char logged[16][TW_LOG_LINE_MAX];
static int nlogged;

static void log_grab(void *arg, enum tw_log_level level, const char *event,
		     const char *line)
{
	(void)arg, (void)level, (void)event;
	if (nlogged < 16)
		snprintf(logged[nlogged++], sizeof(logged[0]), "%s", line);
}

Test(agent_death, calls_to_a_dead_member_fail_naming_it)
{
	nlogged = 0;
	tw_log_set_handler(log_grab, NULL);
	world_up(3, NULL);
	/* B's answers held: the call is pending on A when B dies. */
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_future *pend = call(0, "B", "t::echo", 1, 0);
	tw_future *pend_inc = call(0, "B", "t::inc", 1, 0);
	settle();
	cr_assert_not(tw_future_done(pend));
	uint64_t out0 = tw_agent_outstanding(W.ag[0]);
	cr_assert_eq(out0, 2);

	declare_dead(0, 1);
	settle();
	/* Logged once, with who and why. */
	int seen = 0;
	for (int i = 0; i < nlogged; i++)
		seen += strstr(logged[i], "level=warn event=peer_dead "
					  "worker=B rank=1 reason=") != NULL;
	cr_assert_eq(seen, 1, "%d peer_dead lines of %d", seen, nlogged);
	tw_log_set_handler(NULL, NULL);
	const tw_error *e = failure(pend, TW_EUNREACHABLE);
	cr_assert(strstr(e->msg, "worker 'B' (id 1) is dead") != NULL, "%s",
		  e->msg);
	failure(pend_inc, TW_EUNREACHABLE);
	cr_assert_eq(tw_agent_outstanding(W.ag[0]), 0);

	tw_agent_fake_enter(W.ag[0]);
	tw_value args = int_args(2);
	tw_future *f = (tw_future *)1;
	tw_status st = tw_rpc_async(W.ag[0], "B", "t::echo", &args, NULL, 1000,
				    &f);
	cr_assert_eq(st, TW_EUNREACHABLE);
	cr_assert_null(f);
	cr_assert(strstr(tw_errmsg(st), "worker 'B' (id 1) is dead") != NULL,
		  "%s", tw_errmsg(st));
	st = tw_rpc_async_id(W.ag[0], 1, "t::echo", &args, NULL, 1000, &f);
	cr_assert_eq(st, TW_EUNREACHABLE);
	tw_value res, err;
	st = tw_rpc_sync(W.ag[0], "B", "t::echo", &args, NULL, 1000, &res,
			 &err);
	cr_assert_eq(st, TW_EUNREACHABLE);
	cr_assert_eq(err.kind, TW_KIND_ERROR);
	tw_value_destroy(&err);
	tw_rref *r = NULL;
	st = tw_remote(W.ag[0], "B", "t::inc", &args, NULL, 1000, &r);
	cr_assert_eq(st, TW_EUNREACHABLE, "%s", tw_strerror(st));
	cr_assert_null(r);
	tw_value_destroy(&args);

	/* The living and self still answer. */
	tw_future *g = call(0, "C", "t::inc", 41, 1000);
	tw_future *h = call(0, "A", "t::inc", 1, 1000);
	settle();
	cr_assert_eq(result_int(g), 42);
	cr_assert_eq(result_int(h), 2);
	tw_future_release(pend);
	tw_future_release(pend_inc);
	tw_future_release(g);
	tw_future_release(h);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, false), TW_OK);
	agent_down(1, false);
	world_down(true);
}

/* A call posted before the death but started on the loop after it (the
 * loop's ring had not reached it) fails the same way. */
Test(agent_death, a_call_queued_before_the_death_fails_when_it_starts)
{
	world_up(2, NULL);
	tw_future *f = call(0, "B", "t::echo", 1, 1000); /* posted only */
	cr_assert_not(tw_future_done(f));
	/* Declared without its loop running: the call is still in the
	 * ring, behind nothing. */
	atomic_store(&W.ag[0]->dead[1], 1);
	settle();
	const tw_error *e = failure(f, TW_EUNREACHABLE);
	cr_assert(strstr(e->msg, "is dead") != NULL, "%s", e->msg);
	tw_future_release(f);
	agent_down(1, false);
	world_down(true);
}

/* A member declared dead that still speaks (cut off from rank 0 only, or
 * frames read after the declaration): its RRef requests are dropped, so
 * no fork of it outlives the ones dropped. */
Test(agent_death, a_dead_members_rref_requests_are_dropped)
{
	world_up(2, NULL);
	declare_dead(0, 1);
	settle();
	tw_value args = int_args(1);
	tw_rref *r = NULL;
	tw_agent_fake_enter(W.ag[1]);
	cr_assert_eq(tw_remote(W.ag[1], "A", "t::inc", &args, NULL, 100, &r),
		     TW_OK);
	tw_value_destroy(&args);
	settle();
	struct tw_rref_stats s = rstats(0);
	cr_assert_eq(s.owned, 0);
	cr_assert_eq(s.owner_users, 0);
	cr_assert_eq(W.k[0].inc, 0, "the function never ran");
	advance(200 * MS);
	cr_assert_not(tw_rref_confirmed_by_owner(r));
	agent_down(1, false);
	tw_rref_release(r);
	world_down(true);
}

/* A call to B carrying RRef r (a fork of it on the way to B). */
static tw_future *call_with_rref(uint32_t from, const char *to, tw_rref *r)
{
	tw_value args, rv;
	cr_assert_eq(tw_value_tuple(&args, 1), TW_OK);
	cr_assert_eq(tw_rref_value(r, &rv), TW_OK);
	cr_assert_eq(tw_value_set_item(&args, 0, rv), TW_OK);
	tw_future *f = NULL;
	tw_agent_fake_enter(W.ag[from]);
	tw_status st = tw_rpc_async(W.ag[from], to, "t::echo", &args, NULL, 0,
				    &f);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	tw_value_destroy(&args);
	return f;
}

/* Forks on their way to a member that dies are never accepted: the owner
 * drops the ones it recorded for it (in flight), and a user drops the
 * children it sent it, releasing their handles. */
Test(agent_death, forks_in_flight_to_a_dead_member_are_dropped)
{
	world_up(3, NULL);
	tw_rref *ra = remote_int(0, "A", 1); /* A's own */
	tw_rref *rc = remote_int(2, "A", 2); /* C uses it */
	settle();
	cr_assert(tw_rref_confirmed_by_owner(rc));
	/* B never answers: what is sent to it stays in flight. */
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, NULL, true), TW_OK);
	tw_future *fa = call_with_rref(0, "B", ra);
	tw_future *fc = call_with_rref(2, "B", rc);
	settle();
	tw_agent_fake_enter(W.ag[0]);
	tw_rref_release(ra);
	tw_agent_fake_enter(W.ag[2]);
	tw_rref_release(rc);
	settle();
	struct tw_rref_stats sa = rstats(0), sc = rstats(2);
	cr_assert_eq(sa.forks_pending, 1, "A's fork to B in flight");
	cr_assert_eq(sa.owned, 2, "both values kept by forks in flight");
	cr_assert_eq(sc.forks_pending, 1, "C's child sent to B");

	cr_assert_eq(tw_fake_net_set_down(W.net, B_ADDR, true), TW_OK);
	declare_dead(0, 1);
	declare_dead(2, 1);
	settle();
	sa = rstats(0);
	sc = rstats(2);
	cr_assert_eq(sa.forks_pending, 0);
	cr_assert_eq(sa.owner_users, 0);
	cr_assert_eq(sa.owned, 0, "nothing keeps either value now");
	/* A's fork of its own handle, recorded for B; C's child was never
	 * seen by A (B asks the owner, and B never spoke): dropping it
	 * released C's handle, whose delete freed the value. */
	cr_assert_eq(sa.dead_users_dropped, 1, "dropped %llu",
		     (unsigned long long)sa.dead_users_dropped);
	cr_assert_eq(sc.forks_pending, 0);
	cr_assert_eq(sc.users, 0, "C's handle went with its child");
	failure(fa, TW_EUNREACHABLE);
	failure(fc, TW_EUNREACHABLE);
	tw_future_release(fa);
	tw_future_release(fc);
	agent_down(1, false);
	world_down(true);
}
