package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"orch/pkg/client"
	"orch/pkg/taskdef"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/placement"
	"orch/test/bench/nodesim"
)

// Scheduling throughput (issue #4, figure 2): how fast three schedulers on loopback place
// tasks on many nodes and see them RUNNING. The nodes are simulated in this process (package
// nodesim): each enrolls with the worker join token and keeps its own mutual TLS session with
// the real agent protocol, but fakes the runtime (a task reports RUNNING as soon as it is
// assigned). Each scenario (a node count and a way of submitting) gets a fresh set of
// schedulers, so that it starts from an empty state, its peak RSS is its own and nothing has to
// be stopped between scenarios:
//
//   - connect: nodesim.Start until every node's session is up (enroll, register, session);
//   - placement: from the first submission until the state counts every task RUNNING
//     (DescribeClusters, polled once the simulated nodes have reported them all), submitted
//     either as RunTask batches of 10 from Workers concurrent callers or as Services services
//     (CreateService each, one after the other);
//   - the CPU seconds (utime+stime) each scheduler used during connect and during placement,
//     and each one's peak RSS (VmHWM) at the end, the leader's apart from the followers'; the
//     same for this process, which runs the simulated nodes and the clients on the same cores.

// SchedMode is how a scenario submits its tasks.
type SchedMode string

// The submission modes.
const (
	ModeRunTask SchedMode = "run-task" // RunTask batches of 10
	ModeService SchedMode = "service"  // CreateService, desiredCount Tasks/Services each
)

// Defaults of the scheduling figures as cmd/orch-bench (make bench) runs them, and the sizes of
// its smoke run (make bench-smoke, TestSchedSmoke).
const (
	DefaultSchedTasks    = 100_000
	DefaultSchedServices = 100
	DefaultSchedWorkers  = 32
	DefaultSchedTimeout  = 10 * time.Minute
	SmokeSchedNodes      = 20
	SmokeSchedTasks      = 200
	SmokeSchedServices   = 2
)

// DefaultSchedNodes are the node counts of a full run.
var DefaultSchedNodes = []int{1_000, 10_000}

// The simulated nodes and tasks: a task takes 1 CPU unit, 8 MiB and one address of its node's
// /24; a node has nodesim's default 4096 units and 16 GiB, so addresses bound it (253 tasks).
const (
	simCluster = "sim"
	simFamily  = "sim"
	simTaskCPU = 1
	simTaskMem = 8
	simNodeCPU = 4096
	simNodeMem = 16384
	simTaskDef = `{"family":"sim","containerDefinitions":[{"name":"app","image":"busybox","cpu":1,"memory":8}]}`
	// connectTimeout bounds connecting the nodes of one scenario.
	connectTimeout = 10 * time.Minute
	// stateTimeout bounds the wait for the state to count what the nodes reported RUNNING.
	stateTimeout = time.Minute
	// progressEvery is how often a scenario logs its progress.
	progressEvery = 10 * time.Second
)

// SchedConfig configures RunSched.
type SchedConfig struct {
	BinDir      string        // where orch-scheduler is
	Nodes       []int         // node counts, one set of scenarios each; default DefaultSchedNodes
	Modes       []SchedMode   // default run-task, then service
	Tasks       int           // per scenario; default DefaultSchedTasks
	Services    int           // the service mode's services; default DefaultSchedServices
	Workers     int           // the run-task mode's concurrent callers; default DefaultSchedWorkers
	Timeout     time.Duration // per scenario, first submission to all RUNNING; default DefaultSchedTimeout
	Logf        func(format string, args ...any)
	WorkDirRoot string // default os.TempDir()
}

// SchedResult holds the scenarios measured, in the order run.
type SchedResult struct {
	TaskCPU    int             `json:"taskCpu"`
	TaskMemory int             `json:"taskMemoryMiB"`
	NodeCPU    int             `json:"nodeCpu"`
	NodeMemory int             `json:"nodeMemoryMiB"`
	Workers    int             `json:"runTaskWorkers"`
	Scenarios  []SchedScenario `json:"scenarios"`
}

// SchedScenario is one node count and one submission mode on fresh schedulers.
type SchedScenario struct {
	Nodes    int
	Mode     SchedMode
	Services int // service mode: how many services
	Tasks    int // submitted
	Placed   int // run-task: tasks the calls returned; service: Tasks
	Failed   int // run-task: failures returned and tasks of failed calls
	// FirstFailure is the first failure's reason or error, if any.
	FirstFailure string
	Connect      time.Duration // nodesim.Start until every session is up
	Submitted    time.Duration // first submission until the last call returned
	SimRunning   time.Duration // first submission until the nodes reported every task RUNNING
	Running      time.Duration // first submission until the state counts every task RUNNING
	PerSecond    float64       // Placed / Running
	// SessionErrors counts node sessions that failed and reconnected, connect included (the
	// nodes that first dial a follower count one each).
	SessionErrors int64
	// LeaderChanged is set if another scheduler led at the end than at the start.
	LeaderChanged bool
	Leader        ProcFigures
	Followers     []ProcFigures
	Bench         ProcFigures // this process: the simulated nodes and the clients
}

// ProcFigures is what one process used during a scenario.
type ProcFigures struct {
	ID         string  `json:"id"`
	ConnectCPU float64 `json:"connectCpuSeconds"` // during connect
	PlaceCPU   float64 `json:"placeCpuSeconds"`   // during placement
	PeakRSSKiB int64   `json:"peakRssKiB"`        // VmHWM at the end
}

// RunSched measures every scenario of cfg, each on fresh schedulers, and removes what it
// started. On error the result holds the scenarios measured before.
func RunSched(ctx context.Context, cfg SchedConfig) (*SchedResult, error) {
	if len(cfg.Nodes) == 0 {
		cfg.Nodes = DefaultSchedNodes
	}
	if len(cfg.Modes) == 0 {
		cfg.Modes = []SchedMode{ModeRunTask, ModeService}
	}
	if cfg.Tasks <= 0 {
		cfg.Tasks = DefaultSchedTasks
	}
	if cfg.Services <= 0 {
		cfg.Services = DefaultSchedServices
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultSchedWorkers
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultSchedTimeout
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	for _, m := range cfg.Modes {
		if m != ModeRunTask && m != ModeService {
			return nil, fmt.Errorf("sched: unknown mode %q (want %s or %s)", m, ModeRunTask, ModeService)
		}
	}
	for _, n := range cfg.Nodes {
		if _, err := simCIDR(n); err != nil {
			return nil, err
		}
		if c := simCapacity(n); cfg.Tasks > c {
			return nil, fmt.Errorf("sched: %d tasks do not fit on %d nodes (%d at most: %d addresses per node's /24)",
				cfg.Tasks, n, c, c/n)
		}
	}
	res := &SchedResult{TaskCPU: simTaskCPU, TaskMemory: simTaskMem, NodeCPU: simNodeCPU, NodeMemory: simNodeMem, Workers: cfg.Workers}
	for _, n := range cfg.Nodes {
		for _, m := range cfg.Modes {
			cfg.Logf("sched: %d nodes, %d tasks as %s", n, cfg.Tasks, describeMode(m, cfg.Services))
			s, err := runScenario(ctx, cfg, n, m)
			if err != nil {
				return res, fmt.Errorf("sched: %d nodes, %s: %w", n, m, err)
			}
			res.Scenarios = append(res.Scenarios, *s)
		}
	}
	return res, nil
}

// simCIDR is a cluster network with a /24 for each of nodes nodes.
func simCIDR(nodes int) (string, error) {
	for _, c := range []struct {
		cidr string
		n    int
	}{{"100.64.0.0/10", 1 << 14}, {"10.0.0.0/8", 1 << 16}} {
		if nodes <= c.n {
			return c.cidr, nil
		}
	}
	return "", fmt.Errorf("sched: %d nodes: a cluster network holds at most %d /24s", nodes, 1<<16)
}

// simCapacity is how many simulated tasks nodes simulated nodes hold.
func simCapacity(nodes int) int {
	perNode := min(placement.SubnetSize("10.0.0.0/24"), simNodeCPU/simTaskCPU, simNodeMem/simTaskMem)
	return nodes * perNode
}

func describeMode(m SchedMode, services int) string {
	if m == ModeService {
		return fmt.Sprintf("%d services", services)
	}
	return fmt.Sprintf("run-task batches of %d", runTaskBatch)
}

// procSet is the processes a scenario measures: the leader first, then the followers, then
// this process.
type procSet struct {
	ids  []string
	pids []int
}

func (p procSet) cpu() ([]float64, error) {
	out := make([]float64, len(p.pids))
	for i, pid := range p.pids {
		v, err := procCPU(pid)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// runScenario starts fresh schedulers and nodes, submits cfg.Tasks tasks in mode m and waits
// until the state counts them all RUNNING.
func runScenario(ctx context.Context, cfg SchedConfig, nodes int, m SchedMode) (_ *SchedScenario, err error) {
	logf := cfg.Logf
	sc, err := startSchedulers(ctx, cfg.BinDir, cfg.WorkDirRoot, logf)
	if err != nil {
		return nil, err
	}
	defer sc.close()
	defer func() {
		if err != nil && ctx.Err() == nil {
			err = sc.withLogs(err)
		}
	}()
	leader, err := sc.leader(ctx)
	if err != nil {
		return nil, err
	}
	// The clients talk to the leader, which places: followers would forward every write.
	c, err := client.Dial(ctx, sc.endpoints(leader), sc.creds.ClientOpts()...)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cidr, err := simCIDR(nodes)
	if err != nil {
		return nil, err
	}
	if _, err := c.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: simCluster, Cidr: cidr}); err != nil {
		return nil, fmt.Errorf("create cluster %s: %w", simCluster, err)
	}
	td, err := taskdef.Parse([]byte(simTaskDef))
	if err != nil {
		return nil, err
	}
	if _, err := c.RegisterTaskDefinition(ctx, &orchv1.RegisterTaskDefinitionRequest{TaskDefinition: td}); err != nil {
		return nil, fmt.Errorf("register task definition %s: %w", simFamily, err)
	}

	procs := procSet{ids: []string{leader}, pids: []int{sc.server(leader).p.cmd.Process.Pid}}
	for _, srv := range sc.servers {
		if srv.id != leader {
			procs.ids, procs.pids = append(procs.ids, srv.id), append(procs.pids, srv.p.cmd.Process.Pid)
		}
	}
	procs.ids, procs.pids = append(procs.ids, "orch-bench"), append(procs.pids, os.Getpid())
	// This process's peak RSS starts over: return what the last scenario freed, then reset
	// VmHWM to the current RSS (clear_refs 5); best effort, the figure says so if it fails.
	debug.FreeOSMemory()
	// The simulated nodes share the cores with the schedulers they measure: their collector
	// runs seldom (this process holds ~1.5 GB of TLS connections and keys at 10,000 nodes),
	// as the schedulers' own does with a large state (internal/gctune).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	hwmReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil

	cpu0, err := procs.cpu()
	if err != nil {
		return nil, err
	}
	logf("sched: connecting %d simulated nodes", nodes)
	t0 := time.Now()
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	sim, err := nodesim.Start(cctx, nodesim.Config{Endpoints: sc.endpoints(""), Nodes: nodes, Clusters: []string{simCluster},
		CPU: simNodeCPU, Memory: simNodeMem, JoinToken: sc.creds.WorkerToken})
	if err != nil {
		return nil, fmt.Errorf("start %d simulated nodes: %w", nodes, err)
	}
	defer sim.Close()
	logf("sched: %d nodes registered after %s, waiting for their sessions", nodes, secs(time.Since(t0)))
	if err := waitUntil(cctx, func() bool { return sim.Connected() >= int64(nodes) }, func() string {
		return fmt.Sprintf("%d of %d sessions up, %d session errors", sim.Connected(), nodes, sim.Errors())
	}, sc, logf); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	s := &SchedScenario{Nodes: nodes, Mode: m, Tasks: cfg.Tasks, Connect: time.Since(t0)}
	logf("sched: %d nodes connected in %s", nodes, secs(s.Connect))
	// Connecting left this process with garbage (10,000 keys, certificates and handshakes):
	// collect it before the measured window, as a Go benchmark does before its timer starts,
	// so that a collection of the simulator's heap does not land in the middle of it.
	runtime.GC()
	cpu1, err := procs.cpu()
	if err != nil {
		return nil, err
	}

	pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	start := time.Now()
	var submitted atomic.Int64
	progress := func() string {
		return fmt.Sprintf("%d of %d submitted, %d RUNNING on the nodes, %d session errors so far", submitted.Load(), cfg.Tasks, sim.Running(), sim.Errors())
	}
	stopProgress := logEvery(progressEvery, func() { logf("sched: %s after %s", progress(), secs(time.Since(start))) })
	switch m {
	case ModeRunTask:
		err = submitRunTasks(pctx, c, cfg.Tasks, cfg.Workers, &submitted, s)
	case ModeService:
		s.Services = cfg.Services
		err = submitServices(pctx, c, cfg.Tasks, cfg.Services, &submitted, s)
	}
	s.Submitted = time.Since(start)
	if err == nil {
		err = waitUntil(pctx, func() bool { return sim.Running() >= int64(s.Placed) }, progress, sc, nil)
	}
	stopProgress()
	if err != nil {
		return nil, fmt.Errorf("placement: %w", err)
	}
	s.SimRunning = time.Since(start)
	if err := waitStateRunning(ctx, c, s.Placed); err != nil {
		return nil, err
	}
	s.Running = time.Since(start)
	s.PerSecond = float64(s.Placed) / s.Running.Seconds()
	cpu2, err := procs.cpu()
	if err != nil {
		return nil, err
	}
	s.SessionErrors = sim.Errors()
	if now, err := sc.leader(ctx); err != nil || now != leader {
		s.LeaderChanged = true
		logf("sched: leader at the end is %q (%v), was %s", now, err, leader)
	}
	for i, id := range procs.ids {
		f := ProcFigures{ID: id, ConnectCPU: round2(cpu1[i] - cpu0[i]), PlaceCPU: round2(cpu2[i] - cpu1[i])}
		if f.PeakRSSKiB, err = peakRSSKiB(procs.pids[i]); err != nil {
			return nil, err
		}
		switch {
		case i == 0:
			s.Leader = f
		case i == len(procs.ids)-1:
			if !hwmReset {
				f.ID += " (peak since start)"
			}
			s.Bench = f
		default:
			s.Followers = append(s.Followers, f)
		}
	}
	logf("sched: %d tasks RUNNING after %s (nodes: %s; submitted in %s): %.0f placements/s, %d failed; CPU leader %.1f s, followers %s, this process %.1f s",
		s.Placed, secs(s.Running), secs(s.SimRunning), secs(s.Submitted), s.PerSecond, s.Failed,
		s.Leader.PlaceCPU, followersCPU(s.Followers), s.Bench.PlaceCPU)
	return s, nil
}

// submitRunTasks submits tasks as RunTask batches of runTaskBatch from workers concurrent
// callers, counting into s what was placed and what failed.
func submitRunTasks(ctx context.Context, c *client.Client, tasks, workers int, submitted *atomic.Int64, s *SchedScenario) error {
	var placed, failed atomic.Int64
	var mu sync.Mutex
	first := func(msg string) {
		mu.Lock()
		if s.FirstFailure == "" {
			s.FirstFailure = msg
		}
		mu.Unlock()
	}
	batches := make(chan int32)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for n := range batches {
				resp, err := c.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: simCluster, TaskDefinition: simFamily, Count: n, StartedBy: "orch-bench-sched"})
				submitted.Add(int64(n))
				if err != nil {
					failed.Add(int64(n))
					first(err.Error())
					continue
				}
				placed.Add(int64(len(resp.GetTasks())))
				failed.Add(int64(len(resp.GetFailures())))
				if f := resp.GetFailures(); len(f) > 0 {
					first(f[0].GetReason() + ": " + f[0].GetDetail())
				}
			}
		})
	}
	for left := tasks; left > 0 && ctx.Err() == nil; left -= runTaskBatch {
		batches <- int32(min(runTaskBatch, left))
	}
	close(batches)
	wg.Wait()
	s.Placed, s.Failed = int(placed.Load()), int(failed.Load())
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.Placed == 0 {
		return fmt.Errorf("no task placed: %s", s.FirstFailure)
	}
	return nil
}

// submitServices creates services services that together want tasks tasks.
func submitServices(ctx context.Context, c *client.Client, tasks, services int, submitted *atomic.Int64, s *SchedScenario) error {
	for i := range services {
		desired := int32(tasks / services)
		if i < tasks%services {
			desired++
		}
		if _, err := c.CreateService(ctx, &orchv1.CreateServiceRequest{
			Cluster: simCluster, ServiceName: fmt.Sprintf("sim-%03d", i), TaskDefinition: simFamily, DesiredCount: &desired,
		}); err != nil {
			return fmt.Errorf("create service sim-%03d: %w", i, err)
		}
		submitted.Add(int64(desired))
	}
	s.Placed = tasks
	return nil
}

// waitStateRunning polls DescribeClusters until the state counts want tasks RUNNING.
func waitStateRunning(ctx context.Context, c *client.Client, want int) error {
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	var last string
	for {
		resp, err := c.DescribeClusters(ctx, &orchv1.DescribeClustersRequest{Clusters: []string{simCluster}})
		if err == nil && len(resp.GetClusters()) == 1 {
			cl := resp.GetClusters()[0]
			if int(cl.GetRunningTasksCount()) >= want {
				return nil
			}
			last = fmt.Sprintf("%d RUNNING, %d pending", cl.GetRunningTasksCount(), cl.GetPendingTasksCount())
		} else if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the nodes report %d tasks RUNNING but the state does not count them: %w (last: %s)", want, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitUntil polls done every 20ms until it holds, ctx ends (the error says what) or a
// scheduler exits. logf, if not nil, gets what every progressEvery.
func waitUntil(ctx context.Context, done func() bool, what func() string, sc *schedulers, logf func(string, ...any)) error {
	last := time.Now()
	for !done() {
		for _, srv := range sc.servers {
			if srv.p.exited() {
				return fmt.Errorf("scheduler %s exited: %v (%s)", srv.id, srv.p.wait(), what())
			}
		}
		if logf != nil && time.Since(last) >= progressEvery {
			logf("sched: %s", what())
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s", ctx.Err(), what())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// logEvery calls fn every d until the returned stop is called.
func logEvery(d time.Duration, fn func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fn()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// round2 rounds to hundredths (CPU seconds are counted in them).
func round2(f float64) float64 { return math.Round(f*100) / 100 }

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// followersCPU is the followers' placement CPU seconds, "1.0 + 2.0 s".
func followersCPU(fs []ProcFigures) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf("%.1f", f.PlaceCPU)
	}
	return strings.Join(parts, " + ") + " s"
}
