package mirror

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func hash8(service, cluster string) string {
	sum := sha256.Sum256([]byte(service + "/" + cluster))
	return hex.EncodeToString(sum[:])[:8]
}

func TestName(t *testing.T) {
	svc30 := "s" + strings.Repeat("v", 29) // 30 characters
	tests := []struct {
		name     string
		service  string
		cluster  string
		wantName string // "" = only the invariants are checked
		wantLen  int    // 0 = not checked
	}{
		{name: "short", service: "web", cluster: "east", wantName: "web-east"},
		{name: "62 characters kept", service: svc30, cluster: strings.Repeat("c", 31), wantName: svc30 + "-" + strings.Repeat("c", 31), wantLen: 62},
		{name: "63 characters kept", service: svc30, cluster: strings.Repeat("c", 32), wantName: svc30 + "-" + strings.Repeat("c", 32), wantLen: 63},
		{
			name: "64 characters shortened to 63", service: svc30, cluster: strings.Repeat("c", 33),
			wantName: (svc30 + "-" + strings.Repeat("c", 33))[:54] + "-" + hash8(svc30, strings.Repeat("c", 33)), wantLen: 63,
		},
		{
			name: "cut at a dash leaves no double dash", service: "s" + strings.Repeat("v", 52), cluster: "east-cluster-with-a-long-name",
			wantName: "s" + strings.Repeat("v", 52) + "-" + hash8("s"+strings.Repeat("v", 52), "east-cluster-with-a-long-name"), wantLen: 62,
		},
		{name: "longest Service and cluster names", service: "s" + strings.Repeat("v", 62), cluster: strings.Repeat("c", 63), wantLen: 63},
		{name: "very long cluster", service: "web", cluster: strings.Repeat("c", 200), wantName: "web-" + strings.Repeat("c", 50) + "-" + hash8("web", strings.Repeat("c", 200))},
		{name: "upper case and dots are made valid", service: "Web.Shop", cluster: "East_1", wantName: "web-shop-east-1-" + hash8("Web.Shop", "East_1")},
		{name: "leading digits dropped", service: "1web", cluster: "east", wantName: "web-east-" + hash8("1web", "east")},
		{name: "nothing usable", service: "", cluster: "", wantName: "svc-" + hash8("", "")},
		{name: "non-ASCII", service: "wéb", cluster: "east", wantName: "w--b-east-" + hash8("wéb", "east")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Name(tt.service, tt.cluster)
			checkName(t, got)
			if tt.wantName != "" {
				if diff := cmp.Diff(tt.wantName, got); diff != "" {
					t.Errorf("Name (-want +got):\n%s", diff)
				}
			}
			if tt.wantLen != 0 && len(got) != tt.wantLen {
				t.Errorf("len(%q) = %d, want %d", got, len(got), tt.wantLen)
			}
			if again := Name(tt.service, tt.cluster); again != got {
				t.Errorf("Name is not deterministic: %q then %q", got, again)
			}
		})
	}
}

// TestNameDistinct: inputs that share a long prefix, or differ only where the name is cut,
// still get different names.
func TestNameDistinct(t *testing.T) {
	long := "s" + strings.Repeat("v", 60)
	pairs := [][2][2]string{
		{{long + "a", "east"}, {long + "b", "east"}},
		{{"web", strings.Repeat("c", 70) + "1"}, {"web", strings.Repeat("c", 70) + "2"}},
		{{long, "east"}, {long, "west"}},
		{{"web.shop", "east"}, {"web-shop", "east"}},
		{{"Web", "east"}, {"web", "east"}},
	}
	for _, p := range pairs {
		a, b := Name(p[0][0], p[0][1]), Name(p[1][0], p[1][1])
		if a == b {
			t.Errorf("Name(%q, %q) = Name(%q, %q) = %q", p[0][0], p[0][1], p[1][0], p[1][1], a)
		}
	}
}

func checkName(t *testing.T, name string) {
	t.Helper()
	if len(name) > 63 {
		t.Errorf("Name %q is %d characters, more than 63", name, len(name))
	}
	if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
		t.Errorf("Name %q is not a DNS-1035 label: %v", name, errs)
	}
}

func FuzzName(f *testing.F) {
	f.Add("web", "east")
	f.Add("s"+strings.Repeat("v", 62), strings.Repeat("c", 63))
	f.Add(strings.Repeat("a", 53), "-b")
	f.Add("", "")
	f.Add("-9Ä.", "_")
	f.Fuzz(func(t *testing.T, service, cluster string) {
		got := Name(service, cluster)
		checkName(t, got)
		if plain := service + "-" + cluster; len(plain) <= 63 && len(validation.IsDNS1035Label(plain)) == 0 && got != plain {
			t.Errorf("Name(%q, %q) = %q, want the plain %q", service, cluster, got, plain)
		}
		if again := Name(service, cluster); again != got {
			t.Errorf("Name is not deterministic: %q then %q", got, again)
		}
	})
}

func TestLabelsAndOwned(t *testing.T) {
	src := Source{Cluster: "east", Service: service()}
	wantLabels := map[string]string{
		fleetv1alpha1.LabelSourceCluster:   "east",
		fleetv1alpha1.LabelSourceNamespace: "shop",
		fleetv1alpha1.LabelSourceName:      "web",
		fleetv1alpha1.LabelManagedBy:       fleetv1alpha1.ManagedByValue,
	}
	if diff := cmp.Diff(wantLabels, Labels(src.Cluster, src.Service.Namespace, src.Service.Name)); diff != "" {
		t.Errorf("Labels (-want +got):\n%s", diff)
	}

	with := func(mutate func(map[string]string)) metav1.Object {
		l := Labels(src.Cluster, src.Service.Namespace, src.Service.Name)
		l["team"] = "shop"
		mutate(l)
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Labels: l}}
	}
	tests := []struct {
		name      string
		obj       metav1.Object
		wantOwned bool
	}{
		{name: "mirror of this source, extra labels", obj: with(func(map[string]string) {}), wantOwned: true},
		{name: "no labels", obj: &corev1.Service{}},
		{name: "other cluster", obj: with(func(l map[string]string) { l[fleetv1alpha1.LabelSourceCluster] = "west" })},
		{name: "other namespace", obj: with(func(l map[string]string) { l[fleetv1alpha1.LabelSourceNamespace] = "other" })},
		{name: "other name", obj: with(func(l map[string]string) { l[fleetv1alpha1.LabelSourceName] = "api" })},
		{name: "not managed by flotilla", obj: with(func(l map[string]string) { delete(l, fleetv1alpha1.LabelManagedBy) })},
		{name: "managed by someone else", obj: with(func(l map[string]string) { l[fleetv1alpha1.LabelManagedBy] = "helm" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Owned(tt.obj, "east", "shop", "web"); got != tt.wantOwned {
				t.Errorf("Owned = %v, want %v", got, tt.wantOwned)
			}
		})
	}
}
