#!/usr/bin/env bash
# Start and stop a throwaway Eclipse Mosquitto MQTT broker on 127.0.0.1 for
# end-to-end tests, using Debian's mosquitto package. Used by `make e2e` and CI.
set -euo pipefail

readonly DEFAULT_PORT=11883
readonly READY_TOPIC="mosquitto-sh/ready"

usage() {
	cat <<EOF
Usage: $(basename "$0") COMMAND [--port P] [--dir DIR] [--timeout SECONDS] [--persist]

Runs Debian's mosquitto on 127.0.0.1 only, anonymous access, no persistence
unless --persist. QoS 1 messages queued for a subscriber are never dropped
(max_queued_messages 0): tests count every message.

Commands:
  start    Write DIR/mosquitto.conf, start the broker and wait until an MQTT
           publish/subscribe round trip works. Installs mosquitto and
           mosquitto-clients with apt-get if they are missing. Prints
           MQTT_BROKER=tcp://127.0.0.1:P on stdout (also written to
           DIR/mosquitto.env).
  stop     SIGTERM the broker (SIGKILL after the timeout) and remove DIR's
           config and pid file; DIR/mosquitto.log is kept.
  status   Exit 0 if the broker in DIR is running.

Options:
  --port P          listener port (default ${DEFAULT_PORT})
  --dir DIR         state directory (default \${TMPDIR:-/tmp}/iot-producer-mosquitto-P)
  --timeout SECONDS how long start waits / stop waits before SIGKILL
                    (default 30 / 10)
  --persist         keep sessions and queued messages in DIR/data across a
                    stop and a start (start only)
EOF
}

log() { printf 'mosquitto.sh: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

PORT="${DEFAULT_PORT}"
DIR=""
TIMEOUT=""
PERSIST=false

# ensure_installed installs Debian's mosquitto and its clients if missing;
# apt-get update runs only if the install fails without it.
ensure_installed() {
	local missing=()
	command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]] || missing+=(mosquitto)
	command -v mosquitto_pub >/dev/null || missing+=(mosquitto-clients)
	((${#missing[@]} > 0)) || return 0
	((EUID == 0)) || die "${missing[*]} missing and not root: run scripts/ci-deps.sh as root"
	log "installing ${missing[*]} with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -qq "${missing[@]}" </dev/null >/dev/null 2>&1; then
		apt-get update -qq </dev/null >/dev/null
		apt-get install -y -qq "${missing[@]}" </dev/null >/dev/null
	fi
}

mosquitto_bin() {
	command -v mosquitto || printf '/usr/sbin/mosquitto\n'
}

pid_file() { printf '%s/mosquitto.pid' "${DIR}"; }

# broker_pid prints the broker's pid if it is alive and is ours.
broker_pid() {
	local pid
	[[ -f "$(pid_file)" ]] || return 1
	pid="$(<"$(pid_file)")"
	[[ "${pid}" =~ ^[0-9]+$ ]] || return 1
	grep -qF "${DIR}/mosquitto.conf" "/proc/${pid}/cmdline" 2>/dev/null || return 1
	printf '%s\n' "${pid}"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; }

# round_trip publishes a retained message and reads it back, so it does not
# race with the subscription; then clears the retained message.
round_trip() {
	local token got
	token="ready-${RANDOM}${RANDOM}"
	mosquitto_pub -h 127.0.0.1 -p "${PORT}" -q 1 -r -t "${READY_TOPIC}" -m "${token}" 2>/dev/null || return 1
	got="$(mosquitto_sub -h 127.0.0.1 -p "${PORT}" -t "${READY_TOPIC}" -C 1 -W 3 2>/dev/null)" || return 1
	mosquitto_pub -h 127.0.0.1 -p "${PORT}" -q 1 -r -n -t "${READY_TOPIC}" 2>/dev/null || return 1
	[[ "${got}" == "${token}" ]]
}

show_log() {
	if [[ -s "${DIR}/mosquitto.log" ]]; then
		log "---- last lines of ${DIR}/mosquitto.log"
		tail -n 30 "${DIR}/mosquitto.log" >&2
	fi
}

cmd_start() {
	local pid deadline waited=0
	ensure_installed
	mkdir -p "${DIR}"
	if pid="$(broker_pid)"; then
		die "mosquitto is already running in ${DIR} (pid ${pid}); stop it first"
	fi
	! port_open || die "port ${PORT} on 127.0.0.1 is already in use"

	local persistence="persistence false"
	if [[ "${PERSIST}" == true ]]; then
		mkdir -p "${DIR}/data"
		persistence=""
		# Run as root, mosquitto drops to its own user, which may not reach
		# DIR (a test's private temporary directory): keep root instead.
		((EUID != 0)) || persistence="user root
"
		persistence+="persistence true
persistence_location ${DIR}/data/
autosave_interval 1"
	fi
	cat >"${DIR}/mosquitto.conf" <<EOF
# Written by scripts/mosquitto.sh for tests: loopback only, no auth.
per_listener_settings false
listener ${PORT} 127.0.0.1
allow_anonymous true
${persistence}
max_queued_messages 0
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
log_timestamp_format %Y-%m-%dT%H:%M:%S
EOF
	# The inner shell writes its pid and execs mosquitto; the log goes to a
	# file we opened, so it stays writable after mosquitto drops root.
	# shellcheck disable=SC2016 # $$ is the inner shell's
	setsid bash -c 'echo "$$" >"$1"; shift; exec "$@"' mosquitto-broker \
		"$(pid_file)" "$(mosquitto_bin)" -c "${DIR}/mosquitto.conf" \
		</dev/null >"${DIR}/mosquitto.log" 2>&1 &
	until [[ -s "$(pid_file)" ]] || ((waited++ > 50)); do sleep 0.1; done

	deadline=$((SECONDS + ${TIMEOUT:-30}))
	until port_open && round_trip; do
		if ! broker_pid >/dev/null; then
			show_log
			die "mosquitto exited during startup"
		fi
		if ((SECONDS >= deadline)); then
			show_log
			die "mosquitto did not complete a publish/subscribe round trip within ${TIMEOUT:-30}s"
		fi
		sleep 0.2
	done
	printf 'MQTT_BROKER=tcp://127.0.0.1:%s\n' "${PORT}" | tee "${DIR}/mosquitto.env"
	log "ready in ${SECONDS}s; log in ${DIR}/mosquitto.log"
}

cmd_stop() {
	local pid deadline
	if pid="$(broker_pid)"; then
		kill -TERM "${pid}" 2>/dev/null || true
		deadline=$((SECONDS + ${TIMEOUT:-10}))
		while kill -0 "${pid}" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				log "mosquitto (pid ${pid}) ignored SIGTERM; sending SIGKILL"
				kill -KILL "${pid}" 2>/dev/null || true
			fi
			sleep 0.1
		done
		log "stopped"
	else
		log "not running in ${DIR}"
	fi
	rm -f "$(pid_file)" "${DIR}/mosquitto.conf" "${DIR}/mosquitto.env"
}

cmd_status() {
	local pid
	if pid="$(broker_pid)"; then
		printf 'mosquitto: running (pid %s) on 127.0.0.1:%s\n' "${pid}" "${PORT}"
		printf 'MQTT_BROKER=tcp://127.0.0.1:%s\n' "${PORT}"
	else
		printf 'mosquitto: stopped\n'
		return 1
	fi
}

main() {
	local cmd="${1:-}"
	[[ -n "${cmd}" ]] || {
		usage >&2
		exit 2
	}
	shift
	while (($# > 0)); do
		case "$1" in
		--port) PORT="${2:?--port needs a value}" && shift ;;
		--dir) DIR="${2:?--dir needs a value}" && shift ;;
		--timeout) TIMEOUT="${2:?--timeout needs a value}" && shift ;;
		--persist) PERSIST=true ;;
		-h | --help)
			usage
			return 0
			;;
		*) die "unknown option '$1' (see --help)" ;;
		esac
		shift
	done
	[[ "${PORT}" =~ ^[0-9]+$ ]] || die "--port must be a number, got '${PORT}'"
	[[ -z "${TIMEOUT}" || "${TIMEOUT}" =~ ^[0-9]+$ ]] || die "--timeout must be a number"
	DIR="$(realpath -m "${DIR:-${TMPDIR:-/tmp}/iot-producer-mosquitto-${PORT}}")"

	case "${cmd}" in
	start) cmd_start ;;
	stop) cmd_stop ;;
	status) cmd_status ;;
	-h | --help | help) usage ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
