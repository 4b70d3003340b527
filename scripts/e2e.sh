#!/usr/bin/env bash
# Runs the end-to-end tests (test/e2e) against real servers: a single-node
# Apache Kafka broker (scripts/with-kafka.sh), then
# `go test -tags e2e ./test/e2e/...` with KAFKA_BROKERS set; each test
# starts what else it needs. Extra arguments go to `go test`.
# Usage: scripts/e2e.sh [go test flags...]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$(dirname "$here")"
exec "$here/with-kafka.sh" "${E2E_KAFKA_PORT:-19092}" go test -tags e2e -count=1 -v "$@" ./test/e2e/...
