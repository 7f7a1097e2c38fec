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
	char addr[TW_ADDR_MAX]; /* its first loop's: "tcp://127.0.0.1:port",
				 * "udp://10.0.0.2:31850/02:00:00:00:00:02"
				 * (DPDK) */
} tw_worker_info;

/*
 * Options of tw_agent_init. Start from tw_agent_opts_init, then set what
 * you need. The transport is chosen by name, and tuned by its own options
 * struct passed by pointer: <tensorwire/uring.h> (struct tw_uring_opts,
 * the default transport: TCP over io_uring) and <tensorwire/dpdk.h>
 * (struct tw_dpdk_opts: kernel bypass), e.g.
 *
 *   struct tw_dpdk_opts d;
 *   tw_dpdk_opts_init(&d, sizeof(d));
 *   d.eal_args = "-l 0 --no-huge -m 256 --no-pci --vdev=net_memif0";
 *   o.transport_opts = &d;      // o.transport = TW_TRANSPORT_DPDK too
 */
struct tw_agent_opts {
	size_t opts_size; /* sizeof(struct tw_agent_opts) */
	const char *name; /* worker name, unique in the group: 1 to
			   * TW_WORKER_NAME_MAX - 1 letters, digits, '-',
			   * '_' and ':' (torch's rule) */
	uint32_t rank;    /* 0 .. world_size-1; rank 0 hosts rendezvous */
	uint32_t world_size;
	const char *rendezvous; /* "tcp://host:port", as torch's TCPStore */
	uint32_t num_loops;     /* run loops (threads), default 1 */
	int first_cpu;          /* pin loop i to first_cpu + i; -1 = no pin */
	int64_t default_timeout_ms; /* per-call default, 60000; 0 = none;
				     * negative is refused. Changeable at
				     * run time: tw_agent_set_default_timeout */
	int64_t init_timeout_ms;    /* rendezvous deadline, default 60000 */
	uint64_t spin_ns;           /* loop idle spin before sleeping */
	bool yield;                 /* loops yield while spinning (set when
				     * workers outnumber cores) */
	uint32_t executor_threads;  /* for blocking handlers, default 2 */
	/* The transport carrying this worker's frames: TW_TRANSPORT_URING
	 * ("uring") or TW_TRANSPORT_DPDK ("dpdk"). NULL = the one
	 * transport_opts is for, or "uring" without them. An unknown name,
	 * or DPDK in a build without it, fails tw_agent_init with a reason. */
	const char *transport;
	/* That transport's options struct (struct tw_uring_opts,
	 * struct tw_dpdk_opts), read during tw_agent_init only; NULL = its
	 * defaults. Options for another transport than the chosen one are
	 * refused. */
	const void *transport_opts;
	/*
	 * The group's shared secret, as a cluster token: every connection
	 * between workers, and to the rendezvous, opens with a mutual
	 * HMAC-SHA256 challenge-response that proves both ends know it and
	 * binds the connection to one worker id (docs/wire.md 5.1). secret
	 * (a string), else the file secret_file names (one trailing newline
	 * dropped; refused if others may read it), else the environment:
	 * TW_SECRET, then TW_SECRET_FILE. Every worker of a group needs the
	 * same one. Without any, connections still bind to a worker id but
	 * anyone who can reach the ports can join and call: tw_agent_init
	 * then refuses to serve on anything but a loopback address unless
	 * insecure is set. An empty secret, given any of these ways, is
	 * refused (unset it to run without one). Make it long and random
	 * (32 random bytes, e.g. `head -c 32 /dev/urandom | base64`): one
	 * handshake, which anyone who reaches a port can get, lets an
	 * attacker test guesses offline. Read during tw_agent_init only.
	 */
	const char *secret;
	const char *secret_file;
	bool insecure;
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
	/* Connections a peer opened to this worker that have not completed
	 * the handshake yet (anyone who can reach the port can open them):
	 * at most max_unauth_per_host from one peer host (IPv4 address) and
	 * max_unauth in all, across the loops. A new connection that finds
	 * a bound full evicts, on its own run loop, the connection of that
	 * host (for the total: of any host) that has been silent longest,
	 * else the oldest whose HELLO came over 250 ms ago; one that just
	 * sent its HELLO is mid-handshake and kept (members send theirs at
	 * once, and finish in 1.5 round trips). With none to evict (all
	 * young, or on other run loops: a loop closes only its own) the new
	 * connection is closed at once. So a stranger holding the bound
	 * with silent connections (on loopback every local process shares
	 * the host 127.0.0.1) cannot keep members out. Each is closed when
	 * auth_timeout_ms passes before its handshake completes (an
	 * outbound one too: its calls then fail with TW_EUNREACHABLE); there
	 * is no shorter deadline for the first frame: eviction already takes
	 * the silent ones first, and a shorter one would cut off members on
	 * a loaded host for nothing. A stranger who keeps sending fresh
	 * HELLOs (no secret needed for that) at more than the bound every
	 * 250 ms can still crowd members out of their first connection.
	 * Defaults 64, 256 and 10000 (a same-host group of 64 workers
	 * connecting at once fits); 0 is refused.
	 * Counted in tw_agent_stats (auth_refused, auth_evicted,
	 * auth_timeouts). */
	uint32_t max_unauth_per_host;
	uint32_t max_unauth;
	int64_t auth_timeout_ms;
	/*
	 * Bounds on what peers' calls make this worker allocate and do
	 * (docs/wire.md 2). Each breach is a clear error to the caller,
	 * counted in tw_agent_stats; 0 turns a bound off.
	 *
	 * Every tensor an aten:: builtin creates (results, broadcasts,
	 * converted or contiguous copies of inputs) is checked before it is
	 * allocated: at most max_tensor_elems elements (default 2^28) and
	 * max_tensor_bytes bytes (default 1 GiB). A builtin's work is the
	 * logical element count it touches (a broadcast, stride-0 input
	 * counts every element it stands for; a matrix product its
	 * multiply-adds): at most max_op_work (default 2^32). A breach is
	 * TW_ERUNTIME naming the limit and this option
	 * ("sum(): work of 17179869184 elements is over this worker's limit
	 * of 4294967296 elements (tw_agent_opts.max_op_work)").
	 */
	uint64_t max_tensor_elems;
	uint64_t max_tensor_bytes;
	uint64_t max_op_work;
	/* A builtin whose work passes loop_work_max elements (default 2^16)
	 * runs on the executor (executor_threads), never on a run loop, so
	 * other calls keep their latency; 0 = every builtin on the loop. */
	uint64_t loop_work_max;
	/* Backpressure per peer (worker) and run loop: what a peer has
	 * this worker hold for it over all its connections on one loop —
	 * replies waiting to be sent to it (the peer does not read them;
	 * a reply's whole frame counts from when it is queued) and its
	 * calls waiting for, queued for or running on the executor (their
	 * frames stay in memory) — at most reply_backlog_max (default
	 * 1024) calls and reply_backlog_bytes (default 64 MiB) frame
	 * bytes: past either this worker stops reading calls from every
	 * connection of that peer on that loop (TCP flow control stops
	 * the peer) and reads again once the backlog is under half of
	 * both. A peer's connections spread over num_loops loops, so its
	 * bound is num_loops times these. Counted in
	 * tw_agent_stats.rx_pauses (once per connection paused). 0 = no
	 * bound. */
	uint32_t reply_backlog_max;
	uint64_t reply_backlog_bytes;
	/* Largest frame (header, tensors and all) this worker sends or
	 * accepts, default 1 GiB + 64 KiB, at most 2^40; at least 64 KiB. A
	 * call whose encoded frame is larger fails in tw_rpc_async with
	 * TW_EOVERFLOW naming both sizes, and nothing is sent; a result
	 * that is larger comes back as an EXCEPTION(TW_EOVERFLOW). Give
	 * every worker of a group the same value: a receiver with a lower
	 * one closes the connection on a larger frame. */
	uint64_t max_frame;
	/* The nice value of the executor threads, 0 .. 19 (0, the default,
	 * leaves them as created). Where they share cores with the run loops
	 * (few cores, loops not pinned apart), a positive value lets the
	 * loops win the CPU from builtins moved off them and from CPU-bound
	 * blocking handlers, at those's expense (perf/RESULTS.md,
	 * bench-offload). */
	int executor_nice;
	/* Graceful shutdown's deadline (tw_agent_shutdown), in ms, over its
	 * whole length: waiting for this worker's calls and every round of
	 * the barrier. Default 60000, torch's default RPC timeout (torch's
	 * own shutdown timeout, DEFAULT_SHUTDOWN_TIMEOUT, is 0: no deadline,
	 * so one silent worker holds every other's shutdown forever). 0 = no
	 * deadline, as in torch; negative is refused. */
	int64_t shutdown_timeout_ms;
	/* Calls of one peer (worker) admitted to the executor at once, per
	 * run loop: blocking handlers and builtins offloaded past
	 * loop_work_max. Each may make a result of up to max_tensor_bytes
	 * before its reply counts in the backlog above, so past this many
	 * the peer's further calls wait (still counted in its backlog) and
	 * this worker stops reading that peer on that loop until one
	 * finishes. What one peer can make this worker hold on one loop is
	 * then about (exec_per_peer_max + 1) * max_tensor_bytes +
	 * reply_backlog_bytes (results being made, the reply that crosses
	 * the bound, the backlog), times num_loops for the worker. Default
	 * TW_EXEC_PER_PEER_AUTO: 2 * executor_threads; 0 = no cap. */
	uint32_t exec_per_peer_max;
	/* Graceful shutdown tells the owners of the user RRefs this worker
	 * still holds (<tensorwire/rref.h>) that they are gone, waits for
	 * that, and then reports them: tw_agent_shutdown returns TW_ERUNTIME
	 * naming how many and the first ones, the agent shut down all the
	 * same. Set this to shut down quietly, as torch's _ignore_rref_leak.
	 * Handles still held stay valid to tw_rref_release (only). */
	bool ignore_rref_leak;
	/*
	 * A thread that waits for a call's answer (tw_rpc_sync,
	 * tw_future_wait on a call's future, tw_rref_to_here, ...) runs the
	 * run loop the answer arrives on itself while it waits, as an
	 * embedded owner does, when that loop's thread can let it go: the
	 * loop's thread parks meanwhile and takes over again when the
	 * waiter is done, gives up (after spin_ns without work), or needs
	 * what only the loop's thread may do. On few cores this saves the
	 * two hand-offs between the caller's thread and the loop's that
	 * every call otherwise pays (bench-rpc --threaded: perf/RESULTS.md).
	 * Only over a transport that allows it (io_uring: yes; DPDK: no,
	 * its queues belong to the loop's lcore). Handlers then run on the
	 * waiting thread too, still one at a time per loop, and still "on
	 * the loop" (a handler's tw_rpc_sync is refused as before). Set
	 * no_lend to keep every iteration on the loop's own thread.
	 */
	bool no_lend;
	/* The process's log level (<tensorwire/log.h>), set by tw_agent_init:
	 * an enum tw_log_level, or -1 (the default) to leave it as it is
	 * (TW_LOG_LEVEL from the environment, else warn). */
	int log_level;
	/*
	 * Workers on this host's kernel (the same host id at the rendezvous:
	 * other processes, network namespaces and containers of this
	 * machine) are reached over the same-host transport ("shm",
	 * <tensorwire/shm.h>: rings in shared memory) when same_host is set
	 * and both ends serve it; everyone else over the main transport. A
	 * same-host connection that cannot be set up (no shared directory,
	 * a peer without it, a refusal) falls back to the main transport for
	 * that worker, its calls moved over, saying why (a warn line,
	 * tw_agent_stats.same_host_fallbacks). Where this host cannot serve
	 * it (no same-host transport in the build, its socket directory
	 * missing or not writable) the worker serves the main transport
	 * only, saying why (a warn line, same_host_off). same_host_opts: a
	 * struct tw_shm_opts (NULL = its defaults); options given there
	 * that are refused fail tw_agent_init. Default on: clear it to
	 * reach every worker over the main transport (to measure or test
	 * that transport between workers of one host, say).
	 */
	bool same_host;
	const void *same_host_opts;
	/* Liveness of the control connections (each worker's to rank 0):
	 * keepalive and TCP_USER_TIMEOUT fail one whose peer's host vanished
	 * (no FIN, no RST) within this; rank 0 then declares that member
	 * dead to the others, a member whose rank 0 vanished declares it
	 * dead. At least 1000 (default 30000). */
	uint32_t control_timeout_ms;
	/*
	 * Statistics (<tensorwire/stats.h>): latency histograms are kept per
	 * function for the first stats_functions function names this worker
	 * calls or serves (default 64), and per peer for the workers of
	 * rank below stats_peers (default 64); the others share an "other"
	 * entry. The tables are sized here and never grow, whatever peers
	 * call. At most TW_STATS_MAX_TRACKED each; 0 = all under "other".
	 */
	uint32_t stats_functions;
	uint32_t stats_peers;
	/*
	 * Serve the statistics on a unix socket at this path, for
	 * tools/tw-stat (NULL, the default: TW_STAT_SOCKET from the
	 * environment, else none). The socket's directory is made 0700 if
	 * missing and must otherwise be this user's and closed to others;
	 * the socket is 0600 and answers only this user and root
	 * (SO_PEERCRED). A thread of its own answers, one client at a time,
	 * never a run loop. Failing to set it up fails tw_agent_init with a
	 * reason.
	 */
	const char *stat_socket;
};

/* Largest tw_agent_opts.stats_functions and stats_peers. */
#define TW_STATS_MAX_TRACKED 4096u

/* tw_agent_opts.exec_per_peer_max's default: 2 * executor_threads. */
#define TW_EXEC_PER_PEER_AUTO UINT32_MAX

void tw_agent_opts_init(struct tw_agent_opts *o, size_t opts_size);

/*
 * Join the group: start the loops, serve, and meet every other worker at the
 * rendezvous. Returns once every worker's info is known. Errors, all within
 * init_timeout_ms, each with its reason (tw_errmsg): TW_EINVAL (bad
 * options, a worker name outside torch's rule, an unknown transport,
 * duplicate name, rank already taken, world size disagreeing with rank
 * 0's), TW_EAUTH ("authentication
 * failed: ... secret": this worker and rank 0 do not share a secret, or
 * one of them has none), TW_ETIMEDOUT (rendezvous unreachable or a worker
 * missing), TW_EIO, TW_ENOTSUP (the DPDK transport in a build without
 * DPDK, or its EAL or port cannot be brought up).
 */
tw_status tw_agent_init(const struct tw_agent_opts *o, tw_agent **out);

/*
 * Leave. graceful, as torch's agent join(): repeat rounds of (wait until
 * this worker's own calls have completed; a barrier through rank 0 carrying
 * this worker's count of active calls: outgoing calls in flight plus
 * incoming calls not yet answered, deferred and blocking handlers
 * included, while their caller waits for them) until the group-wide count
 * is 0 in two rounds in a row with nothing started or accepted anywhere
 * between them. (An incoming call whose caller gave up at its timeout, or
 * left the group, no longer counts: as in torch, nobody waits for it.) Calls are served and
 * may be made throughout, so calls that handlers issue meanwhile (nested
 * calls, chains of fire-and-forget calls, follow-ups from callbacks)
 * complete, and handlers still running are not cut off. The whole of it is
 * bounded by opts.shutdown_timeout_ms (tw_agent_shutdown_timeout: by
 * timeout_ms). A worker whose control connection closed counts as gone.
 * Not graceful: stop at once; pending futures fail with TW_ESHUTDOWN ("RPC
 * agent is shutting down").
 *
 * Frees the agent in every case but TW_EBUSY and TW_EINVAL. Returns
 * TW_OK; TW_ETIMEDOUT when the deadline passed first, naming the workers
 * rank 0 had not heard from (name and id), or this worker's own calls
 * still pending, or rank 0 not answering; TW_EUNREACHABLE when rank 0
 * vanished during the barrier; TW_ERUNTIME, after a shutdown otherwise
 * complete, when graceful and user RRefs were still held (their count and
 * first ids; opts.ignore_rref_leak); TW_EBUSY, changing nothing, when called
 * from one of the agent's own threads (a handler). Embedded, only the
 * owner thread may call it (TW_EINVAL otherwise, changing nothing); it
 * polls the loop throughout, so peers' calls are served while it waits
 * for them. Each failure says which case it is (tw_errmsg).
 *
 * Values and futures that hold received tensors or messages point into
 * the transport's receive buffers: release them before shutdown, or the
 * transport keeps (leaks) its receive pool for them.
 */
tw_status tw_agent_shutdown(tw_agent *a, bool graceful);

/* tw_agent_shutdown with its own deadline, as torch's
 * shutdown(graceful, timeout): timeout_ms > 0 bounds a graceful shutdown,
 * 0 = no deadline, negative = the agent's shutdown_timeout_ms. */
tw_status tw_agent_shutdown_timeout(tw_agent *a, bool graceful,
				    int64_t timeout_ms);

/* Worker info by name, by id, or of this worker (torch's get_worker_info).
 * TW_ENOENT if unknown ("no worker named 'w9' (world size 2)", "no worker
 * with id 5 (world size 2: ids 0 to 1)"), TW_EINVAL for NULL arguments.
 * Any thread. */
tw_status tw_agent_worker_info(const tw_agent *a, const char *name,
			       tw_worker_info *out);
tw_status tw_agent_worker_info_by_id(const tw_agent *a, uint32_t id,
				     tw_worker_info *out);
void tw_agent_self(const tw_agent *a, tw_worker_info *out);
uint32_t tw_agent_world_size(const tw_agent *a);

/* Whether worker id is alive as far as this worker knows: false once
 * this worker declared it dead (docs/architecture.md, "Members that
 * die": rank 0 saw its control connection close and said so, or, for
 * rank 0, this worker's connection to it closed), never true again;
 * then calls to it fail at once with TW_EUNREACHABLE naming it. Also
 * false for a NULL agent or an id out of range; true for this worker
 * itself. Any thread. */
bool tw_agent_worker_alive(const tw_agent *a, uint32_t id);

/*
 * Every worker's info, in rank order (out[i].id == i), as torch's
 * get_worker_infos: into out[0 .. cap). *n is set to the world size in
 * every case but NULL arguments, so a call with cap 0 (out may then be
 * NULL) asks how many there are. TW_ENOSPC, writing nothing, when cap is
 * smaller than the world size (tw_errmsg says both); TW_EINVAL for a NULL
 * a or n, or a NULL out with cap > 0. The membership is fixed once
 * tw_agent_init returned: any thread, no lock.
 */
tw_status tw_agent_worker_infos(const tw_agent *a, tw_worker_info *out,
				uint32_t cap, uint32_t *n);

/*
 * The default timeout of calls made with timeout_ms < 0, in ms (0 = none),
 * as torch's rpc.get_rpc_timeout (which speaks seconds); -1 for a NULL a.
 * Set it at run time with tw_agent_set_default_timeout (torch's
 * _set_rpc_timeout): it applies to calls started afterwards; a call
 * already started keeps the deadline it was given. 0 = no timeout;
 * negative is refused with TW_EINVAL (torch does not check). Any thread;
 * a call started concurrently by another thread may take the old or the
 * new value.
 */
int64_t tw_agent_default_timeout(const tw_agent *a);
tw_status tw_agent_set_default_timeout(tw_agent *a, int64_t timeout_ms);

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

/* Register name (a qualified name such as "demo::add"). TW_EBUSY if taken
 * ("function 'demo::add' is already registered"), TW_EINVAL for an empty
 * or overlong name (over 1024 bytes), a NULL fn or unknown flags, TW_ENOMEM;
 * tw_errmsg says which. Any thread, at any time. */
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
 * negative = the agent's default (tw_agent_default_timeout, read now),
 * 0 = no timeout. The args are encoded before return (tensor bytes are
 * referenced, not copied, until sent), so the caller may destroy them at
 * once. A call to self takes no network. Errors come through the future:
 * TW_ENOFUNC, TW_ETIMEDOUT, TW_EUNREACHABLE, TW_ESHUTDOWN, and the
 * handler's kinds. Immediate failures are returned directly, each with
 * its reason (tw_errmsg):
 *   TW_ENOENT     unknown worker ("no worker named 'w9' (world size 2)")
 *   TW_EINVAL     args not a tuple or list ("args must be a tuple or list
 *                 (or NULL for none), got None"), kwargs not a dict, a
 *                 NULL or empty fn, called before tw_agent_init returned
 *                 (from the setup callback), or a value the wire cannot
 *                 carry, named by its path in args or kwargs
 *                 ("args[0][1]"): nested too deep (a call's payload nests
 *                 at most TW_VALUE_MAX_DEPTH containers and wraps args
 *                 and kwargs in one of its own, so they may nest
 *                 TW_VALUE_MAX_DEPTH - 1 deep, args itself counting as
 *                 one), a string that is not UTF-8, a repeated dict key,
 *                 a malformed tensor, more tensors or bytes than a frame
 *                 carries
 *   TW_ENOSPC     the loop's queue is full: backpressure, retry once
 *                 calls complete
 *   TW_EOVERFLOW  the encoded call is larger than the agent's max_frame
 *                 ("call to 'demo::echo' on worker 'w1' is a frame of
 *                 1073807424 bytes, over the limit of 1073807360 bytes
 *                 (tw_agent_opts.max_frame)"); nothing was sent
 *   TW_ESHUTDOWN  shutdown has begun
 *   TW_ENOMEM
 * A call to self is not encoded but copied: the nesting limit is the
 * same, the other wire checks (UTF-8, repeated keys, tensor counts) do
 * not apply to it.
 *
 * Handlers receive args borrowed, also for calls to self (whose args are
 * owned copies marked borrowed), so copying parts of args into *result is
 * safe either way; the result is copied for a call to self.
 */
tw_status tw_rpc_async(tw_agent *a, const char *to, const char *fn,
		       const tw_value *args, const tw_value *kwargs,
		       int64_t timeout_ms, tw_future **out);

/*
 * tw_rpc_async addressed by worker id (rank), as torch's rpc_async takes
 * a WorkerInfo or an id as well as a name (pass info.id for a
 * tw_worker_info). Same semantics, calls to self included; an unknown id
 * is TW_ENOENT ("no worker with id 5 (world size 2: ids 0 to 1)"). C has
 * no overloading, hence the second name.
 */
tw_status tw_rpc_async_id(tw_agent *a, uint32_t to, const char *fn,
			  const tw_value *args, const tw_value *kwargs,
			  int64_t timeout_ms, tw_future **out);

/*
 * Lenders: a thread that waits for work the agent's handlers make (a
 * queue they fill, as the Python package's workers wait for the calls
 * they run) runs the agent's run loop itself while it waits, as a thread
 * waiting for a call's answer does (tw_agent_opts.no_lend): the loop's
 * thread parks meanwhile, and a call then needs no hand-off between
 * threads on its way in or out. A lender is a handle on the agent's first
 * loop for that, taken after tw_agent_init returned and released by its
 * holder (it outlives the agent: after tw_agent_shutdown it lends
 * nothing). NULL when that loop is not lent (no_lend, a transport whose
 * loops may not be, embedded mode).
 */
typedef struct tw_lender tw_lender;
tw_lender *tw_agent_lender(tw_agent *a);
/*
 * Poll the loop on this thread until done(arg) or deadline_ns
 * (CLOCK_MONOTONIC), as long as no thread waiting for a call's answer
 * wants it; returns done(arg) (false at once from a handler or a loop's
 * thread, when the loop's thread cannot let it go, after shutdown).
 * Handlers run meanwhile on this thread, "on the loop" as always.
 */
bool tw_lender_serve_until(tw_lender *h, bool (*done)(void *arg), void *arg,
			   uint64_t deadline_ns);
/* Replies this thread gave since it last polled the loop (a deferred
 * handler's future it completed) wait for its next poll, or at most the
 * loop's linger and one park of its thread (~0.2-0.4 ms). Between two
 * jobs: once a batch of them (16) waits, this sends them now. */
void tw_lender_flush(tw_lender *h);
void tw_lender_release(tw_lender *h);

/* Flags of tw_rpc_async_ex. */
enum {
	/* The caller waits for the future next (tw_future_wait,
	 * tw_agent_wait), as tw_rpc_sync does. On a loop lent to its
	 * waiters (tw_agent_opts.no_lend) that wait then sends the call,
	 * and the loop's thread, parked after an earlier wait, is not woken
	 * for it. A call so flagged that nobody waits for still leaves, once
	 * that thread's linger ends (under 1 ms). */
	TW_CALL_WAITED = 1u << 0,
};

/* tw_rpc_async_id with flags (TW_CALL_*; others: TW_EINVAL). */
tw_status tw_rpc_async_ex(tw_agent *a, uint32_t to, const char *fn,
			  const tw_value *args, const tw_value *kwargs,
			  int64_t timeout_ms, unsigned flags, tw_future **out);

/*
 * tw_rpc_async then wait; *result gets an owned copy of the value. On
 * failure returns its kind, records its reason (tw_errmsg) and, if err is
 * not NULL, fills it with an owned error value (kind, message, origin
 * worker). An error raised by another worker reads, as torch prints a
 * remote exception, "On worker 'w1' (id 1): <its message>" (err->msg
 * holds the message alone; torch writes "On WorkerInfo(id=1, name=w1):"
 * and a traceback, which C has not); what this worker reports itself (a
 * timeout, an unreachable peer, shutdown, an error of a call to self)
 * reads as its message alone, as torch raises those; an immediate
 * failure reads as tw_rpc_async's. Not from a handler running on a run
 * loop (TW_EINVAL: it would block the loop that must deliver the
 * answer); blocking handlers (executor threads) may use it.
 */
tw_status tw_rpc_sync(tw_agent *a, const char *to, const char *fn,
		      const tw_value *args, const tw_value *kwargs,
		      int64_t timeout_ms, tw_value *result, tw_value *err);

/* tw_rpc_sync addressed by worker id, as tw_rpc_async_id. */
tw_status tw_rpc_sync_id(tw_agent *a, uint32_t to, const char *fn,
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

/* tw_future_wait_all (future.h) as tw_agent_wait is tw_future_wait: the
 * embedded owner polls its loop while it waits, where tw_future_wait_all
 * would wait forever for answers only its loop can deliver. Other threads
 * and threaded agents wait as tw_future_wait_all does. The failed
 * future's explanation names the worker as tw_rpc_sync does: "future 2
 * (of 4) failed: On worker 'w1' (id 1): <message>". */
tw_status tw_agent_wait_all(tw_agent *a, tw_future *const *futs, size_t n,
			    int64_t timeout_ms);

/* Calls this worker has sent and not yet seen completed (snapshot). */
uint64_t tw_agent_outstanding(const tw_agent *a);

/* Counters, summed over the loops (snapshot). */
struct tw_agent_stats {
	uint64_t calls_started;  /* tw_rpc_async accepted */
	uint64_t calls_sent;     /* CALL frames handed to a transport */
	uint64_t calls_served;   /* calls received (network and self) */
	uint64_t late_responses; /* responses with no pending call: dropped */
	uint64_t bad_frames;     /* malformed or misaddressed frames, and
				  * frames of a type a data connection does
				  * not carry (the connection is closed) */
	uint64_t timeouts;       /* calls failed by their deadline */
	uint64_t conns_opened, conns_closed;
	uint64_t exec_jobs;    /* blocking calls run on the executor */
	uint64_t exec_expired; /* calls skipped: their deadline passed while
				* they waited (executor queue, or on their
				* way in: received past their budget) */
	/* Data connections' handshakes (docs/wire.md 5.1), both sides. */
	uint64_t auth_ok;        /* completed: the connection is bound */
	uint64_t auth_failed;    /* failed: wrong or missing secret, not a
				 * member, a malformed step, another frame
				 * before it ended; the connection closed */
	uint64_t auth_timeouts;  /* closed unauthenticated at auth_timeout_ms */
	uint64_t auth_refused;   /* closed on arrival: over max_unauth or
				 * max_unauth_per_host */
	uint64_t spoofed_frames; /* frames on an authenticated connection
				  * naming another source (or another
				  * destination): refused, a CALL answered
				  * with TW_EAUTH */
	uint64_t limit_refusals; /* builtin calls refused by max_tensor_elems,
				  * max_tensor_bytes or max_op_work */
	uint64_t offloaded;      /* builtin calls moved from a run loop to
				  * the executor (loop_work_max) */
	uint64_t rx_pauses;      /* times reading a connection paused for
				  * its backlog (reply_backlog_max) */
	uint64_t oversize;       /* calls refused and results turned into
				  * errors for passing max_frame */
	uint64_t auth_evicted;   /* unauthenticated connections closed to
				  * make room for a new one (max_unauth,
				  * max_unauth_per_host) */
	uint64_t lent_waits;     /* waits that ran the run loop on the
				  * waiting thread: for an answer (no_lend)
				  * or a lender's (tw_agent_lender) */
	uint64_t connect_failures;    /* connections of ours that failed before
				    * their handshake ended (refused,
				    * unreachable, timed out, wrong secret) */
	uint64_t redial_waits;        /* calls failed at once: their worker's
				    * next connection attempt was not due
				    * (backoff 10 ms doubling to 1 s after
				    * failures in a row) */
	uint64_t same_host_fallbacks; /* workers reached over the main
				       * transport because their same-host
				       * connection could not be set up */
	uint64_t conns_same_host;     /* authenticated connections to workers
				    * on this host's kernel (same host
				    * identifier at the rendezvous: other
				    * network namespaces and containers
				    * count), given the transport's
				    * same-host treatment */
	uint64_t conns_shm;           /* of those, connections over the
				    * same-host transport (same_host) */
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
 * expected type). Errors, each with its reason (tw_errmsg): TW_EINVAL for
 * a schema that does not parse (the parser's message, ending with the
 * byte offset: "expected ')' or ',' after argument 'x' at 17") or flags
 * differing from the name's other overloads; TW_EBUSY when the name is
 * registered plainly (tw_agent_register) or already has this overload
 * name ("function 'demo::scale.int' is already registered"); TW_ENOMEM.
 * Every agent serves the aten:: builtins and tw::list_functions.
 */
tw_status tw_agent_register_schema(tw_agent *a, const char *schema,
				   tw_schema_handler_fn fn, void *arg,
				   unsigned flags);

/*
 * Every function this worker serves, as an owned list sorted by qualified
 * name of tuple(str name, str schema, bool blocking): name is
 * "aten::add.Tensor" for an overload ("name" when it has none), schema is
 * its canonical text ("" for a plain function).
 */
tw_status tw_agent_list_functions(const tw_agent *a, tw_value *out);

/* The same list from worker to (a call of "tw::list_functions"). On a
 * remote error returns its kind (out stays NONE), explained as by
 * tw_rpc_sync. */
tw_status tw_rpc_list_functions(tw_agent *a, const char *to, int64_t timeout_ms,
				tw_value *out);

#ifdef __cplusplus
}
#endif
#endif
