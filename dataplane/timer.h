/* Timer wheel: deadlines for timeouts and retransmits on one run loop.
 * Intrusive timers (no allocation), driven by a clock the caller reads, so
 * tests advance a fake clock and every expiry is deterministic. */
#ifndef TW_DATAPLANE_TIMER_H
#define TW_DATAPLANE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#include <tensorwire/status.h>

#ifdef __cplusplus
extern "C" {
#endif

struct tw_timer;
typedef void (*tw_timer_fn)(struct tw_timer *t, void *arg);

/* Embed in the object whose deadline it tracks. Fields are the wheel's. */
struct tw_timer {
	struct tw_timer *next, *prev; /* slot list; prev == NULL: not armed */
	uint64_t expires_tick;
	tw_timer_fn fn;
	void *arg;
};

/* Single-threaded: a wheel belongs to one run loop. */
struct tw_timer_wheel {
	uint64_t tick_ns;         /* resolution */
	uint64_t now_tick;        /* last tick processed */
	uint32_t nslots;          /* power of two */
	uint32_t armed;           /* number of armed timers */
	struct tw_timer *slots;   /* nslots sentinel heads (circular lists) */
	struct tw_timer *running; /* set while a callback runs (cancel-safe) */
	uint64_t fired;           /* statistics */
};

/* Prepare a timer once before first use (not armed). */
void tw_timer_init(struct tw_timer *t, tw_timer_fn fn, void *arg);

/* Create a wheel with nslots (rounded up to a power of two, default 1024 when
 * 0) of tick_ns each (default 1 ms when 0), starting at now_ns. */
tw_status tw_timer_wheel_init(struct tw_timer_wheel *w, uint64_t tick_ns,
			      uint32_t nslots, uint64_t now_ns);

/* Free the slot table; armed timers are simply forgotten. */
void tw_timer_wheel_fini(struct tw_timer_wheel *w);

/* Arm (or re-arm) t to fire at the first tick at or after deadline_ns. A
 * deadline in the past fires on the next advance. Never fires early: the
 * callback sees now >= deadline rounded up to a tick. */
void tw_timer_arm(struct tw_timer_wheel *w, struct tw_timer *t,
		  uint64_t deadline_ns);

/* Disarm; a no-op when not armed. Safe from inside any timer callback,
 * including t's own. */
void tw_timer_cancel(struct tw_timer_wheel *w, struct tw_timer *t);

static inline bool tw_timer_armed(const struct tw_timer *t)
{
	return t->prev != 0;
}

/* Fire every timer whose deadline is <= now_ns, in deadline order within a
 * tick's granularity; callbacks may arm and cancel timers (a timer armed
 * for a past deadline from a callback fires in this same call only if its
 * tick is still ahead of the sweep, otherwise on the next call). Returns
 * the number fired. Time never goes backwards: an older now_ns is ignored. */
unsigned tw_timer_wheel_advance(struct tw_timer_wheel *w, uint64_t now_ns);

/* Nanoseconds from now_ns until the earliest armed deadline (0 if due),
 * or UINT64_MAX when nothing is armed: how long a loop may sleep. */
uint64_t tw_timer_wheel_next(const struct tw_timer_wheel *w, uint64_t now_ns);

#ifdef __cplusplus
}
#endif
#endif
