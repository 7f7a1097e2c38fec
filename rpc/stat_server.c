/* The statistics socket (rpc/stat_server.h): a thread answering one
 * client at a time with a snapshot, as JSON or text. */
#include "rpc/stat_server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <tensorwire/log.h>
#include <tensorwire/stats.h>

#include "dataplane/clock.h"
#include "dataplane/err.h"
#include "dataplane/log.h"

struct stat_server {
	const tw_agent *a;
	int lfd, efd;
	pthread_t th;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* The directory part of path into dir ("." for none). */
static void dir_of(const char *path, char *dir, size_t size)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		snprintf(dir, size, ".");
	else if (slash == path)
		snprintf(dir, size, "/");
	else
		snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

static tw_status check_dir(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dir_of(path, dir, sizeof(dir));
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return tw_fail(TW_EIO,
			       "stat socket: cannot make directory "
			       "'%s': %s",
			       dir, strerror(errno));
	struct stat st;
	if (lstat(dir, &st) != 0)
		return tw_fail(TW_EIO, "stat socket: directory '%s': %s", dir,
			       strerror(errno));
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 077) != 0)
		return tw_fail(TW_EINVAL,
			       "stat socket: directory '%s' must be a "
			       "directory of this user's closed to others "
			       "(mode 0700; it is %04o, owner uid %u)",
			       dir, (unsigned)(st.st_mode & 07777),
			       (unsigned)st.st_uid);
	return TW_OK;
}

/* A socket file already at path: replaced when stale, else refused. */
static tw_status check_old(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return TW_OK;
	if (!S_ISSOCK(st.st_mode))
		return tw_fail(TW_EINVAL,
			       "stat socket: '%s' exists and is not a socket",
			       path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return tw_fail(TW_EIO, "stat socket: %s", strerror(errno));
	int live = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0;
	close(fd);
	if (live)
		return tw_fail(TW_EBUSY,
			       "stat socket: another process serves '%s'",
			       path);
	unlink(path);
	return TW_OK;
}

/* Write all of buf before deadline (ns, tw_now_ns). */
static void send_all(int fd, const char *buf, size_t len, uint64_t deadline)
{
	while (len > 0 && tw_now_ns() < deadline) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		uint64_t left = (deadline - tw_now_ns()) / 1000000u;
		if (poll(&p, 1, (int)left + 1) <= 0)
			return;
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return;
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		}
	}
}

/* Read one request line (at most STAT_REQ_MAX bytes) before deadline:
 * its length without the newline, or -1. */
static int read_req(int fd, char *req, uint64_t deadline)
{
	size_t len = 0;
	while (tw_now_ns() < deadline) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		uint64_t left = (deadline - tw_now_ns()) / 1000000u;
		if (poll(&p, 1, (int)left + 1) <= 0)
			return -1;
		ssize_t n = recv(fd, req + len, STAT_REQ_MAX - len,
				 MSG_DONTWAIT);
		if (n == 0)
			return -1;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -1;
		}
		len += (size_t)n;
		char *nl = memchr(req, '\n', len);
		if (nl != NULL) {
			*nl = '\0';
			if (nl > req && nl[-1] == '\r')
				nl[-1] = '\0';
			return (int)strlen(req);
		}
		if (len == STAT_REQ_MAX)
			return -1;
	}
	return -1;
}

static void serve_client(struct stat_server *s, int fd)
{
	uint64_t deadline = tw_now_ns() + STAT_IO_MS * UINT64_C(1000000);
	char req[STAT_REQ_MAX + 1] = {0};
	int n = read_req(fd, req, deadline);
	if (n < 0)
		return;
	/* Checked once the request is read (at most STAT_REQ_MAX bytes):
	 * closing with it unread would reset the connection, and the
	 * refusal would be lost. */
	struct ucred cr = {.uid = (uid_t)-1};
	socklen_t crl = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) != 0 ||
	    (cr.uid != geteuid() && cr.uid != 0)) {
		TW_LOG(TW_LOG_WARN, "stat_refused",
		       "uid=%u reason=\"not this user or root\"",
		       (unsigned)cr.uid);
		static const char no[] = "error: permission denied\n";
		send_all(fd, no, sizeof(no) - 1, deadline);
		return;
	}
	bool json = strcmp(req, "json") == 0;
	if (!json && n != 0 && strcmp(req, "text") != 0) {
		static const char bad[] =
			"error: unknown request (send \"json\" or \"text\")\n";
		send_all(fd, bad, sizeof(bad) - 1, deadline);
		return;
	}
	tw_stats *snap = NULL;
	char *out = NULL;
	tw_status st = tw_stats_take(s->a, &snap);
	if (st == TW_OK)
		st = json ? tw_stats_json(snap, &out)
			  : tw_stats_text(snap, &out);
	tw_stats_free(snap);
	if (st != TW_OK) {
		char msg[TW_ERRMSG_MAX + 16];
		snprintf(msg, sizeof(msg), "error: %s\n", tw_errmsg(st));
		send_all(fd, msg, strlen(msg), deadline);
		return;
	}
	send_all(fd, out, strlen(out), deadline);
	free(out);
}

static void *server_main(void *arg)
{
	struct stat_server *s = arg;
	for (;;) {
		struct pollfd p[2] = {{.fd = s->lfd, .events = POLLIN},
				      {.fd = s->efd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents != 0)
			break;
		if (p[0].revents == 0)
			continue;
		int fd = accept4(s->lfd, NULL, NULL,
				 SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			continue; /* EMFILE, a client gone: next */
		serve_client(s, fd);
		close(fd);
	}
	return NULL;
}

tw_status stat_server_start(const tw_agent *a, const char *path,
			    struct stat_server **out)
{
	*out = NULL;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (path == NULL || path[0] == '\0' ||
	    strlen(path) >= sizeof(sa.sun_path))
		return tw_fail(TW_EINVAL,
			       "stat socket: path must be 1 to %zu bytes",
			       sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, strlen(path));
	tw_status st = check_dir(path);
	if (st == TW_OK)
		st = check_old(path, &sa);
	if (st != TW_OK)
		return st;
	struct stat_server *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return tw_fail(TW_ENOMEM, "no memory for the stat socket");
	s->a = a;
	snprintf(s->path, sizeof(s->path), "%s", path);
	s->efd = eventfd(0, EFD_CLOEXEC);
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->efd < 0 || s->lfd < 0)
		goto sys;
	/* 0600 from the start: no moment others may connect. */
	mode_t old = umask(0177);
	int b = bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (b != 0 || chmod(path, 0600) != 0 ||
	    listen(s->lfd, STAT_BACKLOG) != 0)
		goto sys;
	if (pthread_create(&s->th, NULL, server_main, s) != 0) {
		errno = EAGAIN;
		unlink(path);
		goto sys;
	}
	pthread_setname_np(s->th, "tw-stat");
	char q[160];
	TW_LOG(TW_LOG_INFO, "stat_socket", "path=%s",
	       tw_log_q(q, sizeof(q), path));
	*out = s;
	return TW_OK;
sys:
	st = tw_fail(TW_EIO, "stat socket '%s': %s", path, strerror(errno));
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->efd >= 0)
		close(s->efd);
	free(s);
	return st;
}

void stat_server_stop(struct stat_server *s)
{
	if (s == NULL)
		return;
	uint64_t one = 1;
	ssize_t w = write(s->efd, &one, sizeof(one));
	(void)w;
	pthread_join(s->th, NULL);
	close(s->lfd);
	close(s->efd);
	unlink(s->path);
	free(s);
}
