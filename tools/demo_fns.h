/* Functions the demo and tw-worker serve: small, one of each behaviour. */
#ifndef TW_TOOLS_DEMO_FNS_H
#define TW_TOOLS_DEMO_FNS_H

#include <tensorwire/agent.h>

/* The longest demo::slow sleeps, in ms; more (or less than 0) is a
 * TW_EVALUE. */
#define DEMO_SLOW_MAX_MS 60000

/* Registers demo::add(a, b) (ints: TW_EVALUE when the sum overflows
 * int64), demo::echo(x), demo::check_positive(x) (value error for x <= 0)
 * and demo::slow(ms) (blocking, on the executor; ms in 0 ..
 * DEMO_SLOW_MAX_MS, TW_EVALUE otherwise). */
tw_status demo_register(tw_agent *a);

/* The same, in the shape of tw_agent_opts.setup. */
tw_status demo_setup(tw_agent *a, void *arg);

#endif
