// Package localfleet starts a hub and member Kubernetes control planes as local processes, for
// integration tests, the e2e suite and the demo (hack/demo, `make demo`).
//
// # What it owns
//
// Each cluster is a real etcd, kube-apiserver and (optionally) kube-controller-manager process
// listening on loopback, with its own certificate authority, service-account key pair, admin
// client certificate (CN=flotilla-admin, O=system:masters) and admin kubeconfig file whose context
// is named after the cluster. kube-controller-manager has an identity of its own
// (system:kube-controller-manager), so that its writes are never mistaken for the admin's. RBAC is enforced, so credentials other than the admin's are subject
// to authorization exactly as in a real cluster. CRDs found in config/crd/bases are installed on
// the hub only.
//
// The package owns the processes it starts — the control planes, and programs a caller runs
// next to them with Fleet.StartProcess (the demo's fleet-controller) — and the temporary
// directory that holds their certificates, data and logs (one log file per process, kept for
// diagnosis). Nothing else.
//
// # Usage
//
//	fleet := localfleet.StartForTest(t, localfleet.Options{Members: 2})
//	hubClient, err := fleet.Hub.Client()
//	member := fleet.Member("member-1") // member.KubeconfigPath, member.Config ...
//	member.StopAPIServer()             // take a member down: connections are refused ...
//	member.StartAPIServer(ctx)         // ... and bring it back (same port, data and certs)
//	member.FreezeAPIServer()           // hang it: SIGSTOP, connections stay open, nothing answers
//	member.ThawAPIServer()             // SIGCONT: it answers again on the same connections
//
// A frozen server is the fault that only deadlines catch: a request to it neither fails nor
// returns until the caller's timeout. Stop and StopAPIServer thaw a frozen server before
// stopping it, so a test that fails mid-freeze still tears down promptly, and the watchdog's
// SIGKILL reaches a stopped process too.
//
// Outside tests (hack/demo), call Start and defer Fleet.Stop; the caller handles signals such
// as Ctrl-C and calls Stop, which is safe to call concurrently and more than once. The package
// does not import testing (StartForTest takes the small TB interface), so such programs link no
// test code.
//
// # Counting writes at the API server
//
// "The controller made zero writes" cannot be judged by resourceVersion: a server-side apply
// that changes nothing leaves it unchanged, yet it is a request the member had to serve. With
// Options.AuditLog every kube-apiserver keeps an audit log (one event per request, Metadata
// level, no bodies, written before the request is handled, so a request is in the log by the
// time its client has the answer). Count the mutating requests (create, update, patch — server-
// side apply included —, delete, deletecollection) made after a mark:
//
//	fleet := localfleet.StartForTest(t, localfleet.Options{Members: 2, AuditLog: true})
//	m := fleet.Member("member-1")
//	kubeconfig, _ := m.UserKubeconfig("flotilla-hub", "system:masters") // register the hub with this
//	...                                                                 // let the hub converge
//	mark, _ := m.AuditMark()
//	...                                                                 // restart the controller, wait
//	writes, _ := m.Writes(mark, "flotilla-hub") // len(writes) == 0: the hub wrote nothing
//
// Writes(mark) without users counts every user but the cluster's own components (user names
// starting with "system:", except ServiceAccounts). A refused or conflicting write still
// counts: it was attempted. Give the hub its own identity (UserKubeconfig) when the test itself
// writes to the member as the admin in the same window. AuditMark fails on a fleet started
// without Options.AuditLog, so a forgotten option cannot read as "zero writes".
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
