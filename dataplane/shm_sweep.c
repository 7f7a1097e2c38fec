/* Same-host transport: removing dead workers' socket files (shm_sweep.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/shm_sweep.h"

/* "tw-<pid>-<n>-<8 hex>.sock": the pid, or -1 for another name. */
static long name_pid(const char *s)
{
	if (strncmp(s, "tw-", 3) != 0)
		return -1;
	char *e;
	errno = 0;
	long pid = strtol(s + 3, &e, 10);
	if (errno != 0 || e == s + 3 || *e != '-' || pid <= 0)
		return -1;
	const char *q = e + 1;
	if (*q < '0' || *q > '9')
		return -1;
	while (*q >= '0' && *q <= '9')
		q++;
	if (*q++ != '-')
		return -1;
	for (int i = 0; i < 8; i++, q++)
		if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f')))
			return -1;
	return strcmp(q, ".sock") == 0 ? pid : -1;
}

static bool nobody_listens(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK,
			0);
	if (fd < 0)
		return false;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	bool refused = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
		       errno == ECONNREFUSED;
	close(fd);
	return refused;
}

unsigned shm_sweep(const char *dir, uint64_t min_age_ns, unsigned max_entries)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return 0;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000u +
			  (uint64_t)now.tv_nsec;
	uid_t me = geteuid();
	unsigned removed = 0, seen = 0;
	struct dirent *de;
	while (seen++ < max_entries && (de = readdir(d)) != NULL) {
		long pid = name_pid(de->d_name);
		if (pid < 0)
			continue;
		char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
		int k = snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (k < 0 || (size_t)k >= sizeof(path))
			continue;
		struct stat st;
		if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode) ||
		    st.st_uid != me)
			continue;
		uint64_t changed = (uint64_t)st.st_ctim.tv_sec * 1000000000u +
				   (uint64_t)st.st_ctim.tv_nsec;
		if (changed + min_age_ns > now_ns)
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		if (nobody_listens(path) && unlink(path) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}
