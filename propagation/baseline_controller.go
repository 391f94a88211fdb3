package propagation

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=baselines,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=baselines/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=baselines/finalizers,verbs=update
// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=baselinebindings,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=memberclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch,namespace=flotilla-system

// BaselineReconciler validates a Baseline's sources, keeps one BaselineBinding per selected
// member, moves a new revision through the fleet (the rollout), and sums the bindings up
// in the Baseline's status. It never talks to members: bindings do.
type BaselineReconciler struct {
	Client   client.Client
	Sources  *sourceReader
	Recorder recorder.EventRecorder
}

// Reconcile runs the phases in order: delete, validate, bind, roll out, report.
func (r *BaselineReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	b := &fleetv1alpha1.Baseline{}
	if err := r.Client.Get(ctx, req.NamespacedName, b); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !b.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, b)
	}
	if controllerutil.AddFinalizer(b, fleetv1alpha1.FinalizerBaselineCleanup) {
		if err := r.Client.Update(ctx, b); err != nil {
			return ctrl.Result{}, err
		}
	}
	before := b.Status.DeepCopy()

	out, err := r.Sources.render(ctx, b)
	var srcErr *sourceError
	if errors.As(err, &srcErr) {
		// Nothing from a revision that does not validate reaches any member: bindings keep
		// the revision they have.
		r.Recorder.Eventf(b, nil, corev1.EventTypeWarning, srcErr.reason, "Render", "%s", srcErr.msg)
		setStalled(b, srcErr.reason, srcErr.msg)
		return ctrl.Result{}, r.patchStatus(ctx, b, before)
	}
	if err != nil {
		return ctrl.Result{}, err
	}

	members, bindings, err := r.bind(ctx, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	plan, err := r.rollOut(ctx, b, out.revision, members, bindings)
	if err != nil {
		return ctrl.Result{}, err
	}
	summarizeStatus(b, out.revision, members, bindings, plan)
	return ctrl.Result{}, r.patchStatus(ctx, b, before)
}

// bind creates a binding for every selected member and deletes the bindings of members
// that are no longer selected (their finalizer removes or orphans what they applied).
func (r *BaselineReconciler) bind(ctx context.Context, b *fleetv1alpha1.Baseline) (map[string]*fleetv1alpha1.MemberCluster, map[string]*fleetv1alpha1.BaselineBinding, error) {
	selector, err := metav1.LabelSelectorAsSelector(&b.Spec.ClusterSelector)
	if err != nil {
		return nil, nil, err // the API server validated it; this is a bug, not user input
	}
	clusterList := &fleetv1alpha1.MemberClusterList{}
	if err := r.Client.List(ctx, clusterList, client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return nil, nil, err
	}
	members := map[string]*fleetv1alpha1.MemberCluster{}
	for i := range clusterList.Items {
		mc := &clusterList.Items[i]
		if mc.DeletionTimestamp.IsZero() {
			members[mc.Name] = mc
		}
	}
	bindingList := &fleetv1alpha1.BaselineBindingList{}
	if err := r.Client.List(ctx, bindingList, client.MatchingLabels{fleetv1alpha1.LabelBaseline: b.Name}); err != nil {
		return nil, nil, err
	}
	bindings := map[string]*fleetv1alpha1.BaselineBinding{}
	for i := range bindingList.Items {
		bb := &bindingList.Items[i]
		if _, selected := members[bb.Spec.ClusterName]; !selected {
			if err := r.Client.Delete(ctx, bb); client.IgnoreNotFound(err) != nil {
				return nil, nil, fmt.Errorf("unbind cluster %q: %w", bb.Spec.ClusterName, err)
			}
			continue
		}
		bindings[bb.Spec.ClusterName] = bb
	}
	for name := range members {
		if _, ok := bindings[name]; ok {
			continue
		}
		bb := &fleetv1alpha1.BaselineBinding{
			ObjectMeta: metav1.ObjectMeta{
				Name:   fleetv1alpha1.BindingName(b.Name, name),
				Labels: map[string]string{fleetv1alpha1.LabelBaseline: b.Name, fleetv1alpha1.LabelCluster: name},
			},
			Spec: fleetv1alpha1.BaselineBindingSpec{BaselineName: b.Name, ClusterName: name},
		}
		if err := controllerutil.SetControllerReference(b, bb, r.Client.Scheme()); err != nil {
			return nil, nil, err
		}
		if err := r.Client.Create(ctx, bb); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, nil, fmt.Errorf("bind cluster %q: %w", name, err)
		}
		bindings[name] = bb
	}
	return members, bindings, nil
}

// rollOut releases the new revision to the members the plan allows.
func (r *BaselineReconciler) rollOut(ctx context.Context, b *fleetv1alpha1.Baseline, revision string,
	members map[string]*fleetv1alpha1.MemberCluster, bindings map[string]*fleetv1alpha1.BaselineBinding) (rolloutPlan, error) {
	var canary labels.Selector
	if b.Spec.Rollout != nil && b.Spec.Rollout.Canary != nil {
		var err error
		if canary, err = metav1.LabelSelectorAsSelector(b.Spec.Rollout.Canary); err != nil {
			return rolloutPlan{}, err
		}
	}
	states := make([]memberRollout, 0, len(bindings))
	for name, bb := range bindings {
		states = append(states, memberRollout{
			Cluster:  name,
			Canary:   canary != nil && canary.Matches(labels.Set(members[name].Labels)),
			Released: bb.Spec.Revision == revision,
			Done:     bindingDone(bb, revision),
			Failed:   bindingFailed(bb, revision),
		})
	}
	plan := planRollout(states, b.Spec.Rollout, b.Spec.Paused)
	for _, name := range plan.Release {
		bb := bindings[name]
		patch := client.MergeFrom(bb.DeepCopy())
		bb.Spec.Revision = revision
		if err := r.Client.Patch(ctx, bb, patch); err != nil {
			return plan, fmt.Errorf("release revision %s to cluster %q: %w", revision, name, err)
		}
	}
	return plan, nil
}

// bindingDone: the member holds revision, applied and healthy.
func bindingDone(bb *fleetv1alpha1.BaselineBinding, revision string) bool {
	return bb.Status.Revision == revision &&
		meta.IsStatusConditionTrue(bb.Status.Conditions, fleetv1alpha1.ConditionApplied) &&
		meta.IsStatusConditionTrue(bb.Status.Conditions, fleetv1alpha1.ConditionHealthy)
}

// bindingFailed: the member was given revision and could not apply it.
func bindingFailed(bb *fleetv1alpha1.BaselineBinding, revision string) bool {
	if bb.Spec.Revision != revision {
		return false
	}
	c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionApplied)
	return c != nil && c.Status == metav1.ConditionFalse &&
		(c.Reason == fleetv1alpha1.ReasonApplyFailed || c.Reason == fleetv1alpha1.ReasonUnknownKind || c.Reason == fleetv1alpha1.ReasonInvalidSource)
}

// reconcileDelete deletes every binding (each removes or orphans what it applied, as
// deletionPolicy says) and lets the Baseline go once they are gone.
func (r *BaselineReconciler) reconcileDelete(ctx context.Context, b *fleetv1alpha1.Baseline) (ctrl.Result, error) {
	list := &fleetv1alpha1.BaselineBindingList{}
	if err := r.Client.List(ctx, list, client.MatchingLabels{fleetv1alpha1.LabelBaseline: b.Name}); err != nil {
		return ctrl.Result{}, err
	}
	for i := range list.Items {
		if err := r.Client.Delete(ctx, &list.Items[i]); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, err
		}
	}
	if len(list.Items) > 0 {
		return ctrl.Result{}, nil // binding deletions bring us back (Owns)
	}
	if controllerutil.RemoveFinalizer(b, fleetv1alpha1.FinalizerBaselineCleanup) {
		return ctrl.Result{}, r.Client.Update(ctx, b)
	}
	return ctrl.Result{}, nil
}

func (r *BaselineReconciler) patchStatus(ctx context.Context, b *fleetv1alpha1.Baseline, before *fleetv1alpha1.BaselineStatus) error {
	b.Status.ObservedGeneration = b.Generation
	if equality.Semantic.DeepEqual(before, &b.Status) {
		return nil
	}
	base := b.DeepCopy()
	base.Status = *before
	if err := r.Client.Status().Patch(ctx, b, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("update status of Baseline %q: %w", b.Name, err)
	}
	return nil
}
