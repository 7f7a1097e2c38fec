/* The stats snapshot (<tensorwire/stats.h>): the loops' counters and
 * histograms summed with relaxed loads while they run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tensorwire/stats.h>

#include "dataplane/err.h"
#include "rpc/agent_impl.h"
#include "rpc/stats_snap.h"

static inline uint64_t ld(const stat_t *s)
{
	return atomic_load_explicit(s, memory_order_relaxed);
}

/* A plain field a loop's thread writes (a gauge): relaxed. */
#define GAUGE(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static void sum_counters(const tw_agent *a, struct tw_stats_counters *c)
{
	tw_agent_get_stats(a, &c->agent);
	tw_agent_rref_stats(a, &c->rref);
	for (uint32_t i = 0; i < a->nloops; i++) {
		struct agent_loop *l = &a->loops[i];
		const struct loop_stats *ls = &l->stats;
		c->calls_ok += ld(&ls->calls_ok);
		c->served_ok += ld(&ls->served_ok);
		for (unsigned k = 1; k < TW_STATUS_COUNT_; k++) {
			c->calls_failed[k] += ld(&ls->calls_failed[k]);
			c->served_failed[k] += ld(&ls->served_failed[k]);
		}
		c->frames_in += ld(&ls->frames_in);
		c->bytes_in += ld(&ls->bytes_in);
		c->frames_out += ld(&ls->frames_out);
		c->bytes_out += ld(&ls->bytes_out);
		uint64_t hwm = ld(&ls->pending_hwm);
		if (hwm > c->pending_hwm)
			c->pending_hwm = hwm;
		hwm = ld(&ls->tx_inflight_hwm);
		if (hwm > c->tx_inflight_hwm)
			c->tx_inflight_hwm = hwm;
		c->conns_open += GAUGE(l->nconns);
		c->pending += GAUGE(l->pend.count);
		int64_t inflight = GAUGE(l->tx_inflight);
		c->tx_inflight += inflight > 0 ? (uint64_t)inflight : 0;
		c->backlog_conns += GAUGE(l->nbacklog);
		/* Set once by the loop at its start; destroyed only after the
		 * stat socket stopped. */
		tw_transport *t = GAUGE(l->t);
		if (t != NULL) {
			struct tw_transport_counters tc = {0};
			tw_transport_counters(t, &tc);
			c->retransmits += tc.retransmits;
			c->duplicates += tc.duplicates;
		}
	}
	c->exec_queued = executor_queued(a->exec);
	if (a->txpool != NULL) {
		c->txpool_in_use = tw_buf_pool_in_use(a->txpool);
		c->txpool_size = tw_buf_pool_count(a->txpool);
	}
}

static bool hist_empty(const struct stats_entry *e)
{
	return e->h[0].count == 0 && e->h[1].count == 0;
}

/* Sum slot i of every loop's (rtt, srv) arrays into e. */
static void sum_slot(const tw_agent *a, bool peer, uint32_t i,
		     struct stats_entry *e)
{
	tw_hist_init(&e->h[0]);
	tw_hist_init(&e->h[1]);
	for (uint32_t k = 0; k < a->nloops; k++) {
		const struct stats_loop *o = &a->loops[k].obs;
		tw_hist_add(&e->h[0], peer ? &o->peer_rtt[i] : &o->fn_rtt[i]);
		tw_hist_add(&e->h[1], peer ? &o->peer_srv[i] : &o->fn_srv[i]);
	}
}

tw_status tw_stats_take(const tw_agent *a, tw_stats **out)
{
	if (a == NULL || out == NULL)
		return tw_fail(TW_EINVAL, "tw_stats_take: NULL argument");
	*out = NULL;
	if (a->loops == NULL || a->loops[0].obs.fn_rtt == NULL)
		return tw_fail(TW_EINVAL, "tw_stats_take: the agent has no "
					  "run loops yet");
	uint32_t nfn = atomic_load_explicit(&a->fns.n, memory_order_acquire);
	uint32_t npeer = a->loops[0].obs.npeers;
	tw_stats *s = calloc(1, sizeof(*s));
	if (s != NULL) {
		s->fn = calloc((size_t)nfn + 1, sizeof(*s->fn));
		s->peer = calloc((size_t)npeer + 1, sizeof(*s->peer));
	}
	if (s == NULL || s->fn == NULL || s->peer == NULL) {
		tw_stats_free(s);
		return tw_fail(TW_ENOMEM, "no memory for a stats snapshot");
	}
	snprintf(s->worker, sizeof(s->worker), "%s", a->name);
	s->rank = a->rank;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	s->time_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	sum_counters(a, &s->c);

	for (uint32_t i = 0; i <= nfn; i++) {
		/* The last, slot max: "other". */
		uint32_t slot = i < nfn ? i : a->fns.max;
		struct stats_entry *e = &s->fn[s->nfn];
		sum_slot(a, false, slot, e);
		if (hist_empty(e))
			continue;
		e->id = i < nfn ? (int64_t)i : -1;
		snprintf(e->name, sizeof(e->name), "%s",
			 i < nfn ? stats_fn_name(&a->fns, i) : "other");
		if (i == nfn)
			s->c.untracked_fn_calls = e->h[0].count + e->h[1].count;
		s->nfn++;
	}
	tw_hist_init(&s->total[0]);
	tw_hist_init(&s->total[1]);
	for (uint32_t i = 0; i <= npeer; i++) {
		struct stats_entry *e = &s->peer[s->npeer];
		sum_slot(a, true, i, e);
		/* Every call is in exactly one peer's entry. */
		tw_hist_add(&s->total[0], &e->h[0]);
		tw_hist_add(&s->total[1], &e->h[1]);
		if (hist_empty(e))
			continue;
		e->id = i < npeer ? (int64_t)i : -1;
		/* Names once the membership is known (a snapshot may come
		 * from the stat socket before). */
		snprintf(e->name, sizeof(e->name), "%s",
			 i == npeer ? "other"
			 : atomic_load(&a->members_known)
				 ? agent_worker_name(a, i)
				 : "?");
		s->npeer++;
	}
	*out = s;
	return TW_OK;
}

void tw_stats_free(tw_stats *s)
{
	if (s == NULL)
		return;
	free(s->fn);
	free(s->peer);
	free(s);
}

const struct tw_stats_counters *tw_stats_counters(const tw_stats *s)
{
	return s == NULL ? NULL : &s->c;
}

const char *tw_stats_worker(const tw_stats *s)
{
	return s == NULL ? NULL : s->worker;
}

uint32_t tw_stats_rank(const tw_stats *s)
{
	return s == NULL ? 0 : s->rank;
}

uint64_t tw_stats_time_ns(const tw_stats *s)
{
	return s == NULL ? 0 : s->time_ns;
}

static bool dir_ok(enum tw_stats_dir d)
{
	return d == TW_STATS_RTT || d == TW_STATS_SERVE;
}

const struct tw_hist *tw_stats_total(const tw_stats *s, enum tw_stats_dir d)
{
	return s == NULL || !dir_ok(d) ? NULL : &s->total[d];
}

uint32_t tw_stats_nfunctions(const tw_stats *s)
{
	return s == NULL ? 0 : s->nfn;
}

const char *tw_stats_function(const tw_stats *s, uint32_t i)
{
	return s == NULL || i >= s->nfn ? NULL : s->fn[i].name;
}

const struct tw_hist *tw_stats_function_hist(const tw_stats *s, uint32_t i,
					     enum tw_stats_dir d)
{
	return s == NULL || i >= s->nfn || !dir_ok(d) ? NULL : &s->fn[i].h[d];
}

uint32_t tw_stats_npeers(const tw_stats *s)
{
	return s == NULL ? 0 : s->npeer;
}

int64_t tw_stats_peer_id(const tw_stats *s, uint32_t i)
{
	return s == NULL || i >= s->npeer ? -1 : s->peer[i].id;
}

const char *tw_stats_peer_name(const tw_stats *s, uint32_t i)
{
	return s == NULL || i >= s->npeer ? NULL : s->peer[i].name;
}

const struct tw_hist *tw_stats_peer_hist(const tw_stats *s, uint32_t i,
					 enum tw_stats_dir d)
{
	return s == NULL || i >= s->npeer || !dir_ok(d) ? NULL
							: &s->peer[i].h[d];
}
