package main

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// diffContext is how many unchanged lines surround a change, as in `diff -u`.
const diffContext = 3

// maxDiffCells bounds the line-matching table (about 16 MB). Objects are rarely longer than
// a few hundred lines; beyond the bound the changed middle is shown as removed and added
// whole, which is still correct, only less minimal.
const maxDiffCells = 4 << 20

// unifiedDiff returns the hunks of a unified diff from a to b ("@@ -l,n +l,n @@" headers and
// lines prefixed ' ', '-' or '+'), or nil when they are equal.
func unifiedDiff(a, b []string) []string {
	ops := editScript(a, b)
	var changes []int
	for i, op := range ops {
		if op.kind != ' ' {
			changes = append(changes, i)
		}
	}
	if len(changes) == 0 {
		return nil
	}
	// aBefore[i] and bBefore[i] count the lines of a and b before ops[i].
	aBefore := make([]int, len(ops)+1)
	bBefore := make([]int, len(ops)+1)
	for i, op := range ops {
		aBefore[i+1], bBefore[i+1] = aBefore[i], bBefore[i]
		if op.kind != '+' {
			aBefore[i+1]++
		}
		if op.kind != '-' {
			bBefore[i+1]++
		}
	}
	var out []string
	for i := 0; i < len(changes); {
		start := max(0, changes[i]-diffContext)
		j := i
		for j+1 < len(changes) && changes[j+1]-changes[j] <= 2*diffContext {
			j++
		}
		end := min(len(ops), changes[j]+diffContext+1)
		out = append(out, fmt.Sprintf("@@ -%s +%s @@",
			hunkRange(aBefore[start], aBefore[end]-aBefore[start]), hunkRange(bBefore[start], bBefore[end]-bBefore[start])))
		for _, op := range ops[start:end] {
			out = append(out, string(op.kind)+op.line)
		}
		i = j + 1
	}
	return out
}

// hunkRange formats "start,count" of a hunk: an empty range names the line before it.
func hunkRange(before, count int) string {
	if count == 0 {
		return fmt.Sprintf("%d,0", before)
	}
	return fmt.Sprintf("%d,%d", before+1, count)
}

type diffOp struct {
	kind byte // ' ', '-' or '+'
	line string
}

// editScript turns a into b with the fewest removed and added lines (a longest common
// subsequence), keeping common lines.
func editScript(a, b []string) []diffOp {
	prefix := 0
	for prefix < len(a) && prefix < len(b) && a[prefix] == b[prefix] {
		prefix++
	}
	suffix := 0
	for suffix < len(a)-prefix && suffix < len(b)-prefix && a[len(a)-1-suffix] == b[len(b)-1-suffix] {
		suffix++
	}
	ops := make([]diffOp, 0, len(a)+len(b))
	for _, l := range a[:prefix] {
		ops = append(ops, diffOp{' ', l})
	}
	ops = append(ops, middleScript(a[prefix:len(a)-suffix], b[prefix:len(b)-suffix])...)
	for _, l := range a[len(a)-suffix:] {
		ops = append(ops, diffOp{' ', l})
	}
	return ops
}

func middleScript(a, b []string) []diffOp {
	var ops []diffOp
	if len(a)*len(b) > maxDiffCells {
		for _, l := range a {
			ops = append(ops, diffOp{'-', l})
		}
		for _, l := range b {
			ops = append(ops, diffOp{'+', l})
		}
		return ops
	}
	// lcs[i][j] is the length of the longest common subsequence of a[i:] and b[j:].
	w := len(b) + 1
	lcs := make([]int32, (len(a)+1)*w)
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i*w+j] = lcs[(i+1)*w+j+1] + 1
			} else {
				lcs[i*w+j] = max(lcs[(i+1)*w+j], lcs[i*w+j+1])
			}
		}
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			ops = append(ops, diffOp{' ', a[i]})
			i, j = i+1, j+1
		case j == len(b) || (i < len(a) && lcs[(i+1)*w+j] >= lcs[i*w+j+1]):
			// Removals before additions, as diff -u prints a replaced block.
			ops = append(ops, diffOp{'-', a[i]})
			i++
		default:
			ops = append(ops, diffOp{'+', b[j]})
			j++
		}
	}
	return ops
}

// serverFields are what the API server keeps about an object rather than what a Baseline
// says; they would make every object differ.
var serverFields = [][]string{
	{"metadata", "managedFields"}, {"metadata", "resourceVersion"}, {"metadata", "generation"},
	{"metadata", "uid"}, {"metadata", "creationTimestamp"}, {"metadata", "selfLink"}, {"status"},
}

// diffLines renders obj as YAML lines (keys sorted) for a diff, without server-kept fields.
func diffLines(obj *unstructured.Unstructured) ([]string, error) {
	if obj == nil {
		return nil, nil
	}
	obj = obj.DeepCopy()
	for _, f := range serverFields {
		unstructured.RemoveNestedField(obj.Object, f...)
	}
	data, err := yaml.Marshal(obj.Object)
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"), nil
}

// Masks for Secret values, as fluxcd/pkg/ssa writes them: a value is never shown, but
// whether it changes is.
const (
	maskSame   = "***"
	maskBefore = "*** (before)"
	maskAfter  = "*** (after)"
)

// lastApplied is the annotation `kubectl apply` (client-side) keeps the whole object in: on
// a Secret it holds the data in clear text.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// isSecret reports whether obj is a core Secret, whose values must never be printed.
func isSecret(obj *unstructured.Unstructured) bool {
	return obj != nil && obj.GetKind() == "Secret" && obj.GroupVersionKind().Group == ""
}

// maskSecrets replaces, in copies of before and after (either may be nil), every value of
// a Secret's data and stringData, and its last-applied annotation, by a mask that says
// whether the value changes. Objects that are not Secrets are returned as they are.
func maskSecrets(before, after *unstructured.Unstructured) (*unstructured.Unstructured, *unstructured.Unstructured) {
	if !isSecret(before) && !isSecret(after) {
		return before, after
	}
	if before != nil {
		before = before.DeepCopy()
	}
	if after != nil {
		after = after.DeepCopy()
	}
	for _, path := range [][]string{{"data"}, {"stringData"}, {"metadata", "annotations"}} {
		b, a := nestedMap(before, path), nestedMap(after, path)
		only := func(k string) bool { return path[0] != "metadata" || k == lastApplied }
		for k, v := range b {
			if !only(k) {
				continue
			}
			av, ok := a[k]
			switch {
			case !ok:
				b[k] = maskSame
			case fmt.Sprint(av) == fmt.Sprint(v):
				b[k], a[k] = maskSame, maskSame
			default:
				b[k], a[k] = maskBefore, maskAfter
			}
		}
		for k := range a {
			if _, ok := b[k]; !ok && only(k) {
				a[k] = maskSame
			}
		}
		setNestedMap(before, b, path)
		setNestedMap(after, a, path)
	}
	return before, after
}

func nestedMap(obj *unstructured.Unstructured, path []string) map[string]any {
	if obj == nil {
		return nil
	}
	m, _, _ := unstructured.NestedMap(obj.Object, path...)
	return m
}

func setNestedMap(obj *unstructured.Unstructured, m map[string]any, path []string) {
	if obj != nil && m != nil {
		_ = unstructured.SetNestedMap(obj.Object, m, path...)
	}
}
