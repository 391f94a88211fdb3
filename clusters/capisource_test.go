package clusters

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// capiNS is the Cluster API namespace the test registry lets register (besides the hub's);
// tenantNS is one it does not.
const (
	capiNS   = "capi-clusters"
	tenantNS = "capi-tenant"
)

var registryCAPINamespaces = []string{hubNS, capiNS}

// installClusterAPICRD installs Cluster API's own Cluster CRD, as shipped in the
// sigs.k8s.io/cluster-api module, into the hub of a running registry.
func installClusterAPICRD(t *testing.T, r *registry) {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", "sigs.k8s.io/cluster-api@v1.14.2").Output()
	must(t, err)
	var mod struct{ Dir string }
	must(t, json.Unmarshal(out, &mod))
	data, err := os.ReadFile(filepath.Join(mod.Dir, "core/config/crd/bases/cluster.x-k8s.io_clusters.yaml"))
	must(t, err)
	crd := &apiextensionsv1.CustomResourceDefinition{}
	must(t, yaml.Unmarshal(data, crd))

	scheme := runtime.NewScheme()
	must(t, apiextensionsv1.AddToScheme(scheme))
	c, err := client.New(r.fleet.Hub.Config, client.Options{Scheme: scheme})
	must(t, err)
	must(t, c.Create(context.Background(), crd))
	eventually(t, 30*time.Second, "Cluster CRD established", func() error {
		must(t, c.Get(context.Background(), client.ObjectKeyFromObject(crd), crd))
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not established yet")
	})
}

func TestClusterAPIClustersBecomeMembers(t *testing.T) {
	// The CRD is installed after the controller started: the source must notice it.
	r := startRegistry(t, 1, fastProbes)
	ctx := context.Background()
	installClusterAPICRD(t, r)

	ns := capiNS
	must(t, r.hub.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	must(t, r.hub.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge-kubeconfig", Labels: map[string]string{clusterv1.ClusterNameLabel: "edge"}},
		Type:       clusterv1.ClusterSecretType,
		Data:       map[string][]byte{"value": r.fleet.Members[0].Kubeconfig()},
	}))
	spec := clusterv1.ClusterSpec{Paused: ptr.To(false)}
	edge := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge", Labels: map[string]string{"env": "edge"}}, Spec: spec}
	must(t, r.hub.Create(ctx, edge))
	pending := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pending"}, Spec: spec}
	must(t, r.hub.Create(ctx, pending))

	// Cluster API marks the control plane initialized in status; only then is it a member.
	edge.Status.Initialization.ControlPlaneInitialized = ptr.To(true)
	must(t, r.hub.Status().Update(ctx, edge))

	mc := r.waitCondition(t, "edge", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "", 60*time.Second)
	if mc.Labels["env"] != "edge" || mc.Labels[fleetv1alpha1.LabelRegistration] != fleetv1alpha1.RegistrationClusterAPI {
		t.Errorf("labels = %v, want the Cluster's env=edge and registration=cluster-api", mc.Labels)
	}
	if ref := mc.Spec.KubeconfigSecretRef; ref.Namespace != ns || ref.Name != "edge-kubeconfig" || ref.Key != "value" {
		t.Errorf("kubeconfigSecretRef = %+v, want %s/edge-kubeconfig key value", ref, ns)
	}
	if mc.Status.KubernetesVersion != "v1.37.2" {
		t.Errorf("kubernetesVersion = %q", mc.Status.KubernetesVersion)
	}
	err := r.hub.Get(ctx, types.NamespacedName{Name: "pending"}, &fleetv1alpha1.MemberCluster{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("a Cluster whose control plane is not initialized was registered (get: %v)", err)
	}

	must(t, r.hub.Delete(ctx, edge))
	eventually(t, 30*time.Second, "MemberCluster edge removed with its Cluster", func() error {
		err := r.hub.Get(ctx, types.NamespacedName{Name: "edge"}, &fleetv1alpha1.MemberCluster{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%w)", err)
	})
}
