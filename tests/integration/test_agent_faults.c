/* Failure paths: timeouts and late answers, peer death, graceful and
 * immediate shutdown with calls in flight, rendezvous refusals, and fault
 * injection on the send path. */
#include "harness.h"
#include "rpc/auth.h"
#include "rpc/rendezvous.h"

#define TIMEOUT_MSG_100                                                        \
	"RPC ran for more than set timeout (100 ms) and will now be marked with an error"

/* ---- timeouts ---- */

static int w_timeout(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	struct h_shared *sh = w->sh;
	if (w->rank == 0) {
		/* a handler that never answers */
		tw_value r, e;
		st = tw_rpc_sync(a, "w1", "never", NULL, NULL, 100, &r, &e);
		W_ASSERT(w, st == TW_ETIMEDOUT, "never: %s",
			 tw_status_name(st));
		W_ASSERT(w, strcmp(e.u.err->msg, TIMEOUT_MSG_100) == 0,
			 "msg '%s'", e.u.err->msg);
		W_ASSERT(w,
			 e.u.err->kind == TW_ETIMEDOUT && e.u.err->origin == 0,
			 "error value");
		tw_value_destroy(&e);
		/* several at once, through futures */
		tw_future *fs[8];
		for (int i = 0; i < 8; i++)
			W_ASSERT(w,
				 tw_rpc_async(a, "w1", "never", NULL, NULL, 100,
					      &fs[i]) == TW_OK,
				 "async");
		for (int i = 0; i < 8; i++) {
			W_ASSERT(w, tw_future_wait(fs[i], -1) == TW_ETIMEDOUT,
				 "timeout %d", i);
			W_ASSERT(w,
				 strcmp(tw_future_error(fs[i])->msg,
					TIMEOUT_MSG_100) == 0,
				 "msg");
			tw_future_release(fs[i]);
		}
		/* a blocking handler slower than the timeout: its answer comes
		 * late and is dropped */
		tw_value sa[1] = {tw_value_int(300)};
		tw_value stup = H_TUPLE(sa);
		st = tw_rpc_sync(a, "w1", "sleep", &stup, NULL, 100, &r, &e);
		W_ASSERT(w, st == TW_ETIMEDOUT, "slow: %s", tw_status_name(st));
		tw_value_destroy(&e);
		/* the default timeout applies to negative values; 0 = none */
		int64_t v;
		tw_value aa[2] = {tw_value_int(1), tw_value_int(2)};
		tw_value at = H_TUPLE(aa);
		W_ASSERT(w,
			 h_call_int(a, "w1", "add", &at, &v) == TW_OK && v == 3,
			 "add");
		st = tw_rpc_sync(a, "w1", "add", &at, NULL, 0, &r, &e);
		W_ASSERT(w, st == TW_OK && r.u.i == 3, "no timeout");
		/* let w1 answer its "never" calls now: late answers */
		atomic_store(&sh->flag[0], 1);
		W_ASSERT(w, h_wait_all(sh->flag, 2, 0, 20000), "w1 answered");
		struct tw_agent_stats s;
		uint64_t until = h_now_ms() + 20000;
		do {
			h_sleep_ms(10);
			tw_agent_get_stats(a, &s);
		} while (s.late_responses < 10 && h_now_ms() < until);
		W_ASSERT(w, s.late_responses >= 10, "late %" PRIu64,
			 s.late_responses);
		W_ASSERT(w, s.timeouts == 10, "timeouts %" PRIu64, s.timeouts);
		/* the connection still works */
		W_ASSERT(w,
			 h_call_int(a, "w1", "add", &at, &v) == TW_OK && v == 3,
			 "after");
		/* blocking calls queued past their deadline are skipped on w1:
		 * 2 executor threads, 6 calls of 300 ms with 100 ms budgets */
		tw_future *ss[6];
		for (int i = 0; i < 6; i++)
			W_ASSERT(w,
				 tw_rpc_async(a, "w1", "sleep", &stup, NULL,
					      100, &ss[i]) == TW_OK,
				 "sleep async");
		for (int i = 0; i < 6; i++) {
			W_ASSERT(w, tw_future_wait(ss[i], -1) == TW_ETIMEDOUT,
				 "sleep timeout");
			tw_future_release(ss[i]);
		}
		atomic_store(&sh->flag[2], 1);
	} else {
		W_ASSERT(w, h_wait_all(sh->flag, 1, -1, 30000), "w0 timed out");
		W_ASSERT(w, h_never_count() == 9, "9 never calls, got %d",
			 h_never_count());
		h_never_finish();
		atomic_store(&sh->flag[1], 1);
		W_ASSERT(w, h_wait_all(&sh->flag[2], 1, -1, 30000), "w0 done");
		struct tw_agent_stats s;
		uint64_t until = h_now_ms() + 20000;
		do {
			h_sleep_ms(10);
			tw_agent_get_stats(a, &s);
		} while (s.exec_jobs < 7 && h_now_ms() < until);
		W_ASSERT(w, s.exec_expired >= 1, "expired %" PRIu64,
			 s.exec_expired);
		/* "never" again, then answered after shutdown: dropped */
	}
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	h_never_finish();
	return 0;
}

Test(faults, timeouts_and_late_answers, .timeout = 120)
{
	h_run_group(2, w_timeout, NULL, NULL, 0);
}

/* ---- a peer killed mid-call ---- */

static int w_kill(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 0) {
		tw_future *fs[11];
		for (int i = 0; i < 10; i++)
			W_ASSERT(w,
				 tw_rpc_async(a, "w1", "never", NULL, NULL, 0,
					      &fs[i]) == TW_OK,
				 "never");
		int64_t v;
		tw_value aa[2] = {tw_value_int(1), tw_value_int(2)};
		tw_value at = H_TUPLE(aa);
		W_ASSERT(w,
			 h_call_int(a, "w1", "add", &at, &v) == TW_OK && v == 3,
			 "ping");
		uint64_t t0 = h_now_ms();
		W_ASSERT(w,
			 tw_rpc_async(a, "w1", "die", NULL, NULL, 0, &fs[10]) ==
				 TW_OK,
			 "die");
		for (int i = 0; i < 11; i++) {
			st = tw_future_wait(fs[i], 30000);
			W_ASSERT(w, st == TW_EUNREACHABLE, "call %d: %s", i,
				 tw_status_name(st));
			const tw_error *e = tw_future_error(fs[i]);
			W_ASSERT(w, strstr(e->msg, "'w1'") != NULL,
				 "msg names w1: %s", e->msg);
			tw_future_release(fs[i]);
		}
		/* No deadline on the calls: only w1's death ended them. */
		fprintf(stderr,
			"[%s] w1 SIGKILLed inside a call: its 11 calls failed "
			"%llu ms after that call was sent\n",
			h_mode(&o), (unsigned long long)(h_now_ms() - t0));
		W_ASSERT(w, tw_agent_outstanding(a) == 0, "outstanding");
		/* later calls fail too (the reconnect is refused), never hang */
		tw_value r, e;
		st = tw_rpc_sync(a, "w1", "add", &at, NULL, -1, &r, &e);
		W_ASSERT(w, st == TW_EUNREACHABLE, "after death: %s",
			 tw_status_name(st));
		tw_value_destroy(&e);
		/* graceful shutdown: the dead worker counts as gone */
		st = tw_agent_shutdown(a, true);
		W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
		return 0;
	}
	/* w1 dies inside "die" */
	for (;;)
		h_sleep_ms(1000);
}

Test(faults, peer_killed_mid_call, .timeout = 120)
{
	h_run_group(2, w_kill, NULL, NULL, 1u << 1);
}

/* ---- a killed member is declared dead, whatever the transport ---- */

#define DIES_RREFS 8

/* w1 holds RRefs w0 owns and a call of w0's runs on it when it is
 * SIGKILLed: w0 declares it dead (rank 0's notice: on DPDK no FIN tells
 * a dead peer from a slow one), drops its forks, fails the call and
 * refuses new ones at once, naming it. Deadlines are generous; the time
 * taken is printed. */
static int w_member_dies(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 1) {
		tw_rref *r[DIES_RREFS];
		for (int i = 0; i < DIES_RREFS; i++) {
			tw_value it[2] = {tw_value_int(i), tw_value_int(1)};
			tw_value args = H_TUPLE(it);
			W_ASSERT(w,
				 tw_remote(a, "w0", "add", &args, NULL, -1,
					   &r[i]) == TW_OK,
				 "remote %d", i);
			tw_value out, err;
			st = tw_rref_to_here(r[i], 30000, &out, &err);
			W_ASSERT(w, st == TW_OK && out.u.i == i + 1,
				 "to_here %d: %s", i, tw_errmsg(st));
		}
		atomic_store(&w->sh->flag[1], 1);
		W_ASSERT(w, h_wait_all(w->sh->flag, 1, -1, 30000), "w0");
		kill(getpid(), SIGKILL); /* holding every handle */
		for (;;)
			h_sleep_ms(1000);
	}
	W_ASSERT(w, h_wait_all(&w->sh->flag[1], 1, -1, 30000), "w1's RRefs");
	struct tw_rref_stats s;
	tw_agent_rref_stats(a, &s);
	W_ASSERT(w, s.owned == DIES_RREFS && s.owner_users == DIES_RREFS,
		 "owned %llu users %llu", (unsigned long long)s.owned,
		 (unsigned long long)s.owner_users);
	W_ASSERT(w, tw_agent_worker_alive(a, 1), "alive before");
	tw_future *pend;
	W_ASSERT(w,
		 tw_rpc_async(a, "w1", "never", NULL, NULL, 0, &pend) == TW_OK,
		 "never");
	uint64_t t0 = h_now_ms();
	atomic_store(&w->sh->flag[0], 1);
	uint64_t until = t0 + 30000;
	while (tw_agent_worker_alive(a, 1) && h_now_ms() < until)
		h_sleep_ms(1);
	uint64_t t_dead = h_now_ms();
	W_ASSERT(w, !tw_agent_worker_alive(a, 1), "never declared dead");
	do {
		tw_agent_rref_stats(a, &s);
		if (s.owned == 0 && s.owner_users == 0)
			break;
		h_sleep_ms(1);
	} while (h_now_ms() < until);
	W_ASSERT(w, s.owned == 0 && s.owner_users == 0, "owned %llu users %llu",
		 (unsigned long long)s.owned,
		 (unsigned long long)s.owner_users);
	W_ASSERT(w, s.dead_users_dropped == DIES_RREFS, "dropped %llu",
		 (unsigned long long)s.dead_users_dropped);
	st = tw_future_wait(pend, 30000);
	W_ASSERT(w, st == TW_EUNREACHABLE, "pending call: %s",
		 tw_status_name(st));
	W_ASSERT(w, strstr(tw_future_error(pend)->msg, "'w1'") != NULL, "%s",
		 tw_future_error(pend)->msg);
	tw_future_release(pend);
	fprintf(stderr,
		"[%s] w1 declared dead %llu ms after it was told to die, its "
		"forks dropped, its pending call failed\n",
		h_mode(&o), (unsigned long long)(t_dead - t0));
	tw_future *f = NULL;
	st = tw_rpc_async(a, "w1", "add", NULL, NULL, -1, &f);
	W_ASSERT(w, st == TW_EUNREACHABLE && f == NULL, "new call: %s",
		 tw_status_name(st));
	W_ASSERT(w, strstr(tw_errmsg(st), "worker 'w1' (id 1) is dead") != NULL,
		 "%s", tw_errmsg(st));
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s: %s", tw_status_name(st),
		 tw_errmsg(st));
	return 0;
}

Test(faults, a_killed_member_is_declared_dead, .timeout = 120)
{
	h_run_group(2, w_member_dies, NULL, NULL, 1u << 1);
}

/* ---- shutdown with calls in flight ---- */

struct rec {
	_Atomic int done;
	tw_status st;
	int64_t v;
	bool shutdown_msg;
};

static void record_cb(tw_future *f, void *arg)
{
	struct rec *r = arg;
	r->st = tw_future_status(f);
	const tw_value *v = tw_future_value(f);
	r->v = v && v->kind == TW_KIND_INT ? v->u.i : -1;
	const tw_error *e = tw_future_error(f);
	r->shutdown_msg = e &&
			  strcmp(e->msg, "RPC agent is shutting down") == 0;
	atomic_store(&r->done, 1);
}

static struct rec recs[64];

static int w_graceful(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 1) {
		/* 40 blocking calls of 10 ms on w0's two executor threads */
		for (int i = 0; i < 40; i++) {
			tw_value sa[1] = {tw_value_int(10 + (i % 3))};
			tw_value t = H_TUPLE(sa);
			tw_future *f;
			W_ASSERT(w,
				 tw_rpc_async(a, "w0", "sleep", &t, NULL, 0,
					      &f) == TW_OK,
				 "async");
			W_ASSERT(w,
				 tw_future_then(f, record_cb, &recs[i]) ==
					 TW_OK,
				 "then");
			tw_future_release(f);
		}
		W_ASSERT(w, tw_agent_outstanding(a) > 0, "in flight");
	}
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	if (w->rank == 1) {
		for (int i = 0; i < 40; i++) {
			W_ASSERT(w, atomic_load(&recs[i].done),
				 "call %d not done", i);
			W_ASSERT(w,
				 recs[i].st == TW_OK &&
					 recs[i].v == 10 + (i % 3),
				 "call %d: %s", i, tw_status_name(recs[i].st));
		}
	}
	return 0;
}

Test(faults, graceful_shutdown_completes_calls_in_flight, .timeout = 120)
{
	h_run_group(2, w_graceful, NULL, NULL, 0);
}

static int w_abrupt(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 1) {
		for (int i = 0; i < 20; i++) {
			tw_future *f;
			W_ASSERT(w,
				 tw_rpc_async(a, "w0", "never", NULL, NULL, 0,
					      &f) == TW_OK,
				 "async");
			W_ASSERT(w,
				 tw_future_then(f, record_cb, &recs[i]) ==
					 TW_OK,
				 "then");
			tw_future_release(f);
		}
		/* a call to self that never answers either */
		tw_future *f;
		W_ASSERT(w,
			 tw_rpc_async(a, "w1", "never", NULL, NULL, 0, &f) ==
				 TW_OK,
			 "self");
		W_ASSERT(w, tw_future_then(f, record_cb, &recs[20]) == TW_OK,
			 "then");
		tw_future_release(f);
		/* wait until w0 holds all 20 */
		uint64_t until = h_now_ms() + 20000;
		while (atomic_load(&w->sh->counter) < 20 && h_now_ms() < until)
			h_sleep_ms(5);
		W_ASSERT(w, tw_agent_outstanding(a) == 21, "in flight %" PRIu64,
			 tw_agent_outstanding(a));
		st = tw_agent_shutdown(a, false);
		W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
		for (int i = 0; i <= 20; i++) {
			W_ASSERT(w, atomic_load(&recs[i].done),
				 "call %d not done", i);
			W_ASSERT(w,
				 recs[i].st == TW_ESHUTDOWN &&
					 recs[i].shutdown_msg,
				 "call %d: %s", i, tw_status_name(recs[i].st));
		}
		h_never_finish();
		return 0;
	}
	/* w0: count the never calls as they arrive */
	uint64_t until = h_now_ms() + 20000;
	while (h_never_count() < 20 && h_now_ms() < until)
		h_sleep_ms(5);
	atomic_store(&w->sh->counter, h_never_count());
	st = tw_agent_shutdown(a,
			       true); /* w1 left at once: it counts as gone */
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	h_never_finish();
	return 0;
}

Test(faults, immediate_shutdown_fails_pending_calls, .timeout = 120)
{
	h_run_group(2, w_abrupt, NULL, NULL, 0);
}

/* ---- rendezvous refusals ---- */

struct rdv_case {
	const char *names[4];
	uint32_t ranks[4];
	uint32_t worlds[4];
};

static int w_rdv(struct h_worker *w)
{
	const struct rdv_case *c = w->arg;
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.name = c->names[w->rank];
	o.rank = c->ranks[w->rank];
	o.world_size = c->worlds[w->rank];
	o.init_timeout_ms = 3000;
	tw_agent *a = NULL;
	uint64_t t0 = h_now_ms();
	tw_status st = h_init_err(w->sh->msg[w->rank],
				  sizeof(w->sh->msg[w->rank]), &o, &a);
	w->sh->status[w->rank] = st;
	W_ASSERT(w, h_now_ms() - t0 < 30000, "init took too long");
	if (st == TW_OK)
		tw_agent_shutdown(a, false);
	return 0;
}

Test(rendezvous, duplicate_name_refused, .timeout = 60)
{
	static const struct rdv_case c = {
		.names = {"dup", "dup"}, .ranks = {0, 1}, .worlds = {2, 2}};
	struct h_shared *sh = h_shared_new();
	h_run_group(2, w_rdv, (void *)&c, sh, 0);
	/* Whoever joined second was refused; the other timed out waiting. */
	int refused = sh->status[0] == TW_EINVAL ? 0 : 1;
	cr_assert_eq(sh->status[refused], TW_EINVAL, "%s / %s",
		     tw_status_name(sh->status[0]),
		     tw_status_name(sh->status[1]));
	cr_assert_eq(sh->status[1 - refused], TW_ETIMEDOUT);
	char want[128];
	snprintf(want, sizeof(want),
		 "worker name 'dup' is already taken by rank %d", 1 - refused);
	cr_assert_str_eq(sh->msg[refused], want);
	/* Timed out waiting for rank 1, or (when rank 0 was the one refused)
	 * for a rendezvous that went away. */
	cr_assert(strstr(sh->msg[1 - refused], "timed out") != NULL ||
			  strstr(sh->msg[1 - refused], "unreachable") != NULL,
		  "%s", sh->msg[1 - refused]);
}

Test(rendezvous, wrong_world_size_refused, .timeout = 60)
{
	static const struct rdv_case c = {
		.names = {"w0", "w1"}, .ranks = {0, 1}, .worlds = {2, 3}};
	struct h_shared *sh = h_shared_new();
	h_run_group(2, w_rdv, (void *)&c, sh, 0);
	cr_assert_eq(sh->status[1], TW_EINVAL, "%s",
		     tw_status_name(sh->status[1]));
	cr_assert_str_eq(sh->msg[1],
			 "world size 3 does not match rank 0's world size 2");
	cr_assert_eq(sh->status[0], TW_ETIMEDOUT, "%s",
		     tw_status_name(sh->status[0]));
	cr_assert(strstr(sh->msg[0], "missing rank 1") != NULL ||
			  strstr(sh->msg[0], "not every worker joined") != NULL,
		  "%s", sh->msg[0]);
}

Test(rendezvous, duplicate_rank_refused, .timeout = 60)
{
	static const struct rdv_case c = {.names = {"w0", "a", "b"},
					  .ranks = {0, 1, 1},
					  .worlds = {3, 3, 3}};
	struct h_shared *sh = h_shared_new();
	h_run_group(3, w_rdv, (void *)&c, sh, 0);
	int refused = sh->status[1] == TW_EINVAL ? 1 : 2;
	cr_assert_eq(sh->status[refused], TW_EINVAL);
	cr_assert_eq(sh->status[3 - refused], TW_ETIMEDOUT);
	cr_assert_eq(sh->status[0], TW_ETIMEDOUT);
	char want[128];
	snprintf(want, sizeof(want), "rank 1 is already taken by worker '%s'",
		 refused == 1 ? "b" : "a");
	cr_assert_str_eq(sh->msg[refused], want);
}

Test(rendezvous, rank_out_of_range_and_bad_options, .timeout = 60)
{
	struct tw_agent_opts o;
	char err[256];
	tw_agent *a = (tw_agent *)1;
	tw_agent_opts_init(&o, sizeof(o));
	o.name = "x";
	o.rank = 2;
	o.world_size = 2;
	o.rendezvous = "tcp://127.0.0.1:1";
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_EINVAL);
	cr_assert_null(a);
	cr_assert_str_eq(err, "rank 2 is out of range for world size 2");
	o.rank = 0;
	o.rendezvous = NULL;
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_EINVAL);
	o.rendezvous = "http://nope";
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_EINVAL);
	cr_assert(strstr(err, "bad rendezvous address") != NULL, "%s", err);
	o.rendezvous = "tcp://127.0.0.1:1";
	o.name = "";
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_EINVAL);
	o.name = "x";
	struct tw_uring_opts uo;
	tw_uring_opts_init(&uo, sizeof(uo));
	o.transport_opts = &uo;
	uo.cc_local = "no-such-cc";
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_EINVAL);
	cr_assert(strstr(err,
			 "tcp_congestion_local (cc_local) 'no-such-cc': ") !=
			  NULL,
		  "%s", err);
	uo.cc_local = NULL;
	uo.cc_remote = "a-name-of-16-chr";
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_EINVAL);
	cr_assert(strstr(err, "congestion control name is longer than 15") !=
			  NULL,
		  "%s", err);
	uo.cc_remote = NULL;
	uo.recv_buf_count = 48;
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_EINVAL);
	cr_assert(strstr(err, "recv_buf_count 48 is not a power of 2") != NULL,
		  "%s", err);
	uo.recv_buf_count = 64;
	uo.listen_host = "example.org";
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_EINVAL);
	cr_assert(strstr(err, "listen_host 'example.org'") != NULL, "%s", err);
	uo.listen_host = "127.0.0.1";
	/* Options are checked against the transport they are for. */
	o.transport = "nosuch";
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_EINVAL);
	cr_assert(strstr(err, "unknown transport 'nosuch'") != NULL, "%s", err);
	o.transport = TW_TRANSPORT_DPDK;
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_EINVAL);
	cr_assert(strstr(err, "are for transport 'uring', not 'dpdk'") != NULL,
		  "%s", err);
	uo.opts_size = 4;
	o.transport = NULL;
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_EINVAL);
	cr_assert(strstr(err, "opts_size 4 is too small") != NULL, "%s", err);
	o.transport_opts = NULL;
	o.transport = TW_TRANSPORT_DPDK;
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_ENOTSUP);
}

/* Without a secret a worker serves on loopback only: anything else is
 * refused before it listens, unless insecure says otherwise. */
Test(auth, routable_address_without_a_secret_is_refused, .timeout = 60)
{
	unsetenv("TW_SECRET");
	unsetenv("TW_SECRET_FILE");
	struct tw_agent_opts o;
	char err[512];
	tw_agent *a = NULL;
	tw_agent_opts_init(&o, sizeof(o));
	o.name = "x";
	o.rank = 1;
	o.world_size = 2;
	o.rendezvous = "tcp://127.0.0.1:1";
	o.init_timeout_ms = 300;
	struct tw_uring_opts uo;
	tw_uring_opts_init(&uo, sizeof(uo));
	uo.listen_host = "0.0.0.0";
	o.transport_opts = &uo;
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_EINVAL);
	cr_assert_null(a);
	cr_assert(strstr(err, "refusing to serve the data port on "
			      "tcp://0.0.0.0:0 without a secret") != NULL,
		  "%s", err);
	cr_assert(strstr(err, "tw_agent_opts.insecure") != NULL, "%s", err);
	/* Rank 0's rendezvous alike. */
	o.rank = 0;
	o.rendezvous = "tcp://0.0.0.0:0";
	uo.listen_host = "127.0.0.1";
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_EINVAL);
	cr_assert(strstr(err, "refusing to serve the rendezvous on "
			      "tcp://0.0.0.0:0") != NULL,
		  "%s", err);
	/* With a secret, or insecure, it listens (and then finds nobody at
	 * the rendezvous). */
	o.rank = 1;
	o.rendezvous = "tcp://127.0.0.1:1";
	uo.listen_host = "0.0.0.0";
	o.secret = "s3cret";
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_ETIMEDOUT, "%s",
		     err);
	o.secret = NULL;
	o.insecure = true;
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_ETIMEDOUT, "%s",
		     err);
	/* Loopback needs neither. */
	o.insecure = false;
	uo.listen_host = "127.0.0.2";
	cr_assert_eq(h_init_err(err, sizeof(err), &o, &a), TW_ETIMEDOUT, "%s",
		     err);
}

static int w_unreachable(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.rank = 1;
	o.world_size = 2;
	o.name = "w1";
	o.init_timeout_ms = 1000;
	char err[256];
	tw_agent *a;
	uint64_t t0 = h_now_ms();
	tw_status st = h_init_err(err, sizeof(err), &o, &a);
	W_ASSERT(w, st == TW_ETIMEDOUT, "%s", tw_status_name(st));
	W_ASSERT(w, strstr(err, "unreachable") != NULL, "%s", err);
	W_ASSERT(w, h_now_ms() - t0 < 20000, "bounded");
	return 0;
}

Test(rendezvous, unreachable_times_out, .timeout = 60)
{
	h_run_group(1, w_unreachable, NULL, NULL, 0);
}

/* ---- fault injection ---- */

enum { F_FAIL = 1, F_DROP = 2, F_DELAY = 3 };

static int w_fault(struct h_worker *w)
{
	int mode = (int)(intptr_t)w->arg;
	struct tw_agent_opts o;
	h_opts(&o, w);
	if (mode == F_FAIL && w->rank == 0) {
		o.fault_fail_type = TW_MSG_CALL;
		o.fault_fail_count = 3;
	}
	if (mode == F_DROP && w->rank == 1)
		o.fault_drop_type = TW_MSG_RET;
	if (mode == F_DELAY && w->rank == 0) {
		o.fault_delay_type = TW_MSG_CALL;
		o.fault_delay_ms = 50;
	}
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 0) {
		tw_value aa[2] = {tw_value_int(20), tw_value_int(22)};
		tw_value at = H_TUPLE(aa);
		tw_value r, e;
		if (mode == F_FAIL) {
			for (int i = 0; i < 3; i++) {
				st = tw_rpc_sync(a, "w1", "add", &at, NULL, -1,
						 &r, &e);
				W_ASSERT(w, st == TW_EUNREACHABLE,
					 "send %d: %s", i, tw_status_name(st));
				W_ASSERT(w,
					 strstr(e.u.err->msg,
						"failed to send") != NULL,
					 "%s", e.u.err->msg);
				tw_value_destroy(&e);
			}
			int64_t v;
			W_ASSERT(w,
				 h_call_int(a, "w1", "add", &at, &v) == TW_OK &&
					 v == 42,
				 "4th");
		} else if (mode == F_DROP) {
			st = tw_rpc_sync(a, "w1", "add", &at, NULL, 200, &r,
					 &e);
			W_ASSERT(w, st == TW_ETIMEDOUT, "dropped RET: %s",
				 tw_status_name(st));
			tw_value_destroy(&e);
			/* EXCEPTION frames still travel */
			st = tw_rpc_sync(a, "w1", "nope", NULL, NULL, 5000, &r,
					 &e);
			W_ASSERT(w, st == TW_ENOFUNC, "exception: %s",
				 tw_status_name(st));
			tw_value_destroy(&e);
		} else {
			tw_future *fs[5];
			for (int i = 0; i < 5; i++) {
				tw_value ba[2] = {tw_value_int(i),
						  tw_value_int(100)};
				tw_value bt = H_TUPLE(ba);
				W_ASSERT(w,
					 tw_rpc_async(a, "w1", "add", &bt, NULL,
						      10000, &fs[i]) == TW_OK,
					 "async");
			}
			for (int i = 0; i < 5; i++) {
				W_ASSERT(w, tw_future_wait(fs[i], -1) == TW_OK,
					 "delayed %d", i);
				W_ASSERT(w,
					 tw_future_value(fs[i])->u.i == i + 100,
					 "value");
				tw_future_release(fs[i]);
			}
		}
	}
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

Test(faults, fail_first_call_sends, .timeout = 60)
{
	h_run_group(2, w_fault, (void *)(intptr_t)F_FAIL, NULL, 0);
}

Test(faults, dropped_ret_times_out, .timeout = 60)
{
	h_run_group(2, w_fault, (void *)(intptr_t)F_DROP, NULL, 0);
}

Test(faults, delayed_calls_complete, .timeout = 60)
{
	h_run_group(2, w_fault, (void *)(intptr_t)F_DELAY, NULL, 0);
}

/* ---- frames from a raw socket: malformed calls get a reason ---- */

/* The frames are written by hand: over io_uring to a TCP connection; over
 * DPDK in packets of a session of the DPDK transport's protocol, spoken by
 * a raw AF_PACKET socket on another link of the bridge (dpdk_pkt.h). */

#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/tcp.h>

#include "tw_config.h"
#if TW_HAVE_DPDK
#include "dataplane/dpdk_pkt.h"
#endif

struct raw_ch {
	int fd;
	bool dpdk;
#if TW_HAVE_DPDK
	struct twp_ep self, peer;
	struct twp_local local;
	uint64_t sess, peer_sess;
	uint32_t snd_nxt, rcv_next, msg;
	uint8_t nonce[TWP_NONCE_LEN];   /* our CONNECT's */
	uint8_t cookie[TWP_COOKIE_LEN]; /* the worker's, once it sent one */
	bool has_cookie;
	uint8_t last[2048]; /* our last DATA packet, sent again if no
			     * answer comes */
	size_t last_len;
	uint8_t *rx; /* the frame being received */
	uint64_t rx_len, rx_have;
#endif
};

static int raw_connect(struct raw_ch *ch, const char *addr)
{
	memset(ch, 0, sizeof(*ch));
	int port = atoi(strrchr(addr, ':') + 1);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		return -1;
	struct timeval tv = {.tv_sec = 20};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ch->fd = fd;
	return 0;
}

static bool raw_full(int fd, void *p, size_t n, bool rd)
{
	size_t done = 0;
	while (done < n) {
		ssize_t k = rd ? recv(fd, (char *)p + done, n - done, 0)
			       : send(fd, (char *)p + done, n - done,
				      MSG_NOSIGNAL);
		if (k <= 0)
			return false;
		done += (size_t)k;
	}
	return true;
}

#if TW_HAVE_DPDK
#define RAWD_MSS 1402u
#define RAWD_MAC "02:00:00:00:0b:02" /* harness: worker 1's end */
/* The raw client's endpoint: it joins the rendezvous with it, as a member
 * must for a worker to take its CONNECT. */
#define RAWD_ADDR "udp://10.0.0.99:40000/" RAWD_MAC

static size_t rawd_build(struct raw_ch *ch, uint8_t *p, const struct twp_hdr *h,
			 const void *payload)
{
	twp_l2l4_build(p, &ch->self, &ch->peer, TWP_HDR_LEN + h->len, false);
	twp_hdr_encode(p + TWP_L2L4_LEN, h);
	if (h->len)
		memcpy(p + TWP_HEADERS, payload, h->len);
	twp_udp_csum_set(p, twp_csum_add(0, p + TWP_L2L4_LEN,
					 TWP_HDR_LEN + h->len, false));
	return TWP_HEADERS + h->len;
}

static bool rawd_ctl(struct raw_ch *ch, uint8_t type, uint8_t flags)
{
	uint8_t p[TWP_HEADERS + TWP_SETUP_LEN + TWP_COOKIE_LEN];
	uint8_t body[TWP_SETUP_LEN + TWP_COOKIE_LEN];
	struct twp_hdr h = {.type = type,
			    .flags = flags,
			    .dst_sess = ch->peer_sess,
			    .src_sess = ch->sess,
			    .ack = ch->rcv_next};
	if (type == TWP_CONNECT) {
		h.dst_sess = 0;
		h.ack = 0;
		h.frame_len = RAWD_MSS;
		/* the setup block, signed with the group's secret
		 * (dataplane/dpdk_pkt.h): first packet number 0 */
		struct twp_setup b = {.isn = 0};
		memcpy(b.nonce, ch->nonce, TWP_NONCE_LEN);
		h.len = TWP_SETUP_LEN + (ch->has_cookie ? TWP_COOKIE_LEN : 0);
		const uint8_t *ck = ch->has_cookie ? ch->cookie : NULL;
		twp_setup_mac(H_SECRET, strlen(H_SECRET), &h, &ch->self,
			      &ch->peer, &b, ck, b.mac);
		twp_setup_encode(body, &b);
		if (ck != NULL)
			memcpy(body + TWP_SETUP_LEN, ck, TWP_COOKIE_LEN);
	}
	if (type == TWP_RESET)
		h.ack = 0;
	size_t n = rawd_build(ch, p, &h, body);
	return send(ch->fd, p, n, 0) == (ssize_t)n;
}

/* The next valid packet for us within ms (false if none). */
static bool rawd_recv(struct raw_ch *ch, uint8_t *buf, size_t cap,
		      struct twp_pkt *pk, unsigned ms)
{
	uint64_t until = h_now_ms() + ms;
	while (h_now_ms() < until) {
		ssize_t n = recv(ch->fd, buf, cap, 0);
		if (n <= 0)
			continue; /* SO_RCVTIMEO */
		if (twp_parse(buf, (size_t)n, &ch->local, false, false, pk) ==
			    TWP_OK &&
		    (pk->h.type == TWP_ACCEPT || pk->h.type == TWP_RESET ||
		     pk->h.dst_sess == ch->sess))
			return true;
	}
	return false;
}

/* Open a session with the worker at addr ("udp://IP:PORT/MAC") from
 * link dev. */
static int rawd_connect(struct raw_ch *ch, const char *dev, const char *addr)
{
	memset(ch, 0, sizeof(*ch));
	ch->dpdk = true;
	ch->fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	if (ch->fd < 0)
		return -1;
	struct sockaddr_ll sl = {.sll_family = AF_PACKET,
				 .sll_protocol = htons(ETH_P_ALL),
				 .sll_ifindex = (int)if_nametoindex(dev)};
	struct timeval tv = {.tv_usec = 50000};
	setsockopt(ch->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (bind(ch->fd, (struct sockaddr *)&sl, sizeof(sl)) != 0 ||
	    twp_addr_parse(addr, &ch->peer, true, NULL) != 0 ||
	    twp_addr_parse("udp://10.0.0.99:40000/" RAWD_MAC, &ch->self, true,
			   NULL) != 0)
		return -1;
	memcpy(ch->local.mac, ch->self.mac, 6);
	ch->local.ip = ch->self.ip;
	ch->local.base_port = 40000;
	ch->local.nports = 1;
	ch->local.mss = RAWD_MSS;
	ch->sess = 0x00010001u;
	for (unsigned i = 0; i < TWP_NONCE_LEN; i++)
		ch->nonce[i] = (uint8_t)(h_now_ms() >> (i % 8) ^ i);
	uint8_t buf[2048];
	struct twp_pkt pk;
	for (int i = 0; i < 50; i++) {
		if (!rawd_ctl(ch, TWP_CONNECT, 0))
			return -1;
		if (!rawd_recv(ch, buf, sizeof(buf), &pk, 200))
			continue;
		if (pk.h.type == TWP_COOKIE && pk.h.dst_sess == ch->sess &&
		    pk.h.len == TWP_SETUP_LEN) {
			/* No session before we send its cookie back
			 * (docs/wire.md 8): the same CONNECT, with it. */
			struct twp_setup b;
			twp_setup_decode(pk.payload, &b);
			if (!twp_setup_verify(H_SECRET, strlen(H_SECRET), &pk.h,
					      &pk.src, &ch->self, &b,
					      ch->nonce))
				return -1;
			memcpy(ch->cookie, b.nonce, TWP_COOKIE_LEN);
			ch->has_cookie = true;
			continue;
		}
		if (pk.h.type == TWP_ACCEPT && pk.h.dst_sess == ch->sess) {
			/* the worker proves the secret too, bound to our
			 * nonce; its first packet number is its own */
			struct twp_setup b;
			if (pk.h.len != TWP_SETUP_LEN)
				return -1;
			twp_setup_decode(pk.payload, &b);
			if (!twp_setup_verify(H_SECRET, strlen(H_SECRET), &pk.h,
					      &pk.src, &ch->self, &b,
					      ch->nonce))
				return -1;
			ch->peer_sess = pk.h.src_sess;
			ch->rcv_next = b.isn;
			return 0;
		}
	}
	return -1;
}

/* One frame (it fits in one packet) as DATA. */
static bool rawd_send(struct raw_ch *ch, const void *frame, size_t n)
{
	if (n > RAWD_MSS)
		return false;
	struct twp_hdr h = {.type = TWP_DATA,
			    .dst_sess = ch->peer_sess,
			    .src_sess = ch->sess,
			    .seq = ch->snd_nxt++,
			    .ack = ch->rcv_next,
			    .msg = ch->msg++,
			    .len = (uint32_t)n,
			    .frame_len = n};
	ch->last_len = rawd_build(ch, ch->last, &h, frame);
	return send(ch->fd, ch->last, ch->last_len, 0) == (ssize_t)ch->last_len;
}

/* The next frame from the worker, in order, acknowledged; into a heap
 * buffer. */
static tw_status rawd_read(struct raw_ch *ch, tw_buf **out, size_t *len)
{
	uint8_t buf[2048];
	struct twp_pkt pk;
	uint64_t until = h_now_ms() + 20000;
	while (h_now_ms() < until) {
		if (!rawd_recv(ch, buf, sizeof(buf), &pk, 300)) {
			/* nothing: our frame or our ack may be lost */
			if (ch->last_len != 0)
				(void)!send(ch->fd, ch->last, ch->last_len, 0);
			rawd_ctl(ch, TWP_ACK, 0);
			continue;
		}
		if (pk.h.type == TWP_RESET || pk.h.src_sess != ch->peer_sess)
			return TW_EUNREACHABLE;
		if (pk.h.type == TWP_ACK) {
			if (pk.h.flags & TWP_F_ACK_REQ)
				rawd_ctl(ch, TWP_ACK, 0);
			continue;
		}
		if (pk.h.type != TWP_DATA)
			continue;
		if (pk.h.seq != ch->rcv_next) {
			rawd_ctl(ch, TWP_ACK,
				 0); /* old, or ahead: say where we are */
			continue;
		}
		ch->rcv_next++;
		rawd_ctl(ch, TWP_ACK, 0);
		if (pk.h.frame_off == 0) {
			free(ch->rx);
			ch->rx = malloc(pk.h.frame_len ? pk.h.frame_len : 1);
			if (ch->rx == NULL)
				return TW_ENOMEM;
			ch->rx_len = pk.h.frame_len;
			ch->rx_have = 0;
		}
		if (ch->rx == NULL || pk.h.frame_off != ch->rx_have ||
		    pk.h.frame_off + pk.h.len > ch->rx_len)
			return TW_EPROTO;
		memcpy(ch->rx + ch->rx_have, pk.payload, pk.h.len);
		ch->rx_have += pk.h.len;
		if (ch->rx_have < ch->rx_len)
			continue;
		ch->last_len = 0; /* answered: our frame arrived */
		tw_status st = tw_buf_alloc(ch->rx_len, out);
		*len = ch->rx_len;
		if (st == TW_OK)
			memcpy((*out)->data, ch->rx, ch->rx_len);
		free(ch->rx);
		ch->rx = NULL;
		return st;
	}
	return TW_ETIMEDOUT;
}
#endif

static bool raw_send(struct raw_ch *ch, const void *p, size_t n)
{
#if TW_HAVE_DPDK
	if (ch->dpdk)
		return rawd_send(ch, p, n);
#endif
	return raw_full(ch->fd, (void *)(uintptr_t)p, n, false);
}

static void raw_close(struct raw_ch *ch)
{
#if TW_HAVE_DPDK
	if (ch->dpdk) {
		rawd_ctl(ch, TWP_RESET, 0);
		free(ch->rx);
	}
#endif
	close(ch->fd);
}

/* Read one frame into a heap buffer and decode it in place into *m. */
static tw_status raw_read(struct raw_ch *ch, tw_in_msg *m)
{
	tw_buf *b;
	tw_status st;
#if TW_HAVE_DPDK
	if (ch->dpdk) {
		size_t len;
		st = rawd_read(ch, &b, &len);
		if (st != TW_OK)
			return st;
		st = tw_msg_decode(b, 0, len, NULL, NULL, m);
		tw_buf_release(b);
		return st;
	}
#endif
	int fd = ch->fd;
	unsigned char hdr[TW_FRAME_HDR_SIZE];
	if (!raw_full(fd, hdr, sizeof(hdr), true))
		return TW_EIO;
	tw_frame_hdr h;
	if (tw_frame_hdr_decode(hdr, NULL, &h) != TW_OK)
		return TW_EPROTO;
	if (tw_buf_alloc(h.total_len, &b) != TW_OK)
		return TW_ENOMEM;
	memcpy(b->data, hdr, sizeof(hdr));
	st = TW_EIO;
	if (raw_full(fd, (char *)b->data + sizeof(hdr),
		     h.total_len - sizeof(hdr), true))
		st = tw_msg_decode(b, 0, h.total_len, &h, NULL, m);
	tw_buf_release(b);
	return st;
}

static int raw_send_hdr_payload(struct raw_ch *ch, unsigned type, uint32_t src,
				uint32_t dst, uint64_t req, const void *payload,
				uint32_t plen)
{
	unsigned char frame[256];
	tw_frame_hdr h = {.version = TW_FRAME_VERSION,
			  .type = (uint8_t)type,
			  .req_id = req,
			  .src = src,
			  .dst = dst,
			  .payload_len = plen,
			  .total_len = TW_FRAME_HDR_SIZE + plen};
	tw_frame_hdr_encode(frame, &h);
	memcpy(frame + TW_FRAME_HDR_SIZE, payload, plen);
	return raw_send(ch, frame, TW_FRAME_HDR_SIZE + plen) ? 0 : -1;
}

/* Send value v as one frame of type. */
static bool raw_send_value(struct raw_ch *ch, unsigned type, uint32_t src,
			   uint32_t dst, const tw_value *v)
{
	tw_frame_hdr h = {.version = TW_FRAME_VERSION,
			  .type = (uint8_t)type,
			  .src = src,
			  .dst = dst};
	tw_out_msg om;
	unsigned char buf[512];
	if (tw_msg_encode(NULL, &h, v, &om) != TW_OK)
		return false;
	bool ok = om.total_len <= sizeof(buf);
	if (ok) {
		tw_out_msg_copy(&om, buf);
		ok = raw_send(ch, buf, om.total_len);
	}
	tw_out_msg_release(&om);
	return ok;
}

/* Open ch as worker self of the group (docs/wire.md 5.1): the worker
 * accepts nothing else first. */
static int raw_auth(struct h_worker *w, struct raw_ch *ch, uint32_t self,
		    uint32_t peer)
{
	struct auth_key k;
	W_ASSERT(w, auth_key_load(H_SECRET, NULL, &k) == TW_OK, "key");
	struct auth_hs hs;
	struct auth_msg hello, chal, proof;
	uint8_t body[AUTH_MSG_SIZE];
	auth_client_start(&hs, &k, AUTH_CTX_DATA, self, peer, &hello);
	auth_msg_encode(&hello, body);
	tw_value v = tw_value_bytes_borrow(body, sizeof(body));
	W_ASSERT(w, raw_send_value(ch, TW_MSG_AUTH, self, peer, &v), "hello");
	tw_in_msg m;
	W_ASSERT(w, raw_read(ch, &m) == TW_OK, "read challenge");
	const void *p = NULL;
	size_t n = 0;
	W_ASSERT(w,
		 m.hdr.type == TW_MSG_AUTH &&
			 tw_value_get_bytes(&m.payload, &p, &n) == TW_OK &&
			 auth_msg_decode(p, n, &chal) == TW_OK,
		 "challenge: type %u", m.hdr.type);
	tw_in_msg_release(&m);
	tw_status st = auth_client_challenge(&hs, &chal, &proof);
	auth_key_free(&k);
	W_ASSERT(w, st == TW_OK, "challenge: %s", tw_errmsg(st));
	auth_msg_encode(&proof, body);
	W_ASSERT(w, raw_send_value(ch, TW_MSG_AUTH, self, peer, &v), "proof");
	return 0;
}

/* The frames, sent and answered on ch. */
static int raw_frames(struct h_worker *w, struct raw_ch *ch, uint32_t self)
{
	tw_in_msg m;

	/* the handshake first: the worker accepts nothing else before it */
	if (raw_auth(w, ch, self, 0) != 0)
		return 1;

	/* garbage payload: EXCEPTION TW_EPROTO with the decoder's reason */
	unsigned char junk[16];
	memset(junk, 0xff, sizeof(junk));
	W_ASSERT(w,
		 raw_send_hdr_payload(ch, TW_MSG_CALL, self, 0, 77, junk,
				      sizeof(junk)) == 0,
		 "send");
	W_ASSERT(w, raw_read(ch, &m) == TW_OK, "read");
	W_ASSERT(w, m.hdr.type == TW_MSG_EXCEPTION && m.hdr.req_id == 77,
		 "exception");
	W_ASSERT(w, m.payload.u.err->kind == TW_EPROTO, "kind %d",
		 m.payload.u.err->kind);
	W_ASSERT(w, strstr(m.payload.u.err->msg, "malformed CALL") != NULL,
		 "%s", m.payload.u.err->msg);
	tw_in_msg_release(&m);

	/* another source than the connection's: refused */
	W_ASSERT(w,
		 raw_send_hdr_payload(ch, TW_MSG_CALL, 9, 0, 78, junk,
				      sizeof(junk)) == 0,
		 "send");
	W_ASSERT(w, raw_read(ch, &m) == TW_OK, "read");
	W_ASSERT(w, m.hdr.req_id == 78 && m.payload.u.err->kind == TW_EAUTH,
		 "src: kind %d", m.payload.u.err->kind);
	tw_in_msg_release(&m);

	/* an RRef fetch naming an RRef this worker does not own: refused */
	tw_frame_hdr h = {.version = TW_FRAME_VERSION,
			  .type = TW_MSG_RREF_FETCH_CALL,
			  .src = self,
			  .req_id = 79};
	tw_value rr;
	tw_rref_id id = {.owner = 0};
	tw_value_rref(&rr, &id);
	tw_out_msg om;
	W_ASSERT(w, tw_msg_encode(NULL, &h, &rr, &om) == TW_OK, "encode rref");
	unsigned char buf[512];
	W_ASSERT(w, om.total_len <= sizeof(buf), "small");
	tw_out_msg_copy(&om, buf);
	W_ASSERT(w, raw_send(ch, buf, om.total_len), "send");
	tw_out_msg_release(&om);
	tw_value_destroy(&rr);
	W_ASSERT(w, raw_read(ch, &m) == TW_OK, "read");
	W_ASSERT(w, m.hdr.req_id == 79 && m.payload.u.err->kind == TW_EINVAL,
		 "unknown rref: kind %d: %s", m.payload.u.err->kind,
		 m.payload.u.err->msg);
	W_ASSERT(w, strstr(m.payload.u.err->msg, "not its user") != NULL, "%s",
		 m.payload.u.err->msg);
	tw_in_msg_release(&m);

	/* a well-formed CALL from a hand-made client still works */
	tw_value items[3], args[2] = {tw_value_int(2), tw_value_int(3)};
	items[0] = H_STR("add");
	items[1] = H_TUPLE(args);
	tw_value_dict(&items[2], 0);
	tw_value call = H_TUPLE(items);
	h = (tw_frame_hdr){.version = TW_FRAME_VERSION,
			   .type = TW_MSG_CALL,
			   .src = self,
			   .req_id = 80};
	W_ASSERT(w, tw_msg_encode(NULL, &h, &call, &om) == TW_OK,
		 "encode call");
	tw_out_msg_copy(&om, buf);
	W_ASSERT(w, raw_send(ch, buf, om.total_len), "send");
	tw_out_msg_release(&om);
	tw_value_destroy(&items[2]);
	W_ASSERT(w, raw_read(ch, &m) == TW_OK, "read");
	W_ASSERT(w,
		 m.hdr.type == TW_MSG_RET && m.hdr.req_id == 80 &&
			 m.payload.u.i == 5,
		 "ret");
	tw_in_msg_release(&m);
	return 0;
}

/* Worker 0 serves; worker 1 is the hand-made client, with no agent: it
 * joins the rendezvous (with its raw endpoint over DPDK, since a worker
 * takes sessions from announced members only), then talks to worker 0
 * as member 1 (a HELLO claiming worker 0's own id is refused). */
static int w_raw(struct h_worker *w)
{
	if (w->rank == 1) {
		struct tw_agent_opts o;
		h_opts(&o, w);
		struct rdv_member self = {.rank = 1, .nloops = 1}, *mem = NULL;
		char addr[1][TW_ADDR_MAX] = {"tcp://127.0.0.1:9"};
#if TW_HAVE_DPDK
		if (h_dpdk())
			snprintf(addr[0], sizeof(addr[0]), "%s", RAWD_ADDR);
#endif
		snprintf(self.name, sizeof(self.name), "%s", o.name);
		self.addrs = addr;
		struct rdv_client *rdv = NULL;
		struct auth_key key;
		W_ASSERT(w,
			 auth_key_load(o.secret, o.secret_file, &key) == TW_OK,
			 "secret");
		W_ASSERT(w,
			 rdv_join(o.rendezvous, &key, &self, 2, 30000, &rdv,
				  &mem) == TW_OK,
			 "join");
		rdv_members_free(mem, 2);
		W_ASSERT(w, h_wait_all(w->sh->flag, 1, -1, 30000),
			 "w0 never served");
		struct raw_ch ch;
#if TW_HAVE_DPDK
		if (h_dpdk())
			W_ASSERT(w,
				 rawd_connect(&ch, h_net_cur->wend[1],
					      w->sh->msg[0]) == 0,
				 "no session with %s", w->sh->msg[0]);
		else
#endif
			W_ASSERT(w, raw_connect(&ch, w->sh->msg[0]) == 0,
				 "connect %s", w->sh->msg[0]);
		int rc = raw_frames(w, &ch, 1);
		raw_close(&ch);
		atomic_store(&w->sh->flag[1], 1);
		/* w0's graceful shutdown waits for every member */
		if (rc == 0)
			W_ASSERT(w, rdv_barrier(rdv, 30000) == TW_OK,
				 "barrier");
		rdv_client_close(rdv);
		auth_key_free(&key);
		return rc;
	}
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.world_size = w->world;
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	tw_worker_info me;
	tw_agent_self(a, &me);
	snprintf(w->sh->msg[0], sizeof(w->sh->msg[0]), "%s", me.addr);
	atomic_store(&w->sh->flag[0], 1);
	W_ASSERT(w, h_wait_all(&w->sh->flag[1], 1, -1, 30000),
		 "w1 never finished");
	struct tw_agent_stats s;
	tw_agent_get_stats(a, &s);
	W_ASSERT(w, s.bad_frames >= 1, "bad frames counted: %" PRIu64,
		 s.bad_frames);
	W_ASSERT(w, s.spoofed_frames == 1 && s.auth_ok == 1,
		 "spoofed %" PRIu64 ", authenticated %" PRIu64,
		 s.spoofed_frames, s.auth_ok);
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

Test(protocol, malformed_frames_get_reasons, .timeout = 60)
{
	h_run_group(2, w_raw, NULL, NULL, 0);
}
