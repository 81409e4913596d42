package controllers

// The service scheduler's decisions, as pure functions: given a service and its tasks, what
// to start and stop, and the service as it should then be stored (counts, deployments, rollout
// states, events). The controller (services.go) reads the inputs, carries out the plan and
// writes the result; the rules can be tested here without Raft.

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

// Service, deployment and rollout states (ECS's).
const (
	ServiceActive     = "ACTIVE"
	ServiceDraining   = "DRAINING"
	ServiceInactive   = "INACTIVE"
	DeploymentPrimary = "PRIMARY"
	DeploymentActive  = "ACTIVE"
	RolloutInProgress = "IN_PROGRESS"
	RolloutCompleted  = "COMPLETED"
	RolloutFailed     = "FAILED"
)

const (
	// DeploymentIDPrefix starts every deployment id, and so the startedBy of every task the
	// service scheduler starts; tasks of the group started otherwise are left alone.
	DeploymentIDPrefix = "ecs-svc/"
	// MaxServiceEvents is how many events a service keeps, newest first.
	MaxServiceEvents = 100
	// maxEventTasks is how many task ids one started/stopped event lists.
	maxEventTasks = 10

	breakerReason = "ECS deployment circuit breaker: tasks failed to start."
)

// ServiceGroup is the task group of a service's tasks.
func ServiceGroup(name string) string { return state.ServiceGroupPrefix + name }

// ServiceInput is what the scheduler decides from.
type ServiceInput struct {
	Service *orchv1.Service // as stored; not changed
	// Tasks are every task of the service's group (TasksByService), STOPPED ones included.
	Tasks []*orchv1.Task
	Now   time.Time
	// Hold defers launches: the controller is backing off after failures.
	Hold bool
}

// TaskStops is a set of tasks to stop with one reason (stop code ServiceSchedulerInitiated).
type TaskStops struct {
	Reason  string
	TaskIDs []string
}

// ServicePlan is what to do for one service.
type ServicePlan struct {
	// Service is the service as it should be stored: a clone of the input, proto.Equal to it
	// when nothing changed.
	Service *orchv1.Service
	// Launch tasks of TaskDefinition with startedBy Deployment (the PRIMARY deployment).
	Launch         int
	Deployment     string
	TaskDefinition string
	Stops          []TaskStops
}

// Stopped reports how many tasks the plan stops.
func (p ServicePlan) Stopped() int {
	n := 0
	for _, s := range p.Stops {
		n += len(s.TaskIDs)
	}
	return n
}

// CircuitBreakerThreshold is how many failed tasks fail a deployment of desired tasks: half of
// them, at least 3 and at most 200 (ECS's rule).
func CircuitBreakerThreshold(desired int32) int32 {
	return min(max((desired+1)/2, 3), 200)
}

// Bounds are the task counts the deployment configuration allows for desired tasks: at most
// maxTotal tasks that are not STOPPED (maximumPercent, rounded down), and at least minRunning
// RUNNING (minimumHealthyPercent, rounded up).
func Bounds(desired int32, dc *orchv1.DeploymentConfiguration) (maxTotal, minRunning int) {
	maxPct, minPct := deploymentPercents(dc)
	d := int(desired)
	return d * maxPct / 100, (d*minPct + 99) / 100
}

func deploymentPercents(dc *orchv1.DeploymentConfiguration) (maxPct, minPct int) {
	maxPct, minPct = 200, 100 // ECS's defaults
	if dc == nil {
		return maxPct, minPct
	}
	if dc.MaximumPercent != nil {
		maxPct = int(dc.GetMaximumPercent())
	}
	if dc.MinimumHealthyPercent != nil {
		minPct = int(dc.GetMinimumHealthyPercent())
	}
	return maxPct, minPct
}

// LastTaskFailure is when the last task of the group that failed (TaskFailedToStart or
// EssentialContainerExited) stopped; zero if none did.
func LastTaskFailure(tasks []*orchv1.Task) time.Time {
	var last time.Time
	for _, t := range tasks {
		if failed(t) {
			if at := t.GetStoppedAt().AsTime(); at.After(last) {
				last = at
			}
		}
	}
	return last
}

func failed(t *orchv1.Task) bool {
	return t.GetLastStatus() == lifecycle.Stopped &&
		(t.GetStopCode() == lifecycle.TaskFailedToStart || t.GetStopCode() == lifecycle.EssentialContainerExited)
}

// healthy reports whether a RUNNING task counts toward the minimum: no essential container
// reports UNHEALTHY.
func healthy(t *orchv1.Task) bool {
	if t.GetHealthStatus() == "UNHEALTHY" {
		return false
	}
	for _, c := range t.GetContainers() {
		if c.GetEssential() && c.GetHealthStatus() == "UNHEALTHY" {
			return false
		}
	}
	return true
}

// tally is what one deployment's tasks (or all of them) amount to.
type tally struct {
	running, pending, failed int32
	wanted                   int32 // live with desiredStatus RUNNING
}

func (t *tally) live() int32 { return t.running + t.pending }

func count(tasks []*orchv1.Task) (byDeployment map[string]*tally, all tally) {
	byDeployment = map[string]*tally{}
	for _, t := range tasks {
		d := byDeployment[t.GetStartedBy()]
		if d == nil {
			d = &tally{}
			byDeployment[t.GetStartedBy()] = d
		}
		d.add(t)
		all.add(t)
	}
	return byDeployment, all
}

func (c *tally) add(t *orchv1.Task) {
	switch t.GetLastStatus() {
	case lifecycle.Stopped:
		if failed(t) {
			c.failed++
		}
		return
	case lifecycle.Running:
		c.running++
	default:
		c.pending++
	}
	if t.GetDesiredStatus() == lifecycle.DesiredRunning {
		c.wanted++
	}
}

// PlanService decides for one service. The rules:
//
//   - D is desiredCount (0 while DRAINING). At most floor(D*max%) tasks are not STOPPED, and
//     at least ceil(D*min%) are RUNNING, healthy and wanted, across all deployments.
//   - PRIMARY tasks above D are stopped, pending ones first, then the newest.
//   - Older deployments' tasks (startedBy another "ecs-svc/" id than the PRIMARY's) are
//     stopped: pending ones at once, RUNNING ones (unhealthy first, then the oldest) only as
//     far as the minimum allows. Tasks of the group that the scheduler did not start are
//     neither counted nor touched.
//   - PRIMARY tasks are started up to D, as far as the maximum allows, unless Hold, or the
//     PRIMARY deployment FAILED (circuit breaker without rollback: nothing is started or
//     stopped but the PRIMARY's extras).
//   - When rounding leaves no room at all (both bounds equal D), one task is started above the
//     maximum (maximumPercent > 100) or one old task stopped below the minimum, so that a
//     deployment never stalls.
//   - Counts: runningCount = RUNNING tasks, pendingCount = other tasks not STOPPED, per
//     deployment and in all; failedTasks = the deployment's tasks STOPPED with
//     TaskFailedToStart or EssentialContainerExited (never decreasing, as STOPPED tasks are
//     forgotten after a while).
//   - Circuit breaker: an IN_PROGRESS PRIMARY with failedTasks >= CircuitBreakerThreshold(D)
//     is FAILED; with rollback, a new PRIMARY of the newest COMPLETED deployment's task
//     definition takes over (nothing is started or stopped in that pass, so that no task is
//     started for a deployment that is not stored yet).
//   - The PRIMARY is COMPLETED when it has D tasks, all RUNNING, and no other deployment has a
//     task left; the other deployments are then dropped.
//   - "has reached a steady state." when the service becomes steady (PRIMARY COMPLETED, D
//     RUNNING, nothing else) and was not as stored: after a deployment, a scale change or a
//     replacement.
//   - Otherwise ACTIVE deployments without tasks are dropped, but for the newest COMPLETED
//     one (the rollback target) and FAILED ones.
//   - A DRAINING service without tasks becomes INACTIVE.
func PlanService(in ServiceInput) ServicePlan {
	svc := proto.Clone(in.Service).(*orchv1.Service)
	plan := ServicePlan{Service: svc}
	if svc.GetStatus() == ServiceInactive {
		return plan
	}
	now := timestamppb.New(in.Now)
	ev := func(format string, args ...any) { AddEvent(svc, now, fmt.Sprintf(format, args...)) }
	name := svc.GetServiceName()
	draining := svc.GetStatus() == ServiceDraining
	desired := svc.GetDesiredCount()
	if draining {
		desired = 0
	}
	var tasks []*orchv1.Task
	for _, t := range in.Tasks {
		if strings.HasPrefix(t.GetStartedBy(), DeploymentIDPrefix) {
			tasks = append(tasks, t)
		}
	}
	sortByCreation(tasks)
	var primary *orchv1.Deployment
	if ds := svc.GetDeployments(); len(ds) > 0 && ds[0].GetStatus() == DeploymentPrimary {
		primary = ds[0]
	}

	// Counts, as observed.
	byDep, all := count(tasks)
	svc.RunningCount, svc.PendingCount = all.running, all.pending
	for _, d := range svc.GetDeployments() {
		c := byDep[d.GetId()]
		if c == nil {
			c = &tally{}
		}
		d.RunningCount, d.PendingCount = c.running, c.pending
		d.FailedTasks = max(d.GetFailedTasks(), c.failed)
		if d != primary {
			d.DesiredCount = c.wanted
		}
	}
	if primary != nil {
		primary.DesiredCount = desired
	}

	// Circuit breaker.
	rolledBack := false
	if cb := svc.GetDeploymentConfiguration().GetDeploymentCircuitBreaker(); cb.GetEnable() && !draining && primary != nil &&
		primary.GetRolloutState() == RolloutInProgress && primary.GetFailedTasks() >= CircuitBreakerThreshold(desired) {
		primary.RolloutState, primary.RolloutStateReason = RolloutFailed, breakerReason
		ev("(service %s) (deployment %s) deployment failed: tasks failed to start.", name, primary.GetId())
		if target := rollbackTarget(svc); cb.GetRollback() && target != nil {
			next := newDeployment(target.GetTaskDefinition(), desired, svc.GetLaunchType(), now)
			next.RolloutStateReason = "ECS deployment circuit breaker: rolling back to deploymentId " + target.GetId() + "."
			primary.Status = DeploymentActive
			svc.Deployments = append([]*orchv1.Deployment{next}, svc.Deployments...)
			svc.TaskDefinition = next.GetTaskDefinition()
			ev("(service %s) (deployment %s) rolling back to deployment %s.", name, next.GetId(), target.GetId())
			primary, rolledBack = next, true
		}
	}

	if !rolledBack {
		frozen := !draining && (primary == nil || primary.GetRolloutState() == RolloutFailed)
		plan.Launch, plan.Stops = decide(tasks, primary, desired, svc.GetDeploymentConfiguration(), in.Hold, frozen)
		if plan.Launch > 0 {
			plan.Deployment, plan.TaskDefinition = primary.GetId(), primary.GetTaskDefinition()
		}
		// Old deployments keep what is not being stopped.
		stopping := map[string]bool{}
		for _, s := range plan.Stops {
			for _, id := range s.TaskIDs {
				stopping[id] = true
			}
		}
		for _, d := range svc.GetDeployments() {
			if d == primary {
				continue
			}
			d.DesiredCount = 0
			for _, t := range tasks {
				if t.GetStartedBy() == d.GetId() && t.GetLastStatus() != lifecycle.Stopped &&
					t.GetDesiredStatus() == lifecycle.DesiredRunning && !stopping[t.GetId()] {
					d.DesiredCount++
				}
			}
		}
	}

	// Rollout completion, on what was observed (tasks being stopped are still there).
	var primaryLive, othersLive int32
	for id, c := range byDep {
		if primary != nil && id == primary.GetId() {
			primaryLive = c.live()
		} else {
			othersLive += c.live()
		}
	}
	if !draining && !rolledBack && primary != nil && primary.GetRolloutState() == RolloutInProgress &&
		primary.GetRunningCount() == desired && primaryLive == desired && othersLive == 0 {
		primary.RolloutState = RolloutCompleted
		primary.RolloutStateReason = "ECS deployment " + primary.GetId() + " completed."
		svc.Deployments = svc.Deployments[:1]
		ev("(service %s) (deployment %s) deployment completed.", name, primary.GetId())
	}
	if !draining && steady(svc, desired) && !steady(in.Service, desired) {
		ev("(service %s) has reached a steady state.", name)
	}
	pruneDeployments(svc, primary, byDep)

	if draining && all.live() == 0 {
		svc.Status = ServiceInactive
		if primary != nil {
			svc.Deployments = []*orchv1.Deployment{primary}
			primary.UpdatedAt = now // when it became INACTIVE: the retention counts from it
		}
	}
	stampUpdates(in.Service, svc, now)
	return plan
}

// decide returns how many PRIMARY tasks to start and which tasks to stop.
func decide(tasks []*orchv1.Task, primary *orchv1.Deployment, desired int32, dc *orchv1.DeploymentConfiguration, hold, frozen bool) (int, []TaskStops) {
	maxTotal, minRunning := Bounds(desired, dc)
	maxPct, minPct := deploymentPercents(dc)
	d := int(desired)
	live, fit := 0, 0 // not STOPPED; RUNNING, healthy and wanted
	inFlight := false // a task is on its way up or down
	var mine, oldPending, oldRunning []*orchv1.Task
	for _, t := range tasks {
		if t.GetLastStatus() == lifecycle.Stopped {
			continue
		}
		live++
		running := t.GetLastStatus() == lifecycle.Running
		if t.GetDesiredStatus() != lifecycle.DesiredRunning {
			inFlight = true
			continue
		}
		if !running {
			inFlight = true
		} else if healthy(t) {
			fit++
		}
		switch {
		case primary != nil && t.GetStartedBy() == primary.GetId():
			mine = append(mine, t)
		case running:
			oldRunning = append(oldRunning, t)
		default:
			oldPending = append(oldPending, t)
		}
	}
	var order []string // deployments in the order their stops were decided
	stops := map[string][]string{}
	stop := func(t *orchv1.Task) {
		dep := t.GetStartedBy()
		if _, ok := stops[dep]; !ok {
			order = append(order, dep)
		}
		stops[dep] = append(stops[dep], t.GetId())
		if t.GetLastStatus() == lifecycle.Running && healthy(t) {
			fit--
		}
	}

	// Scale in: the PRIMARY's extras, pending first, then the newest.
	if len(mine) > d {
		extras := append([]*orchv1.Task(nil), mine...)
		sort.SliceStable(extras, func(i, j int) bool {
			ri, rj := extras[i].GetLastStatus() == lifecycle.Running, extras[j].GetLastStatus() == lifecycle.Running
			if ri != rj {
				return !ri
			}
			return i > j // mine is oldest first
		})
		for _, t := range extras[:len(mine)-d] {
			stop(t)
		}
		mine = mine[:d] // the count is what matters below
	}
	launch := 0
	if !frozen {
		for _, t := range oldPending {
			stop(t)
		}
		sort.SliceStable(oldRunning, func(i, j int) bool { return !healthy(oldRunning[i]) && healthy(oldRunning[j]) })
		var kept []*orchv1.Task
		for _, t := range oldRunning {
			if !healthy(t) || fit > minRunning {
				stop(t)
			} else {
				kept = append(kept, t)
			}
		}
		if !hold && len(mine) < d {
			launch = max(0, min(d-len(mine), maxTotal-live))
		}
		// Rounding can leave no room either way (both bounds equal D): make room by one.
		if launch == 0 && len(order) == 0 && !inFlight && !hold && len(mine) < d && len(kept) > 0 {
			switch {
			case maxPct > 100:
				launch = 1
			case minPct < 100:
				stop(kept[0])
			}
		}
	}
	out := make([]TaskStops, 0, len(order))
	for _, dep := range order {
		out = append(out, TaskStops{Reason: "Scaling activity initiated by (deployment " + dep + ")", TaskIDs: stops[dep]})
	}
	return launch, out
}

// steady reports whether svc, as counted, is in its steady state for desired tasks.
func steady(svc *orchv1.Service, desired int32) bool {
	ds := svc.GetDeployments()
	return svc.GetStatus() == ServiceActive && len(ds) == 1 && ds[0].GetStatus() == DeploymentPrimary &&
		ds[0].GetRolloutState() == RolloutCompleted && svc.GetRunningCount() == desired && svc.GetPendingCount() == 0
}

// rollbackTarget is the newest deployment other than the PRIMARY that COMPLETED.
func rollbackTarget(svc *orchv1.Service) *orchv1.Deployment {
	var best *orchv1.Deployment
	for _, d := range svc.GetDeployments()[1:] {
		if d.GetRolloutState() == RolloutCompleted && (best == nil || d.GetCreatedAt().AsTime().After(best.GetCreatedAt().AsTime())) {
			best = d
		}
	}
	return best
}

// pruneDeployments drops the ACTIVE deployments that have no task left, but for the newest
// COMPLETED one, which a circuit breaker may roll back to, and FAILED ones, which say why
// (until the PRIMARY completes).
func pruneDeployments(svc *orchv1.Service, primary *orchv1.Deployment, byDep map[string]*tally) {
	target := rollbackTarget(svc)
	kept := svc.Deployments[:0:0]
	for _, d := range svc.GetDeployments() {
		if c := byDep[d.GetId()]; d == primary || d == target || d.GetRolloutState() == RolloutFailed || (c != nil && c.live() > 0) {
			kept = append(kept, d)
		}
	}
	svc.Deployments = kept
}

// stampUpdates sets updatedAt on each deployment of next that differs from its version in cur.
func stampUpdates(cur, next *orchv1.Service, now *timestamppb.Timestamp) {
	old := map[string]*orchv1.Deployment{}
	for _, d := range cur.GetDeployments() {
		old[d.GetId()] = d
	}
	for _, d := range next.GetDeployments() {
		o := old[d.GetId()]
		if o == nil {
			continue
		}
		a, b := proto.Clone(o).(*orchv1.Deployment), proto.Clone(d).(*orchv1.Deployment)
		a.UpdatedAt, b.UpdatedAt = nil, nil
		if !proto.Equal(a, b) {
			d.UpdatedAt = now
		}
	}
}

func newDeployment(taskDefinition string, desired int32, launchType string, now *timestamppb.Timestamp) *orchv1.Deployment {
	n, err := rand.Int(rand.Reader, big.NewInt(9e18))
	if err != nil {
		panic(err)
	}
	id := DeploymentIDPrefix + n.Add(n, big.NewInt(1e18)).String() // 19 digits, as ECS's
	return &orchv1.Deployment{
		Id: id, Status: DeploymentPrimary, TaskDefinition: taskDefinition, DesiredCount: desired,
		CreatedAt: now, UpdatedAt: now, LaunchType: launchType,
		RolloutState: RolloutInProgress, RolloutStateReason: "ECS deployment " + id + " in progress.",
	}
}

// sortByCreation orders tasks oldest first (ties by id: a total order).
func sortByCreation(tasks []*orchv1.Task) {
	slices.SortFunc(tasks, func(a, b *orchv1.Task) int {
		ca, cb := a.GetCreatedAt(), b.GetCreatedAt()
		if c := cmp.Compare(ca.GetSeconds(), cb.GetSeconds()); c != 0 {
			return c
		}
		if c := cmp.Compare(ca.GetNanos(), cb.GetNanos()); c != 0 {
			return c
		}
		return strings.Compare(a.GetId(), b.GetId())
	})
}

// AddEvent puts an event first in svc's events, keeping at most MaxServiceEvents.
func AddEvent(svc *orchv1.Service, at *timestamppb.Timestamp, message string) {
	MergeEvents(svc, &orchv1.ServiceEvent{Id: newEventID(), CreatedAt: at, Message: message})
}

// MergeEvents adds events to svc's, newest first (events of the same time: the later
// argument first), keeping at most MaxServiceEvents.
func MergeEvents(svc *orchv1.Service, evs ...*orchv1.ServiceEvent) {
	if len(evs) == 0 {
		return
	}
	add := make([]*orchv1.ServiceEvent, 0, len(evs)+len(svc.Events))
	for i := len(evs) - 1; i >= 0; i-- {
		add = append(add, evs[i])
	}
	add = append(add, svc.Events...)
	sort.SliceStable(add, func(i, j int) bool { return add[i].GetCreatedAt().AsTime().After(add[j].GetCreatedAt().AsTime()) })
	if len(add) > MaxServiceEvents {
		add = add[:MaxServiceEvents]
	}
	svc.Events = add
}

// RecentEvent reports whether svc has an event with message since the given time.
func RecentEvent(svc *orchv1.Service, message string, since time.Time) bool {
	for _, e := range svc.GetEvents() {
		if e.GetCreatedAt().AsTime().Before(since) {
			return false
		}
		if e.GetMessage() == message {
			return true
		}
	}
	return false
}

func newEventID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40 // a version 4 UUID, as ECS's event ids
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// StartedMessage is ECS's event for tasks started.
func StartedMessage(service string, taskIDs []string) string {
	return fmt.Sprintf("(service %s) has started %d tasks: %s.", service, len(taskIDs), taskList(taskIDs))
}

// StoppedMessage is ECS's event for tasks stopped.
func StoppedMessage(service string, taskIDs []string) string {
	return fmt.Sprintf("(service %s) has stopped %d running tasks: %s.", service, len(taskIDs), taskList(taskIDs))
}

// PlacementFailedMessage is ECS's event for tasks that could not be placed.
func PlacementFailedMessage(service, reason string) string {
	return fmt.Sprintf("(service %s) was unable to place a task because no container instance met all of its requirements. Reason: %s.", service, strings.TrimSuffix(reason, "."))
}

func taskList(ids []string) string {
	parts := make([]string, 0, min(len(ids), maxEventTasks)+1)
	for i, id := range ids {
		if i == maxEventTasks {
			parts = append(parts, fmt.Sprintf("and %d more", len(ids)-maxEventTasks))
			break
		}
		parts = append(parts, "(task "+id+")")
	}
	return strings.Join(parts, " ")
}
