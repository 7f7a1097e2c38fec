/* Run loop: owns one core's message ring, pollers, timer wheel and io_uring,
 * the iteration that drives them, and the idle policy (spin, then sleep on
 * the ring until a post, a completion or the next timer). */
#include "dataplane/loop.h"

#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/clock.h"
#include "dataplane/ring.h"
#include "dataplane/wait.h"

#define CACHE_LINE 64u

#define DEFAULT_NAME "tw-loop"
#define DEFAULT_RING_SIZE 4096u
#define DEFAULT_BATCH 64u
#define DEFAULT_SPIN_NS 200000u
#define DEFAULT_TICK_NS 1000000u
#define DEFAULT_URING_ENTRIES 512u

/* CQEs handled per iteration at most, so a flood of completions cannot
 * starve messages and timers. */
#define MAX_CQES_PER_ITER 256u

/* Longest sleep when the eventfd read could not be armed. */
#define UNARMED_NAP_NS 1000000u

/* Linux thread names hold 15 characters and the NUL. */
#define NAME_LEN 16

/*
 * Ring setups, best first; the first the kernel accepts wins.
 *
 * DEFER_TASKRUN|SINGLE_ISSUER runs completion task_work only when we ask
 * (io_uring_get_events, or a wait), so a spinning loop is never hit by the
 * TWA_SIGNAL IPI that makes spinning on a default ring cost 27 us round
 * trips (limits README, pitfall 3). TASKRUN_FLAG on top makes the kernel
 * raise IORING_SQ_TASKRUN when it has deferred work for us, so an idle spin
 * reads one shared word instead of making the get_events syscall every
 * iteration (checked on 6.18: the flag is set under DEFER_TASKRUN and
 * cleared when the work runs). Kernels that refuse that combination get
 * DEFER without the flag and pay the syscall; older ones get
 * COOP_TASKRUN|TASKRUN_FLAG, then the default ring. SUBMIT_ALL keeps one
 * bad SQE from stranding the rest of the batch. Never SQPOLL: with more
 * pollers than cores its thread makes things worse (pitfall 4).
 */
static const unsigned ring_setups[] = {
	IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
	IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		IORING_SETUP_SUBMIT_ALL,
	IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
		IORING_SETUP_SUBMIT_ALL,
	IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
	IORING_SETUP_SUBMIT_ALL,
	0,
};

enum uring_state {
	URING_NONE,   /* not created yet: the first polling thread does it */
	URING_READY,  /* created, bound to the owner thread */
	URING_FAILED, /* the kernel refused every setup: sleep with ppoll */
};

/* Counters: written only by whoever runs the loop's iterations (its thread,
 * or a borrower holding drive: one at a time), with a relaxed load and
 * store, no locked instruction; read by anyone through tw_loop_get_stats. */
struct loop_counters {
	_Atomic uint64_t iterations, busy_iterations, sleeps;
	_Atomic uint64_t msgs, timers_fired, cqes, pin_failures;
	_Atomic uint64_t lends; /* borrows that polled (by the holder) */
};

struct tw_loop {
	/* Loop thread only. */
	uint64_t now;
	tw_clock_fn clock;
	void *clock_ctx;
	tw_ring *ring;
	void **msgs; /* batch slots for one dequeue */
	uint32_t batch;
	bool in_poll; /* guards against a nested poll */
	/* The last iteration's only work was timers firing (nothing
	 * arrived, nothing was posted, the pollers found nothing after
	 * them): no reason to spin on. A periodic timer (the DPDK port's
	 * idle wake, the agent's watch) would otherwise restart the idle
	 * spin at every tick and keep an idle loop busy. */
	bool timers_only;
	bool yield;
	int cpu;
	uint64_t spin_ns;
	uint32_t uring_entries;
	TAILQ_HEAD(, tw_poller) pollers;
	struct tw_poller *poller_next; /* iteration cursor (see remove) */

	enum uring_state uring_state;
	unsigned uring_flags;   /* the setup the kernel accepted */
	bool get_events_always; /* DEFER without TASKRUN_FLAG */
	struct io_uring uring;

	/* The eventfd read armed while sleeping; it is how a post wakes us. */
	struct tw_uring_req efd_req;
	uint64_t efd_val;
	bool efd_armed;

	struct tw_timer_wheel wheel;
	struct loop_counters st;

	/* The polling thread, recorded at first poll; read by any thread in
	 * tw_loop_on_thread after the release store of owner_set. */
	pthread_t owner;
	_Atomic bool owner_set;

	/* The thread of tw_loop_start; touched by the controlling thread. */
	pthread_t thread;
	bool started;
	_Atomic bool threaded; /* started: borrowers may come (read by them) */

	/* Holder of drive only (tw_loop_borrow_until): the holder is a
	 * borrower, which must not enter the ring (its thread is not the
	 * one the ring is bound to); need_owner: it left the loop's thread
	 * work only that thread can do (SQEs to submit). */
	bool lent;
	bool need_owner;
	char name[NAME_LEN];

	/* Read by every poster: on its own line so that the loop's hot
	 * writes above do not bounce it between cores. The loop writes
	 * sleeping only around a sleep. */
	alignas(CACHE_LINE) _Atomic int sleeping;
	_Atomic bool stop;
	int efd;
	_Atomic uint64_t wakeups_posted;

	/*
	 * Lending (threaded loops). Whoever runs iterations holds drive: the
	 * loop's thread, or a borrower, a thread waiting for something only
	 * this loop can complete that polls the loop itself meanwhile
	 * (tw_loop_borrow_until). want counts borrowers that wait for drive
	 * or hold it; the loop's thread, seeing it non-zero between two
	 * iterations, lets drive go and parks (drive_take) until they are
	 * gone and a short linger has passed. It holds no drive while
	 * asleep in the kernel either.
	 */
	_Atomic uint32_t want;
	_Atomic uint32_t drive;    /* 0 free, 1 held */
	_Atomic uint32_t parked;   /* the loop's thread waits in park() */
	_Atomic uint32_t kicked;   /* it must look at the loop now */
	_Atomic uint32_t park_seq; /* futex word of park(): kicks bump it */
	/* After a borrower leaves, the loop's thread stays parked until
	 * this (tw_now_ns), unless kicked (see LINGER_NS). */
	_Atomic uint64_t linger_until;
	_Atomic uint64_t linger_left; /* when that borrower left */
	/* The last borrower's thread (the address of its tls_me), and the
	 * one polling the loop now (0: none). */
	_Atomic uintptr_t borrower;
	_Atomic uintptr_t borrowing;
	/* tw_loop_reclaim: no more lending; borrowers leave. */
	_Atomic bool reclaimed;
};

/* A thread's identity for tw_loop_lent_to_me: the address of its own
 * copy of this (no syscall, unlike gettid). */
static _Thread_local char tls_me;

static inline void count(_Atomic uint64_t *c, uint64_t n)
{
	/* Single writer: a plain read-modify-write is exact. */
	atomic_store_explicit(c,
			      atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t tw_clock_monotonic(void *ctx)
{
	(void)ctx;
	return tw_now_ns();
}

/* Whether field f of struct tw_loop_opts lies within the caller's size:
 * callers built against an older, shorter struct keep working (as SPDK's
 * opts_size). */
#define OPT_FITS(size, f)                                                      \
	(offsetof(struct tw_loop_opts, f) +                                    \
		 sizeof(((struct tw_loop_opts *)0)->f) <=                      \
	 (size))

void tw_loop_opts_init(struct tw_loop_opts *o, size_t opts_size)
{
	if (o == NULL || opts_size == 0)
		return;
	memset(o, 0, opts_size < sizeof(*o) ? opts_size : sizeof(*o));
#define SET(f, v)                                                              \
	do {                                                                   \
		if (OPT_FITS(opts_size, f))                                    \
			o->f = (v);                                            \
	} while (0)
	SET(opts_size, opts_size);
	SET(name, NULL);
	SET(cpu, -1);
	SET(ring_size, DEFAULT_RING_SIZE);
	SET(batch, DEFAULT_BATCH);
	SET(spin_ns, DEFAULT_SPIN_NS);
	SET(yield, false);
	SET(tick_ns, DEFAULT_TICK_NS);
	SET(uring_entries, DEFAULT_URING_ENTRIES);
	SET(clock, NULL);
	SET(clock_ctx, NULL);
#undef SET
}

/* The caller's options over our defaults, reading only what fits in its
 * opts_size. */
static void opts_copy(struct tw_loop_opts *dst, const struct tw_loop_opts *src)
{
	tw_loop_opts_init(dst, sizeof(*dst));
	if (src == NULL)
		return;
	size_t size = src->opts_size;
#define GET(f)                                                                 \
	do {                                                                   \
		if (OPT_FITS(size, f))                                         \
			dst->f = src->f;                                       \
	} while (0)
	GET(name);
	GET(cpu);
	GET(ring_size);
	GET(batch);
	GET(spin_ns);
	GET(yield);
	GET(tick_ns);
	GET(uring_entries);
	GET(clock);
	GET(clock_ctx);
#undef GET
	dst->opts_size = sizeof(*dst);
}

static void efd_done(struct tw_uring_req *r, struct io_uring_cqe *cqe);

tw_status tw_loop_create(const struct tw_loop_opts *o, tw_loop **out)
{
	if (out == NULL)
		return TW_EINVAL;
	*out = NULL;
	if (o != NULL && o->opts_size == 0)
		return TW_EINVAL; /* not initialised with tw_loop_opts_init */

	struct tw_loop_opts opts;
	opts_copy(&opts, o);
	/* Zero means "default" for the sizes, as in tw_loop_opts_init. */
	if (opts.ring_size == 0)
		opts.ring_size = DEFAULT_RING_SIZE;
	if (opts.batch == 0)
		opts.batch = DEFAULT_BATCH;
	if (opts.tick_ns == 0)
		opts.tick_ns = DEFAULT_TICK_NS;
	if (opts.uring_entries == 0)
		opts.uring_entries = DEFAULT_URING_ENTRIES;
	/* The ring takes a power of two and we do not round: the caller gets
	 * exactly the backpressure point it asked for. */
	if (tw_ring_memsize(opts.ring_size) == 0)
		return TW_EINVAL;

	size_t sz = (sizeof(tw_loop) + CACHE_LINE - 1) &
		    ~(size_t)(CACHE_LINE - 1);
	tw_loop *l = aligned_alloc(CACHE_LINE, sz);
	if (l == NULL)
		return TW_ENOMEM;
	memset(l, 0, sizeof(*l));
	TAILQ_INIT(&l->pollers);
	l->efd = -1;
	l->clock = opts.clock != NULL ? opts.clock : tw_clock_monotonic;
	l->clock_ctx = opts.clock_ctx;
	l->batch = opts.batch;
	l->yield = opts.yield;
	l->cpu = opts.cpu;
	l->spin_ns = opts.spin_ns;
	l->uring_entries = opts.uring_entries;
	l->efd_req.fn = efd_done;
	snprintf(l->name, sizeof(l->name), "%s",
		 opts.name != NULL ? opts.name : DEFAULT_NAME);
	atomic_init(&l->sleeping, 0);
	atomic_init(&l->stop, false);
	atomic_init(&l->owner_set, false);
	atomic_init(&l->wakeups_posted, 0);
	l->now = l->clock(l->clock_ctx);

	tw_status st = TW_ENOMEM;
	l->msgs = calloc(l->batch, sizeof(*l->msgs));
	if (l->msgs == NULL)
		goto fail;
	st = tw_ring_create(opts.ring_size, TW_RING_F_MPSC, &l->ring);
	if (st != TW_OK)
		goto fail;
	st = tw_timer_wheel_init(&l->wheel, opts.tick_ns, 0, l->now);
	if (st != TW_OK)
		goto fail_ring;
	/* Blocking on purpose: io_uring honours O_NONBLOCK on a read by
	 * completing it with -EAGAIN instead of waiting for a post. */
	l->efd = eventfd(0, EFD_CLOEXEC);
	if (l->efd < 0) {
		st = errno == ENOMEM ? TW_ENOMEM : TW_EIO;
		goto fail_wheel;
	}
	*out = l;
	return TW_OK;

fail_wheel:
	tw_timer_wheel_fini(&l->wheel);
fail_ring:
	tw_ring_free(l->ring);
fail:
	free(l->msgs);
	free(l);
	return st;
}

/* The thread that first polls (or first uses the ring) owns the loop. */
static inline void bind_owner(tw_loop *l)
{
	if (atomic_load_explicit(&l->owner_set, memory_order_relaxed))
		return;
	l->owner = pthread_self();
	/* Release: pairs with the acquire in tw_loop_on_thread, so whoever
	 * sees owner_set also sees owner. */
	atomic_store_explicit(&l->owner_set, true, memory_order_release);
}

bool tw_loop_on_thread(const tw_loop *l)
{
	return atomic_load_explicit(&l->owner_set, memory_order_acquire) &&
	       pthread_equal(l->owner, pthread_self());
}

/* Create the ring on the calling thread: DEFER_TASKRUN|SINGLE_ISSUER bind
 * it to the task that creates it, which must be the one that polls. */
static void uring_setup(tw_loop *l)
{
	bind_owner(l);
	for (size_t i = 0; i < sizeof(ring_setups) / sizeof(ring_setups[0]);
	     i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		p.flags = ring_setups[i];
		if (io_uring_queue_init_params(l->uring_entries, &l->uring,
					       &p) != 0)
			continue;
		l->uring_flags = p.flags;
		l->get_events_always = (p.flags & IORING_SETUP_DEFER_TASKRUN) &&
				       !(p.flags & IORING_SETUP_TASKRUN_FLAG);
		/* Saves the fd table lookup on every io_uring_enter; a
		 * refusal (old kernel, or a task out of slots) costs only
		 * that. */
		(void)io_uring_register_ring_fd(&l->uring);
		l->uring_state = URING_READY;
		return;
	}
	l->uring_state = URING_FAILED;
}

struct io_uring *tw_loop_uring(tw_loop *l)
{
	if (__builtin_expect(l->uring_state == URING_NONE, 0))
		uring_setup(l);
	return l->uring_state == URING_READY ? &l->uring : NULL;
}

struct io_uring_sqe *tw_loop_sqe(tw_loop *l)
{
	struct io_uring *r = tw_loop_uring(l);
	if (r == NULL)
		return NULL;
	if (__builtin_expect(l->lent, 0)) {
		/* A borrower may fill SQEs but not submit them: the loop's
		 * thread will, once the borrower sees need_owner and gives
		 * the loop back. Full: NULL, as a refused ring. */
		l->need_owner = true;
		return io_uring_get_sqe(r);
	}
	struct io_uring_sqe *sqe = io_uring_get_sqe(r);
	if (__builtin_expect(sqe == NULL, 0)) {
		/* Full: hand what is queued to the kernel to make room. */
		io_uring_submit(r);
		sqe = io_uring_get_sqe(r);
	}
	return sqe;
}

static void efd_done(struct tw_uring_req *r, struct io_uring_cqe *cqe)
{
	tw_loop *l = (tw_loop *)((char *)r - offsetof(tw_loop, efd_req));
	(void)cqe;
	/* The read consumed the counter: that is the drain. Re-armed at the
	 * next sleep. */
	l->efd_armed = false;
}

/* Reap completions. Returns the number of user CQEs handled (the loop's
 * own eventfd read is not work). */
static int reap(tw_loop *l)
{
	struct io_uring *ring = &l->uring;

	/* Deferred task_work becomes CQEs only when we ask. With
	 * TASKRUN_FLAG (DEFER or COOP) the kernel tells us through sq flags
	 * whether there is any, and an overflowed CQ must be flushed too. */
	unsigned kflags = IO_URING_READ_ONCE(*ring->sq.kflags);
	/* A borrower may take what the CQ holds (plain memory), but not
	 * enter the ring: owner_work sends it away when there is more. */
	if (!l->lent &&
	    (l->get_events_always ||
	     (kflags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW))))
		io_uring_get_events(ring);

	int work = 0;
	unsigned head, seen = 0;
	struct io_uring_cqe *cqe;
	io_uring_for_each_cqe(ring, head, cqe) {
		struct tw_uring_req *req = (struct tw_uring_req *)(uintptr_t)
			io_uring_cqe_get_data64(cqe);
		seen++;
		if (req != NULL) {
			req->fn(req, cqe);
			if (req != &l->efd_req)
				work++;
		}
		if (seen == MAX_CQES_PER_ITER)
			break;
	}
	if (seen != 0)
		io_uring_cq_advance(ring, seen);
	if (work != 0)
		count(&l->st.cqes, (uint64_t)work);
	return work;
}

/* The cursor lets a poller remove itself or the next one. */
static int run_pollers(tw_loop *l)
{
	int work = 0;
	for (struct tw_poller *p = TAILQ_FIRST(&l->pollers); p != NULL;
	     p = l->poller_next) {
		l->poller_next = TAILQ_NEXT(p, link);
		int r = p->fn(p->arg);
		if (r > 0)
			work += r;
	}
	l->poller_next = NULL;
	return work;
}

int tw_loop_poll_once(tw_loop *l)
{
	if (__builtin_expect(l->in_poll, 0))
		return 0; /* called from inside an iteration: not reentrant */
	if (__builtin_expect(l->uring_state == URING_NONE, 0))
		uring_setup(l);
	l->in_poll = true;

	l->now = l->clock(l->clock_ctx);
	int work = 0;

	/* Messages first: a message often prepares SQEs that the submit
	 * below sends in this same iteration. */
	unsigned n = tw_ring_sc_dequeue_burst(l->ring, l->msgs, l->batch, NULL);
	for (unsigned i = 0; i < n; i++) {
		struct tw_loop_msg *m = l->msgs[i];
		m->fn(m);
	}
	if (n != 0) {
		work += (int)n;
		count(&l->st.msgs, n);
	}

	work += run_pollers(l);

	int reaped = 0;
	if (l->uring_state == URING_READY) {
		/* SQEs prepared by messages and pollers leave together (a
		 * borrower's wait for the loop's thread: owner_work). */
		if (!l->lent && io_uring_sq_ready(&l->uring) != 0)
			io_uring_submit(&l->uring);
		/* Not under the loop's thread asleep in the ring: it waits
		 * for the CQ to hold a completion, and one a borrower took
		 * (the eventfd read's, say) would leave it waiting for a
		 * wake nothing can deliver any more. It leaves the ring once
		 * it sees the completion, and parks: reaped then. */
		if (!l->lent || atomic_load_explicit(&l->sleeping,
						     memory_order_seq_cst) == 0)
			reaped = reap(l);
		work += reaped;
	}

	unsigned fired = tw_timer_wheel_advance(&l->wheel, l->now);
	if (fired != 0) {
		work += (int)fired;
		count(&l->st.timers_fired, fired);
	}

	/*
	 * Completion and timer callbacks queue work for the pollers too,
	 * above all a reply (a call is served from its receive completion).
	 * Left for the next iteration it would wait a whole loop turn, on
	 * every round trip: flush and submit it now. Idle iterations skip
	 * this.
	 */
	if ((reaped | (int)fired) != 0) {
		work += run_pollers(l);
		if (l->uring_state == URING_READY && !l->lent &&
		    io_uring_sq_ready(&l->uring) != 0)
			io_uring_submit(&l->uring);
	}

	count(&l->st.iterations, 1);
	if (work != 0)
		count(&l->st.busy_iterations, 1);
	l->timers_only = fired != 0 && work == (int)fired;
	l->in_poll = false;
	return work;
}

/* Wake a loop that is (or is about to be) asleep. The eventfd counter
 * persists, so a write that lands before the read is armed still wakes the
 * next sleep at once: no wakeup can be lost, only a spare one spent. */
static void wake(tw_loop *l)
{
	uint64_t one = 1;
	ssize_t w;
	do
		w = write(l->efd, &one, sizeof(one));
	while (w < 0 && errno == EINTR);
	atomic_fetch_add_explicit(&l->wakeups_posted, 1, memory_order_relaxed);
}

tw_status tw_loop_post_own(tw_loop *l, struct tw_loop_msg *m)
{
	void *obj = m;
	/* The ring's release store publishes m to our own next dequeue (and
	 * keeps other producers' slots consistent); no one needs waking. */
	if (tw_ring_mp_enqueue_bulk(l->ring, &obj, 1, NULL) == 0)
		return TW_ENOSPC;
	return TW_OK;
}

static void loop_kick(tw_loop *l);
static void linger_more(tw_loop *l);

/* Lazy posts a lingering loop holds before its thread is woken for them:
 * a pipelining caller's waits send them in batches (tw_loop_batch_waiting
 * from LAZY_BATCH on), but one that posts and does not wait must not fill
 * the ring (LAZY_MAX) nor wait long (LAZY_LINGER_NS past the borrow). */
#define LAZY_BATCH 16u
#define LAZY_MAX 64u
#define LAZY_LINGER_NS 200000u

static tw_status post(tw_loop *l, struct tw_loop_msg *m, bool lazy)
{
	if (tw_loop_post_own(l, m) != TW_OK)
		return TW_ENOSPC;
	/*
	 * Dekker edge, poster side (the loop side is in sleep_once): our
	 * enqueue (the release store of prod.tail) must be ordered before
	 * the load of sleeping. A release store and a later load may
	 * otherwise pass each other (StoreLoad), so the fence. Paired with
	 * the loop's seq_cst store of sleeping and its fence before it
	 * rechecks the ring: either the loop's recheck sees our message, or
	 * our load sees sleeping == 1 and we write the eventfd. An awake
	 * loop costs us this fence and one shared load, never a syscall.
	 */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&l->sleeping, memory_order_seq_cst)) {
		wake(l);
		return TW_OK;
	}
	if (atomic_load_explicit(&l->want, memory_order_seq_cst) != 0)
		return TW_OK; /* a borrower polls, or is about to */
	/* Lingering after a borrower left: the loop's thread parks on
	 * even with messages in its ring. Ours would wait out the linger,
	 * unless it is lazy: its poster borrows next. The same fence orders
	 * our enqueue before these loads (the borrower's side: its leave,
	 * which stores linger_until before it lowers want). */
	if (atomic_load_explicit(&l->linger_until, memory_order_relaxed) == 0 &&
	    atomic_load_explicit(&l->parked, memory_order_seq_cst) == 0)
		return TW_OK; /* awake: it polls */
	if (lazy && tw_ring_count(l->ring) < LAZY_MAX)
		linger_more(l); /* its poster comes back: keep lingering */
	else
		loop_kick(l);
	return TW_OK;
}

tw_status tw_loop_post(tw_loop *l, struct tw_loop_msg *m)
{
	return post(l, m, false);
}

tw_status tw_loop_post_lazy(tw_loop *l, struct tw_loop_msg *m)
{
	return post(l, m, true);
}

/* Sleep with no io_uring: ppoll on the eventfd, then drain it. */
static void sleep_ppoll(tw_loop *l, uint64_t ns)
{
	struct pollfd pfd = {.fd = l->efd, .events = POLLIN};
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
			      .tv_nsec = (long)(ns % 1000000000u)};
	if (ppoll(&pfd, 1, ns == UINT64_MAX ? NULL : &ts, NULL) > 0 &&
	    (pfd.revents & POLLIN)) {
		uint64_t v;
		/* POLLIN: the counter is non-zero and we are its only
		 * reader, so this blocking read returns at once. */
		ssize_t r = read(l->efd, &v, sizeof(v));
		(void)r;
	}
}

/* Sleep until a post, a completion, the next timer or max_ns (real time,
 * UINT64_MAX = no limit), whichever comes first. Returns at once when work
 * is already waiting. */
static void drive_take(tw_loop *l);
static void drive_give(tw_loop *l);

static void sleep_once(tw_loop *l, uint64_t max_ns, bool drop)
{
	uint64_t ns = tw_timer_wheel_next(&l->wheel, l->now);
	if (max_ns < ns)
		ns = max_ns;
	if (ns == 0)
		return;

	/*
	 * Dekker edge, loop side (the poster side is in tw_loop_post):
	 * publish sleeping before looking at the ring one last time. The
	 * fence orders the store before the ring's acquire loads
	 * (StoreLoad). Either a poster's fence comes first in the total
	 * order and our recheck sees its enqueue, or ours comes first and
	 * its load of sleeping sees 1, so it writes the eventfd, which the
	 * read armed below consumes (even if the write lands first).
	 * tw_loop_stop writes the eventfd unconditionally.
	 */
	atomic_store_explicit(&l->sleeping, 1, memory_order_seq_cst);
	atomic_thread_fence(memory_order_seq_cst);
	if (!tw_ring_empty(l->ring) ||
	    atomic_load_explicit(&l->stop, memory_order_relaxed)) {
		atomic_store_explicit(&l->sleeping, 0, memory_order_relaxed);
		return;
	}

	struct tw_poller *p;
	TAILQ_FOREACH(p, &l->pollers, link)
	if (p->idle != NULL)
		p->idle(p->arg);
	count(&l->st.sleeps, 1);
	if (l->uring_state != URING_READY) {
		if (drop)
			drive_give(l);
		sleep_ppoll(l, ns);
	} else {
		if (!l->efd_armed) {
			struct io_uring_sqe *sqe = tw_loop_sqe(l);
			if (sqe != NULL) {
				io_uring_prep_read(sqe, l->efd, &l->efd_val,
						   sizeof(l->efd_val), 0);
				io_uring_sqe_set_data64(
					sqe, (uint64_t)(uintptr_t)&l->efd_req);
				l->efd_armed = true;
			}
		}
		/* No read armed (the kernel would not take one): a post
		 * could not wake us, so only nap, then look again. */
		if (!l->efd_armed && ns > UNARMED_NAP_NS)
			ns = UNARMED_NAP_NS;
		struct __kernel_timespec ts = {
			.tv_sec = (long long)(ns / 1000000000u),
			.tv_nsec = (long long)(ns % 1000000000u),
		};
		struct io_uring_cqe *cqe;
		if (drop && (l->uring.features & IORING_FEAT_EXT_ARG)) {
			/* A threaded loop sleeps without drive, so that a
			 * borrower need not wake it to poll. What the SQ holds
			 * goes first; the wait then touches only the CQ side,
			 * which a borrower only reads (with EXT_ARG the timeout
			 * is an argument, not an SQE). */
			if (io_uring_sq_ready(&l->uring) != 0)
				(void)io_uring_submit(&l->uring);
			drive_give(l);
			(void)io_uring_wait_cqe_timeout(
				&l->uring, &cqe, ns == UINT64_MAX ? NULL : &ts);
		} else {
			drop = false;
			/* Submits whatever callbacks prepared since the last
			 * submit, then waits for one CQE: -ETIME and -EINTR
			 * are just wakes. */
			(void)io_uring_submit_and_wait_timeout(
				&l->uring, &cqe, 1,
				ns == UINT64_MAX ? NULL : &ts, NULL);
		}
	}
	/* Relaxed: a poster that still sees 1 only spends a spare eventfd
	 * write; one that sees 0 relies on our next poll, which follows. */
	atomic_store_explicit(&l->sleeping, 0, memory_order_relaxed);
	if (drop)
		drive_take(l);
}

/* Real time for the idle policy: a fake loop clock must not stretch or
 * freeze a spin or a poll_wait timeout. */
static inline uint64_t real_now(const tw_loop *l)
{
	return l->clock == tw_clock_monotonic ? l->now
					      : tw_clock_monotonic(NULL);
}

/* Poll until work (returns it) or timeout_ns of real time passes; spin
 * spin_ns after the last work, then sleep. */
static int wait_for_work(tw_loop *l, uint64_t timeout_ns)
{
	uint64_t start = 0, deadline = UINT64_MAX;
	bool first = true;
	for (;;) {
		int work = tw_loop_poll_once(l);
		if (work > 0)
			return work;
		uint64_t now = real_now(l);
		if (first) {
			start = now;
			deadline = sat_add(now, timeout_ns);
			first = false;
		}
		if (now >= deadline)
			return 0;
		if (now - start < l->spin_ns) {
			/* Another poller on this core (pitfall 9) gets the
			 * CPU now rather than at the next scheduler tick. */
			if (l->yield)
				sched_yield();
			continue;
		}
		sleep_once(l,
			   deadline == UINT64_MAX ? UINT64_MAX : deadline - now,
			   false);
	}
}

int tw_loop_poll_wait(tw_loop *l, uint64_t timeout_ns)
{
	return wait_for_work(l, timeout_ns);
}

bool tw_loop_in_poll(const tw_loop *l)
{
	return l->in_poll;
}

bool tw_loop_poll_until(tw_loop *l, bool (*done)(void *arg), void *arg,
			uint64_t timeout_ns, uint64_t max_sleep_ns)
{
	if (done(arg))
		return true;
	if (l->in_poll)
		return false;
	uint64_t idle_since = 0, deadline = UINT64_MAX;
	bool first = true;
	for (;;) {
		int work = tw_loop_poll_once(l);
		if (done(arg))
			return true;
		uint64_t now = real_now(l);
		if (first) {
			deadline = sat_add(now, timeout_ns);
			idle_since = now;
			first = false;
		}
		if (now >= deadline)
			return false;
		if (work > 0 && !l->timers_only) {
			idle_since = now;
			continue;
		}
		if (now - idle_since < l->spin_ns) {
			if (l->yield)
				sched_yield();
			continue;
		}
		uint64_t ns = deadline - now;
		sleep_once(l, ns < max_sleep_ns ? ns : max_sleep_ns, false);
	}
}

/* ---- lending ------------------------------------------------------------ */

/*
 * How long the loop's thread stays parked after a borrower leaves, unless
 * kicked (a post, work left for it). A caller making call after call
 * borrows again within microseconds: waking the loop's thread at every
 * leave, only to have it park again at the next borrow, cost two context
 * switches a call (a threaded no-op call went from 17 to 27 us). The price
 * is that what only a poll notices (bytes on a busy-polled connection,
 * completions) waits up to this long after a borrow.
 */
#define LINGER_NS 50000u
#define LINGER_MAX_NS 200000u

/* Sleep on park_seq while it is seq, at most ns. */
static void park(tw_loop *l, uint32_t seq, uint64_t ns)
{
	uint64_t until = tw_now_ns() + ns;
	struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
			      .tv_nsec = (long)(until % 1000000000u)};
	(void)tw_futex_wait_until(&l->park_seq, seq, &ts);
}

/*
 * The loop's thread takes drive (back). It parks while a borrower polls,
 * and for LINGER_NS after one leaves, unless kicked: a borrower never
 * wakes it on its way out (that wake, and the park at the next borrow,
 * were two context switches a call: a threaded no-op call went from 17
 * to 27 us), so a caller making call after call finds it still parked.
 * Nothing wakes it at the linger's end either: arming a timer for that
 * (timerfd_settime) costs ~9 us on these VMs (the guest programs its
 * timer through the hypervisor), more than the call. So it parks with a
 * timeout of its own, doubling from LINGER_NS to LINGER_MAX_NS while
 * borrowers keep it parked: each such wake costs it ~10 us, and what only
 * its polls notice (bytes on busy-polled connections, completions, timers)
 * waits at most LINGER_MAX_NS past the last borrower's linger.
 */
static void drive_take(tw_loop *l)
{
	uint64_t park_ns = LINGER_NS;
	for (;;) {
		if (atomic_exchange_explicit(&l->kicked, 0,
					     memory_order_seq_cst) != 0)
			atomic_store_explicit(&l->linger_until, 0,
					      memory_order_relaxed);
		uint32_t w = atomic_load_explicit(&l->want,
						  memory_order_seq_cst);
		uint64_t until = atomic_load_explicit(&l->linger_until,
						      memory_order_relaxed);
		if (w != 0 || (until != 0 && tw_now_ns() < until)) {
			/* Dekker with loop_kick (it raises kicked, bumps
			 * park_seq, then reads parked) and with posters (they
			 * enqueue, then read parked): we raise parked, then
			 * look at both; a kick after that bumps park_seq, and
			 * the futex returns at once. */
			uint32_t seq = atomic_load_explicit(
				&l->park_seq, memory_order_seq_cst);
			atomic_store_explicit(&l->parked, 1,
					      memory_order_seq_cst);
			/* want again, after parked: a borrower that left
			 * since (lingering, no kick) and a poster that saw us
			 * not parked yet leave their message to this look. */
			w = atomic_load_explicit(&l->want,
						 memory_order_seq_cst);
			/* Messages in the ring end the park unless they are
			 * lazy posts of a linger's borrower (it comes back for
			 * them): other posters kick a lingering loop. */
			until = atomic_load_explicit(&l->linger_until,
						     memory_order_relaxed);
			if (atomic_load_explicit(&l->kicked,
						 memory_order_seq_cst) != 0 ||
			    (w == 0 && !tw_ring_empty(l->ring) &&
			     (until == 0 || tw_now_ns() >= until))) {
				atomic_store_explicit(&l->parked, 0,
						      memory_order_relaxed);
				atomic_store_explicit(&l->linger_until, 0,
						      memory_order_relaxed);
				continue;
			}
			park(l, seq, park_ns);
			atomic_store_explicit(&l->parked, 0,
					      memory_order_relaxed);
			if (park_ns < LINGER_MAX_NS)
				park_ns *= 2;
			continue;
		}
		uint32_t z = 0;
		/* Acquire: what the last borrower did to the loop is ours. */
		if (atomic_compare_exchange_weak_explicit(
			    &l->drive, &z, 1, memory_order_acquire,
			    memory_order_relaxed)) {
			atomic_store_explicit(&l->linger_until, 0,
					      memory_order_relaxed);
			return;
		}
		tw_cpu_pause();
	}
}

/* Release: our iterations' writes are visible to the next holder. */
static void drive_give(tw_loop *l)
{
	atomic_store_explicit(&l->drive, 0, memory_order_release);
}

/* The loop thread's life: iterations under drive; between two, drive goes
 * to borrowers that want it; spin spin_ns after the last work, then sleep
 * (without drive). */
static void thread_run(tw_loop *l)
{
	uint64_t idle_since = 0;
	bool idle = false;
	drive_take(l);
	/* Acquire: pairs with the seq_cst store in tw_loop_stop (whatever the
	 * stopper did before is visible to our last iteration). */
	while (!atomic_load_explicit(&l->stop, memory_order_acquire)) {
		if (__builtin_expect(
			    atomic_load_explicit(&l->want,
						 memory_order_relaxed) != 0,
			    0)) {
			drive_give(l);
			drive_take(l);
			idle = false;
			continue;
		}
		if (tw_loop_poll_once(l) > 0 && !l->timers_only) {
			idle = false;
			continue;
		}
		uint64_t now = real_now(l);
		if (!idle) {
			idle = true;
			idle_since = now;
		}
		if (now - idle_since < l->spin_ns) {
			/* Another poller on this core (pitfall 9) gets the
			 * CPU now rather than at the next scheduler tick. */
			if (l->yield)
				sched_yield();
			continue;
		}
		sleep_once(l, UINT64_MAX, true);
	}
	drive_give(l);
}

/* Work a borrower must leave to the loop's thread: SQEs it prepared, and
 * completions only that thread can have the kernel post (deferred task
 * work, an overflowed CQ). What the CQ holds the borrower reaps. */
static bool owner_work(tw_loop *l)
{
	if (l->need_owner)
		return true;
	if (l->uring_state != URING_READY)
		return false;
	if (io_uring_sq_ready(&l->uring) != 0)
		return true;
	/* Asleep in the ring, the loop's thread is woken by that work and
	 * posts it before it comes for the loop (and parks, as we hold it):
	 * keep polling meanwhile. */
	return (IO_URING_READ_ONCE(*l->uring.sq.kflags) &
		(IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) != 0 &&
	       atomic_load_explicit(&l->sleeping, memory_order_relaxed) == 0;
}

/* Wake the loop's thread wherever it waits: parked on want, or asleep on
 * its ring. */
static void loop_kick(tw_loop *l)
{
	atomic_store_explicit(&l->kicked, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&l->parked, memory_order_seq_cst) != 0) {
		atomic_fetch_add_explicit(&l->park_seq, 1,
					  memory_order_seq_cst);
		tw_futex_wake(&l->park_seq, 1);
	}
	if (atomic_load_explicit(&l->sleeping, memory_order_seq_cst) != 0)
		wake(l);
}

/* A borrower leaves without a kick: the loop's thread lingers parked. */
static void linger(tw_loop *l)
{
	uint64_t now = tw_now_ns();
	atomic_store_explicit(&l->linger_left, now, memory_order_relaxed);
	atomic_store_explicit(&l->linger_until, now + LINGER_NS,
			      memory_order_relaxed);
}

/* A lazy post keeps a linger going, up to LAZY_LINGER_NS past the borrow
 * it follows; never one the loop's thread ended (it took drive and
 * cleared linger_until: a linger set again then would hold up the posts
 * of others at its next park). */
static void linger_more(tw_loop *l)
{
	uint64_t u = atomic_load_explicit(&l->linger_until,
					  memory_order_relaxed);
	if (u == 0)
		return;
	uint64_t want = tw_now_ns() + LINGER_NS;
	uint64_t cap = atomic_load_explicit(&l->linger_left,
					    memory_order_relaxed) +
		       LAZY_LINGER_NS;
	if (want > cap)
		want = cap;
	if (want > u)
		(void)atomic_compare_exchange_strong_explicit(
			&l->linger_until, &u, want, memory_order_relaxed,
			memory_order_relaxed);
}

/* The earliest armed timer's deadline (loop clock), UINT64_MAX if none. */
static uint64_t wheel_deadline(const tw_loop *l)
{
	return sat_add(l->now, tw_timer_wheel_next(&l->wheel, l->now));
}

static bool loop_closing(const tw_loop *l)
{
	return atomic_load_explicit(&l->stop, memory_order_relaxed) ||
	       atomic_load_explicit(&l->reclaimed, memory_order_relaxed);
}

/* How long a borrower waits for the loop's thread to let drive go, and to
 * leave its ring; after how long it yields the CPU while it waits. */
#define BORROW_TAKE_NS 20000u
#define OUT_OF_RING_NS 200000u
#define BORROW_TAKE_HOT_NS 2000u

/* A borrower's bounded spin: spin_on pauses and, every 32 steps, looks at
 * the clock: false once limit_ns have passed since spin_start (or the
 * deadline has); past BORROW_TAKE_HOT_NS it yields the CPU, which the
 * thread it waits for may need. */
struct spin {
	uint64_t t0;
	unsigned i;
};

static struct spin spin_start(void)
{
	return (struct spin){.t0 = tw_now_ns()};
}

static bool spin_on(struct spin *s, uint64_t limit_ns, uint64_t deadline_ns)
{
	tw_cpu_pause();
	if ((++s->i & 31) != 0)
		return true;
	uint64_t t = tw_now_ns();
	if (t - s->t0 >= limit_ns || t >= deadline_ns)
		return false;
	if (t - s->t0 >= BORROW_TAKE_HOT_NS)
		sched_yield();
	return true;
}

/*
 * Under drive: the loop's thread must not be asleep in its ring while we
 * poll. There (DEFER_TASKRUN) the kernel runs the ring's deferred work,
 * a multishot recv's reads among it, concurrently with our direct reads
 * of the same socket: bytes came out of order (a reviewer's stress test,
 * TW_EPROTO in 5 runs of 8). It cannot go back to sleep while we hold
 * drive (the sleep is prepared under it), so once it is out it stays
 * out. Wake it (it then parks, as we hold drive) and wait for that; false
 * if it takes too long.
 */
static bool owner_out_of_ring(tw_loop *l)
{
	if (atomic_load_explicit(&l->sleeping, memory_order_seq_cst) == 0)
		return true;
	wake(l);
	struct spin sp = spin_start();
	while (atomic_load_explicit(&l->sleeping, memory_order_seq_cst) != 0)
		if (!spin_on(&sp, OUT_OF_RING_NS, UINT64_MAX))
			return false;
	return true;
}

/* How a borrow runs (borrow()). */
enum {
	BORROW_ONCE = 1u << 0,   /* one iteration, whatever done says */
	BORROW_MODEST = 1u << 1, /* leave when another borrower wants it */
};

/* tw_loop_borrow_until, as flags say. */
static bool borrow(tw_loop *l, bool (*done)(void *arg), void *arg,
		   uint64_t deadline_ns, unsigned flags)
{
	if (!atomic_load_explicit(&l->threaded, memory_order_acquire) ||
	    atomic_load_explicit(&l->reclaimed, memory_order_acquire))
		return false;
	atomic_fetch_add_explicit(&l->want, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&l->borrower, memory_order_relaxed) !=
	    (uintptr_t)&tls_me)
		atomic_store_explicit(&l->borrower, (uintptr_t)&tls_me,
				      memory_order_relaxed);
	bool got = false;
	struct spin sp = spin_start();
	for (;;) {
		uint32_t z = 0;
		if (atomic_compare_exchange_weak_explicit(
			    &l->drive, &z, 1, memory_order_acquire,
			    memory_order_relaxed)) {
			got = true;
			break;
		}
		if (done(arg) || !spin_on(&sp, BORROW_TAKE_NS, deadline_ns))
			break;
	}
	bool kick = !got; /* the loop's thread may be parked for us */
	if (got) {
		/* Under drive: the loop's thread has made its ring (it does
		 * so at its first iteration), and is not stopping. Without
		 * TASKRUN_FLAG we could not tell when the kernel holds
		 * completions for the loop's thread: no lending. */
		if (l->uring_state != URING_NONE && !l->get_events_always &&
		    !loop_closing(l) && owner_out_of_ring(l) &&
		    !owner_work(l)) {
			uint64_t next0 = wheel_deadline(l);
			l->lent = true;
			atomic_store_explicit(&l->borrowing, (uintptr_t)&tls_me,
					      memory_order_relaxed);
			count(&l->st.lends, 1);
			uint64_t idle_since = tw_now_ns();
			while (!done(arg)) {
				int work = tw_loop_poll_once(l);
				if ((flags & BORROW_ONCE) || owner_work(l) ||
				    done(arg) || loop_closing(l))
					break;
				if ((flags & BORROW_MODEST) &&
				    atomic_load_explicit(
					    &l->want, memory_order_relaxed) > 1)
					break;
				uint64_t now = tw_now_ns();
				if (now >= deadline_ns)
					break;
				if (work > 0 && !l->timers_only)
					idle_since = now;
				else if (now - idle_since >= l->spin_ns)
					break;
				else if (l->yield)
					sched_yield();
			}
			atomic_store_explicit(&l->borrowing, 0,
					      memory_order_relaxed);
			l->lent = false;
			/* A timer due before the sleep the loop's thread may
			 * be in was computed for: it must look again now. */
			kick = wheel_deadline(l) < next0;
		} else {
			kick = true; /* not ours to run: the thread's */
		}
		/* Work left for the loop's thread: it must come now. */
		kick = kick || owner_work(l);
		l->need_owner = false;
		if (!kick)
			linger(l);
		drive_give(l);
	}
	/* Dekker with posters (tw_loop_post): we lower want, then look at
	 * the ring; a poster enqueues, then reads want. Either we see its
	 * message (and kick), or it sees us gone and kicks the lingering
	 * loop itself. */
	atomic_fetch_sub_explicit(&l->want, 1, memory_order_seq_cst);
	if (kick || !tw_ring_empty(l->ring))
		loop_kick(l);
	return done(arg);
}

bool tw_loop_borrow_until(tw_loop *l, bool (*done)(void *arg), void *arg,
			  uint64_t deadline_ns)
{
	return done(arg) || borrow(l, done, arg, deadline_ns, 0);
}

bool tw_loop_serve_until(tw_loop *l, bool (*done)(void *arg), void *arg,
			 uint64_t deadline_ns)
{
	return done(arg) || borrow(l, done, arg, deadline_ns, BORROW_MODEST);
}

static bool never(void *arg)
{
	(void)arg;
	return false;
}

bool tw_loop_batch_waiting(const tw_loop *l)
{
	return tw_loop_lent_to_me(l) &&
	       atomic_load_explicit(&l->linger_until, memory_order_relaxed) !=
		       0 &&
	       tw_ring_count(l->ring) >= LAZY_BATCH &&
	       atomic_load_explicit(&l->want, memory_order_relaxed) == 0;
}

void tw_loop_borrow_once(tw_loop *l)
{
	(void)borrow(l, never, NULL, tw_now_ns() + BORROW_TAKE_HOT_NS,
		     BORROW_ONCE);
}

void tw_loop_reclaim(tw_loop *l)
{
	atomic_store_explicit(&l->reclaimed, true, memory_order_seq_cst);
	/* Borrowers see it after their current iteration; one waiting for
	 * drive gives up within BORROW_TAKE_NS. */
	while (atomic_load_explicit(&l->want, memory_order_seq_cst) != 0)
		sched_yield();
}

bool tw_loop_lent_to_me(const tw_loop *l)
{
	return atomic_load_explicit(&l->borrower, memory_order_relaxed) ==
	       (uintptr_t)&tls_me;
}

static void *loop_main(void *arg)
{
	tw_loop *l = arg;
	if (l->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		if (l->cpu >= CPU_SETSIZE) {
			count(&l->st.pin_failures, 1);
		} else {
			CPU_SET(l->cpu, &set);
			/* Unpinned still works, only slower and noisier:
			 * counted, not fatal (a container may forbid it). */
			if (pthread_setaffinity_np(pthread_self(), sizeof(set),
						   &set) != 0)
				count(&l->st.pin_failures, 1);
		}
	}
	thread_run(l);
	/* The registration lives in this task's io_uring context and can
	 * only be undone from here; destroy runs on another thread. */
	if (l->uring_state == URING_READY)
		(void)io_uring_unregister_ring_fd(&l->uring);
	return NULL;
}

tw_status tw_loop_start(tw_loop *l)
{
	/* One thread polls a loop for its whole life: its ring is bound to
	 * that thread. So no start after a stop or after embedded polling. */
	if (l->started ||
	    atomic_load_explicit(&l->owner_set, memory_order_acquire))
		return TW_EBUSY;
	if (pthread_create(&l->thread, NULL, loop_main, l) != 0)
		return TW_ENOMEM;
	/* Best effort: the name only helps top and gdb. */
	(void)pthread_setname_np(l->thread, l->name);
	l->started = true;
	atomic_store_explicit(&l->threaded, true, memory_order_release);
	return TW_OK;
}

tw_status tw_loop_stop(tw_loop *l)
{
	if (!l->started)
		return TW_OK;
	if (pthread_equal(l->thread, pthread_self()) ||
	    atomic_load_explicit(&l->borrowing, memory_order_relaxed) ==
		    (uintptr_t)&tls_me)
		return TW_EINVAL; /* would join itself, or wait for itself */
	atomic_store_explicit(&l->threaded, false, memory_order_release);
	atomic_store_explicit(&l->stop, true, memory_order_seq_cst);
	/* Unconditional: stop is rare, and the eventfd counter makes the
	 * write count whatever the loop is doing (see wake). */
	wake(l);
	loop_kick(l); /* parked (lending) */
	pthread_join(l->thread, NULL);
	l->started = false;
	return TW_OK;
}

void tw_loop_destroy(tw_loop *l)
{
	if (l == NULL)
		return;
	(void)tw_loop_stop(l);
	/* Closing the ring cancels what is still in flight (the eventfd
	 * read among it). Messages still queued are the posters'. */
	if (l->uring_state == URING_READY)
		io_uring_queue_exit(&l->uring);
	if (l->efd >= 0)
		close(l->efd);
	tw_timer_wheel_fini(&l->wheel);
	tw_ring_free(l->ring);
	free(l->msgs);
	free(l);
}

void tw_loop_add_poller(tw_loop *l, struct tw_poller *p)
{
	if (p->registered_)
		return;
	/* Appended, so pollers run in registration order. One added from inside an iteration runs in
	 * that iteration if the cursor has not yet passed the old tail. */
	TAILQ_INSERT_TAIL(&l->pollers, p, link);
	p->registered_ = true;
}

void tw_loop_remove_poller(tw_loop *l, struct tw_poller *p)
{
	if (!p->registered_)
		return;
	/* Removed while the iteration's cursor points at it: step the
	 * cursor past it. */
	if (l->poller_next == p)
		l->poller_next = TAILQ_NEXT(p, link);
	TAILQ_REMOVE(&l->pollers, p, link);
	p->registered_ = false;
}

uint64_t tw_loop_now(const tw_loop *l)
{
	return l->now;
}

uint64_t tw_loop_clock(const tw_loop *l)
{
	return l->clock(l->clock_ctx);
}

struct tw_timer_wheel *tw_loop_timers(tw_loop *l)
{
	return &l->wheel;
}

void tw_loop_timer_after(tw_loop *l, struct tw_timer *t, uint64_t delay_ns)
{
	/* Relative to the iteration's clock reading: cheap, and the same
	 * instant for everything armed in one iteration. */
	tw_timer_arm(&l->wheel, t, sat_add(l->now, delay_ns));
}

void tw_loop_get_stats(const tw_loop *l, struct tw_loop_stats *s)
{
#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
	s->iterations = LD(l->st.iterations);
	s->busy_iterations = LD(l->st.busy_iterations);
	s->sleeps = LD(l->st.sleeps);
	s->wakeups_posted = LD(l->wakeups_posted);
	s->msgs = LD(l->st.msgs);
	s->timers_fired = LD(l->st.timers_fired);
	s->cqes = LD(l->st.cqes);
	s->pin_failures = LD(l->st.pin_failures);
	s->lends = LD(l->st.lends);
#undef LD
}
