/* DPDK environment: the EAL (once per process), one port with a queue pair
 * per run loop, its mempools and steering rings, and what the port offers
 * (checksum offloads, multi-segment transmit, rte_flow steering). */
/* rte_dev_dma_map is still experimental in 22.11. */
#define ALLOW_EXPERIMENTAL_API 1

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_ethdev.h>
#include <rte_flow.h>
#include <rte_mbuf.h>
#include <rte_mbuf_pool_ops.h>
#include <rte_memory.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include "dataplane/dpdk_impl.h"
#include "dataplane/err.h"

#define MAX_EAL_ARGS 128
#ifndef AF_XDP
#define AF_XDP 44
#endif

/* ------------------------------------------------------------------ */
/* EAL                                                                 */

static pthread_mutex_t eal_mu = PTHREAD_MUTEX_INITIALIZER;
static int eal_state;   /* 0 not yet, 1 up, -1 failed */
static char **eal_argv; /* kept: the EAL may point into it */
static _Atomic uint32_t env_ids;
static _Atomic uint32_t envs_live; /* envs not destroyed yet */

static int eal_up(const char *args, const char **why)
{
	pthread_mutex_lock(&eal_mu);
	if (eal_state != 0) {
		int st = eal_state;
		pthread_mutex_unlock(&eal_mu);
		if (st < 0 && why)
			*why = "EAL initialisation failed earlier in this process";
		return st > 0 ? 0 : -1;
	}
	if (args == NULL) {
		/* The application's EAL: check it is there. */
		eal_state = rte_lcore_count() > 0 ? 1 : -1;
		pthread_mutex_unlock(&eal_mu);
		if (eal_state < 0 && why)
			*why = "no eal_args and no EAL initialised";
		return eal_state > 0 ? 0 : -1;
	}
	size_t len = strlen(args);
	char *buf = malloc(len + 1 + sizeof("tensorwire"));
	char **argv = calloc(MAX_EAL_ARGS + 2, sizeof(*argv));
	if (buf == NULL || argv == NULL) {
		free(buf);
		free(argv);
		pthread_mutex_unlock(&eal_mu);
		if (why)
			*why = "out of memory";
		return -1;
	}
	int argc = 0;
	strcpy(buf, "tensorwire");
	argv[argc++] = buf;
	char *p = buf + sizeof("tensorwire");
	memcpy(p, args, len + 1);
	while (*p) {
		while (*p && isspace((unsigned char)*p))
			*p++ = '\0';
		if (!*p)
			break;
		if (argc == MAX_EAL_ARGS + 1) {
			free(buf);
			free(argv);
			pthread_mutex_unlock(&eal_mu);
			if (why)
				*why = "too many EAL arguments";
			return -1;
		}
		argv[argc++] = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
	}
	argv[argc] = NULL;
	/* rte_eal_init permutes argv: hand it a copy of the pointers. */
	char **copy = calloc((size_t)argc + 1, sizeof(*copy));
	if (copy == NULL) {
		free(buf);
		free(argv);
		pthread_mutex_unlock(&eal_mu);
		return -1;
	}
	memcpy(copy, argv, (size_t)argc * sizeof(*copy));
	int r = rte_eal_init(argc, copy);
	free(copy);
	eal_argv = argv; /* the strings stay for the process's life */
	eal_state = r < 0 ? -1 : 1;
	pthread_mutex_unlock(&eal_mu);
	if (r < 0 && why)
		*why = "rte_eal_init failed (see the EAL's log)";
	return r < 0 ? -1 : 0;
}

void tw_dpdk_eal_cleanup(void)
{
	pthread_mutex_lock(&eal_mu);
	if (atomic_load(&envs_live) != 0) {
		/* rte_eal_cleanup stops and closes every port: a run loop
		 * still polling one (an agent never shut down, a transport
		 * never destroyed) would then call into a closed device. The
		 * process is ending anyway: leave the EAL as it is. */
		pthread_mutex_unlock(&eal_mu);
		fprintf(stderr,
			"tensorwire: DPDK EAL cleanup skipped: %u "
			"port(s) still in use (an agent not shut down?)\n",
			(unsigned)atomic_load(&envs_live));
		return;
	}
	if (eal_state > 0 && eal_argv != NULL) {
		(void)rte_eal_cleanup();
		eal_state = -1; /* no second init in this process */
	}
	pthread_mutex_unlock(&eal_mu);
}

/* ------------------------------------------------------------------ */
/* Port                                                                */

static int port_find(const char *spec, struct tw_dpdk_env *e, const char **why)
{
	if (spec == NULL || *spec == '\0') {
		uint16_t pid;
		RTE_ETH_FOREACH_DEV(pid)
		{
			e->port_id = pid;
			rte_eth_dev_get_name_by_port(pid, e->devname);
			return 0;
		}
		if (why)
			*why = "no DPDK port (vdev or PCI device) found";
		return -1;
	}
	const char *comma = strchr(spec, ',');
	size_t nl = comma ? (size_t)(comma - spec) : strlen(spec);
	if (nl == 0 || nl >= sizeof(e->devname)) {
		if (why)
			*why = "bad port name";
		return -1;
	}
	memcpy(e->devname, spec, nl);
	e->devname[nl] = '\0';
	if (rte_eth_dev_get_port_by_name(e->devname, &e->port_id) == 0)
		return 0;
	/* Not there yet: a device string with arguments is probed (vdev
	 * hot-plug), the way --vdev would have. */
	if (rte_dev_probe(spec) != 0 ||
	    rte_eth_dev_get_port_by_name(e->devname, &e->port_id) != 0) {
		if (why)
			*why = "port not found and could not be probed";
		return -1;
	}
	e->probed = true;
	return 0;
}

/*
 * A receive pool whose objects lie back to back in one virtually contiguous
 * range. net_af_xdp turns the queue's receive pool into the XDP socket's
 * UMEM and takes its size as objects x object size from the first object:
 * with 4 KiB pages (--no-huge) an ordinary pktmbuf pool keeps every object
 * inside one page (IOVA-contiguous objects), leaving gaps, so the objects
 * past about half the pool fall outside the UMEM. The kernel refuses those
 * as transmit descriptors (and fill ring entries), and a refused
 * descriptor holds up the socket's transmit ring. AF_XDP needs no IOVA.
 */
static struct rte_mempool *pool_create_dense(const char *name, uint32_t n,
					     uint32_t cache, uint16_t priv,
					     uint16_t room, int sock)
{
	struct rte_pktmbuf_pool_private pp = {
		.mbuf_data_room_size = room,
		.mbuf_priv_size = priv,
	};
	unsigned elt = (unsigned)sizeof(struct rte_mbuf) + priv + room;
	struct rte_mempool *mp =
		rte_mempool_create_empty(name, n, elt, cache, sizeof(pp), sock,
					 RTE_MEMPOOL_F_NO_IOVA_CONTIG);
	if (mp == NULL)
		return NULL;
	if (rte_mempool_set_ops_byname(mp, rte_mbuf_best_mempool_ops(), NULL) !=
	    0)
		goto fail;
	rte_pktmbuf_pool_init(mp, &pp);
	if (rte_mempool_populate_default(mp) < 0 || mp->nb_mem_chunks != 1)
		goto fail;
	rte_mempool_obj_iter(mp, rte_pktmbuf_init, NULL);
	return mp;
fail:
	rte_mempool_free(mp);
	return NULL;
}

/*
 * net_af_xdp (DPDK 22.11 with libxdp) closes its XDP socket's rings on
 * rte_eth_dev_close but not the socket that carries the UMEM: the queue
 * of the interface stays bound, and the next port on it (a second agent
 * in this process) cannot bind (EBUSY, "queue setup failed"). The
 * sockets a port's queue setup opened are noted here (fd and inode) and
 * closed after the port is closed and removed, if still open.
 */
static bool xsk_in(const struct tw_dpdk_env *e, bool pre, int fd, uint64_t ino)
{
	uint32_t n = pre ? e->nxsk_pre : e->nxsk;
	for (uint32_t i = 0; i < n; i++) {
		const int f = pre ? e->xsk_pre[i].fd : e->xsk[i].fd;
		const uint64_t in = pre ? e->xsk_pre[i].ino : e->xsk[i].ino;
		if (f == fd && in == ino)
			return true;
	}
	return false;
}

/* before: note the XDP sockets open now (not ours); else: note as ours
 * the ones open now that were not there before. */
static void xsk_scan(struct tw_dpdk_env *e, bool before)
{
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		char *end;
		long fd = strtol(de->d_name, &end, 10);
		if (end == de->d_name || *end != '\0' || fd == dirfd(d))
			continue;
		int dom = 0;
		socklen_t dl = sizeof(dom);
		struct stat st;
		if (getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &dom, &dl) !=
			    0 ||
		    dom != AF_XDP || fstat((int)fd, &st) != 0)
			continue;
		uint64_t ino = (uint64_t)st.st_ino;
		if (before) {
			if (xsk_in(e, true, (int)fd, ino))
				continue;
			if (e->nxsk_pre == TW_DPDK_MAX_XSK)
				e->xsk_unsure = true; /* then close none */
			else {
				e->xsk_pre[e->nxsk_pre].fd = (int)fd;
				e->xsk_pre[e->nxsk_pre++].ino = ino;
			}
		} else if (e->nxsk < TW_DPDK_MAX_XSK &&
			   !xsk_in(e, true, (int)fd, ino) &&
			   !xsk_in(e, false, (int)fd, ino)) {
			e->xsk[e->nxsk].fd = (int)fd;
			e->xsk[e->nxsk++].ino = ino;
		}
	}
	closedir(d);
}

/* After the port is closed: close what it left open. */
static void xsk_close_left(struct tw_dpdk_env *e)
{
	for (uint32_t i = 0; !e->xsk_unsure && i < e->nxsk; i++) {
		struct stat st;
		if (fstat(e->xsk[i].fd, &st) == 0 && st.st_ino == e->xsk[i].ino)
			close(e->xsk[i].fd);
	}
	e->nxsk = 0;
}

static bool flow_install(struct tw_dpdk_env *e)
{
	e->flows = calloc(e->nq, sizeof(*e->flows));
	if (e->flows == NULL)
		return false;
	for (uint16_t q = 0; q < e->nq; q++) {
		struct rte_flow_attr attr = {.ingress = 1};
		struct rte_flow_item_ipv4 ip_spec = {.hdr.dst_addr = e->ep.ip};
		struct rte_flow_item_ipv4 ip_mask = {
			.hdr.dst_addr = 0xffffffffu};
		struct rte_flow_item_udp udp_spec = {
			.hdr.dst_port = htons((uint16_t)(e->base_port + q))};
		struct rte_flow_item_udp udp_mask = {.hdr.dst_port = 0xffff};
		struct rte_flow_item pat[] = {
			{.type = RTE_FLOW_ITEM_TYPE_ETH},
			{.type = RTE_FLOW_ITEM_TYPE_IPV4,
			 .spec = &ip_spec,
			 .mask = &ip_mask},
			{.type = RTE_FLOW_ITEM_TYPE_UDP,
			 .spec = &udp_spec,
			 .mask = &udp_mask},
			{.type = RTE_FLOW_ITEM_TYPE_END},
		};
		struct rte_flow_action_queue qa = {.index = q};
		struct rte_flow_action act[] = {
			{.type = RTE_FLOW_ACTION_TYPE_QUEUE, .conf = &qa},
			{.type = RTE_FLOW_ACTION_TYPE_END},
		};
		struct rte_flow_error err;
		if (rte_flow_validate(e->port_id, &attr, pat, act, &err) != 0)
			goto undo;
		e->flows[q] = rte_flow_create(e->port_id, &attr, pat, act,
					      &err);
		if (e->flows[q] == NULL)
			goto undo;
	}
	return true;
undo:
	for (uint16_t q = 0; q < e->nq; q++)
		if (e->flows[q] != NULL) {
			struct rte_flow_error err;
			rte_flow_destroy(e->port_id, e->flows[q], &err);
		}
	free(e->flows);
	e->flows = NULL;
	return false;
}

static void queues_free(struct tw_dpdk_env *e)
{
	if (e->q == NULL)
		return;
	for (uint16_t q = 0; q < e->nq; q++) {
		struct tw_dpdk_queue *dq = &e->q[q];
		if (dq->steer != NULL) {
			void *m;
			while (rte_ring_dequeue(dq->steer, &m) == 0)
				rte_pktmbuf_free(m);
			rte_ring_free(dq->steer);
		}
		rte_mempool_free(dq->ext_mp);
		rte_mempool_free(dq->tx_mp);
		rte_mempool_free(dq->mp);
	}
	free(e->q);
	e->q = NULL;
}

tw_status tw_dpdk_env_init(const struct tw_dpdk_opts *in, uint16_t nqueues,
			   tw_dpdk_env **out)
{
	/* Each step names what failed here; the reason is recorded once,
	 * on the way out (tw_errmsg). */
	const char *reason = NULL;
	const char **why = &reason;
	if (out == NULL)
		return tw_fail_static(TW_EINVAL, "DPDK env: no out pointer");
	*out = NULL;
	if (in != NULL && in->opts_size < sizeof(in->opts_size))
		return tw_fail_static(TW_EINVAL,
				      "DPDK env: opts_size too small "
				      "(tw_dpdk_opts_init)");
	struct tw_dpdk_opts o;
	tw_dpdk_opts_get(in, &o);
	tw_status cst = tw_dpdk_opts_check(in, nqueues);
	if (cst != TW_OK)
		return cst; /* it said why */
	struct in_addr ia;
	(void)inet_pton(AF_INET, o.local_ip ? o.local_ip : "10.0.0.1", &ia);
	if (eal_up(o.eal_args, why) != 0)
		return tw_fail(TW_ENOTSUP, "%s",
			       reason ? reason : "EAL not up");

	struct tw_dpdk_env *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return tw_fail_static(TW_ENOMEM, "DPDK env: out of memory");
	e->id = atomic_fetch_add(&env_ids, 1);
	e->o = o;
	e->o.eal_args = NULL; /* not kept: the caller's strings */
	e->o.port = NULL;
	e->o.local_ip = NULL;
	e->nq = nqueues;
	e->ep.ip = ia.s_addr;
	e->base_port = o.udp_base_port;
	e->mtu = o.mtu;
	e->mss = o.mtu - TWP_OVERHEAD_L3;
	tw_status st = TW_ENOTSUP;

	if (port_find(o.port, e, why) != 0)
		goto fail;
	struct rte_eth_dev_info di;
	if (rte_eth_dev_info_get(e->port_id, &di) != 0) {
		*why = "rte_eth_dev_info_get failed";
		goto fail;
	}
	if (di.max_rx_queues < nqueues || di.max_tx_queues < nqueues) {
		*why = "the port has fewer queue pairs than run loops";
		goto fail;
	}
	e->dev = di.device;
	snprintf(e->driver, sizeof(e->driver), "%s",
		 di.driver_name ? di.driver_name : "?");
	e->iova_va = rte_eal_iova_mode() == RTE_IOVA_VA;
	e->af_xdp = strcmp(e->driver, "net_af_xdp") == 0;

	struct rte_eth_conf conf;
	memset(&conf, 0, sizeof(conf));
	if (!o.no_offload) {
		conf.rxmode.offloads = di.rx_offload_capa &
				       (RTE_ETH_RX_OFFLOAD_IPV4_CKSUM |
					RTE_ETH_RX_OFFLOAD_UDP_CKSUM);
		conf.txmode.offloads = di.tx_offload_capa &
				       (RTE_ETH_TX_OFFLOAD_IPV4_CKSUM |
					RTE_ETH_TX_OFFLOAD_UDP_CKSUM);
	}
	conf.txmode.offloads |= di.tx_offload_capa &
				RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
	e->rx_ip_csum = conf.rxmode.offloads & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
	e->rx_udp_csum = conf.rxmode.offloads & RTE_ETH_RX_OFFLOAD_UDP_CKSUM;
	e->tx_ip_csum = conf.txmode.offloads & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
	e->tx_udp_csum = conf.txmode.offloads & RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
	e->multi_seg = conf.txmode.offloads & RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
	if (nqueues > 1 &&
	    (di.flow_type_rss_offloads & RTE_ETH_RSS_NONFRAG_IPV4_UDP)) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf = RTE_ETH_RSS_NONFRAG_IPV4_UDP;
	}
	/* Our packets are sized from o.mtu (e->mss): a port that cannot take
	 * frames that long would drop every full one. ethdev's frame is the
	 * MTU plus the Ethernet header and CRC; memif in DPDK 22.11 takes
	 * 1518 bytes (MTU 1500) at most, though its rings could chain more. */
	if (o.mtu > di.max_mtu ||
	    (uint32_t)o.mtu + RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN >
		    di.max_rx_pktlen) {
		*why = "the port's largest frame (max_mtu, max_rx_pktlen) is "
		       "below the mtu asked for: lower tw_dpdk_opts.mtu";
		st = TW_EINVAL;
		goto fail;
	}
	if (o.mtu >= di.min_mtu)
		conf.rxmode.mtu = o.mtu;
	int r = rte_eth_dev_configure(e->port_id, nqueues, nqueues, &conf);
	if (r != 0) {
		*why = "rte_eth_dev_configure failed";
		goto fail;
	}
	uint16_t nrx = o.rx_desc ? o.rx_desc : 1024;
	uint16_t ntx = o.tx_desc ? o.tx_desc : 1024;
	(void)rte_eth_dev_adjust_nb_rx_tx_desc(e->port_id, &nrx, &ntx);

	st = TW_ENOMEM;
	e->q = calloc(nqueues, sizeof(*e->q));
	if (e->q == NULL)
		goto fail;
	/* A data room for one whole Ethernet frame of this MTU behind the
	 * headroom (no scatter on receive). */
	uint32_t room = RTE_PKTMBUF_HEADROOM + (uint32_t)o.mtu + 14u + 4u;
	if (room < RTE_MBUF_DEFAULT_BUF_SIZE)
		room = RTE_MBUF_DEFAULT_BUF_SIZE;
	room = (room + 63u) & ~63u;
	int sock = rte_eth_dev_socket_id(e->port_id);
	if (sock < 0)
		sock = (int)rte_socket_id();
	for (uint16_t q = 0; q < nqueues; q++) {
		struct tw_dpdk_queue *dq = &e->q[q];
		char name[RTE_MEMPOOL_NAMESIZE];
		atomic_init(&dq->owner, NULL);
		atomic_init(&dq->lent, 0);
		snprintf(name, sizeof(name), "tw%u_%u_m%u", e->id, e->port_id,
			 q);
		uint32_t cache = o.mbuf_cache;
		if (cache > RTE_MEMPOOL_CACHE_MAX_SIZE)
			cache = RTE_MEMPOOL_CACHE_MAX_SIZE;
		if (cache * 1.5 > o.mbufs)
			cache = 0;
		if (e->af_xdp)
			dq->mp = pool_create_dense(name, o.mbufs, cache,
						   TW_DPDK_MBUF_PRIV,
						   (uint16_t)room, sock);
		else
			dq->mp = rte_pktmbuf_pool_create(name, o.mbufs, cache,
							 TW_DPDK_MBUF_PRIV,
							 (uint16_t)room, sock);
		snprintf(name, sizeof(name), "tw%u_%u_t%u", e->id, e->port_id,
			 q);
		dq->tx_mp = rte_pktmbuf_pool_create(name, o.mbufs, cache, 0,
						    (uint16_t)room, sock);
		snprintf(name, sizeof(name), "tw%u_%u_x%u", e->id, e->port_id,
			 q);
		uint32_t xcache = cache;
		if (xcache * 1.5 > o.ext_mbufs)
			xcache = 0;
		dq->ext_mp = rte_pktmbuf_pool_create(name, o.ext_mbufs, xcache,
						     0, 0, sock);
		snprintf(name, sizeof(name), "tw%u_%u_s%u", e->id, e->port_id,
			 q);
		dq->steer = rte_ring_create(name, o.steer_ring, sock,
					    RING_F_SC_DEQ);
		if (dq->mp == NULL || dq->tx_mp == NULL || dq->ext_mp == NULL ||
		    dq->steer == NULL) {
			*why = "mempool or ring creation failed (EAL memory: -m?)";
			goto fail;
		}
		st = TW_ENOTSUP;
		if (e->af_xdp)
			xsk_scan(e, true);
		int rq = rte_eth_rx_queue_setup(e->port_id, q, nrx,
						(unsigned)sock, NULL, dq->mp);
		/* An XDP socket closed a moment ago (an earlier port on this
		 * interface queue) lets go of the queue only when the kernel's
		 * deferred release has run: bind fails with EBUSY until then. */
		for (int i = 0; rq != 0 && e->af_xdp && i < 100; i++) {
			usleep(20000);
			rq = rte_eth_rx_queue_setup(e->port_id, q, nrx,
						    (unsigned)sock, NULL,
						    dq->mp);
		}
		if (e->af_xdp)
			xsk_scan(e, false);
		if (rq != 0 ||
		    rte_eth_tx_queue_setup(e->port_id, q, ntx, (unsigned)sock,
					   NULL) != 0) {
			*why = "queue setup failed";
			goto fail;
		}
		st = TW_ENOMEM;
	}
	st = TW_ENOTSUP;
	if (rte_eth_dev_start(e->port_id) != 0) {
		*why = "rte_eth_dev_start failed";
		goto fail;
	}
	struct rte_ether_addr mac;
	if (rte_eth_macaddr_get(e->port_id, &mac) != 0) {
		rte_eth_dev_stop(e->port_id);
		*why = "no MAC address";
		goto fail;
	}
	memcpy(e->ep.mac, mac.addr_bytes, 6);
	if (nqueues > 1 && !o.no_flow)
		e->flow_steering = flow_install(e);
	atomic_fetch_add(&envs_live, 1);
	*out = e;
	return TW_OK;

fail:
	if (e->af_xdp && e->nxsk != 0) {
		(void)rte_eth_dev_close(e->port_id);
		if (e->probed && e->dev != NULL)
			(void)rte_dev_remove(e->dev);
		e->probed = false;
		xsk_close_left(e);
	}
	queues_free(e);
	if (e->probed && e->dev != NULL)
		(void)rte_dev_remove(e->dev);
	free(e);
	if (reason == NULL)
		reason = st == TW_ENOMEM ? "out of memory"
					 : "port set-up failed";
	return tw_fail(st, "%s", reason);
}

tw_status tw_dpdk_env_destroy(tw_dpdk_env *e)
{
	if (e == NULL)
		return TW_OK;
	for (uint16_t q = 0; q < e->nq; q++)
		if (atomic_load(&e->q[q].owner) != NULL)
			return TW_EBUSY;
	for (uint16_t q = 0; q < e->nq; q++)
		if (atomic_load(&e->q[q].lent) != 0)
			return TW_EBUSY;
	if (e->flows != NULL) {
		for (uint16_t q = 0; q < e->nq; q++) {
			struct rte_flow_error err;
			rte_flow_destroy(e->port_id, e->flows[q], &err);
		}
		free(e->flows);
	}
	(void)rte_eth_dev_stop(e->port_id);
	if (strcmp(e->driver, "net_memif") == 0) {
		/* DPDK 22.11's memif: stopping tells the peer, whose control
		 * thread then tears its side down. When that peer is in this
		 * process and is destroyed next, its close could free what
		 * that thread still used (SIGSEGV in the EAL interrupt
		 * thread, seen under load in CI and in bench teardowns).
		 * Give the thread a moment first. */
		usleep(20000);
	}
	(void)rte_eth_dev_close(e->port_id);
	if (e->probed && e->dev != NULL)
		(void)rte_dev_remove(e->dev);
	xsk_close_left(e);
	queues_free(e);
	free(e);
	atomic_fetch_sub(&envs_live, 1);
	return TW_OK;
}

void tw_dpdk_env_info(const tw_dpdk_env *e, struct tw_dpdk_port_info *i)
{
	if (i == NULL)
		return;
	memset(i, 0, sizeof(*i));
	if (e == NULL)
		return;
	i->port_id = e->port_id;
	i->nqueues = e->nq;
	memcpy(i->mac, e->ep.mac, 6);
	snprintf(i->driver, sizeof(i->driver), "%s", e->driver);
	i->tx_ip_csum = e->tx_ip_csum;
	i->tx_udp_csum = e->tx_udp_csum;
	i->rx_ip_csum = e->rx_ip_csum;
	i->rx_udp_csum = e->rx_udp_csum;
	i->multi_seg = e->multi_seg;
	i->iova_va = e->iova_va;
	i->flow_steering = e->flow_steering;
	i->mss = (uint16_t)e->mss;
}

tw_status tw_dpdk_mem_register(tw_dpdk_env *e, void *base, size_t len)
{
	if (e == NULL || base == NULL || len == 0)
		return TW_EINVAL;
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	if (((uintptr_t)base & (pg - 1)) != 0 || (len & (pg - 1)) != 0)
		return TW_EINVAL;
	if (rte_extmem_register(base, len, NULL, 0, pg) != 0 &&
	    rte_errno != EEXIST)
		return TW_ENOTSUP;
	struct rte_device *dev = e->dev;
	rte_iova_t iova = e->iova_va ? (rte_iova_t)(uintptr_t)base
				     : rte_mem_virt2iova(base);
	if (dev != NULL && rte_dev_dma_map(dev, base, iova, len) != 0 &&
	    rte_errno != ENOTSUP)
		return TW_ENOTSUP;
	return TW_OK;
}
