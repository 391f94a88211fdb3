// Package mcscrd holds the CustomResourceDefinitions of the Multi-Cluster Services API that a
// member needs for Flotilla to speak MCS there (ServiceExport and ServiceImport from
// sigs.k8s.io/mcs-api, ClusterProperty of KEP-2149), and installs them. fleetctl register
// --install-mcs-crds and the tests use it; the controller never installs CRDs in a member.
package mcscrd

import (
	"context"
	_ "embed" // the ClusterProperty CRD
	"errors"
	"fmt"
	"slices"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcscrd "sigs.k8s.io/mcs-api/config/crd"
	"sigs.k8s.io/yaml"
)

//go:embed clusterproperty.yaml
var clusterPropertyCRD []byte

// CRDs are the MCS CustomResourceDefinitions, decoded: ServiceExport, ServiceImport
// (sigs.k8s.io/mcs-api v0.5.2, serving v1alpha1 and v1beta1) and ClusterProperty.
func CRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, doc := range [][]byte{mcscrd.ServiceExportCRD, mcscrd.ServiceImportCRD, clusterPropertyCRD} {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(doc, crd); err != nil {
			return nil, fmt.Errorf("decode MCS CRD: %w", err)
		}
		out = append(out, crd)
	}
	return out, nil
}

// Install creates the MCS CRDs in the cluster c talks to, or updates the ones it holds to
// these definitions, and waits until every served version is in disco's discovery (a client
// built right after would otherwise find no such kind). It returns what it did per CRD, for
// a person to read.
func Install(ctx context.Context, c client.Client, disco discovery.DiscoveryInterface, timeout time.Duration) ([]string, error) {
	crds, err := CRDs()
	if err != nil {
		return nil, err
	}
	var done []string
	for _, crd := range crds {
		live := &apiextensionsv1.CustomResourceDefinition{}
		switch err := c.Get(ctx, client.ObjectKeyFromObject(crd), live); {
		case apierrors.IsNotFound(err):
			if err := c.Create(ctx, crd); err != nil {
				return done, fmt.Errorf("create CRD %s: %w", crd.Name, err)
			}
			done = append(done, "created CRD "+crd.Name)
		case err != nil:
			return done, fmt.Errorf("read CRD %s: %w", crd.Name, err)
		default:
			live.Labels, live.Spec = crd.Labels, crd.Spec
			if err := c.Update(ctx, live); err != nil {
				return done, fmt.Errorf("update CRD %s: %w", crd.Name, err)
			}
			done = append(done, "updated CRD "+crd.Name)
		}
	}
	for _, crd := range crds {
		if err := waitServed(ctx, disco, crd, timeout); err != nil {
			return done, err
		}
	}
	return done, nil
}

// waitServed polls discovery until every served version of crd lists its resource.
func waitServed(ctx context.Context, disco discovery.DiscoveryInterface, crd *apiextensionsv1.CustomResourceDefinition, timeout time.Duration) error {
	last := errors.New("discovery not asked yet")
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		for _, v := range crd.Spec.Versions {
			if !v.Served {
				continue
			}
			list, err := disco.ServerResourcesForGroupVersion(crd.Spec.Group + "/" + v.Name)
			if err != nil {
				last = err
				return false, nil
			}
			if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == crd.Spec.Names.Plural }) {
				last = errors.New("not yet in discovery")
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("wait for CRD %s to be served: %w (last: %w)", crd.Name, err, last)
	}
	return nil
}
