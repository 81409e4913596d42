package cli

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

// describeScript is a fake DescribeServices that answers its steps in order, repeating the
// last one, and records the requests.
type describeScript struct {
	mu    sync.Mutex
	steps []describeStep
	reqs  []*orchv1.DescribeServicesRequest
}

type describeStep struct {
	resp *orchv1.DescribeServicesResponse
	err  error
}

func (d *describeScript) fn(_ context.Context, r *orchv1.DescribeServicesRequest) (*orchv1.DescribeServicesResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reqs = append(d.reqs, r)
	st := d.steps[min(len(d.reqs), len(d.steps))-1]
	return st.resp, st.err
}

func (d *describeScript) calls() []*orchv1.DescribeServicesRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*orchv1.DescribeServicesRequest(nil), d.reqs...)
}

func described(services ...*orchv1.Service) describeStep {
	return describeStep{resp: &orchv1.DescribeServicesResponse{Services: services}}
}

// fastWaits makes the waiters of commands built from now on poll every 10 ms.
func fastWaits(t *testing.T) {
	old := waitInterval
	waitInterval = 10 * time.Millisecond
	t.Cleanup(func() { waitInterval = old })
}

// Services of the waiter tests: web rolling from web:3 to web:4, then stable.
var (
	started  = "(service web) has started 1 tasks: (task " + idB + ")."
	stopped  = "(service web) has stopped 1 running tasks: (task " + idA + ")."
	steady   = "(service web) has reached a steady state."
	rolling1 = withEvents(service(2, 2, 1,
		deployment("ecs-svc/2", "PRIMARY", tdArn4, 2, 0, 1, "IN_PROGRESS"),
		deployment("ecs-svc/1", "ACTIVE", tdArn, 2, 2, 0, "COMPLETED")), started)
	rolling2 = withEvents(service(2, 2, 0,
		deployment("ecs-svc/2", "PRIMARY", tdArn4, 2, 1, 0, "IN_PROGRESS"),
		deployment("ecs-svc/1", "ACTIVE", tdArn, 1, 1, 0, "COMPLETED")), stopped, started)
	stable4 = withEvents(service(2, 2, 0,
		deployment("ecs-svc/2", "PRIMARY", tdArn4, 2, 2, 0, "COMPLETED")), steady, stopped, started)
)

func TestWaitServices(t *testing.T) {
	draining := service(0, 1, 0, deployment("ecs-svc/1", "PRIMARY", tdArn, 0, 1, 0, "COMPLETED"))
	draining.Status = "DRAINING"
	inactive := service(0, 0, 0)
	inactive.Status = "INACTIVE"
	failed := func(rollback bool) *orchv1.Service {
		s := service(2, 2, 0,
			deployment("ecs-svc/2", "PRIMARY", tdArn4, 2, 0, 0, "FAILED"),
			deployment("ecs-svc/1", "ACTIVE", tdArn, 2, 2, 0, "COMPLETED"))
		s.Deployments[0].RolloutStateReason = "ECS deployment circuit breaker: tasks failed to start."
		s.DeploymentConfiguration = &orchv1.DeploymentConfiguration{DeploymentCircuitBreaker: &orchv1.DeploymentCircuitBreaker{Enable: true, Rollback: rollback}}
		return s
	}
	scaling := service(3, 2, 1, deployment("ecs-svc/1", "PRIMARY", tdArn, 3, 2, 1, "COMPLETED"))
	tests := []struct {
		name      string
		args      []string
		steps     []describeStep
		wantCode  int
		wantCalls int    // DescribeServices calls, if set
		wantErr   string // exact stderr, if set
		errHas    []string
	}{
		{
			name:  "stable after a rollout",
			args:  []string{"wait", "services-stable", "--cluster", "prod", "--services", "web", "--interval", "10ms"},
			steps: []describeStep{described(rolling1), described(rolling2), described(stable4)},
			// Events already there when the wait started are not news.
			wantErr: "" +
				"web: ACTIVE, 2/2 running, 1 pending; web:4 PRIMARY IN_PROGRESS 0/2; web:3 ACTIVE COMPLETED 2/2\n" +
				stopped + "\n" +
				"web: ACTIVE, 2/2 running, 0 pending; web:4 PRIMARY IN_PROGRESS 1/2; web:3 ACTIVE COMPLETED 1/1\n" +
				steady + "\n" +
				"web: ACTIVE, 2/2 running, 0 pending; web:4 PRIMARY COMPLETED 2/2\n",
			wantCalls: 3,
		},
		{
			name:      "one deployment, scaling up",
			args:      []string{"wait", "services-stable", "--services", "web", "--interval", "10ms"},
			steps:     []describeStep{described(scaling), described(service(3, 3, 0, deployment("ecs-svc/1", "PRIMARY", tdArn, 3, 3, 0, "COMPLETED")))},
			wantCalls: 2,
		},
		{
			name:     "timeout",
			args:     []string{"wait", "services-stable", "--services", "web", "--interval", "10ms", "--timeout", "60ms"},
			steps:    []describeStep{described(rolling1)},
			wantCode: 255,
			wantErr: "web: ACTIVE, 2/2 running, 1 pending; web:4 PRIMARY IN_PROGRESS 0/2; web:3 ACTIVE COMPLETED 2/2\n" +
				"Waiter ServicesStable failed: Max attempts exceeded\n" +
				"  service web: 2 deployments, 2 of 2 tasks running\n",
		},
		{
			name:      "missing",
			args:      []string{"wait", "services-stable", "--services", "web", "gone", "--interval", "10ms"},
			steps:     []describeStep{{resp: &orchv1.DescribeServicesResponse{Services: []*orchv1.Service{scaling}, Failures: []*orchv1.Failure{{Arn: "arn:aws:ecs:local:000000000000:service/default/gone", Reason: "MISSING"}}}}},
			wantCode:  255,
			wantCalls: 1,
			errHas:    []string{"Waiter ServicesStable failed: Waiter encountered a terminal failure state: service gone is MISSING\n"},
		},
		{
			name:      "draining",
			args:      []string{"wait", "services-stable", "--services", "web", "--interval", "10ms"},
			steps:     []describeStep{described(draining)},
			wantCode:  255,
			wantCalls: 1,
			errHas:    []string{"Waiter ServicesStable failed: Waiter encountered a terminal failure state: service web is DRAINING\n"},
		},
		{
			name:      "deployment failed without rollback",
			args:      []string{"wait", "services-stable", "--services", "web", "--interval", "10ms"},
			steps:     []describeStep{described(failed(false))},
			wantCode:  255,
			wantCalls: 1,
			errHas: []string{"Waiter ServicesStable failed: Waiter encountered a terminal failure state: " +
				"service web: deployment ecs-svc/2 FAILED: ECS deployment circuit breaker: tasks failed to start.\n"},
		},
		{
			name: "first deployment failed, nothing to roll back to",
			args: []string{"wait", "services-stable", "--services", "web", "--interval", "10ms"},
			steps: []describeStep{described(func() *orchv1.Service {
				s := failed(true)
				s.Deployments = s.Deployments[:1]
				return s
			}())},
			wantCode:  255,
			wantCalls: 1,
			errHas:    []string{"Waiter ServicesStable failed: Waiter encountered a terminal failure state: service web: deployment ecs-svc/2 FAILED"},
		},
		{
			name:      "deployment failed, rolled back",
			args:      []string{"wait", "services-stable", "--services", "web", "--interval", "10ms"},
			steps:     []describeStep{described(failed(true)), described(service(2, 2, 0, deployment("ecs-svc/3", "PRIMARY", tdArn, 2, 2, 0, "COMPLETED")))},
			wantCalls: 2,
		},
		{
			name:      "describe fails",
			args:      []string{"wait", "services-stable", "--services", "web", "--interval", "10ms"},
			steps:     []describeStep{{err: status.Error(codes.PermissionDenied, "token lacks ecs:DescribeServices")}},
			wantCode:  254,
			wantCalls: 1,
			wantErr:   "An error occurred (PermissionDenied) when calling the DescribeServices operation: token lacks ecs:DescribeServices\n",
		},
		{
			name:      "inactive",
			args:      []string{"wait", "services-inactive", "--services", "web", "--interval", "10ms"},
			steps:     []describeStep{described(draining), described(inactive)},
			wantCalls: 2,
		},
		{
			name:     "inactive timeout",
			args:     []string{"wait", "services-inactive", "--services", "web", "--interval", "10ms", "--timeout", "0s"},
			steps:    []describeStep{described(draining)},
			wantCode: 255,
			errHas:   []string{"Waiter ServicesInactive failed: Max attempts exceeded\n  service web is DRAINING\n"},
		},
		{
			name:     "bad interval",
			args:     []string{"wait", "services-stable", "--services", "web", "--interval", "0s"},
			wantCode: 252,
			errHas:   []string{"argument --interval: must be positive, got 0s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &describeScript{steps: tt.steps}
			addr := serve(t, &fakeOrch{DescribeServicesFn: d.fn})
			res := orchctl(t, addr, "", tt.args...)
			if res.code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			if res.stdout != "" {
				t.Errorf("a waiter printed on stdout:\n%s", res.stdout)
			}
			if tt.wantErr != "" && res.stderr != tt.wantErr {
				t.Errorf("stderr:\n%s\nwant:\n%s", res.stderr, tt.wantErr)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(res.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, res.stderr)
				}
			}
			calls := d.calls()
			if tt.wantCalls != 0 && len(calls) != tt.wantCalls {
				t.Errorf("DescribeServices called %d times, want %d", len(calls), tt.wantCalls)
			}
			if len(calls) > 0 {
				want := &orchv1.DescribeServicesRequest{Cluster: "default", Services: []string{"web"}}
				switch tt.name {
				case "stable after a rollout":
					want.Cluster = "prod"
				case "missing":
					want.Services = []string{"web", "gone"}
				}
				if !proto.Equal(calls[0], want) {
					t.Errorf("DescribeServices got %v, want %v", calls[0], want)
				}
			}
		})
	}
}

// create-service --wait and update-service --wait print the events that are news and the
// progress on stderr, and the service as it ended up on stdout.
func TestServiceCommandsWait(t *testing.T) {
	fastWaits(t)
	created := service(2, 0, 0, deployment("ecs-svc/1", "PRIMARY", tdArn, 2, 0, 0, "IN_PROGRESS"))
	placing := withEvents(service(2, 0, 2, deployment("ecs-svc/1", "PRIMARY", tdArn, 2, 0, 2, "IN_PROGRESS")),
		"(service web) has started 2 tasks: (task "+idA+") (task "+idB+").")
	up := withEvents(service(2, 2, 0, deployment("ecs-svc/1", "PRIMARY", tdArn, 2, 2, 0, "COMPLETED")),
		steady, "(service web) has started 2 tasks: (task "+idA+") (task "+idB+").")
	upToDate := withEvents(service(2, 2, 0, deployment("ecs-svc/1", "PRIMARY", tdArn, 2, 2, 0, "COMPLETED")), started)
	tests := []struct {
		name     string
		args     []string
		create   *orchv1.Service // what CreateService returns
		update   *orchv1.Service // what UpdateService returns
		steps    []describeStep
		wantCode int
		wantOut  string
		outHas   []string
		wantErr  string
		errHas   []string
	}{
		{
			name:   "create",
			args:   []string{"create-service", "--service-name", "web", "--task-definition", "web:3", "--desired-count", "2", "--wait"},
			create: created,
			steps:  []describeStep{described(placing), described(up)},
			wantErr: "" +
				"(service web) has started 2 tasks: (task " + idA + ") (task " + idB + ").\n" +
				"web: ACTIVE, 0/2 running, 2 pending; web:3 PRIMARY IN_PROGRESS 0/2\n" +
				steady + "\n" +
				"web: ACTIVE, 2/2 running, 0 pending; web:3 PRIMARY COMPLETED 2/2\n",
			wantOut: "" +
				"NAME  STATUS  DESIRED  RUNNING  PENDING  TASKDEF  ROLLOUT\n" +
				"web   ACTIVE  2        2        0        web:3    COMPLETED\n" +
				"\n" +
				"SERVICE  DEPLOYMENT  STATUS   TASKDEF  DESIRED  RUNNING  PENDING  FAILED  ROLLOUT    UPDATED               REASON\n" +
				"web      ecs-svc/1   PRIMARY  web:3    2        2        0        0       COMPLETED  2025-03-01T12:01:00Z  -\n",
		},
		{
			name:   "create json",
			args:   []string{"create-service", "--service-name", "web", "--task-definition", "web:3", "--desired-count", "2", "--wait", "-o", "json"},
			create: created,
			steps:  []describeStep{described(up)},
			outHas: []string{"{\n  \"service\": {\n", `"runningCount": 2,`, `"message": "(service web) has reached a steady state."`},
		},
		{
			name:     "create times out",
			args:     []string{"create-service", "--service-name", "web", "--task-definition", "web:3", "--desired-count", "2", "--wait", "--wait-timeout", "50ms"},
			create:   created,
			steps:    []describeStep{described(placing)},
			wantCode: 255,
			outHas:   []string{"web   ACTIVE  2        0        2        web:3    IN_PROGRESS\n"}, // the last state seen
			errHas:   []string{"Waiter ServicesStable failed: Max attempts exceeded\n  service web: 1 deployments, 0 of 2 tasks running\n"},
		},
		{
			name:   "update",
			args:   []string{"update-service", "--service", svcArn, "--task-definition", "web:4", "--wait"},
			update: rolling1,
			steps:  []describeStep{described(rolling2), described(stable4)},
			// started was in UpdateService's answer: old news.
			wantErr: "" +
				stopped + "\n" +
				"web: ACTIVE, 2/2 running, 0 pending; web:4 PRIMARY IN_PROGRESS 1/2; web:3 ACTIVE COMPLETED 1/1\n" +
				steady + "\n" +
				"web: ACTIVE, 2/2 running, 0 pending; web:4 PRIMARY COMPLETED 2/2\n",
			outHas: []string{"web   ACTIVE  2        2        0        web:4    COMPLETED\n"},
		},
		{
			name:    "update already stable",
			args:    []string{"update-service", "--service", "web", "--desired-count", "2", "--wait"},
			update:  upToDate,
			steps:   []describeStep{described(upToDate)},
			wantErr: "web: ACTIVE, 2/2 running, 0 pending; web:3 PRIMARY COMPLETED 2/2\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &describeScript{steps: tt.steps}
			var createReq recorder[*orchv1.CreateServiceRequest]
			var updateReq recorder[*orchv1.UpdateServiceRequest]
			addr := serve(t, &fakeOrch{
				CreateServiceFn: func(_ context.Context, r *orchv1.CreateServiceRequest) (*orchv1.CreateServiceResponse, error) {
					createReq.set(r)
					return &orchv1.CreateServiceResponse{Service: tt.create}, nil
				},
				UpdateServiceFn: func(_ context.Context, r *orchv1.UpdateServiceRequest) (*orchv1.UpdateServiceResponse, error) {
					updateReq.set(r)
					return &orchv1.UpdateServiceResponse{Service: tt.update}, nil
				},
				DescribeServicesFn: d.fn,
			})
			res := orchctl(t, addr, "", tt.args...)
			if res.code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			if tt.wantOut != "" && res.stdout != tt.wantOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", res.stdout, tt.wantOut)
			}
			for _, s := range tt.outHas {
				if !strings.Contains(res.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, res.stdout)
				}
			}
			if tt.wantErr != "" && res.stderr != tt.wantErr {
				t.Errorf("stderr:\n%s\nwant:\n%s", res.stderr, tt.wantErr)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(res.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, res.stderr)
				}
			}
			want := &orchv1.DescribeServicesRequest{Cluster: "default", Services: []string{"web"}}
			if tt.update != nil {
				want.Services = []string{tt.args[2]} // as given: name or ARN
			}
			if calls := d.calls(); len(calls) == 0 || !proto.Equal(calls[0], want) {
				t.Errorf("DescribeServices calls %v, want the first to be %v", calls, want)
			}
		})
	}
}

func TestWaitServicesInterrupted(t *testing.T) {
	d := &describeScript{steps: []describeStep{described(rolling1)}}
	addr := serve(t, &fakeOrch{DescribeServicesFn: d.fn})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for len(d.calls()) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel() // Ctrl-C
	}()
	res := orchctlCtx(ctx, addr, "", "wait", "services-stable", "--services", "web")
	if res.code != 130 {
		t.Errorf("exit code %d, want 130\nstderr:\n%s", res.code, res.stderr)
	}
	if n := len(d.calls()); n != 1 {
		t.Errorf("DescribeServices called %d times, want 1 (the default interval is %s)", n, waitInterval)
	}
}
