package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
)

func TestContainerdVersion(t *testing.T) {
	RequireRoot(t)
	c := StartContainerd(t)
	cl, err := c.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := cl.Version(ctx)
	if err != nil {
		t.Fatalf("version: %v", err)
	}
	if !strings.HasPrefix(v.Version, "1.") && !strings.HasPrefix(v.Version, "v1.") && !strings.HasPrefix(v.Version, "2.") {
		t.Errorf("version = %q, want a containerd 1.x or 2.x version", v.Version)
	}
	t.Logf("containerd %s (%s) at %s", v.Version, v.Revision, c.Address)
	if _, err := os.Stat("/run/containerd/containerd.sock"); err == nil {
		t.Logf("note: the machine's own containerd socket exists; the harness does not use it")
	}
}

// TestPullAndRun proves the whole path the agent uses: push a busybox image to the private
// registry, pull it through the private containerd over plain HTTP, run `echo hello` in it, and
// check that the cleanup leaves no shim and no mount behind.
func TestPullAndRun(t *testing.T) {
	RequireRoot(t)
	reg := StartRegistry(t)
	ref, err := PushImage(reg.Addr, "harness/echo:"+RandomSuffix(), ImageConfig{Cmd: []string{"sh"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := reg.Addr + "/harness/echo:"; !strings.HasPrefix(ref, want) {
		t.Fatalf("reference = %q, want prefix %q", ref, want)
	}

	c, err := RunContainerd("") // the program variant, so that the test can check after Stop
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = c.Stop()
		}
	})

	out, code := runInContainer(t, c, ref, "echo", "hello")
	if code != 0 || strings.TrimSpace(out) != "hello" {
		t.Errorf("echo hello: exit %d, output %q; want exit 0, output \"hello\"", code, out)
	}
	shims, err := findShims(c.Address)
	if err != nil {
		t.Fatal(err)
	}
	if len(shims) == 0 {
		t.Errorf("no shim found for %s while a container exists; findShims cannot see them", c.Address)
	}
	mounts, _ := mountsUnder(c.Dir)
	t.Logf("before stop: %d shim(s), %d mount(s) under %s", len(shims), len(mounts), c.Dir)

	stopped = true
	if err := c.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if shims, _ := findShims(c.Address); len(shims) != 0 {
		t.Errorf("shims left after stop: %+v", shims)
	}
	for _, s := range shims {
		if _, err := os.Stat(shimSocketPath(c.Address, s.namespace, s.id)); err == nil {
			t.Errorf("shim socket left: %s", shimSocketPath(c.Address, s.namespace, s.id))
		}
	}
	if m, _ := mountsUnder(c.Dir); len(m) != 0 {
		t.Errorf("mounts left under %s: %v", c.Dir, m)
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after stop (err %v)", c.Dir, err)
	}
}

// TestCleanupKillsRunningTask leaves a long-running task for Stop to find, with containerd
// still up (tasks deleted through the client) and after kill -9 of containerd (the shim is
// found by its command line and killed with its container).
func TestCleanupKillsRunningTask(t *testing.T) {
	RequireRoot(t)
	reg := StartRegistry(t)
	ref, err := PushImage(reg.Addr, "harness/sleep:latest", ImageConfig{Entrypoint: []string{"sleep"}, Cmd: []string{"300"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		killContainerd bool
	}{
		{name: "containerd up"},
		{name: "containerd killed", killContainerd: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := RunContainerd("")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Stop() })
			ns := "harness-" + RandomSuffix()
			ctx := namespaces.WithNamespace(context.Background(), ns)
			cl, err := c.NewClient()
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			img := pull(ctx, t, cl, ref)
			ctr, err := cl.NewContainer(ctx, "sleeper", client.WithNewSnapshot("sleeper", img), client.WithNewSpec(oci.WithImageConfig(img)))
			if err != nil {
				t.Fatal(err)
			}
			task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithFIFODir(c.FIFODir)))
			if err != nil {
				t.Fatal(err)
			}
			if err := task.Start(ctx); err != nil {
				t.Fatal(err)
			}
			pid := int(task.Pid())
			shims, _ := findShims(c.Address)
			if len(shims) != 1 || shims[0].namespace != ns || shims[0].id != "sleeper" {
				t.Errorf("shims = %+v, want one for %s/sleeper", shims, ns)
			}
			if _, err := os.Stat(shimSocketPath(c.Address, ns, "sleeper")); err != nil {
				t.Errorf("shim socket not where shimSocketPath says: %v", err)
			}
			if tc.killContainerd {
				_ = c.cmd.Process.Kill()
				<-c.exited
			}
			if err := c.Stop(); err != nil {
				t.Errorf("stop: %v", err)
			}
			if processAlive(pid) {
				t.Errorf("task process %d still alive after stop", pid)
			}
			if s, _ := findShims(c.Address); len(s) != 0 {
				t.Errorf("shims left after stop: %+v", s)
			}
			if m, _ := mountsUnder(c.Dir); len(m) != 0 {
				t.Errorf("mounts left: %v", m)
			}
			for _, p := range []string{shimSocketPath(c.Address, ns, "sleeper"), filepath.Join(runcStateRoot, ns), c.Dir} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s left after stop (stat: %v)", p, err)
				}
			}
		})
	}
}

// TestDemoWebImage runs the demo web image and fetches its page from inside the container's
// network namespace (a second process, as `docker exec` would).
func TestDemoWebImage(t *testing.T) {
	RequireRoot(t)
	reg := StartRegistry(t)
	ref, err := PushImage(reg.Addr, "demo/web:latest", DemoWebConfig())
	if err != nil {
		t.Fatal(err)
	}
	c := StartContainerd(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx = namespaces.WithNamespace(ctx, "harness-"+RandomSuffix())
	cl, err := c.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	img := pull(ctx, t, cl, ref)
	ctr, err := cl.NewContainer(ctx, "web", client.WithNewSnapshot("web", img),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithHostname("web-1")))
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "web.log")
	task, err := ctr.NewTask(ctx, cio.LogFile(logPath))
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waitFile(logPath, "demo-web: serving", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pspec := *spec.Process
	pspec.Args = []string{"wget", "-q", "-O", "-", "http://127.0.0.1:80/"}
	var out, errb bytes.Buffer
	var body string
	for i := 0; i < 20; i++ { // httpd may not listen yet right after its start line
		out.Reset()
		errb.Reset()
		proc, err := task.Exec(ctx, "wget-"+RandomSuffix(), &pspec, cio.NewCreator(cio.WithStreams(nil, &out, &errb), cio.WithFIFODir(c.FIFODir)))
		if err != nil {
			t.Fatalf("exec: %v", err)
		}
		exitCh, err := proc.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := proc.Start(ctx); err != nil {
			t.Fatalf("exec start: %v", err)
		}
		st := <-exitCh
		proc.IO().Wait()
		if _, err := proc.Delete(ctx); err != nil {
			t.Fatalf("exec delete: %v", err)
		}
		if st.ExitCode() == 0 {
			body = out.String()
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if want := "hello from orch task web-1"; !strings.Contains(body, want) {
		t.Errorf("page = %q (wget stderr %q), want %q", body, errb.String(), want)
	}
}

func waitFile(path, substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		data, _ := os.ReadFile(path)
		if strings.Contains(string(data), substr) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s has no %q after %s; it has %q", path, substr, timeout, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pull(ctx context.Context, t *testing.T, cl *client.Client, ref string) client.Image {
	t.Helper()
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchAllHosts)),
	})
	img, err := cl.Pull(ctx, ref, client.WithPullUnpack, client.WithResolver(resolver))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

// runInContainer pulls ref, runs args in a new container and returns its output and exit code.
func runInContainer(t *testing.T, c *Containerd, ref string, args ...string) (string, uint32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx = namespaces.WithNamespace(ctx, "harness-"+RandomSuffix())
	cl, err := c.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	img := pull(ctx, t, cl, ref)
	id := "echo-" + RandomSuffix()
	ctr, err := cl.NewContainer(ctx, id,
		client.WithNewSnapshot(id, img),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs(args...)))
	if err != nil {
		t.Fatalf("new container: %v", err)
	}
	// Two buffers: cio copies stdout and stderr in two goroutines, and bytes.Buffer is not safe
	// for concurrent use (sharing one loses output).
	var out, errb bytes.Buffer
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &out, &errb), cio.WithFIFODir(c.FIFODir)))
	if err != nil {
		t.Fatalf("new task: %v", err)
	}
	exitCh, err := task.Wait(ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	st := <-exitCh
	code, _, err := st.Result()
	if err != nil {
		t.Fatalf("exit status: %v", err)
	}
	task.IO().Wait() // the output is copied from FIFOs; wait until all of it has arrived
	if errb.Len() > 0 {
		t.Logf("stderr: %s", errb.String())
	}
	// Leave the task and container in place: the cleanup must delete them.
	return out.String(), code
}

// TestRunVariantsKeepLog checks the program variants with a caller's dir: Stop removes what
// they created there and keeps the log for the developer.
func TestRunVariantsKeepLog(t *testing.T) {
	t.Run("registry", func(t *testing.T) {
		dir := t.TempDir()
		addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		r, err := RunRegistry(dir, addr)
		if err != nil {
			t.Fatal(err)
		}
		if r.Addr != addr {
			t.Errorf("Addr = %s, want %s", r.Addr, addr)
		}
		if _, err := PushImage(r.Addr, "x/y:z", ImageConfig{Cmd: []string{"sh"}}); err != nil {
			t.Fatal(err)
		}
		if err := r.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := r.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
		checkOnly(t, dir, "registry.log")
	})
	t.Run("containerd", func(t *testing.T) {
		RequireRoot(t)
		dir, err := os.MkdirTemp("", "orch-h-") // short: socket paths are limited to 108 bytes
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		c, err := RunContainerd(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		checkOnly(t, dir, "containerd.log")
	})
}

// checkOnly fails unless dir holds exactly the file name.
func checkOnly(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != name {
		t.Errorf("%s holds %v after Stop, want only %s", dir, names, name)
	}
}
