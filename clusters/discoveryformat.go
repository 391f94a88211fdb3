package clusters

import (
	"net/http"
	"strings"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/discovery"
)

// perGroupDiscovery makes a member's REST mapper discover one API group at a time. The
// mapper (controller-runtime's dynamic mapper) asks for aggregated discovery first, and a
// server that offers it sends every resource of every group in one answer, all of which
// the mapper then keeps: about 0.2 MiB per member, for the handful of kinds the hub maps
// (those of its own watches and of the Baselines). Without the aggregated format in the
// request's Accept header the server answers with the group list only, and the mapper
// fetches /apis/<group>/<version> for the groups it is asked about, and keeps those.
type perGroupDiscovery struct {
	next http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (p perGroupDiscovery) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.Contains(req.Header.Get("Accept"), "g=apidiscovery.k8s.io") {
		return p.next.RoundTrip(req)
	}
	req = utilnet.CloneRequest(req)
	req.Header.Set("Accept", discovery.AcceptV1)
	return p.next.RoundTrip(req)
}
