/* Unit tests for dataplane/uring_provider.c: its option checks, start copies */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tensorwire/dpdk.h>
#include <tensorwire/uring.h>

#include "dataplane/loop.h"
#include "dataplane/transport.h"

/* A reason names what it is about; the wording may change, these words
 * may not. */
#define ASSERT_REASON(st, ...)                                                 \
	do {                                                                   \
		const char *m_ = tw_errmsg(st);                                \
		const char *w_[] = {__VA_ARGS__};                              \
		for (size_t i_ = 0; i_ < sizeof(w_) / sizeof(w_[0]); i_++)     \
			cr_assert(strstr(m_, w_[i_]) != NULL,                  \
				  "reason '%s' lacks '%s'", m_, w_[i_]);       \
	} while (0)

static const struct tw_transport_provider *prov(void)
{
	const struct tw_transport_provider *p =
		tw_transport_provider_find(TW_TRANSPORT_URING);
	cr_assert_not_null(p);
	return p;
}

static void on_frame(void *ctx, tw_conn *c, const tw_frame_hdr *h, tw_buf *b,
		     size_t off, size_t len)
{
	(void)ctx, (void)c, (void)h, (void)b, (void)off, (void)len;
}

static void on_conn(void *ctx, tw_conn *c, tw_status st)
{
	(void)ctx, (void)c, (void)st;
}

static struct tw_uring_opts defaults(void)
{
	struct tw_uring_opts o;
	tw_uring_opts_init(&o, sizeof(o));
	return o;
}

Test(uring_provider, defaults_pass)
{
	const struct tw_transport_provider *p = prov();
	cr_assert_eq(p->check(NULL, 1), TW_OK, "NULL: all defaults");
	struct tw_uring_opts o = defaults();
	cr_assert_eq(p->check(&o, 1), TW_OK);
	cr_assert_eq(p->check(&o, 8), TW_OK, "any number of loops");
	cr_assert_str_eq(o.listen_host, "127.0.0.1");
	cr_assert_str_eq(o.cc_local, "reno");
}

/* An older caller's shorter struct: what it lacks takes the defaults. */
Test(uring_provider, a_shorter_struct_passes)
{
	struct tw_uring_opts o = defaults();
	o.opts_size = offsetof(struct tw_uring_opts, cc_local);
	o.cc_local = "no such thing"; /* beyond its size: not read */
	cr_assert_eq(prov()->check(&o, 1), TW_OK, "%s", tw_errmsg(TW_EINVAL));
}

Test(uring_provider, options_of_another_transport)
{
	struct tw_dpdk_opts d;
	tw_dpdk_opts_init(&d, sizeof(d));
	tw_status st = prov()->check(&d, 1);
	cr_assert_eq(st, TW_EINVAL);
	ASSERT_REASON(st, "'dpdk'", "'uring'", "tw_uring_opts_init");
	struct tw_uring_opts o = defaults();
	o.opts_size = 4;
	st = prov()->check(&o, 1);
	cr_assert_eq(st, TW_EINVAL);
	ASSERT_REASON(st, "opts_size", "tw_uring_opts_init");
}

Test(uring_provider, listen_host)
{
	/* Each refused before any resolver is asked (no DNS in tests). */
	static const char *const bad[] = {
		"1.2.3",       "",
		"127.0.0.1:5", "[::1",
		"::g",         "1.2.3.4.5",
		"bad name",    "a..b",
		"[10.0.0.1]",  "fe80::1%tw-no-such-if0"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct tw_uring_opts o = defaults();
		o.listen_host = bad[i];
		tw_status st = prov()->check(&o, 1);
		cr_assert_eq(st, TW_EINVAL, "'%s'", bad[i]);
		ASSERT_REASON(st, "listen_host");
		if (bad[i][0] != '\0')
			ASSERT_REASON(st, bad[i]);
	}
	struct tw_uring_opts o = defaults();
	o.listen_host = NULL;
	tw_status st = prov()->check(&o, 1);
	cr_assert_eq(st, TW_EINVAL);
	ASSERT_REASON(st, "listen_host");
	static const char *const good[] = {
		"localhost", "0.0.0.0", "10.1.2.3", "::1", "[::1]", "::", "lo"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		o.listen_host = good[i];
		cr_assert_eq(prov()->check(&o, 1), TW_OK, "'%s': %s", good[i],
			     tw_errmsg(TW_EINVAL));
	}
}

/* Congestion control names are tried on a socket: one the kernel does
 * not have is refused, naming the option and the name. */
Test(uring_provider, congestion_control_names)
{
	struct tw_uring_opts o = defaults();
	o.cc_local = "twnosuchcc";
	tw_status st = prov()->check(&o, 1);
	cr_assert_eq(st, TW_EINVAL);
	ASSERT_REASON(st, "cc_local", "'twnosuchcc'");
	o = defaults();
	o.cc_remote = "twnosuchcc";
	st = prov()->check(&o, 1);
	cr_assert_eq(st, TW_EINVAL);
	ASSERT_REASON(st, "cc_remote", "'twnosuchcc'");
	/* Too long for the kernel's names. */
	o = defaults();
	o.cc_local = "a-congestion-control-name";
	st = prov()->check(&o, 1);
	cr_assert_eq(st, TW_EINVAL);
	ASSERT_REASON(st, "congestion control");
	/* NULL and "" are the system's choice; reno is always there. */
	o = defaults();
	o.cc_local = NULL;
	o.cc_remote = "";
	cr_assert_eq(prov()->check(&o, 1), TW_OK);
	o.cc_local = "reno";
	o.cc_remote = "reno";
	cr_assert_eq(prov()->check(&o, 1), TW_OK);
}

/* tw_uring_opts_check's refusals reach the agent through the provider,
 * each naming its field. */
Test(uring_provider, transport_options)
{
	static const char *const field[] = {
		"recv_buf_count",  "recv_buf_count",   "recv_buf_size",
		"max_queued",      "rx_pool_buf_size", "rx_pool_count",
		"busy_poll_conns",
	};
	for (size_t i = 0; i < sizeof(field) / sizeof(field[0]); i++) {
		struct tw_uring_opts o = defaults();
		switch (i) {
		case 0:
			o.recv_buf_count = 48; /* not a power of 2 */
			break;
		case 1:
			o.recv_buf_count = 65536;
			break;
		case 2:
			o.recv_buf_size = 0;
			break;
		case 3:
			o.max_queued = 0;
			break;
		case 4:
			o.rx_pool_buf_size = 47; /* not even a header */
			break;
		case 5:
			o.rx_pool_count = 0;
			break;
		default:
			o.busy_poll_conns = 17;
			break;
		}
		tw_status st = prov()->check(&o, 1);
		cr_assert_eq(st, TW_EINVAL, "case %zu (%s)", i, field[i]);
		ASSERT_REASON(st, field[i]);
	}
}

/* start copies what it needs: the caller's strings may go at once. The
 * env makes a working transport that listens where listen_addr says. */
Test(uring_provider, start_keeps_copies)
{
	const struct tw_transport_provider *p = prov();
	char host[32] = "127.0.0.1", cc[16] = "reno";
	struct tw_uring_opts o = defaults();
	o.listen_host = host;
	o.cc_local = cc;
	struct tw_transport_group g = {.nloops = 2, .rank = 0, .world_size = 1};
	void *env = NULL;
	cr_assert_eq(p->start(&o, &g, &env), TW_OK);
	memset(host, 'x', sizeof(host) - 1);
	memset(cc, 'y', sizeof(cc) - 1);
	memset(&o, 0x5a, sizeof(o));
	char url[64];
	for (uint32_t i = 0; i < 2; i++) {
		cr_assert_eq(p->listen_addr(env, i, url, sizeof(url)), TW_OK);
		cr_assert_str_eq(url, "tcp://127.0.0.1:0", "loop %u", i);
	}
	struct tw_loop_opts lo;
	tw_loop_opts_init(&lo, sizeof(lo));
	tw_loop *l = NULL;
	cr_assert_eq(tw_loop_create(&lo, &l), TW_OK);
	struct tw_transport_cbs cbs = {.on_frame = on_frame,
				       .on_conn = on_conn};
	tw_transport *t = NULL;
	cr_assert_eq(p->create(env, 0, l, &cbs, &t), TW_OK);
	cr_assert_str_eq(t->ops->name, "uring");
	char bound[64];
	cr_assert_eq(t->ops->listen(t, url, bound, sizeof(bound)), TW_OK);
	unsigned port = 0;
	cr_assert_eq(sscanf(bound, "tcp://127.0.0.1:%u", &port), 1, "%s",
		     bound);
	cr_assert_neq(port, 0);
	t->ops->destroy(t);
	tw_loop_destroy(l);
	p->stop(env);
}

/* listen_port: loop i serves listen_port + i; a range past 65535 is
 * refused naming it; the transport listens there. */
Test(uring_provider, listen_port)
{
	const struct tw_transport_provider *p = prov();
	struct tw_uring_opts o = defaults();
	o.listen_port = 65535;
	cr_assert_eq(p->check(&o, 1), TW_OK);
	tw_status st = p->check(&o, 2);
	cr_assert_eq(st, TW_EINVAL);
	ASSERT_REASON(st, "listen_port 65535");
	ASSERT_REASON(st, "65535..65536");
	/* A port free now, and the one after it for loop 1. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	close(fd);
	o.listen_port = ntohs(a.sin_port);
	struct tw_transport_group g = {.nloops = 2, .rank = 0, .world_size = 1};
	void *env = NULL;
	cr_assert_eq(p->start(&o, &g, &env), TW_OK);
	char url[64], want[64];
	for (uint32_t i = 0; i < 2; i++) {
		cr_assert_eq(p->listen_addr(env, i, url, sizeof(url)), TW_OK);
		snprintf(want, sizeof(want), "tcp://127.0.0.1:%u",
			 (unsigned)o.listen_port + i);
		cr_assert_str_eq(url, want, "loop %u", i);
	}
	cr_assert_eq(p->listen_addr(env, 0, url, sizeof(url)), TW_OK);
	struct tw_loop_opts lo;
	tw_loop_opts_init(&lo, sizeof(lo));
	tw_loop *l = NULL;
	cr_assert_eq(tw_loop_create(&lo, &l), TW_OK);
	struct tw_transport_cbs cbs = {.on_frame = on_frame,
				       .on_conn = on_conn};
	tw_transport *t = NULL;
	cr_assert_eq(p->create(env, 0, l, &cbs, &t), TW_OK);
	char bound[64];
	cr_assert_eq(t->ops->listen(t, url, bound, sizeof(bound)), TW_OK);
	cr_assert_str_eq(bound, url);
	/* Taken: refused, naming the address and the reason. */
	tw_transport *t2 = NULL;
	cr_assert_eq(p->create(env, 0, l, &cbs, &t2), TW_OK);
	st = t2->ops->listen(t2, url, bound, sizeof(bound));
	cr_assert_eq(st, TW_EINVAL);
	ASSERT_REASON(st, url);
	ASSERT_REASON(st, "in use");
	t2->ops->destroy(t2);
	t->ops->destroy(t);
	tw_loop_destroy(l);
	p->stop(env);
}
