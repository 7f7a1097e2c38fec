/* Internal: the DPDK transport's option limits, shared by the checks
 * every build runs (dpdk_opts.c) and the transport itself. */
#ifndef TW_DATAPLANE_DPDK_LIMITS_H
#define TW_DATAPLANE_DPDK_LIMITS_H

#define TW_DPDK_DEF_BASE_PORT 31850
#define TW_DPDK_MIN_MTU 576
#define TW_DPDK_MAX_MTU 9000
#define TW_DPDK_MAX_CREDITS 1024u
#define TW_DPDK_MAX_RX_WINDOW 1024u
#define TW_DPDK_MAX_BURST 256u

#endif
