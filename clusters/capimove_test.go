package clusters

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// createCAPICluster creates an initialized Cluster API Cluster and its kubeconfig Secret.
func createCAPICluster(t *testing.T, r *registry, ns, name string, kubeconfig []byte) *clusterv1.Cluster {
	t.Helper()
	ctx := context.Background()
	must(t, client.IgnoreAlreadyExists(r.hub.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})))
	must(t, r.hub.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-kubeconfig", Labels: map[string]string{clusterv1.ClusterNameLabel: name}},
		Type:       clusterv1.ClusterSecretType,
		Data:       map[string][]byte{"value": kubeconfig},
	}))
	cl := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: clusterv1.ClusterSpec{Paused: ptr.To(false)}}
	must(t, r.hub.Create(ctx, cl))
	cl.Status.Initialization.ControlPlaneInitialized = ptr.To(true)
	must(t, r.hub.Status().Update(ctx, cl))
	return cl
}

// clusterctl move pauses a Cluster, marks it, and deletes it from the old management
// cluster: the MemberCluster must survive (deleting it would clean up the live member) and
// follow the Cluster when it shows up again.
func TestClusterAPIMoveKeepsMember(t *testing.T) {
	r := startRegistry(t, 1, fastProbes)
	ctx := context.Background()
	installClusterAPICRD(t, r)
	kubeconfig := r.fleet.Members[0].Kubeconfig()
	cl := createCAPICluster(t, r, "old-mgmt", "moving", kubeconfig)
	mc := r.waitCondition(t, "moving", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "", 60*time.Second)
	uid := mc.UID

	// What clusterctl move does to the source: pause, mark, delete (with the Secret).
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := r.hub.Get(ctx, client.ObjectKeyFromObject(cl), cl); err != nil {
			return err
		}
		cl.Spec.Paused = ptr.To(true)
		cl.Annotations = map[string]string{fleetv1alpha1.AnnotationClusterctlMove: ""}
		return r.hub.Update(ctx, cl)
	}))
	eventually(t, 30*time.Second, "MemberCluster marked moving", func() error {
		must(t, r.hub.Get(ctx, types.NamespacedName{Name: "moving"}, mc))
		if mc.Annotations[fleetv1alpha1.AnnotationClusterAPIMoving] != "true" {
			return fmt.Errorf("annotations %v", mc.Annotations)
		}
		return nil
	})
	must(t, r.hub.Delete(ctx, cl))
	must(t, r.hub.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "old-mgmt", Name: "moving-kubeconfig"}}))
	// The credentials went with the Secret: the member is disconnected, not deleted.
	r.waitCondition(t, "moving", fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionFalse, "", 30*time.Second)

	// The Cluster arrives in its new namespace: the MemberCluster follows it.
	createCAPICluster(t, r, "new-mgmt", "moving", kubeconfig)
	eventually(t, 30*time.Second, "MemberCluster follows the moved Cluster", func() error {
		must(t, r.hub.Get(ctx, types.NamespacedName{Name: "moving"}, mc))
		if ref := mc.Spec.KubeconfigSecretRef; ref.Namespace != "new-mgmt" || mc.Annotations[fleetv1alpha1.AnnotationClusterAPIMoving] != "" {
			return fmt.Errorf("secret ref %+v, annotations %v", ref, mc.Annotations)
		}
		return nil
	})
	mc = r.waitCondition(t, "moving", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "", 60*time.Second)
	if mc.UID != uid {
		t.Errorf("the MemberCluster was deleted and re-created during the move (uid %s -> %s): its clean-up would have emptied the member", uid, mc.UID)
	}
}
