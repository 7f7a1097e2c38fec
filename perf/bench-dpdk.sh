#!/bin/sh
# bench-dpdk.sh: tensorwire's RPC benchmark over the DPDK transport, beside
# the raw DPDK ping-pong on the same vdev, all in one run.
#
#   sh perf/bench-dpdk.sh [--quick] [--no-credits] [--no-tags]
#                         [--only memif|af_packet] [--build DIR]
#
# Needs root (the EAL; the veth pair). Builds tensorwire (DIR, default
# ./build-bench, a release build with LTO: bench-lib.sh) and
# ../shared/anchors/limits' dpdk_pingpong (in a scratch copy), then, for
# memif and then for af_packet (a veth pair twdA/twdB that this script
# makes and removes), runs one after the other with the same pinning
# (client / sender cpu0, server / receiver cpu1), a quiet-machine wait and
# a vCPU placement probe around each item:
#   raw dpdk_pingpong: 64 B ping-pong; 64 B echo with 64 and 256 frames in
#   flight (pipe); one-way stream of 1514 B frames (tx -> rx, bursts of 32);
#   perf/bench-rpc --transport <vdev>, each part right after its anchor:
#   no-op rpc_sync latency, pipelined no-op calls/s (W=64, 256), tensor
#   echo GB/s (4 KiB .. 64 MiB, byte-exact checked)
# and over memif, the large-tensor echo (1 MiB, 64 MiB) with dpdk_credits
# 32, 64, 128 and 256 (--no-credits skips it), and the cost of per-packet
# tags (issue 18): rpc_sync latency and pipelined calls/s with tags on
# (the default with a secret) and off (--no-pkt-tag), alternating, TAG_REPS
# rounds (--no-tags skips it). perf/bench-dpdk-summary.py
# prints the table (tw ÷ raw for latency, tw / raw for throughput) and
# writes perf/results/dpdk-latest.json. Logs:
# perf/results/bench-dpdk-<timestamp>.log.
#
# Every process has its own EAL: -l <cpu> --no-huge -m 256 (tensorwire: 512)
# --no-pci --no-telemetry and a unique --file-prefix, removed afterwards.
# An item run while other processes used >= 0.15 cores is redone (up to
# RETRIES=2 times) and the least disturbed attempt is kept.
# Env: QUIET_MAX (s to wait for a quiet machine per item, default 120),
#      RETRIES, CREDITS (default "32 64 128 256"), CRED_REPS (rounds over
#      CREDITS, default 2), TAG_REPS (rounds of tags on/off, default 3),
#      TAG_PARTS (bench-rpc parts each round runs, default "sync pipe").

# The quiet-machine helper (anchors' tools/quiet.sh) is bash.
if [ -z "${BASH_VERSION:-}" ]; then
	exec bash "$0" "$@"
fi
set -u

usage() {
	awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
}

# ---- one raw dpdk_pingpong pair (run as an item: this script, --pair) -------
# --pair BIN PREFIX SRV_VDEV CLI_VDEV "SRV_ARGS" "CLI_ARGS"
if [ "${1:-}" = --pair ]; then
	BIN=$2 PFX=$3 SV=$4 CV=$5 SA=$6 CA=$7
	P=$(basename "$PFX") # the EAL file prefix; $PFX.* are our files
	EAL="--no-huge -m 256 --no-pci --no-telemetry"
	echo "CMD $BIN -l 1 $EAL --file-prefix=${P}s --vdev=$SV -- $SA &"
	echo "CMD $BIN -l 0 $EAL --file-prefix=${P}c --vdev=$CV -- $CA"
	# shellcheck disable=SC2086
	"$BIN" -l 1 $EAL --file-prefix="${P}s" --vdev="$SV" -- $SA >"$PFX.srv" 2>&1 &
	SPID=$!
	sleep 1.5
	for _ in 1 2 3; do
		# shellcheck disable=SC2086
		timeout 300 "$BIN" -l 0 $EAL --file-prefix="${P}c" --vdev="$CV" -- $CA >"$PFX.cli" 2>&1
		RC=$?
		# af_packet names its PACKET_FANOUT group (pid ^ ifindex) & 0xffff:
		# the ends of one veth pair can collide; another pid will do.
		grep -q 'could not set PACKET_FANOUT' "$PFX.cli" || break
		echo "# PACKET_FANOUT group collision; client started again"
		rm -rf "/var/run/dpdk/${P}c"
	done
	for _ in $(seq 1 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.2; done
	if kill -0 "$SPID" 2>/dev/null; then
		echo "# server pid $SPID still running; killing it"
		kill "$SPID"
	fi
	wait "$SPID" 2>/dev/null
	grep -v '^EAL:\|^TELEMETRY' "$PFX.srv" | sed 's/^/[srv] /; s/^\[srv\] RESULT/RESULT/'
	grep -v '^EAL:\|^TELEMETRY' "$PFX.cli" | sed 's/^/[cli] /; s/^\[cli\] RESULT/RESULT/'
	rm -f "$PFX.srv" "$PFX.cli"
	rm -rf "/var/run/dpdk/${P}s" "/var/run/dpdk/${P}c"
	exit $RC
fi

ARGS="$*"
ORIG=$(pwd)
MODE=default
DO_CREDITS=1
DO_TAGS=1
ONLY="memif af_packet"
BUILD=
while [ $# -gt 0 ]; do
	case $1 in
	--quick) MODE=quick ;;
	--no-credits) DO_CREDITS=0 ;;
	--no-tags) DO_TAGS=0 ;;
	--only) ONLY=$2; shift ;;
	--build|-B) BUILD=$2; shift ;;
	--build=*) BUILD=${1#--build=} ;;
	-h|--help) usage; exit 0 ;;
	*) echo "bench-dpdk.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
if [ "$(id -u)" != 0 ]; then
	echo "bench-dpdk.sh: needs root (the EAL, the veth pair)" >&2
	exit 1
fi

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null) ||
	ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${BUILD:-$ROOT/build-bench}
case $BUILD in /*) ;; *) BUILD=$ORIG/$BUILD ;; esac
ANCHORS=$ROOT/../shared/anchors
[ -d "$ANCHORS/limits" ] || ANCHORS=/work/shared/anchors
QUIET_MAX=${QUIET_MAX:-120}
RETRIES=${RETRIES:-2}
CREDITS=${CREDITS:-32 64 128 256}
CRED_REPS=${CRED_REPS:-2} # rounds over CREDITS, interleaved
TAG_REPS=${TAG_REPS:-3}   # rounds of tags on / off, interleaved
TAG_PARTS=${TAG_PARTS:-sync pipe} # which bench-rpc parts those rounds run
FOREIGN_MAX=0.15 # cores used by other processes during an item
VA=twdA # veth: client end (cpu0)
VB=twdB # veth: server end (cpu1)

OUT=$ROOT/perf/results
mkdir -p "$OUT"
TS=$(date +%Y%m%d-%H%M%S)
LOG=$OUT/bench-dpdk-$TS.log
SCRATCH=$(mktemp -d /tmp/tw-bench-dpdk.XXXXXX) || exit 1
PFX=$SCRATCH/twd$$ # raw pairs' file prefixes: basename + s/c
CUR=
VETH=0

veth_del() {
	if [ "$VETH" = 1 ]; then
		ip link del "$VA" 2>/dev/null
		VETH=0
	fi
}
cleanup() {
	if [ -n "$CUR" ]; then
		# Each item runs in its own session: end the whole group.
		kill -TERM -- "-$CUR" 2>/dev/null
		sleep 0.5
		kill -KILL -- "-$CUR" 2>/dev/null
		wait "$CUR" 2>/dev/null
		CUR=
	fi
	veth_del
	rm -rf "/var/run/dpdk/twd$$s" "/var/run/dpdk/twd$$c"
	stale_dirs
	rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'echo "bench-dpdk.sh: interrupted" >&2; exit 130' INT TERM

log() { echo "$*" | tee -a "$LOG"; }

# Run dirs of bench-rpc processes gone without cleaning up (killed by a
# timeout): /var/run/dpdk/twbench<pid>[cs].
stale_dirs() {
	local d p
	for d in /var/run/dpdk/twbench*; do
		[ -d "$d" ] || continue
		p=${d#/var/run/dpdk/twbench}
		p=${p%[cs]}
		kill -0 "$p" 2>/dev/null || rm -rf "$d"
	done
}

# ---- build ------------------------------------------------------------------
# shellcheck source=bench-lib.sh
. "$ROOT/perf/bench-lib.sh"
bench_build "$BUILD" bench-dpdk.sh
cp -r "$ANCHORS/limits" "$SCRATCH/limits" || exit 1
chmod -R u+w "$SCRATCH"
rm -rf "$SCRATCH/limits/results"
make -s -C "$SCRATCH/limits" dpdk_pingpong shm_pingpong >"$SCRATCH/make.log" 2>&1 || {
	cat "$SCRATCH/make.log" >&2
	echo "bench-dpdk.sh: building the anchors failed" >&2
	exit 1
}
L=$SCRATCH/limits
RAW=$L/dpdk_pingpong
# shellcheck source=/dev/null
. "$L/tools/quiet.sh"

# ---- sizes ------------------------------------------------------------------
case $MODE in
quick)
	N=20000; RAW_T=2; PROBE_N=20000; BENCH_ARGS=--quick; CRED_E=1 ;;
*)
	N=100000; RAW_T=5; PROBE_N=100000; BENCH_ARGS=; CRED_E=3 ;;
esac
W=$((N / 10))

# ---- running items (as perf/bench-rpc.sh) -----------------------------------
# After every attempt: the run dirs of the bench-rpc processes it started.
item_after() {
	rm -rf "/var/run/dpdk/twd$$s" "/var/run/dpdk/twd$$c"
	stale_dirs
}

# raw KEY SRV_VDEV CLI_VDEV "SRV_ARGS" "CLI_ARGS"
raw() {
	local key=$1
	shift
	item "$key" 400 "$0" --pair "$RAW" "$PFX" "$@"
}

log "# bench-dpdk.sh $TS mode=$MODE host=$(hostname) kernel=$(uname -r) cpus=$(nproc)"
log "# $(grep -m1 'model name' /proc/cpuinfo)"
log "# git $(git -C "$ROOT" describe --always --dirty 2>/dev/null) build $BUILD_DESC"
log "# dpdk $(pkg-config --modversion libdpdk 2>/dev/null)"
log "# loadavg_start $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# log: $LOG"

# section VDEV SRV_VDEV CLI_VDEV [bench-rpc args...]: raw anchors and
# tensorwire on one vdev type, each tensorwire part right after its anchor.
section() {
	local v=$1 sv=$2 cv=$3
	shift 3
	log "## $v"
	raw "${v}_ping" "$sv" "$cv" "-r pong -T 600" "-r ping -n $N -w $W"
	item "${v}_tw_sync" 600 "$BENCH" --transport "$v" "$@" $BENCH_ARGS --only sync
	raw "${v}_pipe64" "$sv" "$cv" "-r pong -T 600" "-r pipe -T $RAW_T -W 64 -b 32"
	raw "${v}_pipe256" "$sv" "$cv" "-r pong -T 600" "-r pipe -T $RAW_T -W 256 -b 32"
	item "${v}_tw_pipe" 600 "$BENCH" --transport "$v" "$@" $BENCH_ARGS --only pipe
	raw "${v}_stream" "$sv" "$cv" "-r rx -T $RAW_T" "-r tx -T $RAW_T -b 32 -s 1514"
	item "${v}_tw_echo" 900 "$BENCH" --transport "$v" "$@" $BENCH_ARGS --only echo
	# Idle CPU with the library's idle policy (spin 200 us, its default;
	# a threaded client, whose loop sleeps as the server's does).
	item "${v}_tw_idle" 120 "$BENCH" --transport "$v" "$@" --quick --threaded \
		--spin-ms 0.2 --only idle
}

for v in $ONLY; do
case $v in
memif)
	MS=net_memif0,role=server,socket=/twd$$-memif
	MC=net_memif0,role=client,socket=/twd$$-memif
	section memif "$MS" "$MC"
	if [ "$DO_TAGS" = 1 ]; then
		# Per-packet tags on and off, alternating so that both see the
		# same machine; the summary compares medians of the rounds.
		log "## memif tags"
		for r in $(seq 1 "$TAG_REPS"); do
			for part in $TAG_PARTS; do
				item "memif_tagon_${part}_r$r" 600 "$BENCH" --transport memif $BENCH_ARGS --only "$part"
				item "memif_tagoff_${part}_r$r" 600 "$BENCH" --transport memif --no-pkt-tag $BENCH_ARGS --only "$part"
			done
		done
	fi
	if [ "$DO_CREDITS" = 1 ]; then
		log "## memif credits"
		raw memif_stream2 "$MS" "$MC" "-r rx -T $RAW_T" "-r tx -T $RAW_T -b 32 -s 1514"
		for r in $(seq 1 "$CRED_REPS"); do
			for c in $CREDITS; do
				item "memif_cred${c}_r$r" 600 "$BENCH" --transport memif \
					--credits "$c" --only echo -S 1M,64M -E "$CRED_E"
			done
		done
	fi
	;;
af_packet)
	ip link del "$VA" 2>/dev/null # a pair an interrupted run left
	ip link add "$VA" type veth peer name "$VB" || exit 1
	VETH=1
	sysctl -qw "net.ipv6.conf.$VA.disable_ipv6=1" "net.ipv6.conf.$VB.disable_ipv6=1"
	ip link set "$VA" up && ip link set "$VB" up || exit 1
	log "# veth $VA (client, cpu0) <-> $VB (server, cpu1)"
	section af_packet "net_af_packet0,iface=$VB" "net_af_packet0,iface=$VA" \
		--ifaces "$VB,$VA"
	veth_del
	;;
*) echo "bench-dpdk.sh: unknown vdev $v (memif, af_packet)" >&2 ;;
esac
done
log "# loadavg_end $(cut -d' ' -f1-3 /proc/loadavg)"

python3 "$ROOT/perf/bench-dpdk-summary.py" --log "$LOG" \
	--json "$OUT/dpdk-latest.json" --cmd "sh perf/bench-dpdk.sh${ARGS:+ $ARGS}" |
	tee "$OUT/bench-dpdk-$TS.summary.md"
echo "# log: $LOG"
echo "# json: $OUT/dpdk-latest.json"
