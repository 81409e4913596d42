package taskrunner_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/agent/eni"
	"orch/agent/runtime"
	"orch/agent/runtime/fake"
	"orch/agent/taskrunner"
	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
)

// waitTimeout bounds every wait of these tests: the fake runtime answers in microseconds, so
// only a bug (or the runner's own 5 s awaitExit fallback) comes near it.
const waitTimeout = 2 * time.Second

const taskID = "0123456789abcdef0123456789abcdef"

// rid is the runtime id the runner gives a container of the test task.
func rid(name string) string { return taskID + "-" + name }

// fakeNetwork is a hand-written agent/eni stand-in that records its calls.
type fakeNetwork struct {
	rt      *fake.Runtime // to snapshot the runtime's call log at Teardown
	SetupFn func(ctx context.Context, s eni.Spec) error

	mu         sync.Mutex
	calls      []string
	atTeardown []string // the runtime's call log when Teardown was called
}

func (n *fakeNetwork) record(call string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, call)
}

func (n *fakeNetwork) EnsureBridge(_ context.Context, bridge, gatewayCIDR, clusterCIDR string) error {
	n.record(fmt.Sprintf("bridge %s %s %s", bridge, gatewayCIDR, clusterCIDR))
	return nil
}

func (n *fakeNetwork) Setup(ctx context.Context, s eni.Spec) (string, error) {
	if n.SetupFn != nil {
		if err := n.SetupFn(ctx, s); err != nil {
			return "", err
		}
	}
	n.record(fmt.Sprintf("setup %s %s/%d", s.NetNS, s.IP, s.PrefixLen))
	return "/run/netns/" + s.NetNS, nil
}

func (n *fakeNetwork) Teardown(_ context.Context, s eni.Spec) error {
	n.record("teardown " + s.NetNS)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rt != nil {
		n.atTeardown = n.rt.Calls()
	}
	return nil
}

func (n *fakeNetwork) Calls() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.calls)
}

// harness runs one taskrunner as the agent does and records every status it reports.
type harness struct {
	t      *testing.T
	rt     *fake.Runtime
	net    *fakeNetwork
	dir    string // TaskDir
	runner *taskrunner.Runner
	cancel context.CancelFunc

	mu      sync.Mutex
	changed chan struct{}
	reports []*orchv1.TaskStatus
}

type setup struct {
	rt         *fake.Runtime // default: a new fake
	checkpoint *orchv1.TaskStatus
	existing   map[string]runtime.ContainerInfo
}

// newHarness makes the runner; run starts it. Cleanup cancels it and waits for Run to return.
func newHarness(t *testing.T, a *orchv1.Assignment, s setup) *harness {
	t.Helper()
	if s.rt == nil {
		s.rt = fake.New()
	}
	h := &harness{t: t, rt: s.rt, net: &fakeNetwork{rt: s.rt}, dir: t.TempDir() + "/task", changed: make(chan struct{})}
	h.runner = taskrunner.New(taskrunner.Config{
		Runtime: s.rt, Network: h.net, TaskDir: h.dir, LogDir: t.TempDir(),
		Report:     h.report,
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Existing:   s.existing,
		ResolvConf: []byte("nameserver 192.0.2.53\n"),
	}, a, s.checkpoint)
	return h
}

func (h *harness) run() *harness {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go h.runner.Run(ctx)
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-h.runner.Done():
		case <-time.After(10 * time.Second):
			h.t.Error("Run did not return after its context was cancelled")
		}
	})
	return h
}

// report is Config.Report: it checks that statuses only move forward.
func (h *harness) report(st *orchv1.TaskStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(h.reports); n > 0 {
		prev := h.reports[n-1]
		if lifecycle.Rank(st.GetLastStatus()) < lifecycle.Rank(prev.GetLastStatus()) {
			h.t.Errorf("task status went backward: %s after %s", st.GetLastStatus(), prev.GetLastStatus())
		}
		for _, c := range st.GetContainers() {
			if p := containerIn(prev, c.GetName()); p != nil && p.GetLastStatus() != c.GetLastStatus() &&
				!lifecycle.ContainerForward(p.GetLastStatus(), c.GetLastStatus()) {
				h.t.Errorf("container %s went backward: %s after %s", c.GetName(), c.GetLastStatus(), p.GetLastStatus())
			}
		}
	}
	h.reports = append(h.reports, st)
	close(h.changed)
	h.changed = make(chan struct{})
}

// shutdown cancels Run, as the agent does on exit, and waits for it to return.
func (h *harness) shutdown() {
	h.t.Helper()
	h.cancel()
	select {
	case <-h.runner.Done():
	case <-time.After(time.Second):
		h.t.Fatal("Run did not return within 1s of its context being cancelled")
	}
}

// await returns the first report that satisfies pred, waiting up to timeout for it.
func (h *harness) await(timeout time.Duration, pred func(*orchv1.TaskStatus) bool) (*orchv1.TaskStatus, bool) {
	deadline := time.After(timeout)
	for i := 0; ; {
		h.mu.Lock()
		ch, reports := h.changed, h.reports
		h.mu.Unlock()
		for ; i < len(reports); i++ {
			if pred(reports[i]) {
				return reports[i], true
			}
		}
		select {
		case <-ch:
		case <-deadline:
			return nil, false
		}
	}
}

// waitFor is await that fails the test on timeout.
func (h *harness) waitFor(what string, pred func(*orchv1.TaskStatus) bool) *orchv1.TaskStatus {
	h.t.Helper()
	st, ok := h.await(waitTimeout, pred)
	if !ok {
		h.t.Fatalf("no report with %s within %v; statuses %v, last %v; runtime calls %q",
			what, waitTimeout, h.sequence(), h.last(), h.rt.Calls())
	}
	return st
}

func (h *harness) waitStatus(status string) *orchv1.TaskStatus {
	h.t.Helper()
	return h.waitFor("lastStatus "+status, func(st *orchv1.TaskStatus) bool { return st.GetLastStatus() == status })
}

func (h *harness) waitContainer(name, status string) *orchv1.TaskStatus {
	h.t.Helper()
	return h.waitFor("container "+name+" "+status, func(st *orchv1.TaskStatus) bool {
		return containerIn(st, name).GetLastStatus() == status
	})
}

func (h *harness) last() *orchv1.TaskStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.reports) == 0 {
		return nil
	}
	return h.reports[len(h.reports)-1]
}

// sequence returns the reported lastStatus values without repeats.
func (h *harness) sequence() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.reports {
		if len(out) == 0 || out[len(out)-1] != r.GetLastStatus() {
			out = append(out, r.GetLastStatus())
		}
	}
	return out
}

func (h *harness) reported(status string) bool { return slices.Contains(h.sequence(), status) }

// awaitCall waits for a call in the fake runtime's log.
func (h *harness) awaitCall(call string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := h.rt.AwaitCall(ctx, call); err != nil {
		h.t.Fatal(err)
	}
}

func containerIn(st *orchv1.TaskStatus, name string) *orchv1.ContainerStatus {
	for _, c := range st.GetContainers() {
		if c.GetName() == name {
			return c
		}
	}
	return nil
}

// ---- task definitions and assignments ----

func assignment(defs ...*orchv1.ContainerDefinition) *orchv1.Assignment {
	return &orchv1.Assignment{
		Task: &orchv1.Task{
			Id: taskID, Cluster: "default", DesiredStatus: lifecycle.DesiredRunning,
			Eni: &orchv1.Eni{
				Id: "eni-0123456789ab", Ip: "10.64.3.7", PrefixLen: 24, Gateway: "10.64.3.1",
				Mac: "02:00:0a:40:03:07", Netns: "orch-0123456789ab", Bridge: "orch-br0", Subnet: "10.64.0.0/16",
			},
		},
		TaskDefinition: &orchv1.TaskDefinition{Family: "web", Revision: 1, ContainerDefinitions: defs},
	}
}

// stopRequested is the assignment with desiredStatus STOPPED, as the agent passes to Update.
func stopRequested(a *orchv1.Assignment) *orchv1.Assignment {
	a = proto.Clone(a).(*orchv1.Assignment)
	a.Task.DesiredStatus = lifecycle.DesiredStopped
	return a
}

type defOpt func(*orchv1.ContainerDefinition)

func def(name string, opts ...defOpt) *orchv1.ContainerDefinition {
	d := &orchv1.ContainerDefinition{Name: name, Image: "registry.local/" + name + ":1"}
	for _, o := range opts {
		o(d)
	}
	return d
}

func nonEssential(d *orchv1.ContainerDefinition) { d.Essential = proto.Bool(false) }

func dependsOn(name, condition string) defOpt {
	return func(d *orchv1.ContainerDefinition) {
		d.DependsOn = append(d.DependsOn, &orchv1.ContainerDependency{ContainerName: name, Condition: condition})
	}
}

func stopTimeout(seconds int32) defOpt {
	return func(d *orchv1.ContainerDefinition) { d.StopTimeout = proto.Int32(seconds) }
}

// checkpoint is a status as a previous agent process checkpointed it: the task at status,
// each container at its given status.
func checkpoint(status string, containers map[string]string) *orchv1.TaskStatus {
	now := timestamppb.Now()
	st := &orchv1.TaskStatus{TaskId: taskID, LastStatus: status, PullStartedAt: now, PullStoppedAt: now, StartedAt: now}
	names := make([]string, 0, len(containers))
	for n := range containers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		st.Containers = append(st.Containers, &orchv1.ContainerStatus{Name: n, LastStatus: containers[n], RuntimeId: rid(n)})
	}
	return st
}

// seedSpec is the spec of a container of the test task as the runner would have created it.
func seedSpec(d *orchv1.ContainerDefinition) runtime.ContainerSpec {
	return runtime.ContainerSpec{
		ID: rid(d.GetName()), TaskID: taskID, Def: d,
		Labels: map[string]string{runtime.LabelTaskID: taskID, runtime.LabelContainer: d.GetName(), runtime.LabelCluster: "default"},
	}
}

// existing is what the agent passes as Config.Existing after a restart: the runtime's
// containers of the test task by container name.
func existing(t *testing.T, rt *fake.Runtime) map[string]runtime.ContainerInfo {
	t.Helper()
	infos, err := rt.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]runtime.ContainerInfo{}
	for _, i := range infos {
		if i.Labels[runtime.LabelTaskID] == taskID {
			out[i.Labels[runtime.LabelContainer]] = i
		}
	}
	return out
}

// ---- assertions ----

func callsWith(calls []string, prefix string) []string {
	var out []string
	for _, c := range calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// before reports whether call a is in calls, and before call b (which must be there too).
func before(calls []string, a, b string) bool {
	i, j := slices.Index(calls, a), slices.Index(calls, b)
	return i >= 0 && j >= 0 && i < j
}

func exitCode(t *testing.T, st *orchv1.TaskStatus, name string) int32 {
	t.Helper()
	c := containerIn(st, name)
	if c == nil || c.ExitCode == nil {
		t.Fatalf("container %s has no exit code in %v", name, st)
	}
	return c.GetExitCode()
}

func dirExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
