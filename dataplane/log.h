/* Internal: logging an event (include/tensorwire/log.h). A call site is
 *
 *   TW_LOG(TW_LOG_WARN, "peer_dead", "worker=%s rank=%u reason=%s", name,
 *          rank, tw_log_q(q, sizeof(q), why));
 *
 * It costs one relaxed load and a branch when the level is off; above it
 * the line is formatted on the stack (TW_LOG_LINE_MAX) and rate-limited
 * per call site. Never on a per-call path at TW_LOG_WARN or below. */
#ifndef TW_DATAPLANE_LOG_H
#define TW_DATAPLANE_LOG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <tensorwire/log.h>

#define TW_LOG_LINE_MAX 512

/* A call site's rate limit: a window of 1 s, at most TW_LOG_BURST lines. */
#define TW_LOG_BURST 10
struct tw_log_site {
	_Atomic uint64_t window_ns; /* the current window's start */
	_Atomic uint32_t n;         /* lines in it */
	_Atomic uint32_t dropped;   /* left out since the last line */
};

extern _Atomic int tw_log_level_now; /* -1 until first read */

int tw_log_level_slow(void);

static inline int tw_log_level_get(void)
{
	int l = atomic_load_explicit(&tw_log_level_now, memory_order_relaxed);
	return l >= 0 ? l : tw_log_level_slow();
}

void tw_log_emit(struct tw_log_site *site, enum tw_log_level level,
		 const char *event, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define TW_LOG(level, event, ...)                                              \
	do {                                                                   \
		if ((int)(level) <= tw_log_level_get()) {                      \
			static struct tw_log_site tw_log_site_;                \
			tw_log_emit(&tw_log_site_, (level), (event),           \
				    __VA_ARGS__);                              \
		}                                                              \
	} while (0)

/* s as a value: bare when it is one word of safe characters, else in
 * double quotes with '"', '\' and control bytes escaped; cut to fit buf
 * (n bytes). NULL is "-". Returns buf. */
const char *tw_log_q(char *buf, size_t n, const char *s);

#endif
