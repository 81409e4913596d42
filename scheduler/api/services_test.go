package api

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"orch/pkg/arn"
	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
)

func createReq(name string, desired int32) *orchv1.CreateServiceRequest {
	return &orchv1.CreateServiceRequest{Cluster: "homelab", ServiceName: name, TaskDefinition: "web", DesiredCount: proto.Int32(desired)}
}

func TestCreateServiceValidation(t *testing.T) {
	s, d := newServer(t, 4096)
	register(t, s, 128)
	ctx := context.Background()
	with := func(f func(r *orchv1.CreateServiceRequest)) *orchv1.CreateServiceRequest {
		r := createReq("web", 1)
		f(r)
		return r
	}
	dc := func(maxPct, minPct int32) func(r *orchv1.CreateServiceRequest) {
		return func(r *orchv1.CreateServiceRequest) {
			r.DeploymentConfiguration = &orchv1.DeploymentConfiguration{MaximumPercent: proto.Int32(maxPct), MinimumHealthyPercent: proto.Int32(minPct)}
		}
	}
	tests := []struct {
		name string
		req  *orchv1.CreateServiceRequest
		code codes.Code
		msg  string
	}{
		{"bad name", with(func(r *orchv1.CreateServiceRequest) { r.ServiceName = "web.1" }), codes.InvalidArgument, "serviceName"},
		{"empty name", with(func(r *orchv1.CreateServiceRequest) { r.ServiceName = "" }), codes.InvalidArgument, "serviceName"},
		{"long name", with(func(r *orchv1.CreateServiceRequest) { r.ServiceName = strings.Repeat("a", 256) }), codes.InvalidArgument, "serviceName"},
		{"no desired count", with(func(r *orchv1.CreateServiceRequest) { r.DesiredCount = nil }), codes.InvalidArgument, "desiredCount"},
		{"negative desired count", with(func(r *orchv1.CreateServiceRequest) { r.DesiredCount = proto.Int32(-1) }), codes.InvalidArgument, "desiredCount"},
		{"daemon", with(func(r *orchv1.CreateServiceRequest) { r.SchedulingStrategy = "DAEMON" }), codes.Unimplemented, "schedulingStrategy"},
		{"unknown strategy", with(func(r *orchv1.CreateServiceRequest) { r.SchedulingStrategy = "EVERYWHERE" }), codes.InvalidArgument, "schedulingStrategy"},
		{"fargate", with(func(r *orchv1.CreateServiceRequest) { r.LaunchType = "FARGATE" }), codes.InvalidArgument, "launchType"},
		{"placement constraints", with(func(r *orchv1.CreateServiceRequest) {
			r.PlacementConstraints = []*orchv1.PlacementConstraint{{Type: "distinctInstance"}}
		}), codes.Unimplemented, "placementConstraints"},
		{"maximumPercent above 200", with(dc(250, 100)), codes.InvalidArgument, "deploymentConfiguration.maximumPercent"},
		{"maximumPercent below 100", with(dc(90, 50)), codes.InvalidArgument, "deploymentConfiguration.maximumPercent"},
		{"minimumHealthyPercent above 100", with(dc(200, 101)), codes.InvalidArgument, "deploymentConfiguration.minimumHealthyPercent"},
		{"minimumHealthyPercent negative", with(dc(200, -1)), codes.InvalidArgument, "deploymentConfiguration.minimumHealthyPercent"},
		{"no room", with(dc(100, 100)), codes.InvalidArgument, "deploymentConfiguration.maximumPercent"},
		{"rollback without the breaker", with(func(r *orchv1.CreateServiceRequest) {
			r.DeploymentConfiguration = &orchv1.DeploymentConfiguration{DeploymentCircuitBreaker: &orchv1.DeploymentCircuitBreaker{Rollback: true}}
		}), codes.InvalidArgument, "deploymentConfiguration.deploymentCircuitBreaker.rollback"},
		{"bad tag", with(func(r *orchv1.CreateServiceRequest) { r.Tags = []*orchv1.Tag{{Key: ""}} }), codes.InvalidArgument, "tags[0].key"},
		{"bad client token", with(func(r *orchv1.CreateServiceRequest) { r.ClientToken = strings.Repeat("x", 37) }), codes.InvalidArgument, "clientToken"},
		{"negative grace period", with(func(r *orchv1.CreateServiceRequest) { r.HealthCheckGracePeriodSeconds = -1 }), codes.InvalidArgument, "healthCheckGracePeriodSeconds"},
		{"unknown cluster", with(func(r *orchv1.CreateServiceRequest) { r.Cluster = "nope" }), codes.NotFound, "cluster nope"},
		{"unknown task definition", with(func(r *orchv1.CreateServiceRequest) { r.TaskDefinition = "db" }), codes.NotFound, "taskDefinition"},
		{"no task definition", with(func(r *orchv1.CreateServiceRequest) { r.TaskDefinition = "" }), codes.InvalidArgument, "taskDefinition"},
	}
	before := d.Index()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CreateService(ctx, tt.req)
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %s naming %q", err, tt.code, tt.msg)
			}
		})
	}
	if d.Index() != before {
		t.Fatal("a refused request reached Raft")
	}
	if _, err := s.DeregisterTaskDefinition(ctx, &orchv1.DeregisterTaskDefinitionRequest{TaskDefinition: "web:1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateService(ctx, with(func(r *orchv1.CreateServiceRequest) { r.TaskDefinition = "web:1" })); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "INACTIVE") {
		t.Fatalf("service of an INACTIVE task definition: %v", err)
	}
}

func TestCreateServiceIdempotent(t *testing.T) {
	s, d := newServer(t, 4096)
	register(t, s, 128)
	ctx := context.Background()
	req := createReq("web", 2)
	req.ClientToken = "token-1"
	req.Tags = []*orchv1.Tag{{Key: "team", Value: "infra"}}
	first, err := s.CreateService(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	svc := first.GetService()
	dep := svc.GetDeployments()
	if svc.GetServiceArn() != arn.Default.Service("homelab", "web") || svc.GetStatus() != "ACTIVE" || svc.GetDesiredCount() != 2 ||
		svc.GetTaskDefinition() != arn.Default.TaskDefinition("web", 1) || svc.GetLaunchType() != "EC2" || svc.GetSchedulingStrategy() != "REPLICA" ||
		svc.GetDeploymentConfiguration().GetMaximumPercent() != 200 || svc.GetDeploymentConfiguration().GetMinimumHealthyPercent() != 100 ||
		svc.GetCreatedAt() == nil || len(svc.GetEvents()) != 0 || svc.GetClusterArn() != arn.Default.Cluster("homelab") {
		t.Fatalf("service: %v", svc)
	}
	if len(dep) != 1 || dep[0].GetStatus() != "PRIMARY" || dep[0].GetRolloutState() != "IN_PROGRESS" || dep[0].GetDesiredCount() != 2 ||
		!regexp.MustCompile(`^ecs-svc/[1-9][0-9]{18}$`).MatchString(dep[0].GetId()) {
		t.Fatalf("deployments: %v", dep)
	}
	index := d.Index()
	again, err := s.CreateService(ctx, req)
	if err != nil || !proto.Equal(again.GetService(), svc) || d.Index() != index {
		t.Fatalf("the same request again: %v, %v (raft index %d -> %d)", again, err, index, d.Index())
	}
	other := createReq("web", 3)
	if _, err := s.CreateService(ctx, other); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "Creation of service was not idempotent.") {
		t.Fatalf("another request for the name: %v", err)
	}
	// The name is free again once the service is INACTIVE.
	if _, err := s.UpdateService(ctx, &orchv1.UpdateServiceRequest{Cluster: "homelab", Service: "web", DesiredCount: proto.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteService(ctx, &orchv1.DeleteServiceRequest{Cluster: "homelab", Service: "web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateService(ctx, other); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "Draining") {
		t.Fatalf("create over a DRAINING service: %v", err)
	}
	cur, _ := s.store.Read().Service(nil, "homelab", "web")
	inactive := proto.Clone(cur).(*orchv1.Service)
	inactive.Status = "INACTIVE"
	if _, err := d.Apply(ctx, fsm.CmdPutServices, &orchv1.PutServicesCommand{Puts: []*orchv1.PutServicesCommand_Put{{Service: inactive, ExpectModifyIndex: cur.GetModifyIndex()}}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := s.CreateService(ctx, other); err != nil || resp.GetService().GetDesiredCount() != 3 {
		t.Fatalf("create over an INACTIVE service: %v %v", resp, err)
	}
}

func TestUpdateService(t *testing.T) {
	s, d := newServer(t, 4096)
	register(t, s, 128)
	register(t, s, 256) // web:2
	ctx := context.Background()
	req := createReq("web", 2)
	req.TaskDefinition = "web:1"
	created, err := s.CreateService(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	first := created.GetService().GetDeployments()[0]
	update := func(req *orchv1.UpdateServiceRequest) *orchv1.Service {
		t.Helper()
		req.Cluster = "homelab"
		if req.Service == "" {
			req.Service = arn.Default.Service("homelab", "web") // by ARN
		}
		resp, err := s.UpdateService(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetService()
	}

	// A scale change: the same deployment, a new desiredCount.
	svc := update(&orchv1.UpdateServiceRequest{DesiredCount: proto.Int32(5)})
	if len(svc.GetDeployments()) != 1 || svc.GetDeployments()[0].GetId() != first.GetId() || svc.GetDeployments()[0].GetDesiredCount() != 5 || svc.GetDesiredCount() != 5 {
		t.Fatalf("scale: %v", svc.GetDeployments())
	}
	// Nothing new: nothing written.
	index := d.Index()
	if update(&orchv1.UpdateServiceRequest{Service: "web", DesiredCount: proto.Int32(5)}); d.Index() != index {
		t.Fatal("an update that changes nothing was written")
	}
	// A new task definition: a new PRIMARY; the old one ACTIVE.
	svc = update(&orchv1.UpdateServiceRequest{TaskDefinition: "web:2", DeploymentConfiguration: &orchv1.DeploymentConfiguration{MinimumHealthyPercent: proto.Int32(50)}})
	ds := svc.GetDeployments()
	if len(ds) != 2 || ds[0].GetStatus() != "PRIMARY" || ds[0].GetTaskDefinition() != arn.Default.TaskDefinition("web", 2) ||
		ds[0].GetDesiredCount() != 5 || ds[1].GetId() != first.GetId() || ds[1].GetStatus() != "ACTIVE" ||
		svc.GetTaskDefinition() != arn.Default.TaskDefinition("web", 2) {
		t.Fatalf("new deployment: %v", ds)
	}
	if dc := svc.GetDeploymentConfiguration(); dc.GetMinimumHealthyPercent() != 50 || dc.GetMaximumPercent() != 200 {
		t.Fatalf("merged deployment configuration: %v", dc)
	}
	// The same task definition again is no deployment; forceNewDeployment is.
	if svc = update(&orchv1.UpdateServiceRequest{TaskDefinition: "web:2"}); len(svc.GetDeployments()) != 2 {
		t.Fatalf("same task definition: %v", svc.GetDeployments())
	}
	svc = update(&orchv1.UpdateServiceRequest{ForceNewDeployment: true})
	if ds := svc.GetDeployments(); len(ds) != 3 || ds[0].GetTaskDefinition() != arn.Default.TaskDefinition("web", 2) || ds[1].GetStatus() != "ACTIVE" {
		t.Fatalf("forced deployment: %v", ds)
	}

	// An update that races a controller write reads again and applies on top of it.
	cur, _ := s.store.Read().Service(nil, "homelab", "web")
	counted := proto.Clone(cur).(*orchv1.Service)
	counted.RunningCount = 4
	if _, err := d.Apply(ctx, fsm.CmdPutServices, &orchv1.PutServicesCommand{Puts: []*orchv1.PutServicesCommand_Put{{Service: counted, ExpectModifyIndex: cur.GetModifyIndex()}}}); err != nil {
		t.Fatal(err)
	}
	if svc = update(&orchv1.UpdateServiceRequest{DesiredCount: proto.Int32(1)}); svc.GetRunningCount() != 4 || svc.GetDesiredCount() != 1 {
		t.Fatalf("update after a controller write: %v", svc)
	}

	errs := []struct {
		name string
		req  *orchv1.UpdateServiceRequest
		code codes.Code
		msg  string
	}{
		{"no service", &orchv1.UpdateServiceRequest{Cluster: "homelab"}, codes.InvalidArgument, "service"},
		{"unknown service", &orchv1.UpdateServiceRequest{Cluster: "homelab", Service: "db"}, codes.NotFound, "Service not found"},
		{"negative desired", &orchv1.UpdateServiceRequest{Cluster: "homelab", Service: "web", DesiredCount: proto.Int32(-2)}, codes.InvalidArgument, "desiredCount"},
		{"bad percent", &orchv1.UpdateServiceRequest{Cluster: "homelab", Service: "web", DeploymentConfiguration: &orchv1.DeploymentConfiguration{MaximumPercent: proto.Int32(300)}}, codes.InvalidArgument, "deploymentConfiguration.maximumPercent"},
		{"unknown task definition", &orchv1.UpdateServiceRequest{Cluster: "homelab", Service: "web", TaskDefinition: "web:9"}, codes.NotFound, "web:9"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.UpdateService(ctx, tt.req)
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %s naming %q", err, tt.code, tt.msg)
			}
		})
	}
}

func TestDeleteServiceAndCluster(t *testing.T) {
	s, _ := newServer(t, 4096)
	register(t, s, 128)
	ctx := context.Background()
	if _, err := s.CreateService(ctx, createReq("web", 2)); err != nil {
		t.Fatal(err)
	}
	desc, err := s.DescribeClusters(ctx, &orchv1.DescribeClustersRequest{Clusters: []string{"homelab"}})
	if err != nil || desc.GetClusters()[0].GetActiveServicesCount() != 1 {
		t.Fatalf("activeServicesCount: %v %v", desc, err)
	}
	if _, err := s.DeleteCluster(ctx, &orchv1.DeleteClusterRequest{Cluster: "homelab"}); status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(err.Error(), "The Cluster cannot be deleted while Services are active.") {
		t.Fatalf("delete a cluster with a service: %v", err)
	}
	if _, err := s.DeleteService(ctx, &orchv1.DeleteServiceRequest{Cluster: "homelab", Service: "web"}); status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(err.Error(), "The service cannot be stopped while it is scaled above 0.") {
		t.Fatalf("delete a scaled service: %v", err)
	}
	if _, err := s.DeleteService(ctx, &orchv1.DeleteServiceRequest{Cluster: "homelab", Service: "db"}); status.Code(err) != codes.NotFound {
		t.Fatalf("delete an unknown service: %v", err)
	}
	resp, err := s.DeleteService(ctx, &orchv1.DeleteServiceRequest{Cluster: "homelab", Service: "web", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if svc := resp.GetService(); svc.GetStatus() != "DRAINING" || svc.GetDesiredCount() != 0 || svc.GetDeployments()[0].GetDesiredCount() != 0 {
		t.Fatalf("deleted service: %v", svc)
	}
	if again, err := s.DeleteService(ctx, &orchv1.DeleteServiceRequest{Cluster: "homelab", Service: "web"}); err != nil || again.GetService().GetStatus() != "DRAINING" {
		t.Fatalf("delete again: %v %v", again, err)
	}
	if _, err := s.UpdateService(ctx, &orchv1.UpdateServiceRequest{Cluster: "homelab", Service: "web", DesiredCount: proto.Int32(1)}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("update a DRAINING service: %v", err)
	}
	// A DRAINING service still counts and still holds the cluster.
	if _, err := s.DeleteCluster(ctx, &orchv1.DeleteClusterRequest{Cluster: "homelab"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("delete a cluster with a DRAINING service: %v", err)
	}
}

func TestDescribeAndListServices(t *testing.T) {
	s, _ := newServer(t, 4096)
	register(t, s, 128)
	ctx := context.Background()
	names := []string{"web", "api", "db", "cache", "queue"}
	for _, n := range names {
		if _, err := s.CreateService(ctx, createReq(n, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DeleteService(ctx, &orchv1.DeleteServiceRequest{Cluster: "homelab", Service: "queue"}); err != nil {
		t.Fatal(err)
	}
	desc, err := s.DescribeServices(ctx, &orchv1.DescribeServicesRequest{Cluster: "homelab", Services: []string{"web", arn.Default.Service("homelab", "db"), "nope"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(desc.GetServices()) != 2 || desc.GetServices()[0].GetServiceName() != "web" || desc.GetServices()[1].GetServiceName() != "db" ||
		len(desc.GetFailures()) != 1 || desc.GetFailures()[0].GetReason() != "MISSING" || desc.GetFailures()[0].GetArn() != arn.Default.Service("homelab", "nope") {
		t.Fatalf("describe: %v", desc)
	}
	for _, tt := range []struct {
		name string
		req  *orchv1.DescribeServicesRequest
		msg  string
	}{
		{"none", &orchv1.DescribeServicesRequest{Cluster: "homelab"}, "services"},
		{"eleven", &orchv1.DescribeServicesRequest{Cluster: "homelab", Services: make([]string, 11)}, "at most 10"},
	} {
		if _, err := s.DescribeServices(ctx, tt.req); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}

	// Pages of two, by name; the DRAINING service is listed.
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		resp, err := s.ListServices(ctx, &orchv1.ListServicesRequest{Cluster: "homelab", MaxResults: 2, NextToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range resp.GetServiceArns() {
			got = append(got, arn.LastSegment(a))
		}
		if token = resp.GetNextToken(); token == "" {
			break
		}
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if strings.Join(got, ",") != "api,cache,db,queue,web" {
		t.Fatalf("listed %v", got)
	}
	if _, err := s.ListServices(ctx, &orchv1.ListServicesRequest{Cluster: "homelab", MaxResults: 101}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("maxResults 101: %v", err)
	}
	if _, err := s.ListServices(ctx, &orchv1.ListServicesRequest{Cluster: "homelab", NextToken: "!!"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad token: %v", err)
	}
}

func TestLaunchAndStopTasks(t *testing.T) {
	s, d := newServer(t, 8192)
	register(t, s, 64)
	ctx := context.Background()
	index := d.Index()
	resp, err := s.LaunchTasks(ctx, "homelab", arn.Default.TaskDefinition("web", 1), 25, "service:web", "ecs-svc/1234567890123456789")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetTasks()) != 25 || len(resp.GetFailures()) != 0 {
		t.Fatalf("%d tasks, failures %v", len(resp.GetTasks()), resp.GetFailures())
	}
	if d.Index()-index > 3 {
		t.Fatalf("25 tasks took %d Raft entries; want at most one per job of 10", d.Index()-index)
	}
	tasks, _ := s.store.Read().TasksByService(nil, "homelab", "web")
	ips := map[string]bool{}
	var ids []string
	for _, tk := range tasks {
		if tk.GetStartedBy() != "ecs-svc/1234567890123456789" || tk.GetLastStatus() != lifecycle.Provisioning {
			t.Fatalf("task %v", tk)
		}
		ips[tk.GetEni().GetIp()] = true
		ids = append(ids, tk.GetId())
	}
	if len(tasks) != 25 || len(ips) != 25 {
		t.Fatalf("%d tasks in the group, %d addresses", len(tasks), len(ips))
	}
	for _, name := range []string{"web", arn.Default.Service("homelab", "web"), "db"} {
		want := 25
		if name == "db" {
			want = 0
		}
		list, err := s.ListTasks(ctx, &orchv1.ListTasksRequest{Cluster: "homelab", ServiceName: name})
		if err != nil || len(list.GetTaskArns()) != want {
			t.Fatalf("list-tasks --service-name %s: %d tasks, %v; want %d", name, len(list.GetTaskArns()), err, want)
		}
	}
	// Over capacity: the rest are failures, as RunTask's.
	resp, err = s.LaunchTasks(ctx, "homelab", "web:1", 200, "service:web", "ecs-svc/1234567890123456789")
	if err != nil || len(resp.GetTasks())+len(resp.GetFailures()) != 200 || len(resp.GetFailures()) == 0 || resp.GetFailures()[0].GetReason() != "RESOURCE:MEMORY" {
		t.Fatalf("over capacity: %d tasks, %d failures, %v", len(resp.GetTasks()), len(resp.GetFailures()), err)
	}
	if err := s.StopTasks(ctx, "homelab", ids[:3], lifecycle.ServiceSchedulerInitiated, "Scaling activity initiated by (deployment ecs-svc/1234567890123456789)"); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[:3] {
		tk, _ := s.store.Read().Task(nil, id)
		if tk.GetDesiredStatus() != lifecycle.DesiredStopped || tk.GetStopCode() != lifecycle.ServiceSchedulerInitiated {
			t.Fatalf("stopped task %v", tk)
		}
	}
	if err := s.StopTasks(ctx, "other", ids[3:4], lifecycle.ServiceSchedulerInitiated, "x"); err == nil {
		t.Fatal("stopped a task of another cluster")
	}
	if _, err := s.LaunchTasks(ctx, "nope", "web:1", 1, "service:web", "x"); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown cluster: %v", err)
	}
}
