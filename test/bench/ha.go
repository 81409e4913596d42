package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	orchv1 "orch/proto/orch/v1"
)

// HAConfig configures the control-plane figures: Raft write throughput and latency of small
// writes (TagResource) from concurrent clients, and leader failover (kill -9 of the leader to
// the first acknowledged write), on three schedulers on loopback. As in production, the
// schedulers share a cluster CA made for the run, speak mutual TLS to each other, and the
// clients verify them against the CA and send an API token with every call.
type HAConfig struct {
	BinDir      string        // where orch-scheduler is
	Clients     []int         // concurrency levels; default 1, 16, 64
	Duration    time.Duration // per level; default 5s
	Failovers   int           // default 10
	Logf        func(format string, args ...any)
	WorkDirRoot string // default os.TempDir()
}

// HAResult holds the figures.
type HAResult struct {
	Writes   []WriteLevel
	Failover Stats
}

// WriteLevel is throughput and latency at one concurrency.
type WriteLevel struct {
	Clients   int
	PerSecond float64
	Latency   Stats
}

// RunHA starts three schedulers, measures, and removes everything it made.
func RunHA(ctx context.Context, cfg HAConfig) (*HAResult, error) {
	if len(cfg.Clients) == 0 {
		cfg.Clients = []int{1, 16, 64}
	}
	if cfg.Duration == 0 {
		cfg.Duration = 5 * time.Second
	}
	if cfg.Failovers == 0 {
		cfg.Failovers = 10
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	sc, err := startSchedulers(ctx, cfg.BinDir, cfg.WorkDirRoot, logf)
	if err != nil {
		return nil, err
	}
	defer sc.close()
	servers, conns := sc.servers, sc.conns
	arn := "arn:aws:ecs:local:000000000000:cluster/bench"
	write := func(ctx context.Context, c *grpc.ClientConn, key, value string) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := orchv1.NewOrchClient(c).TagResource(ctx, &orchv1.TagResourceRequest{
			ResourceArn: arn, Tags: []*orchv1.Tag{{Key: key, Value: value}},
		})
		return err
	}
	// Create the resource the writes tag (s1 may not know the token for a moment: it checks
	// tokens against its own copy of the state).
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := orchv1.NewOrchClient(conns["s1"]).CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: "bench"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the three schedulers did not form a cluster: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res := &HAResult{}
	for _, n := range cfg.Clients {
		leader, err := findLeader(ctx, conns)
		if err != nil {
			return nil, err
		}
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		end := time.Now().Add(cfg.Duration)
		for w := 0; w < n; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
					t0 := time.Now()
					if err := write(ctx, conns[leader], fmt.Sprint("k", w%40), fmt.Sprint(i)); err != nil {
						continue
					}
					d := time.Since(t0)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		lv := WriteLevel{Clients: n, PerSecond: float64(len(lat)) / cfg.Duration.Seconds(), Latency: Summarize(lat)}
		logf("writes: %d clients: %.0f/s, p50 %s p99-ish %s", n, lv.PerSecond, ms(lv.Latency.Median), ms(lv.Latency.P95))
		res.Writes = append(res.Writes, lv)
	}
	var fo []time.Duration
	for i := 0; i < cfg.Failovers && ctx.Err() == nil; i++ {
		leader, err := findLeader(ctx, conns)
		if err != nil {
			return nil, err
		}
		var victim *haServer
		for _, s := range servers {
			if s.id == leader {
				victim = s
			}
		}
		_ = syscall.Kill(victim.p.cmd.Process.Pid, syscall.SIGKILL)
		t0 := time.Now()
		var took time.Duration
		for took == 0 && ctx.Err() == nil {
			for id, c := range conns {
				if id != leader && write(ctx, c, "k0", fmt.Sprint("failover-", i)) == nil {
					took = time.Since(t0)
					break
				}
			}
		}
		victim.p.wait()
		logf("failover %d: first acknowledged write %s after kill -9 of %s", i+1, ms(took), leader)
		fo = append(fo, took)
		if err := sc.start(victim); err != nil {
			return nil, err
		}
		// Let the restarted server catch up before the next kill.
		for time.Since(t0) < 3*time.Second || write(ctx, conns[victim.id], "k1", fmt.Sprint("rejoin-", i)) != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	res.Failover = Summarize(fo)
	return res, nil
}

// writeTable prints the figures.
func (r *HAResult) writeTable(b *strings.Builder) {
	fmt.Fprintf(b, "%-40s %12s %10s %10s\n", "raft writes (TagResource, 3 schedulers)", "writes/s", "p50", "p95")
	levels := append([]WriteLevel(nil), r.Writes...)
	sort.Slice(levels, func(i, j int) bool { return levels[i].Clients < levels[j].Clients })
	for _, l := range levels {
		fmt.Fprintf(b, "%-40s %12.0f %10s %10s\n", fmt.Sprintf("  %d clients", l.Clients), l.PerSecond, ms(l.Latency.Median), ms(l.Latency.P95))
	}
	fmt.Fprintf(b, "leader kill -9 -> first acknowledged write: median %s, p95 %s, min %s, max %s (n=%d)\n",
		ms(r.Failover.Median), ms(r.Failover.P95), ms(r.Failover.Min), ms(r.Failover.Max), r.Failover.N)
}

// MarshalJSON writes durations in milliseconds.
func (r *HAResult) MarshalJSON() ([]byte, error) {
	type level struct {
		Clients   int       `json:"clients"`
		PerSecond float64   `json:"writesPerSecond"`
		Latency   jsonStats `json:"latency"`
	}
	j := struct {
		Writes   []level   `json:"writes"`
		Failover jsonStats `json:"failover"`
	}{Failover: toJSONStats(failoverLabel, r.Failover)}
	for _, l := range r.Writes {
		lat := toJSONStats(fmt.Sprintf("TagResource through the leader, %d clients", l.Clients), l.Latency)
		lat.SamplesMs = nil // tens of thousands
		j.Writes = append(j.Writes, level{Clients: l.Clients, PerSecond: math.Round(l.PerSecond*10) / 10, Latency: lat})
	}
	return json.Marshal(j)
}

// failoverLabel says what the failover figure measures.
const failoverLabel = "leader kill -9 -> first acknowledged write"
