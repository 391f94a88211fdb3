package render

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Built-in variable names (see fleetv1alpha1.Substitution).
const (
	varClusterName        = "CLUSTER_NAME"
	varClusterLabelPrefix = "CLUSTER_LABEL_"
)

// Variables returns the substitution variables for one cluster: spec.substitute.variables,
// then the built-ins, which win on a clash: CLUSTER_NAME, and CLUSTER_LABEL_<KEY> for each
// label (KEY is the label key upper-cased with every character other than A-Z and 0-9
// replaced by _, so topology.kubernetes.io/region gives
// CLUSTER_LABEL_TOPOLOGY_KUBERNETES_IO_REGION). Two label keys that map to the same name
// (a.b and a-b) give it the value of the key that sorts first.
func Variables(clusterName string, clusterLabels map[string]string, sub *fleetv1alpha1.Substitution) map[string]string {
	vars := make(map[string]string, len(clusterLabels)+1)
	if sub != nil {
		maps.Copy(vars, sub.Variables)
	}
	set := make(map[string]bool, len(clusterLabels))
	for _, key := range slices.Sorted(maps.Keys(clusterLabels)) {
		name := labelVariable(key)
		if !set[name] {
			set[name] = true
			vars[name] = clusterLabels[key]
		}
	}
	vars[varClusterName] = clusterName
	return vars
}

func labelVariable(key string) string {
	return varClusterLabelPrefix + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		default:
			return '_'
		}
	}, key)
}

// clusterDependent reports whether a variable's value is set per cluster by Variables.
func clusterDependent(name string) bool {
	return name == varClusterName || (strings.HasPrefix(name, varClusterLabelPrefix) && len(name) > len(varClusterLabelPrefix))
}

// Substitute returns deep copies of docs with every ${VAR} in a string value replaced from
// vars. Keys are never touched, and a value is replaced inside its string, so a value such as
// a label cannot inject YAML and "${VAR}" alone stays a string. "$${" is a literal "${". A
// reference to a variable not in vars, or a "${" that does not start ${NAME} (NAME: a letter
// or _, then letters, digits or _), is an error naming the document, field and variable. The
// identifying fields are validated again as substituted, and no two objects may then be the
// same. Call it only when the Baseline has spec.substitute; without it manifests are applied
// verbatim.
func Substitute(docs []Document, vars map[string]string) ([]Document, error) {
	var (
		out  = make([]Document, 0, len(docs))
		errs []error
	)
	lookup := func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
	for _, d := range docs {
		obj := d.Object.DeepCopy()
		var problems []string
		walkStrings(obj.Object, "", func(field, s string) string {
			r, undefined, malformed := expand(s, lookup)
			problems = append(problems, referenceProblems(field, undefined, malformed)...)
			return r
		})
		if len(problems) == 0 {
			problems = checkIdentity(obj.Object, d.Sensitive, nil)
		}
		for _, p := range problems {
			errs = append(errs, fmt.Errorf("%s: %s", d.Location(), p))
		}
		if len(problems) == 0 {
			d.Object = obj
			out = append(out, d)
		}
	}
	errs = append(errs, duplicates(out)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

var varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expand replaces the references in s with what lookup returns. It reports the names lookup
// did not know (they expand to nothing) and whether some "${" starts no reference (it is
// kept as it is).
func expand(s string, lookup func(name string) (string, bool)) (out string, undefined []string, malformed bool) {
	if !strings.Contains(s, "${") {
		return s, nil, false
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 || !varName.MatchString(s[i+2:i+2+end]) {
				malformed = true
				b.WriteString("${")
				i += 2
				continue
			}
			name := s[i+2 : i+2+end]
			v, ok := lookup(name)
			if !ok && !slices.Contains(undefined, name) {
				undefined = append(undefined, name)
			}
			b.WriteString(v)
			i += 2 + end + 1
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), undefined, malformed
}

func referenceProblems(field string, undefined []string, malformed bool) []string {
	var problems []string
	if malformed {
		problems = append(problems, field+`: "${" must start a reference ${NAME} (NAME: letters, digits and _); write "$${" for a literal "${"`)
	}
	for _, name := range undefined {
		p := fmt.Sprintf("%s: undefined variable ${%s}", field, name)
		if strings.HasPrefix(name, varClusterLabelPrefix) {
			p += " (no label of the cluster maps to it)"
		}
		problems = append(problems, p+fmt.Sprintf(`; write "$${%s}" for a literal "${%s}"`, name, name))
	}
	return problems
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// walkStrings replaces every string value under v (never a key) with what fn returns for
// it, visiting map keys in sorted order so errors come out in a stable order. field is the
// path to v, as in metadata.labels["app.kubernetes.io/name"] or spec.containers[0].image.
func walkStrings(v any, field string, fn func(field, s string) string) any {
	switch v := v.(type) {
	case string:
		return fn(field, v)
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			f := field + "[" + strconv.Quote(k) + "]"
			if plainKey.MatchString(k) {
				f = k
				if field != "" {
					f = field + "." + k
				}
			}
			v[k] = walkStrings(v[k], f, fn)
		}
	case []any:
		for i := range v {
			v[i] = walkStrings(v[i], field+"["+strconv.Itoa(i)+"]", fn)
		}
	}
	return v
}
