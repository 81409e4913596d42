package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// ContainerdBinary is the containerd the harness starts (Debian 12's containerd 1.6).
const ContainerdBinary = "/usr/bin/containerd"

// Containerd is a private containerd started by the harness: root, state, config, log and
// sockets all live under Dir, never under the machine's /run/containerd or /var/lib/containerd.
//
// Two things containerd 1.6 places outside Dir whatever the config says, both named after this
// instance and removed by Stop: the shims' sockets (/run/containerd/s/<sha256 of address, namespace
// and id>) and runc's state (/run/containerd/runc/<namespace>/<id>, unless the client passes a
// runc Root option). Clients should put their stdio FIFOs in FIFODir (cio.WithFIFODir) rather
// than in cio's default /run/containerd/fifo.
type Containerd struct {
	Address      string // gRPC socket: what client.New takes
	TTRPCAddress string // ttrpc socket (shims' events)
	Root         string // persistent state: content store, snapshots, metadata
	State        string // runtime state: task bundles, rootfs mounts
	Dir          string // holds all of the above, the config and the log
	FIFODir      string // where clients should create task stdio FIFOs
	ConfigPath   string
	LogPath      string // containerd's stdout and stderr

	ownDir   bool // Dir was created by the harness and is removed whole by Stop
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd has been waited for
	waitErr  error
	stopOnce sync.Once
	stopErr  error
}

// StartContainerd starts a private containerd for the test and waits until it answers. Its
// cleanup deletes every task and container in every namespace (so that their shims exit),
// stops containerd, kills any shim of this instance that is still alive, unmounts whatever is
// left under Dir and removes Dir. When the test has failed, the tail of containerd's log is
// printed first.
func StartContainerd(t testing.TB) *Containerd {
	t.Helper()
	RequireRoot(t)
	c, err := RunContainerd("")
	if err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	t.Cleanup(func() {
		err := c.stop(func() {
			if t.Failed() {
				t.Logf("tail of containerd log (%s):\n%s", c.LogPath, TailFile(c.LogPath, logTailLines))
			}
		})
		if err != nil {
			t.Errorf("stop containerd %s: %v", c.Address, err)
		}
	})
	return c
}

// RunContainerd starts a private containerd under dir and waits until it answers. With dir ""
// it creates a temp dir, which Stop removes whole; with a given dir, Stop removes what
// RunContainerd created there (root, state, sockets, config) and keeps containerd.log.
func RunContainerd(dir string) (*Containerd, error) {
	c := &Containerd{exited: make(chan struct{})}
	if dir == "" {
		// os.MkdirTemp rather than t.TempDir: unix socket paths must stay under 108 bytes,
		// and test names can be long.
		d, err := os.MkdirTemp("", "orch-ctrd-")
		if err != nil {
			return nil, fmt.Errorf("containerd temp dir: %w", err)
		}
		dir, c.ownDir = d, true
	} else if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("containerd dir %s: %w", dir, err)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("containerd dir: %w", err)
	}
	c.Dir = dir
	c.Address = filepath.Join(dir, "containerd.sock")
	c.TTRPCAddress = c.Address + ".ttrpc"
	c.Root = filepath.Join(dir, "root")
	c.State = filepath.Join(dir, "state")
	c.FIFODir = filepath.Join(dir, "fifo")
	c.ConfigPath = filepath.Join(dir, "config.toml")
	c.LogPath = filepath.Join(dir, "containerd.log")
	if len(c.TTRPCAddress) >= 108 {
		c.cleanupDirs()
		return nil, fmt.Errorf("containerd socket path %s is too long for a unix socket", c.TTRPCAddress)
	}
	if err := c.start(); err != nil {
		c.killProcess()
		c.cleanupDirs()
		return nil, err
	}
	return c, nil
}

// containerdConfig is a version 2 config (containerd 1.5 to 1.7; 2.x migrates it on start).
// CRI is disabled: orch talks to containerd through its own client, and CRI would try to set up
// CNI and its own state under /run. Snapshotters that cannot work here are disabled to keep the
// log readable; overlayfs is containerd's default.
const containerdConfig = `version = 2
root = %[1]q
state = %[2]q
temp = %[3]q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = %[4]q

[ttrpc]
  address = %[5]q

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = %[6]q
`

func (c *Containerd) start() error {
	for _, d := range []string{c.Root, c.State, c.FIFODir, filepath.Join(c.Dir, "tmp")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("containerd dir %s: %w", d, err)
		}
	}
	cfg := fmt.Sprintf(containerdConfig, c.Root, c.State, filepath.Join(c.Dir, "tmp"), c.Address, c.TTRPCAddress, filepath.Join(c.Dir, "opt"))
	if err := os.WriteFile(c.ConfigPath, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("containerd config: %w", err)
	}
	logf, err := os.OpenFile(c.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("containerd log: %w", err)
	}
	defer logf.Close() // the child has its own copy
	c.cmd = exec.Command(ContainerdBinary, "--config", c.ConfigPath)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.Dir = c.Dir
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := startChild(c.cmd, c.exited, &c.waitErr); err != nil {
		return fmt.Errorf("start %s: %w", ContainerdBinary, err)
	}
	if err := c.waitReady(30 * time.Second); err != nil {
		return fmt.Errorf("containerd %s: %w; log tail:\n%s", c.Address, err, TailFile(c.LogPath, 20))
	}
	return nil
}

// waitReady polls the Version call until it answers, containerd exits or the timeout passes.
func (c *Containerd) waitReady(timeout time.Duration) error {
	cl, err := client.New(c.Address, client.WithTimeout(time.Second))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer cl.Close()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			return fmt.Errorf("containerd exited before answering: %v", c.waitErr)
		default:
		}
		if _, statErr := os.Stat(c.Address); statErr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, lastErr = cl.Version(ctx)
			cancel()
			if lastErr == nil {
				return nil
			}
		} else {
			lastErr = statErr
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not answering after %s: %v", timeout, lastErr)
}

// NewClient returns a containerd client for this instance. The caller closes it.
func (c *Containerd) NewClient(opts ...client.Opt) (*client.Client, error) {
	cl, err := client.New(c.Address, opts...)
	if err != nil {
		return nil, fmt.Errorf("containerd client %s: %w", c.Address, err)
	}
	return cl, nil
}

// Stop deletes every task and container, stops containerd, kills leftover shims, unmounts what
// is left under Dir and removes the directories. It is safe to call more than once.
func (c *Containerd) Stop() error {
	return c.stop(nil)
}

// stop does Stop's work; beforeRemove, if not nil, runs after containerd is down and before
// the directories (and so the log) are removed.
func (c *Containerd) stop(beforeRemove func()) error {
	c.stopOnce.Do(func() {
		var errs []error
		if err := c.deleteAll(20 * time.Second); err != nil {
			errs = append(errs, fmt.Errorf("delete tasks and containers: %w", err))
		}
		c.killProcess()
		if err := killShims(c.Address); err != nil {
			errs = append(errs, fmt.Errorf("kill leftover shims: %w", err))
		}
		if err := UnmountUnder(c.Dir); err != nil {
			errs = append(errs, err)
		}
		if beforeRemove != nil {
			beforeRemove()
		}
		if err := c.cleanupDirs(); err != nil {
			errs = append(errs, err)
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// deleteAll deletes every task (killing its processes, which makes its shim exit) and every
// container with its snapshot, in every namespace.
func (c *Containerd) deleteAll(timeout time.Duration) error {
	select {
	case <-c.exited:
		return nil // nothing to talk to; killShims handles what is left
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cl, err := client.New(c.Address, client.WithTimeout(2*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	nss, err := cl.NamespaceService().List(ctx)
	if err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	var errs []error
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		ctrs, err := cl.Containers(nctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("namespace %s: list containers: %w", ns, err))
			continue
		}
		for _, ctr := range ctrs {
			if err := deleteContainer(nctx, ctr); err != nil {
				errs = append(errs, fmt.Errorf("namespace %s: container %s: %w", ns, ctr.ID(), err))
			}
		}
		// Also for a namespace whose containers the test deleted itself: the runc state dir
		// and the parent cgroups outlive them.
		removeNamespaceLeftovers(ns)
	}
	return errors.Join(errs...)
}

func deleteContainer(ctx context.Context, ctr client.Container) error {
	task, err := ctr.Task(ctx, nil)
	switch {
	case err == nil:
		if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete task: %w", err)
		}
	case !errdefs.IsNotFound(err):
		return fmt.Errorf("load task: %w", err)
	}
	err = ctr.Delete(ctx, client.WithSnapshotCleanup)
	if err != nil && errdefs.IsNotFound(err) {
		// The snapshot may already be gone; delete the container record alone.
		err = ctr.Delete(ctx)
	}
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container: %w", err)
	}
	return nil
}

// killProcess stops containerd: SIGTERM, then SIGKILL after 10s.
func (c *Containerd) killProcess() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// cleanupDirs removes Dir when the harness created it, else what RunContainerd put in it.
func (c *Containerd) cleanupDirs() error {
	if c.ownDir {
		if err := os.RemoveAll(c.Dir); err != nil {
			return fmt.Errorf("remove %s: %w", c.Dir, err)
		}
		return nil
	}
	var errs []error
	for _, p := range []string{c.Root, c.State, c.FIFODir, filepath.Join(c.Dir, "tmp"), filepath.Join(c.Dir, "opt"), c.Address, c.TTRPCAddress, c.ConfigPath} {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// String names the instance in test logs.
func (c *Containerd) String() string {
	return "containerd@" + strings.TrimSuffix(c.Address, "/containerd.sock")
}
