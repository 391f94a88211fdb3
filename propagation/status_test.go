package propagation

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	kstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// kstatusOf is what Flux and Argo CD health checks make of a Baseline as the hub stores it.
func (e *env) kstatusOf(t *testing.T, name string) (kstatus.Status, error) {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(fleetv1alpha1.GroupVersion.WithKind("Baseline"))
	if err := e.hub.Get(context.Background(), types.NamespacedName{Name: name}, u); err != nil {
		return "", err
	}
	res, err := kstatus.Compute(u)
	if err != nil {
		return "", err
	}
	return res.Status, nil
}

func TestMissingSourceStallsUntilItExists(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	b := &fleetv1alpha1.Baseline{
		ObjectMeta: metav1.ObjectMeta{Name: "addons"},
		Spec: fleetv1alpha1.BaselineSpec{Resources: []fleetv1alpha1.ResourceSource{
			{ConfigMapRef: &fleetv1alpha1.LocalObjectReference{Name: "addon-manifests"}},
		}},
	}
	must(t, e.hub.Create(ctx, b))

	stalled := e.waitBaseline(t, "addons", fleetv1alpha1.ConditionStalled, metav1.ConditionTrue, fleetv1alpha1.ReasonSourceNotFound)
	msg := meta.FindStatusCondition(stalled.Status.Conditions, fleetv1alpha1.ConditionStalled).Message
	if !strings.Contains(msg, "ConfigMap "+hubNS+"/addon-manifests not found") || !strings.Contains(msg, "create it") {
		t.Errorf("Stalled message %q does not name the missing ConfigMap and what to do", msg)
	}
	if c := meta.FindStatusCondition(stalled.Status.Conditions, fleetv1alpha1.ConditionReady); c == nil ||
		c.Status != metav1.ConditionFalse || c.Reason != fleetv1alpha1.ReasonSourceNotFound {
		t.Errorf("Ready = %+v, want False %s", c, fleetv1alpha1.ReasonSourceNotFound)
	}
	if stalled.Status.ObservedGeneration != stalled.Generation {
		t.Errorf("observedGeneration %d of generation %d: a judged user error is observed", stalled.Status.ObservedGeneration, stalled.Generation)
	}
	eventually(t, 30*time.Second, "kstatus reads the stalled Baseline as Failed", func() error {
		s, err := e.kstatusOf(t, "addons")
		if err == nil && s != kstatus.FailedStatus {
			err = fmt.Errorf("kstatus %s", s)
		}
		return err
	})

	// The person creates the ConfigMap: the Baseline is reconciled again (no retry loop ran
	// meanwhile), loses Stalled and converges in every member.
	must(t, e.hub.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: "addon-manifests"},
		Data: map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-source\n  namespace: default\n"}}))
	ready := e.waitBaseline(t, "addons", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, fleetv1alpha1.ReasonRolloutComplete)
	if c := meta.FindStatusCondition(ready.Status.Conditions, fleetv1alpha1.ConditionStalled); c != nil {
		t.Errorf("Stalled still set on a converged Baseline: %+v", c)
	}
	if ready.Status.Applied != 2 {
		t.Errorf("applied = %d, want 2", ready.Status.Applied)
	}
	for name := range e.members {
		e.waitObject(t, name, cmRef("from-source"), "object from the created source", exists)
	}
	if s, err := e.kstatusOf(t, "addons"); err != nil || s != kstatus.CurrentStatus {
		t.Errorf("kstatus %s (%v), want Current", s, err)
	}
}

func TestRolloutInProgressReadsInProgress(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	// No provisioner serves this class: the claim stays Pending, the member never healthy.
	pending := baseline("storage", `apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
  namespace: default
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: nobody-provisions-this
  resources:
    requests:
      storage: 1Gi
`)
	must(t, e.hub.Create(ctx, pending))
	e.waitBinding(t, "storage", "member-1", fleetv1alpha1.ConditionHealthy, metav1.ConditionFalse, fleetv1alpha1.ReasonUnhealthy)
	b := e.waitBaseline(t, "storage", fleetv1alpha1.ConditionReconciling, metav1.ConditionTrue, fleetv1alpha1.ReasonRollingOut)
	if c := meta.FindStatusCondition(b.Status.Conditions, fleetv1alpha1.ConditionProgressing); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Progressing = %+v, want True while Reconciling", c)
	}
	if s, err := e.kstatusOf(t, "storage"); err != nil || s != kstatus.InProgressStatus {
		t.Errorf("kstatus %s (%v), want InProgress", s, err)
	}
}
