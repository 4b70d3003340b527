#!/usr/bin/env bash
# scripts/ops/weekly_check.sh: the weekly maintenance of an iot-producer
# gateway, on a systemd gateway or in Kubernetes (settings: lib.sh).
#
#   1. back up the configuration (backup_config.sh, into $IOT_BACKUP_DIR)
#   2. resource use: memory, CPU, goroutines, open files, restarts
#   3. the buffer: file size, free disk, oldest record, drops
#      (free disk of $IOT_STATE_DIR, /var/lib/iot-producer)
#   4. logs: the journal's disk use; log files older than 7 days in
#      $IOT_LOG_DIR (/var/log/iot-producer) are deleted, if that folder exists
#      (the agent itself logs to the journal, or to the pod's log)
#
# Exit status: 0 done, 1 something needs attention, 2 the check could not run.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${here}/lib.sh"

attention=()
need() { attention+=("$*"); }
detect_mode
export IOT_MODE
say "=== iot-producer weekly check ($(date -u +%Y-%m-%dT%H:%M:%SZ), mode ${IOT_MODE}) ==="

say "1. configuration backup"
if ! "${here}/backup_config.sh" "${IOT_BACKUP_DIR:-/backup/iot-producer}" | sed 's/^/   /'; then
	need "the configuration backup failed"
fi

endpoints
m=$(metrics) || die "/metrics does not answer at ${METRICS_URL}"

say "2. resource use"
rss=$(metric_sum process_resident_memory_bytes <<<"${m}")
[[ "${rss}" == absent ]] || say "   resident memory: $((${rss%.*} / 1048576)) MiB (the manual's alert fires above 400 MiB)"
say "   CPU seconds used: $(metric_sum process_cpu_seconds_total <<<"${m}")"
say "   goroutines: $(metric_sum go_goroutines <<<"${m}")"
say "   open files: $(metric_sum process_open_fds <<<"${m}") of $(metric_sum process_max_fds <<<"${m}")"
case "${IOT_MODE}" in
systemd)
	systemctl show "${IOT_UNIT}" -p NRestarts -p MemoryCurrent -p ActiveEnterTimestamp | sed 's/^/   /'
	;;
k8s)
	kubectl top pods -n "${IOT_NAMESPACE}" 2>/dev/null | sed 's/^/   /' || warn "kubectl top needs the metrics server"
	kubectl get pods -n "${IOT_NAMESPACE}" -l app.kubernetes.io/name=iot-producer \
		-o custom-columns='POD:.metadata.name,RESTARTS:.status.containerStatuses[0].restartCount,STARTED:.status.startTime' | sed 's/^/   /'
	;;
esac

say "3. buffer"
file=$(metric_sum iot_buffer_file_bytes <<<"${m}")
[[ "${file}" == absent ]] || say "   file: $((${file%.*} / 1048576)) MiB (it never shrinks; iot-producer buffer compact with the agent stopped)"
say "   records waiting: $(metric_sum kafka_producer_buffer_depth <<<"${m}")"
say "   oldest record: $(metric_sum iot_buffer_oldest_age_seconds <<<"${m}") s"
dropped=$(metric_sum iot_buffer_dropped_records_total <<<"${m}")
say "   dropped since the file was created: ${dropped}"
[[ "${dropped}" == absent || "${dropped}" == 0 ]] || need "the buffer dropped ${dropped} records (buffer.max_bytes, buffer.max_age or the disk)"
if [[ "${IOT_MODE}" != k8s ]]; then
	state_dir=${IOT_STATE_DIR:-/var/lib/iot-producer}
	if [[ -d "${state_dir}" ]]; then
		df -h "${state_dir}" | sed 's/^/   /'
	fi
fi

say "4. logs"
case "${IOT_MODE}" in
systemd) journalctl --disk-usage 2>/dev/null | sed 's/^/   /' || true ;;
k8s) say "   the pod's log is kept by the cluster" ;;
local) say "   (no journal in local mode)" ;;
esac
log_dir=${IOT_LOG_DIR:-/var/log/iot-producer}
if [[ -d "${log_dir}" ]]; then
	n=$(find "${log_dir}" -name '*.log' -mtime +7 -print -delete | wc -l)
	say "   deleted ${n} log files older than 7 days in ${log_dir}"
fi

if ((${#attention[@]} > 0)); then
	say "=== needs attention ==="
	printf '   - %s\n' "${attention[@]}"
	exit 1
fi
say "=== weekly check done ==="
