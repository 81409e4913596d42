// Package nodesim simulates many orch agents in one process. Each simulated host speaks the
// real agent protocol (enrollment with the worker join token, then over its own mutual TLS
// connection Register and a Session stream with hello, heartbeats and task status reports)
// against real schedulers, but fakes the runtime: a task assigned to it reports
// RUNNING after a configurable delay and STOPPED when the scheduler wants it stopped. As the
// real agent does, a node sends the statuses pending when it gets to send, all in one message,
// at once (no timer): the tasks of one assignment that start together are reported together. It is
// what scheduling throughput is measured with (make bench), where real containers would
// measure containerd instead.
package nodesim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/agent/session"
	"orch/pkg/lifecycle"
	"orch/pkg/pki"
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
	// JoinToken is the cluster's worker join token (`orchctl operator join-token worker`):
	// every simulated node enrolls with it and gets its own certificate.
	JoinToken         string
	HeartbeatInterval time.Duration // default 5s
}

// Sim is a running simulation.
type Sim struct {
	cfg       Config
	enrollers []*grpc.ClientConn // one per endpoint, verified by the token's CA digest
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
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 5 * time.Second
	}
	tok, err := pki.ParseJoinToken(cfg.JoinToken)
	if err != nil {
		return nil, fmt.Errorf("nodesim: join token: %w", err)
	}
	s := &Sim{cfg: cfg}
	for _, ep := range cfg.Endpoints {
		c, err := grpc.NewClient(ep, grpc.WithTransportCredentials(credentials.NewTLS(pki.PinnedTLS(tok.CADigest))))
		if err != nil {
			s.Close()
			return nil, err
		}
		s.enrollers = append(s.enrollers, c)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	// Register in parallel, bounded, then open sessions.
	sem := make(chan struct{}, 64)
	var regErr atomic.Value
	var rwg sync.WaitGroup
	for i := 0; i < cfg.Nodes; i++ {
		n := &node{sim: s, endpoint: i % len(cfg.Endpoints), hostname: fmt.Sprintf("sim-%05d", i),
			tasks: map[string]*orchv1.Task{}, ready: make(chan struct{}, 1)}
		sem <- struct{}{}
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			defer func() { <-sem }()
			if err := n.enroll(ctx); err != nil {
				regErr.Store(err)
				return
			}
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
	for _, c := range s.enrollers {
		c.Close()
	}
}

type node struct {
	sim      *Sim
	creds    credentials.TransportCredentials // mutual TLS with this node's certificate
	endpoint int                              // index of the scheduler it talks to
	conn     *grpc.ClientConn                 // its own connection to that scheduler
	hostname string
	hostID   string
	mu       sync.Mutex
	tasks    map[string]*orchv1.Task // what this node runs, by id
	pending  []*orchv1.TaskStatus    // reported, not sent yet
	ready    chan struct{}           // a status is pending (capacity 1)
}

// report queues a status for the session to send with the others pending.
func (n *node) report(st *orchv1.TaskStatus) {
	n.mu.Lock()
	n.pending = append(n.pending, st)
	n.mu.Unlock()
	select {
	case n.ready <- struct{}{}:
	default:
	}
}

// sendPending sends every pending status in one message; on failure they stay pending for the
// next session.
func (n *node) sendPending(send func(*orchv1.AgentMessage) error) error {
	n.mu.Lock()
	sts := n.pending
	n.pending = nil
	n.mu.Unlock()
	if len(sts) == 0 {
		return nil
	}
	if err := send(&orchv1.AgentMessage{Msg: &orchv1.AgentMessage_Status{Status: &orchv1.TaskStatusReport{Tasks: sts}}}); err != nil {
		n.mu.Lock()
		n.pending = append(sts, n.pending...)
		n.mu.Unlock()
		return err
	}
	for _, st := range sts {
		switch st.GetLastStatus() {
		case lifecycle.Running:
			n.sim.running.Add(1)
		case lifecycle.Stopped:
			n.sim.running.Add(-1)
			n.sim.stopped.Add(1)
		}
	}
	return nil
}

// enroll gets the node its certificate (the host id is its common name) and connects.
func (n *node) enroll(ctx context.Context) error {
	keyPEM, csr, err := pki.NewKeyAndCSR(n.hostname)
	if err != nil {
		return err
	}
	var resp *orchv1.EnrollResponse
	for attempt := 0; ; attempt++ {
		c := n.sim.enrollers[(n.endpoint+attempt)%len(n.sim.enrollers)]
		resp, err = orchv1.NewOperatorClient(c).Enroll(ctx, &orchv1.EnrollRequest{Token: n.sim.cfg.JoinToken, Csr: csr})
		if err == nil {
			break
		}
		if attempt == 20 || ctx.Err() != nil {
			return fmt.Errorf("nodesim: enroll %s: %w", n.hostname, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ca, err := pki.ParseCertificatePEM(resp.GetCaCertificate())
	if err != nil {
		return err
	}
	pair, err := pki.KeyPair(resp.GetCertificate(), keyPEM, ca)
	if err != nil {
		return err
	}
	n.hostID = resp.GetNodeId()
	n.creds = credentials.NewTLS(pki.ClientTLSWith(ca, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair, nil }, ""))
	return n.dial()
}

// dial connects the node to its current scheduler, closing the previous connection.
func (n *node) dial() error {
	if n.conn != nil {
		n.conn.Close()
	}
	c, err := grpc.NewClient(n.sim.cfg.Endpoints[n.endpoint], grpc.WithTransportCredentials(n.creds),
		grpc.WithKeepaliveParams(session.Keepalive), // as the real agent: an idle session pings
		grpc.WithReadBufferSize(8<<10), grpc.WithWriteBufferSize(8<<10))
	n.conn = c
	return err
}

func (n *node) register(ctx context.Context) error {
	req := &orchv1.RegisterHostRequest{
		HostId: n.hostID, Hostname: n.hostname, Clusters: n.sim.cfg.Clusters,
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
	defer func() { n.conn.Close() }()
	for ctx.Err() == nil {
		if err := n.session(ctx); err != nil && ctx.Err() == nil {
			n.sim.errs.Add(1)
			if len(n.sim.cfg.Endpoints) > 1 {
				n.endpoint = (n.endpoint + 1) % len(n.sim.cfg.Endpoints)
				if n.dial() != nil {
					return
				}
			}
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
		if n.sendPending(send) != nil { // from before this session
			cancel()
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-n.ready:
				if n.sendPending(send) != nil {
					cancel()
					return
				}
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
			n.assign(ctx, asg.GetTask())
		}
	}
}

// assign starts (after the delay) or stops a task, reporting as an agent would.
func (n *node) assign(ctx context.Context, t *orchv1.Task) {
	n.mu.Lock()
	_, running := n.tasks[t.GetId()]
	if !running && t.GetDesiredStatus() == lifecycle.DesiredRunning {
		n.tasks[t.GetId()] = t
	}
	n.mu.Unlock()
	status := func(status string) *orchv1.TaskStatus {
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
		return st
	}
	switch {
	case !running && t.GetDesiredStatus() == lifecycle.DesiredRunning:
		if n.sim.cfg.StartDelay <= 0 {
			n.report(status(lifecycle.Running))
			return
		}
		go func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(n.sim.cfg.StartDelay):
			}
			n.mu.Lock()
			_, still := n.tasks[t.GetId()]
			n.mu.Unlock()
			if still { // else stopped before it started
				n.report(status(lifecycle.Running))
			}
		}()
	case running && t.GetDesiredStatus() == lifecycle.DesiredStopped:
		n.mu.Lock()
		delete(n.tasks, t.GetId())
		n.mu.Unlock()
		n.report(status(lifecycle.Stopped))
	}
}
