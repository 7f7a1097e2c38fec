/* Internal: the executor pool for handlers registered TW_FN_BLOCKING. A
 * bounded MPMC ring of jobs and N threads that sleep on a condition
 * variable when it is empty (blocking work tolerates the ~25 us wake-up;
 * an executor spinning would steal a loop's core). */
#ifndef TW_RPC_EXECUTOR_H
#define TW_RPC_EXECUTOR_H

#include <stdint.h>

#include <tensorwire/status.h>

/* Embed in the job object; run or drop is called exactly once. */
struct exec_job {
	void (*run)(struct exec_job *j);  /* on an executor thread */
	void (*drop)(struct exec_job *j); /* at destroy, for jobs never run */
};

struct executor;

/* nthreads >= 1; qsize a power of two. Failures record their reason
 * (tw_errmsg): tw_agent_init passes it on. */
tw_status executor_create(uint32_t nthreads, uint32_t qsize, const char *name,
			  struct executor **out);

/* Run e's threads at this nice value (0 .. 19: lower priority only, so
 * no privilege is needed; TW_EINVAL otherwise, with a reason): each
 * thread takes it before its next job. Where executor threads and run
 * loops share cores, a positive value lets the loops win the CPU. */
tw_status executor_set_nice(struct executor *e, int nice);

/* Queue j from any thread. TW_ENOSPC when the queue is full (j is still
 * the caller's), TW_ESHUTDOWN after executor_stop began; with a reason
 * (tw_fail_static: no formatting on this path). */
tw_status executor_submit(struct executor *e, struct exec_job *j);

/* Stop accepting (executor_submit: TW_ESHUTDOWN), let the threads run
 * every job already queued to its end, join them, then drop (j->drop)
 * what a submitter racing with the stop queued behind them. So a stop
 * waits for all queued blocking work. Idempotent. */
void executor_stop(struct executor *e);

/* Stop (if not yet) and free. NULL is ignored. */
void executor_destroy(struct executor *e);

/* Jobs queued and not yet taken by a thread (snapshot; any thread). */
uint32_t executor_queued(const struct executor *e);

/* True on one of e's threads. */
int executor_on_thread(const struct executor *e);

#endif
