/* tw-stat: print a running worker's statistics (counters and latency
 * histograms), read from its stat socket (tw-worker --stat-socket,
 * tw_agent_opts.stat_socket, TW_STAT_SOCKET), once or every N seconds. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tw-stat SOCKET [--json] [--interval N] [--count K]\n"
		"Prints the counters and latency histograms (round trips of the\n"
		"calls the worker made, serve times of those it answered: p50 to\n"
		"p99.99 and max, per function and per peer) of the worker serving\n"
		"SOCKET. --json: one JSON object per line instead of text.\n"
		"--interval N: again every N seconds (default once), --count K\n"
		"times (default: until interrupted). Only the worker's user and\n"
		"root may read it.\n");
}

/* One request: the answer on stdout. 0, or 1 with a reason on stderr. */
static int query(const char *path, int json)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "tw-stat: socket path too long\n");
		return 1;
	}
	memcpy(sa.sun_path, path, strlen(path));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		fprintf(stderr, "tw-stat: %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	const char *req = json ? "json\n" : "text\n";
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0) {
		fprintf(stderr, "tw-stat: %s: %s\n", path, strerror(errno));
		close(fd);
		return 1;
	}
	char buf[65536];
	ssize_t n;
	size_t total = 0;
	int err = 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (total == 0 && strncmp(buf, "error:", 6) == 0)
			err = 1;
		fwrite(buf, 1, (size_t)n, err ? stderr : stdout);
		total += (size_t)n;
	}
	close(fd);
	if (n < 0 || total == 0) {
		fprintf(stderr, "tw-stat: %s: no answer%s%s\n", path,
			n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
		return 1;
	}
	fflush(stdout);
	return err;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"interval", required_argument, NULL, 'i'},
		{"count", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int json = 0, c;
	double interval = 0;
	long count = -1;
	while ((c = getopt_long(argc, argv, "ji:c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = 1;
			break;
		case 'i':
			interval = strtod(optarg, NULL);
			if (interval <= 0) {
				fprintf(stderr, "tw-stat: --interval: a "
						"positive number of seconds\n");
				return 2;
			}
			break;
		case 'c':
			count = strtol(optarg, NULL, 10);
			if (count <= 0) {
				fprintf(stderr, "tw-stat: --count: at least "
						"1\n");
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	if (interval == 0)
		count = 1;
	for (long i = 0; count < 0 || i < count; i++) {
		if (i > 0) {
			struct timespec ts = {
				.tv_sec = (time_t)interval,
				.tv_nsec = (long)((interval -
						   (double)(time_t)interval) *
						  1e9)};
			nanosleep(&ts, NULL);
			if (!json)
				printf("\n");
		}
		int rc = query(argv[optind], json);
		if (rc != 0)
			return rc;
	}
	return 0;
}
