#!/bin/sh
# bench-python.sh: tensorwire.rpc beside torch.distributed.rpc (issue 14).
#
#   sh perf/bench-python.sh [bench-python.py options: --quick, --rounds N, ...]
#
# Builds ./build if it has no tensorwire._C yet, then runs
# perf/bench-python.py with Debian's /usr/bin/python3 (python3-torch) and
# the build tree's package; see that script for what is measured.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
PY=${PYTHON_TORCH:-/usr/bin/python3}
if ! ls "$BUILD"/python/tensorwire/_C*.so >/dev/null 2>&1; then
	[ -d "$BUILD" ] || meson setup "$BUILD" "$ROOT" -Dbuildtype=release
	ninja -C "$BUILD"
fi
exec "$PY" "$ROOT/perf/bench-python.py" --build "$BUILD" "$@"
