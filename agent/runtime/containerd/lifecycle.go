package containerd

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"orch/agent/runtime"
)

// unknownExit is the exit code reported when the process's status was lost (its task was
// deleted, for instance by a host reboot), as containerd's UnknownExitStatus.
const unknownExit = 255

// waitRetry is the pause before Wait asks containerd again after a failed wait (containerd
// restarting); the container keeps running meanwhile.
const waitRetry = time.Second

// load returns the container and its task. A missing container is runtime.ErrNotFound; a
// missing task is returned as a nil Task without error.
func (r *Runtime) load(ctx context.Context, id string) (client.Container, client.Task, error) {
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, nil, notFound(id, err)
	}
	t, err := c.Task(ctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return c, nil, nil
		}
		return nil, nil, fmt.Errorf("container %s: load task: %w", id, err)
	}
	return c, t, nil
}

// task returns the container's task: the one Create made if it has not been started or
// deleted since, else loaded from containerd (nil if it has none).
func (r *Runtime) task(ctx context.Context, id string) (client.Task, error) {
	if t, ok := r.created.Load(id); ok {
		return t.(client.Task), nil
	}
	_, t, err := r.load(ctx, id)
	return t, err
}

// Start starts the task created by Create and returns its pid.
func (r *Runtime) Start(ctx context.Context, id string) (uint32, error) {
	ctx = r.ctx(ctx)
	t, err := r.task(ctx, id)
	r.created.Delete(id)
	if err != nil {
		return 0, err
	}
	if t == nil {
		return 0, fmt.Errorf("container %s: no task (its process already ended, or creation was interrupted)", id)
	}
	if err := t.Start(ctx); err != nil {
		return 0, fmt.Errorf("container %s: start: %w", id, err)
	}
	return t.Pid(), nil
}

// Wait returns a channel that receives the exit status once the process exits, then is
// closed. It needs no IO attachment, so it works for containers created by an earlier agent
// process. If ctx ends or the Runtime is closed first, the channel is closed without a value.
// A container whose task is gone reports exit code 255 at once.
func (r *Runtime) Wait(ctx context.Context, id string) (<-chan runtime.ExitStatus, error) {
	ctx = r.ctx(ctx)
	t, err := r.task(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make(chan runtime.ExitStatus, 1)
	if t == nil {
		out <- runtime.ExitStatus{Code: unknownExit, At: time.Now()}
		close(out)
		return out, nil
	}
	go func() {
		defer close(out)
		for {
			waitC, err := t.Wait(ctx)
			if err != nil {
				return
			}
			es := <-waitC
			err = es.Error()
			if err == nil {
				out <- runtime.ExitStatus{
					Code:      int32(es.ExitCode()),
					OOMKilled: r.oomKilled(ctx, t),
					At:        es.ExitTime(),
				}
				return
			}
			if ctx.Err() != nil {
				return
			}
			if errdefs.IsNotFound(err) {
				out <- runtime.ExitStatus{Code: unknownExit, At: time.Now()}
				return
			}
			// containerd is restarting or the connection broke: the task lives on in its
			// shim, so ask again (unless this Runtime was closed).
			select {
			case <-ctx.Done():
				return
			case <-r.closed:
				return
			case <-time.After(waitRetry):
			}
		}
	}()
	return out, nil
}

// oomKilled reports whether the kernel OOM-killed a process in the task's cgroup. The cgroup
// lives until the task is deleted, so this works after the exit.
func (r *Runtime) oomKilled(ctx context.Context, t client.Task) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	m, err := t.Metrics(ctx)
	if err != nil {
		return false
	}
	s, err := decodeMetrics(m)
	return err == nil && s.OOMKills > 0
}

// Stop sends the image's stop signal (SIGTERM by default), waits up to timeout, then sends
// SIGKILL and waits for the exit. A container that is gone or not running is already stopped.
func (r *Runtime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	ctx = r.ctx(ctx)
	c, t, err := r.load(ctx, id)
	if errors.Is(err, runtime.ErrNotFound) || (err == nil && t == nil) {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := t.Status(ctx)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("container %s: status: %w", id, err)
	}
	if st.Status == client.Stopped {
		return nil
	}
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	waitC, err := t.Wait(waitCtx)
	if err != nil {
		return fmt.Errorf("container %s: wait: %w", id, err)
	}
	sig := syscall.SIGKILL // a created, never started process has no handlers to run
	if st.Status != client.Created {
		if sig, err = client.GetStopSignal(ctx, c, syscall.SIGTERM); err != nil {
			sig = syscall.SIGTERM
		}
	}
	if err := kill(ctx, t, sig); err != nil {
		return fmt.Errorf("container %s: signal %v: %w", id, sig, err)
	}
	if sig != syscall.SIGKILL {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		select {
		case es := <-waitC:
			return waitErr(id, es)
		case <-ctx.Done():
			return fmt.Errorf("container %s: stop: %w", id, ctx.Err())
		case <-timer.C:
		}
		if err := kill(ctx, t, syscall.SIGKILL); err != nil {
			return fmt.Errorf("container %s: SIGKILL after %v: %w", id, timeout, err)
		}
	}
	select {
	case es := <-waitC:
		return waitErr(id, es)
	case <-ctx.Done():
		return fmt.Errorf("container %s: stop: %w", id, ctx.Err())
	}
}

// kill signals the task's init process; a process that already exited is no error.
func kill(ctx context.Context, t client.Task, sig syscall.Signal) error {
	err := t.Kill(ctx, sig)
	if err == nil || errdefs.IsNotFound(err) || errdefs.IsFailedPrecondition(err) {
		return nil
	}
	return err
}

func waitErr(id string, es client.ExitStatus) error {
	if err := es.Error(); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("container %s: wait: %w", id, err)
	}
	return nil
}

// Delete kills the task if it still runs, deletes it, then the container and its snapshot.
// Anything already gone is skipped.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	ctx = r.ctx(ctx)
	r.created.Delete(id)
	c, t, err := r.load(ctx, id)
	if errors.Is(err, runtime.ErrNotFound) {
		// A snapshot can outlive its container if an earlier Create was interrupted.
		return r.removeSnapshot(ctx, id)
	}
	if err != nil {
		return err
	}
	if t != nil {
		if _, err := t.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("container %s: delete task: %w", id, err)
		}
	}
	if err := c.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("container %s: delete: %w", id, err)
	}
	return nil
}

func (r *Runtime) removeSnapshot(ctx context.Context, id string) error {
	err := r.client.SnapshotService(snapshotter).Remove(ctx, id)
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("container %s: remove snapshot: %w", id, err)
	}
	return nil
}

// List returns every container in the namespace with its task's state.
func (r *Runtime) List(ctx context.Context) ([]runtime.ContainerInfo, error) {
	ctx = r.ctx(ctx)
	cs, err := r.client.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]runtime.ContainerInfo, 0, len(cs))
	for _, c := range cs {
		info, err := r.describe(ctx, c)
		if errdefs.IsNotFound(err) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

func (r *Runtime) describe(ctx context.Context, c client.Container) (runtime.ContainerInfo, error) {
	rec, err := c.Info(ctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return runtime.ContainerInfo{}, fmt.Errorf("container %s: %w", c.ID(), err)
	}
	info := runtime.ContainerInfo{ID: rec.ID, Labels: rec.Labels, Image: rec.Image, State: runtime.StateUnknown}
	t, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		// The process is gone and so is its status (deleted task, host reboot).
		info.State = runtime.StateStopped
		info.Exit = &runtime.ExitStatus{Code: unknownExit}
		return info, nil
	}
	if err != nil {
		return runtime.ContainerInfo{}, fmt.Errorf("container %s: load task: %w", c.ID(), err)
	}
	info.Pid = t.Pid()
	st, err := t.Status(ctx)
	if errdefs.IsNotFound(err) {
		info.State = runtime.StateStopped
		info.Exit = &runtime.ExitStatus{Code: unknownExit}
		return info, nil
	}
	if err != nil {
		return runtime.ContainerInfo{}, fmt.Errorf("container %s: task status: %w", c.ID(), err)
	}
	switch st.Status {
	case client.Created:
		info.State = runtime.StateCreated
	case client.Running, client.Paused, client.Pausing:
		info.State = runtime.StateRunning
	case client.Stopped:
		info.State = runtime.StateStopped
		info.Exit = &runtime.ExitStatus{
			Code:      int32(st.ExitStatus),
			OOMKilled: r.oomKilled(ctx, t),
			At:        st.ExitTime,
		}
	}
	return info, nil
}

// Stats samples the task's cgroup.
func (r *Runtime) Stats(ctx context.Context, id string) (runtime.Stats, error) {
	ctx = r.ctx(ctx)
	_, t, err := r.load(ctx, id)
	if err != nil {
		return runtime.Stats{}, err
	}
	if t == nil {
		return runtime.Stats{}, fmt.Errorf("container %s: no task: %w", id, runtime.ErrNotFound)
	}
	m, err := t.Metrics(ctx)
	if err != nil {
		return runtime.Stats{}, notFound(id, fmt.Errorf("metrics: %w", err))
	}
	s, err := decodeMetrics(m)
	if err != nil {
		return runtime.Stats{}, fmt.Errorf("container %s: %w", id, err)
	}
	return s, nil
}
