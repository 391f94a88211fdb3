package clusters

import (
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
)

// ServedKinds implements MemberAccess. It asks the member for one group version's resource
// list (GET /apis/GROUP/VERSION, a small answer, 404 when not served). Asking a client's
// REST mapper instead costs a full aggregated discovery of the member — every group and
// resource it serves, over 100 KB — each time the kind is not served, since the mapper
// caches only groups it found. For a question asked every minute of every member whose
// answer is usually "no", that was 2.6–3.0 ms of hub CPU per member and minute (measured
// against a lean member), against 0.7–0.8 ms for the two group versions MCS needs.
func (c *Connections) ServedKinds(cluster string, gv schema.GroupVersion) (map[string]bool, error) {
	m, err := c.connected(cluster)
	if err != nil {
		return nil, err
	}
	disco, err := discovery.NewDiscoveryClientForConfigAndClient(m.config, m.mapperHTTP)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: build discovery client: %w", cluster, err)
	}
	list, err := disco.ServerResourcesForGroupVersion(gv.String())
	if apierrors.IsNotFound(err) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("discover %s in cluster %q: %w", gv, cluster, err)
	}
	kinds := make(map[string]bool, len(list.APIResources))
	for _, r := range list.APIResources {
		kinds[r.Kind] = true
	}
	return kinds, nil
}
