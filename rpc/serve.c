/* Server side of calls: dispatch of CALL frames and calls to self to
 * handlers (on the loop, on the executor, or deferred through a future),
 * and the replies that go back. */
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/autograd.h>

#include "dataplane/err.h"
#include "dataplane/probe.h"
#include "rpc/agent_impl.h"
#include "rpc/rref.h"
#include "rpc/value_wire.h"
#include "rpc/future_impl.h"

struct tw_call_ctx {
	struct reply_path p;
	tw_future *deferred;
};

tw_agent *tw_call_agent(const tw_call_ctx *ctx)
{
	return ctx == NULL ? NULL : ctx->p.a;
}

uint32_t tw_call_caller(const tw_call_ctx *ctx)
{
	return ctx == NULL ? 0 : ctx->p.caller;
}

const tw_ag_meta *tw_call_ag(const tw_call_ctx *ctx)
{
	return ctx == NULL ? NULL : ctx->p.agin;
}

tw_status tw_call_set_ag(tw_call_ctx *ctx, const tw_ag_meta *m)
{
	if (ctx == NULL || m == NULL || m->context_id < 0 || m->message_id < 0)
		return tw_fail_static(TW_EINVAL,
				      "tw_call_set_ag: no call, no metadata, "
				      "or a negative id");
	struct ag_own *o = ag_own_new(m);
	if (o == NULL)
		return tw_fail_static(TW_ENOMEM,
				      "out of memory for autograd metadata");
	free(ctx->p.agout);
	ctx->p.agout = o;
	return TW_OK;
}

void tw_call_defer(tw_call_ctx *ctx, tw_future *f)
{
	if (ctx == NULL || f == NULL)
		return;
	tw_future_retain(f);
	if (ctx->deferred != NULL)
		tw_future_release(ctx->deferred);
	ctx->deferred = f;
}

static const char *fn_name(const struct reply_path *p)
{
	return p->fn != NULL ? p->fn->name : "?";
}

void serve_setup(tw_agent *a)
{
	tw_ops_limits l = {.max_elems = a->o.max_tensor_elems,
			   .max_bytes = a->o.max_tensor_bytes,
			   .max_work = a->o.max_op_work,
			   .offload_work = 0,
			   .refused = &a->limit_refusals};
	a->lim_exec = l;
	l.offload_work = a->o.loop_work_max;
	a->lim_loop = l;
}

/* ---- reply records ------------------------------------------------------ */

static void serve_deliver(struct agent_loop *l, struct reply *r);

static struct reply *reply_get(tw_agent *a)
{
	void *p = NULL;
	struct reply *r;
	if (tw_ring_mc_dequeue_burst(a->reply_cache, &p, 1, NULL) == 1) {
		r = p;
		tx_record_reset(r, sizeof(*r), &r->tx);
	} else {
		r = calloc(1, sizeof(*r));
	}
	return r;
}

static void reply_put(tw_agent *a, struct reply *r)
{
	if (r->encoded)
		tw_out_msg_release(&r->tx.msg);
	r->encoded = false;
	free(r->ag);
	r->ag = NULL;
	tw_value_destroy(&r->val);
	void *p = r;
	if (tw_ring_mp_enqueue_bulk(a->reply_cache, &p, 1, NULL) != 1)
		free(r);
}

void reply_cache_drain(tw_agent *a)
{
	void *p;
	while (tw_ring_mc_dequeue_burst(a->reply_cache, &p, 1, NULL) == 1)
		free(p);
}

static void reply_msg(struct tw_loop_msg *m)
{
	struct reply *r = container_of(m, struct reply, lmsg);
	serve_deliver(r->l, r);
}

/* Post r to its loop l from any thread, waiting out a full ring (or, from
 * another loop's thread, parking it on that loop's retry list). */
static void post_reply(struct agent_loop *l, struct reply *r)
{
	r->lmsg.fn = reply_msg;
	/* From the thread that ran the loop last (a lender's, which served
	 * the call): its next poll sends it (tw_lender_flush), not the
	 * loop's thread, woken for it. */
	bool lazy = tw_loop_lent_to_me(l->loop);
	for (;;) {
		if ((lazy ? tw_loop_post_lazy(l->loop, &r->lmsg)
			  : tw_loop_post(l->loop, &r->lmsg)) == TW_OK)
			return;
		/* A loop must never wait for another loop (two full rings
		 * would wait for each other): park it and retry from the
		 * poller. Other threads may wait. */
		struct agent_loop *me = agent_tls_loop;
		if (me != NULL && me->a == l->a) {
			STAILQ_INSERT_TAIL(&me->retry, r, retry_link);
			return;
		}
		sched_yield();
	}
}

int serve_flush_retries(struct agent_loop *l)
{
	int work = 0;
	struct reply *r;
	while ((r = STAILQ_FIRST(&l->retry)) != NULL) {
		/* Off the list before the post: once posted, r belongs to
		 * its loop and we must read nothing more of it. */
		STAILQ_REMOVE_HEAD(&l->retry, retry_link);
		r->lmsg.fn = reply_msg;
		if (tw_loop_post(r->l->loop, &r->lmsg) != TW_OK) {
			STAILQ_INSERT_HEAD(&l->retry, r, retry_link);
			break;
		}
		work++;
	}
	return work;
}

static void drop_waiting(struct agent_loop *l);

void serve_drop_retries(struct agent_loop *l)
{
	drop_waiting(l);
	struct reply *r;
	while ((r = STAILQ_FIRST(&l->retry)) != NULL) {
		STAILQ_REMOVE_HEAD(&l->retry, retry_link);
		reply_put(l->a, r);
	}
}

/* ---- replies ------------------------------------------------------------ */

/* Hand r to its loop: at once when we are on it, else through its ring. */
static void deliver(struct reply *r)
{
	if (agent_tls_loop == r->l)
		serve_deliver(r->l, r);
	else
		post_reply(r->l, r);
}

/* ---- the backlog a peer makes this worker hold ---------------------------- */

/* The peer's load on l, or NULL for an id outside the group (never
 * counted). */
static inline struct peer_load *peer_load(struct agent_loop *l, int64_t peer)
{
	if (peer < 0 || (uint64_t)peer >= l->a->world)
		return NULL;
	return &l->peers[peer];
}

static inline bool backlog_over(const tw_agent *a, const struct peer_load *p)
{
	return (a->o.reply_backlog_max != 0 &&
		p->calls > a->o.reply_backlog_max) ||
	       (a->o.reply_backlog_bytes != 0 &&
		p->bytes > a->o.reply_backlog_bytes) ||
	       (a->o.exec_per_peer_max != 0 &&
		p->exec >= a->o.exec_per_peer_max);
}

static inline bool backlog_low(const tw_agent *a, const struct peer_load *p)
{
	return p->calls <= a->o.reply_backlog_max / 2 &&
	       p->bytes <= a->o.reply_backlog_bytes / 2 &&
	       (a->o.exec_per_peer_max == 0 ||
		p->exec < a->o.exec_per_peer_max) &&
	       STAILQ_EMPTY(&p->wait);
}

static void conn_rx_pause(struct agent_loop *l, struct conn_state *cs)
{
	cs->rx_paused = true;
	stat_inc(&l->stats.rx_pauses);
	tw_transport_pause(cs->t, cs->c, true);
}

/* Over the bound: stop reading every connection of the peer on l (its
 * calls come on the ones it opened to us, and on cs), so that more
 * connections buy it nothing. Ours to it stay read: they carry the
 * answers to our calls, and two workers pausing each other's would wait
 * on each other forever. */
static void backlog_check(struct agent_loop *l, struct conn_state *cs,
			  struct peer_load *p, int64_t peer)
{
	if (__builtin_expect(!backlog_over(l->a, p), 1))
		return;
	if (!p->paused) {
		p->paused = true;
		struct conn_state *o;
		TAILQ_FOREACH(o, &l->conns, link)
		{
			if (o->peer == peer && o->authed && !o->outbound &&
			    !o->rx_paused && !o->closing)
				conn_rx_pause(l, o);
		}
	}
	/* A connection bound to it since. */
	if (cs != NULL && !cs->rx_paused && !cs->closing)
		conn_rx_pause(l, cs);
}

/* cs's peer's backlog grew by (1, bytes): past the bound, stop reading
 * the peer's calls (TCP flow control stops it) until the backlog drains.
 * Returns the peer counted (-1: none). */
static inline int64_t backlog_add(struct agent_loop *l, struct conn_state *cs,
				  uint64_t bytes)
{
	struct peer_load *p = peer_load(l, cs->peer);
	if (p == NULL)
		return -1;
	p->calls++;
	p->bytes += bytes;
	backlog_check(l, cs, p, cs->peer);
	return cs->peer;
}

/* The peer's load shrank: once under half of every bound, read all its
 * connections on l again but dying (ending, not to be read). */
static void backlog_resume(struct agent_loop *l, int64_t peer,
			   const struct conn_state *dying)
{
	struct peer_load *p = &l->peers[peer];
	if (__builtin_expect(!p->paused, 1) || !backlog_low(l->a, p))
		return;
	p->paused = false;
	struct conn_state *o;
	TAILQ_FOREACH(o, &l->conns, link)
	{
		if (o->peer == peer && o->rx_paused && !o->closing &&
		    o != dying) {
			o->rx_paused = false;
			tw_transport_pause(o->t, o->c, false);
		}
	}
}

static void admit_waiting(struct agent_loop *l, struct peer_load *p);

/* A call of p's may go to the executor now: under the cap, and what p has
 * us hold (but the waiting frames) within reply_backlog_bytes: calls
 * admitted while its replies pile up would each add a result of up to
 * max_tensor_bytes. */
static inline bool exec_room(const tw_agent *a, const struct peer_load *p)
{
	uint32_t cap = a->o.exec_per_peer_max;
	return cap == 0 ||
	       (p->exec < cap &&
		(a->o.reply_backlog_bytes == 0 ||
		 p->bytes - p->wait_bytes <= a->o.reply_backlog_bytes));
}

/* peer's backlog shrank by (1, bytes); dying: a connection ending (not
 * to be read again), or NULL. */
static inline void backlog_sub(struct agent_loop *l, int64_t peer,
			       uint64_t bytes, const struct conn_state *dying)
{
	if (peer < 0)
		return;
	struct peer_load *p = &l->peers[peer];
	p->calls--;
	p->bytes -= bytes;
	if (__builtin_expect(!STAILQ_EMPTY(&p->wait), 0) && !p->admitting)
		admit_waiting(l, p);
	backlog_resume(l, peer, dying);
}

static void reply_tx_done(struct tx *tx, tw_status st)
{
	struct reply *r = container_of(tx, struct reply, tx);
	/* r->cs is alive: a connection's sends are done before it goes. */
	backlog_sub(tx->l, r->peer, tx->msg.total_len,
		    st == TW_OK ? NULL : r->cs);
	tw_out_msg_release(&tx->msg);
	r->encoded = false;
	reply_put(tx->l->a, r);
}

/* Count r's answer on its loop: by kind, and a timed call's time from
 * its arrival to now into its function's and its caller's histograms. */
static inline void reply_count(struct agent_loop *l, const struct reply *r)
{
	if (r->kind == TW_OK)
		stat_inc(&l->stats.served_ok);
	else
		stat_inc(&l->stats.served_failed[r->kind]);
	if (r->t0_ns == 0)
		return;
	/* By name only for functions found here (an unknown one, which the
	 * peer chose, by peer only). */
	struct reg_entry *fn = (struct reg_entry *)r->fn;
	uint32_t slot = STATS_NO_FN;
	if (fn != NULL) {
		slot = atomic_load_explicit(&fn->stats_slot,
					    memory_order_relaxed);
		if (__builtin_expect(slot-- == 0, 0)) {
			slot = stats_fn_slot(&l->a->fns, fn->name, fn->name_len,
					     fn->hash);
			atomic_store_explicit(&fn->stats_slot, slot + 1,
					      memory_order_relaxed);
		}
	}
	uint64_t now = tw_loop_clock(l->loop);
	stats_srv(&l->obs, slot, r->caller,
		  now > r->t0_ns ? now - r->t0_ns : 0);
}

/* Deliver a reply record on its loop's thread. */
static void serve_deliver(struct agent_loop *l, struct reply *r)
{
	tw_agent *a = l->a;
	reply_count(l, r);
	if (r->local) {
		call_local_done(l, r->req_id, r->st, &r->val, r->ag);
		r->ag = NULL;
		reply_put(a, r);
		return;
	}
	struct conn_state *cs = conn_find_id(l, r->conn_id);
	if (cs == NULL || cs->closing) {
		/* The caller's connection is gone: nobody to answer. */
		tw_out_msg_release(&r->tx.msg);
		r->encoded = false;
		reply_put(a, r);
		return;
	}
	r->tx.l = l;
	r->tx.done = reply_tx_done;
	r->cs = cs;
	/* The whole reply frame (a result up to max_tensor_bytes) counts,
	 * before the send: done may run inside it. */
	r->peer = backlog_add(l, cs, r->tx.msg.total_len);
	TW_PROBE3(response_send, cs->peer, r->req_id, (unsigned)r->tx.req.type);
	conn_send(cs, &r->tx);
}

static tw_status encode_reply(tw_agent *a, const struct reply_path *p,
			      unsigned type, const tw_value *payload,
			      const tw_ag_meta *ag, tw_out_msg *out)
{
	tw_frame_hdr h = {0};
	tw_value items[4], env;
	if (ag != NULL && tw_msg_ag_type(type)) {
		/* The answer in its autograd envelope (wire.md §5.2). */
		env = tw_msg_ag_wrap(ag, payload, items);
		payload = &env;
		h.flags = TW_FRAME_F_AUTOGRAD;
	}
	h.version = TW_FRAME_VERSION;
	h.type = (uint8_t)type;
	h.req_id = p->req_id;
	h.src = a->rank;
	h.dst = p->caller;
	tw_status st = tw_msg_encode(a->txpool, &h, payload, out);
	if (st == TW_ENOSPC)
		st = tw_msg_encode(NULL, &h, payload, out);
	if (st == TW_WIRE_FORK_NEEDED) /* RRefs in it: fork them for dst */
		st = rref_encode_forked(a, p->caller, &h, payload, out);
	return st;
}

/*
 * Answer the call at p: RET with *result when st is TW_OK, else EXCEPTION
 * with (st, origin, msg). Reads result (never takes it). Any thread; the
 * agent must be alive (loop, executor before stop, or a deferred callback
 * inside the hub's active count).
 */
static void serve_reply_ag(const struct reply_path *p, unsigned ok_type,
			   tw_status st, const tw_value *result,
			   uint32_t origin, const char *msg,
			   const tw_ag_meta *ag);

void serve_reply(const struct reply_path *p, unsigned ok_type, tw_status st,
		 const tw_value *result, uint32_t origin, const char *msg)
{
	tw_ag_meta m;
	if (p->agout != NULL)
		m = ag_own_meta(p->agout);
	serve_reply_ag(p, ok_type, st, result, origin, msg,
		       p->agout != NULL ? &m : NULL);
}

/* serve_reply with the answer's autograd metadata (NULL: none; only a
 * successful answer carries it). */
static void serve_reply_ag(const struct reply_path *p, unsigned ok_type,
			   tw_status st, const tw_value *result,
			   uint32_t origin, const char *msg,
			   const tw_ag_meta *ag)
{
	tw_agent *a = p->a;
	if (p->counted) /* answered (or dropped below): no longer active */
		atomic_fetch_sub(&a->serve_active[p->caller], 1);
	struct reply *r = reply_get(a);
	if (r == NULL)
		return; /* no memory: the caller's timeout will answer */
	r->l = p->l;
	r->conn_id = p->conn_id;
	r->req_id = p->req_id;
	r->t0_ns = p->t0_ns;
	r->fn = p->fn;
	r->caller = p->caller;
	r->kind = (unsigned)st < TW_STATUS_COUNT_ ? st : TW_ERUNTIME;
	tw_value errv = tw_value_none();
	if (st != TW_OK && tw_value_error(&errv, st, origin, msg) != TW_OK)
		tw_value_error(&errv, TW_ERUNTIME, origin, msg);

	if (p->conn_id == 0) {
		r->local = true;
		r->st = st;
		if (st == TW_OK) {
			tw_status cst =
				result != NULL
					? tw_value_clone(&r->val, result)
					: (r->val = tw_value_none(), TW_OK);
			if (cst != TW_OK) {
				r->st = cst;
				tw_value_error(
					&r->val, cst, a->rank,
					"cannot copy the result of a call to self");
			} else if (ag != NULL) {
				r->ag = ag_own_new(ag);
			}
		} else {
			r->val = errv;
			errv = tw_value_none();
		}
		deliver(r);
		return;
	}

	tw_value none = tw_value_none();
	unsigned type = st == TW_OK ? ok_type : TW_MSG_EXCEPTION;
	tw_status est = encode_reply(
		a, p, type, st == TW_OK ? (result ? result : &none) : &errv, ag,
		&r->tx.msg);
	if (est != TW_OK && type != TW_MSG_EXCEPTION) {
		/* The result cannot travel: say so instead. */
		char m[256];
		snprintf(
			m, sizeof(m),
			"result of function '%s' on worker '%s' cannot be sent: %s",
			fn_name(p), a->name, tw_strerror(est));
		tw_value_error(&errv, est, a->rank, m);
		r->kind = est;
		type = TW_MSG_EXCEPTION;
		est = encode_reply(a, p, type, &errv, NULL, &r->tx.msg);
	}
	if (__builtin_expect(
		    est == TW_OK && r->tx.msg.total_len > a->o.max_frame, 0)) {
		/* The caller would refuse it and close the connection: tell
		 * it what happened instead. */
		char m[512];
		snprintf(m, sizeof(m),
			 "result of function '%s' on worker '%s' is a frame of "
			 "%llu bytes, over the limit of %llu bytes "
			 "(tw_agent_opts.max_frame)",
			 fn_name(p), a->name,
			 (unsigned long long)r->tx.msg.total_len,
			 (unsigned long long)a->o.max_frame);
		tw_out_msg_release(&r->tx.msg);
		atomic_fetch_add_explicit(&a->oversize, 1,
					  memory_order_relaxed);
		tw_value_destroy(&errv);
		tw_value_error(&errv, TW_EOVERFLOW, a->rank, m);
		r->kind = TW_EOVERFLOW;
		type = TW_MSG_EXCEPTION;
		est = encode_reply(a, p, type, &errv, NULL, &r->tx.msg);
	}
	tw_value_destroy(&errv);
	if (est != TW_OK) {
		reply_put(a, r);
		return;
	}
	r->tx.req.type = type;
	r->encoded = true;
	deliver(r);
}

static void reply_send(const struct reply_path *p, tw_status st,
		       const tw_value *result, uint32_t origin, const char *msg)
{
	serve_reply(p, TW_MSG_RET, st, result, origin, msg);
}

static void reply_errorf(const struct reply_path *p, tw_status kind,
			 const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void reply_errorf(const struct reply_path *p, tw_status kind,
			 const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_send(p, kind, NULL, p->a->rank, msg);
}

/* ---- deferred (async) replies ------------------------------------------- */

struct defer_rec {
	struct reply_path p;
	struct defer_hub *hub;
	tw_future *f;
};

static void hub_release(struct defer_hub *h)
{
	if (atomic_fetch_sub(&h->refs, 1) == 1)
		free(h);
}

static void defer_cb(tw_future *f, void *arg)
{
	struct defer_rec *d = arg;
	struct defer_hub *hub = d->hub;
	/* Announce, then look: shutdown sets dead and then waits for active
	 * to drain (both seq_cst), so either it waits for us or we see dead. */
	atomic_fetch_add(&hub->active, 1);
	if (!atomic_load(&hub->dead)) {
		tw_status st = tw_future_status(f);
		tw_ag_meta fm;
		if (st == TW_OK && tw_future_ag(f, &fm)) {
			/* The future's metadata (tw_future_set_ag) */
			serve_reply_ag(&d->p, TW_MSG_RET, TW_OK,
				       tw_future_value(f), 0, NULL, &fm);
		} else if (st == TW_OK) {
			reply_send(&d->p, TW_OK, tw_future_value(f), 0, NULL);
		} else {
			const tw_error *e = tw_future_error(f);
			/* An error that came from another worker (a nested
			 * call's EXCEPTION) keeps its origin; one raised
			 * here (the handler failed its future, or this
			 * worker failed its nested call) names this worker,
			 * as a handler's direct error does. */
			if (e != NULL)
				reply_send(&d->p, e->kind, NULL,
					   future_error_relayed(f)
						   ? e->origin
						   : d->p.a->rank,
					   e->msg);
			else
				reply_errorf(
					&d->p, st,
					"function '%s' failed on worker '%s'",
					fn_name(&d->p), d->p.a->name);
		}
	}
	atomic_fetch_sub(&hub->active, 1);
	tw_future_release(d->f);
	hub_release(hub);
	free(d->p.agout);
	free(d);
}

static void defer_start(tw_call_ctx *ctx)
{
	tw_agent *a = ctx->p.a;
	struct defer_rec *d = malloc(sizeof(*d));
	if (d == NULL) {
		tw_future_release(ctx->deferred);
		reply_errorf(&ctx->p, TW_ENOMEM, "out of memory on worker '%s'",
			     a->name);
		free(ctx->p.agout);
		return;
	}
	d->p = ctx->p;
	d->f = ctx->deferred;
	d->hub = a->hub;
	atomic_fetch_add(&a->hub->refs, 1);
	ctx->deferred = NULL;
	if (tw_future_then(d->f, defer_cb, d) != TW_OK) {
		reply_errorf(&d->p, TW_ENOMEM, "out of memory on worker '%s'",
			     a->name);
		tw_future_release(d->f);
		hub_release(d->hub);
		free(d->p.agout);
		free(d);
	}
}

/* ---- running handlers ----------------------------------------------------- */

/* Run the handler of the call at p with lim as the builtins' bounds.
 * Returns true, having answered nothing, when a builtin found its work
 * over lim's offload_work (loop_work_max): the caller moves the call to
 * the executor. */
static bool run_handler(const struct reply_path *p, const tw_value *args,
			const tw_value *kwargs, const tw_ops_limits *lim)
{
	tw_call_ctx ctx = {.p = *p, .deferred = NULL};
	tw_value result = tw_value_none();
	/* A handler that fails without an error value is explained by what
	 * it recorded (tw_errmsg: "return tw_value_get_int(x, &v);" says
	 * which kind it found); forget this thread's last reason first, so a
	 * handler that records none cannot pass on an older one. */
	tw_err_forget();
	tw_ops_limits_set(lim);
	TW_PROBE3(handler_start, p->caller, p->req_id, p->fn->name);
	tw_status st = p->fn->fn(&ctx, args, kwargs, &result, p->fn->arg);
	TW_PROBE3(handler_end, p->caller, p->req_id, (int)st);
	bool offload = tw_ops_offload_take();
	tw_ops_limits_set(NULL);
	if (__builtin_expect(offload, 0)) {
		tw_value_destroy(&result);
		if (ctx.deferred != NULL)
			tw_future_release(ctx.deferred);
		free(ctx.p.agout);
		return true;
	}
	if (ctx.deferred != NULL) {
		tw_value_destroy(&result);
		defer_start(&ctx); /* takes ctx.p.agout */
		return false;
	}
	if (st == TW_OK) {
		reply_send(&ctx.p, TW_OK, &result, 0, NULL);
	} else {
		const tw_error *e = result.kind == TW_KIND_ERROR ? result.u.err
								 : NULL;
		if ((unsigned)st >= TW_STATUS_COUNT_)
			st = TW_ERUNTIME;
		if (e != NULL && e->kind != TW_OK &&
		    (unsigned)e->kind < TW_STATUS_COUNT_) {
			/* Raised here: this worker is the origin. */
			reply_send(p, e->kind, NULL, p->a->rank, e->msg);
		} else {
			reply_errorf(p, st,
				     "function '%s' failed on worker '%s': %s",
				     fn_name(p), p->a->name, tw_errmsg(st));
		}
	}
	free(ctx.p.agout);
	tw_value_destroy(&result);
	return false;
}

/* The handler's arguments in a decoded request: a CALL's (args, kwargs);
 * an AG_BACKWARD's whole payload as the args of the backward handler
 * (autograd.h), with no kwargs. */
static const tw_value no_kwargs = {.kind = TW_KIND_DICT,
				   .flags = TW_VALUE_BORROWED};

static void request_args(const tw_in_msg *m, const tw_value **args,
			 const tw_value **kwargs)
{
	if (m->hdr.type == TW_MSG_AG_BACKWARD) {
		*args = &m->payload;
		*kwargs = &no_kwargs;
	} else {
		*args = &m->payload.u.items[1];
		*kwargs = &m->payload.u.items[2];
	}
}

/* A blocking call waiting for, or running on, an executor thread. */
struct srv_job {
	struct exec_job ej;
	struct reply_path p;
	uint64_t deadline_ns;
	bool local;
	tw_buf *buf; /* network: the frame, decoded on the executor */
	size_t off, len;
	tw_frame_hdr hdr;         /* network: its header, from the transport */
	struct tw_msg_hold *hold; /* network: the RRefs the loop adopted */
	tw_value args, kwargs;    /* local: owned */
	struct ag_own *ag;        /* local: the call's autograd metadata */
	bool counted;             /* network: ends on its loop (job_end_msg) */
	bool admitted; /* network: given to the executor, in peers[peer].exec */
	int64_t peer;  /* network: in l->peers[peer] (len bytes); -1: not */
	STAILQ_ENTRY(srv_job) wait_link; /* in peers[peer].wait */
	struct tw_loop_msg lmsg;         /* its end, told to its loop */
};

static bool submit_job(struct srv_job *j);

/* Give p's waiting calls to the executor while there is room. */
static void admit_waiting(struct agent_loop *l, struct peer_load *p)
{
	struct srv_job *j;
	while ((j = STAILQ_FIRST(&p->wait)) != NULL && exec_room(l->a, p)) {
		STAILQ_REMOVE_HEAD(&p->wait, wait_link);
		p->wait_bytes -= j->len;
		j->admitted = true;
		p->exec++;
		/* A refusal ends j at once (job_end_msg): p->exec is back
		 * down and this loop tries the next (admitting: no deeper). */
		p->admitting = true;
		submit_job(j);
		p->admitting = false;
	}
}

/* On the job's loop: take a counted job out of its peer's backlog, let
 * the peer's next waiting call in, and free it. */
static void job_end_msg(struct tw_loop_msg *m)
{
	struct srv_job *j = container_of(m, struct srv_job, lmsg);
	struct agent_loop *l = j->p.l;
	int64_t peer = j->peer;
	bool admitted = j->admitted;
	uint64_t len = j->len;
	free(j);
	if (peer < 0)
		return;
	struct peer_load *p = &l->peers[peer];
	if (admitted)
		p->exec--;
	backlog_sub(l, peer, len, NULL); /* admits the next waiting */
}

/* Teardown: answer the calls that never reached the executor. */
static void drop_waiting(struct agent_loop *l)
{
	for (uint32_t w = 0; l->peers != NULL && w < l->a->world; w++) {
		struct peer_load *p = &l->peers[w];
		struct srv_job *j;
		while ((j = STAILQ_FIRST(&p->wait)) != NULL) {
			STAILQ_REMOVE_HEAD(&p->wait, wait_link);
			reply_errorf(&j->p, TW_ESHUTDOWN, AGENT_SHUTDOWN_MSG);
			tw_buf_release(j->buf);
			free(j);
		}
	}
}

static void job_free(struct srv_job *j)
{
	if (j->hold != NULL)
		j->hold->release(j->hold);
	j->hold = NULL;
	tw_buf_release(j->buf);
	j->buf = NULL;
	call_value_reclaim(&j->args);
	call_value_reclaim(&j->kwargs);
	free(j->ag);
	j->ag = NULL;
	if (!j->counted) {
		free(j);
		return;
	}
	if (agent_tls_loop == j->p.l) {
		job_end_msg(&j->lmsg);
		return;
	}
	/* Executor threads (and a stop dropping jobs) may wait for room:
	 * replies do the same (post_reply). */
	j->lmsg.fn = job_end_msg;
	while (tw_loop_post(j->p.l->loop, &j->lmsg) != TW_OK)
		sched_yield();
}

static void job_run(struct exec_job *ej)
{
	struct srv_job *j = container_of(ej, struct srv_job, ej);
	struct agent_loop *l = j->p.l;
	atomic_fetch_add_explicit(&l->stats.exec_jobs, 1, memory_order_relaxed);
	/* The loop's clock, as the deadline's (a test's fake clock too); at
	 * the deadline itself the caller's timer has fired. */
	if (j->deadline_ns != 0 && tw_loop_clock(l->loop) >= j->deadline_ns) {
		/* The caller has given up: do not run work nobody waits for. */
		atomic_fetch_add_explicit(&l->stats.exec_expired, 1,
					  memory_order_relaxed);
		reply_errorf(
			&j->p, TW_ETIMEDOUT,
			"call to '%s' on worker '%s' expired before an executor thread could run it",
			fn_name(&j->p), j->p.a->name);
		job_free(j);
		return;
	}
	if (j->local) {
		tw_ag_meta am;
		if (j->ag != NULL) {
			am = ag_own_meta(j->ag);
			j->p.agin = &am;
		}
		call_value_lend(&j->args);
		call_value_lend(&j->kwargs);
		(void)run_handler(&j->p, &j->args, &j->kwargs,
				  &j->p.a->lim_exec);
		j->p.agin = NULL;
	} else {
		tw_in_msg m;
		tw_status st = tw_msg_decode(j->buf, j->off, j->len, &j->hdr,
					     NULL, &m);
		if (st != TW_OK) {
			reply_errorf(&j->p, TW_EPROTO, "malformed CALL: %s",
				     tw_errmsg(st));
		} else {
			if (j->hold != NULL)
				rref_hold_give(j->p.l, &m, j->hold);
			j->hold = NULL;
			j->p.agin = (m.hdr.flags & TW_FRAME_F_AUTOGRAD) ? &m.ag
									: NULL;
			const tw_value *args, *kwargs;
			request_args(&m, &args, &kwargs);
			(void)run_handler(&j->p, args, kwargs,
					  &j->p.a->lim_exec);
			j->p.agin = NULL;
			tw_in_msg_release(&m);
		}
	}
	job_free(j);
}

static void job_drop(struct exec_job *ej)
{
	struct srv_job *j = container_of(ej, struct srv_job, ej);
	reply_errorf(&j->p, TW_ESHUTDOWN, AGENT_SHUTDOWN_MSG);
	job_free(j);
}

static bool submit_job(struct srv_job *j)
{
	j->ej.run = job_run;
	j->ej.drop = job_drop;
	tw_status st = executor_submit(j->p.a->exec, &j->ej);
	if (st == TW_OK)
		return true;
	if (st == TW_ESHUTDOWN)
		reply_errorf(&j->p, st, AGENT_SHUTDOWN_MSG);
	else
		reply_errorf(&j->p, st, "executor queue of worker '%s' is full",
			     j->p.a->name);
	job_free(j);
	return false;
}

/* A call accepted, for graceful shutdown's count (agent_impl.h): one
 * without a deadline stays active until reply_send answers it. (Calls
 * accepted ever are the loops' calls_served.) */
static void serve_count(struct reply_path *p, bool deadline)
{
	p->counted = !deadline;
	if (p->counted)
		atomic_fetch_add(&p->a->serve_active[p->caller], 1);
}

/* ---- CALL frames ------------------------------------------------------------ */

void serve_reject(struct agent_loop *l, struct conn_state *cs,
		  const tw_frame_hdr *h, tw_status kind, const char *msg)
{
	struct reply_path p = {.a = l->a,
			       .l = l,
			       .conn_id = cs->id,
			       .req_id = h->req_id,
			       .caller = h->src};
	reply_send(&p, kind, NULL, l->a->rank, msg);
}

void serve_on_call(struct agent_loop *l, struct conn_state *cs,
		   const tw_frame_hdr *h, tw_buf *buf, size_t off, size_t len)
{
	tw_agent *a = l->a;
	char msg[512];
	stat_inc(&l->stats.calls_served);
	if (l->closing) {
		serve_reject(l, cs, h, TW_ESHUTDOWN, AGENT_SHUTDOWN_MSG);
		return;
	}
	if (h->src >= a->world || h->dst != a->rank) {
		stat_inc(&l->stats.bad_frames);
		snprintf(msg, sizeof(msg),
			 "call from worker %u to worker %u reached worker %u",
			 h->src, h->dst, a->rank);
		serve_reject(l, cs, h, TW_EPROTO, msg);
		return;
	}
	if (cs->peer < 0)
		cs->peer = h->src;
	/* The caller's budget runs from when the frame reached us (the
	 * transport's receive time when it knows one). A call that waited
	 * past it has been failed by the caller's own timer: the handler
	 * does not run and no answer goes back to be dropped as late. */
	uint64_t deadline = 0;
	uint64_t rx = cs->t->rx_ns != 0 ? cs->t->rx_ns : tw_loop_now(l->loop);
	if (h->timeout_ms != 0) {
		deadline = rx + (uint64_t)h->timeout_ms * 1000000u;
		if (tw_loop_now(l->loop) >= deadline) {
			/* Executor threads count here too: not stat_inc. */
			atomic_fetch_add_explicit(&l->stats.exec_expired, 1,
						  memory_order_relaxed);
			rref_drain(l, h, buf, off, len);
			return;
		}
	}

	tw_in_msg m; /* decoded in place, never moved */
	tw_status st = tw_msg_decode(buf, off, len, h, NULL, &m);
	if (st != TW_OK) {
		stat_inc(&l->stats.bad_frames);
		snprintf(msg, sizeof(msg), "malformed %s from worker '%s': %s",
			 tw_msg_type_name(h->type),
			 agent_worker_name(a, h->src), tw_errmsg(st));
		serve_reject(l, cs, h, st == TW_EVERSION ? st : TW_EPROTO, msg);
		return;
	}
	if (m.nrref_ > 0)
		rref_adopt(l, h->src, &m);
	struct reply_path p = {.a = a,
			       .l = l,
			       .conn_id = cs->id,
			       .req_id = h->req_id,
			       .caller = h->src,
			       .t0_ns = rx};
	serve_count(&p, deadline != 0);
	const tw_value *fnv = NULL, *args, *kwargs;
	request_args(&m, &args, &kwargs);
	if (h->type == TW_MSG_AG_BACKWARD) {
		p.fn = ag_backward_entry(a);
	} else {
		fnv = &m.payload.u.items[0];
		p.fn = registry_find(&a->reg, fnv->u.str, fnv->len);
	}
	tw_status ast = TW_OK;
	if (__builtin_expect(h->flags & TW_FRAME_F_AUTOGRAD, 0)) {
		/* The caller's context reached us (docs/autograd.md). */
		p.agin = &m.ag;
		ast = tw_ag_context_reach(a, m.ag.context_id, h->src);
	}
	if (ast != TW_OK) {
		reply_errorf(&p, ast, "%s", tw_errmsg(ast));
	} else if (fnv == NULL &&
		   !tw_ag_context_valid(a, args->u.items[0].u.i)) {
		/* AG_BACKWARD for a context not held here (torch's words) */
		reply_errorf(
			&p, TW_EINVAL,
			"Could not find autograd context with id: %" PRId64,
			args->u.items[0].u.i);
	} else if (fnv == NULL && p.fn == NULL) {
		reply_errorf(&p, TW_ENOTSUP,
			     "worker '%s' records no autograd graph: the "
			     "distributed backward pass is served by the "
			     "Python package's workers",
			     a->name);
	} else if (p.fn == NULL) {
		reply_errorf(&p, TW_ENOFUNC,
			     "unknown function '%.*s' on worker '%s'",
			     (int)(fnv->len > 200 ? 200 : fnv->len), fnv->u.str,
			     a->name);
	} else if ((p.fn->flags & TW_FN_BLOCKING) ||
		   run_handler(&p, args, kwargs, &a->lim_loop)) {
		/* Blocking, or a builtin too big for the loop: the executor
		 * decodes the frame again and runs it. */
		if (!(p.fn->flags & TW_FN_BLOCKING))
			stat_inc(&l->stats.offloaded);
		struct srv_job *j = calloc(1, sizeof(*j));
		if (j == NULL) {
			reply_errorf(&p, TW_ENOMEM,
				     "out of memory on worker '%s'", a->name);
		} else {
			j->p = p;
			j->p.agin = NULL; /* m's: set again on the executor */
			j->deadline_ns = deadline;
			j->buf = tw_buf_retain(buf);
			j->off = off;
			j->len = len;
			j->hdr = *h;
			j->hold = rref_hold_take(&m);
			/* Its frame stays pinned until the job ends: part of
			 * what this peer has us hold. Past the peer's cap of
			 * calls on the executor (each may make a result of
			 * max_tensor_bytes), or while its replies are over
			 * reply_backlog_bytes, it waits its turn, and the peer
			 * is not read meanwhile (backlog_over). */
			struct peer_load *pl = peer_load(l, cs->peer);
			j->counted = true;
			j->admitted = pl == NULL || (STAILQ_EMPTY(&pl->wait) &&
						     exec_room(a, pl));
			if (j->admitted && pl != NULL)
				pl->exec++;
			if (!j->admitted) {
				STAILQ_INSERT_TAIL(&pl->wait, j, wait_link);
				pl->wait_bytes += len;
			}
			j->peer = backlog_add(l, cs, len);
			if (j->admitted)
				submit_job(j);
		}
	}
	tw_in_msg_release(&m);
}

/* ---- calls to self ---------------------------------------------------------- */

void serve_local_call(struct agent_loop *l, struct call *c)
{
	tw_agent *a = l->a;
	struct reply_path p = {.a = a,
			       .l = l,
			       .conn_id = 0,
			       .req_id = c->req_id,
			       .caller = a->rank,
			       .fn = c->fn,
			       .t0_ns = tw_loop_now(l->loop)};
	serve_count(&p, c->deadline_ns != 0);
	stat_inc(&l->stats.calls_served);
	if (c->fn == NULL) {
		reply_errorf(&p, TW_ENOFUNC,
			     "unknown function '%s' on worker '%s'", c->self_fn,
			     a->name);
		return;
	}
	/* Take the arguments out of the call: the reply may complete and
	 * recycle it before the handler's caller here returns. */
	tw_value args = c->self_args, kwargs = c->self_kwargs;
	c->self_args = tw_value_none();
	c->self_kwargs = tw_value_none();
	struct ag_own *ag = c->self_ag;
	c->self_ag = NULL;
	tw_ag_meta am;
	if (ag != NULL) {
		am = ag_own_meta(ag);
		p.agin = &am;
	}
	/* Read before the handler runs: its reply may recycle c. */
	uint64_t deadline = c->deadline_ns;
	if (!(c->fn->flags & TW_FN_BLOCKING)) {
		call_value_lend(&args);
		call_value_lend(&kwargs);
		if (!run_handler(&p, &args, &kwargs, &a->lim_loop)) {
			call_value_reclaim(&args);
			call_value_reclaim(&kwargs);
			free(ag);
			return;
		}
		/* A builtin too big for the loop: nothing answered yet. */
		call_value_unlend(&args);
		call_value_unlend(&kwargs);
		stat_inc(&l->stats.offloaded);
	}
	struct srv_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		tw_value_destroy(&args);
		tw_value_destroy(&kwargs);
		free(ag);
		reply_errorf(&p, TW_ENOMEM, "out of memory on worker '%s'",
			     a->name);
		return;
	}
	j->p = p;
	j->p.agin = NULL; /* from j->ag on the executor */
	j->ag = ag;
	j->local = true;
	j->deadline_ns = deadline;
	j->args = args;
	j->kwargs = kwargs;
	submit_job(j);
}
