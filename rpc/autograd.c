/* Distributed autograd contexts (include/tensorwire/autograd.h,
 * docs/autograd.md): the table of contexts held here, the workers each
 * reached, AG_CLEANUP sent and served, contexts of a dead creator ended.
 * Contexts are made once per training step, not per call: one mutex. */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/autograd.h>

#include "dataplane/err.h"
#include "dataplane/log.h"
#include "rpc/agent_impl.h"
#include "rpc/registry.h"

#define AG_BUCKETS 1024u
#define AG_ENDED 1024u /* recently released ids remembered */
#define AG_ID_BITS 48
#define AG_COUNTER_MAX ((INT64_C(1) << AG_ID_BITS) - 1)

struct ag_ctx {
	struct ag_ctx *next; /* in its bucket */
	int64_t id;
	uint64_t reach[]; /* one bit per worker */
};

struct ag_table {
	pthread_mutex_t mu;
	struct ag_ctx *b[AG_BUCKETS];
	uint32_t count;
	uint32_t words; /* of a reach bitmap: world / 64, rounded up */
	int64_t next_ctx, next_msg;
	tw_ag_release_fn hook;
	void *hook_arg;
	_Atomic(struct reg_entry *) backward; /* set once */
	/* The last AG_ENDED ids released here, held or not: a message of
	 * such a context that comes late (a remote() whose owner runs it
	 * after the creator left the context, an rpc_async not waited for)
	 * must not make it again, for nothing would ever end it. Ids are
	 * never reused, so a hit is never a new context. */
	int64_t ended[AG_ENDED];
	uint32_t ended_next;
};

/* Under mu. */
static bool ended(const struct ag_table *t, int64_t id)
{
	for (uint32_t i = 0; i < AG_ENDED; i++)
		if (t->ended[i] == id)
			return true;
	return false;
}

static uint32_t bucket(int64_t id)
{
	uint64_t x = (uint64_t)id * 0x9e3779b97f4a7c15ull;
	return (uint32_t)(x >> 54) % AG_BUCKETS;
}

tw_status ag_init(tw_agent *a)
{
	struct ag_table *t = calloc(1, sizeof(*t));
	if (t == NULL || pthread_mutex_init(&t->mu, NULL) != 0) {
		free(t);
		return tw_fail_static(TW_ENOMEM,
				      "out of memory for the autograd table");
	}
	for (uint32_t i = 0; i < AG_ENDED; i++)
		t->ended[i] =
			-1; /* ids are >= 0: context 0 is rank 0's first */
	a->ag = t;
	return TW_OK;
}

void ag_fini(tw_agent *a)
{
	struct ag_table *t = a->ag;
	if (t == NULL)
		return;
	for (uint32_t i = 0; i < AG_BUCKETS; i++)
		while (t->b[i] != NULL) {
			struct ag_ctx *c = t->b[i];
			t->b[i] = c->next;
			free(c);
		}
	free(atomic_load(&t->backward));
	pthread_mutex_destroy(&t->mu);
	free(t);
	a->ag = NULL;
}

/* Under mu. */
static struct ag_ctx **find(struct ag_table *t, int64_t id)
{
	struct ag_ctx **pp = &t->b[bucket(id)];
	while (*pp != NULL && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

/* Under mu: the context, made if absent (NULL at the bound, or without
 * memory: *st says which). */
static struct ag_ctx *get_or_make(tw_agent *a, int64_t id, tw_status *st)
{
	struct ag_table *t = a->ag;
	struct ag_ctx **pp = find(t, id);
	if (*pp != NULL)
		return *pp;
	if (ended(t, id)) {
		*st = tw_fail(
			TW_EINVAL,
			"Could not find autograd context with id: %" PRId64,
			id);
		return NULL;
	}
	if (t->count >= TW_AG_MAX_CONTEXTS) {
		*st = tw_fail(TW_EBUSY,
			      "worker '%s' holds %u autograd contexts, its "
			      "limit (TW_AG_MAX_CONTEXTS): context %" PRId64
			      " refused",
			      a->name, t->count, id);
		return NULL;
	}
	if (t->words == 0)
		t->words = (a->world + 63) / 64;
	struct ag_ctx *c = calloc(1, sizeof(*c) + t->words * sizeof(uint64_t));
	if (c == NULL) {
		*st = tw_fail_static(TW_ENOMEM,
				     "out of memory for an autograd context");
		return NULL;
	}
	c->id = id;
	c->next = NULL;
	*pp = c;
	t->count++;
	return c;
}

tw_status tw_ag_context_new(tw_agent *a, int64_t *id)
{
	if (a == NULL || id == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_ag_context_new: no agent or no id");
	*id = -1;
	if (atomic_load(&a->state) != AGENT_RUNNING)
		return tw_fail_static(TW_ESHUTDOWN,
				      "the agent is not running: no new "
				      "autograd context");
	if (a->rank > 0xffffu)
		return tw_fail(TW_ENOTSUP,
			       "worker id %u does not fit the 16 bits an "
			       "autograd context id has for it",
			       a->rank);
	struct ag_table *t = a->ag;
	tw_status st = TW_OK;
	pthread_mutex_lock(&t->mu);
	if (t->next_ctx > AG_COUNTER_MAX) {
		st = tw_fail_static(TW_EOVERFLOW,
				    "this worker has used all 2^48 autograd "
				    "context ids");
	} else {
		int64_t v = ((int64_t)a->rank << AG_ID_BITS) | t->next_ctx;
		if (get_or_make(a, v, &st) != NULL) {
			t->next_ctx++;
			*id = v;
		}
	}
	pthread_mutex_unlock(&t->mu);
	return st;
}

int64_t tw_ag_message_id(tw_agent *a)
{
	struct ag_table *t = a->ag;
	pthread_mutex_lock(&t->mu);
	int64_t v = ((int64_t)(a->rank & 0xffffu) << AG_ID_BITS) |
		    (t->next_msg & AG_COUNTER_MAX);
	t->next_msg++;
	pthread_mutex_unlock(&t->mu);
	return v;
}

bool tw_ag_context_valid(const tw_agent *a, int64_t id)
{
	if (a == NULL || a->ag == NULL)
		return false;
	struct ag_table *t = a->ag;
	pthread_mutex_lock(&t->mu);
	bool ok = *find(t, id) != NULL;
	pthread_mutex_unlock(&t->mu);
	return ok;
}

tw_status tw_ag_context_reach(tw_agent *a, int64_t id, uint32_t w)
{
	if (a == NULL || id < 0 || w >= a->world)
		return tw_fail(TW_EINVAL,
			       "autograd context %" PRId64 " cannot reach "
			       "worker %u (world size %u)",
			       id, w, a != NULL ? a->world : 0);
	struct ag_table *t = a->ag;
	tw_status st = TW_OK;
	pthread_mutex_lock(&t->mu);
	struct ag_ctx *c = get_or_make(a, id, &st);
	if (c != NULL && w != a->rank)
		c->reach[w / 64] |= UINT64_C(1) << (w % 64);
	pthread_mutex_unlock(&t->mu);
	return st;
}

size_t tw_ag_context_workers(const tw_agent *a, int64_t id, uint32_t *out,
			     size_t cap)
{
	if (a == NULL || a->ag == NULL)
		return 0;
	struct ag_table *t = a->ag;
	size_t n = 0;
	pthread_mutex_lock(&t->mu);
	struct ag_ctx *c = *find(t, id);
	for (uint32_t w = 0; c != NULL && w < a->world; w++)
		if (c->reach[w / 64] & (UINT64_C(1) << (w % 64))) {
			if (n < cap && out != NULL)
				out[n] = w;
			n++;
		}
	pthread_mutex_unlock(&t->mu);
	return n;
}

uint32_t tw_ag_context_count(const tw_agent *a)
{
	if (a == NULL || a->ag == NULL)
		return 0;
	struct ag_table *t = a->ag;
	pthread_mutex_lock(&t->mu);
	uint32_t n = t->count;
	pthread_mutex_unlock(&t->mu);
	return n;
}

void tw_ag_set_release_hook(tw_agent *a, tw_ag_release_fn fn, void *arg)
{
	if (a == NULL)
		return;
	struct ag_table *t = a->ag;
	pthread_mutex_lock(&t->mu);
	t->hook = fn;
	t->hook_arg = arg;
	pthread_mutex_unlock(&t->mu);
}

static void cleanup_done(tw_future *f, void *arg)
{
	(void)arg;
	const tw_error *e = tw_future_error(f);
	if (e != NULL)
		TW_LOG(TW_LOG_DEBUG, "ag_cleanup_failed", "reason=\"%s\"",
		       e->msg);
}

/* Take context id out of the table; tell the workers it reached but
 * `except` (AG_CLEANUP, not waited for) when fan_out; run the hook.
 * Whether it was held. */
static bool release(tw_agent *a, int64_t id, uint32_t except, bool fan_out)
{
	struct ag_table *t = a->ag;
	pthread_mutex_lock(&t->mu);
	struct ag_ctx **pp = find(t, id), *c = *pp;
	if (c != NULL) {
		*pp = c->next;
		t->count--;
	}
	if (!ended(t, id)) {
		t->ended[t->ended_next] = id;
		t->ended_next = (t->ended_next + 1) % AG_ENDED;
	}
	tw_ag_release_fn hook = t->hook;
	void *hook_arg = t->hook_arg;
	pthread_mutex_unlock(&t->mu);
	if (c == NULL)
		return false;
	tw_value v = tw_value_int(id);
	for (uint32_t w = 0; fan_out && w < a->world; w++) {
		if (w == except || w == a->rank ||
		    !(c->reach[w / 64] & (UINT64_C(1) << (w % 64))))
			continue;
		tw_future *f = NULL;
		tw_status st = call_ctl_async(a, w, TW_MSG_AG_CLEANUP,
					      TW_MSG_ACK, &v, -1, &f);
		if (st != TW_OK) {
			TW_LOG(TW_LOG_DEBUG, "ag_cleanup_failed",
			       "context=%" PRId64 " worker=%u reason=\"%s\"",
			       id, w, tw_errmsg(st));
			continue;
		}
		if (tw_future_then(f, cleanup_done, NULL) != TW_OK)
			abort(); /* the first callback needs no allocation */
		tw_future_release(f);
	}
	free(c);
	if (hook != NULL)
		hook(a, id, hook_arg);
	return true;
}

tw_status tw_ag_context_release(tw_agent *a, int64_t id)
{
	if (a == NULL)
		return tw_fail_static(TW_EINVAL, "tw_ag_context_release: "
						 "no agent");
	if (!release(a, id, UINT32_MAX, true))
		return tw_fail(TW_EINVAL,
			       "Could not find autograd context with id: "
			       "%" PRId64,
			       id);
	return TW_OK;
}

void ag_member_dead(tw_agent *a, uint32_t rank)
{
	struct ag_table *t = a->ag;
	if (t == NULL)
		return;
	/* One pass under the lock takes them out (a peer may have made all
	 * TW_AG_MAX_CONTEXTS, and loop 0 runs this); the hook runs outside
	 * it. Every survivor learns of the death itself: no fan-out. */
	struct ag_ctx *gone = NULL;
	pthread_mutex_lock(&t->mu);
	for (uint32_t i = 0; i < AG_BUCKETS; i++)
		for (struct ag_ctx **pp = &t->b[i]; *pp != NULL;) {
			struct ag_ctx *c = *pp;
			if (tw_ag_context_worker(c->id) != rank) {
				pp = &c->next;
				continue;
			}
			*pp = c->next;
			c->next = gone;
			gone = c;
			t->count--;
		}
	tw_ag_release_fn hook = t->hook;
	void *hook_arg = t->hook_arg;
	pthread_mutex_unlock(&t->mu);
	while (gone != NULL) {
		struct ag_ctx *c = gone;
		gone = c->next;
		int64_t id = c->id;
		free(c);
		if (hook != NULL)
			hook(a, id, hook_arg);
	}
}

static void answer(const struct reply_path *p, unsigned ok_type, tw_status kind,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void answer(const struct reply_path *p, unsigned ok_type, tw_status kind,
		   const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	serve_reply(p, ok_type, kind, NULL, p->a->rank, msg);
}

tw_status tw_ag_set_backward_handler(tw_agent *a, tw_handler_fn fn, void *arg,
				     unsigned flags)
{
	if (a == NULL || fn == NULL || (flags & ~(unsigned)TW_FN_BLOCKING))
		return tw_fail_static(TW_EINVAL,
				      "tw_ag_set_backward_handler: no agent, "
				      "no handler, or unknown flags");
	struct reg_entry *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return tw_fail_static(TW_ENOMEM, "out of memory");
	e->name = "tw::ag_backward";
	e->name_len = (uint32_t)strlen(e->name);
	e->fn = fn;
	e->arg = arg;
	e->flags = flags;
	struct reg_entry *none = NULL;
	if (!atomic_compare_exchange_strong(&a->ag->backward, &none, e)) {
		free(e);
		return tw_fail_static(TW_EBUSY, "this worker's autograd "
						"backward handler is set "
						"already");
	}
	return TW_OK;
}

const struct reg_entry *ag_backward_entry(const tw_agent *a)
{
	return a->ag != NULL ? atomic_load(&a->ag->backward) : NULL;
}

tw_status tw_ag_backward_async(tw_agent *a, uint32_t to, int64_t context_id,
			       int64_t message_id, const tw_value *grads,
			       bool retain_graph, int64_t timeout_ms,
			       tw_future **out)
{
	if (out != NULL)
		*out = NULL;
	if (a == NULL || out == NULL || grads == NULL ||
	    grads->kind != TW_KIND_LIST)
		return tw_fail_static(TW_EINVAL,
				      "tw_ag_backward_async: no agent, no "
				      "future, or grads not a list");
	tw_value items[4] = {tw_value_int(context_id), tw_value_int(message_id),
			     *grads, tw_value_bool(retain_graph)};
	items[2].flags |= TW_VALUE_BORROWED;
	tw_value v = {.kind = TW_KIND_TUPLE,
		      .flags = TW_VALUE_BORROWED,
		      .len = 4,
		      .u.items = items};
	return call_ctl_async(a, to, TW_MSG_AG_BACKWARD, TW_MSG_RET, &v,
			      timeout_ms, out);
}

void ag_on_frame(struct agent_loop *l, struct conn_state *cs,
		 const tw_frame_hdr *h, tw_buf *buf, size_t off, size_t len)
{
	tw_agent *a = l->a;
	struct reply_path p = {.a = a,
			       .l = l,
			       .conn_id = cs->id,
			       .req_id = h->req_id,
			       .caller = h->src};
	if (l->closing) {
		answer(&p, TW_MSG_ACK, TW_ESHUTDOWN, "%s", AGENT_SHUTDOWN_MSG);
		return;
	}
	tw_in_msg m;
	tw_status st = tw_msg_decode(buf, off, len, h, NULL, &m);
	if (st != TW_OK) {
		stat_inc(&l->stats.bad_frames);
		answer(&p, TW_MSG_ACK, st == TW_EVERSION ? st : TW_EPROTO,
		       "malformed %s from worker '%s': %s",
		       tw_msg_type_name(h->type), agent_worker_name(a, h->src),
		       tw_errmsg(st));
		return;
	}
	/* Unknown: ended already, or never here (a cycle). */
	release(a, m.payload.u.i, h->src, true);
	tw_in_msg_release(&m);
	tw_value none = tw_value_none();
	serve_reply(&p, TW_MSG_ACK, TW_OK, &none, 0, NULL);
}
