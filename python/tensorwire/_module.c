/* tensorwire._C: the agent of this process (init, shutdown, workers,
 * timeouts) and calls (rpc_async, remote). tensorwire.rpc is the
 * torch-compatible API over it. Every wait releases the GIL. */
#include "_tw.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

tw_agent *twpy_agent;
uint64_t twpy_gen;
PyObject *twpy_error_type;

uint32_t twpy_self_id(tw_agent *a)
{
	if (a == NULL)
		return 0;
	tw_worker_info wi;
	tw_agent_self(a, &wi);
	return wi.id;
}

PyObject *twpy_raise(tw_status kind, const char *msg, uint32_t origin)
{
	PyObject *e = Py_BuildValue("(isI)", (int)kind, msg, origin);
	if (e != NULL) {
		PyErr_SetObject(twpy_error_type, e);
		Py_DECREF(e);
	}
	return NULL;
}

PyObject *twpy_raise_status(tw_status st)
{
	return twpy_raise(st, tw_errmsg(st), twpy_self_id(twpy_agent));
}

static tw_agent *agent_or_raise(void)
{
	if (twpy_agent == NULL)
		PyErr_SetString(PyExc_RuntimeError,
				"RPC has not been initialized. Call "
				"torch.distributed.rpc.init_rpc first.");
	return twpy_agent;
}

/* ---- init and shutdown ------------------------------------------------ */

/* Functions served in Python, registered before the rendezvous. */
struct setup_ctx {
	PyObject *serve; /* dict name -> callable (references kept) */
	Py_ssize_t n;
	const char **names;
	PyObject **fns;
};

static tw_status setup_cb(tw_agent *a, void *arg)
{
	struct setup_ctx *s = arg;
	tw_status kst = twpy_register_keep(a);
	if (kst != TW_OK)
		return kst;
	for (Py_ssize_t i = 0; i < s->n; i++) {
		tw_status st = twpy_serve(a, s->names[i], s->fns[i]);
		if (st != TW_OK)
			return st;
	}
	return TW_OK;
}

static PyObject *py_init(PyObject *self, PyObject *args, PyObject *kw)
{
	(void)self;
	static char *kws[] = {"name",
			      "rank",
			      "world_size",
			      "rendezvous",
			      "timeout_ms",
			      "init_timeout_ms",
			      "num_loops",
			      "executor_threads",
			      "transport",
			      "secret",
			      "insecure",
			      "serve",
			      "yield_loops",
			      "transport_options",
			      "lend_loops",
			      "ignore_rref_leak",
			      "control_timeout_ms",
			      "log_level",
			      "same_host",
			      "same_host_options",
			      NULL};
	const char *name, *rdv, *transport = NULL, *secret = NULL;
	unsigned rank, world;
	long long timeout_ms = 60000, init_ms = 60000;
	unsigned loops = 1, exec = 2;
	int insecure = 0, yield_loops = 1, lend_loops = 1, ignore_leak = 0;
	unsigned control_ms = 30000;
	int log_level = -1, same_host = 1;
	PyObject *serve = NULL, *topts_dict = NULL, *sopts_dict = NULL;
	if (!PyArg_ParseTupleAndKeywords(
		    args, kw, "sIIs|LLIIzzpO!pOppIipO", kws, &name, &rank,
		    &world, &rdv, &timeout_ms, &init_ms, &loops, &exec,
		    &transport, &secret, &insecure, &PyDict_Type, &serve,
		    &yield_loops, &topts_dict, &lend_loops, &ignore_leak,
		    &control_ms, &log_level, &same_host, &sopts_dict))
		return NULL;
	if (twpy_agent != NULL) {
		PyErr_SetString(PyExc_RuntimeError,
				"RPC is already initialized");
		return NULL;
	}
	/* Checked before anything starts: a bad key fails here. */
	struct twpy_topts topts;
	if (twpy_topts_fill(transport, topts_dict, &topts) < 0)
		return NULL;
	struct twpy_topts sopts;
	if (twpy_topts_fill(TW_TRANSPORT_SHM, sopts_dict, &sopts) < 0) {
		twpy_topts_release(&topts);
		return NULL;
	}
	if (twpy_convert_init() < 0) {
		twpy_topts_release(&topts);
		twpy_topts_release(&sopts);
		return NULL;
	}
	struct setup_ctx s = {0};
	if (serve != NULL && (s.n = PyDict_GET_SIZE(serve)) > 0) {
		s.names = calloc((size_t)s.n, sizeof(*s.names));
		s.fns = calloc((size_t)s.n, sizeof(*s.fns));
		if (s.names == NULL || s.fns == NULL) {
			free(s.names);
			free(s.fns);
			twpy_topts_release(&topts);
			twpy_topts_release(&sopts);
			return PyErr_NoMemory();
		}
		Py_ssize_t pos = 0, i = 0;
		PyObject *k, *v;
		while (PyDict_Next(serve, &pos, &k, &v)) {
			s.names[i] = PyUnicode_AsUTF8(k);
			if (s.names[i] == NULL || !PyCallable_Check(v)) {
				for (Py_ssize_t j = 0; j < i; j++)
					Py_DECREF(s.fns[j]);
				free(s.names);
				free(s.fns);
				twpy_topts_release(&topts);
				if (!PyErr_Occurred())
					PyErr_SetString(PyExc_TypeError,
							"serve: name -> "
							"callable");
				return NULL;
			}
			/* Kept for the process's life: a call may come any
			 * time until shutdown. */
			Py_INCREF(v);
			s.fns[i++] = v;
		}
	}
	struct tw_agent_opts o;
	tw_agent_opts_init(&o, sizeof(o));
	o.name = name;
	o.rank = rank;
	o.world_size = world;
	o.rendezvous = rdv;
	o.default_timeout_ms = timeout_ms;
	o.init_timeout_ms = init_ms;
	o.num_loops = loops;
	o.executor_threads = exec;
	o.transport = transport;
	o.transport_opts = topts.ptr;
	o.secret = secret;
	o.insecure = insecure != 0;
	o.yield = yield_loops != 0;
	o.no_lend = lend_loops == 0;
	o.ignore_rref_leak = ignore_leak != 0;
	o.control_timeout_ms = control_ms;
	o.log_level = log_level;
	o.same_host = same_host != 0;
	o.same_host_opts = sopts.ptr;
	o.setup = setup_cb;
	o.setup_arg = &s;
	tw_agent *a = NULL;
	tw_status st;
	twpy_jobs_open();
	Py_BEGIN_ALLOW_THREADS;
	st = tw_agent_init(&o, &a);
	Py_END_ALLOW_THREADS;
	/* Read by tw_agent_init only. */
	twpy_topts_release(&topts);
	twpy_topts_release(&sopts);
	if (st != TW_OK) {
		/* The agent is gone with whatever it registered: the served
		 * functions' references are ours to drop again. */
		for (Py_ssize_t j = 0; j < s.n; j++)
			Py_XDECREF(s.fns[j]);
		free(s.names);
		free(s.fns);
		twpy_jobs_close();
		return twpy_raise(st, tw_errmsg(st), rank);
	}
	free(s.names);
	free(s.fns);
	twpy_agent = a;
	twpy_jobs_lend(tw_agent_lender(a));
	Py_RETURN_NONE;
}

/* _check_transport_options(transport, options): what init does with them,
 * without starting anything. */
static PyObject *py_check_topts(PyObject *self, PyObject *args)
{
	(void)self;
	const char *transport = NULL;
	PyObject *d = NULL;
	if (!PyArg_ParseTuple(args, "zO", &transport, &d))
		return NULL;
	struct twpy_topts t;
	if (twpy_topts_fill(transport, d, &t) < 0)
		return NULL;
	twpy_topts_release(&t);
	Py_RETURN_NONE;
}

static PyObject *py_dpdk_eal_cleanup(PyObject *self, PyObject *args)
{
	(void)self;
	(void)args;
	Py_BEGIN_ALLOW_THREADS;
	tw_dpdk_eal_cleanup();
	Py_END_ALLOW_THREADS;
	Py_RETURN_NONE;
}

static PyObject *py_shutdown(PyObject *self, PyObject *args)
{
	(void)self;
	int graceful = 1;
	long long timeout_ms = -1;
	if (!PyArg_ParseTuple(args, "|pL", &graceful, &timeout_ms))
		return NULL;
	tw_agent *a = agent_or_raise();
	if (a == NULL)
		return NULL;
	/* The agent serves (and Python functions run) until its graceful
	 * shutdown returns; new calls then fail with TW_ESHUTDOWN. */
	tw_status st;
	Py_BEGIN_ALLOW_THREADS;
	st = timeout_ms >= 0
		     ? tw_agent_shutdown_timeout(a, graceful != 0, timeout_ms)
		     : tw_agent_shutdown(a, graceful != 0);
	Py_END_ALLOW_THREADS;
	twpy_agent = NULL;
	twpy_gen++;
	twpy_jobs_close();
	twpy_drain();
	if (st != TW_OK)
		return twpy_raise(st, tw_errmsg(st), 0);
	Py_RETURN_NONE;
}

/* ---- workers and timeouts --------------------------------------------- */

/* The worker arg names (None = this one) into *wi; NULL with the
 * exception set, else wi. */
static tw_worker_info *worker_lookup(PyObject *arg, tw_worker_info *wi)
{
	tw_agent *a = agent_or_raise();
	if (a == NULL)
		return NULL;
	tw_status st = TW_OK;
	if (arg == Py_None) {
		tw_agent_self(a, wi);
	} else if (PyLong_Check(arg)) {
		long id = PyLong_AsLong(arg);
		if (id < 0 && PyErr_Occurred())
			return NULL;
		st = id < 0 || id > (long)UINT32_MAX
			     ? TW_ENOENT
			     : tw_agent_worker_info_by_id(a, (uint32_t)id, wi);
	} else if (PyUnicode_Check(arg)) {
		st = tw_agent_worker_info(a, PyUnicode_AsUTF8(arg), wi);
	} else {
		PyErr_SetString(PyExc_TypeError,
				"a worker is a name, an id or None");
		return NULL;
	}
	if (st != TW_OK) {
		twpy_raise_status(st);
		return NULL;
	}
	return wi;
}

/* worker_info(None | name | id) -> (id, name) */
static PyObject *py_worker_info(PyObject *self, PyObject *arg)
{
	(void)self;
	tw_worker_info wi;
	if (worker_lookup(arg, &wi) == NULL)
		return NULL;
	return Py_BuildValue("(Is)", wi.id, wi.name);
}

/* worker_addr(None | name | id) -> the address it announced ("tcp://...") */
static PyObject *py_worker_addr(PyObject *self, PyObject *arg)
{
	(void)self;
	tw_worker_info wi;
	if (worker_lookup(arg, &wi) == NULL)
		return NULL;
	return PyUnicode_FromString(wi.addr);
}

static PyObject *py_worker_infos(PyObject *self, PyObject *args)
{
	(void)self;
	(void)args;
	tw_agent *a = agent_or_raise();
	if (a == NULL)
		return NULL;
	uint32_t n = tw_agent_world_size(a);
	PyObject *r = PyList_New(n);
	for (uint32_t i = 0; r != NULL && i < n; i++) {
		tw_worker_info wi;
		if (tw_agent_worker_info_by_id(a, i, &wi) != TW_OK) {
			Py_DECREF(r);
			return twpy_raise_status(TW_ENOENT);
		}
		PyList_SET_ITEM(r, i, Py_BuildValue("(Is)", wi.id, wi.name));
	}
	return r;
}

static PyObject *py_timeout(PyObject *self, PyObject *args)
{
	(void)self;
	long long ms = -2;
	if (!PyArg_ParseTuple(args, "|L", &ms))
		return NULL;
	tw_agent *a = agent_or_raise();
	if (a == NULL)
		return NULL;
	if (ms != -2) {
		tw_status st = tw_agent_set_default_timeout(a, ms);
		if (st != TW_OK)
			return twpy_raise_status(st);
	}
	return PyLong_FromLongLong(tw_agent_default_timeout(a));
}

/* ---- calls ------------------------------------------------------------- */

/* The call's arguments, as values; *mode from the tensors they held. */
static int call_args(PyObject *pa, PyObject *pk, tw_value *a, tw_value *k,
		     int *mode)
{
	struct twpy_conv cv = {0};
	if (twpy_to_value(pa, a, &cv) < 0)
		return -1;
	if (pk == Py_None) {
		tw_value_dict(k, 0);
	} else if (twpy_to_value(pk, k, &cv) < 0) {
		tw_value_destroy(a);
		return -1;
	}
	*mode = cv.seen == TWPY_NUMPY ? TWPY_NUMPY : TWPY_TORCH;
	return 0;
}

/* A call's parts from Python: (to_id, fn, args_tuple, kwargs_dict_or_None,
 * timeout_ms), the arguments as values (destroy them) and how its result's
 * tensors come back. NULL with an exception set. */
struct pycall {
	uint32_t to;
	const char *fn;
	int64_t ms;
	tw_value args, kwargs;
	int mode;
	unsigned flags; /* TW_CALL_* */
};

static tw_agent *parse_call(PyObject *args, struct pycall *c)
{
	long long to, ms;
	PyObject *pa, *pk;
	int waited = 0;
	if (!PyArg_ParseTuple(args, "LsO!OL|p", &to, &c->fn, &PyTuple_Type, &pa,
			      &pk, &ms, &waited))
		return NULL;
	c->flags = waited ? TW_CALL_WAITED : 0;
	if (to < 0 || to > UINT32_MAX) {
		twpy_raise(TW_ENOENT, "no worker with that id",
			   twpy_self_id(twpy_agent));
		return NULL;
	}
	tw_agent *a = agent_or_raise();
	if (a == NULL)
		return NULL;
	twpy_drain();
	c->to = (uint32_t)to;
	c->ms = ms;
	if (call_args(pa, pk, &c->args, &c->kwargs, &c->mode) < 0)
		return NULL;
	return a;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The run loop's queue is full (TW_ENOSPC): a Python caller that issues
 * calls faster than they leave waits for room, as torch's rpc_async
 * never refuses a call for that. The wait counts against the call's
 * timeout (0: none): the call gets what is left, and a wait that uses it
 * all fails as a timeout. -1 with a Python error (a signal's, or the
 * timeout's). */
static int await_room(tw_agent *a, struct pycall *c, tw_future **f,
		      tw_status *st)
{
	int64_t ms = c->ms < 0 ? tw_agent_default_timeout(a) : c->ms;
	uint64_t start = now_ms();
	for (unsigned n = 0; *st == TW_ENOSPC; n++) {
		int64_t left = 0; /* none */
		if (ms > 0) {
			left = ms - (int64_t)(now_ms() - start);
			if (left <= 0) {
				char msg[256];
				snprintf(msg, sizeof(msg),
					 "RPC ran for more than set timeout "
					 "(%lld ms) and will now be marked "
					 "with an error: it waited that long "
					 "for room in the run loop's queue "
					 "(too many calls in flight)",
					 (long long)ms);
				twpy_raise(TW_ETIMEDOUT, msg, twpy_self_id(a));
				return -1;
			}
		}
		if (n % 64 == 63 && PyErr_CheckSignals() < 0)
			return -1;
		Py_BEGIN_ALLOW_THREADS;
		if (n < 16)
			sched_yield();
		else
			usleep(n < 64 ? 20 : 200);
		Py_END_ALLOW_THREADS;
		*st = tw_rpc_async_ex(a, c->to, c->fn, &c->args, &c->kwargs,
				      left, c->flags, f);
	}
	return 0;
}

/* rpc_async(to_id, fn, args_tuple, kwargs_dict_or_None, timeout_ms,
 *           waited=False) -> CFuture; waited: the caller waits for it
 * next (rpc_sync: TW_CALL_WAITED) */
static PyObject *py_rpc_async(PyObject *self, PyObject *args)
{
	(void)self;
	struct pycall c;
	tw_agent *a = parse_call(args, &c);
	if (a == NULL)
		return NULL;
	tw_future *f;
	tw_status st = tw_rpc_async_ex(a, c.to, c.fn, &c.args, &c.kwargs, c.ms,
				       c.flags, &f);
	int room = st == TW_ENOSPC ? await_room(a, &c, &f, &st) : 0;
	tw_value_destroy(&c.args);
	tw_value_destroy(&c.kwargs);
	if (room < 0)
		return NULL;
	if (st != TW_OK)
		return twpy_raise_status(st);
	return twpy_future_new(f, c.mode);
}

/* remote(to_id, fn, args_tuple, kwargs_dict_or_None, timeout_ms) -> RRef */
static PyObject *py_remote(PyObject *self, PyObject *args)
{
	(void)self;
	struct pycall c;
	tw_agent *a = parse_call(args, &c);
	if (a == NULL)
		return NULL;
	tw_rref *r;
	tw_status st = tw_remote_id(a, c.to, c.fn, &c.args, &c.kwargs, c.ms,
				    &r);
	tw_value_destroy(&c.args);
	tw_value_destroy(&c.kwargs);
	if (st != TW_OK)
		return twpy_raise_status(st);
	return twpy_rref_new(r);
}

/* rref_stats() -> dict of the agent's RRef counters */
static PyObject *py_rref_stats(PyObject *self, PyObject *args)
{
	(void)self;
	(void)args;
	struct tw_rref_stats s;
	tw_agent_rref_stats(twpy_agent, &s);
	return Py_BuildValue("{sKsKsKsKsKsKsKsKsK}", "waiting",
			     (unsigned long long)s.waiting, "owned",
			     (unsigned long long)s.owned, "owner_users",
			     (unsigned long long)s.owner_users, "forks_pending",
			     (unsigned long long)s.forks_pending, "users",
			     (unsigned long long)s.users, "pending_users",
			     (unsigned long long)s.pending_users,
			     "deletes_sent", (unsigned long long)s.deletes_sent,
			     "deletes_received",
			     (unsigned long long)s.deletes_received, "refused",
			     (unsigned long long)s.refused);
}

/* agent_stats() -> dict of tw_agent_stats, every counter */
static PyObject *py_agent_stats(PyObject *self, PyObject *args)
{
	(void)self;
	(void)args;
	tw_agent *a = agent_or_raise();
	if (a == NULL)
		return NULL;
	struct tw_agent_stats s;
	tw_agent_get_stats(a, &s);
	PyObject *d = PyDict_New();
	PyObject *v;
#define X(f)                                                                   \
	if (d != NULL) {                                                       \
		v = PyLong_FromUnsignedLongLong((unsigned long long)s.f);      \
		if (v == NULL || PyDict_SetItemString(d, #f, v) < 0)           \
			Py_CLEAR(d);                                           \
		Py_XDECREF(v);                                                 \
	}
	X(calls_started)
	X(calls_sent)
	X(calls_served)
	X(late_responses)
	X(bad_frames)
	X(timeouts)
	X(exec_jobs)
	X(exec_expired)
	X(auth_ok)
	X(auth_failed)
	X(auth_timeouts)
	X(auth_refused)
	X(spoofed_frames)
	X(limit_refusals)
	X(offloaded)
	X(rx_pauses)
	X(oversize)
	X(auth_evicted)
	X(lent_waits)
	X(connect_failures)
	X(redial_waits)
	X(conns_same_host)
	X(conns_shm)
	X(same_host_fallbacks)
#undef X
	return d;
}

static PyObject *py_status_names(PyObject *self, PyObject *args)
{
	(void)self;
	(void)args;
	PyObject *d = PyDict_New();
	for (int k = 0; d != NULL && k < TW_STATUS_COUNT_; k++) {
		PyObject *v = PyLong_FromLong(k);
		if (v == NULL ||
		    PyDict_SetItemString(d, tw_status_name((tw_status)k), v) <
			    0) {
			Py_XDECREF(v);
			Py_CLEAR(d);
			break;
		}
		Py_DECREF(v);
	}
	return d;
}

static PyMethodDef methods[] = {
	{"init", (PyCFunction)(void (*)(void))py_init,
	 METH_VARARGS | METH_KEYWORDS,
	 "Start this process's agent and join the group (GIL released)."},
	{"_check_transport_options", py_check_topts, METH_VARARGS,
	 "_check_transport_options(transport, options): raise as init would "
	 "for a bad transport_options dict; starts nothing."},
	{"dpdk_eal_cleanup", py_dpdk_eal_cleanup, METH_NOARGS,
	 "Release the DPDK EAL once every DPDK agent of the process has shut "
	 "down (tw_dpdk_eal_cleanup; no DPDK agent can start afterwards)."},
	{"shutdown", py_shutdown, METH_VARARGS,
	 "shutdown(graceful=True, timeout_ms=-1)."},
	{"worker_info", py_worker_info, METH_O, "(id, name) of a worker."},
	{"worker_addr", py_worker_addr, METH_O,
	 "The address a worker announced to the group (its first run "
	 "loop's)."},
	{"worker_infos", py_worker_infos, METH_NOARGS, "Every worker."},
	{"default_timeout", py_timeout, METH_VARARGS,
	 "The default call timeout in ms; sets it when given one."},
	{"rpc_async", py_rpc_async, METH_VARARGS, "Call fn on a worker."},
	{"remote", py_remote, METH_VARARGS, "Run fn on a worker, keep it."},
	{"rref_stats", py_rref_stats, METH_NOARGS, "RRef counters."},
	{"agent_stats", py_agent_stats, METH_NOARGS,
	 "Some of the agent's counters (tw_agent_stats)."},
	{"status_names", py_status_names, METH_NOARGS,
	 "tw_status names -> numbers."},
	{"wait_all", twpy_wait_all, METH_O,
	 "Wait for CFutures (GIL released); False at the first failure."},
	{"_worker_blocked", twpy_worker_blocked, METH_O,
	 "A Python worker blocks (True) or goes on (False): others may take "
	 "the queue meanwhile."},
	{"_next_job", twpy_next_job, METH_NOARGS,
	 "The next job for a Python worker (None: shut down)."},
	{"_set_rref_class", twpy_set_rref_class, METH_O,
	 "RRefs are made as this CRRef subclass."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT,
	"tensorwire._C",
	"tensorwire's C core: see tensorwire.rpc for the API.",
	-1,
	methods,
	NULL,
	NULL,
	NULL,
	NULL,
};

PyMODINIT_FUNC PyInit__C(void);
PyMODINIT_FUNC PyInit__C(void)
{
	if (PyType_Ready(&twpy_future_type) < 0 ||
	    PyType_Ready(&twpy_rref_type) < 0 ||
	    PyType_Ready(&twpy_job_type) < 0)
		return NULL;
	PyObject *m = PyModule_Create(&module);
	if (m == NULL)
		return NULL;
	twpy_error_type = PyErr_NewException("tensorwire._C.RemoteError", NULL,
					     NULL);
	Py_INCREF(&twpy_future_type);
	Py_INCREF(&twpy_rref_type);
	if (twpy_error_type == NULL ||
	    PyModule_AddObject(m, "RemoteError", twpy_error_type) < 0 ||
	    PyModule_AddObject(m, "CFuture", (PyObject *)&twpy_future_type) <
		    0 ||
	    PyModule_AddObject(m, "CRRef", (PyObject *)&twpy_rref_type) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	Py_INCREF(twpy_error_type);
	if (twpy_topts_add_constants(m) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
