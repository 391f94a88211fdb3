package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/membertoken"
)

// rotateOptions are the flags and argument of `fleetctl rotate-credentials`.
type rotateOptions struct {
	name     string
	member   memberFlags
	lifetime time.Duration
	timeout  time.Duration
}

func newRotateCommand(hub *hubFlags) *cobra.Command {
	o := &rotateOptions{}
	cmd := &cobra.Command{
		Use:   "rotate-credentials NAME",
		Short: "Give the hub a new token for a member registered by fleetctl register, now",
		Long: `rotate-credentials replaces the member token the hub holds for NAME.

Without --member-kubeconfig it asks the hub to renew the short-lived token at once (the
annotation fleet.flotilla.dev/rotate-credentials on the MemberCluster), waits until the
hub's kubeconfig Secret holds the new token, and prints its expiry. The hub requests the
new token from the member with the current one, exactly as in its scheduled renewals; the
previous token stays valid until it expires.

With --member-kubeconfig, fleetctl issues the new token itself with your credentials for
the member and writes it into the hub's Secret. That is the way back for a member whose
token expired (the MemberCluster says TokenExpired): an expired token cannot renew itself.
It is also the only way to rotate a long-lived token (register --long-lived-token): the
hub's ServiceAccount and its token Secret in the member are deleted, which revokes the old
token at once, and made again.`,
		Example: `  fleetctl rotate-credentials eu-1
  fleetctl rotate-credentials eu-1 --member-kubeconfig ~/.kube/eu-1.yaml`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeMembers(hub),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return runRotate(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), hub, o)
		},
	}
	o.member.bind(cmd, "Kubeconfig with admin access to the member: fleetctl then issues the new token itself (needed for an expired or long-lived token).")
	cmd.Flags().DurationVar(&o.lifetime, "token-lifetime", defaultTokenLifetime,
		"Lifetime of a short-lived token issued with --member-kubeconfig (at least 10m).")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 2*time.Minute, "How long to wait for the hub to rotate the token.")
	return cmd
}

// hubSecretOf is a fleetctl-registered member's kubeconfig Secret on the hub and its token.
type hubSecretOf struct {
	mc     *fleetv1alpha1.MemberCluster
	secret *corev1.Secret
	key    string
	token  string
	// claims of a short-lived token; shortLived is false for a long-lived one.
	claims     membertoken.Claims
	shortLived bool
}

func runRotate(ctx context.Context, out, errOut io.Writer, hub *hubFlags, o *rotateOptions) error {
	if err := validateClusterName(o.name); err != nil {
		return err
	}
	if o.lifetime < minTokenLifetime {
		return fmt.Errorf("invalid --token-lifetime %s: the API server issues no token shorter than %s", o.lifetime, minTokenLifetime)
	}
	hubCfg, err := hub.restConfig()
	if err != nil {
		return err
	}
	hubClient, err := newClient(hubCfg, errOut)
	if err != nil {
		return err
	}
	cur, err := readHubSecret(ctx, hubClient, o.name)
	if err != nil {
		return err
	}
	if o.member.kubeconfig != "" {
		return rotateWithMemberAccess(ctx, out, errOut, hubClient, cur, o)
	}
	switch {
	case !cur.shortLived:
		return fmt.Errorf("member %q has a long-lived token (registered with --long-lived-token), which the hub does not renew; "+
			"rotating it needs admin access to the member: add --member-kubeconfig FILE", o.name)
	case !time.Now().Before(cur.claims.Expiry):
		return fmt.Errorf("member %q: its token expired at %s, and an expired token cannot be renewed by the hub; "+
			"issue a new one with admin access to the member: add --member-kubeconfig FILE", o.name, formatTime(cur.claims.Expiry))
	case cur.secret.Annotations[fleetv1alpha1.AnnotationRenewToken] != "true":
		return fmt.Errorf("the hub does not renew the token of member %q (Secret %s/%s lacks the annotation %s: \"true\"); "+
			"run fleetctl register again, or add --member-kubeconfig FILE", o.name, cur.secret.Namespace, cur.secret.Name, fleetv1alpha1.AnnotationRenewToken)
	}
	return rotateByHub(ctx, out, hubClient, cur, o)
}

// readHubSecret reads the MemberCluster name, which fleetctl must have registered, and its
// kubeconfig Secret.
func readHubSecret(ctx context.Context, c client.Client, name string) (*hubSecretOf, error) {
	mc := &fleetv1alpha1.MemberCluster{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, mc); err != nil {
		return nil, fmt.Errorf("hub: get membercluster %s: %w", name, err)
	}
	if src := mc.Labels[fleetv1alpha1.LabelRegistration]; src != fleetv1alpha1.RegistrationFleetctl {
		return nil, fmt.Errorf("hub: membercluster %s was registered by %s, not fleetctl: its credentials are that source's to rotate", name, describeSource(src))
	}
	ref := mc.Spec.KubeconfigSecretRef
	cur := &hubSecretOf{mc: mc, secret: &corev1.Secret{}, key: ref.Key}
	if cur.key == "" {
		cur.key = fleetv1alpha1.DefaultKubeconfigKey
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, cur.secret); err != nil {
		return nil, fmt.Errorf("hub: get secret %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	token, err := membertoken.FromKubeconfig(cur.secret.Data[cur.key])
	if err != nil {
		return nil, fmt.Errorf("hub: secret %s/%s key %q: %w", ref.Namespace, ref.Name, cur.key, err)
	}
	cur.token = token
	cur.claims, cur.shortLived = membertoken.Parse(token)
	return cur, nil
}

// rotateByHub asks the hub for a new token and waits until the Secret holds it.
//
// The hub does the rotation rather than fleetctl for two reasons: the hub is the one writer
// of the token during its life (no race between a renewal and a rotation writing the Secret),
// and it reaches the member at the address in the kubeconfig, which this machine may not
// (--member-server). The request is an annotation whose value is a timestamp; the hub writes
// the value it served into the Secret with the new token, so "served" is exact.
func rotateByHub(ctx context.Context, out io.Writer, c client.Client, cur *hubSecretOf, o *rotateOptions) error {
	request := time.Now().UTC().Format(time.RFC3339Nano)
	base := cur.mc.DeepCopy()
	if cur.mc.Annotations == nil {
		cur.mc.Annotations = map[string]string{}
	}
	cur.mc.Annotations[fleetv1alpha1.AnnotationRotateCredentials] = request
	if err := c.Patch(ctx, cur.mc, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("hub: ask for a rotation on membercluster %s: %w", o.name, err)
	}
	hs := hubSteps(out)
	hs.printf("membercluster %s annotated %s=%s; waiting for fleet-controller to rotate the token...",
		o.name, fleetv1alpha1.AnnotationRotateCredentials, request)
	secret := cur.secret
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, pollInterval, o.timeout, true, func(context.Context) (bool, error) {
		lastErr = c.Get(ctx, client.ObjectKeyFromObject(secret), secret)
		return lastErr == nil && secret.Annotations[fleetv1alpha1.AnnotationRotatedFor] == request, nil
	})
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil && lastErr != nil:
		return fmt.Errorf("hub: read secret %s/%s: %w", secret.Namespace, secret.Name, lastErr)
	case err != nil:
		return fmt.Errorf("the hub did not rotate the token of %q within %s: is fleet-controller running? "+
			"Its events on the MemberCluster say why a renewal failed (kubectl describe membercluster %s)", o.name, o.timeout, o.name)
	}
	token, err := membertoken.FromKubeconfig(secret.Data[cur.key])
	if err != nil {
		return fmt.Errorf("hub: secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	claims, _ := membertoken.Parse(token)
	fmt.Fprintf(out, "Rotated the token of %q: the new one is valid until %s (the previous one stays valid until %s).\n",
		o.name, formatTime(claims.Expiry), formatTime(cur.claims.Expiry))
	return nil
}

// rotateWithMemberAccess issues the new token with the user's credentials for the member and
// writes it into the hub's Secret, leaving the rest of the kubeconfig as it is.
func rotateWithMemberAccess(ctx context.Context, out, errOut io.Writer, hubClient client.Client, cur *hubSecretOf, o *rotateOptions) error {
	memberCfg, err := o.member.restConfig()
	if err != nil {
		return err
	}
	memberClient, err := newClient(memberCfg, errOut)
	if err != nil {
		return err
	}
	access := &memberAccess{c: memberClient, cfg: memberCfg, steps: memberSteps(out, o.name)}
	var token []byte
	var expiry time.Time
	if cur.shortLived {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount, Namespace: memberNamespace}}
		if err := memberClient.Get(ctx, client.ObjectKeyFromObject(sa), sa); err != nil {
			return fmt.Errorf("member %q: get serviceaccount %s/%s (run fleetctl register first if it is gone): %w", o.name, memberNamespace, hubServiceAccount, err)
		}
		if token, expiry, err = access.requestToken(ctx, sa, o.lifetime); err != nil {
			return fmt.Errorf("member %q: %w", o.name, err)
		}
		access.steps.printf("token requested for serviceaccount %s/%s, valid until %s", memberNamespace, hubServiceAccount, formatTime(expiry))
	} else {
		// A long-lived token names its Secret and its ServiceAccount's UID and nothing that
		// changes: a token Secret made again under the same name holds the very same token.
		// So the ServiceAccount is made again too, which revokes every token of the old one
		// at once (RBAC bindings name it by name and carry over).
		for _, obj := range []struct {
			what string
			obj  client.Object
		}{
			{"secret " + memberNamespace + "/" + hubTokenSecret, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: hubTokenSecret, Namespace: memberNamespace}}},
			{"serviceaccount " + memberNamespace + "/" + hubServiceAccount, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount, Namespace: memberNamespace}}},
		} {
			if err := access.removeLeftover(ctx, obj.what, obj.obj, "revokes the old token"); err != nil {
				return fmt.Errorf("member %q: %w", o.name, err)
			}
		}
		if _, err := access.ensureServiceAccount(ctx); err != nil {
			return fmt.Errorf("member %q: %w", o.name, err)
		}
		creds, err := access.ensureLongLivedToken(ctx)
		if err != nil {
			return fmt.Errorf("member %q: %w", o.name, err)
		}
		token = creds.token
	}
	kubeconfig, err := membertoken.Replace(cur.secret.Data[cur.key], string(token))
	if err != nil {
		return fmt.Errorf("hub: secret %s/%s: %w", cur.secret.Namespace, cur.secret.Name, err)
	}
	if err := verifyHubKubeconfig(ctx, kubeconfig); err != nil {
		// The hub may reach an address this machine cannot (register --member-server).
		access.steps.printf("could not check the new token from this machine (%v); the hub must be able to use it", err)
	}
	secret := cur.secret
	base := secret.DeepCopy()
	secret.Data[cur.key] = kubeconfig
	if err := hubClient.Patch(ctx, secret, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsConflict(err) {
			return fmt.Errorf("hub: secret %s/%s changed while the token was issued (the hub renewed it?); run the command again: %w",
				secret.Namespace, secret.Name, err)
		}
		return fmt.Errorf("hub: write secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	hubSteps(out).printf("secret %s/%s updated", secret.Namespace, secret.Name)
	if expiry.IsZero() {
		fmt.Fprintf(out, "Rotated the token of %q: a new long-lived token; the old one is revoked.\n", o.name)
	} else {
		fmt.Fprintf(out, "Rotated the token of %q: the new one is valid until %s; the hub renews it from now on.\n", o.name, formatTime(expiry))
	}
	return nil
}
