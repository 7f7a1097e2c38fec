/* Transport interface: the one seam between the RPC layer and whatever moves
 * frames (io_uring TCP, DPDK, the in-process fake). A provider brings a
 * transport up for an agent; a transport belongs to one run loop and is
 * used only on that loop's thread. */
#ifndef TW_DATAPLANE_TRANSPORT_H
#define TW_DATAPLANE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <tensorwire/buf.h>
#include <tensorwire/frame.h>
#include <tensorwire/status.h>

#include "dataplane/list.h"
#include "dataplane/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_transport tw_transport;

/* A connection (TCP) or session (DPDK). Transports embed this as the first
 * member of their own connection object. */
typedef struct tw_conn {
	tw_transport *t;
	void *ctx;   /* the RPC layer's (peer id, ...) */
	uint64_t id; /* unique per transport, for logs */
	/* Largest frame (total_len) accepted on this connection, on top of
	 * t->limits; 0 = t->limits alone. The RPC layer keeps it small until
	 * the peer has authenticated (a stranger cannot make the receiver
	 * reserve a big frame), then raises it. A header over it is refused
	 * as over t->limits is: counted, on_refused(TW_EOVERFLOW) decides
	 * (skip it, or end the connection with TW_EPROTO). Set by the
	 * transport to 0 when it creates c; the RPC layer may change it from
	 * on_conn(c, TW_OK), or after connect returns, on. */
	uint64_t rx_max;
	/* Who is at the other end, as the transport sees it: the peer's
	 * host as an opaque key (its IPv4 or IPv6 address; 0 = not known)
	 * for per-host limits, and "ip:port" or "[ipv6]:port" for
	 * messages. */
	uint64_t peer_host;
	char peer[48];
	/* Why the connection ended, when the status alone does not say (a
	 * static string the transport sets before on_close), or NULL. */
	const char *why;
} tw_conn;

/*
 * One frame to send, embedded in the sender's object. iov describes the whole
 * frame (len bytes) and must stay valid, with the memory it points at, until
 * done runs. done runs exactly once on the loop thread: TW_OK when the
 * transport no longer needs the bytes (for zero-copy sends: after the
 * kernel's or NIC's notification), or the error that ended the connection.
 */
struct tw_send_req {
	const struct iovec *iov;
	uint32_t niov;
	uint32_t type; /* frame's message type (fault injection) */
	uint64_t len;
	void (*done)(struct tw_send_req *r, tw_status st);
	/* transport's */
	STAILQ_ENTRY(tw_send_req) link_; /* in its connection's queue */
	uint64_t sent_;
	uint32_t iov_idx_;
	uint32_t flags_;
};

/* A queue of send requests, oldest first (STAILQ_INIT it). */
STAILQ_HEAD(tw_send_queue, tw_send_req);

/* Upcalls, run on the loop thread. */
struct tw_transport_cbs {
	void *ctx;
	/* A whole frame: bytes [off, off + len) of buf, 64-byte aligned at
	 * off; h is its header as tw_frame_hdr_decode accepted it against
	 * t->limits (h->total_len == len), valid during the call only. The
	 * layer above reads h instead of the bytes: a header is decoded and
	 * checked once, by the transport that received it. The callee takes
	 * its own reference on buf to keep it past the call. */
	void (*on_frame)(void *ctx, tw_conn *c, const tw_frame_hdr *h,
			 tw_buf *buf, size_t off, size_t len);
	/* c connected or was accepted (st == TW_OK), or closed (st says
	 * why); after a close upcall c is gone and pending sends have had
	 * their done(st). */
	void (*on_conn)(void *ctx, tw_conn *c, tw_status st);
	/* Optional (NULL = refuse by closing, as before). A header decoded
	 * intact but the frame is refused; h is the header as far as it was
	 * decoded (for TW_EVERSION the fields of every version: version,
	 * type, flags, req_id, src), valid during the call only. st says
	 * why:
	 *  - TW_EVERSION: a wire version we do not speak. The connection
	 *    ends whatever this returns, with TW_EVERSION, but only after
	 *    what was queued on it (the answer docs/wire.md §3 asks for, sent
	 *    from this upcall) has left, within a short deadline
	 *    (ops->close_after_send).
	 *  - TW_EOVERFLOW: the frame is over t->limits or c->rx_max. True:
	 *    the transport skips it (its bytes are read and dropped, nothing
	 *    is reserved for them) and the connection goes on; false: the
	 *    connection ends with TW_EPROTO after what was queued has left.
	 * The layer above may send on c from here (an EXCEPTION naming the
	 * limit or both versions, to h->src / h->req_id), never answer an
	 * EXCEPTION with one, and must not close c itself. */
	bool (*on_refused)(void *ctx, tw_conn *c, const tw_frame_hdr *h,
			   tw_status st);
};

/* A datagram transport's reliability at work (ops->counters). */
struct tw_transport_counters {
	uint64_t retransmits; /* data packets sent again */
	uint64_t duplicates;  /* data packets received twice: dropped */
};

struct tw_transport_ops {
	const char *name;
	/* Listen on addr ("tcp://127.0.0.1:0"); bound gets the real address. */
	tw_status (*listen)(tw_transport *t, const char *addr, char *bound,
			    size_t bound_len);
	/* Start connecting; sends may be queued at once. */
	tw_status (*connect)(tw_transport *t, const char *addr, tw_conn **out);
	/* Queue r. TW_ENOSPC when c's queue is full (r is not taken);
	 * TW_EUNREACHABLE when c is closed. Sends queued in one iteration
	 * leave together. */
	tw_status (*send)(tw_transport *t, tw_conn *c, struct tw_send_req *r);
	/* Close c; on_conn(c, TW_ESHUTDOWN) follows. */
	void (*close)(tw_transport *t, tw_conn *c);
	/* Receive backpressure: paused, stop reading c (a stream transport
	 * stops reading the socket, so TCP flow control stops the peer; a
	 * datagram one stops granting credits). Frames already read may
	 * still be delivered, at most what the transport's own receive
	 * buffering holds. Unpaused, read again. Idempotent; sends are not
	 * affected. NULL = not supported (tw_transport_pause is a no-op). */
	void (*pause)(tw_transport *t, tw_conn *c, bool paused);
	/* Close c once every request queued on it has been sent (its done
	 * ran with TW_OK), or after a short deadline (a peer that does not
	 * read: about 1 s), whichever comes first; then as close(), but
	 * on_conn(c, st). From the call on, c is not read any more and
	 * send() refuses with TW_EUNREACHABLE. So an answer queued just
	 * before (an EXCEPTION) leaves before the connection ends. NULL =
	 * not supported (tw_transport_close_after_send closes at once). */
	void (*close_after_send)(tw_transport *t, tw_conn *c, tw_status st);
	/* Admission: the n addresses (as the peers' listen returned them:
	 * every member's, every loop's, from the authenticated rendezvous)
	 * whose connections t may accept from now on, replacing any earlier
	 * list; the transport copies what it keeps. Addresses it cannot
	 * parse admit nobody. Connections already up stay. A transport whose
	 * provider was started with g->admit_only accepts nothing before the
	 * first call; refused connects are dropped without an answer and
	 * counted. NULL = not supported (tw_transport_admit is a no-op: the
	 * transport's own authentication, above it, decides). */
	tw_status (*admit)(tw_transport *t, const char *const *addrs,
			   uint32_t n);
	/* The layer above learned where c's peer runs: on this host's kernel
	 * (local: another network namespace or container counts, whatever
	 * its address) or elsewhere. The transport gives c the same-host
	 * treatment it gives loopback (a stream transport: its congestion
	 * control, no zero-copy attempts). From connect's return or
	 * on_conn(c, TW_OK) on. NULL = nothing differs (tw_transport_set_local
	 * is a no-op). */
	void (*set_local)(tw_transport *t, tw_conn *c, bool local);
	/* Free everything (connections closed first). */
	void (*destroy)(tw_transport *t);
	/* The layer above proved who c's peer is (its handshake passed):
	 * a transport that keeps a path from strangers may open it now
	 * (shm: the shared rings, set up over the socket the connection
	 * started on, frames keeping their order across the switch). At
	 * most once per connection, from on_conn(c, TW_OK) or connect's
	 * return on. Nothing else changes: the contract holds before and
	 * after. NULL = nothing to open (tw_transport_trusted is a
	 * no-op). */
	void (*trusted)(tw_transport *t, tw_conn *c);
	/* Add what t's own reliability did to c (statistics: any thread,
	 * relaxed reads of counters t's loop writes). NULL = nothing to add
	 * (a stream transport: the kernel retransmits). */
	void (*counters)(const tw_transport *t,
			 struct tw_transport_counters *c);
};

/* Fault injection, as torch's faulty agent: costs one branch when off. */
struct tw_fault_opts {
	uint32_t fail_type; /* message type whose first fail_count sends fail */
	uint32_t fail_count;
	uint32_t drop_type;  /* message type silently dropped (0 = none) */
	uint32_t delay_type; /* message type delayed by delay_ns (0 = none) */
	uint64_t delay_ns;
	/* fault.c's state (zero them with the rest) */
	uint32_t failed_;  /* sends of fail_type failed so far */
	uint32_t delayed_; /* delayed sends not yet handed on */
	LIST_HEAD(, fault_delay)
	held_; /* those sends (fault.c's; all-zero
		* is an empty LIST) */
};

struct tw_transport {
	const struct tw_transport_ops *ops;
	tw_loop *loop;
	struct tw_transport_cbs cbs;
	tw_frame_limits limits;
	struct tw_fault_opts *fault; /* NULL when off */
	/* While on_frame runs: when the frame reached this host, on the
	 * loop's clock; 0 = not known (the receiver takes the loop's now).
	 * A transport that learns it (the fake net, a NIC timestamp) lets
	 * the receiver count a frame's wait before it was handed up into
	 * the caller's budget. */
	uint64_t rx_ns;
};

/*
 * ---- Providers: what a new transport implements ----
 *
 * The agent knows transports only by name. A provider is the transport's
 * constructor kit, and everything transport-specific the agent used to do
 * is one of its five functions:
 *
 *   check        Validate the transport's options (its public options
 *                struct, e.g. struct tw_uring_opts, or NULL for the
 *                defaults) for nloops loops, without side effects: an
 *                error here fails tw_agent_init before anything starts,
 *                with the reason recorded by tw_fail (err.h).
 *   start        Bring up what the agent's loops share (DPDK: the EAL and
 *                one port with a queue pair per loop) and copy what it
 *                needs from the options: the caller's struct and its
 *                strings are not kept. Runs on the agent's init thread,
 *                before any loop exists. *env is the provider's state for
 *                the calls below.
 *   create       Make loop idx's transport, on that loop's thread, with the
 *                agent's upcalls. idx < nloops.
 *                A provider given g->secret or g->admit_only hands them
 *                to each transport it creates (ops->admit).
 *   listen_addr  The address loop idx's transport listens on (passed to
 *                ops->listen, whose bound address the other workers learn
 *                at the rendezvous): "tcp://127.0.0.1:0", "udp://10.0.0.2:0".
 *   stop         After every transport of env is destroyed: free env.
 *                Received buffers still held elsewhere may keep memory the
 *                provider then leaks rather than frees under them.
 *
 * Contract of the transport itself (ops above, upcalls in
 * tw_transport_cbs), which the conformance suite
 * (tests/unit/dataplane/test_transport_conformance.c) checks for every
 * provider in its list:
 *  - Frames arrive whole, in the order they were sent on a connection,
 *    each at a 64-byte aligned offset of a tw_buf the receiver may
 *    retain, with its header decoded and checked against t->limits; a bad
 *    header ends the connection (TW_EPROTO, TW_EVERSION), never reaches
 *    on_frame. Frames of 48 bytes (a bare header) up to the limit. An
 *    intact header of another version or over the limits goes to
 *    on_refused (when set): an answer sent from it leaves before the
 *    connection ends, and a skipped frame leaves the stream in sync.
 *  - pause(c, true) stops reading c: the sender runs into TW_ENOSPC
 *    without loss; pause(c, false) delivers the rest in order.
 *  - send() never blocks and never calls done itself; done runs exactly
 *    once per accepted request, on the loop thread. TW_ENOSPC when the
 *    connection's queue is full (the request is not taken): backpressure.
 *  - close() and a peer's death end every request not done yet with
 *    done(error) before on_conn(c, error); on_conn never runs inside
 *    close(). destroy() ends everything the same way.
 *  - Nothing blocks the loop: connecting, sending and receiving progress
 *    from the loop's polls, completions and timers.
 *
 * A new transport (the same-host one, say) is: its code in dataplane/,
 * its public options header in include/tensorwire/, a provider registered
 * in dataplane/transport.c's list, and its entry in the conformance
 * suite. Nothing in rpc/ changes.
 */

/* The group an agent's transport serves, for start. */
struct tw_transport_group {
	uint32_t nloops; /* run loops, one transport each */
	uint32_t rank;   /* this worker (DPDK derives its default IP) */
	uint32_t world_size;
	/* The group's shared secret (secret_len bytes; 0 = none), for a
	 * transport that proves membership in its own setup (DPDK: a mac in
	 * CONNECT and ACCEPT). Valid during start only: a provider copies
	 * it, and wipes its copy when it stops. */
	const void *secret;
	size_t secret_len;
	/* The agent calls ops->admit once the members are known: accept no
	 * connection before (ops->admit). */
	bool admit_only;
};

struct tw_transport_provider {
	const char *name; /* "uring", "dpdk", ... (tw_agent_opts.transport) */
	tw_status (*check)(const void *opts, uint32_t nloops);
	tw_status (*start)(const void *opts, const struct tw_transport_group *g,
			   void **env);
	tw_status (*create)(void *env, uint32_t idx, tw_loop *loop,
			    const struct tw_transport_cbs *cbs,
			    tw_transport **out);
	tw_status (*listen_addr)(void *env, uint32_t idx, char *url,
				 size_t len);
	/* The address loop idx announces to the group, given the one its
	 * transport's listen bound: where the options name another (a NAT's
	 * outside). NULL = bound itself. */
	tw_status (*public_addr)(void *env, uint32_t idx, const char *bound,
				 char *out, size_t len);
	void (*stop)(void *env);
	/* A thread other than the loop's may run the loop's iterations while
	 * it holds it (tw_loop_borrow_until), touching the loop's io_uring
	 * only through tw_loop_sqe: the transport keeps no thread identity
	 * (an EAL lcore, a per-thread cache) that another thread would break.
	 * The agent lends its loops only over such a transport. */
	bool lendable;
};

/* Every public options struct starts with these two fields; a provider
 * checks transport against its name before it reads further. */
struct tw_transport_opts_head {
	size_t opts_size;
	const char *transport;
};

/* The provider called name, or NULL: the built-in ones (uring, dpdk) and
 * any registered. */
const struct tw_transport_provider *
tw_transport_provider_find(const char *name);

/* Make p findable by its name, for the process's life (tests register the
 * fake net's). TW_EBUSY when another provider has the name (registering
 * the same p again is TW_OK), TW_ENOSPC beyond 8 registrations. */
tw_status tw_transport_provider_register(const struct tw_transport_provider *p);

/* A provider's check of its options' head: NULL is the defaults; else
 * the size must cover the head and the tag must be name. */
tw_status tw_transport_opts_check_head(const void *opts, const char *name,
				       const char *init_fn);

/* Send through the fault injector when one is configured (dataplane/fault.c). */
tw_status tw_fault_send(tw_transport *t, tw_conn *c, struct tw_send_req *r);

/* A transport calls this when c closes, before it frees c: sends the fault
 * injector still holds for c end with done(st) instead of reaching a freed
 * connection later. A no-op when fault injection is off. */
void tw_fault_conn_closed(tw_transport *t, tw_conn *c, tw_status st);

/* Whether a header that passed t->limits also fits c's own limit
 * (tw_conn.rx_max): every transport checks both before it reserves
 * anything for the frame. */
static inline bool tw_conn_frame_fits(const tw_conn *c, const tw_frame_hdr *h)
{
	return c->rx_max == 0 || h->total_len <= c->rx_max;
}

/* Fill c->peer_host and c->peer from an IPv4 address and port, both in
 * network byte order (transport.c). */
void tw_conn_set_peer_ip4(tw_conn *c, uint32_t addr, uint16_t port);

/* The same from a socket address: AF_INET, or AF_INET6 (a v4-mapped one
 * as its IPv4 address); other families leave c unchanged. */
struct sockaddr;
void tw_conn_set_peer_sa(tw_conn *c, const struct sockaddr *sa);

static inline void tw_transport_set_local(tw_transport *t, tw_conn *c,
					  bool local)
{
	if (t->ops->set_local != NULL)
		t->ops->set_local(t, c, local);
}

static inline void tw_transport_counters(const tw_transport *t,
					 struct tw_transport_counters *c)
{
	if (t->ops->counters != NULL)
		t->ops->counters(t, c);
}

static inline void tw_transport_trusted(tw_transport *t, tw_conn *c)
{
	if (t->ops->trusted != NULL)
		t->ops->trusted(t, c);
}

static inline void tw_transport_pause(tw_transport *t, tw_conn *c, bool paused)
{
	if (t->ops->pause != NULL)
		t->ops->pause(t, c, paused);
}

static inline void tw_transport_close_after_send(tw_transport *t, tw_conn *c,
						 tw_status st)
{
	if (t->ops->close_after_send != NULL)
		t->ops->close_after_send(t, c, st);
	else
		t->ops->close(t, c);
}

/* Admit addrs (ops->admit); TW_OK and nothing else where the transport
 * has no admission. */
static inline tw_status tw_transport_admit(tw_transport *t,
					   const char *const *addrs, uint32_t n)
{
	if (t->ops->admit == NULL)
		return TW_OK;
	return t->ops->admit(t, addrs, n);
}

/* How long close_after_send waits for a peer to take what is queued. */
#define TW_CLOSE_AFTER_SEND_NS (1000ull * 1000 * 1000)

static inline tw_status tw_transport_send(tw_transport *t, tw_conn *c,
					  struct tw_send_req *r)
{
	if (__builtin_expect(t->fault != NULL, 0))
		return tw_fault_send(t, c, r);
	return t->ops->send(t, c, r);
}

#ifdef __cplusplus
}
#endif
#endif
