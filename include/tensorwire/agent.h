/* tensorwire agent: a worker in a group — rendezvous, membership, function
 * registry, calls to other workers, and shutdown. */
#ifndef TENSORWIRE_AGENT_H
#define TENSORWIRE_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/future.h>
#include <tensorwire/status.h>
#include <tensorwire/value.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_agent tw_agent;

#define TW_WORKER_NAME_MAX 128
#define TW_ADDR_MAX 64

/* torch's WorkerInfo: id is the rank. */
typedef struct tw_worker_info {
	uint32_t id;
	char name[TW_WORKER_NAME_MAX];
	char addr[TW_ADDR_MAX];  /* its first loop's: "tcp://127.0.0.1:port",
				  * "udp://10.0.0.2:31850/02:00:00:00:00:02"
				  * (DPDK) */
} tw_worker_info;

/* Which transport carries frames. */
typedef enum tw_transport_kind {
	TW_TRANSPORT_URING = 0, /* io_uring TCP, the default */
	TW_TRANSPORT_DPDK = 1,  /* kernel bypass (needs a DPDK build) */
} tw_transport_kind;

struct tw_agent_opts {
	size_t opts_size;            /* sizeof(struct tw_agent_opts) */
	const char *name;            /* worker name, unique in the group */
	uint32_t rank;               /* 0 .. world_size-1; rank 0 hosts rendezvous */
	uint32_t world_size;
	const char *rendezvous;      /* "tcp://host:port", as torch's TCPStore */
	const char *listen_host;     /* address to serve on (default 127.0.0.1) */
	uint32_t num_loops;          /* run loops (threads), default 1 */
	int first_cpu;               /* pin loop i to first_cpu + i; -1 = no pin */
	int64_t default_timeout_ms;  /* per-call default, 60000; 0 = none */
	int64_t init_timeout_ms;     /* rendezvous deadline, default 60000 */
	uint64_t spin_ns;            /* loop idle spin before sleeping */
	bool yield;                  /* loops yield while spinning (set when
				      * workers outnumber cores) */
	uint32_t executor_threads;   /* for blocking handlers, default 2 */
	tw_transport_kind transport;
	/* Fault injection (tests), as torch's faulty agent; 0 = off. */
	uint32_t fault_fail_type, fault_fail_count;
	uint32_t fault_drop_type;
	uint32_t fault_delay_type;
	uint64_t fault_delay_ms;
	/* Called by tw_agent_init once this worker serves and before it meets
	 * the others at the rendezvous: register functions here, so no call
	 * can arrive before its function exists (torch needs no such step:
	 * its functions are Python code every worker already has). A status
	 * other than TW_OK fails the init with it. NULL = none. */
	tw_status (*setup)(tw_agent *a, void *arg);
	void *setup_arg;
	/* Embedded mode (SPDK/Seastar style): no loop threads. The thread
	 * that calls tw_agent_init owns the agent's single loop (num_loops
	 * must be 1) and drives it: tw_agent_poll, or while it waits in
	 * tw_agent_wait / tw_rpc_sync. Caller and loop share a core, so a
	 * call needs no cross-thread hand-off: the lowest latency on few
	 * cores. Other threads may still call tw_rpc_async; their calls
	 * progress when the owner polls. first_cpu does not apply: the
	 * owner pins its own thread if it wants. */
	bool embedded;
	/* When tw_agent_init fails, a message saying why ("worker name 'w1'
	 * is already taken by rank 1"), NUL-terminated. NULL = not wanted. */
	char *err;
	size_t err_len;
	/* DPDK transport (transport = TW_TRANSPORT_DPDK; ignored otherwise).
	 * The agent brings up one DPDK port with one RX/TX queue pair per
	 * run loop; loop i listens on queue i, at UDP port dpdk_udp_port + i,
	 * and its address "udp://IP:PORT/MAC" goes to the others through the
	 * rendezvous (which stays TCP, as torch's TCPStore; so does the
	 * shutdown barrier). Peers learn each other's MAC and IP from there:
	 * there is no ARP, so the workers must share an Ethernet segment
	 * (or be vdevs wired to each other, as net_memif). listen_host does
	 * not apply. */
	/* EAL arguments, split at white space, e.g. "-l 0 --no-huge -m 256
	 * --no-pci --file-prefix=w1 --vdev=net_memif0,role=server,socket=x".
	 * Used by the first DPDK user of the process only: the EAL starts
	 * once per process and cannot be restarted after
	 * rte_eal_cleanup. NULL = the application initialised the EAL
	 * itself (rte_eal_init) before tw_agent_init. The thread calling
	 * tw_agent_init keeps its CPU affinity (the EAL would pin it to the
	 * main lcore). Shutdown frees the port but leaves the EAL up. */
	const char *dpdk_eal_args;
	/* The port: a PCI address ("0000:03:00.0") or a vdev name
	 * ("net_memif0"); a vdev name with arguments is probed when no such
	 * port exists. NULL = the first port. */
	const char *dpdk_port;
	/* This worker's IPv4 address, for the IP/UDP headers of its
	 * packets and in its address. Only the MAC steers packets (no ARP,
	 * no routing), but on a shared segment it should be unique and
	 * belong to the NIC's subnet. NULL = a private one derived from the
	 * rank: 10.A.B.C with A*65536 + B*256 + C = rank + 1. */
	const char *dpdk_ip;
	/* UDP port of loop 0; loop i serves dpdk_udp_port + i. 0 = 31850. */
	uint16_t dpdk_udp_port;

	/* Transport tuning; 0 = the transport's default. */
	uint32_t max_queued;         /* sends held per connection (session)
				      * before TW_ENOSPC (4096) */
	uint64_t zc_threshold;       /* tensor segments of this many bytes or
				      * more leave zero-copy: SEND_ZC (io_uring,
				      * to other hosts) or external mbufs
				      * (DPDK); default 16 KiB, UINT64_MAX =
				      * never */
	uint32_t recv_buf_size;      /* io_uring: provided receive buffer
				      * size (64 KiB) */
	uint32_t recv_buf_count;     /* io_uring: provided buffers per loop
				      * (64, a power of 2) */
	int sockbuf;                 /* io_uring: SO_SNDBUF/SO_RCVBUF bytes
				      * (kernel default) */
	uint32_t dpdk_credits;       /* DPDK: packets in flight per session
				      * (64); more helps large tensors on
				      * fast links, costs mbufs */
	uint64_t dpdk_rto_us;        /* DPDK: retransmission timeout (5000) */
	uint64_t dpdk_dead_ms;       /* DPDK: a peer silent this long is dead
				      * and its calls fail with
				      * TW_EUNREACHABLE (1000) */
	uint16_t dpdk_mtu;           /* DPDK: IP MTU (1500; 576..9000) */
	uint32_t dpdk_mbufs;         /* DPDK: mbufs per queue pool (8191) */
	/* io_uring: TCP congestion control of connections to workers on
	 * this host ("reno": on loopback a pacing algorithm such as BBR
	 * only adds timer delays, 2-3x on large tensors; see README) and to
	 * other hosts (the system's). NULL = that default, "" = the
	 * system's. The name must be available to this process
	 * (net.ipv4.tcp_allowed_congestion_control unless privileged). */
	const char *tcp_congestion_local;
	const char *tcp_congestion;
};

void tw_agent_opts_init(struct tw_agent_opts *o, size_t opts_size);

/*
 * Join the group: start the loops, serve, and meet every other worker at the
 * rendezvous. Returns once every worker's info is known. Errors, all within
 * init_timeout_ms: TW_EINVAL (bad options, duplicate name, rank already
 * taken, world size disagreeing with rank 0's), TW_ETIMEDOUT (rendezvous
 * unreachable or a worker missing), TW_EIO, TW_ENOTSUP (the DPDK
 * transport in a build without DPDK, or its EAL or port cannot be brought
 * up: err says why).
 */
tw_status tw_agent_init(const struct tw_agent_opts *o, tw_agent **out);

/*
 * Leave. graceful: wait until this worker's calls have completed (their
 * timeouts bound that; a call without one may wait forever, as in torch),
 * then until every worker in the group has called shutdown (a barrier
 * through rank 0; a worker whose control connection closed counts as
 * gone), serving calls meanwhile; then stop. Not graceful: stop at once;
 * pending futures fail with TW_ESHUTDOWN ("RPC agent is shutting down").
 * Frees the agent either way. Returns TW_OK, or TW_EUNREACHABLE when rank
 * 0 vanished during the barrier (the agent is freed all the same), or
 * TW_EBUSY, changing nothing, when called from one of the agent's own
 * threads (a handler). Embedded, only the owner thread may call it
 * (TW_EINVAL otherwise, changing nothing); it polls the loop throughout,
 * so peers' calls are served while it waits for them.
 *
 * Values and futures that hold received tensors or messages point into
 * the transport's receive buffers: release them before shutdown, or the
 * transport keeps (leaks) its receive pool for them.
 */
tw_status tw_agent_shutdown(tw_agent *a, bool graceful);

/* DPDK only, at process end: release the EAL (rte_eal_cleanup: its
 * hugepage files and run directory) once every agent of the process has
 * shut down. The EAL cannot be initialised again afterwards, so no DPDK
 * agent can start in this process after it. A no-op when no agent
 * started the EAL, or in a build without DPDK. */
void tw_agent_dpdk_cleanup(void);

/* Worker info by name, by id, or of this worker. TW_ENOENT if unknown. */
tw_status tw_agent_worker_info(const tw_agent *a, const char *name,
			       tw_worker_info *out);
tw_status tw_agent_worker_info_by_id(const tw_agent *a, uint32_t id,
				     tw_worker_info *out);
void tw_agent_self(const tw_agent *a, tw_worker_info *out);
uint32_t tw_agent_world_size(const tw_agent *a);

/* ---- functions this worker serves ---- */

typedef struct tw_call_ctx tw_call_ctx;

/*
 * A handler gets the call's positional args (a tuple) and keyword args (a
 * dict), both borrowed for the duration of the call, and either
 *  - returns TW_OK with *result set (moved into the response), or
 *  - returns an error kind and sets *result to an error value (or leaves it
 *    NONE for a generic message), or
 *  - calls tw_call_defer to answer later through a future.
 * Handlers run on a run loop and must not block, unless registered with
 * TW_FN_BLOCKING (then on an executor thread).
 */
typedef tw_status (*tw_handler_fn)(tw_call_ctx *ctx, const tw_value *args,
				   const tw_value *kwargs, tw_value *result,
				   void *arg);

#define TW_FN_BLOCKING 0x1u /* run on the executor pool */

/* Register name (a qualified name such as "demo::add"). TW_EBUSY if taken. */
tw_status tw_agent_register(tw_agent *a, const char *name, tw_handler_fn fn,
			    void *arg, unsigned flags);

/* Async execution: the response is sent when f completes (the call holds a
 * reference). The handler's return value and *result are then ignored. */
void tw_call_defer(tw_call_ctx *ctx, tw_future *f);

/* The agent serving this call, for nested calls from a handler. */
tw_agent *tw_call_agent(const tw_call_ctx *ctx);

/* Worker id of the caller. */
uint32_t tw_call_caller(const tw_call_ctx *ctx);

/* ---- calls ---- */

/*
 * Call fn on worker to (a name) with positional args (a tuple or list;
 * NULL = none) and kwargs (a dict; NULL = none). timeout_ms follows torch:
 * negative = the agent's default, 0 = no timeout. The args are encoded
 * before return (tensor bytes are referenced, not copied, until sent), so
 * the caller may destroy them at once. A call to self takes no network.
 * Errors come through the future: TW_ENOFUNC, TW_ETIMEDOUT, TW_EUNREACHABLE,
 * TW_ESHUTDOWN, and the handler's kinds. Immediate failures are returned
 * directly: TW_ENOENT (unknown worker), TW_EINVAL (bad args, or called
 * before init finished), TW_ENOSPC (the loop's queue is full:
 * backpressure, try again), TW_ESHUTDOWN (shutdown has begun).
 *
 * Handlers receive args borrowed, also for calls to self (whose args are
 * owned copies marked borrowed), so copying parts of args into *result is
 * safe either way; the result is copied for a call to self.
 */
tw_status tw_rpc_async(tw_agent *a, const char *to, const char *fn,
		       const tw_value *args, const tw_value *kwargs,
		       int64_t timeout_ms, tw_future **out);

/* tw_rpc_async then wait; *result gets an owned copy of the value. On a
 * remote error, returns its kind and, if err is not NULL, an owned error
 * value with its message and origin. Not from a handler running on a run
 * loop (TW_EINVAL: it would block the loop that must deliver the answer);
 * blocking handlers (executor threads) may use it. */
tw_status tw_rpc_sync(tw_agent *a, const char *to, const char *fn,
		      const tw_value *args, const tw_value *kwargs,
		      int64_t timeout_ms, tw_value *result, tw_value *err);

/* Embedded mode, owner thread only: one iteration of the agent's loop
 * (receive, serve, complete futures, fire timers). Returns work done; 0
 * (and nothing done) in threaded mode. */
int tw_agent_poll(tw_agent *a);

/* Wait for f like tw_future_wait; in embedded mode on the owner thread it
 * polls the loop meanwhile (it must: nothing else would), following the
 * loop's idle policy (spin_ns, yield), and returns TW_EINVAL when called
 * from inside the loop (a handler) on a future not yet done. */
tw_status tw_agent_wait(tw_agent *a, tw_future *f, int64_t timeout_ms);

/* Calls this worker has sent and not yet seen completed (snapshot). */
uint64_t tw_agent_outstanding(const tw_agent *a);

/* Counters, summed over the loops (snapshot). */
struct tw_agent_stats {
	uint64_t calls_started;  /* tw_rpc_async accepted */
	uint64_t calls_sent;     /* CALL frames handed to a transport */
	uint64_t calls_served;   /* calls received (network and self) */
	uint64_t late_responses; /* responses with no pending call: dropped */
	uint64_t bad_frames;     /* malformed or misaddressed frames */
	uint64_t timeouts;       /* calls failed by their deadline */
	uint64_t conns_opened, conns_closed;
	uint64_t exec_jobs;      /* blocking calls run on the executor */
	uint64_t exec_expired;   /* calls skipped: their deadline passed while
				  * they waited (executor queue, or on their
				  * way in: received past their budget) */
};
void tw_agent_get_stats(const tw_agent *a, struct tw_agent_stats *s);

/* ---- functions by schema (docs/functions.md) ---- */

/*
 * A schema'd handler gets the call's arguments already bound to its schema
 * (tw_schema_bind): bound[0 .. nbound) in schema order, defaults filled,
 * conversions applied (int to float), borrowed for the duration of the
 * call. Results and errors as tw_handler_fn (tw_call_defer works too).
 */
typedef tw_status (*tw_schema_handler_fn)(tw_call_ctx *ctx,
					  const tw_value *bound,
					  uint32_t nbound, tw_value *result,
					  void *arg);

/*
 * Register a function by its schema, e.g.
 *   "demo::scale(Tensor x, float factor=2.0, *, bool inplace=False) -> Tensor"
 * under its name without the overload ("demo::scale"). Registering another
 * overload ("demo::scale.int(...)") of the name adds it: a call binds to
 * the overloads in registration order and runs the first that binds, as
 * torch's matchBuiltinOp; when none binds the caller gets TW_ETYPE with
 * torch's message ("Failed to match operator name ... Schemas tried: ...";
 * for a single overload, the binding error naming the argument and the
 * expected type). Errors: TW_EINVAL for a schema that does not parse (err,
 * when not NULL, gets the parser's message with its position) or flags
 * differing from the name's other overloads; TW_EBUSY when the name is
 * registered plainly (tw_agent_register) or already has this overload
 * name; TW_ENOMEM. Every agent serves the aten:: builtins and
 * tw::list_functions.
 */
tw_status tw_agent_register_schema(tw_agent *a, const char *schema,
				   tw_schema_handler_fn fn, void *arg,
				   unsigned flags, char *err, size_t errlen);

/*
 * Every function this worker serves, as an owned list sorted by qualified
 * name of tuple(str name, str schema, bool blocking): name is
 * "aten::add.Tensor" for an overload ("name" when it has none), schema is
 * its canonical text ("" for a plain function).
 */
tw_status tw_agent_list_functions(const tw_agent *a, tw_value *out);

/* The same list from worker to (a call of "tw::list_functions"). On a
 * remote error returns its kind (out stays NONE). */
tw_status tw_rpc_list_functions(tw_agent *a, const char *to,
				int64_t timeout_ms, tw_value *out);

#ifdef __cplusplus
}
#endif
#endif
