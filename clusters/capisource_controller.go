package clusters

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/util/retry"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/requeue"
	"github.com/flotilla-dev/flotilla/internal/status"
)

// +kubebuilder:rbac:groups=cluster.x-k8s.io,resources=clusters,verbs=get;list;watch

// ClusterAPISourceReconciler registers a member for every Cluster API Cluster whose
// control plane is initialized, in a namespace the registration policy lets register,
// using the Cluster's kubeconfig Secret <name>-kubeconfig (key "value") and the Cluster
// labels the policy copies; the MemberCluster goes when the Cluster does. A Cluster whose
// name is already taken is reported on both sides, never skipped silently.
type ClusterAPISourceReconciler struct {
	Client   client.Client
	Recorder recorder.EventRecorder
	Policy   RegistrationPolicy
}

// capiKubeconfigSuffix is Cluster API's naming convention for a cluster's admin kubeconfig.
const capiKubeconfigSuffix = "-kubeconfig"

// nameConflictRecheck re-asserts a name conflict on the MemberCluster now and then, since
// that condition shares the status with the MemberCluster controller.
const nameConflictRecheck = time.Minute

// Reconcile makes the MemberCluster of one Cluster API Cluster match it.
func (r *ClusterAPISourceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cl := &clusterv1.Cluster{}
	err := r.Client.Get(ctx, req.NamespacedName, cl)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	allowed := r.Policy.ClusterAPINamespaceAllowed(req.Namespace)
	secret := types.NamespacedName{Namespace: req.Namespace, Name: req.Name + capiKubeconfigSuffix}
	if moving, done, err := r.handleMove(ctx, cl, err == nil, secret); done || err != nil || moving {
		return ctrl.Result{}, err
	}
	wanted := err == nil && allowed && cl.DeletionTimestamp.IsZero() && controlPlaneInitialized(cl)
	keep := ""
	if wanted {
		keep = req.Name
	}
	if err := removeStaleRegistrations(ctx, r.Client, fleetv1alpha1.RegistrationClusterAPI, secret, keep); err != nil {
		return ctrl.Result{}, err
	}
	if !wanted {
		if err == nil && !allowed && cl.DeletionTimestamp.IsZero() {
			log.FromContext(ctx).V(1).Info("Cluster not registered: its namespace is not in the hub's Cluster API namespaces", "cluster", req)
		}
		return ctrl.Result{}, r.clearNameConflict(ctx, req.NamespacedName)
	}
	if msg := validateClusterName(cl.Name); msg != "" {
		r.Recorder.Eventf(cl, nil, corev1.EventTypeWarning, "InvalidClusterName", "Register", "cannot register as a member: %s", msg)
		return ctrl.Result{}, nil
	}

	existing := &fleetv1alpha1.MemberCluster{}
	err = r.Client.Get(ctx, types.NamespacedName{Name: cl.Name}, existing)
	switch {
	case err == nil && movedHere(existing):
		// The Cluster was moved (clusterctl move) and shows up here: the MemberCluster
		// follows it to the new kubeconfig Secret; the member itself is not touched.
		r.Recorder.Eventf(cl, nil, corev1.EventTypeNormal, fleetv1alpha1.ReasonClusterMoving, "Register",
			"MemberCluster %q follows the moved Cluster (was registered from Secret %s/%s)",
			cl.Name, existing.Spec.KubeconfigSecretRef.Namespace, existing.Spec.KubeconfigSecretRef.Name)
	case err == nil && !registeredFrom(existing, fleetv1alpha1.RegistrationClusterAPI, secret):
		return ctrl.Result{RequeueAfter: nameConflictRecheck}, r.reportNameConflict(ctx, cl, existing)
	case err != nil && !apierrors.IsNotFound(err):
		return ctrl.Result{}, err
	}

	labels := map[string]string{}
	for k, v := range cl.Labels {
		if r.Policy.copiesLabel(k) && len(validation.IsQualifiedName(k)) == 0 {
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
	// Settled (moved or never moving): the Cluster's disappearance means unregistration again.
	return ctrl.Result{}, r.setMoving(ctx, cl.Name, false)
}

// clusterMoving tells whether a Cluster is paused or being moved by clusterctl: its
// deletion from this hub then moves it, it does not retire it.
func clusterMoving(cl *clusterv1.Cluster) bool {
	a := cl.GetAnnotations()
	_, move := a[fleetv1alpha1.AnnotationClusterctlMove]
	_, deleteForMove := a[fleetv1alpha1.AnnotationClusterctlDeleteForMove]
	_, paused := a[fleetv1alpha1.AnnotationClusterAPIPaused]
	return move || deleteForMove || paused || (cl.Spec.Paused != nil && *cl.Spec.Paused)
}

// movedHere tells whether a MemberCluster registered from Cluster API was marked moving,
// so that a Cluster of its name in another namespace may take it over.
func movedHere(mc *fleetv1alpha1.MemberCluster) bool {
	return mc.Labels[fleetv1alpha1.LabelRegistration] == fleetv1alpha1.RegistrationClusterAPI &&
		mc.Annotations[fleetv1alpha1.AnnotationClusterAPIMoving] == "true"
}

// handleMove keeps a moving Cluster's MemberCluster: while the Cluster is paused or being
// moved, the MemberCluster is marked (moving is true, nothing else happens); when a marked
// Cluster disappears, the MemberCluster is kept for the Cluster to reappear elsewhere
// (done is true) — deleting it would delete what Flotilla wrote into a live cluster.
func (r *ClusterAPISourceReconciler) handleMove(ctx context.Context, cl *clusterv1.Cluster, found bool, secret types.NamespacedName) (moving, done bool, err error) {
	if found && clusterMoving(cl) {
		mc := &fleetv1alpha1.MemberCluster{}
		err := r.Client.Get(ctx, types.NamespacedName{Name: cl.Name}, mc)
		if apierrors.IsNotFound(err) || (err == nil && !registeredFrom(mc, fleetv1alpha1.RegistrationClusterAPI, secret)) {
			return true, false, nil // not ours: nothing to keep, nothing to register while paused
		}
		if err != nil {
			return true, false, err
		}
		if !movedHere(mc) {
			r.Recorder.Eventf(cl, nil, corev1.EventTypeNormal, fleetv1alpha1.ReasonClusterMoving, "Register",
				"Cluster is paused or being moved: MemberCluster %q is kept whatever happens to the Cluster here", cl.Name)
		}
		return true, false, r.setMoving(ctx, cl.Name, true)
	}
	if found && cl.DeletionTimestamp.IsZero() {
		return false, false, nil
	}
	// Gone (or going): keep MemberClusters marked moving.
	list := &fleetv1alpha1.MemberClusterList{}
	if err := r.Client.List(ctx, list, client.MatchingFields{secretRefIndex: secret.String()},
		client.MatchingLabels{fleetv1alpha1.LabelRegistration: fleetv1alpha1.RegistrationClusterAPI}); err != nil {
		return false, false, err
	}
	for _, mc := range list.Items {
		if movedHere(&mc) {
			log.FromContext(ctx).Info("Cluster API Cluster gone while moving; MemberCluster kept", "cluster", mc.Name)
			return false, true, nil
		}
	}
	return false, false, nil
}

// setMoving marks (or unmarks) a Cluster API MemberCluster as moving.
func (r *ClusterAPISourceReconciler) setMoving(ctx context.Context, name string, moving bool) error {
	mc := &fleetv1alpha1.MemberCluster{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, mc); err != nil {
		return client.IgnoreNotFound(err)
	}
	if movedHere(mc) == moving {
		return nil
	}
	base := mc.DeepCopy()
	if moving {
		if mc.Annotations == nil {
			mc.Annotations = map[string]string{}
		}
		mc.Annotations[fleetv1alpha1.AnnotationClusterAPIMoving] = "true"
	} else {
		delete(mc.Annotations, fleetv1alpha1.AnnotationClusterAPIMoving)
	}
	if err := r.Client.Patch(ctx, mc, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("mark cluster %q moving=%t: %w", name, moving, err)
	}
	return nil
}

// conflictMessage is the RegistrationConflict message naming a refused Cluster; clearing
// the condition matches on it.
func conflictMessage(cluster types.NamespacedName) string {
	return fmt.Sprintf("Cluster API Cluster %s also asks for this name and was not registered", cluster)
}

// reportNameConflict tells both sides that cl wants a MemberCluster name already in use:
// a Warning event on the Cluster and a RegistrationConflict condition on the MemberCluster.
func (r *ClusterAPISourceReconciler) reportNameConflict(ctx context.Context, cl *clusterv1.Cluster, existing *fleetv1alpha1.MemberCluster) error {
	r.Recorder.Eventf(cl, nil, corev1.EventTypeWarning, fleetv1alpha1.ReasonClusterNameTaken, "Register",
		"MemberCluster %q already exists (registered by %q from Secret %s/%s); this Cluster is not registered",
		cl.Name, existing.Labels[fleetv1alpha1.LabelRegistration],
		existing.Spec.KubeconfigSecretRef.Namespace, existing.Spec.KubeconfigSecretRef.Name)
	msg := conflictMessage(client.ObjectKeyFromObject(cl))
	return r.patchMemberConflict(ctx, cl.Name, func(mc *fleetv1alpha1.MemberCluster) {
		status.Set(mc, fleetv1alpha1.ConditionRegistrationConflict, metav1.ConditionTrue, fleetv1alpha1.ReasonClusterNameTaken, msg)
	})
}

// clearNameConflict removes the RegistrationConflict condition that named this Cluster, if
// the MemberCluster of the same name still carries it.
func (r *ClusterAPISourceReconciler) clearNameConflict(ctx context.Context, cluster types.NamespacedName) error {
	return r.patchMemberConflict(ctx, cluster.Name, func(mc *fleetv1alpha1.MemberCluster) {
		if c := meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionRegistrationConflict); c != nil && c.Message == conflictMessage(cluster) {
			status.Remove(mc, fleetv1alpha1.ConditionRegistrationConflict)
		}
	})
}

// patchMemberConflict changes the status of MemberCluster name with an optimistic lock (the
// MemberCluster controller writes the same status) and writes nothing if nothing changed.
func (r *ClusterAPISourceReconciler) patchMemberConflict(ctx context.Context, name string, change func(*fleetv1alpha1.MemberCluster)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mc := &fleetv1alpha1.MemberCluster{}
		if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, mc); err != nil {
			return client.IgnoreNotFound(err)
		}
		base := mc.DeepCopy()
		change(mc)
		if equality.Semantic.DeepEqual(base.Status, mc.Status) {
			return nil
		}
		if err := r.Client.Status().Patch(ctx, mc, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("report registration conflict on cluster %q: %w", name, err)
		}
		return nil
	})
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
		WithOptions(controller.Options{RateLimiter: requeue.Limiter[reconcile.Request]()}).
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
			}), builder.WithPredicates(registrationChanged())).
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
