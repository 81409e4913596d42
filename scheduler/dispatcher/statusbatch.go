package dispatcher

import (
	"context"
	"fmt"
	"sync"
	"time"

	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
)

// Status reports are group-committed across sessions, as the planner does with placements
// (scheduler/api/plan.go): each session queues its agent's reports as they arrive; the first
// to find no commit running starts one, which takes every session's reports queued so far,
// writes them as one Raft entry and answers each. While an entry is in flight the next round
// queues up, so a busy leader writes one entry per round trip, not one per session message,
// and an idle one writes a lone report at once. The queue is written in order, so each host's
// reports are applied in the order its agent sent them.

// maxStatusBatch bounds the reports in one entry: past about a thousand tasks an entry costs
// each server twice as much per task (see maxPlanTasks in scheduler/api/plan.go).
const maxStatusBatch = 1024

type statusJob struct {
	cmd  *orchv1.TaskStatusCommand
	done func(error) // called once the reports are written, or could not be
}

type statusCommitter struct {
	mu         sync.Mutex
	queue      []*statusJob
	committing bool
}

// queueStatuses queues host's reports for the next commit; done gets its outcome.
func (d *Dispatcher) queueStatuses(host string, tasks []*orchv1.TaskStatus, done func(error)) {
	j := &statusJob{cmd: &orchv1.TaskStatusCommand{HostId: host, Tasks: tasks}, done: done}
	c := &d.statuses
	c.mu.Lock()
	c.queue = append(c.queue, j)
	start := !c.committing
	c.committing = true
	c.mu.Unlock()
	if start {
		go d.statusLoop()
	}
}

func (d *Dispatcher) statusLoop() {
	c := &d.statuses
	for {
		c.mu.Lock()
		n, reports := 0, 0
		for n < len(c.queue) && (n == 0 || reports+len(c.queue[n].cmd.GetTasks()) <= maxStatusBatch) {
			reports += len(c.queue[n].cmd.GetTasks())
			n++
		}
		batch := c.queue[:n:n]
		c.queue = c.queue[n:]
		if n == 0 {
			c.committing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		err := d.applyStatusBatch(batch)
		for _, j := range batch {
			j.done(err)
		}
	}
}

func (d *Dispatcher) applyStatusBatch(batch []*statusJob) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if len(batch) == 1 {
		_, err := d.raft.Apply(ctx, fsm.CmdTaskStatus, batch[0].cmd)
		return err
	}
	cmds := make([]*orchv1.TaskStatusCommand, len(batch))
	for i, j := range batch {
		cmds[i] = j.cmd
	}
	if _, err := d.raft.Apply(ctx, fsm.CmdTaskStatusBatch, &orchv1.TaskStatusBatchCommand{Commands: cmds}); err != nil {
		return fmt.Errorf("task status of %d hosts: %w", len(batch), err)
	}
	return nil
}
