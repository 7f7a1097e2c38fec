#!/bin/sh
# Installs everything tensorwire needs to build, test, fuzz and benchmark on
# Debian 12 (run as root). Safe to run again: apt-get skips what is there.
set -eu
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: run as root (apt-get)" >&2
	exit 1
fi
pkgs="build-essential pkg-config meson ninja-build
      liburing-dev libcriterion-dev libsodium-dev nettle-dev
      libdpdk-dev dpdk
      clang libclang-rt-14-dev clang-format-14
      python3 python3-numpy python3-dev python3-pytest python3-torch
      python3-mesonpy python3-matplotlib
      iproute2 systemtap-sdt-dev binutils
      ucx-utils"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
echo "install-deps: ok"
