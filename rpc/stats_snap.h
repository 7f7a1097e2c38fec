/* Internal: the stats snapshot's layout, shared by its taking
 * (stats_snap.c) and its rendering (stats_fmt.c). */
#ifndef TW_RPC_STATS_SNAP_H
#define TW_RPC_STATS_SNAP_H

#include <tensorwire/stats.h>

#include "rpc/stats.h"

/* A function or a peer: both directions' histograms. */
struct stats_entry {
	int64_t id; /* slot or rank; -1: "other" */
	char name[STATS_NAME_MAX];
	struct tw_hist h[2]; /* [enum tw_stats_dir] */
};

struct tw_stats {
	struct tw_stats_counters c;
	char worker[TW_WORKER_NAME_MAX];
	uint32_t rank;
	uint64_t time_ns;
	struct tw_hist total[2];
	uint32_t nfn, npeer;
	struct stats_entry *fn, *peer;
};

#endif
