package bench

import (
	"encoding/json"
	"fmt"
	"strings"
)

// label names a scenario in the tables: "1000 nodes, run-task batches of 10".
func (s *SchedScenario) label() string {
	return fmt.Sprintf("%d nodes, %s", s.Nodes, describeMode(s.Mode, s.Services))
}

// writeTable prints the scheduling figures: throughput, then what each process used.
func (r *SchedResult) writeTable(b *strings.Builder) {
	fmt.Fprintf(b, "\nscheduling throughput: 3 schedulers on loopback, fresh for each row; simulated nodes in this process\n"+
		"(%d CPU units and %d MiB each), tasks of %d CPU unit and %d MiB, run-task from %d concurrent callers\n",
		r.NodeCPU, r.NodeMemory, r.TaskCPU, r.TaskMemory, r.Workers)
	const row = "%-38s %8s %7s %9s %10s %12s %13s\n"
	fmt.Fprintf(b, row, "", "tasks", "failed", "connect", "submitted", "all RUNNING", "placements/s")
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		fmt.Fprintf(b, row, s.label(), fmt.Sprint(s.Placed), fmt.Sprint(s.Failed), secs(s.Connect), secs(s.Submitted),
			secs(s.Running), fmt.Sprintf("%.0f", s.PerSecond))
	}
	fmt.Fprintf(b, "CPU seconds during placement [during connect] and peak RSS (VmHWM) per process\n")
	const row2 = "%-38s %13s %26s %12s %11s %20s %10s\n"
	fmt.Fprintf(b, row2, "", "leader CPU", "followers CPU", "bench CPU", "leader RSS", "followers RSS", "bench RSS")
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		var fcpu, frss []string
		for _, f := range s.Followers {
			fcpu = append(fcpu, cpuCell(f))
			frss = append(frss, mibShort(f.PeakRSSKiB))
		}
		fmt.Fprintf(b, row2, s.label(), cpuCell(s.Leader), strings.Join(fcpu, ", "), cpuCell(s.Bench),
			mibShort(s.Leader.PeakRSSKiB), strings.Join(frss, ", "), mibShort(s.Bench.PeakRSSKiB))
	}
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		if s.FirstFailure != "" {
			fmt.Fprintf(b, "%s: first failure: %s\n", s.label(), s.FirstFailure)
		}
		if s.LeaderChanged {
			fmt.Fprintf(b, "%s: the leader changed during the scenario\n", s.label())
		}
	}
}

// cpuCell is "40.1 [3.0]": placement, then connect CPU seconds.
func cpuCell(f ProcFigures) string { return fmt.Sprintf("%.1f [%.1f]", f.PlaceCPU, f.ConnectCPU) }

// mibShort is KiB as whole MiB.
func mibShort(kib int64) string { return fmt.Sprintf("%d MiB", (kib+512)/1024) }

// MarshalJSON writes durations in milliseconds.
func (s SchedScenario) MarshalJSON() ([]byte, error) {
	type figures struct {
		Nodes         int           `json:"nodes"`
		Mode          SchedMode     `json:"mode"`
		Services      int           `json:"services,omitempty"`
		Tasks         int           `json:"tasks"`
		Placed        int           `json:"placed"`
		Failed        int           `json:"failed"`
		FirstFailure  string        `json:"firstFailure,omitempty"`
		ConnectMs     float64       `json:"connectMs"`
		SubmittedMs   float64       `json:"submittedMs"`
		SimRunningMs  float64       `json:"nodesRunningMs"`
		RunningMs     float64       `json:"stateRunningMs"`
		PerSecond     float64       `json:"placementsPerSecond"`
		SessionErrors int64         `json:"sessionErrors"`
		LeaderChanged bool          `json:"leaderChanged"`
		Leader        ProcFigures   `json:"leader"`
		Followers     []ProcFigures `json:"followers"`
		Bench         ProcFigures   `json:"bench"`
	}
	return json.Marshal(figures{
		Nodes: s.Nodes, Mode: s.Mode, Services: s.Services, Tasks: s.Tasks, Placed: s.Placed, Failed: s.Failed,
		FirstFailure: s.FirstFailure, ConnectMs: msf(s.Connect), SubmittedMs: msf(s.Submitted),
		SimRunningMs: msf(s.SimRunning), RunningMs: msf(s.Running), PerSecond: float64(int64(s.PerSecond*10)) / 10,
		SessionErrors: s.SessionErrors, LeaderChanged: s.LeaderChanged, Leader: s.Leader, Followers: s.Followers, Bench: s.Bench,
	})
}
