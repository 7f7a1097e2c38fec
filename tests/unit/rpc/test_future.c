/* Tests for tw_future: completion, failure, waiting (spin and futex paths),
 * callbacks and their races with completion, chaining, and futures completed
 * from decoded messages. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include <tensorwire/buf.h>
#include <tensorwire/future.h>
#include <tensorwire/message.h>
#include <tensorwire/tensor.h>
#include <tensorwire/value.h>

/*
 * No .timeout on these tests: criterion 2.4.1's runner leaks a 48-byte
 * block when timed tests overlap, which LeakSanitizer reports as a failure.
 * Waits that could hang on a bug are bounded (10 s) instead.
 */

/* ---- helpers ---------------------------------------------------------- */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void spin_for_ns(int64_t ns)
{
	int64_t end = now_ns() + ns;
	while (now_ns() < end)
		;
}

static tw_future *new_future(void)
{
	tw_future *f = NULL;
	cr_assert_eq(tw_future_create(&f), TW_OK);
	cr_assert_not_null(f);
	return f;
}

static void complete_int(tw_future *f, int64_t i)
{
	tw_value v = tw_value_int(i);
	cr_assert_eq(tw_future_complete(f, &v), TW_OK);
}

static int64_t value_int(const tw_future *f)
{
	const tw_value *v = tw_future_value(f);
	cr_assert_not_null(v);
	int64_t i = 0;
	cr_assert_eq(tw_value_get_int(v, &i), TW_OK);
	return i;
}

static void assert_error(const tw_future *f, tw_status kind, uint32_t origin,
			 const char *msg)
{
	cr_assert_eq(tw_future_status(f), kind);
	cr_assert_null(tw_future_value(f));
	const tw_error *e = tw_future_error(f);
	cr_assert_not_null(e);
	cr_assert_eq(e->kind, kind);
	cr_assert_eq(e->origin, origin);
	cr_assert_str_eq(e->msg, msg);
	cr_assert_eq(e->msg_len, strlen(msg));
}

/* ---- completion and reading ------------------------------------------- */

Test(future, complete_then_read)
{
	tw_future *f = new_future();
	cr_assert_not(tw_future_done(f));
	cr_assert_eq(tw_future_status(f), TW_EBUSY);
	cr_assert_null(tw_future_value(f));
	cr_assert_null(tw_future_error(f));
	tw_value out = tw_value_int(9);
	cr_assert_eq(tw_future_take_value(f, &out), TW_EBUSY);
	cr_assert_eq(out.kind, TW_KIND_NONE);

	tw_value v;
	cr_assert_eq(tw_value_cstring(&v, "forty-two"), TW_OK);
	cr_assert_eq(tw_future_complete(f, &v), TW_OK);
	cr_assert_eq(v.kind, TW_KIND_NONE, "the future takes the value");

	cr_assert(tw_future_done(f));
	cr_assert_eq(tw_future_status(f), TW_OK);
	cr_assert_null(tw_future_error(f));
	const tw_value *got = tw_future_value(f);
	cr_assert_not_null(got);
	const char *s;
	size_t len;
	cr_assert_eq(tw_value_get_string(got, &s, &len), TW_OK);
	cr_assert_str_eq(s, "forty-two");
	cr_assert_eq(tw_future_wait(f, 0), TW_OK);
	cr_assert_eq(tw_future_wait(f, -1), TW_OK);
	tw_future_release(f);
}

Test(future, fail_then_read)
{
	tw_future *f = new_future();
	cr_assert_eq(tw_future_fail(f, TW_EVALUE, 3, "bad value: 7"), TW_OK);
	cr_assert(tw_future_done(f));
	assert_error(f, TW_EVALUE, 3, "bad value: 7");
	cr_assert_eq(tw_future_wait(f, 100), TW_EVALUE);
	tw_value out = tw_value_int(1);
	cr_assert_eq(tw_future_take_value(f, &out), TW_EVALUE);
	cr_assert_eq(out.kind, TW_KIND_NONE);
	tw_future_release(f);

	/* NULL message reads as empty. */
	f = new_future();
	cr_assert_eq(tw_future_fail(f, TW_ESHUTDOWN, 0, NULL), TW_OK);
	assert_error(f, TW_ESHUTDOWN, 0, "");
	tw_future_release(f);
}

Test(future, fail_value_moves_error)
{
	tw_future *f = new_future();
	tw_value e;
	cr_assert_eq(tw_value_error(&e, TW_ENOFUNC, 4, "no function x::y"),
		     TW_OK);
	cr_assert_eq(tw_future_fail_value(f, &e), TW_OK);
	cr_assert_eq(e.kind, TW_KIND_NONE);
	assert_error(f, TW_ENOFUNC, 4, "no function x::y");
	tw_future_release(f);
}

Test(future, invalid_arguments)
{
	tw_future *f = new_future();
	cr_assert_eq(tw_future_fail(f, TW_OK, 0, "not an error"), TW_EINVAL);
	cr_assert_eq(tw_future_fail(f, TW_STATUS_COUNT_, 0, "x"), TW_EINVAL);
	tw_value notanerror = tw_value_int(3);
	cr_assert_eq(tw_future_fail_value(f, &notanerror), TW_EINVAL);
	cr_assert_eq(tw_future_complete(f, NULL), TW_EINVAL);
	cr_assert_eq(tw_future_complete_msg(f, NULL), TW_EINVAL);
	cr_assert_eq(tw_future_then(f, NULL, NULL), TW_EINVAL);
	cr_assert_eq(tw_future_create(NULL), TW_EINVAL);
	cr_assert_not(tw_future_done(f), "failed calls leave it pending");
	tw_future_release(f);
	tw_future_release(NULL);
}

Test(future, double_completion_is_ebusy)
{
	tw_future *f = new_future();
	complete_int(f, 1);

	tw_value v;
	cr_assert_eq(tw_value_cstring(&v, "loser"), TW_OK);
	cr_assert_eq(tw_future_complete(f, &v), TW_EBUSY);
	cr_assert_eq(v.kind, TW_KIND_STRING, "a loser keeps its value");
	tw_value_destroy(&v);

	cr_assert_eq(tw_future_fail(f, TW_ERUNTIME, 1, "late"), TW_EBUSY);
	tw_value e;
	cr_assert_eq(tw_value_error(&e, TW_ERUNTIME, 1, "late"), TW_OK);
	cr_assert_eq(tw_future_fail_value(f, &e), TW_EBUSY);
	cr_assert_eq(e.kind, TW_KIND_ERROR, "a loser keeps its error");
	tw_value_destroy(&e);

	cr_assert_eq(tw_future_status(f), TW_OK);
	cr_assert_eq(value_int(f), 1, "unchanged by later attempts");
	tw_future_release(f);

	/* Failed first, completed later. */
	f = new_future();
	cr_assert_eq(tw_future_fail(f, TW_ETIMEDOUT, 2, "deadline"), TW_OK);
	tw_value w = tw_value_int(5);
	cr_assert_eq(tw_future_complete(f, &w), TW_EBUSY);
	assert_error(f, TW_ETIMEDOUT, 2, "deadline");
	tw_future_release(f);
}

/* Several threads race to complete one future: exactly one wins. */
struct race_ctx {
	tw_future *f;
	atomic_int *go;
	atomic_int *wins;
	int id;
};

static void *race_complete(void *p)
{
	struct race_ctx *c = p;
	while (!atomic_load(c->go))
		;
	tw_status st;
	if (c->id % 2) {
		tw_value v = tw_value_int(c->id);
		st = tw_future_complete(c->f, &v);
	} else {
		st = tw_future_fail(c->f, TW_ERUNTIME, (uint32_t)c->id,
				    "lost?");
	}
	cr_assert(st == TW_OK || st == TW_EBUSY);
	if (st == TW_OK)
		atomic_fetch_add(c->wins, 1);
	return NULL;
}

Test(future, concurrent_completers_one_wins)
{
	for (int round = 0; round < 300; round++) {
		tw_future *f = new_future();
		atomic_int go = 0, wins = 0;
		pthread_t t[4];
		struct race_ctx c[4];
		for (int i = 0; i < 4; i++) {
			c[i] = (struct race_ctx){f, &go, &wins, i};
			pthread_create(&t[i], NULL, race_complete, &c[i]);
		}
		atomic_store(&go, 1);
		for (int i = 0; i < 4; i++)
			pthread_join(t[i], NULL);
		cr_assert_eq(atomic_load(&wins), 1);
		cr_assert(tw_future_done(f));
		tw_future_release(f);
	}
}

Test(future, take_value_is_owned_clone)
{
	tw_future *f = new_future();
	tw_value v;
	cr_assert_eq(tw_value_list(&v, 2), TW_OK);
	tw_value s;
	cr_assert_eq(tw_value_cstring(&s, "inner"), TW_OK);
	cr_assert_eq(tw_value_set_item(&v, 0, s), TW_OK);
	cr_assert_eq(tw_value_set_item(&v, 1, tw_value_int(77)), TW_OK);
	cr_assert_eq(tw_future_complete(f, &v), TW_OK);

	tw_value c;
	cr_assert_eq(tw_future_take_value(f, &c), TW_OK);
	const tw_value *orig = tw_future_value(f);
	cr_assert(tw_value_equal(&c, orig));
	cr_assert_eq(c.flags & TW_VALUE_BORROWED, 0);
	cr_assert_neq(c.u.items, orig->u.items, "a copy, not the same storage");
	cr_assert_neq(c.u.items[0].u.str, orig->u.items[0].u.str);
	tw_future_release(f); /* the copy outlives the future */
	const char *str;
	size_t len;
	cr_assert_eq(tw_value_get_string(&c.u.items[0], &str, &len), TW_OK);
	cr_assert_str_eq(str, "inner");
	tw_value_destroy(&c);
}

/* ---- waiting ---------------------------------------------------------- */

Test(future, wait_times_out_quickly)
{
	tw_future *f = new_future();
	int64_t t0 = now_ns();
	cr_assert_eq(tw_future_wait(f, 0), TW_ETIMEDOUT);
	int64_t dt = now_ns() - t0;
	/* It polls: no wait at all, but on a loaded CI machine a thread can
	 * be descheduled for tens of ms; only a wait that blocks fails. */
	cr_assert_lt(dt, 1000 * 1000000LL, "timeout 0 polls (took %lld ns)",
		     (long long)dt);

	t0 = now_ns();
	cr_assert_eq(tw_future_wait(f, 50), TW_ETIMEDOUT);
	dt = now_ns() - t0;
	cr_assert_geq(dt, 50 * 1000000, "woke early: %lld ns", (long long)dt);
	cr_assert_lt(dt, 2000 * 1000000LL, "overslept: %lld ns", (long long)dt);

	cr_assert_not(tw_future_done(f), "a timed-out wait leaves it pending");
	complete_int(f, 3);
	cr_assert_eq(tw_future_wait(f, 50), TW_OK);
	tw_future_release(f);
}

struct delayed {
	tw_future *f;
	atomic_int *waiting; /* set by the waiter just before it waits */
	int64_t delay_ns;
	bool fail;
};

static void *complete_after(void *p)
{
	struct delayed *d = p;
	while (!atomic_load(d->waiting))
		sched_yield();
	spin_for_ns(d->delay_ns);
	if (d->fail)
		cr_assert_eq(tw_future_fail(d->f, TW_EUNREACHABLE, 9, "gone"),
			     TW_OK);
	else
		complete_int(d->f, 1234);
	/* The completer holds its own reference while it completes. */
	tw_future_release(d->f);
	return NULL;
}

/* One waiter, one completer thread that completes delay_ns after the waiter
 * starts waiting. Returns how long the wait took. */
static int64_t wait_for_delayed(int64_t delay_ns, int64_t timeout_ms, bool fail)
{
	tw_future *f = new_future();
	atomic_int waiting = 0;
	struct delayed d = {tw_future_retain(f), &waiting, delay_ns, fail};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, complete_after, &d), 0);
	atomic_store(&waiting, 1);
	int64_t t0 = now_ns();
	tw_status st = tw_future_wait(f, timeout_ms);
	int64_t dt = now_ns() - t0;
	if (fail) {
		cr_assert_eq(st, TW_EUNREACHABLE);
		assert_error(f, TW_EUNREACHABLE, 9, "gone");
	} else {
		cr_assert_eq(st, TW_OK);
		cr_assert_eq(value_int(f), 1234);
	}
	pthread_join(t, NULL);
	tw_future_release(f);
	return dt;
}

/* Completion long after the spin budget: the waiter sleeps on the futex
 * and must be woken. */
Test(future, wait_futex_path)
{
	for (int i = 0; i < 20; i++) {
		int64_t dt = wait_for_delayed(2 * 1000000, -1, i % 4 == 3);
		cr_assert_geq(dt, 2 * 1000000, "returned before completion");
	}
	/* With a finite timeout that the completion beats. */
	for (int i = 0; i < 10; i++)
		cr_assert_lt(wait_for_delayed(5 * 1000000, 5000, false),
			     5000 * 1000000LL);
}

/* Completion within the spin budget: served by spinning (no futex). */
Test(future, wait_spin_path)
{
	for (int i = 0; i < 200; i++)
		wait_for_delayed(2000, i % 2 ? -1 : 1000, i % 10 == 9);
}

/* Completion around the spin/futex boundary, many times: a lost wakeup
 * shows up as a 10 s timeout instead of a hang. */
Test(future, wait_boundary_stress)
{
	static const int64_t delays[] = {0, 10000, 25000, 30000, 35000, 60000};
	for (int i = 0; i < 120; i++)
		wait_for_delayed(delays[i % 6], 10000, false);
}

/* Several waiters on one future, all woken by one completion. */
struct multi_wait {
	tw_future *f;
	atomic_int *started;
};

static void *multi_waiter(void *p)
{
	struct multi_wait *m = p;
	atomic_fetch_add(m->started, 1);
	cr_assert_eq(tw_future_wait(m->f, 10000), TW_OK);
	cr_assert_eq(value_int(m->f), 5);
	return NULL;
}

Test(future, many_waiters_all_woken)
{
	tw_future *f = new_future();
	atomic_int started = 0;
	struct multi_wait m = {f, &started};
	pthread_t t[6];
	for (int i = 0; i < 6; i++)
		pthread_create(&t[i], NULL, multi_waiter, &m);
	while (atomic_load(&started) < 6)
		sched_yield();
	struct timespec ts = {0, 20 * 1000000};
	nanosleep(&ts, NULL); /* let them reach the futex */
	complete_int(f, 5);
	for (int i = 0; i < 6; i++)
		pthread_join(t[i], NULL);
	tw_future_release(f);
}

/* ---- callbacks -------------------------------------------------------- */

struct cb_rec {
	atomic_int calls;
	pthread_t thread;
	int64_t seen;
	tw_status status;
};

static void record_cb(tw_future *f, void *arg)
{
	struct cb_rec *r = arg;
	r->thread = pthread_self();
	r->status = tw_future_status(f);
	const tw_value *v = tw_future_value(f);
	if (v != NULL)
		tw_value_get_int(v, &r->seen);
	atomic_fetch_add(&r->calls, 1);
}

static void *complete_in_thread(void *p)
{
	complete_int(p, 99);
	return NULL;
}

Test(future, then_before_completion_runs_on_completer)
{
	tw_future *f = new_future();
	struct cb_rec r = {0};
	cr_assert_eq(tw_future_then(f, record_cb, &r), TW_OK);
	cr_assert_eq(atomic_load(&r.calls), 0, "not before completion");
	pthread_t t;
	pthread_create(&t, NULL, complete_in_thread, f);
	pthread_join(t, NULL);
	cr_assert_eq(atomic_load(&r.calls), 1);
	cr_assert(pthread_equal(r.thread, t), "ran on the completing thread");
	cr_assert_eq(r.status, TW_OK);
	cr_assert_eq(r.seen, 99, "the callback sees the value");
	tw_future_release(f);
}

Test(future, then_after_completion_runs_at_once)
{
	tw_future *f = new_future();
	complete_int(f, 7);
	struct cb_rec r = {0};
	cr_assert_eq(tw_future_then(f, record_cb, &r), TW_OK);
	cr_assert_eq(atomic_load(&r.calls), 1);
	cr_assert(pthread_equal(r.thread, pthread_self()));
	cr_assert_eq(r.seen, 7);
	tw_future_release(f);

	/* On a failed future too. */
	f = new_future();
	cr_assert_eq(tw_future_fail(f, TW_EAUTH, 1, "denied"), TW_OK);
	struct cb_rec r2 = {0};
	cr_assert_eq(tw_future_then(f, record_cb, &r2), TW_OK);
	cr_assert_eq(atomic_load(&r2.calls), 1);
	cr_assert_eq(r2.status, TW_EAUTH);
	tw_future_release(f);
}

struct order_log {
	int seq[128];
	int n;
};
struct order_arg {
	struct order_log *log;
	int idx;
};

static void order_cb(tw_future *f, void *arg)
{
	(void)f;
	struct order_arg *a = arg;
	a->log->seq[a->log->n++] = a->idx;
}

Test(future, many_callbacks_in_registration_order)
{
	tw_future *f = new_future();
	struct order_log log = {.n = 0};
	struct order_arg args[100];
	for (int i = 0; i < 100; i++) {
		args[i] = (struct order_arg){&log, i};
		cr_assert_eq(tw_future_then(f, order_cb, &args[i]), TW_OK);
	}
	cr_assert_eq(log.n, 0);
	complete_int(f, 0);
	cr_assert_eq(log.n, 100);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(log.seq[i], i, "callback %d ran at %d", log.seq[i],
			     i);
	/* Registered after completion: at once, after the others. */
	struct order_arg late = {&log, 100};
	cr_assert_eq(tw_future_then(f, order_cb, &late), TW_OK);
	cr_assert_eq(log.n, 101);
	cr_assert_eq(log.seq[100], 100);
	tw_future_release(f);
}

/* The callback holds its own reference: the future survives the creator's
 * release, and a callback may drop the last reference itself. */
static void release_cb(tw_future *f, void *arg)
{
	atomic_int *calls = arg;
	cr_assert_eq(value_int(f), 11);
	atomic_fetch_add(calls, 1);
	tw_future_release(f); /* the reference handed over to us */
}

Test(future, callback_references)
{
	atomic_int calls = 0;
	tw_future *f = new_future();
	tw_future *completer = tw_future_retain(f);
	cr_assert_eq(tw_future_then(f, release_cb, &calls), TW_OK);
	/* The creator's reference went to release_cb; completer's is ours. */
	complete_int(completer, 11);
	cr_assert_eq(atomic_load(&calls), 1);
	tw_future_release(completer); /* the last one (ASan: no leak, no UAF) */

	/* Completer holds no reference of its own beyond the callback's. */
	f = new_future();
	cr_assert_eq(tw_future_then(f, release_cb, &calls), TW_OK);
	complete_int(f, 11); /* release_cb drops the only reference */
	cr_assert_eq(atomic_load(&calls), 2);
}

/* A callback may register another callback on the same future: it runs at
 * once (the future is done). */
static void nested_cb(tw_future *f, void *arg)
{
	struct cb_rec *r = arg;
	cr_assert_eq(tw_future_then(f, record_cb, r), TW_OK);
	cr_assert_eq(atomic_load(&r->calls), 1);
}

Test(future, then_from_a_callback)
{
	tw_future *f = new_future();
	struct cb_rec r = {0};
	cr_assert_eq(tw_future_then(f, nested_cb, &r), TW_OK);
	complete_int(f, 4);
	cr_assert_eq(atomic_load(&r.calls), 1);
	cr_assert_eq(r.seen, 4);
	tw_future_release(f);
}

/* ---- callbacks racing completion (stress) ----------------------------- */

#define STRESS_N 10000
#define STRESS_REGISTRARS 2
#define STRESS_CBS 3 /* per registrar per future: the inline node and mallocs */

struct stress {
	tw_future *f[STRESS_N];
	atomic_int calls[STRESS_N];
	atomic_int go;
	tw_buf *payload_buf;
};

struct stress_arg {
	struct stress *s;
	pthread_t completer;
};

static void stress_cb(tw_future *f, void *arg)
{
	atomic_int *calls = arg;
	cr_assert_eq(tw_future_status(f), TW_OK);
	const tw_value *v = tw_future_value(f);
	cr_assert(v != NULL && v->kind == TW_KIND_TENSOR,
		  "the value is visible to every callback");
	atomic_fetch_add(calls, 1);
}

static void *stress_registrar(void *p)
{
	struct stress *s = p;
	while (!atomic_load(&s->go))
		;
	for (int i = 0; i < STRESS_N; i++) {
		for (int k = 0; k < STRESS_CBS; k++)
			cr_assert_eq(tw_future_then(s->f[i], stress_cb,
						    &s->calls[i]),
				     TW_OK);
		/* Each registrar owns one reference to each future. */
		tw_future_release(s->f[i]);
	}
	return NULL;
}

static void *stress_completer(void *p)
{
	struct stress *s = p;
	const int64_t shape[1] = {4};
	while (!atomic_load(&s->go))
		;
	for (int i = 0; i < STRESS_N; i++) {
		tw_tensor t;
		cr_assert_eq(tw_tensor_init(&t, TW_FLOAT32, 1, shape, NULL,
					    s->payload_buf->data,
					    s->payload_buf),
			     TW_OK);
		tw_value v;
		cr_assert_eq(tw_value_tensor(&v, &t), TW_OK);
		tw_tensor_release(&t);
		cr_assert_eq(tw_future_complete(s->f[i], &v), TW_OK);
		tw_future_release(s->f[i]); /* the completer's reference */
	}
	return NULL;
}

Test(future, then_races_completion_stress)
{
	struct stress *s = calloc(1, sizeof *s);
	cr_assert_not_null(s);
	cr_assert_eq(tw_buf_alloc(64, &s->payload_buf), TW_OK);
	for (int i = 0; i < STRESS_N; i++) {
		s->f[i] = new_future();
		/* One reference per registrar and one for the completer; the
		 * creator's is handed to the first registrar. */
		for (int r = 1; r < STRESS_REGISTRARS; r++)
			tw_future_retain(s->f[i]);
		tw_future_retain(s->f[i]);
	}
	pthread_t reg[STRESS_REGISTRARS], comp;
	for (int r = 0; r < STRESS_REGISTRARS; r++)
		pthread_create(&reg[r], NULL, stress_registrar, s);
	pthread_create(&comp, NULL, stress_completer, s);
	atomic_store(&s->go, 1);
	for (int r = 0; r < STRESS_REGISTRARS; r++)
		pthread_join(reg[r], NULL);
	pthread_join(comp, NULL);

	for (int i = 0; i < STRESS_N; i++)
		cr_assert_eq(atomic_load(&s->calls[i]),
			     STRESS_REGISTRARS * STRESS_CBS,
			     "future %d: %d callbacks ran", i,
			     atomic_load(&s->calls[i]));
	/* Every future held a tensor referencing payload_buf: only ours is
	 * left once every future has been freed. */
	cr_assert_eq(tw_buf_refcnt(s->payload_buf), 1,
		     "%u buffer references left: a future leaked",
		     tw_buf_refcnt(s->payload_buf));
	tw_buf_release(s->payload_buf);
	free(s);
}

/* ---- chaining --------------------------------------------------------- */

static tw_status double_it(tw_future *src, void *arg, tw_value *out)
{
	atomic_int *calls = arg;
	if (calls != NULL)
		atomic_fetch_add(calls, 1);
	*out = tw_value_int(2 * value_int(src));
	return TW_OK;
}

Test(future, chain_success)
{
	atomic_int calls = 0;
	tw_future *f = new_future();
	tw_future *g = NULL, *h = NULL;
	cr_assert_eq(tw_future_chain(f, double_it, &calls, &g), TW_OK);
	cr_assert_eq(tw_future_chain(g, double_it, &calls, &h), TW_OK);
	cr_assert_not(tw_future_done(g));
	cr_assert_not(tw_future_done(h));
	cr_assert_eq(tw_future_status(h), TW_EBUSY);
	complete_int(f, 21);
	cr_assert(tw_future_done(g));
	cr_assert_eq(value_int(g), 42);
	cr_assert_eq(tw_future_wait(h, 1000), TW_OK);
	cr_assert_eq(value_int(h), 84);
	cr_assert_eq(atomic_load(&calls), 2);

	/* Chained onto a future that is already done: completes at once. */
	tw_future *k = NULL;
	cr_assert_eq(tw_future_chain(h, double_it, NULL, &k), TW_OK);
	cr_assert(tw_future_done(k));
	cr_assert_eq(value_int(k), 168);
	tw_future_release(k);
	tw_future_release(h);
	tw_future_release(g);
	tw_future_release(f);
}

static tw_status fail_plain(tw_future *src, void *arg, tw_value *out)
{
	(void)src;
	(void)arg;
	(void)out;
	return TW_EVALUE;
}

static tw_status fail_with_error(tw_future *src, void *arg, tw_value *out)
{
	(void)src;
	(void)arg;
	cr_assert_eq(tw_value_error(out, TW_ETYPE, 6, "expected a tensor"),
		     TW_OK);
	return TW_ETYPE;
}

static tw_status fail_leaving_value(tw_future *src, void *arg, tw_value *out)
{
	(void)src;
	(void)arg;
	/* A non-error value left in *out on failure must not leak. */
	cr_assert_eq(tw_value_cstring(out, "partial"), TW_OK);
	return TW_ERUNTIME;
}

Test(future, chain_fn_fails)
{
	tw_future *f = new_future();
	tw_future *g1, *g2, *g3;
	cr_assert_eq(tw_future_chain(f, fail_plain, NULL, &g1), TW_OK);
	cr_assert_eq(tw_future_chain(f, fail_with_error, NULL, &g2), TW_OK);
	cr_assert_eq(tw_future_chain(f, fail_leaving_value, NULL, &g3), TW_OK);
	complete_int(f, 1);

	cr_assert_eq(tw_future_status(g1), TW_EVALUE);
	cr_assert_not_null(tw_future_error(g1));
	cr_assert_eq(tw_future_error(g1)->kind, TW_EVALUE);
	cr_assert_null(tw_future_value(g1));

	assert_error(g2, TW_ETYPE, 6, "expected a tensor");

	cr_assert_eq(tw_future_status(g3), TW_ERUNTIME);
	cr_assert_eq(tw_future_error(g3)->kind, TW_ERUNTIME);

	tw_future_release(g1);
	tw_future_release(g2);
	tw_future_release(g3);
	tw_future_release(f);
}

Test(future, chain_of_failed_source)
{
	atomic_int calls = 0;
	tw_future *f = new_future();
	tw_future *g;
	cr_assert_eq(tw_future_chain(f, double_it, &calls, &g), TW_OK);
	cr_assert_eq(tw_future_fail(f, TW_EUNREACHABLE, 5, "peer 5 gone"),
		     TW_OK);
	cr_assert_eq(atomic_load(&calls), 0, "fn is not called");
	assert_error(g, TW_EUNREACHABLE, 5, "peer 5 gone");
	cr_assert_neq(tw_future_error(g)->msg, tw_future_error(f)->msg,
		      "the error is copied");
	tw_future_release(f);
	/* Still readable after the source is gone. */
	assert_error(g, TW_EUNREACHABLE, 5, "peer 5 gone");
	cr_assert_eq(tw_future_wait(g, 0), TW_EUNREACHABLE);
	tw_future_release(g);
}

/* A chain whose source is completed by another thread while waiting. */
Test(future, chain_across_threads)
{
	tw_future *f = new_future();
	tw_future *g;
	cr_assert_eq(tw_future_chain(f, double_it, NULL, &g), TW_OK);
	pthread_t t;
	pthread_create(&t, NULL, complete_in_thread, f);
	cr_assert_eq(tw_future_wait(g, 10000), TW_OK);
	cr_assert_eq(value_int(g), 198);
	pthread_join(t, NULL);
	tw_future_release(g);
	tw_future_release(f);
}

/* ---- completion from a decoded message -------------------------------- */

/* Encode payload as a message of type, copy the frame into a fresh receive
 * buffer and decode it into a heap tw_in_msg (so that pointers left into
 * its inline arena after the move would be heap-use-after-free for ASan).
 * *rb gets our own reference on the receive buffer. */
static tw_in_msg *decode_roundtrip(unsigned type, const tw_value *payload,
				   tw_buf **rb)
{
	tw_frame_hdr hdr = {0};
	hdr.version = TW_FRAME_VERSION;
	hdr.type = (uint8_t)type;
	hdr.req_id = 77;
	hdr.src = 2;
	hdr.dst = 1;
	tw_out_msg out;
	cr_assert_eq(tw_msg_encode(NULL, &hdr, payload, &out), TW_OK);
	cr_assert_eq(tw_buf_alloc(out.total_len, rb), TW_OK);
	tw_out_msg_copy(&out, (*rb)->data);
	size_t len = out.total_len;
	tw_out_msg_release(&out);
	tw_in_msg *m = malloc(sizeof *m);
	cr_assert_not_null(m);
	tw_status st = tw_msg_decode(*rb, 0, len, NULL, NULL, m);
	cr_assert_eq(st, TW_OK, "decode: %s", tw_errmsg(st));
	cr_assert_eq(tw_buf_refcnt(*rb), 2, "ours and the message's");
	return m;
}

/* Move m into f, then wreck and free m's memory: the future must not refer
 * to it any more. */
static void complete_and_scrap(tw_future *f, tw_in_msg *m)
{
	cr_assert_eq(tw_future_complete_msg(f, m), TW_OK);
	cr_assert_eq(m->payload.kind, TW_KIND_NONE, "*m is left empty");
	cr_assert_null(m->buf);
	tw_in_msg_release(m); /* harmless on an emptied message */
	memset(m, 0xA5, sizeof *m);
	free(m);
}

static void build_payload(tw_value *v, uint32_t nints, tw_buf **tbuf)
{
	/* tuple(str, tensor, list[int] * nints, dict{"k": -1}) */
	const int64_t shape[2] = {2, 3};
	tw_tensor t;
	cr_assert_eq(tw_tensor_alloc(&t, TW_FLOAT32, 2, shape), TW_OK);
	float *d = t.data;
	for (int i = 0; i < 6; i++)
		d[i] = (float)i * 1.5f;
	*tbuf = tw_buf_retain(t.buf);

	cr_assert_eq(tw_value_tuple(v, 4), TW_OK);
	tw_value s, tv, l, dict;
	cr_assert_eq(tw_value_cstring(&s, "result string"), TW_OK);
	cr_assert_eq(tw_value_tensor(&tv, &t), TW_OK);
	tw_tensor_release(&t);
	cr_assert_eq(tw_value_list(&l, nints), TW_OK);
	for (uint32_t i = 0; i < nints; i++)
		cr_assert_eq(tw_value_set_item(&l, i, tw_value_int(i * 3)),
			     TW_OK);
	cr_assert_eq(tw_value_dict(&dict, 1), TW_OK);
	cr_assert_eq(tw_value_dict_set(&dict, 0, "k", tw_value_int(-1)), TW_OK);
	cr_assert_eq(tw_value_set_item(v, 0, s), TW_OK);
	cr_assert_eq(tw_value_set_item(v, 1, tv), TW_OK);
	cr_assert_eq(tw_value_set_item(v, 2, l), TW_OK);
	cr_assert_eq(tw_value_set_item(v, 3, dict), TW_OK);
}

static void check_complete_msg(uint32_t nints, bool expect_inline)
{
	tw_value payload;
	tw_buf *tbuf;
	build_payload(&payload, nints, &tbuf);
	tw_buf *rb;
	tw_in_msg *m = decode_roundtrip(TW_MSG_RET, &payload, &rb);
	/* Both ways a decoded tree can sit: the future must move either. */
	bool inline_arena = m->arena_ == (void *)m->arena_inline_;
	cr_assert_eq(inline_arena, expect_inline, "%u ints: arena %s", nints,
		     inline_arena ? "inline" : "heap");

	tw_future *f = new_future();
	complete_and_scrap(f, m);
	cr_assert_eq(tw_future_status(f), TW_OK);
	const tw_value *v = tw_future_value(f);
	cr_assert_not_null(v);
	cr_assert(v->flags & TW_VALUE_BORROWED, "borrowed from the message");
	cr_assert(tw_value_equal(v, &payload));

	/* Zero copy: the tensor's bytes are in the receive buffer. */
	const tw_value *tv;
	cr_assert_eq(tw_value_get_item(v, 1, &tv), TW_OK);
	const tw_tensor *t;
	cr_assert_eq(tw_value_get_tensor(tv, &t), TW_OK);
	uintptr_t lo = (uintptr_t)rb->data, hi = lo + rb->size;
	cr_assert((uintptr_t)t->data >= lo && (uintptr_t)t->data < hi);
	const tw_value *sv;
	cr_assert_eq(tw_value_get_item(v, 0, &sv), TW_OK);
	const char *s;
	size_t len;
	cr_assert_eq(tw_value_get_string(sv, &s, &len), TW_OK);
	cr_assert_str_eq(s, "result string");
	const tw_value *dv, *kv;
	cr_assert_eq(tw_value_get_item(v, 3, &dv), TW_OK);
	cr_assert_eq(tw_value_dict_get(dv, "k", &kv), TW_OK);
	cr_assert_eq(kv->u.i, -1);
	cr_assert_eq(tw_buf_refcnt(rb), 2,
		     "the future holds the receive buffer");

	/* An owned copy: tensors share the receive buffer by reference. */
	tw_value c;
	cr_assert_eq(tw_future_take_value(f, &c), TW_OK);
	cr_assert_eq(c.flags & TW_VALUE_BORROWED, 0);
	cr_assert(tw_value_equal(&c, &payload));
	cr_assert_eq(tw_buf_refcnt(rb), 3);

	tw_future_release(f);
	cr_assert_eq(tw_buf_refcnt(rb), 2,
		     "released with the future, the copy's ref stays");
	cr_assert(tw_value_equal(&c, &payload), "the copy outlives the future");
	tw_value_destroy(&c);
	cr_assert_eq(tw_buf_refcnt(rb), 1);
	tw_buf_release(rb);
	tw_value_destroy(&payload);
	cr_assert_eq(tw_buf_refcnt(tbuf), 1);
	tw_buf_release(tbuf);
}

Test(future, complete_msg_inline_arena)
{
	check_complete_msg(3, true);
}

Test(future, complete_msg_heap_arena)
{
	check_complete_msg(300, false);
}

Test(future, complete_msg_scalar_payload)
{
	tw_value p = tw_value_double(2.5);
	tw_buf *rb;
	tw_in_msg *m = decode_roundtrip(TW_MSG_RET, &p, &rb);
	tw_future *f = new_future();
	complete_and_scrap(f, m);
	double d = 0;
	cr_assert_eq(tw_value_get_double(tw_future_value(f), &d), TW_OK);
	cr_assert_eq(d, 2.5);
	tw_future_release(f);
	cr_assert_eq(tw_buf_refcnt(rb), 1);
	tw_buf_release(rb);
}

Test(future, complete_msg_exception)
{
	tw_value e;
	cr_assert_eq(tw_value_error(&e, TW_ENOFUNC, 3,
				    "no function demo::nope"),
		     TW_OK);
	tw_buf *rb;
	tw_in_msg *m = decode_roundtrip(TW_MSG_EXCEPTION, &e, &rb);
	tw_value_destroy(&e);

	tw_future *f = new_future();
	struct cb_rec r = {0};
	cr_assert_eq(tw_future_then(f, record_cb, &r), TW_OK);
	complete_and_scrap(f, m);
	cr_assert_eq(atomic_load(&r.calls), 1);
	cr_assert_eq(r.status, TW_ENOFUNC);
	cr_assert_eq(tw_future_wait(f, 0), TW_ENOFUNC);
	assert_error(f, TW_ENOFUNC, 3, "no function demo::nope");
	tw_value c = tw_value_int(1);
	cr_assert_eq(tw_future_take_value(f, &c), TW_ENOFUNC);
	cr_assert_eq(c.kind, TW_KIND_NONE);

	/* A chain copies the error out of the message. */
	tw_future *g;
	cr_assert_eq(tw_future_chain(f, double_it, NULL, &g), TW_OK);
	tw_future_release(f);
	cr_assert_eq(tw_buf_refcnt(rb), 1, "the receive buffer went with f");
	assert_error(g, TW_ENOFUNC, 3, "no function demo::nope");
	tw_future_release(g);
	tw_buf_release(rb);
}

Test(future, complete_msg_loser_keeps_message)
{
	tw_value p = tw_value_int(8);
	tw_buf *rb;
	tw_in_msg *m = decode_roundtrip(TW_MSG_RET, &p, &rb);
	tw_future *f = new_future();
	complete_int(f, 1);
	cr_assert_eq(tw_future_complete_msg(f, m), TW_EBUSY);
	cr_assert_eq(m->payload.kind, TW_KIND_INT, "untouched on TW_EBUSY");
	cr_assert_eq(m->buf, rb);
	cr_assert_eq(value_int(f), 1);
	tw_future_release(f);
	tw_in_msg_release(m);
	free(m);
	cr_assert_eq(tw_buf_refcnt(rb), 1);
	tw_buf_release(rb);
}

/* A message completed on a run loop thread while the application waits. */
struct msg_completer {
	tw_future *f;
	tw_in_msg *m;
};

static void *complete_msg_thread(void *p)
{
	struct msg_completer *c = p;
	struct timespec ts = {0, 2 * 1000000};
	nanosleep(&ts, NULL);
	complete_and_scrap(c->f, c->m);
	return NULL;
}

Test(future, complete_msg_across_threads)
{
	tw_value payload;
	tw_buf *tbuf;
	build_payload(&payload, 4, &tbuf);
	tw_buf *rb;
	struct msg_completer c = {new_future(), NULL};
	c.m = decode_roundtrip(TW_MSG_RET, &payload, &rb);
	pthread_t t;
	pthread_create(&t, NULL, complete_msg_thread, &c);
	cr_assert_eq(tw_future_wait(c.f, 10000), TW_OK);
	cr_assert(tw_value_equal(tw_future_value(c.f), &payload));
	pthread_join(t, NULL);
	tw_future_release(c.f);
	cr_assert_eq(tw_buf_refcnt(rb), 1);
	tw_buf_release(rb);
	tw_value_destroy(&payload);
	tw_buf_release(tbuf);
}

/* ---- reasons (tw_errmsg) ------------------------------------------------ */

Test(future_errmsg, refusals_say_why)
{
	tw_future *f = new_future();
	cr_assert_eq(tw_future_fail(f, TW_OK, 0, "not an error"), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "tw_future_fail: kind 0 is not a failure status");
	tw_value notanerror = tw_value_int(3);
	cr_assert_eq(tw_future_fail_value(f, &notanerror), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "tw_future_fail_value: err must "
			 "be an error value with a failure kind, got a value "
			 "of kind 'int'");
	cr_assert_eq(tw_future_status(f), TW_EBUSY);
	cr_assert_str_eq(tw_errmsg(TW_EBUSY), "the future is still pending");
	cr_assert_eq(tw_future_wait(f, 0), TW_ETIMEDOUT);
	cr_assert_str_eq(tw_errmsg(TW_ETIMEDOUT),
			 "the future is still pending "
			 "(a wait of 0 ms only looks)");
	cr_assert_eq(tw_future_wait(f, 1), TW_ETIMEDOUT);
	cr_assert_str_eq(tw_errmsg(TW_ETIMEDOUT),
			 "the future was not completed within 1 ms");
	complete_int(f, 1);
	tw_value v = tw_value_int(2);
	cr_assert_eq(tw_future_complete(f, &v), TW_EBUSY);
	cr_assert_str_eq(tw_errmsg(TW_EBUSY),
			 "the future is already completed");
	tw_future_release(f);
}

/* A failed future's wait (and status, and take_value) explains itself with
 * the future's own message, copied: it outlives the future. */
Test(future_errmsg, failure_kind_carries_the_message)
{
	tw_future *f = new_future();
	cr_assert_eq(tw_future_fail(f, TW_EVALUE, 3, "x must be positive"),
		     TW_OK);
	cr_assert_eq(tw_future_wait(f, -1), TW_EVALUE);
	cr_assert_str_eq(tw_errmsg(TW_EVALUE), "x must be positive");
	tw_value out;
	cr_assert_eq(tw_future_take_value(f, &out), TW_EVALUE);
	cr_assert_eq(tw_future_status(f), TW_EVALUE);
	tw_future_release(f);
	cr_assert_str_eq(tw_errmsg(TW_EVALUE), "x must be positive");
	/* Asked about another kind: that kind's description, not this. */
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), tw_strerror(TW_EINVAL));
	/* A failure without a message: the kind's description. */
	f = new_future();
	cr_assert_eq(tw_future_fail(f, TW_ERUNTIME, 0, NULL), TW_OK);
	cr_assert_eq(tw_future_wait(f, -1), TW_ERUNTIME);
	cr_assert_str_eq(tw_errmsg(TW_ERUNTIME), tw_strerror(TW_ERUNTIME));
	tw_future_release(f);
}

/* ---- wait_all ---------------------------------------------------------- */

struct later {
	tw_future *f;
	int64_t delay_ns;
	tw_status kind; /* TW_OK: complete with idx */
	int64_t idx;
};

static void *complete_later(void *p)
{
	struct later *l = p;
	spin_for_ns(l->delay_ns);
	if (l->kind == TW_OK)
		complete_int(l->f, l->idx);
	else
		cr_assert_eq(tw_future_fail(l->f, l->kind, 7, "boom"), TW_OK);
	tw_future_release(l->f);
	return NULL;
}

static pthread_t later(tw_future *f, int64_t delay_ms, tw_status kind,
		       int64_t idx, struct later *l)
{
	*l = (struct later){tw_future_retain(f), delay_ms * 1000000, kind, idx};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, complete_later, l), 0);
	return t;
}

Test(future_group, wait_all_waits_for_every_future)
{
	tw_future *f[4];
	struct later l[3];
	pthread_t t[3];
	for (int i = 0; i < 4; i++)
		f[i] = new_future();
	complete_int(f[0], 0);
	for (int i = 1; i < 4; i++)
		t[i - 1] = later(f[i], 5 * i, TW_OK, i, &l[i - 1]);
	cr_assert_eq(tw_future_wait_all(f, 4, 10000), TW_OK);
	for (int i = 0; i < 4; i++) {
		cr_assert(tw_future_done(f[i]));
		cr_assert_eq(value_int(f[i]), i);
	}
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	/* All done already: no group, same answer. */
	cr_assert_eq(tw_future_wait_all(f, 4, 0), TW_OK);
	cr_assert_eq(tw_future_wait_all(NULL, 0, 0), TW_OK);
	for (int i = 0; i < 4; i++)
		tw_future_release(f[i]);
}

/* torch.futures.wait_all: the first failure returns at once, without
 * waiting for futures that may never complete. */
Test(future_group, wait_all_fails_fast)
{
	tw_future *f[3];
	for (int i = 0; i < 3; i++)
		f[i] = new_future();
	complete_int(f[0], 0);
	struct later l;
	pthread_t t = later(f[1], 20, TW_EVALUE, 0, &l);
	int64_t t0 = now_ns();
	/* f[2] never completes while we wait. */
	cr_assert_eq(tw_future_wait_all(f, 3, 10000), TW_EVALUE);
	cr_assert_lt(now_ns() - t0, 5000 * 1000000LL);
	cr_assert_str_eq(tw_errmsg(TW_EVALUE), "future 1 (of 3) failed: boom");
	cr_assert_not(tw_future_done(f[2]));
	pthread_join(t, NULL);
	/* Completed after the wait returned: the group's callback still
	 * runs and frees it (LeakSanitizer checks). */
	complete_int(f[2], 2);
	/* Several failed already: the first by index. */
	cr_assert_eq(tw_future_fail(f[0] = new_future(), TW_ETYPE, 0, "t"),
		     TW_OK);
	tw_future *g[3] = {f[2], f[1], f[0]};
	cr_assert_eq(tw_future_wait_all(g, 3, 0), TW_EVALUE);
	cr_assert_str_eq(tw_errmsg(TW_EVALUE), "future 1 (of 3) failed: boom");
	for (int i = 0; i < 3; i++)
		tw_future_release(f[i]);
}

Test(future_group, wait_all_times_out)
{
	tw_future *f[3];
	for (int i = 0; i < 3; i++)
		f[i] = new_future();
	complete_int(f[1], 1);
	int64_t t0 = now_ns();
	cr_assert_eq(tw_future_wait_all(f, 3, 30), TW_ETIMEDOUT);
	cr_assert_geq(now_ns() - t0, 30 * 1000000);
	cr_assert_str_eq(tw_errmsg(TW_ETIMEDOUT),
			 "wait_all: 2 of 3 futures still pending after 30 ms");
	cr_assert_eq(tw_future_wait_all(f, 3, 0), TW_ETIMEDOUT);
	/* The futures are unaffected; complete them after the fact. */
	complete_int(f[0], 0);
	cr_assert_eq(tw_future_fail(f[2], TW_EIO, 0, "disk"), TW_OK);
	cr_assert_eq(tw_future_wait_all(f, 3, 0), TW_EIO);
	cr_assert_str_eq(tw_errmsg(TW_EIO), "future 2 (of 3) failed: disk");
	for (int i = 0; i < 3; i++)
		tw_future_release(f[i]);
}

Test(future_group, wait_all_refuses_bad_arguments)
{
	tw_future *f[2] = {new_future(), NULL};
	cr_assert_eq(tw_future_wait_all(NULL, 2, 0), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), "wait_all: futs is NULL");
	cr_assert_eq(tw_future_wait_all(f, 2, 0), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL), "wait_all: futs[1] is NULL");
	tw_future_release(f[0]);
}

/* Many waits racing many completers: every wait ends with the right
 * status, every group is freed (ASan, LeakSanitizer). */
Test(future_group, wait_all_races_completion)
{
	for (int round = 0; round < 200; round++) {
		tw_future *f[4];
		struct later l[4];
		pthread_t t[4];
		for (int i = 0; i < 4; i++)
			f[i] = new_future();
		bool fail = round % 3 == 0;
		for (int i = 0; i < 4; i++)
			t[i] = later(f[i], 0, fail && i == 2 ? TW_EIO : TW_OK,
				     i, &l[i]);
		tw_status st = tw_future_wait_all(f, 4, 10000);
		cr_assert_eq(st, fail ? TW_EIO : TW_OK, "round %d: %s", round,
			     tw_status_name(st));
		for (int i = 0; i < 4; i++) {
			pthread_join(t[i], NULL);
			tw_future_release(f[i]);
		}
	}
}

/* ---- collect_all ---------------------------------------------------------- */

Test(future_group, collect_all_lists_values_and_errors)
{
	tw_future *f[3];
	for (int i = 0; i < 3; i++)
		f[i] = new_future();
	complete_int(f[0], 10);
	tw_future *all = NULL;
	cr_assert_eq(tw_future_collect_all(f, 3, &all), TW_OK);
	cr_assert_not(tw_future_done(all), "inputs pending: not done");
	struct later l[2];
	pthread_t t0 = later(f[1], 5, TW_EUNREACHABLE, 0, &l[0]);
	pthread_t t1 = later(f[2], 10, TW_OK, 12, &l[1]);
	/* Never fails, whatever its inputs did. */
	cr_assert_eq(tw_future_wait(all, 10000), TW_OK);
	const tw_value *v = tw_future_value(all);
	cr_assert_eq(v->kind, TW_KIND_LIST);
	cr_assert_eq(v->len, 3);
	cr_assert_eq(v->u.items[0].kind, TW_KIND_INT);
	cr_assert_eq(v->u.items[0].u.i, 10);
	cr_assert_eq(v->u.items[1].kind, TW_KIND_ERROR);
	cr_assert_eq(v->u.items[1].u.err->kind, TW_EUNREACHABLE);
	cr_assert_eq(v->u.items[1].u.err->origin, 7);
	cr_assert_str_eq(v->u.items[1].u.err->msg, "boom");
	cr_assert_eq(v->u.items[2].u.i, 12);
	pthread_join(t0, NULL);
	pthread_join(t1, NULL);
	/* The list is a copy: it outlives the inputs. */
	for (int i = 0; i < 3; i++)
		tw_future_release(f[i]);
	cr_assert_eq(tw_future_value(all)->u.items[0].u.i, 10);
	tw_future_release(all);
}

Test(future_group, collect_all_of_nothing_and_of_done)
{
	tw_future *all = NULL;
	cr_assert_eq(tw_future_collect_all(NULL, 0, &all), TW_OK);
	cr_assert(tw_future_done(all), "nothing to wait for");
	cr_assert_eq(tw_future_value(all)->kind, TW_KIND_LIST);
	cr_assert_eq(tw_future_value(all)->len, 0);
	tw_future_release(all);

	tw_future *f[2] = {new_future(), new_future()};
	complete_int(f[0], 1);
	complete_int(f[1], 2);
	cr_assert_eq(tw_future_collect_all(f, 2, &all), TW_OK);
	cr_assert(tw_future_done(all), "inputs done: completed at once");
	cr_assert_eq(tw_future_value(all)->u.items[1].u.i, 2);
	tw_future_release(all);
	/* The output is the caller's: released before the inputs complete,
	 * the group still finishes and frees everything. */
	tw_future *g = new_future();
	cr_assert_eq(tw_future_collect_all(&g, 1, &all), TW_OK);
	tw_future_release(all);
	complete_int(g, 3);
	tw_future_release(g);
	tw_future_release(f[0]);
	tw_future_release(f[1]);

	cr_assert_eq(tw_future_collect_all(f, 2, NULL), TW_EINVAL);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "tw_future_collect_all: out is NULL");
	tw_future *h[1] = {NULL};
	cr_assert_eq(tw_future_collect_all(h, 1, &all), TW_EINVAL);
	cr_assert_null(all);
	cr_assert_str_eq(tw_errmsg(TW_EINVAL),
			 "tw_future_collect_all: futs[0] is NULL");
}

/* Inputs completed on several threads at once: one of them completes
 * the output, which holds every slot. */
Test(future_group, collect_all_races_completion)
{
	for (int round = 0; round < 200; round++) {
		tw_future *f[4];
		struct later l[4];
		pthread_t t[4];
		for (int i = 0; i < 4; i++)
			f[i] = new_future();
		tw_future *all = NULL;
		cr_assert_eq(tw_future_collect_all(f, 4, &all), TW_OK);
		for (int i = 0; i < 4; i++)
			t[i] = later(f[i], 0, TW_OK, 100 + i, &l[i]);
		cr_assert_eq(tw_future_wait(all, 10000), TW_OK);
		for (int i = 0; i < 4; i++)
			cr_assert_eq(tw_future_value(all)->u.items[i].u.i,
				     100 + i);
		for (int i = 0; i < 4; i++) {
			pthread_join(t[i], NULL);
			tw_future_release(f[i]);
		}
		tw_future_release(all);
	}
}
