package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// testFinalizer stands in for fleet-controller's finalizer, which no controller removes in
// these tests.
const testFinalizer = "test.flotilla.dev/hold"

func TestUnregister(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{Members: 1})
	hub, m := adminClient(t, f.Hub), f.Members[0]
	member := adminClient(t, m)
	unregister := func(extra ...string) []string {
		return append([]string{"unregister", "m1", "--kubeconfig", f.Hub.KubeconfigPath}, extra...)
	}
	cleanup := unregister("--cleanup", "--member-kubeconfig", m.KubeconfigPath)

	t.Run("removes the MemberCluster and its Secret, and leaves the member alone", func(t *testing.T) {
		mustFleetctl(t, registerArgs(f, "m1", m)...)
		out := mustFleetctl(t, unregister()...)
		assertContains(t, out, "hub: membercluster m1 deleted", "hub: secret flotilla-system/m1-kubeconfig deleted")
		assertGone(t, hub, &fleetv1alpha1.MemberCluster{ObjectMeta: metav1.ObjectMeta{Name: "m1"}})
		assertGone(t, hub, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "m1-kubeconfig", Namespace: "flotilla-system"}})
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-hub", Namespace: "flotilla-system"}}
		if err := member.Get(t.Context(), client.ObjectKeyFromObject(sa), sa); err != nil {
			t.Errorf("without --cleanup the member's ServiceAccount should stay: %v", err)
		}
	})

	t.Run("a cluster that is already gone is not an error", func(t *testing.T) {
		out := mustFleetctl(t, unregister()...)
		assertContains(t, out, "hub: membercluster m1 not found (already unregistered)", "hub: secret flotilla-system/m1-kubeconfig not found")
	})

	t.Run("waits for finalizers, then cleans up the member", func(t *testing.T) {
		mustFleetctl(t, registerArgs(f, "m1", m)...)
		hold(t, hub, "m1")

		var out syncBuffer
		done := make(chan error, 1)
		go func() { done <- fleetctlTo(t.Context(), &out, cleanup...) }()
		eventually(t, 20*time.Second, "told that it waits for the finalizer", func() error {
			if !strings.Contains(out.String(), "hub: waiting for membercluster m1 to be deleted (finalizers: "+testFinalizer+")") {
				return fmt.Errorf("output so far:\n%s", out.String())
			}
			return nil
		})
		// The Secret must outlive the MemberCluster: the controller needs it to clean up.
		if err := hub.Get(t.Context(), client.ObjectKey{Namespace: "flotilla-system", Name: "m1-kubeconfig"}, &corev1.Secret{}); err != nil {
			t.Errorf("kubeconfig Secret while the MemberCluster is being deleted: %v", err)
		}
		release(t, hub, "m1")
		if err := <-done; err != nil {
			t.Fatalf("unregister --cleanup: %v\n%s", err, out.String())
		}
		t.Logf("fleetctl %s\n%s", strings.Join(cleanup, " "), out.String())
		assertContains(t, out.String(),
			"hub: membercluster m1 deleted",
			"hub: secret flotilla-system/m1-kubeconfig deleted",
			`member "m1": rolebinding flotilla-system/flotilla-hub-token deleted`,
			`member "m1": role flotilla-system/flotilla-hub-token deleted`,
			`member "m1": clusterrolebinding flotilla-hub deleted`,
			`member "m1": clusterrole flotilla-hub deleted`,
			`member "m1": serviceaccount flotilla-system/flotilla-hub deleted`,
			`member "m1": namespace flotilla-system deleted`,
		)
		for _, obj := range registeredMemberObjects() {
			assertGone(t, member, obj)
		}
		// The namespace controller finishes the deletion; register must be able to start
		// over once it has.
		eventually(t, 60*time.Second, "namespace flotilla-system gone from the member", func() error {
			switch err := member.Get(t.Context(), client.ObjectKey{Name: "flotilla-system"}, &corev1.Namespace{}); {
			case err == nil:
				return errors.New("it still exists")
			case !apierrors.IsNotFound(err):
				return fmt.Errorf("get namespace: %w", err)
			}
			return nil
		})
	})

	t.Run("cleanup keeps a namespace that still holds other objects", func(t *testing.T) {
		mustFleetctl(t, registerArgs(f, "m1", m)...)
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "keep-me", Namespace: "flotilla-system"}}
		if err := member.Create(t.Context(), cm); err != nil {
			t.Fatal(err)
		}
		out := mustFleetctl(t, cleanup...)
		assertContains(t, out,
			`member "m1": serviceaccount flotilla-system/flotilla-hub deleted`,
			`member "m1": namespace flotilla-system kept: it still holds configmaps/keep-me`,
		)
		ns := &corev1.Namespace{}
		if err := member.Get(t.Context(), client.ObjectKey{Name: "flotilla-system"}, ns); err != nil || ns.DeletionTimestamp != nil {
			t.Errorf("namespace flotilla-system should be kept: err=%v deletionTimestamp=%v", err, ns.DeletionTimestamp)
		}
		out = mustFleetctl(t, cleanup...)
		assertContains(t, out, `member "m1": serviceaccount flotilla-system/flotilla-hub not found`)
	})

	t.Run("a finalizer that is never removed fails the command and keeps the Secret", func(t *testing.T) {
		defer func(old time.Duration) { deletionTimeout = old }(deletionTimeout)
		deletionTimeout = 2 * time.Second
		mustFleetctl(t, registerArgs(f, "m1", m)...)
		hold(t, hub, "m1")
		defer release(t, hub, "m1")

		_, err := fleetctl(t, unregister()...)
		if err == nil || !strings.Contains(err.Error(), "is fleet-controller running?") {
			t.Fatalf("got error %v, want one asking whether fleet-controller is running", err)
		}
		if err := hub.Get(t.Context(), client.ObjectKey{Namespace: "flotilla-system", Name: "m1-kubeconfig"}, &corev1.Secret{}); err != nil {
			t.Errorf("kubeconfig Secret after a timed-out unregister should be kept: %v", err)
		}
	})

	t.Run("register refuses a member namespace that is still being deleted", func(t *testing.T) {
		ns := &corev1.Namespace{}
		if err := member.Get(t.Context(), client.ObjectKey{Name: "flotilla-system"}, ns); err != nil {
			t.Fatal(err)
		}
		// A finalizer of our own holds the namespace in Terminating for as long as the test needs.
		patch := client.MergeFrom(ns.DeepCopy())
		ns.Finalizers = []string{testFinalizer}
		if err := member.Patch(t.Context(), ns, patch); err != nil {
			t.Fatal(err)
		}
		defer func() {
			patch := client.MergeFrom(ns.DeepCopy())
			ns.Finalizers = nil
			if err := member.Patch(t.Context(), ns, patch); err != nil {
				t.Error(err)
			}
		}()
		if err := member.Delete(t.Context(), ns); err != nil {
			t.Fatal(err)
		}
		_, err := fleetctl(t, registerArgs(f, "m1", m)...)
		if err == nil || !strings.Contains(err.Error(), "namespace flotilla-system is being deleted") {
			t.Errorf("got error %v, want one saying the namespace is being deleted", err)
		}
	})

	t.Run("flags are checked before anything is touched", func(t *testing.T) {
		_, err := fleetctl(t, unregister("--cleanup")...)
		if err == nil || !strings.Contains(err.Error(), "--cleanup needs --member-kubeconfig") {
			t.Errorf("--cleanup without --member-kubeconfig: got %v", err)
		}
		_, err = fleetctl(t, "unregister", "Not_A_Name", "--kubeconfig", f.Hub.KubeconfigPath)
		if err == nil || !strings.Contains(err.Error(), "invalid cluster name") {
			t.Errorf("invalid name: got %v", err)
		}
	})
}

func registeredMemberObjects() []client.Object {
	return []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-hub", Namespace: "flotilla-system"}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-hub"}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-hub"}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-hub-token", Namespace: "flotilla-system"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-hub-token", Namespace: "flotilla-system"}},
	}
}

func assertGone(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); !apierrors.IsNotFound(err) {
		t.Errorf("%T %s: got %v, want NotFound", obj, client.ObjectKeyFromObject(obj), err)
	}
}

// hold adds testFinalizer to the MemberCluster, as fleet-controller's own finalizer would.
func hold(t *testing.T, hub client.Client, name string) {
	t.Helper()
	setFinalizers(t, hub, name, []string{testFinalizer})
}

// release removes the finalizers, as fleet-controller does when it has cleaned up.
func release(t *testing.T, hub client.Client, name string) {
	t.Helper()
	setFinalizers(t, hub, name, nil)
}

func setFinalizers(t *testing.T, hub client.Client, name string, finalizers []string) {
	t.Helper()
	mc := &fleetv1alpha1.MemberCluster{}
	if err := hub.Get(t.Context(), client.ObjectKey{Name: name}, mc); err != nil {
		if apierrors.IsNotFound(err) && finalizers == nil {
			return
		}
		t.Fatal(err)
	}
	patch := client.MergeFrom(mc.DeepCopy())
	mc.Finalizers = finalizers
	err := hub.Patch(t.Context(), mc, patch)
	if apierrors.IsNotFound(err) && finalizers == nil {
		return // released already: it is gone
	}
	if err != nil {
		t.Fatal(err)
	}
}
