package servicesync

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
)

// waitQueued waits (at most 5s) until q holds want, and takes it out.
func waitQueued(t *testing.T, q workqueue.TypedInterface[exportRequest], want exportRequest) {
	t.Helper()
	got := make(chan exportRequest, 1)
	go func() {
		r, _ := q.Get()
		got <- r
	}()
	select {
	case r := <-got:
		q.Done(r)
		if r != want {
			t.Fatalf("queued %v, want %v", r, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%v was never woken into the queue", want)
	}
}

// A member that stops answering holds neither the reconcile nor a second reconcile of the
// same export: its part is deferred after the patience, the next run of the export does not
// start a second part there, and the export is woken when the hung part ends. A member
// whose slots are all taken defers the export until one frees; the other members' parts
// are unaffected throughout.
func TestMemberWorkDefersHungAndBusyMembers(t *testing.T) {
	w := newMemberWork(1, time.Minute)
	w.patience = 300 * time.Millisecond // longer than slotWait: a busy member is told apart from a hung one
	q := workqueue.NewTyped[exportRequest]()
	defer q.ShutDown()
	w.setQueue(q)
	ctx := context.Background()
	web := exportRequest{Cluster: "member-1", NamespacedName: types.NamespacedName{Namespace: "shop", Name: "web"}}
	api := exportRequest{Cluster: "member-1", NamespacedName: types.NamespacedName{Namespace: "shop", Name: "api"}}

	hung := make(chan struct{})
	work := func(_ context.Context, m string) (string, error) {
		if m == "hung" {
			<-hung
		}
		if m == "failing" {
			return "", errors.New("refused")
		}
		return "wrote " + m, nil
	}
	start := time.Now()
	done, deferred, err := onMembers(ctx, w, web, []string{"healthy", "hung", "failing"}, work)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("onMembers returned after %s, want about the patience (300ms)", took)
	}
	if done["healthy"] != "wrote healthy" || len(done) != 1 {
		t.Errorf("done = %v, want only healthy's result", done)
	}
	if !slices.Equal(deferred, []string{"hung"}) {
		t.Errorf("deferred = %v, want [hung]", deferred)
	}
	if err == nil {
		t.Errorf("the failing member's error was not reported")
	}

	// The export again, while its part in "hung" still hangs: no second part there.
	done, deferred, _ = onMembers(ctx, w, web, []string{"healthy", "hung"}, func(ctx context.Context, m string) (string, error) {
		if m == "hung" {
			t.Errorf("a second part of the same export started in the hung member")
		}
		return "wrote " + m, nil
	})
	if done["healthy"] != "wrote healthy" || !slices.Equal(deferred, []string{"hung"}) {
		t.Errorf("second run: done %v, deferred %v; want healthy written and hung deferred", done, deferred)
	}

	// Another export finds the hung member's only slot taken: deferred as busy.
	_, deferred, _ = onMembers(ctx, w, api, []string{"hung"}, work)
	if !slices.Equal(deferred, []string{"hung"}) {
		t.Errorf("another export into the hung member: deferred %v, want [hung]", deferred)
	}
	if q.Len() != 0 {
		t.Fatalf("%d exports woken while the member still hangs", q.Len())
	}

	// The hung part ends (its deadline came): both exports are woken.
	close(hung)
	woken := map[exportRequest]bool{}
	for range 2 {
		r, _ := q.Get()
		woken[r] = true
		q.Done(r)
	}
	if !woken[web] || !woken[api] {
		t.Errorf("woken %v, want web and api", woken)
	}

	// With the slot free again, the export's part in that member runs.
	done, deferred, _ = onMembers(ctx, w, api, []string{"hung"}, work)
	if done["hung"] != "wrote hung" || len(deferred) != 0 {
		t.Errorf("after the member answered again: done %v, deferred %v", done, deferred)
	}

	// A part whose earlier run ended just before it is looked at is not left waiting.
	w.waitFor(memberPart{req: web, member: "healthy"})
	waitQueued(t, q, web)
}
