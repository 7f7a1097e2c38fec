/* Rendezvous and shutdown barrier: rank 0's control server thread and every
 * rank's control connection to it. Control plane only: plain sockets,
 * poll() deadlines, tensorwire frames (AUTH, JOIN, SHUTDOWN, EXCEPTION).
 * Every connection authenticates before it may JOIN (rpc/auth.h), and
 * everything a peer sends is bounded before it is read (rendezvous.h). */
#include "rpc/rendezvous.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sodium.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <tensorwire/message.h>

#include "dataplane/clock.h"
#include "dataplane/err.h"
#include "dataplane/log.h"
#include "dataplane/netaddr.h"
#include "rpc/auth.h"

/* Pause between connection attempts while rank 0 is not up yet. */
#define RDV_RETRY_MS 50

/* Deadline from a timeout in ms; UINT64_MAX for none (< 0). */
static uint64_t deadline_after(int64_t timeout_ms)
{
	if (timeout_ms < 0)
		return UINT64_MAX;
	return tw_now_ns() + (uint64_t)timeout_ms * 1000000u;
}

/* poll() timeout until deadline, capped so stop requests are seen. */
static int poll_ms(uint64_t deadline)
{
	if (deadline == UINT64_MAX)
		return -1;
	uint64_t n = tw_now_ns();
	if (n >= deadline)
		return 0;
	uint64_t ms = (deadline - n + 999999) / 1000000;
	return ms > 1000000 ? 1000000 : (int)ms;
}

tw_status rdv_parse_url(const char *url, char *host, size_t hostlen,
			uint16_t *port)
{
	if (url == NULL || strncmp(url, "tcp://", 6) != 0)
		return TW_EINVAL;
	const char *h = url + 6;
	const char *colon;
	const char *hend;
	if (*h == '[') { /* [v6]:port */
		hend = strchr(h, ']');
		if (hend == NULL || hend[1] != ':')
			return TW_EINVAL;
		colon = hend + 1;
		h++;
	} else {
		colon = strrchr(h, ':');
		if (colon == NULL)
			return TW_EINVAL;
		hend = colon;
	}
	size_t hl = (size_t)(hend - h);
	if (hl == 0 || hl >= hostlen)
		return TW_EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	char *end;
	errno = 0;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (errno != 0 || end == colon + 1 || *end != '\0' || p > 65535)
		return TW_EINVAL;
	*port = (uint16_t)p;
	return TW_OK;
}

static tw_status resolve(const char *url, struct sockaddr_storage *ss,
			 socklen_t *sslen)
{
	char host[256];
	uint16_t port;
	if (rdv_parse_url(url, host, sizeof(host), &port) != TW_OK) {
		return tw_fail(TW_EINVAL,
			       "bad rendezvous address '%s' (want "
			       "tcp://host:port)",
			       url ? url : "(null)");
	}
	struct addrinfo hints = {0}, *ai = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	char ps[8];
	snprintf(ps, sizeof(ps), "%u", port);
	int rc = getaddrinfo(host, ps, &hints, &ai);
	if (rc != 0 || ai == NULL) {
		if (ai != NULL)
			freeaddrinfo(ai);
		return tw_fail(TW_EINVAL,
			       "cannot resolve rendezvous host "
			       "'%s': %s",
			       host, gai_strerror(rc));
	}
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*sslen = ai->ai_addrlen;
	freeaddrinfo(ai);
	return TW_OK;
}

/* ---- framing over a non-blocking socket ----------------------------- */

/* Reads one frame in pieces as bytes arrive. Nothing beyond the header is
 * allocated before the header passed max. */
struct reader {
	unsigned char hdr[TW_FRAME_HDR_SIZE];
	size_t got;
	uint64_t total;
	uint64_t max; /* the largest frame accepted next (0: RDV_FRAME_SMALL) */
	tw_buf *buf;
	tw_frame_hdr h; /* hdr decoded: valid while buf is set */
};

enum { RD_MORE = 0, RD_FRAME = 1, RD_EOF = -1, RD_BIG = -2 };

static void reader_reset(struct reader *r)
{
	tw_buf_release(r->buf);
	r->buf = NULL;
	r->got = 0;
	r->total = 0;
}

static uint64_t reader_max(const struct reader *r)
{
	return r->max ? r->max : RDV_FRAME_SMALL;
}

/* Read what is there. RD_FRAME: a whole frame in r->buf; RD_MORE: need
 * more; RD_EOF: EOF, error or a bad header; RD_BIG: a header announcing
 * more than r->max (r->h says how much). The connection is done after
 * RD_EOF and RD_BIG. */
static int reader_feed(struct reader *r, int fd)
{
	for (;;) {
		ssize_t n;
		if (r->got < TW_FRAME_HDR_SIZE) {
			n = recv(fd, r->hdr + r->got,
				 TW_FRAME_HDR_SIZE - r->got, 0);
		} else {
			n = recv(fd, (unsigned char *)r->buf->data + r->got,
				 (size_t)(r->total - r->got), 0);
		}
		if (n == 0)
			return RD_EOF;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return RD_MORE;
			return RD_EOF;
		}
		r->got += (size_t)n;
		if (r->buf == NULL && r->got == TW_FRAME_HDR_SIZE) {
			tw_frame_limits lim = {.max_total = TW_FRAME_MAX_TOTAL,
					       .max_segs = 16,
					       .max_payload = UINT32_MAX};
			if (tw_frame_hdr_decode(r->hdr, &lim, &r->h) != TW_OK)
				return RD_EOF;
			if (r->h.total_len > reader_max(r))
				return RD_BIG;
			if (tw_buf_alloc(r->h.total_len, &r->buf) != TW_OK)
				return RD_EOF;
			memcpy(r->buf->data, r->hdr, TW_FRAME_HDR_SIZE);
			r->total = r->h.total_len;
		}
		if (r->buf != NULL && r->got == r->total)
			return RD_FRAME;
	}
}

/* Decode the frame the reader holds into *m (which stays where it is: its
 * payload points into its own arena) and reset the reader. */
static tw_status reader_decode(struct reader *r, tw_in_msg *m)
{
	tw_status st = tw_msg_decode(r->buf, 0, (size_t)r->total, &r->h, NULL,
				     m);
	reader_reset(r);
	return st;
}

static tw_status too_big(const struct reader *r)
{
	return tw_fail(TW_EPROTO,
		       "control frame of %" PRIu64
		       " bytes is over the limit of %" PRIu64 " bytes here",
		       r->h.total_len, reader_max(r));
}

/* Wait for a whole frame until deadline; idle (NULL: block in poll) is
 * called between looks instead of poll for a thread that must keep
 * working. TW_ETIMEDOUT, TW_EUNREACHABLE on EOF or error, TW_EPROTO on a
 * bad or oversized frame (with a reason). */
static tw_status recv_frame(int fd, struct reader *r, uint64_t deadline,
			    tw_in_msg *m, void (*idle)(void *arg), void *arg)
{
	for (;;) {
		int rc = reader_feed(r, fd);
		if (rc == RD_FRAME)
			return reader_decode(r, m);
		if (rc == RD_BIG) {
			tw_status st = too_big(r);
			reader_reset(r);
			return st;
		}
		if (rc < 0) {
			reader_reset(r);
			return TW_EUNREACHABLE;
		}
		if (idle != NULL) {
			if (deadline != UINT64_MAX && tw_now_ns() >= deadline)
				return TW_ETIMEDOUT;
			idle(arg);
			continue;
		}
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int t = poll_ms(deadline);
		if (t == 0)
			return TW_ETIMEDOUT;
		if (poll(&p, 1, t) < 0 && errno != EINTR)
			return TW_EIO;
	}
}

/* Send a frame; a full socket is waited for until deadline (now: not at
 * all). */
static tw_status send_frame(int fd, unsigned type, const tw_value *payload,
			    uint64_t deadline)
{
	tw_frame_hdr h = {0};
	h.version = TW_FRAME_VERSION;
	h.type = (uint8_t)type;
	tw_out_msg m;
	tw_status st = tw_msg_encode(NULL, &h, payload, &m);
	if (st != TW_OK)
		return st;
	struct iovec iov[1 + 2 * TW_OUT_MSG_INLINE_SEGS];
	uint32_t niov = m.niov;
	if (niov > sizeof(iov) / sizeof(iov[0])) {
		tw_out_msg_release(&m);
		return TW_EINVAL;
	}
	memcpy(iov, m.iov, niov * sizeof(iov[0]));
	struct iovec *cur = iov;
	st = TW_OK;
	while (niov > 0) {
		struct msghdr mh = {.msg_iov = cur, .msg_iovlen = niov};
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				struct pollfd p = {.fd = fd, .events = POLLOUT};
				int t = poll_ms(deadline);
				if (t == 0) {
					st = TW_ETIMEDOUT;
					break;
				}
				poll(&p, 1, t);
				continue;
			}
			st = TW_EUNREACHABLE;
			break;
		}
		size_t left = (size_t)n;
		while (niov > 0 && left >= cur->iov_len) {
			left -= cur->iov_len;
			cur++;
			niov--;
		}
		if (niov > 0) {
			cur->iov_base = (char *)cur->iov_base + left;
			cur->iov_len -= left;
		}
	}
	tw_out_msg_release(&m);
	return st;
}

static tw_status send_error(int fd, tw_status kind, const char *msg,
			    uint64_t deadline)
{
	tw_value e;
	tw_status st = tw_value_error(&e, kind, 0, msg);
	if (st != TW_OK)
		return st;
	st = send_frame(fd, TW_MSG_EXCEPTION, &e, deadline);
	tw_value_destroy(&e);
	return st;
}

static tw_status send_auth(int fd, const struct auth_msg *am, uint64_t deadline)
{
	uint8_t b[AUTH_MSG_SIZE];
	auth_msg_encode(am, b);
	tw_value v = tw_value_bytes_borrow(b, sizeof(b));
	return send_frame(fd, TW_MSG_AUTH, &v, deadline);
}

/* An AUTH frame's step; TW_EPROTO with a reason otherwise. */
static tw_status auth_of(const tw_in_msg *m, struct auth_msg *am)
{
	if (m->hdr.type != TW_MSG_AUTH || m->payload.kind != TW_KIND_BYTES)
		return tw_fail(TW_EPROTO,
			       "expected an AUTH handshake step, got %s",
			       tw_msg_type_name(m->hdr.type));
	return auth_msg_decode(m->payload.u.str, m->payload.len, am);
}

/* Control connections stay open, idle, for the agent's life: keepalive
 * and TCP_USER_TIMEOUT let each end learn within RDV_VANISH_MS that a
 * host vanished without a FIN (rank 0 then counts the member gone for the
 * barrier; a worker's barrier fails instead of waiting its deadline). */
static void tune_socket_ms(int fd, uint32_t vanish_ms)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int idle = (int)(vanish_ms / 2000), intvl = (int)(vanish_ms / 6000);
	int cnt = 3;
	if (idle < 1)
		idle = 1;
	if (intvl < 1)
		intvl = 1;
	unsigned ut = vanish_ms;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut));
}

static void tune_socket(int fd)
{
	tune_socket_ms(fd, RDV_VANISH_MS);
}

/* ---- payloads -------------------------------------------------------- */

bool rdv_name_valid(const char *name, size_t len)
{
	if (name == NULL || len == 0 || len >= TW_WORKER_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == ':'))
			return false;
	}
	return true;
}

static pthread_once_t host_once = PTHREAD_ONCE_INIT;
static uint8_t host_id[RDV_HOST_ID_LEN];

static int hexval(int c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

static void host_id_read(void)
{
	/* "becd2285-9df3-472d-b21b-db5bfa2940b2\n": 32 hex digits. */
	char txt[64];
	size_t n = 0, got = 0;
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
	if (f != NULL) {
		n = fread(txt, 1, sizeof(txt) - 1, f);
		fclose(f);
	}
	for (size_t i = 0; i < n && got < 2 * RDV_HOST_ID_LEN; i++) {
		int v = hexval((unsigned char)txt[i]);
		if (v < 0)
			continue;
		host_id[got / 2] = (uint8_t)(got % 2 ? host_id[got / 2] | v
						     : v << 4);
		got++;
	}
	if (got == 2 * RDV_HOST_ID_LEN)
		return;
	/* Unknown: a host of our own, so nobody gets same-host treatment
	 * that may be wrong. */
	if (getrandom(host_id, sizeof(host_id), 0) != (ssize_t)sizeof(host_id))
		for (size_t i = 0; i < sizeof(host_id); i++)
			host_id[i] = (uint8_t)(tw_now_ns() >> (i % 8 * 8)) ^
				     (uint8_t)getpid();
}

void rdv_host_id(uint8_t out[RDV_HOST_ID_LEN])
{
	pthread_once(&host_once, host_id_read);
	memcpy(out, host_id, RDV_HOST_ID_LEN);
}

void rdv_host_id_for(const struct auth_key *k, uint8_t out[RDV_HOST_ID_LEN])
{
	uint8_t boot[RDV_HOST_ID_LEN];
	rdv_host_id(boot);
	if (k == NULL || k->len == 0) {
		memcpy(out, boot, RDV_HOST_ID_LEN);
		return;
	}
	static const char label[] = "tensorwire host id 1";
	crypto_generichash_state st;
	crypto_generichash_init(&st, NULL, 0, RDV_HOST_ID_LEN);
	crypto_generichash_update(&st, (const uint8_t *)label, sizeof(label));
	crypto_generichash_update(&st, k->secret, k->len);
	crypto_generichash_update(&st, boot, sizeof(boot));
	crypto_generichash_final(&st, out, RDV_HOST_ID_LEN);
	sodium_memzero(&st, sizeof(st));
}

/* m's main addresses (local false), or its same-host ones (an empty list
 * when it has none). */
static tw_status addrs_value(tw_value *out, const struct rdv_member *m,
			     bool local)
{
	uint32_t n = local && !m->local_addrs ? 0 : m->nloops;
	uint32_t base = local ? m->nloops : 0;
	tw_status st = tw_value_list(out, n);
	for (uint32_t i = 0; st == TW_OK && i < n; i++) {
		tw_value s;
		st = tw_value_cstring(&s, m->addrs[base + i]);
		if (st == TW_OK)
			st = tw_value_set_item(out, i, s);
	}
	if (st != TW_OK)
		tw_value_destroy(out);
	return st;
}

/* JOIN: tuple(str name, int rank, int world_size, list[str] addrs,
 * bytes host, list[str] local_addrs). */
static tw_status join_value(tw_value *out, const struct rdv_member *self,
			    uint32_t world)
{
	tw_value name, addrs, host, laddrs;
	tw_status st = tw_value_tuple(out, 6);
	if (st != TW_OK)
		return st;
	st = tw_value_cstring(&name, self->name);
	if (st == TW_OK)
		st = tw_value_set_item(out, 0, name);
	if (st == TW_OK)
		st = tw_value_set_item(out, 1, tw_value_int(self->rank));
	if (st == TW_OK)
		st = tw_value_set_item(out, 2, tw_value_int(world));
	if (st == TW_OK)
		st = addrs_value(&addrs, self, false);
	if (st == TW_OK)
		st = tw_value_set_item(out, 3, addrs);
	if (st == TW_OK)
		st = tw_value_bytes(&host, self->host, RDV_HOST_ID_LEN);
	if (st == TW_OK)
		st = tw_value_set_item(out, 4, host);
	if (st == TW_OK)
		st = addrs_value(&laddrs, self, true);
	if (st == TW_OK)
		st = tw_value_set_item(out, 5, laddrs);
	if (st != TW_OK)
		tw_value_destroy(out);
	return st;
}

static tw_status parse_host(const tw_value *v, struct rdv_member *m,
			    const char *what)
{
	if (v->kind != TW_KIND_BYTES || v->len != RDV_HOST_ID_LEN)
		return tw_fail(TW_EPROTO,
			       "malformed %s: the host identifier is not %u "
			       "bytes",
			       what, RDV_HOST_ID_LEN);
	memcpy(m->host, v->u.str, RDV_HOST_ID_LEN);
	m->host_known = true;
	return TW_OK;
}

/* One address string of a list into dst. */
static tw_status parse_addr(const tw_value *s, uint32_t i, char *dst)
{
	/* (a NUL inside would cut the address short) */
	if (s->kind != TW_KIND_STRING || s->len == 0 || s->len >= TW_ADDR_MAX ||
	    memchr(s->u.str, '\0', s->len) != NULL)
		return tw_fail(TW_EPROTO,
			       "malformed JOIN addresses: address %u "
			       "is not a string of 1 to %u bytes",
			       i, TW_ADDR_MAX - 1);
	memcpy(dst, s->u.str, s->len);
	dst[s->len] = '\0';
	return TW_OK;
}

/* Read list[str] v (main addresses) and l (same-host ones: empty, or one
 * per loop) into m->addrs (set even on failure: the caller frees). */
static tw_status parse_addrs(const tw_value *v, const tw_value *l,
			     struct rdv_member *m)
{
	if (v->kind != TW_KIND_LIST || v->len == 0 || v->len > RDV_MAX_LOOPS)
		return tw_fail(TW_EPROTO,
			       "malformed JOIN addresses: want a list of 1 to "
			       "%u strings",
			       RDV_MAX_LOOPS);
	if (l->kind != TW_KIND_LIST || (l->len != 0 && l->len != v->len))
		return tw_fail(TW_EPROTO,
			       "malformed JOIN same-host addresses: want an "
			       "empty list or one per loop (%u)",
			       v->len);
	m->local_addrs = l->len != 0;
	m->addrs = calloc((size_t)v->len * (m->local_addrs ? 2 : 1),
			  sizeof(*m->addrs));
	if (m->addrs == NULL)
		return tw_fail_static(TW_ENOMEM, "out of memory for addresses");
	m->nloops = v->len;
	for (uint32_t i = 0; i < l->len; i++) {
		tw_status st = parse_addr(&l->u.items[i], i,
					  m->addrs[v->len + i]);
		if (st != TW_OK)
			return st;
	}
	for (uint32_t i = 0; i < v->len; i++) {
		const tw_value *s = &v->u.items[i];
		/* (a NUL inside would cut the address short) */
		if (s->kind != TW_KIND_STRING || s->len == 0 ||
		    s->len >= TW_ADDR_MAX ||
		    memchr(s->u.str, '\0', s->len) != NULL)
			return tw_fail(TW_EPROTO,
				       "malformed JOIN addresses: address %u "
				       "is not a string of 1 to %u bytes",
				       i, TW_ADDR_MAX - 1);
		memcpy(m->addrs[i], s->u.str, s->len);
		m->addrs[i][s->len] = '\0';
	}
	return TW_OK;
}

static tw_status parse_name(const tw_value *v, char *name)
{
	if (v->kind != TW_KIND_STRING || !rdv_name_valid(v->u.str, v->len))
		return tw_fail(TW_EPROTO,
			       "malformed JOIN: the worker name is not 1 to %u "
			       "letters, digits, '-', '_' or ':'",
			       TW_WORKER_NAME_MAX - 1);
	memcpy(name, v->u.str, v->len);
	name[v->len] = '\0';
	return TW_OK;
}

tw_status rdv_parse_join(const tw_value *p, struct rdv_member *m, int64_t *rank,
			 int64_t *world)
{
	memset(m, 0, sizeof(*m));
	/* The tuple grows by appending (docs/wire.md, "The control
	 * plane"): the host and same-host addresses may be missing (an
	 * older worker), items after them are a newer one's. */
	if (p->kind != TW_KIND_TUPLE || p->len < 4 ||
	    p->u.items[1].kind != TW_KIND_INT ||
	    p->u.items[2].kind != TW_KIND_INT)
		return tw_fail_static(TW_EPROTO,
				      "malformed JOIN: want (name, rank, "
				      "world_size, addresses, host, "
				      "same-host addresses)");
	tw_status st = parse_name(&p->u.items[0], m->name);
	if (st == TW_OK && p->len > 4)
		st = parse_host(&p->u.items[4], m, "JOIN");
	if (st != TW_OK)
		return st;
	*rank = p->u.items[1].u.i;
	*world = p->u.items[2].u.i;
	const tw_value none = {.kind = TW_KIND_LIST};
	st = parse_addrs(&p->u.items[3], p->len > 5 ? &p->u.items[5] : &none,
			 m);
	if (st != TW_OK) {
		free(m->addrs);
		m->addrs = NULL;
		m->nloops = 0;
		m->local_addrs = false;
	}
	return st;
}

tw_status rdv_parse_members(const tw_value *p, uint32_t world,
			    struct rdv_member **out)
{
	*out = NULL;
	if (p->kind != TW_KIND_LIST || p->len != world)
		return tw_fail(TW_EPROTO,
			       "malformed member list: want a list of %u "
			       "workers",
			       world);
	struct rdv_member *ms = calloc(world, sizeof(*ms));
	if (ms == NULL)
		return tw_fail_static(TW_ENOMEM,
				      "out of memory for the member list");
	tw_status st = TW_OK;
	for (uint32_t r = 0; st == TW_OK && r < world; r++) {
		const tw_value *t = &p->u.items[r];
		if (t->kind != TW_KIND_TUPLE || t->len < 3 ||
		    t->u.items[0].kind != TW_KIND_INT ||
		    t->u.items[0].u.i != (int64_t)r) {
			st = tw_fail(TW_EPROTO,
				     "malformed member list: entry %u is not "
				     "(%u, name, addresses, host, same-host "
				     "addresses)",
				     r, r);
			break;
		}
		ms[r].rank = r;
		st = parse_name(&t->u.items[1], ms[r].name);
		if (st == TW_OK && t->len > 3)
			st = parse_host(&t->u.items[3], &ms[r], "member list");
		const tw_value none = {.kind = TW_KIND_LIST};
		if (st == TW_OK)
			st = parse_addrs(&t->u.items[2],
					 t->len > 4 ? &t->u.items[4] : &none,
					 &ms[r]);
		for (uint32_t q = 0; st == TW_OK && q < r; q++)
			if (strcmp(ms[q].name, ms[r].name) == 0)
				st = tw_fail(TW_EPROTO,
					     "malformed member list: ranks %u "
					     "and %u are both '%s'",
					     q, r, ms[r].name);
	}
	if (st != TW_OK) {
		rdv_members_free(ms, world);
		return st;
	}
	*out = ms;
	return TW_OK;
}

static int64_t clamp64(uint64_t v)
{
	return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* A worker's round: tuple(int round, int active, int events, int left_ms);
 * rank 0's answer: tuple(int round, int active, int events, bytes gone),
 * gone a bitmap of (world + 7) / 8 bytes, bit r (byte r / 8, bit r % 8)
 * set once rank r's control connection has closed. */
static tw_status round_value(tw_value *out, uint32_t round, struct rdv_count c,
			     const int64_t *left_ms, const uint8_t *gone,
			     uint32_t world)
{
	tw_status st = tw_value_tuple(out, 4);
	if (st == TW_OK)
		st = tw_value_set_item(out, 0, tw_value_int(round));
	if (st == TW_OK)
		st = tw_value_set_item(out, 1, tw_value_int(clamp64(c.active)));
	if (st == TW_OK)
		st = tw_value_set_item(out, 2, tw_value_int(clamp64(c.events)));
	if (st == TW_OK && left_ms)
		st = tw_value_set_item(out, 3, tw_value_int(*left_ms));
	if (st == TW_OK && !left_ms) {
		tw_value b;
		st = tw_value_bytes(&b, gone, (world + 7) / 8);
		if (st == TW_OK)
			st = tw_value_set_item(out, 3, b);
	}
	if (st != TW_OK)
		tw_value_destroy(out);
	return st;
}

tw_status rdv_parse_round(const tw_value *p, uint32_t world, uint32_t *round,
			  struct rdv_count *c, int64_t *left_ms, uint8_t *gone)
{
	bool from_worker = gone == NULL;
	if (p->kind != TW_KIND_TUPLE || p->len != 4)
		return tw_fail_static(TW_EPROTO,
				      "malformed SHUTDOWN: want 4 items");
	for (uint32_t i = 0; i < (from_worker ? 4u : 3u); i++)
		if (p->u.items[i].kind != TW_KIND_INT ||
		    p->u.items[i].u.i < (i == 3 ? -1 : 0))
			return tw_fail(TW_EPROTO,
				       "malformed SHUTDOWN: item %u is not a "
				       "count",
				       i);
	if (p->u.items[0].u.i > UINT32_MAX)
		return tw_fail_static(TW_EPROTO,
				      "malformed SHUTDOWN: round out of range");
	if (!from_worker && (p->u.items[3].kind != TW_KIND_BYTES ||
			     p->u.items[3].len != (world + 7) / 8))
		return tw_fail(TW_EPROTO,
			       "malformed SHUTDOWN: want a bitmap of %u "
			       "workers",
			       world);
	*round = (uint32_t)p->u.items[0].u.i;
	c->active = (uint64_t)p->u.items[1].u.i;
	c->events = (uint64_t)p->u.items[2].u.i;
	if (from_worker)
		*left_ms = p->u.items[3].u.i;
	else
		memcpy(gone, p->u.items[3].u.str, (world + 7) / 8);
	return TW_OK;
}

tw_status rdv_parse_gone(const tw_value *p, uint32_t world, uint8_t *gone)
{
	if (p->kind != TW_KIND_BYTES || p->len != (world + 7) / 8)
		return tw_fail(TW_EPROTO,
			       "malformed member notice: want a bitmap of %u "
			       "workers",
			       world);
	memcpy(gone, p->u.str, (world + 7) / 8);
	return TW_OK;
}

void rdv_members_free(struct rdv_member *m, uint32_t n)
{
	if (m == NULL)
		return;
	for (uint32_t i = 0; i < n; i++)
		free(m[i].addrs);
	free(m);
}

/* ---- rank 0's server ------------------------------------------------- */

enum sconn_state {
	SC_HELLO,  /* connected: waits for the handshake's HELLO */
	SC_PROOF,  /* challenged: waits for the client's PROOF */
	SC_AUTHED, /* proved it is worker id: waits for its JOIN */
	SC_JOINED, /* holds rank id; after the list: working */
	SC_WAIT,   /* sent this round's SHUTDOWN, waits for the others */
};

/* Connections before SC_JOINED are pending: bounded in number and time. */
#define PENDING(c) ((c)->state < SC_JOINED)

struct sconn {
	int fd;
	enum sconn_state state;
	uint32_t id;          /* the authenticated worker id (= rank) */
	uint64_t deadline;    /* pending: JOIN due; SC_WAIT: the barrier's; 0 */
	struct rdv_count cnt; /* SC_WAIT: this round's counts */
	struct auth_hs hs;
	struct reader rd;
};

struct rdv_server {
	int lfd;
	int stopfd; /* eventfd: stop the thread */
	pthread_t thread;
	uint32_t world;
	int64_t timeout_ms;
	uint64_t deadline; /* for the group to form */
	const struct auth_key *key;
	struct rdv_limits lim;
	bool formed;
	uint32_t joined;
	uint64_t full_at; /* when the last rank joined: the list goes out
			   * RDV_ANNOUNCE_GRACE_MS later (0: not full) */
	uint32_t npending;
	uint32_t round;             /* the barrier's current round, from 1 */
	uint64_t accept_resume;     /* accept(2) failed: listen again then */
	struct rdv_member *members; /* world entries; addrs NULL = free slot */
	/* world entries: where a member joined from when that is another
	 * host (its IP), else "" */
	char (*away)[TW_NETADDR_HOST_MAX];
	uint8_t *gone;  /* bitmap: members whose connection closed, formed */
	bool gone_news; /* gone grew since the members were last told */
	struct sconn *conns;
	size_t nconns, capconns;
	_Atomic uint64_t st_auth_failed, st_refused, st_oversize, st_timed_out,
		st_over_cap, st_accept_errors, st_gone;
};

#define COUNT(s, what) atomic_fetch_add(&(s)->st_##what, 1)

static void sconn_close(struct rdv_server *s, size_t i)
{
	struct sconn *c = &s->conns[i];
	close(c->fd);
	reader_reset(&c->rd);
	if (PENDING(c))
		s->npending--;
	else if (s->formed) {
		s->gone[c->id / 8] |= (uint8_t)(1u << (c->id % 8));
		s->gone_news = true;
	} else {
		/* Left before the group formed: the rank is free again (a
		 * restarted worker may take it). */
		free(s->members[c->id].addrs);
		s->members[c->id].addrs = NULL;
		s->away[c->id][0] = '\0';
		s->joined--;
	}
	s->conns[i] = s->conns[--s->nconns];
}

/* The member list: list of tuple(int rank, str name, list[str] addrs,
 * bytes host, list[str] local_addrs). */
static tw_status members_value(const struct rdv_server *s, tw_value *out)
{
	tw_status st = tw_value_list(out, s->world);
	for (uint32_t r = 0; st == TW_OK && r < s->world; r++) {
		tw_value t, name, addrs, host, laddrs;
		st = tw_value_tuple(&t, 5);
		if (st != TW_OK)
			break;
		st = tw_value_set_item(&t, 0, tw_value_int(r));
		if (st == TW_OK)
			st = tw_value_cstring(&name, s->members[r].name);
		if (st == TW_OK)
			st = tw_value_set_item(&t, 1, name);
		if (st == TW_OK)
			st = addrs_value(&addrs, &s->members[r], false);
		if (st == TW_OK)
			st = tw_value_set_item(&t, 2, addrs);
		if (st == TW_OK)
			st = tw_value_bytes(&host, s->members[r].host,
					    RDV_HOST_ID_LEN);
		if (st == TW_OK)
			st = tw_value_set_item(&t, 3, host);
		if (st == TW_OK)
			st = addrs_value(&laddrs, &s->members[r], true);
		if (st == TW_OK)
			st = tw_value_set_item(&t, 4, laddrs);
		if (st == TW_OK)
			st = tw_value_set_item(out, r, t);
		else
			tw_value_destroy(&t);
	}
	if (st != TW_OK)
		tw_value_destroy(out);
	return st;
}

/* Refuse conn i with a message and close it. The answer is tiny and the
 * socket's buffer has room for it unless the peer stopped reading: it is
 * not waited for (a stranger cannot stall the server). */
static void reject(struct rdv_server *s, size_t i, tw_status kind,
		   const char *msg)
{
	char q[384];
	TW_LOG(TW_LOG_WARN, "join_refused", "status=%s reason=%s",
	       tw_status_name(kind), tw_log_q(q, sizeof(q), msg));
	send_error(s->conns[i].fd, kind, msg, deadline_after(0));
	sconn_close(s, i);
}

/* The frame conn i sent in state SC_HELLO or SC_PROOF. */
static void handle_auth(struct rdv_server *s, size_t i, const tw_in_msg *m)
{
	struct sconn *c = &s->conns[i];
	struct auth_msg am, ch;
	char msg[TW_ERRMSG_MAX];
	tw_status st = auth_of(m, &am);
	if (st == TW_OK && c->state == SC_HELLO && am.step == AUTH_HELLO &&
	    am.from >= s->world) {
		snprintf(msg, sizeof(msg),
			 "rank %" PRIu32 " is out of range for world size %u",
			 am.from, s->world);
		COUNT(s, refused);
		reject(s, i, TW_EINVAL, msg);
		return;
	}
	if (st == TW_OK)
		st = c->state == SC_HELLO
			     ? auth_server_hello(&c->hs, s->key, AUTH_CTX_RDV,
						 AUTH_ID_RDV, &am, &ch)
			     : auth_server_proof(&c->hs, &am);
	if (st != TW_OK) {
		snprintf(msg, sizeof(msg), "rendezvous: %s", tw_errmsg(st));
		COUNT(s, auth_failed);
		reject(s, i, st, msg);
		return;
	}
	if (c->state == SC_HELLO) {
		if (send_auth(c->fd, &ch, deadline_after(0)) != TW_OK) {
			sconn_close(s, i);
			return;
		}
		c->state = SC_PROOF;
		return;
	}
	c->state = SC_AUTHED;
	c->id = c->hs.client_id;
	c->rd.max = RDV_JOIN_MAX; /* the JOIN, next */
}

/* Whether connection fd comes from another host (or network namespace):
 * its peer is neither a loopback address nor the address it reached (a
 * connection from this host to one of its own addresses has that address
 * at both ends). The peer's address in ip. */
static bool from_elsewhere(int fd, char *ip, size_t iplen)
{
	struct sockaddr_storage p, l;
	socklen_t pl = sizeof(p), ll = sizeof(l);
	if (getpeername(fd, (struct sockaddr *)&p, &pl) != 0 ||
	    getsockname(fd, (struct sockaddr *)&l, &ll) != 0)
		return false;
	/* (an IPv4 peer of a rendezvous on [::] comes v4-mapped: compared
	 * as the IPv4 address it is) */
	if (tw_netaddr_is_loopback((struct sockaddr *)&p) ||
	    tw_netaddr_same_ip((struct sockaddr *)&p, (struct sockaddr *)&l))
		return false;
	char host[TW_NETADDR_HOST_MAX];
	if (!tw_netaddr_host((struct sockaddr *)&p, host, sizeof(host)))
		return false;
	snprintf(ip, iplen, "%s", host);
	return true;
}

/* The first of m's addresses only its own host can reach (loopback, or
 * a wildcard left as announced), or NULL. */
static const char *loopback_addr(const struct rdv_member *m)
{
	for (uint32_t i = 0; m->addrs != NULL && i < m->nloops; i++) {
		struct sockaddr_storage ss;
		socklen_t sl;
		const char *a = m->addrs[i];
		if (tw_netaddr_parse(a, &ss, &sl) == TW_OK &&
		    (tw_netaddr_is_loopback((struct sockaddr *)&ss) ||
		     tw_netaddr_is_wildcard((struct sockaddr *)&ss)))
			return a;
	}
	return NULL;
}

#define LOOPBACK_HINT                                                          \
	"give its transport an address of its host (io_uring: "                \
	"listen_host or advertise_host, or 0.0.0.0 or :: to announce the "     \
	"one that reaches the rendezvous)"

/* A group across hosts with a member only its own host can reach would
 * form, then fail every call to it: refused at the JOIN instead, naming
 * the address. */
static tw_status check_reachable(const struct rdv_server *s,
				 const struct rdv_member *m, const char *away,
				 char *msg, size_t size)
{
	const char *lo = loopback_addr(m);
	if (away[0] != '\0' && lo != NULL) {
		snprintf(
			msg, size,
			"worker '%.64s' announces %.80s, which only its own "
			"host can reach (loopback or wildcard), "
			"but joins from %.46s, another host, whose workers cannot "
			"connect to it: " LOOPBACK_HINT,
			m->name, lo, away);
		return TW_EINVAL;
	}
	for (uint32_t r = 0; r < s->world; r++) {
		const struct rdv_member *o = &s->members[r];
		const char *olo = loopback_addr(o);
		if (o->addrs == NULL)
			continue;
		if (away[0] != '\0' && olo != NULL) {
			snprintf(
				msg, size,
				"worker '%.64s' (rank %u) announced %.80s, which "
				"only its own host can reach (loopback or "
				"wildcard), and worker '%.64s', joining "
				"from %.46s (another host), cannot: "
				"on worker '%.64s', " LOOPBACK_HINT,
				o->name, r, olo, m->name, away, o->name);
			return TW_EINVAL;
		}
		if (lo != NULL && s->away[r][0] != '\0') {
			snprintf(
				msg, size,
				"worker '%.64s' announces %.80s, which only its own "
				"host can reach (loopback or wildcard), "
				"but worker '%.64s' (rank %u) joined from %.46s, "
				"another host, and cannot connect to it: " LOOPBACK_HINT,
				m->name, lo, o->name, r, s->away[r]);
			return TW_EINVAL;
		}
	}
	return TW_OK;
}

static void handle_join(struct rdv_server *s, size_t i, const tw_value *p)
{
	struct sconn *c = &s->conns[i];
	char msg[1024];
	struct rdv_member m;
	int64_t rank, world;
	tw_status st = rdv_parse_join(p, &m, &rank, &world);
	if (st != TW_OK) {
		snprintf(msg, sizeof(msg), "%s", tw_errmsg(st));
		COUNT(s, refused);
		reject(s, i, TW_EPROTO, msg);
		return;
	}
	if (world != (int64_t)s->world) {
		snprintf(msg, sizeof(msg),
			 "world size %" PRId64
			 " does not match rank 0's world size %u",
			 world, s->world);
		st = TW_EINVAL;
	} else if (rank < 0 || rank >= (int64_t)s->world) {
		snprintf(msg, sizeof(msg),
			 "rank %" PRId64 " is out of range for world size %u",
			 rank, s->world);
		st = TW_EINVAL;
	} else if (rank != (int64_t)c->id) {
		snprintf(msg, sizeof(msg),
			 "JOIN as rank %" PRId64
			 " on a connection authenticated as worker id %u",
			 rank, c->id);
		st = TW_EAUTH;
	} else if (s->formed) {
		snprintf(msg, sizeof(msg),
			 "the group is already complete (world size %u)",
			 s->world);
		st = TW_EINVAL;
	} else if (s->members[rank].addrs != NULL) {
		snprintf(msg, sizeof(msg),
			 "rank %" PRId64 " is already taken by worker '%s'",
			 rank, s->members[rank].name);
		st = TW_EINVAL;
	}
	for (uint32_t r = 0; st == TW_OK && r < s->world; r++) {
		if (s->members[r].addrs != NULL &&
		    strcmp(s->members[r].name, m.name) == 0) {
			snprintf(msg, sizeof(msg),
				 "worker name '%s' is already taken by rank %u",
				 m.name, r);
			st = TW_EINVAL;
		}
	}
	char away[TW_NETADDR_HOST_MAX] = "";
	if (st == TW_OK) {
		if (!from_elsewhere(c->fd, away, sizeof(away)))
			away[0] = '\0';
		st = check_reachable(s, &m, away, msg, sizeof(msg));
	}
	if (st != TW_OK) {
		free(m.addrs);
		COUNT(s, refused);
		reject(s, i, st, msg);
		return;
	}
	m.rank = (uint32_t)rank;
	s->members[rank] = m;
	snprintf(s->away[rank], sizeof(s->away[rank]), "%s", away);
	s->joined++;
	s->npending--;
	c->state = SC_JOINED;
	c->deadline = 0;
	c->rd.max = RDV_FRAME_SMALL;
}

/* Members whose connection has closed (or is closing) before the list
 * goes out are not members: close them, freeing their ranks. True when
 * every joined member is still there. */
static bool joined_alive(struct rdv_server *s)
{
	bool all = true;
	for (size_t i = s->nconns; i-- > 0;) {
		struct sconn *c = &s->conns[i];
		if (c->state != SC_JOINED)
			continue;
		struct pollfd p = {.fd = c->fd, .events = POLLRDHUP};
		if (poll(&p, 1, 0) > 0 &&
		    (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
			COUNT(s, gone);
			sconn_close(s, i);
			all = false;
		}
	}
	return all;
}

/* Everyone is here: send the list. */
static void announce(struct rdv_server *s)
{
	tw_value list;
	if (members_value(s, &list) != TW_OK)
		return;
	s->formed = true;
	s->round = 1;
	TW_LOG(TW_LOG_INFO, "group_formed", "world_size=%u", s->world);
	for (size_t i = s->nconns; i-- > 0;) {
		if (s->conns[i].state == SC_JOINED &&
		    send_frame(s->conns[i].fd, TW_MSG_JOIN, &list,
			       deadline_after(s->timeout_ms)) != TW_OK)
			sconn_close(s, i);
	}
	tw_value_destroy(&list);
}

/* A member's SHUTDOWN round. */
static void handle_round(struct rdv_server *s, size_t i, const tw_value *p)
{
	struct sconn *c = &s->conns[i];
	uint32_t round;
	int64_t left;
	char msg[256];
	tw_status st = rdv_parse_round(p, s->world, &round, &c->cnt, &left,
				       NULL);
	if (st == TW_OK && round != s->round) {
		snprintf(msg, sizeof(msg),
			 "SHUTDOWN for round %u during round %u", round,
			 s->round);
		reject(s, i, TW_EPROTO, msg);
		return;
	}
	if (st != TW_OK) {
		snprintf(msg, sizeof(msg), "%s", tw_errmsg(st));
		reject(s, i, st, msg);
		return;
	}
	c->state = SC_WAIT;
	c->deadline = 0;
	if (left >= 0) {
		/* A little before the worker gives up, so that it hears who
		 * kept it waiting rather than time out on its own. */
		int64_t margin = left / 10 < 200 ? left / 10 : 200;
		c->deadline = deadline_after(left - margin);
	}
}

/* Members gone since the last word: tell every member still connected
 * (JOIN carrying the whole gone bitmap: idempotent, so a later notice
 * repeats an earlier one). A member that cannot take it within 1 s is
 * closed, as for a round's answer: gone too, told next time. */
static void tell_gone(struct rdv_server *s)
{
	while (s->gone_news) {
		s->gone_news = false;
		tw_value v;
		if (tw_value_bytes(&v, s->gone, (s->world + 7) / 8) != TW_OK)
			return; /* told with the next one */
		for (size_t i = s->nconns; i-- > 0;) {
			struct sconn *c = &s->conns[i];
			if (c->state != SC_JOINED && c->state != SC_WAIT)
				continue;
			if (send_frame(c->fd, TW_MSG_JOIN, &v,
				       deadline_after(1000)) != TW_OK)
				sconn_close(s, i);
		}
		tw_value_destroy(&v);
	}
}

/* The round is complete when no live member is still working (gone ones
 * closed): send everyone waiting the sums. */
static void round_check(struct rdv_server *s)
{
	struct rdv_count sum = {0, 0};
	size_t waiting = 0;
	for (size_t i = 0; i < s->nconns; i++) {
		const struct sconn *c = &s->conns[i];
		if (c->state == SC_JOINED)
			return;
		if (c->state == SC_WAIT) {
			waiting++;
			sum.active += c->cnt.active;
			sum.events += c->cnt.events;
		}
	}
	if (waiting == 0)
		return;
	tw_value v;
	if (round_value(&v, s->round, sum, NULL, s->gone, s->world) != TW_OK)
		return;
	for (size_t i = s->nconns; i-- > 0;) {
		struct sconn *c = &s->conns[i];
		if (c->state != SC_WAIT)
			continue;
		c->state = SC_JOINED;
		c->deadline = 0;
		if (send_frame(c->fd, TW_MSG_SHUTDOWN, &v,
			       deadline_after(1000)) != TW_OK)
			sconn_close(s, i);
	}
	tw_value_destroy(&v);
	s->round++;
}

/* Member i waited for the barrier until its deadline (or rank 0 is
 * leaving: stopping): tell it whom it waited for, and let it go. */
static void round_expire(struct rdv_server *s, size_t i, bool stopping)
{
	char msg[TW_ERRMSG_MAX];
	int n = snprintf(msg, sizeof(msg),
			 stopping ? "shutdown barrier ended in round %u: the "
				    "rendezvous host (rank 0) left; no word "
				    "from"
				  : "shutdown barrier timed out in round %u: "
				    "no word from",
			 s->round);
	uint32_t silent = 0;
	for (size_t k = 0; k < s->nconns && n > 0 && (size_t)n < sizeof(msg);
	     k++) {
		const struct sconn *c = &s->conns[k];
		if (c->state != SC_JOINED)
			continue;
		n += snprintf(msg + n, sizeof(msg) - (size_t)n,
			      "%s worker '%s' (id %u)", silent ? "," : "",
			      s->members[c->id].name, c->id);
		silent++;
	}
	if (silent == 0 && n > 0 && (size_t)n < sizeof(msg))
		n += snprintf(msg + n, sizeof(msg) - (size_t)n,
			      " nobody: every worker answered each round");
	/* Rounds end only when nothing is in flight anywhere: name who kept
	 * reporting calls (their counts as of their last round). */
	uint32_t busy = 0;
	for (size_t k = 0; k < s->nconns && n > 0 && (size_t)n < sizeof(msg);
	     k++) {
		const struct sconn *c = &s->conns[k];
		if ((c->state != SC_JOINED && c->state != SC_WAIT) ||
		    c->cnt.active == 0)
			continue;
		n += snprintf(msg + n, sizeof(msg) - (size_t)n,
			      "%s worker '%s' (id %u): %" PRIu64,
			      busy ? "," : "; calls still in flight at",
			      s->members[c->id].name, c->id, c->cnt.active);
		busy++;
	}
	send_error(s->conns[i].fd, TW_ETIMEDOUT, msg, deadline_after(0));
	sconn_close(s, i);
}

static void time_out(struct rdv_server *s)
{
	char msg[512];
	int n = snprintf(msg, sizeof(msg),
			 "rendezvous timed out after %" PRId64
			 " ms: %u of %u workers joined; missing rank",
			 s->timeout_ms, s->joined, s->world);
	for (uint32_t r = 0;
	     r < s->world && n > 0 && (size_t)n < sizeof(msg) - 16; r++)
		if (s->members[r].addrs == NULL)
			n += snprintf(msg + n, sizeof(msg) - (size_t)n, " %u",
				      r);
	for (size_t i = 0; i < s->nconns; i++)
		if (s->conns[i].state == SC_JOINED)
			send_error(s->conns[i].fd, TW_ETIMEDOUT, msg,
				   deadline_after(1000));
}

/* Connections past their deadline: pending ones are closed, a member
 * waiting at the barrier hears who kept it. */
static void expire(struct rdv_server *s, uint64_t now)
{
	char msg[128];
	for (size_t i = s->nconns; i-- > 0;) {
		struct sconn *c = &s->conns[i];
		if (c->deadline == 0 || now < c->deadline)
			continue;
		if (PENDING(c)) {
			snprintf(msg, sizeof(msg),
				 "no JOIN within %" PRId64
				 " ms of connecting to the rendezvous",
				 s->lim.handshake_ms);
			COUNT(s, timed_out);
			reject(s, i, TW_ETIMEDOUT, msg);
		} else if (c->state == SC_WAIT) {
			round_expire(s, i, false);
		}
	}
}

/* The next deadline the loop must wake for (UINT64_MAX: none). */
static uint64_t next_wake(const struct rdv_server *s)
{
	uint64_t t = s->formed ? UINT64_MAX : s->deadline;
	for (size_t i = 0; i < s->nconns; i++)
		if (s->conns[i].deadline != 0 && s->conns[i].deadline < t)
			t = s->conns[i].deadline;
	if (s->accept_resume != 0 && s->accept_resume < t)
		t = s->accept_resume;
	if (s->full_at != 0 && s->full_at < t)
		t = s->full_at;
	return t;
}

/* Accept what is queued. Over the pending cap a connection is closed at
 * once (a member retries); when accept fails for want of descriptors or
 * memory, listening pauses (no spinning on a listening socket that stays
 * readable) and resumes once the backoff passed. */
static void accept_some(struct rdv_server *s)
{
	for (int k = 0; k < 64; k++) {
		int fd = accept4(s->lfd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				COUNT(s, accept_errors);
				s->accept_resume = deadline_after(
					s->lim.accept_backoff_ms);
			}
			return; /* EAGAIN, or a connection gone meanwhile */
		}
		if (s->npending >= s->lim.max_pending) {
			COUNT(s, over_cap);
			close(fd);
			continue;
		}
		if (s->nconns == s->capconns) {
			size_t nc = s->capconns ? s->capconns * 2 : 8;
			struct sconn *n2 = realloc(s->conns, nc * sizeof(*n2));
			if (n2 == NULL) {
				close(fd);
				return;
			}
			s->conns = n2;
			s->capconns = nc;
		}
		tune_socket_ms(fd, s->lim.vanish_ms);
		s->conns[s->nconns++] = (struct sconn){
			.fd = fd,
			.state = SC_HELLO,
			.deadline = deadline_after(s->lim.handshake_ms)};
		s->npending++;
	}
}

/* One frame came on conn i. */
static void serve_frame(struct rdv_server *s, size_t i)
{
	struct sconn *c = &s->conns[i];
	tw_in_msg m;
	if (reader_decode(&c->rd, &m) != TW_OK) {
		reject(s, i, TW_EPROTO, "bad control frame");
		return;
	}
	switch (c->state) {
	case SC_HELLO:
	case SC_PROOF:
		handle_auth(s, i, &m);
		break;
	case SC_AUTHED:
		if (m.hdr.type == TW_MSG_JOIN)
			handle_join(s, i, &m.payload);
		else
			reject(s, i, TW_EPROTO,
			       "unexpected control message: want JOIN");
		break;
	case SC_JOINED:
		if (m.hdr.type == TW_MSG_SHUTDOWN && s->formed)
			handle_round(s, i, &m.payload);
		else
			reject(s, i, TW_EPROTO, "unexpected control message");
		break;
	case SC_WAIT:
		reject(s, i, TW_EPROTO, "unexpected control message");
		break;
	}
	tw_in_msg_release(&m);
}

static void *server_main(void *arg)
{
	struct rdv_server *s = arg;
	struct pollfd *pfd = NULL;
	size_t pcap = 0;
	for (;;) {
		uint64_t now = tw_now_ns();
		expire(s, now);
		if (s->accept_resume != 0 && now >= s->accept_resume)
			s->accept_resume = 0;
		if (!s->formed && s->joined == s->world) {
			/* A JOIN that arrives with its connection's close (a
			 * worker that sent it and gave up) must not form the
			 * group: the close may land just after the JOIN, so
			 * the list waits a moment and checks again. */
			if (s->full_at == 0)
				s->full_at =
					deadline_after(RDV_ANNOUNCE_GRACE_MS);
			if (now >= s->full_at) {
				if (joined_alive(s))
					announce(s);
				s->full_at = 0;
			}
		} else {
			s->full_at = 0;
		}
		if (s->formed) {
			tell_gone(s);
			round_check(s);
		}
		if (pcap < s->nconns + 2) {
			pcap = (s->nconns + 2) * 2;
			struct pollfd *np = realloc(pfd, pcap * sizeof(*pfd));
			if (np == NULL)
				break;
			pfd = np;
		}
		pfd[0] = (struct pollfd){.fd = s->stopfd, .events = POLLIN};
		/* While accepting is paused the listening socket is not
		 * watched: poll would report it readable at once. */
		pfd[1] = (struct pollfd){.fd = s->accept_resume ? -1 : s->lfd,
					 .events = POLLIN};
		for (size_t i = 0; i < s->nconns; i++)
			pfd[i + 2] = (struct pollfd){.fd = s->conns[i].fd,
						     .events = POLLIN};
		size_t np = s->nconns + 2;
		if (!s->formed && now >= s->deadline) {
			time_out(s);
			break;
		}
		int rc = poll(pfd, np, poll_ms(next_wake(s)));
		if (rc < 0 && errno != EINTR)
			break;
		if (rc <= 0)
			continue;
		if (pfd[0].revents)
			break;
		/* Connections first, from the back: closing swaps the last one
		 * into slot i, which this order has already visited. */
		for (size_t k = np; k-- > 2;) {
			size_t i = k - 2;
			if (pfd[k].revents == 0 || i >= s->nconns)
				continue;
			struct sconn *c = &s->conns[i];
			int fr = reader_feed(&c->rd, c->fd);
			if (fr == RD_BIG) {
				char msg[160];
				snprintf(msg, sizeof(msg),
					 "control frame of %" PRIu64
					 " bytes is over the limit of %" PRIu64
					 " bytes here",
					 c->rd.h.total_len, reader_max(&c->rd));
				COUNT(s, oversize);
				reject(s, i, TW_EPROTO, msg);
				continue;
			}
			if (fr < 0) {
				sconn_close(s, i);
				continue;
			}
			if (fr == RD_FRAME)
				serve_frame(s, i);
		}
		if (pfd[1].revents & POLLIN)
			accept_some(s);
	}
	free(pfd);
	return NULL;
}

tw_status rdv_server_start(const char *url, uint32_t world, int64_t timeout_ms,
			   const struct auth_key *key,
			   const struct rdv_limits *lim,
			   struct rdv_server **out)
{
	*out = NULL;
	if (world == 0 || world >= AUTH_ID_RDV)
		return tw_fail(TW_EINVAL, "rendezvous: world size %u", world);
	struct sockaddr_storage ss;
	socklen_t sslen;
	tw_status st = resolve(url, &ss, &sslen);
	if (st != TW_OK)
		return st;
	struct rdv_server *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return tw_fail_static(TW_ENOMEM, "out of memory for the "
						 "rendezvous server");
	s->members = calloc(world, sizeof(*s->members));
	s->gone = calloc((world + 7) / 8, 1);
	s->away = calloc(world, sizeof(*s->away));
	if (s->members == NULL || s->gone == NULL || s->away == NULL) {
		free(s->members);
		free(s->gone);
		free(s->away);
		free(s);
		return tw_fail(TW_ENOMEM,
			       "out of memory for the rendezvous "
			       "of %u workers",
			       world);
	}
	static const struct auth_key none = {NULL, 0};
	s->key = key != NULL ? key : &none;
	s->lim = (struct rdv_limits){.max_pending = RDV_MAX_PENDING,
				     .handshake_ms = RDV_HANDSHAKE_MS,
				     .accept_backoff_ms = RDV_ACCEPT_BACKOFF_MS,
				     .vanish_ms = RDV_VANISH_MS};
	if (lim != NULL) {
		if (lim->max_pending > 0)
			s->lim.max_pending = lim->max_pending;
		if (lim->handshake_ms > 0)
			s->lim.handshake_ms = lim->handshake_ms;
		if (lim->accept_backoff_ms > 0)
			s->lim.accept_backoff_ms = lim->accept_backoff_ms;
		if (lim->vanish_ms >= 1000)
			s->lim.vanish_ms = lim->vanish_ms;
	}
	s->world = world;
	s->timeout_ms = timeout_ms;
	/* A little before the joiners give up, so that they hear why (which
	 * ranks are missing) rather than time out on their own. */
	int64_t margin = timeout_ms / 10 < 200 ? timeout_ms / 10 : 200;
	s->deadline = deadline_after(timeout_ms < 0 ? -1 : timeout_ms - margin);
	s->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->lfd = socket(ss.ss_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (s->lfd >= 0)
		setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s->stopfd < 0 || s->lfd < 0 ||
	    bind(s->lfd, (struct sockaddr *)&ss, sslen) != 0 ||
	    listen(s->lfd, 128) != 0) {
		tw_fail(TW_EIO, "cannot listen for rendezvous on %s: %s", url,
			strerror(errno));
		if (s->lfd >= 0)
			close(s->lfd);
		if (s->stopfd >= 0)
			close(s->stopfd);
		free(s->members);
		free(s->gone);
		free(s);
		return TW_EIO;
	}
	int rc = pthread_create(&s->thread, NULL, server_main, s);
	if (rc != 0) {
		close(s->lfd);
		close(s->stopfd);
		free(s->members);
		free(s->gone);
		free(s);
		return tw_fail(TW_ENOMEM,
			       "cannot start the rendezvous thread: "
			       "%s",
			       strerror(rc));
	}
	pthread_setname_np(s->thread, "tw-rendezvous");
	*out = s;
	return TW_OK;
}

void rdv_server_stop(struct rdv_server *s)
{
	if (s == NULL)
		return;
	uint64_t one = 1;
	ssize_t rc = write(s->stopfd, &one, sizeof(one));
	(void)rc;
	pthread_join(s->thread, NULL);
	/* Members waiting at the barrier hear whom they waited for (rank 0
	 * is leaving because its own deadline passed), not just a close. */
	for (size_t i = s->nconns; s->formed && i-- > 0;)
		if (s->conns[i].state == SC_WAIT)
			round_expire(s, i, true);
	while (s->nconns > 0) {
		/* Closing after the group formed frees nothing in members. */
		s->formed = true;
		sconn_close(s, s->nconns - 1);
	}
	free(s->conns);
	free(s->gone);
	free(s->away);
	rdv_members_free(s->members, s->world);
	close(s->lfd);
	close(s->stopfd);
	free(s);
}

void rdv_server_stats(struct rdv_server *s, struct rdv_server_stats *out)
{
	*out = (struct rdv_server_stats){
		.auth_failed = atomic_load(&s->st_auth_failed),
		.refused = atomic_load(&s->st_refused),
		.oversize = atomic_load(&s->st_oversize),
		.timed_out = atomic_load(&s->st_timed_out),
		.over_cap = atomic_load(&s->st_over_cap),
		.accept_errors = atomic_load(&s->st_accept_errors),
		.gone = atomic_load(&s->st_gone),
	};
}

/* ---- every rank's client --------------------------------------------- */

struct rdv_client {
	int fd;
	uint32_t world;
	/* The connection after the member list: one reader at a time (the
	 * barrier's rounds, rdv_watch), and what they learn (gone, closed). */
	pthread_mutex_t mu;
	uint8_t *gone;  /* rank 0's last word on who has left: a bitmap */
	bool closed;    /* EOF, an error or a bad frame seen: nothing more */
	uint32_t round; /* the barrier's last round sent */
	struct reader rd;
};

void rdv_client_set_vanish(struct rdv_client *c, uint32_t ms)
{
	if (c != NULL && c->fd >= 0 && ms >= 1000)
		tune_socket_ms(c->fd, ms);
}

/* A notice of members gone (JOIN(gone) after the member list): ORed into
 * c->gone (rank 0's bitmap only grows; a notice racing a round's answer
 * cannot take a bit back). Under c->mu. */
static tw_status apply_gone(struct rdv_client *c, const tw_in_msg *m)
{
	const tw_value *p = &m->payload;
	if (p->kind != TW_KIND_BYTES || p->len != (c->world + 7) / 8)
		return rdv_parse_gone(p, c->world, NULL); /* says why */
	for (uint32_t i = 0; i < p->len; i++)
		c->gone[i] |= (uint8_t)p->u.str[i];
	return TW_OK;
}

/* One connection attempt, bounded by deadline. */
static int try_connect(const struct sockaddr_storage *ss, socklen_t sslen,
		       uint64_t deadline, int *err_out)
{
	int fd = socket(ss->ss_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err_out = errno;
		return -1;
	}
	if (connect(fd, (const struct sockaddr *)ss, sslen) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		*err_out = errno;
		close(fd);
		return -1;
	}
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int t = poll_ms(deadline);
	if (t < 0 || t > 1000)
		t = 1000;
	if (poll(&p, 1, t) <= 0) {
		*err_out = ETIMEDOUT;
		close(fd);
		return -1;
	}
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
	if (soerr != 0) {
		*err_out = soerr;
		close(fd);
		return -1;
	}
	return fd;
}

/* Sleep RDV_RETRY_MS, or until the deadline if sooner. */
static void retry_nap(uint64_t deadline)
{
	uint64_t n = tw_now_ns();
	uint64_t nap = (uint64_t)RDV_RETRY_MS * 1000000u;
	if (deadline > n && deadline - n < nap)
		nap = deadline - n;
	struct timespec ts = {.tv_sec = (time_t)(nap / 1000000000u),
			      .tv_nsec = (long)(nap % 1000000000u)};
	nanosleep(&ts, NULL);
}

/*
 * One attempt on a connected c: authenticate, JOIN, read the answer into
 * *m (the member list, or rank 0's EXCEPTION at any step). TW_OK with *m
 * set; TW_EUNREACHABLE (the connection broke: try again), TW_ETIMEDOUT,
 * TW_EAUTH or TW_EPROTO with a reason.
 */
static tw_status join_once(struct rdv_client *c, const struct auth_key *key,
			   const struct rdv_member *self, const tw_value *jv,
			   uint32_t world, uint64_t deadline, tw_in_msg *m)
{
	struct auth_hs hs;
	struct auth_msg hello, ch, proof;
	auth_client_start(&hs, key, AUTH_CTX_RDV, self->rank, AUTH_ID_RDV,
			  &hello);
	c->rd.max = RDV_FRAME_SMALL; /* until the server proved itself */
	tw_status st = send_auth(c->fd, &hello, deadline);
	if (st == TW_OK)
		st = recv_frame(c->fd, &c->rd, deadline, m, NULL, NULL);
	if (st != TW_OK)
		return st;
	if (m->hdr.type == TW_MSG_EXCEPTION)
		return TW_OK; /* refused at once: the caller says why */
	st = auth_of(m, &ch);
	tw_in_msg_release(m);
	if (st == TW_OK)
		st = auth_client_challenge(&hs, &ch, &proof);
	if (st != TW_OK)
		return st; /* nothing else was sent: it said why */
	st = send_auth(c->fd, &proof, deadline);
	if (st == TW_OK)
		st = send_frame(c->fd, TW_MSG_JOIN, jv, deadline);
	if (st != TW_OK)
		return st;
	c->rd.max = RDV_LIST_MAX(world);
	st = recv_frame(c->fd, &c->rd, deadline, m, NULL, NULL);
	c->rd.max = RDV_FRAME_SMALL;
	return st;
}

/* A data address on a wildcard (tcp://0.0.0.0:PORT or tcp://[::]:PORT: a
 * transport listening on every interface) is no address another worker
 * can use: fd's local address is, the one this host reaches the
 * rendezvous from (so rank 0 and every member on its side of the route
 * can reach it too). Rewrites self's addresses into own[] (self->addrs
 * then points there) when any is a wildcard; false when none is, or when
 * the rendezvous is reached over IPv6 but the wildcard is IPv4's (left
 * as it is: rank 0 refuses it across hosts, saying why). */
static bool advertise_routable(int fd, struct rdv_member *self,
			       char (*own)[TW_ADDR_MAX])
{
	struct sockaddr_storage me;
	socklen_t len = sizeof(me);
	char host[TW_NETADDR_HOST_MAX];
	if (getsockname(fd, (struct sockaddr *)&me, &len) != 0)
		return false;
	if (me.ss_family == AF_INET6) {
		/* An IPv4 peer on a dual-stack socket: announce IPv4. */
		const struct sockaddr_in6 *m6 = (const void *)&me;
		if (IN6_IS_ADDR_V4MAPPED(&m6->sin6_addr)) {
			struct sockaddr_in v4 = {.sin_family = AF_INET};
			memcpy(&v4.sin_addr, &m6->sin6_addr.s6_addr[12], 4);
			memcpy(&me, &v4, sizeof(v4));
		}
	}
	if (!tw_netaddr_host((struct sockaddr *)&me, host, sizeof(host)))
		return false;
	bool any = false;
	for (uint32_t i = 0; i < self->nloops; i++) {
		struct sockaddr_storage ss;
		socklen_t sl;
		const char *a = self->addrs[i];
		const char *port = strrchr(a, ':');
		bool wild = tw_netaddr_parse(a, &ss, &sl) == TW_OK &&
			    tw_netaddr_is_wildcard((struct sockaddr *)&ss) &&
			    /* [::] serves IPv4 too; 0.0.0.0 no IPv6 */
			    (ss.ss_family == AF_INET6 ||
			     me.ss_family == AF_INET);
		if (wild) {
			int n = snprintf(own[i], TW_ADDR_MAX, "tcp://%s%s",
					 host, port);
			wild = n > 0 && n < TW_ADDR_MAX;
		}
		if (!wild)
			snprintf(own[i], TW_ADDR_MAX, "%s", a);
		any |= wild;
	}
	/* The same-host addresses follow as they are. */
	for (uint32_t i = 0; self->local_addrs && i < self->nloops; i++)
		snprintf(own[self->nloops + i], TW_ADDR_MAX, "%s",
			 self->addrs[self->nloops + i]);
	if (any)
		self->addrs = own;
	return any;
}

tw_status rdv_join(const char *url, const struct auth_key *key,
		   const struct rdv_member *self, uint32_t world,
		   int64_t timeout_ms, struct rdv_client **out,
		   struct rdv_member **members)
{
	*out = NULL;
	*members = NULL;
	static const struct auth_key none = {NULL, 0};
	if (key == NULL)
		key = &none;
	uint64_t deadline = deadline_after(timeout_ms);
	struct sockaddr_storage ss;
	socklen_t sslen;
	tw_status st = resolve(url, &ss, &sslen);
	if (st != TW_OK)
		return st;
	tw_value jv;
	st = join_value(&jv, self, world);
	if (st != TW_OK)
		return tw_fail_wrap(st, st,
				    "rendezvous at %s: cannot build the "
				    "join request",
				    url);

	/* Until the member list arrives, a lost connection is retried like a
	 * refused one: rank 0 may start late, fail and restart, or close us
	 * while it has too many connections not yet joined. */
	struct rdv_client *c = NULL;
	tw_in_msg m;
	int cerr = ECONNREFUSED;
	for (;;) {
		if (tw_now_ns() >= deadline) {
			tw_value_destroy(&jv);
			return tw_fail(TW_ETIMEDOUT,
				       "rendezvous at %s unreachable "
				       "within %" PRId64 " ms: %s",
				       url, timeout_ms, strerror(cerr));
		}
		int fd = try_connect(&ss, sslen, deadline, &cerr);
		if (fd < 0) {
			retry_nap(deadline);
			continue;
		}
		tune_socket(fd);
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			tw_value_destroy(&jv);
			return tw_fail_static(TW_ENOMEM,
					      "out of memory joining "
					      "the rendezvous");
		}
		c->fd = fd;
		c->world = world;
		pthread_mutex_init(&c->mu, NULL);
		struct rdv_member routable = *self;
		char(*own)[TW_ADDR_MAX] = calloc(
			self->nloops ? 2 * self->nloops : 1, TW_ADDR_MAX);
		if (own != NULL && advertise_routable(fd, &routable, own)) {
			tw_value nv;
			if (join_value(&nv, &routable, world) == TW_OK) {
				tw_value_destroy(&jv);
				jv = nv;
			}
		}
		free(own);
		c->gone = calloc((world + 7) / 8, 1);
		if (c->gone == NULL) {
			rdv_client_close(c);
			tw_value_destroy(&jv);
			return tw_fail_static(TW_ENOMEM,
					      "out of memory joining "
					      "the rendezvous");
		}
		st = join_once(c, key, self, &jv, world, deadline, &m);
		if (st == TW_OK)
			break;
		rdv_client_close(c);
		c = NULL;
		if (st == TW_ETIMEDOUT) {
			tw_value_destroy(&jv);
			return tw_fail(st,
				       "rendezvous at %s: not every worker "
				       "joined within %" PRId64 " ms",
				       url, timeout_ms);
		}
		if (st == TW_EAUTH || st == TW_EPROTO) {
			char why[TW_ERRMSG_MAX];
			snprintf(why, sizeof(why), "%s", tw_errmsg(st));
			tw_value_destroy(&jv);
			return tw_fail(st, "rendezvous at %s: %s", url, why);
		}
		if (st != TW_EUNREACHABLE) {
			tw_value_destroy(&jv);
			return tw_fail(TW_EIO, "rendezvous at %s: %s", url,
				       tw_strerror(st));
		}
		cerr = ECONNRESET;
		retry_nap(deadline);
	}
	tw_value_destroy(&jv);

	if (m.hdr.type == TW_MSG_EXCEPTION && m.payload.kind == TW_KIND_ERROR) {
		/* Rank 0's refusal says why (a taken name or rank, a world
		 * size that disagrees, missing workers, a secret it does not
		 * share): that is ours. */
		const tw_error *e = m.payload.u.err;
		tw_status k = e->kind == TW_ETIMEDOUT || e->kind == TW_EAUTH
				      ? e->kind
				      : TW_EINVAL;
		st = tw_fail(k, "%.*s", (int)e->msg_len, e->msg);
	} else if (m.hdr.type == TW_MSG_JOIN) {
		st = rdv_parse_members(&m.payload, world, members);
		if (st != TW_OK) {
			char why[TW_ERRMSG_MAX];
			snprintf(why, sizeof(why), "%s", tw_errmsg(st));
			tw_fail(st, "rendezvous at %s: %s", url, why);
		}
	} else {
		st = tw_fail(TW_EPROTO, "rendezvous at %s: unexpected %s", url,
			     tw_msg_type_name(m.hdr.type));
	}
	tw_in_msg_release(&m);
	if (st != TW_OK) {
		rdv_client_close(c);
		return st;
	}
	*out = c;
	return TW_OK;
}

static tw_status barrier_round_locked(struct rdv_client *c,
				      struct rdv_count mine, int64_t left,
				      uint64_t deadline_ns,
				      void (*idle)(void *arg), void *arg,
				      struct rdv_count *total);

tw_status rdv_barrier_round(struct rdv_client *c, struct rdv_count mine,
			    uint64_t deadline_ns, void (*idle)(void *arg),
			    void *arg, struct rdv_count *total)
{
	int64_t left = -1;
	if (deadline_ns != UINT64_MAX) {
		uint64_t n = tw_now_ns();
		left = deadline_ns > n ? (int64_t)((deadline_ns - n) / 1000000u)
				       : 0;
	}
	pthread_mutex_lock(&c->mu);
	tw_status st = barrier_round_locked(c, mine, left, deadline_ns, idle,
					    arg, total);
	pthread_mutex_unlock(&c->mu);
	return st;
}

/* Wait for the next frame that is not a notice of members gone (those
 * are applied on the way). */
static tw_status recv_answer(struct rdv_client *c, uint64_t deadline_ns,
			     tw_in_msg *m, void (*idle)(void *arg), void *arg)
{
	for (;;) {
		c->rd.max = RDV_FRAME_SMALL + (c->world + 7) / 8;
		tw_status st = recv_frame(c->fd, &c->rd, deadline_ns, m, idle,
					  arg);
		if (st != TW_OK || m->hdr.type != TW_MSG_JOIN)
			return st;
		st = apply_gone(c, m);
		tw_in_msg_release(m);
		if (st != TW_OK)
			return st;
	}
}

static tw_status barrier_round_locked(struct rdv_client *c,
				      struct rdv_count mine, int64_t left,
				      uint64_t deadline_ns,
				      void (*idle)(void *arg), void *arg,
				      struct rdv_count *total)
{
	uint32_t round = ++c->round;
	tw_value v;
	/* Rank 0 is told less than we have, so that its answer (naming
	 * whoever kept the round going) arrives before our own deadline,
	 * which bounds the whole shutdown, even on a loaded host. */
	int64_t told = left;
	if (told > 0)
		told = told > (int64_t)(RDV_ANSWER_GRACE_NS / 1000000u)
			       ? told - (int64_t)(RDV_ANSWER_GRACE_NS /
						  1000000u)
			       : 0;
	tw_status st = round_value(&v, round, mine, &told, NULL, c->world);
	if (st != TW_OK)
		return tw_fail_static(st, "shutdown barrier: out of memory");
	st = send_frame(c->fd, TW_MSG_SHUTDOWN, &v, deadline_ns);
	tw_value_destroy(&v);
	if (st == TW_OK) {
		tw_in_msg m;
		st = recv_answer(c, deadline_ns, &m, idle, arg);
		if (st != TW_OK && st != TW_ETIMEDOUT &&
		    st != TW_EUNREACHABLE) {
			char why[TW_ERRMSG_MAX];
			snprintf(why, sizeof(why), "%s", tw_errmsg(st));
			return tw_fail(st, "shutdown barrier: %s", why);
		}
		if (st == TW_OK) {
			if (m.hdr.type == TW_MSG_EXCEPTION &&
			    m.payload.kind == TW_KIND_ERROR) {
				const tw_error *e = m.payload.u.err;
				st = tw_fail(e->kind == TW_ETIMEDOUT
						     ? TW_ETIMEDOUT
						     : TW_EPROTO,
					     "%.*s", (int)e->msg_len, e->msg);
			} else if (m.hdr.type != TW_MSG_SHUTDOWN) {
				st = tw_fail(TW_EPROTO,
					     "shutdown barrier: unexpected %s",
					     tw_msg_type_name(m.hdr.type));
			} else {
				uint32_t r;
				st = rdv_parse_round(&m.payload, c->world, &r,
						     total, NULL, c->gone);
				if (st == TW_OK && r != round)
					st = tw_fail(TW_EPROTO,
						     "shutdown barrier: answer "
						     "for round %u in round %u",
						     r, round);
			}
			tw_in_msg_release(&m);
			return st;
		}
	}
	if (st == TW_ETIMEDOUT)
		return tw_fail(st,
			       "shutdown barrier timed out in round %u: no "
			       "answer from the rendezvous host (rank 0)",
			       round);
	return tw_fail(TW_EUNREACHABLE,
		       "shutdown barrier: the rendezvous host (rank 0) went "
		       "away before every worker had shut down");
}

tw_status rdv_barrier(struct rdv_client *c, int64_t timeout_ms)
{
	struct rdv_count mine = {0, 0}, total;
	return rdv_barrier_round(c, mine, deadline_after(timeout_ms), NULL,
				 NULL, &total);
}

void rdv_client_close(struct rdv_client *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	reader_reset(&c->rd);
	pthread_mutex_destroy(&c->mu);
	free(c->gone);
	free(c);
}

int rdv_client_fd(const struct rdv_client *c)
{
	return c->fd;
}

bool rdv_member_gone(const struct rdv_client *c, uint32_t rank)
{
	struct rdv_client *w = (struct rdv_client *)c; /* its lock only */
	pthread_mutex_lock(&w->mu);
	bool gone = rank < c->world && (c->gone[rank / 8] >> (rank % 8)) & 1;
	pthread_mutex_unlock(&w->mu);
	return gone;
}

tw_status rdv_watch(struct rdv_client *c, uint8_t *gone)
{
	if (pthread_mutex_trylock(&c->mu) != 0)
		return TW_EBUSY;
	tw_status st = TW_OK;
	c->rd.max = RDV_FRAME_SMALL + (c->world + 7) / 8;
	while (!c->closed) {
		int rc = reader_feed(&c->rd, c->fd);
		if (rc == RD_MORE)
			break;
		if (rc != RD_FRAME) {
			/* EOF or error: rank 0 left, or its host vanished
			 * (RDV_VANISH_MS); a bad or oversized frame ends the
			 * stream as well (it cannot be resynchronised). */
			if (rc == RD_BIG)
				st = too_big(&c->rd);
			reader_reset(&c->rd);
			c->closed = true;
			break;
		}
		tw_in_msg m;
		st = reader_decode(&c->rd, &m);
		if (st == TW_OK) {
			st = m.hdr.type == TW_MSG_JOIN
				     ? apply_gone(c, &m)
				     : tw_fail(TW_EPROTO,
					       "unexpected %s from the "
					       "rendezvous host outside the "
					       "shutdown barrier",
					       tw_msg_type_name(m.hdr.type));
			tw_in_msg_release(&m);
		}
		if (st != TW_OK) {
			c->closed = true;
			break;
		}
	}
	if (st == TW_OK && c->closed)
		st = TW_EUNREACHABLE;
	memcpy(gone, c->gone, (c->world + 7) / 8);
	pthread_mutex_unlock(&c->mu);
	return st;
}
