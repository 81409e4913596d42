package controllers

import (
	"context"
	"testing"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
)

// TestAssignmentsFollowDesiredStatus: a session sends a task when it is placed and again only
// when its desired status changes; the agent's own statuses and usage are not echoed back (at
// 10,000 nodes the echoes were half of the leader's assignment traffic, and a real agent
// checkpointed each one).
func TestAssignmentsFollowDesiredStatus(t *testing.T) {
	e := newSessionEnv(t, grace, lostAfter)
	ctx, st, s := context.Background(), e.st, e.api
	agent := openSession(t, e.client, e.reg.GetHost().GetId())
	if full := agent.next(); !full.GetFull() || len(full.GetTasks()) != 0 {
		t.Fatalf("first message: want the full, empty set, got %v", full)
	}
	resp, err := s.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web"})
	if err != nil || len(resp.GetTasks()) != 1 {
		t.Fatalf("run-task: %v %v", resp, err)
	}
	id := resp.GetTasks()[0].GetId()
	if as := agent.next(); len(as.GetTasks()) != 1 || as.GetTasks()[0].GetTask().GetId() != id {
		t.Fatalf("placement: want task %s, got %v", id, as)
	}

	agent.report(&orchv1.TaskStatus{TaskId: id, LastStatus: lifecycle.Running,
		Containers: []*orchv1.ContainerStatus{{Name: "web", LastStatus: lifecycle.ContainerRunning}}})
	agent.send(&orchv1.AgentMessage{Msg: &orchv1.AgentMessage_Usage{Usage: &orchv1.TaskUsageReport{
		Tasks: []*orchv1.TaskUsageReport_Entry{{TaskId: id, Usage: &orchv1.TaskUsage{MemoryBytes: 1 << 20}}}}}})
	waitFor(t, "the report and the usage in the state", func() bool {
		task, _ := st.Read().Task(nil, id)
		return task.GetLastStatus() == lifecycle.Running && task.GetUsage().GetMemoryBytes() == 1<<20
	})

	if _, err := s.StopTask(ctx, &orchv1.StopTaskRequest{Cluster: "homelab", Task: id, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	// The next message is the stop: neither the RUNNING report nor the usage came back.
	as := agent.next()
	if len(as.GetTasks()) != 1 || as.GetTasks()[0].GetTask().GetDesiredStatus() != lifecycle.DesiredStopped {
		t.Fatalf("after the agent's report and usage: want only the stop, got %v", as)
	}
}
