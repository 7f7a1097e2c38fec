/* Internal: the one clock reader. CLOCK_MONOTONIC in nanoseconds, for
 * deadlines and intervals everywhere in the library; a run loop reads it
 * through its tw_clock_fn (loop.h) so tests can replace it. */
#ifndef TW_DATAPLANE_CLOCK_H
#define TW_DATAPLANE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t tw_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
