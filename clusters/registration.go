package clusters

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/hashicorp/go-multierror"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/status"
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
	var errs *multierror.Error // one cluster that cannot be unregistered does not keep the others
	for i := range list.Items {
		mc := &list.Items[i]
		if mc.Name == keep {
			continue
		}
		if err := c.Delete(ctx, mc); client.IgnoreNotFound(err) != nil {
			errs = multierror.Append(errs, fmt.Errorf("unregister cluster %q (%s source no longer registers it): %w", mc.Name, registration, err))
			continue
		}
		log.FromContext(ctx).Info("unregistered cluster", "cluster", mc.Name, "registration", registration)
	}
	return status.Aggregate(errs)
}

// registeredFrom tells whether a MemberCluster was made by this source from this Secret,
// so a source never takes over a cluster someone else registered.
func registeredFrom(mc *fleetv1alpha1.MemberCluster, registration string, secret types.NamespacedName) bool {
	ref := mc.Spec.KubeconfigSecretRef
	return mc.Labels[fleetv1alpha1.LabelRegistration] == registration &&
		ref.Namespace == secret.Namespace && ref.Name == secret.Name
}

// RegistrationPolicy is the hub administrator's registration scope, set by controller
// flags only: which namespaces kubeconfig Secrets are read from and which Cluster API
// Clusters become members with which of their labels. Whoever can create a MemberCluster
// or a Cluster chooses a Secret reference and labels; this policy bounds what that buys.
type RegistrationPolicy struct {
	// HubNamespace: any Secret here may be a kubeconfig (fleetctl register, the Secret source).
	HubNamespace string
	// ClusterAPINamespaces are the namespaces whose Clusters register (their <name>-kubeconfig
	// Secret is then read there); AllNamespaces ("*") means every namespace. Empty: the hub
	// namespace only.
	ClusterAPINamespaces []string
	// ClusterAPILabelKeys are the Cluster label keys copied to its MemberCluster: an exact key,
	// a prefix ending in "/" (every key of that prefix), or "*" for every key. Keys under
	// fleet.flotilla.dev/ are never copied.
	ClusterAPILabelKeys []string
}

// AllNamespaces in RegistrationPolicy.ClusterAPINamespaces lets Clusters of every namespace register.
const AllNamespaces = "*"

// DefaultClusterAPILabelKeys are the Cluster labels copied when the hub sets none: the
// usual placement keys. Baselines that select on other keys need them listed by flag.
var DefaultClusterAPILabelKeys = []string{"env", "region", "zone", "topology.kubernetes.io/region", "topology.kubernetes.io/zone"}

// flotillaLabelPrefix marks Flotilla's own labels (registration, ownership), which no source copies.
const flotillaLabelPrefix = "fleet.flotilla.dev/"

func (p RegistrationPolicy) clusterAPINamespaces() []string {
	if len(p.ClusterAPINamespaces) == 0 {
		return []string{p.HubNamespace}
	}
	return p.ClusterAPINamespaces
}

// ClusterAPINamespaceAllowed tells whether Clusters in ns register.
func (p RegistrationPolicy) ClusterAPINamespaceAllowed(ns string) bool {
	for _, n := range p.clusterAPINamespaces() {
		if n == AllNamespaces || n == ns {
			return true
		}
	}
	return false
}

// copiesLabel tells whether a Cluster label key is copied to the MemberCluster.
func (p RegistrationPolicy) copiesLabel(key string) bool {
	if strings.HasPrefix(key, flotillaLabelPrefix) {
		return false
	}
	keys := p.ClusterAPILabelKeys
	if keys == nil {
		keys = DefaultClusterAPILabelKeys
	}
	for _, k := range keys {
		switch {
		case k == "*", k == key:
			return true
		case strings.HasSuffix(k, "/") && strings.HasPrefix(key, k):
			return true
		}
	}
	return false
}

// SecretNamespaces are the namespaces the hub reads kubeconfig Secrets from, for scoping its
// cache (and RBAC); nil means every namespace (ClusterAPINamespaces is "*").
func (p RegistrationPolicy) SecretNamespaces() []string {
	ns := []string{p.HubNamespace}
	for _, n := range p.clusterAPINamespaces() {
		if n == AllNamespaces {
			return nil
		}
		if n != p.HubNamespace {
			ns = append(ns, n)
		}
	}
	return ns
}

// secretRefAllowed decides whether the hub may read mc's kubeconfig Secret, before it is
// read: any Secret in the hub namespace; elsewhere only the <cluster>-kubeconfig Secret of
// the Cluster API Cluster this MemberCluster is registered from, in a namespace whose
// Clusters register — exactly what the Cluster API source itself would write, so a
// hand-made MemberCluster gains nothing by imitating it. A refusal is a CredentialError;
// a failed lookup of the Cluster is returned as a (transient) error.
func (p RegistrationPolicy) secretRefAllowed(ctx context.Context, c client.Reader, mc *fleetv1alpha1.MemberCluster) (*CredentialError, error) {
	ref := mc.Spec.KubeconfigSecretRef
	if ref.Namespace == p.HubNamespace {
		return nil, nil
	}
	refuse := func(why string) *CredentialError {
		return &CredentialError{Reason: fleetv1alpha1.ReasonSecretNamespaceNotAllowed, Detail: fmt.Sprintf(
			"kubeconfig Secret %s/%s was not read: the hub reads kubeconfigs only from namespace %q, and from the namespace of a Cluster API Cluster (namespaces %s) for the member registered from it; %s",
			ref.Namespace, ref.Name, p.HubNamespace, strings.Join(p.clusterAPINamespaces(), ","), why)}
	}
	switch {
	case mc.Labels[fleetv1alpha1.LabelRegistration] != fleetv1alpha1.RegistrationClusterAPI:
		return refuse("this MemberCluster was not registered from a Cluster API Cluster"), nil
	case !p.ClusterAPINamespaceAllowed(ref.Namespace):
		return refuse(fmt.Sprintf("Clusters in %q do not register (controller flag --cluster-api-namespaces)", ref.Namespace)), nil
	case ref.Name != mc.Name+capiKubeconfigSuffix:
		return refuse(fmt.Sprintf("a Cluster API member's kubeconfig is the Secret %s%s", mc.Name, capiKubeconfigSuffix)), nil
	}
	cl := &clusterv1.Cluster{}
	err := c.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: mc.Name}, cl)
	switch {
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err) || runtime.IsNotRegisteredError(err):
		return refuse(fmt.Sprintf("there is no Cluster %s/%s", ref.Namespace, mc.Name)), nil
	case err != nil:
		return nil, fmt.Errorf("get Cluster %s/%s of cluster %q: %w", ref.Namespace, mc.Name, mc.Name, err)
	}
	return nil, nil
}
