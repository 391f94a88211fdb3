#!/usr/bin/env bash
# Builds the control-plane binaries the tests and the demo run (kube-apiserver,
# kube-controller-manager, etcd, and optionally more, e.g. kubectl) from the Go module
# proxy into OUT_DIR. Idempotent: binaries already present are reused.
#
# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces the staging modules with
# local paths), so we build it through a throwaway wrapper module that requires it and
# replaces every staging module with its published release.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.0}
OUT_DIR=${OUT_DIR:-bin/k8s/${K8S_VERSION}}
BINARIES=${BINARIES:-"kube-apiserver kube-controller-manager kubectl"}

staging_version="v0${K8S_VERSION#v1}" # v1.37.2 -> v0.37.2
minor=$(echo "${K8S_VERSION#v}" | cut -d. -f2)

mkdir -p "${OUT_DIR}"
OUT_DIR=$(cd "${OUT_DIR}" && pwd)
log() { echo "[k8s-binaries] $*"; }

missing=()
for b in ${BINARIES}; do [[ -x "${OUT_DIR}/${b}" ]] || missing+=("${b}"); done

if ((${#missing[@]})); then
  work="${OUT_DIR}/.build"
  mkdir -p "${work}"
  cd "${work}"
  log "preparing wrapper module for k8s.io/kubernetes ${K8S_VERSION} in ${work}"
  kgomod=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module flotilla.local/k8sbinaries"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "${kgomod}" |
      awk -v v="${staging_version}" '{print "replace " $1 " => " $1 " " v}'
  } >go.mod
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    for b in "${missing[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/${b}\""; done
    echo ")"
  } >tools.go
  log "resolving dependencies (go mod tidy)"
  go mod tidy
  ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
    ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.gitCommit=0000000000000000000000000000000000000000"
    ldflags+=" -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
  done
  for b in "${missing[@]}"; do
    start=$(date +%s)
    log "building ${b} ${K8S_VERSION} (a cold build takes several minutes on 2 cores)..."
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w ${ldflags}" -o "${OUT_DIR}/${b}.tmp" "k8s.io/kubernetes/cmd/${b}"
    mv "${OUT_DIR}/${b}.tmp" "${OUT_DIR}/${b}"
    log "built ${b} in $(($(date +%s) - start))s"
  done
fi

if [[ ! -x "${OUT_DIR}/etcd" ]]; then
  work="${OUT_DIR}/.build-etcd"
  mkdir -p "${work}"
  cd "${work}"
  log "building etcd ${ETCD_VERSION}..."
  printf 'module flotilla.local/etcdbinary\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "${ETCD_VERSION}" >go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
  go mod tidy
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${OUT_DIR}/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "${OUT_DIR}/etcd.tmp" "${OUT_DIR}/etcd"
  log "built etcd"
fi

log "ready in ${OUT_DIR}:"
for b in ${BINARIES} etcd; do log "  ${b}: $("${OUT_DIR}/${b}" --version 2>/dev/null | head -1)"; done
