/* Work for the Python worker threads: calls of functions served in Python
 * and futures' callbacks. A run loop (or whichever thread completes a
 * future) only queues a job, never takes the GIL; the workers, blocked in
 * _C._next_job with the GIL released, take them. Bounded: a peer's calls
 * past TWPY_MAX_JOBS are refused (TW_EBUSY), not queued. */
#include "_tw.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TWPY_MAX_JOBS 65536u

/*
 * After its last job, one worker at a time polls the queue this long,
 * yielding the CPU between looks, before it sleeps: a call that comes
 * within it costs the loop no futex wake and the worker no wake-up (on
 * these VMs tens of us when it needs a context switch), and the loop and
 * the worker take turns on one CPU instead of spinning against each other.
 */
#define TWPY_SPIN_NS 100000

/*
 * Workers run one at a time where they can (they share one GIL; waking
 * more for a queue one of them drains only makes them fight for it): a
 * sleeper is woken only when no worker is free to take a job. A worker
 * that blocks in a tensorwire wait (a nested call) lets another take the
 * queue at once; one that blocks anywhere else (time.sleep, a lock) holds
 * the queue up at most TWPY_STALL_NS: a monitor thread (no GIL) wakes a
 * sleeper when jobs wait and none was taken for that long, and a worker
 * that used no CPU for that long gives up its turn (stalled) until it runs
 * again, so the jobs behind it do not each wait for the monitor. It looks
 * every TWPY_STALL_NS while jobs came in the last TWPY_IDLE_NS, else sleeps.
 */
#define TWPY_STALL_NS 1000000
/* Jobs that waited this long get another worker even while the running
 * ones use the CPU (a long UDF computing with the GIL released). */
#define TWPY_BUSY_NS 5000000
#define TWPY_IDLE_NS 20000000

enum { JOB_CALL = 1, JOB_CB = 2 };

struct pyfn {
	PyObject *fn; /* a reference, kept for the process's life */
	char name[];
};

struct job {
	struct job *next;
	int kind;
	/* JOB_CALL */
	struct pyfn *fn;
	tw_value args, kwargs; /* owned copies */
	tw_future *out;
	uint32_t caller;
	/* JOB_CB: cb(fut) */
	PyObject *cb, *fut;
	/* JOB_CALL in an autograd envelope (docs/autograd.md): its
	 * metadata, the mask copied into mask[] */
	bool has_ag;
	int64_t ag_ctx, ag_msg;
	uint32_t mask_len;
	uint8_t mask[];
};

static pthread_mutex_t qmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcv = PTHREAD_COND_INITIALIZER;
static struct job *qhead, **qtail = &qhead;
static uint32_t qlen;
static bool qopen;
static uint32_t nsleep;        /* workers in pthread_cond_wait */
static _Atomic uint32_t nrun;  /* workers running a job, not blocked in
				    * a tensorwire wait (under qmu; read
				    * without it by the spinner) */
static uint32_t permits;       /* more may run: the monitor's, for a stall */
static uint32_t nawake;        /* workers neither asleep nor blocked
				    * in a tensorwire wait */
static uint64_t last_take;     /* when a worker last took a job */
static uint64_t last_push;     /* when a job last came */
static pthread_cond_t mcv;     /* the monitor sleeps on it */
static bool mon_up, mon_armed; /* it runs; it looks every STALL_NS */
static pthread_t mon;
static _Thread_local bool tls_running, tls_blocked;

/* A worker thread, as the monitor sees it (under qmu). Kept for the
 * process's life: at most num_worker_threads per init_rpc. */
struct worker {
	struct worker *next;
	clockid_t clk;     /* its CPU-time clock */
	uint64_t gen;      /* the init it belongs to */
	bool running;      /* running a job, not blocked in a tensorwire wait */
	bool stalled;      /* running, but blocked elsewhere (no CPU used): not
			    * counted in nrun and nawake (the monitor's) */
	uint64_t since;    /* when it last became running */
	uint64_t cpu_seen; /* its CPU time at the monitor's last look */
	uint64_t seen_at;  /* when that look was */
};
static struct worker *workers;
static uint64_t jobs_gen;
static _Thread_local struct worker *tls_worker;
static _Atomic uint32_t qpeek; /* qlen, for the spinner's lock-free looks */
static _Atomic bool spinner;   /* a worker polls the queue */
static _Atomic bool qopenflag; /* qopen, for the spinner */

static uint64_t mono_ns(void);

static void deadline_in(struct timespec *ts, uint64_t ns)
{
	uint64_t t = mono_ns() + ns;
	ts->tv_sec = (time_t)(t / 1000000000u);
	ts->tv_nsec = (long)(t % 1000000000u);
}

/* Wakes a worker when queued jobs stall (see TWPY_STALL_NS). */
static void *monitor_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&qmu);
	while (qopen) {
		uint64_t now = mono_ns();
		if (qhead == NULL && now - last_push >= TWPY_IDLE_NS) {
			mon_armed = false;
			pthread_cond_wait(&mcv, &qmu);
			continue;
		}
		mon_armed = true;
		/* Stalled: jobs wait, none was taken for STALL_NS, and no
		 * running worker used the CPU meanwhile (blocked, not
		 * merely preempted: waking another would not help then). */
		bool ran = false, demoted = false;
		for (struct worker *w = workers; w != NULL; w = w->next) {
			if (w->gen != jobs_gen || !w->running)
				continue;
			struct timespec ts;
			if (clock_gettime(w->clk, &ts) != 0)
				continue;
			uint64_t cpu = (uint64_t)ts.tv_sec * 1000000000u +
				       (uint64_t)ts.tv_nsec;
			if (cpu - w->cpu_seen >= TWPY_STALL_NS / 10) {
				ran = true;
				if (w->stalled) { /* it runs again */
					w->stalled = false;
					nrun++;
					nawake++;
				}
			} else if (!w->stalled && w->seen_at >= w->since &&
				   now - w->since >= TWPY_STALL_NS) {
				/* Blocked outside tensorwire (a sleep, a
				 * lock, I/O) since the last look: it holds
				 * no turn until it runs again, or every job
				 * behind it would wait for a permit. */
				w->stalled = true;
				nrun--;
				nawake--;
				demoted = true;
			}
			w->cpu_seen = cpu;
			w->seen_at = now;
		}
		if (demoted && qhead != NULL && nsleep > 0 && nawake == 0)
			pthread_cond_signal(&qcv);
		if (qhead != NULL && nsleep > 0 && permits == 0 &&
		    ((now - last_take >= TWPY_STALL_NS && !ran) ||
		     now - last_take >= TWPY_BUSY_NS)) {
			permits = 1;
			pthread_cond_signal(&qcv);
		}
		struct timespec ts;
		deadline_in(&ts, TWPY_STALL_NS);
		pthread_cond_clockwait(&mcv, &qmu, CLOCK_MONOTONIC, &ts);
	}
	pthread_mutex_unlock(&qmu);
	return NULL;
}

/*
 * The agent's loop, lent to the worker that waits for the next job (the
 * spinner): it receives the calls itself, and the replies of the jobs it
 * ran leave with its next poll (tw_lender_flush before a job, or its
 * next wait), so that a call served in Python needs no hand-off between
 * threads. Set by twpy_jobs_lend once the agent runs; released by the
 * next twpy_jobs_open, when the workers that used it have gone.
 */
static tw_lender *lender;

void twpy_jobs_lend(tw_lender *h)
{
	lender = h;
}

void twpy_jobs_open(void)
{
	tw_lender_release(lender);
	lender = NULL;
	pthread_mutex_lock(&qmu);
	jobs_gen++;
	nawake = 0; /* the last init's workers have all gone */
	nrun = 0;
	permits = 0;
	qopen = true;
	atomic_store(&qopenflag, true);
	pthread_mutex_unlock(&qmu);
	if (!mon_up) {
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&mcv, &ca);
		pthread_condattr_destroy(&ca);
		/* Without it a stalled queue waits for its worker: slower,
		 * not wrong. */
		mon_up = pthread_create(&mon, NULL, monitor_main, NULL) == 0;
	}
}

void twpy_jobs_close(void)
{
	pthread_mutex_lock(&qmu);
	qopen = false;
	atomic_store(&qopenflag, false);
	pthread_cond_broadcast(&qcv);
	if (mon_up)
		pthread_cond_signal(&mcv);
	pthread_mutex_unlock(&qmu);
	if (mon_up) {
		pthread_join(mon, NULL);
		pthread_cond_destroy(&mcv);
		mon_up = false;
	}
}

/* false when closed or full: the job is still the caller's. */
static bool push(struct job *j, bool bounded)
{
	pthread_mutex_lock(&qmu);
	bool ok = qopen && (!bounded || qlen < TWPY_MAX_JOBS);
	if (ok) {
		j->next = NULL;
		*qtail = j;
		qtail = &j->next;
		qlen++;
		atomic_store_explicit(&qpeek, qlen, memory_order_release);
		last_push = mono_ns();
		/* An awake worker (spinning, or when done with its job) takes
		 * it; with none, a sleeper. */
		if (nsleep > 0 && nawake == 0)
			pthread_cond_signal(&qcv);
		if (mon_up && !mon_armed)
			pthread_cond_signal(&mcv);
	}
	pthread_mutex_unlock(&qmu);
	return ok;
}

static void job_free_nogil(struct job *j)
{
	tw_value_destroy(&j->args);
	tw_value_destroy(&j->kwargs);
	if (j->out != NULL)
		tw_future_release(j->out);
	free(j);
}

/* A call of a function served in Python: on the run loop, no GIL. */
static tw_status py_handler(tw_call_ctx *ctx, const tw_value *args,
			    const tw_value *kwargs, tw_value *result, void *arg)
{
	(void)result;
	/* The envelope is the handler's only while it runs: its mask is
	 * copied into the job, in the same allocation. */
	const tw_ag_meta *m = tw_call_ag(ctx);
	uint32_t mlen = m != NULL ? m->mask_len : 0;
	struct job *j = calloc(1, sizeof(*j) + mlen);
	if (j == NULL)
		return TW_ENOMEM;
	j->kind = JOB_CALL;
	if (m != NULL) {
		j->has_ag = true;
		j->ag_ctx = m->context_id;
		j->ag_msg = m->message_id;
		j->mask_len = mlen;
		if (mlen > 0)
			memcpy(j->mask, m->grad_mask, mlen);
	}
	j->fn = arg;
	j->caller = tw_call_caller(ctx);
	tw_status st = tw_value_clone(&j->args, args);
	if (st == TW_OK)
		st = tw_value_clone(&j->kwargs, kwargs);
	if (st == TW_OK)
		st = tw_future_create(&j->out);
	if (st != TW_OK) {
		job_free_nogil(j);
		return st;
	}
	tw_call_defer(ctx, j->out);
	if (!push(j, true)) {
		tw_future_fail(j->out, TW_EBUSY,
			       twpy_self_id(tw_call_agent(ctx)),
			       "the Python workers of this worker are "
			       "65536 calls behind, or shutting down");
		job_free_nogil(j);
	}
	return TW_OK;
}

/* A function served in Python under a schema: the agent bound the
 * arguments (defaults filled, in the schema's order); fn gets them as
 * positional arguments. */
static tw_status py_schema_handler(tw_call_ctx *ctx, const tw_value *bound,
				   uint32_t nbound, tw_value *result, void *arg)
{
	tw_value args, kwargs;
	tw_status st = tw_value_tuple(&args, nbound);
	for (uint32_t i = 0; st == TW_OK && i < nbound; i++) {
		tw_value c;
		st = tw_value_clone(&c, &bound[i]);
		if (st == TW_OK)
			tw_value_set_item(&args, i, c);
	}
	if (st == TW_OK)
		st = tw_value_dict(&kwargs, 0);
	else
		tw_value_destroy(&args);
	if (st != TW_OK)
		return st;
	st = py_handler(ctx, &args, &kwargs, result, arg);
	tw_value_destroy(&args);
	tw_value_destroy(&kwargs);
	return st;
}

tw_status twpy_serve(tw_agent *a, const char *name, PyObject *fn)
{
	size_t n = strlen(name);
	struct pyfn *p = malloc(sizeof(*p) + n + 1);
	if (p == NULL)
		return TW_ENOMEM;
	p->fn = fn;
	memcpy(p->name, name, n + 1);
	/* "ns::f(Tensor x, int n=2) -> Tensor": checked and bound by the
	 * agent before Python sees the call. */
	tw_status st =
		strchr(p->name, '(') != NULL
			? tw_agent_register_schema(a, p->name,
						   py_schema_handler, p, 0)
			: tw_agent_register(a, p->name, py_handler, p, 0);
	if (st != TW_OK)
		free(p); /* fn stays referenced: the caller's to drop */
	return st;
}

tw_status twpy_serve_ag_backward(tw_agent *a, PyObject *fn)
{
	static const char name[] = "tw::ag_backward";
	struct pyfn *p = malloc(sizeof(*p) + sizeof(name));
	if (p == NULL)
		return TW_ENOMEM;
	p->fn = fn;
	memcpy(p->name, name, sizeof(name));
	tw_status st = tw_ag_set_backward_handler(a, py_handler, p, 0);
	if (st != TW_OK)
		free(p);
	return st;
}

static void cb_ready(tw_future *f, void *arg)
{
	(void)f;
	struct job *j = arg;
	if (!push(j, false))
		free(j); /* shut down: the objects leak, the GIL is not ours */
}

int twpy_when_done(tw_future *f, PyObject *cb, PyObject *fut_obj)
{
	struct job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		PyErr_NoMemory();
		return -1;
	}
	j->kind = JOB_CB;
	Py_INCREF(cb);
	Py_INCREF(fut_obj);
	j->cb = cb;
	j->fut = fut_obj;
	if (tw_future_then(f, cb_ready, j) != TW_OK) {
		Py_DECREF(cb);
		Py_DECREF(fut_obj);
		free(j);
		PyErr_NoMemory();
		return -1;
	}
	return 0;
}

/* ---- the Job object a Python worker gets ---------------------------------- */

typedef struct {
	PyObject_HEAD struct job *j;
} pyjob;

static void pyjob_dealloc(PyObject *self)
{
	struct job *j = ((pyjob *)self)->j;
	if (j != NULL) {
		if (j->out != NULL && !tw_future_done(j->out))
			tw_future_fail(j->out, TW_ERUNTIME,
				       twpy_self_id(twpy_agent),
				       "the Python function's job was "
				       "dropped without an answer");
		Py_XDECREF(j->cb);
		Py_XDECREF(j->fut);
		job_free_nogil(j);
	}
	Py_TYPE(self)->tp_free(self);
}

static PyObject *pyjob_get(PyObject *self, void *which)
{
	struct job *j = ((pyjob *)self)->j;
	if (j == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "job already answered");
		return NULL;
	}
	const char *w = which;
	if (strcmp(w, "kind") == 0)
		return PyUnicode_FromString(j->kind == JOB_CALL ? "call"
								: "callback");
	if (strcmp(w, "fn") == 0) {
		PyObject *o = j->kind == JOB_CALL ? j->fn->fn : j->cb;
		Py_INCREF(o);
		return o;
	}
	if (strcmp(w, "name") == 0)
		return j->kind == JOB_CALL ? PyUnicode_FromString(j->fn->name)
					   : (Py_INCREF(Py_None), Py_None);
	if (strcmp(w, "caller") == 0)
		return PyLong_FromUnsignedLong(j->caller);
	if (strcmp(w, "ag") == 0) {
		if (!j->has_ag)
			Py_RETURN_NONE;
		return Py_BuildValue("(LLy#)", (long long)j->ag_ctx,
				     (long long)j->ag_msg,
				     (const char *)j->mask,
				     (Py_ssize_t)j->mask_len);
	}
	if (strcmp(w, "args") == 0) {
		if (j->kind == JOB_CB)
			return PyTuple_Pack(1, j->fut);
		return twpy_from_value(&j->args, TWPY_TORCH);
	}
	if (strcmp(w, "kwargs") == 0) {
		if (j->kind == JOB_CB)
			return PyDict_New();
		return twpy_from_value(&j->kwargs, TWPY_TORCH);
	}
	PyErr_SetString(PyExc_AttributeError, w);
	return NULL;
}

/* job.complete(value, ag=None): the call's result; ag (context_id,
 * message_id, grad_mask bytes): the answer's autograd envelope. */
static PyObject *pyjob_complete(PyObject *self, PyObject *args)
{
	PyObject *v, *ag = Py_None;
	if (!PyArg_ParseTuple(args, "O|O", &v, &ag))
		return NULL;
	struct job *j = ((pyjob *)self)->j;
	if (j == NULL || j->kind != JOB_CALL) {
		PyErr_SetString(PyExc_RuntimeError, "not an open call");
		return NULL;
	}
	tw_ag_meta m;
	if (ag != Py_None && twpy_ag_meta(ag, &m) < 0)
		return NULL;
	struct twpy_conv cv = {0};
	tw_value r;
	if (twpy_to_value(v, &r, &cv) < 0)
		return NULL;
	if (ag != Py_None) {
		/* m's mask is borrowed from ag, read (copied) here. */
		tw_status st = tw_future_set_ag(j->out, &m);
		if (st != TW_OK) {
			tw_value_destroy(&r);
			return twpy_raise_status(st);
		}
	}
	tw_future_complete(j->out, &r);
	((pyjob *)self)->j = NULL;
	job_free_nogil(j);
	Py_RETURN_NONE;
}

/* The answer of a job waiting for C futures (job.complete_when): its
 * last one to complete answers, None or the first failure's error. */
struct after {
	tw_future *out;
	_Atomic uint32_t left;
	_Atomic bool failed;
};

/* One of w's counts done: the last answers (None unless one failed). */
static void after_put(struct after *w)
{
	if (atomic_fetch_sub(&w->left, 1) != 1)
		return;
	if (!atomic_load(&w->failed)) {
		tw_value none = tw_value_none();
		tw_future_complete(w->out, &none);
	}
	tw_future_release(w->out);
	free(w);
}

static void after_fail(struct after *w, tw_status kind, uint32_t origin,
		       const char *msg)
{
	if (!atomic_exchange(&w->failed, true))
		tw_future_fail(w->out, kind, origin, msg);
}

static void after_one(tw_future *f, void *arg)
{
	struct after *w = arg;
	if (tw_future_status(f) != TW_OK) {
		const tw_error *e = tw_future_error(f);
		after_fail(w, e != NULL ? e->kind : TW_ERUNTIME,
			   e != NULL ? e->origin : 0,
			   e != NULL && e->msg != NULL ? e->msg : "");
	}
	after_put(w);
}

/* job.complete_when([CFuture, ...]): answer the call, with None, once
 * every one of them has completed, or with the first one's error: from
 * whichever thread completes the last, with no Python worker on the way
 * (distributed autograd's backward parts: docs/autograd.md). */
static PyObject *pyjob_complete_when(PyObject *self, PyObject *list)
{
	struct job *j = ((pyjob *)self)->j;
	if (j == NULL || j->kind != JOB_CALL) {
		PyErr_SetString(PyExc_RuntimeError, "not an open call");
		return NULL;
	}
	PyObject *seq = PySequence_Fast(list, "a list of CFutures");
	if (seq == NULL)
		return NULL;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	for (Py_ssize_t i = 0; i < n; i++) {
		if (twpy_future_handle(PySequence_Fast_GET_ITEM(seq, i)) ==
		    NULL) {
			Py_DECREF(seq);
			PyErr_SetString(PyExc_TypeError, "not a CFuture");
			return NULL;
		}
	}
	struct after *w = malloc(sizeof(*w));
	if (w == NULL) {
		Py_DECREF(seq);
		return PyErr_NoMemory();
	}
	w->out = tw_future_retain(j->out);
	atomic_init(&w->failed, false);
	/* One more than the futures: the last after_one is ours, below, so
	 * none completes the answer while the callbacks are being added. */
	atomic_init(&w->left, (uint32_t)n + 1);
	for (Py_ssize_t i = 0; i < n; i++) {
		tw_future *f =
			twpy_future_handle(PySequence_Fast_GET_ITEM(seq, i));
		if (tw_future_then(f, after_one, w) != TW_OK) {
			/* Not watched (no memory): failed now, and counted
			 * as done. */
			after_fail(w, TW_ENOMEM, twpy_self_id(twpy_agent),
				   "out of memory watching a backward part");
			after_put(w);
		}
	}
	Py_DECREF(seq);
	((pyjob *)self)->j = NULL;
	job_free_nogil(j);
	after_put(w);
	Py_RETURN_NONE;
}

/* job.fail(kind, message): the call's error. */
static PyObject *pyjob_fail(PyObject *self, PyObject *args)
{
	int kind;
	const char *msg;
	if (!PyArg_ParseTuple(args, "is", &kind, &msg))
		return NULL;
	struct job *j = ((pyjob *)self)->j;
	if (j == NULL || j->kind != JOB_CALL) {
		PyErr_SetString(PyExc_RuntimeError, "not an open call");
		return NULL;
	}
	if (kind <= 0 || kind >= TW_STATUS_COUNT_)
		kind = TW_ERUNTIME;
	tw_future_fail(j->out, (tw_status)kind, twpy_self_id(twpy_agent), msg);
	((pyjob *)self)->j = NULL;
	job_free_nogil(j);
	Py_RETURN_NONE;
}

/* job.release(): a callback job drops its callback and future once run,
 * so that an exception kept by the future (whose traceback reaches the
 * worker's frame holding this job) forms no cycle through the job, which
 * the collector does not see. */
static PyObject *pyjob_release(PyObject *self, PyObject *args)
{
	(void)args;
	struct job *j = ((pyjob *)self)->j;
	if (j != NULL && j->kind == JOB_CB) {
		Py_CLEAR(j->cb);
		Py_CLEAR(j->fut);
	}
	Py_RETURN_NONE;
}

static PyGetSetDef pyjob_getset[] = {
	{"kind", pyjob_get, NULL, NULL, "kind"},
	{"fn", pyjob_get, NULL, NULL, "fn"},
	{"name", pyjob_get, NULL, NULL, "name"},
	{"caller", pyjob_get, NULL, NULL, "caller"},
	{"ag", pyjob_get, NULL, NULL, "ag"},
	{"args", pyjob_get, NULL, NULL, "args"},
	{"kwargs", pyjob_get, NULL, NULL, "kwargs"},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef pyjob_methods[] = {
	{"complete", pyjob_complete, METH_VARARGS,
	 "complete(value, ag=None): answer the call with a value, in an "
	 "autograd envelope (context_id, message_id, grad_mask) when ag is "
	 "given."},
	{"complete_when", pyjob_complete_when, METH_O,
	 "Answer the call with None once every CFuture of a list has "
	 "completed, or with the first one's error."},
	{"fail", pyjob_fail, METH_VARARGS,
	 "Answer the call with an error (kind, message)."},
	{"release", pyjob_release, METH_NOARGS,
	 "A callback job drops its callback and future (after it ran)."},
	{NULL, NULL, 0, NULL},
};

PyTypeObject twpy_job_type = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tensorwire._C.Job",
	.tp_basicsize = sizeof(pyjob),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_dealloc = pyjob_dealloc,
	.tp_getset = pyjob_getset,
	.tp_methods = pyjob_methods,
};

/* Around a blocking tensorwire wait (GIL released): a worker blocked in
 * one lets another take the queue at once (a nested call into this very
 * worker must not wait for it). */
void twpy_block_begin(void)
{
	if (!tls_running)
		return;
	pthread_mutex_lock(&qmu);
	if (tls_worker != NULL && tls_worker->stalled) {
		tls_worker->stalled = false; /* not counted already */
	} else {
		nawake--;
		nrun--;
	}
	if (tls_worker != NULL)
		tls_worker->running = false;
	if (qhead != NULL && nsleep > 0 && nawake == 0)
		pthread_cond_signal(&qcv);
	pthread_mutex_unlock(&qmu);
	tls_running = false;
	tls_blocked = true;
}

void twpy_block_end(void)
{
	if (!tls_blocked)
		return;
	pthread_mutex_lock(&qmu);
	nawake++;
	nrun++;
	if (tls_worker != NULL) {
		tls_worker->running = true;
		tls_worker->since = mono_ns();
	}
	pthread_mutex_unlock(&qmu);
	tls_blocked = false;
	tls_running = true;
}

/* _C._worker_blocked(flag): a Python-side wait (a hand-made Future) of a
 * worker, as twpy_block_begin/end. */
PyObject *twpy_worker_blocked(PyObject *self, PyObject *flag)
{
	(void)self;
	int on = PyObject_IsTrue(flag);
	if (on < 0)
		return NULL;
	if (on)
		twpy_block_begin();
	else
		twpy_block_end();
	Py_RETURN_NONE;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool job_ready(void *arg)
{
	(void)arg;
	return (atomic_load_explicit(&qpeek, memory_order_acquire) != 0 &&
		atomic_load_explicit(&nrun, memory_order_relaxed) == 0) ||
	       !atomic_load_explicit(&qopenflag, memory_order_relaxed);
}

/* Without the GIL: if no other worker does, wait for a job for up to
 * TWPY_SPIN_NS, running the agent's loop meanwhile when it is lent to us,
 * else polling the queue, yielding between looks. */
static void spin_for_job(void)
{
	bool no = false;
	if (!atomic_compare_exchange_strong(&spinner, &no, true))
		return;
	uint64_t end = mono_ns() + TWPY_SPIN_NS;
	if (lender != NULL)
		(void)tw_lender_serve_until(lender, job_ready, NULL, end);
	while ((atomic_load_explicit(&qpeek, memory_order_acquire) == 0 ||
		atomic_load_explicit(&nrun, memory_order_relaxed) > 0) &&
	       atomic_load_explicit(&qopenflag, memory_order_relaxed)) {
		sched_yield();
		if (mono_ns() >= end)
			break;
	}
	atomic_store_explicit(&spinner, false, memory_order_release);
}

/* This thread, known to the monitor (a stale entry of an earlier init is
 * reused: its thread has exited). */
static void worker_register(void)
{
	pthread_mutex_lock(&qmu);
	struct worker *w = NULL;
	for (struct worker *x = workers; x != NULL && w == NULL; x = x->next)
		if (x->gen != jobs_gen)
			w = x;
	if (w == NULL && (w = calloc(1, sizeof(*w))) != NULL) {
		w->next = workers;
		workers = w;
	}
	nawake++; /* until it first sleeps */
	if (w != NULL) {
		w->gen = jobs_gen;
		w->running = false;
		w->stalled = false;
		w->cpu_seen = 0;
		if (pthread_getcpuclockid(pthread_self(), &w->clk) != 0)
			w->gen = 0; /* not watched: slower when it blocks */
	}
	pthread_mutex_unlock(&qmu);
	tls_worker = w;
}

/* _C._next_job(): the next job, waiting for one with the GIL released;
 * None once the queue is closed and empty. */
PyObject *twpy_next_job(PyObject *self, PyObject *args)
{
	(void)self;
	(void)args;
	struct job *j;
	twpy_drain();
	if (tls_worker == NULL || tls_worker->gen != jobs_gen)
		worker_register();
	Py_BEGIN_ALLOW_THREADS;
	if (tls_running) {
		pthread_mutex_lock(&qmu);
		if (tls_worker != NULL && tls_worker->stalled) {
			tls_worker->stalled = false; /* awake again */
			nawake++;
		} else {
			nrun--;
		}
		if (tls_worker != NULL)
			tls_worker->running = false;
		pthread_mutex_unlock(&qmu);
		tls_running = false;
	}
	if (atomic_load_explicit(&qpeek, memory_order_acquire) == 0)
		spin_for_job();
	pthread_mutex_lock(&qmu);
	/* One runs at a time (the GIL); more only with a permit (a stall). */
	j = NULL;
	for (;;) {
		if (qhead != NULL && (nrun == 0 || permits > 0)) {
			if (permits > 0)
				permits--;
			j = qhead;
			break;
		}
		if (!qopen)
			break;
		nsleep++;
		nawake--;
		pthread_cond_wait(&qcv, &qmu);
		nawake++;
		nsleep--;
	}
	if (j != NULL) {
		nrun++;
		qhead = j->next;
		if (qhead == NULL)
			qtail = &qhead;
		qlen--;
		atomic_store_explicit(&qpeek, qlen, memory_order_relaxed);
		tls_running = true;
		last_take = mono_ns();
		if (tls_worker != NULL) {
			tls_worker->running = true;
			tls_worker->since = last_take;
		}
	}
	pthread_mutex_unlock(&qmu);
	/* Replies of our last jobs, waiting for our next poll: they must not
	 * wait for this job too. */
	if (j != NULL && lender != NULL)
		tw_lender_flush(lender);
	Py_END_ALLOW_THREADS;
	twpy_drain();
	if (j == NULL)
		Py_RETURN_NONE;
	pyjob *o = PyObject_New(pyjob, &twpy_job_type);
	if (o == NULL)
		return NULL;
	o->j = j;
	return (PyObject *)o;
}
