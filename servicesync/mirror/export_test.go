package mirror

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// parseExportCase is one row of TestParseExport's table; the rows seed FuzzParseExport too.
type parseExportCase struct {
	name         string
	svc          *corev1.Service
	allowSystem  bool
	wantExported bool
	wantMode     fleetv1alpha1.AddressMode
	wantExportTo string
	// wantMatches/wantNotMatches are MemberCluster label sets the selector must (not) match.
	wantMatches    []labels.Set
	wantNotMatches []labels.Set
	wantErr        []string // substrings of the error; nil = no error
}

func parseExportCases() []parseExportCase {
	exportTrue := annotated(fleetv1alpha1.AnnotationExport, "true")
	return []parseExportCase{
		{name: "no annotation", svc: service()},
		{name: "nil Service", svc: nil},
		{name: "export false", svc: service(annotated(fleetv1alpha1.AnnotationExport, "false"))},
		{name: "export True is not true", svc: service(annotated(fleetv1alpha1.AnnotationExport, "True"))},
		{
			name:         "export true defaults to Auto and every member",
			svc:          service(exportTrue),
			wantExported: true, wantMode: fleetv1alpha1.AddressModeAuto,
		},
		{
			name:         "explicit mode and selector",
			svc:          service(exportTrue, annotated(fleetv1alpha1.AnnotationAddressMode, "NodePort", fleetv1alpha1.AnnotationExportTo, " env in (prod),region!=eu ")),
			wantExported: true, wantMode: fleetv1alpha1.AddressModeNodePort, wantExportTo: "env in (prod),region!=eu",
			wantMatches:    []labels.Set{{"env": "prod", "region": "us"}},
			wantNotMatches: []labels.Set{{"env": "prod", "region": "eu"}, {"env": "dev"}},
		},
		{
			name:         "blank export-to means every member",
			svc:          service(exportTrue, annotated(fleetv1alpha1.AnnotationExportTo, "   ")),
			wantExported: true, wantMode: fleetv1alpha1.AddressModeAuto,
		},
		{
			name:         "empty address-mode means Auto",
			svc:          service(exportTrue, annotated(fleetv1alpha1.AnnotationAddressMode, "")),
			wantExported: true, wantMode: fleetv1alpha1.AddressModeAuto,
		},
		{
			name:         "unknown mode lists the valid modes",
			svc:          service(exportTrue, annotated(fleetv1alpha1.AnnotationAddressMode, "Teleport")),
			wantExported: true,
			wantErr:      []string{"Service shop/web", fleetv1alpha1.AnnotationAddressMode, `"Teleport"`, "valid modes: Auto, LoadBalancer, NodePort, PodIP, ClusterIP"},
		},
		{
			name:         "mode is case-sensitive",
			svc:          service(exportTrue, annotated(fleetv1alpha1.AnnotationAddressMode, "podip")),
			wantExported: true,
			wantErr:      []string{`unknown address mode "podip"`},
		},
		{
			name:         "garbage export-to",
			svc:          service(exportTrue, annotated(fleetv1alpha1.AnnotationExportTo, "env in (prod")),
			wantExported: true,
			wantErr:      []string{"Service shop/web", fleetv1alpha1.AnnotationExportTo, `invalid label selector "env in (prod"`},
		},
		{
			name:         "kube-system refused",
			svc:          service(exportTrue, inNamespace("kube-system")),
			wantExported: true,
			wantErr:      []string{"namespace kube-system is not exported unless the hub allows system namespaces"},
		},
		{
			name:         "kube-public refused",
			svc:          service(exportTrue, inNamespace("kube-public")),
			wantExported: true,
			wantErr:      []string{"namespace kube-public"},
		},
		{
			name:         "kube-node-lease refused",
			svc:          service(exportTrue, inNamespace("kube-node-lease")),
			wantExported: true,
			wantErr:      []string{"namespace kube-node-lease"},
		},
		{
			name:         "kube-system allowed by the hub",
			svc:          service(exportTrue, inNamespace("kube-system")),
			allowSystem:  true,
			wantExported: true, wantMode: fleetv1alpha1.AddressModeAuto,
		},
		{
			name:         "a mirror (source-cluster label) is refused",
			svc:          service(exportTrue, labelled(fleetv1alpha1.LabelSourceCluster, "east")),
			wantExported: true,
			wantErr:      []string{"Service shop/web is a mirror", fleetv1alpha1.LabelSourceCluster, "never exported"},
		},
		{
			name:         "a Flotilla-managed Service not from a Baseline is refused",
			svc:          service(exportTrue, labelled(fleetv1alpha1.LabelManagedBy, fleetv1alpha1.ManagedByValue)),
			wantExported: true,
			wantErr:      []string{"is a mirror", "app.kubernetes.io/managed-by=flotilla"},
		},
		{
			name: "a Service a Baseline applied may be exported",
			svc: service(exportTrue, labelled(fleetv1alpha1.LabelManagedBy, fleetv1alpha1.ManagedByValue,
				fleetv1alpha1.LabelBaseline, "shop")),
			wantExported: true, wantMode: fleetv1alpha1.AddressModeAuto,
		},
		{
			name: "a mirror without the export annotation is simply not exported",
			svc:  service(labelled(fleetv1alpha1.LabelSourceCluster, "east")),
		},
	}
}

func TestParseExport(t *testing.T) {
	for _, tt := range parseExportCases() {
		t.Run(tt.name, func(t *testing.T) {
			exp, exported, err := ParseExport(tt.svc, tt.allowSystem)
			if exported != tt.wantExported {
				t.Errorf("exported = %v, want %v", exported, tt.wantExported)
			}
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("error = nil, want one containing %q", tt.wantErr)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				if exp != nil {
					t.Errorf("export = %+v with an error, want nil", exp)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !tt.wantExported {
				if exp != nil {
					t.Errorf("export = %+v for a Service not exported, want nil", exp)
				}
				return
			}
			if diff := cmp.Diff(tt.wantMode, exp.Mode); diff != "" {
				t.Errorf("mode (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantExportTo, exp.ExportToText); diff != "" {
				t.Errorf("export-to text (-want +got):\n%s", diff)
			}
			if tt.wantExportTo == "" && exp.ExportTo != nil {
				t.Errorf("ExportTo = %v, want nil (every member)", exp.ExportTo)
			}
			for _, m := range tt.wantMatches {
				if !exp.ExportTo.Matches(m) {
					t.Errorf("selector %v does not match %v", exp.ExportTo, m)
				}
			}
			for _, m := range tt.wantNotMatches {
				if exp.ExportTo.Matches(m) {
					t.Errorf("selector %v matches %v", exp.ExportTo, m)
				}
			}
		})
	}
}
