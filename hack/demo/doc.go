// Command demo is `make demo`: it starts a local fleet (a hub and member clusters, each a real
// etcd, kube-apiserver and kube-controller-manager on loopback, package e2e/localfleet), runs
// the built fleet-controller against the hub and shows the product working by driving the
// built fleetctl and kubectl as a user would: register the members, apply the sample security
// baseline, restore a deleted policy, mirror an exported Service and follow an endpoint
// change, print fleetctl status. Then it waits for Ctrl-C.
//
// # What it owns
//
// The narration and the demo's own objects (namespace shop, Service shop/web and its
// hand-written EndpointSlice). Every process it starts — the control planes, fleet-controller
// and each fleetctl or kubectl run — dies with it, even when it is killed with SIGKILL: the
// long-lived ones run under localfleet's process-group and watchdog guard (Fleet.StartProcess),
// the short ones get PDEATHSIG.
//
// # What it must not do
//
// It is not product code: fleetctl and fleet-controller never import it, and it lives outside
// cmd/ so that the shipped binaries link no test harness (a check in `make verify` holds
// cmd/ to that). It guesses no paths: the Makefile passes the binaries, the CRDs and the
// sample as flags.
package main
