#!/bin/sh
# tw-perf-sweep.sh: tools/tw-perf over a sweep of offered load, for io_uring,
# the same-host transport and DPDK memif, beside the raw anchors, in one run;
# then CSV and PNG plots, and a check that tw-perf and perf/bench-rpc agree.
#
#   flock /tmp/tw-bench.lock sh perf/tw-perf-sweep.sh [--quick]
#       [--only uring,shm,memif] [--rounds R] [--build DIR] [--plots DIR]
#
# Builds tensorwire (DIR, default ./build-bench: bench-lib.sh's release
# build with LTO) and the anchors (a scratch copy of ../shared/anchors),
# then, per transport, with the client on cpu0 and the server on cpu1, a
# quiet-machine wait and a vCPU placement probe around each item
# (bench-lib.sh's item; a disturbed item is not redone here: the log gives
# each item's foreign load):
#   the raw 64 B ping-pong (uring_pingpong, shm_pingpong, dpdk_pingpong
#   over memif: bench-dpdk.sh --pair); tw-perf closed loop, one call in
#   flight (its latency histogram kept); the raw pipelined echo, W=64
#   (io_uring, memif); tw-perf closed loop, W=64: its calls/s is the
#   capacity C; then tw-perf open loop (up to 256 in flight) at
#   LOADS x C (default 0.1 .. 1.2), histograms kept at 0.5 and 0.9;
# then R interleaved rounds (default 5, --quick 2) of perf/bench-rpc
# (--only sync; --only pipe -W 64) and tw-perf on the same workloads (no-op
# calls over io_uring, one in flight; 64 in flight): the median ratio of
# their p50s and of their calls/s, with the spread, and whether each is
# within TOL_P50 (10%) and TOL_RATE (15%).
# memif needs root and a DPDK build; its items hold /tmp/tw-dpdk.lock.
# Writes perf/results/tw-perf-<timestamp>/ (runs.csv, hist.csv,
# anchors.csv, agree.csv, agree.txt, the log) and, into DIR (default
# perf/plots), tw-perf-cdf.png and tw-perf-load.png made by
# perf/plot-tw-perf.py from them, with copies of the CSVs.
# Env: QUIET_MAX (s to wait for a quiet machine per item, default 20),
#      LOADS (fractions of C), TOL_P50, TOL_RATE.

# The quiet-machine helper (anchors' tools/quiet.sh) is bash.
if [ -z "${BASH_VERSION:-}" ]; then
	exec bash "$0" "$@"
fi
set -u

usage() {
	awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
}

ARGS="$*"
ORIG=$(pwd)
QUICK=0
ONLY=uring,shm,memif
ROUNDS=
BUILD=
PLOTS=
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1 ;;
	--only) ONLY=$2; shift ;;
	--rounds) ROUNDS=$2; shift ;;
	--build|-B) BUILD=$2; shift ;;
	--plots) PLOTS=$2; shift ;;
	-h|--help) usage; exit 0 ;;
	*) echo "tw-perf-sweep.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null) ||
	ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${BUILD:-$ROOT/build-bench}
case $BUILD in /*) ;; *) BUILD=$ORIG/$BUILD ;; esac
PLOTS=${PLOTS:-$ROOT/perf/plots}
case $PLOTS in /*) ;; *) PLOTS=$ORIG/$PLOTS ;; esac
ANCHORS=$ROOT/../shared/anchors
[ -d "$ANCHORS/limits" ] || ANCHORS=/work/shared/anchors
QUIET_MAX=${QUIET_MAX:-20}
RETRIES=0
FOREIGN_MAX=0.15
TOL_P50=${TOL_P50:-0.10}
TOL_RATE=${TOL_RATE:-0.15}

TS=$(date +%Y%m%d-%H%M%S)
OUT=$ROOT/perf/results/tw-perf-$TS
mkdir -p "$OUT" "$PLOTS" || exit 1
LOG=$OUT/sweep.log
SCRATCH=$(mktemp -d /tmp/tw-perf-sweep.XXXXXX) || exit 1
CUR=
# An interrupted item's session (bench-lib.sh's item keeps it in CUR).
trap '[ -n "$CUR" ] && kill -KILL -- "-$CUR" 2>/dev/null; rm -rf "$SCRATCH"' EXIT
trap 'echo "tw-perf-sweep.sh: interrupted" >&2; exit 130' INT TERM
log() { echo "$*" | tee -a "$LOG"; }

if [ "$QUICK" = 1 ]; then
	N=5000; D=1; PIPE_N=300000; ROUNDS=${ROUNDS:-2}
	LOADS=${LOADS:-0.1 0.5 0.9 1.2}
else
	N=20000; D=3; PIPE_N=2000000; ROUNDS=${ROUNDS:-5}
	LOADS=${LOADS:-0.1 0.25 0.5 0.75 0.9 1.0 1.2}
fi
W=$((N / 10))
PROBE_N=20000
UF="-m peek -f defer,fixed,ringfd"

# ---- build ------------------------------------------------------------------
# shellcheck source=bench-lib.sh
. "$ROOT/perf/bench-lib.sh"
bench_build "$BUILD" tw-perf-sweep.sh
ninja -C "$BUILD" tools/tw-perf >"$SCRATCH/ninja-twperf.log" 2>&1 || {
	tail -40 "$SCRATCH/ninja-twperf.log" >&2
	exit 1
}
TWP=$BUILD/tools/tw-perf
cp -r "$ANCHORS/limits" "$SCRATCH/limits" || exit 1
chmod -R u+w "$SCRATCH"
rm -rf "$SCRATCH/limits/results"
targets="uring_pingpong uring_pipeline shm_pingpong"
case ",$ONLY," in *,memif,*) targets="$targets dpdk_pingpong" ;; esac
# shellcheck disable=SC2086
make -s -C "$SCRATCH/limits" $targets >"$SCRATCH/make.log" 2>&1 || {
	cat "$SCRATCH/make.log" >&2
	echo "tw-perf-sweep.sh: building the anchors failed" >&2
	exit 1
}
L=$SCRATCH/limits
# shellcheck source=/dev/null
. "$L/tools/quiet.sh"

log "# tw-perf-sweep.sh $TS quick=$QUICK only=$ONLY rounds=$ROUNDS host=$(hostname) kernel=$(uname -r) cpus=$(nproc)"
log "# $(grep -m1 'model name' /proc/cpuinfo)"
log "# git $(git -C "$ROOT" describe --always --dirty 2>/dev/null) build $BUILD_DESC"
log "# loadavg_start $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# log: $LOG"
echo "transport,name,p50_ns,rate_per_s" >"$OUT/anchors.csv"

# anchor TRANSPORT KEY CMD...: a raw anchor as an item; its RESULT lines'
# p50 and rate (rt/s, msgs/s, echoed_frames/s) into anchors.csv.
anchor() {
	local tr=$1 key=$2
	shift 2
	item "$key" 400 "$@" | tee "$SCRATCH/anchor.out"
	awk -v tr="$tr" '$1 == "RESULT" {
		p50 = ""; rate = ""
		for (i = 3; i <= NF; i++) {
			if ($i ~ /^p50=/) { p50 = $i; sub(/^p50=/, "", p50); sub(/ns$/, "", p50) }
			if ($i ~ /^(rt\/s|msgs\/s|echoed_frames\/s)=/) { rate = $i; sub(/^[^=]*=/, "", rate) }
		}
		name = $2; gsub(/,/, "+", name)
		print tr "," name "," p50 "," rate }' "$SCRATCH/anchor.out" >>"$OUT/anchors.csv"
}

# twp LABEL [tw-perf args...]: one tw-perf run as an item, its row into
# runs.csv (and its histogram into hist.csv when asked).
twp() {
	local label=$1
	shift
	item "$label" 300 $LOCK "$TWP" --label "$label" --csv "$OUT/runs.csv" "$@"
}
# calls/s of the run labelled $1
rate_of() {
	awk -F, -v l="$1" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
		$c["label"] == l { r = $c["calls_per_s"] } END { print r + 0 }' "$OUT/runs.csv"
}

for t in $(echo "$ONLY" | tr ',' ' '); do
	LOCK=
	case $t in
	uring)
		anchor uring uring_pp64 "$L/uring_pingpong" $UF -n "$N" -w "$W" ;;
	shm)
		anchor shm shm_pp64 "$L/shm_pingpong" -n "$N" -w "$W" ;;
	memif)
		LOCK="flock /tmp/tw-dpdk.lock"
		# Twice: a first EAL start has failed here once, for a reason
		# it kept to itself.
		if [ "$(id -u)" != 0 ] ||
			! { $LOCK "$TWP" -t memif -n 10 --warmup 0 >"$SCRATCH/memif.out" 2>&1 ||
			    $LOCK "$TWP" -t memif -n 10 --warmup 0 >"$SCRATCH/memif.out" 2>&1; }; then
			log "# memif: SKIPPED (needs root and a DPDK build): $(tail -3 "$SCRATCH/memif.out" 2>/dev/null | tr '\n' ' ')"
			continue
		fi
		MS=net_memif0,role=server,socket=/twps$$-memif
		MC=net_memif0,role=client,socket=/twps$$-memif
		anchor memif memif_pp64 $LOCK sh "$ROOT/perf/bench-dpdk.sh" --pair \
			"$L/dpdk_pingpong" "$SCRATCH/twps$$" "$MS" "$MC" \
			"-r pong -T 600" "-r ping -n $N -w $W" ;;
	*)
		echo "tw-perf-sweep.sh: unknown transport $t in --only" >&2
		exit 2 ;;
	esac
	log "## $t"
	twp "$t-closed-W1" -t "$t" -n "$N" -W 1 --hist-csv "$OUT/hist.csv"
	case $t in
	uring)
		anchor uring uring_pipe_W64 "$L/uring_pipeline" -x batch $UF -W 64 -n "$PIPE_N" ;;
	memif)
		anchor memif memif_pipe_W64 $LOCK sh "$ROOT/perf/bench-dpdk.sh" --pair \
			"$L/dpdk_pingpong" "$SCRATCH/twps$$" "$MS" "$MC" \
			"-r pong -T 600" "-r pipe -T $D -W 64 -b 32" ;;
	esac
	twp "$t-closed-W64" -t "$t" -d "$D" -W 64
	C=$(rate_of "$t-closed-W64")
	log "# $t: closed loop W=64 capacity $C calls/s"
	for f in $LOADS; do
		r=$(awk -v c="$C" -v f="$f" 'BEGIN { printf "%.0f", c * f }')
		pct=$(awk -v f="$f" 'BEGIN { printf "%d", f * 100 + 0.5 }')
		[ "$r" -gt 0 ] || continue
		h=
		case $pct in 50|90) h="--hist-csv $OUT/hist.csv" ;; esac
		# shellcheck disable=SC2086
		twp "$t-open-$pct" -t "$t" -r "$r" -W 256 -d "$D" $h
	done
done

# ---- agreement with perf/bench-rpc (io_uring, no-op calls) ------------------
LOCK=
for r in $(seq 1 "$ROUNDS"); do
	b1="item agree${r}_bench_sync 300 \"$BENCH\" --only sync -n $N"
	t1="twp agree${r}_twperf_sync -n $N -W 1 --warmup $((N / 10 > 1000 ? N / 10 : 1000))"
	b2="item agree${r}_bench_pipe 300 \"$BENCH\" --only pipe -W 64 -T $D"
	t2="twp agree${r}_twperf_pipe -d $D -W 64"
	if [ $((r % 2)) = 1 ]; then
		eval "$b1"; eval "$t1"; eval "$b2"; eval "$t2"
	else
		eval "$t1"; eval "$b1"; eval "$t2"; eval "$b2"
	fi
done
log "# loadavg_end $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$LOG" "$OUT/runs.csv" "$TOL_P50" "$TOL_RATE" "$OUT/agree.csv" <<'PY' | tee "$OUT/agree.txt"
import csv, re, statistics, sys
log, runs, tol_p50, tol_rate, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
bench = {}
key = None
for line in open(log):
    m = re.match(r"ITEM key=(\S+)", line)
    if m:
        key = m.group(1)
        continue
    if key and line.startswith("RESULT tw_") and "_bench_" in key:
        f = dict(kv.split("=", 1) for kv in line.split()[2:] if "=" in kv)
        r = int(key.split("_")[0][5:])
        if line.split()[1] == "tw_sync_noop":
            bench[("sync", r)] = (float(f["p50"].rstrip("ns")), float(f["calls/s"]))
        elif line.split()[1] == "tw_pipe_noop_W64":
            bench[("pipe", r)] = (None, float(f["calls/s"]))
tw = {}
for row in csv.DictReader(open(runs)):
    m = re.match(r"agree(\d+)_twperf_(sync|pipe)$", row["label"])
    if m:
        tw[(m.group(2), int(m.group(1)))] = (float(row["p50_ns"]), float(row["calls_per_s"]))
rows, ok = [], True
w = csv.writer(open(out, "w"))
w.writerow(["what", "round", "bench_rpc", "tw_perf", "ratio"])
for what, idx, name, tol in (("sync", 0, "p50_ns one in flight", tol_p50),
                             ("sync", 1, "calls/s one in flight", tol_rate),
                             ("pipe", 1, "calls/s 64 in flight", tol_rate)):
    ratios = []
    for k in sorted(set(bench) & set(tw)):
        if k[0] != what or bench[k][idx] is None:
            continue
        ratio = tw[k][idx] / bench[k][idx]
        ratios.append(ratio)
        w.writerow([name, k[1], f"{bench[k][idx]:.0f}", f"{tw[k][idx]:.0f}", f"{ratio:.3f}"])
    if not ratios:
        print(f"{name}: no pairs")
        ok = False
        continue
    med = statistics.median(ratios)
    agree = abs(med - 1) <= tol
    ok = ok and agree
    print(f"{name}: tw-perf / bench-rpc median {med:.3f} over {len(ratios)} rounds "
          f"(spread {min(ratios):.3f} .. {max(ratios):.3f}); within {tol:.0%}: {'yes' if agree else 'NO'}")
print("tw-perf agrees with bench-rpc:", "yes" if ok else "NO")
PY

/usr/bin/python3 "$ROOT/perf/plot-tw-perf.py" --runs "$OUT/runs.csv" \
	--hist "$OUT/hist.csv" --anchors "$OUT/anchors.csv" --out "$PLOTS/tw-perf" \
	--title "tw-perf, $(date -u +%Y-%m-%d) $(nproc)-core $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
for f in runs hist anchors agree; do
	cp "$OUT/$f.csv" "$PLOTS/tw-perf-$f.csv"
done
cp "$OUT/agree.txt" "$PLOTS/tw-perf-agree.txt"
echo "# results: $OUT; plots: $PLOTS/tw-perf-cdf.png $PLOTS/tw-perf-load.png"
