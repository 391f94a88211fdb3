package clusters

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/discovery"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// +kubebuilder:rbac:groups=cluster.x-k8s.io,resources=clusters,verbs=get;list;watch

// ClusterAPISourceReconciler registers a member for every Cluster API Cluster whose
// control plane is initialized, using the Cluster's kubeconfig Secret <name>-kubeconfig
// (key "value") and the Cluster's labels; the MemberCluster goes when the Cluster does.
type ClusterAPISourceReconciler struct {
	Client   client.Client
	Recorder recorder.EventRecorder
}

// capiKubeconfigSuffix is Cluster API's naming convention for a cluster's admin kubeconfig.
const capiKubeconfigSuffix = "-kubeconfig"

// Reconcile makes the MemberCluster of one Cluster API Cluster match it.
func (r *ClusterAPISourceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cl := &clusterv1.Cluster{}
	err := r.Client.Get(ctx, req.NamespacedName, cl)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	wanted := err == nil && cl.DeletionTimestamp.IsZero() && controlPlaneInitialized(cl)
	secret := types.NamespacedName{Namespace: req.Namespace, Name: req.Name + capiKubeconfigSuffix}
	keep := ""
	if wanted {
		keep = req.Name
	}
	if err := removeStaleRegistrations(ctx, r.Client, fleetv1alpha1.RegistrationClusterAPI, secret, keep); err != nil {
		return ctrl.Result{}, err
	}
	if !wanted {
		return ctrl.Result{}, nil
	}
	if msg := validateClusterName(cl.Name); msg != "" {
		r.Recorder.Eventf(cl, nil, corev1.EventTypeWarning, "InvalidClusterName", "Register", "cannot register as a member: %s", msg)
		return ctrl.Result{}, nil
	}

	existing := &fleetv1alpha1.MemberCluster{}
	err = r.Client.Get(ctx, types.NamespacedName{Name: cl.Name}, existing)
	switch {
	case err == nil && !registeredFrom(existing, fleetv1alpha1.RegistrationClusterAPI, secret):
		r.Recorder.Eventf(cl, nil, corev1.EventTypeWarning, "ClusterNameTaken", "Register",
			"MemberCluster %q already exists (registered by %q from Secret %s/%s); this Cluster is not registered",
			cl.Name, existing.Labels[fleetv1alpha1.LabelRegistration],
			existing.Spec.KubeconfigSecretRef.Namespace, existing.Spec.KubeconfigSecretRef.Name)
		return ctrl.Result{}, nil
	case err != nil && !apierrors.IsNotFound(err):
		return ctrl.Result{}, err
	}

	labels := map[string]string{}
	for k, v := range cl.Labels {
		// A Cluster's labels are already valid label pairs; the check only guards the key
		// we set ourselves from being overridden.
		if k != fleetv1alpha1.LabelRegistration && len(validation.IsQualifiedName(k)) == 0 {
			labels[k] = v
		}
	}
	labels[fleetv1alpha1.LabelRegistration] = fleetv1alpha1.RegistrationClusterAPI
	mc := &fleetv1alpha1.MemberCluster{
		TypeMeta:   metav1.TypeMeta{APIVersion: fleetv1alpha1.GroupVersion.String(), Kind: "MemberCluster"},
		ObjectMeta: metav1.ObjectMeta{Name: cl.Name, Labels: labels},
		Spec: fleetv1alpha1.MemberClusterSpec{KubeconfigSecretRef: fleetv1alpha1.SecretKeyReference{
			Namespace: secret.Namespace, Name: secret.Name, Key: fleetv1alpha1.DefaultKubeconfigKey,
		}},
	}
	if err := applyMemberCluster(ctx, r.Client, mc, "flotilla-cluster-api-source"); err != nil {
		return ctrl.Result{}, fmt.Errorf("register Cluster API cluster %s: %w", req, err)
	}
	return ctrl.Result{}, nil
}

// controlPlaneInitialized follows Cluster API's contract: the initialization status field,
// or the ControlPlaneInitialized condition for providers that only set conditions.
func controlPlaneInitialized(cl *clusterv1.Cluster) bool {
	if init := cl.Status.Initialization.ControlPlaneInitialized; init != nil && *init {
		return true
	}
	for _, c := range cl.Status.Conditions {
		if c.Type == clusterv1.ClusterControlPlaneInitializedCondition && c.Status == metav1.ConditionTrue {
			return true
		}
	}
	return false
}

// SetupWithManager watches Clusters and the MemberClusters made from them.
func (r *ClusterAPISourceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("clusterapisource").
		For(&clusterv1.Cluster{}).
		Watches(&fleetv1alpha1.MemberCluster{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, o client.Object) []reconcile.Request {
				mc := o.(*fleetv1alpha1.MemberCluster)
				if mc.Labels[fleetv1alpha1.LabelRegistration] != fleetv1alpha1.RegistrationClusterAPI {
					return nil
				}
				// The MemberCluster carries the Cluster's name; the Secret's namespace is the Cluster's.
				return []reconcile.Request{{NamespacedName: types.NamespacedName{
					Namespace: mc.Spec.KubeconfigSecretRef.Namespace, Name: mc.Name}}}
			})).
		Complete(r)
}

// clusterAPIActivator starts the Cluster API source once the hub serves Cluster API's
// Cluster kind — at start-up or whenever its CRD is installed later — and never fails
// the manager when it is absent.
type clusterAPIActivator struct {
	mgr      ctrl.Manager
	source   *ClusterAPISourceReconciler
	interval time.Duration
}

// NeedLeaderElection: the source writes MemberClusters, so only the leader runs it.
func (a *clusterAPIActivator) NeedLeaderElection() bool { return true }

func (a *clusterAPIActivator) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("cluster-api-source")
	disco, err := discovery.NewDiscoveryClientForConfig(a.mgr.GetConfig())
	if err != nil {
		return err
	}
	for {
		if servesClusterAPI(disco) {
			logger.Info("Cluster API Cluster kind found on the hub; registering initialized Clusters as members")
			return a.source.SetupWithManager(a.mgr)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(a.interval):
		}
	}
}

func servesClusterAPI(disco discovery.DiscoveryInterface) bool {
	list, err := disco.ServerResourcesForGroupVersion(clusterv1.GroupVersion.String())
	if err != nil {
		return false
	}
	for _, res := range list.APIResources {
		if res.Name == "clusters" {
			return true
		}
	}
	return false
}
