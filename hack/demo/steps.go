package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// scheme holds the built-in kinds and Flotilla's, for the demo's own reads and writes.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(fleetv1alpha1.AddToScheme(s))
	return s
}()

// newClient returns an admin client of a cluster. Warnings are dropped: the demo reads v1
// Endpoints on purpose, to show that mirrors publish them too.
func newClient(c *localfleet.ControlPlane) (client.Client, error) {
	cfg := rest.CopyConfig(c.Config)
	cfg.WarningHandler = rest.NoWarnings{}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("client for cluster %q: %w", c.Name, err)
	}
	return cl, nil
}

// runTool runs fleetctl or kubectl against the hub as a user would in a terminal, echoing the
// command line (named by the tool's base name) and its output. The tool stays in the
// terminal's process group, so that Ctrl-C reaches it, and dies with the demo (PDEATHSIG).
func (d *demo) runTool(ctx context.Context, bin string, args ...string) error {
	fmt.Fprintf(d.out, "\n$ %s %s\n", filepath.Base(bin), strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = d.out, d.out
	cmd.Env = append(os.Environ(), "KUBECONFIG="+d.fleet.Hub.KubeconfigPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", filepath.Base(bin), strings.Join(args, " "), err)
	}
	return nil
}

// registerMembers registers every member with fleetctl, waits until the hub reports them
// Ready and prints `fleetctl status`.
func (d *demo) registerMembers(ctx context.Context) error {
	for i, m := range d.fleet.Members {
		region := []string{"eu", "us"}[i%2]
		if err := d.runTool(ctx, d.o.fleetctl, "register", m.Name, "--member-kubeconfig", m.KubeconfigPath,
			"--labels", "env=demo,region="+region); err != nil {
			return err
		}
	}
	fmt.Fprintln(d.out)
	d.say("waiting for the hub to connect to %d members...", len(d.fleet.Members))
	if err := d.waitMembersReady(ctx, 2*time.Minute); err != nil {
		return err
	}
	return d.runTool(ctx, d.o.fleetctl, "status")
}

// applyBaseline applies the sample security baseline with kubectl, shows it converge on every
// member, then deletes one of its objects in a member and shows the hub restore it.
func (d *demo) applyBaseline(ctx context.Context) error {
	name, err := baselineName(d.o.baseline)
	if err != nil {
		return err
	}
	hub, err := newClient(d.fleet.Hub)
	if err != nil {
		return err
	}

	fmt.Fprintln(d.out)
	d.say("creating application namespace \"shop\" (label workloads=true) in every member")
	members := map[string]client.Client{}
	for _, m := range d.fleet.Members {
		c, err := newClient(m)
		if err != nil {
			return err
		}
		members[m.Name] = c
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: demoServiceNamespace, Labels: map[string]string{"workloads": "true"}}}
		if err := c.Create(ctx, ns); client.IgnoreAlreadyExists(err) != nil {
			return fmt.Errorf("create namespace %s in cluster %q: %w", demoServiceNamespace, m.Name, err)
		}
	}

	fmt.Fprintln(d.out)
	d.say("applying the security baseline to the hub: a ClusterRole + binding, an addon namespace with")
	fmt.Fprintln(d.out, "    quota and limits, and in every application namespace a default-deny ingress policy")
	fmt.Fprintln(d.out, "    plus web/api/db tier policies")
	start := time.Now()
	if err := d.runTool(ctx, d.o.kubectl, "apply", "-f", d.o.baseline); err != nil {
		return err
	}
	if err := waitBaselineReady(ctx, hub, name, 2*time.Minute); err != nil {
		return err
	}
	fmt.Fprintln(d.out)
	d.say("baseline %q applied and healthy in all %d members in %s", name, len(d.fleet.Members), time.Since(start).Round(100*time.Millisecond))

	first := d.fleet.Members[0]
	policies := &networkingv1.NetworkPolicyList{}
	if err := members[first.Name].List(ctx, policies, client.InNamespace(demoServiceNamespace)); err != nil {
		return fmt.Errorf("list NetworkPolicies in cluster %q: %w", first.Name, err)
	}
	fmt.Fprintf(d.out, "    NetworkPolicies in %s/%s:", first.Name, demoServiceNamespace)
	for _, p := range policies.Items {
		fmt.Fprintf(d.out, " %s", p.Name)
	}
	fmt.Fprintln(d.out)
	return d.showDriftRestored(ctx, first.Name, members[first.Name])
}

// showDriftRestored deletes a NetworkPolicy of the baseline behind the hub's back and waits
// until the hub has written it again (a new UID).
func (d *demo) showDriftRestored(ctx context.Context, cluster string, member client.Client) error {
	fmt.Fprintln(d.out)
	d.say("drift: deleting NetworkPolicy %s/default-deny-ingress in %s behind the hub's back", demoServiceNamespace, cluster)
	victim := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: demoServiceNamespace, Name: "default-deny-ingress"}}
	key := client.ObjectKeyFromObject(victim)
	if err := member.Get(ctx, key, victim); err != nil {
		return fmt.Errorf("get NetworkPolicy %s in cluster %q: %w", key, cluster, err)
	}
	oldUID := victim.UID
	start := time.Now()
	if err := member.Delete(ctx, victim); err != nil {
		return fmt.Errorf("delete NetworkPolicy %s in cluster %q: %w", key, cluster, err)
	}
	err := poll(ctx, 50*time.Millisecond, time.Minute, func() (bool, error) {
		got := &networkingv1.NetworkPolicy{}
		err := member.Get(ctx, key, got)
		return err == nil && got.UID != oldUID, client.IgnoreNotFound(err)
	})
	if err != nil {
		return fmt.Errorf("the deleted NetworkPolicy %s in cluster %q was not restored: %w", key, cluster, err)
	}
	d.say("restored by the hub after %s; it says so in a DriftCorrected event on the Baseline", time.Since(start).Round(time.Millisecond))
	// Events are sent asynchronously: wait until it is there, then show it as a person would.
	listed := []string{"get", "events", "-A", "--field-selector", "reason=" + fleetv1alpha1.ReasonDriftCorrected}
	err = poll(ctx, 100*time.Millisecond, 30*time.Second, func() (bool, error) {
		cmd := exec.CommandContext(ctx, d.o.kubectl, append(listed, "-o", "name")...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+d.fleet.Hub.KubeconfigPath)
		out, err := cmd.Output()
		return err == nil && len(out) > 0, nil
	})
	if err != nil {
		return fmt.Errorf("no DriftCorrected event for the restored NetworkPolicy %s in cluster %q: %w", key, cluster, err)
	}
	return d.runTool(ctx, d.o.kubectl, listed...)
}

// status prints `fleetctl status` at the end of the tour.
func (d *demo) status(ctx context.Context) error {
	return d.runTool(ctx, d.o.fleetctl, "status")
}

// baselineName reads the Baseline's name from its manifest (strictly: a typo in the sample
// fails here rather than at the hub).
func baselineName(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	b := &fleetv1alpha1.Baseline{}
	if err := yaml.UnmarshalStrict(data, b); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return b.Name, nil
}

func (d *demo) createNamespace(ctx context.Context, c *localfleet.ControlPlane, name string) error {
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); client.IgnoreAlreadyExists(err) != nil {
		return fmt.Errorf("create namespace %s in cluster %q: %w", name, c.Name, err)
	}
	return nil
}

func waitBaselineReady(ctx context.Context, hub client.Client, name string, timeout time.Duration) error {
	var last *metav1.Condition
	err := poll(ctx, 200*time.Millisecond, timeout, func() (bool, error) {
		b := &fleetv1alpha1.Baseline{}
		if err := hub.Get(ctx, client.ObjectKey{Name: name}, b); err != nil {
			return false, err
		}
		last = meta.FindStatusCondition(b.Status.Conditions, fleetv1alpha1.ConditionReady)
		return last != nil && last.Status == metav1.ConditionTrue, nil
	})
	if err != nil {
		return fmt.Errorf("baseline %s not Ready (last Ready condition: %v): %w", name, last, err)
	}
	return nil
}

func (d *demo) waitMembersReady(ctx context.Context, timeout time.Duration) error {
	hub, err := newClient(d.fleet.Hub)
	if err != nil {
		return err
	}
	ready := 0
	err = poll(ctx, 500*time.Millisecond, timeout, func() (bool, error) {
		list := &fleetv1alpha1.MemberClusterList{}
		if err := hub.List(ctx, list); err != nil {
			return false, err
		}
		ready = 0
		for _, mc := range list.Items {
			if meta.IsStatusConditionTrue(mc.Status.Conditions, fleetv1alpha1.ConditionReady) {
				ready++
			}
		}
		return ready == len(d.fleet.Members), nil
	})
	if err != nil {
		return fmt.Errorf("only %d of %d members Ready (see fleetctl status): %w", ready, len(d.fleet.Members), err)
	}
	return nil
}

// poll calls check every interval until it reports done, returns an error, or timeout passes.
func poll(ctx context.Context, interval, timeout time.Duration, check func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		done, err := check()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s: %w", timeout, ctx.Err())
		case <-time.After(interval):
		}
	}
}
