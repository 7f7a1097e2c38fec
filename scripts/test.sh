#!/bin/sh
# The whole test suite, as CI runs it: installs dependencies, then
#   0. the formatting check (scripts/check-format.sh, .clang-format),
#   1. a -Werror build and `meson test` (unit, integration, corpus replay),
#   2. the same under AddressSanitizer + UndefinedBehaviorSanitizer,
#   3. libFuzzer on the frame decoder for FUZZ_SECONDS (default 40), on
#      the schema parser and on the DPDK packet parser for half that each,
#      on the connection handshake and the stream reassembler for a
#      quarter, on the same-host transport's ring consumer for 15 s: they
#      must find nothing.
# Prints one "N passed, N failed" line at the end; exits non-zero on failure.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
FUZZ_SECONDS=${FUZZ_SECONDS:-40}
status=0
summary=""
sanitizer_failures=0

setup() { # dir, meson args...
	dir=$1; shift
	if [ -d "$dir" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
}

run_suite() { # dir
	if ! meson test -C "$1" --print-errorlogs --num-processes 2; then
		status=1
	fi
	# criterion runs each test in a child and does not turn a
	# LeakSanitizer report into a failure: read the logs ourselves.
	if grep -nE 'ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:' \
		"$1/meson-logs/testlog.txt"; then
		echo "sanitizer reports in $1 (above): failing" >&2
		status=1
		sanitizer_failures=$((sanitizer_failures + 1))
	fi
	summary="$summary $1/meson-logs/testlog.json"
}

format_failed=0
echo "== format: clang-format-14"
if ! sh scripts/check-format.sh; then
	status=1
	format_failed=1
fi

echo "== build: -Werror"
setup build-test -Dwerror=true -Dtests=true
ninja -C build-test
run_suite build-test

echo "== build: -Werror, ASan + UBSan"
setup build-asan -Dwerror=true -Dtests=true -Db_sanitize=address,undefined -Db_lundef=false
ninja -C build-asan
run_suite build-asan

fuzz_passed=0
fuzz_failed=0
CC=clang setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
# target:seconds — the frame decoder faces the network, so it gets the most.
# The rendezvous parsers sit behind authentication: a short run. So do the
# shared rings (only a proved peer of this user gets them), and each of
# their inputs is a whole connection: 15 s, some 4,000-6,000 of them.
for spec in fuzz_decode:$FUZZ_SECONDS fuzz_schema:$((FUZZ_SECONDS / 2)) \
	fuzz_dpdk_pkt:$((FUZZ_SECONDS / 2)) fuzz_auth:$((FUZZ_SECONDS / 4)) \
	fuzz_rdv:$((FUZZ_SECONDS / 4)) fuzz_stream_rx:$((FUZZ_SECONDS / 4)) \
	fuzz_shm_ring:15; do
	target=${spec%%:*}
	secs=${spec#*:}
	# A packet input is a control byte and up to the largest Ethernet
	# frame IPv4 allows (14 + 65535 bytes).
	# A handshake input is a control byte and at most 16 steps of an op
	# byte, 80 bytes, an 80-byte mask and a spoofed id byte.
	case $target in
	fuzz_dpdk_pkt) max_len=65550 ;;
	fuzz_auth) max_len=2600 ;;
	*) max_len=65536 ;;
	esac
	echo "== fuzz: $target, ${secs}s"
	ninja -C build-fuzz "tests/fuzz/$target"
	fuzz_work=$(mktemp -d)
	cp "tests/fuzz/corpus/$target"/* "$fuzz_work"/ 2>/dev/null || true
	if "build-fuzz/tests/fuzz/$target" "$fuzz_work" -max_total_time="$secs" \
		-rss_limit_mb=2048 -max_len=$max_len -print_final_stats=1 \
		-artifact_prefix="$fuzz_work/" 2>"build-fuzz/$target.log"; then
		fuzz_passed=$((fuzz_passed + 1))
		grep -E '^stat::number_of_executed_units|^Done' "build-fuzz/$target.log" || true
	else
		fuzz_failed=$((fuzz_failed + 1))
		status=1
		tail -n 60 "build-fuzz/$target.log"
		ls "$fuzz_work"/crash-* "$fuzz_work"/leak-* "$fuzz_work"/timeout-* 2>/dev/null || true
	fi
	rm -rf "$fuzz_work"
done

python3 - "$fuzz_passed" "$((fuzz_failed + sanitizer_failures + format_failed))" $summary <<'PY'
import json, sys
passed = int(sys.argv[1]); failed = int(sys.argv[2]); skipped = 0
bad = []
for path in sys.argv[3:]:
    for line in open(path):
        r = json.loads(line)
        res = r.get("result")
        if res in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif res == "SKIP":
            skipped += 1
        else:
            failed += 1
            bad.append((path.split("/")[0], r))
# Repeat each failure last: only the end of a CI log may be kept.
for build, r in bad:
    out = (r.get("stdout") or "") + (r.get("stderr") or "")
    tail = "\n".join(out.rstrip().splitlines()[-40:])
    print(f"== FAILED {build}: {r.get('name')} ({r.get('result')}, "
          f"{r.get('duration', 0):.1f}s); its last lines:\n{tail}")
for build, r in bad:
    print(f"FAILED {build}: {r.get('name')}")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
