package main

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Small builders for the hub objects of the baseline tests. Without fleet-controller in
// these tests, status is written through the status subresource as the controller would.

// baselineObj is a Baseline selecting clusters by labels ({} when nil) with inline YAML.
func baselineObj(name string, selector map[string]string, inline string) *fleetv1alpha1.Baseline {
	return &fleetv1alpha1.Baseline{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: fleetv1alpha1.BaselineSpec{
			ClusterSelector: metav1.LabelSelector{MatchLabels: selector},
			Resources:       []fleetv1alpha1.ResourceSource{{Inline: inline}},
		},
	}
}

func mustCreate(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(t.Context(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

// setBaselineStatus writes st, observed at the Baseline's current generation.
func setBaselineStatus(t *testing.T, hub client.Client, name string, st fleetv1alpha1.BaselineStatus) {
	t.Helper()
	b := &fleetv1alpha1.Baseline{}
	if err := hub.Get(t.Context(), client.ObjectKey{Name: name}, b); err != nil {
		t.Fatal(err)
	}
	st.ObservedGeneration = b.Generation
	b.Status = st
	if err := hub.Status().Update(t.Context(), b); err != nil {
		t.Fatal(err)
	}
}

// bindingObj is the binding of baseline to cluster, labelled as the controller labels it,
// released revision (none when "").
func bindingObj(baseline, cluster, revision string) *fleetv1alpha1.BaselineBinding {
	return &fleetv1alpha1.BaselineBinding{
		ObjectMeta: metav1.ObjectMeta{
			Name:   fleetv1alpha1.BindingName(baseline, cluster),
			Labels: map[string]string{fleetv1alpha1.LabelBaseline: baseline, fleetv1alpha1.LabelCluster: cluster},
		},
		Spec: fleetv1alpha1.BaselineBindingSpec{BaselineName: baseline, ClusterName: cluster, Revision: revision},
	}
}

// bind creates the binding and writes its status.
func bind(t *testing.T, hub client.Client, bb *fleetv1alpha1.BaselineBinding, st fleetv1alpha1.BaselineBindingStatus) {
	t.Helper()
	mustCreate(t, hub, bb)
	setBindingStatus(t, hub, bb.Name, st)
}

func setBindingStatus(t *testing.T, hub client.Client, name string, st fleetv1alpha1.BaselineBindingStatus) {
	t.Helper()
	bb := &fleetv1alpha1.BaselineBinding{}
	if err := hub.Get(t.Context(), client.ObjectKey{Name: name}, bb); err != nil {
		t.Fatal(err)
	}
	bb.Status = st
	if err := hub.Status().Update(t.Context(), bb); err != nil {
		t.Fatal(err)
	}
}

// done is the status of a binding holding revision, applied and healthy.
func done(revision string) fleetv1alpha1.BaselineBindingStatus {
	return fleetv1alpha1.BaselineBindingStatus{Revision: revision, Conditions: []metav1.Condition{
		condition(fleetv1alpha1.ConditionApplied, metav1.ConditionTrue, fleetv1alpha1.ReasonApplySucceeded, "revision "+revision),
		condition(fleetv1alpha1.ConditionHealthy, metav1.ConditionTrue, fleetv1alpha1.ReasonHealthy, ""),
		condition(fleetv1alpha1.ConditionDrifted, metav1.ConditionFalse, fleetv1alpha1.ReasonInSync, ""),
		condition(fleetv1alpha1.ConditionConflict, metav1.ConditionFalse, fleetv1alpha1.ReasonNoConflict, ""),
	}}
}

// withCondition returns st with c set (replacing a condition of its type).
func withCondition(st fleetv1alpha1.BaselineBindingStatus, c metav1.Condition) fleetv1alpha1.BaselineBindingStatus {
	conds := []metav1.Condition{c}
	for _, old := range st.Conditions {
		if old.Type != c.Type {
			conds = append(conds, old)
		}
	}
	st.Conditions = conds
	return st
}

// memberClusterObj is a MemberCluster whose kubeconfig is in the hub Secret
// flotilla-system/<name>-kubeconfig.
func memberClusterObj(name string, labels map[string]string) *fleetv1alpha1.MemberCluster {
	return &fleetv1alpha1.MemberCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: fleetv1alpha1.MemberClusterSpec{KubeconfigSecretRef: fleetv1alpha1.SecretKeyReference{
			Namespace: fleetv1alpha1.DefaultHubNamespace, Name: kubeconfigSecretName(name), Key: fleetv1alpha1.DefaultKubeconfigKey,
		}},
	}
}

// registerWithAdminKubeconfig registers a member the quick way a test can: its admin
// kubeconfig in the hub Secret and a MemberCluster pointing at it.
func registerWithAdminKubeconfig(t *testing.T, hub client.Client, name string, m *localfleet.ControlPlane, labels map[string]string) {
	t.Helper()
	mustCreate(t, hub, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: kubeconfigSecretName(name), Namespace: fleetv1alpha1.DefaultHubNamespace},
		Data:       map[string][]byte{fleetv1alpha1.DefaultKubeconfigKey: m.Kubeconfig()},
	})
	mustCreate(t, hub, memberClusterObj(name, labels))
}

// ensureHubNamespaceForTest creates the hub namespace.
func ensureHubNamespaceForTest(t *testing.T, hub client.Client) {
	t.Helper()
	mustCreate(t, hub, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetv1alpha1.DefaultHubNamespace}})
}
