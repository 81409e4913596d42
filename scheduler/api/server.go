// Package api serves the client gRPC API (orchv1.Orch): it validates requests, writes through
// Raft and reads the local state store. Errors are converted to gRPC codes once, here.
package api

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"orch/pkg/arn"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/rpcerr"
	"orch/scheduler/state"
)

// Applier replicates a command and returns the FSM's result (raftnode.Node).
type Applier interface {
	Apply(ctx context.Context, t fsm.CommandType, m proto.Message) (any, error)
}

// NodeDialer opens a connection to the node API of agent hostID at address (for logs).
type NodeDialer func(ctx context.Context, hostID, address string) (orchv1.NodeServiceClient, error)

// Server implements orchv1.OrchServer.
type Server struct {
	orchv1.UnimplementedOrchServer
	store *state.Store
	raft  Applier
	arns  arn.Builder
	log   *slog.Logger
	dial  NodeDialer
	now   func() time.Time
	// readBarrier confirms leadership before a consistent read (WithConsistentRead); nil
	// serves consistent reads locally.
	readBarrier func(ctx context.Context) error

	// Placement is a single pipeline (plan.go): at most one planner runs at a time (planning),
	// so each plan is made against the state that includes the previous one, and cache, the
	// picture of the clusters' capacity kept across plans (plancache.go), belongs to that
	// planner.
	planMu   sync.Mutex
	queue    []*planJob
	planning bool
	planWake chan struct{} // a job queued while the planner waits for its plan in flight
	cache    *planCache

	// How long plans take to place and to commit (WithRegistry exports them).
	placeTime, commitTime prometheus.Histogram
}

// Opt configures a Server.
type Opt func(*Server)

// WithARNs sets the region and account of the ARNs.
func WithARNs(b arn.Builder) Opt { return func(s *Server) { s.arns = b } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Opt { return func(s *Server) { s.log = l } }

// WithNodeDialer sets how the server reaches agents for logs.
func WithNodeDialer(d NodeDialer) Opt { return func(s *Server) { s.dial = d } }

// WithClock sets the time source (tests).
func WithClock(now func() time.Time) Opt { return func(s *Server) { s.now = now } }

// WithRegistry exports the planner's metrics to reg.
func WithRegistry(reg prometheus.Registerer) Opt {
	return func(s *Server) { reg.MustRegister(s.placeTime, s.commitTime) }
}

// New returns a server reading store and writing through raft.
func New(store *state.Store, raft Applier, opts ...Opt) *Server {
	s := &Server{store: store, raft: raft, cache: newPlanCache(store), planWake: make(chan struct{}, 1),
		placeTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orch_plan_placement_seconds",
			Help:    "Time to place one plan's tasks (the RunTask calls and service starts queued together) on container instances, before its Raft write.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orch_plan_commit_seconds",
			Help:    "Time to write one plan to Raft: stored and replicated to a quorum, then applied.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	for _, o := range opts {
		o(s)
	}
	if s.arns == (arn.Builder{}) {
		s.arns = arn.Default
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Attach adds the service to a gRPC server.
func (s *Server) Attach(g *grpc.Server) { orchv1.RegisterOrchServer(g, s) }

// toStatus converts an error to a gRPC status, once, at the edge.
var toStatus = rpcerr.ToStatus

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

func clusterName(s string) string {
	if s == "" {
		return "default"
	}
	return arn.ClusterName(s)
}

// activeCluster returns the named ACTIVE cluster or a NotFound error that names it.
func activeCluster(r *state.ReadTxn, name string) (*orchv1.Cluster, error) {
	c, err := r.Cluster(nil, name)
	if err != nil {
		return nil, err
	}
	if c == nil || c.GetStatus() != "ACTIVE" {
		return nil, status.Errorf(codes.NotFound, "cluster %s: cluster not found", name)
	}
	return c, nil
}
