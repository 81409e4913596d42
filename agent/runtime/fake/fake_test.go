package fake

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"orch/agent/runtime"
	orchv1 "orch/proto/orch/v1"
)

func spec(id, name, image string, cmd ...string) runtime.ContainerSpec {
	return runtime.ContainerSpec{
		ID: id, TaskID: "t1",
		Def:    &orchv1.ContainerDefinition{Name: name, Image: image, Command: cmd},
		Labels: map[string]string{runtime.LabelTaskID: "t1", runtime.LabelContainer: name},
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// run pulls, creates and starts a container and returns its wait channel.
func run(t *testing.T, r *Runtime, s runtime.ContainerSpec) <-chan runtime.ExitStatus {
	t.Helper()
	ctx := ctxT(t)
	if _, err := r.Pull(ctx, s.Def.GetImage()); err != nil {
		t.Fatal(err)
	}
	if err := r.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	ch, err := r.Wait(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Start(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	return ch
}

func recv(t *testing.T, ch <-chan runtime.ExitStatus) runtime.ExitStatus {
	t.Helper()
	select {
	case st, ok := <-ch:
		if !ok {
			t.Fatal("wait channel closed without a status")
		}
		return st
	case <-time.After(2 * time.Second):
		t.Fatal("no exit status")
	}
	return runtime.ExitStatus{}
}

func TestLifecycleAndCallLog(t *testing.T) {
	ctx := ctxT(t)
	r := New()
	res, err := r.Pull(ctx, "busybox")
	if err != nil || !res.Pulled || res.Digest == "" {
		t.Fatalf("first pull = %+v, %v; want pulled with a digest", res, err)
	}
	if res, _ := r.Pull(ctx, "busybox"); res.Pulled {
		t.Error("second pull of a present image reports Pulled")
	}
	s := spec("t1-app", "app", "busybox")
	if err := r.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := r.Create(ctx, s); !errors.Is(err, ErrExists) {
		t.Errorf("second create = %v, want ErrExists", err)
	}
	if info, _ := r.Container("t1-app"); info.State != runtime.StateCreated {
		t.Errorf("state after create = %s", info.State)
	}
	ch, err := r.Wait(ctx, "t1-app")
	if err != nil {
		t.Fatal(err)
	}
	pid, err := r.Start(ctx, "t1-app")
	if err != nil || pid == 0 {
		t.Fatalf("start = %d, %v", pid, err)
	}
	if _, err := r.Start(ctx, "t1-app"); err == nil {
		t.Error("starting a running container succeeded")
	}
	if err := r.Exit("t1-app", 3); err != nil {
		t.Fatal(err)
	}
	if st := recv(t, ch); st.Code != 3 || st.At.IsZero() {
		t.Errorf("exit = %+v, want code 3 with a time", st)
	}
	// Wait after the exit still reports it.
	ch2, _ := r.Wait(ctx, "t1-app")
	if st := recv(t, ch2); st.Code != 3 {
		t.Errorf("late wait = %+v", st)
	}
	if err := r.Stop(ctx, "t1-app", time.Second); err != nil {
		t.Errorf("stopping a stopped container: %v", err)
	}
	if err := r.Delete(ctx, "t1-app"); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, "t1-app"); err != nil {
		t.Errorf("deleting a deleted container: %v", err)
	}
	if err := r.Stop(ctx, "nope", time.Second); err != nil {
		t.Errorf("stopping a missing container: %v", err)
	}
	want := []string{"create t1-app", "start t1-app", "stop t1-app", "delete t1-app", "delete t1-app", "stop nope"}
	if got := r.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	if _, err := r.Wait(ctx, "t1-app"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("wait on a deleted container = %v, want ErrNotFound", err)
	}
	if _, err := r.Stats(ctx, "t1-app"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("stats of a deleted container = %v, want ErrNotFound", err)
	}
	if err := r.Create(ctx, spec("t1-x", "x", "not-pulled")); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("create without the image = %v, want ErrNotFound", err)
	}
}

func TestStop(t *testing.T) {
	tests := []struct {
		name     string
		beh      Behavior
		timeout  time.Duration
		advance  time.Duration // manual clock step after the stop call is logged
		wantCode int32
	}{
		{name: "exits on SIGTERM", wantCode: ExitTerm, timeout: 30 * time.Second},
		{name: "ignores SIGTERM", beh: Behavior{IgnoreTerm: true}, timeout: 30 * time.Second, advance: 30 * time.Second, wantCode: ExitKill},
		{name: "slow on SIGTERM", beh: Behavior{TermDelay: 2 * time.Second}, timeout: 30 * time.Second, advance: 2 * time.Second, wantCode: ExitTerm},
		{name: "too slow on SIGTERM", beh: Behavior{TermDelay: time.Minute}, timeout: 10 * time.Second, advance: 10 * time.Second, wantCode: ExitKill},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := NewManualClock(time.Unix(1000, 0))
			r := New(WithClock(clock))
			r.On(Match{Name: "app"}, tt.beh)
			ch := run(t, r, spec("t1-app", "app", "busybox"))
			ctx := ctxT(t)
			errc := make(chan error, 1)
			go func() { errc <- r.Stop(ctx, "t1-app", tt.timeout) }()
			if err := r.AwaitCall(ctx, "stop t1-app"); err != nil {
				t.Fatal(err)
			}
			if tt.advance > 0 {
				select {
				case err := <-errc:
					t.Fatalf("Stop returned (%v) before the clock moved", err)
				case <-time.After(20 * time.Millisecond):
				}
				clock.Advance(tt.advance)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if st := recv(t, ch); st.Code != tt.wantCode {
				t.Errorf("exit code = %d, want %d", st.Code, tt.wantCode)
			}
			if info, _ := r.Container("t1-app"); info.State != runtime.StateStopped || info.Exit.Code != tt.wantCode {
				t.Errorf("container = %+v", info)
			}
		})
	}
}

func TestStopEndsWithContext(t *testing.T) {
	r := New(WithClock(NewManualClock(time.Unix(0, 0))))
	r.On(Match{Image: "stubborn"}, Behavior{IgnoreTerm: true})
	run(t, r, spec("t1-app", "app", "stubborn"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := r.Stop(ctx, "t1-app", time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want the context's error", err)
	}
	if info, _ := r.Container("t1-app"); info.State != runtime.StateRunning {
		t.Errorf("state = %s, want RUNNING: an interrupted stop leaves the process running", info.State)
	}
}

func TestAutoExit(t *testing.T) {
	clock := NewManualClock(time.Unix(0, 0))
	r := New(WithClock(clock))
	r.On(Match{Command: []string{"true"}}, Behavior{AutoExit: true})
	r.On(Match{Name: "oom"}, Behavior{AutoExit: true, ExitCode: 137, OOMKilled: true})
	r.On(Match{Name: "later"}, Behavior{AutoExit: true, ExitAfter: time.Minute, ExitCode: 4})

	if st := recv(t, run(t, r, spec("t1-a", "a", "busybox", "true"))); st.Code != 0 {
		t.Errorf("immediate exit = %+v", st)
	}
	if st := recv(t, run(t, r, spec("t1-oom", "oom", "busybox"))); !st.OOMKilled || st.Code != 137 {
		t.Errorf("oom exit = %+v", st)
	}
	if s, _ := r.Stats(ctxT(t), "t1-oom"); s.OOMKills != 1 {
		t.Errorf("OOMKills = %d, want 1", s.OOMKills)
	}
	ch := run(t, r, spec("t1-later", "later", "busybox"))
	clock.Advance(59 * time.Second)
	if info, _ := r.Container("t1-later"); info.State != runtime.StateRunning {
		t.Fatalf("exited before its delay: %+v", info)
	}
	clock.Advance(time.Second)
	if st := recv(t, ch); st.Code != 4 {
		t.Errorf("delayed exit = %+v", st)
	}
	// A container matching no rule runs until told.
	if st := recv(t, func() <-chan runtime.ExitStatus {
		ch := run(t, r, spec("t1-b", "b", "busybox", "sleep"))
		if err := r.Exit("t1-b", 9); err != nil {
			t.Fatal(err)
		}
		return ch
	}()); st.Code != 9 {
		t.Errorf("exit = %+v", st)
	}
}

func TestDeleteKillsAndWaitEndsWithContext(t *testing.T) {
	r := New()
	ch := run(t, r, spec("t1-app", "app", "busybox"))
	ctx, cancel := context.WithCancel(ctxT(t))
	ch2, err := r.Wait(ctx, "t1-app")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, ok := <-ch2; ok {
		t.Error("a wait whose context ended delivered a status")
	}
	if err := r.Await(ctxT(t), func() bool { return r.Waiters("t1-app") == 1 }); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctxT(t), "t1-app"); err != nil {
		t.Fatal(err)
	}
	if st := recv(t, ch); st.Code != ExitKill {
		t.Errorf("exit after delete = %+v, want 137", st)
	}
}

func TestSeedListAndForget(t *testing.T) {
	ctx := ctxT(t)
	r := New()
	exit := &runtime.ExitStatus{Code: 2}
	for _, c := range []struct {
		s     runtime.ContainerSpec
		state runtime.State
		exit  *runtime.ExitStatus
	}{
		{spec("t1-b", "b", "img"), runtime.StateRunning, nil},
		{spec("t1-a", "a", "img"), runtime.StateStopped, exit},
		{spec("t1-c", "c", "img"), runtime.StateCreated, nil},
	} {
		if err := r.Seed(c.s, c.state, c.exit); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.Calls()) != 0 {
		t.Errorf("seeding was logged: %q", r.Calls())
	}
	if err := r.SetStats("t1-b", runtime.Stats{MemoryBytes: 42 << 20, CPUUsageUsec: 7}); err != nil {
		t.Fatal(err)
	}
	infos, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, i := range infos {
		ids = append(ids, i.ID+"="+string(i.State))
		if i.Labels[runtime.LabelTaskID] != "t1" || i.Image != "img" {
			t.Errorf("%s: labels %v image %q", i.ID, i.Labels, i.Image)
		}
	}
	if want := []string{"t1-a=STOPPED", "t1-b=RUNNING", "t1-c=CREATED"}; !slices.Equal(ids, want) {
		t.Errorf("list = %q, want %q", ids, want)
	}
	if infos[0].Exit == nil || infos[0].Exit.Code != 2 || infos[1].Pid == 0 {
		t.Errorf("list details = %+v", infos)
	}
	if s, _ := r.Stats(ctx, "t1-b"); s.MemoryBytes != 42<<20 || s.CPUUsageUsec != 7 {
		t.Errorf("stats = %+v", s)
	}
	// A seeded running container is waited for and ended like any other (adoption).
	ch, err := r.Wait(ctx, "t1-b")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Forget("t1-b"); err != nil {
		t.Fatal(err)
	}
	if st := recv(t, ch); st.Code != ExitUnknown {
		t.Errorf("exit of a forgotten container = %+v, want 255", st)
	}
	if _, ok := r.Container("t1-b"); ok || len(r.Calls()) != 0 {
		t.Errorf("forgotten container still there or logged: %q", r.Calls())
	}
}

func TestHooksInjectErrors(t *testing.T) {
	ctx := ctxT(t)
	boom := errors.New("boom")
	r := New()
	r.PullFn = func(_ context.Context, ref string) error {
		if ref == "bad" {
			return boom
		}
		return nil
	}
	r.CreateFn = func(_ context.Context, s runtime.ContainerSpec) error {
		if s.Def.GetName() == "nocreate" {
			return boom
		}
		return nil
	}
	r.StartFn = func(_ context.Context, id string) error {
		if id == "t1-nostart" {
			return boom
		}
		return nil
	}
	if _, err := r.Pull(ctx, "bad"); !errors.Is(err, boom) {
		t.Errorf("pull = %v", err)
	}
	r.AddImage("img")
	if err := r.Create(ctx, spec("t1-nocreate", "nocreate", "img")); !errors.Is(err, boom) {
		t.Errorf("create = %v", err)
	}
	if err := r.Create(ctx, spec("t1-nostart", "nostart", "img")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Start(ctx, "t1-nostart"); !errors.Is(err, boom) {
		t.Errorf("start = %v", err)
	}
	if info, _ := r.Container("t1-nostart"); info.State != runtime.StateCreated {
		t.Errorf("a refused start changed the state to %s", info.State)
	}
	if _, ok := r.Container("t1-nocreate"); ok {
		t.Error("a refused create made a container")
	}
	if want := []string{"create t1-nostart"}; !slices.Equal(r.Calls(), want) {
		t.Errorf("calls = %q, want %q", r.Calls(), want)
	}
	if len(r.Pulls()) != 0 {
		t.Errorf("a refused pull was recorded: %q", r.Pulls())
	}
	// Stopping a created container kills it.
	if err := r.Stop(ctx, "t1-nostart", time.Second); err != nil {
		t.Fatal(err)
	}
	if info, _ := r.Container("t1-nostart"); info.State != runtime.StateStopped || info.Exit.Code != ExitKill {
		t.Errorf("created container after stop = %+v", info)
	}
}

func TestManualClock(t *testing.T) {
	c := NewManualClock(time.Unix(100, 0))
	a, b := c.After(time.Second), c.After(3*time.Second)
	select {
	case <-c.After(0):
	default:
		t.Error("After(0) did not fire at once")
	}
	c.Advance(2 * time.Second)
	select {
	case now := <-a:
		if !now.Equal(time.Unix(102, 0)) {
			t.Errorf("fired at %v", now)
		}
	default:
		t.Error("due timer did not fire")
	}
	select {
	case <-b:
		t.Error("timer fired early")
	default:
	}
	if c.Pending() != 1 {
		t.Errorf("pending = %d, want 1", c.Pending())
	}
}
