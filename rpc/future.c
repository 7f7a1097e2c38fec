/* tw_future: one-shot completion (value, error or received message), waiting
 * (spin, then futex) and callbacks run by whichever thread completes. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tensorwire/future.h>
#include <tensorwire/autograd.h>

#include "dataplane/clock.h"
#include "dataplane/err.h"
#include "dataplane/wait.h"
#include "rpc/future_impl.h"
#include "rpc/tcache.h"

/*
 * How long a waiter spins before sleeping on the futex. Waking a sleeping
 * thread on the other core costs ~25 us on the target VMs (DESIGN.md,
 * facts), so a result that arrives within about that long is cheaper to
 * spin for than to sleep for.
 */
#ifndef TW_FUTURE_SPIN_NS
#define TW_FUTURE_SPIN_NS 30000
#endif

/*
 * Of that, how long the waiter spins hot; past it, it yields the CPU
 * between two looks. When the completer shares the waiter's CPU (more
 * runnable threads than cores: a threaded client pinned beside its loop,
 * a Python process's threads), a hot spin would hold the very CPU the
 * completer needs for the whole budget: bench-rpc --threaded measured a
 * no-op call at 46 us spinning hot, 15 us yielding.
 */
#ifndef TW_FUTURE_HOT_SPIN_NS
#define TW_FUTURE_HOT_SPIN_NS 2000
#endif

/* Pauses between two reads of the clock while spinning: the clock costs
 * tens of ns, a pause about as much, the state check almost nothing. */
#define SPIN_CLOCK_EVERY 32

/*
 * The state word is also the futex word. Low bits: where completion is;
 * WAITERS: a thread sleeps (or is about to) in FUTEX_WAIT, so the completer
 * must make the wake syscall. It is never cleared: one wake per future at
 * most, and none when everyone was served by spinning.
 */
enum {
	ST_PENDING = 0,
	ST_COMPLETING = 1, /* one completer won; result being stored */
	ST_DONE = 2,       /* result published */
	ST_MASK = 3,
	ST_WAITERS = 4,
};

/* One registered callback. The first lives in the future itself. */
struct cb_node {
	struct cb_node *next;
	tw_future_cb cb;
	void *arg;
};

/* Swapped into the callback list by the completer: registrations that
 * find it run their callback at once instead of pushing. Never dereferenced. */
static struct cb_node closed_sentinel;
#define CB_CLOSED (&closed_sentinel)

struct tw_future {
	_Atomic uint32_t state; /* ST_*, the futex word */
	_Atomic uint32_t refcnt;
	_Atomic(struct cb_node *) cbs; /* Treiber stack, or CB_CLOSED */
	_Atomic uint32_t inline_used;  /* inline_cb taken by a registration */
	struct cb_node inline_cb;

	/* Written once by the completer before ST_DONE is published; read-only
	 * afterwards, so readers need nothing but the acquire load of state. */
	tw_status status;
	const tw_value *val; /* success: &own or &msg.payload */
	const tw_error *err; /* failure: in own, msg or err_inline */
	tw_value own;        /* owned value or error value */
	tw_error err_inline; /* failure whose message could not be stored */
	bool has_msg;
	bool err_relayed; /* the error came from another worker's EXCEPTION */

	/* tw_future_chain: the map function this future is the result of. */
	tw_future_map_fn chain_fn;
	void *chain_arg;

	/* What a waiter may poll while it waits (future_set_driver). */
	const struct future_driver *drv;
	void *drv_ctx;

	/* Autograd metadata given by the completer (tw_future_set_ag, a
	 * call to self's answer); a message's own is in msg.ag. */
	struct ag_own *ag;

	tw_in_msg msg; /* completed from a message: kept until the last release */
};

/* ---- small helpers ---------------------------------------------------- */

static inline uint32_t load_state(const tw_future *f)
{
	/* Acquire: pairs with the release exchange in publish(), so a reader
	 * that sees ST_DONE also sees status, val, err and what they point at. */
	return atomic_load_explicit(&f->state, memory_order_acquire);
}

static inline bool is_done(uint32_t s)
{
	return (s & ST_MASK) == ST_DONE;
}

/* Record a completed, failed future's message as the explanation of the
 * status about to be returned (its kind). Copied: the caller may release
 * f before reading it. */
static tw_status explain(const tw_future *f)
{
	const tw_error *e = f->err;
	if (e == NULL || e->msg == NULL || e->msg_len == 0)
		return tw_fail_static(f->status, NULL);
	int len = e->msg_len < TW_ERRMSG_MAX ? (int)e->msg_len : TW_ERRMSG_MAX;
	return tw_fail(f->status, "%.*s", len, e->msg);
}

static tw_status already_completed(void)
{
	return tw_fail_static(TW_EBUSY, "the future is already completed");
}

/* ---- lifetime --------------------------------------------------------- */

/*
 * Freed futures are kept per thread for the next create: a call makes one
 * and drops it, mostly on the same thread (always so for an embedded
 * owner's rpc_sync), and a future is over a kilobyte (the message's inline
 * arena), which malloc would otherwise hand out and take back on every
 * call. A thread's cache is freed when it exits.
 */
static struct tcache fcache = TCACHE_INIT(64);
static _Thread_local struct tcache_list fcache_tls;

tw_status tw_future_create(tw_future **out)
{
	if (out == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_future_create: out is NULL");
	/* Not calloc: the embedded message (its inline arena) stays untouched
	 * unless a message completes the future. */
	tw_future *f = tcache_get(&fcache_tls);
	if (f == NULL)
		f = malloc(sizeof *f);
	if (f == NULL)
		return tw_fail_static(TW_ENOMEM, "out of memory for a future");
	atomic_init(&f->state, ST_PENDING);
	atomic_init(&f->refcnt, 1);
	atomic_init(&f->cbs, NULL);
	atomic_init(&f->inline_used, 0);
	f->inline_cb = (struct cb_node){0};
	f->status = TW_EBUSY;
	f->val = NULL;
	f->err = NULL;
	f->own = tw_value_none();
	f->err_inline = (tw_error){0};
	f->has_msg = false;
	f->ag = NULL;
	f->chain_fn = NULL;
	f->chain_arg = NULL;
	f->drv = NULL;
	f->drv_ctx = NULL;
	*out = f;
	return TW_OK;
}

void future_set_driver(tw_future *f, const struct future_driver *d, void *ctx)
{
	f->drv = d;
	f->drv_ctx = ctx;
}

void future_share_driver(tw_future *dst, const tw_future *src)
{
	if (src == NULL || src->drv == NULL || dst->drv != NULL)
		return;
	src->drv->retain(src->drv_ctx);
	future_set_driver(dst, src->drv, src->drv_ctx);
}

tw_future *tw_future_retain(tw_future *f)
{
	/* Relaxed: a new reference comes from one the caller holds, which
	 * already orders everything before it. */
	atomic_fetch_add_explicit(&f->refcnt, 1, memory_order_relaxed);
	return f;
}

void tw_future_release(tw_future *f)
{
	if (f == NULL)
		return;
	/* Release: this holder's uses of f happen before the free. Acquire
	 * (for the last holder): pairs with every earlier holder's release
	 * decrement, so the freeing thread sees all their uses done. acq_rel
	 * on the RMW rather than a separate fence: same instruction on x86,
	 * and visible to ThreadSanitizer. */
	if (atomic_fetch_sub_explicit(&f->refcnt, 1, memory_order_acq_rel) != 1)
		return;
	/* No callback node can remain: each registration holds a reference
	 * until its callback has run and its node is freed. */
	tw_value_destroy(&f->own);
	free(f->ag);
	if (f->has_msg)
		tw_in_msg_release(&f->msg);
	if (f->drv != NULL)
		f->drv->release(f->drv_ctx);
	tcache_put(&fcache, &fcache_tls, f);
}

/* ---- autograd metadata ------------------------------------------------ */

struct ag_own *ag_own_new(const tw_ag_meta *m)
{
	if (m == NULL || (m->mask_len > 0 && m->grad_mask == NULL))
		return NULL;
	struct ag_own *o = malloc(sizeof(*o) + m->mask_len);
	if (o == NULL)
		return NULL;
	o->context_id = m->context_id;
	o->message_id = m->message_id;
	o->mask_len = m->mask_len;
	if (m->mask_len > 0)
		memcpy(o->mask, m->grad_mask, m->mask_len);
	return o;
}

void future_ag_give(tw_future *f, struct ag_own *o)
{
	free(f->ag);
	f->ag = o;
}

tw_status tw_future_set_ag(tw_future *f, const tw_ag_meta *m)
{
	if (f == NULL || m == NULL || m->context_id < 0 || m->message_id < 0)
		return tw_fail_static(TW_EINVAL,
				      "tw_future_set_ag: no future, no "
				      "metadata, or a negative id");
	if (is_done(load_state(f)))
		return tw_fail_static(TW_EINVAL,
				      "tw_future_set_ag: the future is "
				      "already complete");
	struct ag_own *o = ag_own_new(m);
	if (o == NULL)
		return tw_fail_static(TW_ENOMEM,
				      "out of memory for autograd metadata");
	future_ag_give(f, o);
	return TW_OK;
}

bool tw_future_ag(const tw_future *f, tw_ag_meta *out)
{
	if (f == NULL || !is_done(load_state(f)))
		return false;
	if (f->has_msg && (f->msg.hdr.flags & TW_FRAME_F_AUTOGRAD)) {
		if (out != NULL)
			*out = f->msg.ag;
		return true;
	}
	if (f->ag == NULL)
		return false;
	if (out != NULL)
		*out = ag_own_meta(f->ag);
	return true;
}

/* ---- completion ------------------------------------------------------- */

/* Become the one completer: PENDING -> COMPLETING, keeping the waiter bit. */
static bool claim(tw_future *f)
{
	/* Relaxed: the winner publishes with release in publish(); losers
	 * touch nothing. */
	uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
	while ((s & ST_MASK) == ST_PENDING) {
		if (atomic_compare_exchange_weak_explicit(
			    &f->state, &s,
			    (s & ~(uint32_t)ST_MASK) | ST_COMPLETING,
			    memory_order_relaxed, memory_order_relaxed))
			return true;
	}
	return false;
}

/* Publish the stored result, wake sleepers, run the callbacks. The caller
 * holds a reference of its own (complete() takes one), so f stays alive
 * even if a woken waiter drops the last user reference meanwhile. */
static void publish(tw_future *f)
{
	/* Release: pairs with load_state()'s acquire (waiters, readers,
	 * tw_future_done) and with the waiter's acquire fetch_or in
	 * tw_future_wait: the result stored above is visible to whoever sees
	 * ST_DONE. */
	uint32_t old = atomic_exchange_explicit(&f->state, ST_DONE,
						memory_order_release);
	if (old & ST_WAITERS)
		tw_futex_wake(&f->state, INT_MAX);

	/* Acquire: pairs with the release CAS in tw_future_then that pushed
	 * each node, so cb and arg are visible here. Release: pairs with the
	 * acquire load in tw_future_then that finds CB_CLOSED, so a callback
	 * run there sees the result (ordered before this by the exchange). */
	struct cb_node *n = atomic_exchange_explicit(&f->cbs, CB_CLOSED,
						     memory_order_acq_rel);
	/* The stack holds the newest first: reverse to registration order. */
	struct cb_node *rev = NULL;
	while (n != NULL) {
		struct cb_node *next = n->next;
		n->next = rev;
		rev = n;
		n = next;
	}
	while (rev != NULL) {
		struct cb_node *next = rev->next;
		tw_future_cb cb = rev->cb;
		void *arg = rev->arg;
		if (rev != &f->inline_cb)
			free(rev);
		cb(f, arg);
		tw_future_release(f); /* the registration's reference */
		rev = next;
	}
}

/* The winner of claim() has stored the result: publish it, then drop the
 * reference its completion call took before claiming. */
static tw_status finish(tw_future *f)
{
	publish(f);
	tw_future_release(f); /* taken in the caller before claim() */
	return TW_OK;
}

static tw_status complete_with_value(tw_future *f, tw_value *v)
{
	tw_future_retain(f);
	if (!claim(f)) {
		tw_future_release(f);
		return already_completed();
	}
	f->own = *v;
	*v = tw_value_none();
	f->status = TW_OK;
	f->val = &f->own;
	return finish(f);
}

tw_status tw_future_complete(tw_future *f, tw_value *v)
{
	if (f == NULL || v == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_future_complete: future or "
				      "value is NULL");
	return complete_with_value(f, v);
}

static bool error_kind_valid(tw_status k)
{
	return (unsigned)k != TW_OK && (unsigned)k < TW_STATUS_COUNT_;
}

/* Store a failure held in an ERROR value the future now owns. */
static tw_status fail_owned_as(tw_future *f, tw_value *err, bool relayed)
{
	tw_future_retain(f);
	if (!claim(f)) {
		tw_future_release(f);
		return already_completed();
	}
	f->err_relayed = relayed;
	f->own = *err;
	*err = tw_value_none();
	f->err = f->own.u.err;
	f->status = f->err->kind;
	return finish(f);
}

static tw_status fail_owned(tw_future *f, tw_value *err)
{
	return fail_owned_as(f, err, false);
}

/* Store a failure without a message (error value could not be built). */
static tw_status fail_bare(tw_future *f, tw_status kind, uint32_t origin)
{
	tw_future_retain(f);
	if (!claim(f)) {
		tw_future_release(f);
		return already_completed();
	}
	f->err_inline = (tw_error){
		.kind = kind, .origin = origin, .msg = "", .msg_len = 0};
	f->err = &f->err_inline;
	f->status = kind;
	return finish(f);
}

tw_status tw_future_fail(tw_future *f, tw_status kind, uint32_t origin,
			 const char *msg)
{
	if (f == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_future_fail: future is NULL");
	if (!error_kind_valid(kind))
		return tw_fail(TW_EINVAL,
			       "tw_future_fail: kind %d is not a "
			       "failure status",
			       (int)kind);
	/* Build the error before claiming: the completing window stays short
	 * and a loser only wasted a copy. */
	tw_value e;
	if (tw_value_error(&e, kind, origin, msg) != TW_OK)
		return fail_bare(f, kind,
				 origin); /* no room for msg: keep the kind */
	tw_status st = fail_owned(f, &e);
	if (st != TW_OK)
		tw_value_destroy(&e);
	return st;
}

tw_status tw_future_fail_value(tw_future *f, tw_value *err)
{
	if (f == NULL || err == NULL)
		return tw_fail_static(TW_EINVAL, "tw_future_fail_value: future "
						 "or error is NULL");
	if (err->kind != TW_KIND_ERROR || err->u.err == NULL ||
	    !error_kind_valid(err->u.err->kind))
		return tw_fail(TW_EINVAL,
			       "tw_future_fail_value: err must be an "
			       "error value with a failure kind, got a value "
			       "of kind '%s'",
			       tw_kind_name((tw_kind)err->kind));
	return fail_owned(f, err);
}

/*
 * The decoder may build the payload tree in the message's inline arena,
 * which moves with the struct: every pointer into the old arena [lo, hi)
 * must be shifted by delta to the copy. Pointers elsewhere (strings and
 * tensor bytes in the receive buffer, a heap arena) stay as they are.
 * Relies on message.c's layout: arena_ == arena_inline_ when the tree is
 * inline, arena_size_ the bytes it used.
 */
struct rebase {
	uintptr_t lo, hi;
	ptrdiff_t delta;
};

static void *rebase_ptr(const struct rebase *rb, const void *p)
{
	uintptr_t a = (uintptr_t)p;
	if (a >= rb->lo && a < rb->hi)
		return (void *)(a + (uintptr_t)rb->delta);
	return (void *)(uintptr_t)p;
}

static void rebase_value(const struct rebase *rb, tw_value *v, unsigned depth)
{
	if (depth > TW_VALUE_MAX_DEPTH)
		return; /* decoders refuse deeper trees */
	switch (v->kind) {
	case TW_KIND_STRING:
	case TW_KIND_BYTES:
		v->u.str = rebase_ptr(rb, v->u.str);
		break;
	case TW_KIND_TENSOR:
		v->u.tensor = rebase_ptr(rb, v->u.tensor);
		if (v->u.tensor != NULL)
			v->u.tensor->data = rebase_ptr(rb, v->u.tensor->data);
		break;
	case TW_KIND_LIST:
	case TW_KIND_TUPLE:
		v->u.items = rebase_ptr(rb, v->u.items);
		for (uint32_t i = 0; v->u.items != NULL && i < v->len; i++)
			rebase_value(rb, &v->u.items[i], depth + 1);
		break;
	case TW_KIND_DICT:
		v->u.entries = rebase_ptr(rb, v->u.entries);
		for (uint32_t i = 0; v->u.entries != NULL && i < v->len; i++) {
			tw_kv *e = &v->u.entries[i];
			e->key = rebase_ptr(rb, e->key);
			rebase_value(rb, &e->val, depth + 1);
		}
		break;
	case TW_KIND_RREF:
		v->u.rref = rebase_ptr(rb, v->u.rref);
		break;
	case TW_KIND_ERROR:
		v->u.err = rebase_ptr(rb, v->u.err);
		if (v->u.err != NULL)
			v->u.err->msg = rebase_ptr(rb, v->u.err->msg);
		break;
	default:
		break;
	}
}

/* Move *src into dst (the future's slot) and leave *src empty, so that
 * releasing it is harmless. */
static void move_msg(tw_in_msg *dst, tw_in_msg *src)
{
	const size_t head = offsetof(tw_in_msg, arena_inline_);
	memcpy(dst, src, head);
	if (src->arena_ == (void *)src->arena_inline_) {
		/* arena_size_ is what the decoder used of the arena. */
		size_t used = src->arena_size_;
		if (used > sizeof src->arena_inline_)
			used = sizeof src->arena_inline_;
		memcpy(dst->arena_inline_, src->arena_inline_, used);
		dst->arena_ = dst->arena_inline_;
		struct rebase rb = {
			.lo = (uintptr_t)src->arena_inline_,
			.hi = (uintptr_t)src->arena_inline_ +
			      sizeof src->arena_inline_,
			.delta = (ptrdiff_t)((uintptr_t)dst->arena_inline_ -
					     (uintptr_t)src->arena_inline_),
		};
		rebase_value(&rb, &dst->payload, 0);
	}
	/* Otherwise the tree sits in a heap arena or in payload itself, and
	 * nothing points into the struct. */
	memset(src, 0, head);
	src->payload = tw_value_none();
}

/* The message is in f->msg: classify it and publish. */
static tw_status finish_msg(tw_future *f)
{
	f->has_msg = true;
	const tw_value *p = &f->msg.payload;
	if (f->msg.hdr.type != TW_MSG_EXCEPTION) {
		f->status = TW_OK;
		f->val = p;
	} else if (p->kind == TW_KIND_ERROR && p->u.err != NULL &&
		   error_kind_valid(p->u.err->kind) &&
		   (p->u.err->msg != NULL || p->u.err->msg_len == 0)) {
		f->err_relayed = true;
		f->err = p->u.err;
		f->status = f->err->kind;
	} else {
		/* The decoder checks shapes, but a hand-built message may not
		 * have been: fail rather than trust it. */
		static const char why[] =
			"EXCEPTION message without a valid error";
		f->err_inline = (tw_error){.kind = TW_EPROTO,
					   .origin = f->msg.hdr.src,
					   .msg = why,
					   .msg_len = sizeof why - 1};
		f->err = &f->err_inline;
		f->status = TW_EPROTO;
	}
	return finish(f);
}

tw_status tw_future_complete_msg(tw_future *f, tw_in_msg *m)
{
	if (f == NULL || m == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_future_complete_msg: future "
				      "or message is NULL");
	tw_future_retain(f);
	if (!claim(f)) {
		tw_future_release(f);
		/* *m untouched: still the caller's */
		return already_completed();
	}
	move_msg(&f->msg, m);
	return finish_msg(f);
}

tw_in_msg *future_msg_begin(tw_future *f)
{
	tw_future_retain(f);
	if (!claim(f)) {
		tw_future_release(f);
		return NULL;
	}
	return &f->msg;
}

void future_msg_end(tw_future *f)
{
	(void)finish_msg(f);
}

void future_msg_fail(tw_future *f, tw_status kind, uint32_t origin,
		     const char *msg)
{
	/* Claimed already: store the failure as fail_owned/fail_bare would. */
	tw_value e;
	if (!error_kind_valid(kind))
		kind = TW_EPROTO;
	if (tw_value_error(&e, kind, origin, msg) == TW_OK) {
		f->own = e;
		f->err = f->own.u.err;
	} else {
		f->err_inline = (tw_error){.kind = kind,
					   .origin = origin,
					   .msg = "",
					   .msg_len = 0};
		f->err = &f->err_inline;
	}
	f->status = kind;
	(void)finish(f);
}

/* ---- reading ---------------------------------------------------------- */

bool tw_future_done(const tw_future *f)
{
	return f != NULL && is_done(load_state(f));
}

tw_status tw_future_status(const tw_future *f)
{
	if (f == NULL)
		return tw_fail_static(TW_EINVAL, "tw_future_status: future is "
						 "NULL");
	if (!is_done(load_state(f)))
		return tw_fail_static(TW_EBUSY, "the future is still pending");
	return f->status == TW_OK ? TW_OK : explain(f);
}

const tw_value *tw_future_value(const tw_future *f)
{
	if (f == NULL || !is_done(load_state(f)) || f->status != TW_OK)
		return NULL;
	return f->val;
}

const tw_error *tw_future_error(const tw_future *f)
{
	if (f == NULL || !is_done(load_state(f)) || f->status == TW_OK)
		return NULL;
	return f->err;
}

tw_status tw_future_take_value(const tw_future *f, tw_value *out)
{
	if (f == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL, "tw_future_take_value: future "
						 "or out is NULL");
	*out = tw_value_none();
	if (!is_done(load_state(f)))
		return tw_fail_static(TW_EBUSY, "the future is still pending");
	if (f->status != TW_OK)
		return explain(f);
	return tw_value_clone(out, f->val);
}

/* ---- waiting ---------------------------------------------------------- */

/* What a wait returns once f is done: its status, explained. */
static inline tw_status done_status(const tw_future *f)
{
	return f->status == TW_OK ? TW_OK : explain(f);
}

static tw_status wait_timed_out(int64_t timeout_ms)
{
	if (timeout_ms == 0)
		return tw_fail_static(TW_ETIMEDOUT,
				      "the future is still "
				      "pending (a wait of 0 ms only looks)");
	return tw_fail(TW_ETIMEDOUT,
		       "the future was not completed within "
		       "%lld ms",
		       (long long)timeout_ms);
}

tw_status tw_future_wait(tw_future *f, int64_t timeout_ms)
{
	if (f == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_future_wait: future is NULL");
	if (is_done(load_state(f))) {
		if (f->drv != NULL && f->drv->done_wait != NULL)
			f->drv->done_wait(f->drv_ctx);
		return done_status(f);
	}
	if (timeout_ms == 0)
		return wait_timed_out(timeout_ms);

	int64_t now = (int64_t)tw_now_ns();
	int64_t deadline = INT64_MAX; /* forever */
	if (timeout_ms > 0 && timeout_ms < (INT64_MAX - now) / 1000000)
		deadline = now + timeout_ms * 1000000;

	/* Poll what completes f ourselves, when it lets us: the answer then
	 * needs no hand-off between threads (future_set_driver). */
	if (f->drv != NULL) {
		if (f->drv->drive(f, f->drv_ctx, (uint64_t)deadline))
			return done_status(f);
		now = (int64_t)tw_now_ns();
		if (now >= deadline)
			return wait_timed_out(timeout_ms);
	}

	/* Spin: a result due within the spin budget arrives sooner than a
	 * sleeping thread could be woken. */
	int64_t spin_end = now + TW_FUTURE_SPIN_NS;
	int64_t hot_end = now + TW_FUTURE_HOT_SPIN_NS;
	if (spin_end > deadline)
		spin_end = deadline;
	for (;;) {
		for (int i = 0; i < SPIN_CLOCK_EVERY; i++) {
			tw_cpu_pause();
			if (is_done(load_state(f)))
				return done_status(f);
		}
		int64_t t = (int64_t)tw_now_ns();
		if (t >= spin_end)
			break;
		if (t >= hot_end)
			sched_yield();
	}

	struct timespec ts, *tsp = NULL;
	if (deadline != INT64_MAX) {
		ts.tv_sec = deadline / 1000000000;
		ts.tv_nsec = deadline % 1000000000;
		tsp = &ts;
	}
	for (;;) {
		/* Acquire: pairs with publish()'s release exchange when this
		 * sees ST_DONE. Setting the bit by RMW puts it in the state
		 * word's modification order: either the completer's exchange
		 * comes later and returns it (so it wakes us), or this returns
		 * ST_DONE. */
		uint32_t s = atomic_fetch_or_explicit(&f->state, ST_WAITERS,
						      memory_order_acquire);
		if (is_done(s))
			return done_status(f);
		int e = tw_futex_wait_until(&f->state, s | ST_WAITERS, tsp);
		if (e == ETIMEDOUT) {
			/* Completed just as we timed out: report it. */
			if (is_done(load_state(f)))
				return done_status(f);
			return wait_timed_out(timeout_ms);
		}
		/* Woken, EAGAIN (state moved on) or EINTR: look again. Any
		 * other error means the futex cannot sleep for us: poll
		 * politely instead of spinning hot. */
		if (e != 0 && e != EAGAIN && e != EINTR)
			sched_yield();
	}
}

/* ---- callbacks -------------------------------------------------------- */

tw_status tw_future_then(tw_future *f, tw_future_cb cb, void *arg)
{
	if (f == NULL || cb == NULL)
		return tw_fail_static(TW_EINVAL, "tw_future_then: future or "
						 "callback is NULL");
	/* Acquire: pairs with publish()'s acq_rel exchange that closes the
	 * list, so a callback run here sees the result. */
	struct cb_node *head = atomic_load_explicit(&f->cbs,
						    memory_order_acquire);
	if (head == CB_CLOSED) {
		cb(f, arg);
		return TW_OK;
	}

	struct cb_node *n;
	/* Relaxed: the flag only hands out the inline node once; its contents
	 * are published by the release CAS below. */
	if (atomic_exchange_explicit(&f->inline_used, 1,
				     memory_order_relaxed) == 0) {
		n = &f->inline_cb;
	} else {
		n = malloc(sizeof *n);
		if (n == NULL)
			return tw_fail_static(TW_ENOMEM, "out of memory for a "
							 "future's callback");
	}
	n->cb = cb;
	n->arg = arg;
	tw_future_retain(f); /* held until the callback has run */

	do {
		if (head == CB_CLOSED) {
			/* Completed while we prepared: the completer will not
			 * see this node, so run it here. */
			if (n != &f->inline_cb)
				free(n);
			cb(f, arg);
			tw_future_release(f);
			return TW_OK;
		}
		n->next = head;
		/* Release on success: pairs with publish()'s acq_rel exchange,
		 * making cb and arg visible to the completer. Acquire on
		 * failure: pairs with that exchange when we read CB_CLOSED
		 * (the callback then runs here and must see the result). */
	} while (!atomic_compare_exchange_weak_explicit(
		&f->cbs, &head, n, memory_order_release, memory_order_acquire));
	return TW_OK;
}

/* ---- chaining --------------------------------------------------------- */

static void chain_cb(tw_future *src, void *arg)
{
	tw_future *dst = arg;
	tw_status st = tw_future_status(src);
	if (st != TW_OK) {
		const tw_error *e = tw_future_error(src);
		tw_value ev = {.kind = TW_KIND_ERROR};
		ev.u.err = (tw_error *)e;
		tw_value copy;
		if (e != NULL && tw_value_clone(&copy, &ev) == TW_OK) {
			if (fail_owned_as(dst, &copy, src->err_relayed) !=
			    TW_OK)
				tw_value_destroy(&copy);
		} else {
			(void)fail_bare(dst, st, e != NULL ? e->origin : 0);
		}
		tw_future_release(dst);
		return;
	}

	tw_value out = tw_value_none();
	st = dst->chain_fn(src, dst->chain_arg, &out);
	if (st == TW_OK) {
		if (tw_future_complete(dst, &out) != TW_OK)
			tw_value_destroy(
				&out); /* someone completed dst by hand */
	} else {
		/* As handlers do: fn may describe its failure with an error
		 * value (message, origin); otherwise the kind speaks alone. */
		if (!error_kind_valid(st))
			st = TW_ERUNTIME;
		if (out.kind == TW_KIND_ERROR && out.u.err != NULL &&
		    out.u.err->kind == st &&
		    tw_future_fail_value(dst, &out) == TW_OK) {
			/* moved */
		} else {
			tw_value_destroy(&out);
			(void)tw_future_fail(dst, st, 0,
					     "chained function failed");
		}
	}
	tw_future_release(dst);
}

tw_status tw_future_chain(tw_future *f, tw_future_map_fn fn, void *arg,
			  tw_future **out)
{
	if (f == NULL || fn == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL, "tw_future_chain: future, "
						 "function or out is NULL");
	tw_future *g;
	tw_status st = tw_future_create(&g);
	if (st != TW_OK)
		return st;
	g->chain_fn = fn;
	g->chain_arg = arg;
	tw_future_retain(g); /* for chain_cb, which completes g */
	st = tw_future_then(f, chain_cb, g);
	if (st != TW_OK) {
		tw_future_release(g);
		tw_future_release(g);
		return st;
	}
	*out = g;
	return TW_OK;
}

/* ---- groups: wait_all, collect_all ------------------------------------ */

/*
 * Both watch every input with a callback (tw_future_then) rather than
 * waiting on each in turn: wait_all must notice the first failure, in
 * whatever order the inputs complete, and collect_all must not block at
 * all. The group is reference counted: a wait that returns early (a
 * failure, a timeout) leaves callbacks behind that still hold it.
 */

struct wa_node {
	struct wa_group *g;
	size_t idx;
};

struct wa_group {
	_Atomic uint32_t refs;    /* the waiter's + one per callback */
	_Atomic size_t remaining; /* inputs not yet completed with success */
	_Atomic size_t failed;    /* index of the first failure, or SIZE_MAX */
	tw_future *done;          /* completed (NONE) at the first failure or
				   * once every input succeeded */
	struct wa_node nodes[];
};

static void wa_release(struct wa_group *g)
{
	/* acq_rel: as tw_future_release. */
	if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
		return;
	tw_future_release(g->done);
	free(g);
}

static void wa_signal(struct wa_group *g)
{
	tw_value none = tw_value_none();
	(void)complete_with_value(g->done, &none);
}

static void wa_cb(tw_future *f, void *arg)
{
	struct wa_node *nd = arg;
	struct wa_group *g = nd->g;
	if (f->status != TW_OK) {
		size_t none = SIZE_MAX;
		/* The first failure wins; storing it before completing done
		 * publishes it to the waiter (done's release, its acquire). */
		if (atomic_compare_exchange_strong(&g->failed, &none, nd->idx))
			wa_signal(g);
	} else if (atomic_fetch_sub(&g->remaining, 1) == 1) {
		wa_signal(g); /* every input succeeded (none failed) */
	}
	wa_release(g);
}

tw_status future_wait_all_with(tw_future *const *futs, size_t n,
			       int64_t timeout_ms, future_wait_fn wait,
			       void *ctx, size_t *failed)
{
	*failed = SIZE_MAX;
	if (n > 0 && futs == NULL)
		return tw_fail_static(TW_EINVAL, "wait_all: futs is NULL");
	/* Everything done already (the common end of a burst): no group. */
	bool all_done = true;
	for (size_t i = 0; i < n; i++) {
		if (futs[i] == NULL)
			return tw_fail(TW_EINVAL, "wait_all: futs[%zu] is NULL",
				       i);
		if (!is_done(load_state(futs[i])))
			all_done = false;
	}
	if (all_done) {
		for (size_t i = 0; i < n; i++) {
			if (futs[i]->status != TW_OK) {
				*failed = i;
				return futs[i]->status;
			}
		}
		return TW_OK;
	}

	struct wa_group *g = malloc(sizeof(*g) + n * sizeof(g->nodes[0]));
	if (g == NULL)
		return tw_fail(TW_ENOMEM,
			       "wait_all: out of memory watching %zu "
			       "futures",
			       n);
	tw_status st = tw_future_create(&g->done);
	if (st != TW_OK) {
		free(g);
		return st;
	}
	atomic_init(&g->refs, 1);
	atomic_init(&g->remaining, n);
	atomic_init(&g->failed, SIZE_MAX);
	for (size_t i = 0; i < n; i++) {
		g->nodes[i] = (struct wa_node){.g = g, .idx = i};
		atomic_fetch_add(&g->refs, 1);
		st = tw_future_then(futs[i], wa_cb, &g->nodes[i]);
		if (st != TW_OK) {
			/* The callbacks registered still run and release
			 * their references; this one never will. */
			atomic_fetch_sub(&g->refs, 1);
			wa_release(g);
			return tw_fail(st,
				       "wait_all: cannot watch futs[%zu] "
				       "(out of memory)",
				       i);
		}
	}
	st = wait != NULL ? wait(g->done, timeout_ms, ctx)
			  : tw_future_wait(g->done, timeout_ms);
	if (st == TW_OK) {
		/* Acquire: done's completion published failed. */
		size_t i = atomic_load(&g->failed);
		if (i != SIZE_MAX) {
			*failed = i;
			st = futs[i]->status;
		}
	} else if (st == TW_ETIMEDOUT) {
		size_t pending = 0;
		for (size_t i = 0; i < n; i++)
			pending += !is_done(load_state(futs[i]));
		tw_fail(st,
			"wait_all: %zu of %zu futures still pending after "
			"%lld ms",
			pending, n, (long long)timeout_ms);
	}
	/* Any other status: the wait function's refusal, explained. */
	wa_release(g);
	return st;
}

tw_status tw_future_wait_all(tw_future *const *futs, size_t n,
			     int64_t timeout_ms)
{
	size_t i;
	tw_status st = future_wait_all_with(futs, n, timeout_ms, NULL, NULL,
					    &i);
	if (i == SIZE_MAX)
		return st;
	const tw_error *e = futs[i]->err;
	if (e == NULL || e->msg == NULL || e->msg_len == 0)
		return tw_fail(st, "future %zu (of %zu) failed: %s", i, n,
			       tw_strerror(st));
	return tw_fail(st, "future %zu (of %zu) failed: %.*s", i, n,
		       e->msg_len < TW_ERRMSG_MAX ? (int)e->msg_len
						  : TW_ERRMSG_MAX,
		       e->msg);
}

/* collect_all: the output list fills slot by slot, each written by the
 * callback of its own input (on whatever thread completes it); the last
 * one to finish (acq_rel on remaining: it sees every slot) completes out. */
struct ca_node {
	struct ca_group *g;
	uint32_t idx;
};

struct ca_group {
	_Atomic size_t remaining; /* inputs + 1 while callbacks are set up */
	tw_future *out;
	tw_value list;
	struct ca_node nodes[];
};

static void ca_finish(struct ca_group *g)
{
	if (atomic_fetch_sub_explicit(&g->remaining, 1, memory_order_acq_rel) !=
	    1)
		return;
	if (complete_with_value(g->out, &g->list) != TW_OK)
		tw_value_destroy(&g->list); /* the user completed out by hand */
	tw_future_release(g->out);
	free(g);
}

/* The slot of an input: a copy of its value or of its error. */
static void ca_fill(tw_value *slot, const tw_future *f, uint32_t idx)
{
	if (f->status == TW_OK) {
		tw_status st = tw_value_clone(slot, f->val);
		if (st == TW_OK)
			return;
		char msg[128];
		snprintf(msg, sizeof(msg),
			 "collect_all: cannot copy the value "
			 "of future %u: %s",
			 idx, tw_strerror(st));
		(void)tw_value_error(slot, st, 0, msg);
		return;
	}
	const tw_error *e = f->err;
	if (e == NULL ||
	    tw_value_error(slot, e->kind, e->origin, e->msg) != TW_OK)
		(void)tw_value_error(slot, f->status, e ? e->origin : 0, NULL);
}

static void ca_cb(tw_future *f, void *arg)
{
	struct ca_node *nd = arg;
	ca_fill(&nd->g->list.u.items[nd->idx], f, nd->idx);
	ca_finish(nd->g);
}

tw_status tw_future_collect_all(tw_future *const *futs, size_t n,
				tw_future **out)
{
	if (out == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_future_collect_all: out is "
				      "NULL");
	*out = NULL;
	if (n > 0 && futs == NULL)
		return tw_fail_static(TW_EINVAL, "tw_future_collect_all: futs "
						 "is NULL");
	if (n > UINT32_MAX - 1)
		return tw_fail(TW_EOVERFLOW,
			       "tw_future_collect_all: %zu futures, "
			       "over the %u a list holds",
			       n, UINT32_MAX - 1);
	for (size_t i = 0; i < n; i++)
		if (futs[i] == NULL)
			return tw_fail(TW_EINVAL,
				       "tw_future_collect_all: "
				       "futs[%zu] is NULL",
				       i);
	struct ca_group *g = malloc(sizeof(*g) + n * sizeof(g->nodes[0]));
	if (g == NULL)
		return tw_fail(TW_ENOMEM,
			       "collect_all: out of memory watching "
			       "%zu futures",
			       n);
	tw_status st = tw_value_list(&g->list, (uint32_t)n);
	if (st == TW_OK)
		st = tw_future_create(&g->out);
	if (st != TW_OK) {
		tw_value_destroy(&g->list);
		free(g);
		return st;
	}
	tw_future_retain(g->out); /* the group's, dropped by ca_finish */
	atomic_init(&g->remaining, n + 1);
	size_t i;
	for (i = 0; i < n; i++) {
		g->nodes[i] = (struct ca_node){.g = g, .idx = (uint32_t)i};
		st = tw_future_then(futs[i], ca_cb, &g->nodes[i]);
		if (st != TW_OK)
			break;
	}
	if (st != TW_OK) {
		/* Callbacks already set still run; the rest never will. The
		 * group finishes without the caller, who gets nothing. */
		for (size_t j = i; j < n; j++)
			(void)tw_value_error(&g->list.u.items[j], TW_ENOMEM, 0,
					     "collect_all: out of memory");
		atomic_fetch_sub(&g->remaining, n - i);
		tw_future *o = g->out;
		ca_finish(g);
		tw_future_release(o);
		return tw_fail(st,
			       "collect_all: cannot watch futs[%zu] (out of "
			       "memory)",
			       i);
	}
	*out = g->out;
	ca_finish(g); /* the set-up guard: completes out if all were done */
	return TW_OK;
}

bool future_error_relayed(const tw_future *f)
{
	return f->err_relayed;
}
