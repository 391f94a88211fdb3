package localfleet

import (
	"fmt"
	"path/filepath"
	"strconv"
)

// The command lines of the three binaries. Only loopback addresses, only files in the
// cluster's directory: several fleets (several test binaries) share one machine.

func (c *ControlPlane) etcdArgs() []string {
	client := fmt.Sprintf("http://127.0.0.1:%d", c.etcdClientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", c.etcdPeerPort)
	args := []string{
		"--name=" + c.Name,
		"--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=" + c.Name + "=" + peer,
		"--unsafe-no-fsync", // throwaway data; fsync dominates start-up and write latency
	}
	if c.opts.lean {
		// The raft log kept in memory between snapshots (default 10,000 entries).
		args = append(args, "--snapshot-count=1000")
	}
	return args
}

func (c *ControlPlane) apiserverArgs() []string {
	p := c.pki
	return append([]string{
		"--advertise-address=127.0.0.1",
		// The endpoint reconciler refuses a loopback address; without it the "kubernetes"
		// Service simply has no Endpoints, which nothing here needs.
		"--endpoint-reconciler-type=none",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.apiserverPort),
		"--cert-dir=" + filepath.Join(c.Dir, "apiserver-certs"),
		"--tls-cert-file=" + p.servingCertFile,
		"--tls-private-key-file=" + p.servingKeyFile,
		"--client-ca-file=" + p.caCertFile,
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", c.etcdClientPort),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + p.saPubFile,
		"--service-account-signing-key-file=" + p.saKeyFile,
		"--service-cluster-ip-range=10.0.0.0/16", // clusters are isolated; one range for all, room for benchmarks with thousands of Services
		"--authorization-mode=RBAC",              // tests rely on non-admin identities being denied
		"--allow-privileged=true",
	}, c.auditArgs()...)
}

func (c *ControlPlane) kcmArgs() []string {
	p := c.pki
	return []string{
		"--kubeconfig=" + c.kcmKubeconfigPath(), // its own identity, so that audit logs tell its writes apart
		"--controllers=*",
		"--leader-elect=false",
		"--secure-port=0", // serve nothing, so that many can share loopback
		"--cluster-name=" + c.Name,
		"--service-account-private-key-file=" + p.saKeyFile,
		"--root-ca-file=" + p.caCertFile,
		"--use-service-account-credentials=false",
		"--cluster-signing-cert-file=" + p.caCertFile,
		"--cluster-signing-key-file=" + p.caKeyFile,
	}
}
