package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// dryRunTokenPlaceholder stands where the hub's token goes in the kubeconfig that
// register --dry-run prints: a token exists only once the ServiceAccount does, and creating
// it would be a write.
const dryRunTokenPlaceholder = "REPLACE-WITH-A-TOKEN-OF-flotilla-system/flotilla-hub"

// runRegisterDryRun prints what register would apply and writes nothing: it reads the hub
// (a conflicting registration is refused here as it would be for real) and the member's root
// CA, the same CA bundle register would give the hub.
func runRegisterDryRun(ctx context.Context, out, errOut io.Writer, hub *hubFlags, o *registerOptions, labels map[string]string) error {
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
	if _, err := checkHubConflicts(ctx, hubClient, o.name, secretRef); err != nil {
		return err
	}
	memberClient, err := newClient(memberCfg, errOut)
	if err != nil {
		return err
	}
	rootCA, err := readRootCA(ctx, memberClient)
	if err != nil {
		return fmt.Errorf("member %q: %w", o.name, err)
	}
	server := o.memberServer
	if server == "" {
		server = memberCfg.Host
	}
	kubeconfig, err := hubKubeconfig(o.name, server, memberCfg, &hubCredentials{token: []byte(dryRunTokenPlaceholder), rootCA: rootCA})
	if err != nil {
		return fmt.Errorf("member %q: %w", o.name, err)
	}

	// The member's objects in the order register applies them, then the hub's.
	acs := []any{namespaceApply(memberNamespace), serviceAccountApply()}
	if o.clusterAdmin {
		acs = append(acs, clusterRoleBindingApply(clusterAdminRole))
	} else {
		acs = append(acs, clusterRoleApply(), clusterRoleBindingApply(hubServiceAccount))
	}
	if o.longLived {
		acs = append(acs, tokenSecretApply())
	} else {
		acs = append(acs, tokenRoleApply(), tokenRoleBindingApply())
	}
	// stringData: the placeholder must be readable to be replaced.
	acs = append(acs, hubSecretApply(o.name, secretRef, !o.longLived).WithStringData(map[string]string{secretRef.Key: string(kubeconfig)}),
		memberClusterApply(o.name, labels, secretRef))

	objs := make([]runtime.Object, 0, len(acs))
	for _, ac := range acs {
		u, err := applyConfigurationObject(ac)
		if err != nil {
			return err
		}
		objs = append(objs, u)
	}
	fmt.Fprintf(errOut, "# dry run: nothing was written. The first %d objects belong in member %q, the last 2 in the hub.\n", len(objs)-2, o.name)
	fmt.Fprintf(errOut, "# Secret %s/%s holds the placeholder token %s: put a token of ServiceAccount %s/%s there "+
		"(kubectl -n %s create token %s --duration 1h, in the member), or apply the member objects and run this without --dry-run.\n",
		secretRef.Namespace, secretRef.Name, dryRunTokenPlaceholder, memberNamespace, hubServiceAccount, memberNamespace, hubServiceAccount)
	if o.output.format() == "yaml" {
		// One document per object, what GitOps tools and kubectl apply -f read.
		p, err := o.output.printer()
		if err != nil {
			return err
		}
		for _, obj := range objs {
			if err := p.PrintObj(obj, out); err != nil {
				return err
			}
		}
		return nil
	}
	return o.output.printObjects(out, objs)
}

// applyConfigurationObject is the object an apply configuration describes, as the
// API server receives it.
func applyConfigurationObject(ac any) (*unstructured.Unstructured, error) {
	data, err := json.Marshal(ac)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	return u, nil
}

// readRootCA reads the member's root CA from kube-root-ca.crt, which kube-controller-manager
// publishes into every namespace: flotilla-system's if register ran before, else default's.
func readRootCA(ctx context.Context, c client.Client) ([]byte, error) {
	var lastErr error
	for _, ns := range []string{memberNamespace, corev1.NamespaceDefault} {
		cm := &corev1.ConfigMap{}
		err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: rootCAConfigMap}, cm)
		if err == nil && cm.Data[corev1.ServiceAccountRootCAKey] != "" {
			return []byte(cm.Data[corev1.ServiceAccountRootCAKey]), nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("read configmap %s/%s: %w", ns, rootCAConfigMap, err)
		}
		if err == nil {
			err = fmt.Errorf("configmap %s/%s has no %s", ns, rootCAConfigMap, corev1.ServiceAccountRootCAKey)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("no configmap %s with ca.crt in namespace %s or %s: is the member's kube-controller-manager running? (%w)",
		rootCAConfigMap, memberNamespace, corev1.NamespaceDefault, lastErr)
}
