#!/usr/bin/env bash
# systemd/check.sh UNIT: what systemd-analyze says of the unit, without
# installing it. Fails when the exposure (`security --offline=true`) is
# above 1.5, or when `verify` finds a problem in it other than the two the
# unit's comments explain (systemd before 254 does not know RestartSteps=
# and RestartMaxDelaySec=) and the binary not being installed here.
set -euo pipefail

UNIT=${1:?usage: systemd/check.sh path/to/iot-producer.service}
command -v systemd-analyze >/dev/null || {
	echo "systemd-analyze not found (Debian: apt-get install systemd)" >&2
	exit 1
}
version=$(systemd-analyze --version | awk 'NR == 1 {print $2}')

out=$(systemd-analyze security --offline=true --threshold=15 "$UNIT" 2>&1) || {
	printf '%s\n' "$out" | grep '✗' >&2 || true
	printf '%s\n' "$out" | tail -n 1 >&2
	echo "FAIL: exposure above 1.5" >&2
	exit 1
}
printf 'systemd %s: %s\n' "$version" "$(printf '%s\n' "$out" | grep 'Overall exposure level')"

# verify of a file outside the unit path: the binary, the manual page and
# other units may be missing here; problems in the unit's own lines and keys
# are what counts.
tolerated="Command /usr/bin/iot-producer is not executable|Command 'man iot-producer\(1\)' failed"
if ((version < 254)); then
	tolerated+="|Unknown key '(RestartSteps|RestartMaxDelaySec)' in section \[Service\], ignoring\."
fi
out=$(systemd-analyze verify --man=no "$UNIT" 2>&1 || true)
problems=$(printf '%s\n' "$out" | grep -F "$(basename "$UNIT")" | grep -Ev "$tolerated" || true)
if [[ -n "${problems}" ]]; then
	printf '%s\n' "$problems" >&2
	echo "FAIL: systemd-analyze verify $UNIT" >&2
	exit 1
fi
echo "systemd-analyze verify: no problem in $(basename "$UNIT")"
