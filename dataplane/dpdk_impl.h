/* What dpdk_port.c (the environment: EAL, port, pools) shares with dpdk.c
 * (the transport). Internal to the DPDK transport. */
#ifndef TW_DATAPLANE_DPDK_IMPL_H
#define TW_DATAPLANE_DPDK_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dataplane/dpdk.h"
#include "dataplane/dpdk_limits.h"
#include "dataplane/dpdk_pkt.h"

struct rte_mempool;
struct rte_ring;
struct rte_flow;
struct rte_device;

/* Bytes in front of the packet in every mbuf of our pools: makes the
 * frame bytes of a received packet 64-byte aligned (dpdk_pkt.h). */
#define TW_DPDK_MBUF_PRIV 16u

#define TW_DPDK_MAX_XSK 64

/* One queue pair of the port. */
struct tw_dpdk_queue {
	struct rte_mempool *mp;     /* receive buffers */
	struct rte_mempool *tx_mp;  /* packet heads we build: a layer above
				     * that holds received frames cannot
				     * starve our acks */
	struct rte_mempool *ext_mp; /* data-less mbufs for external buffers */
	struct rte_ring *steer;     /* packets other queues received for us
				     * (multi-producer, single consumer) */
	_Atomic(void *) owner;      /* the transport on this queue */
	/* Received mbufs lent to the layer above as tw_bufs, not back yet;
	 * released on any thread. */
	_Atomic int64_t lent;
};

/* The caller's options over the defaults, reading only what its
 * opts_size covers (dpdk_port.c). */
void tw_dpdk_opts_get(const struct tw_dpdk_opts *in, struct tw_dpdk_opts *o);

struct tw_dpdk_env {
	uint32_t id; /* process-unique, for object names */
	uint16_t port_id;
	uint16_t nq;
	bool probed; /* we hot-plugged the port: remove it */
	bool af_xdp; /* net_af_xdp: its UMEM is our rx pool */
	struct rte_device *dev;
	char devname[64];
	struct tw_dpdk_opts o; /* options as given (env part used) */
	struct twp_ep ep;      /* our MAC and IP; port per queue */
	uint16_t base_port;    /* host order */
	uint16_t mtu;
	uint32_t mss;
	bool tx_ip_csum, tx_udp_csum, rx_ip_csum, rx_udp_csum;
	bool multi_seg, iova_va, flow_steering;
	char driver[32];
	struct rte_flow **flows; /* nq, when flow_steering */
	struct tw_dpdk_queue *q; /* nq */
	/* Bytes announced by frames in assembly on all queues together,
	 * against o.asm_bytes (a worker's bound, not a loop's). */
	_Atomic uint64_t asm_reserved;
	/* net_af_xdp: XDP sockets its queue setup opened (dpdk_port.c) */
	struct {
		int fd;
		uint64_t ino;
	} xsk[TW_DPDK_MAX_XSK], xsk_pre[TW_DPDK_MAX_XSK];
	uint32_t nxsk, nxsk_pre;
	bool xsk_unsure; /* too many to tell: close none */
};

#endif
