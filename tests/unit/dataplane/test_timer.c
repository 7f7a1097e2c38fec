/* Timer wheel tests, all on a fake clock the test moves by hand: every expiry
 * is deterministic and nothing sleeps. */
#include "dataplane/timer.h"

#include <criterion/criterion.h>
#include <stddef.h>
#include <stdlib.h>

#define MS UINT64_C(1000000)
#define HOUR (UINT64_C(3600) * 1000 * MS)

/* The fake clock: callbacks read it to check they never run early. */
static uint64_t fake_now;

struct rec {
	struct tw_timer t;
	uint64_t deadline; /* as armed */
	uint64_t tick_ns;  /* wheel resolution, for the rounding check */
	unsigned fired;
	uint64_t fired_at;
	unsigned seq; /* position in the firing order */
	/* Optional behaviour inside the callback. */
	struct tw_timer_wheel *w;
	struct rec *cancel; /* cancel this one */
	struct rec *arm;    /* arm this one ... */
	uint64_t arm_at;    /* ... for this deadline */
	uint64_t period;    /* re-arm self at deadline + period */
	unsigned max_fires; /* stop the period after this many */
};

static unsigned fire_seq;
static unsigned early_fires;

static uint64_t round_up(uint64_t d, uint64_t tick)
{
	return (d + tick - 1) / tick * tick;
}

static void on_fire(struct tw_timer *t, void *arg)
{
	struct rec *r = arg;
	cr_assert_eq(t, &r->t);
	cr_assert(!tw_timer_armed(t), "a firing timer is no longer armed");
	if (fake_now < round_up(r->deadline, r->tick_ns))
		early_fires++;
	r->fired++;
	r->fired_at = fake_now;
	r->seq = fire_seq++;
	if (r->cancel != NULL)
		tw_timer_cancel(r->w, &r->cancel->t);
	if (r->arm != NULL) {
		r->arm->deadline = r->arm_at;
		tw_timer_arm(r->w, &r->arm->t, r->arm_at);
	}
	if (r->period != 0 && r->fired < r->max_fires) {
		r->deadline += r->period;
		tw_timer_arm(r->w, t, r->deadline);
	}
}

static void rec_init(struct rec *r, struct tw_timer_wheel *w)
{
	*r = (struct rec){.w = w, .tick_ns = w->tick_ns};
	tw_timer_init(&r->t, on_fire, r);
}

static void rec_arm(struct tw_timer_wheel *w, struct rec *r, uint64_t deadline)
{
	r->deadline = deadline;
	tw_timer_arm(w, &r->t, deadline);
}

static unsigned adv(struct tw_timer_wheel *w, uint64_t now)
{
	fake_now = now;
	return tw_timer_wheel_advance(w, now);
}

static void setup(void)
{
	fake_now = 0;
	fire_seq = 0;
	early_fires = 0;
}

TestSuite(timer, .init = setup);

Test(timer, fires_at_deadline_never_early)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 64, 0), TW_OK);
	struct rec a, b;
	rec_init(&a, &w);
	rec_init(&b, &w);
	rec_arm(&w, &a, 5 * MS);          /* on a tick boundary */
	rec_arm(&w, &b, 7 * MS + MS / 2); /* inside a tick: rounds up to 8 ms */
	cr_assert(tw_timer_armed(&a.t));
	cr_assert_eq(w.armed, 2);

	cr_assert_eq(adv(&w, 5 * MS - 1), 0);
	cr_assert_eq(a.fired, 0);
	cr_assert_eq(adv(&w, 5 * MS), 1);
	cr_assert_eq(a.fired, 1);
	cr_assert_eq(a.fired_at, 5 * MS);
	cr_assert(!tw_timer_armed(&a.t));

	/* Past the raw deadline but before its tick: still not due. */
	cr_assert_eq(adv(&w, 7 * MS + MS / 2), 0);
	cr_assert_eq(adv(&w, 8 * MS - 1), 0);
	cr_assert_eq(b.fired, 0);
	cr_assert_eq(adv(&w, 8 * MS), 1);
	cr_assert_eq(b.fired, 1);

	cr_assert_eq(adv(&w, 100 * MS), 0, "fires once only");
	cr_assert_eq(a.fired + b.fired, 2);
	cr_assert_eq(w.armed, 0);
	cr_assert_eq(w.fired, 2);
	cr_assert_eq(early_fires, 0);
	tw_timer_wheel_fini(&w);
}

Test(timer, order_across_slots)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 32, 0), TW_OK);
	/* Armed out of order, in different slots; one advance covers all. */
	static const uint64_t at[] = {9, 3, 27, 1, 14, 30, 2, 20};
	enum { N = sizeof(at) / sizeof(at[0]) };
	struct rec r[N];
	for (int i = 0; i < N; i++) {
		rec_init(&r[i], &w);
		rec_arm(&w, &r[i], at[i] * MS);
	}
	cr_assert_eq(adv(&w, 31 * MS), N);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(r[i].fired, 1);
		for (int j = 0; j < N; j++)
			if (at[i] < at[j])
				cr_assert_lt(r[i].seq, r[j].seq,
					     "%llu ms fired after %llu ms",
					     (unsigned long long)at[i],
					     (unsigned long long)at[j]);
	}
	tw_timer_wheel_fini(&w);
}

Test(timer, same_tick_fires_in_arm_order)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 16, 0), TW_OK);
	struct rec r[4];
	for (int i = 0; i < 4; i++) {
		rec_init(&r[i], &w);
		/* All round up to the 3 ms tick. */
		rec_arm(&w, &r[i], 2 * MS + 1 + (uint64_t)i * 1000);
	}
	cr_assert_eq(adv(&w, 3 * MS), 4);
	for (unsigned i = 0; i < 4; i++)
		cr_assert_eq(r[i].seq, i);
	tw_timer_wheel_fini(&w);
}

Test(timer, past_deadline_fires_on_next_advance)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 64, 0), TW_OK);
	cr_assert_eq(adv(&w, 10 * MS), 0);
	struct rec a, b, c;
	rec_init(&a, &w);
	rec_init(&b, &w);
	rec_init(&c, &w);
	rec_arm(&w, &a, 5 * MS);
	rec_arm(&w, &b, 0);
	rec_arm(&w, &c, 10 * MS); /* exactly now: already due */
	cr_assert_eq(tw_timer_wheel_next(&w, 10 * MS), 0);
	/* The next advance fires them even though no tick is crossed. */
	cr_assert_eq(adv(&w, 10 * MS), 3);
	cr_assert_eq(a.fired + b.fired + c.fired, 3);
	cr_assert_eq(w.armed, 0);
	tw_timer_wheel_fini(&w);
}

Test(timer, wheel_started_mid_clock)
{
	/* A wheel created at an arbitrary time, mid-tick. */
	struct tw_timer_wheel w;
	uint64_t t0 = 5 * HOUR + 123456;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 128, t0), TW_OK);
	cr_assert_eq(w.now_tick, t0 / MS);
	struct rec a, b;
	rec_init(&a, &w);
	rec_init(&b, &w);
	rec_arm(&w, &a, t0 + 3 * MS);
	/* Past the wall clock but inside the current tick: rounds up to the
	 * next tick, which the wheel has not processed yet. */
	rec_arm(&w, &b, t0 - 1);
	cr_assert_eq(adv(&w, round_up(t0, MS) - 1), 0);
	cr_assert_eq(adv(&w, round_up(t0, MS)), 1);
	cr_assert_eq(b.fired, 1);
	cr_assert_eq(adv(&w, round_up(t0 + 3 * MS, MS) - 1), 0);
	cr_assert_eq(adv(&w, round_up(t0 + 3 * MS, MS)), 1);
	cr_assert_eq(a.fired, 1);
	cr_assert_eq(early_fires, 0);
	tw_timer_wheel_fini(&w);
}

/* xorshift64*: a fixed seed keeps the random tests reproducible. */
static uint64_t rng_state;
static uint64_t rng(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * UINT64_C(2685821657736338717);
}

static unsigned last_fired_tick_ok;
static uint64_t last_fired_tick;
static void on_fire_ordered(struct tw_timer *t, void *arg)
{
	struct rec *r = arg;
	uint64_t tick = round_up(r->deadline, r->tick_ns) / r->tick_ns;
	if (tick < last_fired_tick)
		last_fired_tick_ok = 0;
	last_fired_tick = tick;
	on_fire(t, arg);
}

static void many_random(bool ordered, uint64_t max_step_ns)
{
	enum { N = 100000 };
	struct tw_timer_wheel w;
	/* 256 slots of 100 us: deadlines up to 2 s span ~78 revolutions. */
	cr_assert_eq(tw_timer_wheel_init(&w, 100000, 256, 0), TW_OK);
	const uint64_t span = 2000 * MS;
	struct rec *r = calloc(N, sizeof(*r));
	cr_assert_not_null(r);
	rng_state = UINT64_C(0x9e3779b97f4a7c15);
	for (int i = 0; i < N; i++) {
		rec_init(&r[i], &w);
		r[i].t.fn = on_fire_ordered;
		rec_arm(&w, &r[i], rng() % span);
	}
	cr_assert_eq(w.armed, N);
	last_fired_tick_ok = 1;
	last_fired_tick = 0;

	uint64_t now = 0;
	unsigned total = 0;
	while (now <= span) {
		now += 1 + rng() % max_step_ns;
		total += adv(&w, now);
	}
	cr_assert_eq(total, N);
	cr_assert_eq(w.armed, 0);
	cr_assert_eq(w.fired, N);
	cr_assert_eq(early_fires, 0);
	for (int i = 0; i < N; i++)
		cr_assert_eq(r[i].fired, 1, "timer %d fired %u times", i,
			     r[i].fired);
	if (ordered)
		cr_assert(last_fired_tick_ok,
			  "fired out of deadline-tick order");
	tw_timer_wheel_fini(&w);
	free(r);
}

Test(timer, many_random_deadlines_in_order)
{
	/* Steps below one revolution (25.6 ms): the wheel keeps tick order. */
	many_random(true, 20 * MS);
}

Test(timer, many_random_deadlines_with_jumps)
{
	/* Steps of up to 10 revolutions: still exactly once, never early. */
	many_random(false, 256 * MS);
}

Test(timer, beyond_one_revolution)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 8, 0), TW_OK);
	struct rec a, b, c;
	rec_init(&a, &w);
	rec_init(&b, &w);
	rec_init(&c, &w);
	/* Same slot (tick & 7 == 3), three different revolutions. */
	rec_arm(&w, &a, 19 * MS);
	rec_arm(&w, &b, 3 * MS);
	rec_arm(&w, &c, 11 * MS);
	unsigned fired = 0;
	for (uint64_t ms = 1; ms <= 25; ms++) {
		fired += adv(&w, ms * MS);
		cr_assert_eq(b.fired, ms >= 3);
		cr_assert_eq(c.fired, ms >= 11);
		cr_assert_eq(a.fired, ms >= 19);
	}
	cr_assert_eq(fired, 3);
	cr_assert_eq(b.fired_at, 3 * MS);
	cr_assert_eq(c.fired_at, 11 * MS);
	cr_assert_eq(a.fired_at, 19 * MS);
	tw_timer_wheel_fini(&w);
}

Test(timer, large_clock_jump_fires_due_once)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 64, 0), TW_OK);
	enum { N = 1000 };
	static struct rec r[N];
	rng_state = 42;
	for (int i = 0; i < N; i++) {
		rec_init(&r[i], &w);
		/* Half within the first 2 hours, half in hours 2..4. */
		uint64_t d = rng() % (2 * HOUR);
		if (i % 2)
			d += 2 * HOUR + MS;
		rec_arm(&w, &r[i], d);
	}
	/* A 2 h jump: 7.2 million ticks, swept as one revolution. */
	cr_assert_eq(adv(&w, 2 * HOUR), N / 2);
	for (int i = 0; i < N; i++)
		cr_assert_eq(r[i].fired, (unsigned)!(i % 2));
	cr_assert_eq(w.armed, N / 2);
	cr_assert_eq(w.now_tick, 2 * HOUR / MS);
	/* Nothing is due again until the clock moves. */
	cr_assert_eq(adv(&w, 2 * HOUR), 0);
	cr_assert_eq(adv(&w, 10 * HOUR), N / 2);
	for (int i = 0; i < N; i++)
		cr_assert_eq(r[i].fired, 1);
	cr_assert_eq(w.armed, 0);
	cr_assert_eq(early_fires, 0);
	tw_timer_wheel_fini(&w);
}

Test(timer, cancel_before_fire)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 16, 0), TW_OK);
	struct rec a, b, never;
	rec_init(&a, &w);
	rec_init(&b, &w);
	rec_init(&never, &w);
	tw_timer_cancel(&w, &never.t); /* never armed: no-op */
	cr_assert_eq(w.armed, 0);
	rec_arm(&w, &a, 4 * MS);
	rec_arm(&w, &b, 4 * MS);
	tw_timer_cancel(&w, &a.t);
	cr_assert(!tw_timer_armed(&a.t));
	cr_assert_eq(w.armed, 1);
	tw_timer_cancel(&w, &a.t); /* twice: no-op */
	cr_assert_eq(w.armed, 1);
	cr_assert_eq(adv(&w, 10 * MS), 1);
	cr_assert_eq(a.fired, 0);
	cr_assert_eq(b.fired, 1);
	tw_timer_cancel(&w, &b.t); /* after firing: no-op */
	cr_assert_eq(w.armed, 0);
	/* A cancelled timer can be armed again. */
	rec_arm(&w, &a, 12 * MS);
	cr_assert_eq(adv(&w, 12 * MS), 1);
	cr_assert_eq(a.fired, 1);
	tw_timer_wheel_fini(&w);
}

Test(timer, cancel_from_callback_same_tick)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 16, 0), TW_OK);
	struct rec a, b, c, d;
	rec_init(&a, &w);
	rec_init(&b, &w);
	rec_init(&c, &w);
	rec_init(&d, &w);
	rec_arm(&w, &a, 5 * MS);
	rec_arm(&w, &b, 5 * MS); /* same tick, fires after a */
	rec_arm(&w, &c, 5 * MS);
	rec_arm(&w, &d, 9 * MS); /* later slot */
	a.cancel = &b;
	c.cancel = &d;
	cr_assert_eq(adv(&w, 20 * MS), 2);
	cr_assert_eq(a.fired, 1);
	cr_assert_eq(b.fired, 0, "cancelled while due in the same tick");
	cr_assert_eq(c.fired, 1);
	cr_assert_eq(d.fired, 0, "cancelled ahead of the sweep");
	cr_assert_eq(w.armed, 0);
	tw_timer_wheel_fini(&w);
}

Test(timer, cancel_from_callback_during_jump)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 8, 0), TW_OK);
	struct rec a, b;
	rec_init(&a, &w);
	rec_init(&b, &w);
	rec_arm(&w, &a, 2 * MS);
	rec_arm(&w, &b, 6 * MS);
	a.cancel = &b;
	cr_assert_eq(adv(&w, HOUR), 1);
	cr_assert_eq(b.fired, 0);
	cr_assert_eq(w.armed, 0);
	tw_timer_wheel_fini(&w);
}

/* Re-arms itself, then changes its mind. */
static void rearm_then_cancel(struct tw_timer *t, void *arg)
{
	struct rec *r = arg;
	r->fired++;
	tw_timer_arm(r->w, t, 50 * MS);
	cr_assert(tw_timer_armed(t));
	tw_timer_cancel(r->w, t);
	tw_timer_cancel(r->w, t);
}

Test(timer, cancel_self_in_callback)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 16, 0), TW_OK);
	struct rec a, b;
	rec_init(&a, &w);
	rec_init(&b, &w);
	a.cancel = &a; /* already disarmed while it runs: a no-op */
	rec_arm(&w, &a, 1 * MS);
	cr_assert_eq(adv(&w, 1 * MS), 1);
	cr_assert_eq(w.armed, 0);

	b.t.fn = rearm_then_cancel;
	rec_arm(&w, &b, 2 * MS);
	cr_assert_eq(adv(&w, 2 * MS), 1);
	cr_assert(!tw_timer_armed(&b.t));
	cr_assert_eq(w.armed, 0);
	cr_assert_eq(adv(&w, 100 * MS), 0);
	cr_assert_eq(b.fired, 1);
	tw_timer_wheel_fini(&w);
}

Test(timer, periodic_self_rearm)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 1024, 0), TW_OK);
	struct rec p;
	rec_init(&p, &w);
	p.period = 10 * MS;
	p.max_fires = 1000;
	rec_arm(&w, &p, 10 * MS);
	/* One ms at a time: one fire per period, each on time. */
	for (uint64_t ms = 1; ms <= 100; ms++) {
		adv(&w, ms * MS);
		cr_assert_eq(p.fired, ms / 10);
		if (ms % 10 == 0)
			cr_assert_eq(p.fired_at, ms * MS);
	}
	/* One advance across many periods, within a revolution: each re-arm
	 * lands ahead of the sweep and fires in this same call. */
	cr_assert_eq(adv(&w, 195 * MS), 9);
	cr_assert_eq(p.fired, 19);
	cr_assert(tw_timer_armed(&p.t));
	cr_assert_eq(p.deadline, 200 * MS);
	cr_assert_eq(early_fires, 0);
	tw_timer_wheel_fini(&w);
}

Test(timer, periodic_catches_up_after_jump)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 16, 0), TW_OK);
	struct rec p;
	rec_init(&p, &w);
	p.period = 10 * MS;
	p.max_fires = 1000;
	rec_arm(&w, &p, 10 * MS);
	/* The re-arm lands behind the jump: one fire per advance, no loop. */
	cr_assert_eq(adv(&w, 1000 * MS), 1);
	cr_assert_eq(adv(&w, 1000 * MS), 1);
	cr_assert_eq(adv(&w, 1000 * MS), 1);
	cr_assert_eq(p.fired, 3);
	cr_assert_eq(early_fires, 0);
	tw_timer_wheel_fini(&w);
}

Test(timer, arm_from_callback_same_tick)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 16, 0), TW_OK);
	struct rec a, b;
	rec_init(&a, &w);
	rec_init(&b, &w);
	rec_arm(&w, &a, 5 * MS);
	a.arm = &b;
	a.arm_at = 5 * MS; /* the tick being swept: not ahead of it */
	cr_assert_eq(adv(&w, 5 * MS), 1);
	cr_assert_eq(b.fired, 0);
	cr_assert(tw_timer_armed(&b.t));
	cr_assert_eq(tw_timer_wheel_next(&w, 5 * MS), 0);
	/* The next call fires it, with no tick crossed. */
	cr_assert_eq(adv(&w, 5 * MS), 1);
	cr_assert_eq(b.fired, 1);

	/* A timer re-arming itself for "now" fires once per advance. */
	struct rec s;
	rec_init(&s, &w);
	s.arm = &s;
	s.arm_at = 6 * MS;
	rec_arm(&w, &s, 6 * MS);
	cr_assert_eq(adv(&w, 6 * MS), 1);
	cr_assert_eq(adv(&w, 6 * MS), 1);
	cr_assert_eq(s.fired, 2);
	tw_timer_cancel(&w, &s.t);

	/* Armed from a callback for a tick still ahead of the sweep: fires in
	 * the same call. */
	struct rec c, e;
	rec_init(&c, &w);
	rec_init(&e, &w);
	c.arm = &e;
	c.arm_at = 9 * MS;
	rec_arm(&w, &c, 7 * MS);
	cr_assert_eq(adv(&w, 10 * MS), 2);
	cr_assert_eq(e.fired, 1);
	cr_assert_eq(e.fired_at, 10 * MS);
	cr_assert_eq(w.armed, 0);
	tw_timer_wheel_fini(&w);
}

Test(timer, rearm_moves_timer)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 16, 0), TW_OK);
	struct rec a;
	rec_init(&a, &w);
	rec_arm(&w, &a, 5 * MS);
	rec_arm(&w, &a, 40 * MS); /* later, beyond a revolution */
	cr_assert_eq(w.armed, 1, "re-arm does not count twice");
	cr_assert_eq(adv(&w, 39 * MS), 0);
	cr_assert_eq(adv(&w, 40 * MS), 1);
	cr_assert_eq(a.fired, 1);
	rec_arm(&w, &a, 60 * MS);
	rec_arm(&w, &a, 45 * MS); /* earlier */
	cr_assert_eq(adv(&w, 45 * MS), 1);
	cr_assert_eq(a.fired_at, 45 * MS);
	cr_assert_eq(adv(&w, 100 * MS), 0);
	/* Re-arm from another timer's callback while it waits in the same
	 * tick: it moves, and does not fire with that tick. */
	struct rec b;
	rec_init(&b, &w);
	rec_arm(&w, &b, 110 * MS);
	rec_arm(&w, &a, 110 * MS);
	b.arm = &a;
	b.arm_at = 120 * MS;
	cr_assert_eq(adv(&w, 115 * MS), 1);
	cr_assert_eq(a.fired, 2);
	cr_assert_eq(adv(&w, 120 * MS), 1);
	cr_assert_eq(a.fired, 3);
	cr_assert_eq(a.fired_at, 120 * MS);
	cr_assert_eq(w.armed, 0);
	tw_timer_wheel_fini(&w);
}

Test(timer, time_going_backwards_is_ignored)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 16, 0), TW_OK);
	struct rec a;
	rec_init(&a, &w);
	cr_assert_eq(adv(&w, 10 * MS), 0);
	rec_arm(&w, &a, 12 * MS);
	cr_assert_eq(adv(&w, 3 * MS), 0);
	cr_assert_eq(w.now_tick, 10);
	cr_assert_eq(adv(&w, 11 * MS), 0);
	cr_assert_eq(adv(&w, 12 * MS), 1);
	/* Even a past-deadline timer waits for a clock that is not older. */
	rec_arm(&w, &a, 1 * MS);
	cr_assert_eq(adv(&w, 5 * MS), 0);
	cr_assert_eq(adv(&w, 12 * MS), 1);
	cr_assert_eq(a.fired, 2);
	tw_timer_wheel_fini(&w);
}

Test(timer, next_deadline)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 8, 0), TW_OK);
	cr_assert_eq(tw_timer_wheel_next(&w, 0), UINT64_MAX);
	struct rec a, b, far;
	rec_init(&a, &w);
	rec_init(&b, &w);
	rec_init(&far, &w);

	rec_arm(&w, &a, 2 * MS + MS / 2); /* rounds up to 3 ms */
	cr_assert_eq(tw_timer_wheel_next(&w, 0), 3 * MS);
	cr_assert_eq(tw_timer_wheel_next(&w, MS + 200000),
		     3 * MS - MS - 200000);
	cr_assert_eq(tw_timer_wheel_next(&w, 3 * MS - 1), 1);
	cr_assert_eq(tw_timer_wheel_next(&w, 3 * MS), 0, "due");
	cr_assert_eq(tw_timer_wheel_next(&w, 9 * MS), 0, "overdue");

	rec_arm(&w, &b, 1 * MS); /* earlier one wins */
	cr_assert_eq(tw_timer_wheel_next(&w, 0), 1 * MS);
	tw_timer_cancel(&w, &b.t);
	cr_assert_eq(tw_timer_wheel_next(&w, 0), 3 * MS);
	tw_timer_cancel(&w, &a.t);
	cr_assert_eq(tw_timer_wheel_next(&w, 0), UINT64_MAX);

	/* Beyond one revolution (8 ms): computed exactly, not per slot. */
	rec_arm(&w, &far, 100 * MS + 1);
	cr_assert_eq(tw_timer_wheel_next(&w, 0), 101 * MS);
	rec_arm(&w, &a, 75 * MS); /* earlier, also beyond; different slot */
	cr_assert_eq(tw_timer_wheel_next(&w, 0), 75 * MS);
	rec_arm(&w, &b, 4 * MS); /* within the first lap */
	cr_assert_eq(tw_timer_wheel_next(&w, 0), 4 * MS);
	adv(&w, 4 * MS);
	cr_assert_eq(tw_timer_wheel_next(&w, 4 * MS), 71 * MS);

	/* A past deadline is due now. */
	rec_arm(&w, &b, 1 * MS);
	cr_assert_eq(tw_timer_wheel_next(&w, 4 * MS), 0);
	adv(&w, 4 * MS);
	cr_assert_eq(tw_timer_wheel_next(&w, 4 * MS), 71 * MS);

	/* After a jump, timers beyond it are measured from the new now. */
	adv(&w, 80 * MS);
	cr_assert_eq(tw_timer_wheel_next(&w, 80 * MS), 21 * MS);
	adv(&w, 101 * MS);
	cr_assert_eq(tw_timer_wheel_next(&w, 101 * MS), UINT64_MAX);
	cr_assert_eq(a.fired + b.fired + far.fired, 4);
	tw_timer_wheel_fini(&w);
}

Test(timer, next_with_far_deadline_does_not_overflow)
{
	struct tw_timer_wheel w;
	/* 2^64 - 1 = 7q + 1: the deadline rounds up to tick q + 1, whose
	 * start lies past the end of a 64-bit clock. */
	cr_assert_eq(tw_timer_wheel_init(&w, 7, 4, 0), TW_OK);
	struct rec a;
	rec_init(&a, &w);
	rec_arm(&w, &a, UINT64_MAX);
	cr_assert_eq(tw_timer_wheel_next(&w, 0), UINT64_MAX);
	cr_assert_eq(adv(&w, UINT64_MAX), 0, "not reachable on this clock");
	tw_timer_wheel_fini(&w);
}

Test(timer, init_arguments)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(NULL, MS, 16, 0), TW_EINVAL);

	cr_assert_eq(tw_timer_wheel_init(&w, 0, 0, 0), TW_OK);
	cr_assert_eq(w.tick_ns, 1 * MS, "tick 0 means 1 ms");
	cr_assert_eq(w.nslots, 1024, "nslots 0 means 1024");
	cr_assert_eq(w.armed, 0);
	cr_assert_eq(w.fired, 0);
	cr_assert_null(w.running);
	tw_timer_wheel_fini(&w);

	static const struct {
		uint32_t in, out;
	} round[] = {{1, 1},       {2, 2},       {3, 4},        {1000, 1024},
		     {1024, 1024}, {1025, 2048}, {65535, 65536}};
	for (size_t i = 0; i < sizeof(round) / sizeof(round[0]); i++) {
		cr_assert_eq(tw_timer_wheel_init(&w, 1000, round[i].in, 7777),
			     TW_OK);
		cr_assert_eq(w.nslots, round[i].out, "nslots %u -> %u, want %u",
			     round[i].in, w.nslots, round[i].out);
		cr_assert_eq(w.tick_ns, 1000);
		cr_assert_eq(w.now_tick, 7, "now rounds down to a tick");
		tw_timer_wheel_fini(&w);
	}
	/* No power of two above 2^31 fits in 32 bits. */
	cr_assert_eq(tw_timer_wheel_init(&w, MS, (UINT32_C(1) << 31) + 1, 0),
		     TW_EINVAL);
	cr_assert_eq(tw_timer_wheel_init(&w, MS, UINT32_MAX, 0), TW_EINVAL);
}

Test(timer, single_slot_wheel)
{
	/* One slot: every tick is beyond a revolution but one. */
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 1, 0), TW_OK);
	struct rec r[5];
	for (int i = 0; i < 5; i++) {
		rec_init(&r[i], &w);
		rec_arm(&w, &r[i], (uint64_t)(5 - i) * MS);
	}
	cr_assert_eq(tw_timer_wheel_next(&w, 0), 1 * MS);
	for (uint64_t ms = 1; ms <= 5; ms++) {
		cr_assert_eq(adv(&w, ms * MS), 1);
		cr_assert_eq(r[5 - ms].fired_at, ms * MS);
	}
	tw_timer_wheel_fini(&w);
}

Test(timer, fini_forgets_armed_timers)
{
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 16, 0), TW_OK);
	struct rec a, b;
	rec_init(&a, &w);
	rec_init(&b, &w);
	rec_arm(&w, &a, 5 * MS);
	rec_arm(&w, &b, 0); /* on the due list */
	tw_timer_wheel_fini(&w);
	cr_assert_null(w.slots);
	cr_assert(!tw_timer_armed(&a.t));
	cr_assert(!tw_timer_armed(&b.t));
	tw_timer_wheel_fini(&w); /* twice: harmless */
	/* The timers are reusable on a fresh wheel. */
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 16, 0), TW_OK);
	rec_arm(&w, &a, 5 * MS);
	cr_assert_eq(adv(&w, 5 * MS), 1);
	cr_assert_eq(b.fired, 0);
	tw_timer_wheel_fini(&w);
}

static unsigned nested_result = 99;
static void nested_advance(struct tw_timer *t, void *arg)
{
	struct tw_timer_wheel *w = arg;
	cr_assert_eq(w->running, t, "the wheel names the timer running");
	nested_result = tw_timer_wheel_advance(w, 1000 * MS);
}

Test(timer, advance_from_callback_is_refused)
{
	/* A nested advance would re-enter a half-done sweep. */
	struct tw_timer_wheel w;
	cr_assert_eq(tw_timer_wheel_init(&w, MS, 16, 0), TW_OK);
	struct tw_timer t;
	struct rec later;
	tw_timer_init(&t, nested_advance, &w);
	rec_init(&later, &w);
	tw_timer_arm(&w, &t, 1 * MS);
	rec_arm(&w, &later, 50 * MS);
	cr_assert_eq(adv(&w, 1 * MS), 1);
	cr_assert_eq(nested_result, 0);
	cr_assert_null(w.running);
	cr_assert_eq(later.fired, 0);
	cr_assert_eq(w.now_tick, 1);
	tw_timer_wheel_fini(&w);
}
