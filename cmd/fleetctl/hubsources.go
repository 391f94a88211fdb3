package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// readBaseline reads b's sources from the hub namespace and parses them with render.Read,
// exactly as the controller reads them. A source that does not parse is an error naming the
// source and document, as the Baseline's Stalled condition would.
func readBaseline(ctx context.Context, hub client.Client, hubNamespace string, b *fleetv1alpha1.Baseline) (*render.Rendered, error) {
	out, err := render.Read(ctx, hub, hub, hubNamespace, b)
	var srcErr *render.SourceError
	var invalid *render.InvalidSourcesError
	switch {
	case errors.As(err, &invalid):
		return nil, fmt.Errorf("baseline %q has invalid sources, so nothing of it would be applied anywhere:\n%w", b.Name, invalid.Err)
	case errors.As(err, &srcErr) && apierrors.IsNotFound(srcErr.Err):
		return nil, fmt.Errorf("baseline %q: %s: %s %s/%s not found (sources are read from the hub namespace; see --hub-namespace)",
			b.Name, srcErr.Field, srcErr.Kind, srcErr.Namespace, srcErr.Name)
	case errors.As(err, &srcErr) && apierrors.IsForbidden(srcErr.Err):
		return nil, fmt.Errorf("baseline %q: %s: you may not read %s %s/%s on the hub; fleetctl diff reads a Baseline's sources "+
			"with your credentials and needs get on it", b.Name, srcErr.Field, srcErr.Kind, srcErr.Namespace, srcErr.Name)
	case err != nil:
		return nil, fmt.Errorf("baseline %q: %w", b.Name, err)
	}
	return out, nil
}

// memberClient connects to a member the way the hub does: with the kubeconfig stored in the
// hub Secret that spec.kubeconfigSecretRef names, read with the user's hub credentials.
func memberClient(ctx context.Context, hub client.Client, mc *fleetv1alpha1.MemberCluster, errOut io.Writer) (client.Client, error) {
	ref := mc.Spec.KubeconfigSecretRef
	key := ref.Key
	if key == "" {
		key = fleetv1alpha1.DefaultKubeconfigKey
	}
	secret := &corev1.Secret{}
	switch err := hub.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, secret); {
	case apierrors.IsForbidden(err):
		return nil, fmt.Errorf("you may not read Secret %s/%s on the hub, which holds the kubeconfig of cluster %q: "+
			"fleetctl diff connects to members with the credentials the hub stores for them, so it needs get on "+
			"that Secret (ask the hub's admin for a Role granting it, or run diff as the admin)", ref.Namespace, ref.Name, mc.Name)
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("secret %s/%s with the kubeconfig of cluster %q not found on the hub", ref.Namespace, ref.Name, mc.Name)
	case err != nil:
		return nil, fmt.Errorf("read the kubeconfig of cluster %q (Secret %s/%s): %w", mc.Name, ref.Namespace, ref.Name, err)
	}
	data, ok := secret.Data[key]
	if !ok {
		return nil, fmt.Errorf("secret %s/%s has no key %q with the kubeconfig of cluster %q", ref.Namespace, ref.Name, key, mc.Name)
	}
	raw, err := clientcmd.Load(data)
	if err != nil {
		// The parser's message could quote the credentials.
		return nil, fmt.Errorf("the kubeconfig of cluster %q in Secret %s/%s does not parse", mc.Name, ref.Namespace, ref.Name)
	}
	if err := checkStoredKubeconfig(raw); err != nil {
		return nil, fmt.Errorf("the kubeconfig of cluster %q in Secret %s/%s %w", mc.Name, ref.Namespace, ref.Name, err)
	}
	cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, "", &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("the kubeconfig of cluster %q in Secret %s/%s: %w", mc.Name, ref.Namespace, ref.Name, err)
	}
	cfg.UserAgent = "fleetctl"
	c, err := newClient(cfg, errOut)
	if err != nil {
		return nil, fmt.Errorf("connect to cluster %q at %s: %w", mc.Name, cfg.Host, err)
	}
	return c, nil
}

// checkStoredKubeconfig refuses what would run a program or read a file on this machine: a
// kubeconfig on the hub is written by whoever may write that Secret, and fleetctl runs with
// its user's rights. (The hub itself accepts these only when its admin allowed them.)
func checkStoredKubeconfig(cfg *clientcmdapi.Config) error {
	var found []string
	for name, u := range cfg.AuthInfos {
		switch {
		case u.Exec != nil:
			found = append(found, fmt.Sprintf("an exec plugin (user %q)", name))
		case u.AuthProvider != nil:
			found = append(found, fmt.Sprintf("an auth-provider (user %q)", name))
		case u.TokenFile != "" || u.ClientCertificate != "" || u.ClientKey != "":
			found = append(found, fmt.Sprintf("a file reference (user %q)", name))
		}
	}
	for name, c := range cfg.Clusters {
		if c.CertificateAuthority != "" {
			found = append(found, fmt.Sprintf("a file reference (cluster %q)", name))
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("uses %s, which fleetctl does not run or read on this machine", strings.Join(found, ", "))
	}
	return nil
}
