#!/usr/bin/env bash
# scripts/ops/backup_config.sh: back up what is needed to rebuild an
# iot-producer gateway, on a systemd gateway or in Kubernetes (settings:
# lib.sh). Usage: backup_config.sh [DIR]; DIR defaults to $IOT_BACKUP_DIR,
# else /backup/iot-producer. Each file is stamped with the date and time.
#
#   systemd/local  the configuration file ($IOT_CONFIG), /etc/default/iot-producer
#                  (it may hold passwords: kept 0600), the unit with its
#                  drop-ins (systemd), the effective configuration as the
#                  agent runs it (/config, secrets redacted) and the buffer's
#                  numbers (depth, age, drops, file size) from /metrics
#   k8s            the ConfigMap, the Secret (0600: it holds credentials), the
#                  Deployment, plus /config and the buffer's numbers through
#                  kubectl port-forward
#
# The buffer file itself is not copied: it is live data the running agent
# holds locked (`iot-producer buffer stats` reads it once the agent is stopped).
# Exit status: 0 done, 2 failed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dir=${1:-${IOT_BACKUP_DIR:-/backup/iot-producer}}
stamp=$(date +%Y%m%d_%H%M%S)
umask 077
mkdir -p "${dir}" || die "cannot create ${dir}"
detect_mode
written=()
keep() { written+=("$1"); }

case "${IOT_MODE}" in
systemd | local)
	[[ -r "${IOT_CONFIG}" ]] || die "cannot read ${IOT_CONFIG} (set IOT_CONFIG)"
	cp "${IOT_CONFIG}" "${dir}/config-${stamp}.yaml"
	keep "${dir}/config-${stamp}.yaml"
	if [[ -r /etc/default/iot-producer ]]; then
		cp /etc/default/iot-producer "${dir}/environment-${stamp}"
		keep "${dir}/environment-${stamp}"
	fi
	if [[ "${IOT_MODE}" == systemd ]]; then
		systemctl cat "${IOT_UNIT}" >"${dir}/unit-${stamp}.service"
		keep "${dir}/unit-${stamp}.service"
	fi
	;;
k8s)
	for kind in configmap/iot-producer-config secret/iot-producer-secrets deployment/iot-producer; do
		file="${dir}/${kind%%/*}-${stamp}.yaml"
		kubectl get -n "${IOT_NAMESPACE}" "${kind}" -o yaml >"${file}" || die "kubectl get ${kind} failed"
		keep "${file}"
	done
	;;
esac

endpoints
if curl -fsS --max-time 10 "${METRICS_URL}/config" >"${dir}/effective-config-${stamp}.json"; then
	keep "${dir}/effective-config-${stamp}.json"
else
	rm -f "${dir}/effective-config-${stamp}.json"
	warn "the agent's /config did not answer at ${METRICS_URL} (is it running?); the files above are backed up"
fi
if m=$(metrics); then
	grep -E '^(iot_buffer_|kafka_producer_buffer_depth|iot_dead_letter_records_total|iot_build_info)' <<<"${m}" >"${dir}/buffer-stats-${stamp}.txt" || true
	keep "${dir}/buffer-stats-${stamp}.txt"
fi

say "backup done: ${dir}"
printf '   %s\n' "${written[@]}"
