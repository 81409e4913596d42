// Command orch-bench measures orch's task start latency next to the floor (a bare containerd
// create+start with the same networking) on this machine and prints both with their ratio:
//
//	go run ./test/bench/cmd/orch-bench -n 20 -json bench.json
//
// It needs root and starts everything it uses in private places (see package orch/test/bench).
// By default it also measures the extra figures: -burst (50 starts at once per side), -phases
// (where the time of one start goes), -footprint (the scheduler's RSS) and -bulk (200 tasks on
// one node); each can be turned off (-burst 0, -bulk 0, -phases=false, -footprint=false).
// -smoke runs 2 measurements per side and none of the extra figures, for make bench-smoke.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
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
		n        = flag.Int("n", bench.DefaultN, "measured runs per side")
		jsonPath = flag.String("json", "", "also write the result as JSON to this file")
		binDir   = flag.String("bin", "", "directory with orch-scheduler (default: go build ./cmd/... into a temp dir)")
		smoke    = flag.Bool("smoke", false, fmt.Sprintf("smoke mode: n=%d", bench.SmokeN))
		ha       = flag.Bool("ha", false, "measure the control plane instead: Raft writes at 1/16/64 clients and leader failover on 3 schedulers (needs -bin)")
		haDur    = flag.Duration("ha-duration", 5*time.Second, "-ha: how long each concurrency level writes")
		haKills  = flag.Int("ha-failovers", 10, "-ha: leader kills to measure")
		burst    = flag.Int("burst", bench.DefaultBurst, "start this many tasks at once on each side, p50/p95/p99 of each (0: skip)")
		bulk     = flag.Int("bulk", bench.DefaultBulk, "start this many tasks on the node in run-task batches of 10 until all RUNNING (0: skip)")
		phases   = flag.Bool("phases", true, "break the sequential orch starts down into phases")
		foot     = flag.Bool("footprint", true, "VmRSS of orch-scheduler --dev idle and with the burst's and bulk's tasks")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", flag.Args())
	}
	if *smoke {
		*n = bench.SmokeN
		*burst, *bulk, *phases, *foot = 0, 0, false, false
	}
	if *n < 1 {
		return fmt.Errorf("-n %d: want at least 1", *n)
	}
	// The first Ctrl-C cancels the run, which then cleans up; later ones are ignored until
	// the cleanup is done, so that nothing is left behind.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "orch-bench: %6.1fs "+format+"\n", append([]any{time.Since(start).Seconds()}, args...)...)
	}
	if *ha {
		if *binDir == "" {
			return fmt.Errorf("-ha needs -bin DIR with orch-scheduler (make build puts it in bin/)")
		}
		res, err := bench.RunHA(ctx, bench.HAConfig{BinDir: *binDir, Duration: *haDur, Failovers: *haKills, Logf: logf})
		if err != nil {
			return err
		}
		return res.WriteTable(os.Stdout)
	}
	res, err := bench.Run(ctx, bench.Config{N: *n, BinDir: *binDir, Logf: logf,
		Burst: *burst, Bulk: *bulk, Phases: *phases, Footprint: *foot})
	if err != nil {
		return err
	}
	if err := res.WriteTable(os.Stdout); err != nil {
		return err
	}
	if *jsonPath != "" {
		return res.WriteJSON(*jsonPath)
	}
	return nil
}
