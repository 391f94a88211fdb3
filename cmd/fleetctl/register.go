package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/membertoken"
)

// registerOptions are the flags and argument of `fleetctl register`.
type registerOptions struct {
	name         string
	member       memberFlags
	memberServer string
	labels       string
	clusterAdmin bool
	hubNamespace string
	longLived    bool
	lifetime     time.Duration
	// dryRun prints what register would apply instead of applying it; output is its -o.
	dryRun bool
	output *outputFlags
	// installMCS installs the Multi-Cluster Services CRDs in the member (mcs.go).
	installMCS bool
}

// defaultTokenLifetime is the lifetime of the tokens fleetctl issues; the hub renews them
// with its own --member-token-lifetime.
const (
	defaultTokenLifetime = time.Hour
	minTokenLifetime     = 10 * time.Minute // the API server issues no shorter token
)

func newRegisterCommand(hub *hubFlags) *cobra.Command {
	o := &registerOptions{output: newOutputFlags("yaml")}
	cmd := &cobra.Command{
		Use:   "register NAME --member-kubeconfig FILE",
		Short: "Register a member cluster with the hub, giving the hub its own least-privilege identity in the member",
		Long: `register uses your credentials for the member (--member-kubeconfig) to create, in
the member, a ServiceAccount flotilla-system/flotilla-hub, a ClusterRole granting what
Flotilla needs (or cluster-admin with --cluster-admin) and its binding, and a Role
flotilla-hub-token that lets the ServiceAccount request tokens for itself only. It issues
a short-lived token (--token-lifetime, 1h) and stores a kubeconfig holding only that token
and the member's CA in the hub Secret <hub-namespace>/NAME-kubeconfig, annotated
fleet.flotilla.dev/renew-token: "true", then creates the MemberCluster NAME pointing at
it. Your own credentials never leave this machine.

The hub renews the token itself before it expires (at half its lifetime by default) and
writes the new one into the Secret; 'fleetctl rotate-credentials NAME' renews it at once.
If the hub was down for longer than a token's lifetime, the MemberCluster says
TokenExpired and 'fleetctl rotate-credentials NAME --member-kubeconfig FILE' issues a
new one.

--long-lived-token instead creates a ServiceAccount token Secret flotilla-hub-token whose
token never expires and is never renewed (the legacy mode).

Re-running is safe: every step says whether it created, updated or left an object
unchanged (a token with at least half its lifetime left is kept).

--dry-run writes nothing anywhere: it only reads (the member's root CA, the hub's
existing registration) and prints what register would apply, for GitOps: the member's
namespace, ServiceAccount and RBAC, then the hub's kubeconfig Secret and MemberCluster
(-o yaml, the default: one document each; -o json: a v1 List; -o name). A token cannot
be issued without writing, so the Secret's kubeconfig holds the placeholder token
` + dryRunTokenPlaceholder + ` (in stringData, to be replaced by your secret manager); or
apply the member objects and run register without --dry-run, which then changes nothing
but the Secret.`,
		Example: `  fleetctl register eu-1 --member-kubeconfig ~/.kube/eu-1.yaml --labels env=prod,region=eu
  fleetctl register dev --member-kubeconfig kind.yaml --member-server https://dev-control-plane:6443
  fleetctl register eu-1 --member-kubeconfig ~/.kube/eu-1.yaml --dry-run > eu-1.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return runRegister(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), hub, o)
		},
	}
	o.member.bind(cmd, "Kubeconfig with admin access to the member; used from this machine only, never copied to the hub (required).")
	cmd.Flags().StringVar(&o.memberServer, "member-server", "",
		"API server URL the hub uses to reach the member (default: the server in --member-kubeconfig).")
	cmd.Flags().StringVar(&o.labels, "labels", "", "Labels of the MemberCluster, k=v,k2=v2; Baselines and Service exports select clusters by them.")
	cmd.Flags().BoolVar(&o.clusterAdmin, "cluster-admin", false,
		"Bind the hub's ServiceAccount to cluster-admin instead of Flotilla's least-privilege ClusterRole.")
	cmd.Flags().StringVar(&o.hubNamespace, "hub-namespace", fleetv1alpha1.DefaultHubNamespace, "Hub namespace that holds the member's kubeconfig Secret.")
	cmd.Flags().BoolVar(&o.longLived, "long-lived-token", false,
		"Give the hub a ServiceAccount token Secret that never expires and is never renewed, instead of a short-lived token the hub renews (legacy).")
	cmd.Flags().DurationVar(&o.lifetime, "token-lifetime", defaultTokenLifetime,
		"Lifetime of the short-lived token register issues (at least 10m); the hub renews it with its own --member-token-lifetime.")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false,
		"Print the objects register would apply in the member and the hub (-o yaml|json|name) and write nothing.")
	o.output.bind(cmd)
	cmd.Flags().BoolVar(&o.installMCS, "install-mcs-crds", false,
		"Install the Multi-Cluster Services CRDs (ServiceExport, ServiceImport of sigs.k8s.io/mcs-api v0.5.2, and ClusterProperty) in the member, so that the hub writes ServiceImports and the member's cluster ID there.")
	_ = cmd.MarkFlagRequired("member-kubeconfig")
	return cmd
}

// validate checks everything that can be checked without a cluster and returns the
// MemberCluster's labels. It runs before anything is touched.
func (o *registerOptions) validate() (map[string]string, error) {
	if err := validateClusterName(o.name); err != nil {
		return nil, err
	}
	if errs := validation.IsDNS1123Label(o.hubNamespace); len(errs) > 0 {
		return nil, fmt.Errorf("invalid --hub-namespace %q: %s", o.hubNamespace, strings.Join(errs, "; "))
	}
	if o.memberServer != "" {
		u, err := url.Parse(o.memberServer)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("invalid --member-server %q: want an https:// URL", o.memberServer)
		}
	}
	if !o.longLived && o.lifetime < minTokenLifetime {
		return nil, fmt.Errorf("invalid --token-lifetime %s: the API server issues no token shorter than %s", o.lifetime, minTokenLifetime)
	}
	labels, err := fleetv1alpha1.ParseClusterLabels(o.labels)
	if err != nil {
		return nil, fmt.Errorf("invalid --labels: %w", err)
	}
	labels[fleetv1alpha1.LabelRegistration] = fleetv1alpha1.RegistrationFleetctl
	if o.output.print.OutputFlagSpecified != nil && o.output.print.OutputFlagSpecified() && !o.dryRun {
		return nil, fmt.Errorf("-o only applies with --dry-run: register prints its steps")
	}
	if o.output.human() && o.dryRun {
		return nil, fmt.Errorf("register --dry-run prints objects: use -o yaml, json or name")
	}
	if err := o.output.validate(); err != nil {
		return nil, err
	}
	return labels, nil
}

// validateClusterName checks that name can be a MemberCluster name: it appears in label
// values and mirror names, so it is a DNS label.
func validateClusterName(name string) error {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return fmt.Errorf("invalid cluster name %q: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

func kubeconfigSecretName(cluster string) string { return cluster + "-kubeconfig" }

func runRegister(ctx context.Context, out, errOut io.Writer, hub *hubFlags, o *registerOptions) error {
	labels, err := o.validate()
	if err != nil {
		return err
	}
	if o.dryRun {
		return runRegisterDryRun(ctx, out, errOut, hub, o, labels)
	}
	memberCfg, err := o.member.restConfig()
	if err != nil {
		return err
	}
	hubCfg, err := hub.restConfig()
	if err != nil {
		return err
	}
	hubClient, err := newClient(hubCfg, errOut)
	if err != nil {
		return err
	}
	secretRef := fleetv1alpha1.SecretKeyReference{
		Namespace: o.hubNamespace, Name: kubeconfigSecretName(o.name), Key: fleetv1alpha1.DefaultKubeconfigKey,
	}
	// Conflicts on the hub are found before the member is changed, so a refused registration
	// leaves nothing behind.
	current, err := checkHubConflicts(ctx, hubClient, o.name, secretRef)
	if err != nil {
		return err
	}

	memberClient, err := newClient(memberCfg, errOut)
	if err != nil {
		return err
	}
	steps := memberSteps(out, o.name)
	if o.installMCS {
		if err := installMCSCRDs(ctx, memberClient, memberCfg, steps); err != nil {
			return fmt.Errorf("member %q: %w", o.name, err)
		}
	}
	access := &memberAccess{c: memberClient, cfg: memberCfg, steps: steps}
	tokens := tokenOptions{longLived: o.longLived, lifetime: o.lifetime}
	if current != nil {
		tokens.current, _ = membertoken.FromKubeconfig(current.Data[secretRef.Key])
	}
	creds, err := access.ensure(ctx, o.clusterAdmin, tokens)
	if err != nil {
		return fmt.Errorf("member %q: %w", o.name, err)
	}
	server := o.memberServer
	if server == "" {
		server = memberCfg.Host
	}
	kubeconfig, err := hubKubeconfig(o.name, server, memberCfg, creds)
	if err != nil {
		return fmt.Errorf("member %q: %w", o.name, err)
	}
	if err := verifyHubKubeconfig(ctx, kubeconfig); err != nil {
		if o.memberServer == "" {
			return fmt.Errorf("member %q: the hub's new credentials do not work: %w", o.name, err)
		}
		// The hub may well reach an address this machine cannot.
		steps.printf("could not check the hub's credentials against %s from this machine (%v); the hub must be able to reach it", server, err)
	} else {
		steps.printf("hub credentials verified: they authenticate as %s", hubUsername)
	}

	hs := hubSteps(out)
	if err := ensureHubNamespace(ctx, hubClient, hs, o.hubNamespace); err != nil {
		return err
	}
	secret := hubSecretApply(o.name, secretRef, !creds.expiry.IsZero()).WithData(map[string][]byte{secretRef.Key: kubeconfig})
	res, err := applyObject(ctx, hubClient, secret, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secretRef.Name, Namespace: secretRef.Namespace}})
	if err != nil {
		return fmt.Errorf("hub: apply secret %s/%s: %w", secretRef.Namespace, secretRef.Name, err)
	}
	hs.printf("secret %s/%s %s", secretRef.Namespace, secretRef.Name, res)

	res, err = applyObject(ctx, hubClient, memberClusterApply(o.name, labels, secretRef),
		&fleetv1alpha1.MemberCluster{ObjectMeta: metav1.ObjectMeta{Name: o.name}})
	if err != nil {
		return fmt.Errorf("hub: apply membercluster %s: %w", o.name, err)
	}
	hs.printf("membercluster %s %s", o.name, res)
	if creds.expiry.IsZero() {
		hs.printf("the member token never expires (--long-lived-token); rotate it with: fleetctl rotate-credentials %s --member-kubeconfig FILE", o.name)
	} else {
		hs.printf("the hub renews the member token before it expires (%s)", formatTime(creds.expiry))
	}
	fmt.Fprintf(out, "Registered %q. Watch it connect with: %s\n", o.name, hub.kubectl("get membercluster "+o.name))
	return nil
}

// checkHubConflicts refuses to take over a MemberCluster or Secret another registration
// source manages: the secret source or Cluster API would fight fleetctl over it, and
// overwriting a Cluster API kubeconfig Secret would break that cluster's management.
// It returns the kubeconfig Secret of an earlier registration, if any.
func checkHubConflicts(ctx context.Context, c client.Client, name string, ref fleetv1alpha1.SecretKeyReference) (*corev1.Secret, error) {
	mc := &fleetv1alpha1.MemberCluster{}
	switch err := c.Get(ctx, client.ObjectKey{Name: name}, mc); {
	case meta.IsNoMatchError(err):
		return nil, fmt.Errorf("hub: the Flotilla API %s is not installed on the hub (install the CRDs first): %w", fleetv1alpha1.GroupVersion, err)
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("hub: get membercluster %s: %w", name, err)
	default:
		if src := mc.Labels[fleetv1alpha1.LabelRegistration]; src != fleetv1alpha1.RegistrationFleetctl {
			return nil, fmt.Errorf("hub: membercluster %s already exists and was registered by %s, not fleetctl; "+
				"unregister it through that source first, or choose another name", name, describeSource(src))
		}
		if mc.DeletionTimestamp != nil {
			return nil, fmt.Errorf("hub: membercluster %s is being deleted (finalizers: %s); register it again once it is gone",
				name, strings.Join(mc.Finalizers, ", "))
		}
		if got := mc.Spec.KubeconfigSecretRef; got.Namespace != ref.Namespace || got.Name != ref.Name {
			return nil, fmt.Errorf("hub: membercluster %s already exists and uses secret %s/%s, not %s/%s; "+
				"pass the --hub-namespace it was registered with, or unregister it first", name, got.Namespace, got.Name, ref.Namespace, ref.Name)
		}
	}
	secret := &corev1.Secret{}
	switch err := c.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, secret); {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("hub: get secret %s/%s: %w", ref.Namespace, ref.Name, err)
	case secret.Labels[fleetv1alpha1.LabelRegistration] != fleetv1alpha1.RegistrationFleetctl:
		return nil, fmt.Errorf("hub: secret %s/%s already exists and was not created by fleetctl (no label %s=%s); "+
			"it may be another registration's kubeconfig, so it is left alone: choose another name or --hub-namespace",
			ref.Namespace, ref.Name, fleetv1alpha1.LabelRegistration, fleetv1alpha1.RegistrationFleetctl)
	}
	return secret, nil
}

func describeSource(label string) string {
	if label == "" {
		return "hand (no " + fleetv1alpha1.LabelRegistration + " label)"
	}
	return fmt.Sprintf("%q", label)
}

func ensureHubNamespace(ctx context.Context, c client.Client, steps stepPrinter, name string) error {
	res, err := createNamespaceIfMissing(ctx, c, name)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	steps.printf("namespace %s %s", name, res)
	return nil
}

// hubSecretApply is the hub's kubeconfig Secret of member cluster, without its data.
func hubSecretApply(cluster string, ref fleetv1alpha1.SecretKeyReference, renew bool) *corev1ac.SecretApplyConfiguration {
	secret := corev1ac.Secret(ref.Name, ref.Namespace).
		WithLabels(map[string]string{
			fleetv1alpha1.LabelRegistration: fleetv1alpha1.RegistrationFleetctl,
			fleetv1alpha1.LabelCluster:      cluster,
		}).
		WithType(corev1.SecretTypeOpaque)
	if renew {
		// Without it (--long-lived-token) the apply removes the annotation again.
		secret.WithAnnotations(map[string]string{fleetv1alpha1.AnnotationRenewToken: "true"})
	}
	return secret
}

// memberClusterApply is the MemberCluster as fleetctl declares it. Labels fleetctl applied
// before and no longer lists are removed by the apply; labels others added stay. (The
// Flotilla API has no generated apply configurations, hence Unstructured.)
func memberClusterApply(name string, labels map[string]string, ref fleetv1alpha1.SecretKeyReference) runtime.ApplyConfiguration {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(fleetv1alpha1.GroupVersion.String())
	u.SetKind("MemberCluster")
	u.SetName(name)
	u.SetLabels(labels)
	u.Object["spec"] = map[string]any{
		"kubeconfigSecretRef": map[string]any{"namespace": ref.Namespace, "name": ref.Name, "key": ref.Key},
	}
	return client.ApplyConfigurationFromUnstructured(u)
}

// hubKubeconfig is the kubeconfig the hub uses for a member: the ServiceAccount token and
// CAs only. The user's own credentials and any exec plugin or file reference stay behind.
// The CA bundle holds the CA the user's kubeconfig trusts for the member (it verified the
// server just now) and the member's root CA, from kube-root-ca.crt or the token Secret's
// ca.crt (which verifies the API server at an address given by --member-server), without
// duplicates.
func hubKubeconfig(cluster, server string, member *rest.Config, creds *hubCredentials) ([]byte, error) {
	userCA := member.CAData
	if len(userCA) == 0 && member.CAFile != "" {
		data, err := os.ReadFile(member.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read the member's CA file %s: %w", member.CAFile, err)
		}
		userCA = data
	}
	bundle, err := pemBundle(userCA, creds.rootCA)
	if err != nil {
		return nil, err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{
		Server:                   server,
		CertificateAuthorityData: bundle,
		TLSServerName:            member.ServerName,
	}
	cfg.AuthInfos[hubServiceAccount] = &clientcmdapi.AuthInfo{Token: string(creds.token)}
	cfg.Contexts[cluster] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: hubServiceAccount}
	cfg.CurrentContext = cluster
	return clientcmd.Write(*cfg)
}

// pemBundle concatenates the certificates of several PEM inputs, each once.
func pemBundle(inputs ...[]byte) ([]byte, error) {
	var out []byte
	seen := map[string]bool{}
	for _, in := range inputs {
		for rest := in; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" || seen[string(block.Bytes)] {
				continue
			}
			seen[string(block.Bytes)] = true
			out = append(out, pem.EncodeToMemory(block)...)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no CA certificate for the member: neither --member-kubeconfig nor the member's root CA (kube-root-ca.crt or the token Secret's ca.crt) holds one")
	}
	return out, nil
}

// verifyHubKubeconfig checks that the kubeconfig the hub will get authenticates as the
// hub's ServiceAccount, so a broken registration fails here rather than in a condition later.
func verifyHubKubeconfig(ctx context.Context, kubeconfig []byte) error {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return err
	}
	// Short: with --member-server the address may be unreachable from here, and that is
	// only worth a warning, not a long wait.
	cfg.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if got := review.Status.UserInfo.Username; got != hubUsername {
		return fmt.Errorf("they authenticate as %q, want %q", got, hubUsername)
	}
	return nil
}
