/* Unit tests for rpc/executor.c: runs, a bounded queue, stop answers all. */
#include <criterion/criterion.h>

#include "dataplane/util.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "rpc/executor.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Liveness bound for every wait: only a stuck executor reaches it. */
#define WAIT_NS (UINT64_C(20) * 1000000000u)

struct job {
	struct exec_job base;
	const struct executor *e;
	_Atomic int runs, drops;
	_Atomic int on_thread; /* executor_on_thread(e) inside run */
	_Atomic int *gate;     /* run waits while *gate == 0 */
	_Atomic int *started;  /* run counts itself here first */
};

static _Atomic int total_runs, total_drops;

static void job_run(struct exec_job *j)
{
	struct job *x = container_of(j, struct job, base);
	if (x->started != NULL)
		atomic_fetch_add(x->started, 1);
	if (x->gate != NULL)
		while (atomic_load(x->gate) == 0)
			sched_yield();
	atomic_store(&x->on_thread, executor_on_thread(x->e));
	atomic_fetch_add(&x->runs, 1);
	atomic_fetch_add(&total_runs, 1);
}

static void job_drop(struct exec_job *j)
{
	struct job *x = container_of(j, struct job, base);
	atomic_fetch_add(&x->drops, 1);
	atomic_fetch_add(&total_drops, 1);
}

static struct job *jobs_new(size_t n, const struct executor *e)
{
	struct job *j = calloc(n, sizeof(*j));
	cr_assert_not_null(j);
	for (size_t i = 0; i < n; i++) {
		j[i].base.run = job_run;
		j[i].base.drop = job_drop;
		j[i].e = e;
	}
	return j;
}

static bool wait_for(_Atomic int *v, int want)
{
	uint64_t dl = now_ns() + WAIT_NS;
	while (atomic_load(v) < want && now_ns() < dl)
		sched_yield();
	return atomic_load(v) >= want;
}

Test(executor, create_refuses_bad_arguments)
{
	struct executor *e = (struct executor *)1;
	cr_assert_eq(executor_create(0, 16, "x", &e), TW_EINVAL);
	cr_assert_null(e, "no executor on failure");
	cr_assert_neq(executor_create(1, 12, "x", &e), TW_OK,
		      "a queue size that is not a power of two");
	cr_assert_null(e);
	executor_destroy(NULL); /* accepted */
	executor_stop(NULL);
	cr_assert_not(executor_on_thread(NULL));
}

/* Many jobs on several threads: each runs exactly once, on one of the
 * executor's threads, and none is dropped. */
Test(executor, every_job_runs_once_on_an_executor_thread)
{
	enum { N = 2000 };
	struct executor *e;
	cr_assert_eq(executor_create(3, 4096, "tw-test-exec", &e), TW_OK);
	struct job *j = jobs_new(N, e);
	atomic_store(&total_runs, 0);
	for (int i = 0; i < N; i++)
		cr_assert_eq(executor_submit(e, &j[i].base), TW_OK, "job %d",
			     i);
	cr_assert(wait_for(&total_runs, N), "%d of %d ran",
		  atomic_load(&total_runs), N);
	cr_assert_not(executor_on_thread(e), "the test thread is not one");
	executor_destroy(e);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(atomic_load(&j[i].runs), 1, "job %d ran %d times",
			     i, atomic_load(&j[i].runs));
		cr_assert_eq(atomic_load(&j[i].drops), 0, "job %d dropped", i);
		cr_assert(atomic_load(&j[i].on_thread),
			  "job %d: not on an "
			  "executor thread",
			  i);
	}
	free(j);
}

/* Another executor's thread is not this one's. */
Test(executor, on_thread_is_per_executor)
{
	struct executor *a, *b;
	cr_assert_eq(executor_create(1, 8, "a", &a), TW_OK);
	cr_assert_eq(executor_create(1, 8, "b", &b), TW_OK);
	struct job *j = jobs_new(1, b);
	atomic_store(&total_runs, 0);
	cr_assert_eq(executor_submit(a, &j[0].base), TW_OK);
	cr_assert(wait_for(&total_runs, 1));
	executor_destroy(a);
	executor_destroy(b);
	cr_assert_not(atomic_load(&j[0].on_thread),
		      "a's thread claims to be b's");
	free(j);
}

/* One thread held in a job: the queue takes exactly its capacity, then
 * refuses with TW_ENOSPC (the job stays the caller's: never run, never
 * dropped); released, every accepted job runs. */
Test(executor, full_queue_refuses)
{
	enum { Q = 8 };
	struct executor *e;
	cr_assert_eq(executor_create(1, Q, "x", &e), TW_OK);
	_Atomic int gate = 0, started = 0;
	struct job *j = jobs_new(Q + 2, e);
	j[0].gate = &gate;
	j[0].started = &started;
	atomic_store(&total_runs, 0);
	cr_assert_eq(executor_submit(e, &j[0].base), TW_OK);
	cr_assert(wait_for(&started, 1), "the first job never started");
	for (int i = 1; i <= Q; i++)
		cr_assert_eq(executor_submit(e, &j[i].base), TW_OK, "job %d",
			     i);
	cr_assert_eq(executor_submit(e, &j[Q + 1].base), TW_ENOSPC);
	atomic_store(&gate, 1);
	cr_assert(wait_for(&total_runs, Q + 1));
	/* room again */
	cr_assert_eq(executor_submit(e, &j[Q + 1].base), TW_OK);
	cr_assert(wait_for(&total_runs, Q + 2));
	executor_destroy(e);
	for (int i = 0; i < Q + 2; i++)
		cr_assert_eq(atomic_load(&j[i].runs), 1, "job %d", i);
	free(j);
}

struct stopper {
	struct executor *e;
	_Atomic int done;
};

static void *stop_main(void *arg)
{
	struct stopper *s = arg;
	executor_stop(s->e);
	atomic_store(&s->done, 1);
	return NULL;
}

/*
 * stop() while a job runs and others wait in the queue: submits from then
 * on are refused with TW_ESHUTDOWN, stop waits for the running job, and
 * every job the executor took is answered exactly once, run or dropped.
 * (executor.h says the queued ones are dropped; the threads in fact run
 * what is queued before they exit, so only a job that slips in behind
 * them is dropped. Either answers it.)
 */
Test(executor, stop_answers_every_job)
{
	enum { Q = 16, MORE = 64 };
	struct executor *e;
	cr_assert_eq(executor_create(1, Q, "x", &e), TW_OK);
	_Atomic int gate = 0, started = 0;
	struct job *j = jobs_new(1 + Q + MORE, e);
	j[0].gate = &gate;
	j[0].started = &started;
	atomic_store(&total_runs, 0);
	atomic_store(&total_drops, 0);
	cr_assert_eq(executor_submit(e, &j[0].base), TW_OK);
	cr_assert(wait_for(&started, 1));
	int taken = 1;
	for (int i = 1; i <= Q / 2; i++, taken++)
		cr_assert_eq(executor_submit(e, &j[i].base), TW_OK);
	struct stopper s = {.e = e};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, stop_main, &s), 0);
	/* Until stop has begun, a submit may still be taken (or find the
	 * queue full); from then on it is refused. */
	tw_status st = TW_OK;
	int next = taken;
	uint64_t dl = now_ns() + WAIT_NS;
	while (now_ns() < dl) {
		cr_assert_lt(next, 1 + Q + MORE, "stop never began");
		st = executor_submit(e, &j[next].base);
		if (st == TW_ESHUTDOWN)
			break;
		cr_assert(st == TW_OK || st == TW_ENOSPC, "%d", st);
		if (st == TW_OK)
			next++;
	}
	cr_assert_eq(st, TW_ESHUTDOWN);
	taken = next;
	cr_assert_eq(atomic_load(&s.done), 0, "stop returned while a job ran");
	atomic_store(&gate, 1);
	pthread_join(th, NULL);
	cr_assert_eq(executor_submit(e, &j[taken].base), TW_ESHUTDOWN,
		     "after stop");
	executor_stop(e); /* idempotent */
	executor_destroy(e);
	for (int i = 0; i < 1 + Q + MORE; i++) {
		int runs = atomic_load(&j[i].runs);
		int drops = atomic_load(&j[i].drops);
		if (i < taken)
			cr_assert_eq(runs + drops, 1,
				     "job %d: %d runs, %d drops", i, runs,
				     drops);
		else
			cr_assert_eq(runs + drops, 0, "refused job %d answered",
				     i);
	}
	cr_assert_eq(atomic_load(&j[0].runs), 1, "the running job finished");
	cr_log_info("stop: %d queued jobs run, %d dropped",
		    atomic_load(&total_runs) - 1, atomic_load(&total_drops));
	free(j);
}

/* destroy with nothing ever submitted, and with the threads asleep on
 * their condition variable: both return (threads joined). */
Test(executor, destroy_idle)
{
	struct executor *e;
	cr_assert_eq(executor_create(4, 8, NULL, &e), TW_OK);
	struct timespec ts = {0, 20 * 1000 * 1000};
	nanosleep(&ts, NULL); /* let them go to sleep */
	executor_destroy(e);
}

/* ---- nice ---- */

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

struct nice_job {
	struct exec_job base;
	_Atomic int nice; /* the running thread's, -100 until it ran */
};

static void nice_run(struct exec_job *j)
{
	struct nice_job *x = container_of(j, struct nice_job, base);
	errno = 0;
	int n = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
	atomic_store(&x->nice, errno == 0 ? n : -99);
}

static void nice_drop(struct exec_job *j)
{
	(void)j;
}

Test(executor, set_nice_lowers_the_threads_priority)
{
	struct executor *e;
	cr_assert_eq(executor_create(1, 8, "nice", &e), TW_OK);
	cr_assert_eq(executor_set_nice(e, -1), TW_EINVAL);
	cr_assert_eq(executor_set_nice(e, 20), TW_EINVAL);
	errno = 0;
	int base = getpriority(PRIO_PROCESS, 0);
	cr_assert_eq(errno, 0);
	int want = base + 5 > 19 ? 19 : base + 5;
	cr_assert_eq(executor_set_nice(e, want), TW_OK);
	struct nice_job j = {.base = {.run = nice_run, .drop = nice_drop},
			     .nice = -100};
	cr_assert_eq(executor_submit(e, &j.base), TW_OK);
	uint64_t t0 = now_ns();
	while (atomic_load(&j.nice) == -100 && now_ns() - t0 < WAIT_NS)
		sched_yield();
	cr_assert_eq(atomic_load(&j.nice), want);
	/* The submitting thread keeps its own. */
	cr_assert_eq(getpriority(PRIO_PROCESS, 0), base);
	executor_destroy(e);
}
