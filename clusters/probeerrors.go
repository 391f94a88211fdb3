package clusters

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Probe errors become MemberCluster conditions, which whoever can read MemberClusters sees.
// A probe error can carry up to 2 KiB of whatever the server answered (client-go copies a
// non-Status body into the error), so copying it into status would make the hub a read
// oracle for any address a kubeconfig names. classifyProbeError keeps only a class and a
// message written here; the full error goes to the hub's log only.

// errNotKubernetes is an answer that parses as no Kubernetes /version document.
var errNotKubernetes = errors.New("the server's /version answer is not a Kubernetes version")

// gitVersionPattern is what a Kubernetes API server reports as its version; anything else
// (or anything longer than maxVersionLen) is not copied into status.
var gitVersionPattern = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+[0-9A-Za-z.+\-]*$`)

const maxVersionLen = 64

// classifyProbeError returns a condition reason and a message for a failed probe. The
// message is composed here from the class and numbers (HTTP status, timeout), never from
// text the member sent.
func classifyProbeError(err error, timeout time.Duration) (reason, message string) {
	var refused *endpointRefusedError
	var status apierrors.APIStatus
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &refused):
		return fleetv1alpha1.ReasonEndpointNotAllowed, refused.Error()
	case apierrors.IsUnauthorized(err):
		return fleetv1alpha1.ReasonUnauthorized, "the member rejected the credentials (401): the token may be expired or rotated"
	case apierrors.IsForbidden(err):
		return fleetv1alpha1.ReasonForbidden, "the member refused the hub's identity (403): it must be allowed to read /version and list nodes"
	case errors.Is(err, context.DeadlineExceeded) || apierrors.IsTimeout(err) || isTimeout(err):
		return fleetv1alpha1.ReasonProbeTimeout, fmt.Sprintf("no answer within %s", timeout)
	case isTLSError(err):
		return fleetv1alpha1.ReasonTLSError, "TLS handshake failed: " + tlsErrorClass(err)
	case errors.As(err, &status) && (status.Status().Code >= 500 || status.Status().Code == http.StatusTooManyRequests):
		// 429 is a Kubernetes API server shedding load (API priority and fairness): a busy
		// member, not something other than Kubernetes.
		return fleetv1alpha1.ReasonServerError, fmt.Sprintf("the member answered HTTP %d", status.Status().Code)
	case errors.As(err, &status) && status.Status().Code > 0:
		return fleetv1alpha1.ReasonNotKubernetes, fmt.Sprintf("the member answered HTTP %d where a Kubernetes API server answers 200", status.Status().Code)
	case errors.Is(err, errNotKubernetes):
		return fleetv1alpha1.ReasonNotKubernetes, "the member's /version answer is not a Kubernetes version document"
	case errors.Is(err, syscall.ECONNREFUSED):
		return fleetv1alpha1.ReasonConnectionRefused, "connection refused: nothing listens at the member's address"
	case errors.As(err, &dnsErr):
		return fleetv1alpha1.ReasonHostNotFound, "the member's host name does not resolve"
	default:
		return fleetv1alpha1.ReasonConnectionFailed, "the connection to the member's API server failed (the hub's log has the details)"
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func isTLSError(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		header   tls.RecordHeaderError
		alert    tls.AlertError
	)
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &header) || errors.As(err, &alert)
}

// tlsErrorClass names what went wrong without the certificate's names, which the server chose.
func tlsErrorClass(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		header   tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknown):
		return "the member's certificate is signed by an authority the kubeconfig does not trust"
	case errors.As(err, &hostname):
		return "the member's certificate is not valid for the server's host name"
	case errors.As(err, &invalid):
		return "the member's certificate is invalid (expired or not for serving)"
	case errors.As(err, &header):
		return "the server does not speak TLS"
	default:
		return "the member refused or failed the handshake"
	}
}
