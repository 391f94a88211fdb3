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
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=memberclusters,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=memberclusters/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch

// MemberClusterReconciler turns a MemberCluster and its kubeconfig Secret into a member
// connection and reports the connection's health in status.
type MemberClusterReconciler struct {
	Client client.Client
	// SecretReader reads kubeconfig Secrets directly from the API server: Secret data is
	// never held in the hub's cache, only their metadata.
	SecretReader client.Reader
	Connections  *Connections
	Policy       CredentialPolicy
	// Heartbeat is how often status.lastProbeTime is refreshed when nothing else changes;
	// it bounds the controller's steady-state writes to one per member per Heartbeat.
	Heartbeat time.Duration
}

// Reconcile reads the MemberCluster, loads and checks its credentials, makes sure the
// connection matches them, and writes what it found into status.
func (r *MemberClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	mc := &fleetv1alpha1.MemberCluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, mc); err != nil {
		if apierrors.IsNotFound(err) {
			r.Connections.Remove(req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !mc.DeletionTimestamp.IsZero() {
		// Other controllers may hold finalizers to clean up in this member; keep the
		// connection until the object is gone.
		return ctrl.Result{}, nil
	}

	before := mc.Status.DeepCopy()
	creds, credErr := r.loadCredentials(ctx, mc)
	if credErr != nil {
		r.Connections.Remove(mc.Name)
		setCredentialsInvalid(mc, credErr)
	} else {
		if err := r.Connections.Ensure(mc.Name, creds); err != nil {
			return ctrl.Result{}, fmt.Errorf("connect to cluster %q: %w", mc.Name, err)
		}
		h, _ := r.Connections.Health(mc.Name)
		setConnected(mc, creds.Hash, h)
	}
	mc.Status.ObservedGeneration = mc.Generation

	if err := r.patchStatus(ctx, mc, before); err != nil {
		return ctrl.Result{}, err
	}
	if credErr != nil {
		// A user must fix the Secret; its watch brings us back.
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: r.Heartbeat}, nil
}

// loadCredentials returns a CredentialError (never a transient error) so that status can
// say exactly what is wrong with the Secret.
func (r *MemberClusterReconciler) loadCredentials(ctx context.Context, mc *fleetv1alpha1.MemberCluster) (*Credentials, *CredentialError) {
	ref := mc.Spec.KubeconfigSecretRef
	key := ref.Key
	if key == "" {
		key = fleetv1alpha1.DefaultKubeconfigKey
	}
	secret := &corev1.Secret{}
	if err := r.SecretReader.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, secret); err != nil {
		reason := fleetv1alpha1.ReasonSecretNotFound
		msg := fmt.Sprintf("kubeconfig Secret %s/%s not found", ref.Namespace, ref.Name)
		if !apierrors.IsNotFound(err) {
			reason, msg = fleetv1alpha1.ReasonInvalidKubeconfig, fmt.Sprintf("read kubeconfig Secret %s/%s: %v", ref.Namespace, ref.Name, err)
		}
		return nil, &CredentialError{Reason: reason, Detail: msg}
	}
	data, ok := secret.Data[key]
	if !ok {
		return nil, &CredentialError{Reason: fleetv1alpha1.ReasonKeyNotFound,
			Detail: fmt.Sprintf("kubeconfig Secret %s/%s has no key %q", ref.Namespace, ref.Name, key)}
	}
	creds, err := LoadCredentials(data, r.Policy)
	if err != nil {
		ce, ok := AsCredentialError(err)
		if !ok {
			ce = &CredentialError{Reason: fleetv1alpha1.ReasonInvalidKubeconfig, Detail: err.Error()}
		}
		log.FromContext(ctx).Info("kubeconfig rejected", "secret", ref.Namespace+"/"+ref.Name, "reason", ce.Reason, "field", ce.Field)
		return nil, &CredentialError{Reason: ce.Reason, Field: ce.Field,
			Detail: fmt.Sprintf("kubeconfig in Secret %s/%s key %q: %s", ref.Namespace, ref.Name, key, ce.Error())}
	}
	return creds, nil
}

func setCredentialsInvalid(mc *fleetv1alpha1.MemberCluster, ce *CredentialError) {
	msg := ce.Detail
	setCondition(mc, fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionFalse, ce.Reason, msg)
	setCondition(mc, fleetv1alpha1.ConditionConnected, metav1.ConditionFalse, ce.Reason, "not connecting: "+msg)
	setCondition(mc, fleetv1alpha1.ConditionReady, metav1.ConditionFalse, ce.Reason, msg)
	mc.Status.ObservedCredentialHash = ""
}

func setConnected(mc *fleetv1alpha1.MemberCluster, hash string, h Health) {
	setCondition(mc, fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionTrue, fleetv1alpha1.ReasonValid, "kubeconfig passes the hub's credential policy")
	mc.Status.ObservedCredentialHash = hash
	if !h.LastProbe.IsZero() {
		t := metav1.NewTime(h.LastProbe)
		mc.Status.LastProbeTime = &t
	}
	if h.Version != "" {
		mc.Status.KubernetesVersion = h.Version
		nodes := h.Nodes
		mc.Status.NodeCount = &nodes
	}
	if h.LastProbe.IsZero() {
		// A new connection (controller restart, rotated credentials) has not been probed
		// yet: keep reporting the last known state instead of flapping to not-ready; the
		// first probe's result brings this reconcile back.
		if meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionConnected) == nil {
			setCondition(mc, fleetv1alpha1.ConditionConnected, metav1.ConditionUnknown, fleetv1alpha1.ReasonConnecting, h.Message)
			setCondition(mc, fleetv1alpha1.ConditionReady, metav1.ConditionUnknown, fleetv1alpha1.ReasonConnecting, h.Message)
		}
		return
	}
	if h.Connected {
		setCondition(mc, fleetv1alpha1.ConditionConnected, metav1.ConditionTrue, fleetv1alpha1.ReasonConnected, h.Message)
		setCondition(mc, fleetv1alpha1.ConditionReady, metav1.ConditionTrue, fleetv1alpha1.ReasonHealthy,
			fmt.Sprintf("connected; Kubernetes %s, %d nodes", h.Version, h.Nodes))
		return
	}
	msg := h.Message
	if h.Failures > 0 {
		msg = fmt.Sprintf("%s (%d failed probes in a row)", msg, h.Failures)
	}
	setCondition(mc, fleetv1alpha1.ConditionConnected, metav1.ConditionFalse, h.Reason, msg)
	setCondition(mc, fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonNotConnected, msg)
}

func setCondition(mc *fleetv1alpha1.MemberCluster, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: mc.Generation,
	})
}

// patchStatus writes status only when something a user would see changed, or when the
// last probe time is older than the heartbeat: steady state costs one write per heartbeat.
func (r *MemberClusterReconciler) patchStatus(ctx context.Context, mc *fleetv1alpha1.MemberCluster, before *fleetv1alpha1.MemberClusterStatus) error {
	after := mc.Status.DeepCopy()
	if before.LastProbeTime != nil && after.LastProbeTime != nil &&
		after.LastProbeTime.Sub(before.LastProbeTime.Time) < r.Heartbeat {
		after.LastProbeTime = before.LastProbeTime
	}
	if equality.Semantic.DeepEqual(before, after) {
		return nil
	}
	mc.Status = *after
	patchBase := mc.DeepCopy()
	patchBase.Status = *before
	if err := r.Client.Status().Patch(ctx, mc, client.MergeFrom(patchBase)); err != nil {
		return fmt.Errorf("update status of cluster %q: %w", mc.Name, err)
	}
	return nil
}
