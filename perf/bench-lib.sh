# bench-lib.sh: running one benchmark item the way ../shared/anchors do,
# shared by perf/bench-rpc.sh and perf/bench-dpdk.sh (sourced; bash).
#
# The caller sets L (the anchors' build, for shm_pingpong), PROBE_N, SCRATCH,
# LOG, QUIET_MAX, RETRIES, FOREIGN_MAX, has sourced the anchors'
# tools/quiet.sh (wait_quiet), and keeps CUR for its cleanup. It may define
# item_after, run after every attempt (e.g. to clear a DPDK run dir).

# busy CPU seconds of the whole VM (as bench.py's LoadMeter), in centiseconds
sys_busy_cs() {
	local _c user nice system idle iow irq softirq _r
	read -r _c user nice system idle iow irq softirq _r </proc/stat
	local hz
	hz=$(getconf CLK_TCK)
	echo $(( (user + nice + system + irq + softirq) * 100 / hz ))
}
# CPU seconds of our reaped children, in centiseconds, from a file holding
# the output of bash's `times` (which must run in this shell, not in a
# $(...) subshell: that one has children of its own).
kids_cs() {
	sed -n 2p "$1" | awk '{
		t = 0
		for (i = 1; i <= 2; i++) {
			split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2]
		}
		printf "%d\n", t * 100 }'
}
now_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }
# TCP segments retransmitted so far, machine-wide (loopback should have none)
retrans() { awk '$1 == "Tcp:" && $13 ~ /^[0-9]+$/ { print $13 }' /proc/net/snmp; }

probe() {
	"$L/shm_pingpong" -n "$PROBE_N" -w $((PROBE_N / 10)) 2>/dev/null |
		awk '/^RESULT/{ sub("p50=", "", $4); sub("ns", "", $4); print $4 }'
}

# item KEY TIMEOUT_S CMD...: wait for quiet, probe, run (in its own session),
# probe; redo when disturbed; log the kept attempt's output after an ITEM line.
item() {
	local key=$1 tmo=$2
	shift 2
	local best= bestf=999 a retries=${ITEM_RETRIES:-$RETRIES}
	for a in $(seq 0 "$retries"); do
		wait_quiet "$QUIET_MAX" 10 2>&1 | tee -a "$LOG" >&2
		local pa pb b0 k0 t0 b1 k1 t1 r0 r1 rc foreign f=$SCRATCH/item.$key.$a
		pa=$(probe)
		times >"$SCRATCH/times0"
		r0=$(retrans); b0=$(sys_busy_cs); t0=$(now_cs)
		setsid timeout --kill-after=10 "$tmo" "$@" >"$f" 2>&1 &
		CUR=$!
		wait "$CUR"
		rc=$?
		# strays of the item's group, if any
		pgrep -g "$CUR" >/dev/null 2>&1 && kill -KILL -- "-$CUR" 2>/dev/null
		CUR=
		if declare -F item_after >/dev/null; then
			item_after
		fi
		times >"$SCRATCH/times1"
		b1=$(sys_busy_cs); t1=$(now_cs); r1=$(retrans)
		k0=$(kids_cs "$SCRATCH/times0"); k1=$(kids_cs "$SCRATCH/times1")
		pb=$(probe)
		foreign=$(awk -v b=$((b1 - b0)) -v k=$((k1 - k0)) -v t=$((t1 - t0)) \
			'BEGIN { f = t > 0 ? (b - k) / t : 0; if (f < 0) f = 0; printf "%.2f", f }')
		{
			echo "ITEM key=$key attempt=$((a + 1)) rc=$rc foreign_cores=$foreign probe_before_ns=$pa probe_after_ns=$pb tcp_retrans=$((r1 - r0)) wall_s=$(awk -v t=$((t1 - t0)) 'BEGIN{printf "%.1f", t/100}')"
			# (an item that runs this script again logs its own)
			[ "$1" = "$0" ] || echo "CMD $*"
		} >"$f.head"
		echo "# $key: attempt $((a + 1)), rc=$rc, foreign load $foreign cores, probe ${pa}/${pb} ns" >&2
		if awk -v f="$foreign" -v b="$bestf" 'BEGIN { exit !(f < b) }'; then
			best=$f
			bestf=$foreign
		fi
		if [ "$rc" -ne 0 ] || awk -v f="$foreign" -v m="$FOREIGN_MAX" 'BEGIN { exit !(f < m) }'; then
			break
		fi
		echo "# $key: disturbed by other processes ($foreign cores); redoing" >&2
	done
	for a in $(seq 0 "$retries"); do
		local f=$SCRATCH/item.$key.$a
		[ -f "$f" ] || continue
		if [ "$f" = "$best" ]; then
			cat "$f.head" "$f" >>"$LOG"
		else
			# kept for the record, ignored by the summarizer
			sed 's/^/DISCARDED /' "$f.head" "$f" >>"$LOG"
		fi
	done
	grep -h '^RESULT\|^ITEM\|rror' "$best.head" "$best" | sed 's/^/  /'
}

# bench_build DIR WHO: build perf/bench-rpc in DIR, set up there first (when
# it has no build.ninja yet) as a release build with link-time optimization:
# what a deployment builds, and what the figures are for. Across the
# library's files LTO inlines the per-call path (value encoder, agent,
# transport) into fewer, closer functions; on this machine that took ~10%
# off the library's cycles per 1 KiB echo (perf/RESULTS.md, "Session 4").
# An existing DIR is used as it is configured. Sets BENCH and BUILD_DESC.
bench_build() {
	local dir=$1 who=$2
	if [ ! -f "$dir/build.ninja" ]; then
		echo "# meson setup $dir -Dbuildtype=release -Db_lto=true"
		meson setup "$dir" -Dbuildtype=release -Db_lto=true \
			>"$SCRATCH/meson.log" 2>&1 || {
			cat "$SCRATCH/meson.log" >&2
			exit 1
		}
	fi
	ninja -C "$dir" perf/bench-rpc >"$SCRATCH/ninja.log" 2>&1 || {
		tail -40 "$SCRATCH/ninja.log" >&2
		echo "$who: building perf/bench-rpc in $dir failed" >&2
		exit 1
	}
	BENCH=$dir/perf/bench-rpc
	BUILD_DESC=$(python3 - "$dir" <<'PY'
import json, sys
opts = {o["name"]: o["value"] for o in json.load(open(sys.argv[1] + "/meson-info/intro-buildoptions.json"))}
print(f"buildtype={opts.get('buildtype')} b_lto={str(opts.get('b_lto')).lower()}")
PY
)
}
