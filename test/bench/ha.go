package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
	"orch/test/harness"
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

type haServer struct {
	id, grpc, http, raft, dir string
	args                      []string
	p                         *process
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
	bin := filepath.Join(cfg.BinDir, "orch-scheduler")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("orch-scheduler in %s: %w (run make build)", cfg.BinDir, err)
	}
	dir, err := os.MkdirTemp(cfg.WorkDirRoot, "orch-bench-ha-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ca, caCert, caKey, err := writeCA(dir)
	if err != nil {
		return nil, err
	}
	servers := make([]*haServer, 3)
	var join []string
	for i := range servers {
		s := &haServer{id: fmt.Sprint("s", i+1), dir: filepath.Join(dir, fmt.Sprint("s", i+1))}
		for _, a := range []*string{&s.grpc, &s.http, &s.raft} {
			p, err := harness.FreeLoopbackPort()
			if err != nil {
				return nil, err
			}
			*a = fmt.Sprintf("127.0.0.1:%d", p)
		}
		join = append(join, s.grpc)
		servers[i] = s
	}
	for _, s := range servers {
		s.args = []string{"--data-dir", s.dir, "--node-id", s.id, "--grpc-addr", s.grpc, "--http-addr", s.http,
			"--raft-addr", s.raft, "--bootstrap-expect", "3", "--ca-cert", caCert, "--ca-key", caKey, "--log-level", "warn"}
		for _, j := range join {
			s.args = append(s.args, "--join", j)
		}
		if s.p, err = startProcess(filepath.Join(dir, s.id+".log"), bin, s.args...); err != nil {
			return nil, err
		}
		logf("scheduler %s: API %s, profiles at http://%s/debug/pprof/", s.id, s.grpc, s.http)
	}
	defer func() {
		for _, s := range servers {
			if s.p != nil {
				s.p.stop(5 * time.Second)
			}
		}
	}()
	// The API bootstrap, through whichever server answers once they have formed.
	tlsConf := pki.ClientTLSWith(ca, nil, "")
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	creds, err := harness.Bootstrap(bctx, servers[0].dir, join...)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("the three schedulers did not form a cluster: %w", err)
	}
	token := creds.Token
	conns := map[string]*grpc.ClientConn{}
	for _, s := range servers {
		c, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)),
			grpc.WithPerRPCCredentials(bearer(token)))
		if err != nil {
			return nil, err
		}
		defer c.Close()
		conns[s.id] = c
	}
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
		if victim.p, err = startProcess(filepath.Join(dir, victim.id+".log"), bin, victim.args...); err != nil {
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

// findLeader asks the servers who leads; a majority answer is needed.
func findLeader(ctx context.Context, conns map[string]*grpc.ClientConn) (string, error) {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		votes := map[string]int{}
		for _, c := range conns {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			r, err := orchv1.NewOperatorClient(c).RaftListPeers(cctx, &orchv1.RaftListPeersRequest{})
			cancel()
			if err != nil {
				continue
			}
			for _, p := range r.GetServers() {
				if p.GetLeader() {
					votes[p.GetId()]++
				}
			}
		}
		for id, v := range votes {
			if v >= 2 {
				return id, nil
			}
		}
	}
	return "", errors.New("no leader agreed on by a majority")
}

// WriteTable prints the figures.
func (r *HAResult) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "%-40s %12s %10s %10s\n", "raft writes (TagResource, 3 schedulers)", "writes/s", "p50", "p95")
	levels := append([]WriteLevel(nil), r.Writes...)
	sort.Slice(levels, func(i, j int) bool { return levels[i].Clients < levels[j].Clients })
	for _, l := range levels {
		fmt.Fprintf(w, "%-40s %12.0f %10s %10s\n", fmt.Sprintf("  %d clients", l.Clients), l.PerSecond, ms(l.Latency.Median), ms(l.Latency.P95))
	}
	_, err := fmt.Fprintf(w, "leader kill -9 -> first acknowledged write: median %s, p95 %s, min %s, max %s (n=%d)\n",
		ms(r.Failover.Median), ms(r.Failover.P95), ms(r.Failover.Min), ms(r.Failover.Max), r.Failover.N)
	return err
}
