/* Authenticated data connections (rpc/peer_auth.c) on the fake net: the
 * handshake before the first call, with the call held meanwhile; same,
 * wrong and missing secrets; a spoofed source on an authenticated
 * connection; what a stranger's unauthenticated connection may not do (a
 * CALL, a big header, silence past the deadline, too many of them), and
 * that holding the bounds does not keep members out (the stalest
 * unauthenticated connection is evicted); a frame type a data connection
 * does not carry. */
#include "tests/unit/rpc/fake_world.h"

#define S_ADDR "fake://9" /* the stranger's node */
#define S2_ADDR "fake://8"

/* ---- a stranger: a bare transport on a loop of its own ------------------ */

#define S_MAX 80

struct stranger_conn {
	tw_conn *c;
	bool up, closed;
	tw_status close_st;
	int nframes;
	uint8_t type[8];
	uint64_t req[8];
	tw_status exc_kind; /* the last EXCEPTION's */
	char exc_msg[320];
	uint8_t auth[AUTH_MSG_SIZE]; /* the last AUTH frame's payload */
};

static struct stranger {
	tw_loop *l;
	tw_transport *t;
	struct stranger_conn conns[S_MAX];
	int n;
} S[2];

/* A closed connection's memory may be a new one's: only open ones match. */
static struct stranger_conn *sconn(tw_conn *c)
{
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < S[k].n; i++)
			if (S[k].conns[i].c == c && !S[k].conns[i].closed)
				return &S[k].conns[i];
	return NULL;
}

static void s_on_frame(void *ctx, tw_conn *c, const tw_frame_hdr *h,
		       tw_buf *buf, size_t off, size_t len)
{
	(void)ctx;
	struct stranger_conn *sc = sconn(c);
	cr_assert_not_null(sc);
	if (sc->nframes < 8) {
		sc->type[sc->nframes] = h->type;
		sc->req[sc->nframes] = h->req_id;
	}
	sc->nframes++;
	tw_in_msg m;
	cr_assert_eq(tw_msg_decode(buf, off, len, h, NULL, &m), TW_OK);
	if (h->type == TW_MSG_EXCEPTION) {
		sc->exc_kind = m.payload.u.err->kind;
		snprintf(sc->exc_msg, sizeof(sc->exc_msg), "%s",
			 m.payload.u.err->msg);
	} else if (h->type == TW_MSG_AUTH) {
		const void *p;
		size_t n;
		cr_assert_eq(tw_value_get_bytes(&m.payload, &p, &n), TW_OK);
		cr_assert_eq(n, AUTH_MSG_SIZE);
		memcpy(sc->auth, p, n);
	}
	tw_in_msg_release(&m);
}

static void s_on_conn(void *ctx, tw_conn *c, tw_status st)
{
	(void)ctx;
	struct stranger_conn *sc = sconn(c);
	cr_assert_not_null(sc);
	if (st == TW_OK) {
		sc->up = true;
	} else {
		sc->closed = true;
		sc->close_st = st;
	}
}

static void stranger_up(int k, const char *addr)
{
	struct stranger *s = &S[k];
	memset(s, 0, sizeof(*s));
	struct tw_loop_opts lo;
	tw_loop_opts_init(&lo, sizeof(lo));
	lo.clock = fake_clock;
	cr_assert_eq(tw_loop_create(&lo, &s->l), TW_OK);
	struct tw_transport_cbs cbs = {
		.ctx = s, .on_frame = s_on_frame, .on_conn = s_on_conn};
	cr_assert_eq(tw_fake_transport_create(W.net, s->l, &cbs, &s->t), TW_OK);
	cr_assert_eq(s->t->ops->listen(s->t, addr, NULL, 0), TW_OK);
}

static void stranger_down(int k)
{
	S[k].t->ops->destroy(S[k].t);
	tw_loop_destroy(S[k].l);
	memset(&S[k], 0, sizeof(S[k]));
}

/* A new connection from stranger k to addr. */
static struct stranger_conn *s_connect(int k, const char *addr)
{
	struct stranger *s = &S[k];
	cr_assert_lt(s->n, S_MAX);
	struct stranger_conn *sc = &s->conns[s->n++];
	cr_assert_eq(s->t->ops->connect(s->t, addr, &sc->c), TW_OK);
	return sc;
}

static void s_req_done(struct tw_send_req *r, tw_status st)
{
	(void)st;
	free(r);
}

/* Send len bytes of frame on sc (copied: the fake net copies at send). */
static void s_send(int k, struct stranger_conn *sc, const void *frame,
		   size_t len)
{
	struct {
		struct tw_send_req r;
		struct iovec iov;
	} *q = calloc(1, sizeof(*q));
	cr_assert_not_null(q);
	q->iov.iov_base = (void *)(uintptr_t)frame;
	q->iov.iov_len = len;
	q->r.iov = &q->iov;
	q->r.niov = 1;
	q->r.len = len;
	q->r.done = s_req_done;
	cr_assert_eq(S[k].t->ops->send(S[k].t, sc->c, &q->r), TW_OK);
}

/* Encode value v as a frame of type into buf; its length. */
static size_t frame_of(unsigned char *buf, size_t cap, unsigned type,
		       uint64_t req, uint32_t src, uint32_t dst,
		       const tw_value *v)
{
	tw_frame_hdr h = {.version = TW_FRAME_VERSION,
			  .type = (uint8_t)type,
			  .req_id = req,
			  .src = src,
			  .dst = dst};
	tw_out_msg om;
	cr_assert_eq(tw_msg_encode(NULL, &h, v, &om), TW_OK);
	cr_assert_leq(om.total_len, cap);
	tw_out_msg_copy(&om, buf);
	size_t n = om.total_len;
	tw_out_msg_release(&om);
	return n;
}

/* A well-formed CALL of t::echo(7). */
static size_t echo_call(unsigned char *buf, size_t cap, uint64_t req,
			uint32_t src, uint32_t dst)
{
	tw_value items[3], args = int_args(7);
	items[0] = tw_value_string_borrow("t::echo", 7);
	items[1] = args;
	cr_assert_eq(tw_value_dict(&items[2], 0), TW_OK);
	tw_value v;
	cr_assert_eq(tw_value_tuple(&v, 3), TW_OK);
	for (uint32_t i = 0; i < 3; i++)
		cr_assert_eq(tw_value_set_item(&v, i, items[i]), TW_OK);
	size_t n = frame_of(buf, cap, TW_MSG_CALL, req, src, dst, &v);
	tw_value_destroy(&v);
	return n;
}

static size_t auth_frame(unsigned char *buf, size_t cap,
			 const struct auth_msg *m)
{
	uint8_t body[AUTH_MSG_SIZE];
	auth_msg_encode(m, body);
	tw_value v = tw_value_bytes_borrow(body, sizeof(body));
	return frame_of(buf, cap, TW_MSG_AUTH, 0, m->from, m->to, &v);
}

/* Everyone, strangers too, until two rounds in a row did nothing. */
static void s_settle(void)
{
	int quiet = 0;
	for (int i = 0; i < 100000 && quiet < 2; i++) {
		int work = poll_all();
		for (int k = 0; k < 2; k++)
			if (S[k].l != NULL)
				work += tw_loop_poll_once(S[k].l);
		quiet = work != 0 ? 0 : quiet + 1;
	}
	cr_assert_geq(quiet, 2, "the world never went quiet");
}

static void s_advance(uint64_t ns)
{
	atomic_fetch_add(&fake_now, ns);
	s_settle();
}

static const char *secrets[3];

static void with_secrets(uint32_t rank, struct tw_agent_opts *o)
{
	o->secret = secrets[rank];
}

static void small_bounds(uint32_t rank, struct tw_agent_opts *o)
{
	(void)rank;
	o->max_unauth_per_host = 2;
	o->max_unauth = 3;
}

static void teardown(void)
{
	memset(secrets, 0, sizeof(secrets));
}

TestSuite(peer_auth, .fini = teardown);

/* ---- members ------------------------------------------------------------- */

Test(peer_auth, handshake_comes_first_and_the_call_waits_for_it)
{
	world_up_lazy(2, NULL);
	tw_future *f = call(0, "B", "t::echo", 42, 1000);

	/* A connects and sends its HELLO: the CALL waits. */
	poll_one(0);
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), 1);
	cr_assert_eq(net_stats().sent, 1);
	/* B answers with its CHALLENGE; nothing runs. */
	poll_one(1);
	cr_assert_eq(tw_fake_net_queued(W.net, B_ADDR, A_ADDR), 1);
	cr_assert_eq(W.k[1].echo, 0);
	/* A checks B's proof, sends its PROOF and then the CALL. */
	poll_one(0);
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), 2);
	cr_assert_not(tw_future_done(f));
	/* B binds the connection to A and serves the call at once. */
	poll_one(1);
	cr_assert_eq(W.k[1].echo, 1);
	poll_one(0);
	cr_assert_eq(result_int(f), 42);

	settle();
	struct tw_agent_stats sa = stats(0), sb = stats(1);
	cr_assert_eq(sa.auth_ok, 1);
	cr_assert_eq(sb.auth_ok, 1);
	cr_assert_eq(sa.auth_failed + sb.auth_failed, 0);
	/* HELLO, CHALLENGE, PROOF, CALL, RET: 1.5 round trips before. */
	cr_assert_eq(net_stats().sent, 5);

	/* The next call pays nothing. */
	tw_future *g = call(0, "B", "t::echo", 43, 1000);
	settle();
	cr_assert_eq(result_int(g), 43);
	cr_assert_eq(net_stats().sent, 7);
	tw_future_release(f);
	tw_future_release(g);
	world_down(true);
}

Test(peer_auth, calls_held_for_the_handshake_keep_their_order)
{
	world_up_lazy(2, NULL);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_future *f[4];
	for (int i = 0; i < 4; i++)
		f[i] = call(0, "B", "t::inc", i * 10, 1000);
	settle();
	cr_assert_eq(tw_fake_net_queued(W.net, A_ADDR, B_ADDR), 0);
	cr_assert_eq(W.k[1].inc, 0, "nothing before the handshake");
	cr_assert_eq(tw_fake_net_queued(W.net, B_ADDR, A_ADDR), 1);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, false), TW_OK);
	settle();
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(result_int(f[i]), i * 10 + 1);
		tw_future_release(f[i]);
	}
	world_down(true);
}

Test(peer_auth, same_secret_works)
{
	secrets[0] = secrets[1] = "s3cret";
	world_up_lazy(2, with_secrets);
	tw_future *f = call(0, "B", "t::echo", 5, 1000);
	tw_future *g = call(1, "A", "t::echo", 6, 1000);
	settle();
	cr_assert_eq(result_int(f), 5);
	cr_assert_eq(result_int(g), 6);
	cr_assert_eq(stats(0).auth_ok, 2, "A's to B and B's to A");
	cr_assert_eq(stats(1).auth_ok, 2);
	tw_future_release(f);
	tw_future_release(g);
	world_down(true);
}

static void check_refused(const char *want)
{
	tw_future *f = call(0, "B", "t::echo", 5, 0);
	settle();
	const tw_error *e = failure(f, TW_EAUTH);
	cr_assert(strstr(e->msg, want) != NULL, "%s", e->msg);
	cr_assert_eq(e->origin, 0);
	cr_assert_eq(W.k[1].echo, 0);
	cr_assert_eq(stats(0).auth_failed, 1);
	cr_assert_eq(stats(1).auth_failed, 1, "B heard why");
	cr_assert_eq(stats(0).auth_ok + stats(1).auth_ok, 0);
	cr_assert_eq(stats(0).conns_closed, 1);
	cr_assert_eq(stats(1).conns_closed, 1);
	cr_assert_eq(tw_agent_outstanding(W.ag[0]), 0);

	/* A call right after fails alike without trying (the reconnection
	 * backoff, 10 ms), naming the same cause; a later call tries again,
	 * on a new connection, and fails alike. */
	tw_future *g = call(0, "B", "t::echo", 6, 0);
	settle();
	e = failure(g, TW_EAUTH);
	cr_assert(strstr(e->msg, want) != NULL &&
			  strstr(e->msg, "next attempt") != NULL,
		  "%s", e->msg);
	cr_assert_eq(net_stats().conns, 1);
	cr_assert_eq(stats(0).redial_waits, 1);
	tw_future_release(g);
	advance(10 * MS);
	g = call(0, "B", "t::echo", 7, 0);
	settle();
	failure(g, TW_EAUTH);
	cr_assert_eq(net_stats().conns, 2);
	tw_future_release(f);
	tw_future_release(g);
}

Test(peer_auth, wrong_secret_fails_the_call_with_the_reason)
{
	secrets[0] = "one";
	secrets[1] = "two";
	world_up_lazy(2, with_secrets);
	check_refused("authentication failed: worker 'B' does not know this "
		      "group's secret");
	world_down(true);
}

Test(peer_auth, caller_without_the_secret_is_refused)
{
	secrets[1] = "two";
	world_up_lazy(2, with_secrets);
	check_refused("authentication failed: worker 'B' does not know this "
		      "group's secret (this worker has none set)");
	world_down(true);
}

Test(peer_auth, callee_without_the_secret_is_refused)
{
	secrets[0] = "one";
	world_up_lazy(2, with_secrets);
	check_refused("authentication failed: worker 'B' does not know this "
		      "group's secret");
	world_down(true);
}

/* ---- after the handshake: one worker per connection ------------------- */

Test(peer_auth, spoofed_source_is_refused_and_counted)
{
	world_up(3, NULL);
	unsigned char frame[512];
	/* On A's connection to B, a CALL claiming to come from C. */
	size_t n = echo_call(frame, sizeof(frame), 900, 2, 1);
	cr_assert_eq(tw_fake_net_inject(W.net, A_ADDR, B_ADDR, frame, n),
		     TW_OK);
	/* And one from A meant for C. */
	n = echo_call(frame, sizeof(frame), 901, 0, 2);
	cr_assert_eq(tw_fake_net_inject(W.net, A_ADDR, B_ADDR, frame, n),
		     TW_OK);
	settle();
	cr_assert_eq(W.k[1].echo, 0, "neither ran");
	cr_assert_eq(W.k[2].echo, 0);
	struct tw_agent_stats sb = stats(1);
	cr_assert_eq(sb.spoofed_frames, 2);
	cr_assert_eq(sb.calls_served, 0);
	/* Both answered (EXCEPTION TW_EAUTH) to A, which never made them. */
	cr_assert_eq(stats(0).late_responses, 2);
	/* The connection stays: A's own calls go on. */
	tw_future *f = call(0, "B", "t::echo", 3, 1000);
	settle();
	cr_assert_eq(result_int(f), 3);
	cr_assert_eq(sb.conns_closed, 0);
	tw_future_release(f);
	world_down(true);
}

Test(peer_auth, spoofed_call_is_answered_with_eauth)
{
	world_up_lazy(2, NULL);
	stranger_up(0, S_ADDR);
	/* A stranger who authenticates as A (no secret here: anyone can,
	 * as the README says) and then claims to be B. */
	struct stranger_conn *sc = s_connect(0, B_ADDR);
	struct auth_key none = {0};
	struct auth_hs hs;
	struct auth_msg hello, ch, proof;
	unsigned char frame[512];
	auth_client_start(&hs, &none, AUTH_CTX_DATA, 0, 1, &hello);
	s_send(0, sc, frame, auth_frame(frame, sizeof(frame), &hello));
	s_settle();
	cr_assert_eq(sc->nframes, 1);
	cr_assert_eq(sc->type[0], TW_MSG_AUTH);
	cr_assert_eq(auth_msg_decode(sc->auth, AUTH_MSG_SIZE, &ch), TW_OK);
	cr_assert_eq(auth_client_challenge(&hs, &ch, &proof), TW_OK);
	s_send(0, sc, frame, auth_frame(frame, sizeof(frame), &proof));
	s_settle();
	cr_assert_eq(stats(1).auth_ok, 1);
	s_send(0, sc, frame, echo_call(frame, sizeof(frame), 77, 1, 1));
	s_settle();
	cr_assert_eq(sc->nframes, 2);
	cr_assert_eq(sc->type[1], TW_MSG_EXCEPTION);
	cr_assert_eq(sc->req[1], 77);
	cr_assert_eq(sc->exc_kind, TW_EAUTH);
	cr_assert(strstr(sc->exc_msg, "authenticated as worker 'A'") != NULL,
		  "%s", sc->exc_msg);
	cr_assert_eq(W.k[1].echo, 0);
	/* As itself it may call. */
	s_send(0, sc, frame, echo_call(frame, sizeof(frame), 78, 0, 1));
	s_settle();
	cr_assert_eq(sc->nframes, 3);
	cr_assert_eq(sc->type[2], TW_MSG_RET);
	cr_assert_eq(W.k[1].echo, 1);
	cr_assert_eq(stats(1).spoofed_frames, 1);
	stranger_down(0);
	world_down(true);
}

Test(peer_auth, frame_of_a_type_data_connections_do_not_carry_closes)
{
	world_up(2, NULL);
	unsigned char frame[512];
	tw_value none = tw_value_none();
	/* An answer to a request B never made: dropped, connection kept. */
	size_t n = frame_of(frame, sizeof(frame), TW_MSG_ACK, 4, 0, 1, &none);
	cr_assert_eq(tw_fake_net_inject(W.net, A_ADDR, B_ADDR, frame, n),
		     TW_OK);
	settle();
	cr_assert_eq(stats(1).late_responses, 1);
	cr_assert_eq(stats(1).conns_closed, 0);
	/* A control-plane type: invalid here, and the connection goes. */
	n = frame_of(frame, sizeof(frame), TW_MSG_JOIN, 5, 0, 1, &none);
	cr_assert_eq(tw_fake_net_inject(W.net, A_ADDR, B_ADDR, frame, n),
		     TW_OK);
	settle();
	cr_assert_eq(stats(1).bad_frames, 1);
	cr_assert_eq(stats(1).conns_closed, 1, "B closed A's connection");
	/* A connects anew. */
	tw_future *f = call(0, "B", "t::echo", 3, 1000);
	settle();
	cr_assert_eq(result_int(f), 3);
	tw_future_release(f);
	world_down(true);
}

/* ---- strangers ----------------------------------------------------------- */

Test(peer_auth, call_before_the_handshake_is_refused_and_closes)
{
	world_up_lazy(2, NULL);
	stranger_up(0, S_ADDR);
	struct stranger_conn *sc = s_connect(0, B_ADDR);
	unsigned char frame[512];
	s_send(0, sc, frame, echo_call(frame, sizeof(frame), 12, 0, 1));
	s_settle();
	cr_assert_eq(W.k[1].echo, 0);
	cr_assert_eq(sc->nframes, 1);
	cr_assert_eq(sc->type[0], TW_MSG_EXCEPTION);
	cr_assert_eq(sc->req[0], 12);
	cr_assert_eq(sc->exc_kind, TW_EAUTH);
	cr_assert(strstr(sc->exc_msg, "authentication required") != NULL, "%s",
		  sc->exc_msg);
	cr_assert(sc->closed, "B closed it");
	cr_assert_eq(stats(1).auth_failed, 1);
	cr_assert_eq(stats(1).calls_served, 0);
	stranger_down(0);
	world_down(true);
}

Test(peer_auth, big_header_before_the_handshake_closes)
{
	world_up_lazy(2, NULL);
	stranger_up(0, S_ADDR);
	struct stranger_conn *sc = s_connect(0, B_ADDR);
	s_settle();
	/* A frame over the handshake's limit (a header claiming more is
	 * refused before anything is reserved for it). */
	size_t len = 4096;
	unsigned char *frame = calloc(1, len);
	tw_frame_hdr h = {.version = TW_FRAME_VERSION,
			  .type = TW_MSG_AUTH,
			  .src = 0,
			  .dst = 1,
			  .payload_len = (uint32_t)(len - TW_FRAME_HDR_SIZE),
			  .total_len = len};
	tw_frame_hdr_encode(frame, &h);
	s_send(0, sc, frame, len);
	s_settle();
	free(frame);
	cr_assert_eq(net_stats().refused, 1);
	cr_assert(sc->closed);
	cr_assert_eq(sc->nframes, 0);
	cr_assert_eq(stats(1).conns_closed, 1);
	stranger_down(0);
	world_down(true);
}

Test(peer_auth, hello_from_a_non_member_is_refused)
{
	world_up_lazy(2, NULL);
	stranger_up(0, S_ADDR);
	struct stranger_conn *sc = s_connect(0, B_ADDR);
	struct auth_key none = {0};
	struct auth_hs hs;
	struct auth_msg hello;
	unsigned char frame[512];
	auth_client_start(&hs, &none, AUTH_CTX_DATA, 5, 1, &hello);
	s_send(0, sc, frame, auth_frame(frame, sizeof(frame), &hello));
	s_settle();
	cr_assert_eq(sc->nframes, 1);
	cr_assert_eq(sc->type[0], TW_MSG_EXCEPTION);
	cr_assert_eq(sc->exc_kind, TW_EAUTH);
	cr_assert(strstr(sc->exc_msg, "not a member") != NULL, "%s",
		  sc->exc_msg);
	cr_assert(sc->closed);
	stranger_down(0);
	world_down(true);
}

Test(peer_auth, wrong_proof_is_refused)
{
	secrets[0] = secrets[1] = "s3cret";
	world_up_lazy(2, with_secrets);
	stranger_up(0, S_ADDR);
	struct stranger_conn *sc = s_connect(0, B_ADDR);
	struct auth_key guess;
	cr_assert_eq(auth_key_load("guess", NULL, &guess), TW_OK);
	struct auth_hs hs;
	struct auth_msg hello, ch, proof;
	unsigned char frame[512];
	auth_client_start(&hs, &guess, AUTH_CTX_DATA, 0, 1, &hello);
	s_send(0, sc, frame, auth_frame(frame, sizeof(frame), &hello));
	s_settle();
	cr_assert_eq(auth_msg_decode(sc->auth, AUTH_MSG_SIZE, &ch), TW_OK);
	/* The client's check of B's MAC fails (it has not the secret); a
	 * stranger sends a PROOF all the same. */
	cr_assert_eq(auth_client_challenge(&hs, &ch, &proof), TW_EAUTH);
	memset(&proof, 0, sizeof(proof));
	proof.step = AUTH_PROOF;
	proof.ctx = AUTH_CTX_DATA;
	proof.from = 0;
	proof.to = 1;
	memset(proof.mac, 0x5a, sizeof(proof.mac));
	s_send(0, sc, frame, auth_frame(frame, sizeof(frame), &proof));
	s_settle();
	cr_assert_eq(sc->nframes, 2);
	cr_assert_eq(sc->type[1], TW_MSG_EXCEPTION);
	cr_assert_eq(sc->exc_kind, TW_EAUTH);
	cr_assert(strstr(sc->exc_msg, "does not know this group's secret") !=
			  NULL,
		  "%s", sc->exc_msg);
	cr_assert(sc->closed);
	cr_assert_eq(stats(1).auth_failed, 1);
	cr_assert_eq(stats(1).auth_ok, 0);
	auth_key_free(&guess);
	stranger_down(0);
	world_down(true);
}

Test(peer_auth, silent_connection_closes_at_the_deadline)
{
	world_up_lazy(2, NULL);
	stranger_up(0, S_ADDR);
	struct stranger_conn *sc = s_connect(0, B_ADDR);
	s_settle();
	cr_assert(sc->up);
	s_advance(10000 * MS - 1);
	cr_assert_not(sc->closed, "open until its deadline");
	cr_assert_eq(stats(1).auth_timeouts, 0);
	s_advance(2 * MS); /* past it, and the timer wheel's tick */
	cr_assert(sc->closed);
	cr_assert_eq(stats(1).auth_timeouts, 1);
	cr_assert_eq(stats(1).conns_closed, 1);
	stranger_down(0);
	world_down(true);
}

/* Stranger k's connections to B, opened one after the other (B hears of
 * each before the next: arrival order is connect order). */
static void s_connect_n(int k, int n)
{
	for (int i = 0; i < n; i++) {
		(void)s_connect(k, B_ADDR);
		s_settle();
	}
}

/* A valid HELLO (from A, to B: no secret needed to send one) on sc. */
static void s_hello(int k, struct stranger_conn *sc)
{
	struct auth_key none = {0};
	struct auth_hs hs;
	struct auth_msg hello;
	unsigned char frame[512];
	auth_client_start(&hs, &none, AUTH_CTX_DATA, 0, 1, &hello);
	s_send(k, sc, frame, auth_frame(frame, sizeof(frame), &hello));
	s_settle();
	cr_assert_eq(sc->nframes, 1);
	cr_assert_eq(sc->type[0], TW_MSG_AUTH, "B answered its CHALLENGE");
}

Test(peer_auth, unauthenticated_connections_are_bounded)
{
	world_up_lazy(2, small_bounds);
	stranger_up(0, S_ADDR);
	stranger_up(1, S2_ADDR);
	/* Two from one host are kept; a third takes the place of the one
	 * silent longest. */
	s_connect_n(0, 3);
	cr_assert(S[0].conns[0].closed, "the oldest made room");
	cr_assert_not(S[0].conns[1].closed || S[0].conns[2].closed);
	cr_assert_eq(stats(1).auth_evicted, 1);
	cr_assert_eq(stats(1).auth_refused, 0);
	/* Another host: one more fits the total of 3; the next takes the
	 * place of the oldest of any host. */
	s_connect_n(1, 2);
	cr_assert(S[0].conns[1].closed);
	cr_assert_not(S[0].conns[2].closed);
	cr_assert_not(S[1].conns[0].closed || S[1].conns[1].closed);
	cr_assert_eq(stats(1).auth_evicted, 2);
	cr_assert_eq(stats(1).auth_refused, 0);
	cr_assert_eq(stats(1).auth_timeouts, 0);

	/* The deadline frees the slots: a member gets in again. */
	s_advance(10001 * MS);
	cr_assert(S[0].conns[2].closed);
	cr_assert(S[1].conns[0].closed && S[1].conns[1].closed);
	cr_assert_eq(stats(1).auth_timeouts, 3);
	tw_future *f = call(0, "B", "t::echo", 1, 1000);
	s_settle();
	cr_assert_eq(result_int(f), 1);
	cr_assert_eq(stats(1).auth_evicted, 2);
	tw_future_release(f);
	stranger_down(0);
	stranger_down(1);
	world_down(true);
}

Test(peer_auth, young_handshakes_are_kept_and_the_newcomer_refused)
{
	world_up_lazy(2, small_bounds);
	stranger_up(0, S_ADDR);
	/* Two that sent their HELLO just now fill the host's bound. */
	s_connect_n(0, 2);
	s_hello(0, &S[0].conns[0]);
	s_hello(0, &S[0].conns[1]);
	/* Both mid-handshake and young: a third is refused on arrival. */
	s_connect_n(0, 1);
	cr_assert(S[0].conns[2].closed);
	cr_assert_not(S[0].conns[0].closed || S[0].conns[1].closed);
	cr_assert_eq(stats(1).auth_refused, 1);
	cr_assert_eq(stats(1).auth_evicted, 0);
	/* A PROOF is one round trip away: past the grace they are stalled,
	 * and the next takes the place of the oldest HELLO. */
	s_advance((PAUTH_HELLO_GRACE_MS + 1) * MS);
	cr_assert_eq(stats(1).auth_timeouts, 0);
	s_connect_n(0, 1);
	cr_assert(S[0].conns[0].closed);
	cr_assert_not(S[0].conns[1].closed || S[0].conns[3].closed);
	cr_assert_eq(stats(1).auth_evicted, 1);
	cr_assert_eq(stats(1).auth_refused, 1);
	stranger_down(0);
	world_down(true);
}

/* The default bound of unauthenticated connections per host. */
#define PER_HOST 64

/* The denial of service eviction ends: on A's host (loopback: one host
 * for every local process), a stranger holds all of the host's slots
 * with silent connections. A's new connection takes the place of the
 * oldest, and its call goes through. */
Test(peer_auth, stranger_on_the_members_host_cannot_keep_it_out)
{
	world_up_lazy(2, NULL);
	stranger_up(0, S_ADDR);
	cr_assert_eq(tw_fake_net_set_host(W.net, S_ADDR, A_ADDR), TW_OK);
	s_connect_n(0, PER_HOST);
	for (int i = 0; i < PER_HOST; i++)
		cr_assert(S[0].conns[i].up && !S[0].conns[i].closed);
	cr_assert_eq(stats(1).auth_evicted, 0);
	tw_future *f = call(0, "B", "t::echo", 7, 1000);
	s_settle();
	cr_assert_eq(result_int(f), 7);
	cr_assert(S[0].conns[0].closed, "the stranger's oldest made room");
	for (int i = 1; i < PER_HOST; i++)
		cr_assert_not(S[0].conns[i].closed);
	struct tw_agent_stats sb = stats(1);
	cr_assert_eq(sb.auth_evicted, 1);
	cr_assert_eq(sb.auth_refused, 0);
	cr_assert_eq(sb.auth_ok, 1);
	/* A's is authenticated: 7 of the host's 8 are held again, and the
	 * bound holds (one more from the stranger evicts, not adds). */
	cr_assert_eq(W.ag[1]->nunauth, PER_HOST - 1);
	tw_future_release(f);
	stranger_down(0);
	world_down(true);
}

/* A member's HELLO came a moment ago: it is not evicted in favour of a
 * newer connection while a silent one can go instead. */
Test(peer_auth, silent_connection_goes_before_a_young_handshake)
{
	world_up_lazy(2, small_bounds);
	stranger_up(0, S_ADDR);
	cr_assert_eq(tw_fake_net_set_host(W.net, S_ADDR, A_ADDR), TW_OK);
	/* The older is mid-handshake, the newer silent. */
	s_connect_n(0, 2);
	s_hello(0, &S[0].conns[0]);
	tw_future *f = call(0, "B", "t::echo", 8, 1000);
	s_settle();
	cr_assert_eq(result_int(f), 8);
	cr_assert(S[0].conns[1].closed, "the silent one made room");
	cr_assert_not(S[0].conns[0].closed, "the handshake in progress stays");
	cr_assert_eq(stats(1).auth_evicted, 1);
	cr_assert_eq(stats(1).auth_refused, 0);
	tw_future_release(f);
	stranger_down(0);
	world_down(true);
}

/* The total bound likewise: strangers of other hosts fill it; a member's
 * new connection takes the place of the oldest. */
Test(peer_auth, strangers_filling_the_total_cannot_keep_a_member_out)
{
	world_up_lazy(2, small_bounds);
	stranger_up(0, S_ADDR);
	stranger_up(1, S2_ADDR);
	s_connect_n(0, 2);
	s_connect_n(1, 1);
	cr_assert_eq(W.ag[1]->nunauth, 3);
	tw_future *f = call(0, "B", "t::echo", 9, 1000);
	s_settle();
	cr_assert_eq(result_int(f), 9);
	cr_assert(S[0].conns[0].closed, "the oldest of any host made room");
	cr_assert_not(S[0].conns[1].closed || S[1].conns[0].closed);
	cr_assert_eq(stats(1).auth_evicted, 1);
	cr_assert_eq(stats(1).auth_refused, 0);
	cr_assert_eq(W.ag[1]->nunauth, 2);
	tw_future_release(f);
	stranger_down(0);
	stranger_down(1);
	world_down(true);
}

/* A member's connection does not wait on a silent peer for ever. */
Test(peer_auth, outbound_handshake_deadline_fails_held_calls)
{
	world_up_lazy(2, NULL);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, true), TW_OK);
	tw_future *f = call(0, "B", "t::echo", 1, 0); /* no timeout */
	settle();
	cr_assert_not(tw_future_done(f));
	advance(10001 * MS);
	const tw_error *e = failure(f, TW_EUNREACHABLE);
	cr_assert(strstr(e->msg, "did not complete the authentication") != NULL,
		  "%s", e->msg);
	cr_assert_eq(stats(0).auth_timeouts, 1);
	cr_assert_eq(tw_fake_net_hold(W.net, B_ADDR, A_ADDR, false), TW_OK);
	tw_future *g = call(0, "B", "t::echo", 2, 1000);
	settle();
	cr_assert_eq(result_int(g), 2);
	tw_future_release(f);
	tw_future_release(g);
	world_down(true);
}

Test(peer_auth, bounds_and_deadline_must_be_positive)
{
	tw_fake_net *net;
	cr_assert_eq(tw_fake_net_create(&net), TW_OK);
	struct tw_agent_opts o;
	tw_agent_opts_init(&o, sizeof(o));
	cr_assert_eq(o.max_unauth_per_host, PER_HOST);
	cr_assert_eq(o.max_unauth, 256);
	cr_assert_eq(o.auth_timeout_ms, 10000);
	o.name = "A";
	o.world_size = 1;
	o.embedded = true;
	o.auth_timeout_ms = 0;
	struct tw_agent_fake h = {.net = net, .names = names, .addrs = addrs};
	tw_agent *a = NULL;
	cr_assert_eq(tw_agent_init_fake(&o, &h, &a), TW_EINVAL);
	cr_assert(strstr(tw_errmsg(TW_EINVAL), "auth_timeout_ms") != NULL);
	cr_assert_eq(tw_fake_net_destroy(net), TW_OK);
}

/* A HELLO claiming the receiver's own id is refused: calls to self never
 * take the network, so it can only be someone posing as the worker. */
Test(peer_auth, hello_from_the_receivers_own_id_is_refused)
{
	world_up_lazy(2, NULL);
	stranger_up(0, S_ADDR);
	struct stranger_conn *sc = s_connect(0, B_ADDR);
	s_settle();
	struct auth_key none = {0};
	struct auth_hs hs;
	struct auth_msg hello;
	unsigned char frame[512];
	auth_client_start(&hs, &none, AUTH_CTX_DATA, 1, 1, &hello);
	s_send(0, sc, frame, auth_frame(frame, sizeof(frame), &hello));
	s_settle();
	cr_assert_eq(sc->nframes, 1);
	cr_assert_eq(sc->type[0], TW_MSG_EXCEPTION, "refused, not challenged");
	cr_assert(sc->closed);
	cr_assert_eq(stats(1).auth_failed, 1);
	cr_assert_eq(stats(1).auth_ok, 0);
	stranger_down(0);
	world_down(true);
}
