/* DPDK transport options: defaults and checks. Plain C, built with or
 * without DPDK, so that every build offers tw_dpdk_opts_init and explains
 * a bad option the same way. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <string.h>

#include <tensorwire/dpdk.h>
#include <tensorwire/frame.h>

#include "dataplane/dpdk.h"
#include "dataplane/dpdk_limits.h"
#include "dataplane/err.h"
#include "dataplane/util.h"

void tw_dpdk_opts_init(struct tw_dpdk_opts *o, size_t opts_size)
{
	if (o == NULL || opts_size < sizeof(o->opts_size))
		return;
	struct tw_dpdk_opts d = {
		.opts_size = opts_size,
		.transport = TW_TRANSPORT_DPDK,
		.eal_args = NULL,
		.port = NULL,
		.local_ip = NULL,
		.udp_base_port = TW_DPDK_DEF_BASE_PORT,
		.mtu = 1500,
		.rx_desc = 1024,
		.tx_desc = 1024,
		.mbufs = 8191,
		.mbuf_cache = 256,
		.ext_mbufs = 4095,
		.steer_ring = 4096,
		.credits =
			64, /* perf/RESULTS.md, bench-dpdk: 2x 32 on large tensors */
		.rx_window = 0,
		.rto_ns = 5000000,
		/* Well above a paused peer's 10 s (SIGSTOP, swapping, a
		 * debugger): a process that dies is learned from the
		 * control plane within milliseconds (agent.c, members that
		 * die); silence alone only ends a session to a host that
		 * vanished. */
		.dead_ns = 30000000000ull,
		.idle_wake_ns = 1000000,
		.max_sessions = 1024,
		.max_queued = 4096,
		.zc_threshold = 16u << 10,
		.rx_pool_buf_size = 64u << 10,
		.rx_pool_count = 64,
		.burst = 32,
		/* Two frames of the agent's largest (max_frame's default)
		 * in assembly at once, as tw_uring_opts.asm_host_bytes. */
		.asm_bytes = 2 * ((UINT64_C(1) << 30) + (UINT64_C(64) << 10)),
		.asm_stall_ns = 30000000000ull,
		.ooo_max = 0,
		.rexmit_max = 0,
		.accept_timeout_ns = 3000000000ull,
		/* Well inside a call's round trip over any link that
		 * needs DPDK, far below rto_ns. */
		.ack_delay_ns = 100000,
		/* ~250 wakes a second once idle: 0.3-0.5% of a core here
		 * (perf/RESULTS.md, issue 15 part 5), against ~1% at 1 ms. */
		.idle_wake_max_ns = 4000000,
	};
	memcpy(o, &d, opts_size < sizeof(d) ? opts_size : sizeof(d));
}

/* Callers built against a shorter struct keep working. */
void tw_dpdk_opts_get(const struct tw_dpdk_opts *in, struct tw_dpdk_opts *o)
{
	tw_dpdk_opts_init(o, sizeof(*o));
	tw_opts_copy(o, sizeof(*o), in);
}

tw_status tw_dpdk_opts_check(const struct tw_dpdk_opts *in, uint32_t nqueues)
{
	if (in != NULL &&
	    in->opts_size < sizeof(in->opts_size) + sizeof(in->transport))
		return tw_fail(TW_EINVAL,
			       "DPDK options: opts_size %zu is too small "
			       "(initialise with tw_dpdk_opts_init)",
			       in->opts_size);
	struct tw_dpdk_opts o;
	tw_dpdk_opts_get(in, &o);
	if (o.transport == NULL || strcmp(o.transport, TW_TRANSPORT_DPDK) != 0)
		return tw_fail(TW_EINVAL,
			       "DPDK options are for transport '%s', "
			       "not '" TW_TRANSPORT_DPDK "' (initialise "
			       "them with tw_dpdk_opts_init)",
			       o.transport ? o.transport : "(none)");
	if (nqueues == 0 || nqueues > UINT16_MAX)
		return tw_fail(TW_EINVAL,
			       "DPDK: %u queue pairs asked for (1..%u)",
			       nqueues, UINT16_MAX);
	if ((uint32_t)o.udp_base_port + nqueues > 65536u)
		return tw_fail(TW_EINVAL,
			       "DPDK: udp_base_port %u + %u loops "
			       "exceeds 65535",
			       (unsigned)o.udp_base_port, nqueues);
	struct in_addr ia;
	if (o.local_ip != NULL &&
	    (inet_pton(AF_INET, o.local_ip, &ia) != 1 || ia.s_addr == 0))
		return tw_fail(TW_EINVAL,
			       "DPDK: local_ip '%.64s' is not a "
			       "nonzero IPv4 address",
			       o.local_ip);
	if (o.mtu < TW_DPDK_MIN_MTU || o.mtu > TW_DPDK_MAX_MTU)
		return tw_fail(TW_EINVAL, "DPDK: mtu %u is outside %u..%u",
			       (unsigned)o.mtu, TW_DPDK_MIN_MTU,
			       TW_DPDK_MAX_MTU);
	if (o.mbufs == 0 || o.ext_mbufs == 0)
		return tw_fail(TW_EINVAL,
			       "DPDK: mbufs and ext_mbufs must be > 0");
	if (o.steer_ring == 0 || (o.steer_ring & (o.steer_ring - 1)) != 0)
		return tw_fail(TW_EINVAL,
			       "DPDK: steer_ring %u is not a power of 2",
			       o.steer_ring);
	if (o.credits == 0 || o.credits > TW_DPDK_MAX_CREDITS)
		return tw_fail(TW_EINVAL, "DPDK: credits %u is outside 1..%u",
			       o.credits, TW_DPDK_MAX_CREDITS);
	if (o.rx_window > TW_DPDK_MAX_RX_WINDOW)
		return tw_fail(TW_EINVAL, "DPDK: rx_window %u is above %u",
			       o.rx_window, TW_DPDK_MAX_RX_WINDOW);
	if (o.rto_ns == 0 || o.rto_ns > UINT64_MAX / 4 ||
	    o.dead_ns < 4 * o.rto_ns)
		return tw_fail(
			TW_EINVAL,
			"DPDK: dead_ns (%" PRIu64 ") must be at "
			"least 4 retransmission timeouts (rto_ns %" PRIu64 ")",
			o.dead_ns, o.rto_ns);
	if (o.max_sessions == 0 || o.max_sessions > 65535)
		return tw_fail(TW_EINVAL,
			       "DPDK: max_sessions %u is outside 1..65535",
			       o.max_sessions);
	if (o.max_queued == 0)
		return tw_fail(TW_EINVAL, "DPDK: max_queued must be > 0");
	if (o.rx_pool_buf_size < TW_FRAME_HDR_SIZE || o.rx_pool_count == 0)
		return tw_fail(TW_EINVAL,
			       "DPDK: rx_pool_buf_size must be at least "
			       "%u and rx_pool_count > 0",
			       TW_FRAME_HDR_SIZE);
	if (o.asm_bytes == 0 || o.asm_stall_ns == 0)
		return tw_fail(TW_EINVAL,
			       "DPDK: asm_bytes and asm_stall_ns must be > 0");
	if (o.accept_timeout_ns < o.rto_ns)
		return tw_fail(TW_EINVAL,
			       "DPDK: accept_timeout_ns (%" PRIu64 ") must be "
			       "at least rto_ns (%" PRIu64 ")",
			       o.accept_timeout_ns, o.rto_ns);
	if (o.ooo_max >= o.mbufs)
		return tw_fail(TW_EINVAL,
			       "DPDK: ooo_max %u must be below mbufs (%u), or "
			       "out-of-order packets can take every receive "
			       "buffer",
			       o.ooo_max, o.mbufs);
	if (o.burst == 0 || o.burst > TW_DPDK_MAX_BURST)
		return tw_fail(TW_EINVAL, "DPDK: burst %u is outside 1..%u",
			       o.burst, TW_DPDK_MAX_BURST);
	return TW_OK;
}
