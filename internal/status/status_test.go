package status_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	kstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-multierror"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/status"
)

// hub is a real hub API server with Flotilla's CRDs and a client that counts status writes.
type hub struct {
	client client.Client
	writes atomic.Int32
}

func newHub(t *testing.T) *hub {
	t.Helper()
	fleet := localfleet.StartForTest(t, localfleet.Options{NoControllerManager: true})
	scheme := runtime.NewScheme()
	if err := fleetv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	h := &hub{}
	c, err := client.NewWithWatch(fleet.Hub.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	h.client = interceptor.NewClient(c, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			h.writes.Add(1)
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	})
	return h
}

// reconcileOnce is one reconcile as the controllers write it: fresh object, patcher, the
// phases, the deferred patch. It returns the reconcile's error and the status writes it made.
func (h *hub) reconcileOnce(t *testing.T, name string, phases func(b *fleetv1alpha1.Baseline) error) (writes int32, err error) {
	t.Helper()
	ctx := context.Background()
	b := &fleetv1alpha1.Baseline{}
	if err := h.client.Get(ctx, client.ObjectKey{Name: name}, b); err != nil {
		t.Fatal(err)
	}
	before := h.writes.Load()
	p := status.NewPatcher(h.client, b)
	func() {
		defer func() { err = p.Patch(ctx, b, err) }()
		err = phases(b)
	}()
	return h.writes.Load() - before, err
}

// stored reads the Baseline as the API server holds it, and kstatus's verdict on it.
func (h *hub) stored(t *testing.T, name string) (*fleetv1alpha1.Baseline, kstatus.Status) {
	t.Helper()
	ctx := context.Background()
	b := &fleetv1alpha1.Baseline{}
	if err := h.client.Get(ctx, client.ObjectKey{Name: name}, b); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(fleetv1alpha1.GroupVersion.WithKind("Baseline"))
	if err := h.client.Get(ctx, client.ObjectKey{Name: name}, u); err != nil {
		t.Fatal(err)
	}
	res, err := kstatus.Compute(u)
	if err != nil {
		t.Fatalf("kstatus: %v", err)
	}
	return b, res.Status
}

// bumpGeneration changes the spec, as a user does, so that there is a new generation to observe.
func (h *hub) bumpGeneration(t *testing.T, name string) int64 {
	t.Helper()
	b := &fleetv1alpha1.Baseline{}
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := h.client.Get(context.Background(), client.ObjectKey{Name: name}, b); err != nil {
			return err
		}
		b.Spec.Paused = !b.Spec.Paused
		return h.client.Update(context.Background(), b)
	}); err != nil {
		t.Fatal(err)
	}
	return b.Generation
}

func ready(msg string) func(b *fleetv1alpha1.Baseline) error {
	return func(b *fleetv1alpha1.Baseline) error {
		status.Set(b, fleetv1alpha1.ConditionReady, metav1.ConditionTrue, fleetv1alpha1.ReasonRolloutComplete, msg)
		return nil
	}
}

func condition(t *testing.T, b *fleetv1alpha1.Baseline, typ string) *metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(b.Status.Conditions, typ)
	if c == nil {
		t.Fatalf("no %s condition in %+v", typ, b.Status.Conditions)
	}
	return c
}

func TestPatcherAgainstAHub(t *testing.T) {
	h := newHub(t)
	const name = "idiom"
	b := &fleetv1alpha1.Baseline{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: fleetv1alpha1.BaselineSpec{
		Resources: []fleetv1alpha1.ResourceSource{{Inline: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: default\n"}},
	}}
	if err := h.client.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}

	t.Run("success writes once, sets observedGeneration and reads Current", func(t *testing.T) {
		writes, err := h.reconcileOnce(t, name, ready("all members hold revision 1"))
		if err != nil || writes != 1 {
			t.Fatalf("err %v, %d status writes; want nil and 1", err, writes)
		}
		b, ks := h.stored(t, name)
		if b.Status.ObservedGeneration != b.Generation || ks != kstatus.CurrentStatus {
			t.Errorf("observedGeneration %d of generation %d, kstatus %s; want observed and Current", b.Status.ObservedGeneration, b.Generation, ks)
		}
	})

	t.Run("an unchanged status is not written and keeps lastTransitionTime", func(t *testing.T) {
		// A transition long ago, so that a new time would show.
		was := metav1.NewTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
		first, _ := h.stored(t, name)
		condition(t, first, fleetv1alpha1.ConditionReady).LastTransitionTime = was
		if err := h.client.Status().Update(context.Background(), first); err != nil {
			t.Fatal(err)
		}
		writes, err := h.reconcileOnce(t, name, ready("all members hold revision 1"))
		if err != nil || writes != 0 {
			t.Fatalf("err %v, %d status writes; want nil and none", err, writes)
		}
		// A new message for a condition whose status stays is written, with the old time.
		writes, err = h.reconcileOnce(t, name, ready("all members hold revision 2"))
		if err != nil || writes != 1 {
			t.Fatalf("err %v, %d status writes; want nil and 1", err, writes)
		}
		b, _ := h.stored(t, name)
		c := condition(t, b, fleetv1alpha1.ConditionReady)
		if !c.LastTransitionTime.Equal(&was) || c.Message != "all members hold revision 2" {
			t.Errorf("Ready %s at %s; want the new message and the old time %s", c.Message, c.LastTransitionTime, was)
		}
	})

	t.Run("a transient error keeps observedGeneration and reads InProgress", func(t *testing.T) {
		gen := h.bumpGeneration(t, name)
		boom := errors.New("member-2: connection refused")
		writes, err := h.reconcileOnce(t, name, func(*fleetv1alpha1.Baseline) error { return boom })
		if !errors.Is(err, boom) || errors.Is(err, reconcile.TerminalError(nil)) || writes != 1 {
			t.Fatalf("err %v, %d status writes; want the error back (retried) and 1 write", err, writes)
		}
		b, ks := h.stored(t, name)
		if b.Status.ObservedGeneration == gen {
			t.Errorf("observedGeneration %d set after a failed reconcile of generation %d", b.Status.ObservedGeneration, gen)
		}
		if c := condition(t, b, fleetv1alpha1.ConditionReconciling); c.Status != metav1.ConditionTrue || c.Reason != fleetv1alpha1.ReasonRetrying {
			t.Errorf("Reconciling %s %s; want True %s", c.Status, c.Reason, fleetv1alpha1.ReasonRetrying)
		}
		if ks != kstatus.InProgressStatus {
			t.Errorf("kstatus %s; want InProgress", ks)
		}
		// The next success clears Reconciling: it describes one reconcile only.
		if _, err := h.reconcileOnce(t, name, ready("all members hold revision 2")); err != nil {
			t.Fatal(err)
		}
		b, ks = h.stored(t, name)
		if meta.FindStatusCondition(b.Status.Conditions, fleetv1alpha1.ConditionReconciling) != nil || b.Status.ObservedGeneration != gen || ks != kstatus.CurrentStatus {
			t.Errorf("after success: conditions %+v, observedGeneration %d (want %d), kstatus %s (want Current)", b.Status.Conditions, b.Status.ObservedGeneration, gen, ks)
		}
	})

	t.Run("work in progress set by a phase reads InProgress", func(t *testing.T) {
		_, err := h.reconcileOnce(t, name, func(b *fleetv1alpha1.Baseline) error {
			status.Set(b, fleetv1alpha1.ConditionReconciling, metav1.ConditionTrue, fleetv1alpha1.ReasonRollingOut, "1 of 3 members on revision 3")
			status.Set(b, fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonProgressing, "1 of 3 members applied")
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, ks := h.stored(t, name); ks != kstatus.InProgressStatus {
			t.Errorf("kstatus %s; want InProgress", ks)
		}
	})

	t.Run("a user error is terminal, Stalled with its reason, observed, and reads Failed", func(t *testing.T) {
		gen := h.bumpGeneration(t, name)
		const msg = `resources[0]: ConfigMap flotilla-system/addons not found`
		writes, err := h.reconcileOnce(t, name, func(*fleetv1alpha1.Baseline) error {
			return status.Stalled(fleetv1alpha1.ReasonSourceNotFound, errors.New(msg))
		})
		if !errors.Is(err, reconcile.TerminalError(nil)) || writes != 1 {
			t.Fatalf("err %v, %d status writes; want a terminal error and 1 write", err, writes)
		}
		b, ks := h.stored(t, name)
		for _, typ := range []string{fleetv1alpha1.ConditionStalled, fleetv1alpha1.ConditionReady} {
			c := condition(t, b, typ)
			want := metav1.ConditionTrue
			if typ == fleetv1alpha1.ConditionReady {
				want = metav1.ConditionFalse
			}
			if diff := cmp.Diff([]string{string(want), fleetv1alpha1.ReasonSourceNotFound, msg}, []string{string(c.Status), c.Reason, c.Message}); diff != "" {
				t.Errorf("%s condition (-want +got):\n%s", typ, diff)
			}
		}
		if meta.FindStatusCondition(b.Status.Conditions, fleetv1alpha1.ConditionReconciling) != nil {
			t.Errorf("Reconciling left on a Stalled object: %+v", b.Status.Conditions)
		}
		if b.Status.ObservedGeneration != gen || ks != kstatus.FailedStatus {
			t.Errorf("observedGeneration %d (want %d), kstatus %s (want Failed)", b.Status.ObservedGeneration, gen, ks)
		}
	})

	t.Run("fixing the input clears Stalled", func(t *testing.T) {
		if _, err := h.reconcileOnce(t, name, ready("all members hold revision 3")); err != nil {
			t.Fatal(err)
		}
		b, ks := h.stored(t, name)
		if meta.FindStatusCondition(b.Status.Conditions, fleetv1alpha1.ConditionStalled) != nil || ks != kstatus.CurrentStatus {
			t.Errorf("conditions %+v, kstatus %s; want no Stalled and Current", b.Status.Conditions, ks)
		}
	})

	t.Run("a Stalled phase and a transient error read Failed, not InProgress", func(t *testing.T) {
		_, err := h.reconcileOnce(t, name, func(b *fleetv1alpha1.Baseline) error {
			status.Set(b, fleetv1alpha1.ConditionStalled, metav1.ConditionTrue, fleetv1alpha1.ReasonTooManyFailures, "rollout stopped")
			return errors.New("release to member-3: timeout")
		})
		if err == nil {
			t.Fatal("the transient error was swallowed")
		}
		b, ks := h.stored(t, name)
		if meta.FindStatusCondition(b.Status.Conditions, fleetv1alpha1.ConditionReconciling) != nil || ks != kstatus.FailedStatus {
			t.Errorf("conditions %+v, kstatus %s; want Stalled only and Failed", b.Status.Conditions, ks)
		}
	})

	t.Run("a user error of any length is written, cut to MaxMessage", func(t *testing.T) {
		// 10,000 invalid documents, say: past the 32 KiB the API server allows a message.
		huge := errors.New(strings.Repeat("resources[0] document 1: kind is missing; ", 2000))
		if _, err := h.reconcileOnce(t, name, func(*fleetv1alpha1.Baseline) error {
			return status.Stalled(fleetv1alpha1.ReasonInvalidSource, huge)
		}); err != nil && strings.Contains(err.Error(), "update status") {
			t.Fatalf("the status write failed: %v", err)
		}
		b, ks := h.stored(t, name)
		c := condition(t, b, fleetv1alpha1.ConditionStalled)
		if c.Reason != fleetv1alpha1.ReasonInvalidSource || len(c.Message) > status.MaxMessage || !strings.HasSuffix(c.Message, "more bytes)") {
			t.Errorf("Stalled %s with a message of %d bytes ending %q; want InvalidSource, at most %d bytes, saying how much was cut",
				c.Reason, len(c.Message), c.Message[max(0, len(c.Message)-30):], status.MaxMessage)
		}
		if ks != kstatus.FailedStatus {
			t.Errorf("kstatus %s; want Failed", ks)
		}
	})
}

func TestReport(t *testing.T) {
	tests := []struct {
		name string
		errs []error
		want string
	}{
		{name: "one error reads as itself", errs: []error{errors.New(`bind cluster "a": forbidden`)}, want: `bind cluster "a": forbidden`},
		{name: "several are counted, one line per member, sorted",
			errs: []error{errors.New(`bind cluster "b": timeout`), errors.New(`bind cluster "a": forbidden`)},
			want: "2 failures:\n  - bind cluster \"a\": forbidden\n  - bind cluster \"b\": timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e *multierror.Error
			for _, err := range tt.errs {
				e = multierror.Append(e, err)
			}
			got := status.Aggregate(e)
			if diff := cmp.Diff(tt.want, got.Error()); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
			for _, err := range tt.errs {
				if !errors.Is(got, err) {
					t.Errorf("%v is not in the report's chain", err)
				}
			}
		})
	}
	if status.Aggregate(nil) != nil || status.Aggregate(multierror.Append(nil, nil)) != nil {
		t.Error("no errors must aggregate to nil")
	}
}

func TestReportListsTheFirstFailuresAndCountsTheRest(t *testing.T) {
	var e *multierror.Error
	for i := range status.MaxReportLines + 5 {
		e = multierror.Append(e, fmt.Errorf("bind cluster %q: forbidden", fmt.Sprintf("m-%02d", i)))
	}
	got := status.Aggregate(e).Error()
	lines := strings.Split(got, "\n")
	if want := fmt.Sprintf("%d failures:", status.MaxReportLines+5); lines[0] != want {
		t.Errorf("first line %q, want %q", lines[0], want)
	}
	if len(lines) != status.MaxReportLines+2 || lines[len(lines)-1] != "  - and 5 more" {
		t.Errorf("report of %d lines ending %q; want %d listed failures and '  - and 5 more'", len(lines), lines[len(lines)-1], status.MaxReportLines)
	}
}

func TestTruncate(t *testing.T) {
	long := strings.Repeat("é", 3000) // 6000 bytes, two per rune
	tests := []struct {
		name, msg string
		limit     int
		want      string
	}{
		{name: "a message within the limit is kept", msg: "short", limit: 10, want: "short"},
		{name: "exactly the limit is kept", msg: "0123456789", limit: 10, want: "0123456789"},
		{name: "a long one is cut and says how much is missing", msg: strings.Repeat("x", 100), limit: 40,
			want: strings.Repeat("x", 20) + "… (80 more bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, status.Truncate(tt.msg, tt.limit)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	t.Run("cut on a rune boundary, within the limit", func(t *testing.T) {
		got := status.Truncate(long, status.MaxNote)
		if len(got) > status.MaxNote || !utf8.ValidString(got) {
			t.Errorf("%d bytes, valid UTF-8 %t; want at most %d and valid", len(got), utf8.ValidString(got), status.MaxNote)
		}
	})
}

func TestListAndCap(t *testing.T) {
	items := []string{"a", "b", "c", "d", "e"}
	if got, want := status.List(items, 3, "; "), "a; b; c; and 2 more"; got != want {
		t.Errorf("List = %q, want %q", got, want)
	}
	if got, want := status.List(items[:3], 3, ", "), "a, b, c"; got != want {
		t.Errorf("List = %q, want %q", got, want)
	}
	kept, omitted := status.Cap(items, 2)
	if diff := cmp.Diff([]string{"a", "b"}, kept); diff != "" || omitted != 3 {
		t.Errorf("Cap kept %v (diff %s), omitted %d; want [a b] and 3", kept, diff, omitted)
	}
	if kept, omitted := status.Cap(items, 10); len(kept) != 5 || omitted != 0 {
		t.Errorf("Cap under the limit kept %d, omitted %d", len(kept), omitted)
	}
}
