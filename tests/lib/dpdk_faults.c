/* Receive faults for DPDK transport tests: the RX callback that drops,
 * duplicates and holds back packets, its random draws and counters. */
#include "tests/lib/dpdk_faults.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>

#include "dataplane/clock.h"
#include "dataplane/dpdk_limits.h"
#include "dataplane/err.h"

#define HOLD_NS_DEFAULT 200000u
/* Packets on their way up, in order: a burst the PMD filled has no room
 * for a copy or a released packet, so what does not fit goes up first on
 * the next poll. Four of the transport's largest bursts. */
#define FIFO_CAP (4u * TW_DPDK_MAX_BURST)

struct tw_dpdk_rx_faults {
	struct tw_dpdk_faults f;
	uint16_t port, queue;
	const struct rte_eth_rxtx_callback *cb;
	struct rte_mbuf *held;
	uint64_t held_at;
	uint64_t rng;
	struct tw_dpdk_fault_stats st;
	uint32_t head, count; /* fifo[head .. head + count) */
	struct rte_mbuf *fifo[FIFO_CAP];
};

/* xorshift64*: statistics, not secrets. */
static uint64_t rnd(struct tw_dpdk_rx_faults *x)
{
	uint64_t v = x->rng;
	v ^= v >> 12;
	v ^= v << 25;
	v ^= v >> 27;
	x->rng = v;
	return v * 0x2545F4914F6CDD1Dull;
}

static bool chance(struct tw_dpdk_rx_faults *x, uint32_t ppm)
{
	return ppm != 0 && (uint32_t)(rnd(x) % 1000000u) < ppm;
}

static void push(struct tw_dpdk_rx_faults *x, struct rte_mbuf *m)
{
	x->fifo[(x->head + x->count++) % FIFO_CAP] = m;
}

/*
 * pkts[0..nb) is what the PMD received; the caller has room for max.
 * Each packet draws its faults and what goes up joins the fifo, then up
 * to max leave it into pkts. Room for every packet of the burst: a copy
 * or a release goes in only if the rest of the burst still fits after
 * it (else no copy; the held packet stays held). The fifo holds at most
 * FIFO_CAP - max after each call as long as max stays the same (the
 * transport's burst), so a burst always fits.
 */
static uint16_t rx_faults(uint16_t port, uint16_t queue,
			  struct rte_mbuf *pkts[], uint16_t nb, uint16_t max,
			  void *arg)
{
	struct tw_dpdk_rx_faults *x = arg;
	(void)port;
	(void)queue;
	if (x->count + nb > FIFO_CAP)
		return nb; /* a larger burst than ever before: let it by */
	for (uint16_t i = 0; i < nb; i++) {
		struct rte_mbuf *m = pkts[i];
		uint32_t left = (uint32_t)nb - i; /* this one included */
		x->st.seen++;
		if (chance(x, x->f.drop_ppm)) {
			x->st.drops++;
			rte_pktmbuf_free(m);
			continue;
		}
		if (chance(x, x->f.dup_ppm) &&
		    x->count + 1 + left <= FIFO_CAP) {
			struct rte_mbuf *c = rte_pktmbuf_copy(m, m->pool, 0,
							      UINT32_MAX);
			if (c != NULL) {
				x->st.dups++;
				push(x, c);
			}
		}
		if (x->held == NULL && chance(x, x->f.reorder_ppm)) {
			x->st.reorders++;
			x->held = m;
			x->held_at = tw_now_ns();
			continue;
		}
		push(x, m);
		if (x->held != NULL && x->count + left <= FIFO_CAP) {
			push(x, x->held);
			x->held = NULL;
		}
	}
	/* Nothing came after it: a lone packet is late, not lost. */
	if (x->held != NULL && x->count < FIFO_CAP &&
	    tw_now_ns() - x->held_at > x->f.hold_ns) {
		push(x, x->held);
		x->held = NULL;
	}
	uint16_t n = x->count < max ? (uint16_t)x->count : max;
	for (uint16_t i = 0; i < n; i++)
		pkts[i] = x->fifo[(x->head + i) % FIFO_CAP];
	x->head = (x->head + n) % FIFO_CAP;
	x->count -= n;
	return n;
}

tw_status tw_dpdk_faults_install(tw_dpdk_env *env, uint16_t queue,
				 const struct tw_dpdk_faults *f,
				 tw_dpdk_rx_faults **out)
{
	if (out == NULL)
		return tw_fail_static(TW_EINVAL, "faults: no out");
	*out = NULL;
	if (env == NULL || f == NULL)
		return tw_fail_static(TW_EINVAL, "faults: no env or faults");
	if (f->drop_ppm > 1000000u || f->dup_ppm > 1000000u ||
	    f->reorder_ppm > 1000000u)
		return tw_fail(TW_EINVAL, "faults: %u/%u/%u per million",
			       f->drop_ppm, f->dup_ppm, f->reorder_ppm);
	struct tw_dpdk_port_info info;
	tw_dpdk_env_info(env, &info);
	if (queue >= info.nqueues)
		return tw_fail(TW_EINVAL, "faults: queue %u of %u", queue,
			       info.nqueues);
	struct tw_dpdk_rx_faults *x = calloc(1, sizeof(*x));
	if (x == NULL)
		return tw_fail_static(TW_ENOMEM, "faults: out of memory");
	x->f = *f;
	if (x->f.hold_ns == 0)
		x->f.hold_ns = HOLD_NS_DEFAULT;
	x->rng = f->seed ? f->seed
			 : tw_now_ns() ^ ((uint64_t)getpid() << 32) ^
				   (uintptr_t)x;
	if (x->rng == 0)
		x->rng = 1;
	x->port = info.port_id;
	x->queue = queue;
	x->cb = rte_eth_add_rx_callback(x->port, queue, rx_faults, x);
	if (x->cb == NULL) {
		int err = rte_errno;
		free(x);
		return tw_fail(err == ENOTSUP ? TW_ENOTSUP : TW_EINVAL,
			       "faults: rte_eth_add_rx_callback on port %u "
			       "queue %u: %s",
			       info.port_id, queue, rte_strerror(err));
	}
	*out = x;
	return TW_OK;
}

void tw_dpdk_faults_get_stats(const tw_dpdk_rx_faults *x,
			      struct tw_dpdk_fault_stats *s)
{
	if (s == NULL)
		return;
	if (x == NULL) {
		memset(s, 0, sizeof(*s));
		return;
	}
	*s = x->st;
}

void tw_dpdk_faults_remove(tw_dpdk_rx_faults *x)
{
	if (x == NULL)
		return;
	/* Nothing polls the queue (the caller's contract): the callback can
	 * be freed at once, as rte_eth_remove_rx_callback allows. */
	if (rte_eth_remove_rx_callback(x->port, x->queue, x->cb) == 0)
		rte_free((void *)(uintptr_t)x->cb);
	if (x->held != NULL)
		rte_pktmbuf_free(x->held);
	for (uint32_t i = 0; i < x->count; i++)
		rte_pktmbuf_free(x->fifo[(x->head + i) % FIFO_CAP]);
	free(x);
}
