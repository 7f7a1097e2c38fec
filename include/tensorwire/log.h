/* tensorwire logging: what the library tells an operator, one line per
 * event, structured as key=value. */
#ifndef TENSORWIRE_LOG_H
#define TENSORWIRE_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Levels, most severe first. The library logs only what an operator acts
 * on, never per call at the default level (TW_LOG_WARN):
 *   error  a worker cannot go on (its rendezvous failed, a loop died);
 *   warn   refused and lost: connections refused (limits, a bad secret),
 *          peers declared dead, frames over a limit, packets dropped as
 *          forged, shutdown deadlines missed;
 *   info   life: group formed, connections up and down, shutdown steps;
 *   debug  more of the same, per connection.
 * Each event has a name (event=peer_dead) and its facts (worker=w1
 * rank=1 reason="..."). Lines from one call site are rate-limited: at
 * most 10 a second; the next line after a quiet second says how many were
 * left out (suppressed=N). The counters (tw_agent_get_stats) count every
 * event, logged or not.
 */
enum tw_log_level {
	TW_LOG_OFF = 0,
	TW_LOG_ERROR = 1,
	TW_LOG_WARN = 2,
	TW_LOG_INFO = 3,
	TW_LOG_DEBUG = 4,
};

/* Where lines go: fn(arg, level, event, line) on the thread that logged
 * (often a run loop: return quickly, do not block, do not call back into
 * tensorwire). line is the whole line without a newline:
 * "tensorwire level=warn event=peer_dead worker=w1 ...". NULL = stderr,
 * the default. Process-wide; set it before tw_agent_init. */
typedef void (*tw_log_fn)(void *arg, enum tw_log_level level, const char *event,
			  const char *line);
void tw_log_set_handler(tw_log_fn fn, void *arg);

/* The process-wide level: lines above it are not formatted at all. The
 * default is TW_LOG_WARN, or the environment's TW_LOG_LEVEL (off, error,
 * warn, info, debug, or 0..4) read once, at the first line or call here;
 * tw_agent_opts.log_level sets it at init too. */
void tw_log_set_level(enum tw_log_level level);
enum tw_log_level tw_log_get_level(void);

/* The level a name means ("warn", "WARN", "2"); -1 for none. */
int tw_log_level_parse(const char *name);

#ifdef __cplusplus
}
#endif
#endif
