package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// maxBindingProblemLen keeps one problem on about one line; the full text is in
// `kubectl describe baselinebinding`.
const maxBindingProblemLen = 200

func renderBaselines(ctx context.Context, in statusInput, w io.Writer) error {
	var baselines fleetv1alpha1.BaselineList
	if err := in.hub.List(ctx, &baselines); err != nil {
		if meta.IsNoMatchError(err) {
			return fmt.Errorf("the Flotilla API %s is not installed on the hub", fleetv1alpha1.GroupVersion)
		}
		return fmt.Errorf("list baselines: %w", err)
	}
	if len(baselines.Items) == 0 {
		fmt.Fprintln(w, "No baselines. A Baseline puts manifests into every selected member: kubectl explain baseline.spec")
		return nil
	}
	var bindings fleetv1alpha1.BaselineBindingList
	if err := in.hub.List(ctx, &bindings); err != nil {
		return fmt.Errorf("list baselinebindings: %w", err)
	}
	var clusters fleetv1alpha1.MemberClusterList
	if err := in.hub.List(ctx, &clusters); err != nil {
		return fmt.Errorf("list memberclusters: %w", err)
	}
	return writeBaselines(w, baselines.Items, bindings.Items, clusters.Items, in.wide)
}

// writeBaselines prints the summary line, one row per Baseline, the baselines × clusters
// matrix and the problems behind its upper-case cells.
// wide (-o wide) adds the counts and settings the narrow table leaves out and prints
// problems in full.
func writeBaselines(w io.Writer, baselines []fleetv1alpha1.Baseline, bindings []fleetv1alpha1.BaselineBinding, clusters []fleetv1alpha1.MemberCluster, wide bool) error {
	baselines = slices.Clone(baselines)
	slices.SortFunc(baselines, func(a, b fleetv1alpha1.Baseline) int { return strings.Compare(a.Name, b.Name) })
	clusters = slices.Clone(clusters)
	slices.SortFunc(clusters, func(a, b fleetv1alpha1.MemberCluster) int { return strings.Compare(a.Name, b.Name) })
	byPair := map[[2]string]*fleetv1alpha1.BaselineBinding{}
	for i := range bindings {
		bb := &bindings[i]
		byPair[[2]string{bb.Spec.BaselineName, bb.Spec.ClusterName}] = bb
	}

	ready := 0
	for _, b := range baselines {
		if meta.IsStatusConditionTrue(b.Status.Conditions, fleetv1alpha1.ConditionReady) {
			ready++
		}
	}
	fmt.Fprintf(w, "Baselines: %d (%d ready, %d not ready)\n", len(baselines), ready, len(baselines)-ready)
	header := []string{"NAME", "READY", "REVISION", "SELECTED", "APPLIED", "HEALTHY", "FAILED", "DRIFTED", "CONFLICTED"}
	if wide {
		header = append(header, "UNREACHABLE", "POLICY", "PAUSED")
	}
	rows := [][]string{header}
	for _, b := range baselines {
		s := b.Status
		row := []string{b.Name, conditionStatus(s.Conditions, fleetv1alpha1.ConditionReady), orDash(s.Revision),
			itoa(s.Selected), itoa(s.Applied), itoa(s.Healthy), itoa(s.Failed), itoa(s.Drifted), itoa(s.Conflicted)}
		if wide {
			row = append(row, itoa(s.Unreachable), orDash(string(b.Spec.Policy)), strconv.FormatBool(b.Spec.Paused))
		}
		rows = append(rows, row)
	}
	writeTable(w, rows)

	fmt.Fprintln(w)
	if len(clusters) == 0 {
		fmt.Fprintln(w, "No member clusters to apply them to.")
	} else {
		header := []string{"BASELINE"}
		for _, mc := range clusters {
			header = append(header, mc.Name)
		}
		matrix := [][]string{header}
		for _, b := range baselines {
			row := []string{b.Name}
			for i := range clusters {
				cell, err := matrixCell(&b, &clusters[i], byPair[[2]string{b.Name, clusters[i].Name}])
				if err != nil {
					return err
				}
				row = append(row, cell)
			}
			matrix = append(matrix, row)
		}
		writeTable(w, matrix)
	}

	if problems := baselineProblems(baselines, byPair, clusters, problemLimit(wide, maxBindingProblemLen)); len(problems) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Problems:")
		for _, p := range problems {
			fmt.Fprintln(w, "  "+p)
		}
	}
	return nil
}

// matrixCell is the state of b in one member: from its binding when there is one; a
// selected member without a binding yet is waiting for the controller.
func matrixCell(b *fleetv1alpha1.Baseline, mc *fleetv1alpha1.MemberCluster, bb *fleetv1alpha1.BaselineBinding) (string, error) {
	if bb != nil {
		return bindingState(b.Status.Revision, bb), nil
	}
	selected, err := selects(b, mc)
	if err != nil || !selected {
		return stateNotSelected, err
	}
	return stateWaiting, nil
}

// baselineProblems lists, per Baseline, a Stalled condition (sources that do not render
// stop the Baseline before any binding reports anything), then every binding condition that
// needs attention: Applied=False (except while waiting for the rollout, which is normal),
// Conflict=True and Drifted=True.
func baselineProblems(baselines []fleetv1alpha1.Baseline, byPair map[[2]string]*fleetv1alpha1.BaselineBinding, clusters []fleetv1alpha1.MemberCluster, limit int) []string {
	var out []string
	for _, b := range baselines {
		if c := meta.FindStatusCondition(b.Status.Conditions, fleetv1alpha1.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue {
			out = append(out, fmt.Sprintf("%s: %s", b.Name, conditionText(c, limit)))
		}
		names := make([]string, 0, len(clusters))
		for _, mc := range clusters {
			names = append(names, mc.Name)
		}
		// Bindings of clusters that no longer exist still say something about the Baseline.
		for pair := range byPair {
			if pair[0] == b.Name && !slices.Contains(names, pair[1]) {
				names = append(names, pair[1])
			}
		}
		slices.Sort(names)
		for _, cluster := range names {
			bb := byPair[[2]string{b.Name, cluster}]
			if bb == nil {
				continue
			}
			for _, c := range bindingProblems(bb) {
				out = append(out, fmt.Sprintf("%s/%s: %s", b.Name, cluster, conditionText(c, limit)))
			}
		}
	}
	return out
}

func bindingProblems(bb *fleetv1alpha1.BaselineBinding) []*metav1.Condition {
	var out []*metav1.Condition
	conds := bb.Status.Conditions
	if c := meta.FindStatusCondition(conds, fleetv1alpha1.ConditionApplied); c != nil && c.Status == metav1.ConditionFalse &&
		c.Reason != fleetv1alpha1.ReasonWaitingForRollout {
		out = append(out, c)
	}
	for _, t := range []string{fleetv1alpha1.ConditionConflict, fleetv1alpha1.ConditionDrifted} {
		if c := meta.FindStatusCondition(conds, t); c != nil && c.Status == metav1.ConditionTrue {
			out = append(out, c)
		}
	}
	return out
}

// writeTable prints rows as aligned columns, without the padding tabwriter leaves after the
// last cell.
func writeTable(w io.Writer, rows [][]string) {
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
	for line := range strings.Lines(table.String()) {
		fmt.Fprintln(w, strings.TrimRight(line, " \n"))
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// problemLimit is how long a problem line may be: unlimited with -o wide.
func problemLimit(wide bool, limit int) int {
	if wide {
		return 0
	}
	return limit
}
