package clusters

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMemberWatchesAreUncompressed opens a watch as client-go's informers do (a watch list:
// initial events, then changes) at a real member API server through the member cache's HTTP
// client: the stream comes uncompressed (no gzip reader held per watch), while the same
// request through the bare shared transport comes gzipped, which is what the hub held for
// every watch before.
func TestMemberWatchesAreUncompressed(t *testing.T) {
	m := unstartedMember(t)

	watch := func(c *http.Client) (gzipped bool, body string, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet,
			strings.TrimSuffix(m.config.Host, "/")+"/api/v1/namespaces?watch=true&timeoutSeconds=1"+
				"&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true", nil)
		if err != nil {
			return false, "", err
		}
		resp, err := c.Do(req)
		if err != nil {
			return false, "", fmt.Errorf("watch namespaces: %w", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return false, "", fmt.Errorf("read watch: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return false, "", fmt.Errorf("watch namespaces: %s: %s", resp.Status, b)
		}
		// The transport removes Content-Encoding when it inflates a gzipped answer itself.
		return resp.Uncompressed || resp.Header.Get("Content-Encoding") != "", string(b), nil
	}

	gzipped, body, err := watch(&http.Client{Transport: m.transport})
	must(t, err)
	if !gzipped {
		t.Fatalf("the member sent the watch through the bare transport uncompressed: the test no longer shows what it guards against")
	}
	if !strings.Contains(body, `"kube-system"`) {
		t.Fatalf("watch through the bare transport: no event for kube-system in %q", body)
	}
	gzipped, body, err = watch(m.watchHTTP)
	must(t, err)
	if gzipped {
		t.Errorf("the member cache's watch came gzipped")
	}
	if !strings.Contains(body, `"kube-system"`) {
		t.Errorf("watch through the member cache's client: no event for kube-system in %q", body)
	}
}
