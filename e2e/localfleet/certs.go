package localfleet

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// adminUser and adminGroup identify the admin client certificate; system:masters bypasses RBAC,
// every other identity is authorized by RBAC.
const (
	adminUser  = "flotilla-admin"
	adminGroup = "system:masters"
	// kcmUser is kube-controller-manager's own identity (in adminGroup, since it runs with
	// --use-service-account-credentials=false), so that audit logs tell its writes from the
	// admin's — the identity tests and the hub use.
	kcmUser = "system:kube-controller-manager"
)

// pki is one cluster's credentials, generated fresh per cluster so that clusters cannot
// authenticate to each other by accident. The PEM bytes are kept for the kubeconfig and
// rest.Config; the files are what the processes read.
type pki struct {
	caCert, adminCert, adminKey []byte // PEM
	kcmCert, kcmKey             []byte // PEM

	ca    *x509.Certificate
	caKey crypto.Signer

	caCertFile, caKeyFile           string
	servingCertFile, servingKeyFile string
	saKeyFile, saPubFile            string
}

// newPKI writes a CA, a serving certificate for 127.0.0.1/localhost, an admin client
// certificate and a service-account RSA key pair into dir. ECDSA keeps the certificates cheap
// to generate; the service-account key is RSA because that is what token signing expects.
func newPKI(dir string) (*pki, error) {
	p := &pki{
		caCertFile:      filepath.Join(dir, "ca.crt"),
		caKeyFile:       filepath.Join(dir, "ca.key"),
		servingCertFile: filepath.Join(dir, "apiserver.crt"),
		servingKeyFile:  filepath.Join(dir, "apiserver.key"),
		saKeyFile:       filepath.Join(dir, "sa.key"),
		saPubFile:       filepath.Join(dir, "sa.pub"),
	}
	now := time.Now().Add(-time.Hour) // tolerate small clock differences
	notAfter := now.Add(10 * 365 * 24 * time.Hour)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "flotilla-localfleet-ca"},
		NotBefore:             now,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := sign(caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	p.caCert = pemEncode("CERTIFICATE", caDER)

	servingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	servingDER, err := sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:   now,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 0, 0, 1)},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}, ca, servingKey.Public(), caKey)
	if err != nil {
		return nil, err
	}

	p.ca, p.caKey = ca, caKey
	if p.adminCert, p.adminKey, err = p.clientCert(adminUser, adminGroup); err != nil {
		return nil, err
	}
	if p.kcmCert, p.kcmKey, err = p.clientCert(kcmUser, adminGroup); err != nil {
		return nil, err
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	saPub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}

	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return nil, err
	}
	servingKeyPEM, err := keyPEM(servingKey)
	if err != nil {
		return nil, err
	}
	saKeyPEM, err := keyPEM(saKey)
	if err != nil {
		return nil, err
	}
	for path, data := range map[string][]byte{
		p.caCertFile:      p.caCert,
		p.caKeyFile:       caKeyPEM,
		p.servingCertFile: pemEncode("CERTIFICATE", servingDER),
		p.servingKeyFile:  servingKeyPEM,
		p.saKeyFile:       saKeyPEM,
		p.saPubFile:       pemEncode("PUBLIC KEY", saPub),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// clientCert returns a client certificate and key (PEM) for user in groups, signed by the CA.
func (p *pki) clientCert(user string, groups ...string) (cert, key []byte, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now().Add(-time.Hour)
	der, err := sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: groups},
		NotBefore:   now,
		NotAfter:    now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, p.ca, k.Public(), p.caKey)
	if err != nil {
		return nil, nil, err
	}
	if key, err = keyPEM(k); err != nil {
		return nil, nil, err
	}
	return pemEncode("CERTIFICATE", der), key, nil
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return der, nil
}

func keyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pemEncode("PRIVATE KEY", der), nil
}

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
