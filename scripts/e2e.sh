#!/usr/bin/env bash
# Runs the end-to-end tests (test/e2e) against real servers: starts a
# single-node Apache Kafka broker with scripts/kafka.sh, runs
# `go test -tags e2e ./test/e2e/...` with KAFKA_BROKERS set, and stops the
# broker whatever happens. Extra arguments go to `go test`.
# Usage: scripts/e2e.sh [go test flags...]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
port="${E2E_KAFKA_PORT:-19092}"
dir="$(mktemp -d -t iot-producer-e2e-kafka-XXXXXX)"

cleanup() {
	"$here/kafka.sh" stop --dir "$dir" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT

echo "e2e: starting Apache Kafka on 127.0.0.1:${port}"
if ! "$here/kafka.sh" start --brokers 1 --port "$port" --dir "$dir" >"$dir.start.log" 2>&1; then
	cat "$dir.start.log" >&2
	exit 1
fi
brokers="$(sed -n 's/^KAFKA_BROKERS=//p' "$dir.start.log" | tail -1)"
rm -f "$dir.start.log"
echo "e2e: KAFKA_BROKERS=${brokers}"

cd "$root"
KAFKA_BROKERS="$brokers" go test -tags e2e -count=1 -v "$@" ./test/e2e/...
