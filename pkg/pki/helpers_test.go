package pki

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// t0 is a fixed issuance time for tests that do not handshake (handshakes verify against the
// real clock, so those tests issue at time.Now()).
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestCA(t *testing.T, name string) *CA {
	t.Helper()
	ca, err := NewCA(name, time.Now())
	if err != nil {
		t.Fatalf("NewCA(%s): %v", name, err)
	}
	return ca
}

// issue returns a certificate and key PEM for nodeID/role, valid from now for ttl.
func issue(t *testing.T, ca *CA, nodeID, role string, ttl time.Duration, sans ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	keyPEM, csr, err := NewKeyAndCSR(nodeID)
	if err != nil {
		t.Fatalf("NewKeyAndCSR(%s): %v", nodeID, err)
	}
	certPEM, err = ca.Issue(csr, nodeID, role, sans, ttl, time.Now())
	if err != nil {
		t.Fatalf("Issue(%s, %s): %v", nodeID, role, err)
	}
	return certPEM, keyPEM
}

type handshakeResult struct {
	server, client       tls.ConnectionState
	serverErr, clientErr error
}

func (r handshakeResult) ok() bool { return r.serverErr == nil && r.clientErr == nil }

// handshake runs one TLS handshake over loopback TCP. The server writes one byte after a
// successful handshake and the client reads it, so that a rejection the server decides after
// the client finished (TLS 1.3 client certificates) shows up as a client error too.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	type sres struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan sres, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- sres{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Server(c, serverCfg)
		if err := tc.Handshake(); err != nil {
			done <- sres{err: err}
			return
		}
		_, err = tc.Write([]byte{'k'})
		done <- sres{state: tc.ConnectionState(), err: err}
	}()
	var res handshakeResult
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, clientCfg)
	if res.clientErr = tc.Handshake(); res.clientErr == nil {
		res.client = tc.ConnectionState()
		_, res.clientErr = tc.Read(make([]byte, 1))
	}
	s := <-done
	res.server, res.serverErr = s.state, s.err
	return res
}
