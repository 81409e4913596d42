package fsm

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/arn"
	"orch/pkg/eniname"
	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
)

// benchTask is a task shaped like the ones RunTask places (scheduler/api newTask: an ENI, one
// container, no ARNs: the API derives them).
func benchTask(cluster, instance string, ip int) *orchv1.Task {
	b := make([]byte, 16)
	rand.Read(b)
	id := hex.EncodeToString(b)
	now := timestamppb.Now()
	return &orchv1.Task{
		Id: id, Cluster: cluster, TaskDefinitionArn: arn.Default.TaskDefinition("sim", 1),
		ContainerInstanceId: instance, HostId: "host-" + instance,
		LastStatus: lifecycle.Provisioning, DesiredStatus: lifecycle.DesiredRunning,
		Cpu: "1", Memory: "8", Group: "family:sim", CreatedAt: now, LaunchType: "EC2",
		Connectivity: "CONNECTED", ConnectivityAt: now,
		Eni: &orchv1.Eni{
			Id: eniname.ENI(id), Ip: fmt.Sprintf("10.%d.%d.%d", ip>>16&255, ip>>8&255, ip&255), PrefixLen: 24,
			Gateway: fmt.Sprintf("10.%d.%d.1", ip>>16&255, ip>>8&255), Mac: eniname.MAC(id), Netns: eniname.NetNS(id),
			Bridge: eniname.Bridge(cluster), Subnet: fmt.Sprintf("10.%d.%d.0/24", ip>>16&255, ip>>8&255),
		},
		Containers: []*orchv1.Container{{Name: "app", Image: "busybox", LastStatus: lifecycle.ContainerPending, Cpu: "1", Essential: true}},
	}
}

// BenchmarkPlaceAndRun measures what every scheduler's FSM does per task in the scheduling
// benchmark: a placement entry of 320 tasks over 10 instances, then one status batch reporting
// them RUNNING, in a state that already holds 50,000 tasks. Building and encoding the entries
// is not timed: a follower only decodes and applies them.
func BenchmarkPlaceAndRun(b *testing.B) {
	const (
		batch     = 320
		instances = 10
		prefill   = 50_000
	)
	h := newHarness(b)
	ip := 0
	entries := func(round int) (place, run []byte) {
		tasks := make([]*orchv1.Task, batch)
		for i := range tasks {
			ip++
			tasks[i] = benchTask("sim", fmt.Sprintf("ci-%d-%d", round, i%instances), ip)
		}
		cmds := map[string]*orchv1.TaskStatusCommand{}
		statuses := &orchv1.TaskStatusBatchCommand{}
		for _, t := range tasks {
			c := cmds[t.HostId]
			if c == nil {
				c = &orchv1.TaskStatusCommand{HostId: t.HostId}
				cmds[t.HostId] = c
				statuses.Commands = append(statuses.Commands, c)
			}
			c.Tasks = append(c.Tasks, &orchv1.TaskStatus{TaskId: t.Id, LastStatus: lifecycle.Running, StartedAt: timestamppb.Now(),
				Containers: []*orchv1.ContainerStatus{{Name: "app", LastStatus: lifecycle.ContainerRunning, RuntimeId: t.Id}}})
		}
		var err error
		if place, err = Encode(CmdPlaceTasks, &orchv1.PlaceTasksCommand{Tasks: tasks}); err != nil {
			b.Fatal(err)
		}
		if run, err = Encode(CmdTaskStatusBatch, statuses); err != nil {
			b.Fatal(err)
		}
		return place, run
	}
	apply := func(data []byte) {
		h.index++
		if res := h.f.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: data}).(Result); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	for r := range prefill / batch {
		place, run := entries(-r - 1)
		apply(place)
		apply(run)
	}
	type round struct{ place, run []byte }
	rounds := make([]round, b.N)
	for i := range rounds {
		rounds[i].place, rounds[i].run = entries(i)
	}
	b.ResetTimer()
	for _, r := range rounds {
		apply(r.place)
		apply(r.run)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/task")
}
