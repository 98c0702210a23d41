package controlplane

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// The lab's PKI is made fresh for every run, in Go, with ECDSA P-256 keys: generating them
// takes microseconds where RSA-2048 takes tens of milliseconds each, and every component
// (apiserver serving, client certificates, ServiceAccount tokens as ES256) accepts them.

// certValidity outlives any lab run; the CA is thrown away with the run directory.
const certValidity = 7 * 24 * time.Hour

// authority is the lab's one CA: it signs the apiserver's serving certificate and every
// client certificate, and the apiserver trusts it for client authentication.
type authority struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	dir     string
}

func newAuthority(dir string) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "berth-lab-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca := &authority{cert: cert, key: key, certPEM: pemBlock("CERTIFICATE", der), dir: dir}
	if err := writeFile(ca.certPath(), ca.certPEM); err != nil {
		return nil, err
	}
	return ca, nil
}

func (ca *authority) certPath() string { return filepath.Join(ca.dir, "ca.crt") }

// keyPair is a signed certificate and its key, written as <name>.crt and <name>.key.
type keyPair struct {
	CertPath, KeyPath string
	CertPEM, KeyPEM   []byte
}

// issue signs a certificate for name. A serving certificate carries hosts as SANs; a
// client certificate carries the user as CN and groups as O, as the apiserver reads them.
func (ca *authority) issue(file, cn string, groups []string, hosts []string, ips []netip.Addr, server bool) (keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyPair{}, fmt.Errorf("certificate %s: key: %w", file, err)
	}
	usage := x509.ExtKeyUsageClientAuth
	if server {
		usage = x509.ExtKeyUsageServerAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: groups},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     hosts,
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.AsSlice()))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return keyPair{}, fmt.Errorf("certificate %s: %w", file, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return keyPair{}, fmt.Errorf("certificate %s: key: %w", file, err)
	}
	kp := keyPair{
		CertPath: filepath.Join(ca.dir, file+".crt"),
		KeyPath:  filepath.Join(ca.dir, file+".key"),
		CertPEM:  pemBlock("CERTIFICATE", der),
		KeyPEM:   pemBlock("PRIVATE KEY", keyDER),
	}
	if err := writeFile(kp.CertPath, kp.CertPEM); err != nil {
		return keyPair{}, err
	}
	if err := writeFile(kp.KeyPath, kp.KeyPEM); err != nil {
		return keyPair{}, err
	}
	return kp, nil
}

// writeSigningKey writes the ServiceAccount token signing key and its public half.
func writeSigningKey(dir string) (keyPath, pubPath string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("service account key: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("service account key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", "", fmt.Errorf("service account key: %w", err)
	}
	keyPath, pubPath = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := writeFile(keyPath, pemBlock("PRIVATE KEY", keyDER)); err != nil {
		return "", "", err
	}
	if err := writeFile(pubPath, pemBlock("PUBLIC KEY", pubDER)); err != nil {
		return "", "", err
	}
	return keyPath, pubPath, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126)) // never fails on Linux
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writeFile(path string, b []byte) error {
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
