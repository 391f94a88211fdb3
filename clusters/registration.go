package clusters

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// What the registration sources (kubeconfig Secrets, Cluster API) share: each applies the
// MemberClusters it wants under its own field manager and removes the ones it made that
// are no longer wanted.

// applyMemberCluster server-side applies the spec and labels of mc as fieldOwner. Only
// spec and metadata are sent, so status and fields other managers own are left alone.
func applyMemberCluster(ctx context.Context, c client.Client, mc *fleetv1alpha1.MemberCluster, fieldOwner string) error {
	spec, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&mc.Spec)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(fleetv1alpha1.GroupVersion.WithKind("MemberCluster"))
	u.SetName(mc.Name)
	u.SetLabels(mc.Labels)
	return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldOwner), client.ForceOwnership)
}

// removeStaleRegistrations deletes the MemberClusters that a registration source made from
// secret, except keep: the source object is gone, no longer qualifies, or names another
// cluster now. Registration label and Secret reference identify them, never their names.
func removeStaleRegistrations(ctx context.Context, c client.Client, registration string, secret types.NamespacedName, keep string) error {
	list := &fleetv1alpha1.MemberClusterList{}
	if err := c.List(ctx, list, client.MatchingFields{secretRefIndex: secret.String()},
		client.MatchingLabels{fleetv1alpha1.LabelRegistration: registration}); err != nil {
		return err
	}
	for i := range list.Items {
		mc := &list.Items[i]
		if mc.Name == keep {
			continue
		}
		if err := c.Delete(ctx, mc); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("unregister cluster %q (%s source no longer registers it): %w", mc.Name, registration, err)
		}
		log.FromContext(ctx).Info("unregistered cluster", "cluster", mc.Name, "registration", registration)
	}
	return nil
}

// registeredFrom tells whether a MemberCluster was made by this source from this Secret,
// so a source never takes over a cluster someone else registered.
func registeredFrom(mc *fleetv1alpha1.MemberCluster, registration string, secret types.NamespacedName) bool {
	ref := mc.Spec.KubeconfigSecretRef
	return mc.Labels[fleetv1alpha1.LabelRegistration] == registration &&
		ref.Namespace == secret.Namespace && ref.Name == secret.Name
}
