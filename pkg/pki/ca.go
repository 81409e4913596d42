// Package pki owns orch's cluster identity: the cluster CA, node certificates (CN = node id,
// OU = role), join tokens that pin the CA (after Docker Swarm's SWMTKN), API tokens, the TLS
// configurations for mutual TLS between schedulers, agents and clients, automatic certificate
// renewal, and passphrase sealing of the CA key and of snapshots.
//
// The flow it supports (wired by the scheduler and agent):
//
//  1. Bootstrap: NewCA, NewJoinToken for KindManager and KindWorker (the cluster stores only
//     the secret hashes), NewAPIToken for the first client token (stored hashed, printed once).
//  2. Join: the node parses its token, dials any scheduler with PinnedTLS(token.CADigest),
//     sends NewKeyAndCSR's CSR and the token; the scheduler checks JoinToken.Matches and
//     answers with CA.Issue's certificate and the CA certificate.
//  3. Run: ServerTLS / ClientTLS (or ServerTLSWith / ClientTLSWith with a Renewer) for every
//     gRPC and Raft connection; PeerIdentity tells the server who is calling.
//  4. Renew: the Renewer replaces the certificate after half its lifetime; new connections
//     use the new one without a restart.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
)

// Node roles, carried in the certificate's OrganizationalUnit.
const (
	RoleScheduler = "scheduler"
	RoleAgent     = "agent"
)

// SchedulerServerName is a DNS name every scheduler certificate carries, so that a peer can
// verify "some scheduler of this cluster" without knowing its address (Swarm's
// "swarm-manager"). ClientTLS uses it when no server name is given.
const SchedulerServerName = "orch-scheduler"

// CAValidity is the lifetime of a new cluster CA.
const CAValidity = 10 * 365 * 24 * time.Hour

const (
	pemCertificate  = "CERTIFICATE"
	pemPrivateKey   = "PRIVATE KEY"
	pemSealedKey    = "ORCH SEALED PRIVATE KEY"
	pemCSR          = "CERTIFICATE REQUEST"
	maxBackdate     = time.Hour
	caCommonName    = "orch-ca"
	serialBitLength = 128
)

// CA is the cluster certificate authority.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
}

// NewCA creates a self-signed ECDSA P-256 CA for clusterName, valid for CAValidity from now
// (backdated an hour for clock skew between nodes).
func NewCA(clusterName string, now time.Time) (*CA, error) {
	if clusterName == "" {
		return nil, errors.New("new CA: cluster name is empty")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new CA for cluster %s: generate key: %w", clusterName, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("new CA for cluster %s: %w", clusterName, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: caCommonName, Organization: []string{clusterName}},
		NotBefore:             now.Add(-maxBackdate),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new CA for cluster %s: self-sign: %w", clusterName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new CA for cluster %s: parse: %w", clusterName, err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der})}, nil
}

// ClusterName is the cluster the CA was created for (its Organization).
func (c *CA) ClusterName() string {
	if len(c.Cert.Subject.Organization) == 0 {
		return ""
	}
	return c.Cert.Subject.Organization[0]
}

// Marshal returns the CA certificate and its private key as PEM, the key sealed with
// passphrase (see Seal). It is the form for backups and snapshots that leave the cluster.
func (c *CA) Marshal(passphrase []byte) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("marshal CA key: %w", err)
	}
	sealed, err := Seal(der, passphrase)
	if err != nil {
		return nil, fmt.Errorf("marshal CA key: %w", err)
	}
	out := bytes.Clone(c.CertPEM)
	return append(out, pem.EncodeToMemory(&pem.Block{Type: pemSealedKey, Bytes: sealed})...), nil
}

// UnmarshalCA reverses Marshal. A wrong passphrase returns an error wrapping
// ErrWrongPassphrase.
func UnmarshalCA(b, passphrase []byte) (*CA, error) {
	return unmarshalCA(b, func(block *pem.Block) ([]byte, error) {
		if block.Type != pemSealedKey {
			return nil, fmt.Errorf("CA key block is %q, want %q (use UnmarshalPlain for an unencrypted key)", block.Type, pemSealedKey)
		}
		der, err := Open(block.Bytes, passphrase)
		if err != nil {
			return nil, fmt.Errorf("CA key: %w", err)
		}
		return der, nil
	})
}

// MarshalPlain returns the CA certificate and its unencrypted private key (PKCS#8) as PEM,
// for storage that is already protected (for example the replicated state on the schedulers).
func (c *CA) MarshalPlain() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("marshal CA key: %w", err)
	}
	out := bytes.Clone(c.CertPEM)
	return append(out, pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der})...), nil
}

// UnmarshalPlain reverses MarshalPlain.
func UnmarshalPlain(b []byte) (*CA, error) {
	return unmarshalCA(b, func(block *pem.Block) ([]byte, error) {
		if block.Type != pemPrivateKey {
			return nil, fmt.Errorf("CA key block is %q, want %q (use UnmarshalCA for a sealed key)", block.Type, pemPrivateKey)
		}
		return block.Bytes, nil
	})
}

func unmarshalCA(b []byte, keyDER func(*pem.Block) ([]byte, error)) (*CA, error) {
	certBlock, rest := pem.Decode(b)
	if certBlock == nil || certBlock.Type != pemCertificate {
		return nil, errors.New("unmarshal CA: first PEM block is not a CERTIFICATE")
	}
	keyBlock, _ := pem.Decode(rest)
	if keyBlock == nil {
		return nil, errors.New("unmarshal CA: no private key PEM block after the certificate")
	}
	cert, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("unmarshal CA: certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("unmarshal CA: certificate %q is not a CA", cert.Subject)
	}
	der, err := keyDER(keyBlock)
	if err != nil {
		return nil, fmt.Errorf("unmarshal CA %q: %w", cert.Subject, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("unmarshal CA %q: private key: %w", cert.Subject, err)
	}
	key, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unmarshal CA %q: private key of type %T cannot sign", cert.Subject, parsed)
	}
	if !publicKeyEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("unmarshal CA %q: private key does not match the certificate", cert.Subject)
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: cert.Raw})}, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// Issue signs a certificate for the key in csrDER. The issuer decides the identity: CN is
// nodeID, OU is role, O is the cluster name; the CSR's own subject and SANs are ignored (the
// CSR only proves possession of the key). Schedulers get client and server authentication
// plus the SANs (IP addresses or DNS names) and SchedulerServerName; agents get both
// usages too (they serve the node API) but no SANs: schedulers verify them by id (NodeTLS). The certificate is backdated by a tenth of ttl (at most an
// hour) for clock skew and never outlives the CA. It returns the leaf certificate as PEM.
func (c *CA) Issue(csrDER []byte, nodeID, role string, sans []string, ttl time.Duration, now time.Time) ([]byte, error) {
	if nodeID == "" {
		return nil, errors.New("issue certificate: node id is empty")
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("issue certificate for node %s: ttl %s is not positive", nodeID, ttl)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for node %s: parse CSR: %w", nodeID, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("issue certificate for node %s: CSR signature: %w", nodeID, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("issue certificate for node %s: %w", nodeID, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("issue certificate for node %s: %w", nodeID, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         nodeID,
			OrganizationalUnit: []string{role},
			Organization:       slices.Clone(c.Cert.Subject.Organization),
		},
		NotBefore:             now.Add(-min(ttl/10, maxBackdate)),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	if tmpl.NotAfter.After(c.Cert.NotAfter) {
		tmpl.NotAfter = c.Cert.NotAfter
	}
	switch role {
	case RoleScheduler:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = []string{SchedulerServerName}
		for _, s := range sans {
			s = strings.TrimSpace(s)
			switch {
			case s == "":
			case net.ParseIP(s) != nil:
				tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
			case validDNSName(s):
				if !slices.Contains(tmpl.DNSNames, s) {
					tmpl.DNSNames = append(tmpl.DNSNames, s)
				}
			default:
				return nil, fmt.Errorf("issue certificate for node %s: SAN %q is neither an IP address nor a DNS name", nodeID, s)
			}
		}
	case RoleAgent:
		// Server authentication too: each agent serves the node API (logs) to the schedulers,
		// which verify it by its id (NodeTLS), not by an address.
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	default:
		return nil, fmt.Errorf("issue certificate for node %s: unknown role %q (want %q or %q)", nodeID, role, RoleScheduler, RoleAgent)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, csr.PublicKey, c.Key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for node %s: sign: %w", nodeID, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der}), nil
}

func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("CSR key: ECDSA curve %s not accepted (want P-256 or P-384)", k.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		return nil
	default:
		return fmt.Errorf("CSR key: type %T not accepted (want ECDSA P-256/P-384 or Ed25519)", pub)
	}
}

func validDNSName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), serialBitLength))
	if err != nil {
		return nil, fmt.Errorf("random serial: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil // never zero
}

// NewKeyAndCSR creates an ECDSA P-256 key (PKCS#8 PEM) and a CSR for it (DER) with CN =
// nodeID. The key never leaves the node; the CSR goes to the CA with the join token or, for a
// renewal, over the node's current mutual TLS connection.
func NewKeyAndCSR(nodeID string) (keyPEM, csrDER []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("key for node %s: %w", nodeID, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("key for node %s: marshal: %w", nodeID, err)
	}
	csrDER, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: nodeID},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("CSR for node %s: %w", nodeID, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), csrDER, nil
}

// CSRFromKey creates a CSR (DER) for an existing PEM private key, for renewals that keep the
// node's key.
func CSRFromKey(nodeID string, keyPEM []byte) ([]byte, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("CSR for node %s: key is not PEM", nodeID)
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("CSR for node %s: parse key: %w", nodeID, err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: nodeID},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("CSR for node %s: %w", nodeID, err)
	}
	return csr, nil
}

// ParseCertificatePEM parses the first CERTIFICATE block of b.
func ParseCertificatePEM(b []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("parse certificate: no CERTIFICATE PEM block")
		}
		if block.Type == pemCertificate {
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse certificate: %w", err)
			}
			return cert, nil
		}
	}
}

// CertIdentity returns the node id (CN) and role (the single OU) of a certificate this
// package issued. ok is false when the certificate does not carry a known role. It does not
// verify the certificate: use it on verified chains only (PeerIdentity does).
func CertIdentity(cert *x509.Certificate) (nodeID, role string, ok bool) {
	if cert == nil || cert.Subject.CommonName == "" || len(cert.Subject.OrganizationalUnit) != 1 {
		return "", "", false
	}
	role = cert.Subject.OrganizationalUnit[0]
	if role != RoleScheduler && role != RoleAgent {
		return "", "", false
	}
	return cert.Subject.CommonName, role, true
}

// CADigest is the base32 (lowercase, unpadded, 52 characters) SHA-256 of the CA
// certificate's DER: what a join token pins.
func CADigest(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return encodeB32(sum[:])
}
