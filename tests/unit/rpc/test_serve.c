/* Calls in (rpc/serve.c) on the fake net: deadlines carried to the callee,
 * nested and async handlers, blocking handlers on the executor, malformed
 * payloads refused with the connection kept, handler failures explained. */
#include "tests/unit/rpc/fake_world.h"

Test(serve, call_held_past_its_deadline_is_dropped_by_the_callee)
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

Test(serve, nested_async_call_a_b_c)
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

Test(serve, nested_call_fails_through_with_its_origin)
{
	world_up(3, NULL);
	tw_future *f = call(0, "B", "t::relay", 1, 1000);
	/* C dies while B waits for it: A learns, from B, that C is gone. */
	cr_assert_eq(tw_fake_net_hold(W.net, C_ADDR, B_ADDR, true), TW_OK);
	settle();
	cr_assert_eq(W.k[2].inc, 1);
	cr_assert_eq(tw_fake_net_break(W.net, B_ADDR, C_ADDR), 2);
	settle();
	const tw_error *e = failure(f, TW_EUNREACHABLE);
	cr_assert_eq(e->origin, 1, "raised on B, which lost C");
	tw_future_release(f);
	world_down(true);
}

Test(serve, malformed_payload_is_refused_and_the_connection_kept)
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
	cr_assert_eq(tw_fake_net_inject(W.net, A_ADDR, B_ADDR, frame, len),
		     TW_OK);
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

Test(serve, blocking_call_deadline_on_the_fake_clock)
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

Test(serve, handler_failures_explain_themselves)
{
	world_up(2, NULL);
	tw_value noargs;
	cr_assert_eq(tw_value_tuple(&noargs, 0), TW_OK);
	tw_future *f = NULL;
	cr_assert_eq(tw_rpc_async(W.ag[0], "B", "t::echo", &noargs, NULL, 1000,
				  &f),
		     TW_OK);
	settle();
	const tw_error *e = failure(f, TW_EINVAL);
	cr_assert_str_eq(e->msg, "function 't::echo' failed on worker 'B': "
				 "index 0 out of range for a tuple of 0");
	tw_future_release(f);
	/* Every agent runs on this thread: leave a TW_EVALUE reason on it. */
	tw_future *g;
	cr_assert_eq(tw_future_create(&g), TW_OK);
	cr_assert_eq(tw_future_fail(g, TW_EVALUE, 0, "a stale reason"), TW_OK);
	cr_assert_eq(tw_future_wait(g, 0), TW_EVALUE);
	cr_assert_str_eq(tw_errmsg(TW_EVALUE), "a stale reason");
	tw_future_release(g);
	cr_assert_eq(tw_rpc_async(W.ag[0], "B", "t::bare", &noargs, NULL, 1000,
				  &f),
		     TW_OK);
	settle();
	e = failure(f, TW_EVALUE);
	cr_assert_str_eq(e->msg, "function 't::bare' failed on worker 'B': "
				 "value error");
	tw_future_release(f);
	tw_value_destroy(&noargs);
	world_down(true);
}

/* args holding `levels` lists nested in one another: args is depth 1, its
 * item depth 2, and so on. */

/* ---- deferred errors name the callee --------------------------------------- */

static tw_future *call_args(uint32_t from, const char *to, const char *fn,
			    tw_value *args)
{
	tw_future *f = NULL;
	tw_status st = tw_rpc_async(W.ag[from], to, fn, args, NULL, 10000, &f);
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	tw_value_destroy(args);
	return f;
}

/* Async: answers with a future it fails itself, as handlers do (origin
 * left 0, the caller's id here). */
static tw_status h_defer_fail(tw_call_ctx *ctx, const tw_value *args,
			      const tw_value *kwargs, tw_value *result,
			      void *arg)
{
	(void)args;
	(void)kwargs;
	(void)result;
	(void)arg;
	tw_future *f;
	cr_assert_eq(tw_future_create(&f), TW_OK);
	tw_call_defer(ctx, f);
	tw_future_fail(f, TW_EVALUE, 0, "deferred and failed");
	tw_future_release(f);
	return TW_OK;
}

static tw_status setup_defer(tw_agent *a, void *arg)
{
	tw_status st = setup(a, arg);
	if (st == TW_OK)
		st = tw_agent_register(a, "t::defer_fail", h_defer_fail, NULL,
				       0);
	return st;
}

static void with_defer_fail(uint32_t rank, struct tw_agent_opts *o)
{
	(void)rank;
	o->setup = setup_defer;
}

Test(serve, deferred_error_names_the_callee_and_relayed_ones_their_origin)
{
	world_up(3, with_defer_fail);
	tw_future *f = call(0, "B", "t::defer_fail", 0, 1000);
	settle();
	const tw_error *e = failure(f, TW_EVALUE);
	cr_assert_str_eq(e->msg, "deferred and failed");
	cr_assert_eq(e->origin, 1, "raised on B, not by the caller A");
	tw_future_release(f);

	/* B relays to C's t::inc, which fails on C: C stays the origin. */
	tw_value args, s;
	cr_assert_eq(tw_value_cstring(&s, "not an int"), TW_OK);
	cr_assert_eq(tw_value_tuple(&args, 1), TW_OK);
	tw_value_set_item(&args, 0, s);
	f = call_args(0, "B", "t::relay", &args);
	settle();
	e = failure(f, TW_EINVAL);
	cr_assert_eq(e->origin, 2, "raised on C");
	tw_future_release(f);
	world_down(true);
}

/* ---- builtins within bounds, big ones off the loop ------------------------ */

/* args: one float32 tensor of n ones (owned). */
static tw_value ones_args(int64_t n)
{
	tw_tensor t;
	cr_assert_eq(tw_tensor_alloc(&t, TW_FLOAT32, 1, &n), TW_OK);
	for (int64_t i = 0; i < n; i++)
		((float *)t.data)[i] = 1.0f;
	tw_value args, v;
	cr_assert_eq(tw_value_tensor(&v, &t), TW_OK);
	tw_tensor_release(&t);
	cr_assert_eq(tw_value_tuple(&args, 1), TW_OK);
	tw_value_set_item(&args, 0, v);
	return args;
}

static float result_float0(tw_future *f)
{
	cr_assert_eq(tw_future_status(f), TW_OK, "%s",
		     tw_future_error(f) ? tw_future_error(f)->msg : "?");
	const tw_value *v = tw_future_value(f);
	cr_assert_eq(v->kind, TW_KIND_TENSOR);
	return ((const float *)v->u.tensor->data)[0];
}

static void small_loop_work(uint32_t rank, struct tw_agent_opts *o)
{
	(void)rank;
	o->loop_work_max = 1000;
}

Test(serve, big_builtin_runs_on_the_executor_and_small_ones_on_the_loop)
{
	world_up(2, small_loop_work);
	/* Small: on B's loop, answered within the settle. */
	tw_value a = ones_args(10);
	tw_future *s = call_args(0, "B", "aten::sum", &a);
	settle();
	cr_assert(tw_future_done(s));
	cr_assert_eq(result_float0(s), 10.0f);
	cr_assert_eq(stats(1).offloaded, 0);
	cr_assert_eq(stats(1).exec_jobs, 0);

	/* Big (work 100000 > 1000): B's loop hands it to an executor
	 * thread, which decodes it again and runs it there. */
	a = ones_args(100000);
	tw_future *f = call_args(0, "B", "aten::sum", &a);
	POLL_UNTIL(tw_future_done(f));
	cr_assert_eq(result_float0(f), 100000.0f);
	struct tw_agent_stats sb = stats(1);
	cr_assert_eq(sb.offloaded, 1);
	cr_assert_eq(sb.exec_jobs, 1, "run by an executor thread");
	cr_assert_eq(sb.limit_refusals, 0);

	/* A call to self takes the same way. */
	a = ones_args(5000);
	tw_future *g = call_args(1, "B", "aten::neg", &a);
	POLL_UNTIL(tw_future_done(g));
	cr_assert_eq(result_float0(g), -1.0f);
	cr_assert_eq(stats(1).offloaded, 2);
	cr_assert_eq(stats(1).exec_jobs, 2);
	tw_future_release(s);
	tw_future_release(f);
	tw_future_release(g);
	world_down(true);
}

Test(serve, builtin_over_its_bounds_fails_with_the_option_named)
{
	world_up(2, NULL);
	tw_value args, sz;
	cr_assert_eq(tw_value_list(&sz, 2), TW_OK);
	tw_value_set_item(&sz, 0, tw_value_int(1 << 20));
	tw_value_set_item(&sz, 1, tw_value_int(1 << 20));
	cr_assert_eq(tw_value_tuple(&args, 1), TW_OK);
	tw_value_set_item(&args, 0, sz);
	tw_future *f = call_args(0, "B", "aten::ones", &args);
	settle();
	const tw_error *e = failure(f, TW_ERUNTIME);
	cr_assert(strstr(e->msg, "tw_agent_opts.max_tensor_elems") != NULL,
		  "%s", e->msg);
	cr_assert_eq(e->origin, 1);
	cr_assert_eq(stats(1).limit_refusals, 1);
	tw_future_release(f);
	/* The worker goes on serving. */
	f = call(0, "B", "t::inc", 1, 1000);
	settle();
	cr_assert_eq(result_int(f), 2);
	tw_future_release(f);
	world_down(true);
}

/* ---- backpressure: a peer that does not read its answers ------------------ */

/* B's transport, wrapped: while bp.stuck, B's answers to anyone stay
 * unsent (a peer whose receive window is shut); B's pause holds the
 * frames A sends to B in the net, as TCP flow control would. */
static struct {
	struct tw_transport_ops ops;
	const struct tw_transport_ops *real;
	bool stuck;
	struct {
		tw_transport *t;
		tw_conn *c;
		struct tw_send_req *r;
	} q[4096];
	uint32_t n, max_n;
	int pauses, resumes;
} bp;

static tw_status bp_send(tw_transport *t, tw_conn *c, struct tw_send_req *r)
{
	if (bp.stuck && r->type != TW_MSG_CALL) {
		cr_assert_lt(bp.n, 4096, "the backlog grew without bound");
		bp.q[bp.n].t = t;
		bp.q[bp.n].c = c;
		bp.q[bp.n].r = r;
		if (++bp.n > bp.max_n)
			bp.max_n = bp.n;
		return TW_OK;
	}
	return bp.real->send(t, c, r);
}

static void bp_pause(tw_transport *t, tw_conn *c, bool paused)
{
	(void)t;
	(void)c;
	if (paused)
		bp.pauses++;
	else
		bp.resumes++;
	cr_assert_eq(tw_fake_net_hold(W.net, A_ADDR, B_ADDR, paused), TW_OK);
}

static void small_backlog(uint32_t rank, struct tw_agent_opts *o)
{
	(void)rank;
	o->reply_backlog_max = 64;
}

Test(serve, reply_backlog_is_bounded_by_pausing_the_peer)
{
	world_up(3, small_backlog);
	memset(&bp, 0, sizeof(bp));
	tw_transport *t = W.ag[1]->loops[0].t;
	bp.real = t->ops;
	bp.ops = *t->ops;
	bp.ops.send = bp_send;
	bp.ops.pause = bp_pause;
	t->ops = &bp.ops;
	bp.stuck = true;

	/* A sends 1000 calls and reads none of the answers. */
	enum { N = 1000 };
	static tw_future *fs[N];
	for (int i = 0; i < N; i++)
		fs[i] = call(0, "B", "t::inc", i, 0);
	settle();
	cr_assert_eq(bp.pauses, 1);
	cr_assert_eq(stats(1).rx_pauses, 1);
	/* B stopped reading past its bound (64): the answers that wait are
	 * those plus what the transport had already read when it paused
	 * (the fake net hands up a poll's arrivals together: one loop
	 * iteration of A's sends, at most 64). The rest of A's calls wait
	 * in the net (the peer's socket), not in B. */
	cr_assert_gt(bp.max_n, 64);
	cr_assert_leq(bp.max_n, 64 + 64, "%u answers queued", bp.max_n);
	cr_assert_eq(W.k[1].inc, (int)bp.max_n);
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), N - bp.max_n);
	/* Stays so: B reads nothing more from A while it cannot answer. */
	settle();
	cr_assert_eq(W.k[1].inc, (int)bp.max_n);

	/* Another member is served meanwhile (its answers flow). */
	bp.stuck = false;
	tw_future *g = call(2, "B", "t::inc", 7, 1000);
	settle();
	cr_assert_eq(result_int(g), 8);
	tw_future_release(g);
	cr_assert_eq(bp.resumes, 0, "A's backlog has not drained");

	/* A reads again: the backlog drains, B reads A again, all done. */
	for (uint32_t i = 0; i < bp.n; i++)
		cr_assert_eq(bp.real->send(bp.q[i].t, bp.q[i].c, bp.q[i].r),
			     TW_OK);
	bp.n = 0;
	settle();
	/* (The net then hands B every held call at once, more than its
	 * bound: it may pause again, and resumes as each drains.) */
	cr_assert_geq(bp.resumes, 1);
	cr_assert_eq(bp.resumes, bp.pauses, "left paused");
	for (int i = 0; i < N; i++) {
		cr_assert_eq(result_int(fs[i]), i + 1);
		tw_future_release(fs[i]);
	}
	cr_assert_eq(W.k[1].inc, N + 1);
	cr_assert_eq(stats(0).conns_closed + stats(1).conns_closed, 0);
	world_down(true);
}

static void tiny_backlog(uint32_t rank, struct tw_agent_opts *o)
{
	(void)rank;
	o->reply_backlog_max = 4;
	o->exec_per_peer_max = 0; /* the calls' bound alone */
}

/* Calls waiting for the executor pin their frames: they count in the
 * connection's backlog too. */
Test(serve, calls_queued_for_the_executor_count_in_the_backlog)
{
	world_up(3, tiny_backlog);
	memset(&bp, 0, sizeof(bp));
	tw_transport *t = W.ag[1]->loops[0].t;
	bp.real = t->ops;
	bp.ops = *t->ops;
	bp.ops.send = bp_send; /* bp.stuck false: sends go through */
	bp.ops.pause = bp_pause;
	t->ops = &bp.ops;
	atomic_store(&block_gate, 0);
	atomic_store(&block_runs, 0);

	enum { N = 20 };
	tw_future *fs[N];
	for (int i = 0; i < N; i++) {
		fs[i] = call(0, "B", "t::block", i, 0);
		settle();
	}
	POLL_UNTIL(atomic_load(&block_runs) == 1);
	/* One runs, four wait; the fifth passed the bound: B stopped
	 * reading A, whose other calls wait in the net. */
	cr_assert_eq(bp.pauses, 1);
	cr_assert_eq(W.ag[1]->loops[0].stats.rx_pauses, 1);
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), N - 5);
	/* C is served meanwhile (by the loop: t::inc). */
	tw_future *g = call(2, "B", "t::inc", 1, 1000);
	settle();
	cr_assert_eq(result_int(g), 2);
	tw_future_release(g);

	atomic_store(&block_gate, 1);
	for (int i = 0; i < N; i++) {
		POLL_UNTIL(tw_future_done(fs[i]));
		cr_assert_eq(result_int(fs[i]), i);
		tw_future_release(fs[i]);
	}
	cr_assert_geq(bp.resumes, 1);
	settle();
	cr_assert_eq(bp.resumes, bp.pauses, "left paused");
	cr_assert_eq(atomic_load(&block_runs), N);
	world_down(true);
}

/* B's pause, counted, then done for real (per connection: the fake net
 * holds only the paused one's frames). */
static void bp_pause_real(tw_transport *t, tw_conn *c, bool paused)
{
	if (paused)
		bp.pauses++;
	else
		bp.resumes++;
	bp.real->pause(t, c, paused);
}

static void bp_wrap(bool real_pause)
{
	memset(&bp, 0, sizeof(bp));
	tw_transport *t = W.ag[1]->loops[0].t;
	bp.real = t->ops;
	bp.ops = *t->ops;
	bp.ops.send = bp_send;
	bp.ops.pause = real_pause ? bp_pause_real : bp_pause;
	t->ops = &bp.ops;
}

/* Another authenticated connection from A to B; A's calls to B go on it
 * from now on. */
static struct conn_state *a_to_b_again(void)
{
	struct agent_loop *la = &W.ag[0]->loops[0];
	tw_agent_fake_enter(W.ag[0]);
	la->out[1] = NULL;
	tw_status st = TW_OK;
	struct conn_state *cs = conn_get(la, 1, &st);
	cr_assert_not_null(cs, "%s", tw_strerror(st));
	settle();
	cr_assert(cs->authed);
	return cs;
}

/* The bound is the peer's, not its connection's: A opening more
 * connections to B buys it nothing. */
Test(serve, a_peer_with_several_connections_is_bounded_as_one)
{
	world_up(3, small_backlog);
	struct agent_loop *la = &W.ag[0]->loops[0];
	enum { K = 3, N = 300 };
	struct conn_state *cs[K];
	cs[0] = la->out[1];
	for (int k = 1; k < K; k++)
		cs[k] = a_to_b_again();
	bp_wrap(true);
	bp.stuck = true;

	/* A sends N calls on each connection in turn, reading no answer. */
	static tw_future *fs[K * N];
	for (int k = 0; k < K; k++) {
		la->out[1] = cs[k];
		for (int i = 0; i < N; i++)
			fs[k * N + i] = call(0, "B", "t::inc", k * N + i, 0);
		settle();
	}
	/* The first batch passed the bound: B stopped reading all three of
	 * A's connections, and read nothing of the later batches. */
	const struct peer_load *pa = &W.ag[1]->loops[0].peers[0];
	cr_assert(pa->paused);
	cr_assert_eq(bp.pauses, K);
	cr_assert_eq(stats(1).rx_pauses, K);
	cr_assert_gt(bp.max_n, 64);
	cr_assert_leq(bp.max_n, 64 + 64, "%u answers queued", bp.max_n);
	cr_assert_eq(W.k[1].inc, (int)bp.max_n);
	cr_assert_eq(pa->calls, bp.max_n);
	settle();
	cr_assert_eq(W.k[1].inc, (int)bp.max_n);

	/* C is served meanwhile. */
	bp.stuck = false;
	tw_future *g = call(2, "B", "t::inc", 7, 1000);
	settle();
	cr_assert_eq(result_int(g), 8);
	tw_future_release(g);
	cr_assert_eq(bp.resumes, 0, "A's backlog has not drained");

	/* A reads again: every connection is read again, all done. */
	for (uint32_t i = 0; i < bp.n; i++)
		cr_assert_eq(bp.real->send(bp.q[i].t, bp.q[i].c, bp.q[i].r),
			     TW_OK);
	bp.n = 0;
	settle();
	cr_assert_eq(bp.resumes, bp.pauses, "left paused");
	for (int i = 0; i < K * N; i++) {
		cr_assert_eq(result_int(fs[i]), i + 1);
		tw_future_release(fs[i]);
	}
	cr_assert_eq(pa->calls, 0);
	cr_assert_eq(pa->bytes, 0);
	cr_assert_eq(stats(0).conns_closed + stats(1).conns_closed, 0);
	world_down(true);
}

static void exec_cap(uint32_t rank, struct tw_agent_opts *o)
{
	(void)rank;
	o->executor_threads = 4;
	o->exec_per_peer_max = 2;
}

/* Each call on the executor may make a result of max_tensor_bytes before
 * its reply counts: a peer has at most exec_per_peer_max there; the rest
 * wait (and the peer is not read) until one finishes. */
Test(serve, calls_on_the_executor_are_capped_per_peer)
{
	world_up(3, exec_cap);
	cr_assert_eq(W.ag[1]->o.exec_per_peer_max, 2);
	bp_wrap(true);
	atomic_store(&block_gate, 0);
	atomic_store(&block_runs, 0);
	atomic_store(&block_max, 0);

	/* One poll hands B all of them: two run, the rest wait. */
	enum { N = 20 };
	tw_future *fs[N];
	for (int i = 0; i < N; i++)
		fs[i] = call(0, "B", "t::block", i, 0);
	settle();
	POLL_UNTIL(atomic_load(&block_runs) == 2);
	struct peer_load *pa = &W.ag[1]->loops[0].peers[0];
	cr_assert_eq(pa->exec, 2);
	cr_assert(pa->paused);
	cr_assert_eq(bp.pauses, 1);
	/* All N held (their frames), N - 2 of them waiting their turn. */
	cr_assert_eq(pa->calls, N);
	cr_assert(!STAILQ_EMPTY(&pa->wait));
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), 0);

	/* C's blocking call runs meanwhile: another peer, a free thread. */
	tw_future *g = call(2, "B", "t::block", 7, 0);
	settle();
	POLL_UNTIL(atomic_load(&block_runs) == 3);
	for (int i = 0; i < 1000; i++) {
		poll_all();
		sched_yield();
	}
	cr_assert_eq(atomic_load(&block_runs), 3);
	cr_assert_eq(atomic_load(&block_max), 3);

	atomic_store(&block_gate, 1);
	POLL_UNTIL(tw_future_done(g));
	cr_assert_eq(result_int(g), 7);
	tw_future_release(g);
	for (int i = 0; i < N; i++) {
		POLL_UNTIL(tw_future_done(fs[i]));
		cr_assert_eq(result_int(fs[i]), i);
		tw_future_release(fs[i]);
	}
	cr_assert_leq(atomic_load(&block_max), 3, "over the cap");
	cr_assert_eq(atomic_load(&block_runs), N + 1);
	settle();
	cr_assert_eq(bp.resumes, bp.pauses, "left paused");
	cr_assert_eq(pa->exec, 0);
	cr_assert_eq(pa->calls, 0);
	cr_assert(STAILQ_EMPTY(&pa->wait));
	world_down(true);
}

static void exec_cap_tiny_bytes(uint32_t rank, struct tw_agent_opts *o)
{
	exec_cap(rank, o);
	o->reply_backlog_bytes = 1;
}

/* Nor does a call reach the executor while the peer's replies wait past
 * reply_backlog_bytes: each would add its result to them. */
Test(serve, calls_wait_for_the_executor_while_replies_pile_up)
{
	world_up(3, exec_cap_tiny_bytes);
	bp_wrap(true);
	bp.stuck = true;
	atomic_store(&block_gate, 1);
	atomic_store(&block_runs, 0);

	enum { N = 20 };
	tw_future *fs[N];
	for (int i = 0; i < N; i++)
		fs[i] = call(0, "B", "t::block", i, 0);
	settle();
	POLL_UNTIL(bp.n == 1);
	for (int i = 0; i < 1000; i++) {
		poll_all();
		sched_yield();
	}
	/* One ran (what A had us hold was within the bound then); its
	 * answer waits unsent, so the others wait too. */
	cr_assert_eq(atomic_load(&block_runs), 1);
	cr_assert_eq(bp.n, 1);
	const struct peer_load *pa = &W.ag[1]->loops[0].peers[0];
	cr_assert(pa->paused);
	cr_assert_eq(pa->exec, 0);

	bp.stuck = false;
	for (uint32_t i = 0; i < bp.n; i++)
		cr_assert_eq(bp.real->send(bp.q[i].t, bp.q[i].c, bp.q[i].r),
			     TW_OK);
	bp.n = 0;
	for (int i = 0; i < N; i++) {
		POLL_UNTIL(tw_future_done(fs[i]));
		cr_assert_eq(result_int(fs[i]), i);
		tw_future_release(fs[i]);
	}
	cr_assert_eq(atomic_load(&block_runs), N);
	settle();
	cr_assert_eq(bp.resumes, bp.pauses, "left paused");
	cr_assert_eq(pa->calls, 0);
	cr_assert_eq(pa->bytes, 0);
	world_down(true);
}
