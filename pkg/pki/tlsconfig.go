package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// KeyPair parses a certificate and key (PEM) into a tls.Certificate with Leaf set. When ca is
// given and the chain does not already end with it, the CA certificate is appended: a server
// then presents leaf + CA, which is what PinnedTLS checks a joiner's token digest against.
func KeyPair(certPEM, keyPEM []byte, ca *x509.Certificate) (*tls.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("key pair: %w", err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("key pair: leaf: %w", err)
		}
	}
	if ca != nil {
		if last := pair.Certificate[len(pair.Certificate)-1]; string(last) != string(ca.Raw) {
			pair.Certificate = append(pair.Certificate, ca.Raw)
		}
	}
	return &pair, nil
}

func caPool(ca *x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

// ServerTLS is the configuration for a scheduler's listeners (gRPC and Raft): TLS 1.3, the
// node's certificate (with the CA appended), and client certificates verified against ca if
// given (tls.VerifyClientCertIfGiven). A joining node has no certificate yet and a client
// authenticates with an API token, so the handshake admits them; the layer above must
// authorize every request with PeerIdentity or a token.
func ServerTLS(ca *x509.Certificate, certPEM, keyPEM []byte) (*tls.Config, error) {
	if ca == nil {
		return nil, errors.New("server TLS: no CA certificate")
	}
	pair, err := KeyPair(certPEM, keyPEM, ca)
	if err != nil {
		return nil, fmt.Errorf("server TLS: %w", err)
	}
	cfg := ServerTLSWith(ca, nil)
	cfg.Certificates = []tls.Certificate{*pair}
	return cfg, nil
}

// ServerTLSWith is ServerTLS taking the certificate from a callback, such as
// Renewer.GetCertificate, so renewed certificates serve new connections.
func ServerTLSWith(ca *x509.Certificate, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      caPool(ca),
		GetCertificate: getCert,
	}
}

// ClientTLS is the configuration for a node dialing a scheduler with its own certificate
// (mutual TLS): TLS 1.3, the server verified against ca and serverName (SchedulerServerName
// when empty, which every scheduler certificate carries).
func ClientTLS(ca *x509.Certificate, certPEM, keyPEM []byte, serverName string) (*tls.Config, error) {
	if ca == nil {
		return nil, errors.New("client TLS: no CA certificate")
	}
	pair, err := KeyPair(certPEM, keyPEM, nil)
	if err != nil {
		return nil, fmt.Errorf("client TLS: %w", err)
	}
	cfg := ClientTLSWith(ca, nil, serverName)
	cfg.Certificates = []tls.Certificate{*pair}
	return cfg, nil
}

// ClientTLSWith is ClientTLS taking the certificate from a callback, such as
// Renewer.GetClientCertificate. With getCert nil the client presents no certificate (an API
// client that authenticates with a token but verifies the server against the CA).
func ClientTLSWith(ca *x509.Certificate, getCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error), serverName string) *tls.Config {
	if serverName == "" {
		serverName = SchedulerServerName
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		RootCAs:              caPool(ca),
		ServerName:           serverName,
		GetClientCertificate: getCert,
	}
}

// PinnedTLS is the configuration for a node that has only a join token: it cannot verify the
// server by name yet, so it skips the standard verification and instead requires the server
// to present a chain whose CA certificate has digest caDigest (CADigest), a leaf signed by
// that CA for server authentication, and the scheduler role.
func PinnedTLS(caDigest string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPinned(cs.PeerCertificates, caDigest)
		},
	}
}

func verifyPinned(chain []*x509.Certificate, caDigest string) error {
	if len(chain) < 2 {
		return fmt.Errorf("pinned TLS: server presented %d certificates, want its certificate and the cluster CA", len(chain))
	}
	ca := chain[len(chain)-1]
	if got := CADigest(ca); got != caDigest {
		return fmt.Errorf("pinned TLS: server's CA has digest %s, the join token pins %s: not the cluster the token belongs to", got, caDigest)
	}
	if !ca.IsCA {
		return errors.New("pinned TLS: last certificate of the chain is not a CA")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1 : len(chain)-1] {
		inter.AddCert(c)
	}
	chains, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         caPool(ca),
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("pinned TLS: server certificate: %w", err)
	}
	if _, role, ok := CertIdentity(chains[0][0]); !ok || role != RoleScheduler {
		return fmt.Errorf("pinned TLS: server certificate %q is not a scheduler's", chain[0].Subject)
	}
	return nil
}

// PeerIdentity returns the node id and role of the other side of a connection, taken from
// its verified certificate chain only. ok is false when the peer presented no certificate
// (a joiner or a token client), when its chain was not verified (PinnedTLS), or when the
// certificate carries no known role.
func PeerIdentity(state tls.ConnectionState) (nodeID, role string, ok bool) {
	if len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return "", "", false
	}
	return CertIdentity(state.VerifiedChains[0][0])
}

// ServerTLSRequiring is ServerTLSWith for a listener only peers of role may use (an agent's
// node API, which only schedulers call): the client must present a certificate that the CA
// signed for that role.
func ServerTLSRequiring(ca *x509.Certificate, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), role string) *tls.Config {
	cfg := ServerTLSWith(ca, getCert)
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if _, got, ok := PeerIdentity(cs); !ok || got != role {
			return fmt.Errorf("peer %q is not a %s", peerName(cs), role)
		}
		return nil
	}
	return cfg
}

// NodeTLS is the configuration for dialing one node by its id rather than its address (a
// scheduler reaching an agent's node API): the server's certificate must chain to ca, be
// issued for server authentication, and carry nodeID and role.
func NodeTLS(ca *x509.Certificate, getCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error), nodeID, role string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: getCert,
		InsecureSkipVerify:   true, // replaced by VerifyConnection: the name checked is the node id
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("node TLS: no certificate presented")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			chains, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots: caPool(ca), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				return fmt.Errorf("node TLS: %w", err)
			}
			id, got, ok := CertIdentity(chains[0][0])
			if !ok || got != role || id != nodeID {
				return fmt.Errorf("node TLS: peer is %s %q, want %s %q", got, id, role, nodeID)
			}
			return nil
		},
	}
}

func peerName(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return "(no certificate)"
	}
	return cs.PeerCertificates[0].Subject.CommonName
}
