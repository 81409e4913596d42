// Package taskrunner drives one task through ECS's lifecycle on this host: ENI, image pulls,
// containers started in dependsOn order, watching exits, and the stop sequence (DEACTIVATING,
// STOPPING with each container's stopTimeout, DEPROVISIONING, STOPPED). Every phase is
// idempotent, so the same code adopts a task that a previous agent process started: what runs
// is attached to, never started twice; what is missing is created.
package taskrunner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/agent/eni"
	"orch/agent/runtime"
	"orch/pkg/lifecycle"
	"orch/pkg/taskdef"
	orchv1 "orch/proto/orch/v1"
)

// Network is the part of agent/eni the runner uses.
type Network interface {
	EnsureBridge(ctx context.Context, bridge, gatewayCIDR, clusterCIDR string) error
	Setup(ctx context.Context, s eni.Spec) (string, error)
	Teardown(ctx context.Context, s eni.Spec) error
}

// Config is what a runner needs from the agent.
type Config struct {
	Runtime runtime.Runtime
	Network Network
	TaskDir string // per-task files: volumes, hosts, resolv.conf
	LogDir  string // per-container log files
	// Report receives a copy of the task's status after every change.
	Report func(*orchv1.TaskStatus)
	Log    *slog.Logger
	// Existing are the runtime's containers of this task by container name (adoption).
	Existing map[string]runtime.ContainerInfo
	// ResolvConf is the content of /etc/resolv.conf for tasks without dnsServers.
	ResolvConf []byte
}

type container struct {
	def      *orchv1.ContainerDefinition
	id       string
	started  bool
	exit     *runtime.ExitStatus
	lost     bool // it ran once but the runtime no longer has it
	watching bool
}

type exitEvent struct {
	name string
	st   runtime.ExitStatus
}

// Runner runs one task.
type Runner struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	a  *orchv1.Assignment
	st *orchv1.TaskStatus

	td         *orchv1.TaskDefinition // with the task's overrides applied
	containers []*container
	byName     map[string]*container
	netnsPath  string
	exits      chan exitEvent
	wake       chan struct{}
	done       chan struct{}
	// createTime and startTime add up the runtime's create and start calls of this start
	// (logged with "task running"); the runner's goroutine only.
	createTime, startTime time.Duration
}

// New returns a runner for a task; st is the checkpointed status (nil for a new task).
func New(cfg Config, a *orchv1.Assignment, st *orchv1.TaskStatus) *Runner {
	if st == nil {
		st = &orchv1.TaskStatus{TaskId: a.GetTask().GetId(), LastStatus: lifecycle.Provisioning}
	}
	r := &Runner{
		cfg: cfg, a: a, st: proto.Clone(st).(*orchv1.TaskStatus),
		log:    cfg.Log.With("task_id", a.GetTask().GetId(), "cluster", a.GetTask().GetCluster()),
		td:     taskdef.ApplyOverrides(a.GetTaskDefinition(), a.GetTask().GetOverrides()),
		byName: map[string]*container{},
		exits:  make(chan exitEvent, 16),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	prev := map[string]*orchv1.ContainerStatus{}
	for _, cs := range st.GetContainers() {
		prev[cs.GetName()] = cs
	}
	for _, def := range r.td.GetContainerDefinitions() {
		c := &container{def: def, id: a.GetTask().GetId() + "-" + def.GetName()}
		if p := prev[def.GetName()]; p != nil && p.GetLastStatus() != lifecycle.ContainerPending && p.GetLastStatus() != "" {
			c.started = true
			if p.GetLastStatus() == lifecycle.ContainerStopped {
				c.exit = &runtime.ExitStatus{Code: p.GetExitCode()}
			}
		}
		r.containers = append(r.containers, c)
		r.byName[def.GetName()] = c
	}
	return r
}

// Update gives the runner a newer assignment of its task (the desired status may have changed).
func (r *Runner) Update(a *orchv1.Assignment) {
	r.mu.Lock()
	r.a = a
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Done is closed when Run has returned.
func (r *Runner) Done() <-chan struct{} { return r.done }

// Status returns a copy of the current status.
func (r *Runner) Status() *orchv1.TaskStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return proto.Clone(r.st).(*orchv1.TaskStatus)
}

// assignment returns the current assignment; Update replaces it from another goroutine.
func (r *Runner) assignment() *orchv1.Assignment {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.a
}

func (r *Runner) stopWanted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.a.GetTask().GetDesiredStatus() == lifecycle.DesiredStopped
}

// set changes the status under the lock and reports it.
func (r *Runner) set(fn func(st *orchv1.TaskStatus)) {
	r.mu.Lock()
	fn(r.st)
	r.st.ObservedAt = timestamppb.Now()
	r.st.Containers = r.containerStatuses()
	cp := proto.Clone(r.st).(*orchv1.TaskStatus)
	r.mu.Unlock()
	r.cfg.Report(cp)
}

func (r *Runner) advance(status string) {
	r.set(func(st *orchv1.TaskStatus) {
		if lifecycle.Forward(st.LastStatus, status) {
			st.LastStatus = status
		}
	})
}

func (r *Runner) containerStatuses() []*orchv1.ContainerStatus {
	out := make([]*orchv1.ContainerStatus, 0, len(r.containers))
	for _, c := range r.containers {
		cs := &orchv1.ContainerStatus{Name: c.def.GetName(), LastStatus: lifecycle.ContainerPending, RuntimeId: c.id}
		switch {
		case c.exit != nil || c.lost:
			cs.LastStatus = lifecycle.ContainerStopped
			if c.exit != nil && !c.lost {
				cs.ExitCode = proto.Int32(c.exit.Code)
			}
			if c.exit != nil && c.exit.OOMKilled {
				cs.Reason = "OutOfMemoryError: Container killed due to memory usage"
			}
			if c.lost {
				cs.Reason = "container lost: the runtime no longer has it"
			}
		case c.started:
			cs.LastStatus = lifecycle.ContainerRunning
		case lifecycle.Rank(r.st.LastStatus) >= lifecycle.Rank(lifecycle.Deprovisioning):
			cs.LastStatus = lifecycle.ContainerStopped // never started, and never will
		}
		out = append(out, cs)
	}
	return out
}

// errStop ends the start sequence because the task must stop; code and reason say why.
type errStop struct{ code, reason string }

func (e *errStop) Error() string { return e.reason }

// Run drives the task until it is STOPPED, or until ctx ends (the agent is shutting down: the
// task keeps running and a later agent adopts it).
func (r *Runner) Run(ctx context.Context) {
	defer close(r.done)
	if r.Status().GetLastStatus() == lifecycle.Stopped {
		return
	}
	var stop *errStop
	if r.stopWanted() || lifecycle.Rank(r.Status().GetLastStatus()) >= lifecycle.Rank(lifecycle.Deactivating) {
		stop = &errStop{}
	} else if err := r.start(ctx); err != nil {
		if ctx.Err() != nil {
			return
		}
		if !errors.As(err, &stop) {
			r.log.Warn("task failed to start", "err", err)
			stop = &errStop{code: lifecycle.TaskFailedToStart, reason: err.Error()}
		}
	}
	if stop == nil {
		stop = r.watch(ctx)
		if ctx.Err() != nil {
			return
		}
	}
	r.stop(ctx, stop)
}

// watch waits while the task runs: an essential container's exit or a stop request ends it.
func (r *Runner) watch(ctx context.Context) *errStop {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-r.exits:
			if s := r.recordExit(ev); s != nil {
				return s
			}
		case <-r.wake:
			if r.stopWanted() {
				return &errStop{}
			}
		}
	}
}

// recordExit notes a container's exit and says whether the task must stop.
func (r *Runner) recordExit(ev exitEvent) *errStop {
	c := r.byName[ev.name]
	if c == nil || c.exit != nil {
		return nil
	}
	st := ev.st
	r.set(func(*orchv1.TaskStatus) { c.exit = &st })
	r.log.Info("container exited", "container", ev.name, "exit_code", st.Code, "oom", st.OOMKilled)
	if taskdef.Essential(c.def) {
		return &errStop{code: lifecycle.EssentialContainerExited, reason: "Essential container in task exited"}
	}
	return nil
}

// watchExit forwards the container's exit to the runner.
func (r *Runner) watchExit(ctx context.Context, c *container) error {
	ch, err := r.cfg.Runtime.Wait(ctx, c.id)
	if err != nil {
		return fmt.Errorf("container %s: wait: %w", c.def.GetName(), err)
	}
	c.watching = true
	go func() {
		select {
		case st, ok := <-ch:
			if ok {
				select {
				case r.exits <- exitEvent{name: c.def.GetName(), st: st}:
				case <-ctx.Done():
				}
			}
		case <-ctx.Done():
		}
	}()
	return nil
}

func (r *Runner) eniSpec() eni.Spec {
	a := r.assignment()
	e := a.GetTask().GetEni()
	return eni.Spec{
		TaskID: a.GetTask().GetId(), NetNS: e.GetNetns(), Bridge: e.GetBridge(), IP: e.GetIp(),
		PrefixLen: int(e.GetPrefixLen()), Gateway: e.GetGateway(), MAC: e.GetMac(),
	}
}

// stop runs the stop sequence and reports STOPPED.
func (r *Runner) stop(ctx context.Context, why *errStop) {
	r.set(func(st *orchv1.TaskStatus) {
		if st.StopCode == "" && why.code != "" {
			st.StopCode, st.StoppedReason = why.code, why.reason
		}
		if lifecycle.Forward(st.LastStatus, lifecycle.Deactivating) {
			st.LastStatus = lifecycle.Deactivating
		}
	})
	r.advance(lifecycle.Stopping)
	// Dependents stop before what they depend on: reverse start order.
	order := r.startOrder()
	for i := len(order) - 1; i >= 0; i-- {
		c := order[i]
		if !c.started || c.exit != nil || c.lost {
			continue
		}
		if !c.watching {
			if err := r.watchExit(ctx, c); err != nil {
				if errors.Is(err, runtime.ErrNotFound) {
					r.set(func(*orchv1.TaskStatus) { c.lost = true })
					continue
				}
				r.log.Warn("watching container", "container", c.def.GetName(), "err", err)
			}
		}
		timeout := taskdef.StopTimeout(c.def)
		if err := r.cfg.Runtime.Stop(ctx, c.id, timeout); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			r.log.Warn("stopping container", "container", c.def.GetName(), "err", err)
		}
		r.awaitExit(ctx, c)
	}
	if ctx.Err() != nil {
		return // the agent is shutting down: the next one finishes the stop
	}
	r.set(func(st *orchv1.TaskStatus) { st.ExecutionStoppedAt = timestamppb.Now() })
	r.advance(lifecycle.Deprovisioning)
	for _, c := range r.containers {
		if err := r.cfg.Runtime.Delete(ctx, c.id); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			r.log.Warn("deleting container", "container", c.def.GetName(), "err", err)
		}
	}
	if r.assignment().GetTask().GetEni() != nil {
		if err := r.cfg.Network.Teardown(ctx, r.eniSpec()); err != nil {
			r.log.Warn("tearing down the ENI", "err", err)
		}
	}
	if err := os.RemoveAll(r.cfg.TaskDir); err != nil {
		r.log.Warn("removing the task dir", "err", err)
	}
	r.advance(lifecycle.Stopped)
	r.log.Info("task stopped", "stop_code", r.Status().GetStopCode())
}

// awaitExit waits for the exit event of a container that was just stopped.
func (r *Runner) awaitExit(ctx context.Context, c *container) {
	deadline := time.After(5 * time.Second)
	for c.exit == nil {
		select {
		case ev := <-r.exits:
			r.recordExit(ev)
		case <-deadline:
			r.set(func(*orchv1.TaskStatus) { c.exit = &runtime.ExitStatus{Code: 137} })
			return
		case <-ctx.Done():
			return
		}
	}
}

// startOrder lists the containers with each one after the containers it depends on.
func (r *Runner) startOrder() []*container {
	var out []*container
	seen := map[*container]bool{}
	var visit func(c *container)
	visit = func(c *container) {
		if seen[c] {
			return
		}
		seen[c] = true
		for _, d := range c.def.GetDependsOn() {
			if dep := r.byName[d.GetContainerName()]; dep != nil {
				visit(dep)
			}
		}
		out = append(out, c)
	}
	for _, c := range r.containers {
		visit(c)
	}
	return out
}
