#!/usr/bin/env bash
# packaging/test.sh DEB: install the iot-producer .deb on this machine, check
# it works, remove and purge it, and check that nothing is left.
# `make package-test` runs it; it needs root and dpkg, and a machine without
# iot-producer installed (it refuses to touch an existing installation).
#
# It does not need a running systemd: the maintainer scripts must work
# without one (containers, image builds), and the agent is started here by
# hand, as the iot-producer user, the way the unit would start it.
#
# Every check either passes or fails the script. The only things it may
# skip are the external linters (lintian, systemd-analyze) when they are
# not installed; each skip is printed and counted in the summary.
set -euo pipefail

DEB=${1:?usage: packaging/test.sh path/to/iot-producer_VERSION_ARCH.deb}
HERE=$(cd "$(dirname "$0")" && pwd)
USER_NAME=iot-producer
BIN=/usr/bin/iot-producer
CONF=/etc/iot-producer/config.yaml
STATE_DIR=/var/lib/iot-producer
UNIT=/lib/systemd/system/iot-producer.service
WANTS=/etc/systemd/system/multi-user.target.wants/iot-producer.service

passed=0
skipped=0
step() { printf '\n== %s\n' "$*"; }
ok() {
	passed=$((passed + 1))
	printf '  ok   %s\n' "$*"
}
skip() {
	skipped=$((skipped + 1))
	printf '  SKIP %s\n' "$*"
}
fail() {
	printf '  FAIL %s\n' "$*" >&2
	exit 1
}
# check DESCRIPTION COMMAND...: run COMMAND, fail with DESCRIPTION if it fails.
check() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else fail "$what (command: $*)"; fi
}

[ "$(id -u)" = 0 ] || fail "must run as root: it installs a package"
command -v dpkg >/dev/null || fail "dpkg not found: this test needs a Debian-based system"
[ -f "$DEB" ] || fail "no such package: $DEB"

# --- the version mapping ----------------------------------------------------
step "packaging/debversion.sh"
while read -r in want; do
	[ "$in" = '""' ] && in=
	got=$("$HERE/debversion.sh" "$in")
	[ "$got" = "$want" ] || fail "debversion.sh '$in' = '$got', want '$want'"
	dpkg --validate-version "$got" || fail "debversion.sh '$in' = '$got' is not a valid Debian version"
done <<'EOF'
v1.2.3                   1.2.3
v1.2.3-rc.1              1.2.3~rc.1
v1.2.3-5-gabc1234        1.2.3+git5.gabc1234
v1.2.3-5-gabc1234-dirty  1.2.3+git5.gabc1234.dirty
v1.2.3-dirty             1.2.3+dirty
abc1234                  0~git.abc1234
4b05659-dirty            0~git.4b05659.dirty
dev                      0~dev
""                       0~dev
EOF
ok "every git describe form maps to a valid Debian version"
check "a pre-release sorts before its release, a later commit after it" \
	dpkg --compare-versions 1.2.3~rc.1 lt 1.2.3
check "builds after a tag sort after it" dpkg --compare-versions 1.2.3 lt 1.2.3+git5.gabc1234
check "untagged builds sort before any release" dpkg --compare-versions 0~git.abc1234 lt 0.0.1

# --- the package file -------------------------------------------------------
step "package contents: $DEB"
version=$(dpkg-deb -f "$DEB" Version)
arch=$(dpkg-deb -f "$DEB" Architecture)
check "Package is iot-producer" test "$(dpkg-deb -f "$DEB" Package)" = iot-producer
check "Version $version is valid" dpkg --validate-version "$version"
check "Architecture $arch is this machine's ($(dpkg --print-architecture))" \
	test "$arch" = "$(dpkg --print-architecture)"
contents=$(dpkg-deb -c "$DEB" | awk '{print $1, $2, $6}')
for want in \
	'-rwxr-xr-x root/root ./usr/bin/iot-producer' \
	'-rw-r----- root/root ./etc/iot-producer/config.yaml' \
	'-rw------- root/root ./etc/default/iot-producer' \
	'-rw-r--r-- root/root ./lib/systemd/system/iot-producer.service' \
	'-rw-r--r-- root/root ./usr/share/doc/iot-producer/copyright' \
	'-rw-r--r-- root/root ./usr/share/doc/iot-producer/changelog.gz' \
	'-rw-r--r-- root/root ./usr/share/man/man1/iot-producer.1.gz'; do
	grep -qxF -- "$want" <<<"$contents" || fail "dpkg-deb -c lacks '$want'; it has:
$contents"
done
ok "files, modes and owners as expected"
ctrl=$(mktemp -d)
trap 'rm -rf "$ctrl"' EXIT
dpkg-deb -e "$DEB" "$ctrl"
check "conffiles are config.yaml and /etc/default/iot-producer" \
	test "$(sort "$ctrl/conffiles" | tr '\n' ' ')" = "/etc/default/iot-producer /etc/iot-producer/config.yaml "
for s in postinst prerm postrm; do
	check "$s is executable and passes sh -n" sh -n "$ctrl/$s"
done

if command -v lintian >/dev/null; then
	# lintian warns about running as root on stderr; its findings go to stdout.
	out=$(lintian --pedantic "$DEB" 2>/dev/null) || fail "lintian failed:
$out"
	[ -z "$out" ] || fail "lintian findings:
$out"
	ok "lintian --pedantic: no findings"
else
	skip "lintian not installed (apt-get install lintian)"
fi

# --- install ---------------------------------------------------------------
step "install"
if dpkg-query -W -f='${Status}' iot-producer 2>/dev/null | grep -q 'installed\|config-files'; then
	fail "iot-producer is already installed here: this test would remove it; purge it first"
fi
for p in /etc/iot-producer "$STATE_DIR" /usr/bin/iot-producer; do
	[ ! -e "$p" ] || fail "$p exists already: this test would delete it"
done
user_existed=no
if getent passwd "$USER_NAME" >/dev/null; then user_existed=yes; fi

agent_pid=
installed=no
cleanup() {
	local rc=$?
	if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
		kill -KILL "$agent_pid" 2>/dev/null || true
	fi
	if [ "$installed" = yes ]; then
		dpkg --purge iot-producer >/dev/null 2>&1 || true
	fi
	if [ "$user_existed" = no ] && getent passwd "$USER_NAME" >/dev/null; then
		deluser --quiet --system "$USER_NAME" >/dev/null 2>&1 || true
		delgroup --quiet --system "$USER_NAME" >/dev/null 2>&1 || true
	fi
	rm -rf "$ctrl" "${work:-}"
	exit "$rc"
}
trap cleanup EXIT

installed=yes
out=$(dpkg -i "$DEB" 2>&1) || fail "dpkg -i failed:
$out"
printf '%s\n' "$out" | sed 's/^/  | /'
check "dpkg reports it installed" \
	test "$(dpkg-query -W -f='${Status} ${Version}' iot-producer)" = "install ok installed $version"

got=$("$BIN" version)
check "iot-producer version runs: '$got'" grep -q '^iot-producer [^ ]' <<<"$got"
check "user $USER_NAME exists with nologin shell" \
	test "$(getent passwd "$USER_NAME" | cut -d: -f7)" = /usr/sbin/nologin
groups_of=$(id -nG "$USER_NAME")
check "user is in groups iot-producer and dialout ($groups_of)" \
	grep -qw dialout <<<"$groups_of"
grep -qw iot-producer <<<"$groups_of" || fail "user not in group iot-producer: $groups_of"
check "config.yaml is root:iot-producer 0640" test "$(stat -c '%U:%G %a' "$CONF")" = "root:iot-producer 640"
check "state dir is iot-producer:iot-producer 0750" \
	test "$(stat -c '%U:%G %a' "$STATE_DIR")" = "iot-producer:iot-producer 750"
check "unit installed in /lib/systemd/system" test -f "$UNIT"
check "unit enabled (multi-user.target.wants symlink)" test "$(readlink "$WANTS")" = "$UNIT"
# Processes of the service user (other iot-producer processes on this
# machine, e.g. of other tests, are not the package's).
if pgrep -u "$USER_NAME" >/dev/null; then fail "the agent was started on first install: $(pgrep -a -u "$USER_NAME")"; fi
ok "not started on first install"

if command -v systemd-analyze >/dev/null; then
	out=$(systemd-analyze verify "$UNIT" 2>&1) || fail "systemd-analyze verify: $out"
	# systemd before 254 does not know the growing restart delay and says
	# so for exactly these two keys; the unit's comments explain it.
	sd_version=$(systemd-analyze --version | awk 'NR == 1 {print $2}')
	if ((sd_version < 254)); then
		out=$(grep -Ev "iot-producer.service:[0-9]+: Unknown key '(RestartSteps|RestartMaxDelaySec)' in section \[Service\], ignoring\.$" <<<"$out" || true)
	fi
	# verify also reports problems in other units of the machine; only ours count.
	if grep -q 'iot-producer' <<<"$out"; then fail "systemd-analyze verify: $out"; fi
	ok "systemd-analyze verify $UNIT (systemd $sd_version)"
	score=$(systemd-analyze security --offline=true --threshold=15 "$UNIT" 2>/dev/null | awk '/Overall exposure level/ {print $(NF-2)}') ||
		fail "systemd-analyze security: exposure $score above 1.5"
	ok "systemd-analyze security --offline=true: exposure $score (at most 1.5)"
else
	skip "systemd-analyze not installed"
fi

# --- the installed configuration -------------------------------------------
step "configuration"
check "iot-producer validate -c $CONF (as root)" "$BIN" validate -c "$CONF"
# setpriv execs the agent itself (runuser would fork it and SIGKILL it 2 s
# after a SIGTERM), with the user's groups as systemd's User= gives them.
as_user() { setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups -- "$@"; }
check "validate as the $USER_NAME user (it can read its configuration)" \
	as_user "$BIN" validate -c "$CONF"
work=$(mktemp -d)
chmod 0755 "$work"
printf 'producer:\n  batch_size: 0\n' >"$work/bad.yaml"
set +e
"$BIN" validate -c "$work/bad.yaml" >/dev/null 2>&1
rc=$?
set -e
check "validate of a bad file exits 2 (got $rc)" test "$rc" = 2

# --- run the agent as the service would ------------------------------------
step "run as $USER_NAME"
# The installed file with its ports moved to free ones (port 0) and pprof
# off, so the test does not collide with anything listening here.
sed -e 's/^\(  metrics_listen:\).*/\1 "127.0.0.1:0"/' \
	-e 's/^\(  health_listen:\).*/\1 "127.0.0.1:0"/' \
	-e 's/^\(  pprof_listen:\).*/\1 "off"/' "$CONF" >"$work/config.yaml"
chmod 0644 "$work/config.yaml"
grep -q '"127.0.0.1:0"' "$work/config.yaml" || fail "could not rewrite the listen addresses"
log=$work/agent.log
# Not through as_user: $! must be the agent's own pid, for the SIGTERM below.
setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups -- \
	"$BIN" run -c "$work/config.yaml" 2>"$log" &
agent_pid=$!
health=
for _ in $(seq 1 100); do
	health=$(sed -n 's/.*msg="agent started".* health=\([^ ]*\).*/\1/p' "$log")
	[ -n "$health" ] && break
	kill -0 "$agent_pid" 2>/dev/null || fail "the agent exited at start:
$(cat "$log")"
	sleep 0.1
done
[ -n "$health" ] || fail "no 'agent started' line within 10 s:
$(cat "$log")"
ok "agent started, health endpoint $health"
# /health over bash's /dev/tcp: no curl needed.
exec 3<>"/dev/tcp/${health%:*}/${health##*:}"
printf 'GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
status=$(head -n1 <&3 | tr -d '\r')
exec 3<&-
check "GET /health: $status" grep -q ' 200' <<<"$status"
check "buffer created in $STATE_DIR, owned by $USER_NAME" \
	test "$(stat -c %U "$STATE_DIR/buffer.db")" = "$USER_NAME"
kill -TERM "$agent_pid"
set +e
waited=0
while kill -0 "$agent_pid" 2>/dev/null && [ "$waited" -lt 300 ]; do
	sleep 0.1
	waited=$((waited + 1))
done
wait "$agent_pid"
rc=$?
set -e
agent_pid=
check "SIGTERM: the agent stopped with status 0 within 30 s (status $rc)" test "$rc" = 0
check "'agent stopped' logged" grep -q 'msg="agent stopped"' "$log"

# --- upgrade path: the same package again -----------------------------------
step "reinstall (upgrade path)"
echo "# local change" >>"$CONF"
out=$(dpkg -i "$DEB" 2>&1) || fail "dpkg -i (again) failed:
$out"
check "the administrator's config.yaml was kept" grep -qx '# local change' "$CONF"
check "its mode stays root:iot-producer 0640" test "$(stat -c '%U:%G %a' "$CONF")" = "root:iot-producer 640"
check "the buffer survived" test -f "$STATE_DIR/buffer.db"

# --- remove, then purge -----------------------------------------------------
step "remove"
out=$(dpkg -r iot-producer 2>&1) || fail "dpkg -r failed:
$out"
check "binary removed" test ! -e /usr/bin/iot-producer
check "unit removed" test ! -e "$UNIT"
check "configuration kept after remove" test -f "$CONF"
check "buffer kept after remove (unsent samples)" test -f "$STATE_DIR/buffer.db"

step "purge"
out=$(dpkg --purge iot-producer 2>&1) || fail "dpkg --purge failed:
$out"
installed=no
if dpkg-query -W iot-producer >/dev/null 2>&1; then
	fail "dpkg still knows iot-producer: $(dpkg-query -W -f='${Status}' iot-producer)"
fi
ok "dpkg no longer knows the package"
for p in /usr/bin/iot-producer /etc/iot-producer /etc/default/iot-producer "$STATE_DIR" "$UNIT" "$WANTS" \
	/usr/share/doc/iot-producer /usr/share/man/man1/iot-producer.1.gz; do
	if [ -e "$p" ] || [ -L "$p" ]; then fail "$p is still there after purge"; fi
done
ok "no file left: binary, /etc/iot-producer, /etc/default, $STATE_DIR, unit, enable link, docs"

printf '\npackage-test: %d passed, 0 failed, %d skipped\n' "$passed" "$skipped"
