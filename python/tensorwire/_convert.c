/* Python objects <-> tw_value. Tensors cross by DLPack both ways: no copy
 * of their bytes; a received tensor keeps the receive buffer alive until
 * Python drops it. */
#include "_tw.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/*
 * A producer's DLManagedTensor (numpy's, torch's), wrapped. tensorwire
 * calls the deleter of what it imports from whichever thread drops the
 * last reference, a run loop as often as not, and the producer's deleter
 * may take the GIL (numpy's does; torch's can): a run loop never does.
 * Ours only queues the producer's for a Python thread (twpy_drain).
 */
struct wrapped {
	DLManagedTensor mt; /* what tensorwire sees */
	DLManagedTensor *inner;
	struct wrapped *next;
};

static pthread_mutex_t rel_mu = PTHREAD_MUTEX_INITIALIZER;
static struct wrapped *rel_head;

static void wrapped_deleter(DLManagedTensor *self)
{
	struct wrapped *w = (struct wrapped *)self;
	pthread_mutex_lock(&rel_mu);
	w->next = rel_head;
	rel_head = w;
	pthread_mutex_unlock(&rel_mu);
}

void twpy_drain(void)
{
	pthread_mutex_lock(&rel_mu);
	struct wrapped *w = rel_head;
	rel_head = NULL;
	pthread_mutex_unlock(&rel_mu);
	while (w != NULL) {
		struct wrapped *n = w->next;
		if (w->inner->deleter != NULL)
			w->inner->deleter(w->inner);
		free(w);
		w = n;
	}
}

static PyObject *torch_tensor_type, *torch_from_dlpack, *torch_to_dlpack,
	*torch_bool, *torch_uint8;
static PyObject *np_ndarray_type, *np_from_dlpack, *np_bool_dtype;

int twpy_convert_init(void)
{
	if (torch_tensor_type != NULL || np_ndarray_type != NULL)
		return 0;
	PyObject *torch = PyImport_ImportModule("torch");
	if (torch != NULL) {
		/* torch.utils.dlpack's to_dlpack and from_dlpack are these
		 * C functions behind a Python check each (Tensor.__dlpack__
		 * too): calling them directly saves ~0.5 us a tensor. */
		PyObject *tc = PyObject_GetAttrString(torch, "_C");
		torch_tensor_type = PyObject_GetAttrString(torch, "Tensor");
		torch_bool = PyObject_GetAttrString(torch, "bool");
		torch_uint8 = PyObject_GetAttrString(torch, "uint8");
		torch_from_dlpack =
			tc != NULL ? PyObject_GetAttrString(tc, "_from_dlpack")
				   : NULL;
		torch_to_dlpack =
			tc != NULL ? PyObject_GetAttrString(tc, "_to_dlpack")
				   : NULL;
		Py_XDECREF(tc);
		Py_DECREF(torch);
		if (torch_from_dlpack == NULL || torch_to_dlpack == NULL ||
		    torch_tensor_type == NULL)
			return -1;
	} else {
		PyErr_Clear(); /* torch is optional: numpy alone works */
	}
	PyObject *np = PyImport_ImportModule("numpy");
	if (np != NULL) {
		np_ndarray_type = PyObject_GetAttrString(np, "ndarray");
		np_from_dlpack = PyObject_GetAttrString(np, "from_dlpack");
		np_bool_dtype = PyObject_GetAttrString(np, "bool_");
		Py_DECREF(np);
		if (np_ndarray_type == NULL)
			return -1;
		PyErr_Clear(); /* an old numpy without from_dlpack */
	} else {
		PyErr_Clear();
	}
	return 0;
}

/* ---- Python -> tw ---------------------------------------------------- */

static int fail_status(tw_status st, const char *what)
{
	PyErr_Format(st == TW_ENOMEM ? PyExc_MemoryError : PyExc_TypeError,
		     "%s: %s", what, tw_errmsg(st));
	return -1;
}

/* A torch tensor or numpy array: its bytes, shared. */
static int tensor_to_value(PyObject *o, bool is_torch, tw_value *out)
{
	PyObject *src = o, *cap = NULL;
	bool is_bool = false;
	Py_INCREF(src);
	if (is_torch) {
		/* Exported without its autograd graph, as torch's RPC
		 * pickler sends tensor data. */
		PyObject *rg = PyObject_GetAttrString(src, "requires_grad");
		int need = rg != NULL ? PyObject_IsTrue(rg) : -1;
		Py_XDECREF(rg);
		if (need < 0)
			goto fail;
		if (need) {
			PyObject *d = PyObject_CallMethod(src, "detach", NULL);
			Py_DECREF(src);
			if ((src = d) == NULL)
				return -1;
		}
		PyObject *on_cpu = PyObject_GetAttrString(src, "is_cpu");
		int cpu = on_cpu != NULL ? PyObject_IsTrue(on_cpu) : -1;
		Py_XDECREF(on_cpu);
		if (cpu < 0)
			goto fail;
		if (!cpu) {
			PyErr_SetString(PyExc_TypeError,
					"tensorwire sends CPU tensors only: "
					"move it with .cpu() first");
			goto fail;
		}
		PyObject *dtype = PyObject_GetAttrString(src, "dtype");
		is_bool = dtype == torch_bool;
		Py_XDECREF(dtype);
		if (is_bool) { /* torch 1.13 cannot export bool by DLPack */
			PyObject *v = PyObject_CallMethod(src, "view", "O",
							  torch_uint8);
			Py_DECREF(src);
			if ((src = v) == NULL)
				return -1;
		}
	} else {
		PyObject *dtype = PyObject_GetAttrString(src, "dtype");
		PyObject *kind = dtype != NULL
					 ? PyObject_GetAttrString(dtype, "kind")
					 : NULL;
		Py_XDECREF(dtype);
		if (kind == NULL)
			goto fail;
		is_bool = PyUnicode_CompareWithASCIIString(kind, "b") == 0;
		Py_DECREF(kind);
		if (is_bool) {
			PyObject *v = PyObject_CallMethod(src, "view", "s",
							  "uint8");
			Py_DECREF(src);
			if ((src = v) == NULL)
				return -1;
		}
	}
	cap = is_torch ? PyObject_CallOneArg(torch_to_dlpack, src)
		       : PyObject_CallMethod(src, "__dlpack__", NULL);
	if (cap == NULL && !is_torch &&
	    PyErr_ExceptionMatches(PyExc_BufferError)) {
		/* numpy exports no read-only array by DLPack: sent from a
		 * copy (the one case that copies on the way out). */
		PyErr_Clear();
		PyObject *c = PyObject_CallMethod(src, "copy", NULL);
		Py_DECREF(src);
		if ((src = c) == NULL)
			return -1;
		cap = PyObject_CallMethod(src, "__dlpack__", NULL);
	}
	if (cap == NULL)
		goto fail;
	DLManagedTensor *mt = PyCapsule_GetPointer(cap, "dltensor");
	if (mt == NULL)
		goto fail;
	struct wrapped *w = malloc(sizeof(*w));
	if (w == NULL) {
		PyErr_NoMemory();
		goto fail;
	}
	w->mt = *mt;
	w->mt.manager_ctx = NULL;
	w->mt.deleter = wrapped_deleter;
	w->inner = mt;
	tw_tensor t;
	tw_status st = tw_tensor_from_dlpack(&w->mt, &t);
	if (st != TW_OK) {
		free(w); /* mt is still the capsule's */
		/* Negative strides (a flipped numpy view) and the like:
		 * tensorwire does not carry them. */
		PyErr_Format(PyExc_ValueError, "cannot send this %s: %s",
			     is_torch ? "tensor" : "array", tw_errmsg(st));
		goto fail;
	}
	/* tensorwire owns mt now: the capsule must not free it. */
	PyCapsule_SetName(cap, "used_dltensor");
	if (is_bool)
		t.dtype = TW_BOOL;
	st = tw_value_tensor(out, &t);
	tw_tensor_release(&t);
	Py_DECREF(cap);
	Py_DECREF(src);
	return st == TW_OK ? 0 : fail_status(st, "tensor");
fail:
	Py_XDECREF(cap);
	Py_DECREF(src);
	return -1;
}

static int to_value(PyObject *o, tw_value *out, struct twpy_conv *cv,
		    int depth);

static int seq_to_value(PyObject *o, tw_value *out, struct twpy_conv *cv,
			int depth, bool tuple)
{
	Py_ssize_t n = tuple ? PyTuple_GET_SIZE(o) : PyList_GET_SIZE(o);
	if (n > UINT32_MAX) {
		PyErr_SetString(PyExc_ValueError, "sequence too long");
		return -1;
	}
	tw_status st = tuple ? tw_value_tuple(out, (uint32_t)n)
			     : tw_value_list(out, (uint32_t)n);
	if (st != TW_OK)
		return fail_status(st, "sequence");
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *x = tuple ? PyTuple_GET_ITEM(o, i)
				    : PyList_GET_ITEM(o, i);
		tw_value c;
		if (to_value(x, &c, cv, depth + 1) < 0) {
			tw_value_destroy(out);
			return -1;
		}
		tw_value_set_item(out, (uint32_t)i, c);
	}
	return 0;
}

static int dict_to_value(PyObject *o, tw_value *out, struct twpy_conv *cv,
			 int depth)
{
	Py_ssize_t n = PyDict_GET_SIZE(o), pos = 0, i = 0;
	tw_status st = tw_value_dict(out, (uint32_t)n);
	if (st != TW_OK)
		return fail_status(st, "dict");
	PyObject *k, *v;
	while (PyDict_Next(o, &pos, &k, &v)) {
		if (!PyUnicode_Check(k)) {
			PyErr_Format(PyExc_TypeError,
				     "tensorwire dict keys are str, not %s",
				     Py_TYPE(k)->tp_name);
			tw_value_destroy(out);
			return -1;
		}
		Py_ssize_t klen;
		const char *ks = PyUnicode_AsUTF8AndSize(k, &klen);
		tw_value c;
		if (ks == NULL || to_value(v, &c, cv, depth + 1) < 0) {
			tw_value_destroy(out);
			return -1;
		}
		st = tw_value_dict_set(out, (uint32_t)i++, ks, c);
		if (st != TW_OK) {
			tw_value_destroy(&c);
			tw_value_destroy(out);
			return fail_status(st, "dict");
		}
	}
	return 0;
}

static int to_value(PyObject *o, tw_value *out, struct twpy_conv *cv, int depth)
{
	if (depth >= TW_VALUE_MAX_DEPTH) {
		PyErr_SetString(PyExc_ValueError,
				"value nested too deep for tensorwire (64)");
		return -1;
	}
	tw_status st;
	if (o == Py_None) {
		*out = tw_value_none();
	} else if (PyBool_Check(o)) {
		*out = tw_value_bool(o == Py_True);
	} else if (PyLong_Check(o)) {
		int over = 0;
		long long x = PyLong_AsLongLongAndOverflow(o, &over);
		if (over != 0) {
			PyErr_SetString(PyExc_OverflowError,
					"int does not fit in 64 bits");
			return -1;
		}
		if (x == -1 && PyErr_Occurred())
			return -1;
		*out = tw_value_int(x);
	} else if (PyFloat_Check(o)) {
		*out = tw_value_double(PyFloat_AS_DOUBLE(o));
	} else if (PyUnicode_Check(o)) {
		Py_ssize_t n;
		const char *s = PyUnicode_AsUTF8AndSize(o, &n);
		if (s == NULL)
			return -1;
		if ((st = tw_value_string(out, s, (size_t)n)) != TW_OK)
			return fail_status(st, "str");
	} else if (PyBytes_Check(o)) {
		st = tw_value_bytes(out, PyBytes_AS_STRING(o),
				    (size_t)PyBytes_GET_SIZE(o));
		if (st != TW_OK)
			return fail_status(st, "bytes");
	} else if (PyTuple_Check(o)) {
		return seq_to_value(o, out, cv, depth, true);
	} else if (PyList_Check(o)) {
		return seq_to_value(o, out, cv, depth, false);
	} else if (PyDict_Check(o)) {
		return dict_to_value(o, out, cv, depth);
	} else if (torch_tensor_type != NULL &&
		   PyObject_IsInstance(o, torch_tensor_type) == 1) {
		cv->seen |= TWPY_TORCH;
		return tensor_to_value(o, true, out);
	} else if (np_ndarray_type != NULL &&
		   PyObject_IsInstance(o, np_ndarray_type) == 1) {
		cv->seen |= TWPY_NUMPY;
		return tensor_to_value(o, false, out);
	} else if (twpy_rref_handle(o) != NULL) {
		if (twpy_rref_live(o) == NULL)
			return -1;
		st = tw_rref_value(twpy_rref_handle(o), out);
		if (st != TW_OK)
			return fail_status(st, "RRef");
	} else {
		PyErr_Format(PyExc_TypeError,
			     "tensorwire cannot send a %s by value (pickle "
			     "it, or call a Python function)",
			     Py_TYPE(o)->tp_name);
		return -1;
	}
	return 0;
}

int twpy_to_value(PyObject *o, tw_value *out, struct twpy_conv *cv)
{
	if (twpy_convert_init() < 0)
		return -1;
	return to_value(o, out, cv, 0);
}

/* ---- tw -> Python ---------------------------------------------------- */

static void capsule_free(PyObject *cap)
{
	/* Not consumed by a from_dlpack: the tensor is ours to free. */
	if (PyCapsule_IsValid(cap, "dltensor")) {
		DLManagedTensor *mt = PyCapsule_GetPointer(cap, "dltensor");
		if (mt != NULL && mt->deleter != NULL)
			mt->deleter(mt);
	}
}

/* numpy.from_dlpack wants an object with __dlpack__: this one hands out
 * its capsule once. */
typedef struct {
	PyObject_HEAD PyObject *cap;
} dlholder;

static PyObject *dlholder_dlpack(PyObject *self, PyObject *args, PyObject *kw)
{
	(void)args;
	(void)kw;
	dlholder *h = (dlholder *)self;
	if (h->cap == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "capsule already taken");
		return NULL;
	}
	PyObject *c = h->cap;
	h->cap = NULL;
	return c;
}

static PyObject *dlholder_device(PyObject *self, PyObject *args)
{
	(void)self;
	(void)args;
	return Py_BuildValue("(ii)", 1, 0); /* kDLCPU, 0 */
}

static void dlholder_dealloc(PyObject *self)
{
	Py_XDECREF(((dlholder *)self)->cap);
	Py_TYPE(self)->tp_free(self);
}

static PyMethodDef dlholder_methods[] = {
	{"__dlpack__", (PyCFunction)(void (*)(void))dlholder_dlpack,
	 METH_VARARGS | METH_KEYWORDS, NULL},
	{"__dlpack_device__", dlholder_device, METH_NOARGS, NULL},
	{NULL, NULL, 0, NULL},
};

static PyTypeObject dlholder_type = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tensorwire._C._DLPackHolder",
	.tp_basicsize = sizeof(dlholder),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_dealloc = dlholder_dealloc,
	.tp_methods = dlholder_methods,
};

/* Is t's memory a slot of a receive pool (a small frame's)? */
static bool in_pool(const tw_tensor *t)
{
	const tw_buf *b = t->buf;
	while (b != NULL && b->kind == TW_BUF_SLICE)
		b = b->owner.parent;
	return b != NULL && b->kind == TW_BUF_POOL;
}

/* A tensor of a small frame is copied out of its receive slot: Python may
 * keep it for as long as it likes (past shutdown too), and a pool slot
 * held that long would be one less for receiving. A frame too large for
 * a slot (its own buffer) is shared: no copy. Strides are kept. */
static tw_status own_copy(const tw_tensor *t, tw_tensor *out)
{
	size_t span;
	tw_status st = tw_tensor_span(t, &span);
	tw_buf *b = NULL;
	if (st == TW_OK)
		st = tw_buf_alloc(span, &b);
	if (st != TW_OK)
		return st;
	memcpy(b->data, t->data, span);
	*out = *t;
	out->buf = b;
	out->data = b->data;
	return TW_OK;
}

static PyObject *tensor_from_dlpack(const tw_tensor *t, int mode);

static PyObject *tensor_from_value(const tw_tensor *t0, int mode)
{
	if (twpy_convert_init() < 0)
		return NULL;
	tw_tensor copy = {0};
	const tw_tensor *t = t0;
	if (in_pool(t0)) {
		tw_status st = own_copy(t0, &copy);
		if (st != TW_OK) {
			PyErr_Format(PyExc_MemoryError, "tensor: %s",
				     tw_errmsg(st));
			return NULL;
		}
		t = &copy;
	}
	PyObject *r = tensor_from_dlpack(t, mode);
	if (copy.buf != NULL)
		tw_tensor_release(&copy); /* the DLPack export holds its own */
	return r;
}

static PyObject *tensor_from_dlpack(const tw_tensor *t, int mode)
{
	bool numpy = mode == TWPY_NUMPY || torch_from_dlpack == NULL;
	if (numpy && np_from_dlpack == NULL) {
		PyErr_SetString(PyExc_RuntimeError,
				"a tensor came back, and neither torch nor a "
				"numpy with from_dlpack is installed");
		return NULL;
	}
	tw_tensor view = *t;
	bool is_bool = view.dtype == TW_BOOL;
	if (is_bool)
		view.dtype = TW_UINT8; /* viewed back as bool below */
	DLManagedTensor *mt;
	tw_status st = tw_tensor_to_dlpack(&view, &mt);
	if (st != TW_OK) {
		PyErr_Format(PyExc_RuntimeError, "tensor: %s", tw_errmsg(st));
		return NULL;
	}
	PyObject *cap = PyCapsule_New(mt, "dltensor", capsule_free);
	if (cap == NULL) {
		mt->deleter(mt);
		return NULL;
	}
	PyObject *r;
	if (!numpy) {
		r = PyObject_CallFunctionObjArgs(torch_from_dlpack, cap, NULL);
	} else {
		if (PyType_Ready(&dlholder_type) < 0) {
			Py_DECREF(cap);
			return NULL;
		}
		dlholder *h = PyObject_New(dlholder, &dlholder_type);
		if (h == NULL) {
			Py_DECREF(cap);
			return NULL;
		}
		h->cap = cap;
		Py_INCREF(cap);
		r = PyObject_CallFunctionObjArgs(np_from_dlpack, (PyObject *)h,
						 NULL);
		Py_DECREF(h);
	}
	Py_DECREF(cap);
	if (r != NULL && is_bool) {
		PyObject *b = PyObject_CallMethod(
			r, "view", "O", numpy ? np_bool_dtype : torch_bool);
		Py_DECREF(r);
		r = b;
	}
	return r;
}

PyObject *twpy_from_value(const tw_value *v, int mode)
{
	switch (v->kind) {
	case TW_KIND_NONE:
		Py_RETURN_NONE;
	case TW_KIND_BOOL:
		return PyBool_FromLong(v->u.b);
	case TW_KIND_INT:
		return PyLong_FromLongLong(v->u.i);
	case TW_KIND_DOUBLE:
		return PyFloat_FromDouble(v->u.d);
	case TW_KIND_STRING:
		return PyUnicode_FromStringAndSize(v->u.str, v->len);
	case TW_KIND_BYTES:
		return PyBytes_FromStringAndSize(v->u.str, v->len);
	case TW_KIND_TENSOR:
		return tensor_from_value(v->u.tensor, mode);
	case TW_KIND_LIST:
	case TW_KIND_TUPLE: {
		bool tuple = v->kind == TW_KIND_TUPLE;
		PyObject *r = tuple ? PyTuple_New(v->len) : PyList_New(v->len);
		for (uint32_t i = 0; r != NULL && i < v->len; i++) {
			PyObject *x = twpy_from_value(&v->u.items[i], mode);
			if (x == NULL) {
				Py_CLEAR(r);
				break;
			}
			if (tuple)
				PyTuple_SET_ITEM(r, i, x);
			else
				PyList_SET_ITEM(r, i, x);
		}
		return r;
	}
	case TW_KIND_DICT: {
		PyObject *r = PyDict_New();
		for (uint32_t i = 0; r != NULL && i < v->len; i++) {
			const tw_kv *e = &v->u.entries[i];
			PyObject *x = twpy_from_value(&e->val, mode);
			if (x == NULL ||
			    PyDict_SetItemString(r, e->key, x) < 0) {
				Py_XDECREF(x);
				Py_CLEAR(r);
				break;
			}
			Py_DECREF(x);
		}
		return r;
	}
	case TW_KIND_RREF: {
		tw_rref *h;
		tw_status st = tw_rref_from_value(v, &h);
		if (st != TW_OK) {
			PyErr_Format(PyExc_RuntimeError, "RRef: %s",
				     tw_errmsg(st));
			return NULL;
		}
		return twpy_rref_new(h);
	}
	case TW_KIND_ERROR:
		return Py_BuildValue("(isI)", (int)v->u.err->kind,
				     v->u.err->msg, v->u.err->origin);
	default:
		PyErr_Format(PyExc_RuntimeError, "unknown value kind %u",
			     v->kind);
		return NULL;
	}
}
