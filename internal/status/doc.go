// Package status is the one way Flotilla's controllers report on the objects they reconcile,
// in the Cluster API / Flux style, so that kstatus (and with it Flux and Argo CD health
// checks) reads every Flotilla object the same way.
//
// # Usage
//
// A reconciler gets its object, creates a Patcher and defers its Patch, then runs its phases:
//
//	p := status.NewPatcher(r.Client, obj)
//	defer func() { err = p.Patch(ctx, obj, err) }()
//
// The phases set conditions with Set as they learn things. Status is computed in memory and
// written once, at the end, and only when it changed.
//
// # Outcomes
//
// Three outcomes stay distinct:
//   - success (nil error): observedGeneration is set to the object's generation;
//   - a user error: a phase returns Stalled(reason, err). The reconcile ends without a retry
//     (reconcile.TerminalError); the object gets Stalled=True and Ready=False with that reason
//     and message, and observedGeneration is set, since the generation was judged;
//   - a transient failure (any other error): observedGeneration stays, Reconciling=True says a
//     retry is coming, and the error goes back to controller-runtime for backoff.
//
// Stalled and Reconciling describe the current reconcile only: NewPatcher clears them and a
// phase sets them again while they still hold (a rollout in progress sets Reconciling; a
// rollout stopped at its failure budget sets Stalled without failing the reconcile). When a
// phase set Stalled and the reconcile also failed transiently, Stalled stays and Reconciling
// is not added: kstatus reads whichever comes first. A condition whose status did not change
// keeps its lastTransitionTime and its place in the list, so re-asserting one writes nothing.
// A failed status write is always retried, even after a user error: the user was not told.
//
// # Errors of many members
//
// Work that spans members or objects does not stop at the first failure. It collects errors
// with github.com/hashicorp/go-multierror (a multierror.Group where the work runs
// concurrently) and returns Aggregate(...): one report, one line per failure, each naming its
// member or object.
//
// # Bounds
//
// A status write must never fail for size, or the report it carries is lost on every retry.
// Set cuts condition messages at MaxMessage; Events wraps a controller's event recorder so
// that notes fit the API server's 1 KiB; Report lists MaxReportLines failures and counts the
// rest; List names the first few items of a list in a message and Cap keeps the first items
// of a status list (one with a MaxItems marker) — both count what they leave out. Lists that
// a controller reads back to decide something (an inventory) are not cut: their domain
// bounds them at the source (propagation refuses oversized Baselines).
//
// This package must not decide anything about a domain: reasons and messages come from the
// controllers, and condition types and reasons are constants in fleet/v1alpha1.
package status
