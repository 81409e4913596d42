package api

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/fsm/fsmtest"
	"orch/scheduler/state"
)

// failingApplier refuses the next n PlaceTasks commands, as a lost leadership would.
type failingApplier struct {
	*fsmtest.Applier
	n int
}

func (f *failingApplier) Apply(ctx context.Context, t fsm.CommandType, m proto.Message) (any, error) {
	if t == fsm.CmdPlaceTasks && f.n > 0 {
		f.n--
		return nil, errors.New("leadership lost")
	}
	return f.Applier.Apply(ctx, t, m)
}

func addHost(t *testing.T, d *fsmtest.Applier, id string, memory int32, connected bool, clusters ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := d.Apply(ctx, fsm.CmdRegisterHost, &orchv1.RegisterHostCommand{Host: &orchv1.Host{
		Id: id, Clusters: clusters, Cpu: 2048, Memory: memory, RegisteredAt: timestamppb.Now(),
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Apply(ctx, fsm.CmdHostConnection, &orchv1.HostConnectionCommand{HostId: id, Connected: connected}); err != nil {
		t.Fatal(err)
	}
}

// The plan cache must see every change a plan depends on, whoever made it: the state after
// each change places exactly as a planner that starts from the state would.
func TestPlanCacheSeesChanges(t *testing.T) {
	ctx := context.Background()
	run := func(s *Server, n int) (*orchv1.RunTaskResponse, error) {
		return s.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web", Count: int32(n)})
	}
	tests := []struct {
		name   string
		warm   int // tasks placed (on h1) before the change, so that the cache holds h1 and h2
		change func(t *testing.T, s *Server, d *fsmtest.Applier, warm []*orchv1.Task)
		want   string // the next task's host, or its failure reason, or the error
	}{
		{name: "no change: binpack keeps filling h1", warm: 1, want: "h1"},
		{name: "a task placed by another planner counts", warm: 1, change: func(t *testing.T, s *Server, d *fsmtest.Applier, _ []*orchv1.Task) {
			// As a previous leader's plan still in the log: it fills h1.
			tk := &orchv1.Task{
				Id: NewTaskID(), Cluster: "homelab", HostId: "h1", ContainerInstanceId: fsm.InstanceID("h1", "homelab"),
				LastStatus: lifecycle.Pending, DesiredStatus: lifecycle.DesiredRunning, Cpu: "0", Memory: "768",
				TaskDefinitionArn: "arn:aws:ecs:local:000000000000:task-definition/web:1", Eni: &orchv1.Eni{Ip: "10.64.0.50"},
			}
			if _, err := d.Apply(ctx, fsm.CmdPlaceTasks, &orchv1.PlaceTasksCommand{Tasks: []*orchv1.Task{tk}}); err != nil {
				t.Fatal(err)
			}
		}, want: "h2"},
		{name: "a stopped task frees its memory", warm: 4, change: func(t *testing.T, s *Server, d *fsmtest.Applier, warm []*orchv1.Task) {
			if _, err := d.Apply(ctx, fsm.CmdTaskStatus, &orchv1.TaskStatusCommand{HostId: "h1", Tasks: []*orchv1.TaskStatus{
				{TaskId: warm[0].GetId(), LastStatus: lifecycle.Stopped},
			}}); err != nil {
				t.Fatal(err)
			}
		}, want: "h1"},
		{name: "a full host stays full", warm: 4, want: "h2"},
		{name: "a deregistered instance", warm: 1, change: func(t *testing.T, s *Server, d *fsmtest.Applier, _ []*orchv1.Task) {
			addHost(t, d, "h1", 1024, true, "other")
		}, want: "h2"},
		{name: "a draining instance", warm: 1, change: func(t *testing.T, s *Server, d *fsmtest.Applier, _ []*orchv1.Task) {
			r := s.store.Read()
			ci, _ := r.Instance(nil, fsm.InstanceID("h1", "homelab"))
			ci = proto.Clone(ci).(*orchv1.ContainerInstance)
			ci.Status = "DRAINING"
			w := s.store.Write(r.LatestIndex() + 1000)
			if err := w.PutInstance(ci); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
		}, want: "h2"},
		{name: "a disconnected host", warm: 1, change: func(t *testing.T, s *Server, d *fsmtest.Applier, _ []*orchv1.Task) {
			if _, err := d.Apply(ctx, fsm.CmdHostConnection, &orchv1.HostConnectionCommand{HostId: "h1"}); err != nil {
				t.Fatal(err)
			}
		}, want: "h2"},
		{name: "a new host", warm: 1, change: func(t *testing.T, s *Server, d *fsmtest.Applier, _ []*orchv1.Task) {
			addHost(t, d, "h3", 512, true, "homelab")
		}, want: "h3"},
		{name: "a restore replaces everything", warm: 1, change: func(t *testing.T, s *Server, d *fsmtest.Applier, _ []*orchv1.Task) {
			// The same cluster and hosts, but h1 is full.
			other, err := state.New()
			if err != nil {
				t.Fatal(err)
			}
			d2 := fsmtest.New(other)
			s2 := New(other, d2)
			if _, err := s2.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: "homelab"}); err != nil {
				t.Fatal(err)
			}
			addHost(t, d2, "h1", 1024, true, "homelab")
			addHost(t, d2, "h2", 4096, true, "homelab")
			register(t, s2, 256)
			if resp, err := run(s2, 4); err != nil || len(resp.GetTasks()) != 4 {
				t.Fatalf("filling h1: %v %v", resp, err)
			}
			s.store.Replace(other)
		}, want: "h2"},
		{name: "every agent disconnected", warm: 1, change: func(t *testing.T, s *Server, d *fsmtest.Applier, _ []*orchv1.Task) {
			for _, h := range []string{"h1", "h2"} {
				if _, err := d.Apply(ctx, fsm.CmdHostConnection, &orchv1.HostConnectionCommand{HostId: h}); err != nil {
					t.Fatal(err)
				}
			}
		}, want: "AGENT"},
		{name: "every instance deregistered", warm: 1, change: func(t *testing.T, s *Server, d *fsmtest.Applier, _ []*orchv1.Task) {
			addHost(t, d, "h1", 1024, true, "other")
			addHost(t, d, "h2", 4096, true, "other")
		}, want: "no container instances"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, d := newServer(t, 1024)
			if _, err := s.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: "other", Cidr: "10.200.0.0/16"}); err != nil {
				t.Fatal(err)
			}
			addHost(t, d, "h2", 4096, true, "homelab")
			register(t, s, 256)
			resp, err := run(s, tt.warm)
			if err != nil || len(resp.GetTasks()) != tt.warm {
				t.Fatalf("warm-up: %v %v", resp, err)
			}
			for _, tk := range resp.GetTasks() {
				if tk.GetHostId() != "h1" {
					t.Fatalf("warm-up task on %s, want h1", tk.GetHostId())
				}
			}
			// A plan in between takes the warm-up's outcome from the state: from now on, only
			// the store's notifications tell the cache about h1.
			waitIdle(s)
			if _, err := s.cache.begin(); err != nil {
				t.Fatal(err)
			}
			if tt.change != nil {
				tt.change(t, s, d, resp.GetTasks())
			}
			resp, err = run(s, 1)
			var got string
			switch {
			case err != nil:
				got = err.Error()
			case len(resp.GetFailures()) > 0:
				got = resp.GetFailures()[0].GetReason()
			default:
				got = resp.GetTasks()[0].GetHostId()
			}
			if !strings.Contains(got, tt.want) {
				t.Fatalf("next task: %s, want %s", got, tt.want)
			}
			checkCache(t, s)
		})
	}
}

// A plan whose commit fails leaves nothing reserved: the next plan sees the state.
func TestPlanCacheForgetsFailedCommit(t *testing.T) {
	ctx := context.Background()
	st, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	d := fsmtest.New(st)
	fa := &failingApplier{Applier: d, n: 1}
	s := New(st, fa)
	if _, err := s.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: "homelab"}); err != nil {
		t.Fatal(err)
	}
	addHost(t, d, "h1", 1024, true, "homelab")
	addHost(t, d, "h2", 4096, true, "homelab")
	register(t, s, 1024)
	req := &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web"}
	if _, err := s.RunTask(ctx, req); err == nil {
		t.Fatal("the first RunTask must fail")
	}
	resp, err := s.RunTask(ctx, req)
	if err != nil || len(resp.GetTasks()) != 1 || resp.GetTasks()[0].GetHostId() != "h1" {
		t.Fatalf("after a failed commit: %v %v; want the task on h1", resp, err)
	}
	checkCache(t, s)
}

// checkCache compares the planner's cached picture with one built from the state alone.
func checkCache(t *testing.T, s *Server) {
	t.Helper()
	waitIdle(s)
	r, err := s.cache.begin()
	if err != nil {
		t.Fatal(err)
	}
	cached, err := s.cache.index(r, "homelab")
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := newPlanCache(s.store).index(r, "homelab")
	if err != nil {
		t.Fatal(err)
	}
	describe := func(nodes []string) string {
		sort.Strings(nodes)
		return strings.Join(nodes, "\n")
	}
	var a, b []string
	for _, n := range cached.Nodes() {
		a = append(a, fmt.Sprintf("%+v", *n))
	}
	for _, n := range fresh.Nodes() {
		b = append(b, fmt.Sprintf("%+v", *n))
	}
	if got, want := describe(a), describe(b); got != want {
		t.Fatalf("cached nodes:\n%s\nfrom the state:\n%s", got, want)
	}
}

// waitIdle returns once no planner runs: the last one has taken its plans' outcomes.
func waitIdle(s *Server) {
	for {
		s.planMu.Lock()
		planning := s.planning
		s.planMu.Unlock()
		if !planning {
			return
		}
		runtime.Gosched()
	}
}

// gatedApplier holds the first PlaceTasks entry until release is closed (refusing it when
// refuse is set), as a slow disk or a lost leadership would.
type gatedApplier struct {
	*fsmtest.Applier
	refuse  bool
	started chan struct{}
	release chan struct{}
	gated   atomic.Bool
}

func (g *gatedApplier) Apply(ctx context.Context, t fsm.CommandType, m proto.Message) (any, error) {
	first := t == fsm.CmdPlaceTasks && g.gated.CompareAndSwap(false, true)
	if first {
		close(g.started)
		<-g.release
	}
	if first && g.refuse {
		return nil, errors.New("leadership lost")
	}
	return g.Applier.Apply(ctx, t, m)
}

// The planner plans the next batch while the previous one is being written: the next counts
// the one in flight (memory and addresses) until its entry is in the state, or, refused,
// until the planner learns of it.
func TestPlanWhileWriting(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		refuse     bool
		wantSecond int // of 2 tasks, placed while the first 2 are in flight (room for 3)
		wantThird  int // of 2, placed after both
	}{
		{name: "written", wantSecond: 1, wantThird: 0},
		{name: "refused", refuse: true, wantSecond: 1, wantThird: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := state.New()
			if err != nil {
				t.Fatal(err)
			}
			d := fsmtest.New(st)
			g := &gatedApplier{Applier: d, refuse: tt.refuse, started: make(chan struct{}), release: make(chan struct{})}
			s := New(st, g)
			if _, err := s.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: "homelab"}); err != nil {
				t.Fatal(err)
			}
			addHost(t, d, "h1", 128*3, true, "homelab")
			register(t, s, 128)
			req := &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web", Count: 2}
			first := make(chan *orchv1.RunTaskResponse, 1)
			go func() {
				resp, _ := s.RunTask(ctx, req)
				first <- resp
			}()
			<-g.started // the first plan is in flight
			// Meanwhile h1 changes (a task of no size), so the cache reads it again from a state
			// that does not have the plan in flight.
			other := &orchv1.Task{
				Id: NewTaskID(), Cluster: "homelab", HostId: "h1", ContainerInstanceId: fsm.InstanceID("h1", "homelab"),
				LastStatus: lifecycle.Pending, DesiredStatus: lifecycle.DesiredRunning, Cpu: "0", Memory: "0",
				TaskDefinitionArn: "arn:aws:ecs:local:000000000000:task-definition/web:1", Eni: &orchv1.Eni{Ip: "10.64.0.200"},
			}
			if _, err := d.Apply(ctx, fsm.CmdPlaceTasks, &orchv1.PlaceTasksCommand{Tasks: []*orchv1.Task{other}}); err != nil {
				t.Fatal(err)
			}
			second, err := s.RunTask(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if len(second.GetTasks()) != tt.wantSecond || len(second.GetFailures()) != 2-tt.wantSecond {
				t.Fatalf("second: %d tasks, failures %v; want %d tasks", len(second.GetTasks()), second.GetFailures(), tt.wantSecond)
			}
			close(g.release)
			ips := map[string]bool{}
			if resp := <-first; resp != nil {
				for _, tk := range resp.GetTasks() {
					ips[tk.GetEni().GetIp()] = true
				}
			}
			for _, tk := range second.GetTasks() {
				if ips[tk.GetEni().GetIp()] {
					t.Fatalf("address %s handed out twice", tk.GetEni().GetIp())
				}
			}
			third, err := s.RunTask(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if len(third.GetTasks()) != tt.wantThird {
				t.Fatalf("third: %d tasks, failures %v; want %d", len(third.GetTasks()), third.GetFailures(), tt.wantThird)
			}
			checkCache(t, s)
		})
	}
}
