package mirror

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

const (
	// ManagedBy is the endpointslice.kubernetes.io/managed-by value of mirror EndpointSlices;
	// Kubernetes' own EndpointSlice controllers leave slices of another manager alone.
	ManagedBy = "servicesync.fleet.flotilla.dev"
	// AnnotationSource on a mirror Service names its source as <cluster>/<namespace>/<name>,
	// for people; ownership is decided by labels only.
	AnnotationSource = "fleet.flotilla.dev/source"
	// MaxEndpointsPerSlice is how many endpoints one mirror EndpointSlice holds at most (the
	// EndpointSlice controller's default).
	MaxEndpointsPerSlice = 100

	// hashLen hex characters of sha256 end a shortened name.
	hashLen = 8
)

// Name is the mirror's name in target clusters: <service>-<cluster> when that is a DNS-1035
// label of at most 63 characters (always the case for valid inputs that fit). Otherwise it is
// shortened and made valid deterministically: lower-cased, characters outside [a-z0-9-]
// replaced by "-", cut so that "-" plus 8 hex characters of sha256(service + "/" + cluster)
// fit into 63, trailing dashes removed. The hash keeps names that share a long prefix apart.
// Different (service, cluster) pairs can still give one name ("a-b"+"c", "a"+"b-c"); the
// ownership labels, not the name, decide whether an existing object is this mirror.
func Name(service, cluster string) string {
	name := service + "-" + cluster
	if len(name) <= validation.DNS1035LabelMaxLength && len(validation.IsDNS1035Label(name)) == 0 {
		return name
	}
	sum := sha256.Sum256([]byte(service + "/" + cluster))
	suffix := hex.EncodeToString(sum[:])[:hashLen]

	var b strings.Builder
	for i := 0; i < len(name) && b.Len() < validation.DNS1035LabelMaxLength-1-hashLen; i++ {
		c := name[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9' && b.Len() > 0, c == '-' && b.Len() > 0:
		case b.Len() == 0:
			continue // A DNS-1035 label starts with a letter.
		default:
			c = '-'
		}
		b.WriteByte(c)
	}
	prefix := strings.TrimRight(b.String(), "-")
	if prefix == "" {
		prefix = "svc"
	}
	return prefix + "-" + suffix
}

// Labels are the ownership labels of every mirror object of the Service namespace/name in
// cluster; as a selector they find exactly that source's mirrors. Cluster, namespace and
// name are DNS labels, so they are valid label values.
func Labels(cluster, namespace, name string) map[string]string {
	return map[string]string{
		fleetv1alpha1.LabelSourceCluster:   cluster,
		fleetv1alpha1.LabelSourceNamespace: namespace,
		fleetv1alpha1.LabelSourceName:      name,
		fleetv1alpha1.LabelManagedBy:       fleetv1alpha1.ManagedByValue,
	}
}

// Owned reports whether obj's labels say it is a mirror of exactly this source; an object
// that is not must never be updated or deleted on the source's behalf.
func Owned(obj metav1.Object, cluster, namespace, name string) bool {
	l := obj.GetLabels()
	return l[fleetv1alpha1.LabelManagedBy] == fleetv1alpha1.ManagedByValue &&
		l[fleetv1alpha1.LabelSourceCluster] == cluster &&
		l[fleetv1alpha1.LabelSourceNamespace] == namespace &&
		l[fleetv1alpha1.LabelSourceName] == name
}

// sliceLabels are a mirror EndpointSlice's labels: ownership, its Service, its manager.
func sliceLabels(src Source, mirrorName string) map[string]string {
	l := Labels(src.Cluster, src.Service.Namespace, src.Service.Name)
	l[discoveryv1.LabelServiceName] = mirrorName
	l[discoveryv1.LabelManagedBy] = ManagedBy
	return l
}
