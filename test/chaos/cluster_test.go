package chaos

// The system under test: three schedulers (each `ip netns exec <its namespace>
// orch-scheduler`) given one cluster CA, one agent with a private containerd that enrolls with
// the worker join token, and the TLS connections the test opens to every scheduler from the
// client namespace, carrying the API token (security_test.go).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	"orch/pkg/taskdef"
	orchv1 "orch/proto/orch/v1"
	"orch/test/harness"
)

const (
	grpcPort = 7400
	// clusterName is the cluster the workload tags and runs tasks in.
	clusterName = "chaos"
	familyName  = "chaos-sleep"
	// setupTimeout bounds each wait of the setup and of the final checks.
	setupTimeout = 60 * time.Second
	// heartbeatGrace is the schedulers' --heartbeat-grace: a host silent for longer is marked
	// disconnected, and a new leader gives every host this long to find it.
	heartbeatGrace = 10 * time.Second
)

// scheduler is one orch-scheduler and its namespace.
type scheduler struct {
	id      string // Raft node id, also the role in the network ("s1")
	node    *netNode
	dataDir string
	proc    *harness.Process
	paused  bool // SIGSTOPped
	conn    *grpc.ClientConn
	orch    orchv1.OrchClient
	op      orchv1.OperatorClient
}

func (s *scheduler) addr() string { return fmt.Sprintf("%s:%d", s.node.ip, grpcPort) }

// running reports whether the process is alive and not frozen.
func (s *scheduler) running() bool { return s.proc != nil && !s.proc.Exited() && !s.paused }

// env is one chaos installation.
type env struct {
	t      *testing.T
	bins   map[string]string
	net    *network
	scheds []*scheduler
	ctrd   *harness.Containerd
	reg    *harness.Registry
	agent  *harness.Process
	image  string
	// ca is the cluster CA the schedulers are started with; bearer is the API token every
	// call of the test's connections carries once bootstrapToken has taken it.
	ca     *clusterCA
	bearer bearer
	// clusterARN is the ARN of the cluster the workload tags.
	clusterARN string
}

// newEnv builds the network, starts containerd, the registry, three schedulers sharing a new
// cluster CA, takes the API token, starts the agent with the worker join token, creates the
// chaos cluster and its task definition, and waits until the agent's container instance is
// ACTIVE and connected.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, bins: harness.BuildBinaries(t, harness.OrchCommands...)}
	// Registered first, so their cleanups run last: after every process and container is gone.
	e.net = newNetwork(t, "s1", "s2", "s3", "agent", "client")
	netnsDir := filepath.Join(t.TempDir(), "netns")
	t.Cleanup(func() {
		if err := harness.UnmountUnder(netnsDir); err != nil {
			t.Errorf("unmount task namespaces: %v", err)
		}
	})
	e.ctrd = harness.StartContainerd(t)
	e.reg = harness.StartRegistry(t)
	var err error
	if e.image, err = harness.PushImage(e.reg.Addr, "chaos/sleep:latest", harness.ImageConfig{Cmd: []string{"sleep", "3600"}}); err != nil {
		t.Fatalf("push image: %v", err)
	}
	// The agent pulls from the registry's loopback address, seen from its own namespace.
	e.net.forward("agent", e.reg.Addr)

	if e.ca, err = newClusterCA(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	var join []string
	for _, id := range []string{"s1", "s2", "s3"} {
		s := &scheduler{id: id, node: e.net.nodes[id], dataDir: filepath.Join(t.TempDir(), id)}
		join = append(join, s.addr())
		e.scheds = append(e.scheds, s)
	}
	for _, s := range e.scheds {
		e.dial(s)
		e.startScheduler(s, join)
	}
	e.bootstrapToken(setupTimeout)
	if _, err := e.waitLeader(setupTimeout); err != nil {
		t.Fatalf("forming the control plane: %v", err)
	}
	e.setupCluster()

	ag := e.net.nodes["agent"]
	args := []string{"--net=" + ag.nsPath(), e.bins["orch-agent"],
		"--scheduler", strings.Join(join, ","), "--cluster", "*",
		"--data-dir", filepath.Join(t.TempDir(), "agent"), "--containerd", e.ctrd.Address, "--namespace", "chaos-" + e.net.suffix,
		"--listen", ag.ip + ":7403", "--netns-dir", netnsDir, "--host-netns", ag.nsPath(),
		"--memory", "4096", "--cpu", "4096", "--join-token", e.workerJoinToken(setupTimeout)}
	// nsenter rather than `ip netns exec`: the agent must mount the task namespaces in the
	// machine's mount namespace, where containerd and runc see them; it only needs the network
	// namespace changed.
	e.agent = harness.StartProcess(t, "nsenter", nil, args...)
	if err := e.waitInstance(setupTimeout); err != nil {
		t.Fatal(err)
	}
	return e
}

// dial opens the test's connection to a scheduler, from the client namespace: TLS verified
// against the cluster CA, each call with the API token once there is one. It reconnects
// quickly after a restart (backoff at most 500ms) and fails calls fast while the server is
// down.
func (e *env) dial(s *scheduler) {
	e.t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+s.addr(),
		grpc.WithTransportCredentials(credentials.NewTLS(e.ca.clientTLS())),
		grpc.WithPerRPCCredentials(&e.bearer),
		grpc.WithContextDialer(e.net.dialer("client")),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		e.t.Fatalf("dial %s: %v", s.addr(), err)
	}
	e.t.Cleanup(func() { conn.Close() })
	s.conn, s.orch, s.op = conn, orchv1.NewOrchClient(conn), orchv1.NewOperatorClient(conn)
}

// startScheduler starts (or restarts, with its data dir) one scheduler in its namespace. A
// restarted scheduler keeps the identity in its data dir; the CA files it is given again must
// be (and are) the CA of that identity.
func (e *env) startScheduler(s *scheduler, join []string) {
	e.t.Helper()
	ip := s.node.ip
	s.proc = harness.StartProcess(e.t, "ip", nil, "netns", "exec", s.node.ns, e.bins["orch-scheduler"],
		"--data-dir", s.dataDir, "--node-id", s.id,
		"--grpc-addr", fmt.Sprintf("%s:%d", ip, grpcPort), "--http-addr", fmt.Sprintf("%s:%d", ip, grpcPort+1),
		"--raft-addr", fmt.Sprintf("%s:%d", ip, grpcPort+2),
		"--bootstrap-expect", "3", "--join", strings.Join(join, ","), "--heartbeat-grace", heartbeatGrace.String(),
		"--ca-cert", e.ca.certFile, "--ca-key", e.ca.keyFile)
	s.paused = false
}

// restart starts a stopped scheduler again.
func (e *env) restart(s *scheduler) {
	e.t.Helper()
	var join []string
	for _, o := range e.scheds {
		join = append(join, o.addr())
	}
	e.startScheduler(s, join)
}

// gracefulStopTimeout is how long a scheduler may take to stop after SIGTERM: closing the API
// (at most 3s for open streams), a leadership transfer and Raft's shutdown.
const gracefulStopTimeout = 15 * time.Second

// stopGraceful sends SIGTERM (the leader hands leadership over) and waits. A scheduler that is
// still running after gracefulStopTimeout gets SIGQUIT, so that the Go runtime writes every
// goroutine's stack to its log, which is kept in a file that outlives the test; then it is
// killed.
func (e *env) stopGraceful(s *scheduler) error {
	if s.paused {
		if err := s.proc.Signal(syscall.SIGCONT); err != nil {
			return err
		}
		s.paused = false
	}
	if err := s.proc.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-s.proc.Done():
		return nil
	case <-time.After(gracefulStopTimeout):
	}
	state := procState(s.proc.Pid())
	_ = s.proc.Signal(syscall.SIGQUIT)
	select {
	case <-s.proc.Done():
	case <-time.After(5 * time.Second):
	}
	kerr := s.proc.Kill9()
	where := "(log not kept)"
	if f, err := os.CreateTemp("", "orch-chaos-sigterm-"+s.id+"-*.log"); err == nil {
		f.WriteString(s.proc.Log())
		f.Close()
		where = f.Name()
	}
	return errors.Join(fmt.Errorf("scheduler %s did not stop within %s of SIGTERM (process state then: %s); its log, with its goroutines after SIGQUIT, is in %s",
		s.id, gracefulStopTimeout, state, where), kerr)
}

// procState is what the kernel says a process is doing: its state and, when it sleeps in the
// kernel, where.
func procState(pid int) string {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "State:") || strings.HasPrefix(line, "SigPnd:") || strings.HasPrefix(line, "ShdPnd:") ||
			strings.HasPrefix(line, "SigBlk:") || strings.HasPrefix(line, "SigCgt:") {
			out = append(out, strings.Join(strings.Fields(line), " "))
		}
	}
	if wchan, err := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid)); err == nil {
		out = append(out, "wchan: "+string(wchan))
	}
	return strings.Join(out, "; ")
}

// leaderView asks s who leads, from its own Raft view.
func (e *env) leaderView(ctx context.Context, s *scheduler) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := s.op.RaftListPeers(ctx, &orchv1.RaftListPeersRequest{})
	if err != nil {
		return "", err
	}
	for _, p := range resp.GetServers() {
		if p.GetLeader() {
			return p.GetId(), nil
		}
	}
	return "", nil
}

// findLeader returns the scheduler that a majority of the schedulers (itself included) see
// as the leader right now, or nil.
func (e *env) findLeader(ctx context.Context) *scheduler {
	votes := map[string]int{}
	for _, s := range e.scheds {
		if !s.running() {
			continue
		}
		if id, err := e.leaderView(ctx, s); err == nil && id != "" {
			votes[id]++
		}
	}
	for _, s := range e.scheds {
		if votes[s.id] >= 2 && s.running() {
			return s
		}
	}
	return nil
}

// waitLeader waits until a majority agrees on a running leader.
func (e *env) waitLeader(timeout time.Duration) (*scheduler, error) {
	deadline := time.Now().Add(timeout)
	for {
		if l := e.findLeader(context.Background()); l != nil {
			return l, nil
		}
		if time.Now().After(deadline) {
			var views []string
			for _, s := range e.scheds {
				id, err := e.leaderView(context.Background(), s)
				views = append(views, fmt.Sprintf("%s sees leader %q (err %v, running %v)", s.id, id, err, s.running()))
			}
			return nil, fmt.Errorf("no leader agreed by a majority after %s: %s", timeout, strings.Join(views, "; "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// retry calls fn against the schedulers in turn until it succeeds or timeout passes.
func (e *env) retry(what string, timeout time.Duration, fn func(ctx context.Context, s *scheduler) error) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		s := e.scheds[i%len(e.scheds)]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := fn(ctx, s)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// setupCluster creates the chaos cluster and registers the task definition the workload runs.
func (e *env) setupCluster() {
	e.t.Helper()
	e.retry("create cluster "+clusterName, setupTimeout, func(ctx context.Context, s *scheduler) error {
		resp, err := s.orch.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: clusterName})
		if err != nil {
			return err
		}
		e.clusterARN = resp.GetCluster().GetClusterArn()
		return nil
	})
	td, err := taskdef.Parse([]byte(fmt.Sprintf(`{
		"family": %q, "cpu": "16", "memory": "32",
		"containerDefinitions": [{"name": "sleep", "image": %q, "essential": true, "stopTimeout": 2}]
	}`, familyName, e.image)))
	if err != nil {
		e.t.Fatalf("task definition: %v", err)
	}
	e.retry("register task definition", setupTimeout, func(ctx context.Context, s *scheduler) error {
		_, err := s.orch.RegisterTaskDefinition(ctx, &orchv1.RegisterTaskDefinitionRequest{TaskDefinition: td})
		return err
	})
}

// waitInstance waits until the chaos cluster has one ACTIVE container instance whose agent is
// connected.
func (e *env) waitInstance(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		s := e.scheds[i%len(e.scheds)]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := e.instanceConnected(ctx, s)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the agent's container instance is not ACTIVE and connected after %s: %w", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *env) instanceConnected(ctx context.Context, s *scheduler) error {
	list, err := s.orch.ListContainerInstances(ctx, &orchv1.ListContainerInstancesRequest{Cluster: clusterName})
	if err != nil {
		return err
	}
	if len(list.GetContainerInstanceArns()) != 1 {
		return fmt.Errorf("%d container instances", len(list.GetContainerInstanceArns()))
	}
	resp, err := s.orch.DescribeContainerInstances(ctx, &orchv1.DescribeContainerInstancesRequest{
		Cluster: clusterName, ContainerInstances: list.GetContainerInstanceArns()})
	if err != nil {
		return err
	}
	for _, ci := range resp.GetContainerInstances() {
		if ci.GetStatus() != "ACTIVE" || !ci.GetAgentConnected() {
			return fmt.Errorf("container instance %s: %s, agent connected %v (as seen by %s)", ci.GetContainerInstanceArn(), ci.GetStatus(), ci.GetAgentConnected(), s.id)
		}
	}
	return nil
}

// healAll ends every fault: removes the partitions, thaws frozen schedulers and starts those
// that are down.
func (e *env) healAll() {
	e.t.Helper()
	if err := e.net.heal("s1", "s2", "s3"); err != nil {
		e.t.Errorf("heal partitions: %v", err)
	}
	for _, s := range e.scheds {
		if s.paused {
			if err := s.proc.Signal(syscall.SIGCONT); err != nil {
				e.t.Errorf("thaw %s: %v", s.id, err)
			}
			s.paused = false
		}
		if s.proc.Exited() {
			e.restart(s)
		}
	}
}
