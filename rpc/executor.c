/* Executor pool: threads running blocking handlers off the run loops. */
#include "rpc/executor.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/err.h"
#include "dataplane/ring.h"

struct executor {
	tw_ring *q;
	uint32_t nthreads;
	pthread_t *threads;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	_Atomic uint32_t sleepers;
	_Atomic int stopping;
	_Atomic uint32_t submitting; /* submits between check and enqueue */
	int stopped;                 /* under lock: stop ran to completion */
	_Atomic int nice;            /* executor_set_nice */
	char name[16];
};

static _Thread_local const struct executor *tls_exec;

int executor_on_thread(const struct executor *e)
{
	return e != NULL && tls_exec == e;
}

static struct exec_job *take(struct executor *e)
{
	void *j;
	if (tw_ring_mc_dequeue_burst(e->q, &j, 1, NULL) == 1)
		return j;
	return NULL;
}

static void *exec_main(void *arg)
{
	struct executor *e = arg;
	tls_exec = e;
	int nice = 0; /* this thread's, as created */
	for (;;) {
		struct exec_job *j = take(e);
		if (j != NULL) {
			int want = atomic_load_explicit(&e->nice,
							memory_order_relaxed);
			if (__builtin_expect(want != nice, 0)) {
				/* Per thread on Linux (the tid): raising it
				 * needs no privilege. */
				(void)setpriority(PRIO_PROCESS,
						  (id_t)syscall(SYS_gettid),
						  want);
				nice = want;
			}
			j->run(j);
			continue;
		}
		if (atomic_load(&e->stopping))
			break;
		pthread_mutex_lock(&e->lock);
		/* Announce the sleep, then look again: a producer enqueues
		 * and then reads sleepers (both seq_cst), so either it sees
		 * us or we see its job (Dekker). */
		atomic_fetch_add(&e->sleepers, 1);
		if (tw_ring_count(e->q) == 0 && !atomic_load(&e->stopping)) {
			/* A bounded wait, in case a wake-up is ever lost. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&e->cond, &e->lock, &ts);
		}
		atomic_fetch_sub(&e->sleepers, 1);
		pthread_mutex_unlock(&e->lock);
	}
	return NULL;
}

tw_status executor_create(uint32_t nthreads, uint32_t qsize, const char *name,
			  struct executor **out)
{
	*out = NULL;
	if (nthreads == 0)
		return tw_fail_static(TW_EINVAL, "the executor needs at least "
						 "one thread");
	struct executor *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return tw_fail_static(TW_ENOMEM, "out of memory for the "
						 "executor");
	tw_status st = tw_ring_create(qsize, TW_RING_F_MPMC, &e->q);
	if (st != TW_OK) {
		free(e);
		return tw_fail_wrap(st, st,
				    "cannot create the executor's "
				    "queue of %u jobs",
				    qsize);
	}
	e->threads = calloc(nthreads, sizeof(pthread_t));
	if (e->threads == NULL) {
		tw_ring_free(e->q);
		free(e);
		return tw_fail(TW_ENOMEM,
			       "out of memory for %u executor "
			       "threads",
			       nthreads);
	}
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	snprintf(e->name, sizeof(e->name), "%s", name ? name : "tw-exec");
	for (uint32_t i = 0; i < nthreads; i++) {
		int rc = pthread_create(&e->threads[i], NULL, exec_main, e);
		if (rc != 0) {
			e->nthreads = i;
			executor_destroy(e);
			return tw_fail(TW_ENOMEM,
				       "cannot start executor thread "
				       "%u of %u: %s",
				       i + 1, nthreads, strerror(rc));
		}
		e->nthreads = i + 1;
		char tname[32];
		snprintf(tname, sizeof(tname), "%.11s-%u", e->name, i);
		tname[15] = '\0'; /* the kernel keeps 15 characters */
		pthread_setname_np(e->threads[i], tname);
	}
	*out = e;
	return TW_OK;
}

tw_status executor_set_nice(struct executor *e, int nice)
{
	if (nice < 0 || nice > 19)
		return tw_fail(TW_EINVAL,
			       "executor nice must be 0 .. 19 (lower "
			       "priority only), got %d",
			       nice);
	atomic_store(&e->nice, nice);
	return TW_OK;
}

tw_status executor_submit(struct executor *e, struct exec_job *j)
{
	/* Counted so that stop, which waits for the count to drop, never
	 * drains the queue while an enqueue is still on its way in. */
	atomic_fetch_add(&e->submitting, 1);
	if (atomic_load(&e->stopping)) {
		atomic_fetch_sub(&e->submitting, 1);
		return tw_fail_static(TW_ESHUTDOWN, "the executor is stopping");
	}
	void *p = j;
	unsigned n = tw_ring_mp_enqueue_bulk(e->q, &p, 1, NULL);
	atomic_fetch_sub(&e->submitting, 1);
	if (n != 1)
		return tw_fail_static(TW_ENOSPC,
				      "the executor's queue is full");
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load(&e->sleepers) > 0) {
		pthread_mutex_lock(&e->lock);
		pthread_cond_signal(&e->cond);
		pthread_mutex_unlock(&e->lock);
	}
	return TW_OK;
}

void executor_stop(struct executor *e)
{
	if (e == NULL)
		return;
	pthread_mutex_lock(&e->lock);
	if (e->stopped) {
		pthread_mutex_unlock(&e->lock);
		return;
	}
	atomic_store(&e->stopping, 1);
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	while (atomic_load(&e->submitting) != 0)
		sched_yield();
	for (uint32_t i = 0; i < e->nthreads; i++)
		pthread_join(e->threads[i], NULL);
	e->nthreads = 0;
	struct exec_job *j;
	while ((j = take(e)) != NULL)
		j->drop(j);
	pthread_mutex_lock(&e->lock);
	e->stopped = 1;
	pthread_mutex_unlock(&e->lock);
}

void executor_destroy(struct executor *e)
{
	if (e == NULL)
		return;
	executor_stop(e);
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->cond);
	free(e->threads);
	tw_ring_free(e->q);
	free(e);
}

uint32_t executor_queued(const struct executor *e)
{
	return e == NULL ? 0 : tw_ring_count(e->q);
}
