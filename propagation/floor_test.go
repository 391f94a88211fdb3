package propagation

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// levelYAML is a ConfigMap "name" in namespace default holding level.
func levelYAML(name, level string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: default\ndata:\n  level: %q\n", name, level)
}

// A revision is read and parsed once and its bindings share the parse; changed sources are a
// new revision, and every member gets its objects — also when only a Secret source changes,
// and when the sources go back to an earlier revision that is still cached. Each step
// changes one source, so that no revision lies between two steps.
func TestSourceChangeAppliesTheNewRevision(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: "levels"},
		Data: map[string]string{"cm.yaml": levelYAML("from-configmap", "1")}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: "secret-levels"},
		Data: map[string][]byte{"cm.yaml": []byte(levelYAML("from-secret", "a"))}}
	must(t, e.hub.Create(ctx, cm))
	must(t, e.hub.Create(ctx, secret))
	must(t, e.hub.Create(ctx, &fleetv1alpha1.Baseline{
		ObjectMeta: metav1.ObjectMeta{Name: "levels"},
		Spec: fleetv1alpha1.BaselineSpec{Resources: []fleetv1alpha1.ResourceSource{
			{ConfigMapRef: &fleetv1alpha1.LocalObjectReference{Name: "levels"}},
			{SecretRef: &fleetv1alpha1.LocalObjectReference{Name: "secret-levels"}},
		}},
	}))

	var revisions []string
	for i, step := range []struct{ fromConfigMap, fromSecret string }{
		{"1", "a"},
		{"2", "a"}, // the ConfigMap changes
		{"2", "b"}, // only the Secret changes
		{"2", "a"}, // back to the second revision, which is still cached
	} {
		update(t, e.hub, cm, func() { cm.Data["cm.yaml"] = levelYAML("from-configmap", step.fromConfigMap) })
		update(t, e.hub, secret, func() { secret.Data["cm.yaml"] = []byte(levelYAML("from-secret", step.fromSecret)) })
		for name, m := range e.members {
			eventually(t, time.Minute, fmt.Sprintf("levels %s/%s in %s", step.fromConfigMap, step.fromSecret, name), func() error {
				for obj, want := range map[string]string{"from-configmap": step.fromConfigMap, "from-secret": step.fromSecret} {
					got := &corev1.ConfigMap{}
					if err := m.Get(ctx, types.NamespacedName{Namespace: "default", Name: obj}, got); err != nil {
						return err
					}
					if got.Data["level"] != want {
						return fmt.Errorf("%s has level %q", obj, got.Data["level"])
					}
				}
				return nil
			})
		}
		// The Baseline's status may still show the step before: wait for the revision to move.
		eventually(t, time.Minute, fmt.Sprintf("Baseline levels Ready on a new revision at step %d", i+1), func() error {
			b := &fleetv1alpha1.Baseline{}
			if err := e.hub.Get(ctx, types.NamespacedName{Name: "levels"}, b); err != nil {
				return err
			}
			if !meta.IsStatusConditionTrue(b.Status.Conditions, fleetv1alpha1.ConditionReady) {
				return fmt.Errorf("status: %+v", b.Status)
			}
			if i > 0 && b.Status.Revision == revisions[i-1] {
				return fmt.Errorf("revision %s is still the one of step %d", b.Status.Revision, i)
			}
			revisions = append(revisions, b.Status.Revision)
			return nil
		})
	}
	if distinct := len(map[string]bool{revisions[0]: true, revisions[1]: true, revisions[2]: true}); distinct != 3 {
		t.Errorf("revisions of the first three steps: %v, want 3 different ones for 3 different sources", revisions)
	}
	if revisions[3] != revisions[1] {
		t.Errorf("back to the second step's sources: revision %s, want the second step's %s", revisions[3], revisions[1])
	}
}

// An object that does not exist in the member is applied without a dry run, an object
// unchanged since the last apply is not diffed again, and a changed one is diffed and
// corrected: counted at the member's API server.
func TestDryRunsOnlyWhereTheMemberChanged(t *testing.T) {
	e := newEnvWith(t, localfleet.Options{Members: 1, AuditLog: true})
	ctx := context.Background()
	m := e.fleet.Members[0]
	mark, err := m.AuditMark()
	must(t, err)
	must(t, e.hub.Create(ctx, baseline("fresh", clusterRoleYAML, namespaceYAML+"---\n"+configMapYAML)))
	e.waitBaseline(t, "fresh", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	e.waitSettled(t)

	dryRuns, writes := hubRequests(t, m, mark)
	if len(dryRuns) != 0 {
		t.Errorf("%d dry runs for objects created fresh, want none: %v", len(dryRuns), dryRuns)
	}
	if len(writes) != 3 {
		t.Errorf("%d writes to create 3 objects, want one each: %v", len(writes), writes)
	}

	mark, err = m.AuditMark()
	must(t, err)
	settings := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "addons", Name: "settings"}}
	update(t, e.members[m.Name], settings, func() { settings.Data["level"] = "edited" })
	e.waitObject(t, m.Name, settings, "ConfigMap corrected", func(err error) error {
		if err != nil {
			return err
		}
		if settings.Data["level"] != "1" {
			return fmt.Errorf("level %q", settings.Data["level"])
		}
		return nil
	})
	e.waitSettled(t)
	dryRuns, writes = hubRequests(t, m, mark)
	if len(dryRuns) == 0 || len(writes) != 1 {
		t.Errorf("correcting one edited object took %d dry runs and writes %v, want at least one dry run and one write", len(dryRuns), writes)
	}
	for _, r := range append(dryRuns, writes...) {
		if !strings.HasSuffix(r, "addons/settings") {
			t.Errorf("%q: only the edited ConfigMap may be diffed or written", r)
		}
	}
}

// hubRequests lists the hub controller's dry runs and writes (in the member's audit log)
// since mark.
func hubRequests(t *testing.T, m *localfleet.ControlPlane, mark localfleet.AuditMark) (dryRuns, writes []string) {
	t.Helper()
	reqs, err := m.Writes(mark, fleettest.HubUser)
	must(t, err)
	for _, r := range reqs {
		if r.DryRun {
			dryRuns = append(dryRuns, r.String())
		} else {
			writes = append(writes, r.String())
		}
	}
	return dryRuns, writes
}

// statusQuotaYAML is a Namespace "quotas" holding a ResourceQuota, whose status the member's
// quota controller writes whenever what it counts changes.
const statusQuotaYAML = `apiVersion: v1
kind: Namespace
metadata:
  name: quotas
---
apiVersion: v1
kind: ResourceQuota
metadata:
  name: limits
  namespace: quotas
  labels:
    team: platform
spec:
  hard:
    configmaps: "10"
`

// A controller that writes an object's status (the quota controller counting ConfigMaps)
// does not make the object look edited: the reconciles its writes bring send no dry run and
// no write. An edit that only removes what Flotilla set — a label, which leaves no trace in
// any other writer's managedFields entry — is still seen and corrected.
func TestStatusWritesCauseNoDryRun(t *testing.T) {
	e := newEnvWith(t, localfleet.Options{Members: 1, AuditLog: true})
	ctx := context.Background()
	m := e.fleet.Members[0]
	member := e.members[m.Name]
	mark, err := m.AuditMark()
	must(t, err)
	must(t, e.hub.Create(ctx, baseline("quotas", statusQuotaYAML)))
	e.waitBaseline(t, "quotas", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")

	// The quota controller counts a ConfigMap made in the namespace: a status write, which
	// brings the binding a reconcile.
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: "quotas", Name: "limits"}}
	reconciles := fleettest.Reconciles(t, "baselinebinding")
	must(t, member.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "quotas", Name: "counted"}}))
	e.waitObject(t, m.Name, quota, "the quota controller counting the ConfigMap", func(err error) error {
		if err != nil {
			return err
		}
		if used := quota.Status.Used[corev1.ResourceConfigMaps]; used.Value() < 1 {
			return fmt.Errorf("status.used %v", quota.Status.Used)
		}
		return nil
	})
	eventually(t, 30*time.Second, "a binding reconcile after the status write", func() error {
		if got := fleettest.Reconciles(t, "baselinebinding"); got <= reconciles {
			return fmt.Errorf("%v reconciles, as before the status write", got)
		}
		return nil
	})
	e.waitSettled(t)
	dryRuns, writes := hubRequests(t, m, mark)
	if len(dryRuns) != 0 {
		t.Errorf("%d dry runs after status writes, want none: %v", len(dryRuns), dryRuns)
	}
	if len(writes) != 2 {
		t.Errorf("%d writes to create 2 objects, want one each: %v", len(writes), writes)
	}

	mark, err = m.AuditMark()
	must(t, err)
	update(t, member, quota, func() { delete(quota.Labels, "team") })
	e.waitObject(t, m.Name, quota, "the label restored", func(err error) error {
		if err != nil {
			return err
		}
		if quota.Labels["team"] != "platform" {
			return fmt.Errorf("labels %v", quota.Labels)
		}
		return nil
	})
	e.waitSettled(t)
	dryRuns, writes = hubRequests(t, m, mark)
	if len(writes) != 1 || len(dryRuns) == 0 {
		t.Errorf("restoring a removed label took %d dry runs and writes %v, want at least one dry run and one write", len(dryRuns), writes)
	}
}
