package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"orch/test/bench"
	"orch/test/harness"
)

// TestSmoke runs the smoke mode end to end (build, containerd, registry, orch-scheduler --dev,
// warm-up, SmokeN runs per side, cleanup) so that the benchmark cannot rot, and checks that
// nothing named after the run is left behind.
func TestSmoke(t *testing.T) {
	harness.RequireRoot(t)
	if testing.Short() {
		t.Skip("skipping: the benchmark smoke run starts containerd, a registry and orch (-short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	suffix := harness.RandomSuffix()
	res, err := bench.Run(ctx, bench.Config{N: bench.SmokeN, Suffix: suffix, Logf: t.Logf})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	var table bytes.Buffer
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	for _, side := range []struct {
		name string
		s    bench.Stats
	}{{"orch", res.Orch}, {"floor", res.Floor}} {
		if side.s.N != bench.SmokeN || len(side.s.Samples) != bench.SmokeN {
			t.Errorf("%s: %d samples, want %d", side.name, len(side.s.Samples), bench.SmokeN)
		}
		for i, d := range side.s.Samples {
			if d <= 0 || d > time.Minute {
				t.Errorf("%s sample %d = %s, want between 0 and 1m", side.name, i, d)
			}
		}
	}
	if res.Ratio.Median <= 0 {
		t.Errorf("ratio median = %v, want > 0", res.Ratio.Median)
	}
	for _, want := range []string{"orch: run-task -> RUNNING", "floor: ", "ratio orch/floor"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q", want)
		}
	}

	path := filepath.Join(t.TempDir(), "bench.json")
	if err := res.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		N    int `json:"n"`
		Orch struct {
			MedianMs  float64   `json:"medianMs"`
			SamplesMs []float64 `json:"samplesMs"`
		} `json:"orch"`
		Floor struct {
			MedianMs float64 `json:"medianMs"`
		} `json:"floor"`
		Ratio struct {
			Median float64 `json:"median"`
		} `json:"ratioOrchToFloor"`
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("decode %s: %v\n%s", path, err, data)
	}
	if got.N != bench.SmokeN || len(got.Orch.SamplesMs) != bench.SmokeN || got.Orch.MedianMs <= 0 ||
		got.Floor.MedianMs <= 0 || got.Ratio.Median <= 0 {
		t.Errorf("JSON result incomplete:\n%s", data)
	}

	// Cleanup: the host netns and every mount of the run are gone.
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	if strings.Contains(string(out), suffix) {
		t.Errorf("netns of the run left behind:\n%s", out)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, "/orch-bench-") || strings.Contains(line, suffix) {
			t.Errorf("mount left behind: %s", line)
		}
	}
}
