#!/usr/bin/env bash
# monitoring/promtool.sh: check the rules and the dashboard with Prometheus'
# own promtool: `promtool check rules`, the unit tests of
# prometheus-rules.test.yaml, and a parse of every dashboard query (the Go
# tests TestPromtool*, which skip without promtool).
#
# promtool comes from $PROMTOOL, the PATH, or else Debian's prometheus
# package, downloaded with apt-get and unpacked into a cache directory
# (nothing is installed, no service is started). Fails if none can be had.
#
# With --fetch it only makes sure promtool is there and prints its path
# (scripts/ci-deps.sh runs that, so that `make test` finds it).
set -euo pipefail

fetch_only=false
if [ "${1:-}" = "--fetch" ]; then
	fetch_only=true
fi

cd "$(dirname "$0")/.."

if [ -z "${PROMTOOL:-}" ]; then
	if command -v promtool >/dev/null; then
		PROMTOOL=$(command -v promtool)
	else
		cache=${XDG_CACHE_HOME:-$HOME/.cache}/iot-producer/prometheus-deb
		if [ ! -x "$cache/usr/bin/promtool" ]; then
			command -v apt-get >/dev/null || {
				echo "promtool.sh: no promtool and no apt-get; set PROMTOOL" >&2
				exit 1
			}
			tmp=$(mktemp -d)
			trap 'rm -rf "$tmp"' EXIT
			echo "promtool.sh: fetching promtool from Debian's prometheus package"
			(cd "$tmp" && apt-get -o APT::Sandbox::User=root download prometheus >/dev/null) || {
				echo "promtool.sh: apt-get download prometheus failed (run apt-get update?)" >&2
				exit 1
			}
			rm -rf "$cache"
			mkdir -p "$cache"
			dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
			install -D -m 0755 "$tmp/x/usr/bin/promtool" "$cache/usr/bin/promtool"
		fi
		PROMTOOL=$cache/usr/bin/promtool
	fi
fi
if $fetch_only; then
	echo "$PROMTOOL"
	exit 0
fi
"$PROMTOOL" --version 2>&1 | head -n1
export PROMTOOL
out=$(go test -count=1 -run 'TestPromtool' -v ./monitoring/ 2>&1) || {
	printf '%s\n' "$out"
	exit 1
}
printf '%s\n' "$out" | grep -E '^(--- |ok)'
if grep -q -- '--- SKIP' <<<"$out"; then
	echo "promtool.sh: a promtool test skipped although PROMTOOL=$PROMTOOL" >&2
	exit 1
fi
