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
// Isolation: bindings of all members share one pool of workers (SetupOptions
// MaxConcurrentApplies, 16 by default). A binding reconcile takes one of its member's slots
// (MaxConcurrentPerMember, 2) for the member work, waiting at most 100ms, and bounds that
// work with a deadline (every single call is bounded by the connection manager too); when
// the slots are taken — typically by calls to a member that stopped answering — it requeues
// after 250ms instead of holding a worker. A hung member thus holds at most two workers, for
// at most one request timeout each, and the other members' applies go on.
//
// Paused members (MemberCluster spec.paused) get no writes at all, clean-up included: a
// binding being deleted waits until the member is unpaused or its MemberCluster is gone.
package propagation
