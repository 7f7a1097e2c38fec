#!/bin/sh
# Installs dependencies, builds tensorwire and runs the demo.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
if [ -d build ]; then meson setup --reconfigure build >/dev/null; else meson setup build >/dev/null; fi
ninja -C build
exec build/tools/tw-demo "$@"
