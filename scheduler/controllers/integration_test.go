package controllers

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/api"
	"orch/scheduler/dispatcher"
	"orch/scheduler/fsm"
	"orch/scheduler/fsm/fsmtest"
	"orch/scheduler/state"
)

// fakeAgent speaks the agent side of the session protocol, as agent/session does, but under
// the test's control: it heartbeats until paused and reports what it is told to.
type fakeAgent struct {
	t      *testing.T
	stream orchv1.AgentService_SessionClient
	cancel context.CancelFunc
	assign chan *orchv1.Assignments

	mu     sync.Mutex // serializes Send
	paused bool
}

func openSession(t *testing.T, client orchv1.AgentServiceClient, host string, known ...string) *fakeAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := client.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := &fakeAgent{t: t, stream: stream, cancel: cancel, assign: make(chan *orchv1.Assignments, 16)}
	t.Cleanup(a.close)
	a.send(&orchv1.AgentMessage{Msg: &orchv1.AgentMessage_Hello{Hello: &orchv1.SessionHello{HostId: host, KnownTaskIds: known}}})
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			if as := m.GetAssignments(); as != nil {
				select {
				case a.assign <- as:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			a.mu.Lock()
			paused := a.paused
			a.mu.Unlock()
			if !paused {
				a.send(&orchv1.AgentMessage{Msg: &orchv1.AgentMessage_Heartbeat{Heartbeat: &orchv1.Heartbeat{SentAt: timestamppb.Now()}}})
			}
		}
	}()
	return a
}

func (a *fakeAgent) send(m *orchv1.AgentMessage) {
	a.mu.Lock()
	defer a.mu.Unlock()
	_ = a.stream.Send(m) // a closed session shows in the test's checks
}

func (a *fakeAgent) pause(p bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.paused = p
}

func (a *fakeAgent) report(sts ...*orchv1.TaskStatus) {
	a.send(&orchv1.AgentMessage{Msg: &orchv1.AgentMessage_Status{Status: &orchv1.TaskStatusReport{Tasks: sts}}})
}

func (a *fakeAgent) close() { a.cancel() }

// next returns the next assignments message.
func (a *fakeAgent) next() *orchv1.Assignments {
	a.t.Helper()
	select {
	case as := <-a.assign:
		return as
	case <-time.After(5 * time.Second):
		a.t.Fatal("no assignments from the scheduler")
		return nil
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLivenessWithDispatcher runs the controller on the real dispatcher's LastSeen, with an
// agent session over gRPC on loopback and the real clock: a stall past the grace period and
// back, a lost host, and its agent's return (one lost task still known, one forgotten).
// sessionEnv is a real dispatcher served over gRPC on loopback, the API on the same store
// (cluster "homelab", task definition "web"), the liveness controller running with the given
// timings on the dispatcher's LastSeen and the real clock, and a host "pi4" registered through
// the agent API.
type sessionEnv struct {
	st     *state.Store
	api    *api.Server
	client orchv1.AgentServiceClient
	reg    *orchv1.RegisterHostResponse
}

func newSessionEnv(t *testing.T, grace, lostAfter time.Duration) *sessionEnv {
	t.Helper()
	st, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	raft := fsmtest.New(st)
	disp := dispatcher.New(st, raft, quiet(), nil)
	g := grpc.NewServer()
	disp.Attach(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)

	ctx := context.Background()
	s := api.New(st, raft, api.WithLogger(quiet()))
	if _, err := s.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: "homelab"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RegisterTaskDefinition(ctx, &orchv1.RegisterTaskDefinitionRequest{TaskDefinition: &orchv1.TaskDefinition{
		Family: "web", NetworkMode: "awsvpc",
		ContainerDefinitions: []*orchv1.ContainerDefinition{{Name: "web", Image: "busybox", Memory: proto.Int32(64)}},
	}}); err != nil {
		t.Fatal(err)
	}
	live := NewLiveness(st, raft, disp.LastSeen, time.Now, LivenessConfig{Grace: grace, LostAfter: lostAfter, Interval: 20 * time.Millisecond, Logger: quiet()})
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); live.Run(lctx) }()
	t.Cleanup(func() { stop(); <-done })

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := orchv1.NewAgentServiceClient(conn)
	reg, err := client.Register(ctx, &orchv1.RegisterHostRequest{Hostname: "pi4", Clusters: []string{"homelab"}, Cpu: 2048, Memory: 4096})
	if err != nil {
		t.Fatal(err)
	}
	return &sessionEnv{st: st, api: s, client: client, reg: reg}
}

func TestLivenessWithDispatcher(t *testing.T) {
	const grace, lostAfter = 400 * time.Millisecond, time.Second
	e := newSessionEnv(t, grace, lostAfter)
	ctx, st, s, client, reg := context.Background(), e.st, e.api, e.client, e.reg
	hostID := reg.GetHost().GetId()
	host := func() *orchv1.Host { h, _ := st.Read().Host(nil, hostID); return h }
	task := func(id string) *orchv1.Task { tk, _ := st.Read().Task(nil, id); return tk }
	run := func() *orchv1.Task {
		t.Helper()
		resp, err := s.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web"})
		if err != nil || len(resp.GetTasks()) != 1 {
			t.Fatalf("run-task: %v %v", resp, err)
		}
		return resp.GetTasks()[0]
	}

	agent := openSession(t, client, hostID)
	if full := agent.next(); !full.GetFull() || len(full.GetTasks()) != 0 {
		t.Fatalf("first assignments: %v", full)
	}
	waitFor(t, "the host to be connected", func() bool { return host().GetConnected() })
	a, b := run(), run()
	for sent := map[string]bool{}; !sent[a.GetId()] || !sent[b.GetId()]; {
		for _, as := range agent.next().GetTasks() {
			sent[as.GetTask().GetId()] = true
		}
	}
	agent.report(&orchv1.TaskStatus{TaskId: a.GetId(), LastStatus: lifecycle.Running}, &orchv1.TaskStatus{TaskId: b.GetId(), LastStatus: lifecycle.Running})
	waitFor(t, "both tasks RUNNING", func() bool {
		return task(a.GetId()).GetLastStatus() == lifecycle.Running && task(b.GetId()).GetLastStatus() == lifecycle.Running
	})

	// A stall past the grace period on a live session, then heartbeats again.
	agent.pause(true)
	waitFor(t, "the silent host to be marked disconnected", func() bool { return !host().GetConnected() })
	agent.pause(false)
	waitFor(t, "the host to be marked connected again", func() bool { return host().GetConnected() })
	if task(a.GetId()).GetLastStatus() != lifecycle.Running {
		t.Fatal("a stall shorter than the lost timeout stopped a task")
	}

	// The agent goes away; after grace + lost timeout its tasks are lost.
	agent.close()
	waitFor(t, "the tasks to be marked lost", func() bool {
		return task(a.GetId()).GetLastStatus() == lifecycle.Stopped && task(b.GetId()).GetLastStatus() == lifecycle.Stopped
	})
	for _, tk := range []*orchv1.Task{task(a.GetId()), task(b.GetId())} {
		if tk.GetStopCode() != fsm.StopCodeHostLost || !tk.GetEniHeld() {
			t.Fatalf("lost task: %v", tk)
		}
	}

	// The agent comes back. It still has a (say it is stopping it) but has forgotten b.
	agent = openSession(t, client, hostID, a.GetId())
	full := agent.next()
	if !full.GetFull() || len(full.GetTasks()) != 0 || len(full.GetRemovedTaskIds()) != 0 {
		t.Fatalf("full set after the reconnect: %v (want no task: the agent stops whatever it runs outside the set)", full)
	}
	waitFor(t, "the forgotten task's address to be released", func() bool { return !task(b.GetId()).GetEniHeld() })
	if !task(a.GetId()).GetEniHeld() {
		t.Fatal("the address of a lost task the agent still knows was released before it reported the task stopped")
	}
	c := run()
	if c.GetEni().GetIp() == a.GetEni().GetIp() || c.GetEni().GetIp() != b.GetEni().GetIp() {
		t.Fatalf("new task got %s; a (held) has %s, b (released) had %s", c.GetEni().GetIp(), a.GetEni().GetIp(), b.GetEni().GetIp())
	}
	agent.report(&orchv1.TaskStatus{TaskId: a.GetId(), LastStatus: lifecycle.Stopped, ObservedAt: timestamppb.Now()})
	waitFor(t, "the stopped task's address to be released", func() bool { return !task(a.GetId()).GetEniHeld() })
	if d := run(); d.GetEni().GetIp() != a.GetEni().GetIp() {
		t.Fatalf("new task got %s, want the released %s", d.GetEni().GetIp(), a.GetEni().GetIp())
	}
	if !host().GetConnected() || task(c.GetId()).GetLastStatus() == lifecycle.Stopped {
		t.Fatal("a heartbeating host was touched")
	}
}
