/* Authenticated data connections: the handshake of rpc/auth.h on every
 * connection the agent makes or accepts (docs/wire.md 5.1), the bounds on
 * the connections still unauthenticated, the refusal of frames that claim
 * another source, and the refusal to listen on a routable address without
 * a secret. Contracts in rpc/agent_impl.h. Loop thread, except the
 * agent-wide count of unauthenticated connections (under auth_mu). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/err.h"
#include "dataplane/log.h"
#include "dataplane/netaddr.h"
#include "rpc/agent_impl.h"

/* A connection's handshake, from its first frame until it is bound. */
struct peer_auth {
	struct auth_hs hs;
	struct tw_timer timer; /* the deadline */
	uint64_t host;         /* the peer's host (inbound) */
	bool counted;          /* holds a slot in a->unauth */
	bool failed;           /* refused: waiting to close */
};

/* One frame the handshake sends: a step or the refusal. */
struct pa_tx {
	struct tx tx;
	uint64_t conn_id;
	bool close_after; /* the refusal: close once it left */
	tw_value v;       /* the payload (owned or borrowing body) */
	uint8_t body[AUTH_MSG_SIZE];
};

/* ---- the bound on unauthenticated connections (any loop) -------------- */

tw_status pauth_init(tw_agent *a)
{
	a->unauth = calloc(a->o.max_unauth, sizeof(*a->unauth));
	if (a->unauth == NULL)
		return tw_fail(TW_ENOMEM,
			       "no memory for max_unauth (%u) connection slots",
			       a->o.max_unauth);
	pthread_mutex_init(&a->auth_mu, NULL);
	return TW_OK;
}

void pauth_fini(tw_agent *a)
{
	free(a->unauth);
	a->unauth = NULL;
	pthread_mutex_destroy(&a->auth_mu);
}

/* Whether slot x makes a better victim than y (NULL): a silent one
 * before one mid-handshake, then the older (arrival, or HELLO). */
static bool better_victim(const struct unauth_slot *x,
			  const struct unauth_slot *y)
{
	if (y == NULL || x->hello != y->hello)
		return y == NULL || !x->hello;
	return x->seq < y->seq;
}

/* The connection to close to make room for one more on loop l from host
 * (full: its host's bound; else the total's), or NULL: only l's own, and
 * a mid-handshake one only once its HELLO is PAUTH_HELLO_GRACE_MS old. */
static struct unauth_slot *slot_victim(tw_agent *a, const struct agent_loop *l,
				       uint64_t host, bool host_full,
				       uint64_t now)
{
	const uint64_t grace = (uint64_t)PAUTH_HELLO_GRACE_MS * 1000000u;
	struct unauth_slot *v = NULL;
	for (uint32_t i = 0; i < a->nunauth; i++) {
		struct unauth_slot *x = &a->unauth[i];
		if (x->loop != l->idx || (host_full && x->host != host))
			continue;
		if (x->hello && (now < x->since || now - x->since < grace))
			continue;
		if (better_victim(x, v))
			v = x;
	}
	return v;
}

/* A slot for cs, a new unauthenticated connection on l from host (0:
 * unknown, bound by the total only). Over a bound, the slot of the
 * connection slot_victim picks is handed to cs and that connection
 * returned in *evict (its pa no longer counted: l closes it). false when
 * over a bound with nothing to evict. */
static bool slot_take(struct agent_loop *l, struct conn_state *cs,
		      uint64_t host, struct conn_state **evict)
{
	tw_agent *a = l->a;
	uint64_t now = tw_loop_now(l->loop);
	struct unauth_slot *s = NULL;
	*evict = NULL;
	pthread_mutex_lock(&a->auth_mu);
	uint32_t same = 0;
	for (uint32_t i = 0; host != 0 && i < a->nunauth; i++)
		same += a->unauth[i].host == host;
	bool host_full = host != 0 && same >= a->o.max_unauth_per_host;
	if (!host_full && a->nunauth < a->o.max_unauth) {
		s = &a->unauth[a->nunauth++];
	} else if ((s = slot_victim(a, l, host, host_full, now)) != NULL) {
		*evict = s->cs;
		s->cs->pa->counted = false;
	}
	if (s != NULL) {
		*s = (struct unauth_slot){.cs = cs,
					  .host = host,
					  .since = now,
					  .seq = a->unauth_seq++,
					  .loop = l->idx};
	}
	pthread_mutex_unlock(&a->auth_mu);
	return s != NULL;
}

/* cs's HELLO came: mid-handshake from now. */
static void slot_hello(struct agent_loop *l, struct conn_state *cs)
{
	tw_agent *a = l->a;
	pthread_mutex_lock(&a->auth_mu);
	for (uint32_t i = 0; i < a->nunauth; i++) {
		if (a->unauth[i].cs == cs) {
			a->unauth[i].hello = true;
			a->unauth[i].since = tw_loop_now(l->loop);
			a->unauth[i].seq = a->unauth_seq++;
			break;
		}
	}
	pthread_mutex_unlock(&a->auth_mu);
}

static void slot_give(tw_agent *a, struct conn_state *cs)
{
	pthread_mutex_lock(&a->auth_mu);
	for (uint32_t i = 0; i < a->nunauth; i++) {
		if (a->unauth[i].cs == cs) {
			a->unauth[i] = a->unauth[--a->nunauth];
			break;
		}
	}
	pthread_mutex_unlock(&a->auth_mu);
}

/* ---- listening ---------------------------------------------------------- */

tw_status pauth_check_listen(const tw_agent *a, const char *url,
			     const char *what)
{
	if (auth_key_set(&a->key) || a->o.insecure || url == NULL)
		return TW_OK;
	const char *p = strstr(url, "://");
	/* Only network schemes reach beyond the process (fake:// does not). */
	if (p == NULL ||
	    (strncmp(url, "tcp://", 6) != 0 && strncmp(url, "udp://", 6) != 0))
		return TW_OK;
	struct sockaddr_storage ss;
	socklen_t sl;
	if (tw_netaddr_parse(url, &ss, &sl) == TW_OK &&
	    tw_netaddr_is_loopback((struct sockaddr *)&ss))
		return TW_OK;
	char host[64];
	size_t n = strcspn(p + 3, ":/");
	if (n < sizeof(host)) {
		memcpy(host, p + 3, n);
		host[n] = '\0';
		struct in_addr ia;
		if (strcmp(host, "localhost") == 0 ||
		    (inet_pton(AF_INET, host, &ia) == 1 &&
		     (ntohl(ia.s_addr) >> 24) == 127))
			return TW_OK;
	}
	return tw_fail(TW_EINVAL,
		       "refusing to serve %s on %.64s without a secret: anyone "
		       "who can reach a routable address could join and call "
		       "any function as any worker. Set the group's secret "
		       "(tw_agent_opts.secret or secret_file, or TW_SECRET / "
		       "TW_SECRET_FILE), serve on loopback (127.0.0.0/8), or "
		       "set tw_agent_opts.insecure to accept the risk",
		       what, url);
}

/* ---- sending the handshake's frames -------------------------------------- */

static void pa_tx_done(struct tx *tx, tw_status st)
{
	(void)st;
	struct pa_tx *p = container_of(tx, struct pa_tx, tx);
	struct agent_loop *l = tx->l;
	tw_out_msg_release(&tx->msg);
	tw_value_destroy(&p->v);
	if (p->close_after) {
		/* Done runs before the connection's close upcall: still
		 * there unless this was the close. */
		struct conn_state *cs = conn_find_id(l, p->conn_id);
		if (cs != NULL)
			conn_close_later(cs);
	}
	free(p);
}

/* Send p's payload as a frame of type on cs; p is consumed either way. */
static tw_status pa_send(struct conn_state *cs, struct pa_tx *p, uint8_t type,
			 uint64_t req_id, uint32_t dst)
{
	tw_agent *a = cs->l->a;
	tw_frame_hdr h = {0};
	h.version = TW_FRAME_VERSION;
	h.type = type;
	h.req_id = req_id;
	h.src = a->rank;
	h.dst = dst;
	tw_status st = tw_msg_encode(a->txpool, &h, &p->v, &p->tx.msg);
	if (st == TW_ENOSPC)
		st = tw_msg_encode(NULL, &h, &p->v, &p->tx.msg);
	if (st != TW_OK) {
		tw_value_destroy(&p->v);
		free(p);
		return st;
	}
	p->conn_id = cs->id;
	p->tx.done = pa_tx_done;
	p->tx.req.type = type;
	conn_send_raw(cs, &p->tx);
	return TW_OK;
}

static tw_status send_step(struct conn_state *cs, const struct auth_msg *m,
			   uint32_t dst)
{
	struct pa_tx *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return TW_ENOMEM;
	auth_msg_encode(m, p->body);
	p->v = tw_value_bytes_borrow(p->body, AUTH_MSG_SIZE);
	return pa_send(cs, p, TW_MSG_AUTH, 0, dst);
}

/* Answer EXCEPTION(kind, msg) and close once it left; close at once when
 * it cannot be sent. */
static void send_refusal(struct conn_state *cs, tw_status kind, uint64_t req_id,
			 uint32_t dst, const char *msg)
{
	struct pa_tx *p = calloc(1, sizeof(*p));
	if (p == NULL ||
	    tw_value_error(&p->v, kind, cs->l->a->rank, msg) != TW_OK) {
		free(p);
		conn_close_later(cs);
		return;
	}
	p->close_after = true;
	if (pa_send(cs, p, TW_MSG_EXCEPTION, req_id, dst) != TW_OK)
		conn_close_later(cs);
}

/* ---- failing and binding -------------------------------------------------- */

/* The handshake on cs failed (kind, msg): counted; the calls waiting for
 * it fail now with the reason; the peer is told (answer) and cs closes. */
static void pa_fail(struct agent_loop *l, struct conn_state *cs, tw_status kind,
		    const char *msg, bool answer, uint64_t req_id, uint32_t dst)
{
	stat_inc(&l->stats.auth_failed);
	char q[256];
	TW_LOG(TW_LOG_WARN, "auth_failed", "peer=%s direction=%s reason=%s",
	       cs->c->peer[0] ? cs->c->peer : "-", cs->outbound ? "out" : "in",
	       tw_log_q(q, sizeof(q), msg));
	cs->auth_failed = true;
	if (cs->pa != NULL)
		cs->pa->failed = true;
	if (cs->fail_msg == NULL) {
		cs->fail_kind = kind;
		cs->fail_msg = strdup(msg);
	}
	call_conn_closed(l, cs, kind);
	struct tx *tx;
	while ((tx = STAILQ_FIRST(&cs->held)) != NULL) {
		STAILQ_REMOVE_HEAD(&cs->held, link);
		tx->done(tx, TW_EUNREACHABLE);
	}
	if (answer)
		send_refusal(cs, kind, req_id, dst, msg);
	else
		conn_close_later(cs);
}

static void pa_free(struct agent_loop *l, struct conn_state *cs)
{
	struct peer_auth *pa = cs->pa;
	if (pa == NULL)
		return;
	tw_timer_cancel(tw_loop_timers(l->loop), &pa->timer);
	if (pa->counted)
		slot_give(l->a, cs);
	cs->pa = NULL;
	free(pa);
}

void pauth_refuse(struct agent_loop *l, struct conn_state *cs,
		  const tw_frame_hdr *h, tw_status kind, const char *msg)
{
	pa_fail(l, cs, kind, msg, h->type != TW_MSG_EXCEPTION, h->req_id,
		h->src);
}

void pauth_conn_gone(struct agent_loop *l, struct conn_state *cs)
{
	pa_free(l, cs);
}

/* The handshake is done: cs carries peer's frames, of any size. */
static void pa_bind(struct agent_loop *l, struct conn_state *cs, uint32_t peer)
{
	cs->peer = peer;
	cs->authed = true;
	cs->c->rx_max = 0;
	if (cs->outbound)
		redial_ok(l, peer);
	/* A transport with a faster path for proved peers opens it now
	 * (the same-host one's shared rings). */
	tw_transport_trusted(cs->t, cs->c);
	conn_mark_local(l, cs);
	if (cs->t == l->tl)
		stat_inc(&l->stats.conns_shm);
	stat_inc(&l->stats.auth_ok);
	pa_free(l, cs);
}

static void pa_deadline(struct tw_timer *t, void *arg)
{
	(void)t;
	struct conn_state *cs = arg;
	struct agent_loop *l = cs->l;
	if (cs->pa->failed) {
		conn_close_later(cs);
		return;
	}
	stat_inc(&l->stats.auth_timeouts);
	char msg[256];
	long long ms = (long long)l->a->o.auth_timeout_ms;
	if (cs->outbound)
		snprintf(msg, sizeof(msg),
			 "worker '%s' is unreachable: it did not complete the "
			 "authentication handshake within %lld ms",
			 agent_worker_name(l->a, (uint32_t)cs->peer), ms);
	else
		snprintf(msg, sizeof(msg),
			 "authentication handshake not completed within %lld "
			 "ms",
			 ms);
	/* Counted as a timeout, not as a failure. */
	cs->auth_failed = true;
	cs->pa->failed = true;
	if (cs->fail_msg == NULL) {
		cs->fail_kind = TW_EUNREACHABLE;
		cs->fail_msg = strdup(msg);
	}
	call_conn_closed(l, cs, TW_EUNREACHABLE);
	conn_close_later(cs);
}

static tw_status pa_start(struct agent_loop *l, struct conn_state *cs)
{
	cs->c->rx_max = PAUTH_RX_MAX;
	struct peer_auth *pa = calloc(1, sizeof(*pa));
	if (pa == NULL)
		return TW_ENOMEM;
	cs->pa = pa;
	pa->host = cs->c->peer_host;
	tw_timer_init(&pa->timer, pa_deadline, cs);
	return TW_OK;
}

static void pa_arm(struct agent_loop *l, struct conn_state *cs)
{
	tw_timer_arm(tw_loop_timers(l->loop), &cs->pa->timer,
		     tw_loop_now(l->loop) +
			     (uint64_t)l->a->o.auth_timeout_ms * 1000000u);
}

/* cs, unauthenticated and on l, gave its slot to a newer connection:
 * closed, unanswered (a stranger learns nothing; a member that was slow
 * connects anew on its next call). One already failing is not counted. */
static void pa_evict(struct agent_loop *l, struct conn_state *cs)
{
	if (!cs->pa->failed && !cs->doomed && !cs->closing) {
		stat_inc(&l->stats.auth_evicted);
		TW_LOG(TW_LOG_WARN, "conn_evicted",
		       "peer=%s reason=\"unauthenticated, closed for a newer "
		       "connection (max_unauth, max_unauth_per_host)\"",
		       cs->c->peer[0] ? cs->c->peer : "-");
	}
	cs->auth_failed = true;
	cs->pa->failed = true;
	if (cs->fail_msg == NULL) {
		cs->fail_kind = TW_EUNREACHABLE;
		cs->fail_msg = strdup("closed before its authentication "
				      "handshake completed, to make room for "
				      "a newer connection (max_unauth, "
				      "max_unauth_per_host)");
	}
	conn_close_later(cs);
}

void pauth_accepted(struct agent_loop *l, struct conn_state *cs)
{
	if (pa_start(l, cs) != TW_OK) {
		cs->auth_failed = true;
		conn_close_later(cs);
		return;
	}
	struct conn_state *victim;
	if (!slot_take(l, cs, cs->pa->host, &victim)) {
		stat_inc(&l->stats.auth_refused);
		TW_LOG(TW_LOG_WARN, "conn_refused",
		       "peer=%s reason=\"too many unauthenticated connections "
		       "(max_unauth, max_unauth_per_host)\"",
		       cs->c->peer[0] ? cs->c->peer : "-");
		cs->auth_failed = true;
		cs->pa->failed = true;
		conn_close_later(cs);
		return;
	}
	cs->pa->counted = true;
	pa_arm(l, cs);
	if (victim != NULL)
		pa_evict(l, victim);
}

void pauth_connected(struct agent_loop *l, struct conn_state *cs)
{
	tw_agent *a = l->a;
	char msg[160];
	if (cs->authed || cs->pa != NULL)
		return;
	if (pa_start(l, cs) != TW_OK) {
		snprintf(msg, sizeof(msg),
			 "out of memory for the handshake with worker '%s'",
			 agent_worker_name(a, (uint32_t)cs->peer));
		pa_fail(l, cs, TW_ENOMEM, msg, false, 0, 0);
		return;
	}
	pa_arm(l, cs);
	struct auth_msg hello;
	auth_client_start(&cs->pa->hs, &a->key, AUTH_CTX_DATA, a->rank,
			  (uint32_t)cs->peer, &hello);
	tw_status st = send_step(cs, &hello, (uint32_t)cs->peer);
	if (st != TW_OK) {
		snprintf(msg, sizeof(msg),
			 "cannot send the handshake to worker '%s': %s",
			 agent_worker_name(a, (uint32_t)cs->peer),
			 tw_strerror(st));
		pa_fail(l, cs, st, msg, false, 0, 0);
	}
}

/* ---- frames before the handshake is done ------------------------------- */

/* auth.c names the other end "the server" / "the client": name it. */
static void name_peer(char *out, size_t n, const char *why, const char *role,
		      const tw_agent *a, uint32_t id)
{
	const char *p = strstr(why, role);
	if (id < a->world && p != NULL)
		snprintf(out, n, "%.*sworker '%s'%s", (int)(p - why), why,
			 agent_worker_name(a, id), p + strlen(role));
	else
		snprintf(out, n, "%s", why);
}

/* The client's side: a CHALLENGE came. */
static void client_step(struct agent_loop *l, struct conn_state *cs,
			const struct auth_msg *m)
{
	tw_agent *a = l->a;
	uint32_t peer = (uint32_t)cs->peer;
	struct auth_msg proof;
	tw_status st = auth_client_challenge(&cs->pa->hs, m, &proof);
	if (st != TW_OK) {
		char msg[320];
		name_peer(msg, sizeof(msg), tw_errmsg(st), "the server", a,
			  peer);
		pa_fail(l, cs, st, msg, true, 0, peer);
		return;
	}
	st = send_step(cs, &proof, peer);
	if (st != TW_OK) {
		char msg[160];
		snprintf(msg, sizeof(msg),
			 "cannot send the handshake to worker '%s': %s",
			 agent_worker_name(a, peer), tw_strerror(st));
		pa_fail(l, cs, st, msg, false, 0, 0);
		return;
	}
	/* The PROOF leaves first, then what waited, in order. */
	pa_bind(l, cs, peer);
	conn_release_held(cs);
}

/* The server's side: a HELLO, then a PROOF. */
static void server_step(struct agent_loop *l, struct conn_state *cs,
			const tw_frame_hdr *h, const struct auth_msg *m)
{
	tw_agent *a = l->a;
	struct peer_auth *pa = cs->pa;
	char msg[320];
	tw_status st;
	if (pa->hs.next == 0) {
		if (m->step != AUTH_HELLO) {
			pa_fail(l, cs, TW_EPROTO,
				"authentication: a connection opens with a "
				"HELLO",
				true, 0, h->src);
			return;
		}
		if (m->from == a->rank) {
			/* Calls to self never take the network: a HELLO
			 * claiming our own id is someone posing as us. */
			pa_fail(l, cs, TW_EAUTH,
				"authentication failed: a connection claims "
				"to come from this worker's own id",
				true, 0, h->src);
			return;
		}
		if (m->from >= a->world || h->src != m->from) {
			snprintf(msg, sizeof(msg),
				 "authentication failed: worker id %u is not a "
				 "member of this group (world size %u)",
				 m->from, a->world);
			pa_fail(l, cs, TW_EAUTH, msg, true, 0, h->src);
			return;
		}
		struct auth_msg ch;
		st = auth_server_hello(&pa->hs, &a->key, AUTH_CTX_DATA, a->rank,
				       m, &ch);
		if (st == TW_OK)
			st = send_step(cs, &ch, m->from);
		if (st == TW_OK && pa->counted)
			slot_hello(l, cs);
		if (st != TW_OK) {
			snprintf(msg, sizeof(msg), "worker '%s' refused: %s",
				 a->name, tw_errmsg(st));
			pa_fail(l, cs, st, msg, true, 0, h->src);
		}
		return;
	}
	uint32_t client = pa->hs.client_id;
	st = auth_server_proof(&pa->hs, m);
	if (st != TW_OK) {
		name_peer(msg, sizeof(msg), tw_errmsg(st), "the client", a,
			  client);
		pa_fail(l, cs, st, msg, true, 0, client);
		return;
	}
	pa_bind(l, cs, client);
}

/* The peer refused us (or the handshake) with an EXCEPTION. */
static void peer_refused(struct agent_loop *l, struct conn_state *cs,
			 const tw_frame_hdr *h, tw_buf *buf, size_t off,
			 size_t len)
{
	tw_agent *a = l->a;
	char msg[400];
	tw_status kind = TW_EAUTH;
	const char *why = "no reason given";
	tw_in_msg m;
	bool decoded = tw_msg_decode(buf, off, len, h, NULL, &m) == TW_OK;
	if (decoded && m.payload.u.err != NULL) {
		why = m.payload.u.err->msg;
		if (m.payload.u.err->kind == TW_EPROTO)
			kind = TW_EPROTO;
	}
	if (cs->outbound)
		snprintf(msg, sizeof(msg),
			 "worker '%s' refused the connection: %s",
			 agent_worker_name(a, (uint32_t)cs->peer), why);
	else
		snprintf(msg, sizeof(msg), "the peer refused the handshake: %s",
			 why);
	if (decoded)
		tw_in_msg_release(&m);
	pa_fail(l, cs, kind, msg, false, 0, 0);
}

void pauth_on_frame(struct agent_loop *l, struct conn_state *cs,
		    const tw_frame_hdr *h, tw_buf *buf, size_t off, size_t len)
{
	tw_agent *a = l->a;
	struct peer_auth *pa = cs->pa;
	/* Failed, refused or closing: nothing more is read. */
	if (pa == NULL || pa->failed || cs->doomed || cs->authed)
		return;
	char msg[320];
	if (h->type == TW_MSG_EXCEPTION) {
		peer_refused(l, cs, h, buf, off, len);
		return;
	}
	if (h->type != TW_MSG_AUTH) {
		snprintf(msg, sizeof(msg),
			 "authentication required: worker '%s' accepts nothing "
			 "but the handshake (AUTH) on a new connection, got %s",
			 a->name, tw_msg_type_name(h->type));
		pa_fail(l, cs, TW_EAUTH, msg, true, h->req_id, h->src);
		return;
	}
	struct auth_msg am;
	tw_in_msg m;
	tw_status st = tw_msg_decode(buf, off, len, h, NULL, &m);
	if (st == TW_OK) {
		const void *p = NULL;
		size_t n = 0;
		st = tw_value_get_bytes(&m.payload, &p, &n);
		if (st == TW_OK)
			st = auth_msg_decode(p, n, &am);
		tw_in_msg_release(&m);
	}
	if (st == TW_OK && (am.ctx != AUTH_CTX_DATA || h->src != am.from))
		st = tw_fail_static(TW_EPROTO,
				    "auth: not a data connection's step, "
				    "or its header's src is not its sender");
	if (st != TW_OK) {
		snprintf(msg, sizeof(msg), "malformed handshake: %s",
			 tw_errmsg(st));
		pa_fail(l, cs, TW_EPROTO, msg, true, 0, h->src);
		return;
	}
	if (cs->outbound)
		client_step(l, cs, &am);
	else
		server_step(l, cs, h, &am);
}

/* ---- after the handshake ---------------------------------------------------- */

void pauth_spoofed(struct agent_loop *l, struct conn_state *cs,
		   const tw_frame_hdr *h)
{
	stat_inc(&l->stats.spoofed_frames);
	if (h->type != TW_MSG_CALL)
		return;
	char msg[320];
	snprintf(msg, sizeof(msg),
		 "refused: this connection is authenticated as worker '%s' "
		 "(id %u), but the call claims to come from id %u to id %u",
		 agent_worker_name(l->a, (uint32_t)cs->peer),
		 (uint32_t)cs->peer, h->src, h->dst);
	/* Answered to whoever is at the other end: the bound worker. */
	tw_frame_hdr r = *h;
	r.src = (uint32_t)cs->peer;
	serve_reject(l, cs, &r, TW_EAUTH, msg);
}
