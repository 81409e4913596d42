// Command orch-bench measures orch on this machine and prints every figure in one table (and
// with -json writes them to a file, for history):
//
//	go run ./test/bench/cmd/orch-bench -bin bin -n 20 -json bench.json   # make bench
//
// A full run measures, one part after the other (see package orch/test/bench):
//
//   - task start next to the floor (a bare containerd create+start with the same networking),
//     -n runs per side, and the extra figures: -burst (50 starts at once per side), -phases
//     (where the time of one start goes), -footprint (the scheduler's RSS) and -bulk (200
//     tasks on one node); this part needs root;
//   - -raft: Raft write throughput and latency at 1/16/64 clients and leader kill -9 failover
//     on three schedulers on loopback;
//   - -sched: scheduling throughput on three schedulers with simulated nodes: 1,000 and
//     10,000 nodes (-sched-nodes), 100,000 tasks (-sched-tasks) as run-task batches and as
//     100 services (-sched-services), each on fresh schedulers.
//
// Each part can be turned off (-burst 0, -bulk 0, -phases=false, -footprint=false,
// -raft=false, -sched=false); -ha runs only the Raft figures, -sched-only only the scheduling
// ones. -smoke runs 2 measurements per side, none of the extra or Raft figures and the
// scheduling figures at a tiny size (20 nodes, 200 tasks, both modes), for make bench-smoke.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"orch/test/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "orch-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		n         = flag.Int("n", bench.DefaultN, "measured runs per side")
		jsonPath  = flag.String("json", "", "also write the result as JSON to this file")
		binDir    = flag.String("bin", "", "directory with orch-scheduler (default: go build ./cmd/... into a temp dir)")
		smoke     = flag.Bool("smoke", false, fmt.Sprintf("smoke mode: n=%d, no extra or Raft figures, scheduling at %d nodes and %d tasks", bench.SmokeN, bench.SmokeSchedNodes, bench.SmokeSchedTasks))
		ha        = flag.Bool("ha", false, "measure only the control plane: Raft writes at 1/16/64 clients and leader failover on 3 schedulers")
		raft      = flag.Bool("raft", true, "also measure the -ha figures in a full run")
		haDur     = flag.Duration("ha-duration", 5*time.Second, "Raft figures: how long each concurrency level writes")
		haKills   = flag.Int("ha-failovers", 10, "Raft figures: leader kills to measure")
		burst     = flag.Int("burst", bench.DefaultBurst, "start this many tasks at once on each side, p50/p95/p99 of each (0: skip)")
		bulk      = flag.Int("bulk", bench.DefaultBulk, "start this many tasks on the node in run-task batches of 10 until all RUNNING (0: skip)")
		phases    = flag.Bool("phases", true, "break the sequential orch starts down into phases")
		foot      = flag.Bool("footprint", true, "VmRSS of orch-scheduler --dev idle and with the burst's and bulk's tasks, and of a standalone orch-agent idle")
		sched     = flag.Bool("sched", true, "also measure scheduling throughput with simulated nodes in a full run")
		schedOnly = flag.Bool("sched-only", false, "measure only scheduling throughput")
		sNodes    = flag.String("sched-nodes", joinInts(bench.DefaultSchedNodes), "scheduling: node counts, comma-separated, fresh schedulers for each scenario")
		sTasks    = flag.Int("sched-tasks", bench.DefaultSchedTasks, "scheduling: tasks per scenario")
		sServices = flag.Int("sched-services", bench.DefaultSchedServices, "scheduling: the service mode submits the tasks as this many services")
		sWorkers  = flag.Int("sched-workers", bench.DefaultSchedWorkers, "scheduling: concurrent run-task callers (batches of 10)")
		sModes    = flag.String("sched-modes", string(bench.ModeRunTask)+","+string(bench.ModeService), "scheduling: submission modes, comma-separated")
		sTimeout  = flag.Duration("sched-timeout", bench.DefaultSchedTimeout, "scheduling: per scenario, first submission to all RUNNING")
		cpuProf   = flag.String("cpuprofile", "", "write a CPU profile of this process (the floor's client, the simulated nodes, the API clients) to this file")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", flag.Args())
	}
	if *ha && *schedOnly {
		return errors.New("-ha and -sched-only each run only one part: give one")
	}
	nodes, err := parseInts(*sNodes)
	if err != nil {
		return fmt.Errorf("-sched-nodes: %w", err)
	}
	var modes []bench.SchedMode
	for _, m := range strings.Split(*sModes, ",") {
		modes = append(modes, bench.SchedMode(strings.TrimSpace(m)))
	}
	if *smoke {
		*n = bench.SmokeN
		*burst, *bulk, *phases, *foot, *raft = 0, 0, false, false, false
		nodes, *sTasks, *sServices = []int{bench.SmokeSchedNodes}, bench.SmokeSchedTasks, bench.SmokeSchedServices
	}
	if *n < 1 {
		return fmt.Errorf("-n %d: want at least 1", *n)
	}
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	doStart := !*ha && !*schedOnly
	doHA := *ha || (doStart && *raft)
	doSched := *schedOnly || (doStart && *sched)

	// The first Ctrl-C cancels the run, which then cleans up; later ones are ignored until
	// the cleanup is done, so that nothing is left behind.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "orch-bench: %6.1fs "+format+"\n", append([]any{time.Since(start).Seconds()}, args...)...)
	}
	if *binDir == "" && (doHA || doSched) {
		dir, err := os.MkdirTemp("", "orch-bench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := bench.Build(ctx, dir, logf); err != nil {
			return err
		}
		*binDir = dir
	}

	res := bench.NewResult()
	var errs []error
	if doStart {
		r, err := bench.Run(ctx, bench.Config{N: *n, BinDir: *binDir, Logf: logf,
			Burst: *burst, Bulk: *bulk, Phases: *phases, Footprint: *foot})
		if err != nil {
			return err
		}
		res = r
	}
	// A later part that fails still leaves the figures measured before it.
	if doHA && ctx.Err() == nil {
		logf("raft: writes at 1/16/64 clients, %d leader failovers", *haKills)
		r, err := bench.RunHA(ctx, bench.HAConfig{BinDir: *binDir, Duration: *haDur, Failovers: *haKills, Logf: logf})
		if err != nil {
			errs = append(errs, fmt.Errorf("raft figures: %w", err))
		}
		res.HA = r
	}
	if doSched && ctx.Err() == nil {
		r, err := bench.RunSched(ctx, bench.SchedConfig{BinDir: *binDir, Nodes: nodes, Modes: modes, Tasks: *sTasks,
			Services: *sServices, Workers: *sWorkers, Timeout: *sTimeout, Logf: logf})
		if err != nil {
			errs = append(errs, fmt.Errorf("scheduling figures: %w", err))
		}
		if r != nil && len(r.Scenarios) > 0 {
			res.Sched = r
		}
	}
	if ctx.Err() != nil {
		errs = append(errs, fmt.Errorf("interrupted: %w", ctx.Err()))
	}
	logf("done in %s", time.Since(start).Round(time.Second))
	if err := res.WriteTable(os.Stdout); err != nil {
		return err
	}
	if *jsonPath != "" {
		if err := res.WriteJSON(*jsonPath); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// parseInts parses "1000,10000".
func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%q: want positive numbers, comma-separated", s)
		}
		out = append(out, v)
	}
	return out, nil
}

func joinInts(vs []int) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = strconv.Itoa(v)
	}
	return strings.Join(parts, ",")
}
