package fsm

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
)

// A batch of several hosts' reports leaves the state exactly as the same reports applied one
// TaskStatusCommand at a time, in order.
func TestTaskStatusBatch(t *testing.T) {
	place := func(h *harness) {
		var tasks []*orchv1.Task
		for i, host := range []string{"h1", "h1", "h2"} {
			tasks = append(tasks, &orchv1.Task{
				Id: []string{"t1", "t2", "t3"}[i], HostId: host, ContainerInstanceId: "ci-" + host,
				LastStatus: lifecycle.Pending, DesiredStatus: lifecycle.DesiredRunning,
				Eni:        &orchv1.Eni{Ip: []string{"10.0.0.2", "10.0.0.3", "10.0.1.2"}[i]},
				Containers: []*orchv1.Container{{Name: "app", LastStatus: lifecycle.ContainerPending}},
			})
		}
		h.must(CmdPlaceTasks, &orchv1.PlaceTasksCommand{Tasks: tasks})
	}
	running := func(id string) *orchv1.TaskStatus {
		return &orchv1.TaskStatus{TaskId: id, LastStatus: lifecycle.Running,
			Containers: []*orchv1.ContainerStatus{{Name: "app", LastStatus: lifecycle.ContainerRunning, RuntimeId: "r-" + id}}}
	}
	tests := []struct {
		name  string
		cmds  []*orchv1.TaskStatusCommand
		wants map[string]string // task -> lastStatus after
		count int               // tasks changed
	}{
		{name: "two hosts", cmds: []*orchv1.TaskStatusCommand{
			{HostId: "h1", Tasks: []*orchv1.TaskStatus{running("t1"), running("t2")}},
			{HostId: "h2", Tasks: []*orchv1.TaskStatus{running("t3")}},
		}, wants: map[string]string{"t1": lifecycle.Running, "t2": lifecycle.Running, "t3": lifecycle.Running}, count: 3},
		{name: "a host reporting another's task is ignored", cmds: []*orchv1.TaskStatusCommand{
			{HostId: "h2", Tasks: []*orchv1.TaskStatus{running("t1"), running("t3")}},
		}, wants: map[string]string{"t1": lifecycle.Pending, "t3": lifecycle.Running}, count: 1},
		{name: "one host twice, in order", cmds: []*orchv1.TaskStatusCommand{
			{HostId: "h1", Tasks: []*orchv1.TaskStatus{running("t1")}},
			{HostId: "h1", Tasks: []*orchv1.TaskStatus{{TaskId: "t1", LastStatus: lifecycle.Stopped}, running("t2")}},
			{HostId: "h1", Tasks: []*orchv1.TaskStatus{running("t1")}}, // backwards: ignored
		}, wants: map[string]string{"t1": lifecycle.Stopped, "t2": lifecycle.Running}, count: 3},
		{name: "unknown tasks", cmds: []*orchv1.TaskStatusCommand{
			{HostId: "h1", Tasks: []*orchv1.TaskStatus{running("nope")}},
		}, wants: map[string]string{"t1": lifecycle.Pending}, count: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			batched, single := newHarness(t), newHarness(t)
			place(batched)
			place(single)
			if got := batched.must(CmdTaskStatusBatch, &orchv1.TaskStatusBatchCommand{Commands: tt.cmds}).(int); got != tt.count {
				t.Fatalf("%d tasks changed, want %d", got, tt.count)
			}
			for _, c := range tt.cmds {
				single.must(CmdTaskStatus, c)
			}
			for id, want := range tt.wants {
				tk, _ := batched.f.Store().Read().Task(nil, id)
				if tk.GetLastStatus() != want {
					t.Errorf("task %s: %s, want %s", id, tk.GetLastStatus(), want)
				}
			}
			a, _ := batched.f.Store().Read().Tasks(nil)
			b, _ := single.f.Store().Read().Tasks(nil)
			if len(a) != len(b) {
				t.Fatalf("%d tasks, %d applied singly", len(a), len(b))
			}
			for i := range a {
				x, y := proto.Clone(a[i]).(*orchv1.Task), proto.Clone(b[i]).(*orchv1.Task)
				x.ModifyIndex, y.ModifyIndex = 0, 0 // the entries' indexes differ
				if !proto.Equal(x, y) {
					t.Fatalf("task %s:\nbatched %v\nsingly  %v", a[i].GetId(), x, y)
				}
			}
		})
	}
}
