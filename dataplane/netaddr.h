/* Socket addresses of the TCP transport: "tcp://HOST:PORT" URLs, where
 * HOST is numeric (IPv4, or IPv6 in brackets) or "localhost", and the
 * hosts a user may name to serve on (a literal address, an interface, a
 * host name). Nothing here resolves a name but tw_netaddr_resolve, which
 * may block: call it at set-up, never on a run loop. */
#ifndef TW_DATAPLANE_NETADDR_H
#define TW_DATAPLANE_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <tensorwire/status.h>

/* The longest numeric host in a URL: "[" IPv6 "%" zone "]" + NUL. */
#define TW_NETADDR_HOST_MAX 64

/* "tcp://HOST:PORT" into *ss (AF_INET or AF_INET6) and *len. HOST: an
 * IPv4 address, an IPv6 address in brackets (with an optional %zone),
 * or "localhost" (127.0.0.1). TW_EINVAL for anything else, host names
 * included: a run loop does not wait for a resolver. */
tw_status tw_netaddr_parse(const char *url, struct sockaddr_storage *ss,
			   socklen_t *len);

/* "tcp://1.2.3.4:5" or "tcp://[::1]:5" for sa into out; false when it
 * does not fit or sa is neither family. */
bool tw_netaddr_url(const struct sockaddr *sa, char *out, size_t len);

/* The host part alone, as a URL carries it ("1.2.3.4", "[::1]"). */
bool tw_netaddr_host(const struct sockaddr *sa, char *out, size_t len);

/* Whether only this host can reach sa (127.0.0.0/8, ::1, or an IPv4
 * loopback mapped into IPv6). */
bool tw_netaddr_is_loopback(const struct sockaddr *sa);

/* Whether sa is every interface (0.0.0.0 or ::). */
bool tw_netaddr_is_wildcard(const struct sockaddr *sa);

/* Whether a and b are the same address (ports aside), an IPv4 address
 * and its IPv6-mapped form included. */
bool tw_netaddr_same_ip(const struct sockaddr *a, const struct sockaddr *b);

/*
 * A host to serve on, as a user names it, into the numeric form a URL
 * carries (out, TW_NETADDR_HOST_MAX bytes): an IPv4 or IPv6 address
 * (brackets optional), "localhost", the name of one of this host's
 * interfaces (its first IPv4 address, else its first global IPv6 one),
 * or a host name (its first address, by getaddrinfo: may block; never
 * asked about an interface's name). A link-local IPv6 address is
 * refused: its zone is this host's. what names the option in the
 * message of a refusal (TW_EINVAL), which also names host.
 */
tw_status tw_netaddr_resolve(const char *what, const char *host, char *out,
			     size_t outlen);

#endif
