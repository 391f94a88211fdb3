package propagation

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/flotilla-dev/flotilla/clusters"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/status"
	"github.com/flotilla-dev/flotilla/propagation/plan"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=baselinebindings/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=baselinebindings/finalizers,verbs=update

// BindingReconciler makes one member hold the revision its BaselineBinding was released:
// it renders the Baseline for the member, applies it, prunes what left it, and reports.
// Bindings of different members reconcile in parallel, so a slow member delays no other.
type BindingReconciler struct {
	Client   client.Client
	Sources  *sourceReader
	Members  clusters.MemberAccess
	Kinds    clusters.KindWatches
	Recorder recorder.EventRecorder
	// Resync is the backstop period for drift the watches missed; jittered ±10%.
	Resync time.Duration
	// Slots bounds the reconciles working on one member at once (nil: two per member), so
	// that members which stop answering hold few of the shared workers; see doc.go.
	Slots *clusters.MemberSlots
	// MemberTimeout bounds one reconcile's work on a member (every single call is bounded
	// by the connection manager as well); zero means two minutes.
	MemberTimeout time.Duration
	// Limits bound what a Baseline may own in one member (the inventory); zero fields take
	// the defaults.
	Limits    Limits
	slotsOnce sync.Once
	// waiters are the bindings waiting for a slot of their member (see memberWork).
	waiters *memberWaiters
	// records are the inventories this process's applies recorded last, newer than a
	// binding's cached status can be (see appliedRecords).
	records *appliedRecords
}

// busyRequeue is when a binding whose member had no free slot comes back if no controller
// queue is there to wake it into (a reconciler used without its setup); with one it waits in
// waiters instead. slotWait is how long a reconcile waits for a slot before it gives its
// worker back.
const (
	busyRequeue = 250 * time.Millisecond
	slotWait    = 100 * time.Millisecond
)

func (r *BindingReconciler) init() {
	r.slotsOnce.Do(func() {
		if r.Slots == nil {
			r.Slots = clusters.NewMemberSlots(2)
		}
		if r.MemberTimeout <= 0 {
			r.MemberTimeout = 2 * time.Minute
		}
		if r.waiters == nil {
			r.waiters = newMemberWaiters()
		}
		r.records = newAppliedRecords()
	})
}

// memberWork takes a slot of the member and bounds the work on it with MemberTimeout; done
// gives the slot back and wakes the bindings waiting for one. ok is false when the member
// is busy: req then waits for a slot (memberWaiters) and comes back when one is free, and
// the caller returns the Result it is given.
func (r *BindingReconciler) memberWork(ctx context.Context, cluster string, req ctrl.Request) (_ context.Context, done func(), busy ctrl.Result, ok bool) {
	r.init()
	release, ok := r.Slots.Acquire(ctx, cluster, slotWait)
	if !ok {
		if !r.waiters.wait(cluster, req) {
			return ctx, nil, ctrl.Result{RequeueAfter: busyRequeue}, false
		}
		// A slot given back between the failed wait and the line above woke nobody.
		if release, ok := r.Slots.Acquire(ctx, cluster, 0); ok {
			release()
			r.waiters.wake(cluster)
		}
		return ctx, nil, ctrl.Result{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, r.MemberTimeout)
	return ctx, func() { cancel(); release(); r.waiters.wake(cluster) }, ctrl.Result{}, true
}

// Reconcile applies the released revision to the member, or cleans up on deletion. What the
// apply found is written to status once, by the deferred patch.
func (r *BindingReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, err error) {
	bb := &fleetv1alpha1.BaselineBinding{}
	if err := r.Client.Get(ctx, req.NamespacedName, bb); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	b := &fleetv1alpha1.Baseline{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: bb.Spec.BaselineName}, b); err != nil {
		if client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, err
		}
		b = nil // the Baseline is gone; only clean-up remains
	}
	memberCtx, done, busy, ok := r.memberWork(ctx, bb.Spec.ClusterName, req)
	if !ok {
		return busy, nil
	}
	defer done()
	if !bb.DeletionTimestamp.IsZero() || b == nil {
		return r.reconcileDelete(memberCtx, bb, b)
	}
	if controllerutil.AddFinalizer(bb, fleetv1alpha1.FinalizerBaselineCleanup) {
		if err := r.Client.Update(ctx, bb); err != nil {
			return ctrl.Result{}, err
		}
	}
	// Locked: some outcomes keep what the last reconcile reported (a paused member's Applied
	// status stays what it was), so a reconcile that read a binding older than that report
	// must not write over it; it gets a conflict and reads again.
	p := status.NewPatcher(r.Client, bb, status.WithEvents(r.Recorder, b, bindingEvent), status.WithOptimisticLock())
	defer func() { err = p.Patch(ctx, bb, err) }()
	// Member calls carry memberCtx; the deferred status write does not, so that a member
	// that ran out of time still gets its failure reported.
	return r.reconcileApply(memberCtx, bb, b)
}

func (r *BindingReconciler) reconcileApply(ctx context.Context, bb *fleetv1alpha1.BaselineBinding, b *fleetv1alpha1.Baseline) (ctrl.Result, error) {
	cluster := bb.Spec.ClusterName
	mc := &fleetv1alpha1.MemberCluster{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: cluster}, mc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err) // the Baseline controller unbinds it
	}
	if bb.Spec.Revision == "" {
		status.Set(bb, fleetv1alpha1.ConditionApplied, metav1.ConditionFalse, fleetv1alpha1.ReasonWaitingForRollout,
			"waiting for the rollout to release a revision to this member")
		return ctrl.Result{}, nil
	}
	member, err := r.Members.Client(cluster)
	if errors.Is(err, clusters.ErrNotConnected) {
		// No retry loop: the member's connect event brings this binding back.
		if meta.IsStatusConditionTrue(mc.Status.Conditions, fleetv1alpha1.ConditionReady) {
			// The hub reported it Ready and this process has not connected yet (it just
			// started, or is reconnecting): not worth a status write that a restart would
			// make for every binding.
			return ctrl.Result{}, nil
		}
		status.Set(bb, fleetv1alpha1.ConditionApplied, metav1.ConditionFalse, fleetv1alpha1.ReasonClusterUnreachable,
			fmt.Sprintf("cluster %q is not connected; nothing is applied or pruned until it is", cluster))
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if b.Spec.Paused || mc.Spec.Paused {
		status.SetReason(bb, fleetv1alpha1.ConditionApplied, fleetv1alpha1.ReasonPaused,
			"paused: no writes to this member (Baseline or MemberCluster spec.paused)")
		return ctrl.Result{}, nil
	}

	// The revision as the Baseline controller rendered it, parsed once for all members.
	revision := bb.Spec.Revision
	out, err := r.Sources.current(ctx, b)
	var srcErr *sourceError
	switch {
	case errors.As(err, &srcErr):
		return ctrl.Result{}, nil // the Baseline reports it; keep what the member has
	case err != nil:
		return ctrl.Result{}, err
	case out.revision != bb.Spec.Revision && releasedAtOnce(b):
		// Released to every member in the Baseline controller's reconcile that rendered it;
		// applied now rather than after this binding's release comes back through the hub
		// (a write per member, which a busy hub takes seconds to make). The release still
		// records it in the spec.
		revision = out.revision
	case out.revision != bb.Spec.Revision:
		status.SetReason(bb, fleetv1alpha1.ConditionApplied, fleetv1alpha1.ReasonWaitingForRollout,
			fmt.Sprintf("the Baseline is at revision %s; this member holds %s until the rollout reaches it", out.revision, bb.Spec.Revision))
		return ctrl.Result{}, nil
	}

	desired, err := r.desiredObjects(ctx, b, mc, member, out)
	if err != nil {
		return r.failed(bb, b, fleetv1alpha1.ReasonInvalidSource, err)
	}
	// The fan-out into namespaces decides what the Baseline owns in this member: the
	// inventory, which must stay bounded, so an oversized one is refused before any write.
	limits := r.Limits.withDefaults()
	fits := func(kept int) error {
		return limits.checkMember(cluster, len(out.resources), len(out.perNamespace), len(desired), kept)
	}
	if err := fits(0); err != nil {
		return r.failed(bb, b, fleetv1alpha1.ReasonBaselineTooLarge, err)
	}
	// Each kind once: every call looks at every member.
	kinds := map[schema.GroupVersionKind]bool{}
	for _, d := range desired {
		if gvk := d.Object.GroupVersionKind(); !kinds[gvk] {
			kinds[gvk] = true
			r.Kinds.EnsureKind(gvk)
		}
	}

	start := time.Now()
	a := &applier{member: member, baseline: b, fits: fits, recent: r.records.get(bb.UID)}
	if cached, err := r.Members.Reader(cluster); err == nil {
		a.cached = cached
	}
	res, err := a.apply(ctx, desired, bb.Status.Inventory)
	if err == nil && len(res.UnknownKinds) == 0 {
		r.records.set(bb.UID, res.Owned)
	}
	applyLatency.WithLabelValues(b.Name, cluster).Observe(time.Since(start).Seconds())
	var tooLarge *tooLargeError
	if errors.As(err, &tooLarge) {
		return r.failed(bb, b, fleetv1alpha1.ReasonBaselineTooLarge, tooLarge.err)
	}
	if err != nil {
		applies.WithLabelValues(b.Name, cluster, "failed").Inc()
		return r.failed(bb, b, fleetv1alpha1.ReasonApplyFailed, fmt.Errorf("apply to cluster %q: %w", cluster, err))
	}
	if len(res.UnknownKinds) > 0 {
		applies.WithLabelValues(b.Name, cluster, "failed").Inc()
		return r.failed(bb, b, fleetv1alpha1.ReasonUnknownKind,
			fmt.Errorf("cluster %q does not serve the kind of %s; nothing was applied", cluster, status.List(res.UnknownKinds, listed, "; ")))
	}
	applies.WithLabelValues(b.Name, cluster, "succeeded").Inc()
	objectsWritten.WithLabelValues(b.Name, cluster).Add(float64(res.Written))

	pruned := 0
	if pruning(b) {
		if pruned, err = a.prune(ctx, res.Prune); err != nil {
			return r.failed(bb, b, fleetv1alpha1.ReasonApplyFailed, fmt.Errorf("prune in cluster %q: %w", cluster, err))
		}
		prunes.WithLabelValues(b.Name, cluster).Add(float64(pruned))
	} else {
		// Without pruning, objects that left the Baseline and are still its own in the
		// member stay listed; those gone or taken over by someone else are not ours.
		res.Owned = keepInventory(res.Owned, res.Prune)
	}
	r.report(bb, b, revision, res, pruned)
	if len(res.Unhealthy) > 0 {
		return ctrl.Result{RequeueAfter: 5 * time.Second}, nil
	}
	return ctrl.Result{RequeueAfter: jitter(r.Resync)}, nil
}

// desiredObjects renders the Baseline for one member (plan.Desired), asking the member
// which kinds are namespaced and, from the member cache (Namespaces are watched in every
// member), which namespaces it has.
func (r *BindingReconciler) desiredObjects(ctx context.Context, b *fleetv1alpha1.Baseline, mc *fleetv1alpha1.MemberCluster,
	member client.Client, out *rendered) ([]render.Document, error) {
	var namespaces []corev1.Namespace
	if b.Spec.PerNamespace != nil {
		reader, err := r.Members.Reader(mc.Name)
		if err != nil {
			return nil, err
		}
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
		if err := reader.List(ctx, list); err != nil {
			return nil, fmt.Errorf("list namespaces of cluster %q: %w", mc.Name, err)
		}
		// The cache holds metadata only: a terminating Namespace shows by its deletion time.
		namespaces = make([]corev1.Namespace, len(list.Items))
		for i := range list.Items {
			namespaces[i].ObjectMeta = list.Items[i].ObjectMeta
		}
	}
	return plan.Desired(b, &render.Rendered{Revision: out.revision, Resources: out.resources, PerNamespace: out.perNamespace}, mc, member.RESTMapper(), namespaces)
}

// failed records a failure that needs a person (or the member) to change something; the
// rollout counts it. It is retried on a slow period, not in a hot loop.
func (r *BindingReconciler) failed(bb *fleetv1alpha1.BaselineBinding, b *fleetv1alpha1.Baseline, reason string, err error) (ctrl.Result, error) {
	status.Set(bb, fleetv1alpha1.ConditionApplied, metav1.ConditionFalse, reason, err.Error())
	return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
}

// report writes what the apply of revision found into the binding's status.
func (r *BindingReconciler) report(bb *fleetv1alpha1.BaselineBinding, b *fleetv1alpha1.Baseline, revision string, res *memberApply, pruned int) {
	cluster := bb.Spec.ClusterName
	changedRevision := bb.Status.Revision != revision
	bb.Status.Revision = revision
	bb.Status.Inventory = res.Owned
	if res.Written > 0 || pruned > 0 || changedRevision || bb.Status.LastAppliedTime == nil {
		now := metav1.Now()
		bb.Status.LastAppliedTime = &now
	}
	msg := fmt.Sprintf("revision %s: %d objects in cluster %q", revision, len(res.Owned), cluster)
	if b.Spec.Policy == fleetv1alpha1.PolicyInform {
		msg += " (Inform: nothing is written)"
	}
	status.Set(bb, fleetv1alpha1.ConditionApplied, metav1.ConditionTrue, fleetv1alpha1.ReasonApplySucceeded, msg)

	if len(res.Unhealthy) > 0 {
		status.Set(bb, fleetv1alpha1.ConditionHealthy, metav1.ConditionFalse, fleetv1alpha1.ReasonUnhealthy, status.List(res.Unhealthy, listed, "; "))
	} else {
		status.Set(bb, fleetv1alpha1.ConditionHealthy, metav1.ConditionTrue, fleetv1alpha1.ReasonHealthy, "every applied object is healthy")
	}

	switch {
	case b.Spec.Policy == fleetv1alpha1.PolicyInform && len(res.Drifted) > 0:
		status.Set(bb, fleetv1alpha1.ConditionDrifted, metav1.ConditionTrue, fleetv1alpha1.ReasonDriftDetected, status.List(res.Drifted, listed, "; "))
	case len(res.Drifted) > 0:
		// Each correction is news, even when the condition's status does not move: someone
		// deleted or changed what the Baseline enforces.
		driftCorrections.WithLabelValues(b.Name, cluster).Add(float64(len(res.Drifted)))
		msg := "corrected: " + status.List(res.Drifted, listed, "; ")
		status.Set(bb, fleetv1alpha1.ConditionDrifted, metav1.ConditionFalse, fleetv1alpha1.ReasonDriftCorrected, msg)
		r.Recorder.Eventf(b, bb, corev1.EventTypeNormal, fleetv1alpha1.ReasonDriftCorrected, "CorrectDrift", "cluster %q: %s", cluster, msg)
	default:
		if c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionDrifted); c == nil || c.Status != metav1.ConditionFalse {
			status.Set(bb, fleetv1alpha1.ConditionDrifted, metav1.ConditionFalse, fleetv1alpha1.ReasonInSync, "the member matches the Baseline")
		}
	}

	bindingDrifted.WithLabelValues(b.Name, cluster).Set(conditionGauge(bb.Status.Conditions, fleetv1alpha1.ConditionDrifted))

	if len(res.Conflicts) > 0 {
		status.Set(bb, fleetv1alpha1.ConditionConflict, metav1.ConditionTrue, fleetv1alpha1.ReasonOwnedByOther,
			"left untouched: "+status.List(res.Conflicts, listed, "; "))
	} else {
		status.Set(bb, fleetv1alpha1.ConditionConflict, metav1.ConditionFalse, fleetv1alpha1.ReasonNoConflict, "no object is owned by someone else")
	}
}

// bindingEvent names the changes of a binding's status worth an event (status.WithEvents),
// each sent once, when it happens: an apply that starts failing, objects found owned by
// someone else, drift that policy Inform reports. Drift corrections are sent by report, one
// event per apply that made them. The notes name the member: the events regard the Baseline.
func bindingEvent(obj status.Object, c metav1.Condition) (string, string, string) {
	bb := obj.(*fleetv1alpha1.BaselineBinding)
	note := fmt.Sprintf("cluster %q: %s", bb.Spec.ClusterName, c.Message)
	switch {
	case c.Type == fleetv1alpha1.ConditionApplied && c.Status == metav1.ConditionFalse && applyFailures[c.Reason]:
		return corev1.EventTypeWarning, "Apply", note
	case c.Type == fleetv1alpha1.ConditionConflict && c.Status == metav1.ConditionTrue,
		c.Type == fleetv1alpha1.ConditionDrifted && c.Status == metav1.ConditionTrue:
		return corev1.EventTypeWarning, "Apply", note
	}
	return "", "", ""
}

// applyFailures are the reasons of Applied=False that need someone to act (failed); the
// others (waiting for the rollout, a member not connected) are states the Baseline's status
// and the member's own events already tell.
var applyFailures = map[string]bool{
	fleetv1alpha1.ReasonApplyFailed: true, fleetv1alpha1.ReasonUnknownKind: true,
	fleetv1alpha1.ReasonBaselineTooLarge: true, fleetv1alpha1.ReasonInvalidSource: true,
}

// reconcileDelete removes (deletionPolicy Delete) or releases (Orphan) what the binding
// applied, then lets it go. On a member that is not connected or paused nothing can be
// cleaned: the finalizer stays until it reconnects (or is unpaused), or until its
// MemberCluster is gone — the MemberCluster's own finalizer waits a bounded time for this
// clean-up and reports what it had to leave behind.
func (r *BindingReconciler) reconcileDelete(ctx context.Context, bb *fleetv1alpha1.BaselineBinding, b *fleetv1alpha1.Baseline) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(bb, fleetv1alpha1.FinalizerBaselineCleanup) {
		forgetBinding(bb.Spec.BaselineName, bb.Spec.ClusterName)
		return ctrl.Result{}, nil
	}
	cluster := bb.Spec.ClusterName
	mc := &fleetv1alpha1.MemberCluster{}
	memberGone := client.IgnoreNotFound(r.Client.Get(ctx, types.NamespacedName{Name: cluster}, mc)) == nil && mc.Name == ""
	member, err := r.Members.Client(cluster)
	switch {
	case memberGone:
		log.FromContext(ctx).Info("member is gone; dropping its binding without clean-up", "cluster", cluster)
	case mc.Spec.Paused:
		log.FromContext(ctx).Info("member is paused; clean-up waits", "cluster", cluster)
		return ctrl.Result{}, nil // no writes to a paused member; unpausing brings us back
	case err == nil:
		owner := b
		if owner == nil {
			owner = &fleetv1alpha1.Baseline{ObjectMeta: metav1.ObjectMeta{Name: bb.Spec.BaselineName}}
		}
		a := &applier{member: member, baseline: owner}
		orphan := owner.Spec.DeletionPolicy == fleetv1alpha1.DeletionOrphan
		// Every object is tried: one that cannot be cleaned up does not keep the others.
		var errs *multierror.Error
		for _, e := range bb.Status.Inventory {
			if orphan {
				err = a.orphan(ctx, e)
			} else {
				_, err = a.deleteOwned(ctx, e)
			}
			if err != nil {
				errs = multierror.Append(errs, fmt.Errorf("clean up binding %s in cluster %q: %w", bb.Name, cluster, err))
			}
		}
		if err := status.Aggregate(errs); err != nil {
			return ctrl.Result{}, err
		}
		if !orphan {
			prunes.WithLabelValues(bb.Spec.BaselineName, cluster).Add(float64(len(bb.Status.Inventory)))
		}
	default:
		log.FromContext(ctx).Info("member is not connected; clean-up waits", "cluster", cluster, "reason", err.Error())
		return ctrl.Result{}, nil // the connect event brings us back
	}
	r.records.forget(bb.UID)
	// The series go before the finalizer: a reconcile that read the binding from a cache
	// older than its removal runs this clean-up once more (counting the prunes again) and
	// then finds it gone, and nothing would delete what that run re-created.
	forgetBinding(bb.Spec.BaselineName, cluster)
	controllerutil.RemoveFinalizer(bb, fleetv1alpha1.FinalizerBaselineCleanup)
	if err := r.Client.Update(ctx, bb); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, nil
}

// pruning tells whether b deletes what left it: only Enforce with spec.prune on.
func pruning(b *fleetv1alpha1.Baseline) bool {
	return b.Spec.Policy == fleetv1alpha1.PolicyEnforce && (b.Spec.Prune == nil || *b.Spec.Prune)
}

// keepInventory is the inventory of a Baseline that does not prune: what it owns now and
// what left it but is still its own in the member (the plan's prune list, every entry kept).
func keepInventory(owned []fleetv1alpha1.InventoryEntry, left []plan.Prune) []fleetv1alpha1.InventoryEntry {
	seen := map[fleetv1alpha1.InventoryEntry]bool{}
	out := make([]fleetv1alpha1.InventoryEntry, 0, len(owned)+len(left))
	for _, e := range owned {
		seen[render.EntryKey(e)] = true
		out = append(out, e)
	}
	for _, p := range left {
		if !seen[render.EntryKey(p.Entry)] {
			seen[render.EntryKey(p.Entry)] = true
			out = append(out, p.Entry)
		}
	}
	return out
}

// listed is how many objects a binding's condition message names (conflicts, drift,
// unhealthy objects, unknown kinds); the rest are counted.
const listed = 3

// jitter spreads periodic resyncs of many bindings over ±10% of the period.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}

// releasedAtOnce tells whether every new revision of b is released to all its members as
// soon as it is rendered: no rollout strategy (planRollout then releases every member in
// the reconcile that rendered the revision) and not paused.
func releasedAtOnce(b *fleetv1alpha1.Baseline) bool {
	return b.Spec.Rollout == nil && !b.Spec.Paused
}
