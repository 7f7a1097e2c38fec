/* Logging (dataplane/log.c): levels, the handler, the line's shape, the
 * per-site rate limit, quoting. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/log.h"

struct got {
	int n;
	enum tw_log_level level[64];
	char event[64][32];
	char line[64][TW_LOG_LINE_MAX];
};

static void grab(void *arg, enum tw_log_level level, const char *event,
		 const char *line)
{
	struct got *g = arg;
	if (g->n >= 64)
		return;
	g->level[g->n] = level;
	snprintf(g->event[g->n], sizeof(g->event[0]), "%s", event);
	snprintf(g->line[g->n], sizeof(g->line[0]), "%s", line);
	g->n++;
}

static struct got G;

static void setup(void)
{
	memset(&G, 0, sizeof(G));
	tw_log_set_handler(grab, &G);
	tw_log_set_level(TW_LOG_WARN);
}

static void teardown(void)
{
	tw_log_set_handler(NULL, NULL);
}

TestSuite(log, .init = setup, .fini = teardown);

static void say(enum tw_log_level l, int i)
{
	switch (l) { /* a call site per level */
	case TW_LOG_ERROR:
		TW_LOG(TW_LOG_ERROR, "e", "i=%d", i);
		break;
	case TW_LOG_WARN:
		TW_LOG(TW_LOG_WARN, "w", "i=%d", i);
		break;
	case TW_LOG_INFO:
		TW_LOG(TW_LOG_INFO, "i", "i=%d", i);
		break;
	default:
		TW_LOG(TW_LOG_DEBUG, "d", "i=%d", i);
		break;
	}
}

Test(log, levels_filter_and_lines_have_their_shape)
{
	for (int lv = TW_LOG_OFF; lv <= TW_LOG_DEBUG; lv++) {
		memset(&G, 0, sizeof(G));
		tw_log_set_level((enum tw_log_level)lv);
		cr_assert_eq(tw_log_get_level(), lv);
		for (int k = TW_LOG_ERROR; k <= TW_LOG_DEBUG; k++)
			say((enum tw_log_level)k, k);
		cr_assert_eq(G.n, lv, "level %d let %d lines through", lv, G.n);
	}
	cr_assert_str_eq(G.line[0], "tensorwire level=error event=e i=1");
	cr_assert_str_eq(G.line[1], "tensorwire level=warn event=w i=2");
	cr_assert_str_eq(G.line[3], "tensorwire level=debug event=d i=4");
	cr_assert_eq(G.level[2], TW_LOG_INFO);
	cr_assert_str_eq(G.event[2], "i");
}

static void burst(int n)
{
	for (int i = 0; i < n; i++)
		TW_LOG(TW_LOG_WARN, "flood", "i=%d", i);
}

Test(log, a_site_logs_ten_lines_a_second_then_says_what_it_left_out)
{
	burst(1000);
	cr_assert_eq(G.n, TW_LOG_BURST, "%d lines", G.n);
	cr_assert_str_eq(G.line[9], "tensorwire level=warn event=flood i=9");
	/* Another site is not held back by this one. */
	TW_LOG(TW_LOG_WARN, "other", "x=1");
	cr_assert_eq(G.n, TW_LOG_BURST + 1);
	struct timespec ts = {1, 100 * 1000 * 1000};
	nanosleep(&ts, NULL);
	burst(3);
	cr_assert_eq(G.n, TW_LOG_BURST + 4);
	cr_assert_str_eq(
		G.line[TW_LOG_BURST + 1],
		"tensorwire level=warn event=flood i=0 suppressed=990");
	cr_assert_str_eq(G.line[TW_LOG_BURST + 2],
			 "tensorwire level=warn event=flood i=1");
}

Test(log, long_lines_are_cut_not_overrun)
{
	char big[2000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	TW_LOG(TW_LOG_WARN, "big", "v=%s", big);
	cr_assert_eq(G.n, 1);
	cr_assert_eq(strlen(G.line[0]), TW_LOG_LINE_MAX - 1);
}

Test(log, values_are_quoted_when_they_must_be)
{
	char q[64];
	cr_assert_str_eq(tw_log_q(q, sizeof(q), "w1"), "w1");
	cr_assert_str_eq(tw_log_q(q, sizeof(q), "10.0.0.2:5"), "10.0.0.2:5");
	cr_assert_str_eq(tw_log_q(q, sizeof(q), NULL), "-");
	cr_assert_str_eq(tw_log_q(q, sizeof(q), ""), "\"\"");
	cr_assert_str_eq(tw_log_q(q, sizeof(q), "a b"), "\"a b\"");
	cr_assert_str_eq(tw_log_q(q, sizeof(q), "say \"hi\"\n"),
			 "\"say \\\"hi\\\" \"");
	char small[8];
	cr_assert_str_eq(tw_log_q(small, sizeof(small), "a long value"),
			 "\"a lon\"");
	cr_assert_eq(strlen(tw_log_q(small, sizeof(small), "\"\"\"\"\"\"")) <
			     sizeof(small),
		     1);
}

Test(log, level_names)
{
	cr_assert_eq(tw_log_level_parse("off"), TW_LOG_OFF);
	cr_assert_eq(tw_log_level_parse("WARN"), TW_LOG_WARN);
	cr_assert_eq(tw_log_level_parse("warning"), TW_LOG_WARN);
	cr_assert_eq(tw_log_level_parse("Debug"), TW_LOG_DEBUG);
	cr_assert_eq(tw_log_level_parse("3"), TW_LOG_INFO);
	cr_assert_eq(tw_log_level_parse("5"), -1);
	cr_assert_eq(tw_log_level_parse("loud"), -1);
	cr_assert_eq(tw_log_level_parse(NULL), -1);
}

/* The environment sets the level at the first use, unless it was set. */
Test(log, the_environment_sets_the_first_level, .init = NULL, .fini = NULL)
{
	setenv("TW_LOG_LEVEL", "debug", 1);
	atomic_store(&tw_log_level_now, -1);
	cr_assert_eq(tw_log_get_level(), TW_LOG_DEBUG);
	setenv("TW_LOG_LEVEL", "nonsense", 1);
	atomic_store(&tw_log_level_now, -1);
	cr_assert_eq(tw_log_get_level(), TW_LOG_WARN);
	unsetenv("TW_LOG_LEVEL");
}

/* Without a handler, a line goes to stderr whole, with its newline. */
Test(log, stderr_gets_one_line, .init = NULL, .fini = NULL)
{
	tw_log_set_level(TW_LOG_WARN);
	tw_log_set_handler(NULL, NULL);
	char path[] = "/tmp/tw-log-XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	fflush(stderr);
	cr_assert_not_null(freopen(path, "w", stderr));
	TW_LOG(TW_LOG_WARN, "to_stderr", "k=%s", "v");
	fflush(stderr);
	FILE *f = fopen(path, "r");
	char buf[256] = "";
	cr_assert_not_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	unlink(path);
	cr_assert_str_eq(buf, "tensorwire level=warn event=to_stderr k=v\n");
}
