// Package fleettest holds the few helpers that tests of every package share: polling for an
// outcome with a message that says what was expected, and running the hub controller's
// domains in process against a local fleet (package localfleet). It imports no Flotilla
// domain, so that the domains' own tests can use it.
package fleettest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Must fails the test on err.
func Must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// Eventually polls check every 100ms until it returns nil, or fails after timeout with what
// was expected and the last observation.
func Eventually(tb testing.TB, timeout time.Duration, what string, check func() error) {
	tb.Helper()
	EventuallyEvery(tb, 100*time.Millisecond, timeout, what, check)
}

// EventuallyEvery is Eventually with another period; benchmarks measuring latencies of tens
// of milliseconds poll every few milliseconds so that the poll does not round them up.
func EventuallyEvery(tb testing.TB, period, timeout time.Duration, what string, check func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: want %s; last: %v", timeout, what, err)
		}
		time.Sleep(period)
	}
}

// LogWriter sends log lines to the test log, shown when the test fails (or with -v).
type LogWriter struct{ TB testing.TB }

func (w LogWriter) Write(p []byte) (int, error) {
	w.TB.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// RunManager runs a controller manager against the hub at cfg, in process, after setup has
// added the controllers under test; metrics and health endpoints are off. The returned
// client is the manager's (cache-backed reads, as a controller sees the hub). stop is
// idempotent and also runs at the end of tb.
func RunManager(tb testing.TB, cfg *rest.Config, scheme *runtime.Scheme, setup func(ctrl.Manager) error) (hub client.Client, stop func()) {
	tb.Helper()
	logger := zap.New(zap.UseDevMode(true), zap.WriteTo(LogWriter{tb}))
	ctrl.SetLogger(logger)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Logger:                 logger,
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Tests run several managers in one process; controller names repeat.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	Must(tb, err)
	Must(tb, setup(mgr))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("manager: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return mgr.GetClient(), stop
}
