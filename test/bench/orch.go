package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"orch/pkg/client"
	"orch/pkg/lifecycle"
	"orch/pkg/taskdef"
	orchv1 "orch/proto/orch/v1"
)

// taskDefJSON is the benchmark's task definition; %s is the image. memory is a hard limit in
// MiB; stopTimeout bounds each untimed stop (sleep as PID 1 ignores SIGTERM).
const taskDefJSON = `{"family":"bench","containerDefinitions":[{"name":"app","image":%q,"memory":32,"stopTimeout":2}]}`

// stopTimeout bounds the untimed stop of one task (StopTask until STOPPED).
const stopTimeout = 60 * time.Second

// orchSide measures orch: RunTask until WatchTasks reports RUNNING.
type orchSide struct {
	c       *client.Client
	taskDef string // family:revision
	// samples holds the timestamps of each successful runOnce, for the phase breakdown.
	samples []orchSample
	plans   planTimes // the scheduler's plan metrics over the samples
}

// orchSample is one runOnce: client-side times and the task as the RUNNING report had it
// (createdAt, pullStartedAt, pullStoppedAt, startedAt).
type orchSample struct {
	id                  string
	call, resp, running time.Time
	task                *orchv1.Task
}

// newOrchSide registers the task definition.
func newOrchSide(ctx context.Context, c *client.Client, image string) (*orchSide, error) {
	td, err := taskdef.Parse(fmt.Appendf(nil, taskDefJSON, image))
	if err != nil {
		return nil, fmt.Errorf("task definition: %w", err)
	}
	resp, err := c.RegisterTaskDefinition(ctx, &orchv1.RegisterTaskDefinitionRequest{TaskDefinition: td})
	if err != nil {
		return nil, fmt.Errorf("register task definition bench: %w", err)
	}
	reg := resp.GetTaskDefinition()
	return &orchSide{c: c, taskDef: fmt.Sprintf("%s:%d", reg.GetFamily(), reg.GetRevision())}, nil
}

// runOnce runs one task and returns the time from the RunTask call until the WatchTasks stream
// reported it RUNNING. The task is then stopped and waited for until STOPPED (not timed).
func (o *orchSide) runOnce(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	resp, err := o.c.RunTask(ctx, &orchv1.RunTaskRequest{
		Cluster: cluster, TaskDefinition: o.taskDef, Count: 1, StartedBy: "orch-bench",
	})
	if err != nil {
		return 0, fmt.Errorf("run-task %s: %w", o.taskDef, err)
	}
	respAt := time.Now()
	if len(resp.GetFailures()) > 0 || len(resp.GetTasks()) != 1 {
		return 0, fmt.Errorf("run-task %s: want one task, got %d tasks and failures %v", o.taskDef, len(resp.GetTasks()), resp.GetFailures())
	}
	id := taskID(resp.GetTasks()[0])
	task, err := o.watch(ctx, id, lifecycle.Running)
	elapsed := time.Since(start)
	if err == nil && task.GetLastStatus() != lifecycle.Running {
		err = fmt.Errorf("task %s is %s, not RUNNING: %s %s", id, task.GetLastStatus(), task.GetStopCode(), task.GetStoppedReason())
	}
	if stopErr := o.stop(ctx, id); stopErr != nil {
		err = errors.Join(err, stopErr)
	}
	if err != nil {
		return 0, err
	}
	o.samples = append(o.samples, orchSample{id: id, call: start, resp: respAt, running: start.Add(elapsed), task: task})
	return elapsed, nil
}

// watch follows the task on WatchTasks until it has reached until (or gone past it) and
// returns its state as last reported.
func (o *orchSide) watch(ctx context.Context, id, until string) (*orchv1.Task, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := o.c.WatchTasks(ctx, &orchv1.WatchTasksRequest{Cluster: cluster, Tasks: []string{id}, UntilStatus: until})
	if err != nil {
		return nil, fmt.Errorf("watch task %s: %w", id, err)
	}
	var last *orchv1.Task
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if last == nil {
				return nil, fmt.Errorf("watch task %s: stream ended without a report", id)
			}
			return last, nil
		}
		if err != nil {
			return nil, fmt.Errorf("watch task %s until %s: %w", id, until, err)
		}
		for _, t := range msg.GetTasks() {
			if taskID(t) != id {
				continue
			}
			last = t
			if lifecycle.Rank(t.GetLastStatus()) >= lifecycle.Rank(until) {
				return t, nil
			}
		}
	}
}

// stop stops the task and waits until it is STOPPED, so that its containers, snapshot and ENI
// are gone before the next measurement.
func (o *orchSide) stop(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	if _, err := o.c.StopTask(ctx, &orchv1.StopTaskRequest{Cluster: cluster, Task: id, Reason: "orch-bench: measured"}); err != nil {
		return fmt.Errorf("stop task %s: %w", id, err)
	}
	t, err := o.watch(ctx, id, lifecycle.Stopped)
	if err != nil {
		return err
	}
	if t.GetLastStatus() != lifecycle.Stopped {
		return fmt.Errorf("stop task %s: still %s", id, t.GetLastStatus())
	}
	return nil
}

// taskID is a task's id, from its id field or the last segment of its ARN.
func taskID(t *orchv1.Task) string {
	if t.GetId() != "" {
		return t.GetId()
	}
	arn := t.GetTaskArn()
	return arn[strings.LastIndex(arn, "/")+1:]
}
