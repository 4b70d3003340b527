#!/usr/bin/env bash
# systemd/nspawn-check.sh BINARY: run the unit under a real systemd, booted in
# a systemd-nspawn container, and check its restart behaviour case by case:
#
#   start          Type=notify reaches "active (running)"; /health answers
#                  (the agent works under every sandboxing option of the unit)
#   panic          SIGQUIT makes Go exit 2, as a panic does: restarted
#   watchdog       the agent is frozen (SIGSTOP): after WatchdogSec=30s systemd
#                  sends SIGABRT, Go exits 2, result "watchdog": restarted
#   many failures  12 quick exits in a row: still restarted (no start limit)
#   bad config     run refuses the file and exits 78: failed, not restarted
#   reload         systemctl reload (SIGHUP) keeps it running
#
# For machines without systemd as PID 1 (CI containers, these dev machines).
# Needs root and Debian's systemd-container package, or its systemd-nspawn
# extracted next to a matching systemd (NSPAWN=path). The container's root is
# a directory under $WORK (default /var/tmp/iot-producer-nspawn) with a copy
# of /etc and the host's /usr read-only, a private network, and its own /tmp
# and /var: nothing of the host is written but $WORK and nspawn's lock files
# in /run/systemd/nspawn. Takes about two minutes (the watchdog case waits
# for WatchdogSec=30s).
set -euo pipefail

BIN=${1:?usage: systemd/nspawn-check.sh path/to/iot-producer (static, linux)}
HERE=$(cd "$(dirname "$0")" && pwd)
UNIT="$HERE/iot-producer.service"
NSPAWN=${NSPAWN:-$(command -v systemd-nspawn || true)}
WORK=${WORK:-/var/tmp/iot-producer-nspawn}
[[ -x "${NSPAWN}" ]] || {
	echo "systemd-nspawn not found: install systemd-container, or set NSPAWN" >&2
	exit 1
}
(($(id -u) == 0)) || {
	echo "must run as root" >&2
	exit 1
}

R="$WORK/root"
rm -rf "$WORK"
mkdir -p "$R"/{var,dev,proc,sys,run,tmp,root,usr,home} "$WORK/usr/bin"
for l in bin sbin lib lib64; do
	if [[ -L "/$l" ]]; then ln -s "$(readlink "/$l")" "$R/$l"; fi
done
cp -a /etc "$R/etc"
rm -f "$R/etc/os-release" && cp /usr/lib/os-release "$R/etc/os-release"
: >"$R/etc/machine-id" # a transient one, not the host's
grep -q '^iot-producer:' "$R/etc/group" || echo 'iot-producer:x:10001:' >>"$R/etc/group"
grep -q '^iot-producer:' "$R/etc/passwd" ||
	echo 'iot-producer:x:10001:10001:iot-producer:/var/lib/iot-producer:/usr/sbin/nologin' >>"$R/etc/passwd"
cp "$UNIT" "$R/etc/systemd/system/iot-producer.service"
printf '[Unit]\nDescription=iot-producer checks\nWants=iot-producer.service\n' >"$R/etc/systemd/system/iot-check.target"
mkdir -p "$R/etc/iot-producer"
good='gateway:\n  id: nspawn-check\ndevice:\n  enabled: true\n  count: 2\nproducer:\n  brokers: [127.0.0.1:9092]\n'
printf '%b' "$good" >"$R/etc/iot-producer/config.yaml"
cp "$BIN" "$WORK/usr/bin/iot-producer"

"$NSPAWN" --register=no --keep-unit -D "$R" --overlay-ro="/usr:$WORK/usr:/usr" \
	--private-network --machine=iot-producer-check --boot -- systemd.unit=iot-check.target \
	>"$WORK/console.log" 2>&1 &
nspawn_pid=$!
stop_container() {
	kill -TERM "$nspawn_pid" 2>/dev/null || true
	wait "$nspawn_pid" 2>/dev/null || true
}
trap stop_container EXIT

leader=
for _ in $(seq 1 100); do
	leader=$(pgrep -P "$nspawn_pid" | head -n 1 || true)
	[[ -n "$leader" ]] && break
	sleep 0.1
done
[[ -n "$leader" ]] || {
	cat "$WORK/console.log" >&2
	exit 1
}
cin() { nsenter -t "$leader" -a "$@"; }
prop() { cin systemctl show iot-producer -p "$1" --value 2>/dev/null || true; }
state() { cin systemctl show iot-producer -p ActiveState,SubState,Result,ExecMainStatus,NRestarts --no-pager 2>/dev/null | tr '\n' ' '; }
fail() {
	echo "FAIL: $*" >&2
	cin journalctl -u iot-producer --no-pager -n 40 >&2 || true
	exit 1
}
# wait_for SECONDS PROPERTY VALUE: poll until the property has the value.
wait_for() {
	local deadline=$((SECONDS + $1))
	while ((SECONDS < deadline)); do
		[[ "$(prop "$2")" == "$3" ]] && return 0
		sleep 0.5
	done
	return 1
}
# wait_running N: until active (running) after N restarts.
wait_running() {
	local deadline=$((SECONDS + 60))
	while ((SECONDS < deadline)); do
		[[ "$(prop NRestarts)" == "$1" && "$(prop SubState)" == running ]] && return 0
		sleep 0.5
	done
	return 1
}

echo "systemd $(cin systemctl --version | awk 'NR == 1 {print $2}') in systemd-nspawn"
wait_running 0 || fail "start: not running: $(state)"
cin curl -fsS localhost:8081/health >/dev/null || fail "start: /health does not answer"
echo "ok   start: $(state)"

cin systemctl kill -s SIGQUIT iot-producer
wait_for 10 ExecMainStatus 2 || true
wait_running 1 || fail "panic (exit 2): not restarted: $(state)"
echo "ok   panic, exit 2: restarted: $(state)"

cin kill -STOP "$(prop MainPID)"
wait_running 2 || fail "watchdog: not restarted: $(state)"
journal=$(cin journalctl -u iot-producer --no-pager)
grep -q "Failed with result 'watchdog'" <<<"$journal" || fail "watchdog: the restart was not the watchdog's"
echo "ok   watchdog (frozen agent): SIGABRT, restarted: $(state)"

for n in $(seq 3 14); do
	cin systemctl kill -s SIGQUIT iot-producer
	wait_running "$n" || fail "quick failure $n: not restarted: $(state)"
done
echo "ok   12 more quick failures: still restarted: $(state)"

cin systemctl reload iot-producer
[[ "$(prop SubState)" == running ]] || fail "reload: $(state)"
echo "ok   reload: $(state)"

printf 'producer:\n  batch_size: 0\n' >"$R/etc/iot-producer/config.yaml"
cin systemctl restart iot-producer 2>/dev/null || true
wait_for 10 ExecMainStatus 78 || fail "bad config: exit status not 78: $(state)"
restart_sec=$(($(prop RestartUSec | tr -dc 0-9)))
sleep $((restart_sec * 3)) # three restart delays: a restart would have happened
[[ "$(prop ActiveState)" == failed && "$(prop NRestarts)" == 0 ]] || fail "bad config: $(state)"
echo "ok   bad config, exit 78: not restarted after $((restart_sec * 3)) s: $(state)"
