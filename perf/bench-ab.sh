#!/bin/sh
# bench-ab.sh: two builds' perf/bench-rpc in paired rounds, for a change's
# cost (issue 16 part 7): each round runs A, B, A again (A/A: the noise
# between paired rounds) and, when given, C, in an order rotated per
# round, over each transport; every run's RESULT lines go to OUT tagged
# "ROUND SIDE TRANSPORT". perf/bench-ab-summary.py makes the table.
#
#   flock /tmp/tw-bench.lock sh perf/bench-ab.sh ROUNDS OUT A_BIN B_BIN [C_BIN]
#
# BENCH_ONLY (default sync,lat1k), BENCH_ARGS (default --quick) and
# TRANSPORTS (default "shm uring") choose what runs. Take the lock
# around the whole script, as above: its rounds must not interleave with
# other benchmarks.
[ $# -ge 4 ] || {
	echo "usage: bench-ab.sh ROUNDS OUT A_BIN B_BIN [C_BIN]" >&2
	exit 2
}
N=$1 OUT=$2 A=$3 B=$4 C=${5:-}
: >"$OUT" || exit 1
run() { # side transport round
	case $1 in A | A2) bin=$A ;; B) bin=$B ;; C) bin=$C ;; esac
	# shellcheck disable=SC2086 # BENCH_ARGS is a list of words
	"$bin" ${BENCH_ARGS:---quick} --only "${BENCH_ONLY:-sync,lat1k}" \
		--transport "$2" 2>&1 |
		awk -v t="$3 $1 $2" '/^RESULT/ { print t, $0 }' >>"$OUT"
}
for r in $(seq "$N"); do
	case $((r % 4)) in
	1) order="A B C A2" ;; 2) order="B C A2 A" ;;
	3) order="C A2 A B" ;; 0) order="A2 A B C" ;;
	esac
	for t in ${TRANSPORTS:-shm uring}; do
		for s in $order; do
			[ "$s" = C ] && [ -z "$C" ] && continue
			run "$s" "$t" "$r"
		done
	done
done
