// Package nodesim simulates many orch agents in one process. Each simulated host speaks the
// real agent protocol (Register, then a Session stream with hello, heartbeats and task status
// reports) against real schedulers, but fakes the runtime: a task assigned to it reports
// RUNNING after a configurable delay and STOPPED when the scheduler wants it stopped. It is
// what scheduling throughput is measured with (make bench), where real containers would
// measure containerd instead.
package nodesim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
)

// Config of a simulation.
type Config struct {
	Endpoints []string // schedulers' gRPC addresses
	Nodes     int
	Clusters  []string // default ["default"]
	CPU       int      // per node, ECS units; default 4096
	Memory    int      // per node, MiB; default 16384
	// StartDelay is how long a task takes from assignment to RUNNING.
	StartDelay time.Duration
	// Conns is how many gRPC connections the simulated nodes share; default 8.
	Conns             int
	HeartbeatInterval time.Duration // default 5s
}

// Sim is a running simulation.
type Sim struct {
	cfg       Config
	conns     []*grpc.ClientConn
	wg        sync.WaitGroup
	cancel    context.CancelFunc
	running   atomic.Int64
	connected atomic.Int64
	stopped   atomic.Int64
	errs      atomic.Int64
}

// Start registers cfg.Nodes hosts and opens their sessions; it returns once all are registered.
func Start(ctx context.Context, cfg Config) (*Sim, error) {
	if len(cfg.Endpoints) == 0 || cfg.Nodes <= 0 {
		return nil, errors.New("nodesim: endpoints and a positive node count are required")
	}
	if len(cfg.Clusters) == 0 {
		cfg.Clusters = []string{"default"}
	}
	if cfg.CPU == 0 {
		cfg.CPU = 4096
	}
	if cfg.Memory == 0 {
		cfg.Memory = 16384
	}
	if cfg.Conns == 0 {
		cfg.Conns = 8
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 5 * time.Second
	}
	s := &Sim{cfg: cfg}
	for i := 0; i < cfg.Conns; i++ {
		c, err := grpc.NewClient(cfg.Endpoints[i%len(cfg.Endpoints)], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			s.Close()
			return nil, err
		}
		s.conns = append(s.conns, c)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	// Register in parallel, bounded, then open sessions.
	sem := make(chan struct{}, 64)
	var regErr atomic.Value
	var rwg sync.WaitGroup
	for i := 0; i < cfg.Nodes; i++ {
		n := &node{sim: s, conn: s.conns[i%len(s.conns)], hostname: fmt.Sprintf("sim-%05d", i), tasks: map[string]*orchv1.Task{}}
		sem <- struct{}{}
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			defer func() { <-sem }()
			if err := n.register(ctx); err != nil {
				regErr.Store(err)
				return
			}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); n.run(runCtx) }()
		}()
	}
	rwg.Wait()
	if err, ok := regErr.Load().(error); ok {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Running is how many tasks the simulated nodes have reported RUNNING (and not yet stopped).
func (s *Sim) Running() int64 { return s.running.Load() }

// Connected is how many nodes have a session whose first (full) assignment set arrived, that
// is, that the scheduler records as connected.
func (s *Sim) Connected() int64 { return s.connected.Load() }

// Errors counts session failures (each followed by a reconnect).
func (s *Sim) Errors() int64 { return s.errs.Load() }

// Close ends every session.
func (s *Sim) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	for _, c := range s.conns {
		c.Close()
	}
}

type node struct {
	sim      *Sim
	conn     *grpc.ClientConn
	hostname string
	hostID   string
	mu       sync.Mutex
	tasks    map[string]*orchv1.Task // what this node runs, by id
}

func (n *node) register(ctx context.Context) error {
	var b [16]byte
	rand.Read(b[:])
	req := &orchv1.RegisterHostRequest{
		HostId: hex.EncodeToString(b[:]), Hostname: n.hostname, Clusters: n.sim.cfg.Clusters,
		Cpu: int32(n.sim.cfg.CPU), Memory: int32(n.sim.cfg.Memory), AgentVersion: "nodesim",
		Attributes: []*orchv1.Attribute{{Name: "ecs.os-type", Value: "linux"}},
	}
	for attempt := 0; ; attempt++ {
		resp, err := orchv1.NewAgentServiceClient(n.conn).Register(ctx, req)
		if err == nil {
			n.hostID = resp.GetHost().GetId()
			return nil
		}
		if attempt == 20 || ctx.Err() != nil {
			return fmt.Errorf("nodesim: register %s: %w", n.hostname, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run keeps the node's session, reconnecting after failures to the next scheduler (only the
// leader keeps sessions, as with the real agent).
func (n *node) run(ctx context.Context) {
	next := 0
	for ctx.Err() == nil {
		if err := n.session(ctx); err != nil && ctx.Err() == nil {
			n.sim.errs.Add(1)
			next++
			n.conn = n.sim.conns[next%len(n.sim.conns)]
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (n *node) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := orchv1.NewAgentServiceClient(n.conn).Session(ctx)
	if err != nil {
		return err
	}
	var sendMu sync.Mutex
	send := func(m *orchv1.AgentMessage) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	n.mu.Lock()
	known := make([]string, 0, len(n.tasks))
	for id := range n.tasks {
		known = append(known, id)
	}
	n.mu.Unlock()
	if err := send(&orchv1.AgentMessage{Msg: &orchv1.AgentMessage_Hello{Hello: &orchv1.SessionHello{HostId: n.hostID, KnownTaskIds: known}}}); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(n.sim.cfg.HeartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if send(&orchv1.AgentMessage{Msg: &orchv1.AgentMessage_Heartbeat{Heartbeat: &orchv1.Heartbeat{SentAt: timestamppb.Now()}}}) != nil {
					cancel()
					return
				}
			}
		}
	}()
	first := true
	defer func() {
		if !first {
			n.sim.connected.Add(-1)
		}
	}()
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		a := m.GetAssignments()
		if a == nil {
			continue
		}
		if first {
			first = false
			n.sim.connected.Add(1)
		}
		for _, asg := range a.GetTasks() {
			n.assign(ctx, asg.GetTask(), send)
		}
	}
}

// assign starts (after the delay) or stops a task, reporting as an agent would.
func (n *node) assign(ctx context.Context, t *orchv1.Task, send func(*orchv1.AgentMessage) error) {
	n.mu.Lock()
	_, running := n.tasks[t.GetId()]
	if !running && t.GetDesiredStatus() == lifecycle.DesiredRunning {
		n.tasks[t.GetId()] = t
	}
	n.mu.Unlock()
	report := func(status string) {
		st := &orchv1.TaskStatus{TaskId: t.GetId(), LastStatus: status, ObservedAt: timestamppb.Now()}
		for _, c := range t.GetContainers() {
			cs := &orchv1.ContainerStatus{Name: c.GetName(), LastStatus: lifecycle.ContainerRunning}
			if status == lifecycle.Stopped {
				cs.LastStatus, cs.ExitCode = lifecycle.ContainerStopped, new(int32)
			}
			st.Containers = append(st.Containers, cs)
		}
		if status == lifecycle.Running {
			st.StartedAt = st.ObservedAt
		} else {
			st.ExecutionStoppedAt = st.ObservedAt
		}
		send(&orchv1.AgentMessage{Msg: &orchv1.AgentMessage_Status{Status: &orchv1.TaskStatusReport{Tasks: []*orchv1.TaskStatus{st}}}})
	}
	switch {
	case !running && t.GetDesiredStatus() == lifecycle.DesiredRunning:
		go func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(n.sim.cfg.StartDelay):
			}
			n.mu.Lock()
			_, still := n.tasks[t.GetId()]
			n.mu.Unlock()
			if !still {
				return // stopped before it started
			}
			report(lifecycle.Running)
			n.sim.running.Add(1)
		}()
	case running && t.GetDesiredStatus() == lifecycle.DesiredStopped:
		n.mu.Lock()
		delete(n.tasks, t.GetId())
		n.mu.Unlock()
		report(lifecycle.Stopped)
		n.sim.running.Add(-1)
		n.sim.stopped.Add(1)
	}
}
