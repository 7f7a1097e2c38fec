/* The io_uring transport's provider: its options checked (congestion
 * control names tried on a socket, hosts resolved), one transport per
 * loop, each listening on a port of listen_host (listen_port + its index,
 * or one the kernel picks), announced as advertise_host when set. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/err.h"
#include "dataplane/netaddr.h"
#include "dataplane/uring.h"

struct uring_env {
	struct tw_uring_opts o;         /* strings below are our copies */
	char host[TW_NETADDR_HOST_MAX]; /* listen_host, numeric */
	char adv[TW_NETADDR_HOST_MAX];  /* advertise_host, numeric, or "" */
	char cc_local[TW_URING_CC_NAME_MAX], cc_remote[TW_URING_CC_NAME_MAX];
	/* The worker's limits, counted across its loops. */
	struct tw_uring_shared *sh;
};

/* A congestion control name the kernel will give this process's
 * sockets, tried on a throwaway one (NULL and "" are defaults). */
static tw_status check_cc(const char *what, const char *cc)
{
	if (cc == NULL || cc[0] == '\0')
		return TW_OK;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return TW_OK; /* nothing to learn here; the transport counts */
	int r = setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc,
			   (socklen_t)strlen(cc));
	int e = errno;
	close(fd);
	if (r != 0)
		return tw_fail(
			TW_EINVAL,
			"%s '%s': %s (see net.ipv4.tcp_allowed_congestion_control"
			" and tcp_available_congestion_control)",
			what, cc,
			e == EPERM ? "not allowed for this process"
			: e == ENOENT
				? "no such congestion control in this kernel"
				: strerror(e));
	return TW_OK;
}

/* Whether host (numeric, as tw_netaddr_resolve gives it) is every
 * interface: 0.0.0.0, [::], or 0.0.0.0 mapped into IPv6. */
static bool advertised_wildcard(const char *host)
{
	char url[TW_NETADDR_HOST_MAX + 16];
	struct sockaddr_storage ss;
	socklen_t sl;
	snprintf(url, sizeof(url), "tcp://%s:0", host);
	return tw_netaddr_parse(url, &ss, &sl) == TW_OK &&
	       tw_netaddr_is_wildcard((struct sockaddr *)&ss);
}

static tw_status u_check(const void *opts, uint32_t nloops)
{
	const struct tw_uring_opts *in = opts;
	tw_status st = tw_uring_opts_check(in);
	if (st != TW_OK)
		return st;
	struct tw_uring_opts o;
	tw_uring_opts_get(in, &o);
	char host[TW_NETADDR_HOST_MAX];
	st = tw_netaddr_resolve("io_uring: listen_host", o.listen_host, host,
				sizeof(host));
	if (st != TW_OK)
		return st;
	if (o.advertise_host != NULL) {
		st = tw_netaddr_resolve("io_uring: advertise_host",
					o.advertise_host, host, sizeof(host));
		if (st != TW_OK)
			return st;
		if (advertised_wildcard(host))
			return tw_fail(TW_EINVAL,
				       "io_uring: advertise_host '%.64s' is "
				       "every interface, no address a peer "
				       "can connect to",
				       o.advertise_host);
	}
	if (o.listen_port != 0 && (uint32_t)o.listen_port + nloops > 65536u)
		return tw_fail(TW_EINVAL,
			       "io_uring: listen_port %u with %u run loops "
			       "needs ports %u..%u, past 65535",
			       (unsigned)o.listen_port, nloops,
			       (unsigned)o.listen_port,
			       (unsigned)o.listen_port + nloops - 1);
	st = check_cc("tcp_congestion_local (cc_local)", o.cc_local);
	if (st == TW_OK)
		st = check_cc("tcp_congestion (cc_remote)", o.cc_remote);
	return st;
}

static tw_status u_start(const void *opts, const struct tw_transport_group *g,
			 void **env)
{
	(void)g;
	const struct tw_uring_opts *in = opts;
	struct uring_env *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return tw_fail(TW_ENOMEM,
			       "io_uring: no memory for its options");
	e->sh = tw_uring_shared_create();
	if (e->sh == NULL) {
		free(e);
		return tw_fail(TW_ENOMEM,
			       "io_uring: no memory for its shared limits");
	}
	tw_uring_opts_get(in, &e->o);
	/* The names u_check resolved, resolved for use (its answer is not
	 * kept; both run in tw_agent_init, before anything serves). */
	tw_status st = tw_netaddr_resolve("io_uring: listen_host",
					  e->o.listen_host, e->host,
					  sizeof(e->host));
	if (st == TW_OK && e->o.advertise_host != NULL)
		st = tw_netaddr_resolve("io_uring: advertise_host",
					e->o.advertise_host, e->adv,
					sizeof(e->adv));
	if (st == TW_OK && e->adv[0] != '\0' && advertised_wildcard(e->adv))
		st = tw_fail(TW_EINVAL,
			     "io_uring: advertise_host '%.64s' is every "
			     "interface, no address a peer can connect to",
			     e->o.advertise_host);
	if (st != TW_OK) {
		tw_uring_shared_destroy(e->sh);
		free(e);
		return st;
	}
	e->o.advertise_host = NULL;
	if (e->o.cc_local != NULL) {
		snprintf(e->cc_local, sizeof(e->cc_local), "%s", e->o.cc_local);
		e->o.cc_local = e->cc_local;
	}
	if (e->o.cc_remote != NULL) {
		snprintf(e->cc_remote, sizeof(e->cc_remote), "%s",
			 e->o.cc_remote);
		e->o.cc_remote = e->cc_remote;
	}
	e->o.listen_host = e->host;
	*env = e;
	return TW_OK;
}

static tw_status u_create(void *env, uint32_t idx, tw_loop *loop,
			  const struct tw_transport_cbs *cbs,
			  tw_transport **out)
{
	(void)idx;
	struct uring_env *e = env;
	return tw_uring_transport_create_in(loop, &e->o, cbs, e->sh, out);
}

static tw_status u_listen_addr(void *env, uint32_t idx, char *url, size_t len)
{
	struct uring_env *e = env;
	snprintf(url, len, "tcp://%s:%u", e->host,
		 e->o.listen_port != 0 ? e->o.listen_port + idx : 0u);
	return TW_OK;
}

/* The address the others connect to: bound's port on advertise_host. */
static tw_status u_public_addr(void *env, uint32_t idx, const char *bound,
			       char *out, size_t len)
{
	(void)idx;
	struct uring_env *e = env;
	if (e->adv[0] == '\0') {
		int n = snprintf(out, len, "%s", bound);
		return n >= 0 && (size_t)n < len ? TW_OK : TW_EOVERFLOW;
	}
	const char *colon = strrchr(bound, ':');
	if (colon == NULL)
		return tw_fail(TW_EINVAL,
			       "io_uring: bound address '%.80s' has "
			       "no port",
			       bound);
	int n = snprintf(out, len, "tcp://%s%s", e->adv, colon);
	return n >= 0 && (size_t)n < len ? TW_OK : TW_EOVERFLOW;
}

static void u_stop(void *env)
{
	struct uring_env *e = env;
	if (e != NULL)
		tw_uring_shared_destroy(e->sh);
	free(e);
}

const struct tw_transport_provider tw_uring_provider = {
	.name = TW_TRANSPORT_URING,
	.check = u_check,
	.start = u_start,
	.create = u_create,
	.listen_addr = u_listen_addr,
	.public_addr = u_public_addr,
	/* Its hot path is plain send(2), poll(2) and recv(2) on the socket;
	 * what needs the ring goes through tw_loop_sqe. */
	.lendable = true,
	.stop = u_stop,
};
