/* A worker's statistics as DPDK telemetry commands (stats_telemetry.h). */
#include "rpc/stats_telemetry.h"

#include "tw_config.h"

#if TW_HAVE_DPDK

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <rte_telemetry.h>

#include "dataplane/log.h"
#include "rpc/agent_impl.h"
#include "rpc/stats_snap.h"

static pthread_mutex_t tel_mu = PTHREAD_MUTEX_INITIALIZER;
static const tw_agent *tel_agents[STATS_TEL_MAX_AGENTS];
static unsigned tel_n;
static pthread_once_t tel_once = PTHREAD_ONCE_INIT;

static const char *const tel_fields[STATS_TEL_FIELDS] = {
	"count", "mean", "min", "p50", "p90", "p99", "p999", "p9999", "max"};

/* The snapshot of the worker params names (none or empty: the first
 * listed), or NULL with why in *why. */
static tw_stats *tel_take(const char *params, const char **why)
{
	tw_stats *s = NULL;
	*why = "no such worker in this process";
	pthread_mutex_lock(&tel_mu);
	for (unsigned i = 0; i < tel_n; i++) {
		if (params != NULL && params[0] != '\0' &&
		    strcmp(params, tel_agents[i]->name) != 0)
			continue;
		tw_status st = tw_stats_take(tel_agents[i], &s);
		if (st != TW_OK) {
			*why = tw_errmsg(
				st); /* this thread's, until its next */
			s = NULL;
		}
		break;
	}
	pthread_mutex_unlock(&tel_mu);
	return s;
}

static int tel_error(struct rte_tel_data *d, const char *why)
{
	rte_tel_data_start_dict(d);
	rte_tel_data_add_dict_string(d, "error", why);
	return 0;
}

static int tel_workers(const char *cmd, const char *params,
		       struct rte_tel_data *d)
{
	(void)cmd;
	(void)params;
	rte_tel_data_start_array(d, RTE_TEL_STRING_VAL);
	pthread_mutex_lock(&tel_mu);
	for (unsigned i = 0; i < tel_n; i++)
		rte_tel_data_add_array_string(d, tel_agents[i]->name);
	pthread_mutex_unlock(&tel_mu);
	return 0;
}

/* /tensorwire/stats: s's counters. */
static void tel_counters(struct rte_tel_data *d, const tw_stats *s)
{
	rte_tel_data_start_dict(d);
	rte_tel_data_add_dict_string(d, "worker", s->worker);
	rte_tel_data_add_dict_u64(d, "rank", s->rank);
	rte_tel_data_add_dict_u64(d, "time_ns", s->time_ns);
	struct stats_counter c[STATS_MAX_COUNTERS];
	size_t n = stats_counter_list(&s->c, c);
	for (size_t i = 0; i < n; i++)
		rte_tel_data_add_dict_u64(d, c[i].name, c[i].v);
	/* Failures by kind, the non-zero ones: calls_failed/TW_ETIMEDOUT. */
	for (unsigned k = 1; k < TW_STATUS_COUNT_; k++) {
		char key[64];
		const char *kn = tw_status_name((tw_status)k);
		if (s->c.calls_failed[k] != 0) {
			snprintf(key, sizeof(key), "calls_failed/%s", kn);
			rte_tel_data_add_dict_u64(d, key, s->c.calls_failed[k]);
		}
		if (s->c.served_failed[k] != 0) {
			snprintf(key, sizeof(key), "served_failed/%s", kn);
			rte_tel_data_add_dict_u64(d, key,
						  s->c.served_failed[k]);
		}
	}
}

/* name in DPDK's key alphabet: letters, digits, '_' and '/'. */
static void tel_key(char *key, size_t n, const char *dir, const char *name)
{
	int k = snprintf(key, n, "%s/%s", dir, name);
	size_t len = k < 0 ? 0 : (size_t)k < n ? (size_t)k : n - 1;
	for (size_t i = strlen(dir) + 1; i < len; i++) {
		char ch = key[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '/'))
			key[i] = '_';
	}
}

/* h under key as an array of tel_fields; false when DPDK refused it. */
static bool tel_hist(struct rte_tel_data *d, const char *key,
		     const struct tw_hist *h)
{
	struct rte_tel_data *a = rte_tel_data_alloc();
	if (a == NULL)
		return false;
	rte_tel_data_start_array(a, RTE_TEL_U64_VAL);
	rte_tel_data_add_array_u64(a, h->count);
	rte_tel_data_add_array_u64(a, (uint64_t)tw_hist_mean(h));
	rte_tel_data_add_array_u64(a, h->min);
	for (size_t i = 0; i < STATS_NQ; i++)
		rte_tel_data_add_array_u64(a, tw_hist_quantile(h, stats_qs[i]));
	rte_tel_data_add_array_u64(a, h->max);
	if (rte_tel_data_add_dict_container(d, key, a, 0) != 0) {
		rte_tel_data_free(a);
		return false;
	}
	return true;
}

/* The totals (with_totals) and entries e[0..n) in both directions. */
static void tel_hists(struct rte_tel_data *d, const tw_stats *s,
		      bool with_totals, const struct stats_entry *e, uint32_t n)
{
	static const char *const dir[2] = {"rtt", "serve"};
	rte_tel_data_start_dict(d);
	rte_tel_data_add_dict_string(d, "worker", s->worker);
	struct rte_tel_data *f = rte_tel_data_alloc();
	if (f != NULL) {
		rte_tel_data_start_array(f, RTE_TEL_STRING_VAL);
		for (size_t i = 0; i < STATS_TEL_FIELDS; i++)
			rte_tel_data_add_array_string(f, tel_fields[i]);
		if (rte_tel_data_add_dict_container(d, "fields", f, 0) != 0)
			rte_tel_data_free(f);
	}
	unsigned added = 0;
	uint64_t omitted = 0;
	for (int k = 0; k < 2; k++) {
		if (with_totals) {
			if (added < STATS_TEL_MAX_HISTS &&
			    tel_hist(d, dir[k], &s->total[k]))
				added++;
			else
				omitted++;
		}
		for (uint32_t i = 0; i < n; i++) {
			if (e[i].h[k].count == 0)
				continue;
			char key[RTE_TEL_MAX_STRING_LEN];
			tel_key(key, sizeof(key), dir[k], e[i].name);
			if (added < STATS_TEL_MAX_HISTS &&
			    tel_hist(d, key, &e[i].h[k]))
				added++;
			else
				omitted++;
		}
	}
	rte_tel_data_add_dict_u64(d, "omitted", omitted);
}

/* /tensorwire/stats, /hist and /hist_peers: a snapshot of the worker
 * params names, rendered as cmd asks. */
static int tel_answer(const char *cmd, const char *params,
		      struct rte_tel_data *d)
{
	const char *why;
	tw_stats *s = tel_take(params, &why);
	if (s == NULL)
		return tel_error(d, why);
	if (strcmp(cmd, "/tensorwire/stats") == 0)
		tel_counters(d, s);
	else if (strcmp(cmd, "/tensorwire/hist") == 0)
		tel_hists(d, s, true, s->fn, s->nfn);
	else
		tel_hists(d, s, false, s->peer, s->npeer);
	tw_stats_free(s);
	return 0;
}

static void tel_register(void)
{
	static const struct {
		const char *cmd;
		telemetry_cb fn;
		const char *help;
	} cmds[] = {
		{"/tensorwire/workers", tel_workers,
		 "tensorwire workers of this process. Takes no parameters"},
		{"/tensorwire/stats", tel_answer,
		 "A tensorwire worker's counters. Parameter: worker name "
		 "(default: the first)"},
		{"/tensorwire/hist", tel_answer,
		 "A tensorwire worker's latency histograms, in total and per "
		 "function (ns). Parameter: worker name"},
		{"/tensorwire/hist_peers", tel_answer,
		 "A tensorwire worker's latency histograms per peer (ns). "
		 "Parameter: worker name"},
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		int r = rte_telemetry_register_cmd(cmds[i].cmd, cmds[i].fn,
						   cmds[i].help);
		if (r != 0)
			TW_LOG(TW_LOG_WARN, "telemetry_refused",
			       "cmd=%s err=%d", cmds[i].cmd, r);
	}
}

void stats_telemetry_add(const tw_agent *a)
{
	pthread_once(&tel_once, tel_register);
	pthread_mutex_lock(&tel_mu);
	bool full = tel_n == STATS_TEL_MAX_AGENTS;
	if (!full)
		tel_agents[tel_n++] = a;
	pthread_mutex_unlock(&tel_mu);
	if (full)
		TW_LOG(TW_LOG_WARN, "telemetry_full",
		       "worker=%s max=%u reason=\"not listed in DPDK "
		       "telemetry\"",
		       a->name, STATS_TEL_MAX_AGENTS);
}

void stats_telemetry_remove(const tw_agent *a)
{
	pthread_mutex_lock(&tel_mu);
	for (unsigned i = 0; i < tel_n; i++) {
		if (tel_agents[i] != a)
			continue;
		/* In order: the first listed stays the default. */
		memmove(&tel_agents[i], &tel_agents[i + 1],
			(tel_n - i - 1) * sizeof(tel_agents[0]));
		tel_n--;
		break;
	}
	pthread_mutex_unlock(&tel_mu);
}

#else

void stats_telemetry_add(const tw_agent *a)
{
	(void)a;
}

void stats_telemetry_remove(const tw_agent *a)
{
	(void)a;
}

#endif
