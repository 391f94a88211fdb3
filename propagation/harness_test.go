package propagation

import (
	"context"
	"fmt"
	goruntime "runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/clusters"
	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

const hubNS = fleetv1alpha1.DefaultHubNamespace

// env is a local fleet with the hub controller's clusters and propagation domains running
// in process, and every member registered and Ready.
type env struct {
	fleet   *localfleet.Fleet
	hub     client.Client
	members map[string]client.Client
	stop    func()
	// heapBeforeMembers is the process's heap in use with the controller running and no
	// member registered yet: benchmarks report hub heap per member as the growth from here.
	heapBeforeMembers uint64
	// limits are the controller's Baseline limits (zero: the defaults).
	limits Limits
	// shippedProbes: the hub probes members with fleet-controller's defaults (newBenchEnv).
	shippedProbes bool
}

func newEnv(t testing.TB, members int) *env {
	t.Helper()
	return newEnvWith(t, localfleet.Options{Members: members})
}

// newEnvWith is newEnv for a fleet started with opts (AuditLog, to count writes). Members are
// registered as fleettest.HubUser, so that the controller's requests stand apart from the
// test's own in the members' audit logs.
func newEnvWith(t testing.TB, opts localfleet.Options) *env {
	t.Helper()
	return newEnvLimited(t, opts, Limits{})
}

// newEnvLimited is newEnvWith for a controller with the given Baseline limits.
func newEnvLimited(t testing.TB, opts localfleet.Options, limits Limits) *env {
	t.Helper()
	return startEnv(t, opts, &env{limits: limits})
}

// newBenchEnv is newEnvWith for benchmarks: the hub probes members as fleet-controller
// does by default (every 10s), not every 500ms as tests do to see failures fast — a
// benchmark measures what the product as shipped asks of the members.
func newBenchEnv(b *testing.B, opts localfleet.Options) *env {
	b.Helper()
	return startEnv(b, opts, &env{shippedProbes: true})
}

// startEnv starts the fleet and the controller configured as e says.
func startEnv(t testing.TB, opts localfleet.Options, e *env) *env {
	t.Helper()
	fleet := localfleet.StartForTest(t, opts)
	e.fleet, e.members = fleet, map[string]client.Client{}
	for _, m := range fleet.Members {
		c, err := m.Client()
		must(t, err)
		e.members[m.Name] = c
	}
	e.startController(t)
	ctx := context.Background()
	must(t, client.IgnoreAlreadyExists(e.hub.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: hubNS}})))
	e.heapBeforeMembers = heapInUse()
	for _, m := range fleet.Members {
		must(t, e.hub.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: hubNS,
				Labels:      map[string]string{fleetv1alpha1.LabelKubeconfig: "true"},
				Annotations: map[string]string{fleetv1alpha1.AnnotationClusterLabels: "env=test,name=" + m.Name}},
			Data: map[string][]byte{"value": fleettest.MemberKubeconfig(t, m)},
		}))
	}
	for _, m := range fleet.Members {
		eventually(t, 30*time.Second, "member "+m.Name+" Ready", func() error {
			mc := &fleetv1alpha1.MemberCluster{}
			if err := e.hub.Get(ctx, types.NamespacedName{Name: m.Name}, mc); err != nil {
				return err
			}
			if !meta.IsStatusConditionTrue(mc.Status.Conditions, fleetv1alpha1.ConditionReady) {
				return fmt.Errorf("not Ready: %v", mc.Status.Conditions)
			}
			return nil
		})
	}
	return e
}

// memberCleanupTimeout is how long a deleted, unreachable member waits for its clean-up in
// these tests (two minutes in fleet-controller).
const memberCleanupTimeout = 5 * time.Second

// startController runs the hub controller's domains in process (as fleet-controller does).
func (e *env) startController(t testing.TB) {
	t.Helper()
	scheme := runtime.NewScheme()
	must(t, clientgoscheme.AddToScheme(scheme))
	must(t, fleetv1alpha1.AddToScheme(scheme))
	connections := clusters.Options{ProbeInterval: 500 * time.Millisecond, ProbeTimeout: time.Second, FailureThreshold: 2, MaxBackoff: time.Second}
	if e.shippedProbes {
		connections = clusters.Options{}
	}
	connections.DynamicLabelSelector = labels.SelectorFromSet(labels.Set{fleetv1alpha1.LabelManagedBy: fleetv1alpha1.ManagedByValue})
	e.hub, e.stop = fleettest.RunManager(t, e.fleet.Hub.Config, scheme, func(mgr ctrl.Manager) error {
		conns, err := clusters.Setup(mgr, clusters.SetupOptions{
			HubNamespace: hubNS,
			// Local fleet members listen on loopback.
			Policy:               clusters.CredentialPolicy{AllowLoopback: true},
			Connections:          connections,
			Heartbeat:            time.Minute,
			MemberCleanupTimeout: memberCleanupTimeout,
		})
		if err != nil {
			return err
		}
		return Setup(mgr, conns, SetupOptions{HubNamespace: hubNS, Resync: time.Minute, Limits: e.limits})
	})
}

// Shared test helpers (package fleettest).
var (
	must         = fleettest.Must
	eventually   = fleettest.Eventually
	consistently = fleettest.Consistently
	update       = fleettest.Update
	updateStatus = fleettest.UpdateStatus
)

// baseline builds a Baseline selecting every member with the given inline sources.
func baseline(name string, inline ...string) *fleetv1alpha1.Baseline {
	b := &fleetv1alpha1.Baseline{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, y := range inline {
		b.Spec.Resources = append(b.Spec.Resources, fleetv1alpha1.ResourceSource{Inline: y})
	}
	return b
}

// bindingCondition waits until the binding of baseline in cluster has the condition.
func (e *env) waitBinding(t *testing.T, baselineName, cluster, typ string, status metav1.ConditionStatus, reason string) *fleetv1alpha1.BaselineBinding {
	t.Helper()
	var got *fleetv1alpha1.BaselineBinding
	eventually(t, 60*time.Second, fmt.Sprintf("binding %s/%s %s=%s %s", baselineName, cluster, typ, status, reason), func() error {
		bb := &fleetv1alpha1.BaselineBinding{}
		if err := e.hub.Get(context.Background(), types.NamespacedName{Name: fleetv1alpha1.BindingName(baselineName, cluster)}, bb); err != nil {
			return err
		}
		c := meta.FindStatusCondition(bb.Status.Conditions, typ)
		if c == nil || c.Status != status || (reason != "" && c.Reason != reason) {
			return fmt.Errorf("conditions: %v", bb.Status.Conditions)
		}
		got = bb
		return nil
	})
	return got
}

// waitBaseline waits until the Baseline has the condition.
func (e *env) waitBaseline(t *testing.T, name, typ string, status metav1.ConditionStatus, reason string) *fleetv1alpha1.Baseline {
	t.Helper()
	var got *fleetv1alpha1.Baseline
	eventually(t, 60*time.Second, fmt.Sprintf("Baseline %s %s=%s %s", name, typ, status, reason), func() error {
		b := &fleetv1alpha1.Baseline{}
		if err := e.hub.Get(context.Background(), types.NamespacedName{Name: name}, b); err != nil {
			return err
		}
		c := meta.FindStatusCondition(b.Status.Conditions, typ)
		if c == nil || c.Status != status || (reason != "" && c.Reason != reason) {
			return fmt.Errorf("status: %+v", b.Status)
		}
		got = b
		return nil
	})
	return got
}

// waitObject waits until check passes for obj in the member (nil error means found).
func (e *env) waitObject(t *testing.T, cluster string, obj client.Object, what string, check func(error) error) {
	t.Helper()
	eventually(t, 60*time.Second, what+" in "+cluster, func() error {
		err := e.members[cluster].Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
		return check(err)
	})
}

// heapInUse is the heap in use after a garbage collection.
func heapInUse() uint64 {
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return ms.HeapInuse
}
