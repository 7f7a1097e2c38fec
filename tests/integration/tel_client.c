/* A DPDK telemetry client for tests (tel_client.h). */
#include "tel_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int tel_connect(const char *prefix)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path),
		 "/var/run/dpdk/%s/dpdk_telemetry.v2", prefix);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char hello[1024];
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    recv(fd, hello, sizeof(hello), 0) <= 0) {
		close(fd);
		return -1;
	}
	return fd;
}

long tel_ask(int fd, const char *req, char *buf, size_t n)
{
	if (send(fd, req, strlen(req), 0) != (ssize_t)strlen(req))
		return -1;
	ssize_t r = recv(fd, buf, n - 1, 0);
	if (r <= 0)
		return -1;
	buf[r] = '\0';
	return (long)r;
}

/* Just past "key": and any spaces, or NULL. */
static const char *after_key(const char *json, const char *key)
{
	char k[160];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = strstr(json, k);
	if (p == NULL)
		return NULL;
	p += strlen(k);
	while (*p == ' ')
		p++;
	return p;
}

static bool number(const char *p, uint64_t *v)
{
	if (p == NULL || *p < '0' || *p > '9')
		return false;
	*v = strtoull(p, NULL, 10);
	return true;
}

bool tel_u64(const char *json, const char *key, uint64_t *v)
{
	return number(after_key(json, key), v);
}

bool tel_first(const char *json, const char *key, uint64_t *v)
{
	const char *p = after_key(json, key);
	if (p == NULL || *p != '[')
		return false;
	p++;
	while (*p == ' ')
		p++;
	return number(p, v);
}
