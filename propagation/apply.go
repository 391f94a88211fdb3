package propagation

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/fluxcd/pkg/ssa"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/plan"
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
	// Prune is what left the Baseline and still belongs to it (see plan.Plan).
	Prune []plan.Prune
}

// applier applies desired objects to one member with server-side apply (field manager
// "flotilla"), in the stages and with the placement that propagation/plan decides (the plan
// `fleetctl diff` shows). It sends a dry-run diff (the fluxcd ssa engine's) only where the
// member's copy may differ from what Flotilla applied last (apply_write.go): a missing object
// is created at once, one unchanged since the last apply is not looked at again, and
// unchanged objects are never written.
type applier struct {
	member   client.Client
	baseline *fleetv1alpha1.Baseline
	// cached reads the member's label-scoped metadata cache (objects Flotilla wrote);
	// nil means every read goes to the API server.
	cached client.Reader
	// inventory holds the UIDs of the binding's inventory: objects the Baseline owns
	// whatever their labels say.
	inventory map[types.UID]bool
	// fits checks, against the hub's limit, the inventory of a Baseline that does not prune
	// and so keeps kept objects that left it; nil accepts any.
	fits func(kept int) error
	// recent is what this process's last apply of the binding recorded (appliedRecords),
	// which the binding's cached status may not show yet.
	recent []fleetv1alpha1.InventoryEntry
	// records are the binding's inventory entries (the status's, then recent's) by
	// render.EntryKey: what the last apply recorded of each object (resourceVersion, hash).
	records map[fleetv1alpha1.InventoryEntry]fleetv1alpha1.InventoryEntry
	// applied holds, by render.EntryKey, what this apply recorded of the objects it wrote,
	// checked or skipped (see applyObject); the new inventory carries it.
	applied   map[fleetv1alpha1.InventoryEntry]fleetv1alpha1.InventoryEntry
	appliedMu sync.Mutex
	// observed holds the member's metadata of desired objects and inventory entries, read
	// concurrently before the plan is made (observe); Meta serves the plan from it.
	observed map[render.Key]*metav1.PartialObjectMetadata
}

// tooLargeError is a Baseline that would own more objects in the member than the hub allows.
type tooLargeError struct{ err error }

func (e *tooLargeError) Error() string { return e.err.Error() }

func (a *applier) manager() *ssa.ResourceManager {
	poller := polling.NewStatusPoller(a.member, a.member.RESTMapper(), polling.Options{})
	m := ssa.NewResourceManager(a.member, poller, ssa.Owner{Field: fleetv1alpha1.FieldManager, Group: fleetv1alpha1.GroupVersion.Group})
	m.SetConcurrency(8)
	return m
}

// apply makes the member match desired according to the Baseline's policy and conflict
// policy, as plan.Make decides from the member's state and the binding's inventory. It
// returns an error only for failures (the member rejected an object, the member is
// unreachable); conflicts and drift are outcomes, not errors.
func (a *applier) apply(ctx context.Context, desired []render.Document, inventory []fleetv1alpha1.InventoryEntry) (*memberApply, error) {
	out := &memberApply{}
	a.inventory = map[types.UID]bool{}
	a.records = map[fleetv1alpha1.InventoryEntry]fleetv1alpha1.InventoryEntry{}
	for _, e := range inventory {
		if e.UID != "" {
			a.inventory[e.UID] = true
		}
		a.records[render.EntryKey(e)] = e
	}
	for _, e := range a.recent {
		a.records[render.EntryKey(e)] = e
	}
	a.applied = map[fleetv1alpha1.InventoryEntry]fleetv1alpha1.InventoryEntry{}
	if err := a.observe(ctx, desired, inventory); err != nil {
		return out, err
	}
	p, err := plan.Make(ctx, plan.Input{Baseline: a.baseline, Desired: desired, Inventory: inventory, Mapper: a.member.RESTMapper(), Observer: a})
	if err != nil {
		return out, err
	}
	out.Prune = p.Prune
	if out.UnknownKinds = p.UnknownKinds; len(out.UnknownKinds) > 0 {
		return out, nil
	}
	if a.fits != nil && !pruning(a.baseline) {
		if err := a.fits(len(p.Prune)); err != nil {
			return out, &tooLargeError{err: err}
		}
	}
	for _, stage := range p.Stages {
		for _, o := range stage.Objects {
			if o.Placement == plan.Conflict {
				out.Conflicts = append(out.Conflicts, render.ObjectRef(o.Doc.Object)+" "+o.Reason)
			}
		}
	}
	mgr := a.manager()
	if a.baseline.Spec.Policy == fleetv1alpha1.PolicyInform {
		if out.Drifted, err = a.drift(ctx, mgr, p); err != nil {
			return out, err
		}
		// Inform never writes; it owns only what exists and is not someone else's. Objects
		// found matching are recorded, so that the next check skips them while unchanged.
		out.Owned = a.record(plan.Inventory(p.Owned(a.baseline)))
		return out, nil
	}
	if err := a.applyStages(ctx, mgr, p, out); err != nil {
		return out, err
	}
	owned := p.Owned(a.baseline)
	for i := range owned {
		if rec, ok := a.applied[render.EntryKey(owned[i].Doc.InventoryEntry())]; ok && owned[i].UID == "" {
			owned[i].UID = rec.UID
		}
	}
	if err := a.learnUIDs(ctx, owned); err != nil {
		return out, err
	}
	out.Owned = a.record(plan.Inventory(owned))
	objs := make([]*unstructured.Unstructured, 0, len(owned))
	for _, o := range owned {
		objs = append(objs, o.Doc.Object)
	}
	out.Unhealthy, err = a.unhealthy(ctx, objs)
	return out, err
}

// drift lists, under policy Inform, what differs from the Baseline: missing objects,
// objects carrying content other managers set (plan.Foreign), and objects a server-side
// apply would change. An object found matching is recorded like an applied one, and not
// diffed again while it and the desired object stay unchanged (inSync); one that differs
// is recorded as nothing, so it is diffed, and reported, every time.
func (a *applier) drift(ctx context.Context, mgr *ssa.ResourceManager, p *plan.Plan) ([]string, error) {
	var drifted []string
	for _, stage := range p.Stages {
		for _, o := range stage.Objects {
			switch {
			case !o.Compare:
			case o.Placement == plan.Missing:
				drifted = append(drifted, render.ObjectRef(o.Doc.Object)+" is missing")
			case len(o.Foreign) > 0:
				// The dry run below cannot show it: an apply leaves others' fields alone.
				drifted = append(drifted, render.ObjectRef(o.Doc.Object)+" has content others set: "+plan.DescribeForeign(o.Foreign))
			default:
				differs, err := a.differs(ctx, mgr, o)
				if err != nil {
					return nil, err
				}
				if differs {
					drifted = append(drifted, render.ObjectRef(o.Doc.Object)+" differs")
				}
			}
		}
	}
	return drifted, nil
}

// differs tells, under policy Inform, whether an existing object o differs from the
// Baseline: not when it is unchanged since it was last found matching the same desired
// object (howToWrite would skip it), else by a dry-run diff.
func (a *applier) differs(ctx context.Context, mgr *ssa.ResourceManager, o plan.Object) (bool, error) {
	obj := o.Doc.Object.DeepCopy()
	hash, err := desiredHash(obj)
	if err != nil {
		return false, err
	}
	entry := render.EntryKey(o.Doc.InventoryEntry())
	rec, ok := a.records[entry]
	live := a.observed[o.Doc.Key()]
	if howToWrite(o, versionOf(live), rec, ok, hash) == writeSkip {
		a.setApplied(entry, rec)
		return false, nil
	}
	change, _, _, err := mgr.Diff(ctx, obj, ssa.DefaultDiffOptions())
	if err != nil {
		return false, fmt.Errorf("diff %s: %w", render.ObjectRef(o.Doc.Object), err)
	}
	if change.Action != ssa.UnchangedAction {
		return true, nil
	}
	if live != nil {
		a.setApplied(entry, recordOf(live, hash))
	}
	return false, nil
}

// learnUIDs reads the UID of objects the apply created, so that the inventory records
// every owned object by UID (the ownership that survives a stripped label).
func (a *applier) learnUIDs(ctx context.Context, owned []plan.Object) error {
	for i := range owned {
		if owned[i].UID != "" {
			continue
		}
		obj := owned[i].Doc.Object
		live := &metav1.PartialObjectMetadata{}
		live.SetGroupVersionKind(obj.GroupVersionKind())
		if err := a.member.Get(ctx, client.ObjectKeyFromObject(obj), live); err != nil {
			return fmt.Errorf("read the UID of %s: %w", render.ObjectRef(obj), err)
		}
		owned[i].UID = live.GetUID()
	}
	return nil
}

// Meta implements plan.Observer: what observe read, or else readMeta.
func (a *applier) Meta(ctx context.Context, gvk schema.GroupVersionKind, key types.NamespacedName) (*metav1.PartialObjectMetadata, error) {
	if live, ok := a.observed[render.Key{Group: gvk.Group, Kind: gvk.Kind, Namespace: key.Namespace, Name: key.Name}]; ok {
		return live, nil
	}
	return a.readMeta(ctx, gvk, key)
}

// readMeta reads the member's metadata of one object for Meta. It reads only the metadata:
// ownership is in the labels and UID, and the object itself may be large. An object this
// Baseline owns is normally in the member's metadata cache (it holds what Flotilla wrote),
// which saves a request per object in steady state; anything else — missing, unowned, not
// cached yet — is read from the API server, so a stale cache can never make an unowned
// object look like ours. Two things make a fresh Baseline cheap: a Namespace the member
// cache does not have is missing without a read (the cache holds every Namespace of the
// member: cachedNamespaceMissing), and the API server answers reads from its watch cache
// (resourceVersion 0), not from etcd. Either may be behind the member by the watch's lag,
// a few milliseconds — no more than a read from etcd is behind by the time the apply that
// follows it arrives.
func (a *applier) readMeta(ctx context.Context, gvk schema.GroupVersionKind, key types.NamespacedName) (*metav1.PartialObjectMetadata, error) {
	live := &metav1.PartialObjectMetadata{}
	live.SetGroupVersionKind(gvk)
	if a.cached != nil {
		// A cache read waits for its informer to sync, which never happens for a kind the
		// hub may not list (Secrets, with the default member role): bound the wait.
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := a.cached.Get(cctx, key, live)
		cancel()
		switch {
		case err == nil && (live.GetLabels()[fleetv1alpha1.LabelBaseline] == a.baseline.Name || a.inventory[live.GetUID()]):
			return live, nil
		case cachedNamespaceMissing(gvk, err):
			return nil, nil
		}
		live = &metav1.PartialObjectMetadata{}
		live.SetGroupVersionKind(gvk)
	}
	return plan.Observed(live, a.member.Get(ctx, key, live, fromWatchCache))
}

// fromWatchCache has the API server answer a read from its watch cache (resourceVersion 0).
var fromWatchCache = &client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: "0"}}

// cachedNamespaceMissing tells whether a member-cache read of gvk that returned err found
// a Namespace missing: the member cache watches every Namespace (Setup registers the
// informer for the perNamespace fan-out), so one it does not have does not exist.
func cachedNamespaceMissing(gvk schema.GroupVersionKind, err error) bool {
	return gvk.Group == "" && gvk.Kind == "Namespace" && apierrors.IsNotFound(err)
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

// prune deletes what the plan found left the Baseline and may go.
func (a *applier) prune(ctx context.Context, prunes []plan.Prune) (int, error) {
	deleted := 0
	for _, p := range prunes {
		if p.Kept != "" {
			continue
		}
		ok, err := a.deleteOwned(ctx, p.Entry)
		if err != nil {
			return deleted, err
		}
		if ok {
			deleted++
		}
	}
	return deleted, nil
}

// deleteOwned deletes one inventory entry if it still belongs to this Baseline
// (plan.Owns) and is not a protected Namespace or CRD (plan.Protected). It re-reads the
// object: the plan may be seconds old.
func (a *applier) deleteOwned(ctx context.Context, e fleetv1alpha1.InventoryEntry) (bool, error) {
	live, err := a.ownedLive(ctx, e)
	if err != nil || live == nil {
		return false, err
	}
	if plan.Protected(e, live) != "" {
		return false, nil
	}
	if err := a.member.Delete(ctx, live, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
		return false, fmt.Errorf("delete %s: %w", render.EntryRef(e), err)
	}
	return true, nil
}

// ownedLive reads the member's metadata of e; nil when it is gone or no longer this
// Baseline's.
func (a *applier) ownedLive(ctx context.Context, e fleetv1alpha1.InventoryEntry) (*metav1.PartialObjectMetadata, error) {
	live := &metav1.PartialObjectMetadata{}
	live.SetGroupVersionKind(schema.GroupVersionKind{Group: e.Group, Version: e.Version, Kind: e.Kind})
	live, err := plan.Observed(live, a.member.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: e.Name}, live))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", render.EntryRef(e), err)
	}
	if live == nil || !plan.Owns(a.baseline, e, live) {
		return nil, nil // someone else took it over: not ours to touch
	}
	return live, nil
}

// orphan removes this Baseline's ownership labels from an inventory entry so that the
// object stays and no controller of Flotilla touches it again.
func (a *applier) orphan(ctx context.Context, e fleetv1alpha1.InventoryEntry) error {
	live, err := a.ownedLive(ctx, e)
	if err != nil || live == nil {
		return err
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
