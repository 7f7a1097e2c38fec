/* Test helper: the explanation a failing call recorded (tw_errmsg), for
 * tests that check a refusal names its reason. */
#ifndef TW_TESTS_LIB_REASON_H
#define TW_TESTS_LIB_REASON_H

#include <stddef.h>
#include <string.h>

#include <tensorwire/status.h>

#include "dataplane/err.h"

/* Forget the thread's last explanation: tw_errmsg never hands out one of
 * another status, but an earlier failure of the same status would still
 * answer for a call that recorded nothing. */
static inline void reason_forget(void)
{
	tw_fail_static(TW_OK, NULL);
}

/* What the last call that returned st recorded, or NULL when it recorded
 * nothing (tw_errmsg then falls back to tw_strerror). */
static inline const char *reason(tw_status st)
{
	const char *m = tw_errmsg(st);

	return strcmp(m, tw_strerror(st)) == 0 ? NULL : m;
}

#endif
