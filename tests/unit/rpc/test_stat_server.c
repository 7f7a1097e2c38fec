/* The stat socket (rpc/stat_server.c) of agents on the fake net: it
 * answers while nobody polls the loop, refuses unsafe places and bad
 * requests, and bounds what a client can make it do. */
#include "tests/unit/rpc/fake_world.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "rpc/stat_server.h"

static char dir[40], sock[96];

static void mkdir_tmp(void)
{
	snprintf(dir, sizeof(dir), "/tmp/tw-stat-test.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/s/stat.sock", dir);
}

static void rm_tmp(void)
{
	char p[160];
	unlink(sock);
	snprintf(p, sizeof(p), "%s/s", dir);
	rmdir(p);
	rmdir(dir);
}

static void with_socket(uint32_t rank, struct tw_agent_opts *o)
{
	if (rank == 0)
		o->stat_socket = sock;
}

static int connect_sock(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s",
		     strerror(errno));
	return fd;
}

/* Send req, read the answer to EOF (at most size - 1 bytes). */
static void ask(const char *req, char *out, size_t size)
{
	int fd = connect_sock();
	cr_assert_eq(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
	size_t len = 0;
	ssize_t n;
	while (len + 1 < size && (n = read(fd, out + len, size - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(fd);
}

Test(stat_server, answers_json_and_text_without_the_loop)
{
	mkdir_tmp();
	world_up(2, with_socket);
	for (int i = 0; i < 5; i++) {
		tw_future *f = call(0, "B", "t::echo", i, 1000);
		settle();
		tw_future_release(f);
	}
	struct stat st;
	cr_assert_eq(stat(sock, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "socket mode %o", st.st_mode);
	char d[128];
	snprintf(d, sizeof(d), "%s/s", dir);
	cr_assert_eq(stat(d, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700, "made 0700");

	/* Nobody polls A's loop meanwhile: the server's thread answers. */
	static char out[1 << 16];
	ask("json\n", out, sizeof(out));
	cr_assert_eq(out[0], '{', "%s", out);
	cr_assert_not_null(strstr(out, "\"calls_ok\":5,"), "%s", out);
	cr_assert_not_null(strstr(out, "\"name\":\"t::echo\""));
	ask("text\n", out, sizeof(out));
	cr_assert_not_null(strstr(out, "worker A (rank 0)"), "%s", out);
	ask("\n", out, sizeof(out));
	cr_assert_not_null(strstr(out, "worker A (rank 0)"), "text by default");
	ask("shutdown\n", out, sizeof(out));
	cr_assert_str_eq(out, "error: unknown request (send \"json\" or "
			      "\"text\")\n");
	/* A request longer than STAT_REQ_MAX without a newline: closed
	 * unanswered. */
	char big[STAT_REQ_MAX + 10];
	memset(big, 'j', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ask(big, out, sizeof(out));
	cr_assert_str_eq(out, "");
	world_down(true);
	cr_assert_neq(access(sock, F_OK), 0, "removed at shutdown");
	rm_tmp();
}

Test(stat_server, a_silent_client_is_closed_within_its_time)
{
	mkdir_tmp();
	world_up(1, with_socket);
	int fd = connect_sock(); /* sends nothing */
	struct pollfd p = {.fd = fd, .events = POLLIN};
	/* Closed after STAT_IO_MS (the bound here is generous: a liveness
	 * check, not a timing one). */
	cr_assert_eq(poll(&p, 1, 20 * STAT_IO_MS), 1, "never closed");
	char c;
	cr_assert_eq(read(fd, &c, 1), 0);
	close(fd);
	/* The next client is served. */
	static char out[1 << 16];
	ask("json\n", out, sizeof(out));
	cr_assert_eq(out[0], '{');
	world_down(true);
	rm_tmp();
}

static tw_status init_one(const char *path)
{
	tw_fake_net *net;
	cr_assert_eq(tw_fake_net_create(&net), TW_OK);
	struct tw_agent_opts o;
	tw_agent_opts_init(&o, sizeof(o));
	o.name = "A";
	o.rank = 0;
	o.world_size = 1;
	o.embedded = true;
	o.stat_socket = path;
	struct tw_agent_fake h = {.net = net, .names = names, .addrs = addrs};
	tw_agent *a = NULL;
	tw_status st = tw_agent_init_fake(&o, &h, &a);
	if (st == TW_OK) {
		tw_agent_fake_enter(a);
		cr_assert_eq(tw_agent_shutdown(a, false), TW_OK);
	}
	cr_assert_eq(tw_fake_net_destroy(net), TW_OK);
	return st;
}

Test(stat_server, unsafe_places_are_refused_with_a_reason)
{
	mkdir_tmp();
	char d[96], p[200];
	snprintf(d, sizeof(d), "%s/s", dir);
	cr_assert_eq(mkdir(d, 0755), 0);
	cr_assert_eq(init_one(sock), TW_EINVAL);
	cr_assert_not_null(strstr(tw_errmsg(TW_EINVAL),
				  "must be a directory of this user's closed "
				  "to others (mode 0700; it is 0755"),
			   "%s", tw_errmsg(TW_EINVAL));
	cr_assert_eq(chmod(d, 0700), 0);
	/* A file that is not a socket is not replaced. */
	FILE *f = fopen(sock, "w");
	cr_assert_not_null(f);
	fclose(f);
	cr_assert_eq(init_one(sock), TW_EINVAL);
	cr_assert_not_null(strstr(tw_errmsg(TW_EINVAL), "is not a socket"));
	unlink(sock);
	snprintf(p, sizeof(p), "%s/%0120d", dir, 0);
	cr_assert_eq(init_one(p), TW_EINVAL, "a path too long");
	/* A stale socket (its server gone) is replaced. */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	cr_assert_eq(init_one(sock), TW_OK, "%s", tw_errmsg(TW_EIO));
	/* A live one is not. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 1), 0);
	cr_assert_eq(init_one(sock), TW_EBUSY);
	cr_assert_not_null(strstr(tw_errmsg(TW_EBUSY), "another process"));
	close(fd);
	rm_tmp();
}
