/* Transport providers by name: the built-in ones and those registered at
 * run time (the test library's fake net). */
#include <arpa/inet.h>
#include <stdio.h>
#include <pthread.h>
#include <string.h>

#include "dataplane/err.h"
#include "dataplane/transport.h"

/* Each transport's file defines its provider (uring_provider.c,
 * dpdk_provider.c or, in builds without DPDK, dpdk_absent.c). */
extern const struct tw_transport_provider tw_uring_provider;
extern const struct tw_transport_provider tw_dpdk_provider;

static const struct tw_transport_provider *const builtin[] = {
	&tw_uring_provider,
	&tw_dpdk_provider,
};

#define MAX_REGISTERED 8

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static const struct tw_transport_provider *registered[MAX_REGISTERED];
static unsigned nregistered;

/* reg_mu held. */
static const struct tw_transport_provider *find_locked(const char *name)
{
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
		if (strcmp(builtin[i]->name, name) == 0)
			return builtin[i];
	for (unsigned i = 0; i < nregistered; i++)
		if (strcmp(registered[i]->name, name) == 0)
			return registered[i];
	return NULL;
}

const struct tw_transport_provider *tw_transport_provider_find(const char *name)
{
	if (name == NULL)
		return NULL;
	pthread_mutex_lock(&reg_mu);
	const struct tw_transport_provider *p = find_locked(name);
	pthread_mutex_unlock(&reg_mu);
	return p;
}

tw_status tw_transport_provider_register(const struct tw_transport_provider *p)
{
	if (p == NULL || p->name == NULL || p->check == NULL ||
	    p->start == NULL || p->create == NULL || p->listen_addr == NULL ||
	    p->stop == NULL)
		return tw_fail(TW_EINVAL,
			       "a transport provider needs a name and "
			       "all five functions");
	tw_status st = TW_OK;
	pthread_mutex_lock(&reg_mu);
	const struct tw_transport_provider *q = find_locked(p->name);
	if (q != NULL && q != p)
		st = tw_fail(TW_EBUSY, "transport '%s' is already provided",
			     p->name);
	else if (q == NULL && nregistered == MAX_REGISTERED)
		st = tw_fail(TW_ENOSPC,
			     "at most %d transport providers can be "
			     "registered",
			     MAX_REGISTERED);
	else if (q == NULL)
		registered[nregistered++] = p;
	pthread_mutex_unlock(&reg_mu);
	return st;
}

tw_status tw_transport_opts_check_head(const void *opts, const char *name,
				       const char *init_fn)
{
	if (opts == NULL)
		return TW_OK;
	const struct tw_transport_opts_head *h = opts;
	if (h->opts_size < sizeof(*h))
		return tw_fail(TW_EINVAL,
			       "%s options: opts_size %zu is too small "
			       "(initialise them with %s)",
			       name, h->opts_size, init_fn);
	if (h->transport == NULL || strcmp(h->transport, name) != 0)
		return tw_fail(TW_EINVAL,
			       "transport_opts are for transport '%.32s', "
			       "not '%s' (initialise them with %s)",
			       h->transport ? h->transport : "(none)", name,
			       init_fn);
	return TW_OK;
}

void tw_conn_set_peer_ip4(tw_conn *c, uint32_t addr, uint16_t port)
{
	const unsigned char *b = (const unsigned char *)&addr;
	c->peer_host = (uint64_t)ntohl(addr) | (UINT64_C(4) << 32);
	snprintf(c->peer, sizeof(c->peer), "%u.%u.%u.%u:%u", b[0], b[1], b[2],
		 b[3], (unsigned)ntohs(port));
}
