/* The fake net (tests/lib/fake_net.c) alone: its transport contract, and
 * sends pending at a break ending with it. The conformance suite runs the
 * common contract over every provider; these cover what only the fake net
 * offers a test (holds, delivery on demand, rx_ns). */
#include "rpc/agent_impl.h"
#include "tests/lib/fake_agent.h"
#include "tests/lib/fake_net.h"

#include <criterion/criterion.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tensorwire/tensorwire.h>

#define MS UINT64_C(1000000)
#define T0 (UINT64_C(1000) * MS) /* tick-aligned start */

#define A_ADDR "fake://1"
#define B_ADDR "fake://2"
#define C_ADDR "fake://3"

/* The loops' clock, moved by the test. */
static _Atomic uint64_t fake_now;

static uint64_t fake_clock(void *ctx)
{
	(void)ctx;
	return atomic_load(&fake_now);
}

/* ---- the fake transport alone: its contract ------------------------------ */

struct ep {
	tw_transport *t;
	tw_conn *last; /* last connection announced */
	int up, closed;
	tw_status close_st;
	int frames;
	uint64_t req_ids[8];
	size_t off;
	uint64_t rx_ns;
};

static void ep_on_frame(void *ctx, tw_conn *c, const tw_frame_hdr *hp,
			tw_buf *buf, size_t off, size_t len)
{
	struct ep *e = ctx;
	(void)c;
	tw_frame_hdr h;
	cr_assert_eq(tw_frame_hdr_decode((char *)buf->data + off, NULL, &h),
		     TW_OK);
	cr_assert(h.type == hp->type && h.req_id == hp->req_id &&
			  h.src == hp->src && h.dst == hp->dst &&
			  h.timeout_ms == hp->timeout_ms &&
			  h.payload_len == hp->payload_len &&
			  h.seg_count == hp->seg_count,
		  "the header handed up is the frame's");
	cr_assert_eq(hp->total_len, len);
	e->off = off;
	e->rx_ns = e->t->rx_ns;
	cr_assert_lt(e->frames, 8);
	e->req_ids[e->frames++] = h.req_id;
}

static void ep_on_conn(void *ctx, tw_conn *c, tw_status st)
{
	struct ep *e = ctx;
	if (st == TW_OK) {
		e->up++;
		e->last = c;
	} else {
		e->closed++;
		e->close_st = st;
	}
}

struct sreq {
	struct tw_send_req r;
	struct iovec iov[2];
	unsigned char hdr[TW_FRAME_HDR_SIZE];
	unsigned char body[16];
	int done;
	tw_status st;
};

static void sreq_done(struct tw_send_req *r, tw_status st)
{
	struct sreq *s = (struct sreq *)r;
	s->done++;
	s->st = st;
}

static void sreq_init(struct sreq *s, uint64_t req_id)
{
	memset(s, 0, sizeof(*s));
	tw_frame_hdr h = {0};
	h.version = TW_FRAME_VERSION;
	h.type = TW_MSG_ACK;
	h.req_id = req_id;
	h.payload_len = sizeof(s->body);
	h.total_len = TW_FRAME_HDR_SIZE + sizeof(s->body);
	tw_frame_hdr_encode(s->hdr, &h);
	/* Two iovecs: the transport gathers them into one frame. */
	s->iov[0] = (struct iovec){s->hdr, sizeof(s->hdr)};
	s->iov[1] = (struct iovec){s->body, sizeof(s->body)};
	s->r.iov = s->iov;
	s->r.niov = 2;
	s->r.len = h.total_len;
	s->r.type = TW_MSG_ACK;
	s->r.done = sreq_done;
}

Test(fake_net, transport_contract)
{
	atomic_store(&fake_now, T0);
	tw_fake_net *net;
	cr_assert_eq(tw_fake_net_create(&net), TW_OK);
	tw_loop *l[2];
	struct ep e[2];
	memset(e, 0, sizeof(e));
	for (int i = 0; i < 2; i++) {
		struct tw_loop_opts lo;
		tw_loop_opts_init(&lo, sizeof(lo));
		lo.clock = fake_clock;
		cr_assert_eq(tw_loop_create(&lo, &l[i]), TW_OK);
		struct tw_transport_cbs cbs = {.ctx = &e[i],
					       .on_frame = ep_on_frame,
					       .on_conn = ep_on_conn};
		cr_assert_eq(tw_fake_transport_create(net, l[i], &cbs, &e[i].t),
			     TW_OK);
	}
	char bound[64];
	cr_assert_eq(e[1].t->ops->listen(e[1].t, "fake://7", bound,
					 sizeof(bound)),
		     TW_OK);
	cr_assert_str_eq(bound, "fake://7");
	cr_assert_eq(e[0].t->ops->listen(e[0].t, "fake://7", NULL, 0),
		     TW_EBUSY);
	cr_assert_eq(e[0].t->ops->listen(e[0].t, "tcp://x:1", NULL, 0),
		     TW_EINVAL);
	tw_conn *c = NULL;
	cr_assert_eq(e[0].t->ops->connect(e[0].t, "fake://8", &c),
		     TW_EUNREACHABLE);
	cr_assert_eq(e[0].t->ops->connect(e[0].t, "fake://7", &c), TW_OK);

	struct sreq s[3];
	for (int i = 0; i < 3; i++) {
		sreq_init(&s[i], 10 + (uint64_t)i);
		cr_assert_eq(tw_transport_send(e[0].t, c, &s[i].r), TW_OK);
		cr_assert_eq(s[i].done, 0, "done inside send");
	}
	/* The sender's next poll completes the sends, once each. */
	atomic_store(&fake_now, T0 + 5 * MS);
	tw_loop_poll_once(l[0]);
	cr_assert_eq(e[0].up, 1);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(s[i].done, 1);
		cr_assert_eq(s[i].st, TW_OK);
	}
	tw_loop_poll_once(l[0]);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(s[i].done, 1);
	/* Anonymous sender (not listening): reorder by the wildcard. */
	cr_assert_eq(tw_fake_net_queued(net, NULL, "fake://7"), 3);
	tw_fake_net_set_auto(net, false);
	tw_loop_poll_once(l[1]);
	cr_assert_eq(e[1].up, 1);
	cr_assert_eq(e[1].frames, 0, "auto delivery is off");
	const size_t perm[3] = {1, 2, 0};
	cr_assert_eq(tw_fake_net_reorder(net, NULL, "fake://7", perm, 3),
		     TW_OK);
	const size_t perm4[4] = {0, 1, 2, 3};
	cr_assert_eq(tw_fake_net_reorder(net, NULL, "fake://7", perm4, 4),
		     TW_ENOENT, "only 3 queued");
	cr_assert_eq(tw_fake_net_deliver(net, NULL, NULL, 2), 2);
	tw_loop_poll_once(l[1]);
	cr_assert_eq(e[1].frames, 2);
	cr_assert_eq(e[1].req_ids[0], 11);
	cr_assert_eq(e[1].req_ids[1], 12);
	cr_assert_eq(e[1].off % 64, 0);
	cr_assert_neq(e[1].off, 0);
	cr_assert_eq(e[1].rx_ns, T0, "stamped when it entered the net");
	cr_assert_eq(e[1].t->rx_ns, 0, "only while on_frame runs");

	/* Close: the last frame still arrives, then the peer's end closes. */
	e[0].t->ops->close(e[0].t, c);
	cr_assert_eq(e[0].closed, 0, "on_conn never from inside close");
	cr_assert_eq(tw_transport_send(e[0].t, c, &s[0].r), TW_EUNREACHABLE);
	tw_loop_poll_once(l[0]);
	cr_assert_eq(e[0].closed, 1);
	cr_assert_eq(e[0].close_st, TW_ESHUTDOWN);
	tw_fake_net_set_auto(net, true);
	tw_loop_poll_once(l[1]);
	cr_assert_eq(e[1].frames, 3);
	cr_assert_eq(e[1].req_ids[2], 10);
	cr_assert_eq(e[1].closed, 1);
	cr_assert_eq(e[1].close_st, TW_EUNREACHABLE);

	struct tw_fake_net_stats ns;
	tw_fake_net_get_stats(net, &ns);
	cr_assert_eq(ns.sent, 3);
	cr_assert_eq(ns.delivered, 3);
	cr_assert_eq(tw_fake_net_destroy(net), TW_EBUSY);
	for (int i = 0; i < 2; i++) {
		e[i].t->ops->destroy(e[i].t);
		tw_loop_destroy(l[i]);
	}
	cr_assert_eq(tw_fake_net_destroy(net), TW_OK);
}

Test(fake_net, sends_pending_at_a_break_end_with_it)
{
	atomic_store(&fake_now, T0);
	tw_fake_net *net;
	cr_assert_eq(tw_fake_net_create(&net), TW_OK);
	tw_loop *l[2];
	struct ep e[2];
	memset(e, 0, sizeof(e));
	for (int i = 0; i < 2; i++) {
		struct tw_loop_opts lo;
		tw_loop_opts_init(&lo, sizeof(lo));
		lo.clock = fake_clock;
		cr_assert_eq(tw_loop_create(&lo, &l[i]), TW_OK);
		struct tw_transport_cbs cbs = {.ctx = &e[i],
					       .on_frame = ep_on_frame,
					       .on_conn = ep_on_conn};
		cr_assert_eq(tw_fake_transport_create(net, l[i], &cbs, &e[i].t),
			     TW_OK);
		char a[16];
		snprintf(a, sizeof(a), "fake://%d", i + 1);
		cr_assert_eq(e[i].t->ops->listen(e[i].t, a, NULL, 0), TW_OK);
	}
	tw_conn *c = NULL;
	cr_assert_eq(e[0].t->ops->connect(e[0].t, "fake://2", &c), TW_OK);
	struct sreq s;
	sreq_init(&s, 1);
	cr_assert_eq(tw_transport_send(e[0].t, c, &s.r), TW_OK);
	cr_assert_eq(tw_fake_net_break(net, "fake://2", NULL), 1);
	tw_loop_poll_once(l[0]);
	tw_loop_poll_once(l[1]);
	cr_assert_eq(s.done, 1);
	cr_assert_eq(s.st, TW_EUNREACHABLE, "done before the close upcall");
	cr_assert_eq(e[0].closed, 1);
	cr_assert_eq(e[0].close_st, TW_EUNREACHABLE);
	cr_assert_eq(e[1].closed, 1);
	cr_assert_eq(e[1].frames, 0, "the frame died with the connection");
	cr_assert_eq(e[0].up, 0, "closed before it was announced");
	for (int i = 0; i < 2; i++) {
		e[i].t->ops->destroy(e[i].t);
		tw_loop_destroy(l[i]);
	}
	cr_assert_eq(tw_fake_net_destroy(net), TW_OK);
}
