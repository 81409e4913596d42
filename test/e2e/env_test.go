package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
	"orch/test/harness"
)

// Limits of the polls; generous because the machine may be busy with the other tests.
const (
	waitTimeout = 60 * time.Second
	pollEvery   = 200 * time.Millisecond
	// ctrdNamespace is the containerd namespace the agents use (their default).
	ctrdNamespace = "orch"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := harness.RemoveBinaries(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// envOpts chooses how orch runs.
type envOpts struct {
	// dev runs the single-process mode: orch-scheduler --dev with its embedded agent, which
	// serves every cluster.
	dev bool
	// clusters are the agent's --cluster values (default "default"); "*" serves every cluster.
	clusters []string
	// schedulerOnly starts the scheduler alone: no containerd, registry, host namespace or
	// agent (for what needs only the control plane).
	schedulerOnly bool
	// schedulerArgs are added to every orch-scheduler command line.
	schedulerArgs []string
}

// env is one private orch installation: containerd, registry, a host network namespace, a
// scheduler and an agent (or one dev-mode process), all removed when the test ends.
type env struct {
	t    *testing.T
	opts envOpts
	bins map[string]string
	ctrd *harness.Containerd
	reg  *harness.Registry

	hostNS   string // name of the "host" network namespace (ip netns)
	netnsDir string // where the agent mounts the tasks' network namespaces

	schedData, agentData                                 string
	grpcAddr, httpAddr, raftAddr, agentAddr, metricsAddr string

	sched *harness.Process // the scheduler (in dev mode also the agent)
	agent *harness.Process // nil in dev mode

	// creds are the cluster's CA file, API token and join tokens, obtained once from the
	// first scheduler start (they outlive restarts).
	creds harness.Credentials
	// orchctlConfig is orchctl's $ORCH_CONFIG: a file no test writes unless it means to, so
	// that the machine's ~/.orch/config.json never counts.
	orchctlConfig string

	webImage, busyboxImage string // full references in the private registry
}

// newEnv starts everything and waits until the scheduler has the default cluster and the
// agent, enrolled with the worker join token, is connected to it.
func newEnv(t *testing.T, opts envOpts) *env {
	t.Helper()
	harness.RequireRoot(t)
	if len(opts.clusters) == 0 {
		opts.clusters = []string{"default"}
	}
	e := &env{t: t, opts: opts, bins: harness.BuildBinaries(t, harness.OrchCommands...)}
	e.orchctlConfig = filepath.Join(t.TempDir(), "orchctl-config.json")
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)) }
	e.grpcAddr, e.httpAddr, e.raftAddr = addr(), addr(), addr()
	// The agent's own listeners take any free port (it advertises the one it got): a port
	// picked free here could be taken by another test before the agent binds it.
	e.agentAddr, e.metricsAddr = "127.0.0.1:0", "127.0.0.1:0"
	e.schedData = filepath.Join(t.TempDir(), "scheduler")
	e.agentData = filepath.Join(t.TempDir(), "agent")
	if opts.schedulerOnly {
		e.startScheduler()
		e.creds = e.bootstrap()
		e.waitCluster("default")
		return e
	}

	// Registered first so that their cleanups run last: after the processes and containerd
	// (with every container) are gone.
	e.hostNS, e.netnsDir = newHostNS(t)

	e.ctrd = harness.StartContainerd(t)
	e.reg = harness.StartRegistry(t)
	var err error
	if e.webImage, err = harness.PushImage(e.reg.Addr, "e2e/web:latest", harness.DemoWebConfig()); err != nil {
		t.Fatalf("push web image: %v", err)
	}
	if e.busyboxImage, err = harness.PushImage(e.reg.Addr, "e2e/busybox:latest", harness.ImageConfig{
		Cmd: []string{"sh", "-c", "echo idle; exec sleep 3600"},
	}); err != nil {
		t.Fatalf("push busybox image: %v", err)
	}

	e.startScheduler()
	e.creds = e.bootstrap()
	e.waitCluster("default")
	if !opts.dev {
		e.startAgent("--join-token", e.creds.WorkerToken)
	}
	e.waitAgentConnected("default")
	return e
}

// newHostNS creates a "host" network namespace for an agent and the dir where it mounts its
// tasks' namespaces; both are removed at cleanup (after the processes registered later).
func newHostNS(t *testing.T) (name, netnsDir string) {
	t.Helper()
	name = "orche2e-" + harness.RandomSuffix()
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	mustRun(t, "ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
	netnsDir = filepath.Join(t.TempDir(), "netns")
	t.Cleanup(func() {
		if err := harness.UnmountUnder(netnsDir); err != nil {
			t.Errorf("unmount task namespaces: %v", err)
		}
	})
	return name, netnsDir
}

// bootstrap obtains the credentials of the scheduler just started on an empty data dir: its
// CA file, the API token of the one-time bootstrap and the join tokens. It gives up at once
// if the scheduler exits.
func (e *env) bootstrap() harness.Credentials {
	e.t.Helper()
	return bootstrapScheduler(e.t, e.sched, e.schedData, e.grpcAddr)
}

func bootstrapScheduler(t *testing.T, sched *harness.Process, dataDir, endpoint string) harness.Credentials {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	go func() {
		select {
		case <-sched.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	creds, err := harness.Bootstrap(ctx, dataDir, endpoint)
	if err != nil {
		if sched.Exited() {
			t.Fatalf("orch-scheduler exited (%v) before it could be bootstrapped: %v", sched.Wait(), err)
		}
		t.Fatalf("credentials of the scheduler at %s: %v", endpoint, err)
	}
	return creds
}

// on returns the env for use in a subtest: failures and cleanups go to t.
func (e *env) on(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// startScheduler starts orch-scheduler (again, after a kill) with the same data dir and
// ports, envOpts.schedulerArgs and extra.
func (e *env) startScheduler(extra ...string) {
	e.t.Helper()
	args := []string{"--data-dir", e.schedData, "--grpc-addr", e.grpcAddr, "--http-addr", e.httpAddr,
		"--raft-addr", e.raftAddr}
	if e.opts.dev {
		args = append(args, "--dev", "--containerd", e.ctrd.Address, "--agent-addr", e.agentAddr,
			"--agent-data-dir", e.agentData, "--netns-dir", e.netnsDir, "--host-netns", "/run/netns/"+e.hostNS)
	}
	args = append(append(args, e.opts.schedulerArgs...), extra...)
	e.sched = harness.StartProcess(e.t, e.bins["orch-scheduler"], cleanEnv, args...)
}

// startAgent starts orch-agent with the same data dir and ports, plus extra: the first time
// with "--join-token", e.creds.WorkerToken; after a kill with nothing, since it has its
// identity in <agent data>/tls then.
func (e *env) startAgent(extra ...string) {
	e.t.Helper()
	args := []string{"--scheduler", e.grpcAddr, "--data-dir", e.agentData, "--containerd", e.ctrd.Address,
		"--namespace", ctrdNamespace, "--listen", e.agentAddr, "--metrics-addr", e.metricsAddr,
		"--netns-dir", e.netnsDir, "--host-netns", "/run/netns/" + e.hostNS}
	for _, c := range e.opts.clusters {
		args = append(args, "--cluster", c)
	}
	e.agent = harness.StartProcess(e.t, e.bins["orch-agent"], cleanEnv, append(args, extra...)...)
}

// cleanEnv keeps the settings of whoever runs the tests out of orch's programs: each test
// passes what it means to on the command line.
var cleanEnv = []string{"ORCH_ADDR=", "ORCH_TOKEN=", "ORCH_CA_CERT=", "ORCH_JOIN_TOKEN=", "ORCH_SNAPSHOT_PASSPHRASE="}

// result is what one orchctl run printed and its exit code.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit code %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// orchctl runs the CLI against this env's scheduler with the cluster's CA file and API
// token.
func (e *env) orchctl(args ...string) result {
	e.t.Helper()
	return e.orchctlWith(nil, append([]string{"--ca-cert", e.creds.CAFile, "--token", e.creds.Token}, args...)...)
}

// orchctlWith runs the CLI against this env's scheduler (a later --endpoint in args wins) with
// no credentials but those in args and env (added to the environment).
func (e *env) orchctlWith(env []string, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bins["orchctl"], append([]string{"--endpoint", e.grpcAddr}, args...)...)
	cmd.Env = append(append(os.Environ(), cleanEnv...), "ORCH_CONFIG="+e.orchctlConfig)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		e.t.Fatalf("orchctl %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// orchctlOK runs orchctl and fails the test unless it exits 0.
func (e *env) orchctlOK(args ...string) result {
	e.t.Helper()
	r := e.orchctl(args...)
	if r.code != 0 {
		e.t.Fatalf("orchctl %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// orchctlJSON runs orchctl -o json, requires exit code 0 and decodes stdout into m.
func (e *env) orchctlJSON(m proto.Message, args ...string) {
	e.t.Helper()
	r := e.orchctlOK(append(args, "-o", "json")...)
	decodeJSON(e.t, r.stdout, m)
}

func decodeJSON(t *testing.T, s string, m proto.Message) {
	t.Helper()
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(s), m); err != nil {
		t.Fatalf("decode %s from orchctl output: %v\n%s", m.ProtoReflect().Descriptor().Name(), err, s)
	}
}

// writeFile writes content to a new file in a temp dir and returns its path.
func (e *env) writeFile(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// registerTaskDef registers a task definition written as ECS JSON, as a user would: from a
// file. Its %WEB% and %BUSYBOX% placeholders become the test images.
func (e *env) registerTaskDef(js string) *orchv1.TaskDefinition {
	e.t.Helper()
	js = strings.NewReplacer("%WEB%", e.webImage, "%BUSYBOX%", e.busyboxImage).Replace(js)
	p := e.writeFile("taskdef.json", js)
	var resp orchv1.RegisterTaskDefinitionResponse
	e.orchctlJSON(&resp, "register-task-definition", "--cli-input-json", "file://"+p)
	if resp.GetTaskDefinition().GetRevision() == 0 {
		e.t.Fatalf("register-task-definition returned no revision: %v", &resp)
	}
	return resp.GetTaskDefinition()
}

// runTask runs one task without waiting and returns it as RunTask returned it.
func (e *env) runTask(cluster, td string, extra ...string) *orchv1.Task {
	e.t.Helper()
	var resp orchv1.RunTaskResponse
	e.orchctlJSON(&resp, append([]string{"run-task", "--cluster", cluster, "--task-definition", td}, extra...)...)
	if len(resp.GetTasks()) != 1 || len(resp.GetFailures()) != 0 {
		e.t.Fatalf("run-task %s: want one task and no failure, got %v", td, &resp)
	}
	return resp.GetTasks()[0]
}

func (e *env) describeTask(cluster, id string) *orchv1.Task {
	e.t.Helper()
	var resp orchv1.DescribeTasksResponse
	e.orchctlJSON(&resp, "describe-tasks", "--cluster", cluster, "--tasks", id)
	if len(resp.GetTasks()) != 1 {
		e.t.Fatalf("describe-tasks %s: want one task, got %v", id, &resp)
	}
	return resp.GetTasks()[0]
}

// waitTask polls describe-tasks until cond holds.
func (e *env) waitTask(cluster, id, what string, cond func(*orchv1.Task) bool) *orchv1.Task {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		task := e.describeTask(cluster, id)
		if cond(task) {
			return task
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("task %s: not %s after %s; last seen:\n%s", id, what, waitTimeout, protojson.Format(task))
		}
		time.Sleep(pollEvery)
	}
}

// waitStatus waits until the task's lastStatus is status.
func (e *env) waitStatus(cluster, id, status string) *orchv1.Task {
	e.t.Helper()
	return e.waitTask(cluster, id, status, func(t *orchv1.Task) bool { return t.GetLastStatus() == status })
}

// stopTask stops a task with stop-task --wait and returns its final state.
func (e *env) stopTask(cluster, id string) *orchv1.Task {
	e.t.Helper()
	var resp orchv1.StopTaskResponse
	e.orchctlJSON(&resp, "stop-task", "--cluster", cluster, "--task", id, "--reason", "e2e: done", "--wait")
	if resp.GetTask().GetLastStatus() != "STOPPED" {
		e.t.Fatalf("stop-task --wait: task is %s, want STOPPED:\n%s", resp.GetTask().GetLastStatus(), protojson.Format(&resp))
	}
	return resp.GetTask()
}

// taskID is the 32-hex id of a task, from its id or its ARN.
func taskID(t *orchv1.Task) string {
	if t.GetId() != "" {
		return t.GetId()
	}
	return t.GetTaskArn()[strings.LastIndex(t.GetTaskArn(), "/")+1:]
}

// attachmentIP is the privateIPv4Address of the task's ENI attachment, as ECS shows it.
func attachmentIP(t *orchv1.Task) string {
	for _, a := range t.GetAttachments() {
		for _, d := range a.GetDetails() {
			if d.GetName() == "privateIPv4Address" {
				return d.GetValue()
			}
		}
	}
	return ""
}

// container returns the named container of a task, failing the test if there is none.
func container(t *testing.T, task *orchv1.Task, name string) *orchv1.Container {
	t.Helper()
	for _, c := range task.GetContainers() {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("task %s has no container %q:\n%s", taskID(task), name, protojson.Format(task))
	return nil
}

// exitCodeOf is a container's exit code, or "none".
func exitCodeOf(c *orchv1.Container) string {
	if c.ExitCode == nil {
		return "none"
	}
	return fmt.Sprint(c.GetExitCode())
}

// waitLogs polls `orchctl logs` until its output contains want, and returns it.
func (e *env) waitLogs(cluster, id, want string, extra ...string) string {
	e.t.Helper()
	return e.waitLogsMatch(cluster, id, fmt.Sprintf("%q", want), func(logs string) bool { return strings.Contains(logs, want) }, extra...)
}

// waitLogsMatch polls `orchctl logs` until match accepts its output, and returns it.
func (e *env) waitLogsMatch(cluster, id, what string, match func(string) bool, extra ...string) string {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		r := e.orchctl(append([]string{"logs", "--cluster", cluster, id}, extra...)...)
		if r.code == 0 && match(r.stdout) {
			return r.stdout
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("orchctl logs %s %v does not show %s: %s", id, extra, what, r)
		}
		time.Sleep(pollEvery)
	}
}

// waitCluster waits until the scheduler answers and lists the cluster.
func (e *env) waitCluster(name string) {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		r := e.orchctl("list-clusters")
		if r.code == 0 && strings.Contains(r.stdout, ":cluster/"+name+"\n") {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("scheduler does not list cluster %s: %s", name, r)
		}
		time.Sleep(pollEvery)
	}
}

// waitAgentConnected waits until the cluster's container instance is ACTIVE with its agent
// connected, and returns it.
func (e *env) waitAgentConnected(cluster string) *orchv1.ContainerInstance {
	e.t.Helper()
	return e.waitInstance(cluster, "ACTIVE and agentConnected", func(ci *orchv1.ContainerInstance) bool {
		return ci.GetAgentConnected() && ci.GetStatus() == "ACTIVE"
	})
}

// waitInstance polls describe-container-instances until the cluster has exactly one container
// instance and cond holds for it.
func (e *env) waitInstance(cluster, what string, cond func(*orchv1.ContainerInstance) bool) *orchv1.ContainerInstance {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var resp orchv1.DescribeContainerInstancesResponse
		r := e.orchctl("describe-container-instances", "--cluster", cluster, "-o", "json")
		if r.code == 0 {
			decodeJSON(e.t, r.stdout, &resp)
			cis := resp.GetContainerInstances()
			if len(cis) > 1 {
				e.t.Fatalf("cluster %s has %d container instances, want 1:\n%s", cluster, len(cis), r.stdout)
			}
			if len(cis) == 1 && cond(cis[0]) {
				return cis[0]
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("container instance of cluster %s not %s after %s: %s", cluster, what, waitTimeout, r)
		}
		time.Sleep(pollEvery)
	}
}

// killScheduler kills the scheduler with SIGKILL and waits for it to exit.
func (e *env) killScheduler() {
	e.t.Helper()
	if err := e.sched.Kill9(); err != nil {
		e.t.Fatal(err)
	}
}

// killAgent kills the agent with SIGKILL and waits for it to exit.
func (e *env) killAgent() {
	e.t.Helper()
	if err := e.agent.Kill9(); err != nil {
		e.t.Fatal(err)
	}
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}
