/* Remote references across processes (docs/rref.md): tw_remote to a peer
 * and to self, to_here of tensors byte-exact, creation errors, proxies,
 * many short-lived RRefs with the owner's counters back to zero, and an
 * owner killed under its users. Two run loops per worker, so requests and
 * answers of one RRef travel on different connections. */
#include "harness.h"

#include <pthread.h>

#include <tensorwire/rref.h>

/* Where a worker is, told by SIGALRM shortly before the harness's group
 * limit kills a stuck group without a word. */
static const char *volatile phase = "start";
static char phase_buf[96];
static int phase_rank;

static void on_alarm(int sig)
{
	(void)sig;
	char buf[160];
	int n = snprintf(buf, sizeof(buf), "[rank %d] still in: %s\n",
			 phase_rank, phase);
	if (n > 0)
		(void)!write(2, buf, (size_t)n);
}

static void watch(struct h_worker *w)
{
	phase_rank = w->rank;
	signal(SIGALRM, on_alarm);
	alarm(H_GROUP_LIMIT_S - 5);
}

static tw_value h_ints(tw_value *items, int64_t x, int64_t y)
{
	items[0] = tw_value_int(x);
	items[1] = tw_value_int(y);
	return (tw_value){.kind = TW_KIND_TUPLE,
			  .flags = TW_VALUE_BORROWED,
			  .len = 2,
			  .u.items = items};
}

static int to_here_int(struct h_worker *w, tw_rref *r, int64_t *v)
{
	tw_value out, err;
	tw_status st = tw_rref_to_here(r, 30000, &out, &err);
	W_ASSERT(w, st == TW_OK, "to_here: %s (%s)", tw_status_name(st),
		 tw_errmsg(st));
	W_ASSERT(w, out.kind == TW_KIND_INT, "kind %d", out.kind);
	*v = out.u.i;
	tw_value_destroy(&out);
	return 0;
}

/* A tensor of n bytes, byte i = (i * 7 + n) & 255. */
static int tensor_round_trip(struct h_worker *w, tw_agent *a, const char *to,
			     int64_t n)
{
	snprintf(phase_buf, sizeof(phase_buf), "tensor of %lld bytes to %s",
		 (long long)n, to);
	phase = phase_buf;
	tw_tensor t;
	W_ASSERT(w, tw_tensor_alloc(&t, TW_UINT8, 1, &n) == TW_OK, "alloc");
	uint8_t *p = t.data;
	for (int64_t i = 0; i < n; i++)
		p[i] = (uint8_t)((i * 7 + n) & 255);
	tw_value tv, args;
	W_ASSERT(w, tw_value_tensor(&tv, &t) == TW_OK, "value");
	tw_value_tuple(&args, 1);
	tw_value_set_item(&args, 0, tv);
	tw_rref *r;
	tw_status st = tw_remote(a, to, "echo", &args, NULL, -1, &r);
	W_ASSERT(w, st == TW_OK, "remote %lld: %s", (long long)n,
		 tw_errmsg(st));
	tw_value_destroy(&args);
	tw_tensor_release(&t);
	tw_value out, err;
	st = tw_rref_to_here(r, 60000, &out, &err);
	W_ASSERT(w, st == TW_OK, "to_here %lld: %s", (long long)n,
		 tw_errmsg(st));
	W_ASSERT(w, out.kind == TW_KIND_TENSOR, "kind");
	const tw_tensor *o = out.u.tensor;
	size_t nb = 0;
	W_ASSERT(w, tw_tensor_nbytes(o, &nb) == TW_OK && nb == (size_t)n,
		 "%zu bytes, expected %lld", nb, (long long)n);
	const uint8_t *q = o->data;
	for (int64_t i = 0; i < n; i++)
		W_ASSERT(w, q[i] == (uint8_t)((i * 7 + n) & 255),
			 "byte %lld of %lld", (long long)i, (long long)n);
	tw_value_destroy(&out);
	tw_rref_release(r);
	return 0;
}

static int w_basics(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.num_loops = 2;
	watch(w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	phase = "after init";
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 0) {
		tw_value it[2];
		tw_value args = h_ints(it, 40, 2);
		int64_t v;
		/* to a peer */
		tw_rref *r;
		W_ASSERT(w,
			 tw_remote(a, "w1", "add", &args, NULL, -1, &r) ==
				 TW_OK,
			 "remote");
		W_ASSERT(w, !tw_rref_is_owner(r), "user");
		if (to_here_int(w, r, &v) != 0)
			return 1;
		W_ASSERT(w, v == 42, "value %lld", (long long)v);
		W_ASSERT(w, tw_rref_confirmed_by_owner(r), "confirmed");
		phase = "proxies";
		/* a proxy: add(value, 8) on the owner */
		tw_value pit[1] = {tw_value_int(8)};
		tw_value pargs = H_TUPLE(pit);
		tw_value res, err;
		st = tw_rref_rpc_sync(r, "add", &pargs, NULL, -1, &res, &err);
		W_ASSERT(w, st == TW_OK && res.u.i == 50, "proxy: %s",
			 tw_errmsg(st));
		tw_rref *r2;
		W_ASSERT(w,
			 tw_rref_remote(r, "add", &pargs, NULL, -1, &r2) ==
				 TW_OK,
			 "remote proxy");
		tw_rref_release(r);
		if (to_here_int(w, r2, &v) != 0)
			return 1;
		W_ASSERT(w, v == 50, "remote proxy value %lld", (long long)v);
		tw_rref_release(r2);

		phase = "to self";
		/* to self */
		W_ASSERT(w,
			 tw_remote(a, "w0", "add", &args, NULL, -1, &r) ==
				 TW_OK,
			 "remote self");
		W_ASSERT(w, tw_rref_is_owner(r), "owner");
		if (to_here_int(w, r, &v) != 0)
			return 1;
		const tw_value *lv;
		W_ASSERT(w,
			 tw_rref_local_value(r, &lv) == TW_OK && lv->u.i == 42,
			 "local value");
		tw_rref_release(r);

		phase = "creation error";
		/* a creation error: kind, message, origin */
		tw_value eit[2] = {tw_value_int(TW_EVALUE),
				   tw_value_string_borrow("boom", 4)};
		tw_value eargs = H_TUPLE(eit);
		W_ASSERT(w,
			 tw_remote(a, "w1", "raise", &eargs, NULL, -1, &r) ==
				 TW_OK,
			 "remote raise");
		st = tw_rref_to_here(r, 30000, &res, &err);
		W_ASSERT(w, st == TW_EVALUE, "raise: %s", tw_status_name(st));
		W_ASSERT(w,
			 err.kind == TW_KIND_ERROR && err.u.err->origin == 1 &&
				 strcmp(err.u.err->msg, "boom") == 0,
			 "error value");
		W_ASSERT(w, strstr(tw_errmsg(st), "On worker 'w1'") != NULL,
			 "%s", tw_errmsg(st));
		tw_value_destroy(&err);
		tw_rref_release(r);

		phase = "tensors";
		/* tensors byte-exact, to a peer and to self */
		const int64_t sizes[] = {0, 1, 4097, 1 << 20, 64 << 20};
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			if (tensor_round_trip(w, a, "w1", sizes[i]) != 0 ||
			    tensor_round_trip(w, a, "w0", sizes[i]) != 0)
				return 1;
		}

		phase = "many short-lived";
		/* many short-lived RRefs, some fetched, all released */
		for (int i = 0; i < 2000; i++) {
			snprintf(phase_buf, sizeof(phase_buf),
				 "short-lived RRef %d", i);
			phase = phase_buf;
			tw_value ai[2];
			tw_value aa = h_ints(ai, i, 1);
			W_ASSERT(w,
				 tw_remote(a, i % 3 ? "w1" : "w0", "add", &aa,
					   NULL, -1, &r) == TW_OK,
				 "remote %d", i);
			if (i % 10 == 0) {
				if (to_here_int(w, r, &v) != 0)
					return 1;
				W_ASSERT(w, v == i + 1, "value %d", i);
			}
			tw_rref_release(r);
		}
		phase = "draining";
		/* Released handles go once their confirmations came; our
		 * own values, and our deletes, once the loops ran them. */
		struct tw_rref_stats s;
		uint64_t until = h_now_ms() + 20000;
		do {
			h_sleep_ms(2);
			tw_agent_rref_stats(a, &s);
		} while ((s.owned != 0 || s.users != 0 ||
			  tw_agent_outstanding(a) != 0) &&
			 h_now_ms() < until);
		W_ASSERT(w, s.users == 0, "users %llu",
			 (unsigned long long)s.users);
		W_ASSERT(w, s.owned == 0, "owned %llu",
			 (unsigned long long)s.owned);
		W_ASSERT(w, s.pending_users == 0, "pending");
		atomic_store(&w->sh->flag[0], 1);
	} else {
		phase = "owner: waiting for w0";
		/* The owner: everything it held goes once w0 is done. */
		W_ASSERT(w, h_wait_all(w->sh->flag, 1, -1, 40000), "w0 done");
		struct tw_rref_stats s;
		uint64_t until = h_now_ms() + 5000;
		do {
			tw_agent_rref_stats(a, &s);
			if (s.owned == 0)
				break;
			h_sleep_ms(2);
		} while (h_now_ms() < until);
		W_ASSERT(w, s.owned == 0 && s.owner_users == 0,
			 "owned %llu users %llu", (unsigned long long)s.owned,
			 (unsigned long long)s.owner_users);
		W_ASSERT(w, s.refused == 0, "refused %llu",
			 (unsigned long long)s.refused);
		W_ASSERT(w, s.deletes_received >= 1333, "deletes %llu",
			 (unsigned long long)s.deletes_received);
	}
	phase = "shutdown";
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s: %s", tw_status_name(st),
		 tw_errmsg(st));
	return 0;
}

Test(rref, remote_to_here_proxies_tensors_no_leak, .timeout = 300)
{
	h_run_group(2, w_basics, NULL, NULL, 0);
}

/* ---- threads: many application threads on two loops ---- */

struct thr_arg {
	tw_agent *a;
	int idx;
	_Atomic int bad;
};

static void *thr_main(void *p)
{
	struct thr_arg *t = p;
	for (int i = 0; i < 300; i++) {
		tw_value it[2];
		tw_value args = h_ints(it, i, t->idx);
		tw_rref *r;
		const char *to = (i + t->idx) % 3 ? "w1" : "w0";
		if (tw_remote(t->a, to, "add", &args, NULL, -1, &r) != TW_OK) {
			atomic_store(&t->bad, 1);
			return NULL;
		}
		if (i % 2 == 0) {
			tw_value out, err;
			tw_status st = tw_rref_to_here(r, 30000, &out, &err);
			if (st != TW_OK || out.kind != TW_KIND_INT ||
			    out.u.i != i + t->idx)
				atomic_store(&t->bad, 1);
			tw_value_destroy(&out);
			tw_value_destroy(&err);
		}
		if (i % 5 == 0) {
			tw_value pit[1] = {tw_value_int(1)};
			tw_value pargs = H_TUPLE(pit);
			tw_value out, err;
			tw_status st = tw_rref_rpc_sync(r, "add", &pargs, NULL,
							30000, &out, &err);
			if (st != TW_OK || out.u.i != i + t->idx + 1)
				atomic_store(&t->bad, 1);
			tw_value_destroy(&out);
			tw_value_destroy(&err);
		}
		tw_rref_release(r);
	}
	return NULL;
}

static int w_threads(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.num_loops = 2;
	watch(w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	phase = "threads";
	if (w->rank == 0) {
		pthread_t th[4];
		struct thr_arg ta[4];
		for (int i = 0; i < 4; i++) {
			ta[i].a = a;
			ta[i].idx = i;
			atomic_init(&ta[i].bad, 0);
			W_ASSERT(w,
				 pthread_create(&th[i], NULL, thr_main,
						&ta[i]) == 0,
				 "thread");
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			W_ASSERT(w, !atomic_load(&ta[i].bad), "thread %d", i);
		}
		struct tw_rref_stats s;
		uint64_t until = h_now_ms() + 20000;
		do {
			h_sleep_ms(2);
			tw_agent_rref_stats(a, &s);
		} while ((s.owned != 0 || s.users != 0 ||
			  tw_agent_outstanding(a) != 0) &&
			 h_now_ms() < until);
		W_ASSERT(w, s.owned == 0 && s.users == 0,
			 "owned %llu users %llu", (unsigned long long)s.owned,
			 (unsigned long long)s.users);
		atomic_store(&w->sh->flag[0], 1);
	} else {
		W_ASSERT(w, h_wait_all(w->sh->flag, 1, -1, 40000), "w0 done");
		struct tw_rref_stats s;
		uint64_t until = h_now_ms() + 5000;
		do {
			tw_agent_rref_stats(a, &s);
			if (s.owned == 0)
				break;
			h_sleep_ms(2);
		} while (h_now_ms() < until);
		W_ASSERT(w, s.owned == 0 && s.refused == 0,
			 "owned %llu refused %llu", (unsigned long long)s.owned,
			 (unsigned long long)s.refused);
	}
	phase = "shutdown";
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s: %s", tw_status_name(st),
		 tw_errmsg(st));
	return 0;
}

Test(rref, four_threads_two_loops, .timeout = 120)
{
	h_run_group(2, w_threads, NULL, NULL, 0);
}

/* ---- the owner killed under its users ---- */

static int w_owner_killed(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	if (w->rank == 0) {
		tw_value it[2];
		tw_value args = h_ints(it, 1, 2);
		tw_rref *r;
		W_ASSERT(w,
			 tw_remote(a, "w1", "add", &args, NULL, -1, &r) ==
				 TW_OK,
			 "remote");
		int64_t v;
		if (to_here_int(w, r, &v) != 0)
			return 1;
		tw_future *f;
		W_ASSERT(w,
			 tw_rpc_async(a, "w1", "die", NULL, NULL, 0, &f) ==
				 TW_OK,
			 "die");
		st = tw_future_wait(f, 30000);
		W_ASSERT(w, st == TW_EUNREACHABLE, "die: %s",
			 tw_status_name(st));
		tw_future_release(f);
		tw_value out, err;
		st = tw_rref_to_here(r, 30000, &out, &err);
		W_ASSERT(w, st == TW_EUNREACHABLE, "to_here: %s",
			 tw_status_name(st));
		tw_value_destroy(&err);
		/* A user created after the death fails the same way. */
		tw_rref *r2;
		W_ASSERT(w,
			 tw_remote(a, "w1", "add", &args, NULL, -1, &r2) ==
				 TW_OK,
			 "remote");
		st = tw_rref_to_here(r2, 30000, &out, &err);
		W_ASSERT(w, st == TW_EUNREACHABLE, "to_here 2: %s",
			 tw_status_name(st));
		tw_value_destroy(&err);
		tw_rref_release(r);
		tw_rref_release(r2);
		st = tw_agent_shutdown(a, true);
		W_ASSERT(w, st == TW_OK, "shutdown: %s: %s", tw_status_name(st),
			 tw_errmsg(st));
		return 0;
	}
	for (;;)
		h_sleep_ms(1000);
}

Test(rref, owner_killed, .timeout = 120)
{
	h_run_group(2, w_owner_killed, NULL, NULL, 1u << 1);
}

/* ---- a user killed: its owners drop its forks (members that die) ---- */

#define DEAD_RREFS 50

/* Shared with the workers (MAP_SHARED before they fork). */
struct death {
	_Atomic uint64_t killed_ms; /* h_now_ms() just before the kill */
	int victim;                 /* the rank that kills itself */
};

static struct death *death_new(int victim)
{
	struct death *d = mmap(NULL, sizeof(*d), PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert(d != MAP_FAILED);
	memset(d, 0, sizeof(*d));
	d->victim = victim;
	return d;
}

/* The victim: RRefs on every other worker (DEAD_RREFS in all, round
 * robin), all confirmed, held when it is SIGKILLed. The others: each owns
 * its share with one user fork each until the victim dies, then none,
 * within a generous deadline (the time taken is printed, not asserted);
 * the victim is dead to them and calls to it fail at once, naming it. */
static int w_user_killed(struct h_worker *w)
{
	struct death *d = w->arg;
	struct tw_agent_opts o;
	h_opts(&o, w);
	o.num_loops = 2;
	watch(w);
	tw_agent *a;
	tw_status st = h_agent_init(&o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", tw_status_name(st));
	int v = d->victim;
	uint64_t share[H_MAX_WORKERS] = {0};
	for (int i = 0; i < DEAD_RREFS; i++) {
		int owner = i % (w->world - 1);
		share[owner >= v ? owner + 1 : owner]++;
	}
	if (w->rank == v) {
		phase = "victim: creating";
		tw_rref *r[DEAD_RREFS];
		for (int i = 0; i < DEAD_RREFS; i++) {
			int owner = i % (w->world - 1);
			char to[8];
			snprintf(to, sizeof(to), "w%d",
				 owner >= v ? owner + 1 : owner);
			tw_value it[2];
			tw_value args = h_ints(it, i, 1);
			W_ASSERT(w,
				 tw_remote(a, to, "add", &args, NULL, -1,
					   &r[i]) == TW_OK,
				 "remote %d: %s", i, tw_errmsg(TW_EINVAL));
		}
		for (int i = 0; i < DEAD_RREFS; i++) {
			int64_t x;
			if (to_here_int(w, r[i], &x) != 0)
				return 1;
			W_ASSERT(w, x == i + 1, "value %d", i);
			W_ASSERT(w, tw_rref_confirmed_by_owner(r[i]), "conf");
		}
		atomic_store(&w->sh->flag[v], 1);
		phase = "victim: waiting for the owners to count";
		W_ASSERT(w, h_wait_all(w->sh->flag, w->world, v, 40000),
			 "the owners never counted");
		atomic_store(&d->killed_ms, h_now_ms());
		kill(getpid(), SIGKILL); /* holding every handle */
		for (;;)
			h_sleep_ms(1000);
	}
	phase = "owner: waiting for the victim's users";
	W_ASSERT(w, h_wait_all(&w->sh->flag[v], 1, -1, 40000),
		 "the victim never made its users");
	struct tw_rref_stats s;
	tw_agent_rref_stats(a, &s);
	uint64_t mine = share[w->rank];
	W_ASSERT(w, s.owned == mine && s.owner_users == mine,
		 "owned %llu users %llu, want %llu",
		 (unsigned long long)s.owned, (unsigned long long)s.owner_users,
		 (unsigned long long)mine);
	W_ASSERT(w, tw_agent_worker_alive(a, (uint32_t)v), "alive before");
	atomic_store(&w->sh->flag[w->rank], 1);

	phase = "owner: waiting for the victim's forks to go";
	uint64_t until = h_now_ms() + 30000;
	do {
		h_sleep_ms(1);
		tw_agent_rref_stats(a, &s);
	} while ((s.owned != 0 || s.owner_users != 0) && h_now_ms() < until);
	uint64_t now = h_now_ms(), killed = atomic_load(&d->killed_ms);
	W_ASSERT(w, s.owned == 0 && s.owner_users == 0,
		 "after 30 s: owned %llu users %llu",
		 (unsigned long long)s.owned,
		 (unsigned long long)s.owner_users);
	W_ASSERT(w, s.dead_users_dropped == mine, "dropped %llu, want %llu",
		 (unsigned long long)s.dead_users_dropped,
		 (unsigned long long)mine);
	W_ASSERT(w, s.refused == 0, "refused %llu",
		 (unsigned long long)s.refused);
	fprintf(stderr,
		"[rank %d] worker %d's %llu forks dropped %llu ms after its "
		"SIGKILL\n",
		w->rank, v, (unsigned long long)mine,
		(unsigned long long)(killed != 0 && now > killed ? now - killed
								 : 0));
	W_ASSERT(w, !tw_agent_worker_alive(a, (uint32_t)v), "dead after");
	char to[8];
	snprintf(to, sizeof(to), "w%d", v);
	tw_future *f = NULL;
	st = tw_rpc_async(a, to, "add", NULL, NULL, -1, &f);
	W_ASSERT(w, st == TW_EUNREACHABLE && f == NULL, "call: %s",
		 tw_status_name(st));
	char want[64];
	snprintf(want, sizeof(want), "worker '%s' (id %d) is dead", to, v);
	W_ASSERT(w, strstr(tw_errmsg(st), want) != NULL, "%s", tw_errmsg(st));

	phase = "shutdown";
	if (v == 0) {
		/* No rendezvous host, no barrier. */
		st = tw_agent_shutdown(a, false);
	} else {
		st = tw_agent_shutdown(a, true);
	}
	W_ASSERT(w, st == TW_OK, "shutdown: %s: %s", tw_status_name(st),
		 tw_errmsg(st));
	return 0;
}

Test(rref, killed_user_forks_dropped_by_owners, .timeout = 120)
{
	struct death *d = death_new(2);
	h_run_group(3, w_user_killed, d, NULL, 1u << 2);
	munmap(d, sizeof(*d));
}

/* The user killed is rank 0, the rendezvous host: its owner learns it
 * from its own control connection closing. */
Test(rref, killed_rank_0_forks_dropped_by_owner, .timeout = 120)
{
	struct death *d = death_new(0);
	h_run_group(2, w_user_killed, d, NULL, 1u << 0);
	munmap(d, sizeof(*d));
}
