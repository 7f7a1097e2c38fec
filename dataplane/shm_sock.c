/* Same-host transport: its unix sockets. Addresses, listening (a socket
 * file per transport, made safely and removed after), accepting and
 * connecting, and the messages of the socket protocol, descriptors
 * included (shm.h, "Set-up"). */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dataplane/clock.h"
#include "dataplane/err.h"
#include "dataplane/shm_impl.h"

#define SCHEME "shm://"

tw_status shm_addr_parse(const char *addr, char *path, size_t len)
{
	size_t k = strlen(SCHEME);
	if (addr == NULL || strncmp(addr, SCHEME, k) != 0 || addr[k] != '/')
		return tw_fail(TW_EINVAL,
			       "shm: '%.80s' is not shm:// and an absolute "
			       "path",
			       addr ? addr : "(null)");
	size_t n = strlen(addr + k);
	if (n + 1 > len || n + 1 > SHM_PATH_MAX)
		return tw_fail(TW_EINVAL,
			       "shm: the path of '%.80s...' is longer than a "
			       "unix socket's %u bytes",
			       addr, SHM_PATH_MAX - 1);
	memcpy(path, addr + k, n + 1);
	return TW_OK;
}

/* Room for a few of the largest messages (a DATA of SM_DATA_MAX), even
 * where the system's default send buffer is small (best effort: capped
 * by net.core.wmem_max). */
static void sock_setup(int fd)
{
	int b = 8 * (int)SM_BUF_SIZE;
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &b, sizeof(b));
}

static void sun_of(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, strlen(path) + 1);
}

/* A socket file at path that nobody listens on (a process that died
 * without removing it). */
static bool stale(const char *path)
{
	struct stat s;
	if (lstat(path, &s) != 0 || !S_ISSOCK(s.st_mode))
		return false;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK,
			0);
	if (fd < 0)
		return false;
	struct sockaddr_un sa;
	sun_of(&sa, path);
	bool dead = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
		    errno == ECONNREFUSED;
	close(fd);
	return dead;
}

/* ------------------------------------------------------------------ */
/* Listening                                                           */

static void on_lis_poll(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	struct slis *l = container_of(ur, struct slis, poll_req);
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		l->armed = false;
		l->ops--;
	}
	if (l->closing)
		return;
	if (cqe->res > 0) {
		l->readable = true;
		l->t->lis_ready = true;
	}
	/* Ended (an overflowing CQ, say): the poller re-arms it. */
	if (!l->armed)
		l->t->lis_ready = true;
}

static void on_lis_cancel(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	(void)cqe;
	struct slis *l = container_of(ur, struct slis, cancel_req);
	l->ops--;
}

static void lis_arm(struct slis *l)
{
	struct io_uring_sqe *sqe = tw_loop_sqe(l->t->base.loop);
	if (sqe == NULL) {
		l->t->lis_ready = true; /* the poller tries again */
		return;
	}
	io_uring_prep_poll_multishot(sqe, l->fd, POLLIN);
	io_uring_sqe_set_data(sqe, &l->poll_req);
	l->armed = true;
	l->ops++;
}

static void backoff_fire(struct tw_timer *tm, void *arg)
{
	(void)tm;
	struct slis *l = arg;
	l->backing_off = false;
	l->readable = true;
	l->t->lis_ready = true;
}

/* The directory form: a name of our own in it. */
static tw_status lis_path(const char *path, char *out, size_t len)
{
	static _Atomic unsigned seq;
	size_t n = strlen(path);
	if (n == 0 || path[n - 1] != '/') {
		snprintf(out, len, "%s", path);
		return TW_OK;
	}
	/* The pid and a count make it ours in this pid namespace; the
	 * random part keeps processes of other namespaces sharing the
	 * directory (same pids) apart, and others from guessing the name
	 * to take it first. */
	uint32_t rnd;
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = (uint32_t)tw_now_ns() * 2654435761u;
	int k = snprintf(out, len, "%stw-%d-%u-%08x.sock", path, (int)getpid(),
			 atomic_fetch_add(&seq, 1), rnd);
	if (k < 0 || (size_t)k >= len)
		return tw_fail(TW_EINVAL,
			       "shm: a socket in '%.80s' would be longer than "
			       "a unix socket's %u bytes",
			       path, SHM_PATH_MAX - 1);
	return TW_OK;
}

tw_status shm_listen(struct st *t, const char *addr, char *bound,
		     size_t bound_len)
{
	char dir[SHM_PATH_MAX], path[SHM_PATH_MAX];
	tw_status st = shm_addr_parse(addr, dir, sizeof(dir));
	if (st == TW_OK)
		st = lis_path(dir, path, sizeof(path));
	if (st != TW_OK)
		return st;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK,
			0);
	if (fd < 0)
		return tw_fail(TW_EIO, "shm: no socket to listen on: %s",
			       strerror(errno));
	struct sockaddr_un sa;
	sun_of(&sa, path);
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (r != 0 && errno == EADDRINUSE && stale(path)) {
		(void)unlink(path);
		r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	}
	/* The mode before listen(): until then a connect is refused, so
	 * nobody gets in through the umask's looser permissions. */
	struct stat s;
	const char *what = "bind";
	if (r == 0 && (what = "chmod", chmod(path, t->o.socket_mode)) == 0 &&
	    (what = "stat", stat(path, &s)) == 0 &&
	    (what = "listen", listen(fd, 1024)) == 0) {
		struct slis *l = calloc(1, sizeof(*l));
		if (l == NULL) {
			(void)unlink(path);
			close(fd);
			return tw_fail_static(TW_ENOMEM,
					      "shm: no memory for a listener");
		}
		l->t = t;
		l->fd = fd;
		snprintf(l->path, sizeof(l->path), "%s", path);
		l->dev = s.st_dev;
		l->ino = s.st_ino;
		l->poll_req.fn = on_lis_poll;
		l->cancel_req.fn = on_lis_cancel;
		tw_timer_init(&l->backoff_tm, backoff_fire, l);
		SLIST_INSERT_HEAD(&t->lis, l, link);
		lis_arm(l);
		if (bound != NULL && bound_len > 0) {
			int k = snprintf(bound, bound_len, SCHEME "%s", path);
			if (k < 0 || (size_t)k >= bound_len)
				return TW_EOVERFLOW; /* listening all the same */
		}
		return TW_OK;
	}
	int e = errno;
	if (r == 0)
		(void)unlink(path);
	close(fd);
	return tw_fail(e == EADDRINUSE || e == ENOENT || e == EACCES ||
				       e == ENOTDIR || e == EROFS
			       ? TW_EINVAL
			       : TW_EIO,
		       "shm: cannot listen on %.110s: %s: %s", path, what,
		       strerror(e));
}

static void peer_of(struct sconn *c);

/* An accepted socket: counted against max_conns, then a connection. */
static void accepted(struct st *t, int fd)
{
	uint32_t n = atomic_fetch_add_explicit(&t->sh->conns, 1,
					       memory_order_relaxed);
	if (n >= t->o.max_conns) {
		atomic_fetch_sub_explicit(&t->sh->conns, 1,
					  memory_order_relaxed);
		t->st.conns_refused++;
		close(fd);
		return;
	}
	struct sconn *c = sconn_new(t, fd, SC_OPEN, true);
	if (c == NULL) {
		atomic_fetch_sub_explicit(&t->sh->conns, 1,
					  memory_order_relaxed);
		close(fd);
		return;
	}
	sock_setup(fd);
	c->counted = true;
	peer_of(c);
	t->st.conns_accepted++;
	sconn_dirty(c); /* announced by the poller's service */
}

int shm_accept_ready(struct st *t)
{
	int work = 0;
	t->lis_ready = false;
	struct slis *l;
	SLIST_FOREACH(l, &t->lis, link)
	{
		if (l->closing || l->backing_off)
			continue;
		if (!l->armed)
			lis_arm(l);
		/* A bounded batch; the rest at the next poll. */
		for (int i = 0; l->readable && i < 16; i++) {
			int fd = accept4(l->fd, NULL, NULL,
					 SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (fd >= 0) {
				accepted(t, fd);
				work++;
				continue;
			}
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			l->readable = false;
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				/* Trying again at once would fail at once. */
				t->st.accept_errors++;
				l->backing_off = true;
				tw_loop_timer_after(t->base.loop,
						    &l->backoff_tm,
						    ACCEPT_BACKOFF_NS);
			}
		}
		if (l->readable)
			t->lis_ready = true;
	}
	return work;
}

void shm_lis_close_all(struct st *t)
{
	struct slis *l;
	SLIST_FOREACH(l, &t->lis, link)
	{
		if (l->closing)
			continue;
		l->closing = true;
		tw_timer_cancel(tw_loop_timers(t->base.loop), &l->backoff_tm);
		/* Remove the file only if it is still ours (someone may have
		 * replaced it meanwhile). */
		struct stat s;
		if (stat(l->path, &s) == 0 && s.st_dev == l->dev &&
		    s.st_ino == l->ino)
			(void)unlink(l->path);
		(void)shutdown(l->fd, SHUT_RDWR);
		if (l->armed) {
			struct io_uring_sqe *sqe = tw_loop_sqe(t->base.loop);
			if (sqe != NULL) {
				io_uring_prep_cancel(sqe, &l->poll_req,
						     IORING_ASYNC_CANCEL_ALL);
				io_uring_sqe_set_data(sqe, &l->cancel_req);
				l->ops++;
			}
		}
	}
}

bool shm_lis_busy(struct st *t)
{
	struct slis *l;
	SLIST_FOREACH(l, &t->lis, link)
	if (l->ops != 0)
		return true;
	return false;
}

bool shm_lis_free_all(struct st *t, bool force)
{
	bool all = true;
	struct slis *l;
	while ((l = SLIST_FIRST(&t->lis)) != NULL) {
		SLIST_REMOVE_HEAD(&t->lis, link);
		close(l->fd);
		if (l->ops == 0 || force)
			free(l);
		else
			all = false; /* the kernel may still post to it: leak */
	}
	return all;
}

/* ------------------------------------------------------------------ */
/* Connecting                                                          */

/* Who is at the other end: the kernel's word (SO_PEERCRED), not the
 * peer's. One "host" per user for per-host limits. */
static void peer_of(struct sconn *c)
{
	struct ucred cr;
	socklen_t l = sizeof(cr);
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) != 0)
		return;
	c->peer_pid = cr.pid;
	c->peer_uid = cr.uid;
	c->base.peer_host = (UINT64_C(0x53484d) << 32) | cr.uid;
	snprintf(c->base.peer, sizeof(c->base.peer), "shm pid %d uid %u",
		 (int)cr.pid, (unsigned)cr.uid);
}

/* 1 connected, 0 not yet (backlog full), -1 failed (why in errno). */
static int try_connect(int fd, const char *path)
{
	struct sockaddr_un sa;
	sun_of(&sa, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ||
	    errno == EISCONN)
		return 1;
	return errno == EAGAIN || errno == EINTR ? 0 : -1;
}

tw_status shm_connect(struct st *t, const char *addr, tw_conn **out)
{
	char path[SHM_PATH_MAX];
	tw_status st = shm_addr_parse(addr, path, sizeof(path));
	if (st != TW_OK)
		return st;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK,
			0);
	if (fd < 0)
		return tw_fail(errno == ENOMEM || errno == ENOBUFS ? TW_ENOMEM
								   : TW_EIO,
			       "shm: no socket to connect to %.80s: %s", addr,
			       strerror(errno));
	sock_setup(fd);
	/* Nobody there (no such file, nobody listening): refused at once,
	 * with the kernel's reason. */
	int r = try_connect(fd, path);
	if (r < 0) {
		int e = errno;
		close(fd);
		return tw_fail(TW_EUNREACHABLE,
			       "shm: cannot connect to %.110s: %s", addr,
			       strerror(e));
	}
	struct sconn *c = sconn_new(t, fd, SC_CONNECTING, false);
	if (c == NULL) {
		close(fd);
		return tw_fail_static(TW_ENOMEM,
				      "shm: no memory for a connection");
	}
	memcpy(c->path, path, sizeof(path));
	/* Until the kernel names the peer (peer_of): the socket's name,
	 * its end if it is long. */
	size_t pl = strlen(path), room = sizeof(c->base.peer) - 1;
	memcpy(c->base.peer, path + (pl > room ? pl - room : 0),
	       (pl > room ? room : pl) + 1);
	c->known = true;
	if (r == 0) {
		/* The listener's backlog is full: again every millisecond,
		 * up to connect_timeout_ms. */
		c->connect_deadline = tw_loop_now(t->base.loop) +
				      (uint64_t)t->o.connect_timeout_ms *
					      1000000u;
		tw_loop_timer_after(t->base.loop, &c->connect_tm,
				    CONNECT_RETRY_NS);
	} else {
		c->state = SC_OPEN;
		peer_of(c);
		sconn_dirty(c); /* announced by the poller */
	}
	*out = &c->base;
	return TW_OK;
}

int shm_connect_retry(struct sconn *c)
{
	int r = try_connect(c->fd, c->path);
	if (r == 0) {
		if (tw_loop_now(c->t->base.loop) >= c->connect_deadline) {
			sconn_fail(c, TW_EUNREACHABLE,
				   "the listener's backlog stayed full for "
				   "connect_timeout_ms");
			return 1;
		}
		tw_loop_timer_after(c->t->base.loop, &c->connect_tm,
				    CONNECT_RETRY_NS);
		return 0;
	}
	if (r < 0) {
		sconn_fail(c, TW_EUNREACHABLE, strerrordesc_np(errno));
		return 1;
	}
	c->state = SC_OPEN;
	peer_of(c);
	return 1;
}

/* ------------------------------------------------------------------ */
/* Watching the socket                                                 */

static void on_sock_poll(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	struct sconn *c = container_of(ur, struct sconn, sock_req);
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		c->sock_armed = false;
		c->ops--;
	}
	if (c->closing) {
		sconn_fail(c, c->close_st, NULL); /* finalizes at ops 0 */
		return;
	}
	int res = cqe->res;
	if (res > 0) {
		c->sock_rd = true;
		if (res & (POLLHUP | POLLRDHUP | POLLERR))
			c->sock_hup = true;
	}
	sconn_dirty(c); /* read it, or re-arm an ended poll */
}

static void on_out_poll(struct tw_uring_req *ur, struct io_uring_cqe *cqe)
{
	(void)cqe;
	struct sconn *c = container_of(ur, struct sconn, out_req);
	c->out_armed = false;
	c->out_wait = false;
	c->ops--;
	if (c->closing) {
		sconn_fail(c, c->close_st, NULL);
		return;
	}
	sconn_dirty(c);
}

void shm_sock_arm(struct sconn *c)
{
	if (c->sock_armed || c->closing)
		return;
	struct io_uring_sqe *sqe = tw_loop_sqe(c->t->base.loop);
	if (sqe == NULL) {
		sconn_dirty(c); /* retried at the next service */
		return;
	}
	c->sock_req.fn = on_sock_poll;
	io_uring_prep_poll_multishot(sqe, c->fd, POLLIN | POLLRDHUP);
	io_uring_sqe_set_data(sqe, &c->sock_req);
	c->sock_armed = true;
	c->ops++;
}

void shm_sock_arm_out(struct sconn *c)
{
	c->out_wait = true;
	if (c->out_armed || c->closing)
		return;
	struct io_uring_sqe *sqe = tw_loop_sqe(c->t->base.loop);
	if (sqe == NULL) {
		c->out_wait = false;
		sconn_dirty(c);
		return;
	}
	c->out_req.fn = on_out_poll;
	io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
	io_uring_sqe_set_data(sqe, &c->out_req);
	c->out_armed = true;
	c->ops++;
}

/* ------------------------------------------------------------------ */
/* Messages                                                            */

int shm_sock_send(struct sconn *c, struct shm_msg *hdr, struct iovec *iov,
		  unsigned n, const int *fds, unsigned nfds)
{
	struct iovec one[2];
	if (iov == NULL) {
		iov = one;
		n = 1;
	}
	iov[0] = (struct iovec){hdr, sizeof(*hdr)};
	struct msghdr m = {.msg_iov = iov, .msg_iovlen = n};
	union {
		char b[CMSG_SPACE(sizeof(int) * SETUP_NFDS)];
		struct cmsghdr align;
	} cbuf;
	if (nfds > 0) {
		memset(&cbuf, 0, sizeof(cbuf));
		m.msg_control = cbuf.b;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	for (;;) {
		ssize_t r = sendmsg(c->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r >= 0)
			return 1;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == ENOBUFS) {
			shm_sock_arm_out(c);
			return 0;
		}
		sconn_fail(c, TW_EUNREACHABLE, strerrordesc_np(errno));
		return -1;
	}
}

/* Descriptors that came with a message: into fds (at most max), the
 * rest closed. Returns how many there were in all. */
static unsigned take_fds(struct msghdr *m, int *fds, unsigned max)
{
	unsigned n = 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm != NULL;
	     cm = CMSG_NXTHDR(m, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int),
			       sizeof(fd));
			if (n < max)
				fds[n] = fd;
			else
				close(fd);
			n++;
		}
	}
	return n;
}

/* Feed a DATA message's bytes; what c cannot take now (it is held) is
 * kept for later, in order. */
static void take_data(struct sconn *c, const unsigned char *p, uint32_t n)
{
	size_t k = srx_feed(c, p, n);
	if (k == n || c->closing)
		return;
	c->stash = malloc(n - k);
	if (c->stash == NULL) {
		sconn_fail(c, TW_ENOMEM, "no memory for a held message");
		return;
	}
	memcpy(c->stash, p + k, n - k);
	c->stash_off = 0;
	c->stash_len = (uint32_t)(n - k);
}

/* One message, into the transport's buffer. 1 taken (DATA fed, control
 * handled), 0 nothing more to read, -1 c is closing. */
static int read_one(struct sconn *c)
{
	struct st *t = c->t;
	unsigned char *buf = t->rbuf;
	struct iovec iov = {buf, SM_BUF_SIZE};
	union {
		char b[CMSG_SPACE(sizeof(int) * SETUP_NFDS)];
		struct cmsghdr align;
	} cbuf;
	/* Until c is trusted, no room for descriptors: the kernel discards
	 * any (and says so in MSG_CTRUNC), we never hold one. */
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	if (c->trusted) {
		m.msg_control = cbuf.b;
		m.msg_controllen = sizeof(cbuf.b);
	}
	ssize_t r;
	do
		r = recvmsg(c->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		t->st.peer_gone++;
		sconn_fail(c, TW_EUNREACHABLE, strerrordesc_np(errno));
		return -1;
	}
	if (r == 0) {
		t->st.peer_gone++;
		sconn_fail(c, TW_EUNREACHABLE,
			   "the peer closed the connection (or its process "
			   "ended)");
		return -1;
	}
	int fds[SETUP_NFDS] = {-1, -1, -1};
	unsigned nfds = 0;
	if (m.msg_controllen > 0)
		nfds = take_fds(&m, fds, SETUP_NFDS);
	struct shm_msg h;
	const char *bad = NULL;
	if (m.msg_flags & MSG_TRUNC)
		bad = "shm: a socket message longer than any the protocol has";
	else if (m.msg_flags & MSG_CTRUNC)
		bad = "shm: descriptors on the socket before the connection "
		      "was trusted, or too many";
	else if ((size_t)r < sizeof(h))
		bad = "shm: a socket message shorter than its header";
	if (bad == NULL) {
		memcpy(&h, buf, sizeof(h));
		if (h.len != (size_t)r - sizeof(h))
			bad = "shm: a socket message whose length is not its "
			      "header's";
		else if (h.type == SM_DATA && nfds != 0)
			bad = "shm: descriptors with a DATA message";
		else if (h.type == SM_DATA && c->rx_ring)
			bad = "shm: DATA on the socket after the peer's SWITCH";
	}
	if (bad != NULL) {
		for (unsigned i = 0; i < nfds && i < SETUP_NFDS; i++)
			close(fds[i]);
		sconn_proto(c, bad);
		return -1;
	}
	if (h.type == SM_DATA) {
		take_data(c, buf + sizeof(h), h.len);
		return c->closing ? -1 : 1;
	}
	if (nfds > SETUP_NFDS) {
		for (unsigned i = 0; i < SETUP_NFDS; i++)
			close(fds[i]);
		sconn_proto(c, "shm: more descriptors than a SETUP carries");
		return -1;
	}
	shm_on_ctl(c, &h, buf + sizeof(h), fds, nfds);
	return c->closing ? -1 : 1;
}

int shm_sock_read(struct sconn *c)
{
	int work = 0;
	bool was_ring = c->rx_ring;
	for (unsigned i = 0; i < SOCK_PASS_MSGS && !c->closing; i++) {
		/* What a held c left of a message goes first; the next
		 * message only once it is taken. */
		if (c->stash_len != 0) {
			size_t k = srx_feed(c, c->stash + c->stash_off,
					    c->stash_len);
			c->stash_off += (uint32_t)k;
			c->stash_len -= (uint32_t)k;
			work += k != 0;
			if (c->stash_len != 0)
				return work; /* held: read on when resumed */
			free(c->stash);
			c->stash = NULL;
		}
		if (c->rx_hold != 0 || !c->sock_rd)
			return work;
		int r = read_one(c);
		if (r <= 0) {
			if (r == 0)
				c->sock_rd = false;
			return work;
		}
		work++;
		if (c->rx_ring && !was_ring) {
			/* The peer's SWITCH: its ring comes before anything
			 * after it on the socket (a hang up included). */
			sconn_dirty(c);
			return work;
		}
	}
	if (c->sock_rd && !c->closing)
		sconn_dirty(c); /* more to read: at the next service */
	return work;
}
