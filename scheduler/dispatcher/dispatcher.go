// Package dispatcher serves the agent API: host registration and the long-lived session
// stream. A session sends the host its desired task set (state, not commands: the full set on
// connect, then every change) and turns the agent's heartbeats and reports into Raft entries.
package dispatcher

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/lifecycle"
	"orch/pkg/taskdef"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/rpcerr"
	"orch/scheduler/state"
)

// Applier replicates a command (raftnode.Node).
type Applier interface {
	Apply(ctx context.Context, t fsm.CommandType, m proto.Message) (any, error)
}

// Dispatcher implements orchv1.AgentServiceServer.
type Dispatcher struct {
	orchv1.UnimplementedAgentServiceServer
	store *state.Store
	raft  Applier
	log   *slog.Logger
	now   func() time.Time

	mu       sync.Mutex
	sessions map[string]uint64 // host id -> generation of its current session
	cancels  map[uint64]context.CancelFunc
	gen      uint64
	isLeader func() bool
	seen     seenTimes       // last sign of life per host (liveness.go)
	statuses statusCommitter // status reports' group commit (statusbatch.go)

	sessionsGauge prometheus.Gauge
	reports       prometheus.Counter
}

// New returns a dispatcher; reg may be nil.
func New(store *state.Store, raft Applier, log *slog.Logger, reg prometheus.Registerer) *Dispatcher {
	d := &Dispatcher{
		store: store, raft: raft, log: log, now: time.Now, sessions: map[string]uint64{},
		cancels: map[uint64]context.CancelFunc{}, isLeader: func() bool { return true },
		sessionsGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orch_dispatcher_sessions", Help: "Agent sessions connected to this scheduler.",
		}),
		reports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orch_dispatcher_task_status_reports_total", Help: "Task status reports received from agents.",
		}),
	}
	if reg != nil {
		reg.MustRegister(d.sessionsGauge, d.reports)
	}
	return d
}

// Attach adds the service to a gRPC server.
func (d *Dispatcher) Attach(g *grpc.Server) { orchv1.RegisterAgentServiceServer(g, d) }

var toStatus = rpcerr.ToStatus

// Register implements orchv1.AgentServiceServer: it records the host and its container
// instances (one per cluster it serves). A host without an id gets a new one.
func (d *Dispatcher) Register(ctx context.Context, req *orchv1.RegisterHostRequest) (*orchv1.RegisterHostResponse, error) {
	if len(req.GetClusters()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "clusters: at least one cluster (or \"*\") is required")
	}
	if req.GetCpu() <= 0 || req.GetMemory() <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "cpu %d and memory %d must be positive", req.GetCpu(), req.GetMemory())
	}
	id := req.GetHostId()
	if cert, ok := HostID(ctx); ok {
		if id != "" && id != cert {
			return nil, status.Errorf(codes.PermissionDenied, "hostId %s: this agent's certificate is for host %s", id, cert)
		}
		id = cert
	}
	if id == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		id = hex.EncodeToString(b[:])
	}
	h := &orchv1.Host{
		Id: id, Hostname: req.GetHostname(), Clusters: req.GetClusters(), Cpu: req.GetCpu(), Memory: req.GetMemory(),
		Attributes: req.GetAttributes(), AgentVersion: req.GetAgentVersion(), Address: req.GetAddress(),
		RegisteredAt: timestamppb.New(d.now()),
	}
	v, err := d.raft.Apply(ctx, fsm.CmdRegisterHost, &orchv1.RegisterHostCommand{Host: h})
	if err != nil {
		return nil, toStatus(fmt.Errorf("register host %s (%s): %w", id, req.GetHostname(), err))
	}
	resp := v.(*orchv1.RegisterHostResponse)
	d.log.Info("host registered", "host_id", id, "hostname", req.GetHostname(), "instances", len(resp.GetContainerInstances()))
	return resp, nil
}

type hostIDKey struct{}

// WithHostID says that the call comes from the agent of hostID (from its certificate): it may
// register and hold a session only as that host.
func WithHostID(ctx context.Context, hostID string) context.Context {
	return context.WithValue(ctx, hostIDKey{}, hostID)
}

// HostID returns the host a call was authenticated as (WithHostID).
func HostID(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(hostIDKey{}).(string)
	return id, ok
}

// Session implements orchv1.AgentServiceServer.
func (d *Dispatcher) Session(stream orchv1.AgentService_SessionServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil || hello.GetHostId() == "" {
		return status.Error(codes.InvalidArgument, "the first session message must be a hello with the host id")
	}
	hostID := hello.GetHostId()
	if cert, ok := HostID(ctx); ok && cert != hostID {
		return status.Errorf(codes.PermissionDenied, "hostId %s: this agent's certificate is for host %s", hostID, cert)
	}
	h, err := d.store.Read().Host(nil, hostID)
	if err != nil {
		return toStatus(err)
	}
	if h == nil {
		return status.Errorf(codes.NotFound, "host %s is not registered; register first", hostID)
	}
	if !d.isLeader() {
		return status.Error(codes.Unavailable, "this scheduler is not the leader; open the session with another one")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	gen := d.open(hostID, func() { cancel(nil) })
	defer d.close(hostID, gen)
	d.Touch(hostID)
	if _, err := d.raft.Apply(ctx, fsm.CmdHostConnection, &orchv1.HostConnectionCommand{
		HostId: hostID, Connected: true, At: timestamppb.New(d.now()),
	}); err != nil {
		return toStatus(err)
	}
	if err := d.releaseForgotten(ctx, hostID, hello.GetKnownTaskIds()); err != nil {
		return toStatus(err)
	}
	log := d.log.With("host_id", hostID)
	log.Info("agent session opened")

	// Two goroutines per session (with gRPC's three per connection, at 10,000 agents the
	// leader's stacks are a good part of its GC work): this one sends assignments, the other
	// reads the agent's messages and queues its reports for the group commit. Whichever ends
	// first ends the session, with its error as the cause.
	go func() { cancel(d.recvLoop(ctx, hostID, stream, cancel)) }()
	cancel(d.assignLoop(ctx, hostID, hello.GetKnownTaskIds(), stream.Send))
	err = context.Cause(ctx)
	if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("agent session closed", "err", err)
	return err
}

// SetLeaderCheck tells the dispatcher how to know whether its server leads. Sessions live only
// on the leader: a follower could not apply what agents report, and a server that stays silent
// about its lost leadership would keep agents away from the new leader (found by the chaos
// suite). Call it before serving.
func (d *Dispatcher) SetLeaderCheck(isLeader func() bool) { d.isLeader = isLeader }

// DropAll ends every session; the server calls it when it loses leadership, and the agents
// reconnect to the new leader.
func (d *Dispatcher) DropAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, cancel := range d.cancels {
		cancel()
	}
}

func (d *Dispatcher) open(host string, cancel context.CancelFunc) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	d.sessions[host] = d.gen
	d.cancels[d.gen] = cancel
	d.sessionsGauge.Set(float64(len(d.sessions)))
	return d.gen
}

// close marks the host disconnected unless a newer session of it has opened meanwhile.
func (d *Dispatcher) close(host string, gen uint64) {
	d.mu.Lock()
	delete(d.cancels, gen)
	current := d.sessions[host] == gen
	if current {
		delete(d.sessions, host)
	}
	d.sessionsGauge.Set(float64(len(d.sessions)))
	d.mu.Unlock()
	if !current || !d.isLeader() {
		return // a newer session exists, or the new leader's liveness loop judges the host
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.raft.Apply(ctx, fsm.CmdHostConnection, &orchv1.HostConnectionCommand{
		HostId: host, Connected: false, At: timestamppb.New(d.now()),
	}); err != nil {
		d.log.Warn("could not record disconnect", "host_id", host, "err", err)
	}
}

// maxReportsInFlight bounds a session's status reports queued for the group commit and not
// yet written: past it, the session stops reading from its agent until one is written.
const maxReportsInFlight = 32

// recvLoop reads the agent's messages. Status reports go to the group commit without waiting
// (statusbatch.go), in order; fail ends the session when one cannot be written, so that the
// agent replays its statuses on the next one.
func (d *Dispatcher) recvLoop(ctx context.Context, host string, stream orchv1.AgentService_SessionServer,
	fail context.CancelCauseFunc) error {
	inFlight := make(chan struct{}, maxReportsInFlight)
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		d.Touch(host)
		switch msg := m.GetMsg().(type) {
		case *orchv1.AgentMessage_Heartbeat:
			// Not answered: the agent finds a dead scheduler by gRPC keepalive. A scheduler
			// that lost the leadership ends the session, so that the agent finds the leader.
			if !d.isLeader() {
				return status.Error(codes.Unavailable, "this scheduler is no longer the leader")
			}
		case *orchv1.AgentMessage_Status:
			d.reports.Add(float64(len(msg.Status.GetTasks())))
			select {
			case inFlight <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			d.queueStatuses(host, msg.Status.GetTasks(), func(err error) {
				<-inFlight
				if err != nil {
					fail(fmt.Errorf("host %s: task status: %w", host, err))
				}
			})
		case *orchv1.AgentMessage_Usage:
			if _, err := d.raft.Apply(ctx, fsm.CmdTaskUsage, &orchv1.TaskUsageCommand{HostId: host, Tasks: msg.Usage.GetTasks()}); err != nil {
				return fmt.Errorf("host %s: task usage: %w", host, err)
			}
		}
	}
}

// assignLoop sends the full desired set, then every change of it, using the store's watch
// channels (no polling). A task is sent again only when its desired status changes: that is
// all an agent acts on after the placement (the rest of a task is fixed when it is placed, or
// comes from the agent itself: its statuses and usage, which are not echoed back).
func (d *Dispatcher) assignLoop(ctx context.Context, host string, known []string, send func(*orchv1.SchedulerMessage) error) error {
	sent := map[string]string{} // task id -> desired status sent
	tdCache := map[string]*orchv1.TaskDefinition{}
	full := true
	for {
		changed := d.store.HostWatch(host) // before the read: no change falls in between
		r := d.store.Read()
		tasks, err := r.TasksByHost(host)
		if err != nil {
			return err
		}
		msg := &orchv1.Assignments{Full: full}
		present := map[string]bool{}
		for _, t := range tasks {
			present[t.GetId()] = true
			if t.GetLastStatus() == lifecycle.Stopped {
				// Marked lost while this session lived on (a stall): the agent may still run it.
				if _, ok := sent[t.GetId()]; ok && t.GetEniHeld() {
					msg.RemovedTaskIds = append(msg.RemovedTaskIds, t.GetId())
					delete(sent, t.GetId())
				}
				continue
			}
			if prev, ok := sent[t.GetId()]; ok && !full && prev == t.GetDesiredStatus() {
				continue
			}
			td, err := d.taskDefinition(r, tdCache, t.GetTaskDefinitionArn())
			if err != nil {
				return err
			}
			msg.Tasks = append(msg.Tasks, &orchv1.Assignment{Task: t, TaskDefinition: td})
			sent[t.GetId()] = t.GetDesiredStatus()
		}
		if full {
			// Tasks the agent knows but the scheduler has no record of: clean them up.
			for _, id := range known {
				if !present[id] {
					msg.RemovedTaskIds = append(msg.RemovedTaskIds, id)
				}
			}
		}
		for id := range sent {
			if !present[id] {
				msg.RemovedTaskIds = append(msg.RemovedTaskIds, id)
				delete(sent, id)
			}
		}
		if full || len(msg.Tasks) > 0 || len(msg.RemovedTaskIds) > 0 {
			if err := send(&orchv1.SchedulerMessage{Msg: &orchv1.SchedulerMessage_Assignments{Assignments: msg}}); err != nil {
				return err
			}
		}
		full = false
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

func (d *Dispatcher) taskDefinition(r *state.ReadTxn, cache map[string]*orchv1.TaskDefinition, ref string) (*orchv1.TaskDefinition, error) {
	if td, ok := cache[ref]; ok {
		return td, nil
	}
	family, rev, err := taskdef.ParseRef(ref)
	if err != nil {
		return nil, fmt.Errorf("task definition %s: %w", ref, err)
	}
	td, err := r.TaskDefinition(nil, family, rev)
	if err != nil || td == nil {
		return nil, fmt.Errorf("task definition %s: missing from state: %v", ref, err)
	}
	cache[ref] = td
	return td, nil
}
