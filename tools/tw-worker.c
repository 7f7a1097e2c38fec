/* tw-worker: join a group, serve the demo functions until every worker has
 * shut down (torch's rpc.init_rpc + rpc.shutdown for a pure server). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/tensorwire.h>

#include "demo_fns.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tw-worker --name NAME --rank R --world-size N --rendezvous tcp://HOST:PORT\n"
		"                 [--loops N] [--first-cpu C] [--timeout-ms MS] [--init-timeout-ms MS]\n"
		"                 [--transport uring|dpdk] [--yield] [--nongraceful]\n"
		"                 [--list] [--list-remote WORKER]\n"
		"                 [--secret-file FILE | --secret S] [--insecure]\n"
		"                 [--stall-timeout-ms MS] [--shutdown-timeout-ms MS]\n"
		"                 [--user-timeout-ms MS] [--connect-timeout-ms MS]\n"
		"                 [--control-timeout-ms MS] [--log-level LEVEL] [--no-same-host]\n"
		"                 [--stat-socket PATH]\n"
		"                 [--listen-host HOST] [--listen-port P] [--advertise-host HOST]\n"
		"                 [--tcp-congestion-local CC] [--tcp-congestion CC]\n"
		"                 [--dpdk-eal ARGS [--dpdk-port PORT] [--dpdk-ip IP]\n"
		"                  [--dpdk-udp-port P] [--dpdk-credits N]]\n"
		"Joins the group (rank 0 hosts the rendezvous), serves demo::add, demo::echo,\n"
		"demo::check_positive and demo::slow (and every agent's aten:: builtins and\n"
		"tw::list_functions), and leaves when every worker has called shutdown\n"
		"(graceful) — or at once with --nongraceful.\n"
		"--list prints this worker's functions and their schemas once it has joined;\n"
		"--list-remote WORKER fetches and prints another worker's list.\n"
		"--secret-file: the group's shared secret, read from FILE (one trailing\n"
		"newline dropped; refused if others may read it); --secret S gives it on\n"
		"the command line (visible to other users in ps: prefer the file or the\n"
		"environment). Without either, TW_SECRET, then TW_SECRET_FILE. Every\n"
		"worker of a group needs the same one; every connection then proves it.\n"
		"Without a secret a worker serves on loopback (127.0.0.0/8) only, unless\n"
		"--insecure: then anyone who reaches its ports can join and call.\n"
		"--stall-timeout-ms: a connection whose partial frame makes no progress\n"
		"this long is closed (default 30000; 0 = never); --shutdown-timeout-ms:\n"
		"graceful shutdown's deadline (default 0: none, since this worker\n"
		"serves until every other has called shutdown).\n"
		"--user-timeout-ms / --connect-timeout-ms: io_uring's TCP_USER_TIMEOUT\n"
		"(default 300000) and connect deadline (default 10000) on data\n"
		"connections; --control-timeout-ms: the control connection's liveness\n"
		"(default 30000). --log-level off|error|warn|info|debug (default warn, or\n"
		"TW_LOG_LEVEL).\n"
		"--stat-socket PATH: serve statistics there for tw-stat (default\n"
		"TW_STAT_SOCKET, else none): a 0600 unix socket in a 0700 directory.\n"
		"--transport picks the transport (default uring: TCP over io_uring).\n"
		"Workers on this host are reached through shared memory (the same-host\n"
		"transport) whatever the transport; --no-same-host reaches them over\n"
		"the transport too.\n"
		"--listen-host: where io_uring serves (default 127.0.0.1): an IPv4 or IPv6\n"
		"address, 0.0.0.0 or :: for every interface (announcing the address that\n"
		"reaches the rendezvous), an interface name (eth1) or a host name.\n"
		"--listen-port: run loop i serves TCP port P + i (default: ports the\n"
		"kernel picks). --advertise-host: the address the other workers are told\n"
		"to connect to, when not the one served on (NAT); the ports stay.\n"
		"--dpdk-eal selects the DPDK transport with these EAL arguments (e.g.\n"
		"\"-l 1 --no-huge -m 256 --no-pci --file-prefix=w1\n"
		" --vdev=net_af_xdp0,iface=veth1\"); --dpdk-port names the port (PCI\n"
		"address or vdev; default the first), --dpdk-ip this worker's IPv4\n"
		"address (default 10.0.0.<rank+1>).\n"
		"--tcp-congestion-local / --tcp-congestion: TCP congestion control of\n"
		"connections to workers on this host (default reno) and on other hosts\n"
		"(default: the system's); \"\" = the system's.\n");
}

/* One line per function: name, schema (or "-" for a plain function),
 * "[blocking]" when it runs on the executor. */
static void print_functions(const char *title, const tw_value *l)
{
	printf("%s: %u functions\n", title, l->len);
	for (uint32_t i = 0; i < l->len; i++) {
		const tw_value *t = &l->u.items[i];
		printf("  %-28s %s%s\n", t->u.items[0].u.str,
		       t->u.items[1].len ? t->u.items[1].u.str : "-",
		       t->u.items[2].u.b ? "  [blocking]" : "");
	}
}

static long parse_num(const char *opt, const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0') {
		fprintf(stderr, "tw-worker: %s needs a number, got '%s'\n", opt,
			s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	struct tw_agent_opts o;
	tw_agent_opts_init(&o, sizeof(o));
	/* A worker serves until every worker has called shutdown: its
	 * barrier is how it waits, so by default it has no deadline. */
	o.shutdown_timeout_ms = 0;
	struct tw_uring_opts uo;
	tw_uring_opts_init(&uo, sizeof(uo));
	struct tw_dpdk_opts dop;
	tw_dpdk_opts_init(&dop, sizeof(dop));
	const char *uring_only = NULL; /* an io_uring flag given */
	bool graceful = true, have_rank = false, have_world = false;
	bool list = false;
	const char *list_remote = NULL;
	static const struct option longopts[] = {
		{"name", required_argument, NULL, 'n'},
		{"rank", required_argument, NULL, 'r'},
		{"world-size", required_argument, NULL, 'w'},
		{"rendezvous", required_argument, NULL, 'R'},
		{"loops", required_argument, NULL, 'l'},
		{"first-cpu", required_argument, NULL, 'c'},
		{"timeout-ms", required_argument, NULL, 't'},
		{"init-timeout-ms", required_argument, NULL, 'i'},
		{"listen-host", required_argument, NULL, 'H'},
		{"listen-port", required_argument, NULL, 'p'},
		{"advertise-host", required_argument, NULL, 'A'},
		{"transport", required_argument, NULL, 'T'},
		{"yield", no_argument, NULL, 'y'},
		{"nongraceful", no_argument, NULL, 'G'},
		{"list", no_argument, NULL, 'L'},
		{"list-remote", required_argument, NULL, 'M'},
		{"dpdk-eal", required_argument, NULL, 'E'},
		{"dpdk-port", required_argument, NULL, 'P'},
		{"dpdk-ip", required_argument, NULL, 'I'},
		{"dpdk-udp-port", required_argument, NULL, 'U'},
		{"dpdk-credits", required_argument, NULL, 'C'},
		{"tcp-congestion-local", required_argument, NULL, 'k'},
		{"tcp-congestion", required_argument, NULL, 'K'},
		{"secret", required_argument, NULL, 's'},
		{"secret-file", required_argument, NULL, 'S'},
		{"insecure", no_argument, NULL, 'X'},
		{"stall-timeout-ms", required_argument, NULL, 'Z'},
		{"user-timeout-ms", required_argument, NULL, 1001},
		{"connect-timeout-ms", required_argument, NULL, 1002},
		{"control-timeout-ms", required_argument, NULL, 1003},
		{"log-level", required_argument, NULL, 1004},
		{"no-same-host", no_argument, NULL, 1005},
		{"stat-socket", required_argument, NULL, 1006},
		{"shutdown-timeout-ms", required_argument, NULL, 'D'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(
			argc, argv,
			"n:r:w:R:l:c:t:i:H:p:T:yGLM:E:P:I:U:C:k:K:s:S:XZ:D:h",
			longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			o.name = optarg;
			break;
		case 'r':
			o.rank = (uint32_t)parse_num("--rank", optarg);
			have_rank = true;
			break;
		case 'w':
			o.world_size = (uint32_t)parse_num("--world-size",
							   optarg);
			have_world = true;
			break;
		case 'R':
			o.rendezvous = optarg;
			break;
		case 'l':
			o.num_loops = (uint32_t)parse_num("--loops", optarg);
			break;
		case 'c':
			o.first_cpu = (int)parse_num("--first-cpu", optarg);
			break;
		case 't':
			o.default_timeout_ms = parse_num("--timeout-ms",
							 optarg);
			break;
		case 'i':
			o.init_timeout_ms = parse_num("--init-timeout-ms",
						      optarg);
			break;
		case 'H':
			uo.listen_host = optarg;
			uring_only = "--listen-host";
			break;
		case 'A':
			uo.advertise_host = optarg;
			uring_only = "--advertise-host";
			break;
		case 'p': {
			long v = parse_num("--listen-port", optarg);
			if (v < 0 || v > 65535) {
				fprintf(stderr,
					"tw-worker: --listen-port %ld is not a "
					"TCP port\n",
					v);
				return 2;
			}
			uo.listen_port = (uint16_t)v;
			uring_only = "--listen-port";
			break;
		}
		case 'T':
			o.transport = optarg;
			break;
		case 'y':
			o.yield = true;
			break;
		case 'G':
			graceful = false;
			break;
		case 'L':
			list = true;
			break;
		case 'M':
			list_remote = optarg;
			break;
		case 'E':
			o.transport = TW_TRANSPORT_DPDK;
			dop.eal_args = optarg;
			break;
		case 'P':
			dop.port = optarg;
			break;
		case 'I':
			dop.local_ip = optarg;
			break;
		case 'U':
			dop.udp_base_port =
				(uint16_t)parse_num("--dpdk-udp-port", optarg);
			break;
		case 'C':
			dop.credits = (uint32_t)parse_num("--dpdk-credits",
							  optarg);
			break;
		case 'k':
			uo.cc_local = optarg;
			uring_only = "--tcp-congestion-local";
			break;
		case 'K':
			uo.cc_remote = optarg;
			uring_only = "--tcp-congestion";
			break;
		case 's':
			o.secret = optarg;
			break;
		case 'S':
			o.secret_file = optarg;
			break;
		case 'X':
			o.insecure = true;
			break;
		case 'Z':
			uo.stall_timeout_ms = (uint32_t)parse_num(
				"--stall-timeout-ms", optarg);
			uring_only = "--stall-timeout-ms";
			break;
		case 'D':
			o.shutdown_timeout_ms =
				parse_num("--shutdown-timeout-ms", optarg);
			break;
		case 1001:
			uo.user_timeout_ms = (uint32_t)parse_num(
				"--user-timeout-ms", optarg);
			uring_only = "--user-timeout-ms";
			break;
		case 1002:
			uo.connect_timeout_ms = (uint32_t)parse_num(
				"--connect-timeout-ms", optarg);
			uring_only = "--connect-timeout-ms";
			break;
		case 1003:
			o.control_timeout_ms = (uint32_t)parse_num(
				"--control-timeout-ms", optarg);
			break;
		case 1004:
			o.log_level = tw_log_level_parse(optarg);
			if (o.log_level < 0) {
				fprintf(stderr,
					"tw-worker: --log-level '%s': off, "
					"error, warn, info or debug\n",
					optarg);
				return 2;
			}
			break;
		case 1005:
			o.same_host = false;
			break;
		case 1006:
			o.stat_socket = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!o.name || !have_rank || !have_world || !o.rendezvous) {
		usage(stderr);
		return 2;
	}
	o.setup = demo_setup;
	bool dpdk = o.transport != NULL &&
		    strcmp(o.transport, TW_TRANSPORT_DPDK) == 0;
	o.transport_opts = dpdk ? (const void *)&dop : (const void *)&uo;
	if (dpdk && uring_only != NULL) {
		/* Said rather than ignored: the DPDK transport has its own
		 * address (--dpdk-ip) and no TCP to tune. */
		fprintf(stderr,
			"tw-worker: %s applies to the io_uring transport, not "
			"to DPDK (its address is --dpdk-ip)\n",
			uring_only);
		return 2;
	}
	if (o.transport != NULL && !dpdk &&
	    strcmp(o.transport, TW_TRANSPORT_URING) != 0)
		o.transport_opts = NULL; /* a transport we have no flags for */
	tw_agent *a;
	tw_status s = tw_agent_init(&o, &a);
	if (s != TW_OK) {
		fprintf(stderr, "tw-worker %s: joining %s failed: %s: %s\n",
			o.name, o.rendezvous, tw_strerror(s), tw_errmsg(s));
		return 1;
	}
	tw_worker_info self;
	tw_agent_self(a, &self);
	printf("tw-worker %s: id %u serving at %s, world size %u\n", self.name,
	       self.id, self.addr, tw_agent_world_size(a));
	if (list) {
		tw_value l;
		s = tw_agent_list_functions(a, &l);
		if (s == TW_OK) {
			print_functions(self.name, &l);
			tw_value_destroy(&l);
		} else {
			fprintf(stderr, "tw-worker %s: --list: %s\n", self.name,
				tw_errmsg(s));
		}
	}
	if (list_remote != NULL) {
		tw_value l;
		s = tw_rpc_list_functions(a, list_remote, -1, &l);
		if (s == TW_OK) {
			print_functions(list_remote, &l);
			tw_value_destroy(&l);
		} else {
			fprintf(stderr, "tw-worker %s: --list-remote %s: %s\n",
				self.name, list_remote, tw_errmsg(s));
		}
	}
	fflush(stdout);
	s = tw_agent_shutdown(a, graceful);
	if (s != TW_OK) {
		fprintf(stderr, "tw-worker %s: shutdown: %s\n", o.name,
			tw_errmsg(s));
		return 1;
	}
	if (dpdk)
		tw_dpdk_eal_cleanup();
	return 0;
}
