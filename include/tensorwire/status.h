/* tensorwire status codes: the one error vocabulary of the library. */
#ifndef TENSORWIRE_STATUS_H
#define TENSORWIRE_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Every fallible function returns a tw_status; TW_OK is 0 and every failure
 * is positive. The same codes are the "kind" of a remote error (tw_error), so
 * a failure keeps its meaning when it crosses the wire. Values are part of
 * the wire format (docs/wire.md): never renumber, only append.
 */
typedef enum tw_status {
	TW_OK = 0,
	TW_EINVAL = 1,       /* caller passed an invalid argument */
	TW_ENOMEM = 2,       /* allocation failed */
	TW_ENOSPC = 3,       /* bounded resource full (pool, ring, queue) */
	TW_EOVERFLOW = 4,    /* size arithmetic would overflow or exceed a limit */
	TW_EPROTO = 5,       /* malformed or unexpected data from the network */
	TW_EVERSION = 6,     /* peer speaks a wire version we do not */
	TW_ETIMEDOUT = 7,    /* deadline passed */
	TW_EUNREACHABLE = 8, /* peer dead or not reachable */
	TW_ESHUTDOWN = 9,    /* agent shutting down */
	TW_ENOFUNC = 10,     /* no function by that name */
	TW_EBADARGS = 11,    /* arguments do not bind to the function */
	TW_ETYPE = 12,       /* type error (remote TypeError) */
	TW_EVALUE = 13,      /* value error (remote ValueError) */
	TW_ERUNTIME = 14,    /* runtime error (remote RuntimeError) */
	TW_EAUTH = 15,       /* authentication / authorisation failure */
	TW_EBUSY = 16,       /* resource still in use */
	TW_ENOTSUP = 17,     /* operation not supported */
	TW_EIO = 18,         /* operating-system I/O error */
	TW_ENOENT = 19,      /* no such object (worker, key, ...) */
	TW_STATUS_COUNT_     /* not a status: number of codes */
} tw_status;

/* Short stable name ("TW_EPROTO") of a status; "TW_E?" when unknown. */
const char *tw_status_name(tw_status s);

/* Human-readable description of a status; never NULL. */
const char *tw_strerror(tw_status s);

#ifdef __cplusplus
}
#endif
#endif
