package config_test

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	// The controller's domains register their metrics when imported, as in fleet-controller.
	_ "github.com/flotilla-dev/flotilla/clusters"
	_ "github.com/flotilla-dev/flotilla/propagation"
	_ "github.com/flotilla-dev/flotilla/servicesync"
)

// prometheusRule is the part of a monitoring.coreos.com/v1 PrometheusRule the alerts use.
type prometheusRule struct {
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

var metricName = regexp.MustCompile(`\bflotilla_[a-z_]+\b`)

// mainMetrics are registered by fleet-controller's main itself, not by a domain this test
// can import; TestMetricsNeedAReaderRole finds them in a scrape of the real binary.
var mainMetrics = []string{"flotilla_build_info"}

// TestAlertsUseOnlyMetricsTheControllerServes renders config/prometheus and checks every
// alert a platform team gets: it has a severity, a summary and a description, and its
// expression names only metrics fleet-controller registers (a renamed metric would
// otherwise leave an alert that silently never fires). promtool is not available here, so
// the names are checked against the controller's own registry instead of a PromQL parse.
func TestAlertsUseOnlyMetricsTheControllerServes(t *testing.T) {
	rule := find(t, render(t, "config/prometheus"), "PrometheusRule", hubNamespace, "flotilla-alerts")
	var r prometheusRule
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(rule.Object, &r); err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, g := range r.Spec.Groups {
		for _, rl := range g.Rules {
			alerts = append(alerts, rl.Alert)
			t.Run(rl.Alert, func(t *testing.T) {
				if rl.Labels["severity"] == "" || rl.Annotations["summary"] == "" || rl.Annotations["description"] == "" {
					t.Errorf("labels %v annotations %v: want a severity, a summary and a description", rl.Labels, rl.Annotations)
				}
				if rl.For != "" {
					if _, err := time.ParseDuration(rl.For); err != nil {
						t.Errorf("for %q: %v", rl.For, err)
					}
				}
				if !balanced(rl.Expr) {
					t.Errorf("expr %q: unbalanced brackets", rl.Expr)
				}
				names := metricName.FindAllString(rl.Expr, -1)
				if len(names) == 0 {
					t.Errorf("expr %q names no Flotilla metric", rl.Expr)
				}
				for _, n := range names {
					if !registered(t, n) && !slices.Contains(mainMetrics, n) {
						t.Errorf("expr %q: fleet-controller serves no metric %s", rl.Expr, n)
					}
				}
			})
		}
	}
	// What the README promises a platform team (section "Alerts").
	for _, want := range []string{"FlotillaMemberNotReady", "FlotillaBaselineStalled", "FlotillaDriftNotCorrected", "FlotillaEndpointPropagationSlow"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alerts %v lack %s", alerts, want)
		}
	}
}

// registered tells whether the controller's registry holds metric name (a histogram's or
// summary's _bucket, _count and _sum series are of the metric without the suffix). It
// registers a probe of that name: the registry refuses it exactly when a collector of the
// same name, with other labels or help, is registered already.
func registered(t *testing.T, name string) bool {
	t.Helper()
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && registered(t, base) {
			return true
		}
	}
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "probe of config/alerts_test.go"})
	err := ctrlmetrics.Registry.Register(probe)
	if err == nil {
		ctrlmetrics.Registry.Unregister(probe)
		return false
	}
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		t.Fatalf("probe %s registered twice", name)
	}
	return strings.Contains(err.Error(), "same fully-qualified name")
}

// balanced tells whether the brackets of a PromQL expression pair up (outside strings).
func balanced(expr string) bool {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inString := false
	for _, c := range expr {
		switch {
		case c == '"':
			inString = !inString
		case inString:
		case c == '(' || c == '[' || c == '{':
			stack = append(stack, c)
		case pairs[c] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[c] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && !inString
}
