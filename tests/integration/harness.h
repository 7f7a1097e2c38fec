/* Multi-process test harness: fork a group of workers on 127.0.0.1 with a
 * free rendezvous port, each running a worker function that returns 0 on
 * success; the parent waits for all (killing them after a generous bound)
 * and reports. Shared results live in a MAP_SHARED page. Functions every
 * worker serves are here too. */
#ifndef TW_TEST_HARNESS_H
#define TW_TEST_HARNESS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tensorwire/agent.h>
#include <tensorwire/future.h>
#include <tensorwire/tensorwire.h>

#if defined(__SANITIZE_ADDRESS__)
#define H_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define H_ASAN 1
#endif
#endif
#ifdef H_ASAN
#include <sanitizer/lsan_interface.h>
#endif

#define H_UNUSED __attribute__((unused))
#define H_MAX_WORKERS 8
#define H_GROUP_LIMIT_S 50

/* Shared between the parent and the workers of one group. */
struct h_shared {
	_Atomic int ready[H_MAX_WORKERS];
	_Atomic int flag[H_MAX_WORKERS];
	int status[H_MAX_WORKERS];
	char msg[H_MAX_WORKERS][512];
	_Atomic int64_t counter;
};

struct h_worker {
	int rank, world;
	char url[64];
	struct h_shared *sh;
	void *arg;
};

typedef int (*h_worker_fn)(struct h_worker *w);

static H_UNUSED const char *h_names[H_MAX_WORKERS] = {
	"w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7"};

#define W_ASSERT(w, cond, ...)                                                \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "[rank %d] %s:%d: check failed: %s: ", \
				(w)->rank, __FILE__, __LINE__, #cond);       \
			fprintf(stderr, __VA_ARGS__);                        \
			fprintf(stderr, "\n");                               \
			return 1;                                            \
		}                                                            \
	} while (0)

static H_UNUSED void h_sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static H_UNUSED uint64_t h_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A port nobody listens on right now (bind 0, read it, close). */
static H_UNUSED int h_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	cr_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static H_UNUSED struct h_shared *h_shared_new(void)
{
	void *p = mmap(NULL, sizeof(struct h_shared), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert(p != MAP_FAILED);
	memset(p, 0, sizeof(struct h_shared));
	return p;
}

/* Wait until flag[i] of every rank in [0, n) except skip is set (or a
 * bound passes: then false). */
static H_UNUSED bool h_wait_all(_Atomic int *flags, int n, int skip,
				unsigned limit_ms)
{
	uint64_t until = h_now_ms() + limit_ms;
	for (;;) {
		bool all = true;
		for (int i = 0; i < n; i++)
			if (i != skip && !atomic_load(&flags[i]))
				all = false;
		if (all)
			return true;
		if (h_now_ms() > until)
			return false;
		h_sleep_ms(2);
	}
}

/* Leak check of a worker process (which leaves with _exit). */
static H_UNUSED int h_leak_check(void)
{
#ifdef H_ASAN
	return __lsan_do_recoverable_leak_check() ? 1 : 0;
#else
	return 0;
#endif
}

/*
 * Run fn in world processes. killed_mask: ranks expected to die by SIGKILL
 * (their exit is not checked). Returns when all have exited; fails the
 * test on a non-zero exit or when the group outlives H_GROUP_LIMIT_S.
 */
static H_UNUSED void h_run_group(int world, h_worker_fn fn, void *arg,
				 struct h_shared *sh, unsigned killed_mask)
{
	cr_assert(world <= H_MAX_WORKERS);
	bool own = sh == NULL;
	if (own)
		sh = h_shared_new();
	int port = h_free_port();
	pid_t pids[H_MAX_WORKERS];
	fflush(NULL);
	for (int r = 0; r < world; r++) {
		pid_t p = fork();
		cr_assert(p >= 0);
		if (p == 0) {
			struct h_worker w = {.rank = r, .world = world, .sh = sh,
					     .arg = arg};
			snprintf(w.url, sizeof(w.url), "tcp://127.0.0.1:%d", port);
			int rc = fn(&w);
			if (rc == 0 && h_leak_check() != 0) {
				fprintf(stderr, "[rank %d] leaks\n", r);
				rc = 3;
			}
			fflush(NULL);
			_exit(rc);
		}
		pids[r] = p;
	}
	int left = world;
	int status[H_MAX_WORKERS];
	bool done[H_MAX_WORKERS] = {false};
	uint64_t until = h_now_ms() + H_GROUP_LIMIT_S * 1000u;
	while (left > 0) {
		for (int r = 0; r < world; r++) {
			if (done[r])
				continue;
			pid_t q = waitpid(pids[r], &status[r], WNOHANG);
			if (q == pids[r]) {
				done[r] = true;
				left--;
			}
		}
		if (left == 0)
			break;
		if (h_now_ms() > until) {
			for (int r = 0; r < world; r++)
				if (!done[r])
					kill(pids[r], SIGKILL);
			for (int r = 0; r < world; r++)
				if (!done[r])
					waitpid(pids[r], &status[r], 0);
			cr_assert_fail("worker group did not finish within %d s",
				       H_GROUP_LIMIT_S);
		}
		h_sleep_ms(5);
	}
	for (int r = 0; r < world; r++) {
		if (killed_mask & (1u << r)) {
			cr_expect(WIFSIGNALED(status[r]) &&
				  WTERMSIG(status[r]) == SIGKILL,
				  "rank %d should have been killed", r);
			continue;
		}
		cr_expect(WIFEXITED(status[r]) && WEXITSTATUS(status[r]) == 0,
			  "rank %d: %s %d", r,
			  WIFEXITED(status[r]) ? "exit" : "signal",
			  WIFEXITED(status[r]) ? WEXITSTATUS(status[r])
					       : WTERMSIG(status[r]));
	}
	if (own)
		munmap(sh, sizeof(*sh));
}

/* ---- functions every test worker serves ---- */

/* Futures "never" handed out, completed by the worker before it exits. */
static pthread_mutex_t h_never_mu = PTHREAD_MUTEX_INITIALIZER;
static tw_future *h_never[4096];
static int h_never_n;

static H_UNUSED tw_status fn_echo(tw_call_ctx *ctx, const tw_value *args,
				  const tw_value *kwargs, tw_value *result,
				  void *arg)
{
	if (args->len == 0)
		return TW_OK;
	return tw_value_clone(result, &args->u.items[0]);
}

/* Returns args[0] as is: borrowed storage moved into the result (the
 * handler contract allows it: args are borrowed). */
static H_UNUSED tw_status fn_echo_borrow(tw_call_ctx *ctx, const tw_value *args,
					 const tw_value *kwargs, tw_value *result,
					 void *arg)
{
	if (args->len > 0)
		*result = args->u.items[0];
	return TW_OK;
}

static H_UNUSED tw_status fn_add(tw_call_ctx *ctx, const tw_value *args,
				 const tw_value *kwargs, tw_value *result,
				 void *arg)
{
	if (args->len != 2)
		return tw_value_error(result, TW_EBADARGS, 0, "add takes 2 args"),
		       TW_EBADARGS;
	const tw_value *x = &args->u.items[0], *y = &args->u.items[1];
	if (x->kind == TW_KIND_INT && y->kind == TW_KIND_INT) {
		*result = tw_value_int(x->u.i + y->u.i);
		return TW_OK;
	}
	double a, b;
	if (tw_value_get_double(x, &a) != TW_OK || tw_value_get_double(y, &b) != TW_OK) {
		tw_value_error(result, TW_ETYPE, 0, "add: unsupported operand types");
		return TW_ETYPE;
	}
	*result = tw_value_double(a + b);
	return TW_OK;
}

/* raise(kind, message) */
static H_UNUSED tw_status fn_raise(tw_call_ctx *ctx, const tw_value *args,
				   const tw_value *kwargs, tw_value *result,
				   void *arg)
{
	int64_t kind = args->u.items[0].u.i;
	tw_value_error(result, (tw_status)kind, 0, args->u.items[1].u.str);
	return (tw_status)kind;
}

/* Fails without an error value: the agent supplies a message. */
static H_UNUSED tw_status fn_fail_plain(tw_call_ctx *ctx, const tw_value *args,
					const tw_value *kwargs, tw_value *result,
					void *arg)
{
	return TW_ERUNTIME;
}

/* kwargs["x"] + kwargs["y"] */
static H_UNUSED tw_status fn_kw(tw_call_ctx *ctx, const tw_value *args,
				const tw_value *kwargs, tw_value *result,
				void *arg)
{
	const tw_value *x, *y;
	if (tw_value_dict_get(kwargs, "x", &x) != TW_OK ||
	    tw_value_dict_get(kwargs, "y", &y) != TW_OK)
		return TW_EBADARGS;
	*result = tw_value_int(x->u.i + y->u.i);
	return TW_OK;
}

/* (caller id, this worker's name) */
static H_UNUSED tw_status fn_whoami(tw_call_ctx *ctx, const tw_value *args,
				    const tw_value *kwargs, tw_value *result,
				    void *arg)
{
	tw_worker_info me;
	tw_agent_self(tw_call_agent(ctx), &me);
	tw_value t, s;
	tw_value_tuple(&t, 2);
	tw_value_set_item(&t, 0, tw_value_int(tw_call_caller(ctx)));
	tw_value_cstring(&s, me.name);
	tw_value_set_item(&t, 1, s);
	*result = t;
	return TW_OK;
}

/* Defers on a future nobody completes until the worker's end. */
static H_UNUSED tw_status fn_never(tw_call_ctx *ctx, const tw_value *args,
				   const tw_value *kwargs, tw_value *result,
				   void *arg)
{
	tw_future *f;
	if (tw_future_create(&f) != TW_OK)
		return TW_ENOMEM;
	pthread_mutex_lock(&h_never_mu);
	if (h_never_n < (int)(sizeof(h_never) / sizeof(h_never[0]))) {
		h_never[h_never_n++] = f;
		tw_future_retain(f);
	}
	pthread_mutex_unlock(&h_never_mu);
	tw_call_defer(ctx, f);
	tw_future_release(f);
	return TW_OK;
}

static H_UNUSED int h_never_count(void)
{
	pthread_mutex_lock(&h_never_mu);
	int n = h_never_n;
	pthread_mutex_unlock(&h_never_mu);
	return n;
}

/* Complete (late) and drop every "never" future. */
static H_UNUSED void h_never_finish(void)
{
	pthread_mutex_lock(&h_never_mu);
	for (int i = 0; i < h_never_n; i++) {
		tw_value v = tw_value_int(-1);
		tw_future_complete(h_never[i], &v);
		tw_future_release(h_never[i]);
	}
	h_never_n = 0;
	pthread_mutex_unlock(&h_never_mu);
}

/* Blocking: sleeps args[0] ms on an executor thread, returns it. */
static H_UNUSED tw_status fn_sleep(tw_call_ctx *ctx, const tw_value *args,
				   const tw_value *kwargs, tw_value *result,
				   void *arg)
{
	int64_t ms = args->len > 0 ? args->u.items[0].u.i : 0;
	h_sleep_ms((unsigned)ms);
	*result = tw_value_int(ms);
	return TW_OK;
}

/* Killed on the spot (peer death mid-call). */
static H_UNUSED tw_status fn_die(tw_call_ctx *ctx, const tw_value *args,
				 const tw_value *kwargs, tw_value *result,
				 void *arg)
{
	kill(getpid(), SIGKILL);
	return TW_OK;
}

/* Map for nested: add 1 to the inner result. */
static H_UNUSED tw_status h_plus_one(tw_future *src, void *arg, tw_value *out)
{
	const tw_value *v = tw_future_value(src);
	*out = tw_value_int(v->u.i + 1);
	return TW_OK;
}

/* nested(next_worker, x): calls add(x, 1) on next_worker without waiting
 * (async execution) and answers with that + 1; with next_worker "" it
 * answers x. */
static H_UNUSED tw_status fn_nested(tw_call_ctx *ctx, const tw_value *args,
				    const tw_value *kwargs, tw_value *result,
				    void *arg)
{
	const char *next = args->u.items[0].u.str;
	int64_t x = args->u.items[1].u.i;
	if (next[0] == '\0') {
		*result = tw_value_int(x);
		return TW_OK;
	}
	tw_value a2[2] = {tw_value_int(x), tw_value_int(1)};
	tw_value t = {.kind = TW_KIND_TUPLE, .flags = TW_VALUE_BORROWED, .len = 2,
		      .u.items = a2};
	tw_future *f, *g;
	tw_status st = tw_rpc_async(tw_call_agent(ctx), next, "add", &t, NULL,
				    -1, &f);
	if (st != TW_OK)
		return st;
	st = tw_future_chain(f, h_plus_one, NULL, &g);
	tw_future_release(f);
	if (st != TW_OK)
		return st;
	tw_call_defer(ctx, g);
	tw_future_release(g);
	return TW_OK;
}

static H_UNUSED tw_status h_register_all(tw_agent *a, void *arg)
{
	tw_status st = TW_OK;
	st |= tw_agent_register(a, "echo", fn_echo, NULL, 0);
	st |= tw_agent_register(a, "echo_borrow", fn_echo_borrow, NULL, 0);
	st |= tw_agent_register(a, "echo_blocking", fn_echo, NULL, TW_FN_BLOCKING);
	st |= tw_agent_register(a, "add", fn_add, NULL, 0);
	st |= tw_agent_register(a, "raise", fn_raise, NULL, 0);
	st |= tw_agent_register(a, "raise_blocking", fn_raise, NULL, TW_FN_BLOCKING);
	st |= tw_agent_register(a, "fail_plain", fn_fail_plain, NULL, 0);
	st |= tw_agent_register(a, "kw", fn_kw, NULL, 0);
	st |= tw_agent_register(a, "whoami", fn_whoami, NULL, 0);
	st |= tw_agent_register(a, "never", fn_never, NULL, 0);
	st |= tw_agent_register(a, "sleep", fn_sleep, NULL, TW_FN_BLOCKING);
	st |= tw_agent_register(a, "die", fn_die, NULL, 0);
	st |= tw_agent_register(a, "nested", fn_nested, NULL, 0);
	return st == TW_OK ? TW_OK : TW_EINVAL;
}

/* Options for a test worker: several share 2 cores, so loops yield and
 * sleep soon. */
static H_UNUSED void h_opts(struct tw_agent_opts *o, const struct h_worker *w)
{
	tw_agent_opts_init(o, sizeof(*o));
	o->name = h_names[w->rank];
	o->rank = (uint32_t)w->rank;
	o->world_size = (uint32_t)w->world;
	o->rendezvous = w->url;
	o->yield = true;
	o->spin_ns = 20000;
	o->executor_threads = 2;
	o->init_timeout_ms = 20000;
	o->setup = h_register_all;
}

/* A borrowed tuple view of n values (no allocation). */
#define H_TUPLE(arr)                                                          \
	((tw_value){.kind = TW_KIND_TUPLE, .flags = TW_VALUE_BORROWED,         \
		    .len = (uint32_t)(sizeof(arr) / sizeof((arr)[0])),        \
		    .u.items = (arr)})

#define H_STR(s) tw_value_string_borrow((s), strlen(s))

/* rpc_sync returning an int (or -999999 and the status). */
static H_UNUSED tw_status h_call_int(tw_agent *a, const char *to, const char *fn,
				     const tw_value *args, int64_t *out)
{
	tw_value r, e;
	tw_status st = tw_rpc_sync(a, to, fn, args, NULL, -1, &r, &e);
	*out = -999999;
	if (st == TW_OK && r.kind == TW_KIND_INT)
		*out = r.u.i;
	tw_value_destroy(&r);
	tw_value_destroy(&e);
	return st;
}

#endif
