package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"
)

// TestAttemptLines: what the specs parse — an answer's first line, an HTTP error status, and
// a server that is not there — each one line with a timestamp.
func TestAttemptLines(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("cluster=member-1 pod=echo-abc\nsecond line\n"))
	}))
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	defer srv.Close()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, c := range []struct {
		name, url string
		want      *regexp.Regexp
	}{
		{"answer", srv.URL, regexp.MustCompile(`^\d{19} ok 200 cluster=member-1 pod=echo-abc$`)},
		{"http error", srv.URL + "/missing", regexp.MustCompile(`^\d{19} ok 404 404 page not found$`)},
		{"no server", closed.URL, regexp.MustCompile(`^\d{19} err .*connection refused$`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := attempt(context.Background(), hc, c.url); !c.want.MatchString(got) {
				t.Errorf("attempt(%s) = %q, want a match of %s", c.url, got, c.want)
			}
		})
	}
}
