package dispatcher

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/fsm/fsmtest"
	"orch/scheduler/state"
)

// gatedApplier holds the first status write until release is closed, as a slow disk would,
// and counts the entries of each type.
type gatedApplier struct {
	*fsmtest.Applier
	started chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	entries map[fsm.CommandType]int
}

func (g *gatedApplier) Apply(ctx context.Context, t fsm.CommandType, m proto.Message) (any, error) {
	if t == fsm.CmdTaskStatus || t == fsm.CmdTaskStatusBatch {
		g.once.Do(func() { close(g.started); <-g.release })
		g.mu.Lock()
		g.entries[t]++
		g.mu.Unlock()
	}
	return g.Applier.Apply(ctx, t, m)
}

// Reports of many sessions that arrive while a write is in flight share the next entry, and
// each lands on its task.
func TestStatusGroupCommit(t *testing.T) {
	tests := []struct {
		name     string
		sessions int
		want     map[fsm.CommandType]int
	}{
		{name: "a lone report is written as it is", sessions: 1, want: map[fsm.CommandType]int{fsm.CmdTaskStatus: 1}},
		{name: "the others wait for the first and share one entry", sessions: 20,
			want: map[fsm.CommandType]int{fsm.CmdTaskStatus: 1, fsm.CmdTaskStatusBatch: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			st, err := state.New()
			if err != nil {
				t.Fatal(err)
			}
			base := fsmtest.New(st)
			g := &gatedApplier{Applier: base, started: make(chan struct{}), release: make(chan struct{}), entries: map[fsm.CommandType]int{}}
			d := New(st, g, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			if _, err := base.Apply(ctx, fsm.CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: "c", Status: "ACTIVE"}}); err != nil {
				t.Fatal(err)
			}
			var tasks []*orchv1.Task
			for i := 0; i < tt.sessions; i++ {
				host := fmt.Sprintf("h%02d", i)
				if _, err := base.Apply(ctx, fsm.CmdRegisterHost, &orchv1.RegisterHostCommand{Host: &orchv1.Host{
					Id: host, Clusters: []string{"c"}, Cpu: 1024, Memory: 1024, RegisteredAt: timestamppb.Now(),
				}}); err != nil {
					t.Fatal(err)
				}
				tasks = append(tasks, &orchv1.Task{Id: "t-" + host, HostId: host, ContainerInstanceId: fsm.InstanceID(host, "c"),
					LastStatus: lifecycle.Pending, DesiredStatus: lifecycle.DesiredRunning, Eni: &orchv1.Eni{Ip: "10.64.0.2"}})
			}
			if _, err := base.Apply(ctx, fsm.CmdPlaceTasks, &orchv1.PlaceTasksCommand{Tasks: tasks}); err != nil {
				t.Fatal(err)
			}
			errs := make(chan error, tt.sessions)
			report := func(host string) {
				d.queueStatuses(host, []*orchv1.TaskStatus{{TaskId: "t-" + host, LastStatus: lifecycle.Running}}, func(err error) { errs <- err })
			}
			report("h00")
			<-g.started // the first write is in flight: everything else queues behind it
			for i := 1; i < tt.sessions; i++ {
				report(fmt.Sprintf("h%02d", i))
			}
			waitQueued(t, d, tt.sessions-1)
			close(g.release)
			for i := 0; i < tt.sessions; i++ {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			for _, tk := range tasks {
				got, _ := st.Read().Task(nil, tk.GetId())
				if got.GetLastStatus() != lifecycle.Running {
					t.Errorf("task %s: %s, want RUNNING", tk.GetId(), got.GetLastStatus())
				}
			}
			g.mu.Lock()
			defer g.mu.Unlock()
			for ct, n := range tt.want {
				if g.entries[ct] != n {
					t.Errorf("%d entries of type %d, want %d (all: %v)", g.entries[ct], ct, n, g.entries)
				}
			}
		})
	}
}

func waitQueued(t *testing.T, d *Dispatcher, n int) {
	t.Helper()
	for {
		d.statuses.mu.Lock()
		q := len(d.statuses.queue)
		d.statuses.mu.Unlock()
		if q == n {
			return
		}
		runtime.Gosched()
	}
}
