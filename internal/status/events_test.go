package status_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/status"
)

// The API server refuses an events.k8s.io/v1 note over 1 KiB, and the recorder only logs
// that: a long warning (what a member left behind, say) must arrive cut, not be lost.
func TestLongEventNotesArriveCut(t *testing.T) {
	fleet := localfleet.StartForTest(t, localfleet.Options{NoControllerManager: true})
	cs, err := kubernetes.NewForConfig(fleet.Hub.Config)
	fleettest.Must(t, err)
	scheme := runtime.NewScheme()
	fleettest.Must(t, fleetv1alpha1.AddToScheme(scheme))
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); broadcaster.Shutdown() })
	fleettest.Must(t, broadcaster.StartRecordingToSinkWithContext(ctx))
	// The recorder controller-runtime's manager hands out is this one.
	inner, ok := broadcaster.NewRecorder(scheme, "flotilla-test").(recorder.EventRecorder)
	if !ok {
		t.Fatal("client-go's events recorder is not a controller-runtime EventRecorder")
	}
	rec := status.Events(inner)

	regarding := &fleetv1alpha1.MemberCluster{ObjectMeta: metav1.ObjectMeta{Name: "eu-1", UID: "u-1"}}
	rec.Eventf(regarding, nil, "Warning", fleetv1alpha1.ReasonCleanupIncomplete, "Unregister", "left behind: %s", strings.Repeat("mirrors in it of a.b.c, ", 400))
	fleettest.Eventually(t, 30*time.Second, "the CleanupIncomplete event, cut to 1 KiB", func() error {
		list, err := cs.EventsV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Reason == fleetv1alpha1.ReasonCleanupIncomplete {
				return noteCut(e)
			}
		}
		return fmt.Errorf("no event among %d", len(list.Items))
	})
}

func noteCut(e eventsv1.Event) error {
	if len(e.Note) > status.MaxNote || !strings.HasPrefix(e.Note, "left behind: ") || !strings.HasSuffix(e.Note, "more bytes)") {
		return fmt.Errorf("note of %d bytes: %.80q…", len(e.Note), e.Note)
	}
	return nil
}
