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

/* Agent init (a->o known) and teardown (loops stopped). */
tw_status rref_ctx_init(tw_agent *a);
/* Register TW_RREF_CALL_FN in a's registry (agent init). */
tw_status rref_register(tw_agent *a);
void rref_ctx_fini(tw_agent *a);

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

#endif
