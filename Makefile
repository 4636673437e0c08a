# jetstate: `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
PKGS  ?= ./...
# Fuzz time per target for `make fuzz`.
FUZZTIME ?= 30s
# Client port of the embedded NATS server of `make run`. The projector connects to it with no
# credentials flags: it signs in with the seed the sidecar keeps in its data directory (nats.nkey).
NATS_PORT ?= 4222
# Address of `jetstate console` in `make run`, and its flags (CONSOLE_FLAGS=-allow-writes lets it
# pause, resume and rebuild the projection).
CONSOLE_PORT ?= 8090
CONSOLE_FLAGS ?=
# Port of the chat's page in `make run-chat`.
CHAT_PORT ?= 8082
# Benchmark iterations for `make bench` (each one is a full round, see streams/bench_test.go).
BENCHTIME ?= 20x
# Flags of `make bench-e2e` (bench/README.md; `make bench-e2e BENCH_E2E_FLAGS=-h` lists them),
# for example `-scenarios es-grpc -duration 10s`.
BENCH_E2E_FLAGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build jetstate (sidecar, projector, CLI) and jetstate-operator into bin/
	$(GO) build -o bin/ ./cmd/jetstate ./cmd/jetstate-operator

.PHONY: run
run: ## the shopping cart behind the sidecar on an embedded JetStream, projected into the read model, with the console (Ctrl-C stops all)
	$(GO) build -o bin/jetstate ./cmd/jetstate
	$(GO) build -o bin/shoppingcart ./examples/shoppingcart/cmd/shoppingcart
	$(GO) build -o bin/readmodel ./examples/readmodel/cmd/readmodel
	bin/readmodel -write-descriptors bin/cart-events.binpb
	@echo "console: http://127.0.0.1:$(CONSOLE_PORT)/ (a cart's history: its user id as the key)"
	@trap 'kill $$(jobs -p) 2>/dev/null' EXIT; \
	  HOST=127.0.0.1 PORT=8080 bin/shoppingcart & \
	  bin/jetstate console -nats-url nats://127.0.0.1:$(NATS_PORT) -service shoppingcart -listen 127.0.0.1:$(CONSOLE_PORT) $(CONSOLE_FLAGS) & \
	  bin/readmodel -listen 127.0.0.1:8081 & \
	  bin/jetstate project -nats-url nats://127.0.0.1:$(NATS_PORT) -service shoppingcart -name cart-view \
	    -sink http://127.0.0.1:8081/ -descriptors bin/cart-events.binpb -retry-max 5s -max-tries 1000 -admin 127.0.0.1:9091 & \
	  bin/jetstate proxy -service shoppingcart -port 9000 -user-function-port 8080 -admin 127.0.0.1:9090 \
	    -embedded-nats-port $(NATS_PORT) $(ARGS)

.PHONY: run-chat
run-chat: ## the chat sample (presence and friends, CRDT entities) behind the sidecar on an embedded JetStream, with its page (Ctrl-C stops all)
	$(GO) build -o bin/jetstate ./cmd/jetstate
	$(GO) build -o bin/chat ./examples/chat/cmd/chat
	@echo "chat page: http://127.0.0.1:$(CHAT_PORT)/"
	@trap 'kill $$(jobs -p) 2>/dev/null' EXIT; \
	  HOST=127.0.0.1 PORT=8080 bin/chat -web 127.0.0.1:$(CHAT_PORT) -sidecar http://127.0.0.1:9000 & \
	  bin/jetstate proxy -service chat -port 9000 -user-function-port 8080 -admin 127.0.0.1:9090 \
	    -embedded-nats-port $(NATS_PORT) $(ARGS)

.PHONY: demo
demo: ## embedded JetStream and a walk through the journal's contract (Ctrl-C stops)
	$(GO) run ./cmd/jetstate run $(ARGS)

.PHONY: test
test: ## run every test with the race detector (embedded NATS servers and clusters, envtest, the bench module)
	KUBEBUILDER_ASSETS="$$(tools/envtest/assets.sh)" $(GO) test -race -count=1 -timeout 30m $(PKGS)
	cd bench && $(GO) test -race -count=1 -timeout 15m ./...

.PHONY: test-short
test-short: ## run the tests without the 3-node cluster ones
	KUBEBUILDER_ASSETS="$$(tools/envtest/assets.sh)" $(GO) test -race -short $(PKGS)
	cd bench && $(GO) test -race -short ./...

.PHONY: envtest-assets
envtest-assets: ## build kube-apiserver and etcd for the operator's tests into the user cache (once per version)
	@tools/envtest/assets.sh

.PHONY: cluster-build
cluster-build: ## build the one-node cluster's Kubernetes, CoreDNS and image tools into the user cache (once per version)
	@tools/cluster/build.sh

.PHONY: cluster-up
cluster-up: ## start a one-node Kubernetes from upstream parts on this machine (root; prints the kubeconfig path)
	@tools/cluster/up.sh

.PHONY: cluster-smoke
cluster-smoke: ## on the running cluster: a Deployment Ready, its ClusterIP answering, DNS from a pod
	@tools/cluster/smoke.sh

.PHONY: images
images: ## build the Kubernetes example's images and nats-server from Go and import them into the running cluster (no registry)
	@tools/cluster/images.sh

.PHONY: deploy
deploy: ## the Kubernetes example on the one-node cluster as its README says (cluster-up, images, operator, example), waited for Ready and checked with a cart
	@tools/cluster/deploy.sh

.PHONY: e2e
e2e: ## deploy the example on the one-node cluster and run the end-to-end driver under load (rolling update, scaling, killed pods, autoscaler), printing its table
	@tools/cluster/e2e.sh

.PHONY: cluster-down
cluster-down: ## stop the one-node cluster and remove everything cluster-up made
	@tools/cluster/down.sh

.PHONY: bench
bench: ## benchmarks with ratios against raw JetStream in the same run
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count 1 ./streams/
	$(GO) test -run '^$$' -bench AddItem -benchtime $(BENCHTIME) -count 1 ./examples/shoppingcart/
	$(GO) test -run '^$$' -bench SidecarMemory -benchtime 1x -count 1 ./examples/shoppingcart/
	$(GO) test -run '^$$' -bench SidecarFootprint -benchtime 5x -count 1 ./examples/shoppingcart/
	$(GO) test -run '^$$' -bench Routing -benchtime 5x -count 1 ./proxy/
	$(GO) test -run '^$$' -bench CRDT -benchtime 3x -count 1 ./proxy/
	$(GO) test -run '^$$' -bench Tracing -benchtime 10x -count 1 ./proxy/
	$(GO) test -run '^$$' -bench Projection -benchtime $(BENCHTIME) -count 1 ./projections/

.PHONY: bench-e2e
bench-e2e: ## the multi-process benchmark (nats-server, sidecars, cart functions, Fortio load; fixed rates, max rate, Dapr's figures beside): docs/bench/ (about 85 min)
	cd bench && $(GO) run ./e2e $(BENCH_E2E_FLAGS)

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
	$(GO) vet -tags e2e ./e2e/
	$(GO) tool staticcheck -tags e2e ./e2e/
	cd bench && $(GO) vet ./... && $(GO) tool -modfile=../go.mod staticcheck ./...

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
	cd bench && $(GO) mod tidy
	@git diff --exit-code -- . || { echo "generated files or go.mod drifted: commit the result of 'make generate', 'make manifests' and 'go mod tidy'"; exit 1; }
	@out=$$(git status --porcelain --untracked-files=all -- crds operator/api); if [ -n "$$out" ]; then echo "$$out"; echo "new generated files: commit the result of 'make manifests'"; exit 1; fi

.PHONY: clean
clean: ## remove built binaries
	rm -rf bin/
