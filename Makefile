# Flotilla — multi-cluster fleet controller.
# `make help` lists the targets. Everything the tests and the demo need is built into bin/.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

K8S_VERSION        ?= v1.37.2
ETCD_VERSION       ?= v3.7.0
CONTROLLER_GEN_VER ?= v0.23.0
GOLANGCI_LINT_VER  ?= v2.15.0

BIN            := $(CURDIR)/bin
K8S_ASSETS     := $(BIN)/k8s/$(K8S_VERSION)
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VER)
GOLANGCI_LINT  := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VER)

# Users with their own control-plane binaries (etcd, kube-apiserver, kube-controller-manager)
# point FLOTILLA_K8S_ASSETS at their directory and skip the build.
export FLOTILLA_K8S_ASSETS ?= $(K8S_ASSETS)

VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
GIT_COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS    := -X github.com/flotilla-dev/flotilla/cmd/internal/version.Version=$(VERSION) \
              -X github.com/flotilla-dev/flotilla/cmd/internal/version.GitCommit=$(GIT_COMMIT)

TEST_TIMEOUT ?= 30m

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
	  /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Use

.PHONY: demo
demo: build k8s-binaries ## Run Flotilla on a local hub with two member clusters (Ctrl-C stops everything).
	$(BIN)/fleetctl demo --assets "$(FLOTILLA_K8S_ASSETS)" --controller "$(BIN)/fleet-controller"

##@ Development

.PHONY: build
build: ## Build fleet-controller and fleetctl into bin/.
	@mkdir -p $(BIN)
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/fleet-controller ./cmd/fleet-controller
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/fleetctl ./cmd/fleetctl

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate deepcopy code, CRDs and RBAC from the kubebuilder markers.
	$(CONTROLLER_GEN) object paths=./fleet/...
	$(CONTROLLER_GEN) crd paths=./fleet/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=flotilla-manager paths="./cmd/fleet-controller/...;./clusters/...;./propagation/...;./servicesync/..." output:rbac:artifacts:config=config/rbac

.PHONY: verify
verify: manifests ## Fail when generated files are stale or code is not gofmt'ed.
	@git diff --exit-code -- fleet config || { echo "generated files are stale: run 'make manifests' and commit the result"; exit 1; }
	@test -z "$$(git status --porcelain -- fleet config)" || { git status --porcelain -- fleet config; echo "untracked generated files: run 'make manifests' and commit the result"; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (pinned in bin/).
	$(GOLANGCI_LINT) run ./...

.PHONY: k8s-binaries
k8s-binaries: ## Build etcd, kube-apiserver and kube-controller-manager into bin/k8s/ (first time: ~10 min).
	@if [ "$(FLOTILLA_K8S_ASSETS)" != "$(K8S_ASSETS)" ]; then \
	  echo "using control-plane binaries from FLOTILLA_K8S_ASSETS=$(FLOTILLA_K8S_ASSETS)"; \
	else \
	  K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) OUT_DIR=$(K8S_ASSETS) hack/build-k8s-binaries.sh; \
	fi

##@ Test

.PHONY: test
test: k8s-binaries ## Unit and integration tests against real local control planes.
	go test -timeout $(TEST_TIMEOUT) -count=1 ./...

.PHONY: bench
bench: k8s-binaries ## Benchmarks against real control planes (numbers for the issue notes).
	go test -run '^$$' -bench . -benchtime 3x -timeout 60m ./...

##@ Tools

$(CONTROLLER_GEN):
	@mkdir -p $(BIN)/tools
	GOBIN=$(BIN)/tools go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VER)
	mv $(BIN)/tools/controller-gen $@

$(GOLANGCI_LINT):
	@mkdir -p $(BIN)/tools
	@echo "building golangci-lint $(GOLANGCI_LINT_VER) (a minute or two the first time)"
	GOBIN=$(BIN)/tools go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VER)
	mv $(BIN)/tools/golangci-lint $@
