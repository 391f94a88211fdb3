package clusters

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func TestTrimManagedFields(t *testing.T) {
	fields := metav1.NewFieldsV1(`{"f:spec":{}}`)
	own := metav1.ManagedFieldsEntry{Manager: fleetv1alpha1.FieldManager, Operation: metav1.ManagedFieldsOperationApply, FieldsV1: fields}
	ownStub := metav1.ManagedFieldsEntry{Manager: fleetv1alpha1.FieldManager, Operation: metav1.ManagedFieldsOperationApply,
		FieldsV1: metav1.NewFieldsV1(`"sha256:0b8881c64b5e3817"`)}
	edit := metav1.ManagedFieldsEntry{Manager: "kubectl-edit", Operation: metav1.ManagedFieldsOperationUpdate, FieldsV1: fields}
	status := metav1.ManagedFieldsEntry{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, Subresource: "status", FieldsV1: fields}
	tests := []struct {
		name    string
		managed []metav1.ManagedFieldsEntry
		want    []metav1.ManagedFieldsEntry
	}{
		{name: "applied by Flotilla alone: its entry with a digest of its fields", managed: []metav1.ManagedFieldsEntry{own, status}, want: []metav1.ManagedFieldsEntry{ownStub}},
		{name: "written by others too: their entries whole", managed: []metav1.ManagedFieldsEntry{own, edit, status}, want: []metav1.ManagedFieldsEntry{ownStub, edit}},
		{name: "never applied by Flotilla", managed: []metav1.ManagedFieldsEntry{edit}, want: []metav1.ManagedFieldsEntry{edit}},
		{name: "only subresources", managed: []metav1.ManagedFieldsEntry{status}, want: nil},
		{name: "trimmed already: unchanged", managed: []metav1.ManagedFieldsEntry{ownStub, edit}, want: []metav1.ManagedFieldsEntry{ownStub, edit}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{ManagedFields: tc.managed,
				Labels: map[string]string{fleetv1alpha1.LabelManagedBy: fleetv1alpha1.ManagedByValue}}}
			out, err := trimManagedFields(obj)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, out.(*metav1.PartialObjectMetadata).ManagedFields); diff != "" {
				t.Errorf("managedFields (-want +got):\n%s", diff)
			}
		})
	}
}

// The digest of Flotilla's own fields changes when they do: a field of its own that someone
// removed shows in nothing else the cache keeps.
func TestOwnFieldsDigestFollowsTheFields(t *testing.T) {
	own := func(fields string) []metav1.ManagedFieldsEntry {
		return TrimManagedFields([]metav1.ManagedFieldsEntry{{Manager: fleetv1alpha1.FieldManager,
			Operation: metav1.ManagedFieldsOperationApply, FieldsV1: metav1.NewFieldsV1(fields)}})
	}
	all, fewer := own(`{"f:metadata":{"f:labels":{"f:a":{}}},"f:spec":{}}`), own(`{"f:spec":{}}`)
	if cmp.Equal(all, fewer) {
		t.Errorf("one field fewer, same digest: %s", all[0].FieldsV1.GetRawString())
	}
	if again := own(`{"f:metadata":{"f:labels":{"f:a":{}}},"f:spec":{}}`); !cmp.Equal(all, again) {
		t.Errorf("the same fields, digests %s and %s", all[0].FieldsV1.GetRawString(), again[0].FieldsV1.GetRawString())
	}
}
