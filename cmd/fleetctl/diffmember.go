package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/fluxcd/pkg/ssa"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// memberDiffer works out, for one member, what the BaselineBinding's apply would do, with the
// rules of fleet-controller's apply: which objects it may touch (ownership label and
// conflictPolicy), what the policy lets it write, which changes a server-side apply makes
// (the same fluxcd ssa dry run the controller uses to skip unchanged objects), and what it
// prunes. It only reads and dry-runs.
type memberDiffer struct {
	baseline *fleetv1alpha1.Baseline
	rendered *renderedBaseline
	cluster  *fleetv1alpha1.MemberCluster
	// binding is nil when the controller has not bound the member yet.
	binding *fleetv1alpha1.BaselineBinding
	member  client.Client
	w       io.Writer
}

func (d *memberDiffer) run(ctx context.Context) (diffCounts, error) {
	var c diffCounts
	docs, err := d.desired(ctx)
	if err != nil {
		return c, err
	}
	if unknown := d.unknownKinds(docs); len(unknown) > 0 {
		for _, u := range unknown {
			fmt.Fprintf(d.w, "! rejected %s: the cluster does not serve this kind, so nothing of the Baseline would be applied\n", u)
		}
		c.rejected = len(unknown)
		return c, nil
	}
	mgr := ssa.NewResourceManager(d.member, nil, ssa.Owner{Field: fleetv1alpha1.FieldManager, Group: fleetv1alpha1.GroupVersion.Group})
	provided := crdKinds(docs)
	// newNamespaces are Namespaces the apply creates before what goes into them.
	newNamespaces := map[string]bool{}
	for _, stage := range render.Stage(docs) {
		for _, doc := range stage {
			obj := doc.Object
			place, err := d.place(ctx, obj, &c)
			if err != nil {
				return c, err
			}
			if place == placeSkip {
				continue
			}
			gk := obj.GroupVersionKind().GroupKind()
			if place == placeMissing && gk == (schema.GroupKind{Kind: "Namespace"}) {
				newNamespaces[obj.GetName()] = true
			}
			if place == placeMissing && (provided[gk] || newNamespaces[obj.GetNamespace()]) {
				// The member cannot dry-run it before its CRD or Namespace exists; the staged
				// apply creates that first.
				first := "Namespace"
				if provided[gk] {
					first = "CustomResourceDefinition"
				}
				c.create++
				d.printCreate(doc, "not dry-run: the apply creates its "+first+" first")
				continue
			}
			entry, live, after, err := mgr.Diff(ctx, obj.DeepCopy(), ssa.DefaultDiffOptions())
			var status apierrors.APIStatus
			switch {
			case errors.As(err, &status):
				c.rejected++
				fmt.Fprintf(d.w, "! rejected %s: %s\n", render.ObjectRef(obj), oneLine(status.Status().Message))
				continue
			case err != nil:
				return c, fmt.Errorf("dry-run %s: %w", render.ObjectRef(obj), err)
			}
			switch entry.Action {
			case ssa.CreatedAction:
				c.create++
				d.printCreate(doc, "")
			case ssa.ConfiguredAction:
				c.update++
				if err := d.printUpdate(doc, live, after, place == placeAdopt); err != nil {
					return c, err
				}
			default:
				c.unchanged++
			}
		}
	}
	return c, d.prunes(ctx, docs, &c)
}

// placement is what the apply may do with one desired object.
type placement int

const (
	// placeMissing: the object does not exist; the apply creates it.
	placeMissing placement = iota
	// placeMine: it carries this Baseline's label; the apply updates it.
	placeMine
	// placeAdopt: it carries no Baseline label and conflictPolicy is Adopt; the apply takes it over.
	placeAdopt
	// placeSkip: the apply leaves it alone (a conflict, or CreateOnly and it exists).
	placeSkip
)

// place decides, as the controller's apply does, whether the Baseline may write obj: it does
// not exist, or it carries this Baseline's label, or it carries none and conflictPolicy is
// Adopt. A conflict is printed. Under policy CreateOnly an existing object is never written.
func (d *memberDiffer) place(ctx context.Context, obj *unstructured.Unstructured, c *diffCounts) (placement, error) {
	live, err := d.liveMeta(ctx, obj.GroupVersionKind(), client.ObjectKeyFromObject(obj))
	switch {
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		return placeMissing, nil
	case err != nil:
		return placeSkip, fmt.Errorf("read %s: %w", render.ObjectRef(obj), err)
	}
	place := placeMine
	switch owner := live.GetLabels()[fleetv1alpha1.LabelBaseline]; {
	case owner == d.baseline.Name:
	case owner != "":
		c.conflict++
		fmt.Fprintf(d.w, "! conflict %s: owned by Baseline %q; the apply leaves it untouched and reports Conflict\n", render.ObjectRef(obj), owner)
		return placeSkip, nil
	case d.baseline.Spec.ConflictPolicy == fleetv1alpha1.ConflictAdopt:
		place = placeAdopt
	default:
		c.conflict++
		fmt.Fprintf(d.w, "! conflict %s: exists and is not managed by Flotilla (conflictPolicy Abort); "+
			"the apply leaves it untouched and reports Conflict\n", render.ObjectRef(obj))
		return placeSkip, nil
	}
	if d.baseline.Spec.Policy == fleetv1alpha1.PolicyCreateOnly {
		c.existing++
		return placeSkip, nil
	}
	return place, nil
}

// desired renders the Baseline for the member, as the binding controller does: the
// member's namespaces matching the perNamespace selector (not those being deleted), and
// its API for which kinds are namespaced.
func (d *memberDiffer) desired(ctx context.Context) ([]render.Document, error) {
	b := d.baseline
	c := render.Cluster{
		Name:   d.cluster.Name,
		Labels: d.cluster.Labels,
		Namespaced: func(gvk schema.GroupVersionKind) bool {
			m, err := d.member.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
			return err != nil || m.Scope.Name() == meta.RESTScopeNameNamespace
		},
	}
	if b.Spec.PerNamespace != nil {
		sel, err := metav1.LabelSelectorAsSelector(&b.Spec.PerNamespace.NamespaceSelector)
		if err != nil {
			return nil, fmt.Errorf("spec.perNamespace.namespaceSelector: %w", err)
		}
		var list corev1.NamespaceList
		if err := d.member.List(ctx, &list, client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return nil, fmt.Errorf("list namespaces: %w", err)
		}
		for _, ns := range list.Items {
			if ns.DeletionTimestamp.IsZero() && ns.Status.Phase != corev1.NamespaceTerminating {
				c.Namespaces = append(c.Namespaces, ns.Name)
			}
		}
	}
	objs, err := render.ForCluster(b, d.rendered.resources, d.rendered.perNamespace, c)
	if err != nil {
		return nil, fmt.Errorf("render for cluster %q (the binding would fail with %s): %w", d.cluster.Name, fleetv1alpha1.ReasonInvalidSource, err)
	}
	// ForCluster keeps the order of its input: the resources, then the perNamespace
	// resources once per namespace. That order says which objects came from a Secret
	// source; should it ever not line up, every object is treated as sensitive.
	var sensitive []bool
	for _, doc := range d.rendered.resources {
		sensitive = append(sensitive, doc.Sensitive)
	}
	if b.Spec.PerNamespace != nil {
		for range c.Namespaces {
			for _, doc := range d.rendered.perNamespace {
				sensitive = append(sensitive, doc.Sensitive)
			}
		}
	}
	anySensitive := false
	for _, s := range sensitive {
		anySensitive = anySensitive || s
	}
	docs := make([]render.Document, len(objs))
	for i, obj := range objs {
		s := anySensitive
		if len(sensitive) == len(objs) {
			s = sensitive[i]
		}
		docs[i] = render.Document{Object: obj, Sensitive: s}
	}
	return docs, nil
}

// unknownKinds lists objects whose kind the member does not serve, except kinds a CRD in the
// same Baseline defines: the controller refuses the whole apply for them.
func (d *memberDiffer) unknownKinds(docs []render.Document) []string {
	provided := crdKinds(docs)
	var unknown []string
	for _, doc := range docs {
		gvk := doc.Object.GroupVersionKind()
		if provided[gvk.GroupKind()] {
			continue
		}
		if _, err := d.member.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); meta.IsNoMatchError(err) {
			unknown = append(unknown, fmt.Sprintf("%s (%s)", render.ObjectRef(doc.Object), gvk.GroupVersion()))
		}
	}
	return unknown
}

// crdKinds are the kinds that CustomResourceDefinitions among docs define.
func crdKinds(docs []render.Document) map[schema.GroupKind]bool {
	provided := map[schema.GroupKind]bool{}
	for _, doc := range docs {
		obj := doc.Object
		if obj.GetKind() == "CustomResourceDefinition" {
			group, _, _ := unstructured.NestedString(obj.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(obj.Object, "spec", "names", "kind")
			provided[schema.GroupKind{Group: group, Kind: kind}] = true
		}
	}
	return provided
}

// prunes lists what the binding's inventory holds and the new render does not: deleted by
// the apply when the controller would delete it, otherwise kept with the reason. Objects
// already gone, or now carrying another owner's label, are the controller's to skip too.
func (d *memberDiffer) prunes(ctx context.Context, docs []render.Document, c *diffCounts) error {
	if d.binding == nil {
		return nil
	}
	b := d.baseline
	want := map[fleetv1alpha1.InventoryEntry]bool{}
	for _, doc := range docs {
		want[render.EntryKey(doc.InventoryEntry())] = true
	}
	for _, e := range d.binding.Status.Inventory {
		if want[render.EntryKey(e)] {
			continue
		}
		gvk := schema.GroupVersionKind{Group: e.Group, Version: e.Version, Kind: e.Kind}
		live, err := d.liveMeta(ctx, gvk, client.ObjectKey{Namespace: e.Namespace, Name: e.Name})
		switch {
		case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
			continue
		case err != nil:
			return fmt.Errorf("read %s: %w", render.EntryRef(e), err)
		case live.GetLabels()[fleetv1alpha1.LabelBaseline] != b.Name:
			continue
		}
		namespaceOrCRD := (e.Group == "" && e.Kind == "Namespace") ||
			(e.Group == "apiextensions.k8s.io" && e.Kind == "CustomResourceDefinition")
		var kept string
		switch {
		case b.Spec.Policy == fleetv1alpha1.PolicyInform || b.Spec.Policy == fleetv1alpha1.PolicyCreateOnly:
			kept = fmt.Sprintf("policy %s never prunes", b.Spec.Policy)
		case b.Spec.Prune != nil && !*b.Spec.Prune:
			kept = "spec.prune is false"
		case namespaceOrCRD && live.GetAnnotations()[fleetv1alpha1.AnnotationPrune] != "true":
			kept = fmt.Sprintf("a %s is pruned only when annotated %s: \"true\"", e.Kind, fleetv1alpha1.AnnotationPrune)
		}
		if kept != "" {
			c.kept++
			fmt.Fprintf(d.w, "(kept: %s left the Baseline; %s)\n", render.EntryRef(e), kept)
			continue
		}
		c.prune++
		fmt.Fprintf(d.w, "- prune %s\n", render.EntryRef(e))
	}
	return nil
}

// liveMeta reads only the metadata of the member's copy: ownership is in the labels.
func (d *memberDiffer) liveMeta(ctx context.Context, gvk schema.GroupVersionKind, key client.ObjectKey) (*metav1.PartialObjectMetadata, error) {
	live := &metav1.PartialObjectMetadata{}
	live.SetGroupVersionKind(gvk)
	err := d.member.Get(ctx, key, live)
	return live, err
}

// printCreate prints the object the apply would create, Secret values masked.
func (d *memberDiffer) printCreate(doc render.Document, note string) {
	line := "+ create " + render.ObjectRef(doc.Object)
	if note != "" {
		line += " (" + note + ")"
	}
	fmt.Fprintln(d.w, line)
	if doc.Sensitive {
		fmt.Fprintln(d.w, "    (content hidden: its manifest comes from a Secret source)")
		return
	}
	_, after := maskSecrets(nil, doc.Object)
	lines, err := diffLines(after)
	if err != nil {
		fmt.Fprintf(d.w, "    (cannot show it: %v)\n", err)
		return
	}
	for _, l := range lines {
		fmt.Fprintln(d.w, "    +"+l)
	}
}

// printUpdate prints the unified diff of the live object and the dry-run result.
func (d *memberDiffer) printUpdate(doc render.Document, live, after *unstructured.Unstructured, adopt bool) error {
	verb := "~ update "
	if adopt {
		verb = "~ adopt "
	}
	fmt.Fprintln(d.w, verb+render.ObjectRef(doc.Object))
	live, after = maskSecrets(live, after)
	a, err := diffLines(live)
	if err != nil {
		return fmt.Errorf("show %s: %w", render.ObjectRef(doc.Object), err)
	}
	b, err := diffLines(after)
	if err != nil {
		return fmt.Errorf("show %s: %w", render.ObjectRef(doc.Object), err)
	}
	hunks := unifiedDiff(a, b)
	switch {
	case len(hunks) == 0:
		fmt.Fprintln(d.w, "    (only fields the server keeps differ)")
	case doc.Sensitive:
		changed := 0
		for _, h := range hunks {
			if h[0] == '-' || h[0] == '+' {
				changed++
			}
		}
		fmt.Fprintf(d.w, "    (%d changed lines hidden: its manifest comes from a Secret source)\n", changed)
	default:
		fmt.Fprintln(d.w, "    --- live")
		fmt.Fprintln(d.w, "    +++ after apply")
		for _, h := range hunks {
			fmt.Fprintln(d.w, "    "+h)
		}
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
