package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

// StopCodeHostLost is the stopCode of a task whose host was lost. It is orch's: ECS has no code
// for it (its agent reconciles on reconnect instead).
const StopCodeHostLost = "HostLost"

// ContainerReasonHostLost is the reason of a container stopped because its host was lost.
const ContainerReasonHostLost = "host lost"

// applyTasksLost marks the tasks of a lost host STOPPED. Only tasks still on that host and not
// STOPPED change, so the command is idempotent and a task that stopped meanwhile keeps what its
// agent reported. A stop code or reason the task already has (a user's stop-task) is kept.
//
// The host may still run these tasks: it is only silent. So each address stays held (eni_held)
// until the host confirms the task stopped, and no new task on the host's /24 can get it when
// the host comes back while its agent is still stopping the old one. The command is refused
// while the host is recorded connected: a session that opened after the leader decided has
// shown the host is alive, and its agent will stop what the scheduler no longer wants.
func applyTasksLost(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.TasksLostCommand
	decode(buf, &cmd)
	h, err := w.Host(nil, cmd.GetHostId())
	if err != nil {
		return nil, err
	}
	if h.GetConnected() {
		return nil, fmt.Errorf("host %s: connected again, its tasks are not lost: %w", cmd.GetHostId(), state.ErrConflict)
	}
	reason := cmd.GetReason()
	if reason == "" {
		reason = fmt.Sprintf("Host %s was lost", cmd.GetHostId())
	}
	out := make([]*orchv1.Task, 0, len(cmd.GetTaskIds()))
	for _, id := range cmd.GetTaskIds() {
		t, err := w.Task(nil, id)
		if err != nil {
			return nil, err
		}
		if t == nil || t.GetHostId() != cmd.GetHostId() || t.GetLastStatus() == lifecycle.Stopped {
			continue
		}
		t = proto.Clone(t).(*orchv1.Task)
		markLost(t, reason, cmd.GetAt())
		t.Version++
		if err := w.PutTask(t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func markLost(t *orchv1.Task, reason string, at *timestamppb.Timestamp) {
	t.LastStatus = lifecycle.Stopped
	t.DesiredStatus = lifecycle.DesiredStopped
	setOnce(&t.StoppingAt, at)
	setOnce(&t.ExecutionStoppedAt, at)
	setOnce(&t.StoppedAt, at)
	if t.GetStopCode() == "" {
		t.StopCode = StopCodeHostLost
	}
	if t.GetStoppedReason() == "" {
		t.StoppedReason = reason
	}
	t.EniHeld = t.GetEni().GetIp() != ""
	for _, c := range t.GetContainers() {
		if c.GetLastStatus() == lifecycle.ContainerStopped {
			continue
		}
		c.LastStatus = lifecycle.ContainerStopped
		if c.GetReason() == "" {
			c.Reason = ContainerReasonHostLost
		}
	}
}
