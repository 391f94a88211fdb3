package status

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/hashicorp/go-multierror"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Object is an API object whose status carries conditions and observedGeneration.
type Object interface {
	client.Object
	GetConditions() []metav1.Condition
	SetConditions([]metav1.Condition)
	GetObservedGeneration() int64
	SetObservedGeneration(int64)
}

// Set sets one condition, stamped with the object's generation. A message longer than
// MaxMessage is cut (Truncate), so that no message can make the status write fail.
func Set(obj Object, typ string, s metav1.ConditionStatus, reason, msg string) {
	conds := obj.GetConditions()
	meta.SetStatusCondition(&conds, metav1.Condition{
		Type: typ, Status: s, Reason: reason, Message: Truncate(msg, MaxMessage), ObservedGeneration: obj.GetGeneration(),
	})
	obj.SetConditions(conds)
}

// SetReason changes a condition's reason and message but keeps its status (Unknown when it
// had none): for states like "paused" that say nothing new about the condition itself.
func SetReason(obj Object, typ, reason, msg string) {
	s := metav1.ConditionUnknown
	if c := meta.FindStatusCondition(obj.GetConditions(), typ); c != nil {
		s = c.Status
	}
	Set(obj, typ, s, reason, msg)
}

// Remove drops a condition.
func Remove(obj Object, typ string) {
	conds := obj.GetConditions()
	meta.RemoveStatusCondition(&conds, typ)
	obj.SetConditions(conds)
}

// IsTrue reports whether a condition is present and True.
func IsTrue(obj Object, typ string) bool {
	return meta.IsStatusConditionTrue(obj.GetConditions(), typ)
}

// stalledError is a user error: retrying changes nothing until a person changes the input.
type stalledError struct {
	reason string
	err    error
}

func (e *stalledError) Error() string { return e.err.Error() }
func (e *stalledError) Unwrap() error { return e.err }

// Stalled marks err as a user error with a reason a person can act on (a constant of
// fleet/v1alpha1). The reconcile is terminal: controller-runtime does not retry it, and the
// next change to the object (or to what it watches) starts a new one.
func Stalled(reason string, err error) error {
	return reconcile.TerminalError(&stalledError{reason: reason, err: err})
}

// StalledReason returns the reason of a Stalled error anywhere in err's chain.
func StalledReason(err error) (string, bool) {
	var s *stalledError
	if errors.As(err, &s) {
		return s.reason, true
	}
	return "", false
}

// Patcher writes an object's status once per reconcile, compared against a snapshot.
type Patcher struct {
	client client.Client
	before Object
	lock   bool
	// events, regarding and decide send transition events (WithEvents).
	events    recorder.EventRecorder
	regarding runtime.Object
	decide    EventFor
}

// Option changes how a Patcher writes.
type Option func(*Patcher)

// WithOptimisticLock sends the snapshot's resourceVersion with the patch, for objects whose
// status has more than one writer: a merge patch replaces the conditions list whole, so
// without it one writer's condition (a MemberCluster's RegistrationConflict, written by the
// Cluster API source) would be lost to the other's stale copy. A conflict is returned for a
// retry on a fresh read. Single-writer objects do without it: each reconcile recomputes
// their whole status, and a patch from a stale cache read is merely redundant.
func WithOptimisticLock() Option { return func(p *Patcher) { p.lock = true } }

// NewPatcher snapshots obj and clears the conditions that describe one reconcile only
// (Stalled, Reconciling): the phases set them again while they still hold.
func NewPatcher(c client.Client, obj Object, opts ...Option) *Patcher {
	p := &Patcher{client: c, before: obj.DeepCopyObject().(Object)}
	for _, o := range opts {
		o(p)
	}
	Remove(obj, fleetv1alpha1.ConditionStalled)
	Remove(obj, fleetv1alpha1.ConditionReconciling)
	return p
}

// Patch finishes the status according to the reconcile's outcome (see the package doc) and
// writes it with a merge patch of the status subresource if anything changed. It returns
// reconcileErr, joined with the patch error if the write failed. An object deleted in the
// meantime is not an error.
func (p *Patcher) Patch(ctx context.Context, obj Object, reconcileErr error) error {
	var stalled *stalledError
	switch {
	case errors.As(reconcileErr, &stalled):
		// The user error's own text: reconcileErr.Error() begins with "terminal error: ".
		reason, msg := stalled.reason, stalled.err.Error()
		Set(obj, fleetv1alpha1.ConditionStalled, metav1.ConditionTrue, reason, msg)
		Set(obj, fleetv1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
		Remove(obj, fleetv1alpha1.ConditionReconciling)
		obj.SetObservedGeneration(obj.GetGeneration())
	case reconcileErr != nil && IsTrue(obj, fleetv1alpha1.ConditionStalled):
		// A phase found a state a person must act on (a rollout stopped at its failure
		// budget) and something else failed too: Stalled is the stronger statement, and
		// kstatus reads whichever of Stalled and Reconciling comes first, so set only one.
	case reconcileErr != nil:
		// The error text may come from a member's API server; events and logs carry it.
		Set(obj, fleetv1alpha1.ConditionReconciling, metav1.ConditionTrue, fleetv1alpha1.ReasonRetrying,
			"the last attempt failed and is retried with backoff; the controller's events and logs say why")
	default:
		obj.SetObservedGeneration(obj.GetGeneration())
	}
	keepTransitionTimes(p.before.GetConditions(), obj)

	after := obj.DeepCopyObject().(Object)
	if equality.Semantic.DeepEqual(statusOf(p.before), statusOf(after)) {
		return reconcileErr
	}
	patch := client.MergeFrom(p.before)
	if p.lock {
		patch = client.MergeFromWithOptions(p.before, client.MergeFromWithOptimisticLock{})
	}
	err := p.client.Status().Patch(ctx, obj, patch)
	if apierrors.IsNotFound(err) {
		return reconcileErr // deleted meanwhile: nobody to tell
	}
	if err != nil {
		patchErr := fmt.Errorf("update status of %T %q: %w", obj, obj.GetName(), err)
		if reconcileErr == nil || errors.Is(reconcileErr, reconcile.TerminalError(nil)) {
			// Retried even after a user error: the status that tells the user is not written.
			return patchErr
		}
		return multierror.Append(reconcileErr, patchErr)
	}
	p.sendTransitions(obj)
	return reconcileErr
}

// keepTransitionTimes restores lastTransitionTime of conditions whose status did not change,
// and their order: a condition removed and set again within one reconcile must not look like
// a transition, nor move to the end of the list (which would be a write that says nothing).
func keepTransitionTimes(before []metav1.Condition, obj Object) {
	conds := obj.GetConditions()
	position := make(map[string]int, len(before))
	for i, c := range before {
		position[c.Type] = i
	}
	for i := range conds {
		if old := meta.FindStatusCondition(before, conds[i].Type); old != nil && old.Status == conds[i].Status {
			conds[i].LastTransitionTime = old.LastTransitionTime
		}
	}
	// Known types keep their old place; new ones follow in the order they were set.
	sort.SliceStable(conds, func(i, j int) bool {
		pi, iKnown := position[conds[i].Type]
		pj, jKnown := position[conds[j].Type]
		switch {
		case iKnown && jKnown:
			return pi < pj
		default:
			return iKnown && !jKnown
		}
	})
	obj.SetConditions(conds)
}

// statusOf is the part of an object the patcher owns: everything but metadata and spec. It
// compares objects through their unstructured form so that any API type works.
func statusOf(obj Object) any {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return obj // compare whole objects; a spurious patch is harmless
	}
	return u["status"]
}
