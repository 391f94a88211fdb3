package clusters

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// The member endpoint policy: where the hub may connect with a member's credentials.
// Whoever can write a kubeconfig the hub reads chooses the address the hub connects to, so
// without it the hub would carry a member token to any address it can reach (SSRF): cloud
// metadata services, its own loopback, plain-HTTP listeners. Three layers enforce it:
//   - LoadCredentials refuses http:// servers, proxy-url and literal addresses the policy
//     forbids, before anything in the kubeconfig is used;
//   - CheckEndpoint resolves the server's host name and checks every address, so that a
//     refused address is reported on the MemberCluster before any connection is made;
//   - every member connection dials through guardedDialer, which checks the address it is
//     about to connect to (after DNS, before connect), so a host name that resolves
//     differently later (DNS rebinding) is refused too.

// linkLocalV4 holds the cloud metadata services of every major provider (169.254.169.254).
var linkLocalV4 = netip.MustParsePrefix("169.254.0.0/16")

// metadataAddrs are cloud metadata addresses outside the link-local ranges (AWS IMDS over IPv6).
var metadataAddrs = []netip.Addr{netip.MustParseAddr("fd00:ec2::254")}

// addressNotAllowed returns why the hub must not connect to addr, or "".
func addressNotAllowed(addr netip.Addr, p CredentialPolicy) string {
	addr = addr.Unmap()
	switch {
	case linkLocalV4.Contains(addr) || addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast():
		return fmt.Sprintf("%s is a link-local address (where cloud metadata services answer)", addr)
	case isMetadataAddr(addr):
		return fmt.Sprintf("%s is a cloud metadata address", addr)
	case addr.IsMulticast():
		return fmt.Sprintf("%s is a multicast address", addr)
	case (addr.IsLoopback() || addr.IsUnspecified()) && !p.AllowLoopback:
		return fmt.Sprintf("%s is the hub's own loopback; allowed only with the controller flag --allow-loopback-members", addr)
	}
	return ""
}

func isMetadataAddr(addr netip.Addr) bool {
	for _, m := range metadataAddrs {
		if addr == m {
			return true
		}
	}
	return false
}

// checkServerURL applies the static part of the endpoint policy to a kubeconfig's server
// URL: https only, and a literal IP address must be allowed. Host names are checked by
// CheckEndpoint and guardedDialer.
func checkServerURL(field, server string, p CredentialPolicy) *CredentialError {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return &CredentialError{Reason: fleetv1alpha1.ReasonInvalidKubeconfig, Field: field, Detail: "is not a URL with a host"}
	}
	if u.Scheme != "https" {
		return &CredentialError{Reason: fleetv1alpha1.ReasonHTTPNotAllowed, Field: field,
			Detail: fmt.Sprintf("scheme %q is not allowed: the hub connects to members over https only, so credentials never travel in clear", u.Scheme)}
	}
	if addr, err := netip.ParseAddr(u.Hostname()); err == nil {
		if why := addressNotAllowed(addr, p); why != "" {
			return &CredentialError{Reason: fleetv1alpha1.ReasonEndpointNotAllowed, Field: field, Detail: why}
		}
	}
	return nil
}

// Resolver looks up a host name's addresses; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// resolveTimeout bounds the host name lookup of CheckEndpoint.
const resolveTimeout = 5 * time.Second

// CheckEndpoint resolves the host of a member's server URL and refuses it when any of its
// addresses is forbidden by the policy. A host name that does not resolve is not refused
// here: the connection's probe reports it (HostNotFound), and guardedDialer still checks
// whatever it resolves to later.
func CheckEndpoint(ctx context.Context, r Resolver, server string, p CredentialPolicy) *CredentialError {
	u, err := url.Parse(server)
	if err != nil {
		return &CredentialError{Reason: fleetv1alpha1.ReasonInvalidKubeconfig, Detail: "server is not a URL"}
	}
	host := u.Hostname()
	if _, err := netip.ParseAddr(host); err == nil {
		return nil // a literal address was checked by LoadCredentials
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if why := addressNotAllowed(a, p); why != "" {
			return &CredentialError{Reason: fleetv1alpha1.ReasonEndpointNotAllowed,
				Detail: fmt.Sprintf("server host %q resolves to %s", host, why)}
		}
	}
	return nil
}

// endpointRefusedError is a connection guardedDialer refused before connecting.
type endpointRefusedError struct{ why string }

func (e *endpointRefusedError) Error() string {
	return "connection refused by the hub's endpoint policy: " + e.why
}

// guardedDialer dials member API servers. Its Control hook runs after name resolution and
// before the connect system call, for every address tried, so a refused address is never
// contacted whatever the host name resolves to at that moment.
func guardedDialer(p CredentialPolicy) *net.Dialer {
	return &net.Dialer{
		Timeout:   30 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return &endpointRefusedError{why: fmt.Sprintf("cannot check address %q", address)}
			}
			if why := addressNotAllowed(ap.Addr(), p); why != "" {
				return &endpointRefusedError{why: why}
			}
			return nil
		},
	}
}
