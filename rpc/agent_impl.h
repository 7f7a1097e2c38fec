/* Internal: the agent's shared structures — per-loop state, connections,
 * pending calls, reply records — used by agent.c, call.c and serve.c. */
#ifndef TW_RPC_AGENT_IMPL_H
#define TW_RPC_AGENT_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tensorwire/agent.h>
#include <tensorwire/future.h>
#include <tensorwire/message.h>

#include "dataplane/list.h"
#include "dataplane/loop.h"
#include "dataplane/ring.h"
#include "dataplane/timer.h"
#include "dataplane/transport.h"
#include "dataplane/util.h"
#include "rpc/auth.h"
#include "rpc/executor.h"
#include "rpc/ops/ops.h"
#include "rpc/pend.h"
#include "rpc/registry.h"
#include "rpc/rendezvous.h"
#include "rpc/stats.h"

/* Messages a run loop's ring holds (calls, replies, control). A full
 * ring refuses tw_rpc_async (TW_ENOSPC): backpressure. */
#define AGENT_LOOP_RING 16384 /* a power of two; no suffix: printed */

/* Exactly torch's timeout message. */
#define AGENT_TIMEOUT_FMT                                                      \
	"RPC ran for more than set timeout (%lld ms) and will now be marked with an error"
#define AGENT_SHUTDOWN_MSG "RPC agent is shutting down"

/* Relaxed statistics counter: one writer (its loop), any reader. */
typedef _Atomic uint64_t stat_t;
static inline void stat_add(stat_t *s, uint64_t n)
{
	atomic_store_explicit(s,
			      atomic_load_explicit(s, memory_order_relaxed) + n,
			      memory_order_relaxed);
}
static inline void stat_inc(stat_t *s)
{
	stat_add(s, 1);
}
/* A high-water mark: raised to v. */
static inline void stat_max(stat_t *s, uint64_t v)
{
	if (v > atomic_load_explicit(s, memory_order_relaxed))
		atomic_store_explicit(s, v, memory_order_relaxed);
}

struct agent_loop;
struct conn_state;
struct call;
TAILQ_HEAD(call_list, call);

/* One frame on its way out. msg is encoded in place and never moved (its
 * iov may point into itself). done is the owner's completion. */
struct tx {
	struct tw_send_req req;
	struct agent_loop *l;
	STAILQ_ENTRY(tx) link; /* in its connection's backlog */
	void (*done)(struct tx *tx, tw_status st);
	tw_out_msg msg;
};

/* Zero a recycled record of size bytes holding tx, all but tx->msg: that
 * is 384 of a call's 720 bytes, and it is already clear (every path that
 * fills it releases it, or fails with it cleared, before the record goes
 * back to its cache; tw_msg_encode clears it again before writing), so a
 * call and its reply each zero that much less per call (issue 15). */
static inline void tx_record_reset(void *rec, size_t size, struct tx *tx)
{
	char *base = rec, *msg = (char *)&tx->msg;
	size_t before = (size_t)(msg - base);
	size_t after = before + sizeof(tx->msg);
	memset(base, 0, before);
	memset(base + after, 0, size - after);
}

/* A call this worker makes, from tw_rpc_async to its future's completion.
 * Lives in the pending table of the loop it was posted to; freed when it
 * is neither pending nor being sent. */
enum { CALL_PENDING = 0x1, CALL_SENDING = 0x2 };

struct call {
	struct tw_loop_msg lmsg;
	struct tx tx;
	struct tw_timer timer;
	tw_agent *a;
	struct agent_loop *l;
	tw_future *fut; /* the call's own reference */
	uint64_t req_id;
	uint64_t deadline_ns; /* 0 = none */
	int64_t timeout_ms;   /* effective, for the message */
	uint32_t dst;
	uint64_t t0_ns; /* started (loop clock): its round trip's start */
	uint32_t fslot; /* its function's histograms (rpc/stats.h) */
	uint8_t live;   /* CALL_* (loop thread only) */
	uint8_t mtype;  /* frame type sent: CALL, or an RRef request */
	uint8_t rtype;  /* its answer's type (or EXCEPTION) */
	bool self;
	bool has_msg;            /* tx.msg holds an encoded frame */
	struct conn_state *conn; /* connection the call went out on */
	TAILQ_ENTRY(call) clink; /* in that connection's pending calls */
	/* Calls to self: no frame, owned clones and the function. */
	const struct reg_entry *fn;
	tw_value self_args, self_kwargs;
	struct ag_own *self_ag; /* a call to self's autograd metadata */
	uint16_t hflags;        /* the frame's header flags */
	char self_fn[64];       /* name for messages (truncated) */
};

struct peer_auth;

/* An unauthenticated inbound connection's place in the agent's bound
 * (peer_auth.c, under auth_mu). cs is dereferenced by its own loop only. */
struct unauth_slot {
	struct conn_state *cs;
	uint64_t host;  /* the peer's host (0: unknown) */
	uint64_t since; /* loop clock: arrival, or its HELLO once hello */
	uint64_t seq;   /* a->unauth_seq then: arrival order, or HELLO order */
	uint32_t loop;  /* the loop owning cs */
	bool hello;     /* a valid HELLO came: mid-handshake */
};

/* A connection as the agent sees it (tw_conn.ctx). It carries nothing but
 * AUTH frames until its handshake is done (peer_auth.c, docs/wire.md 5.1);
 * from then on every frame's src must be peer and its dst this worker. */
struct conn_state {
	tw_conn *c;
	tw_transport *t; /* c's: the loop's main transport, or its same-host
			  * one */
	struct agent_loop *l;
	uint64_t id;
	int64_t peer; /* worker id: outbound, the one we called; inbound,
		       * -1 until the handshake binds it */
	bool outbound;
	bool closing;     /* close requested */
	bool authed;      /* handshake done: frames flow */
	bool local_done;  /* same-host treatment given (conn_mark_local) */
	bool auth_failed; /* handshake failed: closing soon, sends refused */
	bool doomed;      /* to be closed by the loop's poller */
	struct peer_auth *pa;   /* the handshake, until done */
	tw_status fail_kind;    /* with fail_msg: why calls on it fail */
	char *fail_msg;         /* NULL: "unreachable" */
	struct call_list calls; /* pending calls sent on it */
	/* Reading stopped: its peer's backlog on this loop is over the
	 * bound (serve.c, struct peer_load). */
	bool rx_paused;
	STAILQ_HEAD(, tx) backlog;    /* sends waiting for queue room */
	STAILQ_HEAD(, tx) held;       /* sends waiting for the handshake */
	TAILQ_ENTRY(conn_state) link; /* in its loop's connections */
};

/* A loop's counters (tw_agent_stats, <tensorwire/stats.h>): written by
 * its thread alone (stat_inc: a relaxed load and store, no
 * read-modify-write), read by any with relaxed loads, on cache lines of
 * their own. The few that other threads write say so. */
struct loop_stats {
	stat_t calls_sent, calls_served, late_responses, bad_frames;
	stat_t conns_opened, conns_closed, timeouts, exec_jobs, exec_expired;
	stat_t auth_ok, auth_failed, auth_timeouts, auth_refused, auth_evicted;
	stat_t spoofed_frames;
	stat_t offloaded, rx_pauses; /* loop thread */
	stat_t connect_failures, redial_waits, conns_same_host;
	stat_t same_host_fallbacks, conns_shm;
	/* Calls made, by outcome: answered with a result, or failed by
	 * kind ([TW_OK] unused); calls served, by the answer's kind. */
	stat_t calls_ok, calls_failed[TW_STATUS_COUNT_];
	stat_t served_ok, served_failed[TW_STATUS_COUNT_];
	stat_t frames_in, bytes_in, frames_out, bytes_out;
	stat_t pending_hwm, tx_inflight_hwm;
} __attribute__((aligned(64)));

/* Where the answer to a served call goes. */
struct ag_own;
struct reply_path {
	tw_agent *a;
	struct agent_loop *l; /* loop owning the connection / pending call */
	uint64_t conn_id;     /* 0: a call to self, answered locally */
	uint64_t req_id;
	uint32_t caller;
	const struct reg_entry *fn;
	/* Autograd (docs/wire.md §5.2): the call's metadata, borrowed while
	 * its handler runs; the answer's, owned by whoever holds the path
	 * last (freed after the answer is encoded). NULL: none. */
	const tw_ag_meta *agin;
	struct ag_own *agout;
	uint64_t t0_ns; /* arrival (loop clock); 0: not timed */
	bool counted;   /* in serve_active[caller] until its reply is sent or
		       * dropped */
};

/* A reply travelling to its loop: an encoded frame for a connection, or a
 * value for a local (self) call. */
struct reply {
	struct tw_loop_msg lmsg;
	struct tx tx;
	struct agent_loop *l;
	uint64_t conn_id;
	uint64_t req_id;
	bool local;
	bool encoded;
	struct conn_state *cs;      /* sent on it */
	int64_t peer;               /* counted in l->peers[peer]; -1: not */
	uint64_t t0_ns;             /* the call's arrival (0: not timed) */
	const struct reg_entry *fn; /* its function (NULL: none) */
	uint32_t caller;
	tw_status kind;    /* the answer's */
	tw_status st;      /* local */
	tw_value val;      /* local: owned result or error value */
	struct ag_own *ag; /* local: the answer's autograd metadata */
	STAILQ_ENTRY(reply)
	retry_link; /* waiting to be posted (target
		     * ring full) */
};

/* What one peer (worker id) has this worker hold on one loop (serve.c),
 * over all its connections on the loop: its calls waiting for, queued for
 * or running on the executor (their frames pinned) and the replies to it
 * handed to conn_send and not yet done. Past the agent's bound every one
 * of the peer's connections on the loop stops reading (rx_paused) until
 * it drains. exec: its calls admitted to the executor, at most
 * exec_per_peer_max, and only while what it holds besides wait is within
 * reply_backlog_bytes; the rest wait in wait, in order. */
struct srv_job;
struct peer_load {
	uint64_t bytes;
	uint64_t wait_bytes; /* of bytes, the frames in wait */
	uint32_t calls;
	uint32_t exec;
	bool paused;
	bool admitting; /* inside admit_waiting */
	STAILQ_HEAD(, srv_job) wait;
};

/* Connecting to a worker again (loop thread). A connection to it that
 * failed before its handshake ended (refused, unreachable, timed out,
 * authentication) makes the next attempt wait: REDIAL_MIN_MS, doubling
 * per failure in a row up to REDIAL_MAX_MS; calls meanwhile fail at once
 * with the last failure's cause, as gRPC's fail-fast calls in its
 * connection backoff. A handshake that completes ends it. */
#define REDIAL_MIN_MS 10u
#define REDIAL_MAX_MS 1000u
struct redial {
	uint64_t at_ns;   /* no attempt before this (loop clock) */
	uint64_t fail_ns; /* when the last one failed */
	uint32_t fails;   /* attempts failed in a row */
	tw_status kind;   /* the last failure's, for calls failed meanwhile */
	char why[160];
};

/* A transport of a loop, as its upcalls' ctx: which one reported. */
struct tport {
	struct agent_loop *l;
	tw_transport *t;
};

struct agent_loop {
	tw_agent *a;
	uint32_t idx;
	tw_loop *loop;
	tw_transport *t;      /* the main transport (tw_agent_opts.transport) */
	struct tport cb_main; /* its upcalls' ctx */
	tw_transport *tl;     /* the same-host transport, or NULL */
	struct tport cb_local;
	char laddr[TW_ADDR_MAX]; /* tl's address ("" without tl) */
	uint8_t *local_failed;   /* world entries: reach them over t */
	uint64_t next_conn_id;   /* conn_state ids, unique on the loop */
	bool started, ready;
	struct agent_lend *lend; /* NULL: waiters never poll this loop */
	struct tw_fault_opts fault;
	struct tw_poller poller;
	char addr[TW_ADDR_MAX];
	/* Why the transport's create or listen failed: said on the loop's
	 * thread, whose error message is its own. */
	char init_why[TW_ERRMSG_MAX];
	/* Loop thread only from here. */
	struct conn_state **out; /* world entries: our connection per worker */
	struct peer_load *peers; /* world entries: backlog per worker */
	struct redial *redial;   /* world entries */
	TAILQ_HEAD(, conn_state) conns; /* every live connection */
	uint32_t nconns;
	uint32_t nbacklog; /* connections with a backlog */
	uint32_t ndoomed;  /* connections to close (conn_close_later) */
	bool connecting;   /* inside connect(): an on_conn(TW_OK) now is
			    * our own outbound connection */
	struct pend_table pend;
	STAILQ_HEAD(, reply) retry; /* replies waiting for room (serve.c) */
	bool closing;
	int64_t tx_inflight; /* tx records the transport holds */
	struct loop_stats stats;
	struct stats_loop obs; /* histograms (rpc/stats.h) */
	/* Members that die (agent_member_dead): dead_msg is posted here once
	 * per batch of deaths (dead_posted), and fails this loop's calls to
	 * them; dead_done: ranks handled here (world entries, loop thread);
	 * dead_seen: a->ndead when this loop last looked (any thread). */
	struct tw_loop_msg dead_msg;
	_Atomic int dead_posted;
	_Atomic uint32_t dead_seen;
	uint8_t *dead_done;
};

/*
 * A loop lent to the waiters of its calls' futures (tw_agent_opts.no_lend,
 * tw_loop_borrow_until). Each such future holds a reference, as does the
 * agent until it frees its loops; users counts waiters inside the loop,
 * and the agent stops its loops only after closing this and seeing users
 * at zero, so a waiter never polls a freed loop.
 */
struct agent_lend {
	_Atomic uint32_t refs;
	_Atomic uint32_t users;
	_Atomic bool closed;
	struct agent_loop *l;
};

/* Let f's waiters poll l while they wait (a no-op when l is not lent). */
void agent_lend_future(struct agent_loop *l, tw_future *f);

/* Lets deferred replies, which complete on arbitrary threads, possibly
 * after the agent is gone, find out whether it still exists. Reference
 * counted; outlives the agent while deferred records hold it. */
struct defer_hub {
	_Atomic uint32_t refs;
	_Atomic uint32_t active; /* callbacks using the agent right now */
	_Atomic int dead;
	tw_agent *a;
};

enum agent_state {
	AGENT_STARTING = 0,
	AGENT_RUNNING = 1,
	AGENT_STOPPING = 2,
};

struct tw_agent {
	struct tw_agent_opts o; /* strings below are our copies */
	char name[TW_WORKER_NAME_MAX];
	char *rendezvous;
	const struct tw_transport_provider *tp;
	void *tenv; /* tp's, from its start */
	/* The same-host transport's provider and its env, or NULL. */
	const struct tw_transport_provider *tpl;
	void *tenvl;
	_Atomic int64_t default_timeout_ms; /* tw_agent_set_default_timeout */
	uint32_t rank, world, nloops;
	uint64_t gen; /* distinguishes agents in thread-locals */
	struct agent_loop *loops;
	struct registry reg;
	bool reg_ok;
	struct executor *exec;
	tw_buf_pool *txpool;
	tw_ring *call_cache, *reply_cache; /* free records */
	struct rdv_server *rdv_srv;
	struct rdv_client *rdv;
	struct rdv_member *members; /* world entries, after rendezvous */
	tw_worker_info *workers;    /* world entries */
	uint32_t *name_idx;         /* rank + 1 by name hash, 0 = empty */
	uint32_t name_mask;
	struct defer_hub *hub;
	_Atomic int state;
	_Atomic int joining;           /* rendezvous under way: calls wait */
	_Atomic int members_known;     /* membership built (init, before the
					* loops admit the members) */
	_Atomic uint32_t api_inflight; /* threads inside tw_rpc_async */
	_Atomic uint64_t next_req;
	_Atomic uint64_t outstanding;
	/* Graceful shutdown's count (serve.c, agent.c agent_count): incoming
	 * calls without a deadline accepted and not yet answered (any handler
	 * kind), by caller (world entries). A call
	 * with a deadline is counted by its caller for exactly as long as the
	 * caller waits (outstanding); one without, by both, so that it still
	 * counts if its caller's count were lost, until the caller leaves. */
	_Atomic uint64_t *serve_active;
	_Atomic uint32_t rr_next;
	stat_t api_calls;
	struct stats_fns fns; /* function names' histogram slots */
	bool fns_ok;
	struct stat_server *stat_srv; /* tw-stat's socket, or NULL */
	struct agent_hooks *hooks;    /* our copy; NULL but in tests */
	struct auth_key key;          /* the group's secret (len 0: none) */
	/* Unauthenticated inbound connections, all loops (peer_auth.c):
	 * nunauth of max_unauth slots, under auth_mu. */
	pthread_mutex_t auth_mu;
	struct unauth_slot *unauth;
	uint32_t nunauth;
	uint64_t unauth_seq; /* orders the slots' arrivals and HELLOs */
	/* Builtins' bounds on a run loop and on the executor (serve.c). */
	tw_ops_limits lim_loop, lim_exec;
	_Atomic uint64_t limit_refusals, oversize; /* any thread */
	struct rref_ctx *rref; /* rref.c: owner and user tables */
	struct ag_table *ag;   /* autograd.c: contexts held here */
	/* Members that die (docs/architecture.md): dead[r] set once, by
	 * agent_member_dead; ndead counts them. The watch is loop 0's:
	 * rank 0's notices (rdv_watch) are read as soon as the control
	 * connection turns readable (a poll on loop 0's io_uring,
	 * watch_req, armed while watch_polling), and every AGENT_WATCH_MS
	 * by a timer that re-arms what the poll could not do; watching and
	 * watch_gone are loop 0's. */
	_Atomic uint8_t *dead;
	_Atomic uint32_t ndead;
	struct tw_timer watch;
	struct tw_uring_req watch_req;
	bool watching, watch_polling;
	uint8_t *watch_gone;
};

/* How often loop 0's timer looks at rank 0's notices besides the poll
 * (the poll acts at once: this only catches up after the shutdown
 * barrier held the connection, a full ring or a poll that could not be
 * armed). */
#define AGENT_WATCH_MS 100

/* Whether this agent declared worker r (< world) dead. Any thread. */
static inline bool agent_peer_dead(const tw_agent *a, uint32_t r)
{
	return atomic_load_explicit(&a->dead[r], memory_order_relaxed) != 0;
}

/* The loop whose thread is running, or NULL (set once per loop thread). */
extern _Thread_local struct agent_loop *agent_tls_loop;

/* ---- agent.c ---- */
const char *agent_worker_name(const tw_agent *a, uint32_t id);
/* The id of the worker called name: TW_ENOENT when there is none (not
 * explained: a lookup that misses costs no formatting). After the
 * membership is known. */
tw_status agent_find_worker(const tw_agent *a, const char *name, uint32_t *id);
/* Record the explanation of an unknown worker, by name or by id, and
 * return TW_ENOENT: "no worker named 'w9' (world size 2)". */
tw_status agent_no_worker(const tw_agent *a, const char *name);
tw_status agent_no_worker_id(const tw_agent *a, uint32_t id);
/* Record kind's explanation from a future's error e (NULL: none): the
 * prefix (printf-style) then, for an error raised by another worker,
 * torch's form "On worker 'w1' (id 1): <message>", else the message
 * alone. */
void agent_explain_error(const tw_agent *a, tw_status kind, const tw_error *e,
			 const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/*
 * Worker rank is dead (docs/architecture.md, "Members that die"): rank 0
 * said its control connection closed, or, for rank 0, ours to it did.
 * Acts once per rank (later calls return at once; ranks out of range and
 * this worker's own are ignored): marks it dead, so that new calls to it
 * fail at once with TW_EUNREACHABLE naming it; drops the RRef user forks
 * it held here (rref_member_dead, on this thread); and has every loop
 * fail its pending calls to it and close its connections (on the loops'
 * threads, soon after). Called on loop 0's thread (an embedded agent's
 * owner thread), from the watch (its poll or its timer); tests call it
 * on the owner thread of a fake agent, outside an iteration.
 */
void agent_member_dead(tw_agent *a, uint32_t rank);
/* Record (tw_errmsg) why calls to dead worker r fail; returns
 * TW_EUNREACHABLE. The same reason, written into buf. */
tw_status agent_dead_fail(const tw_agent *a, uint32_t r);
void agent_dead_reason(const tw_agent *a, uint32_t r, char *buf, size_t size);
/* Embedded owner thread (l is agent_tls_loop): poll until f completes or
 * timeout_ms (< 0: none) passes. TW_EINVAL from inside an iteration. */
tw_status agent_wait_own(struct agent_loop *l, tw_future *f,
			 int64_t timeout_ms);

/* ---- call.c (client side, loop thread unless noted) ---- */
void call_on_response(struct agent_loop *l, struct conn_state *cs,
		      const tw_frame_hdr *h, tw_buf *buf, size_t off,
		      size_t len);
/* Answer for a call to self, by req_id; v (owned) and ag (owned, the
 * answer's autograd metadata or NULL) are consumed. */
void call_local_done(struct agent_loop *l, uint64_t req_id, tw_status st,
		     tw_value *v, struct ag_own *ag);
void call_conn_closed(struct agent_loop *l, struct conn_state *cs,
		      tw_status why);
void call_fail_all(struct agent_loop *l, tw_status kind, const char *msg);
void call_cache_drain(tw_agent *a);
/* Lend an owned tree to a handler as if borrowed (every node flagged), and
 * take it back (flags cleared) and free it. */
void call_value_lend(tw_value *v);
void call_value_reclaim(tw_value *v);
/* Take back a lent tree without freeing it (owned again). */
void call_value_unlend(tw_value *v);
/* rref.c's requests: a frame of type mtype carrying payload (read now,
 * not kept) to worker dst (not this one), answered by a frame of type
 * rtype or an EXCEPTION, as a call: the same pending table, timeout and
 * failures (TW_EUNREACHABLE, TW_ETIMEDOUT, TW_ESHUTDOWN) through *out.
 * Immediate failures as tw_rpc_async's. Any thread. Requests to one dst
 * all go through loop dst % nloops, so they leave (and arrive) in the
 * order they were made. */
/* items[0..2] = (fn, args, kwargs) as borrowed views of the caller's
 * values (NULL args / kwargs: empty), for a CALL-shaped payload the
 * encoder reads before the caller's values go. */
void call_items_borrow(tw_value items[3], const char *fn, const tw_value *args,
		       const tw_value *kwargs);
tw_status call_ctl_async(tw_agent *a, uint32_t dst, uint8_t mtype,
			 uint8_t rtype, const tw_value *payload,
			 int64_t timeout_ms, tw_future **out);
/* The agent's own call to self (rref.c: an RRef's function), from any
 * thread, no deadline; unlike tw_rpc_async it does not wait on a loop
 * thread for init to finish installing the members (a peer's REMOTE_CALL
 * can arrive then, and the loop must keep running for init to end). */
tw_status call_self_async(tw_agent *a, const char *fn, const tw_value *args,
			  const tw_value *kwargs, tw_future **out);

/* ---- autograd.c ---- */
tw_status ag_init(tw_agent *a);
void ag_fini(tw_agent *a);
/* AG_CLEANUP from a member (loop thread); AG_BACKWARD is served as a
 * call of the backward handler (serve.c). */
void ag_on_frame(struct agent_loop *l, struct conn_state *cs,
		 const tw_frame_hdr *h, tw_buf *buf, size_t off, size_t len);
/* End the contexts rank created (agent_member_dead). */
void ag_member_dead(tw_agent *a, uint32_t rank);
/* The AG_BACKWARD handler as a function entry, or NULL. */
const struct reg_entry *ag_backward_entry(const tw_agent *a);

/* ---- serve.c (server side) ---- */
void serve_on_call(struct agent_loop *l, struct conn_state *cs,
		   const tw_frame_hdr *h, tw_buf *buf, size_t off, size_t len);
/* Reject a request type we do not serve. */
void serve_reject(struct agent_loop *l, struct conn_state *cs,
		  const tw_frame_hdr *h, tw_status kind, const char *msg);
/* Answer the request at p from any thread: a frame of type ok_type with
 * *result (read, not taken) when st is TW_OK, else EXCEPTION(st, origin,
 * msg). rref.c's answers (REMOTE_RET, RREF_FETCH_RET, ACK). */
void serve_reply(const struct reply_path *p, unsigned ok_type, tw_status st,
		 const tw_value *result, uint32_t origin, const char *msg);
/* Run a call to self on l (the call is pending on l). */
void serve_local_call(struct agent_loop *l, struct call *c);
/* Replies parked on l (their loop's ring was full): post what fits now
 * (l's poller); drop them all (l's teardown). */
int serve_flush_retries(struct agent_loop *l);
void serve_drop_retries(struct agent_loop *l);
/* Free the agent's cached reply records (agent teardown). */
void reply_cache_drain(tw_agent *a);
/* Derive the serving bounds from a->o (agent init, before serving). */
void serve_setup(tw_agent *a);

/* ---- test hooks (agent.c) ----
 *
 * What lets a test run agents on its own fake net (tests/lib/fake_agent.c)
 * with nothing fake in the library: an embedded agent whose membership is
 * given instead of met at a rendezvous, on a clock the test moves. The
 * transport is the test's provider, chosen by name as any other.
 */
struct agent_hooks {
	/* The loop's clock (NULL = monotonic). Call deadlines are read on
	 * it too, from the thread calling tw_rpc_async. */
	tw_clock_fn clock;
	void *clock_ctx;
	/* world_size names and addresses by rank, read during init only:
	 * the membership, with no rendezvous and no shutdown barrier. */
	const char *const *names;
	const char *const *addrs;
	/* Graceful shutdown calls this while it waits for the worker's own
	 * calls, to drive the other agents (and move the clock, if it must);
	 * NULL = poll this agent's loop only. */
	void (*drive)(void *arg);
	void *drive_arg;
};

/* tw_agent_init with hooks (NULL = tw_agent_init). */
tw_status agent_init_hooked(const struct tw_agent_opts *opts,
			    const struct agent_hooks *hooks, tw_agent **out);

/* ---- connection helpers (agent.c, loop thread) ---- */
struct conn_state *conn_find_id(struct agent_loop *l, uint64_t id);
/* Our connection to dst, made if needed; NULL with *st when it cannot be
 * (conn_why says why, for the call's error), or while the reconnection
 * backoff (struct redial) runs. */
struct conn_state *conn_get(struct agent_loop *l, uint32_t dst, tw_status *st);
tw_status conn_why(struct agent_loop *l, uint32_t dst, tw_status st, char *buf,
		   size_t size);
/* dst's handshake on our connection completed: no backoff. */
void redial_ok(struct agent_loop *l, uint32_t dst);
/* Whether worker r runs on this host's kernel (its host identifier at the
 * rendezvous is ours); false while the membership is not known. */
bool agent_peer_local(const tw_agent *a, uint32_t r);
/* Give cs (authenticated, its peer known) the same-host treatment if its
 * peer runs on this kernel, once; a no-op while the membership is not
 * known (loop_admit_fn comes back to it). */
void conn_mark_local(struct agent_loop *l, struct conn_state *cs);
/* Send tx on cs, or queue it; tx->done runs exactly once (maybe now).
 * Until cs's handshake is done the frame is held, and leaves after it in
 * order; on a connection that is closing or failed its handshake, done
 * gets TW_EUNREACHABLE. */
void conn_send(struct conn_state *cs, struct tx *tx);
/* conn_send for the handshake's own frames: never held. */
void conn_send_raw(struct conn_state *cs, struct tx *tx);
/* The handshake is done: send the held frames, in order. */
void conn_release_held(struct conn_state *cs);
/* Close cs from the loop's poller (not from inside an upcall or a send's
 * done); frames arriving meanwhile are dropped. Idempotent. */
void conn_close_later(struct conn_state *cs);

/* ---- peer_auth.c: authenticated data connections (loop thread) ----
 *
 * Every data connection opens with the handshake of rpc/auth.h (ctx
 * AUTH_CTX_DATA): the connecting side is the client. Until it is done the
 * connection's rx_max is PAUTH_RX_MAX and only AUTH frames (and an
 * EXCEPTION explaining a refusal) are accepted: anything else fails it.
 * Inbound connections still unauthenticated are bounded per peer host and
 * in all (tw_agent_opts.max_unauth_per_host, max_unauth) and closed at
 * auth_timeout_ms. A new connection that finds a bound full evicts one of
 * them, as SYN-flood defences do: the one silent longest (no first frame
 * yet), else the oldest mid-handshake one whose HELLO came at least
 * PAUTH_HELLO_GRACE_MS ago; from its host (the per-host bound) or any
 * (the total), and on the accepting loop only: a loop closes only its own
 * connections, so when every candidate is on another loop (or young and
 * mid-handshake) the new connection is refused instead. A failed
 * handshake is answered with EXCEPTION(TW_EAUTH or TW_EPROTO, reason) and
 * the connection closed once it left; the calls held on an outbound one
 * fail with that kind and reason.
 */
#define PAUTH_RX_MAX 1024u /* AUTH frames and an EXCEPTION with a reason */
/* A member's PROOF follows its HELLO by one round trip: a connection whose
 * HELLO came more recently than this is not evicted. */
#define PAUTH_HELLO_GRACE_MS 250u

/* Agent init: the unauthenticated-connection table. TW_ENOMEM. */
tw_status pauth_init(tw_agent *a);
void pauth_fini(tw_agent *a);
/* TW_EINVAL with a reason when url ("tcp://10.0.0.2:0") is not a
 * loopback address and a has no secret, unless insecure is set. */
tw_status pauth_check_listen(const tw_agent *a, const char *url,
			     const char *what);
/* An accepted connection: bound it, limit it, start its deadline. */
void pauth_accepted(struct agent_loop *l, struct conn_state *cs);
/* Our connection to cs->peer: send the HELLO, hold everything else. */
void pauth_connected(struct agent_loop *l, struct conn_state *cs);
/* A frame on a connection not yet authenticated (or failed). */
void pauth_on_frame(struct agent_loop *l, struct conn_state *cs,
		    const tw_frame_hdr *h, tw_buf *buf, size_t off, size_t len);
/* A frame refused on a connection not yet authenticated (a newer wire
 * version): answered EXCEPTION(kind, msg) to its src and req_id unless it
 * was an EXCEPTION, the handshake failed, cs closed once that left. */
void pauth_refuse(struct agent_loop *l, struct conn_state *cs,
		  const tw_frame_hdr *h, tw_status kind, const char *msg);
/* cs is going: free its handshake state (conn_remove). */
void pauth_conn_gone(struct agent_loop *l, struct conn_state *cs);
/* An authenticated connection's frame whose src or dst is not the bound
 * pair: counted and refused (a CALL is answered EXCEPTION(TW_EAUTH)). */
void pauth_spoofed(struct agent_loop *l, struct conn_state *cs,
		   const tw_frame_hdr *h);

#endif
