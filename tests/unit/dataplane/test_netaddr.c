/* The TCP transport's addresses (dataplane/netaddr.c) and the per-host
 * key of a peer (tw_conn_set_peer_sa). No test here asks a resolver. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataplane/netaddr.h"
#include "dataplane/transport.h"

static const struct sockaddr *SA(const struct sockaddr_storage *ss)
{
	return (const struct sockaddr *)ss;
}

static void parse_ok(const char *url, int family, const char *back)
{
	struct sockaddr_storage ss;
	socklen_t sl = 0;
	cr_assert_eq(tw_netaddr_parse(url, &ss, &sl), TW_OK, "%s", url);
	cr_assert_eq(ss.ss_family, family, "%s", url);
	cr_assert_eq(sl, family == AF_INET ? sizeof(struct sockaddr_in)
					   : sizeof(struct sockaddr_in6));
	char out[96];
	cr_assert(tw_netaddr_url(SA(&ss), out, sizeof(out)));
	cr_assert_str_eq(out, back);
}

Test(netaddr, urls_round_trip)
{
	parse_ok("tcp://10.1.2.3:80", AF_INET, "tcp://10.1.2.3:80");
	parse_ok("tcp://localhost:7", AF_INET, "tcp://127.0.0.1:7");
	parse_ok("tcp://[::1]:65535", AF_INET6, "tcp://[::1]:65535");
	parse_ok("tcp://[fd00::2]:0", AF_INET6, "tcp://[fd00::2]:0");
	parse_ok("tcp://[::ffff:10.0.0.1]:9", AF_INET6,
		 "tcp://[::ffff:10.0.0.1]:9");
	parse_ok("tcp://[fe80::1%lo]:5", AF_INET6, "tcp://[fe80::1%1]:5");
	parse_ok("tcp://[fe80::1%3]:5", AF_INET6, "tcp://[fe80::1%3]:5");
}

Test(netaddr, bad_urls_refused)
{
	static const char *const bad[] = {
		NULL,
		"",
		"udp://10.0.0.1:5",
		"tcp://",
		"tcp://10.0.0.1",
		"tcp://10.0.0.1:",
		"tcp://10.0.0.1:65536",
		"tcp://10.0.0.1:5x",
		"tcp://10.0.0.1:-1",
		"tcp://:5",
		"tcp://::1:5", /* IPv6 needs brackets */
		"tcp://[::1]5",
		"tcp://[::1:5",
		"tcp://[]:5",
		"tcp://[10.0.0.1]:5",
		"tcp://[fe80::1%]:5",
		"tcp://[fe80::1%tw-no-such-if0]:5",
		"tcp://1.2.3:5",
		"tcp://example.com:5", /* names are not resolved here */
		"tcp://[0123456789012345678901234567890123456789012345678901234567890123]:1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t sl;
		cr_assert_eq(tw_netaddr_parse(bad[i], &ss, &sl), TW_EINVAL,
			     "'%s'", bad[i] ? bad[i] : "(null)");
	}
}

static struct sockaddr_storage addr(const char *url)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	cr_assert_eq(tw_netaddr_parse(url, &ss, &sl), TW_OK, "%s", url);
	return ss;
}

Test(netaddr, classes)
{
	static const char *const lo[] = {"tcp://127.0.0.1:1",
					 "tcp://127.9.9.9:1", "tcp://[::1]:1",
					 "tcp://[::ffff:127.0.0.5]:1"};
	for (size_t i = 0; i < sizeof(lo) / sizeof(lo[0]); i++) {
		struct sockaddr_storage ss = addr(lo[i]);
		cr_assert(tw_netaddr_is_loopback(SA(&ss)), "%s", lo[i]);
		cr_assert_not(tw_netaddr_is_wildcard(SA(&ss)), "%s", lo[i]);
	}
	static const char *const wild[] = {"tcp://0.0.0.0:1", "tcp://[::]:1",
					   "tcp://[::ffff:0.0.0.0]:1"};
	for (size_t i = 0; i < sizeof(wild) / sizeof(wild[0]); i++) {
		struct sockaddr_storage ss = addr(wild[i]);
		cr_assert(tw_netaddr_is_wildcard(SA(&ss)), "%s", wild[i]);
		cr_assert_not(tw_netaddr_is_loopback(SA(&ss)), "%s", wild[i]);
	}
	static const char *const other[] = {
		"tcp://10.0.0.1:1", "tcp://[fd00::1]:1", "tcp://128.0.0.1:1"};
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		struct sockaddr_storage ss = addr(other[i]);
		cr_assert_not(tw_netaddr_is_wildcard(SA(&ss)), "%s", other[i]);
		cr_assert_not(tw_netaddr_is_loopback(SA(&ss)), "%s", other[i]);
	}
	struct sockaddr_storage a = addr("tcp://10.0.0.1:1"),
				b = addr("tcp://[::ffff:10.0.0.1]:2"),
				c = addr("tcp://10.0.0.2:1"),
				d = addr("tcp://[fd00::1]:1"),
				e = addr("tcp://[fd00::1]:9");
	cr_assert(tw_netaddr_same_ip(SA(&a), SA(&b)));
	cr_assert(tw_netaddr_same_ip(SA(&b), SA(&a)));
	cr_assert_not(tw_netaddr_same_ip(SA(&a), SA(&c)));
	cr_assert_not(tw_netaddr_same_ip(SA(&a), SA(&d)));
	cr_assert(tw_netaddr_same_ip(SA(&d), SA(&e)));
}

static void resolves(const char *host, const char *want)
{
	char out[TW_NETADDR_HOST_MAX];
	tw_status st = tw_netaddr_resolve("listen_host", host, out,
					  sizeof(out));
	cr_assert_eq(st, TW_OK, "%s: %s", host, tw_errmsg(st));
	cr_assert_str_eq(out, want, "%s", host);
}

Test(netaddr, hosts_resolve)
{
	resolves("10.1.2.3", "10.1.2.3");
	resolves("localhost", "127.0.0.1");
	resolves("0.0.0.0", "0.0.0.0");
	resolves("::1", "[::1]");
	resolves("[::1]", "[::1]");
	resolves("::", "[::]");
	resolves("FD00::0002", "[fd00::2]");
	resolves("lo", "127.0.0.1"); /* an interface: its IPv4 address */
}

Test(netaddr, bad_hosts_refused_naming_them)
{
	/* Every one refused before a resolver is asked. */
	static const char *const bad[] = {
		"",
		"1.2.3",
		"1.2.3.4.5",
		"300.1.1.1",
		"::g",
		"[::1",
		"[10.0.0.1]",
		"a..b",
		".a",
		"bad name",
		"x/y",
		"10.0.0.1:5",
		"fe80::1%tw-no-such-if0",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaa"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char out[TW_NETADDR_HOST_MAX];
		tw_status st = tw_netaddr_resolve("io_uring: listen_host",
						  bad[i], out, sizeof(out));
		cr_assert_eq(st, TW_EINVAL, "'%s'", bad[i]);
		cr_assert(strstr(tw_errmsg(st), "listen_host") != NULL, "%s",
			  tw_errmsg(st));
		/* (the overlong one is named cut short) */
		if (bad[i][0] != '\0' && strlen(bad[i]) < 64)
			cr_assert(strstr(tw_errmsg(st), bad[i]) != NULL, "%s",
				  tw_errmsg(st));
	}
	char out[TW_NETADDR_HOST_MAX];
	cr_assert_eq(tw_netaddr_resolve("x", NULL, out, sizeof(out)),
		     TW_EINVAL);
	/* Link-local: its zone means nothing to another host. */
	static const char *const ll[] = {"fe80::1", "[fe80::1%lo]",
					 "fe80::1%1"};
	for (size_t i = 0; i < sizeof(ll) / sizeof(ll[0]); i++) {
		tw_status st = tw_netaddr_resolve("listen_host", ll[i], out,
						  sizeof(out));
		cr_assert_eq(st, TW_EINVAL, "'%s'", ll[i]);
		cr_assert(strstr(tw_errmsg(st), "link-local") != NULL, "%s",
			  tw_errmsg(st));
	}
	tw_status st = tw_netaddr_resolve("listen_host", "fe80::1%tw-nope0",
					  out, sizeof(out));
	cr_assert(strstr(tw_errmsg(st), "no interface 'tw-nope0'") != NULL,
		  "%s", tw_errmsg(st));
}

/* Per-host limits count an IPv6 peer by its address (a /64 is a subnet
 * of many hosts), an IPv4-mapped one as its IPv4 address. */
Test(netaddr, peer_keys)
{
	tw_conn a = {0}, b = {0}, c = {0}, d = {0}, e = {0};
	struct sockaddr_storage v4 = addr("tcp://10.0.0.1:5"),
				mapped = addr("tcp://[::ffff:10.0.0.1]:6"),
				x1 = addr("tcp://[2001:db8:1:2::1]:7"),
				x2 = addr("tcp://[2001:db8:1:2:ffff::9]:8"),
				y = addr("tcp://[2001:db8:1:3::1]:7");
	tw_conn_set_peer_sa(&a, SA(&v4));
	tw_conn_set_peer_sa(&b, SA(&mapped));
	tw_conn_set_peer_sa(&c, SA(&x1));
	tw_conn_set_peer_sa(&d, SA(&x2));
	tw_conn_set_peer_sa(&e, SA(&y));
	cr_assert_eq(a.peer_host, b.peer_host);
	cr_assert_str_eq(a.peer, "10.0.0.1:5");
	cr_assert_str_eq(b.peer, "10.0.0.1:6");
	cr_assert_neq(c.peer_host, d.peer_host); /* same /64, two hosts */
	cr_assert_neq(c.peer_host, e.peer_host);
	tw_conn c2 = {0};
	tw_conn_set_peer_sa(&c2, SA(&x1));
	cr_assert_eq(c.peer_host, c2.peer_host);
	cr_assert_neq(c.peer_host, a.peer_host);
	cr_assert(c.peer_host >> 63);
	cr_assert_str_eq(c.peer, "[2001:db8:1:2::1]:7");
	struct sockaddr_storage big =
		addr("tcp://[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
	tw_conn f = {0};
	tw_conn_set_peer_sa(&f, SA(&big));
	cr_assert_str_eq(f.peer,
			 "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
}

/* A host name resolves (getaddrinfo) without asking DNS: in a private
 * mount namespace (root only) /etc/hosts is replaced by one naming
 * tw-test-host, as `ip netns exec` replaces it, and nsswitch's "files"
 * answers first. */
Test(netaddr, a_host_name_resolves_from_the_hosts_file)
{
	if (geteuid() != 0) {
		cr_skip_test("needs root (a mount namespace)");
		return;
	}
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		char path[] = "/tmp/tw-hosts-XXXXXX";
		int fd = mkstemp(path);
		static const char hosts[] = "127.0.0.1 localhost\n"
					    "10.231.9.7 tw-test-host\n"
					    "fd00::97 tw-test-host6\n";
		if (fd < 0 || write(fd, hosts, sizeof(hosts) - 1) < 0 ||
		    unshare(CLONE_NEWNS) != 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
		    mount(path, "/etc/hosts", NULL, MS_BIND, NULL) != 0) {
			unlink(path);
			_exit(77); /* no mount namespace here */
		}
		unlink(path);
		char out[TW_NETADDR_HOST_MAX];
		if (tw_netaddr_resolve("listen_host", "tw-test-host", out,
				       sizeof(out)) != TW_OK ||
		    strcmp(out, "10.231.9.7") != 0)
			_exit(1);
		if (tw_netaddr_resolve("listen_host", "tw-test-host6", out,
				       sizeof(out)) != TW_OK ||
		    strcmp(out, "[fd00::97]") != 0)
			_exit(2);
		_exit(0);
	}
	int ws = 0;
	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	cr_assert(WIFEXITED(ws));
	if (WEXITSTATUS(ws) == 77) {
		cr_skip_test("no mount namespace here");
		return;
	}
	cr_assert_eq(WEXITSTATUS(ws), 0, "step %d failed", WEXITSTATUS(ws));
}
