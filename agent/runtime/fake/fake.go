// Package fake is a hand-written, in-memory runtime.Runtime for unit tests and the node
// simulator (STYLE.md pattern 10: no generated mocks). Its containers move through the states
// of real ones (CREATED, RUNNING, STOPPED). A started container's "process" runs until the test
// ends it (Exit, ExitWith), until its Behavior ends it (exit by itself, at once or after a
// delay), or until Stop or Delete kills it: SIGTERM gives exit code 143, or 137 when the
// process ignores SIGTERM and is killed after the stop timeout. Delays run on a Clock, which
// tests can replace with a ManualClock.
//
// Every Create, Start, Stop and Delete that is not refused is recorded in an ordered call log
// ("create <id>", "start <id>", "stop <id>", "delete <id>") for asserting order, and the XxxFn
// hooks inject errors. Seed puts containers in place as an earlier agent process would have
// left them, for adoption tests.
package fake

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"orch/agent/runtime"
)

// Exit codes of processes ended by a signal (128 + signal), and of a process whose status was
// lost, as the containerd runtime reports them.
const (
	ExitTerm    int32 = 143 // SIGTERM
	ExitKill    int32 = 137 // SIGKILL
	ExitUnknown int32 = 255 // the process vanished with its status
)

// ErrExists is returned by Create for an id that is already in use.
var ErrExists = errors.New("already exists")

var _ runtime.Runtime = (*Runtime)(nil)

// Runtime is an in-memory runtime.Runtime. The zero value is not usable; call New.
type Runtime struct {
	// Hooks, called (when set) before the fake's own behaviour. A non-nil error is returned
	// as is and the call has no effect and is not logged. Set them before the Runtime is used.
	PullFn   func(ctx context.Context, ref string) error
	CreateFn func(ctx context.Context, spec runtime.ContainerSpec) error
	StartFn  func(ctx context.Context, id string) error
	StopFn   func(ctx context.Context, id string, timeout time.Duration) error
	DeleteFn func(ctx context.Context, id string) error

	clock Clock

	mu         sync.Mutex
	containers map[string]*container
	images     map[string]string // ref -> digest
	rules      []rule
	calls      []string
	pulls      []string
	nextPid    uint32
	changed    chan struct{} // closed and replaced on every change (see Await)
}

type container struct {
	spec    runtime.ContainerSpec
	beh     Behavior
	state   runtime.State
	pid     uint32
	exit    *runtime.ExitStatus
	stats   runtime.Stats
	done    chan struct{} // closed when the process has exited (or was never started and is gone)
	waiters int
}

// Opt configures a Runtime.
type Opt func(*Runtime)

// WithClock makes the Runtime's delays (auto-exits, SIGTERM handling, stop timeouts) run on c.
func WithClock(c Clock) Opt { return func(r *Runtime) { r.clock = c } }

// New returns an empty Runtime: no images, no containers.
func New(opts ...Opt) *Runtime {
	r := &Runtime{
		containers: map[string]*container{},
		images:     map[string]string{},
		nextPid:    1000,
		changed:    make(chan struct{}),
	}
	for _, o := range opts {
		o(r)
	}
	if r.clock == nil {
		r.clock = realClock{}
	}
	return r
}

// Behavior is how the process of a container acts. The zero Behavior runs until it is told
// to exit and exits at once on SIGTERM.
type Behavior struct {
	// AutoExit makes the process exit by itself ExitAfter after Start (0: during Start), with
	// ExitCode and OOMKilled.
	AutoExit  bool
	ExitAfter time.Duration
	ExitCode  int32
	OOMKilled bool
	// IgnoreTerm makes the process ignore SIGTERM: Stop kills it after its timeout (137).
	IgnoreTerm bool
	// TermDelay is how long the process takes to exit after SIGTERM (143); unless it is
	// shorter than Stop's timeout, the process is killed at the timeout (137).
	TermDelay time.Duration
	// Stats are the container's usage numbers until SetStats changes them.
	Stats runtime.Stats
}

// Match selects containers by their spec; empty fields match anything.
type Match struct {
	ID    string // runtime id
	Name  string // container definition name
	Image string
	// Command is the effective command: ContainerSpec.Command, else the definition's.
	Command []string
}

type rule struct {
	m Match
	b Behavior
}

func (m Match) matches(s runtime.ContainerSpec) bool {
	cmd := s.Command
	if cmd == nil {
		cmd = s.Def.GetCommand()
	}
	return (m.ID == "" || m.ID == s.ID) &&
		(m.Name == "" || m.Name == s.Def.GetName()) &&
		(m.Image == "" || m.Image == s.Def.GetImage()) &&
		(m.Command == nil || slices.Equal(m.Command, cmd))
}

// On sets the behaviour of containers created (or seeded) from now on that match m. When
// several rules match, the last one set wins.
func (r *Runtime) On(m Match, b Behavior) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rules = append(r.rules, rule{m: m, b: b})
}

func (r *Runtime) behaviorLocked(s runtime.ContainerSpec) Behavior {
	for i := len(r.rules) - 1; i >= 0; i-- {
		if r.rules[i].m.matches(s) {
			return r.rules[i].b
		}
	}
	return Behavior{}
}

func notFound(id string) error { return fmt.Errorf("container %s: %w", id, runtime.ErrNotFound) }

// notifyLocked wakes everything blocked in Await.
func (r *Runtime) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Runtime) logLocked(op, id string) {
	r.calls = append(r.calls, op+" "+id)
	r.notifyLocked()
}

// exitLocked ends c's process (if it has not ended) with st.
func (r *Runtime) exitLocked(c *container, st runtime.ExitStatus) {
	if c.state == runtime.StateStopped {
		return
	}
	if st.At.IsZero() {
		st.At = r.clock.Now()
	}
	c.state = runtime.StateStopped
	c.exit = &st
	if st.OOMKilled {
		c.stats.OOMKills++
	}
	close(c.done)
	r.notifyLocked()
}

func digestOf(ref string) string { return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(ref))) }

// Pull implements runtime.Runtime: the image becomes present; Pulled is false when it already
// was.
func (r *Runtime) Pull(ctx context.Context, ref string) (runtime.PullResult, error) {
	if err := ctx.Err(); err != nil {
		return runtime.PullResult{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	if r.PullFn != nil {
		if err := r.PullFn(ctx, ref); err != nil {
			return runtime.PullResult{}, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pulls = append(r.pulls, ref)
	if d, ok := r.images[ref]; ok {
		return runtime.PullResult{Digest: d}, nil
	}
	r.images[ref] = digestOf(ref)
	r.notifyLocked()
	return runtime.PullResult{Digest: r.images[ref], Pulled: true}, nil
}

// Create implements runtime.Runtime. As with containerd, the image must have been pulled.
func (r *Runtime) Create(ctx context.Context, spec runtime.ContainerSpec) error {
	if spec.ID == "" {
		return errors.New("create container: empty id")
	}
	if spec.Def == nil {
		return fmt.Errorf("container %s: no container definition", spec.ID)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("container %s: create: %w", spec.ID, err)
	}
	if r.CreateFn != nil {
		if err := r.CreateFn(ctx, spec); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.containers[spec.ID]; ok {
		return fmt.Errorf("container %s: %w", spec.ID, ErrExists)
	}
	if _, ok := r.images[spec.Def.GetImage()]; !ok {
		return fmt.Errorf("container %s: image %s (not pulled?): %w", spec.ID, spec.Def.GetImage(), runtime.ErrNotFound)
	}
	r.addLocked(spec, runtime.StateCreated, nil)
	r.logLocked("create", spec.ID)
	return nil
}

func (r *Runtime) addLocked(spec runtime.ContainerSpec, state runtime.State, exit *runtime.ExitStatus) *container {
	spec.Labels = maps.Clone(spec.Labels)
	beh := r.behaviorLocked(spec)
	c := &container{spec: spec, beh: beh, state: state, stats: beh.Stats, done: make(chan struct{})}
	switch state {
	case runtime.StateRunning:
		r.nextPid++
		c.pid = r.nextPid
	case runtime.StateStopped:
		st := runtime.ExitStatus{Code: ExitUnknown}
		if exit != nil {
			st = *exit
		}
		c.exit = &st
		close(c.done)
	}
	r.containers[spec.ID] = c
	r.notifyLocked()
	return c
}

// Start implements runtime.Runtime.
func (r *Runtime) Start(ctx context.Context, id string) (uint32, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("container %s: start: %w", id, err)
	}
	if r.StartFn != nil {
		if err := r.StartFn(ctx, id); err != nil {
			return 0, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.containers[id]
	if c == nil {
		return 0, notFound(id)
	}
	if c.state != runtime.StateCreated {
		return 0, fmt.Errorf("container %s: start: the container is %s, not CREATED", id, c.state)
	}
	r.nextPid++
	c.pid = r.nextPid
	c.state = runtime.StateRunning
	r.logLocked("start", id)
	if b := c.beh; b.AutoExit {
		st := runtime.ExitStatus{Code: b.ExitCode, OOMKilled: b.OOMKilled}
		if b.ExitAfter <= 0 {
			r.exitLocked(c, st)
		} else {
			r.exitAfter(c, r.clock.After(b.ExitAfter), st)
		}
	}
	return c.pid, nil
}

// exitAfter ends c's process with st when ch fires, unless it has ended by then.
func (r *Runtime) exitAfter(c *container, ch <-chan time.Time, st runtime.ExitStatus) {
	go func() {
		select {
		case <-ch:
			r.mu.Lock()
			r.exitLocked(c, st)
			r.mu.Unlock()
		case <-c.done:
		}
	}()
}

// Wait implements runtime.Runtime: the channel receives the exit status once the process has
// exited (at once if it already has), then is closed. It is closed without a value if ctx ends
// first. It works for seeded containers too (adoption).
func (r *Runtime) Wait(ctx context.Context, id string) (<-chan runtime.ExitStatus, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("container %s: wait: %w", id, err)
	}
	r.mu.Lock()
	c := r.containers[id]
	if c == nil {
		r.mu.Unlock()
		return nil, notFound(id)
	}
	c.waiters++
	r.notifyLocked()
	r.mu.Unlock()
	out := make(chan runtime.ExitStatus, 1)
	go func() {
		defer close(out)
		var st *runtime.ExitStatus
		select {
		case <-c.done:
		case <-ctx.Done():
		}
		r.mu.Lock()
		c.waiters--
		if ctx.Err() == nil {
			st = c.exit
		}
		r.notifyLocked()
		r.mu.Unlock()
		if st != nil {
			out <- *st
		}
	}()
	return out, nil
}

// Stop implements runtime.Runtime with SIGTERM semantics: the process exits with 143 (after
// its TermDelay), or, if it ignores SIGTERM or is too slow, is killed with 137 after timeout.
// A created, never started container is killed at once (137). Stop returns once the process
// has exited, or with an error when ctx ends first (the process keeps running).
func (r *Runtime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("container %s: stop: %w", id, err)
	}
	if r.StopFn != nil {
		if err := r.StopFn(ctx, id, timeout); err != nil {
			return err
		}
	}
	r.mu.Lock()
	c := r.containers[id]
	switch {
	case c == nil || c.state == runtime.StateStopped:
		r.logLocked("stop", id)
		r.mu.Unlock()
		return nil
	case c.state == runtime.StateCreated:
		r.logLocked("stop", id)
		r.exitLocked(c, runtime.ExitStatus{Code: ExitKill})
		r.mu.Unlock()
		return nil
	case !c.beh.IgnoreTerm && c.beh.TermDelay <= 0:
		r.logLocked("stop", id)
		r.exitLocked(c, runtime.ExitStatus{Code: ExitTerm})
		r.mu.Unlock()
		return nil
	}
	// The timers exist before the call is logged: a test that sees "stop <id>" in the log
	// can advance a ManualClock and know the timers fire.
	kill := r.clock.After(timeout)
	var term <-chan time.Time
	if !c.beh.IgnoreTerm && c.beh.TermDelay < timeout {
		term = r.clock.After(c.beh.TermDelay)
	}
	r.logLocked("stop", id)
	r.mu.Unlock()
	var code int32
	select {
	case <-c.done:
		return nil
	case <-term:
		code = ExitTerm
	case <-kill:
		code = ExitKill
	case <-ctx.Done():
		return fmt.Errorf("container %s: stop: %w", id, ctx.Err())
	}
	r.mu.Lock()
	r.exitLocked(c, runtime.ExitStatus{Code: code})
	r.mu.Unlock()
	return nil
}

// Delete implements runtime.Runtime: a process still running is killed (137) first. Deleting
// a container that does not exist succeeds.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("container %s: delete: %w", id, err)
	}
	if r.DeleteFn != nil {
		if err := r.DeleteFn(ctx, id); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logLocked("delete", id)
	if c := r.containers[id]; c != nil {
		r.exitLocked(c, runtime.ExitStatus{Code: ExitKill})
		delete(r.containers, id)
	}
	return nil
}

// List implements runtime.Runtime, sorted by id.
func (r *Runtime) List(ctx context.Context) ([]runtime.ContainerInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]runtime.ContainerInfo, 0, len(r.containers))
	for _, c := range r.containers {
		out = append(out, c.infoLocked())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (c *container) infoLocked() runtime.ContainerInfo {
	info := runtime.ContainerInfo{
		ID: c.spec.ID, Labels: maps.Clone(c.spec.Labels), State: c.state, Pid: c.pid, Image: c.spec.Def.GetImage(),
	}
	if c.exit != nil {
		st := *c.exit
		info.Exit = &st
	}
	return info
}

// Stats implements runtime.Runtime: the numbers of the container's Behavior or of SetStats,
// with OOMKills counting OOM exits.
func (r *Runtime) Stats(ctx context.Context, id string) (runtime.Stats, error) {
	if err := ctx.Err(); err != nil {
		return runtime.Stats{}, fmt.Errorf("container %s: stats: %w", id, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.containers[id]
	if c == nil {
		return runtime.Stats{}, notFound(id)
	}
	return c.stats, nil
}
