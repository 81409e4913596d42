package controllers

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const (
	depA = "ecs-svc/1000000000000000001" // the old deployment
	depP = "ecs-svc/2000000000000000002" // the PRIMARY
	td1  = "arn:aws:ecs:local:000000000000:task-definition/web:1"
	td2  = "arn:aws:ecs:local:000000000000:task-definition/web:2"
)

// svcOpt changes a test service.
type svcOpt func(*orchv1.Service)

func withBreaker(rollback bool) svcOpt {
	return func(s *orchv1.Service) {
		s.DeploymentConfiguration.DeploymentCircuitBreaker = &orchv1.DeploymentCircuitBreaker{Enable: true, Rollback: rollback}
	}
}

func withStatus(st string) svcOpt { return func(s *orchv1.Service) { s.Status = st } }

// withCounts sets the counts as a previous pass stored them (all the PRIMARY's).
func withCounts(running, pending int32) svcOpt {
	return func(s *orchv1.Service) {
		s.RunningCount, s.PendingCount = running, pending
		s.Deployments[0].RunningCount, s.Deployments[0].PendingCount = running, pending
	}
}

// service returns service "web" with desired tasks, deployment percents and deployments
// (PRIMARY first).
func service(desired, maxPct, minPct int32, deps []*orchv1.Deployment, opts ...svcOpt) *orchv1.Service {
	s := &orchv1.Service{
		ServiceName: "web", Cluster: "homelab", Status: ServiceActive, DesiredCount: desired,
		DeploymentConfiguration: &orchv1.DeploymentConfiguration{
			MaximumPercent: proto.Int32(maxPct), MinimumHealthyPercent: proto.Int32(minPct),
			DeploymentCircuitBreaker: &orchv1.DeploymentCircuitBreaker{},
		},
		Deployments: deps, TaskDefinition: deps[0].GetTaskDefinition(), CreatedAt: timestamppb.New(t0), LaunchType: "EC2",
	}
	deps[0].DesiredCount = desired
	for _, o := range opts {
		o(s)
	}
	return s
}

func deployment(id, status, td, rollout string) *orchv1.Deployment {
	return &orchv1.Deployment{Id: id, Status: status, TaskDefinition: td, RolloutState: rollout, CreatedAt: timestamppb.New(t0), UpdatedAt: timestamppb.New(t0)}
}

// primaryOnly is a service's deployments before any update.
func primaryOnly(rollout string) []*orchv1.Deployment {
	return []*orchv1.Deployment{deployment(depP, DeploymentPrimary, td2, rollout)}
}

// rolling is a deployment from td1 (depA, COMPLETED before) to td2 (depP).
func rolling() []*orchv1.Deployment {
	return []*orchv1.Deployment{
		deployment(depP, DeploymentPrimary, td2, RolloutInProgress),
		deployment(depA, DeploymentActive, td1, RolloutCompleted),
	}
}

// tasks builds tasks from specs "id:deployment:status", in creation order; status is a task
// lastStatus, "STOPPING" (RUNNING, desired STOPPED) or "FAILED" (STOPPED,
// EssentialContainerExited).
func tasks(specs ...string) []*orchv1.Task {
	var out []*orchv1.Task
	for i, spec := range specs {
		p := strings.Split(spec, ":")
		dep := map[string]string{"a": depA, "p": depP}[p[1]]
		if dep == "" {
			dep = p[1]
		}
		t := &orchv1.Task{
			Id: p[0], StartedBy: dep, Group: "service:web", Cluster: "homelab", LastStatus: p[2],
			DesiredStatus: lifecycle.DesiredRunning, CreatedAt: timestamppb.New(t0.Add(time.Duration(i) * time.Second)),
		}
		switch p[2] {
		case "STOPPING":
			t.LastStatus, t.DesiredStatus = lifecycle.Running, lifecycle.DesiredStopped
		case "FAILED":
			t.LastStatus, t.DesiredStatus, t.StopCode = lifecycle.Stopped, lifecycle.DesiredStopped, lifecycle.EssentialContainerExited
			t.StoppedAt = timestamppb.New(t0.Add(time.Minute))
		case lifecycle.Stopped:
			t.DesiredStatus, t.StopCode = lifecycle.DesiredStopped, lifecycle.ServiceSchedulerInitiated
		}
		out = append(out, t)
	}
	return out
}

func stopIDs(p ServicePlan) []string {
	var ids []string
	for _, s := range p.Stops {
		ids = append(ids, s.TaskIDs...)
	}
	return ids
}

func messages(svc *orchv1.Service) []string {
	var out []string
	for _, e := range svc.GetEvents() {
		out = append(out, e.GetMessage())
	}
	return out
}

func TestPlanService(t *testing.T) {
	tests := []struct {
		name  string
		svc   *orchv1.Service
		tasks []*orchv1.Task
		hold  bool

		launch  int
		stops   []string
		rollout string   // the PRIMARY's afterwards ("" = not checked)
		status  string   // the service's afterwards ("" = ACTIVE)
		events  []string // newest first, exactly (nil = none)
		counts  [2]int32 // service running, pending
		deps    int      // deployments afterwards (0 = not checked)
		check   func(t *testing.T, p ServicePlan)
	}{
		{
			name: "initial start", svc: service(3, 200, 100, primaryOnly(RolloutInProgress)),
			launch: 3, rollout: RolloutInProgress,
		},
		{
			name: "initial start completes", svc: service(3, 200, 100, primaryOnly(RolloutInProgress)),
			tasks: tasks("p1:p:RUNNING", "p2:p:RUNNING", "p3:p:RUNNING"), rollout: RolloutCompleted, counts: [2]int32{3, 0},
			events: []string{"(service web) has reached a steady state.", "(service web) (deployment " + depP + ") deployment completed."},
		},
		{
			name: "pending tasks are counted", svc: service(3, 200, 100, primaryOnly(RolloutInProgress)),
			tasks: tasks("p1:p:RUNNING", "p2:p:PROVISIONING", "p3:p:PENDING"), rollout: RolloutInProgress, counts: [2]int32{1, 2},
		},
		{
			name: "desiredCount 0 is steady at once", svc: service(0, 200, 100, primaryOnly(RolloutInProgress)),
			rollout: RolloutCompleted,
			events:  []string{"(service web) has reached a steady state.", "(service web) (deployment " + depP + ") deployment completed."},
		},
		{
			name: "steady: nothing to do, nothing to write", svc: service(3, 200, 100, primaryOnly(RolloutCompleted), withCounts(3, 0)),
			tasks: tasks("p1:p:RUNNING", "p2:p:RUNNING", "p3:p:RUNNING"), rollout: RolloutCompleted, counts: [2]int32{3, 0},
			check: func(t *testing.T, p ServicePlan) {
				if !proto.Equal(p.Service, service(3, 200, 100, primaryOnly(RolloutCompleted), withCounts(3, 0))) {
					t.Fatalf("a steady service changed: %v", p.Service)
				}
			},
		},
		{
			name: "scale out", svc: service(5, 200, 100, primaryOnly(RolloutCompleted), withCounts(3, 0)),
			tasks: tasks("p1:p:RUNNING", "p2:p:RUNNING", "p3:p:RUNNING"), launch: 2, rollout: RolloutCompleted, counts: [2]int32{3, 0},
		},
		{
			name: "scale out reaches a steady state again", svc: service(5, 200, 100, primaryOnly(RolloutCompleted), withCounts(4, 1)),
			tasks:  tasks("p1:p:RUNNING", "p2:p:RUNNING", "p3:p:RUNNING", "p4:p:RUNNING", "p5:p:RUNNING"),
			events: []string{"(service web) has reached a steady state."}, counts: [2]int32{5, 0},
		},
		{
			name: "scale in stops pending tasks first, then the newest", svc: service(2, 200, 100, primaryOnly(RolloutCompleted), withCounts(3, 1)),
			tasks: tasks("p1:p:RUNNING", "p2:p:RUNNING", "p3:p:RUNNING", "p4:p:PENDING"),
			stops: []string{"p4", "p3"}, counts: [2]int32{3, 1},
		},
		{
			name: "replacement of a crashed task", svc: service(3, 200, 100, primaryOnly(RolloutCompleted), withCounts(3, 0)),
			tasks: tasks("p1:p:RUNNING", "p2:p:FAILED", "p3:p:RUNNING"), launch: 1, counts: [2]int32{2, 0},
			check: func(t *testing.T, p ServicePlan) {
				if f := p.Service.GetDeployments()[0].GetFailedTasks(); f != 1 {
					t.Fatalf("failedTasks = %d, want 1", f)
				}
			},
		},
		{
			name: "replacement waits out the backoff", svc: service(3, 200, 100, primaryOnly(RolloutCompleted), withCounts(3, 0)),
			tasks: tasks("p1:p:RUNNING", "p2:p:FAILED", "p3:p:RUNNING"), hold: true,
		},
		{
			name: "200/100: start the new tasks first", svc: service(4, 200, 100, rolling()),
			tasks:  tasks("a1:a:RUNNING", "a2:a:RUNNING", "a3:a:RUNNING", "a4:a:RUNNING"),
			launch: 4, rollout: RolloutInProgress, deps: 2,
		},
		{
			name: "200/100: old tasks stop as new ones run", svc: service(4, 200, 100, rolling()),
			tasks: tasks("a1:a:RUNNING", "a2:a:RUNNING", "a3:a:RUNNING", "a4:a:RUNNING", "p1:p:RUNNING", "p2:p:RUNNING", "p3:p:PENDING", "p4:p:PROVISIONING"),
			stops: []string{"a1", "a2"}, counts: [2]int32{6, 2},
			check: func(t *testing.T, p ServicePlan) {
				if r := p.Stops[0].Reason; r != "Scaling activity initiated by (deployment "+depA+")" {
					t.Fatalf("reason %q", r)
				}
				if d := p.Service.GetDeployments()[1].GetDesiredCount(); d != 2 {
					t.Fatalf("old deployment desiredCount = %d, want 2 (what it keeps)", d)
				}
			},
		},
		{
			name: "200/100: old pending tasks stop at once", svc: service(2, 200, 100, rolling()),
			tasks: tasks("a1:a:RUNNING", "a2:a:PENDING", "p1:p:PENDING", "p2:p:PENDING"), stops: []string{"a2"},
		},
		{
			name: "100/0: stop first, then start", svc: service(4, 100, 0, rolling()),
			tasks: tasks("a1:a:RUNNING", "a2:a:RUNNING", "a3:a:RUNNING", "a4:a:RUNNING"),
			stops: []string{"a1", "a2", "a3", "a4"},
		},
		{
			name: "100/0: tasks being stopped still count toward the maximum", svc: service(4, 100, 0, rolling()),
			tasks: tasks("a1:a:STOPPING", "a2:a:STOPPED", "a3:a:STOPPING", "a4:a:STOPPED"), launch: 2,
		},
		{
			name: "150/50: half and half", svc: service(4, 150, 50, rolling()),
			tasks:  tasks("a1:a:RUNNING", "a2:a:RUNNING", "a3:a:RUNNING", "a4:a:RUNNING"),
			launch: 2, stops: []string{"a1", "a2"},
		},
		{
			name: "no completion while an old task is still stopping", svc: service(2, 200, 100, rolling()),
			tasks: tasks("a1:a:STOPPING", "p1:p:RUNNING", "p2:p:RUNNING"), rollout: RolloutInProgress, deps: 2,
		},
		{
			name: "completion drops the old deployments", svc: service(2, 200, 100, rolling()),
			tasks: tasks("a1:a:STOPPED", "p1:p:RUNNING", "p2:p:RUNNING"), rollout: RolloutCompleted, deps: 1,
			events: []string{"(service web) has reached a steady state.", "(service web) (deployment " + depP + ") deployment completed."},
		},
		{
			name: "rounding leaves no room: surge by one", svc: service(1, 150, 50, rolling()),
			tasks: tasks("a1:a:RUNNING"), launch: 1,
		},
		{
			name: "rounding leaves no room and no surge: stop one", svc: service(1, 100, 50, rolling()),
			tasks: tasks("a1:a:RUNNING"), stops: []string{"a1"},
		},
		{
			name: "circuit breaker without rollback: FAILED, nothing started", svc: service(2, 200, 100, rolling(), withBreaker(false)),
			tasks:   tasks("a1:a:RUNNING", "a2:a:RUNNING", "p1:p:FAILED", "p2:p:FAILED", "p3:p:FAILED"),
			rollout: RolloutFailed, deps: 2,
			events: []string{"(service web) (deployment " + depP + ") deployment failed: tasks failed to start."},
		},
		{
			name: "FAILED deployment: old tasks are kept", svc: service(2, 200, 100, []*orchv1.Deployment{
				deployment(depP, DeploymentPrimary, td2, RolloutFailed), deployment(depA, DeploymentActive, td1, RolloutCompleted),
			}, withBreaker(false)),
			tasks: tasks("a1:a:RUNNING", "a2:a:RUNNING", "p1:p:FAILED", "p2:p:FAILED", "p3:p:FAILED", "p4:p:FAILED"), rollout: RolloutFailed,
		},
		{
			name: "breaker below the threshold", svc: service(2, 200, 100, rolling(), withBreaker(true)),
			tasks:  tasks("a1:a:RUNNING", "a2:a:RUNNING", "p1:p:FAILED", "p2:p:FAILED"),
			launch: 2, rollout: RolloutInProgress,
		},
		{
			name: "circuit breaker with rollback", svc: service(2, 200, 100, rolling(), withBreaker(true)),
			tasks: tasks("a1:a:RUNNING", "a2:a:RUNNING", "p1:p:FAILED", "p2:p:FAILED", "p3:p:FAILED"),
			deps:  3, rollout: RolloutInProgress,
			check: func(t *testing.T, p ServicePlan) {
				ds := p.Service.GetDeployments()
				if ds[0].GetTaskDefinition() != td1 || ds[0].GetId() == depP || ds[0].GetStatus() != DeploymentPrimary ||
					p.Service.GetTaskDefinition() != td1 || !strings.Contains(ds[0].GetRolloutStateReason(), depA) {
					t.Fatalf("rollback deployment: %v", ds[0])
				}
				if ds[1].GetId() != depP || ds[1].GetStatus() != DeploymentActive || ds[1].GetRolloutState() != RolloutFailed ||
					ds[1].GetFailedTasks() != 3 || ds[1].GetRolloutStateReason() != breakerReason {
					t.Fatalf("failed deployment: %v", ds[1])
				}
				want := []string{
					"(service web) (deployment " + ds[0].GetId() + ") rolling back to deployment " + depA + ".",
					"(service web) (deployment " + depP + ") deployment failed: tasks failed to start.",
				}
				if got := messages(p.Service); !slices.Equal(got, want) {
					t.Fatalf("events %q, want %q", got, want)
				}
			},
		},
		{
			name: "tasks of the group not started by the service are left alone", svc: service(1, 200, 100, primaryOnly(RolloutCompleted), withCounts(1, 0)),
			tasks: tasks("p1:p:RUNNING", "x1:manual:RUNNING"), counts: [2]int32{1, 0},
		},
		{
			name: "tasks of an unknown deployment are old", svc: service(1, 200, 100, primaryOnly(RolloutCompleted), withCounts(2, 0)),
			tasks: tasks("p1:p:RUNNING", "z1:ecs-svc/3000000000000000003:RUNNING"), stops: []string{"z1"}, counts: [2]int32{2, 0},
		},
		{
			name: "DRAINING: every task stops", svc: service(0, 200, 100, rolling(), withStatus(ServiceDraining)),
			tasks: tasks("a1:a:PENDING", "p1:p:RUNNING", "p2:p:RUNNING"), stops: []string{"p2", "p1", "a1"}, status: ServiceDraining,
			counts: [2]int32{2, 1},
		},
		{
			name: "DRAINING: no launch even with desiredCount left", svc: service(2, 200, 100, primaryOnly(RolloutCompleted), withStatus(ServiceDraining)),
			tasks: tasks("p1:p:STOPPING"), status: ServiceDraining, counts: [2]int32{1, 0},
		},
		{
			name: "DRAINING to INACTIVE", svc: service(0, 200, 100, rolling(), withStatus(ServiceDraining)),
			tasks: tasks("a1:a:STOPPED", "p1:p:STOPPED"), status: ServiceInactive, deps: 1,
			check: func(t *testing.T, p ServicePlan) {
				if !p.Service.GetDeployments()[0].GetUpdatedAt().AsTime().Equal(t0.Add(time.Hour)) {
					t.Fatalf("updatedAt %v: the retention counts from it", p.Service.GetDeployments()[0].GetUpdatedAt().AsTime())
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := proto.Clone(tt.svc).(*orchv1.Service)
			p := PlanService(ServiceInput{Service: tt.svc, Tasks: tt.tasks, Now: t0.Add(time.Hour), Hold: tt.hold})
			if !proto.Equal(in, tt.svc) {
				t.Fatal("PlanService changed its input")
			}
			if p.Launch != tt.launch {
				t.Errorf("launch %d, want %d", p.Launch, tt.launch)
			}
			if p.Launch > 0 && (p.Deployment != p.Service.GetDeployments()[0].GetId() || p.TaskDefinition != p.Service.GetDeployments()[0].GetTaskDefinition()) {
				t.Errorf("launch for %s %s, not the PRIMARY", p.Deployment, p.TaskDefinition)
			}
			if got := stopIDs(p); !slices.Equal(got, tt.stops) {
				t.Errorf("stops %v, want %v", got, tt.stops)
			}
			if tt.rollout != "" && p.Service.GetDeployments()[0].GetRolloutState() != tt.rollout {
				t.Errorf("rollout %s, want %s", p.Service.GetDeployments()[0].GetRolloutState(), tt.rollout)
			}
			wantStatus := tt.status
			if wantStatus == "" {
				wantStatus = ServiceActive
			}
			if p.Service.GetStatus() != wantStatus {
				t.Errorf("status %s, want %s", p.Service.GetStatus(), wantStatus)
			}
			if tt.events != nil || tt.check == nil {
				if got := messages(p.Service); !slices.Equal(got, tt.events) {
					t.Errorf("events %q, want %q", got, tt.events)
				}
			}
			if got := [2]int32{p.Service.GetRunningCount(), p.Service.GetPendingCount()}; tt.counts != ([2]int32{}) && got != tt.counts {
				t.Errorf("running, pending = %v, want %v", got, tt.counts)
			}
			if tt.deps != 0 && len(p.Service.GetDeployments()) != tt.deps {
				t.Errorf("%d deployments, want %d: %v", len(p.Service.GetDeployments()), tt.deps, p.Service.GetDeployments())
			}
			if tt.check != nil {
				tt.check(t, p)
			}
		})
	}
}

func TestCircuitBreakerThreshold(t *testing.T) {
	for _, tt := range []struct{ desired, want int32 }{{0, 3}, {1, 3}, {6, 3}, {7, 4}, {10, 5}, {400, 200}, {1000, 200}} {
		if got := CircuitBreakerThreshold(tt.desired); got != tt.want {
			t.Errorf("threshold(%d) = %d, want %d", tt.desired, got, tt.want)
		}
	}
}

// TestRollingUpdateSimulation runs deployments from td1 to td2 with PlanService and a random
// order of task transitions (a task comes up, a stopped task goes away), for several
// configurations and sizes, and checks the bounds after every step.
func TestRollingUpdateSimulation(t *testing.T) {
	configs := []struct{ maxPct, minPct int32 }{{200, 100}, {100, 0}, {150, 50}, {100, 50}, {200, 0}, {120, 80}, {110, 100}}
	for _, cfg := range configs {
		for _, desired := range []int32{1, 2, 3, 4, 7, 10} {
			t.Run(fmt.Sprintf("%d-%d/D=%d", cfg.maxPct, cfg.minPct, desired), func(t *testing.T) {
				simulateRollout(t, desired, cfg.maxPct, cfg.minPct, rand.New(rand.NewPCG(uint64(desired), uint64(cfg.maxPct))))
			})
		}
	}
}

func simulateRollout(t *testing.T, desired, maxPct, minPct int32, rng *rand.Rand) {
	svc := service(desired, maxPct, minPct, rolling())
	var ts []*orchv1.Task
	for i := range desired {
		ts = append(ts, tasks(fmt.Sprintf("a%d:a:RUNNING", i))...)
	}
	maxTotal, minRunning := Bounds(desired, svc.GetDeploymentConfiguration())
	// Rounding that leaves no room makes the scheduler step over a bound by one.
	if maxTotal == int(desired) && minRunning == int(desired) {
		if maxPct > 100 {
			maxTotal++
		} else {
			minRunning--
		}
	}
	now := t0
	seq := 0
	for step := 0; step < 1000; step++ {
		now = now.Add(time.Second)
		p := PlanService(ServiceInput{Service: svc, Tasks: ts, Now: now})
		svc = p.Service
		if svc.GetDeployments()[0].GetRolloutState() == RolloutCompleted {
			for _, tk := range ts {
				if tk.GetLastStatus() != lifecycle.Stopped && (tk.GetStartedBy() != depP || tk.GetLastStatus() != lifecycle.Running) {
					t.Fatalf("COMPLETED with task %v", tk)
				}
			}
			if len(svc.GetDeployments()) != 1 || svc.GetRunningCount() != desired {
				t.Fatalf("COMPLETED service: %v", svc)
			}
			return
		}
		stopping := map[string]bool{}
		for _, id := range stopIDs(p) {
			stopping[id] = true
		}
		for i, tk := range ts {
			if stopping[tk.GetId()] {
				tk = proto.Clone(tk).(*orchv1.Task)
				tk.DesiredStatus = lifecycle.DesiredStopped
				ts[i] = tk
			}
		}
		for range p.Launch {
			seq++
			ts = append(ts, &orchv1.Task{
				Id: fmt.Sprintf("p%d", seq), StartedBy: p.Deployment, LastStatus: lifecycle.Provisioning,
				DesiredStatus: lifecycle.DesiredRunning, CreatedAt: timestamppb.New(now),
			})
		}
		// One task moves: up to RUNNING, or down to STOPPED.
		var movable []int
		for i, tk := range ts {
			if tk.GetLastStatus() != lifecycle.Stopped && (tk.GetDesiredStatus() == lifecycle.DesiredStopped || tk.GetLastStatus() != lifecycle.Running) {
				movable = append(movable, i)
			}
		}
		if len(movable) > 0 {
			i := movable[rng.IntN(len(movable))]
			tk := proto.Clone(ts[i]).(*orchv1.Task)
			if tk.GetDesiredStatus() == lifecycle.DesiredStopped {
				tk.LastStatus = lifecycle.Stopped
			} else {
				tk.LastStatus = lifecycle.Running
			}
			ts[i] = tk
		}
		live, fit := 0, 0
		for _, tk := range ts {
			if tk.GetLastStatus() != lifecycle.Stopped {
				live++
				if tk.GetLastStatus() == lifecycle.Running && tk.GetDesiredStatus() == lifecycle.DesiredRunning {
					fit++
				}
			}
		}
		if live > maxTotal || fit < minRunning {
			t.Fatalf("step %d: %d tasks not STOPPED (max %d), %d RUNNING (min %d)", step, live, maxTotal, fit, minRunning)
		}
	}
	t.Fatalf("no COMPLETED rollout after 1000 steps: %v", svc)
}

func TestEvents(t *testing.T) {
	svc := &orchv1.Service{}
	for i := range MaxServiceEvents + 5 {
		AddEvent(svc, timestamppb.New(t0.Add(time.Duration(i)*time.Second)), fmt.Sprint(i))
	}
	if len(svc.Events) != MaxServiceEvents || svc.Events[0].GetMessage() != fmt.Sprint(MaxServiceEvents+4) {
		t.Fatalf("%d events, first %q", len(svc.Events), svc.Events[0].GetMessage())
	}
	if !RecentEvent(svc, "100", t0.Add(90*time.Second)) || RecentEvent(svc, "50", t0.Add(90*time.Second)) {
		t.Fatal("RecentEvent")
	}
	ids := []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"}
	if got := StartedMessage("web", ids[:2]); got != "(service web) has started 2 tasks: (task 1) (task 2)." {
		t.Fatal(got)
	}
	if got := StoppedMessage("web", ids); !strings.HasSuffix(got, "(task 10) and 2 more.") || !strings.HasPrefix(got, "(service web) has stopped 12 running tasks: (task 1)") {
		t.Fatal(got)
	}
	if got := PlacementFailedMessage("web", "RESOURCE:MEMORY (0 of 2 container instances fit: insufficient memory 2)"); got !=
		"(service web) was unable to place a task because no container instance met all of its requirements. Reason: RESOURCE:MEMORY (0 of 2 container instances fit: insufficient memory 2)." {
		t.Fatal(got)
	}
}

func TestBoundsDefaults(t *testing.T) {
	for _, tt := range []struct {
		desired           int32
		dc                *orchv1.DeploymentConfiguration
		maxTotal, minimum int
	}{
		{4, nil, 8, 4},
		{3, &orchv1.DeploymentConfiguration{MaximumPercent: proto.Int32(150), MinimumHealthyPercent: proto.Int32(50)}, 4, 2},
		{5, &orchv1.DeploymentConfiguration{MinimumHealthyPercent: proto.Int32(0)}, 10, 0},
		{0, nil, 0, 0},
	} {
		if mx, mn := Bounds(tt.desired, tt.dc); mx != tt.maxTotal || mn != tt.minimum {
			t.Errorf("Bounds(%d, %v) = %d, %d; want %d, %d", tt.desired, tt.dc, mx, mn, tt.maxTotal, tt.minimum)
		}
	}
}
