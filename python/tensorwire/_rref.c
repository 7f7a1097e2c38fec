/* The RRef object: a tw_rref handle seen from Python. Blocking calls
 * release the GIL; dropping the object releases the handle (the last
 * release of a user tells its owner). */
#include "_tw.h"

typedef struct {
	PyObject_HEAD tw_rref *r;
	uint64_t gen; /* the agent's (twpy_gen) it was made under */
} pyrref;

/* The handle of o if its agent is still the running one; else NULL with
 * RuntimeError set (after shutdown only release is allowed on a handle:
 * rref.h). */
static tw_rref *live(PyObject *o)
{
	pyrref *p = (pyrref *)o;
	if (twpy_agent == NULL || p->gen != twpy_gen) {
		PyErr_SetString(PyExc_RuntimeError,
				"this RRef belongs to an RPC agent that has "
				"shut down");
		return NULL;
	}
	return p->r;
}

/* The class RRefs are made as: tensorwire.rpc's RRef, a subclass. */
static PyTypeObject *rref_cls = &twpy_rref_type;

PyObject *twpy_set_rref_class(PyObject *self, PyObject *cls)
{
	(void)self;
	if (!PyType_Check(cls) ||
	    !PyType_IsSubtype((PyTypeObject *)cls, &twpy_rref_type)) {
		PyErr_SetString(PyExc_TypeError, "not a CRRef subclass");
		return NULL;
	}
	Py_INCREF(cls);
	rref_cls = (PyTypeObject *)cls;
	Py_RETURN_NONE;
}

PyObject *twpy_rref_new(tw_rref *r)
{
	pyrref *o = (pyrref *)rref_cls->tp_alloc(rref_cls, 0);
	if (o == NULL) {
		tw_rref_release(r);
		return NULL;
	}
	o->r = r;
	o->gen = twpy_gen;
	return (PyObject *)o;
}

tw_rref *twpy_rref_live(PyObject *o)
{
	return live(o);
}

tw_rref *twpy_rref_handle(PyObject *o)
{
	return PyObject_TypeCheck(o, &twpy_rref_type) ? ((pyrref *)o)->r : NULL;
}

static void pyrref_dealloc(PyObject *self)
{
	tw_rref_release(((pyrref *)self)->r);
	/* A Python subclass's instance: subtype_dealloc drops its type. */
	Py_TYPE(self)->tp_free(self);
}

/* to_here_async(timeout_ms, mode) -> CFuture */
static PyObject *pyrref_to_here(PyObject *self, PyObject *args)
{
	tw_rref *live_r = live(self);
	if (live_r == NULL)
		return NULL;
	long long ms = -1;
	int mode = TWPY_TORCH;
	if (!PyArg_ParseTuple(args, "|Li", &ms, &mode))
		return NULL;
	tw_future *f;
	tw_status st = tw_rref_to_here_async(live_r, ms, &f);
	if (st != TW_OK)
		return twpy_raise_status(st);
	return twpy_future_new(f, mode);
}

/* local_value() -> the owner's value (a copy of its tensors' handles) */
static PyObject *pyrref_local_value(PyObject *self, PyObject *args)
{
	tw_rref *live_r = live(self);
	if (live_r == NULL)
		return NULL;
	(void)args;
	const tw_value *v;
	tw_status st = tw_rref_local_value(live_r, &v);
	if (st != TW_OK)
		return twpy_raise_status(st);
	return twpy_from_value(v, TWPY_TORCH);
}

static PyObject *pyrref_owner(PyObject *self, PyObject *args)
{
	tw_rref *live_r = live(self);
	if (live_r == NULL)
		return NULL;
	(void)args;
	tw_worker_info wi;
	tw_status st = tw_rref_owner(live_r, &wi);
	if (st != TW_OK)
		return twpy_raise_status(st);
	return Py_BuildValue("(Is)", wi.id, wi.name);
}

static PyObject *pyrref_flags(PyObject *self, PyObject *args)
{
	tw_rref *live_r = live(self);
	if (live_r == NULL)
		return NULL;
	(void)args;
	tw_rref *r = live_r;
	return Py_BuildValue("(OO)", tw_rref_is_owner(r) ? Py_True : Py_False,
			     tw_rref_confirmed_by_owner(r) ? Py_True
							   : Py_False);
}

static PyObject *pyrref_id(PyObject *self, PyObject *args)
{
	tw_rref *live_r = live(self);
	if (live_r == NULL)
		return NULL;
	(void)args;
	tw_rref_id id = tw_rref_get_id(live_r);
	return Py_BuildValue("(I(IK)(IK))", id.owner, id.rref.created_on,
			     (unsigned long long)id.rref.local_id,
			     id.fork.created_on,
			     (unsigned long long)id.fork.local_id);
}

static PyMethodDef pyrref_methods[] = {
	{"_to_here_async", pyrref_to_here, METH_VARARGS, NULL},
	{"_local_value", pyrref_local_value, METH_NOARGS, NULL},
	{"_owner", pyrref_owner, METH_NOARGS, NULL},
	{"_flags", pyrref_flags, METH_NOARGS, NULL},
	{"_id", pyrref_id, METH_NOARGS, NULL},
	{NULL, NULL, 0, NULL},
};

PyTypeObject twpy_rref_type = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tensorwire._C.CRRef",
	.tp_basicsize = sizeof(pyrref),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_dealloc = pyrref_dealloc,
	.tp_methods = pyrref_methods,
};

/* tw::py_keep(v), for calls to self only: v itself. rpc.RRef(value) makes
 * its owner RRef by a remote() of this to self, so the value (a marker of
 * the object the package keeps, or its pickle) is kept with no Python
 * worker: one may be calling RRef(value) while every other is busy. */
static tw_status keep_handler(tw_call_ctx *ctx, const tw_value *args,
			      const tw_value *kwargs, tw_value *result,
			      void *arg)
{
	(void)kwargs;
	(void)arg;
	tw_agent *a = tw_call_agent(ctx);
	if (tw_call_caller(ctx) != twpy_self_id(a)) {
		/* An error value: the handler's error, as it says. */
		(void)tw_value_error(result, TW_EINVAL, twpy_self_id(a),
				     "tw::py_keep is for calls to self");
		return TW_EINVAL;
	}
	const tw_value *v;
	tw_status st = tw_value_get_item(args, 0, &v);
	return st == TW_OK ? tw_value_clone(result, v) : st;
}

tw_status twpy_register_keep(tw_agent *a)
{
	return tw_agent_register(a, TWPY_KEEP_FN, keep_handler, NULL, 0);
}
