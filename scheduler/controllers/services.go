package controllers

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/state"
)

// Launcher starts and stops tasks through the same placement pipeline and stop command as
// RunTask and StopTask (api.Server).
type Launcher interface {
	LaunchTasks(ctx context.Context, cluster, taskDefinitionArn string, count int, group, startedBy string) (*orchv1.RunTaskResponse, error)
	StopTasks(ctx context.Context, cluster string, ids []string, stopCode, reason string) error
}

// Service controller defaults.
const (
	DefaultServiceInterval    = 5 * time.Second
	DefaultServiceMinInterval = 200 * time.Millisecond
	DefaultBackoffMin         = time.Second
	DefaultBackoffMax         = time.Minute
	DefaultInactiveRetention  = time.Hour
	DefaultPlacementEventGap  = time.Minute
	defaultServiceParallelism = 16
)

// ServicesConfig tunes the service controller; zero values take the defaults.
type ServicesConfig struct {
	// Interval is how often every service is re-checked even if nothing it depends on
	// changed (a safety net; changes wake the controller at once); default 5s.
	Interval time.Duration
	// MinInterval is the least time between two passes, so that a burst of task changes is
	// handled in one pass; default 200ms.
	MinInterval time.Duration
	// BackoffMin and BackoffMax bound the delay before a service whose tasks fail (without a
	// circuit breaker), or cannot be placed, starts tasks again: it doubles from BackoffMin at
	// each failure up to BackoffMax, and starts over once nothing failed for BackoffMax.
	// Defaults 1s and 1m.
	BackoffMin, BackoffMax time.Duration
	// InactiveRetention is how long an INACTIVE service stays describable; default 1h.
	InactiveRetention time.Duration
	// PlacementEventGap is the least time between two identical placement-failure events of
	// a service; default 1m.
	PlacementEventGap time.Duration
	// Parallelism is how many services' tasks are started and stopped at once; default 16.
	Parallelism int
	Logger      *slog.Logger
	// Registerer receives the controller's metrics; nil for none.
	Registerer prometheus.Registerer
}

// Services is the service controller (ECS's service scheduler): while this server leads, it
// drives each ACTIVE or DRAINING service's tasks toward its PRIMARY deployment (PlanService
// decides), records counts, rollout states and events, and forgets INACTIVE services after
// InactiveRetention.
//
// It wakes when a service or one of the services' task groups changes (memdb watch channels)
// and at least every Interval, and recomputes only the services whose record or tasks changed
// (or whose backoff ended): a pass costs what changed, not every task of the cluster. All the
// services a pass changes are written in one Raft entry, each compare-and-set on the modify
// index it read; when an API call wrote one in between, the entry is refused and the pass's
// services are recomputed at the next one. Events of starts and stops already carried out are
// kept in memory until they are written.
//
// Backoff state is in memory: a new leader starts without it (one more try at once).
type Services struct {
	store  *state.Store
	raft   Applier
	launch Launcher
	now    func() time.Time
	cfg    ServicesConfig
	log    *slog.Logger

	states  map[string]*serviceState // by cluster/name; only the Run goroutine uses it
	abandon <-chan struct{}

	started, stopped, conflicts prometheus.Counter
	passTime                    prometheus.Histogram
}

// serviceState is what the controller remembers of one service between passes.
type serviceState struct {
	modifyIndex uint64         // of the record last planned (0: plan again)
	watch       state.WatchSet // the task group's channels, from that read
	// Backoff: no launch before retryAt; delay is the next one; trouble is the last failure
	// or placement failure seen.
	delay       time.Duration
	retryAt     time.Time
	lastFailure time.Time
	trouble     time.Time
	// events of starts and stops carried out, not yet written.
	events []*orchv1.ServiceEvent
}

// NewServices returns the controller. launch is the API server (api.Server); now is the clock
// (time.Now), used for timestamps and backoff.
func NewServices(store *state.Store, raft Applier, launch Launcher, now func() time.Time, cfg ServicesConfig) *Services {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultServiceInterval
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = DefaultServiceMinInterval
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.InactiveRetention <= 0 {
		cfg.InactiveRetention = DefaultInactiveRetention
	}
	if cfg.PlacementEventGap <= 0 {
		cfg.PlacementEventGap = DefaultPlacementEventGap
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = defaultServiceParallelism
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	c := &Services{
		store: store, raft: raft, launch: launch, now: now, cfg: cfg, log: cfg.Logger,
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orch_services_tasks_started_total", Help: "Tasks the service controller started.",
		}),
		stopped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orch_services_tasks_stopped_total", Help: "Tasks the service controller asked to stop.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orch_services_write_conflicts_total", Help: "Service writes refused because a service changed meanwhile.",
		}),
		passTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "orch_services_pass_duration_seconds", Help: "Duration of one service controller pass, starts and stops included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.started, c.stopped, c.conflicts, c.passTime)
	}
	return c
}

// Run reconciles services until ctx ends (the end of this server's leadership).
func (c *Services) Run(ctx context.Context) {
	c.log.Info("service controller started")
	c.states = map[string]*serviceState{}
	var lastFull time.Time
	for {
		full := time.Since(lastFull) >= c.cfg.Interval
		if ab := c.store.AbandonCh(); ab != c.abandon { // a restore replaced the state
			c.abandon, full = ab, true
			c.states = map[string]*serviceState{}
		}
		if full {
			lastFull = time.Now()
		}
		ws := state.NewWatchSet()
		ws.Add(c.abandon)
		began := time.Now()
		wake, err := c.pass(ctx, ws, full)
		c.passTime.Observe(time.Since(began).Seconds())
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.log.Warn("service controller", "err", err)
		}
		timeout := c.cfg.Interval - time.Since(lastFull)
		if !wake.IsZero() {
			timeout = min(timeout, wake.Sub(c.now()))
		}
		if timeout > 0 {
			wctx, cancel := context.WithTimeout(ctx, timeout)
			_ = ws.WatchCtx(wctx) // a change, the timeout, or the end of leadership
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.cfg.MinInterval):
		}
	}
}

// job is one service planned in a pass.
type job struct {
	svc   *orchv1.Service
	tasks []*orchv1.Task
	st    *serviceState
	next  *orchv1.Service
}

// pass plans every service that needs it, carries the plans out and writes the results. It
// adds to ws what should wake the next pass and returns when a backoff ends (zero: none).
func (c *Services) pass(ctx context.Context, ws state.WatchSet, full bool) (time.Time, error) {
	r := c.store.Read()
	svcs, err := r.Services(ws)
	if err != nil {
		return time.Time{}, err
	}
	now := c.now()
	var jobs []*job
	var forget []*orchv1.DeleteServicesCommand_Ref
	seen := make(map[string]bool, len(svcs))
	for _, svc := range svcs {
		key := svc.GetCluster() + "/" + svc.GetServiceName()
		if svc.GetStatus() == ServiceInactive {
			if now.Sub(inactiveSince(svc)) > c.cfg.InactiveRetention {
				forget = append(forget, &orchv1.DeleteServicesCommand_Ref{Cluster: svc.GetCluster(), ServiceName: svc.GetServiceName()})
			}
			continue
		}
		seen[key] = true
		st := c.states[key]
		if st == nil {
			st = &serviceState{}
			c.states[key] = st
		}
		due := !st.retryAt.IsZero() && !now.Before(st.retryAt)
		if !full && !due && st.modifyIndex == svc.GetModifyIndex() && !fired(st.watch) && len(st.events) == 0 {
			for ch := range st.watch {
				ws.Add(ch)
			}
			continue
		}
		gws := state.NewWatchSet()
		tasks, err := r.TasksByService(gws, svc.GetCluster(), svc.GetServiceName())
		if err != nil {
			return time.Time{}, err
		}
		st.watch = gws
		for ch := range gws {
			ws.Add(ch)
		}
		jobs = append(jobs, &job{svc: svc, tasks: tasks, st: st})
	}
	for key := range c.states {
		if !seen[key] {
			delete(c.states, key)
		}
	}

	sem := make(chan struct{}, c.cfg.Parallelism)
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c.reconcile(ctx, j, now)
		}()
	}
	wg.Wait()

	var errs []error
	if err := c.write(ctx, jobs); err != nil {
		errs = append(errs, err)
	}
	if len(forget) > 0 {
		if _, err := c.raft.Apply(ctx, fsm.CmdDeleteServices, &orchv1.DeleteServicesCommand{Services: forget}); err != nil {
			errs = append(errs, err)
		} else {
			c.log.Info("forgot INACTIVE services", "count", len(forget))
		}
	}
	var wake time.Time
	for _, st := range c.states {
		if !st.retryAt.IsZero() && (wake.IsZero() || st.retryAt.Before(wake)) {
			wake = st.retryAt
		}
	}
	return wake, errors.Join(errs...)
}

// reconcile plans one service and carries the plan out; j.next is the service to store.
func (c *Services) reconcile(ctx context.Context, j *job, now time.Time) {
	st, svc := j.st, j.svc
	name, cluster := svc.GetServiceName(), svc.GetCluster()
	log := c.log.With("cluster", cluster, "service", name)
	breaker := svc.GetDeploymentConfiguration().GetDeploymentCircuitBreaker().GetEnable()
	if lf := LastTaskFailure(j.tasks); lf.After(st.lastFailure) {
		st.lastFailure = lf
		if !breaker && now.Sub(lf) < c.cfg.BackoffMax { // a task failed since the last pass
			c.backoff(st, now)
		}
	}
	if !st.retryAt.IsZero() && !now.Before(st.retryAt) {
		st.retryAt = time.Time{}
	}
	if st.delay > 0 && st.retryAt.IsZero() && now.Sub(st.trouble) > c.cfg.BackoffMax {
		st.delay = 0
	}
	plan := PlanService(ServiceInput{Service: svc, Tasks: j.tasks, Now: now, Hold: !st.retryAt.IsZero()})
	next := plan.Service
	at := timestamppb.New(now)
	event := func(msg string) {
		st.events = append(st.events, &orchv1.ServiceEvent{Id: newEventID(), CreatedAt: at, Message: msg})
	}
	for _, s := range plan.Stops {
		if err := c.launch.StopTasks(ctx, cluster, s.TaskIDs, lifecycle.ServiceSchedulerInitiated, s.Reason); err != nil {
			log.Warn("stopping service tasks", "tasks", len(s.TaskIDs), "err", err)
			continue
		}
		c.stopped.Add(float64(len(s.TaskIDs)))
		event(StoppedMessage(name, s.TaskIDs))
	}
	if plan.Launch > 0 {
		resp, err := c.launch.LaunchTasks(ctx, cluster, plan.TaskDefinition, plan.Launch, ServiceGroup(name), plan.Deployment)
		if ids := taskIDs(resp.GetTasks()); len(ids) > 0 {
			c.started.Add(float64(len(ids)))
			event(StartedMessage(name, ids))
			log.Debug("service tasks started", "deployment", plan.Deployment, "tasks", len(ids))
		}
		reason := ""
		switch {
		case err != nil && ctx.Err() != nil:
		case err != nil:
			reason = status.Convert(err).Message()
			log.Warn("starting service tasks", "deployment", plan.Deployment, "tasks", plan.Launch, "err", err)
		case len(resp.GetFailures()) > 0:
			f := resp.GetFailures()[0]
			reason = f.GetReason()
			if f.GetDetail() != "" {
				reason += " (" + f.GetDetail() + ")"
			}
		}
		if reason != "" {
			c.backoff(st, now)
			msg := PlacementFailedMessage(name, reason)
			if !RecentEvent(next, msg, now.Add(-c.cfg.PlacementEventGap)) && !pendingEvent(st.events, msg) {
				event(msg)
			}
		}
	}
	MergeEvents(next, st.events...)
	j.next = next
}

func pendingEvent(evs []*orchv1.ServiceEvent, msg string) bool {
	for _, e := range evs {
		if e.GetMessage() == msg {
			return true
		}
	}
	return false
}

// backoff defers the service's next launch by its delay, and doubles the delay.
func (c *Services) backoff(st *serviceState, now time.Time) {
	st.delay = min(max(st.delay*2, c.cfg.BackoffMin), c.cfg.BackoffMax)
	st.retryAt = now.Add(st.delay)
	st.trouble = now
}

// write stores the services the pass changed, in one Raft entry.
func (c *Services) write(ctx context.Context, jobs []*job) error {
	cmd := &orchv1.PutServicesCommand{}
	var written []*job
	for _, j := range jobs {
		if j.next == nil || proto.Equal(j.next, j.svc) {
			j.st.modifyIndex = j.svc.GetModifyIndex()
			continue
		}
		cmd.Puts = append(cmd.Puts, &orchv1.PutServicesCommand_Put{Service: j.next, ExpectModifyIndex: j.svc.GetModifyIndex()})
		written = append(written, j)
	}
	if len(written) == 0 {
		return nil
	}
	v, err := c.raft.Apply(ctx, fsm.CmdPutServices, cmd)
	if err != nil {
		for _, j := range written {
			j.st.modifyIndex = 0 // plan again; its events stay pending
		}
		if errors.Is(err, state.ErrConflict) {
			c.conflicts.Inc()
			c.log.Debug("services changed meanwhile; planning again", "err", err)
			return nil
		}
		return err
	}
	for i, out := range v.([]*orchv1.Service) {
		j := written[i]
		j.st.modifyIndex = out.GetModifyIndex()
		j.st.events = nil
		if out.GetStatus() != j.svc.GetStatus() {
			c.log.Info("service status", "cluster", out.GetCluster(), "service", out.GetServiceName(), "status", out.GetStatus())
		}
		if d, was := first(out.GetDeployments()), first(j.svc.GetDeployments()); d.GetId() != was.GetId() || d.GetRolloutState() != was.GetRolloutState() {
			c.log.Info("service deployment", "cluster", out.GetCluster(), "service", out.GetServiceName(), "deployment", d.GetId(),
				"task_definition", d.GetTaskDefinition(), "rollout_state", d.GetRolloutState(), "reason", d.GetRolloutStateReason())
		}
	}
	return nil
}

// fired reports whether a channel of ws is closed.
func fired(ws state.WatchSet) bool {
	if ws == nil {
		return true
	}
	for ch := range ws {
		select {
		case <-ch:
			return true
		default:
		}
	}
	return false
}

// inactiveSince is when an INACTIVE service became so: the last update of its deployments.
func inactiveSince(svc *orchv1.Service) time.Time {
	t := svc.GetCreatedAt().AsTime()
	for _, d := range svc.GetDeployments() {
		if u := d.GetUpdatedAt().AsTime(); u.After(t) {
			t = u
		}
	}
	return t
}

func first(ds []*orchv1.Deployment) *orchv1.Deployment {
	if len(ds) == 0 {
		return nil
	}
	return ds[0]
}

func taskIDs(tasks []*orchv1.Task) []string {
	ids := make([]string, len(tasks))
	for i, t := range tasks {
		ids[i] = t.GetId()
	}
	return ids
}
