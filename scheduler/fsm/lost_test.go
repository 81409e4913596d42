package fsm

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

// lostHarness has cluster a with hosts h1 (disconnected) and h2, and tasks:
// run1 RUNNING on h1; stopping1 RUNNING on h1 with a user's stop pending; done1 STOPPED on h1
// (exited by itself); run2 RUNNING on h2.
func lostHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.must(CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: "a"}})
	for _, id := range []string{"h1", "h2"} {
		h.must(CmdRegisterHost, &orchv1.RegisterHostCommand{Host: &orchv1.Host{Id: id, Hostname: "node-" + id, Clusters: []string{"a"}, Cpu: 1024, Memory: 1024}})
		h.must(CmdHostConnection, &orchv1.HostConnectionCommand{HostId: id, Connected: true, At: timestamppb.Now()})
	}
	on := func(id, host, ip string) *orchv1.Task {
		tk := task(id, ip)
		tk.HostId, tk.ContainerInstanceId = host, InstanceID(host, "a")
		tk.Containers = append(tk.Containers, &orchv1.Container{Name: "sidecar", LastStatus: lifecycle.ContainerPending})
		return tk
	}
	h.must(CmdPlaceTasks, &orchv1.PlaceTasksCommand{Tasks: []*orchv1.Task{
		on("run1", "h1", "10.64.0.2"), on("stopping1", "h1", "10.64.0.3"), on("done1", "h1", "10.64.0.4"), on("run2", "h2", "10.64.1.2"),
	}})
	running := func(host, id string) {
		h.must(CmdTaskStatus, &orchv1.TaskStatusCommand{HostId: host, Tasks: []*orchv1.TaskStatus{{
			TaskId: id, LastStatus: lifecycle.Running, StartedAt: timestamppb.Now(),
			Containers: []*orchv1.ContainerStatus{{Name: "web", LastStatus: lifecycle.ContainerRunning}, {Name: "sidecar", LastStatus: lifecycle.ContainerRunning}},
		}}})
	}
	running("h1", "run1")
	running("h1", "stopping1")
	running("h2", "run2")
	// The sidecar of run1 exited by itself; done1 ran and exited.
	h.must(CmdTaskStatus, &orchv1.TaskStatusCommand{HostId: "h1", Tasks: []*orchv1.TaskStatus{
		{TaskId: "run1", Containers: []*orchv1.ContainerStatus{{Name: "sidecar", LastStatus: lifecycle.ContainerStopped, ExitCode: proto.Int32(0), Reason: "done"}}},
		{TaskId: "done1", LastStatus: lifecycle.Stopped, StopCode: lifecycle.EssentialContainerExited, StoppedReason: "Essential container in task exited",
			ObservedAt: timestamppb.Now()},
	}})
	h.must(CmdStopTasks, &orchv1.StopTasksCommand{TaskIds: []string{"stopping1"}, StopCode: lifecycle.UserInitiated, Reason: "scaling down", At: timestamppb.Now()})
	h.must(CmdHostConnection, &orchv1.HostConnectionCommand{HostId: "h1", Connected: false, At: timestamppb.Now()})
	return h
}

func (h *harness) getTask(id string) *orchv1.Task {
	h.t.Helper()
	tk, err := h.f.Store().Read().Task(nil, id)
	if err != nil || tk == nil {
		h.t.Fatalf("task %s: %v %v", id, tk, err)
	}
	return tk
}

func TestTasksLost(t *testing.T) {
	const reason = "Host node-h1 (h1) was lost: no heartbeat since 2025-03-01T12:00:00Z"
	at := timestamppb.Now()
	lost := &orchv1.TasksLostCommand{HostId: "h1", TaskIds: []string{"run1", "stopping1", "done1", "run2", "gone"}, Reason: reason, At: at}

	tests := []struct {
		task                    string
		lost                    bool
		stopCode, stoppedReason string
	}{
		{task: "run1", lost: true, stopCode: StopCodeHostLost, stoppedReason: reason},
		{task: "stopping1", lost: true, stopCode: lifecycle.UserInitiated, stoppedReason: "scaling down"}, // the user's stop is kept
		{task: "done1", stopCode: lifecycle.EssentialContainerExited, stoppedReason: "Essential container in task exited"},
		{task: "run2"}, // another host's task, even when named
	}
	h := lostHarness(t)
	before := map[string]*orchv1.Task{}
	for _, tt := range tests {
		before[tt.task] = h.getTask(tt.task)
	}
	out := h.must(CmdTasksLost, lost).([]*orchv1.Task)
	if len(out) != 2 {
		t.Fatalf("%d tasks marked lost, want 2", len(out))
	}
	for _, tt := range tests {
		t.Run(tt.task, func(t *testing.T) {
			got := h.getTask(tt.task)
			if !tt.lost {
				if !proto.Equal(got, before[tt.task]) {
					t.Fatalf("changed:\nbefore %v\nafter  %v", before[tt.task], got)
				}
				return
			}
			if got.GetLastStatus() != lifecycle.Stopped || got.GetDesiredStatus() != lifecycle.DesiredStopped ||
				got.GetStopCode() != tt.stopCode || got.GetStoppedReason() != tt.stoppedReason ||
				!got.GetEniHeld() || got.GetVersion() != before[tt.task].GetVersion()+1 {
				t.Fatalf("lost task: %v", got)
			}
			if !proto.Equal(got.GetStoppedAt(), at) || !proto.Equal(got.GetExecutionStoppedAt(), at) {
				t.Errorf("stoppedAt %v executionStoppedAt %v, want %v", got.GetStoppedAt(), got.GetExecutionStoppedAt(), at)
			}
			if tt.task == "stopping1" && proto.Equal(got.GetStoppingAt(), at) {
				t.Errorf("stoppingAt of a task the user stopped earlier was overwritten")
			}
			if tt.task == "run1" && !proto.Equal(got.GetStoppingAt(), at) {
				t.Errorf("stoppingAt %v, want %v", got.GetStoppingAt(), at)
			}
			for _, c := range got.GetContainers() {
				want := ContainerReasonHostLost
				if tt.task == "run1" && c.GetName() == "sidecar" {
					want = "done" // it had stopped by itself
				}
				if c.GetLastStatus() != lifecycle.ContainerStopped || c.GetReason() != want {
					t.Errorf("container %s: %s %q, want STOPPED %q", c.GetName(), c.GetLastStatus(), c.GetReason(), want)
				}
			}
		})
	}

	// Idempotent: the same command again changes nothing.
	index := h.f.Store().Read().TableIndex(state.TableTasks)
	if out := h.must(CmdTasksLost, lost).([]*orchv1.Task); len(out) != 0 {
		t.Fatalf("applied again: %d tasks changed", len(out))
	}
	if got := h.f.Store().Read().TableIndex(state.TableTasks); got != index {
		t.Fatalf("applied again: the tasks table changed (index %d -> %d)", index, got)
	}
}

func TestTasksLostRefusedWhileConnected(t *testing.T) {
	h := lostHarness(t)
	h.must(CmdHostConnection, &orchv1.HostConnectionCommand{HostId: "h1", Connected: true, At: timestamppb.Now()})
	before := h.getTask("run1")
	_, err := h.apply(CmdTasksLost, &orchv1.TasksLostCommand{HostId: "h1", TaskIds: []string{"run1"}, At: timestamppb.Now()})
	if !errors.Is(err, state.ErrConflict) {
		t.Fatalf("err = %v, want conflict", err)
	}
	if !proto.Equal(before, h.getTask("run1")) {
		t.Fatal("a refused command changed the task")
	}
}

// TestHeldAddress: a lost task's address is held, for placement and against retention, until
// its host reports the task STOPPED.
func TestHeldAddress(t *testing.T) {
	h := lostHarness(t)
	h.must(CmdTasksLost, &orchv1.TasksLostCommand{HostId: "h1", TaskIds: []string{"run1"}, At: timestamppb.Now()})
	if got := h.getTask("run1").GetStoppedReason(); got != "Host h1 was lost" {
		t.Errorf("default reason %q", got)
	}
	place := func(id string) error {
		tk := task(id, "10.64.0.2") // run1's address
		_, err := h.apply(CmdPlaceTasks, &orchv1.PlaceTasksCommand{Tasks: []*orchv1.Task{tk}})
		return err
	}
	steps := []struct {
		name      string
		do        func()
		wantHeld  bool
		wantPlace bool // placing a new task on the address succeeds
	}{
		{"lost", func() {}, true, false},
		{"retention", func() {
			h.must(CmdDeleteTasks, &orchv1.DeleteTasksCommand{TaskIds: []string{"run1"}})
		}, true, false},
		{"a report from another host", func() {
			h.must(CmdTaskStatus, &orchv1.TaskStatusCommand{HostId: "h2", Tasks: []*orchv1.TaskStatus{{TaskId: "run1", LastStatus: lifecycle.Stopped}}})
		}, true, false},
		{"the agent's replay: still RUNNING", func() {
			h.must(CmdTaskStatus, &orchv1.TaskStatusCommand{HostId: "h1", Tasks: []*orchv1.TaskStatus{{TaskId: "run1", LastStatus: lifecycle.Running}}})
		}, true, false},
		{"the agent stopped it", func() {
			h.must(CmdTaskStatus, &orchv1.TaskStatusCommand{HostId: "h1", Tasks: []*orchv1.TaskStatus{{TaskId: "run1", LastStatus: lifecycle.Stopped,
				ObservedAt: timestamppb.Now(), Containers: []*orchv1.ContainerStatus{{Name: "web", LastStatus: lifecycle.ContainerStopped, ExitCode: proto.Int32(137)}}}}})
		}, false, true},
	}
	for i, s := range steps {
		s.do()
		tk := h.getTask("run1")
		if tk.GetEniHeld() != s.wantHeld || tk.GetLastStatus() != lifecycle.Stopped || tk.GetStopCode() != StopCodeHostLost {
			t.Fatalf("%s: %v", s.name, tk)
		}
		err := place("new" + string(rune('a'+i)))
		if (err == nil) != s.wantPlace {
			t.Fatalf("%s: placing a task on the address: err = %v, want success %t", s.name, err, s.wantPlace)
		}
		if err != nil && !errors.Is(err, state.ErrConflict) {
			t.Fatalf("%s: err = %v, want conflict", s.name, err)
		}
	}
	if c := h.getTask("run1").GetContainers()[0]; c.GetExitCode() != 137 || c.GetReason() != ContainerReasonHostLost {
		t.Errorf("container after the confirmation: %v", c)
	}
}
