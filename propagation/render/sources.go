package render

import (
	"fmt"
	"sort"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Lookup returns the data of a ConfigMap or Secret (kind) of the hub namespace, or an error
// (a NotFound error when it does not exist). The caller owns the I/O; this package only
// names and orders what comes back.
type Lookup func(kind, name string) (map[string][]byte, error)

// Sources names every source of a Baseline field ("resources" or "perNamespace.resources")
// in words a person can find, reading ConfigMaps and Secrets through lookup: inline YAML
// is one source, a ConfigMap or Secret one source per data key in key order (so that the
// revision and the apply order do not depend on map iteration). Secret sources are marked
// Sensitive.
func Sources(field, hubNamespace string, list []fleetv1alpha1.ResourceSource, lookup Lookup) ([]Source, error) {
	var out []Source
	for i, rs := range list {
		prefix := fmt.Sprintf("%s[%d]", field, i)
		kind, name := "", ""
		switch {
		case rs.Inline != "":
			out = append(out, Source{Name: prefix + " (inline)", YAML: []byte(rs.Inline)})
			continue
		case rs.ConfigMapRef != nil:
			kind, name = "ConfigMap", rs.ConfigMapRef.Name
		case rs.SecretRef != nil:
			kind, name = "Secret", rs.SecretRef.Name
		default:
			continue
		}
		data, err := lookup(kind, name)
		if err != nil {
			return nil, &SourceError{Field: prefix, Kind: kind, Namespace: hubNamespace, Name: name, Err: err}
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, Source{
				Name:      fmt.Sprintf("%s (%s %s/%s, key %s)", prefix, kind, hubNamespace, name, k),
				YAML:      data[k],
				Sensitive: kind == "Secret",
			})
		}
	}
	return out, nil
}

// SourceError is a ConfigMap or Secret source that could not be read.
type SourceError struct {
	Field, Kind, Namespace, Name string
	Err                          error
}

func (e *SourceError) Error() string {
	return fmt.Sprintf("%s: read %s %s/%s: %v", e.Field, e.Kind, e.Namespace, e.Name, e.Err)
}

func (e *SourceError) Unwrap() error { return e.Err }
