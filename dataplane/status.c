/* Names and descriptions of tw_status codes. */
#include <tensorwire/status.h>

#include <stddef.h>

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
	[TW_EPROTO] = {"TW_EPROTO", "protocol error: malformed or unexpected data"},
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

_Static_assert(sizeof(status_text) / sizeof(status_text[0]) ==
		       TW_STATUS_COUNT_,
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
