package plan

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// Desired renders b for one member (render.ForCluster): namespaces are the member's
// Namespaces the caller listed (SelectNamespaces picks the perNamespace targets among
// them), mapper says which kinds are namespaced. An error is the Baseline's (the binding
// fails with InvalidSource).
func Desired(b *fleetv1alpha1.Baseline, in *render.Rendered, mc *fleetv1alpha1.MemberCluster, mapper meta.RESTMapper,
	namespaces []corev1.Namespace) ([]render.Document, error) {
	c := render.Cluster{
		Name:   mc.Name,
		Labels: mc.Labels,
		Namespaced: func(gvk schema.GroupVersionKind) bool {
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			return err != nil || m.Scope.Name() == meta.RESTScopeNameNamespace
		},
	}
	if b.Spec.PerNamespace != nil {
		var err error
		if c.Namespaces, err = SelectNamespaces(&b.Spec.PerNamespace.NamespaceSelector, namespaces); err != nil {
			return nil, err
		}
	}
	return render.ForCluster(b, in.Resources, in.PerNamespace, c)
}

// SelectNamespaces names the namespaces a perNamespace selector picks among nss, in their
// order: those matching sel and not being deleted (an object applied into a terminating
// namespace is refused, and the namespace is going anyway).
func SelectNamespaces(sel *metav1.LabelSelector, nss []corev1.Namespace) ([]string, error) {
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, fmt.Errorf("spec.perNamespace.namespaceSelector: %w", err)
	}
	var out []string
	for _, ns := range nss {
		if selector.Matches(labels.Set(ns.Labels)) && ns.DeletionTimestamp.IsZero() && ns.Status.Phase != corev1.NamespaceTerminating {
			out = append(out, ns.Name)
		}
	}
	return out, nil
}
