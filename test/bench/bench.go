// Package bench measures orch on one machine: how long it takes to start a task next to the
// floor, the least any orchestrator on the same host has to do for the same task (Run, with
// the extra figures of extra.go), the control plane's Raft writes and leader failover (RunHA),
// and scheduling throughput with many simulated nodes (RunSched). It is the engine of
// cmd/orch-bench (and of `make bench`, which measures all three in one run); TestSmoke and
// TestSchedSmoke run it end to end so that it cannot rot.
//
// One Run starts everything in private places, so that it works on a clean machine and in CI
// (as root): a temp dir, orch's binaries (built with `go build ./cmd/...` unless given), a
// "host" network namespace (ip netns orchbench-<suffix>), a private containerd and registry
// from test/harness, a busybox `sleep 3600` image pushed there, and orch-scheduler --dev with
// its embedded agent. It then measures, one task at a time and interleaved (orch, floor, orch,
// floor, ...) after one untimed warm-up each (which also caches the image):
//
//   - orch: from the client's RunTask call until its WatchTasks stream (untilStatus RUNNING)
//     reports the task RUNNING; the task is then stopped and waited for until STOPPED, untimed.
//   - floor: a fresh named netns, a veth pair into a bridge with the task's IP and default
//     route (netlink), a containerd container (image lookup, new overlayfs snapshot, OCI spec
//     with the netns path and the memory limit), task create and task start, timed until Start
//     returns; then torn down, untimed. Containerd and netlink directly, no orch code.
//
// Everything is removed at the end, also when the context is cancelled (Ctrl-C).
package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"orch/test/harness"
)

// DefaultN is the number of measured runs per side.
const DefaultN = 50

// SmokeN is the number of measured runs in smoke mode (make bench-smoke, TestSmoke).
const SmokeN = 2

// Config configures Run.
type Config struct {
	// N is the number of measured runs per side (default DefaultN).
	N int
	// BinDir holds orch-scheduler; "" builds orch's commands into the run's temp dir.
	BinDir string
	// Suffix is embedded in the names of what Run creates in shared places (the host netns
	// orchbench-<Suffix>); "" picks a random one.
	Suffix string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)

	// The extra figures (extra.go); all off by default, as in TestSmoke.
	// Burst starts this many tasks at once on each side (0: not measured).
	Burst int
	// Bulk starts this many tasks on the node in RunTask batches of 10 (0: not measured).
	Bulk int
	// Phases breaks the N sequential orch starts down into phases.
	Phases bool
	// Footprint reads orch-scheduler's VmRSS idle and with the burst's and bulk's tasks, and
	// a standalone orch-agent's idle (agentidle.go).
	Footprint bool
}

// Run starts a private orch installation, measures both sides and removes everything again.
// The error joins a measurement failure with any cleanup failure.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: needs root (containerd, mounts, network namespaces)")
	}
	if cfg.N <= 0 {
		cfg.N = DefaultN
	}
	if cfg.Suffix == "" {
		cfg.Suffix = harness.RandomSuffix()
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	res = &Result{Start: time.Now().UTC().Truncate(time.Second), N: cfg.N, Machine: machine()}

	// An interrupted run fails in whichever call was under way: say so instead.
	interrupted := func(err error) error {
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w", ctx.Err())
		}
		return err
	}
	e, err := setup(ctx, cfg)
	if err != nil {
		// setup has removed what it started; err includes any failure to do so.
		if ctx.Err() != nil {
			return nil, fmt.Errorf("interrupted during setup: %w", err)
		}
		return nil, err
	}
	defer func() {
		cfg.Logf("cleaning up")
		err = interrupted(err)
		if cerr := e.close(); cerr != nil {
			res, err = nil, errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()
	res.Image = e.image
	if v, verr := e.ctrdVersion(ctx); verr == nil {
		res.Machine.Containerd = v
	}

	var fp *FootprintResult
	if cfg.Footprint {
		// Idle: the scheduler and its agent have started and registered; give them a moment.
		time.Sleep(2 * time.Second)
		kib, err := rssKiB(e.sched.cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		fp = &FootprintResult{IdleKiB: kib}
		cfg.Logf("footprint idle: %s", mib(kib))
		if fp.AgentIdleKiB, err = e.agentIdleKiB(ctx); err != nil {
			return nil, err
		}
		cfg.Logf("footprint of orch-agent alone, idle: %s", mib(fp.AgentIdleKiB))
	}

	o, err := newOrchSide(ctx, e.client, e.image)
	if err != nil {
		return nil, err
	}
	f, err := newFloor(ctx, e.ctrd.Address, e.image, e.floorNSDir, e.hostNSPath)
	if err != nil {
		return nil, err
	}
	e.push(f.close)

	cfg.Logf("warm-up: one untimed task on each side (orch pulls the image)")
	if _, err := o.runOnce(ctx); err != nil {
		return nil, e.schedErr(fmt.Errorf("orch warm-up: %w", err))
	}
	if _, err := f.runOnce(ctx); err != nil {
		return nil, fmt.Errorf("floor warm-up: %w", err)
	}
	o.samples = nil

	orchSamples := make([]time.Duration, 0, cfg.N)
	floorSamples := make([]time.Duration, 0, cfg.N)
	plans0, plansErr := readPlanTimes(ctx, e.httpAddr)
	for i := range cfg.N {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, err := o.runOnce(ctx)
		if err != nil {
			return nil, e.schedErr(fmt.Errorf("orch run %d: %w", i+1, err))
		}
		orchSamples = append(orchSamples, d)
		fd, err := f.runOnce(ctx)
		if err != nil {
			return nil, fmt.Errorf("floor run %d: %w", i+1, err)
		}
		floorSamples = append(floorSamples, fd)
		cfg.Logf("run %d/%d: orch %s, floor %s", i+1, cfg.N, ms(d), ms(fd))
	}
	if plans1, err := readPlanTimes(ctx, e.httpAddr); err == nil && plansErr == nil {
		o.plans = plans1.since(plans0)
	} else {
		cfg.Logf("plan metrics not read: %v", errors.Join(plansErr, err))
	}
	res.Orch, res.Floor = Summarize(orchSamples), Summarize(floorSamples)
	res.Ratio = newRatio(res.Orch, res.Floor)
	if err := runExtras(ctx, cfg, e, o, f, fp, res); err != nil {
		return nil, err
	}
	return res, nil
}

// ctrdVersion asks the private containerd for its version.
func (e *env) ctrdVersion(ctx context.Context) (string, error) {
	cl, err := e.ctrd.NewClient()
	if err != nil {
		return "", err
	}
	defer cl.Close()
	v, err := cl.Version(ctx)
	if err != nil {
		return "", err
	}
	return v.Version, nil
}

// machine describes this host.
func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	m.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = strings.TrimRight(string(u.Release[:]), "\x00")
	}
	return m
}
