package clusters

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// trimManagedFields is the default transform of member caches (the metadata of objects
// Flotilla applied, through KindSource). Of managedFields it keeps what tells a controller
// that someone other than Flotilla's own server-side apply wrote an object's content —
// propagation's Enforce policy takes such content over and removes it — and drops what is
// most of an object's metadata in bytes (TrimManagedFields). An object only Flotilla wrote
// thus carries one small entry; an object without Flotilla's managed-by label (a Namespace
// the perNamespace fan-out watches) none. Kinds registered with their own Transform are not
// affected.
func trimManagedFields(in any) (any, error) {
	obj, err := meta.Accessor(in)
	if err != nil || obj.GetManagedFields() == nil {
		return in, nil
	}
	if obj.GetLabels()[fleetv1alpha1.LabelManagedBy] != fleetv1alpha1.ManagedByValue {
		// Not Flotilla's (every Namespace of a member, say): nothing to look at.
		obj.SetManagedFields(nil)
		return in, nil
	}
	obj.SetManagedFields(TrimManagedFields(obj.GetManagedFields()))
	return in, nil
}

// ownDigestPrefix starts what stands in a trimmed entry for the fields of Flotilla's own
// apply: a JSON string, never a field set, so that nothing mistakes it for one.
const ownDigestPrefix = `"sha256:`

// TrimManagedFields is managedFields as member caches hold them: subresources' entries
// (status, scale: the control plane's) are dropped, and the fields of Flotilla's own apply
// entry are replaced by a digest of them. The digest still says whether what Flotilla owns
// changed — a field of its own removed or taken by another writer shrinks the set without
// touching anyone else's entry — at a few bytes instead of most of the metadata. Every
// other entry is kept whole. Trimming a trimmed list changes nothing, so the result of a
// read from the API server and of the cache compare equal.
func TrimManagedFields(entries []metav1.ManagedFieldsEntry) []metav1.ManagedFieldsEntry {
	var kept []metav1.ManagedFieldsEntry
	for _, e := range entries {
		switch {
		case e.Subresource != "":
			continue
		case e.Manager == fleetv1alpha1.FieldManager && e.Operation == metav1.ManagedFieldsOperationApply:
			e.FieldsV1 = ownFieldsDigest(e.FieldsV1)
		}
		kept = append(kept, e)
	}
	return kept
}

// ownFieldsDigest is the digest of Flotilla's own fields (16 hex digits of SHA-256) as a
// JSON string; a digest already is returned as it is.
func ownFieldsDigest(f *metav1.FieldsV1) *metav1.FieldsV1 {
	if f == nil || bytes.HasPrefix(f.GetRawBytes(), []byte(ownDigestPrefix)) {
		return f
	}
	sum := sha256.Sum256(f.GetRawBytes())
	return metav1.NewFieldsV1(ownDigestPrefix + hex.EncodeToString(sum[:8]) + `"`)
}
