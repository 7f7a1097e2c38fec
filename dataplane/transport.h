/* Transport interface: the one seam between the RPC layer and whatever moves
 * frames (io_uring TCP, DPDK, the in-process fake). A transport belongs to
 * one run loop and is used only on that loop's thread. */
#ifndef TW_DATAPLANE_TRANSPORT_H
#define TW_DATAPLANE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <tensorwire/buf.h>
#include <tensorwire/frame.h>
#include <tensorwire/status.h>

#include "dataplane/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_transport tw_transport;

/* A connection (TCP) or session (DPDK). Transports embed this as the first
 * member of their own connection object. */
typedef struct tw_conn {
	tw_transport *t;
	void *ctx;        /* the RPC layer's (peer id, ...) */
	uint64_t id;      /* unique per transport, for logs */
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
	uint32_t type;            /* frame's message type (fault injection) */
	uint64_t len;
	void (*done)(struct tw_send_req *r, tw_status st);
	/* transport's */
	struct tw_send_req *next_;
	uint64_t sent_;
	uint32_t iov_idx_;
	uint32_t flags_;
};

/* Upcalls, run on the loop thread. */
struct tw_transport_cbs {
	void *ctx;
	/* A whole frame: bytes [off, off + len) of buf, 64-byte aligned at
	 * off, header already checked with tw_frame_hdr_decode. The callee
	 * takes its own reference on buf to keep it past the call. */
	void (*on_frame)(void *ctx, tw_conn *c, tw_buf *buf, size_t off,
			 size_t len);
	/* c connected or was accepted (st == TW_OK), or closed (st says
	 * why); after a close upcall c is gone and pending sends have had
	 * their done(st). */
	void (*on_conn)(void *ctx, tw_conn *c, tw_status st);
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
	/* Free everything (connections closed first). */
	void (*destroy)(tw_transport *t);
};

/* Fault injection, as torch's faulty agent: costs one branch when off. */
struct tw_fault_opts {
	uint32_t fail_type;      /* message type whose first fail_count sends fail */
	uint32_t fail_count;
	uint32_t drop_type;      /* message type silently dropped (0 = none) */
	uint32_t delay_type;     /* message type delayed by delay_ns (0 = none) */
	uint64_t delay_ns;
	/* fault.c's state (zero them with the rest) */
	uint32_t failed_;        /* sends of fail_type failed so far */
	uint32_t delayed_;       /* delayed sends not yet handed on */
	void *held_;             /* list of those sends (fault.c's) */
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

/* Send through the fault injector when one is configured (dataplane/fault.c). */
tw_status tw_fault_send(tw_transport *t, tw_conn *c, struct tw_send_req *r);

/* A transport calls this when c closes, before it frees c: sends the fault
 * injector still holds for c end with done(st) instead of reaching a freed
 * connection later. A no-op when fault injection is off. */
void tw_fault_conn_closed(tw_transport *t, tw_conn *c, tw_status st);

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
