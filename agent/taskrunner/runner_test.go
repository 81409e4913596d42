package taskrunner_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"orch/agent/eni"
	"orch/agent/runtime"
	"orch/agent/runtime/fake"
	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
)

func TestHappyPath(t *testing.T) {
	app := def("app", func(d *orchv1.ContainerDefinition) {
		d.Memory = proto.Int32(128)
		d.Environment = []*orchv1.KeyValuePair{{Name: "MODE", Value: "prod"}}
	})
	h := newHarness(t, assignment(app, def("logger", nonEssential)), setup{})
	if got := h.runner.Status().GetLastStatus(); got != lifecycle.Provisioning {
		t.Errorf("status of a new runner = %s, want PROVISIONING", got)
	}
	h.run()
	st := h.waitStatus(lifecycle.Running)

	seq := h.sequence()
	if len(seq) > 0 && seq[0] == lifecycle.Provisioning {
		seq = seq[1:]
	}
	if want := []string{lifecycle.Pending, lifecycle.Activating, lifecycle.Running}; !slices.Equal(seq, want) {
		t.Errorf("reported statuses %v, want %v", h.sequence(), want)
	}
	if st.PullStartedAt == nil || st.PullStoppedAt == nil || st.StartedAt == nil {
		t.Fatalf("RUNNING without pullStartedAt, pullStoppedAt and startedAt: %v", st)
	}
	if ps, pe, s := st.PullStartedAt.AsTime(), st.PullStoppedAt.AsTime(), st.StartedAt.AsTime(); pe.Before(ps) || s.Before(pe) {
		t.Errorf("timestamps out of order: pull %v..%v, started %v", ps, pe, s)
	}
	for _, name := range []string{"app", "logger"} {
		c := containerIn(st, name)
		if c.GetLastStatus() != lifecycle.ContainerRunning || c.GetRuntimeId() != rid(name) {
			t.Errorf("container %s = %v, want RUNNING with runtime id %s", name, c, rid(name))
		}
	}
	if st.GetStopCode() != "" || st.ExecutionStoppedAt != nil {
		t.Errorf("running task has stop fields: %v", st)
	}
	want := []string{"create " + rid("app"), "start " + rid("app"), "create " + rid("logger"), "start " + rid("logger")}
	if got := h.rt.Calls(); !slices.Equal(got, want) {
		t.Errorf("runtime calls %q, want %q", got, want)
	}
	if got, want := h.net.Calls(), []string{"bridge orch-br0 10.64.3.1/24 10.64.0.0/16", "setup orch-0123456789ab 10.64.3.7/24"}; !slices.Equal(got, want) {
		t.Errorf("network calls %q, want %q", got, want)
	}

	spec, _ := h.rt.Spec(rid("app"))
	if spec.NetNSPath != "/run/netns/orch-0123456789ab" || spec.Hostname != "ip-10-64-3-7" || spec.TaskID != taskID {
		t.Errorf("spec netns %q hostname %q task %q", spec.NetNSPath, spec.Hostname, spec.TaskID)
	}
	if spec.Labels[runtime.LabelTaskID] != taskID || spec.Labels[runtime.LabelContainer] != "app" || spec.Labels[runtime.LabelCluster] != "default" {
		t.Errorf("spec labels %v", spec.Labels)
	}
	if !slices.Contains(spec.Env, "MODE=prod") || spec.MemoryLimitBytes != 128<<20 {
		t.Errorf("spec env %q memory %d", spec.Env, spec.MemoryLimitBytes)
	}
	if !slices.Contains(spec.Mounts, runtime.Mount{Source: filepath.Join(h.dir, "hosts"), Destination: "/etc/hosts"}) {
		t.Errorf("spec mounts %v lack the task's /etc/hosts", spec.Mounts)
	}
	hosts, err := os.ReadFile(filepath.Join(h.dir, "hosts"))
	if err != nil || !strings.Contains(string(hosts), "10.64.3.7\tip-10-64-3-7") {
		t.Errorf("hosts file = %q, %v", hosts, err)
	}
	if resolv, _ := os.ReadFile(filepath.Join(h.dir, "resolv.conf")); string(resolv) != "nameserver 192.0.2.53\n" {
		t.Errorf("resolv.conf = %q", resolv)
	}
}

func TestStopRequest(t *testing.T) {
	// db is what app depends on: app must stop first, whatever the definition order.
	app := def("app", dependsOn("db", "START"))
	tests := []struct {
		name string
		defs []*orchv1.ContainerDefinition
	}{
		{"dependency listed first", []*orchv1.ContainerDefinition{def("db"), app}},
		// Bug: the runner stops in reverse definition order, not reverse dependency order.
		{"dependent listed first", []*orchv1.ContainerDefinition{app, def("db")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := assignment(tt.defs...)
			h := newHarness(t, a, setup{}).run()
			h.waitStatus(lifecycle.Running)
			if !before(h.rt.Calls(), "start "+rid("db"), "create "+rid("app")) {
				t.Errorf("app created before db started: %q", h.rt.Calls())
			}
			h.runner.Update(stopRequested(a))
			st := h.waitStatus(lifecycle.Stopped)

			want := []string{lifecycle.Pending, lifecycle.Activating, lifecycle.Running,
				lifecycle.Deactivating, lifecycle.Stopping, lifecycle.Deprovisioning, lifecycle.Stopped}
			if got := h.sequence(); !slices.Equal(got, want) {
				t.Errorf("reported statuses %v, want %v", got, want)
			}
			calls := h.rt.Calls()
			if !before(calls, "stop "+rid("app"), "stop "+rid("db")) {
				t.Errorf("db was not stopped after app, which depends on it: %q", calls)
			}
			for _, name := range []string{"app", "db"} {
				if !before(calls, "stop "+rid(name), "delete "+rid("app")) || !before(calls, "stop "+rid(name), "delete "+rid("db")) {
					t.Errorf("container %s not stopped before the deletes: %q", name, calls)
				}
				if code := exitCode(t, st, name); code != fake.ExitTerm {
					t.Errorf("container %s exit code %d, want 143", name, code)
				}
				if c := containerIn(st, name); c.GetLastStatus() != lifecycle.ContainerStopped {
					t.Errorf("container %s = %v", name, c)
				}
				if _, ok := h.rt.Container(rid(name)); ok {
					t.Errorf("container %s not deleted", name)
				}
			}
			if !slices.Contains(h.net.Calls(), "teardown orch-0123456789ab") {
				t.Errorf("ENI not torn down: %q", h.net.Calls())
			}
			if n := len(callsWith(h.net.atTeardown, "delete ")); n != 2 {
				t.Errorf("ENI torn down before the containers were deleted: runtime calls then %q", h.net.atTeardown)
			}
			if st.ExecutionStoppedAt == nil || st.ExecutionStoppedAt.AsTime().Before(st.StartedAt.AsTime()) {
				t.Errorf("executionStoppedAt = %v (startedAt %v)", st.ExecutionStoppedAt, st.StartedAt)
			}
			if st.GetStopCode() == lifecycle.EssentialContainerExited || st.GetStopCode() == lifecycle.TaskFailedToStart {
				t.Errorf("stop code %s for a requested stop", st.GetStopCode())
			}
			if dirExists(h.dir) {
				t.Error("task dir not removed")
			}
			select {
			case <-h.runner.Done():
			case <-time.After(time.Second):
				t.Error("Run did not return after STOPPED")
			}
		})
	}
}

// A container that ignores SIGTERM is killed after its stopTimeout and reports 137.
func TestStopKillsContainerIgnoringTerm(t *testing.T) {
	clock := fake.NewManualClock(time.Unix(1_700_000_000, 0))
	rt := fake.New(fake.WithClock(clock))
	rt.On(fake.Match{Name: "app"}, fake.Behavior{IgnoreTerm: true})
	a := assignment(def("app", stopTimeout(7)), def("logger", nonEssential))
	h := newHarness(t, a, setup{rt: rt}).run()
	h.waitStatus(lifecycle.Running)
	h.runner.Update(stopRequested(a))

	h.awaitCall("stop " + rid("app"))
	if _, ok := h.await(50*time.Millisecond, func(st *orchv1.TaskStatus) bool {
		return containerIn(st, "app").GetLastStatus() == lifecycle.ContainerStopped
	}); ok {
		t.Fatal("app reported stopped before its stop timeout")
	}
	clock.Advance(6 * time.Second)
	if info, _ := rt.Container(rid("app")); info.State != runtime.StateRunning {
		t.Fatalf("app killed before its 7s stop timeout: %+v", info)
	}
	clock.Advance(time.Second)
	st := h.waitStatus(lifecycle.Stopped)
	if code := exitCode(t, st, "app"); code != fake.ExitKill {
		t.Errorf("app exit code %d, want 137", code)
	}
	if code := exitCode(t, st, "logger"); code != fake.ExitTerm {
		t.Errorf("logger exit code %d, want 143", code)
	}
}

func TestContainerExits(t *testing.T) {
	const oomReason = "OutOfMemoryError: Container killed due to memory usage"
	tests := []struct {
		name      string
		container string
		exit      runtime.ExitStatus
		wantStop  bool
		reason    string
	}{
		{name: "essential exits", container: "app", exit: runtime.ExitStatus{Code: 3}, wantStop: true},
		{name: "essential exits 0", container: "app", exit: runtime.ExitStatus{Code: 0}, wantStop: true},
		{name: "essential OOM killed", container: "app", exit: runtime.ExitStatus{Code: 137, OOMKilled: true}, wantStop: true, reason: oomReason},
		{name: "non-essential exits", container: "logger", exit: runtime.ExitStatus{Code: 1}},
		{name: "non-essential OOM killed", container: "logger", exit: runtime.ExitStatus{Code: 137, OOMKilled: true}, reason: oomReason},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, assignment(def("app"), def("logger", nonEssential)), setup{}).run()
			h.waitStatus(lifecycle.Running)
			if err := h.rt.ExitWith(rid(tt.container), tt.exit); err != nil {
				t.Fatal(err)
			}
			st := h.waitContainer(tt.container, lifecycle.ContainerStopped)
			c := containerIn(st, tt.container)
			if c.ExitCode == nil || c.GetExitCode() != tt.exit.Code || c.GetReason() != tt.reason {
				t.Errorf("container %s = %v, want exit code %d reason %q", tt.container, c, tt.exit.Code, tt.reason)
			}
			other := "logger"
			if tt.container == "logger" {
				other = "app"
			}
			if !tt.wantStop {
				if st.GetLastStatus() != lifecycle.Running {
					t.Errorf("task %s after a non-essential exit", st.GetLastStatus())
				}
				time.Sleep(50 * time.Millisecond)
				if got := h.runner.Status().GetLastStatus(); got != lifecycle.Running || len(callsWith(h.rt.Calls(), "stop ")) > 0 {
					t.Errorf("non-essential exit stopped the task: %s, calls %q", got, h.rt.Calls())
				}
				if c := containerIn(h.runner.Status(), other); c.GetLastStatus() != lifecycle.ContainerRunning {
					t.Errorf("container %s = %v", other, c)
				}
				return
			}
			st = h.waitStatus(lifecycle.Stopped)
			if st.GetStopCode() != lifecycle.EssentialContainerExited || st.GetStoppedReason() != "Essential container in task exited" {
				t.Errorf("stop code %q reason %q", st.GetStopCode(), st.GetStoppedReason())
			}
			if code := exitCode(t, st, tt.container); code != tt.exit.Code {
				t.Errorf("exited container's code %d in the final status, want %d", code, tt.exit.Code)
			}
			if code := exitCode(t, st, other); code != fake.ExitTerm {
				t.Errorf("container %s exit code %d, want 143 (stopped)", other, code)
			}
			calls := h.rt.Calls()
			if !slices.Contains(calls, "stop "+rid(other)) || slices.Contains(calls, "stop "+rid(tt.container)) {
				t.Errorf("stop calls %q: want only %s stopped", callsWith(calls, "stop "), other)
			}
		})
	}
}

func TestDependsOn(t *testing.T) {
	initDef := def("init", nonEssential)
	tests := []struct {
		name       string
		condition  string
		initExit   int32
		wantReason string // empty: the task runs
	}{
		{name: "COMPLETE after success", condition: "COMPLETE", initExit: 0},
		{name: "COMPLETE after failure", condition: "COMPLETE", initExit: 1},
		{name: "SUCCESS", condition: "SUCCESS", initExit: 0},
		{name: "SUCCESS failed", condition: "SUCCESS", initExit: 1, wantReason: "dependency condition SUCCESS of container app not met: container init exited with 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, assignment(initDef, def("app", dependsOn("init", tt.condition))), setup{}).run()
			h.waitContainer("init", lifecycle.ContainerRunning)
			time.Sleep(20 * time.Millisecond)
			if slices.Contains(h.rt.Calls(), "create "+rid("app")) {
				t.Fatalf("app created while init runs: %q", h.rt.Calls())
			}
			if h.reported(lifecycle.Running) {
				t.Fatal("task RUNNING before all its containers started")
			}
			if err := h.rt.Exit(rid("init"), tt.initExit); err != nil {
				t.Fatal(err)
			}
			if tt.wantReason == "" {
				st := h.waitStatus(lifecycle.Running)
				if !before(h.rt.Calls(), "start "+rid("init"), "create "+rid("app")) {
					t.Errorf("calls %q", h.rt.Calls())
				}
				if code := exitCode(t, st, "init"); code != tt.initExit {
					t.Errorf("init exit code %d, want %d", code, tt.initExit)
				}
				return
			}
			st := h.waitStatus(lifecycle.Stopped)
			if st.GetStopCode() != lifecycle.TaskFailedToStart || !strings.Contains(st.GetStoppedReason(), tt.wantReason) {
				t.Errorf("stop code %q reason %q, want TaskFailedToStart with %q", st.GetStopCode(), st.GetStoppedReason(), tt.wantReason)
			}
			if calls := h.rt.Calls(); slices.Contains(calls, "create "+rid("app")) || slices.Contains(calls, "start "+rid("app")) {
				t.Errorf("app was created or started: %q", calls)
			}
			if h.reported(lifecycle.Running) {
				t.Error("task reported RUNNING")
			}
		})
	}
}

func TestDependsOnStartOrder(t *testing.T) {
	// Listed last-first: only dependsOn orders them.
	h := newHarness(t, assignment(
		def("web", dependsOn("app", "START")),
		def("app", dependsOn("db", "START")),
		def("db"),
	), setup{}).run()
	h.waitStatus(lifecycle.Running)
	want := []string{"create " + rid("db"), "start " + rid("db"), "create " + rid("app"), "start " + rid("app"),
		"create " + rid("web"), "start " + rid("web")}
	if got := h.rt.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}

func TestFailsToStart(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		defs    []*orchv1.ContainerDefinition
		setup   func(rt *fake.Runtime, n *fakeNetwork, a *orchv1.Assignment)
		reasons []string // substrings of stoppedReason
		created bool     // a container was created before the failure
	}{
		{
			name:    "dependsOn HEALTHY",
			defs:    []*orchv1.ContainerDefinition{def("db"), def("app", dependsOn("db", "HEALTHY"))},
			reasons: []string{"app", "dependsOn", "HEALTHY"},
		},
		{
			name: "secrets",
			defs: []*orchv1.ContainerDefinition{def("app", func(d *orchv1.ContainerDefinition) {
				d.Secrets = []*orchv1.Secret{{Name: "DB_PASSWORD", ValueFrom: "arn:aws:ssm:::parameter/db"}}
			})},
			reasons: []string{"app", "secrets"},
		},
		{
			name: "environmentFiles",
			defs: []*orchv1.ContainerDefinition{def("app", func(d *orchv1.ContainerDefinition) {
				d.EnvironmentFiles = []*orchv1.EnvironmentFile{{Value: "arn:aws:s3:::bucket/app.env", Type: "s3"}}
			})},
			reasons: []string{"app", "environmentFiles"},
		},
		{
			name: "pull error",
			defs: []*orchv1.ContainerDefinition{def("app")},
			setup: func(rt *fake.Runtime, _ *fakeNetwork, _ *orchv1.Assignment) {
				rt.PullFn = func(context.Context, string) error { return boom }
			},
			reasons: []string{"CannotPullContainerError", "registry.local/app:1", "boom"},
		},
		{
			name: "create error",
			defs: []*orchv1.ContainerDefinition{def("db"), def("app")},
			setup: func(rt *fake.Runtime, _ *fakeNetwork, _ *orchv1.Assignment) {
				rt.CreateFn = func(_ context.Context, s runtime.ContainerSpec) error {
					if s.Def.GetName() == "app" {
						return boom
					}
					return nil
				}
			},
			reasons: []string{"CannotCreateContainerError", "app", "boom"},
			created: true,
		},
		{
			name: "start error",
			defs: []*orchv1.ContainerDefinition{def("app")},
			setup: func(rt *fake.Runtime, _ *fakeNetwork, _ *orchv1.Assignment) {
				rt.StartFn = func(context.Context, string) error { return boom }
			},
			reasons: []string{"CannotStartContainerError", "app", "boom"},
			created: true,
		},
		{
			name: "ENI setup error",
			defs: []*orchv1.ContainerDefinition{def("app")},
			setup: func(_ *fake.Runtime, n *fakeNetwork, _ *orchv1.Assignment) {
				n.SetupFn = func(context.Context, eni.Spec) error { return boom }
			},
			reasons: []string{"ENI 10.64.3.7", "boom"},
		},
		{
			name:    "no ENI",
			defs:    []*orchv1.ContainerDefinition{def("app")},
			setup:   func(_ *fake.Runtime, _ *fakeNetwork, a *orchv1.Assignment) { a.Task.Eni = nil },
			reasons: []string{"no ENI"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := assignment(tt.defs...)
			h := newHarness(t, a, setup{})
			if tt.setup != nil {
				tt.setup(h.rt, h.net, a)
			}
			h.run()
			st := h.waitStatus(lifecycle.Stopped)
			if st.GetStopCode() != lifecycle.TaskFailedToStart {
				t.Errorf("stop code %q, want TaskFailedToStart", st.GetStopCode())
			}
			for _, s := range tt.reasons {
				if !strings.Contains(st.GetStoppedReason(), s) {
					t.Errorf("stopped reason %q does not name %q", st.GetStoppedReason(), s)
				}
			}
			if h.reported(lifecycle.Running) || h.reported(lifecycle.Activating) {
				t.Errorf("reported %v", h.sequence())
			}
			calls := h.rt.Calls()
			if got := len(callsWith(calls, "start ")); got > 0 && !tt.created {
				t.Errorf("containers started: %q", calls)
			}
			if !tt.created && len(callsWith(calls, "create ")) > 0 {
				t.Errorf("containers created: %q", calls)
			}
			if infos, _ := h.rt.List(context.Background()); len(infos) != 0 {
				t.Errorf("containers left behind: %+v", infos)
			}
		})
	}
}
