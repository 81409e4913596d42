package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"orch/pkg/lifecycle"
	"orch/pkg/taskdef"
	orchv1 "orch/proto/orch/v1"
)

// bulkTaskDefJSON is the bulk's task definition: stopTimeout 1 so that stopping the tasks
// (sleep as PID 1 ignores SIGTERM) takes a second, not two.
const bulkTaskDefJSON = `{"family":"bench-bulk","containerDefinitions":[{"name":"app","image":%q,"memory":32,"stopTimeout":1}]}`

// Limits of the load figures.
const (
	runTaskBatch    = 10 // RunTask's count limit
	runTaskParallel = 5  // RunTask calls in flight during the bulk start
	loadTimeout     = 5 * time.Minute
	pollEvery       = 250 * time.Millisecond
)

// burstOrch issues n RunTask calls (count 1) at once and times each task from its call until
// WatchTasks reports it RUNNING. keep runs while all n are RUNNING (the footprint); then every
// task is stopped, concurrently and untimed.
func (o *orchSide) burstOrch(ctx context.Context, n int, keep func(ids []string)) (Dist, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	samples := make([]time.Duration, n)
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			call := time.Now()
			resp, err := o.c.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: cluster, TaskDefinition: o.taskDef, Count: 1, StartedBy: "orch-bench-burst"})
			if err != nil {
				errs[i] = fmt.Errorf("burst run-task %d: %w", i, err)
				return
			}
			if len(resp.GetTasks()) != 1 {
				errs[i] = fmt.Errorf("burst run-task %d: got %d tasks, failures %v", i, len(resp.GetTasks()), resp.GetFailures())
				return
			}
			ids[i] = taskID(resp.GetTasks()[0])
			t, err := o.watch(ctx, ids[i], lifecycle.Running)
			samples[i] = time.Since(call)
			if err == nil && t.GetLastStatus() != lifecycle.Running {
				err = fmt.Errorf("task %s is %s: %s %s", ids[i], t.GetLastStatus(), t.GetStopCode(), t.GetStoppedReason())
			}
			errs[i] = err
		})
	}
	wg.Wait()
	wall := time.Since(start)
	err := errors.Join(errs...)
	if err == nil && keep != nil {
		keep(ids)
	}
	if stopErr := o.stopAll(context.WithoutCancel(ctx), ids); stopErr != nil {
		err = errors.Join(err, stopErr)
	}
	if err != nil {
		return Dist{}, 0, err
	}
	return newDist(samples), wall, nil
}

// stopAll stops the tasks (ids may have empty entries) concurrently and waits until each is
// STOPPED.
func (o *orchSide) stopAll(ctx context.Context, ids []string) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, 50)
	for _, id := range ids {
		if id == "" {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := o.stop(ctx, id); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// burstFloor starts n floor tasks at once, each timed until its task Start returns, then
// tears them all down (untimed).
func (f *floor) burstFloor(ctx context.Context, n int) (Dist, time.Duration, error) {
	ctx = f.ctx(ctx)
	tasks := make([]*floorTask, n)
	ips := make([]int, n)
	for i := range tasks {
		seq := f.seq
		f.seq++
		tasks[i] = &floorTask{id: fmt.Sprintf("floor-%d", seq), veth: fmt.Sprintf("fv%d", seq)}
		tasks[i].nsPath = filepath.Join(f.nsDir, tasks[i].id)
		ips[i] = seq
	}
	samples := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i, ft := range tasks {
		wg.Go(func() {
			t0 := time.Now()
			errs[i] = f.start(ctx, ft, taskIP(ips[i]))
			samples[i] = time.Since(t0)
		})
	}
	wg.Wait()
	wall := time.Since(start)
	for i, ft := range tasks {
		wg.Go(func() {
			if err := f.teardown(context.WithoutCancel(ctx), ft); err != nil {
				errs[i] = errors.Join(errs[i], err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return Dist{}, 0, err
	}
	return newDist(samples), wall, nil
}

// BulkResult is Config.Bulk tasks started on the one node, with the proof that the agent's
// session held throughout.
type BulkResult struct {
	N        int           `json:"n"`
	Wall     time.Duration `json:"-"` // first RunTask call -> all RUNNING
	WallMs   float64       `json:"wallMs"`
	PerSec   float64       `json:"tasksPerSecond"`
	Polls    int           `json:"agentPolls"`        // describe-container-instances during the run
	Dropped  int           `json:"agentDisconnected"` // polls that saw agentConnected false
	HostLost int           `json:"hostLostTasks"`     // tasks STOPPED with stopCode HostLost
	Stopped  int           `json:"stoppedTasks"`      // tasks STOPPED for any reason before the end
	Closed   int           `json:"sessionClosedLines"`
	StopWall time.Duration `json:"-"` // stopping them all, untimed in the figures
	StopMs   float64       `json:"stopAllMs"`
}

// bulk starts n tasks in RunTask batches of 10 (5 calls in flight), waits until all are
// RUNNING while polling the container instance, runs keep, and stops them all concurrently.
func (e *env) bulk(ctx context.Context, n int, keep func()) (*BulkResult, error) {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	td, err := taskdef.Parse(fmt.Appendf(nil, bulkTaskDefJSON, e.image))
	if err != nil {
		return nil, fmt.Errorf("bulk task definition: %w", err)
	}
	reg, err := e.client.RegisterTaskDefinition(ctx, &orchv1.RegisterTaskDefinitionRequest{TaskDefinition: td})
	if err != nil {
		return nil, fmt.Errorf("register task definition bench-bulk: %w", err)
	}
	o := &orchSide{c: e.client, taskDef: fmt.Sprintf("%s:%d", reg.GetTaskDefinition().GetFamily(), reg.GetTaskDefinition().GetRevision())}
	res := &BulkResult{N: n}
	// Sessions closed before (the standalone agent of the footprint figure) are not this run's.
	closedBefore := countLines(e.sched.logPath, "agent session closed")

	// The agent's connection, polled until the tasks are stopped again.
	pollCtx, stopPoll := context.WithCancel(ctx)
	var pollWG sync.WaitGroup
	pollWG.Go(func() {
		for pollCtx.Err() == nil {
			resp, err := e.client.DescribeContainerInstances(pollCtx, &orchv1.DescribeContainerInstancesRequest{Cluster: cluster})
			if err == nil {
				res.Polls++
				for _, ci := range resp.GetContainerInstances() {
					if !ci.GetAgentConnected() {
						res.Dropped++
					}
				}
			}
			select {
			case <-pollCtx.Done():
			case <-time.After(pollEvery):
			}
		}
	})
	defer func() { stopPoll(); pollWG.Wait() }()

	batches := (n + runTaskBatch - 1) / runTaskBatch
	ids := make([][]string, batches)
	errs := make([]error, batches)
	sem := make(chan struct{}, runTaskParallel)
	var wg sync.WaitGroup
	start := time.Now()
	for b := range batches {
		count := min(runTaskBatch, n-b*runTaskBatch)
		wg.Go(func() {
			sem <- struct{}{}
			resp, err := o.c.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: cluster, TaskDefinition: o.taskDef, Count: int32(count), StartedBy: "orch-bench-bulk"})
			<-sem
			if err != nil {
				errs[b] = fmt.Errorf("bulk run-task batch %d: %w", b, err)
				return
			}
			if len(resp.GetTasks()) != count {
				errs[b] = fmt.Errorf("bulk run-task batch %d: got %d tasks, failures %v", b, len(resp.GetTasks()), resp.GetFailures())
			}
			for _, t := range resp.GetTasks() {
				ids[b] = append(ids[b], taskID(t))
			}
			if len(ids[b]) > 0 {
				errs[b] = errors.Join(errs[b], o.watchAll(ctx, ids[b], lifecycle.Running))
			}
		})
	}
	wg.Wait()
	res.Wall = time.Since(start)
	var all []string
	for _, b := range ids {
		all = append(all, b...)
	}
	err = errors.Join(errs...)
	if err == nil {
		// All watches ended: every task is RUNNING or past it. Check which.
		err = e.checkTasks(ctx, all, res)
	}
	if err == nil && keep != nil {
		keep()
	}
	stopPoll()
	pollWG.Wait()
	res.Closed = countLines(e.sched.logPath, "agent session closed") - closedBefore
	t0 := time.Now()
	if stopErr := o.stopAll(context.WithoutCancel(ctx), all); stopErr != nil {
		err = errors.Join(err, stopErr)
	}
	res.StopWall = time.Since(t0)
	if err != nil {
		return nil, err
	}
	res.WallMs, res.StopMs = msf(res.Wall), msf(res.StopWall)
	res.PerSec = float64(n) / res.Wall.Seconds()
	return res, nil
}

// watchAll follows the tasks on one WatchTasks stream until every one has reached until.
func (o *orchSide) watchAll(ctx context.Context, ids []string, until string) error {
	stream, err := o.c.WatchTasks(ctx, &orchv1.WatchTasksRequest{Cluster: cluster, Tasks: ids, UntilStatus: until})
	if err != nil {
		return fmt.Errorf("watch %d tasks: %w", len(ids), err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("watch %d tasks until %s: %w", len(ids), until, err)
		}
	}
}

// checkTasks describes the tasks (100 per call) and fails unless all are RUNNING; it counts
// the STOPPED ones and those with stopCode HostLost into res.
func (e *env) checkTasks(ctx context.Context, ids []string, res *BulkResult) error {
	notRunning := 0
	var first string
	for i := 0; i < len(ids); i += 100 {
		resp, err := e.client.DescribeTasks(ctx, &orchv1.DescribeTasksRequest{Cluster: cluster, Tasks: ids[i:min(i+100, len(ids))]})
		if err != nil {
			return fmt.Errorf("describe tasks: %w", err)
		}
		for _, t := range resp.GetTasks() {
			if t.GetLastStatus() == lifecycle.Stopped {
				res.Stopped++
				if t.GetStopCode() == "HostLost" {
					res.HostLost++
				}
			}
			if t.GetLastStatus() != lifecycle.Running {
				notRunning++
				if first == "" {
					first = fmt.Sprintf("%s is %s (%s %s)", taskID(t), t.GetLastStatus(), t.GetStopCode(), t.GetStoppedReason())
				}
			}
		}
	}
	if notRunning > 0 {
		return fmt.Errorf("bulk: %d of %d tasks not RUNNING, e.g. %s", notRunning, len(ids), first)
	}
	return nil
}

func (r *BulkResult) writeTable(b *strings.Builder) {
	fmt.Fprintf(b, "\nbulk: %d tasks on one node, run-task batches of %d (%d calls in flight)\n", r.N, runTaskBatch, runTaskParallel)
	fmt.Fprintf(b, "  first call -> all RUNNING:  %s (%.1f tasks/s)\n", ms(r.Wall), r.PerSec)
	fmt.Fprintf(b, "  agent connected:            %d of %d polls (every %s)\n", r.Polls-r.Dropped, r.Polls, pollEvery)
	fmt.Fprintf(b, "  tasks STOPPED before stop:  %d (HostLost: %d)\n", r.Stopped, r.HostLost)
	fmt.Fprintf(b, "  \"agent session closed\":     %d lines in the scheduler log meanwhile\n", r.Closed)
	fmt.Fprintf(b, "  stopping all (untimed):     %s\n", ms(r.StopWall))
}
