// Package kindnode is the interface between Flotilla's kind end-to-end backend and the
// offline-built kind node image (`make kind-node-image`, hack/kind/build-node-image.sh).
//
// It owns three things a suite needs to create a kind cluster with that image:
//   - the image's name (Image), and whether it is built (ImageExists);
//   - the constrained-engine path: DetectEngine tells whether the Docker engine refuses
//     --privileged and whether the host is cgroup v1; ShimEnv / UseShim put the docker shim
//     in hack/kind first on PATH, for kind only;
//   - the cluster configuration the image needs (ClusterConfig, KubeadmConfigPatches):
//     no default CNI (the image carries a ptp + host-local CNI config) and, on cgroup v1
//     hosts only, a KubeletConfiguration patch with failCgroupV1: false.
//
// It must not create or delete clusters itself (the suite owns their life cycle) and must
// not change anything outside the process environment it is asked to change.
package kindnode
