/* Transport providers by name: the built-in ones and those registered at
 * run time (the test library's fake net). */
#include <arpa/inet.h>
#include <stdio.h>
#include <pthread.h>
#include <string.h>

#include "dataplane/err.h"
#include "dataplane/transport.h"

/* Each transport's file defines its provider (uring_provider.c,
 * shm_provider.c, dpdk_provider.c or, in builds without DPDK,
 * dpdk_absent.c). */
extern const struct tw_transport_provider tw_uring_provider;
extern const struct tw_transport_provider tw_dpdk_provider;
extern const struct tw_transport_provider tw_shm_provider;

static const struct tw_transport_provider *const builtin[] = {
	&tw_uring_provider,
	&tw_dpdk_provider,
	&tw_shm_provider,
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

void tw_conn_set_peer_sa(tw_conn *c, const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *si = (const void *)sa;
		tw_conn_set_peer_ip4(c, si->sin_addr.s_addr, si->sin_port);
		return;
	}
	if (sa->sa_family != AF_INET6)
		return;
	const struct sockaddr_in6 *si = (const void *)sa;
	const uint8_t *b = si->sin6_addr.s6_addr;
	if (IN6_IS_ADDR_V4MAPPED(&si->sin6_addr)) {
		uint32_t v4;
		memcpy(&v4, b + 12, 4);
		tw_conn_set_peer_ip4(c, v4, si->sin6_port);
		return;
	}
	/* The whole address, as for IPv4: a /64 is a subnet (a cloud VPC's,
	 * a link's fe80::/64), not a host, and keying by it would make its
	 * hosts share one budget. A peer with many addresses gets a key per
	 * address, as an IPv4 peer with many addresses does; the totals
	 * (max_conns, asm_worker_bytes) bound them all. Its 128 bits mixed
	 * (splitmix64's finalizer per half), the top bit set: never an IPv4
	 * key (those stay below 2^35) nor 0. */
	uint64_t k = 0;
	for (int half = 0; half < 2; half++) {
		uint64_t x = 0;
		for (int i = 0; i < 8; i++)
			x = x << 8 | b[8 * half + i];
		x ^= k;
		x ^= x >> 30;
		x *= UINT64_C(0xbf58476d1ce4e5b9);
		x ^= x >> 27;
		x *= UINT64_C(0x94d049bb133111eb);
		x ^= x >> 31;
		k = x + UINT64_C(0x9e3779b97f4a7c15);
	}
	c->peer_host = k | (UINT64_C(1) << 63);
	char ip[INET6_ADDRSTRLEN];
	if (inet_ntop(AF_INET6, &si->sin6_addr, ip, sizeof(ip)) == NULL)
		ip[0] = '\0';
	snprintf(c->peer, sizeof(c->peer), "[%s]:%u", ip,
		 (unsigned)ntohs(si->sin6_port));
}
