/* Receive faults for DPDK transport tests: an ethdev RX callback on one
 * queue of a tw_dpdk_env's port that drops, duplicates and holds back
 * (reorders) packets, with counters for the test. A test facility, in
 * DPDK builds only; the shipped library knows nothing of it. */
#ifndef TW_TESTS_DPDK_FAULTS_H
#define TW_TESTS_DPDK_FAULTS_H

#include <stdint.h>

#include "dataplane/dpdk.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Every packet the queue receives (before the transport sees it: the
 * ones it will refuse or steer to another queue too) draws, in order,
 * each per million:
 * - drop_ppm: freed; the transport never sees it;
 * - dup_ppm: a copy (from the packet's own pool) goes up just before it;
 * - reorder_ppm, when no packet is held: held back; it goes up right
 *   after the next packet that goes up, or, when none comes, on the
 *   first poll hold_ns after it was held (delayed, never lost).
 * What goes up keeps that order; what does not fit in the caller's burst
 * (a full one has no room for a copy) goes up first on the next poll.
 */
struct tw_dpdk_faults {
	uint32_t drop_ppm, dup_ppm, reorder_ppm;
	uint64_t hold_ns; /* 0: 200 us */
	uint64_t seed;    /* 0: from the clock and the pid */
};

struct tw_dpdk_fault_stats {
	uint64_t seen; /* packets the queue received */
	uint64_t drops, dups, reorders;
};

typedef struct tw_dpdk_rx_faults tw_dpdk_rx_faults;

/* Put the faults f on queue `queue` of env's port. Call before the queue
 * is polled or on the thread that polls it. TW_ENOTSUP when this DPDK has
 * no RX callbacks, TW_EINVAL for a queue the port does not have. */
tw_status tw_dpdk_faults_install(tw_dpdk_env *env, uint16_t queue,
				 const struct tw_dpdk_faults *f,
				 tw_dpdk_rx_faults **out);

/* What the faults did so far; read on the polling thread or once it has
 * stopped. */
void tw_dpdk_faults_get_stats(const tw_dpdk_rx_faults *x,
			      struct tw_dpdk_fault_stats *s);

/* Take the callback off and free x, and a packet it still holds (back to
 * its pool): once nothing polls the queue (the transport is destroyed)
 * and before tw_dpdk_env_destroy. NULL is a no-op. */
void tw_dpdk_faults_remove(tw_dpdk_rx_faults *x);

#ifdef __cplusplus
}
#endif
#endif
