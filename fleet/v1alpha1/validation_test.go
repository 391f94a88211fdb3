package v1alpha1_test

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// These tests install the generated CRDs into a real kube-apiserver and check that the
// validation and defaults a user meets are the ones the API promises.

func hubClient(t *testing.T) client.Client {
	t.Helper()
	fleet := localfleet.StartForTest(t, localfleet.Options{Members: 0, NoControllerManager: true})
	scheme := runtime.NewScheme()
	if err := fleetv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(fleet.Hub.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func baseline(name string, mutate func(*fleetv1alpha1.BaselineSpec)) *fleetv1alpha1.Baseline {
	b := &fleetv1alpha1.Baseline{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: fleetv1alpha1.BaselineSpec{
			Resources: []fleetv1alpha1.ResourceSource{{Inline: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n"}},
		},
	}
	if mutate != nil {
		mutate(&b.Spec)
	}
	return b
}

func TestAPIValidation(t *testing.T) {
	c := hubClient(t)
	ctx := context.Background()
	pct := intstr.FromString("25%")
	badPct := intstr.FromString("150%")
	zero := intstr.FromInt32(0)

	tests := []struct {
		name       string
		obj        client.Object
		wantErrors []string // substrings of the API server's message; none means accepted
	}{
		{name: "minimal baseline is accepted", obj: baseline("minimal", nil)},
		{
			name: "rollout with percentage is accepted",
			obj: baseline("rollout-pct", func(s *fleetv1alpha1.BaselineSpec) {
				s.Rollout = &fleetv1alpha1.RolloutStrategy{MaxConcurrent: &pct}
			}),
		},
		{
			name:       "unknown policy names the field",
			obj:        baseline("bad-policy", func(s *fleetv1alpha1.BaselineSpec) { s.Policy = "Sometimes" }),
			wantErrors: []string{"spec.policy", `"Sometimes"`},
		},
		{
			name: "two sources in one entry are rejected",
			obj: baseline("two-sources", func(s *fleetv1alpha1.BaselineSpec) {
				s.Resources[0].ConfigMapRef = &fleetv1alpha1.LocalObjectReference{Name: "cm"}
			}),
			wantErrors: []string{"spec.resources[0]", "exactly one of inline, configMapRef or secretRef"},
		},
		{
			name:       "no resources at all is rejected",
			obj:        baseline("empty", func(s *fleetv1alpha1.BaselineSpec) { s.Resources = nil }),
			wantErrors: []string{"a Baseline needs resources or perNamespace"},
		},
		{
			name: "maxConcurrent over 100% is rejected",
			obj: baseline("bad-pct", func(s *fleetv1alpha1.BaselineSpec) {
				s.Rollout = &fleetv1alpha1.RolloutStrategy{MaxConcurrent: &badPct}
			}),
			wantErrors: []string{"spec.rollout.maxConcurrent", "between 1% and 100%"},
		},
		{
			name: "maxConcurrent of zero is rejected",
			obj: baseline("zero", func(s *fleetv1alpha1.BaselineSpec) {
				s.Rollout = &fleetv1alpha1.RolloutStrategy{MaxConcurrent: &zero}
			}),
			wantErrors: []string{"spec.rollout.maxConcurrent"},
		},
		{
			name:       "baseline name longer than a DNS label is rejected",
			obj:        baseline(strings.Repeat("a", 64), nil),
			wantErrors: []string{"metadata.name must be a DNS label"},
		},
		{
			name: "member cluster without a secret name names the field",
			obj: &fleetv1alpha1.MemberCluster{
				ObjectMeta: metav1.ObjectMeta{Name: "no-secret"},
				Spec: fleetv1alpha1.MemberClusterSpec{
					KubeconfigSecretRef: fleetv1alpha1.SecretKeyReference{Namespace: "flotilla-system"},
				},
			},
			wantErrors: []string{"spec.kubeconfigSecretRef.name"},
		},
		{
			name: "member cluster with a dotted name is rejected",
			obj: &fleetv1alpha1.MemberCluster{
				ObjectMeta: metav1.ObjectMeta{Name: "eu.west"},
				Spec: fleetv1alpha1.MemberClusterSpec{
					KubeconfigSecretRef: fleetv1alpha1.SecretKeyReference{Namespace: "flotilla-system", Name: "eu"},
				},
			},
			wantErrors: []string{"metadata.name must be a DNS label"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Create(ctx, tt.obj)
			if len(tt.wantErrors) == 0 {
				if err != nil {
					t.Fatalf("want the object accepted, got: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want the API server to reject the object mentioning %q, but it was accepted", tt.wantErrors)
			}
			for _, want := range tt.wantErrors {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestAPIDefaults(t *testing.T) {
	c := hubClient(t)
	ctx := context.Background()

	b := baseline("defaults", nil)
	if err := c.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	if b.Spec.Policy != fleetv1alpha1.PolicyEnforce {
		t.Errorf("policy = %q, want Enforce", b.Spec.Policy)
	}
	if b.Spec.Prune == nil || !*b.Spec.Prune {
		t.Errorf("prune = %v, want true", b.Spec.Prune)
	}
	if b.Spec.DeletionPolicy != fleetv1alpha1.DeletionDelete {
		t.Errorf("deletionPolicy = %q, want Delete", b.Spec.DeletionPolicy)
	}
	if b.Spec.ConflictPolicy != fleetv1alpha1.ConflictAbort {
		t.Errorf("conflictPolicy = %q, want Abort", b.Spec.ConflictPolicy)
	}

	mc := &fleetv1alpha1.MemberCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "defaults"},
		Spec: fleetv1alpha1.MemberClusterSpec{
			KubeconfigSecretRef: fleetv1alpha1.SecretKeyReference{Namespace: "flotilla-system", Name: "defaults"},
		},
	}
	if err := c.Create(ctx, mc); err != nil {
		t.Fatal(err)
	}
	if mc.Spec.KubeconfigSecretRef.Key != fleetv1alpha1.DefaultKubeconfigKey {
		t.Errorf("kubeconfigSecretRef.key = %q, want %q", mc.Spec.KubeconfigSecretRef.Key, fleetv1alpha1.DefaultKubeconfigKey)
	}

	bb := &fleetv1alpha1.BaselineBinding{
		ObjectMeta: metav1.ObjectMeta{Name: fleetv1alpha1.BindingName("defaults", "defaults")},
		Spec:       fleetv1alpha1.BaselineBindingSpec{BaselineName: "defaults", ClusterName: "defaults"},
	}
	if err := c.Create(ctx, bb); err != nil {
		t.Fatal(err)
	}
	bb.Spec.ClusterName = "other"
	if err := c.Update(ctx, bb); err == nil || !strings.Contains(err.Error(), "clusterName is immutable") {
		t.Errorf("changing a binding's cluster: want 'clusterName is immutable', got %v", err)
	}
}
