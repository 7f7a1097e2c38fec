/* Internal: recording why a call failed (tw_errmsg, status.h). Every
 * layer uses these; a public function's failure path ends in one of them. */
#ifndef TW_DATAPLANE_ERR_H
#define TW_DATAPLANE_ERR_H

#include <stdarg.h>

#include <tensorwire/status.h>

/* TW_ERRMSG_MAX (status.h): longest explanation kept, NUL included.
 * Longer ones are cut. */

/* Record the explanation of st for the calling thread and return st, so
 * that a failure path reads `return tw_fail(TW_EINVAL, "...", ...);`. */
tw_status tw_fail(tw_status st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
tw_status tw_failv(tw_status st, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/* The same with a string of static storage, kept by pointer: no copy, no
 * formatting. For refusals on the hot path (a full ring, a bad header).
 * msg NULL records that st has no explanation beyond tw_strerror: for a
 * failure path with nothing to add, so that tw_errmsg cannot return an
 * older reason that happens to have the same status. */
tw_status tw_fail_static(tw_status st, const char *msg);

/* Record st with the explanation of an inner failure (inner, as the
 * callee returned it) behind a prefix: "DPDK port net_memif0: <inner's>". */
tw_status tw_fail_wrap(tw_status st, tw_status inner, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The thread's last recorded explanation, whatever its status ("" when
 * none): for code that passes a reason on, such as a binding failure
 * turned into a remote error's message. */
const char *tw_err_last(void);

/* Forget the thread's last failure (two stores, no formatting): before
 * running code that may fail without recording why (a user's handler),
 * whose failure is then explained with tw_errmsg, so that an older
 * reason of the same status cannot stand in for the missing one. */
void tw_err_forget(void);

#endif
