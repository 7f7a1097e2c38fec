/* Multi-process test harness: fork a group of workers on 127.0.0.1 with a
 * free rendezvous port, each running a worker function that returns 0 on
 * success; the parent waits for all (killing them after a generous bound)
 * and reports. Shared results live in a MAP_SHARED page. Functions every
 * worker serves are here too.
 *
 * Transport: the same-host one (shared memory, tw_agent_opts.same_host,
 * the default; TW_TEST_SAME_HOST=0 turns it off, =1 on) beside io_uring
 * TCP, or with TW_TEST_TRANSPORT=dpdk the DPDK
 * transport over net_af_packet: each group gets a Linux bridge and one
 * veth pair per worker (named after the test process, removed after the
 * group), each worker its own EAL on its end. The rendezvous stays TCP
 * on 127.0.0.1. TW_TEST_LOSS=P adds P% loss, reordering and duplication
 * on every worker's link (h_net.h). TW_TEST_VDEV=af_xdp opens the same
 * veth ends with net_af_xdp (XDP sockets, copy mode on veth): one queue
 * pair per port there, so groups with more run loops per worker are
 * skipped, saying so. Not root, or no EAL: the test is skipped, saying
 * why. */
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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tensorwire/agent.h>
#include <tensorwire/future.h>
#include <tensorwire/tensorwire.h>

#include "h_net.h"

#if defined(__SANITIZE_ADDRESS__)
#define H_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define H_ASAN 1
#endif
#endif
#ifdef H_ASAN
#include <sanitizer/lsan_interface.h>

/* net_af_xdp (DPDK 22.11) does not delete its UMEM on close: libxdp's
 * 80-byte umem record stays (tw_dpdk_env_destroy closes the socket it
 * held). Not ours to free; everything else is checked. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:xsk_umem__create\n";
}
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

static H_UNUSED const char *h_names[H_MAX_WORKERS] = {"w0", "w1", "w2", "w3",
						      "w4", "w5", "w6", "w7"};

#define W_ASSERT(w, cond, ...)                                                 \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "[rank %d] %s:%d: check failed: %s: ", \
				(w)->rank, __FILE__, __LINE__, #cond);         \
			fprintf(stderr, __VA_ARGS__);                          \
			fprintf(stderr, "\n");                                 \
			return 1;                                              \
		}                                                              \
	} while (0)

static H_UNUSED void h_sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000L};
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

/* ---- the DPDK transport mode ---- */

#define H_NET_LINK_TAGS "twWtwPtwRtwF"
#define H_NET_DIR_TAGS "twh"

/* One group's network, shared with its workers (MAP_SHARED). */
struct h_net {
	int n;
	unsigned loss;      /* percent, 0 = none */
	const char *impair; /* "netem" / "clsact" (parent only) */
	char br[16], ifb[16];
	char wend[H_MAX_WORKERS][16]; /* the worker's end */
	char bend[H_MAX_WORKERS][16]; /* the bridge's end */
	char prefix[H_MAX_WORKERS][32];
	char eal[H_MAX_WORKERS][256];
	bool br_made, ifb_made, made[H_MAX_WORKERS];
	_Atomic int go;     /* 1 = start, -1 = give up */
	_Atomic int skip;   /* 1: the EAL cannot start here; 2: the
			     * port cannot have the queues asked for */
	_Atomic int eal_up; /* workers whose EAL and port came up */
	char why[512];
};

/* Set in the parent for the group it runs; its workers inherit it. */
static struct h_net *h_net_cur;
static int h_net_rank = -1;  /* a worker's index in its group */
static char h_net_port[128]; /* a worker's dpdk_port */

/* TW_TEST_TRANSPORT=dpdk */
static H_UNUSED bool h_dpdk(void)
{
	const char *e = getenv("TW_TEST_TRANSPORT");
	return e != NULL && strcmp(e, "dpdk") == 0;
}

/* TW_TEST_SAME_HOST=1 or 0: tw_agent_opts.same_host on or off (unset:
 * dflt, the library's default). Off in the DPDK mode, whose workers
 * share this host but are there to test the DPDK transport. */
static H_UNUSED bool h_same_host(bool dflt)
{
	const char *e = getenv("TW_TEST_SAME_HOST");
	if (h_dpdk())
		return false;
	return e != NULL && e[0] != '\0' ? strcmp(e, "0") != 0 : dflt;
}

/* TW_TEST_VDEV=af_xdp: the workers' ports are net_af_xdp (XDP sockets)
 * instead of net_af_packet on the same veth ends. */
static H_UNUSED bool h_xdp(void)
{
	const char *e = getenv("TW_TEST_VDEV");
	return e != NULL && strcmp(e, "af_xdp") == 0;
}

/* TW_TEST_LOSS=P (percent) */
static H_UNUSED unsigned h_loss(void)
{
	const char *e = getenv("TW_TEST_LOSS");
	return e != NULL && h_dpdk() ? (unsigned)atoi(e) : 0;
}

static H_UNUSED void h_net_pair_del(struct h_net *n, int i)
{
	if (n->made[i] && hn_exists(n->wend[i]))
		hn_sh("ip link del %s", n->wend[i]);
	n->made[i] = false;
}

/* Worker end i: a fixed MAC (unique on the bridge), the other end on the
 * bridge. */
static H_UNUSED bool h_net_pair_make(struct h_net *n, int i)
{
	if (hn_sh("ip link add %s type veth peer name %s", n->wend[i],
		  n->bend[i]) != 0)
		return false;
	n->made[i] = true;
	hn_quiet(n->wend[i]);
	hn_quiet(n->bend[i]);
	return hn_sh("ip link set %s address 02:00:00:00:0b:%02x", n->wend[i],
		     i + 1) == 0 &&
	       hn_sh("ip link set %s master %s", n->bend[i], n->br) == 0 &&
	       hn_sh("ip link set %s up", n->bend[i]) == 0 &&
	       hn_sh("ip link set %s up", n->wend[i]) == 0;
}

/* Remove what n made: its links, its workers' DPDK run directories. */
static H_UNUSED void h_net_down(struct h_net *n)
{
	for (int i = 0; i < n->n; i++) {
		h_net_pair_del(n, i);
		char d[96];
		snprintf(d, sizeof(d), "/var/run/dpdk/%s", n->prefix[i]);
		if (access(d, F_OK) == 0)
			hn_sh("rm -rf '%s'", d);
	}
	if (n->br_made && hn_exists(n->br))
		hn_sh("ip link del %s", n->br);
	if (n->ifb_made && hn_exists(n->ifb))
		hn_sh("ip link del %s", n->ifb);
	n->br_made = n->ifb_made = false;
}

/* A bridge and world veth pairs, impaired when TW_TEST_LOSS asks. NULL
 * (and everything removed) when they cannot be made. */
static H_UNUSED struct h_net *h_net_up(int world, char *why, size_t whylen)
{
	hn_clean_stale(H_NET_LINK_TAGS, H_NET_DIR_TAGS);
	struct h_net *n = mmap(NULL, sizeof(*n), PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (n == MAP_FAILED) {
		snprintf(why, whylen, "mmap");
		return NULL;
	}
	memset(n, 0, sizeof(*n));
	static int seq;
	int pid = (int)getpid(), s = ++seq;
	n->n = world;
	n->loss = h_loss();
	snprintf(n->br, sizeof(n->br), "twR%d", pid);
	snprintf(n->ifb, sizeof(n->ifb), "twF%d", pid);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu < 1)
		ncpu = 1;
	for (int i = 0; i < world; i++) {
		snprintf(n->wend[i], sizeof(n->wend[i]), "twW%dx%d", pid, i);
		snprintf(n->bend[i], sizeof(n->bend[i]), "twP%dx%d", pid, i);
		snprintf(n->prefix[i], sizeof(n->prefix[i]), "twh%dx%dx%d", pid,
			 s, i);
		snprintf(
			n->eal[i], sizeof(n->eal[i]),
			"-l %ld --no-huge -m 256 --no-pci --no-telemetry --no-shconf "
			"--log-level=warning --file-prefix=%s",
			(long)i % ncpu, n->prefix[i]);
	}
	/* Links and directories by our names are stale: left by an earlier
	 * test process that had our pid. */
	for (int i = 0; i < world; i++)
		n->made[i] = true;
	n->br_made = n->ifb_made = true;
	h_net_down(n);
	bool ok = hn_sh("ip link add %s type bridge forward_delay 0 "
			"stp_state 0 nf_call_iptables 0 nf_call_ip6tables 0 "
			"nf_call_arptables 0",
			n->br) == 0 ||
		  hn_sh("ip link add %s type bridge forward_delay 0", n->br) ==
			  0;
	if (ok) {
		n->br_made = true;
		hn_quiet(n->br);
		ok = hn_sh("ip link set %s up", n->br) == 0;
	}
	for (int i = 0; i < world && ok; i++)
		ok = h_net_pair_make(n, i);
	if (!ok) {
		snprintf(why, whylen,
			 "could not make bridge %s and veth pairs "
			 "(ip link; the veth and bridge modules)",
			 n->br);
		h_net_down(n);
		munmap(n, sizeof(*n));
		return NULL;
	}
	if (n->loss != 0) {
		const char *devs[H_MAX_WORKERS], *peers[H_MAX_WORKERS];
		for (int i = 0; i < world; i++) {
			devs[i] = n->wend[i];
			peers[i] = n->bend[i];
		}
		n->impair = hn_impair(devs, peers, world, n->ifb, &n->ifb_made,
				      n->loss * 10000u, true);
		if (n->impair == NULL) {
			snprintf(why, whylen,
				 "neither netem nor clsact/cls_bpf/"
				 "mirred/ifb could impair the links");
			h_net_down(n);
			munmap(n, sizeof(*n));
			return NULL;
		}
	}
	return n;
}

/* af_packet names the PACKET_FANOUT group of a port's sockets (pid ^
 * ifindex) & 0xffff, per network namespace: two workers whose numbers
 * collide cannot both open their port (EINVAL). Give a colliding worker
 * a new veth pair (a new ifindex) before it starts. */
static H_UNUSED bool h_net_fanout_fix(struct h_net *n, const pid_t *pids)
{
	for (int tries = 0; tries < 50; tries++) {
		int bad = -1;
		for (int i = 0; i < n->n && bad < 0; i++)
			for (int j = 0; j < i; j++)
				if ((((unsigned)pids[i] ^
				      (unsigned)hn_ifindex(n->wend[i])) &
				     0xffff) ==
				    (((unsigned)pids[j] ^
				      (unsigned)hn_ifindex(n->wend[j])) &
				     0xffff)) {
					bad = i;
					break;
				}
		if (bad < 0)
			return true;
		h_net_pair_del(n, bad);
		if (!h_net_pair_make(n, bad))
			return false;
		if (n->loss != 0) {
			const char *d = n->wend[bad], *p = n->bend[bad];
			if (hn_impair(&d, &p, 1, n->ifb, &n->ifb_made,
				      n->loss * 10000u, true) == NULL)
				return false;
		}
	}
	return false;
}

/* What the impairment did to the workers' packets, from the links' and
 * tc's counters: sent by the workers, lost, duplicated, delayed behind
 * others (netem counts only the lost). */
static H_UNUSED void h_net_impaired(const struct h_net *n, uint64_t c[4])
{
	memset(c, 0, 4 * sizeof(*c));
	bool filters = n->impair != NULL && strcmp(n->impair, "clsact") == 0;
	for (int i = 0; i < n->n; i++) {
		char cmd[128], line[512];
		/* what left (the lost ones did not) */
		snprintf(cmd, sizeof(cmd),
			 "/sys/class/net/%s/statistics/tx_packets", n->wend[i]);
		FILE *f = fopen(cmd, "r");
		if (f != NULL && fgets(line, sizeof(line), f) != NULL)
			c[0] += strtoull(line, NULL, 10);
		if (f != NULL)
			fclose(f);
		snprintf(cmd, sizeof(cmd),
			 "tc -s qdisc show dev %s 2>/dev/null", n->wend[i]);
		f = filters ? NULL : popen(cmd, "r");
		while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
			unsigned long long b, p, d;
			if (sscanf(line,
				   " Sent %llu bytes %llu pkt (dropped %llu",
				   &b, &p, &d) == 3) {
				c[0] += d;
				c[1] += d;
			}
		}
		if (f != NULL)
			pclose(f);
		if (!filters)
			continue;
		snprintf(cmd, sizeof(cmd),
			 "tc -s filter show dev %s egress "
			 "2>/dev/null",
			 n->wend[i]);
		f = popen(cmd, "r");
		int pref = 0;
		while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
			unsigned long long b, p;
			const char *q = strstr(line, " pref ");
			if (strncmp(line, "filter", 6) == 0 && q != NULL)
				pref = atoi(q + 6);
			else if (sscanf(line, " Sent %llu bytes %llu pkt", &b,
					&p) == 2 &&
				 pref >= 1 && pref <= 3)
				c[pref] += p;
		}
		if (f != NULL)
			pclose(f);
	}
	if (filters)
		c[0] += c[1]; /* redirected before they left */
}

/* A worker's port: its veth end, one queue pair per loop; through the
 * qdisc layer only when tc must see the packets. */
static H_UNUSED const char *h_net_port_for(uint32_t loops)
{
	if (h_xdp())
		snprintf(h_net_port, sizeof(h_net_port),
			 "net_af_xdp0,iface=%s,queue_count=%u",
			 h_net_cur->wend[h_net_rank], loops ? loops : 1);
	else
		snprintf(h_net_port, sizeof(h_net_port),
			 "net_af_packet0,iface=%s,qpairs=%u,qdisc_bypass=%d",
			 h_net_cur->wend[h_net_rank], loops ? loops : 1,
			 h_net_cur->loss ? 0 : 1);
	return h_net_port;
}

/* The EAL cannot start (or the port cannot be probed) in this worker
 * (kind 1), or the port cannot be what the test asks for (kind 2: more
 * queue pairs than the link has): the whole group is skipped. Ends the
 * worker. */
static H_UNUSED void h_net_skip_kind(int kind, const char *err)
{
	fprintf(stderr, "[rank %d] %s: %s\n", h_net_rank,
		kind == 1 ? "no DPDK here" : "skipped", err);
	if (atomic_exchange(&h_net_cur->skip, kind) == 0)
		snprintf(h_net_cur->why, sizeof(h_net_cur->why), "rank %d: %s",
			 h_net_rank, err);
	tw_dpdk_eal_cleanup();
	fflush(NULL);
	_exit(0);
}

static H_UNUSED void h_net_skip(const char *err)
{
	h_net_skip_kind(1, err);
}

/*
 * tw_agent_init for test workers: in the DPDK mode, the port gets as
 * many queue pairs as o asks for loops (o may have changed num_loops
 * after h_opts), and a worker whose EAL cannot start ends, skipping the
 * group. Otherwise tw_agent_init as is.
 */
static struct tw_dpdk_opts h_dpdk_opts; /* this worker's (h_opts) */

static H_UNUSED tw_status h_agent_init(const struct tw_agent_opts *o,
				       tw_agent **out)
{
	if (h_net_cur == NULL || h_net_rank < 0 ||
	    o->transport_opts != &h_dpdk_opts)
		return tw_agent_init(o, out);
	struct tw_agent_opts c = *o;
	struct tw_dpdk_opts d = h_dpdk_opts;
	char err[512] = "";
	uint32_t loops = o->num_loops ? o->num_loops : 1;
	int comb = h_xdp() ? hn_combined_channels(h_net_cur->wend[h_net_rank])
			   : 0;
	/* (an embedded agent with more loops is refused before its port) */
	if (h_xdp() && loops > 1 && !o->embedded && comb >= 0 &&
	    (uint32_t)comb < loops) {
		/* net_af_xdp takes one XDP socket per combined channel of the
		 * interface, and veth has none (separate rx/tx channels). */
		snprintf(err, sizeof(err),
			 "af_xdp: %u run loops need %u queue "
			 "pairs, but net_af_xdp can open only %d on %s (veth "
			 "has no combined channels)",
			 loops, loops, comb, h_net_cur->wend[h_net_rank]);
		h_net_skip_kind(2, err);
	}
	d.port = h_net_port_for(o->num_loops);
	c.transport_opts = &d;
	tw_status st = tw_agent_init(&c, out);
	if (st != TW_OK)
		snprintf(err, sizeof(err), "%s", tw_errmsg(st));
	/* (af_xdp: no XDP socket for the port's queue; a later agent of a
	 * worker whose first one came up fails instead, see h_run_group) */
	if (st != TW_OK &&
	    (strstr(err, "rte_eal_init failed") != NULL ||
	     strstr(err, "could not be probed") != NULL ||
	     (h_xdp() && strstr(err, "queue setup failed") != NULL)))
		h_net_skip(err);
	atomic_fetch_add(&h_net_cur->eal_up, 1);
	return st; /* tw_errmsg(st) still says why */
}

/* h_agent_init, its reason (tw_errmsg) copied into err ("" on success). */
static H_UNUSED tw_status h_init_err(char *err, size_t len,
				     const struct tw_agent_opts *o,
				     tw_agent **out)
{
	tw_status st = h_agent_init(o, out);
	snprintf(err, len, "%s", st == TW_OK ? "" : tw_errmsg(st));
	return st;
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
	struct h_net *net = NULL;
	if (h_dpdk()) {
		if (geteuid() != 0)
			cr_skip_test("the DPDK transport mode needs root (the "
				     "EAL, veth pairs)");
		if (h_xdp()) {
			int xfd = socket(44 /* AF_XDP */, SOCK_RAW, 0);
			if (xfd < 0)
				cr_skip_test("af_xdp: this kernel has no XDP "
					     "sockets (CONFIG_XDP_SOCKETS): %s",
					     strerror(errno));
			close(xfd);
		}
		char why[256];
		net = h_net_up(world, why, sizeof(why));
		cr_assert(net != NULL, "%s", why);
	}
	bool own = sh == NULL;
	if (own)
		sh = h_shared_new();
	int port = h_free_port();
	pid_t pids[H_MAX_WORKERS];
	fflush(NULL);
	h_net_cur = net;
	for (int r = 0; r < world; r++) {
		pid_t p = fork();
		if (p < 0) {
			for (int q = 0; q < r; q++)
				kill(pids[q], SIGKILL);
			for (int q = 0; q < r; q++)
				waitpid(pids[q], NULL, 0);
			if (net != NULL)
				h_net_down(net);
			cr_assert_fail("fork: %s", strerror(errno));
		}
		if (p == 0) {
			/* No worker outlives its test process. */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			struct h_worker w = {.rank = r,
					     .world = world,
					     .sh = sh,
					     .arg = arg};
			snprintf(w.url, sizeof(w.url), "tcp://127.0.0.1:%d",
				 port);
			if (net != NULL) {
				h_net_rank = r;
				uint64_t until = h_now_ms() + 60000;
				while (atomic_load(&net->go) == 0 &&
				       h_now_ms() < until)
					h_sleep_ms(1);
				if (atomic_load(&net->go) != 1)
					_exit(4);
			}
			int rc = fn(&w);
			if (net != NULL)
				tw_dpdk_eal_cleanup();
			if (rc == 0 && h_leak_check() != 0) {
				fprintf(stderr, "[rank %d] leaks\n", r);
				rc = 3;
			}
			fflush(NULL);
			_exit(rc);
		}
		pids[r] = p;
	}
	h_net_cur = NULL;
	bool net_ok = true;
	if (net != NULL) {
		net_ok = h_net_fanout_fix(net, pids);
		atomic_store(&net->go, net_ok ? 1 : -1);
	}
	int left = world;
	int status[H_MAX_WORKERS];
	bool done[H_MAX_WORKERS] = {false};
	bool late = false;
	uint64_t t0 = h_now_ms();
	uint64_t until = t0 + H_GROUP_LIMIT_S * 1000u;
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
			late = true;
			break;
		}
		h_sleep_ms(5);
	}
	if (net != NULL) {
		if (net->loss != 0) {
			uint64_t c[4];
			h_net_impaired(net, c);
			fprintf(stderr,
				"[dpdk, %u%% loss via %s] group of %d: %" PRIu64
				" ms; packets %" PRIu64 ": lost %" PRIu64
				", duplicated %" PRIu64 ", reordered %" PRIu64
				"\n",
				net->loss, net->impair, world, h_now_ms() - t0,
				c[0], c[1], c[2], c[3]);
		} else {
			fprintf(stderr, "[dpdk] group of %d: %" PRIu64 " ms\n",
				world, h_now_ms() - t0);
		}
		h_net_down(net);
		int skip = atomic_load(&net->skip);
		bool others_up = atomic_load(&net->eal_up) != 0;
		char why[512];
		snprintf(why, sizeof(why), "%s", net->why);
		munmap(net, sizeof(*net));
		cr_assert(net_ok, "could not give the workers distinct "
				  "af_packet fanout groups");
		/* Where another worker's EAL and port came up, this is no
		 * environment without DPDK: a failure. A port that cannot
		 * have the queues asked for skips the test either way. */
		cr_assert(skip != 1 || !others_up, "%s", why);
		if (skip) {
			if (own)
				munmap(sh, sizeof(*sh));
			if (skip == 2)
				cr_skip_test("%s", why);
			cr_skip_test("the EAL cannot start here: %s", why);
		}
	}
	cr_assert(!late, "worker group did not finish within %d s",
		  H_GROUP_LIMIT_S);
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
					 const tw_value *kwargs,
					 tw_value *result, void *arg)
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
		return tw_value_error(result, TW_EBADARGS, 0,
				      "add takes 2 args"),
		       TW_EBADARGS;
	const tw_value *x = &args->u.items[0], *y = &args->u.items[1];
	if (x->kind == TW_KIND_INT && y->kind == TW_KIND_INT) {
		*result = tw_value_int(x->u.i + y->u.i);
		return TW_OK;
	}
	double a, b;
	if (tw_value_get_double(x, &a) != TW_OK ||
	    tw_value_get_double(y, &b) != TW_OK) {
		tw_value_error(result, TW_ETYPE, 0,
			       "add: unsupported operand types");
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
					const tw_value *kwargs,
					tw_value *result, void *arg)
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
	tw_value t = {.kind = TW_KIND_TUPLE,
		      .flags = TW_VALUE_BORROWED,
		      .len = 2,
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
	st |= tw_agent_register(a, "echo_blocking", fn_echo, NULL,
				TW_FN_BLOCKING);
	st |= tw_agent_register(a, "add", fn_add, NULL, 0);
	st |= tw_agent_register(a, "raise", fn_raise, NULL, 0);
	st |= tw_agent_register(a, "raise_blocking", fn_raise, NULL,
				TW_FN_BLOCKING);
	st |= tw_agent_register(a, "fail_plain", fn_fail_plain, NULL, 0);
	st |= tw_agent_register(a, "kw", fn_kw, NULL, 0);
	st |= tw_agent_register(a, "whoami", fn_whoami, NULL, 0);
	st |= tw_agent_register(a, "never", fn_never, NULL, 0);
	st |= tw_agent_register(a, "sleep", fn_sleep, NULL, TW_FN_BLOCKING);
	st |= tw_agent_register(a, "die", fn_die, NULL, 0);
	st |= tw_agent_register(a, "nested", fn_nested, NULL, 0);
	return st == TW_OK ? TW_OK : TW_EINVAL;
}

/* The test groups' shared secret (h_opts). */
#define H_SECRET "tensorwire-test-group-secret"

/* Options for a test worker: several share 2 cores, so loops yield and
 * sleep soon. In the DPDK mode: the DPDK transport on this worker's veth
 * end (create the agent with h_agent_init). */
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
	/* Every test group has a secret: every connection authenticates
	 * (and the DPDK transport serves on routable addresses, which
	 * needs one). */
	o->secret = H_SECRET;
	o->same_host = h_same_host(o->same_host);
	if (h_net_cur != NULL && h_net_rank >= 0) {
		tw_dpdk_opts_init(&h_dpdk_opts, sizeof(h_dpdk_opts));
		h_dpdk_opts.eal_args = h_net_cur->eal[h_net_rank];
		h_dpdk_opts.port = h_net_port_for(1);
		o->transport = TW_TRANSPORT_DPDK;
		o->transport_opts = &h_dpdk_opts;
	}
}

/* What carries a test worker's calls to the others, for printed figures. */
static H_UNUSED const char *h_mode(const struct tw_agent_opts *o)
{
	if (h_dpdk())
		return h_xdp() ? "af_xdp" : "dpdk";
	return o->same_host ? "shm" : "uring";
}

/* A borrowed tuple view of n values (no allocation). */
#define H_TUPLE(arr)                                                           \
	((tw_value){.kind = TW_KIND_TUPLE,                                     \
		    .flags = TW_VALUE_BORROWED,                                \
		    .len = (uint32_t)(sizeof(arr) / sizeof((arr)[0])),         \
		    .u.items = (arr)})

#define H_STR(s) tw_value_string_borrow((s), strlen(s))

/* rpc_sync returning an int (or -999999 and the status). */
static H_UNUSED tw_status h_call_int(tw_agent *a, const char *to,
				     const char *fn, const tw_value *args,
				     int64_t *out)
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
