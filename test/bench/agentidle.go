package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"orch/test/harness"

	orchv1 "orch/proto/orch/v1"
)

// agentIdleCluster is where the standalone agent registers: a cluster of its own, so that no
// task of the other figures is placed on it.
const agentIdleCluster = "bench-agent-idle"

// agentIdleKiB measures the agent alone, as it runs on every node but the scheduler's: it
// starts orch-agent (enrolled with the worker join token, on the bench's containerd and host
// netns, with its default metrics endpoint), waits until its session is up, gives it the
// same moment to settle as the --dev figure, reads its VmRSS and stops it. Its data dir is in
// the bench's temp dir; the bench's containerd and netns go at the end with everything else.
func (e *env) agentIdleKiB(ctx context.Context) (int64, error) {
	if _, err := e.client.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: agentIdleCluster}); err != nil {
		return 0, fmt.Errorf("create cluster %s: %w", agentIdleCluster, err)
	}
	var ports [2]string
	for i := range ports {
		port, err := harness.FreeLoopbackPort()
		if err != nil {
			return 0, err
		}
		ports[i] = "127.0.0.1:" + strconv.Itoa(port)
	}
	dir := filepath.Join(e.dir, "agent-idle")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	p, err := startProcess(filepath.Join(e.dir, "orch-agent-idle.log"), filepath.Join(e.binDir, "orch-agent"),
		"--scheduler", e.grpcAddr, "--join-token", e.creds.WorkerToken, "--cluster", agentIdleCluster,
		"--hostname", "orch-bench-idle-agent", "--data-dir", filepath.Join(dir, "data"),
		"--containerd", e.ctrd.Address, "--namespace", "orch-bench-idle", "--listen", ports[0], "--metrics-addr", ports[1],
		"--netns-dir", filepath.Join(dir, "netns"), "--host-netns", e.hostNSPath)
	if err != nil {
		return 0, err
	}
	defer p.stop(stopGrace)

	wctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := e.waitAgent(wctx, agentIdleCluster, p); err != nil {
		return 0, fmt.Errorf("standalone orch-agent: %w (log: %s)", err, p.logPath)
	}
	time.Sleep(2 * time.Second)
	return rssKiB(p.cmd.Process.Pid)
}
