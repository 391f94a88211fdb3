package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// readyTimeout bounds the wait for a started controller's /readyz; generous for a loaded
// 2-core machine.
const readyTimeout = 60 * time.Second

// ControllerOptions say how to run one fleet-controller process.
type ControllerOptions struct {
	// Bin is the fleet-controller binary.
	Bin string
	// Kubeconfig is the hub identity the controller runs as.
	Kubeconfig string
	// LogPath receives the controller's output, appended, so that restarts share one log.
	LogPath string
	// Args are added to --kubeconfig and the loopback health and metrics addresses.
	Args []string
	// MetricsToken is the bearer token of someone allowed to scrape the metrics (ClusterRole
	// flotilla-metrics-reader), for ReconcileCount.
	MetricsToken string
}

// Controller is a running fleet-controller process. It runs in its own process group and
// dies with the test binary (PDEATHSIG), even when that is killed.
type Controller struct {
	// LogPath is the controller's log file.
	LogPath string
	// MetricsAddr is the loopback address of its Prometheus endpoint (HTTPS unless
	// --metrics-secure=false is among the Args).
	MetricsAddr string

	metricsToken string

	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has been reaped
	waitErr error         // valid after done
	stop    sync.Once
}

// StartController starts fleet-controller and returns once it answers /readyz.
func StartController(ctx context.Context, o ControllerOptions) (*Controller, error) {
	health, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	metrics, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(o.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	args := append([]string{"--kubeconfig=" + o.Kubeconfig,
		"--health-probe-bind-address=" + health, "--metrics-bind-address=" + metrics}, o.Args...)
	fmt.Fprintf(logFile, "--- %s %s %s\n", time.Now().Format(time.RFC3339), o.Bin, strings.Join(args, " "))
	cmd := exec.Command(o.Bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "KUBECONFIG=") // only the identity we give it
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := spawn(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", o.Bin, err)
	}
	c := &Controller{LogPath: o.LogPath, MetricsAddr: metrics, metricsToken: o.MetricsToken, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		logFile.Close()
		close(c.done)
	}()
	if err := c.waitReady(ctx, "http://"+health+"/readyz"); err != nil {
		c.Kill()
		return nil, err
	}
	return c, nil
}

func (c *Controller) waitReady(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-c.done:
			return fmt.Errorf("fleet-controller exited before it was ready (%w); see %s", c.waitErr, c.LogPath)
		case <-ctx.Done():
			return fmt.Errorf("fleet-controller not ready at %s: %w; see %s", url, ctx.Err(), c.LogPath)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop sends SIGTERM (a leader releases its lease), then SIGKILL after 10s, and waits.
func (c *Controller) Stop() {
	c.signal(syscall.SIGTERM, 10*time.Second)
}

// Kill sends SIGKILL, as a crashed node would: a leader keeps its lease until it expires.
func (c *Controller) Kill() {
	c.signal(syscall.SIGKILL, 0)
}

func (c *Controller) signal(sig syscall.Signal, grace time.Duration) {
	c.stop.Do(func() {
		pgid := c.cmd.Process.Pid // Setpgid: the group id is the pid
		_ = syscall.Kill(-pgid, sig)
		if grace > 0 {
			select {
			case <-c.done:
				return
			case <-time.After(grace):
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
		}
		<-c.done
	})
}

// Exited tells whether the process has ended.
func (c *Controller) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Log returns the controller's log so far.
func (c *Controller) Log() string {
	data, err := os.ReadFile(c.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", c.LogPath, err)
	}
	return string(data)
}

// ReconcileCount returns how many times this process ran the named controller's Reconcile,
// from controller-runtime's controller_runtime_reconcile_total (0 before the controller
// started, as in a standby that never led).
func (c *Controller) ReconcileCount(ctx context.Context, controller string) (int, error) {
	resp, err := ScrapeMetrics(ctx, c.MetricsAddr, c.metricsToken)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET https://%s/metrics: %s", c.MetricsAddr, resp.Status)
	}
	return sumCounter(resp.Body, "controller_runtime_reconcile_total", `controller="`+controller+`"`)
}

// ScrapeMetrics GETs https://addr/metrics as Prometheus does, with token as the bearer token
// (none if empty). The server's certificate is not verified: by default it is self-signed,
// made when the controller starts (as the ServiceMonitor of config/prometheus says).
func ScrapeMetrics(ctx context.Context, addr, token string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // a self-signed loopback server, see above
	}}
	return hc.Do(req)
}

// sumCounter adds up the samples of a Prometheus text-format counter whose labels contain
// match; it is all the parsing the specs need.
func sumCounter(r io.Reader, name, match string) (int, error) {
	total := 0.0
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, match) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		total += v
	}
	return int(total), s.Err()
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

var (
	spawnOnce sync.Once
	spawnReqs chan spawnRequest
)

type spawnRequest struct {
	cmd  *exec.Cmd
	errc chan error
}

// spawn starts cmd from one goroutine locked to an OS thread that lives as long as the
// program: PDEATHSIG fires when the thread that forked the child exits, and the Go runtime
// may end other threads at any time (see localfleet's process.go for the same pattern).
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnRequest)
		go func() {
			runtime.LockOSThread() // never unlocked
			for r := range spawnReqs {
				r.errc <- r.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnReqs <- spawnRequest{cmd: cmd, errc: errc}
	return <-errc
}
