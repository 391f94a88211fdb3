package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/clusters"
	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/membertoken"
)

// TestMemberTokens follows a member's credentials through their life: register issues a
// short-lived token, the hub renews it while the member stays Ready, rotate-credentials
// replaces it at once, a token that expired while the hub was down is reported with the
// command that fixes it, and --long-lived-token still gives the legacy token Secret.
func TestMemberTokens(t *testing.T) {
	// The member's audit log shows which token the hub's requests carry.
	f := localfleet.StartForTest(t, localfleet.Options{Members: 1, AuditLog: true})
	hub := adminClient(t, f.Hub)
	m := f.Members[0]
	member := adminClient(t, m)
	tokenSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-hub-token", Namespace: "flotilla-system"}}

	t.Run("register issues a short-lived token and no long-lived one", func(t *testing.T) {
		before := time.Now()
		mustFleetctl(t, registerArgs(f, "m1", m, "--token-lifetime", "10m")...)
		secret := hubKubeconfigSecret(t, hub, "m1")
		if got := secret.Annotations[fleetv1alpha1.AnnotationRenewToken]; got != "true" {
			t.Errorf("hub Secret annotation %s = %q, want true", fleetv1alpha1.AnnotationRenewToken, got)
		}
		claims := storedClaims(t, hub, "m1")
		if claims.Lifetime() != 10*time.Minute || claims.Expiry.Before(before.Add(9*time.Minute)) || claims.Expiry.After(time.Now().Add(11*time.Minute)) {
			t.Errorf("token issued at %s expires at %s, want a 10-minute token issued now", claims.IssuedAt, claims.Expiry)
		}
		if claims.Namespace != "flotilla-system" || claims.ServiceAccount != "flotilla-hub" {
			t.Errorf("token is for %s/%s, want flotilla-system/flotilla-hub", claims.Namespace, claims.ServiceAccount)
		}
		assertGone(t, member, tokenSecret.DeepCopy())
		// The token may request tokens for its own ServiceAccount, and for no other.
		sa := storedKubeconfigClient(t, hub, "m1")
		other := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "flotilla-system"}}
		if err := sa.SubResource("token").Create(t.Context(), other, &authenticationv1.TokenRequest{}); !apierrors.IsForbidden(err) {
			t.Errorf("hub token requesting a token for serviceaccount default: got %v, want Forbidden", err)
		}
	})

	t.Run("the hub renews the token while the member stays Ready", func(t *testing.T) {
		// 1% of 10 minutes: a renewal every 6 seconds.
		runTokenHub(t, f, 0.01)
		ready := waitReady(t, hub, "m1")
		first, _ := membertoken.FromKubeconfig(hubKubeconfigSecret(t, hub, "m1").Data["value"])
		var renewed membertoken.Claims
		eventually(t, 60*time.Second, "a renewed token in the Secret and in status, the member Ready throughout", func() error {
			mc := memberClusterOf(t, hub, "m1")
			if c := meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
				t.Fatalf("member not Ready during renewal: %+v", c)
			}
			token, _ := membertoken.FromKubeconfig(hubKubeconfigSecret(t, hub, "m1").Data["value"])
			if token == first {
				return errors.New("the Secret still holds the first token")
			}
			renewed, _ = membertoken.Parse(token)
			if exp := mc.Status.CredentialsExpireAt; exp == nil || exp.Unix() < renewed.Expiry.Unix() {
				return fmt.Errorf("status.credentialsExpireAt = %v, want at least %s", exp, renewed.Expiry)
			}
			return nil
		})
		if renewed.Lifetime() != 10*time.Minute {
			t.Errorf("renewed token lifetime %s, want the hub's 10m", renewed.Lifetime())
		}
		fleettest.Consistently(t, 3*time.Second, "the member Ready with renewed tokens", func() error {
			c := meta.FindStatusCondition(memberClusterOf(t, hub, "m1").Status.Conditions, fleetv1alpha1.ConditionReady)
			if c == nil || c.Status != metav1.ConditionTrue || !c.LastTransitionTime.Equal(&ready.LastTransitionTime) {
				return fmt.Errorf("Ready = %+v, want True since %s", c, ready.LastTransitionTime)
			}
			return nil
		})
		// The connection sends the renewed tokens: after a request with one of them, the hub
		// never goes back to the first.
		firstClaims, _ := membertoken.Parse(first)
		mark, err := m.AuditMark()
		must(t, err)
		var seen localfleet.AuditMark
		eventually(t, 20*time.Second, "a request of the hub with a renewed token", func() error {
			reqs, err := m.Requests(mark, hubUsername)
			if err != nil {
				return err
			}
			for _, r := range reqs {
				if r.CredentialID != "" && r.CredentialID != "JTI="+firstClaims.ID {
					seen, err = m.AuditMark()
					return err
				}
			}
			return fmt.Errorf("%d requests of the hub since the renewal, none with a renewed token", len(reqs))
		})
		fleettest.Consistently(t, 2*time.Second, "no request of the hub with the first token", func() error {
			reqs, err := m.Requests(seen, hubUsername)
			if err != nil {
				return err
			}
			for _, r := range reqs {
				if r.CredentialID == "JTI="+firstClaims.ID {
					return fmt.Errorf("%s sent with the first token", r)
				}
			}
			return nil
		})
		// The first token is not revoked, only replaced: it is valid until it expires.
		if _, err := tokenUser(t, m.Config, first); err != nil {
			t.Errorf("the replaced token: %v, want it still valid", err)
		}
	})

	t.Run("rotate-credentials replaces the token now", func(t *testing.T) {
		runTokenHub(t, f, 0.5) // no scheduled renewal for 5 minutes
		waitReady(t, hub, "m1")
		before, _ := membertoken.FromKubeconfig(hubKubeconfigSecret(t, hub, "m1").Data["value"])
		out := mustFleetctl(t, "rotate-credentials", "m1", "--kubeconfig", f.Hub.KubeconfigPath)
		assertContains(t, out, `Rotated the token of "m1": the new one is valid until`)
		secret := hubKubeconfigSecret(t, hub, "m1")
		after, _ := membertoken.FromKubeconfig(secret.Data["value"])
		if after == before {
			t.Fatal("the Secret holds the same token after rotate-credentials")
		}
		request := memberClusterOf(t, hub, "m1").Annotations[fleetv1alpha1.AnnotationRotateCredentials]
		if got := secret.Annotations[fleetv1alpha1.AnnotationRotatedFor]; request == "" || got != request {
			t.Errorf("Secret annotation %s = %q, want the request %q", fleetv1alpha1.AnnotationRotatedFor, got, request)
		}
		if user, err := tokenUser(t, m.Config, after); err != nil || user != hubUsername {
			t.Errorf("the rotated token authenticates as %q (%v), want %s", user, err, hubUsername)
		}
		waitReady(t, hub, "m1")
	})

	t.Run("a token that expired while the hub was down says TokenExpired and how to fix it", func(t *testing.T) {
		secret := hubKubeconfigSecret(t, hub, "m1")
		base := secret.DeepCopy()
		expired := unsignedToken(t, time.Now().Add(-20*time.Minute), time.Now().Add(-10*time.Minute))
		kubeconfig, err := membertoken.Replace(secret.Data["value"], expired)
		must(t, err)
		secret.Data["value"] = kubeconfig
		must(t, hub.Patch(t.Context(), secret, client.MergeFrom(base)))

		runTokenHub(t, f, 0.5)
		mc := waitCondition(t, hub, "m1", fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionFalse, fleetv1alpha1.ReasonTokenExpired)
		c := meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionCredentialsValid)
		if want := "fleetctl rotate-credentials m1 --member-kubeconfig"; !strings.Contains(c.Message, want) {
			t.Errorf("TokenExpired message %q does not say %q", c.Message, want)
		}
		if r := meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionReady); r == nil || r.Status != metav1.ConditionFalse {
			t.Errorf("Ready = %+v, want False", r)
		}

		_, err = fleetctl(t, "rotate-credentials", "m1", "--kubeconfig", f.Hub.KubeconfigPath)
		if err == nil || !strings.Contains(err.Error(), "expired at") || !strings.Contains(err.Error(), "--member-kubeconfig") {
			t.Errorf("rotate-credentials of an expired token without the member: got %v, want an error naming --member-kubeconfig", err)
		}
		out := mustFleetctl(t, "rotate-credentials", "m1", "--kubeconfig", f.Hub.KubeconfigPath, "--member-kubeconfig", m.KubeconfigPath)
		assertContains(t, out, `Rotated the token of "m1": the new one is valid until`, "hub: secret flotilla-system/m1-kubeconfig updated")
		waitReady(t, hub, "m1")
	})

	t.Run("--long-lived-token gives a token Secret that is never renewed", func(t *testing.T) {
		out := mustFleetctl(t, registerArgs(f, "m1", m, "--long-lived-token")...)
		assertContains(t, out,
			`member "m1": rolebinding flotilla-system/flotilla-hub-token deleted (not needed with --long-lived-token)`,
			`member "m1": role flotilla-system/flotilla-hub-token deleted (not needed with --long-lived-token)`,
			`member "m1": secret flotilla-system/flotilla-hub-token created`,
			"hub: secret flotilla-system/m1-kubeconfig updated",
		)
		secret := hubKubeconfigSecret(t, hub, "m1")
		if _, ok := secret.Annotations[fleetv1alpha1.AnnotationRenewToken]; ok {
			t.Errorf("hub Secret of a long-lived token is annotated %s", fleetv1alpha1.AnnotationRenewToken)
		}
		legacy, _ := membertoken.FromKubeconfig(secret.Data["value"])
		if _, ok := membertoken.Parse(legacy); ok {
			t.Error("--long-lived-token stored a token that expires")
		}

		runTokenHub(t, f, 0.01)
		waitReady(t, hub, "m1")
		if exp := memberClusterOf(t, hub, "m1").Status.CredentialsExpireAt; exp != nil {
			t.Errorf("status.credentialsExpireAt = %s for a token that never expires", exp)
		}
		_, err := fleetctl(t, "rotate-credentials", "m1", "--kubeconfig", f.Hub.KubeconfigPath)
		if err == nil || !strings.Contains(err.Error(), "long-lived token") {
			t.Errorf("rotate-credentials of a long-lived token without the member: got %v", err)
		}
		out = mustFleetctl(t, "rotate-credentials", "m1", "--kubeconfig", f.Hub.KubeconfigPath, "--member-kubeconfig", m.KubeconfigPath)
		assertContains(t, out, `Rotated the token of "m1": a new long-lived token; the old one is revoked.`)
		rotated, _ := membertoken.FromKubeconfig(hubKubeconfigSecret(t, hub, "m1").Data["value"])
		if rotated == legacy {
			t.Fatal("the Secret holds the same long-lived token after rotate-credentials")
		}
		eventually(t, 10*time.Second, "the old long-lived token revoked", func() error {
			if _, err := tokenUser(t, m.Config, legacy); !apierrors.IsUnauthorized(err) {
				return fmt.Errorf("old token: got %w, want Unauthorized", err)
			}
			return nil
		})
		// The hub never renewed it: the rotated token is still the one in the Secret.
		waitReady(t, hub, "m1")
		if now, _ := membertoken.FromKubeconfig(hubKubeconfigSecret(t, hub, "m1").Data["value"]); now != rotated {
			t.Error("the hub replaced a long-lived token")
		}

		// Back to short-lived tokens: the long-lived one is revoked.
		out = mustFleetctl(t, registerArgs(f, "m1", m)...)
		assertContains(t, out, `member "m1": secret flotilla-system/flotilla-hub-token deleted (its long-lived token is revoked; the hub uses short-lived tokens)`)
		assertGone(t, member, tokenSecret.DeepCopy())
		eventually(t, 10*time.Second, "the long-lived token revoked", func() error {
			if _, err := tokenUser(t, m.Config, rotated); !apierrors.IsUnauthorized(err) {
				return fmt.Errorf("long-lived token: got %w, want Unauthorized", err)
			}
			return nil
		})
		if err := member.Get(t.Context(), client.ObjectKey{Namespace: "flotilla-system", Name: "flotilla-hub-token"}, &rbacv1.Role{}); err != nil {
			t.Errorf("Role flotilla-hub-token after switching back: %v", err)
		}
		waitReady(t, hub, "m1")
	})
}

// runTokenHub runs fleet-controller's cluster registry in process, with 10-minute member
// tokens renewed after renewFraction of their lifetime, until the end of the (sub)test.
func runTokenHub(t *testing.T, f *localfleet.Fleet, renewFraction float64) {
	t.Helper()
	scheme := runtime.NewScheme()
	must(t, clientgoscheme.AddToScheme(scheme))
	must(t, fleetv1alpha1.AddToScheme(scheme))
	fleettest.RunManager(t, f.Hub.Config, scheme, func(mgr ctrl.Manager) error {
		_, err := clusters.Setup(mgr, clusters.SetupOptions{
			HubNamespace: fleetv1alpha1.DefaultHubNamespace,
			Policy:       clusters.CredentialPolicy{AllowLoopback: true}, // local fleet members listen on loopback
			Connections:  clusters.Options{ProbeInterval: 500 * time.Millisecond, ProbeTimeout: time.Second, FailureThreshold: 2, MaxBackoff: time.Second},
			Heartbeat:    time.Minute,
			// The shortest lifetime an API server issues.
			MemberTokenLifetime:      clusters.MinMemberTokenLifetime,
			MemberTokenRenewFraction: renewFraction,
		})
		return err
	})
}

func memberClusterOf(t *testing.T, hub client.Client, name string) *fleetv1alpha1.MemberCluster {
	t.Helper()
	mc := &fleetv1alpha1.MemberCluster{}
	must(t, hub.Get(t.Context(), client.ObjectKey{Name: name}, mc))
	return mc
}

// waitReady waits for the MemberCluster to be Ready with the kubeconfig its Secret holds now
// and returns its Ready condition.
func waitReady(t *testing.T, hub client.Client, name string) metav1.Condition {
	t.Helper()
	var ready metav1.Condition
	eventually(t, 30*time.Second, fmt.Sprintf("membercluster %s Ready with the current kubeconfig", name), func() error {
		want := clusters.CredentialHash(hubKubeconfigSecret(t, hub, name).Data["value"])
		mc := memberClusterOf(t, hub, name)
		c := meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue || mc.Status.ObservedCredentialHash != want {
			return fmt.Errorf("Ready = %+v, observed credentials %q, want %q", c, mc.Status.ObservedCredentialHash, want)
		}
		ready = *c
		return nil
	})
	return ready
}

func waitCondition(t *testing.T, hub client.Client, name, typ string, status metav1.ConditionStatus, reason string) *fleetv1alpha1.MemberCluster {
	t.Helper()
	var mc *fleetv1alpha1.MemberCluster
	eventually(t, 30*time.Second, fmt.Sprintf("membercluster %s %s=%s %s", name, typ, status, reason), func() error {
		mc = memberClusterOf(t, hub, name)
		c := meta.FindStatusCondition(mc.Status.Conditions, typ)
		if c == nil || c.Status != status || (reason != "" && c.Reason != reason) {
			return fmt.Errorf("%s = %+v", typ, c)
		}
		return nil
	})
	return mc
}

// storedClaims are the claims of the token in the hub's kubeconfig Secret of cluster.
func storedClaims(t *testing.T, hub client.Client, cluster string) membertoken.Claims {
	t.Helper()
	token, err := membertoken.FromKubeconfig(hubKubeconfigSecret(t, hub, cluster).Data["value"])
	must(t, err)
	claims, ok := membertoken.Parse(token)
	if !ok {
		t.Fatal("the hub's kubeconfig holds no short-lived token")
	}
	return claims
}

// tokenUser is who the member says token is.
func tokenUser(t *testing.T, member *rest.Config, token string) (string, error) {
	t.Helper()
	cfg := rest.AnonymousClientConfig(member)
	cfg.BearerToken = token
	review := &authenticationv1.SelfSubjectReview{}
	if err := configClient(t, cfg).Create(context.Background(), review); err != nil {
		return "", err
	}
	return review.Status.UserInfo.Username, nil
}

// unsignedToken is JWT-shaped, for the hub's ServiceAccount, and signed by nobody.
func unsignedToken(t *testing.T, iat, exp time.Time) string {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"iat": iat.Unix(), "exp": exp.Unix(), "sub": hubUsername,
		"kubernetes.io": map[string]any{"namespace": "flotilla-system", "serviceaccount": map[string]any{"name": "flotilla-hub"}},
	})
	must(t, err)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(body) + "." + enc([]byte("unsigned"))
}
