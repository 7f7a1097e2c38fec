/* tools/tw-stat against a live worker (issue 16): worker w0 serves its
 * statistics on a unix socket, calls w1 a known number of times, and
 * tw-stat's JSON and text show them; another user is refused. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <tensorwire/tensorwire.h>

#include "harness.h"

#define NCALLS 40

static char dir[40], sock[96];

/* Run cmd, its stdout into out (NUL-terminated). Its exit status. */
static int run(const char *cmd, char *out, size_t size)
{
	FILE *p = popen(cmd, "r");
	if (p == NULL)
		return -1;
	size_t len = fread(out, 1, size - 1, p);
	out[len] = '\0';
	return pclose(p);
}

/* Connect as uid and ask for json: what came back (or "connect: ..."),
 * in a child of the worker (no criterion assertions there). */
static void ask_as(uid_t uid, char *out, size_t size)
{
	int pfd[2];
	out[0] = '\0';
	if (pipe(pfd) != 0)
		return;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return;
	if (pid == 0) {
		close(pfd[0]);
		char buf[512];
		if (setgid(uid) != 0 || setuid(uid) != 0)
			_exit(3);
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			int n = snprintf(buf, sizeof(buf), "connect: %s",
					 strerror(errno));
			(void)!write(pfd[1], buf, (size_t)n);
			_exit(0);
		}
		(void)!send(fd, "json\n", 5, MSG_NOSIGNAL);
		ssize_t n;
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			(void)!write(pfd[1], buf, (size_t)n);
		_exit(0);
	}
	close(pfd[1]);
	size_t len = 0;
	ssize_t n;
	while (len + 1 < size &&
	       (n = read(pfd[0], out + len, size - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(pfd[0]);
	int ws;
	waitpid(pid, &ws, 0);
	if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
		snprintf(out, size, "child failed");
}

static int w_stat(struct h_worker *w)
{
	struct tw_agent_opts o;
	h_opts(&o, w);
	if (w->rank == 0)
		o.stat_socket = sock;
	tw_agent *a;
	char err[256];
	tw_status st = h_init_err(err, sizeof(err), &o, &a);
	W_ASSERT(w, st == TW_OK, "init: %s", err);
	if (w->rank == 0) {
		tw_value one[1] = {tw_value_int(7)};
		tw_value args = H_TUPLE(one);
		for (int i = 0; i < NCALLS; i++) {
			tw_value r, e;
			st = tw_rpc_sync(a, "w1", "echo", &args, NULL, 10000,
					 &r, &e);
			W_ASSERT(w, st == TW_OK, "echo: %s", tw_errmsg(st));
			tw_value_destroy(&r);
			tw_value_destroy(&e);
		}
		tw_value r, e;
		st = tw_rpc_sync(a, "w1", "no_such_fn", &args, NULL, 10000, &r,
				 &e);
		W_ASSERT(w, st == TW_ENOFUNC, "%s", tw_status_name(st));
		tw_value_destroy(&e);

		static char out[1 << 17];
		char cmd[256];
		snprintf(cmd, sizeof(cmd), "%s %s --json", TW_STAT_BIN, sock);
		W_ASSERT(w, run(cmd, out, sizeof(out)) == 0, "%s", cmd);
		W_ASSERT(w,
			 strncmp(out, "{\"worker\":\"w0\",\"rank\":0,", 24) ==
				 0,
			 "%s", out);
		char want[64];
		snprintf(want, sizeof(want), "\"calls_ok\":%d,", NCALLS);
		W_ASSERT(w, strstr(out, want) != NULL, "%s in %s", want, out);
		W_ASSERT(w, strstr(out, "\"calls_failed\":{\"TW_ENOFUNC\":1}"),
			 "%s", out);
		snprintf(want, sizeof(want),
			 "{\"name\":\"echo\",\"id\":0,\"rtt\":{\"count\":%d,",
			 NCALLS);
		W_ASSERT(w, strstr(out, want) != NULL, "%s in %s", want, out);
		snprintf(want, sizeof(want),
			 "{\"name\":\"w1\",\"id\":1,\"rtt\":{\"count\":%d,",
			 NCALLS + 1);
		W_ASSERT(w, strstr(out, want) != NULL, "%s in %s", want, out);

		snprintf(cmd, sizeof(cmd), "%s %s --interval 0.05 --count 3",
			 TW_STAT_BIN, sock);
		W_ASSERT(w, run(cmd, out, sizeof(out)) == 0, "%s", cmd);
		int n = 0;
		for (const char *p = out; (p = strstr(p, "worker w0 (rank 0)"));
		     p++)
			n++;
		W_ASSERT(w, n == 3, "three reports, got %d: %s", n, out);
		/* The last report, for the log. */
		const char *last = strstr(
			strstr(strstr(out, "worker w0") + 1, "worker w0") + 1,
			"worker w0");
		fprintf(stderr, "%s", last);
		W_ASSERT(w, strstr(out, "rtt   echo") != NULL, "%s", out);

		if (geteuid() == 0) {
			/* Another user: the 0700 directory keeps it out. */
			struct passwd *pw = getpwnam("nobody");
			W_ASSERT(w, pw != NULL, "no user nobody");
			ask_as(pw->pw_uid, out, sizeof(out));
			W_ASSERT(w, strstr(out, "Permission denied"), "%s",
				 out);
			/* With the modes opened, SO_PEERCRED still does. */
			chmod(dir, 0711);
			char d[96];
			snprintf(d, sizeof(d), "%s/s", dir);
			chmod(d, 0711);
			chmod(sock, 0666);
			ask_as(pw->pw_uid, out, sizeof(out));
			W_ASSERT(w,
				 strcmp(out, "error: permission denied\n") == 0,
				 "%s", out);
			chmod(d, 0700);
			/* Root is answered. */
			ask_as(0, out, sizeof(out));
			W_ASSERT(w, out[0] == '{', "%s", out);
		}
		/* Once it is gone: a clear failure. */
	}
	st = tw_agent_shutdown(a, true);
	W_ASSERT(w, st == TW_OK, "shutdown: %s", tw_errmsg(st));
	if (w->rank == 0) {
		static char out[512];
		char cmd[256];
		snprintf(cmd, sizeof(cmd), "%s %s 2>&1", TW_STAT_BIN, sock);
		W_ASSERT(w, run(cmd, out, sizeof(out)) != 0, "%s", out);
		W_ASSERT(w, strstr(out, "No such file") != NULL, "%s", out);
	}
	return 0;
}

Test(stat, tw_stat_reads_a_live_worker, .timeout = 120)
{
	snprintf(dir, sizeof(dir), "/tmp/tw-stat-int.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/s/w0.sock", dir);
	h_run_group(2, w_stat, NULL, NULL, 0);
	char d[96];
	snprintf(d, sizeof(d), "%s/s", dir);
	rmdir(d);
	rmdir(dir);
	if (geteuid() != 0)
		cr_log_warn("not root: another user's refusal not checked "
			    "(it needs setuid to nobody)");
}
