package mirror

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Export is a validated export request read from a source Service's annotations.
type Export struct {
	// Mode is the requested address mode; Auto when the annotation is absent.
	Mode fleetv1alpha1.AddressMode
	// ExportTo selects the target MemberClusters; nil means every other member.
	ExportTo labels.Selector
	// ExportToText is the export-to annotation as written (trimmed), for status.
	ExportToText string
	// Global: the fleet.flotilla.dev/global annotation asks for the merged <name>-global mirror.
	Global bool
}

// AddressModes lists the valid values of the address-mode annotation, in the order error
// messages give them.
var AddressModes = []fleetv1alpha1.AddressMode{
	fleetv1alpha1.AddressModeAuto,
	fleetv1alpha1.AddressModeLoadBalancer,
	fleetv1alpha1.AddressModeNodePort,
	fleetv1alpha1.AddressModePodIP,
	fleetv1alpha1.AddressModeClusterIP,
}

// systemNamespaces are not exported unless the hub admin allows it: their Services are the
// cluster's own plumbing (DNS, metrics) and mirroring them elsewhere is rarely intended.
var systemNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true}

// ParseExport reads the export annotations of svc. A Service without
// fleet.flotilla.dev/export: "true" is not exported (exported=false, err=nil). A Service that
// asks to be exported but cannot be returns exported=true and an error a person can act on;
// the caller must then write nothing for it.
func ParseExport(svc *corev1.Service, allowSystemNamespaces bool) (exp *Export, exported bool, err error) {
	return ParseExportRequest(svc, false, allowSystemNamespaces)
}

// ParseExportRequest is ParseExport for a Service that an MCS ServiceExport of the same name
// may ask to export (serviceExport): the ServiceExport exports exactly like the annotation,
// and the other annotations refine the export the same way.
func ParseExportRequest(svc *corev1.Service, serviceExport, allowSystemNamespaces bool) (exp *Export, exported bool, err error) {
	if svc == nil || (svc.Annotations[fleetv1alpha1.AnnotationExport] != "true" && !serviceExport) {
		return nil, false, nil
	}
	ref := fmt.Sprintf("Service %s/%s", svc.Namespace, svc.Name)
	if reason := mirrorMark(svc.Labels); reason != "" {
		return nil, true, fmt.Errorf("%s is a mirror (%s) and is never exported again", ref, reason)
	}
	if systemNamespaces[svc.Namespace] && !allowSystemNamespaces {
		return nil, true, fmt.Errorf("%s: namespace %s is not exported unless the hub allows system namespaces", ref, svc.Namespace)
	}

	exp = &Export{Mode: fleetv1alpha1.AddressModeAuto, Global: svc.Annotations[fleetv1alpha1.AnnotationGlobal] == "true"}
	if text := strings.TrimSpace(svc.Annotations[fleetv1alpha1.AnnotationExportTo]); text != "" {
		sel, err := labels.Parse(text)
		if err != nil {
			return nil, true, fmt.Errorf("%s: annotation %s: invalid label selector %q: %w", ref, fleetv1alpha1.AnnotationExportTo, text, err)
		}
		exp.ExportTo, exp.ExportToText = sel, text
	}
	if mode, ok := svc.Annotations[fleetv1alpha1.AnnotationAddressMode]; ok && mode != "" {
		if !validMode(fleetv1alpha1.AddressMode(mode)) {
			return nil, true, fmt.Errorf("%s: annotation %s: unknown address mode %q; valid modes: %s",
				ref, fleetv1alpha1.AnnotationAddressMode, mode, modeList())
		}
		exp.Mode = fleetv1alpha1.AddressMode(mode)
	}
	return exp, true, nil
}

// mirrorMark says why labels mark an object as written by Flotilla's service sync, or "".
// app.kubernetes.io/managed-by=flotilla alone is not enough: Baselines put it on the objects
// they apply, and a Service a Baseline rolls out may well be exported; those carry
// fleet.flotilla.dev/baseline as well.
func mirrorMark(l map[string]string) string {
	for _, k := range []string{fleetv1alpha1.LabelSourceCluster, fleetv1alpha1.LabelSourceNamespace, fleetv1alpha1.LabelSourceName} {
		if _, ok := l[k]; ok {
			return "label " + k
		}
	}
	if l[fleetv1alpha1.LabelManagedBy] == fleetv1alpha1.ManagedByValue {
		if _, fromBaseline := l[fleetv1alpha1.LabelBaseline]; !fromBaseline {
			return "label " + fleetv1alpha1.LabelManagedBy + "=" + fleetv1alpha1.ManagedByValue
		}
	}
	return ""
}

func validMode(m fleetv1alpha1.AddressMode) bool {
	for _, v := range AddressModes {
		if m == v {
			return true
		}
	}
	return false
}

func modeList() string {
	s := make([]string, len(AddressModes))
	for i, m := range AddressModes {
		s[i] = string(m)
	}
	return strings.Join(s, ", ")
}
