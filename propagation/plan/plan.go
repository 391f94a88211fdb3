package plan

import (
	"context"
	"fmt"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// Observer is what plan reads of a member, implemented by the caller over its client.
type Observer interface {
	// Meta returns the member's metadata of the object gvk/key, or nil (and no error) when
	// it does not exist or its kind is not served. Its managedFields must hold every entry
	// but subresources' (ForeignFields decides from them); of Flotilla's own apply entry,
	// only that it is there.
	Meta(ctx context.Context, gvk schema.GroupVersionKind, key types.NamespacedName) (*metav1.PartialObjectMetadata, error)
}

// Placement is what the apply may do with one desired object.
type Placement string

const (
	// Missing: the object does not exist; the apply creates it.
	Missing Placement = "Missing"
	// Mine: the Baseline owns it (its label, or its UID in the binding's inventory).
	Mine Placement = "Mine"
	// Adopt: it exists, Flotilla never owned it, and conflictPolicy Adopt takes it over.
	Adopt Placement = "Adopt"
	// Conflict: someone else owns it; the apply leaves it alone and reports Conflict.
	Conflict Placement = "Conflict"
)

// Object is the decision for one desired object.
type Object struct {
	Doc       render.Document
	Placement Placement
	// Reason says why a Conflict is one, in words that follow the object's name.
	Reason string
	// UID is the live object's UID; empty when Missing (the caller learns it on create).
	UID types.UID
	// Compare: the apply compares the object with the member — writes it when Write, else
	// (policy Inform) reports the difference as drift. False for a Conflict and, under
	// CreateOnly, for an object that exists.
	Compare bool
	// Write: the policy lets the apply write it.
	Write bool
	// Foreign is content other writers added to an object the Baseline owns (see
	// ForeignFields): under Enforce the apply takes it over so that it removes what the
	// Baseline does not set — the object must then be applied even if nothing else
	// changed; under Inform it is drift. Empty when there is none, and for objects the apply
	// does not compare.
	Foreign []Foreign
}

// Prune is an inventory entry that left the Baseline and is still owned in the member.
type Prune struct {
	Entry fleetv1alpha1.InventoryEntry
	// Kept says why it stays; empty when the apply deletes it.
	Kept string
}

// Stage is one step of a staged apply.
type Stage struct {
	Objects []Object
	// Wait: the apply waits for the stage's objects to be ready before the next stage
	// (render.WaitAfter).
	Wait bool
}

// Plan is what one apply of a Baseline does in one member.
type Plan struct {
	// UnknownKinds name documents whose kind the member does not serve; when there are any,
	// nothing is applied and the rest of the plan is empty.
	UnknownKinds []string
	// Stages hold every desired object with its decision, in apply order (render.Stage).
	Stages []Stage
	// Prune lists what left the Baseline and still belongs to it in the member.
	Prune []Prune
}

// Input is what a plan is made from.
type Input struct {
	Baseline *fleetv1alpha1.Baseline
	// Desired is the Baseline rendered for the member (see Desired).
	Desired []render.Document
	// Inventory is the binding's inventory from the last apply (nil before the first).
	Inventory []fleetv1alpha1.InventoryEntry
	// Mapper says which kinds the member serves.
	Mapper meta.RESTMapper
	// Observer reads the member's metadata of desired objects and inventory entries.
	Observer Observer
}

// Make decides the apply of in.Baseline in one member.
func Make(ctx context.Context, in Input) (*Plan, error) {
	p := &Plan{}
	if p.UnknownKinds = UnknownKinds(in.Desired, in.Mapper); len(p.UnknownKinds) > 0 {
		return p, nil
	}
	owned := inventoryUIDs(in.Inventory)
	for _, stage := range render.Stage(in.Desired) {
		objs := make([]Object, 0, len(stage))
		for _, d := range stage {
			live, err := in.Observer.Meta(ctx, d.Object.GroupVersionKind(), types.NamespacedName{Namespace: d.Object.GetNamespace(), Name: d.Object.GetName()})
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", render.ObjectRef(d.Object), err)
			}
			o := Place(in.Baseline, d, live, owned)
			if o.Foreign, err = foreign(o, live); err != nil {
				return nil, fmt.Errorf("read %s: %w", render.ObjectRef(d.Object), err)
			}
			objs = append(objs, o)
		}
		p.Stages = append(p.Stages, Stage{Objects: objs, Wait: render.WaitAfter(stage)})
	}
	var err error
	p.Prune, err = prunes(ctx, in)
	return p, err
}

// Place decides one desired object from its live metadata (nil: it does not exist) and the
// UIDs of the binding's inventory.
func Place(b *fleetv1alpha1.Baseline, d render.Document, live *metav1.PartialObjectMetadata, inventory map[types.UID]bool) Object {
	o := Object{Doc: d}
	owner := ""
	if live != nil {
		owner = live.GetLabels()[fleetv1alpha1.LabelBaseline]
	}
	switch {
	case live == nil:
		o.Placement = Missing
	case inventory[live.GetUID()] || owner == b.Name:
		// Ours whatever its labels say now when the inventory holds its UID: the apply puts
		// the labels back with the rest of the desired state.
		o.Placement, o.UID = Mine, live.GetUID()
	case owner != "":
		// Another Baseline applied it first; taking it over would make two Baselines fight
		// over one object, so the later one always reports a conflict.
		o.Placement, o.Reason = Conflict, fmt.Sprintf("is owned by Baseline %q", owner)
	case b.Spec.ConflictPolicy == fleetv1alpha1.ConflictAdopt:
		o.Placement, o.UID = Adopt, live.GetUID()
	default:
		o.Placement, o.Reason = Conflict, "exists and is not managed by Flotilla (conflictPolicy Abort)"
	}
	switch {
	case o.Placement == Conflict:
	case b.Spec.Policy == fleetv1alpha1.PolicyCreateOnly:
		o.Compare = o.Placement == Missing
		o.Write = o.Compare
	case b.Spec.Policy == fleetv1alpha1.PolicyInform:
		o.Compare = true
	default:
		o.Compare, o.Write = true, true
	}
	return o
}

// foreign finds the foreign content of an object the apply compares and the Baseline owns
// or adopts. Under Inform only of an object Flotilla applied before: in one it never
// applied, everything is someone else's, and only the comparison with the Baseline says
// whether it differs.
func foreign(o Object, live *metav1.PartialObjectMetadata) ([]Foreign, error) {
	if live == nil || !o.Compare || (o.Placement != Mine && o.Placement != Adopt) {
		return nil, nil
	}
	if !o.Write && !HasOwnApply(live.GetManagedFields()) {
		return nil, nil
	}
	return ForeignFields(o.Doc, live.GetManagedFields())
}

// Owned lists the objects the Baseline owns in the member once the apply succeeded: all
// but conflicts, and under Inform (which creates nothing) all that exist.
func (p *Plan) Owned(b *fleetv1alpha1.Baseline) []Object {
	var out []Object
	for _, stage := range p.Stages {
		for _, o := range stage.Objects {
			if o.Placement == Conflict || (b.Spec.Policy == fleetv1alpha1.PolicyInform && o.Placement == Missing) {
				continue
			}
			out = append(out, o)
		}
	}
	return out
}

// Inventory is the binding's inventory for objs, sorted by name, UIDs as the objects carry.
func Inventory(objs []Object) []fleetv1alpha1.InventoryEntry {
	out := make([]fleetv1alpha1.InventoryEntry, 0, len(objs))
	for _, o := range objs {
		e := o.Doc.InventoryEntry()
		e.UID = o.UID
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return render.EntryRef(out[i]) < render.EntryRef(out[j]) })
	return out
}

// Owns reports whether live, the member's copy of inventory entry e, still belongs to b:
// it is the object Flotilla applied (same UID), or it carries b's label.
func Owns(b *fleetv1alpha1.Baseline, e fleetv1alpha1.InventoryEntry, live metav1.Object) bool {
	return (e.UID != "" && live.GetUID() == e.UID) || live.GetLabels()[fleetv1alpha1.LabelBaseline] == b.Name
}

// Protected says why an owned object must not be deleted by a prune or a Baseline's
// deletion: a Namespace or CRD takes everything inside it along, so it goes only when its
// manifest allowed it. Empty when it may go.
func Protected(e fleetv1alpha1.InventoryEntry, live metav1.Object) string {
	namespaceOrCRD := (e.Group == "" && e.Kind == "Namespace") ||
		(e.Group == "apiextensions.k8s.io" && e.Kind == "CustomResourceDefinition")
	if namespaceOrCRD && live.GetAnnotations()[fleetv1alpha1.AnnotationPrune] != "true" {
		return fmt.Sprintf("a %s is pruned only when annotated %s: \"true\"", e.Kind, fleetv1alpha1.AnnotationPrune)
	}
	return ""
}

// prunes lists the inventory entries that left the Baseline and are still owned in the
// member, each with why it is kept (policy, spec.prune, Protected) or none.
func prunes(ctx context.Context, in Input) ([]Prune, error) {
	b := in.Baseline
	want := map[fleetv1alpha1.InventoryEntry]bool{}
	for _, d := range in.Desired {
		want[render.EntryKey(d.InventoryEntry())] = true
	}
	var out []Prune
	for _, e := range in.Inventory {
		if want[render.EntryKey(e)] {
			continue
		}
		live, err := in.Observer.Meta(ctx, schema.GroupVersionKind{Group: e.Group, Version: e.Version, Kind: e.Kind}, types.NamespacedName{Namespace: e.Namespace, Name: e.Name})
		switch {
		case err != nil:
			return nil, fmt.Errorf("read %s: %w", render.EntryRef(e), err)
		case live == nil || !Owns(b, e, live):
			continue // gone, or someone else took it over: not ours to delete
		}
		p := Prune{Entry: e}
		switch {
		case b.Spec.Policy == fleetv1alpha1.PolicyInform || b.Spec.Policy == fleetv1alpha1.PolicyCreateOnly:
			p.Kept = fmt.Sprintf("policy %s never prunes", b.Spec.Policy)
		case b.Spec.Prune != nil && !*b.Spec.Prune:
			p.Kept = "spec.prune is false"
		default:
			p.Kept = Protected(e, live)
		}
		out = append(out, p)
	}
	return out, nil
}

func inventoryUIDs(inv []fleetv1alpha1.InventoryEntry) map[types.UID]bool {
	out := make(map[types.UID]bool, len(inv))
	for _, e := range inv {
		if e.UID != "" {
			out[e.UID] = true
		}
	}
	return out
}

// UnknownKinds lists documents whose kind the member does not serve, except kinds defined
// by a CRD in the same Baseline (the staged apply creates the CRD first).
func UnknownKinds(docs []render.Document, mapper meta.RESTMapper) []string {
	provided := CRDKinds(docs)
	var unknown []string
	for _, d := range docs {
		gvk := d.Object.GroupVersionKind()
		if provided[gvk.GroupKind()] {
			continue
		}
		if _, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version); meta.IsNoMatchError(err) {
			unknown = append(unknown, fmt.Sprintf("%s (%s)", render.ObjectRef(d.Object), gvk.GroupVersion()))
		}
	}
	return unknown
}

// CRDKinds are the kinds that CustomResourceDefinitions among docs define.
func CRDKinds(docs []render.Document) map[schema.GroupKind]bool {
	provided := map[schema.GroupKind]bool{}
	for _, d := range docs {
		if d.Object.GroupVersionKind().GroupKind() == (schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}) {
			group, _, _ := unstructured.NestedString(d.Object.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(d.Object.Object, "spec", "names", "kind")
			provided[schema.GroupKind{Group: group, Kind: kind}] = true
		}
	}
	return provided
}

// Observed turns the result of reading live's metadata into what an Observer returns: nil
// when the object does not exist or its kind is not served, the read's error otherwise.
func Observed(live *metav1.PartialObjectMetadata, err error) (*metav1.PartialObjectMetadata, error) {
	switch {
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return live, nil
}
