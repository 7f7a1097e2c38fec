#!/bin/sh
# bench-hosts.sh: tensorwire over io_uring between two network namespaces
# on a bridge (each standing in for a host), against the same benchmark on
# loopback, in one run (issue 19, part 7).
#
#   sh perf/bench-hosts.sh [--quick] [--build DIR] [--rounds N]
#
# Needs root. Makes namespaces twbhA (client, 10.219.0.1) and twbhB (server,
# 10.219.0.2), veth pairs into a bridge twbhbr, and removes them on exit.
# Builds tensorwire (DIR, default ./build-bench, release with LTO). Each round
# runs perf/bench-rpc (no-op rpc_sync latency, pipelined no-op calls/s with
# W = 64 and 256, tensor echo 4 KiB .. 64 MiB) in turn:
#   loop     on 127.0.0.1 (the anchor)
#   ns       across the namespaces, congestion control left to the library
#            (the namespaces share this kernel: same host, reno)
#   ns-bbr   across the namespaces under BBR (--cc bbr: what a remote
#            peer gets where BBR is the system's default)
# then the 64 MiB echo with 1% loss on the server's link (cls_bpf on
# clsact, as the tests impair links) under reno and under BBR, and with the
# server's link limited to 1 Gbit/s (tbf). Prints the medians over rounds
# and ns / loop. Log: perf/results/bench-hosts-<timestamp>.log.
set -eu
cd "$(dirname "$0")/.."
QUICK=""
BUILD=build-bench
ROUNDS=3
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=--quick ;;
	--build) BUILD=$2; shift ;;
	--rounds) ROUNDS=$2; shift ;;
	-h | --help)
		awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
		exit 0 ;;
	*) echo "bench-hosts: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
if [ "$(id -u)" != 0 ]; then
	echo "bench-hosts: needs root (network namespaces)" >&2
	exit 1
fi
# A release build with LTO, as the other benchmarks use.
if [ ! -f "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" -Dbuildtype=release -Db_lto=true >/dev/null
fi
ninja -C "$BUILD" perf/bench-rpc >/dev/null
BIN=$BUILD/perf/bench-rpc
mkdir -p perf/results
LOG=perf/results/bench-hosts-$(date -u +%Y%m%d-%H%M%S).log

A=twbhA B=twbhB BR=twbhbr
cleanup() {
	ip netns del $A 2>/dev/null || true
	ip netns del $B 2>/dev/null || true
	ip link del $BR 2>/dev/null || true
	ip link del ${A}0 2>/dev/null || true
	ip link del ${B}0 2>/dev/null || true
}
trap cleanup EXIT INT TERM
cleanup
ip link add $BR type bridge
ip link set $BR up
i=1
for ns in $A $B; do
	ip netns add $ns
	ip link add ${ns}0 type veth peer name ${ns}1
	ip link set ${ns}1 netns $ns
	ip link set ${ns}0 master $BR
	ip link set ${ns}0 up
	ip -n $ns addr add 10.219.0.$i/24 dev ${ns}1
	ip -n $ns link set ${ns}1 up
	ip -n $ns link set lo up
	i=$((i + 1))
done
NS="--netns $B,$A --hosts 10.219.0.2,10.219.0.1"
SRVLINK=${B}1

run() { # label, bench-rpc args...
	label=$1; shift
	echo "== $label: $BIN $*" | tee -a "$LOG"
	# shellcheck disable=SC2086
	"$BIN" "$@" 2>&1 | sed "s/^RESULT /RESULT $label /" | tee -a "$LOG" |
		grep -E '^(RESULT|#)' || true
}

# 1% loss on the server's egress, as tests/integration/h_net.h does it
# where netem is missing: a random cBPF match redirects the lost packets
# into the sender's own ingress, where they are dropped as not its MAC.
loss_on() {
	if ip netns exec $B tc qdisc add dev $SRVLINK root netem loss 1% 2>/dev/null; then
		return
	fi
	thr=$((10000 * 4294967295 / 1000000))
	ip netns exec $B tc qdisc add dev $SRVLINK clsact
	ip netns exec $B tc filter add dev $SRVLINK egress pref 1 bpf bytecode \
		"4,32 0 0 4294963256,53 1 0 $thr,6 0 0 4294967295,6 0 0 0" \
		action mirred ingress redirect dev $SRVLINK
}
impair_off() {
	ip netns exec $B tc qdisc del dev $SRVLINK root 2>/dev/null || true
	ip netns exec $B tc qdisc del dev $SRVLINK clsact 2>/dev/null || true
}

uname -r | sed 's/^/# kernel /' | tee -a "$LOG"
echo "# system tcp_congestion_control $(cat /proc/sys/net/ipv4/tcp_congestion_control)" | tee -a "$LOG"
r=1
while [ $r -le "$ROUNDS" ]; do
	# shellcheck disable=SC2086
	run loop $QUICK --only sync,pipe,echo
	# shellcheck disable=SC2086
	run ns $QUICK --only sync,pipe,echo $NS
	# shellcheck disable=SC2086
	run ns-bbr $QUICK --only echo --cc bbr $NS
	r=$((r + 1))
done
loss_on
# shellcheck disable=SC2086
run ns-loss1-reno --quick --only echo --cc reno $NS
# shellcheck disable=SC2086
run ns-loss1-bbr --quick --only echo --cc bbr $NS
impair_off
ip netns exec $B tc qdisc add dev $SRVLINK root tbf rate 1gbit burst 256kb latency 20ms
# shellcheck disable=SC2086
run ns-tbf1g $QUICK --only sync,echo $NS
impair_off

/usr/bin/python3 - "$LOG" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"RESULT (\S+) (tw_\S+)\s+(.*)", line)
    if not m:
        continue
    label, what, kv = m.groups()
    d = dict(re.findall(r"(\S+?)=([\d.]+)", kv))
    key = "p50" if what.startswith("tw_sync") else \
          "calls/s" if what.startswith("tw_pipe") else "GB/s"
    if key in d:
        rows.setdefault(what, {}).setdefault(label, []).append(float(d[key]))
labels = ["loop", "ns", "ns-bbr", "ns-loss1-reno", "ns-loss1-bbr", "ns-tbf1g"]
print("\n| part | unit | " + " | ".join(labels) + " | ns / loop |")
print("|---" * (len(labels) + 3) + "|")
for what, by in rows.items():
    unit = "p50 us" if what.startswith("tw_sync") else \
           "calls/s" if what.startswith("tw_pipe") else "GB/s"
    med = {l: statistics.median(v) for l, v in by.items()}
    def fmt(l):
        if l not in med:
            return "-"
        v = med[l]
        return "%.1f" % (v / 1000) if unit == "p50 us" else \
               "%.0fk" % (v / 1000) if unit == "calls/s" else "%.2f" % v
    ratio = "%.2fx" % (med["ns"] / med["loop"]) if "ns" in med and \
        "loop" in med else "-"
    print("| %s | %s | %s | %s |" % (what[3:], unit,
                                     " | ".join(fmt(l) for l in labels),
                                     ratio))
PY
echo "log: $LOG"
