package containerd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"orch/agent/logs"
	"orch/agent/runtime"
	orchv1 "orch/proto/orch/v1"
	"orch/test/harness"
)

// The test binary is also the containers' log driver: the shim starts it with the driver's
// arguments.
func TestMain(m *testing.M) {
	if logs.IsDriver(os.Args) {
		os.Exit(logs.DriverMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// env is one private containerd and registry shared by the subtests of TestRuntime.
type env struct {
	ctrd      *harness.Containerd
	namespace string
	rt        *Runtime
	logDir    string
	suffix    string

	// images by name, pushed and pulled in setup
	images map[string]string
}

// testImages are the images the tests use.
var testImages = map[string]harness.ImageConfig{
	"plain": {},
	"semantics": {
		Entrypoint: []string{"/bin/echo", "img-ep"},
		Cmd:        []string{"img-cmd"},
		Env:        []string{"A=img", "B=img"},
		WorkingDir: "/tmp",
		User:       "nobody",
		StopSignal: "SIGQUIT",
	},
}

func newEnv(t *testing.T) *env {
	t.Helper()
	harness.RequireRoot(t)
	e := &env{suffix: harness.RandomSuffix(), logDir: t.TempDir(), images: map[string]string{}}
	e.namespace = "orchtest-" + e.suffix
	// Registered before containerd's cleanup, so it runs after it.
	t.Cleanup(func() { removeNamespaceCgroups(e.namespace) })
	e.ctrd = harness.StartContainerd(t)
	reg := harness.StartRegistry(t)
	for name, cfg := range testImages {
		ref, err := harness.PushImage(reg.Addr, "rt-"+name+":"+e.suffix, cfg)
		if err != nil {
			t.Fatalf("push %s: %v", name, err)
		}
		e.images[name] = ref
	}
	e.rt = e.newRuntime(t)
	return e
}

func (e *env) newRuntime(t *testing.T) *Runtime {
	t.Helper()
	rt, err := New(e.ctrd.Address, WithNamespace(e.namespace))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// id returns a container id unique to this run.
func (e *env) id(name string) string {
	return strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(name)) + "-" + e.suffix
}

// spec returns a container spec on the plain image running args, named after the test.
func (e *env) spec(t *testing.T, args ...string) runtime.ContainerSpec {
	id := e.id(t.Name())
	return runtime.ContainerSpec{
		ID:     id,
		TaskID: "task-" + e.suffix,
		Def:    &orchv1.ContainerDefinition{Name: id, Image: e.images["plain"], Command: args},
		Env:    []string{"ORCH_TEST=1"},
		LogDir: e.logDir,
		Labels: map[string]string{runtime.LabelTaskID: "task-" + e.suffix, runtime.LabelContainer: id},
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// create creates the container and deletes it at the end of the test.
func (e *env) create(t *testing.T, spec runtime.ContainerSpec) {
	t.Helper()
	if err := e.rt.Create(testCtx(t), spec); err != nil {
		t.Fatalf("Create %s: %v", spec.ID, err)
	}
	t.Cleanup(func() {
		if err := e.rt.Delete(context.Background(), spec.ID); err != nil {
			t.Errorf("Delete %s: %v", spec.ID, err)
		}
	})
}

// start starts the container and returns its wait channel, taken before the start.
func (e *env) start(t *testing.T, id string) <-chan runtime.ExitStatus {
	t.Helper()
	ctx := testCtx(t)
	ch, err := e.rt.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait %s: %v", id, err)
	}
	pid, err := e.rt.Start(ctx, id)
	if err != nil {
		t.Fatalf("Start %s: %v", id, err)
	}
	if pid == 0 {
		t.Fatalf("Start %s: pid 0", id)
	}
	return ch
}

func waitExit(t *testing.T, ch <-chan runtime.ExitStatus, within time.Duration) runtime.ExitStatus {
	t.Helper()
	select {
	case st, ok := <-ch:
		if !ok {
			t.Fatalf("wait channel closed without a status")
		}
		return st
	case <-time.After(within):
		t.Fatalf("no exit within %v", within)
	}
	return runtime.ExitStatus{}
}

// run creates, starts and waits for the container, and returns its exit status and output.
func (e *env) run(t *testing.T, spec runtime.ContainerSpec) (runtime.ExitStatus, string) {
	t.Helper()
	e.create(t, spec)
	st := waitExit(t, e.start(t, spec.ID), 30*time.Second)
	return st, e.output(t, spec, "")
}

// output returns the container's log as plain text (stream tags and times removed). It waits
// until the log contains want (or, with want "", until the log driver has flushed the output
// of a process that exited: the file exists and stops growing for a moment).
func (e *env) output(t *testing.T, spec runtime.ContainerSpec, want string) string {
	t.Helper()
	path := filepath.Join(e.logDir, spec.Def.GetName()+".log")
	deadline := time.Now().Add(10 * time.Second)
	last := "\x00" // differs from any log
	stable := 0
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(path)
		text := logText(string(data))
		if want != "" && strings.Contains(text, want) {
			return text
		}
		if want == "" && err == nil {
			if text == last {
				stable++
				if stable >= 5 {
					return text
				}
			} else {
				stable = 0
			}
		}
		last = text
		time.Sleep(50 * time.Millisecond)
	}
	if want != "" {
		t.Fatalf("log %s does not contain %q; it has:\n%s", path, want, last)
	}
	return last
}

// logText strips CRI log line prefixes ("<time> <stream> <F|P> ") and joins partial lines.
func logText(data string) string {
	var b strings.Builder
	for _, line := range strings.Split(data, "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) < 3 {
			continue
		}
		if len(f) == 4 {
			b.WriteString(f[3])
		}
		if f[2] == "F" {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// removeNamespaceCgroups removes the (empty) parent cgroups that runc creates for containerd's
// default cgroup path /<namespace>/<id>, on cgroup v1 in every hierarchy.
func removeNamespaceCgroups(ns string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", ns))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", ns))
	for _, d := range dirs {
		_ = syscall.Rmdir(d)
	}
}

func isNotFound(err error) bool { return errors.Is(err, runtime.ErrNotFound) }
