/* perf_fns: the functions a benchmark's server serves (perf/bench-rpc's
 * bench::noop and bench::echo, tw-perf's perf::noop, perf::echo and
 * perf::fail), in the shape of tw_agent_register's handlers. */
#ifndef TW_TOOLS_PERF_FNS_H
#define TW_TOOLS_PERF_FNS_H

#include <tensorwire/tensorwire.h>

/* () -> None */
tw_status pf_noop(tw_call_ctx *ctx, const tw_value *args,
		  const tw_value *kwargs, tw_value *result, void *arg);

/* (x) -> x: the clone shares the tensor's bytes, so the answer goes out
 * of the receive buffer the call arrived in. TW_EBADARGS without x. */
tw_status pf_echo(tw_call_ctx *ctx, const tw_value *args,
		  const tw_value *kwargs, tw_value *result, void *arg);

/* (...) -> a ValueError, always: failures to count. */
tw_status pf_fail(tw_call_ctx *ctx, const tw_value *args,
		  const tw_value *kwargs, tw_value *result, void *arg);

#endif
