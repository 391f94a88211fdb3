package servicesync

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// An export's reconcile reads its source Service and slices, and every target's mirror
// Service and slices, from the members themselves: the member caches hold only their
// metadata. That is one request per object and target each time an export runs, and an
// export runs often without anything having changed (its own writes coming back as watch
// events, a deferred member's part ending, a member connecting). With fifty members under
// load those requests were slow enough to be deferred, and the deferral re-ran the export,
// which read everything again: the export controller never came to rest.
//
// The memos below remember what such a read (or write) found together with the
// resourceVersions it found, and a later reconcile takes the memo instead of asking the
// member when the member cache shows exactly those versions. That is safe whenever it
// applies: a resourceVersion names one state of one object, and a change not yet in the
// cache arrives as a watch event that enqueues the export again, which then finds other
// versions and reads the member. The versions recorded are the member's own answers, never
// the cache's, so a cache that lags behind (or never held an object, see filter.go) does not
// match and costs a live read, as before. A memo is only a shortcut: dropping one is always
// correct, and each is bounded by what Flotilla manages (exports, and their targets).

// sourceMemo remembers, per export, the source Service and EndpointSlices as last read from
// the source member.
type sourceMemo struct {
	mu    sync.Mutex
	reads map[exportRequest]sourceObjects
}

// sourceObjects are the source's objects as read, and their versions (versionsOf).
type sourceObjects struct {
	versions string
	svc      *corev1.Service
	slices   []discoveryv1.EndpointSlice
}

func newSourceMemo() *sourceMemo { return &sourceMemo{reads: map[exportRequest]sourceObjects{}} }

// get returns a copy of req's remembered objects if they are at versions.
func (m *sourceMemo) get(req exportRequest, versions string) (sourceObjects, bool) {
	if versions == "" {
		return sourceObjects{}, false
	}
	m.mu.Lock()
	o, ok := m.reads[req]
	m.mu.Unlock()
	if !ok || o.versions != versions {
		return sourceObjects{}, false
	}
	out := sourceObjects{versions: o.versions, svc: o.svc.DeepCopy()}
	for i := range o.slices {
		out.slices = append(out.slices, *o.slices[i].DeepCopy())
	}
	return out, true
}

// put remembers objects as read from the member; they are not to be changed afterwards.
func (m *sourceMemo) put(req exportRequest, o sourceObjects) {
	m.mu.Lock()
	defer m.mu.Unlock()
	kept := sourceObjects{versions: versionsOf(o.svc, o.slices), svc: o.svc.DeepCopy()}
	for i := range o.slices {
		kept.slices = append(kept.slices, *o.slices[i].DeepCopy())
	}
	m.reads[req] = kept
}

func (m *sourceMemo) forget(req exportRequest) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.reads, req)
}

// versionsOf names the versions of a source Service and its slices, the slices by name.
func versionsOf(svc client.Object, slices []discoveryv1.EndpointSlice) string {
	metas := make([]client.Object, len(slices))
	for i := range slices {
		metas[i] = &slices[i]
	}
	return joinVersions(svc, metas)
}

func joinVersions(svc client.Object, slices []client.Object) string {
	parts := make([]string, 0, len(slices))
	for _, s := range slices {
		parts = append(parts, s.GetName()+"="+s.GetResourceVersion())
	}
	sort.Strings(parts)
	return svc.GetResourceVersion() + ";" + strings.Join(parts, ",")
}

// cachedSourceVersions are the versions of req's source Service and its slices as the
// source's member cache holds them, or "" when it does not hold the Service.
func cachedSourceVersions(ctx context.Context, cached client.Reader, req exportRequest) string {
	svc := serviceMeta()
	if err := cached.Get(ctx, req.NamespacedName, svc); err != nil {
		return ""
	}
	metas := &metav1.PartialObjectMetadataList{}
	metas.SetGroupVersionKind(discoveryv1.SchemeGroupVersion.WithKind("EndpointSliceList"))
	if err := cached.List(ctx, metas, client.InNamespace(req.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: req.Name}); err != nil {
		return ""
	}
	var own []client.Object
	for i := range metas.Items {
		if metas.Items[i].Labels[fleetv1alpha1.LabelSourceCluster] == "" { // never a mirror's slice
			own = append(own, &metas.Items[i])
		}
	}
	return joinVersions(svc, own)
}

// targetMemo remembers, per export and target, the mirror objects its last sync left there:
// a hash of the objects it wanted (hashObjects) and the version of each as the target
// answered the write, or the read that found it current.
type targetMemo struct {
	mu    sync.Mutex
	parts map[exportRequest]map[string]targetObjects
}

type targetObjects struct {
	hash     uint64
	versions []string
}

func newTargetMemo() *targetMemo {
	return &targetMemo{parts: map[exportRequest]map[string]targetObjects{}}
}

// current says whether target holds desired, whose hash is hash, at the versions recorded
// for them, as the target's member cache sees it.
func (m *targetMemo) current(ctx context.Context, req exportRequest, target string, hash uint64, cached client.Reader, desired []client.Object) bool {
	m.mu.Lock()
	o, ok := m.parts[req][target]
	m.mu.Unlock()
	if !ok || hash == 0 || o.hash != hash || len(o.versions) != len(desired) {
		return false
	}
	for i, d := range desired {
		held := cachedForm(d)
		if held == nil || cached.Get(ctx, client.ObjectKeyFromObject(d), held) != nil || held.GetResourceVersion() != o.versions[i] {
			return false
		}
	}
	return true
}

func (m *targetMemo) put(req exportRequest, target string, hash uint64, versions []string) {
	if hash == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.parts[req] == nil {
		m.parts[req] = map[string]targetObjects{}
	}
	m.parts[req][target] = targetObjects{hash: hash, versions: versions}
}

// forget drops what is remembered of req in target.
func (m *targetMemo) forget(req exportRequest, target string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.parts[req], target)
	if len(m.parts[req]) == 0 {
		delete(m.parts, req)
	}
}

// keepOnly drops what is remembered of req outside members (targets no longer visited);
// with no members, all of req.
func (m *targetMemo) keepOnly(req exportRequest, members []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for t := range m.parts[req] {
		if !slices.Contains(members, t) {
			delete(m.parts[req], t)
		}
	}
	if len(m.parts[req]) == 0 {
		delete(m.parts, req)
	}
}

// cachedForm is an empty object of the form the member cache holds d's kind in: mirror
// Services and slices as metadata, Endpoints in full.
func cachedForm(d client.Object) client.Object {
	switch d.(type) {
	case *corev1.Service:
		return serviceMeta()
	case *discoveryv1.EndpointSlice:
		return sliceMeta()
	case *corev1.Endpoints:
		return &corev1.Endpoints{}
	}
	return nil
}

// hashObjects hashes desired mirror objects as built, before any write fills them in; 0
// (never remembered) if one cannot be encoded.
func hashObjects(objs []client.Object) uint64 {
	h := fnv.New64a()
	for _, o := range objs {
		b, err := json.Marshal(o)
		if err != nil {
			return 0
		}
		_, _ = h.Write(b)
		_, _ = h.Write([]byte{0})
	}
	return h.Sum64()
}
