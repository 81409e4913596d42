# orch: a self-hosted container orchestrator modeled on Amazon ECS.
#   make run    install what is missing, build, start a single-node dev cluster, run a demo task
#   make test   every test (unit, integration, e2e with real containerd, registry and netns)
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := $(CURDIR)/bin
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
APT_PACKAGES := containerd runc docker-registry busybox-static tini iproute2 nftables protobuf-compiler curl ca-certificates
TEST_TIMEOUT ?= 25m

.PHONY: all build run stop test unit lint proto deps bench bench-smoke clean

all: build

# deps installs the Debian packages orch runs on and tests with, when any is missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v $(GO) >/dev/null || { echo "Go is required (expected at /usr/local/go)"; exit 1; }

build:
	$(GO) build -o $(BIN)/ ./cmd/... ./test/harness/cmd/orch-testimage

run: deps build
	@deploy/dev-run.sh

stop:
	@deploy/dev-run.sh stop

test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

unit:
	$(GO) test -count=1 -short ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

proto:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH=$(BIN):$$PATH protoc -I proto -I /usr/include --go_out=. --go_opt=module=orch \
		--go-grpc_out=. --go-grpc_opt=module=orch proto/orch/v1/*.proto

# bench measures every figure of test/bench in one run (several minutes): task start against
# the bare containerd floor, Raft writes and failover on 3 schedulers, and scheduling
# throughput with 1,000 and 10,000 simulated nodes; one table, and bench.json. Never part of
# make test, whose TestSmoke and TestSchedSmoke run the same code at the smoke size in seconds.
bench: deps build
	$(GO) run ./test/bench/cmd/orch-bench -bin $(BIN) -json $(CURDIR)/bench.json

bench-smoke: deps build
	$(GO) run ./test/bench/cmd/orch-bench -bin $(BIN) -smoke

clean:
	rm -rf $(BIN)
