/* DPDK transport: owns one queue pair of a port, its sessions, their send
 * and receive state (packetization, credits, acks, go-back-N
 * retransmission, reassembly) and the external buffers it lends the NIC. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include <sodium.h>

#include "dataplane/buf_impl.h"
#include "dataplane/clock.h"
#include "dataplane/dpdk_impl.h"
#include "dataplane/list.h"
#include "dataplane/log.h"
#include "dataplane/probe.h"

#define MAX_BURST TW_DPDK_MAX_BURST
#define TXB_CAP 512u    /* packets built, not yet taken by the PMD */
#define CTL_RESERVE 32u /* of TXB_CAP kept for acks and control */
#define MAX_RX_WINDOW TW_DPDK_MAX_RX_WINDOW
#define EXT_REF_MAX 60000u /* shinfo refcnt is 16 bits */
#define DESTROY_NS (2ull * 1000 * 1000 * 1000)
#define RTO_BACKOFF_MAX 3u /* rto doubles up to 8x without progress */
#define DACK_PKTS 4u /* an ack held back covers this many packets at most */

_Static_assert(TWP_ERR_COUNT_ <= TW_DPDK_BAD_REASONS,
	       "every packet error has its counter");

struct dt;
struct dsess;

/* One frame being sent: the send request plus what it takes to build any
 * of its packets again and to know when the NIC is done with its bytes. */
struct txm {
	struct tw_send_req *r;
	struct dsess *s;
	/* On one list at a time: s->txq, then t->done (link); or, unused,
	 * t->txm_free (free_link). */
	union {
		STAILQ_ENTRY(txm) link;
		SLIST_ENTRY(txm) free_link;
	};
	struct dt *t;
	uint64_t len;
	uint32_t first_seq, npkts, msg;
	bool assigned; /* first_seq/npkts/msg are set */
	bool finished; /* acked or failed: no more packets */
	bool ext_used; /* shinfo holds our reference */
	tw_status st;
	/* Where packetization stands: byte cur_off of the frame is byte
	 * cur_iov_off of iov[cur_iov]. */
	uint64_t cur_off;
	uint32_t cur_iov;
	size_t cur_iov_off;
	struct rte_mbuf_ext_shared_info shinfo;
};

enum { S_CONNECTING, S_OPEN, S_CLOSED };

struct ooo_slot {
	struct rte_mbuf *m;
	struct twp_hdr h;
	const uint8_t *payload;
};

/* A replay window over numbers that only grow: the highest taken and a
 * bit for each of the 63 below it (as IPsec's). Zeroed: nothing taken. */
struct win64 {
	uint64_t max, bits;
};

/* Whether x is new: above the highest taken, or one of the 63 below it
 * not taken yet. */
static inline bool win64_new(const struct win64 *w, uint64_t x)
{
	if (x > w->max)
		return true;
	uint64_t d = w->max - x;
	return d < 64 && ((w->bits >> d) & 1) == 0;
}

/* Mark x taken (win64_new said so). */
static inline void win64_take(struct win64 *w, uint64_t x)
{
	if (x > w->max) {
		uint64_t d = x - w->max;
		w->bits = d >= 64 ? 1 : (w->bits << d) | 1;
		w->max = x;
	} else {
		w->bits |= UINT64_C(1) << (w->max - x);
	}
}

/* Make x untaken again, if the window still covers it. */
static inline void win64_untake(struct win64 *w, uint64_t x)
{
	if (x <= w->max && w->max - x < 64)
		w->bits &= ~(UINT64_C(1) << (w->max - x));
}

struct dsess {
	tw_conn base; /* first */
	struct dt *t;
	uint64_t id, peer_id;
	struct twp_ep peer;
	/* A tagged session (dpdk_pkt.h): each direction's key, the number
	 * of the next packet we send, and the receiver's replay window (the
	 * highest packet number taken and a bit for each of the 63 below). */
	bool tagged;
	struct twp_mac *mtx, *mrx; /* tagged: one allocation, both */
	uint64_t pn_tx;
	struct win64 pn_rx;
	/* Setup (dpdk_pkt.h): our nonce and first packet number, and the
	 * CONNECT's nonce (an acceptor's, to say its ACCEPT again). */
	uint8_t nonce[TWP_NONCE_LEN], peer_nonce[TWP_NONCE_LEN];
	/* A connector's: the acceptor's cookie (its COOKIE), which our
	 * CONNECTs carry from then on. */
	uint8_t cookie[TWP_COOKIE_LEN];
	bool has_cookie;
	uint32_t isn;
	uint8_t state;
	tw_status close_st;
	uint32_t mss;
	uint64_t last_rx;
	/* Whether the peer has shown it holds the session's key: for an
	 * acceptor, a packet after the CONNECT (a CONNECT replayed from the
	 * wire proves nothing); until then ACCEPTs go again, up to
	 * prove_by. ack_accept_at: when we last answered a repeated
	 * ACCEPT (a connector). */
	bool proven;
	bool unproven; /* an acceptor's, counted in t->unproven */
	uint64_t prove_by, ack_accept_at;

	/* Sending. txq: frames not finished, in order; snd_cur is the frame
	 * holding packet snd_nxt (or the first one without numbers). */
	STAILQ_HEAD(, txm) txq;
	struct txm *snd_cur;
	uint32_t una, snd_nxt, snd_max, next_msg;
	uint32_t held;      /* send requests whose done has not run */
	uint32_t rto_count; /* timeouts without progress */
	uint32_t fast_una;  /* una of the last fast retransmit */
	bool fast_done;

	/* Receiving. */
	uint32_t rcv_next, rcv_msg;
	tw_buf *rx_buf;
	uint64_t rx_len, rx_have;
	tw_frame_hdr rx_hdr; /* the frame's, decoded from its first packet */
	bool rx_active;
	struct ooo_slot *ooo; /* rx_window slots, by seq % rx_window */
	uint32_t ooo_count;
	uint32_t nak_for;
	bool nak_sent;
	bool rx_skip; /* the frame being received is refused: dropped */
	/* A frame in assembly: the bytes reserved for it (its length,
	 * counted in the worker's env->asm_reserved and the loop's
	 * t->st.asm_reserved), and when it last moved ASM_PROGRESS bytes
	 * (rx_mark: rx_have then). */
	uint64_t rx_resv, rx_progress, rx_mark;
	/* Receive backpressure: data is neither taken nor acked while
	 * paused (the sender's credits run out). linger: closing once every
	 * send is acked (close_after_send), or at linger_at. */
	bool paused, linger;
	tw_status linger_st;
	uint64_t linger_at;

	/* What the next control pass must send. */
	bool ack_due, nak_due, ping_due, connect_due, accept_due;
	/* Delayed acknowledgement: ack_sent is the ack (rcv_next) our last
	 * packet carried; a lone packet that ends a frame is acked at
	 * dack_at (ack_delay_ns on) unless a packet of ours carries the ack
	 * first: the reply to a call, or the caller's next call. */
	uint32_t ack_sent;
	uint64_t dack_at;
	/* In-order packets of a frame not finished came: the control pass
	 * acks them, unless the frame's last packet came in the same burst
	 * and holds the ack back with it (a small multi-packet call or
	 * reply: the answer, or the next call, carries it). */
	bool ack_frame;
	/* Whether s is on t->ctl, t->ready, t->reap, t->dack: set and
	 * cleared with the insert and the removal (in_reap stays: s leaves
	 * to be freed). */
	bool in_ctl, in_ready, in_reap, in_dack;
	STAILQ_ENTRY(dsess) ctl_link, ready_link;
	TAILQ_ENTRY(dsess) dack_link;
	SLIST_ENTRY(dsess) reap_link;
	TAILQ_ENTRY(dsess) link; /* in t->sessions */

	struct tw_timer rto, ka;
};

/* A member endpoint that may connect, and the window of the CONNECT
 * counters taken from it (as pn_take's): a CONNECT captured from the wire
 * and replayed is refused before it takes a slot. */
struct admit_ep {
	struct twp_ep ep;
	struct win64 connects; /* counters of the sessions we made */
};

struct dt {
	tw_transport base; /* first */
	struct tw_dpdk_opts o;
	tw_dpdk_env *env;
	struct tw_dpdk_queue *dq;
	uint16_t q, port_id;
	uint32_t burst, win;
	int64_t lend_max; /* received mbufs lent up at most */
	uint64_t ka_ns;
	uint64_t tick_ns; /* each session's timer: keepalive, stall, dead */
	uint64_t ack_delay_ns; /* o.ack_delay_ns, at most rto_ns / 4 */
	uint32_t dack_pkts;    /* unacked packets an ack is held back for */
	uint32_t ooo_max, rexmit_max;
	struct twp_ep self;
	struct twp_local local;
	struct tw_poller poller;
	bool poller_on, listening, destroying, zc;
	bool sw_udp_csum;

	struct dsess **slots; /* max_sessions */
	uint64_t *gen;
	uint32_t slot_hint;
	TAILQ_HEAD(, dsess) sessions; /* newest first */
	uint32_t nsess;
	uint32_t unproven; /* accepted sessions not proven yet */
	uint64_t next_conn_id;
	STAILQ_HEAD(, dsess) ready; /* data to send, round robin */
	STAILQ_HEAD(, dsess) ctl;   /* control packets to send */
	SLIST_HEAD(, dsess) reap;   /* closed, newest first */
	/* Acks held back, by dack_at (a constant delay: oldest first); the
	 * timer wakes a sleeping loop for the first. */
	TAILQ_HEAD(, dsess) dack;
	struct tw_timer dack_tm;

	SLIST_HEAD(, txm) txm_free;
	STAILQ_HEAD(, txm) done; /* finished frames whose done is due */
	uint32_t ext_waiting;    /* finished frames the NIC still reads */

	struct rte_mbuf **txb;
	uint32_t txn;
	struct rte_mbuf **rxb;

	tw_buf_pool *pool;
	struct tw_timer idle;
	uint64_t idle_cur;    /* the idle timer's period now */
	uint64_t quiet_since; /* the first idle tick that saw no work */
	bool worked;          /* d_poll did something since the last tick */
	struct tw_dpdk_stats st;

	/* Who may open a session (tw_dpdk_transport_secure): the secret
	 * that keys the setup block's mac, and, with admit_only, the
	 * endpoints ops->admit gave (none before its first call). */
	uint8_t *secret;
	size_t secret_len;
	bool admit_only;
	bool want_tag; /* a secret, and tags not turned off */
	/* A data packet's tagged bytes laid end to end when the packet is
	 * a chain (external segments): TWP_HDR_LEN + mss. */
	uint8_t *scratch;
	struct admit_ep *admit;
	uint32_t nadmit;
	/* Our CONNECTs' counter (the first 8 bytes of their nonce): from
	 * the clock at creation, one up per CONNECT. */
	uint64_t connect_ctr;
	/* Keys our cookies (on_connect): random, this transport's only. */
	uint8_t cookie_key[crypto_generichash_KEYBYTES];
};

static const struct tw_transport_ops dpdk_ops;

static inline struct dt *DT(tw_transport *t)
{
	return (struct dt *)(void *)t;
}

static inline bool seq_lt(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

static inline bool seq_leq(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) <= 0;
}

static inline uint64_t now_ns(struct dt *t)
{
	return tw_loop_now(t->base.loop);
}

static uint32_t rnd32(void)
{
	uint32_t v;
	randombytes_buf(&v, sizeof(v));
	return v;
}

static inline bool same_ep(const struct twp_ep *a, const struct twp_ep *b)
{
	return a->ip == b->ip && a->port == b->port &&
	       memcmp(a->mac, b->mac, 6) == 0;
}

/* Whether ep may open a session with us. */
/* Whether ep may open a session; *a its entry (NULL when anyone may). */
static bool admitted(const struct dt *t, const struct twp_ep *ep,
		     struct admit_ep **a)
{
	*a = NULL;
	if (!t->admit_only)
		return true;
	for (uint32_t i = 0; i < t->nadmit; i++) {
		if (same_ep(&t->admit[i].ep, ep)) {
			*a = &t->admit[i];
			return true;
		}
	}
	return false;
}

/* An accepted session that ends before its peer proved it (its ACCEPT
 * lost for accept_timeout_ns, or evicted by more CONNECTs): the real
 * connector may still be sending that CONNECT, so its counter is free
 * again. Such a CONNECT, replayed, can hold a slot again: as before
 * counters, at most UNPROVEN_PER_EP per endpoint, accept_timeout_ns. */
static void connect_untake(struct dt *t, const struct dsess *s)
{
	for (uint32_t i = 0; i < t->nadmit; i++) {
		if (same_ep(&t->admit[i].ep, &s->peer)) {
			win64_untake(&t->admit[i].connects,
				     twp_nonce_counter(s->peer_nonce));
			return;
		}
	}
}

/* s's tag state, in m (two, malloc'ed; s owns them now), from its keys
 * (dpdk_pkt.h): the connector's sending key and the acceptor's. */
static void sess_keys(struct dsess *s, struct twp_mac *m, bool connector,
		      uint64_t conn_sess, uint64_t acc_sess,
		      const uint8_t *conn_nonce, const uint8_t *acc_nonce)
{
	struct dt *t = s->t;
	uint8_t kc[TWP_KEY_LEN], ka[TWP_KEY_LEN];
	twp_session_keys(t->secret, t->secret_len, conn_sess, acc_sess,
			 conn_nonce, acc_nonce, kc, ka);
	s->mtx = m;
	s->mrx = m + 1;
	twp_mac_init(s->mtx, connector ? kc : ka);
	twp_mac_init(s->mrx, connector ? ka : kc);
	sodium_memzero(kc, sizeof(kc));
	sodium_memzero(ka, sizeof(ka));
	s->tagged = true;
}

/* An accepted session is proven: its peer holds the session's key. */
static inline void sess_proven(struct dsess *s)
{
	s->proven = true;
	if (__builtin_expect(s->unproven, 0)) {
		s->unproven = false;
		s->t->unproven--;
	}
}

/* ------------------------------------------------------------------ */
/* Lists                                                               */

static void ready_add(struct dsess *s)
{
	struct dt *t = s->t;
	if (s->in_ready || s->state != S_OPEN || s->snd_cur == NULL)
		return;
	s->in_ready = true;
	STAILQ_INSERT_TAIL(&t->ready, s, ready_link);
}

static void ctl_add(struct dsess *s)
{
	struct dt *t = s->t;
	if (s->in_ctl)
		return;
	s->in_ctl = true;
	STAILQ_INSERT_TAIL(&t->ctl, s, ctl_link);
}

/* Hold s's ack back for ack_delay_ns. */
static void dack_add(struct dt *t, struct dsess *s)
{
	if (s->in_dack)
		return;
	s->in_dack = true;
	s->dack_at = now_ns(t) + t->ack_delay_ns;
	TAILQ_INSERT_TAIL(&t->dack, s, dack_link);
	if (!tw_timer_armed(&t->dack_tm))
		tw_loop_timer_after(t->base.loop, &t->dack_tm, t->ack_delay_ns);
}

static void dack_del(struct dt *t, struct dsess *s)
{
	if (!s->in_dack)
		return;
	s->in_dack = false;
	TAILQ_REMOVE(&t->dack, s, dack_link);
}

/* Acks held back whose time has come, unless a packet carried them. */
static void dack_run(struct dt *t)
{
	struct dsess *s;
	uint64_t now = now_ns(t);
	while ((s = TAILQ_FIRST(&t->dack)) != NULL && s->dack_at <= now) {
		dack_del(t, s);
		if (s->state == S_OPEN && s->ack_sent != s->rcv_next) {
			s->ack_due = true;
			ctl_add(s);
		}
	}
}

static void dack_fire(struct tw_timer *tm, void *arg)
{
	struct dt *t = arg;
	dack_run(t);
	struct dsess *s = TAILQ_FIRST(&t->dack);
	if (s != NULL)
		tw_loop_timer_after(
			t->base.loop, tm,
			s->dack_at > now_ns(t) ? s->dack_at - now_ns(t) : 0);
}

/* ------------------------------------------------------------------ */
/* Send completion                                                     */

static void done_push(struct dt *t, struct txm *x)
{
	STAILQ_INSERT_TAIL(&t->done, x, link);
}

/* The PMD (or we) freed the last mbuf that pointed into the frame. Runs
 * on the thread that frees it: ours, the queue's only user. */
static void ext_free_cb(void *addr, void *opaque)
{
	(void)addr;
	struct txm *x = opaque;
	x->t->ext_waiting--;
	done_push(x->t, x);
}

/* No more packets of x will be built: acked (TW_OK) or failed. done runs
 * once the NIC has let go of its bytes too. */
static void txm_finish(struct dt *t, struct txm *x, tw_status st)
{
	x->finished = true;
	x->st = st;
	if (x->ext_used) {
		t->ext_waiting++;
		if (rte_mbuf_ext_refcnt_update(&x->shinfo, -1) == 0)
			ext_free_cb(NULL, x);
		return;
	}
	done_push(t, x);
}

static void reap_add(struct dsess *s);
static void sess_fail(struct dsess *s, tw_status st, bool reset);

static int run_done(struct dt *t)
{
	int n = 0;
	struct txm *x;
	while ((x = STAILQ_FIRST(&t->done)) != NULL) {
		STAILQ_REMOVE_HEAD(&t->done, link);
		struct dsess *s = x->s;
		struct tw_send_req *r = x->r;
		if (x->st == TW_OK) {
			t->st.frames_tx++;
			t->st.bytes_tx += x->len;
		}
		tw_status st = x->st;
		x->r = NULL;
		SLIST_INSERT_HEAD(&t->txm_free, x, free_link);
		s->held--;
		r->done(r, st);
		if (__builtin_expect(s->linger, 0) && s->held == 0)
			sess_fail(s, s->linger_st, true); /* all acked */
		if (s->state == S_CLOSED && s->held == 0)
			reap_add(s);
		n++;
	}
	return n;
}

/* ------------------------------------------------------------------ */
/* Building packets                                                    */

static inline bool txb_room(const struct dt *t, uint32_t reserve)
{
	return t->txn + reserve < TXB_CAP;
}

static inline void txb_push(struct dt *t, struct rte_mbuf *m)
{
	t->txb[t->txn++] = m;
}

/* Headers for a packet of h->len frame bytes, at p (TWP_HEADERS bytes),
 * and the mbuf's offload flags. The tag, if any, and a software UDP
 * checksum come once the frame bytes are in. */
static void put_headers(struct dt *t, struct rte_mbuf *m, uint8_t *p,
			const struct twp_ep *dst, const struct twp_hdr *h)
{
	tw_dpdk_env *e = t->env;
	twp_l2l4_build(p, &t->self, dst, TWP_HDR_LEN + h->len, e->tx_ip_csum);
	twp_hdr_encode(p + TWP_L2L4_LEN, h);
	if (e->tx_ip_csum || e->tx_udp_csum) {
		m->l2_len = TWP_ETH_LEN;
		m->l3_len = TWP_IP_LEN;
		m->ol_flags |= RTE_MBUF_F_TX_IPV4;
		if (e->tx_ip_csum)
			m->ol_flags |= RTE_MBUF_F_TX_IP_CKSUM;
		if (e->tx_udp_csum) {
			m->ol_flags |= RTE_MBUF_F_TX_UDP_CKSUM;
			twp_udp_phdr_set(p);
		}
	}
}

/* The next packet of s gets a number; tagged sessions count every packet
 * they send for the receiver's replay window. */
static inline void pn_next(struct dsess *s, struct twp_hdr *h)
{
	h->pn = s != NULL ? s->pn_tx++ : 0;
}

/* A control packet (ACK, CONNECT, ACCEPT, RESET): the header, then
 * h->len bytes of body (the setup block), if any. s: the session it
 * belongs to (NULL: none, as a RESET answering an unknown session); a
 * tagged session's packets carry its tag. */
static bool send_ctl_body(struct dt *t, struct dsess *s,
			  const struct twp_ep *dst, struct twp_hdr *h,
			  const uint8_t *body)
{
	if (!txb_room(t, 0))
		return false;
	struct rte_mbuf *m = rte_pktmbuf_alloc(t->dq->tx_mp);
	if (m == NULL) {
		t->st.tx_nombuf++;
		return false;
	}
	if (h->type != TWP_CONNECT && h->type != TWP_ACCEPT)
		pn_next(s, h);
	uint8_t *p = (uint8_t *)rte_pktmbuf_append(m, TWP_HEADERS + h->len);
	put_headers(t, m, p, dst, h);
	if (h->len != 0)
		memcpy(p + TWP_HEADERS, body, h->len);
	if (s != NULL && s->tagged && h->type != TWP_CONNECT &&
	    h->type != TWP_ACCEPT)
		twp_tag_set(s->mtx, p + TWP_L2L4_LEN, TWP_HDR_LEN + h->len);
	if (!t->env->tx_udp_csum && t->sw_udp_csum)
		twp_udp_csum_set(p, twp_csum_add(0, p + TWP_L2L4_LEN,
						 TWP_HDR_LEN + h->len, false));
	txb_push(t, m);
	return true;
}

static bool send_ctl(struct dt *t, struct dsess *s, const struct twp_ep *dst,
		     struct twp_hdr *h)
{
	return send_ctl_body(t, s, dst, h, NULL);
}

/* s's CONNECT or ACCEPT (h without len), with its setup block; a
 * CONNECT with the acceptor's cookie once it has one. */
static bool send_setup(struct dt *t, struct dsess *s, struct twp_hdr *h)
{
	struct twp_setup b;
	memcpy(b.nonce, s->nonce, TWP_NONCE_LEN);
	b.isn = s->isn;
	bool cookie = h->type == TWP_CONNECT && s->has_cookie;
	h->len = TWP_SETUP_LEN + (cookie ? TWP_COOKIE_LEN : 0);
	/* CONNECT: we will tag if the acceptor does too; ACCEPT: what
	 * both sides asked for (on_connect). */
	if (h->type == TWP_CONNECT ? t->want_tag : s->tagged)
		h->flags |= TWP_F_TAG;
	if (t->secret_len != 0)
		twp_setup_mac(t->secret, t->secret_len, h, &t->self, &s->peer,
			      &b,
			      h->type == TWP_ACCEPT ? s->peer_nonce
			      : cookie              ? s->cookie
						    : NULL,
			      b.mac);
	else
		memset(b.mac, 0, sizeof(b.mac));
	uint8_t body[TWP_SETUP_LEN + TWP_COOKIE_LEN];
	twp_setup_encode(body, &b);
	if (cookie)
		memcpy(body + TWP_SETUP_LEN, s->cookie, TWP_COOKIE_LEN);
	return send_ctl_body(t, s, &s->peer, h, body);
}

/* A RESET of session s (its tag, if tagged), or, s NULL, one answering a
 * packet for no session of ours. */
static void send_reset(struct dt *t, struct dsess *s, const struct twp_ep *dst,
		       uint64_t dst_sess, uint64_t src_sess)
{
	struct twp_hdr h = {
		.type = TWP_RESET, .dst_sess = dst_sess, .src_sess = src_sess};
	if (send_ctl(t, s, dst, &h))
		t->st.resets_tx++;
}

/* Move x's iovec cursor to frame offset off. */
static void txm_seek(struct txm *x, uint64_t off)
{
	if (off == x->cur_off)
		return;
	const struct tw_send_req *r = x->r;
	uint32_t i = 0;
	uint64_t rem = off;
	while (i < r->niov && rem >= r->iov[i].iov_len) {
		rem -= r->iov[i].iov_len;
		i++;
	}
	x->cur_iov = i;
	x->cur_iov_off = (size_t)rem;
	x->cur_off = off;
}

static inline rte_iova_t iova_of(const struct dt *t, const void *p)
{
	return t->env->iova_va ? (rte_iova_t)(uintptr_t)p
			       : rte_mem_virt2iova(p);
}

/* Build packet seq (of frame x, which holds it) into the tx buffer. */
static bool build_pkt(struct dt *t, struct dsess *s, struct txm *x,
		      uint32_t seq)
{
	uint32_t k = seq - x->first_seq;
	uint64_t off = (uint64_t)k * s->mss;
	uint32_t plen = (uint32_t)(x->len - off < s->mss ? x->len - off
							 : s->mss);

	struct rte_mbuf *head = rte_pktmbuf_alloc(t->dq->tx_mp);
	if (head == NULL) {
		t->st.tx_nombuf++;
		return false;
	}
	uint8_t *p = rte_pktmbuf_mtod(head, uint8_t *);
	head->data_len = TWP_HEADERS;
	struct twp_hdr h = {
		.type = TWP_DATA,
		.dst_sess = s->peer_id,
		.src_sess = s->id,
		.seq = seq,
		.ack = s->rcv_next,
		.msg = x->msg,
		.len = plen,
		.frame_off = off,
		.frame_len = x->len,
	};
	bool sw_csum = !t->env->tx_udp_csum && t->sw_udp_csum;
	pn_next(s, &h);
	put_headers(t, head, p, &s->peer, &h);
	uint32_t sum = 0; /* of the frame bytes, for a software checksum */

	txm_seek(x, off);
	const struct iovec *iov = x->r->iov;
	struct rte_mbuf *tail = head;
	bool ext = false;
	uint32_t pos = 0;
	while (pos < plen) {
		while (x->cur_iov_off == iov[x->cur_iov].iov_len) {
			x->cur_iov++;
			x->cur_iov_off = 0;
		}
		const struct iovec *v = &iov[x->cur_iov];
		const uint8_t *src = (const uint8_t *)v->iov_base +
				     x->cur_iov_off;
		size_t avail = v->iov_len - x->cur_iov_off;
		uint32_t n = avail < plen - pos ? (uint32_t)avail : plen - pos;
		bool zc = t->zc && v->iov_len >= t->o.zc_threshold &&
			  (!x->ext_used ||
			   rte_mbuf_ext_refcnt_read(&x->shinfo) < EXT_REF_MAX);
		struct rte_mbuf *em = zc ? rte_pktmbuf_alloc(t->dq->ext_mp)
					 : NULL;
		if (em != NULL) {
			if (!x->ext_used) {
				x->shinfo.free_cb = ext_free_cb;
				x->shinfo.fcb_opaque = x;
				rte_mbuf_ext_refcnt_set(&x->shinfo, 1);
				x->ext_used = true;
			}
			rte_mbuf_ext_refcnt_update(&x->shinfo, 1);
			rte_pktmbuf_attach_extbuf(em, (void *)(uintptr_t)src,
						  iova_of(t, src), (uint16_t)n,
						  &x->shinfo);
			em->data_len = (uint16_t)n;
			tail->next = em;
			tail = em;
			head->nb_segs++;
			ext = true;
			t->st.zc_segs++;
			t->st.zc_bytes += n;
		} else {
			if (ext) {
				/* Bytes after an external segment need a
				 * segment of their own. */
				struct rte_mbuf *cm =
					rte_pktmbuf_alloc(t->dq->tx_mp);
				if (cm == NULL) {
					rte_pktmbuf_free(head);
					t->st.tx_nombuf++;
					x->cur_off = UINT64_MAX; /* reseek */
					return false;
				}
				tail->next = cm;
				tail = cm;
				head->nb_segs++;
				ext = false;
			}
			memcpy(rte_pktmbuf_mtod_offset(tail, uint8_t *,
						       tail->data_len),
			       src, n);
			tail->data_len = (uint16_t)(tail->data_len + n);
			t->st.copied_bytes += n;
		}
		if (sw_csum)
			sum = twp_csum_add(sum, src, n, (pos & 1) != 0);
		pos += n;
		x->cur_iov_off += n;
		x->cur_off += n;
	}
	head->pkt_len = TWP_HEADERS + plen;
	if (s->tagged) {
		uint8_t *th = p + TWP_L2L4_LEN;
		if (head->nb_segs == 1) {
			twp_tag_set(s->mtx, th, TWP_HDR_LEN + plen);
		} else {
			/* External segments: the tagged bytes end to end in
			 * scratch (a read of what the NIC will read, as the
			 * software checksum is). */
			const uint8_t *c = rte_pktmbuf_read(head, TWP_L2L4_LEN,
							    TWP_HDR_LEN + plen,
							    t->scratch);
			uint64_t tag = twp_tag(s->mtx, c, TWP_HDR_LEN + plen);
			for (unsigned i = 0; i < 8; i++)
				th[TWP_TAG_OFF + i] = (uint8_t)(tag >> (8 * i));
		}
	}
	if (sw_csum)
		twp_udp_csum_set(p, twp_csum_add(sum, p + TWP_L2L4_LEN,
						 TWP_HDR_LEN, false));

	if (seq_lt(seq, s->snd_max)) {
		t->st.retransmits++;
		TW_PROBE3(dpdk_rexmit, s->id, seq, t->st.retransmits);
	} else
		s->snd_max = seq + 1;
	/* The packet carries rcv_next: a separate ACK is not needed. */
	s->ack_due = s->ack_frame = false;
	s->ack_sent = s->rcv_next;
	if (!tw_timer_armed(&s->rto))
		tw_loop_timer_after(t->base.loop, &s->rto, t->o.rto_ns);
	t->st.data_pkts_tx++;
	txb_push(t, head);
	return true;
}

/* Build the next data packet of s (snd_nxt), numbering its frame when it
 * is the frame's first. */
static bool build_data(struct dt *t, struct dsess *s)
{
	struct txm *x = s->snd_cur;
	if (!x->assigned) {
		x->first_seq = s->snd_nxt;
		x->npkts = x->len == 0
				   ? 1
				   : (uint32_t)((x->len + s->mss - 1) / s->mss);
		x->msg = s->next_msg++;
		x->assigned = true;
	}
	if (!build_pkt(t, s, x, s->snd_nxt))
		return false;
	s->snd_nxt++;
	if (s->snd_nxt - x->first_seq == x->npkts)
		s->snd_cur = STAILQ_NEXT(x, link);
	return true;
}

static inline bool can_send(const struct dt *t, const struct dsess *s)
{
	return s->state == S_OPEN && s->snd_cur != NULL &&
	       seq_lt(s->snd_nxt, s->una + t->o.credits);
}

/* Data packets of ready sessions, round robin, burst at a time each. */
static int tx_sessions(struct dt *t)
{
	int work = 0;
	struct dsess *stop = STAILQ_LAST(&t->ready, dsess, ready_link), *s;
	while ((s = STAILQ_FIRST(&t->ready)) != NULL &&
	       txb_room(t, CTL_RESERVE)) {
		STAILQ_REMOVE_HEAD(&t->ready, ready_link);
		s->in_ready = false;
		uint32_t n = 0;
		bool nombuf = false;
		while (n < t->burst && can_send(t, s) &&
		       txb_room(t, CTL_RESERVE)) {
			if (!build_data(t, s)) {
				nombuf = true;
				break;
			}
			n++;
		}
		work += (int)n;
		if (can_send(t, s))
			ready_add(s); /* more: after the others */
		if (s == stop || nombuf)
			break;
	}
	return work;
}

/* ACKs, NAKs, keepalives, CONNECT, ACCEPT. */
static void tx_ctl(struct dt *t)
{
	/* Up to the tail as it is now: a session kept for want of room goes
	 * back at the end, for the next pass. Taken off one at a time, so
	 * in_ctl always says whether s is on the list. */
	struct dsess *last = STAILQ_LAST(&t->ctl, dsess, ctl_link), *s;
	while ((s = STAILQ_FIRST(&t->ctl)) != NULL) {
		STAILQ_REMOVE_HEAD(&t->ctl, ctl_link);
		s->in_ctl = false;
		bool keep = false;
		if (s->ack_frame) {
			/* The burst ended inside a frame: ack what came. */
			s->ack_frame = false;
			s->ack_due = true;
		}
		if (s->state == S_CONNECTING && s->connect_due) {
			struct twp_hdr h = {.type = TWP_CONNECT,
					    .src_sess = s->id,
					    .frame_len = t->env->mss};
			if (send_setup(t, s, &h))
				s->connect_due = false;
			else
				keep = true;
		}
		if (s->state == S_OPEN && s->accept_due) {
			struct twp_hdr h = {.type = TWP_ACCEPT,
					    .dst_sess = s->peer_id,
					    .src_sess = s->id,
					    .frame_len = t->env->mss};
			if (send_setup(t, s, &h))
				s->accept_due = false;
			else
				keep = true;
		}
		if (s->state == S_OPEN &&
		    (s->ack_due || s->nak_due || s->ping_due)) {
			struct twp_hdr h = {
				.type = TWP_ACK,
				.flags =
					(uint8_t)((s->nak_due ? TWP_F_NAK : 0) |
						  (s->ping_due ? TWP_F_ACK_REQ
							       : 0)),
				.dst_sess = s->peer_id,
				.src_sess = s->id,
				.ack = s->rcv_next,
			};
			if (send_ctl(t, s, &s->peer, &h)) {
				t->st.acks_tx++;
				s->ack_sent = h.ack;
				if (s->nak_due)
					t->st.naks_tx++;
				if (s->ping_due)
					t->st.pings_tx++;
				s->ack_due = s->nak_due = s->ping_due = false;
			} else {
				keep = true;
			}
		}
		if (keep)
			ctl_add(s);
		if (s == last)
			break;
	}
}

static int tx_flush(struct dt *t)
{
	if (t->txn == 0)
		return 0;
	uint16_t n = t->txn > UINT16_MAX ? UINT16_MAX : (uint16_t)t->txn;
	uint16_t sent = rte_eth_tx_burst(t->port_id, t->q, t->txb, n);
	t->st.pkts_tx += sent;
	if (sent < t->txn) {
		t->st.tx_full++;
		memmove(t->txb, t->txb + sent,
			(t->txn - sent) * sizeof(*t->txb));
	}
	t->txn -= sent;
	return sent;
}

/* ------------------------------------------------------------------ */
/* Sessions                                                            */

static void rto_fire(struct tw_timer *tm, void *arg);
static void ka_fire(struct tw_timer *tm, void *arg);

static struct dsess *sess_lookup(struct dt *t, uint64_t id)
{
	uint32_t idx = id & 0xffffu;
	if (idx >= t->o.max_sessions)
		return NULL;
	struct dsess *s = t->slots[idx];
	return s != NULL && s->id == id ? s : NULL;
}

static struct dsess *sess_new(struct dt *t)
{
	if (t->nsess >= t->o.max_sessions)
		return NULL;
	uint32_t idx = t->slot_hint;
	while (t->slots[idx] != NULL)
		idx = idx + 1 == t->o.max_sessions ? 0 : idx + 1;
	struct dsess *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	if (t->win) {
		s->ooo = calloc(t->win, sizeof(*s->ooo));
		if (s->ooo == NULL) {
			free(s);
			return NULL;
		}
	}
	/* A random 48-bit generation, never 0 nor the slot's last one:
	 * session numbers are not guessable from outside, and a late packet
	 * of the slot's previous session does not reach this one. */
	uint64_t g;
	do {
		randombytes_buf(&g, sizeof(g));
		g &= (UINT64_C(1) << 48) - 1;
	} while (g == 0 || g == t->gen[idx]);
	t->gen[idx] = g;
	s->id = g << 16 | idx;
	t->slots[idx] = s;
	t->slot_hint = idx + 1 == t->o.max_sessions ? 0 : idx + 1;
	t->nsess++;
	t->st.sessions_live = t->nsess;
	s->t = t;
	s->base.t = &t->base;
	s->base.id = ++t->next_conn_id;
	s->mss = t->env->mss;
	s->last_rx = tw_loop_clock(t->base.loop);
	tw_timer_init(&s->rto, rto_fire, s);
	tw_timer_init(&s->ka, ka_fire, s);
	STAILQ_INIT(&s->txq);
	randombytes_buf(s->nonce, sizeof(s->nonce));
	s->isn = rnd32();
	s->una = s->snd_nxt = s->snd_max = s->isn;
	TAILQ_INSERT_HEAD(&t->sessions, s, link);
	tw_loop_timer_after(t->base.loop, &s->ka, t->tick_ns);
	return s;
}

/* A frame in assembly must move this much every asm_stall_ns (or end):
 * a packet now and then is no progress (as io_uring's stall). */
#define ASM_PROGRESS (64u << 10)

/* Reserve need bytes for s's frame against the worker's asm_bytes
 * (every queue's frames together). */
static bool asm_take(struct dsess *s, uint64_t need)
{
	struct dt *t = s->t;
	uint64_t w = atomic_fetch_add_explicit(&t->env->asm_reserved, need,
					       memory_order_relaxed);
	if (w + need > t->o.asm_bytes) {
		atomic_fetch_sub_explicit(&t->env->asm_reserved, need,
					  memory_order_relaxed);
		return false;
	}
	s->rx_resv = need;
	t->st.asm_reserved += need;
	return true;
}

static void asm_free(struct dsess *s)
{
	struct dt *t = s->t;
	atomic_fetch_sub_explicit(&t->env->asm_reserved, s->rx_resv,
				  memory_order_relaxed);
	t->st.asm_reserved -= s->rx_resv;
	s->rx_resv = 0;
}

static void rx_reset_state(struct dsess *s)
{
	for (uint32_t i = 0; s->ooo != NULL && i < s->t->win; i++)
		if (s->ooo[i].m != NULL) {
			rte_pktmbuf_free(s->ooo[i].m);
			s->ooo[i].m = NULL;
		}
	s->t->st.ooo_held -= s->ooo_count;
	s->ooo_count = 0;
	if (s->rx_resv != 0)
		asm_free(s);
	tw_buf_release(s->rx_buf);
	s->rx_buf = NULL;
	s->rx_active = false;
	s->rx_skip = false;
}

/* End s with st: every frame not done yet fails (its done still waits for
 * the NIC to let go of its bytes), then on_conn(st) from the poller. */
static void sess_fail(struct dsess *s, tw_status st, bool reset)
{
	struct dt *t = s->t;
	if (s->state == S_CLOSED)
		return;
	if (s->unproven) {
		s->unproven = false;
		t->unproven--;
		if (t->admit_only && t->secret_len != 0)
			connect_untake(t, s);
	}
	if (reset && s->peer_id != 0)
		send_reset(t, s, &s->peer, s->peer_id, s->id);
	if (st != TW_ESHUTDOWN) {
		char q[160];
		TW_LOG(TW_LOG_WARN, "session_failed",
		       "transport=dpdk peer=%s status=%s reason=%s",
		       s->base.peer[0] ? s->base.peer : "-", tw_status_name(st),
		       tw_log_q(q, sizeof(q), s->base.why));
	}
	s->state = S_CLOSED;
	s->close_st = st;
	struct tw_timer_wheel *w = tw_loop_timers(t->base.loop);
	tw_timer_cancel(w, &s->rto);
	tw_timer_cancel(w, &s->ka);
	dack_del(t, s);
	rx_reset_state(s);
	/* Detached first: txm_finish moves each frame to the done list. */
	struct txm *x = STAILQ_FIRST(&s->txq);
	STAILQ_INIT(&s->txq);
	s->snd_cur = NULL;
	while (x != NULL) {
		struct txm *n = STAILQ_NEXT(x, link);
		txm_finish(t, x, st);
		x = n;
	}
	t->st.sessions_closed++;
	if (s->held == 0)
		reap_add(s);
}

static void reap_add(struct dsess *s)
{
	if (s->in_reap)
		return;
	s->in_reap = true;
	SLIST_INSERT_HEAD(&s->t->reap, s, reap_link);
}

static void sess_free(struct dt *t, struct dsess *s)
{
	/* Walks (the lists are singly linked), but rare: only when a
	 * session goes away. */
	if (s->in_ready)
		STAILQ_REMOVE(&t->ready, s, dsess, ready_link);
	if (s->in_ctl)
		STAILQ_REMOVE(&t->ctl, s, dsess, ctl_link);
	TAILQ_REMOVE(&t->sessions, s, link);
	t->slots[s->id & 0xffffu] = NULL;
	t->nsess--;
	t->st.sessions_live = t->nsess;
	free(s->ooo);
	if (s->mtx != NULL) {
		sodium_memzero(s->mtx, 2 * sizeof(*s->mtx));
		free(s->mtx);
	}
	free(s);
}

/* Closed sessions whose sends are all done: tell the layer above, free. */
static int reap(struct dt *t)
{
	int n = 0;
	/* prev: the last session passed over (its sends still held), or
	 * NULL. One the upcall closes is pushed at the head, so this pass
	 * reaches it only while prev is NULL. */
	struct dsess *prev = NULL, *s;
	while ((s = prev != NULL ? SLIST_NEXT(prev, reap_link)
				 : SLIST_FIRST(&t->reap)) != NULL) {
		if (s->held != 0) {
			prev = s;
			continue;
		}
		if (prev != NULL)
			SLIST_REMOVE_AFTER(prev, reap_link);
		else
			SLIST_REMOVE_HEAD(&t->reap, reap_link);
		/* Sends the fault injector still holds must not reach s once
		 * it is freed. */
		tw_fault_conn_closed(&t->base, &s->base, s->close_st);
		t->base.cbs.on_conn(t->base.cbs.ctx, &s->base, s->close_st);
		sess_free(t, s);
		n++;
	}
	return n;
}

/* Go back to the oldest unacked packet. */
static void rewind_to_una(struct dsess *s)
{
	if (s->snd_nxt == s->una)
		return;
	s->snd_nxt = s->una;
	s->snd_cur = STAILQ_FIRST(&s->txq);
	ready_add(s);
}

static void rto_fire(struct tw_timer *tm, void *arg)
{
	(void)tm;
	struct dsess *s = arg;
	struct dt *t = s->t;
	uint32_t shift = s->rto_count < RTO_BACKOFF_MAX ? s->rto_count
							: RTO_BACKOFF_MAX;
	if (s->state == S_CONNECTING) {
		s->connect_due = true;
		ctl_add(s);
		s->rto_count++;
		tw_loop_timer_after(t->base.loop, &s->rto,
				    t->o.rto_ns << shift);
		return;
	}
	if (s->state == S_OPEN && !s->proven) {
		if (now_ns(t) >= s->prove_by) {
			/* Nothing from the peer since its CONNECT: a replay,
			 * or a peer gone; the slot is not held for dead_ns. */
			t->st.accept_timeouts++;
			s->base.why = "the connector never proved its key "
				      "after our ACCEPT (accept_timeout_ns)";
			sess_fail(s, TW_EUNREACHABLE, true);
			return;
		}
		s->accept_due = true;
		ctl_add(s);
		tw_loop_timer_after(t->base.loop, &s->rto, t->o.rto_ns << 2);
	}
	if (s->state != S_OPEN || s->una == s->snd_max)
		return;
	t->st.rto_fires++;
	s->rto_count++;
	if (s->rto_count > t->rexmit_max) {
		/* The peer hears us (keepalives may even come back) but
		 * acknowledges nothing: what we hold for it is not kept
		 * and sent again for ever. */
		t->st.sessions_unacked++;
		s->base.why = "the peer acknowledged nothing for rexmit_max "
			      "retransmission timeouts in a row";
		sess_fail(s, TW_EUNREACHABLE, true);
		return;
	}
	s->fast_done = false;
	rewind_to_una(s);
	shift = s->rto_count < RTO_BACKOFF_MAX ? s->rto_count : RTO_BACKOFF_MAX;
	tw_loop_timer_after(t->base.loop, &s->rto, t->o.rto_ns << shift);
}

static void ka_fire(struct tw_timer *tm, void *arg)
{
	(void)tm;
	struct dsess *s = arg;
	struct dt *t = s->t;
	uint64_t now = now_ns(t);
	uint64_t quiet = now > s->last_rx ? now - s->last_rx : 0;
	if (s->linger && now >= s->linger_at) {
		/* the peer took too long */
		s->base.why = "what was sent before the close was not "
			      "acknowledged in time";
		sess_fail(s, s->linger_st, true);
		return;
	}
	if (quiet >= t->o.dead_ns) {
		t->st.sessions_dead++;
		s->base.why = "nothing heard from the peer for dead_ns";
		sess_fail(s, TW_EUNREACHABLE, true);
		return;
	}
	/* Not while we pause the session ourselves (the agent's backpressure):
	 * its frame cannot move then (as io_uring's stall watch). */
	if (s->rx_resv != 0 && !s->paused &&
	    now - s->rx_progress >= t->o.asm_stall_ns) {
		/* A frame announced and not sent, or sent a packet now and
		 * then: its bytes go back to the worker. The stream cannot
		 * skip what never comes, so the session ends (as io_uring's
		 * stall_timeout_ms). */
		t->st.asm_stalls++;
		s->base.why = "a frame in assembly moved less than 64 KiB "
			      "in asm_stall_ns";
		sess_fail(s, TW_ETIMEDOUT, true);
		return;
	}
	if (s->state == S_OPEN && quiet >= t->ka_ns) {
		s->ping_due = true;
		ctl_add(s);
	}
	tw_loop_timer_after(t->base.loop, &s->ka, t->tick_ns);
}

/* The peer has everything before ack. */
static void on_ack(struct dt *t, struct dsess *s, uint32_t ack, bool nak)
{
	if (seq_lt(s->snd_max, ack))
		return; /* acks what we never sent: stale or bogus */
	if (seq_lt(s->una, ack)) {
		s->una = ack;
		s->rto_count = 0;
		struct txm *x;
		while ((x = STAILQ_FIRST(&s->txq)) != NULL && x->assigned &&
		       seq_leq(x->first_seq + x->npkts, ack)) {
			STAILQ_REMOVE_HEAD(&s->txq, link);
			if (s->snd_cur == x)
				s->snd_cur = STAILQ_NEXT(x, link);
			txm_finish(t, x, TW_OK);
		}
		if (seq_lt(s->snd_nxt, s->una)) {
			/* A rewind resent less than the peer already had. */
			s->snd_nxt = s->una;
			s->snd_cur = STAILQ_FIRST(&s->txq);
		}
		struct tw_timer_wheel *w = tw_loop_timers(t->base.loop);
		if (s->una == s->snd_max)
			tw_timer_cancel(w, &s->rto);
		else
			tw_loop_timer_after(t->base.loop, &s->rto, t->o.rto_ns);
		ready_add(s);
	}
	if (nak && ack == s->una && seq_lt(s->una, s->snd_nxt) &&
	    !(s->fast_done && s->fast_una == ack) && txb_room(t, 0)) {
		/* Fast retransmit of the first hole only, once per hole:
		 * the receiver holds what came after it (up to its window)
		 * and acks past all of it when the hole fills. A second loss
		 * is the timer's (go back N). */
		if (build_pkt(t, s, STAILQ_FIRST(&s->txq), ack)) {
			s->fast_done = true;
			s->fast_una = ack;
			t->st.fast_rexmits++;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Receiving                                                           */

static void mbuf_release(void *ctx, void *data, size_t size)
{
	(void)data;
	(void)size;
	struct rte_mbuf *m = ctx;
	struct tw_dpdk_queue *dq =
		*(struct tw_dpdk_queue **)rte_mbuf_to_priv(m);
	rte_pktmbuf_free(m);
	atomic_fetch_sub_explicit(&dq->lent, 1, memory_order_release);
}

/* A 64-byte aligned buffer for a frame of len bytes: pooled when it fits,
 * else the heap, or from 2 MiB on its own huge-page mapping (buf_impl.h;
 * no cache: unmapped when released). */
static tw_buf *rx_alloc(struct dt *t, uint64_t len)
{
	if (len <= tw_buf_pool_buf_size(t->pool)) {
		tw_buf *b = tw_buf_pool_get(t->pool);
		if (b != NULL)
			return b;
	}
	tw_buf *b = NULL;
	if (len > SIZE_MAX)
		return NULL;
	(void)tw_bigbuf_alloc(NULL, (size_t)len, &b, NULL);
	return b;
}

static void deliver(struct dt *t, struct dsess *s, const tw_frame_hdr *fh,
		    tw_buf *b, uint64_t len)
{
	t->st.frames_rx++;
	t->st.bytes_rx += len;
	s->rcv_msg++;
	t->base.cbs.on_frame(t->base.cbs.ctx, &s->base, fh, b, 0, (size_t)len);
	tw_buf_release(b);
}

static void d_close_after_send(tw_transport *tt, tw_conn *cc, tw_status st);

/* A frame whose header is intact refused (transport.h, on_refused): true
 * when it is skipped (the rest of its packets are acked and dropped). */
static bool refuse(struct dt *t, struct dsess *s, const tw_frame_hdr *fh,
		   tw_status why)
{
	bool skip = false;
	if (t->base.cbs.on_refused != NULL)
		skip = t->base.cbs.on_refused(t->base.cbs.ctx, &s->base, fh,
					      why);
	if (s->state != S_OPEN)
		return false;
	if (why == TW_EOVERFLOW && skip)
		return true;
	t->st.bad_frames++;
	tw_status st = why == TW_EVERSION ? TW_EVERSION : TW_EPROTO;
	if (t->base.cbs.on_refused != NULL)
		d_close_after_send(&t->base, &s->base, st);
	else
		sess_fail(s, st, true);
	return false;
}

/* Put the in-order packet into its frame. Takes m. Returns false when the
 * packet could not be taken (no memory): it stays unacknowledged and comes
 * again. The session may be closed on return (protocol error, or by the
 * layer above from on_frame). */
static bool take_pkt(struct dt *t, struct dsess *s, struct rte_mbuf *m,
		     const struct twp_hdr *h, const uint8_t *payload)
{
	if (h->frame_off == 0) {
		tw_frame_hdr fh;
		tw_status hst = TW_EPROTO;
		/* The packet fits the session's sequence: decode its header
		 * (once). */
		bool seq_ok = !s->rx_active && h->msg == s->rcv_msg &&
			      h->len >= (h->frame_len < TW_FRAME_HDR_SIZE
						 ? h->frame_len
						 : TW_FRAME_HDR_SIZE) &&
			      h->frame_len >= TW_FRAME_HDR_SIZE;
		if (seq_ok)
			hst = tw_frame_hdr_decode(payload, &t->base.limits,
						  &fh);
		if (__builtin_expect(!seq_ok || hst != TW_OK ||
					     fh.total_len != h->frame_len ||
					     !tw_conn_frame_fits(&s->base, &fh),
				     0)) {
			/* Another version, or intact but over the limits:
			 * the layer above may answer (transport.h). */
			tw_status why = hst;
			if (seq_ok && hst == TW_EPROTO) {
				tw_frame_limits wide = t->base.limits;
				wide.max_total = TW_FRAME_MAX_TOTAL;
				if (tw_frame_hdr_decode(payload, &wide, &fh) ==
					    TW_OK &&
				    fh.total_len == h->frame_len)
					why = TW_EOVERFLOW;
			} else if (seq_ok && hst == TW_OK) {
				why = fh.total_len == h->frame_len
					      ? TW_EOVERFLOW
					      : TW_EPROTO;
			}
			rte_pktmbuf_free(m);
			if (seq_ok && t->base.cbs.on_refused != NULL &&
			    (why == TW_EVERSION || why == TW_EOVERFLOW)) {
				if (!refuse(t, s, &fh, why))
					return true;
				if (h->len == h->frame_len) {
					s->rcv_msg++; /* skipped whole */
					return true;
				}
				s->rx_skip = true;
				s->rx_active = true;
				s->rx_len = h->frame_len;
				s->rx_have = h->len;
				return true;
			}
			t->st.bad_frames++;
			/* As every transport: a newer peer's header ends the
			 * session with TW_EVERSION, anything else wrong with
			 * TW_EPROTO (transport.h). */
			sess_fail(s,
				  why == TW_EVERSION ? TW_EVERSION : TW_EPROTO,
				  true);
			return true;
		}
		if (h->len == h->frame_len) {
			/* The whole frame is in m. */
			tw_buf *b = NULL;
			/* In place, unless the layer above already holds
			 * half the receive pool: then a copy, or it would
			 * starve the queue of buffers for acks too. */
			if (((uintptr_t)payload & (TW_FRAME_SEG_ALIGN - 1)) ==
				    0 &&
			    m->priv_size >= sizeof(void *) &&
			    atomic_load_explicit(&t->dq->lent,
						 memory_order_relaxed) <
				    t->lend_max &&
			    tw_buf_from_user((void *)(uintptr_t)payload, h->len,
					     mbuf_release, m, &b) == TW_OK) {
				*(struct tw_dpdk_queue **)rte_mbuf_to_priv(m) =
					t->dq;
				atomic_fetch_add_explicit(&t->dq->lent, 1,
							  memory_order_relaxed);
				t->st.rx_inplace++;
			} else {
				b = rx_alloc(t, h->len);
				if (b == NULL) {
					rte_pktmbuf_free(m);
					return false;
				}
				memcpy(b->data, payload, h->len);
				rte_pktmbuf_free(m);
				t->st.rx_copied++;
			}
			deliver(t, s, &fh, b, h->len);
			return true;
		}
		if (!asm_take(s, h->frame_len)) {
			/* No room: not taken, not acked; it comes again
			 * once frames in assembly complete or stall. */
			t->st.asm_waits++;
			rte_pktmbuf_free(m);
			return false;
		}
		/* Reserved whole, committed as its bytes arrive (rx_alloc:
		 * pages are touched only by the copies below). */
		tw_buf *b = rx_alloc(t, h->frame_len);
		if (b == NULL) {
			asm_free(s);
			rte_pktmbuf_free(m);
			return false;
		}
		memcpy(b->data, payload, h->len);
		rte_pktmbuf_free(m);
		s->rx_progress = now_ns(t);
		s->rx_mark = h->len;
		s->rx_buf = b;
		s->rx_len = h->frame_len;
		s->rx_have = h->len;
		s->rx_hdr = fh;
		s->rx_active = true;
		return true;
	}
	if (!s->rx_active || h->msg != s->rcv_msg ||
	    h->frame_off != s->rx_have || h->frame_len != s->rx_len) {
		rte_pktmbuf_free(m);
		t->st.bad_frames++;
		s->base.why = "a packet out of its frame's place";
		sess_fail(s, TW_EPROTO, true);
		return true;
	}
	if (__builtin_expect(s->rx_skip, 0)) {
		rte_pktmbuf_free(m);
		s->rx_have += h->len;
		if (s->rx_have == s->rx_len) {
			s->rx_skip = false;
			s->rx_active = false;
			s->rcv_msg++;
		}
		return true;
	}
	memcpy((uint8_t *)s->rx_buf->data + s->rx_have, payload, h->len);
	rte_pktmbuf_free(m);
	s->rx_have += h->len;
	if (s->rx_have - s->rx_mark >= ASM_PROGRESS) {
		s->rx_progress = now_ns(t);
		s->rx_mark = s->rx_have;
	}
	if (s->rx_have == s->rx_len) {
		tw_buf *b = s->rx_buf;
		s->rx_buf = NULL;
		s->rx_active = false;
		asm_free(s);
		t->st.rx_copied++;
		deliver(t, s, &s->rx_hdr, b, s->rx_len);
	}
	return true;
}

static void on_data(struct dt *t, struct dsess *s, struct rte_mbuf *m,
		    const struct twp_hdr *h, const uint8_t *payload)
{
	uint32_t seq = h->seq;
	ctl_add(s);
	if (seq_lt(seq, s->rcv_next)) {
		t->st.dup_pkts++;
		s->ack_due = true;
		rte_pktmbuf_free(m);
		return;
	}
	if (__builtin_expect(s->paused || s->linger, 0)) {
		/* Not taken, not acked: the sender's credits run out and
		 * its queue fills (TW_ENOSPC); what it sent comes again. An
		 * ack still says we are alive. */
		t->st.paused_drops++;
		s->ack_due = true;
		rte_pktmbuf_free(m);
		return;
	}
	if (seq != s->rcv_next) {
		uint32_t d = seq - s->rcv_next;
		if (d >= t->win) {
			t->st.ooo_drops++;
			rte_pktmbuf_free(m);
		} else {
			struct ooo_slot *sl = &s->ooo[seq % t->win];
			if (sl->m != NULL && sl->h.seq == seq) {
				t->st.dup_pkts++;
				rte_pktmbuf_free(m);
			} else if (sl->m == NULL &&
				   t->st.ooo_held >= t->ooo_max) {
				/* Sessions together hold ooo_max: this one
				 * comes again, and the receive pool keeps
				 * buffers for everyone's next packets. */
				t->st.ooo_cap_drops++;
				rte_pktmbuf_free(m);
			} else {
				if (sl->m != NULL) {
					/* Cannot happen (slots are cleared as
					 * rcv_next passes them); be sure. */
					rte_pktmbuf_free(sl->m);
					s->ooo_count--;
					t->st.ooo_held--;
				}
				sl->m = m;
				sl->h = *h;
				sl->payload = payload;
				s->ooo_count++;
				t->st.ooo_held++;
				t->st.ooo_pkts++;
			}
		}
		if (!s->nak_sent || s->nak_for != s->rcv_next) {
			s->nak_sent = true;
			s->nak_for = s->rcv_next;
			s->nak_due = true;
		}
		s->ack_due = true;
		return;
	}
	/* A packet that ends a small frame (a call, a reply) with at most
	 * dack_pkts packets unacked, this one and those of the frame that
	 * came in the same burst included: their ack waits for our next
	 * packet (the reply, the next call), ack_delay_ns at most. One ACK
	 * fewer per call each way, and, tagged, two tags fewer. More
	 * unacked (a stream, a large frame) is acked at once: the sender's
	 * credits must not wait on the timer. */
	bool ends = h->frame_off + h->len == h->frame_len;
	bool defer = t->ack_delay_ns != 0 && s->ooo_count == 0 && ends &&
		     seq + 1 - s->ack_sent <= t->dack_pkts;
	if (defer)
		s->ack_frame = false;
	else if (!ends && s->ooo_count == 0)
		s->ack_frame = true;
	else
		s->ack_due = true;
	if (s->ooo_count != 0) {
		/* A copy of this packet may be held already. */
		struct ooo_slot *sl = &s->ooo[seq % t->win];
		if (sl->m != NULL && sl->h.seq == seq) {
			rte_pktmbuf_free(sl->m);
			sl->m = NULL;
			s->ooo_count--;
			t->st.ooo_held--;
		}
	}
	if (!take_pkt(t, s, m, h, payload)) {
		s->ack_due = true;
		return;
	}
	s->rcv_next++;
	if (defer && s->state == S_OPEN) {
		dack_add(t, s);
		return;
	}
	while (s->state == S_OPEN && s->ooo_count != 0) {
		struct ooo_slot *sl = &s->ooo[s->rcv_next % t->win];
		if (sl->m == NULL || sl->h.seq != s->rcv_next)
			break;
		struct ooo_slot c = *sl;
		sl->m = NULL;
		s->ooo_count--;
		t->st.ooo_held--;
		if (!take_pkt(t, s, c.m, &c.h, c.payload))
			break;
		s->rcv_next++;
	}
	/* Packets held past a second hole: ask for its first packet now.
	 * The sender, its credits spent on what we hold, may have nothing
	 * new to send that would reveal the hole before its timeout. */
	if (s->state == S_OPEN && s->ooo_count != 0 &&
	    (!s->nak_sent || s->nak_for != s->rcv_next)) {
		s->nak_sent = true;
		s->nak_for = s->rcv_next;
		s->nak_due = true;
	}
}

/* Whether packet number pn of a tagged session (its tag verified) is new:
 * above the highest taken, or within the 64 below it and not taken yet.
 * Marks it taken. Retransmissions carry new numbers, so only a replay or
 * a packet delayed past 64 later ones is refused. */
static bool pn_take(struct dsess *s, uint64_t pn)
{
	if (!win64_new(&s->pn_rx, pn))
		return false;
	win64_take(&s->pn_rx, pn);
	return true;
}

static struct dsess *sess_by_peer(struct dt *t, const struct twp_ep *ep,
				  uint64_t peer_id)
{
	struct dsess *s;
	TAILQ_FOREACH(s, &t->sessions, link)
	if (s->peer_id == peer_id && same_ep(&s->peer, ep) &&
	    s->state != S_CLOSED)
		return s;
	return NULL;
}

/* The setup block of the CONNECT or ACCEPT pk into *b (without one: isn
 * 0), and whether it may set up a session: with a secret, only with a
 * block whose mac verifies (peer_nonce: an ACCEPT's, our CONNECT's). A
 * refusal is counted and gets no answer. */
static bool setup_check(struct dt *t, const struct twp_pkt *pk,
			const uint8_t *peer_nonce, struct twp_setup *b)
{
	if (pk->h.len >= TWP_SETUP_LEN)
		twp_setup_decode(pk->payload, b);
	else
		memset(b, 0, sizeof(*b));
	if (t->secret_len == 0)
		return true;
	if (pk->h.len >= TWP_SETUP_LEN &&
	    twp_setup_verify(t->secret, t->secret_len, &pk->h, &pk->src,
			     &t->self, b, peer_nonce))
		return true;
	t->st.auth_drops++;
	return false;
}

/*
 * Sessions accepted from one endpoint that have not proven their key yet:
 * a CONNECT captured from the wire and replayed opens one each time (its
 * replayer has no key, so it never proves it, and it ends at
 * accept_timeout_ns). A real connector proves its session one round trip
 * after our ACCEPT, so an endpoint rarely has more than its loops'
 * worth. Past UNPROVEN_PER_EP, a new CONNECT ends the endpoint's oldest
 * unproven session: replays hold at most that many slots per member.
 */
#define UNPROVEN_PER_EP 8u

static void unproven_bound(struct dt *t, const struct twp_ep *ep)
{
	struct dsess *x, *oldest = NULL;
	uint32_t n = 0;
	TAILQ_FOREACH(x, &t->sessions, link) /* newest first */
	if (x->unproven && same_ep(&x->peer, ep)) {
		n++;
		oldest = x;
	}
	if (n < UNPROVEN_PER_EP)
		return;
	t->st.unproven_evicted++;
	oldest->base.why = "more CONNECTs from its endpoint came before it "
			   "proved its key (replayed, or a connector retrying)";
	/* With a RESET: a real connector (tagged, it takes it) connects
	 * again at once rather than wait for its dead timeout. */
	sess_fail(oldest, TW_EUNREACHABLE, true);
}

/* Cookies (dpdk_pkt.h): BLAKE2b keyed with the transport's own key over
 * a time step of COOKIE_STEP_NS, the connector's endpoint, its session
 * number and its nonce. A cookie of this step or the one before holds:
 * the connector answers within a round trip. */
#define COOKIE_STEP_NS 1000000000ull

static void cookie_make(const struct dt *t, uint64_t step,
			const struct twp_ep *ep, uint64_t sess,
			const uint8_t nonce[TWP_NONCE_LEN],
			uint8_t out[TWP_COOKIE_LEN])
{
	uint8_t m[8 + 6 + 4 + 2 + 8 + TWP_NONCE_LEN];
	memcpy(m, &step, 8);
	memcpy(m + 8, ep->mac, 6);
	memcpy(m + 14, &ep->ip, 4);
	memcpy(m + 18, &ep->port, 2);
	memcpy(m + 20, &sess, 8);
	memcpy(m + 28, nonce, TWP_NONCE_LEN);
	crypto_generichash(out, TWP_COOKIE_LEN, m, sizeof(m), t->cookie_key,
			   sizeof(t->cookie_key));
}

static bool cookie_ok(struct dt *t, const struct twp_pkt *pk,
		      const uint8_t nonce[TWP_NONCE_LEN], const uint8_t *cookie)
{
	uint64_t step = now_ns(t) / COOKIE_STEP_NS;
	uint8_t want[TWP_COOKIE_LEN];
	for (uint64_t k = 0; k < 2 && k <= step; k++) {
		cookie_make(t, step - k, &pk->src, pk->h.src_sess, nonce, want);
		if (crypto_verify_16(want, cookie) == 0)
			return true;
	}
	t->st.cookie_stale++;
	return false;
}

/* The COOKIE answering a member's CONNECT pk (its nonce): no state. */
static void send_cookie(struct dt *t, const struct twp_pkt *pk,
			const uint8_t nonce[TWP_NONCE_LEN])
{
	struct twp_hdr h = {.type = TWP_COOKIE,
			    .dst_sess = pk->h.src_sess,
			    .frame_len = t->env->mss,
			    .len = TWP_SETUP_LEN};
	struct twp_setup b = {.isn = 0};
	cookie_make(t, now_ns(t) / COOKIE_STEP_NS, &pk->src, pk->h.src_sess,
		    nonce, b.nonce);
	twp_setup_mac(t->secret, t->secret_len, &h, &t->self, &pk->src, &b,
		      nonce, b.mac);
	uint8_t body[TWP_SETUP_LEN];
	twp_setup_encode(body, &b);
	if (send_ctl_body(t, NULL, &pk->src, &h, body))
		t->st.cookies_tx++;
}

static void on_connect(struct dt *t, const struct twp_pkt *pk)
{
	/* A stranger hears nothing, not even a RESET: an answer would tell
	 * it that we are here, and what we think of its packet. */
	struct admit_ep *a;
	if (!admitted(t, &pk->src, &a)) {
		t->st.admit_drops++;
		return;
	}
	/* The cookie, if it carries one, is under its mac. */
	const uint8_t *cookie = pk->h.len == TWP_SETUP_LEN + TWP_COOKIE_LEN
					? pk->payload + TWP_SETUP_LEN
					: NULL;
	struct twp_setup b;
	if (!setup_check(t, pk, cookie, &b))
		return;
	if (!t->listening || t->destroying) {
		send_reset(t, NULL, &pk->src, pk->h.src_sess, 0);
		return;
	}
	struct dsess *s = sess_by_peer(t, &pk->src, pk->h.src_sess);
	if (s != NULL) {
		/* Our ACCEPT was lost: say it again (to the same CONNECT:
		 * an ACCEPT answers one nonce). */
		if (memcmp(s->peer_nonce, b.nonce, TWP_NONCE_LEN) == 0) {
			s->accept_due = true;
			ctl_add(s);
		}
		return;
	}
	/* No slot before the connector shows it hears us at its address
	 * now: a CONNECT without a fresh cookie of ours (a first one, or
	 * one captured and replayed later) gets a COOKIE and costs nothing
	 * more. */
	if (t->secret_len != 0 &&
	    (cookie == NULL || !cookie_ok(t, pk, b.nonce, cookie))) {
		send_cookie(t, pk, b.nonce);
		return;
	}
	/* A CONNECT of a member seen before (its mac covers the counter):
	 * captured and replayed. No slot, no answer. */
	uint64_t ctr = twp_nonce_counter(b.nonce);
	if (a != NULL && t->secret_len != 0 && !win64_new(&a->connects, ctr)) {
		t->st.connect_replays++;
		return;
	}
	if (t->unproven >= UNPROVEN_PER_EP)
		unproven_bound(t, &pk->src);
	/* Tagged when both ask (dpdk_pkt.h): its tag state first, so that
	 * a session is either whole or not made. */
	bool tag = t->want_tag && (pk->h.flags & TWP_F_TAG);
	struct twp_mac *macs = tag ? malloc(2 * sizeof(*macs)) : NULL;
	s = tag && macs == NULL ? NULL : sess_new(t);
	if (s == NULL) {
		/* A member refused: the table is full (or memory is). */
		t->st.sessions_full++;
		free(macs);
		send_reset(t, NULL, &pk->src, pk->h.src_sess, 0);
		return;
	}
	s->unproven = true;
	t->unproven++;
	if (a != NULL && t->secret_len != 0)
		win64_take(&a->connects, ctr);
	s->peer = pk->src;
	tw_conn_set_peer_ip4(&s->base, s->peer.ip, s->peer.port);
	memcpy(s->peer_nonce, b.nonce, TWP_NONCE_LEN);
	s->rcv_next = s->ack_sent = b.isn;
	s->peer_id = pk->h.src_sess;
	/* The keys from both nonces. */
	if (tag)
		sess_keys(s, macs, false, s->peer_id, s->id, s->peer_nonce,
			  s->nonce);
	if (pk->h.frame_len < s->mss)
		s->mss = (uint32_t)pk->h.frame_len;
	s->state = S_OPEN;
	s->accept_due = true;
	ctl_add(s);
	s->prove_by = now_ns(t) + t->o.accept_timeout_ns;
	tw_loop_timer_after(t->base.loop, &s->rto, t->o.rto_ns << 2);
	t->st.sessions_accepted++;
	t->base.cbs.on_conn(t->base.cbs.ctx, &s->base, TW_OK);
}

/* A valid packet for this queue. Takes m. */
static void rx_pkt(struct dt *t, struct rte_mbuf *m, const struct twp_pkt *pk)
{
	const struct twp_hdr *h = &pk->h;
	t->st.pkts_rx++;
	if (h->type == TWP_CONNECT) {
		on_connect(t, pk);
		rte_pktmbuf_free(m);
		return;
	}
	struct dsess *s = sess_lookup(t, h->dst_sess);
	if (s == NULL || s->state == S_CLOSED) {
		t->st.foreign_pkts++;
		/* A session we do not know: without a secret, tell the
		 * sender, so that its side ends now rather than at its dead
		 * timeout. With one, say nothing: anyone can write the
		 * source of a packet, and a RESET that answers guesses is
		 * an oracle for session numbers (issue 18). */
		struct admit_ep *a;
		if (s == NULL && h->type != TWP_RESET && t->secret_len == 0 &&
		    admitted(t, &pk->src, &a))
			send_reset(t, NULL, &pk->src, h->src_sess, h->dst_sess);
		rte_pktmbuf_free(m);
		return;
	}
	if (!same_ep(&s->peer, &pk->src)) {
		/* The peer's session number from another MAC, IP or port:
		 * somebody else's packet, dropped before it touches s. */
		t->st.addr_drops++;
		rte_pktmbuf_free(m);
		return;
	}
	if (s->tagged && h->type != TWP_ACCEPT) {
		/* Before anything about s changes: the tag, then the
		 * packet number (a replay carries a good tag). */
		const uint8_t *th = pk->payload - TWP_HDR_LEN;
		if (!twp_tag_ok(s->mrx, th, TWP_HDR_LEN + h->len)) {
			t->st.tag_drops++;
			TW_LOG(TW_LOG_WARN, "packet_dropped",
			       "transport=dpdk peer=%s reason=\"bad tag (forged "
			       "or corrupted)\" tag_drops=%llu",
			       s->base.peer[0] ? s->base.peer : "-",
			       (unsigned long long)t->st.tag_drops);
			rte_pktmbuf_free(m);
			return;
		}
		if (!pn_take(s, h->pn)) {
			t->st.replay_drops++;
			rte_pktmbuf_free(m);
			return;
		}
	}
	if (h->type == TWP_RESET) {
		/* While connecting, only the acceptor's refusal names no
		 * session of its own; with a secret it proves nothing and
		 * is not taken: the session ends at its dead timeout. */
		if ((s->state == S_CONNECTING && t->secret_len == 0) ||
		    (s->state == S_OPEN && h->src_sess == s->peer_id)) {
			t->st.resets_rx++;
			s->base.why = "the peer reset the session";
			sess_fail(s, TW_EUNREACHABLE, false);
		} else
			t->st.addr_drops++;
		rte_pktmbuf_free(m);
		return;
	}
	if (h->type == TWP_COOKIE) {
		/* The acceptor's cookie for our CONNECT (bound to its
		 * nonce): say the CONNECT again with it, now. */
		struct twp_setup b;
		if (s->state == S_CONNECTING && t->secret_len != 0 &&
		    setup_check(t, pk, s->nonce, &b)) {
			memcpy(s->cookie, b.nonce, TWP_COOKIE_LEN);
			s->has_cookie = true;
			s->connect_due = true;
			ctl_add(s);
			t->st.cookies_rx++;
		}
		rte_pktmbuf_free(m);
		return;
	}
	if (h->type == TWP_ACCEPT) {
		struct twp_setup b;
		bool tag = (h->flags & TWP_F_TAG) != 0;
		if (s->state == S_CONNECTING &&
		    setup_check(t, pk, s->nonce, &b)) {
			if (tag && !t->want_tag) {
				/* We did not offer to tag: not a true
				 * answer to our CONNECT. */
				t->st.auth_drops++;
				rte_pktmbuf_free(m);
				return;
			}
			if (tag) {
				struct twp_mac *macs =
					malloc(2 * sizeof(*macs));
				if (macs == NULL) {
					sess_fail(s, TW_ENOMEM, false);
					rte_pktmbuf_free(m);
					return;
				}
				sess_keys(s, macs, true, s->id, h->src_sess,
					  s->nonce, b.nonce);
			}
			s->peer_id = h->src_sess;
			s->rcv_next = s->ack_sent = b.isn;
			if (h->frame_len < s->mss)
				s->mss = (uint32_t)h->frame_len;
			s->state = S_OPEN;
			s->proven = true; /* its ACCEPT answers our nonce */
			s->last_rx = now_ns(t);
			s->rto_count = 0;
			tw_timer_cancel(tw_loop_timers(t->base.loop), &s->rto);
			/* Our first packet proves the session to the
			 * acceptor (it frees one that stays unproven). */
			s->ack_due = true;
			ctl_add(s);
			t->base.cbs.on_conn(t->base.cbs.ctx, &s->base, TW_OK);
			ready_add(s);
		} else if (s->state == S_OPEN && h->src_sess == s->peer_id &&
			   now_ns(t) - s->ack_accept_at >= t->o.rto_ns &&
			   setup_check(t, pk, s->nonce, &b)) {
			/* The acceptor has not heard us yet (our ACK was
			 * lost): once per rto at most, say so again. */
			s->ack_accept_at = now_ns(t);
			s->ack_due = true;
			ctl_add(s);
		}
		rte_pktmbuf_free(m);
		return;
	}
	if (s->state != S_OPEN || h->src_sess != s->peer_id) {
		t->st.foreign_pkts++;
		rte_pktmbuf_free(m);
		return;
	}
	s->last_rx = now_ns(t);
	sess_proven(s);
	on_ack(t, s, h->ack, h->type == TWP_ACK && (h->flags & TWP_F_NAK));
	if (h->type == TWP_ACK) {
		if (h->flags & TWP_F_ACK_REQ) {
			s->ack_due = true;
			ctl_add(s);
		}
		rte_pktmbuf_free(m);
		return;
	}
	on_data(t, s, m, h, pk->payload);
}

static bool parse_mbuf(struct dt *t, struct rte_mbuf *m, struct twp_pkt *pk)
{
	enum twp_err e;
	uint64_t ipf = m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;
	uint64_t l4f = m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK;
	if (m->nb_segs != 1 || m->pkt_len != m->data_len)
		e = TWP_E_LEN; /* we never send what needs scatter */
	else if (ipf == RTE_MBUF_F_RX_IP_CKSUM_BAD)
		e = TWP_E_IP_CSUM;
	else if (l4f == RTE_MBUF_F_RX_L4_CKSUM_BAD)
		e = TWP_E_UDP_CSUM;
	else
		e = twp_parse(rte_pktmbuf_mtod(m, const uint8_t *), m->data_len,
			      &t->local, ipf == RTE_MBUF_F_RX_IP_CKSUM_GOOD,
			      l4f == RTE_MBUF_F_RX_L4_CKSUM_GOOD, pk);
	if (e == TWP_OK)
		return true;
	t->st.bad_pkts++;
	t->st.bad_by_reason[e < TW_DPDK_BAD_REASONS ? e : 0]++;
	return false;
}

static void rx_one(struct dt *t, struct rte_mbuf *m)
{
	struct twp_pkt pk;
	if (!parse_mbuf(t, m, &pk)) {
		rte_pktmbuf_free(m);
		return;
	}
	if (pk.queue != t->q) {
		/* Software steering: the destination port names the loop. */
		if (rte_ring_mp_enqueue(t->env->q[pk.queue].steer, m) != 0) {
			t->st.steer_drops++;
			rte_pktmbuf_free(m);
		} else {
			t->st.steered_out++;
		}
		return;
	}
	rx_pkt(t, m, &pk);
}

/* ------------------------------------------------------------------ */
/* The poller                                                          */

static int d_poll(void *arg)
{
	struct dt *t = arg;
	int work = 0;
	uint16_t n = rte_eth_rx_burst(t->port_id, t->q, t->rxb,
				      (uint16_t)t->burst);
	for (uint16_t i = 0; i < n; i++)
		rx_one(t, t->rxb[i]);
	work += n;
	unsigned ns = rte_ring_sc_dequeue_burst(t->dq->steer, (void **)t->rxb,
						t->burst, NULL);
	t->st.steered_in += ns;
	for (unsigned i = 0; i < ns; i++)
		rx_one(t, t->rxb[i]);
	work += (int)ns;

	work += run_done(t);
	if (!TAILQ_EMPTY(&t->dack))
		dack_run(t);
	work += tx_sessions(t);
	tx_ctl(t);
	work += tx_flush(t);
	/* The PMD may have freed external buffers inside tx_burst; a real
	 * NIC frees them lazily, so ask when frames wait on it. */
	if (t->ext_waiting != 0 && t->txn == 0)
		(void)rte_eth_tx_done_cleanup(t->port_id, t->q, 0);
	work += run_done(t);
	work += reap(t);
	if (work != 0)
		t->worked = true;
	return work;
}

/* Past this much silence the idle wake backs off (idle_wake_max_ns). */
#define IDLE_BACKOFF_AFTER_NS 100000000u

static void idle_fire(struct tw_timer *tm, void *arg)
{
	struct dt *t = arg;
	/* Being due is what wakes a sleeping loop to poll the port. A port
	 * quiet for IDLE_BACKOFF_AFTER_NS is polled ever less often, up to
	 * idle_wake_max_ns apart: an idle worker's wakes are its CPU. */
	uint64_t now = now_ns(t);
	if (t->worked) {
		t->worked = false;
		t->quiet_since = 0;
		t->idle_cur = t->o.idle_wake_ns;
	} else if (t->quiet_since == 0) {
		t->quiet_since = now;
	} else if (now - t->quiet_since >= IDLE_BACKOFF_AFTER_NS &&
		   t->idle_cur < t->o.idle_wake_max_ns) {
		t->idle_cur = t->idle_cur * 2 < t->o.idle_wake_max_ns
				      ? t->idle_cur * 2
				      : t->o.idle_wake_max_ns;
	}
	tw_loop_timer_after(t->base.loop, tm, t->idle_cur);
}

/* ------------------------------------------------------------------ */
/* The vtable                                                          */

static tw_status d_listen(tw_transport *tt, const char *addr, char *bound,
			  size_t bound_len)
{
	struct dt *t = DT(tt);
	if (t->destroying)
		return TW_ESHUTDOWN;
	struct twp_ep ep;
	bool has_mac = false;
	if (twp_addr_parse(addr, &ep, false, &has_mac) != 0)
		return TW_EINVAL;
	if ((ep.ip != 0 && ep.ip != t->self.ip) ||
	    (ep.port != 0 && ep.port != t->self.port) ||
	    (has_mac && memcmp(ep.mac, t->self.mac, 6) != 0))
		return TW_EINVAL;
	t->listening = true;
	if (bound != NULL && bound_len > 0) {
		int n = twp_addr_format(bound, bound_len, &t->self);
		if (n < 0 || (size_t)n >= bound_len)
			return TW_EOVERFLOW; /* listening all the same */
	}
	return TW_OK;
}

static tw_status d_connect(tw_transport *tt, const char *addr, tw_conn **out)
{
	struct dt *t = DT(tt);
	if (out == NULL)
		return TW_EINVAL;
	*out = NULL;
	if (t->destroying)
		return TW_ESHUTDOWN;
	struct twp_ep ep;
	if (twp_addr_parse(addr, &ep, true, NULL) != 0 || ep.ip == 0 ||
	    ep.port == 0 || (ep.mac[0] & 1))
		return TW_EINVAL;
	struct dsess *s = sess_new(t);
	if (s == NULL) {
		t->st.sessions_full++;
		return t->nsess >= t->o.max_sessions ? TW_ENOSPC : TW_ENOMEM;
	}
	s->peer = ep;
	tw_conn_set_peer_ip4(&s->base, s->peer.ip, s->peer.port);
	/* The nonce's first 8 bytes: our CONNECT counter (the acceptor's
	 * replay window); the other 8 stay random. */
	twp_nonce_set_counter(s->nonce, ++t->connect_ctr);
	s->state = S_CONNECTING;
	s->connect_due = true;
	ctl_add(s);
	tw_loop_timer_after(t->base.loop, &s->rto, t->o.rto_ns);
	t->st.sessions_opened++;
	*out = &s->base;
	return TW_OK;
}

static tw_status d_send(tw_transport *tt, tw_conn *cc, struct tw_send_req *r)
{
	struct dt *t = DT(tt);
	struct dsess *s = (struct dsess *)(void *)cc;
	if (s == NULL || r == NULL || r->done == NULL ||
	    (r->niov != 0 && r->iov == NULL))
		return TW_EINVAL;
	if (s->state == S_CLOSED || s->linger)
		return TW_EUNREACHABLE;
	uint64_t sum = 0;
	for (uint32_t i = 0; i < r->niov; i++)
		sum += r->iov[i].iov_len;
	if (sum != r->len || r->len < TW_FRAME_HDR_SIZE ||
	    r->len > TW_FRAME_MAX_TOTAL)
		return TW_EINVAL;
	if (s->held >= t->o.max_queued)
		return TW_ENOSPC;
	struct txm *x = SLIST_FIRST(&t->txm_free);
	if (x != NULL) {
		SLIST_REMOVE_HEAD(&t->txm_free, free_link);
	} else {
		x = malloc(sizeof(*x));
		if (x == NULL)
			return TW_ENOMEM;
	}
	memset(x, 0, offsetof(struct txm, shinfo));
	x->r = r;
	x->s = s;
	x->t = t;
	x->len = r->len;
	r->sent_ = 0;
	r->iov_idx_ = 0;
	r->flags_ = 0;
	STAILQ_INSERT_TAIL(&s->txq, x, link);
	if (s->snd_cur == NULL)
		s->snd_cur = x;
	s->held++;
	ready_add(s);
	return TW_OK;
}

static void d_close(tw_transport *tt, tw_conn *cc)
{
	(void)tt;
	if (cc == NULL)
		return;
	sess_fail((struct dsess *)(void *)cc, TW_ESHUTDOWN, true);
}

static void d_pause(tw_transport *tt, tw_conn *cc, bool paused)
{
	struct dt *t = DT(tt);
	struct dsess *s = (struct dsess *)(void *)cc;
	if (s == NULL || s->state == S_CLOSED || s->paused == paused)
		return;
	s->paused = paused;
	if (paused) {
		t->st.pauses++;
		return;
	}
	/* A frame in assembly gets a whole asm_stall_ns from now. */
	s->rx_progress = now_ns(t);
	s->rx_mark = s->rx_have;
	/* Ask for what we dropped meanwhile now, not at the sender's
	 * (backed off) retransmission timeout. */
	s->nak_sent = true;
	s->nak_for = s->rcv_next;
	s->nak_due = true;
	s->ack_due = true;
	ctl_add(s);
}

static void d_close_after_send(tw_transport *tt, tw_conn *cc, tw_status st)
{
	struct dt *t = DT(tt);
	struct dsess *s = (struct dsess *)(void *)cc;
	if (s == NULL || s->state == S_CLOSED || s->linger)
		return;
	s->linger = true;
	s->linger_st = st;
	s->linger_at = now_ns(t) + TW_CLOSE_AFTER_SEND_NS;
	if (s->held == 0 && s->state == S_OPEN) {
		sess_fail(s, st, true);
		return;
	}
	/* ka_fire cuts the linger: at its deadline, not a keepalive
	 * period (dead_ns / 4, seconds) later. */
	tw_loop_timer_after(t->base.loop, &s->ka, TW_CLOSE_AFTER_SEND_NS);
}

static tw_status d_admit(tw_transport *tt, const char *const *addrs, uint32_t n)
{
	struct dt *t = DT(tt);
	if (n != 0 && addrs == NULL)
		return TW_EINVAL;
	struct admit_ep *v = NULL;
	uint32_t k = 0;
	if (n != 0) {
		v = calloc(n, sizeof(*v));
		if (v == NULL)
			return TW_ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (addrs[i] == NULL ||
		    twp_addr_parse(addrs[i], &v[k].ep, true, NULL) != 0)
			continue; /* no DPDK endpoint: none admitted */
		/* A member admitted again keeps its CONNECT window, or its
		 * old CONNECTs could be replayed once more. */
		for (uint32_t j = 0; j < t->nadmit; j++)
			if (same_ep(&t->admit[j].ep, &v[k].ep)) {
				v[k].connects = t->admit[j].connects;
				break;
			}
		k++;
	}
	free(t->admit);
	t->admit = v;
	t->nadmit = k;
	t->admit_only = true;
	return TW_OK;
}

tw_status tw_dpdk_transport_secure(tw_transport *tt, const void *secret,
				   size_t len, bool admit_only)
{
	struct dt *t = DT(tt);
	if (t == NULL || (len != 0 && secret == NULL))
		return TW_EINVAL;
	uint8_t *k = NULL;
	if (len != 0) {
		k = malloc(len);
		if (k == NULL)
			return TW_ENOMEM;
		memcpy(k, secret, len);
	}
	if (t->secret != NULL) {
		sodium_memzero(t->secret, t->secret_len);
		free(t->secret);
	}
	t->secret = k;
	t->secret_len = len;
	t->admit_only = admit_only;
	t->want_tag = len != 0 && !t->o.no_pkt_tag;
	return TW_OK;
}

static void free_all(struct dt *t)
{
	if (t->secret != NULL) {
		sodium_memzero(t->secret, t->secret_len);
		free(t->secret);
	}
	free(t->admit);
	free(t->scratch);
	struct txm *x;
	while ((x = SLIST_FIRST(&t->txm_free)) != NULL) {
		SLIST_REMOVE_HEAD(&t->txm_free, free_link);
		free(x);
	}
	free(t->slots);
	free(t->gen);
	free(t->txb);
	free(t->rxb);
	free(t);
}

static void d_destroy(tw_transport *tt)
{
	struct dt *t = DT(tt);
	if (t == NULL)
		return;
	t->destroying = true;
	struct dsess *s;
	TAILQ_FOREACH(s, &t->sessions, link)
	sess_fail(s, TW_ESHUTDOWN, true);
	/* Let the RESETs out and the NIC give back what it reads. */
	uint64_t deadline = tw_now_ns() + DESTROY_NS;
	uint32_t stalls = 0;
	for (;;) {
		if (tx_flush(t) == 0 && t->txn != 0 && ++stalls > 100) {
			/* The link takes nothing (peer gone): what is
			 * left would only wait for the deadline. */
			for (uint32_t i = 0; i < t->txn; i++)
				rte_pktmbuf_free(t->txb[i]);
			t->txn = 0;
		}
		if (t->ext_waiting != 0)
			(void)rte_eth_tx_done_cleanup(t->port_id, t->q, 0);
		(void)run_done(t);
		(void)reap(t);
		if ((TAILQ_EMPTY(&t->sessions) && t->txn == 0) ||
		    tw_now_ns() > deadline)
			break;
		if (TAILQ_EMPTY(&t->sessions))
			break; /* only packets the link will not take */
		usleep(100);
	}
	/* Packets the PMD never took: freeing them releases their frames. */
	for (uint32_t i = 0; i < t->txn; i++)
		rte_pktmbuf_free(t->txb[i]);
	t->txn = 0;
	(void)run_done(t);
	(void)reap(t);
	if (t->poller_on)
		tw_loop_remove_poller(t->base.loop, &t->poller);
	tw_timer_cancel(tw_loop_timers(t->base.loop), &t->idle);
	tw_timer_cancel(tw_loop_timers(t->base.loop), &t->dack_tm);
	void *m;
	while (rte_ring_dequeue(t->dq->steer, &m) == 0)
		rte_pktmbuf_free(m);
	atomic_store(&t->dq->owner, NULL);
	if (!TAILQ_EMPTY(&t->sessions)) {
		/* The NIC still holds external buffers of some frame: their
		 * sessions (and done calls) stay, leaked, rather than free
		 * what it may still read. */
		fprintf(stderr, "tensorwire: dpdk transport destroyed while "
				"the NIC holds frames; leaking them\n");
		return;
	}
	if (tw_buf_pool_destroy(t->pool) != TW_OK)
		fprintf(stderr, "tensorwire: dpdk transport destroyed while "
				"receive buffers are still held; leaking the "
				"pool\n");
	free_all(t);
}

tw_status tw_dpdk_transport_create(tw_loop *l, tw_dpdk_env *env, uint16_t queue,
				   const struct tw_dpdk_opts *in,
				   const struct tw_transport_cbs *cbs,
				   tw_transport **out)
{
	if (out == NULL)
		return TW_EINVAL;
	*out = NULL;
	if (l == NULL || env == NULL || queue >= env->nq || cbs == NULL ||
	    cbs->on_frame == NULL || cbs->on_conn == NULL)
		return TW_EINVAL;
	if (in != NULL && in->opts_size < sizeof(in->opts_size))
		return TW_EINVAL;
	struct tw_dpdk_opts o;
	tw_dpdk_opts_get(in, &o);
	tw_status cst = tw_dpdk_opts_check(in, env->nq);
	if (cst != TW_OK)
		return cst;
	if (o.rx_window == 0)
		o.rx_window = o.credits;

	void *expect = NULL;
	if (!atomic_compare_exchange_strong(&env->q[queue].owner, &expect,
					    (void *)1))
		return TW_EBUSY;

	struct dt *t = calloc(1, sizeof(*t));
	tw_status st = TW_ENOMEM;
	if (t == NULL)
		goto fail;
	t->base.ops = &dpdk_ops;
	t->base.loop = l;
	t->base.cbs = *cbs;
	t->o = o;
	TAILQ_INIT(&t->sessions);
	STAILQ_INIT(&t->ready);
	STAILQ_INIT(&t->ctl);
	TAILQ_INIT(&t->dack);
	STAILQ_INIT(&t->done);
	t->env = env;
	t->dq = &env->q[queue];
	t->q = queue;
	t->port_id = env->port_id;
	t->burst = o.burst;
	t->win = o.rx_window;
	t->lend_max = (int64_t)(env->o.mbufs / 2);
	t->ka_ns = o.dead_ns / 4;
	t->ack_delay_ns = o.ack_delay_ns < o.rto_ns / 4 ? o.ack_delay_ns
							: o.rto_ns / 4;
	/* A 4 KiB tensor's call or reply (3 packets at MTU 1500), and never
	 * more than a quarter of the credits (ours stand for the peer's). */
	t->dack_pkts = o.credits / 4 < DACK_PKTS ? o.credits / 4 : DACK_PKTS;
	if (t->dack_pkts == 0)
		t->dack_pkts = 1;
	/* Above any counter a process before us on this endpoint used
	 * (unless the clock went back). */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	t->connect_ctr = (uint64_t)ts.tv_sec * 1000000000u +
			 (uint64_t)ts.tv_nsec;
	randombytes_buf(t->cookie_key, sizeof(t->cookie_key));
	/* Often enough to see a stall within a quarter of its timeout. */
	t->tick_ns = o.asm_stall_ns / 4 < t->ka_ns ? o.asm_stall_ns / 4
						   : t->ka_ns;
	if (t->tick_ns == 0)
		t->tick_ns = 1;
	t->ooo_max = o.ooo_max != 0 ? o.ooo_max : env->o.mbufs / 4;
	if (t->ooo_max == 0)
		t->ooo_max = 1;
	t->rexmit_max = o.rexmit_max;
	if (t->rexmit_max == 0) {
		/* Twice dead_ns at the longest backoff: a silent peer ends
		 * by dead_ns first (sessions_dead); this catches one that
		 * talks (keepalives) but acknowledges nothing. */
		uint64_t n = o.dead_ns / (o.rto_ns << (RTO_BACKOFF_MAX - 1)) +
			     RTO_BACKOFF_MAX;
		t->rexmit_max = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
	}
	t->self = env->ep;
	t->self.port = htons((uint16_t)(env->base_port + queue));
	memcpy(t->local.mac, env->ep.mac, 6);
	t->local.ip = env->ep.ip;
	t->local.base_port = env->base_port;
	t->local.nports = env->nq;
	t->local.mss = env->mss;
	t->zc = env->multi_seg && env->iova_va && o.zc_threshold != UINT64_MAX;
	t->sw_udp_csum = !o.sw_udp_csum_off;
	if (sodium_init() < 0)
		goto fail; /* no randomness: TW_ENOMEM, as libsodium's own */
	t->slots = calloc(o.max_sessions, sizeof(*t->slots));
	t->gen = calloc(o.max_sessions, sizeof(*t->gen));
	t->txb = calloc(TXB_CAP, sizeof(*t->txb));
	t->rxb = calloc(MAX_BURST, sizeof(*t->rxb));
	t->scratch = malloc(TWP_HDR_LEN + env->mss);
	if (t->slots == NULL || t->gen == NULL || t->txb == NULL ||
	    t->rxb == NULL || t->scratch == NULL)
		goto fail;
	/* Each session takes a random generation (sess_new): a restarted
	 * process does not reuse its previous life's session numbers. */

	struct tw_buf_pool_opts po;
	tw_buf_pool_opts_init(&po, sizeof(po));
	po.buf_size = o.rx_pool_buf_size;
	po.count = o.rx_pool_count;
	po.prefault = 1;
	po.name = "dpdk-rx";
	st = tw_buf_pool_create(&po, &t->pool);
	if (st != TW_OK)
		goto fail;

	t->poller.fn = d_poll;
	t->poller.arg = t;
	tw_loop_add_poller(l, &t->poller);
	t->poller_on = true;
	tw_timer_init(&t->idle, idle_fire, t);
	tw_timer_init(&t->dack_tm, dack_fire, t);
	t->idle_cur = o.idle_wake_ns;
	if (o.idle_wake_ns != 0)
		tw_loop_timer_after(l, &t->idle, o.idle_wake_ns);
	atomic_store(&env->q[queue].owner, t);
	*out = &t->base;
	return TW_OK;
fail:
	if (t != NULL) {
		free(t->slots);
		free(t->gen);
		free(t->txb);
		free(t->rxb);
		free(t->scratch);
		free(t);
	}
	atomic_store(&env->q[queue].owner, NULL);
	return st;
}

void tw_dpdk_get_stats(const tw_transport *tt, struct tw_dpdk_stats *s)
{
	if (s == NULL)
		return;
	if (tt == NULL) {
		memset(s, 0, sizeof(*s));
		return;
	}
	*s = ((const struct dt *)(const void *)tt)->st;
}

static void d_counters(const tw_transport *tt, struct tw_transport_counters *c)
{
	const struct dt *t = (const struct dt *)(const void *)tt;
	c->retransmits += __atomic_load_n(&t->st.retransmits, __ATOMIC_RELAXED);
	c->duplicates += __atomic_load_n(&t->st.dup_pkts, __ATOMIC_RELAXED);
}

static const struct tw_transport_ops dpdk_ops = {
	.name = "dpdk",
	.counters = d_counters,
	.listen = d_listen,
	.connect = d_connect,
	.send = d_send,
	.close = d_close,
	.pause = d_pause,
	.close_after_send = d_close_after_send,
	.admit = d_admit,
	.destroy = d_destroy,
};
