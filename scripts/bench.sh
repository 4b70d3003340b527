#!/usr/bin/env bash
# Runs the benchmarks (`make bench`): the package benchmarks, then the
# whole-system benchmarks in bench/ against a real single-node Apache Kafka
# broker (scripts/with-kafka.sh). Every benchmark prints its numbers. Extra
# arguments go to the bench/ `go test` (e.g. -bench Kafka).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$(dirname "$here")"

echo "== package benchmarks"
go test -run '^$' -bench . -benchmem -count=1 -timeout 30m ./record/ ./buffer/ ./agent/ingest/ ./agent/config/ ./simulator/... ./drivers/... ./uplink/...

echo "== system benchmarks against Apache Kafka"
exec "$here/with-kafka.sh" "${BENCH_KAFKA_PORT:-19092}" \
	go test -run '^$' -bench "${BENCH:-.}" -benchtime 1x -count=1 -timeout 60m "$@" ./bench/...
