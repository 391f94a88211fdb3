package clusters

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/requeue"
)

// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// SecretSourceReconciler registers a member for every Secret in the hub namespace
// labelled fleet.flotilla.dev/kubeconfig: "true", and removes the MemberCluster again
// when the Secret or its label goes away. It reads Secret metadata only.
type SecretSourceReconciler struct {
	Client       client.Client
	HubNamespace string
	Recorder     recorder.EventRecorder
}

// Reconcile makes the MemberClusters registered from one Secret match it.
func (r *SecretSourceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	secret := &metav1.PartialObjectMetadata{}
	secret.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	err := r.Client.Get(ctx, req.NamespacedName, secret)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	registered := err == nil && secret.DeletionTimestamp.IsZero() && secret.Labels[fleetv1alpha1.LabelKubeconfig] == "true"

	desiredName := ""
	if registered {
		desiredName = req.Name
		if n := secret.Annotations[fleetv1alpha1.AnnotationClusterName]; n != "" {
			desiredName = n
		}
	}
	// Level-triggered clean-up: any MemberCluster this source made from this Secret that
	// is no longer wanted (Secret gone, unlabelled, or renamed by annotation) goes.
	if err := removeStaleRegistrations(ctx, r.Client, fleetv1alpha1.RegistrationSecret, req.NamespacedName, desiredName); err != nil {
		return ctrl.Result{}, err
	}
	if !registered {
		return ctrl.Result{}, nil
	}

	if msg := validateClusterName(desiredName); msg != "" {
		r.Recorder.Eventf(secret, nil, corev1.EventTypeWarning, "InvalidClusterName", "Register",
			"cannot register cluster %q from this Secret: %s", desiredName, msg)
		return ctrl.Result{}, nil
	}
	clusterLabels, err := fleetv1alpha1.ParseClusterLabels(secret.Annotations[fleetv1alpha1.AnnotationClusterLabels])
	if err != nil {
		r.Recorder.Eventf(secret, nil, corev1.EventTypeWarning, "InvalidClusterLabels", "Register",
			"annotation %s: %v", fleetv1alpha1.AnnotationClusterLabels, err)
		return ctrl.Result{}, nil
	}

	existing := &fleetv1alpha1.MemberCluster{}
	err = r.Client.Get(ctx, types.NamespacedName{Name: desiredName}, existing)
	switch {
	case err == nil && !registeredFrom(existing, fleetv1alpha1.RegistrationSecret, req.NamespacedName):
		r.Recorder.Eventf(secret, nil, corev1.EventTypeWarning, "ClusterNameTaken", "Register",
			"MemberCluster %q already exists and was registered by %q; choose another name with annotation %s",
			desiredName, existing.Labels[fleetv1alpha1.LabelRegistration], fleetv1alpha1.AnnotationClusterName)
		return ctrl.Result{}, nil
	case err != nil && !apierrors.IsNotFound(err):
		return ctrl.Result{}, err
	}

	clusterLabels[fleetv1alpha1.LabelRegistration] = fleetv1alpha1.RegistrationSecret
	mc := &fleetv1alpha1.MemberCluster{
		TypeMeta:   metav1.TypeMeta{APIVersion: fleetv1alpha1.GroupVersion.String(), Kind: "MemberCluster"},
		ObjectMeta: metav1.ObjectMeta{Name: desiredName, Labels: clusterLabels},
		Spec: fleetv1alpha1.MemberClusterSpec{KubeconfigSecretRef: fleetv1alpha1.SecretKeyReference{
			Namespace: req.Namespace, Name: req.Name, Key: fleetv1alpha1.DefaultKubeconfigKey,
		}},
	}
	// Its own field manager: labels removed from the annotation are removed from the
	// MemberCluster, labels others added stay.
	if err := applyMemberCluster(ctx, r.Client, mc, "flotilla-secret-source"); err != nil {
		return ctrl.Result{}, fmt.Errorf("register cluster %q from Secret %s: %w", desiredName, req, err)
	}
	return ctrl.Result{}, nil
}

// validateClusterName returns why name cannot be a MemberCluster name, or "".
func validateClusterName(name string) string {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return strings.Join(errs, "; ")
	}
	return ""
}

// SetupWithManager watches the metadata of hub-namespace Secrets (the label is checked in
// Reconcile so that removing it unregisters) and the MemberClusters this source made.
func (r *SecretSourceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	inHubNamespace := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == r.HubNamespace })
	return ctrl.NewControllerManagedBy(mgr).
		Named("secretsource").
		WithOptions(controller.Options{RateLimiter: requeue.Limiter[reconcile.Request]()}).
		WatchesMetadata(&corev1.Secret{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(inHubNamespace)).
		Watches(&fleetv1alpha1.MemberCluster{}, handler.EnqueueRequestsFromMapFunc(secretOfRegistration(fleetv1alpha1.RegistrationSecret)),
			builder.WithPredicates(registrationChanged())).
		Complete(r)
}

// secretOfRegistration maps a MemberCluster made by the given source back to the Secret
// it was made from, so a deleted or edited MemberCluster is put right again.
func secretOfRegistration(registration string) handler.MapFunc {
	return func(_ context.Context, o client.Object) []reconcile.Request {
		mc, ok := o.(*fleetv1alpha1.MemberCluster)
		if !ok || mc.Labels[fleetv1alpha1.LabelRegistration] != registration {
			return nil
		}
		ref := mc.Spec.KubeconfigSecretRef
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}}}
	}
}
