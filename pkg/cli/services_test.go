package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

const (
	svcArn = "arn:aws:ecs:local:000000000000:service/default/web"
	tdArn4 = "arn:aws:ecs:local:000000000000:task-definition/web:4"
)

// serviceFake is fx's fake with the service calls recorded and answered too.
func serviceFake(fx *fixture) *fakeOrch {
	f := fx.fake()
	f.CreateServiceFn = unary[*orchv1.CreateServiceRequest, *orchv1.CreateServiceResponse](fx, "CreateService")
	f.UpdateServiceFn = unary[*orchv1.UpdateServiceRequest, *orchv1.UpdateServiceResponse](fx, "UpdateService")
	f.DeleteServiceFn = unary[*orchv1.DeleteServiceRequest, *orchv1.DeleteServiceResponse](fx, "DeleteService")
	f.DescribeServicesFn = unary[*orchv1.DescribeServicesRequest, *orchv1.DescribeServicesResponse](fx, "DescribeServices")
	f.ListServicesFn = unary[*orchv1.ListServicesRequest, *orchv1.ListServicesResponse](fx, "ListServices")
	return f
}

// service makes the service web in the default cluster with its counts and deployments.
func service(desired, running, pending int32, deps ...*orchv1.Deployment) *orchv1.Service {
	s := &orchv1.Service{
		ServiceArn: svcArn, ServiceName: "web", ClusterArn: "arn:aws:ecs:local:000000000000:cluster/default",
		Status: "ACTIVE", DesiredCount: desired, RunningCount: running, PendingCount: pending,
		TaskDefinition: tdArn, Deployments: deps, CreatedAt: ts(0), SchedulingStrategy: "REPLICA",
	}
	if len(deps) > 0 {
		s.TaskDefinition = deps[0].TaskDefinition
	}
	return s
}

func deployment(id, status, td string, desired, running, pending int32, rollout string) *orchv1.Deployment {
	return &orchv1.Deployment{Id: id, Status: status, TaskDefinition: td, DesiredCount: desired,
		RunningCount: running, PendingCount: pending, RolloutState: rollout, CreatedAt: ts(0), UpdatedAt: ts(time.Minute)}
}

func withEvents(s *orchv1.Service, msgs ...string) *orchv1.Service {
	s = proto.Clone(s).(*orchv1.Service)
	for i, m := range msgs { // msgs newest first, as ECS lists them
		s.Events = append(s.Events, &orchv1.ServiceEvent{Id: "ev" + string(rune('a'+len(msgs)-1-i)), CreatedAt: ts(time.Duration(len(msgs)-i) * time.Second), Message: m})
	}
	return s
}

func TestServiceCommands(t *testing.T) {
	stable := withEvents(service(2, 2, 0, deployment("ecs-svc/1", "PRIMARY", tdArn, 2, 2, 0, "COMPLETED")),
		"(service web) has reached a steady state.",
		"(service web) has started 2 tasks: (task "+idA+") (task "+idB+").")
	rolling := service(2, 3, 1,
		deployment("ecs-svc/2", "PRIMARY", tdArn4, 2, 1, 1, "IN_PROGRESS"),
		deployment("ecs-svc/1", "ACTIVE", tdArn, 2, 2, 0, "COMPLETED"))
	rolling.Deployments[0].RolloutStateReason = "ECS deployment ecs-svc/2 in progress."
	many := withEvents(service(2, 2, 0), "e6", "e5", "e4", "e3", "e2", "e1")

	dir := t.TempDir()
	dcFile := filepath.Join(dir, "dc.json")
	os.WriteFile(dcFile, []byte(`{"maximumPercent": 150, "minimumHealthyPercent": 50}`), 0o644)
	inputFile := filepath.Join(dir, "web-service.json")
	os.WriteFile(inputFile, []byte(`{
  "cluster": "prod",
  "serviceName": "web",
  "taskDefinition": "web:3",
  "desiredCount": 4,
  "launchType": "EC2",
  "loadBalancers": [],
  "serviceRegistries": [],
  "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"], "assignPublicIp": "DISABLED"}},
  "deploymentController": {"type": "ECS"},
  "propagateTags": "NONE",
  "deploymentConfiguration": {
    "maximumPercent": 200, "minimumHealthyPercent": 50,
    "deploymentCircuitBreaker": {"enable": true, "rollback": false},
    "alarms": {"alarmNames": [], "enable": false, "rollback": false},
    "bakeTimeInMinutes": 5
  },
  "healthCheckGracePeriodSeconds": 30,
  "placementConstraints": [{"type": "distinctInstance"}],
  "placementStrategy": [{"type": "spread", "field": "instanceId"}],
  "tags": [{"key": "team", "value": "web"}],
  "clientToken": "tok-1"
}`), 0o644)

	dc := func(max, min int32, cb *orchv1.DeploymentCircuitBreaker) *orchv1.DeploymentConfiguration {
		return &orchv1.DeploymentConfiguration{MaximumPercent: &max, MinimumHealthyPercent: &min, DeploymentCircuitBreaker: cb}
	}
	tests := []struct {
		name      string
		args      []string
		responses map[string]proto.Message
		errs      map[string]error
		wantCalls []call
		wantCode  int
		wantOut   string   // exact stdout, if set
		outHas    []string // substrings of stdout
		outLacks  []string // not in stdout
		wantErr   string   // exact stderr, if set
		errHas    []string // substrings of stderr
	}{
		{
			name:      "create-service",
			args:      []string{"create-service", "--service-name", "web", "--task-definition", "web:3", "--desired-count", "2"},
			responses: map[string]proto.Message{"CreateService": &orchv1.CreateServiceResponse{Service: service(2, 0, 0, deployment("ecs-svc/1", "PRIMARY", tdArn, 2, 0, 0, "IN_PROGRESS"))}},
			wantCalls: []call{{"CreateService", &orchv1.CreateServiceRequest{Cluster: "default", ServiceName: "web", TaskDefinition: "web:3", DesiredCount: i32(2)}}},
			wantOut: "" +
				"NAME  STATUS  DESIRED  RUNNING  PENDING  TASKDEF  ROLLOUT\n" +
				"web   ACTIVE  2        0        0        web:3    IN_PROGRESS\n" +
				"\n" +
				"SERVICE  DEPLOYMENT  STATUS   TASKDEF  DESIRED  RUNNING  PENDING  FAILED  ROLLOUT      UPDATED               REASON\n" +
				"web      ecs-svc/1   PRIMARY  web:3    2        0        0        0       IN_PROGRESS  2025-03-01T12:01:00Z  -\n",
		},
		{
			name: "create-service shorthand",
			args: []string{"create-service", "--cluster", "prod", "--service-name", "web", "--task-definition", "web", "--desired-count", "0",
				"--deployment-configuration", "maximumPercent=150,minimumHealthyPercent=50,deploymentCircuitBreaker={enable=true,rollback=true}",
				"--health-check-grace-period-seconds", "30", "--tags", "key=team,value=web", "key=env,value=prod",
				"--client-token", "tok-1", "--launch-type", "EC2", "--scheduling-strategy", "REPLICA"},
			wantCalls: []call{{"CreateService", &orchv1.CreateServiceRequest{
				Cluster: "prod", ServiceName: "web", TaskDefinition: "web", DesiredCount: i32(0),
				DeploymentConfiguration:       dc(150, 50, &orchv1.DeploymentCircuitBreaker{Enable: true, Rollback: true}),
				HealthCheckGracePeriodSeconds: 30, Tags: []*orchv1.Tag{{Key: "team", Value: "web"}, {Key: "env", Value: "prod"}},
				ClientToken: "tok-1", LaunchType: "EC2", SchedulingStrategy: "REPLICA",
			}}},
			wantOut: "NAME  STATUS  DESIRED  RUNNING  PENDING  TASKDEF  ROLLOUT\n", // the fake answers an empty service
		},
		{
			name: "create-service shorthand with spaces and quotes, partial",
			args: []string{"create-service", "--service-name", "web", "--task-definition", "web", "--desired-count", "1",
				"--deployment-configuration", ` deploymentCircuitBreaker = { enable = "true" } , minimumHealthyPercent='0'`},
			wantCalls: []call{{"CreateService", &orchv1.CreateServiceRequest{
				Cluster: "default", ServiceName: "web", TaskDefinition: "web", DesiredCount: i32(1),
				DeploymentConfiguration: &orchv1.DeploymentConfiguration{MinimumHealthyPercent: i32(0),
					DeploymentCircuitBreaker: &orchv1.DeploymentCircuitBreaker{Enable: true}},
			}}},
		},
		{
			name: "create-service JSON deployment configuration",
			args: []string{"create-service", "--service-name", "web", "--task-definition", "web", "--desired-count", "1",
				"--deployment-configuration", `{"maximumPercent": 100, "minimumHealthyPercent": 0, "deploymentCircuitBreaker": {"enable": true, "rollback": false}}`},
			wantCalls: []call{{"CreateService", &orchv1.CreateServiceRequest{
				Cluster: "default", ServiceName: "web", TaskDefinition: "web", DesiredCount: i32(1),
				DeploymentConfiguration: dc(100, 0, &orchv1.DeploymentCircuitBreaker{Enable: true}),
			}}},
		},
		{
			name: "create-service deployment configuration from a file",
			args: []string{"create-service", "--service-name", "web", "--task-definition", "web", "--desired-count", "1",
				"--deployment-configuration", "file://" + dcFile},
			wantCalls: []call{{"CreateService", &orchv1.CreateServiceRequest{
				Cluster: "default", ServiceName: "web", TaskDefinition: "web", DesiredCount: i32(1), DeploymentConfiguration: dc(150, 50, nil),
			}}},
		},
		{
			name: "create-service unknown shorthand key",
			args: []string{"create-service", "--service-name", "web", "--task-definition", "web", "--desired-count", "1",
				"--deployment-configuration", "maximumPercent=200,deploymentCircuitBreaker={enabled=true}"},
			wantCode: 252,
			errHas: []string{`orchctl: error: argument --deployment-configuration: unknown parameter "deploymentCircuitBreaker.enabled", must be one of: enable, rollback`,
				"See 'orchctl create-service --help'."},
		},
		{
			name: "create-service bad shorthand value",
			args: []string{"create-service", "--service-name", "web", "--task-definition", "web", "--desired-count", "1",
				"--deployment-configuration", "maximumPercent=lots"},
			wantCode: 252,
			errHas:   []string{`argument --deployment-configuration: maximumPercent: invalid integer "lots"`},
		},
		{
			name: "create-service bad shorthand syntax",
			args: []string{"create-service", "--service-name", "web", "--task-definition", "web", "--desired-count", "1",
				"--deployment-configuration", "deploymentCircuitBreaker={enable=true"},
			wantCode: 252,
			errHas:   []string{`argument --deployment-configuration: invalid shorthand at column 38 of "deploymentCircuitBreaker={enable=true": missing '}'`},
		},
		{
			name: "create-service bad JSON deployment configuration",
			args: []string{"create-service", "--service-name", "web", "--task-definition", "web", "--desired-count", "1",
				"--deployment-configuration", `{"maximumPercent": "x"}`},
			wantCode: 252,
			errHas:   []string{"argument --deployment-configuration: invalid JSON"},
		},
		{
			name: "create-service ECS JSON input, flags override",
			args: []string{"create-service", "--cli-input-json", "file://" + inputFile, "--desired-count", "2"},
			wantCalls: []call{{"CreateService", &orchv1.CreateServiceRequest{
				Cluster: "prod", ServiceName: "web", TaskDefinition: "web:3", DesiredCount: i32(2), LaunchType: "EC2",
				DeploymentConfiguration:       dc(200, 50, &orchv1.DeploymentCircuitBreaker{Enable: true}),
				HealthCheckGracePeriodSeconds: 30,
				PlacementConstraints:          []*orchv1.PlacementConstraint{{Type: "distinctInstance"}},
				PlacementStrategy:             []*orchv1.PlacementStrategy{{Type: "spread", Field: "instanceId"}},
				Tags:                          []*orchv1.Tag{{Key: "team", Value: "web"}}, ClientToken: "tok-1",
			}}},
			// Only the members with a value orch would not honour are worth a warning.
			wantErr: "" +
				`orchctl: warning: --cli-input-json: ignoring "networkConfiguration": orch does not implement it (every task gets its own ENI in the cluster network)` + "\n" +
				`orchctl: warning: --cli-input-json: ignoring "deploymentConfiguration.bakeTimeInMinutes": orch does not implement it` + "\n",
		},
		{
			name: "create-service JSON input inline, in the default cluster",
			args: []string{"create-service", "--cli-input-json", `{"serviceName": "web", "taskDefinition": "web", "desiredCount": "3"}`},
			wantCalls: []call{{"CreateService", &orchv1.CreateServiceRequest{
				Cluster: "default", ServiceName: "web", TaskDefinition: "web", DesiredCount: i32(3),
			}}},
		},
		{
			name:     "create-service JSON input with a typo",
			args:     []string{"create-service", "--cli-input-json", `{"serviceNam": "web"}`},
			wantCode: 252,
			errHas:   []string{"argument --cli-input-json: invalid CreateService input", "serviceNam"},
		},
		{
			name:     "create-service without a name",
			args:     []string{"create-service", "--task-definition", "web", "--desired-count", "1"},
			wantCode: 252,
			errHas:   []string{"the following arguments are required: --service-name"},
		},
		{
			name:     "create-service stray argument",
			args:     []string{"create-service", "--service-name", "web", "extra"},
			wantCode: 252,
			errHas:   []string{`unknown command "extra"`},
		},
		{
			name:      "create-service json",
			args:      []string{"create-service", "--service-name", "web", "--task-definition", "web:3", "--desired-count", "2", "-o", "json"},
			responses: map[string]proto.Message{"CreateService": &orchv1.CreateServiceResponse{Service: service(2, 0, 0, deployment("ecs-svc/1", "PRIMARY", tdArn, 2, 0, 0, "IN_PROGRESS"))}},
			wantCalls: []call{{"CreateService", &orchv1.CreateServiceRequest{Cluster: "default", ServiceName: "web", TaskDefinition: "web:3", DesiredCount: i32(2)}}},
			outHas: []string{"{\n  \"service\": {\n    \"serviceArn\": \"" + svcArn + "\",\n    \"serviceName\": \"web\",\n",
				`"desiredCount": 2,`, `"rolloutState": "IN_PROGRESS"`, `"schedulingStrategy": "REPLICA"`},
		},
		{
			name:      "create-service server error",
			args:      []string{"create-service", "--service-name", "web", "--task-definition", "nope", "--desired-count", "2"},
			errs:      map[string]error{"CreateService": status.Error(codes.InvalidArgument, "task definition nope not found")},
			wantCalls: []call{{"CreateService", &orchv1.CreateServiceRequest{Cluster: "default", ServiceName: "web", TaskDefinition: "nope", DesiredCount: i32(2)}}},
			wantCode:  254,
			errHas:    []string{"An error occurred (InvalidArgument) when calling the CreateService operation: task definition nope not found\n"},
		},
		{
			name:      "update-service new revision",
			args:      []string{"update-service", "--service", "web", "--task-definition", "web:4"},
			responses: map[string]proto.Message{"UpdateService": &orchv1.UpdateServiceResponse{Service: rolling}},
			wantCalls: []call{{"UpdateService", &orchv1.UpdateServiceRequest{Cluster: "default", Service: "web", TaskDefinition: "web:4"}}},
			wantOut: "" +
				"NAME  STATUS  DESIRED  RUNNING  PENDING  TASKDEF  ROLLOUT\n" +
				"web   ACTIVE  2        3        1        web:4    IN_PROGRESS\n" +
				"\n" +
				"SERVICE  DEPLOYMENT  STATUS   TASKDEF  DESIRED  RUNNING  PENDING  FAILED  ROLLOUT      UPDATED               REASON\n" +
				"web      ecs-svc/2   PRIMARY  web:4    2        1        1        0       IN_PROGRESS  2025-03-01T12:01:00Z  ECS deployment ecs-svc/2 in progress.\n" +
				"web      ecs-svc/1   ACTIVE   web:3    2        2        0        0       COMPLETED    2025-03-01T12:01:00Z  -\n",
		},
		{
			name: "update-service everything",
			args: []string{"update-service", "--cluster", "prod", "--service", svcArn, "--desired-count", "0", "--force-new-deployment",
				"--health-check-grace-period-seconds", "0", "--deployment-configuration", "minimumHealthyPercent=0,maximumPercent=100"},
			wantCalls: []call{{"UpdateService", &orchv1.UpdateServiceRequest{Cluster: "prod", Service: svcArn, DesiredCount: i32(0),
				ForceNewDeployment: true, HealthCheckGracePeriodSeconds: i32(0), DeploymentConfiguration: dc(100, 0, nil)}}},
		},
		{
			name:     "update-service without a service",
			args:     []string{"update-service", "--desired-count", "1"},
			wantCode: 252,
			errHas:   []string{`required flag(s) "service" not set`},
		},
		{
			name: "delete-service",
			args: []string{"delete-service", "--service", "web", "--force"},
			responses: map[string]proto.Message{"DeleteService": &orchv1.DeleteServiceResponse{Service: func() *orchv1.Service {
				s := service(0, 2, 0, deployment("ecs-svc/1", "PRIMARY", tdArn, 0, 2, 0, "COMPLETED"))
				s.Status = "DRAINING"
				return s
			}()}},
			wantCalls: []call{{"DeleteService", &orchv1.DeleteServiceRequest{Cluster: "default", Service: "web", Force: true}}},
			outHas:    []string{"web   DRAINING  0        2        0        web:3    COMPLETED\n"},
		},
		{
			name:      "delete-service refused",
			args:      []string{"delete-service", "--cluster", "prod", "--service", "web"},
			errs:      map[string]error{"DeleteService": status.Error(codes.FailedPrecondition, "service web has desiredCount 2; scale it to 0 or use --force")},
			wantCalls: []call{{"DeleteService", &orchv1.DeleteServiceRequest{Cluster: "prod", Service: "web"}}},
			wantCode:  254,
			errHas:    []string{"An error occurred (FailedPrecondition) when calling the DeleteService operation: service web has desiredCount 2"},
		},
		{
			name: "describe-services",
			args: []string{"describe-services", "--services", "web", "gone"},
			responses: map[string]proto.Message{"DescribeServices": &orchv1.DescribeServicesResponse{
				Services: []*orchv1.Service{stable},
				Failures: []*orchv1.Failure{{Arn: "arn:aws:ecs:local:000000000000:service/default/gone", Reason: "MISSING"}},
			}},
			wantCalls: []call{{"DescribeServices", &orchv1.DescribeServicesRequest{Cluster: "default", Services: []string{"web", "gone"}}}},
			wantOut: "" +
				"NAME  STATUS  DESIRED  RUNNING  PENDING  TASKDEF  ROLLOUT\n" +
				"web   ACTIVE  2        2        0        web:3    COMPLETED\n" +
				"\n" +
				"SERVICE  DEPLOYMENT  STATUS   TASKDEF  DESIRED  RUNNING  PENDING  FAILED  ROLLOUT    UPDATED               REASON\n" +
				"web      ecs-svc/1   PRIMARY  web:3    2        2        0        0       COMPLETED  2025-03-01T12:01:00Z  -\n" +
				"\n" +
				"SERVICE  TIME                  EVENT\n" +
				"web      2025-03-01T12:00:02Z  (service web) has reached a steady state.\n" +
				"web      2025-03-01T12:00:01Z  (service web) has started 2 tasks: (task " + idA + ") (task " + idB + ").\n" +
				"\n" +
				"FAILURE ARN                                          REASON   DETAIL\n" +
				"arn:aws:ecs:local:000000000000:service/default/gone  MISSING  -\n",
		},
		{
			name:      "describe-services shows the 5 newest events",
			args:      []string{"describe-services", "--cluster", "prod", "web"},
			responses: map[string]proto.Message{"DescribeServices": &orchv1.DescribeServicesResponse{Services: []*orchv1.Service{many}}},
			wantCalls: []call{{"DescribeServices", &orchv1.DescribeServicesRequest{Cluster: "prod", Services: []string{"web"}}}},
			outHas:    []string{"  e6\n", "  e2\n"},
			outLacks:  []string{"e1"},
		},
		{
			name:      "describe-services json",
			args:      []string{"describe-services", "--services", "web", "-o", "json"},
			responses: map[string]proto.Message{"DescribeServices": &orchv1.DescribeServicesResponse{Services: []*orchv1.Service{stable}}},
			wantCalls: []call{{"DescribeServices", &orchv1.DescribeServicesRequest{Cluster: "default", Services: []string{"web"}}}},
			outHas: []string{"{\n  \"services\": [\n    {\n      \"serviceArn\": \"" + svcArn + "\",\n",
				`"deployments": [`, `"runningCount": 2,`, `"rolloutState": "COMPLETED"`, `"events": [`,
				`"message": "(service web) has reached a steady state."`, `"createdAt": "2025-03-01T12:00:00Z"`},
		},
		{
			name:     "describe-services without services",
			args:     []string{"describe-services"},
			wantCode: 252,
			errHas:   []string{"the following arguments are required: --services"},
		},
		{
			name:      "list-services",
			args:      []string{"list-services", "--cluster", "prod"},
			responses: map[string]proto.Message{"ListServices": &orchv1.ListServicesResponse{ServiceArns: []string{svcArn, svcArn + "2"}}},
			wantCalls: []call{{"ListServices", &orchv1.ListServicesRequest{Cluster: "prod"}}},
			wantOut:   svcArn + "\n" + svcArn + "2\n",
		},
		{
			name:      "list-services json",
			args:      []string{"list-services", "-o", "json"},
			responses: map[string]proto.Message{"ListServices": &orchv1.ListServicesResponse{ServiceArns: []string{svcArn}}},
			wantCalls: []call{{"ListServices", &orchv1.ListServicesRequest{Cluster: "default"}}},
			wantOut:   "{\n  \"serviceArns\": [\n    \"" + svcArn + "\"\n  ]\n}\n",
		},
		{
			name:     "wait without a waiter",
			args:     []string{"wait"},
			wantCode: 252,
			errHas:   []string{"the following arguments are required: WAITER (services-stable, services-inactive)"},
		},
		{
			name:     "wait unknown waiter",
			args:     []string{"wait", "tasks-stopped"},
			wantCode: 252,
			errHas:   []string{`unknown command "tasks-stopped" for "orchctl wait"`},
		},
		{
			name:     "wait services-stable without services",
			args:     []string{"wait", "services-stable"},
			wantCode: 252,
			errHas:   []string{"the following arguments are required: --services"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := &fixture{responses: tt.responses, errs: tt.errs}
			addr := serve(t, serviceFake(fx))
			res := orchctl(t, addr, "", tt.args...)
			if res.code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			checkCalls(t, fx.recorded(), tt.wantCalls)
			if tt.wantOut != "" && res.stdout != tt.wantOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", res.stdout, tt.wantOut)
			}
			for _, s := range tt.outHas {
				if !strings.Contains(res.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, res.stdout)
				}
			}
			for _, s := range tt.outLacks {
				if strings.Contains(res.stdout, s) {
					t.Errorf("stdout has %q:\n%s", s, res.stdout)
				}
			}
			switch {
			case tt.wantErr != "" && res.stderr != tt.wantErr:
				t.Errorf("stderr:\n%s\nwant:\n%s", res.stderr, tt.wantErr)
			case tt.wantErr == "" && tt.wantCode == 0 && res.stderr != "":
				t.Errorf("unexpected stderr:\n%s", res.stderr)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(res.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, res.stderr)
				}
			}
		})
	}
}

// ListServices is paginated; list-services fetches every page, as the AWS CLI does.
func TestListServicesPages(t *testing.T) {
	var reqs []*orchv1.ListServicesRequest
	addr := serve(t, &fakeOrch{
		ListServicesFn: func(_ context.Context, r *orchv1.ListServicesRequest) (*orchv1.ListServicesResponse, error) {
			reqs = append(reqs, r)
			switch r.NextToken {
			case "":
				return &orchv1.ListServicesResponse{ServiceArns: []string{"a", "b"}, NextToken: "p2"}, nil
			case "p2":
				return &orchv1.ListServicesResponse{ServiceArns: []string{"c"}, NextToken: "p3"}, nil
			}
			return &orchv1.ListServicesResponse{}, nil
		},
	})
	res := orchctl(t, addr, "", "list-services", "--cluster", "prod")
	if res.code != 0 || res.stdout != "a\nb\nc\n" {
		t.Errorf("list-services: %+v, want a b c", res)
	}
	want := []*orchv1.ListServicesRequest{{Cluster: "prod"}, {Cluster: "prod", NextToken: "p2"}, {Cluster: "prod", NextToken: "p3"}}
	if len(reqs) != len(want) {
		t.Fatalf("ListServices called %d times, want %d: %v", len(reqs), len(want), reqs)
	}
	for i := range want {
		if !proto.Equal(reqs[i], want[i]) {
			t.Errorf("ListServices call %d: %v, want %v", i, reqs[i], want[i])
		}
	}
}

// --service and --services complete the names of the services of --cluster.
func TestCompleteServices(t *testing.T) {
	fx := &fixture{responses: map[string]proto.Message{"ListServices": &orchv1.ListServicesResponse{
		ServiceArns: []string{"arn:aws:ecs:local:000000000000:service/prod/api", "arn:aws:ecs:local:000000000000:service/prod/web"},
	}}}
	addr := serve(t, serviceFake(fx))
	for _, args := range [][]string{
		{"__complete", "update-service", "--cluster", "prod", "--service", "w"},
		{"__complete", "describe-services", "--cluster", "prod", "--services", "w"},
		{"__complete", "wait", "services-stable", "--cluster", "prod", "w"},
	} {
		res := orchctl(t, addr, "", args...)
		if res.code != 0 || !strings.HasPrefix(res.stdout, "web\n:4\n") {
			t.Errorf("%v: exit code %d, stdout %q, stderr %q", args, res.code, res.stdout, res.stderr)
		}
	}
	for _, c := range fx.recorded() {
		if want := (&orchv1.ListServicesRequest{Cluster: "prod", MaxResults: 100}); !proto.Equal(c.req, want) {
			t.Errorf("%s %v, want ListServices %v", c.op, c.req, want)
		}
	}
}
