package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// The controller's identity as config/ installs it.
const (
	HubNamespace   = "flotilla-system"
	ServiceAccount = "flotilla-controller"
)

// InstallHub installs config/default of the checkout at root into the hub the way `make
// deploy` does — kubectl kustomize, then kubectl server-side apply — except the Deployment,
// whose pods a backend without nodes cannot run; the backend runs the binary instead, under
// the same ServiceAccount. It returns once the CRDs are established.
func InstallHub(ctx context.Context, kubectl, root, hubKubeconfig string) error {
	rendered, err := runCmd(ctx, nil, kubectl, "kustomize", filepath.Join(root, "config", "default"))
	if err != nil {
		return err
	}
	objs, err := splitYAML(rendered)
	if err != nil {
		return fmt.Errorf("render config/default: %w", err)
	}
	var install bytes.Buffer
	var crds []string
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment":
			continue
		case "CustomResourceDefinition":
			crds = append(crds, "crd/"+o.GetName())
		}
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		install.WriteString("---\n")
		install.Write(data)
	}
	if _, err := runCmd(ctx, install.Bytes(), kubectl, "--kubeconfig="+hubKubeconfig,
		"apply", "--server-side", "--field-manager=flotilla-install", "-f", "-"); err != nil {
		return err
	}
	_, err = runCmd(ctx, nil, kubectl, append([]string{"--kubeconfig=" + hubKubeconfig,
		"wait", "--for=condition=Established", "--timeout=60s"}, crds...)...)
	return err
}

// WriteServiceAccountKubeconfig writes to path a kubeconfig that authenticates to the hub as
// the controller's ServiceAccount with a bound token (TokenRequest), so that the controller
// has exactly the rights config/rbac gives it. admin must be allowed to request the token.
func WriteServiceAccountKubeconfig(ctx context.Context, admin *rest.Config, path string, ttl time.Duration) error {
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return err
	}
	tr, err := cs.CoreV1().ServiceAccounts(HubNamespace).CreateToken(ctx, ServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(ttl.Seconds()))},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("request a token for ServiceAccount %s/%s: %w", HubNamespace, ServiceAccount, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["hub"] = &clientcmdapi.Cluster{Server: admin.Host, CertificateAuthorityData: admin.CAData}
	cfg.AuthInfos[ServiceAccount] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["hub"] = &clientcmdapi.Context{Cluster: "hub", AuthInfo: ServiceAccount}
	cfg.CurrentContext = "hub"
	return clientcmd.WriteToFile(*cfg, path)
}

// runCmd runs a program and returns its stdout; the error carries stderr.
func runCmd(ctx context.Context, stdin []byte, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, out, stderr.String())
	}
	return out, nil
}

func splitYAML(data []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		err := d.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}
