/* tensorwire statistics: a snapshot of an agent's counters and latency
 * histograms, summed over its run loops, and its JSON and text forms
 * (what tools/tw-stat prints). */
#ifndef TENSORWIRE_STATS_H
#define TENSORWIRE_STATS_H

#include <stdint.h>

#include <tensorwire/agent.h>
#include <tensorwire/hist.h>
#include <tensorwire/rref.h>
#include <tensorwire/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Where the figures come from. Each run loop counts what it does in
 * counters of its own (cache-line aligned, written by its thread alone
 * with plain relaxed stores: no lock, no atomic read-modify-write) and
 * records latencies into histograms of its own (<tensorwire/hist.h>);
 * a snapshot reads them all with relaxed loads and sums them, while the
 * loops run on. Figures are consistent each on its own, not with one
 * another (a call may be in calls_ok and not yet in a histogram).
 *
 * Latencies, in nanoseconds on the loops' clock (CLOCK_MONOTONIC):
 *   TW_STATS_RTT    caller side: from tw_rpc_async to the answer's
 *                   arrival on the loop, for calls answered (a result or
 *                   a remote error; not timeouts nor failures of the
 *                   connection), calls to self included;
 *   TW_STATS_SERVE  callee side: from the call's frame reaching this
 *                   worker (its transport's receive time, else the
 *                   loop's iteration) to its answer's hand-off to the
 *                   transport: decoding, queueing (executor, deferred
 *                   futures) and the handler.
 * per function (tw_agent_opts.stats_functions names, then "other") and
 * per peer (ranks below stats_peers, then "other"). The round trips of
 * RRef requests (remote, to_here, deletes) count by peer only, and their
 * serving is not timed; calls to unknown functions are timed by peer
 * only (their names are the caller's, and nothing here keeps them).
 */
enum tw_stats_dir {
	TW_STATS_RTT = 0,
	TW_STATS_SERVE = 1,
};

struct tw_stats_counters {
	struct tw_agent_stats agent; /* tw_agent_get_stats */
	struct tw_rref_stats rref;   /* tw_agent_rref_stats */
	/* Calls this worker made, by how they ended: a result, or a failure
	 * by kind (indexed by tw_status; [TW_OK] is 0), a remote error by
	 * its kind, a deadline as TW_ETIMEDOUT. */
	uint64_t calls_ok;
	uint64_t calls_failed[TW_STATUS_COUNT_];
	/* Calls this worker answered, by the answer: a result, or an error
	 * by kind (TW_ENOFUNC for unknown functions, ...). */
	uint64_t served_ok;
	uint64_t served_failed[TW_STATUS_COUNT_];
	/* Frames (headers and all) received from and handed to transports. */
	uint64_t frames_in, bytes_in, frames_out, bytes_out;
	/* Gauges now, and high-water marks since init. */
	uint64_t conns_open;      /* connections, all loops */
	uint64_t pending;         /* calls waiting for their answer */
	uint64_t pending_hwm;     /* most on one loop at once */
	uint64_t tx_inflight;     /* frames a transport holds, unsent */
	uint64_t tx_inflight_hwm; /* most on one loop at once */
	uint64_t backlog_conns;   /* connections whose frames wait for room
				    * in their transport's queue */
	uint64_t exec_queued;     /* blocking calls waiting for an
				    * executor thread */
	uint64_t txpool_in_use;   /* send buffers of the agent's pool */
	uint64_t txpool_size;
	/* The DPDK transport's reliability (0 over io_uring, where the
	 * kernel's TCP does it): data packets sent again, and received
	 * twice and dropped. */
	uint64_t retransmits, duplicates;
	/* Recorded under "other" (both directions): the function table was
	 * full, or the name was 128 bytes or longer. */
	uint64_t untracked_fn_calls;
};

typedef struct tw_stats tw_stats;

/*
 * Take a snapshot of a's figures. Any thread, at any time after
 * tw_agent_init returned and before tw_agent_shutdown; it never stops or
 * waits for a run loop. TW_EINVAL for NULL arguments, TW_ENOMEM. Free it
 * with tw_stats_free.
 */
tw_status tw_stats_take(const tw_agent *a, tw_stats **out);
void tw_stats_free(tw_stats *s);

const struct tw_stats_counters *tw_stats_counters(const tw_stats *s);
/* This worker's name and rank; the snapshot's time (CLOCK_REALTIME ns). */
const char *tw_stats_worker(const tw_stats *s);
uint32_t tw_stats_rank(const tw_stats *s);
uint64_t tw_stats_time_ns(const tw_stats *s);

/* Every call, all functions and peers together. */
const struct tw_hist *tw_stats_total(const tw_stats *s, enum tw_stats_dir d);

/* Functions with anything recorded, i < tw_stats_nfunctions: name
 * ("other" for the shared entry, which comes last) and histograms. NULL
 * for i out of range. */
uint32_t tw_stats_nfunctions(const tw_stats *s);
const char *tw_stats_function(const tw_stats *s, uint32_t i);
const struct tw_hist *tw_stats_function_hist(const tw_stats *s, uint32_t i,
					     enum tw_stats_dir d);

/* Peers with anything recorded: worker id (-1 for "other", last), name
 * and histograms. */
uint32_t tw_stats_npeers(const tw_stats *s);
int64_t tw_stats_peer_id(const tw_stats *s, uint32_t i);
const char *tw_stats_peer_name(const tw_stats *s, uint32_t i);
const struct tw_hist *tw_stats_peer_hist(const tw_stats *s, uint32_t i,
					 enum tw_stats_dir d);

/*
 * The snapshot as JSON (one object, docs: README "Stats") or as text
 * for people, NUL-terminated in a malloc'd buffer the caller frees.
 * Histograms appear as {"count", "mean", "min", "p50", "p90", "p99",
 * "p999", "p9999", "max", "saturated"} in ns. TW_EINVAL, TW_ENOMEM.
 */
tw_status tw_stats_json(const tw_stats *s, char **out);
tw_status tw_stats_text(const tw_stats *s, char **out);

#ifdef __cplusplus
}
#endif
#endif
