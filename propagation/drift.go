package propagation

import (
	"github.com/fluxcd/pkg/ssa"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/plan"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// Drift accounting: which writes of an Enforce apply corrected drift. Only those count for
// the binding's Drifted condition, the DriftCorrected event and
// flotilla_baseline_drift_corrections_total; the Baseline's own changes (a new object, a new
// revision) are writes, not corrections. The apply path calls driftOf once per object it
// wrote, so that every way of writing (create, update, check, take-over) is judged alike.

// correction is what one write did about drift.
type correction string

const (
	// notDrift: the write carried the Baseline's own change, or changed nothing.
	notDrift correction = ""
	// restored: the object was in the binding's inventory (Flotilla applied or adopted it)
	// and was gone from the member: someone deleted it, and the apply created it again.
	restored correction = "restored"
	// reverted: the member's copy differed from the Baseline although the Baseline had not
	// changed since the last apply: someone changed it, and the apply changed it back.
	reverted correction = "corrected"
	// tookOver: content other field managers added was taken over and removed
	// (takeover.go), whatever else changed.
	tookOver correction = "took over"
)

// writeFacts is what applying one object knew when it wrote it.
type writeFacts struct {
	// action is what the write did (ssa.CreatedAction, ConfiguredAction, UnchangedAction).
	action ssa.Action
	// inInventory: the binding's records hold the object with a UID, so Flotilla applied
	// (or adopted) it before.
	inInventory bool
	// sameDesired: the desired object is the one last applied (same hash), so a difference
	// in the member is someone else's change, not the Baseline's.
	sameDesired bool
	// taken: content of other managers the apply took over and removed.
	taken []plan.Foreign
}

// driftOf classifies one write. A create is a correction only of an object the inventory
// held (the first apply of an object, or of a new revision adding it, is not); an update
// only when the Baseline had not changed it, or when others' content was removed.
func driftOf(f writeFacts) correction {
	switch {
	case f.action == ssa.CreatedAction && f.inInventory:
		return restored
	case f.action != ssa.ConfiguredAction:
		return notDrift
	case len(f.taken) > 0:
		return tookOver
	case f.sameDesired:
		return reverted
	}
	return notDrift
}

// driftNote is the line naming a correction of obj in the Drifted condition and the event,
// empty when there was none.
func driftNote(doc render.Document, c correction, taken []plan.Foreign) string {
	ref := render.ObjectRef(doc.Object)
	switch c {
	case restored:
		return ref + " restored (it was deleted in the member)"
	case tookOver:
		return foreignRemoved(ref, taken)
	case reverted:
		return ref + " corrected"
	}
	return ""
}

// inInventory tells whether the record of an object (rec, found when ok) is of one Flotilla
// applied or adopted in the member: the inventory names it by UID.
func inInventory(rec fleetv1alpha1.InventoryEntry, ok bool) bool {
	return ok && rec.UID != ""
}
