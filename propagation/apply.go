package propagation

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/fluxcd/pkg/ssa"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// memberApply is the outcome of making one member match one binding's desired objects.
type memberApply struct {
	// Owned lists what the Baseline now owns in the member: the inventory.
	Owned []fleetv1alpha1.InventoryEntry
	// Written counts objects created or updated (zero in steady state).
	Written int
	// Conflicts name objects left untouched because someone else owns them.
	Conflicts []string
	// Drifted names objects that differ from the Baseline (Inform) or were corrected (Enforce).
	Drifted []string
	// Unhealthy names applied objects that kstatus does not report Current.
	Unhealthy []string
	// UnknownKinds name documents whose kind the member does not serve.
	UnknownKinds []string
}

// applier applies desired objects to one member with server-side apply (field manager
// "flotilla") through the fluxcd ssa engine: staged (Namespaces, CRDs and ClusterRoles
// first), and dry-run diffed so that unchanged objects are never written.
type applier struct {
	member   client.Client
	baseline *fleetv1alpha1.Baseline
	// cached reads the member's label-scoped metadata cache (objects Flotilla wrote);
	// nil means every read goes to the API server.
	cached client.Reader
}

func (a *applier) manager() *ssa.ResourceManager {
	poller := polling.NewStatusPoller(a.member, a.member.RESTMapper(), polling.Options{})
	m := ssa.NewResourceManager(a.member, poller, ssa.Owner{Field: fleetv1alpha1.FieldManager, Group: fleetv1alpha1.GroupVersion.Group})
	m.SetConcurrency(8)
	return m
}

// apply makes the member match desired according to the Baseline's policy and conflict
// policy. It returns an error only for failures (the member rejected an object, the
// member is unreachable); conflicts and drift are outcomes, not errors.
func (a *applier) apply(ctx context.Context, desired []*unstructured.Unstructured) (*memberApply, error) {
	out := &memberApply{}
	if out.UnknownKinds = a.unknownKinds(desired); len(out.UnknownKinds) > 0 {
		return out, nil
	}

	var mine, missing []*unstructured.Unstructured
	for _, obj := range desired {
		live, err := a.liveMeta(ctx, obj)
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, obj)
			continue
		case err != nil:
			return out, fmt.Errorf("read %s: %w", render.ObjectRef(obj), err)
		}
		owner := live.GetLabels()[fleetv1alpha1.LabelBaseline]
		switch {
		case owner == a.baseline.Name:
			mine = append(mine, obj)
		case owner != "":
			// Another Baseline applied it first; taking it over would make two Baselines
			// fight over one object, so the later one always reports a conflict.
			out.Conflicts = append(out.Conflicts, fmt.Sprintf("%s is owned by Baseline %q", render.ObjectRef(obj), owner))
		case a.baseline.Spec.ConflictPolicy == fleetv1alpha1.ConflictAdopt:
			mine = append(mine, obj)
		default:
			out.Conflicts = append(out.Conflicts, fmt.Sprintf("%s exists and is not managed by Flotilla (conflictPolicy Abort)", render.ObjectRef(obj)))
		}
	}

	mgr := a.manager()
	var toApply []*unstructured.Unstructured
	switch a.baseline.Spec.Policy {
	case fleetv1alpha1.PolicyInform:
		for _, obj := range missing {
			out.Drifted = append(out.Drifted, render.ObjectRef(obj)+" is missing")
		}
		for _, obj := range mine {
			entry, _, _, err := mgr.Diff(ctx, obj, ssa.DefaultDiffOptions())
			if err != nil {
				return out, fmt.Errorf("diff %s: %w", render.ObjectRef(obj), err)
			}
			if entry.Action != ssa.UnchangedAction {
				out.Drifted = append(out.Drifted, render.ObjectRef(obj)+" differs")
			}
		}
		// Inform never writes; it owns only what already carries its label.
		out.Owned = inventory(mine)
		return out, nil
	case fleetv1alpha1.PolicyCreateOnly:
		toApply = missing
	default:
		toApply = append(append(toApply, mine...), missing...)
	}

	opts := ssa.DefaultApplyOptions()
	opts.WaitInterval, opts.WaitTimeout = 100*time.Millisecond, time.Minute
	// Adopt and re-apply after drift both need to take fields back from other managers.
	opts.Force = false
	changes, err := mgr.ApplyAllStaged(ctx, toApply, opts)
	if err != nil {
		return out, err
	}
	for _, e := range changes.Entries {
		if e.Action == ssa.CreatedAction || e.Action == ssa.ConfiguredAction {
			out.Written++
			if e.Action == ssa.ConfiguredAction {
				out.Drifted = append(out.Drifted, e.Subject+" corrected")
			}
		}
	}
	owned := toApply
	if a.baseline.Spec.Policy == fleetv1alpha1.PolicyCreateOnly {
		owned = append(owned, mine...)
	}
	out.Owned = inventory(owned)
	out.Unhealthy, err = a.unhealthy(ctx, owned)
	return out, err
}

// unknownKinds lists documents whose kind the member does not serve, except kinds defined
// by a CRD in the same Baseline (the staged apply creates the CRD first).
func (a *applier) unknownKinds(desired []*unstructured.Unstructured) []string {
	provided := map[schema.GroupKind]bool{}
	for _, obj := range desired {
		if obj.GetKind() == "CustomResourceDefinition" {
			group, _, _ := unstructured.NestedString(obj.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(obj.Object, "spec", "names", "kind")
			provided[schema.GroupKind{Group: group, Kind: kind}] = true
		}
	}
	var unknown []string
	for _, obj := range desired {
		gvk := obj.GroupVersionKind()
		if provided[gvk.GroupKind()] {
			continue
		}
		if _, err := a.member.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); meta.IsNoMatchError(err) {
			unknown = append(unknown, fmt.Sprintf("%s (%s)", render.ObjectRef(obj), gvk.GroupVersion()))
		}
	}
	return unknown
}

// liveMeta reads only the metadata of the member's copy: ownership is in the labels, and
// the object itself may be large. An object this Baseline owns is normally in the member's
// metadata cache (it holds what Flotilla wrote), which saves a request per object in
// steady state; anything else — missing, unowned, not cached yet — is read from the API
// server, so a stale cache can never make an unowned object look like ours.
func (a *applier) liveMeta(ctx context.Context, obj *unstructured.Unstructured) (*metav1.PartialObjectMetadata, error) {
	live := &metav1.PartialObjectMetadata{}
	live.SetGroupVersionKind(obj.GroupVersionKind())
	if a.cached != nil {
		// A cache read waits for its informer to sync, which never happens for a kind the
		// hub may not list (Secrets, with the default member role): bound the wait.
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := a.cached.Get(cctx, client.ObjectKeyFromObject(obj), live)
		cancel()
		if err == nil && live.GetLabels()[fleetv1alpha1.LabelBaseline] == a.baseline.Name {
			return live, nil
		}
		live = &metav1.PartialObjectMetadata{}
		live.SetGroupVersionKind(obj.GroupVersionKind())
	}
	err := a.member.Get(ctx, client.ObjectKeyFromObject(obj), live)
	return live, err
}

// healthKinds are the kinds whose readiness kstatus can judge from status; everything else
// (RBAC, NetworkPolicies, ConfigMaps, quotas) is healthy once it exists.
var healthKinds = map[schema.GroupKind]bool{
	{Group: "apps", Kind: "Deployment"}:                               true,
	{Group: "apps", Kind: "StatefulSet"}:                              true,
	{Group: "apps", Kind: "DaemonSet"}:                                true,
	{Group: "apps", Kind: "ReplicaSet"}:                               true,
	{Group: "batch", Kind: "Job"}:                                     true,
	{Group: "", Kind: "Pod"}:                                          true,
	{Group: "", Kind: "PersistentVolumeClaim"}:                        true,
	{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}: true,
}

func (a *applier) unhealthy(ctx context.Context, objs []*unstructured.Unstructured) ([]string, error) {
	var out []string
	for _, obj := range objs {
		if !healthKinds[obj.GroupVersionKind().GroupKind()] {
			continue
		}
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(obj.GroupVersionKind())
		if err := a.member.Get(ctx, client.ObjectKeyFromObject(obj), live); err != nil {
			return nil, fmt.Errorf("read %s for health: %w", render.ObjectRef(obj), err)
		}
		res, err := status.Compute(live)
		if err != nil {
			return nil, fmt.Errorf("health of %s: %w", render.ObjectRef(obj), err)
		}
		if res.Status != status.CurrentStatus {
			out = append(out, fmt.Sprintf("%s is %s: %s", render.ObjectRef(obj), res.Status, res.Message))
		}
	}
	return out, nil
}

// prune deletes what the Baseline applied before and no longer wants. Namespaces and CRDs
// go only when their manifest allowed it (they take everything inside with them), and an
// object is deleted only if it still carries this Baseline's label.
func (a *applier) prune(ctx context.Context, previous []fleetv1alpha1.InventoryEntry, keep []fleetv1alpha1.InventoryEntry) (int, error) {
	wanted := map[fleetv1alpha1.InventoryEntry]bool{}
	for _, e := range keep {
		wanted[render.EntryKey(e)] = true
	}
	deleted := 0
	for _, e := range previous {
		if wanted[render.EntryKey(e)] {
			continue
		}
		ok, err := a.deleteOwned(ctx, e, false)
		if err != nil {
			return deleted, err
		}
		if ok {
			deleted++
		}
	}
	return deleted, nil
}

// deleteOwned deletes one inventory entry if it still carries this Baseline's label. A
// Namespace or CRD is kept unless it carries the prune annotation or force is set.
func (a *applier) deleteOwned(ctx context.Context, e fleetv1alpha1.InventoryEntry, force bool) (bool, error) {
	live := &metav1.PartialObjectMetadata{}
	live.SetGroupVersionKind(schema.GroupVersionKind{Group: e.Group, Version: e.Version, Kind: e.Kind})
	if err := a.member.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: e.Name}, live); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return false, nil
		}
		return false, fmt.Errorf("read %s for pruning: %w", render.EntryRef(e), err)
	}
	if live.GetLabels()[fleetv1alpha1.LabelBaseline] != a.baseline.Name {
		return false, nil // someone else took it over; not ours to delete
	}
	if (e.Kind == "Namespace" && e.Group == "") || (e.Kind == "CustomResourceDefinition" && e.Group == "apiextensions.k8s.io") {
		if !force && live.GetAnnotations()[fleetv1alpha1.AnnotationPrune] != "true" {
			return false, nil
		}
	}
	if err := a.member.Delete(ctx, live, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
		return false, fmt.Errorf("delete %s: %w", render.EntryRef(e), err)
	}
	return true, nil
}

// orphan removes this Baseline's ownership labels from an inventory entry so that the
// object stays and no controller of Flotilla touches it again.
func (a *applier) orphan(ctx context.Context, e fleetv1alpha1.InventoryEntry) error {
	live := &metav1.PartialObjectMetadata{}
	live.SetGroupVersionKind(schema.GroupVersionKind{Group: e.Group, Version: e.Version, Kind: e.Kind})
	if err := a.member.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: e.Name}, live); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return nil
		}
		return err
	}
	if live.GetLabels()[fleetv1alpha1.LabelBaseline] != a.baseline.Name {
		return nil
	}
	patch := client.MergeFrom(live.DeepCopy())
	labels := live.GetLabels()
	delete(labels, fleetv1alpha1.LabelBaseline)
	delete(labels, fleetv1alpha1.LabelManagedBy)
	live.SetLabels(labels)
	if err := a.member.Patch(ctx, live, patch); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("orphan %s: %w", render.EntryRef(e), err)
	}
	return nil
}

func inventory(objs []*unstructured.Unstructured) []fleetv1alpha1.InventoryEntry {
	out := make([]fleetv1alpha1.InventoryEntry, 0, len(objs))
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		out = append(out, fleetv1alpha1.InventoryEntry{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: o.GetNamespace(), Name: o.GetName()})
	}
	sort.Slice(out, func(i, j int) bool { return render.EntryRef(out[i]) < render.EntryRef(out[j]) })
	return out
}

// summarize joins the first few items of a list for a condition message.
func summarize(items []string) string {
	const show = 3
	if len(items) <= show {
		return strings.Join(items, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(items[:show], "; "), len(items)-show)
}
