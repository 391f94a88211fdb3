package v1alpha1

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ParseClusterLabels parses a MemberCluster's labels written as "k=v,k2=v2" — the
// --labels flag of `fleetctl register` and the AnnotationClusterLabels annotation of a
// kubeconfig Secret — so that both registration paths accept exactly the same input.
// Entries are trimmed; every key must be a qualified name and every value a label value;
// a key may appear once; LabelRegistration is refused because each registration source
// sets it itself (it says which source owns the MemberCluster). Blank input is no labels.
func ParseClusterLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, pair := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok {
			return nil, fmt.Errorf("entry %q: want key=value", pair)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, fmt.Errorf("value %q of %q: %s", v, k, strings.Join(errs, "; "))
		}
		if k == LabelRegistration {
			return nil, fmt.Errorf("key %q: the registration source sets it", k)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("key %q given twice", k)
		}
		out[k] = v
	}
	return out, nil
}
