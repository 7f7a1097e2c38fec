/* tw-demo: two workers on 127.0.0.1 doing real calls — rpc_sync, 1000
 * rpc_async in flight, a 64 MiB tensor round trip, a remote error and a
 * timeout — printing results and round-trip latency percentiles. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tensorwire/agent.h>
#include <tensorwire/tensorwire.h>

#include "demo_fns.h"

#define CHECK(expr)                                                            \
	do {                                                                   \
		tw_status s_ = (expr);                                         \
		if (s_ != TW_OK) {                                             \
			fprintf(stderr, "tw-demo: %s: %s\n", #expr,            \
				tw_errmsg(s_));                                \
			exit(1);                                               \
		}                                                              \
	} while (0)

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The two workers' secret, fresh for each run (main, before the fork). */
static char demo_secret[2 * 16 + 1];

static void make_secret(void)
{
	unsigned char r[16];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		perror("getrandom");
		exit(1);
	}
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(demo_secret + 2 * i, 3, "%02x", r[i]);
}

static tw_agent *join(const char *name, uint32_t rank, const char *rdv)
{
	struct tw_agent_opts o;
	tw_agent_opts_init(&o, sizeof(o));
	o.name = name;
	o.rank = rank;
	o.world_size = 2;
	o.rendezvous = rdv;
	o.first_cpu = (int)rank; /* one loop per worker, one core each */
	o.setup = demo_setup;    /* functions exist before anyone can call */
	/* Both workers are this process's: a secret of its own (TW_SECRET
	 * or TW_SECRET_FILE, when set, win), so the demo runs as a
	 * deployment does, every connection authenticated. */
	if (getenv("TW_SECRET") == NULL && getenv("TW_SECRET_FILE") == NULL)
		o.secret = demo_secret;
	/* The caller drives its own loop (embedded mode): on two cores a
	 * caller thread beside its loop thread would make three busy threads
	 * with the server's loop, and every call would pay a hand-off. */
	o.embedded = rank == 0;
	tw_agent *a;
	tw_status s = tw_agent_init(&o, &a);
	if (s != TW_OK) {
		fprintf(stderr, "tw-demo: %s could not join: %s (%s)\n", name,
			tw_strerror(s), tw_errmsg(s));
		exit(1);
	}
	return a;
}

static tw_value tuple1(tw_value v)
{
	tw_value t;
	CHECK(tw_value_tuple(&t, 1));
	CHECK(tw_value_set_item(&t, 0, v));
	return t;
}

static void run_caller(tw_agent *a)
{
	tw_worker_info wi;
	CHECK(tw_agent_worker_info(a, "worker1", &wi));
	printf("worker0: joined; worker1 is id %u at %s\n", wi.id, wi.addr);

	/* rpc_sync */
	tw_value args, res, err;
	CHECK(tw_value_tuple(&args, 2));
	tw_value_set_item(&args, 0, tw_value_int(40));
	tw_value_set_item(&args, 1, tw_value_int(2));
	CHECK(tw_rpc_sync(a, "worker1", "demo::add", &args, NULL, -1, &res,
			  &err));
	printf("rpc_sync  demo::add(40, 2) = %" PRId64 "\n", res.u.i);
	tw_value_destroy(&res);
	/* One host: the calls took the same-host transport, unless it was
	 * turned off or could not be set up (a warn line says why). */
	struct tw_agent_stats st;
	tw_agent_get_stats(a, &st);
	printf("path      %s\n",
	       st.conns_shm != 0 ? "shared memory (same host, same_host on)"
				 : "TCP over io_uring");

	/* Latency: sequential small calls. */
	enum { NLAT = 2000 };
	static double lat[NLAT];
	for (int i = 0; i < NLAT + 200; i++) {
		double t0 = now_us();
		CHECK(tw_rpc_sync(a, "worker1", "demo::add", &args, NULL, -1,
				  &res, &err));
		if (i >= 200)
			lat[i - 200] = now_us() - t0;
		tw_value_destroy(&res);
	}
	qsort(lat, NLAT, sizeof(lat[0]), cmp_double);
	printf("rpc_sync  %d small calls: p50 %.1f us, p99 %.1f us\n", NLAT,
	       lat[NLAT / 2], lat[NLAT * 99 / 100]);

	/* 1000 rpc_async in flight. */
	enum { NASYNC = 1000 };
	static tw_future *fs[NASYNC];
	double t0 = now_us();
	for (int i = 0; i < NASYNC; i++) {
		tw_value ai;
		CHECK(tw_value_tuple(&ai, 2));
		tw_value_set_item(&ai, 0, tw_value_int(i));
		tw_value_set_item(&ai, 1, tw_value_int(i));
		CHECK(tw_rpc_async(a, "worker1", "demo::add", &ai, NULL, -1,
				   &fs[i]));
		tw_value_destroy(&ai);
	}
	int ok = 0;
	for (int i = 0; i < NASYNC; i++) {
		if (tw_agent_wait(a, fs[i], -1) == TW_OK &&
		    tw_future_value(fs[i])->u.i == 2 * i)
			ok++;
		tw_future_release(fs[i]);
	}
	double dt = now_us() - t0;
	printf("rpc_async %d calls in flight: %d correct, %.0f calls/s\n",
	       NASYNC, ok, NASYNC / (dt / 1e6));
	tw_value_destroy(&args);

	/* 64 MiB tensor round trip. */
	tw_tensor t;
	int64_t shape[1] = {16 << 20};
	CHECK(tw_tensor_alloc(&t, TW_FLOAT32, 1, shape));
	float *p = t.data;
	for (int64_t i = 0; i < shape[0]; i++)
		p[i] = (float)(i % 1000003);
	tw_value tv;
	CHECK(tw_value_tensor(&tv, &t));
	args = tuple1(tv);
	/* The first round trip of a process pays for faulting in fresh
	 * receive buffers on both sides; later ones reuse them. */
	for (int rep = 0; rep < 3; rep++) {
		t0 = now_us();
		CHECK(tw_rpc_sync(a, "worker1", "demo::echo", &args, NULL, -1,
				  &res, &err));
		dt = now_us() - t0;
		const tw_tensor *back;
		CHECK(tw_value_get_tensor(&res, &back));
		printf("echo      64 MiB float32 tensor (%s): %s, %.1f ms round trip, "
		       "%.2f GB/s (both directions)\n",
		       rep == 0 ? "first" : "again",
		       tw_tensor_equal(back, &t) ? "byte-exact" : "MISMATCH",
		       dt / 1e3, 2.0 * 64 * 1048576 / (dt * 1e3));
		tw_value_destroy(&res);
	}
	tw_value_destroy(&args);
	tw_tensor_release(&t);

	/* A remote error keeps kind, message and origin. */
	args = tuple1(tw_value_int(-1));
	tw_status s = tw_rpc_sync(a, "worker1", "demo::check_positive", &args,
				  NULL, -1, &res, &err);
	char text[256];
	tw_value_format(&err, text, sizeof(text));
	printf("error     demo::check_positive(-1) -> %s: %s\n",
	       tw_status_name(s), text);
	tw_value_destroy(&err);
	tw_value_destroy(&args);

	/* Unknown function. */
	s = tw_rpc_sync(a, "worker1", "demo::nope", NULL, NULL, -1, &res, &err);
	tw_value_format(&err, text, sizeof(text));
	printf("error     demo::nope() -> %s: %s\n", tw_status_name(s), text);
	tw_value_destroy(&err);

	/* A timeout: 100 ms against a handler that takes 1 s. */
	args = tuple1(tw_value_int(1000));
	t0 = now_us();
	s = tw_rpc_sync(a, "worker1", "demo::slow", &args, NULL, 100, &res,
			&err);
	dt = now_us() - t0;
	tw_value_format(&err, text, sizeof(text));
	printf("timeout   demo::slow(1000) with 100 ms -> %s after %.0f ms: %s\n",
	       tw_status_name(s), dt / 1e3, text);
	tw_value_destroy(&err);
	tw_value_destroy(&args);
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(fd, (struct sockaddr *)&sa, &len)) {
		perror("tw-demo: finding a free port");
		exit(1);
	}
	close(fd);
	return ntohs(sa.sin_port);
}

int main(void)
{
	char rdv[64];
	snprintf(rdv, sizeof(rdv), "tcp://127.0.0.1:%d", free_port());
	make_secret();
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		/* worker1 serves until everyone shuts down. */
		tw_agent *a = join("worker1", 1, rdv);
		CHECK(tw_agent_shutdown(a, true));
		_exit(0);
	}
	tw_agent *a = join("worker0", 0, rdv);
	run_caller(a);
	CHECK(tw_agent_shutdown(a, true));
	int st;
	waitpid(pid, &st, 0);
	printf("shutdown  graceful; worker1 exited with status %d\n",
	       WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
