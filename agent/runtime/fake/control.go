package fake

import (
	"context"
	"fmt"
	"slices"

	"orch/agent/runtime"
)

// This file is the test's side of the fake: ending processes, setting up state as an earlier
// agent left it, and reading what happened.

// Exit ends the running process of container id with code.
func (r *Runtime) Exit(id string, code int32) error {
	return r.ExitWith(id, runtime.ExitStatus{Code: code})
}

// ExitWith ends the running process of container id with st (for example OOMKilled); a zero
// st.At is set to the clock's time.
func (r *Runtime) ExitWith(id string, st runtime.ExitStatus) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.containers[id]
	if c == nil {
		return notFound(id)
	}
	if c.state != runtime.StateRunning {
		return fmt.Errorf("container %s: exit: the container is %s, not RUNNING", id, c.state)
	}
	r.exitLocked(c, st)
	return nil
}

// SetStats sets the usage numbers Stats returns for container id.
func (r *Runtime) SetStats(id string, s runtime.Stats) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.containers[id]
	if c == nil {
		return notFound(id)
	}
	c.stats = s
	return nil
}

// AddImage makes ref present, as if pulled earlier: Pull reports Pulled false for it.
func (r *Runtime) AddImage(ref string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.images[ref]; !ok {
		r.images[ref] = digestOf(ref)
	}
}

// Seed puts a container in place as an earlier agent process left it, in state CREATED,
// RUNNING or STOPPED (exit nil means the status was lost: 255), with the behaviour of the
// matching On rules but without an auto-exit. Its image becomes present. It is not logged.
func (r *Runtime) Seed(spec runtime.ContainerSpec, state runtime.State, exit *runtime.ExitStatus) error {
	if spec.ID == "" || spec.Def == nil {
		return fmt.Errorf("seed container %q: id and definition are required", spec.ID)
	}
	switch state {
	case runtime.StateCreated, runtime.StateRunning, runtime.StateStopped:
	default:
		return fmt.Errorf("seed container %s: state %q cannot be seeded", spec.ID, state)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.containers[spec.ID]; ok {
		return fmt.Errorf("seed container %s: %w", spec.ID, ErrExists)
	}
	if _, ok := r.images[spec.Def.GetImage()]; !ok {
		r.images[spec.Def.GetImage()] = digestOf(spec.Def.GetImage())
	}
	r.addLocked(spec, state, exit)
	return nil
}

// Forget removes container id without a trace in the call log, as a host reboot or a lost
// containerd state would; a process still running reports exit code 255 to its waiters.
func (r *Runtime) Forget(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.containers[id]
	if c == nil {
		return notFound(id)
	}
	r.exitLocked(c, runtime.ExitStatus{Code: ExitUnknown})
	delete(r.containers, id)
	r.notifyLocked()
	return nil
}

// Calls returns the call log: "create <id>", "start <id>", "stop <id>", "delete <id>", in the
// order the calls were made.
func (r *Runtime) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// ResetCalls empties the call log.
func (r *Runtime) ResetCalls() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = nil
}

// Pulls returns the refs of every successful Pull call, in order.
func (r *Runtime) Pulls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pulls)
}

// Container returns what List would say about container id.
func (r *Runtime) Container(id string) (runtime.ContainerInfo, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.containers[id]
	if c == nil {
		return runtime.ContainerInfo{}, false
	}
	return c.infoLocked(), true
}

// Spec returns the spec container id was created (or seeded) with.
func (r *Runtime) Spec(id string) (runtime.ContainerSpec, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.containers[id]
	if c == nil {
		return runtime.ContainerSpec{}, false
	}
	return c.spec, true
}

// Waiters returns the number of Wait channels of container id that are still open.
func (r *Runtime) Waiters(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.containers[id]; c != nil {
		return c.waiters
	}
	return 0
}

// Await blocks until cond returns true or ctx ends. cond is evaluated at once and after every
// change of the fake (calls, exits, waiters); it may call the Runtime's methods.
func (r *Runtime) Await(ctx context.Context, cond func() bool) error {
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// AwaitCall blocks until call (for example "stop <id>") is in the call log or ctx ends.
func (r *Runtime) AwaitCall(ctx context.Context, call string) error {
	err := r.Await(ctx, func() bool { return slices.Contains(r.Calls(), call) })
	if err != nil {
		return fmt.Errorf("waiting for call %q (log %q): %w", call, r.Calls(), err)
	}
	return nil
}

// AwaitState blocks until container id is in state or ctx ends.
func (r *Runtime) AwaitState(ctx context.Context, id string, state runtime.State) error {
	err := r.Await(ctx, func() bool {
		info, ok := r.Container(id)
		return ok && info.State == state
	})
	if err != nil {
		return fmt.Errorf("waiting for container %s to be %s: %w", id, state, err)
	}
	return nil
}
