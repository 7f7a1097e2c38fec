/* Remote references (rpc/rref.c) on the fake net: tw_remote to a peer and
 * to self, to_here, creation errors and timeouts, release and the user
 * delete, the owner freeing its value, and control messages held,
 * reordered, duplicated and dropped (docs/rref.md: G1, G2). */
#include "rpc/rref.h"
#include "tests/unit/rpc/fake_world.h"

static struct tw_rref_stats rstats(uint32_t i)
{
	struct tw_rref_stats s;
	tw_agent_rref_stats(W.ag[i], &s);
	return s;
}

static tw_rref *remote_int(uint32_t from, const char *to, const char *fn,
			   int64_t v, int64_t timeout_ms)
{
	tw_value args = int_args(v);
	tw_rref *r = NULL;
	tw_agent_fake_enter(W.ag[from]);
	tw_status st = tw_remote(W.ag[from], to, fn, &args, NULL, timeout_ms,
				 &r);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	tw_value_destroy(&args);
	return r;
}

static tw_future *fetch(tw_rref *r, int64_t timeout_ms)
{
	tw_future *f = NULL;
	tw_status st = tw_rref_to_here_async(r, timeout_ms, &f);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	return f;
}

/* Every table of every agent empty: nothing owned, used or pending. */
static void assert_clean(void)
{
	for (uint32_t i = 0; i < W.n; i++) {
		struct tw_rref_stats s = rstats(i);
		cr_assert_eq(s.owned, 0, "%s owns %llu", names[i],
			     (unsigned long long)s.owned);
		cr_assert_eq(s.owner_users, 0, "%s", names[i]);
		cr_assert_eq(s.forks_pending, 0, "%s", names[i]);
		cr_assert_eq(s.users, 0, "%s", names[i]);
		cr_assert_eq(s.pending_users, 0, "%s", names[i]);
		cr_assert_eq(s.waiting, 0, "%s", names[i]);
	}
}

Test(rref, remote_to_peer_then_to_here_then_release)
{
	world_up(2, NULL);
	tw_rref *r = remote_int(0, "B", "t::inc", 41, 1000);
	cr_assert_not(tw_rref_is_owner(r));
	cr_assert_not(tw_rref_confirmed_by_owner(r));
	cr_assert_str_eq(tw_rref_owner_name(r), "B");
	tw_worker_info wi;
	cr_assert_eq(tw_rref_owner(r, &wi), TW_OK);
	cr_assert_eq(wi.id, 1);
	tw_rref_id id = tw_rref_get_id(r);
	cr_assert_eq(id.owner, 1);
	cr_assert_eq(id.rref.created_on, 0);
	cr_assert(id.fork.created_on == id.rref.created_on &&
		  id.fork.local_id == id.rref.local_id);
	cr_assert_eq(rstats(0).users, 1);
	cr_assert_eq(rstats(0).pending_users, 1);

	settle();
	cr_assert(tw_rref_confirmed_by_owner(r));
	cr_assert_eq(W.k[1].inc, 1, "the function ran once, on B");
	uint32_t nu = 0, nf = 9;
	bool sf = true;
	cr_assert_eq(tw_agent_rref_value_users(W.ag[1], id.rref, &nu, &nf, &sf),
		     TW_OK);
	cr_assert(nu == 1 && nf == 0 && !sf);
	cr_assert_eq(tw_agent_rref_value_users(W.ag[0], id.rref, &nu, &nf, &sf),
		     TW_ENOENT, "A owns nothing");
	struct tw_rref_stats sa = rstats(0), sb = rstats(1);
	cr_assert_eq(sa.pending_users, 0);
	cr_assert_eq(sb.owned, 1);
	cr_assert_eq(sb.owner_users, 1);

	/* A user cannot read the value in place. */
	const tw_value *lv = (const tw_value *)1;
	cr_assert_eq(tw_rref_local_value(r, &lv), TW_EINVAL);
	cr_assert_null(lv);
	cr_assert(strstr(tw_errmsg(TW_EINVAL), "owned by worker 'B'"));

	tw_future *f = fetch(r, 1000);
	settle();
	cr_assert_eq(result_int(f), 42);
	tw_future_release(f);
	/* Fetched twice: the value stays on the owner until released. */
	f = fetch(r, 1000);
	settle();
	cr_assert_eq(result_int(f), 42);
	tw_future_release(f);
	cr_assert_eq(W.k[1].inc, 1);

	tw_rref_release(r);
	settle();
	cr_assert_eq(tw_agent_rref_value_users(W.ag[1], id.rref, &nu, &nf, &sf),
		     TW_ENOENT, "freed");
	sa = rstats(0);
	sb = rstats(1);
	cr_assert_eq(sa.deletes_sent, 1);
	cr_assert_eq(sb.deletes_received, 1);
	cr_assert_eq(sb.refused, 0);
	assert_clean();
	world_down(true);
}

Test(rref, remote_to_self_takes_no_network)
{
	world_up(2, NULL);
	struct tw_fake_net_stats n0 = net_stats();
	tw_rref *r = remote_int(0, "A", "t::inc", 1, 1000);
	cr_assert(tw_rref_is_owner(r));
	cr_assert(tw_rref_confirmed_by_owner(r));
	cr_assert_eq(rstats(0).owned, 1);
	cr_assert_eq(rstats(0).users, 0, "the owner's handle is no user");
	const tw_value *lv;
	/* The function runs on A's loop: not yet. */
	cr_assert_eq(tw_rref_local_value(r, &lv), TW_EBUSY);
	/* to_here on the owner's thread polls its loop until the value. */
	tw_value v, err;
	tw_agent_fake_enter(W.ag[0]);
	tw_status st = tw_rref_to_here(r, 1000, &v, &err);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	int64_t n = 0;
	cr_assert_eq(tw_value_get_int(&v, &n), TW_OK);
	cr_assert_eq(n, 2);
	tw_value_destroy(&v);
	cr_assert_eq(tw_rref_local_value(r, &lv), TW_OK);
	cr_assert_eq(tw_value_get_int(lv, &n), TW_OK);
	cr_assert_eq(n, 2);
	settle();
	cr_assert_eq(net_stats().sent, n0.sent, "no frame for a self remote");

	/* Retained twice: only the last release frees the value. */
	tw_rref_retain(r);
	tw_rref_release(r);
	cr_assert_eq(rstats(0).owned, 1);
	tw_rref_release(r);
	assert_clean();
	world_down(true);
}

Test(rref, self_remote_released_before_the_function_ran)
{
	world_up(1, NULL);
	tw_rref *r = remote_int(0, "A", "t::inc", 1, 1000);
	tw_rref_release(r);
	cr_assert_eq(rstats(0).owned, 1, "kept while its function runs");
	settle();
	cr_assert_eq(W.k[0].inc, 1);
	assert_clean();
	world_down(true);
}

Test(rref, creation_error_comes_out_of_to_here)
{
	world_up(2, NULL);
	tw_rref *r = remote_int(0, "B", "t::nope", 1, 1000);
	tw_rref *r2 = remote_int(0, "B", "t::bare", 1, 1000);
	settle();
	/* Created (the owner holds the error as its value), so confirmed. */
	cr_assert(tw_rref_confirmed_by_owner(r));
	tw_future *f = fetch(r, 1000), *f2 = fetch(r2, 1000);
	settle();
	const tw_error *e = failure(f, TW_ENOFUNC);
	cr_assert_eq(e->origin, 1);
	cr_assert(strstr(e->msg, "unknown function 't::nope' on worker 'B'"),
		  "%s", e->msg);
	e = failure(f2, TW_EVALUE);
	cr_assert_eq(e->origin, 1);
	tw_future_release(f);
	tw_future_release(f2);

	tw_rref_release(r);
	tw_rref_release(r2);
	settle();
	assert_clean();
	world_down(true);
}

Test(rref, self_creation_error_from_local_value_and_to_here)
{
	world_up(1, NULL);
	tw_rref *r = remote_int(0, "A", "t::nope", 1, 1000);
	settle();
	const tw_value *lv;
	cr_assert_eq(tw_rref_local_value(r, &lv), TW_ENOFUNC);
	tw_value v, err;
	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(tw_rref_to_here(r, 1000, &v, &err), TW_ENOFUNC);
	cr_assert_eq(err.kind, TW_KIND_ERROR);
	cr_assert_eq(err.u.err->kind, TW_ENOFUNC);
	tw_value_destroy(&err);
	tw_rref_release(r);
	assert_clean();
	world_down(true);
}

Test(rref, fetch_waits_for_a_function_still_running)
{
	world_up(2, NULL);
	atomic_store(&block_gate, 0);
	atomic_store(&block_runs, 0);
	tw_rref *r = remote_int(0, "B", "t::block", 7, 0);
	POLL_UNTIL(atomic_load(&block_runs) == 1);
	tw_future *f = fetch(r, 0);
	tw_future *pf = NULL;
	cr_assert_eq(tw_rref_rpc_async(r, "t::inc", NULL, NULL, 0, &pf), TW_OK);
	settle();
	cr_assert_not(tw_future_done(f), "parked on the owner");
	cr_assert_eq(rstats(1).waiting, 2, "the fetch and the proxy call");
	atomic_store(&block_gate, 1);
	POLL_UNTIL(tw_future_done(f));
	cr_assert_eq(result_int(f), 7);
	POLL_UNTIL(tw_future_done(pf));
	cr_assert_eq(result_int(pf), 8);
	tw_future_release(f);
	tw_future_release(pf);
	tw_rref_release(r);
	settle();
	assert_clean();
	world_down(true);
}

Test(rref, creation_timeout_reads_as_torch_says)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, B_ADDR, true), TW_OK);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 100);
	tw_future *f = fetch(r, 1000);
	settle();
	cr_assert_not(tw_future_done(f), "waits for the creation");
	advance(100 * MS);
	const tw_error *e = failure(f, TW_ETIMEDOUT);
	cr_assert_str_eq(e->msg, TW_RREF_CREATION_TIMEOUT_MSG);
	cr_assert_not(tw_rref_confirmed_by_owner(r));
	cr_assert_eq(rstats(0).pending_users, 0);
	tw_future_release(f);
	/* The creation may still reach the owner: its release tells it. */
	tw_rref_release(r);
	cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, B_ADDR, false), TW_OK);
	settle();
	cr_assert_eq(W.k[1].inc, 1, "the REMOTE_CALL arrived late and ran");
	cr_assert_eq(rstats(1).deletes_received, 1,
		     "the delete after it freed the value");
	assert_clean();
	world_down(true);
}

Test(rref, owner_unreachable_fails_to_here)
{
	world_up(2, NULL);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 1000);
	settle();
	cr_assert_eq(tw_fake_net_set_down(W.net, B_ADDR, true), TW_OK);
	tw_future *f = fetch(r, 1000);
	settle();
	failure(f, TW_EUNREACHABLE);
	tw_future_release(f);
	tw_rref_release(r);
	settle();
	cr_assert_eq(rstats(0).users, 0);
	cr_assert_eq(tw_fake_net_set_down(W.net, B_ADDR, false), TW_OK);
	world_down(false);
}

/* G1: a user released before the owner confirmed it sends its delete only
 * after the confirmation, so the owner never sees a delete of a user it
 * does not know. */
Test(rref, release_before_confirmation_deletes_after_it)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 0);
	settle();
	cr_assert_eq(rstats(1).owned, 1);
	tw_rref_release(r);
	settle();
	cr_assert_eq(rstats(0).users, 1, "kept until confirmed");
	cr_assert_eq(rstats(0).deletes_sent, 0);
	cr_assert_eq(rstats(1).owned, 1);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, false), TW_OK);
	settle();
	cr_assert_eq(rstats(0).deletes_sent, 1);
	cr_assert_eq(rstats(1).refused, 0);
	assert_clean();
	world_down(true);
}

Test(rref, duplicated_delete_is_acked_and_changes_nothing)
{
	world_up(2, NULL);
	tw_rref *r1 = remote_int(0, "B", "t::inc", 1, 0);
	tw_rref *r2 = remote_int(0, "B", "t::inc", 2, 0);
	settle();
	cr_assert_eq(rstats(1).owned, 2);
	cr_assert_eq(tw_fake_net_dup_next(W.net, A_ADDR, B_ADDR,
					  TW_MSG_RREF_USER_DELETE),
		     TW_OK);
	tw_rref_release(r1);
	settle();
	struct tw_rref_stats sb = rstats(1);
	cr_assert_eq(net_stats().duplicated, 1);
	cr_assert_eq(sb.deletes_received, 1);
	cr_assert_eq(sb.refused, 1, "the copy names a fork already gone");
	cr_assert_eq(sb.owned, 1, "the other value is untouched");
	tw_future *f = fetch(r2, 0);
	settle();
	cr_assert_eq(result_int(f), 3);
	tw_future_release(f);
	tw_rref_release(r2);
	settle();
	assert_clean();
	world_down(true);
}

Test(rref, lost_delete_is_sent_again)
{
	world_up(2, NULL);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 0);
	settle();
	cr_assert_eq(tw_fake_net_drop_next(W.net, A_ADDR, B_ADDR,
					   TW_MSG_RREF_USER_DELETE),
		     TW_OK);
	tw_rref_release(r);
	settle();
	cr_assert_eq(rstats(1).owned, 1, "the delete was lost");
	advance(RREF_CTL_TIMEOUT_MS * MS);
	cr_assert_eq(rstats(1).owned, 0, "its retry freed the value");
	cr_assert_eq(rstats(1).deletes_received, 1);
	assert_clean();
	world_down(true);
}

Test(rref, lost_ack_makes_a_harmless_second_delete)
{
	world_up(2, NULL);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 0);
	settle();
	cr_assert_eq(tw_fake_net_drop_next(W.net, B_ADDR, A_ADDR, TW_MSG_ACK),
		     TW_OK);
	tw_rref_release(r);
	settle();
	cr_assert_eq(rstats(1).owned, 0);
	advance(RREF_CTL_TIMEOUT_MS * MS);
	cr_assert_eq(rstats(1).deletes_received, 1);
	cr_assert_eq(rstats(1).refused, 1, "the retry found nothing to do");
	cr_assert_eq(tw_agent_outstanding(W.ag[0]), 0, "and was acked");
	assert_clean();
	world_down(true);
}

Test(rref, duplicated_remote_call_runs_once)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_dup_next(W.net, A_ADDR, B_ADDR,
					  TW_MSG_REMOTE_CALL),
		     TW_OK);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 0);
	settle();
	cr_assert_eq(W.k[1].inc, 1);
	cr_assert_eq(rstats(1).owned, 1);
	cr_assert_eq(rstats(1).owner_users, 1);
	cr_assert_geq(stats(0).late_responses, 1, "the second REMOTE_RET");
	tw_rref_release(r);
	settle();
	assert_clean();
	world_down(true);
}

Test(rref, many_users_of_many_values_leave_nothing)
{
	world_up(3, NULL);
	tw_rref *r[64];
	for (int i = 0; i < 64; i++)
		r[i] = remote_int((uint32_t)i % 3, names[(i / 3) % 3], "t::inc",
				  i, 0);
	settle();
	for (int i = 0; i < 64; i++) {
		tw_future *f = fetch(r[i], 0);
		settle();
		cr_assert_eq(result_int(f), i + 1);
		tw_future_release(f);
	}
	for (int i = 63; i >= 0; i--)
		tw_rref_release(r[i]);
	settle();
	assert_clean();
	world_down(true);
}

/* ---- what a peer may not do ------------------------------------------------ */

static tw_future *ctl(uint32_t from, uint32_t to, uint8_t type, uint8_t rtype,
		      tw_rref_id id)
{
	tw_value v = {.kind = TW_KIND_RREF, .u.rref = &id};
	tw_future *f = NULL;
	tw_agent_fake_enter(W.ag[from]);
	tw_status st = call_ctl_async(W.ag[from], to, type, rtype, &v, 1000,
				      &f);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	return f;
}

Test(rref, foreign_and_unknown_ids_are_refused)
{
	world_up(3, NULL);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 0);
	settle();
	tw_rref_id id = tw_rref_get_id(r);

	/* C fetches A's user of B's value: C is not that user. */
	tw_future *f = ctl(2, 1, TW_MSG_RREF_FETCH_CALL, TW_MSG_RREF_FETCH_RET,
			   id);
	settle();
	const tw_error *e = failure(f, TW_EINVAL);
	cr_assert(strstr(e->msg, "not its user"), "%s", e->msg);
	tw_future_release(f);
	/* Nor may C delete it. */
	f = ctl(2, 1, TW_MSG_RREF_USER_DELETE, TW_MSG_ACK, id);
	settle();
	e = failure(f, TW_EINVAL);
	cr_assert(strstr(e->msg, "which worker 'A' holds"), "%s", e->msg);
	tw_future_release(f);
	/* A value B does not own. */
	tw_rref_id other = id;
	other.owner = 2;
	f = ctl(0, 1, TW_MSG_RREF_USER_DELETE, TW_MSG_ACK, other);
	settle();
	e = failure(f, TW_EINVAL);
	cr_assert(strstr(e->msg, "not owned by worker 'B'"), "%s", e->msg);
	tw_future_release(f);
	/* An unknown RRef: a delete is acked, a fetch refused. */
	tw_rref_id unk = id;
	unk.rref.local_id += 1000;
	unk.fork = unk.rref;
	f = ctl(0, 1, TW_MSG_RREF_USER_DELETE, TW_MSG_ACK, unk);
	settle();
	cr_assert_eq(tw_future_status(f), TW_OK);
	tw_future_release(f);
	f = ctl(0, 1, TW_MSG_RREF_FETCH_CALL, TW_MSG_RREF_FETCH_RET, unk);
	settle();
	failure(f, TW_EINVAL);
	tw_future_release(f);
	/* C accepts a fork it was not sent (A's own). */
	f = ctl(2, 1, TW_MSG_RREF_CHILD_ACCEPT, TW_MSG_ACK, id);
	settle();
	e = failure(f, TW_EINVAL);
	cr_assert(strstr(e->msg, "did not send it"), "%s", e->msg);
	tw_future_release(f);
	/* A fork request for an RRef B does not own, and one whose fork
	 * its named parent did not make. */
	tw_value items[2] = {{.kind = TW_KIND_RREF, .u.rref = &unk},
			     tw_value_int(0)};
	tw_value fr = {.kind = TW_KIND_TUPLE, .len = 2, .u.items = items};
	tw_agent_fake_enter(W.ag[2]);
	cr_assert_eq(call_ctl_async(W.ag[2], 1, TW_MSG_RREF_FORK_REQUEST,
				    TW_MSG_ACK, &fr, 1000, &f),
		     TW_OK);
	settle();
	e = failure(f, TW_EINVAL);
	cr_assert(strstr(e->msg, "does not own"), "%s", e->msg);
	tw_future_release(f);
	tw_rref_id forged = id;
	forged.fork.local_id += 77;
	items[0].u.rref = &forged;
	items[1] = tw_value_int(1);
	cr_assert_eq(call_ctl_async(W.ag[2], 1, TW_MSG_RREF_FORK_REQUEST,
				    TW_MSG_ACK, &fr, 1000, &f),
		     TW_OK);
	settle();
	e = failure(f, TW_EINVAL);
	cr_assert(strstr(e->msg, "its parent did not make"), "%s", e->msg);
	tw_future_release(f);
	cr_assert_eq(rstats(1).refused, 8);
	cr_assert_eq(rstats(1).owned, 1, "the real value is untouched");

	f = fetch(r, 0);
	settle();
	cr_assert_eq(result_int(f), 2);
	tw_future_release(f);
	tw_rref_release(r);
	settle();
	assert_clean();
	world_down(true);
}

Test(rref, remote_call_naming_another_creator_is_refused)
{
	world_up(3, NULL);
	/* A REMOTE_CALL from A claiming C created the RRef. */
	tw_rref_id id = {.owner = 1,
			 .rref = {.created_on = 2, .local_id = 5},
			 .fork = {.created_on = 2, .local_id = 5}};
	tw_value items[4] = {tw_value_string_borrow("t::inc", 6),
			     {.kind = TW_KIND_TUPLE},
			     {.kind = TW_KIND_DICT},
			     {.kind = TW_KIND_RREF, .u.rref = &id}};
	tw_value pl = {.kind = TW_KIND_TUPLE, .len = 4, .u.items = items};
	tw_future *f = NULL;
	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(call_ctl_async(W.ag[0], 1, TW_MSG_REMOTE_CALL,
				    TW_MSG_REMOTE_RET, &pl, 1000, &f),
		     TW_OK);
	settle();
	const tw_error *e = failure(f, TW_EINVAL);
	cr_assert(strstr(e->msg, "created by its caller"), "%s", e->msg);
	tw_future_release(f);
	cr_assert_eq(W.k[1].inc, 0);
	assert_clean();
	world_down(true);
}

Test(rref, immediate_refusals)
{
	world_up(2, NULL);
	tw_rref *r = (tw_rref *)1;
	cr_assert_eq(tw_remote(W.ag[0], "C", "t::inc", NULL, NULL, 0, &r),
		     TW_ENOENT);
	cr_assert_null(r);
	cr_assert_eq(tw_remote(W.ag[0], "B", "", NULL, NULL, 0, &r), TW_EINVAL);
	tw_value s = tw_value_int(1);
	cr_assert_eq(tw_remote(W.ag[0], "B", "t::inc", &s, NULL, 0, &r),
		     TW_EINVAL);
	cr_assert_eq(tw_remote_id(W.ag[0], 9, "t::inc", NULL, NULL, 0, &r),
		     TW_ENOENT);
	assert_clean();
	world_down(true);
}

/* ---- proxies: fn(value, ...) on the owner ------------------------------------ */

static tw_future *proxy(tw_rref *r, const char *fn)
{
	tw_future *f = NULL;
	tw_status st = tw_rref_rpc_async(r, fn, NULL, NULL, 1000, &f);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	return f;
}

Test(rref, rpc_async_proxy_runs_on_the_owner_with_the_value_first)
{
	world_up(2, NULL);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 0);
	/* Asked before the confirmation: it waits for it. */
	tw_future *f = proxy(r, "t::inc");
	/* Released at once: the call holds it until answered. */
	tw_rref_release(r);
	settle();
	cr_assert_eq(result_int(f), 3);
	cr_assert_eq(W.k[1].inc, 2, "both ran on B");
	cr_assert_eq(W.k[0].inc, 0);
	tw_future_release(f);
	assert_clean();
	world_down(true);
}

Test(rref, proxies_of_an_owner_handle_stay_local)
{
	world_up(2, NULL);
	tw_rref *r = remote_int(0, "A", "t::inc", 1, 0);
	struct tw_fake_net_stats n0 = net_stats();
	tw_future *f = proxy(r, "t::inc");
	tw_rref *r2 = NULL;
	cr_assert_eq(tw_rref_remote(r, "t::inc", NULL, NULL, 0, &r2), TW_OK);
	cr_assert(tw_rref_is_owner(r2));
	tw_rref_release(r);
	settle();
	cr_assert_eq(result_int(f), 3);
	tw_future_release(f);
	f = fetch(r2, 0);
	settle();
	cr_assert_eq(result_int(f), 3);
	tw_future_release(f);
	cr_assert_eq(net_stats().sent, n0.sent);
	tw_rref_release(r2);
	assert_clean();
	world_down(true);
}

Test(rref, remote_proxy_makes_a_new_rref_on_the_owner)
{
	world_up(2, NULL);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 0);
	tw_rref *r2 = NULL;
	cr_assert_eq(tw_rref_remote(r, "t::inc", NULL, NULL, 0, &r2), TW_OK);
	cr_assert_str_eq(tw_rref_owner_name(r2), "B");
	tw_rref_release(r);
	settle();
	cr_assert_eq(rstats(1).owned, 1, "r freed, its successor kept");
	tw_future *f = fetch(r2, 0);
	settle();
	cr_assert_eq(result_int(f), 3);
	tw_future_release(f);
	tw_rref_release(r2);
	settle();
	assert_clean();
	world_down(true);
}

Test(rref, proxy_errors)
{
	world_up(3, NULL);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 0);
	tw_rref *bad = remote_int(0, "B", "t::bare", 1, 0);
	tw_future *f1 = proxy(r, "t::nope"), *f2 = proxy(bad, "t::inc");
	settle();
	const tw_error *e = failure(f1, TW_ENOFUNC);
	cr_assert_eq(e->origin, 1);
	failure(f2, TW_EVALUE);
	tw_future_release(f1);
	tw_future_release(f2);

	/* C is not r's holder: B refuses to read it for C. */
	tw_rref_id id = tw_rref_get_id(r);
	tw_value items[4] = {{.kind = TW_KIND_RREF, .u.rref = &id},
			     tw_value_string_borrow("t::echo", 7),
			     {.kind = TW_KIND_TUPLE},
			     {.kind = TW_KIND_DICT}};
	tw_value a4 = {.kind = TW_KIND_TUPLE, .len = 4, .u.items = items};
	tw_future *f = NULL;
	tw_agent_fake_enter(W.ag[2]);
	cr_assert_eq(tw_rpc_async(W.ag[2], "B", TW_RREF_CALL_FN, &a4, NULL,
				  1000, &f),
		     TW_OK);
	tw_rref *r3 = NULL;
	cr_assert_eq(tw_remote(W.ag[2], "B", TW_RREF_CALL_FN, &a4, NULL, 1000,
			       &r3),
		     TW_OK);
	settle();
	e = failure(f, TW_EINVAL);
	cr_assert(strstr(e->msg, "not its RRef"), "%s", e->msg);
	tw_future_release(f);
	f = fetch(r3, 0);
	settle();
	failure(f, TW_EINVAL);
	tw_future_release(f);
	tw_rref_release(r3);
	/* A creation that timed out fails the proxy as to_here. */
	cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, C_ADDR, true), TW_OK);
	tw_rref *lost = remote_int(0, "C", "t::inc", 1, 100);
	f = proxy(lost, "t::inc");
	advance(100 * MS);
	e = failure(f, TW_ETIMEDOUT);
	cr_assert_str_eq(e->msg, TW_RREF_CREATION_TIMEOUT_MSG);
	tw_future_release(f);
	tw_rref_release(lost);
	cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, C_ADDR, false), TW_OK);

	tw_rref_release(r);
	tw_rref_release(bad);
	settle();
	assert_clean();
	world_down(true);
}

/* ---- shutdown ---------------------------------------------------------------- */

Test(rref, graceful_shutdown_deletes_held_users_and_reports_them)
{
	world_up(2, NULL);
	tw_rref *r1 = remote_int(0, "B", "t::inc", 1, 0);
	tw_rref *r2 = remote_int(0, "B", "t::inc", 2, 0);
	tw_rref *mine = remote_int(0, "A", "t::inc", 3, 0);
	tw_rref *gone = remote_int(0, "B", "t::inc", 4, 0);
	tw_rref_release(gone);
	settle();
	cr_assert_eq(rstats(1).owned, 2);
	tw_agent_fake_enter(W.ag[0]);
	tw_status st = tw_agent_shutdown(W.ag[0], true);
	cr_assert_eq(st, TW_ERUNTIME);
	const char *why = tw_errmsg(st);
	cr_assert(strstr(why, "holding 2 user RRefs") != NULL, "%s", why);
	cr_assert(strstr(why, "on 'B'") != NULL, "%s", why);
	W.ag[0] = NULL;
	settle();
	cr_assert_eq(rstats(1).owned, 0, "deleted at A's shutdown");
	cr_assert_eq(rstats(1).deletes_received, 3);
	/* Still releasable, and they tell nobody again. */
	tw_rref_release(r1);
	tw_rref_release(r2);
	tw_rref_release(mine);
	settle();
	cr_assert_eq(rstats(1).refused, 0);
	world_down(true);
}

static void quiet(uint32_t rank, struct tw_agent_opts *o)
{
	(void)rank;
	o->ignore_rref_leak = true;
}

Test(rref, ignore_rref_leak_shuts_down_quietly)
{
	world_up(2, quiet);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 0);
	settle();
	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(tw_agent_shutdown(W.ag[0], true), TW_OK);
	W.ag[0] = NULL;
	settle();
	cr_assert_eq(rstats(1).owned, 0);
	tw_rref_release(r);
	world_down(true);
}

Test(rref, user_confirmed_during_shutdown_is_deleted_then)
{
	world_up(2, NULL);
	W.drive_step = MS;
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 0);
	settle();
	cr_assert_eq(rstats(1).owned, 1);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, false), TW_OK);
	/* The REMOTE_RET arrives while A shuts down. */
	tw_agent_fake_enter(W.ag[0]);
	tw_status st = tw_agent_shutdown(W.ag[0], true);
	cr_assert_eq(st, TW_ERUNTIME, "%s", tw_errmsg(st));
	W.ag[0] = NULL;
	settle();
	cr_assert_eq(rstats(1).owned, 0);
	tw_rref_release(r);
	world_down(true);
}

Test(rref, abrupt_shutdown_leaves_handles_releasable)
{
	world_up(2, NULL);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 0);
	tw_rref *s = remote_int(0, "A", "t::inc", 1, 0);
	settle();
	agent_down(0, false);
	tw_rref_release(r);
	tw_rref_release(s);
	world_down(true);
}

/* remote + to_here is one round trip: the fetch leaves right behind the
 * REMOTE_CALL, on the same connection, and the owner reads it after. */
Test(rref, fetch_follows_the_remote_call_without_waiting)
{
	world_up(2, NULL);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 0);
	tw_future *f = fetch(r, 0);
	poll_one(0);
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), 2,
		     "REMOTE_CALL and RREF_FETCH_CALL both on the wire");
	cr_assert_not(tw_rref_confirmed_by_owner(r));
	/* B: creates, confirms, parks the fetch; its call to self then
	 * answers it. */
	settle();
	cr_assert_eq(result_int(f), 2);
	cr_assert(tw_rref_confirmed_by_owner(r));
	tw_future_release(f);
	tw_rref_release(r);
	settle();
	assert_clean();
	world_down(true);
}

/* The REMOTE_CALL lost: the fetch behind it finds no RRef on the owner
 * and waits for the creation's outcome, which says why. */
Test(rref, lost_remote_call_reports_the_creation_timeout)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_drop_next(W.net, A_ADDR, B_ADDR,
					   TW_MSG_REMOTE_CALL),
		     TW_OK);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 100);
	tw_future *f = fetch(r, 0);
	settle();
	cr_assert_eq(rstats(1).refused, 1, "the fetch found nothing");
	cr_assert_not(tw_future_done(f), "and waits for the creation");
	advance(100 * MS);
	const tw_error *e = failure(f, TW_ETIMEDOUT);
	cr_assert_str_eq(e->msg, TW_RREF_CREATION_TIMEOUT_MSG);
	tw_future_release(f);
	tw_rref_release(r);
	settle();
	cr_assert_eq(rstats(1).refused, 2, "then the delete, acknowledged");
	assert_clean();
	world_down(true);
}

/* Reordered: the fetch reaches the owner before its REMOTE_CALL. The owner
 * refuses it (no such RRef yet), the user sends it again once confirmed:
 * to_here still gets the value. */
Test(rref, fetch_overtaking_its_remote_call_is_sent_again)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, B_ADDR, true), TW_OK);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 0);
	tw_future *f = fetch(r, 0);
	settle();
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), 2);
	cr_assert_eq(tw_fake_net_reverse(W.net, A_ADDR, B_ADDR), 2);
	cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, B_ADDR, false), TW_OK);
	settle();
	cr_assert_eq(rstats(1).refused, 1, "the first fetch");
	cr_assert_eq(result_int(f), 2);
	tw_future_release(f);
	tw_rref_release(r);
	settle();
	assert_clean();
	world_down(true);
}

/* Every control message of a remote, a fetch and a delete duplicated:
 * nothing runs twice, nothing is freed early, nothing leaks (G1, G2). */
Test(rref, duplicated_control_messages_change_nothing)
{
	world_up(2, NULL);
	const uint8_t types[] = {TW_MSG_REMOTE_CALL, TW_MSG_RREF_FETCH_CALL,
				 TW_MSG_RREF_USER_DELETE};
	for (size_t i = 0; i < sizeof(types); i++)
		cr_assert_eq(tw_fake_net_dup_next(W.net, A_ADDR, B_ADDR,
						  types[i]),
			     TW_OK);
	const uint8_t answers[] = {TW_MSG_REMOTE_RET, TW_MSG_RREF_FETCH_RET,
				   TW_MSG_ACK};
	for (size_t i = 0; i < sizeof(answers); i++)
		cr_assert_eq(tw_fake_net_dup_next(W.net, B_ADDR, A_ADDR,
						  answers[i]),
			     TW_OK);
	tw_rref *keep = remote_int(0, "B", "t::inc", 10, 0);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 0);
	tw_future *f = fetch(r, 0);
	settle();
	cr_assert_eq(result_int(f), 2);
	tw_future_release(f);
	cr_assert_eq(W.k[1].inc, 2, "each function ran once");
	tw_rref_release(r);
	settle();
	struct tw_rref_stats sb = rstats(1);
	cr_assert_eq(sb.owned, 1, "only the released value went");
	cr_assert_eq(sb.deletes_received, 1);
	f = fetch(keep, 0);
	settle();
	cr_assert_eq(result_int(f), 11, "the other value intact");
	tw_future_release(f);
	tw_rref_release(keep);
	settle();
	assert_clean();
	world_down(true);
}

/* The confirmation lost: the creation times out at the user, which still
 * tells the owner on release (it may have the RRef, and does): no leak. */
Test(rref, lost_confirmation_still_frees_the_value)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_drop_next(W.net, B_ADDR, A_ADDR,
					   TW_MSG_REMOTE_RET),
		     TW_OK);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 100);
	settle();
	cr_assert_eq(rstats(1).owned, 1);
	cr_assert_not(tw_rref_confirmed_by_owner(r));
	advance(100 * MS);
	tw_future *f = fetch(r, 0);
	settle();
	const tw_error *e = failure(f, TW_ETIMEDOUT);
	cr_assert_str_eq(e->msg, TW_RREF_CREATION_TIMEOUT_MSG);
	tw_future_release(f);
	tw_rref_release(r);
	settle();
	cr_assert_eq(rstats(1).deletes_received, 1);
	assert_clean();
	world_down(true);
}

/* A fetch's answer lost: that to_here times out, the value stays, the
 * next to_here gets it. */
Test(rref, lost_fetch_answer_times_out_and_a_retry_works)
{
	world_up(2, NULL);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 0);
	settle();
	cr_assert_eq(tw_fake_net_drop_next(W.net, B_ADDR, A_ADDR,
					   TW_MSG_RREF_FETCH_RET),
		     TW_OK);
	tw_future *f = fetch(r, 50);
	settle();
	cr_assert_not(tw_future_done(f));
	advance(50 * MS);
	const tw_error *e = failure(f, TW_ETIMEDOUT);
	cr_assert(strstr(e->msg, "50 ms") != NULL, "%s", e->msg);
	tw_future_release(f);
	cr_assert_eq(rstats(1).owned, 1);
	f = fetch(r, 50);
	settle();
	cr_assert_eq(result_int(f), 2);
	tw_future_release(f);
	tw_rref_release(r);
	settle();
	assert_clean();
	world_down(true);
}

/* The creation timed out at the user, whose delete then overtook the
 * REMOTE_CALL: the owner remembers the delete and does not create what
 * nobody would delete. */
Test(rref, delete_overtaking_its_remote_call_prevents_the_leak)
{
	world_up(2, NULL);
	cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, B_ADDR, true), TW_OK);
	tw_rref *r = remote_int(0, "B", "t::inc", 1, 100);
	settle();
	advance(100 * MS);
	cr_assert_not(tw_rref_confirmed_by_owner(r));
	tw_rref_release(r);
	settle();
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), 2);
	cr_assert_eq(tw_fake_net_reverse(W.net, A_ADDR, B_ADDR), 2);
	cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, B_ADDR, false), TW_OK);
	settle();
	cr_assert_eq(W.k[1].inc, 0, "never run");
	cr_assert_eq(rstats(1).refused, 2, "the delete, then the REMOTE_CALL");
	assert_clean();
	world_down(true);
}

/* ---- random schedules ---------------------------------------------------------- */

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

/* Seeded schedules of remotes, fetches and releases among three workers
 * while control messages and their answers are dropped, duplicated, held
 * and reordered at random. Whatever happens: a fetch that succeeds gets
 * the right value; every confirmed user's value still exists on its owner
 * (G1, and nothing freed early); once everything is released and the
 * retries have run, nothing is owned, used or pending anywhere. */
Test(rref, random_fault_schedules_keep_g1_and_leave_nothing)
{
	static const uint8_t types[] = {TW_MSG_REMOTE_CALL,
					TW_MSG_REMOTE_RET,
					TW_MSG_RREF_FETCH_CALL,
					TW_MSG_RREF_FETCH_RET,
					TW_MSG_RREF_USER_DELETE,
					TW_MSG_ACK,
					TW_MSG_CALL,
					TW_MSG_RET};
	for (uint64_t seed = 1;
	     seed <=
	     (getenv("TW_SEEDS") ? strtoull(getenv("TW_SEEDS"), NULL, 10) : 24);
	     seed++) {
		rng_state = seed * UINT64_C(0x9E3779B97F4A7C15);
		world_up(3, NULL);
		W.drive_step = MS; /* shutdown's drain moves the clock */
		struct {
			tw_rref *r;
			int64_t v;
		} live[24];
		struct {
			tw_future *f;
			int64_t v;
		} fs[96];
		int nlive = 0, nf = 0, ok = 0;
		bool held[3][3] = {{false}};
		for (int step = 0; step < 250; step++) {
			uint32_t x = rnd(3), y = rnd(3);
			switch (rnd(10)) {
			case 0:
			case 1:
				if (nlive < 24) {
					live[nlive].v = step;
					live[nlive].r = remote_int(x, names[y],
								   "t::inc",
								   step, 200);
					nlive++;
				}
				break;
			case 2:
				if (nlive > 0 && nf < 96) {
					int i = (int)rnd((uint32_t)nlive);
					fs[nf].f = fetch(live[i].r, 200);
					fs[nf++].v = live[i].v + 1;
				}
				break;
			case 3:
				if (nlive > 0) {
					int i = (int)rnd((uint32_t)nlive);
					tw_rref_release(live[i].r);
					live[i] = live[--nlive];
				}
				break;
			case 4:
				if (x != y) {
					uint8_t t = types[rnd(sizeof(types))];
					if (rnd(2))
						(void)tw_fake_net_dup_next(
							W.net, addrs[x],
							addrs[y], t);
					else
						(void)tw_fake_net_drop_next(
							W.net, addrs[x],
							addrs[y], t);
				}
				break;
			case 5:
				if (x != y) {
					held[x][y] = !held[x][y];
					if (!held[x][y] && rnd(2))
						tw_fake_net_reverse(W.net,
								    addrs[x],
								    addrs[y]);
					cr_assert_eq(tw_fake_net_hold(
							     W.net, addrs[x],
							     addrs[y],
							     held[x][y]),
						     TW_OK);
				}
				break;
			case 6:
				advance(rnd(3) * 20 * MS);
				break;
			case 7: /* a proxy: t::inc(value) on the owner */
				if (nlive > 0 && nf < 96) {
					int i = (int)rnd((uint32_t)nlive);
					tw_status st = tw_rref_rpc_async(
						live[i].r, "t::inc", NULL, NULL,
						200, &fs[nf].f);
					cr_assert_eq(st, TW_OK);
					fs[nf++].v = live[i].v + 2;
				}
				break;
			default:
				poll_all();
				break;
			}
		}
		for (uint32_t a = 0; a < 3; a++)
			for (uint32_t b = 0; b < 3; b++)
				if (held[a][b])
					cr_assert_eq(tw_fake_net_hold(
							     W.net, addrs[a],
							     addrs[b], false),
						     TW_OK);
		/* Every creation and fetch settles: a fetch sent again once
		 * its creation was confirmed has its own deadline. */
		for (int i = 0; i < 3; i++)
			advance(300 * MS);
		for (int i = 0; i < nf; i++) {
			cr_assert(tw_future_done(fs[i].f), "seed %llu fetch %d",
				  (unsigned long long)seed, i);
			if (tw_future_status(fs[i].f) == TW_OK) {
				cr_assert_eq(result_int(fs[i].f), fs[i].v,
					     "seed %llu",
					     (unsigned long long)seed);
				ok++;
			}
			tw_future_release(fs[i].f);
		}
		for (int i = 0; i < nlive; i++) {
			if (!tw_rref_confirmed_by_owner(live[i].r))
				continue;
			tw_rref_id id = tw_rref_get_id(live[i].r);
			uint32_t nu, nfp;
			bool sf;
			tw_status st = tw_agent_rref_value_users(
				W.ag[id.owner], id.rref, &nu, &nfp, &sf);
			cr_assert_eq(st, TW_OK,
				     "seed %llu: a confirmed user's value is "
				     "gone from its owner",
				     (unsigned long long)seed);
			cr_assert(nu >= 1 || sf);
			tw_rref_release(live[i].r);
			live[i].r = NULL;
		}
		for (int i = 0; i < nlive; i++)
			tw_rref_release(live[i].r);
		/* Lost deletes and acks are sent again, 10 s apart. */
		for (int i = 0; i < 4; i++)
			advance(RREF_CTL_TIMEOUT_MS * MS);
		assert_clean();
		cr_assert_gt(ok, 0, "seed %llu: some fetch succeeded",
			     (unsigned long long)seed);
		world_down(true);
	}
}

/* Fetches parked on a value still being computed are bounded per value:
 * the one past RREF_MAX_FETCH_WAIT is refused with TW_EBUSY, the others
 * are answered once the value exists. */
Test(rref, parked_fetches_are_bounded)
{
	world_up(2, NULL);
	atomic_store(&block_gate, 0);
	atomic_store(&block_runs, 0);
	tw_rref *r = remote_int(0, "B", "t::block", 5, 0);
	POLL_UNTIL(atomic_load(&block_runs) == 1);
	enum { N = RREF_MAX_FETCH_WAIT + 1 };
	static tw_future *f[N];
	for (int i = 0; i < N; i++) {
		f[i] = fetch(r, 0);
		if (i % 64 == 63)
			settle();
	}
	settle();
	int busy = 0, pending = 0, refused = -1;
	for (int i = 0; i < N; i++) {
		if (!tw_future_done(f[i])) {
			pending++;
		} else {
			cr_assert_not_null(failure(f[i], TW_EBUSY));
			busy++;
			refused = i;
		}
	}
	cr_assert_eq(busy, 1);
	cr_assert_eq(pending, RREF_MAX_FETCH_WAIT);
	cr_assert_eq(rstats(1).waiting, RREF_MAX_FETCH_WAIT);
	atomic_store(&block_gate, 1);
	for (int i = 0; i < N; i++) {
		if (i == refused) {
			tw_future_release(f[i]);
			continue;
		}
		POLL_UNTIL(tw_future_done(f[i]));
		cr_assert_eq(result_int(f[i]), 5);
		tw_future_release(f[i]);
	}
	tw_rref_release(r);
	settle();
	assert_clean();
	world_down(true);
}
