package taskrunner_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"orch/agent/runtime"
	"orch/agent/runtime/fake"
	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
)

// TestAdoptRunningTask restarts the agent the way orch-agent does: the first runner's context
// ends (tasks keep running), and a new runner gets the checkpointed status and what the
// runtime lists. It must attach to the running containers, never create or start them again,
// and report the exits that happen afterwards.
func TestAdoptRunningTask(t *testing.T) {
	rt := fake.New()
	a := assignment(def("app"), def("logger", nonEssential))
	h1 := newHarness(t, a, setup{rt: rt}).run()
	h1.waitStatus(lifecycle.Running)
	h1.shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := rt.Await(ctx, func() bool { return rt.Waiters(rid("app"))+rt.Waiters(rid("logger")) == 0 }); err != nil {
		t.Fatalf("the first runner's waits did not end with its context: %v", err)
	}
	cp := h1.last()

	rt.ResetCalls()
	h2 := newHarness(t, a, setup{rt: rt, checkpoint: cp, existing: existing(t, rt)}).run()
	if err := rt.Await(ctx, func() bool { return rt.Waiters(rid("app")) == 1 && rt.Waiters(rid("logger")) == 1 }); err != nil {
		t.Fatalf("the new runner does not wait for the adopted containers: %v", err)
	}
	if err := rt.Exit(rid("logger"), 5); err != nil {
		t.Fatal(err)
	}
	st := h2.waitContainer("logger", lifecycle.ContainerStopped)
	if code := exitCode(t, st, "logger"); code != 5 || st.GetLastStatus() != lifecycle.Running {
		t.Errorf("after the logger's exit: task %s, logger exit code %d", st.GetLastStatus(), code)
	}
	if err := rt.Exit(rid("app"), 7); err != nil {
		t.Fatal(err)
	}
	st = h2.waitStatus(lifecycle.Stopped)
	if st.GetStopCode() != lifecycle.EssentialContainerExited || exitCode(t, st, "app") != 7 {
		t.Errorf("stop code %q, app exit code %d; want EssentialContainerExited, 7", st.GetStopCode(), exitCode(t, st, "app"))
	}
	if seq := h2.sequence(); seq[0] != lifecycle.Running {
		t.Errorf("the adopting runner reported %v", seq)
	}
	calls := rt.Calls()
	if n := len(callsWith(calls, "create ")) + len(callsWith(calls, "start ")); n > 0 {
		t.Errorf("the adopting runner created or started containers: %q", calls)
	}
	if want := []string{"delete " + rid("app"), "delete " + rid("logger")}; !slices.Equal(callsWith(calls, "delete "), want) {
		t.Errorf("deletes %q, want %q", callsWith(calls, "delete "), want)
	}
	if st.StartedAt == nil || !st.StartedAt.AsTime().Equal(cp.StartedAt.AsTime()) {
		t.Errorf("startedAt changed on adoption: %v, checkpoint %v", st.StartedAt, cp.StartedAt)
	}
}

func TestAdopt(t *testing.T) {
	app, logger := def("app"), def("logger", nonEssential)
	running := map[string]string{"app": lifecycle.ContainerRunning, "logger": lifecycle.ContainerRunning}
	type seed struct {
		d     *orchv1.ContainerDefinition
		state runtime.State
		exit  *runtime.ExitStatus
	}
	tests := []struct {
		name       string
		checkpoint *orchv1.TaskStatus
		seeds      []seed
		wantStop   bool
		until      func(st *orchv1.TaskStatus) bool // when the task keeps running: what to wait for
		check      func(t *testing.T, st *orchv1.TaskStatus)
		wantCalls  []string // creates and starts
	}{
		{
			name:       "essential exited while the agent was away",
			checkpoint: checkpoint(lifecycle.Running, running),
			seeds:      []seed{{app, runtime.StateStopped, &runtime.ExitStatus{Code: 2}}, {logger, runtime.StateRunning, nil}},
			wantStop:   true,
			check: func(t *testing.T, st *orchv1.TaskStatus) {
				if code := exitCode(t, st, "app"); code != 2 {
					t.Errorf("app exit code %d, want 2", code)
				}
				if code := exitCode(t, st, "logger"); code != fake.ExitTerm {
					t.Errorf("logger exit code %d, want 143", code)
				}
			},
		},
		{
			name:       "essential container lost",
			checkpoint: checkpoint(lifecycle.Running, running),
			seeds:      []seed{{logger, runtime.StateRunning, nil}},
			wantStop:   true,
			check: func(t *testing.T, st *orchv1.TaskStatus) {
				c := containerIn(st, "app")
				if c.GetLastStatus() != lifecycle.ContainerStopped || !strings.Contains(c.GetReason(), "lost") {
					t.Errorf("app = %v, want STOPPED as lost", c)
				}
			},
		},
		{
			name:       "non-essential container lost",
			checkpoint: checkpoint(lifecycle.Running, running),
			seeds:      []seed{{app, runtime.StateRunning, nil}},
			until: func(st *orchv1.TaskStatus) bool {
				return containerIn(st, "logger").GetLastStatus() == lifecycle.ContainerStopped
			},
			check: func(t *testing.T, st *orchv1.TaskStatus) {
				c := containerIn(st, "logger")
				if c.GetLastStatus() != lifecycle.ContainerStopped || !strings.Contains(c.GetReason(), "lost") {
					t.Errorf("logger = %v, want STOPPED as lost", c)
				}
			},
		},
		{
			name: "created but never started",
			checkpoint: checkpoint(lifecycle.Pending,
				map[string]string{"app": lifecycle.ContainerPending, "logger": lifecycle.ContainerPending}),
			seeds:     []seed{{app, runtime.StateCreated, nil}},
			until:     func(st *orchv1.TaskStatus) bool { return st.GetLastStatus() == lifecycle.Running },
			wantCalls: []string{"start " + rid("app"), "create " + rid("logger"), "start " + rid("logger")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := fake.New()
			for _, s := range tt.seeds {
				if err := rt.Seed(seedSpec(s.d), s.state, s.exit); err != nil {
					t.Fatal(err)
				}
			}
			h := newHarness(t, assignment(app, logger), setup{rt: rt, checkpoint: tt.checkpoint, existing: existing(t, rt)}).run()
			var st *orchv1.TaskStatus
			if tt.wantStop {
				st = h.waitStatus(lifecycle.Stopped)
				if st.GetStopCode() != lifecycle.EssentialContainerExited {
					t.Errorf("stop code %q, want EssentialContainerExited", st.GetStopCode())
				}
			} else {
				st = h.waitFor("the adoption done", tt.until)
				time.Sleep(20 * time.Millisecond)
				if got := h.runner.Status().GetLastStatus(); got != lifecycle.Running {
					t.Errorf("task %s, want it to keep running", got)
				}
			}
			if tt.check != nil {
				tt.check(t, st)
			}
			calls := rt.Calls()
			if got := slices.DeleteFunc(slices.Clone(calls), func(c string) bool {
				return !strings.HasPrefix(c, "create ") && !strings.HasPrefix(c, "start ")
			}); !slices.Equal(got, tt.wantCalls) {
				t.Errorf("creates and starts %q, want %q", got, tt.wantCalls)
			}
		})
	}
}

// TestAdoptTaskWithStopRequest restarts the agent for a task whose desired status is already
// STOPPED (the stop arrived while the agent was down, or it restarted mid-stop). The running
// container must be stopped promptly and its real exit code (143) recorded.
//
// Bug: Run goes straight to stop() without attaching to the existing containers (no Wait), so
// awaitExit never sees the exit and waits its full 5 s per container, then records a made-up
// 137. See the report for the proposed fix.
func TestAdoptTaskWithStopRequest(t *testing.T) {
	rt := fake.New()
	a := assignment(def("app"))
	if err := rt.Seed(seedSpec(a.TaskDefinition.ContainerDefinitions[0]), runtime.StateRunning, nil); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, stopRequested(a), setup{
		rt: rt, checkpoint: checkpoint(lifecycle.Running, map[string]string{"app": lifecycle.ContainerRunning}),
		existing: existing(t, rt),
	}).run()
	h.awaitCall("stop " + rid("app"))
	st, ok := h.await(time.Second, func(st *orchv1.TaskStatus) bool { return st.GetLastStatus() == lifecycle.Stopped })
	if !ok {
		h.cancel() // ends awaitExit's 5 s wait
		t.Fatalf("adopted task with desiredStatus STOPPED not stopped within 1s of its container's exit (statuses %v)", h.sequence())
	}
	if code := exitCode(t, st, "app"); code != fake.ExitTerm {
		t.Errorf("app exit code %d, want 143", code)
	}
}

// TestAdoptStoppingTask restarts the agent while a task that failed to start was being
// stopped (checkpoint DEACTIVATING, stopCode TaskFailedToStart, desiredStatus still RUNNING:
// the scheduler has not reacted yet). The runner must finish stopping it, not start it.
//
// Bug: Run only looks at the desired status, so it runs start() again: the containers are
// created and started, and the task is stuck at DEACTIVATING with them running.
func TestAdoptStoppingTask(t *testing.T) {
	cp := checkpoint(lifecycle.Deactivating, map[string]string{"app": lifecycle.ContainerPending})
	cp.StartedAt = nil
	cp.StopCode, cp.StoppedReason = lifecycle.TaskFailedToStart, "CannotPullContainerError: registry.local/app:1: timeout"
	h := newHarness(t, assignment(def("app")), setup{checkpoint: cp}).run()
	st, ok := h.await(time.Second, func(st *orchv1.TaskStatus) bool { return st.GetLastStatus() == lifecycle.Stopped })
	if calls := h.rt.Calls(); len(callsWith(calls, "create ")) > 0 || len(callsWith(calls, "start ")) > 0 {
		t.Errorf("a task that was stopping had its containers created and started: %q", calls)
	}
	if !ok {
		t.Fatalf("task not STOPPED (statuses %v)", h.sequence())
	}
	if st.GetStopCode() != lifecycle.TaskFailedToStart {
		t.Errorf("stop code %q, want the checkpointed TaskFailedToStart", st.GetStopCode())
	}
}

// TestShutdown cancels Run's context, as the agent does when it exits: the runner must return
// at once and leave the task as it is (no stop, no delete, no ENI teardown, no task dir
// removal, no stop status) so that the next agent adopts it.
func TestShutdown(t *testing.T) {
	tests := []struct {
		name    string
		defs    []*orchv1.ContainerDefinition
		prepare func(rt *fake.Runtime) (entered chan struct{})
		await   func(h *harness, entered chan struct{})
		running []string // containers that must still run afterwards
	}{
		{
			name:    "while running",
			defs:    []*orchv1.ContainerDefinition{def("app"), def("logger", nonEssential)},
			await:   func(h *harness, _ chan struct{}) { h.waitStatus(lifecycle.Running) },
			running: []string{"app", "logger"},
		},
		{
			name: "while pulling",
			defs: []*orchv1.ContainerDefinition{def("app")},
			prepare: func(rt *fake.Runtime) chan struct{} {
				entered := make(chan struct{})
				rt.PullFn = func(ctx context.Context, _ string) error {
					close(entered)
					<-ctx.Done()
					return ctx.Err()
				}
				return entered
			},
			await: func(h *harness, entered chan struct{}) {
				select {
				case <-entered:
				case <-time.After(waitTimeout):
					h.t.Fatal("the runner never pulled")
				}
			},
		},
		{
			name: "while waiting for a dependency",
			defs: []*orchv1.ContainerDefinition{def("init", nonEssential), def("app", dependsOn("init", "SUCCESS"))},
			await: func(h *harness, _ chan struct{}) {
				h.waitContainer("init", lifecycle.ContainerRunning)
				time.Sleep(10 * time.Millisecond)
			},
			running: []string{"init"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, assignment(tt.defs...), setup{})
			var entered chan struct{}
			if tt.prepare != nil {
				entered = tt.prepare(h.rt)
			}
			h.run()
			tt.await(h, entered)
			h.shutdown()
			checkLeftAlone(t, h, tt.running)
			for _, s := range h.sequence() {
				if lifecycle.Rank(s) >= lifecycle.Rank(lifecycle.Deactivating) {
					t.Errorf("reported %s on shutdown (statuses %v)", s, h.sequence())
				}
			}
		})
	}
}

// TestShutdownDuringStopSequence cancels Run's context while a container ignores SIGTERM
// during the stop sequence. The container still runs, so the task must not be reported
// STOPPED nor deprovisioned; the next agent finishes the stop.
//
// Bug: stop() carries on after ctx ends: awaitExit returns, Delete fails on the dead context,
// but the ENI is torn down, the task dir (bind-mounted into the running container) removed,
// and STOPPED reported, which the agent checkpoints, so no later agent adopts the task and
// its still-running container is never cleaned up.
func TestShutdownDuringStopSequence(t *testing.T) {
	rt := fake.New(fake.WithClock(fake.NewManualClock(time.Unix(1_700_000_000, 0))))
	rt.On(fake.Match{Name: "app"}, fake.Behavior{IgnoreTerm: true})
	a := assignment(def("app"))
	h := newHarness(t, a, setup{rt: rt}).run()
	h.waitStatus(lifecycle.Running)
	h.runner.Update(stopRequested(a))
	h.awaitCall("stop " + rid("app"))
	h.shutdown()
	checkLeftAlone(t, h, []string{"app"})
	if h.reported(lifecycle.Deprovisioning) || h.reported(lifecycle.Stopped) {
		t.Errorf("reported %v although app still runs", h.sequence())
	}
}

// checkLeftAlone asserts that a runner whose context ended deleted nothing and tore nothing
// down, and that the named containers still run.
func checkLeftAlone(t *testing.T, h *harness, running []string) {
	t.Helper()
	calls := h.rt.Calls()
	if d := callsWith(calls, "delete "); len(d) > 0 {
		t.Errorf("containers deleted on shutdown: %q", d)
	}
	for _, name := range running {
		if info, ok := h.rt.Container(rid(name)); !ok || info.State != runtime.StateRunning {
			t.Errorf("container %s not left running: %+v", name, info)
		}
	}
	for _, c := range h.net.Calls() {
		if strings.HasPrefix(c, "teardown") {
			t.Errorf("ENI torn down on shutdown: %q", h.net.Calls())
		}
	}
	if !dirExists(h.dir) && h.reported(lifecycle.Pending) {
		t.Error("task dir removed on shutdown")
	}
}

// TestShutdownStopsNothing checks the stop calls separately from checkLeftAlone, which the
// stop-sequence test cannot use for them.
func TestShutdownStopsNothing(t *testing.T) {
	h := newHarness(t, assignment(def("app")), setup{}).run()
	h.waitStatus(lifecycle.Running)
	h.shutdown()
	if s := callsWith(h.rt.Calls(), "stop "); len(s) > 0 {
		t.Errorf("containers stopped on shutdown: %q", s)
	}
}

// TestUpdateDuringStopSequence calls Update, as the agent does for every assignment it
// receives, while the runner deprovisions the task (the scheduler sets desiredStatus STOPPED
// in reaction to the essential exit that started the stop). Run with -race.
//
// Bug (data race): stop() and eniSpec() read r.a without r.mu, while Update writes it under
// r.mu from the agent's goroutine. Fix: read the assignment through a locked accessor.
func TestUpdateDuringStopSequence(t *testing.T) {
	rt := fake.New()
	deprovisioning := make(chan struct{})
	rt.DeleteFn = func(context.Context, string) error {
		// Let the test's Update land while the runner is in the delete loop, with no
		// synchronisation in between (as with the agent's session goroutine).
		<-deprovisioning
		time.Sleep(20 * time.Millisecond)
		return nil
	}
	a := assignment(def("app"))
	h := newHarness(t, a, setup{rt: rt}).run()
	h.waitStatus(lifecycle.Running)
	if err := rt.Exit(rid("app"), 1); err != nil {
		t.Fatal(err)
	}
	h.waitStatus(lifecycle.Deprovisioning)
	close(deprovisioning)
	h.runner.Update(stopRequested(a))
	st := h.waitStatus(lifecycle.Stopped)
	if st.GetStopCode() != lifecycle.EssentialContainerExited {
		t.Errorf("stop code %q", st.GetStopCode())
	}
}
