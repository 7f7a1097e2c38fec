/* Internal: the RRef protocol's per-agent tables (rref.c; docs/rref.md). */
#ifndef TW_RPC_RREF_H
#define TW_RPC_RREF_H

#include <stddef.h>

#include <tensorwire/rref.h>

#include "rpc/agent_impl.h"

/* Bounds on what peers make an owner hold (docs/limits.md). */
#define RREF_MAX_OWNED 65536u          /* owned values per agent */
#define RREF_MAX_PER_PEER 16384u       /* of them created by one peer */
#define RREF_MAX_USERS 4096u           /* user forks recorded per value */
#define RREF_MAX_FETCH_WAIT 1024u      /* fetches parked per value */
#define RREF_MAX_FETCH_WAIT_ALL 65536u /* ... over all values */
#define RREF_BUCKETS 4096u             /* owner table buckets (power of two) */
#define RREF_CTL_TIMEOUT_MS 10000      /* each try of a control message */
#define RREF_TOMBSTONES 256u           /* deletes remembered per creator */
#define RREF_MAX_FORK_WAIT                                                     \
	1024u /* fork requests parked for RRefs
					* not created yet */

/* Agent init (a->o known) and teardown (loops stopped). */
tw_status rref_ctx_init(tw_agent *a);
/* Register TW_RREF_CALL_FN in a's registry (agent init). */
tw_status rref_register(tw_agent *a);
void rref_ctx_fini(tw_agent *a);
/* tw_agent_init is done (state RUNNING): the RRef control messages made
 * while this worker was still joining (a peer passed it an RRef before
 * its init returned) leave now. */
void rref_agent_running(tw_agent *a);

/* Graceful shutdown begins (before waiting for this worker's calls): the
 * user handles still held are told to their owners now (their deletes are
 * calls the shutdown waits for; a later release sends nothing) and
 * returned as a count, the first few named in report ("(0, 5) on 'w1',
 * ..."). A user confirmed later during the shutdown is told then. */
uint64_t rref_shutdown(tw_agent *a, char *report, size_t cap);

/* Worker rank died (agent.c agent_member_dead, once per rank): drop,
 * from every value this worker owns, the user forks rank held, freeing
 * the values nothing else keeps (tw_rref_stats.dead_users_dropped counts
 * the forks). Any thread; takes the context's mutex. */
void rref_member_dead(tw_agent *a, uint32_t rank);

/* A REMOTE_CALL, RREF_FETCH_CALL, RREF_USER_DELETE, RREF_FORK_REQUEST or
 * RREF_CHILD_ACCEPT on an authenticated connection (loop thread). */
void rref_on_frame(struct agent_loop *l, struct conn_state *cs,
		   const tw_frame_hdr *h, tw_buf *buf, size_t off, size_t len);

/* A received message (CALL, REMOTE_CALL, RET, RREF_FETCH_RET from worker
 * src, decoded, m->nrref_ > 0): each RREF node in its values becomes a
 * handle of this worker (a user, or the owner's own), held by the message
 * until tw_in_msg_release, the node pointing at it; the fork protocol's
 * messages leave (FORK_REQUEST, CHILD_ACCEPT). Loop thread. */
void rref_adopt(struct agent_loop *l, uint32_t src, tw_in_msg *m);
/* A CALL, RET or RREF_FETCH_RET nobody will read (expired, late): its
 * RRefs are adopted and let go at once, so their senders' forks end (the
 * receiver's user, confirmed, is deleted again) instead of waiting for
 * an accept that would never come. Rare path: decodes the frame. */
void rref_drain(struct agent_loop *l, const tw_frame_hdr *h, tw_buf *buf,
		size_t off, size_t len);
/* The executor decodes a CALL again: take the handles from the loop's
 * message, and give them to the new decoding of the same frame. */
struct tw_msg_hold *rref_hold_take(tw_in_msg *m);
void rref_hold_give(struct agent_loop *l, tw_in_msg *m, struct tw_msg_hold *h);

/* tw_msg_encode said TW_WIRE_FORK_NEEDED: payload holds RRef handles.
 * Encode a copy in which each is forked for dst (a child of the handle,
 * or on the owner a fork recorded in flight). The forks are undone if
 * the encoding fails. TW_EINVAL with a reason for a handle that cannot
 * be passed on. */
tw_status rref_encode_forked(tw_agent *a, uint32_t dst, const tw_frame_hdr *h,
			     const tw_value *payload, tw_out_msg *out);
/* Why RREF value v cannot be sent by a, or NULL. */
const char *rref_value_problem(const tw_agent *a, const tw_value *v);

#endif
