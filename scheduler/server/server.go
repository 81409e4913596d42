// Package server is the scheduler's composition root: it opens the data dir, starts Raft with
// the FSM and state store, serves the client and agent gRPC APIs and the HTTP endpoints
// (/metrics, /healthz), and runs the leader-only loops while this server leads.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/arn"
	"orch/pkg/lifecycle"
	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/api"
	"orch/scheduler/controllers"
	"orch/scheduler/dispatcher"
	"orch/scheduler/fsm"
	"orch/scheduler/raftnode"
	"orch/scheduler/rpcerr"
	"orch/scheduler/state"
)

// Config of one scheduler.
type Config struct {
	DataDir   string
	NodeID    string // default: kept in DataDir/node-id, created on first start
	GRPCAddr  string // client and agent API, default 127.0.0.1:7400
	HTTPAddr  string // /metrics and /healthz, default 127.0.0.1:7401; "" disables with "off"
	RaftAddr  string // default 127.0.0.1:7402
	Bootstrap bool   // form a new single-voter cluster if DataDir is empty
	// BootstrapExpect forms a new cluster of this many voters, found through Join.
	BootstrapExpect int
	// Join lists other schedulers' API addresses: to find the peers of a --bootstrap-expect
	// group, or to join a running cluster.
	Join []string
	// AdvertiseGRPC is the API address other schedulers and clients reach this one at;
	// default the listen address.
	AdvertiseGRPC string
	// CACertFile and CAKeyFile are the cluster CA a new --bootstrap-expect cluster forms with
	// (every server is given the same pair). A single --bootstrap server creates its own.
	CACertFile, CAKeyFile string
	// JoinToken is the manager join token a new server enrolls with (with Join).
	JoinToken string
	// CertTTL is the lifetime of the node certificates this scheduler issues; default
	// DefaultCertTTL.
	CertTTL time.Duration
	// Restore is a plain snapshot (as `orchctl operator snapshot save` streams it, before
	// sealing) to start from: the data dir must be empty; the server becomes a one-server
	// cluster with the snapshot's whole state and CA.
	Restore []byte
	// AdvertiseRaft is the Raft address other schedulers reach this one at; default RaftAddr.
	AdvertiseRaft string
	ARNs          arn.Builder
	Logger        *slog.Logger
	// StoppedTaskRetention is how long a STOPPED task stays describable; default 1h.
	StoppedTaskRetention time.Duration
	// GCInterval is how often stopped tasks are collected; default 1m.
	GCInterval time.Duration
	// HeartbeatGrace is how long a host may stay silent before it is marked disconnected;
	// HostLostAfter how long it may then stay disconnected before its tasks are marked lost.
	// Zero takes the defaults (10s, 60s; see controllers.LivenessConfig).
	HeartbeatGrace, HostLostAfter time.Duration
	// Registry receives the scheduler's metrics; default a new registry with Go and process
	// collectors.
	Registry *prometheus.Registry
}

// Server is a running scheduler.
type Server struct {
	cfg     Config
	store   *state.Store
	raft    *raftnode.Node
	grpc    *grpc.Server
	http    *http.Server
	grpcLis net.Listener
	log     *slog.Logger
	disp    *dispatcher.Dispatcher
	live    *controllers.Liveness
	svcs    *controllers.Services
	// leaderReady is true while this server leads and has applied everything committed
	// before its term.
	leaderReady atomic.Bool
	// gained wakes registerSelf when this server becomes the leader: a follower that had not
	// published its API address yet must do it at once, or no call can be forwarded to it.
	gained   chan struct{}
	stopLoop context.CancelFunc
	wg       sync.WaitGroup
	id       *identity
	// restore is the snapshot to install once this new server leads (Config.Restore).
	restore []byte

	connMu sync.Mutex
	conns  map[string]*grpc.ClientConn
}

// New starts a scheduler.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = "127.0.0.1:7400"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:7401"
	}
	if cfg.RaftAddr == "" {
		cfg.RaftAddr = "127.0.0.1:7402"
	}
	if cfg.StoppedTaskRetention == 0 {
		cfg.StoppedTaskRetention = time.Hour
	}
	if cfg.GCInterval == 0 {
		cfg.GCInterval = time.Minute
	}
	if cfg.CertTTL == 0 {
		cfg.CertTTL = DefaultCertTTL
	}
	if cfg.ARNs == (arn.Builder{}) {
		cfg.ARNs = arn.Default
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	if cfg.NodeID == "" {
		id, err := loadOrCreateID(filepath.Join(cfg.DataDir, "node-id"))
		if err != nil {
			return nil, err
		}
		cfg.NodeID = id
	}
	s := &Server{cfg: cfg, log: cfg.Logger, conns: map[string]*grpc.ClientConn{}, gained: make(chan struct{}, 1)}
	store, err := state.New()
	if err != nil {
		return nil, err
	}
	s.store = store
	var restoreCA *pki.CA
	if len(cfg.Restore) > 0 {
		if restoreCA, err = s.prepareRestore(cfg.Restore); err != nil {
			return nil, err
		}
		s.cfg.Bootstrap, s.cfg.BootstrapExpect, s.cfg.Join = true, 0, nil
	}
	if err := s.setupIdentity(context.Background(), restoreCA); err != nil {
		return nil, err
	}
	f := fsm.New(store, cfg.ARNs, cfg.Logger)
	s.raft, err = raftnode.New(raftnode.Config{
		ID: cfg.NodeID, DataDir: cfg.DataDir, BindAddr: cfg.RaftAddr, Advertise: cfg.AdvertiseRaft, Logger: cfg.Logger,
		Bootstrap: s.cfg.Bootstrap && s.cfg.BootstrapExpect <= 1 && len(s.cfg.Join) == 0,
		ServerTLS: pki.ServerTLSWith(s.id.ca, s.id.renewer.GetCertificate),
		ClientTLS: pki.ClientTLSWith(s.id.ca, s.id.renewer.GetClientCertificate, ""),
	}, f)
	if err != nil {
		return nil, err
	}

	s.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		s.raft.Shutdown()
		return nil, fmt.Errorf("grpc listen %s: %w", cfg.GRPCAddr, err)
	}
	if s.cfg.AdvertiseGRPC == "" {
		s.cfg.AdvertiseGRPC = s.grpcLis.Addr().String()
	}
	s.grpc = grpc.NewServer(
		grpc.Creds(s.serverCreds()),
		// No read buffer of gRPC's own per connection (32 KiB each by default): TLS already
		// buffers the decrypted record it reads from, and with thousands of mostly idle agent
		// sessions the buffers were the largest part of the heap (205 MB at 10,000 nodes).
		grpc.ReadBufferSize(0),
		grpc.ChainUnaryInterceptor(newGRPCMetrics(cfg.Registry).unary, s.authUnary, s.forwardUnary),
		grpc.ChainStreamInterceptor(s.authStream),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 15 * time.Second, Timeout: 10 * time.Second}),
	)
	apiServer := api.New(store, s.raft, api.WithARNs(cfg.ARNs), api.WithLogger(cfg.Logger), api.WithNodeDialer(s.dialNode),
		api.WithConsistentRead(s.consistentRead), api.WithRegistry(cfg.Registry))
	apiServer.Attach(s.grpc)
	s.disp = dispatcher.New(store, s.raft, cfg.Logger, cfg.Registry)
	s.disp.SetLeaderCheck(s.raft.IsLeader)
	s.live = controllers.NewLiveness(store, s.raft, s.disp.LastSeen, time.Now, controllers.LivenessConfig{
		Grace: cfg.HeartbeatGrace, LostAfter: cfg.HostLostAfter, Logger: cfg.Logger, Registerer: cfg.Registry,
	})
	// INACTIVE services stay describable as long as stopped tasks do.
	s.svcs = controllers.NewServices(store, s.raft, apiServer, time.Now, controllers.ServicesConfig{
		InactiveRetention: cfg.StoppedTaskRetention, Logger: cfg.Logger, Registerer: cfg.Registry,
	})
	s.disp.Attach(s.grpc)
	orchv1.RegisterOperatorServer(s.grpc, &operator{s: s})
	go func() {
		if err := s.grpc.Serve(s.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("grpc server", "err", err)
		}
	}()

	if cfg.HTTPAddr != "off" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", s.healthz)
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		hl, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("http listen %s: %w", cfg.HTTPAddr, err)
		}
		s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go s.http.Serve(hl)
	}

	ctx, cancel := context.WithCancel(context.Background())
	s.stopLoop = cancel
	s.wg.Add(4)
	go s.leaderLoop(ctx)
	go s.form(ctx)
	go func() { defer s.wg.Done(); s.id.renewer.Run(ctx) }()
	go func() { defer s.wg.Done(); s.forgetBootCA(ctx) }()
	return s, nil
}

// GRPCAddr is the address the gRPC API listens on.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// Store is the local state (read-only use).
func (s *Server) Store() *state.Store { return s.store }

// WaitLeader blocks until this server leads, or ctx ends.
func (s *Server) WaitLeader(ctx context.Context) error {
	for !s.raft.IsLeader() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for leadership: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return s.raft.Barrier(10 * time.Second)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	leader, _ := s.raft.Raft().LeaderWithID()
	if leader == "" {
		http.Error(w, "no raft leader", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "ok leader=%s self=%s\n", leader, s.cfg.NodeID)
}

// leaderLoop runs the leader-only work while this server leads. The loops write only through
// Raft, so a new leader picks up where the old one stopped.
func (s *Server) leaderLoop(ctx context.Context) {
	defer s.wg.Done()
	stop := func() {}
	defer func() { stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case leader := <-s.raft.LeaderCh():
			stop()
			s.leaderReady.Store(false)
			if !leader {
				s.disp.DropAll()
				s.log.Info("lost leadership", "node_id", s.cfg.NodeID)
				continue
			}
			s.log.Info("gained leadership", "node_id", s.cfg.NodeID)
			select {
			case s.gained <- struct{}{}:
			default:
			}
			lctx, cancel := context.WithCancel(ctx)
			var wg sync.WaitGroup
			stop = func() { cancel(); wg.Wait() }
			s.establishLeadership(lctx)
			wg.Add(1)
			go func() { defer wg.Done(); s.gcStoppedTasks(lctx) }()
			wg.Add(1)
			go func() { defer wg.Done(); s.live.Run(lctx) }()
			// The service controller starts tasks: only on a state that includes everything
			// the previous leader committed (the barrier of establishLeadership), or it could
			// start again what that leader started.
			if s.leaderReady.Load() {
				wg.Add(1)
				go func() { defer wg.Done(); s.svcs.Run(lctx) }()
			} else {
				s.log.Warn("service controller not started: the leader is not ready (see the errors above)")
			}
		}
	}
}

// consistentRead makes a read on the leader linearizable: every entry committed before this
// leader's term has been applied here (the barrier of establishLeadership), every write this
// leader acknowledged was applied before it was acknowledged, and VerifyLeader confirms with a
// quorum that no newer leader exists, all without writing to the log.
func (s *Server) consistentRead(ctx context.Context) error {
	if !s.leaderReady.Load() {
		return rpcerr.NotLeader("leader not ready for consistent reads yet; retry") // a read: nothing to undo
	}
	return s.raft.VerifyLeader()
}

// gcStoppedTasks forgets tasks that have been STOPPED for longer than the retention.
func (s *Server) gcStoppedTasks(ctx context.Context) {
	t := time.NewTicker(s.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tasks, err := s.store.Read().Tasks(nil)
		if err != nil {
			continue
		}
		cmd := &orchv1.DeleteTasksCommand{}
		for _, tk := range tasks {
			if tk.GetLastStatus() == lifecycle.Stopped && !tk.GetEniHeld() && time.Since(tk.GetStoppedAt().AsTime()) > s.cfg.StoppedTaskRetention {
				cmd.TaskIds = append(cmd.TaskIds, tk.GetId())
			}
		}
		if len(cmd.TaskIds) == 0 {
			continue
		}
		if _, err := s.raft.Apply(ctx, fsm.CmdDeleteTasks, cmd); err != nil {
			s.log.Warn("forgetting stopped tasks", "err", err)
		}
	}
}

// establishLeadership makes sure the default cluster exists (ECS has one from the start) and
// that hosts recorded as connected really have a session: after a restart or a new election
// the sessions of the old leader are gone, and agents reconnect to say they are alive.
func (s *Server) establishLeadership(ctx context.Context) {
	if err := s.raft.Barrier(10 * time.Second); err != nil {
		s.log.Warn("barrier after election", "err", err)
		return
	}
	if s.restore != nil {
		if err := s.installRestore(); err != nil {
			s.log.Error("restoring the snapshot", "err", err)
			return
		}
	}
	if err := s.initPKI(ctx); err != nil {
		s.log.Error("cluster CA", "err", err)
	}
	s.leaderReady.Store(true)
	c, err := s.store.Read().Cluster(nil, "default")
	if err != nil || c != nil {
		return
	}
	if _, err := s.raft.Apply(ctx, fsm.CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{
		ClusterName: "default", CreatedAt: timestamppb.Now(),
	}}); err != nil {
		s.log.Warn("creating the default cluster", "err", err)
	}
}

// dialNode reaches the node API of agent hostID at address, verifying it by its id.
func (s *Server) dialNode(ctx context.Context, hostID, address string) (orchv1.NodeServiceClient, error) {
	c, err := s.cachedConn("node:"+hostID+"@"+address, address, func() credentials.TransportCredentials { return s.nodeCreds(hostID) })
	if err != nil {
		return nil, err
	}
	return orchv1.NewNodeServiceClient(c), nil
}

// Close stops serving and shuts Raft down.
func (s *Server) Close() error {
	if s.stopLoop != nil {
		s.stopLoop()
	}
	if s.grpc != nil {
		stopped := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(3 * time.Second):
			s.grpc.Stop()
		}
	}
	if s.http != nil {
		s.http.Close()
	}
	s.wg.Wait()
	s.connMu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.connMu.Unlock()
	return s.raft.Shutdown()
}

func loadOrCreateID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("node id %s: %w", path, err)
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	id := "scheduler-" + hex.EncodeToString(r[:])
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("node id %s: %w", path, err)
	}
	return id, nil
}
