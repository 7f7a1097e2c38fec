/* Test networks for the DPDK tests (tests/unit/test_dpdk.c and the
 * integration harness): shell commands, veth/ifb/bridge helpers, loss,
 * reordering and duplication injected by tc (netem where the kernel has
 * it, else clsact + cls_bpf + mirred + ifb), and the removal of what a
 * killed earlier run left behind. Needs root; header-only. */
#ifndef TW_TEST_H_NET_H
#define TW_TEST_H_NET_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>

#define HN_UNUSED __attribute__((unused))

/* Run a shell command (output discarded); its exit status, -1 if none. */
static HN_UNUSED __attribute__((format(printf, 1, 2))) int
hn_sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	char full[1100];
	snprintf(full, sizeof(full), "%s >/dev/null 2>&1", cmd);
	int r = system(full);
	return r == -1 || !WIFEXITED(r) ? -1 : WEXITSTATUS(r);
}

/* A zombie nobody reaps (a container's init may not) counts as gone. */
static HN_UNUSED bool hn_pid_alive(long pid)
{
	if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH))
		return false;
	char path[64], buf[256] = {0};
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return true;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	const char *rp = n > 0 ? strrchr(buf, ')') : NULL;
	return !(rp != NULL && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

static HN_UNUSED void hn_write(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);
	if (fd >= 0) {
		ssize_t r = write(fd, val, strlen(val));
		(void)r;
		close(fd);
	}
}

/* Keep the kernel quiet on a test link: no IPv6 (router solicitations,
 * DAD) and no IPv4 forwarding of what arrives for the DPDK worker. */
static HN_UNUSED void hn_quiet(const char *dev)
{
	char path[128];
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6",
		 dev);
	hn_write(path, "1");
	snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/forwarding",
		 dev);
	hn_write(path, "0");
}

static HN_UNUSED bool hn_exists(const char *dev)
{
	char path[64];
	snprintf(path, sizeof(path), "/sys/class/net/%s", dev);
	return access(path, F_OK) == 0;
}

static HN_UNUSED int hn_ifindex(const char *dev)
{
	char path[128], buf[32] = {0};
	snprintf(path, sizeof(path), "/sys/class/net/%s/ifindex", dev);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? atoi(buf) : 0;
}

/* The combined channels (queue pairs) dev reports to ethtool, as
 * net_af_xdp counts them: 1 when it reports none (veth has separate rx
 * and tx channels only), -1 when the query fails. */
static HN_UNUSED int hn_combined_channels(const char *dev)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		return -1;
	struct ethtool_channels ch = {.cmd = ETHTOOL_GCHANNELS};
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
	ifr.ifr_data = (void *)&ch;
	int r = ioctl(fd, SIOCETHTOOL, &ifr);
	int err = errno;
	close(fd);
	if (r != 0 && err != EOPNOTSUPP)
		return -1;
	return r != 0 || ch.max_combined == 0 ? 1 : (int)ch.combined_count;
}

/* A name made by one of our tests: a 3-character tag from tags (a string
 * of 3-character tags), the pid of the test process that made it, then
 * the end or anything that is not a digit. Its pid, or 0. */
static HN_UNUSED long hn_name_pid(const char *name, const char *tags)
{
	for (const char *t = tags; strlen(t) >= 3; t += 3) {
		if (strncmp(name, t, 3) != 0)
			continue;
		char *end;
		long pid = strtol(name + 3, &end, 10);
		if (end != name + 3)
			return pid;
	}
	return 0;
}

/* What an earlier run killed mid-test may have left: links named with
 * one of link_tags and DPDK run directories named with one of dir_tags,
 * whose test process is gone. */
static HN_UNUSED void hn_clean_stale(const char *link_tags,
				     const char *dir_tags)
{
	DIR *d = opendir("/sys/class/net");
	if (d != NULL) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			long pid = hn_name_pid(de->d_name, link_tags);
			if (pid > 0 && !hn_pid_alive(pid))
				hn_sh("ip link del '%s'", de->d_name);
		}
		closedir(d);
	}
	d = opendir("/var/run/dpdk");
	if (d != NULL) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			long pid = hn_name_pid(de->d_name, dir_tags);
			if (pid > 0 && !hn_pid_alive(pid))
				hn_sh("rm -rf '/var/run/dpdk/%s'", de->d_name);
		}
		closedir(d);
	}
}

/* cBPF for cls_bpf: "match with probability ppm": A = random; if A >=
 * threshold return miss else hit. */
static HN_UNUSED void hn_cbpf_rand(char *dst, size_t n, uint32_t ppm,
				   uint32_t hit, uint32_t miss)
{
	uint32_t thr = (uint32_t)((uint64_t)ppm * 4294967295ull / 1000000u);
	snprintf(dst, n, "4,32 0 0 4294963256,53 1 0 %u,6 0 0 %u,6 0 0 %u", thr,
		 hit, miss);
}

/* Make an ifb link (for reordering), up, shaped by tbf so that what goes
 * through it falls behind the rest. */
static HN_UNUSED bool hn_ifb_make(const char *ifb)
{
	if (hn_sh("ip link add %s type ifb", ifb) != 0)
		return false;
	hn_quiet(ifb);
	return hn_sh("ip link set %s up", ifb) == 0 &&
	       hn_sh("tc qdisc add dev %s root tbf rate 50mbit burst 1600 "
		     "limit 1000000",
		     ifb) == 0;
}

/*
 * Loss of loss_ppm (and for heavy: 25% reordering with 50% correlation
 * and 5% duplication) on the egress of each of devs[0 .. n). netem when
 * the kernel has it; otherwise the same faults from what the kernel has:
 * cls_bpf on clsact picks packets with a random cBPF test; mirred
 * redirects the lost ones into the sender's own ingress (not TC_ACT_SHOT:
 * the PMD's TX_RING socket would hear of the drop and send the frame
 * again; in its own ingress the packet is gone without a word, dropped
 * by the receive path as not its MAC), mirrors a random 5% into the
 * ingress of peers[i] (the other end of devs[i]'s veth: a duplicate), and
 * redirects a random 25% through ifb (made here when heavy and ifb_made
 * is not yet set), shaped by tbf, which delays them behind the rest (a
 * reordering). Returns "netem", "clsact", or NULL when neither works
 * (the caller removes what was made).
 */
static HN_UNUSED const char *hn_impair(const char *const *devs,
				       const char *const *peers, int n,
				       const char *ifb, bool *ifb_made,
				       uint32_t loss_ppm, bool heavy)
{
	bool ok = true;
	for (int i = 0; i < n && ok; i++) {
		if (heavy)
			ok = hn_sh("tc qdisc add dev %s root netem delay 1ms "
				   "reorder 25%% 50%% loss %u.%04u%% "
				   "duplicate 5%%",
				   devs[i], loss_ppm / 10000,
				   loss_ppm % 10000) == 0;
		else
			ok = hn_sh("tc qdisc add dev %s root netem loss "
				   "%u.%04u%%",
				   devs[i], loss_ppm / 10000,
				   loss_ppm % 10000) == 0;
	}
	if (ok)
		return "netem";
	for (int i = 0; i < n; i++)
		hn_sh("tc qdisc del dev %s root", devs[i]);
	if (heavy && !*ifb_made) {
		*ifb_made = true; /* the caller deletes it, made or not */
		if (!hn_ifb_make(ifb))
			return NULL;
	}
	char prog[160];
	for (int i = 0; i < n; i++) {
		const char *dev = devs[i];
		if (hn_sh("tc qdisc add dev %s clsact", dev) != 0)
			return NULL;
		/* In classic mode -1 = match (run the action), 0 = no. */
		hn_cbpf_rand(prog, sizeof(prog), loss_ppm, 4294967295u, 0);
		if (hn_sh("tc filter add dev %s egress pref 1 bpf bytecode "
			  "'%s' action mirred ingress redirect dev %s",
			  dev, prog, dev) != 0)
			return NULL;
		if (!heavy)
			continue;
		hn_cbpf_rand(prog, sizeof(prog), 50000, 4294967295u, 0);
		if (hn_sh("tc filter add dev %s egress pref 2 bpf bytecode "
			  "'%s' action mirred ingress mirror dev %s",
			  dev, prog, peers[i]) != 0)
			return NULL;
		hn_cbpf_rand(prog, sizeof(prog), 250000, 4294967295u, 0);
		if (hn_sh("tc filter add dev %s egress pref 3 bpf bytecode "
			  "'%s' action mirred egress redirect dev %s",
			  dev, prog, ifb) != 0)
			return NULL;
	}
	return "clsact";
}

#endif
