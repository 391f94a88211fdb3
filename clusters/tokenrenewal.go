package clusters

import (
	"context"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/membertoken"
	"github.com/flotilla-dev/flotilla/internal/requeue"
)

// Renewal writes the new token back into the kubeconfig Secret, in the hub namespace only.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=update;patch,namespace=flotilla-system

// Defaults of the token renewal.
const (
	// DefaultMemberTokenLifetime is the lifetime of the tokens the hub requests.
	DefaultMemberTokenLifetime = time.Hour
	// MinMemberTokenLifetime is the shortest lifetime a kube-apiserver issues (TokenRequest
	// refuses expirationSeconds below 600).
	MinMemberTokenLifetime = 10 * time.Minute
	// DefaultMemberTokenRenewFraction: a token is renewed at half its lifetime, so that a hub
	// that is down (or cannot reach the member) for up to half a lifetime loses nothing.
	DefaultMemberTokenRenewFraction = 0.5
)

// TokenRenewalReconciler renews the short-lived ServiceAccount token of a member kubeconfig
// before it expires: it asks the member for a new token for the same ServiceAccount (the
// TokenRequest API, authenticated with the current token, which fleetctl register allowed to
// request tokens for itself only) and writes the new kubeconfig into the Secret. The
// MemberCluster controller sees the Secret change like any credential change, and the
// connection takes the new token in place.
//
// Only Secrets in the hub namespace annotated fleet.flotilla.dev/renew-token: "true" are
// renewed: renewal writes the Secret, and the hub writes no Secret it was not asked to. A
// token without exp (a long-lived token Secret's) is never renewed.
type TokenRenewalReconciler struct {
	Client client.Client
	// SecretReader reads Secret data directly (the cache holds Secret metadata only).
	SecretReader client.Reader
	Policy       CredentialPolicy
	HubNamespace string
	// Lifetime of a new token (at least MinMemberTokenLifetime); RenewFraction of a token's
	// own lifetime (from its iat and exp) after which it is renewed.
	Lifetime      time.Duration
	RenewFraction float64
	// RequestTimeout bounds the TokenRequest call to the member.
	RequestTimeout time.Duration
	Recorder       recorder.EventRecorder
}

// Reconcile renews one member's token when it is due or a rotation was asked for, and
// comes back when the next renewal is due.
func (r *TokenRenewalReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	mc := &fleetv1alpha1.MemberCluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, mc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ref := mc.Spec.KubeconfigSecretRef
	if !mc.DeletionTimestamp.IsZero() || ref.Namespace != r.HubNamespace {
		return ctrl.Result{}, nil
	}
	key := ref.Key
	if key == "" {
		key = fleetv1alpha1.DefaultKubeconfigKey
	}
	secret := &corev1.Secret{}
	if err := r.SecretReader.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, secret); err != nil {
		// A missing Secret is the MemberCluster controller's to report.
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if secret.Annotations[fleetv1alpha1.AnnotationRenewToken] != "true" {
		return ctrl.Result{}, nil
	}
	kubeconfig := secret.Data[key]
	token, err := membertoken.FromKubeconfig(kubeconfig)
	if err != nil {
		return ctrl.Result{}, nil // not a token kubeconfig: nothing to renew (the MemberCluster controller reports a broken one)
	}
	claims, ok := membertoken.Parse(token)
	if !ok {
		return ctrl.Result{}, nil // a long-lived token: never renewed
	}
	now := time.Now()
	rotation := mc.Annotations[fleetv1alpha1.AnnotationRotateCredentials]
	rotate := rotation != "" && rotation != secret.Annotations[fleetv1alpha1.AnnotationRotatedFor]
	switch {
	case !now.Before(claims.Expiry):
		// Renewal authenticates with the token itself: an expired one needs a person
		// (the MemberCluster says TokenExpired and how to fix it).
		if rotate {
			r.Recorder.Eventf(mc, nil, corev1.EventTypeWarning, fleetv1alpha1.ReasonCredentialRenewalFailed, "RotateCredentials",
				"cannot rotate: the member token expired at %s; fleetctl rotate-credentials %s --member-kubeconfig FILE issues a new one",
				claims.Expiry.UTC().Format(time.RFC3339), mc.Name)
		}
		return ctrl.Result{}, nil
	case !rotate && now.Before(claims.RenewAt(r.RenewFraction)):
		return ctrl.Result{RequeueAfter: claims.RenewAt(r.RenewFraction).Sub(now)}, nil
	}
	creds, err := LoadCredentials(kubeconfig, r.Policy)
	if err != nil {
		return ctrl.Result{}, nil // refused by the policy: the MemberCluster controller reports it
	}
	issued, err := r.requestToken(ctx, creds, claims)
	if err != nil {
		// The member's answer goes to the log only; the event carries the classified reason.
		reason, msg := classifyProbeError(err, r.RequestTimeout)
		log.FromContext(ctx).Info("member token renewal failed", "cluster", mc.Name, "reason", reason, "error", err.Error())
		r.Recorder.Eventf(mc, nil, corev1.EventTypeWarning, fleetv1alpha1.ReasonCredentialRenewalFailed, "RenewCredentials",
			"cannot renew the member token, which expires at %s: %s: %s", claims.Expiry.UTC().Format(time.RFC3339), reason, msg)
		return ctrl.Result{RequeueAfter: renewRetry(claims.Expiry.Sub(now))}, nil
	}
	written, err := r.writeToken(ctx, secret, key, token, issued.Status.Token, rotation, rotate)
	if err != nil || !written {
		return ctrl.Result{}, err
	}
	newExpiry := issued.Status.ExpirationTimestamp.UTC().Format(time.RFC3339)
	if rotate {
		r.Recorder.Eventf(mc, nil, corev1.EventTypeNormal, fleetv1alpha1.ReasonCredentialsRenewed, "RotateCredentials",
			"member token rotated on request; the new one expires at %s", newExpiry)
	} else {
		r.Recorder.Eventf(mc, nil, corev1.EventTypeNormal, fleetv1alpha1.ReasonCredentialsRenewed, "RenewCredentials",
			"member token renewed; the new one expires at %s", newExpiry)
	}
	// The Secret's change brings this reconcile back, which schedules the next renewal.
	return ctrl.Result{}, nil
}

// requestToken asks the member for a new token of the ServiceAccount the current one is
// for, authenticating with the current one.
func (r *TokenRenewalReconciler) requestToken(ctx context.Context, creds *Credentials, claims membertoken.Claims) (*authenticationv1.TokenRequest, error) {
	cs, err := kubernetes.NewForConfig(memberRESTConfig(creds.Config, r.RequestTimeout))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.RequestTimeout)
	defer cancel()
	seconds := int64(r.Lifetime / time.Second)
	return cs.CoreV1().ServiceAccounts(claims.Namespace).CreateToken(ctx, claims.ServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds}}, metav1.CreateOptions{})
}

// writeToken replaces the token in the Secret's kubeconfig, with a resourceVersion
// precondition. On a conflict it reads the Secret again and retries only if it still holds
// the token that was renewed: a Secret someone else gave a new kubeconfig meanwhile
// (fleetctl) is theirs, and the token just issued is dropped. It tells whether it wrote.
func (r *TokenRenewalReconciler) writeToken(ctx context.Context, secret *corev1.Secret, key, oldToken, newToken, rotation string, rotate bool) (bool, error) {
	written := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if current, err := membertoken.FromKubeconfig(secret.Data[key]); err != nil || current != oldToken {
			return nil
		}
		kubeconfig, err := membertoken.Replace(secret.Data[key], newToken)
		if err != nil {
			return nil
		}
		base := secret.DeepCopy()
		secret.Data[key] = kubeconfig
		if rotate {
			if secret.Annotations == nil {
				secret.Annotations = map[string]string{}
			}
			secret.Annotations[fleetv1alpha1.AnnotationRotatedFor] = rotation
		}
		err = r.Client.Patch(ctx, secret, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
		if apierrors.IsConflict(err) {
			if getErr := r.SecretReader.Get(ctx, client.ObjectKeyFromObject(secret), secret); getErr != nil {
				return getErr
			}
			return err
		}
		written = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("write the renewed token into Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	return written, nil
}

// renewRetry is the wait before another attempt at a failed renewal: often enough to renew
// well before the token expires, rarely enough not to hammer a member that is away.
func renewRetry(remaining time.Duration) time.Duration {
	return min(max(remaining/10, 5*time.Second), time.Minute)
}

// SetupWithManager watches MemberClusters (their annotations carry rotation requests) and
// the metadata of the Secrets they reference (a new token schedules the next renewal).
func (r *TokenRenewalReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Lifetime < MinMemberTokenLifetime {
		r.Lifetime = DefaultMemberTokenLifetime
	}
	if r.RenewFraction <= 0 || r.RenewFraction >= 1 {
		r.RenewFraction = DefaultMemberTokenRenewFraction
	}
	if r.RequestTimeout <= 0 {
		r.RequestTimeout = 10 * time.Second
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("tokenrenewal").
		WithOptions(controller.Options{RateLimiter: requeue.Limiter[reconcile.Request]()}).
		// Status heartbeats change nothing here.
		For(&fleetv1alpha1.MemberCluster{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(clustersForSecret(mgr.GetClient()))).
		Complete(r)
}
