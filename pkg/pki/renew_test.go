package pki

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// TestRenewer issues 2-second certificates to a scheduler (server side) and an agent (client
// side), runs a Renewer for each and checks that a later handshake presents new serials on
// both sides, including when the first renewals fail.
func TestRenewer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int32 // renewals that fail before one succeeds
	}{
		{"renews", 0},
		{"retries failures", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newTestCA(t, "prod")
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			newRenewer := func(nodeID, role string) (*Renewer, *atomic.Int32) {
				var calls atomic.Int32
				load := func() (*tls.Certificate, error) {
					certPEM, keyPEM := issue(t, ca, nodeID, role, 2*time.Second)
					return KeyPair(certPEM, keyPEM, ca.Cert)
				}
				renew := func(ctx context.Context) (*tls.Certificate, error) {
					if calls.Add(1) <= tc.failures {
						return nil, errors.New("scheduler unreachable")
					}
					keyPEM, csr, err := NewKeyAndCSR(nodeID)
					if err != nil {
						return nil, err
					}
					certPEM, err := ca.Issue(csr, nodeID, role, nil, 2*time.Second, time.Now())
					if err != nil {
						return nil, err
					}
					return KeyPair(certPEM, keyPEM, ca.Cert)
				}
				return NewRenewer(load, renew, time.Now, WithRetry(50*time.Millisecond, 200*time.Millisecond), WithRenewLogger(quiet)), &calls
			}
			serverR, serverCalls := newRenewer("sched-1", RoleScheduler)
			clientR, _ := newRenewer("node-1", RoleAgent)
			serverCfg := ServerTLSWith(ca.Cert, serverR.GetCertificate)
			clientCfg := ClientTLSWith(ca.Cert, clientR.GetClientCertificate, "")

			first := handshake(t, serverCfg, clientCfg)
			if !first.ok() {
				t.Fatalf("first handshake: server %v, client %v", first.serverErr, first.clientErr)
			}
			serverSerial := first.client.PeerCertificates[0].SerialNumber
			clientSerial := first.server.PeerCertificates[0].SerialNumber

			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 2)
			go func() { done <- serverR.Run(ctx) }()
			go func() { done <- clientR.Run(ctx) }()
			t.Cleanup(func() {
				cancel()
				for range 2 {
					if err := <-done; !errors.Is(err, context.Canceled) {
						t.Errorf("Run returned %v, want context.Canceled", err)
					}
				}
			})

			deadline := time.Now().Add(5 * time.Second)
			for {
				res := handshake(t, serverCfg, clientCfg)
				if !res.ok() {
					t.Fatalf("handshake during renewal: server %v, client %v", res.serverErr, res.clientErr)
				}
				newServer := res.client.PeerCertificates[0].SerialNumber.Cmp(serverSerial) != 0
				newClient := res.server.PeerCertificates[0].SerialNumber.Cmp(clientSerial) != 0
				if newServer && newClient {
					id, role, ok := PeerIdentity(res.server)
					if !ok || id != "node-1" || role != RoleAgent {
						t.Fatalf("renewed client identity %q %q %v", id, role, ok)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no renewal within 5s (server renewed %v, client renewed %v, server renew calls %d)", newServer, newClient, serverCalls.Load())
				}
				time.Sleep(100 * time.Millisecond)
			}
			if got := serverCalls.Load(); got < tc.failures+1 {
				t.Fatalf("renew called %d times, want at least %d", got, tc.failures+1)
			}
		})
	}
}

func TestRenewAt(t *testing.T) {
	ca := newTestCA(t, "prod")
	certPEM, _ := issue(t, ca, "n", RoleAgent, 90*24*time.Hour)
	leaf, err := ParseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	for range 100 {
		at := renewAt(leaf).Sub(leaf.NotBefore)
		if at < life/2 || at > life*6/10 {
			t.Fatalf("renewal at %s of a %s lifetime, want 50-60%%", at, life)
		}
	}
}

func TestRenewerLoadError(t *testing.T) {
	r := NewRenewer(func() (*tls.Certificate, error) { return nil, errors.New("no file") }, nil, nil)
	if _, err := r.GetCertificate(nil); err == nil {
		t.Fatal("GetCertificate succeeded without a certificate")
	}
	if err := r.Set(&tls.Certificate{}); err == nil {
		t.Fatal("Set accepted an empty certificate")
	}
}
