/* Hashed timer wheel: owns the slot table of one run loop's wheel and the
 * rules for when an armed tw_timer fires. */
#include "dataplane/timer.h"

#include <stddef.h>
#include <stdlib.h>

#define DEFAULT_TICK_NS 1000000u
#define DEFAULT_NSLOTS 1024u
/* Largest power of two a uint32_t holds: the ceiling for rounding nslots. */
#define MAX_NSLOTS (UINT32_C(1) << 31)

/*
 * The slot table holds nslots + 1 sentinels. The extra one, after the real
 * slots, is the "due" list: timers whose tick is already behind the sweep
 * (a past deadline, or one armed from a callback for a tick already
 * processed). Keeping them out of the slots is what lets a past deadline
 * fire on the very next advance, even one that does not cross a tick, and
 * keeps a callback that re-arms itself for "now" from looping forever
 * inside one advance.
 *
 * Invariant outside advance: every timer in a real slot has
 * expires_tick > now_tick, so the first revolution after now_tick finds
 * every timer due within it at exactly its own tick.
 */

static inline struct tw_timer *due_list(const struct tw_timer_wheel *w)
{
	return &w->slots[w->nslots];
}

static inline void list_init(struct tw_timer *head)
{
	head->next = head;
	head->prev = head;
}

static inline bool list_empty(const struct tw_timer *head)
{
	return head->next == head;
}

/* Appending keeps arm order among timers of one tick (FIFO). */
static inline void list_append(struct tw_timer *head, struct tw_timer *t)
{
	t->prev = head->prev;
	t->next = head;
	head->prev->next = t;
	head->prev = t;
}

/* Works on any list, the wheel's or a sweep's local one: a callback may
 * cancel a timer already detached for firing without knowing where it is. */
static inline void list_unlink(struct tw_timer *t)
{
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->next = NULL;
	t->prev = NULL;
}

static uint64_t round_up_pow2(uint32_t n)
{
	uint64_t p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

/* Ceiling division: a deadline inside a tick belongs to the tick after it,
 * which is what makes the wheel never fire early. */
static inline uint64_t deadline_tick(const struct tw_timer_wheel *w,
				     uint64_t deadline_ns)
{
	return deadline_ns / w->tick_ns + (deadline_ns % w->tick_ns != 0);
}

void tw_timer_init(struct tw_timer *t, tw_timer_fn fn, void *arg)
{
	t->next = NULL;
	t->prev = NULL;
	t->expires_tick = 0;
	t->fn = fn;
	t->arg = arg;
}

tw_status tw_timer_wheel_init(struct tw_timer_wheel *w, uint64_t tick_ns,
			      uint32_t nslots, uint64_t now_ns)
{
	if (w == NULL)
		return TW_EINVAL;
	if (tick_ns == 0)
		tick_ns = DEFAULT_TICK_NS;
	if (nslots == 0)
		nslots = DEFAULT_NSLOTS;
	if (nslots > MAX_NSLOTS)
		return TW_EINVAL;
	nslots = (uint32_t)round_up_pow2(nslots);

	struct tw_timer *slots = calloc((size_t)nslots + 1, sizeof(*slots));
	if (slots == NULL)
		return TW_ENOMEM;
	for (uint32_t i = 0; i <= nslots; i++)
		list_init(&slots[i]);

	w->tick_ns = tick_ns;
	w->now_tick = now_ns / tick_ns;
	w->nslots = nslots;
	w->armed = 0;
	w->slots = slots;
	w->running = NULL;
	w->fired = 0;
	return TW_OK;
}

void tw_timer_wheel_fini(struct tw_timer_wheel *w)
{
	if (w == NULL || w->slots == NULL)
		return;
	/* Forgotten timers still point into the table; mark them unarmed so a
	 * later cancel or tw_timer_armed() on them does not touch freed memory. */
	for (uint32_t i = 0; i <= w->nslots; i++) {
		struct tw_timer *head = &w->slots[i];
		while (!list_empty(head))
			list_unlink(head->next);
	}
	free(w->slots);
	w->slots = NULL;
	w->armed = 0;
	w->running = NULL;
}

void tw_timer_arm(struct tw_timer_wheel *w, struct tw_timer *t,
		  uint64_t deadline_ns)
{
	if (tw_timer_armed(t))
		list_unlink(t);
	else
		w->armed++;

	uint64_t tick = deadline_tick(w, deadline_ns);
	t->expires_tick = tick;
	if (tick <= w->now_tick)
		list_append(due_list(w), t);
	else
		list_append(&w->slots[tick & (w->nslots - 1)], t);
}

void tw_timer_cancel(struct tw_timer_wheel *w, struct tw_timer *t)
{
	if (!tw_timer_armed(t))
		return;
	list_unlink(t);
	w->armed--;
}

/* Move the timers of one list that are due by limit_tick onto out. */
static void collect(struct tw_timer *head, uint64_t limit_tick,
		    struct tw_timer *out)
{
	struct tw_timer *t = head->next;
	while (t != head) {
		struct tw_timer *next = t->next;
		if (t->expires_tick <= limit_tick) {
			list_unlink(t);
			list_append(out, t);
		}
		t = next;
	}
}

/*
 * Fire everything on a detached list. The list lives on the caller's stack
 * and each timer stays linked (armed) until its turn, so a callback that
 * cancels or re-arms a timer still waiting here just unlinks it from this
 * list, and the loop never holds a pointer a callback could invalidate.
 */
static unsigned fire_list(struct tw_timer_wheel *w, struct tw_timer *local)
{
	unsigned n = 0;
	while (!list_empty(local)) {
		struct tw_timer *t = local->next;
		list_unlink(t);
		w->armed--;
		n++;
		if (t->fn != NULL) {
			w->running = t;
			t->fn(t, t->arg);
			w->running = NULL;
		}
	}
	return n;
}

unsigned tw_timer_wheel_advance(struct tw_timer_wheel *w, uint64_t now_ns)
{
	/* A nested advance from a callback would re-enter a sweep half done. */
	if (w->running != NULL)
		return 0;

	/* The common case, every loop iteration: still inside the last
	 * tick processed, nothing overdue. A multiply, not the division. */
	if (now_ns < (w->now_tick + 1) * w->tick_ns && list_empty(due_list(w)))
		return 0;
	uint64_t target = now_ns / w->tick_ns;
	if (target < w->now_tick)
		return 0;

	const uint64_t mask = w->nslots - 1;
	unsigned fired = 0;
	struct tw_timer local;
	list_init(&local);

	/* Detach the due list first: what callbacks add to it waits for the
	 * next call. These are the oldest deadlines, so they go first. */
	collect(due_list(w), w->now_tick, &local);
	fired += fire_list(w, &local);

	uint64_t delta = target - w->now_tick;
	if (w->armed == 0 || delta == 0) {
		w->now_tick = target;
	} else if (delta <= w->nslots) {
		/* Tick by tick, so timers fire in tick order and a callback
		 * arming a tick still ahead of the sweep fires in this call. */
		uint64_t start = w->now_tick;
		for (uint64_t i = 1; i <= delta; i++) {
			uint64_t k = start + i;
			w->now_tick = k;
			collect(&w->slots[k & mask], k, &local);
			fired += fire_list(w, &local);
			if (w->armed == 0) {
				w->now_tick = target;
				break;
			}
		}
	} else {
		/* The clock jumped more than a revolution: visiting each slot
		 * once finds everything due, and bounds the work to nslots no
		 * matter how far it jumped. Everything found is overdue, so the
		 * order is by slot rather than by tick. Moving now_tick first
		 * sends timers armed by callbacks for any swept tick to the due
		 * list, and keeps the slot invariant while callbacks run. */
		uint64_t start = w->now_tick;
		w->now_tick = target;
		for (uint64_t i = 1; i <= w->nslots; i++)
			collect(&w->slots[(start + i) & mask], target, &local);
		fired += fire_list(w, &local);
	}

	w->fired += fired;
	return fired;
}

/* Earliest expires_tick among the timers in the slots; false if none. By the
 * slot invariant, the first slot of the revolution after now_tick holding a
 * timer for exactly that tick holds the earliest; failing that, everything
 * lies beyond a revolution and the minimum over the whole scan is exact. */
static bool earliest_tick(const struct tw_timer_wheel *w, uint64_t *tick)
{
	const uint64_t mask = w->nslots - 1;
	bool seen = false;
	uint64_t best = UINT64_MAX;
	for (uint64_t i = 1; i <= w->nslots; i++) {
		uint64_t k = w->now_tick + i;
		const struct tw_timer *head = &w->slots[k & mask];
		for (const struct tw_timer *t = head->next; t != head;
		     t = t->next) {
			if (t->expires_tick == k) {
				*tick = k;
				return true;
			}
			if (!seen || t->expires_tick < best)
				best = t->expires_tick;
			seen = true;
		}
	}
	*tick = best;
	return seen;
}

uint64_t tw_timer_wheel_next(const struct tw_timer_wheel *w, uint64_t now_ns)
{
	if (w->armed == 0)
		return UINT64_MAX;
	if (!list_empty(due_list(w)))
		return 0;

	uint64_t tick;
	/* Armed yet in no slot: detached by the sweep now running, about to
	 * fire. */
	if (!earliest_tick(w, &tick))
		return 0;

	uint64_t deadline;
	if (tick > UINT64_MAX / w->tick_ns)
		deadline = UINT64_MAX; /* beyond the representable clock */
	else
		deadline = tick * w->tick_ns;
	return deadline > now_ns ? deadline - now_ns : 0;
}
