#!/bin/sh
# Fails (and names the lines) when a C source or header is not formatted as
# .clang-format says. clang-format-14 is Debian 12's; another version may
# format differently, so the versioned binary is used. To fix:
#   git ls-files -z '*.c' '*.h' | xargs -0 clang-format-14 -i
set -eu
cd "$(dirname "$0")/.."
if ! command -v clang-format-14 >/dev/null 2>&1; then
	echo "check-format: clang-format-14 not found (apt-get install clang-format-14)" >&2
	exit 2
fi
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git ls-files -z '*.c' '*.h'
else
	find dataplane rpc include tools perf tests -name '*.[ch]' -print0
fi | xargs -0 clang-format-14 --dry-run --Werror
echo "check-format: ok"
