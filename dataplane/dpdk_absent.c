/* Builds without DPDK: the DPDK provider exists so that choosing it
 * explains itself, and the public DPDK functions do nothing. */
#include "dataplane/dpdk.h"
#include "dataplane/err.h"
#include "dataplane/transport.h"

#include <tensorwire/dpdk.h>

static tw_status absent(void)
{
	return tw_fail(TW_ENOTSUP, "the DPDK transport is not available: "
				   "tensorwire was built without DPDK (libdpdk "
				   "not found, or -Ddpdk=disabled)");
}

/* Options are checked as the real provider checks them (dpdk_opts.c
 * builds everywhere), so that a configuration error reads the same in
 * every build; good options learn that DPDK is missing. */
static tw_status absent_check(const void *opts, uint32_t nloops)
{
	tw_status st = tw_transport_opts_check_head(opts, TW_TRANSPORT_DPDK,
						    "tw_dpdk_opts_init");
	if (st == TW_OK)
		st = tw_dpdk_opts_check(opts, nloops);
	return st != TW_OK ? st : absent();
}

static tw_status absent_start(const void *opts,
			      const struct tw_transport_group *g, void **env)
{
	(void)opts;
	(void)g;
	(void)env;
	return absent();
}

static tw_status absent_create(void *env, uint32_t idx, tw_loop *loop,
			       const struct tw_transport_cbs *cbs,
			       tw_transport **out)
{
	(void)env, (void)idx, (void)loop, (void)cbs, (void)out;
	return absent();
}

static tw_status absent_listen_addr(void *env, uint32_t idx, char *url,
				    size_t len)
{
	(void)env, (void)idx, (void)url, (void)len;
	return absent();
}

static void absent_stop(void *env)
{
	(void)env;
}

const struct tw_transport_provider tw_dpdk_provider = {
	.name = TW_TRANSPORT_DPDK,
	.check = absent_check,
	.start = absent_start,
	.create = absent_create,
	.listen_addr = absent_listen_addr,
	.stop = absent_stop,
};

void tw_dpdk_eal_cleanup(void)
{
}
