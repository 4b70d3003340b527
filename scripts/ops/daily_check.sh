#!/usr/bin/env bash
# scripts/ops/daily_check.sh: the daily check of an iot-producer gateway,
# on a systemd gateway or in Kubernetes (see lib.sh for the settings).
#
#   1. the service: systemctl is-active, or the pods
#   2. /health (alive) and /ready (each component's state, since when, why)
#   3. the key metrics: records sent and failed, the queue on disk, the
#      oldest buffered record, drops, dead letters, the uplink state
#   4. ERROR lines in the last 24 hours of the log
#
# Exit status: 0 all is well, 1 something needs attention (listed at the
# end), 2 the check itself could not run.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

attention=()
need() { attention+=("$*"); }

detect_mode
say "=== iot-producer daily check ($(date -u +%Y-%m-%dT%H:%M:%SZ), mode ${IOT_MODE}) ==="

say "1. service"
case "${IOT_MODE}" in
systemd)
	state=$(systemctl is-active "${IOT_UNIT}" || true)
	say "   ${IOT_UNIT}: ${state}"
	[[ "${state}" == active ]] || need "unit ${IOT_UNIT} is ${state}"
	;;
k8s)
	kubectl get pods -n "${IOT_NAMESPACE}" -l app.kubernetes.io/name=iot-producer -o wide | sed 's/^/   /'
	;;
local) say "   (no service manager: checking the ports only)" ;;
esac

endpoints
say "2. health and readiness"
if curl -fsS --max-time 5 "${HEALTH_URL}/health" >/dev/null; then
	say "   /health: ok"
else
	need "/health does not answer at ${HEALTH_URL}"
	say "   /health: FAILED"
fi
ready=$(mktemp)
ready_code=$(curl -s -o "${ready}" -w '%{http_code}' --max-time 5 "${HEALTH_URL}/ready" || true)
if [[ -s "${ready}" ]]; then
	if command -v jq >/dev/null; then
		jq -r '"   status: \(.status)", (.components[] | "   \(.name): \(.state) since \(.since) \(.detail)"), ((.warnings // [])[] | "   warning: \(.)")' "${ready}"
		while IFS= read -r line; do need "${line}"; done < <(jq -r '.components[] | select(.state != "ok") | "\(.name) is \(.state): \(.detail)"' "${ready}")
	else
		sed 's/^/   /' "${ready}"
		say ""
	fi
fi
rm -f "${ready}"
[[ "${ready_code}" == 200 ]] || need "/ready answered ${ready_code:-nothing} (not ready)"

say "3. key metrics"
if m=$(metrics); then
	for name in kafka_messages_sent_total kafka_send_errors_total kafka_batches_sent_total \
		kafka_producer_buffer_depth iot_buffer_oldest_age_seconds iot_buffer_file_bytes \
		iot_buffer_dropped_records_total iot_ingest_samples_dropped_total \
		iot_dead_letter_records_total iot_driver_errors_total device_data_generated_total; do
		printf '   %-36s %s\n' "${name}" "$(metric_sum "${name}" <<<"${m}")"
	done
	grep -E '^iot_uplink_state\{.*\} 1$' <<<"${m}" | sed 's/^/   /' || true
	for bad in backing_off refused; do
		if grep -qE "^iot_uplink_state\{.*state=\"${bad}\".*\} 1$" <<<"${m}"; then
			need "a sink is ${bad} (iot_uplink_state)"
		fi
	done
	dropped=$(metric_sum iot_buffer_dropped_records_total <<<"${m}")
	[[ "${dropped}" == absent || "${dropped}" == 0 ]] || need "the buffer dropped ${dropped} records since it was created (iot_buffer_dropped_records_total)"
	dead=$(metric_sum iot_dead_letter_records_total <<<"${m}")
	[[ "${dead}" == absent || "${dead}" == 0 ]] || need "${dead} records were dead-lettered (iot-producer buffer export -queue kafka.dead; replay with buffer replay)"
else
	need "/metrics does not answer at ${METRICS_URL}"
fi

say "4. errors in the log (last 24 hours)"
case "${IOT_MODE}" in
systemd)
	errors=$(journalctl -u "${IOT_UNIT}" --since "24 hours ago" --no-pager -o cat 2>/dev/null | grep -c 'level=ERROR' || true)
	;;
k8s)
	errors=$(kubectl logs -n "${IOT_NAMESPACE}" deployment/iot-producer --since=24h 2>/dev/null | grep -c 'level=ERROR' || true)
	;;
local) errors="" ;;
esac
if [[ -n "${errors}" ]]; then
	say "   ERROR lines: ${errors}"
	[[ "${errors}" == 0 ]] || need "${errors} ERROR lines in the last 24 hours of the log"
else
	say "   (no log to read in local mode)"
fi

if ((${#attention[@]} > 0)); then
	say "=== needs attention ==="
	printf '   - %s\n' "${attention[@]}"
	exit 1
fi
say "=== all well ==="
