/* Test library: agents on the fake net (fake_agent.h): the fake net's
 * transport provider, and tw_agent_init on it with given members and the
 * test's clock (the agent's test hooks, rpc/agent_impl.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/err.h"
#include "rpc/agent_impl.h"
#include "tests/lib/fake_agent.h"

struct fake_env {
	tw_fake_net *net;
	char addr[TW_ADDR_MAX];
};

static tw_status fk_check(const void *opts, uint32_t nloops)
{
	tw_status st = tw_transport_opts_check_head(opts, TW_TRANSPORT_FAKE,
						    "a struct tw_fake_opts");
	if (st != TW_OK)
		return st;
	const struct tw_fake_opts *o = opts;
	if (o == NULL || o->net == NULL || o->addrs == NULL)
		return tw_fail(TW_EINVAL, "the fake transport needs a net and "
					  "every member's address");
	if (nloops != 1)
		return tw_fail(TW_EINVAL, "the fake transport runs one loop");
	return TW_OK;
}

static tw_status fk_start(const void *opts, const struct tw_transport_group *g,
			  void **env)
{
	const struct tw_fake_opts *o = opts;
	struct fake_env *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return tw_fail(TW_ENOMEM, "fake transport: no memory");
	e->net = o->net;
	snprintf(e->addr, sizeof(e->addr), "%s", o->addrs[g->rank]);
	*env = e;
	return TW_OK;
}

static tw_status fk_create(void *env, uint32_t idx, tw_loop *loop,
			   const struct tw_transport_cbs *cbs,
			   tw_transport **out)
{
	(void)idx;
	struct fake_env *e = env;
	return tw_fake_transport_create(e->net, loop, cbs, out);
}

static tw_status fk_listen_addr(void *env, uint32_t idx, char *url, size_t len)
{
	(void)idx;
	struct fake_env *e = env;
	snprintf(url, len, "%s", e->addr);
	return TW_OK;
}

static void fk_stop(void *env)
{
	free(env);
}

static const struct tw_transport_provider fake_provider = {
	.name = TW_TRANSPORT_FAKE,
	.check = fk_check,
	.start = fk_start,
	.create = fk_create,
	.listen_addr = fk_listen_addr,
	.stop = fk_stop,
};

tw_status tw_fake_provider_register(void)
{
	return tw_transport_provider_register(&fake_provider);
}

tw_status tw_agent_init_fake(const struct tw_agent_opts *opts,
			     const struct tw_agent_fake *h, tw_agent **out)
{
	if (out != NULL)
		*out = NULL;
	if (opts == NULL || h == NULL || out == NULL || opts->opts_size == 0)
		return tw_fail(TW_EINVAL, "tw_agent_init_fake: options, hooks "
					  "and an out pointer");
	struct tw_agent_opts o;
	tw_agent_opts_init(&o, sizeof(o));
	memcpy(&o, opts,
	       opts->opts_size < sizeof(o) ? opts->opts_size : sizeof(o));
	o.opts_size = sizeof(o);
	if (!o.embedded || h->net == NULL || h->names == NULL ||
	    h->addrs == NULL || o.name == NULL || o.world_size == 0 ||
	    o.rank >= o.world_size)
		return tw_fail(TW_EINVAL,
			       "a fake agent is embedded and needs a net, "
			       "a rank below world_size and every "
			       "member's name and address");
	for (uint32_t r = 0; r < o.world_size; r++) {
		const char *nm = h->names[r], *ad = h->addrs[r];
		if (nm == NULL || nm[0] == '\0' ||
		    strlen(nm) >= TW_WORKER_NAME_MAX || ad == NULL ||
		    strlen(ad) >= TW_ADDR_MAX)
			return tw_fail(TW_EINVAL,
				       "member %u: bad name or address", r);
		for (uint32_t q = 0; q < r; q++)
			if (strcmp(h->names[q], nm) == 0)
				return tw_fail(TW_EINVAL,
					       "worker name '%s' is given "
					       "twice",
					       nm);
	}
	if (strcmp(h->names[o.rank], o.name) != 0)
		return tw_fail(TW_EINVAL,
			       "rank %u is '%s' in the member list, "
			       "not '%s'",
			       o.rank, h->names[o.rank], o.name);
	tw_status st = tw_fake_provider_register();
	if (st != TW_OK)
		return st;
	struct tw_fake_opts fo = {.opts_size = sizeof(fo),
				  .transport = TW_TRANSPORT_FAKE,
				  .net = h->net,
				  .addrs = h->addrs};
	o.transport = TW_TRANSPORT_FAKE;
	o.transport_opts = &fo;
	struct agent_hooks hk = {.clock = h->clock,
				 .clock_ctx = h->clock_ctx,
				 .names = h->names,
				 .addrs = h->addrs,
				 .drive = h->drive,
				 .drive_arg = h->drive_arg};
	struct agent_loop *prev = agent_tls_loop;
	if (prev != NULL && tw_loop_in_poll(prev->loop))
		return tw_fail(TW_EBUSY,
			       "tw_agent_init_fake from inside a loop");
	/* The thread drives the new agent from here on. */
	agent_tls_loop = NULL;
	st = agent_init_hooked(&o, &hk, out);
	if (st != TW_OK)
		agent_tls_loop = prev;
	return st;
}

tw_agent *tw_agent_fake_enter(tw_agent *a)
{
	struct agent_loop *prev = agent_tls_loop;
	if (prev != NULL && tw_loop_in_poll(prev->loop))
		return prev->a; /* a handler: its loop stays the thread's */
	if (a == NULL)
		agent_tls_loop = NULL;
	else if (a->hooks != NULL && a->loops[0].ready)
		agent_tls_loop = &a->loops[0];
	return prev != NULL ? prev->a : NULL;
}
