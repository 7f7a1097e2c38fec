/* tensorwire._C's side of distributed autograd (docs/autograd.md): the
 * contexts the agent keeps, message ids, AG_BACKWARD sent, the release
 * hook and the backward handler. tensorwire.distributed.autograd is the
 * Python half over these. */
#include "_tw.h"

#include <stdatomic.h>

/* Contexts ended on this worker since it started (the release hook, on a
 * run loop: it only counts). The Python half drops its state of ended
 * contexts when this moves, asking the agent which are still held. */
static _Atomic uint64_t released;

static void on_release(tw_agent *a, int64_t id, void *arg)
{
	(void)a;
	(void)id;
	(void)arg;
	atomic_fetch_add_explicit(&released, 1, memory_order_release);
}

tw_status twpy_ag_setup(tw_agent *a, PyObject *fn)
{
	tw_ag_set_release_hook(a, on_release, NULL);
	if (fn == NULL || fn == Py_None)
		return TW_OK;
	return twpy_serve_ag_backward(a, fn);
}

int twpy_ag_meta(PyObject *o, tw_ag_meta *m)
{
	long long ctx, msg;
	const char *mask;
	Py_ssize_t len;
	if (!PyArg_ParseTuple(o, "LLy#", &ctx, &msg, &mask, &len))
		return -1;
	if (ctx < 0 || msg < 0 || len > (Py_ssize_t)UINT32_MAX) {
		PyErr_SetString(PyExc_ValueError,
				"autograd ids are >= 0, a mask < 4 GiB");
		return -1;
	}
	m->context_id = ctx;
	m->message_id = msg;
	m->grad_mask = (const uint8_t *)mask;
	m->mask_len = (uint32_t)len;
	return 0;
}

/* torch raises RuntimeError for a context it does not know, not its
 * RemoteError: so do these (the message is the agent's, torch's). */
static PyObject *raise_local(tw_status st)
{
	if (st == TW_EINVAL) {
		PyErr_SetString(PyExc_RuntimeError, tw_errmsg(st));
		return NULL;
	}
	return twpy_raise_status(st);
}

/* A context id argument, and the agent: NULL with an exception. */
static tw_agent *id_and_agent(PyObject *arg, long long *id)
{
	*id = PyLong_AsLongLong(arg);
	if (*id == -1 && PyErr_Occurred())
		return NULL;
	return twpy_agent_or_raise();
}

static PyObject *py_context_new(PyObject *self, PyObject *args)
{
	(void)self;
	(void)args;
	tw_agent *a = twpy_agent_or_raise();
	if (a == NULL)
		return NULL;
	int64_t id;
	tw_status st = tw_ag_context_new(a, &id);
	if (st != TW_OK)
		return raise_local(st);
	return PyLong_FromLongLong(id);
}

static PyObject *py_context_release(PyObject *self, PyObject *arg)
{
	(void)self;
	long long id;
	tw_agent *a = id_and_agent(arg, &id);
	if (a == NULL)
		return NULL;
	tw_status st = tw_ag_context_release(a, id);
	if (st != TW_OK)
		return raise_local(st);
	Py_RETURN_NONE;
}

static PyObject *py_context_valid(PyObject *self, PyObject *arg)
{
	(void)self;
	long long id = PyLong_AsLongLong(arg);
	if (id == -1 && PyErr_Occurred())
		return NULL;
	return PyBool_FromLong(twpy_agent != NULL &&
			       tw_ag_context_valid(twpy_agent, id));
}

/* ag_context_reach(context_id, worker): the context reached worker (made
 * here if it was not held): for what travels outside an envelope (a
 * remote() in a context, tensorwire.distributed.autograd). */
static PyObject *py_context_reach(PyObject *self, PyObject *args)
{
	(void)self;
	long long id;
	unsigned w;
	if (!PyArg_ParseTuple(args, "LI", &id, &w))
		return NULL;
	tw_agent *a = twpy_agent_or_raise();
	if (a == NULL)
		return NULL;
	tw_status st = tw_ag_context_reach(a, id, w);
	if (st != TW_OK)
		return twpy_raise_status(st);
	Py_RETURN_NONE;
}

static long long count_of(tw_agent *a)
{
	return tw_ag_context_count(a);
}

static long long message_id_of(tw_agent *a)
{
	return tw_ag_message_id(a);
}

/* fn(agent) as a Python int. */
static PyObject *of_agent(long long (*fn)(tw_agent *))
{
	tw_agent *a = twpy_agent_or_raise();
	return a == NULL ? NULL : PyLong_FromLongLong(fn(a));
}

static PyObject *py_context_count(PyObject *self, PyObject *args)
{
	(void)self;
	(void)args;
	return of_agent(count_of);
}

static PyObject *py_context_workers(PyObject *self, PyObject *arg)
{
	(void)self;
	long long id;
	tw_agent *a = id_and_agent(arg, &id);
	if (a == NULL)
		return NULL;
	uint32_t ids[64];
	size_t n = tw_ag_context_workers(a, id, ids, 64);
	uint32_t *out = ids;
	if (n > 64) { /* a large group: ask again with room for all */
		out = PyMem_Calloc(n, sizeof(*out));
		if (out == NULL)
			return PyErr_NoMemory();
		n = tw_ag_context_workers(a, id, out, n);
	}
	PyObject *r = PyList_New((Py_ssize_t)n);
	for (size_t i = 0; r != NULL && i < n; i++)
		PyList_SET_ITEM(r, (Py_ssize_t)i,
				PyLong_FromUnsignedLong(out[i]));
	if (out != ids)
		PyMem_Free(out);
	return r;
}

static PyObject *py_message_id(PyObject *self, PyObject *args)
{
	(void)self;
	(void)args;
	return of_agent(message_id_of);
}

static PyObject *py_releases(PyObject *self, PyObject *args)
{
	(void)self;
	(void)args;
	return PyLong_FromUnsignedLongLong(
		atomic_load_explicit(&released, memory_order_acquire));
}

/* ag_backward_async(to, context_id, message_id, grads, retain_graph,
 *                   timeout_ms) -> CFuture of None */
static PyObject *py_backward_async(PyObject *self, PyObject *args)
{
	(void)self;
	unsigned to;
	long long ctx, msg, ms;
	PyObject *grads;
	int retain;
	if (!PyArg_ParseTuple(args, "ILLO!pL", &to, &ctx, &msg, &PyList_Type,
			      &grads, &retain, &ms))
		return NULL;
	tw_agent *a = twpy_agent_or_raise();
	if (a == NULL)
		return NULL;
	struct twpy_conv cv = {0};
	tw_value g;
	if (twpy_to_value(grads, &g, &cv) < 0)
		return NULL;
	tw_future *f;
	tw_status st = tw_ag_backward_async(a, to, ctx, msg, &g, retain != 0,
					    ms, &f);
	tw_value_destroy(&g);
	if (st != TW_OK)
		return twpy_raise_status(st);
	return twpy_future_new(f, TWPY_TORCH);
}

PyMethodDef twpy_ag_methods[] = {
	{"ag_context_new", py_context_new, METH_NOARGS,
	 "A new autograd context of this worker: its id."},
	{"ag_context_release", py_context_release, METH_O,
	 "End a context here and on every worker it reached."},
	{"ag_context_valid", py_context_valid, METH_O,
	 "Whether the context is held here."},
	{"ag_context_reach", py_context_reach, METH_VARARGS,
	 "Record that a context reached a worker (made here if new)."},
	{"ag_context_count", py_context_count, METH_NOARGS,
	 "Contexts held here now."},
	{"ag_context_workers", py_context_workers, METH_O,
	 "The workers a context reached, in rank order."},
	{"ag_message_id", py_message_id, METH_NOARGS,
	 "A new autograd message id of this worker."},
	{"ag_releases", py_releases, METH_NOARGS,
	 "How many contexts ended here so far."},
	{"ag_backward_async", py_backward_async, METH_VARARGS,
	 "Send gradients for a send function to a peer (AG_BACKWARD)."},
	{NULL, NULL, 0, NULL},
};
