//go:build e2e

package e2e_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flotilla-dev/flotilla/e2e"
)

// live is the suite's backend once it is up, for the signal and timeout guards, which run
// beside the specs.
var live atomic.Pointer[e2e.Backend]

// startKind starts the kind backend from what `make e2e` put in the environment.
func startKind(ctx context.Context) (*e2e.Kind, error) {
	opts := e2e.KindOptions{
		Root: suite.root, Binaries: suite.bins, ArtifactsDir: suite.artifacts,
		NodeImage:       os.Getenv(KindNodeImageEnv),
		ControllerImage: os.Getenv(ControllerImageEnv),
		Progress:        os.Stderr,
	}
	for _, env := range []string{ControllerImageEnv, EchoImageEnv, ClientImageEnv} {
		if os.Getenv(env) == "" {
			return nil, fmt.Errorf("$%s is not set: run the kind suite with `make e2e`, which builds the images", env)
		}
	}
	opts.WorkloadImages = []string{os.Getenv(EchoImageEnv), os.Getenv(ClientImageEnv)}
	return e2e.StartKind(ctx, opts)
}

// guardKindClusters deletes the kind clusters when the suite is interrupted (SIGINT, SIGTERM)
// or two minutes before go test's -timeout, which panics the test binary without running
// deferred code; in the timeout case it first collects the artifacts. The returned function
// disarms both.
func guardKindClusters(ctx context.Context) (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	timer := time.NewTimer(time.Duration(1<<63 - 1)) // never, unless -timeout is set
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 4*time.Minute {
			timer.Reset(d - 2*time.Minute)
		}
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case sig := <-sigs:
			fmt.Fprintf(os.Stderr, "e2e: %s: deleting the kind clusters\n", sig)
			cleanUpKind(ctx, false)
			os.Exit(130)
		case <-timer.C:
			fmt.Fprintln(os.Stderr, "e2e: go test's -timeout is two minutes away: collecting artifacts and deleting the kind clusters")
			cleanUpKind(ctx, true)
			fmt.Fprintf(os.Stderr, "e2e: FAILED (timeout); artifacts kept in %s\n", suite.artifacts)
			os.Exit(1)
		}
	}()
	return func() {
		signal.Stop(sigs)
		timer.Stop()
		close(done)
	}
}

func cleanUpKind(ctx context.Context, collect bool) {
	if b := live.Load(); b != nil {
		if collect {
			ctx, cancel := context.WithTimeout(ctx, time.Minute)
			if err := (*b).CollectArtifacts(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "e2e: collect artifacts:", err)
			}
			cancel()
		}
		if err := (*b).Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stop backend:", err)
		}
	}
	// Also what a backend still starting has made (it is not live yet).
	if err := e2e.DeleteKindClusters(e2e.DefaultKindPrefix, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
	}
}

// kindOnly is the reason a spec that needs pods, kube-proxy and DNS gives when another backend
// runs the suite.
func kindOnly() string {
	return strings.TrimSpace(fmt.Sprintf("needs a data plane (pods, kube-proxy, DNS): run it with %s=kind (make e2e); this is the %s backend",
		BackendEnv, backendName()))
}
