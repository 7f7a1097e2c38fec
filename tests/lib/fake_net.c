/* The in-process fake transport and the net that joins its instances
 * (fake_net.h): connections as pairs of ends, one queue of frames in flight
 * that the test steers. Clarity over speed: every frame is copied into a
 * buffer of its own and queues are walked from the head. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/err.h"
#include "dataplane/list.h"
#include "tests/lib/fake_net.h"

#define FAKE_MAX_QUEUED 4096u
#define FAKE_MAX_RULES 16u
/* Frames land at a 64-byte aligned offset other than 0, so a receiver
 * assuming a frame starts its buffer fails here first. */
#define FAKE_RX_OFF 64u

/* Node numbers: a listening transport's n; the filters' wildcard; a
 * transport that does not listen; an address that does not parse. */
#define NODE_ANY (-1)
#define NODE_NONE (-2)
#define NODE_BAD (-3)

struct ft;

/* One end of a connection. */
struct fc {
	tw_conn base; /* first: a tw_conn * is a struct fc * */
	struct ft *t;
	struct fc *peer;         /* the other end; NULL once it is closing */
	TAILQ_ENTRY(fc) link;    /* in t->conns */
	struct tw_send_queue sq; /* sends whose done is due */
	uint32_t nsq;
	uint32_t rx_queued; /* frames in the net toward this end */
	int local, remote;  /* nodes: this end's, the peer's */
	bool announce;      /* on_conn(TW_OK) still to make */
	bool peer_fin;      /* peer closed: close when rx_queued is 0 */
	bool closing;       /* on_conn(close_st) still to make */
	tw_status close_st;
	bool paused; /* pause(): nothing delivered to it, and its peer's
		      * sends not done (the peer fills up, as over TCP) */
	bool linger; /* close_after_send: closes on the next poll, its
		      * sends done first (they are in the net already) */
	tw_status linger_st;
};

/* A frame in flight. What reorder permutes is d; the links stay. */
struct ff {
	TAILQ_ENTRY(ff) link; /* in the net's queue, or a poll's batch */
	struct ff_data {
		struct fc *dst;
		tw_buf *buf; /* the frame at FAKE_RX_OFF */
		size_t len;
		uint64_t rx_ns; /* when it entered the net */
		int from, to;
		uint8_t type;
		bool released; /* the test let it go */
	} d;
};

struct ft {
	tw_transport base; /* first: a tw_transport * is a struct ft * */
	tw_fake_net *net;
	struct tw_poller poller;
	int node; /* listening node or NODE_NONE */
	int host; /* the host its peers see: node, or another node's */
	bool down;
	TAILQ_HEAD(, fc) conns; /* newest first */
	TAILQ_ENTRY(ft) link;   /* in the net's transports */
};

TAILQ_HEAD(ff_queue, ff);

struct fdir {
	int from, to;
	uint8_t type;
	bool used, dup;
};

struct tw_fake_net {
	TAILQ_HEAD(, ft) ts; /* newest first */
	struct ff_queue q;   /* frames in flight, oldest first */
	bool auto_on;
	uint64_t next_id;
	struct fdir holds[FAKE_MAX_RULES];
	struct fdir rules[FAKE_MAX_RULES];
	struct tw_fake_net_stats st;
};

static const struct tw_transport_ops fake_ops;

/* ---- addresses and directions ------------------------------------------ */

static int parse_node(const char *addr)
{
	if (addr == NULL)
		return NODE_ANY;
	if (strncmp(addr, "fake://", 7) != 0 || addr[7] == '\0')
		return NODE_BAD;
	long v = 0;
	for (const char *p = addr + 7; *p; p++) {
		if (*p < '0' || *p > '9' || v > 100000000)
			return NODE_BAD;
		v = v * 10 + (*p - '0');
	}
	return (int)v;
}

static bool node_match(int want, int have)
{
	return want == NODE_ANY || want == have;
}

static bool dir_match(const struct fdir *d, int from, int to)
{
	return d->used && node_match(d->from, from) && node_match(d->to, to);
}

static struct ft *node_find(tw_fake_net *n, int node)
{
	struct ft *t;
	TAILQ_FOREACH(t, &n->ts, link)
	if (t->node == node && node >= 0)
		return t;
	return NULL;
}

/* ---- the queue ------------------------------------------------------------ */

static void q_append(tw_fake_net *n, struct ff *f)
{
	TAILQ_INSERT_TAIL(&n->q, f, link);
	f->d.dst->rx_queued++;
}

static void q_unlink(tw_fake_net *n, struct ff *f)
{
	TAILQ_REMOVE(&n->q, f, link);
}

/* f is out of the queue: forget it. */
static void frame_free(struct ff *f)
{
	f->d.dst->rx_queued--;
	tw_buf_release(f->d.buf);
	free(f);
}

static bool held(const tw_fake_net *n, const struct ff *f)
{
	for (unsigned i = 0; i < FAKE_MAX_RULES; i++)
		if (dir_match(&n->holds[i], f->d.from, f->d.to))
			return true;
	return false;
}

static bool deliverable(const tw_fake_net *n, const struct ff *f)
{
	return f->d.released || (n->auto_on && !held(n, f));
}

/* A frame of len bytes gathered from iov (or copied from bytes) toward
 * dst; NULL without memory. */
static struct ff *frame_new(struct fc *dst, const struct iovec *iov,
			    uint32_t niov, const void *bytes, size_t len)
{
	struct ff *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return NULL;
	if (tw_buf_alloc(len + FAKE_RX_OFF, &f->d.buf) != TW_OK) {
		free(f);
		return NULL;
	}
	unsigned char *p = (unsigned char *)f->d.buf->data + FAKE_RX_OFF;
	if (bytes != NULL) {
		memcpy(p, bytes, len);
	} else {
		size_t at = 0;
		for (uint32_t i = 0; i < niov && at < len; i++) {
			size_t k = iov[i].iov_len;
			if (k > len - at)
				k = len - at;
			memcpy(p + at, iov[i].iov_base, k);
			at += k;
		}
	}
	f->d.dst = dst;
	f->d.len = len;
	return f;
}

/* Drop every frame in flight toward c. */
static void discard_toward(tw_fake_net *n, struct fc *c)
{
	struct ff *f, *next;
	for (f = TAILQ_FIRST(&n->q); f != NULL && c->rx_queued > 0; f = next) {
		next = TAILQ_NEXT(f, link);
		if (f->d.dst != c)
			continue;
		q_unlink(n, f);
		frame_free(f);
		n->st.dropped++;
	}
}

/* ---- connection ends ------------------------------------------------------ */

/*
 * Start closing c with st (its on_conn comes from the next poll). fin:
 * c closed in order, so what it sent still reaches the peer, which closes
 * after; otherwise both ends close now and the frames in flight are lost.
 */
static void end_close(struct fc *c, tw_status st, bool fin)
{
	if (c->closing)
		return;
	tw_fake_net *n = c->t->net;
	c->closing = true;
	c->close_st = st;
	c->announce = false;
	discard_toward(n, c);
	struct fc *p = c->peer;
	c->peer = NULL;
	if (p == NULL)
		return;
	p->peer = NULL;
	if (fin) {
		p->peer_fin = true;
	} else {
		/* Frames p sent are gone with the connection. */
		end_close(p, TW_EUNREACHABLE, false);
	}
}

/* Make c's close upcall and free it: sends first (the contract: they have
 * had their done before on_conn), then the fault injector's held ones. */
static void end_finish(struct ft *t, struct fc *c)
{
	struct tw_send_req *r;
	while ((r = STAILQ_FIRST(&c->sq)) != NULL) {
		STAILQ_REMOVE_HEAD(&c->sq, link_);
		c->nsq--;
		r->done(r, c->close_st);
	}
	tw_fault_conn_closed(&t->base, &c->base, c->close_st);
	TAILQ_REMOVE(&t->conns, c, link);
	t->base.cbs.on_conn(t->base.cbs.ctx, &c->base, c->close_st);
	free(c);
}

/* Finish every closing end of t; upcalls may close more. */
static int finish_closes(struct ft *t)
{
	int work = 0;
	for (;;) {
		struct fc *c;
		TAILQ_FOREACH(c, &t->conns, link)
		if (c->closing)
			break;
		if (c == NULL)
			return work;
		end_finish(t, c);
		work++;
	}
}

static struct fc *end_new(struct ft *t, int local, int remote)
{
	struct fc *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->base.t = &t->base;
	c->base.id = ++t->net->next_id;
	c->t = t;
	c->local = local;
	c->remote = remote;
	c->announce = true;
	STAILQ_INIT(&c->sq);
	TAILQ_INSERT_HEAD(&t->conns, c, link);
	return c;
}

/* ---- the transport ---------------------------------------------------------- */

static tw_status f_listen(tw_transport *tt, const char *addr, char *bound,
			  size_t bound_len)
{
	struct ft *t = (struct ft *)tt;
	int node = parse_node(addr);
	if (node < 0)
		return TW_EINVAL;
	if (t->node != NODE_NONE || node_find(t->net, node) != NULL)
		return TW_EBUSY;
	t->node = node;
	t->host = node;
	if (bound != NULL && bound_len > 0)
		snprintf(bound, bound_len, "fake://%d", node);
	return TW_OK;
}

/* Who is at the other end: node, on host (its node unless the test
 * moved it; a transport that does not listen has none: 0, unknown). */
static void fake_peer(tw_conn *c, int node, int host)
{
	if (node < 0)
		return;
	c->peer_host = (uint64_t)(uint32_t)host | (UINT64_C(0xfa) << 32);
	snprintf(c->peer, sizeof(c->peer), "fake://%d", node);
}

static tw_status f_connect(tw_transport *tt, const char *addr, tw_conn **out)
{
	struct ft *t = (struct ft *)tt;
	int node = parse_node(addr);
	if (node < 0)
		return TW_EINVAL;
	struct ft *lt = node_find(t->net, node);
	if (lt == NULL || lt->down || t->down)
		return tw_fail(TW_EUNREACHABLE, "fake net: node %d is %s", node,
			       lt == NULL ? "not there" : "down");
	struct fc *c = end_new(t, t->node, node);
	if (c == NULL)
		return TW_ENOMEM;
	struct fc *s = end_new(lt, node, t->node);
	if (s == NULL) {
		TAILQ_REMOVE(&t->conns, c, link);
		free(c);
		return TW_ENOMEM;
	}
	c->peer = s;
	s->peer = c;
	fake_peer(&c->base, node, lt->host);
	fake_peer(&s->base, t->node, t->host);
	t->net->st.conns++;
	*out = &c->base;
	return TW_OK;
}

/* The first armed rule for a frame, used up; NULL when none. */
static struct fdir *rule_take(tw_fake_net *n, int from, int to, uint8_t type)
{
	for (unsigned i = 0; i < FAKE_MAX_RULES; i++) {
		struct fdir *r = &n->rules[i];
		if (dir_match(r, from, to) &&
		    (r->type == 0 || r->type == type)) {
			r->used = false;
			return r;
		}
	}
	return NULL;
}

static tw_status f_send(tw_transport *tt, tw_conn *cc, struct tw_send_req *r)
{
	struct ft *t = (struct ft *)tt;
	struct fc *c = (struct fc *)cc;
	tw_fake_net *n = t->net;
	if (c->closing || c->peer == NULL || c->linger)
		return TW_EUNREACHABLE;
	if (c->nsq >= FAKE_MAX_QUEUED)
		return TW_ENOSPC;
	size_t have = 0;
	for (uint32_t i = 0; i < r->niov; i++)
		have += r->iov[i].iov_len;
	if (have < r->len)
		return TW_EINVAL;
	uint8_t type = (uint8_t)r->type;
	struct fdir *rule = rule_take(n, c->local, c->remote, type);
	if (rule != NULL && !rule->dup) {
		n->st.dropped++;
	} else {
		struct ff *f = frame_new(c->peer, r->iov, r->niov, NULL,
					 (size_t)r->len);
		struct ff *g = NULL;
		if (f != NULL && rule != NULL &&
		    (g = frame_new(c->peer, r->iov, r->niov, NULL,
				   (size_t)r->len)) == NULL) {
			tw_buf_release(f->d.buf);
			free(f);
			f = NULL;
		}
		if (f == NULL) {
			if (rule != NULL)
				rule->used = true; /* not spent */
			return TW_ENOMEM;
		}
		struct ff *fs[2] = {f, g};
		for (int i = 0; i < 2 && fs[i] != NULL; i++) {
			fs[i]->d.rx_ns = tw_loop_now(t->base.loop);
			fs[i]->d.from = c->local;
			fs[i]->d.to = c->remote;
			fs[i]->d.type = type;
			q_append(n, fs[i]);
		}
		if (g != NULL)
			n->st.duplicated++;
	}
	n->st.sent++;
	STAILQ_INSERT_TAIL(&c->sq, r, link_);
	c->nsq++;
	return TW_OK;
}

static void f_close(tw_transport *tt, tw_conn *cc)
{
	(void)tt;
	end_close((struct fc *)cc, TW_ESHUTDOWN, true);
}

static void f_pause(tw_transport *tt, tw_conn *cc, bool paused)
{
	(void)tt;
	((struct fc *)cc)->paused = paused;
}

static void f_close_after_send(tw_transport *tt, tw_conn *cc, tw_status st)
{
	(void)tt;
	struct fc *c = (struct fc *)cc;
	if (c->closing || c->linger)
		return;
	c->linger = true;
	c->linger_st = st;
}

/* A header intact but refused (transport.h, on_refused). True when the
 * frame is skipped and the connection goes on. */
static bool refuse(struct ft *t, struct fc *c, const tw_frame_hdr *h,
		   tw_status why)
{
	tw_fake_net *n = t->net;
	n->st.refused++;
	bool skip = false;
	if (t->base.cbs.on_refused != NULL)
		skip = t->base.cbs.on_refused(t->base.cbs.ctx, &c->base, h,
					      why);
	if (c->closing)
		return false;
	if (why == TW_EOVERFLOW && skip)
		return true;
	tw_status st = why == TW_EVERSION ? TW_EVERSION : TW_EPROTO;
	if (t->base.cbs.on_refused != NULL)
		f_close_after_send(&t->base, &c->base, st);
	else
		end_close(c, st, false);
	return false;
}

/* Hand up one frame taken out of the queue, or refuse it. */
static int deliver_one(struct ft *t, struct ff *f)
{
	tw_fake_net *n = t->net;
	struct fc *c = f->d.dst;
	if (c->closing || c->linger) {
		n->st.dropped++;
		frame_free(f);
		return 0;
	}
	const unsigned char *p = (const unsigned char *)f->d.buf->data +
				 FAKE_RX_OFF;
	tw_frame_hdr h;
	tw_status st = TW_EPROTO;
	if (f->d.len >= TW_FRAME_HDR_SIZE)
		st = tw_frame_hdr_decode(p, &t->base.limits, &h);
	if (st == TW_EVERSION) {
		refuse(t, c, &h, TW_EVERSION);
		frame_free(f);
		return 1;
	}
	bool over = st == TW_OK && !tw_conn_frame_fits(&c->base, &h);
	if (st == TW_EPROTO && f->d.len >= TW_FRAME_HDR_SIZE) {
		/* Intact but for its size? */
		tw_frame_limits wide = t->base.limits;
		wide.max_total = TW_FRAME_MAX_TOTAL;
		over = tw_frame_hdr_decode(p, &wide, &h) == TW_OK;
	}
	if (over && h.total_len == f->d.len) {
		refuse(t, c, &h, TW_EOVERFLOW);
		frame_free(f);
		return 1;
	}
	if (st == TW_OK && h.total_len != f->d.len)
		st = TW_EPROTO; /* a datagram's length is its frame's */
	if (st != TW_OK || over) {
		/* As a stream transport must: after a bad header nothing on
		 * the connection can be trusted. */
		n->st.refused++;
		end_close(c, st == TW_EVERSION ? TW_EVERSION : TW_EPROTO,
			  false);
		frame_free(f);
		return 1;
	}
	n->st.delivered++;
	t->base.rx_ns = f->d.rx_ns;
	t->base.cbs.on_frame(t->base.cbs.ctx, &c->base, &h, f->d.buf,
			     FAKE_RX_OFF, f->d.len);
	t->base.rx_ns = 0;
	frame_free(f);
	return 1;
}

static int f_poll(void *arg)
{
	struct ft *t = arg;
	tw_fake_net *n = t->net;
	int work = 0;

	/* Ends learn they are connected before anything arrives on them. */
	struct fc *c;
	TAILQ_FOREACH(c, &t->conns, link)
	{
		if (c->announce && !c->closing) {
			c->announce = false;
			t->base.cbs.on_conn(t->base.cbs.ctx, &c->base, TW_OK);
			work++;
		}
	}
	/* Sends queued before this poll have left. A done may send again:
	 * that one completes on the next poll. */
	TAILQ_FOREACH(c, &t->conns, link)
	{
		if (c->closing || STAILQ_EMPTY(&c->sq))
			continue;
		/* A paused receiver takes nothing: the sender fills up. */
		if (c->peer != NULL && c->peer->paused && !c->linger)
			continue;
		struct tw_send_queue sq = STAILQ_HEAD_INITIALIZER(sq);
		STAILQ_CONCAT(&sq, &c->sq);
		work += (int)c->nsq;
		c->nsq = 0;
		struct tw_send_req *r, *next;
		STAILQ_FOREACH_SAFE(r, &sq, link_, next)
		r->done(r, TW_OK);
	}
	/* Take our deliverable frames first: upcalls send more, which wait
	 * for the next poll as a reply on a real wire would. */
	/* Done with its sends, an end closing after them closes. */
	TAILQ_FOREACH(c, &t->conns, link)
	if (c->linger && !c->closing && STAILQ_EMPTY(&c->sq)) {
		end_close(c, c->linger_st, true);
		work++;
	}
	struct ff_queue batch = TAILQ_HEAD_INITIALIZER(batch);
	struct ff *f, *next;
	TAILQ_FOREACH_SAFE(f, &n->q, link, next)
	{
		if (f->d.dst->t != t || !deliverable(n, f) || f->d.dst->paused)
			continue;
		q_unlink(n, f);
		TAILQ_INSERT_TAIL(&batch, f, link);
	}
	while ((f = TAILQ_FIRST(&batch)) != NULL) {
		TAILQ_REMOVE(&batch, f, link);
		work += deliver_one(t, f);
	}
	/* The peer closed in order and everything it sent has arrived. */
	TAILQ_FOREACH(c, &t->conns, link)
	if (c->peer_fin && !c->closing && c->rx_queued == 0)
		end_close(c, TW_EUNREACHABLE, false);
	work += finish_closes(t);
	return work;
}

static void f_destroy(tw_transport *tt)
{
	struct ft *t = (struct ft *)tt;
	tw_fake_net *n = t->net;
	struct fc *c;
	TAILQ_FOREACH(c, &t->conns, link)
	end_close(c, TW_ESHUTDOWN, true);
	(void)finish_closes(t);
	tw_loop_remove_poller(t->base.loop, &t->poller);
	TAILQ_REMOVE(&n->ts, t, link);
	free(t);
}

static const struct tw_transport_ops fake_ops = {
	.name = "fake",
	.listen = f_listen,
	.connect = f_connect,
	.send = f_send,
	.close = f_close,
	.pause = f_pause,
	.close_after_send = f_close_after_send,
	.destroy = f_destroy,
};

tw_status tw_fake_transport_create(tw_fake_net *n, tw_loop *l,
				   const struct tw_transport_cbs *cbs,
				   tw_transport **out)
{
	if (out == NULL)
		return TW_EINVAL;
	*out = NULL;
	if (n == NULL || l == NULL || cbs == NULL || cbs->on_frame == NULL ||
	    cbs->on_conn == NULL)
		return TW_EINVAL;
	struct ft *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return TW_ENOMEM;
	t->base.ops = &fake_ops;
	t->base.loop = l;
	t->base.cbs = *cbs;
	t->net = n;
	t->node = NODE_NONE;
	t->host = NODE_NONE;
	TAILQ_INIT(&t->conns);
	t->poller.fn = f_poll;
	t->poller.arg = t;
	tw_loop_add_poller(l, &t->poller);
	TAILQ_INSERT_HEAD(&n->ts, t, link);
	*out = &t->base;
	return TW_OK;
}

/* ---- the net ------------------------------------------------------------------ */

tw_status tw_fake_net_create(tw_fake_net **out)
{
	if (out == NULL)
		return TW_EINVAL;
	*out = calloc(1, sizeof(**out));
	if (*out == NULL)
		return TW_ENOMEM;
	TAILQ_INIT(&(*out)->ts);
	TAILQ_INIT(&(*out)->q);
	(*out)->auto_on = true;
	return TW_OK;
}

tw_status tw_fake_net_destroy(tw_fake_net *n)
{
	if (n == NULL)
		return TW_OK;
	if (!TAILQ_EMPTY(&n->ts))
		return TW_EBUSY;
	/* Every end is gone, so is every frame toward one: nothing queued. */
	free(n);
	return TW_OK;
}

void tw_fake_net_set_auto(tw_fake_net *n, bool on)
{
	if (n != NULL)
		n->auto_on = on;
}

/* Add or remove (from, to) in a table of directions; NULL when full. */
static struct fdir *dir_slot(struct fdir *tab, int from, int to, uint8_t type,
			     bool exact)
{
	struct fdir *free_slot = NULL;
	for (unsigned i = 0; i < FAKE_MAX_RULES; i++) {
		struct fdir *d = &tab[i];
		if (!d->used) {
			if (free_slot == NULL)
				free_slot = d;
			continue;
		}
		if (exact && d->from == from && d->to == to && d->type == type)
			return d;
	}
	return free_slot;
}

tw_status tw_fake_net_hold(tw_fake_net *n, const char *from, const char *to,
			   bool on)
{
	if (n == NULL)
		return TW_EINVAL;
	int f = parse_node(from), t = parse_node(to);
	if (f == NODE_BAD || t == NODE_BAD)
		return TW_EINVAL;
	struct fdir *d = dir_slot(n->holds, f, t, 0, true);
	if (!on) {
		if (d != NULL && d->used)
			d->used = false;
		return TW_OK;
	}
	if (d == NULL)
		return TW_ENOSPC;
	*d = (struct fdir){.from = f, .to = t, .used = true};
	return TW_OK;
}

size_t tw_fake_net_queued(const tw_fake_net *n, const char *from,
			  const char *to)
{
	if (n == NULL)
		return 0;
	struct fdir d = {
		.from = parse_node(from), .to = parse_node(to), .used = true};
	size_t k = 0;
	const struct ff *f;
	TAILQ_FOREACH(f, &n->q, link)
	if (dir_match(&d, f->d.from, f->d.to))
		k++;
	return k;
}

size_t tw_fake_net_deliver(tw_fake_net *n, const char *from, const char *to,
			   size_t max)
{
	if (n == NULL)
		return 0;
	struct fdir d = {
		.from = parse_node(from), .to = parse_node(to), .used = true};
	size_t k = 0;
	for (struct ff *f = TAILQ_FIRST(&n->q); f != NULL && k < max;
	     f = TAILQ_NEXT(f, link)) {
		if (f->d.released || !dir_match(&d, f->d.from, f->d.to))
			continue;
		f->d.released = true;
		k++;
	}
	return k;
}

tw_status tw_fake_net_reorder(tw_fake_net *n, const char *from, const char *to,
			      const size_t *perm, size_t count)
{
	if (n == NULL || (perm == NULL && count > 0))
		return TW_EINVAL;
	if (count == 0)
		return TW_OK;
	struct fdir d = {
		.from = parse_node(from), .to = parse_node(to), .used = true};
	struct ff **fs = calloc(count, sizeof(*fs));
	struct ff_data *tmp = calloc(count, sizeof(*tmp));
	bool *seen = calloc(count, sizeof(*seen));
	tw_status st = TW_OK;
	if (fs == NULL || tmp == NULL || seen == NULL) {
		st = TW_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < count; i++) {
		if (perm[i] >= count || seen[perm[i]]) {
			st = TW_EINVAL;
			goto out;
		}
		seen[perm[i]] = true;
	}
	size_t k = 0;
	for (struct ff *f = TAILQ_FIRST(&n->q); f != NULL && k < count;
	     f = TAILQ_NEXT(f, link))
		if (dir_match(&d, f->d.from, f->d.to))
			fs[k++] = f;
	if (k < count) {
		st = TW_ENOENT;
		goto out;
	}
	for (size_t i = 0; i < count; i++)
		tmp[i] = fs[perm[i]]->d;
	for (size_t i = 0; i < count; i++)
		fs[i]->d = tmp[i];
out:
	free(fs);
	free(tmp);
	free(seen);
	return st;
}

size_t tw_fake_net_reverse(tw_fake_net *n, const char *from, const char *to)
{
	size_t k = tw_fake_net_queued(n, from, to);
	if (k < 2)
		return k;
	size_t *perm = malloc(k * sizeof(*perm));
	if (perm == NULL)
		return 0;
	for (size_t i = 0; i < k; i++)
		perm[i] = k - 1 - i;
	tw_status st = tw_fake_net_reorder(n, from, to, perm, k);
	free(perm);
	return st == TW_OK ? k : 0;
}

static tw_status add_rule(tw_fake_net *n, const char *from, const char *to,
			  uint8_t type, bool dup)
{
	if (n == NULL)
		return TW_EINVAL;
	int f = parse_node(from), t = parse_node(to);
	if (f == NODE_BAD || t == NODE_BAD)
		return TW_EINVAL;
	/* Never an existing one: two rules for the same frames are two
	 * frames' worth. */
	struct fdir *d = dir_slot(n->rules, f, t, type, false);
	if (d == NULL)
		return TW_ENOSPC;
	*d = (struct fdir){
		.from = f, .to = t, .type = type, .used = true, .dup = dup};
	return TW_OK;
}

tw_status tw_fake_net_drop_next(tw_fake_net *n, const char *from,
				const char *to, uint8_t type)
{
	return add_rule(n, from, to, type, false);
}

tw_status tw_fake_net_dup_next(tw_fake_net *n, const char *from, const char *to,
			       uint8_t type)
{
	return add_rule(n, from, to, type, true);
}

size_t tw_fake_net_break(tw_fake_net *n, const char *a, const char *b)
{
	if (n == NULL)
		return 0;
	int na = parse_node(a), nb = parse_node(b);
	size_t k = 0;
	struct ft *t;
	struct fc *c;
	TAILQ_FOREACH(t, &n->ts, link)
	{
		TAILQ_FOREACH(c, &t->conns, link)
		{
			if (c->closing || c->peer == NULL)
				continue;
			if ((node_match(na, c->local) &&
			     node_match(nb, c->remote)) ||
			    (node_match(nb, c->local) &&
			     node_match(na, c->remote))) {
				end_close(c, TW_EUNREACHABLE, false);
				k++;
			}
		}
	}
	n->st.broken += k;
	return k;
}

tw_status tw_fake_net_set_down(tw_fake_net *n, const char *addr, bool down)
{
	if (n == NULL)
		return TW_EINVAL;
	int node = parse_node(addr);
	if (node < 0)
		return TW_EINVAL;
	struct ft *t = node_find(n, node);
	if (t == NULL)
		return TW_ENOENT;
	t->down = down;
	if (down)
		(void)tw_fake_net_break(n, addr, NULL);
	return TW_OK;
}

tw_status tw_fake_net_set_host(tw_fake_net *n, const char *addr,
			       const char *host)
{
	if (n == NULL)
		return TW_EINVAL;
	int node = parse_node(addr), h = parse_node(host);
	if (node < 0 || h < 0)
		return TW_EINVAL;
	struct ft *t = node_find(n, node);
	if (t == NULL)
		return TW_ENOENT;
	t->host = h;
	return TW_OK;
}

tw_status tw_fake_net_inject(tw_fake_net *n, const char *from, const char *to,
			     const void *frame, size_t len)
{
	if (n == NULL || (frame == NULL && len > 0))
		return TW_EINVAL;
	struct fdir d = {
		.from = parse_node(from), .to = parse_node(to), .used = true};
	struct fc *best = NULL;
	struct ft *t;
	struct fc *c;
	TAILQ_FOREACH(t, &n->ts, link)
	TAILQ_FOREACH(c, &t->conns, link)
	if (!c->closing && c->peer != NULL &&
	    dir_match(&d, c->local, c->remote) &&
	    (best == NULL || c->base.id < best->base.id))
		best = c;
	if (best == NULL)
		return TW_ENOENT;
	struct ff *f = frame_new(best->peer, NULL, 0, frame, len);
	if (f == NULL)
		return TW_ENOMEM;
	f->d.rx_ns = tw_loop_now(best->t->base.loop);
	f->d.from = best->local;
	f->d.to = best->remote;
	f->d.type = len > 5 ? ((const uint8_t *)frame)[5] : 0;
	q_append(n, f);
	n->st.injected++;
	return TW_OK;
}

void tw_fake_net_get_stats(const tw_fake_net *n, struct tw_fake_net_stats *s)
{
	if (s == NULL)
		return;
	if (n == NULL) {
		memset(s, 0, sizeof(*s));
		return;
	}
	*s = n->st;
}
