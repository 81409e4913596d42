package fsm

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/arn"
	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

type harness struct {
	t     testing.TB
	f     *FSM
	index uint64
}

func newHarness(t testing.TB) *harness {
	s, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, f: New(s, arn.Default, slog.New(slog.NewTextHandler(io.Discard, nil)))}
}

func (h *harness) apply(ct CommandType, m proto.Message) (any, error) {
	h.t.Helper()
	b, err := Encode(ct, m)
	if err != nil {
		h.t.Fatal(err)
	}
	h.index++
	res := h.f.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: b}).(Result)
	return res.Value, res.Err
}

func (h *harness) must(ct CommandType, m proto.Message) any {
	h.t.Helper()
	v, err := h.apply(ct, m)
	if err != nil {
		h.t.Fatalf("command %d: %v", ct, err)
	}
	return v
}

func TestClustersAndHosts(t *testing.T) {
	h := newHarness(t)
	a := h.must(CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: "a"}}).(*orchv1.Cluster)
	b := h.must(CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: "b"}}).(*orchv1.Cluster)
	if a.GetCidr() != "10.64.0.0/16" || b.GetCidr() != "10.65.0.0/16" {
		t.Fatalf("default CIDRs %s, %s", a.GetCidr(), b.GetCidr())
	}
	if _, err := h.apply(CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: "c", Cidr: "10.64.128.0/17"}}); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("overlapping CIDR: err = %v, want conflict", err)
	}
	again := h.must(CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: "a"}}).(*orchv1.Cluster)
	if again.GetCidr() != a.GetCidr() {
		t.Fatal("CreateCluster must be idempotent")
	}

	// A wildcard host gets an instance in every cluster, with distinct subnets per host.
	for _, id := range []string{"h1", "h2"} {
		resp := h.must(CmdRegisterHost, &orchv1.RegisterHostCommand{Host: &orchv1.Host{
			Id: id, Clusters: []string{"*"}, Cpu: 2048, Memory: 4096, RegisteredAt: timestamppb.Now(),
		}}).(*orchv1.RegisterHostResponse)
		if len(resp.GetContainerInstances()) != 2 {
			t.Fatalf("host %s: %d instances, want 2", id, len(resp.GetContainerInstances()))
		}
	}
	r := h.f.Store().Read()
	insts, _ := r.InstancesByCluster(nil, "a")
	if len(insts) != 2 || insts[0].GetSubnet() == insts[1].GetSubnet() {
		t.Fatalf("instances of a: %v", insts)
	}
	// A cluster created later gets the wildcard hosts too.
	h.must(CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: "late"}})
	if insts, _ := h.f.Store().Read().InstancesByCluster(nil, "late"); len(insts) != 2 {
		t.Fatalf("late cluster has %d instances, want 2", len(insts))
	}
	// Registering again keeps the instance id and subnet.
	h.must(CmdRegisterHost, &orchv1.RegisterHostCommand{Host: &orchv1.Host{Id: "h1", Clusters: []string{"*"}, Cpu: 2048, Memory: 4096}})
	ci, _ := h.f.Store().Read().Instance(nil, InstanceID("h1", "a"))
	if ci == nil || ci.GetSubnet() != insts0Subnet(insts, "h1") {
		t.Fatalf("re-registration changed the instance: %v", ci)
	}
	if _, err := h.apply(CmdRegisterHost, &orchv1.RegisterHostCommand{Host: &orchv1.Host{Id: "h3", Clusters: []string{"nope"}}}); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("unknown cluster: err = %v", err)
	}
}

func insts0Subnet(insts []*orchv1.ContainerInstance, host string) string {
	for _, ci := range insts {
		if ci.GetHostId() == host {
			return ci.GetSubnet()
		}
	}
	return ""
}

func TestTaskDefinitionRevisions(t *testing.T) {
	h := newHarness(t)
	for want := int32(1); want <= 3; want++ {
		td := h.must(CmdRegisterTaskDefinition, &orchv1.RegisterTaskDefinitionCommand{TaskDefinition: &orchv1.TaskDefinition{Family: "web"}}).(*orchv1.TaskDefinition)
		if td.GetRevision() != want || td.GetTaskDefinitionArn() != arn.Default.TaskDefinition("web", want) || td.GetStatus() != "ACTIVE" {
			t.Fatalf("revision %d: %v", want, td)
		}
	}
	h.must(CmdDeregisterTaskDefinition, &orchv1.DeregisterTaskDefinitionCommand{Family: "web", Revision: 3})
	latest, _ := h.f.Store().Read().TaskDefinition(nil, "web", 0)
	if latest.GetRevision() != 2 {
		t.Fatalf("latest ACTIVE = %d, want 2", latest.GetRevision())
	}
	td := h.must(CmdRegisterTaskDefinition, &orchv1.RegisterTaskDefinitionCommand{TaskDefinition: &orchv1.TaskDefinition{Family: "web"}}).(*orchv1.TaskDefinition)
	if td.GetRevision() != 4 {
		t.Fatalf("after a deregistered revision the next is %d, want 4", td.GetRevision())
	}
}

func task(id, ip string) *orchv1.Task {
	return &orchv1.Task{
		Id: id, Cluster: "a", HostId: "h1", ContainerInstanceId: InstanceID("h1", "a"),
		LastStatus: lifecycle.Provisioning, DesiredStatus: lifecycle.DesiredRunning,
		Eni:        &orchv1.Eni{Ip: ip},
		Containers: []*orchv1.Container{{Name: "web", LastStatus: lifecycle.ContainerPending}},
	}
}

func TestTaskLifecycle(t *testing.T) {
	h := newHarness(t)
	h.must(CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: "a"}})
	h.must(CmdRegisterHost, &orchv1.RegisterHostCommand{Host: &orchv1.Host{Id: "h1", Clusters: []string{"a"}, Cpu: 1024, Memory: 1024}})
	h.must(CmdPlaceTasks, &orchv1.PlaceTasksCommand{Tasks: []*orchv1.Task{task("t1", "10.64.0.2")}})
	if _, err := h.apply(CmdPlaceTasks, &orchv1.PlaceTasksCommand{Tasks: []*orchv1.Task{task("t2", "10.64.0.2")}}); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("the same IP twice: err = %v, want conflict", err)
	}
	if got, _ := h.f.Store().Read().Task(nil, "t2"); got != nil {
		t.Fatal("a refused placement must store nothing")
	}
	report := func(st *orchv1.TaskStatus) {
		h.must(CmdTaskStatus, &orchv1.TaskStatusCommand{HostId: "h1", Tasks: []*orchv1.TaskStatus{st}})
	}
	started := timestamppb.Now()
	report(&orchv1.TaskStatus{TaskId: "t1", LastStatus: lifecycle.Running, StartedAt: started,
		Containers: []*orchv1.ContainerStatus{{Name: "web", LastStatus: lifecycle.ContainerRunning}}})
	report(&orchv1.TaskStatus{TaskId: "t1", LastStatus: lifecycle.Pending}) // late, out of order
	got, _ := h.f.Store().Read().Task(nil, "t1")
	if got.GetLastStatus() != lifecycle.Running || got.GetContainers()[0].GetLastStatus() != lifecycle.ContainerRunning {
		t.Fatalf("status moved backward: %v", got)
	}
	v := got.GetVersion()
	// A report from another host is ignored: agents act only as themselves.
	h.must(CmdTaskStatus, &orchv1.TaskStatusCommand{HostId: "h2", Tasks: []*orchv1.TaskStatus{{TaskId: "t1", LastStatus: lifecycle.Stopped}}})
	if got, _ := h.f.Store().Read().Task(nil, "t1"); got.GetLastStatus() != lifecycle.Running || got.GetVersion() != v {
		t.Fatal("a report from another host changed the task")
	}
	h.must(CmdStopTasks, &orchv1.StopTasksCommand{TaskIds: []string{"t1"}, StopCode: lifecycle.UserInitiated, Reason: "done", At: timestamppb.Now()})
	report(&orchv1.TaskStatus{TaskId: "t1", LastStatus: lifecycle.Stopped, StopCode: lifecycle.EssentialContainerExited, ObservedAt: timestamppb.Now(),
		Containers: []*orchv1.ContainerStatus{{Name: "web", LastStatus: lifecycle.ContainerStopped, ExitCode: proto.Int32(143)}}})
	got, _ = h.f.Store().Read().Task(nil, "t1")
	if got.GetLastStatus() != lifecycle.Stopped || got.GetStopCode() != lifecycle.UserInitiated || got.GetStoppedReason() != "done" ||
		got.GetContainers()[0].GetExitCode() != 143 || got.GetStoppedAt() == nil || !proto.Equal(got.GetStartedAt(), started) {
		t.Fatalf("stopped task: %v", got)
	}
	// Only stopped tasks are forgotten.
	h.must(CmdPlaceTasks, &orchv1.PlaceTasksCommand{Tasks: []*orchv1.Task{task("t4", "10.64.0.9")}})
	if n := h.must(CmdDeleteTasks, &orchv1.DeleteTasksCommand{TaskIds: []string{"t4"}}).(int); n != 0 {
		t.Fatal("a live task was deleted")
	}
	// Its address is free again.
	h.must(CmdPlaceTasks, &orchv1.PlaceTasksCommand{Tasks: []*orchv1.Task{task("t3", "10.64.0.2")}})
	if n := h.must(CmdDeleteTasks, &orchv1.DeleteTasksCommand{TaskIds: []string{"t1"}}).(int); n != 1 {
		t.Fatal("the stopped task was not deleted")
	}
	// A cluster with a live task cannot be deleted.
	if _, err := h.apply(CmdDeleteCluster, &orchv1.DeleteClusterCommand{ClusterName: "a"}); !errors.Is(err, state.ErrConflict) ||
		!strings.Contains(err.Error(), "tasks are active") {
		t.Fatalf("delete with live tasks: err = %v", err)
	}
}

func TestSnapshotRestore(t *testing.T) {
	h := newHarness(t)
	h.must(CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: "a"}})
	h.must(CmdRegisterHost, &orchv1.RegisterHostCommand{Host: &orchv1.Host{Id: "h1", Clusters: []string{"a"}, Cpu: 1024, Memory: 1024}})
	h.must(CmdRegisterTaskDefinition, &orchv1.RegisterTaskDefinitionCommand{TaskDefinition: &orchv1.TaskDefinition{Family: "web"}})
	h.must(CmdPlaceTasks, &orchv1.PlaceTasksCommand{Tasks: []*orchv1.Task{task("t1", "10.64.0.2")}})

	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.(*snapshot).txn.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t)
	if err := h2.f.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	r1, r2 := h.f.Store().Read(), h2.f.Store().Read()
	t1, _ := r1.Task(nil, "t1")
	t2, _ := r2.Task(nil, "t1")
	c2, _ := r2.Cluster(nil, "a")
	td, _ := r2.TaskDefinition(nil, "web", 1)
	if !proto.Equal(t1, t2) || c2 == nil || td == nil || r1.LatestIndex() != r2.LatestIndex() {
		t.Fatal("restored state differs")
	}
}
