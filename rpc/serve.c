/* Server side of calls: dispatch of CALL frames and calls to self to
 * handlers (on the loop, on the executor, or deferred through a future),
 * and the replies that go back. */
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/err.h"
#include "rpc/agent_impl.h"

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

/* ---- reply records ------------------------------------------------------ */

static void serve_deliver(struct agent_loop *l, struct reply *r);

static struct reply *reply_get(tw_agent *a)
{
	void *p = NULL;
	struct reply *r;
	if (tw_ring_mc_dequeue_burst(a->reply_cache, &p, 1, NULL) == 1) {
		r = p;
		memset(r, 0, sizeof(*r));
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
	for (;;) {
		if (tw_loop_post(l->loop, &r->lmsg) == TW_OK)
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

void serve_drop_retries(struct agent_loop *l)
{
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

static void reply_tx_done(struct tx *tx, tw_status st)
{
	(void)st;
	struct reply *r = container_of(tx, struct reply, tx);
	tw_out_msg_release(&tx->msg);
	r->encoded = false;
	reply_put(tx->l->a, r);
}

/* Deliver a reply record on its loop's thread. */
static void serve_deliver(struct agent_loop *l, struct reply *r)
{
	tw_agent *a = l->a;
	if (r->local) {
		call_local_done(l, r->req_id, r->st, &r->val);
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
	conn_send(cs, &r->tx);
}

static tw_status encode_reply(tw_agent *a, const struct reply_path *p,
			      unsigned type, const tw_value *payload,
			      tw_out_msg *out)
{
	tw_frame_hdr h = {0};
	h.version = TW_FRAME_VERSION;
	h.type = (uint8_t)type;
	h.req_id = p->req_id;
	h.src = a->rank;
	h.dst = p->caller;
	tw_status st = tw_msg_encode(a->txpool, &h, payload, out);
	if (st == TW_ENOSPC)
		st = tw_msg_encode(NULL, &h, payload, out);
	return st;
}

/*
 * Answer the call at p: RET with *result when st is TW_OK, else EXCEPTION
 * with (st, origin, msg). Reads result (never takes it). Any thread; the
 * agent must be alive (loop, executor before stop, or a deferred callback
 * inside the hub's active count).
 */
static void reply_send(const struct reply_path *p, tw_status st,
		       const tw_value *result, uint32_t origin, const char *msg)
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
			}
		} else {
			r->val = errv;
			errv = tw_value_none();
		}
		deliver(r);
		return;
	}

	tw_value none = tw_value_none();
	unsigned type = st == TW_OK ? TW_MSG_RET : TW_MSG_EXCEPTION;
	tw_status est = encode_reply(
		a, p, type, st == TW_OK ? (result ? result : &none) : &errv,
		&r->tx.msg);
	if (est != TW_OK && type == TW_MSG_RET) {
		/* The result cannot travel: say so instead. */
		char m[256];
		snprintf(
			m, sizeof(m),
			"result of function '%s' on worker '%s' cannot be sent: %s",
			fn_name(p), a->name, tw_strerror(est));
		tw_value_error(&errv, est, a->rank, m);
		type = TW_MSG_EXCEPTION;
		est = encode_reply(a, p, type, &errv, &r->tx.msg);
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
		if (st == TW_OK) {
			reply_send(&d->p, TW_OK, tw_future_value(f), 0, NULL);
		} else {
			const tw_error *e = tw_future_error(f);
			/* The error keeps the origin it came with: a nested
			 * call's failure names the worker that raised it. */
			if (e != NULL)
				reply_send(&d->p, e->kind, NULL, e->origin,
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
		free(d);
	}
}

/* ---- running handlers ----------------------------------------------------- */

static void run_handler(const struct reply_path *p, const tw_value *args,
			const tw_value *kwargs)
{
	tw_call_ctx ctx = {.p = *p, .deferred = NULL};
	tw_value result = tw_value_none();
	/* A handler that fails without an error value is explained by what
	 * it recorded (tw_errmsg: "return tw_value_get_int(x, &v);" says
	 * which kind it found); forget this thread's last reason first, so a
	 * handler that records none cannot pass on an older one. */
	tw_err_forget();
	tw_status st = p->fn->fn(&ctx, args, kwargs, &result, p->fn->arg);
	if (ctx.deferred != NULL) {
		tw_value_destroy(&result);
		defer_start(&ctx);
		return;
	}
	if (st == TW_OK) {
		reply_send(p, TW_OK, &result, 0, NULL);
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
	tw_value_destroy(&result);
}

/* A blocking call waiting for, or running on, an executor thread. */
struct srv_job {
	struct exec_job ej;
	struct reply_path p;
	uint64_t deadline_ns;
	bool local;
	tw_buf *buf; /* network: the frame, decoded on the executor */
	size_t off, len;
	tw_frame_hdr hdr;      /* network: its header, from the transport */
	tw_value args, kwargs; /* local: owned */
};

static void job_free(struct srv_job *j)
{
	tw_buf_release(j->buf);
	call_value_reclaim(&j->args);
	call_value_reclaim(&j->kwargs);
	free(j);
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
		call_value_lend(&j->args);
		call_value_lend(&j->kwargs);
		run_handler(&j->p, &j->args, &j->kwargs);
	} else {
		tw_in_msg m;
		tw_status st = tw_msg_decode(j->buf, j->off, j->len, &j->hdr,
					     NULL, &m);
		if (st != TW_OK) {
			reply_errorf(&j->p, TW_EPROTO, "malformed CALL: %s",
				     tw_errmsg(st));
		} else {
			run_handler(&j->p, &m.payload.u.items[1],
				    &m.payload.u.items[2]);
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
	if (h->timeout_ms != 0) {
		uint64_t rx = l->t->rx_ns != 0 ? l->t->rx_ns
					       : tw_loop_now(l->loop);
		deadline = rx + (uint64_t)h->timeout_ms * 1000000u;
		if (tw_loop_now(l->loop) >= deadline) {
			/* Executor threads count here too: not stat_inc. */
			atomic_fetch_add_explicit(&l->stats.exec_expired, 1,
						  memory_order_relaxed);
			return;
		}
	}

	tw_in_msg m; /* decoded in place, never moved */
	tw_status st = tw_msg_decode(buf, off, len, h, NULL, &m);
	if (st != TW_OK) {
		stat_inc(&l->stats.bad_frames);
		snprintf(msg, sizeof(msg),
			 "malformed CALL from worker '%s': %s",
			 agent_worker_name(a, h->src), tw_errmsg(st));
		serve_reject(l, cs, h, st == TW_EVERSION ? st : TW_EPROTO, msg);
		return;
	}
	const tw_value *fnv = &m.payload.u.items[0];
	struct reply_path p = {.a = a,
			       .l = l,
			       .conn_id = cs->id,
			       .req_id = h->req_id,
			       .caller = h->src};
	serve_count(&p, deadline != 0);
	p.fn = registry_find(&a->reg, fnv->u.str, fnv->len);
	if (p.fn == NULL) {
		reply_errorf(&p, TW_ENOFUNC,
			     "unknown function '%.*s' on worker '%s'",
			     (int)(fnv->len > 200 ? 200 : fnv->len), fnv->u.str,
			     a->name);
	} else if (p.fn->flags & TW_FN_BLOCKING) {
		struct srv_job *j = calloc(1, sizeof(*j));
		if (j == NULL) {
			reply_errorf(&p, TW_ENOMEM,
				     "out of memory on worker '%s'", a->name);
		} else {
			j->p = p;
			j->deadline_ns = deadline;
			j->buf = tw_buf_retain(buf);
			j->off = off;
			j->len = len;
			j->hdr = *h;
			submit_job(j);
		}
	} else {
		run_handler(&p, &m.payload.u.items[1], &m.payload.u.items[2]);
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
			       .fn = c->fn};
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
	if (c->fn->flags & TW_FN_BLOCKING) {
		struct srv_job *j = calloc(1, sizeof(*j));
		if (j == NULL) {
			tw_value_destroy(&args);
			tw_value_destroy(&kwargs);
			reply_errorf(&p, TW_ENOMEM,
				     "out of memory on worker '%s'", a->name);
			return;
		}
		j->p = p;
		j->local = true;
		j->deadline_ns = c->deadline_ns;
		j->args = args;
		j->kwargs = kwargs;
		submit_job(j);
		return;
	}
	call_value_lend(&args);
	call_value_lend(&kwargs);
	run_handler(&p, &args, &kwargs);
	call_value_reclaim(&args);
	call_value_reclaim(&kwargs);
}
