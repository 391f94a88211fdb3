package propagation

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sync/singleflight"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// sourceError is a Baseline whose sources cannot be used: a person must act. reason is a
// condition reason (InvalidSource, SourceNotFound).
type sourceError struct {
	reason string
	msg    string
}

func (e *sourceError) Error() string { return e.msg }

// rendered is a Baseline's validated input: what every binding applies (before per-cluster
// substitution and namespace fan-out) and its revision.
type rendered struct {
	revision     string
	resources    []render.Document
	perNamespace []render.Document
}

// sourceReader reads Baseline sources from the hub namespace with render.ReadSources (the
// reading `fleetctl diff` shares). Secrets are read straight from the API server so that no
// Secret data sits in the hub's cache. What it parsed it keeps in rendered, so that a
// revision is parsed once and its bindings read no source at all (see renderCache).
type sourceReader struct {
	cache        client.Reader
	apiReader    client.Reader
	hubNamespace string
	limits       Limits
	rendered     *renderCache
	reading      singleflight.Group
	// newRevision, when set, is told of a Baseline whose current revision changed (render
	// found a new one): the binding controller reconciles its bindings at once.
	newRevision atomic.Pointer[func(b *fleetv1alpha1.Baseline)]
}

// onNewRevision has fn told of every Baseline whose current revision changes.
func (s *sourceReader) onNewRevision(fn func(b *fleetv1alpha1.Baseline)) {
	s.newRevision.Store(&fn)
}

// setCurrent makes revision b's current one and tells onNewRevision's function when it
// replaces another (not the first one known: a new Baseline has no bindings yet, and after
// a restart every binding is reconciled anyway).
func (s *sourceReader) setCurrent(b *fleetv1alpha1.Baseline, revision string) {
	prev := s.rendered.currentOf(b.UID)
	s.rendered.setCurrent(b.UID, revision)
	if fn := s.newRevision.Load(); fn != nil && prev != "" && prev != revision {
		(*fn)(b)
	}
}

func newSourceReader(cache, apiReader client.Reader, hubNamespace string, limits Limits) *sourceReader {
	return &sourceReader{cache: cache, apiReader: apiReader, hubNamespace: hubNamespace, limits: limits, rendered: newRenderCache(renderCacheObjects)}
}

// render reads every source of b and returns its validated input: the parse cached for the
// revision the sources hash to, else a new parse, refused when it passes the hub's limits,
// which is cached and becomes the Baseline's current revision for its bindings (current).
// The Baseline controller calls it on every reconcile: reading is how it sees sources
// change. A *sourceError means the Baseline is unusable as written; any other error is
// transient.
func (s *sourceReader) render(ctx context.Context, b *fleetv1alpha1.Baseline) (*rendered, error) {
	resources, perNS, err := render.ReadSources(ctx, s.cache, s.apiReader, s.hubNamespace, b)
	if err != nil {
		return nil, sourceFailure(err)
	}
	if out := s.rendered.get(b.UID, render.Revision(resources, perNS, b.Spec.Substitute)); out != nil {
		s.setCurrent(b, out.revision)
		return out, nil
	}
	parsed, err := render.FromSources(resources, perNS, b.Spec.Substitute)
	if err != nil {
		return nil, sourceFailure(err)
	}
	if tooLarge := s.limits.checkRendered(parsed); tooLarge != nil {
		return nil, tooLarge
	}
	out := &rendered{revision: parsed.Revision, resources: parsed.Resources, perNamespace: parsed.PerNamespace}
	s.rendered.put(b.UID, out)
	s.setCurrent(b, out.revision)
	return out, nil
}

// current returns b's current revision as the Baseline controller last rendered it, from
// the cache; it reads and parses the sources (render) only when that revision is not cached,
// after a restart or an eviction. Bindings call it: a binding compares it with the revision
// the rollout released to its member.
func (s *sourceReader) current(ctx context.Context, b *fleetv1alpha1.Baseline) (*rendered, error) {
	if rev := s.rendered.currentOf(b.UID); rev != "" {
		if out := s.rendered.get(b.UID, rev); out != nil {
			return out, nil
		}
	}
	// The bindings of a Baseline that missed (typically all of them, right after a
	// restart) share one read.
	out, err, _ := s.reading.Do(string(b.UID), func() (any, error) { return s.render(ctx, b) })
	if err != nil {
		return nil, err
	}
	return out.(*rendered), nil
}

// forget drops what is cached of a deleted Baseline.
func (s *sourceReader) forget(b *fleetv1alpha1.Baseline) {
	s.rendered.forget(b.UID)
}

// sourceFailure classifies an error of render.ReadSources or render.FromSources.
func sourceFailure(err error) error {
	var srcErr *render.SourceError
	var invalid *render.InvalidSourcesError
	switch {
	case errors.As(err, &invalid):
		return &sourceError{reason: fleetv1alpha1.ReasonInvalidSource, msg: invalid.Error()}
	case errors.As(err, &srcErr) && apierrors.IsNotFound(srcErr.Err):
		return &sourceError{reason: fleetv1alpha1.ReasonSourceNotFound,
			msg: fmt.Sprintf("%s: %s %s/%s not found (sources are read from the hub namespace)", srcErr.Field, srcErr.Kind, srcErr.Namespace, srcErr.Name)}
	}
	return err
}
