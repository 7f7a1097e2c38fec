/* Rendezvous and shutdown barrier: rank 0's control server thread and every
 * rank's control connection to it. Control plane only: plain sockets,
 * poll() deadlines, tensorwire frames (JOIN, SHUTDOWN, EXCEPTION). */
#include "rpc/rendezvous.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <tensorwire/message.h>

#include "dataplane/clock.h"
#include "dataplane/err.h"

/* Control frames are small; anything bigger is a confused peer. */
#define RDV_MAX_FRAME (UINT64_C(4) << 20)
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

/* Reads one frame in pieces as bytes arrive. */
struct reader {
	unsigned char hdr[TW_FRAME_HDR_SIZE];
	size_t got;
	uint64_t total;
	tw_buf *buf;
	tw_frame_hdr h; /* hdr decoded: valid while buf is set */
};

static void reader_reset(struct reader *r)
{
	tw_buf_release(r->buf);
	r->buf = NULL;
	r->got = 0;
	r->total = 0;
}

/* Read what is there. 1: a whole frame in r->buf; 0: need more; -1: EOF,
 * error or a bad header (the connection is done). */
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
			return -1;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		r->got += (size_t)n;
		if (r->buf == NULL && r->got == TW_FRAME_HDR_SIZE) {
			tw_frame_limits lim = {.max_total = RDV_MAX_FRAME,
					       .max_segs = 16,
					       .max_payload = RDV_MAX_FRAME};
			if (tw_frame_hdr_decode(r->hdr, &lim, &r->h) != TW_OK)
				return -1;
			if (tw_buf_alloc(r->h.total_len, &r->buf) != TW_OK)
				return -1;
			memcpy(r->buf->data, r->hdr, TW_FRAME_HDR_SIZE);
			r->total = r->h.total_len;
		}
		if (r->buf != NULL && r->got == r->total)
			return 1;
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

/* Wait for a whole frame until deadline. TW_ETIMEDOUT, TW_EUNREACHABLE on
 * EOF or error, TW_EPROTO on a bad frame. stopfd (-1 = none) aborts with
 * TW_ESHUTDOWN. */
static tw_status recv_frame(int fd, struct reader *r, uint64_t deadline,
			    tw_in_msg *m)
{
	for (;;) {
		int rc = reader_feed(r, fd);
		if (rc == 1)
			return reader_decode(r, m);
		if (rc < 0) {
			reader_reset(r);
			return TW_EUNREACHABLE;
		}
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int t = poll_ms(deadline);
		if (t == 0)
			return TW_ETIMEDOUT;
		if (poll(&p, 1, t) < 0 && errno != EINTR)
			return TW_EIO;
	}
}

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

static void tune_socket(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- payloads -------------------------------------------------------- */

static tw_status addrs_value(tw_value *out, const struct rdv_member *m)
{
	tw_status st = tw_value_list(out, m->nloops);
	for (uint32_t i = 0; st == TW_OK && i < m->nloops; i++) {
		tw_value s;
		st = tw_value_cstring(&s, m->addrs[i]);
		if (st == TW_OK)
			st = tw_value_set_item(out, i, s);
	}
	if (st != TW_OK)
		tw_value_destroy(out);
	return st;
}

/* JOIN: tuple(str name, int rank, int world_size, list[str] addrs). */
static tw_status join_value(tw_value *out, const struct rdv_member *self,
			    uint32_t world)
{
	tw_value name, addrs;
	tw_status st = tw_value_tuple(out, 4);
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
		st = addrs_value(&addrs, self);
	if (st == TW_OK)
		st = tw_value_set_item(out, 3, addrs);
	if (st != TW_OK)
		tw_value_destroy(out);
	return st;
}

/* Read list[str] into m->addrs. */
static tw_status parse_addrs(const tw_value *v, struct rdv_member *m)
{
	if (v->kind != TW_KIND_LIST || v->len == 0 || v->len > RDV_MAX_LOOPS)
		return TW_EPROTO;
	m->addrs = calloc(v->len, sizeof(*m->addrs));
	if (m->addrs == NULL)
		return TW_ENOMEM;
	m->nloops = v->len;
	for (uint32_t i = 0; i < v->len; i++) {
		const tw_value *s = &v->u.items[i];
		if (s->kind != TW_KIND_STRING || s->len == 0 ||
		    s->len >= TW_ADDR_MAX)
			return TW_EPROTO;
		memcpy(m->addrs[i], s->u.str, s->len);
		m->addrs[i][s->len] = '\0';
	}
	return TW_OK;
}

static tw_status parse_name(const tw_value *v, char *name)
{
	if (v->kind != TW_KIND_STRING || v->len == 0 ||
	    v->len >= TW_WORKER_NAME_MAX)
		return TW_EPROTO;
	memcpy(name, v->u.str, v->len);
	name[v->len] = '\0';
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
	SC_NEW,    /* connected, no JOIN yet */
	SC_JOINED, /* holds a rank */
	SC_DONE,   /* sent SHUTDOWN, waits for the barrier */
};

struct sconn {
	int fd;
	enum sconn_state state;
	uint32_t rank;
	struct reader rd;
};

struct rdv_server {
	int lfd;
	int stopfd; /* eventfd: stop the thread */
	pthread_t thread;
	uint32_t world;
	int64_t timeout_ms;
	uint64_t deadline; /* for the group to form */
	bool formed;
	uint32_t joined;
	struct rdv_member *members; /* world entries; addrs NULL = free slot */
	struct sconn *conns;
	size_t nconns, capconns;
};

static void sconn_close(struct rdv_server *s, size_t i)
{
	struct sconn *c = &s->conns[i];
	close(c->fd);
	reader_reset(&c->rd);
	if (c->state != SC_NEW && !s->formed) {
		/* Left before the group formed: the rank is free again (a
		 * restarted worker may take it). */
		free(s->members[c->rank].addrs);
		s->members[c->rank].addrs = NULL;
		s->joined--;
	}
	s->conns[i] = s->conns[--s->nconns];
}

/* The member list: list of tuple(int rank, str name, list[str] addrs). */
static tw_status members_value(const struct rdv_server *s, tw_value *out)
{
	tw_status st = tw_value_list(out, s->world);
	for (uint32_t r = 0; st == TW_OK && r < s->world; r++) {
		tw_value t, name, addrs;
		st = tw_value_tuple(&t, 3);
		if (st != TW_OK)
			break;
		st = tw_value_set_item(&t, 0, tw_value_int(r));
		if (st == TW_OK)
			st = tw_value_cstring(&name, s->members[r].name);
		if (st == TW_OK)
			st = tw_value_set_item(&t, 1, name);
		if (st == TW_OK)
			st = addrs_value(&addrs, &s->members[r]);
		if (st == TW_OK)
			st = tw_value_set_item(&t, 2, addrs);
		if (st == TW_OK)
			st = tw_value_set_item(out, r, t);
		else
			tw_value_destroy(&t);
	}
	if (st != TW_OK)
		tw_value_destroy(out);
	return st;
}

/* Refuse conn i with a message and close it. */
static void reject(struct rdv_server *s, size_t i, tw_status kind,
		   const char *msg)
{
	send_error(s->conns[i].fd, kind, msg, deadline_after(1000));
	sconn_close(s, i);
}

/* Returns true when conn i was closed. */
static bool handle_join(struct rdv_server *s, size_t i, const tw_value *p)
{
	char msg[512];
	struct rdv_member m = {0};
	if (p->kind != TW_KIND_TUPLE || p->len != 4 ||
	    parse_name(&p->u.items[0], m.name) != TW_OK ||
	    p->u.items[1].kind != TW_KIND_INT ||
	    p->u.items[2].kind != TW_KIND_INT) {
		reject(s, i, TW_EPROTO, "malformed JOIN");
		return true;
	}
	int64_t rank = p->u.items[1].u.i, world = p->u.items[2].u.i;
	if (world != (int64_t)s->world) {
		snprintf(msg, sizeof(msg),
			 "world size %" PRId64
			 " does not match rank 0's world size %u",
			 world, s->world);
		reject(s, i, TW_EINVAL, msg);
		return true;
	}
	if (rank < 0 || rank >= (int64_t)s->world) {
		snprintf(msg, sizeof(msg),
			 "rank %" PRId64 " is out of range for world size %u",
			 rank, s->world);
		reject(s, i, TW_EINVAL, msg);
		return true;
	}
	if (s->formed) {
		snprintf(msg, sizeof(msg),
			 "the group is already complete (world size %u)",
			 s->world);
		reject(s, i, TW_EINVAL, msg);
		return true;
	}
	if (s->members[rank].addrs != NULL) {
		snprintf(msg, sizeof(msg),
			 "rank %" PRId64 " is already taken by worker '%s'",
			 rank, s->members[rank].name);
		reject(s, i, TW_EINVAL, msg);
		return true;
	}
	for (uint32_t r = 0; r < s->world; r++) {
		if (s->members[r].addrs != NULL &&
		    strcmp(s->members[r].name, m.name) == 0) {
			snprintf(msg, sizeof(msg),
				 "worker name '%s' is already taken by rank %u",
				 m.name, r);
			reject(s, i, TW_EINVAL, msg);
			return true;
		}
	}
	tw_status st = parse_addrs(&p->u.items[3], &m);
	if (st != TW_OK) {
		free(m.addrs);
		reject(s, i, TW_EPROTO, "malformed JOIN addresses");
		return true;
	}
	m.rank = (uint32_t)rank;
	s->members[rank] = m;
	s->joined++;
	s->conns[i].state = SC_JOINED;
	s->conns[i].rank = (uint32_t)rank;
	return false;
}

/* Everyone is here: send the list. */
static void announce(struct rdv_server *s)
{
	tw_value list;
	if (members_value(s, &list) != TW_OK)
		return;
	s->formed = true;
	for (size_t i = 0; i < s->nconns;) {
		if (s->conns[i].state == SC_JOINED &&
		    send_frame(s->conns[i].fd, TW_MSG_JOIN, &list,
			       deadline_after(s->timeout_ms)) != TW_OK) {
			sconn_close(s, i);
			continue;
		}
		i++;
	}
	tw_value_destroy(&list);
}

/* Barrier complete when no member is still working (gone ones closed). */
static bool barrier_done(const struct rdv_server *s)
{
	for (size_t i = 0; i < s->nconns; i++)
		if (s->conns[i].state == SC_JOINED)
			return false;
	return true;
}

static void release_barrier(struct rdv_server *s)
{
	tw_value none = tw_value_none();
	for (size_t i = 0; i < s->nconns; i++)
		if (s->conns[i].state == SC_DONE)
			send_frame(s->conns[i].fd, TW_MSG_SHUTDOWN, &none,
				   deadline_after(1000));
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

static void *server_main(void *arg)
{
	struct rdv_server *s = arg;
	struct pollfd *pfd = NULL;
	size_t pcap = 0;
	for (;;) {
		if (!s->formed && s->joined == s->world)
			announce(s);
		if (s->formed && barrier_done(s)) {
			release_barrier(s);
			break;
		}
		if (pcap < s->nconns + 2) {
			pcap = (s->nconns + 2) * 2;
			struct pollfd *np = realloc(pfd, pcap * sizeof(*pfd));
			if (np == NULL)
				break;
			pfd = np;
		}
		pfd[0] = (struct pollfd){.fd = s->stopfd, .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
		for (size_t i = 0; i < s->nconns; i++)
			pfd[i + 2] = (struct pollfd){.fd = s->conns[i].fd,
						     .events = POLLIN};
		size_t np = s->nconns + 2;
		int t = s->formed ? -1 : poll_ms(s->deadline);
		if (!s->formed && t == 0) {
			time_out(s);
			break;
		}
		int rc = poll(pfd, np, t);
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
			if (fr < 0) {
				sconn_close(s, i);
				continue;
			}
			if (fr == 0)
				continue;
			tw_in_msg m;
			if (reader_decode(&c->rd, &m) != TW_OK) {
				reject(s, i, TW_EPROTO, "bad control frame");
				continue;
			}
			if (m.hdr.type == TW_MSG_JOIN && c->state == SC_NEW) {
				handle_join(s, i, &m.payload);
			} else if (m.hdr.type == TW_MSG_SHUTDOWN &&
				   c->state == SC_JOINED && s->formed) {
				c->state = SC_DONE;
			} else {
				reject(s, i, TW_EPROTO,
				       "unexpected control message");
			}
			tw_in_msg_release(&m);
		}
		if (pfd[1].revents & POLLIN) {
			int fd = accept4(s->lfd, NULL, NULL,
					 SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd >= 0) {
				if (s->nconns == s->capconns) {
					size_t nc = s->capconns
							    ? s->capconns * 2
							    : 8;
					struct sconn *n2 = realloc(
						s->conns, nc * sizeof(*n2));
					if (n2 == NULL) {
						close(fd);
						continue;
					}
					s->conns = n2;
					s->capconns = nc;
				}
				tune_socket(fd);
				s->conns[s->nconns++] = (struct sconn){
					.fd = fd, .state = SC_NEW};
			}
		}
	}
	free(pfd);
	return NULL;
}

tw_status rdv_server_start(const char *url, uint32_t world, int64_t timeout_ms,
			   struct rdv_server **out)
{
	*out = NULL;
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
	if (s->members == NULL) {
		free(s);
		return tw_fail(TW_ENOMEM,
			       "out of memory for the rendezvous "
			       "of %u workers",
			       world);
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
		free(s);
		return TW_EIO;
	}
	int rc = pthread_create(&s->thread, NULL, server_main, s);
	if (rc != 0) {
		close(s->lfd);
		close(s->stopfd);
		free(s->members);
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
	while (s->nconns > 0) {
		/* Closing after the group formed frees nothing in members. */
		s->formed = true;
		sconn_close(s, s->nconns - 1);
	}
	free(s->conns);
	rdv_members_free(s->members, s->world);
	close(s->lfd);
	close(s->stopfd);
	free(s);
}

/* ---- every rank's client --------------------------------------------- */

struct rdv_client {
	int fd;
	struct reader rd;
};

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

static tw_status parse_members(const tw_value *p, uint32_t world,
			       struct rdv_member **out)
{
	if (p->kind != TW_KIND_LIST || p->len != world)
		return TW_EPROTO;
	struct rdv_member *ms = calloc(world, sizeof(*ms));
	if (ms == NULL)
		return TW_ENOMEM;
	tw_status st = TW_OK;
	for (uint32_t r = 0; st == TW_OK && r < world; r++) {
		const tw_value *t = &p->u.items[r];
		if (t->kind != TW_KIND_TUPLE || t->len != 3 ||
		    t->u.items[0].kind != TW_KIND_INT ||
		    t->u.items[0].u.i != (int64_t)r) {
			st = TW_EPROTO;
			break;
		}
		ms[r].rank = r;
		st = parse_name(&t->u.items[1], ms[r].name);
		if (st == TW_OK)
			st = parse_addrs(&t->u.items[2], &ms[r]);
	}
	if (st != TW_OK) {
		rdv_members_free(ms, world);
		return st;
	}
	*out = ms;
	return TW_OK;
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

tw_status rdv_join(const char *url, const struct rdv_member *self,
		   uint32_t world, int64_t timeout_ms, struct rdv_client **out,
		   struct rdv_member **members)
{
	*out = NULL;
	*members = NULL;
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
	 * refused one: rank 0 may start late, fail and restart. */
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
		st = send_frame(fd, TW_MSG_JOIN, &jv, deadline);
		if (st == TW_OK)
			st = recv_frame(fd, &c->rd, deadline, &m);
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
		if (st != TW_EUNREACHABLE) {
			tw_value_destroy(&jv);
			return tw_fail(st == TW_EPROTO ? st : TW_EIO,
				       "rendezvous at %s: %s", url,
				       tw_strerror(st));
		}
		cerr = ECONNRESET;
		retry_nap(deadline);
	}
	tw_value_destroy(&jv);

	if (m.hdr.type == TW_MSG_EXCEPTION && m.payload.kind == TW_KIND_ERROR) {
		/* Rank 0's refusal says why (a taken name or rank, a world
		 * size that disagrees, missing workers): that is ours. */
		const tw_error *e = m.payload.u.err;
		st = tw_fail(e->kind == TW_ETIMEDOUT ? TW_ETIMEDOUT : TW_EINVAL,
			     "%.*s", (int)e->msg_len, e->msg);
	} else if (m.hdr.type == TW_MSG_JOIN) {
		st = parse_members(&m.payload, world, members);
		if (st != TW_OK)
			tw_fail(st,
				"rendezvous at %s sent a malformed member "
				"list",
				url);
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

/* recv_frame for a caller that must keep working while it waits: no
 * blocking poll, idle(arg) between looks (it bounds its own time). */
static tw_status recv_frame_idle(int fd, struct reader *r, uint64_t deadline,
				 tw_in_msg *m, void (*idle)(void *arg),
				 void *arg)
{
	for (;;) {
		int rc = reader_feed(r, fd);
		if (rc == 1)
			return reader_decode(r, m);
		if (rc < 0) {
			reader_reset(r);
			return TW_EUNREACHABLE;
		}
		if (deadline != UINT64_MAX && tw_now_ns() >= deadline)
			return TW_ETIMEDOUT;
		idle(arg);
	}
}

tw_status rdv_barrier(struct rdv_client *c, int64_t timeout_ms)
{
	return rdv_barrier_idle(c, timeout_ms, NULL, NULL);
}

tw_status rdv_barrier_idle(struct rdv_client *c, int64_t timeout_ms,
			   void (*idle)(void *arg), void *arg)
{
	uint64_t deadline = deadline_after(timeout_ms);
	tw_value none = tw_value_none();
	tw_status st = send_frame(c->fd, TW_MSG_SHUTDOWN, &none, deadline);
	if (st != TW_OK)
		return st == TW_ETIMEDOUT ? st : TW_EUNREACHABLE;
	tw_in_msg m;
	st = idle != NULL
		     ? recv_frame_idle(c->fd, &c->rd, deadline, &m, idle, arg)
		     : recv_frame(c->fd, &c->rd, deadline, &m);
	if (st != TW_OK)
		return st == TW_ETIMEDOUT ? st : TW_EUNREACHABLE;
	st = m.hdr.type == TW_MSG_SHUTDOWN ? TW_OK : TW_EPROTO;
	tw_in_msg_release(&m);
	return st;
}

void rdv_client_close(struct rdv_client *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	reader_reset(&c->rd);
	free(c);
}
