#!/usr/bin/env bash
# build-node-image.sh - builds the Flotilla kind node image offline (issue 13): no image
# registry, only the Go module proxy and Debian's package mirror. `make kind-node-image`.
#
#   1 rootfs     debootstrap Debian bookworm: systemd, containerd, runc, iptables, nftables,
#                conntrack, containernetworking-plugins (ptp, host-local, loopback, portmap)
#   2 k8s        kubelet kubeadm kubectl kube-apiserver kube-controller-manager
#                kube-scheduler kube-proxy + etcd from the Go module proxy, version ldflags
#                (hack/build-k8s-binaries.sh; what bin/k8s/<version> already has is reused)
#   3 go-tools   coredns and crictl from their Go modules, pause from hack/kind/pause
#   4 node-fs    the node's filesystem: rootfs + binaries + containerd/kubelet/CNI config +
#                hack/kind/node/entrypoint
#   5 images     FROM-scratch images named as kubeadm expects (kubeadm config images list):
#                kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, etcd,
#                coredns, pause; kube-proxy's holds nft/iptables-nft/conntrack and the
#                libraries they link, copied from the node's rootfs
#   6 preload    the images imported into the node's containerd (namespace k8s.io), by the
#                node's own containerd run in a chroot
#   7 import     the node filesystem imported into Docker as $KIND_NODE_IMAGE
#
# Everything goes to bin/ (bin/kind-node, bin/k8s/<version>). Each step reuses what an
# earlier run built; the image is reused when none of its inputs changed (label
# io.flotilla.kind-node.inputs). KIND_NODE_REBUILD=1 rebuilds steps 4-7;
# KIND_NODE_STOP_AFTER=go-tools stops after step 3 (and KIND_NODE_SKIP_K8S=1 skips step 2),
# to warm a cache.
# Needs root (debootstrap, chroot, mount), Docker, Go, debootstrap (installed with apt-get
# when missing).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.0}         # kubeadm v1.37: registry.k8s.io/etcd:3.7.0-0
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.6}  # kubeadm v1.37: registry.k8s.io/coredns/coredns:v1.14.6
PAUSE_VERSION=${PAUSE_VERSION:-3.10.2}       # kubeadm v1.37: registry.k8s.io/pause:3.10.2
CRICTL_VERSION=${CRICTL_VERSION:-v1.37.0}
IMAGE=${KIND_NODE_IMAGE:-flotilla/kind-node:${K8S_VERSION}}
CACHE=${KIND_NODE_CACHE:-$ROOT/bin/kind-node}
K8S_BIN=${K8S_BIN:-$ROOT/bin/k8s/$K8S_VERSION}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PKGS=systemd,systemd-sysv,dbus,iptables,nftables,containerd,runc,conntrack,containernetworking-plugins,iproute2,kmod,procps,ethtool,socat,ca-certificates,util-linux,mount,libseccomp2,bash,coreutils
NODE_FS=$CACHE/node-fs
ETCD_TAG=${ETCD_VERSION#v}-0

log() { printf '[kind-node] %s\n' "$*"; }
die() { log "error: $*" >&2; exit 1; }

TIMES=()
# step NAME FUNCTION: runs one step and records its wall time.
step() {
  local name=$1 start end
  shift
  log "==> $name"
  start=$(date +%s)
  "$@"
  end=$(date +%s)
  TIMES+=("$(printf '%-9s %5ss  %s' "$name" $((end - start)) "$STEP_NOTE")")
  log "<== $name: $((end - start))s ($STEP_NOTE)"
}
STEP_NOTE=""

[[ $(id -u) == 0 ]] || die "run as root (debootstrap, chroot and mount need it)"
command -v docker >/dev/null || die "docker not found"
command -v go >/dev/null || die "go not found"
mkdir -p "$CACHE/bin" "$CACHE/images"

# ---- 1 rootfs
ROOTFS_TAR=$CACHE/rootfs-bookworm.tar
build_rootfs() {
  if [[ -s $ROOTFS_TAR ]]; then STEP_NOTE="reused $ROOTFS_TAR"; return; fi
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  local dir=$CACHE/rootfs
  if [[ ! -f $dir/.flotilla-debootstrap-done ]]; then
    rm -rf "$dir"
    log "debootstrap bookworm into $dir (a few minutes; log: $CACHE/debootstrap.log)"
    if ! debootstrap --variant=minbase --include="$PKGS" bookworm "$dir" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1; then
      tail -n 5 "$CACHE/debootstrap.log" >&2
      die "debootstrap failed (see $CACHE/debootstrap.log)"
    fi
    touch "$dir/.flotilla-debootstrap-done"
  fi
  # Units that only make sense on a real machine.
  (cd "$dir" && rm -f etc/systemd/system/getty.target.wants/* \
    && ln -sf /dev/null etc/systemd/system/systemd-udevd.service \
    && ln -sf /dev/null etc/systemd/system/getty@.service \
    && ln -sf /dev/null etc/systemd/system/e2scrub_reap.service \
    && rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/* .flotilla-debootstrap-done)
  tar --numeric-owner -C "$dir" -cf "$ROOTFS_TAR.tmp" .
  mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  rm -rf "$dir"
  STEP_NOTE="built $ROOTFS_TAR"
}

# ---- 2 Kubernetes binaries
K8S_BINARIES="kube-apiserver kube-controller-manager kubectl kubelet kubeadm kube-scheduler kube-proxy"
build_k8s() {
  local missing=""
  for b in $K8S_BINARIES etcd; do [[ -x $K8S_BIN/$b ]] || missing+=" $b"; done
  if [[ -z $missing ]]; then STEP_NOTE="reused $K8S_BIN"; return; fi
  log "building$missing into $K8S_BIN (cold: tens of minutes on 2 cores)"
  (cd "$ROOT" && K8S_VERSION=$K8S_VERSION ETCD_VERSION=$ETCD_VERSION OUT_DIR=$K8S_BIN BINARIES="$K8S_BINARIES" \
    hack/build-k8s-binaries.sh)
  STEP_NOTE="built$missing"
}

# ---- 3 coredns, crictl, pause
build_go_tools() {
  local built=""
  if [[ ! -x $CACHE/bin/coredns-$COREDNS_VERSION ]]; then
    GOBIN=$CACHE/bin/.gobin CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
    mv "$CACHE/bin/.gobin/coredns" "$CACHE/bin/coredns-$COREDNS_VERSION"
    built+=" coredns"
  fi
  if [[ ! -x $CACHE/bin/crictl-$CRICTL_VERSION ]]; then
    GOBIN=$CACHE/bin/.gobin CGO_ENABLED=0 go install -trimpath \
      -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
    mv "$CACHE/bin/.gobin/crictl" "$CACHE/bin/crictl-$CRICTL_VERSION"
    built+=" crictl"
  fi
  # pause is ours: always built (a second when cached), so a change to it is picked up
  (cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$CACHE/bin/pause" ./hack/kind/pause)
  STEP_NOTE="${built:+built$built, }pause rebuilt"
}

# ---- inputs of steps 4-7: when they match the image's label, the image is current
inputs_hash() {
  {
    # pause is rebuilt every run: its content counts, not its time
    sha256sum "$ROOT/hack/kind/build-node-image.sh" "$ROOT"/hack/kind/node/* "$CACHE/bin/pause" | sed "s| $ROOT/| |"
    for f in "$ROOTFS_TAR" "$CACHE/bin/coredns-$COREDNS_VERSION" "$CACHE/bin/crictl-$CRICTL_VERSION" \
      "$K8S_BIN/etcd" $(for b in $K8S_BINARIES; do echo "$K8S_BIN/$b"; done); do
      stat -c '%n %s %Y' "$f"
    done
  } | sed "s|$ROOT/||" | sha256sum | cut -c1-16 # the same in any checkout of the same files
}

# ---- 4 node filesystem
build_node_fs() {
  rm -rf "$NODE_FS"
  mkdir -p "$NODE_FS"
  tar -C "$NODE_FS" -xf "$ROOTFS_TAR"
  local n=$NODE_FS
  install -m 0755 "$K8S_BIN/kubelet" "$K8S_BIN/kubeadm" "$K8S_BIN/kubectl" "$n/usr/bin/"
  install -m 0755 "$CACHE/bin/crictl-$CRICTL_VERSION" "$n/usr/bin/crictl"
  install -m 0755 "$ROOT/hack/kind/node/entrypoint" "$n/usr/local/bin/entrypoint"
  mkdir -p "$n/kind" "$n/opt/cni/bin" "$n/etc/cni/net.d" "$n/etc/containerd" \
    "$n/etc/systemd/system/kubelet.service.d"
  echo "$K8S_VERSION" >"$n/kind/version"
  for p in ptp host-local loopback portmap; do cp "$n/usr/lib/cni/$p" "$n/opt/cni/bin/"; done
  cp "$ROOT/hack/kind/node/10-flotilla-ptp.conflist" "$n/etc/cni/net.d/"
  sed "s|@PAUSE_IMAGE@|registry.k8s.io/pause:$PAUSE_VERSION|" "$ROOT/hack/kind/node/containerd.toml" >"$n/etc/containerd/config.toml"
  printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\nimage-endpoint: unix:///run/containerd/containerd.sock\n' >"$n/etc/crictl.yaml"
  cp "$ROOT/hack/kind/node/kubelet.service" "$n/etc/systemd/system/kubelet.service"
  cp "$ROOT/hack/kind/node/10-kubeadm.conf" "$n/etc/systemd/system/kubelet.service.d/"
  cp "$ROOT/hack/kind/node/kubelet.slice" "$n/etc/systemd/system/kubelet.slice"
  printf 'net.ipv4.ip_forward=1\nnet.ipv4.conf.all.route_localnet=1\n' >"$n/etc/sysctl.d/90-flotilla-node.conf"
  ln -sf /etc/systemd/system/kubelet.service "$n/etc/systemd/system/multi-user.target.wants/kubelet.service"
  ln -sf /lib/systemd/system/containerd.service "$n/etc/systemd/system/multi-user.target.wants/containerd.service"
  : >"$n/etc/machine-id"
  STEP_NOTE="$(du -sh "$n" | cut -f1) in $NODE_FS"
}

# ---- 5 images
# image_dir NAME: a fresh build context for one image.
image_dir() { local d=$CACHE/images/$1; rm -rf "$d"; mkdir -p "$d/fs/usr/local/bin"; echo "$d"; }

# save_image REF DIR: docker build DIR (FROM scratch) as REF and save it to DIR.tar.
save_image() {
  local ref=$1 dir=$2
  local out
  if ! out=$(docker build -q -t "$ref" "$dir" 2>&1); then die "docker build $ref: $out"; fi
  docker save "$ref" -o "$dir.tar"
  docker rmi "$ref" >/dev/null
  rm -rf "$dir"
}

scratch_dockerfile() { # ENTRYPOINT-JSON-or-empty
  {
    echo "FROM scratch"
    echo "COPY fs/ /"
    echo "ENV PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin"
    if [[ -n ${1:-} ]]; then echo "ENTRYPOINT $1"; fi
  }
}

# kube-proxy needs nft (nftables mode), iptables-nft (iptables mode) and conntrack: copy
# them with the libraries they link (ldd in the node rootfs) and the xtables extensions.
slim_netfilter() {
  local dst=$1 n=$NODE_FS f lib
  # merged /usr: /lib64 -> usr/lib64 and so on, as in the node
  mkdir -p "$dst/usr/bin" "$dst/usr/sbin" "$dst/usr/lib/x86_64-linux-gnu" "$dst/usr/lib64"
  for l in bin sbin lib lib64; do if [[ -L $n/$l ]]; then cp -a "$n/$l" "$dst/"; fi; done
  local bins=(/usr/sbin/nft /usr/sbin/xtables-nft-multi /usr/sbin/conntrack)
  for f in "${bins[@]}"; do cp -L "$n$f" "$dst$f"; done
  for f in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -sf xtables-nft-multi "$dst/usr/sbin/$f"
  done
  cp -a "$n/usr/lib/x86_64-linux-gnu/xtables" "$dst/usr/lib/x86_64-linux-gnu/"
  local objs=("${bins[@]}")
  for f in "$n"/usr/lib/x86_64-linux-gnu/xtables/*.so; do objs+=("${f#"$n"}"); done
  for lib in $(chroot "$n" /usr/bin/ldd "${objs[@]}" 2>/dev/null | grep -o '/[^ ]*\.so[^ :]*' | sort -u); do
    if [[ ! -e $dst$lib ]]; then mkdir -p "$(dirname "$dst$lib")"; cp -L "$n$lib" "$dst$lib"; fi
  done
}

build_images() {
  local d
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    d=$(image_dir "$c")
    cp "$K8S_BIN/$c" "$d/fs/usr/local/bin/"
    scratch_dockerfile >"$d/Dockerfile"
    save_image "registry.k8s.io/$c:$K8S_VERSION" "$d"
  done
  d=$(image_dir kube-proxy)
  cp "$K8S_BIN/kube-proxy" "$d/fs/usr/local/bin/"
  slim_netfilter "$d/fs"
  scratch_dockerfile >"$d/Dockerfile"
  save_image "registry.k8s.io/kube-proxy:$K8S_VERSION" "$d"
  d=$(image_dir etcd)
  cp "$K8S_BIN/etcd" "$d/fs/usr/local/bin/"
  scratch_dockerfile >"$d/Dockerfile"
  save_image "registry.k8s.io/etcd:$ETCD_TAG" "$d"
  d=$(image_dir coredns)
  cp "$CACHE/bin/coredns-$COREDNS_VERSION" "$d/fs/coredns"
  scratch_dockerfile '["/coredns"]' >"$d/Dockerfile"
  save_image "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" "$d"
  d=$(image_dir pause)
  cp "$CACHE/bin/pause" "$d/fs/pause"
  scratch_dockerfile '["/pause"]' >"$d/Dockerfile"
  save_image "registry.k8s.io/pause:$PAUSE_VERSION" "$d"
  STEP_NOTE="$(du -ch "$CACHE"/images/*.tar | tail -1 | cut -f1) of image archives"
}

# ---- 6 preload: the node's containerd, in a chroot of the node filesystem, imports the
# archives into its own store (/var/lib/containerd of the node), namespace k8s.io.
preload() {
  local n=$NODE_FS
  mkdir -p "$n/preload"
  cp "$CACHE"/images/*.tar "$n/preload/"
  cat >"$n/preload/config.toml" <<'EOF'
version = 2
root = "/var/lib/containerd"
state = "/run/containerd-preload"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "/run/containerd-preload/containerd.sock"
EOF
  # a private mount namespace: the mounts go away with it
  unshare --mount --propagation private -- bash -euo pipefail -c '
    n=$1
    mount -t proc proc "$n/proc"; mount --rbind /dev "$n/dev"; mount -t sysfs sysfs "$n/sys"
    mount -t tmpfs tmpfs "$n/run"; mount -t tmpfs tmpfs "$n/tmp"
    chroot "$n" /usr/bin/containerd --config /preload/config.toml >"$n/preload/containerd.log" 2>&1 &
    pid=$!
    trap "kill $pid 2>/dev/null; wait $pid 2>/dev/null || true" EXIT
    ctr() { chroot "$n" /usr/bin/ctr --address /run/containerd-preload/containerd.sock --namespace k8s.io "$@"; }
    for _ in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
    for t in "$n"/preload/*.tar; do
      ctr images import --all-platforms --snapshotter overlayfs "/preload/${t##*/}" >/dev/null
    done
    ctr images ls -q | grep -v "^sha256:" >"$n/preload/images.txt"
  ' preload "$n"
  local want got
  want="registry.k8s.io/coredns/coredns:$COREDNS_VERSION registry.k8s.io/etcd:$ETCD_TAG
    registry.k8s.io/kube-apiserver:$K8S_VERSION registry.k8s.io/kube-controller-manager:$K8S_VERSION
    registry.k8s.io/kube-proxy:$K8S_VERSION registry.k8s.io/kube-scheduler:$K8S_VERSION registry.k8s.io/pause:$PAUSE_VERSION"
  got=$(cat "$n/preload/images.txt")
  for w in $want; do grep -qx "$w" <<<"$got" || die "preload: $w missing from the node's containerd (has: $(echo $got))"; done
  rm -rf "$n/preload" "$n/run/containerd-preload"
  STEP_NOTE="$(wc -l <<<"$got") images in /var/lib/containerd ($(du -sh "$n/var/lib/containerd" | cut -f1))"
}

# ---- 7 import into Docker
import_image() {
  local hash=$1 tmp=flotilla/kind-node-import:$$
  tar --numeric-owner -C "$NODE_FS" -c . | docker import - "$tmp" >/dev/null
  local ctx
  ctx=$(mktemp -d)
  # STOPSIGNAL and LABEL are not `docker import --change`s on every engine; a build is.
  cat >"$ctx/Dockerfile" <<EOF
FROM $tmp
ENV container=docker
STOPSIGNAL SIGRTMIN+3
LABEL io.flotilla.kind-node.inputs=$hash io.flotilla.kind-node.kubernetes=$K8S_VERSION
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
EOF
  local out previous
  previous=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  if ! out=$(docker build -q -t "$IMAGE" "$ctx" 2>&1); then die "docker build $IMAGE: $out"; fi
  rm -rf "$ctx"
  docker rmi "$tmp" >/dev/null
  # the image this one replaces (1.5 GB); kept while a node container still uses it
  if [[ -n $previous && $previous != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]]; then
    docker rmi "$previous" >/dev/null 2>&1 || log "previous image ${previous:7:12} is still in use; left in place"
  fi
  rm -rf "$NODE_FS"
  STEP_NOTE="$IMAGE, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
}

total_start=$(date +%s)
step rootfs build_rootfs
if [[ ${KIND_NODE_SKIP_K8S:-0} != 1 ]]; then step k8s build_k8s; fi
step go-tools build_go_tools
if [[ ${KIND_NODE_STOP_AFTER:-} == go-tools ]]; then exit 0; fi
hash=$(inputs_hash)
current=$(docker image inspect -f '{{index .Config.Labels "io.flotilla.kind-node.inputs"}}' "$IMAGE" 2>/dev/null || true)
if [[ $current == "$hash" && ${KIND_NODE_REBUILD:-0} != 1 ]]; then
  log "image $IMAGE is current (inputs $hash): steps node-fs, images, preload, import reused"
else
  step node-fs build_node_fs
  step images build_images
  step preload preload
  step import import_image "$hash"
fi
log "done in $(($(date +%s) - total_start))s: $IMAGE"
for t in "${TIMES[@]}"; do log "  $t"; done
