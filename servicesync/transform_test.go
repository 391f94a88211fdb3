package servicesync

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func TestTrimServiceMeta(t *testing.T) {
	full := func(labels, annotations map[string]string) *metav1.PartialObjectMetadata {
		p := serviceMeta()
		p.ObjectMeta = metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u1", ResourceVersion: "7",
			Labels: labels, Annotations: annotations, Finalizers: []string{"x"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}
		return p
	}
	trimmed := func(labels, annotations map[string]string) *metav1.PartialObjectMetadata {
		p := serviceMeta()
		p.ObjectMeta = metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: "7", Labels: labels, Annotations: annotations}
		if labels[fleetv1alpha1.LabelSourceCluster] != "" {
			p.UID = "u1" // a mirror's UID guards its deletion
		}
		return p
	}
	lastApplied := map[string]string{corev1.LastAppliedConfigAnnotation: `{"big":"json"}`}
	tests := []struct {
		name string
		in   *metav1.PartialObjectMetadata
		want *metav1.PartialObjectMetadata
	}{{
		name: "an unexported Service keeps only its identity",
		in:   full(map[string]string{"app": "web", fleetv1alpha1.LabelManagedBy: "Helm"}, lastApplied),
		want: trimmed(nil, nil),
	}, {
		name: "the export annotations stay",
		in: full(map[string]string{"app": "web"}, map[string]string{
			fleetv1alpha1.AnnotationExport: "true", fleetv1alpha1.AnnotationAddressMode: "PodIP", corev1.LastAppliedConfigAnnotation: "{}"}),
		want: trimmed(nil, map[string]string{fleetv1alpha1.AnnotationExport: "true", fleetv1alpha1.AnnotationAddressMode: "PodIP"}),
	}, {
		name: "a mirror keeps its ownership labels",
		in: full(map[string]string{"app": "web", fleetv1alpha1.LabelManagedBy: fleetv1alpha1.ManagedByValue,
			fleetv1alpha1.LabelSourceCluster: "member-1", fleetv1alpha1.LabelSourceNamespace: "shop", fleetv1alpha1.LabelSourceName: "web"}, nil),
		want: trimmed(map[string]string{fleetv1alpha1.LabelManagedBy: fleetv1alpha1.ManagedByValue,
			fleetv1alpha1.LabelSourceCluster: "member-1", fleetv1alpha1.LabelSourceNamespace: "shop", fleetv1alpha1.LabelSourceName: "web"}, nil),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := trimServiceMeta(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("trimmed Service (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTrimSliceMeta(t *testing.T) {
	in := sliceMeta()
	in.ObjectMeta = metav1.ObjectMeta{Name: "web-abc", Namespace: "shop", UID: "u2", ResourceVersion: "9", GenerateName: "web-",
		Labels:          map[string]string{discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io", "app": "web"},
		OwnerReferences: []metav1.OwnerReference{{Name: "web"}}}
	want := sliceMeta()
	want.ObjectMeta = metav1.ObjectMeta{Name: "web-abc", Namespace: "shop", ResourceVersion: "9",
		Labels: map[string]string{discoveryv1.LabelServiceName: "web"}}
	got, err := trimSliceMeta(in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("trimmed slice (-want +got):\n%s", diff)
	}
}

func TestTrimNode(t *testing.T) {
	now := metav1.NewTime(time.Now())
	in := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u3", ResourceVersion: "3",
			Labels: map[string]string{corev1.LabelTopologyZone: "z1", corev1.LabelHostname: "n1"}, Annotations: map[string]string{"a": "b"}},
		Spec: corev1.NodeSpec{Unschedulable: true, PodCIDR: "10.244.0.0/24", PodCIDRs: []string{"10.244.0.0/24", "fd00:10:244::/64"},
			ProviderID: "cloud://n1", Taints: []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.1"}, {Type: corev1.NodeHostName, Address: "n1"}},
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: now},
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: now, Message: "kubelet is posting ready status"},
			},
			Images:   []corev1.ContainerImage{{Names: []string{"registry/image:1"}, SizeBytes: 1}},
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.37.2"},
		},
	}
	want := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u3", ResourceVersion: "3", Labels: map[string]string{corev1.LabelTopologyZone: "z1"}},
		// Pod CIDRs stay: PodIP addresses are checked against them.
		Spec: corev1.NodeSpec{Unschedulable: true, PodCIDR: "10.244.0.0/24", PodCIDRs: []string{"10.244.0.0/24", "fd00:10:244::/64"}},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.1"}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	got, err := trimNode(in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("trimmed Node (-want +got):\n%s", diff)
	}
}

func TestMemberChange(t *testing.T) {
	member := func(edit func(*fleetv1alpha1.MemberCluster)) *fleetv1alpha1.MemberCluster {
		mc := &fleetv1alpha1.MemberCluster{ObjectMeta: metav1.ObjectMeta{Name: "member-1", Labels: map[string]string{"env": "prod"}}}
		mc.Status.Conditions = []metav1.Condition{
			{Type: fleetv1alpha1.ConditionConnected, Status: metav1.ConditionTrue},
			{Type: fleetv1alpha1.ConditionReady, Status: metav1.ConditionTrue},
		}
		mc.Status.NodeCount = ptr.To[int32](3)
		if edit != nil {
			edit(mc)
		}
		return mc
	}
	tests := []struct {
		name string
		new  *fleetv1alpha1.MemberCluster
		want change
	}{
		{"a heartbeat (probe time, node count, version)", member(func(mc *fleetv1alpha1.MemberCluster) {
			mc.Status.LastProbeTime = ptrTime(time.Now())
			mc.Status.NodeCount = ptr.To[int32](4)
			mc.Status.KubernetesVersion = "v1.37.3"
		}), changeNone},
		{"a condition message only", member(func(mc *fleetv1alpha1.MemberCluster) { mc.Status.Conditions[0].Message = "still fine" }), changeNone},
		{"disconnected", member(func(mc *fleetv1alpha1.MemberCluster) { mc.Status.Conditions[0].Status = metav1.ConditionFalse }), changeSource},
		{"being deleted", member(func(mc *fleetv1alpha1.MemberCluster) { mc.DeletionTimestamp = ptrTime(time.Now()) }), changeSource},
		{"labels changed", member(func(mc *fleetv1alpha1.MemberCluster) { mc.Labels["env"] = "dev" }), changeLabels},
		{"paused (or unpaused)", member(func(mc *fleetv1alpha1.MemberCluster) { mc.Spec.Paused = true }), changePaused},
		{"paused and relabelled at once", member(func(mc *fleetv1alpha1.MemberCluster) {
			mc.Spec.Paused = true
			mc.Labels["env"] = "dev"
		}), changePaused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := memberChange(member(nil), tt.new); got != tt.want {
				t.Errorf("memberChange = %d, want %d", got, tt.want)
			}
		})
	}
}

func ptrTime(t time.Time) *metav1.Time {
	m := metav1.NewTime(t)
	return &m
}

func TestDirtyTimesStayBounded(t *testing.T) {
	req := func(i int) exportRequest {
		return exportRequest{Cluster: "member-1", NamespacedName: types.NamespacedName{Namespace: "shop", Name: fmt.Sprintf("svc-%d", i)}}
	}
	d := newDirtyTimes(100)
	for i := range 1000 {
		d.mark(req(i))
	}
	if got := d.len(); got != 100 {
		t.Errorf("after 1000 marks with limit 100: %d pending, want 100", got)
	}
	// Every reconcile ends its entry, whether it wrote or not.
	started := time.Now()
	for i := range 1000 {
		d.done(req(i), started, i%2 == 0)
	}
	if got := d.len(); got != 0 {
		t.Errorf("after every source was reconciled: %d pending, want 0", got)
	}
	// A change seen while a reconcile runs stays for the reconcile it enqueued.
	d.mark(req(1))
	d.done(req(1), started, false)
	if got := d.len(); got != 1 {
		t.Errorf("a change seen after the reconcile started was dropped: %d pending, want 1", got)
	}
}
