package controllers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/arn"
	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/api"
	"orch/scheduler/fsm"
	"orch/scheduler/fsm/fsmtest"
	"orch/scheduler/state"
)

// checkedApplier applies each command and then runs check on the state it produced, under one
// lock: check sees every state the store goes through.
type checkedApplier struct {
	mu    sync.Mutex
	inner *fsmtest.Applier
	st    *state.Store
	check func(r *state.ReadTxn)
}

func (c *checkedApplier) Apply(ctx context.Context, t fsm.CommandType, m proto.Message) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, err := c.inner.Apply(ctx, t, m)
	if c.check != nil {
		c.check(c.st.Read())
	}
	return v, err
}

func (c *checkedApplier) setCheck(f func(r *state.ReadTxn)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.check = f
}

// serviceEnv is the API server and the service controller on one store, with cluster
// "homelab" of two connected container instances (no agents: fleet plays them) and task
// definitions web:1, web:2 (128 MiB) and big:1 (more memory than any instance).
type serviceEnv struct {
	st  *state.Store
	raw *checkedApplier
	api *api.Server
}

func newServiceEnv(t *testing.T, cfg ServicesConfig) *serviceEnv {
	t.Helper()
	st, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	raw := &checkedApplier{inner: fsmtest.New(st), st: st}
	ctx := context.Background()
	s := api.New(st, raw, api.WithLogger(quiet()))
	if _, err := s.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: "homelab"}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h1", "h2"} {
		if _, err := raw.Apply(ctx, fsm.CmdRegisterHost, &orchv1.RegisterHostCommand{Host: &orchv1.Host{
			Id: h, Hostname: h, Clusters: []string{"homelab"}, Cpu: 4096, Memory: 4096, RegisteredAt: timestamppb.Now(),
		}}); err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Apply(ctx, fsm.CmdHostConnection, &orchv1.HostConnectionCommand{HostId: h, Connected: true, At: timestamppb.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, td := range []struct {
		family string
		memory int32
	}{{"web", 128}, {"web", 128}, {"big", 1 << 20}} {
		if _, err := s.RegisterTaskDefinition(ctx, &orchv1.RegisterTaskDefinitionRequest{TaskDefinition: &orchv1.TaskDefinition{
			Family: td.family, NetworkMode: "awsvpc",
			ContainerDefinitions: []*orchv1.ContainerDefinition{{Name: "app", Image: "busybox", Memory: proto.Int32(td.memory)}},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Logger = quiet()
	if cfg.Interval == 0 {
		cfg.Interval = 200 * time.Millisecond
	}
	if cfg.MinInterval == 0 {
		cfg.MinInterval = 2 * time.Millisecond
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin, cfg.BackoffMax = 5*time.Millisecond, 50*time.Millisecond
	}
	c := NewServices(st, raw, s, time.Now, cfg)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); c.Run(cctx) }()
	t.Cleanup(func() { stop(); <-done })
	return &serviceEnv{st: st, raw: raw, api: s}
}

// fleet plays the agents: one task transition at a time, in random order, until ctx ends: a
// task on its way up becomes RUNNING (or, if fail says so, STOPPED with
// EssentialContainerExited); a task asked to stop becomes STOPPED.
func (e *serviceEnv) fleet(t *testing.T, fail func(*orchv1.Task) bool) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { stop(); <-done })
	go func() {
		defer close(done)
		rng := rand.New(rand.NewPCG(1, 2))
		for ctx.Err() == nil {
			tasks, _ := e.st.Read().TasksByCluster("homelab")
			var movable []*orchv1.Task
			for _, tk := range tasks {
				if tk.GetLastStatus() != lifecycle.Stopped && (tk.GetDesiredStatus() == lifecycle.DesiredStopped || tk.GetLastStatus() != lifecycle.Running) {
					movable = append(movable, tk)
				}
			}
			if len(movable) == 0 {
				time.Sleep(time.Millisecond)
				continue
			}
			tk := movable[rng.IntN(len(movable))]
			ts := &orchv1.TaskStatus{TaskId: tk.GetId(), LastStatus: lifecycle.Running, ObservedAt: timestamppb.Now(), StartedAt: timestamppb.Now()}
			switch {
			case tk.GetDesiredStatus() == lifecycle.DesiredStopped:
				ts.LastStatus = lifecycle.Stopped
			case fail != nil && fail(tk):
				ts.LastStatus, ts.StopCode, ts.StoppedReason = lifecycle.Stopped, lifecycle.EssentialContainerExited, "Essential container in task exited"
			}
			if _, err := e.raw.Apply(ctx, fsm.CmdTaskStatus, &orchv1.TaskStatusCommand{HostId: tk.GetHostId(), Tasks: []*orchv1.TaskStatus{ts}}); err != nil && ctx.Err() == nil {
				t.Errorf("task status: %v", err)
				return
			}
			time.Sleep(500 * time.Microsecond)
		}
	}()
}

func (e *serviceEnv) service(name string) *orchv1.Service {
	s, _ := e.st.Read().Service(nil, "homelab", name)
	return s
}

// waitSteady waits until the service's only deployment is COMPLETED with task definition td
// and desired RUNNING tasks, all of td.
func (e *serviceEnv) waitSteady(t *testing.T, name, td string, desired int32) *orchv1.Service {
	t.Helper()
	var svc *orchv1.Service
	waitFor(t, fmt.Sprintf("service %s steady on %s", name, td), func() bool {
		svc = e.service(name)
		ds := svc.GetDeployments()
		if len(ds) != 1 || ds[0].GetRolloutState() != RolloutCompleted || ds[0].GetTaskDefinition() != td ||
			svc.GetRunningCount() != desired || svc.GetPendingCount() != 0 || !hasEvent(svc, "has reached a steady state.") {
			return false
		}
		tasks, _ := e.st.Read().TasksByService(nil, "homelab", name)
		n := int32(0)
		for _, tk := range tasks {
			if tk.GetLastStatus() != lifecycle.Stopped {
				if tk.GetTaskDefinitionArn() != td || tk.GetLastStatus() != lifecycle.Running {
					return false
				}
				n++
			}
		}
		return n == desired
	})
	return svc
}

func hasEvent(svc *orchv1.Service, substr string) bool {
	for _, e := range svc.GetEvents() {
		if strings.Contains(e.GetMessage(), substr) {
			return true
		}
	}
	return false
}

func countEvents(svc *orchv1.Service, substr string) int {
	n := 0
	for _, e := range svc.GetEvents() {
		if strings.Contains(e.GetMessage(), substr) {
			n++
		}
	}
	return n
}

// TestServiceRollingUpdate creates a service of web:1, waits for its steady state, then
// updates it to web:2 and checks the deployment's bounds in every state the store goes
// through until the new deployment is COMPLETED.
func TestServiceRollingUpdate(t *testing.T) {
	for _, cfg := range []struct{ maxPct, minPct int32 }{{200, 100}, {150, 50}, {100, 0}} {
		t.Run(fmt.Sprintf("%d-%d", cfg.maxPct, cfg.minPct), func(t *testing.T) {
			const desired = 4
			e := newServiceEnv(t, ServicesConfig{})
			e.fleet(t, nil)
			ctx := context.Background()
			td1, td2 := arn.Default.TaskDefinition("web", 1), arn.Default.TaskDefinition("web", 2)
			_, err := e.api.CreateService(ctx, &orchv1.CreateServiceRequest{
				Cluster: "homelab", ServiceName: "web", TaskDefinition: "web:1", DesiredCount: proto.Int32(desired),
				DeploymentConfiguration: &orchv1.DeploymentConfiguration{MaximumPercent: proto.Int32(cfg.maxPct), MinimumHealthyPercent: proto.Int32(cfg.minPct)},
			})
			if err != nil {
				t.Fatal(err)
			}
			before := e.waitSteady(t, "web", td1, desired)
			oldDep := before.GetDeployments()[0].GetId()

			maxTotal, minRunning := Bounds(desired, before.GetDeploymentConfiguration())
			var mu sync.Mutex
			var violations []string
			peak, trough := 0, desired
			e.raw.setCheck(func(r *state.ReadTxn) {
				tasks, _ := r.TasksByService(nil, "homelab", "web")
				live, fit := 0, 0
				for _, tk := range tasks {
					if tk.GetLastStatus() == lifecycle.Stopped {
						continue
					}
					live++
					if tk.GetLastStatus() == lifecycle.Running && tk.GetDesiredStatus() == lifecycle.DesiredRunning {
						fit++
					}
				}
				mu.Lock()
				defer mu.Unlock()
				peak, trough = max(peak, live), min(trough, fit)
				if live > maxTotal || fit < minRunning {
					violations = append(violations, fmt.Sprintf("%d tasks not STOPPED (max %d), %d RUNNING (min %d)", live, maxTotal, fit, minRunning))
				}
			})
			resp, err := e.api.UpdateService(ctx, &orchv1.UpdateServiceRequest{Cluster: "homelab", Service: "web", TaskDefinition: "web:2"})
			if err != nil {
				t.Fatal(err)
			}
			newDep := resp.GetService().GetDeployments()[0].GetId()
			after := e.waitSteady(t, "web", td2, desired)
			e.raw.setCheck(nil)
			mu.Lock()
			if len(violations) > 0 {
				t.Fatalf("bounds violated %d times, first: %s", len(violations), violations[0])
			}
			t.Logf("during the deployment: at most %d tasks (max %d), at least %d RUNNING (min %d)", peak, maxTotal, trough, minRunning)
			mu.Unlock()
			if d := after.GetDeployments()[0]; d.GetId() != newDep || d.GetStatus() != DeploymentPrimary || d.GetRunningCount() != desired {
				t.Fatalf("deployment after the update: %v", d)
			}
			for _, want := range []string{"has started", "has stopped", "(deployment " + newDep + ") deployment completed.", "has reached a steady state."} {
				if !hasEvent(after, want) {
					t.Fatalf("no event %q in %v", want, after.GetEvents())
				}
			}
			tasks, _ := e.st.Read().TasksByService(nil, "homelab", "web")
			for _, tk := range tasks {
				if tk.GetStartedBy() == oldDep && (tk.GetStopCode() != lifecycle.ServiceSchedulerInitiated ||
					tk.GetStoppedReason() != "Scaling activity initiated by (deployment "+oldDep+")") {
					t.Fatalf("old task stopped with %s %q", tk.GetStopCode(), tk.GetStoppedReason())
				}
			}
		})
	}
}

// TestServiceLifecycle: scale out and in, a crashed task replaced, a deployment whose tasks
// crash rolled back by the circuit breaker, and deletion down to INACTIVE and forgotten.
func TestServiceLifecycle(t *testing.T) {
	e := newServiceEnv(t, ServicesConfig{InactiveRetention: 300 * time.Millisecond})
	var crash sync.Map // task definition ARN -> true: its tasks exit at once
	e.fleet(t, func(tk *orchv1.Task) bool { _, ok := crash.Load(tk.GetTaskDefinitionArn()); return ok })
	ctx := context.Background()
	td1, td2 := arn.Default.TaskDefinition("web", 1), arn.Default.TaskDefinition("web", 2)
	update := func(req *orchv1.UpdateServiceRequest) {
		t.Helper()
		req.Cluster, req.Service = "homelab", "web"
		if _, err := e.api.UpdateService(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.api.CreateService(ctx, &orchv1.CreateServiceRequest{
		Cluster: "homelab", ServiceName: "web", TaskDefinition: "web:1", DesiredCount: proto.Int32(2),
		DeploymentConfiguration: &orchv1.DeploymentConfiguration{DeploymentCircuitBreaker: &orchv1.DeploymentCircuitBreaker{Enable: true, Rollback: true}},
	}); err != nil {
		t.Fatal(err)
	}
	e.waitSteady(t, "web", td1, 2)

	update(&orchv1.UpdateServiceRequest{DesiredCount: proto.Int32(5)})
	svc := e.waitSteady(t, "web", td1, 5)
	if n := countEvents(svc, "has reached a steady state."); n != 2 {
		t.Fatalf("%d steady-state events after a scale out, want 2", n)
	}
	update(&orchv1.UpdateServiceRequest{DesiredCount: proto.Int32(3)})
	e.waitSteady(t, "web", td1, 3)

	// A task crashes: it is replaced.
	tasks, _ := e.st.Read().TasksByService(nil, "homelab", "web")
	var victim *orchv1.Task
	for _, tk := range tasks {
		if tk.GetLastStatus() == lifecycle.Running {
			victim = tk
			break
		}
	}
	if _, err := e.raw.Apply(ctx, fsm.CmdTaskStatus, &orchv1.TaskStatusCommand{HostId: victim.GetHostId(), Tasks: []*orchv1.TaskStatus{{
		TaskId: victim.GetId(), LastStatus: lifecycle.Stopped, StopCode: lifecycle.EssentialContainerExited, ObservedAt: timestamppb.Now(),
	}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the crashed task's replacement", func() bool {
		s := e.service("web")
		return s.GetDeployments()[0].GetFailedTasks() == 1 && s.GetRunningCount() == 3 && s.GetPendingCount() == 0
	})

	// web:2 crashes at start: the breaker fails the deployment and rolls back to web:1.
	crash.Store(td2, true)
	update(&orchv1.UpdateServiceRequest{TaskDefinition: "web:2"})
	svc = e.waitSteady(t, "web", td1, 3)
	if !hasEvent(svc, "deployment failed: tasks failed to start.") || !hasEvent(svc, "rolling back to deployment") {
		t.Fatalf("events after the rollback: %v", svc.GetEvents())
	}

	// Deletion: DRAINING, every task stopped, INACTIVE, then forgotten.
	if _, err := e.api.DeleteService(ctx, &orchv1.DeleteServiceRequest{Cluster: "homelab", Service: "web", Force: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the service to be INACTIVE", func() bool { return e.service("web").GetStatus() == ServiceInactive })
	tasks, _ = e.st.Read().TasksByService(nil, "homelab", "web")
	for _, tk := range tasks {
		if tk.GetLastStatus() != lifecycle.Stopped {
			t.Fatalf("INACTIVE service with task %v", tk)
		}
	}
	waitFor(t, "the INACTIVE service to be forgotten", func() bool { return e.service("web") == nil })
	if _, err := e.api.DeleteCluster(ctx, &orchv1.DeleteClusterRequest{Cluster: "homelab"}); err == nil || strings.Contains(err.Error(), "Services") {
		t.Fatalf("delete cluster after the service is gone: %v (want only the container instances to hold it)", err)
	}
}

// TestServicePlacementFailure: a task that fits nowhere makes one event per PlacementEventGap,
// however often the controller retries, and the service stays pending.
func TestServicePlacementFailure(t *testing.T) {
	e := newServiceEnv(t, ServicesConfig{})
	ctx := context.Background()
	if _, err := e.api.CreateService(ctx, &orchv1.CreateServiceRequest{
		Cluster: "homelab", ServiceName: "big", TaskDefinition: "big", DesiredCount: proto.Int32(1),
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a placement failure event", func() bool { return hasEvent(e.service("big"), "was unable to place a task") })
	time.Sleep(300 * time.Millisecond) // several retries (backoff 5ms to 50ms)
	svc := e.service("big")
	if n := countEvents(svc, "was unable to place a task"); n != 1 {
		t.Fatalf("%d placement failure events, want 1: %v", n, svc.GetEvents())
	}
	if !hasEvent(svc, "Reason: RESOURCE:MEMORY") || svc.GetDeployments()[0].GetRolloutState() != RolloutInProgress {
		t.Fatalf("service: %v", svc)
	}
}
