package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"orch/pkg/client"
	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
)

// startOne starts a single bootstrapped scheduler and returns it with a test cluster around it.
func startOne(t *testing.T, mod func(*Config)) *testCluster {
	t.Helper()
	cfg := Config{
		DataDir: t.TempDir(), NodeID: "s1", GRPCAddr: freePort(t), HTTPAddr: "off", RaftAddr: freePort(t),
		Bootstrap: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.WaitLeader(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &testCluster{t: t, servers: []*Server{s}, cfgs: []Config{cfg}}
}

// node is an enrolled identity (an agent or a scheduler) for the tests.
type node struct {
	id   string
	pair *tls.Certificate
	key  []byte
	ca   *pki.CA
}

func enrollNode(t *testing.T, s *Server, token, nodeID string) (*node, error) {
	t.Helper()
	tok, err := pki.ParseJoinToken(token)
	if err != nil {
		t.Fatal(err)
	}
	key, csr, err := pki.NewKeyAndCSR("ignored")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := enroll(context.Background(), s.GRPCAddr(), tok, &orchv1.EnrollRequest{Token: token, Csr: csr, NodeId: nodeID})
	if err != nil {
		return nil, err
	}
	ca, err := pki.ParseCertificatePEM(resp.GetCaCertificate())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := pki.KeyPair(resp.GetCertificate(), key, ca)
	if err != nil {
		t.Fatal(err)
	}
	return &node{id: resp.GetNodeId(), pair: pair, key: key}, nil
}

// conn dials s presenting n's certificate.
func (n *node) conn(t *testing.T, s *Server) *grpc.ClientConn {
	t.Helper()
	ca, _ := pki.ParseCertificatePEM(s.CACertificate())
	cfg := pki.ClientTLSWith(ca, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return n.pair, nil }, "")
	c, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCredentials(t *testing.T) {
	tc := startOne(t, nil)
	s := tc.servers[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, op := tc.client(0)
	var tokens *orchv1.JoinTokens
	retry(t, func() (err error) { tokens, err = op.GetJoinTokens(ctx, &orchv1.GetJoinTokensRequest{}); return err })

	// Plain text is not spoken at all.
	plain, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := orchv1.NewOrchClient(plain).ListClusters(ctx, &orchv1.ListClustersRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("plain-text call: %v, want Unavailable (no handshake)", err)
	}

	// The agent API needs an agent certificate; an API token is not enough.
	_, opAnon := tc.anonymous(0)
	reg := &orchv1.RegisterHostRequest{Clusters: []string{"*"}, Cpu: 1024, Memory: 1024}
	anonAgent := orchv1.NewAgentServiceClient(grpcConnOf(t, tc, true))
	if _, err := anonAgent.Register(ctx, reg); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Register with a token but no certificate: %v, want PermissionDenied", err)
	}

	// Enrollment: a wrong secret, and a manager request with a worker token.
	bad := tokens.GetWorker()[:len(tokens.GetWorker())-4] + "aaaa"
	if _, err := enrollNode(t, s, bad, ""); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("enroll with a wrong secret: %v, want PermissionDenied", err)
	}
	agent, err := enrollNode(t, s, tokens.GetWorker(), "s9")
	if err != nil {
		t.Fatal(err)
	}
	if agent.id == "s9" || agent.pair.Leaf.Subject.OrganizationalUnit[0] != pki.RoleAgent {
		t.Fatalf("worker enrollment chose its own id or role: %s %v", agent.id, agent.pair.Leaf.Subject)
	}

	// The agent acts as its own host only.
	ac := orchv1.NewAgentServiceClient(agent.conn(t, s))
	if _, err := ac.Register(ctx, &orchv1.RegisterHostRequest{HostId: "someone-else", Clusters: []string{"*"}, Cpu: 1024, Memory: 1024}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Register as another host: %v, want PermissionDenied", err)
	}
	r, err := ac.Register(ctx, reg)
	if err != nil || r.GetHost().GetId() != agent.id {
		t.Fatalf("Register: %v, host %q, want %q", err, r.GetHost().GetId(), agent.id)
	}
	sess, err := ac.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sess.Send(&orchv1.AgentMessage{Msg: &orchv1.AgentMessage_Hello{Hello: &orchv1.SessionHello{HostId: "someone-else"}}})
	if _, err := sess.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("session as another host: %v, want PermissionDenied", err)
	}
	// ... and it cannot use what is meant for schedulers or clients.
	aop := orchv1.NewOperatorClient(agent.conn(t, s))
	if _, err := aop.ServerInfo(ctx, &orchv1.ServerInfoRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("ServerInfo from an agent: %v, want PermissionDenied", err)
	}
	if _, err := orchv1.NewOrchClient(agent.conn(t, s)).ListClusters(ctx, &orchv1.ListClustersRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("client API from an agent certificate: %v, want Unauthenticated", err)
	}

	// Renewal keeps the identity and the key.
	csr, err := pki.CSRFromKey(agent.id, agent.key)
	if err != nil {
		t.Fatal(err)
	}
	rr, err := aop.RenewCertificate(ctx, &orchv1.RenewCertificateRequest{Csr: csr})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := pki.ParseCertificatePEM(rr.GetCertificate())
	if rr.GetNodeId() != agent.id || leaf.Subject.CommonName != agent.id || leaf.SerialNumber.Cmp(agent.pair.Leaf.SerialNumber) == 0 {
		t.Fatalf("renewed certificate: id %s cn %s", rr.GetNodeId(), leaf.Subject.CommonName)
	}
	if _, err := op.RenewCertificate(ctx, &orchv1.RenewCertificateRequest{Csr: csr}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("renewal without a certificate: %v, want Unauthenticated", err)
	}

	// Rotation: the old worker token enrolls nothing, the new one does; the manager token is kept.
	rot, err := op.RotateJoinToken(ctx, &orchv1.RotateJoinTokenRequest{Kind: "worker"})
	if err != nil {
		t.Fatal(err)
	}
	if rot.GetWorker() == tokens.GetWorker() || rot.GetManager() != tokens.GetManager() || rot.GetCaDigest() != tokens.GetCaDigest() {
		t.Fatalf("rotate worker: %v (was %v)", rot, tokens)
	}
	if _, err := enrollNode(t, s, tokens.GetWorker(), ""); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("enroll with a rotated token: %v, want PermissionDenied", err)
	}
	if _, err := enrollNode(t, s, rot.GetWorker(), ""); err != nil {
		t.Fatalf("enroll with the new token: %v", err)
	}
	if _, err := op.RotateJoinToken(ctx, &orchv1.RotateJoinTokenRequest{Kind: "admin"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("rotate kind admin: %v, want InvalidArgument", err)
	}
	if _, err := opAnon.GetJoinTokens(ctx, &orchv1.GetJoinTokensRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("join tokens without an API token: %v, want Unauthenticated", err)
	}
}

// grpcConnOf is a TLS connection to server 0 carrying the management token (withToken) or not.
func grpcConnOf(t *testing.T, tc *testCluster, withToken bool) *grpc.ClientConn {
	t.Helper()
	ca, _ := pki.ParseCertificatePEM(tc.servers[0].CACertificate())
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLSWith(ca, nil, "")))}
	if withToken {
		opts = append(opts, grpc.WithPerRPCCredentials(client.Bearer(tc.token)))
	}
	c, err := grpc.NewClient(tc.servers[0].GRPCAddr(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestJoinWithManagerToken: a new server enrolls with the manager token and joins as a voter;
// without a token it is refused before it starts.
func TestJoinWithManagerToken(t *testing.T) {
	tc := startOne(t, nil)
	ctx := context.Background()
	_, op := tc.client(0)
	var tokens *orchv1.JoinTokens
	retry(t, func() (err error) { tokens, err = op.GetJoinTokens(ctx, &orchv1.GetJoinTokensRequest{}); return err })

	cfg := Config{
		DataDir: t.TempDir(), NodeID: "s2", GRPCAddr: freePort(t), HTTPAddr: "off", RaftAddr: freePort(t),
		Join: []string{tc.servers[0].GRPCAddr()}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if _, err := New(cfg); err == nil {
		t.Fatal("a server joined without a join token")
	}
	cfg.JoinToken = tokens.GetWorker()
	if _, err := New(cfg); err == nil {
		t.Fatal("a server joined with a worker token")
	}
	cfg.DataDir, cfg.JoinToken = t.TempDir(), tokens.GetManager()
	s2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if !bytes.Equal(s2.CACertificate(), tc.servers[0].CACertificate()) {
		t.Fatal("the joined server has another CA")
	}
	retry(t, func() error {
		peers, err := op.RaftListPeers(ctx, &orchv1.RaftListPeersRequest{})
		if err != nil {
			return err
		}
		for _, p := range peers.GetServers() {
			if p.GetId() == "s2" && p.GetVoter() && p.GetGrpcAddress() != "" {
				return nil
			}
		}
		return status.Errorf(codes.NotFound, "s2 not a voter yet: %v", peers.GetServers())
	})
	// The joined server answers with the cluster's state (and tokens).
	tc2 := &testCluster{t: t, servers: []*Server{s2}, token: tc.token}
	_, op2 := tc2.client(0)
	retry(t, func() error {
		got, err := op2.GetJoinTokens(ctx, &orchv1.GetJoinTokensRequest{})
		if err == nil && got.GetWorker() != tokens.GetWorker() {
			err = status.Error(codes.Internal, "different tokens")
		}
		return err
	})
}

// TestRestoreOntoBlankServer: a snapshot carries the CA; a blank server started from it has
// the old state, the old CA (so old certificates and tokens work) and a certificate of it.
func TestRestoreOntoBlankServer(t *testing.T) {
	tc := startOne(t, nil)
	ctx := context.Background()
	api, op := tc.client(0)
	retry(t, func() error {
		_, err := api.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: "kept"})
		return err
	})
	var snap bytes.Buffer
	stream, err := op.SnapshotSave(ctx, &orchv1.SnapshotSaveRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		snap.Write(c.GetData())
	}

	// A foreign snapshot is refused by a running cluster.
	other := startOne(t, nil)
	_, oop := other.client(0)
	rs, err := oop.SnapshotRestore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs.Send(&orchv1.SnapshotChunk{Data: snap.Bytes()})
	if _, err := rs.CloseAndRecv(); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("restore of another cluster's snapshot: %v, want FailedPrecondition", err)
	}

	// A non-empty data dir is refused.
	if _, err := New(Config{DataDir: tc.cfgs[0].DataDir, Restore: snap.Bytes(), GRPCAddr: freePort(t), RaftAddr: freePort(t), HTTPAddr: "off"}); err == nil {
		t.Fatal("--restore accepted a data dir in use")
	}
	tc.servers[0].Close()
	blank := startOne(t, func(c *Config) {
		c.DataDir = filepath.Join(t.TempDir(), "new")
		c.NodeID = "s-new"
		c.Restore = snap.Bytes()
	})
	if !bytes.Equal(blank.servers[0].CACertificate(), tc.servers[0].CACertificate()) {
		t.Fatal("the restored server has a new CA")
	}
	blank.token = tc.token // the old management token is in the restored state
	bapi, _ := blank.client(0)
	retry(t, func() error {
		c, err := bapi.DescribeClusters(ctx, &orchv1.DescribeClustersRequest{Clusters: []string{"kept"}})
		if err == nil && len(c.GetClusters()) != 1 {
			err = status.Error(codes.NotFound, "cluster kept missing")
		}
		return err
	})
}

// TestCAFilesOnlyAtFirstStart: the CA key handed to a new server is kept only until the
// replicated state has the CA; a restart with the same flags after the key file was deleted
// (as the docs advise) starts from the server's own certificate.
func TestCAFilesOnlyAtFirstStart(t *testing.T) {
	certFile, keyFile, ca := writeCA(t)
	tc := startOne(t, func(c *Config) { c.CACertFile, c.CAKeyFile = certFile, keyFile })
	s := tc.servers[0]
	if _, _, err := s.JoinTokens(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.CACertificate(), ca.CertPEM) {
		t.Fatal("the server does not use the CA it was given")
	}
	retry(t, func() error {
		if fileExists(s.bootCAPath()) {
			return status.Error(codes.FailedPrecondition, "bootstrap-ca.pem still there")
		}
		return nil
	})
	s.Close()
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	s2, err := New(tc.cfgs[0])
	if err != nil {
		t.Fatalf("restart without the CA key file: %v", err)
	}
	defer s2.Close()
	if err := s2.WaitLeader(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.signingCA(); err != nil {
		t.Fatalf("after the restart the server cannot sign: %v", err)
	}
}
