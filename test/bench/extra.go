package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// The extra figures of issue #4, each enabled by its Config field (all off in TestSmoke):
//
//   - Burst: Config.Burst tasks started at once on each side, each timed from its own call to
//     RUNNING (orch) or to task Start returning (floor).
//   - Phases: where the time of the N sequential orch starts goes, from the task's timestamps,
//     the client's clock and the agent's "task running" log line.
//   - Footprint: the VmRSS of orch-scheduler --dev (scheduler and embedded agent in one
//     process) idle after startup, with the burst's tasks running and with the bulk's; and of
//     a standalone orch-agent, idle and connected (agentidle.go).
//   - Bulk: Config.Bulk tasks started on the one node in RunTask batches of 10, timed until all
//     are RUNNING, while checking that the agent's session never dropped.

// Defaults of the extra figures as cmd/orch-bench (and so `make bench`) runs them.
const (
	DefaultBurst = 50
	DefaultBulk  = 200
)

// ExtraResult holds the extra figures that were enabled; the others are nil.
type ExtraResult struct {
	Burst     *BurstResult     `json:"burst,omitempty"`
	Phases    *PhaseResult     `json:"phases,omitempty"`
	Footprint *FootprintResult `json:"footprint,omitempty"`
	Bulk      *BulkResult      `json:"bulk,omitempty"`
}

// Dist is a distribution of latencies with its p99 (nearest rank).
type Dist struct {
	N                             int
	P50, P95, P99, Min, Max, Mean time.Duration
}

// newDist summarises samples; no samples give a zero Dist.
func newDist(samples []time.Duration) Dist {
	s := Summarize(samples)
	return Dist{N: s.N, P50: s.Median, P95: s.P95, P99: percentile(samples, 0.99), Min: s.Min, Max: s.Max, Mean: s.Mean}
}

// percentile is the nearest-rank p-quantile of samples (0 for none).
func percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	rank := int(math.Ceil(p * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// MarshalJSON writes the distribution in milliseconds.
func (d Dist) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, `{"n":%d,"p50Ms":%v,"p95Ms":%v,"p99Ms":%v,"minMs":%v,"maxMs":%v,"meanMs":%v}`,
		d.N, msf(d.P50), msf(d.P95), msf(d.P99), msf(d.Min), msf(d.Max), msf(d.Mean)), nil
}

// BurstResult is Config.Burst starts at once on each side.
type BurstResult struct {
	N         int
	Orch      Dist          // each task: its RunTask call -> WatchTasks reports RUNNING
	Floor     Dist          // each task: netns+veth+create+start, all at once
	OrchWall  time.Duration // first call -> last task RUNNING
	FloorWall time.Duration
}

// MarshalJSON writes durations in milliseconds and the ratios.
func (b *BurstResult) MarshalJSON() ([]byte, error) {
	o, f := b.Orch, b.Floor
	return fmt.Appendf(nil, `{"n":%d,"orch":%s,"floor":%s,"orchWallMs":%v,"floorWallMs":%v,"ratioP50":%.3f,"ratioP95":%.3f,"ratioP99":%.3f}`,
		b.N, must(o.MarshalJSON()), must(f.MarshalJSON()), msf(b.OrchWall), msf(b.FloorWall),
		ratio(o.P50, f.P50), ratio(o.P95, f.P95), ratio(o.P99, f.P99)), nil
}

func must(b []byte, _ error) []byte { return b }

// FootprintResult is the resident memory of orch-scheduler --dev (scheduler and embedded
// agent in one process), and of a standalone orch-agent idle, in KiB; 0 where not measured.
type FootprintResult struct {
	IdleKiB      int64 `json:"idleKiB"`
	AgentIdleKiB int64 `json:"agentIdleKiB"`
	BurstKiB     int64 `json:"burstKiB"`
	BurstTasks   int   `json:"burstTasks"`
	BulkKiB      int64 `json:"bulkKiB"`
	BulkTasks    int   `json:"bulkTasks"`
}

// writeTable prints the extra figures after the main table.
func (x *ExtraResult) writeTable(b *strings.Builder) {
	const row = "%-40s %10s %10s %10s %10s %10s\n"
	if r := x.Burst; r != nil {
		fmt.Fprintf(b, "\nburst: %d starts at once per side\n", r.N)
		fmt.Fprintf(b, row, "", "p50", "p95", "p99", "max", "all done")
		fmt.Fprintf(b, row, "orch: each run-task -> RUNNING", ms(r.Orch.P50), ms(r.Orch.P95), ms(r.Orch.P99), ms(r.Orch.Max), ms(r.OrchWall))
		fmt.Fprintf(b, row, "floor: each netns+veth+create+start", ms(r.Floor.P50), ms(r.Floor.P95), ms(r.Floor.P99), ms(r.Floor.Max), ms(r.FloorWall))
		x := func(a, c time.Duration) string { return fmt.Sprintf("%.2fx", ratio(a, c)) }
		fmt.Fprintf(b, row, "ratio orch/floor", x(r.Orch.P50, r.Floor.P50), x(r.Orch.P95, r.Floor.P95), x(r.Orch.P99, r.Floor.P99),
			x(r.Orch.Max, r.Floor.Max), x(r.OrchWall, r.FloorWall))
	}
	if r := x.Phases; r != nil {
		r.writeTable(b)
	}
	if r := x.Footprint; r != nil {
		fmt.Fprintf(b, "\nfootprint: VmRSS of orch-scheduler --dev (scheduler + embedded agent, one process)\n")
		fmt.Fprintf(b, "  idle after startup:       %s\n", mib(r.IdleKiB))
		if r.BurstTasks > 0 {
			fmt.Fprintf(b, "  with %3d tasks running:   %s\n", r.BurstTasks, mib(r.BurstKiB))
		}
		if r.BulkTasks > 0 {
			fmt.Fprintf(b, "  with %3d tasks running:   %s\n", r.BulkTasks, mib(r.BulkKiB))
		}
		if r.AgentIdleKiB > 0 {
			fmt.Fprintf(b, "VmRSS of orch-agent alone (as on every other node), idle, connected: %s (%.1f MB)\n",
				mib(r.AgentIdleKiB), float64(r.AgentIdleKiB)*1024/1e6)
		}
	}
	if r := x.Bulk; r != nil {
		r.writeTable(b)
	}
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// runExtras measures the extra figures that cfg enables into res.Extra; fp holds the idle
// footprint if cfg.Footprint.
func runExtras(ctx context.Context, cfg Config, e *env, o *orchSide, f *floor, fp *FootprintResult, res *Result) error {
	if cfg.Burst <= 0 && cfg.Bulk <= 0 && !cfg.Phases && fp == nil {
		return nil
	}
	x := &ExtraResult{Footprint: fp}
	res.Extra = x
	if cfg.Phases {
		x.Phases = phasesOf(o.samples, e.sched.logPath, o.plans)
	}
	// rss records the footprint with n tasks running (burst: the first slot, bulk: the second).
	rss := func(bulk bool, n int) {
		if fp == nil {
			return
		}
		v, err := rssKiB(e.sched.cmd.Process.Pid)
		if err != nil {
			return
		}
		cfg.Logf("footprint with %d tasks: %s", n, mib(v))
		if bulk {
			fp.BulkKiB, fp.BulkTasks = v, n
		} else {
			fp.BurstKiB, fp.BurstTasks = v, n
		}
	}
	if cfg.Burst > 0 {
		cfg.Logf("burst: %d orch tasks at once", cfg.Burst)
		od, ow, err := o.burstOrch(ctx, cfg.Burst, func([]string) { rss(false, cfg.Burst) })
		if err != nil {
			return e.schedErr(fmt.Errorf("burst: %w", err))
		}
		cfg.Logf("burst: %d floor tasks at once", cfg.Burst)
		fd, fw, err := f.burstFloor(ctx, cfg.Burst)
		if err != nil {
			return fmt.Errorf("floor burst: %w", err)
		}
		x.Burst = &BurstResult{N: cfg.Burst, Orch: od, Floor: fd, OrchWall: ow, FloorWall: fw}
	}
	if cfg.Bulk > 0 {
		cfg.Logf("bulk: %d tasks in run-task batches of %d", cfg.Bulk, runTaskBatch)
		b, err := e.bulk(ctx, cfg.Bulk, func() { rss(true, cfg.Bulk) })
		if err != nil {
			return e.schedErr(fmt.Errorf("bulk: %w", err))
		}
		cfg.Logf("bulk: all %d RUNNING after %s", cfg.Bulk, ms(b.Wall))
		x.Bulk = b
	}
	return nil
}
