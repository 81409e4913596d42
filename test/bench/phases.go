package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
)

// PhaseResult splits the sequential orch starts into phases. All clocks are this machine's:
// the client's (call, RunTask response, RUNNING seen), the scheduler's (createdAt) and the
// embedded agent's (pullStartedAt, pullStoppedAt, startedAt and its "task running" log line).
type PhaseResult struct {
	N      int     `json:"n"`
	Phases []Phase `json:"phases"`
	// AgentLines is how many of the N tasks had an agent "task running" log line.
	AgentLines int `json:"agentLines"`
	// Plans is what the scheduler's metrics say of the plans of the N starts (one task each):
	// how many, and their mean placement and Raft commit times (within "rest" below).
	Plans planTimes `json:"plans"`
}

// Phase is one phase's distribution over the measured starts.
type Phase struct {
	Name string `json:"name"`
	Dist Dist   `json:"dist"`
}

// The phases, in order. The task-timestamp rows add up to the client's total.
var phaseNames = []string{
	"client: call -> run-task response",
	"client: response -> RUNNING seen",
	"call -> createdAt (API)",
	"createdAt -> pullStartedAt",
	"  of which agent network_ms",
	"  rest: placement, raft, dispatch",
	"pullStartedAt -> pullStoppedAt",
	"  agent pull_ms",
	"pullStoppedAt -> startedAt",
	"  agent containers_ms",
	"    of which create_ms",
	"    of which start_ms",
	"startedAt -> RUNNING seen",
}

// agentTiming is the agent's "task running" line of one task.
type agentTiming struct{ network, pull, containers, create, start time.Duration }

// phasesOf computes the breakdown of samples with the agent log at logPath (missing log lines
// leave the agent rows with fewer samples) and plans, the scheduler's plan metrics over them.
func phasesOf(samples []orchSample, logPath string, plans planTimes) *PhaseResult {
	agent := readAgentTimings(logPath)
	rows := make([][]time.Duration, len(phaseNames))
	add := func(i int, d time.Duration) { rows[i] = append(rows[i], d) }
	res := &PhaseResult{N: len(samples), Plans: plans}
	at := func(ts *timestamppb.Timestamp) time.Time { return ts.AsTime() }
	for _, s := range samples {
		t := s.task
		add(0, s.resp.Sub(s.call))
		add(1, s.running.Sub(s.resp))
		if t.GetCreatedAt() == nil || t.GetPullStartedAt() == nil || t.GetPullStoppedAt() == nil || t.GetStartedAt() == nil {
			continue
		}
		add(2, at(t.GetCreatedAt()).Sub(s.call))
		add(3, at(t.GetPullStartedAt()).Sub(at(t.GetCreatedAt())))
		add(6, at(t.GetPullStoppedAt()).Sub(at(t.GetPullStartedAt())))
		add(8, at(t.GetStartedAt()).Sub(at(t.GetPullStoppedAt())))
		add(12, s.running.Sub(at(t.GetStartedAt())))
		if a, ok := agent[s.id]; ok {
			res.AgentLines++
			add(4, a.network)
			add(5, at(t.GetPullStartedAt()).Sub(at(t.GetCreatedAt()))-a.network)
			add(7, a.pull)
			add(9, a.containers)
			add(10, a.create)
			add(11, a.start)
		}
	}
	for i, name := range phaseNames {
		res.Phases = append(res.Phases, Phase{Name: name, Dist: newDist(rows[i])})
	}
	return res
}

// readAgentTimings parses the embedded agent's "task running" lines (slog text format) from
// the scheduler's log: task_id=... network_ms=... pull_ms=... containers_ms=... create_ms=...
// start_ms=....
func readAgentTimings(logPath string) map[string]agentTiming {
	out := map[string]agentTiming{}
	f, err := os.Open(logPath)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="task running"`) {
			continue
		}
		var id string
		var a agentTiming
		for _, kv := range strings.Fields(line) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			msv := func() time.Duration {
				f, _ := strconv.ParseFloat(v, 64)
				return time.Duration(f * float64(time.Millisecond))
			}
			switch k {
			case "task_id":
				id = v
			case "network_ms":
				a.network = msv()
			case "pull_ms":
				a.pull = msv()
			case "containers_ms":
				a.containers = msv()
			case "create_ms":
				a.create = msv()
			case "start_ms":
				a.start = msv()
			}
		}
		if id != "" {
			out[id] = a
		}
	}
	return out
}

// countLines counts the lines of path that contain s (0 if it cannot be read).
func countLines(path, s string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(data), s)
}

func (r *PhaseResult) writeTable(b *strings.Builder) {
	fmt.Fprintf(b, "\nphases of the %d sequential orch starts (agent log lines found for %d)\n", r.N, r.AgentLines)
	const row = "%-40s %10s %10s %10s\n"
	fmt.Fprintf(b, row, "", "median", "p95", "max")
	for _, p := range r.Phases {
		if p.Dist.N == 0 {
			fmt.Fprintf(b, row, p.Name, "-", "-", "-")
			continue
		}
		fmt.Fprintf(b, row, p.Name, ms(p.Dist.P50), ms(p.Dist.P95), ms(p.Dist.Max))
	}
	if p := r.Plans; p.Count > 0 {
		fmt.Fprintf(b, "  within rest, per plan (scheduler metrics, %d plans): placement mean %s, raft commit mean %s\n",
			p.Count, ms(p.Placement), ms(p.Commit))
	}
}
