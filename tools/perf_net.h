/* perf_net: how the two processes of a benchmark meet, shared by
 * perf/bench-rpc and tools/tw-perf. A client (rank 0, hosting the
 * rendezvous) forks a server (rank 1); both run agents over one of
 *   uring      io_uring TCP on 127.0.0.1 (or --hosts in --netns),
 *   shm        the same-host transport (rings in shared memory), io_uring
 *              carrying the rendezvous,
 *   memif      DPDK net_memif between the two processes,
 *   af_packet  DPDK net_af_packet on the two ends of a veth pair,
 * each pinned to its cpu; over DPDK each process brings up its own EAL
 * (-l <its cpu> --no-huge -m MB --no-pci --no-telemetry, a unique
 * --file-prefix), the server being memif's server, on an abstract socket
 * named after the client's pid; the client starts its EAL once the
 * server's port is up (pn_server_port_up, pn_wait_server_port). The
 * rendezvous stays TCP. */
#ifndef TW_TOOLS_PERF_NET_H
#define TW_TOOLS_PERF_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <tensorwire/tensorwire.h>

/* A fork whose af_packet fanout group collides leaves with this (the
 * client then forks again: pn_fanout_collides). */
#define PN_EXIT_RETRY 75

struct pn_net {
	const char *transport;   /* NULL or "uring", "shm", "memif",
				* "af_packet" */
	const char *ifaces;      /* af_packet: "SRV_IFACE,CLI_IFACE" */
	int eal_mem_mb;          /* EAL -m (0: 512) */
	uint32_t credits, mbufs; /* DPDK options, 0 = the library's */
	uint64_t zc_threshold;
	bool no_pkt_tag;
	const char *cc; /* tcp_congestion_local; NULL = the library's */
	int cpu[2];     /* [0] client, [1] server; -1 = not pinned */
	/* io_uring across network namespaces: [0] the client's, [1] the
	 * server's namespace and address; NULL = this namespace, 127.0.0.1 */
	char *netns[2], *host[2];
	/* filled by pn_prepare */
	char eal[2][512];
	char prefix[2][64];
	int ifidx[2];
};

/* Both agents' options (tw_agent_opts.transport_opts points in here). */
struct pn_transport {
	struct tw_uring_opts u;
	struct tw_dpdk_opts d;
};

/* CLOCK_MONOTONIC in ns. */
uint64_t pn_mono_ns(void);

/* Pin this thread to cpu (nothing for cpu < 0; a warning from prog when
 * the kernel refuses). */
void pn_pin(int cpu, const char *prog);

/* Move this (single-threaded) process into network namespace name (NULL:
 * stay), as `ip netns exec` does; exits on failure. */
void pn_enter_netns(const char *name, const char *prog);

/* A TCP port free on 127.0.0.1 now (for the rendezvous); exits when
 * there is none. */
int pn_free_port(const char *prog);

bool pn_is_dpdk(const struct pn_net *n);

/* Check n->transport and, for DPDK, make both processes' EAL arguments
 * and the flag the server raises once its port is up. Before the fork.
 * Exits with 2 on bad options. */
void pn_prepare(struct pn_net *n, const char *prog);

/* The EALs' /var/run/dpdk/<prefix> directories, once their processes are
 * gone (the parent's atexit); pn_forget_run_dirs in the child leaves them
 * to the parent. */
void pn_rm_run_dirs(void);
void pn_forget_run_dirs(void);

/* af_packet names its PACKET_FANOUT group (pid ^ ifindex) & 0xffff: the
 * two ends of one veth pair can collide (the second socket then fails). */
bool pn_fanout_collides(const struct pn_net *n, pid_t client, pid_t server);

/* Rank r's (0 client, 1 server) transport into ao, its options in t
 * (which must outlive tw_agent_init), and the group's secret: every
 * connection authenticates, as in a deployment. */
void pn_agent_transport(const struct pn_net *n, int r, struct tw_agent_opts *ao,
			struct pn_transport *t);

/* DPDK: the server says whether its port came up; the client waits for
 * that (60 s at most, or until *server exits: then *server = -1) and
 * returns whether it did. True at once over io_uring. */
void pn_server_port_up(bool ok);
bool pn_wait_server_port(const struct pn_net *n, pid_t *server);

/* In a forked server, first: die with the client (PR_SET_PDEATHSIG),
 * leave with PN_EXIT_RETRY when af_packet's fanout groups collide, enter
 * the server's network namespace, pin to the server's cpu. */
void pn_server_child(const struct pn_net *n, const char *prog);

/* Serve as rank 1's options ao say (its transport set here) until every
 * worker has shut down, with no deadline: the client's parts may take
 * longer than the default one, and a forked server dies with the client
 * all the same. Tells the client when init fails (pn_server_port_up);
 * the EAL cleaned up. An exit status: 0, or 1 after saying why. */
int pn_serve(const struct pn_net *n, struct tw_agent_opts *ao,
	     const char *prog);

/* Wait (5 s at most, then SIGKILL) for a server that leaves after the
 * shutdown barrier; *pp = -1. False when it did not exit with 0. */
bool pn_reap(pid_t *pp, const char *who, const char *prog);

/* The TCP congestion control in words. */
const char *pn_cc_name(const struct pn_net *n);

#endif
