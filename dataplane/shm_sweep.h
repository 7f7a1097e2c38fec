/* The same-host transport's socket directory: removing the socket files
 * of workers that died without removing their own. */
#ifndef TW_DATAPLANE_SHM_SWEEP_H
#define TW_DATAPLANE_SHM_SWEEP_H

#include <stdint.h>

/*
 * A worker removes its listening sockets' files when its transport ends;
 * one killed (SIGKILL, a crash, the OOM killer) leaves them in the shared
 * directory for good. Every worker that starts sweeps the directory once:
 * a file goes only if all of these hold, so nobody's live socket is ever
 * removed:
 *   - its name is one this transport makes: "tw-<pid>-<n>-<8 hex>.sock";
 *   - it is a socket (lstat: not a link), owned by this user;
 *   - it changed at least min_age_ns ago (a socket is listened on right
 *     after its file is made);
 *   - no process <pid> exists in this pid namespace (one of another pid
 *     namespace sharing the directory may have a pid we do not see: the
 *     next check keeps its sockets);
 *   - connecting to it is refused (ECONNREFUSED: nobody listens).
 * So only the files of processes that are gone are even connected to,
 * and a live worker never sees a stray connection in the common case.
 * At most max_entries directory entries are looked at (a bound on the
 * time a start spends). Returns how many files were removed; failures
 * (the directory unreadable, a file that vanished meanwhile) are not
 * errors: the sweep is only housekeeping.
 */
unsigned shm_sweep(const char *dir, uint64_t min_age_ns, unsigned max_entries);

/* The provider's: files a minute old, 4096 entries. */
#define SHM_SWEEP_AGE_NS (UINT64_C(60) * 1000000000u)
#define SHM_SWEEP_MAX 4096u

#endif
