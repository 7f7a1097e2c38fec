/* bench-offload: a member's small-call latency on a worker while another
 * member makes it run large operators, with the large ones on the worker's
 * run loop (loop_work_max = 0) or moved to its executor (the default).
 *
 * Three processes on 127.0.0.1, io_uring: the server (rank 1: threaded,
 * one loop, one executor thread), a "big" caller (rank 2) that keeps
 * calling aten::sum over a stride-0 float32 tensor of --big-elems
 * logical elements (4 bytes on the wire, the attack: all the work
 * is the server's), and the member (rank 0, embedded) that times
 * --calls small calls (aten::neg of a 1-element tensor) one after another.
 * Each phase prints
 *   RESULT offload mode=<idle|loop|executor> calls=N p50_us= p90_us=
 *          p99_us= max_us= big_done=<big calls completed meanwhile>
 * idle: no big caller (the anchor of the same run); executor-nice: the
 * executor phase with the server's executor_nice at --exec-nice (10).
 * Loops yield and spin
 * briefly: three processes and an executor thread share the machine's
 * cores (2 here), so compare the phases of one run, not runs.
 *
 *   bench-offload [--calls N] [--big-elems N] [--loop-work-max N]
 *                 [--exec-nice N]
 *                 [--phase idle|loop|executor|executor-nice] (default: all)
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tensorwire/tensorwire.h>

struct shared {
	_Atomic int stop;      /* the member is done: the big caller stops */
	_Atomic int big_up;    /* the big caller has made its first call */
	_Atomic long big_done; /* big calls completed */
};

static struct shared *sh;
static char rdv[64];
static int calls = 2000;
static int64_t big_elems = INT64_C(1) << 24;
static uint64_t loop_work_max_exec = UINT64_C(1) << 16;
static int exec_nice = 10; /* the executor-nice phase's executor_nice */
static int server_nice;    /* this phase's, read by the forked server */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
		perror("bench-offload: port");
		exit(1);
	}
	close(fd);
	return ntohs(sa.sin_port);
}

static const char *const names[] = {"member", "server", "big"};

static void opts(struct tw_agent_opts *o, uint32_t rank, uint32_t world)
{
	tw_agent_opts_init(o, sizeof(*o));
	o->name = names[rank];
	o->rank = rank;
	o->world_size = world;
	o->rendezvous = rdv;
	o->yield = true;
	o->spin_ns = 20000;
	o->executor_threads = 1;
	o->same_host = false; /* measured over io_uring, as recorded */
}

static tw_agent *init(struct tw_agent_opts *o)
{
	tw_agent *a;
	tw_status s = tw_agent_init(o, &a);
	if (s != TW_OK) {
		fprintf(stderr, "bench-offload %s: init: %s\n", o->name,
			tw_errmsg(s));
		_exit(1);
	}
	return a;
}

static void run_server(uint32_t world, uint64_t loop_work_max)
{
	struct tw_agent_opts o;
	opts(&o, 1, world);
	o.loop_work_max = loop_work_max;
	o.executor_nice = server_nice;
	tw_agent *a = init(&o);
	tw_agent_shutdown(a, true);
	_exit(0);
}

static void run_big(uint32_t world)
{
	struct tw_agent_opts o;
	opts(&o, 2, world);
	o.embedded = true;
	tw_agent *a = init(&o);
	static float one = 1.0f;
	int64_t stride = 0;
	tw_tensor t;
	tw_value v, r, e;
	if (tw_tensor_init(&t, TW_FLOAT32, 1, &big_elems, &stride, &one,
			   NULL) != TW_OK ||
	    tw_value_tensor(&v, &t) != TW_OK)
		_exit(1);
	tw_value args = {.kind = TW_KIND_TUPLE,
			 .flags = TW_VALUE_BORROWED,
			 .len = 1,
			 .u.items = &v};
	while (!atomic_load(&sh->stop)) {
		tw_status s = tw_rpc_sync(a, "server", "aten::sum", &args, NULL,
					  60000, &r, &e);
		if (s != TW_OK) {
			fprintf(stderr, "bench-offload big: %s\n",
				tw_errmsg(s));
			_exit(1);
		}
		tw_value_destroy(&r);
		atomic_fetch_add(&sh->big_done, 1);
		atomic_store(&sh->big_up, 1);
	}
	tw_value_destroy(&v);
	tw_agent_shutdown(a, true);
	_exit(0);
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return (a > b) - (a < b);
}

static pid_t spawn(void (*fn)(uint32_t, uint64_t), uint32_t world, uint64_t arg)
{
	pid_t p = fork();
	if (p < 0) {
		perror("bench-offload: fork");
		exit(1);
	}
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fn(world, arg);
		_exit(0);
	}
	return p;
}

static void big_main(uint32_t world, uint64_t unused)
{
	(void)unused;
	run_big(world);
}

/* One phase: idle (no big caller), loop or executor. */
static int phase(const char *mode)
{
	bool with_big = strcmp(mode, "idle") != 0;
	uint32_t world = with_big ? 3 : 2;
	snprintf(rdv, sizeof(rdv), "tcp://127.0.0.1:%d", free_port());
	memset(sh, 0, sizeof(*sh));
	uint64_t lwm = strcmp(mode, "loop") == 0 ? 0 : loop_work_max_exec;
	server_nice = strcmp(mode, "executor-nice") == 0 ? exec_nice : 0;
	pid_t srv = spawn(run_server, world, lwm);
	pid_t big = with_big ? spawn(big_main, world, 0) : -1;

	struct tw_agent_opts o;
	opts(&o, 0, world);
	o.embedded = true;
	tw_agent *a = init(&o);
	while (with_big && !atomic_load(&sh->big_up))
		tw_agent_poll(a);

	float x = 2.0f;
	int64_t n1 = 1;
	tw_tensor t;
	tw_value v, r, e;
	if (tw_tensor_init(&t, TW_FLOAT32, 1, &n1, NULL, &x, NULL) != TW_OK ||
	    tw_value_tensor(&v, &t) != TW_OK)
		return 1;
	tw_value args = {.kind = TW_KIND_TUPLE,
			 .flags = TW_VALUE_BORROWED,
			 .len = 1,
			 .u.items = &v};
	uint64_t *lat = calloc((size_t)calls, sizeof(*lat));
	long big0 = atomic_load(&sh->big_done);
	for (int i = 0; i < calls; i++) {
		uint64_t t0 = now_ns();
		tw_status s = tw_rpc_sync(a, "server", "aten::neg", &args, NULL,
					  60000, &r, &e);
		lat[i] = now_ns() - t0;
		if (s != TW_OK) {
			fprintf(stderr, "bench-offload member: %s\n",
				tw_errmsg(s));
			return 1;
		}
		tw_value_destroy(&r);
	}
	long bigs = atomic_load(&sh->big_done) - big0;
	atomic_store(&sh->stop, 1);
	qsort(lat, (size_t)calls, sizeof(*lat), cmp_u64);
	printf("RESULT offload mode=%s calls=%d big_elems=%lld "
	       "loop_work_max=%llu executor_nice=%d p50_us=%.1f p90_us=%.1f "
	       "p99_us=%.1f max_us=%.1f big_done=%ld\n",
	       mode, calls, (long long)big_elems, (unsigned long long)lwm,
	       server_nice, lat[calls / 2] / 1e3, lat[calls * 9 / 10] / 1e3,
	       lat[calls * 99 / 100] / 1e3, lat[calls - 1] / 1e3, bigs);
	fflush(stdout);
	free(lat);
	tw_value_destroy(&v);
	tw_agent_shutdown(a, true);
	waitpid(srv, NULL, 0);
	if (big > 0)
		waitpid(big, NULL, 0);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"calls", required_argument, NULL, 'c'},
		{"big-elems", required_argument, NULL, 'b'},
		{"loop-work-max", required_argument, NULL, 'l'},
		{"phase", required_argument, NULL, 'p'},
		{"exec-nice", required_argument, NULL, 'n'},
		{NULL, 0, NULL, 0}};
	const char *only = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			calls = atoi(optarg);
			break;
		case 'b':
			big_elems = atoll(optarg);
			break;
		case 'l':
			loop_work_max_exec = strtoull(optarg, NULL, 0);
			break;
		case 'p':
			only = optarg;
			break;
		case 'n':
			exec_nice = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: see the comment at the top\n");
			return 2;
		}
	}
	if (calls < 100)
		calls = 100;
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 1;
	const char *phases[] = {"idle", "loop", "executor", "executor-nice"};
	for (int i = 0; i < 4; i++)
		if (only == NULL || strcmp(only, phases[i]) == 0)
			if (phase(phases[i]) != 0)
				return 1;
	return 0;
}
