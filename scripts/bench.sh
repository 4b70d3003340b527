#!/usr/bin/env bash
# Runs the benchmarks (`make bench`): the package benchmarks, then the
# whole-system benchmarks in bench/ against a real single-node Apache Kafka
# broker started with scripts/kafka.sh and stopped whatever happens. Every
# benchmark prints its numbers. Extra arguments go to the bench/ `go test`
# (e.g. -bench Kafka).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
port="${BENCH_KAFKA_PORT:-19092}"
dir="$(mktemp -d -t iot-producer-bench-kafka-XXXXXX)"

cleanup() {
	"$here/kafka.sh" stop --dir "$dir" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT

cd "$root"
echo "== package benchmarks"
go test -run '^$' -bench . -benchmem -count=1 -timeout 30m ./record/ ./buffer/ ./simulator/... ./drivers/... ./uplink/...

echo "== system benchmarks against Apache Kafka on 127.0.0.1:${port}"
"$here/kafka.sh" start --brokers 1 --port "$port" --dir "$dir" >"$dir.start.log" 2>&1 || { cat "$dir.start.log" >&2; exit 1; }
brokers="$(sed -n 's/^KAFKA_BROKERS=//p' "$dir.start.log" | tail -1)"
rm -f "$dir.start.log"
KAFKA_BROKERS="$brokers" go test -run '^$' -bench "${BENCH:-.}" -benchtime 1x -count=1 -timeout 60m "$@" ./bench/...
