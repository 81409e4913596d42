package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"orch/pkg/client"
	"orch/pkg/pki"

	orchv1 "orch/proto/orch/v1"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type testCluster struct {
	t       *testing.T
	servers []*Server
	cfgs    []Config
	token   string // management API token, after bootstrapToken
}

// writeCA creates a cluster CA and writes it as `orchctl operator ca create` does.
func writeCA(t *testing.T) (certFile, keyFile string, ca *pki.CA) {
	t.Helper()
	ca, err := pki.NewCA("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if certFile, keyFile, err = ca.WriteFiles(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, ca
}

// newCluster starts n schedulers in this process that form one cluster with --bootstrap-expect.
func newCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	tc := &testCluster{t: t}
	var join []string
	caCert, caKey, _ := writeCA(t)
	for i := 0; i < n; i++ {
		cfg := Config{
			DataDir: filepath.Join(t.TempDir(), fmt.Sprint("s", i)), NodeID: fmt.Sprint("s", i),
			GRPCAddr: freePort(t), HTTPAddr: "off", RaftAddr: freePort(t), BootstrapExpect: n,
			CACertFile: caCert, CAKeyFile: caKey,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		join = append(join, cfg.GRPCAddr)
		tc.cfgs = append(tc.cfgs, cfg)
	}
	for i := range tc.cfgs {
		tc.cfgs[i].Join = join
		s, err := New(tc.cfgs[i])
		if err != nil {
			t.Fatal(err)
		}
		tc.servers = append(tc.servers, s)
	}
	t.Cleanup(func() {
		for _, s := range tc.servers {
			if s != nil {
				s.Close()
			}
		}
	})
	return tc
}

// leader waits for a leader among the running servers whose address is published.
func (tc *testCluster) leader() int {
	tc.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for i, s := range tc.servers {
			if s != nil && s.raft.IsLeader() {
				if rec, _ := s.store.Read().Server(nil, s.cfg.NodeID); rec != nil {
					return i
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc.t.Fatal("no leader")
	return -1
}

// client connects to server i as orchctl does: TLS verified against the cluster CA, and the
// cluster's management token (bootstrapped on first use) on every call.
func (tc *testCluster) client(i int) (orchv1.OrchClient, orchv1.OperatorClient) {
	tc.t.Helper()
	if tc.token == "" {
		_, op := tc.anonymous(i)
		retry(tc.t, func() error {
			r, err := op.BootstrapToken(context.Background(), &orchv1.BootstrapTokenRequest{})
			tc.token = r.GetSecretId()
			return err
		})
	}
	return tc.dial(i, grpc.WithPerRPCCredentials(client.Bearer(tc.token)))
}

// anonymous connects to server i over TLS without a token.
func (tc *testCluster) anonymous(i int) (orchv1.OrchClient, orchv1.OperatorClient) {
	tc.t.Helper()
	return tc.dial(i)
}

func (tc *testCluster) dial(i int, opts ...grpc.DialOption) (orchv1.OrchClient, orchv1.OperatorClient) {
	tc.t.Helper()
	ca, err := pki.ParseCertificatePEM(tc.servers[i].CACertificate())
	if err != nil {
		tc.t.Fatal(err)
	}
	creds := credentials.NewTLS(pki.ClientTLSWith(ca, nil, ""))
	conn, err := grpc.NewClient(tc.servers[i].GRPCAddr(), append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, opts...)...)
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(func() { conn.Close() })
	return orchv1.NewOrchClient(conn), orchv1.NewOperatorClient(conn)
}

// retry calls fn until it succeeds: right after an election a write may find no leader yet.
func retry(t *testing.T, fn func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = fn(); err == nil {
			return
		}
	}
	t.Fatal(err)
}

func TestThreeServers(t *testing.T) {
	tc := newCluster(t, 3)
	ctx := context.Background()
	l := tc.leader()
	f := (l + 1) % 3
	api, op := tc.client(f)
	// The token was created through the follower a moment ago; whether or not the follower
	// has applied it yet, its first call is served (a follower lets the leader judge tokens
	// it does not know), and a token nobody knows is refused by the leader.
	if _, err := api.ListClusters(ctx, &orchv1.ListClustersRequest{}); err != nil {
		t.Fatalf("first call with a fresh token through a follower: %v", err)
	}
	bad := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer orch_unknown")
	_, anonOp := tc.anonymous(f)
	if _, err := anonOp.RaftListPeers(bad, &orchv1.RaftListPeersRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("an unknown token through a follower: %v, want PermissionDenied", err)
	}

	// A write sent to a follower is forwarded to the leader.
	retry(t, func() error {
		_, err := api.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: "via-follower"})
		return err
	})
	// A consistent read through a follower sees every acknowledged write, at once.
	other, _ := tc.client((l + 2) % 3)
	cctx := metadata.AppendToOutgoingContext(ctx, client.ConsistentHeader, "true")
	for i := 0; i < 20; i++ {
		name := fmt.Sprint("c", i)
		retry(t, func() error {
			_, err := api.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: name})
			return err
		})
		list, err := other.ListClusters(cctx, &orchv1.ListClustersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, a := range list.GetClusterArns() {
			found = found || strings.HasSuffix(a, "/"+name)
		}
		if !found {
			t.Fatalf("consistent read through a follower misses acknowledged cluster %s", name)
		}
	}
	peers, err := op.RaftListPeers(ctx, &orchv1.RaftListPeersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, p := range peers.GetServers() {
		if p.GetLeader() {
			leaders++
		}
		if !p.GetVoter() || p.GetGrpcAddress() == "" {
			retry(t, func() error { // addresses are published shortly after formation
				peers, err = op.RaftListPeers(ctx, &orchv1.RaftListPeersRequest{})
				for _, p := range peers.GetServers() {
					if p.GetGrpcAddress() == "" {
						return fmt.Errorf("peer %s has no API address yet", p.GetId())
					}
				}
				return err
			})
		}
	}
	if len(peers.GetServers()) != 3 || leaders != 1 {
		t.Fatalf("peers: %v", peers.GetServers())
	}

	// Snapshot from a follower (forwarded), then more writes, then restore: the later writes
	// are gone and the earlier ones are there, on every server.
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
	if _, err := api.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: "after-snapshot"}); err != nil {
		t.Fatal(err)
	}
	rs, err := op.SnapshotRestore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&orchv1.SnapshotChunk{Data: snap.Bytes()}); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.CloseAndRecv(); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for i, s := range tc.servers {
		i, s := i, s
		retry(t, func() error {
			r := s.store.Read()
			a, _ := r.Cluster(nil, "via-follower")
			b, _ := r.Cluster(nil, "after-snapshot")
			if a == nil || b != nil {
				return fmt.Errorf("server %d: restored state not there yet", i)
			}
			return nil
		})
	}
	// A bad snapshot is refused and changes nothing.
	rs, _ = op.SnapshotRestore(ctx)
	rs.Send(&orchv1.SnapshotChunk{Data: []byte("not a snapshot")})
	if _, err := rs.CloseAndRecv(); err == nil {
		t.Fatal("a bad snapshot was accepted")
	}

	// The leader stops (gracefully: it hands leadership over); writes continue.
	tc.servers[l].Close()
	tc.servers[l] = nil
	nl := tc.leader()
	api2, op2 := tc.client(nl)
	retry(t, func() error {
		_, err := api2.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: "after-failover"})
		return err
	})
	// The stopped server can be removed from the configuration.
	if _, err := op2.RaftRemovePeer(ctx, &orchv1.RaftRemovePeerRequest{Id: tc.cfgs[l].NodeID}); err != nil {
		t.Fatal(err)
	}
	peers, _ = op2.RaftListPeers(ctx, &orchv1.RaftListPeersRequest{})
	if len(peers.GetServers()) != 2 {
		t.Fatalf("after remove-peer: %v", peers.GetServers())
	}
}

func TestAPITokens(t *testing.T) {
	cfg := Config{
		DataDir: t.TempDir(), NodeID: "s1", GRPCAddr: freePort(t), HTTPAddr: "off", RaftAddr: freePort(t),
		Bootstrap: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{t: t, servers: []*Server{s}}
	api, op := tc.anonymous(0)
	if _, err := api.ListClusters(ctx, &orchv1.ListClustersRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("without a token: %v, want Unauthenticated", err)
	}
	tok, err := op.BootstrapToken(ctx, &orchv1.BootstrapTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.BootstrapToken(ctx, &orchv1.BootstrapTokenRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second bootstrap: %v, want FailedPrecondition", err)
	}
	bad := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer orch_nope")
	if _, err := api.ListClusters(bad, &orchv1.ListClustersRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a wrong token: %v, want PermissionDenied", err)
	}
	good := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok.GetSecretId())
	if _, err := api.CreateCluster(good, &orchv1.CreateClusterRequest{ClusterName: "secured"}); err != nil {
		t.Fatalf("with the token: %v", err)
	}
	stream, err := op.SnapshotSave(ctx, &orchv1.SnapshotSaveRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a stream without a token: %v, want Unauthenticated", err)
	}
}

// A write that arrives while the cluster has no leader is held and served by the next leader,
// instead of failing; without a quorum it fails once the hold ends, having changed nothing.
func TestWriteHeldDuringElection(t *testing.T) {
	tc := newCluster(t, 3)
	l := tc.leader()
	f := (l + 1) % 3
	api, _ := tc.client(f)
	ctx := context.Background()
	retry(t, func() error {
		_, err := api.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: "before"})
		return err
	})

	tc.servers[l].Close()
	tc.servers[l] = nil
	start := time.Now()
	if _, err := api.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: "during-election"}); err != nil {
		t.Fatalf("write sent while the leader was gone: %v (after %s)", err, time.Since(start))
	}
	t.Logf("write held for %s, then served by the new leader", time.Since(start).Round(time.Millisecond))
	list, err := api.ListClusters(metadata.AppendToOutgoingContext(ctx, client.ConsistentHeader, "true"), &orchv1.ListClustersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(list.GetClusterArns(), func(a string) bool { return strings.HasSuffix(a, "/during-election") }) {
		t.Fatalf("held write not in the state: %v", list.GetClusterArns())
	}

	// One server of three left: no leader can be elected. The call waits for the hold (or its
	// own deadline, the shorter) and fails as Unavailable or DeadlineExceeded.
	other := 3 - l - f
	tc.servers[other].Close()
	tc.servers[other] = nil
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = api.CreateCluster(dctx, &orchv1.CreateClusterRequest{ClusterName: "no-quorum"})
	if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
		t.Fatalf("write without a quorum: %v, want Unavailable or DeadlineExceeded", err)
	}
}
