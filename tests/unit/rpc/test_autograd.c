/* Distributed autograd contexts (rpc/autograd.c): ids, the workers a
 * context reached, AG_CLEANUP across a chain and a cycle, contexts of a
 * dead creator, AG_BACKWARD's answers, the bound. Three embedded agents
 * on the fake net (fake_world.h). */
#include "tests/unit/rpc/fake_world.h"

#include <inttypes.h>

#include <tensorwire/autograd.h>

struct released {
	int n;
	int64_t last;
};
static struct released rel[3];

static void on_release(tw_agent *a, int64_t id, void *arg)
{
	(void)a;
	struct released *r = arg;
	r->n++;
	r->last = id;
}

static void hooks(void)
{
	memset(rel, 0, sizeof(rel));
	for (uint32_t i = 0; i < W.n; i++)
		tw_ag_set_release_hook(W.ag[i], on_release, &rel[i]);
}

static uint32_t count(uint32_t i)
{
	return tw_ag_context_count(W.ag[i]);
}

Test(autograd, ids_and_release)
{
	world_up(2, NULL);
	hooks();
	int64_t a0, a1, b0;
	cr_assert_eq(tw_ag_context_new(W.ag[0], &a0), TW_OK);
	cr_assert_eq(tw_ag_context_new(W.ag[0], &a1), TW_OK);
	cr_assert_eq(tw_ag_context_new(W.ag[1], &b0), TW_OK);
	/* (rank << 48) | n, n from 0, as torch's. */
	cr_assert_eq(a0, 0);
	cr_assert_eq(a1, 1);
	cr_assert_eq(b0, INT64_C(1) << 48);
	cr_assert_eq(tw_ag_context_worker(b0), 1);
	cr_assert(tw_ag_context_valid(W.ag[0], a1));
	cr_assert(!tw_ag_context_valid(W.ag[1], a1));
	cr_assert_eq(count(0), 2);
	int64_t m0 = tw_ag_message_id(W.ag[1]);
	cr_assert_eq(tw_ag_message_id(W.ag[1]), m0 + 1);
	cr_assert_eq(tw_ag_context_worker(m0), 1);

	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(tw_ag_context_release(W.ag[0], a0), TW_OK);
	cr_assert_eq(rel[0].n, 1);
	cr_assert_eq(rel[0].last, a0);
	cr_assert_eq(count(0), 1);
	/* torch's message for an id that is not held. */
	cr_assert_eq(tw_ag_context_release(W.ag[0], a0), TW_EINVAL);
	char want[80];
	snprintf(want, sizeof(want),
		 "Could not find autograd context with id: %" PRId64, a0);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), want);
	cr_assert_eq(rel[0].n, 1);
	/* A released id is never made again. */
	int64_t a2;
	cr_assert_eq(tw_ag_context_new(W.ag[0], &a2), TW_OK);
	cr_assert_eq(a2, 2);
	cr_assert_eq(tw_ag_context_reach(W.ag[0], a2, 7), TW_EINVAL);
	cr_assert_eq(tw_ag_context_reach(W.ag[0], -1, 1), TW_EINVAL);
	world_down(true);
}

/* A's context reached B, B's part reached C: releasing it on A ends it on
 * all three, each once, though A never spoke to C. */
Test(autograd, cleanup_follows_the_chain)
{
	world_up(3, NULL);
	hooks();
	int64_t id;
	cr_assert_eq(tw_ag_context_new(W.ag[0], &id), TW_OK);
	cr_assert_eq(tw_ag_context_reach(W.ag[0], id, 1), TW_OK);
	cr_assert_eq(tw_ag_context_reach(W.ag[1], id, 0), TW_OK);
	cr_assert_eq(tw_ag_context_reach(W.ag[1], id, 2), TW_OK);
	cr_assert_eq(tw_ag_context_reach(W.ag[2], id, 1), TW_OK);
	uint32_t w[4];
	cr_assert_eq(tw_ag_context_workers(W.ag[1], id, w, 4), 2);
	cr_assert_eq(w[0], 0);
	cr_assert_eq(w[1], 2);
	cr_assert_eq(tw_ag_context_workers(W.ag[0], id, w, 4), 1);
	cr_assert_eq(tw_ag_context_workers(W.ag[0], id + 5, w, 4), 0);

	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(tw_ag_context_release(W.ag[0], id), TW_OK);
	settle();
	for (uint32_t i = 0; i < 3; i++) {
		cr_assert_eq(count(i), 0, "worker %u holds %u", i, count(i));
		cr_assert_eq(rel[i].n, 1, "worker %u released %d times", i,
			     rel[i].n);
		cr_assert_eq(rel[i].last, id);
	}
	world_down(true);
}

/* A message of a context that comes after its cleanup (a remote() the
 * owner runs after the creator left the context, an rpc_async nobody
 * waited for) does not make the context again on its receiver, whether
 * the receiver held it when the cleanup came or not: nothing would ever
 * end it. */
Test(autograd, a_late_message_does_not_revive_an_ended_context)
{
	world_up(3, NULL);
	hooks();
	int64_t id;
	cr_assert_eq(tw_ag_context_new(W.ag[0], &id), TW_OK);
	cr_assert_eq(tw_ag_context_reach(W.ag[0], id, 1), TW_OK);
	cr_assert_eq(tw_ag_context_reach(W.ag[0], id, 2), TW_OK);
	cr_assert_eq(tw_ag_context_reach(W.ag[1], id, 0), TW_OK); /* held */
	/* worker 2 has not seen the context yet when the cleanup comes */
	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(tw_ag_context_release(W.ag[0], id), TW_OK);
	settle();
	for (uint32_t i = 1; i < 3; i++) {
		cr_assert_eq(tw_ag_context_reach(W.ag[i], id, 0), TW_EINVAL,
			     "worker %u made the ended context again", i);
		char want[80];
		snprintf(want, sizeof(want),
			 "Could not find autograd context with id: %" PRId64,
			 id);
		cr_assert_str_eq(tw_errmsg(TW_EINVAL), want);
		cr_assert_eq(count(i), 0, "worker %u holds %u", i, count(i));
		cr_assert(!tw_ag_context_valid(W.ag[i], id));
	}
	/* New contexts are unaffected. */
	int64_t id2;
	cr_assert_eq(tw_ag_context_new(W.ag[0], &id2), TW_OK);
	cr_assert_eq(tw_ag_context_reach(W.ag[2], id2, 0), TW_OK);
	cr_assert_eq(count(2), 1);
	world_down(true);
}

/* A cycle (A -> B -> C -> A): the cleanup comes back to A, which no longer
 * holds the context and acknowledges; nothing loops, nothing is left. */
Test(autograd, cleanup_ends_on_a_cycle)
{
	world_up(3, NULL);
	hooks();
	int64_t id;
	cr_assert_eq(tw_ag_context_new(W.ag[0], &id), TW_OK);
	for (uint32_t i = 0; i < 3; i++)
		cr_assert_eq(tw_ag_context_reach(W.ag[i], id, (i + 1) % 3),
			     TW_OK);
	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(tw_ag_context_release(W.ag[0], id), TW_OK);
	settle();
	for (uint32_t i = 0; i < 3; i++) {
		cr_assert_eq(count(i), 0);
		cr_assert_eq(rel[i].n, 1);
	}
	cr_assert_eq(tw_agent_outstanding(W.ag[0]), 0);
	cr_assert_eq(tw_agent_outstanding(W.ag[1]), 0);
	cr_assert_eq(tw_agent_outstanding(W.ag[2]), 0);
	world_down(true);
}

/* B dies: the contexts B created end on A (the hook says so); A's own
 * context that reached B stays until A releases it. */
Test(autograd, a_dead_creators_contexts_end)
{
	world_up(3, NULL);
	hooks();
	int64_t b_ctx, a_ctx;
	cr_assert_eq(tw_ag_context_new(W.ag[1], &b_ctx), TW_OK);
	cr_assert_eq(tw_ag_context_reach(W.ag[0], b_ctx, 1), TW_OK);
	cr_assert_eq(tw_ag_context_new(W.ag[0], &a_ctx), TW_OK);
	cr_assert_eq(tw_ag_context_reach(W.ag[0], a_ctx, 1), TW_OK);
	/* and 100 more of B's, several to a bucket */
	for (int64_t i = 0; i < 100; i++)
		cr_assert_eq(
			tw_ag_context_reach(W.ag[0],
					    (INT64_C(1) << 48) | (1000 + i), 1),
			TW_OK);
	cr_assert_eq(count(0), 102);
	cr_assert_eq(tw_fake_net_set_down(W.net, B_ADDR, true), TW_OK);
	tw_agent_fake_enter(W.ag[0]);
	agent_member_dead(W.ag[0], 1);
	cr_assert_eq(count(0), 1);
	cr_assert_eq(rel[0].n, 101);
	cr_assert_eq(tw_ag_context_worker(rel[0].last), 1);
	cr_assert(!tw_ag_context_valid(W.ag[0], b_ctx));
	cr_assert(tw_ag_context_valid(W.ag[0], a_ctx));
	/* Its release still ends: the cleanup to B fails quietly. */
	cr_assert_eq(tw_ag_context_release(W.ag[0], a_ctx), TW_OK);
	settle();
	cr_assert_eq(count(0), 0);
	tw_agent_fake_enter(W.ag[1]);
	tw_agent_shutdown(W.ag[1], false);
	W.ag[1] = NULL;
	world_down(false);
}

/* A request carrying ctx and message ids, sent as the agent sends its
 * own (call_ctl_async). */
static tw_future *backward(uint32_t from, uint32_t to, int64_t ctx)
{
	tw_value grads, items[4];
	cr_assert_eq(tw_value_list(&grads, 0), TW_OK);
	items[0] = tw_value_int(ctx);
	items[1] = tw_value_int(3);
	items[2] = grads;
	items[3] = tw_value_bool(false);
	tw_value v = {.kind = TW_KIND_TUPLE,
		      .flags = TW_VALUE_BORROWED,
		      .len = 4,
		      .u.items = items};
	tw_future *f = NULL;
	tw_agent_fake_enter(W.ag[from]);
	cr_assert_eq(call_ctl_async(W.ag[from], to, TW_MSG_AG_BACKWARD,
				    TW_MSG_RET, &v, 1000, &f),
		     TW_OK);
	tw_value_destroy(&grads);
	return f;
}

/* AG_BACKWARD to a worker without the context: torch's message; with it,
 * on a worker with no graph (C): said so. */
Test(autograd, backward_answers)
{
	world_up(2, NULL);
	int64_t id;
	cr_assert_eq(tw_ag_context_new(W.ag[0], &id), TW_OK);
	tw_future *f = backward(0, 1, id);
	settle();
	const tw_error *e = failure(f, TW_EINVAL);
	char want[80];
	snprintf(want, sizeof(want),
		 "Could not find autograd context with id: %" PRId64, id);
	cr_assert_str_eq(e->msg, want);
	cr_assert_eq(e->origin, 1);
	tw_future_release(f);
	cr_assert_eq(tw_ag_context_reach(W.ag[1], id, 0), TW_OK);
	f = backward(0, 1, id);
	settle();
	e = failure(f, TW_ENOTSUP);
	cr_assert(strstr(e->msg, "records no autograd graph") != NULL, "%s",
		  e->msg);
	tw_future_release(f);
	world_down(true);
}

/* Contexts a peer can make here are bounded: past TW_AG_MAX_CONTEXTS a
 * new one is refused with its reason, and one released makes room. */
Test(autograd, contexts_bounded)
{
	world_up(2, NULL);
	int64_t id = 0;
	for (uint32_t i = 0; i < TW_AG_MAX_CONTEXTS; i++)
		cr_assert_eq(tw_ag_context_reach(W.ag[1],
						 (INT64_C(0) << 48) | i, 0),
			     TW_OK);
	cr_assert_eq(count(1), TW_AG_MAX_CONTEXTS);
	cr_assert_eq(tw_ag_context_new(W.ag[1], &id), TW_EBUSY);
	cr_assert(strstr(tw_errmsg(TW_EBUSY), "TW_AG_MAX_CONTEXTS") != NULL);
	cr_assert_eq(tw_ag_context_reach(W.ag[1], INT64_C(1) << 40, 0),
		     TW_EBUSY);
	/* The peer's cleanup of one makes room. */
	tw_agent_fake_enter(W.ag[1]);
	cr_assert_eq(tw_ag_context_release(W.ag[1], 7), TW_OK);
	cr_assert_eq(tw_ag_context_new(W.ag[1], &id), TW_OK);
	world_down(true);
}

/* ---- forward messages ---- */

static struct seen {
	int calls;
	bool had;
	int64_t ctx, msg;
	uint8_t mask;
	uint32_t mask_len;
} seen;

static int64_t answer_msg;
static uint32_t answer_mask_len = 1;
static tw_future *parked; /* the deferred handler's answer */

/* Records what came, answers args[0] back in an envelope of its own. */
static tw_status h_ag(tw_call_ctx *ctx, const tw_value *args,
		      const tw_value *kwargs, tw_value *result, void *arg)
{
	(void)kwargs;
	const tw_ag_meta *m = tw_call_ag(ctx);
	seen.calls++;
	seen.had = m != NULL;
	if (m != NULL) {
		seen.ctx = m->context_id;
		seen.msg = m->message_id;
		seen.mask_len = m->mask_len;
		seen.mask = m->mask_len ? m->grad_mask[0] : 0;
		static uint8_t one[2] = {1, 0};
		answer_msg = tw_ag_message_id(tw_call_agent(ctx));
		tw_ag_meta out = {.context_id = m->context_id,
				  .message_id = answer_msg,
				  .grad_mask = one,
				  .mask_len = answer_mask_len};
		if (arg != NULL) { /* deferred: on the future */
			cr_assert_eq(tw_future_create(&parked), TW_OK);
			cr_assert_eq(tw_future_set_ag(parked, &out), TW_OK);
			tw_call_defer(ctx, parked);
			return TW_OK;
		}
		cr_assert_eq(tw_call_set_ag(ctx, &out), TW_OK);
	}
	return tw_value_clone(result, &args->u.items[0]);
}

static tw_value tensor_args(void)
{
	int64_t shape[1] = {2};
	tw_tensor t;
	cr_assert_eq(tw_tensor_alloc(&t, TW_FLOAT32, 1, shape), TW_OK);
	((float *)t.data)[0] = 1.5f;
	((float *)t.data)[1] = -2.0f;
	tw_value args, tv;
	cr_assert_eq(tw_value_tensor(&tv, &t), TW_OK);
	tw_tensor_release(&t);
	cr_assert_eq(tw_value_tuple(&args, 1), TW_OK);
	cr_assert_eq(tw_value_set_item(&args, 0, tv), TW_OK);
	return args;
}

static void register_ag(unsigned flags)
{
	for (uint32_t i = 0; i < W.n; i++) {
		cr_assert_eq(tw_agent_register(W.ag[i], "t::ag", h_ag, NULL,
					       flags),
			     TW_OK);
		cr_assert_eq(tw_agent_register(W.ag[i], "t::ag_defer", h_ag,
					       (void *)1, 0),
			     TW_OK);
	}
	memset(&seen, 0, sizeof(seen));
	answer_mask_len = 1;
}

/* One call in a context from A to `to`: the callee saw the ids and mask,
 * the answer's metadata is on the future, both sides hold the context
 * and know they reached each other. */
static void forward_round_trip(uint32_t to, const char *fn)
{
	int64_t id;
	cr_assert_eq(tw_ag_context_new(W.ag[0], &id), TW_OK);
	uint8_t mask = 0x1;
	tw_ag_meta m = {.context_id = id,
			.message_id = tw_ag_message_id(W.ag[0]),
			.grad_mask = &mask,
			.mask_len = 1};
	tw_value args = tensor_args();
	tw_future *f = NULL;
	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(tw_rpc_async_ag(W.ag[0], to, fn, &args, NULL, 5000, 0, &m,
				     &f),
		     TW_OK, "%s", tw_errmsg(TW_EINVAL));
	tw_value_destroy(&args);
	/* A blocking handler runs on an executor thread: wait for it. */
	POLL_UNTIL(tw_future_done(f) || parked != NULL);
	settle();
	if (parked != NULL) {
		tw_value r = tensor_args();
		cr_assert_eq(tw_future_complete(parked, &r.u.items[0]), TW_OK);
		tw_value_destroy(&r);
		tw_future_release(parked);
		parked = NULL;
		settle();
	}
	cr_assert(tw_future_done(f));
	cr_assert_eq(tw_future_status(f), TW_OK, "%s",
		     tw_future_error(f) ? tw_future_error(f)->msg : "");
	cr_assert_eq(tw_future_value(f)->kind, TW_KIND_TENSOR);
	cr_assert(seen.had);
	cr_assert_eq(seen.ctx, id);
	cr_assert_eq(seen.msg, m.message_id);
	cr_assert_eq(seen.mask_len, 1);
	cr_assert_eq(seen.mask, 0x1);
	tw_ag_meta back;
	cr_assert(tw_future_ag(f, &back));
	cr_assert_eq(back.context_id, id);
	cr_assert_eq(back.message_id, answer_msg);
	cr_assert_eq(tw_ag_context_worker(back.message_id), to);
	cr_assert_eq(back.mask_len, 1);
	cr_assert_eq(back.grad_mask[0], 1);
	tw_future_release(f);
	cr_assert(tw_ag_context_valid(W.ag[to], id));
	uint32_t w[2];
	if (to != 0) {
		cr_assert_eq(tw_ag_context_workers(W.ag[0], id, w, 2), 1);
		cr_assert_eq(w[0], to);
		cr_assert_eq(tw_ag_context_workers(W.ag[to], id, w, 2), 1);
		cr_assert_eq(w[0], 0);
	}
	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(tw_ag_context_release(W.ag[0], id), TW_OK);
	settle();
	cr_assert_eq(count(0), 0);
	cr_assert_eq(count(to), 0);
}

Test(autograd, forward_metadata_both_ways)
{
	world_up(2, NULL);
	register_ag(0);
	forward_round_trip(1, "t::ag");       /* on B's loop */
	forward_round_trip(1, "t::ag_defer"); /* a deferred answer */
	forward_round_trip(0, "t::ag");       /* a call to self */
	forward_round_trip(0, "t::ag_defer");
	world_down(true);
}

Test(autograd, forward_metadata_on_the_executor)
{
	world_up(2, NULL);
	register_ag(TW_FN_BLOCKING);
	forward_round_trip(1, "t::ag");
	forward_round_trip(0, "t::ag");
	world_down(true);
}

/* A call without metadata carries none either way; a mask that does not
 * fit the tensors is refused at the caller (nothing sent), and an answer
 * whose mask does not fit comes back as an error saying so. */
Test(autograd, forward_metadata_refused)
{
	world_up(2, NULL);
	register_ag(0);
	tw_value args = tensor_args();
	tw_future *f = NULL;
	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(tw_rpc_async_id(W.ag[0], 1, "t::ag", &args, NULL, 5000,
				     &f),
		     TW_OK);
	settle();
	cr_assert_eq(tw_future_status(f), TW_OK);
	cr_assert(!seen.had);
	cr_assert(!tw_future_ag(f, NULL));
	tw_future_release(f);

	int64_t id;
	cr_assert_eq(tw_ag_context_new(W.ag[0], &id), TW_OK);
	uint8_t mask[2] = {1, 0};
	tw_ag_meta m = {.context_id = id,
			.message_id = 1,
			.grad_mask = mask,
			.mask_len = 2};
	cr_assert_eq(tw_rpc_async_ag(W.ag[0], 1, "t::ag", &args, NULL, 5000, 0,
				     &m, &f),
		     TW_EINVAL);
	cr_assert(strstr(tw_errmsg(TW_EINVAL), "grad_mask") != NULL, "%s",
		  tw_errmsg(TW_EINVAL));
	cr_assert_null(f);
	m.context_id = -3;
	cr_assert_eq(tw_rpc_async_ag(W.ag[0], 1, "t::ag", &args, NULL, 5000, 0,
				     &m, &f),
		     TW_EINVAL);

	m.context_id = id;
	m.mask_len = 1;
	answer_mask_len = 2; /* the handler's answer will not fit */
	cr_assert_eq(tw_rpc_async_ag(W.ag[0], 1, "t::ag", &args, NULL, 5000, 0,
				     &m, &f),
		     TW_OK);
	settle();
	const tw_error *e = failure(f, TW_EINVAL);
	cr_assert(strstr(e->msg, "cannot be sent") != NULL, "%s", e->msg);
	tw_future_release(f);
	tw_value_destroy(&args);
	world_down(true);
}

/* A callee at its bound of contexts refuses a call that would bring a new
 * one, saying why; calls in contexts it holds still pass. */
Test(autograd, forward_into_a_full_table)
{
	world_up(2, NULL);
	register_ag(0);
	int64_t held;
	cr_assert_eq(tw_ag_context_new(W.ag[0], &held), TW_OK);
	cr_assert_eq(tw_ag_context_reach(W.ag[1], held, 0), TW_OK);
	for (uint32_t i = 1; i < TW_AG_MAX_CONTEXTS; i++)
		cr_assert_eq(tw_ag_context_reach(W.ag[1],
						 (INT64_C(1) << 48) | i, 0),
			     TW_OK);
	int64_t fresh;
	cr_assert_eq(tw_ag_context_new(W.ag[0], &fresh), TW_OK);
	uint8_t mask = 1;
	tw_ag_meta m = {.context_id = fresh,
			.message_id = 9,
			.grad_mask = &mask,
			.mask_len = 1};
	tw_value args = tensor_args();
	tw_future *f = NULL;
	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(tw_rpc_async_ag(W.ag[0], 1, "t::ag", &args, NULL, 5000, 0,
				     &m, &f),
		     TW_OK);
	settle();
	const tw_error *e = failure(f, TW_EBUSY);
	cr_assert(strstr(e->msg, "TW_AG_MAX_CONTEXTS") != NULL, "%s", e->msg);
	cr_assert_eq(seen.calls, 0);
	tw_future_release(f);
	m.context_id = held;
	cr_assert_eq(tw_rpc_async_ag(W.ag[0], 1, "t::ag", &args, NULL, 5000, 0,
				     &m, &f),
		     TW_OK);
	settle();
	cr_assert_eq(tw_future_status(f), TW_OK);
	tw_future_release(f);
	tw_value_destroy(&args);
	world_down(true);
}

/* ---- the backward pass's messages ---- */

static struct bw_seen {
	int calls;
	int64_t ctx, msg;
	uint32_t ngrads;
	bool first_is_tensor, second_is_none, retain;
	float g0;
} bw;
static tw_status bw_fail = TW_OK;
static tw_future *bw_parked;

static tw_status h_backward(tw_call_ctx *ctx, const tw_value *args,
			    const tw_value *kwargs, tw_value *result, void *arg)
{
	bw.calls++;
	cr_assert_eq(args->len, 4);
	cr_assert_eq(kwargs->len, 0);
	bw.ctx = args->u.items[0].u.i;
	bw.msg = args->u.items[1].u.i;
	const tw_value *g = &args->u.items[2];
	bw.ngrads = g->len;
	bw.first_is_tensor = g->len > 0 && g->u.items[0].kind == TW_KIND_TENSOR;
	bw.second_is_none = g->len > 1 && g->u.items[1].kind == TW_KIND_NONE;
	if (bw.first_is_tensor)
		bw.g0 = ((const float *)g->u.items[0].u.tensor->data)[0];
	bw.retain = args->u.items[3].u.b;
	if (arg != NULL) {
		cr_assert_eq(tw_future_create(&bw_parked), TW_OK);
		tw_call_defer(ctx, bw_parked);
		return TW_OK;
	}
	if (bw_fail != TW_OK)
		return tw_value_error(result, bw_fail, 1,
				      "gradient shape mismatch") == TW_OK
			       ? bw_fail
			       : TW_ENOMEM;
	*result = tw_value_none();
	return TW_OK;
}

static tw_future *send_grads(int64_t id, bool retain)
{
	tw_value grads = tensor_args(); /* (tensor,) */
	grads.kind = TW_KIND_LIST;
	tw_value l;
	cr_assert_eq(tw_value_list(&l, 2), TW_OK);
	tw_value t;
	cr_assert_eq(tw_value_clone(&t, &grads.u.items[0]), TW_OK);
	tw_value_set_item(&l, 0, t);
	tw_value_destroy(&grads);
	tw_future *f = NULL;
	tw_agent_fake_enter(W.ag[0]);
	cr_assert_eq(tw_ag_backward_async(W.ag[0], 1, id, 77, &l, retain, 5000,
					  &f),
		     TW_OK, "%s", tw_errmsg(TW_EINVAL));
	tw_value_destroy(&l);
	return f;
}

static void backward_served(unsigned flags, void *arg)
{
	world_up(2, NULL);
	memset(&bw, 0, sizeof(bw));
	bw_fail = TW_OK;
	cr_assert_eq(tw_ag_set_backward_handler(W.ag[1], h_backward, arg,
						flags),
		     TW_OK);
	cr_assert_eq(tw_ag_set_backward_handler(W.ag[1], h_backward, arg,
						flags),
		     TW_EBUSY);
	int64_t id;
	cr_assert_eq(tw_ag_context_new(W.ag[0], &id), TW_OK);
	cr_assert_eq(tw_ag_context_reach(W.ag[1], id, 0), TW_OK);
	tw_future *f = send_grads(id, true);
	POLL_UNTIL(tw_future_done(f) || bw_parked != NULL);
	if (bw_parked != NULL) {
		settle();
		cr_assert(!tw_future_done(f)); /* the part is not done yet */
		tw_value none = tw_value_none();
		cr_assert_eq(tw_future_complete(bw_parked, &none), TW_OK);
		tw_future_release(bw_parked);
		bw_parked = NULL;
	}
	POLL_UNTIL(tw_future_done(f));
	cr_assert_eq(tw_future_status(f), TW_OK, "%s",
		     tw_future_error(f) ? tw_future_error(f)->msg : "");
	cr_assert_eq(tw_future_value(f)->kind, TW_KIND_NONE);
	cr_assert_eq(bw.calls, 1);
	cr_assert_eq(bw.ctx, id);
	cr_assert_eq(bw.msg, 77);
	cr_assert_eq(bw.ngrads, 2);
	cr_assert(bw.first_is_tensor && bw.second_is_none && bw.retain);
	cr_assert_eq(bw.g0, 1.5f);
	tw_future_release(f);

	/* An error in this worker's part reaches the sender, with its kind,
	 * message and origin. */
	if (arg == NULL) {
		bw_fail = TW_EVALUE;
		f = send_grads(id, false);
		POLL_UNTIL(tw_future_done(f));
		const tw_error *e = failure(f, TW_EVALUE);
		cr_assert_str_eq(e->msg, "gradient shape mismatch");
		cr_assert_eq(e->origin, 1);
		tw_future_release(f);
	}
	world_down(true);
}

Test(autograd, backward_on_the_loop)
{
	backward_served(0, NULL);
}

Test(autograd, backward_on_the_executor)
{
	backward_served(TW_FN_BLOCKING, NULL);
}

Test(autograd, backward_deferred)
{
	backward_served(0, (void *)1);
}

/* What tw_ag_backward_async refuses before sending. */
Test(autograd, backward_refused_at_the_sender)
{
	world_up(2, NULL);
	tw_value l;
	cr_assert_eq(tw_value_list(&l, 1), TW_OK);
	tw_future *f = NULL;
	tw_agent_fake_enter(W.ag[0]);
	/* its own part runs in process */
	cr_assert_eq(tw_ag_backward_async(W.ag[0], 0, 0, 1, &l, false, 100, &f),
		     TW_EINVAL);
	cr_assert(strstr(tw_errmsg(TW_EINVAL), "AG_BACKWARD") != NULL);
	/* a gradient that is not a tensor or None */
	tw_value_set_item(&l, 0, tw_value_int(3));
	cr_assert_eq(tw_ag_backward_async(W.ag[0], 1, 0, 1, &l, false, 100, &f),
		     TW_EINVAL);
	tw_value i = tw_value_int(1);
	cr_assert_eq(tw_ag_backward_async(W.ag[0], 1, 0, 1, &i, false, 100, &f),
		     TW_EINVAL);
	cr_assert_null(f);
	tw_value_destroy(&l);
	world_down(true);
}
