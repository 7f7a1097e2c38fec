/* The DPDK transport's provider: one port for the agent with a queue pair
 * per loop (the EAL brought up by the first port of the process), one
 * transport per queue, loop i at UDP port udp_base_port + i. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dpdk.h"
#include "dataplane/err.h"

#include <sodium.h>

struct dpdk_env {
	tw_dpdk_env *env;
	struct tw_dpdk_opts o; /* every loop's transport options */
	char ip[16];           /* our copy of local_ip */
	uint8_t *secret;       /* the group's (g->secret), copied */
	size_t secret_len;
	bool admit_only;
};

static void env_free(struct dpdk_env *d)
{
	if (d->secret != NULL) {
		sodium_memzero(d->secret, d->secret_len);
		free(d->secret);
	}
	free(d);
}

static tw_status d_check(const void *opts, uint32_t nloops)
{
	tw_status st = tw_transport_opts_check_head(opts, TW_TRANSPORT_DPDK,
						    "tw_dpdk_opts_init");
	if (st != TW_OK)
		return st;
	return tw_dpdk_opts_check(opts, nloops);
}

static tw_status d_start(const void *opts, const struct tw_transport_group *g,
			 void **out)
{
	struct dpdk_env *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return tw_fail(TW_ENOMEM,
			       "DPDK: no memory for the port's state");
	tw_dpdk_opts_get(opts, &d->o);
	d->admit_only = g->admit_only;
	if (g->secret_len != 0 && g->secret == NULL) {
		env_free(d);
		return tw_fail(TW_EINVAL, "DPDK: a secret length without one");
	}
	if (g->secret_len != 0) {
		d->secret = malloc(g->secret_len);
		if (d->secret == NULL) {
			env_free(d);
			return tw_fail(TW_ENOMEM,
				       "DPDK: no memory for the port's state");
		}
		memcpy(d->secret, g->secret, g->secret_len);
		d->secret_len = g->secret_len;
	}
	if (d->o.local_ip != NULL) {
		snprintf(d->ip, sizeof(d->ip), "%s", d->o.local_ip);
	} else {
		uint32_t n = g->rank + 1;
		snprintf(d->ip, sizeof(d->ip), "10.%u.%u.%u", (n >> 16) & 255u,
			 (n >> 8) & 255u, n & 255u);
	}
	d->o.local_ip = d->ip;
	/* rte_eal_init pins the calling thread to the main lcore's CPU, and
	 * the loop threads created next would inherit that: all loops on one
	 * core. Keep the caller's affinity (first_cpu pins loops). */
	cpu_set_t cpus;
	bool have_cpus = pthread_getaffinity_np(pthread_self(), sizeof(cpus),
						&cpus) == 0;
	tw_status st = tw_dpdk_env_init(&d->o, (uint16_t)g->nloops, &d->env);
	if (have_cpus)
		(void)pthread_setaffinity_np(pthread_self(), sizeof(cpus),
					     &cpus);
	/* The caller's strings are not kept (the env copied what it needs). */
	d->o.eal_args = NULL;
	d->o.port = NULL;
	if (st != TW_OK) {
		const struct tw_dpdk_opts *in = opts;
		const char *port = in != NULL && in->port != NULL ? in->port
								  : "(first)";
		tw_fail_wrap(st, st, "DPDK port %.64s (ip %s, %u queues): %s",
			     port, d->ip, g->nloops, tw_strerror(st));
		env_free(d);
		return st;
	}
	*out = d;
	return TW_OK;
}

static tw_status d_create(void *env, uint32_t idx, tw_loop *loop,
			  const struct tw_transport_cbs *cbs,
			  tw_transport **out)
{
	struct dpdk_env *d = env;
	tw_status st = tw_dpdk_transport_create(loop, d->env, (uint16_t)idx,
						&d->o, cbs, out);
	if (st == TW_OK && (d->secret_len != 0 || d->admit_only)) {
		st = tw_dpdk_transport_secure(*out, d->secret, d->secret_len,
					      d->admit_only);
		if (st != TW_OK) {
			(*out)->ops->destroy(*out);
			*out = NULL;
		}
	}
	return st;
}

static tw_status d_listen_addr(void *env, uint32_t idx, char *url, size_t len)
{
	(void)idx; /* queue idx's transport takes its own port */
	struct dpdk_env *d = env;
	snprintf(url, len, "udp://%s:0", d->ip);
	return TW_OK;
}

/* After every transport. A received buffer still held keeps the port and
 * its pools (TW_EBUSY): leaked rather than freed under it. The EAL stays
 * up (it cannot be restarted in this process): tw_dpdk_eal_cleanup at
 * process end is the application's call. */
static void d_stop(void *env)
{
	struct dpdk_env *d = env;
	if (d->env != NULL)
		(void)tw_dpdk_env_destroy(d->env);
	env_free(d);
}

const struct tw_transport_provider tw_dpdk_provider = {
	.name = TW_TRANSPORT_DPDK,
	.check = d_check,
	.start = d_start,
	.create = d_create,
	.listen_addr = d_listen_addr,
	.stop = d_stop,
};
