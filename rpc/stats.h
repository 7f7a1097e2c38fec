/* Internal: the agent's histograms (issue 16) — function names to slots,
 * agent-wide, and each run loop's histograms by function and by peer,
 * for the caller's round trips and the callee's serve times. The loops'
 * counters are struct loop_stats (agent_impl.h); the snapshot that sums
 * both is rpc/stats_snap.c (<tensorwire/stats.h>). */
#ifndef TW_RPC_STATS_H
#define TW_RPC_STATS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/hist.h>
#include <tensorwire/status.h>

/* Names this long or longer are recorded under "other". */
#define STATS_NAME_MAX 128u
/* No function: an RRef request, recorded by peer only. */
#define STATS_NO_FN UINT32_MAX

struct stats_fn_name {
	uint32_t hash; /* registry_hash */
	uint32_t len;
	char name[STATS_NAME_MAX];
};

/*
 * Function names to histogram slots, shared by the loops: a fixed table
 * sized at init (tw_agent_opts.stats_functions names), never grown. A
 * lookup is lock-free (one acquire load per probe); a new name takes the
 * mutex and the next slot, published with a release store. Once every
 * slot is taken (or for a name of STATS_NAME_MAX bytes or more) the slot
 * is max, "other", without the mutex. Names come from this worker's
 * callers and from its registry (a served call's function is found
 * there first), never from what a peer sends: a peer calling many names
 * makes nothing grow.
 */
struct stats_fns {
	uint32_t max;            /* names tracked; slot max is "other" */
	uint32_t mask;           /* index slots - 1 */
	_Atomic uint32_t *index; /* slot + 1 by hash, 0 = empty */
	struct stats_fn_name *names;
	_Atomic uint32_t n;
	_Atomic bool full;
	pthread_mutex_t mu;
};

tw_status stats_fns_init(struct stats_fns *f, uint32_t max);
void stats_fns_fini(struct stats_fns *f);
/* name's slot (< max), or max ("other"). Any thread. hash is
 * registry_hash(name, len). */
uint32_t stats_fn_slot(struct stats_fns *f, const char *name, size_t len,
		       uint32_t hash);
/* The name of slot i (< n, acquire-loaded), NUL-terminated. */
const char *stats_fn_name(const struct stats_fns *f, uint32_t i);

/* A loop's histograms. Its thread records; any thread reads
 * (tw_hist_add). Function slots 0 .. nfns ("other" last), peers 0 ..
 * npeers (ranks from npeers up: the last, "other"). */
struct stats_loop {
	uint32_t nfns, npeers;
	struct tw_hist *fn_rtt, *fn_srv;
	struct tw_hist *peer_rtt, *peer_srv;
};

tw_status stats_loop_init(struct stats_loop *s, uint32_t nfns, uint32_t npeers);
void stats_loop_fini(struct stats_loop *s);

static inline uint32_t stats_peer_slot(const struct stats_loop *s,
				       uint32_t rank)
{
	return rank < s->npeers ? rank : s->npeers;
}

/* A round trip of a call to fslot (STATS_NO_FN: none) at peer rank. */
static inline void stats_rtt(struct stats_loop *s, uint32_t fslot,
			     uint32_t rank, uint64_t ns)
{
	if (fslot != STATS_NO_FN)
		tw_hist_record(&s->fn_rtt[fslot], ns);
	tw_hist_record(&s->peer_rtt[stats_peer_slot(s, rank)], ns);
}

/* A served call's time from its arrival to its answer's hand-off. */
static inline void stats_srv(struct stats_loop *s, uint32_t fslot,
			     uint32_t rank, uint64_t ns)
{
	if (fslot != STATS_NO_FN)
		tw_hist_record(&s->fn_srv[fslot], ns);
	tw_hist_record(&s->peer_srv[stats_peer_slot(s, rank)], ns);
}

#endif
