/* The agent: options, run loops and their transports, connections,
 * rendezvous and membership, worker info, registration and shutdown. */
#include <inttypes.h>
#include <liburing.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tensorwire/dpdk.h>

#include "dataplane/clock.h"
#include "dataplane/err.h"
#include "dataplane/log.h"
#include "dataplane/probe.h"
#include "rpc/agent_impl.h"
#include "rpc/future_impl.h"
#include "rpc/invoke.h"
#include "rpc/rref.h"
#include "rpc/stat_server.h"
#include "rpc/stats_telemetry.h"

_Thread_local struct agent_loop *agent_tls_loop;

static _Atomic uint64_t agent_gen_next = 1;

#define RECORD_CACHE 4096u
#define EXEC_QUEUE 4096u
#define TX_POOL_BUF 4096u
#define TX_POOL_COUNT 1024u
#define TEARDOWN_WAIT_MS 5000

static void sleep_us(unsigned us)
{
	struct timespec ts = {.tv_sec = us / 1000000u,
			      .tv_nsec = (long)(us % 1000000u) * 1000};
	nanosleep(&ts, NULL);
}

void tw_agent_opts_init(struct tw_agent_opts *o, size_t opts_size)
{
	if (o == NULL)
		return;
	struct tw_agent_opts d = {0};
	d.opts_size = opts_size;
	d.num_loops = 1;
	d.first_cpu = -1;
	d.default_timeout_ms = 60000;
	d.init_timeout_ms = 60000;
	d.spin_ns = 200000;
	d.yield = false;
	d.executor_threads = 2;
	d.transport = NULL; /* "uring", or what transport_opts names */
	d.transport_opts = NULL;
	d.max_unauth_per_host = 64;
	d.max_unauth = 256;
	d.auth_timeout_ms = 10000;
	d.max_tensor_elems = UINT64_C(1) << 28;
	d.max_tensor_bytes = UINT64_C(1) << 30;
	d.max_op_work = UINT64_C(1) << 32;
	d.loop_work_max = UINT64_C(1) << 16;
	d.reply_backlog_max = 1024;
	d.reply_backlog_bytes = UINT64_C(64) << 20;
	d.exec_per_peer_max = TW_EXEC_PER_PEER_AUTO;
	d.max_frame = (UINT64_C(1) << 30) + (UINT64_C(64) << 10);
	d.shutdown_timeout_ms = 60000;
	d.log_level = -1;
	d.control_timeout_ms = RDV_VANISH_MS;
	d.stats_functions = 64;
	d.stats_peers = 64;
	d.stat_socket = NULL;
	d.same_host = true;
	memcpy(o, &d, opts_size < sizeof(d) ? opts_size : sizeof(d));
}

const char *agent_worker_name(const tw_agent *a, uint32_t id)
{
	if (a->workers != NULL && id < a->world)
		return a->workers[id].name;
	return "?";
}

/* ---- connections (loop thread) -------------------------------------------- */

static struct conn_state *conn_new(struct agent_loop *l, tw_transport *t,
				   tw_conn *c, bool outbound, int64_t peer)
{
	struct conn_state *cs = calloc(1, sizeof(*cs));
	if (cs == NULL)
		return NULL;
	cs->c = c;
	cs->t = t;
	cs->l = l;
	cs->id = ++l->next_conn_id; /* (ids of transports may collide) */
	cs->peer = peer;
	cs->outbound = outbound;
	c->ctx = cs;
	TAILQ_INIT(&cs->calls);
	STAILQ_INIT(&cs->backlog);
	STAILQ_INIT(&cs->held);
	TAILQ_INSERT_HEAD(&l->conns, cs, link);
	l->nconns++;
	stat_inc(&l->stats.conns_opened);
	TW_PROBE2(conn_up, cs->id, c->peer);
	return cs;
}

struct conn_state *conn_find_id(struct agent_loop *l, uint64_t id)
{
	struct conn_state *cs;
	TAILQ_FOREACH(cs, &l->conns, link)
	if (cs->id == id)
		return cs;
	return NULL;
}

/* An attempt to connect to dst failed (st; why: its cause, or NULL). */
static void redial_failed(struct agent_loop *l, uint32_t dst, tw_status st,
			  tw_status kind, const char *why)
{
	struct redial *r = &l->redial[dst];
	uint64_t now = tw_loop_now(l->loop);
	uint64_t wait_ms = r->fails >= 7 ? REDIAL_MAX_MS
					 : (uint64_t)REDIAL_MIN_MS << r->fails;
	if (wait_ms > REDIAL_MAX_MS)
		wait_ms = REDIAL_MAX_MS;
	r->fails++;
	r->fail_ns = now;
	r->at_ns = now + wait_ms * 1000000u;
	r->kind = kind;
	snprintf(r->why, sizeof(r->why), "%s",
		 why != NULL ? why : tw_strerror(st));
	stat_inc(&l->stats.connect_failures);
}

void redial_ok(struct agent_loop *l, uint32_t dst)
{
	l->redial[dst].fails = 0;
	l->redial[dst].at_ns = 0;
}

/* Why a call to dst could not go (conn_get gave NULL and st), and the
 * kind of error to fail it with. */
tw_status conn_why(struct agent_loop *l, uint32_t dst, tw_status st, char *buf,
		   size_t size)
{
	const struct redial *r = &l->redial[dst];
	const char *name = agent_worker_name(l->a, dst);
	uint64_t now = tw_loop_now(l->loop);
	if (r->fails == 0) {
		snprintf(buf, size, "cannot connect to worker '%s': %s", name,
			 tw_strerror(st));
		return TW_EUNREACHABLE;
	}
	snprintf(buf, size,
		 "worker '%s' is unreachable: connecting to it failed %u "
		 "time%s in a row, the last %llu ms ago (%s); the next attempt "
		 "is in %llu ms",
		 name, r->fails, r->fails == 1 ? "" : "s",
		 (unsigned long long)((now - r->fail_ns) / 1000000u), r->why,
		 (unsigned long long)(r->at_ns > now
					      ? (r->at_ns - now + 999999u) /
							1000000u
					      : 0));
	return r->kind;
}

bool agent_peer_local(const tw_agent *a, uint32_t r)
{
	return atomic_load(&a->members_known) && r < a->world &&
	       a->members[r].host_known && a->members[a->rank].host_known &&
	       memcmp(a->members[r].host, a->members[a->rank].host,
		      RDV_HOST_ID_LEN) == 0;
}

void conn_mark_local(struct agent_loop *l, struct conn_state *cs)
{
	if (cs->local_done || !cs->authed || cs->peer < 0 ||
	    !agent_peer_local(l->a, (uint32_t)cs->peer))
		return;
	cs->local_done = true;
	/* (idempotent: our own were marked at connect already, before any
	 * byte left, when the membership was known then) */
	tw_transport_set_local(cs->t, cs->c, true);
	stat_inc(&l->stats.conns_same_host);
}

/* dst's same-host connection could not be set up (why): reach it over
 * the main transport from now on. */
static void local_failed(struct agent_loop *l, uint32_t dst, const char *why)
{
	if (l->local_failed[dst])
		return;
	l->local_failed[dst] = 1;
	stat_inc(&l->stats.same_host_fallbacks);
	char q[256];
	TW_LOG(TW_LOG_WARN, "same_host_fallback",
	       "worker=%s rank=%u loop=%u reason=%s",
	       agent_worker_name(l->a, dst), dst, l->idx,
	       tw_log_q(q, sizeof(q), why));
}

struct conn_state *conn_get(struct agent_loop *l, uint32_t dst, tw_status *st)
{
	struct conn_state *cs = l->out[dst];
	if (cs != NULL && !cs->closing && !cs->doomed && !cs->auth_failed)
		return cs;
	if (l->redial[dst].fails != 0 &&
	    tw_loop_now(l->loop) < l->redial[dst].at_ns) {
		stat_inc(&l->stats.redial_waits);
		*st = TW_EUNREACHABLE;
		return NULL;
	}
	const struct rdv_member *m = &l->a->members[dst];
	const char *addr = m->addrs[l->idx % m->nloops];
	const char *laddr = rdv_local_addr(m, l->idx % m->nloops);
	tw_conn *c = NULL;
	tw_transport *t = l->t;
	if (l->tl != NULL && laddr != NULL && !l->local_failed[dst] &&
	    agent_peer_local(l->a, dst)) {
		l->connecting = true;
		tw_err_forget();
		*st = l->tl->ops->connect(l->tl, laddr, &c);
		l->connecting = false;
		if (*st == TW_OK)
			t = l->tl;
		else
			local_failed(l, dst, tw_errmsg(*st));
	}
	l->connecting = true;
	tw_err_forget(); /* a transport may fail without saying why */
	if (t == l->t)
		*st = l->t->ops->connect(l->t, addr, &c);
	l->connecting = false;
	if (*st != TW_OK) {
		/* Right after the failing call: its reason is the
		 * transport's (an address it cannot use, no socket). */
		redial_failed(l, dst, *st, TW_EUNREACHABLE, tw_errmsg(*st));
		return NULL;
	}
	if (c->ctx != NULL) {
		/* The transport reported it already (on_conn knew it is
		 * ours: l->connecting). */
		cs = c->ctx;
		cs->outbound = true;
		cs->peer = dst;
	} else {
		cs = conn_new(l, t, c, true, dst);
		if (cs == NULL) {
			t->ops->close(t, c);
			*st = TW_ENOMEM;
			return NULL;
		}
	}
	l->out[dst] = cs;
	if (agent_peer_local(l->a, dst))
		tw_transport_set_local(cs->t, c, true);
	/* The HELLO first; every other frame waits for the handshake. */
	pauth_connected(l, cs);
	return cs;
}

static void tx_req_done(struct tw_send_req *r, tw_status st)
{
	struct tx *tx = container_of(r, struct tx, req);
	tx->l->tx_inflight--;
	tx->done(tx, st);
}

static void backlog_push(struct conn_state *cs, struct tx *tx, bool front)
{
	if (STAILQ_EMPTY(&cs->backlog))
		cs->l->nbacklog++;
	if (front)
		STAILQ_INSERT_HEAD(&cs->backlog, tx, link);
	else
		STAILQ_INSERT_TAIL(&cs->backlog, tx, link);
}

static struct tx *backlog_pop(struct conn_state *cs)
{
	struct tx *tx = STAILQ_FIRST(&cs->backlog);
	if (tx == NULL)
		return NULL;
	STAILQ_REMOVE_HEAD(&cs->backlog, link);
	if (STAILQ_EMPTY(&cs->backlog))
		cs->l->nbacklog--;
	return tx;
}

/* Hand tx to the transport. false when its queue is full (tx untouched). */
static bool try_send(struct conn_state *cs, struct tx *tx)
{
	struct agent_loop *l = cs->l;
	/* Counted before: done may run inside send. */
	l->tx_inflight++;
	stat_max(&l->stats.tx_inflight_hwm, (uint64_t)l->tx_inflight);
	uint64_t len = tx->req.len; /* tx may be done and gone after */
	tw_status st = tw_transport_send(cs->t, cs->c, &tx->req);
	if (st == TW_OK) {
		stat_inc(&l->stats.frames_out);
		stat_add(&l->stats.bytes_out, len);
		return true;
	}
	l->tx_inflight--;
	if (st == TW_ENOSPC)
		return false;
	tx->done(tx, st);
	return true;
}

static void tx_prep(struct conn_state *cs, struct tx *tx)
{
	tx->l = cs->l;
	tx->req.iov = tx->msg.iov;
	tx->req.niov = tx->msg.niov;
	tx->req.len = tx->msg.total_len;
	tx->req.done = tx_req_done;
}

/* Behind a backlog, wait in line: frames of a connection keep their
 * order. */
static void send_in_line(struct conn_state *cs, struct tx *tx)
{
	if (!STAILQ_EMPTY(&cs->backlog) || !try_send(cs, tx))
		backlog_push(cs, tx, false);
}

void conn_send(struct conn_state *cs, struct tx *tx)
{
	tx_prep(cs, tx);
	/* One test in the steady state: authenticated and open. */
	if (__builtin_expect(!cs->authed | cs->closing | cs->doomed, 0)) {
		if (cs->closing || cs->doomed || cs->auth_failed) {
			tx->done(tx, TW_EUNREACHABLE);
			return;
		}
		STAILQ_INSERT_TAIL(&cs->held, tx, link);
		return;
	}
	send_in_line(cs, tx);
}

void conn_send_raw(struct conn_state *cs, struct tx *tx)
{
	tx_prep(cs, tx);
	if (cs->closing) {
		tx->done(tx, TW_EUNREACHABLE);
		return;
	}
	send_in_line(cs, tx);
}

void conn_release_held(struct conn_state *cs)
{
	struct tx *tx;
	while ((tx = STAILQ_FIRST(&cs->held)) != NULL) {
		STAILQ_REMOVE_HEAD(&cs->held, link);
		send_in_line(cs, tx);
	}
}

void conn_close_later(struct conn_state *cs)
{
	if (cs->doomed || cs->closing)
		return;
	cs->doomed = true;
	cs->l->ndoomed++;
}

static int close_doomed(struct agent_loop *l)
{
	int work = 0;
	struct conn_state *cs;
	TAILQ_FOREACH(cs, &l->conns, link)
	{
		if (l->ndoomed == 0)
			break;
		if (!cs->doomed)
			continue;
		cs->doomed = false;
		l->ndoomed--;
		if (!cs->closing) {
			cs->closing = true;
			cs->t->ops->close(cs->t, cs->c);
		}
		work++;
	}
	return work;
}

static int flush_backlogs(struct agent_loop *l)
{
	int work = 0;
	struct conn_state *cs;
	TAILQ_FOREACH(cs, &l->conns, link)
	{
		if (l->nbacklog == 0)
			break;
		struct tx *tx;
		while ((tx = backlog_pop(cs)) != NULL) {
			if (!try_send(cs, tx)) {
				backlog_push(cs, tx, true);
				break;
			}
			work++;
		}
	}
	return work;
}

/* cs, a same-host connection to its worker that failed before its
 * handshake: its calls and the frames held for the handshake go over a
 * new connection on the main transport (left on cs, they fail with it,
 * when that cannot be had). */
static void local_move(struct agent_loop *l, struct conn_state *cs)
{
	uint32_t dst = (uint32_t)cs->peer;
	if (l->out[dst] == cs)
		l->out[dst] = NULL;
	tw_status st;
	struct conn_state *n = conn_get(l, dst, &st);
	if (n == NULL || n == cs)
		return;
	struct call *c;
	while ((c = TAILQ_FIRST(&cs->calls)) != NULL) {
		TAILQ_REMOVE(&cs->calls, c, clink);
		c->conn = n;
		TAILQ_INSERT_TAIL(&n->calls, c, clink);
	}
	struct tx *tx;
	while ((tx = STAILQ_FIRST(&cs->held)) != NULL) {
		STAILQ_REMOVE_HEAD(&cs->held, link);
		conn_send(n, tx);
	}
}

static void conn_remove(struct agent_loop *l, struct conn_state *cs,
			tw_status why)
{
	TW_PROBE3(conn_down, cs->id, cs->c->peer, (int)why);
	/* Ours over the same-host transport, ended before its handshake
	 * did: its worker is reached over the main transport, and what
	 * waited for this one moves there (no redial wait: another way). */
	if (cs->t == l->tl && cs->outbound && !cs->authed &&
	    why != TW_ESHUTDOWN && !l->closing && cs->peer >= 0 &&
	    (uint64_t)cs->peer < l->a->world) {
		local_failed(l, (uint32_t)cs->peer,
			     cs->fail_msg != NULL ? cs->fail_msg
			     : cs->c->why != NULL ? cs->c->why
						  : tw_strerror(why));
		local_move(l, cs);
	} else if (cs->outbound && !cs->authed && why != TW_ESHUTDOWN &&
		   cs->peer >= 0 && (uint64_t)cs->peer < l->a->world)
		redial_failed(l, (uint32_t)cs->peer, why,
			      cs->fail_msg != NULL ? cs->fail_kind
						   : TW_EUNREACHABLE,
			      cs->fail_msg != NULL ? cs->fail_msg
			      : cs->c->why != NULL ? cs->c->why
						   : NULL);
	call_conn_closed(l, cs, why);
	struct tx *tx;
	while ((tx = backlog_pop(cs)) != NULL)
		tx->done(tx, TW_EUNREACHABLE);
	while ((tx = STAILQ_FIRST(&cs->held)) != NULL) {
		STAILQ_REMOVE_HEAD(&cs->held, link);
		tx->done(tx, TW_EUNREACHABLE);
	}
	pauth_conn_gone(l, cs);
	if (cs->doomed)
		l->ndoomed--;
	TAILQ_REMOVE(&l->conns, cs, link);
	l->nconns--;
	if (cs->peer >= 0 && (uint64_t)cs->peer < l->a->world &&
	    l->out[cs->peer] == cs)
		l->out[cs->peer] = NULL;
	cs->c->ctx = NULL;
	stat_inc(&l->stats.conns_closed);
	free(cs->fail_msg);
	free(cs);
}

/* ---- transport upcalls ------------------------------------------------------- */

static void on_frame(void *ctx, tw_conn *c, const tw_frame_hdr *h, tw_buf *buf,
		     size_t off, size_t len)
{
	struct tport *tp = ctx;
	struct agent_loop *l = tp->l;
	struct conn_state *cs = c->ctx;
	TW_PROBE4(frame_recv, h->src, h->req_id, (unsigned)h->type,
		  h->total_len);
	stat_inc(&l->stats.frames_in);
	stat_add(&l->stats.bytes_in, h->total_len);
	if (cs == NULL) {
		/* A transport that did not announce it: accepted. */
		if ((cs = conn_new(l, tp->t, c, false, -1)) == NULL)
			return;
		pauth_accepted(l, cs);
	}
	if (__builtin_expect(!cs->authed | cs->doomed, 0)) {
		pauth_on_frame(l, cs, h, buf, off, len);
		return;
	}
	/* Bound to one worker: it speaks for itself only, to us only. */
	if (__builtin_expect(
		    h->src != (uint64_t)cs->peer || h->dst != l->a->rank, 0)) {
		pauth_spoofed(l, cs, h);
		return;
	}
	switch (h->type) {
	case TW_MSG_CALL:
		serve_on_call(l, cs, h, buf, off, len);
		break;
	case TW_MSG_RET:
	case TW_MSG_EXCEPTION:
		call_on_response(l, cs, h, buf, off, len);
		break;
	case TW_MSG_REMOTE_CALL:
	case TW_MSG_RREF_FETCH_CALL:
	case TW_MSG_RREF_USER_DELETE:
	case TW_MSG_RREF_FORK_REQUEST:
	case TW_MSG_RREF_CHILD_ACCEPT:
		/* From a member declared dead (frames read after the
		 * declaration, or one cut off from rank 0 only): nothing it
		 * creates or holds here may outlive the forks dropped. */
		if (__builtin_expect(agent_peer_dead(l->a, (uint32_t)h->src),
				     0))
			break;
		rref_on_frame(l, cs, h, buf, off, len);
		break;
	case TW_MSG_AG_BACKWARD:
		/* A call of the backward handler (autograd.h), served as
		 * one. */
		if (__builtin_expect(agent_peer_dead(l->a, (uint32_t)h->src),
				     0))
			break;
		serve_on_call(l, cs, h, buf, off, len);
		break;
	case TW_MSG_AG_CLEANUP:
		if (__builtin_expect(agent_peer_dead(l->a, (uint32_t)h->src),
				     0))
			break;
		ag_on_frame(l, cs, h, buf, off, len);
		break;
	case TW_MSG_REMOTE_RET:
	case TW_MSG_RREF_FETCH_RET:
	case TW_MSG_ACK:
		/* Answers to rref.c's (and autograd.c's) requests, pending
		 * as calls. */
		call_on_response(l, cs, h, buf, off, len);
		break;
	default:
		/* Unknown, or not a data connection's (JOIN, SHUTDOWN, AUTH
		 * after the handshake): invalid (docs/wire.md), and the
		 * stream cannot be trusted further. */
		stat_inc(&l->stats.bad_frames);
		if (cs->fail_msg == NULL) {
			char msg[160];
			snprintf(msg, sizeof(msg),
				 "worker '%s' sent a frame of type %u, which a "
				 "data connection does not carry",
				 agent_worker_name(l->a, (uint32_t)cs->peer),
				 h->type);
			cs->fail_kind = TW_EPROTO;
			cs->fail_msg = strdup(msg);
		}
		conn_close_later(cs);
		break;
	}
}

/* A header the transport refused intact (transport.h, on_refused): a
 * newer wire version is answered with EXCEPTION(TW_EVERSION) naming both
 * versions before the transport closes (docs/wire.md §3); a frame over
 * the limits is skipped, the connection kept, and a request among them
 * answered with EXCEPTION(TW_EOVERFLOW) naming the limit. Never an
 * EXCEPTION to an EXCEPTION. */
static bool on_refused(void *ctx, tw_conn *c, const tw_frame_hdr *h,
		       tw_status st)
{
	struct tport *tp = ctx;
	struct agent_loop *l = tp->l;
	struct conn_state *cs = c->ctx;
	char msg[256];
	stat_inc(&l->stats.bad_frames);
	TW_LOG(TW_LOG_WARN, "frame_refused",
	       "peer=%s type=%u total_len=%llu status=%s authenticated=%d",
	       c->peer[0] ? c->peer : "-", (unsigned)h->type,
	       (unsigned long long)h->total_len, tw_status_name(st),
	       cs != NULL && cs->authed ? 1 : 0);
	if (cs == NULL && (cs = conn_new(l, tp->t, c, false, -1)) == NULL)
		return false;
	if (st == TW_EVERSION) {
		snprintf(msg, sizeof(msg),
			 "wire version %u not supported; worker '%s' speaks %u",
			 h->version, l->a->name, TW_FRAME_VERSION);
		if (!cs->authed)
			/* A newer peer's first frame is its HELLO: it hears
			 * why, outside the handshake. */
			pauth_refuse(l, cs, h, TW_EVERSION, msg);
		else if (h->type != TW_MSG_EXCEPTION)
			serve_reject(l, cs, h, TW_EVERSION, msg);
		return false;
	}
	/* Before the handshake only AUTH frames fit (peer_auth.c): a
	 * stranger's big header ends its connection, unanswered, rather
	 * than have us read and skip what it streams. */
	if (!cs->authed)
		return false;
	if (h->type == TW_MSG_CALL || h->type == TW_MSG_REMOTE_CALL ||
	    h->type == TW_MSG_RREF_FETCH_CALL ||
	    h->type == TW_MSG_RREF_FORK_REQUEST) {
		uint64_t lim = tp->t->limits.max_total;
		if (lim == 0) /* frame.h's default */
			lim = (UINT64_C(1) << 30) + (UINT64_C(64) << 10);
		if (c->rx_max != 0 && c->rx_max < lim)
			lim = c->rx_max;
		snprintf(msg, sizeof(msg),
			 "frame of %llu bytes is over worker '%s''s limit of "
			 "%llu bytes",
			 (unsigned long long)h->total_len, l->a->name,
			 (unsigned long long)lim);
		serve_reject(l, cs, h, TW_EOVERFLOW, msg);
	}
	return true;
}

static void on_conn(void *ctx, tw_conn *c, tw_status st)
{
	struct tport *tp = ctx;
	struct agent_loop *l = tp->l;
	struct conn_state *cs = c->ctx;
	if (st == TW_OK) {
		if (cs != NULL)
			return;
		if (l->connecting) {
			/* Ours, reported inside connect(): conn_get goes on. */
			(void)conn_new(l, tp->t, c, true, -1);
			return;
		}
		cs = conn_new(l, tp->t, c, false, -1);
		if (cs == NULL)
			tp->t->ops->close(tp->t, c);
		else
			pauth_accepted(l, cs);
		return;
	}
	if (cs != NULL)
		conn_remove(l, cs, st);
}

static int loop_poller(void *arg)
{
	struct agent_loop *l = arg;
	int work = 0;
	if (__builtin_expect(l->nbacklog > 0, 0))
		work += flush_backlogs(l);
	if (__builtin_expect(l->ndoomed > 0, 0))
		work += close_doomed(l);
	if (__builtin_expect(!STAILQ_EMPTY(&l->retry), 0))
		work += serve_flush_retries(l);
	return work;
}

/* ---- members that die (docs/architecture.md) ------------------------------------ */

void agent_dead_reason(const tw_agent *a, uint32_t r, char *buf, size_t size)
{
	if (r == 0)
		snprintf(buf, size,
			 "worker '%s' (id 0) is dead: it hosted the rendezvous "
			 "and worker '%s''s control connection to it closed",
			 agent_worker_name(a, 0), a->name);
	else
		snprintf(buf, size,
			 "worker '%s' (id %u) is dead: its control connection "
			 "to the rendezvous host (rank 0) closed",
			 agent_worker_name(a, r), r);
}

tw_status agent_dead_fail(const tw_agent *a, uint32_t r)
{
	char msg[TW_ERRMSG_MAX];
	agent_dead_reason(a, r, msg, sizeof(msg));
	return tw_fail(TW_EUNREACHABLE, "%s", msg);
}

/* On l's thread: its pending calls to dead worker r fail, naming it, and
 * its connections to and from r close. */
static void loop_member_dead(struct agent_loop *l, uint32_t r)
{
	char msg[TW_ERRMSG_MAX];
	agent_dead_reason(l->a, r, msg, sizeof(msg));
	struct conn_state *cs, *next;
	for (cs = TAILQ_FIRST(&l->conns); cs != NULL; cs = next) {
		next = TAILQ_NEXT(cs, link);
		if (cs->peer != (int64_t)r)
			continue;
		if (cs->fail_msg == NULL) {
			cs->fail_kind = TW_EUNREACHABLE;
			cs->fail_msg = strdup(msg);
		}
		/* Every pending call to r went out on one of them. */
		call_conn_closed(l, cs, TW_EUNREACHABLE);
		conn_close_later(cs);
	}
}

static void dead_msg_fn(struct tw_loop_msg *m)
{
	struct agent_loop *l = container_of(m, struct agent_loop, dead_msg);
	tw_agent *a = l->a;
	atomic_store(&l->dead_posted, 0);
	uint32_t n = atomic_load(&a->ndead);
	for (uint32_t r = 0; r < a->world; r++) {
		if (l->dead_done[r] || !agent_peer_dead(a, r))
			continue;
		l->dead_done[r] = 1;
		loop_member_dead(l, r);
	}
	atomic_store(&l->dead_seen, n);
}

/* Have l look at the dead (once queued is enough). A full ring is tried
 * again by the watch's next tick (dead_seen stays behind). */
static void dead_post(struct agent_loop *l)
{
	if (atomic_exchange(&l->dead_posted, 1) != 0)
		return;
	l->dead_msg.fn = dead_msg_fn;
	tw_status st = tw_loop_on_thread(l->loop)
			       ? tw_loop_post_own(l->loop, &l->dead_msg)
			       : tw_loop_post(l->loop, &l->dead_msg);
	if (st != TW_OK)
		atomic_store(&l->dead_posted, 0);
}

void agent_member_dead(tw_agent *a, uint32_t rank)
{
	if (rank >= a->world || rank == a->rank ||
	    atomic_exchange(&a->dead[rank], 1) != 0)
		return;
	atomic_fetch_add(&a->ndead, 1);
	/* Past the shutdown barrier every control connection closes: no
	 * news then, only a debug line. */
	bool news = atomic_load(&a->state) == AGENT_RUNNING ||
		    atomic_load(&a->state) == AGENT_STARTING;
	if (news)
		TW_LOG(TW_LOG_WARN, "peer_dead", "worker=%s rank=%u reason=%s",
		       agent_worker_name(a, rank), rank,
		       rank == 0
			       ? "\"our control connection to rank 0 closed\""
			       : "\"rank 0 saw its control connection close\"");
	else
		TW_LOG(TW_LOG_DEBUG, "peer_dead", "worker=%s rank=%u reason=%s",
		       agent_worker_name(a, rank), rank,
		       rank == 0
			       ? "\"our control connection to rank 0 closed\""
			       : "\"rank 0 saw its control connection close\"");
	rref_member_dead(a, rank);
	ag_member_dead(a, rank);
	for (uint32_t i = 0; i < a->nloops; i++)
		if (a->loops[i].ready)
			dead_post(&a->loops[i]);
}

/* Loop 0: what rank 0 said of members gone. Rank 0 leaving (our control
 * connection closed) is its death; after it, or a control stream that
 * went bad, there is nobody left to tell us more. TW_EBUSY when the
 * shutdown barrier holds the connection (it applies the notices). */
static tw_status watch_read(tw_agent *a)
{
	tw_status st = rdv_watch(a->rdv, a->watch_gone);
	if (st != TW_EBUSY) {
		for (uint32_t r = 0; r < a->world; r++)
			if ((a->watch_gone[r / 8] >> (r % 8)) & 1)
				agent_member_dead(a, r);
		if (st == TW_EUNREACHABLE)
			agent_member_dead(a, 0);
		if (st != TW_OK)
			a->watching = false;
	}
	uint32_t n = atomic_load(&a->ndead);
	for (uint32_t i = 0; i < a->nloops; i++)
		if (a->loops[i].ready &&
		    atomic_load(&a->loops[i].dead_seen) != n)
			dead_post(&a->loops[i]);
	return st;
}

/* Wake loop 0 when the control connection turns readable (a notice, or
 * its close: a SIGKILLed member's kernel closes its socket, rank 0's
 * server sees it at once and tells us), so that a death is acted on in
 * milliseconds rather than on the next tick, at no cost while nothing
 * happens. One-shot: re-armed after each read. Without an SQE the tick
 * tries again. */
static void watch_poll_arm(tw_agent *a)
{
	struct agent_loop *l0 = &a->loops[0];
	if (!a->watching || a->watch_polling || l0->closing)
		return;
	struct io_uring_sqe *sqe = tw_loop_sqe(l0->loop);
	if (sqe == NULL)
		return;
	io_uring_prep_poll_add(sqe, rdv_client_fd(a->rdv),
			       POLLIN | POLLRDHUP | POLLERR | POLLHUP);
	io_uring_sqe_set_data(sqe, &a->watch_req);
	a->watch_polling = true;
}

static void watch_poll_done(struct tw_uring_req *r, struct io_uring_cqe *cqe)
{
	(void)cqe;
	tw_agent *a = container_of(r, tw_agent, watch_req);
	a->watch_polling = false;
	if (!a->watching || a->loops[0].closing)
		return; /* cancelled by watch_stop, or a late completion */
	/* While the barrier holds the connection, re-arming would complete
	 * at once again (it stays readable): the tick re-arms. */
	if (watch_read(a) != TW_EBUSY)
		watch_poll_arm(a);
}

/* Loop 0, every AGENT_WATCH_MS: what the poll did not catch. */
static void watch_tick(struct tw_timer *t, void *arg)
{
	(void)t;
	tw_agent *a = arg;
	struct agent_loop *l0 = &a->loops[0];
	if (!a->watching || l0->closing)
		return;
	if (watch_read(a) != TW_EBUSY)
		watch_poll_arm(a);
	if (a->watching)
		tw_loop_timer_after(l0->loop, &a->watch,
				    (uint64_t)AGENT_WATCH_MS * 1000000u);
}

/* ---- running things on a loop, synchronously ---------------------------------- */

struct sync_msg {
	struct tw_loop_msg m;
	struct agent_loop *l;
	void (*fn)(struct sync_msg *s);
	tw_status st;
	int ret;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
};

static void sync_msg_fn(struct tw_loop_msg *m)
{
	struct sync_msg *s = container_of(m, struct sync_msg, m);
	s->fn(s);
	pthread_mutex_lock(&s->mu);
	s->done = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* Run fn on l's thread and wait for it. Embedded, the caller is that
 * thread (init and shutdown run on the owner): the message goes through
 * the ring all the same, so it runs after whatever other threads posted
 * before it, exactly as on a loop thread, and we poll until it has run. */
static tw_status run_on_loop(struct agent_loop *l,
			     void (*fn)(struct sync_msg *s), int *ret)
{
	struct sync_msg s = {.l = l, .fn = fn, .st = TW_OK};
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	s.m.fn = sync_msg_fn;
	bool embedded = l->a->o.embedded;
	while (tw_loop_post(l->loop, &s.m) != TW_OK) {
		if (embedded)
			(void)tw_loop_poll_once(l->loop);
		else
			sleep_us(100);
	}
	pthread_mutex_lock(&s.mu);
	while (!s.done) {
		if (embedded) {
			/* Our own thread set done: no lock needed to poll. */
			pthread_mutex_unlock(&s.mu);
			(void)tw_loop_poll_once(l->loop);
			pthread_mutex_lock(&s.mu);
		} else {
			pthread_cond_wait(&s.cv, &s.mu);
		}
	}
	pthread_mutex_unlock(&s.mu);
	pthread_mutex_destroy(&s.mu);
	pthread_cond_destroy(&s.cv);
	if (ret != NULL)
		*ret = s.ret;
	return s.st;
}

static void watch_start_fn(struct sync_msg *s)
{
	tw_agent *a = s->l->a;
	a->watching = true;
	tw_timer_init(&a->watch, watch_tick, a);
	tw_loop_timer_after(s->l->loop, &a->watch,
			    (uint64_t)AGENT_WATCH_MS * 1000000u);
	a->watch_req.fn = watch_poll_done;
	watch_poll_arm(a);
}

/* Loop 0's thread: no more ticks nor polls (before the control connection
 * goes: an armed poll holds its socket open, so rank 0 would not see us
 * leave until the poll ends). */
static void watch_stop(struct agent_loop *l)
{
	tw_agent *a = l->a;
	if (l->idx != 0 || !a->watching)
		return;
	a->watching = false;
	tw_timer_cancel(tw_loop_timers(l->loop), &a->watch);
	if (a->watch_polling) {
		struct io_uring_sqe *sqe = tw_loop_sqe(l->loop);
		if (sqe != NULL) {
			io_uring_prep_poll_remove(
				sqe, (__u64)(uintptr_t)&a->watch_req);
			io_uring_sqe_set_data(sqe, NULL);
		}
	}
}

/* The loop's same-host transport (tw_agent_opts.same_host), listening:
 * on failure the loop goes on without it (its peers reach it over the
 * main transport), saying why. */
static void local_init(struct agent_loop *l,
		       const struct tw_transport_cbs *main_cbs)
{
	tw_agent *a = l->a;
	char url[TW_ADDR_MAX + 16];
	if (a->tpl == NULL)
		return;
	l->cb_local.l = l;
	struct tw_transport_cbs cbs = *main_cbs;
	cbs.ctx = &l->cb_local;
	tw_status st = a->tpl->create(a->tenvl, l->idx, l->loop, &cbs, &l->tl);
	l->cb_local.t = l->tl;
	if (st == TW_OK)
		st = a->tpl->listen_addr(a->tenvl, l->idx, url, sizeof(url));
	if (st == TW_OK) {
		if (l->fault.fail_type || l->fault.drop_type ||
		    l->fault.delay_type)
			l->tl->fault = &l->fault;
		if (l->tl->limits.max_total == 0 ||
		    l->tl->limits.max_total > a->o.max_frame)
			l->tl->limits.max_total = a->o.max_frame;
		st = l->tl->ops->listen(l->tl, url, l->laddr, sizeof(l->laddr));
	}
	if (st == TW_OK)
		return;
	char q[256];
	TW_LOG(TW_LOG_WARN, "same_host_off", "worker=%s loop=%u reason=%s",
	       a->name, l->idx, tw_log_q(q, sizeof(q), tw_errmsg(st)));
	if (l->tl != NULL)
		l->tl->ops->destroy(l->tl);
	l->tl = NULL;
	l->laddr[0] = '\0';
}

static void loop_init_fn(struct sync_msg *s)
{
	struct agent_loop *l = s->l;
	tw_agent *a = l->a;
	agent_tls_loop = l;
	l->cb_main.l = l;
	struct tw_transport_cbs cbs = {.ctx = &l->cb_main,
				       .on_frame = on_frame,
				       .on_conn = on_conn,
				       .on_refused = on_refused};
	char url[TW_ADDR_MAX + 16];
	s->st = a->tp->create(a->tenv, l->idx, l->loop, &cbs, &l->t);
	l->cb_main.t = l->t;
	if (s->st != TW_OK) {
		snprintf(l->init_why, sizeof(l->init_why), "%s",
			 tw_errmsg(s->st));
		return;
	}
	s->st = a->tp->listen_addr(a->tenv, l->idx, url, sizeof(url));
	if (s->st != TW_OK) {
		l->t->ops->destroy(l->t);
		l->t = NULL;
		return;
	}
	if (l->fault.fail_type || l->fault.drop_type || l->fault.delay_type)
		l->t->fault = &l->fault;
	/* The frames we accept are the frames we may send (max_frame). */
	if (l->t->limits.max_total == 0 ||
	    l->t->limits.max_total > a->o.max_frame)
		l->t->limits.max_total = a->o.max_frame;
	s->st = l->t->ops->listen(l->t, url, l->addr, sizeof(l->addr));
	if (s->st == TW_OK && a->tp->public_addr != NULL) {
		char bound[sizeof(l->addr)];
		snprintf(bound, sizeof(bound), "%s", l->addr);
		s->st = a->tp->public_addr(a->tenv, l->idx, bound, l->addr,
					   sizeof(l->addr));
		if (s->st == TW_EOVERFLOW)
			tw_fail(s->st,
				"cannot announce %.64s: the address to "
				"advertise does not fit",
				bound);
	}
	if (s->st != TW_OK) {
		snprintf(l->init_why, sizeof(l->init_why), "%s",
			 tw_errmsg(s->st));
		l->t->ops->destroy(l->t);
		l->t = NULL;
		return;
	}
	local_init(l, &cbs);
	l->poller.fn = loop_poller;
	l->poller.arg = l;
	tw_loop_add_poller(l->loop, &l->poller);
	l->ready = true;
}

static void loop_teardown_begin(struct sync_msg *s)
{
	struct agent_loop *l = s->l;
	l->closing = true;
	watch_stop(l);
	call_fail_all(l, TW_ESHUTDOWN, AGENT_SHUTDOWN_MSG);
}

/* Close every connection and report whether all are gone and every send
 * is back (sends the fault injector holds end with their connection:
 * tw_fault_conn_closed). */
static void loop_teardown_check(struct sync_msg *s)
{
	struct agent_loop *l = s->l;
	struct conn_state *cs;
	TAILQ_FOREACH(cs, &l->conns, link)
	{
		if (!cs->closing) {
			cs->closing = true;
			cs->t->ops->close(cs->t, cs->c);
		}
	}
	(void)close_doomed(l); /* (all closing now: only the counts) */
	s->ret = l->nconns == 0 && l->tx_inflight == 0;
}

static void loop_teardown_final(struct sync_msg *s)
{
	struct agent_loop *l = s->l;
	tw_loop_remove_poller(l->loop, &l->poller);
	l->t->ops->destroy(l->t);
	l->t = NULL;
	if (l->tl != NULL)
		l->tl->ops->destroy(l->tl);
	l->tl = NULL;
	/* Anything the transport did not report as closed is gone now. */
	while (!TAILQ_EMPTY(&l->conns))
		conn_remove(l, TAILQ_FIRST(&l->conns), TW_ESHUTDOWN);
	call_fail_all(l, TW_ESHUTDOWN, AGENT_SHUTDOWN_MSG);
	serve_drop_retries(l);
	l->ready = false;
	agent_tls_loop = NULL;
}

/* ---- init and teardown -------------------------------------------------------- */

static void hub_release(struct defer_hub *h)
{
	if (h != NULL && atomic_fetch_sub(&h->refs, 1) == 1)
		free(h);
}

static uint64_t now_ms(void)
{
	return tw_clock_monotonic(NULL) / 1000000u;
}

struct exec_stopper {
	struct executor *exec;
	_Atomic int done;
};

static void *exec_stopper_main(void *arg)
{
	struct exec_stopper *s = arg;
	executor_stop(s->exec);
	atomic_store(&s->done, 1);
	return NULL;
}

static bool exec_stopped(void *arg)
{
	struct exec_stopper *s = arg;
	return atomic_load(&s->done) != 0;
}

/* ---- lending (tw_agent_opts.no_lend) ------------------------------------------ */

static void lend_put(void *ctx)
{
	struct agent_lend *d = ctx;
	if (atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel) == 1)
		free(d);
}

static bool lend_done(void *arg)
{
	return tw_future_done(arg);
}

/* How lend_run runs a lent loop on the calling thread. */
enum lend_how {
	LEND_WAIT,  /* until done, as tw_loop_borrow_until */
	LEND_SERVE, /* until done, yielding it to waiters: tw_loop_serve_until */
	LEND_BATCH, /* one iteration if a batch of our posts waits there */
};

/* Runs the lent loop of d on this thread, as how says; done(arg) after. */
static bool lend_run(struct agent_lend *d, enum lend_how how,
		     bool (*done)(void *arg), void *arg, uint64_t deadline_ns)
{
	/* A loop's own thread, or a waiter already polling one: no nesting
	 * (a handler waits on no future; one that tries is refused). */
	if (agent_tls_loop != NULL)
		return false;
	bool r = false;
	/* seq_cst, with the closer's store of closed then load of users:
	 * either it sees us inside, or we see it closed. */
	atomic_fetch_add_explicit(&d->users, 1, memory_order_seq_cst);
	if (!atomic_load_explicit(&d->closed, memory_order_seq_cst)) {
		/* Handlers that run meanwhile are on this loop, as on its
		 * thread (they post to it directly, and may not block). */
		agent_tls_loop = d->l;
		tw_loop *lp = d->l->loop;
		switch (how) {
		case LEND_WAIT:
			r = tw_loop_borrow_until(lp, done, arg, deadline_ns);
			break;
		case LEND_SERVE:
			r = tw_loop_serve_until(lp, done, arg, deadline_ns);
			break;
		case LEND_BATCH:
			if (tw_loop_batch_waiting(lp))
				tw_loop_borrow_once(lp);
			break;
		}
		agent_tls_loop = NULL;
	}
	atomic_fetch_sub_explicit(&d->users, 1, memory_order_release);
	return r;
}

static bool lend_drive(tw_future *f, void *ctx, uint64_t deadline_ns)
{
	return lend_run(ctx, LEND_WAIT, lend_done, f, deadline_ns);
}

/* A caller pipelining calls whose waits find their answers already there
 * would leave the calls it posts since to the loop's thread, woken for
 * them once they are a batch: it sends them itself (the loop's thread
 * sleeps on, and the caller's thread does all the loop's work, as it does
 * in its waits). */
static void lend_done_wait(void *ctx)
{
	(void)lend_run(ctx, LEND_BATCH, NULL, NULL, 0);
}

static void lend_get(void *ctx)
{
	struct agent_lend *d = ctx;
	atomic_fetch_add_explicit(&d->refs, 1, memory_order_relaxed);
}

static const struct future_driver lend_driver = {
	.drive = lend_drive,
	.done_wait = lend_done_wait,
	.retain = lend_get,
	.release = lend_put,
};

void agent_lend_future(struct agent_loop *l, tw_future *f)
{
	struct agent_lend *d = l->lend;
	if (d == NULL)
		return;
	lend_get(d);
	future_set_driver(f, &lend_driver, d);
}

/* ---- lenders (agent.h) ---- */

struct tw_lender {
	struct agent_lend d;
};

tw_lender *tw_agent_lender(tw_agent *a)
{
	if (a == NULL || a->o.embedded || a->loops == NULL ||
	    a->loops[0].lend == NULL)
		return NULL;
	struct agent_lend *d = a->loops[0].lend;
	lend_get(d);
	return (tw_lender *)d;
}

bool tw_lender_serve_until(tw_lender *h, bool (*done)(void *arg), void *arg,
			   uint64_t deadline_ns)
{
	if (done(arg))
		return true;
	return h != NULL && lend_run(&h->d, LEND_SERVE, done, arg, deadline_ns);
}

void tw_lender_flush(tw_lender *h)
{
	if (h != NULL)
		(void)lend_run(&h->d, LEND_BATCH, NULL, NULL, 0);
}

void tw_lender_release(tw_lender *h)
{
	if (h != NULL)
		lend_put(&h->d);
}

static tw_status lend_open(struct agent_loop *l)
{
	struct agent_lend *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return tw_fail(TW_ENOMEM, "out of memory for run loop %u",
			       l->idx);
	atomic_init(&d->refs, 1);
	d->l = l;
	l->lend = d;
	return TW_OK;
}

/* No waiter polls l from now on: those inside leave after their current
 * iteration (tw_loop_reclaim), whether their futures are done or not. */
static void lend_close(struct agent_loop *l)
{
	struct agent_lend *d = l->lend;
	if (d == NULL)
		return;
	atomic_store_explicit(&d->closed, true, memory_order_seq_cst);
	tw_loop_reclaim(l->loop);
	while (atomic_load_explicit(&d->users, memory_order_seq_cst) != 0)
		sched_yield();
	l->lend = NULL;
	lend_put(d);
}

/* The embedded owner's loop, when it can still be polled, else NULL. */
static struct agent_loop *owner_loop(tw_agent *a)
{
	if (!a->o.embedded || a->loops == NULL || !a->loops[0].ready ||
	    agent_tls_loop != &a->loops[0])
		return NULL;
	return &a->loops[0];
}

/* Stop the executor. Its threads finish every queued job first, and a
 * blocking handler may be waiting for an answer (a nested call) that only
 * our loop delivers: embedded, the owner polls meanwhile, so a helper
 * thread does the waiting. */
static void stop_executor(tw_agent *a)
{
	struct agent_loop *l = owner_loop(a);
	struct exec_stopper s = {.exec = a->exec};
	pthread_t th;
	if (l == NULL || a->exec == NULL ||
	    pthread_create(&th, NULL, exec_stopper_main, &s) != 0) {
		executor_stop(a->exec);
		return;
	}
	(void)tw_loop_poll_until(l->loop, exec_stopped, &s, UINT64_MAX,
				 1000000);
	pthread_join(th, NULL);
}

static void agent_free(tw_agent *a)
{
	/* First: their threads read everything below. */
	stat_server_stop(a->stat_srv);
	a->stat_srv = NULL;
	stats_telemetry_remove(a);
	/* The loops are their threads' alone from here: the teardown below
	 * runs on them, and a transport's destroy enters the ring, which a
	 * waiter running the loop must not (lend_close, tw_loop_reclaim). A
	 * waiter still waiting then waits as on an unlent loop. */
	for (uint32_t i = 0; a->loops != NULL && i < a->nloops; i++)
		lend_close(&a->loops[i]);
	/* No more blocking handlers: the queued ones run to their end first
	 * (executor_stop), a late one is dropped and answered. */
	stop_executor(a);
	if (a->hub != NULL) {
		struct agent_loop *own = owner_loop(a);
		atomic_store(&a->hub->dead, 1);
		/* A callback may wait for room in our loop's ring. */
		while (atomic_load(&a->hub->active) != 0) {
			if (own != NULL)
				(void)tw_loop_poll_once(own->loop);
			else
				sched_yield();
		}
	}
	/* Fail what is pending with TW_ESHUTDOWN before anyone can notice we
	 * are leaving (peers close their connections once the control
	 * connection goes, and those calls would read as unreachable). */
	for (uint32_t i = 0; a->loops != NULL && i < a->nloops; i++)
		if (a->loops[i].ready)
			run_on_loop(&a->loops[i], loop_teardown_begin, NULL);
	/* Every call has failed, so every owned RRef's function is done:
	 * free the values now, while the transports whose receive buffers
	 * they may hold are still there. */
	rref_ctx_fini(a);
	rdv_client_close(a->rdv);
	a->rdv = NULL;
	rdv_server_stop(a->rdv_srv);
	a->rdv_srv = NULL;
	for (uint32_t i = 0; a->loops != NULL && i < a->nloops; i++) {
		struct agent_loop *l = &a->loops[i];
		if (!l->ready)
			continue;
		uint64_t until = now_ms() + TEARDOWN_WAIT_MS;
		int done = 0;
		while (run_on_loop(l, loop_teardown_check, &done) == TW_OK &&
		       !done && now_ms() < until) {
			if (a->o.embedded)
				(void)tw_loop_poll_wait(l->loop, 1000000);
			else
				sleep_us(1000);
		}
		run_on_loop(l, loop_teardown_final, NULL);
	}
	for (uint32_t i = 0; a->loops != NULL && i < a->nloops; i++) {
		struct agent_loop *l = &a->loops[i];
		if (l->started)
			tw_loop_stop(l->loop);
		if (l->loop != NULL)
			tw_loop_destroy(l->loop);
		free(l->out);
		free(l->peers);
		free(l->redial);
		free(l->local_failed);
		free(l->dead_done);
		stats_loop_fini(&l->obs);
		pend_fini(&l->pend);
	}
	/* An embedded owner whose init failed before teardown_final ran. */
	if (agent_tls_loop != NULL && agent_tls_loop->a == a)
		agent_tls_loop = NULL;
	executor_destroy(a->exec);
	if (a->call_cache != NULL) {
		call_cache_drain(a);
		tw_ring_free(a->call_cache);
	}
	if (a->reply_cache != NULL) {
		reply_cache_drain(a);
		tw_ring_free(a->reply_cache);
	}
	/* A buffer still out (a send the transport never completed) keeps the
	 * pool: leaking it beats freeing memory the kernel may still read. */
	if (a->txpool != NULL)
		tw_buf_pool_destroy(a->txpool);
	/* After every transport (the provider may hold what they shared). */
	if (a->tenv != NULL)
		a->tp->stop(a->tenv);
	a->tenv = NULL;
	if (a->tenvl != NULL)
		a->tpl->stop(a->tenvl);
	a->tenvl = NULL;
	if (a->reg_ok)
		registry_fini(&a->reg);
	rdv_members_free(a->members, a->world);
	free(a->workers);
	free(a->name_idx);
	free(a->loops);
	if (a->fns_ok)
		stats_fns_fini(&a->fns);
	free((void *)a->serve_active);
	free((void *)a->dead);
	free(a->watch_gone);
	free(a->hooks);
	hub_release(a->hub);
	free(a->rendezvous);
	auth_key_free(&a->key);
	rref_ctx_fini(a); /* init failed before the loops: not done above */
	ag_fini(a);
	pauth_fini(a);
	free(a);
}

static tw_status check_opts(const struct tw_agent_opts *o)
{
	if (o->name == NULL || o->name[0] == '\0' ||
	    strlen(o->name) >= TW_WORKER_NAME_MAX)
		return tw_fail(TW_EINVAL, "worker name must be 1..%d bytes",
			       TW_WORKER_NAME_MAX - 1);
	if (!rdv_name_valid(o->name, strlen(o->name)))
		return tw_fail(TW_EINVAL,
			       "worker name '%s' is not allowed: use letters, "
			       "digits, '-', '_' and ':' only (torch's rule, "
			       "e.g. 'trainer:0' or 'ps_1')",
			       o->name);
	if (o->control_timeout_ms < 1000)
		return tw_fail(TW_EINVAL,
			       "control_timeout_ms %u: at least 1000",
			       o->control_timeout_ms);
	if (o->log_level < -1 || o->log_level > TW_LOG_DEBUG)
		return tw_fail(TW_EINVAL,
			       "log_level %d: -1 (leave it) or 0 (off) .. 4 "
			       "(debug)",
			       o->log_level);
	if (o->stats_functions > TW_STATS_MAX_TRACKED ||
	    o->stats_peers > TW_STATS_MAX_TRACKED)
		return tw_fail(TW_EINVAL,
			       "stats_functions %u, stats_peers %u: at most %u "
			       "each",
			       o->stats_functions, o->stats_peers,
			       TW_STATS_MAX_TRACKED);
	if (o->world_size == 0 || o->rank >= o->world_size)
		return tw_fail(TW_EINVAL,
			       "rank %u is out of range for world size %u",
			       o->rank, o->world_size);
	if (o->rendezvous == NULL)
		return tw_fail(TW_EINVAL, "no rendezvous address");
	if (o->num_loops == 0 || o->num_loops > RDV_MAX_LOOPS)
		return tw_fail(TW_EINVAL, "num_loops must be 1..%u",
			       RDV_MAX_LOOPS);
	if (o->embedded && o->num_loops != 1)
		return tw_fail(TW_EINVAL,
			       "embedded mode drives exactly one loop: "
			       "num_loops must be 1");
	if (o->embedded && agent_tls_loop != NULL)
		/* Its thread-local would name two loops. */
		return tw_fail(TW_EINVAL, "this thread already runs a loop of "
					  "another agent");
	if (o->executor_threads == 0 || o->executor_threads > 1024)
		return tw_fail(TW_EINVAL, "executor_threads must be 1..1024");
	if (o->default_timeout_ms < 0)
		return tw_fail(TW_EINVAL,
			       "default_timeout_ms must not be negative "
			       "(0 = no timeout)");
	if (o->max_unauth == 0 || o->max_unauth_per_host == 0 ||
	    o->auth_timeout_ms <= 0)
		return tw_fail(TW_EINVAL,
			       "max_unauth (%u), max_unauth_per_host (%u) and "
			       "auth_timeout_ms (%lld) must be positive",
			       o->max_unauth, o->max_unauth_per_host,
			       (long long)o->auth_timeout_ms);
	if (o->executor_nice < 0 || o->executor_nice > 19)
		return tw_fail(TW_EINVAL,
			       "executor_nice must be 0 .. 19, got %d",
			       o->executor_nice);
	if (o->max_frame < (UINT64_C(64) << 10) ||
	    o->max_frame > TW_FRAME_MAX_TOTAL)
		return tw_fail(
			TW_EINVAL,
			"max_frame must be 64 KiB .. 2^40 bytes, got %llu",
			(unsigned long long)o->max_frame);
	if (o->shutdown_timeout_ms < 0)
		return tw_fail(TW_EINVAL,
			       "shutdown_timeout_ms must not be negative "
			       "(0 = no deadline)");
	return TW_OK;
}

/* The transport o asks for: by name, else the one its options are for,
 * else io_uring; its options checked. */
static tw_status pick_transport(const struct tw_agent_opts *o,
				const struct tw_transport_provider **out)
{
	const struct tw_transport_opts_head *h = o->transport_opts;
	const char *name = o->transport;
	if (name == NULL && h != NULL && h->opts_size >= sizeof(*h))
		name = h->transport;
	if (name == NULL)
		name = "uring";
	const struct tw_transport_provider *p =
		tw_transport_provider_find(name);
	if (p == NULL)
		return tw_fail(TW_EINVAL,
			       "unknown transport '%.32s' (this build "
			       "offers \"uring\" and \"dpdk\")",
			       name);
	*out = p;
	return p->check(o->transport_opts, o->num_loops);
}

static uint32_t name_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

static tw_status build_membership(tw_agent *a)
{
	a->workers = calloc(a->world, sizeof(*a->workers));
	uint32_t cap = 8;
	while (cap < a->world * 2)
		cap *= 2;
	a->name_idx = calloc(cap, sizeof(*a->name_idx));
	if (a->workers == NULL || a->name_idx == NULL)
		return TW_ENOMEM;
	a->name_mask = cap - 1;
	for (uint32_t r = 0; r < a->world; r++) {
		tw_worker_info *w = &a->workers[r];
		w->id = r;
		snprintf(w->name, sizeof(w->name), "%s", a->members[r].name);
		snprintf(w->addr, sizeof(w->addr), "%s",
			 a->members[r].addrs[0]);
		uint32_t i = name_hash(w->name) & a->name_mask;
		while (a->name_idx[i] != 0)
			i = (i + 1) & a->name_mask;
		a->name_idx[i] = r + 1;
	}
	return TW_OK;
}

static tw_status start_loops(tw_agent *a)
{
	for (uint32_t i = 0; i < a->nloops; i++) {
		struct agent_loop *l = &a->loops[i];
		l->a = a;
		l->idx = i;
		TAILQ_INIT(&l->conns);
		STAILQ_INIT(&l->retry);
		l->fault.fail_type = a->o.fault_fail_type;
		l->fault.fail_count = a->o.fault_fail_count;
		l->fault.drop_type = a->o.fault_drop_type;
		l->fault.delay_type = a->o.fault_delay_type;
		l->fault.delay_ns = a->o.fault_delay_ms * 1000000u;
		l->out = calloc(a->world, sizeof(*l->out));
		l->peers = calloc(a->world, sizeof(*l->peers));
		l->redial = calloc(a->world, sizeof(*l->redial));
		l->local_failed = calloc(a->world, 1);
		l->dead_done = calloc(a->world, 1);
		for (uint32_t w = 0; l->peers != NULL && w < a->world; w++)
			STAILQ_INIT(&l->peers[w].wait);
		if (l->out == NULL || l->peers == NULL || l->redial == NULL ||
		    l->local_failed == NULL || l->dead_done == NULL ||
		    stats_loop_init(&l->obs, a->fns.max,
				    a->world < a->o.stats_peers
					    ? a->world
					    : a->o.stats_peers) != TW_OK ||
		    pend_init(&l->pend, 1024) != 0)
			return tw_fail(TW_ENOMEM,
				       "out of memory for run loop "
				       "%u's tables",
				       i);
		struct tw_loop_opts lo;
		tw_loop_opts_init(&lo, sizeof(lo));
		char name[32];
		snprintf(name, sizeof(name), "tw%u-loop%u", a->rank, i);
		lo.name = name;
		lo.cpu = a->o.first_cpu >= 0 ? a->o.first_cpu + (int)i : -1;
		lo.ring_size = AGENT_LOOP_RING;
		lo.spin_ns = a->o.spin_ns;
		lo.yield = a->o.yield;
		if (a->hooks != NULL) {
			lo.clock = a->hooks->clock;
			lo.clock_ctx = a->hooks->clock_ctx;
		}
		/* The loop says nothing of its own failures: say which. */
		tw_status st = tw_loop_create(&lo, &l->loop);
		if (st != TW_OK)
			return tw_fail(st, "cannot create run loop %u: %s", i,
				       tw_strerror(st));
		/* Embedded: no thread; our first poll (in run_on_loop) binds
		 * the loop's ring to the calling thread, which owns it. */
		if (!a->o.embedded) {
			st = tw_loop_start(l->loop);
			if (st != TW_OK)
				return tw_fail(st,
					       "cannot start run loop %u's "
					       "thread: %s",
					       i, tw_strerror(st));
			l->started = true;
			if (!a->o.no_lend && a->tp->lendable &&
			    (a->tpl == NULL || a->tpl->lendable) &&
			    (st = lend_open(l)) != TW_OK)
				return st;
		}
		/* The transport's create and listen say why they fail. */
		st = run_on_loop(l, loop_init_fn, NULL);
		if (st != TW_OK)
			return tw_fail(st, "run loop %u: %s", i,
				       l->init_why[0] != '\0'
					       ? l->init_why
					       : tw_strerror(st));
	}
	return TW_OK;
}

/* Admission (transport.h, ops->admit): every member's every address. */
static void loop_admit_fn(struct sync_msg *s)
{
	tw_agent *a = s->l->a;
	uint32_t n = 0, k = 0;
	for (uint32_t r = 0; r < a->world; r++)
		n += a->members[r].nloops;
	const char **v = calloc(n ? n : 1, sizeof(*v));
	if (v == NULL) {
		s->st = TW_ENOMEM;
		return;
	}
	for (uint32_t r = 0; r < a->world; r++)
		for (uint32_t i = 0; i < a->members[r].nloops; i++)
			v[k++] = a->members[r].addrs[i];
	s->st = tw_transport_admit(s->l->t, v, n);
	free(v);
	/* Connections a peer opened and proved while this worker was still
	 * joining: only now is it known where their peers run. */
	struct conn_state *cs;
	TAILQ_FOREACH(cs, &s->l->conns, link)
	conn_mark_local(s->l, cs);
	/* From now on a member that dies is told (rank 0's notices). Here,
	 * not in a later run_on_loop: once admitted, a peer's call may run a
	 * handler that waits on this loop for init to end (call.c). */
	if (s->st == TW_OK && s->l->idx == 0 && a->rdv != NULL)
		watch_start_fn(s);
}

/* The same-host transport's provider (tw_agent_opts.same_host), started
 * beside the main one. Options it refuses fail the init; a build or host
 * without it only leaves it off, saying why. */
static tw_status same_host_start(tw_agent *a, const struct tw_agent_opts *o,
				 const struct tw_transport_group *g)
{
	if (!o->same_host)
		return TW_OK;
	const struct tw_transport_provider *p =
		tw_transport_provider_find("shm");
	if (p == NULL || p == a->tp) {
		if (p == NULL)
			TW_LOG(TW_LOG_WARN, "same_host_off",
			       "worker=%s reason=\"no same-host transport in "
			       "this build\"",
			       a->name);
		return TW_OK;
	}
	/* Options the caller gave and the provider refuses fail the init;
	 * with none given, what this host lacks (the default directory) is
	 * found by start below and only leaves it off. */
	tw_status st = o->same_host_opts != NULL
			       ? p->check(o->same_host_opts, a->nloops)
			       : TW_OK;
	if (st != TW_OK)
		return tw_fail_wrap(st, st, "same_host_opts");
	struct tw_transport_group lg = *g;
	lg.admit_only = false; /* it has no admission: the handshake decides */
	st = p->start(o->same_host_opts, &lg, &a->tenvl);
	if (st != TW_OK) {
		a->tenvl = NULL;
		char q[256];
		TW_LOG(TW_LOG_WARN, "same_host_off", "worker=%s reason=%s",
		       a->name, tw_log_q(q, sizeof(q), tw_errmsg(st)));
		return TW_OK;
	}
	a->tpl = p;
	return TW_OK;
}

static tw_status given_members(tw_agent *a);
static void hooked_drain(tw_agent *a, struct agent_loop *own);

tw_status agent_init_hooked(const struct tw_agent_opts *opts,
			    const struct agent_hooks *hooks, tw_agent **out)
{
	if (out != NULL)
		*out = NULL;
	if (opts == NULL || out == NULL || opts->opts_size == 0)
		return tw_fail(TW_EINVAL,
			       "tw_agent_init needs options "
			       "(tw_agent_opts_init) and an out pointer");
	struct tw_agent_opts o;
	tw_agent_opts_init(&o, sizeof(o));
	tw_opts_copy(&o, sizeof(o), opts);
	if (hooks != NULL && o.rendezvous == NULL)
		o.rendezvous = "given://"; /* the members are given: none met */
	tw_status st = check_opts(&o);
	if (st != TW_OK)
		return st;
	if (o.log_level >= 0)
		tw_log_set_level((enum tw_log_level)o.log_level);
	if (o.exec_per_peer_max == TW_EXEC_PER_PEER_AUTO)
		o.exec_per_peer_max = 2 * o.executor_threads;
	const struct tw_transport_provider *tp = NULL;
	st = pick_transport(&o, &tp);
	if (st != TW_OK)
		return st;

	tw_agent *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return tw_fail(TW_ENOMEM, "no memory for the agent");
	a->o = o;
	serve_setup(a);
	/* Ours to keep: the caller's strings are not. */
	a->o.secret = a->o.secret_file = NULL;
	st = auth_key_load(o.secret, o.secret_file, &a->key);
	if (st != TW_OK) {
		free(a);
		return st; /* it said why */
	}
	st = pauth_init(a);
	if (st == TW_OK && (st = rref_ctx_init(a)) != TW_OK)
		pauth_fini(a);
	if (st == TW_OK && (st = ag_init(a)) != TW_OK) {
		rref_ctx_fini(a);
		pauth_fini(a);
	}
	if (st != TW_OK) {
		auth_key_free(&a->key);
		free(a);
		return st;
	}
	snprintf(a->name, sizeof(a->name), "%s", o.name);
	a->o.name = a->name;
	a->rendezvous = strdup(o.rendezvous);
	a->o.rendezvous = a->rendezvous;
	a->tp = tp;
	a->o.transport = tp->name;
	/* The caller's; read by the provider's start only. */
	a->o.transport_opts = NULL;
	a->rank = o.rank;
	a->world = o.world_size;
	a->nloops = o.num_loops;
	atomic_init(&a->default_timeout_ms, o.default_timeout_ms);
	a->gen = atomic_fetch_add(&agent_gen_next, 1);
	atomic_init(&a->next_req, 1);
	atomic_init(&a->state, AGENT_STARTING);
	a->hub = calloc(1, sizeof(*a->hub));
	/* Cache-line aligned: each loop's counters are its own lines. */
	size_t lsz = ((size_t)a->nloops * sizeof(*a->loops) + 63) & ~(size_t)63;
	a->loops = aligned_alloc(64, lsz);
	if (a->loops != NULL)
		memset(a->loops, 0, lsz);
	a->serve_active = calloc(a->world, sizeof(*a->serve_active));
	a->dead = calloc(a->world, sizeof(*a->dead));
	a->watch_gone = calloc((a->world + 7) / 8, 1);
	if (a->rendezvous == NULL || a->hub == NULL || a->loops == NULL ||
	    a->serve_active == NULL || a->dead == NULL ||
	    a->watch_gone == NULL) {
		st = tw_fail(TW_ENOMEM, "no memory for the agent");
		goto fail;
	}
	atomic_init(&a->hub->refs, 1);
	a->hub->a = a;
	if (hooks != NULL) {
		a->hooks = malloc(sizeof(*a->hooks));
		if (a->hooks == NULL) {
			st = tw_fail(TW_ENOMEM, "no memory for the agent");
			goto fail;
		}
		*a->hooks = *hooks;
	}

	st = stats_fns_init(&a->fns, o.stats_functions);
	if (st != TW_OK)
		goto fail; /* it said why */
	a->fns_ok = true;
	st = registry_init(&a->reg);
	if (st != TW_OK)
		goto fail; /* it said why */
	a->reg_ok = true;
	st = reg_register_builtins(&a->reg); /* aten::*, tw::list_functions */
	if (st == TW_OK)
		st = rref_register(a); /* tw::rref_call */
	if (st != TW_OK) {
		tw_fail_wrap(st, st, "cannot register the builtin functions");
		goto fail;
	}
	struct tw_buf_pool_opts po;
	tw_buf_pool_opts_init(&po, sizeof(po));
	po.buf_size = TX_POOL_BUF;
	po.count = TX_POOL_COUNT;
	po.name = "tw-tx";
	st = tw_buf_pool_create(&po, &a->txpool);
	if (st != TW_OK) {
		tw_fail_wrap(st, st,
			     "cannot create the send buffer pool "
			     "(%u buffers of %u bytes)",
			     TX_POOL_COUNT, TX_POOL_BUF);
		goto fail;
	}
	st = tw_ring_create(RECORD_CACHE, TW_RING_F_MPMC, &a->call_cache);
	if (st == TW_OK)
		st = tw_ring_create(RECORD_CACHE, TW_RING_F_MPMC,
				    &a->reply_cache);
	if (st != TW_OK)
		goto fail_plain;
	char en[32];
	snprintf(en, sizeof(en), "tw%u-exec", a->rank);
	st = executor_create(o.executor_threads, EXEC_QUEUE, en, &a->exec);
	if (st == TW_OK && o.executor_nice != 0)
		st = executor_set_nice(a->exec, o.executor_nice);
	if (st != TW_OK)
		goto fail; /* it said why */

	if (a->rank == 0 && a->hooks == NULL) {
		st = pauth_check_listen(a, a->rendezvous, "the rendezvous");
		if (st != TW_OK)
			goto fail; /* it said why */
		/* Up first, so the others stop retrying as soon as possible. */
		struct rdv_limits lim = {.vanish_ms = o.control_timeout_ms};
		st = rdv_server_start(a->rendezvous, a->world,
				      o.init_timeout_ms, &a->key, &lim,
				      &a->rdv_srv);
		if (st != TW_OK)
			goto fail; /* it said why */
	}
	struct tw_transport_group g = {.nloops = a->nloops,
				       .rank = a->rank,
				       .world_size = a->world,
				       .secret = a->key.secret,
				       .secret_len = a->key.len,
				       .admit_only = true};
	st = tp->start(o.transport_opts, &g, &a->tenv);
	if (st != TW_OK) {
		a->tenv = NULL;
		goto fail; /* the provider said why */
	}
	st = same_host_start(a, &o, &g);
	if (st != TW_OK)
		goto fail; /* it said why */
	/* Without a secret anyone who reaches a port is a member: checked
	 * here, on this thread, so the reason reaches the caller. */
	for (uint32_t i = 0; i < a->nloops; i++) {
		char url[TW_ADDR_MAX + 16];
		st = tp->listen_addr(a->tenv, i, url, sizeof(url));
		if (st == TW_OK)
			st = pauth_check_listen(a, url, "the data port");
		if (st != TW_OK)
			goto fail; /* it said why */
	}
	st = start_loops(a);
	if (st != TW_OK) {
		tw_fail_wrap(st, st, "cannot start run loops");
		goto fail;
	}
	if (o.setup != NULL) {
		st = o.setup(a, o.setup_arg);
		if (st != TW_OK) {
			tw_fail_wrap(st, st, "setup callback failed");
			goto fail;
		}
	}
	/* Before the rendezvous: a path that cannot be served fails this
	 * worker alone, not a group already formed. */
	const char *sock = o.stat_socket != NULL ? o.stat_socket
						 : getenv("TW_STAT_SOCKET");
	if (sock != NULL && sock[0] != '\0') {
		st = stat_server_start(a, sock, &a->stat_srv);
		if (st != TW_OK)
			goto fail; /* it said why */
	}
	a->o.stat_socket = NULL; /* the caller's string */
	/* With DPDK, DPDK's telemetry shows the same figures. */
	if (strcmp(a->o.transport, TW_TRANSPORT_DPDK) == 0)
		stats_telemetry_add(a);

	if (a->hooks != NULL) {
		/* The members are given: no rendezvous. */
		st = given_members(a);
		if (st != TW_OK)
			goto fail_plain;
		goto joined;
	}
	struct rdv_member self = {.rank = a->rank, .nloops = a->nloops};
	snprintf(self.name, sizeof(self.name), "%s", a->name);
	rdv_host_id_for(&a->key, self.host);
	self.host_known = true;
	/* Same-host addresses when every loop serves one. */
	self.local_addrs = a->tpl != NULL;
	for (uint32_t i = 0; i < a->nloops; i++)
		self.local_addrs &= a->loops[i].laddr[0] != '\0';
	self.addrs = calloc((size_t)a->nloops * (self.local_addrs ? 2 : 1),
			    sizeof(*self.addrs));
	if (self.addrs == NULL) {
		st = TW_ENOMEM;
		goto fail_plain;
	}
	for (uint32_t i = 0; i < a->nloops; i++) {
		snprintf(self.addrs[i], TW_ADDR_MAX, "%s", a->loops[i].addr);
		if (self.local_addrs)
			snprintf(self.addrs[a->nloops + i], TW_ADDR_MAX, "%s",
				 a->loops[i].laddr);
	}
	atomic_store(&a->joining, 1);
	st = rdv_join(a->rendezvous, &a->key, &self, a->world,
		      o.init_timeout_ms, &a->rdv, &a->members);
	free(self.addrs);
	if (st != TW_OK)
		goto fail; /* it said why */
	rdv_client_set_vanish(a->rdv, o.control_timeout_ms);
joined:
	st = build_membership(a);
	if (st == TW_OK)
		atomic_store(&a->members_known, 1);
	for (uint32_t i = 0; st == TW_OK && i < a->nloops; i++)
		st = run_on_loop(&a->loops[i], loop_admit_fn, NULL);
	if (st != TW_OK)
		goto fail_plain;
	/* Release: loops read members after seeing a call posted later. */
	atomic_store(&a->state, AGENT_RUNNING);
	rref_agent_running(a); /* control messages held while joining */
	*out = a;
	return TW_OK;
fail_plain:
	/* A failure with nothing to say beyond its status. */
	tw_fail(st, "tw_agent_init: %s", tw_strerror(st));
fail:
	atomic_store(&a->state, AGENT_STOPPING);
	while (atomic_load(&a->api_inflight) != 0)
		sched_yield();
	/* Teardown must not replace the reason. */
	{
		char why[TW_ERRMSG_MAX];
		snprintf(why, sizeof(why), "%s", tw_errmsg(st));
		agent_free(a);
		tw_fail(st, "%s", why);
	}
	return st;
}

tw_status tw_agent_init(const struct tw_agent_opts *opts, tw_agent **out)
{
	return agent_init_hooked(opts, NULL, out);
}

static bool no_outstanding(void *arg)
{
	tw_agent *a = arg;
	return atomic_load(&a->outstanding) == 0;
}

/* Embedded: serve while the barrier waits, a millisecond at a time. */
static void barrier_idle(void *arg)
{
	struct agent_loop *l = arg;
	(void)tw_loop_poll_wait(l->loop, 1000000);
}

/* This worker's part of the barrier's count (agent.h, tw_agent_shutdown):
 * calls ever started (request ids) or accepted (the loops' calls_served)
 * first, then the active ones, so that a call starting in between shows in
 * one of the two. */
static struct rdv_count agent_count(tw_agent *a)
{
	struct rdv_count c;
	c.events = atomic_load(&a->next_req);
	for (uint32_t i = 0; i < a->nloops; i++)
		c.events += atomic_load(&a->loops[i].stats.calls_served);
	c.active = atomic_load(&a->outstanding);
	for (uint32_t r = 0; r < a->world; r++)
		if (!rdv_member_gone(a->rdv, r))
			c.active += atomic_load(&a->serve_active[r]);
	return c;
}

/* Wait for this worker's own calls until deadline (tw_now_ns clock,
 * UINT64_MAX = none), serving meanwhile when embedded. */
static bool wait_own_calls(tw_agent *a, struct agent_loop *own,
			   uint64_t deadline)
{
	if (own != NULL) {
		uint64_t now = tw_now_ns();
		uint64_t ns = deadline == UINT64_MAX ? UINT64_MAX
			      : deadline > now       ? deadline - now
						     : 0;
		return tw_loop_poll_until(own->loop, no_outstanding, a, ns,
					  1000000);
	}
	while (atomic_load(&a->outstanding) != 0) {
		if (tw_now_ns() >= deadline)
			return false;
		sleep_us(1000);
	}
	return true;
}

/* Between rounds while calls are still active somewhere: a pause growing
 * from 1 to 32 ms, serving meanwhile when embedded. */
static void round_pause(struct agent_loop *own, uint32_t round)
{
	uint64_t ms = round < 6 ? UINT64_C(1) << (round - 1) : 32;
	if (own == NULL) {
		sleep_us((unsigned)(ms * 1000));
		return;
	}
	uint64_t until = tw_now_ns() + ms * 1000000u;
	while (tw_now_ns() < until)
		(void)tw_loop_poll_wait(own->loop, until - tw_now_ns());
}

/*
 * Graceful shutdown's rounds, as torch's TensorPipeAgent::join: our own
 * calls, then a barrier through rank 0 summing every worker's count of
 * active calls, until the group-wide count is 0. A count of 0 alone could
 * be a snapshot taken while a chain of calls moved between workers that
 * reported at different times; it ends the rounds only when the round
 * before also counted 0 and no call was started or accepted anywhere in
 * between (the sums of calls ever started and accepted are equal).
 */
/* The barrier's rounds until no worker has calls in flight. After the
 * first round every worker has entered its shutdown, so no application
 * call is still being made: then, as torch after its barrier
 * (_delete_all_user_and_unforked_owner_rrefs), the user RRefs this worker
 * still holds are deleted (rref_shutdown: *leaks of them reported in
 * leak), and the later rounds wait for those deletes like any call. */
static tw_status graceful_rounds(tw_agent *a, struct agent_loop *own,
				 int64_t timeout_ms, uint64_t *leaks,
				 char *leak, size_t cap)
{
	uint64_t deadline =
		timeout_ms > 0 ? tw_now_ns() + (uint64_t)timeout_ms * 1000000u
			       : UINT64_MAX;
	struct rdv_count prev = {UINT64_MAX, UINT64_MAX};
	for (uint32_t round = 1;; round++) {
		if (!wait_own_calls(a, own, deadline))
			return tw_fail(TW_ETIMEDOUT,
				       "%" PRIu64 " calls of this worker were "
				       "still pending",
				       atomic_load(&a->outstanding));
		struct rdv_count total;
		tw_status st = rdv_barrier_round(a->rdv, agent_count(a),
						 deadline,
						 own ? barrier_idle : NULL, own,
						 &total);
		if (st != TW_OK)
			return st; /* it said why */
		if (round == 1) {
			*leaks = rref_shutdown(a, leak, cap);
			prev = (struct rdv_count){UINT64_MAX, UINT64_MAX};
			continue; /* at least one round for the deletes */
		}
		if (total.active == 0 && prev.active == 0 &&
		    total.events == prev.events)
			return TW_OK;
		prev = total;
		if (total.active != 0)
			round_pause(own, round);
	}
}

tw_status tw_agent_shutdown(tw_agent *a, bool graceful)
{
	return tw_agent_shutdown_timeout(a, graceful, -1);
}

tw_status tw_agent_shutdown_timeout(tw_agent *a, bool graceful,
				    int64_t timeout_ms)
{
	if (a == NULL)
		return tw_fail_static(TW_EINVAL, "tw_agent_shutdown: agent is "
						 "NULL");
	struct agent_loop *own = NULL;
	if (a->o.embedded) {
		/* Only the owner can drive the loop through the shutdown. */
		own = &a->loops[0];
		if (agent_tls_loop != own)
			return tw_fail_static(TW_EINVAL,
					      "an embedded agent is "
					      "shut down by its owner thread "
					      "(the one that called "
					      "tw_agent_init) only");
		if (tw_loop_in_poll(own->loop))
			return tw_fail_static(TW_EBUSY,
					      "tw_agent_shutdown "
					      "called from a handler: it would "
					      "wait for itself");
	} else if (agent_tls_loop != NULL && agent_tls_loop->a == a) {
		/* From one of our own threads it would wait for itself. */
		return tw_fail_static(TW_EBUSY,
				      "tw_agent_shutdown called on one "
				      "of the agent's run loops (a handler): "
				      "it would wait for itself");
	}
	if (executor_on_thread(a->exec))
		return tw_fail_static(TW_EBUSY,
				      "tw_agent_shutdown called from a "
				      "blocking handler: it would wait for "
				      "itself");
	if (timeout_ms < 0)
		timeout_ms = a->o.shutdown_timeout_ms;
	tw_status st = TW_OK;
	char why[TW_ERRMSG_MAX] = "";
	char leak[512] = "";
	uint64_t leaks = 0;
	bool ignore_leaks = a->o.ignore_rref_leak;
	TW_LOG(TW_LOG_INFO, "shutdown",
	       "worker=%s step=begin graceful=%d "
	       "timeout_ms=%" PRId64,
	       a->name, graceful ? 1 : 0, timeout_ms);
	if (graceful && atomic_load(&a->state) == AGENT_RUNNING) {
		/* Calls are made and served throughout (the agent stays
		 * running); embedded, we keep polling: our calls complete on
		 * our loop, and peers still calling us must be served. */
		if (a->hooks != NULL) {
			/* A test's world: no barrier, every agent driven by
			 * the test. The RRefs go first. */
			leaks = rref_shutdown(a, leak, sizeof(leak));
			hooked_drain(a, own);
		} else {
			st = graceful_rounds(a, own, timeout_ms, &leaks, leak,
					     sizeof(leak));
		}
		if (st != TW_OK) {
			snprintf(why, sizeof(why), "%s", tw_errmsg(st));
			char q[256];
			TW_LOG(TW_LOG_WARN, "shutdown",
			       "worker=%s step=barrier status=%s reason=%s",
			       a->name, tw_status_name(st),
			       tw_log_q(q, sizeof(q), why));
		} else {
			TW_LOG(TW_LOG_INFO, "shutdown",
			       "worker=%s step=barrier status=TW_OK", a->name);
		}
	}
	atomic_store(&a->state, AGENT_STOPPING);
	while (atomic_load(&a->api_inflight) != 0)
		sched_yield();
	char name[TW_WORKER_NAME_MAX];
	snprintf(name, sizeof(name), "%s", a->name);
	agent_free(a);
	TW_LOG(TW_LOG_INFO, "shutdown", "worker=%s step=done", name);
	if (st == TW_ETIMEDOUT)
		/* After the teardown, which may record reasons of its own. */
		return tw_fail(st,
			       "graceful shutdown of worker '%s' did not "
			       "complete within %" PRId64 " ms: %s",
			       name, timeout_ms, why);
	if (st != TW_OK)
		return tw_fail(st, "graceful shutdown of worker '%s': %s", name,
			       why);
	if (leaks != 0 && !ignore_leaks)
		return tw_fail(TW_ERUNTIME,
			       "worker '%s' shut down holding %" PRIu64
			       " user RRef%s: %s%s (deleted at shutdown; "
			       "tw_agent_opts.ignore_rref_leak silences this)",
			       name, leaks, leaks > 1 ? "s" : "", leak,
			       leaks > 8 ? ", ..." : "");
	return TW_OK;
}

/* ---- embedded mode ---------------------------------------------------------------- */

int tw_agent_poll(tw_agent *a)
{
	if (a == NULL || !a->o.embedded || agent_tls_loop != &a->loops[0])
		return 0;
	return tw_loop_poll_once(a->loops[0].loop);
}

static bool future_done(void *arg)
{
	return tw_future_done(arg);
}

tw_status agent_wait_own(struct agent_loop *l, tw_future *f, int64_t timeout_ms)
{
	if (tw_future_done(f))
		return tw_future_status(f);
	/* From a handler: the loop cannot be polled from inside itself. */
	if (tw_loop_in_poll(l->loop))
		return tw_fail_static(TW_EINVAL,
				      "waiting on a run loop (in a "
				      "handler) for a future only that loop "
				      "can complete: use tw_call_defer");
	uint64_t ns = UINT64_MAX;
	if (timeout_ms >= 0)
		ns = (uint64_t)timeout_ms > UINT64_MAX / 1000000u
			     ? UINT64_MAX
			     : (uint64_t)timeout_ms * 1000000u;
	/* The sleep cap: f may be one another thread completes. */
	if (!tw_loop_poll_until(l->loop, future_done, f, ns, 1000000))
		return tw_fail(TW_ETIMEDOUT,
			       "the future was not completed "
			       "within %lld ms",
			       (long long)timeout_ms);
	return tw_future_status(f);
}

/* The embedded owner's loop, if this thread is a's owner; else NULL. */
static struct agent_loop *own_loop(tw_agent *a)
{
	if (a != NULL && a->o.embedded && agent_tls_loop == &a->loops[0])
		return &a->loops[0];
	return NULL;
}

tw_status tw_agent_wait(tw_agent *a, tw_future *f, int64_t timeout_ms)
{
	if (f == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_agent_wait: future is NULL");
	struct agent_loop *l = own_loop(a);
	if (l != NULL)
		return agent_wait_own(l, f, timeout_ms);
	return tw_future_wait(f, timeout_ms);
}

static tw_status wait_own_fn(tw_future *f, int64_t timeout_ms, void *ctx)
{
	return agent_wait_own(ctx, f, timeout_ms);
}

void agent_explain_error(const tw_agent *a, tw_status kind, const tw_error *e,
			 const char *fmt, ...)
{
	char pre[256] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	const char *msg = tw_strerror(kind);
	int len = -1;
	if (e != NULL && e->msg != NULL && e->msg_len > 0) {
		msg = e->msg;
		len = e->msg_len < TW_ERRMSG_MAX ? (int)e->msg_len
						 : TW_ERRMSG_MAX;
	}
	if (len < 0)
		len = (int)strlen(msg);
	/* Raised by another worker: torch's form of a remote exception.
	 * What this worker reports itself (a timeout, a lost peer) speaks
	 * alone, as torch raises those. */
	if (e != NULL && e->origin != a->rank && e->origin < a->world)
		tw_fail(kind, "%sOn worker '%s' (id %u): %.*s", pre,
			agent_worker_name(a, e->origin), e->origin, len, msg);
	else
		tw_fail(kind, "%s%.*s", pre, len, msg);
}

tw_status tw_agent_wait_all(tw_agent *a, tw_future *const *futs, size_t n,
			    int64_t timeout_ms)
{
	if (a == NULL)
		return tw_fail_static(TW_EINVAL, "tw_agent_wait_all: agent is "
						 "NULL");
	struct agent_loop *l = own_loop(a);
	size_t i;
	tw_status st = future_wait_all_with(
		futs, n, timeout_ms, l != NULL ? wait_own_fn : NULL, l, &i);
	if (i != SIZE_MAX)
		agent_explain_error(a, st, tw_future_error(futs[i]),
				    "future %zu (of %zu) failed: ", i, n);
	return st;
}

/* ---- worker info, registration, statistics --------------------------------------- */

tw_status agent_find_worker(const tw_agent *a, const char *name, uint32_t *id)
{
	uint32_t h = name_hash(name);
	for (uint32_t i = h & a->name_mask;; i = (i + 1) & a->name_mask) {
		uint32_t r = a->name_idx[i];
		if (r == 0)
			return TW_ENOENT;
		if (strcmp(a->workers[r - 1].name, name) == 0) {
			*id = r - 1;
			return TW_OK;
		}
	}
}

tw_status agent_no_worker(const tw_agent *a, const char *name)
{
	return tw_fail(TW_ENOENT, "no worker named '%.*s' (world size %u)",
		       TW_WORKER_NAME_MAX, name, a->world);
}

tw_status agent_no_worker_id(const tw_agent *a, uint32_t id)
{
	return tw_fail(TW_ENOENT,
		       "no worker with id %u (world size %u: ids "
		       "0 to %u)",
		       id, a->world, a->world - 1);
}

/* Membership is read once the group formed. */
static tw_status no_members(const char *fn)
{
	return tw_fail(TW_EINVAL,
		       "%s before the group formed (tw_agent_init "
		       "has not returned)",
		       fn);
}

tw_status tw_agent_worker_info(const tw_agent *a, const char *name,
			       tw_worker_info *out)
{
	if (a == NULL || name == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL, "tw_agent_worker_info: agent, "
						 "name or out is NULL");
	if (a->workers == NULL)
		return no_members("tw_agent_worker_info");
	uint32_t id;
	if (agent_find_worker(a, name, &id) != TW_OK)
		return agent_no_worker(a, name);
	*out = a->workers[id];
	return TW_OK;
}

tw_status tw_agent_worker_info_by_id(const tw_agent *a, uint32_t id,
				     tw_worker_info *out)
{
	if (a == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL, "tw_agent_worker_info_by_id: "
						 "agent or out is NULL");
	if (a->workers == NULL)
		return no_members("tw_agent_worker_info_by_id");
	if (id >= a->world)
		return agent_no_worker_id(a, id);
	*out = a->workers[id];
	return TW_OK;
}

tw_status tw_agent_worker_infos(const tw_agent *a, tw_worker_info *out,
				uint32_t cap, uint32_t *n)
{
	if (a == NULL || n == NULL || (out == NULL && cap > 0))
		return tw_fail_static(TW_EINVAL,
				      "tw_agent_worker_infos: agent "
				      "or n is NULL, or out is NULL with a "
				      "capacity");
	*n = a->world;
	if (a->workers == NULL)
		return no_members("tw_agent_worker_infos");
	if (cap < a->world)
		return tw_fail(TW_ENOSPC,
			       "room for %u worker infos, %u needed "
			       "(the world size)",
			       cap, a->world);
	memcpy(out, a->workers, a->world * sizeof(*out));
	return TW_OK;
}

int64_t tw_agent_default_timeout(const tw_agent *a)
{
	if (a == NULL)
		return -1;
	return atomic_load_explicit(&a->default_timeout_ms,
				    memory_order_relaxed);
}

tw_status tw_agent_set_default_timeout(tw_agent *a, int64_t timeout_ms)
{
	if (a == NULL)
		return tw_fail_static(TW_EINVAL,
				      "tw_agent_set_default_timeout: "
				      "agent is NULL");
	if (timeout_ms < 0)
		return tw_fail(TW_EINVAL,
			       "default timeout must not be negative "
			       "(got %lld ms; 0 = no timeout)",
			       (long long)timeout_ms);
	/* Relaxed: a call reads it once, when it starts, and a concurrent
	 * call may take either value. Calls made before keep their deadline
	 * (computed then). */
	atomic_store_explicit(&a->default_timeout_ms, timeout_ms,
			      memory_order_relaxed);
	return TW_OK;
}

void tw_agent_self(const tw_agent *a, tw_worker_info *out)
{
	if (a == NULL || out == NULL)
		return;
	if (a->workers != NULL) {
		*out = a->workers[a->rank];
		return;
	}
	memset(out, 0, sizeof(*out));
	out->id = a->rank;
	snprintf(out->name, sizeof(out->name), "%s", a->name);
	snprintf(out->addr, sizeof(out->addr), "%s", a->loops[0].addr);
}

uint32_t tw_agent_world_size(const tw_agent *a)
{
	return a == NULL ? 0 : a->world;
}

bool tw_agent_worker_alive(const tw_agent *a, uint32_t id)
{
	return a != NULL && id < a->world && !agent_peer_dead(a, id);
}

tw_status tw_agent_register(tw_agent *a, const char *name, tw_handler_fn fn,
			    void *arg, unsigned flags)
{
	if (a == NULL)
		return tw_fail_static(TW_EINVAL, "tw_agent_register: agent is "
						 "NULL");
	return registry_add(&a->reg, name, fn, arg, flags);
}

tw_status tw_agent_register_schema(tw_agent *a, const char *schema,
				   tw_schema_handler_fn fn, void *arg,
				   unsigned flags)
{
	if (a == NULL)
		return tw_fail_static(TW_EINVAL, "tw_agent_register_schema: "
						 "agent is NULL");
	return reg_add_schema(&a->reg, schema, fn, arg, flags);
}

tw_status tw_agent_list_functions(const tw_agent *a, tw_value *out)
{
	if (a == NULL || out == NULL)
		return tw_fail_static(TW_EINVAL, "tw_agent_list_functions: "
						 "agent or out is NULL");
	return reg_list_functions((struct registry *)&a->reg, out);
}

void tw_agent_get_stats(const tw_agent *a, struct tw_agent_stats *s)
{
	if (a == NULL || s == NULL)
		return;
	memset(s, 0, sizeof(*s));
	s->calls_started = atomic_load_explicit(&a->api_calls,
						memory_order_relaxed);
	for (uint32_t i = 0; i < a->nloops; i++) {
		const struct loop_stats *ls = &a->loops[i].stats;
#define ADD(f) s->f += atomic_load_explicit(&ls->f, memory_order_relaxed)
		ADD(calls_sent);
		ADD(calls_served);
		ADD(late_responses);
		ADD(bad_frames);
		ADD(timeouts);
		ADD(conns_opened);
		ADD(conns_closed);
		ADD(exec_jobs);
		ADD(exec_expired);
		ADD(auth_ok);
		ADD(auth_failed);
		ADD(auth_timeouts);
		ADD(auth_refused);
		ADD(auth_evicted);
		ADD(spoofed_frames);
		ADD(offloaded);
		ADD(rx_pauses);
		ADD(connect_failures);
		ADD(redial_waits);
		ADD(conns_same_host);
		ADD(same_host_fallbacks);
		ADD(conns_shm);
#undef ADD
		if (a->loops[i].loop != NULL) {
			struct tw_loop_stats st;
			tw_loop_get_stats(a->loops[i].loop, &st);
			s->lent_waits += st.lends;
		}
	}
	s->limit_refusals = atomic_load(&a->limit_refusals);
	s->oversize = atomic_load(&a->oversize);
}

/* ---- given members (tests' hooks: agent_init_hooked) ------------------------ */

static tw_status given_members(tw_agent *a)
{
	const struct agent_hooks *h = a->hooks;
	a->members = calloc(a->world, sizeof(*a->members));
	if (a->members == NULL)
		return TW_ENOMEM;
	for (uint32_t r = 0; r < a->world; r++) {
		struct rdv_member *m = &a->members[r];
		m->rank = r;
		m->nloops = 1;
		snprintf(m->name, sizeof(m->name), "%s", h->names[r]);
		m->addrs = calloc(1, sizeof(*m->addrs));
		if (m->addrs == NULL)
			return TW_ENOMEM;
		snprintf(m->addrs[0], TW_ADDR_MAX, "%s", h->addrs[r]);
	}
	/* Read during init only: not the caller's to keep alive. */
	a->hooks->names = NULL;
	a->hooks->addrs = NULL;
	return TW_OK;
}

/* Graceful shutdown's wait for our calls. With every agent on this
 * thread, waiting on our loop alone would starve the peers that must
 * answer: the drive hook polls them all (and may move the clock, which
 * bounds the wait through the calls' timeouts). */
static void hooked_drain(tw_agent *a, struct agent_loop *own)
{
	while (atomic_load(&a->outstanding) != 0) {
		if (a->hooks->drive != NULL)
			a->hooks->drive(a->hooks->drive_arg);
		else
			(void)tw_loop_poll_once(own->loop);
		agent_tls_loop = own;
	}
}
