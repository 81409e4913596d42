package bench

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted
	}
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"none", nil, 0.99, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"p99 of 50 is the max", ms(append(make([]int, 49), 9)...), 0.99, 9 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p50 of 100", ms(hundred...), 0.50, 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.samples, tc.p); got != tc.want {
				t.Errorf("percentile(%v) = %s, want %s", tc.p, got, tc.want)
			}
		})
	}
}

func TestReadAgentTimings(t *testing.T) {
	log := `time=2026-11-26T15:38:19.1Z level=INFO msg="agent session opened" host=h1
time=2026-11-26T15:38:19.2Z level=INFO msg="task running" task_id=abc cluster=default ip=10.0.0.2 network_ms=12.5 pull_ms=2.25 containers_ms=60
time=2026-11-26T15:38:19.3Z level=INFO msg="task stopped" task_id=abc stop_code=UserInitiated
`
	path := filepath.Join(t.TempDir(), "orch-scheduler.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	got := readAgentTimings(path)
	want := map[string]agentTiming{"abc": {network: 12500 * time.Microsecond, pull: 2250 * time.Microsecond, containers: 60 * time.Millisecond}}
	if len(got) != len(want) || got["abc"] != want["abc"] {
		t.Errorf("readAgentTimings = %+v, want %+v", got, want)
	}
	if n := countLines(path, "task_id=abc"); n != 2 {
		t.Errorf("countLines = %d, want 2", n)
	}
}
