package bench

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

func TestParsePlanTimes(t *testing.T) {
	const metrics = `# HELP orch_plan_commit_seconds Time to write one plan to Raft.
# TYPE orch_plan_commit_seconds histogram
orch_plan_commit_seconds_bucket{le="0.0001"} 0
orch_plan_commit_seconds_sum 0.06
orch_plan_commit_seconds_count 20
orch_plan_placement_seconds_bucket{le="+Inf"} 21
orch_plan_placement_seconds_sum 0.0042
orch_plan_placement_seconds_count 21
go_goroutines 42
`
	tests := []struct {
		name    string
		text    string
		want    planTimes
		wantErr bool
	}{
		{"both histograms", metrics, planTimes{Count: 21, Placement: 200 * time.Microsecond, Commit: 3 * time.Millisecond}, false},
		{"no plan metrics", "go_goroutines 42\n", planTimes{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePlanTimes(bufio.NewScanner(strings.NewReader(tt.text)))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && (got.Count != tt.want.Count || got.Placement != tt.want.Placement || got.Commit != tt.want.Commit) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	before, _ := parsePlanTimes(bufio.NewScanner(strings.NewReader(metrics)))
	after, _ := parsePlanTimes(bufio.NewScanner(strings.NewReader(strings.NewReplacer(
		"commit_seconds_sum 0.06", "commit_seconds_sum 0.08", "commit_seconds_count 20", "commit_seconds_count 22",
		"placement_seconds_sum 0.0042", "placement_seconds_sum 0.0046", "placement_seconds_count 21", "placement_seconds_count 23").Replace(metrics))))
	if d := after.since(before); d.Count != 2 || d.Placement != 200*time.Microsecond || d.Commit != 10*time.Millisecond {
		t.Fatalf("since: %+v", d)
	}
}
