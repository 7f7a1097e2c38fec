/* tensorwire._C: the CPython extension's internals, shared by its files.
 *
 * Threads and the GIL (issue 14, docs/python.md): the run loops never take
 * the GIL. Anything that needs Python (a function served in Python, a
 * future's callback) is queued as a job (_jobs.c) that Python worker
 * threads take; every wait (init, calls, futures, shutdown) releases it. */
#ifndef TW_PY_TW_H
#define TW_PY_TW_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>

#include <tensorwire/tensorwire.h>

/* The one agent of this process (torch's rpc has one per process too). */
extern tw_agent *twpy_agent;
/* Bumped by each shutdown: objects made under an earlier agent refuse. */
extern uint64_t twpy_gen;
/* This worker's id (0 without an agent). */
uint32_t twpy_self_id(tw_agent *a);

/* ---- values (_convert.c) ---- */

/* What kind of tensors a call's arguments held, so its result comes back
 * the same way (torch in, torch out). */
enum { TWPY_TORCH = 1, TWPY_NUMPY = 2 };

struct twpy_conv {
	int seen; /* TWPY_* bits of the tensors converted */
};

/* Python object -> owned tw_value. -1 with a Python exception set. */
int twpy_to_value(PyObject *o, tw_value *out, struct twpy_conv *cv);
/* tw_value -> new Python object (tensors as torch, or numpy when mode is
 * TWPY_NUMPY), sharing tensor bytes (DLPack). NULL with an exception. */
PyObject *twpy_from_value(const tw_value *v, int mode);
/* Run the deleters of the tensors tensorwire let go of (queued by
 * whichever thread dropped them, a run loop perhaps): under the GIL. */
void twpy_drain(void);
/* Import torch / numpy hooks; -1 with an exception. */
int twpy_convert_init(void);

/* ---- futures (_future.c) ---- */

extern PyTypeObject twpy_future_type;
/* A new CFuture owning f's reference; mode: how to convert its value. */
PyObject *twpy_future_new(tw_future *f, int mode);
PyObject *twpy_wait_all(PyObject *self, PyObject *list);

/* ---- RRefs (_rref.c) ---- */

extern PyTypeObject twpy_rref_type;
/* A new RRef object taking r's reference. */
PyObject *twpy_rref_new(tw_rref *r);
/* The handle of an RRef object (borrowed), or NULL if o is not one. */
tw_rref *twpy_rref_handle(PyObject *o);
/* The handle of RRef object o if its agent still runs, else NULL with
 * RuntimeError set. */
tw_rref *twpy_rref_live(PyObject *o);
/* _C._set_rref_class(cls): RRefs are made as cls (a CRRef subclass). */
PyObject *twpy_set_rref_class(PyObject *self, PyObject *cls);
/* The function rpc.RRef(value) calls on its own worker. */
#define TWPY_KEEP_FN "tw::py_keep"
tw_status twpy_register_keep(tw_agent *a);

/* ---- jobs for Python threads (_jobs.c) ---- */

extern PyTypeObject twpy_job_type;
/* Register a Python function served under name (a C handler queues each
 * call for the Python workers). Not under the GIL: fn is already
 * INCREF'd and kept for the agent's life. */
tw_status twpy_serve(tw_agent *a, const char *name, PyObject *fn);
/* Queue callback cb(fut) for a Python worker once f is done (any thread,
 * no GIL needed). Takes references on cb and fut_obj. */
int twpy_when_done(tw_future *f, PyObject *cb, PyObject *fut_obj);
/* The queue opens at init and closes at shutdown (workers then get
 * None). */
void twpy_jobs_open(void);
void twpy_jobs_lend(tw_lender *h);
void twpy_jobs_close(void);
PyObject *twpy_next_job(PyObject *self, PyObject *args);
void twpy_block_begin(void);
PyObject *twpy_worker_blocked(PyObject *self, PyObject *flag);
void twpy_block_end(void);

/* ---- transport options (_topts.c) ---- */

/* RpcBackendOptions.transport_options: a dict keyed by the field names of
 * the transport's options struct, converted into it. */
struct twpy_topts {
	union {
		struct tw_uring_opts u;
		struct tw_dpdk_opts d;
		struct tw_shm_opts s; /* same_host_options */
	};
	const void *ptr; /* for tw_agent_opts.transport_opts; NULL: none */
	PyObject *keep;  /* the str values ptr's strings point into */
};
/* Fill *t from dict (NULL or None: none, t->ptr NULL) for transport (NULL:
 * the struct the keys are fields of, io_uring's when they all are; "shm":
 * the same-host transport's, same_host_options). -1
 * with ValueError (an unknown key, naming the valid ones; an integer out
 * of its field's range) or TypeError (a value of the wrong type), each
 * naming the key. On success the strings stay valid until
 * twpy_topts_release. */
int twpy_topts_fill(const char *transport, PyObject *dict,
		    struct twpy_topts *t);
void twpy_topts_release(struct twpy_topts *t);
/* _C.HAVE_DPDK: whether this build has the DPDK transport. */
int twpy_topts_add_constants(PyObject *m);

/* Raise a Python exception for a failed tw call: the module's
 * RemoteError(kind, message, origin) for the Python layer to map. */
PyObject *twpy_raise(tw_status kind, const char *msg, uint32_t origin);
PyObject *twpy_raise_status(tw_status st);
extern PyObject *twpy_error_type;

#endif
