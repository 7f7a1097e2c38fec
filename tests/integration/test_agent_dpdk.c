/* The agent over the DPDK transport: two worker processes, each with its
 * own EAL (a unique --file-prefix), joined by net_memif (rank 0 the memif
 * server, rank 1 the client, on a unique abstract socket); the rendezvous
 * stays TCP on 127.0.0.1. Calls, many async calls, remote errors, tensors
 * byte-exact, a timeout and a graceful shutdown, on one and on two loops
 * (queue pairs). Then members that pause and die (issue 18): a peer
 * SIGSTOPped for 10 s loses no call, a SIGKILLed one's calls fail within
 * 100 ms (rank 0's notice, not data-plane silence) and later ones at
 * once. A peer that acknowledges nothing (stopped, with a caller whose
 * rexmit_max is small) ends its session, and its calls fail with the
 * reason, though it stays a member. With its EAL's telemetry on, a
 * worker's statistics read through DPDK telemetry (issue 16) are the
 * calls it made. Needs root (the EAL); skips when the EAL cannot start. */
#include "harness.h"
#include "tel_client.h"

#include <ftw.h>
#include <sys/stat.h>

#define EAL_COMMON "--no-huge -m 256 --no-pci --log-level=warning "

/* Shared with the workers (MAP_SHARED). */
enum run_mode {
	RUN_CALLS,
	RUN_PAUSED,
	RUN_KILLED,
	RUN_KILLED0,
	RUN_NOACK,
	RUN_TELEMETRY
};

struct dpdk_run {
	int loops;
	enum run_mode mode;
	_Atomic int pid[2]; /* for the other rank to stop or kill */
	_Atomic uint64_t fail_ms, resume_ms;
	char eal[2][512];
	char prefix[2][64];
	_Atomic int srv_up; /* rank 0's port is up (or it gave up) */
	_Atomic int skip;   /* the EAL cannot start here */
	char why[512];
	_Atomic uint64_t big_ms; /* 64 MiB round trip, 0 = not run */
	_Atomic uint64_t mib_ms; /* 1 MiB round trip */
};

static int run_seq;

static int rm_entry(const char *p, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(p);
	return 0;
}

static void rm_run_dir(const char *prefix)
{
	char d[128];
	snprintf(d, sizeof(d), "/var/run/dpdk/%s", prefix);
	nftw(d, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	struct stat st;
	cr_expect_neq(stat(d, &st), 0, "%s left behind", d);
}

static struct dpdk_run *run_new(int loops, enum run_mode mode)
{
	struct dpdk_run *r = mmap(NULL, sizeof(*r), PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert(r != MAP_FAILED);
	memset(r, 0, sizeof(*r));
	r->loops = loops;
	r->mode = mode;
	int n = ++run_seq;
	int pid = (int)getpid();
	char sock[64];
	snprintf(sock, sizeof(sock), "/twa-memif-%d-%d", pid, n);
	for (int i = 0; i < 2; i++)
		snprintf(r->prefix[i], sizeof(r->prefix[i]), "twa%d%c%d", pid,
			 i == 0 ? 's' : 'c', n);
	/* Different main lcores: each EAL pins its init thread there. */
	snprintf(r->eal[0], sizeof(r->eal[0]),
		 "-l 1 " EAL_COMMON
		 "%s--file-prefix=%s --vdev=net_memif0,role=server,"
		 "socket=%s,socket-abstract=yes,mac=02:00:00:00:0a:01",
		 mode == RUN_TELEMETRY ? "" : "--no-telemetry ", r->prefix[0],
		 sock);
	snprintf(
		r->eal[1], sizeof(r->eal[1]),
		"-l 0 " EAL_COMMON
		"--no-telemetry --file-prefix=%s --vdev=net_memif0,role=client,"
		"socket=%s,socket-abstract=yes,mac=02:00:00:00:0a:02",
		r->prefix[1], sock);
	return r;
}

static void run_done(struct dpdk_run *r)
{
	for (int i = 0; i < 2; i++)
		rm_run_dir(r->prefix[i]);
}

static tw_status srv_up_setup(tw_agent *a, void *arg)
{
	struct dpdk_run *r = arg;
	tw_status st = h_register_all(a, NULL);
	atomic_store(&r->srv_up, 1);
	return st;
}

static int echo_tensor(struct h_worker *w, tw_agent *a, size_t n, uint64_t *ms)
{
	tw_tensor t;
	int64_t shape[1] = {(int64_t)n};
	W_ASSERT(w, tw_tensor_alloc(&t, TW_UINT8, 1, shape) == TW_OK,
		 "alloc %zu", n);
	unsigned char *p = t.data;
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 31u + 7u + (i >> 12));
	tw_value tv;
	W_ASSERT(w, tw_value_tensor(&tv, &t) == TW_OK, "value");
	tw_value args[1] = {tv};
	tw_value targs = H_TUPLE(args);
	tw_value r, e;
	uint64_t t0 = h_now_ms();
	tw_status st = tw_rpc_sync(a, "w1", "echo", &targs, NULL, 30000, &r,
				   &e);
	if (ms != NULL)
		*ms = h_now_ms() - t0;
	W_ASSERT(w, st == TW_OK, "echo %zu B: %s", n, tw_status_name(st));
	const tw_tensor *rt;
	W_ASSERT(w, tw_value_get_tensor(&r, &rt) == TW_OK, "tensor back");
	W_ASSERT(w,
		 rt->dtype == TW_UINT8 && rt->ndim == 1 &&
			 rt->shape[0] == (int64_t)n,
		 "shape");
	W_ASSERT(w, n == 0 || memcmp(rt->data, t.data, n) == 0,
		 "bytes differ (%zu B)", n);
	W_ASSERT(w, tw_tensor_equal(rt, &t), "equal");
	tw_value_destroy(&r);
	tw_value_destroy(&tv);
	tw_tensor_release(&t);
	return 0;
}

static int w_calls(struct h_worker *w, tw_agent *a, struct dpdk_run *run)
{
	/* Addresses from the rendezvous: udp, with the MAC. */
	for (int r = 0; r < 2; r++) {
		tw_worker_info wi;
		W_ASSERT(w, tw_agent_worker_info(a, h_names[r], &wi) == TW_OK,
			 "info");
		W_ASSERT(w,
			 strncmp(wi.addr, "udp://", 6) == 0 &&
				 strstr(wi.addr,
					r == 0 ? "/02:00:00:00:0a:01"
					       : "/02:00:00:00:0a:02") != NULL,
			 "addr of %d: %s", r, wi.addr);
	}
	/* rpc_sync: add, echo */
	int64_t v;
	tw_value aa[2] = {tw_value_int(40), tw_value_int(2)};
	tw_value at = H_TUPLE(aa);
	tw_status st = h_call_int(a, "w1", "add", &at, &v);
	W_ASSERT(w, st == TW_OK && v == 42, "add: %s %" PRId64,
		 tw_status_name(st), v);
	tw_value s;
	tw_value_cstring(&s, "héllo over dpdk");
	tw_value ea[1] = {s};
	tw_value et = H_TUPLE(ea);
	tw_value r, e;
	st = tw_rpc_sync(a, "w1", "echo", &et, NULL, -1, &r, &e);
	W_ASSERT(w, st == TW_OK && tw_value_equal(&r, &s), "echo: %s",
		 tw_status_name(st));
	tw_value_destroy(&r);
	tw_value_destroy(&s);

	/* 1000 rpc_async in flight, checked in reverse order */
	enum { N = 1000 };
	static tw_future *fs[N];
	for (int i = 0; i < N; i++) {
		tw_value xa[2] = {tw_value_int(i), tw_value_int(1000)};
		tw_value xt = H_TUPLE(xa);
		do {
			st = tw_rpc_async(a, "w1", "add", &xt, NULL, 30000,
					  &fs[i]);
			if (st == TW_ENOSPC)
				h_sleep_ms(1);
		} while (st == TW_ENOSPC);
		W_ASSERT(w, st == TW_OK, "async %d: %s", i, tw_status_name(st));
	}
	for (int i = N - 1; i >= 0; i--) {
		st = tw_future_wait(fs[i], -1);
		W_ASSERT(w, st == TW_OK, "wait %d: %s", i, tw_status_name(st));
		const tw_value *rv = tw_future_value(fs[i]);
		W_ASSERT(w,
			 rv && rv->kind == TW_KIND_INT && rv->u.i == i + 1000,
			 "value %d", i);
		tw_future_release(fs[i]);
	}

	/* a remote error keeps kind, message and origin */
	const char *msg = "ValueError: expected a positive number";
	tw_value ra[2] = {tw_value_int(TW_EVALUE), H_STR(msg)};
	tw_value rt = H_TUPLE(ra);
	st = tw_rpc_sync(a, "w1", "raise", &rt, NULL, -1, &r, &e);
	W_ASSERT(w, st == TW_EVALUE, "raise: %s", tw_status_name(st));
	W_ASSERT(w,
		 e.kind == TW_KIND_ERROR && e.u.err->kind == TW_EVALUE &&
			 e.u.err->origin == 1 && strcmp(e.u.err->msg, msg) == 0,
		 "error value");
	W_ASSERT(w, r.kind == TW_KIND_NONE, "no result");
	tw_value_destroy(&e);
	st = tw_rpc_sync(a, "w1", "no::such_fn", NULL, NULL, -1, &r, &e);
	W_ASSERT(w, st == TW_ENOFUNC && e.u.err->origin == 1, "nofunc: %s",
		 tw_status_name(st));
	tw_value_destroy(&e);

	/* tensors, byte-exact */
	size_t sizes[] = {0, 1, 4096, (size_t)1 << 20};
	uint64_t ms = 0;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		if (echo_tensor(w, a, sizes[i], &ms) != 0)
			return 1;
	atomic_store(&run->mib_ms, ms ? ms : 1);
	/* 64 MiB when 1 MiB suggests it takes under 10 s (about 6 s in a
	 * plain build on 2 cores). */
	if (run->loops == 1 && ms * 64 < 10000) {
		if (echo_tensor(w, a, (size_t)64 << 20, &ms) != 0)
			return 1;
		atomic_store(&run->big_ms, ms ? ms : 1);
	}

	/* a timeout: a blocking handler slower than the call's deadline;
	 * its late answer is dropped */
	tw_value sa[1] = {tw_value_int(400)};
	tw_value sl = H_TUPLE(sa);
	uint64_t t0 = h_now_ms();
	st = tw_rpc_sync(a, "w1", "sleep", &sl, NULL, 100, &r, &e);
	uint64_t took = h_now_ms() - t0;
	W_ASSERT(w, st == TW_ETIMEDOUT, "sleep: %s", tw_status_name(st));
	W_ASSERT(w, took >= 90 && took < 5000, "timeout after %" PRIu64 " ms",
		 took);
	tw_value_destroy(&e);
	h_sleep_ms(500); /* the late answer arrives and is dropped */
	st = h_call_int(a, "w1", "add", &at, &v);
	W_ASSERT(w, st == TW_OK && v == 42, "add after timeout: %s",
		 tw_status_name(st));
	struct tw_agent_stats ss;
	tw_agent_get_stats(a, &ss);
	W_ASSERT(w, ss.timeouts == 1, "timeouts %" PRIu64, ss.timeouts);
	W_ASSERT(w, tw_agent_outstanding(a) == 0, "outstanding");
	return 0;
}

/* Rank 0 makes TEL_CALLS calls of add and one of an unknown function,
 * then reads its statistics through its EAL's telemetry socket, as
 * dpdk-telemetry.py would: the counters and histograms are those calls,
 * and agree with the in-process snapshot. */
#define TEL_CALLS 20
static int w_telemetry(struct h_worker *w, tw_agent *a, struct dpdk_run *run)
{
	tw_value aa[2] = {tw_value_int(1), tw_value_int(2)};
	tw_value at = H_TUPLE(aa);
	for (int i = 0; i < TEL_CALLS; i++) {
		int64_t v;
		tw_status st = h_call_int(a, "w1", "add", &at, &v);
		W_ASSERT(w, st == TW_OK && v == 3, "add: %s",
			 tw_status_name(st));
	}
	tw_value r, e;
	tw_status st = tw_rpc_sync(a, "w1", "no::such_fn", NULL, NULL, -1, &r,
				   &e);
	W_ASSERT(w, st == TW_ENOFUNC, "nofunc: %s", tw_status_name(st));
	tw_value_destroy(&e);
	tw_stats *snap;
	W_ASSERT(w, tw_stats_take(a, &snap) == TW_OK, "snapshot");
	const struct tw_stats_counters *c = tw_stats_counters(snap);
	uint64_t frames_out = c->frames_out, calls_sent = c->agent.calls_sent;
	tw_stats_free(snap);

	int fd = tel_connect(run->prefix[0]);
	W_ASSERT(w, fd >= 0, "no telemetry socket for %s", run->prefix[0]);
	static char buf[16384];
	uint64_t v;
	W_ASSERT(w, tel_ask(fd, "/", buf, sizeof(buf)) > 0, "list");
	W_ASSERT(w,
		 strstr(buf, "\"/tensorwire/stats\"") != NULL &&
			 strstr(buf, "\"/tensorwire/hist\"") != NULL &&
			 strstr(buf, "\"/tensorwire/hist_peers\"") != NULL &&
			 strstr(buf, "\"/tensorwire/workers\"") != NULL,
		 "commands: %s", buf);
	W_ASSERT(w, tel_ask(fd, "/tensorwire/workers", buf, sizeof(buf)) > 0,
		 "workers");
	W_ASSERT(w, strstr(buf, "\"w0\"") != NULL, "workers: %s", buf);

	/* No parameter: the process's one worker. */
	W_ASSERT(w, tel_ask(fd, "/tensorwire/stats", buf, sizeof(buf)) > 0,
		 "stats");
	W_ASSERT(w, tel_u64(buf, "calls_ok", &v) && v == TEL_CALLS,
		 "calls_ok: %s", buf);
	W_ASSERT(w,
		 tel_u64(buf, "calls_failed/TW_ENOFUNC", &v) && v == 1 &&
			 tel_u64(buf, "calls_sent", &v) && v == calls_sent &&
			 tel_u64(buf, "frames_out", &v) && v >= frames_out &&
			 tel_u64(buf, "timeouts", &v) && v == 0,
		 "stats: %s", buf);
	W_ASSERT(w, tel_ask(fd, "/tensorwire/stats,w1", buf, sizeof(buf)) > 0,
		 "stats of w1");
	W_ASSERT(w, strstr(buf, "\"error\"") != NULL,
		 "w1 is another process's: %s", buf);

	/* The round trips: every answered call, in total, by function and
	 * by peer (a histogram's first number is its count). */
	W_ASSERT(w, tel_ask(fd, "/tensorwire/hist,w0", buf, sizeof(buf)) > 0,
		 "hist");
	W_ASSERT(w, tel_first(buf, "rtt", &v) && v == TEL_CALLS + 1, "rtt: %s",
		 buf);
	W_ASSERT(w, tel_first(buf, "rtt/add", &v) && v == TEL_CALLS,
		 "rtt/add: %s", buf);
	W_ASSERT(w, tel_first(buf, "serve", &v) && v == 0, "serve: %s", buf);
	W_ASSERT(w, strstr(buf, "\"fields\"") != NULL, "fields: %s", buf);
	W_ASSERT(w, tel_ask(fd, "/tensorwire/hist_peers", buf, sizeof(buf)) > 0,
		 "hist_peers");
	W_ASSERT(w, tel_first(buf, "rtt/w1", &v) && v == TEL_CALLS + 1,
		 "rtt/w1: %s", buf);
	close(fd);
	return 0;
}

/* SIGSTOP pid and wait until it has stopped (kill returns before every
 * thread has): /proc says 'T'. */
static bool stop_now(pid_t pid)
{
	if (pid <= 0 || kill(pid, SIGSTOP) != 0)
		return false;
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	for (int i = 0; i < 5000; i++) {
		FILE *f = fopen(path, "r");
		if (f == NULL)
			return false;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = 0;
		const char *e = strrchr(buf, ')');
		if (e != NULL && e[1] == ' ' && e[2] == 'T')
			return true;
		h_sleep_ms(1);
	}
	return false;
}

/* A call to to's add(i, 1000), retried while the session's queue is
 * full. */
static tw_status add_async(tw_agent *a, const char *to, int i,
			   int64_t timeout_ms, tw_future **f)
{
	tw_value xa[2] = {tw_value_int(i), tw_value_int(1000)};
	tw_value xt = H_TUPLE(xa);
	tw_status st;
	while ((st = tw_rpc_async(a, to, "add", &xt, NULL, timeout_ms, f)) ==
	       TW_ENOSPC)
		h_sleep_ms(1);
	return st;
}

/* w1 answers an add (our session to it is up), is SIGSTOPped, and gets
 * n adds with 60 s deadlines queued to it, fs[i] adding i and 1000. */
static int stop_and_queue(struct h_worker *w, tw_agent *a, pid_t p1,
			  tw_future **fs, int n)
{
	int64_t v;
	tw_value aa[2] = {tw_value_int(40), tw_value_int(2)};
	tw_value at = H_TUPLE(aa);
	tw_status st = h_call_int(a, "w1", "add", &at, &v);
	W_ASSERT(w, st == TW_OK && v == 42, "add: %s", tw_status_name(st));
	W_ASSERT(w, stop_now(p1), "SIGSTOP %d", (int)p1);
	for (int i = 0; i < n; i++) {
		st = add_async(a, "w1", i, 60000, &fs[i]);
		W_ASSERT(w, st == TW_OK, "async %d: %s", i, tw_status_name(st));
	}
	return 0;
}

/* Paused is not dead: w1 is SIGSTOPped for 10 s with 1000 calls (60 s
 * deadlines) queued to it; it stays a member, every call completes once
 * it resumes, and calls with short deadlines still fail by them. */
static int w_paused(struct h_worker *w, tw_agent *a, struct dpdk_run *run)
{
	enum { N = 1000, SHORT = 4 };
	static tw_future *fs[N];
	tw_future *sf[SHORT];
	pid_t p1 = (pid_t)atomic_load(&run->pid[1]);
	int64_t v;
	tw_value aa[2] = {tw_value_int(40), tw_value_int(2)};
	tw_value at = H_TUPLE(aa);
	uint64_t t0 = h_now_ms();
	if (stop_and_queue(w, a, p1, fs, N) != 0)
		return 1;
	tw_status st;
	for (int i = 0; i < SHORT; i++) {
		st = add_async(a, "w1", i, 2000, &sf[i]);
		W_ASSERT(w, st == TW_OK, "short %d: %s", i, tw_status_name(st));
	}
	for (int i = 0; i < SHORT; i++) {
		st = tw_future_wait(sf[i], 30000);
		W_ASSERT(w, st == TW_ETIMEDOUT, "short call %d: %s", i,
			 tw_status_name(st));
		tw_future_release(sf[i]);
	}
	uint64_t took = h_now_ms() - t0;
	W_ASSERT(w, took >= 1900 && took < 9000,
		 "short calls failed after %" PRIu64 " ms", took);
	while (h_now_ms() < t0 + 10000)
		h_sleep_ms(50);
	int done = 0;
	for (int i = 0; i < N; i++)
		done += tw_future_done(fs[i]);
	W_ASSERT(w, done == 0, "%d calls ended while w1 was stopped", done);
	W_ASSERT(w, tw_agent_worker_alive(a, 1), "w1 declared dead");
	W_ASSERT(w, kill(p1, SIGCONT) == 0, "SIGCONT");
	uint64_t t1 = h_now_ms();
	for (int i = 0; i < N; i++) {
		st = tw_future_wait(fs[i], 30000);
		W_ASSERT(w, st == TW_OK, "call %d after the pause: %s (%s)", i,
			 tw_status_name(st),
			 st != TW_OK && tw_future_error(fs[i])
				 ? tw_future_error(fs[i])->msg
				 : "");
		const tw_value *rv = tw_future_value(fs[i]);
		W_ASSERT(w,
			 rv && rv->kind == TW_KIND_INT && rv->u.i == i + 1000,
			 "value %d", i);
		tw_future_release(fs[i]);
	}
	atomic_store(&run->resume_ms, h_now_ms() - t1 + 1);
	st = h_call_int(a, "w1", "add", &at, &v);
	W_ASSERT(w, st == TW_OK && v == 42, "add after: %s",
		 tw_status_name(st));
	W_ASSERT(w, tw_agent_outstanding(a) == 0, "outstanding");
	return 0;
}

/* A peer that acknowledges nothing ends its session (tw_dpdk_opts
 * rexmit_max, NOACK_REXMIT here): w1 is SIGSTOPped, so our CALL packets
 * go unacknowledged; after NOACK_REXMIT retransmission timeouts (rto
 * 5 ms doubling to 40 ms: about 0.8 s) every call queued on the session
 * fails with TW_EUNREACHABLE and the transport's reason, long before the
 * calls' own 60 s deadlines and dead_ns (30 s). w1 is not declared dead
 * (its process lives: the control plane says nothing), and once resumed
 * it answers a new session's calls. */
enum { NOACK_REXMIT = 20 };

static int w_noack(struct h_worker *w, tw_agent *a, struct dpdk_run *run)
{
	enum { N = 100 };
	static tw_future *fs[N];
	const char *why = "acknowledged nothing for rexmit_max retransmission "
			  "timeouts";
	pid_t p1 = (pid_t)atomic_load(&run->pid[1]);
	struct tw_agent_stats s0, s1;
	tw_agent_get_stats(a, &s0);
	uint64_t t0 = h_now_ms();
	if (stop_and_queue(w, a, p1, fs, N) != 0)
		return 1;
	tw_status st;
	/* Every call's end is read before w1 resumes, and checked after:
	 * a failed check must not leave w1 stopped. */
	int bad = -1;
	tw_status bad_st = TW_OK;
	char bad_msg[256] = "";
	for (int i = 0; i < N; i++) {
		st = tw_future_wait(fs[i], 30000);
		const tw_error *e = tw_future_error(fs[i]);
		if (bad < 0 && (st != TW_EUNREACHABLE || e == NULL ||
				strstr(e->msg, why) == NULL)) {
			bad = i;
			bad_st = st;
			snprintf(bad_msg, sizeof(bad_msg), "%s",
				 e != NULL ? e->msg : "(no error)");
		}
		tw_future_release(fs[i]);
	}
	atomic_store(&run->fail_ms, h_now_ms() - t0 + 1);
	bool alive = tw_agent_worker_alive(a, 1);
	W_ASSERT(w, kill(p1, SIGCONT) == 0, "SIGCONT");
	W_ASSERT(w, bad < 0, "call %d: %s: %s", bad, tw_status_name(bad_st),
		 bad_msg);
	tw_agent_get_stats(a, &s1);
	W_ASSERT(w, s1.timeouts == s0.timeouts, "%" PRIu64 " calls timed out",
		 s1.timeouts - s0.timeouts);
	W_ASSERT(w, alive, "w1 declared dead");
	/* A new session: the first tries may still meet the old one's end
	 * (the peer's RESET, a redial backoff); each fails at once. */
	int64_t v;
	tw_value aa[2] = {tw_value_int(40), tw_value_int(2)};
	tw_value at = H_TUPLE(aa);
	uint64_t until = h_now_ms() + 20000;
	do {
		st = h_call_int(a, "w1", "add", &at, &v);
		if (st != TW_OK)
			h_sleep_ms(50);
	} while (st != TW_OK && h_now_ms() < until);
	W_ASSERT(w, st == TW_OK && v == 42, "add after SIGCONT: %s",
		 tw_status_name(st));
	W_ASSERT(w, tw_agent_outstanding(a) == 0, "outstanding");
	return 0;
}

/* Killed is dead: the victim holds 100 calls it will never answer and,
 * once SIGSTOPped, 100 more it has not read; SIGKILLed, every one fails
 * within 100 ms naming it (rank 0 saw its control connection close and
 * told us; or, rank 0 killed, ours to it closed), and later calls fail
 * at once without opening a session. */
static int w_killed(struct h_worker *w, tw_agent *a, struct dpdk_run *run,
		    int victim)
{
	enum { N = 200 };
	static tw_future *fs[N];
	const char *vn = h_names[victim];
	char dead[64];
	snprintf(dead, sizeof(dead), "worker '%s' (id %d) is dead", vn, victim);
	pid_t p1 = (pid_t)atomic_load(&run->pid[victim]);
	int64_t v;
	tw_value aa[2] = {tw_value_int(40), tw_value_int(2)};
	tw_value at = H_TUPLE(aa);
	tw_status st = h_call_int(a, vn, "add", &at, &v);
	W_ASSERT(w, st == TW_OK && v == 42, "add: %s", tw_status_name(st));
	for (int i = 0; i < N / 2; i++) {
		st = tw_rpc_async(a, vn, "never", NULL, NULL, 60000, &fs[i]);
		W_ASSERT(w, st == TW_OK, "never %d: %s", i, tw_status_name(st));
	}
	/* They reach the victim (an add behind them returns) before it stops. */
	st = h_call_int(a, vn, "add", &at, &v);
	W_ASSERT(w, st == TW_OK && v == 42, "add: %s", tw_status_name(st));
	W_ASSERT(w, stop_now(p1), "SIGSTOP %d", (int)p1);
	for (int i = N / 2; i < N; i++) {
		st = add_async(a, vn, i, 60000, &fs[i]);
		W_ASSERT(w, st == TW_OK, "async %d: %s", i, tw_status_name(st));
	}
	h_sleep_ms(100);
	uint64_t t0 = h_now_ms();
	W_ASSERT(w, kill(p1, SIGKILL) == 0, "SIGKILL");
	for (int i = 0; i < N; i++) {
		st = tw_future_wait(fs[i], 30000);
		W_ASSERT(w, st == TW_EUNREACHABLE, "call %d: %s", i,
			 tw_status_name(st));
		W_ASSERT(w, strstr(tw_future_error(fs[i])->msg, dead) != NULL,
			 "call %d: %s", i, tw_future_error(fs[i])->msg);
		tw_future_release(fs[i]);
	}
	uint64_t took = h_now_ms() - t0;
	atomic_store(&run->fail_ms, took + 1);
	W_ASSERT(w, took < 100, "calls failed %" PRIu64 " ms after SIGKILL",
		 took);
	W_ASSERT(w, !tw_agent_worker_alive(a, (uint32_t)victim), "%s alive",
		 vn);
	for (int k = 0; k < 3; k++) {
		uint64_t t1 = h_now_ms();
		tw_future *f = NULL;
		st = tw_rpc_async(a, vn, "add", &at, NULL, 60000, &f);
		W_ASSERT(w, st == TW_EUNREACHABLE && f == NULL, "new call: %s",
			 tw_status_name(st));
		W_ASSERT(w, strstr(tw_errmsg(st), dead) != NULL, "%s",
			 tw_errmsg(st));
		tw_value r, e;
		st = tw_rpc_sync(a, vn, "add", &at, NULL, 60000, &r, &e);
		W_ASSERT(w, st == TW_EUNREACHABLE, "sync: %s",
			 tw_status_name(st));
		tw_value_destroy(&e);
		W_ASSERT(w, h_now_ms() - t1 < 50,
			 "new calls took %" PRIu64 " ms", h_now_ms() - t1);
	}
	W_ASSERT(w, tw_agent_outstanding(a) == 0, "outstanding");
	return 0;
}

static int w_dpdk(struct h_worker *w)
{
	struct dpdk_run *run = w->arg;
	if (w->rank == 1) {
		/* The memif client after the server's port is up. */
		uint64_t until = h_now_ms() + 30000;
		while (!atomic_load(&run->srv_up) && h_now_ms() < until)
			h_sleep_ms(2);
		if (atomic_load(&run->skip))
			return 0;
		W_ASSERT(w, atomic_load(&run->srv_up), "rank 0 never came up");
	}
	atomic_store(&run->pid[w->rank], (int)getpid());
	struct tw_agent_opts o;
	h_opts(&o, w);
	struct tw_dpdk_opts d;
	tw_dpdk_opts_init(&d, sizeof(d));
	d.eal_args = run->eal[w->rank];
	d.port = "net_memif0";
	d.local_ip = w->rank == 0 ? "10.88.0.1" : "10.88.0.2";
	d.udp_base_port = 32000;
	if (run->mode == RUN_NOACK && w->rank == 0)
		d.rexmit_max = NOACK_REXMIT;
	o.transport = TW_TRANSPORT_DPDK;
	o.transport_opts = &d;
	o.same_host = false; /* both on this host: memif is under test */
	o.num_loops = (uint32_t)run->loops;
	if (w->rank == 0) {
		o.setup = srv_up_setup;
		o.setup_arg = run;
	}
	char err[512] = "";
	tw_agent *a;
	tw_status st = h_init_err(err, sizeof(err), &o, &a);
	if (st != TW_OK && strstr(err, "rte_eal_init failed") != NULL) {
		snprintf(run->why, sizeof(run->why), "rank %d: %s", w->rank,
			 err);
		atomic_store(&run->skip, 1);
		atomic_store(&run->srv_up, 1); /* let rank 1 go */
		tw_dpdk_eal_cleanup();
		return 0;
	}
	if (w->rank == 0 && st != TW_OK)
		atomic_store(&run->srv_up, 1);
	W_ASSERT(w, st == TW_OK, "init: %s (%s)", tw_status_name(st), err);
	int rc = 0;
	int victim = run->mode == RUN_KILLED    ? 1
		     : run->mode == RUN_KILLED0 ? 0
						: -1;
	if (w->rank == victim)
		for (;;) /* until the other kills us */
			h_sleep_ms(1000);
	if (victim >= 0 && w->rank == 1 - victim)
		rc = w_killed(w, a, run, victim);
	else if (w->rank == 0)
		rc = run->mode == RUN_PAUSED      ? w_paused(w, a, run)
		     : run->mode == RUN_NOACK     ? w_noack(w, a, run)
		     : run->mode == RUN_TELEMETRY ? w_telemetry(w, a, run)
						  : w_calls(w, a, run);
	if (victim == 0 && rc == 0) {
		/* Rank 0 gone, the barrier cannot run (agent.h). */
		st = tw_agent_shutdown(a, true);
		tw_dpdk_eal_cleanup();
		W_ASSERT(w, st == TW_EUNREACHABLE, "shutdown: %s",
			 tw_status_name(st));
		return 0;
	}
	if (rc != 0) {
		tw_agent_shutdown(a, false);
		tw_dpdk_eal_cleanup();
		return rc;
	}
	st = tw_agent_shutdown(a, true);
	/* The agent leaves the EAL up: the process's last DPDK user ends it. */
	tw_dpdk_eal_cleanup();
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_status_name(st));
	return 0;
}

static void need_root(void)
{
	if (geteuid() != 0)
		cr_skip_test("the DPDK agent tests need root (the EAL)");
}

static void run_group(int loops, enum run_mode mode)
{
	need_root();
	struct dpdk_run *run = run_new(loops, mode);
	uint64_t t0 = h_now_ms();
	h_run_group(2, w_dpdk, run, NULL,
		    mode == RUN_KILLED    ? 1u << 1
		    : mode == RUN_KILLED0 ? 1u << 0
					  : 0);
	run_done(run);
	if (atomic_load(&run->skip)) {
		char why[512];
		snprintf(why, sizeof(why), "%s", run->why);
		munmap(run, sizeof(*run));
		cr_skip_test("the EAL cannot start here: %s", why);
	}
	if (mode == RUN_PAUSED)
		fprintf(stderr,
			"[agent_dpdk] w1 stopped 10 s: 1000 calls done %" PRIu64
			" ms after SIGCONT (%" PRIu64 " ms in all)\n",
			(uint64_t)atomic_load(&run->resume_ms) - 1,
			h_now_ms() - t0);
	if (mode == RUN_KILLED || mode == RUN_KILLED0)
		fprintf(stderr,
			"[agent_dpdk] w%d SIGKILLed: its 200 calls failed in "
			"%" PRIu64 " ms (%" PRIu64 " ms in all)\n",
			mode == RUN_KILLED ? 1 : 0,
			(uint64_t)atomic_load(&run->fail_ms) - 1,
			h_now_ms() - t0);
	if (mode == RUN_NOACK)
		fprintf(stderr,
			"[agent_dpdk] w1 stopped, rexmit_max %d: its 100 calls "
			"failed in %" PRIu64 " ms, with the reason\n",
			NOACK_REXMIT, (uint64_t)atomic_load(&run->fail_ms) - 1);
	if (mode == RUN_TELEMETRY)
		fprintf(stderr,
			"[agent_dpdk] w0's statistics read through DPDK "
			"telemetry\n");
	if (mode != RUN_CALLS) {
		munmap(run, sizeof(*run));
		return;
	}
	fprintf(stderr,
		"[agent_dpdk] %d loop(s): %" PRIu64 " ms; 1 MiB echo %" PRIu64
		" ms; 64 MiB echo %" PRIu64 " ms%s\n",
		loops, h_now_ms() - t0, (uint64_t)atomic_load(&run->mib_ms),
		(uint64_t)atomic_load(&run->big_ms),
		atomic_load(&run->big_ms) ? "" : " (not run)");
	munmap(run, sizeof(*run));
}

Test(agent_dpdk, calls_errors_tensors_timeout_1_loop, .timeout = 120)
{
	run_group(1, RUN_CALLS);
}

Test(agent_dpdk, calls_errors_tensors_timeout_2_loops, .timeout = 120)
{
	run_group(2, RUN_CALLS);
}

Test(agent_dpdk, a_peer_paused_10s_loses_no_call, .timeout = 120)
{
	run_group(1, RUN_PAUSED);
}

Test(agent_dpdk, a_killed_peer_fails_its_calls_within_100ms, .timeout = 120)
{
	run_group(1, RUN_KILLED);
}

Test(agent_dpdk, a_killed_rank_0_fails_its_calls_within_100ms, .timeout = 120)
{
	run_group(1, RUN_KILLED0);
}

Test(agent_dpdk, a_peer_acking_nothing_ends_its_session, .timeout = 120)
{
	run_group(1, RUN_NOACK);
}

Test(agent_dpdk, statistics_through_dpdk_telemetry, .timeout = 120)
{
	run_group(1, RUN_TELEMETRY);
}
