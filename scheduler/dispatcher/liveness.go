package dispatcher

import (
	"context"
	"fmt"
	"sync"
	"time"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
)

// seenTimes is when each host last gave a sign of life on this scheduler. It lives in memory
// only: a heartbeat is not worth a Raft entry, and a new leader gives every host a fresh grace
// period anyway (scheduler/controllers.Liveness).
type seenTimes struct {
	mu sync.Mutex
	at map[string]time.Time
}

// Touch records a sign of life from host: its session opened, or it sent a message.
func (d *Dispatcher) Touch(host string) {
	now := d.now()
	d.seen.mu.Lock()
	defer d.seen.mu.Unlock()
	if d.seen.at == nil {
		d.seen.at = map[string]time.Time{}
	}
	d.seen.at[host] = now
}

// LastSeen returns when host last gave a sign of life on this scheduler; false when it has not
// since this scheduler started.
func (d *Dispatcher) LastSeen(host string) (time.Time, bool) {
	d.seen.mu.Lock()
	defer d.seen.mu.Unlock()
	t, ok := d.seen.at[host]
	return t, ok
}

// releaseForgotten frees the addresses of the host's lost tasks that its agent no longer
// knows (its session hello does not list them). Such a task runs nowhere: an agent forgets a
// task only after it stopped it, or with its data dir, and then its recovery removed every
// container and network namespace of tasks it has no record of before it connected. So the
// agent will never report the task STOPPED, and this stands in for that report: a STOPPED
// status from the host, which the FSM takes as the confirmation that clears Task.eni_held.
func (d *Dispatcher) releaseForgotten(ctx context.Context, host string, known []string) error {
	tasks, err := d.store.Read().TasksByHost(host)
	if err != nil {
		return err
	}
	knows := make(map[string]bool, len(known))
	for _, id := range known {
		knows[id] = true
	}
	cmd := &orchv1.TaskStatusCommand{HostId: host}
	for _, t := range tasks {
		if t.GetEniHeld() && !knows[t.GetId()] {
			cmd.Tasks = append(cmd.Tasks, &orchv1.TaskStatus{TaskId: t.GetId(), LastStatus: lifecycle.Stopped})
		}
	}
	if len(cmd.Tasks) == 0 {
		return nil
	}
	if _, err := d.raft.Apply(ctx, fsm.CmdTaskStatus, cmd); err != nil {
		return fmt.Errorf("host %s: releasing the addresses of %d forgotten lost tasks: %w", host, len(cmd.Tasks), err)
	}
	d.log.Info("released the addresses of lost tasks the agent no longer knows", "host_id", host, "tasks", len(cmd.Tasks))
	return nil
}
