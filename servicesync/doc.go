// Package servicesync owns cross-cluster service discovery: it discovers Services annotated
// fleet.flotilla.dev/export in every connected member, computes their mirrors (a selectorless
// Service plus Endpoints and EndpointSlices named <service>-<cluster>) in the other members,
// writes and garbage-collects those mirrors, and keeps the hub's ExportedService catalog.
//
// It reaches members only through the clusters connection-manager interface, identifies
// mirrors by their ownership labels (never by parsing names), and never updates or deletes an
// object without those labels.
//
// # What the hub holds of a member
//
// The hub's cost must follow what Flotilla manages, not the member's size. The member cache
// holds trimmed metadata of every Service and EndpointSlice (a name, Flotilla's labels and
// annotations: an export is an annotation, so no server-side selector can pick exports),
// Nodes trimmed to addresses, readiness and schedulability, the Endpoints Flotilla wrote, and
// Namespaces (shared with propagation). Full Services and EndpointSlices are read from the
// member on demand, and only for exported Services and their mirrors (transform.go).
//
// # Events
//
// Requests are typed {Cluster, NamespacedName} of the exported Service. A change enqueues an
// export only where it concerns one: a change to a Service or slice nobody exports, or a
// MemberCluster heartbeat, enqueues nothing (setup.go).
//
// # Reconcile
//
// Reconcile reads top to bottom: the catalog entry, the source member, the Service; then
// unexport (remove every mirror and the entry), refuse (an invalid export: Stalled with
// ReasonInvalidExport, nothing written), or export: write the mirrors into every target,
// then collect the ones no longer wanted. Status goes through internal/status; errors of
// per-member work, which runs concurrently, are aggregated with go-multierror.
package servicesync
