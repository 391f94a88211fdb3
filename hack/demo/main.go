package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// options are the demo's flags; the Makefile passes every path, so nothing is guessed.
type options struct {
	members    int
	assets     string
	controller string
	fleetctl   string
	kubectl    string
	crds       string
	baseline   string
	noWait     bool
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	o := options{}
	flag.IntVar(&o.members, "members", 2, "Number of member clusters.")
	flag.StringVar(&o.assets, "assets", os.Getenv(localfleet.AssetsEnv), "Directory holding etcd, kube-apiserver and kube-controller-manager.")
	flag.StringVar(&o.controller, "controller", "", "Path of the fleet-controller binary.")
	flag.StringVar(&o.fleetctl, "fleetctl", "", "Path of the fleetctl binary.")
	flag.StringVar(&o.kubectl, "kubectl", "", "Path of kubectl (the pinned version).")
	flag.StringVar(&o.crds, "crds", "", "Directory of the Flotilla CRDs (config/crd/bases).")
	flag.StringVar(&o.baseline, "baseline", "", "The Baseline manifest to apply (config/samples/demo-security-baseline.yaml).")
	flag.BoolVar(&o.noWait, "no-wait", false, "Stop after the tour instead of waiting for Ctrl-C.")
	flag.Parse()
	if err := o.validate(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runDemo(ctx, os.Stdout, o)
}

func (o options) validate() error {
	if o.members < 1 {
		return errors.New("--members must be at least 1")
	}
	for flagName, path := range map[string]string{
		"--assets": o.assets, "--controller": o.controller, "--fleetctl": o.fleetctl,
		"--kubectl": o.kubectl, "--crds": o.crds, "--baseline": o.baseline,
	} {
		if path == "" {
			return fmt.Errorf("%s is required (run the demo with `make demo`, which passes every path)", flagName)
		}
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("%s: %w", flagName, err)
		}
	}
	return nil
}

func runDemo(ctx context.Context, out io.Writer, o options) error {
	d := &demo{out: out, o: o}
	d.say("starting a local hub and %d member clusters (etcd + kube-apiserver + kube-controller-manager each)...", o.members)
	start := time.Now()
	fleet, err := localfleet.Start(ctx, localfleet.Options{Members: o.members, AssetsDir: o.assets, CRDDir: o.crds})
	if err != nil {
		return err
	}
	d.fleet = fleet
	defer func() {
		d.say("stopping the local fleet...")
		if err := fleet.Stop(); err != nil {
			fmt.Fprintln(out, "error stopping the fleet:", err)
			return
		}
		d.say("stopped; every process and file of the demo is gone")
	}()
	d.say("fleet up in %s: hub + %d members, Flotilla CRDs installed on the hub", time.Since(start).Round(100*time.Millisecond), len(fleet.Members))

	controller, err := d.startController(ctx)
	if err != nil {
		return err
	}
	d.say("fleet-controller running against the hub (log: %s)", controller.LogPath)

	for _, step := range []func(context.Context) error{d.registerMembers, d.applyBaseline, d.exportService, d.status} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	d.printHints(controller.LogPath)
	if o.noWait {
		return nil
	}
	fmt.Fprintf(out, "\nPress Ctrl-C to stop.\n")
	select {
	case <-ctx.Done():
		fmt.Fprintln(out)
		return nil
	case <-controller.Done():
		return fmt.Errorf("fleet-controller exited unexpectedly (%w); see %s", controller.Err(), controller.LogPath)
	}
}

// demo is one run: the fleet, where output goes, and the paths it was given.
type demo struct {
	out   io.Writer
	o     options
	fleet *localfleet.Fleet
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, "==> "+format+"\n", args...) }

// startController runs fleet-controller with the hub's admin kubeconfig, under the fleet's
// guard, and waits until it answers /readyz.
func (d *demo) startController(ctx context.Context) (*localfleet.Process, error) {
	if err := d.createNamespace(ctx, d.fleet.Hub, fleetv1alpha1.DefaultHubNamespace); err != nil {
		return nil, err
	}
	metricsAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	healthAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	p, err := d.fleet.StartProcess("fleet-controller", d.o.controller, []string{
		"--kubeconfig", d.fleet.Hub.KubeconfigPath,
		// The demo's members listen on loopback, which the hub refuses unless told.
		"--allow-loopback-members",
		"--metrics-bind-address", metricsAddr, "--health-probe-bind-address", healthAddr,
	}, localfleet.ProcessOptions{LogPath: filepath.Join(d.fleet.Dir, "fleet-controller.log")})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if err := httpOK(ctx, "http://"+healthAddr+"/readyz"); err == nil {
			return p, nil
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("fleet-controller exited during start-up (%w); see %s", p.Err(), p.LogPath)
		case <-ctx.Done():
			return nil, fmt.Errorf("fleet-controller not ready: %w; see %s", ctx.Err(), p.LogPath)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (d *demo) printHints(controllerLog string) {
	out, fleet := d.out, d.fleet
	fmt.Fprintf(out, "\nKubeconfigs:\n  %-10s %s\n", fleet.Hub.Name, fleet.Hub.KubeconfigPath)
	for _, m := range fleet.Members {
		fmt.Fprintf(out, "  %-10s %s\n", m.Name, m.KubeconfigPath)
	}
	fmt.Fprintf(out, "\nTry, in another terminal:\n")
	fmt.Fprintf(out, "  export KUBECONFIG=%s\n", fleet.Hub.KubeconfigPath)
	fmt.Fprintf(out, "  alias kubectl=%s fleetctl=%s\n", d.o.kubectl, d.o.fleetctl)
	fmt.Fprintf(out, "  kubectl get memberclusters -o wide\n")
	fmt.Fprintf(out, "  fleetctl status\n")
	fmt.Fprintf(out, "  kubectl --kubeconfig %s get namespaces\n", fleet.Members[0].KubeconfigPath)
	fmt.Fprintf(out, "  kubectl get exportedservices\n")
	if len(fleet.Members) > 1 {
		fmt.Fprintf(out, "  kubectl --kubeconfig %s -n %s get services,endpointslices\n", fleet.Members[1].KubeconfigPath, demoServiceNamespace)
	}
	fmt.Fprintf(out, "  tail -f %s\n", controllerLog)
}

func httpOK(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
