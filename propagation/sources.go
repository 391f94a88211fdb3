package propagation

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/internal/render"
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
	var out []render.Source
	for i, rs := range list {
		prefix := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case rs.Inline != "":
			out = append(out, render.Source{Name: prefix + " (inline)", YAML: []byte(rs.Inline)})
		case rs.ConfigMapRef != nil:
			cm := &corev1.ConfigMap{}
			if err := s.cache.Get(ctx, client.ObjectKey{Namespace: s.hubNamespace, Name: rs.ConfigMapRef.Name}, cm); err != nil {
				return nil, notFoundAsSourceError(err, prefix, "ConfigMap", s.hubNamespace, rs.ConfigMapRef.Name)
			}
			data := map[string][]byte{}
			for k, v := range cm.Data {
				data[k] = []byte(v)
			}
			out = append(out, keyedSources(prefix, "ConfigMap", s.hubNamespace, cm.Name, data, false)...)
		case rs.SecretRef != nil:
			secret := &corev1.Secret{}
			if err := s.apiReader.Get(ctx, client.ObjectKey{Namespace: s.hubNamespace, Name: rs.SecretRef.Name}, secret); err != nil {
				return nil, notFoundAsSourceError(err, prefix, "Secret", s.hubNamespace, rs.SecretRef.Name)
			}
			out = append(out, keyedSources(prefix, "Secret", s.hubNamespace, secret.Name, secret.Data, true)...)
		}
	}
	return out, nil
}

// keyedSources turns every data key into a source, in key order so that the revision and
// the apply order do not depend on map iteration.
func keyedSources(prefix, kind, ns, name string, data map[string][]byte, sensitive bool) []render.Source {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]render.Source, 0, len(keys))
	for _, k := range keys {
		out = append(out, render.Source{
			Name:      fmt.Sprintf("%s (%s %s/%s, key %s)", prefix, kind, ns, name, k),
			YAML:      data[k],
			Sensitive: sensitive,
		})
	}
	return out
}

func notFoundAsSourceError(err error, prefix, kind, ns, name string) error {
	if apierrors.IsNotFound(err) {
		return &sourceError{reason: fleetv1alpha1.ReasonSourceNotFound,
			msg: fmt.Sprintf("%s: %s %s/%s not found (sources are read from the hub namespace)", prefix, kind, ns, name)}
	}
	return fmt.Errorf("%s: read %s %s/%s: %w", prefix, kind, ns, name, err)
}
