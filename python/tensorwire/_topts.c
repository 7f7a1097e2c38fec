/* tensorwire._C: RpcBackendOptions.transport_options, a dict keyed by the
 * field names of the transport's C options struct (struct tw_uring_opts,
 * struct tw_dpdk_opts; same_host_options: struct tw_shm_opts), into that
 * struct. Every key is checked against a
 * table of the struct's fields before anything starts. */
#include "_tw.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tw_config.h"

enum topt_kind { K_STR, K_BOOL, K_U16, K_U32, K_U64, K_SIZE, K_INT };

static const char *const kind_names[] = {
	[K_STR] = "a str (or None)", [K_BOOL] = "a bool", [K_U16] = "an int",
	[K_U32] = "an int",          [K_U64] = "an int",  [K_SIZE] = "an int",
	[K_INT] = "an int",
};

struct topt {
	const char *name;
	size_t off;
	enum topt_kind kind;
};

/* Every field of the structs but opts_size and transport (set by their
 * init), in the headers' order. */
/* clang-format off */
#define D(f, k) {#f, offsetof(struct tw_dpdk_opts, f), k}
/* clang-format on */
static const struct topt dpdk_fields[] = {
	D(eal_args, K_STR),
	D(port, K_STR),
	D(local_ip, K_STR),
	D(udp_base_port, K_U16),
	D(mtu, K_U16),
	D(rx_desc, K_U16),
	D(tx_desc, K_U16),
	D(mbufs, K_U32),
	D(mbuf_cache, K_U32),
	D(ext_mbufs, K_U32),
	D(steer_ring, K_U32),
	D(no_offload, K_BOOL),
	D(no_flow, K_BOOL),
	D(credits, K_U32),
	D(rx_window, K_U32),
	D(rto_ns, K_U64),
	D(dead_ns, K_U64),
	D(idle_wake_ns, K_U64),
	D(max_sessions, K_U32),
	D(max_queued, K_U32),
	D(zc_threshold, K_U64),
	D(rx_pool_buf_size, K_U32),
	D(rx_pool_count, K_U32),
	D(burst, K_U32),
	D(sw_udp_csum_off, K_BOOL),
	D(no_pkt_tag, K_BOOL),
	D(asm_bytes, K_U64),
	D(asm_stall_ns, K_U64),
	D(ooo_max, K_U32),
	D(rexmit_max, K_U32),
	D(accept_timeout_ns, K_U64),
	D(ack_delay_ns, K_U64),
	{NULL, 0, K_STR},
};
#undef D

/* clang-format off */
#define U(f, k) {#f, offsetof(struct tw_uring_opts, f), k}
/* clang-format on */
static const struct topt uring_fields[] = {
	U(listen_host, K_STR),
	U(recv_buf_size, K_U32),
	U(recv_buf_count, K_U32),
	U(max_queued, K_U32),
	U(zc_threshold, K_U64),
	U(large_frame, K_U32),
	U(sockbuf, K_INT),
	U(rx_pool_buf_size, K_U32),
	U(rx_pool_count, K_U32),
	U(large_cache_bytes, K_SIZE),
	U(zc_same_host, K_BOOL),
	U(busy_poll_conns, K_U32),
	U(busy_poll_ns, K_U64),
	U(cc_local, K_STR),
	U(cc_remote, K_STR),
	U(asm_worker_bytes, K_U64),
	U(asm_host_bytes, K_U64),
	U(stall_timeout_ms, K_U32),
	U(max_conns_per_host, K_U32),
	U(max_conns, K_U32),
	U(user_timeout_ms, K_U32),
	U(connect_timeout_ms, K_U32),
	U(listen_port, K_U16),
	U(advertise_host, K_STR),
	U(rto_max_ms, K_U32),
	{NULL, 0, K_STR},
};
#undef U

/* clang-format off */
#define S(f, k) {#f, offsetof(struct tw_shm_opts, f), k}
/* clang-format on */
static const struct topt shm_fields[] = {
	S(dir, K_STR),
	S(socket_mode, K_U32),
	S(ring_size, K_U32),
	S(max_queued, K_U32),
	S(rx_pool_buf_size, K_U32),
	S(rx_pool_count, K_U32),
	S(large_frame, K_U32),
	S(large_cache_bytes, K_SIZE),
	S(asm_worker_bytes, K_U64),
	S(stall_timeout_ms, K_U32),
	S(max_conns, K_U32),
	S(connect_timeout_ms, K_U32),
	S(no_rings, K_BOOL),
	S(cma_threshold, K_U64),
	{NULL, 0, K_STR},
};
#undef S

static const struct topt *field_find(const struct topt *t, const char *name)
{
	for (; t->name != NULL; t++)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

/* Whether every key of d names a field of t. */
static bool all_known(const struct topt *t, PyObject *d)
{
	Py_ssize_t pos = 0;
	PyObject *k, *v;
	while (PyDict_Next(d, &pos, &k, &v)) {
		const char *s = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL;
		if (s == NULL) {
			PyErr_Clear();
			return false;
		}
		if (field_find(t, s) == NULL)
			return false;
	}
	return true;
}

/* "a, b, c": the valid keys, for messages. */
static PyObject *field_list(const struct topt *t)
{
	PyObject *l = PyList_New(0);
	if (l == NULL)
		return NULL;
	for (; t->name != NULL; t++) {
		PyObject *s = PyUnicode_FromString(t->name);
		if (s == NULL || PyList_Append(l, s) < 0) {
			Py_XDECREF(s);
			Py_DECREF(l);
			return NULL;
		}
		Py_DECREF(s);
	}
	PyObject *sep = PyUnicode_FromString(", ");
	PyObject *out = sep != NULL ? PyUnicode_Join(sep, l) : NULL;
	Py_XDECREF(sep);
	Py_DECREF(l);
	return out;
}

/* TypeError: v is not what field f of transport tname takes. */
static int wrong_type(const struct topt *f, PyObject *v, const char *tname)
{
	PyErr_Format(PyExc_TypeError,
		     "transport_options['%s'] of transport '%s' must be %s, "
		     "got %s",
		     f->name, tname, kind_names[f->kind], Py_TYPE(v)->tp_name);
	return -1;
}

static int set_int(const struct topt *f, PyObject *v, void *base,
		   const char *tname)
{
	if (!PyLong_Check(v) || PyBool_Check(v))
		return wrong_type(f, v, tname);
	char *p = (char *)base + f->off;
	if (f->kind == K_INT) {
		int over = 0;
		long long x = PyLong_AsLongLongAndOverflow(v, &over);
		if (x == -1 && PyErr_Occurred())
			return -1;
		if (over != 0 || x < INT_MIN || x > INT_MAX) {
			PyErr_Format(PyExc_ValueError,
				     "transport_options['%s'] = %S is out of "
				     "range for transport '%s' (a C int: %d .. "
				     "%d)",
				     f->name, v, tname, INT_MIN, INT_MAX);
			return -1;
		}
		int i = (int)x;
		memcpy(p, &i, sizeof(i));
		return 0;
	}
	unsigned long long max = f->kind == K_U16    ? UINT16_MAX
				 : f->kind == K_U32  ? UINT32_MAX
				 : f->kind == K_SIZE ? SIZE_MAX
						     : UINT64_MAX;
	unsigned long long x = PyLong_AsUnsignedLongLong(v);
	bool out = false;
	if (x == (unsigned long long)-1 && PyErr_Occurred()) {
		if (!PyErr_ExceptionMatches(PyExc_OverflowError))
			return -1;
		PyErr_Clear(); /* negative, or past unsigned long long */
		out = true;
	}
	if (out || x > max) {
		int bits = f->kind == K_U16    ? 16
			   : f->kind == K_U32  ? 32
			   : f->kind == K_SIZE ? (int)(8 * sizeof(size_t))
					       : 64;
		PyErr_Format(PyExc_ValueError,
			     "transport_options['%s'] = %S is out of range "
			     "for transport '%s' (an unsigned %d-bit int: 0 .. "
			     "%llu)",
			     f->name, v, tname, bits, max);
		return -1;
	}
	switch (f->kind) {
	case K_U16: {
		uint16_t u = (uint16_t)x;
		memcpy(p, &u, sizeof(u));
		break;
	}
	case K_U32: {
		uint32_t u = (uint32_t)x;
		memcpy(p, &u, sizeof(u));
		break;
	}
	case K_SIZE: {
		size_t u = (size_t)x;
		memcpy(p, &u, sizeof(u));
		break;
	}
	default: {
		uint64_t u = (uint64_t)x;
		memcpy(p, &u, sizeof(u));
		break;
	}
	}
	return 0;
}

static int set_field(struct twpy_topts *t, const struct topt *f, PyObject *v,
		     void *base, const char *tname)
{
	char *p = (char *)base + f->off;
	switch (f->kind) {
	case K_STR: {
		const char *s = NULL;
		if (v != Py_None) {
			if (!PyUnicode_Check(v))
				return wrong_type(f, v, tname);
			Py_ssize_t n;
			s = PyUnicode_AsUTF8AndSize(v, &n);
			if (s == NULL)
				return -1;
			if ((size_t)n != strlen(s)) {
				PyErr_Format(PyExc_ValueError,
					     "transport_options['%s'] holds a "
					     "NUL character",
					     f->name);
				return -1;
			}
			/* The UTF-8 lives in the str: keep the str for
			 * tw_agent_init (another thread may change the
			 * dict while the GIL is released). */
			if (PyList_Append(t->keep, v) < 0)
				return -1;
		}
		memcpy(p, &s, sizeof(s));
		return 0;
	}
	case K_BOOL: {
		if (!PyBool_Check(v))
			return wrong_type(f, v, tname);
		bool b = v == Py_True;
		memcpy(p, &b, sizeof(b));
		return 0;
	}
	default:
		return set_int(f, v, base, tname);
	}
}

int twpy_topts_fill(const char *transport, PyObject *dict, struct twpy_topts *t)
{
	memset(t, 0, sizeof(*t));
	if (dict == NULL || dict == Py_None)
		return 0;
	if (!PyDict_Check(dict)) {
		PyErr_Format(PyExc_TypeError,
			     "transport_options must be a dict (field name -> "
			     "value), got %s",
			     Py_TYPE(dict)->tp_name);
		return -1;
	}
	const struct topt *fields;
	const char *tname;
	void *base;
	bool implied = transport == NULL;
	if (implied) {
		/* The struct the keys are fields of: io_uring's (the default
		 * transport) when they all are, else DPDK's when they all
		 * are; C's transport = NULL then takes its transport. */
		transport = !all_known(uring_fields, dict) &&
					    all_known(dpdk_fields, dict)
				    ? TW_TRANSPORT_DPDK
				    : TW_TRANSPORT_URING;
	}
	if (strcmp(transport, TW_TRANSPORT_URING) == 0) {
		tw_uring_opts_init(&t->u, sizeof(t->u));
		fields = uring_fields;
		base = &t->u;
		tname = TW_TRANSPORT_URING;
	} else if (strcmp(transport, TW_TRANSPORT_DPDK) == 0) {
		tw_dpdk_opts_init(&t->d, sizeof(t->d));
		fields = dpdk_fields;
		base = &t->d;
		tname = TW_TRANSPORT_DPDK;
	} else if (strcmp(transport, TW_TRANSPORT_SHM) == 0) {
		tw_shm_opts_init(&t->s, sizeof(t->s));
		fields = shm_fields;
		base = &t->s;
		tname = TW_TRANSPORT_SHM;
	} else {
		PyErr_Format(PyExc_ValueError,
			     "transport_options given for unknown transport "
			     "'%s' (transports: '%s', '%s')",
			     transport, TW_TRANSPORT_URING, TW_TRANSPORT_DPDK);
		return -1;
	}
	t->keep = PyList_New(0);
	if (t->keep == NULL)
		return -1;
	Py_ssize_t pos = 0;
	PyObject *k, *v;
	while (PyDict_Next(dict, &pos, &k, &v)) {
		const char *name = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k)
						      : NULL;
		const struct topt *f = name != NULL ? field_find(fields, name)
						    : NULL;
		if (f == NULL) {
			PyErr_Clear();
			PyObject *valid = field_list(fields);
			if (valid != NULL)
				PyErr_Format(
					PyExc_ValueError,
					"transport_options: unknown key %R for "
					"transport '%s'%s; valid keys: %U",
					k, tname,
					implied ? " (transport not given: the "
						  "default; pass "
						  "transport='dpdk' for DPDK's "
						  "options)"
						: "",
					valid);
			Py_XDECREF(valid);
			goto fail;
		}
		if (set_field(t, f, v, base, tname) < 0)
			goto fail;
	}
	t->ptr = base;
	return 0;
fail:
	twpy_topts_release(t);
	return -1;
}

void twpy_topts_release(struct twpy_topts *t)
{
	Py_CLEAR(t->keep);
	t->ptr = NULL;
}

int twpy_topts_add_constants(PyObject *m)
{
	return PyModule_AddIntConstant(m, "HAVE_DPDK", TW_HAVE_DPDK);
}
