#!/usr/bin/env bash
# probe.sh - can this Docker engine run what a kind node needs, with no image
# registry? (issue 7, step 1). Builds a tiny Debian bookworm image offline
# (debootstrap + docker import), boots it the way kind boots a node and prints
# one yes/no line per capability. Exit 0 if all are present, 1 if not, 2 on error.
#
# Environment:
#   PROBE_IMAGE        image name           (default flotilla/kind-probe:bookworm)
#   PROBE_CACHE        cache directory      (default <repo>/bin/kind-probe)
#   DEBIAN_MIRROR      debootstrap mirror   (default http://deb.debian.org/debian)
#   PROBE_DOCKER_ARGS  extra `docker run` arguments, e.g. "--memory=4g"
#   PROBE_REBUILD=1    rebuild the rootfs tarball and the image
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
IMAGE=${PROBE_IMAGE:-flotilla/kind-probe:bookworm}
CACHE=${PROBE_CACHE:-$ROOT/bin/kind-probe}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TARBALL=$CACHE/rootfs-bookworm.tar
HELLO=flotilla/kind-probe-hello:probe
LABEL=io.flotilla.kind-probe
NAME=flotilla-kind-probe-$$
PKGS=systemd,systemd-sysv,dbus,iptables,nftables,containerd,runc,busybox-static,iproute2,kmod,procps
TOTAL=6
PRESENT=0
WORK=""

log() { printf 'probe: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }
# result N NAME yes|no REASON: print one capability line and count it.
result() {
  printf '%s. %-34s %-3s  %s\n' "$1" "$2" "$3" "$4"
  if [[ $3 == yes ]]; then PRESENT=$((PRESENT + 1)); fi
}
# inside CMD: run a shell snippet in the probe container; output on stdout.
inside() { docker exec "$NAME" sh -c "$1" 2>&1; }
oneline() { tr '\n' ' ' | sed 's/  */ /g; s/ $//' | cut -c1-"${1:-160}"; }
as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

cleanup() {
  # ctr's per-namespace cgroups: at the host's root in v1 hierarchies docker does not manage
  docker exec "$NAME" sh -c 'rmdir /sys/fs/cgroup/*/default /sys/fs/cgroup/*/k8s.io' >/dev/null 2>&1 || true
  docker rm -f -v "$NAME" >/dev/null 2>&1 || true
  docker rmi "$HELLO" >/dev/null 2>&1 || true
  if [[ -n $WORK ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v docker >/dev/null || die "docker not found"
docker info >/dev/null 2>&1 || die "docker engine not reachable: $(docker info 2>&1 | tail -1)"
stale=$(docker ps -aq --filter "label=$LABEL" 2>/dev/null || true)
if [[ -n $stale ]]; then # left by a run that was killed
  log "removing stale probe containers: $(oneline <<<"$stale")"
  # shellcheck disable=SC2086 # a whitespace-separated list of ids
  docker rm -f -v $stale >/dev/null 2>&1 || true
fi

# ---- base image: debootstrap rootfs -> tarball -> docker import (all cached)
build_tarball() {
  local dir=$CACHE/rootfs
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap (apt-get)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  mkdir -p "$CACHE"
  as_root rm -rf "$dir"
  log "debootstrap bookworm into $dir (a few minutes; log: $CACHE/debootstrap.log)"
  if ! as_root debootstrap --variant=minbase --include="$PKGS" bookworm "$dir" "$MIRROR" \
      >"$CACHE/debootstrap.log" 2>&1; then
    tail -n 5 "$CACHE/debootstrap.log" >&2
    die "debootstrap failed (see $CACHE/debootstrap.log)"
  fi
  # Units that only make sense on a real machine; kind's base image drops them too.
  as_root sh -c "cd '$dir' && rm -f etc/systemd/system/getty.target.wants/* \
    && ln -sf /dev/null etc/systemd/system/systemd-udevd.service \
    && ln -sf /dev/null etc/systemd/system/getty@.service \
    && rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/*"
  log "packing rootfs into $TARBALL"
  as_root tar --numeric-owner -C "$dir" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  as_root rm -rf "$dir"
}

if [[ ${PROBE_REBUILD:-0} == 1 ]]; then
  docker rmi "$IMAGE" >/dev/null 2>&1 || true
  rm -f "$TARBALL"
fi
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "reusing image $IMAGE"
else
  if [[ -s $TARBALL ]]; then log "reusing rootfs tarball $TARBALL"; else build_tarball; fi
  log "docker import $TARBALL as $IMAGE"
  # STOPSIGNAL is not an allowed import change on older engines; docker run sets it.
  docker import --change 'ENV container=docker' --change 'ENTRYPOINT ["/sbin/init"]' \
    "$TARBALL" "$IMAGE" >/dev/null || die "docker import failed"
fi
log "image $IMAGE: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
log "host: docker $(docker version -f '{{.Server.Version}}'), cgroup v$(docker info -f '{{.CgroupVersion}}') ($(docker info -f '{{.CgroupDriver}}')), kernel $(uname -r)"

# ---- boot the node container the way kind does
run_args=(--detach --tty --name "$NAME" --hostname kind-probe --label "$LABEL=1"
  --cgroupns=private --security-opt seccomp=unconfined --security-opt apparmor=unconfined
  --tmpfs /run --tmpfs /tmp --volume /var
  --env container=docker --stop-signal SIGRTMIN+3)
if [[ -d /lib/modules ]]; then run_args+=(--volume /lib/modules:/lib/modules:ro); fi
if [[ -n ${PROBE_DOCKER_ARGS:-} ]]; then
  # Sharing the host's cgroup tmpfs, cgroupns or netns lets the node's systemd
  # remount host filesystems (seen: the host's /sys/fs/cgroup turned read-only).
  if [[ $PROBE_DOCKER_ARGS =~ /sys/fs/cgroup|cgroupns[=\ ]host|net(work)?[=\ ]host ]]; then
    die "PROBE_DOCKER_ARGS must not share the host's /sys/fs/cgroup, cgroupns or network"
  fi
  read -r -a extra <<<"$PROBE_DOCKER_ARGS"
  run_args+=("${extra[@]}")
fi
# Capabilities this host's bounding set lacks (a privileged container asks for all).
missing_caps() {
  local bnd last
  bnd=$(awk '/^CapBnd/ {print $2}' /proc/self/status)
  last=$(cat /proc/sys/kernel/cap_last_cap)
  command -v capsh >/dev/null || return 0
  capsh --decode="$(printf '%x' $(( ~0x$bnd & ((1 << (last + 1)) - 1) )))" | sed 's/.*=//; s/cap_//g; s/,/ /g' | tr '[:lower:]' '[:upper:]'
}
all_no() {
  for n in 2 3 4 5 6; do result "$n" "(not checked)" no "$1"; done
  echo "probe: $PRESENT of $TOTAL capabilities present"
  exit 1
}
mode=privileged priv_err=""
log "docker run --privileged ${run_args[*]} $IMAGE"
if ! out=$(docker run --privileged "${run_args[@]}" "$IMAGE" 2>&1); then
  priv_err=$(grep -v "^Run 'docker run --help'" <<<"${out##*Error response from daemon: }" | oneline 300)
  docker rm -f -v "$NAME" >/dev/null 2>&1 || true
  log "--privileged refused: $priv_err"
  # The fix tried: what --privileged grants, spelled out, minus the caps the host
  # lacks; /sys and the cgroup mounts are remounted rw before systemd starts.
  mode=equivalent
  eq_args=(--cap-add ALL --security-opt systempaths=unconfined
    --device-cgroup-rule 'a *:* rwm' --device /dev/kmsg --entrypoint /bin/sh)
  for c in $(missing_caps); do eq_args+=(--cap-drop "$c"); done
  log "retrying with the --privileged equivalent: ${eq_args[*]}"
  # shellcheck disable=SC2016 # expanded by the shell inside the container
  # sysfs is the container's own (own netns); the cgroup mounts share the host's
  # superblocks, so only their per-mount flag is changed (bind remount).
  if ! out=$(docker run "${eq_args[@]}" "${run_args[@]}" "$IMAGE" -c 'mount -o remount,rw /sys
      for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$d"; done; exec /sbin/init' 2>&1); then
    result 1 "systemd as PID 1 (--privileged)" no "--privileged: $priv_err; equivalent: $(oneline 200 <<<"${out##*Error response from daemon: }")"
    all_no "node container did not start"
  fi
fi

# 1. systemd as PID 1 reaches running or degraded
log "waiting for systemd (systemctl is-system-running --wait, 120s)"
# systemctl can talk to systemd only once its private socket exists.
state=$(inside 'timeout 120 sh -c "until test -S /run/systemd/private; do sleep 0.5; done
  systemctl is-system-running --wait"' | tail -n1 || true)
running=$(docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null || echo false)
if [[ $running != true ]]; then
  result 1 "systemd as PID 1 (--privileged)" no "${priv_err:+--privileged: $priv_err; }container exited: $(docker logs "$NAME" 2>&1 | tail -n 3 | oneline)"
  all_no "node container is not running"
fi
pid1=$(inside 'cat /proc/1/comm')
case $state in
  running) why="PID 1 is $pid1, state running" ;;
  degraded) why="PID 1 is $pid1, state degraded (failed: $(inside 'systemctl --failed --plain --no-legend | cut -d" " -f1' | oneline 100))" ;;
  *) why="PID 1 is $pid1, state '${state:-none}' after 120s" ;;
esac
if [[ $mode == equivalent ]]; then
  result 1 "systemd as PID 1 (--privileged)" no "--privileged refused: $priv_err; without it ($mode flags): $why"
  log "checks 2-6 run in the container started with the --privileged equivalent"
elif [[ $state == running || $state == degraded ]]; then
  result 1 "systemd as PID 1 (--privileged)" yes "$why"
else
  result 1 "systemd as PID 1 (--privileged)" no "$why"
fi

# 2. cgroup v2 with the controllers kubelet needs
if inside 'test -f /sys/fs/cgroup/cgroup.controllers' >/dev/null; then
  ctrls=$(inside 'cat /sys/fs/cgroup/cgroup.controllers')
  missing=""
  for c in cpu memory pids; do [[ " $ctrls " == *" $c "* ]] || missing+=" $c"; done
  if [[ -z $missing ]]; then result 2 "cgroup v2 (cpu memory pids)" yes "controllers: $ctrls"
  else result 2 "cgroup v2 (cpu memory pids)" no "missing:$missing (controllers: $ctrls)"; fi
else
  v1=$(inside 'cut -d: -f2 /proc/1/cgroup | grep .')
  uni=$(inside 'cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null' || true)
  result 2 "cgroup v2 (cpu memory pids)" no "host is cgroup v1: v1 hierarchies $(oneline <<<"$v1"); cgroup2 (unified) controllers: '${uni}'"
fi

# 3. /dev/kmsg readable
if out=$(inside 'test -c /dev/kmsg && timeout 5 head -n1 /dev/kmsg >/dev/null && echo ok'); [[ $out == ok ]]; then
  result 3 "/dev/kmsg readable" yes "read a record from /dev/kmsg"
else
  result 3 "/dev/kmsg readable" no "$(oneline <<<"$out")"
fi

# 4. iptables, nft and legacy: new chain, add a rule, list it
ipt_ok=0 ipt_why=""
for v in nft legacy; do
  if out=$(inside "set -e; t=iptables-$v; \$t -N FLOTILLA-PROBE; \$t -A FLOTILLA-PROBE -s 10.250.0.0/16 -j RETURN; \
      \$t -S FLOTILLA-PROBE | grep -q 10.250.0.0; \$t -F FLOTILLA-PROBE; \$t -X FLOTILLA-PROBE"); then
    ipt_ok=$((ipt_ok + 1)); ipt_why+="$v ok; "
  else
    ipt_why+="$v failed: $(oneline 100 <<<"$out"); "
  fi
done
if [[ $ipt_ok == 2 ]]; then result 4 "iptables (nft + legacy)" yes "${ipt_why%; }"
else result 4 "iptables (nft + legacy)" no "${ipt_why%; }"; fi

# 5. containerd inside, and nested containers with ctr: a rootfs dir, and an
#    image loaded the way `kind load docker-image` does (docker save | ctr import)
ctr_why="" ctr_ok=0
if out=$(inside 'systemctl start containerd && systemctl is-active containerd && ctr version >/dev/null'); then
  # shellcheck disable=SC2016 # expanded by the shell inside the container
  if out=$(inside 'set -e; r=/var/lib/probe/rootfs; rm -rf $r; mkdir -p $r/bin; cp /bin/busybox $r/bin/;
      ctr run --rm --rootfs $r probe-rootfs /bin/busybox echo hello'); [[ $out == *hello* ]]; then
    ctr_ok=$((ctr_ok + 1)); ctr_why+="ctr run --rootfs: hello; "
  else
    ctr_why+="ctr run --rootfs failed: $(oneline 120 <<<"$out"); "
  fi
  WORK=$(mktemp -d)
  if out=$({ docker cp "$NAME:/usr/bin/busybox" "$WORK/busybox" \
      && tar -C "$WORK" -c busybox | docker import - "$HELLO" >/dev/null \
      && docker save "$HELLO" | docker exec -i "$NAME" ctr -n k8s.io images import --snapshotter overlayfs - >/dev/null \
      && inside "ctr -n k8s.io run --rm --snapshotter overlayfs docker.io/$HELLO probe-image /busybox echo hello"; } 2>&1); \
      [[ $out == *hello* ]]; then
    ctr_ok=$((ctr_ok + 1)); ctr_why+="imported image (overlayfs snapshotter): hello"
  else
    ctr_why+="imported image failed: $(oneline 120 <<<"$out")"
  fi
else
  ctr_why="containerd did not start: $(oneline <<<"$out") $(inside 'journalctl -u containerd --no-pager | tail -n 3' | oneline)"
fi
if [[ $ctr_ok == 2 ]]; then result 5 "containerd + nested container" yes "${ctr_why%; }"
else result 5 "containerd + nested container" no "${ctr_why%; }"; fi

# 6. loopback, veth into a netns (what CNI ptp does) and a bridge
if out=$(inside 'set -e; ip link set lo up; busybox ping -c1 -W2 127.0.0.1 >/dev/null
    ip netns add probe; ip link add pv0 type veth peer name pv1; ip link set pv1 netns probe
    ip addr add 10.250.0.1/30 dev pv0; ip link set pv0 up
    ip -n probe addr add 10.250.0.2/30 dev pv1; ip -n probe link set pv1 up; ip -n probe link set lo up
    ip netns exec probe busybox ping -c1 -W2 10.250.0.1 >/dev/null
    ip link add pbr0 type bridge; ip link set pbr0 up
    ip link del pv0; ip link del pbr0; ip netns del probe; echo ok'); [[ $out == *ok ]]; then
  result 6 "loopback + veth/netns + bridge" yes "lo ping, veth into a netns with ping across, bridge"
else
  result 6 "loopback + veth/netns + bridge" no "$(oneline <<<"$out")"
fi

echo "probe: $PRESENT of $TOTAL capabilities present"
[[ $PRESENT == "$TOTAL" ]]
