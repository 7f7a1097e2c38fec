/* tw-perf: a load generator for tensorwire, as sockperf is for sockets.
 * A client (rank 0, hosting the rendezvous) calls a function of a server
 * (rank 1) closed loop (a fixed number of calls in flight) or open loop
 * (a target rate; latency from each call's scheduled time, so a server
 * that falls behind shows in the latency rather than hiding in a lower
 * rate), then prints the latency percentiles, the throughput and the
 * errors by kind, and appends CSV rows. By default it forks its own
 * server (--role both); --role server / client run the two ends apart
 * (io_uring or same-host only), and a client may call any worker of rank
 * 1, a tw-worker's demo::echo for one. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tensorwire/tensorwire.h>

#include "perf_fns.h"
#include "perf_load.h"
#include "perf_net.h"

#define PROG "tw-perf"

struct opts {
	const char *role; /* both, server, client */
	const char *rdv;
	struct pn_net net;
	uint32_t loops;   /* the server's run loops */
	uint64_t spin_ns; /* both sides' idle spin */
	uint64_t payload; /* bytes of each tensor argument */
	int nargs;        /* tensor arguments; -1: by function */
	uint64_t warmup;
	const char *label;
	const char *csv, *interval_csv, *hist_csv;
	struct pl_conf c;
};

static pid_t server_pid = -1;

static tw_status server_setup(tw_agent *a, void *arg)
{
	tw_status s = tw_agent_register(a, "perf::noop", pf_noop, NULL, 0);
	if (s == TW_OK)
		s = tw_agent_register(a, "perf::echo", pf_echo, NULL, 0);
	if (s == TW_OK)
		s = tw_agent_register(a, "perf::fail", pf_fail, NULL, 0);
	/* Over DPDK, the port is up: the client may start its EAL. */
	pn_server_port_up(s == TW_OK);
	return s;
}

/* Rank 1: serve until the client has shut down too. */
static int server_main(const struct opts *o, bool forked)
{
	if (forked)
		pn_server_child(&o->net, PROG);
	else
		pn_pin(o->net.cpu[1], PROG);
	struct tw_agent_opts ao;
	tw_agent_opts_init(&ao, sizeof(ao));
	ao.name = "perf-server";
	ao.rank = 1;
	ao.world_size = 2;
	ao.rendezvous = o->rdv;
	ao.num_loops = o->loops;
	ao.first_cpu = o->net.cpu[1];
	ao.spin_ns = o->spin_ns;
	ao.yield = o->loops > 1;
	ao.executor_threads = 1;
	ao.setup = server_setup;
	int rc = pn_serve(&o->net, &ao, PROG);
	if (forked)
		_exit(rc);
	return rc;
}

/* ---- the client ------------------------------------------------------------ */

static void kill_server(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
		server_pid = -1;
	}
}

static tw_agent *client_init(const struct opts *o)
{
	pn_pin(o->net.cpu[0], PROG);
	if (!pn_wait_server_port(&o->net, &server_pid)) {
		fprintf(stderr,
			PROG ": the server's DPDK port did not come up\n");
		return NULL;
	}
	struct tw_agent_opts ao;
	tw_agent_opts_init(&ao, sizeof(ao));
	ao.name = "perf-client";
	ao.rank = 0;
	ao.world_size = 2;
	ao.rendezvous = o->rdv;
	ao.num_loops = 1;
	ao.executor_threads = 1;
	ao.spin_ns = o->spin_ns;
	/* This thread drives the loop: completions are seen (and timed) as
	 * they arrive, with no hand-off between threads. */
	ao.embedded = true;
	ao.first_cpu = -1;
	struct pn_transport to;
	pn_agent_transport(&o->net, 0, &ao, &to);
	tw_agent *a;
	tw_status s = tw_agent_init(&ao, &a);
	if (s != TW_OK) {
		fprintf(stderr, PROG ": client init: %s (%s)\n", tw_strerror(s),
			tw_errmsg(s));
		return NULL;
	}
	return a;
}

/* args: nargs float32 tensors of payload bytes each. */
static tw_status make_args(const struct opts *o, tw_tensor *t, tw_value *args)
{
	int64_t shape[1] = {(int64_t)(o->payload / 4)};
	tw_status s = tw_tensor_alloc(t, TW_FLOAT32, 1, shape);
	if (s != TW_OK)
		return s;
	float *p = t->data;
	for (int64_t i = 0; i < shape[0]; i++)
		p[i] = (float)(i % 1000003) + 0.25f;
	if ((s = tw_value_tuple(args, (uint32_t)o->nargs)) != TW_OK)
		return s;
	for (int i = 0; i < o->nargs && s == TW_OK; i++) {
		tw_value tv;
		s = tw_value_tensor(&tv, t);
		if (s == TW_OK)
			s = tw_value_set_item(args, (uint32_t)i, tv);
	}
	return s;
}

/* f opened for appending, with the header when it is new or empty. */
static FILE *open_csv(const char *path, void (*header)(FILE *))
{
	if (path == NULL)
		return NULL;
	FILE *f = fopen(path, "a");
	if (f == NULL) {
		fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
		exit(1);
	}
	if (ftell(f) == 0)
		header(f);
	return f;
}

static const char *transport_name(const struct opts *o)
{
	return o->net.transport ? o->net.transport : "uring";
}

static int client_main(struct opts *o)
{
	tw_agent *a = client_init(o);
	if (a == NULL)
		return 1;
	tw_tensor t = {0};
	tw_value args = tw_value_none();
	tw_status s = TW_OK;
	if (o->nargs > 0 && (s = make_args(o, &t, &args)) != TW_OK) {
		fprintf(stderr, PROG ": arguments: %s\n", tw_errmsg(s));
		tw_agent_shutdown(a, false);
		return 1;
	}
	o->c.args = o->nargs > 0 ? &args : NULL;
	FILE *ivf = open_csv(o->interval_csv, pl_interval_header);
	struct pl_out out = {.ivf = ivf, .label = o->label};
	struct pl_result *r = malloc(sizeof(*r));
	if (r == NULL)
		s = TW_ENOMEM;
	else
		s = pl_run(a, &o->c, o->warmup, &out, r);
	if (s == TW_OK) {
		printf("# tw-perf %s: transport %s, client cpu%d (embedded), "
		       "server %u loop(s) cpu%d, payload %" PRIu64
		       " B x %d, tcp cc %s\n",
		       o->label, transport_name(o), o->net.cpu[0], o->loops,
		       o->net.cpu[1], o->payload, o->nargs > 0 ? o->nargs : 0,
		       pn_cc_name(&o->net));
		pl_print(stdout, &o->c, r);
		FILE *f = open_csv(o->csv, pl_csv_header);
		if (f != NULL) {
			pl_csv_row(f, o->label, transport_name(o), o->payload,
				   &o->c, r);
			fclose(f);
		}
		f = open_csv(o->hist_csv, pl_hist_header);
		if (f != NULL) {
			pl_hist_rows(f, o->label, &r->lat);
			fclose(f);
		}
	} else {
		fprintf(stderr, PROG ": run: %s\n", tw_strerror(s));
	}
	if (ivf != NULL)
		fclose(ivf);
	free(r);
	tw_value_destroy(&args);
	if (o->nargs > 0)
		tw_tensor_release(&t);
	tw_status sd = tw_agent_shutdown(a, true);
	if (sd != TW_OK)
		fprintf(stderr, PROG ": shutdown: %s (%s)\n", tw_strerror(sd),
			tw_errmsg(sd));
	return s == TW_OK && sd == TW_OK ? 0 : 1;
}

/* --role both: fork the server, then be the client. */
static int run_both(struct opts *o)
{
	static char rdv[64];
	pn_enter_netns(o->net.netns[0], PROG);
	snprintf(rdv, sizeof(rdv), "tcp://%s:%d",
		 o->net.host[0] != NULL ? o->net.host[0] : "127.0.0.1",
		 pn_free_port(PROG));
	o->rdv = rdv;
	for (;;) {
		fflush(stdout);
		fflush(stderr);
		server_pid = fork();
		if (server_pid < 0) {
			perror(PROG ": fork");
			return 1;
		}
		if (server_pid == 0) {
			pn_forget_run_dirs(); /* the parent cleans up */
			return server_main(o, true);
		}
		if (!pn_fanout_collides(&o->net, getpid(), server_pid))
			break;
		waitpid(server_pid, NULL, 0); /* it left with PN_EXIT_RETRY */
	}
	int rc = client_main(o);
	if (rc != 0)
		kill_server();
	else if (!pn_reap(&server_pid, "server", PROG))
		rc = 1;
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tw-perf [--role both|server|client] [--rendezvous tcp://HOST:PORT]\n"
		"               [-t uring|shm|memif|af_packet] [--ifaces SRV,CLI] [--cc NAME]\n"
		"               [-c CLIENT_CPU] [-C SERVER_CPU] [--loops N] [--spin-ms MS]\n"
		"               [-f FN] [-s BYTES] [--nargs N] [-W INFLIGHT]\n"
		"               [-n COUNT | -d SECS] [-r CALLS_PER_S] [--warmup N]\n"
		"               [--timeout-ms MS] [--fail-every N]\n"
		"               [--label L] [--csv FILE] [--hist-csv FILE]\n"
		"               [--interval SECS --interval-csv FILE]\n"
		"  --role         both (default): fork a server and call it; server: be\n"
		"                 rank 1 of --rendezvous; client: be rank 0 (hosting the\n"
		"                 rendezvous) and call rank 1 (tw-perf --role server, or\n"
		"                 any worker: a tw-worker's demo::echo). Apart: io_uring\n"
		"                 or shm only\n"
		"  -t             transport: uring (io_uring TCP, default), shm (same-host\n"
		"                 rings), memif or af_packet (DPDK; root, one EAL each)\n"
		"  -c / -C        client / server cpu (default 0 / 1; -1: not pinned)\n"
		"  --loops N      the server's run loops (default 1); the client drives\n"
		"                 one loop itself (embedded)\n"
		"  -f FN          perf::noop (default), perf::echo, perf::fail, a builtin\n"
		"                 (aten::add ...), or a function of the peer\n"
		"  -s BYTES       each tensor argument's size (float32; multiple of 4;\n"
		"                 default 64)\n"
		"  --nargs N      tensor arguments (default: 0 for perf::noop, 2 for\n"
		"                 aten::*, else 1)\n"
		"  -W N           calls in flight at most (default 1; up to %d)\n"
		"  -n / -d        calls to make, or seconds to run (default -d 5)\n"
		"  -r RATE        open loop: RATE calls/s on a fixed schedule, latency\n"
		"                 from each call's scheduled time (default: closed loop)\n"
		"  --warmup N     calls first, closed loop, off the record (default 1000)\n"
		"  --fail-every N every N-th call calls perf::fail instead (a ValueError)\n"
		"  --csv FILE     append a row for the run (header when new)\n"
		"  --hist-csv F   append the latency histogram's buckets\n"
		"  --interval S   with --interval-csv F: a row every S seconds\n",
		PL_MAX_INFLIGHT);
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || errno != 0 || s[0] == '-')
		return false;
	if (*end == 'K' || *end == 'k')
		v <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		v <<= 20, end++;
	*out = v;
	return *end == '\0';
}

int main(int argc, char **argv)
{
	struct opts o = {
		.role = "both",
		.net = {.cpu = {0, 1}, .eal_mem_mb = 512},
		.loops = 1,
		.spin_ns = 1000000000u,
		.payload = 64,
		.nargs = -1,
		.warmup = 1000,
		.label = "run",
		.c = {.fn = "perf::noop",
		      .fail_fn = "perf::fail",
		      .peer = 1,
		      .inflight = 1,
		      .duration_s = 5,
		      .timeout_ms = -1},
	};
	enum {
		O_ROLE = 256,
		O_RDV,
		O_IFACES,
		O_CC,
		O_LOOPS,
		O_SPIN,
		O_NARGS,
		O_WARMUP,
		O_TIMEOUT,
		O_FAIL,
		O_LABEL,
		O_CSV,
		O_HCSV,
		O_INTERVAL,
		O_ICSV,
		O_EALMEM,
	};
	static const struct option lopts[] = {
		{"role", required_argument, NULL, O_ROLE},
		{"rendezvous", required_argument, NULL, O_RDV},
		{"transport", required_argument, NULL, 't'},
		{"ifaces", required_argument, NULL, O_IFACES},
		{"cc", required_argument, NULL, O_CC},
		{"loops", required_argument, NULL, O_LOOPS},
		{"spin-ms", required_argument, NULL, O_SPIN},
		{"fn", required_argument, NULL, 'f'},
		{"size", required_argument, NULL, 's'},
		{"nargs", required_argument, NULL, O_NARGS},
		{"inflight", required_argument, NULL, 'W'},
		{"count", required_argument, NULL, 'n'},
		{"duration", required_argument, NULL, 'd'},
		{"rate", required_argument, NULL, 'r'},
		{"warmup", required_argument, NULL, O_WARMUP},
		{"timeout-ms", required_argument, NULL, O_TIMEOUT},
		{"fail-every", required_argument, NULL, O_FAIL},
		{"label", required_argument, NULL, O_LABEL},
		{"csv", required_argument, NULL, O_CSV},
		{"hist-csv", required_argument, NULL, O_HCSV},
		{"interval", required_argument, NULL, O_INTERVAL},
		{"interval-csv", required_argument, NULL, O_ICSV},
		{"eal-mem", required_argument, NULL, O_EALMEM},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int ch;
	uint64_t v;
	while ((ch = getopt_long(argc, argv, "t:c:C:f:s:W:n:d:r:h", lopts,
				 NULL)) != -1) {
		bool ok = true;
		switch (ch) {
		case O_ROLE:
			o.role = optarg;
			ok = strcmp(optarg, "both") == 0 ||
			     strcmp(optarg, "server") == 0 ||
			     strcmp(optarg, "client") == 0;
			break;
		case O_RDV:
			o.rdv = optarg;
			break;
		case 't':
			o.net.transport = optarg;
			break;
		case O_IFACES:
			o.net.ifaces = optarg;
			break;
		case O_CC:
			o.net.cc = optarg;
			break;
		case 'c':
			o.net.cpu[0] = atoi(optarg);
			break;
		case 'C':
			o.net.cpu[1] = atoi(optarg);
			break;
		case O_LOOPS:
			ok = parse_u64(optarg, &v) && v >= 1 && v <= 64;
			o.loops = (uint32_t)v;
			break;
		case O_SPIN:
			o.spin_ns = (uint64_t)(atof(optarg) * 1e6);
			break;
		case 'f':
			o.c.fn = optarg;
			break;
		case 's':
			ok = parse_u64(optarg, &o.payload) &&
			     o.payload % 4 == 0 &&
			     o.payload <= (UINT64_C(1) << 32);
			break;
		case O_NARGS:
			ok = parse_u64(optarg, &v) && v <= 16;
			o.nargs = (int)v;
			break;
		case 'W':
			ok = parse_u64(optarg, &v) && v >= 1 &&
			     v <= PL_MAX_INFLIGHT;
			o.c.inflight = (uint32_t)v;
			break;
		case 'n':
			ok = parse_u64(optarg, &o.c.count) && o.c.count > 0;
			break;
		case 'd':
			o.c.duration_s = atof(optarg);
			ok = o.c.duration_s > 0;
			o.c.count = 0;
			break;
		case 'r':
			o.c.rate = atof(optarg);
			ok = o.c.rate > 0;
			break;
		case O_WARMUP:
			ok = parse_u64(optarg, &o.warmup);
			break;
		case O_TIMEOUT:
			o.c.timeout_ms = atoll(optarg);
			break;
		case O_FAIL:
			ok = parse_u64(optarg, &v) && v <= UINT32_MAX;
			o.c.fail_every = (uint32_t)v;
			break;
		case O_LABEL:
			o.label = optarg;
			ok = strpbrk(optarg, ",\n\"") == NULL;
			break;
		case O_CSV:
			o.csv = optarg;
			break;
		case O_HCSV:
			o.hist_csv = optarg;
			break;
		case O_INTERVAL:
			o.c.interval_s = atof(optarg);
			ok = o.c.interval_s > 0;
			break;
		case O_ICSV:
			o.interval_csv = optarg;
			break;
		case O_EALMEM:
			o.net.eal_mem_mb = atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			ok = false;
		}
		if (!ok) {
			if (ch != '?')
				fprintf(stderr, PROG ": bad value for -%c%s\n",
					ch < 256 ? ch : '-',
					ch < 256 ? "" : "-option");
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || strpbrk(o.c.fn, ",\n\"") != NULL) {
		usage(stderr);
		return 2;
	}
	if (o.nargs < 0)
		o.nargs = strcmp(o.c.fn, "perf::noop") == 0   ? 0
			  : strncmp(o.c.fn, "aten::", 6) == 0 ? 2
							      : 1;
	pn_prepare(&o.net, PROG);
	bool both = strcmp(o.role, "both") == 0;
	if (!both && (o.rdv == NULL || pn_is_dpdk(&o.net))) {
		fprintf(stderr, PROG ": --role server|client need --rendezvous "
				     "and io_uring or shm\n");
		return 2;
	}
	if (pn_is_dpdk(&o.net))
		atexit(pn_rm_run_dirs);
	int rc;
	if (both)
		rc = run_both(&o);
	else if (strcmp(o.role, "server") == 0)
		rc = server_main(&o, false);
	else
		rc = client_main(&o);
	if (pn_is_dpdk(&o.net))
		tw_dpdk_eal_cleanup(); /* then atexit removes the run dirs */
	return rc;
}
