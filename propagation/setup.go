package propagation

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flotilla-dev/flotilla/clusters"
)

// SetupOptions configure propagation.
type SetupOptions struct {
	// HubNamespace is where ConfigMap and Secret sources are read.
	HubNamespace string
	// Resync is the backstop period of a binding's drift check (jittered ±10%).
	Resync time.Duration
	// MaxConcurrentApplies bounds how many members are applied to at once.
	MaxConcurrentApplies int
	// MaxConcurrentPerMember bounds how many of those work on one member (see doc.go).
	MaxConcurrentPerMember int
	// Limits bound the size of a Baseline; zero fields take the defaults.
	Limits Limits
}

// Setup adds the Baseline and BaselineBinding controllers to mgr (baseline_setup.go,
// binding_setup.go). Members are reached only through access; watches on members are
// registered here, before the manager starts.
func Setup(mgr ctrl.Manager, access clusters.MemberAccess, opts SetupOptions) error {
	if opts.Resync <= 0 {
		opts.Resync = 10 * time.Minute
	}
	if opts.MaxConcurrentApplies <= 0 {
		opts.MaxConcurrentApplies = 64
	}
	if opts.MaxConcurrentPerMember <= 0 {
		opts.MaxConcurrentPerMember = 2
	}
	// Every Namespace of every member, for the perNamespace fan-out (new namespaces included):
	// metadata only (names, labels, deletion), the informer servicesync shares.
	if err := access.RegisterWatch(namespaceMeta(), cache.ByObject{Label: labels.Everything()}); err != nil {
		return err
	}
	opts.Limits = opts.Limits.withDefaults()
	sources := newSourceReader(mgr.GetClient(), mgr.GetAPIReader(), opts.HubNamespace, opts.Limits)
	if err := setupBaseline(mgr, sources, opts); err != nil {
		return fmt.Errorf("set up Baseline controller: %w", err)
	}
	if err := setupBinding(mgr, access, sources, opts); err != nil {
		return fmt.Errorf("set up BaselineBinding controller: %w", err)
	}
	return nil
}

// requestsFor lists the hub objects matching opts into list and maps each to a reconcile
// request by its key: how every event of a related object finds what to reconcile. A failed
// list is logged and maps to nothing; the next event or resync brings the objects back.
func requestsFor(ctx context.Context, hub client.Reader, list client.ObjectList, opts ...client.ListOption) []reconcile.Request {
	if err := hub.List(ctx, list, opts...); err != nil {
		log.FromContext(ctx).Error(err, "list objects to reconcile for an event", "list", fmt.Sprintf("%T", list))
		return nil
	}
	var reqs []reconcile.Request
	_ = meta.EachListItem(list, func(o runtime.Object) error {
		if obj, ok := o.(client.Object); ok {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
		}
		return nil
	})
	return reqs
}

// namespaceMeta is the metadata-only Namespace watched in every member.
func namespaceMeta() *metav1.PartialObjectMetadata {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return ns
}
