/* bench-rpc: tensorwire calls between two processes on 127.0.0.1, measured
 * the way ../shared/anchors measure the machine, so perf/bench-rpc.sh can
 * print every figure beside its anchor from the same run.
 *
 * A forked server (rank 1: threaded, one loop pinned to --server-cpu,
 * generous spin) serves bench::noop() -> None and bench::echo(x) -> x; the
 * client (rank 0, pinned to --client-cpu) runs in embedded mode when the
 * library has it (its thread drives the loop), else threaded (--threaded
 * forces that). Measured:
 *   1. rpc_sync of bench::noop: per-call latency percentiles
 *   2. bench::noop with W = 64 and 256 calls in flight for T s: calls/s
 *   3. tensor echo, float32, 4 KiB .. 64 MiB: median round trip over k
 *      reps, GB/s = 2 * bytes / median; byte-exact once per size
 *   4. 1 KiB and 1 MiB tensor echo latency percentiles (against the raw
 *      io_uring ping-pong of the same sizes)
 * and, with --only rref (issue 13), tw_remote + to_here of bench::noop and
 * of a 1 MiB echo beside rpc_sync of the same, then, in a second group of
 * three processes, an RRef passed through a third worker (rref3 alone:
 * only that; see bench_third).
 * Each prints one "RESULT tw_<what> key=value ..." line; latencies are in
 * ns from rdtscp calibrated against CLOCK_MONOTONIC, like the anchors.
 *
 * --same-host runs them over the same-host transport (shared-memory rings,
 * tw_agent_opts.same_host), which the benchmark otherwise turns off.
 *
 * --transport memif|af_packet runs the same parts over the DPDK transport
 * (perf/bench-dpdk.sh: beside ../shared/anchors' dpdk_pingpong on the same
 * vdev). Each process brings up its own EAL: -l <its cpu> --no-huge -m MB
 * --no-pci --no-telemetry and a unique --file-prefix. memif: the server
 * process is the memif server (as the anchor's pong), on an abstract socket
 * named after the client's pid; the client starts its EAL once the server's
 * port is up. af_packet: --ifaces SRV,CLI names the two ends of a veth pair
 * that the caller made. The rendezvous stays TCP: on 127.0.0.1, or with
 * --netns/--hosts on the client's address in its namespace. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include <tensorwire/tensorwire.h>

#define SERVER "bench-server"
#define CLIENT "bench-client"
#define THIRD "bench-third" /* rank 2 of the rref3 group */

static pid_t server_pid = -1;
static pid_t third_pid = -1;

static void kill_server(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
		server_pid = -1;
	}
	if (third_pid > 0) {
		kill(third_pid, SIGKILL);
		waitpid(third_pid, NULL, 0);
		third_pid = -1;
	}
}

static void die(const char *what, tw_status s)
{
	/* Right after the failing call: its reason (tw_errmsg) is ours. */
	fprintf(stderr, "bench-rpc: %s: %s\n", what, tw_errmsg(s));
	kill_server();
	exit(1);
}

static void die_err(const char *what, tw_status s, tw_value *err)
{
	char text[512] = "";
	if (err != NULL && err->kind != TW_KIND_NONE)
		tw_value_format(err, text, sizeof(text));
	fprintf(stderr, "bench-rpc: %s: %s %s\n", what, tw_strerror(s), text);
	kill_server();
	exit(1);
}

/* ---- time ----------------------------------------------------------------- */

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t tsc(void)
{
	unsigned aux;
	return __rdtscp(&aux);
}

static double tsc_per_ns;

static void tsc_calibrate(void)
{
	uint64_t t0 = mono_ns(), c0 = tsc();
	while (mono_ns() - t0 < 50000000u) /* 50 ms */
		;
	uint64_t t1 = mono_ns(), c1 = tsc();
	tsc_per_ns = (double)(c1 - c0) / (double)(t1 - t0);
}

static double tsc_ns(uint64_t c)
{
	return (double)c / tsc_per_ns;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Percentiles of n tsc samples (sorted here), as the anchors' report_lat. */
struct lat {
	size_t n;
	double p50, p90, p99, p999, min, max, mean;
};

static struct lat lat_stats(uint64_t *s, size_t n)
{
	struct lat l = {.n = n};
	if (n == 0)
		return l;
	qsort(s, n, sizeof(*s), cmp_u64);
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += (double)s[i];
#define P(q) tsc_ns(s[(size_t)((double)(n - 1) * (q))])
	l.p50 = P(0.50);
	l.p90 = P(0.90);
	l.p99 = P(0.99);
	l.p999 = P(0.999);
#undef P
	l.min = tsc_ns(s[0]);
	l.max = tsc_ns(s[n - 1]);
	l.mean = tsc_ns((uint64_t)(sum / (double)n));
	return l;
}

static void print_lat(const char *name, const struct lat *l, const char *extra)
{
	printf("RESULT %-24s n=%zu p50=%.0fns p90=%.0fns p99=%.0fns p99.9=%.0fns "
	       "min=%.0fns max=%.0fns mean=%.0fns%s%s\n",
	       name, l->n, l->p50, l->p90, l->p99, l->p999, l->min, l->max,
	       l->mean, extra ? " " : "", extra ? extra : "");
	fflush(stdout);
}

static void pin_self(int cpu)
{
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		fprintf(stderr, "bench-rpc: cannot pin to cpu %d: %s\n", cpu,
			strerror(errno));
}

/* ---- the server's functions ----------------------------------------------- */

static tw_status fn_noop(tw_call_ctx *ctx, const tw_value *args,
			 const tw_value *kwargs, tw_value *result, void *arg)
{
	*result = tw_value_none();
	return TW_OK;
}

/* bench::echo(x) -> x: the clone shares the tensor's bytes, so the answer
 * goes out of the receive buffer the call arrived in. */
static tw_status fn_echo(tw_call_ctx *ctx, const tw_value *args,
			 const tw_value *kwargs, tw_value *result, void *arg)
{
	const tw_value *x;
	if (tw_value_get_item(args, 0, &x) != TW_OK)
		return TW_EBADARGS;
	return tw_value_clone(result, x);
}

static void use_rref_done(tw_future *f, void *arg)
{
	tw_rref_release(arg);
}

/* bench::use_rref(rref) -> its value, as torch's
 * def use_rref(r): return r.to_here(): the third worker fetches the value
 * from its owner. A handler on a run loop must not block, so the call is
 * answered by the fetch's future (tw_call_defer); the RRef is held until
 * the value is here. */
static tw_status fn_use_rref(tw_call_ctx *ctx, const tw_value *args,
			     const tw_value *kwargs, tw_value *result,
			     void *arg)
{
	const tw_value *v;
	tw_rref *r;
	tw_future *f;
	if (tw_value_get_item(args, 0, &v) != TW_OK)
		return TW_EBADARGS;
	tw_status s = tw_rref_from_value(v, &r);
	if (s != TW_OK)
		return s;
	s = tw_rref_to_here_async(r, -1, &f);
	if (s != TW_OK) {
		tw_rref_release(r);
		return s;
	}
	tw_call_defer(ctx, f);
	if (tw_future_then(f, use_rref_done, r) != TW_OK)
		tw_rref_release(r); /* the fetch is out; the value stays
				     * with the caller's own user */
	tw_future_release(f);
	return TW_OK;
}

/* DPDK mode: the server tells the client its port is up (MAP_SHARED). */
static _Atomic int *srv_port_up;

static tw_status server_setup(tw_agent *a, void *arg)
{
	tw_status s = tw_agent_register(a, "bench::noop", fn_noop, NULL, 0);
	if (s == TW_OK)
		s = tw_agent_register(a, "bench::echo", fn_echo, NULL, 0);
	if (s == TW_OK)
		s = tw_agent_register(a, "bench::use_rref", fn_use_rref, NULL,
				      0);
	if (srv_port_up != NULL)
		atomic_store(srv_port_up, s == TW_OK ? 1 : -1);
	return s;
}

/* ---- options ---------------------------------------------------------------- */

struct opts {
	long n;           /* small-call samples */
	double pipe_secs; /* per window */
	double echo_secs; /* time budget per tensor size */
	long echo_min, echo_max;
	long lat_small_n, lat_big_n; /* 1 KiB and 1 MiB latency samples */
	int client_cpu, server_cpu;
	int client_loop_cpu; /* threaded client's loop; default client_cpu */
	bool server_yield;
	uint64_t spin_ns; /* both loops' idle spin */
	bool threaded;
	bool quick;
	const char *only; /* comma list of sync,rref,rref3,pipe,echo,lat
			   * (= lat1k and lat1m); NULL = all but rref and
			   * rref3 */
	int windows[8];   /* pipelined windows, 0-terminated */
	size_t sizes[16]; /* echo sizes in bytes, 0-terminated */
	/* DPDK mode (transport != NULL: "memif" or "af_packet") */
	const char *transport;
	const char *ifaces; /* af_packet: "SRV_IFACE,CLI_IFACE" */
	int eal_mem_mb;     /* EAL -m (default 512) */
	uint32_t credits, mbufs;
	bool no_pkt_tag; /* DPDK: tw_dpdk_opts.no_pkt_tag */
	uint64_t zc_threshold;
	const char *cc; /* tcp_congestion_local; NULL = the library's */
	bool same_host; /* --same-host: the shared-memory transport */
	/* io_uring across network namespaces (perf/bench-hosts.sh): [0] the
	 * client's, [1] the server's namespace and address; NULL = this
	 * namespace, 127.0.0.1 */
	char *netns[2], *host[2];
	char eal[2][512]; /* [0] client, [1] server */
	char prefix[2][64];
};

#define SRV_MAC "02:00:00:00:0b:01"
#define CLI_MAC "02:00:00:00:0b:02"
#define EXIT_RETRY 75

static struct opts *dpdk_o; /* for the exit-time cleanup */

/* Move this (single-threaded) process into network namespace name, as
 * `ip netns exec` does; exits on failure. */
static void enter_netns(const char *name)
{
	if (name == NULL)
		return;
	char path[128];
	snprintf(path, sizeof(path), "/var/run/netns/%s", name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
		fprintf(stderr,
			"bench-rpc: entering network namespace %s: %s\n", name,
			strerror(errno));
		exit(1);
	}
	close(fd);
}

static bool dpdk_mode(const struct opts *o)
{
	return o->transport != NULL;
}

static int rm_entry(const char *p, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(p);
	return 0;
}

/* The EAL's /var/run/dpdk/<prefix>, once its process is gone. */
static void rm_run_dirs(void)
{
	if (dpdk_o == NULL)
		return;
	for (int i = 0; i < 2; i++) {
		char d[128];
		snprintf(d, sizeof(d), "/var/run/dpdk/%s", dpdk_o->prefix[i]);
		nftw(d, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	}
}

static int ifindex_of(const char *dev)
{
	char path[128], buf[32] = "";
	snprintf(path, sizeof(path), "/sys/class/net/%s/ifindex", dev);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	if (fgets(buf, sizeof(buf), f) == NULL)
		buf[0] = '\0';
	fclose(f);
	return atoi(buf);
}

static int ifidx[2]; /* af_packet: [0] client's, [1] server's interface */

/* af_packet names its PACKET_FANOUT group (pid ^ ifindex) & 0xffff: the
 * two ends of one veth pair can collide (the second socket then fails). */
static bool fanout_collides(pid_t client, pid_t server)
{
	return ifidx[0] > 0 &&
	       ((client ^ ifidx[0]) & 0xffff) == ((server ^ ifidx[1]) & 0xffff);
}

/* EAL arguments of both processes (exits on bad options). */
static void dpdk_prepare(struct opts *o)
{
	char srv_if[64] = "", cli_if[64] = "";
	if (strcmp(o->transport, "af_packet") == 0) {
		const char *c = o->ifaces ? strchr(o->ifaces, ',') : NULL;
		if (c == NULL || c == o->ifaces || c[1] == '\0' ||
		    (size_t)(c - o->ifaces) >= sizeof(srv_if)) {
			fprintf(stderr,
				"bench-rpc: af_packet needs --ifaces SRV,CLI "
				"(the two ends of a veth pair)\n");
			exit(2);
		}
		memcpy(srv_if, o->ifaces, (size_t)(c - o->ifaces));
		snprintf(cli_if, sizeof(cli_if), "%s", c + 1);
		ifidx[1] = ifindex_of(srv_if);
		ifidx[0] = ifindex_of(cli_if);
		if (ifidx[0] <= 0 || ifidx[1] <= 0) {
			fprintf(stderr, "bench-rpc: no interface %s or %s\n",
				srv_if, cli_if);
			exit(2);
		}
	} else if (strcmp(o->transport, "memif") != 0) {
		fprintf(stderr,
			"bench-rpc: --transport uring|memif|af_packet\n");
		exit(2);
	}
	int pid = (int)getpid();
	snprintf(o->prefix[0], sizeof(o->prefix[0]), "twbench%dc", pid);
	snprintf(o->prefix[1], sizeof(o->prefix[1]), "twbench%ds", pid);
	int cpu[2] = {o->client_cpu, o->server_cpu};
	for (int i = 0; i < 2; i++) {
		char lcore[32] = "";
		if (cpu[i] >= 0)
			snprintf(lcore, sizeof(lcore), "-l %d ", cpu[i]);
		char vdev[256];
		if (srv_if[0] != '\0')
			snprintf(vdev, sizeof(vdev), "net_af_packet0,iface=%s",
				 i == 1 ? srv_if : cli_if);
		else
			snprintf(vdev, sizeof(vdev),
				 "net_memif0,role=%s,socket=/twbench-memif-%d,"
				 "socket-abstract=yes,mac=%s",
				 i == 1 ? "server" : "client", pid,
				 i == 1 ? SRV_MAC : CLI_MAC);
		snprintf(o->eal[i], sizeof(o->eal[i]),
			 "%s--no-huge -m %d --no-pci --no-telemetry "
			 "--log-level=warning --file-prefix=%s --vdev=%s",
			 lcore, o->eal_mem_mb, o->prefix[i], vdev);
	}
	srv_port_up = mmap(NULL, sizeof(*srv_port_up), PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (srv_port_up == MAP_FAILED) {
		perror("bench-rpc: mmap");
		exit(1);
	}
	atomic_store(srv_port_up, 0);
	dpdk_o = o;
}

/* Rank r's transport (0 client, 1 server): its options in t, pointed to
 * by ao. */
struct transport_opts {
	struct tw_uring_opts u;
	struct tw_dpdk_opts d;
};

/* The benchmark group's secret: every connection authenticates, as in a
 * deployment (the cost is the first call's; DPDK serves on routable
 * addresses, which needs one). */
#define BENCH_SECRET "tensorwire-bench-secret"

static void agent_transport(const struct opts *o, int r,
			    struct tw_agent_opts *ao, struct transport_opts *t)
{
	ao->secret = BENCH_SECRET;
	if (!dpdk_mode(o)) {
		tw_uring_opts_init(&t->u, sizeof(t->u));
		if (o->cc != NULL)
			t->u.cc_local = t->u.cc_remote = o->cc;
		if (o->host[r] != NULL)
			t->u.listen_host = o->host[r];
		ao->transport = TW_TRANSPORT_URING;
		ao->transport_opts = &t->u;
		return;
	}
	tw_dpdk_opts_init(&t->d, sizeof(t->d));
	t->d.eal_args = o->eal[r];
	t->d.port = strcmp(o->transport, "memif") == 0 ? "net_memif0"
						       : "net_af_packet0";
	t->d.local_ip = r == 0 ? "10.77.0.2" : "10.77.0.1";
	t->d.udp_base_port = 32100;
	if (o->credits != 0)
		t->d.credits = o->credits;
	if (o->mbufs != 0)
		t->d.mbufs = o->mbufs;
	if (o->zc_threshold != 0)
		t->d.zc_threshold = o->zc_threshold;
	t->d.no_pkt_tag = o->no_pkt_tag;
	ao->transport = TW_TRANSPORT_DPDK;
	ao->transport_opts = &t->d;
}

static bool want(const struct opts *o, const char *what)
{
	if (o->only == NULL)
		return true;
	size_t n = strlen(what);
	for (const char *p = o->only; (p = strstr(p, what)) != NULL; p += n)
		if ((p == o->only || p[-1] == ',') &&
		    (p[n] == '\0' || p[n] == ','))
			return true;
	return false;
}

/* ---- server process ----------------------------------------------------------- */

/* rank 1 (SERVER) of a group of world workers, or rank 2 (THIRD) of the
 * rref3 group. In the group of three, both servers share --server-cpu
 * (the machine has 2 cores, the client keeps the other): their loops
 * yield while they spin, so the one with work to do runs (as
 * bench-offload's). */
static int server_main(const struct opts *o, const char *rdv, uint32_t rank,
		       uint32_t world)
{
	/* No stray worker: die with the client. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(1);
	if (dpdk_mode(o) && fanout_collides(getppid(), getpid()))
		_exit(EXIT_RETRY);
	enter_netns(o->netns[1]);
	pin_self(o->server_cpu);
	struct tw_agent_opts ao;
	tw_agent_opts_init(&ao, sizeof(ao));
	ao.name = rank == 1 ? SERVER : THIRD;
	ao.rank = rank;
	ao.world_size = world;
	ao.rendezvous = rdv;
	ao.num_loops = 1;
	ao.first_cpu = o->server_cpu;
	ao.spin_ns = o->spin_ns;
	ao.yield = o->server_yield || world > 2;
	ao.executor_threads = 1;
	/* The transport under measurement carries the calls: the same-host
	 * one only when asked for (both processes share this host). */
	ao.same_host = o->same_host;
	ao.setup = server_setup;
	struct transport_opts to;
	agent_transport(o, 1, &ao, &to);
	tw_agent *a;
	tw_status s = tw_agent_init(&ao, &a);
	if (s != TW_OK) {
		fprintf(stderr, "bench-rpc server: init: %s (%s)\n",
			tw_strerror(s), tw_errmsg(s));
		if (srv_port_up != NULL)
			atomic_store(srv_port_up, -1);
		if (dpdk_mode(o))
			tw_dpdk_eal_cleanup();
		_exit(1);
	}
	/* Serve until the client shuts down too, however long its parts
	 * take: with the default deadline (shutdown_timeout_ms, 60 s) a
	 * part still running after 60 s (--only rref on a loaded machine)
	 * saw this server stop ("the agent is shutting down"). It dies with
	 * the client all the same (PR_SET_PDEATHSIG). */
	s = tw_agent_shutdown_timeout(a, true, 0);
	if (dpdk_mode(o))
		tw_dpdk_eal_cleanup();
	_exit(s == TW_OK ? 0 : 1);
}

/* ---- client ------------------------------------------------------------------- */

static bool embedded;

static tw_status wait_future(tw_agent *a, tw_future *f)
{
	if (embedded)
		return tw_agent_wait(a, f, -1);
	return tw_future_wait(f, -1);
}

static tw_agent *client_init(const struct opts *o, const char *rdv,
			     uint32_t world)
{
	pin_self(o->client_cpu);
	embedded = !o->threaded;
	if (dpdk_mode(o)) {
		/* The memif client after the server's port is up. */
		uint64_t until = mono_ns() + 60000000000u;
		int up;
		while ((up = atomic_load(srv_port_up)) == 0 &&
		       mono_ns() < until) {
			if (waitpid(server_pid, NULL, WNOHANG) == server_pid) {
				server_pid = -1;
				break;
			}
			usleep(2000);
		}
		if (up != 1) {
			fprintf(stderr,
				"bench-rpc: the server's DPDK port did not come up\n");
			kill_server();
			exit(1);
		}
	}
	for (;;) {
		struct tw_agent_opts ao;
		tw_agent_opts_init(&ao, sizeof(ao));
		ao.name = CLIENT;
		ao.rank = 0;
		ao.world_size = world;
		ao.rendezvous = rdv;
		ao.num_loops = 1;
		ao.executor_threads = 1;
		ao.same_host = o->same_host; /* as the server's */
		/* Spin, don't sleep, while a big echo is on its way: a wake-up
		 * costs ~25 us here (limits README pitfall 2). */
		ao.spin_ns = o->spin_ns;
		struct transport_opts to;
		agent_transport(o, 0, &ao, &to);
		if (embedded) {
			ao.embedded = true;
			ao.first_cpu = -1; /* this thread, already pinned */
		} else {
			/* Threaded: the loop shares the caller's core and
			 * yields while it spins (pitfall 9). */
			ao.first_cpu = o->client_loop_cpu;
			ao.yield = true;
		}
		tw_agent *a;
		tw_status s = tw_agent_init(&ao, &a);
		if (s == TW_OK)
			return a;
		/* The EAL starts once per process: no second try over DPDK. */
		if (embedded && !dpdk_mode(o)) {
			fprintf(stderr,
				"bench-rpc: embedded init failed (%s: %s); "
				"falling back to threaded mode\n",
				tw_strerror(s), tw_errmsg(s));
			embedded = false;
			continue;
		}
		fprintf(stderr, "bench-rpc: client init: %s (%s)\n",
			tw_strerror(s), tw_errmsg(s));
		kill_server();
		exit(1);
	}
}

/* 1. small calls, one at a time */
static void bench_sync(tw_agent *a, const struct opts *o)
{
	long warm = o->n / 10 > 1000 ? o->n / 10 : 1000;
	tw_value res, err;
	for (long i = 0; i < warm; i++) {
		tw_status s = tw_rpc_sync(a, SERVER, "bench::noop", NULL, NULL,
					  -1, &res, &err);
		if (s != TW_OK)
			die_err("warm-up rpc_sync", s, &err);
		tw_value_destroy(&res);
	}
	uint64_t *smp = malloc((size_t)o->n * sizeof(*smp));
	if (smp == NULL)
		die("malloc", TW_ENOMEM);
	uint64_t t0 = mono_ns();
	for (long i = 0; i < o->n; i++) {
		uint64_t c0 = tsc();
		tw_status s = tw_rpc_sync(a, SERVER, "bench::noop", NULL, NULL,
					  -1, &res, &err);
		smp[i] = tsc() - c0;
		if (s != TW_OK)
			die_err("rpc_sync", s, &err);
		tw_value_destroy(&res);
	}
	double secs = (double)(mono_ns() - t0) / 1e9;
	struct lat l = lat_stats(smp, (size_t)o->n);
	char extra[64];
	snprintf(extra, sizeof(extra), "calls/s=%.0f", (double)o->n / secs);
	print_lat("tw_sync_noop", &l, extra);
	free(smp);
}

static void make_tensor_args(size_t bytes, tw_tensor *t, tw_value *args);

/* 1b. tw_remote(fn, args) + to_here + release, one at a time, beside
 * rpc_sync(fn, args) measured just before in the same run (issue 13's
 * target for bench::noop: at most 2.5x). The deletes leave off the clock. */
static void rref_pair(tw_agent *a, long n, const char *fn, const tw_value *args,
		      const char *name)
{
	uint64_t *smp = malloc((size_t)n * sizeof(*smp));
	if (smp == NULL)
		die("malloc", TW_ENOMEM);
	tw_value res, err;
	/* Warm-up, then measured, as the remotes below: an unwarmed
	 * baseline (fresh receive buffers for 1 MiB) would flatter the
	 * ratio. */
	for (int pass = 0; pass < 2; pass++) {
		for (long i = 0; i < n; i++) {
			uint64_t c0 = tsc();
			tw_status s = tw_rpc_sync(a, SERVER, fn, args, NULL, -1,
						  &res, &err);
			smp[i] = tsc() - c0;
			if (s != TW_OK)
				die_err("rpc_sync", s, &err);
			tw_value_destroy(&res);
		}
	}
	struct lat ls = lat_stats(smp, (size_t)n);
	for (int pass = 0; pass < 2; pass++) { /* warm-up, then measured */
		for (long i = 0; i < n; i++) {
			uint64_t c0 = tsc();
			tw_rref *r;
			tw_status s = tw_remote(a, SERVER, fn, args, NULL, -1,
						&r);
			if (s != TW_OK)
				die("remote", s);
			s = tw_rref_to_here(r, -1, &res, &err);
			if (s != TW_OK)
				die_err("to_here", s, &err);
			tw_rref_release(r);
			smp[i] = tsc() - c0;
			tw_value_destroy(&res);
		}
	}
	struct lat l = lat_stats(smp, (size_t)n);
	char extra[96];
	snprintf(extra, sizeof(extra), "sync_p50_ns=%.0f ratio_p50=%.2f",
		 ls.p50, l.p50 / ls.p50);
	print_lat(name, &l, extra);
	free(smp);
}

static void bench_rref(tw_agent *a, const struct opts *o)
{
	rref_pair(a, o->n, "bench::noop", NULL, "tw_remote_to_here_noop");
	tw_tensor t;
	tw_value args;
	make_tensor_args(1u << 20, &t, &args);
	rref_pair(a, o->n / 20 > 100 ? o->n / 20 : 100, "bench::echo", &args,
		  "tw_remote_to_here_1MiB");
	tw_value_destroy(&args);
	tw_tensor_release(&t);
}

/* 1c. An RRef passed through a third worker (rref3): this client (A)
 * makes an RRef owned by SERVER (B) with tw_remote of bench::noop, waits
 * until B confirmed it, then times rpc_sync(THIRD, "bench::use_rref",
 * (rref,)): the call forks the RRef to C, whose handler fetches the value
 * from B and answers with it (torch: rpc_sync(C, use_rref, args=(rref,))).
 * Beside it, rpc_sync(THIRD, "bench::noop") in the same processes, just
 * before. Runs in a group of its own (bench_third). */
static void third_measure(tw_agent *a, long n)
{
	long warm = n / 10 > 1000 ? n / 10 : 1000;
	uint64_t *smp = malloc((size_t)n * sizeof(*smp));
	if (smp == NULL)
		die("malloc", TW_ENOMEM);
	tw_value res, err;
	for (long i = 0; i < warm + n; i++) {
		uint64_t c0 = tsc();
		tw_status s = tw_rpc_sync(a, THIRD, "bench::noop", NULL, NULL,
					  -1, &res, &err);
		if (i >= warm)
			smp[i - warm] = tsc() - c0;
		if (s != TW_OK)
			die_err("rpc_sync to the third worker", s, &err);
		tw_value_destroy(&res);
	}
	struct lat ls = lat_stats(smp, (size_t)n);
	print_lat("tw_third_sync_noop", &ls, NULL);

	tw_rref *r;
	tw_status s = tw_remote(a, SERVER, "bench::noop", NULL, NULL, -1, &r);
	if (s != TW_OK)
		die("remote", s);
	s = tw_rref_to_here(r, -1, &res, &err);
	if (s != TW_OK)
		die_err("to_here", s, &err);
	tw_value_destroy(&res);
	/* The confirmation (REMOTE_RET) came before the value on the same
	 * connection; poll until it is seen, whatever the mode. */
	for (int i = 0; !tw_rref_confirmed_by_owner(r); i++) {
		if (i > 200000)
			die("waiting for the owner's confirmation",
			    TW_ETIMEDOUT);
		if (embedded)
			tw_agent_poll(a);
		else
			usleep(10);
	}
	tw_value rv, args;
	if ((s = tw_rref_value(r, &rv)) != TW_OK)
		die("rref value", s);
	if ((s = tw_value_tuple(&args, 1)) != TW_OK ||
	    (s = tw_value_set_item(&args, 0, rv)) != TW_OK)
		die("args", s);
	for (long i = 0; i < warm + n; i++) {
		uint64_t c0 = tsc();
		s = tw_rpc_sync(a, THIRD, "bench::use_rref", &args, NULL, -1,
				&res, &err);
		if (i >= warm)
			smp[i - warm] = tsc() - c0;
		if (s != TW_OK)
			die_err("rpc_sync use_rref", s, &err);
		if (res.kind != TW_KIND_NONE) {
			fprintf(stderr,
				"bench-rpc: use_rref answered a value that is not None\n");
			kill_server();
			exit(1);
		}
		tw_value_destroy(&res);
	}
	tw_value_destroy(&args); /* the value's reference to r */
	tw_rref_release(r);
	/* The last call's fork keeps r until C's CHILD_ACCEPT arrives, which
	 * may follow C's answer; a graceful shutdown now would report r as
	 * held (TW_ERUNTIME). Off the clock: poll until it is gone. */
	struct tw_rref_stats rs;
	uint64_t until = mono_ns() + 5000000000u;
	for (tw_agent_rref_stats(a, &rs); rs.users > 0 && mono_ns() < until;
	     tw_agent_rref_stats(a, &rs)) {
		if (embedded)
			tw_agent_poll(a);
		else
			usleep(100);
	}
	struct lat l = lat_stats(smp, (size_t)n);
	char extra[96];
	snprintf(extra, sizeof(extra), "sync_p50_ns=%.0f ratio_p50=%.2f",
		 ls.p50, l.p50 / ls.p50);
	print_lat("tw_rref_third_worker", &l, extra);
	free(smp);
}

/* 2. W calls in flight: wait on the oldest, refill its slot. */
static long pipe_run(tw_agent *a, tw_future **ring, int W, double secs,
		     double *elapsed)
{
	long issued = 0, done = 0;
	for (int i = 0; i < W; i++) {
		tw_status s;
		while ((s = tw_rpc_async(a, SERVER, "bench::noop", NULL, NULL,
					 -1, &ring[i])) == TW_ENOSPC)
			if (embedded)
				tw_agent_poll(a);
		if (s != TW_OK)
			die("rpc_async", s);
		issued++;
	}
	uint64_t t0 = mono_ns();
	uint64_t end = t0 + (uint64_t)(secs * 1e9);
	bool more = true;
	long head = 0;
	while (done < issued) {
		tw_future **slot = &ring[head % W];
		tw_status s = wait_future(a, *slot);
		if (s != TW_OK)
			die("pipelined call", s);
		tw_future_release(*slot);
		*slot = NULL;
		done++;
		head++;
		if (more && (done & 63) == 0 && mono_ns() >= end)
			more = false;
		if (more) {
			while ((s = tw_rpc_async(a, SERVER, "bench::noop", NULL,
						 NULL, -1, slot)) == TW_ENOSPC)
				if (embedded)
					tw_agent_poll(a);
			if (s != TW_OK)
				die("rpc_async", s);
			issued++;
		}
	}
	*elapsed = (double)(mono_ns() - t0) / 1e9;
	return done;
}

static void bench_pipe(tw_agent *a, const struct opts *o, int W)
{
	tw_future **ring = calloc((size_t)W, sizeof(*ring));
	if (ring == NULL)
		die("calloc", TW_ENOMEM);
	double el;
	pipe_run(a, ring, W, o->pipe_secs / 5, &el); /* warm-up */
	long n = pipe_run(a, ring, W, o->pipe_secs, &el);
	double cps = (double)n / el;
	char name[32];
	snprintf(name, sizeof(name), "tw_pipe_noop_W%d", W);
	printf("RESULT %-24s n=%ld calls/s=%.0f secs=%.3f avg_lat(Little)=%.1fus\n",
	       name, n, cps, el, (double)W / cps * 1e6);
	fflush(stdout);
	free(ring);
}

/* 3 and 4. tensor echo */
static void make_tensor_args(size_t bytes, tw_tensor *t, tw_value *args)
{
	int64_t shape[1] = {(int64_t)(bytes / 4)};
	tw_status s = tw_tensor_alloc(t, TW_FLOAT32, 1, shape);
	if (s != TW_OK)
		die("tensor alloc", s);
	float *p = t->data;
	for (int64_t i = 0; i < shape[0]; i++)
		p[i] = (float)(i % 1000003) + 0.25f;
	tw_value tv;
	if ((s = tw_value_tensor(&tv, t)) || (s = tw_value_tuple(args, 1)) ||
	    (s = tw_value_set_item(args, 0, tv)))
		die("args", s);
}

static uint64_t echo_once(tw_agent *a, const tw_value *args, const tw_tensor *t,
			  bool check)
{
	tw_value res, err;
	uint64_t c0 = tsc();
	tw_status s = tw_rpc_sync(a, SERVER, "bench::echo", args, NULL, -1,
				  &res, &err);
	uint64_t dt = tsc() - c0;
	if (s != TW_OK)
		die_err("echo", s, &err);
	if (check) {
		const tw_tensor *back;
		size_t nb = 0;
		if (tw_value_get_tensor(&res, &back) != TW_OK ||
		    !tw_tensor_equal(back, t) || tw_tensor_nbytes(back, &nb) ||
		    memcmp(back->data, t->data, nb) != 0) {
			fprintf(stderr,
				"bench-rpc: echo of %zu bytes came back different\n",
				nb);
			kill_server();
			exit(1);
		}
	}
	tw_value_destroy(&res);
	return dt;
}

static const char *size_label(size_t b, char *buf, size_t n)
{
	if (b >= (1u << 20) && b % (1u << 20) == 0)
		snprintf(buf, n, "%zuMiB", b >> 20);
	else
		snprintf(buf, n, "%zuKiB", b >> 10);
	return buf;
}

static void bench_echo(tw_agent *a, const struct opts *o, size_t bytes)
{
	tw_tensor t;
	tw_value args;
	make_tensor_args(bytes, &t, &args);
	echo_once(a, &args, &t, true); /* byte-exact, once per size */
	for (int i = 0; i < 3; i++)
		echo_once(a, &args, &t, false);
	long cap = o->echo_max;
	uint64_t *smp = malloc((size_t)cap * sizeof(*smp));
	if (smp == NULL)
		die("malloc", TW_ENOMEM);
	long n = 0;
	uint64_t t0 = mono_ns();
	while (n < cap && (n < o->echo_min ||
			   (double)(mono_ns() - t0) / 1e9 < o->echo_secs))
		smp[n++] = echo_once(a, &args, &t, false);
	struct lat l = lat_stats(smp, (size_t)n);
	char name[48], lab[24], extra[160];
	snprintf(name, sizeof(name), "tw_echo_%s",
		 size_label(bytes, lab, sizeof(lab)));
	snprintf(extra, sizeof(extra),
		 "bytes=%zu GB/s=%.3f GB/s_best=%.3f exact=1", bytes,
		 2.0 * (double)bytes / l.p50, 2.0 * (double)bytes / l.min);
	print_lat(name, &l, extra);
	free(smp);
	tw_value_destroy(&args);
	tw_tensor_release(&t);
}

static void bench_echo_lat(tw_agent *a, long n, size_t bytes)
{
	tw_tensor t;
	tw_value args;
	make_tensor_args(bytes, &t, &args);
	echo_once(a, &args, &t, true);
	long warm = n / 10 > 10 ? n / 10 : 10;
	for (long i = 0; i < warm; i++)
		echo_once(a, &args, &t, false);
	uint64_t *smp = malloc((size_t)n * sizeof(*smp));
	if (smp == NULL)
		die("malloc", TW_ENOMEM);
	uint64_t t0 = mono_ns();
	for (long i = 0; i < n; i++)
		smp[i] = echo_once(a, &args, &t, false);
	double secs = (double)(mono_ns() - t0) / 1e9;
	struct lat l = lat_stats(smp, (size_t)n);
	char name[48], lab[24], extra[96];
	snprintf(name, sizeof(name), "tw_echolat_%s",
		 size_label(bytes, lab, sizeof(lab)));
	snprintf(extra, sizeof(extra), "bytes=%zu rt/s=%.0f exact=1", bytes,
		 (double)n / secs);
	print_lat(name, &l, extra);
	free(smp);
	tw_value_destroy(&args);
	tw_tensor_release(&t);
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(fd, (struct sockaddr *)&sa, &len)) {
		perror("bench-rpc: finding a free port");
		exit(1);
	}
	close(fd);
	return ntohs(sa.sin_port);
}

/* Wait for a server that leaves after the shutdown barrier, but not
 * forever; *pp is cleared. False when it did not exit with 0. */
static bool reap_server(pid_t *pp, const char *who)
{
	int wst = 0;
	pid_t sp = *pp;
	*pp = -1;
	for (int i = 0; i < 500; i++) {
		pid_t r = waitpid(sp, &wst, WNOHANG);
		if (r == sp)
			break;
		if (i == 499) {
			fprintf(stderr,
				"bench-rpc: %s did not exit; killing it\n",
				who);
			kill(sp, SIGKILL);
			waitpid(sp, &wst, 0);
		}
		usleep(10000);
	}
	if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
		fprintf(stderr, "bench-rpc: %s exited with status %d\n", who,
			WIFEXITED(wst) ? WEXITSTATUS(wst)
				       : 128 + WTERMSIG(wst));
		return false;
	}
	return true;
}

static const char *cc_name(const struct opts *o)
{
	return o->cc == NULL ? "library default"
	       : o->cc[0]    ? o->cc
			     : "system's";
}

/* Whether a part of the two-process group is wanted (all but rref3). */
static bool pair_wanted(const struct opts *o)
{
	static const char *const parts[] = {"sync", "rref",  "pipe", "echo",
					    "lat",  "lat1k", "lat1m"};
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		if (want(o, parts[i]))
			return true;
	return false;
}

/* The client and one server: every part but the third-worker case. */
static int run_pair(const struct opts *o)
{
	char rdv[64];
	enter_netns(o->netns[0]);
	snprintf(rdv, sizeof(rdv), "tcp://%s:%d",
		 o->host[0] != NULL ? o->host[0] : "127.0.0.1", free_port());
	for (;;) {
		fflush(stdout);
		fflush(stderr);
		server_pid = fork();
		if (server_pid < 0) {
			perror("bench-rpc: fork");
			return 1;
		}
		if (server_pid == 0) {
			dpdk_o = NULL; /* the parent cleans up */
			return server_main(o, rdv, 1, 2);
		}
		if (!dpdk_mode(o) || !fanout_collides(getpid(), server_pid))
			break;
		waitpid(server_pid, NULL, 0); /* it left with EXIT_RETRY */
	}

	pin_self(o->client_cpu);
	tsc_calibrate();
	tw_agent *a = client_init(o, rdv, 2);
	printf("# bench-rpc client=%s cpu%d, server threaded 1 loop cpu%d spin %.0f ms, "
	       "%s, tsc %.3f GHz, tcp cc %s\n",
	       embedded ? "embedded" : "threaded", o->client_cpu, o->server_cpu,
	       (double)o->spin_ns / 1e6, o->quick ? "quick" : "full",
	       tsc_per_ns, cc_name(o));
	if (o->netns[0] != NULL)
		printf("# across network namespaces: server %s on %s, client "
		       "%s on %s\n",
		       o->netns[1], o->host[1] ? o->host[1] : "127.0.0.1",
		       o->netns[0], o->host[0] ? o->host[0] : "127.0.0.1");
	if (dpdk_mode(o))
		printf("# transport=dpdk vdev=%s credits=%u mbufs=%u zc_threshold=%" PRIu64
		       " (0 = default) pkt_tag=%s\n# client EAL: %s\n# server EAL: %s\n",
		       o->transport, o->credits, o->mbufs, o->zc_threshold,
		       o->no_pkt_tag ? "off" : "on", o->eal[0], o->eal[1]);
	fflush(stdout);

	if (want(o, "sync"))
		bench_sync(a, o);
	if (o->only != NULL && want(o, "rref"))
		bench_rref(a, o);
	if (want(o, "pipe"))
		for (int i = 0; o->windows[i] > 0; i++)
			bench_pipe(a, o, o->windows[i]);
	if (want(o, "echo"))
		for (int i = 0; o->sizes[i] > 0; i++)
			bench_echo(a, o, o->sizes[i]);
	/* lat1k and lat1m alone let a paired round run each right after
	 * its anchor (perf/bench-rpc.sh). */
	if (want(o, "lat") || want(o, "lat1k"))
		bench_echo_lat(a, o->lat_small_n, 1024);
	if (want(o, "lat") || want(o, "lat1m"))
		bench_echo_lat(a, o->lat_big_n, 1u << 20);

	struct tw_agent_stats st;
	tw_agent_get_stats(a, &st);
	printf("# client stats: calls_started=%" PRIu64 " calls_sent=%" PRIu64
	       " timeouts=%" PRIu64 " conns_opened=%" PRIu64 "\n",
	       st.calls_started, st.calls_sent, st.timeouts, st.conns_opened);
	tw_status s = tw_agent_shutdown(a, true);
	if (s != TW_OK)
		fprintf(stderr, "bench-rpc: shutdown: %s\n", tw_strerror(s));
	reap_server(&server_pid, "server");
	return s == TW_OK ? 0 : 1;
}

/* 1c's group: the client (A, rank 0, cpu -c), SERVER (B, rank 1, the
 * RRef's owner) and THIRD (C, rank 2), both on cpu -C with yielding loops
 * (server_main). A group of its own, after the pair's: the two-process
 * parts keep their own placement. io_uring only. */
static int bench_third(const struct opts *o)
{
	if (dpdk_mode(o)) {
		printf("# rref3: skipped (three processes over DPDK: not "
		       "set up here)\n");
		return 0;
	}
	char rdv[64];
	snprintf(rdv, sizeof(rdv), "tcp://127.0.0.1:%d", free_port());
	for (uint32_t rank = 1; rank <= 2; rank++) {
		fflush(stdout);
		fflush(stderr);
		pid_t p = fork();
		if (p < 0) {
			perror("bench-rpc: fork");
			kill_server();
			return 1;
		}
		if (p == 0)
			return server_main(o, rdv, rank, 3);
		*(rank == 1 ? &server_pid : &third_pid) = p;
	}
	pin_self(o->client_cpu);
	if (tsc_per_ns == 0)
		tsc_calibrate();
	tw_agent *a = client_init(o, rdv, 3);
	printf("# bench-rpc rref3: client=%s cpu%d, owner and third worker "
	       "threaded 1 loop each, both on cpu%d, yielding, spin %.0f ms, "
	       "tcp cc %s\n",
	       embedded ? "embedded" : "threaded", o->client_cpu, o->server_cpu,
	       (double)o->spin_ns / 1e6, cc_name(o));
	fflush(stdout);
	third_measure(a, o->n);
	tw_status s = tw_agent_shutdown(a, true);
	if (s != TW_OK)
		fprintf(stderr, "bench-rpc: rref3 shutdown: %s (%s)\n",
			tw_strerror(s), tw_errmsg(s));
	bool ok = reap_server(&server_pid, "owner");
	ok = reap_server(&third_pid, "third worker") && ok;
	return s == TW_OK && ok ? 0 : 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench-rpc [--quick] [--threaded] [-n N] [-T secs] [-W w,w] [-S sizes] [-E secs]\n"
		"                 [-c client_cpu] [-C server_cpu] [--spin-ms MS]\n"
		"                 [--client-loop-cpu CPU] [--server-yield]\n"
		"                 [--only sync,rref,rref3,pipe,echo,lat,lat1k,lat1m]\n"
		"                 [--transport uring|memif|af_packet [--ifaces SRV,CLI]\n"
		"                  [--credits N] [--mbufs N] [--zc-threshold B] [--eal-mem MB] [--no-pkt-tag]]\n"
		"                 [--cc NAME] [--same-host]\n"
		"  --quick      10k small calls, shorter windows and echo budgets\n"
		"  --threaded   client with a loop thread (default: embedded mode when\n"
		"               the library has it)\n"
		"  -n N         small-call samples (default 100000)\n"
		"  -T secs      seconds per pipelined window (default 3)\n"
		"  -W list      pipelined windows, comma-separated (default 64,256)\n"
		"  -S list      echo sizes in bytes, K/M suffixes, multiples of 4\n"
		"               (default 4K,64K,1M,16M,64M)\n"
		"  -E secs      time budget per echo size (default 2)\n"
		"  -c / -C      client / server cpu (default 0 / 1; -1 = no pinning)\n"
		"  --client-loop-cpu CPU  threaded client's loop (default: -c)\n"
		"  --server-yield         server loop yields while it spins\n"
		"  --spin-ms MS           loops' idle spin before sleeping (default 1000)\n"
		"  --only LIST            run only these parts (lat = lat1k,lat1m: the\n"
		"                         1 KiB and 1 MiB echo latency runs; rref =\n"
		"                         remote+to_here, then rref3: an RRef through a\n"
		"                         third worker, in a group of three processes)\n"
		"  --transport T          uring (default: io_uring TCP on 127.0.0.1), or DPDK\n"
		"                         over memif or af_packet (root; own EAL per process)\n"
		"  --ifaces SRV,CLI       af_packet: the two ends of a veth pair (made by\n"
		"                         the caller, e.g. perf/bench-dpdk.sh)\n"
		"  --credits N            DPDK packets in flight per session (0 = default)\n"
		"  --no-pkt-tag           DPDK: no per-packet tags (tw_dpdk_opts.no_pkt_tag)\n"
		"  --mbufs N              DPDK mbufs per queue pool (0 = default)\n"
		"  --zc-threshold B       zero-copy segments from B bytes (0 = default)\n"
		"  --eal-mem MB           EAL -m with --no-huge (default 512)\n"
		"  --same-host            io_uring: the calls over the same-host (shared-memory)\n"
		"                         transport, as same_host picks for peers on one host\n"
		"  --cc NAME              TCP congestion control of the connections\n"
		"                         (default: the library's, reno; \"\" = the system's)\n"
		"  --netns SRV,CLI        io_uring: server and client each in this network\n"
		"                         namespace (made by the caller, perf/bench-hosts.sh)\n"
		"  --hosts SRV,CLI        ... serving on these addresses (default 127.0.0.1)\n");
}

int main(int argc, char **argv)
{
	struct opts o = {
		.n = 100000,
		.pipe_secs = 3,
		.echo_secs = 2,
		.echo_min = 10,
		.echo_max = 2000,
		.lat_small_n = 20000,
		.lat_big_n = 2000,
		.client_cpu = 0,
		.server_cpu = 1,
		.spin_ns = 1000000000u, /* 1 s: it never sleeps mid-run */
		.eal_mem_mb = 512,
	};
	enum {
		O_QUICK = 256,
		O_THREADED,
		O_SPIN,
		O_ONLY,
		O_HELP,
		O_LOOPCPU,
		O_SYIELD,
		O_TRANSPORT,
		O_IFACES,
		O_CREDITS,
		O_MBUFS,
		O_ZC,
		O_EALMEM,
		O_CC,
		O_NOTAG,
		O_NETNS,
		O_HOSTS,
		O_SAMEHOST
	};
	static const struct option lopts[] = {
		{"quick", no_argument, NULL, O_QUICK},
		{"threaded", no_argument, NULL, O_THREADED},
		{"spin-ms", required_argument, NULL, O_SPIN},
		{"only", required_argument, NULL, O_ONLY},
		{"client-loop-cpu", required_argument, NULL, O_LOOPCPU},
		{"server-yield", no_argument, NULL, O_SYIELD},
		{"transport", required_argument, NULL, O_TRANSPORT},
		{"ifaces", required_argument, NULL, O_IFACES},
		{"credits", required_argument, NULL, O_CREDITS},
		{"mbufs", required_argument, NULL, O_MBUFS},
		{"zc-threshold", required_argument, NULL, O_ZC},
		{"eal-mem", required_argument, NULL, O_EALMEM},
		{"cc", required_argument, NULL, O_CC},
		{"no-pkt-tag", no_argument, NULL, O_NOTAG},
		{"netns", required_argument, NULL, O_NETNS},
		{"hosts", required_argument, NULL, O_HOSTS},
		{"same-host", no_argument, NULL, O_SAMEHOST},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0},
	};
	long n_set = -1;
	int loop_cpu = -2;
	double T_set = -1, E_set = -1;
	int c;
	o.windows[0] = 64;
	o.windows[1] = 256;
	static const size_t def_sizes[] = {4u << 10,  64u << 10, 1u << 20,
					   16u << 20, 64u << 20, 0};
	memcpy(o.sizes, def_sizes, sizeof(def_sizes));
	while ((c = getopt_long(argc, argv, "n:T:E:c:C:W:S:h", lopts, NULL)) !=
	       -1) {
		switch (c) {
		case O_QUICK:
			o.quick = true;
			break;
		case O_THREADED:
			o.threaded = true;
			break;
		case O_SPIN:
			o.spin_ns = (uint64_t)(atof(optarg) * 1e6);
			break;
		case O_ONLY:
			o.only = optarg;
			break;
		case O_LOOPCPU:
			loop_cpu = atoi(optarg);
			break;
		case O_SYIELD:
			o.server_yield = true;
			break;
		case O_TRANSPORT:
			o.transport = strcmp(optarg, "uring") == 0 ? NULL
								   : optarg;
			break;
		case O_IFACES:
			o.ifaces = optarg;
			break;
		case O_CREDITS:
			o.credits = (uint32_t)atol(optarg);
			break;
		case O_MBUFS:
			o.mbufs = (uint32_t)atol(optarg);
			break;
		case O_ZC:
			o.zc_threshold = strtoull(optarg, NULL, 0);
			break;
		case O_EALMEM:
			o.eal_mem_mb = atoi(optarg);
			break;
		case O_CC:
			o.cc = optarg;
			break;
		case O_NOTAG:
			o.no_pkt_tag = true;
			break;
		case O_SAMEHOST:
			o.same_host = true;
			break;
		case O_NETNS:
		case O_HOSTS: {
			/* "SRV,CLI": [1] server, [0] client */
			char **two = c == O_NETNS ? o.netns : o.host;
			char *comma = strchr(optarg, ',');
			if (comma == NULL) {
				fprintf(stderr,
					"bench-rpc: --netns / --hosts want "
					"SRV,CLI\n");
				return 2;
			}
			*comma = '\0';
			two[1] = optarg;
			two[0] = comma + 1;
			break;
		}
		case 'n':
			n_set = atol(optarg);
			break;
		case 'S': {
			int k = 0;
			for (char *p = optarg; *p != '\0' && k < 15; k++) {
				char *end;
				unsigned long long v = strtoull(p, &end, 10);
				if (*end == 'K' || *end == 'k')
					v <<= 10, end++;
				else if (*end == 'M' || *end == 'm')
					v <<= 20, end++;
				if (end == p || v < 4 || v % 4 != 0 ||
				    v > (1ull << 32)) {
					usage(stderr);
					return 2;
				}
				o.sizes[k] = (size_t)v;
				p = *end == ',' ? end + 1 : end;
			}
			o.sizes[k] = 0;
			break;
		}
		case 'W': {
			int k = 0;
			for (char *p = optarg; *p != '\0' && k < 7; k++) {
				char *end;
				long w = strtol(p, &end, 10);
				if (end == p || w <= 0 || w > 65536) {
					usage(stderr);
					return 2;
				}
				o.windows[k] = (int)w;
				p = *end == ',' ? end + 1 : end;
			}
			o.windows[k] = 0;
			break;
		}
		case 'T':
			T_set = atof(optarg);
			break;
		case 'E':
			E_set = atof(optarg);
			break;
		case 'c':
			o.client_cpu = atoi(optarg);
			break;
		case 'C':
			o.server_cpu = atoi(optarg);
			break;
		case 'h':
		case O_HELP:
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (o.quick) {
		o.n = 10000;
		o.pipe_secs = 1;
		o.echo_secs = 0.5;
		o.echo_max = 500;
		o.lat_small_n = 5000;
		o.lat_big_n = 500;
	}
	o.client_loop_cpu = loop_cpu == -2 ? o.client_cpu : loop_cpu;
	if (n_set > 0)
		o.n = n_set;
	if (T_set > 0)
		o.pipe_secs = T_set;
	if (E_set > 0)
		o.echo_secs = E_set;

	if (dpdk_mode(&o)) {
		dpdk_prepare(&o);
		atexit(rm_run_dirs);
	}
	int rc = 0;
	if (pair_wanted(&o))
		rc = run_pair(&o);
	if (rc == 0 && o.only != NULL &&
	    (want(&o, "rref") || want(&o, "rref3")))
		rc = bench_third(&o);
	if (dpdk_mode(&o))
		tw_dpdk_eal_cleanup(); /* then atexit removes the run dirs */
	return rc;
}
