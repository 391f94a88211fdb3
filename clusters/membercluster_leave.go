package clusters

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/status"
)

// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=memberclusters/finalizers,verbs=update
// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=baselinebindings;exportedservices,verbs=get;list;watch

// leavePoll is how often a leaving member's clean-up is checked: the clean-up is done by
// the propagation and servicesync controllers, whose objects this domain does not watch.
const leavePoll = time.Second

// leftovers is what Flotilla still holds for a leaving member: the BaselineBindings whose
// clean-up (per deletionPolicy) has not finished, the member's exports whose mirrors are not
// yet removed everywhere, and the exports of other members still mirrored into it.
type leftovers struct {
	bindings []string // "<baseline> (<n> objects)"
	exports  []string // ExportedService names of the member's own exports
	mirrors  []string // ExportedService names still mirrored into the member
}

func (l leftovers) empty() bool {
	return len(l.bindings) == 0 && len(l.exports) == 0 && len(l.mirrors) == 0
}

// leftoversListed is how many items of each kind String names: the event that carries it
// holds 1 KiB (status.MaxNote), and a member can hold mirrors of hundreds of exports.
const leftoversListed = 5

// String lists what is left, for a condition message or an event: the first few of each
// kind, and how many more.
func (l leftovers) String() string {
	var parts []string
	if len(l.bindings) > 0 {
		parts = append(parts, "Baseline objects of "+status.List(l.bindings, leftoversListed, ", "))
	}
	if len(l.exports) > 0 {
		parts = append(parts, "mirrors of its exports "+status.List(l.exports, leftoversListed, ", "))
	}
	if len(l.mirrors) > 0 {
		parts = append(parts, "mirrors in it of "+status.List(l.mirrors, leftoversListed, ", "))
	}
	return strings.Join(parts, "; ")
}

// findLeftovers reads, from the hub, what the other controllers have not cleaned up yet.
func (r *MemberClusterReconciler) findLeftovers(ctx context.Context, cluster string) (leftovers, error) {
	var l leftovers
	bindings := &fleetv1alpha1.BaselineBindingList{}
	if err := r.Client.List(ctx, bindings, client.MatchingLabels{fleetv1alpha1.LabelCluster: cluster}); err != nil {
		return l, fmt.Errorf("list bindings of cluster %q: %w", cluster, err)
	}
	for _, bb := range bindings.Items {
		l.bindings = append(l.bindings, fmt.Sprintf("%s (%d objects)", bb.Spec.BaselineName, len(bb.Status.Inventory)))
	}
	exports := &fleetv1alpha1.ExportedServiceList{}
	if err := r.Client.List(ctx, exports); err != nil {
		return l, fmt.Errorf("list ExportedServices for cluster %q: %w", cluster, err)
	}
	for _, es := range exports.Items {
		switch {
		case es.Spec.Source.Cluster == cluster:
			l.exports = append(l.exports, es.Name)
		case slices.Contains(es.Status.MirroredInto, cluster):
			l.mirrors = append(l.mirrors, es.Name)
		}
	}
	sort.Strings(l.bindings)
	sort.Strings(l.exports)
	sort.Strings(l.mirrors)
	return l, nil
}

// reconcileDelete lets a member leave the fleet in order: the propagation and servicesync
// controllers remove what Flotilla wrote in it (per each Baseline's deletionPolicy) and its
// exports' mirrors everywhere, through the connection this controller keeps open; only when
// nothing is left — or after CleanupTimeout; for a paused member, which gets no writes, as
// soon as its exports' mirrors are gone from the other members — is the connection closed
// and the finalizer removed. What had to be left behind
// is reported in a condition and a warning event.
func (r *MemberClusterReconciler) reconcileDelete(ctx context.Context, mc *fleetv1alpha1.MemberCluster) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(mc, fleetv1alpha1.FinalizerMemberCleanup) {
		r.disconnect(mc.Name)
		return ctrl.Result{}, nil
	}
	left, err := r.findLeftovers(ctx, mc.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	waited := time.Since(mc.DeletionTimestamp.Time)
	// A paused member gets no writes, so nothing in it is waited for; the mirrors of its
	// exports are in the other members, and servicesync removes them all the same.
	waitFor := left
	if mc.Spec.Paused {
		waitFor = leftovers{exports: left.exports}
	}
	if !waitFor.empty() && waited < r.CleanupTimeout {
		p := status.NewPatcher(r.Client, mc, status.WithOptimisticLock())
		status.Set(mc, fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonLeaving,
			"leaving the fleet; waiting for the clean-up of "+left.String())
		if err := p.Patch(ctx, mc, nil); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{RequeueAfter: min(leavePoll, r.CleanupTimeout-waited)}, nil
	}

	if left.empty() {
		r.event(mc, corev1.EventTypeNormal, fleetv1alpha1.ReasonLeft,
			"left the fleet: everything Flotilla wrote for this member was removed (per each Baseline's deletionPolicy)")
	} else {
		why := fmt.Sprintf("the clean-up did not finish within %s (member unreachable?)", r.CleanupTimeout)
		if mc.Spec.Paused && len(left.exports) == 0 {
			why = "the member is paused, so nothing was written to it"
		}
		msg := fmt.Sprintf("left the fleet with clean-up incomplete: %s; left behind: %s", why, left)
		p := status.NewPatcher(r.Client, mc, status.WithOptimisticLock())
		status.Set(mc, fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonCleanupIncomplete, msg)
		if err := p.Patch(ctx, mc, nil); err != nil {
			return ctrl.Result{}, err
		}
		r.event(mc, corev1.EventTypeWarning, fleetv1alpha1.ReasonCleanupIncomplete, msg)
		log.FromContext(ctx).Info("member left with clean-up incomplete", "cluster", mc.Name, "left", left.String())
	}
	// The connection goes only now: the clean-up above used it.
	r.disconnect(mc.Name)
	base := mc.DeepCopy()
	controllerutil.RemoveFinalizer(mc, fleetv1alpha1.FinalizerMemberCleanup)
	if err := r.Client.Patch(ctx, mc, client.MergeFrom(base)); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("remove finalizer of cluster %q: %w", mc.Name, err)
	}
	forgetMember(mc.Name)
	return ctrl.Result{}, nil
}

// awaitsUnregistration tells whether a member whose credentials cannot be loaded is about
// to be unregistered: the kubeconfig Secret source deletes the MemberCluster when its Secret
// goes, and the clean-up that follows needs the open connection, so it is not closed here
// (reconcileDelete closes it when the clean-up is done).
func awaitsUnregistration(mc *fleetv1alpha1.MemberCluster, ce *CredentialError) bool {
	return ce.Reason == fleetv1alpha1.ReasonSecretNotFound &&
		mc.Labels[fleetv1alpha1.LabelRegistration] == fleetv1alpha1.RegistrationSecret
}

// ensureFinalizer adds the member clean-up finalizer to a MemberCluster that lacks it.
func (r *MemberClusterReconciler) ensureFinalizer(ctx context.Context, mc *fleetv1alpha1.MemberCluster) error {
	if controllerutil.ContainsFinalizer(mc, fleetv1alpha1.FinalizerMemberCleanup) {
		return nil
	}
	base := mc.DeepCopy()
	controllerutil.AddFinalizer(mc, fleetv1alpha1.FinalizerMemberCleanup)
	if err := r.Client.Patch(ctx, mc, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("add finalizer to cluster %q: %w", mc.Name, err)
	}
	return nil
}

func (r *MemberClusterReconciler) event(mc *fleetv1alpha1.MemberCluster, typ, reason, msg string) {
	if r.Recorder != nil {
		r.Recorder.Eventf(mc, nil, typ, reason, "Unregister", "%s", msg)
	}
}
