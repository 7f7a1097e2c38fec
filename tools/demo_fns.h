/* Functions the demo and tw-worker serve: small, one of each behaviour. */
#ifndef TW_TOOLS_DEMO_FNS_H
#define TW_TOOLS_DEMO_FNS_H

#include <tensorwire/agent.h>

/* Registers demo::add(a, b), demo::echo(x), demo::check_positive(x) (value
 * error for x <= 0) and demo::slow(ms) (blocking, on the executor). */
tw_status demo_register(tw_agent *a);

/* The same, in the shape of tw_agent_opts.setup. */
tw_status demo_setup(tw_agent *a, void *arg);

#endif
