/* Internal: a worker's statistics as DPDK telemetry commands (issue 16),
 * for workers on the DPDK transport, so DPDK's own dpdk-telemetry.py
 * (and anything speaking its socket protocol) shows them:
 *
 *   /tensorwire/workers              the workers of this process
 *   /tensorwire/stats[,WORKER]       every counter (tw-stat's names)
 *   /tensorwire/hist[,WORKER]        latency histograms: in total and per
 *                                    function
 *   /tensorwire/hist_peers[,WORKER]  latency histograms per peer
 *
 * WORKER is a worker's name; none, the first this process started. A
 * histogram is an array of STATS_TEL_FIELDS numbers in nanoseconds (their
 * names under the key "fields"), under "rtt" / "serve" for the totals and
 * "rtt/NAME" / "serve/NAME" for a function or peer NAME, its characters
 * outside DPDK's key alphabet (letters, digits, '_' and '/') as '_'. An
 * answer holds at most STATS_TEL_MAX_HISTS histograms (the busiest are
 * not chosen: the first in snapshot order), and says how many it left
 * out under "omitted", so it stays within DPDK's 16 KiB reply.
 *
 * The commands are registered once per process (DPDK cannot take them
 * back) and answer from a list of the running agents, under a mutex an
 * agent's teardown takes to leave the list: an answer never reads a
 * freed agent. Without DPDK both calls do nothing.
 */
#ifndef TW_RPC_STATS_TELEMETRY_H
#define TW_RPC_STATS_TELEMETRY_H

#include <tensorwire/agent.h>

#define STATS_TEL_MAX_AGENTS 64
#define STATS_TEL_MAX_HISTS 64
#define STATS_TEL_FIELDS 9 /* count mean min p50 p90 p99 p999 p9999 max */

/* List a (a worker on the DPDK transport); registers the commands the
 * first time. Beyond STATS_TEL_MAX_AGENTS workers in one process, the
 * later ones are not listed (logged once). */
void stats_telemetry_add(const tw_agent *a);
/* Take a off the list (not listed: nothing); returns once no answer is
 * reading it. */
void stats_telemetry_remove(const tw_agent *a);

#endif
