package render

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Rendered is a Baseline's validated input, as read from the hub: what every member gets
// before per-cluster substitution and the namespace fan-out, and its revision.
type Rendered struct {
	Revision     string
	Resources    []Document
	PerNamespace []Document
}

// InvalidSourcesError is a Baseline whose sources were read but do not parse: a person must
// change them. Err names the source, document and line.
type InvalidSourcesError struct{ Err error }

func (e *InvalidSourcesError) Error() string { return e.Err.Error() }

func (e *InvalidSourcesError) Unwrap() error { return e.Err }

// Read reads every source of b from hubNamespace and parses it: the one way both
// fleet-controller and `fleetctl diff` read a Baseline (ReadSources, then FromSources).
// ConfigMaps are read through configMaps and Secrets through secrets (the controller reads
// Secrets past its cache, so that no Secret data sits in it). A source that cannot be read is
// a *SourceError (its Err is the API error, NotFound when it does not exist); sources that do
// not parse are an *InvalidSourcesError; the revision is set only when both succeed.
func Read(ctx context.Context, configMaps, secrets client.Reader, hubNamespace string, b *fleetv1alpha1.Baseline) (*Rendered, error) {
	resources, perNS, err := ReadSources(ctx, configMaps, secrets, hubNamespace, b)
	if err != nil {
		return nil, err
	}
	return FromSources(resources, perNS, b.Spec.Substitute)
}

// ReadSources reads the sources of b's resources and perNamespace.resources, as Read does,
// without parsing them: enough for the revision (Revision), so that a caller holding the
// parse of that revision already need not parse again.
//
// It is the only function of this package that does I/O, and only through the readers it
// is given.
func ReadSources(ctx context.Context, configMaps, secrets client.Reader, hubNamespace string, b *fleetv1alpha1.Baseline) (resources, perNamespace []Source, err error) {
	lookup := func(kind, name string) (map[string][]byte, error) {
		key := client.ObjectKey{Namespace: hubNamespace, Name: name}
		if kind == "Secret" {
			secret := &corev1.Secret{}
			err := secrets.Get(ctx, key, secret)
			return secret.Data, err
		}
		cm := &corev1.ConfigMap{}
		err := configMaps.Get(ctx, key, cm)
		data := make(map[string][]byte, len(cm.Data))
		for k, v := range cm.Data {
			data[k] = []byte(v)
		}
		return data, err
	}
	if resources, err = Sources("resources", hubNamespace, b.Spec.Resources, lookup); err != nil {
		return nil, nil, err
	}
	if b.Spec.PerNamespace != nil {
		if perNamespace, err = Sources("perNamespace.resources", hubNamespace, b.Spec.PerNamespace.Resources, lookup); err != nil {
			return nil, nil, err
		}
	}
	return resources, perNamespace, nil
}

// FromSources parses sources read by ReadSources into a Baseline's validated input and its
// revision; sources that do not parse are an *InvalidSourcesError.
func FromSources(resources, perNamespace []Source, substitute *fleetv1alpha1.Substitution) (*Rendered, error) {
	out := &Rendered{Revision: Revision(resources, perNamespace, substitute)}
	var err error
	if out.Resources, err = Parse(resources, substitute); err != nil {
		return nil, &InvalidSourcesError{Err: err}
	}
	if out.PerNamespace, err = Parse(perNamespace, substitute); err != nil {
		return nil, &InvalidSourcesError{Err: err}
	}
	return out, nil
}
