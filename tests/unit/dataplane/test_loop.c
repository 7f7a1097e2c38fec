/* Run loop and fault injector tests: messages from many threads, pollers,
 * timers on a fake clock, io_uring completions, the idle policy (a sleeping
 * loop wakes on a post and costs no CPU), and torch's faulty-agent
 * behaviours on a fake transport. Time bounds here are liveness bounds,
 * generous on purpose, never performance assertions. */
#include "dataplane/loop.h"
#include "dataplane/transport.h"

#include <criterion/criterion.h>

#include "dataplane/util.h"
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define US UINT64_C(1000)
#define MS UINT64_C(1000000)
#define SEC UINT64_C(1000000000)

static uint64_t mono_ns(void)
{
	return tw_clock_monotonic(NULL);
}

/* The fake clock the test moves by hand. */
static _Atomic uint64_t fake_ns;

static uint64_t fake_clock(void *ctx)
{
	(void)ctx;
	return atomic_load(&fake_ns);
}

static tw_loop *make_loop(const struct tw_loop_opts *o)
{
	tw_loop *l = NULL;
	cr_assert_eq(tw_loop_create(o, &l), TW_OK);
	cr_assert_not_null(l);
	return l;
}

/* Poll l from this thread until *flag is non-zero or timeout passes. */
static bool poll_until(tw_loop *l, _Atomic int *flag, uint64_t timeout)
{
	uint64_t end = mono_ns() + timeout;
	while (!atomic_load(flag)) {
		if (mono_ns() > end)
			return false;
		(void)tw_loop_poll_wait(l, MS);
	}
	return true;
}

/* Wait (without polling: another thread does) until *v >= want. */
static bool wait_u32(_Atomic uint32_t *v, uint32_t want, uint64_t timeout)
{
	uint64_t end = mono_ns() + timeout;
	while (atomic_load(v) < want) {
		if (mono_ns() > end)
			return false;
		usleep(200);
	}
	return true;
}

/* ---------------------------------------------------------------- options */

Test(loop_opts, defaults)
{
	struct tw_loop_opts o;
	memset(&o, 0x5a, sizeof(o));
	tw_loop_opts_init(&o, sizeof(o));
	cr_assert_eq(o.opts_size, sizeof(o));
	cr_assert_null(o.name);
	cr_assert_eq(o.cpu, -1);
	cr_assert_eq(o.ring_size, 4096);
	cr_assert_eq(o.batch, 64);
	cr_assert_eq(o.spin_ns, 200 * US);
	cr_assert(!o.yield);
	cr_assert_eq(o.tick_ns, MS);
	cr_assert_eq(o.uring_entries, 512);
	cr_assert_null(o.clock);
	cr_assert_null(o.clock_ctx);
}

/* A caller built against a shorter struct: init writes only its prefix, and
 * create reads only its prefix (the garbage after it would be a bad ring
 * size and a wild clock pointer). */
Test(loop_opts, short_opts_size)
{
	struct tw_loop_opts o;
	memset(&o, 0xab, sizeof(o));
	size_t sz = offsetof(struct tw_loop_opts, ring_size);
	tw_loop_opts_init(&o, sz);
	cr_assert_eq(o.opts_size, sz);
	cr_assert_eq(o.cpu, -1);
	const unsigned char *b = (const unsigned char *)&o;
	for (size_t i = sz; i < sizeof(o); i++)
		cr_assert_eq(b[i], 0xab, "byte %zu written past opts_size", i);

	tw_loop *l = make_loop(&o);
	/* Default ring size: exactly 4096 posts fit. */
	static struct tw_loop_msg m[4097];
	unsigned ok = 0;
	while (ok < 4097 && tw_loop_post(l, &m[ok]) == TW_OK)
		ok++;
	cr_assert_eq(ok, 4096);
	tw_loop_destroy(l);
}

Test(loop_opts, invalid)
{
	struct tw_loop_opts o;
	tw_loop *l = (tw_loop *)1;
	tw_loop_opts_init(&o, sizeof(o));
	o.ring_size = 1000; /* not a power of two */
	cr_assert_eq(tw_loop_create(&o, &l), TW_EINVAL);
	cr_assert_null(l);
	o.ring_size = 64;
	o.opts_size = 0; /* never initialised */
	cr_assert_eq(tw_loop_create(&o, &l), TW_EINVAL);
	cr_assert_eq(tw_loop_create(&o, NULL), TW_EINVAL);
	/* NULL opts = defaults. */
	cr_assert_eq(tw_loop_create(NULL, &l), TW_OK);
	tw_loop_destroy(l);
}

/* --------------------------------------------------------------- messages */

#define MAX_PROD 5

struct tmsg {
	struct tw_loop_msg m;
	uint32_t prod, seq;
	_Atomic uint32_t runs;
};

/* Written by the loop thread only, read by the test after the run. */
static struct {
	tw_loop *l;
	pthread_t main_thread;
	bool expect_main; /* embedded: the loop thread is the test's */
	uint32_t next[MAX_PROD];
	uint32_t bad_order, off_thread;
	_Atomic uint32_t ran;
} g;

static void tmsg_run(struct tw_loop_msg *m)
{
	struct tmsg *t = container_of(m, struct tmsg, m);
	if (!tw_loop_on_thread(g.l) ||
	    (pthread_equal(pthread_self(), g.main_thread) != 0) !=
		    g.expect_main)
		g.off_thread++;
	if (t->seq != g.next[t->prod])
		g.bad_order++;
	g.next[t->prod] = t->seq + 1;
	atomic_fetch_add(&t->runs, 1);
	atomic_fetch_add(&g.ran, 1);
}

struct producer {
	pthread_t th;
	tw_loop *l;
	struct tmsg *msgs;
	uint32_t n;
	uint32_t full;  /* TW_ENOSPC seen (backpressure) */
	bool on_thread; /* tw_loop_on_thread from a producer */
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	p->on_thread = tw_loop_on_thread(p->l);
	for (uint32_t i = 0; i < p->n; i++) {
		tw_status st;
		while ((st = tw_loop_post(p->l, &p->msgs[i].m)) == TW_ENOSPC) {
			p->full++;
			sched_yield();
		}
		if (st != TW_OK)
			break;
	}
	return NULL;
}

static struct tmsg *make_msgs(uint32_t prod, uint32_t n)
{
	struct tmsg *m = calloc(n, sizeof(*m));
	cr_assert_not_null(m);
	for (uint32_t i = 0; i < n; i++) {
		m[i].m.fn = tmsg_run;
		m[i].prod = prod;
		m[i].seq = i;
	}
	return m;
}

static void check_msgs(struct tmsg *m, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		cr_assert_eq(atomic_load(&m[i].runs), 1,
			     "message %u of producer %u ran %u times", i,
			     m[i].prod, atomic_load(&m[i].runs));
}

/* Embedded loop on the test thread, one producer thread; a small ring so
 * the producer meets backpressure. */
Test(loop_post, one_producer_embedded)
{
	struct tw_loop_opts o;
	tw_loop_opts_init(&o, sizeof(o));
	o.ring_size = 64;
	o.spin_ns = 50 * US;
	o.yield = true;
	tw_loop *l = make_loop(&o);
	memset(&g, 0, sizeof(g));
	g.l = l;
	g.main_thread = pthread_self();
	g.expect_main = true;

	cr_assert(!tw_loop_on_thread(l), "no polling thread yet");
	(void)tw_loop_poll_once(l); /* binds the loop to this thread */
	cr_assert(tw_loop_on_thread(l));

	const uint32_t n = 20000;
	struct producer p = {.l = l, .msgs = make_msgs(0, n), .n = n};
	cr_assert_eq(pthread_create(&p.th, NULL, produce, &p), 0);
	uint64_t end = mono_ns() + 10 * SEC;
	while (atomic_load(&g.ran) < n && mono_ns() < end)
		(void)tw_loop_poll_wait(l, 10 * MS);
	pthread_join(p.th, NULL);

	cr_assert_eq(atomic_load(&g.ran), n);
	cr_assert_eq(g.bad_order, 0);
	cr_assert_eq(g.off_thread, 0);
	cr_assert(!p.on_thread);
	check_msgs(p.msgs, n);
	struct tw_loop_stats s;
	tw_loop_get_stats(l, &s);
	cr_assert_eq(s.msgs, n);
	free(p.msgs);
	tw_loop_destroy(l);
}

/* A started loop thread, four producer threads: each message runs once, on
 * the loop thread, in its producer's order. */
Test(loop_post, four_producers_thread)
{
	struct tw_loop_opts o;
	tw_loop_opts_init(&o, sizeof(o));
	o.name = "tw-test-loop-with-a-long-name";
	o.ring_size = 256;
	o.spin_ns = 100 * US;
	o.yield = true;
	tw_loop *l = make_loop(&o);
	memset(&g, 0, sizeof(g));
	g.l = l;
	g.main_thread = pthread_self();
	g.expect_main = false;
	cr_assert_eq(tw_loop_start(l), TW_OK);
	cr_assert_eq(tw_loop_start(l), TW_EBUSY);

	const uint32_t n = 20000;
	struct producer p[4];
	for (uint32_t i = 0; i < 4; i++) {
		p[i] = (struct producer){
			.l = l, .msgs = make_msgs(i, n), .n = n};
		cr_assert_eq(pthread_create(&p[i].th, NULL, produce, &p[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(p[i].th, NULL);
	cr_assert(wait_u32(&g.ran, 4 * n, 10 * SEC), "ran %u of %u",
		  atomic_load(&g.ran), 4 * n);
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	cr_assert(!tw_loop_on_thread(l), "the test thread is not the loop's");

	cr_assert_eq(atomic_load(&g.ran), 4 * n);
	cr_assert_eq(g.bad_order, 0);
	cr_assert_eq(g.off_thread, 0);
	for (int i = 0; i < 4; i++) {
		cr_assert(!p[i].on_thread);
		check_msgs(p[i].msgs, n);
		free(p[i].msgs);
	}
	tw_loop_destroy(l);
}

static _Atomic uint32_t plain_runs;

static void plain_run(struct tw_loop_msg *m)
{
	(void)m;
	atomic_fetch_add(&plain_runs, 1);
}

Test(loop_post, ring_full_and_batch)
{
	struct tw_loop_opts o;
	tw_loop_opts_init(&o, sizeof(o));
	o.ring_size = 8;
	o.batch = 3;
	tw_loop *l = make_loop(&o);
	atomic_store(&plain_runs, 0);
	struct tw_loop_msg m[9];
	for (int i = 0; i < 9; i++)
		m[i].fn = plain_run;
	for (int i = 0; i < 8; i++)
		cr_assert_eq(tw_loop_post(l, &m[i]), TW_OK);
	cr_assert_eq(tw_loop_post(l, &m[8]), TW_ENOSPC);

	/* At most batch per iteration. */
	cr_assert_eq(tw_loop_poll_once(l), 3);
	cr_assert_eq(atomic_load(&plain_runs), 3);
	cr_assert_eq(tw_loop_post(l, &m[8]), TW_OK, "room again");
	cr_assert_eq(tw_loop_poll_once(l), 3);
	cr_assert_eq(tw_loop_poll_once(l), 3);
	cr_assert_eq(tw_loop_poll_once(l), 0);
	cr_assert_eq(atomic_load(&plain_runs), 9);
	struct tw_loop_stats s;
	tw_loop_get_stats(l, &s);
	cr_assert_eq(s.msgs, 9);
	cr_assert_eq(s.iterations, 4);
	cr_assert_eq(s.busy_iterations, 3);
	tw_loop_destroy(l);
}

/* A loop that never sleeps (spin_ns = UINT64_MAX) is never woken: posting
 * to an awake loop makes no syscall. */
Test(loop_post, awake_loop_needs_no_wakeup)
{
	struct tw_loop_opts o;
	tw_loop_opts_init(&o, sizeof(o));
	o.spin_ns = UINT64_MAX;
	o.yield = true;
	tw_loop *l = make_loop(&o);
	atomic_store(&plain_runs, 0);
	cr_assert_eq(tw_loop_start(l), TW_OK);
	static struct tw_loop_msg m[1000];
	for (int i = 0; i < 1000; i++) {
		m[i].fn = plain_run;
		while (tw_loop_post(l, &m[i]) == TW_ENOSPC)
			sched_yield();
	}
	cr_assert(wait_u32(&plain_runs, 1000, 5 * SEC));
	struct tw_loop_stats s;
	tw_loop_get_stats(l, &s);
	cr_assert_eq(s.sleeps, 0);
	cr_assert_eq(s.wakeups_posted, 0);
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	tw_loop_destroy(l);
}

/* ---------------------------------------------------------------- pollers */

struct tpoller {
	struct tw_poller p;
	tw_loop *l;
	int calls;
	int ret;
	bool remove_self;
	struct tpoller *remove_other;
};

static int tpoller_fn(void *arg)
{
	struct tpoller *t = arg;
	t->calls++;
	if (t->remove_self)
		tw_loop_remove_poller(t->l, &t->p);
	if (t->remove_other != NULL)
		tw_loop_remove_poller(t->l, &t->remove_other->p);
	return t->ret;
}

static void tpoller_init(struct tpoller *t, tw_loop *l, int ret)
{
	*t = (struct tpoller){
		.p = {.fn = tpoller_fn, .arg = t}, .l = l, .ret = ret};
}

Test(loop_poller, every_iteration_and_removal)
{
	tw_loop *l = make_loop(NULL);
	struct tpoller a, b, c;
	tpoller_init(&a, l, 0);
	tpoller_init(&b, l, 2);
	tpoller_init(&c, l, 0);
	tw_loop_add_poller(l, &a.p);
	tw_loop_add_poller(l, &b.p);
	tw_loop_add_poller(l, &b.p); /* twice: no-op */
	tw_loop_add_poller(l, &c.p);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(tw_loop_poll_once(l), 2, "b's work counts");
	cr_assert_eq(a.calls, 5);
	cr_assert_eq(b.calls, 5);
	cr_assert_eq(c.calls, 5);

	tw_loop_remove_poller(l, &b.p);
	tw_loop_remove_poller(l, &b.p); /* twice: no-op */
	cr_assert_eq(tw_loop_poll_once(l), 0);
	cr_assert_eq(a.calls, 6);
	cr_assert_eq(b.calls, 5);
	cr_assert_eq(c.calls, 6);

	/* Removing itself, and the next one, from inside an iteration. */
	a.remove_other = &c;
	tw_loop_add_poller(l, &b.p);
	b.remove_self = true;
	(void)tw_loop_poll_once(l);
	cr_assert_eq(a.calls, 7);
	cr_assert_eq(c.calls, 6, "c was removed before its turn");
	cr_assert_eq(b.calls, 6);
	a.remove_other = NULL;
	(void)tw_loop_poll_once(l);
	cr_assert_eq(a.calls, 8);
	cr_assert_eq(b.calls, 6);
	cr_assert_eq(c.calls, 6);

	struct tw_loop_stats s;
	tw_loop_get_stats(l, &s);
	cr_assert_eq(s.iterations, 8);
	cr_assert_eq(s.busy_iterations, 6); /* b ran, returning 2, in 6 */
	tw_loop_remove_poller(l, &a.p);
	tw_loop_destroy(l);
}

/* ----------------------------------------------------------------- timers */

struct ttimer {
	struct tw_timer t;
	tw_loop *l;
	int fired;
	uint64_t at;
};

static void ttimer_fn(struct tw_timer *t, void *arg)
{
	struct ttimer *x = arg;
	(void)t;
	x->fired++;
	x->at = tw_loop_now(x->l);
}

static void ttimer_init(struct ttimer *x, tw_loop *l)
{
	*x = (struct ttimer){.l = l};
	tw_timer_init(&x->t, ttimer_fn, x);
}

static tw_loop *fake_loop(uint64_t start)
{
	atomic_store(&fake_ns, start);
	struct tw_loop_opts o;
	tw_loop_opts_init(&o, sizeof(o));
	o.clock = fake_clock;
	o.tick_ns = MS;
	return make_loop(&o);
}

static int poll_at(tw_loop *l, uint64_t t)
{
	atomic_store(&fake_ns, t);
	return tw_loop_poll_once(l);
}

Test(loop_timer, fake_clock_deterministic)
{
	const uint64_t t0 = 1000 * MS;
	tw_loop *l = fake_loop(t0);
	cr_assert_eq(tw_loop_now(l), t0, "read at create");
	struct ttimer a, b;
	ttimer_init(&a, l);
	ttimer_init(&b, l);
	tw_loop_timer_after(l, &a.t, 5 * MS);
	tw_loop_timer_after(l, &b.t, 2 * MS);
	cr_assert_eq(tw_loop_timers(l)->armed, 2);

	cr_assert_eq(poll_at(l, t0 + MS), 0);
	cr_assert_eq(a.fired + b.fired, 0);
	cr_assert_eq(tw_loop_now(l), t0 + MS);
	cr_assert_eq(tw_loop_clock(l), t0 + MS);
	cr_assert_eq(poll_at(l, t0 + 2 * MS), 1);
	cr_assert_eq(b.fired, 1);
	cr_assert_eq(b.at, t0 + 2 * MS);
	cr_assert_eq(poll_at(l, t0 + 5 * MS - 1), 0, "never early");
	cr_assert_eq(a.fired, 0);
	cr_assert_eq(poll_at(l, t0 + 5 * MS), 1);
	cr_assert_eq(a.fired, 1);
	cr_assert_eq(a.at, t0 + 5 * MS);
	cr_assert_eq(poll_at(l, t0 + 100 * MS), 0, "each fires once");

	struct tw_loop_stats s;
	tw_loop_get_stats(l, &s);
	cr_assert_eq(s.timers_fired, 2);
	tw_loop_destroy(l);
}

struct arm_msg {
	struct tw_loop_msg m;
	struct ttimer *t;
	uint64_t delay;
};

static void arm_msg_run(struct tw_loop_msg *m)
{
	struct arm_msg *a = container_of(m, struct arm_msg, m);
	tw_loop_timer_after(a->t->l, &a->t->t, a->delay);
}

/* A message arming a timer for "now" sees it fire in the same iteration
 * (messages run before the wheel advances). */
Test(loop_timer, armed_by_message)
{
	const uint64_t t0 = 50 * MS;
	tw_loop *l = fake_loop(t0);
	struct ttimer x;
	ttimer_init(&x, l);
	struct arm_msg am = {.m = {.fn = arm_msg_run}, .t = &x, .delay = 0};
	cr_assert_eq(tw_loop_post(l, &am.m), TW_OK);
	cr_assert_eq(poll_at(l, t0), 2, "the message and the timer");
	cr_assert_eq(x.fired, 1);
	tw_loop_destroy(l);
}

/* --------------------------------------------------- thread and idle policy */

struct flag_msg {
	struct tw_loop_msg m;
	_Atomic int done;
	_Atomic uint64_t ran_at;
	struct timespec cpu; /* loop thread's CPU time when it ran */
	bool on_thread;
	tw_loop *l;
};

static void flag_run(struct tw_loop_msg *m)
{
	struct flag_msg *f = container_of(m, struct flag_msg, m);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &f->cpu);
	f->on_thread = tw_loop_on_thread(f->l);
	atomic_store(&f->ran_at, mono_ns());
	atomic_store(&f->done, 1);
}

static void flag_init(struct flag_msg *f, tw_loop *l)
{
	memset(f, 0, sizeof(*f));
	f->m.fn = flag_run;
	f->l = l;
}

static bool wait_flag(_Atomic int *flag, uint64_t timeout)
{
	uint64_t end = mono_ns() + timeout;
	while (!atomic_load(flag)) {
		if (mono_ns() > end)
			return false;
		usleep(100);
	}
	return true;
}

static void wait_sleeps(tw_loop *l, uint64_t want)
{
	struct tw_loop_stats s;
	uint64_t end = mono_ns() + 2 * SEC;
	do {
		tw_loop_get_stats(l, &s);
		if (s.sleeps >= want)
			return;
		usleep(1000);
	} while (mono_ns() < end);
	cr_assert_fail("loop never slept (sleeps %llu)",
		       (unsigned long long)s.sleeps);
}

/* spin_ns = 0: the idle loop sleeps at once; a post must wake it. */
Test(loop_thread, post_wakes_sleeping_loop)
{
	struct tw_loop_opts o;
	tw_loop_opts_init(&o, sizeof(o));
	o.spin_ns = 0;
	tw_loop *l = make_loop(&o);
	cr_assert_eq(tw_loop_start(l), TW_OK);
	wait_sleeps(l, 1);
	usleep(20000); /* well into its sleep */

	for (int round = 0; round < 3; round++) {
		struct flag_msg f;
		flag_init(&f, l);
		uint64_t t = mono_ns();
		cr_assert_eq(tw_loop_post(l, &f.m), TW_OK);
		cr_assert(wait_flag(&f.done, 2 * SEC),
			  "round %d: the sleeping loop was not woken", round);
		cr_assert(atomic_load(&f.ran_at) - t < 2 * SEC);
		cr_assert(f.on_thread);
		usleep(5000);
	}
	struct tw_loop_stats s;
	tw_loop_get_stats(l, &s);
	cr_assert_geq(s.wakeups_posted, 1);
	cr_assert_geq(s.sleeps, 2);
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	cr_assert_eq(tw_loop_stop(l), TW_OK, "stopping twice is harmless");
	cr_assert_eq(tw_loop_start(l), TW_EBUSY, "the ring is bound");
	tw_loop_destroy(l);
}

/* An idle loop with the default policy (spin 200 us, then sleep) costs
 * next to no CPU: its own thread measures its CPU time before and after
 * 300 ms of idleness. */
Test(loop_thread, idle_loop_sleeps)
{
	struct tw_loop_opts o;
	tw_loop_opts_init(&o, sizeof(o));
	o.cpu = 0; /* pinning, when permitted; counted when not */
	tw_loop *l = make_loop(&o);
	cr_assert_eq(tw_loop_start(l), TW_OK);
	struct flag_msg a, b;
	flag_init(&a, l);
	flag_init(&b, l);
	cr_assert_eq(tw_loop_post(l, &a.m), TW_OK);
	cr_assert(wait_flag(&a.done, 2 * SEC));
	usleep(300000);
	cr_assert_eq(tw_loop_post(l, &b.m), TW_OK);
	cr_assert(wait_flag(&b.done, 2 * SEC));
	int64_t cpu = (int64_t)(b.cpu.tv_sec - a.cpu.tv_sec) * (int64_t)SEC +
		      (b.cpu.tv_nsec - a.cpu.tv_nsec);
	cr_assert_lt(cpu, (int64_t)(100 * MS),
		     "idle loop burnt %lld ns of CPU in 300 ms",
		     (long long)cpu);
	struct tw_loop_stats s;
	tw_loop_get_stats(l, &s);
	cr_assert_gt(s.sleeps, 0);
	cr_assert_leq(s.pin_failures, 1);
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	tw_loop_destroy(l);
}

/* A timer that re-arms itself every 10 ms. */
struct tick {
	struct tw_timer t;
	tw_loop *l;
	_Atomic int fired;
};

static void tick_fn(struct tw_timer *t, void *arg)
{
	struct tick *k = arg;
	atomic_fetch_add(&k->fired, 1);
	tw_loop_timer_after(k->l, t, 10 * MS);
}

struct tick_msg {
	struct tw_loop_msg m;
	struct tick *k;
};

static void tick_start(struct tw_loop_msg *m)
{
	struct tick_msg *a = container_of(m, struct tick_msg, m);
	tw_loop_timer_after(a->k->l, &a->k->t, 10 * MS);
}

/* Timers that fire and find nothing else to do (a periodic wake: the DPDK
 * port's idle poll, the agent's watch) do not restart the idle spin: with
 * a 50 ms spin and a 10 ms tick, the loop sleeps between ticks rather
 * than spinning from one to the next for good. Measured as the loop
 * thread's own CPU time over 500 ms, as idle_loop_sleeps. */
Test(loop_thread, timer_ticks_do_not_keep_it_spinning)
{
	struct tw_loop_opts o;
	tw_loop_opts_init(&o, sizeof(o));
	o.spin_ns = 50 * MS;
	tw_loop *l = make_loop(&o);
	cr_assert_eq(tw_loop_start(l), TW_OK);
	struct tick k = {.l = l};
	tw_timer_init(&k.t, tick_fn, &k);
	struct tick_msg tm = {.m = {.fn = tick_start}, .k = &k};
	struct flag_msg a, b;
	flag_init(&a, l);
	flag_init(&b, l);
	cr_assert_eq(tw_loop_post(l, &tm.m), TW_OK);
	cr_assert_eq(tw_loop_post(l, &a.m), TW_OK);
	cr_assert(wait_flag(&a.done, 2 * SEC));
	usleep(500000);
	cr_assert_eq(tw_loop_post(l, &b.m), TW_OK);
	cr_assert(wait_flag(&b.done, 2 * SEC));
	int64_t cpu = (int64_t)(b.cpu.tv_sec - a.cpu.tv_sec) * (int64_t)SEC +
		      (b.cpu.tv_nsec - a.cpu.tv_nsec);
	struct tw_loop_stats s;
	tw_loop_get_stats(l, &s);
	cr_log_info("ticks %d, sleeps %llu, loop CPU %lld ns in 500 ms",
		    atomic_load(&k.fired), (unsigned long long)s.sleeps,
		    (long long)cpu);
	cr_assert_geq(atomic_load(&k.fired), 20);
	/* Spinning from tick to tick would be ~500 ms of CPU and no sleep;
	 * one 50 ms spin after the message, then a wake per tick. */
	cr_assert_lt(cpu, (int64_t)(200 * MS),
		     "the ticks kept the loop spinning: %lld ns of CPU",
		     (long long)cpu);
	cr_assert_geq(s.sleeps, 20);
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	tw_timer_cancel(tw_loop_timers(l), &k.t);
	tw_loop_destroy(l);
}

/* Ping-pong against a loop that sleeps whenever idle (spin_ns = 0): each
 * producer posts one message and waits for it to run before the next, so
 * nearly every post races with the loop going to sleep. A lost wakeup
 * (a broken Dekker edge between post and sleep) shows as a stuck round. */
struct pingpong {
	pthread_t th;
	tw_loop *l;
	struct flag_msg f;
	int rounds, stuck_at;
};

static void *pingpong_run(void *arg)
{
	struct pingpong *p = arg;
	p->stuck_at = -1;
	for (int i = 0; i < p->rounds; i++) {
		atomic_store(&p->f.done, 0);
		if (tw_loop_post(p->l, &p->f.m) != TW_OK ||
		    !wait_flag(&p->f.done, 2 * SEC)) {
			p->stuck_at = i;
			break;
		}
	}
	return NULL;
}

Test(loop_thread, no_lost_wakeups)
{
	struct tw_loop_opts o;
	tw_loop_opts_init(&o, sizeof(o));
	o.spin_ns = 0;
	tw_loop *l = make_loop(&o);
	cr_assert_eq(tw_loop_start(l), TW_OK);
	struct pingpong p[2];
	for (int i = 0; i < 2; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		p[i].l = l;
		p[i].rounds = 1000;
		flag_init(&p[i].f, l);
		cr_assert_eq(
			pthread_create(&p[i].th, NULL, pingpong_run, &p[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(p[i].th, NULL);
		cr_assert_eq(p[i].stuck_at, -1, "producer %d stuck at round %d",
			     i, p[i].stuck_at);
	}
	struct tw_loop_stats s;
	tw_loop_get_stats(l, &s);
	cr_assert_gt(s.sleeps, 0);
	cr_assert_eq(s.msgs, 2000);
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	tw_loop_destroy(l);
}

/* No io_uring (the kernel refuses the ring: more entries than it allows):
 * the loop still runs, sleeping in ppoll on its eventfd. */
struct uring_probe_msg {
	struct flag_msg f;
	bool no_ring, no_sqe;
};

static void uring_probe_run(struct tw_loop_msg *m)
{
	struct uring_probe_msg *u = container_of(m, struct uring_probe_msg,
						 f.m);
	u->no_ring = tw_loop_uring(u->f.l) == NULL;
	u->no_sqe = tw_loop_sqe(u->f.l) == NULL;
	flag_run(m);
}

Test(loop_thread, sleeps_without_io_uring)
{
	struct tw_loop_opts o;
	tw_loop_opts_init(&o, sizeof(o));
	o.spin_ns = 0;
	o.uring_entries = 1u << 20; /* above IORING_MAX_ENTRIES */
	tw_loop *l = make_loop(&o);
	cr_assert_eq(tw_loop_start(l), TW_OK);
	wait_sleeps(l, 1);
	usleep(10000);
	struct uring_probe_msg u;
	flag_init(&u.f, l);
	u.f.m.fn = uring_probe_run;
	cr_assert_eq(tw_loop_post(l, &u.f.m), TW_OK);
	cr_assert(wait_flag(&u.f.done, 2 * SEC));
	cr_assert(u.no_ring);
	cr_assert(u.no_sqe);
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	tw_loop_destroy(l);
}

/* A timer wakes a sleeping thread loop too (sleep bounded by the wheel). */
struct timer_msg {
	struct tw_loop_msg m;
	struct tw_timer t;
	tw_loop *l;
	uint64_t armed_at;
	_Atomic uint64_t fired_at;
	_Atomic int done;
};

static void timer_msg_fire(struct tw_timer *t, void *arg)
{
	struct timer_msg *x = arg;
	(void)t;
	atomic_store(&x->fired_at, tw_loop_now(x->l));
	atomic_store(&x->done, 1);
}

static void timer_msg_run(struct tw_loop_msg *m)
{
	struct timer_msg *x = container_of(m, struct timer_msg, m);
	x->armed_at = tw_loop_now(x->l);
	tw_loop_timer_after(x->l, &x->t, 30 * MS);
}

Test(loop_thread, timer_wakes_sleeping_loop)
{
	struct tw_loop_opts o;
	tw_loop_opts_init(&o, sizeof(o));
	o.spin_ns = 0;
	tw_loop *l = make_loop(&o);
	cr_assert_eq(tw_loop_start(l), TW_OK);
	struct timer_msg x = {.m = {.fn = timer_msg_run}, .l = l};
	tw_timer_init(&x.t, timer_msg_fire, &x);
	cr_assert_eq(tw_loop_post(l, &x.m), TW_OK);
	cr_assert(wait_flag(&x.done, 2 * SEC));
	cr_assert_geq(atomic_load(&x.fired_at) - x.armed_at, 30 * MS);
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	tw_loop_destroy(l);
}

/* --------------------------------------------------------------- io_uring */

struct treq {
	struct tw_uring_req r;
	_Atomic int done;
	int res;
	int count;
	bool on_thread;
	tw_loop *l;
};

static void treq_fn(struct tw_uring_req *r, struct io_uring_cqe *cqe)
{
	struct treq *t = container_of(r, struct treq, r);
	t->res = cqe->res;
	t->count++;
	t->on_thread = tw_loop_on_thread(t->l);
	atomic_store(&t->done, 1);
}

static void prep_nop(tw_loop *l, void *req)
{
	struct io_uring_sqe *sqe = tw_loop_sqe(l);
	cr_assert_not_null(sqe);
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)req);
}

Test(loop_uring, nop_embedded)
{
	tw_loop *l = make_loop(NULL);
	(void)tw_loop_poll_once(l);
	if (tw_loop_uring(l) == NULL) {
		tw_loop_destroy(l);
		cr_skip_test("io_uring unavailable");
	}
	struct treq a = {.r = {.fn = treq_fn}, .res = -1, .l = l};
	prep_nop(l, &a);
	prep_nop(l, NULL); /* user_data 0: ignored */
	cr_assert(poll_until(l, &a.done, 2 * SEC));
	cr_assert_eq(a.res, 0);
	cr_assert_eq(a.count, 1);
	cr_assert(a.on_thread);
	for (int i = 0; i < 10; i++)
		(void)tw_loop_poll_once(l);
	struct tw_loop_stats s;
	tw_loop_get_stats(l, &s);
	cr_assert_eq(s.cqes, 1, "the user_data 0 CQE is not counted");
	tw_loop_destroy(l);
}

/* More SQEs in one go than the SQ holds: tw_loop_sqe submits to make room. */
Test(loop_uring, sq_full_submits)
{
	struct tw_loop_opts o;
	tw_loop_opts_init(&o, sizeof(o));
	o.uring_entries = 4;
	tw_loop *l = make_loop(&o);
	if (tw_loop_uring(l) == NULL) {
		tw_loop_destroy(l);
		cr_skip_test("io_uring unavailable");
	}
	struct treq r[10];
	for (int i = 0; i < 10; i++) {
		r[i] = (struct treq){.r = {.fn = treq_fn}, .res = -1, .l = l};
		prep_nop(l, &r[i]);
	}
	for (int i = 0; i < 10; i++)
		cr_assert(poll_until(l, &r[i].done, 2 * SEC), "nop %d", i);
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(r[i].res, 0);
		cr_assert_eq(r[i].count, 1);
	}
	tw_loop_destroy(l);
}

struct nop_msg {
	struct tw_loop_msg m;
	struct treq *req;
};

static void nop_msg_run(struct tw_loop_msg *m)
{
	struct nop_msg *n = container_of(m, struct nop_msg, m);
	struct io_uring_sqe *sqe = tw_loop_sqe(n->req->l);
	if (sqe == NULL) {
		n->req->res = -12345;
		atomic_store(&n->req->done, 1);
		return;
	}
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)&n->req->r);
}

/* The thread mode path: a message on a sleeping loop prepares a NOP, the
 * loop submits it and routes its CQE. */
Test(loop_uring, nop_from_message_on_thread)
{
	struct tw_loop_opts o;
	tw_loop_opts_init(&o, sizeof(o));
	o.spin_ns = 0;
	tw_loop *l = make_loop(&o);
	cr_assert_eq(tw_loop_start(l), TW_OK);
	wait_sleeps(l, 1);
	struct treq req = {.r = {.fn = treq_fn}, .res = -1, .l = l};
	struct nop_msg nm = {.m = {.fn = nop_msg_run}, .req = &req};
	cr_assert_eq(tw_loop_post(l, &nm.m), TW_OK);
	cr_assert(wait_flag(&req.done, 2 * SEC));
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	cr_assert_eq(req.res, 0);
	cr_assert_eq(req.count, 1);
	cr_assert(req.on_thread);
	tw_loop_destroy(l);
}

/* --------------------------------------------------------------- lending */

/* A message that records which thread ran it. */
struct who_msg {
	struct tw_loop_msg m;
	_Atomic int done;
	pthread_t ran_on;
	bool on_loop_thread;
	tw_loop *l;
};

static void who_run(struct tw_loop_msg *m)
{
	struct who_msg *w = container_of(m, struct who_msg, m);
	w->ran_on = pthread_self();
	w->on_loop_thread = tw_loop_on_thread(w->l);
	atomic_store(&w->done, 1);
}

static bool flag_done(void *arg)
{
	return atomic_load((_Atomic int *)arg) != 0;
}

static uint64_t lends(tw_loop *l)
{
	struct tw_loop_stats s;
	tw_loop_get_stats(l, &s);
	return s.lends;
}

/* A started loop, past its first iteration (which makes its ring: until
 * then nobody may borrow it), with this idle spin. */
static tw_loop *lent_loop(uint64_t spin_ns, bool yield)
{
	struct tw_loop_opts o;
	tw_loop_opts_init(&o, sizeof(o));
	o.spin_ns = spin_ns;
	o.yield = yield;
	tw_loop *l = make_loop(&o);
	cr_assert_eq(tw_loop_start(l), TW_OK);
	struct flag_msg first;
	flag_init(&first, l);
	cr_assert_eq(tw_loop_post(l, &first.m), TW_OK);
	cr_assert(wait_flag(&first.done, 2 * SEC));
	return l;
}

/* A thread waiting for what a message does polls the loop itself: the
 * message runs on the waiter's thread, and the loop's thread takes over
 * again afterwards (a later post runs there). Over and over, with the
 * loop's thread spinning (the borrower must get the loop from it) and
 * with it asleep (the borrower gets it without waking it). */
Test(loop_lend, waiter_runs_the_loop)
{
	for (int sleepy = 0; sleepy < 2; sleepy++) {
		tw_loop *l = lent_loop(sleepy ? 0 : UINT64_MAX, false);
		int mine = 0;
		for (int i = 0; i < 200; i++) {
			struct who_msg w = {.m = {.fn = who_run}, .l = l};
			cr_assert_eq(tw_loop_post_lazy(l, &w.m), TW_OK);
			bool done = tw_loop_borrow_until(l, flag_done, &w.done,
							 mono_ns() + 2 * SEC);
			if (!done) /* gave up: the loop's thread runs it */
				cr_assert(wait_flag(&w.done, 2 * SEC));
			if (pthread_equal(w.ran_on, pthread_self())) {
				mine++;
				cr_assert(!w.on_loop_thread);
			}
		}
		cr_assert_geq(mine, 150, "sleepy %d: only %d of 200 ran here",
			      sleepy, mine);
		cr_assert_geq(lends(l), (uint64_t)mine);
		/* Back to its own thread: a plain post is run there. */
		struct flag_msg f;
		flag_init(&f, l);
		cr_assert_eq(tw_loop_post(l, &f.m), TW_OK);
		cr_assert(wait_flag(&f.done, 2 * SEC));
		cr_assert(f.on_thread);
		cr_assert_eq(tw_loop_stop(l), TW_OK);
		tw_loop_destroy(l);
	}
}

/* Only a loop run by its own thread is lent. */
Test(loop_lend, not_before_start_nor_after_stop)
{
	tw_loop *l = make_loop(NULL);
	_Atomic int never = 0;
	cr_assert(!tw_loop_borrow_until(l, flag_done, &never,
					mono_ns() + 10 * MS));
	cr_assert_eq(tw_loop_start(l), TW_OK);
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	cr_assert(!tw_loop_borrow_until(l, flag_done, &never,
					mono_ns() + 10 * MS));
	cr_assert_eq(lends(l), 0);
	_Atomic int yes = 1;
	cr_assert(tw_loop_borrow_until(l, flag_done, &yes, 0),
		  "done before anything: true at once");
	tw_loop_destroy(l);
}

/* What needs the ring goes back to the loop's thread: a message that
 * prepares an SQE under a borrower ends the borrow, and the loop's thread
 * submits it and routes its completion (on itself). */
Test(loop_lend, ring_work_goes_back)
{
	tw_loop *l = lent_loop(UINT64_MAX, false);
	for (int i = 0; i < 50; i++) {
		struct treq req = {.r = {.fn = treq_fn}, .res = -1, .l = l};
		struct nop_msg nm = {.m = {.fn = nop_msg_run}, .req = &req};
		cr_assert_eq(tw_loop_post_lazy(l, &nm.m), TW_OK);
		(void)tw_loop_borrow_until(l, flag_done, &req.done,
					   mono_ns() + 2 * SEC);
		cr_assert(wait_flag(&req.done, 2 * SEC), "round %d", i);
		cr_assert_eq(req.res, 0);
		cr_assert_eq(req.count, 1);
		cr_assert(req.on_thread, "completions are the loop thread's");
	}
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	tw_loop_destroy(l);
}

/* A borrower gives the loop back after spin_ns without work, and a post
 * after it left (another thread's, not lazy) is run at once by the
 * lingering loop's thread, not after the linger. */
Test(loop_lend, idle_borrower_leaves_and_posts_kick)
{
	tw_loop *l = lent_loop(2 * MS, false);
	for (int i = 0; i < 20; i++) {
		_Atomic int never = 0;
		uint64_t t = mono_ns();
		cr_assert(!tw_loop_borrow_until(l, flag_done, &never,
						t + 10 * SEC));
		cr_assert_lt(mono_ns() - t, 5 * SEC, "gave up after idling");
		struct flag_msg f;
		flag_init(&f, l);
		cr_assert_eq(tw_loop_post(l, &f.m), TW_OK);
		cr_assert(wait_flag(&f.done, 2 * SEC), "round %d", i);
		cr_assert(f.on_thread);
	}
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	tw_loop_destroy(l);
}

/* Borrowers on four threads at once, each waiting for its own messages,
 * posted by a fifth thread too: every message runs exactly once, one
 * holder at a time (a counter only the holder touches stays exact). */
struct lend_ctx {
	tw_loop *l;
	_Atomic int stop;
	uint64_t unlocked; /* touched by messages only: the holder's */
	_Atomic uint32_t ran;
};

struct count_msg {
	struct tw_loop_msg m;
	struct lend_ctx *c;
	_Atomic int done;
};

static void count_run(struct tw_loop_msg *m)
{
	struct count_msg *cm = container_of(m, struct count_msg, m);
	cm->c->unlocked++;
	atomic_fetch_add(&cm->c->ran, 1);
	atomic_store(&cm->done, 1);
}

static void *lend_worker(void *arg)
{
	struct lend_ctx *c = arg;
	for (int i = 0; i < 2000; i++) {
		struct count_msg cm = {.m = {.fn = count_run}, .c = c};
		while (tw_loop_post_lazy(c->l, &cm.m) == TW_ENOSPC)
			sched_yield();
		if (!tw_loop_borrow_until(c->l, flag_done, &cm.done,
					  mono_ns() + 5 * SEC))
			while (!atomic_load(&cm.done))
				sched_yield();
	}
	return NULL;
}

static void *post_worker(void *arg)
{
	struct lend_ctx *c = arg;
	for (int i = 0; i < 2000; i++) {
		struct count_msg cm = {.m = {.fn = count_run}, .c = c};
		while (tw_loop_post(c->l, &cm.m) == TW_ENOSPC)
			sched_yield();
		while (!atomic_load(&cm.done))
			sched_yield();
	}
	return NULL;
}

Test(loop_lend, many_borrowers_one_holder)
{
	tw_loop *l = lent_loop(200 * US, true);
	struct lend_ctx c = {.l = l};
	pthread_t th[5];
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, lend_worker, &c), 0);
	cr_assert_eq(pthread_create(&th[4], NULL, post_worker, &c), 0);
	for (int i = 0; i < 5; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(atomic_load(&c.ran), 10000);
	/* The last message's writes are visible once we see it done; the
	 * loop's thread touches unlocked no more. */
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	cr_assert_eq(c.unlocked, 10000);
	tw_loop_destroy(l);
}

/* Become l's last borrower, lingering: wait for a lazy post of ours,
 * polling l, until it ran here (a sleeping loop's thread is woken by the
 * post, and may run it before we borrow). */
static void borrow_one(tw_loop *l)
{
	for (int i = 0; i < 1000; i++) {
		struct who_msg w = {.m = {.fn = who_run}, .l = l};
		cr_assert_eq(tw_loop_post_lazy(l, &w.m), TW_OK);
		if (!tw_loop_borrow_until(l, flag_done, &w.done,
					  mono_ns() + 2 * SEC))
			cr_assert(wait_flag(&w.done, 2 * SEC));
		if (pthread_equal(w.ran_on, pthread_self()))
			return;
	}
	cr_assert_fail("never ran the loop in 1000 tries");
}

/* A caller pipelining lazy posts while the loop lingers for it: once a
 * batch (16) waits, tw_loop_batch_waiting says so (to it alone) and
 * tw_loop_borrow_once runs them on the caller's thread; the loop's thread
 * is not woken for them. Timing decides each round (a linger is ~50 us):
 * most rounds, not all, must go so. */
Test(loop_lend, lazy_batch_is_sent_by_its_poster)
{
	tw_loop *l = lent_loop(0, false);
	enum { ROUNDS = 50, BATCH = 16 };
	int batched = 0, here = 0;
	for (int r = 0; r < ROUNDS; r++) {
		borrow_one(l);
		cr_assert(tw_loop_lent_to_me(l));
		struct who_msg w[BATCH];
		for (int i = 0; i < BATCH; i++) {
			w[i] = (struct who_msg){.m = {.fn = who_run}, .l = l};
			cr_assert_eq(tw_loop_post_lazy(l, &w[i].m), TW_OK);
		}
		if (tw_loop_batch_waiting(l)) {
			batched++;
			tw_loop_borrow_once(l);
		}
		for (int i = 0; i < BATCH; i++) {
			cr_assert(wait_flag(&w[i].done, 2 * SEC), "round %d",
				  r);
			here += pthread_equal(w[i].ran_on, pthread_self());
		}
		cr_assert(!tw_loop_batch_waiting(l), "nothing waits now");
	}
	cr_assert_geq(batched, ROUNDS / 2, "batch seen in %d of %d", batched,
		      ROUNDS);
	cr_assert_geq(here, batched * BATCH / 2, "%d of %d ran here", here,
		      batched * BATCH);
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	tw_loop_destroy(l);
}

static void *batch_waiting_elsewhere(void *arg)
{
	return (void *)(uintptr_t)tw_loop_batch_waiting(arg);
}

/* Lazy posts nobody comes back for still run (on the loop's thread, at
 * the end of the linger; many at once: at once), and so do plain posts
 * and another thread's, which end the linger. No other thread is told a
 * batch waits for it. */
Test(loop_lend, lazy_posts_nobody_waits_for_still_run)
{
	tw_loop *l = lent_loop(0, false);
	for (int r = 0; r < 20; r++) {
		borrow_one(l);
		enum { N = 100 };
		struct who_msg w[N];
		int n = 1 + (r % 4 == 0 ? N - 1 : r % 20);
		for (int i = 0; i < n; i++) {
			w[i] = (struct who_msg){.m = {.fn = who_run}, .l = l};
			cr_assert_eq(tw_loop_post_lazy(l, &w[i].m), TW_OK);
		}
		pthread_t th;
		void *other;
		cr_assert_eq(pthread_create(&th, NULL, batch_waiting_elsewhere,
					    l),
			     0);
		pthread_join(th, &other);
		cr_assert(!other, "not lent to that thread");
		struct flag_msg f;
		flag_init(&f, l);
		if (r % 2)
			cr_assert_eq(tw_loop_post(l, &f.m), TW_OK);
		for (int i = 0; i < n; i++) {
			cr_assert(wait_flag(&w[i].done, 2 * SEC), "round %d",
				  r);
			cr_assert(w[i].on_loop_thread, "round %d", r);
		}
		if (r % 2) {
			cr_assert(wait_flag(&f.done, 2 * SEC));
			cr_assert(f.on_thread);
		}
	}
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	tw_loop_destroy(l);
}

/* A callback that stops its loop: refused on the loop's thread, and on a
 * borrower too (it would join a thread parked for it: a reviewer's
 * reproducer deadlocked here). */
struct stop_msg {
	struct tw_loop_msg m;
	tw_loop *l;
	pthread_t ran_on;
	_Atomic int done;
	tw_status st;
};

static void stop_run(struct tw_loop_msg *m)
{
	struct stop_msg *s = container_of(m, struct stop_msg, m);
	s->ran_on = pthread_self();
	s->st = tw_loop_stop(s->l);
	atomic_store(&s->done, 1);
}

Test(loop_lend, stop_from_a_borrower_is_refused)
{
	tw_loop *l = lent_loop(UINT64_MAX, false);
	int on_borrower = 0, on_loop = 0;
	for (int i = 0; i < 200 && on_borrower < 3; i++) {
		struct stop_msg sm = {.m = {.fn = stop_run}, .l = l};
		cr_assert_eq(tw_loop_post_lazy(l, &sm.m), TW_OK);
		(void)tw_loop_borrow_until(l, flag_done, &sm.done,
					   mono_ns() + 2 * SEC);
		cr_assert(wait_flag(&sm.done, 2 * SEC), "round %d: stuck", i);
		cr_assert_eq(sm.st, TW_EINVAL, "round %d: %s", i,
			     tw_status_name(sm.st));
		if (pthread_equal(sm.ran_on, pthread_self()))
			on_borrower++;
		else
			on_loop++;
	}
	cr_assert_geq(on_borrower, 1,
		      "never ran on the borrower (%d on the "
		      "loop)",
		      on_loop);
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	tw_loop_destroy(l);
}

/* tw_loop_reclaim sends a borrower whose wait is far from over back to
 * waiting without the loop (spin_ns: never idle out), and refuses new
 * ones; the loop's thread runs the loop again. */
static void *reclaim_later(void *arg)
{
	usleep(50000);
	tw_loop_reclaim(arg);
	return NULL;
}

Test(loop_lend, reclaim_sends_borrowers_away)
{
	tw_loop *l = lent_loop(UINT64_MAX, false);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, reclaim_later, l), 0);
	_Atomic int never = 0;
	uint64_t t = mono_ns();
	cr_assert(!tw_loop_borrow_until(l, flag_done, &never, t + 60 * SEC));
	cr_assert_lt(mono_ns() - t, 10 * SEC, "left when reclaimed");
	pthread_join(th, NULL);
	cr_assert(!tw_loop_borrow_until(l, flag_done, &never,
					mono_ns() + 60 * SEC),
		  "refused at once after");
	struct flag_msg f;
	flag_init(&f, l);
	cr_assert_eq(tw_loop_post(l, &f.m), TW_OK);
	cr_assert(wait_flag(&f.done, 2 * SEC));
	cr_assert(f.on_thread);
	cr_assert_eq(tw_loop_stop(l), TW_OK);
	tw_loop_destroy(l);
}

/* --------------------------------------------------------- embedded mode */

struct delayed_post {
	tw_loop *l;
	struct tw_loop_msg *m;
	useconds_t after;
};

static void *post_later(void *arg)
{
	struct delayed_post *d = arg;
	usleep(d->after);
	while (tw_loop_post(d->l, d->m) == TW_ENOSPC)
		sched_yield();
	return NULL;
}

Test(loop_embedded, poll_wait)
{
	struct tw_loop_opts o;
	tw_loop_opts_init(&o, sizeof(o));
	o.spin_ns = 0;
	tw_loop *l = make_loop(&o);

	/* Nothing to do: returns 0 once the timeout has passed. */
	uint64_t t = mono_ns();
	cr_assert_eq(tw_loop_poll_wait(l, 20 * MS), 0);
	uint64_t el = mono_ns() - t;
	cr_assert_geq(el, 20 * MS);
	cr_assert_lt(el, 2 * SEC);
	cr_assert_eq(tw_loop_poll_wait(l, 0), 0, "timeout 0: one poll");

	/* A post from another thread ends the wait early. */
	struct flag_msg f;
	flag_init(&f, l);
	struct delayed_post d = {.l = l, .m = &f.m, .after = 50000};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, post_later, &d), 0);
	t = mono_ns();
	cr_assert_gt(tw_loop_poll_wait(l, 5 * SEC), 0);
	el = mono_ns() - t;
	pthread_join(th, NULL);
	cr_assert(atomic_load(&f.done));
	cr_assert(f.on_thread);
	cr_assert_lt(el, 2 * SEC);

	/* A timer ends it too, not before its deadline. */
	struct ttimer x;
	ttimer_init(&x, l);
	uint64_t armed = tw_loop_now(l);
	tw_loop_timer_after(l, &x.t, 30 * MS);
	cr_assert_eq(tw_loop_poll_wait(l, 5 * SEC), 1);
	cr_assert_eq(x.fired, 1);
	cr_assert_geq(x.at - armed, 30 * MS);
	cr_assert_lt(x.at - armed, 2 * SEC);

	struct tw_loop_stats s;
	tw_loop_get_stats(l, &s);
	cr_assert_geq(s.sleeps, 2);
	tw_loop_destroy(l);
}

/* Not reentrant: a nested poll from a message returns 0 and runs nothing. */
static int nested_ret = -1;
static tw_loop *nested_loop;

static void nested_run(struct tw_loop_msg *m)
{
	(void)m;
	nested_ret = tw_loop_poll_once(nested_loop);
}

Test(loop_embedded, nested_poll_refused)
{
	tw_loop *l = make_loop(NULL);
	nested_loop = l;
	struct tw_loop_msg a = {.fn = nested_run}, b = {.fn = plain_run};
	atomic_store(&plain_runs, 0);
	cr_assert_eq(tw_loop_post(l, &a), TW_OK);
	cr_assert_eq(tw_loop_post(l, &b), TW_OK);
	cr_assert_eq(tw_loop_poll_once(l), 2);
	cr_assert_eq(nested_ret, 0);
	cr_assert_eq(atomic_load(&plain_runs), 1);
	tw_loop_destroy(l);
}

/* ------------------------------------------------------- fault injection */

struct fake_tp {
	tw_transport t;
	int nsent;
	uint32_t sent[16];
	tw_status ret; /* what send returns */
};

static tw_status fake_send(tw_transport *t, tw_conn *c, struct tw_send_req *r)
{
	struct fake_tp *f = (struct fake_tp *)t;
	(void)c;
	if (f->ret != TW_OK)
		return f->ret;
	cr_assert_lt(f->nsent, 16);
	f->sent[f->nsent++] = r->type;
	return TW_OK;
}

static const struct tw_transport_ops fake_ops = {.name = "fake",
						 .send = fake_send};

struct sreq {
	struct tw_send_req r;
	int done_calls;
	tw_status st;
};

static void sreq_done(struct tw_send_req *r, tw_status st)
{
	struct sreq *s = container_of(r, struct sreq, r);
	s->done_calls++;
	s->st = st;
}

static void sreq_init(struct sreq *s, uint32_t type)
{
	memset(s, 0, sizeof(*s));
	s->r.type = type;
	s->r.done = sreq_done;
	s->st = (tw_status)-1;
}

static void fake_tp_init(struct fake_tp *f, tw_loop *l,
			 struct tw_fault_opts *fo)
{
	memset(f, 0, sizeof(*f));
	f->t.ops = &fake_ops;
	f->t.loop = l;
	f->t.fault = fo;
}

Test(fault, fail_first_n_of_a_type)
{
	tw_loop *l = make_loop(NULL);
	struct tw_fault_opts fo = {.fail_type = 3, .fail_count = 2};
	struct fake_tp f;
	fake_tp_init(&f, l, &fo);
	tw_conn c = {.t = &f.t};
	struct sreq s[5];
	for (int i = 0; i < 4; i++)
		sreq_init(&s[i], 3);
	sreq_init(&s[4], 4);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(tw_transport_send(&f.t, &c, &s[i].r), TW_OK);
	cr_assert_eq(s[0].done_calls, 1);
	cr_assert_eq(s[0].st, TW_EIO);
	cr_assert_eq(s[1].done_calls, 1);
	cr_assert_eq(s[1].st, TW_EIO);
	for (int i = 2; i < 5; i++)
		cr_assert_eq(s[i].done_calls, 0, "left to the transport");
	cr_assert_eq(f.nsent, 3);
	cr_assert_eq(f.sent[0], 3);
	cr_assert_eq(f.sent[1], 3);
	cr_assert_eq(f.sent[2], 4);
	cr_assert_eq(fo.failed_, 2);
	tw_loop_destroy(l);
}

Test(fault, drop)
{
	tw_loop *l = make_loop(NULL);
	struct tw_fault_opts fo = {.drop_type = 5};
	struct fake_tp f;
	fake_tp_init(&f, l, &fo);
	tw_conn c = {.t = &f.t};
	struct sreq a, b, z;
	sreq_init(&a, 5);
	sreq_init(&b, 6);
	sreq_init(&z, 5);
	cr_assert_eq(tw_transport_send(&f.t, &c, &a.r), TW_OK);
	cr_assert_eq(tw_transport_send(&f.t, &c, &b.r), TW_OK);
	cr_assert_eq(tw_transport_send(&f.t, &c, &z.r), TW_OK);
	cr_assert_eq(a.done_calls, 1);
	cr_assert_eq(a.st, TW_OK);
	cr_assert_eq(z.done_calls, 1, "every send of the type is dropped");
	cr_assert_eq(b.done_calls, 0);
	cr_assert_eq(f.nsent, 1);
	cr_assert_eq(f.sent[0], 6);
	tw_loop_destroy(l);
}

Test(fault, delay_on_fake_clock)
{
	const uint64_t t0 = 100 * MS;
	tw_loop *l = fake_loop(t0);
	(void)poll_at(l, t0);
	struct tw_fault_opts fo = {.delay_type = 7, .delay_ns = 10 * MS};
	struct fake_tp f;
	fake_tp_init(&f, l, &fo);
	tw_conn c = {.t = &f.t};
	struct sreq a, b, other;
	sreq_init(&a, 7);
	sreq_init(&b, 7);
	sreq_init(&other, 8);
	cr_assert_eq(tw_transport_send(&f.t, &c, &a.r), TW_OK);
	cr_assert_eq(tw_transport_send(&f.t, &c, &other.r), TW_OK);
	cr_assert_eq(f.nsent, 1, "only the other type left at once");
	cr_assert_eq(f.sent[0], 8);
	cr_assert_eq(fo.delayed_, 1);

	(void)poll_at(l, t0 + 3 * MS);
	cr_assert_eq(tw_transport_send(&f.t, &c, &b.r), TW_OK); /* due +13 */
	cr_assert_eq(poll_at(l, t0 + 10 * MS - 1), 0);
	cr_assert_eq(f.nsent, 1);
	cr_assert_eq(poll_at(l, t0 + 10 * MS), 1);
	cr_assert_eq(f.nsent, 2);
	cr_assert_eq(f.sent[1], 7);
	cr_assert_eq(a.done_calls, 0, "done is the transport's after a send");
	cr_assert_eq(fo.delayed_, 1);

	/* The transport refuses the delayed send: done reports it. */
	f.ret = TW_EUNREACHABLE;
	cr_assert_eq(poll_at(l, t0 + 13 * MS), 1);
	cr_assert_eq(b.done_calls, 1);
	cr_assert_eq(b.st, TW_EUNREACHABLE);
	cr_assert_eq(fo.delayed_, 0);
	tw_loop_destroy(l);
}

/* A connection closing while the injector holds a delayed send for it: the
 * send ends with the close status at once and never reaches the freed
 * connection; another connection's delayed send is unaffected. */
Test(fault, conn_closed_releases_held_sends)
{
	const uint64_t t0 = 100 * MS;
	tw_loop *l = fake_loop(t0);
	(void)poll_at(l, t0);
	struct tw_fault_opts fo = {.delay_type = 7, .delay_ns = 10 * MS};
	struct fake_tp f;
	fake_tp_init(&f, l, &fo);
	tw_conn c1 = {.t = &f.t, .id = 1}, c2 = {.t = &f.t, .id = 2};
	struct sreq a, b, c;
	sreq_init(&a, 7);
	sreq_init(&b, 7);
	sreq_init(&c, 7);
	cr_assert_eq(tw_transport_send(&f.t, &c1, &a.r), TW_OK);
	cr_assert_eq(tw_transport_send(&f.t, &c2, &b.r), TW_OK);
	cr_assert_eq(tw_transport_send(&f.t, &c1, &c.r), TW_OK);
	cr_assert_eq(fo.delayed_, 3);

	tw_fault_conn_closed(&f.t, &c1, TW_EUNREACHABLE);
	cr_assert_eq(a.done_calls, 1);
	cr_assert_eq(a.st, TW_EUNREACHABLE);
	cr_assert_eq(c.done_calls, 1);
	cr_assert_eq(c.st, TW_EUNREACHABLE);
	cr_assert_eq(b.done_calls, 0);
	cr_assert_eq(fo.delayed_, 1);

	cr_assert_eq(poll_at(l, t0 + 10 * MS), 1,
		     "only c2's send was still held");
	cr_assert_eq(f.nsent, 1);
	cr_assert_eq(fo.delayed_, 0);
	tw_fault_conn_closed(&f.t, &c2, TW_ESHUTDOWN); /* nothing held: no-op */
	cr_assert_eq(b.done_calls, 0, "done is the transport's after a send");
	tw_loop_destroy(l);
}

Test(fault, off_and_other_types_untouched)
{
	tw_loop *l = make_loop(NULL);
	struct fake_tp f;
	fake_tp_init(&f, l, NULL);
	tw_conn c = {.t = &f.t};
	struct sreq s;
	sreq_init(&s, 3);
	cr_assert_eq(tw_transport_send(&f.t, &c, &s.r), TW_OK);
	cr_assert_eq(f.nsent, 1);

	/* Configured, but for other types (and zero = off for each rule). */
	struct tw_fault_opts fo = {.fail_type = 1,
				   .fail_count = 5,
				   .drop_type = 2,
				   .delay_type = 4,
				   .delay_ns = MS};
	f.t.fault = &fo;
	for (int i = 0; i < 3; i++)
		cr_assert_eq(tw_transport_send(&f.t, &c, &s.r), TW_OK);
	cr_assert_eq(f.nsent, 4);
	cr_assert_eq(s.done_calls, 0);
	cr_assert_eq(fo.failed_, 0);
	cr_assert_eq(fo.delayed_, 0);

	/* A transport refusal passes straight back (r not taken). */
	f.ret = TW_ENOSPC;
	cr_assert_eq(tw_transport_send(&f.t, &c, &s.r), TW_ENOSPC);
	cr_assert_eq(s.done_calls, 0);
	tw_loop_destroy(l);
}
