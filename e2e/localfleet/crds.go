package localfleet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// clientScheme is the scheme of ControlPlane.Client: built-in kinds and CRDs.
var clientScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	return s
}()

// readCRDs reads every CustomResourceDefinition in the *.yaml files of dir (not recursively).
// Documents of other kinds, such as a kustomization.yaml, are ignored.
func readCRDs(dir string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("CRD directory: %w", err)
	}
	slices.Sort(files)
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", file, err)
			}
			var crd apiextensionsv1.CustomResourceDefinition
			if err := yaml.Unmarshal(doc, &crd); err != nil {
				return nil, fmt.Errorf("decode %s: %w", file, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				continue
			}
			crds = append(crds, &crd)
		}
	}
	return crds, nil
}

// installCRDs creates the CRDs of dir on c and waits until every served version is in
// discovery, not just Established: clients built right after Start use discovery-based REST
// mappers, which would otherwise fail with "no matches for kind".
func installCRDs(ctx context.Context, c *ControlPlane, dir string) error {
	crds, err := readCRDs(dir)
	if err != nil || len(crds) == 0 {
		return err
	}
	// Typed clients rather than controller-runtime's: its client warns on stderr when the
	// program never set a controller-runtime logger.
	cl, err := apiextensionsclient.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	for _, crd := range crds {
		if _, err := cl.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create CRD %s: %w", crd.Name, err)
		}
	}
	c.mu.Lock()
	procs := []*process{c.etcd, c.apiserver}
	c.mu.Unlock()
	for _, crd := range crds {
		err := c.waitFor(ctx, fmt.Sprintf("CRD %s to be served", crd.Name), func(ctx context.Context) error {
			got, err := cl.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !established(got) {
				return errors.New("not Established")
			}
			for _, v := range got.Spec.Versions {
				if !v.Served {
					continue
				}
				gv := got.Spec.Group + "/" + v.Name
				list, err := cs.Discovery().ServerResourcesForGroupVersion(gv)
				if err != nil {
					return err
				}
				if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == got.Spec.Names.Plural }) {
					return fmt.Errorf("%s not yet in discovery of %s", got.Spec.Names.Plural, gv)
				}
			}
			return nil
		}, procs...)
		if err != nil {
			return err
		}
	}
	return nil
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, cond := range crd.Status.Conditions {
		if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}
