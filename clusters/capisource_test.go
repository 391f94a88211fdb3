package clusters

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
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

var registryCAPINamespaces = []string{hubNS, capiNS, "old-mgmt", "new-mgmt"} // the last two: TestClusterAPIMoveKeepsMember

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

// clusterAPIKubeconfig creates the <name>-kubeconfig Secret Cluster API writes for a Cluster.
func clusterAPIKubeconfig(t *testing.T, r *registry, ns, name string, kubeconfig []byte) {
	t.Helper()
	must(t, r.hub.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-kubeconfig", Labels: map[string]string{clusterv1.ClusterNameLabel: name}},
		Type:       clusterv1.ClusterSecretType,
		Data:       map[string][]byte{"value": kubeconfig},
	}))
}

// initializedCluster creates a Cluster whose control plane Cluster API reports initialized.
func initializedCluster(t *testing.T, r *registry, ns, name string, labels map[string]string) *clusterv1.Cluster {
	t.Helper()
	ctx := context.Background()
	cl := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Spec: clusterv1.ClusterSpec{Paused: ptr.To(false)}}
	must(t, r.hub.Create(ctx, cl))
	cl.Status.Initialization.ControlPlaneInitialized = ptr.To(true)
	must(t, r.hub.Status().Update(ctx, cl))
	return cl
}

// TestClusterAPIRegistrationPolicy: a tenant who can create Clusters (and MemberClusters)
// cannot register a member outside the allowed namespaces, label it into Baselines it
// should not receive, take over a registered name, or make the hub read another
// namespace's kubeconfig.
func TestClusterAPIRegistrationPolicy(t *testing.T) {
	r := startRegistry(t, 1, fastProbes)
	ctx := context.Background()
	installClusterAPICRD(t, r)
	member := r.fleet.Members[0].Kubeconfig()
	for _, ns := range []string{capiNS, tenantNS} {
		must(t, r.hub.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}

	// A Cluster in a namespace the hub does not register from, created first.
	clusterAPIKubeconfig(t, r, tenantNS, "intruder", member)
	initializedCluster(t, r, tenantNS, "intruder", map[string]string{"env": "prod"})
	// MemberClusters pointing at a Cluster API namespace's Secrets: one plain, one imitating
	// the Cluster API source for a Cluster that does not exist.
	lure := newCountingServer(t, true, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(secretMarker)) })
	for _, name := range []string{"forged", "ghost"} {
		clusterAPIKubeconfig(t, r, capiNS, name, kubeconfigFor(t, lure.URL, lure.Server, nil))
		mc := memberCluster(name, name+"-kubeconfig")
		mc.Spec.KubeconfigSecretRef.Namespace = capiNS
		if name == "ghost" {
			mc.Labels = map[string]string{fleetv1alpha1.LabelRegistration: fleetv1alpha1.RegistrationClusterAPI}
		}
		must(t, r.hub.Create(ctx, mc))
	}
	// A name already registered by hand.
	must(t, r.hub.Create(ctx, kubeconfigSecret("taken-kubeconfig", member, nil, nil)))
	must(t, r.hub.Create(ctx, memberCluster("taken", "taken-kubeconfig")))
	clusterAPIKubeconfig(t, r, capiNS, "taken", member)
	taken := initializedCluster(t, r, capiNS, "taken", nil)
	// The Cluster that registers, with labels outside the allow-list.
	clusterAPIKubeconfig(t, r, capiNS, "edge", member)
	initializedCluster(t, r, capiNS, "edge", map[string]string{
		"env": "edge", "team": "payments", fleetv1alpha1.LabelRegistration: "fleetctl", fleetv1alpha1.LabelBaseline: "prod-policies"})

	t.Run("only allow-listed labels are copied", func(t *testing.T) {
		mc := r.waitCondition(t, "edge", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "", 60*time.Second)
		want := map[string]string{"env": "edge", fleetv1alpha1.LabelRegistration: fleetv1alpha1.RegistrationClusterAPI}
		if diff := cmp.Diff(want, mc.Labels); diff != "" {
			t.Errorf("MemberCluster labels (-want +got):\n%s", diff)
		}
	})
	t.Run("Clusters outside the allowed namespaces do not register", func(t *testing.T) {
		err := r.hub.Get(ctx, types.NamespacedName{Name: "intruder"}, &fleetv1alpha1.MemberCluster{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("Cluster %s/intruder was registered (get: %v)", tenantNS, err)
		}
	})
	t.Run("MemberClusters pointing at a Cluster API namespace are refused and the Secret never used", func(t *testing.T) {
		r.waitCondition(t, "forged", fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionFalse, fleetv1alpha1.ReasonSecretNamespaceNotAllowed, 20*time.Second)
		// The imitation is refused, or removed by the Cluster API source (its Cluster does not exist).
		eventually(t, 20*time.Second, "MemberCluster ghost refused or removed", func() error {
			_, c, err := r.condition("ghost", fleetv1alpha1.ConditionCredentialsValid)
			switch {
			case apierrors.IsNotFound(err):
				return nil
			case err != nil:
				return err
			case c.Status == metav1.ConditionFalse && c.Reason == fleetv1alpha1.ReasonSecretNamespaceNotAllowed:
				return nil
			}
			return fmt.Errorf("CredentialsValid=%s %s", c.Status, c.Reason)
		})
		if n := lure.requests.Load(); n != 0 {
			t.Errorf("the server named in the forged kubeconfigs received %d requests", n)
		}
	})
	t.Run("a taken name is reported on the Cluster and the MemberCluster", func(t *testing.T) {
		eventually(t, 30*time.Second, "a ClusterNameTaken Warning event on Cluster taken", func() error {
			events := &eventsv1.EventList{}
			if err := r.hub.List(ctx, events, client.InNamespace(capiNS)); err != nil {
				return err
			}
			for _, e := range events.Items {
				if e.Regarding.Name == "taken" && e.Regarding.Kind == "Cluster" && e.Reason == fleetv1alpha1.ReasonClusterNameTaken && e.Type == corev1.EventTypeWarning {
					return nil
				}
			}
			return fmt.Errorf("%d events, none about Cluster taken", len(events.Items))
		})
		mc := r.waitCondition(t, "taken", fleetv1alpha1.ConditionRegistrationConflict, metav1.ConditionTrue, fleetv1alpha1.ReasonClusterNameTaken, 30*time.Second)
		if ref := mc.Spec.KubeconfigSecretRef; ref.Namespace != hubNS || mc.Labels[fleetv1alpha1.LabelRegistration] != "" {
			t.Errorf("the Cluster took over MemberCluster taken: ref %+v labels %v", ref, mc.Labels)
		}
		r.waitCondition(t, "taken", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)

		must(t, r.hub.Delete(ctx, taken))
		eventually(t, 30*time.Second, "RegistrationConflict removed once the Cluster is gone", func() error {
			_, c, err := r.condition("taken", fleetv1alpha1.ConditionRegistrationConflict)
			if err != nil {
				return nil // no such condition
			}
			return fmt.Errorf("still %s: %s", c.Status, c.Message)
		})
	})
}
