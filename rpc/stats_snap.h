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

/* Every counter by name, in one order: the JSON and text renderings
 * (stats_fmt.c) and DPDK telemetry (stats_telemetry.c) share the list. */
struct stats_counter {
	const char *name;
	uint64_t v;
};
#define STATS_MAX_COUNTERS 64
/* c's counters into o (STATS_MAX_COUNTERS entries); returns how many. */
size_t stats_counter_list(const struct tw_stats_counters *c,
			  struct stats_counter *o);

/* The quantiles every rendering reports, and their names. */
#define STATS_NQ 5
extern const double stats_qs[STATS_NQ];
extern const char *const stats_qnames[STATS_NQ];

#endif
