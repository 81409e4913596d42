package chaos

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	orchv1 "orch/proto/orch/v1"
	"orch/test/harness"
)

const (
	// defaultDuration is the nemesis schedule's length (faults and heals) in `make test`.
	defaultDuration = 40 * time.Second
	// checkTimeout bounds porcupine's search; an undecided check is reported, not failed.
	checkTimeout = 30 * time.Second
	// warmup is how long the workload runs before the first fault.
	warmup = 2 * time.Second
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := harness.RemoveBinaries(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// chaosSeed is ORCH_CHAOS_SEED, or a new seed.
func chaosSeed(t *testing.T) int64 {
	if s := os.Getenv("ORCH_CHAOS_SEED"); s != "" {
		seed, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("ORCH_CHAOS_SEED=%q: %v", s, err)
		}
		return seed
	}
	return time.Now().UnixNano()
}

// chaosDuration is ORCH_CHAOS_DURATION, or defaultDuration.
func chaosDuration(t *testing.T) time.Duration {
	if s := os.Getenv("ORCH_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("ORCH_CHAOS_DURATION=%q: want a positive Go duration such as 5m", s)
		}
		return d
	}
	return defaultDuration
}

// TestChaos runs the workload against three schedulers under the seeded nemesis schedule, then
// heals everything and checks the history and the final state.
func TestChaos(t *testing.T) {
	harness.RequireRoot(t)
	if testing.Short() {
		t.Skip("skipping the chaos suite in -short mode")
	}
	seed := chaosSeed(t)
	schedule := makeSchedule(seed, chaosDuration(t))
	t.Logf("seed=%d schedule=%s (replay: ORCH_CHAOS_SEED=%d)", seed, formatSchedule(schedule), seed)

	e := newEnv(t)
	rec := newRecorder()
	w := &workload{e: e, rec: rec}
	ctx, stop := context.WithCancel(context.Background())
	defer func() { stop(); w.wait() }() // also when the test ends early
	w.start(ctx, seed)
	time.Sleep(warmup)
	var faults []*fault
	for _, st := range schedule {
		if f := e.run(st, rec); f != nil {
			faults = append(faults, f)
		}
	}
	stop()
	w.wait()

	e.healAll()
	leader, err := e.waitLeader(setupTimeout)
	if err != nil {
		t.Fatalf("after healing every fault: %v", err)
	}
	final := e.finalRead(rec)
	events := rec.all()
	reportFaults(t, events, faults)
	t.Logf("leader at the end: %s; final tags: %v", leader.id, final)

	checkLinearizable(t, events)
	for _, err := range checkAckedWrites(events, final, workloadKeys) {
		t.Error(err)
	}
	e.checkConverged(final)
	e.checkCredentials()
	if err := e.waitInstance(30 * time.Second); err != nil {
		t.Errorf("after healing every fault: %v", err)
	}
	listed, tasks := e.finalTasks(leader)
	for _, err := range checkTasks(events, listed, tasks) {
		t.Error(err)
	}
	t.Logf("%d tasks at the end", len(tasks))
}

// finalRead reads the tags with consistent=true until a scheduler answers, and records the
// read in the history (as one more client).
func (e *env) finalRead(rec *recorder) map[string]string {
	e.t.Helper()
	var final map[string]string
	e.retry("final consistent read", setupTimeout, func(ctx context.Context, s *scheduler) error {
		ev := event{Client: tagClients + 1, Kind: callRead, Server: s.id, Call: rec.now()}
		resp, err := s.orch.ListTagsForResource(ctx, &orchv1.ListTagsForResourceRequest{ResourceArn: e.clusterARN, Consistent: true})
		ev.Return = rec.now()
		if err != nil {
			return err
		}
		ev.OK, ev.Tags = true, tagMap(resp.GetTags())
		rec.add(ev)
		final = ev.Tags
		return nil
	})
	return final
}

// reportFaults logs what each fault hit and, for leader kills and full restarts, how long it
// took until a write was acknowledged again (informational: nothing is asserted on timing).
func reportFaults(t *testing.T, events []event, faults []*fault) {
	t.Helper()
	counts := map[string]int{}
	for _, ev := range events {
		k := ev.Kind
		switch {
		case ev.Failed:
			k += " (failed)"
		case !ev.OK:
			k += " (unknown)"
		}
		counts[k]++
	}
	t.Logf("recorded calls: %v", counts)
	tasks := map[string]int{}
	for _, ev := range events {
		if ev.Kind != callRunTask {
			continue
		}
		switch {
		case ev.Failed:
			tasks["failed"]++
		case !ev.OK:
			tasks["unknown outcome"]++
		case ev.TaskID != "":
			tasks["task"]++
		default:
			reason, _, _ := strings.Cut(ev.Err, ":")
			tasks[reason]++
		}
	}
	t.Logf("run-task outcomes: %v", tasks)
	for _, f := range faults {
		if f.step.Kind != killLeader && f.step.Kind != restartAll {
			continue
		}
		if d := firstAckAfter(events, f.at); d >= 0 {
			t.Logf("%s on %s: first acknowledged write %s after the kill", f.step.Kind, f.target, d.Round(time.Millisecond))
		} else {
			t.Logf("%s on %s: no write acknowledged afterwards", f.step.Kind, f.target)
		}
	}
}

// checkLinearizable checks the tag history with porcupine, with few unknown-outcome removals
// first (an Ok there is conclusive, see operations) and all of them last; on failure it writes
// the visualization to a file that outlives the test and prints its path.
func checkLinearizable(t *testing.T, events []event) {
	t.Helper()
	var (
		res    porcupine.CheckResult
		info   porcupine.LinearizationInfo
		ops    []porcupine.Operation
		pruned int
	)
	start := time.Now()
	for _, limit := range []int{0, 2, 8, -1} {
		ops, pruned = operations(events, workloadKeys, limit)
		res, info = porcupine.CheckOperationsVerbose(kvModel, ops, checkTimeout)
		if res == porcupine.Ok {
			break
		}
	}
	t.Logf("porcupine: %s on %d operations (%d unknown-outcome writes left out) in %s",
		res, len(ops), pruned, time.Since(start).Round(time.Millisecond))
	switch res {
	case porcupine.Ok:
		return
	case porcupine.Unknown:
		t.Logf("porcupine could not decide within %s; not counted as a failure", checkTimeout)
		return
	}
	f, err := os.CreateTemp("", "orch-chaos-*.html")
	if err != nil {
		t.Errorf("history is not linearizable (and the visualization could not be written: %v)", err)
		return
	}
	f.Close()
	if err := porcupine.VisualizePath(kvModel, info, f.Name()); err != nil {
		t.Errorf("history is not linearizable (visualization: %v)", err)
		return
	}
	t.Errorf("history is not linearizable; visualization: %s", f.Name())
}

// checkConverged waits until every scheduler's own state (a local read) shows the final tags.
func (e *env) checkConverged(final map[string]string) {
	e.t.Helper()
	for _, s := range e.scheds {
		var last map[string]string
		var lastErr error
		deadline := time.Now().Add(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			resp, err := s.orch.ListTagsForResource(ctx, &orchv1.ListTagsForResourceRequest{ResourceArn: e.clusterARN})
			cancel()
			lastErr = err
			if err == nil {
				last = tagMap(resp.GetTags())
				if maps.Equal(last, final) {
					break
				}
			}
			if time.Now().After(deadline) {
				e.t.Errorf("scheduler %s does not converge on the final tags %v: it has %v (last error %v)", s.id, final, last, lastErr)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// finalTasks lists every task of the chaos cluster (RUNNING and STOPPED) on the leader and
// describes them.
func (e *env) finalTasks(leader *scheduler) (listed []string, tasks []*orchv1.Task) {
	e.t.Helper()
	e.retry("list and describe tasks", setupTimeout, func(ctx context.Context, _ *scheduler) error {
		listed, tasks = nil, nil
		for _, st := range []string{"RUNNING", "STOPPED"} {
			resp, err := leader.orch.ListTasks(ctx, &orchv1.ListTasksRequest{Cluster: clusterName, DesiredStatus: st})
			if err != nil {
				return err
			}
			for _, a := range resp.GetTaskArns() {
				listed = append(listed, a[strings.LastIndex(a, "/")+1:])
			}
		}
		ids := slices.Clone(listed)
		slices.Sort(ids)
		ids = slices.Compact(ids)
		for len(ids) > 0 {
			n := min(len(ids), 100)
			resp, err := leader.orch.DescribeTasks(ctx, &orchv1.DescribeTasksRequest{Cluster: clusterName, Tasks: ids[:n]})
			if err != nil {
				return err
			}
			if len(resp.GetFailures()) > 0 {
				return fmt.Errorf("describe-tasks: %v", resp.GetFailures())
			}
			tasks = append(tasks, resp.GetTasks()...)
			ids = ids[n:]
		}
		return nil
	})
	return listed, tasks
}
