package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// The metrics endpoint authenticates every scrape with a TokenReview and authorizes it with a
// SubjectAccessReview (get on the non-resource URL /metrics) against the hub's API server.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Names of the key pair read from --metrics-cert-dir: those of a kubernetes.io/tls Secret
// mounted as a volume (cert-manager writes them).
const (
	metricsCertName = "tls.crt"
	metricsKeyName  = "tls.key"
)

// metricsOptions are the flags of the Prometheus endpoint.
type metricsOptions struct {
	addr    string
	secure  bool
	certDir string
}

func (o *metricsOptions) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.addr, "metrics-bind-address", ":8443",
		"Address of the Prometheus metrics endpoint; 0 disables it.")
	fs.BoolVar(&o.secure, "metrics-secure", true,
		"Serve metrics over HTTPS to callers whose bearer token the hub authenticates and who may get the non-resource URL /metrics "+
			"(ClusterRole flotilla-metrics-reader). false serves them over plain HTTP to anyone who can connect.")
	fs.StringVar(&o.certDir, "metrics-cert-dir", "",
		"Directory holding "+metricsCertName+" and "+metricsKeyName+" for the metrics endpoint, reloaded when they change; "+
			"empty serves a self-signed certificate generated at start.")
}

func (o *metricsOptions) validate() error {
	if o.certDir == "" {
		return nil
	}
	if !o.secure {
		return errors.New("--metrics-cert-dir needs --metrics-secure")
	}
	// controller-runtime falls back to a self-signed certificate when the files are missing;
	// a mount that went wrong must not silently turn into a certificate nobody can verify.
	for _, name := range []string{metricsCertName, metricsKeyName} {
		if _, err := os.Stat(filepath.Join(o.certDir, name)); err != nil {
			return fmt.Errorf("--metrics-cert-dir: %w", err)
		}
	}
	return nil
}

func (o *metricsOptions) serverOptions() metricsserver.Options {
	if !o.secure {
		return metricsserver.Options{BindAddress: o.addr}
	}
	return metricsserver.Options{
		BindAddress:    o.addr,
		SecureServing:  true,
		FilterProvider: filters.WithAuthenticationAndAuthorization,
		CertDir:        o.certDir,
		CertName:       metricsCertName,
		KeyName:        metricsKeyName,
		// HTTP/1.1 only: Prometheus scrapes with it, and HTTP/2's stream resets (CVE-2023-44487,
		// Rapid Reset) are an attack surface a scrape endpoint does not need.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	}
}
