package propagation

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/plan"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

func fieldsEntry(manager string, op metav1.ManagedFieldsOperationType, subresource, fields string) metav1.ManagedFieldsEntry {
	return metav1.ManagedFieldsEntry{Manager: manager, Operation: op, APIVersion: "networking.k8s.io/v1", Subresource: subresource,
		FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(fields)}
}

// The fields others own move into Flotilla's apply entry; what else their entries hold
// (metadata) stays theirs, an entry left empty goes, subresources are untouched.
func TestTakeOverEntries(t *testing.T) {
	np := &unstructured.Unstructured{}
	np.SetAPIVersion("networking.k8s.io/v1")
	np.SetKind("NetworkPolicy")
	d := render.Document{Object: np}
	now := metav1.NewTime(time.Date(2026, 11, 30, 14, 0, 0, 0, time.UTC))
	const (
		ownFields = `{"f:spec":{"f:podSelector":{},"f:policyTypes":{}}}`
		update    = metav1.ManagedFieldsOperationUpdate
		apply     = metav1.ManagedFieldsOperationApply
	)
	tests := []struct {
		name    string
		managed []metav1.ManagedFieldsEntry
		want    []metav1.ManagedFieldsEntry
	}{
		{
			name: "an edit's spec moves, its annotation stays; an apply's entry left empty goes",
			managed: []metav1.ManagedFieldsEntry{
				fieldsEntry(fleetv1alpha1.FieldManager, apply, "", ownFields),
				fieldsEntry("kubectl-edit", update, "", `{"f:metadata":{"f:annotations":{"f:note":{}}},"f:spec":{"f:ingress":{}}}`),
				fieldsEntry("tenant", apply, "", `{"f:spec":{"f:egress":{}}}`),
				fieldsEntry("someone", update, "status", `{"f:status":{}}`),
			},
			want: []metav1.ManagedFieldsEntry{
				fieldsEntry("kubectl-edit", update, "", `{"f:metadata":{"f:annotations":{"f:note":{}}}}`),
				fieldsEntry("someone", update, "status", `{"f:status":{}}`),
				func() metav1.ManagedFieldsEntry {
					e := fieldsEntry(fleetv1alpha1.FieldManager, apply, "", `{"f:spec":{"f:egress":{},"f:ingress":{},"f:podSelector":{},"f:policyTypes":{}}}`)
					e.Time = &now
					return e
				}(),
			},
		},
		{
			name:    "without an entry of its own, Flotilla gets one",
			managed: []metav1.ManagedFieldsEntry{fieldsEntry("kubectl-create", update, "", `{"f:spec":{"f:ingress":{}}}`)},
			want: []metav1.ManagedFieldsEntry{func() metav1.ManagedFieldsEntry {
				e := fieldsEntry(fleetv1alpha1.FieldManager, apply, "", `{"f:spec":{"f:ingress":{}}}`)
				e.Time = &now
				return e
			}()},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			foreign, err := plan.ForeignFields(d, tc.managed)
			must(t, err)
			got, err := takeOverEntries(tc.managed, foreign, "networking.k8s.io/v1", now)
			must(t, err)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("managedFields (-want +got):\n%s", diff)
			}
			// Taken over, nothing is foreign any more.
			if again, err := plan.ForeignFields(d, got); err != nil || len(again) > 0 {
				t.Errorf("after the takeover ForeignFields = %v, %v; want nothing", again, err)
			}
		})
	}
}
