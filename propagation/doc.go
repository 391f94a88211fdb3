// Package propagation owns Baselines and BaselineBindings: selecting members, rendering
// sources, staged server-side apply (field manager "flotilla"), inventory and pruning, drift
// detection and correction, progressive rollout, and per-cluster status.
//
// It reaches members only through the clusters connection-manager interface and never
// writes an object that it does not own unless the Baseline's conflictPolicy says Adopt.
package propagation
