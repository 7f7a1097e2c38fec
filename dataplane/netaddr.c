/* Socket addresses of the TCP transport (netaddr.h). */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/err.h"
#include "dataplane/netaddr.h"

static const char scheme[] = "tcp://";

/* An IPv6 literal, with an optional %zone (an interface name or index). */
static bool parse_v6(const char *s, struct sockaddr_in6 *si)
{
	char buf[TW_NETADDR_HOST_MAX];
	size_t n = strlen(s);
	if (n >= sizeof(buf))
		return false;
	memcpy(buf, s, n + 1);
	char *zone = strchr(buf, '%');
	if (zone != NULL)
		*zone++ = '\0';
	if (inet_pton(AF_INET6, buf, &si->sin6_addr) != 1)
		return false;
	if (zone != NULL) {
		unsigned idx = if_nametoindex(zone);
		if (idx == 0) {
			char *end;
			unsigned long v = strtoul(zone, &end, 10);
			if (*zone == '\0' || *end != '\0' || v == 0 ||
			    v > UINT32_MAX)
				return false;
			idx = (unsigned)v;
		}
		si->sin6_scope_id = idx;
	}
	return true;
}

tw_status tw_netaddr_parse(const char *url, struct sockaddr_storage *ss,
			   socklen_t *len)
{
	if (url == NULL || strncmp(url, scheme, sizeof(scheme) - 1) != 0)
		return TW_EINVAL;
	const char *h = url + sizeof(scheme) - 1, *hend, *colon;
	if (*h == '[') {
		h++;
		hend = strchr(h, ']');
		if (hend == NULL || hend[1] != ':')
			return TW_EINVAL;
		colon = hend + 1;
	} else {
		colon = strrchr(h, ':');
		if (colon == NULL)
			return TW_EINVAL;
		hend = colon;
		if (memchr(h, ':', (size_t)(hend - h)) != NULL)
			return TW_EINVAL; /* IPv6 wants its brackets */
	}
	size_t hl = (size_t)(hend - h);
	char host[TW_NETADDR_HOST_MAX];
	if (hl == 0 || hl >= sizeof(host))
		return TW_EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	const char *p = colon + 1;
	if (*p == '\0')
		return TW_EINVAL;
	unsigned long port = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return TW_EINVAL;
		port = port * 10 + (unsigned long)(*p - '0');
		if (port > 65535)
			return TW_EINVAL;
	}
	memset(ss, 0, sizeof(*ss));
	if (*(hend) == ']') {
		struct sockaddr_in6 *si = (struct sockaddr_in6 *)ss;
		si->sin6_family = AF_INET6;
		si->sin6_port = htons((uint16_t)port);
		if (!parse_v6(host, si))
			return TW_EINVAL;
		*len = sizeof(*si);
		return TW_OK;
	}
	struct sockaddr_in *si = (struct sockaddr_in *)ss;
	si->sin_family = AF_INET;
	si->sin_port = htons((uint16_t)port);
	if (strcmp(host, "localhost") == 0)
		si->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (inet_pton(AF_INET, host, &si->sin_addr) != 1)
		return TW_EINVAL;
	*len = sizeof(*si);
	return TW_OK;
}

bool tw_netaddr_host(const struct sockaddr *sa, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN];
	int n;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *si = (const void *)sa;
		if (inet_ntop(AF_INET, &si->sin_addr, ip, sizeof(ip)) == NULL)
			return false;
		n = snprintf(out, len, "%s", ip);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *si = (const void *)sa;
		if (inet_ntop(AF_INET6, &si->sin6_addr, ip, sizeof(ip)) == NULL)
			return false;
		if (si->sin6_scope_id != 0)
			n = snprintf(out, len, "[%s%%%u]", ip,
				     (unsigned)si->sin6_scope_id);
		else
			n = snprintf(out, len, "[%s]", ip);
	} else {
		return false;
	}
	return n > 0 && (size_t)n < len;
}

static uint16_t port_of(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET
		       ? ntohs(((const struct sockaddr_in *)(const void *)sa)
				       ->sin_port)
		       : ntohs(((const struct sockaddr_in6 *)(const void *)sa)
				       ->sin6_port);
}

bool tw_netaddr_url(const struct sockaddr *sa, char *out, size_t len)
{
	char host[TW_NETADDR_HOST_MAX];
	if (!tw_netaddr_host(sa, host, sizeof(host)))
		return false;
	int n = snprintf(out, len, "%s%s:%u", scheme, host,
			 (unsigned)port_of(sa));
	return n > 0 && (size_t)n < len;
}

/* sa's IPv4 address in host order, from AF_INET or a v4-mapped AF_INET6. */
static bool v4_of(const struct sockaddr *sa, uint32_t *ip)
{
	if (sa->sa_family == AF_INET) {
		*ip = ntohl(((const struct sockaddr_in *)(const void *)sa)
				    ->sin_addr.s_addr);
		return true;
	}
	const struct in6_addr *a =
		&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	if (sa->sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(a))
		return false;
	uint32_t v;
	memcpy(&v, &a->s6_addr[12], 4);
	*ip = ntohl(v);
	return true;
}

bool tw_netaddr_is_loopback(const struct sockaddr *sa)
{
	uint32_t ip;
	if (v4_of(sa, &ip))
		return (ip >> 24) == 127;
	return sa->sa_family == AF_INET6 &&
	       IN6_IS_ADDR_LOOPBACK(
		       &((const struct sockaddr_in6 *)(const void *)sa)
				->sin6_addr);
}

bool tw_netaddr_is_wildcard(const struct sockaddr *sa)
{
	uint32_t ip;
	if (v4_of(sa, &ip))
		return ip == 0;
	return sa->sa_family == AF_INET6 &&
	       IN6_IS_ADDR_UNSPECIFIED(
		       &((const struct sockaddr_in6 *)(const void *)sa)
				->sin6_addr);
}

bool tw_netaddr_same_ip(const struct sockaddr *a, const struct sockaddr *b)
{
	uint32_t x = 0, y = 0;
	bool ax = v4_of(a, &x), by = v4_of(b, &y);
	if (ax || by)
		return ax && by && x == y;
	return a->sa_family == AF_INET6 && b->sa_family == AF_INET6 &&
	       memcmp(&((const struct sockaddr_in6 *)(const void *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)(const void *)b)->sin6_addr,
		      16) == 0;
}

/* host's first usable address as an interface name: IPv4 first, then a
 * global IPv6 one. */
static bool from_interface(const char *host, struct sockaddr_storage *out)
{
	struct ifaddrs *ifs = NULL;
	if (if_nametoindex(host) == 0 || getifaddrs(&ifs) != 0)
		return false;
	bool found = false;
	for (int pass = 0; pass < 2 && !found; pass++) {
		int fam = pass == 0 ? AF_INET : AF_INET6;
		for (struct ifaddrs *i = ifs; i != NULL && !found;
		     i = i->ifa_next) {
			if (i->ifa_addr == NULL ||
			    i->ifa_addr->sa_family != fam ||
			    strcmp(i->ifa_name, host) != 0)
				continue;
			if (fam == AF_INET6 &&
			    IN6_IS_ADDR_LINKLOCAL(
				    &((struct sockaddr_in6 *)(void *)i->ifa_addr)
					     ->sin6_addr))
				continue; /* needs a zone every peer lacks */
			memcpy(out, i->ifa_addr,
			       fam == AF_INET ? sizeof(struct sockaddr_in)
					      : sizeof(struct sockaddr_in6));
			found = true;
		}
	}
	freeifaddrs(ifs);
	return found;
}

/* Letters, digits, '-', '_' in dot-separated labels of 1 to 63 (an
 * interface name is one such label). */
static bool name_valid(const char *h)
{
	size_t label = 0;
	for (; *h; h++) {
		char c = *h;
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0;
}

/* ss as a URL's host into out; a link-local IPv6 address is refused: its
 * zone (an interface index) means nothing on another host. */
static tw_status host_of(const char *what, const char *host,
			 const struct sockaddr_storage *ss, char *out,
			 size_t outlen)
{
	const struct sockaddr_in6 *s6 = (const void *)ss;
	if (ss->ss_family == AF_INET6 &&
	    (IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr) || s6->sin6_scope_id != 0))
		return tw_fail(TW_EINVAL,
			       "%s '%s': a link-local IPv6 address, which "
			       "peers on other hosts cannot use (its zone is "
			       "this host's interface): give a global or "
			       "unique-local one",
			       what, host);
	if (!tw_netaddr_host((const struct sockaddr *)ss, out, outlen))
		return tw_fail(TW_EINVAL, "%s '%s': too long", what, host);
	return TW_OK;
}

tw_status tw_netaddr_resolve(const char *what, const char *host, char *out,
			     size_t outlen)
{
	if (host == NULL || host[0] == '\0')
		return tw_fail(TW_EINVAL, "%s: no host given", what);
	size_t n = strlen(host);
	if (n >= TW_NETADDR_HOST_MAX)
		return tw_fail(TW_EINVAL, "%s '%.64s...': longer than %d bytes",
			       what, host, TW_NETADDR_HOST_MAX - 1);
	/* A literal: parse it as a URL would carry it. */
	char url[sizeof(scheme) + TW_NETADDR_HOST_MAX + 8];
	bool bracketed = host[0] == '[' && host[n - 1] == ']';
	if (strchr(host, ':') != NULL && !bracketed)
		snprintf(url, sizeof(url), "%s[%s]:0", scheme, host);
	else
		snprintf(url, sizeof(url), "%s%s:0", scheme, host);
	struct sockaddr_storage ss;
	socklen_t sl;
	if (tw_netaddr_parse(url, &ss, &sl) == TW_OK)
		return host_of(what, host, &ss, out, outlen);
	const char *zone = strchr(host, '%');
	if (zone != NULL && strchr(host, ':') != NULL)
		return tw_fail(TW_EINVAL,
			       "%s '%s': no interface '%.*s' on this host",
			       what, host, (int)strcspn(zone + 1, "]"),
			       zone + 1);
	if (strchr(host, ':') != NULL || bracketed)
		return tw_fail(TW_EINVAL,
			       "%s '%s': not an IPv6 address (nor an IPv4 "
			       "address, an interface or a host name)",
			       what, host);
	/* Refused here rather than by a resolver: "1.2.3" (inet_aton's
	 * legacy forms), names no DNS label can be. */
	if (strspn(host, "0123456789.") == n)
		return tw_fail(TW_EINVAL, "%s '%s': not an IPv4 address", what,
			       host);
	if (!name_valid(host))
		return tw_fail(TW_EINVAL,
			       "%s '%s': not an address, and not an interface "
			       "or host name (letters, digits, '-', '_' and "
			       "'.', labels of 1 to 63)",
			       what, host);
	if (if_nametoindex(host) != 0) {
		/* An interface: never a name to ask a resolver about. */
		if (!from_interface(host, &ss))
			return tw_fail(TW_EINVAL,
				       "%s '%s': this interface has no IPv4 "
				       "address and no global IPv6 one",
				       what, host);
		return host_of(what, host, &ss, out, outlen);
	}
	struct addrinfo hints = {0}, *ai = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	int rc = getaddrinfo(host, NULL, &hints, &ai);
	if (rc != 0 || ai == NULL) {
		if (ai != NULL)
			freeaddrinfo(ai);
		return tw_fail(TW_EINVAL,
			       "%s '%s': not an address, an interface of this "
			       "host or a host name that resolves (%s)",
			       what, host,
			       rc == EAI_SYSTEM ? "system error"
						: gai_strerror(rc));
	}
	/* IPv4 first, as for an interface: the address peers most likely
	 * reach. */
	const struct addrinfo *pick = ai;
	for (const struct addrinfo *i = ai; i != NULL; i = i->ai_next)
		if (i->ai_family == AF_INET) {
			pick = i;
			break;
		}
	bool ok = pick->ai_family == AF_INET || pick->ai_family == AF_INET6;
	if (ok)
		memcpy(&ss, pick->ai_addr, pick->ai_addrlen);
	freeaddrinfo(ai);
	if (!ok)
		return tw_fail(TW_EINVAL, "%s '%s': resolves to no IP address",
			       what, host);
	return host_of(what, host, &ss, out, outlen);
}
