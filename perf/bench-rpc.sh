#!/bin/sh
# bench-rpc.sh: tensorwire's RPC benchmark beside its anchors, all in one run.
#
#   sh perf/bench-rpc.sh [--quick | --full] [--no-torch] [--only LIST]
#                        [--build DIR] [--cc NAME]
#
# Builds tensorwire (DIR, default ./build-bench, set up as a release build with
# LTO: bench-lib.sh, bench_build) and the physical-limit anchors (in a
# scratch copy of ../shared/anchors), then runs, one after the other with the
# same pinning (client cpu0, server cpu1) and a quiet-machine wait and a vCPU
# placement probe around each item:
#   raw io_uring TCP ping-pong 64 B, 1 KiB, 1 MiB; io_uring pipelined 64 B
#   echo W=64 and W=256; io_uring TCP stream of 64 MiB messages; memcpy 1 MiB
#   and 64 MiB; tensorwire's perf/bench-rpc, each part right after its
#   anchors; the same-host rows (issue 15): UCX's ucx_perftest over shared
#   memory (perf/ucx-pair.sh, UCX_TLS=shm,self; ucx-utils): 64 B tag
#   latency, 64 B message rate, bandwidth at 1 MiB and 64 MiB; each right
#   before bench-rpc --transport shm (no-op rpc_sync, pipelined W=64/256,
#   1 MiB and 64 MiB echo), same pinning; then PAIRS (21; --quick 3, --full 31) short anchor/tensorwire
#   pairs for the 64 MiB, 1 KiB and 1 MiB targets (anchor first in odd
#   rounds, tensorwire first in even ones); torch.distributed.rpc's
#   bench.py
# with, right after tensorwire's remote + to_here (item tw_rref: bench-rpc
# --only rref, the RRef through a third worker included), torch's own
# (item torch_rref: perf/torch-rref.py, the same workloads on bench.py's
# configs and process policy),
# and summarizes: perf/bench-rpc-summary.py prints the table (each tensorwire
# figure beside its anchor, the ratio, the targets met or missed) and writes
# perf/results/latest.json. Logs: perf/results/bench-rpc-<timestamp>.log.
#
# TCP congestion control: tensorwire's loopback connections use reno
# whatever the system's default (dataplane/uring.h, "Congestion control");
# the anchors and torch use the system's. So that every ratio compares
# like with like, the run switches the system default to the same
# algorithm (--cc NAME, default reno: both sides then use NAME; needs
# root) and restores it on exit; without root the log says the ratios are
# not like for like.
# Modes: default = full tensorwire and anchor runs, torch --quick;
# --quick = everything short (a few minutes); --full = torch's full run too.
# --only LIST: only these groups of items (comma-separated; default all):
#   sync (pp64, tw_sync), rref (tw_rref, torch_rref), pipe, echo (stream,
#   memcpy, tw_echo), lat (pp1k, pp1m, tw_lat), same (the same-host rows:
#   ucx_*, sh_*), pairs (the paired rounds), torch (bench.py). --no-torch
#   leaves out torch_rref and bench.py.
# An item run while other processes used >= 0.15 cores is redone (up to
# RETRIES=2 times) and the least disturbed attempt is kept.
# Env: QUIET_MAX (s to wait for a quiet machine per item, default 120),
#      RETRIES, PYTHON_TORCH (default /usr/bin/python3).

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
MODE=default
TORCH=1
ONLY=
BUILD=
CC=reno
while [ $# -gt 0 ]; do
	case $1 in
	--quick) MODE=quick ;;
	--full) MODE=full ;;
	--no-torch) TORCH=0 ;;
	--only) ONLY=$2; shift ;;
	--only=*) ONLY=${1#--only=} ;;
	--build|-B) BUILD=$2; shift ;;
	--build=*) BUILD=${1#--build=} ;;
	--cc) CC=$2; shift ;;
	--cc=*) CC=${1#--cc=} ;;
	-h|--help) usage; exit 0 ;;
	*) echo "bench-rpc.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null) ||
	ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${BUILD:-$ROOT/build-bench}
case $BUILD in /*) ;; *) BUILD=$ORIG/$BUILD ;; esac
ANCHORS=$ROOT/../shared/anchors
[ -d "$ANCHORS/limits" ] || ANCHORS=/work/shared/anchors
PYTHON_TORCH=${PYTHON_TORCH:-/usr/bin/python3}
QUIET_MAX=${QUIET_MAX:-120}
RETRIES=${RETRIES:-2}
FOREIGN_MAX=0.15 # cores used by other processes during an item

OUT=$ROOT/perf/results
mkdir -p "$OUT"
TS=$(date +%Y%m%d-%H%M%S)
LOG=$OUT/bench-rpc-$TS.log
SCRATCH=$(mktemp -d /tmp/tw-bench-rpc.XXXXXX) || exit 1
CUR=
CC_FILE=/proc/sys/net/ipv4/tcp_congestion_control
CC_ORIG=$(cat "$CC_FILE" 2>/dev/null)
CC_SWITCHED=

cleanup() {
	if [ -n "$CUR" ]; then
		# Each item runs in its own session: end the whole group
		# (forked servers, torch's spawned workers).
		kill -TERM -- "-$CUR" 2>/dev/null
		sleep 0.5
		kill -KILL -- "-$CUR" 2>/dev/null
		wait "$CUR" 2>/dev/null
		CUR=
	fi
	rm -rf "$SCRATCH"
	if [ -n "$CC_SWITCHED" ]; then
		echo "$CC_ORIG" >"$CC_FILE" 2>/dev/null ||
			echo "bench-rpc.sh: could not restore $CC_FILE to $CC_ORIG" >&2
		CC_SWITCHED=
	fi
}
trap cleanup EXIT
trap 'echo "bench-rpc.sh: interrupted" >&2; exit 130' INT TERM

log() { echo "$*" | tee -a "$LOG"; }

# want GROUP: whether --only names it (or --only was not given)
want() {
	[ -z "$ONLY" ] && return 0
	case ",$ONLY," in *",$1,"*) return 0 ;; esac
	return 1
}
for g in $(echo "$ONLY" | tr ',' ' '); do
	case $g in
	sync|rref|pipe|echo|lat|same|pairs|torch) ;;
	*) echo "bench-rpc.sh: unknown group '$g' in --only" >&2; usage >&2; exit 2 ;;
	esac
done
torch_ok() {
	"$PYTHON_TORCH" -c 'import torch' >/dev/null 2>&1 && [ -f "$SCRATCH/torch_rpc/bench.py" ]
}

# ---- build ------------------------------------------------------------------
# shellcheck source=bench-lib.sh
. "$ROOT/perf/bench-lib.sh"
bench_build "$BUILD" bench-rpc.sh

cp -r "$ANCHORS/limits" "$SCRATCH/limits" || exit 1
cp -r "$ANCHORS/torch_rpc" "$SCRATCH/torch_rpc" 2>/dev/null
chmod -R u+w "$SCRATCH"
rm -rf "$SCRATCH/limits/results"
make -s -C "$SCRATCH/limits" uring_pingpong uring_pipeline uring_stream \
	shm_pingpong memcpy_bw >"$SCRATCH/make.log" 2>&1 || {
	cat "$SCRATCH/make.log" >&2
	echo "bench-rpc.sh: building the anchors failed" >&2
	exit 1
}
L=$SCRATCH/limits
# shellcheck source=/dev/null
. "$L/tools/quiet.sh"

# ---- sizes ------------------------------------------------------------------
case $MODE in
quick)
	N=20000; N1M=500; PIPE_N=1000000; STREAM_N=32; MEMCPY_T=100
	PROBE_N=20000; BENCH_ARGS=--quick; TORCH_ARGS=--quick; PAIRS=3 ;;
full)
	N=100000; N1M=2000; PIPE_N=5000000; STREAM_N=0; MEMCPY_T=300
	PROBE_N=100000; BENCH_ARGS=; TORCH_ARGS=; PAIRS=31 ;;
*)
	N=100000; N1M=2000; PIPE_N=5000000; STREAM_N=0; MEMCPY_T=300
	PROBE_N=100000; BENCH_ARGS=; TORCH_ARGS=--quick; PAIRS=21 ;;
esac
# ucx_perftest iterations: 64 B latency, 64 B message rate, 1 MiB, 64 MiB
UCX_N="$N $((PIPE_N * 2)) $((N1M * 10)) $((N1M / 10))"
W=$((N / 10))
UF="-m peek -f defer,fixed,ringfd"

# ---- running items ----------------------------------------------------------

log "# bench-rpc.sh $TS mode=$MODE torch=$TORCH only=${ONLY:-all} host=$(hostname) kernel=$(uname -r) cpus=$(nproc)"
log "# $(grep -m1 'model name' /proc/cpuinfo)"
log "# git $(git -C "$ROOT" describe --always --dirty 2>/dev/null) build $BUILD_DESC"
log "# loadavg_start $(cut -d' ' -f1-3 /proc/loadavg)"
# ---- congestion control: the same for the anchors and tensorwire -----------
if [ -z "$CC_ORIG" ]; then
	log "# tcp_congestion: unknown system default; tensorwire on $CC"
elif [ "$CC_ORIG" = "$CC" ]; then
	log "# tcp_congestion: $CC for anchors, torch and tensorwire (the system default)"
elif echo "$CC" >"$CC_FILE" 2>/dev/null; then
	CC_SWITCHED=1
	log "# tcp_congestion: $CC for anchors, torch and tensorwire (system default $CC_ORIG, switched for this run)"
else
	log "# tcp_congestion: NOT LIKE FOR LIKE: anchors and torch on the system's $CC_ORIG, tensorwire on $CC (run as root to switch)"
fi
echo "# log: $LOG"

# Each tensorwire part runs right after its anchors (the vCPU placement
# changes every 10-30 s) and is short, so a disturbed one is cheap to redo.
if want sync; then
	item pp64 600 "$L/uring_pingpong" $UF -n "$N" -w "$W"
	item tw_sync 600 "$BENCH" --cc "$CC" $BENCH_ARGS --only sync
fi
if want rref; then
	# remote + to_here beside rpc_sync in the same processes, then an
	# RRef through a third worker (issue 13); torch's right after.
	item tw_rref 600 "$BENCH" --cc "$CC" $BENCH_ARGS --only rref
	if [ "$TORCH" = 1 ]; then
		if torch_ok; then
			# torch-rref.py does its own quiet waits and redoes
			# disturbed items, as bench.py.
			ITEM_RETRIES=0 item torch_rref 1200 sh -c "cd '$SCRATCH/torch_rpc' && exec '$PYTHON_TORCH' '$ROOT/perf/torch-rref.py' $TORCH_ARGS --anchor '$SCRATCH/torch_rpc' --out '$OUT/torch-rref-$TS.json'"
		else
			log "# torch_rref: SKIPPED: '$PYTHON_TORCH -c \"import torch\"' fails (apt-get install python3-torch) or bench.py missing"
		fi
	else
		log "# torch_rref: SKIPPED (--no-torch)"
	fi
fi
if want pipe; then
	item pipe64 600 "$L/uring_pipeline" -x batch $UF -W 64 -n "$PIPE_N"
	item pipe256 600 "$L/uring_pipeline" -x batch $UF -W 256 -n "$PIPE_N"
	item tw_pipe 600 "$BENCH" --cc "$CC" $BENCH_ARGS --only pipe
fi
if want echo; then
	if [ "$STREAM_N" -gt 0 ]; then
		item stream64m 600 "$L/uring_stream" -x send -R uring -M 67108864 -n "$STREAM_N"
	else
		item stream64m 600 "$L/uring_stream" -x send -R uring -M 67108864
	fi
	item memcpy 600 "$L/memcpy_bw" -t 7 -T "$MEMCPY_T" 1048576 67108864
	item tw_echo 900 "$BENCH" --cc "$CC" $BENCH_ARGS --only echo
fi
if want lat; then
	item pp1k 600 "$L/uring_pingpong" $UF -s 1024 -n "$N" -w "$W"
	item pp1m 600 "$L/uring_pingpong" $UF -s 1048576 -n "$N1M" -w $((N1M / 10))
	item tw_lat 600 "$BENCH" --cc "$CC" $BENCH_ARGS --only lat
fi
# The same-host rows (issue 15): the same-host transport (shared-memory
# rings, met over io_uring: bench-rpc --transport shm), each part right
# after its UCX anchor over shared memory, pinned as ours.
if want same; then
	if command -v ucx_perftest >/dev/null 2>&1; then
		set -- $UCX_N
		UP="sh $ROOT/perf/ucx-pair.sh"
		item ucx_lat 300 $UP ucx_tag_lat_64B tag_lat 64 "$1"
		item sh_sync 600 "$BENCH" --transport shm --cc "$CC" $BENCH_ARGS --only sync
		item ucx_mr 300 $UP ucx_tag_mr_64B tag_bw 64 "$2"
		item sh_pipe 600 "$BENCH" --transport shm --cc "$CC" $BENCH_ARGS --only pipe
		item ucx_bw1m 300 $UP ucx_tag_bw_1MiB tag_bw 1048576 "$3"
		item ucx_bw64m 300 $UP ucx_tag_bw_64MiB tag_bw 67108864 "$4"
		item sh_echo 900 "$BENCH" --transport shm --cc "$CC" $BENCH_ARGS --only echo -S 1M,64M
		set --
	else
		log "# same: SKIPPED: ucx_perftest not found (apt-get install ucx-utils; scripts/install-deps.sh)"
	fi
fi
# Paired rounds for the three targets whose margin is small (64 MiB echo
# against the stream; 1 KiB and 1 MiB echo against the ping-pong): the vCPU
# placement flips every 10-30 s and moves each of these by more than the
# margin (far placement halves the stream and the echo alike), so each is
# also measured as short anchor/tensorwire pairs, PAIRS rounds; the
# summary takes the median of the per-pair ratios, leaving out pairs whose
# placement probes disagree.
# pair R A B: items A then B in odd rounds, B then A in even ones, so a
# drift of the machine during a round weighs on both sides alike.
pair() {
	if [ $(($1 % 2)) = 1 ]; then
		eval "$2"
		eval "$3"
	else
		eval "$3"
		eval "$2"
	fi
}
want pairs || PAIRS=0
for r in $(seq 1 "$PAIRS"); do
	pair "$r" 'item "pair${r}_stream" 300 "$L/uring_stream" -x send -R uring -M 67108864 -n 24' \
		'item "pair${r}_echo64" 300 "$BENCH" --cc "$CC" --only echo -S 64M -E 1'
	# Each echo right beside its own anchor, with as many samples (the
	# 1 KiB p50s differ by a few percent; 5000 samples moved one by
	# more than that).
	pair "$r" 'item "pair${r}_pp1k" 300 "$L/uring_pingpong" $UF -s 1024 -n 20000 -w 2000' \
		'item "pair${r}_lat1k" 300 "$BENCH" --cc "$CC" --only lat1k'
	pair "$r" 'item "pair${r}_pp1m" 300 "$L/uring_pingpong" $UF -s 1048576 -n 500 -w 50' \
		'item "pair${r}_lat1m" 300 "$BENCH" --cc "$CC" --quick --only lat1m'
done
if ! want torch; then
	:
elif [ "$TORCH" = 1 ]; then
	if torch_ok; then
		# bench.py does its own quiet waits and redoes disturbed items.
		ITEM_RETRIES=0 item torch 1800 sh -c "cd '$SCRATCH/torch_rpc' && exec '$PYTHON_TORCH' bench.py $TORCH_ARGS --out '$SCRATCH/torch_results.json'"
		[ -f "$SCRATCH/torch_results.json" ] && cp "$SCRATCH/torch_results.json" "$OUT/torch-$TS.json"
	else
		log "# torch: SKIPPED: '$PYTHON_TORCH -c \"import torch\"' fails (apt-get install python3-torch) or bench.py missing"
	fi
else
	log "# torch: SKIPPED (--no-torch)"
fi
log "# loadavg_end $(cut -d' ' -f1-3 /proc/loadavg)"

TJ=
[ -f "$OUT/torch-$TS.json" ] && TJ=$OUT/torch-$TS.json
python3 "$ROOT/perf/bench-rpc-summary.py" --log "$LOG" ${TJ:+--torch "$TJ"} \
	--json "$OUT/latest.json" --cmd "sh perf/bench-rpc.sh${ARGS:+ $ARGS}" | tee "$OUT/bench-rpc-$TS.summary.md"
echo "# log: $LOG"
echo "# json: $OUT/latest.json"
