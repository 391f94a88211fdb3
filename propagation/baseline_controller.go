package propagation

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-multierror"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/status"
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

// Reconcile reads as the story of a Baseline: get it, let a deleted one go, hold the
// finalizer, then validate, bind, roll out and sum up. Status is computed once, from what
// the phases found, and written by the deferred patch, whatever the outcome.
func (r *BaselineReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, err error) {
	b := &fleetv1alpha1.Baseline{}
	if err := r.Client.Get(ctx, req.NamespacedName, b); err != nil {
		if apierrors.IsNotFound(err) {
			forgetBaseline(req.Name) // gone without our finalizer's clean-up
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !b.DeletionTimestamp.IsZero() {
		// Before the patcher: a Baseline that is going away gets no more status writes.
		return r.reconcileDelete(ctx, b)
	}
	if controllerutil.AddFinalizer(b, fleetv1alpha1.FinalizerBaselineCleanup) {
		if err := r.Client.Update(ctx, b); err != nil {
			return ctrl.Result{}, err
		}
	}
	p := status.NewPatcher(r.Client, b, status.WithEvents(r.Recorder, nil, baselineEvent))
	defer func() {
		err = p.Patch(ctx, b, err)
		observeBaseline(b)
	}()

	out, err := r.Sources.render(ctx, b)
	if err != nil {
		return ctrl.Result{}, r.sourceFailed(b, err)
	}
	members, bindings, bindErr := r.bind(ctx, b, out.revision)
	if members == nil {
		return ctrl.Result{}, bindErr // nothing is known about the fleet: keep the last summary
	}
	plan, releaseErr := r.rollOut(ctx, b, out.revision, members, bindings)
	// Members whose binding could not be made or released are reported like the others
	// (waiting); the error brings a retry.
	summarizeStatus(b, out.revision, members, bindings, plan)
	return ctrl.Result{}, status.Aggregate(multierror.Append(bindErr, releaseErr))
}

// baselineEvent names the changes of a Baseline's status worth an event (status.WithEvents),
// each sent once, when it happens: a Baseline that stalls (sources that do not render, a
// rollout stopped at maxFailures) and a revision that reached every selected member.
func baselineEvent(_ status.Object, c metav1.Condition) (string, string, string) {
	switch {
	case c.Type == fleetv1alpha1.ConditionStalled && c.Status == metav1.ConditionTrue:
		if c.Reason == fleetv1alpha1.ReasonTooManyFailures {
			return corev1.EventTypeWarning, "Rollout", ""
		}
		return corev1.EventTypeWarning, "Render", ""
	case c.Type == fleetv1alpha1.ConditionProgressing && c.Reason == fleetv1alpha1.ReasonRolloutComplete:
		return corev1.EventTypeNormal, "Rollout", ""
	}
	return "", "", ""
}

// sourceFailed turns a Baseline whose sources do not render into a Stalled one with the
// reason and an actionable message; nothing of that revision reaches any member (bindings
// keep the revision they have). Any other error is transient.
func (r *BaselineReconciler) sourceFailed(b *fleetv1alpha1.Baseline, err error) error {
	var srcErr *sourceError
	if !errors.As(err, &srcErr) {
		return fmt.Errorf("read the sources of Baseline %q: %w", b.Name, err)
	}
	msg := srcErr.msg + "; " + sourceHint(srcErr.reason)
	status.Set(b, fleetv1alpha1.ConditionProgressing, metav1.ConditionFalse, srcErr.reason,
		"stalled: no member gets a revision the hub refused; members keep the one they have")
	return status.Stalled(srcErr.reason, errors.New(msg))
}

// sourceHint says what a person can do about a source error.
func sourceHint(reason string) string {
	switch reason {
	case fleetv1alpha1.ReasonSourceNotFound:
		return "create it in the hub namespace or correct the reference; the Baseline is reconciled again when it appears"
	case fleetv1alpha1.ReasonBaselineTooLarge:
		return "split it into several Baselines, or have the hub administrator raise the limit; nothing of it is applied"
	}
	return "fix the source; the Baseline is reconciled again when the source or the Baseline changes"
}

// bind creates a binding for every selected member and deletes the bindings of members
// that are no longer selected (their finalizer removes or orphans what they applied). Each
// member is bound concurrently and one member's failure does not stop the others: the
// maps hold every member and binding that exist, and the error reports each failure. nil
// maps mean the fleet could not be read at all. A new binding that the rollout releases
// revision to at once (a Baseline without rollout limits: all of them) is created with it,
// and with its finalizer, so that its first reconcile applies instead of waiting for the
// release to come as a second write.
func (r *BaselineReconciler) bind(ctx context.Context, b *fleetv1alpha1.Baseline, revision string) (map[string]*fleetv1alpha1.MemberCluster, map[string]*fleetv1alpha1.BaselineBinding, error) {
	selector, err := metav1.LabelSelectorAsSelector(&b.Spec.ClusterSelector)
	if err != nil {
		return nil, nil, err // the API server validated it; this is a bug, not user input
	}
	clusterList := &fleetv1alpha1.MemberClusterList{}
	if err := r.Client.List(ctx, clusterList, client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return nil, nil, fmt.Errorf("list the members of Baseline %q: %w", b.Name, err)
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
		return nil, nil, fmt.Errorf("list the bindings of Baseline %q: %w", b.Name, err)
	}
	bindings := map[string]*fleetv1alpha1.BaselineBinding{}
	var (
		g  multierror.Group
		mu sync.Mutex
	)
	for i := range bindingList.Items {
		bb := &bindingList.Items[i]
		if _, selected := members[bb.Spec.ClusterName]; selected {
			bindings[bb.Spec.ClusterName] = bb
			continue
		}
		g.Go(func() error {
			if err := r.Client.Delete(ctx, bb); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("unbind Baseline %q from cluster %q: %w", b.Name, bb.Spec.ClusterName, err)
			}
			return nil
		})
	}
	var missing []string
	for name := range members {
		if _, ok := bindings[name]; !ok {
			missing = append(missing, name)
		}
	}
	released := map[string]bool{}
	if len(missing) > 0 {
		// The rollout's decision as rollOut will make it, with the new bindings unreleased;
		// rollOut then finds the ones released here released and in flight.
		if states, err := rolloutStates(b, revision, members, bindings, missing); err == nil {
			for _, name := range planRollout(states, b.Spec.Rollout, b.Spec.Paused).Release {
				released[name] = true
			}
		}
	}
	for _, name := range missing {
		rev := ""
		if released[name] {
			rev = revision
		}
		g.Go(func() error {
			bb, err := r.createBinding(ctx, b, name, rev)
			if err != nil {
				return err
			}
			mu.Lock()
			bindings[name] = bb
			mu.Unlock()
			return nil
		})
	}
	return members, bindings, status.Aggregate(g.Wait())
}

// createBinding makes the binding of b for one member, released revision (empty: none yet)
// and holding the clean-up finalizer its controller would add; one that exists already is
// fine (the cache had not seen it yet): the Owns watch brings its current state, and until
// then it counts as not released, so that rollOut releases it if it must.
func (r *BaselineReconciler) createBinding(ctx context.Context, b *fleetv1alpha1.Baseline, cluster, revision string) (*fleetv1alpha1.BaselineBinding, error) {
	bb := &fleetv1alpha1.BaselineBinding{
		ObjectMeta: metav1.ObjectMeta{
			Name:       fleetv1alpha1.BindingName(b.Name, cluster),
			Labels:     map[string]string{fleetv1alpha1.LabelBaseline: b.Name, fleetv1alpha1.LabelCluster: cluster},
			Finalizers: []string{fleetv1alpha1.FinalizerBaselineCleanup},
		},
		Spec: fleetv1alpha1.BaselineBindingSpec{BaselineName: b.Name, ClusterName: cluster, Revision: revision},
	}
	if err := controllerutil.SetControllerReference(b, bb, r.Client.Scheme()); err != nil {
		return nil, err
	}
	if err := r.Client.Create(ctx, bb); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("bind Baseline %q to cluster %q: %w", b.Name, cluster, err)
		}
		bb.Spec.Revision = ""
	}
	return bb, nil
}

// rollOut releases the new revision to the members the plan allows, concurrently; a member
// whose release failed is reported in the error and tried again on the retry.
func (r *BaselineReconciler) rollOut(ctx context.Context, b *fleetv1alpha1.Baseline, revision string,
	members map[string]*fleetv1alpha1.MemberCluster, bindings map[string]*fleetv1alpha1.BaselineBinding) (rolloutPlan, error) {
	states, err := rolloutStates(b, revision, members, bindings, nil)
	if err != nil {
		return rolloutPlan{}, err
	}
	plan := planRollout(states, b.Spec.Rollout, b.Spec.Paused)
	var g multierror.Group
	for _, name := range plan.Release {
		bb := bindings[name] // each goroutine owns its binding
		g.Go(func() error {
			patch := client.MergeFrom(bb.DeepCopy())
			bb.Spec.Revision = revision
			if err := r.Client.Patch(ctx, bb, patch); err != nil {
				return fmt.Errorf("release revision %s of Baseline %q to cluster %q: %w", revision, b.Name, name, err)
			}
			return nil
		})
	}
	return plan, status.Aggregate(g.Wait())
}

// rolloutStates is where each member stands in the rollout of revision: those with a
// binding as it says, and unbound, members that get a binding now and have nothing released.
func rolloutStates(b *fleetv1alpha1.Baseline, revision string, members map[string]*fleetv1alpha1.MemberCluster,
	bindings map[string]*fleetv1alpha1.BaselineBinding, unbound []string) ([]memberRollout, error) {
	var canary labels.Selector
	if b.Spec.Rollout != nil && b.Spec.Rollout.Canary != nil {
		var err error
		if canary, err = metav1.LabelSelectorAsSelector(b.Spec.Rollout.Canary); err != nil {
			return nil, err
		}
	}
	isCanary := func(name string) bool {
		return canary != nil && members[name] != nil && canary.Matches(labels.Set(members[name].Labels))
	}
	states := make([]memberRollout, 0, len(bindings)+len(unbound))
	for name, bb := range bindings {
		states = append(states, memberRollout{
			Cluster:  name,
			Canary:   isCanary(name),
			Released: bb.Spec.Revision == revision,
			Done:     bb.Done(revision),
			Failed:   bb.Failed(revision),
		})
	}
	for _, name := range unbound {
		states = append(states, memberRollout{Cluster: name, Canary: isCanary(name)})
	}
	return states, nil
}

// reconcileDelete deletes every binding (each removes or orphans what it applied, as
// deletionPolicy says) and lets the Baseline go once they are gone.
func (r *BaselineReconciler) reconcileDelete(ctx context.Context, b *fleetv1alpha1.Baseline) (ctrl.Result, error) {
	list := &fleetv1alpha1.BaselineBindingList{}
	if err := r.Client.List(ctx, list, client.MatchingLabels{fleetv1alpha1.LabelBaseline: b.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list the bindings of deleted Baseline %q: %w", b.Name, err)
	}
	var errs *multierror.Error
	for i := range list.Items {
		bb := &list.Items[i]
		if err := r.Client.Delete(ctx, bb); client.IgnoreNotFound(err) != nil {
			errs = multierror.Append(errs, fmt.Errorf("unbind deleted Baseline %q from cluster %q: %w", b.Name, bb.Spec.ClusterName, err))
		}
	}
	if err := status.Aggregate(errs); err != nil {
		return ctrl.Result{}, err
	}
	if len(list.Items) > 0 {
		return ctrl.Result{}, nil // binding deletions bring us back (Owns)
	}
	r.Sources.forget(b)
	if controllerutil.RemoveFinalizer(b, fleetv1alpha1.FinalizerBaselineCleanup) {
		if err := r.Client.Update(ctx, b); err != nil {
			return ctrl.Result{}, err
		}
	}
	forgetBaseline(b.Name)
	return ctrl.Result{}, nil
}
