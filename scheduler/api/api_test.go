package api

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/arn"
	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/fsm/fsmtest"
	"orch/scheduler/state"
)

func newServer(t *testing.T, hostMemory int32) (*Server, *fsmtest.Applier) {
	t.Helper()
	st, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := fsmtest.New(st)
	s := New(st, d, WithLogger(log))
	ctx := context.Background()
	if _, err := s.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: "homelab"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Apply(ctx, fsm.CmdRegisterHost, &orchv1.RegisterHostCommand{Host: &orchv1.Host{
		Id: "h1", Clusters: []string{"homelab"}, Cpu: 2048, Memory: hostMemory, RegisteredAt: timestamppb.Now(),
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Apply(ctx, fsm.CmdHostConnection, &orchv1.HostConnectionCommand{HostId: "h1", Connected: true}); err != nil {
		t.Fatal(err)
	}
	return s, d
}

func register(t *testing.T, s *Server, memory int32) {
	t.Helper()
	_, err := s.RegisterTaskDefinition(context.Background(), &orchv1.RegisterTaskDefinitionRequest{TaskDefinition: &orchv1.TaskDefinition{
		Family: "web", NetworkMode: "awsvpc",
		ContainerDefinitions: []*orchv1.ContainerDefinition{{
			Name: "web", Image: "busybox", Memory: proto.Int32(memory),
			PortMappings: []*orchv1.PortMapping{{ContainerPort: 80}},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRunTaskPlacesWithDistinctAddresses(t *testing.T) {
	s, _ := newServer(t, 4096)
	register(t, s, 128)
	// awsvpc tasks each have their own address, so two tasks on port 80 share a node.
	resp, err := s.RunTask(context.Background(), &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web", Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetTasks()) != 2 || len(resp.GetFailures()) != 0 {
		t.Fatalf("tasks %d failures %v", len(resp.GetTasks()), resp.GetFailures())
	}
	if resp.GetTasks()[0].GetEni().GetIp() == resp.GetTasks()[1].GetEni().GetIp() {
		t.Fatal("two tasks got the same address")
	}
	tk := resp.GetTasks()[0]
	if tk.GetLastStatus() != lifecycle.Provisioning || tk.GetEni().GetIp() != "10.64.0.2" || tk.GetGroup() != "family:web" ||
		tk.GetAttachments()[0].GetDetails()[3].GetValue() != "10.64.0.2" || !strings.HasPrefix(tk.GetTaskArn(), "arn:aws:ecs:local:000000000000:task/homelab/") {
		t.Fatalf("task: %v", tk)
	}
}

func TestHostModePortsConflict(t *testing.T) {
	s, _ := newServer(t, 4096)
	_, err := s.RegisterTaskDefinition(context.Background(), &orchv1.RegisterTaskDefinitionRequest{TaskDefinition: &orchv1.TaskDefinition{
		Family: "hostweb", NetworkMode: "host",
		ContainerDefinitions: []*orchv1.ContainerDefinition{{
			Name: "web", Image: "busybox", Memory: proto.Int32(64),
			PortMappings: []*orchv1.PortMapping{{ContainerPort: 80}},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.RunTask(context.Background(), &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "hostweb", Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetTasks()) != 1 || len(resp.GetFailures()) != 1 || resp.GetFailures()[0].GetReason() != "RESOURCE:PORTS" {
		t.Fatalf("tasks %d failures %v", len(resp.GetTasks()), resp.GetFailures())
	}
}

func TestRunTaskTooBig(t *testing.T) {
	s, _ := newServer(t, 1024)
	register(t, s, 2048)
	resp, err := s.RunTask(context.Background(), &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetTasks()) != 0 || len(resp.GetFailures()) != 1 || resp.GetFailures()[0].GetReason() != "RESOURCE:MEMORY" {
		t.Fatalf("resp = %v", resp)
	}
	if tasks, _ := s.store.Read().Tasks(nil); len(tasks) != 0 {
		t.Fatalf("%d tasks stored, want none", len(tasks))
	}
}

func TestRequestErrors(t *testing.T) {
	s, _ := newServer(t, 4096)
	register(t, s, 128)
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"unknown cluster", func() error {
			_, err := s.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: "nope", TaskDefinition: "web"})
			return err
		}, codes.NotFound, "cluster nope"},
		{"unknown task definition", func() error {
			_, err := s.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "nope:3"})
			return err
		}, codes.NotFound, "nope:3"},
		{"count", func() error {
			_, err := s.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web", Count: 11})
			return err
		}, codes.InvalidArgument, "count"},
		{"override of a missing container", func() error {
			_, err := s.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web",
				Overrides: &orchv1.TaskOverride{ContainerOverrides: []*orchv1.ContainerOverride{{Name: "db"}}}})
			return err
		}, codes.InvalidArgument, "overrides.containerOverrides[0].name"},
		{"invalid task definition", func() error {
			_, err := s.RegisterTaskDefinition(ctx, &orchv1.RegisterTaskDefinitionRequest{TaskDefinition: &orchv1.TaskDefinition{
				Family: "bad", ContainerDefinitions: []*orchv1.ContainerDefinition{{Name: "x", Memory: proto.Int32(64)}}}})
			return err
		}, codes.InvalidArgument, "containerDefinitions[0].image"},
		{"bad cidr", func() error {
			_, err := s.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: "x", Cidr: "10.1.2.3/16"})
			return err
		}, codes.InvalidArgument, "cidr"},
		{"stop unknown task", func() error {
			_, err := s.StopTask(ctx, &orchv1.StopTaskRequest{Cluster: "homelab", Task: "abc"})
			return err
		}, codes.NotFound, "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %s mentioning %q", err, tt.code, tt.msg)
			}
		})
	}
	if tds, _ := s.store.Read().TaskDefinitionsByFamily(nil, "bad"); len(tds) != 0 {
		t.Fatal("an invalid task definition was stored")
	}
}

type watchStream struct {
	orchv1.Orch_WatchTasksServer
	ctx  context.Context
	sent chan *orchv1.WatchTasksResponse
}

func (w *watchStream) Context() context.Context { return w.ctx }
func (w *watchStream) Send(r *orchv1.WatchTasksResponse) error {
	w.sent <- r
	return nil
}

func TestWatchAndStop(t *testing.T) {
	s, d := newServer(t, 4096)
	register(t, s, 128)
	ctx := context.Background()
	resp, err := s.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web"})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetTasks()[0].GetId()
	ws := &watchStream{ctx: ctx, sent: make(chan *orchv1.WatchTasksResponse, 10)}
	done := make(chan error, 1)
	go func() {
		done <- s.WatchTasks(&orchv1.WatchTasksRequest{Cluster: "homelab", Tasks: []string{id}, UntilStatus: lifecycle.Running}, ws)
	}()
	if first := <-ws.sent; first.GetTasks()[0].GetLastStatus() != lifecycle.Provisioning {
		t.Fatalf("first watch event: %v", first)
	}
	if _, err := d.Apply(ctx, fsm.CmdTaskStatus, &orchv1.TaskStatusCommand{HostId: "h1", Tasks: []*orchv1.TaskStatus{{TaskId: id, LastStatus: lifecycle.Running}}}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("watch: %v", err)
	}
	if last := <-ws.sent; last.GetTasks()[0].GetLastStatus() != lifecycle.Running {
		t.Fatalf("last watch event: %v", last)
	}
	stopped, err := s.StopTask(ctx, &orchv1.StopTaskRequest{Cluster: "homelab", Task: arn.Default.Task("homelab", id)})
	if err != nil {
		t.Fatal(err)
	}
	if stopped.GetTask().GetDesiredStatus() != lifecycle.DesiredStopped || stopped.GetTask().GetStoppedReason() != "Task stopped by user" {
		t.Fatalf("stop: %v", stopped.GetTask())
	}
	list, _ := s.ListTasks(ctx, &orchv1.ListTasksRequest{Cluster: "homelab", DesiredStatus: "STOPPED"})
	if len(list.GetTaskArns()) != 1 {
		t.Fatalf("list STOPPED = %v", list.GetTaskArns())
	}
	desc, _ := s.DescribeTasks(ctx, &orchv1.DescribeTasksRequest{Cluster: "homelab", Tasks: []string{id, "missing"}})
	if len(desc.GetTasks()) != 1 || len(desc.GetFailures()) != 1 || desc.GetFailures()[0].GetReason() != "MISSING" {
		t.Fatalf("describe: %v", desc)
	}
}

// TestTaskARNs: the state keeps a task without its ARNs (they are more than half of a placed
// task's Raft entry); every API view of it has them, the same each time, and its containers
// have theirs and their network interface.
func TestTaskARNs(t *testing.T) {
	s, _ := newServer(t, 4096)
	register(t, s, 128)
	ctx := context.Background()
	run, err := s.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web"})
	if err != nil || len(run.GetTasks()) != 1 {
		t.Fatalf("run-task: %v %v", run, err)
	}
	id := run.GetTasks()[0].GetId()
	stored, _ := s.store.Read().Task(nil, id)
	ci := stored.GetContainerInstanceId()
	if stored.GetTaskArn() != "" || stored.GetContainers()[0].GetContainerArn() != "" {
		t.Fatalf("stored task carries its ARNs: %v", stored)
	}
	prefix := "arn:aws:ecs:local:000000000000:"
	check := func(view string, tk *orchv1.Task) {
		t.Helper()
		c := tk.GetContainers()[0]
		for _, f := range []struct{ name, got, want string }{
			{"taskArn", tk.GetTaskArn(), prefix + "task/homelab/" + id},
			{"clusterArn", tk.GetClusterArn(), prefix + "cluster/homelab"},
			{"containerInstanceArn", tk.GetContainerInstanceArn(), prefix + "container-instance/homelab/" + ci},
			{"containers[0].containerArn", c.GetContainerArn(), prefix + "container/homelab/" + id + "/web"},
			{"containers[0].taskArn", c.GetTaskArn(), prefix + "task/homelab/" + id},
			{"containers[0].networkInterfaces[0].privateIpv4Address", c.GetNetworkInterfaces()[0].GetPrivateIpv4Address(), tk.GetEni().GetIp()},
			{"containers[0].networkInterfaces[0].attachmentId", c.GetNetworkInterfaces()[0].GetAttachmentId(), tk.GetEni().GetId()},
		} {
			if f.got != f.want {
				t.Errorf("%s: %s = %q, want %q", view, f.name, f.got, f.want)
			}
		}
	}
	check("run-task", run.GetTasks()[0])
	desc, err := s.DescribeTasks(ctx, &orchv1.DescribeTasksRequest{Cluster: "homelab", Tasks: []string{id}})
	if err != nil || len(desc.GetTasks()) != 1 {
		t.Fatalf("describe-tasks: %v %v", desc, err)
	}
	check("describe-tasks", desc.GetTasks()[0])
	list, err := s.ListTasks(ctx, &orchv1.ListTasksRequest{Cluster: "homelab"})
	if err != nil || len(list.GetTaskArns()) != 1 || list.GetTaskArns()[0] != prefix+"task/homelab/"+id {
		t.Fatalf("list-tasks: %v %v", list.GetTaskArns(), err)
	}
	stop, err := s.StopTask(ctx, &orchv1.StopTaskRequest{Cluster: "homelab", Task: list.GetTaskArns()[0]})
	if err != nil {
		t.Fatal(err)
	}
	check("stop-task", stop.GetTask())
}
