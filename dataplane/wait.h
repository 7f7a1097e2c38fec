/* Internal: the waiting primitives the run loop and the futures share: a
 * spin-loop pause and a private futex. */
#ifndef TW_DATAPLANE_WAIT_H
#define TW_DATAPLANE_WAIT_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* One step of a spin: tells the core (and a sibling hyperthread) we wait. */
static inline void tw_cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/* Sleep while *word == val, until woken or the absolute CLOCK_MONOTONIC
 * deadline (NULL: none). The kernel checks the value atomically with
 * queueing us, so a wake between our check and the sleep is not lost.
 * Returns 0 or an errno (EAGAIN, EINTR, ETIMEDOUT). */
static inline int tw_futex_wait_until(_Atomic uint32_t *word, uint32_t val,
				      const struct timespec *deadline)
{
	long r = syscall(SYS_futex, (uint32_t *)word,
			 FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, val, deadline,
			 NULL, FUTEX_BITSET_MATCH_ANY);
	return r == 0 ? 0 : errno;
}

/* Wake up to n threads sleeping on word (INT_MAX: all). */
static inline void tw_futex_wake(_Atomic uint32_t *word, int n)
{
	(void)syscall(SYS_futex, (uint32_t *)word,
		      FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n, NULL, NULL, 0);
}

#endif
