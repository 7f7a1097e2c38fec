/* Unit tests for dataplane/fault.c: fail, drop, delay sends by type. */
/*
 * Over the fake transport, two loops on one fake clock: a delay is
 * exactly as long as the clock says, and what the fault injector holds
 * can be seen in the net (tw_fake_net_queued) before it leaves.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <tensorwire/frame.h>

#include "dataplane/loop.h"
#include "dataplane/transport.h"
#include "tests/lib/fake_net.h"

#define MS UINT64_C(1000000)
#define T0 (UINT64_C(1000) * MS)

enum { T_FAIL = 3, T_DROP = 5, T_DELAY = 7, T_PLAIN = 11 };

static uint64_t fake_now;

static uint64_t fake_clock(void *ctx)
{
	(void)ctx;
	return fake_now;
}

struct end {
	tw_loop *l;
	tw_transport *t;
	tw_conn *c; /* last announced */
	int ups, closes;
	tw_status close_st;
	int dones_at_close; /* sender: dones seen by the close upcall */
	int nframes;
	uint8_t types[64]; /* frames received, by type */
	uint64_t ids[64];
};

static int ndone_total;

struct req {
	struct tw_send_req r;
	struct iovec iov;
	uint8_t f[TW_FRAME_HDR_SIZE + 8];
	int ndone;
	tw_status st;
	bool in_send; /* done ran inside tw_transport_send */
};

static bool sending;

static void on_done(struct tw_send_req *r, tw_status st)
{
	struct req *q = (struct req *)r;
	q->ndone++;
	q->st = st;
	q->in_send = sending;
	ndone_total++;
}

static void req_init(struct req *q, uint8_t type, uint64_t id)
{
	memset(q, 0, sizeof(*q));
	tw_frame_hdr h = {.version = TW_FRAME_VERSION,
			  .type = type,
			  .req_id = id,
			  .payload_len = 8,
			  .total_len = sizeof(q->f)};
	tw_frame_hdr_encode(q->f, &h);
	q->iov = (struct iovec){q->f, sizeof(q->f)};
	q->r.iov = &q->iov;
	q->r.niov = 1;
	q->r.len = sizeof(q->f);
	q->r.type = type;
	q->r.done = on_done;
}

static void on_frame(void *ctx, tw_conn *c, const tw_frame_hdr *h, tw_buf *b,
		     size_t off, size_t len)
{
	(void)c, (void)b, (void)off, (void)len;
	struct end *e = ctx;
	cr_assert_lt(e->nframes, 64);
	e->types[e->nframes] = h->type;
	e->ids[e->nframes++] = h->req_id;
}

static void on_conn(void *ctx, tw_conn *c, tw_status st)
{
	struct end *e = ctx;
	if (st == TW_OK) {
		e->ups++;
		e->c = c;
	} else {
		e->closes++;
		e->close_st = st;
		e->dones_at_close = ndone_total;
	}
}

static tw_fake_net *net;
static struct end a, b; /* a sends through the injector to b */
static struct tw_fault_opts fo;

static void poll_both(void)
{
	for (int i = 0; i < 3; i++) {
		tw_loop_poll_once(a.l);
		tw_loop_poll_once(b.l);
	}
}

static void setup(void)
{
	fake_now = T0;
	ndone_total = 0;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&fo, 0, sizeof(fo));
	cr_assert_eq(tw_fake_net_create(&net), TW_OK);
	struct end *es[2] = {&a, &b};
	for (int i = 0; i < 2; i++) {
		struct tw_loop_opts lo;
		tw_loop_opts_init(&lo, sizeof(lo));
		lo.clock = fake_clock;
		cr_assert_eq(tw_loop_create(&lo, &es[i]->l), TW_OK);
		struct tw_transport_cbs cbs = {
			.ctx = es[i], .on_frame = on_frame, .on_conn = on_conn};
		cr_assert_eq(tw_fake_transport_create(net, es[i]->l, &cbs,
						      &es[i]->t),
			     TW_OK);
	}
	cr_assert_eq(b.t->ops->listen(b.t, "fake://2", NULL, 0), TW_OK);
	tw_conn *c = NULL;
	cr_assert_eq(a.t->ops->connect(a.t, "fake://2", &c), TW_OK);
	poll_both();
	cr_assert(a.ups == 1 && b.ups == 1 && a.c == c);
	a.t->fault = &fo;
}

static void teardown(void)
{
	struct end *es[2] = {&a, &b};
	for (int i = 0; i < 2; i++) {
		if (es[i]->t != NULL)
			es[i]->t->ops->destroy(es[i]->t);
		tw_loop_destroy(es[i]->l);
	}
	cr_assert_eq(tw_fake_net_destroy(net), TW_OK);
}

static tw_status fsend(struct req *q)
{
	sending = true;
	tw_status st = tw_transport_send(a.t, a.c, &q->r);
	sending = false;
	return st;
}

TestSuite(fault, .init = setup, .fini = teardown);

/* The first fail_count sends of fail_type end with done(TW_EIO) inside
 * the call, which returns TW_OK; the next one and other types go out. */
Test(fault, fail_the_first_n_of_a_type)
{
	fo.fail_type = T_FAIL;
	fo.fail_count = 2;
	struct req q[4];
	req_init(&q[0], T_FAIL, 0);
	req_init(&q[1], T_PLAIN, 1);
	req_init(&q[2], T_FAIL, 2);
	req_init(&q[3], T_FAIL, 3);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(fsend(&q[i]), TW_OK, "send %d", i);
	for (int i = 0; i < 3; i += 2) {
		cr_assert_eq(q[i].ndone, 1, "failed send %d", i);
		cr_assert_eq(q[i].st, TW_EIO);
		cr_assert(q[i].in_send, "the failure is in done, at once");
	}
	cr_assert_eq(fo.failed_, 2);
	cr_assert_eq(tw_fake_net_queued(net, NULL, NULL), 2,
		     "the failed ones never reached the wire");
	poll_both();
	cr_assert_eq(b.nframes, 2);
	cr_assert_eq(b.ids[0], 1);
	cr_assert_eq(b.ids[1], 3, "the third of the type goes through");
	for (int i = 0; i < 4; i++)
		cr_assert_eq(q[i].ndone, 1, "send %d: %d dones", i, q[i].ndone);
	cr_assert(q[1].st == TW_OK && q[3].st == TW_OK);
}

/* Every send of drop_type ends with done(TW_OK) and never reaches the
 * wire; other types are untouched. */
Test(fault, drop_every_one_of_a_type)
{
	fo.drop_type = T_DROP;
	struct req q[3];
	req_init(&q[0], T_DROP, 0);
	req_init(&q[1], T_PLAIN, 1);
	req_init(&q[2], T_DROP, 2);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(fsend(&q[i]), TW_OK);
	cr_assert(q[0].ndone == 1 && q[0].st == TW_OK);
	cr_assert(q[2].ndone == 1 && q[2].st == TW_OK);
	poll_both();
	struct tw_fake_net_stats ns;
	tw_fake_net_get_stats(net, &ns);
	cr_assert_eq(ns.sent, 1, "only the plain one reached the transport");
	cr_assert_eq(b.nframes, 1);
	cr_assert_eq(b.types[0], T_PLAIN);
	cr_assert_eq(q[1].ndone, 1);
}

/* A type in several rules is failed first, then dropped. */
Test(fault, fail_before_drop)
{
	fo.fail_type = T_DROP;
	fo.fail_count = 1;
	fo.drop_type = T_DROP;
	struct req q[2];
	req_init(&q[0], T_DROP, 0);
	req_init(&q[1], T_DROP, 1);
	cr_assert_eq(fsend(&q[0]), TW_OK);
	cr_assert_eq(fsend(&q[1]), TW_OK);
	cr_assert_eq(q[0].st, TW_EIO);
	cr_assert_eq(q[1].st, TW_OK);
	poll_both();
	cr_assert_eq(b.nframes, 0);
}

/* Sends of delay_type leave delay_ns later on the loop's clock, in the
 * order they came; a plain send made after them is not held. */
Test(fault, delay_on_the_loop_clock)
{
	fo.delay_type = T_DELAY;
	fo.delay_ns = 50 * MS;
	struct req q[3];
	req_init(&q[0], T_DELAY, 0);
	req_init(&q[1], T_DELAY, 1);
	req_init(&q[2], T_PLAIN, 2);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(fsend(&q[i]), TW_OK);
	cr_assert_eq(fo.delayed_, 2);
	cr_assert_eq(q[0].ndone + q[1].ndone, 0, "held, not done");
	poll_both();
	cr_assert_eq(b.nframes, 1, "only the plain one left");
	cr_assert_eq(b.ids[0], 2);
	fake_now += 45 * MS;
	poll_both();
	cr_assert_eq(b.nframes, 1, "a delay is not cut short");
	cr_assert_eq(tw_fake_net_queued(net, NULL, NULL), 0);
	fake_now += 10 * MS;
	poll_both();
	cr_assert_eq(fo.delayed_, 0);
	cr_assert_eq(b.nframes, 3);
	cr_assert_eq(b.ids[1], 0);
	cr_assert_eq(b.ids[2], 1, "delayed sends keep their order");
	for (int i = 0; i < 3; i++)
		cr_assert(q[i].ndone == 1 && q[i].st == TW_OK, "send %d", i);
}

/* Held sends end with their connection: done(close status) once, before
 * the close upcall; the timer is gone (nothing fires later). */
Test(fault, held_sends_end_with_their_connection)
{
	fo.delay_type = T_DELAY;
	fo.delay_ns = 50 * MS;
	struct req q[3];
	req_init(&q[0], T_DELAY, 0);
	req_init(&q[1], T_DELAY, 1);
	req_init(&q[2], T_PLAIN, 2);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(fsend(&q[i]), TW_OK);
	a.t->ops->close(a.t, a.c);
	poll_both();
	cr_assert_eq(a.closes, 1);
	cr_assert_eq(a.close_st, TW_ESHUTDOWN);
	cr_assert_eq(a.dones_at_close, 3, "every done before the close upcall");
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(q[i].ndone, 1, "held send %d", i);
		cr_assert_eq(q[i].st, TW_ESHUTDOWN);
	}
	cr_assert_eq(fo.delayed_, 0);
	cr_assert(LIST_EMPTY(&fo.held_));
	fake_now += 100 * MS;
	poll_both();
	for (int i = 0; i < 3; i++)
		cr_assert_eq(q[i].ndone, 1, "send %d: %d dones", i, q[i].ndone);
	cr_assert_eq(b.nframes, 1, "held sends died with the connection");
}

/* Only the closed connection's held sends end: another connection's
 * still leave when their time comes. Here the peer closes (as a peer
 * that goes away). */
Test(fault, only_the_closed_connections_sends_end)
{
	tw_conn *c1 = a.c, *c2 = NULL;
	cr_assert_eq(a.t->ops->connect(a.t, "fake://2", &c2), TW_OK);
	poll_both();
	cr_assert_eq(a.ups, 2);
	cr_assert_eq(b.ups, 2);
	tw_conn *b2 = b.c; /* b's end of c2, announced last */
	fo.delay_type = T_DELAY;
	fo.delay_ns = 50 * MS;
	struct req q[2];
	req_init(&q[0], T_DELAY, 0);
	req_init(&q[1], T_DELAY, 1);
	cr_assert_eq(tw_transport_send(a.t, c1, &q[0].r), TW_OK);
	cr_assert_eq(tw_transport_send(a.t, c2, &q[1].r), TW_OK);
	b.t->ops->close(b.t, b2);
	poll_both();
	cr_assert_eq(a.closes, 1);
	cr_assert_eq(a.close_st, TW_EUNREACHABLE);
	cr_assert_eq(q[1].ndone, 1, "c2's held send");
	cr_assert_eq(q[1].st, TW_EUNREACHABLE);
	cr_assert_eq(q[0].ndone, 0, "c1's is still held");
	cr_assert_eq(fo.delayed_, 1);
	fake_now += 60 * MS;
	poll_both();
	cr_assert(q[0].ndone == 1 && q[0].st == TW_OK);
	cr_assert_eq(q[1].ndone, 1);
	cr_assert_eq(b.nframes, 1);
	cr_assert_eq(b.ids[0], 0);
	cr_assert_eq(fo.delayed_, 0);
}

/* No injector: tw_fault_conn_closed is a no-op, tw_fault_send is the
 * transport's send. */
Test(fault, off)
{
	a.t->fault = NULL;
	tw_fault_conn_closed(a.t, a.c, TW_ESHUTDOWN);
	struct req q;
	req_init(&q, T_DELAY, 0);
	cr_assert_eq(tw_fault_send(a.t, a.c, &q.r), TW_OK);
	cr_assert_eq(q.ndone, 0, "a plain send completes later");
	poll_both();
	cr_assert_eq(q.ndone, 1);
	cr_assert_eq(b.nframes, 1);
}
