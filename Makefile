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

# VERSION names a build everywhere (--version, image tag) and always carries the commit:
# e.g. v0.1.0-3-gd867114-dirty (hack/version.sh). Computed once, not at every use.
ifeq ($(origin VERSION),undefined)
VERSION := $(shell hack/version.sh)
endif
GIT_COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS    := -X github.com/flotilla-dev/flotilla/cmd/internal/version.Version=$(VERSION) \
              -X github.com/flotilla-dev/flotilla/cmd/internal/version.GitCommit=$(GIT_COMMIT)

TEST_TIMEOUT ?= 30m

# The image: IMG (repository:tag) is what `make docker-build` tags and `make deploy` installs.
# Push it under another name with IMAGE_REPO=registry.example.com/flotilla/fleet-controller.
IMAGE_REPO ?= flotilla/fleet-controller
IMAGE_TAG  ?= $(VERSION)
IMG        ?= $(IMAGE_REPO):$(IMAGE_TAG)
# The image's binary is linux, for the architecture of the Go toolchain unless told otherwise.
IMAGE_ARCH ?= $(shell go env GOARCH)

# kubectl of the pinned Kubernetes version, built from source like the control planes: the
# machine's own kubectl may be outside the supported version skew.
KUBECTL ?= $(K8S_ASSETS)/kubectl

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
	  /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Use

# The demo is not product code: hack/demo drives the built binaries as a user would. Every path
# it needs comes from here, so it guesses nothing about where it runs.
.PHONY: demo
demo: build k8s-binaries $(KUBECTL) ## Run Flotilla on a local hub with two member clusters (Ctrl-C stops everything).
	go build -o $(BIN)/flotilla-demo ./hack/demo
	$(BIN)/flotilla-demo --assets "$(FLOTILLA_K8S_ASSETS)" \
	  --controller "$(BIN)/fleet-controller" --fleetctl "$(BIN)/fleetctl" --kubectl "$(KUBECTL)" \
	  --crds "$(CURDIR)/config/crd/bases" --baseline "$(CURDIR)/config/samples/demo-security-baseline.yaml" \
	  $(DEMO_ARGS)

##@ Install into a hub (the cluster of the current kubeconfig)

.PHONY: docker-build
docker-build: build-image-binary ## Build the image flotilla/fleet-controller:<version> (FROM scratch: only the static binary).
	docker build --build-arg VERSION=$(VERSION) -t $(IMG) .
	@echo "built image $(IMG)"

.PHONY: build-image-binary
build-image-binary: ## Build the static linux fleet-controller the image holds into bin/image/.
	@mkdir -p $(BIN)/image
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) go build -trimpath -ldflags "-s -w $(LDFLAGS)" \
	  -o $(BIN)/image/fleet-controller ./cmd/fleet-controller

# deploy renders config/default through a throwaway overlay that sets the image, so that
# nothing under config/ is edited and any IMG (another registry, another tag) works. The
# overlay lives two levels below the checkout because kustomize refuses absolute paths.
define install-overlay
mkdir -p $(BIN) && tmp=$$(mktemp -d "$(BIN)/deploy-XXXXXX") && trap 'rm -rf "$$tmp"' EXIT && \
img='$(IMG)' && \
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../../config/default\nimages:\n- name: flotilla/fleet-controller\n  newName: %s\n  newTag: %s\n' \
  "$${img%:*}" "$${img##*:}" >"$$tmp/kustomization.yaml"
endef

.PHONY: deploy
deploy: $(KUBECTL) ## Install or upgrade Flotilla (CRDs, RBAC, controller image IMG) in the current kubeconfig's cluster.
	@$(install-overlay) && \
	$(KUBECTL) kustomize "$$tmp" | $(KUBECTL) apply --server-side --field-manager=flotilla-install -f - && \
	echo "deployed $(IMG); watch it with: $(KUBECTL) -n flotilla-system rollout status deployment/flotilla-controller"

# undeploy refuses while Baselines or MemberClusters exist: they carry finalizers that only a
# running controller removes (after cleaning up in the members), so deleting the CRDs and the
# controller together would hang. Deleting them first is the user's decision (see README).
.PHONY: undeploy
undeploy: $(KUBECTL) ## Remove Flotilla (controller, RBAC, CRDs, namespace) from the current kubeconfig's cluster.
	@left=$$($(KUBECTL) get baselines.fleet.flotilla.dev,memberclusters.fleet.flotilla.dev -o name 2>/dev/null || true); \
	if [ -n "$$left" ]; then \
	  echo "refusing to undeploy while these exist (delete Baselines and unregister members first, with the controller running):"; \
	  echo "$$left"; exit 1; \
	fi
	@$(install-overlay) && \
	$(KUBECTL) kustomize "$$tmp" | $(KUBECTL) delete --ignore-not-found -f -

##@ Release

# A release is dist/install.yaml (CRDs, RBAC, the Deployment with the image pinned by digest)
# and the image itself, dist/fleet-controller-<version>.tar. The image is written by
# hack/imagetar, not a container engine: one layer holding the static binary, the same bytes
# every time, so its digest is known before any registry sees it. The tarball loads with
# `docker load` and with containerd (`ctr -n k8s.io images import`, `kind load
# image-archive`), which keeps the manifest digest install.yaml names, so the Pod starts
# without a pull. A release with a registry pushes the same tarball (crane push, skopeo copy
# oci-archive:...) and the digest stays the same; see README "Install".
DIST          := $(CURDIR)/dist
RELEASE_TAR   := $(DIST)/fleet-controller-$(VERSION).tar

.PHONY: release
release: build-image-binary $(KUBECTL) ## Write dist/install.yaml (image pinned by digest) and the image dist/fleet-controller-<version>.tar.
	@mkdir -p $(DIST)
	go run ./hack/imagetar --binary $(BIN)/image/fleet-controller --image $(IMAGE_REPO):$(VERSION) \
	  --version $(VERSION) --arch $(IMAGE_ARCH) --out $(RELEASE_TAR) >$(DIST)/image-digest
	$(MAKE) --no-print-directory release-manifests IMAGE_DIGEST=$$(cat $(DIST)/image-digest) INSTALL_YAML=$(DIST)/install.yaml
	@echo "released $(VERSION): $(DIST)/install.yaml, $(RELEASE_TAR) ($$(cat $(DIST)/image-digest))"

# release-manifests renders config/default with the image IMAGE_REPO@IMAGE_DIGEST and every
# object labelled with the version (not the selectors: a Deployment's selector cannot change,
# and an upgrade must apply over the previous release).
INSTALL_YAML ?= $(DIST)/install.yaml
.PHONY: release-manifests
release-manifests: $(KUBECTL) ## Render INSTALL_YAML (dist/install.yaml) for the image IMAGE_REPO@IMAGE_DIGEST.
	@test -n "$(IMAGE_DIGEST)" || { echo "IMAGE_DIGEST=sha256:... is required (make release computes it)"; exit 1; }
	@mkdir -p $(BIN) "$$(dirname "$(INSTALL_YAML)")" && tmp=$$(mktemp -d "$(BIN)/release-XXXXXX") && trap 'rm -rf "$$tmp"' EXIT && \
	printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../../config/default\nimages:\n- name: flotilla/fleet-controller\n  newName: %s\n  digest: %s\nlabels:\n- pairs:\n    app.kubernetes.io/version: %s\n' \
	  "$(IMAGE_REPO)" "$(IMAGE_DIGEST)" "$(VERSION)" >"$$tmp/kustomization.yaml" && \
	{ printf '# Flotilla %s: kubectl apply -f install.yaml (install or upgrade).\n# Image %s@%s (dist/fleet-controller-%s.tar where no registry serves it).\n' \
	    "$(VERSION)" "$(IMAGE_REPO)" "$(IMAGE_DIGEST)" "$(VERSION)"; $(KUBECTL) kustomize "$$tmp"; } >"$(INSTALL_YAML)"
	@echo "wrote $(INSTALL_YAML)"

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
verify: manifests verify-deps ## Fail when generated files are stale, code is not gofmt'ed or a shipped binary links test code.
	@git diff --exit-code -- fleet config || { echo "generated files are stale: run 'make manifests' and commit the result"; exit 1; }
	@test -z "$$(git status --porcelain -- fleet config)" || { git status --porcelain -- fleet config; echo "untracked generated files: run 'make manifests' and commit the result"; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# The shipped binaries link no test code: no package testing, nothing of e2e/ (the local-fleet
# harness belongs to tests and hack/demo). depguard in .golangci.yml catches a direct import;
# this catches one pulled in through a dependency.
.PHONY: verify-deps
verify-deps: ## Fail when a binary under cmd/ links package testing or anything of e2e/.
	@bad=$$(go list -deps ./cmd/... | grep -E '^testing$$|^github\.com/flotilla-dev/flotilla/e2e(/|$$)' || true); \
	if [ -n "$$bad" ]; then \
	  echo "cmd/ links test code:"; echo "$$bad"; \
	  echo "find the importer with: go list -deps -f '{{.ImportPath}}: {{join .Imports \" \"}}' ./cmd/... | grep -E 'testing|/e2e'"; exit 1; \
	fi

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
test: build k8s-binaries $(KUBECTL) ## Every test: unit, integration and the end-to-end specs, against real local control planes.
	go test -timeout $(TEST_TIMEOUT) -count=1 ./...
	$(MAKE) --no-print-directory test-e2e-local

.PHONY: test-e2e-local
test-e2e-local: build k8s-binaries $(KUBECTL) ## End-to-end specs: the built binaries, config/ RBAC, local control planes.
	FLOTILLA_E2E_BIN_DIR=$(BIN) go test -tags e2e -timeout $(TEST_TIMEOUT) -count=1 -v ./e2e/

.PHONY: kind-node-image
kind-node-image: ## Build the kind node image flotilla/kind-node:<k8s version> offline (root; cold 35-75 min, mostly compiling Kubernetes; warm seconds).
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/kind/build-node-image.sh

.PHONY: test-kind-node
test-kind-node: kind-node-image ## One kind cluster on the node image: node, CoreDNS, a pod, ClusterIP, NodePort and DNS (deleted afterwards).
	go test -tags kindnode -count=1 -run 'TestNodeImageCluster' -timeout 20m -v ./e2e/kindnode/

.PHONY: test-kind-shim
test-kind-shim: ## The docker shim for constrained engines (hack/kind/docker), against the real Docker engine.
	go test -tags docker -count=1 -run 'TestShim' -v ./e2e/kindnode/

# The kind suite: hub + 2 members as kind clusters on the offline node image, the controller
# image installed with `make deploy`, and the specs' workloads (e2e/workloads) as images.
KIND_NODE_IMAGE  ?= flotilla/kind-node:$(K8S_VERSION)
E2E_ECHO_IMAGE   ?= flotilla/e2e-echo:$(VERSION)
E2E_CLIENT_IMAGE ?= flotilla/e2e-client:$(VERSION)
E2E_TIMEOUT      ?= 60m

.PHONY: e2e
e2e: build $(KUBECTL) ## End-to-end specs on kind clusters (hub + 2 members, real data plane); builds the node, controller and workload images.
	@begin=$$(date +%s); \
	step() { echo "== e2e: $$1"; s=$$(date +%s); shift; if "$$@"; then echo "== e2e: done in $$(( $$(date +%s) - s ))s"; else return 1; fi; }; \
	step "node image $(KIND_NODE_IMAGE)" $(MAKE) --no-print-directory kind-node-image; \
	step "controller image $(IMG)" $(MAKE) --no-print-directory docker-build IMG=$(IMG); \
	step "workload images" $(MAKE) --no-print-directory e2e-images; \
	echo "== e2e: the specs on kind (go test -tags e2e -timeout $(E2E_TIMEOUT); clusters are deleted at the end, on Ctrl-C too)"; \
	if FLOTILLA_E2E_BACKEND=kind FLOTILLA_E2E_BIN_DIR=$(BIN) FLOTILLA_E2E_KIND_NODE_IMAGE=$(KIND_NODE_IMAGE) \
	  FLOTILLA_E2E_CONTROLLER_IMAGE=$(IMG) FLOTILLA_E2E_ECHO_IMAGE=$(E2E_ECHO_IMAGE) FLOTILLA_E2E_CLIENT_IMAGE=$(E2E_CLIENT_IMAGE) \
	  go test -tags e2e -timeout $(E2E_TIMEOUT) -count=1 -v ./e2e/; then rc=0; else rc=$$?; fi; \
	echo "== e2e: make e2e $$( [ $$rc = 0 ] && echo passed || echo FAILED ) in $$(( $$(date +%s) - begin ))s"; exit $$rc

.PHONY: e2e-images
e2e-images: ## Build the kind specs' workloads (e2e/workloads: echo server, client) into FROM-scratch images.
	@for w in echo client; do \
	  case $$w in echo) img=$(E2E_ECHO_IMAGE);; client) img=$(E2E_CLIENT_IMAGE);; esac; \
	  mkdir -p $(BIN)/e2e-images/$$w && \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) go build -trimpath -ldflags "-s -w" -o $(BIN)/e2e-images/$$w/$$w ./e2e/workloads/$$w && \
	  docker build -q --build-arg NAME=$$w -t $$img -f e2e/workloads/Dockerfile $(BIN)/e2e-images/$$w >/dev/null && \
	  echo "built image $$img" || exit 1; \
	done

.PHONY: bench
bench: k8s-binaries ## Benchmarks against real control planes (numbers for the issue notes).
	go test -run '^$$' -bench . -benchtime 3x -timeout 60m ./...

##@ Tools

$(KUBECTL):
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) OUT_DIR=$(K8S_ASSETS) BINARIES=kubectl hack/build-k8s-binaries.sh

$(CONTROLLER_GEN):
	@mkdir -p $(BIN)/tools
	GOBIN=$(BIN)/tools go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VER)
	mv $(BIN)/tools/controller-gen $@

$(GOLANGCI_LINT):
	@mkdir -p $(BIN)/tools
	@echo "building golangci-lint $(GOLANGCI_LINT_VER) (a minute or two the first time)"
	GOBIN=$(BIN)/tools go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VER)
	mv $(BIN)/tools/golangci-lint $@
