/* tools/tw-perf against live workers (issue 16 part 4): its counts are
 * exact (calls made = completed + errors; the failures a failing function
 * raises are counted by kind, and agree with the library's own count),
 * closed loop, open loop, by duration, over io_uring and the same-host
 * transport, and with the server started apart; its CSV files are
 * well-formed. No figure of time is asserted. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXCOL 32
#define MAXROW 8192 /* interval rows: one per 20 ms of a run */

static char dir[40];

struct csv {
	int ncols, nrows;
	char *names[MAXCOL];
	char *cell[MAXROW][MAXCOL];
	char buf[1 << 20];
};

/* Split one line in place; the number of cells. */
static int split(char *line, char **cells)
{
	int n = 0;
	for (char *p = line;; p++) {
		cells[n++] = p;
		p = strchr(p, ',');
		if (p == NULL || n == MAXCOL)
			return p == NULL ? n : -1;
		*p = '\0';
	}
}

/* Read path; every row has as many cells as the header. */
static void read_csv(const char *path, struct csv *c)
{
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s missing", path);
	size_t len = fread(c->buf, 1, sizeof(c->buf) - 1, f);
	fclose(f);
	c->buf[len] = '\0';
	cr_assert(len > 0 && c->buf[len - 1] == '\n', "%s: no final newline",
		  path);
	char *save, *line = strtok_r(c->buf, "\n", &save);
	cr_assert_not_null(line);
	c->ncols = split(line, c->names);
	cr_assert(c->ncols > 1, "%s: header", path);
	c->nrows = 0;
	while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
		cr_assert(c->nrows < MAXROW);
		int n = split(line, c->cell[c->nrows]);
		cr_assert_eq(n, c->ncols, "%s row %d: %d cells, header %d",
			     path, c->nrows, n, c->ncols);
		c->nrows++;
	}
}

static const char *get(const struct csv *c, int row, const char *name)
{
	for (int i = 0; i < c->ncols; i++)
		if (strcmp(c->names[i], name) == 0)
			return c->cell[row][i];
	cr_assert_fail("no column %s", name);
	return NULL;
}

static unsigned long long num(const struct csv *c, int row, const char *name)
{
	const char *s = get(c, row, name);
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	cr_assert(end != s && (*end == '\0' || *end == '.'),
		  "column %s: '%s' is not a number", name, s);
	return v;
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/tw-perf-test.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[96];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
}

/* Run tw-perf with args (its CSV into dir/NAME.csv); exit status 0. */
static void tw_perf(const char *args)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "'%s' -c -1 -C -1 --spin-ms 50 --warmup 50 --csv '%s/run.csv' "
		 "--hist-csv '%s/hist.csv' %s >'%s/out.txt' 2>&1",
		 TW_PERF_BIN, dir, dir, args, dir);
	int rc = system(cmd);
	if (rc != 0) {
		snprintf(cmd, sizeof(cmd), "cat '%s/out.txt' >&2", dir);
		(void)!system(cmd);
	}
	cr_assert_eq(rc, 0, "tw-perf %s: status %d", args, rc);
}

static void path(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", dir, name);
}

/* The last run's row: calls, ok, errors as expected; the error kinds
 * string; the library's count the same. */
static void check_counts(struct csv *c, unsigned long long calls,
			 unsigned long long ok, const char *kinds)
{
	char p[96];
	path(p, sizeof(p), "run.csv");
	read_csv(p, c);
	int r = c->nrows - 1;
	cr_assert(r >= 0);
	cr_expect_eq(num(c, r, "calls"), calls);
	cr_expect_eq(num(c, r, "ok"), ok);
	cr_expect_eq(num(c, r, "errors"), calls - ok);
	cr_expect_str_eq(get(c, r, "error_kinds"), kinds);
	cr_expect_eq(num(c, r, "lib_ok"), ok);
	cr_expect_eq(num(c, r, "lib_failed"), calls - ok);
}

/* Every call that completed is in the histogram, once. */
static void check_hist(unsigned long long completed)
{
	struct csv *h = malloc(sizeof(*h));
	char p[96];
	path(p, sizeof(p), "hist.csv");
	read_csv(p, h);
	unsigned long long sum = 0, last_high = 0;
	for (int i = 0; i < h->nrows; i++) {
		unsigned long long lo = num(h, i, "low_ns"),
				   hi = num(h, i, "high_ns");
		cr_expect(lo <= hi && (i == 0 || lo > last_high),
			  "bucket %d: [%llu, %llu] after %llu", i, lo, hi,
			  last_high);
		last_high = hi;
		sum += num(h, i, "count");
	}
	cr_expect_eq(sum, completed);
	free(h);
}

TestSuite(tw_perf, .init = setup, .fini = teardown, .timeout = 120);

Test(tw_perf, closed_loop_counts_exact)
{
	struct csv *c = malloc(sizeof(*c));
	tw_perf("-n 1000 -W 4 --fail-every 10");
	check_counts(c, 1000, 900, "TW_EVALUE:100");
	cr_expect_str_eq(get(c, 0, "mode"), "closed");
	cr_expect_eq(num(c, 0, "inflight"), 4);
	unsigned long long p50 = num(c, 0, "p50_ns"), p99 = num(c, 0, "p99_ns");
	cr_expect(num(c, 0, "min_ns") <= p50 && p50 <= p99 &&
			  p99 <= num(c, 0, "max_ns"),
		  "percentiles out of order");
	check_hist(1000);
	free(c);
}

Test(tw_perf, open_loop_counts_exact)
{
	struct csv *c = malloc(sizeof(*c));
	char ivp[96], args[256];
	path(ivp, sizeof(ivp), "iv.csv");
	snprintf(args, sizeof(args),
		 "-n 600 -r 20000 -W 16 -f perf::echo -s 256 --fail-every 7 "
		 "--interval 0.02 --interval-csv '%s'",
		 ivp);
	tw_perf(args);
	check_counts(c, 600, 600 - 600 / 7, "TW_EVALUE:85");
	cr_expect_str_eq(get(c, 0, "mode"), "open");
	cr_expect_str_eq(get(c, 0, "fn"), "perf::echo");
	check_hist(600);
	/* The intervals add up to the run. */
	struct csv *iv = malloc(sizeof(*iv));
	read_csv(ivp, iv);
	unsigned long long calls = 0, errors = 0;
	for (int i = 0; i < iv->nrows; i++) {
		calls += num(iv, i, "calls");
		errors += num(iv, i, "errors");
	}
	cr_expect_eq(calls, 600);
	cr_expect_eq(errors, 85);
	free(iv);
	free(c);
}

Test(tw_perf, errors_by_kind)
{
	struct csv *c = malloc(sizeof(*c));
	tw_perf("-n 50 -f tw_perf_test::nosuch");
	check_counts(c, 50, 0, "TW_ENOFUNC:50");
	free(c);
}

Test(tw_perf, duration_and_same_host)
{
	struct csv *c = malloc(sizeof(*c));
	tw_perf("-d 0.3 -W 2 -t shm --fail-every 3");
	char p[96];
	path(p, sizeof(p), "run.csv");
	read_csv(p, c);
	unsigned long long calls = num(c, 0, "calls");
	cr_expect(calls >= 3, "%llu calls in 0.3 s", calls);
	cr_expect_eq(num(c, 0, "ok") + num(c, 0, "errors"), calls);
	cr_expect_eq(num(c, 0, "errors"), calls / 3);
	cr_expect_eq(num(c, 0, "lib_failed"), calls / 3);
	cr_expect_str_eq(get(c, 0, "transport"), "shm");
	free(c);
}

Test(tw_perf, server_apart)
{
	char port_cmd[] =
		"/usr/bin/python3 -c 'import socket; s=socket.socket(); "
		"s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'";
	FILE *p = popen(port_cmd, "r");
	int port = 0;
	cr_assert(p != NULL && fscanf(p, "%d", &port) == 1);
	pclose(p);
	char rdv[64], srv[512];
	snprintf(rdv, sizeof(rdv), "tcp://127.0.0.1:%d", port);
	snprintf(srv, sizeof(srv), "'%s' --role server --rendezvous %s",
		 TW_PERF_BIN, rdv);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", srv, (char *)NULL);
		_exit(127);
	}
	char args[128];
	snprintf(args, sizeof(args),
		 "--role client --rendezvous %s -n 300 -W 3", rdv);
	tw_perf(args);
	int ws;
	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	cr_expect(WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
		  "the server's status %d", ws);
	struct csv *c = malloc(sizeof(*c));
	check_counts(c, 300, 300, "");
	free(c);
}
