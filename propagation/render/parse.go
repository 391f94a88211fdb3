package render

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// hiddenDetails ends an error about a Secret source whose details could quote its content.
const hiddenDetails = "(details hidden: the source is a Secret)"

// serverSetFields are metadata fields the API server owns. Manifests copied from
// `kubectl get -o yaml` carry them; applying them is refused or meaningless.
var serverSetFields = []string{
	"resourceVersion", "uid", "creationTimestamp", "managedFields", "generation", "selfLink",
	"deletionTimestamp", "deletionGracePeriodSeconds",
}

// Parse splits every source into documents and validates each one, in source order. Empty
// and comment-only documents are skipped and a v1 List is replaced by its items. Each object
// needs apiVersion, kind and a valid metadata.name, and no object may be defined twice.
// server-set metadata and status are removed. With sub set (substitution on), ${VAR}
// references must be well formed and name a variable that can exist, and names are
// checked with cluster-dependent variables standing in for their values. Every problem is
// reported, one line each, naming the source and document; when there is any, no documents
// are returned.
func Parse(sources []Source, sub *fleetv1alpha1.Substitution) ([]Document, error) {
	var (
		docs []Document
		errs []error
	)
	for _, src := range sources {
		for _, raw := range split(src.YAML) {
			d, e := parseDocument(src, raw, sub)
			docs = append(docs, d...)
			errs = append(errs, e...)
		}
	}
	errs = append(errs, duplicates(docs)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return docs, nil
}

// rawDocument is one YAML document of a source, before parsing.
type rawDocument struct {
	index int // 1-based number within the source
	line  int // line of the source that is line 1 of data
	data  []byte
}

// split cuts src at "---" lines, and at "..." lines (YAML's document end, after which a
// YAML parser would silently ignore the rest), keeping track of where each document starts
// so that errors can give lines of the source rather than of the document.
func split(src []byte) []rawDocument {
	src = bytes.TrimPrefix(src, []byte("\xef\xbb\xbf"))
	var (
		docs     []rawDocument
		cur      []byte
		start    = 1
		explicit = false // opened by "---": a document even when empty
	)
	flush := func() {
		if explicit || hasContent(cur) {
			docs = append(docs, rawDocument{index: len(docs) + 1, line: start, data: cur})
		}
		cur = nil
	}
	for n := 1; len(src) > 0; n++ {
		var line []byte
		line, src, _ = bytes.Cut(src, []byte("\n"))
		switch marker, rest := documentMarker(line); marker {
		case "---":
			flush()
			start, explicit = n, true
			// "--- # comment" and "--- {a: b}" are legal: the rest of the line is line 1.
			cur = append(append(cur, rest...), '\n')
		case "...":
			flush()
			start, explicit = n+1, false
		default:
			cur = append(append(cur, line...), '\n')
		}
	}
	flush()
	return docs
}

// documentMarker reports whether line starts or ends a document, and what follows the
// marker on the line.
func documentMarker(line []byte) (marker string, rest []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	for _, m := range []string{"---", "..."} {
		if !bytes.HasPrefix(line, []byte(m)) {
			continue
		}
		rest := line[len(m):]
		if len(rest) > 0 && rest[0] != ' ' && rest[0] != '\t' {
			return "", nil // e.g. "---foo" is an ordinary line
		}
		if m == "..." && hasContent(rest) {
			return "", nil // not a document end; let the parser say what is wrong
		}
		return m, rest
	}
	return "", nil
}

// hasContent reports whether b holds anything other than blank lines and comments.
func hasContent(b []byte) bool {
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			return true
		}
	}
	return false
}

func parseDocument(src Source, raw rawDocument, sub *fleetv1alpha1.Substitution) ([]Document, []error) {
	fail := func(item int, problems ...string) []error {
		errs := make([]error, len(problems))
		for i, p := range problems {
			errs[i] = fmt.Errorf("%s: %s", location(src.Name, raw.index, item), p)
		}
		return errs
	}

	// Strict: a repeated key is almost always a mistake that would otherwise silently drop
	// one of the values (kubectl and the API server refuse it too).
	j, err := yaml.YAMLToJSONStrict(raw.data)
	if err != nil {
		return nil, fail(0, yamlProblem(err, raw.line, src.Sensitive))
	}
	var v any
	if err := utiljson.Unmarshal(j, &v); err != nil {
		if src.Sensitive {
			return nil, fail(0, "cannot be decoded "+hiddenDetails)
		}
		return nil, fail(0, "cannot be decoded: "+err.Error())
	}
	if v == nil {
		return nil, nil // empty, or only comments
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fail(0, "not an object: a document must be a mapping with apiVersion, kind and metadata")
	}

	doc := func(item int, obj map[string]any) ([]Document, []error) {
		stripServerSet(obj)
		if problems := checkDocument(obj, src.Sensitive, sub); len(problems) > 0 {
			return nil, fail(item, problems...)
		}
		return []Document{{
			Source:    src.Name,
			Index:     raw.index,
			Item:      item,
			Sensitive: src.Sensitive,
			Object:    &unstructured.Unstructured{Object: obj},
		}}, nil
	}
	if !isList(obj) {
		return doc(0, obj)
	}

	var (
		docs []Document
		errs []error
	)
	items, ok := obj["items"].([]any)
	if !ok && obj["items"] != nil {
		return nil, fail(0, "items of a List must be a list")
	}
	for i, it := range items {
		item, ok := it.(map[string]any)
		switch {
		case !ok:
			errs = append(errs, fail(i+1, "not an object")...)
		case isList(item):
			errs = append(errs, fail(i+1, "a List inside a List is not supported")...)
		default:
			d, e := doc(i+1, item)
			docs = append(docs, d...)
			errs = append(errs, e...)
		}
	}
	return docs, errs
}

// isList reports whether obj is a v1 List, as `kubectl get -o yaml` writes for several
// objects.
func isList(obj map[string]any) bool {
	return obj["apiVersion"] == "v1" && obj["kind"] == "List"
}

func stripServerSet(obj map[string]any) {
	delete(obj, "status")
	if md, ok := obj["metadata"].(map[string]any); ok {
		for _, f := range serverSetFields {
			delete(md, f)
		}
	}
}

var lineRef = regexp.MustCompile(`line (\d+)`)

// yamlProblem rewrites a parser error for a person: line numbers of the document become
// lines of the source; for a Secret only those lines are kept, since the parser may quote
// the bytes it choked on.
func yamlProblem(err error, start int, sensitive bool) string {
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	var lines []string
	msg = lineRef.ReplaceAllStringFunc(msg, func(m string) string {
		n, err := strconv.Atoi(strings.TrimPrefix(m, "line "))
		if err != nil {
			return m
		}
		l := strconv.Itoa(start + n - 1)
		if !slices.Contains(lines, l) {
			lines = append(lines, l)
		}
		return "line " + l
	})
	if sensitive {
		if len(lines) == 0 {
			return "invalid YAML " + hiddenDetails
		}
		return "invalid YAML at line " + strings.Join(lines, ", ") + " " + hiddenDetails
	}
	// "unmarshal errors:\n  line 3: ...\n  line 5: ..." onto one line.
	var b strings.Builder
	for i, part := range strings.Split(msg, "\n") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if i > 0 {
			if strings.HasSuffix(b.String(), ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(part)
	}
	return "invalid YAML: " + b.String()
}

// checkDocument returns what is wrong with obj. With sub set, its ${VAR} references are
// checked too, and identifying fields are checked as they will read after substitution,
// with "x" for values that depend on the cluster.
func checkDocument(obj map[string]any, sensitive bool, sub *fleetv1alpha1.Substitution) []string {
	if sub == nil {
		return checkIdentity(obj, sensitive, nil)
	}
	var problems []string
	walkStrings(obj, "", func(field, s string) string {
		_, undefined, malformed := expand(s, func(name string) (string, bool) {
			if clusterDependent(name) {
				return "", true
			}
			_, ok := sub.Variables[name]
			return "", ok
		})
		problems = append(problems, referenceProblems(field, undefined, malformed)...)
		return s
	})
	ident := func(s string) string {
		out, _, _ := expand(s, func(name string) (string, bool) {
			if v, ok := sub.Variables[name]; ok && !clusterDependent(name) {
				return v, true
			}
			return "x", true
		})
		return out
	}
	return append(problems, checkIdentity(obj, sensitive, ident)...)
}

// checkIdentity returns what is wrong with the fields that identify obj: apiVersion, kind,
// metadata.name and metadata.namespace. ident, if not nil, maps a value to the form to
// validate. Values are quoted only for sources that are not Secrets.
func checkIdentity(obj map[string]any, sensitive bool, ident func(string) string) []string {
	if ident == nil {
		ident = func(s string) string { return s }
	}
	quote := func(s string) string {
		if sensitive {
			return ""
		}
		return " " + strconv.Quote(s)
	}
	var problems []string

	var gv schema.GroupVersion
	switch apiVersion, ok := obj["apiVersion"].(string); {
	case obj["apiVersion"] == nil || (ok && apiVersion == ""):
		problems = append(problems, "no apiVersion")
	case !ok:
		problems = append(problems, "apiVersion is not a string")
	default:
		var err error
		gv, err = schema.ParseGroupVersion(ident(apiVersion))
		if err != nil || gv.Version == "" {
			problems = append(problems, "apiVersion"+quote(apiVersion)+" is not group/version or version")
		}
	}

	kind, ok := obj["kind"].(string)
	switch {
	case obj["kind"] == nil || (ok && kind == ""):
		problems = append(problems, "no kind")
	case !ok:
		problems = append(problems, "kind is not a string")
	}

	md, ok := obj["metadata"].(map[string]any)
	if !ok && obj["metadata"] != nil {
		return append(problems, "metadata is not an object")
	}
	if g, ok := md["generateName"]; ok && g != nil && g != "" {
		problems = append(problems, "metadata.generateName is not allowed: a Baseline applies the same "+
			"object on every reconcile, and generateName would create a new one each time; set metadata.name")
	}
	switch name, ok := md["name"].(string); {
	case md["name"] == nil || (ok && name == ""):
		problems = append(problems, "no metadata.name")
	case !ok:
		problems = append(problems, "metadata.name is not a string")
	default:
		gk := schema.GroupKind{Group: gv.Group, Kind: ident(kind)}
		if msgs := nameProblems(gk, ident(name)); len(msgs) > 0 {
			problems = append(problems, "metadata.name"+quote(name)+" is not a valid "+gk.Kind+" name: "+strings.Join(msgs, "; "))
		}
	}
	switch ns, ok := md["namespace"].(string); {
	case md["namespace"] == nil || (ok && ns == ""):
	case !ok:
		problems = append(problems, "metadata.namespace is not a string")
	default:
		if msgs := validation.IsDNS1123Label(ident(ns)); len(msgs) > 0 {
			problems = append(problems, "metadata.namespace"+quote(ns)+" is not a valid namespace name: "+strings.Join(msgs, "; "))
		}
	}
	return problems
}

// nameProblems validates an object name the way the API server does for the common kinds
// (the server stays the authority; this catches the usual mistakes before anything moves).
func nameProblems(gk schema.GroupKind, name string) []string {
	switch {
	case gk == schema.GroupKind{Kind: "Namespace"}:
		return validation.IsDNS1123Label(name)
	case gk == schema.GroupKind{Kind: "Service"}:
		return validation.IsDNS1035Label(name)
	case gk.Group == "rbac.authorization.k8s.io":
		// RBAC names are path segments, so "system:aggregate-to-view" is valid.
		return pathSegmentProblems(name)
	default:
		// Most built-in kinds and every custom resource.
		return validation.IsDNS1123Subdomain(name)
	}
}

// pathSegmentProblems checks a name that only has to be usable as one segment of a URL path.
func pathSegmentProblems(name string) []string {
	var problems []string
	if name == "." || name == ".." {
		problems = append(problems, "may not be "+strconv.Quote(name))
	}
	for _, c := range []string{"/", "%"} {
		if strings.Contains(name, c) {
			problems = append(problems, "may not contain "+strconv.Quote(c))
		}
	}
	return problems
}
