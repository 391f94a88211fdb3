package propagation

import (
	"context"
	"errors"
	"fmt"

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

// sourceReader reads Baseline sources from the hub namespace with render.Read (the reading
// `fleetctl diff` shares). Secrets are read straight from the API server so that no Secret
// data sits in the hub's cache.
type sourceReader struct {
	cache        client.Reader
	apiReader    client.Reader
	hubNamespace string
	limits       Limits
}

// render reads and validates every source of b, and refuses one that passes the hub's
// limits. A *sourceError means the Baseline is unusable as written; any other error is
// transient.
func (s *sourceReader) render(ctx context.Context, b *fleetv1alpha1.Baseline) (*rendered, error) {
	out, err := render.Read(ctx, s.cache, s.apiReader, s.hubNamespace, b)
	var srcErr *render.SourceError
	var invalid *render.InvalidSourcesError
	switch {
	case errors.As(err, &invalid):
		return nil, &sourceError{reason: fleetv1alpha1.ReasonInvalidSource, msg: invalid.Error()}
	case errors.As(err, &srcErr) && apierrors.IsNotFound(srcErr.Err):
		return nil, &sourceError{reason: fleetv1alpha1.ReasonSourceNotFound,
			msg: fmt.Sprintf("%s: %s %s/%s not found (sources are read from the hub namespace)", srcErr.Field, srcErr.Kind, srcErr.Namespace, srcErr.Name)}
	case err != nil:
		return nil, err
	}
	if tooLarge := s.limits.checkRendered(out); tooLarge != nil {
		return nil, tooLarge
	}
	return &rendered{revision: out.Revision, resources: out.Resources, perNamespace: out.PerNamespace}, nil
}
