package propagation

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
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

// sourceReader reads Baseline sources from the hub namespace. Secrets are read straight
// from the API server so that no Secret data sits in the hub's cache.
type sourceReader struct {
	cache        client.Reader
	apiReader    client.Reader
	hubNamespace string
}

// render reads and validates every source of b. A *sourceError means the Baseline is
// unusable as written; any other error is transient.
func (s *sourceReader) render(ctx context.Context, b *fleetv1alpha1.Baseline) (*rendered, error) {
	resources, err := s.read(ctx, "resources", b.Spec.Resources)
	if err != nil {
		return nil, err
	}
	var perNS []render.Source
	if b.Spec.PerNamespace != nil {
		if perNS, err = s.read(ctx, "perNamespace.resources", b.Spec.PerNamespace.Resources); err != nil {
			return nil, err
		}
	}
	out := &rendered{revision: render.Revision(resources, perNS, b.Spec.Substitute)}
	if out.resources, err = render.Parse(resources, b.Spec.Substitute); err != nil {
		return nil, &sourceError{reason: fleetv1alpha1.ReasonInvalidSource, msg: err.Error()}
	}
	if out.perNamespace, err = render.Parse(perNS, b.Spec.Substitute); err != nil {
		return nil, &sourceError{reason: fleetv1alpha1.ReasonInvalidSource, msg: err.Error()}
	}
	return out, nil
}

func (s *sourceReader) read(ctx context.Context, field string, list []fleetv1alpha1.ResourceSource) ([]render.Source, error) {
	sources, err := render.Sources(field, s.hubNamespace, list, func(kind, name string) (map[string][]byte, error) {
		key := client.ObjectKey{Namespace: s.hubNamespace, Name: name}
		if kind == "Secret" {
			secret := &corev1.Secret{}
			err := s.apiReader.Get(ctx, key, secret)
			return secret.Data, err
		}
		cm := &corev1.ConfigMap{}
		err := s.cache.Get(ctx, key, cm)
		data := make(map[string][]byte, len(cm.Data))
		for k, v := range cm.Data {
			data[k] = []byte(v)
		}
		return data, err
	})
	var srcErr *render.SourceError
	if errors.As(err, &srcErr) && apierrors.IsNotFound(srcErr.Err) {
		return nil, &sourceError{reason: fleetv1alpha1.ReasonSourceNotFound,
			msg: fmt.Sprintf("%s: %s %s/%s not found (sources are read from the hub namespace)", srcErr.Field, srcErr.Kind, srcErr.Namespace, srcErr.Name)}
	}
	return sources, err
}
