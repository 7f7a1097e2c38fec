/* Test library: agents on a tw_fake_net (fake_net.h) instead of io_uring
 * or DPDK, on a clock the test moves, with their membership given instead
 * of met at a rendezvous: one thread starts and drives several agents and
 * every protocol race becomes a deterministic test. */
#ifndef TW_TESTS_FAKE_AGENT_H
#define TW_TESTS_FAKE_AGENT_H

#include <tensorwire/agent.h>

#include "dataplane/loop.h"
#include "tests/lib/fake_net.h"

/* The fake net's transport provider, by this name (tw_agent_opts.transport),
 * with struct tw_fake_opts as its options. */
#define TW_TRANSPORT_FAKE "fake"

struct tw_fake_opts {
	size_t opts_size;         /* sizeof(struct tw_fake_opts) */
	const char *transport;    /* TW_TRANSPORT_FAKE */
	tw_fake_net *net;         /* outlives the agent */
	const char *const *addrs; /* world_size addresses by rank
				   * ("fake://<n>"): loop 0 of rank r
				   * listens on addrs[r] */
};

/* Register the provider (idempotent). tw_agent_init_fake does it. */
tw_status tw_fake_provider_register(void);

struct tw_agent_fake {
	struct tw_fake_net *net; /* outlives the agent */
	/* The loop's clock (NULL = monotonic). Call deadlines are read on
	 * it too, from the thread calling tw_rpc_async. */
	tw_clock_fn clock;
	void *clock_ctx;
	/* world_size names and addresses ("fake://<n>") by rank, read
	 * during init only; names[rank] must be opts->name, and the agent
	 * listens on addrs[rank]. */
	const char *const *names;
	const char *const *addrs;
	/* Graceful shutdown calls this while it waits for the worker's own
	 * calls, to drive the other agents (and move the clock, if it must);
	 * NULL = poll this agent's loop only. It may switch the thread's
	 * agent (tw_agent_fake_enter): shutdown switches back. */
	void (*drive)(void *arg);
	void *drive_arg;
};

/*
 * tw_agent_init on the fake net: opts as usual (embedded must be set;
 * rendezvous, transport and transport_opts are ignored), no rendezvous.
 * The new agent becomes the thread's current one (tw_agent_fake_enter).
 * Graceful shutdown waits for the worker's own calls (driving the others
 * through hooks->drive) but has no barrier: with every worker on one
 * thread the test orders the shutdowns itself.
 */
tw_status tw_agent_init_fake(const struct tw_agent_opts *opts,
			     const struct tw_agent_fake *hooks, tw_agent **out);

/* Make a (a fake agent; NULL = none) the one this thread drives: the
 * owner-thread checks of tw_agent_poll, tw_agent_shutdown and nested
 * calls look at it. Not from inside a loop iteration (then nothing
 * changes). Returns the previous one. tw_agent_wait and tw_rpc_sync poll
 * the current agent's loop alone, which starves its peers on the same
 * thread: poll every agent (tw_agent_poll) until the future is done. */
tw_agent *tw_agent_fake_enter(tw_agent *a);

#endif
