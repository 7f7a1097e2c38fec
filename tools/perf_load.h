/* perf_load: tw-perf's load on one peer: calls issued closed loop (a
 * fixed number in flight) or open loop (at a target rate, each latency
 * measured from the call's scheduled time), their latencies in a
 * log-linear histogram, their ends counted by kind, and the reports
 * (text, CSV rows). */
#ifndef TW_TOOLS_PERF_LOAD_H
#define TW_TOOLS_PERF_LOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <tensorwire/tensorwire.h>

/* The most calls tw-perf keeps in flight. */
#define PL_MAX_INFLIGHT 4096

struct pl_conf {
	uint32_t peer;        /* the worker called (its rank) */
	const char *fn;       /* the function called */
	const tw_value *args; /* its arguments (borrowed; NULL = none) */
	const char *fail_fn;  /* every fail_every-th call calls this instead
			      * (0: never) */
	uint32_t fail_every;
	uint32_t inflight;  /* at most this many calls in flight, 1 ..
			     * PL_MAX_INFLIGHT */
	double rate;        /* open loop: calls/s scheduled; 0 = closed loop */
	uint64_t count;     /* calls to make (0: until duration_s) */
	double duration_s;  /* when count is 0 */
	int64_t timeout_ms; /* each call's deadline (-1: the agent's) */
	double interval_s;  /* a per-interval row every this many s (0: none) */
};

/* What one run measured. */
struct pl_result {
	uint64_t calls;  /* made: ok + the errors */
	uint64_t ok;     /* completed with a result */
	uint64_t errors; /* failed, by kind below */
	uint64_t by_kind[TW_STATUS_COUNT_];
	uint64_t injected;   /* calls made to fail_fn */
	double secs;         /* from the first call's scheduled time to the
			    * last completion */
	uint64_t max_lag_ns; /* open loop: the latest a call left after its
			      * scheduled time */
	struct tw_hist lat;  /* ns, every call that completed (ok or not;
			      * immediate refusals are not timed) */
	/* The library's own count over the run (tw_stats: calls_ok and the
	 * sum of calls_failed), for a cross-check. */
	uint64_t lib_ok, lib_failed;
};

/* Per-interval rows go to ivf (NULL: none), labelled. */
struct pl_out {
	FILE *ivf;
	const char *label;
};

/*
 * Run c's load on embedded agent a (its owner thread: this one), after
 * warmup calls closed loop, off the record. The working memory is taken
 * before the first call: none on the way. TW_ENOMEM, TW_EINVAL for a bad
 * conf, or the failure that stopped the run (the agent's shutdown);
 * failures of single calls are counted, not returned.
 */
tw_status pl_run(tw_agent *a, const struct pl_conf *c, uint64_t warmup,
		 const struct pl_out *out, struct pl_result *r);

/* The run in words: latency percentiles, throughput, errors by kind. */
void pl_print(FILE *f, const struct pl_conf *c, const struct pl_result *r);

/* CSV: the header, and r's row (label and the run's description first).
 * describe: transport, payload bytes. */
void pl_csv_header(FILE *f);
void pl_csv_row(FILE *f, const char *label, const char *transport,
		uint64_t payload, const struct pl_conf *c,
		const struct pl_result *r);
void pl_interval_header(FILE *f);
/* The histogram's non-empty buckets: label,low_ns,high_ns,count. */
void pl_hist_header(FILE *f);
void pl_hist_rows(FILE *f, const char *label, const struct tw_hist *h);

#endif
