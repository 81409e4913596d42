package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

// applyPlaceTasks stores tasks the leader placed. It refuses the whole batch when an ENI
// address is already held by a live task on the same container instance, so that no address is
// ever handed out twice, whatever raced.
func applyPlaceTasks(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.PlaceTasksCommand
	decode(buf, &cmd)
	inUse := map[string]map[string]bool{} // instance -> ip
	for _, t := range cmd.GetTasks() {
		inst := t.GetContainerInstanceId()
		if inUse[inst] == nil {
			live, err := w.TasksByInstance(inst)
			if err != nil {
				return nil, err
			}
			inUse[inst] = map[string]bool{}
			for _, lt := range live {
				if lt.GetLastStatus() != lifecycle.Stopped || lt.GetEniHeld() {
					inUse[inst][lt.GetEni().GetIp()] = true
				}
			}
		}
		ip := t.GetEni().GetIp()
		if inUse[inst][ip] {
			return nil, fmt.Errorf("task %s: address %s on container instance %s is in use: %w", t.GetId(), ip, inst, state.ErrConflict)
		}
		inUse[inst][ip] = true
		if old, err := w.Task(nil, t.GetId()); err != nil || old != nil {
			return nil, fmt.Errorf("task %s: %w", t.GetId(), state.ErrConflict)
		}
	}
	out := make([]*orchv1.Task, 0, len(cmd.GetTasks()))
	for _, t := range cmd.GetTasks() { // decoded from the entry: nobody else holds them
		t.Version = 1
		if err := w.PutTask(t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func applyStopTasks(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.StopTasksCommand
	decode(buf, &cmd)
	out := make([]*orchv1.Task, 0, len(cmd.GetTaskIds()))
	for _, id := range cmd.GetTaskIds() {
		t, err := w.Task(nil, id)
		if err != nil {
			return nil, err
		}
		if t == nil {
			return nil, fmt.Errorf("task %s: %w", id, state.ErrNotFound)
		}
		if t.GetDesiredStatus() == lifecycle.DesiredStopped {
			out = append(out, t)
			continue
		}
		t = proto.Clone(t).(*orchv1.Task)
		t.DesiredStatus = lifecycle.DesiredStopped
		t.StoppingAt = cmd.GetAt()
		t.StopCode = cmd.GetStopCode()
		t.StoppedReason = cmd.GetReason()
		t.Version++
		if err := w.PutTask(t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// applyTaskStatus merges an agent's reports. Status only moves forward; timestamps are set once;
// a report about a task that is not on the reporting host is ignored (agents act only as
// themselves).
func applyTaskStatus(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.TaskStatusCommand
	decode(buf, &cmd)
	return mergeReports(w, &cmd)
}

// applyTaskStatusBatch applies each host's reports, in order, as applyTaskStatus does.
func applyTaskStatusBatch(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.TaskStatusBatchCommand
	decode(buf, &cmd)
	changed := 0
	for _, c := range cmd.GetCommands() {
		n, err := mergeReports(w, c)
		if err != nil {
			return nil, err
		}
		changed += n
	}
	return changed, nil
}

// mergeReports merges one host's reports and returns how many tasks changed.
func mergeReports(w *state.WriteTxn, cmd *orchv1.TaskStatusCommand) (int, error) {
	changed := 0
	for _, st := range cmd.GetTasks() {
		t, err := w.Task(nil, st.GetTaskId())
		if err != nil {
			return 0, err
		}
		if t == nil || t.GetHostId() != cmd.GetHostId() {
			continue
		}
		next := proto.Clone(t).(*orchv1.Task)
		mergeStatus(next, st)
		// The host confirms a lost task stopped: its address is free again (see applyTasksLost).
		next.EniHeld = next.GetEniHeld() && st.GetLastStatus() != lifecycle.Stopped
		if proto.Equal(next, t) {
			continue
		}
		next.Version++
		if err := w.PutTask(next); err != nil {
			return 0, err
		}
		changed++
	}
	return changed, nil
}

func mergeStatus(t *orchv1.Task, st *orchv1.TaskStatus) {
	if lifecycle.Forward(t.GetLastStatus(), st.GetLastStatus()) {
		t.LastStatus = st.GetLastStatus()
		if t.LastStatus == lifecycle.Stopped {
			t.StoppedAt = st.GetObservedAt()
			if t.GetStoppingAt() == nil {
				t.StoppingAt = st.GetObservedAt()
			}
			// A task that stops by itself is no longer wanted: ECS sets desiredStatus too.
			t.DesiredStatus = lifecycle.DesiredStopped
		}
	}
	setOnce(&t.PullStartedAt, st.GetPullStartedAt())
	setOnce(&t.PullStoppedAt, st.GetPullStoppedAt())
	setOnce(&t.StartedAt, st.GetStartedAt())
	setOnce(&t.ExecutionStoppedAt, st.GetExecutionStoppedAt())
	if t.GetStopCode() == "" && st.GetStopCode() != "" {
		t.StopCode = st.GetStopCode()
		t.StoppedReason = st.GetStoppedReason()
	}
	for _, cs := range st.GetContainers() {
		for _, c := range t.GetContainers() {
			if c.GetName() != cs.GetName() {
				continue
			}
			if lifecycle.ContainerForward(c.GetLastStatus(), cs.GetLastStatus()) {
				c.LastStatus = cs.GetLastStatus()
			}
			if c.ExitCode == nil && cs.ExitCode != nil {
				c.ExitCode = proto.Int32(cs.GetExitCode())
			}
			if c.GetReason() == "" {
				c.Reason = cs.GetReason()
			}
			if cs.GetRuntimeId() != "" {
				c.RuntimeId = cs.GetRuntimeId()
			}
			if cs.GetImageDigest() != "" {
				c.ImageDigest = cs.GetImageDigest()
			}
			if cs.GetHealthStatus() != "" {
				c.HealthStatus = cs.GetHealthStatus()
			}
		}
	}
}

func setOnce[T any](dst **T, v *T) {
	if *dst == nil && v != nil {
		*dst = v
	}
}

func applyTaskUsage(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.TaskUsageCommand
	decode(buf, &cmd)
	for _, e := range cmd.GetTasks() {
		t, err := w.Task(nil, e.GetTaskId())
		if err != nil {
			return nil, err
		}
		if t == nil || t.GetHostId() != cmd.GetHostId() || t.GetLastStatus() == lifecycle.Stopped {
			continue
		}
		t = proto.Clone(t).(*orchv1.Task)
		t.Usage = e.GetUsage()
		if err := w.PutTask(t); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// applyDeleteTasks forgets tasks; only STOPPED ones, whatever the command says.
func applyDeleteTasks(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.DeleteTasksCommand
	decode(buf, &cmd)
	n := 0
	for _, id := range cmd.GetTaskIds() {
		t, err := w.Task(nil, id)
		if err != nil {
			return nil, err
		}
		if t == nil || t.GetLastStatus() != lifecycle.Stopped || t.GetEniHeld() { // a held address outlives retention
			continue
		}
		if err := w.DeleteTask(t); err != nil {
			return nil, err
		}
		n++
	}
	return n, nil
}
