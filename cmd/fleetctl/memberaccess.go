package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
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
	"github.com/flotilla-dev/flotilla/internal/membertoken"
)

// Names of what `fleetctl register` creates in a member for the hub's identity.
const (
	// memberNamespace holds the hub's ServiceAccount and its token in every member.
	memberNamespace = "flotilla-system"
	// hubServiceAccount is the identity the hub acts as in the member; the ClusterRole,
	// ClusterRoleBinding and token Secret are named after it.
	hubServiceAccount = "flotilla-hub"
	// hubTokenSecret holds the ServiceAccount's long-lived token and the member's CA (with
	// --long-lived-token only).
	hubTokenSecret = hubServiceAccount + "-token"
	// hubTokenRole is the Role and RoleBinding that let the hub's ServiceAccount request
	// tokens for itself, and for nothing else, so that the hub renews its own short-lived token.
	hubTokenRole = hubServiceAccount + "-token"
	// rootCAConfigMap is published into every namespace by kube-controller-manager with the
	// member's root CA (key ca.crt).
	rootCAConfigMap = "kube-root-ca.crt"
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
	// Multi-Cluster Services: ServiceExports are read (cached: a ServiceExport exports its
	// Service) and their status says Valid/Conflict; ServiceImports are written, one per
	// exported namespace/name, without list or watch (the hub knows their names).
	{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceexports"}, Verbs: readVerbs},
	{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceexports/status", "serviceimports/status"}, Verbs: []string{"update"}},
	{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceimports"}, Verbs: []string{"get", "create", "update", "delete"}},
	// The member's cluster ID: the ClusterProperty cluster.clusterset.k8s.io only (create
	// cannot be limited to a name).
	{APIGroups: []string{"about.k8s.io"}, Resources: []string{"clusterproperties"}, ResourceNames: []string{"cluster.clusterset.k8s.io"}, Verbs: []string{"get", "update"}},
	{APIGroups: []string{"about.k8s.io"}, Resources: []string{"clusterproperties"}, Verbs: []string{"create"}},
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
	// rootCA is the member's root CA (ca.crt of the token Secret or of kube-root-ca.crt).
	rootCA []byte
	// expiry of a short-lived token; zero for a long-lived one.
	expiry time.Time
}

// tokenOptions say which kind of token register gives the hub.
type tokenOptions struct {
	// longLived: a ServiceAccount token Secret, which never expires (the legacy mode).
	longLived bool
	// lifetime of a short-lived token issued by register.
	lifetime time.Duration
	// current is the token in the hub's kubeconfig Secret from an earlier run, if any: a
	// short-lived one with at least half its lifetime left is kept, so that re-running
	// register changes nothing.
	current string
}

// memberAccess sets up and removes the hub's identity in one member, with the user's own
// credentials for that member.
type memberAccess struct {
	c client.Client
	// cfg is the member's client configuration, for the discovery a namespace check needs.
	cfg   *rest.Config
	steps stepPrinter
}

// ensure creates or updates the namespace, ServiceAccount and RBAC, and returns the hub's
// credentials: a short-lived token (by default) or a long-lived token Secret's.
func (a *memberAccess) ensure(ctx context.Context, clusterAdmin bool, tokens tokenOptions) (*hubCredentials, error) {
	if err := a.ensureNamespace(ctx); err != nil {
		return nil, err
	}
	liveSA, err := a.ensureServiceAccount(ctx)
	if err != nil {
		return nil, err
	}
	if clusterAdmin {
		if err := a.ensureBinding(ctx, clusterAdminRole); err != nil {
			return nil, err
		}
		// A role left from an earlier run without --cluster-admin would be granted to nobody.
		if err := a.removeLeftover(ctx, "clusterrole "+hubServiceAccount, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount}},
			"not needed with --cluster-admin"); err != nil {
			return nil, err
		}
	} else {
		if err := a.apply(ctx, "clusterrole "+hubServiceAccount, clusterRoleApply(), &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount}}); err != nil {
			return nil, err
		}
		if err := a.ensureBinding(ctx, hubServiceAccount); err != nil {
			return nil, err
		}
	}
	if tokens.longLived {
		// The hub cannot renew a long-lived token, so it gets no right to request tokens.
		for _, o := range tokenRoleObjects() {
			if err := a.removeLeftover(ctx, o.what, o.obj, "not needed with --long-lived-token"); err != nil {
				return nil, err
			}
		}
		return a.ensureLongLivedToken(ctx)
	}
	if err := a.ensureTokenRole(ctx); err != nil {
		return nil, err
	}
	// A token that never expires would outlive every rotation: switching to short-lived
	// tokens revokes it (deleting a token Secret invalidates its token).
	if err := a.removeLeftover(ctx, "secret "+memberNamespace+"/"+hubTokenSecret,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: hubTokenSecret, Namespace: memberNamespace}},
		"its long-lived token is revoked; the hub uses short-lived tokens"); err != nil {
		return nil, err
	}
	rootCA, err := a.waitForRootCA(ctx)
	if err != nil {
		return nil, err
	}
	if c, ok := membertoken.Parse(tokens.current); ok && c.Namespace == memberNamespace && c.ServiceAccount == hubServiceAccount &&
		c.UID == string(liveSA.UID) && time.Until(c.Expiry) > tokens.lifetime/2 {
		a.steps.printf("token kept: the hub's current token is valid until %s", formatTime(c.Expiry))
		return &hubCredentials{token: []byte(tokens.current), rootCA: rootCA, expiry: c.Expiry}, nil
	}
	token, expiry, err := a.requestToken(ctx, liveSA, tokens.lifetime)
	if err != nil {
		return nil, err
	}
	a.steps.printf("token requested for serviceaccount %s/%s, valid until %s", memberNamespace, hubServiceAccount, formatTime(expiry))
	return &hubCredentials{token: token, rootCA: rootCA, expiry: expiry}, nil
}

// ensureServiceAccount applies the hub's ServiceAccount and returns it as it is now.
func (a *memberAccess) ensureServiceAccount(ctx context.Context) (*corev1.ServiceAccount, error) {
	live := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount, Namespace: memberNamespace}}
	if err := a.apply(ctx, "serviceaccount "+memberNamespace+"/"+hubServiceAccount, serviceAccountApply(), live); err != nil {
		return nil, err
	}
	return live, nil
}

// formatTime is how fleetctl shows a token's expiry.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// tokenRoleObjects are the Role and RoleBinding of ensureTokenRole.
func tokenRoleObjects() []struct {
	what string
	obj  client.Object
} {
	return []struct {
		what string
		obj  client.Object
	}{
		{"rolebinding " + memberNamespace + "/" + hubTokenRole, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: hubTokenRole, Namespace: memberNamespace}}},
		{"role " + memberNamespace + "/" + hubTokenRole, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: hubTokenRole, Namespace: memberNamespace}}},
	}
}

// ensureTokenRole lets the hub's ServiceAccount request tokens for itself only (create on
// serviceaccounts/token, resourceNames: itself): the hub renews its token with the token
// it holds, and that token can mint no other identity's.
func (a *memberAccess) ensureTokenRole(ctx context.Context) error {
	if err := a.apply(ctx, "role "+memberNamespace+"/"+hubTokenRole, tokenRoleApply(),
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: hubTokenRole, Namespace: memberNamespace}}); err != nil {
		return err
	}
	return a.apply(ctx, "rolebinding "+memberNamespace+"/"+hubTokenRole, tokenRoleBindingApply(),
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: hubTokenRole, Namespace: memberNamespace}})
}

// requestToken issues a token for the hub's ServiceAccount with the user's credentials
// (TokenRequest API), bound to no object: it is valid until it expires.
func (a *memberAccess) requestToken(ctx context.Context, sa *corev1.ServiceAccount, lifetime time.Duration) ([]byte, time.Time, error) {
	seconds := int64(lifetime / time.Second)
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds}}
	if err := a.c.SubResource("token").Create(ctx, sa, tr); err != nil {
		return nil, time.Time{}, fmt.Errorf("request a token for serviceaccount %s/%s: %w", memberNamespace, hubServiceAccount, err)
	}
	return []byte(tr.Status.Token), tr.Status.ExpirationTimestamp.Time, nil
}

// waitForRootCA reads the member's root CA from the kube-root-ca.crt ConfigMap that
// kube-controller-manager publishes into every namespace (right after the namespace is made).
func (a *memberAccess) waitForRootCA(ctx context.Context) ([]byte, error) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: rootCAConfigMap, Namespace: memberNamespace}}
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, pollInterval, tokenWaitTimeout, true, func(context.Context) (bool, error) {
		lastErr = a.c.Get(ctx, client.ObjectKeyFromObject(cm), cm)
		return lastErr == nil && cm.Data[corev1.ServiceAccountRootCAKey] != "", nil
	})
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil && lastErr != nil && !apierrors.IsNotFound(lastErr):
		return nil, fmt.Errorf("read configmap %s/%s: %w", memberNamespace, rootCAConfigMap, lastErr)
	case err != nil:
		return nil, fmt.Errorf("configmap %s/%s has no ca.crt after %s: the member's kube-controller-manager did not publish "+
			"the root CA (is kube-controller-manager running, with --root-ca-file?)", memberNamespace, rootCAConfigMap, tokenWaitTimeout)
	}
	return []byte(cm.Data[corev1.ServiceAccountRootCAKey]), nil
}

// ensureLongLivedToken creates the token Secret and waits for the token controller to fill
// it in.
func (a *memberAccess) ensureLongLivedToken(ctx context.Context) (*hubCredentials, error) {
	// A token Secret rather than the TokenRequest API (--long-lived-token): a credential that
	// does not expire while nobody is around to renew it. Created by hand (not listed in the
	// ServiceAccount), it is not subject to the cleanup of unused auto-generated legacy tokens.
	live := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: hubTokenSecret, Namespace: memberNamespace}}
	if err := a.apply(ctx, "secret "+memberNamespace+"/"+hubTokenSecret, tokenSecretApply(), live); err != nil {
		return nil, err
	}
	return a.waitForToken(ctx, live)
}

// removeLeftover deletes an object fleetctl made in an earlier run that the current one does
// not need, saying why; nothing is printed when there was none.
func (a *memberAccess) removeLeftover(ctx context.Context, what string, obj client.Object, why string) error {
	res, err := a.deleteManaged(ctx, what, obj)
	if err != nil {
		return err
	}
	if res != deleteNotFound {
		a.steps.printf("%s %s (%s)", what, res, why)
	}
	return nil
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
	live = &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount}}
	res, err := applyObject(ctx, a.c, clusterRoleBindingApply(role), live)
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
	objects := append(tokenRoleObjects(), []struct {
		what string
		obj  client.Object
	}{
		{"secret " + memberNamespace + "/" + hubTokenSecret, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: hubTokenSecret, Namespace: memberNamespace}}},
		{"clusterrolebinding " + hubServiceAccount, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount}}},
		{"clusterrole " + hubServiceAccount, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount}}},
		{"serviceaccount " + memberNamespace + "/" + hubServiceAccount, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: hubServiceAccount, Namespace: memberNamespace}}},
	}...)
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

// The objects register applies in a member, one function each, so that register and
// register --dry-run (which prints them for GitOps) cannot tell different stories.

func serviceAccountApply() *corev1ac.ServiceAccountApplyConfiguration {
	return corev1ac.ServiceAccount(hubServiceAccount, memberNamespace).WithLabels(managedLabels())
}

func clusterRoleApply() *rbacv1ac.ClusterRoleApplyConfiguration {
	return rbacv1ac.ClusterRole(hubServiceAccount).WithLabels(managedLabels()).WithRules(policyRulesApply(hubAccessRules)...)
}

// clusterRoleBindingApply binds the hub's ServiceAccount to the ClusterRole role.
func clusterRoleBindingApply(role string) *rbacv1ac.ClusterRoleBindingApplyConfiguration {
	return rbacv1ac.ClusterRoleBinding(hubServiceAccount).
		WithLabels(managedLabels()).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(role)).
		WithSubjects(rbacv1ac.Subject().WithKind(rbacv1.ServiceAccountKind).WithNamespace(memberNamespace).WithName(hubServiceAccount))
}

func tokenRoleApply() *rbacv1ac.RoleApplyConfiguration {
	return rbacv1ac.Role(hubTokenRole, memberNamespace).WithLabels(managedLabels()).WithRules(
		rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("serviceaccounts/token").
			WithResourceNames(hubServiceAccount).WithVerbs("create"))
}

func tokenRoleBindingApply() *rbacv1ac.RoleBindingApplyConfiguration {
	return rbacv1ac.RoleBinding(hubTokenRole, memberNamespace).WithLabels(managedLabels()).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("Role").WithName(hubTokenRole)).
		WithSubjects(rbacv1ac.Subject().WithKind(rbacv1.ServiceAccountKind).WithNamespace(memberNamespace).WithName(hubServiceAccount))
}

// tokenSecretApply is the long-lived token Secret (--long-lived-token).
func tokenSecretApply() *corev1ac.SecretApplyConfiguration {
	return corev1ac.Secret(hubTokenSecret, memberNamespace).
		WithLabels(managedLabels()).
		WithAnnotations(map[string]string{corev1.ServiceAccountNameKey: hubServiceAccount}).
		WithType(corev1.SecretTypeServiceAccountToken)
}

// namespaceApply is a namespace as register creates it when missing.
func namespaceApply(name string) *corev1ac.NamespaceApplyConfiguration {
	return corev1ac.Namespace(name).WithLabels(managedLabels())
}

func policyRulesApply(rules []rbacv1.PolicyRule) []*rbacv1ac.PolicyRuleApplyConfiguration {
	out := make([]*rbacv1ac.PolicyRuleApplyConfiguration, 0, len(rules))
	for _, r := range rules {
		ac := rbacv1ac.PolicyRule().WithVerbs(r.Verbs...)
		if len(r.NonResourceURLs) > 0 {
			ac.WithNonResourceURLs(r.NonResourceURLs...)
		} else {
			ac.WithAPIGroups(r.APIGroups...).WithResources(r.Resources...)
			if len(r.ResourceNames) > 0 { // a rule limited to names must stay limited
				ac.WithResourceNames(r.ResourceNames...)
			}
		}
		out = append(out, ac)
	}
	return out
}
