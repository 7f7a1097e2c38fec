#!/bin/sh
# ucx-pair.sh: one UCX ucx_perftest run over shared memory, the anchor of
# perf/bench-rpc.sh's same-host rows (issue 15).
#
#   sh perf/ucx-pair.sh NAME TEST BYTES ITERS [PORT]
#
# Starts the ucx_perftest server pinned to cpu1, then its client pinned to
# cpu0 against 127.0.0.1 (as bench-rpc pins its server and client), with
# UCX_TLS=${UCX_TLS:-shm,self}: UCX's shared-memory transports (posix,
# sysv, cma, ...) and self, no TCP. TEST is ucx_perftest's -t (tag_lat:
# ping-pong, half the round trip reported; tag_bw: one way, a window of
# messages in flight). Prints the client's "Final:" line as
#   RESULT NAME p50_us=.. avg_us=.. MB/s=.. GB/s=.. msgs/s=..
# where ucx_perftest's MB/s is MiB/s (2^20 B, its MB) and GB/s is 1e9 B/s
# (tensorwire's GB). Exits with the client's status.
set -u
if [ $# -lt 4 ]; then
	echo "usage: ucx-pair.sh NAME TEST BYTES ITERS [PORT]" >&2
	exit 2
fi
NAME=$1 TEST=$2 BYTES=$3 ITERS=$4 PORT=${5:-$((20000 + $$ % 20000))}
export UCX_TLS="${UCX_TLS:-shm,self}"
PERF=$(command -v ucx_perftest) || {
	echo "ucx-pair.sh: ucx_perftest not found (apt-get install ucx-utils)" >&2
	exit 1
}
OUTF=$(mktemp /tmp/tw-ucx.XXXXXX) || exit 1
SRVF=$OUTF.srv
trap 'rm -f "$OUTF" "$SRVF"' EXIT

echo "CMD UCX_TLS=$UCX_TLS taskset -c 1 $PERF -p $PORT -c 1 &"
echo "CMD UCX_TLS=$UCX_TLS taskset -c 0 $PERF 127.0.0.1 -p $PORT -c 0 -t $TEST -s $BYTES -n $ITERS"
taskset -c 1 "$PERF" -p "$PORT" -c 1 >"$SRVF" 2>&1 &
SPID=$!
RC=1
for _ in 1 2 3 4 5 6 7 8 9 10; do
	sleep 0.3
	taskset -c 0 "$PERF" 127.0.0.1 -p "$PORT" -c 0 -t "$TEST" \
		-s "$BYTES" -n "$ITERS" >"$OUTF" 2>&1
	RC=$?
	# The server may not listen yet: try again.
	grep -q 'Final:' "$OUTF" && break
	kill -0 "$SPID" 2>/dev/null || break
done
for _ in $(seq 1 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
kill "$SPID" 2>/dev/null
wait "$SPID" 2>/dev/null
sed 's/^/[cli] /' "$OUTF"
grep -q 'Final:' "$OUTF" || sed 's/^/[srv] /' "$SRVF"
# Final: iterations, latency p50 / average / overall (us), bandwidth
# average / overall (MB/s), message rate average / overall (msg/s).
awk -v name="$NAME" '$1 == "Final:" {
	printf "RESULT %s p50_us=%s avg_us=%s MB/s=%s GB/s=%.3f msgs/s=%s\n",
		name, $3, $4, $6, $6 * 1048576 / 1e9, $8
	found = 1
} END { exit !found }' "$OUTF" || RC=1
exit "$RC"
