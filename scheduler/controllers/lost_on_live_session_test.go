package controllers

import (
	"context"
	"testing"
	"time"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
)

// TestLostOnLiveSession: a session that stays open while its agent is silent past grace +
// lost timeout (a stall) must still tell the agent to stop the tasks marked lost meanwhile.
func TestLostOnLiveSession(t *testing.T) {
	e := newSessionEnv(t, 200*time.Millisecond, 200*time.Millisecond)
	ctx, st, s, client, reg := context.Background(), e.st, e.api, e.client, e.reg
	connected := func() bool { h, _ := st.Read().Host(nil, reg.GetHost().GetId()); return h.GetConnected() }
	agent := openSession(t, client, reg.GetHost().GetId())
	agent.next()
	waitFor(t, "the host to be connected", connected)
	resp, err := s.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web"})
	if err != nil || len(resp.GetTasks()) != 1 {
		t.Fatalf("run-task: %v %v", resp, err)
	}
	id := resp.GetTasks()[0].GetId()
	agent.next()
	agent.report(&orchv1.TaskStatus{TaskId: id, LastStatus: lifecycle.Running})
	agent.pause(true) // the stream stays open
	for {
		if as := agent.next(); len(as.GetRemovedTaskIds()) == 1 && as.GetRemovedTaskIds()[0] == id {
			break
		}
	}
	agent.pause(false)
	waitFor(t, "the host to be marked connected again", connected)
}
