package clusters

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// maxResourceList bounds one group version's resource list (a few KiB for any real group).
const maxResourceList = 4 << 20

// ServedKinds implements MemberAccess. It asks the member for one group version's resource
// list (GET /apis/GROUP/VERSION, a small answer, 404 when not served). Asking a client's
// REST mapper instead costs a full aggregated discovery of the member — every group and
// resource it serves, over 100 KB — each time the kind is not served, since the mapper
// caches only groups it found; and a discovery client built per question cost more than
// the question. The request is a plainGet: for a question asked every minute of every
// member, whose answer is usually "no", that is the cost of one small request.
func (c *Connections) ServedKinds(cluster string, gv schema.GroupVersion) (map[string]bool, error) {
	m, err := c.connected(cluster)
	if err != nil {
		return nil, err
	}
	return m.servedKinds(gv)
}

// servedKinds asks the member which kinds it serves in gv (none when it does not serve gv).
func (m *member) servedKinds(gv schema.GroupVersion) (map[string]bool, error) {
	cluster := m.name
	get, err := newPlainGet(m.config, m.mapperHTTP, "apis/"+gv.String(), nil, "application/json")
	if err != nil {
		return nil, fmt.Errorf("cluster %q: discover %s: %w", cluster, gv, err)
	}
	body, err := get.get(context.Background(), maxResourceList)
	if apierrors.IsNotFound(err) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("discover %s in cluster %q: %w", gv, cluster, err)
	}
	var list metav1.APIResourceList
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("discover %s in cluster %q: %w", gv, cluster, err)
	}
	kinds := make(map[string]bool, len(list.APIResources))
	for _, r := range list.APIResources {
		kinds[r.Kind] = true
	}
	return kinds, nil
}
