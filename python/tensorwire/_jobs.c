/* Work for the Python worker threads: calls of functions served in Python
 * and futures' callbacks. A run loop (or whichever thread completes a
 * future) only queues a job, never takes the GIL; the workers, blocked in
 * _C._next_job with the GIL released, take them. Bounded: a peer's calls
 * past TWPY_MAX_JOBS are refused (TW_EBUSY), not queued. */
#include "_tw.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define TWPY_MAX_JOBS 65536u

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
};

static pthread_mutex_t qmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcv = PTHREAD_COND_INITIALIZER;
static struct job *qhead, **qtail = &qhead;
static uint32_t qlen;
static bool qopen;

void twpy_jobs_open(void)
{
	pthread_mutex_lock(&qmu);
	qopen = true;
	pthread_mutex_unlock(&qmu);
}

void twpy_jobs_close(void)
{
	pthread_mutex_lock(&qmu);
	qopen = false;
	pthread_cond_broadcast(&qcv);
	pthread_mutex_unlock(&qmu);
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
		pthread_cond_signal(&qcv);
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
	struct job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return TW_ENOMEM;
	j->kind = JOB_CALL;
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

/* job.complete(value): the call's result. */
static PyObject *pyjob_complete(PyObject *self, PyObject *v)
{
	struct job *j = ((pyjob *)self)->j;
	if (j == NULL || j->kind != JOB_CALL) {
		PyErr_SetString(PyExc_RuntimeError, "not an open call");
		return NULL;
	}
	struct twpy_conv cv = {0};
	tw_value r;
	if (twpy_to_value(v, &r, &cv) < 0)
		return NULL;
	tw_future_complete(j->out, &r);
	((pyjob *)self)->j = NULL;
	job_free_nogil(j);
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
	{"args", pyjob_get, NULL, NULL, "args"},
	{"kwargs", pyjob_get, NULL, NULL, "kwargs"},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef pyjob_methods[] = {
	{"complete", pyjob_complete, METH_O, "Answer the call with a value."},
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

/* _C._next_job(): the next job, waiting for one with the GIL released;
 * None once the queue is closed and empty. */
PyObject *twpy_next_job(PyObject *self, PyObject *args)
{
	(void)self;
	(void)args;
	struct job *j;
	twpy_drain();
	Py_BEGIN_ALLOW_THREADS;
	pthread_mutex_lock(&qmu);
	while (qhead == NULL && qopen)
		pthread_cond_wait(&qcv, &qmu);
	j = qhead;
	if (j != NULL) {
		qhead = j->next;
		if (qhead == NULL)
			qtail = &qhead;
		qlen--;
	}
	pthread_mutex_unlock(&qmu);
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
