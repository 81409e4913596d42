package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"orch/pkg/client"
	orchv1 "orch/proto/orch/v1"
	"orch/test/harness"
)

// Names and limits of the private installation.
const (
	// hostNSPrefix starts the name of the "host" network namespace (ip netns) that holds orch's
	// bridges and the floor's bridge, so that nothing touches the machine's own namespace.
	hostNSPrefix = "orchbench-"
	// cluster is the cluster that orch-scheduler --dev creates and serves.
	cluster = "default"
	// readyTimeout bounds the wait for the scheduler and its embedded agent.
	readyTimeout = 60 * time.Second
	// stopGrace is how long the scheduler gets between SIGTERM and SIGKILL.
	stopGrace = 10 * time.Second
)

// env is everything Run starts: a temp dir, orch's binaries, a host network namespace, a
// private containerd and registry, the test image and orch-scheduler --dev. close removes it all.
type env struct {
	logf func(format string, args ...any)

	dir        string // temp dir: binaries, scheduler data, netns dirs, logs
	binDir     string
	hostNS     string // ip netns name
	hostNSPath string // /run/netns/<hostNS>
	orchNSDir  string // where the embedded agent mounts task namespaces
	floorNSDir string // where the floor mounts its namespaces

	ctrd  *harness.Containerd
	reg   *harness.Registry
	image string // full reference of the test image

	sched     *process
	grpcAddr  string
	httpAddr  string              // /metrics
	creds     harness.Credentials // the scheduler's CA file, the API token, the join tokens
	client    *client.Client      // verifies the scheduler against the CA, sends the token
	ctrdVer   string
	undo      []func() error // run in reverse order by close
	closeDone bool
}

// setup builds (or finds) the binaries and starts everything. On error what was started is
// already removed.
func setup(ctx context.Context, cfg Config) (_ *env, err error) {
	e := &env{logf: cfg.Logf}
	defer func() {
		if err != nil {
			err = errors.Join(err, e.close())
		}
	}()
	if e.dir, err = os.MkdirTemp("", "orch-bench-"); err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	e.push(func() error {
		// The agent makes its netns dir a shared bind mount of itself; task namespaces are
		// mounted in it. Lazily, so that anything still inside does not block the removal.
		if err := harness.UnmountUnder(e.dir); err != nil {
			return err
		}
		return os.RemoveAll(e.dir)
	})
	e.orchNSDir = filepath.Join(e.dir, "netns")
	e.floorNSDir = filepath.Join(e.dir, "floor-netns")

	if e.binDir, err = e.binaries(ctx, cfg.BinDir); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	e.hostNS = hostNSPrefix + cfg.Suffix
	e.hostNSPath = "/run/netns/" + e.hostNS
	if err := run("ip", "netns", "add", e.hostNS); err != nil {
		return nil, err
	}
	e.push(func() error { return run("ip", "netns", "del", e.hostNS) })
	if err := run("ip", "-n", e.hostNS, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}

	e.logf("starting containerd and the registry")
	if e.ctrd, err = harness.RunContainerd(""); err != nil {
		return nil, fmt.Errorf("containerd: %w", err)
	}
	e.push(e.ctrd.Stop)
	if e.reg, err = harness.RunRegistry("", ""); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	e.push(e.reg.Stop)
	if e.image, err = harness.PushImage(e.reg.Addr, "bench/sleep:latest", harness.ImageConfig{Cmd: []string{"sleep", "3600"}}); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	if err := e.startScheduler(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// push registers an undo step for close.
func (e *env) push(fn func() error) { e.undo = append(e.undo, fn) }

// close undoes setup in reverse: the client, the scheduler, the registry, containerd (which
// deletes every container left in any namespace), the host netns (with its bridges and veth
// ends), then the temp dir with the netns mounts in it. It is safe to call more than once.
func (e *env) close() error {
	if e.closeDone {
		return nil
	}
	e.closeDone = true
	var errs []error
	for i := len(e.undo) - 1; i >= 0; i-- {
		if err := e.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// binaries returns the dir holding orch-scheduler: dir if given, else a dir in the temp dir
// where `go build ./cmd/...` put orch's commands.
func (e *env) binaries(ctx context.Context, dir string) (string, error) {
	if dir != "" {
		p := filepath.Join(dir, "orch-scheduler")
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("-bin %s: %w", dir, err)
		}
		return dir, nil
	}
	dir = filepath.Join(e.dir, "bin")
	return dir, Build(ctx, dir, e.logf)
}

// Build builds orch's commands into dir (go build -o dir/ ./cmd/... in the module root), for
// runs given no directory of binaries.
func Build(ctx context.Context, dir string, logf func(format string, args ...any)) error {
	root, err := harness.ModuleRoot()
	if err != nil {
		return err
	}
	goBin, err := harness.GoTool()
	if err != nil {
		return err
	}
	if logf != nil {
		logf("building orch binaries (go build ./cmd/...)")
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", dir+"/", "./cmd/...")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -o %s/ ./cmd/... (in %s): %w\n%s", dir, root, err, out)
	}
	return nil
}

// startScheduler starts orch-scheduler --dev on free loopback ports, takes the cluster's API
// token (the one-time bootstrap) and waits until its embedded agent is connected to the
// default cluster.
func (e *env) startScheduler(ctx context.Context) error {
	var addrs [4]string
	for i := range addrs {
		port, err := harness.FreeLoopbackPort()
		if err != nil {
			return err
		}
		addrs[i] = "127.0.0.1:" + strconv.Itoa(port)
	}
	e.grpcAddr, e.httpAddr = addrs[0], addrs[1]
	dataDir := filepath.Join(e.dir, "scheduler")
	args := []string{"--dev", "--data-dir", dataDir,
		"--grpc-addr", addrs[0], "--http-addr", addrs[1], "--raft-addr", addrs[2],
		"--containerd", e.ctrd.Address, "--agent-addr", addrs[3],
		"--netns-dir", e.orchNSDir, "--host-netns", e.hostNSPath}
	e.logf("starting orch-scheduler --dev on %s", e.grpcAddr)
	p, err := startProcess(filepath.Join(e.dir, "orch-scheduler.log"), filepath.Join(e.binDir, "orch-scheduler"), args...)
	if err != nil {
		return err
	}
	e.sched = p
	e.push(func() error { p.stop(stopGrace); return nil })

	dctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	// Bootstrap retries until the scheduler listens and leads; stop it early if the scheduler
	// exits.
	bctx, bcancel := context.WithCancel(dctx)
	go func() {
		select {
		case <-p.done:
			bcancel()
		case <-bctx.Done():
		}
	}()
	creds, err := harness.Bootstrap(bctx, dataDir, e.grpcAddr)
	bcancel()
	if err != nil {
		return e.schedErr(fmt.Errorf("credentials of orch-scheduler %s: %w", e.grpcAddr, err))
	}
	e.creds = creds
	c, err := client.Dial(dctx, []string{e.grpcAddr}, creds.ClientOpts()...)
	if err != nil {
		return e.schedErr(fmt.Errorf("connect to orch-scheduler %s: %w", e.grpcAddr, err))
	}
	e.client = c
	e.push(c.Close)
	if err := e.waitAgent(dctx, cluster, e.sched); err != nil {
		return e.schedErr(fmt.Errorf("embedded agent: %w", err))
	}
	return nil
}

// waitAgent polls describe-container-instances until an agent serving clusterName is connected
// and its instance ACTIVE; p is the process that runs the agent (it fails at once if p exits).
func (e *env) waitAgent(ctx context.Context, clusterName string, p *process) error {
	var last string
	for {
		resp, err := e.client.DescribeContainerInstances(ctx, &orchv1.DescribeContainerInstancesRequest{Cluster: clusterName})
		if err == nil {
			for _, ci := range resp.GetContainerInstances() {
				if ci.GetAgentConnected() && ci.GetStatus() == "ACTIVE" {
					return nil
				}
			}
			last = fmt.Sprintf("%d container instances, none ACTIVE with its agent connected", len(resp.GetContainerInstances()))
		} else {
			last = err.Error()
		}
		if p.exited() {
			return fmt.Errorf("%s exited: %v", filepath.Base(p.cmd.Path), p.wait())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no agent connected to cluster %s: %w (last: %s)", clusterName, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// schedErr adds the tail of the scheduler's log to err: the log goes with the temp dir.
func (e *env) schedErr(err error) error {
	if e.sched == nil {
		return err
	}
	return fmt.Errorf("%w\ntail of orch-scheduler log:\n%s", err, harness.TailFile(e.sched.logPath, 30))
}

// run runs a command and returns an error with its output if it fails.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// process is a child in its own process group, killed by the kernel if this program dies.
type process struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// startProcess starts name with args, output to logPath. As in the harness, the child is
// started from a goroutine locked to its OS thread that lives as long as the child: Pdeathsig
// belongs to the starting thread, and the floor's namespace code retires threads.
func startProcess(logPath, name string, args ...string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &process{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) wait() error { <-p.done; return p.err }

// stop sends SIGTERM to the group, SIGKILL after grace, and waits.
func (p *process) stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	if !p.exited() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}
