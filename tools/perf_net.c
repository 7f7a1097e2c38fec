/* perf_net: how the two processes of a benchmark meet (perf_net.h). */
#include "perf_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SRV_MAC "02:00:00:00:0b:01"
#define CLI_MAC "02:00:00:00:0b:02"

/* The benchmark group's secret (DPDK serves on routable addresses, which
 * needs one; the cost is the first call's). */
#define PN_SECRET "tensorwire-bench-secret"

/* DPDK: the server tells the client its port is up (MAP_SHARED). */
static _Atomic int *srv_port_up;
static const struct pn_net *run_dirs_of; /* for the exit-time cleanup */

uint64_t pn_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void pn_pin(int cpu, const char *prog)
{
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		fprintf(stderr, "%s: cannot pin to cpu %d: %s\n", prog, cpu,
			strerror(errno));
}

void pn_enter_netns(const char *name, const char *prog)
{
	if (name == NULL)
		return;
	char path[128];
	snprintf(path, sizeof(path), "/var/run/netns/%s", name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
		fprintf(stderr, "%s: entering network namespace %s: %s\n", prog,
			name, strerror(errno));
		exit(1);
	}
	close(fd);
}

int pn_free_port(const char *prog)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(fd, (struct sockaddr *)&sa, &len)) {
		fprintf(stderr, "%s: finding a free port: %s\n", prog,
			strerror(errno));
		exit(1);
	}
	close(fd);
	return ntohs(sa.sin_port);
}

bool pn_is_dpdk(const struct pn_net *n)
{
	return n->transport != NULL && (strcmp(n->transport, "memif") == 0 ||
					strcmp(n->transport, "af_packet") == 0);
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

void pn_rm_run_dirs(void)
{
	if (run_dirs_of == NULL)
		return;
	for (int i = 0; i < 2; i++) {
		char d[128];
		snprintf(d, sizeof(d), "/var/run/dpdk/%s",
			 run_dirs_of->prefix[i]);
		nftw(d, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	}
}

void pn_forget_run_dirs(void)
{
	run_dirs_of = NULL;
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

bool pn_fanout_collides(const struct pn_net *n, pid_t client, pid_t server)
{
	return pn_is_dpdk(n) && n->ifidx[0] > 0 &&
	       ((client ^ n->ifidx[0]) & 0xffff) ==
		       ((server ^ n->ifidx[1]) & 0xffff);
}

void pn_prepare(struct pn_net *n, const char *prog)
{
	char srv_if[64] = "", cli_if[64] = "";
	if (n->transport == NULL || strcmp(n->transport, "uring") == 0 ||
	    strcmp(n->transport, "shm") == 0)
		return;
	if (strcmp(n->transport, "af_packet") == 0) {
		const char *c = n->ifaces ? strchr(n->ifaces, ',') : NULL;
		if (c == NULL || c == n->ifaces || c[1] == '\0' ||
		    (size_t)(c - n->ifaces) >= sizeof(srv_if)) {
			fprintf(stderr,
				"%s: af_packet needs --ifaces SRV,CLI "
				"(the two ends of a veth pair)\n",
				prog);
			exit(2);
		}
		memcpy(srv_if, n->ifaces, (size_t)(c - n->ifaces));
		snprintf(cli_if, sizeof(cli_if), "%s", c + 1);
		n->ifidx[1] = ifindex_of(srv_if);
		n->ifidx[0] = ifindex_of(cli_if);
		if (n->ifidx[0] <= 0 || n->ifidx[1] <= 0) {
			fprintf(stderr, "%s: no interface %s or %s\n", prog,
				srv_if, cli_if);
			exit(2);
		}
	} else if (strcmp(n->transport, "memif") != 0) {
		fprintf(stderr, "%s: --transport uring|shm|memif|af_packet\n",
			prog);
		exit(2);
	}
	int pid = (int)getpid();
	snprintf(n->prefix[0], sizeof(n->prefix[0]), "twbench%dc", pid);
	snprintf(n->prefix[1], sizeof(n->prefix[1]), "twbench%ds", pid);
	for (int i = 0; i < 2; i++) {
		char lcore[32] = "";
		if (n->cpu[i] >= 0)
			snprintf(lcore, sizeof(lcore), "-l %d ", n->cpu[i]);
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
		snprintf(n->eal[i], sizeof(n->eal[i]),
			 "%s--no-huge -m %d --no-pci --no-telemetry "
			 "--log-level=warning --file-prefix=%s --vdev=%s",
			 lcore, n->eal_mem_mb > 0 ? n->eal_mem_mb : 512,
			 n->prefix[i], vdev);
	}
	srv_port_up = mmap(NULL, sizeof(*srv_port_up), PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (srv_port_up == MAP_FAILED) {
		fprintf(stderr, "%s: mmap: %s\n", prog, strerror(errno));
		exit(1);
	}
	atomic_store(srv_port_up, 0);
	run_dirs_of = n;
}

void pn_agent_transport(const struct pn_net *n, int r, struct tw_agent_opts *ao,
			struct pn_transport *t)
{
	ao->secret = PN_SECRET;
	/* The transport under measurement carries the calls: the same-host
	 * one only when asked for (both processes share this host). */
	ao->same_host = n->transport != NULL &&
			strcmp(n->transport, "shm") == 0;
	if (!pn_is_dpdk(n)) {
		tw_uring_opts_init(&t->u, sizeof(t->u));
		if (n->cc != NULL)
			t->u.cc_local = t->u.cc_remote = n->cc;
		if (n->host[r] != NULL)
			t->u.listen_host = n->host[r];
		ao->transport = TW_TRANSPORT_URING;
		ao->transport_opts = &t->u;
		return;
	}
	tw_dpdk_opts_init(&t->d, sizeof(t->d));
	t->d.eal_args = n->eal[r];
	t->d.port = strcmp(n->transport, "memif") == 0 ? "net_memif0"
						       : "net_af_packet0";
	t->d.local_ip = r == 0 ? "10.77.0.2" : "10.77.0.1";
	t->d.udp_base_port = 32100;
	if (n->credits != 0)
		t->d.credits = n->credits;
	if (n->mbufs != 0)
		t->d.mbufs = n->mbufs;
	if (n->zc_threshold != 0)
		t->d.zc_threshold = n->zc_threshold;
	t->d.no_pkt_tag = n->no_pkt_tag;
	ao->transport = TW_TRANSPORT_DPDK;
	ao->transport_opts = &t->d;
}

void pn_server_port_up(bool ok)
{
	if (srv_port_up != NULL)
		atomic_store(srv_port_up, ok ? 1 : -1);
}

bool pn_wait_server_port(const struct pn_net *n, pid_t *server)
{
	if (!pn_is_dpdk(n))
		return true;
	uint64_t until = pn_mono_ns() + 60000000000u;
	int up;
	while ((up = atomic_load(srv_port_up)) == 0 && pn_mono_ns() < until) {
		if (*server > 0 && waitpid(*server, NULL, WNOHANG) == *server) {
			*server = -1;
			break;
		}
		usleep(2000);
	}
	return up == 1;
}

void pn_server_child(const struct pn_net *n, const char *prog)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(1);
	if (pn_fanout_collides(n, getppid(), getpid()))
		_exit(PN_EXIT_RETRY);
	pn_enter_netns(n->netns[1], prog);
	pn_pin(n->cpu[1], prog);
}

int pn_serve(const struct pn_net *n, struct tw_agent_opts *ao, const char *prog)
{
	struct pn_transport to;
	pn_agent_transport(n, 1, ao, &to);
	tw_agent *a;
	tw_status s = tw_agent_init(ao, &a);
	if (s != TW_OK) {
		fprintf(stderr, "%s server: init: %s (%s)\n", prog,
			tw_strerror(s), tw_errmsg(s));
		pn_server_port_up(false);
	} else {
		s = tw_agent_shutdown_timeout(a, true, 0);
	}
	if (pn_is_dpdk(n))
		tw_dpdk_eal_cleanup();
	return s == TW_OK ? 0 : 1;
}

bool pn_reap(pid_t *pp, const char *who, const char *prog)
{
	int wst = 0;
	pid_t sp = *pp;
	*pp = -1;
	for (int i = 0; i < 500; i++) {
		pid_t r = waitpid(sp, &wst, WNOHANG);
		if (r == sp)
			break;
		if (i == 499) {
			fprintf(stderr, "%s: %s did not exit; killing it\n",
				prog, who);
			kill(sp, SIGKILL);
			waitpid(sp, &wst, 0);
		}
		usleep(10000);
	}
	if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
		fprintf(stderr, "%s: %s exited with status %d\n", prog, who,
			WIFEXITED(wst) ? WEXITSTATUS(wst)
				       : 128 + WTERMSIG(wst));
		return false;
	}
	return true;
}

const char *pn_cc_name(const struct pn_net *n)
{
	return n->cc == NULL ? "library default"
	       : n->cc[0]    ? n->cc
			     : "system's";
}
