package bench

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// planTimes is what the scheduler's /metrics say of its plans: how many, and their mean
// placement and Raft commit times (orch_plan_placement_seconds, orch_plan_commit_seconds).
type planTimes struct {
	Count     int64         `json:"count"`
	Placement time.Duration `json:"placementMean"`
	Commit    time.Duration `json:"commitMean"`

	placeSum, commitSum float64 // seconds, for since
	commitCount         int64
}

// readPlanTimes reads the plan histograms from the scheduler's /metrics at addr.
func readPlanTimes(ctx context.Context, addr string) (planTimes, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return planTimes{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return planTimes{}, fmt.Errorf("scheduler metrics: %w", err)
	}
	defer resp.Body.Close()
	return parsePlanTimes(bufio.NewScanner(resp.Body))
}

func parsePlanTimes(sc *bufio.Scanner) (planTimes, error) {
	var p planTimes
	found := 0
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch name {
		case "orch_plan_placement_seconds_sum":
			p.placeSum = v
		case "orch_plan_placement_seconds_count":
			p.Count = int64(v)
		case "orch_plan_commit_seconds_sum":
			p.commitSum = v
		case "orch_plan_commit_seconds_count":
			p.commitCount = int64(v)
		default:
			continue
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return p, err
	}
	if found != 4 {
		return p, fmt.Errorf("scheduler metrics: orch_plan_placement_seconds and orch_plan_commit_seconds not found")
	}
	return p.withMeans(), nil
}

// since is what happened between before and p.
func (p planTimes) since(before planTimes) planTimes {
	d := planTimes{Count: p.Count - before.Count, commitCount: p.commitCount - before.commitCount,
		placeSum: p.placeSum - before.placeSum, commitSum: p.commitSum - before.commitSum}
	return d.withMeans()
}

func (p planTimes) withMeans() planTimes {
	p.Placement, p.Commit = 0, 0
	if p.Count > 0 {
		p.Placement = time.Duration(math.Round(p.placeSum / float64(p.Count) * float64(time.Second)))
	}
	if p.commitCount > 0 {
		p.Commit = time.Duration(math.Round(p.commitSum / float64(p.commitCount) * float64(time.Second)))
	}
	return p
}
