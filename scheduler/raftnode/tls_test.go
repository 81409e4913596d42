package raftnode

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"orch/pkg/pki"
)

// tlsIdentity is one node's certificate material issued by a test CA.
type tlsIdentity struct {
	ca              *pki.CA
	certPEM, keyPEM []byte
}

func newTLSIdentity(t *testing.T, ca *pki.CA, nodeID, role string) tlsIdentity {
	t.Helper()
	keyPEM, csr, err := pki.NewKeyAndCSR(nodeID)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Issue(csr, nodeID, role, []string{"127.0.0.1"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tlsIdentity{ca: ca, certPEM: certPEM, keyPEM: keyPEM}
}

func (id tlsIdentity) server(t *testing.T) *tls.Config {
	t.Helper()
	cfg, err := pki.ServerTLS(id.ca.Cert, id.certPEM, id.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (id tlsIdentity) client(t *testing.T) *tls.Config {
	t.Helper()
	cfg, err := pki.ClientTLS(id.ca.Cert, id.certPEM, id.keyPEM, "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newTestCA(t *testing.T, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestLayer(t *testing.T, id tlsIdentity) *TLSStreamLayer {
	t.Helper()
	l, err := NewTLSStreamLayer("127.0.0.1:0", nil, id.server(t), id.client(t), WithTLSStreamLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.Close()
		l.Wait()
	})
	return l
}

// listFSM records applied entries.
type listFSM struct {
	mu      sync.Mutex
	entries []string
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, string(l.Data))
	return len(f.entries)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) { return emptySnapshot{}, nil }
func (f *listFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

func (f *listFSM) has(entry string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.entries {
		if e == entry {
			return true
		}
	}
	return false
}

type emptySnapshot struct{}

func (emptySnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (emptySnapshot) Release()                             {}

// TestTLSTransportReplicates runs two Raft voters (in-memory stores, as hashicorp/raft's own
// tests do) over the TLS transport: they elect a leader and replicate an entry.
func TestTLSTransportReplicates(t *testing.T) {
	ca := newTestCA(t, "prod")
	type server struct {
		id    string
		layer *TLSStreamLayer
		trans *raft.NetworkTransport
		fsm   *listFSM
		raft  *raft.Raft
	}
	servers := make([]*server, 2)
	var conf raft.Configuration
	for i := range servers {
		s := &server{id: fmt.Sprintf("s%d", i+1), fsm: &listFSM{}}
		s.layer = newTestLayer(t, newTLSIdentity(t, ca, s.id, pki.RoleScheduler))
		s.trans = raft.NewNetworkTransportWithLogger(s.layer, 3, 5*time.Second, hclog.NewNullLogger())
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.id), Address: s.trans.LocalAddr()})
		servers[i] = s
	}
	for _, s := range servers {
		rc := raft.DefaultConfig()
		rc.LocalID = raft.ServerID(s.id)
		rc.Logger = hclog.NewNullLogger()
		rc.HeartbeatTimeout = 100 * time.Millisecond
		rc.ElectionTimeout = 100 * time.Millisecond
		rc.LeaderLeaseTimeout = 100 * time.Millisecond
		rc.CommitTimeout = 5 * time.Millisecond
		store := raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(rc, store, store, snaps, s.trans, conf); err != nil {
			t.Fatalf("bootstrap %s: %v", s.id, err)
		}
		r, err := raft.NewRaft(rc, s.fsm, store, store, snaps, s.trans)
		if err != nil {
			t.Fatalf("raft %s: %v", s.id, err)
		}
		s.raft = r
		t.Cleanup(func() {
			if err := r.Shutdown().Error(); err != nil {
				t.Errorf("shutdown %s: %v", s.id, err)
			}
			s.trans.Close()
		})
	}

	var leader, follower *server
	deadline := time.Now().Add(10 * time.Second)
	for leader == nil {
		for i, s := range servers {
			if s.raft.State() == raft.Leader {
				leader, follower = s, servers[1-i]
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader elected over TLS within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := leader.raft.Apply([]byte("hello over mTLS"), 5*time.Second).Error(); err != nil {
		t.Fatalf("apply on leader %s: %v", leader.id, err)
	}
	for !follower.fsm.has("hello over mTLS") {
		if time.Now().After(deadline) {
			t.Fatalf("entry not replicated to follower %s", follower.id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTLSStreamLayerRefusesInbound connects peers that must not join Raft; none of them
// reaches Accept, and a scheduler that connects afterwards does.
func TestTLSStreamLayerRefusesInbound(t *testing.T) {
	ca := newTestCA(t, "prod")
	other := newTestCA(t, "other")
	layer := newTestLayer(t, newTLSIdentity(t, ca, "s1", pki.RoleScheduler))
	agent := newTLSIdentity(t, ca, "node-1", pki.RoleAgent)
	peer := newTLSIdentity(t, ca, "s2", pki.RoleScheduler)
	foreign := newTLSIdentity(t, other, "s3", pki.RoleScheduler)

	withALPN := func(c *tls.Config) *tls.Config { c.NextProtos = []string{raftALPN}; return c }
	forced := func(id tlsIdentity) *tls.Config { // presents id's certificate whatever the server asks
		return withALPN(pki.ClientTLSWith(ca.Cert, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return pki.KeyPair(id.certPEM, id.keyPEM, nil)
		}, ""))
	}

	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := layer.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()

	for _, tc := range []struct {
		name   string
		client *tls.Config
	}{
		{"agent certificate", withALPN(agent.client(t))},
		{"no certificate", withALPN(pki.ClientTLSWith(ca.Cert, nil, ""))},
		{"scheduler of another cluster", forced(foreign)},
		{"scheduler without the Raft protocol", peer.client(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", layer.Addr().String(), tc.client)
			if err == nil {
				// TLS 1.3: the client finishes before the server has checked its certificate;
				// the refusal arrives on the first read.
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Read(make([]byte, 1))
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("connection neither refused nor closed within 5s")
				}
			}
			if err == nil {
				t.Fatal("connection stayed open")
			}
			t.Logf("refused: %v", err)
		})
	}
	select {
	case c := <-accepted:
		t.Fatalf("refused peer reached Accept: %v", c.RemoteAddr())
	default:
	}

	dialer := newTestLayer(t, peer)
	c, err := dialer.Dial(raft.ServerAddress(layer.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatalf("scheduler dial: %v", err)
	}
	defer c.Close()
	select {
	case got := <-accepted:
		defer got.Close()
		id, role, ok := pki.PeerIdentity(got.(*tls.Conn).ConnectionState())
		if !ok || id != "s2" || role != pki.RoleScheduler {
			t.Fatalf("accepted peer %q %q %v, want s2 scheduler", id, role, ok)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("scheduler peer not accepted")
	}
}

// TestTLSStreamLayerDialRefuses dials servers that are not Raft peers of this cluster.
func TestTLSStreamLayerDialRefuses(t *testing.T) {
	ca := newTestCA(t, "prod")
	other := newTestCA(t, "other")
	dialer := newTestLayer(t, newTLSIdentity(t, ca, "s1", pki.RoleScheduler))

	foreign := newTestLayer(t, newTLSIdentity(t, other, "s9", pki.RoleScheduler))
	// A plain TLS server of the right cluster that does not speak the Raft protocol (a gRPC
	// port, say).
	plain := newTLSIdentity(t, ca, "s2", pki.RoleScheduler).server(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", plain)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.(*tls.Conn).Handshake()
				c.Read(make([]byte, 1))
			}()
		}
	}()

	for _, tc := range []struct {
		name string
		addr string
	}{
		{"scheduler of another cluster", foreign.Addr().String()},
		{"not a Raft port", ln.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialer.Dial(raft.ServerAddress(tc.addr), 5*time.Second)
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
		})
	}
}

func TestNewTLSStreamLayerErrors(t *testing.T) {
	ca := newTestCA(t, "prod")
	id := newTLSIdentity(t, ca, "s1", pki.RoleScheduler)
	noPool := id.server(t)
	noPool.ClientCAs = nil
	for _, tc := range []struct {
		name           string
		bind           string
		advertise      net.Addr
		server, client *tls.Config
	}{
		{"no server config", "127.0.0.1:0", nil, nil, id.client(t)},
		{"no client CA pool", "127.0.0.1:0", nil, noPool, id.client(t)},
		{"unspecified address", "0.0.0.0:0", nil, id.server(t), id.client(t)},
		{"bad bind address", "127.0.0.1:-1", nil, id.server(t), id.client(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := NewTLSStreamLayer(tc.bind, tc.advertise, tc.server, tc.client)
			if err == nil {
				l.Close()
				t.Fatal("succeeded")
			}
		})
	}
	l, err := NewTLSStreamLayer("0.0.0.0:0", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7000}, id.server(t), id.client(t))
	if err != nil {
		t.Fatalf("with an advertise address: %v", err)
	}
	defer l.Close()
	if l.Addr().String() != "127.0.0.1:7000" {
		t.Fatalf("Addr = %s, want the advertised address", l.Addr())
	}
}
