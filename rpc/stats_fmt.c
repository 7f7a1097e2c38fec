/* A stats snapshot as JSON and as text (tw_stats_json, tw_stats_text). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/err.h"
#include "rpc/stats_snap.h"

/* A growing string; oom once any append failed. */
struct sb {
	char *p;
	size_t len, cap;
	bool oom;
};

__attribute__((format(printf, 2, 3))) static void put(struct sb *b,
						      const char *fmt, ...)
{
	if (b->oom)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap * 2 + (size_t)n;
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

/* A JSON string: quotes, backslashes and bytes outside printable ASCII
 * escaped (names are the callers' bytes, not necessarily UTF-8). */
static void put_jstr(struct sb *b, const char *s)
{
	put(b, "\"");
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\')
			put(b, "\\%c", *c);
		else if (*c < 0x20 || *c >= 0x7f)
			put(b, "\\u%04x", *c);
		else
			put(b, "%c", *c);
	}
	put(b, "\"");
}

const double stats_qs[STATS_NQ] = {0.5, 0.9, 0.99, 0.999, 0.9999};
const char *const stats_qnames[STATS_NQ] = {"p50", "p90", "p99", "p999",
					    "p9999"};

static void put_jhist(struct sb *b, const struct tw_hist *h)
{
	put(b, "{\"count\":%llu,\"mean\":%.0f,\"min\":%llu",
	    (unsigned long long)h->count, tw_hist_mean(h),
	    (unsigned long long)h->min);
	for (size_t i = 0; i < STATS_NQ; i++)
		put(b, ",\"%s\":%llu", stats_qnames[i],
		    (unsigned long long)tw_hist_quantile(h, stats_qs[i]));
	put(b, ",\"max\":%llu,\"saturated\":%llu}", (unsigned long long)h->max,
	    (unsigned long long)h->saturated);
}

static void put_jentries(struct sb *b, const char *key,
			 const struct stats_entry *e, uint32_t n)
{
	put(b, ",\"%s\":[", key);
	for (uint32_t i = 0; i < n; i++) {
		put(b, "%s{\"name\":", i ? "," : "");
		put_jstr(b, e[i].name);
		put(b, ",\"id\":%lld,\"rtt\":", (long long)e[i].id);
		put_jhist(b, &e[i].h[TW_STATS_RTT]);
		put(b, ",\"serve\":");
		put_jhist(b, &e[i].h[TW_STATS_SERVE]);
		put(b, "}");
	}
	put(b, "]");
}

size_t stats_counter_list(const struct tw_stats_counters *c,
			  struct stats_counter *o)
{
	size_t n = 0;
#define C(field, nm) o[n++] = (struct stats_counter){nm, c->field}
	C(agent.calls_started, "calls_started");
	C(agent.calls_sent, "calls_sent");
	C(calls_ok, "calls_ok");
	C(agent.calls_served, "calls_served");
	C(served_ok, "served_ok");
	C(agent.timeouts, "timeouts");
	C(agent.late_responses, "late_responses");
	C(agent.bad_frames, "bad_frames");
	C(frames_in, "frames_in");
	C(bytes_in, "bytes_in");
	C(frames_out, "frames_out");
	C(bytes_out, "bytes_out");
	C(conns_open, "conns_open");
	C(agent.conns_opened, "conns_opened");
	C(agent.conns_closed, "conns_closed");
	C(agent.conns_same_host, "conns_same_host");
	C(agent.conns_shm, "conns_shm");
	C(agent.connect_failures, "connect_failures");
	C(agent.redial_waits, "redial_waits");
	C(pending, "pending");
	C(pending_hwm, "pending_hwm");
	C(tx_inflight, "tx_inflight");
	C(tx_inflight_hwm, "tx_inflight_hwm");
	C(backlog_conns, "backlog_conns");
	C(agent.rx_pauses, "rx_pauses");
	C(exec_queued, "exec_queued");
	C(agent.exec_jobs, "exec_jobs");
	C(agent.exec_expired, "exec_expired");
	C(agent.offloaded, "offloaded");
	C(txpool_in_use, "txpool_in_use");
	C(txpool_size, "txpool_size");
	C(retransmits, "retransmits");
	C(duplicates, "duplicates");
	C(agent.lent_waits, "lent_waits");
	C(agent.auth_ok, "auth_ok");
	C(agent.auth_failed, "auth_failed");
	C(agent.auth_timeouts, "auth_timeouts");
	C(agent.auth_refused, "auth_refused");
	C(agent.auth_evicted, "auth_evicted");
	C(agent.spoofed_frames, "spoofed_frames");
	C(agent.limit_refusals, "limit_refusals");
	C(agent.oversize, "oversize");
	C(agent.same_host_fallbacks, "same_host_fallbacks");
	C(rref.owned, "rref_owned");
	C(rref.owner_users, "rref_owner_users");
	C(rref.forks_pending, "rref_forks_pending");
	C(rref.users, "rref_users");
	C(rref.pending_users, "rref_pending_users");
	C(rref.deletes_sent, "rref_deletes_sent");
	C(rref.deletes_received, "rref_deletes_received");
	C(rref.refused, "rref_refused");
	C(rref.waiting, "rref_waiting");
	C(rref.dead_users_dropped, "rref_dead_users_dropped");
	C(untracked_fn_calls, "untracked_fn_calls");
#undef C
	return n;
}

static void put_jkinds(struct sb *b, const char *key, const uint64_t *v)
{
	put(b, ",\"%s\":{", key);
	bool first = true;
	for (unsigned k = 1; k < TW_STATUS_COUNT_; k++) {
		if (v[k] == 0)
			continue;
		put(b, "%s\"%s\":%llu", first ? "" : ",",
		    tw_status_name((tw_status)k), (unsigned long long)v[k]);
		first = false;
	}
	put(b, "}");
}

static tw_status finish(struct sb *b, char **out)
{
	if (b->oom || b->p == NULL) {
		free(b->p);
		return tw_fail(TW_ENOMEM, "no memory to format statistics");
	}
	*out = b->p;
	return TW_OK;
}

tw_status tw_stats_json(const tw_stats *s, char **out)
{
	if (s == NULL || out == NULL)
		return tw_fail(TW_EINVAL, "tw_stats_json: NULL argument");
	*out = NULL;
	struct sb b = {0};
	put(&b, "{\"worker\":");
	put_jstr(&b, s->worker);
	put(&b, ",\"rank\":%u,\"time_ns\":%llu,\"counters\":{", s->rank,
	    (unsigned long long)s->time_ns);
	struct stats_counter c[STATS_MAX_COUNTERS];
	size_t n = stats_counter_list(&s->c, c);
	for (size_t i = 0; i < n; i++)
		put(&b, "%s\"%s\":%llu", i ? "," : "", c[i].name,
		    (unsigned long long)c[i].v);
	put(&b, "}");
	put_jkinds(&b, "calls_failed", s->c.calls_failed);
	put_jkinds(&b, "served_failed", s->c.served_failed);
	put(&b, ",\"rtt\":");
	put_jhist(&b, &s->total[TW_STATS_RTT]);
	put(&b, ",\"serve\":");
	put_jhist(&b, &s->total[TW_STATS_SERVE]);
	put_jentries(&b, "functions", s->fn, s->nfn);
	put_jentries(&b, "peers", s->peer, s->npeer);
	put(&b, "}\n");
	return finish(&b, out);
}

/* A latency for people: ns, us or ms, three significant digits. */
static void put_ns(struct sb *b, uint64_t ns)
{
	if (ns < 10000)
		put(b, " %8lluns", (unsigned long long)ns);
	else if (ns < 10000000)
		put(b, " %8.1fus", (double)ns / 1e3);
	else
		put(b, " %8.1fms", (double)ns / 1e6);
}

static void put_thist(struct sb *b, const char *what, const char *name,
		      const struct tw_hist *h)
{
	if (h->count == 0)
		return;
	put(b, "%-5s %-28.28s %10llu", what, name,
	    (unsigned long long)h->count);
	for (size_t i = 0; i < STATS_NQ; i++)
		put_ns(b, tw_hist_quantile(h, stats_qs[i]));
	put_ns(b, h->max);
	put(b, "\n");
}

tw_status tw_stats_text(const tw_stats *s, char **out)
{
	if (s == NULL || out == NULL)
		return tw_fail(TW_EINVAL, "tw_stats_text: NULL argument");
	*out = NULL;
	struct sb b = {0};
	put(&b, "worker %s (rank %u)\n", s->worker, s->rank);
	struct stats_counter c[STATS_MAX_COUNTERS];
	size_t n = stats_counter_list(&s->c, c), col = 0;
	for (size_t i = 0; i < n; i++) {
		if (c[i].v == 0)
			continue;
		put(&b, "%-24s %14llu%s", c[i].name, (unsigned long long)c[i].v,
		    ++col % 2 ? "   " : "\n");
	}
	if (col % 2)
		put(&b, "\n");
	for (unsigned k = 1; k < TW_STATUS_COUNT_; k++) {
		if (s->c.calls_failed[k] != 0)
			put(&b, "calls_failed  %-16s %llu\n",
			    tw_status_name((tw_status)k),
			    (unsigned long long)s->c.calls_failed[k]);
		if (s->c.served_failed[k] != 0)
			put(&b, "served_failed %-16s %llu\n",
			    tw_status_name((tw_status)k),
			    (unsigned long long)s->c.served_failed[k]);
	}
	put(&b, "\n%-5s %-28s %10s %10s %10s %10s %10s %10s %10s\n", "",
	    "latency", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max");
	static const char *const dir[] = {"rtt", "serve"};
	for (int d = 0; d < 2; d++) {
		put_thist(&b, dir[d], "(all)", &s->total[d]);
		for (uint32_t i = 0; i < s->nfn; i++)
			put_thist(&b, dir[d], s->fn[i].name, &s->fn[i].h[d]);
		for (uint32_t i = 0; i < s->npeer; i++) {
			char nm[STATS_NAME_MAX + 8];
			snprintf(nm, sizeof(nm), "peer %s", s->peer[i].name);
			put_thist(&b, dir[d], nm, &s->peer[i].h[d]);
		}
	}
	return finish(&b, out);
}
