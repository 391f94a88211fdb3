package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// demoOptions are the flags of `fleetctl demo`.
type demoOptions struct {
	members    int
	assets     string
	controller string
	crds       string
}

func newDemoCommand() *cobra.Command {
	o := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run Flotilla on a local hub with member clusters (real control planes on loopback); Ctrl-C stops it",
		Long: `demo starts a local fleet — a hub and member clusters, each a real etcd,
kube-apiserver and kube-controller-manager on loopback — runs fleet-controller
against the hub, prints how to look at it, and waits. Ctrl-C stops everything and
removes every file it made. Use 'make demo', which builds what this needs first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().IntVar(&o.members, "members", 2, "Number of member clusters.")
	cmd.Flags().StringVar(&o.assets, "assets", os.Getenv("FLOTILLA_K8S_ASSETS"),
		"Directory holding etcd, kube-apiserver and kube-controller-manager (default: bin/k8s/<version> of the checkout).")
	cmd.Flags().StringVar(&o.controller, "controller", "",
		"Path of the fleet-controller binary (default: next to fleetctl).")
	cmd.Flags().StringVar(&o.crds, "crds", "", "Directory of the Flotilla CRDs (default: config/crd/bases of the checkout).")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, o *demoOptions) error {
	if o.members < 1 {
		return errors.New("--members must be at least 1")
	}
	controllerBin, err := findController(o.controller)
	if err != nil {
		return err
	}
	say := func(format string, args ...any) { fmt.Fprintf(out, "==> "+format+"\n", args...) }

	say("starting a local hub and %d member clusters (etcd + kube-apiserver + kube-controller-manager each)...", o.members)
	start := time.Now()
	fleet, err := localfleet.Start(ctx, localfleet.Options{Members: o.members, AssetsDir: o.assets, CRDDir: o.crds})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping the local fleet...")
		if err := fleet.Stop(); err != nil {
			fmt.Fprintln(out, "error stopping the fleet:", err)
			return
		}
		say("stopped; every process and file of the demo is gone")
	}()
	say("fleet up in %s: hub + %d members, Flotilla CRDs installed on the hub", time.Since(start).Round(100*time.Millisecond), len(fleet.Members))

	if err := ensureNamespace(ctx, fleet.Hub, fleetv1alpha1.DefaultHubNamespace); err != nil {
		return err
	}
	ctrlLog := filepath.Join(fleet.Dir, "fleet-controller.log")
	controller, err := startController(ctx, controllerBin, fleet.Hub.KubeconfigPath, ctrlLog)
	if err != nil {
		return err
	}
	defer controller.stop()
	say("fleet-controller running against the hub (log: %s)", ctrlLog)

	if err := registerDemoMembers(ctx, out, fleet); err != nil {
		return err
	}
	if err := demoBaseline(ctx, out, fleet); err != nil {
		return err
	}
	if err := demoServices(ctx, out, fleet); err != nil {
		return err
	}
	if err := demoStatus(ctx, out, fleet); err != nil {
		return err
	}

	fmt.Fprintf(out, "\nKubeconfigs:\n  %-10s %s\n", fleet.Hub.Name, fleet.Hub.KubeconfigPath)
	for _, m := range fleet.Members {
		fmt.Fprintf(out, "  %-10s %s\n", m.Name, m.KubeconfigPath)
	}
	fmt.Fprintf(out, "\nTry, in another terminal:\n")
	fmt.Fprintf(out, "  export KUBECONFIG=%s\n", fleet.Hub.KubeconfigPath)
	fmt.Fprintf(out, "  kubectl get memberclusters -o wide\n")
	fmt.Fprintf(out, "  %s status\n", "fleetctl")
	fmt.Fprintf(out, "  kubectl --kubeconfig %s get namespaces\n", fleet.Members[0].KubeconfigPath)
	fmt.Fprintf(out, "  kubectl get exportedservices\n")
	if len(fleet.Members) > 1 {
		fmt.Fprintf(out, "  kubectl --kubeconfig %s -n %s get services,endpointslices\n", fleet.Members[1].KubeconfigPath, demoServiceNamespace)
	}
	fmt.Fprintf(out, "  tail -f %s\n", ctrlLog)
	fmt.Fprintf(out, "\nPress Ctrl-C to stop.\n")

	select {
	case <-ctx.Done():
		fmt.Fprintln(out)
		return nil
	case err := <-controller.exited:
		return fmt.Errorf("fleet-controller exited unexpectedly (%w); see %s", err, ctrlLog)
	}
}

// registerDemoMembers registers every member with fleetctl itself, exactly as a user
// would, waits until the hub reports them Ready and prints `fleetctl status`.
func registerDemoMembers(ctx context.Context, out io.Writer, fleet *localfleet.Fleet) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	run := func(args ...string) error {
		fmt.Fprintf(out, "\n$ fleetctl %s\n", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, self, args...)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.Env = append(os.Environ(), "KUBECONFIG="+fleet.Hub.KubeconfigPath)
		return cmd.Run()
	}
	for i, m := range fleet.Members {
		region := []string{"eu", "us"}[i%2]
		if err := run("register", m.Name, "--member-kubeconfig", m.KubeconfigPath, "--labels", "env=demo,region="+region); err != nil {
			return fmt.Errorf("register %s: %w", m.Name, err)
		}
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "==> waiting for the hub to connect to %d members...\n", len(fleet.Members))
	if err := waitMembersReady(ctx, out, fleet, 2*time.Minute); err != nil {
		return err
	}
	return run("status")
}

// demoSecurityBaseline is the sample the demo applies, relative to the checkout.
const demoSecurityBaseline = "config/samples/demo-security-baseline.yaml"

// demoBaseline applies the sample security baseline, shows it converge on every member,
// then deletes one of its objects in a member and shows the hub restore it.
func demoBaseline(ctx context.Context, out io.Writer, fleet *localfleet.Fleet) error {
	say := func(format string, args ...any) { fmt.Fprintf(out, "\n==> "+format+"\n", args...) }
	root, err := localfleet.RepoRoot()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(root, demoSecurityBaseline))
	if err != nil {
		return err
	}
	b := &fleetv1alpha1.Baseline{}
	if err := yaml.UnmarshalStrict(data, b); err != nil {
		return fmt.Errorf("%s: %w", demoSecurityBaseline, err)
	}
	hub, err := newClient(fleet.Hub.Config, out)
	if err != nil {
		return err
	}

	say("creating application namespace \"shop\" (label workloads=true) in every member")
	members := map[string]client.Client{}
	for _, m := range fleet.Members {
		c, err := newClient(m.Config, out)
		if err != nil {
			return err
		}
		members[m.Name] = c
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"workloads": "true"}}}
		if err := c.Create(ctx, ns); client.IgnoreAlreadyExists(err) != nil {
			return fmt.Errorf("create namespace shop in %s: %w", m.Name, err)
		}
	}

	say("applying the security baseline to the hub: kubectl apply -f %s", demoSecurityBaseline)
	fmt.Fprintln(out, "    a ClusterRole + binding, an addon namespace with quota and limits, and in every")
	fmt.Fprintln(out, "    application namespace a default-deny ingress policy plus web/api/db tier policies")
	start := time.Now()
	if err := hub.Create(ctx, b); client.IgnoreAlreadyExists(err) != nil {
		return err
	}
	if err := waitBaselineReady(ctx, hub, b.Name, 2*time.Minute); err != nil {
		return err
	}
	say("baseline %q applied and healthy in all %d members in %s", b.Name, len(fleet.Members), time.Since(start).Round(100*time.Millisecond))

	first := fleet.Members[0]
	policies := &networkingv1.NetworkPolicyList{}
	if err := members[first.Name].List(ctx, policies, client.InNamespace("shop")); err != nil {
		return err
	}
	fmt.Fprintf(out, "    NetworkPolicies in %s/shop:", first.Name)
	for _, p := range policies.Items {
		fmt.Fprintf(out, " %s", p.Name)
	}
	fmt.Fprintln(out)

	say("drift: deleting NetworkPolicy shop/default-deny-ingress in %s behind the hub's back", first.Name)
	victim := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default-deny-ingress"}}
	if err := members[first.Name].Get(ctx, client.ObjectKeyFromObject(victim), victim); err != nil {
		return err
	}
	oldUID := victim.UID
	start = time.Now()
	if err := members[first.Name].Delete(ctx, victim); err != nil {
		return err
	}
	for {
		got := &networkingv1.NetworkPolicy{}
		err := members[first.Name].Get(ctx, client.ObjectKeyFromObject(victim), got)
		if err == nil && got.UID != oldUID {
			break
		}
		if time.Since(start) > time.Minute {
			return fmt.Errorf("the deleted NetworkPolicy was not restored within a minute")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	say("restored by the hub after %s", time.Since(start).Round(time.Millisecond))
	return nil
}

// demoStatus prints `fleetctl status` as a user would run it against the demo hub.
func demoStatus(ctx context.Context, out io.Writer, fleet *localfleet.Fleet) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n$ fleetctl status\n")
	cmd := exec.CommandContext(ctx, self, "status")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "KUBECONFIG="+fleet.Hub.KubeconfigPath)
	return cmd.Run()
}

func waitBaselineReady(ctx context.Context, hub client.Client, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		b := &fleetv1alpha1.Baseline{}
		if err := hub.Get(ctx, client.ObjectKey{Name: name}, b); err != nil {
			return err
		}
		if meta.IsStatusConditionTrue(b.Status.Conditions, fleetv1alpha1.ConditionReady) {
			return nil
		}
		if time.Now().After(deadline) {
			c := meta.FindStatusCondition(b.Status.Conditions, fleetv1alpha1.ConditionReady)
			return fmt.Errorf("baseline %s not Ready after %s: %v", name, timeout, c)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func waitMembersReady(ctx context.Context, out io.Writer, fleet *localfleet.Fleet, timeout time.Duration) error {
	c, err := newClient(fleet.Hub.Config, out)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		list := &fleetv1alpha1.MemberClusterList{}
		if err := c.List(ctx, list); err != nil {
			return err
		}
		ready := 0
		for _, mc := range list.Items {
			if meta.IsStatusConditionTrue(mc.Status.Conditions, fleetv1alpha1.ConditionReady) {
				ready++
			}
		}
		if ready == len(fleet.Members) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d members Ready after %s; see fleetctl status", ready, len(fleet.Members), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func findController(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if self, err := os.Executable(); err == nil {
		candidate := filepath.Join(filepath.Dir(self), "fleet-controller")
		if _, err := os.Stat(candidate); err == nil {
			return candidate, nil
		}
	}
	if p, err := exec.LookPath("fleet-controller"); err == nil {
		return p, nil
	}
	return "", errors.New("fleet-controller binary not found next to fleetctl or on PATH: run 'make build' or pass --controller")
}

func ensureNamespace(ctx context.Context, cp *localfleet.ControlPlane, name string) error {
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s on %s: %w", name, cp.Name, err)
	}
	return nil
}

// demoController is a fleet-controller process run by the demo. exited receives the
// result of Wait once; done is closed after it so that stop can tell without racing.
type demoController struct {
	cmd    *exec.Cmd
	exited chan error
	done   chan struct{}
}

func startController(ctx context.Context, bin, kubeconfig, logPath string) (*demoController, error) {
	metricsAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	healthAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--kubeconfig", kubeconfig,
		"--metrics-bind-address", metricsAddr, "--health-probe-bind-address", healthAddr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: Ctrl-C in the terminal reaches fleetctl, which stops the
	// controller before the control planes, so it does not log a storm of connection errors.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	c := &demoController{cmd: cmd, exited: make(chan error, 1), done: make(chan struct{})}
	go func() {
		c.exited <- cmd.Wait()
		logFile.Close()
		close(c.done)
	}()

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + healthAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c, nil
			}
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("fleet-controller exited during start-up; see %s", logPath)
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("fleet-controller not ready after 30s; see %s", logPath)
		}
	}
}

func (c *demoController) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
