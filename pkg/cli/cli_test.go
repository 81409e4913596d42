package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	orchv1 "orch/proto/orch/v1"
)

func TestMain(m *testing.M) {
	time.Local = time.UTC // tables print local times
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "orchctl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := setupTestEnv(dir); err != nil {
		fmt.Fprintln(os.Stderr, "test CA:", err)
		return 1
	}
	return m.Run()
}

// call is one unary request the fake received.
type call struct {
	op  string
	req proto.Message
}

// fixture is a fake whose unary methods record their requests and answer with responses[op]
// (an empty response when unset) or errs[op].
type fixture struct {
	mu        sync.Mutex
	calls     []call
	responses map[string]proto.Message
	errs      map[string]error
}

func (fx *fixture) record(op string, req proto.Message) {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	fx.calls = append(fx.calls, call{op, req})
}

func (fx *fixture) recorded() []call {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return append([]call(nil), fx.calls...)
}

func unary[Req, Resp proto.Message](fx *fixture, op string) func(context.Context, Req) (Resp, error) {
	return func(_ context.Context, req Req) (Resp, error) {
		fx.record(op, req)
		var zero Resp
		if err := fx.errs[op]; err != nil {
			return zero, err
		}
		if r, ok := fx.responses[op].(Resp); ok {
			return r, nil
		}
		return zero.ProtoReflect().New().Interface().(Resp), nil
	}
}

func (fx *fixture) fake() *fakeOrch {
	return &fakeOrch{
		CreateClusterFn:              unary[*orchv1.CreateClusterRequest, *orchv1.CreateClusterResponse](fx, "CreateCluster"),
		DescribeClustersFn:           unary[*orchv1.DescribeClustersRequest, *orchv1.DescribeClustersResponse](fx, "DescribeClusters"),
		ListClustersFn:               unary[*orchv1.ListClustersRequest, *orchv1.ListClustersResponse](fx, "ListClusters"),
		DeleteClusterFn:              unary[*orchv1.DeleteClusterRequest, *orchv1.DeleteClusterResponse](fx, "DeleteCluster"),
		RegisterTaskDefinitionFn:     unary[*orchv1.RegisterTaskDefinitionRequest, *orchv1.RegisterTaskDefinitionResponse](fx, "RegisterTaskDefinition"),
		DescribeTaskDefinitionFn:     unary[*orchv1.DescribeTaskDefinitionRequest, *orchv1.DescribeTaskDefinitionResponse](fx, "DescribeTaskDefinition"),
		ListTaskDefinitionsFn:        unary[*orchv1.ListTaskDefinitionsRequest, *orchv1.ListTaskDefinitionsResponse](fx, "ListTaskDefinitions"),
		DeregisterTaskDefinitionFn:   unary[*orchv1.DeregisterTaskDefinitionRequest, *orchv1.DeregisterTaskDefinitionResponse](fx, "DeregisterTaskDefinition"),
		RunTaskFn:                    unary[*orchv1.RunTaskRequest, *orchv1.RunTaskResponse](fx, "RunTask"),
		StopTaskFn:                   unary[*orchv1.StopTaskRequest, *orchv1.StopTaskResponse](fx, "StopTask"),
		DescribeTasksFn:              unary[*orchv1.DescribeTasksRequest, *orchv1.DescribeTasksResponse](fx, "DescribeTasks"),
		ListTasksFn:                  unary[*orchv1.ListTasksRequest, *orchv1.ListTasksResponse](fx, "ListTasks"),
		ListContainerInstancesFn:     unary[*orchv1.ListContainerInstancesRequest, *orchv1.ListContainerInstancesResponse](fx, "ListContainerInstances"),
		DescribeContainerInstancesFn: unary[*orchv1.DescribeContainerInstancesRequest, *orchv1.DescribeContainerInstancesResponse](fx, "DescribeContainerInstances"),
	}
}

const (
	idA   = "0123456789abcdef0123456789abcdef"
	idB   = "fedcba9876543210fedcba9876543210"
	tdArn = "arn:aws:ecs:local:000000000000:task-definition/web:3"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func ts(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(t0.Add(d)) }

func i32(v int32) *int32 { return &v }

// task makes a task of web:3 in the default cluster.
func task(id, last string, mods ...func(*orchv1.Task)) *orchv1.Task {
	t := &orchv1.Task{
		TaskArn:           "arn:aws:ecs:local:000000000000:task/default/" + id,
		ClusterArn:        "arn:aws:ecs:local:000000000000:cluster/default",
		TaskDefinitionArn: tdArn,
		LastStatus:        last,
		DesiredStatus:     "RUNNING",
		Id:                id,
		Cluster:           "default",
		CreatedAt:         ts(0),
		Containers:        []*orchv1.Container{{Name: "web", LastStatus: last}},
	}
	for _, m := range mods {
		m(t)
	}
	return t
}

func withIP(ip string) func(*orchv1.Task) {
	return func(t *orchv1.Task) { t.Eni = &orchv1.Eni{Id: "eni-" + t.Id[:8], Ip: ip} }
}

func stoppedBy(code, reason string, exit int32, containerReason string) func(*orchv1.Task) {
	return func(t *orchv1.Task) {
		t.LastStatus, t.DesiredStatus, t.StopCode, t.StoppedReason = "STOPPED", "STOPPED", code, reason
		t.StoppedAt = ts(time.Minute)
		t.Containers = []*orchv1.Container{{Name: "web", LastStatus: "STOPPED", ExitCode: i32(exit), Reason: containerReason}}
	}
}

func TestUnaryCommands(t *testing.T) {
	cluster := &orchv1.Cluster{
		ClusterArn: "arn:aws:ecs:local:000000000000:cluster/prod", ClusterName: "prod", Status: "ACTIVE",
		Cidr: "10.70.0.0/16", RegisteredContainerInstancesCount: 2, RunningTasksCount: 3, CreatedAt: ts(0),
	}
	running := task(idA, "RUNNING", withIP("10.64.0.5"), func(t *orchv1.Task) {
		t.StartedAt = ts(10 * time.Second)
		t.Usage = &orchv1.TaskUsage{CpuPercent: 12.5, MemoryBytes: 34 << 20}
		t.Containers = []*orchv1.Container{
			{Name: "web", LastStatus: "RUNNING", HealthStatus: "HEALTHY"},
			{Name: "init", LastStatus: "STOPPED", ExitCode: i32(0), Reason: "done"},
		}
	})
	stopped := task(idB, "STOPPED", stoppedBy("EssentialContainerExited", "Essential container in task exited", 137, "OutOfMemoryError: Container killed due to memory usage"),
		func(t *orchv1.Task) {
			// No ENI field: the IP comes from the ENI attachment.
			t.Attachments = []*orchv1.Attachment{{Type: "ElasticNetworkInterface", Details: []*orchv1.AttachmentDetail{
				{Name: "subnetId", Value: "10.64.0.0/24"}, {Name: "privateIPv4Address", Value: "10.64.0.9"},
			}}}
		})
	instance := &orchv1.ContainerInstance{
		ContainerInstanceArn: "arn:aws:ecs:local:000000000000:container-instance/default/ci1",
		Id:                   "ci1", Hostname: "node1", Status: "ACTIVE", AgentConnected: true,
		RunningTasksCount: 2, PendingTasksCount: 1, Subnet: "10.64.1.0/24",
		RegisteredResources: []*orchv1.Resource{{Name: "CPU", Type: "INTEGER", IntegerValue: 4096}, {Name: "MEMORY", Type: "INTEGER", IntegerValue: 7900}},
		RemainingResources:  []*orchv1.Resource{{Name: "CPU", Type: "INTEGER", IntegerValue: 3584}, {Name: "MEMORY", Type: "INTEGER", IntegerValue: 7388}},
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
		errHas    []string // substrings of stderr
	}{
		{
			name:      "create-cluster with tags",
			args:      []string{"create-cluster", "--cluster-name", "prod", "--cidr", "10.70.0.0/16", "--tags", "key=team,value=web", "key=env,value=prod"},
			responses: map[string]proto.Message{"CreateCluster": &orchv1.CreateClusterResponse{Cluster: cluster}},
			wantCalls: []call{{"CreateCluster", &orchv1.CreateClusterRequest{ClusterName: "prod", Cidr: "10.70.0.0/16",
				Tags: []*orchv1.Tag{{Key: "team", Value: "web"}, {Key: "env", Value: "prod"}}}}},
			wantOut: "NAME  STATUS  CIDR          INSTANCES  RUNNING  PENDING  SERVICES  CREATED\n" +
				"prod  ACTIVE  10.70.0.0/16  2          3        0        0         2025-03-01T12:00:00Z\n",
		},
		{
			name:      "create-cluster json tags",
			args:      []string{"create-cluster", "--cluster-name", "prod", "--tags", `[{"key":"a","value":"b"}]`, "-o", "json"},
			responses: map[string]proto.Message{"CreateCluster": &orchv1.CreateClusterResponse{Cluster: cluster}},
			wantCalls: []call{{"CreateCluster", &orchv1.CreateClusterRequest{ClusterName: "prod", Tags: []*orchv1.Tag{{Key: "a", Value: "b"}}}}},
			outHas:    []string{"{\n  \"cluster\": {\n    \"clusterArn\": \"arn:aws:ecs:local:000000000000:cluster/prod\",\n"},
		},
		{
			name:     "create-cluster bad tag",
			args:     []string{"create-cluster", "--cluster-name", "prod", "--tags", "team=web"},
			wantCode: 252,
			errHas:   []string{`argument --tags: expected key=K,value=V, got "team=web"`, "See 'orchctl create-cluster --help'."},
		},
		{
			name:     "create-cluster without name",
			args:     []string{"create-cluster"},
			wantCode: 252,
			errHas:   []string{`required flag(s) "cluster-name" not set`},
		},
		{
			name: "describe-clusters several",
			args: []string{"describe-clusters", "--clusters", "prod", "nope"},
			responses: map[string]proto.Message{"DescribeClusters": &orchv1.DescribeClustersResponse{
				Clusters: []*orchv1.Cluster{cluster},
				Failures: []*orchv1.Failure{{Arn: "arn:aws:ecs:local:000000000000:cluster/nope", Reason: "MISSING"}},
			}},
			wantCalls: []call{{"DescribeClusters", &orchv1.DescribeClustersRequest{Clusters: []string{"prod", "nope"}}}},
			outHas:    []string{"prod  ACTIVE", "FAILURE ARN                                  REASON   DETAIL\narn:aws:ecs:local:000000000000:cluster/nope  MISSING  -\n"},
		},
		{
			name:      "list-clusters",
			args:      []string{"list-clusters"},
			responses: map[string]proto.Message{"ListClusters": &orchv1.ListClustersResponse{ClusterArns: []string{"arn:c/default", "arn:c/prod"}}},
			wantCalls: []call{{"ListClusters", &orchv1.ListClustersRequest{}}},
			wantOut:   "arn:c/default\narn:c/prod\n",
		},
		{
			name:      "list-clusters json",
			args:      []string{"list-clusters", "-o", "json"},
			responses: map[string]proto.Message{"ListClusters": &orchv1.ListClustersResponse{ClusterArns: []string{"arn:c/default"}}},
			wantCalls: []call{{"ListClusters", &orchv1.ListClustersRequest{}}},
			wantOut:   "{\n  \"clusterArns\": [\n    \"arn:c/default\"\n  ]\n}\n",
		},
		{
			name:      "delete-cluster",
			args:      []string{"delete-cluster", "--cluster", "prod"},
			responses: map[string]proto.Message{"DeleteCluster": &orchv1.DeleteClusterResponse{Cluster: &orchv1.Cluster{ClusterName: "prod", Status: "INACTIVE"}}},
			wantCalls: []call{{"DeleteCluster", &orchv1.DeleteClusterRequest{Cluster: "prod"}}},
			outHas:    []string{"prod  INACTIVE"},
		},
		{
			name:      "delete-cluster server error",
			args:      []string{"delete-cluster", "--cluster", "prod"},
			errs:      map[string]error{"DeleteCluster": status.Error(codes.FailedPrecondition, "cluster prod still has 2 container instances")},
			wantCode:  254,
			wantCalls: []call{{"DeleteCluster", &orchv1.DeleteClusterRequest{Cluster: "prod"}}},
			errHas:    []string{"An error occurred (FailedPrecondition) when calling the DeleteCluster operation: cluster prod still has 2 container instances\n"},
		},
		{
			name: "describe-task-definition",
			args: []string{"describe-task-definition", "--task-definition", "web"},
			responses: map[string]proto.Message{"DescribeTaskDefinition": &orchv1.DescribeTaskDefinitionResponse{TaskDefinition: &orchv1.TaskDefinition{
				TaskDefinitionArn: tdArn, Family: "web", Revision: 3, Status: "ACTIVE", NetworkMode: "awsvpc", Cpu: "256", Memory: "512",
				ContainerDefinitions: []*orchv1.ContainerDefinition{{Name: "web", Image: "nginx:1", Memory: i32(256),
					PortMappings: []*orchv1.PortMapping{{ContainerPort: 80}}}},
			}}},
			wantCalls: []call{{"DescribeTaskDefinition", &orchv1.DescribeTaskDefinitionRequest{TaskDefinition: "web"}}},
			outHas: []string{"TASK DEFINITION  web:3\n", "STATUS           ACTIVE\n",
				"CONTAINER  IMAGE    CPU  MEMORY  RESERVATION  ESSENTIAL  PORTS\nweb        nginx:1  -    256     -            true       80/tcp\n"},
		},
		{
			name:      "list-task-definitions",
			args:      []string{"list-task-definitions", "--family-prefix", "we", "--status", "all", "--sort", "DESC"},
			responses: map[string]proto.Message{"ListTaskDefinitions": &orchv1.ListTaskDefinitionsResponse{TaskDefinitionArns: []string{tdArn}}},
			wantCalls: []call{{"ListTaskDefinitions", &orchv1.ListTaskDefinitionsRequest{FamilyPrefix: "we", Status: "ALL", Sort: "DESC"}}},
			wantOut:   tdArn + "\n",
		},
		{
			name:     "list-task-definitions bad sort",
			args:     []string{"list-task-definitions", "--sort", "up"},
			wantCode: 252,
			errHas:   []string{`argument --sort: invalid choice: "up" (choose from ASC, DESC)`},
		},
		{
			name: "deregister-task-definition",
			args: []string{"deregister-task-definition", "--task-definition", "web:3"},
			responses: map[string]proto.Message{"DeregisterTaskDefinition": &orchv1.DeregisterTaskDefinitionResponse{
				TaskDefinition: &orchv1.TaskDefinition{Family: "web", Revision: 3, Status: "INACTIVE"}}},
			wantCalls: []call{{"DeregisterTaskDefinition", &orchv1.DeregisterTaskDefinitionRequest{TaskDefinition: "web:3"}}},
			wantOut:   "web:3 INACTIVE\n",
		},
		{
			name: "run-task",
			args: []string{"run-task", "--task-definition", "web:3", "--count", "2", "--started-by", "ci", "--group", "family:web",
				"--overrides", `{"containerOverrides":[{"name":"web","command":["sh","-c","date"],"environment":[{"name":"A","value":"1"}]}]}`},
			responses: map[string]proto.Message{"RunTask": &orchv1.RunTaskResponse{
				Tasks:    []*orchv1.Task{task(idA, "PROVISIONING")},
				Failures: []*orchv1.Failure{{Reason: "RESOURCE:MEMORY", Detail: "0 of 2 nodes: memory 2"}},
			}},
			wantCalls: []call{{"RunTask", &orchv1.RunTaskRequest{Cluster: "default", TaskDefinition: "web:3", Count: 2, StartedBy: "ci", Group: "family:web",
				Overrides: &orchv1.TaskOverride{ContainerOverrides: []*orchv1.ContainerOverride{{Name: "web", Command: []string{"sh", "-c", "date"},
					Environment: []*orchv1.KeyValuePair{{Name: "A", Value: "1"}}}}}}}},
			outHas: []string{idA + "  web:3       PROVISIONING  RUNNING", "FAILURE ARN  REASON           DETAIL\n-            RESOURCE:MEMORY  0 of 2 nodes: memory 2\n"},
		},
		{
			name: "run-task nothing placed",
			args: []string{"run-task", "--cluster", "prod", "--task-definition", "web"},
			responses: map[string]proto.Message{"RunTask": &orchv1.RunTaskResponse{
				Failures: []*orchv1.Failure{{Arn: "arn:aws:ecs:local:000000000000:container-instance/prod/ci1", Reason: "RESOURCE:CPU"}},
			}},
			wantCalls: []call{{"RunTask", &orchv1.RunTaskRequest{Cluster: "prod", TaskDefinition: "web", Count: 1}}},
			wantCode:  1,
			outHas:    []string{"RESOURCE:CPU"},
			errHas:    []string{"No task was started."},
		},
		{
			name:     "run-task bad overrides",
			args:     []string{"run-task", "--task-definition", "web", "--overrides", `{"containerOverride":[]}`},
			wantCode: 252,
			errHas:   []string{"argument --overrides: invalid JSON"},
		},
		{
			name:      "run-task unknown task definition",
			args:      []string{"run-task", "--task-definition", "nope"},
			errs:      map[string]error{"RunTask": status.Error(codes.NotFound, "task definition nope not found")},
			wantCalls: []call{{"RunTask", &orchv1.RunTaskRequest{Cluster: "default", TaskDefinition: "nope", Count: 1}}},
			wantCode:  254,
			errHas:    []string{"An error occurred (NotFound) when calling the RunTask operation: task definition nope not found"},
		},
		{
			name:      "stop-task",
			args:      []string{"stop-task", "--task", idA, "--reason", "new release"},
			responses: map[string]proto.Message{"StopTask": &orchv1.StopTaskResponse{Task: task(idA, "RUNNING", func(t *orchv1.Task) { t.DesiredStatus = "STOPPED" })}},
			wantCalls: []call{{"StopTask", &orchv1.StopTaskRequest{Cluster: "default", Task: idA, Reason: "new release"}}},
			outHas:    []string{idA + "  web:3       RUNNING  STOPPED"},
		},
		{
			name:      "list-tasks",
			args:      []string{"list-tasks", "--cluster", "prod", "--family", "web", "--container-instance", "ci1", "--desired-status", "stopped", "--started-by", "ci", "--service-name", "api"},
			responses: map[string]proto.Message{"ListTasks": &orchv1.ListTasksResponse{TaskArns: []string{running.TaskArn}}},
			wantCalls: []call{{"ListTasks", &orchv1.ListTasksRequest{Cluster: "prod", Family: "web", ContainerInstance: "ci1", DesiredStatus: "STOPPED", StartedBy: "ci", ServiceName: "api"}}},
			wantOut:   running.TaskArn + "\n",
		},
		{
			name:     "list-tasks bad status",
			args:     []string{"list-tasks", "--desired-status", "PENDING"},
			wantCode: 252,
			errHas:   []string{"argument --desired-status: invalid choice"},
		},
		{
			name: "describe-tasks",
			args: []string{"describe-tasks", "--tasks", idA, running.TaskArn[:40], "missing"},
			responses: map[string]proto.Message{"DescribeTasks": &orchv1.DescribeTasksResponse{
				Tasks:    []*orchv1.Task{running, stopped},
				Failures: []*orchv1.Failure{{Arn: "missing", Reason: "MISSING"}},
			}},
			wantCalls: []call{{"DescribeTasks", &orchv1.DescribeTasksRequest{Cluster: "default", Tasks: []string{idA, running.TaskArn[:40], "missing"}}}},
			wantOut: "" +
				"TASK                              DEFINITION  LAST     DESIRED  IP         CPU    MEMORY   CREATED               STARTED               STOPPED               STOP CODE                 STOPPED REASON\n" +
				"0123456789abcdef0123456789abcdef  web:3       RUNNING  RUNNING  10.64.0.5  12.5%  34.0MiB  2025-03-01T12:00:00Z  2025-03-01T12:00:10Z  -                     -                         -\n" +
				"fedcba9876543210fedcba9876543210  web:3       STOPPED  STOPPED  10.64.0.9  -      -        2025-03-01T12:00:00Z  -                     2025-03-01T12:01:00Z  EssentialContainerExited  Essential container in task exited\n" +
				"\n" +
				"TASK                              CONTAINER  STATUS   EXIT CODE  HEALTH   REASON\n" +
				"0123456789abcdef0123456789abcdef  web        RUNNING  -          HEALTHY  -\n" +
				"0123456789abcdef0123456789abcdef  init       STOPPED  0          -        done\n" +
				"fedcba9876543210fedcba9876543210  web        STOPPED  137        -        OutOfMemoryError: Container killed due to memory usage\n" +
				"\n" +
				"FAILURE ARN  REASON   DETAIL\n" +
				"missing      MISSING  -\n",
		},
		{
			name:     "describe-tasks without tasks",
			args:     []string{"describe-tasks"},
			wantCode: 252,
			errHas:   []string{"the following arguments are required: --tasks"},
		},
		{
			name:      "list-container-instances",
			args:      []string{"list-container-instances", "--status", "draining"},
			responses: map[string]proto.Message{"ListContainerInstances": &orchv1.ListContainerInstancesResponse{ContainerInstanceArns: []string{instance.ContainerInstanceArn}}},
			wantCalls: []call{{"ListContainerInstances", &orchv1.ListContainerInstancesRequest{Cluster: "default", Status: "DRAINING"}}},
			wantOut:   instance.ContainerInstanceArn + "\n",
		},
		{
			name: "describe-container-instances lists first",
			args: []string{"describe-container-instances", "--cluster", "prod"},
			responses: map[string]proto.Message{
				"ListContainerInstances":     &orchv1.ListContainerInstancesResponse{ContainerInstanceArns: []string{instance.ContainerInstanceArn}},
				"DescribeContainerInstances": &orchv1.DescribeContainerInstancesResponse{ContainerInstances: []*orchv1.ContainerInstance{instance}},
			},
			wantCalls: []call{
				{"ListContainerInstances", &orchv1.ListContainerInstancesRequest{Cluster: "prod"}},
				{"DescribeContainerInstances", &orchv1.DescribeContainerInstancesRequest{Cluster: "prod", ContainerInstances: []string{instance.ContainerInstanceArn}}},
			},
			wantOut: "ID   HOSTNAME  STATUS  AGENT CONNECTED  RUNNING  PENDING  CPU (FREE/TOTAL)  MEMORY (FREE/TOTAL)  SUBNET\n" +
				"ci1  node1     ACTIVE  true             2        1        3584/4096         7388/7900            10.64.1.0/24\n",
		},
		{
			name: "describe-container-instances by id",
			args: []string{"describe-container-instances", "--container-instances", "ci1", "ci2", "-o", "json"},
			responses: map[string]proto.Message{
				"DescribeContainerInstances": &orchv1.DescribeContainerInstancesResponse{Failures: []*orchv1.Failure{{Arn: "ci2", Reason: "MISSING"}}},
			},
			wantCalls: []call{{"DescribeContainerInstances", &orchv1.DescribeContainerInstancesRequest{Cluster: "default", ContainerInstances: []string{"ci1", "ci2"}}}},
			wantOut:   "{\n  \"failures\": [\n    {\n      \"arn\": \"ci2\",\n      \"reason\": \"MISSING\"\n    }\n  ]\n}\n",
		},
		{
			name:      "describe-container-instances empty cluster",
			args:      []string{"describe-container-instances", "-o", "json"},
			wantCalls: []call{{"ListContainerInstances", &orchv1.ListContainerInstancesRequest{Cluster: "default"}}},
			wantOut:   "{}\n",
		},
		{
			name:     "bad output",
			args:     []string{"list-clusters", "-o", "yaml"},
			wantCode: 252,
			errHas:   []string{`argument --output: invalid choice: "yaml" (choose from table, json)`},
		},
		{
			name:     "unknown flag",
			args:     []string{"list-tasks", "--bogus"},
			wantCode: 252,
			errHas:   []string{"orchctl: error: unknown flag: --bogus", "See 'orchctl list-tasks --help'."},
		},
		{
			name:     "unknown command",
			args:     []string{"describe-servics"},
			wantCode: 252,
			errHas:   []string{`unknown command "describe-servics"`},
		},
		{
			name:     "stray argument",
			args:     []string{"list-clusters", "extra"},
			wantCode: 252,
			errHas:   []string{`unknown command "extra"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := &fixture{responses: tt.responses, errs: tt.errs}
			addr := serve(t, fx.fake())
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
			for _, s := range tt.errHas {
				if !strings.Contains(res.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, res.stderr)
				}
			}
			if tt.wantCode == 0 && res.stderr != "" {
				t.Errorf("unexpected stderr:\n%s", res.stderr)
			}
		})
	}
}

func checkCalls(t *testing.T, got, want []call) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("server got %d calls %v, want %d", len(got), got, len(want))
		return
	}
	for i := range want {
		if got[i].op != want[i].op || !proto.Equal(got[i].req, want[i].req) {
			t.Errorf("call %d: got %s %s\nwant %s %s", i, got[i].op, prototext.Format(got[i].req), want[i].op, prototext.Format(want[i].req))
		}
	}
}
