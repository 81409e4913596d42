package controllers

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/api"
	"orch/scheduler/fsm"
	"orch/scheduler/fsm/fsmtest"
	"orch/scheduler/state"
)

// clock is a fake clock that moves only when told to.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// seenTable stands in for the dispatcher's LastSeen.
type seenTable struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (s *seenTable) Touch(host string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at[host] = at
}

func (s *seenTable) LastSeen(host string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.at[host]
	return t, ok
}

const (
	grace     = 10 * time.Second
	lostAfter = 60 * time.Second
)

// env is one scheduler's state with the liveness controller, on a fake clock.
type env struct {
	t           *testing.T
	store       *state.Store
	raft        *fsmtest.Applier
	clock       *clock
	seen        *seenTable
	c           *Liveness
	leaderSince time.Time
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		t: t, store: st, raft: fsmtest.New(st),
		clock: &clock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)},
		seen:  &seenTable{at: map[string]time.Time{}},
	}
	e.c = NewLiveness(st, e.raft, e.seen.LastSeen, e.clock.Now, LivenessConfig{Grace: grace, LostAfter: lostAfter, Logger: quiet()})
	e.leaderSince = e.clock.Now()
	e.must(fsm.CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: "homelab"}})
	return e
}

func (e *env) must(ct fsm.CommandType, m proto.Message) any {
	e.t.Helper()
	v, err := e.raft.Apply(context.Background(), ct, m)
	if err != nil {
		e.t.Fatalf("command %d: %v", ct, err)
	}
	return v
}

// addHost registers a host and opens its session, as the dispatcher does.
func (e *env) addHost(id string) {
	e.t.Helper()
	e.must(fsm.CmdRegisterHost, &orchv1.RegisterHostCommand{Host: &orchv1.Host{
		Id: id, Hostname: "node-" + id, Clusters: []string{"homelab"}, Cpu: 2048, Memory: 4096, RegisteredAt: timestamppb.New(e.clock.Now()),
	}})
	e.connect(id)
}

// connect records a session opening now, as the dispatcher does (Touch, then the command).
func (e *env) connect(id string) {
	e.t.Helper()
	e.heartbeat(id)
	e.must(fsm.CmdHostConnection, &orchv1.HostConnectionCommand{HostId: id, Connected: true, At: timestamppb.New(e.clock.Now())})
}

func (e *env) heartbeat(hosts ...string) {
	for _, h := range hosts {
		e.seen.Touch(h, e.clock.Now())
	}
}

// placeTask stores a task on host with the given status, as the agent reported it.
func (e *env) placeTask(id, host, ip, status string) {
	e.t.Helper()
	e.must(fsm.CmdPlaceTasks, &orchv1.PlaceTasksCommand{Tasks: []*orchv1.Task{{
		Id: id, Cluster: "homelab", HostId: host, ContainerInstanceId: fsm.InstanceID(host, "homelab"),
		LastStatus: lifecycle.Provisioning, DesiredStatus: lifecycle.DesiredRunning, Eni: &orchv1.Eni{Ip: ip},
		Containers: []*orchv1.Container{{Name: "web", LastStatus: lifecycle.ContainerPending}},
	}}})
	cs := lifecycle.ContainerRunning
	if status == lifecycle.Stopped {
		cs = lifecycle.ContainerStopped
	}
	e.report(host, &orchv1.TaskStatus{TaskId: id, LastStatus: status, ObservedAt: timestamppb.New(e.clock.Now()),
		Containers: []*orchv1.ContainerStatus{{Name: "web", LastStatus: cs}}})
}

func (e *env) report(host string, sts ...*orchv1.TaskStatus) {
	e.t.Helper()
	e.must(fsm.CmdTaskStatus, &orchv1.TaskStatusCommand{HostId: host, Tasks: sts})
}

// newLeader starts a new term: the controller's clock of silence starts again.
func (e *env) newLeader() { e.leaderSince = e.clock.Now() }

func (e *env) check() {
	e.t.Helper()
	if err := e.c.check(context.Background(), e.leaderSince); err != nil {
		e.t.Fatalf("check: %v", err)
	}
}

func (e *env) host(id string) *orchv1.Host {
	e.t.Helper()
	h, err := e.store.Read().Host(nil, id)
	if err != nil || h == nil {
		e.t.Fatalf("host %s: %v %v", id, h, err)
	}
	return h
}

func (e *env) task(id string) *orchv1.Task {
	e.t.Helper()
	tk, err := e.store.Read().Task(nil, id)
	if err != nil || tk == nil {
		e.t.Fatalf("task %s: %v %v", id, tk, err)
	}
	return tk
}

// TestLivenessTimeline drives the controller through timelines on a fake clock: h1 and h2
// each run a task, and h1 also has a task that stopped by itself earlier.
func TestLivenessTimeline(t *testing.T) {
	type step struct {
		advance    time.Duration
		heartbeat  []string // hosts that speak after the advance
		newLeader  bool     // a new leader takes over after the advance
		sessionEnd []string // the dispatcher records these hosts' sessions ending
	}
	// every repeats a step n times.
	every := func(n int, s step) []step {
		out := make([]step, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	tests := []struct {
		name          string
		steps         []step
		wantConnected map[string]bool
		wantLost      map[string]bool // host -> its running task was marked lost
	}{
		{
			name:          "hosts that keep heartbeating are untouched",
			steps:         every(40, step{advance: 5 * time.Second, heartbeat: []string{"h1", "h2"}}),
			wantConnected: map[string]bool{"h1": true, "h2": true},
		},
		{
			name:          "within the grace period",
			steps:         []step{{advance: grace}},
			wantConnected: map[string]bool{"h1": true, "h2": true},
		},
		{
			name:          "silent past the grace period: disconnected, tasks kept",
			steps:         []step{{advance: grace + time.Second, heartbeat: []string{"h2"}}},
			wantConnected: map[string]bool{"h1": false, "h2": true},
		},
		{
			name: "disconnected exactly the lost timeout: not yet lost",
			steps: []step{
				{advance: grace + time.Second, heartbeat: []string{"h2"}},
				{advance: lostAfter - time.Second, heartbeat: []string{"h2"}},
			},
			wantConnected: map[string]bool{"h1": false, "h2": true},
		},
		{
			name: "disconnected past the lost timeout: tasks lost",
			steps: []step{
				{advance: grace + time.Second, heartbeat: []string{"h2"}},
				{advance: lostAfter, heartbeat: []string{"h2"}},
			},
			wantConnected: map[string]bool{"h1": false, "h2": true},
			wantLost:      map[string]bool{"h1": true},
		},
		{
			name: "a session that ended counts from its last message",
			steps: []step{
				{advance: time.Second, sessionEnd: []string{"h1"}},
				{advance: grace + lostAfter - time.Second},
				{advance: 2 * time.Second},
			},
			wantConnected: map[string]bool{"h1": false, "h2": false},
			wantLost:      map[string]bool{"h1": true, "h2": true},
		},
		{
			name: "a stall that outlasts the grace, then heartbeats again: connected again",
			steps: []step{
				{advance: grace + time.Second, heartbeat: []string{"h2"}},
				{advance: time.Second, heartbeat: []string{"h1", "h2"}},
			},
			wantConnected: map[string]bool{"h1": true, "h2": true},
		},
		{
			name: "fresh grace after a leader change",
			steps: []step{
				{advance: grace - time.Second, newLeader: true},
				{advance: grace - time.Second},
			},
			wantConnected: map[string]bool{"h1": true, "h2": true},
		},
		{
			name: "after the fresh grace the new leader disconnects silent hosts",
			steps: []step{
				{advance: grace - time.Second, newLeader: true},
				{advance: grace - time.Second, heartbeat: []string{"h2"}},
				{advance: 2 * time.Second},
			},
			wantConnected: map[string]bool{"h1": false, "h2": true},
		},
		{
			name: "fresh lost timeout after a leader change",
			steps: []step{
				{advance: grace + time.Second, heartbeat: []string{"h2"}},
				{advance: lostAfter - 5*time.Second, newLeader: true, heartbeat: []string{"h2"}},
				{advance: grace + lostAfter - time.Second, heartbeat: []string{"h2"}},
			},
			wantConnected: map[string]bool{"h1": false, "h2": true},
		},
		{
			name: "the new leader loses a host that never comes back",
			steps: []step{
				{advance: grace + time.Second, heartbeat: []string{"h2"}},
				{advance: lostAfter - 5*time.Second, newLeader: true, heartbeat: []string{"h2"}},
				{advance: grace + lostAfter + time.Second, heartbeat: []string{"h2"}},
			},
			wantConnected: map[string]bool{"h1": false, "h2": true},
			wantLost:      map[string]bool{"h1": true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.addHost("h1")
			e.addHost("h2")
			e.placeTask("t1", "h1", "10.64.0.2", lifecycle.Running)
			e.placeTask("t1-done", "h1", "10.64.0.3", lifecycle.Stopped)
			e.placeTask("t2", "h2", "10.64.1.2", lifecycle.Running)
			done := e.task("t1-done")
			for _, s := range tt.steps {
				e.clock.Advance(s.advance)
				if s.newLeader {
					e.newLeader()
				}
				e.heartbeat(s.heartbeat...)
				for _, h := range s.sessionEnd {
					e.must(fsm.CmdHostConnection, &orchv1.HostConnectionCommand{HostId: h, Connected: false, At: timestamppb.New(e.clock.Now())})
				}
				e.check()
			}
			for h, want := range tt.wantConnected {
				if got := e.host(h).GetConnected(); got != want {
					t.Errorf("host %s connected = %t, want %t", h, got, want)
				}
			}
			for h, task := range map[string]string{"h1": "t1", "h2": "t2"} {
				tk := e.task(task)
				lost := tk.GetLastStatus() == lifecycle.Stopped
				if lost != tt.wantLost[h] {
					t.Errorf("task %s on %s: lastStatus %s, want lost = %t", task, h, tk.GetLastStatus(), tt.wantLost[h])
				}
				if !lost {
					continue
				}
				if tk.GetStopCode() != fsm.StopCodeHostLost || tk.GetDesiredStatus() != lifecycle.DesiredStopped || !tk.GetEniHeld() ||
					!strings.HasPrefix(tk.GetStoppedReason(), "Host node-"+h+" ("+h+") was lost: no heartbeat since ") ||
					tk.GetStoppedAt() == nil || tk.GetContainers()[0].GetLastStatus() != lifecycle.ContainerStopped {
					t.Errorf("lost task %s: %v", task, tk)
				}
			}
			if !proto.Equal(done, e.task("t1-done")) {
				t.Errorf("a task that was already STOPPED changed: %v", e.task("t1-done"))
			}
		})
	}
}

// TestLostReason checks what a user reads in stoppedReason.
func TestLostReason(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 5, 0, time.UTC)
	tests := []struct {
		host  *orchv1.Host
		heard bool
		want  string
	}{
		{&orchv1.Host{Id: "abc", Hostname: "pi4"}, true, "Host pi4 (abc) was lost: no heartbeat since 2025-03-01T12:00:05Z"},
		{&orchv1.Host{Id: "abc"}, true, "Host abc was lost: no heartbeat since 2025-03-01T12:00:05Z"},
		{&orchv1.Host{Id: "abc", Hostname: "pi4"}, false,
			"Host pi4 (abc) was lost: no heartbeat since 2025-03-01T12:00:05Z (when this scheduler became the leader)"},
	}
	for _, tt := range tests {
		if got := lostReason(tt.host, at, tt.heard); got != tt.want {
			t.Errorf("lostReason(%v, %t) = %q, want %q", tt.host, tt.heard, got, tt.want)
		}
	}
}

// TestLostAddressesHeldUntilConfirmed runs tasks through the real API: a lost task's address
// is not handed out again until its host, back, reports the task STOPPED.
func TestLostAddressesHeldUntilConfirmed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := api.New(e.store, e.raft, api.WithLogger(quiet()), api.WithClock(e.clock.Now))
	if _, err := s.RegisterTaskDefinition(ctx, &orchv1.RegisterTaskDefinitionRequest{TaskDefinition: &orchv1.TaskDefinition{
		Family: "web", NetworkMode: "awsvpc",
		ContainerDefinitions: []*orchv1.ContainerDefinition{{Name: "web", Image: "busybox", Memory: proto.Int32(64)}},
	}}); err != nil {
		t.Fatal(err)
	}
	e.addHost("h1")
	run := func() *orchv1.Task {
		t.Helper()
		resp, err := s.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web"})
		if err != nil || len(resp.GetTasks()) != 1 {
			t.Fatalf("run-task: %v %v", resp, err)
		}
		return resp.GetTasks()[0]
	}
	lostTask := run()
	ip := lostTask.GetEni().GetIp()
	running := &orchv1.TaskStatus{TaskId: lostTask.GetId(), LastStatus: lifecycle.Running}
	e.report("h1", running)

	e.clock.Advance(grace + time.Second)
	e.check()
	e.clock.Advance(lostAfter)
	e.check()
	if tk := e.task(lostTask.GetId()); tk.GetLastStatus() != lifecycle.Stopped || !tk.GetEniHeld() {
		t.Fatalf("after the lost timeout: %v", tk)
	}
	// Placement uses only connected hosts.
	if resp, err := s.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web"}); err != nil || len(resp.GetFailures()) != 1 {
		t.Fatalf("run-task with the only host lost: %v %v", resp, err)
	}

	// The host is back; its agent has not stopped the lost task yet.
	e.connect("h1")
	if got := run().GetEni().GetIp(); got == ip {
		t.Fatalf("a new task got %s, the address of a lost task its host has not confirmed stopped", ip)
	}
	e.report("h1", running) // the agent's replay on reconnect: still running
	if got := run().GetEni().GetIp(); got == ip {
		t.Fatalf("a new task got %s after a RUNNING report of the lost task", ip)
	}
	if tk := e.task(lostTask.GetId()); tk.GetLastStatus() != lifecycle.Stopped || tk.GetStopCode() != fsm.StopCodeHostLost {
		t.Fatalf("a late RUNNING report changed the lost task: %v", tk)
	}
	// Stopped retention does not end the hold either.
	e.must(fsm.CmdDeleteTasks, &orchv1.DeleteTasksCommand{TaskIds: []string{lostTask.GetId()}})
	e.task(lostTask.GetId())

	e.report("h1", &orchv1.TaskStatus{TaskId: lostTask.GetId(), LastStatus: lifecycle.Stopped, ObservedAt: timestamppb.New(e.clock.Now()),
		Containers: []*orchv1.ContainerStatus{{Name: "web", LastStatus: lifecycle.ContainerStopped, ExitCode: proto.Int32(143)}}})
	tk := e.task(lostTask.GetId())
	if tk.GetEniHeld() || tk.GetStopCode() != fsm.StopCodeHostLost || tk.GetContainers()[0].GetExitCode() != 143 {
		t.Fatalf("after the agent confirmed the stop: %v", tk)
	}
	if got := run().GetEni().GetIp(); got != ip {
		t.Fatalf("after the confirmation the next task got %s, want the freed %s", got, ip)
	}
}

// TestLostRefusedWhileConnected: a host whose session opened after the controller decided is
// alive; the FSM refuses to lose its tasks, and the controller's next pass leaves it alone.
func TestLostRefusedWhileConnected(t *testing.T) {
	e := newEnv(t)
	e.addHost("h1")
	e.placeTask("t1", "h1", "10.64.0.2", lifecycle.Running)
	e.clock.Advance(grace + time.Second)
	e.check()
	e.clock.Advance(lostAfter)
	e.connect("h1")
	if _, err := e.raft.Apply(context.Background(), fsm.CmdTasksLost, &orchv1.TasksLostCommand{HostId: "h1", TaskIds: []string{"t1"}}); err == nil {
		t.Fatal("tasks of a connected host were marked lost")
	}
	e.check()
	if tk := e.task("t1"); tk.GetLastStatus() != lifecycle.Running {
		t.Fatalf("task of a host that came back: %v", tk)
	}
}

// TestRunStopsWithLeadership runs the loop itself: it acts on its own and ends with its context.
func TestRunStopsWithLeadership(t *testing.T) {
	e := newEnv(t)
	e.addHost("h1")
	e.c.cfg.Interval = 5 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.c.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for e.host("h1").GetConnected() {
		if time.Now().After(deadline) {
			t.Fatal("Run did not mark the silent host disconnected")
		}
		e.clock.Advance(time.Second) // whenever Run started, the host ends up silent for long
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when its context ended")
	}
}
