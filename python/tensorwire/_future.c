/* CFuture: a tw_future seen from Python. Waiting releases the GIL; a
 * callback runs on a Python worker thread (_jobs.c), never on the thread
 * that completes the future. The torch-style Future (then, set_result,
 * value) is Python code over this (tensorwire/futures.py). */
#include "_tw.h"

typedef struct {
	PyObject_HEAD tw_future *f;
	int mode; /* TWPY_*: how its value's tensors come back */
} cfuture;

PyObject *twpy_future_new(tw_future *f, int mode)
{
	cfuture *o = PyObject_New(cfuture, &twpy_future_type);
	if (o == NULL) {
		tw_future_release(f);
		return NULL;
	}
	o->f = f;
	o->mode = mode;
	return (PyObject *)o;
}

tw_future *twpy_future_handle(PyObject *o)
{
	return Py_IS_TYPE(o, &twpy_future_type) ? ((cfuture *)o)->f : NULL;
}

static void cfuture_dealloc(PyObject *self)
{
	tw_future_release(((cfuture *)self)->f);
	Py_TYPE(self)->tp_free(self);
}

static PyObject *cfuture_done(PyObject *self, PyObject *args)
{
	(void)args;
	return PyBool_FromLong(tw_future_done(((cfuture *)self)->f));
}

/* wait(timeout_ms=-1): True once done, False if timeout_ms passed. */
static PyObject *cfuture_wait(PyObject *self, PyObject *args)
{
	long long ms = -1;
	if (!PyArg_ParseTuple(args, "|L", &ms))
		return NULL;
	tw_future *f = ((cfuture *)self)->f;
	if (tw_future_done(f)) {
		/* Done already, but the wait may still send calls this
		 * thread posted since (a pipelining caller's batch), as a
		 * wait that is not done would have. */
		Py_BEGIN_ALLOW_THREADS;
		(void)tw_future_wait(f, 0);
		Py_END_ALLOW_THREADS;
		Py_RETURN_TRUE;
	}
	tw_status st;
	Py_BEGIN_ALLOW_THREADS;
	twpy_block_begin();
	st = tw_future_wait(f, ms);
	twpy_block_end();
	Py_END_ALLOW_THREADS;
	(void)st;
	return PyBool_FromLong(tw_future_done(f));
}

/* outcome(): (True, value) or (False, (kind, message, origin)); the
 * future must be done. */
static PyObject *cfuture_outcome(PyObject *self, PyObject *args)
{
	(void)args;
	cfuture *c = (cfuture *)self;
	if (!tw_future_done(c->f)) {
		PyErr_SetString(PyExc_RuntimeError, "future not done");
		return NULL;
	}
	if (tw_future_status(c->f) == TW_OK) {
		PyObject *v = twpy_from_value(tw_future_value(c->f), c->mode);
		if (v == NULL)
			return NULL;
		return Py_BuildValue("(ON)", Py_True, v);
	}
	const tw_error *e = tw_future_error(c->f);
	return Py_BuildValue("(O(isI))", Py_False,
			     e != NULL ? (int)e->kind
				       : (int)tw_future_status(c->f),
			     e != NULL && e->msg != NULL ? e->msg : "",
			     e != NULL ? e->origin : 0u);
}

/* ag(): the answer's autograd envelope, (context_id, message_id,
 * grad_mask bytes), or None (not done, or answered without one). */
static PyObject *cfuture_ag(PyObject *self, PyObject *args)
{
	(void)args;
	tw_future *f = ((cfuture *)self)->f;
	tw_ag_meta m;
	if (!tw_future_done(f) || !tw_future_ag(f, &m))
		Py_RETURN_NONE;
	return Py_BuildValue("(LLy#)", (long long)m.context_id,
			     (long long)m.message_id, (const char *)m.grad_mask,
			     (Py_ssize_t)m.mask_len);
}

/* add_done_callback(cb): cb(self) on a Python worker once done. */
static PyObject *cfuture_then(PyObject *self, PyObject *cb)
{
	if (!PyCallable_Check(cb)) {
		PyErr_SetString(PyExc_TypeError, "callback is not callable");
		return NULL;
	}
	if (twpy_when_done(((cfuture *)self)->f, cb, self) < 0)
		return NULL;
	Py_RETURN_NONE;
}

/* _C.wait_all([CFuture, ...]): wait for all, GIL released, returning at
 * the first failure (True: all done and fine; False: one failed). */
PyObject *twpy_wait_all(PyObject *self, PyObject *list)
{
	(void)self;
	/* A tuple of our own: nobody can take a future out of it while
	 * the GIL is released below. */
	PyObject *seq = PySequence_Tuple(list);
	if (seq == NULL)
		return NULL;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	tw_future **fs = PyMem_Calloc((size_t)n + 1, sizeof(*fs));
	if (fs == NULL) {
		Py_DECREF(seq);
		return PyErr_NoMemory();
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *o = PySequence_Fast_GET_ITEM(seq, i);
		if (!Py_IS_TYPE(o, &twpy_future_type)) {
			PyMem_Free(fs);
			Py_DECREF(seq);
			PyErr_SetString(PyExc_TypeError, "not a CFuture");
			return NULL;
		}
		fs[i] = ((cfuture *)o)->f;
	}
	tw_status st;
	Py_BEGIN_ALLOW_THREADS;
	twpy_block_begin();
	st = tw_future_wait_all(fs, (size_t)n, -1);
	twpy_block_end();
	Py_END_ALLOW_THREADS;
	PyMem_Free(fs);
	Py_DECREF(seq);
	return PyBool_FromLong(st == TW_OK);
}

static PyMethodDef cfuture_methods[] = {
	{"done", cfuture_done, METH_NOARGS, "Whether it is complete."},
	{"wait", cfuture_wait, METH_VARARGS,
	 "Wait (GIL released), at most timeout_ms (-1: no limit)."},
	{"outcome", cfuture_outcome, METH_NOARGS,
	 "(True, value) or (False, (kind, message, origin))."},
	{"ag", cfuture_ag, METH_NOARGS,
	 "The answer's autograd envelope (context_id, message_id, grad_mask) "
	 "or None."},
	{"add_done_callback", cfuture_then, METH_O,
	 "Call cb(future) on a Python worker once complete."},
	{NULL, NULL, 0, NULL},
};

PyTypeObject twpy_future_type = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tensorwire._C.CFuture",
	.tp_basicsize = sizeof(cfuture),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_dealloc = cfuture_dealloc,
	.tp_methods = cfuture_methods,
};
