package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// leaving is what the hub held for a member just before it was unregistered: fleet-controller
// removes it while the MemberCluster's finalizer holds, and unregister reports it afterwards
// (the objects that say what was there are gone by then).
type leaving struct {
	cluster string
	// bindings are the member's BaselineBindings and their Baselines' deletionPolicy.
	bindings []fleetv1alpha1.BaselineBinding
	policy   map[string]fleetv1alpha1.DeletionPolicy
	// exports are the member's own exported Services (mirrored elsewhere).
	exports []fleetv1alpha1.ExportedService
	// imports are other members' exports mirrored into this member.
	imports []fleetv1alpha1.ExportedService
	// uid tells this MemberCluster's events from those of an earlier one of the same name.
	uid types.UID
	// cleanedUp: fleet-controller holds the MemberCluster with its clean-up finalizer, so
	// it will report how leaving went.
	cleanedUp bool
}

// snapshotLeaving reads what the hub holds for cluster. A hub without these kinds (an older
// Flotilla) yields an empty snapshot, not an error.
func snapshotLeaving(ctx context.Context, c client.Client, cluster string) (*leaving, error) {
	l := &leaving{cluster: cluster, policy: map[string]fleetv1alpha1.DeletionPolicy{}}
	mc := &fleetv1alpha1.MemberCluster{}
	if err := c.Get(ctx, types.NamespacedName{Name: cluster}, mc); err == nil {
		l.uid = mc.UID
		l.cleanedUp = controllerutil.ContainsFinalizer(mc, fleetv1alpha1.FinalizerMemberCleanup)
	}
	bindings := &fleetv1alpha1.BaselineBindingList{}
	if err := c.List(ctx, bindings, client.MatchingLabels{fleetv1alpha1.LabelCluster: cluster}); err != nil && !meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("hub: list baselinebindings of %s: %w", cluster, err)
	}
	for _, bb := range bindings.Items {
		l.bindings = append(l.bindings, bb)
		b := &fleetv1alpha1.Baseline{}
		switch err := c.Get(ctx, types.NamespacedName{Name: bb.Spec.BaselineName}, b); {
		case err == nil:
			l.policy[b.Name] = b.Spec.DeletionPolicy
		case !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("hub: get baseline %s: %w", bb.Spec.BaselineName, err)
		}
	}
	exports := &fleetv1alpha1.ExportedServiceList{}
	if err := c.List(ctx, exports); err != nil && !meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("hub: list exportedservices: %w", err)
	}
	for _, es := range exports.Items {
		switch {
		case es.Spec.Source.Cluster == cluster:
			l.exports = append(l.exports, es)
		case slices.Contains(es.Status.MirroredInto, cluster):
			l.imports = append(l.imports, es)
		}
	}
	return l, nil
}

// report prints what leaving the fleet removed, per Baseline and per export — or, when
// fleet-controller had to let the member go before its clean-up finished (an unreachable or
// paused member), its account of what was left behind.
func (l *leaving) report(ctx context.Context, c client.Client, hub, member stepPrinter) {
	if !l.cleanedUp {
		return // no fleet-controller clean-up to report on (none running, or an old one)
	}
	// fleet-controller records how leaving went in an event (Left or CleanupIncomplete)
	// just before it lets the MemberCluster go; events are written asynchronously, so it may
	// arrive a moment after the MemberCluster is gone.
	var last *corev1.Event
	_ = wait.PollUntilContextTimeout(ctx, pollInterval, leaveEventWait, true, func(context.Context) (bool, error) {
		last = l.leaveEvent(ctx, c)
		return last != nil, nil
	})
	switch {
	case last == nil:
		hub.printf("fleet-controller did not report how the clean-up went")
		return
	case last.Reason == fleetv1alpha1.ReasonCleanupIncomplete:
		hub.printf("WARNING: %s", last.Message)
		return
	}
	sort.Slice(l.bindings, func(i, j int) bool { return l.bindings[i].Spec.BaselineName < l.bindings[j].Spec.BaselineName })
	for _, bb := range l.bindings {
		objs := make([]string, 0, len(bb.Status.Inventory))
		for _, e := range bb.Status.Inventory {
			ref := e.Kind + " " + e.Name
			if e.Namespace != "" {
				ref = e.Kind + " " + e.Namespace + "/" + e.Name
			}
			objs = append(objs, ref)
		}
		what := "nothing applied"
		if len(objs) > 0 {
			what = strings.Join(objs, ", ")
		}
		if l.policy[bb.Spec.BaselineName] == fleetv1alpha1.DeletionOrphan {
			member.printf("baseline %s: left in place, no longer managed (deletionPolicy Orphan): %s", bb.Spec.BaselineName, what)
		} else {
			member.printf("baseline %s: removed %s", bb.Spec.BaselineName, what)
		}
	}
	for _, es := range l.imports {
		s := es.Spec.Source
		member.printf("removed the mirror of %s/%s/%s", s.Cluster, s.Namespace, s.Name)
	}
	for _, es := range l.exports {
		s := es.Spec.Source
		into := "no member"
		if len(es.Status.MirroredInto) > 0 {
			into = strings.Join(es.Status.MirroredInto, ", ")
		}
		hub.printf("removed the mirrors of %s/%s/%s from %s", s.Cluster, s.Namespace, s.Name, into)
	}
}

// leaveEventWait bounds the wait for fleet-controller's event about the member leaving.
var leaveEventWait = 10 * time.Second

// leaveEvent is fleet-controller's latest event about this member leaving, if any.
func (l *leaving) leaveEvent(ctx context.Context, c client.Client) *corev1.Event {
	events := &corev1.EventList{}
	if err := c.List(ctx, events, client.MatchingFields{
		"involvedObject.kind": "MemberCluster", "involvedObject.name": l.cluster, "involvedObject.uid": string(l.uid),
	}); err != nil {
		return nil
	}
	var latest *corev1.Event
	for i := range events.Items {
		e := &events.Items[i]
		if e.Reason != fleetv1alpha1.ReasonLeft && e.Reason != fleetv1alpha1.ReasonCleanupIncomplete {
			continue
		}
		if latest == nil || eventTime(e).After(eventTime(latest)) {
			latest = e
		}
	}
	return latest
}

func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}
