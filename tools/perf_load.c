/* perf_load: tw-perf's load on one peer (perf_load.h). */
#include "perf_load.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "perf_net.h"

struct run;

/* One call in flight. */
struct slot {
	struct run *run;
	uint32_t idx;
	tw_future *f;
	uint64_t sched; /* when it was due (closed loop: when it left) */
	uint64_t end;   /* when its future completed */
};

struct run {
	tw_agent *a;
	const struct pl_conf *c;
	struct pl_result *r;
	struct slot *slots;
	uint32_t *free_idx, nfree; /* slots not in flight */
	uint32_t *done_idx, ndone; /* completed, not yet counted */
	struct tw_hist *iv;        /* this interval's latencies */
};

/* The future's callback, on this thread (the agent is embedded): note
 * the time; the counting waits for the poll's return. */
static void on_done(tw_future *f, void *arg)
{
	struct slot *s = arg;
	(void)f;
	s->end = pn_mono_ns();
	s->run->done_idx[s->run->ndone++] = s->idx;
}

/* Count the calls completed since the last poll and free their slots. */
static void drain(struct run *u)
{
	for (uint32_t i = 0; i < u->ndone; i++) {
		struct slot *s = &u->slots[u->done_idx[i]];
		tw_status st = tw_future_status(s->f);
		uint64_t lat = s->end - s->sched;
		if (st == TW_OK) {
			u->r->ok++;
		} else {
			u->r->errors++;
			u->r->by_kind[(unsigned)st < TW_STATUS_COUNT_
					      ? st
					      : TW_EPROTO]++;
		}
		tw_hist_record(&u->r->lat, lat);
		tw_hist_record(u->iv, lat);
		tw_future_release(s->f);
		s->f = NULL;
		u->free_idx[u->nfree++] = s->idx;
	}
	u->ndone = 0;
}

/* Make one call due at sched. TW_ENOSPC: the loop's queue is full, not
 * made (try again after a poll); any other failure is the call's end,
 * counted. */
static tw_status issue(struct run *u, uint64_t sched)
{
	const struct pl_conf *c = u->c;
	struct slot *s = &u->slots[u->free_idx[u->nfree - 1]];
	bool inject = c->fail_every != 0 &&
		      (u->r->calls + 1) % c->fail_every == 0;
	tw_future *f;
	tw_status st = tw_rpc_async_id(u->a, c->peer,
				       inject ? c->fail_fn : c->fn, c->args,
				       NULL, c->timeout_ms, &f);
	if (st == TW_ENOSPC)
		return st;
	u->r->calls++;
	u->r->injected += inject;
	if (st != TW_OK) {
		u->r->errors++;
		u->r->by_kind[st]++;
		return st;
	}
	u->nfree--;
	s->f = f;
	s->sched = sched;
	/* A future's first callback takes no allocation: this cannot fail
	 * but for a future that has one already. Should it, the call is
	 * waited for here, so that no slot is lost. */
	if (tw_future_then(f, on_done, s) != TW_OK) {
		tw_agent_wait(u->a, f, -1);
		on_done(f, s);
	}
	return TW_OK;
}

static void interval_row(struct run *u, uint64_t t0, uint64_t now,
			 uint64_t *last_t, struct pl_result *prev,
			 const struct pl_out *out)
{
	const struct pl_result *r = u->r;
	uint64_t ok = r->ok - prev->ok, err = r->errors - prev->errors;
	double dt = (double)(now - *last_t) / 1e9;
	fprintf(out->ivf,
		"%s,%.3f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.1f,%" PRIu64
		",%" PRIu64 ",%" PRIu64 "\n",
		out->label, (double)(now - t0) / 1e9, ok + err, ok, err,
		dt > 0 ? (double)(ok + err) / dt : 0.0,
		tw_hist_quantile(u->iv, 0.5), tw_hist_quantile(u->iv, 0.99),
		u->iv->max);
	prev->ok = r->ok;
	prev->errors = r->errors;
	*last_t = now;
	tw_hist_init(u->iv);
}

/* c's load until its count or duration, into u->r. */
static void drive(struct run *u, const struct pl_out *out)
{
	const struct pl_conf *c = u->c;
	struct pl_result *r = u->r;
	uint64_t period = c->rate > 0 ? (uint64_t)(1e9 / c->rate) : 0;
	uint64_t t0 = pn_mono_ns(), next = t0, last_end = t0;
	uint64_t end = c->count ? UINT64_MAX
				: t0 + (uint64_t)(c->duration_s * 1e9);
	uint64_t iv_ns = (uint64_t)(c->interval_s * 1e9), iv_t = t0;
	struct pl_result prev = {0};
	bool more = true;
	for (;;) {
		uint64_t now = pn_mono_ns();
		while (more && u->nfree > 0) {
			uint64_t sched = period ? next : now;
			if (period && sched > now)
				break;
			if (issue(u, sched) == TW_ENOSPC)
				break;
			if (period) {
				if (now - sched > r->max_lag_ns)
					r->max_lag_ns = now - sched;
				next += period;
			}
			more = c->count ? r->calls < c->count
			       : period ? next < end
					: now < end;
		}
		if (!more && u->nfree == c->inflight)
			break;
		tw_agent_poll(u->a);
		for (uint32_t i = 0; i < u->ndone; i++)
			if (u->slots[u->done_idx[i]].end > last_end)
				last_end = u->slots[u->done_idx[i]].end;
		drain(u);
		if (!c->count && !period && more)
			more = pn_mono_ns() < end;
		if (out != NULL && out->ivf != NULL && iv_ns &&
		    now - iv_t >= iv_ns)
			interval_row(u, t0, now, &iv_t, &prev, out);
	}
	if (out != NULL && out->ivf != NULL && iv_ns &&
	    r->ok + r->errors > prev.ok + prev.errors)
		interval_row(u, t0, pn_mono_ns(), &iv_t, &prev, out);
	r->secs = (double)(last_end - t0) / 1e9;
}

static void lib_counts(tw_agent *a, uint64_t *ok, uint64_t *failed)
{
	tw_stats *s;
	*ok = *failed = 0;
	if (tw_stats_take(a, &s) != TW_OK)
		return;
	const struct tw_stats_counters *k = tw_stats_counters(s);
	*ok = k->calls_ok;
	for (int i = 0; i < TW_STATUS_COUNT_; i++)
		*failed += k->calls_failed[i];
	tw_stats_free(s);
}

tw_status pl_run(tw_agent *a, const struct pl_conf *c, uint64_t warmup,
		 const struct pl_out *out, struct pl_result *r)
{
	if (c->inflight == 0 || c->inflight > PL_MAX_INFLIGHT ||
	    (c->count == 0 && !(c->duration_s > 0)) || c->rate < 0 ||
	    (c->fail_every != 0 && c->fail_fn == NULL))
		return TW_EINVAL;
	struct run u = {.a = a, .c = c};
	u.slots = calloc(c->inflight, sizeof(*u.slots));
	u.free_idx = calloc(c->inflight, sizeof(*u.free_idx));
	u.done_idx = calloc(c->inflight, sizeof(*u.done_idx));
	u.iv = malloc(sizeof(*u.iv));
	struct pl_result *warm = malloc(sizeof(*warm));
	tw_status st = TW_ENOMEM;
	if (u.slots == NULL || u.free_idx == NULL || u.done_idx == NULL ||
	    u.iv == NULL || warm == NULL)
		goto out;
	for (uint32_t i = 0; i < c->inflight; i++) {
		u.slots[i].run = &u;
		u.slots[i].idx = i;
		u.free_idx[i] = c->inflight - 1 - i;
	}
	u.nfree = c->inflight;
	if (warmup > 0) {
		struct pl_conf wc = *c;
		wc.rate = 0;
		wc.count = warmup;
		wc.fail_every = 0;
		memset(warm, 0, sizeof(*warm));
		tw_hist_init(&warm->lat);
		tw_hist_init(u.iv);
		u.c = &wc;
		u.r = warm;
		drive(&u, NULL);
		u.c = c;
	}
	memset(r, 0, sizeof(*r));
	tw_hist_init(&r->lat);
	tw_hist_init(u.iv);
	u.r = r;
	uint64_t ok0, failed0;
	lib_counts(a, &ok0, &failed0);
	drive(&u, out);
	lib_counts(a, &r->lib_ok, &r->lib_failed);
	r->lib_ok -= ok0;
	r->lib_failed -= failed0;
	st = TW_OK;
out:
	free(u.slots);
	free(u.free_idx);
	free(u.done_idx);
	free(u.iv);
	free(warm);
	return st;
}

static const double quantiles[] = {0.5, 0.9, 0.99, 0.999, 0.9999};
static const char *const qnames[] = {"p50", "p90", "p99", "p99.9", "p99.99"};
#define NQ (sizeof(quantiles) / sizeof(quantiles[0]))

static void kinds(char *buf, size_t size, const struct pl_result *r,
		  const char *sep)
{
	size_t len = 0;
	buf[0] = '\0';
	for (int k = 1; k < TW_STATUS_COUNT_ && len < size; k++)
		if (r->by_kind[k] != 0)
			len += (size_t)snprintf(buf + len, size - len,
						"%s%s:%" PRIu64, len ? sep : "",
						tw_status_name((tw_status)k),
						r->by_kind[k]);
}

void pl_print(FILE *f, const struct pl_conf *c, const struct pl_result *r)
{
	double cps = r->secs > 0 ? (double)(r->ok + r->errors) / r->secs : 0;
	fprintf(f, "tw-perf: %" PRIu64 " calls to %s in %.3f s: %.0f calls/s",
		r->calls, c->fn, r->secs, cps);
	if (c->rate > 0)
		fprintf(f,
			" (open loop, offered %.0f/s, up to %u in flight, "
			"latest send %.1f us after its time)\n",
			c->rate, c->inflight, (double)r->max_lag_ns / 1e3);
	else
		fprintf(f, " (closed loop, %u in flight)\n", c->inflight);
	char kb[512];
	kinds(kb, sizeof(kb), r, ", ");
	fprintf(f, "  ok %" PRIu64 ", errors %" PRIu64 "%s%s", r->ok, r->errors,
		r->errors ? ": " : "", kb);
	if (r->injected)
		fprintf(f, " (%" PRIu64 " calls to %s, to fail)", r->injected,
			c->fail_fn);
	fprintf(f,
		"\n  the library counted ok %" PRIu64 ", failed %" PRIu64 "\n",
		r->lib_ok, r->lib_failed);
	fprintf(f, "  latency (ns, within %.1f%%%s):\n", TW_HIST_REL_ERR * 100,
		c->rate > 0 ? ", from each call's scheduled time" : "");
	fprintf(f, "    %-7s %12" PRIu64 "\n", "min", r->lat.min);
	for (size_t i = 0; i < NQ; i++)
		fprintf(f, "    %-7s %12" PRIu64 "\n", qnames[i],
			tw_hist_quantile(&r->lat, quantiles[i]));
	fprintf(f, "    %-7s %12" PRIu64 "\n    %-7s %12.0f\n", "max",
		r->lat.max, "mean", tw_hist_mean(&r->lat));
}

void pl_csv_header(FILE *f)
{
	fprintf(f, "label,transport,fn,payload_b,inflight,mode,offered_per_s,"
		   "secs,calls,ok,errors,error_kinds,calls_per_s,min_ns,p50_ns,"
		   "p90_ns,p99_ns,p999_ns,p9999_ns,max_ns,mean_ns,max_lag_ns,"
		   "lib_ok,lib_failed\n");
}

void pl_csv_row(FILE *f, const char *label, const char *transport,
		uint64_t payload, const struct pl_conf *c,
		const struct pl_result *r)
{
	char kb[512];
	kinds(kb, sizeof(kb), r, ";");
	double cps = r->secs > 0 ? (double)(r->ok + r->errors) / r->secs : 0;
	fprintf(f,
		"%s,%s,%s,%" PRIu64 ",%u,%s,%.1f,%.6f,%" PRIu64 ",%" PRIu64
		",%" PRIu64 ",%s,%.1f,%" PRIu64,
		label, transport, c->fn, payload, c->inflight,
		c->rate > 0 ? "open" : "closed", c->rate, r->secs, r->calls,
		r->ok, r->errors, kb, cps, r->lat.min);
	for (size_t i = 0; i < NQ; i++)
		fprintf(f, ",%" PRIu64,
			tw_hist_quantile(&r->lat, quantiles[i]));
	fprintf(f, ",%" PRIu64 ",%.1f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 "\n",
		r->lat.max, tw_hist_mean(&r->lat), r->max_lag_ns, r->lib_ok,
		r->lib_failed);
}

void pl_interval_header(FILE *f)
{
	fprintf(f, "label,t_s,calls,ok,errors,calls_per_s,p50_ns,p99_ns,"
		   "max_ns\n");
}

void pl_hist_header(FILE *f)
{
	fprintf(f, "label,low_ns,high_ns,count\n");
}

void pl_hist_rows(FILE *f, const char *label, const struct tw_hist *h)
{
	for (uint32_t i = 0; i < TW_HIST_BUCKETS; i++)
		if (h->b[i] != 0)
			fprintf(f, "%s,%" PRIu64 ",%" PRIu64 ",%" PRIu64 "\n",
				label, tw_hist_bucket_low(i),
				tw_hist_bucket_high(i), h->b[i]);
}
