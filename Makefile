# berth: `make test` runs every test tier; `make demo` brings up the lab with berth.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/berthlb/berth/version.Version=$(VERSION)
# grpcnotrace: see lab.BuildTags (keeps the linker's dead-code elimination working).
BUILD_TAGS := grpcnotrace
# Tags of the test tiers that need the apiserver (integration) or root (privileged).
TEST_TAGS := integration,privileged
# Timing and memory SLO tests (names ending in SLO) run alone: no -race, one package at a time.
SLO_TAGS := $(TEST_TAGS),timing
CONTROLLER_GEN := $(GO) tool controller-gen
GEN_ARGS := object:headerFile=/dev/null paths=./config/v1alpha1/... crd:crdVersions=v1

.PHONY: all build generate lint test test-unit test-integration test-slo controlplane helm e2e e2e-faults bench demo clean

all: build

## build: berth-controller, berth-speaker and berthctl into bin/, static as in the images
build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(BUILD_TAGS) -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...
	ln -sf berthctl bin/kubectl-berth

## generate: deepcopy and CRDs from config/v1alpha1; the chart's CRDs and RBAC from them
generate:
	$(CONTROLLER_GEN) $(GEN_ARGS) output:crd:dir=./config/crd
	hack/gen-chart.sh
	$(GO) run ./hack/gen-docs

## lint: formatting, vet (every tag), tidy go.mod, generated files up to date
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@command -v shellcheck >/dev/null || { echo "shellcheck not found: make lint checks the shell scripts with it (apt-get install shellcheck)"; exit 1; }
	shellcheck $$(find deploy hack -name '*.sh' | sort)
	$(GO) vet ./...
	$(GO) vet -tags $(SLO_TAGS) ./...
	$(GO) vet -tags e2e ./e2e
	$(GO) vet -tags scale ./scale
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	  $(CONTROLLER_GEN) $(GEN_ARGS) output:object:dir=$$tmp/obj output:crd:dir=$$tmp/crd; \
	  if ! diff -r -x kustomization.yaml -x crd.go $$tmp/crd config/crd || ! diff $$tmp/obj/zz_generated.deepcopy.go config/v1alpha1/zz_generated.deepcopy.go; then \
	    echo "generated files are stale: run make generate"; exit 1; fi; \
	  cp -r deploy/helm/berth $$tmp/chart && hack/gen-chart.sh $$tmp/chart && \
	  if ! diff -r $$tmp/chart deploy/helm/berth; then echo "the chart's generated files are stale: run make generate"; exit 1; fi; \
	  hack/gobgp/vendor.sh $$tmp/gobgp >/dev/null && \
	  if ! diff -r $$tmp/gobgp third_party/gobgp >/dev/null; then echo "third_party/gobgp is not what hack/gobgp/vendor.sh writes: run it"; exit 1; fi
	@cp go.mod /tmp/berth-go.mod.$$$$ && cp go.sum /tmp/berth-go.sum.$$$$ && $(GO) mod tidy && \
	  if ! git diff --quiet -- go.mod go.sum; then echo "go.mod/go.sum not tidy: run go mod tidy"; git diff --stat -- go.mod go.sum; \
	    cp /tmp/berth-go.mod.$$$$ go.mod; cp /tmp/berth-go.sum.$$$$ go.sum; rm -f /tmp/berth-go.*.$$$$; exit 1; fi; rm -f /tmp/berth-go.*.$$$$

## controlplane: build the pinned etcd and Kubernetes binaries into the cache (only when missing)
controlplane:
	@hack/controlplane/build.sh >/dev/null

## helm: build the pinned helm into the cache (only when missing); the chart's tests use it
helm:
	@hack/helm/build.sh >/dev/null

## test: unit tests, then integration and privileged tests against the real control plane,
## then the SLO tests
test: test-unit test-integration test-slo

# -parallel: the parallel subtests (bgp's hostile peers) mostly wait on GoBGP's timers.
test-unit:
	$(GO) test -race -count=1 -parallel 8 ./...

# Only the tests in tagged files: test-unit already ran every other test, with -race.
test-integration: controlplane helm
	BERTH_CONTROLPLANE_DIR=$$(hack/controlplane/build.sh --dir) \
	  $(GO) test -race -count=1 -parallel 8 -timeout 20m -tags $(TEST_TAGS) \
	  -run "$$(hack/tagged-packages.sh --run $(TEST_TAGS))" $$(hack/tagged-packages.sh $(TEST_TAGS))

test-slo: controlplane
	BERTH_CONTROLPLANE_DIR=$$(hack/controlplane/build.sh --dir) hack/slo.sh $(SLO_TAGS)

## e2e: the end-to-end suite over a lab site with berth installed from deploy/ (needs root)
e2e: controlplane
	BERTH_CONTROLPLANE_DIR=$$(hack/controlplane/build.sh --dir) hack/e2e.sh functional slo

## e2e-faults: the fault suite (e2e tests named TestFault*) over its own lab site (needs root)
e2e-faults: controlplane
	BERTH_CONTROLPLANE_DIR=$$(hack/controlplane/build.sh --dir) hack/e2e.sh faults

## bench: the Go benchmarks, the lab scale scenarios and the timing SLOs judged by p99, alone
## on the machine (needs root), into bench/REPORT.md and bench/raw/; BENCH_STEPS="go scale slo"
## picks steps (docs/bench.md)
bench: controlplane
	hack/bench.sh $(BENCH_STEPS)

## demo: the lab with berth installed from deploy/ and the demo Services (needs root;
## `bin/berthctl lab down` removes it)
demo: build
	bin/berthctl lab up -with-berth

clean:
	rm -rf bin/
