package propagation

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flotilla-dev/flotilla/clusters"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/plan"
)

func TestHowToWrite(t *testing.T) {
	mine := plan.Object{Placement: plan.Mine, UID: "u1"}
	rec := fleetv1alpha1.InventoryEntry{UID: "u1", ResourceVersion: "7", ContentHash: "c1", Hash: "h1"}
	oldRec := fleetv1alpha1.InventoryEntry{UID: "u1", ResourceVersion: "7", Hash: "h1"} // recorded before content hashes
	same, statusWritten, edited := liveVersion{"7", "c1"}, liveVersion{"8", "c1"}, liveVersion{"9", "c2"}
	for _, tc := range []struct {
		name string
		o    plan.Object
		live liveVersion
		rec  fleetv1alpha1.InventoryEntry
		ok   bool
		hash string
		want write
	}{
		{name: "missing is created without a diff", o: plan.Object{Placement: plan.Missing}, want: writeCreate},
		{name: "unchanged since the last apply is skipped", o: mine, live: same, rec: rec, ok: true, hash: "h1", want: writeSkip},
		{name: "only the status written since is skipped", o: mine, live: statusWritten, rec: rec, ok: true, hash: "h1", want: writeSkip},
		{name: "a changed Baseline is applied without a diff", o: mine, live: same, rec: rec, ok: true, hash: "h2", want: writeUpdate},
		{name: "a changed Baseline over a status write is applied without a diff", o: mine, live: statusWritten, rec: rec, ok: true, hash: "h2", want: writeUpdate},
		{name: "a member change is diffed", o: mine, live: edited, rec: rec, ok: true, hash: "h1", want: writeCheck},
		{name: "a member change and a Baseline change are diffed", o: mine, live: edited, rec: rec, ok: true, hash: "h2", want: writeCheck},
		{name: "nothing recorded is diffed", o: mine, live: same, hash: "h1", want: writeCheck},
		{name: "a record of neither content nor resourceVersion is diffed", o: mine, live: same, rec: fleetv1alpha1.InventoryEntry{UID: "u1", Hash: "h1"}, ok: true, hash: "h1", want: writeCheck},
		{name: "an old record with the same resourceVersion is skipped", o: mine, live: same, rec: oldRec, ok: true, hash: "h1", want: writeSkip},
		{name: "an old record with another resourceVersion is diffed", o: mine, live: statusWritten, rec: oldRec, ok: true, hash: "h1", want: writeCheck},
		{name: "another object of the same name is diffed", o: plan.Object{Placement: plan.Mine, UID: types.UID("u2")}, live: same, rec: rec, ok: true, hash: "h1", want: writeCheck},
		{name: "an adopted object is diffed", o: plan.Object{Placement: plan.Adopt, UID: "u1"}, live: same, rec: rec, ok: true, hash: "h1", want: writeCheck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := howToWrite(tc.o, tc.live, tc.rec, tc.ok, tc.hash); got != tc.want {
				t.Errorf("howToWrite = %s, want %s", got, tc.want)
			}
		})
	}
}

// contentHash ignores what status writers change and sees every other writer: a status
// write, and the member cache's trimming, leave it alone; a label another writer removes
// from Flotilla's fields, an edit by another manager, a deletion change it.
func TestContentHash(t *testing.T) {
	own := metav1.ManagedFieldsEntry{Manager: fleetv1alpha1.FieldManager, Operation: metav1.ManagedFieldsOperationApply, APIVersion: "v1",
		FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:labels":{"f:team":{}}},"f:spec":{"f:hard":{"f:pods":{}}}}`)}
	status := metav1.ManagedFieldsEntry{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
		Subresource: "status", FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:status":{"f:used":{}}}`)}
	object := func(rv string, managed ...metav1.ManagedFieldsEntry) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "q", ResourceVersion: rv, ManagedFields: managed}}
	}
	applied := contentHash(object("7", own))

	statusNow := status.DeepCopy()
	statusNow.FieldsV1 = metav1.NewFieldsV1(`{"f:status":{"f:hard":{},"f:used":{}}}`)
	if got := contentHash(object("8", own, *statusNow)); got != applied {
		t.Errorf("a status write changed the content hash")
	}
	if got := contentHash(&metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "8",
		ManagedFields: clusters.TrimManagedFields([]metav1.ManagedFieldsEntry{own, status})}}); got != applied {
		t.Errorf("the member cache's copy hashes differently from the API server's")
	}
	labelRemoved := own.DeepCopy()
	labelRemoved.FieldsV1 = metav1.NewFieldsV1(`{"f:spec":{"f:hard":{"f:pods":{}}}}`)
	edit := metav1.ManagedFieldsEntry{Manager: "kubectl-edit", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
		FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:hard":{"f:pods":{}}}}`)}
	deleting := object("9", own)
	deleting.DeletionTimestamp = &metav1.Time{}
	for name, obj := range map[string]*metav1.PartialObjectMetadata{
		"a label of Flotilla's removed": object("9", *labelRemoved),
		"a field edited by another":     object("9", *labelRemoved, edit),
		"being deleted":                 deleting,
	} {
		if contentHash(obj) == applied {
			t.Errorf("%s: the content hash did not change", name)
		}
	}
}
