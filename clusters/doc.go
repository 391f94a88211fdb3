// Package clusters owns the cluster registry of the hub: registration sources (kubeconfig
// Secrets, Cluster API Clusters), the credential policy, the MemberCluster reconciler and the
// connection manager that gives other controllers a client and a scoped cache per member and
// tells them when a member connects or disconnects.
//
// It must not know what other controllers do with a member: propagation and servicesync
// consume its small connection-manager interface, never its internals.
package clusters
