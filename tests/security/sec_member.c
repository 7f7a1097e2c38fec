/* An honest member for the security suite: joins a group like tw-worker
 * (the secret from TW_SECRET / TW_SECRET_FILE, which the agent reads
 * itself), then serves the demo functions and obeys one command per stdin
 * line, answering one line each, so a test can ask "do a member's calls
 * still work?" at any moment of an attack:
 *
 *   ping [TIMEOUT_MS]   demo::add(20, 22) on the target -> "ok 42"
 *   big BYTES           demo::echo of a uint8 tensor of BYTES bytes (never
 *                       touched, so it costs no memory) -> "ok" or
 *                       "err ..." (an oversized tensor must fail here, at
 *                       the caller)
 *   stats               "stats <conns_opened> <conns_closed> <bad_frames>"
 *   astats              "astats calls_served=N calls_sent=N ..." (more of
 *                       tw_agent_stats, name=value)
 *   target NAME         later commands call NAME instead -> "ok NAME"
 *   reopen N [T_MS]     N times: close our connection to the target (on
 *                       every loop), then one demo::add on it, which
 *                       opens a new session -> "ok N" when every call
 *                       succeeded, else "err ..." naming the first that
 *                       did not
 *   burst N MS [T_MS]   N calls of demo::slow(MS) and N of demo::add(i,
 *                       1000) on the target, all in flight at once, then
 *                       waits for all -> "ok N" when every one succeeded
 *                       with its right value, else "err ..." naming the
 *                       first that did not
 *   dstats              the DPDK transport's counters summed over this
 *                       agent's loops, "dstats name=value ..." (gauges
 *                       summed too; bad_by_reason as bad_<reason>=N for
 *                       the reasons seen), "dstats none" without DPDK
 *   quit                immediate shutdown, exit 0
 *
 * --dpdk-eal ARGS [--dpdk-port P] [--dpdk-ip IP] [--dpdk-udp-port P]
 * run it on the DPDK transport (as tw-worker's flags), for the attacks of
 * tests/security/test_dpdk_attack.py. dstats reads the transport's
 * counters from the loops' threads without a lock: aligned 64-bit words,
 * a snapshot good enough for a test's before/after.
 *
 * sec_member --auth-vector SECRET CTX prints one handshake's nonces and
 * MACs from rpc/auth.c instead (see auth_vector).
 *
 * Failures read "err <status number> <status name> <reason>". */
#include <getopt.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tensorwire/tensorwire.h>

#include "rpc/agent_impl.h"
#include "rpc/auth.h"
#include "tools/demo_fns.h"
#include "tw_config.h"
#if TW_HAVE_DPDK
#include "dataplane/dpdk.h"
#include "dataplane/dpdk_pkt.h"
#endif

static void hex(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
	printf(" ");
}

/* --auth-vector SECRET CTX: one handshake between rpc/auth.c's client (id 1)
 * and server (id 0 for data, the rendezvous' id for ctx 2), printed as
 * "nc ns mac_s mac_c", so the Python attacker's MAC can be checked
 * against the library's. */
static int auth_vector(const char *secret, int ctx)
{
	struct auth_key k = {0};
	/* "" is the empty key (no secret), which auth_key_load refuses
	 * when given explicitly: k stays zeroed then. */
	if (*secret != '\0' && auth_key_load(secret, NULL, &k) != TW_OK)
		return 1;
	uint32_t sid = ctx == AUTH_CTX_RDV ? AUTH_ID_RDV : 0;
	struct auth_hs c, s;
	struct auth_msg hello, ch, pr;
	auth_client_start(&c, &k, (uint8_t)ctx, 1, sid, &hello);
	if (auth_server_hello(&s, &k, (uint8_t)ctx, sid, &hello, &ch) ||
	    auth_client_challenge(&c, &ch, &pr) || auth_server_proof(&s, &pr))
		return 1;
	hex(hello.nonce, AUTH_NONCE);
	hex(ch.nonce, AUTH_NONCE);
	hex(ch.mac, AUTH_MAC);
	hex(pr.mac, AUTH_MAC);
	printf("\n");
	auth_key_free(&k);
	return 0;
}

static void say_err(tw_status s, const tw_value *err)
{
	const char *why = tw_errmsg(s);
	if (err != NULL && err->kind == TW_KIND_ERROR && err->u.err->msg)
		why = err->u.err->msg;
	printf("err %d %s %s\n", (int)s, tw_strerror(s), why);
}

/* demo::add(20, 22)'s arguments into *args; false, said, when out of
 * memory. */
static bool add_args(tw_value *args)
{
	if (tw_value_tuple(args, 2) != TW_OK) {
		printf("err %d %s out of memory\n", TW_ENOMEM,
		       tw_strerror(TW_ENOMEM));
		return false;
	}
	tw_value_set_item(args, 0, tw_value_int(20));
	tw_value_set_item(args, 1, tw_value_int(22));
	return true;
}

static void ping(tw_agent *a, const char *target, int64_t timeout_ms)
{
	tw_value args, res = tw_value_none(), err = tw_value_none();
	if (!add_args(&args))
		return;
	tw_status s = tw_rpc_sync(a, target, "demo::add", &args, NULL,
				  timeout_ms, &res, &err);
	if (s == TW_OK && res.kind == TW_KIND_INT)
		printf("ok %lld\n", (long long)res.u.i);
	else if (s == TW_OK)
		printf("err 0 OK unexpected result kind %u\n", res.kind);
	else
		say_err(s, &err);
	tw_value_destroy(&args);
	tw_value_destroy(&res);
	tw_value_destroy(&err);
}

static void big(tw_agent *a, const char *target, long long bytes)
{
	tw_tensor t;
	int64_t shape[1] = {bytes};
	tw_status s = tw_tensor_alloc(&t, TW_UINT8, 1, shape);
	if (s != TW_OK) {
		say_err(s, NULL);
		return;
	}
	tw_value args, tv, res = tw_value_none(), err = tw_value_none();
	s = tw_value_tuple(&args, 1);
	if (s == TW_OK)
		s = tw_value_tensor(&tv, &t);
	tw_tensor_release(&t);
	if (s == TW_OK)
		s = tw_value_set_item(&args, 0, tv);
	if (s == TW_OK)
		s = tw_rpc_sync(a, target, "demo::echo", &args, NULL, 60000,
				&res, &err);
	if (s == TW_OK)
		printf("ok\n");
	else
		say_err(s, &err);
	tw_value_destroy(&args);
	tw_value_destroy(&res);
	tw_value_destroy(&err);
}

/* N demo::slow(ms) and N demo::add(i, 1000) in flight at once. */
static void burst(tw_agent *a, const char *target, int n, int64_t ms,
		  int64_t timeout_ms)
{
	if (n < 1 || n > 1000) {
		printf("err %d %s burst: N must be 1 .. 1000\n", TW_EINVAL,
		       tw_strerror(TW_EINVAL));
		return;
	}
	tw_future **f = calloc(2 * (size_t)n, sizeof(*f));
	if (f == NULL) {
		printf("err %d %s out of memory\n", TW_ENOMEM,
		       tw_strerror(TW_ENOMEM));
		return;
	}
	tw_status s = TW_OK;
	int bad = -1, made = 0;
	for (int i = 0; i < 2 * n && s == TW_OK; i++) {
		tw_value args;
		bool slow = i % 2 == 0;
		s = tw_value_tuple(&args, slow ? 1 : 2);
		if (s != TW_OK)
			break;
		if (slow) {
			tw_value_set_item(&args, 0, tw_value_int(ms));
		} else {
			tw_value_set_item(&args, 0, tw_value_int(i / 2));
			tw_value_set_item(&args, 1, tw_value_int(1000));
		}
		s = tw_rpc_async(a, target, slow ? "demo::slow" : "demo::add",
				 &args, NULL, timeout_ms, &f[i]);
		tw_value_destroy(&args);
		if (s == TW_OK)
			made++;
		else
			bad = i;
	}
	for (int i = 0; i < made; i++) {
		tw_status w = tw_future_wait(f[i], -1);
		if (w == TW_OK) {
			const tw_value *v = tw_future_value(f[i]);
			bool slow = i % 2 == 0;
			bool right = v != NULL &&
				     (slow ? v->kind == TW_KIND_NONE
					   : v->kind == TW_KIND_INT &&
						      v->u.i == i / 2 + 1000);
			if (!right)
				w = TW_EVALUE;
		}
		if (w != TW_OK && s == TW_OK) {
			s = w;
			bad = i;
		}
		tw_future_release(f[i]);
	}
	free(f);
	if (s == TW_OK)
		printf("ok %d\n", n);
	else
		printf("err %d %s call %d of %d failed\n", (int)s,
		       tw_strerror(s), bad, 2 * n);
}

/* Close l's connection to worker dst, on l's thread (the poller closes
 * it): the next call to dst on l opens a new connection. */
struct reopen_msg {
	struct tw_loop_msg m; /* first: the message is the object */
	struct agent_loop *l;
	uint32_t dst;
	_Atomic int done;
};

static void reopen_fn(struct tw_loop_msg *m)
{
	struct reopen_msg *r = (struct reopen_msg *)(void *)m;
	struct conn_state *cs = r->l->out[r->dst];
	if (cs != NULL)
		conn_close_later(cs);
	atomic_store(&r->done, 1);
}

static void reopen(tw_agent *a, const char *target, int n, int64_t tmo)
{
	tw_worker_info wi;
	if (n < 1 || n > 100000 ||
	    tw_agent_worker_info(a, target, &wi) != TW_OK ||
	    wi.id >= a->world) {
		printf("err %d %s reopen: N 1 .. 100000 and a member\n",
		       TW_EINVAL, tw_strerror(TW_EINVAL));
		return;
	}
	tw_value args;
	if (!add_args(&args))
		return;
	for (int i = 0; i < n; i++) {
		for (uint32_t k = 0; k < a->nloops; k++) {
			struct reopen_msg r = {.m.fn = reopen_fn,
					       .l = &a->loops[k],
					       .dst = wi.id};
			struct timespec ms1 = {0, 1000000};
			while (tw_loop_post(a->loops[k].loop, &r.m) != TW_OK)
				nanosleep(&ms1, NULL);
			while (!atomic_load(&r.done))
				nanosleep(&ms1, NULL);
		}
		tw_value res = tw_value_none(), err = tw_value_none();
		tw_status s = tw_rpc_sync(a, target, "demo::add", &args, NULL,
					  tmo, &res, &err);
		bool ok = s == TW_OK && res.kind == TW_KIND_INT &&
			  res.u.i == 42;
		if (!ok) {
			printf("err %d %s reopen %d of %d: %s\n", (int)s,
			       tw_strerror(s), i, n,
			       err.kind == TW_KIND_ERROR && err.u.err->msg
				       ? err.u.err->msg
				       : "wrong result");
			tw_value_destroy(&res);
			tw_value_destroy(&err);
			tw_value_destroy(&args);
			return;
		}
		tw_value_destroy(&res);
		tw_value_destroy(&err);
	}
	tw_value_destroy(&args);
	printf("ok %d\n", n);
}

static void astats(const tw_agent *a)
{
	struct tw_agent_stats st;
	tw_agent_get_stats(a, &st);
	printf("astats calls_started=%llu calls_sent=%llu calls_served=%llu "
	       "late_responses=%llu bad_frames=%llu timeouts=%llu "
	       "conns_opened=%llu conns_closed=%llu spoofed_frames=%llu\n",
	       (unsigned long long)st.calls_started,
	       (unsigned long long)st.calls_sent,
	       (unsigned long long)st.calls_served,
	       (unsigned long long)st.late_responses,
	       (unsigned long long)st.bad_frames,
	       (unsigned long long)st.timeouts,
	       (unsigned long long)st.conns_opened,
	       (unsigned long long)st.conns_closed,
	       (unsigned long long)st.spoofed_frames);
}

static void dstats(const tw_agent *a, bool dpdk)
{
#if TW_HAVE_DPDK
	if (dpdk) {
		struct tw_dpdk_stats sum, one;
		memset(&sum, 0, sizeof(sum));
		for (uint32_t i = 0; i < a->nloops; i++) {
			tw_dpdk_get_stats(a->loops[i].t, &one);
			const uint64_t *src = (const uint64_t *)(void *)&one;
			uint64_t *dst = (uint64_t *)(void *)&sum;
			for (size_t k = 0; k < sizeof(sum) / 8; k++)
				dst[k] += src[k];
		}
#define DS(f) printf(" " #f "=%llu", (unsigned long long)sum.f)
		printf("dstats");
		DS(pkts_tx);
		DS(pkts_rx);
		DS(frames_tx);
		DS(frames_rx);
		DS(bytes_tx);
		DS(retransmits);
		DS(acks_tx);
		DS(pings_tx);
		DS(resets_tx);
		DS(resets_rx);
		DS(dup_pkts);
		DS(ooo_pkts);
		DS(ooo_drops);
		DS(bad_pkts);
		DS(bad_frames);
		DS(foreign_pkts);
		DS(steer_drops);
		DS(sessions_opened);
		DS(sessions_accepted);
		DS(sessions_dead);
		DS(sessions_closed);
		DS(admit_drops);
		DS(auth_drops);
		DS(addr_drops);
		DS(tag_drops);
		DS(replay_drops);
		DS(asm_waits);
		DS(asm_stalls);
		DS(asm_reserved);
		DS(ooo_cap_drops);
		DS(ooo_held);
		DS(sessions_unacked);
		DS(accept_timeouts);
		DS(unproven_evicted);
		DS(connect_replays);
		DS(sessions_full);
		DS(sessions_live);
		DS(cookies_tx);
		DS(cookie_stale);
		DS(cookies_rx);
#undef DS
		for (int r = 0; r < TW_DPDK_BAD_REASONS; r++)
			if (sum.bad_by_reason[r] != 0)
				printf(" bad_%s=%llu",
				       r < TWP_ERR_COUNT_
					       ? twp_err_name((enum twp_err)r)
					       : "other",
				       (unsigned long long)sum.bad_by_reason[r]);
		printf("\n");
		return;
	}
#endif
	(void)a;
	(void)dpdk;
	printf("dstats none\n");
}

int main(int argc, char **argv)
{
	struct tw_agent_opts o;
	tw_agent_opts_init(&o, sizeof(o));
	const char *target = "w0";
	char target_buf[256];
	struct tw_dpdk_opts dop;
	tw_dpdk_opts_init(&dop, sizeof(dop));
	bool dpdk = false;
	static const struct option longopts[] = {
		{"name", required_argument, NULL, 'n'},
		{"rank", required_argument, NULL, 'r'},
		{"world-size", required_argument, NULL, 'w'},
		{"rendezvous", required_argument, NULL, 'R'},
		{"target", required_argument, NULL, 't'},
		{"init-timeout-ms", required_argument, NULL, 'i'},
		{"dpdk-eal", required_argument, NULL, 'E'},
		{"dpdk-port", required_argument, NULL, 'P'},
		{"dpdk-ip", required_argument, NULL, 'I'},
		{"dpdk-udp-port", required_argument, NULL, 'U'},
		{NULL, 0, NULL, 0},
	};
	if (argc == 4 && strcmp(argv[1], "--auth-vector") == 0)
		return auth_vector(argv[2], atoi(argv[3]));
	int c;
	while ((c = getopt_long(argc, argv, "n:r:w:R:t:i:E:P:I:U:", longopts,
				NULL)) != -1) {
		switch (c) {
		case 'n':
			o.name = optarg;
			break;
		case 'r':
			o.rank = (uint32_t)atoi(optarg);
			break;
		case 'w':
			o.world_size = (uint32_t)atoi(optarg);
			break;
		case 'R':
			o.rendezvous = optarg;
			break;
		case 't':
			target = optarg;
			break;
		case 'i':
			o.init_timeout_ms = atoll(optarg);
			break;
		case 'E':
			dpdk = true;
			dop.eal_args = optarg;
			break;
		case 'P':
			dop.port = optarg;
			break;
		case 'I':
			dop.local_ip = optarg;
			break;
		case 'U':
			dop.udp_base_port = (uint16_t)atoi(optarg);
			break;
		default:
			fprintf(stderr, "sec_member: bad option\n");
			return 2;
		}
	}
	if (o.name == NULL || o.rendezvous == NULL || o.world_size == 0) {
		fprintf(stderr,
			"usage: sec_member --name N --rank R "
			"--world-size W --rendezvous URL [--target T]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	o.yield = true;
	o.spin_ns = 20000;
	o.setup = demo_setup;
	if (dpdk) {
		o.transport = TW_TRANSPORT_DPDK;
		o.transport_opts = &dop;
		/* The members share this host; the DPDK path between them is
		 * what the attacks aim at. */
		o.same_host = false;
	}
	tw_agent *a;
	tw_status s = tw_agent_init(&o, &a);
	if (s != TW_OK) {
		printf("join-failed %d %s %s\n", (int)s, tw_strerror(s),
		       tw_errmsg(s));
		return 1;
	}
	tw_worker_info self;
	tw_agent_self(a, &self);
	printf("ready %u %s\n", self.id, self.addr);
	char line[256];
	while (fgets(line, sizeof(line), stdin) != NULL) {
		if (strncmp(line, "ping", 4) == 0) {
			long long ms = atoll(line + 4);
			ping(a, target, ms > 0 ? ms : 10000);
		} else if (strncmp(line, "big ", 4) == 0) {
			big(a, target, atoll(line + 4));
		} else if (strncmp(line, "stats", 5) == 0) {
			struct tw_agent_stats st;
			tw_agent_get_stats(a, &st);
			printf("stats %llu %llu %llu\n",
			       (unsigned long long)st.conns_opened,
			       (unsigned long long)st.conns_closed,
			       (unsigned long long)st.bad_frames);
		} else if (strncmp(line, "astats", 6) == 0) {
			astats(a);
		} else if (strncmp(line, "dstats", 6) == 0) {
			dstats(a, dpdk);
		} else if (strncmp(line, "target ", 7) == 0) {
			snprintf(target_buf, sizeof(target_buf), "%s",
				 line + 7);
			target_buf[strcspn(target_buf, " \r\n")] = '\0';
			target = target_buf;
			printf("ok %s\n", target);
		} else if (strncmp(line, "burst ", 6) == 0) {
			int n = 0;
			long long ms = 0, tmo = 0;
			if (sscanf(line + 6, "%d %lld %lld", &n, &ms, &tmo) < 2)
				n = -1;
			burst(a, target, n, ms, tmo > 0 ? tmo : 30000);
		} else if (strncmp(line, "reopen ", 7) == 0) {
			int n = 0;
			long long tmo = 0;
			if (sscanf(line + 7, "%d %lld", &n, &tmo) < 1)
				n = -1;
			reopen(a, target, n, tmo > 0 ? tmo : 10000);
		} else if (strncmp(line, "quit", 4) == 0) {
			break;
		} else {
			printf("err %d %s unknown command\n", TW_EINVAL,
			       tw_strerror(TW_EINVAL));
		}
	}
	tw_agent_shutdown(a, false);
#if TW_HAVE_DPDK
	if (dpdk)
		tw_dpdk_eal_cleanup();
#endif
	return 0;
}
