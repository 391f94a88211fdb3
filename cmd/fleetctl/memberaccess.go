package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Names of what `fleetctl register` creates in a member for the hub's identity.
const (
	// memberNamespace holds the hub's ServiceAccount and its token in every member.
	memberNamespace = "flotilla-system"
	// hubServiceAccount is the identity the hub acts as in the member; the ClusterRole,
	// ClusterRoleBinding and token Secret are named after it.
	hubServiceAccount = "flotilla-hub"
	// hubTokenSecret holds the ServiceAccount's long-lived token and the member's CA.
	hubTokenSecret = hubServiceAccount + "-token"
	// clusterAdminRole is the built-in role bound instead of ours with --cluster-admin.
	clusterAdminRole = "cluster-admin"
)

// hubUsername is how the member's API server names the hub.
var hubUsername = "system:serviceaccount:" + memberNamespace + ":" + hubServiceAccount

// tokenWaitTimeout bounds the wait for the token controller; a variable so that a test of
// a member without kube-controller-manager does not wait a minute.
var tokenWaitTimeout = 60 * time.Second

var (
	readVerbs = []string{"get", "list", "watch"}
	crudVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete"}
)

// hubAccessRules is the ClusterRole `fleetctl register` grants the hub in a member unless
// --cluster-admin is given: what the connection manager, the baseline propagation and the
// service mirrors need, and nothing more. Keep one comment per rule saying why: the README
// quotes this table.
var hubAccessRules = []rbacv1.PolicyRule{
	// Nodes, read only: the health probe reports the node count, and NodePort exports
	// publish node addresses.
	{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: readVerbs},
	// Namespaces: baselines create namespaces, and the per-namespace fan-out watches them to
	// apply into namespaces created later.
	{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: crudVerbs},
	// The namespaced core objects baselines ship (config maps, service accounts, quotas,
	// limit ranges) and service mirrors write (selectorless Services and their Endpoints).
	{APIGroups: []string{""}, Resources: []string{"services", "endpoints", "configmaps", "serviceaccounts", "resourcequotas", "limitranges"}, Verbs: crudVerbs},
	// Secrets without list and watch: baselines may ship Secrets, but the hub must never be
	// able to cache every Secret of a member.
	{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "create", "update", "patch", "delete"}},
	// EndpointSlices: service mirrors publish the exported Service's addresses through them,
	// and exports are read from them.
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: crudVerbs},
	// NetworkPolicies: a baseline's core use (default-deny in every namespace).
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: crudVerbs},
	// RBAC baselines. bind and escalate let the hub grant rights it does not hold itself,
	// which RBAC otherwise forbids. This is powerful: whoever controls the hub's Baselines
	// can give any identity any right in the member, so this role is close to cluster-admin
	// in effect; it still keeps the hub from reading every Secret or running workloads
	// outside what a Baseline declares.
	{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"roles", "rolebindings", "clusterroles", "clusterrolebindings"}, Verbs: append(slices.Clone(crudVerbs), "bind", "escalate")},
	// Addons shipped by baselines.
	{APIGroups: []string{"apps"}, Resources: []string{"deployments", "daemonsets", "statefulsets"}, Verbs: crudVerbs},
	// CRDs shipped by baselines (before the custom resources that use them).
	{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, Verbs: crudVerbs},
	// Disruption budgets of baseline addons.
	{APIGroups: []string{"policy"}, Resources: []string{"poddisruptionbudgets"}, Verbs: crudVerbs},
	// Priority classes of baseline addons.
	{APIGroups: []string{"scheduling.k8s.io"}, Resources: []string{"priorityclasses"}, Verbs: crudVerbs},
	// The health probe: the member's version and its API server's health.
	{NonResourceURLs: []string{"/version", "/healthz", "/readyz"}, Verbs: []string{"get"}},
}

// managedLabels marks what fleetctl creates, so that unregister --cleanup removes only that.
func managedLabels() map[string]string {
	return map[string]string{fleetv1alpha1.LabelManagedBy: fleetv1alpha1.ManagedByValue}
}

func isManaged(obj client.Object) bool {
	return obj.GetLabels()[fleetv1alpha1.LabelManagedBy] == fleetv1alpha1.ManagedByValue
}

// hubCredentials is what the hub gets to reach a member: the ServiceAccount token and the
// CA bundle to verify the member's API server. Never printed or logged.
type hubCredentials struct {
	token []byte
	// rootCA is the member's root CA from the token Secret (ca.crt).
	rootCA []byte
}

// memberAccess sets up and removes the hub's identity in one member, with the user's own
// credentials for that member.
type memberAccess struct {
	c client.Client
	// cfg is the member's client configuration, for the discovery a namespace check needs.
	cfg   *rest.Config
	steps stepPrinter
}

// ensure creates or updates the namespace, ServiceAccount, RBAC and token Secret, and waits
// for the token controller to fill the Secret in.
func (a *memberAccess) ensure(ctx context.Context, clusterAdmin bool) (*hubCredentials, error) {
	if err := a.ensureNamespace(ctx); err != nil {
		return nil, err
	}
	sa := corev1ac.ServiceAccount(hubServiceAccount, memberNamespace).WithLabels(managedLabels())
	if err := a.apply(ctx, "serviceaccount "+memberNamespace+"/"+hubServiceAccount, sa,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount, Namespace: memberNamespace}}); err != nil {
		return nil, err
	}
	if clusterAdmin {
		if err := a.ensureBinding(ctx, clusterAdminRole); err != nil {
			return nil, err
		}
		// A role left from an earlier run without --cluster-admin would be granted to nobody.
		what := "clusterrole " + hubServiceAccount
		res, err := a.deleteManaged(ctx, what, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount}})
		if err != nil {
			return nil, err
		}
		if res != deleteNotFound {
			a.steps.printf("%s %s (not needed with --cluster-admin)", what, res)
		}
	} else {
		role := rbacv1ac.ClusterRole(hubServiceAccount).WithLabels(managedLabels()).WithRules(policyRulesApply(hubAccessRules)...)
		if err := a.apply(ctx, "clusterrole "+hubServiceAccount, role, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount}}); err != nil {
			return nil, err
		}
		if err := a.ensureBinding(ctx, hubServiceAccount); err != nil {
			return nil, err
		}
	}
	// A long-lived token Secret rather than the TokenRequest API: the hub needs a credential
	// that does not expire while nobody is around to renew it from outside the member.
	// Created by hand (not listed in the ServiceAccount), it is not subject to the cleanup of
	// unused auto-generated legacy tokens.
	token := corev1ac.Secret(hubTokenSecret, memberNamespace).
		WithLabels(managedLabels()).
		WithAnnotations(map[string]string{corev1.ServiceAccountNameKey: hubServiceAccount}).
		WithType(corev1.SecretTypeServiceAccountToken)
	live := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: hubTokenSecret, Namespace: memberNamespace}}
	if err := a.apply(ctx, "secret "+memberNamespace+"/"+hubTokenSecret, token, live); err != nil {
		return nil, err
	}
	return a.waitForToken(ctx, live)
}

// ensureNamespace creates the member namespace if it is missing and otherwise leaves it
// alone: a namespace someone else made is not labelled as Flotilla's, so --cleanup never
// deletes it.
func (a *memberAccess) ensureNamespace(ctx context.Context) error {
	res, err := createNamespaceIfMissing(ctx, a.c, memberNamespace)
	if err != nil {
		return err
	}
	a.steps.printf("namespace %s %s", memberNamespace, res)
	return nil
}

// ensureBinding binds the hub's ServiceAccount to the named ClusterRole. roleRef cannot be
// changed in place, so switching to or from --cluster-admin replaces the binding.
func (a *memberAccess) ensureBinding(ctx context.Context, role string) error {
	what := "clusterrolebinding " + hubServiceAccount
	live := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount}}
	replaced := false
	switch err := a.c.Get(ctx, client.ObjectKeyFromObject(live), live); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("get %s: %w", what, err)
	case live.RoleRef.Kind != "ClusterRole" || live.RoleRef.Name != role:
		if err := a.c.Delete(ctx, live); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s to change its role to %s: %w", what, role, err)
		}
		replaced = true
	}
	binding := rbacv1ac.ClusterRoleBinding(hubServiceAccount).
		WithLabels(managedLabels()).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(role)).
		WithSubjects(rbacv1ac.Subject().WithKind(rbacv1.ServiceAccountKind).WithNamespace(memberNamespace).WithName(hubServiceAccount))
	live = &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount}}
	res, err := applyObject(ctx, a.c, binding, live)
	if err != nil {
		return fmt.Errorf("apply %s: %w", what, err)
	}
	if replaced {
		a.steps.printf("%s replaced (now bound to clusterrole %s)", what, role)
		return nil
	}
	a.steps.printf("%s %s (clusterrole %s)", what, res, role)
	return nil
}

func (a *memberAccess) apply(ctx context.Context, what string, ac runtime.ApplyConfiguration, live client.Object) error {
	res, err := applyObject(ctx, a.c, ac, live)
	if err != nil {
		return fmt.Errorf("apply %s: %w", what, err)
	}
	a.steps.printf("%s %s", what, res)
	return nil
}

// waitForToken polls the token Secret until the member's token controller has filled in
// the token and the CA.
func (a *memberAccess) waitForToken(ctx context.Context, secret *corev1.Secret) (*hubCredentials, error) {
	filled := func(s *corev1.Secret) bool {
		return len(s.Data[corev1.ServiceAccountTokenKey]) > 0 && len(s.Data[corev1.ServiceAccountRootCAKey]) > 0
	}
	if !filled(secret) {
		a.steps.printf("waiting for the token controller to fill in secret %s/%s...", memberNamespace, hubTokenSecret)
		var lastErr error
		// The reads use ctx, not the poll's deadline, so that the last one is not cut short and
		// mistaken for a failure; a failed read is retried, as one lost request should not
		// fail the registration.
		err := wait.PollUntilContextTimeout(ctx, pollInterval, tokenWaitTimeout, true, func(context.Context) (bool, error) {
			lastErr = a.c.Get(ctx, client.ObjectKeyFromObject(secret), secret)
			return lastErr == nil && filled(secret), nil
		})
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil && lastErr != nil:
			return nil, fmt.Errorf("read secret %s/%s: %w", memberNamespace, hubTokenSecret, lastErr)
		case err != nil:
			return nil, fmt.Errorf("secret %s/%s has no token and ca.crt after %s: the member's kube-controller-manager "+
				"token controller did not populate it (is kube-controller-manager running, with "+
				"--service-account-private-key-file and --root-ca-file?)", memberNamespace, hubTokenSecret, tokenWaitTimeout)
		}
		a.steps.printf("token ready")
	}
	return &hubCredentials{
		token:  secret.Data[corev1.ServiceAccountTokenKey],
		rootCA: secret.Data[corev1.ServiceAccountRootCAKey],
	}, nil
}

// remove deletes what ensure created, each object only if it carries Flotilla's label; the
// namespace only if nothing else is left in it.
func (a *memberAccess) remove(ctx context.Context) error {
	objects := []struct {
		what string
		obj  client.Object
	}{
		{"secret " + memberNamespace + "/" + hubTokenSecret, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: hubTokenSecret, Namespace: memberNamespace}}},
		{"clusterrolebinding " + hubServiceAccount, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount}}},
		{"clusterrole " + hubServiceAccount, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount}}},
		{"serviceaccount " + memberNamespace + "/" + hubServiceAccount, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount, Namespace: memberNamespace}}},
	}
	for _, o := range objects {
		res, err := a.deleteManaged(ctx, o.what, o.obj)
		if err != nil {
			return err
		}
		a.steps.printf("%s %s", o.what, res)
	}
	return a.removeNamespaceIfEmpty(ctx)
}

// What deleteManaged did, for the caller to print.
const (
	deleteDone     = "deleted"
	deleteNotFound = "not found"
	deleteSkipped  = "left alone (not labelled " + fleetv1alpha1.LabelManagedBy + "=" + fleetv1alpha1.ManagedByValue + ")"
)

// deleteManaged deletes obj if it exists and carries Flotilla's label: an object of the same
// name that someone else made is not fleetctl's to remove.
func (a *memberAccess) deleteManaged(ctx context.Context, what string, obj client.Object) (string, error) {
	switch err := a.c.Get(ctx, client.ObjectKeyFromObject(obj), obj); {
	case apierrors.IsNotFound(err):
		return deleteNotFound, nil
	case err != nil:
		return "", fmt.Errorf("get %s: %w", what, err)
	case !isManaged(obj):
		return deleteSkipped, nil
	}
	if err := a.c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("delete %s: %w", what, err)
	}
	return deleteDone, nil
}

// ignoredInNamespace are objects the control plane puts into every namespace; they do not
// make the namespace "in use".
var ignoredInNamespace = map[string]string{
	"serviceaccounts": "default",
	"configmaps":      "kube-root-ca.crt",
}

// removeNamespaceIfEmpty deletes the member namespace if fleetctl created it and nothing but
// what the control plane puts into every namespace is left in it. Every listable namespaced
// resource is checked, since a baseline or a person may have put anything there.
func (a *memberAccess) removeNamespaceIfEmpty(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: memberNamespace}}
	switch err := a.c.Get(ctx, client.ObjectKeyFromObject(ns), ns); {
	case apierrors.IsNotFound(err):
		a.steps.printf("namespace %s not found", memberNamespace)
		return nil
	case err != nil:
		return fmt.Errorf("get namespace %s: %w", memberNamespace, err)
	case !isManaged(ns):
		a.steps.printf("namespace %s kept (not created by fleetctl)", memberNamespace)
		return nil
	case ns.DeletionTimestamp != nil:
		a.steps.printf("namespace %s already being deleted", memberNamespace)
		return nil
	}
	left, err := namespaceContents(ctx, a.cfg, memberNamespace)
	if err != nil {
		return fmt.Errorf("check what is left in namespace %s: %w", memberNamespace, err)
	}
	if len(left) > 0 {
		a.steps.printf("namespace %s kept: it still holds %s", memberNamespace, strings.Join(left, ", "))
		return nil
	}
	if err := a.c.Delete(ctx, ns); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete namespace %s: %w", memberNamespace, err)
	}
	a.steps.printf("namespace %s deleted", memberNamespace)
	return nil
}

// namespaceContents returns up to a few "resource/name" of objects in namespace, ignoring
// events and what the control plane creates in every namespace.
func namespaceContents(ctx context.Context, cfg *rest.Config, namespace string) ([]string, error) {
	cfg = clientConfig(cfg)
	// Listing deprecated types (v1 Endpoints) here is no use of them worth warning about.
	cfg.WarningHandler, cfg.WarningHandlerWithContext = rest.NoWarnings{}, nil
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	lists, err := dc.ServerPreferredNamespacedResources()
	if err != nil {
		// A group that cannot be discovered might hold objects: say so rather than guess.
		return nil, err
	}
	const maxShown = 3
	var left []string
	for _, list := range lists {
		gv, err := schema.ParseGroupVersion(list.GroupVersion)
		if err != nil {
			return nil, err
		}
		for _, r := range list.APIResources {
			if r.Name == "events" || strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") {
				continue
			}
			items, err := dyn.Resource(gv.WithResource(r.Name)).Namespace(namespace).List(ctx, metav1.ListOptions{Limit: 5})
			if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", r.Name, err)
			}
			for _, item := range items.Items {
				if ignoredInNamespace[r.Name] == item.GetName() && gv.Group == "" {
					continue
				}
				left = append(left, r.Name+"/"+item.GetName())
				if len(left) == maxShown {
					return left, nil
				}
			}
		}
	}
	return left, nil
}

func policyRulesApply(rules []rbacv1.PolicyRule) []*rbacv1ac.PolicyRuleApplyConfiguration {
	out := make([]*rbacv1ac.PolicyRuleApplyConfiguration, 0, len(rules))
	for _, r := range rules {
		ac := rbacv1ac.PolicyRule().WithVerbs(r.Verbs...)
		if len(r.NonResourceURLs) > 0 {
			ac.WithNonResourceURLs(r.NonResourceURLs...)
		} else {
			ac.WithAPIGroups(r.APIGroups...).WithResources(r.Resources...)
		}
		out = append(out, ac)
	}
	return out
}
