// Package propagation owns Baselines and BaselineBindings: selecting members, rendering
// sources, staged server-side apply (field manager "flotilla"), inventory and pruning, drift
// detection and correction, progressive rollout, and per-cluster status.
//
// Each kind has its files: <kind>_controller.go (Reconcile and its phases), <kind>_setup.go
// (watches), baseline_status.go (the Baseline's status, computed once from its bindings).
// Status is written through internal/status: a Baseline whose sources are missing or do not
// render is Stalled (a person must act); one still rolling out is Reconciling.
//
// It reaches members only through the clusters connection-manager interface and never
// writes an object that it does not own unless the Baseline's conflictPolicy says Adopt.
//
// Rendering: the Baseline controller reads a Baseline's sources and parses each revision
// once; bindings reuse that parse from a bounded cache (sources.go, rendercache.go) and only
// substitute and fan out per member. Applying (apply.go, apply_write.go): a missing object is
// server-side applied without a dry run; one whose content (managedFields apart from status
// writers', generation, deletion: contentHash) is still what the inventory recorded after
// the last apply is skipped unless the desired object changed — so a controller writing an
// object's status does not make it look edited — and a dry-run diff is made only for
// objects someone changed since. Inform diffs an object only while it has not been found
// matching since it last changed. An apply has at most eight requests in flight to its
// member.
//
// Latency of a change: a binding's spec.revision records the rollout's release of a
// revision to its member. A Baseline without a rollout strategy releases every revision to
// every member in the reconcile that renders it, so its bindings do not wait for that write
// to come back through the hub (a write per member, seconds on a busy hub): the render puts
// them in the queue at once and they apply the new revision (releasedAtOnce). Bindings are
// not reconciled for a Baseline spec the Baseline controller has not rendered yet
// (baselineObserved), nor, unless they fan out into namespaces or are not applied, for a
// member's Namespace events (bindingsNeedingNamespaces): either would hold them in a useless
// reconcile that the change or a drift correction then waits for.
//
// Isolation: bindings of all members share one pool of workers (SetupOptions
// MaxConcurrentApplies, 64 by default: a worker mostly waits on its member, so a pool sized
// for the members' answers, not the hub's cores, is what lets a change reach 25 or 50
// members at once; idle workers cost a goroutine each). A binding reconcile takes one of its member's slots
// (MaxConcurrentPerMember, 2) for the member work, waiting at most 100ms, and bounds that
// work with a deadline (every single call is bounded by the connection manager too); when
// the slots are taken — typically by calls to a member that stopped answering — it gives its
// worker back and waits, holding nothing, until a reconcile on that member gives a slot back
// (binding_waiters.go). A hung member thus holds at most two workers, for at most one
// request timeout each, and the other members' applies go on.
//
// Paused members (MemberCluster spec.paused) get no writes at all, clean-up included: a
// binding being deleted waits until the member is unpaused or its MemberCluster is gone.
package propagation
