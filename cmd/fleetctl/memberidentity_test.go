package main

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

// TestMemberIdentityCanMakeItselfClusterAdmin shows what the identity `fleetctl register`
// gives the hub by default amounts to (README "Security model"): ClusterRole flotilla-hub
// may not list Secrets, but bind and escalate on RBAC, which RBAC Baselines need, let it bind
// cluster-admin to itself. Whatever the hub applies — every Baseline — acts with this
// identity, so a Baseline author is in effect cluster-admin of every member it selects.
func TestMemberIdentityCanMakeItselfClusterAdmin(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{Members: 1})
	ctx := t.Context()
	mustFleetctl(t, registerArgs(f, "m1", f.Members[0])...)
	hubIdentity := storedKubeconfigClient(t, adminClient(t, f.Hub), "m1")

	if err := hubIdentity.List(ctx, &corev1.SecretList{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing Secrets with the member identity: got %v, want Forbidden", err)
	}
	escalate := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "applied-by-a-baseline"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterAdminRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: memberNamespace, Name: hubServiceAccount}},
	}
	if err := hubIdentity.Create(ctx, escalate); err != nil {
		t.Fatalf("binding cluster-admin with the member identity: %v; want it allowed (bind on clusterroles)", err)
	}
	eventually(t, 10*time.Second, "the member identity listing every Secret once it bound cluster-admin to itself", func() error {
		return hubIdentity.List(ctx, &corev1.SecretList{})
	})
}
