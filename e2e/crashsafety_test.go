//go:build e2e

package e2e_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e"
	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Crash-safety settings: $FLOTILLA_CRASH_MEMBERS (10), $FLOTILLA_CRASH_KILLS (4) and
// $FLOTILLA_CRASH_SEED (11) change the fleet size, the number of kills and the seed of the
// kill delays; the test logs all three so that a run can be repeated.
const (
	crashMaxConcurrent = 2
	crashMaxFailures   = 1
	// Kills land between crashMinDelay and crashMaxDelay after the controller answered
	// /readyz: while it waits for the Lease, connects members, releases or applies.
	crashMinDelay = 500 * time.Millisecond
	crashMaxDelay = 8 * time.Second
)

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("$%s=%q: %v", name, v, err)
	}
	return n
}

// TestControllerKilledDuringRolloutConverges runs the real fleet-controller binary through a
// progressive rollout to a fleet of trimmed members (no kube-controller-manager), twice: once
// undisturbed, once killed with SIGKILL a fixed number of times at seeded pseudo-random
// moments and restarted each time. Both runs must end in the same place — every member that
// can hold the new revision holds it, the old objects are pruned there, the two failing
// members keep what they had and nothing more is released once both failed — with maxConcurrent
// and maxFailures held at every moment, no object deleted twice, and writes
// counted at the members' API servers for both runs.
func TestControllerKilledDuringRolloutConverges(t *testing.T) {
	if backendName() != "local" {
		t.Skip("the controller is killed as a process on the local backend")
	}
	members := envInt(t, "FLOTILLA_CRASH_MEMBERS", 10)
	kills := envInt(t, "FLOTILLA_CRASH_KILLS", 4)
	seed := envInt(t, "FLOTILLA_CRASH_SEED", 11)
	if members < 4 {
		t.Fatalf("$FLOTILLA_CRASH_MEMBERS=%d: the scenario needs at least 4 members", members)
	}
	t.Logf("crash safety: %d members, %d kills, seed %d", members, kills, seed)

	fleet, saKubeconfig, logDir := processFleet(t, localfleet.Options{Members: members, NoCRDs: true, NoControllerManager: true, AuditLog: true})

	r := &crashRun{t: t, fleet: fleet, hub: hubClient(t, fleet.Hub), members: map[string]client.Client{},
		saKubeconfig: saKubeconfig, logDir: logDir}
	for _, m := range fleet.Members {
		c, err := client.New(m.Config, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r.members[m.Name] = c
		r.names = append(r.names, m.Name)
	}
	// Members are released in name order (member-1, member-10, member-2 ...): the two
	// before the last fail the new revision, which passes maxFailures, so the last one is
	// never released.
	sort.Strings(r.names)
	r.failing = r.names[members-3 : members-1]
	r.neverReleased = r.names[members-1]
	r.setUp()

	r.start()
	defer func() { r.controller.Kill() }()
	calm := r.rollout("calm", 0, nil)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	crash := r.rollout("crash", kills, rng)

	t.Logf("WRITES in members (hub identity) during the rollout of the new revision: undisturbed %d, with %d kills %d",
		len(calm.writes), kills, len(crash.writes))
	t.Logf("WRITES to bindings on the hub: undisturbed %d, with %d kills %d", calm.hubWrites, kills, crash.hubWrites)
	for _, res := range []rolloutResult{calm, crash} {
		t.Logf("WRITES %s by verb: %v", res.name, byVerb(res.writes))
		for _, dup := range duplicated(res.writes) {
			t.Errorf("%s: %s", res.name, dup)
		}
	}
}

// crashRun is the fleet, the controller process and the members' roles in the scenario.
type crashRun struct {
	t             *testing.T
	fleet         *localfleet.Fleet
	hub           client.Client
	members       map[string]client.Client
	names         []string
	failing       []string
	neverReleased string
	saKubeconfig  string
	logDir        string
	controller    *e2e.Controller
	starts        int
}

// setUp registers every member (as fleettest.HubUser, so that the controller's requests
// stand apart in the audit logs) with a label that makes the failing ones refuse the new
// revision, and gives each member what a kube-controller-manager would: the default
// ServiceAccount the gate Pods need.
func (r *crashRun) setUp() {
	t, ctx := r.t, r.t.Context()
	for _, m := range r.fleet.Members {
		// An unknown kind fails a member before anything is written to it.
		kind := "ConfigMap"
		if slices.Contains(r.failing, m.Name) {
			kind = "Widget"
		}
		fleettest.Must(t, r.hub.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: e2e.HubNamespace,
				Labels:      map[string]string{fleetv1alpha1.LabelKubeconfig: "true"},
				Annotations: map[string]string{fleetv1alpha1.AnnotationClusterLabels: "env=crash,markerkind=" + kind}},
			Data: map[string][]byte{fleetv1alpha1.DefaultKubeconfigKey: fleettest.MemberKubeconfig(t, m)},
		}))
		fleettest.Must(t, client.IgnoreAlreadyExists(r.members[m.Name].Create(ctx,
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-public", Name: "default"}})))
	}
}

// start runs a new fleet-controller process; the previous one, if any, was killed.
func (r *crashRun) start() {
	r.t.Helper()
	r.starts++
	c, err := e2e.StartController(r.t.Context(), e2e.ControllerOptions{
		Bin: suite.bins.Controller, Kubeconfig: r.saKubeconfig, LogPath: filepath.Join(r.logDir, "fleet-controller.log"),
		Args: []string{"--leader-elect", "--allow-loopback-members", "--leader-elect-lease-duration=4s",
			"--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms"},
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.controller = c
}

// baseline is the Baseline name with revision rev: a ConfigMap <name>-<rev>, and for rev 2 a
// gate Pod that holds each member in flight until the test marks it Ready, and a marker
// whose kind comes from the member's label (ConfigMap, or Widget in the failing members).
func (r *crashRun) baseline(b *fleetv1alpha1.Baseline, rev int) {
	cm := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s-v%d\n  namespace: default\n", b.Name, rev)
	b.Spec.Resources = []fleetv1alpha1.ResourceSource{{Inline: cm}}
	if rev == 2 {
		b.Spec.Resources = append(b.Spec.Resources, fleetv1alpha1.ResourceSource{Inline: fmt.Sprintf(`apiVersion: v1
kind: ${CLUSTER_LABEL_MARKERKIND}
metadata:
  name: %[1]s-marker
  namespace: default
---
apiVersion: v1
kind: Pod
metadata:
  name: %[1]s-gate
  namespace: kube-public
spec:
  containers:
  - name: app
    image: registry.invalid/gate:1
`, b.Name)})
	}
}

// rolloutResult is what one rollout of revision 2 wrote.
type rolloutResult struct {
	name      string
	writes    []string
	hubWrites int
}

// rollout applies revision 1 of Baseline name to the fleet and waits for it, then rolls out
// revision 2 — killing and restarting the controller kills times meanwhile — and checks
// where it ends.
func (r *crashRun) rollout(name string, kills int, rng *rand.Rand) rolloutResult {
	t, ctx := r.t, r.t.Context()
	b := &fleetv1alpha1.Baseline{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: fleetv1alpha1.BaselineSpec{
		ClusterSelector: metav1.LabelSelector{MatchLabels: map[string]string{"env": "crash"}},
		Substitute:      &fleetv1alpha1.Substitution{},
		Rollout: &fleetv1alpha1.RolloutStrategy{
			MaxConcurrent: ptr.To(intstr.FromInt32(crashMaxConcurrent)), MaxFailures: ptr.To[int32](crashMaxFailures)},
	}}
	r.baseline(b, 1)
	fleettest.Must(t, r.hub.Create(ctx, b))
	fleettest.EventuallyEvery(t, 500*time.Millisecond, 5*time.Minute, name+" revision 1 Ready in every member", r.baselineReady(name))
	rev1 := r.revision(name)

	audited := []fleettest.Audited{{Cluster: r.fleet.Hub, Count: fleettest.ToResources("baselinebindings")}}
	for _, m := range r.fleet.Members {
		audited = append(audited, fleettest.Audited{Cluster: m, Count: fleettest.ByUser(fleettest.HubUser)})
	}
	writes := fleettest.MarkWrites(t, audited...)
	w := r.watch(name)
	kubelet := r.kubelet(name)
	fleettest.Update(t, r.hub, b, func() { r.baseline(b, 2) })

	for i := range kills {
		delay := crashMinDelay + time.Duration(rng.Int64N(int64(crashMaxDelay-crashMinDelay)))
		time.Sleep(delay) // not an assertion: where in the rollout the kill lands
		t.Logf("%s: kill %d of %d, %s after the controller answered /readyz", name, i+1, kills, delay.Round(time.Millisecond))
		r.controller.Kill()
		r.start()
	}

	fleettest.EventuallyEvery(t, 500*time.Millisecond, 5*time.Minute, name+": the rollout stops at maxFailures with every other member updated",
		r.converged(name, rev1))
	// Settled: nothing written for a few seconds. Then nothing may change any more.
	fleettest.EventuallyEvery(t, time.Second, time.Minute, name+": the controller to stop writing", func() error {
		mark := fleettest.MarkWrites(t, audited...)
		time.Sleep(3 * time.Second)
		return mark.None()
	})
	kubelet()
	w.stop(t)

	all, err := writes.Writes()
	fleettest.Must(t, err)
	res := rolloutResult{name: name}
	for _, wr := range all {
		if strings.HasPrefix(wr, r.fleet.Hub.Name+":") {
			res.hubWrites++
		} else {
			res.writes = append(res.writes, wr)
		}
	}
	return res
}

func (r *crashRun) revision(name string) string {
	b := &fleetv1alpha1.Baseline{}
	fleettest.Must(r.t, r.hub.Get(r.t.Context(), client.ObjectKey{Name: name}, b))
	return b.Status.Revision
}

func (r *crashRun) baselineReady(name string) func() error {
	return func() error {
		b := &fleetv1alpha1.Baseline{}
		if err := r.hub.Get(r.t.Context(), client.ObjectKey{Name: name}, b); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(b.Status.Conditions, fleetv1alpha1.ConditionReady) || int(b.Status.Applied) != len(r.names) {
			return fmt.Errorf("status %+v", b.Status)
		}
		return nil
	}
}

// converged checks the end state of revision 2: the Baseline stalled at maxFailures; every
// member but the failing ones and the one after them holds revision 2, applied and healthy,
// with revision 1's ConfigMap pruned; the failing ones were released revision 2, failed it,
// and keep revision 1's objects; the last one keeps revision 1 — unless a slot freed up
// while the second failure was not known yet, and then it holds revision 2 like the others.
func (r *crashRun) converged(name, rev1 string) func() error {
	return func() error {
		ctx := r.t.Context()
		b := &fleetv1alpha1.Baseline{}
		if err := r.hub.Get(ctx, client.ObjectKey{Name: name}, b); err != nil {
			return err
		}
		rev2 := b.Status.Revision
		if rev2 == rev1 || !meta.IsStatusConditionTrue(b.Status.Conditions, fleetv1alpha1.ConditionStalled) ||
			meta.FindStatusCondition(b.Status.Conditions, fleetv1alpha1.ConditionStalled).Reason != fleetv1alpha1.ReasonTooManyFailures {
			return fmt.Errorf("Baseline %s: revision %s, conditions %+v", name, rev2, b.Status.Conditions)
		}
		for _, m := range r.names {
			bb := &fleetv1alpha1.BaselineBinding{}
			if err := r.hub.Get(ctx, client.ObjectKey{Name: fleetv1alpha1.BindingName(name, m)}, bb); err != nil {
				return err
			}
			updated := !slices.Contains(r.failing, m)
			switch {
			case m == r.neverReleased && bb.Spec.Revision == rev1:
				// The usual end: the second failure was known before a slot freed up.
				updated = false
				if !bb.Done(rev1) {
					return fmt.Errorf("%s: status %+v; want revision 1 kept", m, bb.Status)
				}
			case m == r.neverReleased:
				// Released while the second failing member was in flight, its failure not
				// known yet: within the limits (the watch checks that), and then done.
				if !bb.Done(rev2) {
					return fmt.Errorf("%s: released %s, status revision %s, conditions %+v; want revision 2 done", m, bb.Spec.Revision, bb.Status.Revision, bb.Status.Conditions)
				}
			case slices.Contains(r.failing, m):
				if !bb.Failed(rev2) {
					return fmt.Errorf("%s: released %s, conditions %+v; want revision 2 failed", m, bb.Spec.Revision, bb.Status.Conditions)
				}
			default:
				if !bb.Done(rev2) {
					return fmt.Errorf("%s: released %s, status revision %s, conditions %+v; want revision 2 done", m, bb.Spec.Revision, bb.Status.Revision, bb.Status.Conditions)
				}
			}
			v1, v2 := r.has(m, name+"-v1"), r.has(m, name+"-v2")
			if v1 == updated || v2 != updated {
				return fmt.Errorf("%s: ConfigMaps %s-v1 %t, %s-v2 %t; want v1 %t, v2 %t", m, name, v1, name, v2, !updated, updated)
			}
		}
		return nil
	}
}

func (r *crashRun) has(member, configMap string) bool {
	err := r.members[member].Get(r.t.Context(), client.ObjectKey{Namespace: "default", Name: configMap}, &corev1.ConfigMap{})
	if err != nil && !apierrors.IsNotFound(err) {
		r.t.Logf("read %s in %s: %v", configMap, member, err)
	}
	return err == nil
}

// kubelet marks each member's gate Pod of Baseline name Running and Ready a second after it
// appears, as a kubelet would once the Pod started: it holds every member in flight for a
// moment, so that kills land while members are in flight. It returns its stop function.
func (r *crashRun) kubelet(name string) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	seen := map[string]time.Time{}
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
			}
			for _, m := range r.names {
				pod := &corev1.Pod{}
				if err := r.members[m].Get(context.Background(), client.ObjectKey{Namespace: "kube-public", Name: name + "-gate"}, pod); err != nil {
					continue
				}
				if seen[m].IsZero() {
					seen[m] = time.Now()
				}
				if time.Since(seen[m]) < time.Second || podIsReady(pod) {
					continue
				}
				now := metav1.Now()
				pod.Status.Phase = corev1.PodRunning
				pod.Status.ObservedGeneration = pod.Generation
				pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
				// A conflict is retried on the next round.
				_ = r.members[m].Status().Update(context.Background(), pod)
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func podIsReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// bindingWatch lists the Baseline's bindings every 100 ms, each list one consistent snapshot
// of the hub, and records every moment at which the rollout broke a limit: more members in
// flight (released the new revision, neither done nor failed) than maxConcurrent, or a member
// released after more than maxFailures had failed.
type bindingWatch struct {
	mu         sync.Mutex
	violations []string
	polls      int
	done       chan struct{}
	stopped    chan struct{}
}

func (r *crashRun) watch(name string) *bindingWatch {
	w := &bindingWatch{done: make(chan struct{}), stopped: make(chan struct{})}
	rev1 := r.revision(name)
	go func() {
		defer close(w.stopped)
		var stalledReleased []string // members holding the new revision when maxFailures was passed
		for {
			select {
			case <-w.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			list := &fleetv1alpha1.BaselineBindingList{}
			if err := r.hub.List(context.Background(), list, client.MatchingLabels{fleetv1alpha1.LabelBaseline: name}); err != nil {
				continue
			}
			var inFlight, released []string
			failures := 0
			for _, bb := range list.Items {
				rev := bb.Spec.Revision
				if rev == "" || rev == rev1 {
					continue
				}
				released = append(released, bb.Spec.ClusterName)
				switch {
				case bb.Failed(rev):
					failures++
				case !bb.Done(rev):
					inFlight = append(inFlight, bb.Spec.ClusterName)
				}
			}
			at := time.Now().Format("15:04:05.000")
			w.mu.Lock()
			w.polls++
			if len(inFlight) > crashMaxConcurrent {
				w.violations = append(w.violations, fmt.Sprintf("%s: %v in flight (maxConcurrent %d)", at, inFlight, crashMaxConcurrent))
			}
			if stalledReleased != nil {
				for _, m := range released {
					if !slices.Contains(stalledReleased, m) {
						w.violations = append(w.violations, fmt.Sprintf("%s: %s released after %d failures (maxFailures %d)", at, m, failures, crashMaxFailures))
					}
				}
			} else if failures > crashMaxFailures {
				stalledReleased = released
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *bindingWatch) stop(t *testing.T) {
	t.Helper()
	close(w.done)
	<-w.stopped
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("rollout limits checked on %d snapshots of the bindings", w.polls)
	for _, v := range w.violations {
		t.Error(v)
	}
}

// duplicated lists the objects a run deleted more than once (a prune repeated on an object
// created again). Objects are created and updated by server-side apply, a patch, which is
// idempotent: applied again, it changes nothing; the audit log does not name the object of a
// plain create, so none is counted here.
func duplicated(writes []string) []string {
	count := map[string]int{}
	for _, w := range writes {
		fields := strings.Fields(w) // "member: user verb resource namespace/name"
		if len(fields) >= 5 && fields[2] == "delete" {
			count[w]++
		}
	}
	var out []string
	for w, n := range count {
		if n > 1 {
			out = append(out, fmt.Sprintf("%d times: %s", n, w))
		}
	}
	sort.Strings(out)
	return out
}

// byVerb counts writes ("member: user verb resource name") by verb and resource.
func byVerb(writes []string) map[string]int {
	out := map[string]int{}
	for _, w := range writes {
		if f := strings.Fields(w); len(f) >= 4 {
			out[f[2]+" "+f[3]]++
		}
	}
	return out
}
