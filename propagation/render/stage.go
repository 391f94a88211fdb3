package render

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// stages of a staged apply, in order.
const (
	stageNamespaces = iota
	stageCRDs
	stageSetup
	stageRest
	stageAdmission
	numStages
)

// setupKinds are applied after CRDs and before everything else: identities and
// permissions that workloads run with, and policy and classes that must exist when the
// workloads' pods are created (a LimitRange or a default-deny NetworkPolicy applied after a
// pod starts is too late for it).
var setupKinds = map[schema.GroupKind]bool{
	{Kind: "ServiceAccount"}: true,
	{Kind: "ResourceQuota"}:  true,
	{Kind: "LimitRange"}:     true,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}:        true,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"}: true,
	{Group: "rbac.authorization.k8s.io", Kind: "Role"}:               true,
	{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"}:        true,
	{Group: "networking.k8s.io", Kind: "NetworkPolicy"}:              true,
	{Group: "networking.k8s.io", Kind: "IngressClass"}:               true,
	{Group: "scheduling.k8s.io", Kind: "PriorityClass"}:              true,
	{Group: "storage.k8s.io", Kind: "StorageClass"}:                  true,
	{Group: "node.k8s.io", Kind: "RuntimeClass"}:                     true,
}

// admissionKinds are applied last: each points at a Service that an earlier stage deploys,
// and a webhook with failurePolicy Fail whose backend is not running yet would refuse the
// rest of the apply.
var admissionKinds = map[schema.GroupKind]bool{
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}: true,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}:   true,
	{Group: "apiregistration.k8s.io", Kind: "APIService"}:                           true,
}

// Stage sorts docs into the stages of an apply, leaving out empty stages: Namespaces; then
// CustomResourceDefinitions; then setup (ServiceAccounts, RBAC, quotas and limits,
// NetworkPolicies, priority, storage, ingress and runtime classes); then everything else;
// then admission webhooks and APIServices. Within a stage the order of docs is kept. It is a
// pure sort: the controller applies one stage, and waits for what the next stage needs
// (CRDs established), before the next.
func Stage(docs []Document) [][]Document {
	stages := make([][]Document, numStages)
	for _, d := range docs {
		s := stageOf(d.Object.GroupVersionKind().GroupKind())
		stages[s] = append(stages[s], d)
	}
	out := stages[:0]
	for _, s := range stages {
		if len(s) > 0 {
			out = append(out, s)
		}
	}
	return out
}

// WaitAfter reports whether the apply waits, after applying stage (one element of Stage's
// result), for its objects to be ready before the next stage: Namespaces must exist and
// CRDs be established before anything goes into them or uses their kinds. Later stages
// are not waited for (a Deployment that is still rolling out must not hold back its
// Service); their health is reported instead.
func WaitAfter(stage []Document) bool {
	return len(stage) > 0 && stageOf(stage[0].Object.GroupVersionKind().GroupKind()) <= stageCRDs
}

func stageOf(gk schema.GroupKind) int {
	switch {
	case gk == schema.GroupKind{Kind: "Namespace"}:
		return stageNamespaces
	case gk == schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}:
		return stageCRDs
	case setupKinds[gk]:
		return stageSetup
	case admissionKinds[gk]:
		return stageAdmission
	default:
		return stageRest
	}
}

// InNamespace returns deep copies of docs with metadata.namespace set to ns, for one
// namespace of a perNamespace fan-out. The caller has checked that the kinds are
// namespaced.
func InNamespace(docs []Document, ns string) []Document {
	out := make([]Document, len(docs))
	for i, d := range docs {
		d.Object = d.Object.DeepCopy()
		d.Object.SetNamespace(ns)
		out[i] = d
	}
	return out
}
