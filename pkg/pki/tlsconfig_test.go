package pki

import (
	"crypto/tls"
	"testing"
	"time"
)

func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t, "prod")
	other := newTestCA(t, "other")
	schedCert, schedKey := issue(t, ca, "sched-1", RoleScheduler, time.Hour, "127.0.0.1")
	agentCert, agentKey := issue(t, ca, "node-1", RoleAgent, time.Hour)
	peerCert, peerKey := issue(t, ca, "sched-2", RoleScheduler, time.Hour)
	foreignCert, foreignKey := issue(t, other, "node-1", RoleAgent, time.Hour)

	server := func(certPEM, keyPEM []byte) *tls.Config {
		cfg, err := ServerTLS(ca.Cert, certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	client := func(root *CA, certPEM, keyPEM []byte, name string) *tls.Config {
		cfg, err := ClientTLS(root.Cert, certPEM, keyPEM, name)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for _, tc := range []struct {
		name     string
		server   *tls.Config
		client   *tls.Config
		ok       bool
		wantID   string // server's view of the client; "" = no identity
		wantRole string
	}{
		{"scheduler peer", server(schedCert, schedKey), client(ca, peerCert, peerKey, ""), true, "sched-2", RoleScheduler},
		{"agent", server(schedCert, schedKey), client(ca, agentCert, agentKey, ""), true, "node-1", RoleAgent},
		{"by IP SAN", server(schedCert, schedKey), client(ca, agentCert, agentKey, "127.0.0.1"), true, "node-1", RoleAgent},
		{"token client without certificate", server(schedCert, schedKey), ClientTLSWith(ca.Cert, nil, ""), true, "", ""},
		// The client sees the server's acceptable CAs and withholds a certificate that does
		// not fit: it connects anonymously.
		{"client certificate of another cluster, withheld", server(schedCert, schedKey), client(ca, foreignCert, foreignKey, ""), true, "", ""},
		{"client certificate of another cluster, forced", server(schedCert, schedKey), ClientTLSWith(ca.Cert, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return KeyPair(foreignCert, foreignKey, nil)
		}, ""), false, "", ""},
		{"server of another cluster", server(schedCert, schedKey), client(other, agentCert, agentKey, ""), false, "", ""},
		{"wrong server name", server(schedCert, schedKey), client(ca, agentCert, agentKey, "db.example.com"), false, "", ""},
		{"agent certificate cannot serve", server(agentCert, agentKey), client(ca, peerCert, peerKey, ""), false, "", ""},
		{"TLS 1.2 client", server(schedCert, schedKey), func() *tls.Config {
			c := client(ca, agentCert, agentKey, "")
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return c
		}(), false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := handshake(t, tc.server, tc.client)
			if res.ok() != tc.ok {
				t.Fatalf("handshake ok = %v (server err %v, client err %v), want %v", res.ok(), res.serverErr, res.clientErr, tc.ok)
			}
			if !tc.ok {
				return
			}
			id, role, ok := PeerIdentity(res.server)
			if ok != (tc.wantID != "") || id != tc.wantID || role != tc.wantRole {
				t.Fatalf("server sees client as %q %q %v, want %q %q", id, role, ok, tc.wantID, tc.wantRole)
			}
			id, role, ok = PeerIdentity(res.client)
			if !ok || id != "sched-1" || role != RoleScheduler {
				t.Fatalf("client sees server as %q %q %v", id, role, ok)
			}
			if n := len(res.client.PeerCertificates); n != 2 {
				t.Fatalf("server presented %d certificates, want leaf and CA", n)
			}
		})
	}
}

func TestPinnedTLS(t *testing.T) {
	ca := newTestCA(t, "prod")
	other := newTestCA(t, "other")
	schedCert, schedKey := issue(t, ca, "sched-1", RoleScheduler, time.Hour)
	otherCert, otherKey := issue(t, other, "sched-1", RoleScheduler, time.Hour)
	agentCert, agentKey := issue(t, ca, "node-1", RoleAgent, time.Hour)
	server := func(c *CA, certPEM, keyPEM []byte) *tls.Config {
		cfg, err := ServerTLS(c.Cert, certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	leafOnly := server(ca, schedCert, schedKey)
	leafOnly.Certificates[0].Certificate = leafOnly.Certificates[0].Certificate[:1]
	// A server of another cluster that presents our CA certificate at the end of its chain.
	spoof := server(other, otherCert, otherKey)
	spoof.Certificates[0].Certificate = append(spoof.Certificates[0].Certificate[:1], ca.Cert.Raw)

	for _, tc := range []struct {
		name   string
		server *tls.Config
		digest string
		ok     bool
	}{
		{"right CA", server(ca, schedCert, schedKey), CADigest(ca.Cert), true},
		{"token of another cluster", server(ca, schedCert, schedKey), CADigest(other.Cert), false},
		{"server of another cluster", server(other, otherCert, otherKey), CADigest(ca.Cert), false},
		{"spoofed chain", spoof, CADigest(ca.Cert), false},
		{"leaf without CA", leafOnly, CADigest(ca.Cert), false},
		{"agent certificate", server(ca, agentCert, agentKey), CADigest(ca.Cert), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := handshake(t, tc.server, PinnedTLS(tc.digest))
			if res.ok() != tc.ok {
				t.Fatalf("handshake ok = %v (server err %v, client err %v), want %v", res.ok(), res.serverErr, res.clientErr, tc.ok)
			}
			if tc.ok {
				if _, _, ok := PeerIdentity(res.server); ok {
					t.Fatal("a joiner without a certificate has an identity")
				}
			}
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	ca := newTestCA(t, "prod")
	certPEM, keyPEM := issue(t, ca, "s", RoleScheduler, time.Hour)
	otherKey, _, err := NewKeyAndCSR("x")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		fn   func() error
	}{
		{"server without CA", func() error { _, err := ServerTLS(nil, certPEM, keyPEM); return err }},
		{"server key mismatch", func() error { _, err := ServerTLS(ca.Cert, certPEM, otherKey); return err }},
		{"client without CA", func() error { _, err := ClientTLS(nil, certPEM, keyPEM, ""); return err }},
		{"client garbage", func() error { _, err := ClientTLS(ca.Cert, []byte("x"), keyPEM, ""); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fn() == nil {
				t.Fatal("succeeded")
			}
		})
	}
}
