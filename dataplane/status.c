/* Names and descriptions of tw_status codes, and the thread's explanation
 * of its last failure (tw_errmsg). */
#include <tensorwire/status.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "dataplane/err.h"

struct status_text {
	const char *name;
	const char *desc;
};

/* Indexed by code. Codes are wire values and only ever appended, so a
 * new code without an entry fails the assert below instead of printing
 * a neighbour's text. */
static const struct status_text status_text[] = {
	[TW_OK] = {"TW_OK", "success"},
	[TW_EINVAL] = {"TW_EINVAL", "invalid argument"},
	[TW_ENOMEM] = {"TW_ENOMEM", "out of memory"},
	[TW_ENOSPC] = {"TW_ENOSPC", "no space left in a bounded resource"},
	[TW_EOVERFLOW] = {"TW_EOVERFLOW", "size overflows or exceeds a limit"},
	[TW_EPROTO] = {"TW_EPROTO",
		       "protocol error: malformed or unexpected data"},
	[TW_EVERSION] = {"TW_EVERSION", "unsupported wire protocol version"},
	[TW_ETIMEDOUT] = {"TW_ETIMEDOUT", "deadline passed"},
	[TW_EUNREACHABLE] = {"TW_EUNREACHABLE", "peer dead or unreachable"},
	[TW_ESHUTDOWN] = {"TW_ESHUTDOWN", "agent shutting down"},
	[TW_ENOFUNC] = {"TW_ENOFUNC", "no function by that name"},
	[TW_EBADARGS] = {"TW_EBADARGS", "arguments do not match the function"},
	[TW_ETYPE] = {"TW_ETYPE", "type error"},
	[TW_EVALUE] = {"TW_EVALUE", "value error"},
	[TW_ERUNTIME] = {"TW_ERUNTIME", "runtime error"},
	[TW_EAUTH] = {"TW_EAUTH", "authentication or authorisation failure"},
	[TW_EBUSY] = {"TW_EBUSY", "resource still in use"},
	[TW_ENOTSUP] = {"TW_ENOTSUP", "operation not supported"},
	[TW_EIO] = {"TW_EIO", "I/O error"},
	[TW_ENOENT] = {"TW_ENOENT", "no such object"},
};

_Static_assert(sizeof(status_text) / sizeof(status_text[0]) == TW_STATUS_COUNT_,
	       "every tw_status needs a name and a description");

/* The entry for s, or NULL for a code we do not know (a newer peer's, or
 * garbage): the cast makes negative values out of range too. */
static const struct status_text *status_lookup(tw_status s)
{
	unsigned u = (unsigned)s;

	if (u >= sizeof(status_text) / sizeof(status_text[0]) ||
	    status_text[u].name == NULL)
		return NULL;
	return &status_text[u];
}

const char *tw_status_name(tw_status s)
{
	const struct status_text *t = status_lookup(s);

	return t != NULL ? t->name : "TW_E?";
}

const char *tw_strerror(tw_status s)
{
	const struct status_text *t = status_lookup(s);

	return t != NULL ? t->desc : "unknown status";
}

/* ---- explanations (status.h, dataplane/err.h) ---- */

/* The thread's last explanation: msg points at buf or at a static string
 * (tw_fail_static, which costs a store: for hot-path refusals). */
static _Thread_local struct {
	tw_status st;
	const char *msg;
	char buf[TW_ERRMSG_MAX];
} err_tls;

const char *tw_errmsg(tw_status st)
{
	if (st != TW_OK && err_tls.st == st && err_tls.msg != NULL &&
	    err_tls.msg[0] != '\0')
		return err_tls.msg;
	return tw_strerror(st);
}

tw_status tw_fail_static(tw_status st, const char *msg)
{
	err_tls.st = st;
	err_tls.msg = msg;
	return st;
}

tw_status tw_failv(tw_status st, const char *fmt, va_list ap)
{
	/* fmt's arguments may point into buf (a message wrapped around the
	 * last one): format aside, then copy. */
	char tmp[TW_ERRMSG_MAX];
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	if (n < 0)
		tmp[0] = '\0';
	memcpy(err_tls.buf, tmp, sizeof(tmp));
	err_tls.st = st;
	err_tls.msg = err_tls.buf;
	return st;
}

tw_status tw_fail(tw_status st, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tw_failv(st, fmt, ap);
	va_end(ap);
	return st;
}

tw_status tw_fail_wrap(tw_status st, tw_status inner, const char *fmt, ...)
{
	char pre[TW_ERRMSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	if (n < 0)
		pre[0] = '\0';
	return tw_fail(st, "%s: %s", pre, tw_errmsg(inner));
}

const char *tw_err_last(void)
{
	return err_tls.msg != NULL ? err_tls.msg : "";
}

void tw_err_forget(void)
{
	err_tls.st = TW_OK;
	err_tls.msg = NULL;
}
