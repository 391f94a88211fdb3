package clusters

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// keepWanted keeps objects labelled want=yes.
func keepWanted(_ context.Context, o client.Object) bool { return o.GetLabels()["want"] == "yes" }

func svcMeta(name string, wanted bool) *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, ResourceVersion: "1"}}
	p.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Service"))
	if wanted {
		p.Labels = map[string]string{"want": "yes"}
	}
	return p
}

// seen is one change as a handler of the kind hears it.
type seen struct {
	Type watch.EventType
	Name string
}

// filteredKind is a kind of a member cache with keepWanted as its filter, whose handler
// records what it hears.
func filteredKind(got *[]seen) *kindCache {
	k := &kindCache{gvk: corev1.SchemeGroupVersion.WithKind("Service"), keep: keepWanted,
		synced: make(chan struct{}), done: make(chan struct{}), objs: map[string]client.Object{}}
	k.addHandler(func(old, cur client.Object) {
		switch {
		case old == nil:
			*got = append(*got, seen{watch.Added, cur.GetName()})
		case cur == nil:
			*got = append(*got, seen{watch.Deleted, old.GetName()})
		default:
			*got = append(*got, seen{watch.Modified, cur.GetName()})
		}
	})
	return k
}

// TestFilteredWatch: the store behind a filter holds only kept objects; one that stops
// being kept (or is deleted) leaves it as a deletion, and one it never had makes no event.
func TestFilteredWatch(t *testing.T) {
	cases := []struct {
		name string
		// listed is what the member has when the kind lists.
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
			want: []seen{{watch.Added, "web"}, {watch.Deleted, "web"}, {watch.Added, "web"}},
		},
		{
			name:   "listed and kept, deleted in the member while no longer kept",
			listed: []*metav1.PartialObjectMetadata{svcMeta("web", true), svcMeta("plain", false)},
			events: []watch.Event{
				{Type: watch.Deleted, Object: svcMeta("web", false)},
				{Type: watch.Deleted, Object: svcMeta("plain", false)},
			},
			want: []seen{{watch.Added, "web"}, {watch.Deleted, "web"}},
		},
		{
			name:   "a kept object changes",
			listed: []*metav1.PartialObjectMetadata{svcMeta("web", true)},
			events: []watch.Event{{Type: watch.Modified, Object: svcMeta("web", true)}},
			want:   []seen{{watch.Added, "web"}, {watch.Modified, "web"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var got []seen
			k := filteredKind(&got)
			k.dispatch(k.replace(ctx, objects(tc.listed...)))
			for _, ev := range tc.events {
				if ch, ok := k.apply(ctx, ev.Type, ev.Object.(client.Object)); ok {
					k.dispatch([]change{ch})
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			var wantHeld []string
			for _, s := range tc.want {
				switch s.Type {
				case watch.Deleted:
					wantHeld = slices.DeleteFunc(wantHeld, func(n string) bool { return n == s.Name })
				case watch.Added:
					wantHeld = append(wantHeld, s.Name)
				}
			}
			if diff := cmp.Diff(wantHeld, held(k), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("store (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFilteredRelist: a relist replaces what the store held: objects gone from the member,
// or no longer kept, leave as deletions; changed ones are updates; unchanged ones make no
// event; a handler attached later hears of everything held as adds.
func TestFilteredRelist(t *testing.T) {
	ctx := context.Background()
	var got []seen
	k := filteredKind(&got)
	changed := svcMeta("changed", true)
	k.dispatch(k.replace(ctx, objects(svcMeta("gone", true), svcMeta("dropped", true), svcMeta("same", true), changed)))
	got = nil
	changed = changed.DeepCopy()
	changed.ResourceVersion = "2"
	k.dispatch(k.replace(ctx, objects(svcMeta("dropped", false), svcMeta("same", true), changed, svcMeta("new", true), svcMeta("plain", false))))
	slices.SortFunc(got, func(a, b seen) int { return strings.Compare(a.Name, b.Name) })
	want := []seen{{watch.Modified, "changed"}, {watch.Deleted, "dropped"}, {watch.Deleted, "gone"}, {watch.Added, "new"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("relist events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"changed", "new", "same"}, held(k)); diff != "" {
		t.Errorf("store after the relist (-want +got):\n%s", diff)
	}
	var late []string
	k.addHandler(func(old, cur client.Object) { late = append(late, cur.GetName()) })
	slices.Sort(late)
	if diff := cmp.Diff([]string{"changed", "new", "same"}, late); diff != "" {
		t.Errorf("a handler attached later heard (-want +got):\n%s", diff)
	}
}

func objects(objs ...*metav1.PartialObjectMetadata) []client.Object {
	out := make([]client.Object, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.DeepCopy())
	}
	return out
}

func held(k *kindCache) []string {
	var out []string
	for _, o := range k.objs {
		out = append(out, o.GetName())
	}
	slices.Sort(out)
	return out
}
