// Package servicesync owns cross-cluster service discovery: it discovers Services annotated
// fleet.flotilla.dev/export in every connected member, computes their mirrors (a selectorless
// Service plus Endpoints and EndpointSlices named <service>-<cluster>) in the other members,
// writes and garbage-collects those mirrors, and keeps the hub's ExportedService catalog.
//
// It also speaks the Multi-Cluster Services API where a member serves it (mcs.go): an MCS
// ServiceExport exports its Service exactly like the annotation, its status says Valid and
// Conflict, and each member gets its ClusterProperty cluster.clusterset.k8s.io. Exporters of
// one namespace/name are merged (merged.go, mirror/merge.go): the <name>-global mirror (the
// fleet.flotilla.dev/global annotation) and, where a member serves it, a ServiceImport, with
// every exporter's endpoints in slices of its own; conflicts follow the MCS rules (the oldest
// export wins). There is no second controller: each export's reconcile brings the merged
// objects in the members it visits to the view the catalog gives.
//
// It reaches members only through the clusters connection-manager interface, identifies
// mirrors by their ownership labels (never by parsing names), and never updates or deletes an
// object without those labels.
//
// # What the hub holds of a member
//
// The hub's cost must follow what Flotilla manages, not the member's size. An export is an
// annotation, so no server-side selector can pick exports: every Service and EndpointSlice
// is still listed and watched (metadata only), but a filter in front of the informers
// (filter.go, clusters.RegisterFilter) lets into the member cache only exported Services,
// the ones Flotilla wrote, and their slices, trimmed to a name and Flotilla's labels and
// annotations. A member's unexported Services and their slices are dropped as they arrive:
// the hub holds nothing of them, and their changes reach no handler. The cache also holds
// the Endpoints Flotilla wrote and metadata of Namespaces (one informer shared with
// propagation). Nodes, trimmed to addresses, readiness and schedulability, are cached only
// while an export of that member publishes node addresses (NodePort): the export demands
// them from the connection manager and lets go when it no longer needs them, and the last
// one to let go removes the informer. Full Services and EndpointSlices are read from the
// member on demand, and only for exported Services and their mirrors (transform.go).
//
// # Events
//
// Requests are typed {Cluster, NamespacedName} of the exported Service. A change enqueues an
// export only where it concerns one: a change to a Service or slice nobody exports never
// reaches a handler (filter.go), and a MemberCluster heartbeat enqueues nothing (setup.go).
//
// # Reconcile
//
// Reconcile reads top to bottom: the catalog entry, the source member, the Service; then
// unexport (remove every mirror and the entry), refuse (an invalid export: Stalled with
// ReasonInvalidExport, nothing written), or export: write the mirrors into every target,
// then collect the ones no longer wanted.
//
// # Trust boundaries
//
// A target is a selected member whose namespace of the source's name imports mirrors: its
// owner refuses with fleet.flotilla.dev/import=false, and with ImportOptIn only "true"
// accepts; a refusing member is no target, so its mirrors are removed, and the catalog lists
// it in status.importRefusedBy. What is published is decided in package mirror: pod IPs only
// inside the source's Nodes' pod CIDRs, node ports only on its Nodes' addresses. Status goes through internal/status; errors of
// per-member work, which runs concurrently, are aggregated with go-multierror.
//
// # A member that is busy, hung or paused
//
// Export workers serve the whole fleet. Each member's part of a reconcile (reading the
// source; writing and cleaning up mirrors in a target) runs under one of that member's
// clusters.MemberSlots and carries a deadline, and the reconcile waits for it only briefly
// (memberwork.go): a part that finds no free slot or does not end in time is deferred, the
// reconcile records what the other members did and returns its worker, and the export
// comes back as soon as the member frees a slot. A member that stops answering therefore
// delays no other member's mirror update, nor the next change of the same export.
//
// A MemberCluster with spec.paused gets no servicesync write at all: no mirror is created,
// updated or removed in it, nor cleaned up when it leaves. Its mirrors stay as they are
// (the catalog keeps listing it where it holds one), and unpausing enqueues every export
// and the source of every mirror it holds, so it catches up writing only what differs.
// Pausing means "do not touch this member", not "withdraw its services": the paused
// member's own exports are still read and mirrored into the other members, and when a
// paused member leaves the fleet the mirrors of its exports are still removed everywhere
// else.
package servicesync
