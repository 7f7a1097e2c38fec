#!/bin/sh
# The USDT probes (dataplane/probe.h) are in the built library: readelf -n
# lists a stapsdt note per probe site, provider tensorwire (meson runs
# this only in builds that found sys/sdt.h).
set -eu
lib=$1
notes=$(readelf -n "$lib")
status=0
for p in call_send call_done call_timeout frame_recv handler_start \
	handler_end response_send conn_up conn_down dpdk_rexmit; do
	if printf '%s\n' "$notes" | grep -q "Name: $p\$"; then
		echo "PASS probe $p"
	else
		echo "FAIL probe $p missing from $lib"
		status=1
	fi
done
n=$(printf '%s\n' "$notes" | grep -c "Provider: tensorwire" || true)
echo "$n stapsdt notes of provider tensorwire"
exit $status
