# shellcheck shell=bash
# scripts/ops/lib.sh: what daily_check.sh, weekly_check.sh and
# backup_config.sh share. Sourced, not run.
#
# Where the agent runs (IOT_MODE, else detected):
#   systemd  a gateway with the Debian package: systemctl, journalctl, the
#            agent's ports on this host
#   k8s      Kubernetes: kubectl in namespace $IOT_NAMESPACE (iot-monitoring);
#            the ports are reached with kubectl port-forward, as the
#            operations guide does by hand
#   local    an agent on this host without systemd (a container, a test):
#            only its ports
#
# Settings (environment):
#   IOT_MODE         systemd | k8s | local (default: detected)
#   IOT_HOST         host of the agent's ports in systemd/local mode (localhost)
#   IOT_METRICS_PORT metrics and /config port (8080)
#   IOT_HEALTH_PORT  /health and /ready port (8081)
#   IOT_UNIT         systemd unit (iot-producer)
#   IOT_NAMESPACE    Kubernetes namespace (iot-monitoring)
#   IOT_SERVICE      Kubernetes service (iot-producer-service)
#   IOT_CONFIG       configuration file in systemd/local mode (/etc/iot-producer/config.yaml)

IOT_HOST=${IOT_HOST:-localhost}
IOT_METRICS_PORT=${IOT_METRICS_PORT:-8080}
IOT_HEALTH_PORT=${IOT_HEALTH_PORT:-8081}
IOT_UNIT=${IOT_UNIT:-iot-producer}
IOT_NAMESPACE=${IOT_NAMESPACE:-iot-monitoring}
IOT_SERVICE=${IOT_SERVICE:-iot-producer-service}
IOT_CONFIG=${IOT_CONFIG:-/etc/iot-producer/config.yaml}

# PIDs of the port-forwards this script started, stopped on exit.
IOT_FORWARDS=()

say() { printf '%s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
	printf 'ERROR: %s\n' "$*" >&2
	exit 2
}

# detect_mode sets IOT_MODE when it is not set.
detect_mode() {
	if [[ -n "${IOT_MODE:-}" ]]; then
		case "${IOT_MODE}" in
		systemd | k8s | local) return 0 ;;
		*) die "IOT_MODE=${IOT_MODE}: want systemd, k8s or local" ;;
		esac
	fi
	if command -v systemctl >/dev/null && systemctl cat "${IOT_UNIT}" >/dev/null 2>&1; then
		IOT_MODE=systemd
	elif command -v kubectl >/dev/null && kubectl get namespace "${IOT_NAMESPACE}" >/dev/null 2>&1; then
		IOT_MODE=k8s
	else
		IOT_MODE=local
	fi
}

# stop_forwards ends the port-forwards started by forward.
stop_forwards() {
	local pid
	for pid in "${IOT_FORWARDS[@]}"; do
		kill "${pid}" 2>/dev/null || true
		wait "${pid}" 2>/dev/null || true
	done
	IOT_FORWARDS=()
}

# free_port prints a TCP port nothing listens on, from the ephemeral range.
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 10000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/${p}") 2>/dev/null; then
			printf '%s\n' "${p}"
			return 0
		fi
	done
	die "no free local port found"
}

# forward PORT VAR starts kubectl port-forward to the service's PORT on a
# free local port, waits until it answers (up to 20 s) and sets VAR to the
# local port. It runs in this shell, not in a $(...) subshell, so that
# stop_forwards knows the port-forward's PID and ends it.
forward() {
	local remote="$1" local_port pid
	local_port=$(free_port)
	kubectl port-forward -n "${IOT_NAMESPACE}" "svc/${IOT_SERVICE}" "${local_port}:${remote}" >/dev/null 2>&1 &
	pid=$!
	IOT_FORWARDS+=("${pid}")
	for _ in $(seq 100); do
		if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:${local_port}/"; then
			printf -v "$2" '%s' "${local_port}"
			return 0
		fi
		kill -0 "${pid}" 2>/dev/null || break
		sleep 0.2 # waiting for the port-forward to answer
	done
	die "kubectl port-forward to svc/${IOT_SERVICE}:${remote} did not come up"
}

# endpoints sets METRICS_URL and HEALTH_URL for the mode.
# shellcheck disable=SC2034 # used by the scripts that source this file
endpoints() {
	if [[ "${IOT_MODE}" == k8s ]]; then
		trap stop_forwards EXIT
		local metrics_port health_port
		forward "${IOT_METRICS_PORT}" metrics_port
		forward "${IOT_HEALTH_PORT}" health_port
		METRICS_URL="http://127.0.0.1:${metrics_port}"
		HEALTH_URL="http://127.0.0.1:${health_port}"
	else
		METRICS_URL="http://${IOT_HOST}:${IOT_METRICS_PORT}"
		HEALTH_URL="http://${IOT_HOST}:${IOT_HEALTH_PORT}"
	fi
}

# metrics prints the agent's /metrics, without comments.
metrics() {
	curl -fsS --max-time 10 "${METRICS_URL}/metrics" | grep -v '^#'
}

# metric_sum NAME [FILTER] prints the sum of the series of NAME (whose
# label set contains FILTER) in the metrics text on stdin.
metric_sum() {
	awk -v name="$1" -v filter="${2:-}" '
		{ split($1, a, "{"); if (a[1] != name) next
		  if (filter != "" && index($1, filter) == 0) next
		  sum += $NF; n++ }
		END { if (n == 0) print "absent"; else printf "%.15g\n", sum }'
}
