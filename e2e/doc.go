// Package e2e holds Flotilla's end-to-end specs. They drive the real fleet-controller binary
// and fleetctl as a user would, against a Backend that provides a hub and member clusters:
// local control planes (package localfleet) everywhere, kind clusters where Docker runs them.
//
// # Setup
//
// The specs are the *_test.go files with build tag e2e; `make test-e2e-local` builds the
// binaries and runs them (`go test -tags e2e ./e2e/` builds them itself). The package's
// non-test code is what the specs stand on: the Backend interface, the local backend,
// running fleet-controller as a process, installing config/ into a hub, and diagnostics.
//
// # What the local backend proves
//
// config/default is rendered with the pinned kubectl and server-side applied to the hub, as
// `make deploy` does, except the Deployment (no nodes run its pods); the binary runs instead,
// with the Deployment's flags and a token of the ServiceAccount config/rbac binds. A rule
// missing from the generated RBAC therefore fails the specs, and the failure output names the
// refused requests.
//
// # What the kind backend adds
//
// FLOTILLA_E2E_BACKEND=kind (`make e2e`) runs the same specs on kind clusters made with kind's
// Go API: a hub and two members of one node each, on the offline node image of package
// kindnode (through its docker shim on engines that refuse --privileged). config/ is installed
// with `make deploy`, Deployment included, from the image `make docker-build` tagged and kind
// loaded; members are registered at the addresses of kind's internal kubeconfigs, which the
// hub's pods reach over the kind Docker network. Specs that need a data plane (pods,
// kube-proxy, DNS: dataplane_test.go) run only there; the workloads they run are the programs
// in e2e/workloads. Clusters are deleted when the suite ends, on SIGINT and SIGTERM, before
// go test's -timeout fires, and at the start of the next run if a run was killed.
//
// # Artifacts
//
// Each run writes into _artifacts/e2e-<timestamp>/ (or $FLOTILLA_E2E_ARTIFACTS): controller
// logs as they happen; for a failed spec, `kubectl describe` of Flotilla's objects, events,
// Leases, fleetctl status and the control-plane logs. A passing run removes the folder; a
// failing one names it in its output.
//
// The package must not hold credentials in the artifacts folder: kubeconfigs with tokens live
// in the backend's own directory, removed by Stop.
package e2e
