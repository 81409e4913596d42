package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"orch/agent/session"
	"orch/agent/state"
	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
)

// fakeScheduler is an in-process scheduler that implements only enrollment, renewal and the
// agent session's Register/hello, over the real TLS configuration of a scheduler, with a
// real CA.
type fakeScheduler struct {
	orchv1.UnimplementedOperatorServer
	orchv1.UnimplementedAgentServiceServer
	ca         *pki.CA
	token      string // worker join token
	tokenHash  []byte
	ttl        time.Duration
	addr       string
	schedCert  *tls.Certificate // the scheduler's own certificate (leaf + CA)
	sessionIDs chan string      // host ids of session hellos

	mu        sync.Mutex
	enrolls   int
	renewedBy []string // peer node ids of RenewCertificate calls
	registers []string // peer node ids of Register calls
}

func newFakeScheduler(t *testing.T, ttl time.Duration) *fakeScheduler {
	t.Helper()
	ca, err := pki.NewCA("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, hash, err := pki.NewJoinToken(pki.KindWorker, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeScheduler{ca: ca, token: tok, tokenHash: hash, ttl: ttl, sessionIDs: make(chan string, 10)}
	f.schedCert = issuePair(t, ca, "sched-1", pki.RoleScheduler)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLSWith(ca.Cert, func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return f.schedCert, nil
	}))))
	orchv1.RegisterOperatorServer(srv, f)
	orchv1.RegisterAgentServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return f
}

// issuePair issues a certificate of ca for id and role, with the CA appended.
func issuePair(t *testing.T, ca *pki.CA, id, role string) *tls.Certificate {
	t.Helper()
	keyPEM, csr, err := pki.NewKeyAndCSR(id)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Issue(csr, id, role, []string{"127.0.0.1"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := pki.KeyPair(certPEM, keyPEM, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func peerNode(ctx context.Context) (id, role string, ok bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", "", false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", "", false
	}
	return pki.PeerIdentity(ti.State)
}

func (f *fakeScheduler) Enroll(ctx context.Context, req *orchv1.EnrollRequest) (*orchv1.EnrollResponse, error) {
	tok, err := pki.ParseJoinToken(req.GetToken())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if tok.Kind != pki.KindWorker || !tok.Matches(f.tokenHash) {
		return nil, status.Error(codes.PermissionDenied, "join token is not valid for this cluster")
	}
	f.mu.Lock()
	f.enrolls++
	id := fmt.Sprintf("host-%d", f.enrolls)
	f.mu.Unlock()
	cert, err := f.ca.Issue(req.GetCsr(), id, pki.RoleAgent, nil, f.ttl, time.Now())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &orchv1.EnrollResponse{NodeId: id, Role: pki.RoleAgent, Certificate: cert, CaCertificate: f.ca.CertPEM}, nil
}

func (f *fakeScheduler) RenewCertificate(ctx context.Context, req *orchv1.RenewCertificateRequest) (*orchv1.EnrollResponse, error) {
	id, role, ok := peerNode(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no node certificate")
	}
	cert, err := f.ca.Issue(req.GetCsr(), id, role, nil, f.ttl, time.Now())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	f.mu.Lock()
	f.renewedBy = append(f.renewedBy, id)
	f.mu.Unlock()
	return &orchv1.EnrollResponse{NodeId: id, Role: role, Certificate: cert, CaCertificate: f.ca.CertPEM}, nil
}

func (f *fakeScheduler) Register(ctx context.Context, req *orchv1.RegisterHostRequest) (*orchv1.RegisterHostResponse, error) {
	id, role, ok := peerNode(ctx)
	if !ok || role != pki.RoleAgent {
		return nil, status.Error(codes.Unauthenticated, "agent certificate required")
	}
	if req.GetHostId() != "" && req.GetHostId() != id {
		return nil, status.Errorf(codes.PermissionDenied, "host id %s is not the certificate's %s", req.GetHostId(), id)
	}
	f.mu.Lock()
	f.registers = append(f.registers, id)
	f.mu.Unlock()
	return &orchv1.RegisterHostResponse{Host: &orchv1.Host{Id: id}}, nil
}

func (f *fakeScheduler) Session(stream orchv1.AgentService_SessionServer) error {
	m, err := stream.Recv()
	if err != nil {
		return err
	}
	id, _, _ := peerNode(stream.Context())
	if m.GetHello().GetHostId() != id {
		return status.Errorf(codes.PermissionDenied, "hello host id %s is not the certificate's %s", m.GetHello().GetHostId(), id)
	}
	f.sessionIDs <- id
	for {
		if _, err := stream.Recv(); err != nil {
			return nil
		}
	}
}

func (f *fakeScheduler) counts() (enrolls int, renewedBy, registers []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.enrolls, append([]string(nil), f.renewedBy...), append([]string(nil), f.registers...)
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// start does what New and Run do for the identity: open (checkpoint, identity or token
// check), then enroll if needed. The agent is closed at the end of the test.
func start(t *testing.T, dir string, endpoints []string, token string) (*Agent, error) {
	t.Helper()
	a, err := open(Config{DataDir: dir, Endpoints: endpoints, JoinToken: token, Hostname: "box", Logger: testLogger(t)})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { a.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.ensureIdentity(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

func savedHostID(t *testing.T, a *Agent) string {
	t.Helper()
	id, err := a.db.HostID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestEnrollThenRestart(t *testing.T) {
	f := newFakeScheduler(t, time.Hour)
	dir := t.TempDir()

	// A checkpoint from before TLS: its host id is replaced by the enrolled one.
	db, err := state.Open(filepath.Join(dir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetHostID("pre-tls-id"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// The first endpoint is down: enrollment goes on with the next.
	down := freeAddr(t)
	a, err := start(t, dir, []string{down, f.addr}, "  "+f.token+"\n")
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	if got := savedHostID(t, a); got != "host-1" {
		t.Fatalf("saved host id = %q, want host-1 (the enrolled node id)", got)
	}
	if got := a.Registration().GetHostId(); got != "host-1" {
		t.Fatalf("registers as %q, want host-1", got)
	}
	files := nodeFiles(dir)
	if !files.Exists() || !Enrolled(dir) {
		t.Fatal("no identity files after enrollment")
	}
	for name, mode := range map[string]os.FileMode{"node-key.pem": 0o600, "node.pem": 0o644, "ca.pem": 0o644} {
		st, err := os.Stat(filepath.Join(files.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, st.Mode().Perm(), mode)
		}
	}
	caPEM, _, _, err := files.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caPEM, f.ca.CertPEM) {
		t.Fatal("saved CA is not the cluster's")
	}
	a.Close()

	// Second start: no token needed, nothing enrolled again, same host id.
	b, err := start(t, dir, []string{f.addr}, "")
	if err != nil {
		t.Fatalf("second start: %v", err)
	}
	if b.identity() == nil || b.identity().nodeID != "host-1" || savedHostID(t, b) != "host-1" {
		t.Fatalf("second start: identity %v, host id %q", b.identity(), savedHostID(t, b))
	}
	if n, _, _ := f.counts(); n != 1 {
		t.Fatalf("%d enrollments, want 1", n)
	}
	// A join token given anyway (a systemd unit that keeps it) is ignored.
	b.Close()
	c, err := start(t, dir, []string{f.addr}, "not even a token")
	if err != nil {
		t.Fatalf("third start with a stale token: %v", err)
	}
	c.Close()

	// A checkpoint that disagrees with the certificate is an error, not a silent switch.
	db, err = state.Open(filepath.Join(dir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetHostID("someone-else"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := start(t, dir, []string{f.addr}, ""); err == nil || !strings.Contains(err.Error(), "someone-else") || !strings.Contains(err.Error(), "host-1") {
		t.Fatalf("mismatching host id: err = %v, want one naming both ids", err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestEnrollRefused(t *testing.T) {
	f := newFakeScheduler(t, time.Hour)
	other, err := pki.NewCA("other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherToken, _, err := pki.NewJoinToken(pki.KindWorker, other.Cert)
	if err != nil {
		t.Fatal(err)
	}
	// Right cluster, but not the current secret (a rotated token).
	staleToken, _, err := pki.NewJoinToken(pki.KindWorker, f.ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	managerToken, _, err := pki.NewJoinToken(pki.KindManager, f.ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		token string
		want  []string // substrings of the error
	}{
		{"no token", "", []string{"--join-token", "ORCH_JOIN_TOKEN", "first start"}},
		{"garbage", "hello", []string{"--join-token", "ORCH_JOIN_TOKEN", "invalid join token"}},
		{"manager token", managerToken, []string{"manager token", "worker"}},
		{"token of another cluster", otherToken, []string{"not of the cluster the join token belongs to", "digest"}},
		{"rotated token", staleToken, []string{"refused", "PermissionDenied"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			begin := time.Now()
			_, err := start(t, dir, []string{f.addr}, tc.token)
			if err == nil {
				t.Fatal("started")
			}
			t.Logf("error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if d := time.Since(begin); d > 5*time.Second {
				t.Errorf("refusal took %v: retried what cannot succeed", d)
			}
			if Enrolled(dir) {
				t.Error("identity files written")
			}
		})
	}
	if _, err := start(t, t.TempDir(), nil, f.token); err == nil {
		t.Error("enrolled without endpoints")
	}
}

func TestRenewalReplacesCertificate(t *testing.T) {
	// Certificates of 2s are renewed after about one second.
	f := newFakeScheduler(t, 2*time.Second)
	dir := t.TempDir()
	a, err := start(t, dir, []string{f.addr}, f.token)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(nodeFiles(dir).Dir, "node.pem")
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var after []byte
	for time.Now().Before(deadline) {
		if after, err = os.ReadFile(path); err == nil && !bytes.Equal(after, before) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if bytes.Equal(after, before) {
		t.Fatal("node.pem not replaced within 10s")
	}
	old, _ := pki.ParseCertificatePEM(before)
	cert, err := pki.ParseCertificatePEM(after)
	if err != nil {
		t.Fatal(err)
	}
	if id, role, _ := pki.CertIdentity(cert); id != "host-1" || role != pki.RoleAgent || cert.SerialNumber.Cmp(old.SerialNumber) == 0 || !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(old.PublicKey) {
		t.Fatalf("renewed certificate: %s %s serial %v (old %v); same key: want host-1 agent, new serial, same key", id, role, cert.SerialNumber, old.SerialNumber)
	}
	if _, renewedBy, _ := f.counts(); len(renewedBy) == 0 || renewedBy[0] != "host-1" {
		t.Fatalf("renewals by %v, want host-1 over mutual TLS", renewedBy)
	}
	// New connections present the renewed certificate.
	cur, err := a.identity().renewer.Current()
	if err != nil {
		t.Fatal(err)
	}
	if cur.Leaf.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatal("renewer still serves the old certificate")
	}
	// Close stops the renewer: node.pem stays as it is.
	a.Close()
	last, _ := os.ReadFile(path)
	time.Sleep(1500 * time.Millisecond)
	if now, _ := os.ReadFile(path); !bytes.Equal(now, last) {
		t.Fatal("node.pem changed after Close")
	}
}

func TestSessionUsesAgentCertificate(t *testing.T) {
	f := newFakeScheduler(t, time.Hour)
	a, err := start(t, t.TempDir(), []string{f.addr}, f.token)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- session.Run(ctx, a.sessionConfig()) }()
	select {
	case id := <-f.sessionIDs:
		if id != "host-1" {
			t.Fatalf("session opened by %q, want host-1", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no session within 10s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, _, regs := f.counts(); len(regs) == 0 || regs[0] != "host-1" {
		t.Fatalf("registered as %v, want host-1", regs)
	}
}

func TestNodeAPIOnlyForSchedulers(t *testing.T) {
	f := newFakeScheduler(t, time.Hour)
	a, err := start(t, t.TempDir(), []string{f.addr}, f.token)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := a.newNodeServer()
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	other, err := pki.NewCA("other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certOf := func(c *tls.Certificate) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c, nil }
	}
	for _, tc := range []struct {
		name   string
		client *tls.Config
		ok     bool
	}{
		{"scheduler", pki.NodeTLS(f.ca.Cert, certOf(f.schedCert), "host-1", pki.RoleAgent), true},
		{"another agent", pki.NodeTLS(f.ca.Cert, certOf(issuePair(t, f.ca, "host-2", pki.RoleAgent)), "host-1", pki.RoleAgent), false},
		{"no certificate", pki.NodeTLS(f.ca.Cert, nil, "host-1", pki.RoleAgent), false},
		{"scheduler of another cluster", pki.NodeTLS(f.ca.Cert, certOf(issuePair(t, other, "sched-1", pki.RoleScheduler)), "host-1", pki.RoleAgent), false},
		{"expecting another host", pki.NodeTLS(f.ca.Cert, certOf(f.schedCert), "host-9", pki.RoleAgent), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(tc.client)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			stream, err := orchv1.NewNodeServiceClient(conn).GetLogs(ctx, &orchv1.GetLogsRequest{Task: "t-unknown"})
			if err == nil {
				_, err = stream.Recv()
			}
			// Past the handshake the call reaches the service, which knows no such task.
			if got := status.Code(err) == codes.NotFound; got != tc.ok {
				t.Fatalf("GetLogs: %v; reached the service = %v, want %v", err, got, tc.ok)
			}
		})
	}
}
