package clusters

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/membertoken"
	"github.com/flotilla-dev/flotilla/internal/status"
)

// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=memberclusters,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=memberclusters/status,verbs=get;update;patch
// Kubeconfig Secrets are read in the hub namespace only (Cluster API namespaces other than
// the hub's are granted by the hub administrator, see README "Registration scope").
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch,namespace=flotilla-system

// DefaultHeartbeat is how often a member's status.lastProbeTime is written when nothing else
// in its status changed. Whatever a user or a controller acts on (Connected, Ready, the
// version, the node count, credentials) is written when the probe sees it change, so a
// hung member still goes Connected=False within probe interval × failure threshold; the
// heartbeat only shows that the hub is still probing. As kubelet does with Node status
// (nodeStatusReportFrequency, 5 minutes, when nothing changed), it is kept at 5 minutes:
// each write costs the hub an encode, a round trip, a watch event decoded by the hub's
// cache and run through every controller's predicates, and at 1,000 members a one-minute
// heartbeat is 17 writes a second for no new information.
const DefaultHeartbeat = 5 * time.Minute

// MemberClusterReconciler turns a MemberCluster and its kubeconfig Secret into a member
// connection and reports the connection's health in status.
type MemberClusterReconciler struct {
	Client client.Client
	// SecretReader reads kubeconfig Secrets directly from the API server: Secret data is
	// never held in the hub's cache, only their metadata.
	SecretReader client.Reader
	Connections  *Connections
	Policy       CredentialPolicy
	// Registration bounds which Secrets a MemberCluster may reference.
	Registration RegistrationPolicy
	// Resolver looks up member host names for the endpoint policy (default net.DefaultResolver).
	Resolver Resolver
	// Heartbeat is how often status.lastProbeTime is refreshed when nothing else changes;
	// it bounds the controller's steady-state writes to one per member per Heartbeat.
	Heartbeat time.Duration
	// CleanupTimeout bounds how long a deleted member waits for its clean-up (see
	// reconcileDelete); Recorder reports how leaving went.
	CleanupTimeout time.Duration
	Recorder       recorder.EventRecorder

	memo credentialMemo
}

// disconnect closes the member's connection and forgets its credentials.
func (r *MemberClusterReconciler) disconnect(cluster string) {
	r.memo.forget(cluster)
	r.Connections.Remove(cluster)
}

// Reconcile reads the MemberCluster, loads and checks its credentials, makes sure the
// connection matches them, and reports what it found in status, written once by the
// deferred patch. Credentials a person must fix are a user error (Stalled); the Secret's
// watch brings the cluster back when they change.
func (r *MemberClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, err error) {
	mc := &fleetv1alpha1.MemberCluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, mc); err != nil {
		if apierrors.IsNotFound(err) {
			r.disconnect(req.Name)
			forgetMember(req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !mc.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, mc)
	}
	if err := r.ensureFinalizer(ctx, mc); err != nil {
		return ctrl.Result{}, err
	}
	p := status.NewPatcher(r.Client, mc, status.WithOptimisticLock(), status.WithEvents(r.Recorder, nil, memberEvent))
	defer func() {
		err = p.Patch(ctx, mc, err)
		observeMember(mc)
	}()
	lastProbe := mc.Status.LastProbeTime

	creds, credErr, readErr := r.loadCredentials(ctx, mc)
	if readErr != nil {
		return ctrl.Result{}, r.secretReadFailed(mc, readErr)
	}
	var claims membertoken.Claims
	hasExpiry := false
	if credErr == nil {
		claims, hasExpiry = creds.Claims()
		mc.Status.CredentialsExpireAt = nil
		if hasExpiry {
			mc.Status.CredentialsExpireAt = &metav1.Time{Time: claims.Expiry}
			credErr = tokenExpired(mc, claims, time.Now())
		}
	}
	if credErr != nil {
		if !awaitsUnregistration(mc, credErr) {
			r.disconnect(mc.Name)
		}
		setCredentialsInvalid(mc, credErr)
		return ctrl.Result{}, status.Stalled(credErr.Reason, errors.New(credErr.Detail))
	}
	if err := r.Connections.Ensure(mc.Name, creds); err != nil {
		return ctrl.Result{}, fmt.Errorf("connect to cluster %q: %w", mc.Name, err)
	}
	h, _ := r.Connections.Health(mc.Name)
	setConnected(mc, creds.Hash, h)
	r.throttleHeartbeat(mc, lastProbe)
	next := r.Heartbeat
	if hasExpiry {
		// Back at the moment the token expires, to say so even if no probe fails before.
		next = min(next, time.Until(claims.Expiry)+time.Second)
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

// memberEvent names the changes of a MemberCluster's status worth an event
// (status.WithEvents), each sent once, when it happens: connected, disconnected (with the
// probe's classified reason: Unauthorized is the member refusing the credentials), and
// credentials the hub's policy refuses or that expired. A refusal by policy also sets
// Connected=False with the same reason: one event says it.
func memberEvent(obj status.Object, c metav1.Condition) (string, string, string) {
	mc := obj.(*fleetv1alpha1.MemberCluster)
	switch {
	case c.Type == fleetv1alpha1.ConditionConnected && c.Status == metav1.ConditionTrue:
		return corev1.EventTypeNormal, "Connect", ""
	case c.Type == fleetv1alpha1.ConditionConnected && c.Status == metav1.ConditionFalse &&
		!meta.IsStatusConditionFalse(mc.Status.Conditions, fleetv1alpha1.ConditionCredentialsValid):
		return corev1.EventTypeWarning, "Connect", ""
	case c.Type == fleetv1alpha1.ConditionCredentialsValid && c.Status == metav1.ConditionFalse:
		return corev1.EventTypeWarning, "CheckCredentials", ""
	}
	return "", "", ""
}

// tokenExpired reports a member token past its exp claim: the hub renews tokens before they
// expire, but an expired one cannot be renewed (renewal authenticates with it), so only a
// person with admin access to the member can issue a new one; the message says how. The
// hub's clock decides, so an expired token is never sent to the member at all.
func tokenExpired(mc *fleetv1alpha1.MemberCluster, claims membertoken.Claims, now time.Time) *CredentialError {
	if now.Before(claims.Expiry) {
		return nil
	}
	ref := mc.Spec.KubeconfigSecretRef
	fix := fmt.Sprintf("write a kubeconfig with a valid token into Secret %s/%s", ref.Namespace, ref.Name)
	if mc.Labels[fleetv1alpha1.LabelRegistration] == fleetv1alpha1.RegistrationFleetctl {
		fix = fmt.Sprintf("issue a new one with admin access to the member: fleetctl rotate-credentials %s --member-kubeconfig <member admin kubeconfig>", mc.Name)
		if ref.Namespace != fleetv1alpha1.DefaultHubNamespace {
			fix += " --hub-namespace " + ref.Namespace
		}
	}
	return &CredentialError{Reason: fleetv1alpha1.ReasonTokenExpired, Detail: fmt.Sprintf(
		"the member token in Secret %s/%s expired at %s and cannot be renewed any more (the hub renews tokens well before they expire, but was not running or could not reach the member in time); %s",
		ref.Namespace, ref.Name, claims.Expiry.UTC().Format(time.RFC3339), fix)}
}

// throttleHeartbeat keeps the last written probe time while it is younger than the heartbeat:
// every probe refreshes it, and without this each probe would be a status write. Steady
// state costs one write per member per heartbeat; any other change is written at once.
// Probe times come in steps of the probe interval, so the heartbeat's reconcile (requeued
// one heartbeat after the last) finds a probe time up to one interval short of a heartbeat
// after the written one: that counts as due, or every other heartbeat would be skipped
// and lastProbeTime would age to twice the heartbeat.
func (r *MemberClusterReconciler) throttleHeartbeat(mc *fleetv1alpha1.MemberCluster, written *metav1.Time) {
	now := mc.Status.LastProbeTime
	due := r.Heartbeat - min(r.Connections.opts.ProbeInterval, r.Heartbeat/2)
	if written != nil && now != nil && now.Sub(written.Time) < due {
		mc.Status.LastProbeTime = written
	}
}

// loadCredentials returns a CredentialError for what a user must fix (a refused reference,
// a missing or rejected kubeconfig, a refused endpoint) and a plain error for a hub hiccup
// (a read that failed for another reason than NotFound), which says nothing about the
// credentials.
func (r *MemberClusterReconciler) loadCredentials(ctx context.Context, mc *fleetv1alpha1.MemberCluster) (*Credentials, *CredentialError, error) {
	ref := mc.Spec.KubeconfigSecretRef
	if ce, err := r.Registration.secretRefAllowed(ctx, r.Client, mc); ce != nil || err != nil {
		return nil, ce, err
	}
	key := ref.Key
	if key == "" {
		key = fleetv1alpha1.DefaultKubeconfigKey
	}
	secretKey := types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}
	memoKey := secretKey.String() + "/" + key
	// Unchanged since the credentials were loaded (the heartbeat's reconcile): nothing to read.
	if creds := r.memo.get(mc.Name, memoKey, cachedSecretVersion(ctx, r.Client, secretKey)); creds != nil {
		return creds, nil, nil
	}
	secret := &corev1.Secret{}
	if err := r.SecretReader.Get(ctx, secretKey, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &CredentialError{Reason: fleetv1alpha1.ReasonSecretNotFound,
				Detail: fmt.Sprintf("kubeconfig Secret %s/%s not found", ref.Namespace, ref.Name)}, nil
		}
		return nil, nil, fmt.Errorf("read kubeconfig Secret %s/%s of cluster %q: %w", ref.Namespace, ref.Name, mc.Name, err)
	}
	data, ok := secret.Data[key]
	if !ok {
		return nil, &CredentialError{Reason: fleetv1alpha1.ReasonKeyNotFound,
			Detail: fmt.Sprintf("kubeconfig Secret %s/%s has no key %q", ref.Namespace, ref.Name, key)}, nil
	}
	creds, err := LoadCredentials(data, r.Policy)
	if err != nil {
		ce, ok := AsCredentialError(err)
		if !ok {
			ce = &CredentialError{Reason: fleetv1alpha1.ReasonInvalidKubeconfig, Detail: err.Error()}
		}
		log.FromContext(ctx).Info("kubeconfig rejected", "secret", ref.Namespace+"/"+ref.Name, "reason", ce.Reason, "field", ce.Field)
		return nil, &CredentialError{Reason: ce.Reason, Field: ce.Field,
			Detail: fmt.Sprintf("kubeconfig in Secret %s/%s key %q: %s", ref.Namespace, ref.Name, key, ce.Error())}, nil
	}
	resolver := r.Resolver
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	if ce := CheckEndpoint(ctx, resolver, creds.Host, r.Policy); ce != nil {
		return nil, &CredentialError{Reason: ce.Reason,
			Detail: fmt.Sprintf("kubeconfig in Secret %s/%s key %q: %s", ref.Namespace, ref.Name, key, ce.Error())}, nil
	}
	r.memo.put(mc.Name, memoKey, secret.ResourceVersion, creds)
	return creds, nil, nil
}

// secretReadFailed handles a kubeconfig Secret that could not be read for a passing reason
// (timeout, throttling, 5xx, a permission briefly missing): a healthy connection is kept
// and its conditions left alone; a member without a connection says it is waiting. The
// error goes back to the workqueue, which retries with backoff (the patcher adds
// Reconciling=True for it).
func (r *MemberClusterReconciler) secretReadFailed(mc *fleetv1alpha1.MemberCluster, readErr error) error {
	if _, connected := r.Connections.Health(mc.Name); !connected {
		ref := mc.Spec.KubeconfigSecretRef
		status.Set(mc, fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionUnknown, fleetv1alpha1.ReasonSecretReadFailed,
			fmt.Sprintf("cannot read kubeconfig Secret %s/%s (%s); retrying", ref.Namespace, ref.Name, apierrors.ReasonForError(readErr)))
	}
	return readErr
}

// setCredentialsInvalid reports credentials the policy rejects; Ready (False) and Stalled
// carry the same reason, set by the patcher for the Stalled error.
func setCredentialsInvalid(mc *fleetv1alpha1.MemberCluster, ce *CredentialError) {
	msg := ce.Detail
	status.Set(mc, fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionFalse, ce.Reason, msg)
	status.Set(mc, fleetv1alpha1.ConditionConnected, metav1.ConditionFalse, ce.Reason, "not connecting: "+msg)
	mc.Status.ObservedCredentialHash = ""
}

func setConnected(mc *fleetv1alpha1.MemberCluster, hash string, h Health) {
	msg := "kubeconfig passes the hub's credential policy"
	if exp := mc.Status.CredentialsExpireAt; exp != nil {
		msg += fmt.Sprintf("; its member token expires at %s", exp.UTC().Format(time.RFC3339))
	}
	status.Set(mc, fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionTrue, fleetv1alpha1.ReasonValid, msg)
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
			status.Set(mc, fleetv1alpha1.ConditionConnected, metav1.ConditionUnknown, fleetv1alpha1.ReasonConnecting, h.Message)
			status.Set(mc, fleetv1alpha1.ConditionReady, metav1.ConditionUnknown, fleetv1alpha1.ReasonConnecting, h.Message)
		}
		return
	}
	if h.Connected {
		status.Set(mc, fleetv1alpha1.ConditionConnected, metav1.ConditionTrue, fleetv1alpha1.ReasonConnected, h.Message)
		status.Set(mc, fleetv1alpha1.ConditionReady, metav1.ConditionTrue, fleetv1alpha1.ReasonHealthy,
			fmt.Sprintf("connected; Kubernetes %s, %d nodes", h.Version, h.Nodes))
		return
	}
	msg = h.Message
	if h.Failures > 0 {
		msg = fmt.Sprintf("%s (%d failed probes in a row)", msg, h.Failures)
	}
	status.Set(mc, fleetv1alpha1.ConditionConnected, metav1.ConditionFalse, h.Reason, msg)
	status.Set(mc, fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonNotConnected, msg)
}
