# iot-producer — see README.md.
#
#   make run     the demo: simulator → agent → buffer → embedded dev broker
#   make test    unit and integration tests (the README's test command)
#   make e2e     end-to-end tests against a real Apache Kafka broker
#   make bench   benchmarks; they print numbers

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
BIN         := bin/iot-producer
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
E2E_TIMEOUT ?= 30m

.PHONY: all build run test race e2e bench lint generate clean

all: lint test build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/iot-producer

# run builds the binary and execs it in place of the recipe's shell, so
# Ctrl-C reaches the demo alone and ends it cleanly (go run reports an
# interrupted child as a failure).
run: build
	exec $(BIN) demo $(ARGS)

# TestSecureChannelRenewed skips itself under the race detector (gopcua's
# server renews a channel with a data race) and runs here without it.
test:
	$(GO) test -race -count=1 -timeout 15m ./...
	$(GO) test -count=1 -run '^TestSecureChannelRenewed$$' ./drivers/opcua/

e2e: build
	scripts/e2e.sh -timeout $(E2E_TIMEOUT) $(E2E_ARGS)

bench:
	scripts/bench.sh $(BENCH_ARGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/...
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags e2e ./test/e2e/...
	shellcheck scripts/*.sh scripts/ops/*.sh packaging/*.sh packaging/scripts/* monitoring/*.sh systemd/*.sh .ci/run

generate:
	$(GO) generate ./...

clean:
	rm -rf bin dist

include packaging/package.mk
