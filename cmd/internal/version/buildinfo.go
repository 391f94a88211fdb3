package version

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// BuildInfo is the metric flotilla_build_info: always 1, labelled with what names this
// build, so that a dashboard shows which version each controller runs and an alert can tell
// that none is scraped at all. fleet-controller registers it on its metrics endpoint.
func BuildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "flotilla_build_info",
		Help: "Always 1; labelled with the build's version, Go version and commit.",
	}, []string{"version", "goversion", "commit"})
	g.WithLabelValues(Version, runtime.Version(), Commit()).Set(1)
	return g
}
