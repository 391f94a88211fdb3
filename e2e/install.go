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
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
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
	// MetricsReaderRole is the ClusterRole that lets a caller scrape fleet-controller's metrics.
	MetricsReaderRole = "flotilla-metrics-reader"
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
	token, err := ServiceAccountToken(ctx, admin, ServiceAccount, ttl)
	if err != nil {
		return err
	}
	return WriteTokenKubeconfig(admin, ServiceAccount, token, path)
}

// WriteTokenKubeconfig writes to path a kubeconfig for the hub of admin that authenticates
// with token and nothing else.
func WriteTokenKubeconfig(admin *rest.Config, user, token, path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["hub"] = &clientcmdapi.Cluster{Server: admin.Host, CertificateAuthorityData: admin.CAData}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["hub"] = &clientcmdapi.Context{Cluster: "hub", AuthInfo: user}
	cfg.CurrentContext = "hub"
	return clientcmd.WriteToFile(*cfg, path)
}

// ServiceAccountToken returns a bound token (TokenRequest) of the ServiceAccount name in the
// hub namespace.
func ServiceAccountToken(ctx context.Context, admin *rest.Config, name string, ttl time.Duration) (string, error) {
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts(HubNamespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(ttl.Seconds()))},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("request a token for ServiceAccount %s/%s: %w", HubNamespace, name, err)
	}
	return tr.Status.Token, nil
}

// Grant names roles of config/rbac to bind to a ServiceAccount.
type Grant struct {
	// ClusterRoles are bound with ClusterRoleBindings.
	ClusterRoles []string
	// HubRoles are Roles of the hub namespace, bound there with RoleBindings.
	HubRoles []string
}

// NewServiceAccount creates the ServiceAccount name in the hub namespace, binds it as g says
// (bindings named after the ServiceAccount and the role) and returns a token of it valid for
// ttl: someone the hub knows, with exactly these roles.
func NewServiceAccount(ctx context.Context, admin *rest.Config, name string, g Grant, ttl time.Duration) (string, error) {
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return "", err
	}
	if _, err := cs.CoreV1().ServiceAccounts(HubNamespace).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("create ServiceAccount %s/%s: %w", HubNamespace, name, err)
	}
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: HubNamespace}}
	for _, role := range g.ClusterRoles {
		if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-" + role},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   subjects,
		}, metav1.CreateOptions{}); err != nil {
			return "", fmt.Errorf("bind ClusterRole %s to %s: %w", role, name, err)
		}
	}
	for _, role := range g.HubRoles {
		if _, err := cs.RbacV1().RoleBindings(HubNamespace).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-" + role},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role},
			Subjects:   subjects,
		}, metav1.CreateOptions{}); err != nil {
			return "", fmt.Errorf("bind Role %s/%s to %s: %w", HubNamespace, role, name, err)
		}
	}
	return ServiceAccountToken(ctx, admin, name, ttl)
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
