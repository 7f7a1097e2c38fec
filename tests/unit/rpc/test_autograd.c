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
	cr_assert_eq(count(0), 2);
	cr_assert_eq(tw_fake_net_set_down(W.net, B_ADDR, true), TW_OK);
	tw_agent_fake_enter(W.ag[0]);
	agent_member_dead(W.ag[0], 1);
	cr_assert_eq(count(0), 1);
	cr_assert_eq(rel[0].n, 1);
	cr_assert_eq(rel[0].last, b_ctx);
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
