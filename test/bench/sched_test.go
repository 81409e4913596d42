package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"orch/test/harness"
)

func TestParseStatCPU(t *testing.T) {
	// Fields 3..15 of a real line: state ppid pgrp session tty tpgid flags minflt cminflt
	// majflt cmajflt utime stime.
	const tail = " S 1 1 1 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 8 0 100 1000000 500"
	for _, tc := range []struct {
		name    string
		stat    string
		want    int64
		wantErr bool
	}{
		{"plain", "1234 (orch-scheduler)" + tail, 325, false},
		{"command with spaces and parens", "1234 (a (b) c)" + tail, 325, false},
		{"no command", "1234 orch" + tail, 0, true},
		{"too short", "1234 (x) S 1 1 1 0 -1 4194560 1000 0 0 0 250", 0, true},
		{"not a number", "1234 (x) S 1 1 1 0 -1 4194560 1000 0 0 0 x 75", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU(tc.stat)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseStatCPU = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseStatusKiB(t *testing.T) {
	const status = "Name:\torch-scheduler\nVmPeak:\t 2000000 kB\nVmHWM:\t  812345 kB\nVmRSS:\t  700000 kB\nThreads:\t12\n"
	for _, tc := range []struct {
		name, status, key string
		want              int64
		wantErr           bool
	}{
		{"peak", status, "VmHWM", 812345, false},
		{"current", status, "VmRSS", 700000, false},
		{"missing", "Name:\tx\n", "VmHWM", 0, true},
		{"no unit", "VmHWM:\t12\n", "VmHWM", 0, true},
		{"prefix of another key", "VmHWMx:\t1 kB\n", "VmHWM", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatusKiB(tc.status, tc.key)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseStatusKiB(%s) = %d, %v; want %d, error %v", tc.key, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestProcOfSelf reads this process's figures the way a scenario reads the schedulers'.
func TestProcOfSelf(t *testing.T) {
	pid := os.Getpid()
	cpu, err := procCPU(pid)
	if err != nil || cpu < 0 {
		t.Fatalf("procCPU = %v, %v", cpu, err)
	}
	peak, err := peakRSSKiB(pid)
	if err != nil {
		t.Fatal(err)
	}
	rss, err := rssKiB(pid)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel updates VmHWM lazily: it may trail VmRSS a little.
	if rss <= 0 || peak <= 0 {
		t.Errorf("VmRSS %d KiB, VmHWM %d KiB: want both > 0", rss, peak)
	}
}

func TestSimSizes(t *testing.T) {
	for _, tc := range []struct {
		nodes    int
		cidr     string
		capacity int
	}{
		{20, "100.64.0.0/10", 20 * 253},
		{10_000, "100.64.0.0/10", 10_000 * 253},
		{16_384, "100.64.0.0/10", 16_384 * 253},
		{16_385, "10.0.0.0/8", 16_385 * 253},
		{70_000, "", 70_000 * 253},
	} {
		cidr, err := simCIDR(tc.nodes)
		if cidr != tc.cidr || (err != nil) != (tc.cidr == "") {
			t.Errorf("simCIDR(%d) = %q, %v; want %q", tc.nodes, cidr, err, tc.cidr)
		}
		if c := simCapacity(tc.nodes); c != tc.capacity {
			t.Errorf("simCapacity(%d) = %d, want %d", tc.nodes, c, tc.capacity)
		}
	}
	if _, err := RunSched(context.Background(), SchedConfig{BinDir: t.TempDir(), Nodes: []int{10}, Tasks: 10*253 + 1}); err == nil ||
		!strings.Contains(err.Error(), "do not fit") {
		t.Errorf("RunSched with more tasks than fit: %v, want a capacity error", err)
	}
}

// sampleResult is a Result with only control-plane figures.
func sampleResult() *Result {
	r := NewResult()
	r.HA = &HAResult{
		Writes:   []WriteLevel{{Clients: 16, PerSecond: 2000, Latency: Summarize([]time.Duration{8 * time.Millisecond})}, {Clients: 1, PerSecond: 400.04, Latency: Summarize([]time.Duration{2 * time.Millisecond})}},
		Failover: Summarize([]time.Duration{1500 * time.Millisecond, 2500 * time.Millisecond}),
	}
	r.Sched = &SchedResult{TaskCPU: 1, TaskMemory: 8, NodeCPU: 4096, NodeMemory: 16384, Workers: 32, Scenarios: []SchedScenario{{
		Nodes: 1000, Mode: ModeRunTask, Tasks: 100_000, Placed: 99_990, Failed: 10, FirstFailure: "RESOURCE:ENI: 0 of 1000",
		Connect: 4900 * time.Millisecond, Submitted: 39 * time.Second, SimRunning: 39100 * time.Millisecond, Running: 40 * time.Second,
		PerSecond: 2499.75, SessionErrors: 667,
		Leader:    ProcFigures{ID: "s1", ConnectCPU: 3.3, PlaceCPU: 22.2, PeakRSSKiB: 800 * 1024},
		Followers: []ProcFigures{{ID: "s2", PlaceCPU: 11.4, PeakRSSKiB: 300 * 1024}, {ID: "s3", PlaceCPU: 11.2, PeakRSSKiB: 310 * 1024}},
		Bench:     ProcFigures{ID: "orch-bench", PlaceCPU: 5.8, ConnectCPU: 2, PeakRSSKiB: 200 * 1024},
	}, {
		Nodes: 10_000, Mode: ModeService, Services: 100, Tasks: 100_000, Placed: 100_000, Running: 50 * time.Second,
		PerSecond: 2000, LeaderChanged: true,
	}}}
	return r
}

func TestWriteTableControlPlane(t *testing.T) {
	var out bytes.Buffer
	if err := sampleResult().WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	t.Logf("\n%s", table)
	for _, want := range []string{
		"2 CPUs", // the header of a run without the start figures
		"raft writes", "  1 clients", "  16 clients", "median 2000.0 ms",
		"scheduling throughput", "placements/s",
		"1000 nodes, run-task batches of 10",
		"10000 nodes, 100 services: the leader changed",
		"99990", "4.9 s", "40.0 s", "2500",
		"22.2 [3.3]", "11.4 [0.0], 11.2 [0.0]", "800 MiB", "300 MiB, 310 MiB",
		"first failure: RESOURCE:ENI: 0 of 1000",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	if strings.Contains(table, "orch: run-task -> RUNNING") {
		t.Errorf("table has the start figures of a run that did not measure them")
	}
	// One row per scenario in each of the two tables, lines no wider than a wide terminal.
	for _, line := range strings.Split(table, "\n") {
		if len(line) > 160 {
			t.Errorf("line of %d characters: %q", len(line), line)
		}
	}
}

func TestWriteJSONControlPlane(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.json")
	if err := sampleResult().WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Orch *json.RawMessage `json:"orch"`
		HA   struct {
			Writes []struct {
				Clients   int     `json:"clients"`
				PerSecond float64 `json:"writesPerSecond"`
				Latency   struct {
					MedianMs float64 `json:"medianMs"`
				} `json:"latency"`
			} `json:"writes"`
			Failover struct {
				N        int     `json:"n"`
				MedianMs float64 `json:"medianMs"`
			} `json:"failover"`
		} `json:"ha"`
		Sched struct {
			Workers   int `json:"runTaskWorkers"`
			Scenarios []struct {
				Nodes     int     `json:"nodes"`
				Mode      string  `json:"mode"`
				Placed    int     `json:"placed"`
				ConnectMs float64 `json:"connectMs"`
				RunningMs float64 `json:"stateRunningMs"`
				PerSecond float64 `json:"placementsPerSecond"`
				Leader    struct {
					PlaceCPU float64 `json:"placeCpuSeconds"`
					PeakRSS  int64   `json:"peakRssKiB"`
				} `json:"leader"`
				Followers []struct {
					ID string `json:"id"`
				} `json:"followers"`
			} `json:"scenarios"`
		} `json:"sched"`
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("decode: %v\n%s", err, data)
	}
	if n := bytes.Count(data, []byte(`"samplesMs"`)); n != 1 {
		t.Errorf("%d sample lists, want 1 (the failovers'; the writes' are too many)", n)
	}
	if got.Orch != nil {
		t.Errorf("orch figures in a run that did not measure them:\n%s", data)
	}
	if len(got.HA.Writes) != 2 || got.HA.Writes[1].PerSecond != 400 || got.HA.Writes[0].Latency.MedianMs != 8 ||
		got.HA.Failover.N != 2 || got.HA.Failover.MedianMs != 2000 {
		t.Errorf("ha figures wrong:\n%s", data)
	}
	sc := got.Sched.Scenarios
	if got.Sched.Workers != 32 || len(sc) != 2 || sc[0].Nodes != 1000 || sc[0].Mode != "run-task" || sc[0].Placed != 99_990 ||
		sc[0].ConnectMs != 4900 || sc[0].RunningMs != 40_000 || sc[0].PerSecond != 2499.7 || sc[0].Leader.PlaceCPU != 22.2 ||
		sc[0].Leader.PeakRSS != 800*1024 || len(sc[0].Followers) != 2 || sc[0].Followers[1].ID != "s3" || sc[1].Mode != "service" {
		t.Errorf("sched figures wrong:\n%s", data)
	}
}

// TestSchedSmoke runs the scheduling runner end to end at the smoke size (three schedulers,
// 20 simulated nodes, 200 tasks in each mode) so that it cannot rot.
func TestSchedSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: starts three schedulers twice (-short)")
	}
	bins := harness.BuildBinaries(t, "./cmd/orch-scheduler")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := RunSched(ctx, SchedConfig{BinDir: filepath.Dir(bins["orch-scheduler"]), Nodes: []int{SmokeSchedNodes},
		Tasks: SmokeSchedTasks, Services: SmokeSchedServices, Logf: t.Logf, WorkDirRoot: t.TempDir()})
	if err != nil {
		t.Fatalf("RunSched: %v", err)
	}
	if len(res.Scenarios) != 2 {
		t.Fatalf("%d scenarios, want 2 (run-task, service)", len(res.Scenarios))
	}
	for i, s := range res.Scenarios {
		if s.Mode != []SchedMode{ModeRunTask, ModeService}[i] || s.Nodes != SmokeSchedNodes || s.Placed != SmokeSchedTasks ||
			s.Failed != 0 || s.PerSecond <= 0 || s.Connect <= 0 || s.Running < s.SimRunning || s.SimRunning <= 0 {
			t.Errorf("scenario %d: %+v", i, s)
		}
		if s.Leader.ID == "" || len(s.Followers) != 2 || s.Leader.PeakRSSKiB <= 0 || s.Followers[0].PeakRSSKiB <= 0 ||
			s.Bench.PeakRSSKiB <= 0 || s.Leader.ConnectCPU+s.Leader.PlaceCPU+s.Followers[0].ConnectCPU+s.Followers[0].PlaceCPU <= 0 {
			t.Errorf("scenario %d: process figures %+v %+v %+v", i, s.Leader, s.Followers, s.Bench)
		}
	}
	var b strings.Builder
	res.writeTable(&b)
	t.Logf("\n%s", b.String())
}
