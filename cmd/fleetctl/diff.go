package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// Exit codes of `fleetctl diff`, as diff(1) and `kubectl diff` use them.
const (
	diffExitSame    = 0
	diffExitChanges = 1
	diffExitError   = 2
)

// diffParallelism bounds how many members are diffed at once; each is independent, so a
// slow member delays only itself.
const diffParallelism = 4

// diffOptions are the flags and argument of `fleetctl diff`.
type diffOptions struct {
	baseline     string
	cluster      string
	hubNamespace string
}

func newDiffCommand(hub *hubFlags) *cobra.Command {
	o := &diffOptions{}
	cmd := &cobra.Command{
		Use:   "diff BASELINE [--member NAME]",
		Short: "Show what applying a Baseline would change in each selected member (server-side dry run: nothing is written)",
		Long: `diff renders the Baseline BASELINE as fleet-controller does — its sources read from
the hub namespace, ${VAR} substitution, the perNamespace fan-out into the member's
matching namespaces, ownership labels — and asks every selected member (or only
--member) for a server-side apply dry run with field manager "flotilla", then prints:

  + create KIND NAMESPACE/NAME    the object does not exist yet (its manifest follows)
  ~ update KIND NAMESPACE/NAME    a unified diff of the live object and the dry run result
  ! conflict KIND NAMESPACE/NAME  someone else owns it; the apply leaves it untouched
  ! rejected KIND NAMESPACE/NAME  the member refuses it; the apply would fail
  - prune KIND NAMESPACE/NAME     it left the Baseline and would be deleted
  (kept: KIND NAMESPACE/NAME ...) it left the Baseline and stays, and why

Unchanged objects are only counted. Secret values are never shown: "***" when a
value stays, "*** (before)" / "*** (after)" when it changes. Server-kept fields
(managedFields, resourceVersion, generation, uid, creationTimestamp, status) are
left out of the diff. Nothing is written to the hub or to any member.

diff connects to each member with the kubeconfig the hub stores for it (the Secret
that MemberCluster spec.kubeconfigSecretRef names), so you need "get" on those
Secrets in the hub as well as read access to Baselines, BaselineBindings,
MemberClusters and the Baseline's ConfigMap and Secret sources.

Exit status: 0 when no member would change, 1 when some would, 2 on an error
(including an object a member would reject), as diff(1) and kubectl diff.`,
		Example: `  fleetctl diff security
  fleetctl diff security --member eu-1`,
		ValidArgsFunction: completeBaselines(hub),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return withExitCode(diffExitError, fmt.Errorf("diff takes one argument, the name of a Baseline; got %d", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.baseline = args[0]
			return withExitCode(diffExitError, runDiff(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), hub, o))
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withExitCode(diffExitError, err) })
	cmd.Flags().StringVar(&o.cluster, "member", "", "Diff only this member cluster (a MemberCluster name).")
	// --cluster is what the issue and kubectl-minded users type; flags naming a member are
	// --member-... by convention, so it stays as a hidden alias.
	cmd.Flags().StringVar(&o.cluster, "cluster", "", "Alias of --member.")
	_ = cmd.Flags().MarkHidden("cluster")
	_ = cmd.RegisterFlagCompletionFunc("member", completeMemberFlag(hub))
	cmd.Flags().StringVar(&o.hubNamespace, "hub-namespace", fleetv1alpha1.DefaultHubNamespace,
		"Hub namespace holding the Baseline's ConfigMap and Secret sources.")
	return cmd
}

func runDiff(ctx context.Context, out, errOut io.Writer, hub *hubFlags, o *diffOptions) error {
	if errs := validation.IsDNS1123Label(o.hubNamespace); len(errs) > 0 {
		return fmt.Errorf("invalid --hub-namespace %q: %s", o.hubNamespace, strings.Join(errs, "; "))
	}
	cfg, err := hub.restConfig()
	if err != nil {
		return err
	}
	hubClient, err := newClient(cfg, errOut)
	if err != nil {
		return err
	}
	b, err := getBaseline(ctx, hubClient, o.baseline)
	if err != nil {
		return err
	}
	rendered, err := readBaseline(ctx, hubClient, o.hubNamespace, b)
	if err != nil {
		return err
	}
	members, err := diffTargets(ctx, hubClient, b, o.cluster)
	if err != nil {
		return err
	}
	bindings, err := bindingsOf(ctx, hubClient, b.Name)
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "Baseline %s at revision %s: %s\n", b.Name, rendered.Revision, plural(len(members), "member"))
	if b.Status.Revision != "" && b.Status.Revision != rendered.Revision {
		fmt.Fprintf(out, "note: the sources changed since fleet-controller last rendered them (it reports revision %s)\n", b.Status.Revision)
	}
	if len(members) == 0 {
		fmt.Fprintln(out, "No member cluster matches spec.clusterSelector: there is nothing to apply.")
		return nil
	}

	results := make([]*memberDiffResult, len(members))
	var wg sync.WaitGroup
	sem := make(chan struct{}, diffParallelism)
	for i := range members {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = diffMember(ctx, hubClient, errOut, b, rendered, &members[i], bindings[members[i].Name])
		})
	}
	wg.Wait()

	var changed, failed []string
	for _, r := range results {
		fmt.Fprintln(out)
		_, _ = out.Write(r.out.Bytes())
		switch {
		case r.err != nil:
			fmt.Fprintf(out, "cluster %s: error: %v\n", r.cluster, r.err)
			failed = append(failed, r.cluster)
		case r.counts.rejected > 0:
			failed = append(failed, r.cluster)
		case r.counts.changes() > 0:
			changed = append(changed, r.cluster)
		}
	}
	fmt.Fprintln(out)
	switch {
	case len(failed) > 0:
		return fmt.Errorf("could not diff, or the apply would fail in, cluster(s) %s", strings.Join(failed, ", "))
	case len(changed) > 0:
		fmt.Fprintf(out, "Differences in %d of %s: %s\n", len(changed), plural(len(members), "member"), strings.Join(changed, ", "))
		return &exitError{code: diffExitChanges}
	default:
		fmt.Fprintf(out, "No differences in %s.\n", plural(len(members), "member"))
		return nil
	}
}

// diffTargets are the members to diff: every member b selects, or only the one --member
// names, which must be selected.
func diffTargets(ctx context.Context, hub client.Client, b *fleetv1alpha1.Baseline, cluster string) ([]fleetv1alpha1.MemberCluster, error) {
	members, err := selectedMembers(ctx, hub, b)
	if err != nil || cluster == "" {
		return members, err
	}
	i := slices.IndexFunc(members, func(mc fleetv1alpha1.MemberCluster) bool { return mc.Name == cluster })
	if i >= 0 {
		return members[i : i+1], nil
	}
	mc := &fleetv1alpha1.MemberCluster{}
	if err := hub.Get(ctx, client.ObjectKey{Name: cluster}, mc); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return nil, fmt.Errorf("membercluster %q not found on the hub", cluster)
		}
		return nil, fmt.Errorf("get membercluster %q: %w", cluster, err)
	}
	return nil, fmt.Errorf("baseline %q does not select cluster %q (spec.clusterSelector), so nothing of it is applied there", b.Name, cluster)
}

// memberDiffResult is the diff of one member: its text, what it found, and an error that
// stopped it.
type memberDiffResult struct {
	cluster string
	out     bytes.Buffer
	counts  diffCounts
	err     error
}

// diffCounts counts what an apply would do in one member.
type diffCounts struct {
	create, update, prune, conflict, rejected int
	// unchanged objects match the Baseline already.
	unchanged int
	// kept objects left the Baseline and stay (see memberDiffer.prunes).
	kept int
	// existing objects are not compared: policy CreateOnly never updates them.
	existing int
}

func (c diffCounts) changes() int { return c.create + c.update + c.prune + c.conflict }

func (c diffCounts) String() string {
	var parts []string
	for _, p := range []struct {
		n    int
		what string
	}{
		{c.create, "to create"}, {c.update, "to update"}, {c.prune, "to prune"},
		{c.conflict, "in conflict"}, {c.rejected, "rejected"}, {c.kept, "kept"},
		{c.existing, "left as they are (CreateOnly)"}, {c.unchanged, "unchanged"},
	} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
		}
	}
	if len(parts) == 0 {
		return "nothing to apply"
	}
	return strings.Join(parts, ", ")
}

func diffMember(ctx context.Context, hub client.Client, errOut io.Writer, b *fleetv1alpha1.Baseline, rendered *render.Rendered,
	mc *fleetv1alpha1.MemberCluster, bb *fleetv1alpha1.BaselineBinding) *memberDiffResult {
	r := &memberDiffResult{cluster: mc.Name}
	fmt.Fprintf(&r.out, "cluster %s:\n", mc.Name)
	for _, n := range memberNotes(b, rendered.Revision, mc, bb) {
		fmt.Fprintf(&r.out, "  note: %s\n", n)
	}
	member, err := memberClient(ctx, hub, mc, errOut)
	if err != nil {
		r.err = err
		return r
	}
	d := &memberDiffer{baseline: b, rendered: rendered, cluster: mc, binding: bb, member: member, w: &r.out}
	r.counts, r.err = d.run(ctx)
	if r.err == nil {
		fmt.Fprintf(&r.out, "cluster %s: %s\n", mc.Name, r.counts)
	}
	return r
}

// memberNotes say when what the diff shows is not what the next apply does right away.
func memberNotes(b *fleetv1alpha1.Baseline, revision string, mc *fleetv1alpha1.MemberCluster, bb *fleetv1alpha1.BaselineBinding) []string {
	var notes []string
	switch {
	case b.Spec.Paused:
		notes = append(notes, "the Baseline is paused: nothing is written until spec.paused is false")
	case mc.Spec.Paused:
		notes = append(notes, "the MemberCluster is paused: nothing is written to it until spec.paused is false")
	}
	switch {
	case bb == nil:
		notes = append(notes, "no BaselineBinding for this member yet (is fleet-controller running?)")
	case bb.Spec.Revision != revision:
		notes = append(notes, fmt.Sprintf("the rollout has not released revision %s to this member yet (it holds %s); this is what it will change",
			revision, orDash(bb.Spec.Revision)))
	}
	switch b.Spec.Policy {
	case fleetv1alpha1.PolicyInform:
		notes = append(notes, "policy Inform: fleet-controller writes nothing and reports these differences as drift")
	case fleetv1alpha1.PolicyCreateOnly:
		notes = append(notes, "policy CreateOnly: only missing objects are created; existing ones are never updated")
	}
	return notes
}

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}
