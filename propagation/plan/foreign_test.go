package plan

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// managedEntry is a managedFields entry; subresource may be empty.
func managedEntry(manager string, op metav1.ManagedFieldsOperationType, apiVersion, subresource, fields string) metav1.ManagedFieldsEntry {
	return metav1.ManagedFieldsEntry{Manager: manager, Operation: op, APIVersion: apiVersion, Subresource: subresource,
		FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(fields)}
}

const (
	npV1 = "networking.k8s.io/v1"
	// ownNetpol is Flotilla's entry after applying a default-deny NetworkPolicy.
	ownNetpol = `{"f:metadata":{"f:labels":{"f:app.kubernetes.io/managed-by":{},"f:fleet.flotilla.dev/baseline":{}}},"f:spec":{"f:podSelector":{},"f:policyTypes":{}}}`
)

var (
	own     = managedEntry(fleetv1alpha1.FieldManager, metav1.ManagedFieldsOperationApply, npV1, "", ownNetpol)
	update  = metav1.ManagedFieldsOperationUpdate
	applyOp = metav1.ManagedFieldsOperationApply
	rbacV1  = "rbac.authorization.k8s.io/v1"
)

// denyAllDoc is a default-deny NetworkPolicy team/deny-all.
func denyAllDoc() render.Document {
	d := doc(npV1, "NetworkPolicy", "team", "deny-all")
	d.Object.Object["spec"] = map[string]any{"podSelector": map[string]any{}, "policyTypes": []any{"Ingress"}}
	return d
}

// foreignSaid is ForeignFields' answer as the tests compare it.
func foreignSaid(fs []Foreign) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.String())
	}
	return out
}

func TestForeignFields(t *testing.T) {
	np := denyAllDoc()
	role := doc(rbacV1, "Role", "team", "reader")
	role.Object.Object["rules"] = []any{map[string]any{"apiGroups": []any{""}, "resources": []any{"pods"}, "verbs": []any{"get"}}}
	web := doc("apps/v1", "Deployment", "team", "web")
	web.Object.Object["spec"] = map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{
		map[string]any{"name": "web", "image": "nginx", "env": []any{map[string]any{"name": "MODE", "value": "prod"}}}}}}}
	aggregated := doc(rbacV1, "ClusterRole", "", "monitoring")
	aggregated.Object.Object["aggregationRule"] = map[string]any{"clusterRoleSelectors": []any{map[string]any{}}}
	tests := []struct {
		name    string
		doc     render.Document
		managed []metav1.ManagedFieldsEntry
		want    []string
		wantErr string
	}{
		{
			name:    "only Flotilla wrote it",
			doc:     np,
			managed: []metav1.ManagedFieldsEntry{own},
		},
		{
			name:    "kubectl edit added ingress: [{}] to a default-deny policy",
			doc:     np,
			managed: []metav1.ManagedFieldsEntry{own, managedEntry("kubectl-edit", update, npV1, "", `{"f:spec":{"f:ingress":{}}}`)},
			want:    []string{"kubectl-edit (Update): .spec.ingress"},
		},
		{
			name: "a server-side apply by another manager, and an edit that also touched metadata",
			doc:  np,
			managed: []metav1.ManagedFieldsEntry{own,
				managedEntry("tenant", applyOp, npV1, "", `{"f:spec":{"f:egress":{}}}`),
				managedEntry("kubectl-edit", update, npV1, "", `{"f:metadata":{"f:annotations":{"f:note":{}}},"f:spec":{"f:ingress":{}}}`)},
			want: []string{"tenant (Apply): .spec.egress", "kubectl-edit (Update): .spec.ingress"},
		},
		{
			name: "metadata alone is not foreign: labels and annotations of other tools stay",
			doc:  np,
			managed: []metav1.ManagedFieldsEntry{own,
				managedEntry("kubectl-client-side-apply", update, npV1, "", `{"f:metadata":{"f:annotations":{"f:kubectl.kubernetes.io/last-applied-configuration":{}},"f:labels":{"f:team":{}}}}`)},
		},
		{
			name: "subresources are the control plane's: status and scale",
			doc:  doc("apps/v1", "Deployment", "team", "web"),
			managed: []metav1.ManagedFieldsEntry{
				managedEntry(fleetv1alpha1.FieldManager, applyOp, "apps/v1", "", `{"f:spec":{"f:template":{}}}`),
				managedEntry("kube-controller-manager", update, "apps/v1", "status", `{"f:status":{"f:replicas":{}}}`),
				managedEntry("kube-controller-manager", update, "apps/v1", "scale", `{"f:spec":{"f:replicas":{}}}`),
				managedEntry("kube-controller-manager", update, "apps/v1", "", `{"f:metadata":{"f:annotations":{"f:deployment.kubernetes.io/revision":{}}}}`)},
		},
		{
			name: "a field the Baseline sets is not foreign: the apply puts its value back",
			doc:  np,
			managed: []metav1.ManagedFieldsEntry{own,
				managedEntry("tenant", applyOp, npV1, "", `{"f:spec":{"f:podSelector":{},"f:ingress":{}}}`)},
			want: []string{"tenant (Apply): .spec.ingress"},
		},
		{
			name:    "a matchLabels added inside the Baseline's empty podSelector is foreign",
			doc:     np,
			managed: []metav1.ManagedFieldsEntry{own, managedEntry("kubectl-edit", update, npV1, "", `{"f:spec":{"f:podSelector":{"f:matchLabels":{".":{},"f:app":{}}}}}`)},
			want:    []string{"kubectl-edit (Update): .spec.podSelector.matchLabels.app"},
		},
		{
			name:    "rules an edit changed in a Role are the Baseline's field (an atomic list): the apply restores them",
			doc:     role,
			managed: []metav1.ManagedFieldsEntry{managedEntry("kubectl-edit", update, rbacV1, "", `{"f:rules":{}}`)},
		},
		{
			name: "Flotilla's Update entry is another writer",
			doc:  np,
			managed: []metav1.ManagedFieldsEntry{own,
				managedEntry(fleetv1alpha1.FieldManager, update, npV1, "", `{"f:spec":{"f:ingress":{}}}`)},
			want: []string{"flotilla (Update): .spec.ingress"},
		},
		{
			name:    "an object someone else created: what the Baseline does not set",
			doc:     np,
			managed: []metav1.ManagedFieldsEntry{managedEntry("kubectl-create", update, npV1, "", `{"f:spec":{"f:ingress":{},"f:podSelector":{},"f:policyTypes":{}}}`)},
			want:    []string{"kubectl-create (Update): .spec.ingress"},
		},
		{
			name:    "entries of another apiVersion are left: their paths mean nothing in Flotilla's",
			doc:     doc("autoscaling/v2", "HorizontalPodAutoscaler", "team", "web"),
			managed: []metav1.ManagedFieldsEntry{managedEntry("kubectl-edit", update, "autoscaling/v1", "", `{"f:spec":{"f:targetCPUUtilizationPercentage":{}}}`)},
		},
		{
			name: "an item of a keyed list the Baseline does not have is foreign, one it has is not",
			doc:  web,
			managed: []metav1.ManagedFieldsEntry{managedEntry("kubectl-set", update, "apps/v1", "",
				`{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{"f:env":{`+
					`"k:{\"name\":\"DEBUG\"}":{".":{},"f:name":{},"f:value":{}},"k:{\"name\":\"MODE\"}":{"f:value":{}}}}}}}}}`)},
			want: []string{`kubectl-set (Update): .spec.template.spec.containers[name="web"].env[name="DEBUG"].name, .spec.template.spec.containers[name="web"].env[name="DEBUG"].value`},
		},
		{
			name: "a CA injected into a CRD's conversion webhook is the cluster's",
			doc:  doc("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "widgets.example.com"),
			managed: []metav1.ManagedFieldsEntry{managedEntry("cainjector", update, "apiextensions.k8s.io/v1", "",
				`{"f:spec":{"f:conversion":{"f:webhook":{"f:clientConfig":{"f:caBundle":{}}}}}}`)},
		},
		{
			name: "webhook CAs of any webhook are the cluster's, other webhook fields are not",
			doc:  doc("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "", "policy"),
			managed: []metav1.ManagedFieldsEntry{managedEntry("cainjector", update, "admissionregistration.k8s.io/v1", "",
				`{"f:webhooks":{"k:{\"name\":\"a.example.com\"}":{"f:clientConfig":{"f:caBundle":{}},"f:failurePolicy":{}}}}`)},
			want: []string{`cainjector (Update): .webhooks[name="a.example.com"].failurePolicy`},
		},
		{
			name:    "the rules of an aggregated ClusterRole are the aggregation controller's",
			doc:     aggregated,
			managed: []metav1.ManagedFieldsEntry{managedEntry("clusterrole-aggregation-controller", update, rbacV1, "", `{"f:rules":{}}`)},
		},
		{
			name:    "the rules of a ClusterRole without aggregation are foreign when others wrote them",
			doc:     doc(rbacV1, "ClusterRole", "", "viewer"),
			managed: []metav1.ManagedFieldsEntry{managedEntry("kubectl-edit", update, rbacV1, "", `{"f:rules":{}}`)},
			want:    []string{"kubectl-edit (Update): .rules"},
		},
		{
			name:    "an entry that does not parse is an error naming it",
			doc:     np,
			managed: []metav1.ManagedFieldsEntry{managedEntry("broken", update, npV1, "", `{"f:spec":`)},
			wantErr: "managedFields entry of broken (Update)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ForeignFields(tc.doc, tc.managed)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("ForeignFields: error %v, want one starting %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ForeignFields: %v", err)
			}
			if diff := cmp.Diff(tc.want, foreignSaid(got)); diff != "" {
				t.Errorf("foreign content (-want +got):\n%s", diff)
			}
		})
	}
}

// Make finds foreign content only where the policy acts on it: objects the apply compares
// and the Baseline owns or adopts; under Inform only in objects Flotilla applied before.
func TestMakeFindsForeignContent(t *testing.T) {
	const lb = fleetv1alpha1.LabelBaseline
	np := denyAllDoc()
	edit := managedEntry("kubectl-edit", update, npV1, "", `{"f:spec":{"f:ingress":{}}}`)
	withManaged := func(m *metav1.PartialObjectMetadata, entries ...metav1.ManagedFieldsEntry) *metav1.PartialObjectMetadata {
		m.ManagedFields = entries
		return m
	}
	tests := []struct {
		name     string
		baseline *fleetv1alpha1.Baseline
		live     *metav1.PartialObjectMetadata
		want     []string
	}{
		{name: "Enforce: an owned object with an editor's ingress", baseline: baseline(),
			live: withManaged(live("u1", lb, "sec"), own, edit), want: []string{"kubectl-edit (Update): .spec.ingress"}},
		{name: "Enforce: nothing foreign", baseline: baseline(), live: withManaged(live("u1", lb, "sec"), own)},
		{name: "Enforce: an object adopted takes over what its creator wrote", baseline: baseline(adopt),
			live: withManaged(live("u1"), managedEntry("kubectl-create", update, npV1, "", `{"f:spec":{"f:ingress":{}}}`)),
			want: []string{"kubectl-create (Update): .spec.ingress"}},
		{name: "a conflict is left alone", baseline: baseline(), live: withManaged(live("u1"), edit)},
		{name: "Inform reports what others added to an object Flotilla applied", baseline: baseline(withPolicy(fleetv1alpha1.PolicyInform)),
			live: withManaged(live("u1", lb, "sec"), own, edit), want: []string{"kubectl-edit (Update): .spec.ingress"}},
		{name: "Inform: an object Flotilla never applied has no foreign content, only differences", baseline: baseline(withPolicy(fleetv1alpha1.PolicyInform)),
			live: withManaged(live("u1", lb, "sec"), edit)},
		{name: "CreateOnly does not look at objects that exist", baseline: baseline(withPolicy(fleetv1alpha1.PolicyCreateOnly)),
			live: withManaged(live("u1", lb, "sec"), own, edit)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Make(context.Background(), Input{Baseline: tc.baseline, Desired: []render.Document{np}, Mapper: mapper(),
				Observer: member{"NetworkPolicy team/deny-all": tc.live}})
			if err != nil {
				t.Fatalf("Make: %v", err)
			}
			if diff := cmp.Diff(tc.want, foreignSaid(p.Stages[0].Objects[0].Foreign)); diff != "" {
				t.Errorf("foreign content (-want +got):\n%s", diff)
			}
		})
	}
}
