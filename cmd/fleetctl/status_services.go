package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// maxServiceProblemLen keeps one problem on about one line; the full text is in
// `kubectl describe exportedservice`.
const maxServiceProblemLen = 200

func renderServices(ctx context.Context, in statusInput, w io.Writer) error {
	var list fleetv1alpha1.ExportedServiceList
	if err := in.hub.List(ctx, &list); err != nil {
		if meta.IsNoMatchError(err) {
			return fmt.Errorf("the Flotilla API %s is not installed on the hub", fleetv1alpha1.GroupVersion)
		}
		return fmt.Errorf("list exportedservices: %w", err)
	}
	writeServices(w, list.Items, in.wide)
	return nil
}

// writeServices prints the summary line, one row per exported Service (the hub's
// ExportedService catalog) and the problems behind rows that are not synced.
func writeServices(w io.Writer, services []fleetv1alpha1.ExportedService, wide bool) {
	if len(services) == 0 {
		fmt.Fprintf(w, "No Services exported. Export one with: kubectl annotate service NAME %s=true\n", fleetv1alpha1.AnnotationExport)
		return
	}
	services = slices.Clone(services)
	slices.SortFunc(services, func(a, b fleetv1alpha1.ExportedService) int {
		return strings.Compare(sourceText(a.Spec.Source), sourceText(b.Spec.Source))
	})
	synced := 0
	for _, es := range services {
		if meta.IsStatusConditionTrue(es.Status.Conditions, fleetv1alpha1.ConditionSynced) {
			synced++
		}
	}
	fmt.Fprintf(w, "Services: %d exported (%d synced)\n", len(services), synced)
	rows := [][]string{{"SOURCE", "MODE", "PORTS", "ENDPOINTS", "MIRRORED INTO", "STATUS"}}
	for _, es := range services {
		st := es.Status
		rows = append(rows, []string{
			sourceText(es.Spec.Source),
			orDash(string(st.AddressMode)),
			portsText(st.Ports),
			fmt.Sprintf("%d/%d", st.ReadyEndpoints, st.Endpoints),
			orDash(strings.Join(st.MirroredInto, ",")),
			serviceState(&es),
		})
	}
	writeTable(w, rows)

	if problems := serviceProblems(services, problemLimit(wide, maxServiceProblemLen)); len(problems) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Problems:")
		for _, p := range problems {
			fmt.Fprintln(w, "  "+p)
		}
	}
}

// sourceText names an exported Service as cluster/namespace/name.
func sourceText(s fleetv1alpha1.ServiceReference) string {
	return s.Cluster + "/" + s.Namespace + "/" + s.Name
}

// portsText lists ports as 80/TCP,443/TCP, the way kubectl get services does.
func portsText(ports []fleetv1alpha1.ExportedPort) string {
	if len(ports) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(ports))
	for _, p := range ports {
		text := strconv.Itoa(int(p.Port))
		if p.Protocol != "" {
			text += "/" + string(p.Protocol)
		}
		parts = append(parts, text)
	}
	return strings.Join(parts, ",")
}

// serviceState is the STATUS cell: a conflict first (it is what a person must act on),
// else the reason of the Synced condition.
func serviceState(es *fleetv1alpha1.ExportedService) string {
	if conflicts := sortedConflicts(es); len(conflicts) > 0 {
		n := len(conflicts) + int(es.Status.ConflictsOmitted)
		text := "Conflict in " + conflicts[0].Cluster
		if n > 1 {
			text += fmt.Sprintf(" (+%d more)", n-1)
		}
		return text
	}
	if c := meta.FindStatusCondition(es.Status.Conditions, fleetv1alpha1.ConditionSynced); c != nil {
		return c.Reason
	}
	return "-"
}

// serviceProblems lists, per exported Service, each conflict with the member it is in, a
// Synced=False condition that the conflicts do not already explain (an invalid export, an
// unreachable source), and the source addresses left out of the mirrors.
func serviceProblems(services []fleetv1alpha1.ExportedService, limit int) []string {
	var out []string
	for _, es := range services {
		src := sourceText(es.Spec.Source)
		conflicts := sortedConflicts(&es)
		c := meta.FindStatusCondition(es.Status.Conditions, fleetv1alpha1.ConditionSynced)
		if c != nil && c.Status == metav1.ConditionFalse && (len(conflicts) == 0 || c.Reason != fleetv1alpha1.ReasonNameClash) {
			out = append(out, fmt.Sprintf("%s: %s", src, conditionText(c, limit)))
		}
		for _, mc := range conflicts {
			out = append(out, fmt.Sprintf("%s in %s: %s", src, mc.Cluster, conditionText(&metav1.Condition{
				Reason: fleetv1alpha1.ReasonNameClash, Message: mc.Message,
			}, limit)))
		}
		if es.Status.ConflictsOmitted > 0 {
			out = append(out, fmt.Sprintf("%s: and %d more conflicts", src, es.Status.ConflictsOmitted))
		}
		if len(es.Status.Refused) > 0 {
			refused := strings.Join(es.Status.Refused, ", ")
			if es.Status.RefusedOmitted > 0 {
				refused += fmt.Sprintf(" and %d more", es.Status.RefusedOmitted)
			}
			out = append(out, fmt.Sprintf("%s: RefusedAddresses: not mirrored: %s", src, refused))
		}
	}
	return out
}

// sortedConflicts are the conflicts of es by member name.
func sortedConflicts(es *fleetv1alpha1.ExportedService) []fleetv1alpha1.MirrorConflict {
	conflicts := slices.Clone(es.Status.Conflicts)
	slices.SortFunc(conflicts, func(a, b fleetv1alpha1.MirrorConflict) int { return strings.Compare(a.Cluster, b.Cluster) })
	return conflicts
}
