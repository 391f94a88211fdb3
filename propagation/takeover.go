package propagation

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/fluxcd/pkg/ssa"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/plan"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// takeOver makes Flotilla's apply entry own the foreign content (plan.ForeignFields) of
// the member's copy of d, so that the server-side apply which must follow removes whatever
// of it the Baseline does not set: an apply removes the fields its manager owned and no
// longer sends, and only those. It changes nothing but metadata.managedFields — the fields
// move out of the other managers' entries (an entry left empty goes) into Flotilla's — with
// a JSON patch guarded by the resourceVersion it decided on: the object is read from the
// API server (the member cache holds trimmed managedFields), and a writer in between makes
// it read and decide again. It returns what it took; nothing when the object is gone or
// carries nothing foreign any more.
func (a *applier) takeOver(ctx context.Context, d render.Document) ([]plan.Foreign, error) {
	var taken []plan.Foreign
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		taken = nil
		live := &metav1.PartialObjectMetadata{}
		live.SetGroupVersionKind(d.Object.GroupVersionKind())
		if err := a.member.Get(ctx, client.ObjectKeyFromObject(d.Object), live); err != nil {
			if apierrors.IsNotFound(err) {
				return nil // the apply creates it
			}
			return err
		}
		foreign, err := plan.ForeignFields(d, live.GetManagedFields())
		if err != nil || len(foreign) == 0 {
			return err
		}
		entries, err := takeOverEntries(live.GetManagedFields(), foreign, d.Object.GetAPIVersion(), metav1.Now())
		if err != nil {
			return err
		}
		patch, err := json.Marshal([]jsonPatchOp{
			// Replacing the resourceVersion with the one read makes the write conditional.
			{Op: "replace", Path: "/metadata/resourceVersion", Value: live.GetResourceVersion()},
			{Op: "replace", Path: "/metadata/managedFields", Value: entries},
		})
		if err != nil {
			return err
		}
		if err := a.member.Patch(ctx, live, client.RawPatch(types.JSONPatchType, patch)); err != nil {
			return err
		}
		taken = foreign
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("take over fields others set in %s: %w", render.ObjectRef(d.Object), err)
	}
	return taken, nil
}

type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// takeOverEntries rewrites managed so that Flotilla's apply entry (at apiVersion, the
// version the apply uses; created if missing) holds the fields of foreign besides its own,
// and the entries foreign names hold them no more.
func takeOverEntries(managed []metav1.ManagedFieldsEntry, foreign []plan.Foreign, apiVersion string, now metav1.Time) ([]metav1.ManagedFieldsEntry, error) {
	type who struct {
		manager string
		op      metav1.ManagedFieldsOperationType
	}
	takenFrom := map[who]*fieldpath.Set{}
	all := &fieldpath.Set{}
	for _, f := range foreign {
		takenFrom[who{f.Manager, f.Operation}] = f.Fields
		all = all.Union(f.Fields)
	}
	own := metav1.ManagedFieldsEntry{Manager: fleetv1alpha1.FieldManager, Operation: metav1.ManagedFieldsOperationApply, FieldsType: "FieldsV1"}
	ownFields := &fieldpath.Set{}
	out := make([]metav1.ManagedFieldsEntry, 0, len(managed)+1)
	for _, e := range managed {
		isOwn := e.Manager == fleetv1alpha1.FieldManager && e.Operation == metav1.ManagedFieldsOperationApply && e.Subresource == ""
		taken := takenFrom[who{e.Manager, e.Operation}]
		if !isOwn && (taken == nil || e.Subresource != "" || e.APIVersion != apiVersion) {
			out = append(out, e)
			continue
		}
		fields, err := entryFields(e)
		if err != nil {
			return nil, err
		}
		if isOwn {
			own, ownFields = e, fields
			continue
		}
		if rest := fields.Difference(taken); !rest.Empty() {
			if e.FieldsV1, err = toFieldsV1(rest); err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	}
	// Flotilla's entry is at the apply's version: the apply would convert it there anyway.
	own.APIVersion, own.Time = apiVersion, &now
	fields, err := toFieldsV1(ownFields.Union(all))
	if err != nil {
		return nil, err
	}
	own.FieldsV1 = fields
	return append(out, own), nil
}

func entryFields(e metav1.ManagedFieldsEntry) (*fieldpath.Set, error) {
	if e.FieldsV1 == nil {
		return &fieldpath.Set{}, nil
	}
	s, err := ssa.FieldsToSet(*e.FieldsV1)
	if err != nil {
		return nil, fmt.Errorf("managedFields entry of %s (%s): %w", e.Manager, e.Operation, err)
	}
	return &s, nil
}

func toFieldsV1(s *fieldpath.Set) (*metav1.FieldsV1, error) {
	f, err := ssa.SetToFields(*s)
	if err != nil {
		return nil, err
	}
	return &f, nil
}

// foreignRemoved is the drift message of an object whose foreign content an apply removed.
func foreignRemoved(subject string, taken []plan.Foreign) string {
	return fmt.Sprintf("%s corrected: took over and removed what others set (%s)", subject, plan.DescribeForeign(taken))
}
