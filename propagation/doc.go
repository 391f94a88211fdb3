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
package propagation
