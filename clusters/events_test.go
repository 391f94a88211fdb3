package clusters

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// memberEvents lists, as "<type> <reason> ×<count>", the hub's events regarding MemberCluster
// name; count is the event's series count (the recorder folds repeats into one event).
func (r *registry) memberEvents(ctx context.Context, name string) ([]string, error) {
	list := &corev1.EventList{}
	if err := r.hub.List(ctx, list); err != nil {
		return nil, err
	}
	var out []string
	for _, ev := range list.Items {
		if ev.InvolvedObject.Kind != "MemberCluster" || ev.InvolvedObject.Name != name {
			continue
		}
		n := int32(1)
		if ev.Series != nil {
			n = ev.Series.Count
		}
		out = append(out, fmt.Sprintf("%s %s ×%d", ev.Type, ev.Reason, n))
	}
	slices.Sort(out)
	return out, nil
}

// waitEvents waits until the member's events are exactly want, then checks that they stay so
// over several probe intervals: a state that holds sends nothing more.
func (r *registry) waitEvents(t *testing.T, name string, want ...string) {
	t.Helper()
	slices.Sort(want)
	r.settleEvents(t, name, fmt.Sprint(want), func(got []string) error {
		if !slices.Equal(got, want) {
			return fmt.Errorf("events %v, want %v", got, want)
		}
		return nil
	})
}

// settleEvents waits until the member's events pass ok, then checks that they stay exactly
// as they are then over several probe intervals.
func (r *registry) settleEvents(t *testing.T, name, what string, ok func(got []string) error) {
	t.Helper()
	ctx := context.Background()
	var settled []string
	eventually(t, 30*time.Second, fmt.Sprintf("events of %s: %s", name, what), func() error {
		got, err := r.memberEvents(ctx, name)
		if err != nil {
			return err
		}
		settled = got
		return ok(got)
	})
	fleettest.Consistently(t, 3*time.Second, fmt.Sprintf("no further events of %s (probes every 500ms)", name), func() error {
		got, err := r.memberEvents(ctx, name)
		if err == nil && !slices.Equal(got, settled) {
			return fmt.Errorf("events %v, were %v", got, settled)
		}
		return err
	})
}

// revocableKubeconfig returns a kubeconfig for m that authenticates only with the token of a
// ServiceAccount of m (cluster-admin), and a func that deletes that ServiceAccount: the member
// then refuses the token, as it does credentials that were revoked.
func revocableKubeconfig(t *testing.T, m *localfleet.ControlPlane) ([]byte, func()) {
	t.Helper()
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(m.Config)
	must(t, err)
	sa, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "hub"}}, metav1.CreateOptions{})
	must(t, err)
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "hub-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: sa.Namespace}},
	}, metav1.CreateOptions{})
	must(t, err)
	tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	must(t, err)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["member"] = &clientcmdapi.Cluster{Server: m.Config.Host, CertificateAuthorityData: m.Config.CAData}
	cfg.AuthInfos["hub"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["member"] = &clientcmdapi.Context{Cluster: "member", AuthInfo: "hub"}
	cfg.CurrentContext = "member"
	kc, err := clientcmd.Write(*cfg)
	must(t, err)
	return kc, func() { must(t, cs.CoreV1().ServiceAccounts("default").Delete(ctx, sa.Name, metav1.DeleteOptions{})) }
}

// A member's events tell its connection history once per change, never per probe:
// connected, lost (with the probe's reason), back, and refused credentials — by the member
// (a revoked token: Unauthorized) and by the hub's policy.
func TestMemberEventsOnTransitionsOnly(t *testing.T) {
	r := startRegistry(t, 2, fastProbes)
	ctx := context.Background()
	m := r.fleet.Members[0]
	must(t, r.hub.Create(ctx, kubeconfigSecret("east-kubeconfig", m.Kubeconfig(), nil, nil)))
	must(t, r.hub.Create(ctx, memberCluster("east", "east-kubeconfig")))
	r.waitCondition(t, "east", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)
	r.waitEvents(t, "east", "Normal Connected ×1")

	t.Run("lost and back", func(t *testing.T) {
		must(t, m.StopAPIServer())
		mc := r.waitCondition(t, "east", fleetv1alpha1.ConditionConnected, metav1.ConditionFalse, "", 15*time.Second)
		reason := ""
		for _, c := range mc.Status.Conditions {
			if c.Type == fleetv1alpha1.ConditionConnected {
				reason = c.Reason
			}
		}
		r.waitEvents(t, "east", "Normal Connected ×1", "Warning "+reason+" ×1")
		must(t, m.StartAPIServer(ctx))
		r.waitCondition(t, "east", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)
		// A second Connected event (or the first one's series, should the recorder fold
		// them). A server that is starting may answer a probe with another error first
		// (ProbeTimeout): a transition, and an event, too.
		r.settleEvents(t, "east", "a second Connected", func(got []string) error {
			if connected := count(got, "Normal Connected"); connected != 2 || !slices.Contains(got, "Warning "+reason+" ×1") {
				return fmt.Errorf("events %v: want 2 Connected and the %s warning", got, reason)
			}
			return nil
		})
	})

	t.Run("credentials the member refuses", func(t *testing.T) {
		kc, revoke := revocableKubeconfig(t, r.fleet.Members[1])
		must(t, r.hub.Create(ctx, kubeconfigSecret("west-kubeconfig", kc, nil, nil)))
		must(t, r.hub.Create(ctx, memberCluster("west", "west-kubeconfig")))
		r.waitCondition(t, "west", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)
		revoke()
		r.waitCondition(t, "west", fleetv1alpha1.ConditionConnected, metav1.ConditionFalse, fleetv1alpha1.ReasonUnauthorized, 30*time.Second)
		r.waitEvents(t, "west", "Normal Connected ×1", "Warning Unauthorized ×1")
	})

	t.Run("credentials the hub's policy refuses", func(t *testing.T) {
		withExec := insertIntoUser(t, string(m.Kubeconfig()), "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/true\n")
		must(t, r.hub.Create(ctx, kubeconfigSecret("exec-kubeconfig", []byte(withExec), nil, nil)))
		must(t, r.hub.Create(ctx, memberCluster("exec", "exec-kubeconfig")))
		r.waitCondition(t, "exec", fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionFalse, fleetv1alpha1.ReasonExecNotAllowed, 30*time.Second)
		// One event, not a second one for Connected=False of the same reason.
		r.waitEvents(t, "exec", "Warning ExecNotAllowed ×1")
		got, err := r.memberEvents(ctx, "exec")
		must(t, err)
		if strings.Contains(strings.Join(got, ","), "Connected") {
			t.Errorf("events %v: a member never connected has no Connected event", got)
		}
	})
}

// count sums the series counts of the events of memberEvents that start with prefix.
func count(events []string, prefix string) int {
	n := 0
	for _, ev := range events {
		if rest, ok := strings.CutPrefix(ev, prefix+" ×"); ok {
			var c int
			if _, err := fmt.Sscan(rest, &c); err == nil {
				n += c
			}
		}
	}
	return n
}
