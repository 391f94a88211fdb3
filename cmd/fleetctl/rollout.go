package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// rolloutPollInterval is how often `rollout status --watch` re-reads the hub.
var rolloutPollInterval = time.Second

func newRolloutCommand(hub *hubFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Follow how a Baseline's revision moves through the fleet",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newRolloutStatusCommand(hub))
	return cmd
}

// rolloutStatusOptions are the flags and argument of `fleetctl rollout status`.
type rolloutStatusOptions struct {
	baseline string
	watch    bool
	timeout  time.Duration
	output   *outputFlags
}

func newRolloutStatusCommand(hub *hubFlags) *cobra.Command {
	o := &rolloutStatusOptions{output: newOutputFlags(outputText, outputWide)}
	cmd := &cobra.Command{
		Use:   "status BASELINE [--watch] [--timeout D]",
		Short: "Show the rollout of a Baseline's current revision: which members hold it, applied and healthy",
		Long: `rollout status prints the Baseline's current revision and, for every member it selects,
whether the rollout has released that revision to it, whether it is applied and
healthy there, and why not. A member is updated when it holds the revision applied
and healthy; the rollout is complete when every selected member is.

With --watch it prints again whenever something changes, until the rollout is
complete (exit 0), stalls (more members failed than spec.rollout.maxFailures
allows, or the sources do not render: exit 1 with the reason) or --timeout passes
(exit 1). Without --watch it prints once and exits 0, or 1 if the rollout stalled.

-o wide adds when each member last applied and prints reasons in full. -o json|yaml
prints the Baseline and the BaselineBindings of its selected members as one v1 List
(with --watch, one List each time something changes), -o name their kind/name.`,
		Example: `  fleetctl rollout status security
  fleetctl rollout status security --watch --timeout 10m
  fleetctl rollout status security -o jsonpath='{.items[0].status.revision}'`,
		ValidArgsFunction: completeBaselines(hub),
		Args:              cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.baseline = args[0]
			return runRolloutStatus(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), hub, o)
		},
	}
	cmd.Flags().BoolVarP(&o.watch, "watch", "w", false, "Keep printing changes until the rollout completes or stalls.")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 0, "With --watch, give up after this long (0: wait as long as it takes).")
	o.output.bind(cmd)
	return cmd
}

func runRolloutStatus(ctx context.Context, out, errOut io.Writer, hub *hubFlags, o *rolloutStatusOptions) error {
	if o.timeout < 0 {
		return fmt.Errorf("--timeout must not be negative")
	}
	if o.timeout > 0 && !o.watch {
		return fmt.Errorf("--timeout only applies with --watch")
	}
	if err := o.output.validate(); err != nil {
		return err
	}
	cfg, err := hub.restConfig()
	if err != nil {
		return err
	}
	c, err := newClient(cfg, errOut)
	if err != nil {
		return err
	}
	wide := o.output.wide()
	// show prints a view as -o asks; text is what tells one view from the next.
	show := func(v *rolloutView, text string, again bool) error {
		if !o.output.human() {
			return o.output.printObjects(out, v.objects)
		}
		if again {
			text = "\n" + text
		}
		_, err := fmt.Fprint(out, text)
		return err
	}
	v, err := readRollout(ctx, c, o.baseline)
	if err != nil {
		return err
	}
	last := v.text(wide)
	if err := show(v, last, false); err != nil {
		return err
	}
	if !o.watch || v.finished() {
		return v.err()
	}

	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	ticker := time.NewTicker(rolloutPollInterval)
	defer ticker.Stop()
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("timed out after %s waiting for the rollout of baseline %q: %s", o.timeout, o.baseline, v.progress())
			}
			return ctx.Err()
		case <-ticker.C:
		}
		next, err := readRollout(ctx, c, o.baseline)
		switch {
		case ctx.Err() != nil:
			continue // reported above
		case err != nil:
			// One lost request does not end a watch; say so once and keep trying.
			if msg := err.Error(); msg != lastErr {
				fmt.Fprintf(out, "(could not read the rollout: %v; retrying)\n", err)
				lastErr = msg
			}
			continue
		}
		lastErr = ""
		v = next
		if text := v.text(wide); text != last {
			if err := show(v, text, true); err != nil {
				return err
			}
			last = text
		}
		if v.finished() {
			return v.err()
		}
	}
}

// rolloutView is where a Baseline's rollout stands, read once from the hub.
type rolloutView struct {
	baseline *fleetv1alpha1.Baseline
	members  []rolloutRow
	updated  int
	// objects are what the view was read from, for -o json|yaml|name: the Baseline and the
	// bindings of its selected members.
	objects []runtime.Object
}

// rolloutRow is one selected member.
type rolloutRow struct {
	cluster, released, holds, applied, healthy, state, reason string
	// fullReason is reason untruncated and lastApplied when the member last applied, for -o wide.
	fullReason, lastApplied string
}

func readRollout(ctx context.Context, c client.Client, name string) (*rolloutView, error) {
	b, err := getBaseline(ctx, c, name)
	if err != nil {
		return nil, err
	}
	members, err := selectedMembers(ctx, c, b)
	if err != nil {
		return nil, err
	}
	bindings, err := bindingsOf(ctx, c, b.Name)
	if err != nil {
		return nil, err
	}
	v := &rolloutView{baseline: b, objects: []runtime.Object{b}}
	rev := b.Status.Revision
	for _, mc := range members {
		bb := bindings[mc.Name]
		if bb == nil {
			v.members = append(v.members, rolloutRow{cluster: mc.Name, released: "no", holds: "-", applied: "-", healthy: "-",
				state: stateWaiting, reason: "no BaselineBinding yet"})
			continue
		}
		row := rolloutRow{
			cluster:  mc.Name,
			released: "no",
			holds:    orDash(bb.Status.Revision),
			applied:  conditionStatus(bb.Status.Conditions, fleetv1alpha1.ConditionApplied),
			healthy:  conditionStatus(bb.Status.Conditions, fleetv1alpha1.ConditionHealthy),
			state:    bindingState(rev, bb),
		}
		v.objects = append(v.objects, bb)
		if t := bb.Status.LastAppliedTime; t != nil {
			row.lastApplied = t.UTC().Format(time.RFC3339)
		}
		if rev != "" && bb.Spec.Revision == rev {
			row.released = "yes"
		}
		if bb.Done(rev) {
			v.updated++
		}
		if row.state != stateOK {
			row.reason = rolloutReason(bb, rev, row.state, maxProblemLen)
			row.fullReason = rolloutReason(bb, rev, row.state, 0)
		}
		v.members = append(v.members, row)
	}
	return v, nil
}

// rolloutReason explains a member that is not done: its first problem, else what it waits
// for.
func rolloutReason(bb *fleetv1alpha1.BaselineBinding, revision, state string, limit int) string {
	if p := bindingProblems(bb); len(p) > 0 {
		return conditionText(p[0], limit)
	}
	applied := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionApplied)
	switch state {
	case stateApplying:
		if bb.Status.Revision != revision {
			return "released; not applied yet"
		}
		if c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionHealthy); c != nil && c.Status != metav1.ConditionTrue {
			return conditionText(c, limit)
		}
	case stateWaiting, statePaused:
		if applied != nil && (applied.Reason == fleetv1alpha1.ReasonWaitingForRollout || applied.Reason == fleetv1alpha1.ReasonPaused) {
			return conditionText(applied, limit)
		}
	}
	return ""
}

// observed reports whether the controller has looked at the Baseline's current spec and
// rendered a revision; before that, the status describes an older spec.
func (v *rolloutView) observed() bool {
	b := v.baseline
	return b.Status.Revision != "" && b.Status.ObservedGeneration >= b.Generation
}

func (v *rolloutView) stalled() *metav1.Condition {
	if !v.observed() {
		return nil
	}
	c := meta.FindStatusCondition(v.baseline.Status.Conditions, fleetv1alpha1.ConditionStalled)
	if c == nil || c.Status != metav1.ConditionTrue {
		return nil
	}
	return c
}

func (v *rolloutView) complete() bool {
	return v.observed() && v.stalled() == nil && v.updated == len(v.members)
}

// finished: a watch has nothing more to wait for.
func (v *rolloutView) finished() bool { return v.complete() || v.stalled() != nil }

// err is the command's result for this view: a stalled rollout fails.
func (v *rolloutView) err() error {
	if c := v.stalled(); c != nil {
		return fmt.Errorf("rollout of baseline %q stalled: %s", v.baseline.Name, conditionText(c, 0))
	}
	return nil
}

func (v *rolloutView) progress() string {
	return fmt.Sprintf("%d of %s updated", v.updated, plural(len(v.members), "member"))
}

// String is the block printed for the view: a header, a row per member and the summary line.
func (v *rolloutView) String() string { return v.text(false) }

// text is String, with -o wide's extra column and full reasons when wide.
func (v *rolloutView) text(wide bool) string {
	var w strings.Builder
	b := v.baseline
	fmt.Fprintf(&w, "Baseline %s, revision %s: %s\n", b.Name, orDash(b.Status.Revision), v.progress())
	if len(v.members) > 0 {
		header := []string{"CLUSTER", "RELEASED", "HOLDS", "APPLIED", "HEALTHY", "STATE"}
		if wide {
			header = append(header, "LAST APPLIED")
		}
		rows := [][]string{append(header, "REASON/MESSAGE")}
		for _, m := range v.members {
			row := []string{m.cluster, m.released, m.holds, m.applied, m.healthy, m.state}
			reason := m.reason
			if wide {
				row, reason = append(row, orDash(m.lastApplied)), m.fullReason
			}
			rows = append(rows, append(row, reason))
		}
		writeTable(&w, rows)
	}
	switch {
	case b.Status.Revision == "":
		fmt.Fprintf(&w, "Waiting for fleet-controller to render baseline %q...\n", b.Name)
	case !v.observed():
		fmt.Fprintf(&w, "Waiting for fleet-controller to observe generation %d of baseline %q...\n", b.Generation, b.Name)
	case v.stalled() != nil:
		fmt.Fprintf(&w, "rollout of revision %s stalled: %s\n", b.Status.Revision, conditionText(v.stalled(), 0))
	case v.complete():
		fmt.Fprintf(&w, "rollout of revision %s complete: %s\n", b.Status.Revision, plural(len(v.members), "member"))
	case b.Spec.Paused:
		fmt.Fprintf(&w, "Waiting for rollout: %s (the Baseline is paused)...\n", v.progress())
	default:
		fmt.Fprintf(&w, "Waiting for rollout: %s...\n", v.progress())
	}
	return w.String()
}
