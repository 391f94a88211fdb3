package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

const (
	// requestTimeout bounds every API request, so that an unreachable cluster fails the
	// command instead of hanging it.
	requestTimeout = 30 * time.Second
	// pollInterval is how often a command re-reads an object it waits for.
	pollInterval = 500 * time.Millisecond
)

// clientConfig copies cfg with fleetctl's request timeout and a rate limit above
// client-go's default of 5 requests a second, which would make polling and the
// namespace-emptiness check (one list per resource type) crawl; kubectl raises it too.
func clientConfig(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	if cfg.Timeout == 0 {
		cfg.Timeout = requestTimeout
	}
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	return cfg
}

// clientScheme knows the built-in types (member objects, hub Secrets) and the Flotilla API.
var clientScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(fleetv1alpha1.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s)) // register --install-mcs-crds
	return s
}()

// newClient returns a client for cfg. API warnings (deprecations, say) go to stderr as
// kubectl shows them, rather than to controller-runtime's logger, which a CLI never sets up.
func newClient(cfg *rest.Config, stderr io.Writer) (client.Client, error) {
	cfg = clientConfig(cfg)
	cfg.WarningHandler = rest.NewWarningWriter(stderr, rest.WarningWriterOptions{Deduplicate: true})
	cfg.WarningHandlerWithContext = nil
	return client.New(cfg, client.Options{Scheme: clientScheme})
}

// kubectl returns a kubectl command line for the hub, with the flags that found it, for
// hints a user can paste.
func (h *hubFlags) kubectl(args string) string {
	quote := func(s string) string {
		if strings.ContainsAny(s, " \t'\"$\\") {
			return strconv.Quote(s)
		}
		return s
	}
	line := "kubectl"
	if v := flagValue(h.KubeConfig); v != "" {
		line += " --kubeconfig " + quote(v)
	}
	if v := flagValue(h.Context); v != "" {
		line += " --context " + quote(v)
	}
	return line + " " + args
}

// memberFlags locate a member cluster with the user's own (usually admin) credentials. They
// are used from this machine only and never copied to the hub, so exec plugins and file
// references are fine here. There is deliberately no fallback to $KUBECONFIG: that is
// where the hub is found, and mixing the two up would configure the wrong cluster.
type memberFlags struct {
	kubeconfig string
	context    string
}

func (m *memberFlags) bind(cmd *cobra.Command, usage string) {
	cmd.Flags().StringVar(&m.kubeconfig, "member-kubeconfig", "", usage)
	cmd.Flags().StringVar(&m.context, "member-context", "", "Context in --member-kubeconfig (default: its current context).")
}

// restConfig loads the member's client configuration from --member-kubeconfig.
func (m *memberFlags) restConfig() (*rest.Config, error) {
	if m.kubeconfig == "" {
		return nil, fmt.Errorf("--member-kubeconfig is required")
	}
	if _, err := os.Stat(m.kubeconfig); err != nil {
		return nil, fmt.Errorf("read --member-kubeconfig: %w", err)
	}
	// LoadFromFile resolves relative file references against the kubeconfig's directory.
	raw, err := clientcmd.LoadFromFile(m.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load --member-kubeconfig %s: %w", m.kubeconfig, err)
	}
	cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, m.context, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("use --member-kubeconfig %s (context %q): %w", m.kubeconfig, m.context, err)
	}
	cfg.UserAgent = "fleetctl"
	return cfg, nil
}

// stepPrinter prints one line per step a command takes, prefixed with where it happened
// (`hub: ...`, `member "eu-1": ...`), so a failed run shows how far it got.
type stepPrinter struct {
	w      io.Writer
	prefix string
}

func hubSteps(w io.Writer) stepPrinter { return stepPrinter{w: w, prefix: "hub: "} }

func memberSteps(w io.Writer, cluster string) stepPrinter {
	return stepPrinter{w: w, prefix: fmt.Sprintf("member %q: ", cluster)}
}

func (p stepPrinter) printf(format string, args ...any) {
	fmt.Fprintf(p.w, p.prefix+format+"\n", args...)
}

// outcome is what a write did. Commands print it so that a re-run says honestly whether
// anything changed.
type outcome string

const (
	outcomeCreated   outcome = "created"
	outcomeUpdated   outcome = "updated"
	outcomeUnchanged outcome = "unchanged"
)

// applyObject server-side applies ac with Flotilla's field manager and reports what changed,
// by comparing resourceVersions: a no-op apply does not write, so the version stays put.
// live is an empty object of ac's kind carrying its name (and namespace); it is left holding
// the object as stored.
func applyObject(ctx context.Context, c client.Client, ac runtime.ApplyConfiguration, live client.Object) (outcome, error) {
	key := client.ObjectKeyFromObject(live)
	before := ""
	switch err := c.Get(ctx, key, live); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return "", err
	default:
		before = live.GetResourceVersion()
	}
	// Force: fleetctl register is the statement of what these objects must be, so a field
	// someone changed by hand is taken back rather than reported as a conflict.
	if err := c.Apply(ctx, ac, client.FieldOwner(fleetv1alpha1.FieldManager), client.ForceOwnership); err != nil {
		return "", err
	}
	if err := c.Get(ctx, key, live); err != nil {
		return "", err
	}
	switch {
	case before == "":
		return outcomeCreated, nil
	case before != live.GetResourceVersion():
		return outcomeUpdated, nil
	default:
		return outcomeUnchanged, nil
	}
}

// createNamespaceIfMissing creates a namespace labelled as Flotilla's if it is missing, and leaves an
// existing one alone. A namespace still being deleted (say, by an earlier unregister
// --cleanup) cannot take new objects, so that is an error a person can wait out. It looks
// before it creates: a fleet admin may use the hub namespace without being allowed to create
// namespaces (Role flotilla-fleet-admin grants get on that one namespace only).
func createNamespaceIfMissing(ctx context.Context, c client.Client, name string) (outcome, error) {
	ns := &corev1.Namespace{}
	switch err := c.Get(ctx, client.ObjectKey{Name: name}, ns); {
	case err == nil:
		if ns.DeletionTimestamp != nil {
			return "", fmt.Errorf("namespace %s is being deleted; run this again once it is gone", name)
		}
		return outcomeUnchanged, nil
	case !apierrors.IsNotFound(err):
		return "", fmt.Errorf("get namespace %s: %w", name, err)
	}
	ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: managedLabels()}}
	switch err := c.Create(ctx, ns, client.FieldOwner(fleetv1alpha1.FieldManager)); {
	case err == nil:
		return outcomeCreated, nil
	case apierrors.IsAlreadyExists(err): // created meanwhile
		return outcomeUnchanged, nil
	default:
		return "", fmt.Errorf("create namespace %s: %w", name, err)
	}
}
