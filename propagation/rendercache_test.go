package propagation

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flotilla-dev/flotilla/propagation/render"
)

// revisionOf is a rendered revision of n objects.
func revisionOf(revision string, n int) *rendered {
	out := &rendered{revision: revision}
	for range n {
		out.resources = append(out.resources, render.Document{Object: &unstructured.Unstructured{}})
	}
	return out
}

func TestRenderCache(t *testing.T) {
	c := newRenderCache(10)
	a, b := types.UID("baseline-a"), types.UID("baseline-b")
	c.put(a, revisionOf("r1", 4))
	c.put(b, revisionOf("r1", 4))
	if c.get(a, "r1") == nil || c.get(b, "r1") == nil {
		t.Fatal("a revision put is not found")
	}
	if got := c.get(b, "r2"); got != nil {
		t.Errorf("revision r2 of b found before it was put")
	}

	// a's r1 was used after b's r1: b's goes first when the bound is passed.
	c.get(a, "r1")
	c.put(a, revisionOf("r2", 4))
	if c.get(b, "r1") != nil {
		t.Errorf("the least recently used revision was kept beyond the bound of 10 objects")
	}
	if c.get(a, "r1") == nil || c.get(a, "r2") == nil {
		t.Errorf("recently used revisions were evicted")
	}

	// The newest revision stays, however large.
	c.put(b, revisionOf("huge", 50))
	if c.get(b, "huge") == nil || c.len() != 1 {
		t.Errorf("after a revision larger than the bound: %d revisions cached, want only it", c.len())
	}

	c.setCurrent(b, "huge")
	c.forget(b)
	if c.get(b, "huge") != nil || c.currentOf(b) != "" {
		t.Errorf("a forgotten Baseline's revisions are still cached")
	}
}
