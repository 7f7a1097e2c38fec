/* A connection as the stream reassembler (dataplane/stream_rx.h) sees it,
 * without a transport: its struct rxs, the closing flag and hold bits the
 * module reads, and what the module did to it. For test_stream_rx.c and
 * fuzz_stream_rx.c. */
#ifndef TW_TESTS_LIB_STREAM_RX_HARNESS_H
#define TW_TESTS_LIB_STREAM_RX_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "dataplane/stream_rx.h"
#include "dataplane/util.h"

struct hconn {
	tw_conn base;
	struct rxs rx;
	bool closing;
	uint8_t hold;
	/* rxs_ops.fail: how often (once at most: it closes), with what. */
	int fails;
	tw_status fail_st;
	enum rxs_why fail_why;
	int room_waits, room_founds;
	/* close_after_send: how often, with what (it sets HOLD_LINGER). */
	int cas;
	tw_status cas_st;
};

static inline struct hconn *hconn_of(tw_conn *c)
{
	return container_of(c, struct hconn, base);
}

static inline struct hconn *hconn_of_rx(struct rxs *s)
{
	return container_of(s, struct hconn, rx);
}

static inline void h_fail(struct rxs *s, tw_status st, enum rxs_why why)
{
	struct hconn *c = hconn_of_rx(s);
	if (c->closing)
		return;
	c->closing = true;
	c->fails++;
	c->fail_st = st;
	c->fail_why = why;
}

static inline void h_room_wait(struct rxs *s)
{
	struct hconn *c = hconn_of_rx(s);
	c->hold |= HOLD_ROOM;
	c->room_waits++;
}

static inline void h_room_found(struct rxs *s)
{
	hconn_of_rx(s)->room_founds++;
}

static const struct rxs_ops h_rxs_ops = {
	.fail = h_fail,
	.room_wait = h_room_wait,
	.room_found = h_room_found,
};

static inline void h_close_after_send(tw_transport *t, tw_conn *c, tw_status st)
{
	(void)t;
	struct hconn *hc = hconn_of(c);
	hc->cas++;
	hc->cas_st = st;
	hc->hold |= HOLD_LINGER;
}

static const struct tw_transport_ops h_transport_ops = {
	.name = "stream-rx-harness",
	.close_after_send = h_close_after_send,
};

static inline void h_on_conn(void *ctx, tw_conn *c, tw_status st)
{
	(void)ctx;
	(void)c;
	(void)st;
}

/* c starts on tr's reassembly e, bounded by the host bytes at host (NULL:
 * no host bound). */
static inline void hconn_attach(struct hconn *c, struct rxs_env *e,
				tw_transport *tr, _Atomic uint64_t *host)
{
	memset(c, 0, sizeof(*c));
	c->base.t = tr;
	rxs_attach(e, &c->rx, &c->base, &c->closing, &c->hold);
	c->rx.host_bytes = host;
}

#endif
