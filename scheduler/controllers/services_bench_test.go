package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/fsm/fsmtest"
	"orch/scheduler/state"
)

// BenchmarkServicesPass measures one full pass of the controller over 100 steady services of
// 1,000 RUNNING tasks each (the benchmark case's state; nothing to start or stop): the cost of
// the safety-net re-check, and an upper bound of a pass during a large rollout.
func BenchmarkServicesPass(b *testing.B) {
	const services, perService = 100, 1000
	st, err := state.New()
	if err != nil {
		b.Fatal(err)
	}
	d := fsmtest.New(st)
	ctx := context.Background()
	now := timestamppb.Now()
	cmd := &orchv1.PutServicesCommand{}
	for i := range services {
		name := fmt.Sprintf("svc%03d", i)
		dep := fmt.Sprintf("ecs-svc/%019d", 1000000000000000000+i)
		cmd.Puts = append(cmd.Puts, &orchv1.PutServicesCommand_Put{Service: &orchv1.Service{
			Cluster: "bench", ServiceName: name, Status: ServiceActive, DesiredCount: perService,
			RunningCount: perService, TaskDefinition: "td",
			DeploymentConfiguration: &orchv1.DeploymentConfiguration{MaximumPercent: proto.Int32(200), MinimumHealthyPercent: proto.Int32(100)},
			Deployments: []*orchv1.Deployment{{Id: dep, Status: DeploymentPrimary, TaskDefinition: "td", DesiredCount: perService,
				RunningCount: perService, RolloutState: RolloutCompleted, CreatedAt: now, UpdatedAt: now}},
		}})
		place := &orchv1.PlaceTasksCommand{}
		for j := range perService {
			id := fmt.Sprintf("%03d%029d", i, j)
			place.Tasks = append(place.Tasks, &orchv1.Task{
				Id: id, Cluster: "bench", Group: ServiceGroup(name), StartedBy: dep, TaskDefinitionArn: "td",
				LastStatus: lifecycle.Running, DesiredStatus: lifecycle.DesiredRunning, CreatedAt: now,
				ContainerInstanceId: fmt.Sprintf("ci%05d", (i*perService+j)%10000), HostId: fmt.Sprintf("h%05d", (i*perService+j)%10000),
				Eni: &orchv1.Eni{Ip: fmt.Sprintf("10.%d.%d.%d", i, j/250, j%250+2)},
			})
		}
		if _, err := d.Apply(ctx, fsm.CmdPlaceTasks, place); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := d.Apply(ctx, fsm.CmdPutServices, cmd); err != nil {
		b.Fatal(err)
	}
	c := NewServices(st, d, nil, time.Now, ServicesConfig{Logger: quiet()})
	c.states = map[string]*serviceState{}
	b.ResetTimer()
	for range b.N {
		if _, err := c.pass(ctx, state.NewWatchSet(), true); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if d.Index() != services+1 {
		b.Fatalf("a steady pass wrote %d entries", d.Index()-services-1)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/pass")
}
