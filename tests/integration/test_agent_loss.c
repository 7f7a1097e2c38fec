/* Calls over a lossy network: run with TW_TEST_TRANSPORT=dpdk and
 * TW_TEST_LOSS=P (meson: agent_loss_1, agent_loss_10), the workers' links
 * lose P% of packets, reorder 25% and duplicate 5% (harness.h, h_net.h).
 * Every call must complete exactly once: the callee counts each handler
 * run per call in shared memory (a retransmitted or duplicated request
 * must not run twice, none may be lost), and tensors spanning one to
 * thousands of packets come back byte-exact. Both directions at once. */
#include "harness.h"

#define NIDS 8192
#define N_SMALL_0 3000 /* w0 -> w1 */
#define N_SMALL_1 1000 /* w1 -> w0, meanwhile */
#define N_MID 16       /* 64 KiB tensors in flight at once */
#define CALL_TIMEOUT_MS 40000

struct loss_sh {
	_Atomic uint32_t hits[2][NIDS]; /* [caller][call id] handler runs */
	_Atomic uint32_t made[2];       /* calls each caller made */
	_Atomic uint64_t ms[2];
};

static struct loss_sh *L;

/* count(id, v): one more run of call id from this caller; returns v. */
static tw_status fn_count(tw_call_ctx *ctx, const tw_value *args,
			  const tw_value *kwargs, tw_value *result, void *arg)
{
	uint32_t caller = tw_call_caller(ctx);
	if (args->len != 2 || args->u.items[0].kind != TW_KIND_INT ||
	    caller > 1 || args->u.items[0].u.i < 0 ||
	    args->u.items[0].u.i >= NIDS)
		return TW_EBADARGS;
	atomic_fetch_add(&L->hits[caller][args->u.items[0].u.i], 1);
	return tw_value_clone(result, &args->u.items[1]);
}

static tw_status reg(tw_agent *a, void *arg)
{
	tw_status st = h_register_all(a, arg);
	if (st == TW_OK)
		st = tw_agent_register(a, "count", fn_count, NULL, 0);
	return st;
}

static tw_status count_async(struct h_worker *w, tw_agent *a, const char *to,
			     int id, const tw_value *v, tw_future **f)
{
	tw_value args[2] = {tw_value_int(id), *v}; /* encoded, not taken */
	tw_value t = H_TUPLE(args);
	tw_status st;
	while ((st = tw_rpc_async(a, to, "count", &t, NULL, CALL_TIMEOUT_MS,
				  f)) == TW_ENOSPC)
		h_sleep_ms(1);
	if (st == TW_OK)
		atomic_fetch_add(&L->made[w->rank], 1);
	return st;
}

/* n calls count(id0 + i, id0 + i), all in flight, checked. */
static int small_calls(struct h_worker *w, tw_agent *a, const char *to, int id0,
		       int n)
{
	tw_future **fs = calloc((size_t)n, sizeof(*fs));
	W_ASSERT(w, fs != NULL, "calloc");
	for (int i = 0; i < n; i++) {
		tw_value v = tw_value_int(id0 + i);
		tw_status st = count_async(w, a, to, id0 + i, &v, &fs[i]);
		W_ASSERT(w, st == TW_OK, "async %d: %s", i, tw_status_name(st));
	}
	for (int i = 0; i < n; i++) {
		tw_status st = tw_future_wait(fs[i], -1);
		W_ASSERT(w, st == TW_OK, "small call %d: %s", id0 + i,
			 tw_status_name(st));
		const tw_value *v = tw_future_value(fs[i]);
		W_ASSERT(w, v && v->kind == TW_KIND_INT && v->u.i == id0 + i,
			 "value of %d", id0 + i);
		tw_future_release(fs[i]);
	}
	free(fs);
	return 0;
}

static void fill(tw_tensor *t, size_t n, unsigned salt)
{
	unsigned char *p = t->data;
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 31u + salt + (i >> 11));
}

/* Tensors of the given sizes, all in flight at once, echoed through
 * count and compared byte by byte. */
static int tensor_calls(struct h_worker *w, tw_agent *a, const char *to,
			int id0, const size_t *sizes, int n)
{
	tw_tensor ts[32];
	tw_value vs[32];
	tw_future *fs[32];
	W_ASSERT(w, n <= 32, "too many");
	for (int i = 0; i < n; i++) {
		int64_t shape[1] = {(int64_t)sizes[i]};
		W_ASSERT(w,
			 tw_tensor_alloc(&ts[i], TW_UINT8, 1, shape) == TW_OK,
			 "alloc %zu", sizes[i]);
		fill(&ts[i], sizes[i], (unsigned)(id0 + i));
		W_ASSERT(w, tw_value_tensor(&vs[i], &ts[i]) == TW_OK, "value");
		tw_status st = count_async(w, a, to, id0 + i, &vs[i], &fs[i]);
		W_ASSERT(w, st == TW_OK, "async tensor %zu B: %s", sizes[i],
			 tw_status_name(st));
	}
	for (int i = 0; i < n; i++) {
		tw_status st = tw_future_wait(fs[i], -1);
		W_ASSERT(w, st == TW_OK, "tensor %zu B: %s", sizes[i],
			 tw_status_name(st));
		const tw_tensor *rt;
		W_ASSERT(w,
			 tw_value_get_tensor(tw_future_value(fs[i]), &rt) ==
				 TW_OK,
			 "tensor back");
		W_ASSERT(w,
			 rt->dtype == TW_UINT8 && rt->ndim == 1 &&
				 rt->shape[0] == (int64_t)sizes[i],
			 "shape of %zu B", sizes[i]);
		W_ASSERT(w,
			 sizes[i] == 0 ||
				 memcmp(rt->data, ts[i].data, sizes[i]) == 0,
			 "bytes differ (%zu B)", sizes[i]);
		tw_future_release(fs[i]);
		tw_value_destroy(&vs[i]);
		tw_tensor_release(&ts[i]);
	}
	return 0;
}

static int w_loss(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.setup = reg;
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	uint64_t t0 = h_now_ms();
	if (w->rank == 0) {
		if (small_calls(w, a, "w1", 0, N_SMALL_0) != 0)
			return 1;
		/* around one packet's frame bytes (1402 at MTU 1500, the
		 * frame header and segment layout take some), a few packets,
		 * then thousands */
		static const size_t one[] = {0,    1,    1300, 1400,
					     1500, 2900, 4096, 30000};
		int id = N_SMALL_0;
		if (tensor_calls(w, a, "w1", id, one, 8) != 0)
			return 1;
		id += 8;
		size_t mid[N_MID];
		for (int i = 0; i < N_MID; i++)
			mid[i] = (size_t)64 << 10;
		if (tensor_calls(w, a, "w1", id, mid, N_MID) != 0)
			return 1;
		id += N_MID;
		static const size_t big[] = {(size_t)1 << 20, (size_t)4 << 20};
		if (tensor_calls(w, a, "w1", id, big, 2) != 0)
			return 1;
	} else {
		if (small_calls(w, a, "w0", 0, N_SMALL_1) != 0)
			return 1;
		size_t mid[4];
		for (int i = 0; i < 4; i++)
			mid[i] = (size_t)64 << 10;
		if (tensor_calls(w, a, "w0", N_SMALL_1, mid, 4) != 0)
			return 1;
	}
	atomic_store(&L->ms[w->rank], h_now_ms() - t0);
	W_ASSERT(w, tw_agent_outstanding(a) == 0, "outstanding");
	struct tw_agent_stats s;
	tw_agent_get_stats(a, &s);
	W_ASSERT(w,
		 s.timeouts == 0 && s.bad_frames == 0 && s.late_responses == 0,
		 "timeouts %" PRIu64 ", bad frames %" PRIu64 ", late %" PRIu64,
		 s.timeouts, s.bad_frames, s.late_responses);
	/* The loss shows in the stats (issue 16): packets sent again. */
	tw_stats *ss;
	W_ASSERT(w, tw_stats_take(a, &ss) == TW_OK, "stats");
	const struct tw_stats_counters *c = tw_stats_counters(ss);
	fprintf(stderr,
		"[agent_loss w%d] retransmits %" PRIu64 ", duplicates %" PRIu64
		", calls_ok %" PRIu64 "\n",
		w->rank, c->retransmits, c->duplicates, c->calls_ok);
	W_ASSERT(w, c->retransmits > 0, "no retransmits under %u%% loss",
		 h_loss());
	/* netem duplicates packets too, and a packet sent again whose ack
	 * was lost arrives twice: the receiver drops and counts them. */
	W_ASSERT(w, c->duplicates > 0,
		 "no duplicates under %u%% loss and duplication", h_loss());
	W_ASSERT(w, c->calls_ok == atomic_load(&L->made[w->rank]),
		 "calls_ok %" PRIu64 " of %u", c->calls_ok,
		 atomic_load(&L->made[w->rank]));
	tw_stats_free(ss);
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

Test(loss, every_call_exactly_once_byte_exact, .timeout = 300)
{
	if (!h_dpdk() || h_loss() == 0)
		cr_skip_test("needs TW_TEST_TRANSPORT=dpdk and TW_TEST_LOSS");
	L = mmap(NULL, sizeof(*L), PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert(L != MAP_FAILED);
	memset(L, 0, sizeof(*L));
	h_run_group(2, w_loss, NULL, NULL, 0);
	uint32_t runs = 0;
	for (int c = 0; c < 2; c++) {
		uint32_t made = atomic_load(&L->made[c]);
		for (uint32_t id = 0; id < NIDS; id++) {
			uint32_t h = atomic_load(&L->hits[c][id]);
			runs += h;
			cr_expect(h == (id < made ? 1u : 0u),
				  "call %u from w%d ran %u times", id, c, h);
		}
	}
	fprintf(stderr,
		"[agent_loss %u%%] %u calls from w0 (%" PRIu64 " ms), %u "
		"from w1 (%" PRIu64 " ms), %u handler runs\n",
		h_loss(), atomic_load(&L->made[0]),
		(uint64_t)atomic_load(&L->ms[0]), atomic_load(&L->made[1]),
		(uint64_t)atomic_load(&L->ms[1]), runs);
	munmap(L, sizeof(*L));
}
