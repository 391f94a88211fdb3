// Package fleettest holds the few helpers that tests of every package share: polling for an
// outcome with a message that says what was expected, and running the hub controller's
// domains in process against a local fleet (package localfleet). It imports no Flotilla
// domain, so that the domains' own tests can use it.
package fleettest

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
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
// Lines written after a test that RunManager ran for has ended are dropped: goroutines of
// the manager or of the fleet may still log while they wind down, and testing panics on a
// log after the end (which ended `-count 3` runs after their first).
type LogWriter struct{ TB testing.TB }

func (w LogWriter) Write(p []byte) (int, error) {
	if v, ok := logEnds.Load(w.TB); ok {
		end := v.(*logEnd)
		end.mu.RLock()
		defer end.mu.RUnlock()
		if end.ended {
			return len(p), nil
		}
	}
	w.TB.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// logEnd says whether a test's log has ended: set by the test's cleanup, under the write
// lock, so that no LogWriter line is half written past it.
type logEnd struct {
	mu    sync.RWMutex
	ended bool
}

// logEnds holds a *logEnd per test that RunManager ran a manager for.
var logEnds sync.Map

// endLogAtCleanup makes LogWriters of tb drop their lines once tb's cleanups run.
func endLogAtCleanup(tb testing.TB) {
	end := &logEnd{}
	if _, loaded := logEnds.LoadOrStore(tb, end); loaded {
		return
	}
	tb.Cleanup(func() {
		end.mu.Lock()
		end.ended = true
		end.mu.Unlock()
	})
}

// RunManager runs a controller manager against the hub at cfg, in process, after setup has
// added the controllers under test; metrics and health endpoints are off. The returned
// client is the manager's (cache-backed reads, as a controller sees the hub). stop is
// idempotent and also runs at the end of tb.
func RunManager(tb testing.TB, cfg *rest.Config, scheme *runtime.Scheme, setup func(ctrl.Manager) error) (hub client.Client, stop func()) {
	tb.Helper()
	endLogAtCleanup(tb)
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

// Consistently polls check every 100ms for the whole of d and fails at the first error: the
// way to show that something does not happen (a member that must wait is not written to).
func Consistently(tb testing.TB, d time.Duration, what string, check func() error) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		if err := check(); err != nil {
			tb.Fatalf("want %s for %s; broken after %s: %v", what, d, d-time.Until(deadline).Round(time.Millisecond), err)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Update reads obj fresh, applies mutate and updates it, again on a conflict: tests write
// objects that controllers write too (statuses, finalizers, drift corrections), and a read
// through a manager's cache may be a version behind (or not have a new object yet). obj needs its name (and namespace).
func Update(tb testing.TB, c client.Client, obj client.Object, mutate func()) {
	tb.Helper()
	Must(tb, retry.OnError(conflictBackoff, staleRead, func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate()
		return c.Update(context.Background(), obj)
	}))
}

// staleRead: a conflict, or a read through a cache that has not seen a new object yet.
func staleRead(err error) bool { return apierrors.IsConflict(err) || apierrors.IsNotFound(err) }

// conflictBackoff outlasts a cache that lags a few seconds behind on a loaded machine
// (retry.DefaultRetry gives up after about 50ms).
var conflictBackoff = wait.Backoff{Steps: 10, Duration: 20 * time.Millisecond, Factor: 2, Cap: 2 * time.Second, Jitter: 0.1}

// UpdateStatus is Update for the status subresource.
func UpdateStatus(tb testing.TB, c client.Client, obj client.Object, mutate func()) {
	tb.Helper()
	Must(tb, retry.OnError(conflictBackoff, staleRead, func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate()
		return c.Status().Update(context.Background(), obj)
	}))
}

// Median is the median of xs (the upper one of an even count); benchmarks report medians
// over iterations so that one slow iteration on a shared machine does not set the figure.
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// ReportLatencies reports the median of samples (seconds) as "ms-<name>-p50" and, honestly
// named, their tail: "ms-<name>-p99" from 100 samples or more, else "ms-<name>-max" (the
// 99th percentile of 20 samples is just their maximum). It also reports the sample count.
func ReportLatencies(b *testing.B, name string, samples []float64) {
	b.Helper()
	if len(samples) == 0 {
		b.Fatalf("no samples of %s", name)
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	b.ReportMetric(s[len(s)/2]*1000, "ms-"+name+"-p50")
	if len(s) >= 100 {
		b.ReportMetric(s[(len(s)*99+99)/100-1]*1000, "ms-"+name+"-p99")
	} else {
		b.ReportMetric(s[len(s)-1]*1000, "ms-"+name+"-max")
	}
	b.ReportMetric(float64(len(s)), "samples-"+name)
}
