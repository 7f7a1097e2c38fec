/* Unit tests for dataplane/dpdk_opts.c: defaults, every refusal's reason. */
#include <criterion/criterion.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tensorwire/dpdk.h>
#include <tensorwire/uring.h>

#include "dataplane/dpdk.h"
#include "dataplane/dpdk_limits.h"

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

static struct tw_dpdk_opts defaults(void)
{
	struct tw_dpdk_opts o;
	tw_dpdk_opts_init(&o, sizeof(o));
	return o;
}

Test(dpdk_opts, defaults)
{
	struct tw_dpdk_opts o = defaults();
	cr_assert_eq(o.opts_size, sizeof(o));
	cr_assert_str_eq(o.transport, TW_TRANSPORT_DPDK);
	cr_assert_null(o.eal_args);
	cr_assert_null(o.port);
	cr_assert_null(o.local_ip);
	cr_assert_eq(o.udp_base_port, TW_DPDK_DEF_BASE_PORT);
	cr_assert_eq(o.mtu, 1500);
	cr_assert_eq(o.credits, 64);
	cr_assert_eq(o.rx_window, 0);
	cr_assert_eq(o.rto_ns, 5000000);
	/* A peer paused 10 s (SIGSTOP) must not be taken for dead. */
	cr_assert_eq(o.dead_ns, 30000000000ull);
	cr_assert_gt(o.dead_ns, 10 * 1000000000ull);
	cr_assert_eq(o.max_queued, 4096);
	cr_assert_eq(o.steer_ring, 4096);
	cr_assert_eq(o.ack_delay_ns, 100000);
	cr_assert_eq(tw_dpdk_opts_check(&o, 1), TW_OK);
	cr_assert_eq(tw_dpdk_opts_check(NULL, 1), TW_OK, "NULL: defaults");
	cr_assert_eq(tw_dpdk_opts_check(&o, 64), TW_OK);
}

/* An older caller's shorter struct: init writes only its part, get fills
 * the rest with defaults, check reads only its part. */
Test(dpdk_opts, a_shorter_struct)
{
	struct tw_dpdk_opts o;
	memset(&o, 0xab, sizeof(o));
	size_t n = offsetof(struct tw_dpdk_opts, credits);
	tw_dpdk_opts_init(&o, n);
	cr_assert_eq(o.opts_size, n);
	cr_assert_eq(((const unsigned char *)&o.credits)[0], 0xab,
		     "init wrote past the caller's size");
	struct tw_dpdk_opts g;
	tw_dpdk_opts_get(&o, &g);
	cr_assert_eq(g.opts_size, sizeof(g));
	cr_assert_eq(g.credits, 64, "a default for what the caller lacks");
	cr_assert_eq(g.mtu, 1500);
	cr_assert_eq(tw_dpdk_opts_check(&o, 1), TW_OK);
	tw_dpdk_opts_get(NULL, &g);
	cr_assert_eq(g.max_queued, 4096);
	/* Too small to hold even the size: init leaves it alone. */
	memset(&o, 0xab, sizeof(o));
	tw_dpdk_opts_init(&o, 1);
	cr_assert_eq(((const unsigned char *)&o)[0], 0xab);
	tw_dpdk_opts_init(NULL, sizeof(o));
}

struct refusal {
	const char *words[3]; /* in the reason */
	void (*spoil)(struct tw_dpdk_opts *o);
	uint32_t nqueues; /* 0: 1 */
};

#define SPOIL(name, body)                                                      \
	static void name(struct tw_dpdk_opts *o)                               \
	{                                                                      \
		body;                                                          \
	}

SPOIL(s_size, o->opts_size = sizeof(size_t))
SPOIL(s_transport, o->transport = TW_TRANSPORT_URING)
SPOIL(s_no_transport, o->transport = NULL)
SPOIL(s_none, (void)o)
SPOIL(s_base_port, o->udp_base_port = 65535)
SPOIL(s_ip_text, o->local_ip = "10.0.0")
SPOIL(s_ip_zero, o->local_ip = "0.0.0.0")
SPOIL(s_ip_v6, o->local_ip = "::1")
SPOIL(s_mtu_low, o->mtu = TW_DPDK_MIN_MTU - 1)
SPOIL(s_mtu_high, o->mtu = TW_DPDK_MAX_MTU + 1)
SPOIL(s_mbufs, o->mbufs = 0)
SPOIL(s_ext_mbufs, o->ext_mbufs = 0)
SPOIL(s_steer_zero, o->steer_ring = 0)
SPOIL(s_steer_pow2, o->steer_ring = 3000)
SPOIL(s_credits_zero, o->credits = 0)
SPOIL(s_credits_high, o->credits = TW_DPDK_MAX_CREDITS + 1)
SPOIL(s_rx_window, o->rx_window = TW_DPDK_MAX_RX_WINDOW + 1)
SPOIL(s_rto_zero, o->rto_ns = 0)
SPOIL(s_rto_huge, o->rto_ns = UINT64_MAX / 2)
SPOIL(s_dead_short, o->dead_ns = 4 * o->rto_ns - 1)
SPOIL(s_dead_zero, o->dead_ns = 0)
SPOIL(s_dead_rto_up, o->rto_ns = o->dead_ns / 4 + 1)
SPOIL(s_sessions_zero, o->max_sessions = 0)
SPOIL(s_sessions_high, o->max_sessions = 65536)
SPOIL(s_queued, o->max_queued = 0)
SPOIL(s_pool_buf, o->rx_pool_buf_size = 47)
SPOIL(s_pool_count, o->rx_pool_count = 0)
SPOIL(s_burst_zero, o->burst = 0)
SPOIL(s_burst_high, o->burst = TW_DPDK_MAX_BURST + 1)

static const struct refusal refusals[] = {
	{{"opts_size", "tw_dpdk_opts_init"}, s_size, 0},
	{{"'uring'", "'dpdk'", "tw_dpdk_opts_init"}, s_transport, 0},
	{{"(none)", "'dpdk'"}, s_no_transport, 0},
	{{"0 queue pairs", "1..65535"}, s_none, 0xFFFFFFFFu},
	{{"udp_base_port", "65535"}, s_base_port, 2},
	{{"udp_base_port"}, s_none, 65536 - TW_DPDK_DEF_BASE_PORT + 1},
	{{"local_ip", "'10.0.0'"}, s_ip_text, 0},
	{{"local_ip", "'0.0.0.0'"}, s_ip_zero, 0},
	{{"local_ip", "'::1'"}, s_ip_v6, 0},
	{{"mtu", "575"}, s_mtu_low, 0},
	{{"mtu", "9001"}, s_mtu_high, 0},
	{{"mbufs"}, s_mbufs, 0},
	{{"ext_mbufs"}, s_ext_mbufs, 0},
	{{"steer_ring", "0"}, s_steer_zero, 0},
	{{"steer_ring", "3000"}, s_steer_pow2, 0},
	{{"credits", "0"}, s_credits_zero, 0},
	{{"credits", "1025"}, s_credits_high, 0},
	{{"rx_window", "1025"}, s_rx_window, 0},
	{{"rto_ns"}, s_rto_zero, 0},
	{{"rto_ns"}, s_rto_huge, 0},
	{{"dead_ns", "19999999"}, s_dead_short, 0},
	{{"dead_ns (0)", "rto_ns 5000000"}, s_dead_zero, 0},
	{{"dead_ns (30000000000)", "rto_ns 7500000001"}, s_dead_rto_up, 0},
	{{"max_sessions", "0"}, s_sessions_zero, 0},
	{{"max_sessions", "65536"}, s_sessions_high, 0},
	{{"max_queued"}, s_queued, 0},
	{{"rx_pool_buf_size", "48"}, s_pool_buf, 0},
	{{"rx_pool_count"}, s_pool_count, 0},
	{{"burst", "0"}, s_burst_zero, 0},
	{{"burst", "257"}, s_burst_high, 0},
};

Test(dpdk_opts, every_refusal_says_why)
{
	for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		const struct refusal *r = &refusals[i];
		struct tw_dpdk_opts o = defaults();
		r->spoil(&o);
		uint32_t nq = r->nqueues == 0             ? 1
			      : r->nqueues == 0xFFFFFFFFu ? 0
							  : r->nqueues;
		tw_status st = tw_dpdk_opts_check(&o, nq);
		cr_assert_eq(st, TW_EINVAL, "case %zu (%s): %s", i, r->words[0],
			     tw_status_name(st));
		const char *m = tw_errmsg(st);
		for (int k = 0; k < 3 && r->words[k] != NULL; k++)
			cr_assert(strstr(m, r->words[k]) != NULL,
				  "case %zu: reason '%s' lacks '%s'", i, m,
				  r->words[k]);
	}
}

/* The edges that are still good. */
Test(dpdk_opts, edges_that_pass)
{
	struct tw_dpdk_opts o = defaults();
	o.mtu = TW_DPDK_MIN_MTU;
	cr_assert_eq(tw_dpdk_opts_check(&o, 1), TW_OK);
	o.mtu = TW_DPDK_MAX_MTU;
	o.credits = TW_DPDK_MAX_CREDITS;
	o.rx_window = TW_DPDK_MAX_RX_WINDOW;
	o.burst = TW_DPDK_MAX_BURST;
	o.max_sessions = 65535;
	o.steer_ring = 1;
	o.dead_ns = 4 * o.rto_ns;
	o.rx_pool_buf_size = 48;
	o.local_ip = "10.1.2.3";
	o.ack_delay_ns = UINT64_MAX; /* used up to rto_ns / 4 */
	cr_assert_eq(tw_dpdk_opts_check(&o, 1), TW_OK, "%s",
		     tw_errmsg(TW_EINVAL));
	o = defaults();
	o.udp_base_port = 65534;
	cr_assert_eq(tw_dpdk_opts_check(&o, 2), TW_OK, "ports 65534, 65535");
	cr_assert_eq(tw_dpdk_opts_check(&o, 3), TW_EINVAL);
	o = defaults();
	o.ack_delay_ns = 0; /* every packet acked at once */
	cr_assert_eq(tw_dpdk_opts_check(&o, 1), TW_OK);
}

/* The provider checks the same way: in a build with DPDK it refuses what
 * tw_dpdk_opts_check refuses; in one without, everything, saying so. */
Test(dpdk_opts, through_the_provider)
{
	const struct tw_transport_provider *p =
		tw_transport_provider_find(TW_TRANSPORT_DPDK);
	cr_assert_not_null(p);
	struct tw_dpdk_opts o = defaults();
	tw_status st = p->check(&o, 1);
	if (st == TW_ENOTSUP) {
		ASSERT_REASON(st, "without DPDK");
		return;
	}
	cr_assert_eq(st, TW_OK, "%s", tw_errmsg(st));
	o.credits = 0;
	st = p->check(&o, 1);
	cr_assert_eq(st, TW_EINVAL);
	ASSERT_REASON(st, "credits");
	struct tw_uring_opts u;
	tw_uring_opts_init(&u, sizeof(u));
	st = p->check(&u, 1);
	cr_assert_eq(st, TW_EINVAL, "another transport's options");
	ASSERT_REASON(st, "'uring'", "'dpdk'");
}
