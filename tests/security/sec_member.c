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
 *   quit                immediate shutdown, exit 0
 *
 * sec_member --auth-vector SECRET CTX prints one handshake's nonces and
 * MACs from rpc/auth.c instead (see auth_vector).
 *
 * Failures read "err <status number> <status name> <reason>". */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/tensorwire.h>

#include "rpc/auth.h"
#include "tools/demo_fns.h"

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

static void ping(tw_agent *a, const char *target, int64_t timeout_ms)
{
	tw_value args, res = tw_value_none(), err = tw_value_none();
	if (tw_value_tuple(&args, 2) != TW_OK) {
		printf("err %d %s out of memory\n", TW_ENOMEM,
		       tw_strerror(TW_ENOMEM));
		return;
	}
	tw_value_set_item(&args, 0, tw_value_int(20));
	tw_value_set_item(&args, 1, tw_value_int(22));
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

int main(int argc, char **argv)
{
	struct tw_agent_opts o;
	tw_agent_opts_init(&o, sizeof(o));
	const char *target = "w0";
	static const struct option longopts[] = {
		{"name", required_argument, NULL, 'n'},
		{"rank", required_argument, NULL, 'r'},
		{"world-size", required_argument, NULL, 'w'},
		{"rendezvous", required_argument, NULL, 'R'},
		{"target", required_argument, NULL, 't'},
		{"init-timeout-ms", required_argument, NULL, 'i'},
		{NULL, 0, NULL, 0},
	};
	if (argc == 4 && strcmp(argv[1], "--auth-vector") == 0)
		return auth_vector(argv[2], atoi(argv[3]));
	int c;
	while ((c = getopt_long(argc, argv, "n:r:w:R:t:i:", longopts, NULL)) !=
	       -1) {
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
		} else if (strncmp(line, "quit", 4) == 0) {
			break;
		} else {
			printf("err %d %s unknown command\n", TW_EINVAL,
			       tw_strerror(TW_EINVAL));
		}
	}
	tw_agent_shutdown(a, false);
	return 0;
}
