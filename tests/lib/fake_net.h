/* In-process fake transport: transports on loops of one process connected
 * through a tw_fake_net that the test steers (hold, deliver, reorder,
 * drop, duplicate, break), so protocol tests run deterministically on a
 * fake clock without sockets or sleeps. A test facility. */
#ifndef TW_TESTS_FAKE_NET_H
#define TW_TESTS_FAKE_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * How it moves frames:
 *
 * Addresses are "fake://<n>" (n decimal, at most 10^9). A transport
 * listens on at most one; connect() to an address nobody listens on, to
 * or from a node set down, returns TW_EUNREACHABLE at once. connect() gives the
 * caller its end and the listener an accepted end; each learns of it with
 * on_conn(c, TW_OK) on its loop's next poll, before any frame on it. A
 * node is a host: each end's peer_host is the other end's node (0 when it
 * does not listen; tw_fake_net_set_host puts nodes on one host), peer its
 * address.
 *
 * send() copies the frame (r->iov, r->len bytes) into one buffer inside
 * the net and returns; r->done(r, TW_OK) runs on the sending loop's next
 * poll (the bytes left, as a kernel's copy), never inside send(). A frame
 * lost on the way (drop rule, broken connection) still completes its send
 * with TW_OK, as on a real wire, unless the connection closed before that
 * poll: then done gets the close status. A connection holds at most 4096
 * sends not yet done (TW_ENOSPC beyond, r not taken).
 *
 * Receiving: every frame waits in the net's one queue (in send order)
 * until it is deliverable, then the receiving loop's poller hands it up in
 * queue order: header checked with tw_frame_hdr_decode against the
 * receiver's limits, total_len == the frame's length, frame at a 64-byte
 * aligned offset (64) of a buffer of its own. A bad frame is refused as
 * uring.c and dpdk.c refuse one: counted (stats.refused) and its
 * connection closed, the receiver's end with TW_EPROTO (TW_EVERSION for a
 * newer version), the sender's with TW_EUNREACHABLE; when the header is
 * intact (another version, or over the limits) on_refused decides first
 * (transport.h), and close_after_send closes on the next poll with the
 * answer sent. A paused end (pause) is delivered nothing, and its peer's
 * sends are not done meanwhile, so the peer runs into TW_ENOSPC as it
 * would over TCP. While on_frame runs,
 * t->rx_ns holds the time the frame entered the net (the sending loop's
 * clock: the loops of one net share a clock), so a frame the test held is
 * one that reached its host at once and waited there, unprocessed.
 *
 * A frame is deliverable when the test released it (tw_fake_net_deliver),
 * or when auto delivery is on (the default) and its direction is not
 * held: then ordinary code works unchanged, each frame arriving on the
 * receiver's next poll.
 *
 * Closing: close() ends the caller's end with TW_ESHUTDOWN (done for its
 * sends, then on_conn, on the next poll); frames it sent before stay in
 * the net and the peer's end closes with TW_EUNREACHABLE once they are
 * delivered, as a FIN after data. Breaking (tw_fake_net_break, a node set
 * down, a refused frame) discards the frames in flight both ways and ends
 * both ends with TW_EUNREACHABLE (the refusing end with its status).
 * destroy() ends every open connection with TW_ESHUTDOWN, done for every
 * send and on_conn for each, from inside destroy (as uring.c), and may be
 * called anywhere on the loop thread.
 *
 * Threads: a net and every transport on it are used by one thread (the
 * one driving all their loops, which is what makes a test deterministic).
 *
 * Directions: the functions below take from/to addresses of listening
 * transports ("fake://1"); NULL matches any. A frame's direction is the
 * sender's node and the receiver's, whichever end connected.
 */

typedef struct tw_fake_net tw_fake_net;

tw_status tw_fake_net_create(tw_fake_net **out);

/* Free the net and the frames still in it. Every transport must have been
 * destroyed (TW_EBUSY otherwise, nothing freed). NULL is accepted. */
tw_status tw_fake_net_destroy(tw_fake_net *n);

/* A transport on loop l (loop thread). */
tw_status tw_fake_transport_create(tw_fake_net *n, tw_loop *l,
				   const struct tw_transport_cbs *cbs,
				   tw_transport **out);

/* Auto delivery on (default) or off: off, frames move only when released. */
void tw_fake_net_set_auto(tw_fake_net *n, bool on);

/* Hold (on) or stop holding every frame from -> to, sent or to be sent;
 * released frames still move. Holds are kept per (from, to) pair, up to
 * 16: TW_ENOSPC beyond. */
tw_status tw_fake_net_hold(tw_fake_net *n, const char *from, const char *to,
			   bool on);

/* Frames from -> to in the net, not yet handed up. */
size_t tw_fake_net_queued(const tw_fake_net *n, const char *from,
			  const char *to);

/* Release the first max queued frames from -> to (SIZE_MAX = all), in
 * queue order: the receivers hand them up on their next polls, held or
 * not. Returns how many. */
size_t tw_fake_net_deliver(tw_fake_net *n, const char *from, const char *to,
			   size_t max);

/* Reorder the first count queued frames from -> to: the frame at position
 * perm[i] moves to position i (a permutation of 0..count-1, else
 * TW_EINVAL; fewer than count queued: TW_ENOENT). Frames of other
 * directions keep their places. */
tw_status tw_fake_net_reorder(tw_fake_net *n, const char *from, const char *to,
			      const size_t *perm, size_t count);

/* Reverse every queued frame from -> to; returns how many. */
size_t tw_fake_net_reverse(tw_fake_net *n, const char *from, const char *to);

/* One-shot rules on the next frame of message type `type` (0 = any) sent
 * from -> to: lose it, or deliver it twice (the copy right after it). Up
 * to 16 armed: TW_ENOSPC beyond. */
tw_status tw_fake_net_drop_next(tw_fake_net *n, const char *from,
				const char *to, uint8_t type);
tw_status tw_fake_net_dup_next(tw_fake_net *n, const char *from, const char *to,
			       uint8_t type);

/* Break every connection between a and b (either direction; NULL = any):
 * a peer death. Returns how many connections broke. */
size_t tw_fake_net_break(tw_fake_net *n, const char *a, const char *b);

/* Take node addr down (its connections break, connects to and from it
 * fail) or bring it back. TW_ENOENT when nobody listens there. */
tw_status tw_fake_net_set_down(tw_fake_net *n, const char *addr, bool down);

/* Put node addr on host's host: the connections it makes or accepts from
 * now on show their peers host's node as peer_host (processes sharing a
 * machine, as on loopback). TW_ENOENT when nobody listens at addr. */
tw_status tw_fake_net_set_host(tw_fake_net *n, const char *addr,
			       const char *host);

/* Put len raw bytes on the wire from -> to, behind what is queued, on the
 * oldest open connection carrying that direction, as if the sender had
 * sent them (no send request, no done). TW_ENOENT without such a
 * connection. For tests of what a receiver refuses. */
tw_status tw_fake_net_inject(tw_fake_net *n, const char *from, const char *to,
			     const void *frame, size_t len);

struct tw_fake_net_stats {
	uint64_t sent;       /* frames accepted by send() */
	uint64_t injected;   /* frames put on the wire by the test */
	uint64_t delivered;  /* frames handed up (on_frame) */
	uint64_t dropped;    /* lost: drop rules, broken connections */
	uint64_t duplicated; /* extra copies made by dup rules */
	uint64_t refused;    /* bad frames refused by a receiver */
	uint64_t conns;      /* connections made */
	uint64_t broken;     /* connections broken */
};
void tw_fake_net_get_stats(const tw_fake_net *n, struct tw_fake_net_stats *s);

#ifdef __cplusplus
}
#endif
#endif
