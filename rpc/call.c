/* Client side of calls: tw_rpc_async/tw_rpc_sync, the call records, each
 * loop's pending table, response matching, timeouts and connection loss. */
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/schema.h>

#include <tensorwire/autograd.h>

#include "dataplane/err.h"
#include "dataplane/probe.h"
#include "rpc/agent_impl.h"
#include "rpc/future_impl.h"
#include "rpc/rref.h"
#include "rpc/utf8.h"
#include "rpc/value_impl.h"
#include "rpc/value_wire.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- call records ---------------------------------------------------- */

static void call_timeout(struct tw_timer *t, void *arg);

static struct call *call_get(tw_agent *a)
{
	void *p = NULL;
	struct call *c;
	if (tw_ring_mc_dequeue_burst(a->call_cache, &p, 1, NULL) == 1) {
		c = p;
		tx_record_reset(c, sizeof(*c), &c->tx);
	} else {
		c = calloc(1, sizeof(*c));
		if (c == NULL)
			return NULL;
	}
	c->a = a;
	tw_timer_init(&c->timer, call_timeout, c);
	return c;
}

static void call_put(struct call *c)
{
	tw_agent *a = c->a;
	if (c->fut != NULL)
		tw_future_release(c->fut);
	c->fut = NULL;
	tw_value_destroy(&c->self_args);
	tw_value_destroy(&c->self_kwargs);
	free(c->self_ag);
	c->self_ag = NULL;
	if (c->has_msg)
		tw_out_msg_release(&c->tx.msg);
	c->has_msg = false;
	void *p = c;
	if (tw_ring_mp_enqueue_bulk(a->call_cache, &p, 1, NULL) != 1)
		free(c);
}

void call_cache_drain(tw_agent *a)
{
	void *p;
	while (tw_ring_mc_dequeue_burst(a->call_cache, &p, 1, NULL) == 1)
		free(p);
}

/* Take c out of the pending table, its timer and its connection's list. */
static void call_detach(struct agent_loop *l, struct call *c)
{
	(void)pend_remove(&l->pend, c->req_id);
	tw_timer_cancel(tw_loop_timers(l->loop), &c->timer);
	struct conn_state *cs = c->conn;
	if (cs != NULL) {
		TAILQ_REMOVE(&cs->calls, c, clink);
		c->conn = NULL;
	}
	c->live &= (uint8_t)~CALL_PENDING;
	/* No longer outstanding before its future completes: whoever sees
	 * the future done sees the count without it. */
	atomic_fetch_sub(&c->a->outstanding, 1);
}

/* After the future is completed: the record goes back once the transport
 * is done with it too. */
static void call_settled(struct call *c)
{
	if (c->live == 0)
		call_put(c);
}

/* Count c's end: a failure of kind, or, when answered_ns is not 0, an
 * answer of kind that reached this worker then (its round trip into the
 * histograms of its function and peer). */
static inline void call_count(struct agent_loop *l, const struct call *c,
			      tw_status kind, uint64_t answered_ns)
{
	if (kind == TW_OK)
		stat_inc(&l->stats.calls_ok);
	else
		stat_inc(
			&l->stats.calls_failed[(unsigned)kind < TW_STATUS_COUNT_
						       ? kind
						       : TW_ERUNTIME]);
	if (answered_ns != 0)
		stats_rtt(&l->obs, c->fslot, c->dst,
			  answered_ns > c->t0_ns ? answered_ns - c->t0_ns : 0);
}

static void call_fail(struct agent_loop *l, struct call *c, tw_status kind,
		      const char *msg)
{
	TW_PROBE3(call_done, c->req_id, c->dst, (int)kind);
	call_count(l, c, kind, 0);
	call_detach(l, c);
	tw_future_fail(c->fut, kind, c->a->rank, msg);
	call_settled(c);
}

static void call_timeout(struct tw_timer *t, void *arg)
{
	(void)t;
	struct call *c = arg;
	char msg[160];
	snprintf(msg, sizeof(msg), AGENT_TIMEOUT_FMT, (long long)c->timeout_ms);
	stat_inc(&c->l->stats.timeouts);
	TW_PROBE3(call_timeout, c->req_id, c->dst, (long long)c->timeout_ms);
	call_fail(c->l, c, TW_ETIMEDOUT, msg);
}

static void call_tx_done(struct tx *tx, tw_status st)
{
	struct call *c = container_of(tx, struct call, tx);
	c->live &= (uint8_t)~CALL_SENDING;
	tw_out_msg_release(&tx->msg);
	c->has_msg = false;
	if (st != TW_OK && (c->live & CALL_PENDING)) {
		/* A connection ending fails its unfinished sends before its
		 * close upcall: its reason (the session acknowledged nothing,
		 * a stalled frame...) is read here, while c is still valid. */
		const char *why = c->conn != NULL && c->conn->c != NULL
					  ? c->conn->c->why
					  : NULL;
		char msg[256];
		snprintf(msg, sizeof(msg),
			 "failed to send call to worker '%s': %s%s%s%s",
			 agent_worker_name(c->a, c->dst), tw_strerror(st),
			 why != NULL ? " (" : "", why != NULL ? why : "",
			 why != NULL ? ")" : "");
		/* A closed connection means the peer is unreachable, whatever
		 * the transport called it; other kinds (fault injection) keep
		 * their own. */
		tw_status kind = st;
		if (st == TW_ESHUTDOWN || st == TW_EIO || st == TW_ENOSPC)
			kind = TW_EUNREACHABLE;
		call_fail(tx->l, c, kind, msg);
		return;
	}
	if (c->live == 0)
		call_put(c);
}

/* ---- on the loop: start a call ----------------------------------------- */

static void call_start_msg(struct tw_loop_msg *m)
{
	struct call *c = container_of(m, struct call, lmsg);
	struct agent_loop *l = c->l;
	tw_agent *a = c->a;

	if (l->closing) {
		atomic_fetch_sub(&a->outstanding, 1);
		call_count(l, c, TW_ESHUTDOWN, 0);
		tw_future_fail(c->fut, TW_ESHUTDOWN, a->rank,
			       AGENT_SHUTDOWN_MSG);
		call_settled(c);
		return;
	}
	if (pend_insert(&l->pend, c->req_id, c) != 0) {
		atomic_fetch_sub(&a->outstanding, 1);
		call_count(l, c, TW_ENOMEM, 0);
		tw_future_fail(c->fut, TW_ENOMEM, a->rank,
			       "out of memory for the pending-call table");
		call_settled(c);
		return;
	}
	c->live = CALL_PENDING;
	stat_max(&l->stats.pending_hwm, l->pend.count);
	if (c->deadline_ns != 0)
		tw_timer_arm(tw_loop_timers(l->loop), &c->timer,
			     c->deadline_ns);
	if (c->self) {
		serve_local_call(l, c);
		return;
	}
	if (__builtin_expect(agent_peer_dead(a, c->dst), 0)) {
		/* Posted before the death was known, started after this loop
		 * failed its calls to the dead worker. */
		char msg[256];
		agent_dead_reason(a, c->dst, msg, sizeof(msg));
		call_fail(l, c, TW_EUNREACHABLE, msg);
		return;
	}
	tw_status st;
	struct conn_state *cs = conn_get(l, c->dst, &st);
	if (cs == NULL) {
		char msg[384];
		tw_status kind = conn_why(l, c->dst, st, msg, sizeof(msg));
		call_fail(l, c, kind, msg);
		return;
	}
	c->conn = cs;
	TAILQ_INSERT_HEAD(&cs->calls, c, clink);
	c->live |= CALL_SENDING;
	c->tx.done = call_tx_done;
	c->tx.l = l;
	c->tx.req.type = c->mtype;
	stat_inc(&l->stats.calls_sent);
	TW_PROBE3(call_send, c->req_id, c->dst, (unsigned)c->mtype);
	conn_send(cs, &c->tx);
}

/* ---- responses ---------------------------------------------------------- */

void call_on_response(struct agent_loop *l, struct conn_state *cs,
		      const tw_frame_hdr *h, tw_buf *buf, size_t off,
		      size_t len)
{
	struct call *c = pend_find(&l->pend, h->req_id);
	if (c == NULL || c->self) {
		/* Late (after a timeout or a failed send) or never ours. A
		 * result's RRefs still end their senders' forks. */
		stat_inc(&l->stats.late_responses);
		if (h->type == TW_MSG_RET || h->type == TW_MSG_RREF_FETCH_RET)
			rref_drain(l, h, buf, off, len);
		return;
	}
	if (c->conn != cs || h->src != c->dst || h->dst != l->a->rank ||
	    (h->type != c->rtype && h->type != TW_MSG_EXCEPTION)) {
		stat_inc(&l->stats.bad_frames);
		return;
	}
	/* 0: a result; -1: a remote error (its kind is in the message) */
	TW_PROBE3(call_done, c->req_id, c->dst,
		  h->type == TW_MSG_EXCEPTION ? -1 : 0);
	call_detach(l, c);
	/* Decoded straight into the future's message slot (a tw_in_msg must
	 * not move after decoding): no copy of the decoded tree. NULL when
	 * the user completed the future by hand: nothing to deliver. */
	tw_in_msg *m = future_msg_begin(c->fut);
	/* Counted before the future completes: its waiter, once woken, finds
	 * the call in the counters. */
	tw_status kind = h->type == TW_MSG_EXCEPTION ? TW_EPROTO : TW_OK;
	/* The round trip ends when the answer is handed up: on this
	 * iteration's clock (read already: the answer came in during the
	 * iteration, at most an iteration ago), not a clock read per call. */
	uint64_t rx = tw_loop_now(l->loop);
	if (m == NULL) {
		call_count(l, c, kind, rx);
	} else {
		tw_status st = tw_msg_decode(buf, off, len, h, NULL, m);
		if (st == TW_OK && m->nrref_ > 0)
			rref_adopt(l, h->src, m);
		if (st == TW_OK) {
			/* A remote error's kind, as the future will read it. */
			const tw_value *p = &m->payload;
			if (kind != TW_OK && p->kind == TW_KIND_ERROR &&
			    p->u.err != NULL && p->u.err->kind > TW_OK &&
			    p->u.err->kind < TW_STATUS_COUNT_)
				kind = p->u.err->kind;
			call_count(l, c, kind, rx);
			future_msg_end(c->fut);
		} else {
			call_count(l, c, TW_EPROTO, rx);
			char msg[256];
			snprintf(msg, sizeof(msg),
				 "malformed response from worker '%s': %s",
				 agent_worker_name(l->a, c->dst),
				 tw_errmsg(st));
			stat_inc(&l->stats.bad_frames);
			future_msg_fail(c->fut, TW_EPROTO, l->a->rank, msg);
		}
	}
	call_settled(c);
}

void call_local_done(struct agent_loop *l, uint64_t req_id, tw_status st,
		     tw_value *v, struct ag_own *ag)
{
	struct call *c = pend_find(&l->pend, req_id);
	if (c == NULL || !c->self) {
		stat_inc(&l->stats.late_responses);
		tw_value_destroy(v);
		free(ag);
		return;
	}
	call_detach(l, c);
	/* A call to this worker: its answer may come in the iteration that
	 * made it, after the iteration's clock; read the clock. */
	call_count(l, c, st, tw_loop_clock(l->loop));
	if (ag != NULL)
		future_ag_give(c->fut, ag); /* before completion publishes */
	if (st == TW_OK)
		tw_future_complete(c->fut, v);
	else if (tw_future_fail_value(c->fut, v) != TW_OK)
		/* No error value (it could not be built): the kind alone. */
		tw_future_fail(c->fut, st, l->a->rank, NULL);
	tw_value_destroy(v);
	call_settled(c);
}

void call_conn_closed(struct agent_loop *l, struct conn_state *cs,
		      tw_status why)
{
	char msg[256];
	if (TAILQ_EMPTY(&cs->calls))
		return;
	tw_status kind = TW_EUNREACHABLE;
	if (l->closing) {
		kind = TW_ESHUTDOWN;
		snprintf(msg, sizeof(msg), "%s", AGENT_SHUTDOWN_MSG);
	} else if (cs->fail_msg != NULL) {
		/* The connection said why it failed (a refused handshake). */
		kind = cs->fail_kind;
		snprintf(msg, sizeof(msg), "%s", cs->fail_msg);
	} else {
		const char *reason = cs->c != NULL ? cs->c->why : NULL;
		snprintf(msg, sizeof(msg),
			 "worker '%s' is unreachable: connection closed "
			 "(%s%s%s)",
			 agent_worker_name(l->a, TAILQ_FIRST(&cs->calls)->dst),
			 tw_strerror(why), reason != NULL ? ": " : "",
			 reason != NULL ? reason : "");
	}
	/* Detach every call first: completing a future runs callbacks, and
	 * they must find the tables consistent. */
	struct call_list list = TAILQ_HEAD_INITIALIZER(list);
	TAILQ_CONCAT(&list, &cs->calls, clink);
	struct call *c;
	TAILQ_FOREACH(c, &list, clink)
	{
		(void)pend_remove(&l->pend, c->req_id);
		tw_timer_cancel(tw_loop_timers(l->loop), &c->timer);
		c->conn = NULL;
		c->live &= (uint8_t)~CALL_PENDING;
		atomic_fetch_sub(&l->a->outstanding, 1);
	}
	while ((c = TAILQ_FIRST(&list)) != NULL) {
		TAILQ_REMOVE(&list, c, clink);
		call_count(l, c, kind, 0);
		tw_future_fail(c->fut, kind, l->a->rank, msg);
		call_settled(c);
	}
}

void call_fail_all(struct agent_loop *l, tw_status kind, const char *msg)
{
	/* Collect first (completions may run callbacks), then fail. */
	uint32_t n = l->pend.count, k = 0;
	if (n == 0)
		return;
	struct call **v = malloc(n * sizeof(*v));
	for (uint32_t i = 0; i <= l->pend.mask && v != NULL; i++)
		if (l->pend.slots[i].v != NULL)
			v[k++] = l->pend.slots[i].v;
	if (v == NULL) {
		/* No memory for the list: fail them one by one. */
		while (l->pend.count > 0)
			for (uint32_t i = 0; i <= l->pend.mask; i++)
				if (l->pend.slots[i].v != NULL) {
					call_fail(l, l->pend.slots[i].v, kind,
						  msg);
					break;
				}
		return;
	}
	for (uint32_t i = 0; i < k; i++)
		call_detach(l, v[i]);
	for (uint32_t i = 0; i < k; i++) {
		call_count(l, v[i], kind, 0);
		tw_future_fail(v[i]->fut, kind, l->a->rank, msg);
		call_settled(v[i]);
	}
	free(v);
}

/* ---- the API ------------------------------------------------------------ */

static _Thread_local uint64_t tls_gen;
static _Thread_local uint32_t tls_idx;

/* A caller thread sticks to one loop (assigned round robin on its first
 * call), so its calls stay in order and the loop's cache stays warm; a
 * loop thread (a handler making a nested call) uses its own loop. */
static struct agent_loop *pick_loop(tw_agent *a)
{
	struct agent_loop *l = agent_tls_loop;
	if (l != NULL && l->a == a)
		return l;
	if (tls_gen != a->gen) {
		tls_gen = a->gen;
		tls_idx = atomic_fetch_add_explicit(&a->rr_next, 1,
						    memory_order_relaxed);
	}
	return &a->loops[tls_idx % a->nloops];
}

/* Mark every node of an owned tree borrowed (on) or owned again (off), so
 * a handler sees args from a call to self exactly as it sees decoded ones:
 * borrowed, whatever it copies out of them. */
static void mark_borrowed(tw_value *v, bool on, unsigned depth)
{
	if (depth > TW_VALUE_MAX_DEPTH)
		return;
	if (v->kind == TW_KIND_LIST || v->kind == TW_KIND_TUPLE) {
		for (uint32_t i = 0; i < v->len; i++)
			mark_borrowed(&v->u.items[i], on, depth + 1);
	} else if (v->kind == TW_KIND_DICT) {
		for (uint32_t i = 0; i < v->len; i++)
			mark_borrowed(&v->u.entries[i].val, on, depth + 1);
	}
	if (on)
		v->flags |= TW_VALUE_BORROWED;
	else
		v->flags &= (uint8_t)~TW_VALUE_BORROWED;
}

void call_value_lend(tw_value *v)
{
	mark_borrowed(v, true, 0);
}

void call_value_reclaim(tw_value *v)
{
	mark_borrowed(v, false, 0);
	tw_value_destroy(v);
}

void call_value_unlend(tw_value *v)
{
	mark_borrowed(v, false, 0);
}

static const tw_value empty_items[1];

void call_items_borrow(tw_value items[3], const char *fn, const tw_value *args,
		       const tw_value *kwargs)
{
	items[0] = tw_value_string_borrow(fn, strlen(fn));
	if (args != NULL) {
		items[1] = *args;
		items[1].kind = TW_KIND_TUPLE;
		items[1].flags |= TW_VALUE_BORROWED;
	} else {
		items[1] = (tw_value){.kind = TW_KIND_TUPLE,
				      .flags = TW_VALUE_BORROWED,
				      .u.items = (tw_value *)empty_items};
	}
	if (kwargs != NULL) {
		items[2] = *kwargs;
		items[2].flags |= TW_VALUE_BORROWED;
	} else {
		items[2] = (tw_value){.kind = TW_KIND_DICT,
				      .flags = TW_VALUE_BORROWED};
	}
}

static tw_status prepare_self(struct call *c, const char *fn,
			      const tw_value *args, const tw_value *kwargs)
{
	tw_agent *a = c->a;
	size_t n = strlen(fn);
	c->fn = registry_find(&a->reg, fn, n);
	if (n < sizeof(c->self_fn)) {
		memcpy(c->self_fn, fn, n + 1);
	} else {
		memcpy(c->self_fn, fn, sizeof(c->self_fn) - 4);
		memcpy(c->self_fn + sizeof(c->self_fn) - 4, "...", 4);
	}
	/* Cloned at depth 1, where the payload tuple of an encoded call
	 * would hold them: a call to self refuses the depth a call to
	 * another worker refuses. */
	tw_status st;
	if (args != NULL) {
		st = value_clone_at(&c->self_args, args, 1);
		/* Handlers always see a tuple; lists and tuples share layout. */
		if (st == TW_OK)
			c->self_args.kind = TW_KIND_TUPLE;
	} else {
		st = tw_value_tuple(&c->self_args, 0);
	}
	if (st == TW_OK)
		st = kwargs != NULL ? value_clone_at(&c->self_kwargs, kwargs, 1)
				    : tw_value_dict(&c->self_kwargs, 0);
	return st;
}

static tw_status encode_payload(struct call *c, const tw_value *payload);

static tw_status encode_call(struct call *c, const char *fn,
			     const tw_value *args, const tw_value *kwargs,
			     const tw_ag_meta *ag)
{
	/* tuple(str fn, tuple args, dict kwargs) made of borrowed views of
	 * the caller's values: the encoder reads them before we return. */
	tw_value items[3];
	call_items_borrow(items, fn, args, kwargs);
	tw_value payload = {.kind = TW_KIND_TUPLE,
			    .flags = TW_VALUE_BORROWED,
			    .len = 3,
			    .u.items = items};
	if (__builtin_expect(ag != NULL, 0)) {
		/* In an autograd envelope (docs/wire.md §5.2). */
		tw_value env_items[4];
		tw_value env = tw_msg_ag_wrap(ag, &payload, env_items);
		c->hflags = TW_FRAME_F_AUTOGRAD;
		return encode_payload(c, &env);
	}
	return encode_payload(c, &payload);
}

/* c's frame (type c->mtype) with payload, into c->tx.msg. */
static tw_status encode_payload(struct call *c, const tw_value *payload)
{
	tw_agent *a = c->a;
	tw_frame_hdr h = {0};
	h.version = TW_FRAME_VERSION;
	h.type = c->mtype;
	h.flags = c->hflags;
	h.req_id = c->req_id;
	h.src = a->rank;
	h.dst = c->dst;
	h.timeout_ms = c->timeout_ms > (int64_t)UINT32_MAX
			       ? UINT32_MAX
			       : (uint32_t)c->timeout_ms;
	tw_status st = tw_msg_encode(a->txpool, &h, payload, &c->tx.msg);
	if (st == TW_ENOSPC) /* pool empty: the heap takes over */
		st = tw_msg_encode(NULL, &h, payload, &c->tx.msg);
	if (st == TW_WIRE_FORK_NEEDED) /* RRefs in it: fork them for dst */
		st = rref_encode_forked(a, c->dst, &h, payload, &c->tx.msg);
	return st;
}

/* ---- why a call's arguments were refused --------------------------------
 *
 * The encoder (and the clone of a call to self) only says that the
 * arguments cannot be sent. On that failure path, and only there, walk
 * them again to say what and where, by the path a Python user would
 * write ("args[0]['x'][2]"). The checks follow the encoder's, in its
 * order; the depth is counted as in the payload, whose own tuple holds
 * args and kwargs at depth 2.
 */

struct diag {
	const tw_agent *a;
	char path[1024];
	size_t len;        /* of path */
	uint32_t nseg;     /* tensors so far */
	uint64_t seg_area; /* their bytes, as the frame lays them out */
};

static void diag_push(struct diag *d, size_t *mark, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void diag_push(struct diag *d, size_t *mark, const char *fmt, ...)
{
	*mark = d->len;
	if (d->len >= sizeof(d->path) - 1)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(d->path + d->len, sizeof(d->path) - d->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		d->len += (size_t)n < sizeof(d->path) - d->len
				  ? (size_t)n
				  : sizeof(d->path) - d->len - 1;
}

static void diag_pop(struct diag *d, size_t mark)
{
	d->len = mark;
	d->path[mark] = '\0';
}

static bool text_bad(const char *s, uint32_t n, bool key)
{
	if (n > 0 && s == NULL)
		return true;
	if (key && n > 0 && memchr(s, 0, n) != NULL)
		return true;
	return n > 0 && !tw_utf8_valid(s, n);
}

/* true when v (at payload depth depth) or something in it cannot be
 * sent; the reason is recorded. */
static bool diag_value(struct diag *d, const tw_value *v, unsigned depth)
{
	bool cont = v->kind == TW_KIND_LIST || v->kind == TW_KIND_TUPLE ||
		    v->kind == TW_KIND_DICT;
	if (cont && depth > TW_VALUE_MAX_DEPTH) {
		tw_fail(TW_EINVAL,
			"value nested too deep: %s is a %s at depth "
			"%u (args and kwargs are depth 1); a call's arguments "
			"may nest at most %u deep, as TW_VALUE_MAX_DEPTH (%u) "
			"counts the call's own payload tuple",
			d->path, tw_kind_name((tw_kind)v->kind), depth - 1,
			TW_VALUE_MAX_DEPTH - 1, TW_VALUE_MAX_DEPTH);
		return true;
	}
	size_t mark;
	switch (v->kind) {
	case TW_KIND_NONE:
	case TW_KIND_BOOL:
	case TW_KIND_INT:
	case TW_KIND_DOUBLE:
		return false;
	case TW_KIND_STRING:
		if (!text_bad(v->u.str, v->len, false))
			return false;
		tw_fail(TW_EINVAL, "%s is a string that is not valid UTF-8",
			d->path);
		return true;
	case TW_KIND_BYTES:
		if (v->len == 0 || v->u.str != NULL)
			return false;
		tw_fail(TW_EINVAL, "%s is a bytes value without its bytes",
			d->path);
		return true;
	case TW_KIND_TENSOR: {
		size_t span;
		if (v->u.tensor == NULL) {
			tw_fail(TW_EINVAL,
				"%s is a tensor value without its "
				"tensor",
				d->path);
			return true;
		}
		tw_status st = tw_tensor_span(v->u.tensor, &span);
		if (st != TW_OK) {
			tw_fail_wrap(TW_EINVAL, st, "%s is a malformed tensor",
				     d->path);
			return true;
		}
		if (++d->nseg > TW_FRAME_MAX_SEGS) {
			tw_fail(TW_EINVAL,
				"%s is tensor number %u of the call, "
				"over the %u a frame carries",
				d->path, d->nseg, TW_FRAME_MAX_SEGS);
			return true;
		}
		d->seg_area = ((d->seg_area + TW_FRAME_SEG_ALIGN - 1) &
			       ~(uint64_t)(TW_FRAME_SEG_ALIGN - 1)) +
			      span;
		if (d->seg_area > TW_FRAME_MAX_TOTAL) {
			tw_fail(TW_EINVAL,
				"the call's tensors reach %" PRIu64
				" bytes at %s, over the %" PRIu64 " a frame "
				"carries",
				d->seg_area, d->path,
				(uint64_t)TW_FRAME_MAX_TOTAL);
			return true;
		}
		return false;
	}
	case TW_KIND_LIST:
	case TW_KIND_TUPLE:
		if (v->len > 0 && v->u.items == NULL) {
			tw_fail(TW_EINVAL, "%s is a %s without its items",
				d->path, tw_kind_name((tw_kind)v->kind));
			return true;
		}
		for (uint32_t i = 0; i < v->len; i++) {
			diag_push(d, &mark, "[%u]", i);
			bool bad = diag_value(d, &v->u.items[i], depth + 1);
			if (bad)
				return true;
			diag_pop(d, mark);
		}
		return false;
	case TW_KIND_DICT: {
		const tw_kv *e = v->u.entries;
		if (v->len > 0 && e == NULL) {
			tw_fail(TW_EINVAL, "%s is a dict without its entries",
				d->path);
			return true;
		}
		for (uint32_t i = 0; i < v->len; i++) {
			if (e[i].key == NULL)
				continue; /* never set: not sent */
			if (text_bad(e[i].key, e[i].key_len, true)) {
				tw_fail(TW_EINVAL,
					"%s has a key that is not "
					"valid UTF-8 (or holds a NUL)",
					d->path);
				return true;
			}
			diag_push(d, &mark, "['%.32s']", e[i].key);
			bool bad = diag_value(d, &e[i].val, depth + 1);
			if (bad)
				return true;
			diag_pop(d, mark);
		}
		for (uint32_t i = 0; i < v->len; i++) {
			const tw_kv *k = &e[i];
			for (uint32_t j = 0; k->key != NULL && j < i; j++) {
				if (e[j].key == NULL ||
				    e[j].key_len != k->key_len ||
				    memcmp(e[j].key, k->key, k->key_len) != 0)
					continue;
				tw_fail(TW_EINVAL,
					"%s has the key '%.64s' "
					"twice",
					d->path, k->key);
				return true;
			}
		}
		return false;
	}
	case TW_KIND_RREF: {
		if (v->u.rref == NULL) {
			tw_fail(TW_EINVAL, "%s is an rref value without its id",
				d->path);
			return true;
		}
		const char *why = rref_value_problem(d->a, v);
		if (why != NULL)
			tw_fail(TW_EINVAL, "%s is %s", d->path, why);
		return why != NULL;
	}
	case TW_KIND_ERROR: {
		const tw_error *e = v->u.err;
		if (e != NULL && e->kind != TW_OK &&
		    (unsigned)e->kind < TW_STATUS_COUNT_ &&
		    !text_bad(e->msg, e->msg_len, false))
			return false;
		tw_fail(TW_EINVAL,
			"%s is an error value with no valid kind or "
			"message",
			d->path);
		return true;
	}
	default:
		tw_fail(TW_EINVAL, "%s has an unknown kind %u", d->path,
			v->kind);
		return true;
	}
}

/* The arguments of a call that could not be encoded (or cloned, for a
 * call to self): record why, as TW_EINVAL, or pass on what the encoder
 * said when the arguments are not at fault. */
static tw_status refuse_args(const tw_agent *a, tw_status st, const char *fn,
			     const tw_value *args, const tw_value *kwargs)
{
	if (st == TW_ENOMEM)
		return tw_fail_wrap(st, st, "cannot build the call to '%.64s'",
				    fn);
	if (st == TW_EBUSY) /* an RRef at its limit of users: said why */
		return st;
	if (text_bad(fn, (uint32_t)strnlen(fn, UINT32_MAX), false))
		return tw_fail_static(TW_EINVAL, "the function name is not "
						 "valid UTF-8");
	/* The encoder's own reason, for when the arguments are fine (an
	 * autograd mask that does not fit them, a frame over its limit). */
	char why[256];
	snprintf(why, sizeof(why), "%s", tw_errmsg(st));
	struct diag *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return tw_fail_static(TW_EINVAL, "the call's arguments cannot "
						 "be sent");
	d->a = a;
	bool found = false;
	if (args != NULL) {
		d->len = (size_t)snprintf(d->path, sizeof(d->path), "args");
		found = diag_value(d, args, 2);
	}
	if (!found && kwargs != NULL) {
		d->len = (size_t)snprintf(d->path, sizeof(d->path), "kwargs");
		found = diag_value(d, kwargs, 2);
	}
	free(d);
	if (!found) /* not the arguments: the frame as a whole */
		tw_fail(TW_EINVAL, "the call to '%.64s' cannot be encoded: %s",
			fn, why);
	return TW_EINVAL;
}

/* "None" for a NONE value (the C form of Python's None), else the type as
 * torch's messages print it. */
static const char *type_name(const tw_value *v, char *buf, size_t size)
{
	if (v->kind == TW_KIND_NONE)
		return "None";
	tw_value_type_repr(v, buf, size);
	return buf;
}

/* The checks tw_rpc_async makes before it looks at the agent's state. */
static tw_status check_call(tw_agent *a, const char *fn, const tw_value *args,
			    const tw_value *kwargs, tw_future **out)
{
	if (a == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_rpc_async: agent or out is "
				      "NULL");
	if (fn == NULL || fn[0] == '\0')
		return tw_fail_static(TW_EINVAL, "tw_rpc_async: no function "
						 "name (fn is NULL or empty)");
	char t[128];
	if (args != NULL && args->kind != TW_KIND_TUPLE &&
	    args->kind != TW_KIND_LIST)
		return tw_fail(TW_EINVAL,
			       "args must be a tuple or list (or NULL "
			       "for none), got %s",
			       type_name(args, t, sizeof(t)));
	if (kwargs != NULL && kwargs->kind != TW_KIND_DICT)
		return tw_fail(TW_EINVAL,
			       "kwargs must be a dict (or NULL for "
			       "none), got %s",
			       type_name(kwargs, t, sizeof(t)));
	return TW_OK;
}

/* A call record for dst (frames of type mtype, answered by rtype) posted
 * to loop l: its effective timeout (negative: the agent's default, read
 * now), request id and deadline on l's clock (a test's fake clock too;
 * beyond ~100 years, none). NULL, the reason recorded, when out of
 * memory. */
static inline struct call *call_record_new(tw_agent *a, struct agent_loop *l,
					   uint32_t dst, uint8_t mtype,
					   uint8_t rtype, int64_t timeout_ms)
{
	struct call *c = call_get(a);
	if (c == NULL) {
		tw_fail_static(TW_ENOMEM, "out of memory for a call record");
		return NULL;
	}
	int64_t eff = timeout_ms < 0
			      ? atomic_load_explicit(&a->default_timeout_ms,
						     memory_order_relaxed)
			      : timeout_ms;
	if (eff < 0)
		eff = 0;
	c->timeout_ms = eff;
	c->dst = dst;
	c->mtype = mtype;
	c->rtype = rtype;
	c->req_id = atomic_fetch_add_explicit(&a->next_req, 1,
					      memory_order_relaxed);
	c->fslot = STATS_NO_FN;
	c->t0_ns = tw_loop_clock(l->loop);
	if (eff > 0 && eff < (int64_t)3153600000000)
		c->deadline_ns = c->t0_ns + (uint64_t)eff * 1000000u;
	return c;
}

/* Whom a call goes to: a name to look up (name != NULL) or an id. */
struct dest {
	const char *name;
	uint32_t id;
};

static tw_status call_async_in(tw_agent *a, struct dest to, const char *fn,
			       const tw_value *args, const tw_value *kwargs,
			       int64_t timeout_ms, tw_future **out,
			       bool internal, bool waited, const tw_ag_meta *ag)
{
	if (out != NULL)
		*out = NULL;
	tw_status st = check_call(a, fn, args, kwargs, out);
	if (st != TW_OK)
		return st;
	if (to.name == NULL && to.id == UINT32_MAX)
		return tw_fail_static(TW_EINVAL, "tw_rpc_async: no destination "
						 "(to is NULL)");

	/* Counted so shutdown can wait until no thread is between the state
	 * check and the post. */
	atomic_fetch_add(&a->api_inflight, 1);
	int state = atomic_load(&a->state);
	if (internal && state == AGENT_STARTING && atomic_load(&a->joining)) {
		/* The agent's own call to self from its loop (an RRef's
		 * function, call_self_async) while init installs the
		 * members: waiting here would stop the loop init waits for;
		 * a call to self needs no member. */
		state = AGENT_RUNNING;
	} else if (state == AGENT_STARTING && atomic_load(&a->joining)) {
		/* The group has formed and a peer already calls us (a nested
		 * call from a handler) while our own init is still reading
		 * the member list: that takes moments, wait for it. On one of
		 * our loops, only until the members are known: init's last
		 * steps (admission) run on the loops, and would wait for this
		 * handler; the call is posted behind them, so it starts once
		 * the loop admitted the members. */
		bool own = agent_tls_loop != NULL && agent_tls_loop->a == a;
		while ((state = atomic_load(&a->state)) == AGENT_STARTING) {
			if (own && atomic_load(&a->members_known)) {
				state = AGENT_RUNNING;
				break;
			}
			sched_yield();
		}
	}
	if (state != AGENT_RUNNING) {
		if (state == AGENT_STARTING)
			st = tw_fail_static(TW_EINVAL,
					    "the agent has not joined "
					    "its group yet: calls start once "
					    "tw_agent_init has returned (not "
					    "from its setup callback)");
		else
			st = tw_fail_static(TW_ESHUTDOWN,
					    "the agent is shutting "
					    "down: no new calls");
		goto out;
	}
	uint32_t dst = to.id;
	if (to.name != NULL) {
		if (agent_find_worker(a, to.name, &dst) != TW_OK) {
			st = agent_no_worker(a, to.name);
			goto out;
		}
	} else if (dst >= a->world) {
		st = agent_no_worker_id(a, dst);
		goto out;
	}
	if (__builtin_expect(agent_peer_dead(a, dst), 0)) {
		st = agent_dead_fail(a, dst);
		goto out;
	}
	if (__builtin_expect(ag != NULL, 0) &&
	    (st = tw_ag_context_reach(a, ag->context_id, dst)) != TW_OK)
		goto out;

	struct agent_loop *l = pick_loop(a);
	struct call *c = call_record_new(a, l, dst, TW_MSG_CALL, TW_MSG_RET,
					 timeout_ms);
	if (c == NULL) {
		st = TW_ENOMEM;
		goto out;
	}
	c->self = dst == a->rank;
	size_t fnlen = strlen(fn);
	c->fslot = stats_fn_slot(&a->fns, fn, fnlen, registry_hash(fn, fnlen));
	st = c->self ? prepare_self(c, fn, args, kwargs)
		     : encode_call(c, fn, args, kwargs, ag);
	if (st == TW_OK && c->self && ag != NULL &&
	    (c->self_ag = ag_own_new(ag)) == NULL)
		st = tw_fail_static(TW_ENOMEM,
				    "out of memory for autograd metadata");
	c->has_msg = !c->self && st == TW_OK;
	if (st != TW_OK) {
		call_put(c);
		st = refuse_args(a, st, fn, args, kwargs);
		goto out;
	}
	if (__builtin_expect(c->has_msg && c->tx.msg.total_len > a->o.max_frame,
			     0)) {
		/* The callee would refuse it and close the connection under
		 * every other call on it: refuse it here, sending nothing. */
		uint64_t len = c->tx.msg.total_len;
		call_put(c);
		atomic_fetch_add_explicit(&a->oversize, 1,
					  memory_order_relaxed);
		st = tw_fail(TW_EOVERFLOW,
			     "call to '%s' on worker '%s' is a frame of %llu "
			     "bytes, over the limit of %llu bytes "
			     "(tw_agent_opts.max_frame)",
			     fn, agent_worker_name(a, dst),
			     (unsigned long long)len,
			     (unsigned long long)a->o.max_frame);
		goto out;
	}
	tw_future *f;
	st = tw_future_create(&f);
	if (st != TW_OK) {
		call_put(c);
		goto out;
	}
	c->fut = tw_future_retain(f);
	c->l = l;
	agent_lend_future(l, f);
	c->lmsg.fn = call_start_msg;
	atomic_fetch_add(&a->outstanding, 1);
	stat_inc(&a->api_calls);
	/* Every call goes through the loop's ring, also an embedded owner's
	 * (starting those directly saved no measurable latency and cost a
	 * fifth of the calls/s with 256 in flight: perf/RESULTS.md). From
	 * the loop's own thread the loop is awake: no wake-up fence. */
	if (l == agent_tls_loop)
		st = tw_loop_post_own(l->loop, &c->lmsg);
	else if (waited || tw_loop_lent_to_me(l->loop))
		/* The caller's wait will run the loop: it says so, or it is
		 * the thread that ran it last (one pipelining calls, whose
		 * waits then send them in batches, as an embedded owner's:
		 * waking the loop's thread for each cost pipelined calls a
		 * third of their rate). */
		st = tw_loop_post_lazy(l->loop, &c->lmsg);
	else
		st = tw_loop_post(l->loop, &c->lmsg);
	if (st != TW_OK) {
		/* Backpressure: the loop's ring is full. */
		atomic_fetch_sub(&a->outstanding, 1);
		call_put(c);
		tw_future_release(f);
		st = tw_fail_static(
			TW_ENOSPC,
			"the run loop's queue is full "
			"(" STR(AGENT_LOOP_RING) " messages): "
						 "backpressure; retry once some calls "
						 "complete");
		goto out;
	}
	*out = f;
out:
	atomic_fetch_sub(&a->api_inflight, 1);
	return st;
}

static tw_status call_async(tw_agent *a, struct dest to, const char *fn,
			    const tw_value *args, const tw_value *kwargs,
			    int64_t timeout_ms, tw_future **out, bool waited)
{
	return call_async_in(a, to, fn, args, kwargs, timeout_ms, out, false,
			     waited, NULL);
}

tw_status call_self_async(tw_agent *a, const char *fn, const tw_value *args,
			  const tw_value *kwargs, tw_future **out)
{
	return call_async_in(a, (struct dest){.id = a->rank}, fn, args, kwargs,
			     0, out, true, false, NULL);
}

tw_status tw_rpc_async(tw_agent *a, const char *to, const char *fn,
		       const tw_value *args, const tw_value *kwargs,
		       int64_t timeout_ms, tw_future **out)
{
	return call_async(a, (struct dest){.name = to, .id = UINT32_MAX}, fn,
			  args, kwargs, timeout_ms, out, false);
}

tw_status tw_rpc_async_id(tw_agent *a, uint32_t to, const char *fn,
			  const tw_value *args, const tw_value *kwargs,
			  int64_t timeout_ms, tw_future **out)
{
	return tw_rpc_async_ex(a, to, fn, args, kwargs, timeout_ms, 0, out);
}

tw_status tw_rpc_async_ex(tw_agent *a, uint32_t to, const char *fn,
			  const tw_value *args, const tw_value *kwargs,
			  int64_t timeout_ms, unsigned flags, tw_future **out)
{
	if (flags & ~(unsigned)TW_CALL_WAITED) {
		if (out != NULL)
			*out = NULL;
		return tw_fail(TW_EINVAL, "tw_rpc_async_ex: unknown flags 0x%x",
			       flags & ~(unsigned)TW_CALL_WAITED);
	}
	/* UINT32_MAX means "no destination" inside; as an id it is merely
	 * unknown, and says so. */
	if (to == UINT32_MAX && a != NULL) {
		if (out != NULL)
			*out = NULL;
		return agent_no_worker_id(a, to);
	}
	return call_async(a, (struct dest){.id = to}, fn, args, kwargs,
			  timeout_ms, out, (flags & TW_CALL_WAITED) != 0);
}

tw_status tw_rpc_async_ag(tw_agent *a, uint32_t to, const char *fn,
			  const tw_value *args, const tw_value *kwargs,
			  int64_t timeout_ms, unsigned flags,
			  const tw_ag_meta *m, tw_future **out)
{
	if (out != NULL)
		*out = NULL;
	if (flags & ~(unsigned)TW_CALL_WAITED)
		return tw_fail(TW_EINVAL, "tw_rpc_async_ag: unknown flags 0x%x",
			       flags & ~(unsigned)TW_CALL_WAITED);
	if (m == NULL || m->context_id < 0 || m->message_id < 0 ||
	    (m->mask_len > 0 && m->grad_mask == NULL))
		return tw_fail_static(TW_EINVAL,
				      "tw_rpc_async_ag: no metadata, a "
				      "negative id, or a mask without bytes");
	if (to == UINT32_MAX && a != NULL)
		return agent_no_worker_id(a, to);
	return call_async_in(a, (struct dest){.id = to}, fn, args, kwargs,
			     timeout_ms, out, false,
			     (flags & TW_CALL_WAITED) != 0, m);
}

static tw_status call_sync(tw_agent *a, struct dest to, const char *fn,
			   const tw_value *args, const tw_value *kwargs,
			   int64_t timeout_ms, tw_value *result, tw_value *err)
{
	if (result != NULL)
		*result = tw_value_none();
	if (err != NULL)
		*err = tw_value_none();
	/* Our own loop's thread: an embedded owner polls while it waits,
	 * except from inside an iteration (a handler), where, as on a loop
	 * thread, waiting would stop the loop that must deliver the answer:
	 * handlers return futures instead (tw_call_defer). */
	struct agent_loop *own = NULL;
	if (a != NULL && agent_tls_loop != NULL && agent_tls_loop->a == a)
		own = agent_tls_loop;
	if (own != NULL && (!a->o.embedded || tw_loop_in_poll(own->loop))) {
		static const char why[] = "tw_rpc_sync called on a run loop: "
					  "use tw_rpc_async and tw_call_defer";
		if (err != NULL)
			tw_value_error(err, TW_EINVAL, a->rank, why);
		return tw_fail_static(TW_EINVAL, why);
	}
	tw_future *f;
	tw_status st = call_async(a, to, fn, args, kwargs, timeout_ms, &f,
				  true);
	if (st != TW_OK) {
		/* The reason tw_rpc_async recorded stays the thread's; the
		 * error value carries it too (tw_value_error copies it before
		 * it could record anything). */
		if (err != NULL && a != NULL)
			tw_value_error(err, st, a->rank, tw_errmsg(st));
		return st;
	}
	/* The call's own deadline bounds the wait. */
	st = own != NULL ? agent_wait_own(own, f, -1) : tw_future_wait(f, -1);
	if (st == TW_OK) {
		if (result != NULL)
			st = tw_future_take_value(f, result);
	} else {
		const tw_error *e = tw_future_error(f);
		if (err != NULL && e != NULL)
			tw_value_error(err, e->kind, e->origin, e->msg);
		if (e != NULL)
			agent_explain_error(a, st, e, "%s", "");
	}
	tw_future_release(f);
	return st;
}

tw_status tw_rpc_sync(tw_agent *a, const char *to, const char *fn,
		      const tw_value *args, const tw_value *kwargs,
		      int64_t timeout_ms, tw_value *result, tw_value *err)
{
	return call_sync(a, (struct dest){.name = to, .id = UINT32_MAX}, fn,
			 args, kwargs, timeout_ms, result, err);
}

tw_status tw_rpc_sync_id(tw_agent *a, uint32_t to, const char *fn,
			 const tw_value *args, const tw_value *kwargs,
			 int64_t timeout_ms, tw_value *result, tw_value *err)
{
	if (to == UINT32_MAX && a != NULL) {
		if (result != NULL)
			*result = tw_value_none();
		if (err != NULL)
			*err = tw_value_none();
		tw_status st = agent_no_worker_id(a, to);
		if (err != NULL)
			tw_value_error(err, st, a->rank, tw_errmsg(st));
		return st;
	}
	return call_sync(a, (struct dest){.id = to}, fn, args, kwargs,
			 timeout_ms, result, err);
}

tw_status call_ctl_async(tw_agent *a, uint32_t dst, uint8_t mtype,
			 uint8_t rtype, const tw_value *payload,
			 int64_t timeout_ms, tw_future **out)
{
	*out = NULL;
	if (dst >= a->world || dst == a->rank)
		return tw_fail(TW_EINVAL, "%s to worker %u: not a peer",
			       tw_msg_type_name(mtype), dst);
	atomic_fetch_add(&a->api_inflight, 1);
	tw_status st;
	if (atomic_load(&a->state) != AGENT_RUNNING) {
		st = tw_fail_static(TW_ESHUTDOWN, "the agent is not running: "
						  "no new RRef requests");
		goto out;
	}
	if (agent_peer_dead(a, dst)) {
		st = agent_dead_fail(a, dst);
		goto out;
	}
	/* Every request to one owner through one loop, hence one
	 * connection: they reach it in the order they were made (a fetch
	 * behind its REMOTE_CALL). */
	struct agent_loop *l = &a->loops[dst % a->nloops];
	struct call *c = call_record_new(a, l, dst, mtype, rtype, timeout_ms);
	if (c == NULL) {
		st = TW_ENOMEM;
		goto out;
	}
	st = encode_payload(c, payload);
	c->has_msg = st == TW_OK;
	if (st == TW_OK && c->tx.msg.total_len > a->o.max_frame)
		st = tw_fail(
			TW_EOVERFLOW,
			"%s to worker '%s' is a frame of %llu bytes, over "
			"the limit of %llu bytes (tw_agent_opts.max_frame)",
			tw_msg_type_name(mtype), agent_worker_name(a, dst),
			(unsigned long long)c->tx.msg.total_len,
			(unsigned long long)a->o.max_frame);
	tw_future *f = NULL;
	if (st == TW_OK)
		st = tw_future_create(&f);
	if (st != TW_OK) {
		call_put(c);
		goto out;
	}
	c->fut = tw_future_retain(f);
	c->l = l;
	agent_lend_future(l, f);
	c->lmsg.fn = call_start_msg;
	atomic_fetch_add(&a->outstanding, 1);
	st = l == agent_tls_loop ? tw_loop_post_own(l->loop, &c->lmsg)
				 : tw_loop_post(l->loop, &c->lmsg);
	if (st != TW_OK) {
		atomic_fetch_sub(&a->outstanding, 1);
		call_put(c);
		tw_future_release(f);
		st = tw_fail_static(TW_ENOSPC, "the run loop's queue is full: "
					       "backpressure");
		goto out;
	}
	*out = f;
out:
	atomic_fetch_sub(&a->api_inflight, 1);
	return st;
}

uint64_t tw_agent_outstanding(const tw_agent *a)
{
	return a == NULL ? 0 : atomic_load(&a->outstanding);
}

/* The function list of worker to: a call of "tw::list_functions", which
 * every agent serves (rpc/invoke.c). */
tw_status tw_rpc_list_functions(tw_agent *a, const char *to, int64_t timeout_ms,
				tw_value *out)
{
	if (a == NULL || to == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_rpc_list_functions: agent, "
				      "to or out is NULL");
	*out = tw_value_none();
	tw_value err = tw_value_none();
	tw_status st = tw_rpc_sync(a, to, "tw::list_functions", NULL, NULL,
				   timeout_ms, out, &err);
	tw_value_destroy(&err);
	if (st != TW_OK)
		tw_value_destroy(out);
	return st;
}
