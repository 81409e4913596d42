// Command orch-nodesim runs simulated agents against running schedulers and, with -tasks,
// submits run-task batches (or, with -services N, creates N services sharing the tasks) and
// reports placement throughput: how many tasks per second went from submitted to RUNNING in
// the schedulers' state.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"orch/pkg/client"
	"orch/pkg/taskdef"
	orchv1 "orch/proto/orch/v1"
	"orch/test/bench/nodesim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "orch-nodesim:", err)
		os.Exit(1)
	}
}

func run() error {
	endpoints := flag.String("endpoints", "127.0.0.1:7400", "schedulers' gRPC addresses, comma-separated")
	nodes := flag.Int("nodes", 1000, "simulated nodes")
	delay := flag.Duration("delay", 0, "how long a simulated task takes to reach RUNNING")
	tasks := flag.Int("tasks", 0, "tasks to submit as run-task batches of 10 (0: only run the nodes until interrupted)")
	services := flag.Int("services", 0, "submit -tasks as this many services (desiredCount tasks/services each) instead of run-task batches")
	workers := flag.Int("workers", 16, "concurrent run-task callers")
	cluster := flag.String("cluster", "sim", "cluster the simulated nodes serve (created if missing)")
	cidr := flag.String("cidr", "100.64.0.0/10", "the cluster's network: one /24 per node, so it must hold -nodes of them")
	caCert := flag.String("ca-cert", os.Getenv(client.EnvCACert), "the cluster CA (<data-dir>/ca.pem of a scheduler)")
	token := flag.String("token", os.Getenv(client.EnvToken), "an API token (orchctl operator bootstrap-token)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	eps := strings.Split(*endpoints, ",")
	c, err := client.Dial(ctx, eps, client.WithCAFile(*caCert), client.WithToken(*token))
	if err != nil {
		return err
	}
	defer c.Close()
	join, err := orchv1.NewOperatorClient(c.Conn()).GetJoinTokens(ctx, &orchv1.GetJoinTokensRequest{})
	if err != nil {
		return fmt.Errorf("worker join token: %w", err)
	}
	if _, err := c.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: *cluster, Cidr: *cidr}); err != nil {
		return err
	}
	t0 := time.Now()
	sim, err := nodesim.Start(ctx, nodesim.Config{Endpoints: eps, Nodes: *nodes, Clusters: []string{*cluster}, StartDelay: *delay, JoinToken: join.GetWorker()})
	if err != nil {
		return err
	}
	defer sim.Close()
	for sim.Connected() < int64(*nodes) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("%d nodes registered and connected in %s\n", *nodes, time.Since(t0).Round(time.Millisecond))
	if *tasks == 0 {
		<-ctx.Done()
		return nil
	}
	td, err := taskdef.Parse([]byte(`{"family":"sim","containerDefinitions":[{"name":"app","image":"busybox","cpu":1,"memory":8}]}`))
	if err != nil {
		return err
	}
	if _, err := c.RegisterTaskDefinition(ctx, &orchv1.RegisterTaskDefinitionRequest{TaskDefinition: td}); err != nil {
		return err
	}
	if *services > 0 {
		return runServices(ctx, c, sim, *cluster, *tasks, *services)
	}
	var placed, failed atomic.Int64
	batches := make(chan int32)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range batches {
				resp, err := c.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: *cluster, TaskDefinition: "sim", Count: n})
				if err != nil {
					failed.Add(int64(n))
					continue
				}
				placed.Add(int64(len(resp.GetTasks())))
				failed.Add(int64(len(resp.GetFailures())))
			}
		}()
	}
	for left := *tasks; left > 0; left -= 10 {
		batches <- int32(min(10, left))
	}
	close(batches)
	wg.Wait()
	submitted := time.Since(start)
	for sim.Running() < placed.Load() && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	all := time.Since(start)
	fmt.Printf("tasks: %d placed, %d failed; submitted in %s (%.0f placements/s); all RUNNING after %s (%.0f tasks/s); session errors %d\n",
		placed.Load(), failed.Load(), submitted.Round(time.Millisecond), float64(placed.Load())/submitted.Seconds(),
		all.Round(time.Millisecond), float64(placed.Load())/all.Seconds(), sim.Errors())
	return nil
}

// runServices creates n services that together want tasks tasks and waits until the simulated
// nodes run them all.
func runServices(ctx context.Context, c *client.Client, sim *nodesim.Sim, cluster string, tasks, n int) error {
	start := time.Now()
	for i := 0; i < n; i++ {
		desired := int32(tasks / n)
		if i < tasks%n {
			desired++
		}
		if _, err := c.CreateService(ctx, &orchv1.CreateServiceRequest{
			Cluster: cluster, ServiceName: fmt.Sprintf("sim-%03d", i), TaskDefinition: "sim", DesiredCount: &desired,
		}); err != nil {
			return fmt.Errorf("create service %d: %w", i, err)
		}
	}
	created := time.Since(start)
	for sim.Running() < int64(tasks) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	all := time.Since(start)
	fmt.Printf("services: %d created in %s wanting %d tasks; all RUNNING after %s (%.0f placements/s); session errors %d\n",
		n, created.Round(time.Millisecond), tasks, all.Round(time.Millisecond), float64(tasks)/all.Seconds(), sim.Errors())
	return nil
}
