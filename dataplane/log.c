/* Logging (log.h, include/tensorwire/log.h): a process-wide level and
 * handler, lines formatted on the stack, rate-limited per call site. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dataplane/log.h"

_Atomic int tw_log_level_now = -1;

/* The handler and its argument change together: a pair behind one
 * pointer would need freeing; two atomics are enough, as the handler is
 * set before anything logs (the header says so). */
static _Atomic(tw_log_fn) log_fn;
static void *_Atomic log_arg;

int tw_log_level_parse(const char *name)
{
	static const char *const names[] = {"off", "error", "warn", "info",
					    "debug"};
	if (name == NULL)
		return -1;
	for (int i = 0; i < 5; i++)
		if (strcasecmp(name, names[i]) == 0)
			return i;
	if (strcasecmp(name, "warning") == 0)
		return TW_LOG_WARN;
	if (name[0] >= '0' && name[0] <= '4' && name[1] == '\0')
		return name[0] - '0';
	return -1;
}

int tw_log_level_slow(void)
{
	int l = tw_log_level_parse(getenv("TW_LOG_LEVEL"));
	if (l < 0)
		l = TW_LOG_WARN;
	int want = -1;
	/* A level set meanwhile wins over the environment. */
	atomic_compare_exchange_strong(&tw_log_level_now, &want, l);
	return atomic_load(&tw_log_level_now);
}

void tw_log_set_level(enum tw_log_level level)
{
	int l = (int)level;
	if (l < TW_LOG_OFF)
		l = TW_LOG_OFF;
	if (l > TW_LOG_DEBUG)
		l = TW_LOG_DEBUG;
	atomic_store(&tw_log_level_now, l);
}

enum tw_log_level tw_log_get_level(void)
{
	return (enum tw_log_level)tw_log_level_get();
}

void tw_log_set_handler(tw_log_fn fn, void *arg)
{
	atomic_store(&log_arg, arg);
	atomic_store(&log_fn, fn);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Whether site may log now; *dropped gets what it left out before. */
static int site_take(struct tw_log_site *s, uint32_t *dropped)
{
	uint64_t now = mono_ns();
	uint64_t w = atomic_load_explicit(&s->window_ns, memory_order_relaxed);
	if (now - w >= 1000000000u &&
	    atomic_compare_exchange_strong(&s->window_ns, &w, now))
		atomic_store_explicit(&s->n, 0, memory_order_relaxed);
	if (atomic_fetch_add_explicit(&s->n, 1, memory_order_relaxed) >=
	    TW_LOG_BURST) {
		atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
		return 0;
	}
	*dropped = atomic_exchange_explicit(&s->dropped, 0,
					    memory_order_relaxed);
	return 1;
}

static const char *const level_names[] = {"off", "error", "warn", "info",
					  "debug"};

void tw_log_emit(struct tw_log_site *site, enum tw_log_level level,
		 const char *event, const char *fmt, ...)
{
	uint32_t dropped = 0;
	if (site != NULL && !site_take(site, &dropped))
		return;
	char line[TW_LOG_LINE_MAX];
	int l = (int)level;
	int n = snprintf(line, sizeof(line), "tensorwire level=%s event=%s ",
			 level_names[l < 0   ? 0
				     : l > 4 ? 4
					     : l],
			 event);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	size_t len = m < 0 ? (size_t)n : strlen(line);
	if (dropped != 0 && len + 24 < sizeof(line))
		snprintf(line + len, sizeof(line) - len, " suppressed=%u",
			 dropped);
	tw_log_fn fn = atomic_load(&log_fn);
	if (fn != NULL) {
		fn(atomic_load(&log_arg), level, event, line);
		return;
	}
	/* One write: lines of threads do not interleave. */
	len = strlen(line);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len] = '\n';
	fwrite(line, 1, len + 1, stderr);
}

static int safe_char(unsigned char c)
{
	return isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':' ||
	       c == '/' || c == '[' || c == ']' || c == '@' || c == '+' ||
	       c == ',';
}

const char *tw_log_q(char *buf, size_t n, const char *s)
{
	if (n == 0)
		return "";
	if (s == NULL)
		s = "-";
	size_t i = 0;
	const unsigned char *p = (const unsigned char *)s;
	int bare = *p != '\0';
	for (const unsigned char *q = p; *q && bare; q++)
		bare = safe_char(*q);
	if (bare) {
		snprintf(buf, n, "%s", s);
		return buf;
	}
	if (n < 3) {
		buf[0] = '\0';
		return buf;
	}
	buf[i++] = '"';
	/* Room for the closing quote and the NUL after each character. */
	for (; *p && i + 2 < n; p++) {
		if (*p == '"' || *p == '\\') {
			if (i + 3 >= n)
				break;
			buf[i++] = '\\';
			buf[i++] = (char)*p;
		} else if (*p < 0x20 || *p == 0x7f) {
			buf[i++] = ' ';
		} else {
			buf[i++] = (char)*p;
		}
	}
	buf[i++] = '"';
	buf[i] = '\0';
	return buf;
}
