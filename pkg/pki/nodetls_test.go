package pki

import (
	"crypto/tls"
	"testing"
	"time"
)

// certFunc returns a GetClientCertificate callback that always presents certPEM/keyPEM (even
// when the server's acceptable CAs do not include its issuer), or none when certPEM is nil.
func certFunc(t *testing.T, certPEM, keyPEM []byte) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	t.Helper()
	if certPEM == nil {
		return nil
	}
	pair, err := KeyPair(certPEM, keyPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair, nil }
}

func serveCert(t *testing.T, ca *CA, certPEM, keyPEM []byte) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	t.Helper()
	pair, err := KeyPair(certPEM, keyPEM, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pair, nil }
}

// issueAt is issue with the issuance time given (for expired certificates).
func issueAt(t *testing.T, ca *CA, nodeID, role string, ttl time.Duration, at time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	keyPEM, csr, err := NewKeyAndCSR(nodeID)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err = ca.Issue(csr, nodeID, role, nil, ttl, at)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

// TestServerTLSRequiring: an agent's node API admits only schedulers of its cluster.
func TestServerTLSRequiring(t *testing.T) {
	ca := newTestCA(t, "prod")
	other := newTestCA(t, "other")
	agentCert, agentKey := issue(t, ca, "node-1", RoleAgent, time.Hour)
	schedCert, schedKey := issue(t, ca, "sched-1", RoleScheduler, time.Hour)
	peerAgentCert, peerAgentKey := issue(t, ca, "node-2", RoleAgent, time.Hour)
	foreignCert, foreignKey := issue(t, other, "sched-1", RoleScheduler, time.Hour)
	expiredCert, expiredKey := issueAt(t, ca, "sched-1", RoleScheduler, time.Minute, time.Now().Add(-time.Hour))

	server := ServerTLSRequiring(ca.Cert, serveCert(t, ca, agentCert, agentKey), RoleScheduler)
	for _, tc := range []struct {
		name             string
		certPEM, keyPEM  []byte
		ok               bool
		wantID, wantRole string
	}{
		{"scheduler", schedCert, schedKey, true, "sched-1", RoleScheduler},
		{"agent", peerAgentCert, peerAgentKey, false, "", ""},
		{"no certificate", nil, nil, false, "", ""},
		{"scheduler of another CA", foreignCert, foreignKey, false, "", ""},
		{"expired scheduler certificate", expiredCert, expiredKey, false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := NodeTLS(ca.Cert, certFunc(t, tc.certPEM, tc.keyPEM), "node-1", RoleAgent)
			res := handshake(t, server, client)
			if res.ok() != tc.ok {
				t.Fatalf("handshake ok = %v (server err %v, client err %v), want %v", res.ok(), res.serverErr, res.clientErr, tc.ok)
			}
			if !tc.ok {
				t.Logf("refused: server %v; client %v", res.serverErr, res.clientErr)
				if res.serverErr == nil {
					t.Fatal("the server did not refuse the handshake itself")
				}
				return
			}
			if id, role, ok := PeerIdentity(res.server); !ok || id != tc.wantID || role != tc.wantRole {
				t.Fatalf("server sees the client as %q %q %v, want %q %q", id, role, ok, tc.wantID, tc.wantRole)
			}
		})
	}
	// The same listener configuration asks for agents when told to.
	agents := ServerTLSRequiring(ca.Cert, serveCert(t, ca, schedCert, schedKey), RoleAgent)
	if res := handshake(t, agents, ClientTLSWith(ca.Cert, certFunc(t, peerAgentCert, peerAgentKey), "")); !res.ok() {
		t.Fatalf("agent refused by a listener requiring agents: server %v, client %v", res.serverErr, res.clientErr)
	}
}

// TestNodeTLS: a scheduler dialing a node by id accepts only that node's certificate.
func TestNodeTLS(t *testing.T) {
	ca := newTestCA(t, "prod")
	other := newTestCA(t, "other")
	schedCert, schedKey := issue(t, ca, "sched-1", RoleScheduler, time.Hour)
	agentCert, agentKey := issue(t, ca, "node-1", RoleAgent, time.Hour)
	otherNodeCert, otherNodeKey := issue(t, ca, "node-2", RoleAgent, time.Hour)
	schedNamedNode, schedNamedNodeKey := issue(t, ca, "node-1", RoleScheduler, time.Hour)
	foreignCert, foreignKey := issue(t, other, "node-1", RoleAgent, time.Hour)
	expiredCert, expiredKey := issueAt(t, ca, "node-1", RoleAgent, time.Minute, time.Now().Add(-time.Hour))

	leafOnly := func(certPEM, keyPEM []byte) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		pair, err := KeyPair(certPEM, keyPEM, nil)
		if err != nil {
			t.Fatal(err)
		}
		return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pair, nil }
	}
	for _, tc := range []struct {
		name    string
		getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
		id      string
		role    string
		ok      bool
	}{
		{"right node", serveCert(t, ca, agentCert, agentKey), "node-1", RoleAgent, true},
		{"right node, leaf only", leafOnly(agentCert, agentKey), "node-1", RoleAgent, true},
		{"scheduler by id and role", serveCert(t, ca, schedCert, schedKey), "sched-1", RoleScheduler, true},
		{"another node", serveCert(t, ca, otherNodeCert, otherNodeKey), "node-1", RoleAgent, false},
		{"same id, another role", serveCert(t, ca, schedNamedNode, schedNamedNodeKey), "node-1", RoleAgent, false},
		{"same id, another CA", serveCert(t, other, foreignCert, foreignKey), "node-1", RoleAgent, false},
		{"expired", serveCert(t, ca, expiredCert, expiredKey), "node-1", RoleAgent, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server := ServerTLSWith(ca.Cert, tc.getCert)
			client := NodeTLS(ca.Cert, certFunc(t, schedCert, schedKey), tc.id, tc.role)
			res := handshake(t, server, client)
			if res.ok() != tc.ok {
				t.Fatalf("handshake ok = %v (server err %v, client err %v), want %v", res.ok(), res.serverErr, res.clientErr, tc.ok)
			}
			if !tc.ok {
				t.Logf("refused: client %v", res.clientErr)
				return
			}
			// The client's certificate reached the server as a verified identity.
			if id, role, ok := PeerIdentity(res.server); !ok || id != "sched-1" || role != RoleScheduler {
				t.Fatalf("server sees the client as %q %q %v", id, role, ok)
			}
		})
	}
}
