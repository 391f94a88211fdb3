package clusters

import (
	"net/http"

	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// uncompressedWatches asks the member for its watch streams uncompressed. Go's HTTP
// transport asks for gzip unless a request names an encoding, and the API server then
// compresses a watch list (the watch with initial events that client-go's informers open
// instead of a LIST; feature WatchListCompression) for its whole life: the hub would hold
// one gzip reader (a 32 KiB window and the inflater's tables, about 40 KiB) for every open
// watch, for as long as it runs — measured, 0.4 MiB per member of 9 watches. That saves
// bandwidth once, for the initial events; the events after them are small and rare. Lists
// and other requests keep gzip: their readers live for one response only.
type uncompressedWatches struct {
	next http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (u uncompressedWatches) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Query().Get("watch") != "true" || req.Header.Get("Accept-Encoding") != "" {
		return u.next.RoundTrip(req)
	}
	req = utilnet.CloneRequest(req)
	req.Header.Set("Accept-Encoding", "identity")
	return u.next.RoundTrip(req)
}
