// Package clusters owns the cluster registry of the hub: registration sources (kubeconfig
// Secrets, Cluster API Clusters), the credential policy, the MemberCluster reconciler and the
// connection manager that gives other controllers a client and a scoped cache per member and
// tells them when a member connects or disconnects.
//
// It also owns the hub's trust boundaries towards members, set by controller flags only:
//   - the registration scope (registration.go): which Secrets a MemberCluster may name (the
//     hub namespace; a Cluster API namespace only for the member registered from its Cluster),
//     which Clusters register and which of their labels are copied;
//   - the credential policy (credentials.go): no exec, auth-provider, file references or
//     insecure TLS unless allowed;
//   - the member endpoint policy (endpoint.go): https only, no proxy-url, no link-local or
//     metadata addresses, loopback only when allowed — checked before any request and again
//     by the dialer of every member connection;
//   - classified probe errors (probeerrors.go): status carries a reason and a message written
//     here, never text from a member's answer.
//
// It must not know what other controllers do with a member: propagation and servicesync
// consume its small connection-manager interface, never its internals.
package clusters
