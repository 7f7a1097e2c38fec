/* Fault injection on the send path, after torch's faulty RPC agent: fail the
 * first N sends of one message type, drop every send of another, delay a
 * third. A test facility, reached only when tw_transport.fault is set. */
#include <stdlib.h>

#include "dataplane/transport.h"

/*
 * A send held back by delay_type. Allocated with malloc on purpose: fault
 * injection is for tests, never the hot path, so the send request keeps no
 * room for it and no pool is reserved.
 */
struct fault_delay {
	struct tw_timer timer;
	tw_transport *t;
	tw_conn *c;
	struct tw_send_req *r;
	LIST_ENTRY(fault_delay) link; /* in fault->held_ */
};

static void held_unlink(struct tw_fault_opts *f, struct fault_delay *d)
{
	LIST_REMOVE(d, link);
	if (f->delayed_ > 0)
		f->delayed_--;
}

static void delay_fire(struct tw_timer *tm, void *arg)
{
	struct fault_delay *d = arg;
	tw_transport *t = d->t;
	struct tw_send_req *r = d->r;
	(void)tm;

	if (t->fault != NULL)
		held_unlink(t->fault, d);
	tw_status st = t->ops->send(t, d->c, r);
	free(d);
	/* The caller was told TW_OK long ago and kept no r of its own, so a
	 * refusal now (queue full, connection closed) ends r as a failed
	 * send would: through done. */
	if (st != TW_OK)
		r->done(r, st);
}

/*
 * Checked in this order, so a type named in several rules is failed first,
 * then dropped, then delayed (type 0 is never a frame type, so 0 = off):
 *
 * fail:  the first fail_count sends of fail_type end with done(TW_EIO),
 *        called right here on the loop thread, and the call returns TW_OK:
 *        the caller sees the failure where a real send error appears,
 *        in done, not as a refusal to queue.
 * drop:  every send of drop_type ends with done(TW_OK) and never reaches
 *        the wire, as a frame lost after the kernel took it.
 * delay: every send of delay_type is handed to ops->send delay_ns after
 *        this call (a timer on t->loop, so a fake loop clock controls it).
 *        Delayed sends leave in the order they came (the wheel fires in
 *        tick order, FIFO within a tick). When c closes first, the
 *        transport calls tw_fault_conn_closed and held sends for c end
 *        with the close status, never touching the freed c. TW_ENOMEM
 *        (r not taken) when the hold record cannot be allocated.
 * else:  ops->send, unchanged.
 */
tw_status tw_fault_send(tw_transport *t, tw_conn *c, struct tw_send_req *r)
{
	struct tw_fault_opts *f = t->fault;
	if (f == NULL)
		return t->ops->send(t, c, r);

	if (f->fail_type != 0 && r->type == f->fail_type &&
	    f->failed_ < f->fail_count) {
		f->failed_++;
		r->done(r, TW_EIO);
		return TW_OK;
	}
	if (f->drop_type != 0 && r->type == f->drop_type) {
		r->done(r, TW_OK);
		return TW_OK;
	}
	if (f->delay_type != 0 && r->type == f->delay_type) {
		struct fault_delay *d = malloc(sizeof(*d));
		if (d == NULL)
			return TW_ENOMEM;
		d->t = t;
		d->c = c;
		d->r = r;
		tw_timer_init(&d->timer, delay_fire, d);
		tw_loop_timer_after(t->loop, &d->timer, f->delay_ns);
		LIST_INSERT_HEAD(&f->held_, d, link);
		f->delayed_++;
		return TW_OK;
	}
	return t->ops->send(t, c, r);
}

void tw_fault_conn_closed(tw_transport *t, tw_conn *c, tw_status st)
{
	struct tw_fault_opts *f = t->fault;
	if (f == NULL)
		return;
	struct fault_delay *d, *next;
	for (d = LIST_FIRST(&f->held_); d != NULL; d = next) {
		next = LIST_NEXT(d, link);
		if (d->c != c)
			continue;
		tw_timer_cancel(tw_loop_timers(t->loop), &d->timer);
		held_unlink(f, d);
		struct tw_send_req *r = d->r;
		free(d);
		r->done(r, st);
	}
}
