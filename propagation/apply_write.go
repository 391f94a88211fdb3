package propagation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/utils"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/clusters"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/plan"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// How the Enforce (and CreateOnly) apply writes one object, at the cost server-side apply
// itself sets: a dry-run diff only where the member's copy may differ from what Flotilla
// last applied.

// perMemberRequests bounds the requests one apply has in flight to its member (reads before
// the plan, writes of one kind within a stage). With MaxConcurrentPerMember reconciles per
// member it bounds what a member receives from the hub at once.
const perMemberRequests = 8

// stageWait is how often a stage's objects that are not ready yet are polled, and for how
// long at most, before the next stage.
const (
	stageWaitInterval = 100 * time.Millisecond
	stageWaitTimeout  = time.Minute
)

// write is how the apply writes one object of the plan.
type write string

const (
	// writeCreate: the object does not exist (read from the API server, not only from the
	// cache); it is applied at once, with no dry run.
	writeCreate write = "create"
	// writeSkip: the member's copy is the one Flotilla applied last (unchangedSince) and
	// the desired object has not changed since (same hash): nothing to do.
	writeSkip write = "skip"
	// writeUpdate: the Baseline changed and the member's copy did not since Flotilla applied
	// it: applied at once; the apply writes only if the object changes.
	writeUpdate write = "update"
	// writeCheck: the member's copy changed since Flotilla applied it (someone may have
	// edited it), was never recorded, or is adopted: a dry-run diff decides, and the object
	// is applied only when it differs (drift corrected).
	writeCheck write = "check"
)

// liveVersion is what the apply knows of the member's copy of an object before it writes:
// its resourceVersion and contentHash; both empty when it does not exist.
type liveVersion struct {
	resourceVersion, content string
}

// versionOf is live's liveVersion (nil: the object does not exist).
func versionOf(live *metav1.PartialObjectMetadata) liveVersion {
	if live == nil {
		return liveVersion{}
	}
	return liveVersion{resourceVersion: live.GetResourceVersion(), content: contentHash(live)}
}

// howToWrite decides how to write o from the member's copy of it (live) and what the last
// apply recorded (rec, ok false when nothing), comparing the desired object's hash.
func howToWrite(o plan.Object, live liveVersion, rec fleetv1alpha1.InventoryEntry, ok bool, hash string) write {
	switch {
	case o.Placement == plan.Missing:
		return writeCreate
	case o.Placement != plan.Mine || !ok || rec.UID != o.UID || !unchangedSince(rec, live):
		return writeCheck
	case rec.Hash == hash:
		return writeSkip
	default:
		return writeUpdate
	}
}

// unchangedSince reports whether nobody but a status writer changed the member's copy of an
// object since rec was recorded: its contentHash is still the recorded one. A record made
// before content hashes were recorded falls back to the resourceVersion, which every write
// changes, status writes included.
func unchangedSince(rec fleetv1alpha1.InventoryEntry, live liveVersion) bool {
	if rec.ContentHash != "" {
		return live.content == rec.ContentHash
	}
	return rec.ResourceVersion != "" && live.resourceVersion == rec.ResourceVersion
}

// contentHash identifies what of live anyone but a status writer can change (see
// InventoryEntry.ContentHash): every write of content, labels or annotations changes
// managedFields — the writer's entry takes the fields it set, a field removed leaves its
// owner's entry — while status writes change only subresources' entries, which are left
// out, as the member cache leaves them out (clusters.TrimManagedFields: the same list from
// the cache and from the API server hashes the same). SHA-256, 16 hex digits.
func contentHash(live metav1.Object) string {
	h := sha256.New()
	_ = json.NewEncoder(h).Encode(struct {
		Generation int64                       `json:"g"`
		Deleting   bool                        `json:"d"`
		Managed    []metav1.ManagedFieldsEntry `json:"m"`
	}{live.GetGeneration(), live.GetDeletionTimestamp() != nil, clusters.TrimManagedFields(live.GetManagedFields())})
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// desiredHash identifies a desired object as rendered for the member: its JSON (map keys
// sorted, so equal objects hash equally), SHA-256, 16 hex digits.
func desiredHash(obj *unstructured.Unstructured) (string, error) {
	b, err := json.Marshal(obj.Object)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", render.ObjectRef(obj), err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), nil
}

// observe reads, perMemberRequests at a time, the member's metadata of every desired
// object and inventory entry (readMeta: the cache for what is Flotilla's, the API server
// for the rest), so that the plan, which reads them one by one, finds them ready. A read
// that fails is left to the plan to retry and report.
//
// Cluster-scoped objects and the Namespaces of namespaced ones are read first: an object in
// a Namespace the member does not have does not exist either, and is not read at all — a
// Baseline that brings its own Namespaces is created with one read per Namespace, not one
// per object in it (missingNamespaces).
func (a *applier) observe(ctx context.Context, desired []render.Document, inventory []fleetv1alpha1.InventoryEntry) error {
	if len(plan.UnknownKinds(desired, a.member.RESTMapper())) > 0 {
		return nil // the plan stops at the unknown kinds and reads nothing
	}
	var clusterScoped, namespaced []observeTarget
	seen := map[render.Key]bool{}
	add := func(gvk schema.GroupVersionKind, namespace, name string) {
		if k := (render.Key{Group: gvk.Group, Kind: gvk.Kind, Namespace: namespace, Name: name}); !seen[k] {
			seen[k] = true
			t := observeTarget{gvk, types.NamespacedName{Namespace: namespace, Name: name}}
			if namespace == "" {
				clusterScoped = append(clusterScoped, t)
			} else {
				namespaced = append(namespaced, t)
			}
		}
	}
	for _, d := range desired {
		add(d.Object.GroupVersionKind(), d.Object.GetNamespace(), d.Object.GetName())
	}
	for _, e := range inventory {
		add(schema.GroupVersionKind{Group: e.Group, Version: e.Version, Kind: e.Kind}, e.Namespace, e.Name)
	}
	a.observed = make(map[render.Key]*metav1.PartialObjectMetadata, len(clusterScoped)+len(namespaced))
	if err := a.observeAll(ctx, clusterScoped); err != nil {
		return err
	}
	missing := missingNamespaces(a.observed)
	for ns := range namespacesOf(namespaced) {
		if _, observed := a.observed[namespaceKey(ns)]; !observed && !a.namespaceExists(ctx, ns) {
			missing[ns] = true
		}
	}
	var rest []observeTarget
	for _, t := range namespaced {
		if missing[t.key.Namespace] {
			a.observed[t.renderKey()] = nil // in a Namespace that does not exist
			continue
		}
		rest = append(rest, t)
	}
	return a.observeAll(ctx, rest)
}

// observeTarget is one object observe reads.
type observeTarget struct {
	gvk schema.GroupVersionKind
	key types.NamespacedName
}

func (t observeTarget) renderKey() render.Key {
	return render.Key{Group: t.gvk.Group, Kind: t.gvk.Kind, Namespace: t.key.Namespace, Name: t.key.Name}
}

// observeAll reads targets concurrently into a.observed; a failed read leaves its target out.
func (a *applier) observeAll(ctx context.Context, targets []observeTarget) error {
	results := make([]*metav1.PartialObjectMetadata, len(targets))
	failed := make([]bool, len(targets))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(perMemberRequests)
	for i, t := range targets {
		g.Go(func() error {
			live, err := a.readMeta(gctx, t.gvk, t.key)
			results[i], failed[i] = live, err != nil
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i, t := range targets {
		if !failed[i] {
			a.observed[t.renderKey()] = results[i]
		}
	}
	return nil
}

// namespacesOf are the namespaces of targets.
func namespacesOf(targets []observeTarget) map[string]bool {
	out := map[string]bool{}
	for _, t := range targets {
		out[t.key.Namespace] = true
	}
	return out
}

func namespaceKey(name string) render.Key { return render.Key{Kind: "Namespace", Name: name} }

// namespaceExists tells whether the member has the Namespace name, for a Namespace the
// Baseline does not hold itself (its objects go into "default", say): from the member
// cache, which holds every Namespace (cachedNamespaceMissing), or else the API server. A
// failed read counts as existing: the objects are then read, and their reads report.
func (a *applier) namespaceExists(ctx context.Context, name string) bool {
	gvk := corev1.SchemeGroupVersion.WithKind("Namespace")
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(gvk)
	if a.cached != nil {
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := a.cached.Get(cctx, types.NamespacedName{Name: name}, ns)
		cancel()
		switch {
		case err == nil:
			return true
		case cachedNamespaceMissing(gvk, err):
			return false
		}
	}
	live, err := plan.Observed(ns, a.member.Get(ctx, types.NamespacedName{Name: name}, ns, fromWatchCache))
	return err != nil || live != nil
}

// missingNamespaces are the Namespaces observed not to exist.
func missingNamespaces(observed map[render.Key]*metav1.PartialObjectMetadata) map[string]bool {
	out := map[string]bool{}
	for k, live := range observed {
		if k.Group == "" && k.Kind == "Namespace" && k.Namespace == "" && live == nil {
			out[k.Name] = true
		}
	}
	return out
}

// applyStages writes what the plan lets the apply write, one stage at a time and, within a
// stage, one kind at a time in the ssa engine's kind order (a ClusterRole before the
// bindings that grant it), the objects of one kind concurrently. After the stages the next
// ones need (Namespaces, CRDs) it waits until they are ready.
func (a *applier) applyStages(ctx context.Context, mgr *ssa.ResourceManager, p *plan.Plan, out *memberApply) error {
	for _, stage := range p.Stages {
		var objs []plan.Object
		for _, o := range stage.Objects {
			if o.Write {
				objs = append(objs, o)
			}
		}
		slices.SortStableFunc(objs, func(x, y plan.Object) int {
			gx, gy := x.Doc.Object.GroupVersionKind().GroupKind(), y.Doc.Object.GroupVersionKind().GroupKind()
			switch {
			case ssa.IsLessThan(gx, gy):
				return -1
			case ssa.IsLessThan(gy, gx):
				return 1
			}
			return 0
		})
		var notReady object.ObjMetadataSet
		for _, kind := range byKind(objs) {
			results := make([]objectWrite, len(kind))
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(perMemberRequests)
			for i, o := range kind {
				g.Go(func() (err error) {
					results[i], err = a.applyObject(gctx, mgr, o)
					return err
				})
			}
			if err := g.Wait(); err != nil {
				return err
			}
			for i, r := range results {
				if r.action == ssa.CreatedAction || r.action == ssa.ConfiguredAction {
					out.Written++
					if note := driftNote(kind[i].Doc, r.drift, r.taken); note != "" {
						out.Drifted = append(out.Drifted, note)
					}
				}
				if stage.Wait && !r.ready {
					notReady = append(notReady, object.UnstructuredToObjMetadata(kind[i].Doc.Object))
				}
			}
		}
		if len(notReady) > 0 {
			if err := mgr.WaitForSetWithContext(ctx, notReady, ssa.WaitOptions{Interval: stageWaitInterval, Timeout: stageWaitTimeout}); err != nil {
				return err
			}
		}
	}
	return nil
}

// byKind splits objs, sorted by kind, into runs of one kind each.
func byKind(objs []plan.Object) [][]plan.Object {
	var out [][]plan.Object
	for i := 0; i < len(objs); {
		gk := objs[i].Doc.Object.GroupVersionKind().GroupKind()
		j := i + 1
		for j < len(objs) && objs[j].Doc.Object.GroupVersionKind().GroupKind() == gk {
			j++
		}
		out = append(out, objs[i:j])
		i = j
	}
	return out
}

// objectWrite is what writing one object did.
type objectWrite struct {
	action ssa.Action
	// drift is what the write did about drift (driftOf): a deleted object restored, a
	// changed one changed back, others' content removed — or nothing.
	drift correction
	// taken: content other managers had set, which the apply took over and removed
	// (takeover.go).
	taken []plan.Foreign
	// ready: the object, as the member returned it, is ready for what the next stage
	// needs (kstatus Current), or is known to have been when it was last applied.
	ready bool
}

// applyObject writes one object as howToWrite decides and records what it found.
func (a *applier) applyObject(ctx context.Context, mgr *ssa.ResourceManager, o plan.Object) (objectWrite, error) {
	obj := o.Doc.Object.DeepCopy()
	utils.RemoveCABundleFromCRD(obj)
	hash, err := desiredHash(obj)
	if err != nil {
		return objectWrite{}, err
	}
	entry := render.EntryKey(o.Doc.InventoryEntry())
	rec, ok := a.records[entry]
	live := versionOf(a.observed[o.Doc.Key()])
	if len(o.Foreign) > 0 {
		// Content other managers added (plan.Foreign) is taken over and removed by an apply
		// now, whatever the records say: one may have been made after it arrived.
		taken, err := a.takeOver(ctx, o.Doc)
		if err != nil {
			return objectWrite{}, err
		}
		if len(taken) > 0 {
			if err := a.serverSideApply(ctx, obj); err != nil {
				return objectWrite{}, err
			}
			a.setApplied(entry, recordOf(obj, hash))
			return objectWrite{action: ssa.ConfiguredAction, taken: taken, ready: isCurrent(obj),
				drift: driftOf(writeFacts{action: ssa.ConfiguredAction, inInventory: inInventory(rec, ok), taken: taken})}, nil
		}
	}
	switch how := howToWrite(o, live, rec, ok, hash); how {
	case writeSkip:
		a.setApplied(entry, rec)
		// Ready when last applied (a stage waits for what it wrote); a kind whose readiness
		// can change later is looked at again.
		return objectWrite{action: ssa.UnchangedAction, ready: !healthKinds[obj.GroupVersionKind().GroupKind()]}, nil
	case writeCreate, writeUpdate:
		if err := a.serverSideApply(ctx, obj); err != nil {
			return objectWrite{}, err
		}
		action := ssa.CreatedAction
		if how == writeUpdate {
			action = ssa.ConfiguredAction
			if obj.GetResourceVersion() == live.resourceVersion {
				action = ssa.UnchangedAction // the apply changed nothing
			}
		}
		a.setApplied(entry, recordOf(obj, hash))
		// An update is never drift: writeUpdate means the Baseline changed and the member's
		// copy did not. A create is, of an object the inventory held.
		return objectWrite{action: action, ready: isCurrent(obj),
			drift: driftOf(writeFacts{action: action, inInventory: inInventory(rec, ok)})}, nil
	default:
		return a.checkAndApply(ctx, mgr, o, obj, hash, writeFacts{inInventory: inInventory(rec, ok), sameDesired: ok && rec.Hash == hash})
	}
}

// checkAndApply is writeCheck: a server-side dry run shows whether the member's copy
// differs from obj; only then is it applied. facts say whether the inventory held the
// object and whether the desired object is the one last applied, so that a difference is
// drift (someone else's change) and not the Baseline's (driftOf).
func (a *applier) checkAndApply(ctx context.Context, mgr *ssa.ResourceManager, o plan.Object, obj *unstructured.Unstructured,
	hash string, facts writeFacts) (objectWrite, error) {
	entry := render.EntryKey(o.Doc.InventoryEntry())
	change, _, _, err := mgr.Diff(ctx, obj.DeepCopy(), ssa.DefaultDiffOptions())
	if err != nil {
		return objectWrite{}, err // names the object
	}
	if change.Action == ssa.UnchangedAction {
		// The member's copy matches: recorded as observed (the engine does not return the
		// dry run of an unchanged object). Were the observation older than the object, the
		// next apply finds a newer resourceVersion and checks once more.
		if live := a.observed[o.Doc.Key()]; live != nil {
			a.setApplied(entry, recordOf(live, hash))
		}
		return objectWrite{action: ssa.UnchangedAction, ready: !healthKinds[obj.GroupVersionKind().GroupKind()]}, nil
	}
	if err := a.serverSideApply(ctx, obj); err != nil {
		return objectWrite{}, err
	}
	a.setApplied(entry, recordOf(obj, hash))
	facts.action = change.Action
	return objectWrite{action: change.Action, drift: driftOf(facts), ready: isCurrent(obj)}, nil
}

// serverSideApply applies obj as field manager "flotilla", taking over fields other managers
// hold (the Baseline's values win), and leaves the member's answer in obj.
func (a *applier) serverSideApply(ctx context.Context, obj *unstructured.Unstructured) error {
	if err := a.member.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj),
		client.FieldOwner(fleetv1alpha1.FieldManager), client.ForceOwnership); err != nil {
		// Worded as the ssa engine words its errors: "Kind/namespace/name apply failed".
		return fmt.Errorf("%s apply failed: %w", utils.FmtUnstructured(obj), err)
	}
	return nil
}

func (a *applier) setApplied(entry, rec fleetv1alpha1.InventoryEntry) {
	a.appliedMu.Lock()
	defer a.appliedMu.Unlock()
	a.applied[entry] = rec
}

// recordOf is what the inventory records of live, the member's object as Flotilla applied
// it (or found it matching) with the desired object's hash.
func recordOf(live metav1.Object, hash string) fleetv1alpha1.InventoryEntry {
	return fleetv1alpha1.InventoryEntry{UID: live.GetUID(), ResourceVersion: live.GetResourceVersion(), Generation: live.GetGeneration(),
		ContentHash: contentHash(live), Hash: hash}
}

// record adds to the inventory entries what this apply recorded of each object; an entry
// whose UID is not the recorded object's keeps none.
func (a *applier) record(entries []fleetv1alpha1.InventoryEntry) []fleetv1alpha1.InventoryEntry {
	for i, e := range entries {
		rec, ok := a.applied[render.EntryKey(e)]
		if ok && rec.UID == e.UID {
			entries[i].ResourceVersion, entries[i].Generation, entries[i].ContentHash, entries[i].Hash = rec.ResourceVersion, rec.Generation, rec.ContentHash, rec.Hash
		}
	}
	return entries
}

// isCurrent reports whether kstatus finds obj ready (Current).
func isCurrent(obj *unstructured.Unstructured) bool {
	res, err := status.Compute(obj)
	return err == nil && res.Status == status.CurrentStatus
}
