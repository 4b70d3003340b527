#!/usr/bin/env bash
# Starts a single-node Apache Kafka broker on 127.0.0.1:PORT with
# scripts/kafka.sh, runs COMMAND with KAFKA_BROKERS set, and stops the
# broker whatever happens. Exits with COMMAND's status.
# Usage: scripts/with-kafka.sh PORT COMMAND [ARGS...]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $# -lt 2 ]]; then
	echo "usage: $(basename "$0") PORT COMMAND [ARGS...]" >&2
	exit 2
fi
port="$1"
shift
dir="$(mktemp -d -t iot-producer-kafka-XXXXXX)"

cleanup() {
	"$here/kafka.sh" stop --dir "$dir" >/dev/null 2>&1 || true
	rm -rf "$dir" "$dir.start.log"
}
trap cleanup EXIT

echo "with-kafka: starting Apache Kafka on 127.0.0.1:${port}"
if ! "$here/kafka.sh" start --brokers 1 --port "$port" --dir "$dir" >"$dir.start.log" 2>&1; then
	cat "$dir.start.log" >&2
	exit 1
fi
KAFKA_BROKERS="$(sed -n 's/^KAFKA_BROKERS=//p' "$dir.start.log" | tail -1)"
export KAFKA_BROKERS
echo "with-kafka: KAFKA_BROKERS=${KAFKA_BROKERS}"
"$@"
