package controllers

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"orch/pkg/arn"
	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/api"
	"orch/scheduler/dispatcher"
	"orch/scheduler/fsm"
	"orch/scheduler/state"
)

// TestLostOnLiveSession: a session that stays open while its agent is silent past grace +
// lost timeout (a stall) must still tell the agent to stop the tasks marked lost meanwhile.
// Needs the assignLoop change in /tmp/liveness-assignloop.patch.
func TestLostOnLiveSession(t *testing.T) {
	st, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	raft := &directApplier{f: fsm.New(st, arn.Default, quiet())}
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
	live := NewLiveness(st, raft, disp.LastSeen, time.Now, LivenessConfig{
		Grace: 200 * time.Millisecond, LostAfter: 200 * time.Millisecond, Interval: 20 * time.Millisecond, Logger: quiet(),
	})
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
