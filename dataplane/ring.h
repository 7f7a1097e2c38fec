/* Lock-free bounded rings of pointers (SPSC, MPSC, MPMC), after DPDK's
 * rte_ring: free-running u32 head/tail pairs, producer and consumer on
 * separate cache lines, burst (as many as fit) and bulk (all or nothing). */
#ifndef TW_DATAPLANE_RING_H
#define TW_DATAPLANE_RING_H
/* implementation pending: see the ring helper */
#endif
