// Package localfleet starts a hub and member Kubernetes control planes as local processes, for
// integration tests, the e2e suite and the demo (hack/demo, `make demo`).
//
// # What it owns
//
// Each cluster is a real etcd, kube-apiserver and (optionally) kube-controller-manager process
// listening on loopback, with its own certificate authority, service-account key pair, admin
// client certificate (CN=flotilla-admin, O=system:masters) and admin kubeconfig file whose context
// is named after the cluster. RBAC is enforced, so credentials other than the admin's are subject
// to authorization exactly as in a real cluster. CRDs found in config/crd/bases are installed on
// the hub only.
//
// The package owns the processes it starts and the temporary directory that holds their
// certificates, data and logs (one log file per process, kept for diagnosis). Nothing else.
//
// # Usage
//
//	fleet := localfleet.StartForTest(t, localfleet.Options{Members: 2})
//	hubClient, err := fleet.Hub.Client()
//	member := fleet.Member("member-1") // member.KubeconfigPath, member.Config ...
//	member.StopAPIServer()             // take a member down ...
//	member.StartAPIServer(ctx)         // ... and bring it back (same port, data and certs)
//
// Outside tests, call Start and defer Fleet.Stop; the caller handles signals such as Ctrl-C and
// calls Stop, which is safe to call concurrently and more than once.
//
// The binaries come from `make k8s-binaries` (bin/k8s/<version> in the repository, or the
// directory named by FLOTILLA_K8S_ASSETS).
//
// # Implementation considerations
//
// controller-runtime's envtest is deliberately not used: it runs no kube-controller-manager
// (namespace deletion and garbage collection would never finish) and does not let a test stop
// and restart one member's API server.
//
// Processes must never outlive the program that started them, even when it is killed with
// SIGKILL: every process runs in its own process group (so a Ctrl-C sent to the terminal's
// foreground group reaches only the caller, which decides when to stop), gets PDEATHSIG=SIGKILL,
// and one watchdog shell process per Fleet reads the process-group ids from a pipe whose write
// end only the parent holds. When the pipe reaches EOF — Stop closed it or the parent died — the
// watchdog kills the remaining groups and removes the fleet's directory.
//
// The package must not print to stdout, read credentials from anywhere but its own directory,
// or touch clusters it did not start.
package localfleet
