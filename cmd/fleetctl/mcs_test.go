package main

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

var (
	serviceExportGVK   = schema.GroupVersionKind{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Kind: "ServiceExport"}
	serviceImportGVK   = schema.GroupVersionKind{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Kind: "ServiceImport"}
	clusterPropertyGVK = schema.GroupVersionKind{Group: "about.k8s.io", Version: "v1alpha1", Kind: "ClusterProperty"}
)

func object(gvk schema.GroupVersionKind, namespace, name string, fields map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: fields}
	if u.Object == nil {
		u.Object = map[string]any{}
	}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}

func list(gvk schema.GroupVersionKind) *unstructured.UnstructuredList {
	l := &unstructured.UnstructuredList{}
	l.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	return l
}

// TestRegisterInstallsMCSAndGrantsWhatTheHubWrites: --install-mcs-crds makes the member serve
// ServiceExport, ServiceImport and ClusterProperty, and the identity register gives the hub
// may do exactly what service sync does with them — read ServiceExports and write their
// status, write ServiceImports by name, write the cluster ID — and no more: it lists no
// ServiceImports and changes no other ClusterProperty.
func TestRegisterInstallsMCSAndGrantsWhatTheHubWrites(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{Members: 1})
	ctx := t.Context()
	out := mustFleetctl(t, registerArgs(f, "m1", f.Members[0], "--install-mcs-crds")...)
	for _, crd := range []string{"serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io", "clusterproperties.about.k8s.io"} {
		if !strings.Contains(out, "created CRD "+crd) {
			t.Errorf("register output does not say it created CRD %s:\n%s", crd, out)
		}
	}
	admin := adminClient(t, f.Members[0])
	hub := storedKubeconfigClient(t, adminClient(t, f.Hub), "m1")

	must(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}))
	must(t, admin.Create(ctx, object(serviceExportGVK, "shop", "web", nil)))

	// ServiceExports: read (the hub caches them) and status written.
	must(t, hub.List(ctx, list(serviceExportGVK)))
	se := object(serviceExportGVK, "shop", "web", nil)
	must(t, hub.Get(ctx, client.ObjectKeyFromObject(se), se))
	must(t, unstructured.SetNestedSlice(se.Object, []any{map[string]any{
		"type": "Valid", "status": "True", "reason": "Valid", "message": "ok", "lastTransitionTime": "2026-11-30T00:00:00Z"}}, "status", "conditions"))
	must(t, hub.Status().Update(ctx, se))
	if err := hub.Delete(ctx, se); !apierrors.IsForbidden(err) {
		t.Errorf("deleting a ServiceExport as the hub: %v, want Forbidden (it is the member's to make and remove)", err)
	}

	// ServiceImports: written by name, never listed.
	si := object(serviceImportGVK, "shop", "web", map[string]any{"spec": map[string]any{
		"type": "ClusterSetIP", "ports": []any{map[string]any{"name": "http", "protocol": "TCP", "port": int64(80)}}}})
	must(t, hub.Create(ctx, si))
	must(t, hub.Get(ctx, client.ObjectKeyFromObject(si), si))
	must(t, unstructured.SetNestedField(si.Object, []any{"10.96.0.10"}, "spec", "ips"))
	must(t, hub.Update(ctx, si))
	must(t, unstructured.SetNestedSlice(si.Object, []any{map[string]any{"cluster": "m2"}}, "status", "clusters"))
	must(t, hub.Status().Update(ctx, si))
	if err := hub.List(ctx, list(serviceImportGVK)); !apierrors.IsForbidden(err) {
		t.Errorf("listing ServiceImports as the hub: %v, want Forbidden", err)
	}
	must(t, hub.Delete(ctx, si))

	// The cluster ID, and no other property.
	id := object(clusterPropertyGVK, "", "cluster.clusterset.k8s.io", map[string]any{"spec": map[string]any{"value": "m1"}})
	must(t, hub.Create(ctx, id))
	must(t, hub.Get(ctx, client.ObjectKeyFromObject(id), id))
	must(t, unstructured.SetNestedField(id.Object, "m1-renamed", "spec", "value"))
	must(t, hub.Update(ctx, id))
	other := object(clusterPropertyGVK, "", "clusterset.k8s.io", map[string]any{"spec": map[string]any{"value": "prod"}})
	must(t, admin.Create(ctx, other))
	must(t, unstructured.SetNestedField(other.Object, "changed", "spec", "value"))
	if err := hub.Update(ctx, other); !apierrors.IsForbidden(err) {
		t.Errorf("updating ClusterProperty clusterset.k8s.io as the hub: %v, want Forbidden", err)
	}

	// Re-running updates the CRDs in place.
	out = mustFleetctl(t, registerArgs(f, "m1", f.Members[0], "--install-mcs-crds")...)
	if !strings.Contains(out, "updated CRD serviceimports.multicluster.x-k8s.io") {
		t.Errorf("second register does not say it updated the CRDs:\n%s", out)
	}
}
