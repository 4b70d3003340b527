#!/usr/bin/env bash
# Runs the buffer and record tests as 32-bit ARM (GOARM=7) and ARM64
# binaries under qemu user-mode emulation (qemu-user-static, installed by
# scripts/ci-deps.sh). Gateways run on both; bbolt maps the whole file into
# memory, which on 32-bit ARM must fit the address space. The 32-bit run is
# a deliberately different set: buffer/width32_test.go (build-tagged for
# 32-bit GOARCHes) replaces buffer/width64_test.go. No -race: the race
# detector does not support these targets under emulation. Extra arguments
# go to both `go test` runs (e.g. -run Append).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

pkgs=(./buffer/ ./record/)

for tool in qemu-arm-static qemu-aarch64-static; do
	if ! command -v "$tool" >/dev/null; then
		echo "ci-qemu: $tool not found (install qemu-user-static, see scripts/ci-deps.sh)" >&2
		exit 1
	fi
done

# TestCheckThatEatsMemory proves the isolated check's heap bound
# (RLIMIT_DATA). qemu-user ignores a guest's RLIMIT_DATA, AS and STACK
# (they would bind the emulator itself: do_setrlimit in qemu's
# linux-user/syscall.c), so under emulation the child eats memory until its
# 10-minute bound; the test runs natively in `make test`, where the kernel
# enforces the limit as it does on the gateways.
skip='^TestCheckThatEatsMemory$'

start=$(date +%s)
echo "== 32-bit ARM (GOARCH=arm GOARM=7) under qemu-arm-static"
# The buffer's damage tests run bbolt in a child process of the test
# binary; IOT_PRODUCER_TEST_EXEC tells them to start it through qemu too.
CGO_ENABLED=0 GOARCH=arm GOARM=7 IOT_PRODUCER_TEST_EXEC=qemu-arm-static \
	go test -count=1 -timeout 10m -exec qemu-arm-static -skip "$skip" "$@" "${pkgs[@]}"
echo "== ARM64 (GOARCH=arm64) under qemu-aarch64-static"
CGO_ENABLED=0 GOARCH=arm64 IOT_PRODUCER_TEST_EXEC=qemu-aarch64-static \
	go test -count=1 -timeout 10m -exec qemu-aarch64-static -skip "$skip" "$@" "${pkgs[@]}"
echo "== ci-qemu: both architectures passed in $(($(date +%s) - start))s"
