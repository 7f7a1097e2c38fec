/* RRefs inside values (rpc/rref.c, docs/rref.md "Forks") on the fake net:
 * an RRef passed as an argument and returned as a result, from the owner,
 * from a user, to the owner; A -> B -> C; nested RRefs; 100 users of one
 * value; and the fork protocol's messages (FORK_REQUEST, CHILD_ACCEPT and
 * their ACKs) held, reordered, duplicated and dropped while the sender
 * lets go at once: G2, the value is never freed while a fork is in
 * flight, and every table ends empty. */
#include "rpc/rref.h"
#include "tests/unit/rpc/fake_world.h"

#define KEEP 160
#define ID_FMT "RRef (%u, %llu) fork (%u, %llu) of owner %u"
#define ID_ARGS(id)                                                            \
	(id).rref.created_on, (unsigned long long)(id).rref.local_id,          \
		(id).fork.created_on, (unsigned long long)(id).fork.local_id,  \
		(id).owner

/* What each worker's f::keep kept, by worker. */
static tw_rref *kept[3][KEEP];
static int nkept[3];

static uint32_t who(void *arg)
{
	return (uint32_t)((struct counts *)arg - W.k);
}

static tw_status arg_rref(const tw_value *args, uint32_t i, tw_rref **r)
{
	const tw_value *x;
	tw_status st = tw_value_get_item(args, i, &x);
	return st == TW_OK ? tw_rref_from_value(x, r) : st;
}

/* f::keep(rref, ...): keep every RRef argument (a reference each). */
static tw_status h_keep(tw_call_ctx *ctx, const tw_value *args,
			const tw_value *kwargs, tw_value *result, void *arg)
{
	(void)ctx;
	(void)kwargs;
	uint32_t w = who(arg);
	for (uint32_t i = 0; i < args->len; i++) {
		tw_rref *r;
		tw_status st = arg_rref(args, i, &r);
		if (st != TW_OK)
			return st;
		cr_assert_lt(nkept[w], KEEP);
		kept[w][nkept[w]++] = r;
	}
	*result = tw_value_int(nkept[w]);
	return TW_OK;
}

/* f::fetch(rref): its value, fetched here (to_here, deferred). */
static tw_status h_fetch(tw_call_ctx *ctx, const tw_value *args,
			 const tw_value *kwargs, tw_value *result, void *arg)
{
	(void)kwargs;
	(void)result;
	(void)arg;
	tw_rref *r;
	tw_status st = arg_rref(args, 0, &r);
	if (st != TW_OK)
		return st;
	tw_future *f = NULL;
	st = tw_rref_to_here_async(r, 1000, &f);
	tw_rref_release(r);
	if (st != TW_OK)
		return st;
	tw_call_defer(ctx, f);
	tw_future_release(f);
	return TW_OK;
}

/* f::give(i): the RRef f::keep kept in slot i, returned. */
static tw_status h_give(tw_call_ctx *ctx, const tw_value *args,
			const tw_value *kwargs, tw_value *result, void *arg)
{
	(void)ctx;
	(void)kwargs;
	const tw_value *x;
	int64_t i;
	if (tw_value_get_item(args, 0, &x) != TW_OK ||
	    tw_value_get_int(x, &i) != TW_OK || i < 0 || i >= nkept[who(arg)])
		return TW_EINVAL;
	return tw_rref_value(kept[who(arg)][i], result);
}

/* f::make(to, v, n): a list of n RRefs of t::inc(v + k) owned by `to`
 * (n = 0: one RRef, not in a list). */
static tw_status h_make(tw_call_ctx *ctx, const tw_value *args,
			const tw_value *kwargs, tw_value *result, void *arg)
{
	(void)kwargs;
	(void)arg;
	const tw_value *x;
	int64_t to, v, n;
	if (tw_value_get_item(args, 0, &x) != TW_OK ||
	    tw_value_get_int(x, &to) != TW_OK ||
	    tw_value_get_item(args, 1, &x) != TW_OK ||
	    tw_value_get_int(x, &v) != TW_OK ||
	    tw_value_get_item(args, 2, &x) != TW_OK ||
	    tw_value_get_int(x, &n) != TW_OK)
		return TW_EINVAL;
	tw_agent *a = tw_call_agent(ctx);
	tw_value list;
	if (n > 0 && tw_value_list(&list, (uint32_t)n) != TW_OK)
		return TW_ENOMEM;
	for (int64_t k = 0; k < (n > 0 ? n : 1); k++) {
		tw_value ia = int_args(v + k);
		tw_rref *r = NULL;
		tw_status st = tw_remote_id(a, (uint32_t)to, "t::inc", &ia,
					    NULL, 1000, &r);
		tw_value_destroy(&ia);
		cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
		tw_value rv;
		cr_assert_eq(tw_rref_value(r, &rv), TW_OK);
		tw_rref_release(r); /* the value holds it now */
		if (n == 0) {
			*result = rv;
			return TW_OK;
		}
		cr_assert_eq(tw_value_set_item(&list, (uint32_t)k, rv), TW_OK);
	}
	*result = list;
	return TW_OK;
}

static tw_status fork_setup(tw_agent *a, void *arg)
{
	tw_status st = setup(a, arg);
	if (st == TW_OK)
		st = tw_agent_register(a, "f::keep", h_keep, arg, 0);
	if (st == TW_OK)
		st = tw_agent_register(a, "f::fetch", h_fetch, arg, 0);
	if (st == TW_OK)
		st = tw_agent_register(a, "f::give", h_give, arg, 0);
	if (st == TW_OK)
		st = tw_agent_register(a, "f::make", h_make, arg, 0);
	return st;
}

static void fork_tweak(uint32_t rank, struct tw_agent_opts *o)
{
	(void)rank;
	o->setup = fork_setup;
}

static void up(uint32_t n)
{
	memset(kept, 0, sizeof(kept));
	memset(nkept, 0, sizeof(nkept));
	world_up(n, fork_tweak);
}

/* Release what f::keep kept on worker w. */
static void drop_kept(uint32_t w)
{
	for (int i = 0; i < nkept[w]; i++)
		tw_rref_release(kept[w][i]);
	nkept[w] = 0;
}

static struct tw_rref_stats rstats(uint32_t i)
{
	struct tw_rref_stats s;
	tw_agent_rref_stats(W.ag[i], &s);
	return s;
}

static void assert_clean(void)
{
	for (uint32_t i = 0; i < W.n; i++) {
		struct tw_rref_stats s = rstats(i);
		cr_assert_eq(s.owned, 0, "%s owns %llu", names[i],
			     (unsigned long long)s.owned);
		cr_assert_eq(s.owner_users, 0, "%s", names[i]);
		cr_assert_eq(s.forks_pending, 0, "%s: %llu forks pending",
			     names[i], (unsigned long long)s.forks_pending);
		cr_assert_eq(s.users, 0, "%s has %llu users", names[i],
			     (unsigned long long)s.users);
		cr_assert_eq(s.pending_users, 0, "%s", names[i]);
		cr_assert_eq(s.waiting, 0, "%s", names[i]);
	}
}

static tw_rref *remote_int(uint32_t from, uint32_t to, int64_t v)
{
	tw_value args = int_args(v);
	tw_rref *r = NULL;
	tw_agent_fake_enter(W.ag[from]);
	tw_status st = tw_remote_id(W.ag[from], to, "t::inc", &args, NULL, 1000,
				    &r);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	tw_value_destroy(&args);
	return r;
}

/* from calls fn(r) on to (r passed as an RRef); NULL if refused (*st). */
static tw_future *pass_try(uint32_t from, uint32_t to, const char *fn,
			   tw_rref *r, tw_status *st)
{
	tw_value args, rv;
	cr_assert_eq(tw_value_tuple(&args, 1), TW_OK);
	cr_assert_eq(tw_rref_value(r, &rv), TW_OK);
	cr_assert_eq(tw_value_set_item(&args, 0, rv), TW_OK);
	tw_future *f = NULL;
	tw_agent_fake_enter(W.ag[from]);
	*st = tw_rpc_async_id(W.ag[from], to, fn, &args, NULL, 1000, &f);
	tw_value_destroy(&args);
	return f;
}

/* from calls fn(r) on to (r passed as an RRef). */
static tw_future *pass(uint32_t from, uint32_t to, const char *fn, tw_rref *r)
{
	tw_value args, rv;
	cr_assert_eq(tw_value_tuple(&args, 1), TW_OK);
	cr_assert_eq(tw_rref_value(r, &rv), TW_OK);
	cr_assert_eq(tw_value_set_item(&args, 0, rv), TW_OK);
	tw_future *f = NULL;
	tw_agent_fake_enter(W.ag[from]);
	tw_status st = tw_rpc_async_id(W.ag[from], to, fn, &args, NULL, 1000,
				       &f);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	tw_value_destroy(&args);
	return f;
}

static int64_t fetch_int(tw_rref *r)
{
	tw_future *f = NULL;
	cr_assert_eq(tw_rref_to_here_async(r, 1000, &f), TW_OK);
	settle();
	int64_t v = result_int(f);
	tw_future_release(f);
	return v;
}

/* Users, forks in flight, and whether the owner's handle lives, of one
 * value; -1 users when the owner has freed it. */
struct vu {
	int64_t users;
	uint32_t forks;
	bool self;
};

static struct vu value_users(tw_rref *r)
{
	tw_rref_id id = tw_rref_get_id(r);
	uint32_t u = 0, f = 0;
	bool s = false;
	tw_status st = tw_agent_rref_value_users(W.ag[id.owner], id.rref, &u,
						 &f, &s);
	return (struct vu){
		.users = st == TW_OK ? (int64_t)u : -1, .forks = f, .self = s};
}

static struct vu value_users_id(tw_rref_id id)
{
	uint32_t u = 0, f = 0;
	bool s = false;
	tw_status st = tw_agent_rref_value_users(W.ag[id.owner], id.rref, &u,
						 &f, &s);
	return (struct vu){
		.users = st == TW_OK ? (int64_t)u : -1, .forks = f, .self = s};
}

/* Owner A passes its RRef to B (owner -> user: recorded before it leaves,
 * in flight until B accepts), B passes it to C (user -> user: C asks the
 * owner, then tells B), C uses it. A and B let go; C's is the last. */
Test(rref_fork, owner_to_b_to_c_used_at_c)
{
	up(3);
	tw_rref *r = remote_int(0, 0, 41);
	settle();
	tw_rref_id id = tw_rref_get_id(r);
	tw_future *f = pass(0, 1, "f::keep", r);
	struct vu u = value_users(r);
	cr_assert(u.users == 0 && u.forks == 1 && u.self,
		  "early registration: %lld users %u forks", (long long)u.users,
		  u.forks);
	settle();
	cr_assert_eq(result_int(f), 1);
	tw_future_release(f);
	u = value_users(r);
	cr_assert(u.users == 1 && u.forks == 0, "B accepted");
	cr_assert_eq(nkept[1], 1);
	tw_rref *rb = kept[1][0];
	cr_assert_not(tw_rref_is_owner(rb));
	cr_assert(tw_rref_confirmed_by_owner(rb), "from the owner: confirmed");
	tw_rref_id bid = tw_rref_get_id(rb);
	cr_assert(bid.owner == 0 && bid.rref.local_id == id.rref.local_id);
	cr_assert(bid.fork.created_on == 0 &&
			  bid.fork.local_id != id.rref.local_id,
		  "a new fork id, minted by its sender");
	tw_rref_release(r);
	cr_assert_eq(fetch_int(rb), 42);

	/* B -> C. */
	f = pass(1, 2, "f::keep", rb);
	settle();
	cr_assert_eq(result_int(f), 1);
	tw_future_release(f);
	tw_rref *rc = kept[2][0];
	cr_assert(tw_rref_confirmed_by_owner(rc));
	cr_assert_eq(value_users_id(id).users, 2);
	drop_kept(1);
	settle();
	u = value_users_id(id);
	cr_assert(u.users == 1 && !u.self, "only C's is left");
	cr_assert_eq(fetch_int(rc), 42);
	/* And through a proxy, from C. */
	tw_future *pf = NULL;
	cr_assert_eq(tw_rref_rpc_async(rc, "t::inc", NULL, NULL, 1000, &pf),
		     TW_OK);
	settle();
	cr_assert_eq(result_int(pf), 43);
	tw_future_release(pf);
	drop_kept(2);
	settle();
	cr_assert_eq(value_users_id(id).users, -1, "freed on the last release");
	assert_clean();
	world_down(true);
}

/* A user passes its RRef to a third worker and lets go at once: the
 * value lives (G2) until the receiver's fork is recorded, then on the
 * receiver's alone. */
Test(rref_fork, user_to_third_worker_then_sender_releases_at_once)
{
	up(3);
	tw_rref *r = remote_int(0, 1, 9); /* owner B */
	tw_rref_id id = tw_rref_get_id(r);
	tw_future *f = pass(0, 2, "f::keep", r);
	tw_rref_release(r); /* before anything was delivered */
	settle();
	cr_assert_eq(result_int(f), 1);
	tw_future_release(f);
	struct vu u = value_users_id(id);
	cr_assert_eq(u.users, 1, "C's fork alone: %lld", (long long)u.users);
	cr_assert_eq(fetch_int(kept[2][0]), 10);
	drop_kept(2);
	settle();
	cr_assert_eq(value_users_id(id).users, -1);
	assert_clean();
	world_down(true);
}

/* A user passes the RRef to its owner: the owner's handler gets its own
 * handle (local_value works), and the sender's child ends. */
Test(rref_fork, user_to_owner_becomes_the_owner_handle)
{
	up(2);
	tw_rref *r = remote_int(0, 1, 5);
	settle();
	tw_future *f = pass(0, 1, "f::keep", r);
	settle();
	cr_assert_eq(result_int(f), 1);
	tw_future_release(f);
	tw_rref *ro = kept[1][0];
	cr_assert(tw_rref_is_owner(ro));
	const tw_value *lv;
	int64_t n;
	cr_assert_eq(tw_rref_local_value(ro, &lv), TW_OK);
	cr_assert_eq(tw_value_get_int(lv, &n), TW_OK);
	cr_assert_eq(n, 6);
	struct vu u = value_users(r);
	cr_assert(u.users == 1 && u.self && u.forks == 0);
	cr_assert_eq(rstats(0).forks_pending, 0, "A's child was accepted");
	tw_rref_release(r);
	settle();
	u = value_users(ro);
	cr_assert(u.users == 0 && u.self, "kept by the owner's handle");
	drop_kept(1);
	assert_clean();
	world_down(true);
}

/* An RRef returned from a call (B makes it, owned by C, and returns it to
 * A), and one returned by the owner itself. */
Test(rref_fork, rref_returned_from_a_call)
{
	up(3);
	tw_value args;
	cr_assert_eq(tw_value_tuple(&args, 3), TW_OK);
	tw_value_set_item(&args, 0, tw_value_int(2));
	tw_value_set_item(&args, 1, tw_value_int(100));
	tw_value_set_item(&args, 2, tw_value_int(0));
	tw_value res, err;
	tw_future *f = NULL;
	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(tw_rpc_async(W.ag[0], "B", "f::make", &args, NULL, 1000,
				  &f),
		     TW_OK);
	settle();
	cr_assert_eq(tw_future_status(f), TW_OK);
	tw_rref *r = NULL;
	cr_assert_eq(tw_rref_from_value(tw_future_value(f), &r), TW_OK);
	tw_future_release(f); /* r is ours now */
	cr_assert_eq(tw_rref_get_id(r).owner, 2);
	cr_assert_eq(fetch_int(r), 101);
	settle();
	cr_assert_eq(rstats(1).users, 0, "B's handle went with its result");
	cr_assert_eq(value_users(r).users, 1);

	/* From the owner: f::make on C of an RRef C owns (remote to self). */
	tw_value_set_item(&args, 0, tw_value_int(2));
	cr_assert_eq(tw_rpc_async(W.ag[0], "C", "f::make", &args, NULL, 1000,
				  &f),
		     TW_OK);
	settle();
	tw_rref *r2 = NULL;
	cr_assert_eq(tw_rref_from_value(tw_future_value(f), &r2), TW_OK);
	tw_future_release(f);
	cr_assert(tw_rref_confirmed_by_owner(r2));
	cr_assert_eq(fetch_int(r2), 101);
	tw_value_destroy(&args);
	(void)res;
	(void)err;
	tw_rref_release(r);
	tw_rref_release(r2);
	settle();
	assert_clean();
	world_down(true);
}

/* Nested: B's value is a list of three RRefs owned by C. A's to_here gets
 * the list; each element is a user RRef of A's that works. The inner
 * values live while B's value (which holds them) does, or while A's. */
Test(rref_fork, nested_rrefs_in_a_value)
{
	up(3);
	tw_value args;
	cr_assert_eq(tw_value_tuple(&args, 3), TW_OK);
	tw_value_set_item(&args, 0, tw_value_int(2));
	tw_value_set_item(&args, 1, tw_value_int(10));
	tw_value_set_item(&args, 2, tw_value_int(3));
	tw_rref *outer = NULL;
	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(tw_remote(W.ag[0], "B", "f::make", &args, NULL, 1000,
			       &outer),
		     TW_OK);
	tw_value_destroy(&args);
	settle();
	cr_assert_eq(rstats(2).owned, 3);
	cr_assert_eq(rstats(1).users, 3, "B's value holds three users");
	tw_future *f = NULL;
	cr_assert_eq(tw_rref_to_here_async(outer, 1000, &f), TW_OK);
	settle();
	cr_assert_eq(tw_future_status(f), TW_OK);
	const tw_value *list = tw_future_value(f);
	cr_assert_eq(list->kind, TW_KIND_LIST);
	cr_assert_eq(list->len, 3);
	tw_rref *in[3];
	for (uint32_t k = 0; k < 3; k++) {
		const tw_value *x;
		cr_assert_eq(tw_value_get_item(list, k, &x), TW_OK);
		cr_assert_eq(tw_rref_from_value(x, &in[k]), TW_OK);
	}
	tw_future_release(f);
	settle();
	for (uint32_t k = 0; k < 3; k++) {
		cr_assert(tw_rref_confirmed_by_owner(in[k]));
		cr_assert_eq(fetch_int(in[k]), 11 + k);
		cr_assert_eq(value_users(in[k]).users, 2, "B's and A's");
	}
	/* The outer value goes: B's users of the inner ones go with it. */
	tw_rref_release(outer);
	settle();
	cr_assert_eq(rstats(1).owned, 0);
	cr_assert_eq(rstats(1).users, 0);
	for (uint32_t k = 0; k < 3; k++) {
		cr_assert_eq(value_users(in[k]).users, 1);
		tw_rref_release(in[k]);
	}
	settle();
	assert_clean();
	world_down(true);
}

/* 100 users of one value, on two other workers; the owner frees it on
 * the last release, not before. */
Test(rref_fork, hundred_users_and_the_last_release_frees)
{
	up(3);
	tw_rref *r = remote_int(0, 0, 1);
	settle();
	tw_rref_id id = tw_rref_get_id(r);
	for (int i = 0; i < 100; i++) {
		tw_future *f = pass(0, 1 + (uint32_t)(i % 2), "f::keep", r);
		tw_future_release(f);
	}
	settle();
	cr_assert_eq(nkept[1] + nkept[2], 100);
	struct vu u = value_users_id(id);
	cr_assert(u.users == 100 && u.forks == 0 && u.self, "%lld users",
		  (long long)u.users);
	tw_rref_release(r);
	for (int i = 0; i < 100; i++) {
		uint32_t w = 1 + (uint32_t)(i % 2);
		tw_rref_release(kept[w][i / 2]);
		settle();
		u = value_users_id(id);
		if (i < 99)
			cr_assert_eq(u.users, 99 - i, "after %d releases",
				     i + 1);
		else
			cr_assert_eq(u.users, -1, "freed on the last");
	}
	nkept[1] = nkept[2] = 0;
	assert_clean();
	world_down(true);
}

/* Each fork message and its answer held, reversed, duplicated or dropped
 * while the sender lets go at once: the value is never freed before the
 * receiver lets go (G2), the receiver's RRef works, and nothing is left. */
static void g2_case(uint8_t type, bool answer, int fault)
{
	up(3);
	tw_rref *r = remote_int(0, 1, 20); /* owner B, user A */
	settle();
	tw_rref_id id = tw_rref_get_id(r);
	/* FORK_REQUEST: C -> B, answered B -> C; CHILD_ACCEPT: C -> A,
	 * answered A -> C. */
	const char *from = type == TW_MSG_RREF_FORK_REQUEST ? C_ADDR : C_ADDR;
	const char *to = type == TW_MSG_RREF_FORK_REQUEST ? B_ADDR : A_ADDR;
	if (answer) {
		const char *t = from;
		from = to;
		to = t;
	}
	uint8_t t = answer ? TW_MSG_ACK : type;
	switch (fault) {
	case 0:
		cr_assert_eq(tw_fake_net_drop_next(W.net, from, to, t), TW_OK);
		break;
	case 1:
		cr_assert_eq(tw_fake_net_dup_next(W.net, from, to, t), TW_OK);
		break;
	default:
		cr_assert_eq(tw_fake_net_hold(W.net, from, to, true), TW_OK);
		break;
	}
	tw_future *f = pass(0, 2, "f::keep", r);
	tw_rref_release(r);
	for (int i = 0; i < 6; i++) {
		settle();
		cr_assert_geq(value_users_id(id).users, 1,
			      "freed while a fork was in flight");
		advance(MS);
	}
	if (fault >= 2) {
		if (fault == 3)
			tw_fake_net_reverse(W.net, from, to);
		cr_assert_eq(tw_fake_net_hold(W.net, from, to, false), TW_OK);
	}
	/* Retries run 10 s apart. */
	for (int i = 0; i < 3; i++) {
		cr_assert_geq(value_users_id(id).users, 1);
		advance(RREF_CTL_TIMEOUT_MS * MS);
	}
	cr_assert(tw_future_done(f));
	tw_future_release(f);
	cr_assert_eq(nkept[2], 1);
	tw_rref *rc = kept[2][0];
	cr_assert(tw_rref_confirmed_by_owner(rc));
	cr_assert_eq(fetch_int(rc), 21);
	cr_assert_eq(value_users_id(id).users, 1, "C's alone");
	cr_assert_eq(rstats(0).forks_pending, 0, "A's child accepted");
	drop_kept(2);
	for (int i = 0; i < 3; i++)
		advance(RREF_CTL_TIMEOUT_MS * MS);
	cr_assert_eq(value_users_id(id).users, -1);
	assert_clean();
	world_down(true);
}

Test(rref_fork, g2_fork_request_dropped)
{
	g2_case(TW_MSG_RREF_FORK_REQUEST, false, 0);
}
Test(rref_fork, g2_fork_request_duplicated)
{
	g2_case(TW_MSG_RREF_FORK_REQUEST, false, 1);
}
Test(rref_fork, g2_fork_request_held)
{
	g2_case(TW_MSG_RREF_FORK_REQUEST, false, 2);
}
Test(rref_fork, g2_fork_request_held_and_reordered)
{
	g2_case(TW_MSG_RREF_FORK_REQUEST, false, 3);
}
Test(rref_fork, g2_fork_ack_dropped)
{
	g2_case(TW_MSG_RREF_FORK_REQUEST, true, 0);
}
Test(rref_fork, g2_fork_ack_duplicated)
{
	g2_case(TW_MSG_RREF_FORK_REQUEST, true, 1);
}
Test(rref_fork, g2_fork_ack_held)
{
	g2_case(TW_MSG_RREF_FORK_REQUEST, true, 2);
}
Test(rref_fork, g2_child_accept_dropped)
{
	g2_case(TW_MSG_RREF_CHILD_ACCEPT, false, 0);
}
Test(rref_fork, g2_child_accept_duplicated)
{
	g2_case(TW_MSG_RREF_CHILD_ACCEPT, false, 1);
}
Test(rref_fork, g2_child_accept_held_and_reordered)
{
	g2_case(TW_MSG_RREF_CHILD_ACCEPT, false, 3);
}
Test(rref_fork, g2_child_accept_ack_dropped)
{
	g2_case(TW_MSG_RREF_CHILD_ACCEPT, true, 0);
}
Test(rref_fork, g2_child_accept_ack_duplicated)
{
	g2_case(TW_MSG_RREF_CHILD_ACCEPT, true, 1);
}

/* The owner's early registration: its fork's CHILD_ACCEPT lost, the
 * receiver's RRef works at once; the retry moves the fork to the users. */
Test(rref_fork, owner_fork_accept_lost_is_sent_again)
{
	up(2);
	tw_rref *r = remote_int(0, 0, 3);
	settle();
	cr_assert_eq(tw_fake_net_drop_next(W.net, B_ADDR, A_ADDR,
					   TW_MSG_RREF_CHILD_ACCEPT),
		     TW_OK);
	tw_future *f = pass(0, 1, "f::keep", r);
	tw_rref_release(r);
	settle();
	tw_future_release(f);
	struct vu u = value_users_id(tw_rref_get_id(kept[1][0]));
	cr_assert(u.users == 0 && u.forks == 1 && !u.self, "still in flight");
	cr_assert_eq(fetch_int(kept[1][0]), 4, "usable meanwhile");
	advance(RREF_CTL_TIMEOUT_MS * MS);
	u = value_users_id(tw_rref_get_id(kept[1][0]));
	cr_assert(u.users == 1 && u.forks == 0);
	drop_kept(1);
	settle();
	assert_clean();
	world_down(true);
}

/* What cannot be passed on, and bare ids. */
Test(rref_fork, refusals)
{
	up(2);
	tw_value v = tw_value_int(1), bare;
	tw_rref *r = (tw_rref *)1;
	cr_assert_eq(tw_rref_from_value(&v, &r), TW_EINVAL);
	cr_assert_null(r);
	tw_rref_id id = {.owner = 1};
	cr_assert_eq(tw_value_rref(&bare, &id), TW_OK);
	cr_assert_eq(tw_rref_from_value(&bare, &r), TW_EINVAL);
	cr_assert(strstr(tw_errmsg(TW_EINVAL), "bare id") != NULL);
	tw_value_destroy(&bare);
	cr_assert_eq(tw_rref_value(NULL, &v), TW_EINVAL);

	/* A failed creation cannot be passed on: the call says where. */
	tw_agent_fake_enter(W.ag[0]);
	tw_value args = int_args(1);
	cr_assert_eq(tw_remote(W.ag[0], "B", "t::inc", &args, NULL, 50, &r),
		     TW_OK);
	tw_value_destroy(&args);
	cr_assert_eq(tw_fake_net_drop_next(W.net, B_ADDR, A_ADDR,
					   TW_MSG_REMOTE_RET),
		     TW_OK);
	settle();
	advance(50 * MS);
	cr_assert_not(tw_rref_confirmed_by_owner(r));
	tw_value pa, rv;
	cr_assert_eq(tw_value_tuple(&pa, 1), TW_OK);
	cr_assert_eq(tw_rref_value(r, &rv), TW_OK);
	tw_value_set_item(&pa, 0, rv);
	tw_future *f = NULL;
	tw_status st = tw_rpc_async(W.ag[0], "B", "f::keep", &pa, NULL, 1000,
				    &f);
	cr_assert_eq(st, TW_EINVAL);
	cr_assert(strstr(tw_errmsg(st), "args[0]") != NULL &&
			  strstr(tw_errmsg(st), "creation failed") != NULL,
		  "%s", tw_errmsg(st));
	cr_assert_eq(rstats(0).forks_pending, 0, "nothing left behind");
	tw_value_destroy(&pa);
	tw_rref_release(r);
	for (int i = 0; i < 3; i++)
		advance(RREF_CTL_TIMEOUT_MS * MS);
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

#define NLIVE 48

struct held {
	uint32_t w; /* the worker holding it */
	tw_rref *r;
	int64_t v; /* its value */
};

/* f::keep's catch, as the test's own handles (their values: by RRef id). */
static void harvest(struct held *live, int *nlive, const struct held *all,
		    int nall)
{
	for (uint32_t w = 0; w < 3; w++) {
		for (int i = 0; i < nkept[w]; i++) {
			tw_rref_id id = tw_rref_get_id(kept[w][i]);
			int64_t v = -1;
			for (int k = 0; k < nall; k++) {
				tw_rref_id o = tw_rref_get_id(all[k].r);
				if (o.owner == id.owner &&
				    o.rref.created_on == id.rref.created_on &&
				    o.rref.local_id == id.rref.local_id)
					v = all[k].v;
			}
			if (*nlive < NLIVE && v >= 0) {
				live[(*nlive)++] = (struct held){
					.w = w, .r = kept[w][i], .v = v};
			} else {
				tw_rref_release(kept[w][i]);
			}
		}
		nkept[w] = 0;
	}
}

/* Seeded schedules of remotes, passes (owner -> user, user -> user, user
 * -> owner), fetches and releases among three workers while the RRef
 * control messages and their answers are dropped, duplicated, held and
 * reordered. Whatever happens: a fetch that succeeds gets its value; a
 * confirmed handle's value exists on its owner (G1, G2); at the end,
 * nothing is owned, used or pending anywhere. Calls themselves are held
 * and reordered, never lost or doubled (a transport delivers each frame
 * once): a lost call's fork would wait for its receiver forever, as in
 * torch, until the receiver is declared dead. */
Test(rref_fork, random_fault_schedules_keep_g1_g2_and_leave_nothing)
{
	static const uint8_t types[] = {TW_MSG_REMOTE_RET,
					TW_MSG_RREF_FETCH_CALL,
					TW_MSG_RREF_FETCH_RET,
					TW_MSG_RREF_USER_DELETE,
					TW_MSG_ACK,
					TW_MSG_RREF_FORK_REQUEST,
					TW_MSG_RREF_CHILD_ACCEPT};
	for (uint64_t seed = 1;
	     seed <=
	     (getenv("TW_SEEDS") ? strtoull(getenv("TW_SEEDS"), NULL, 10) : 16);
	     seed++) {
		rng_state = seed * UINT64_C(0x9E3779B97F4A7C15);
		up(3);
		W.drive_step = MS;
		struct held live[NLIVE], made[256];
		int nlive = 0, nmade = 0, nf = 0, ok = 0;
		struct {
			tw_future *f;
			int64_t v;
			tw_rref_id id;
			uint32_t w;
			int step;
		} fs[96];
		tw_future *calls[128];
		int ncalls = 0;
		bool held[3][3] = {{false}};
		for (int step = 0; step < 250; step++) {
			uint32_t x = rnd(3), y = rnd(3);
			switch (rnd(11)) {
			case 0:
			case 1:
				if (nlive < NLIVE && nmade < 256) {
					tw_rref *r = remote_int(x, y, step);
					live[nlive++] = (struct held){
						.w = x, .r = r, .v = step + 1};
					made[nmade++] = live[nlive - 1];
					tw_rref_retain(r);
				}
				break;
			case 2:
			case 3: /* pass a handle on, and maybe let go of it */
				if (nlive > 0 && ncalls < 128) {
					int i = (int)rnd((uint32_t)nlive);
					uint32_t to = rnd(3);
					if (to == live[i].w)
						break;
					tw_status st;
					tw_future *f = pass_try(live[i].w, to,
								"f::keep",
								live[i].r, &st);
					cr_assert(st == TW_OK ||
							  st == TW_EINVAL,
						  "%s", tw_errmsg(st));
					if (f != NULL)
						calls[ncalls++] = f;
					if (rnd(2)) {
						tw_rref_release(live[i].r);
						live[i] = live[--nlive];
					}
				}
				break;
			case 4:
				if (nlive > 0 && nf < 96) {
					int i = (int)rnd((uint32_t)nlive);
					cr_assert_eq(tw_rref_to_here_async(
							     live[i].r, 200,
							     &fs[nf].f),
						     TW_OK);
					fs[nf].id = tw_rref_get_id(live[i].r);
					fs[nf].w = live[i].w;
					fs[nf].step = step;
					fs[nf++].v = live[i].v;
				}
				break;
			case 5:
				if (nlive > 0) {
					int i = (int)rnd((uint32_t)nlive);
					tw_rref_release(live[i].r);
					live[i] = live[--nlive];
				}
				break;
			case 6:
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
			case 7:
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
			case 8:
				advance(rnd(3) * 20 * MS);
				harvest(live, &nlive, made, nmade);
				break;
			default:
				poll_all();
				break;
			}
			/* G1, G2: what a confirmed handle names exists. */
			for (int i = 0; i < nlive; i++)
				if (tw_rref_confirmed_by_owner(live[i].r))
					cr_assert_geq(
						value_users(live[i].r).users, 0,
						"seed %llu step %d: a confirmed "
						"RRef's value is gone",
						(unsigned long long)seed, step);
		}
		for (uint32_t a = 0; a < 3; a++)
			for (uint32_t b = 0; b < 3; b++)
				if (held[a][b])
					cr_assert_eq(tw_fake_net_hold(
							     W.net, addrs[a],
							     addrs[b], false),
						     TW_OK);
		/* A fetch refused while its fork was not yet recorded waits
		 * for the fork's confirmation: retried 10 s apart. */
		for (int i = 0; i < 5; i++)
			advance(RREF_CTL_TIMEOUT_MS * MS);
		harvest(live, &nlive, made, nmade);
		for (int i = 0; i < nf; i++) {
			cr_assert(
				tw_future_done(fs[i].f),
				"seed %llu fetch %d (step %d) by %s of " ID_FMT,
				(unsigned long long)seed, i, fs[i].step,
				names[fs[i].w], ID_ARGS(fs[i].id));
			if (tw_future_status(fs[i].f) == TW_OK) {
				cr_assert_eq(result_int(fs[i].f), fs[i].v,
					     "seed %llu",
					     (unsigned long long)seed);
				ok++;
			}
			tw_future_release(fs[i].f);
		}
		for (int i = 0; i < ncalls; i++)
			tw_future_release(calls[i]);
		for (int i = 0; i < nmade; i++)
			tw_rref_release(made[i].r);
		for (int i = 0; i < nlive; i++)
			tw_rref_release(live[i].r);
		for (int i = 0; i < 6; i++) {
			advance(RREF_CTL_TIMEOUT_MS * MS);
			harvest(live, &nlive, made, 0);
		}
		for (uint32_t w = 0; w < 3; w++) {
			struct tw_rref_stats st = rstats(w);
			if (st.owned || st.users || st.forks_pending ||
			    st.owner_users)
				fprintf(stderr,
					"seed %llu %s: owned %llu users %llu "
					"forks %llu ousers %llu refused %llu\n",
					(unsigned long long)seed, names[w],
					(unsigned long long)st.owned,
					(unsigned long long)st.users,
					(unsigned long long)st.forks_pending,
					(unsigned long long)st.owner_users,
					(unsigned long long)st.refused);
		}
		assert_clean();
		cr_assert_gt(ok, 0, "seed %llu: some fetch succeeded",
			     (unsigned long long)seed);
		world_down(true);
	}
}

/* An RRef sent to its owner before its REMOTE_CALL got there (another
 * connection in real life; reordered here): the owner makes its entry on
 * the first of the two, the REMOTE_CALL fills it. */
Test(rref_fork, rref_home_before_its_remote_call)
{
	up(2);
	cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, B_ADDR, true), TW_OK);
	tw_rref *r = remote_int(0, 1, 5);
	tw_future *f = pass(0, 1, "f::keep", r);
	settle();
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), 2);
	cr_assert_eq(tw_fake_net_reverse(W.net, A_ADDR, B_ADDR), 2);
	cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, B_ADDR, false), TW_OK);
	settle();
	cr_assert_eq(result_int(f), 1);
	tw_future_release(f);
	tw_rref *ro = kept[1][0];
	cr_assert(tw_rref_is_owner(ro));
	const tw_value *lv;
	int64_t n;
	cr_assert_eq(tw_rref_local_value(ro, &lv), TW_OK);
	cr_assert_eq(tw_value_get_int(lv, &n), TW_OK);
	cr_assert_eq(n, 6);
	cr_assert(tw_rref_confirmed_by_owner(r));
	cr_assert_eq(fetch_int(r), 6);
	struct vu u = value_users(r);
	cr_assert(u.users == 1 && u.self && u.forks == 0);
	cr_assert_eq(W.k[1].inc, 1, "run once");
	tw_rref_release(r);
	drop_kept(1);
	settle();
	assert_clean();
	world_down(true);
}

/* The same with the REMOTE_CALL lost: the creation times out at its
 * creator, whose delete reaches the owner: the owner's handle reads the
 * creation timeout, and nothing is left. */
Test(rref_fork, rref_home_whose_creation_never_comes)
{
	up(2);
	cr_assert_eq(tw_fake_net_drop_next(W.net, A_ADDR, B_ADDR,
					   TW_MSG_REMOTE_CALL),
		     TW_OK);
	tw_value args = int_args(5);
	tw_rref *r = NULL;
	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(tw_remote_id(W.ag[0], 1, "t::inc", &args, NULL, 100, &r),
		     TW_OK);
	tw_value_destroy(&args);
	tw_future *f = pass(0, 1, "f::keep", r);
	settle();
	cr_assert_eq(result_int(f), 1);
	tw_future_release(f);
	cr_assert(tw_rref_is_owner(kept[1][0]));
	advance(100 * MS);  /* the creation times out at A */
	tw_rref_release(r); /* its delete goes to B */
	settle();
	tw_future *g = NULL;
	cr_assert_eq(tw_rref_to_here_async(kept[1][0], 1000, &g), TW_OK);
	settle();
	const tw_error *e = failure(g, TW_ETIMEDOUT);
	cr_assert_str_eq(e->msg, TW_RREF_CREATION_TIMEOUT_MSG);
	tw_future_release(g);
	cr_assert_eq(W.k[1].inc, 0, "never run");
	drop_kept(1);
	for (int i = 0; i < 3; i++)
		advance(RREF_CTL_TIMEOUT_MS * MS);
	assert_clean();
	world_down(true);
}
