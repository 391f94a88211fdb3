package servicesync

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/status"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// The catalog entry's status is computed here, from what a reconcile found, and written once
// by the status.Patcher the reconcile defers. Synced says whether the mirrors match the
// source; Ready is the kstatus summary (Stalled and Reconciling come from the patcher).

// recordSync records a sync: what is published, where, and what is in the way.
func recordSync(es *fleetv1alpha1.ExportedService, exp *mirror.Export, res *mirror.Resolved, out writeOutcome,
	refusing []fleetv1alpha1.ImportRefusal) {
	st := &es.Status
	st.AddressMode = res.Mode
	st.ExportTo = exp.ExportToText
	st.Ports = nil
	for _, p := range res.Ports {
		st.Ports = append(st.Ports, fleetv1alpha1.ExportedPort{Name: p.Name, Protocol: p.Protocol, Port: p.Port})
	}
	st.Endpoints, st.ReadyEndpoints = int32(len(res.Endpoints)), 0
	for _, e := range res.Endpoints {
		if e.Ready {
			st.ReadyEndpoints++
		}
	}
	// MirroredInto is not capped: it is bounded by the fleet's size, and the controller
	// reads it back (members that are away keep their place in it).
	st.MirroredInto = out.mirrored
	st.Refused, st.RefusedOmitted = status.Cap(res.Refused, fleetv1alpha1.MaxListed)
	st.ImportRefusedBy, st.ImportRefusedOmitted = status.Cap(refusing, fleetv1alpha1.MaxListed)
	st.Conflicts, st.ConflictsOmitted = status.Cap(out.conflicts, fleetv1alpha1.MaxListed)

	if len(out.conflicts) > 0 {
		msgs := make([]string, 0, len(out.conflicts))
		for _, c := range out.conflicts {
			msgs = append(msgs, c.Cluster+": "+c.Message)
		}
		summarize(es, metav1.ConditionFalse, fleetv1alpha1.ReasonNameClash,
			status.List(msgs, messageItems, "; ")+"; rename or remove the object in the way, or narrow the export with "+fleetv1alpha1.AnnotationExportTo)
		return
	}
	msg := fmt.Sprintf("mirrored into %d members", len(out.mirrored))
	if len(refusing) > 0 {
		names := make([]string, 0, len(refusing))
		for _, r := range refusing {
			names = append(names, r.Cluster+" ("+r.Reason+")")
		}
		msg += "; refused by " + status.List(names, messageItems, ", ")
	}
	if len(res.Refused) > 0 {
		msg += "; refused addresses: " + status.List(res.Refused, messageItems, ", ")
	}
	summarize(es, metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, msg)
}

// messageItems is how many conflicts or refused addresses the Synced message names; the
// status lists hold more, and both count the rest.
const messageItems = 10

// recordRefusal records an export that is not honoured: nothing is published.
func recordRefusal(es *fleetv1alpha1.ExportedService, invalid error) {
	es.Status = fleetv1alpha1.ExportedServiceStatus{Conditions: es.Status.Conditions, ObservedGeneration: es.Status.ObservedGeneration}
	status.Set(es, fleetv1alpha1.ConditionSynced, metav1.ConditionFalse, fleetv1alpha1.ReasonInvalidExport, invalid.Error())
	// Ready and Stalled follow from the Stalled error the reconcile returns.
}

// recordUnreachable records a source that stopped answering: its mirrors are kept, with
// their endpoints marked not ready.
func recordUnreachable(es *fleetv1alpha1.ExportedService, cluster string, since time.Time) {
	es.Status.ReadyEndpoints = 0
	summarize(es, metav1.ConditionFalse, fleetv1alpha1.ReasonClusterUnreachable, fmt.Sprintf(
		"source cluster %q unreachable since %s: mirrors kept with their endpoints marked not ready", cluster, since.UTC().Format(time.RFC3339)))
}

// summarize sets Synced and Ready alike.
func summarize(es *fleetv1alpha1.ExportedService, s metav1.ConditionStatus, reason, msg string) {
	status.Set(es, fleetv1alpha1.ConditionSynced, s, reason, msg)
	status.Set(es, fleetv1alpha1.ConditionReady, s, reason, msg)
}

// exportEvent names the changes of a catalog entry's status worth an event
// (status.WithEvents), each sent once, when it happens: an export conflict (an object
// Flotilla does not own in the mirror's place), an export refused as invalid, a source that
// became unreachable. Mirrors written into new members are sent by export (newlyMirrored);
// endpoint updates are not events: they are the steady work of a busy Service.
func exportEvent(_ status.Object, c metav1.Condition) (string, string, string) {
	if c.Type == fleetv1alpha1.ConditionSynced && c.Status == metav1.ConditionFalse {
		return corev1.EventTypeWarning, "Mirror", ""
	}
	return "", "", ""
}

// newlyMirrored lists the members of now that were not in before: where a mirror was just
// written for the first time (or again after it was removed).
func newlyMirrored(before, now []string) []string {
	var out []string
	for _, m := range now {
		if !slices.Contains(before, m) {
			out = append(out, m)
		}
	}
	return out
}

// mirroredKey is what the transition memory (status.Remember) holds of an export: the
// members it was last mirrored into, newer than a stale cached status can be.
const mirroredKey = "mirroredInto"

// mirroredBefore is where es was mirrored before this reconcile: what this process last
// recorded, else its status.
func mirroredBefore(es *fleetv1alpha1.ExportedService) []string {
	if v, ok := status.Recall(es.UID, mirroredKey); ok {
		if v == "" {
			return nil
		}
		return strings.Split(v, ",")
	}
	return es.Status.MirroredInto
}
