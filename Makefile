# jetstate: `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
PKGS  ?= ./...
# Fuzz time per target for `make fuzz`.
FUZZTIME ?= 30s
# Benchmark iterations for `make bench` (each one is a full round, see streams/bench_test.go).
BENCHTIME ?= 20x

.DEFAULT_GOAL := help

.PHONY: help
help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build the jetstate binary into bin/
	$(GO) build -o bin/jetstate ./cmd/jetstate

.PHONY: run
run: build ## the shopping cart behind the sidecar, on an embedded JetStream (Ctrl-C stops all)
	$(GO) build -o bin/shoppingcart ./examples/shoppingcart/cmd/shoppingcart
	@trap 'kill $$(jobs -p) 2>/dev/null' EXIT; \
	  HOST=127.0.0.1 PORT=8080 bin/shoppingcart & \
	  bin/jetstate proxy -service shoppingcart -port 9000 -user-function-port 8080 -admin 127.0.0.1:9090 $(ARGS)

.PHONY: demo
demo: ## embedded JetStream and a walk through the journal's contract (Ctrl-C stops)
	$(GO) run ./cmd/jetstate run $(ARGS)

.PHONY: test
test: ## run every test with the race detector (embedded NATS servers and clusters, envtest)
	KUBEBUILDER_ASSETS="$$(tools/envtest/assets.sh)" $(GO) test -race -count=1 -timeout 30m $(PKGS)

.PHONY: test-short
test-short: ## run the tests without the 3-node cluster ones
	KUBEBUILDER_ASSETS="$$(tools/envtest/assets.sh)" $(GO) test -race -short $(PKGS)

.PHONY: envtest-assets
envtest-assets: ## build kube-apiserver and etcd for the operator's tests into the user cache (once per version)
	@tools/envtest/assets.sh

.PHONY: bench
bench: ## benchmarks with ratios against raw JetStream in the same run
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count 1 ./streams/
	$(GO) test -run '^$$' -bench AddItem -benchtime $(BENCHTIME) -count 1 ./examples/shoppingcart/
	$(GO) test -run '^$$' -bench SidecarMemory -benchtime 1x -count 1 ./examples/shoppingcart/
	$(GO) test -run '^$$' -bench Routing -benchtime 5x -count 1 ./proxy/
	$(GO) test -run '^$$' -bench Projection -benchtime $(BENCHTIME) -count 1 ./projections/

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

.PHONY: lint
lint: ## gofmt, go vet and staticcheck (pinned in go.mod)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

.PHONY: generate
generate: ## regenerate generated code: protocol/ with buf (pinned in tools/), then go generate
	cd protocol && $(GO) tool -modfile=../tools/buf/go.mod buf generate
	$(GO) generate $(PKGS)

CONTROLLER_GEN = $(GO) tool -modfile=tools/controller-gen/go.mod controller-gen

.PHONY: manifests
manifests: ## regenerate the operator's deepcopy code, CRDs (crds/bases) and RBAC (crds/rbac) with controller-gen
	$(CONTROLLER_GEN) object paths=./operator/api/...
	$(CONTROLLER_GEN) crd rbac:roleName=jetstate-operator paths=./operator/... \
	  output:crd:artifacts:config=crds/bases output:rbac:artifacts:config=crds/rbac

.PHONY: verify
verify: generate manifests ## fail if generated code, manifests or go.mod/go.sum drift from what is committed
	$(GO) mod tidy
	@git diff --exit-code -- . || { echo "generated files or go.mod drifted: commit the result of 'make generate', 'make manifests' and 'go mod tidy'"; exit 1; }
	@out=$$(git status --porcelain --untracked-files=all -- crds operator/api); if [ -n "$$out" ]; then echo "$$out"; echo "new generated files: commit the result of 'make manifests'"; exit 1; fi

.PHONY: clean
clean: ## remove built binaries
	rm -rf bin/
