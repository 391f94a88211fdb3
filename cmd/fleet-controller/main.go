// Command fleet-controller is Flotilla's hub controller: it runs in (or against) the hub
// cluster and reconciles MemberClusters, Baselines and exported Services.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flotilla-dev/flotilla/clusters"
	"github.com/flotilla-dev/flotilla/cmd/internal/version"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation"
	"github.com/flotilla-dev/flotilla/servicesync"
)

// The manager itself needs leases for leader election and events for every controller.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete,namespace=flotilla-system
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fleet-controller:", err)
		os.Exit(1)
	}
}

// options are the controller's command-line flags.
type options struct {
	hubNamespace     string
	metrics          metricsOptions
	healthAddr       string
	leaderElect      bool
	leaderElectionID string
	leaseDuration    time.Duration
	renewDeadline    time.Duration
	retryPeriod      time.Duration
	showVersion      bool
	zap              zap.Options
	policy           clusters.CredentialPolicy
	probeInterval    time.Duration
	probeTimeout     time.Duration
	nodeCount        time.Duration
	failureThreshold int
	maxBackoff       time.Duration
	requestTimeout   time.Duration
	cacheSyncTimeout time.Duration
	cleanupTimeout   time.Duration
	bindingWorkers   int
	exportWorkers    int
	perMember        int
	heartbeat        time.Duration
	resync           time.Duration
	staleWindow      time.Duration
	allowSystemNS    bool
	importMode       string
	capiNamespaces   string
	capiLabelKeys    string
	maxObjects       int
	maxBytes         resource.Quantity
	tokenLifetime    time.Duration
	tokenRenewAt     float64
}

func (o *options) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.hubNamespace, "hub-namespace", fleetv1alpha1.DefaultHubNamespace,
		"Hub namespace holding kubeconfig Secrets and Baseline sources.")
	o.metrics.bind(fs)
	fs.StringVar(&o.healthAddr, "health-probe-bind-address", ":8081",
		"Address of the /healthz and /readyz endpoints; 0 disables them.")
	fs.BoolVar(&o.leaderElect, "leader-elect", false,
		"Elect a leader so that only one of several replicas writes (on in the shipped Deployment).")
	fs.StringVar(&o.leaderElectionID, "leader-election-id", "fleet-controller.fleet.flotilla.dev",
		"Name of the Lease used for leader election, in the hub namespace.")
	fs.DurationVar(&o.leaseDuration, "leader-elect-lease-duration", 15*time.Second,
		"How long a non-leader waits before taking over an expired lease.")
	fs.DurationVar(&o.renewDeadline, "leader-elect-renew-deadline", 10*time.Second,
		"How long the leader retries renewing before it gives up leadership.")
	fs.DurationVar(&o.retryPeriod, "leader-elect-retry-period", 2*time.Second,
		"How often candidates retry acquiring or renewing the lease.")
	fs.BoolVar(&o.policy.AllowExec, "allow-exec-credentials", false,
		"Accept member kubeconfigs with exec credential plugins (the hub then runs those programs).")
	fs.BoolVar(&o.policy.AllowAuthProvider, "allow-auth-provider-credentials", false,
		"Accept member kubeconfigs with auth-provider plugins.")
	fs.BoolVar(&o.policy.AllowFileReferences, "allow-file-references", false,
		"Accept member kubeconfigs that reference files on the hub (tokenFile, certificate paths).")
	fs.BoolVar(&o.policy.AllowInsecure, "allow-insecure-tls", false,
		"Accept member kubeconfigs with insecure-skip-tls-verify.")
	fs.BoolVar(&o.policy.AllowLoopback, "allow-loopback-members", false,
		"Accept member API servers on the hub's own loopback (127.0.0.0/8, ::1): local fleets, tests and the demo only. "+
			"Plain http, proxy-url, link-local and cloud metadata addresses are always refused.")
	fs.StringVar(&o.capiNamespaces, "cluster-api-namespaces", "",
		"Comma-separated namespaces whose Cluster API Clusters register as members (their <name>-kubeconfig Secret is read there), "+
			"or * for every namespace; empty means the hub namespace only. The hub needs read access to Secrets in each.")
	fs.StringVar(&o.capiLabelKeys, "cluster-api-label-keys", strings.Join(clusters.DefaultClusterAPILabelKeys, ","),
		"Comma-separated Cluster label keys copied to its MemberCluster: exact keys, prefixes ending in / or * for all; "+
			"empty copies none. fleet.flotilla.dev/ keys are never copied.")
	fs.DurationVar(&o.probeInterval, "probe-interval", 10*time.Second, "Interval between health probes of a connected member.")
	fs.DurationVar(&o.probeTimeout, "probe-timeout", 5*time.Second, "Time limit of one member health probe.")
	fs.DurationVar(&o.nodeCount, "member-node-count-interval", time.Minute,
		"How often a connected member's Nodes are counted for status.nodeCount; the probes in between ask for the version only.")
	fs.IntVar(&o.failureThreshold, "probe-failure-threshold", 3, "Consecutive failed probes after which a member is disconnected.")
	fs.DurationVar(&o.maxBackoff, "reconnect-max-backoff", 2*time.Minute,
		"Longest wait between probes of a member that never answered since it was registered (one that was connected is probed every --probe-interval).")
	fs.DurationVar(&o.requestTimeout, "member-request-timeout", 10*time.Second,
		"Time limit of every single call to a member API server (a hung member holds a worker at most this long).")
	fs.DurationVar(&o.cacheSyncTimeout, "member-cache-sync-timeout", 30*time.Second,
		"Time limit for a member's cache to sync when it connects; a member whose cache does not sync is not connected.")
	fs.DurationVar(&o.cleanupTimeout, "member-cleanup-timeout", 2*time.Minute,
		"How long a deleted MemberCluster waits for the clean-up of what Flotilla wrote in it before it leaves anyway (unreachable member).")
	fs.IntVar(&o.bindingWorkers, "binding-workers", 64, "BaselineBindings reconciled at once, across the fleet.")
	fs.IntVar(&o.exportWorkers, "export-workers", 16, "Exported Services synced at once, across the fleet.")
	fs.IntVar(&o.perMember, "member-max-concurrency", 2,
		"Binding reconciles working on one member at once (exports: twice this); members that stop answering hold at most this many workers each.")
	fs.DurationVar(&o.heartbeat, "status-heartbeat", clusters.DefaultHeartbeat,
		"How often a member's status.lastProbeTime is refreshed when nothing else changed (a change of connection, version or node count is written at once).")
	fs.DurationVar(&o.resync, "baseline-resync", 10*time.Minute,
		"Backstop period of each binding's drift check, in addition to watches (jittered ±10%).")
	fs.DurationVar(&o.staleWindow, "mirror-stale-window", time.Minute,
		"How long mirrors of a disconnected member's Services keep their endpoints ready.")
	fs.DurationVar(&o.tokenLifetime, "member-token-lifetime", clusters.DefaultMemberTokenLifetime,
		"Lifetime of the member tokens the hub requests when it renews one (at least 10m, the API server's minimum).")
	fs.Float64Var(&o.tokenRenewAt, "member-token-renew-fraction", clusters.DefaultMemberTokenRenewFraction,
		"Fraction of a member token's lifetime after which the hub renews it (0.5: a one-hour token is renewed after 30 minutes).")
	fs.BoolVar(&o.allowSystemNS, "allow-system-namespace-exports", false,
		"Let Services in kube-system, kube-public and kube-node-lease be exported.")
	fs.IntVar(&o.maxObjects, "max-baseline-objects", propagation.DefaultMaxObjects,
		fmt.Sprintf("Most objects a Baseline may own in one member, after the perNamespace fan-out (at most %d); a larger one is refused (BaselineTooLarge) and nothing of it applied.", fleetv1alpha1.MaxInventory))
	o.maxBytes = *resource.NewQuantity(propagation.DefaultMaxBytes, resource.BinarySI)
	fs.Func("max-baseline-bytes", "Most a Baseline's rendered objects may weigh as JSON, e.g. 2Mi (the default); a larger one is refused (BaselineTooLarge).",
		func(v string) error {
			q, err := resource.ParseQuantity(v)
			if err != nil {
				return err
			}
			o.maxBytes = q
			return nil
		})
	fs.StringVar(&o.importMode, "import-mode", string(servicesync.ImportOptOut),
		"Which member namespaces receive mirrors of exported Services: opt-out (all but those labelled fleet.flotilla.dev/import=false) "+
			"or opt-in (only those labelled fleet.flotilla.dev/import=true).")
	fs.BoolVar(&o.showVersion, "version", false, "Print the version and exit.")
	o.zap.BindFlags(fs)
	// --kubeconfig, read by ctrl.GetConfig (then $KUBECONFIG, in-cluster, ~/.kube/config). It is
	// registered on flag.CommandLine by default, which run() does not parse.
	config.RegisterFlags(fs)
}

func (o *options) validate() error {
	if o.hubNamespace == "" {
		return errors.New("--hub-namespace must not be empty")
	}
	for _, ns := range splitList(o.capiNamespaces) {
		if ns != clusters.AllNamespaces && len(validation.IsDNS1123Label(ns)) > 0 {
			return fmt.Errorf("--cluster-api-namespaces: %q is not a namespace name", ns)
		}
	}
	if o.maxObjects < 1 || o.maxObjects > fleetv1alpha1.MaxInventory {
		return fmt.Errorf("--max-baseline-objects must be between 1 and %d (a binding's inventory lists every object)", fleetv1alpha1.MaxInventory)
	}
	if o.maxBytes.Sign() <= 0 {
		return fmt.Errorf("--max-baseline-bytes must be positive")
	}
	if err := o.metrics.validate(); err != nil {
		return err
	}
	if o.tokenLifetime < clusters.MinMemberTokenLifetime {
		return fmt.Errorf("--member-token-lifetime (%s) must be at least %s: the API server issues no shorter tokens", o.tokenLifetime, clusters.MinMemberTokenLifetime)
	}
	if o.tokenRenewAt <= 0 || o.tokenRenewAt >= 1 {
		return fmt.Errorf("--member-token-renew-fraction (%g) must be between 0 and 1", o.tokenRenewAt)
	}
	if o.leaderElect && o.renewDeadline >= o.leaseDuration {
		return fmt.Errorf("--leader-elect-renew-deadline (%s) must be shorter than --leader-elect-lease-duration (%s)",
			o.renewDeadline, o.leaseDuration)
	}
	return nil
}

// splitList splits a comma-separated flag value, dropping empty entries: "" is an empty list.
func splitList(s string) []string {
	out := []string{}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func newScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := fleetv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	// Cluster API's Cluster is read when the hub serves it (a registration source).
	if err := clusterv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return scheme, nil
}

func run(args []string) error {
	var opts options
	fs := flag.NewFlagSet("fleet-controller", flag.ContinueOnError)
	opts.bind(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if opts.showVersion {
		fmt.Println("fleet-controller", version.String())
		return nil
	}
	if err := opts.validate(); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts.zap)))
	log := ctrl.Log.WithName("setup")
	log.Info("starting fleet-controller", "version", version.String(), "hubNamespace", opts.hubNamespace)
	if !opts.metrics.secure {
		log.Info("serving metrics over plain HTTP without authentication (--metrics-secure=false)", "address", opts.metrics.addr)
	}

	scheme, err := newScheme()
	if err != nil {
		return err
	}
	restConfig, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("find the hub cluster: %w", err)
	}
	restConfig.UserAgent = "fleet-controller/" + version.Get().Version

	clusterOpts := clusters.SetupOptions{
		HubNamespace:         opts.hubNamespace,
		Policy:               opts.policy,
		ClusterAPINamespaces: splitList(opts.capiNamespaces),
		ClusterAPILabelKeys:  splitList(opts.capiLabelKeys),
		Connections: clusters.Options{
			ProbeInterval:     opts.probeInterval,
			ProbeTimeout:      opts.probeTimeout,
			NodeCountInterval: opts.nodeCount,
			FailureThreshold:  opts.failureThreshold,
			MaxBackoff:        opts.maxBackoff,
			RequestTimeout:    opts.requestTimeout,
			CacheSyncTimeout:  opts.cacheSyncTimeout,
			// Member caches hold only what Flotilla wrote, whatever kinds Baselines apply.
			DynamicLabelSelector: labels.SelectorFromSet(labels.Set{fleetv1alpha1.LabelManagedBy: fleetv1alpha1.ManagedByValue}),
		},
		Heartbeat:                opts.heartbeat,
		MemberCleanupTimeout:     opts.cleanupTimeout,
		MemberTokenLifetime:      opts.tokenLifetime,
		MemberTokenRenewFraction: opts.tokenRenewAt,
	}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 opts.metrics.serverOptions(),
		HealthProbeBindAddress:  opts.healthAddr,
		LeaderElection:          opts.leaderElect,
		LeaderElectionID:        opts.leaderElectionID,
		LeaderElectionNamespace: opts.hubNamespace,
		LeaseDuration:           &opts.leaseDuration,
		RenewDeadline:           &opts.renewDeadline,
		RetryPeriod:             &opts.retryPeriod,
		// Release the lease on a clean shutdown so a standby takes over at once.
		LeaderElectionReleaseOnCancel: true,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			// Baseline sources are read from the hub namespace only.
			&corev1.ConfigMap{}: {Namespaces: map[string]cache.Config{opts.hubNamespace: {}}},
			// Secrets (metadata watches only; data is read directly) in the namespaces the
			// registration policy reads kubeconfigs from, never cluster-wide.
			&corev1.Secret{}: clusters.SecretCacheOptions(clusterOpts),
		}},
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := metrics.Registry.Register(version.BuildInfo()); err != nil {
		return fmt.Errorf("register flotilla_build_info: %w", err)
	}
	conns, err := clusters.Setup(mgr, clusterOpts)
	if err != nil {
		return err
	}
	if err := propagation.Setup(mgr, conns, propagation.SetupOptions{
		HubNamespace:           opts.hubNamespace,
		Resync:                 opts.resync,
		MaxConcurrentApplies:   opts.bindingWorkers,
		MaxConcurrentPerMember: opts.perMember,
		Limits:                 propagation.Limits{Objects: opts.maxObjects, Bytes: opts.maxBytes.Value()},
	}); err != nil {
		return err
	}
	if err := servicesync.Setup(mgr, conns, servicesync.SetupOptions{
		StaleWindow:           opts.staleWindow,
		AllowSystemNamespaces: opts.allowSystemNS,
		MaxConcurrentSyncs:    opts.exportWorkers,
		// An export's reconcile holds a member only for one short part (see servicesync).
		MaxConcurrentPerMember: 2 * opts.perMember,
		ImportMode:             servicesync.ImportMode(opts.importMode),
	}); err != nil {
		return err
	}
	if err := mgr.Add(&versionRecorder{c: mgr.GetClient(), namespace: opts.hubNamespace}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}

	ctx := ctrl.SetupSignalHandler()
	log.Info("starting manager")
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}
