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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/plan"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// memberDiffer shows, for one member, what the BaselineBinding's apply would do. The
// decisions are fleet-controller's own (propagation/plan: which objects it may touch, what
// the policy lets it write, the stage order, what it prunes); the changes are the same
// fluxcd ssa dry run the controller uses to skip unchanged objects. It only reads and
// dry-runs.
type memberDiffer struct {
	baseline *fleetv1alpha1.Baseline
	rendered *render.Rendered
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
	var inventory []fleetv1alpha1.InventoryEntry
	if d.binding != nil {
		inventory = d.binding.Status.Inventory
	}
	p, err := plan.Make(ctx, plan.Input{Baseline: d.baseline, Desired: docs, Inventory: inventory, Mapper: d.member.RESTMapper(), Observer: d})
	if err != nil {
		return c, err
	}
	if len(p.UnknownKinds) > 0 {
		for _, u := range p.UnknownKinds {
			fmt.Fprintf(d.w, "! rejected %s: the cluster does not serve this kind, so nothing of the Baseline would be applied\n", u)
		}
		c.rejected = len(p.UnknownKinds)
		return c, nil
	}
	mgr := ssa.NewResourceManager(d.member, nil, ssa.Owner{Field: fleetv1alpha1.FieldManager, Group: fleetv1alpha1.GroupVersion.Group})
	provided := plan.CRDKinds(docs)
	// newNamespaces are Namespaces the apply creates before what goes into them.
	newNamespaces := map[string]bool{}
	for _, stage := range p.Stages {
		for _, o := range stage.Objects {
			if err := d.show(ctx, mgr, o, provided, newNamespaces, &c); err != nil {
				return c, err
			}
		}
	}
	d.prunes(p.Prune, &c)
	return c, nil
}

// show prints what the apply does with one object of the plan.
func (d *memberDiffer) show(ctx context.Context, mgr *ssa.ResourceManager, o plan.Object, provided map[schema.GroupKind]bool,
	newNamespaces map[string]bool, c *diffCounts) error {
	obj := o.Doc.Object
	switch {
	case o.Placement == plan.Conflict:
		c.conflict++
		fmt.Fprintf(d.w, "! conflict %s: %s; the apply leaves it untouched and reports Conflict\n", render.ObjectRef(obj), strings.TrimPrefix(o.Reason, "is "))
		return nil
	case !o.Compare:
		c.existing++
		return nil
	}
	gk := obj.GroupVersionKind().GroupKind()
	if o.Placement == plan.Missing && gk == (schema.GroupKind{Kind: "Namespace"}) {
		newNamespaces[obj.GetName()] = true
	}
	if o.Placement == plan.Missing && (provided[gk] || newNamespaces[obj.GetNamespace()]) {
		// The member cannot dry-run it before its CRD or Namespace exists; the staged
		// apply creates that first.
		first := "Namespace"
		if provided[gk] {
			first = "CustomResourceDefinition"
		}
		c.create++
		d.printCreate(o.Doc, "not dry-run: the apply creates its "+first+" first")
		return nil
	}
	entry, live, after, err := mgr.Diff(ctx, obj.DeepCopy(), ssa.DefaultDiffOptions())
	var status apierrors.APIStatus
	switch {
	case errors.As(err, &status):
		c.rejected++
		fmt.Fprintf(d.w, "! rejected %s: %s\n", render.ObjectRef(obj), oneLine(status.Status().Message))
		return nil
	case err != nil:
		return fmt.Errorf("dry-run %s: %w", render.ObjectRef(obj), err)
	}
	switch {
	case entry.Action == ssa.CreatedAction:
		c.create++
		d.printCreate(o.Doc, "")
	case entry.Action == ssa.ConfiguredAction:
		c.update++
		if err := d.printUpdate(o.Doc, live, after, o.Placement == plan.Adopt); err != nil {
			return err
		}
		d.printForeign(o)
	case len(o.Foreign) > 0:
		// The dry run leaves content other managers own in place; the apply takes it over
		// first, and removes what the Baseline does not set.
		c.update++
		verb := "~ update "
		if o.Placement == plan.Adopt {
			verb = "~ adopt "
		}
		fmt.Fprintln(d.w, verb+render.ObjectRef(obj))
		d.printForeign(o)
	default:
		c.unchanged++
	}
	return nil
}

// printForeign names the content other managers set in the object (plan.Foreign): what the
// apply takes over and removes where the Baseline does not set it, or what Inform reports.
func (d *memberDiffer) printForeign(o plan.Object) {
	if len(o.Foreign) == 0 {
		return
	}
	what := "taken over by the apply, and removed where the Baseline does not set it"
	if !o.Write {
		what = "reported as drift (policy Inform)"
	}
	fmt.Fprintf(d.w, "    content others set, %s:\n", what)
	for _, f := range o.Foreign {
		fmt.Fprintf(d.w, "      %s\n", f)
	}
}

// desired renders the Baseline for the member as the binding controller does
// (plan.Desired), with the member's namespaces and its API for which kinds are namespaced.
func (d *memberDiffer) desired(ctx context.Context) ([]render.Document, error) {
	var namespaces []corev1.Namespace
	if d.baseline.Spec.PerNamespace != nil {
		var list corev1.NamespaceList
		if err := d.member.List(ctx, &list); err != nil {
			return nil, fmt.Errorf("list namespaces: %w", err)
		}
		namespaces = list.Items
	}
	docs, err := plan.Desired(d.baseline, d.rendered, d.cluster, d.member.RESTMapper(), namespaces)
	if err != nil {
		return nil, fmt.Errorf("render for cluster %q (the binding would fail with %s): %w", d.cluster.Name, fleetv1alpha1.ReasonInvalidSource, err)
	}
	return docs, nil
}

// prunes prints what the binding's inventory holds, the new render does not, and still
// belongs to the Baseline: deleted by the apply, or kept with the reason.
func (d *memberDiffer) prunes(prunes []plan.Prune, c *diffCounts) {
	for _, p := range prunes {
		if p.Kept != "" {
			c.kept++
			fmt.Fprintf(d.w, "(kept: %s left the Baseline; %s)\n", render.EntryRef(p.Entry), p.Kept)
			continue
		}
		c.prune++
		fmt.Fprintf(d.w, "- prune %s\n", render.EntryRef(p.Entry))
	}
}

// Meta implements plan.Observer with reads of the member's API server.
func (d *memberDiffer) Meta(ctx context.Context, gvk schema.GroupVersionKind, key types.NamespacedName) (*metav1.PartialObjectMetadata, error) {
	live := &metav1.PartialObjectMetadata{}
	live.SetGroupVersionKind(gvk)
	return plan.Observed(live, d.member.Get(ctx, key, live))
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
