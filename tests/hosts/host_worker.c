/* A worker of the multi-namespace suite (tests/hosts/test_hosts.py, issue
 * 19 part 5): one per network namespace, each namespace standing in for a
 * host. It joins the group (rank 0 hosts the rendezvous in its namespace),
 * serves on the wildcard 0.0.0.0 (io_uring) or on its namespace's veth
 * through net_af_packet (DPDK), with the group's secret, then obeys one
 * command per stdin line and answers each with one stdout line, "ok JSON"
 * or "err JSON", so that the driver can change the network between
 * commands and measure what the calls saw:
 *
 *   mesh BIG_BYTES INFLIGHT TIMEOUT_MS
 *       to every other worker: aten:: builtins (add, mul, matmul, sum),
 *       the user functions t::whoami and t::echo (a small tensor, and a
 *       BIG_BYTES one echoed byte-exact), t::fill (a BIG_BYTES result),
 *       remote() + to_here of aten::add and of t::fill; then INFLIGHT
 *       rpc_async calls spread over the peers, all in flight, each result
 *       checked -> {"calls", "bytes", "ms", "failed", "first"}
 *   call PEER TIMEOUT_MS
 *       one t::echo call -> {"st", "msg", "ms"}
 *   probe PEER TIMEOUT_MS LIMIT_MS
 *       t::echo calls (each with TIMEOUT_MS) until one succeeds or LIMIT_MS
 *       passed -> {"ok", "ms" (to the first success), "tries", "last"}
 *   probeall PEER,PEER,... TIMEOUT_MS LIMIT_MS
 *       probe each peer in turn -> {"peers": [{"to", "ok", "ms" (from the
 *       command's start), "tries", "first_st", "first" (how the first try
 *       failed, if it did), "st", "last"}]}
 *   bg LABEL PEER FN ARG TIMEOUT_MS
 *       start a call of FN (echo: t::echo(ARG); sleep: t::sleep(ARG ms))
 *       and keep it -> {"started"}
 *   bgwait LIMIT_MS
 *       wait for every kept call (at most LIMIT_MS) -> {"calls": [{"label",
 *       "st", "msg", "ms" (its start to its completion)}]}
 *   alive PEER   whether this worker still counts PEER alive
 *   shutdown TIMEOUT_MS
 *       graceful shutdown with that deadline -> {"st", "msg", "ms"}; exits
 *   quit         immediate shutdown; exits
 *
 * Options: --rank R --world N --rendezvous tcp://HOST:PORT --secret-file F
 * [--user-timeout-ms MS] [--connect-timeout-ms MS] and, for DPDK,
 * --dpdk-eal ARGS --dpdk-port PORT --dpdk-ip IP [--dpdk-dead-ms MS].
 * Workers are named w<R>. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <tensorwire/tensorwire.h>

#define MAX_WORLD 8
#define MAX_BG 64
#define MAX_INFLIGHT 4096

static tw_agent *A;
static int g_rank, g_world;
static char g_name[16];
static bool g_dpdk;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double ms_since(uint64_t t0)
{
	return (double)(now_ns() - t0) / 1e6;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* s as a JSON string (quotes included) into out. */
static void jstr(char *out, size_t cap, const char *s)
{
	size_t n = 0;
	if (cap < 3) {
		if (cap > 0)
			out[0] = '\0';
		return;
	}
	out[n++] = '"';
	for (; *s != '\0' && n + 8 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c < 0x20) {
			n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
		} else {
			out[n++] = (char)c;
		}
	}
	out[n++] = '"';
	out[n] = '\0';
}

/* ---- what every worker serves ---- */

/* The bytes of a pattern tensor: position and seed both matter, so a
 * byte out of place or from another call shows. */
static uint8_t pat(uint64_t i, uint64_t seed)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull +
		     seed * 0xbf58476d1ce4e5b9ull;
	return (uint8_t)(x >> 56);
}

static tw_status pattern_tensor(tw_tensor *t, int64_t n, uint64_t seed)
{
	tw_status st = tw_tensor_alloc(t, TW_UINT8, 1, &n);
	if (st != TW_OK)
		return st;
	uint8_t *p = t->data;
	for (int64_t i = 0; i < n; i++)
		p[i] = pat((uint64_t)i, seed);
	return TW_OK;
}

/* NULL when v is the pattern tensor (n, seed), else what differs. */
static const char *pattern_check(const tw_value *v, int64_t n, uint64_t seed,
				 char *why, size_t len)
{
	const tw_tensor *t;
	if (tw_value_get_tensor(v, &t) != TW_OK) {
		snprintf(why, len, "not a tensor but a %s",
			 tw_kind_name((tw_kind)v->kind));
		return why;
	}
	int64_t numel = 0;
	if (t->dtype != TW_UINT8 || t->ndim != 1 ||
	    tw_tensor_numel(t, &numel) != TW_OK || numel != n) {
		snprintf(why, len,
			 "a %s tensor of %" PRId64 " elements, not "
			 "uint8[%" PRId64 "]",
			 tw_dtype_name(t->dtype), numel, n);
		return why;
	}
	const uint8_t *p = t->data;
	int64_t s = t->strides[0];
	for (int64_t i = 0; i < n; i++)
		if (p[i * s] != pat((uint64_t)i, seed)) {
			snprintf(why, len,
				 "byte %" PRId64 " of %" PRId64 " differs", i,
				 n);
			return why;
		}
	return NULL;
}

static tw_status fn_echo(tw_call_ctx *ctx, const tw_value *args,
			 const tw_value *kwargs, tw_value *result, void *arg)
{
	if (args->len == 0)
		return TW_OK;
	return tw_value_clone(result, &args->u.items[0]);
}

static tw_status fn_whoami(tw_call_ctx *ctx, const tw_value *args,
			   const tw_value *kwargs, tw_value *result, void *arg)
{
	return tw_value_cstring(result, g_name);
}

/* fill(n, seed): the pattern tensor of n bytes. */
static tw_status fn_fill(tw_call_ctx *ctx, const tw_value *args,
			 const tw_value *kwargs, tw_value *result, void *arg)
{
	int64_t n, seed;
	if (args->len != 2 || tw_value_get_int(&args->u.items[0], &n) ||
	    tw_value_get_int(&args->u.items[1], &seed) || n < 0 ||
	    n > (64 << 20)) {
		tw_value_error(result, TW_EBADARGS, 0,
			       "fill(n, seed): two ints, n <= 64 MiB");
		return TW_EBADARGS;
	}
	tw_tensor t;
	tw_status st = pattern_tensor(&t, n, (uint64_t)seed);
	if (st != TW_OK)
		return st;
	st = tw_value_tensor(result, &t);
	tw_tensor_release(&t);
	return st;
}

/* Blocking (an executor thread): sleeps args[0] ms, returns it. */
static tw_status fn_sleep(tw_call_ctx *ctx, const tw_value *args,
			  const tw_value *kwargs, tw_value *result, void *arg)
{
	int64_t ms = 0;
	if (args->len > 0)
		(void)tw_value_get_int(&args->u.items[0], &ms);
	sleep_ms((unsigned)(ms > 0 ? ms : 0));
	*result = tw_value_int(ms);
	return TW_OK;
}

static tw_status setup(tw_agent *a, void *arg)
{
	tw_status st = TW_OK;
	st |= tw_agent_register(a, "t::echo", fn_echo, NULL, 0);
	st |= tw_agent_register(a, "t::whoami", fn_whoami, NULL, 0);
	st |= tw_agent_register(a, "t::fill", fn_fill, NULL, 0);
	st |= tw_agent_register(a, "t::sleep", fn_sleep, NULL, TW_FN_BLOCKING);
	return st == TW_OK ? TW_OK : TW_EINVAL;
}

/* ---- mesh: calls of every kind to every other worker ---- */

struct tally {
	uint64_t calls, failed, bytes;
	char first[1024]; /* the first failure */
};

static void fail(struct tally *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void fail(struct tally *t, const char *fmt, ...)
{
	if (t->failed++ == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(t->first, sizeof(t->first), fmt, ap);
		va_end(ap);
	}
}

static tw_value tensor_value(const tw_tensor *t)
{
	tw_value v = tw_value_none();
	(void)tw_value_tensor(&v, t);
	return v;
}

/* A tuple of n values (moved in). */
static tw_value tup(int n, const tw_value *items)
{
	tw_value t;
	if (tw_value_tuple(&t, (uint32_t)n) != TW_OK)
		return tw_value_none();
	for (int i = 0; i < n; i++)
		tw_value_set_item(&t, (uint32_t)i, items[i]);
	return t;
}

static tw_status f32(tw_tensor *t, int n, const float *v)
{
	int64_t shape = n;
	tw_status st = tw_tensor_alloc(t, TW_FLOAT32, 1, &shape);
	if (st == TW_OK)
		memcpy(t->data, v, sizeof(float) * (size_t)n);
	return st;
}

/* One rpc_sync; the result into *res (owned) or a failure tallied. */
static bool sync_call(struct tally *ty, const char *to, const char *fn,
		      tw_value *args, int64_t timeout_ms, tw_value *res)
{
	tw_value err = tw_value_none();
	ty->calls++;
	tw_status st = tw_rpc_sync(A, to, fn, args, NULL, timeout_ms, res,
				   &err);
	tw_value_destroy(args);
	if (st != TW_OK) {
		fail(ty, "%s on %s: %s: %s", fn, to, tw_status_name(st),
		     tw_errmsg(st));
		tw_value_destroy(&err);
		return false;
	}
	tw_value_destroy(&err);
	return true;
}

static bool tensor_is(const tw_value *v, tw_dtype dt, int n, const void *want)
{
	const tw_tensor *t;
	int64_t numel;
	if (tw_value_get_tensor(v, &t) != TW_OK || t->dtype != dt ||
	    tw_tensor_numel(t, &numel) != TW_OK || numel != n ||
	    !tw_tensor_is_contiguous(t))
		return false;
	return memcmp(t->data, want, tw_dtype_size(dt) * (size_t)n) == 0;
}

static void mesh_peer(struct tally *ty, int peer, int64_t big,
		      int64_t timeout_ms)
{
	char to[16], why[256];
	snprintf(to, sizeof(to), "w%d", peer);
	tw_value r = tw_value_none(), a[2];
	tw_tensor x, y;

	/* aten::add(Tensor, Tensor) */
	float xv[4], yv[4], sum[4], prod[4];
	for (int i = 0; i < 4; i++) {
		xv[i] = (float)(g_rank * 10 + i);
		yv[i] = (float)(peer * 100 + i) + 0.5f;
		sum[i] = xv[i] + yv[i];
		prod[i] = xv[i] * 2.5f;
	}
	if (f32(&x, 4, xv) != TW_OK || f32(&y, 4, yv) != TW_OK) {
		fail(ty, "out of memory");
		return;
	}
	a[0] = tensor_value(&x);
	a[1] = tensor_value(&y);
	tw_value args = tup(2, a);
	if (sync_call(ty, to, "aten::add", &args, timeout_ms, &r) &&
	    !tensor_is(&r, TW_FLOAT32, 4, sum))
		fail(ty, "aten::add on %s: wrong result", to);
	tw_value_destroy(&r);
	/* aten::mul(Tensor, Scalar) */
	a[0] = tensor_value(&x);
	a[1] = tw_value_double(2.5);
	args = tup(2, a);
	if (sync_call(ty, to, "aten::mul", &args, timeout_ms, &r) &&
	    !tensor_is(&r, TW_FLOAT32, 4, prod))
		fail(ty, "aten::mul on %s: wrong result", to);
	tw_value_destroy(&r);
	tw_tensor_release(&y);

	/* aten::matmul: [2, 3] x [3, 2] of float64 */
	int64_t s23[2] = {2, 3}, s32[2] = {3, 2};
	tw_tensor m1, m2;
	if (tw_tensor_alloc(&m1, TW_FLOAT64, 2, s23) == TW_OK) {
		if (tw_tensor_alloc(&m2, TW_FLOAT64, 2, s32) == TW_OK) {
			double *p = m1.data, *q = m2.data, want[4];
			for (int i = 0; i < 6; i++) {
				p[i] = i + 1 + peer;
				q[i] = (i % 2 ? -1.0 : 1.0) * (i + g_rank);
			}
			for (int i = 0; i < 2; i++)
				for (int j = 0; j < 2; j++) {
					want[i * 2 + j] = 0;
					for (int k = 0; k < 3; k++)
						want[i * 2 + j] +=
							p[i * 3 + k] *
							q[k * 2 + j];
				}
			a[0] = tensor_value(&m1);
			a[1] = tensor_value(&m2);
			args = tup(2, a);
			if (sync_call(ty, to, "aten::matmul", &args, timeout_ms,
				      &r) &&
			    !tensor_is(&r, TW_FLOAT64, 4, want))
				fail(ty, "aten::matmul on %s: wrong result",
				     to);
			tw_value_destroy(&r);
			tw_tensor_release(&m2);
		}
		tw_tensor_release(&m1);
	}

	/* aten::sum of an int64 arange */
	int64_t n100 = 100;
	tw_tensor ar;
	if (tw_tensor_alloc(&ar, TW_INT64, 1, &n100) == TW_OK) {
		int64_t *p = ar.data, want = 0;
		for (int i = 0; i < 100; i++) {
			p[i] = i * (peer + 1);
			want += p[i];
		}
		a[0] = tensor_value(&ar);
		args = tup(1, a);
		if (sync_call(ty, to, "aten::sum", &args, timeout_ms, &r) &&
		    !tensor_is(&r, TW_INT64, 1, &want))
			fail(ty, "aten::sum on %s: wrong result", to);
		tw_value_destroy(&r);
		tw_tensor_release(&ar);
	}

	/* user functions: whoami, echo of a small tensor */
	args = tup(0, a);
	if (sync_call(ty, to, "t::whoami", &args, timeout_ms, &r)) {
		const char *s;
		size_t len;
		if (tw_value_get_string(&r, &s, &len) != TW_OK ||
		    strcmp(s, to) != 0)
			fail(ty, "t::whoami on %s: wrong answer", to);
	}
	tw_value_destroy(&r);
	a[0] = tensor_value(&x);
	args = tup(1, a);
	if (sync_call(ty, to, "t::echo", &args, timeout_ms, &r) &&
	    !tensor_is(&r, TW_FLOAT32, 4, xv))
		fail(ty, "t::echo on %s: wrong result", to);
	tw_value_destroy(&r);
	tw_tensor_release(&x);

	/* a big tensor out and back, and a big result */
	if (big > 0) {
		uint64_t seed = (uint64_t)(g_rank * 16 + peer);
		tw_tensor b;
		if (pattern_tensor(&b, big, seed) == TW_OK) {
			a[0] = tensor_value(&b);
			args = tup(1, a);
			if (sync_call(ty, to, "t::echo", &args, timeout_ms,
				      &r)) {
				ty->bytes += 2 * (uint64_t)big;
				if (pattern_check(&r, big, seed, why,
						  sizeof(why)))
					fail(ty,
					     "t::echo of %" PRId64
					     " bytes on %s: %s",
					     big, to, why);
			}
			tw_value_destroy(&r);
			tw_tensor_release(&b);
		}
		a[0] = tw_value_int(big);
		a[1] = tw_value_int((int64_t)seed + 1000);
		args = tup(2, a);
		if (sync_call(ty, to, "t::fill", &args, timeout_ms, &r)) {
			ty->bytes += (uint64_t)big;
			if (pattern_check(&r, big, seed + 1000, why,
					  sizeof(why)))
				fail(ty,
				     "t::fill of %" PRId64 " bytes on %s: %s",
				     big, to, why);
		}
		tw_value_destroy(&r);
	}

	/* remote() and to_here: a builtin, and a user function */
	int64_t n4 = 4;
	tw_tensor ri;
	if (tw_tensor_alloc(&ri, TW_INT64, 1, &n4) == TW_OK) {
		int64_t *p = ri.data, want[4];
		for (int i = 0; i < 4; i++) {
			p[i] = g_rank * 1000 + peer * 10 + i;
			want[i] = 2 * p[i];
		}
		a[0] = tensor_value(&ri);
		a[1] = tensor_value(&ri);
		args = tup(2, a);
		tw_rref *rr = NULL;
		ty->calls++;
		tw_status st = tw_remote(A, to, "aten::add", &args, NULL,
					 timeout_ms, &rr);
		tw_value_destroy(&args);
		tw_value err = tw_value_none();
		if (st == TW_OK)
			st = tw_rref_to_here(rr, timeout_ms, &r, &err);
		if (st != TW_OK)
			fail(ty, "remote(aten::add) on %s, to_here: %s: %s", to,
			     tw_status_name(st), tw_errmsg(st));
		else if (!tensor_is(&r, TW_INT64, 4, want))
			fail(ty, "remote(aten::add) on %s: wrong value", to);
		tw_value_destroy(&r);
		tw_value_destroy(&err);
		tw_rref_release(rr);
		tw_tensor_release(&ri);
	}
	a[0] = tw_value_int(4096);
	a[1] = tw_value_int(peer + 7);
	args = tup(2, a);
	tw_rref *rf = NULL;
	ty->calls++;
	tw_status st = tw_remote(A, to, "t::fill", &args, NULL, timeout_ms,
				 &rf);
	tw_value_destroy(&args);
	tw_value err = tw_value_none();
	if (st == TW_OK)
		st = tw_rref_to_here(rf, timeout_ms, &r, &err);
	if (st != TW_OK)
		fail(ty, "remote(t::fill) on %s, to_here: %s: %s", to,
		     tw_status_name(st), tw_errmsg(st));
	else if (pattern_check(&r, 4096, (uint64_t)peer + 7, why, sizeof(why)))
		fail(ty, "remote(t::fill) on %s: %s", to, why);
	tw_value_destroy(&r);
	tw_value_destroy(&err);
	tw_rref_release(rf);
}

static tw_future *g_inflight[MAX_INFLIGHT];

static void mesh_async(struct tally *ty, int n, int64_t timeout_ms)
{
	int started = 0, peers = g_world - 1;
	for (int i = 0; i < n && peers > 0; i++) {
		int peer = i % peers;
		if (peer >= g_rank)
			peer++;
		tw_value a[1] = {tw_value_int((int64_t)g_rank * 1000000 + i)};
		tw_value args = tup(1, a);
		ty->calls++;
		tw_status st = tw_rpc_async_id(A, (uint32_t)peer, "t::echo",
					       &args, NULL, timeout_ms,
					       &g_inflight[i]);
		tw_value_destroy(&args);
		if (st != TW_OK) {
			g_inflight[i] = NULL;
			fail(ty, "rpc_async %d to w%d: %s: %s", i, peer,
			     tw_status_name(st), tw_errmsg(st));
			continue;
		}
		started = i + 1;
	}
	for (int i = 0; i < started; i++) {
		if (g_inflight[i] == NULL)
			continue;
		tw_status st = tw_future_wait(g_inflight[i], -1);
		const tw_value *v = tw_future_value(g_inflight[i]);
		if (st != TW_OK)
			fail(ty, "rpc_async %d: %s: %s", i, tw_status_name(st),
			     tw_errmsg(st));
		else if (v == NULL || v->kind != TW_KIND_INT ||
			 v->u.i != (int64_t)g_rank * 1000000 + i)
			fail(ty, "rpc_async %d: wrong result", i);
		tw_future_release(g_inflight[i]);
		g_inflight[i] = NULL;
	}
}

static void cmd_mesh(int64_t big, int inflight, int64_t timeout_ms)
{
	struct tally ty = {0};
	uint64_t t0 = now_ns();
	if (inflight > MAX_INFLIGHT)
		inflight = MAX_INFLIGHT;
	/* Start with the next rank, so that the workers do not all call
	 * the same one at once. */
	for (int k = 1; k < g_world; k++)
		mesh_peer(&ty, (g_rank + k) % g_world, big, timeout_ms);
	mesh_async(&ty, inflight, timeout_ms);
	char first[1200];
	jstr(first, sizeof(first), ty.first);
	printf("%s {\"calls\": %" PRIu64 ", \"bytes\": %" PRIu64
	       ", \"ms\": %.1f, \"failed\": %" PRIu64 ", \"first\": %s}\n",
	       ty.failed ? "err" : "ok", ty.calls, ty.bytes, ms_since(t0),
	       ty.failed, first);
}

/* ---- single calls, probes, calls kept in the background ---- */

static tw_status echo_call(const char *to, int64_t timeout_ms, char *msg,
			   size_t len)
{
	tw_value a[1] = {tw_value_int(42)}, r = tw_value_none(),
		 err = tw_value_none();
	tw_value args = tup(1, a);
	tw_status st = tw_rpc_sync(A, to, "t::echo", &args, NULL, timeout_ms,
				   &r, &err);
	snprintf(msg, len, "%s", st == TW_OK ? "" : tw_errmsg(st));
	if (st == TW_OK && (r.kind != TW_KIND_INT || r.u.i != 42)) {
		st = TW_EPROTO;
		snprintf(msg, len, "t::echo(42) answered something else");
	}
	tw_value_destroy(&args);
	tw_value_destroy(&r);
	tw_value_destroy(&err);
	return st;
}

static void cmd_call(const char *to, int64_t timeout_ms)
{
	char msg[TW_ERRMSG_MAX], js[TW_ERRMSG_MAX + 64];
	uint64_t t0 = now_ns();
	tw_status st = echo_call(to, timeout_ms, msg, sizeof(msg));
	double ms = ms_since(t0);
	jstr(js, sizeof(js), msg);
	printf("ok {\"st\": \"%s\", \"msg\": %s, \"ms\": %.1f}\n",
	       tw_status_name(st), js, ms);
}

static void cmd_probe(const char *to, int64_t timeout_ms, int64_t limit_ms)
{
	char msg[TW_ERRMSG_MAX] = "", js[TW_ERRMSG_MAX + 64];
	uint64_t t0 = now_ns();
	int tries = 0;
	tw_status st = TW_ETIMEDOUT;
	while (ms_since(t0) < (double)limit_ms) {
		tries++;
		st = echo_call(to, timeout_ms, msg, sizeof(msg));
		if (st == TW_OK)
			break;
		sleep_ms(10); /* failures at once (backoff) need no spin */
	}
	double ms = ms_since(t0);
	jstr(js, sizeof(js), msg);
	printf("ok {\"ok\": %s, \"ms\": %.1f, \"tries\": %d, \"st\": \"%s\", "
	       "\"last\": %s}\n",
	       st == TW_OK ? "true" : "false", ms, tries, tw_status_name(st),
	       js);
}

/* probe, for each peer of a comma-separated list in turn: the time from
 * this command's start to each peer's first successful call, and how
 * the first try failed if it did. */
static void cmd_probeall(const char *peers, int64_t timeout_ms,
			 int64_t limit_ms)
{
	char list[256], msg[TW_ERRMSG_MAX] = "", first[TW_ERRMSG_MAX] = "";
	char js[TW_ERRMSG_MAX + 64], jf[TW_ERRMSG_MAX + 64];
	snprintf(list, sizeof(list), "%s", peers);
	uint64_t t0 = now_ns();
	bool any = false;
	printf("ok {\"peers\": [");
	for (char *sv = NULL, *to = strtok_r(list, ",", &sv); to != NULL;
	     to = strtok_r(NULL, ",", &sv)) {
		int tries = 0;
		tw_status st = TW_ETIMEDOUT, st1 = TW_OK;
		first[0] = msg[0] = '\0';
		while (ms_since(t0) < (double)limit_ms) {
			tries++;
			st = echo_call(to, timeout_ms, msg, sizeof(msg));
			if (tries == 1) {
				st1 = st;
				snprintf(first, sizeof(first), "%s", msg);
			}
			if (st == TW_OK)
				break;
			sleep_ms(10);
		}
		jstr(js, sizeof(js), msg);
		jstr(jf, sizeof(jf), first);
		printf("%s{\"to\": \"%s\", \"ok\": %s, \"ms\": %.1f, "
		       "\"tries\": %d, \"first_st\": \"%s\", \"first\": %s, "
		       "\"st\": \"%s\", \"last\": %s}",
		       any ? ", " : "", to, st == TW_OK ? "true" : "false",
		       ms_since(t0), tries, tw_status_name(st1), jf,
		       tw_status_name(st), js);
		any = true;
	}
	printf("]}\n");
}

struct bg {
	char label[32];
	tw_future *f;
	uint64_t t0;
	_Atomic uint64_t t_done;
};
static struct bg g_bg[MAX_BG];
static int g_nbg;

static void bg_done(tw_future *f, void *arg)
{
	struct bg *b = arg;
	atomic_store(&b->t_done, now_ns());
}

static void cmd_bg(const char *label, const char *to, const char *fn,
		   int64_t arg, int64_t timeout_ms)
{
	if (g_nbg >= MAX_BG) {
		printf("err {\"msg\": \"too many background calls\"}\n");
		return;
	}
	struct bg *b = &g_bg[g_nbg];
	snprintf(b->label, sizeof(b->label), "%s", label);
	atomic_store(&b->t_done, 0);
	tw_value a[1] = {tw_value_int(arg)};
	tw_value args = tup(1, a);
	b->t0 = now_ns();
	tw_status st = tw_rpc_async(
		A, to, strcmp(fn, "sleep") == 0 ? "t::sleep" : "t::echo", &args,
		NULL, timeout_ms, &b->f);
	tw_value_destroy(&args);
	if (st != TW_OK) {
		char js[TW_ERRMSG_MAX + 64];
		jstr(js, sizeof(js), tw_errmsg(st));
		printf("err {\"st\": \"%s\", \"msg\": %s}\n",
		       tw_status_name(st), js);
		return;
	}
	tw_future_then(b->f, bg_done, b);
	g_nbg++;
	printf("ok {\"started\": \"%s\"}\n", label);
}

static void cmd_bgwait(int64_t limit_ms)
{
	uint64_t t0 = now_ns();
	bool first = true;
	printf("ok {\"calls\": [");
	for (int i = 0; i < g_nbg; i++) {
		struct bg *b = &g_bg[i];
		if (b->f == NULL)
			continue; /* reported by an earlier bgwait */
		int64_t left = limit_ms - (int64_t)ms_since(t0);
		tw_status st = tw_future_wait(b->f, left > 0 ? left : 0);
		char js[TW_ERRMSG_MAX + 64];
		bool done = tw_future_done(b->f);
		jstr(js, sizeof(js),
		     done ? (st == TW_OK ? "" : tw_errmsg(st))
			  : "still pending");
		uint64_t td = atomic_load(&b->t_done);
		printf("%s{\"label\": \"%s\", \"done\": %s, \"st\": \"%s\", "
		       "\"msg\": %s, \"ms\": %.1f}",
		       first ? "" : ", ", b->label, done ? "true" : "false",
		       done ? tw_status_name(st) : "pending", js,
		       done && td ? (double)(td - b->t0) / 1e6
				  : ms_since(b->t0));
		first = false;
		/* Slots are never reused: a completion callback may still
		 * write its time into one. Calls still pending stay for a
		 * later bgwait or the shutdown. */
		if (done) {
			tw_future_release(b->f);
			b->f = NULL;
		}
	}
	printf("]}\n");
}

static void cmd_shutdown(int64_t timeout_ms)
{
	for (int i = 0; i < g_nbg; i++) {
		tw_future_release(g_bg[i].f);
		g_bg[i].f = NULL;
	}
	uint64_t t0 = now_ns();
	tw_status st = tw_agent_shutdown_timeout(A, true, timeout_ms);
	double ms = ms_since(t0);
	char js[TW_ERRMSG_MAX + 64];
	jstr(js, sizeof(js), st == TW_OK ? "" : tw_errmsg(st));
	printf("ok {\"st\": \"%s\", \"msg\": %s, \"ms\": %.1f}\n",
	       tw_status_name(st), js, ms);
	A = NULL;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: host_worker --rank R --world N --rendezvous URL "
		"--secret-file F [--user-timeout-ms MS] "
		"[--connect-timeout-ms MS] [--dpdk-eal ARGS --dpdk-port P "
		"--dpdk-ip IP [--dpdk-dead-ms MS]]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	/* No worker outlives the test that started it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		return 1;
	setvbuf(stdout, NULL, _IOLBF, 0);

	struct tw_agent_opts o;
	tw_agent_opts_init(&o, sizeof(o));
	struct tw_uring_opts uo;
	tw_uring_opts_init(&uo, sizeof(uo));
	struct tw_dpdk_opts dop;
	tw_dpdk_opts_init(&dop, sizeof(dop));
	uo.listen_host = "0.0.0.0";
	static const struct option lo[] = {
		{"rank", required_argument, NULL, 'r'},
		{"world", required_argument, NULL, 'w'},
		{"rendezvous", required_argument, NULL, 'z'},
		{"secret-file", required_argument, NULL, 'S'},
		{"user-timeout-ms", required_argument, NULL, 'u'},
		{"connect-timeout-ms", required_argument, NULL, 'c'},
		{"dpdk-eal", required_argument, NULL, 'E'},
		{"dpdk-port", required_argument, NULL, 'P'},
		{"dpdk-ip", required_argument, NULL, 'I'},
		{"dpdk-dead-ms", required_argument, NULL, 'D'},
		{NULL, 0, NULL, 0},
	};
	int c;
	g_rank = -1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'r':
			g_rank = atoi(optarg);
			break;
		case 'w':
			g_world = atoi(optarg);
			break;
		case 'z':
			o.rendezvous = optarg;
			break;
		case 'S':
			o.secret_file = optarg;
			break;
		case 'u':
			uo.user_timeout_ms = (uint32_t)atoi(optarg);
			break;
		case 'c':
			uo.connect_timeout_ms = (uint32_t)atoi(optarg);
			break;
		case 'E':
			dop.eal_args = optarg;
			g_dpdk = true;
			break;
		case 'P':
			dop.port = optarg;
			break;
		case 'I':
			dop.local_ip = optarg;
			break;
		case 'D':
			dop.dead_ns = (uint64_t)atoll(optarg) * 1000000u;
			break;
		default:
			usage();
		}
	}
	if (g_rank < 0 || g_world < 1 || g_world > MAX_WORLD ||
	    g_rank >= g_world || o.rendezvous == NULL)
		usage();
	snprintf(g_name, sizeof(g_name), "w%d", g_rank);
	o.name = g_name;
	o.rank = (uint32_t)g_rank;
	o.world_size = (uint32_t)g_world;
	/* Four workers and their driver on two cores: loops yield and sleep
	 * soon (docs/architecture.md, "Idle loops yield, then sleep"). */
	o.yield = true;
	o.spin_ns = 20000;
	o.executor_threads = 2;
	o.init_timeout_ms = 30000;
	o.setup = setup;
	/* The namespaces stand for hosts: what is under test is the path
	 * between them, not the shared memory their one kernel offers. */
	o.same_host = false;
	if (g_dpdk) {
		o.transport = TW_TRANSPORT_DPDK;
		o.transport_opts = &dop;
	} else {
		o.transport_opts = &uo;
	}
	uint64_t t0 = now_ns();
	tw_status st = tw_agent_init(&o, &A);
	if (st != TW_OK) {
		char js[TW_ERRMSG_MAX + 64];
		jstr(js, sizeof(js), tw_errmsg(st));
		printf("err {\"st\": \"%s\", \"msg\": %s}\n",
		       tw_status_name(st), js);
		if (g_dpdk)
			tw_dpdk_eal_cleanup();
		return 1;
	}
	printf("ready {\"name\": \"%s\", \"ms\": %.1f, \"addrs\": [", g_name,
	       ms_since(t0));
	for (int i = 0; i < g_world; i++) {
		tw_worker_info wi;
		char js[TW_ADDR_MAX * 2 + 8];
		if (tw_agent_worker_info_by_id(A, (uint32_t)i, &wi) != TW_OK)
			snprintf(wi.addr, sizeof(wi.addr), "?");
		jstr(js, sizeof(js), wi.addr);
		printf("%s%s", i ? ", " : "", js);
	}
	printf("]}\n");

	char line[512];
	while (A != NULL && fgets(line, sizeof(line), stdin) != NULL) {
		char cmd[32] = "", s1[64] = "", s2[64] = "", s3[64] = "";
		long long n1 = 0, n2 = 0, n3 = 0;
		if (sscanf(line, "%31s", cmd) != 1)
			continue;
		if (strcmp(cmd, "mesh") == 0 &&
		    sscanf(line, "%*s %lld %lld %lld", &n1, &n2, &n3) == 3) {
			cmd_mesh(n1, (int)n2, n3);
		} else if (strcmp(cmd, "call") == 0 &&
			   sscanf(line, "%*s %63s %lld", s1, &n1) == 2) {
			cmd_call(s1, n1);
		} else if (strcmp(cmd, "probe") == 0 &&
			   sscanf(line, "%*s %63s %lld %lld", s1, &n1, &n2) ==
				   3) {
			cmd_probe(s1, n1, n2);
		} else if (strcmp(cmd, "probeall") == 0 &&
			   sscanf(line, "%*s %63s %lld %lld", s1, &n1, &n2) ==
				   3) {
			cmd_probeall(s1, n1, n2);
		} else if (strcmp(cmd, "bg") == 0 &&
			   sscanf(line, "%*s %31s %63s %63s %lld %lld", s1, s2,
				  s3, &n1, &n2) == 5) {
			cmd_bg(s1, s2, s3, n1, n2);
		} else if (strcmp(cmd, "bgwait") == 0 &&
			   sscanf(line, "%*s %lld", &n1) == 1) {
			cmd_bgwait(n1);
		} else if (strcmp(cmd, "alive") == 0 &&
			   sscanf(line, "%*s %63s", s1) == 1) {
			tw_worker_info wi;
			bool known = tw_agent_worker_info(A, s1, &wi) == TW_OK;
			printf("ok {\"alive\": %s}\n",
			       known && tw_agent_worker_alive(A, wi.id)
				       ? "true"
				       : "false");
		} else if (strcmp(cmd, "shutdown") == 0 &&
			   sscanf(line, "%*s %lld", &n1) == 1) {
			cmd_shutdown(n1);
		} else if (strcmp(cmd, "quit") == 0) {
			break;
		} else {
			char js[600];
			jstr(js, sizeof(js), line);
			printf("err {\"msg\": \"unknown command\", \"line\": %s}\n",
			       js);
		}
	}
	if (A != NULL) {
		for (int i = 0; i < g_nbg; i++)
			tw_future_release(g_bg[i].f);
		tw_agent_shutdown(A, false);
	}
	if (g_dpdk)
		tw_dpdk_eal_cleanup();
	fflush(NULL);
	return 0;
}
