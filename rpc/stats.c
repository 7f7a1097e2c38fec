/* The agent's histogram tables (rpc/stats.h): function names to slots,
 * and each loop's histograms. */
#include "rpc/stats.h"

#include <stdlib.h>
#include <string.h>

#include "dataplane/err.h"

tw_status stats_fns_init(struct stats_fns *f, uint32_t max)
{
	memset(f, 0, sizeof(*f));
	uint32_t slots = 8;
	while (slots < 2 * (uint64_t)max)
		slots *= 2;
	f->max = max;
	f->mask = slots - 1;
	f->index = calloc(slots, sizeof(*f->index));
	f->names = calloc(max ? max : 1, sizeof(*f->names));
	if (f->index == NULL || f->names == NULL) {
		stats_fns_fini(f);
		return tw_fail(TW_ENOMEM,
			       "no memory for %u function names' "
			       "statistics",
			       max);
	}
	atomic_init(&f->full, max == 0);
	pthread_mutex_init(&f->mu, NULL);
	return TW_OK;
}

void stats_fns_fini(struct stats_fns *f)
{
	if (f->index != NULL)
		pthread_mutex_destroy(&f->mu);
	free((void *)f->index);
	free(f->names);
	f->index = NULL;
	f->names = NULL;
}

static uint32_t find(struct stats_fns *f, const char *name, size_t len,
		     uint32_t hash)
{
	for (uint32_t i = hash & f->mask;; i = (i + 1) & f->mask) {
		uint32_t v = atomic_load_explicit(&f->index[i],
						  memory_order_acquire);
		if (v == 0)
			return UINT32_MAX;
		const struct stats_fn_name *e = &f->names[v - 1];
		if (e->hash == hash && e->len == len &&
		    memcmp(e->name, name, len) == 0)
			return v - 1;
	}
}

uint32_t stats_fn_slot(struct stats_fns *f, const char *name, size_t len,
		       uint32_t hash)
{
	if (len >= STATS_NAME_MAX)
		return f->max;
	uint32_t s = find(f, name, len, hash);
	if (__builtin_expect(s != UINT32_MAX, 1))
		return s;
	if (atomic_load_explicit(&f->full, memory_order_relaxed))
		return f->max;
	pthread_mutex_lock(&f->mu);
	s = find(f, name, len, hash); /* another thread's, meanwhile */
	uint32_t n = atomic_load_explicit(&f->n, memory_order_relaxed);
	if (s == UINT32_MAX && n < f->max) {
		struct stats_fn_name *e = &f->names[n];
		e->hash = hash;
		e->len = (uint32_t)len;
		memcpy(e->name, name, len);
		e->name[len] = '\0';
		uint32_t i = hash & f->mask;
		while (atomic_load_explicit(&f->index[i],
					    memory_order_relaxed) != 0)
			i = (i + 1) & f->mask;
		/* Release: a reader that sees the slot sees the name. */
		atomic_store_explicit(&f->index[i], n + 1,
				      memory_order_release);
		atomic_store_explicit(&f->n, n + 1, memory_order_release);
		s = n;
		if (n + 1 == f->max)
			atomic_store(&f->full, true);
	} else if (s == UINT32_MAX) {
		s = f->max;
	}
	pthread_mutex_unlock(&f->mu);
	return s;
}

const char *stats_fn_name(const struct stats_fns *f, uint32_t i)
{
	return f->names[i].name;
}

tw_status stats_loop_init(struct stats_loop *s, uint32_t nfns, uint32_t npeers)
{
	memset(s, 0, sizeof(*s));
	s->nfns = nfns;
	s->npeers = npeers;
	/* calloc: pages of histograms never recorded stay unbacked. */
	s->fn_rtt = calloc(2 * ((size_t)nfns + 1), sizeof(struct tw_hist));
	s->peer_rtt = calloc(2 * ((size_t)npeers + 1), sizeof(struct tw_hist));
	if (s->fn_rtt == NULL || s->peer_rtt == NULL) {
		stats_loop_fini(s);
		return tw_fail(TW_ENOMEM, "no memory for a run loop's "
					  "histograms");
	}
	s->fn_srv = s->fn_rtt + nfns + 1;
	s->peer_srv = s->peer_rtt + npeers + 1;
	return TW_OK;
}

void stats_loop_fini(struct stats_loop *s)
{
	free(s->fn_rtt);
	free(s->peer_rtt);
	memset(s, 0, sizeof(*s));
}
