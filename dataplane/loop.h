/* Run loop: one per core. Polls its transport, drains its MPSC message ring,
 * runs pollers and fires timers; sleeps on its io_uring only after an idle
 * spin. Everything a loop owns is touched only by its thread. */
#ifndef TW_DATAPLANE_LOOP_H
#define TW_DATAPLANE_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/status.h>

#include "dataplane/list.h"
#include "dataplane/timer.h"

#ifdef __cplusplus
extern "C" {
#endif

struct io_uring;
struct io_uring_cqe;
typedef struct tw_loop tw_loop;

/* Nanosecond clock. Tests pass a fake one and advance it by hand. */
typedef uint64_t (*tw_clock_fn)(void *ctx);

/* Monotonic clock (CLOCK_MONOTONIC) in ns. */
uint64_t tw_clock_monotonic(void *ctx);

struct tw_loop_opts {
	size_t opts_size;   /* sizeof(struct tw_loop_opts) */
	const char *name;   /* thread name (copied, 15 chars kept) */
	int cpu;            /* pin the loop thread to this cpu; -1 = no */
	uint32_t ring_size; /* MPSC message ring entries (default 4096;
			     * a power of two, else TW_EINVAL) */
	uint32_t batch;     /* messages drained per iteration (default 64) */
	uint64_t spin_ns;   /* busy-poll this long without work before
			     * sleeping (default 200 us); UINT64_MAX never
			     * sleeps, 0 sleeps at once when idle */
	bool yield;         /* sched_yield() between idle polls: needed
			     * when pollers outnumber cores (tests) */
	uint64_t tick_ns;   /* timer wheel resolution (default 1 ms) */
	uint32_t uring_entries; /* io_uring SQ entries (default 512) */
	tw_clock_fn clock;      /* NULL = tw_clock_monotonic */
	void *clock_ctx;
};

void tw_loop_opts_init(struct tw_loop_opts *o, size_t opts_size);

/*
 * A message to a loop: embed it in your own object (no allocation), set fn,
 * post it; fn runs once on the loop thread with the message pointer, from
 * which container_of recovers the object.
 */
struct tw_loop_msg {
	void (*fn)(struct tw_loop_msg *m);
};

/* A function called every iteration on the loop thread (a second time,
 * after the completions and timers, in an iteration where those ran);
 * returns how much work it did (0 = idle), which drives the idle policy
 * and statistics. */
struct tw_poller {
	int (*fn)(void *arg);
	void *arg;
	TAILQ_ENTRY(tw_poller) link; /* the loop's */
	bool registered_;
	/* Optional: the loop is about to sleep (its spin is over). What
	 * only a poll would notice must be handed to the kernel now, e.g.
	 * a receive armed: the sleep submits prepared SQEs first. */
	void (*idle)(void *arg);
};

/*
 * io_uring completion routing: every SQE a loop user submits carries a
 * pointer to one of these as user_data; the loop calls fn with the CQE.
 * (For multishot requests fn runs once per CQE.)
 */
struct tw_uring_req {
	void (*fn)(struct tw_uring_req *r, struct io_uring_cqe *cqe);
};

/* Create a loop (no thread yet). Its io_uring is created by the first
 * thread that polls it, because DEFER_TASKRUN|SINGLE_ISSUER bind the ring
 * to that thread. */
tw_status tw_loop_create(const struct tw_loop_opts *o, tw_loop **out);

/* Start a thread (pinned per opts) that polls until tw_loop_stop.
 * TW_EBUSY if the loop already has its polling thread (started before, or
 * polled in embedded mode): the ring is bound to one thread for life. */
tw_status tw_loop_start(tw_loop *l);

/* Ask the loop thread to stop and join it. From any other thread (from
 * the loop's thread, or a borrower inside it: TW_EINVAL). */
tw_status tw_loop_stop(tw_loop *l);

/* Free the loop. Its thread must be stopped; pollers must be removed. */
void tw_loop_destroy(tw_loop *l);

/* Embedded mode: one iteration on the calling thread (which must be the
 * same thread every time). Drains up to batch messages, runs pollers, reaps
 * io_uring completions, fires due timers. Never sleeps. Returns work done.
 * Not reentrant: called from inside an iteration it returns 0. */
int tw_loop_poll_once(tw_loop *l);

/* Embedded mode: poll until work arrives or timeout_ns passes, sleeping on
 * the ring per the idle policy. Returns work done. */
int tw_loop_poll_wait(tw_loop *l, uint64_t timeout_ns);

/* Embedded mode: poll until done(arg) returns true (checked before the
 * first iteration and after each) or timeout_ns of real time passes
 * (UINT64_MAX = no limit). Follows the idle policy: busy-polls while there
 * is work and spin_ns after the last, yielding if asked, then sleeps on
 * the ring, at most max_sleep_ns at a time so that a condition another
 * thread makes true is seen (UINT64_MAX = no cap: only this loop's work
 * can make it true). Returns true when done. Not from inside an
 * iteration (returns done(arg) at once). */
bool tw_loop_poll_until(tw_loop *l, bool (*done)(void *arg), void *arg,
			uint64_t timeout_ns, uint64_t max_sleep_ns);

/*
 * Lending, for threaded loops (tw_loop_start): a thread waiting for
 * something only this loop can complete (a caller waiting for its answer)
 * polls the loop itself meanwhile, as an embedded owner does, instead of
 * leaving it to the loop's thread and waiting to be woken: on few cores
 * the caller, its loop's thread and the peer are more runnable threads
 * than CPUs, and every hand-off between the first two is a context
 * switch. The loop's thread lets the loop go between two iterations (or
 * while it sleeps) and parks until the borrower is done.
 *
 * Polls until done(arg) (checked before each iteration and after), the
 * absolute deadline (tw_now_ns clock) passes, the loop has been idle for
 * its spin_ns, or the borrower meets work only the loop's thread may do
 * (the ring is bound to it: SQEs to submit, completions to reap); then
 * gives the loop back. Returns done(arg). Returns false at once on a loop
 * not (or no longer) run by its own thread, or when the loop's thread
 * would not let go within ~20 us. The caller must keep l alive (the
 * agent does: tw_loop_stop and destroy come after every borrower left),
 * and must not be polling l already. Callbacks of the iterations run on
 * the borrower's thread, one holder at a time, as on the loop's.
 */
bool tw_loop_borrow_until(tw_loop *l, bool (*done)(void *arg), void *arg,
			  uint64_t deadline_ns);

/* tw_loop_borrow_until for a thread that waits for work the loop makes
 * (a queue its messages fill, served by this thread): it leaves as soon
 * as another borrower wants the loop, which waits for a call's answer. */
bool tw_loop_serve_until(tw_loop *l, bool (*done)(void *arg), void *arg,
			 uint64_t deadline_ns);

/* No more lending of l: new borrows return false at once, borrowers in
 * it leave after their current iteration; returns once none is left.
 * Not from a borrower of l. For an owner about to run work only its own
 * thread may do (a transport's destroy enters the ring). */
void tw_loop_reclaim(tw_loop *l);

/* Whether the calling thread is the last that borrowed l: most likely
 * the next to wait on it, as a caller that pipelines calls is (a post of
 * its may then be tw_loop_post_lazy). */
bool tw_loop_lent_to_me(const tw_loop *l);

/* Whether l lingers for the calling thread (its last borrower) with a
 * batch (16) of lazy posts waiting: a caller whose waits keep finding
 * their answers there should send them (tw_loop_borrow_once) rather than
 * leave them to the loop's thread, which would have to be woken for
 * them. */
bool tw_loop_batch_waiting(const tw_loop *l);

/* One iteration of l on the calling thread, as tw_loop_borrow_until's,
 * if the loop's thread lets it go at once; else the loop's thread is
 * woken for what waits. Not from within an iteration of l. */
void tw_loop_borrow_once(tw_loop *l);

/* True while an iteration runs (loop thread only): a caller reached from
 * a message, poller, completion or timer callback. */
bool tw_loop_in_poll(const tw_loop *l);

/* Post m from any thread (multi-producer, lock-free). Wakes the loop when
 * it sleeps. TW_ENOSPC when the ring is full: the caller keeps m and
 * decides (backpressure). */
tw_status tw_loop_post(tw_loop *l, struct tw_loop_msg *m);

/* tw_loop_post for a poster about to wait for what m starts, and so to
 * borrow l (tw_loop_borrow_until): a loop lingering after a borrow is not
 * woken for m, and lingers on (~50 us from this post), unless 64 messages
 * wait: m waits for the poster's borrow, or for the loop's thread at the
 * end of the linger if the poster does not come. */
tw_status tw_loop_post_lazy(tw_loop *l, struct tw_loop_msg *m);

/* tw_loop_post from the thread that polls l (an embedded owner between
 * iterations, or a callback inside one): l cannot be asleep then, so the
 * fence and the sleeping check that guard against a lost wakeup are
 * skipped. Any other thread must use tw_loop_post. */
tw_status tw_loop_post_own(tw_loop *l, struct tw_loop_msg *m);

/* Loop thread only. */
void tw_loop_add_poller(tw_loop *l, struct tw_poller *p);
void tw_loop_remove_poller(tw_loop *l, struct tw_poller *p);

/* The loop's clock, read once per iteration (cheap); tw_loop_clock reads
 * the clock now. */
uint64_t tw_loop_now(const tw_loop *l);
uint64_t tw_loop_clock(const tw_loop *l);

/* The loop's timer wheel (loop thread only). */
struct tw_timer_wheel *tw_loop_timers(tw_loop *l);

/* Arm a timer on this loop's wheel at now + delay_ns. */
void tw_loop_timer_after(tw_loop *l, struct tw_timer *t, uint64_t delay_ns);

/* The loop's io_uring (loop thread only; created on first use). Returns
 * NULL if the ring could not be created. */
struct io_uring *tw_loop_uring(tw_loop *l);

/* An SQE for the caller to fill (user_data must be a tw_uring_req*), or
 * NULL when the SQ is full even after a submit. Submission happens after
 * the messages and pollers of an iteration, and again after its
 * completions and timers if they ran: SQEs prepared together go to the
 * kernel together. */
struct io_uring_sqe *tw_loop_sqe(tw_loop *l);

/* True on the loop's own thread (the one that polls it). */
bool tw_loop_on_thread(const tw_loop *l);

/* Counters for tw-stat and tests. */
struct tw_loop_stats {
	uint64_t iterations, busy_iterations, sleeps, wakeups_posted;
	uint64_t msgs, timers_fired, cqes;
	uint64_t pin_failures; /* opts.cpu given but the pinning failed */
	uint64_t lends; /* waits a borrower polled (tw_loop_borrow_until) */
};
void tw_loop_get_stats(const tw_loop *l, struct tw_loop_stats *s);

#ifdef __cplusplus
}
#endif
#endif
