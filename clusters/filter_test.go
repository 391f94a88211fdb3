package clusters

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// keepWanted keeps objects labelled want=yes.
func keepWanted(_ context.Context, o client.Object) bool { return o.GetLabels()["want"] == "yes" }

func svcMeta(name string, wanted bool) *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}
	p.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Service"))
	if wanted {
		p.Labels = map[string]string{"want": "yes"}
	}
	return p
}

// seen is one event as the informer receives it.
type seen struct {
	Type watch.EventType
	Name string
}

// TestFilteredWatch: the informer behind a filter sees only kept objects; one that stops
// being kept (or is deleted) leaves it as a deletion, and one it never had makes no event.
func TestFilteredWatch(t *testing.T) {
	cases := []struct {
		name string
		// listed is what the member has when the informer lists.
		listed []*metav1.PartialObjectMetadata
		events []watch.Event
		want   []seen
	}{
		{
			name: "unkept objects make no event",
			events: []watch.Event{
				{Type: watch.Added, Object: svcMeta("plain", false)},
				{Type: watch.Modified, Object: svcMeta("plain", false)},
				{Type: watch.Deleted, Object: svcMeta("plain", false)},
			},
		},
		{
			name: "kept from the start, then no longer kept, then kept again",
			events: []watch.Event{
				{Type: watch.Added, Object: svcMeta("web", true)},
				{Type: watch.Modified, Object: svcMeta("web", false)},
				{Type: watch.Modified, Object: svcMeta("web", false)},
				{Type: watch.Modified, Object: svcMeta("web", true)},
			},
			want: []seen{{watch.Added, "web"}, {watch.Deleted, "web"}, {watch.Modified, "web"}},
		},
		{
			name:   "listed and kept, deleted in the member while no longer kept",
			listed: []*metav1.PartialObjectMetadata{svcMeta("web", true), svcMeta("plain", false)},
			events: []watch.Event{
				{Type: watch.Deleted, Object: svcMeta("web", false)},
				{Type: watch.Deleted, Object: svcMeta("plain", false)},
			},
			want: []seen{{watch.Deleted, "web"}},
		},
		{
			name: "bookmarks pass",
			events: []watch.Event{
				{Type: watch.Bookmark, Object: svcMeta("", false)},
			},
			want: []seen{{watch.Bookmark, ""}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := watch.NewFake()
			lw := newFilteredListWatch(fakeListWatch(tc.listed, fake, false), keepWanted)
			list, err := lw.ListWithContext(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var wantListed []string
			for _, o := range tc.listed {
				if keepWanted(context.Background(), o) {
					wantListed = append(wantListed, o.Name)
				}
			}
			if diff := cmp.Diff(wantListed, names(list.(*metav1.PartialObjectMetadataList))); diff != "" {
				t.Errorf("listed (-want +got):\n%s", diff)
			}
			w, err := lw.WatchWithContext(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			go func() {
				for _, ev := range tc.events {
					fake.Action(ev.Type, ev.Object)
				}
				// A last kept object marks the end: everything before it was decided.
				fake.Add(svcMeta("end", true))
			}()
			var got []seen
			for ev := range w.ResultChan() {
				o := ev.Object.(client.Object)
				if o.GetName() == "end" {
					break
				}
				got = append(got, seen{ev.Type, o.GetName()})
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFilteredRelist: a relist (a list's first page, or a watch that starts with the
// initial state) forgets what the informer held before; a further page does not.
func TestFilteredRelist(t *testing.T) {
	ctx := context.Background()
	f := &filterState{keep: keepWanted, held: map[string]struct{}{}}
	page := func(relist bool, objs ...*metav1.PartialObjectMetadata) {
		t.Helper()
		if err := f.filterList(ctx, listOf(objs), relist); err != nil {
			t.Fatal(err)
		}
	}
	deleted := func(name string) bool {
		ev, pass := f.event(ctx, watch.Event{Type: watch.Modified, Object: svcMeta(name, false)})
		return pass && ev.Type == watch.Deleted
	}
	page(true, svcMeta("a", true))
	page(false, svcMeta("b", true))
	if !deleted("a") || !deleted("b") {
		t.Errorf("objects of both pages of one list are held: %v", f.held)
	}
	page(true, svcMeta("a", true))
	page(true, svcMeta("b", true))
	if deleted("a") {
		t.Errorf("a relist without a still holds it")
	}
	if !deleted("b") {
		t.Errorf("a relisted object is not held")
	}

	// Watch-list: the watch that brings the initial state replaces what was listed before.
	fake := watch.NewFake()
	lw := newFilteredListWatch(fakeListWatch([]*metav1.PartialObjectMetadata{svcMeta("c", true), svcMeta("x", true)}, fake, true), keepWanted)
	if _, err := lw.ListWithContext(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := lw.WatchWithContext(ctx, metav1.ListOptions{SendInitialEvents: ptr.To(true)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	go func() {
		fake.Add(svcMeta("c", true)) // x is gone from the member meanwhile
		fake.Modify(svcMeta("c", false))
		fake.Modify(svcMeta("x", false))
		fake.Add(svcMeta("end", true))
	}()
	var got []seen
	for ev := range w.ResultChan() {
		if ev.Object.(client.Object).GetName() == "end" {
			break
		}
		got = append(got, seen{ev.Type, ev.Object.(client.Object).GetName()})
	}
	if diff := cmp.Diff([]seen{{watch.Added, "c"}, {watch.Deleted, "c"}}, got); diff != "" {
		t.Errorf("watch-list events (-want +got):\n%s", diff)
	}
}

// TestFilteredInformer: a real informer behind the filter holds only the kept objects and
// its handlers hear only of them.
func TestFilteredInformer(t *testing.T) {
	fake := watch.NewFake()
	lw := newFilteredListWatch(fakeListWatch([]*metav1.PartialObjectMetadata{svcMeta("web", true), svcMeta("plain", false)}, fake, false), keepWanted)
	inf := toolscache.NewSharedIndexInformer(lw, &metav1.PartialObjectMetadata{}, 0, toolscache.Indexers{})
	events := make(chan seen, 10)
	_, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { events <- seen{watch.Added, o.(client.Object).GetName()} },
		UpdateFunc: func(_, o any) { events <- seen{watch.Modified, o.(client.Object).GetName()} },
		DeleteFunc: func(o any) {
			if tomb, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = tomb.Obj
			}
			events <- seen{watch.Deleted, o.(client.Object).GetName()}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go inf.RunWithContext(ctx)
	if !toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	next := func() seen {
		select {
		case s := <-events:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
		return seen{}
	}
	if got := next(); got != (seen{watch.Added, "web"}) {
		t.Errorf("first event %v, want web added", got)
	}
	fake.Modify(svcMeta("plain", false))
	fake.Modify(svcMeta("web", false))
	if got := next(); got != (seen{watch.Deleted, "web"}) {
		t.Errorf("after web stops being kept: %v, want web deleted (and nothing of plain)", got)
	}
	if keys := inf.GetStore().ListKeys(); len(keys) != 0 {
		t.Errorf("the informer holds %v, want nothing", keys)
	}
}

// fakeListWatch lists objs and then serves w; it serves a watch-list (a watch that starts
// with the initial state) only if watchList is set, as an API server without it would refuse.
func fakeListWatch(objs []*metav1.PartialObjectMetadata, w watch.Interface, watchList bool) *toolscache.ListWatch {
	return &toolscache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) { return listOf(objs), nil },
		WatchFuncWithContext: func(_ context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			if opts.SendInitialEvents != nil && !watchList {
				return nil, errors.New("watch-list not served")
			}
			return w, nil
		},
	}
}

func listOf(objs []*metav1.PartialObjectMetadata) *metav1.PartialObjectMetadataList {
	l := &metav1.PartialObjectMetadataList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}
	for _, o := range objs {
		l.Items = append(l.Items, *o.DeepCopy())
	}
	return l
}

func names(l *metav1.PartialObjectMetadataList) []string {
	var out []string
	for _, o := range l.Items {
		out = append(out, o.Name)
	}
	return out
}
