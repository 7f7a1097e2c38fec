/* Unit tests for dataplane/shm_sweep.c: a dead worker's socket file goes,
 * nothing that may still be someone's does. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataplane/shm_sweep.h"

static char dir[] = "/tmp/tw-sweep-XXXXXX";

static void dir_up(void)
{
	cr_assert_not_null(mkdtemp(dir));
}

static void dir_down(void)
{
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

/* A pid no process has here: a child's, once reaped. */
static pid_t dead_pid(void)
{
	pid_t p = fork();
	cr_assert_geq(p, 0);
	if (p == 0)
		_exit(0);
	cr_assert_eq(waitpid(p, NULL, 0), p);
	return p;
}

/* A socket file at dir/name: bound, then left as a killed worker leaves
 * it (closed), or listened on (its fd returned). */
static int sock_file(const char *name, bool listening)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir, name);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s",
		     strerror(errno));
	if (listening) {
		cr_assert_eq(listen(fd, 4), 0);
		return fd;
	}
	close(fd);
	return -1;
}

static bool there(const char *name)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	struct stat st;
	return lstat(p, &st) == 0;
}

Test(shm_sweep, only_dead_workers_sockets_go, .init = dir_up, .fini = dir_down)
{
	pid_t dead = dead_pid();
	char stale[64], other_ns[64], mine[64], young[64];
	snprintf(stale, sizeof(stale), "tw-%d-0-0123abcd.sock", (int)dead);
	/* a live listener whose pid we do not see (another pid namespace) */
	snprintf(other_ns, sizeof(other_ns), "tw-%d-1-0123abcd.sock",
		 (int)dead);
	/* a live process's socket that nobody listens on (yet) */
	snprintf(mine, sizeof(mine), "tw-%d-0-89abcdef.sock", (int)getpid());
	snprintf(young, sizeof(young), "tw-%d-2-0123abcd.sock", (int)dead);
	sock_file(stale, false);
	int lfd = sock_file(other_ns, true);
	sock_file(mine, false);
	/* not ours by name, or not a socket */
	sock_file("tw-1-0-0123abcd.sockx", false);
	sock_file("other.sock", false);
	char plain[64];
	snprintf(plain, sizeof(plain), "%s/tw-%d-3-0123abcd.sock", dir,
		 (int)dead);
	int f = open(plain, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(f, 0);
	close(f);
	/* Old enough for any age: everything but the stale file stays. */
	cr_assert_eq(shm_sweep(dir, 0, SHM_SWEEP_MAX), 1);
	cr_assert(!there(stale));
	cr_assert(there(other_ns) && there(mine));
	cr_assert(there("tw-1-0-0123abcd.sockx") && there("other.sock"));
	cr_assert(there(strrchr(plain, '/') + 1));
	/* A file younger than the age asked for stays, dead or not. */
	sock_file(young, false);
	cr_assert_eq(shm_sweep(dir, SHM_SWEEP_AGE_NS, SHM_SWEEP_MAX), 0);
	cr_assert(there(young));
	/* The listener still takes connections. */
	int c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir, other_ns);
	cr_assert_eq(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(c);
	close(lfd);
	/* Nothing to read: nothing removed, no error. */
	cr_assert_eq(shm_sweep("/nonexistent-tw-dir", 0, SHM_SWEEP_MAX), 0);
}

Test(shm_sweep, entries_looked_at_are_bounded, .init = dir_up, .fini = dir_down)
{
	pid_t dead = dead_pid();
	for (int i = 0; i < 8; i++) {
		char n[64];
		snprintf(n, sizeof(n), "tw-%d-%d-0123abcd.sock", (int)dead, i);
		sock_file(n, false);
	}
	/* ".", ".." and the files: fewer entries than there are, fewer go */
	unsigned first = shm_sweep(dir, 0, 4);
	cr_assert_leq(first, 4);
	cr_assert_eq(first + shm_sweep(dir, 0, SHM_SWEEP_MAX), 8);
}
