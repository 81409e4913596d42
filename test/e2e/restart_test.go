package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

// TestSchedulerKillAndRestart kills the scheduler with SIGKILL and starts it again on the
// same data dir and ports: clusters, task definition revisions and tasks are all there as
// they were, the agent reconnects and the cluster works again.
func TestSchedulerKillAndRestart(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.orchctlOK("create-cluster", "--cluster-name", "blue", "--tags", "key=team,value=e2e")
	e.registerTaskDef(webTaskDef)
	e.registerTaskDef(strings.Replace(webTaskDef, `"cpu": "256"`, `"cpu": "512"`, 1)) // web:2
	running := taskID(e.runTask("default", "web:2"))
	e.waitStatus("default", running, "RUNNING")
	stopped := taskID(e.runTask("default", "web:1"))
	e.waitStatus("default", stopped, "RUNNING")
	e.stopTask("default", stopped)
	ip := attachmentIP(e.describeTask("default", running))
	e.waitHTTP(ip)

	// What a user sees before the crash.
	type snapshot struct {
		clusters  *orchv1.DescribeClustersResponse
		taskDefs  []*orchv1.DescribeTaskDefinitionResponse
		tdList    *orchv1.ListTaskDefinitionsResponse
		tasks     *orchv1.DescribeTasksResponse
		listRun   *orchv1.ListTasksResponse
		listStop  *orchv1.ListTasksResponse
		instances *orchv1.ListContainerInstancesResponse
	}
	take := func() snapshot {
		s := snapshot{
			clusters: &orchv1.DescribeClustersResponse{}, tdList: &orchv1.ListTaskDefinitionsResponse{},
			tasks: &orchv1.DescribeTasksResponse{}, listRun: &orchv1.ListTasksResponse{},
			listStop: &orchv1.ListTasksResponse{}, instances: &orchv1.ListContainerInstancesResponse{},
		}
		e.orchctlJSON(s.clusters, "describe-clusters", "--clusters", "default", "blue")
		for _, td := range []string{"web:1", "web:2"} {
			resp := &orchv1.DescribeTaskDefinitionResponse{}
			e.orchctlJSON(resp, "describe-task-definition", "--task-definition", td)
			s.taskDefs = append(s.taskDefs, resp)
		}
		e.orchctlJSON(s.tdList, "list-task-definitions", "--status", "ALL")
		e.orchctlJSON(s.tasks, "describe-tasks", "--cluster", "default", "--tasks", running, stopped)
		for _, task := range s.tasks.GetTasks() {
			task.Usage = nil // sampled continuously
		}
		e.orchctlJSON(s.listRun, "list-tasks", "--cluster", "default")
		e.orchctlJSON(s.listStop, "list-tasks", "--cluster", "default", "--desired-status", "STOPPED")
		e.orchctlJSON(s.instances, "list-container-instances", "--cluster", "default")
		return s
	}
	before := take()
	if len(before.clusters.GetClusters()) != 2 || len(before.tasks.GetTasks()) != 2 || len(before.tdList.GetTaskDefinitionArns()) != 2 {
		t.Fatalf("unexpected state before the restart: %d clusters, %d tasks, task definitions %v",
			len(before.clusters.GetClusters()), len(before.tasks.GetTasks()), before.tdList.GetTaskDefinitionArns())
	}

	e.killScheduler()
	if r := e.orchctl("list-clusters"); r.code != 255 {
		t.Errorf("orchctl with the scheduler down: want exit code 255, got %s", r)
	}
	// The task does not need the scheduler.
	e.waitHTTP(ip)

	e.startScheduler()
	e.waitCluster("default")
	e.waitAgentConnected("default")
	after := take()

	compare := func(what string, a, b proto.Message) {
		if !proto.Equal(a, b) {
			t.Errorf("%s changed across the restart:\nbefore: %s\nafter:  %s", what, protojson.Format(a), protojson.Format(b))
		}
	}
	compare("describe-clusters", before.clusters, after.clusters)
	for i := range before.taskDefs {
		compare("describe-task-definition", before.taskDefs[i], after.taskDefs[i])
	}
	compare("list-task-definitions", before.tdList, after.tdList)
	compare("describe-tasks", before.tasks, after.tasks)
	compare("list-tasks", before.listRun, after.listRun)
	compare("list-tasks --desired-status STOPPED", before.listStop, after.listStop)
	compare("list-container-instances", before.instances, after.instances)

	// The agent is really back: the running task can be stopped and a new one started.
	final := e.stopTask("default", running)
	if final.GetStopCode() != "UserInitiated" {
		t.Errorf("stopCode %q, want UserInitiated", final.GetStopCode())
	}
	var run orchv1.RunTaskResponse
	e.orchctlJSON(&run, "run-task", "--cluster", "default", "--task-definition", "web", "--wait")
	if len(run.GetTasks()) != 1 || run.GetTasks()[0].GetLastStatus() != "RUNNING" {
		t.Fatalf("run-task --wait after the restart: %s", protojson.Format(&run))
	}
	if td := run.GetTasks()[0].GetTaskDefinitionArn(); !strings.HasSuffix(td, "web:2") {
		t.Errorf("run-task --task-definition web used %s, want the latest revision web:2", td)
	}
	e.waitHTTP(attachmentIP(e.describeTask("default", taskID(run.GetTasks()[0]))))
}

// TestAgentKillAndRestart kills the agent with SIGKILL and starts it again without a join
// token: it comes back as the same host with the identity it saved when it enrolled. The task
// keeps running all along in the same container process with the same IP, stays RUNNING
// without any change, and the restarted agent neither starts it twice nor leaves anything
// orphaned.
func TestAgentKillAndRestart(t *testing.T) {
	e := newEnv(t, envOpts{})
	instance := e.waitAgentConnected("default")
	identity := e.agentIdentity()
	e.registerTaskDef(webTaskDef)
	var run orchv1.RunTaskResponse
	e.orchctlJSON(&run, "run-task", "--cluster", "default", "--task-definition", "web", "--wait")
	id := taskID(run.GetTasks()[0])
	before := e.describeTask("default", id)
	ip := attachmentIP(before)
	e.waitHTTP(ip)
	pid := e.containerPID(id, "web")
	// httpd logs a line per request; the count shows whether logging goes on.
	served := strings.Count(e.waitLogs("default", id, "response:200"), "response:200")

	e.killAgent()
	// The scheduler notices the agent is gone; the task does not.
	e.waitInstance("default", "agentConnected false", func(ci *orchv1.ContainerInstance) bool { return !ci.GetAgentConnected() })
	e.waitHTTP(ip)
	if got := e.describeTask("default", id).GetLastStatus(); got != "RUNNING" {
		t.Errorf("with the agent down the task is %s, want RUNNING", got)
	}

	e.startAgent() // no --join-token, and none in the environment
	again := e.waitAgentConnected("default")
	if again.GetContainerInstanceArn() != instance.GetContainerInstanceArn() || again.GetEc2InstanceId() != instance.GetEc2InstanceId() {
		t.Errorf("the restarted agent is another container instance: %s (%s), want %s (%s)",
			again.GetContainerInstanceArn(), again.GetEc2InstanceId(), instance.GetContainerInstanceArn(), instance.GetEc2InstanceId())
	}
	if got := e.agentIdentity(); got != identity {
		t.Errorf("the agent's identity files changed across the restart")
	}
	if strings.Contains(e.agent.Log(), "msg=enrolled ") {
		t.Errorf("the restarted agent enrolled again instead of using its saved identity:\n%s", e.agent.Log())
	}
	// A second task placed after the restart: once it runs, the restarted agent has taken in
	// its whole desired set, the first task included.
	var run2 orchv1.RunTaskResponse
	e.orchctlJSON(&run2, "run-task", "--cluster", "default", "--task-definition", "web", "--wait")
	id2 := taskID(run2.GetTasks()[0])

	after := e.describeTask("default", id)
	if got := e.containerPID(id, "web"); got != pid {
		t.Errorf("container pid %d after the agent restart, want %d (the same process)", got, pid)
	}
	if !processAlive(int(pid)) {
		t.Errorf("container process %d is gone", pid)
	}
	if after.GetLastStatus() != "RUNNING" || attachmentIP(after) != ip || after.GetVersion() != before.GetVersion() ||
		!proto.Equal(after.GetStartedAt(), before.GetStartedAt()) {
		t.Errorf("task changed across the agent restart: want RUNNING, ip %s, version %d, startedAt %v; got %s, ip %s, version %d, startedAt %v",
			ip, before.GetVersion(), before.GetStartedAt().AsTime(),
			after.GetLastStatus(), attachmentIP(after), after.GetVersion(), after.GetStartedAt().AsTime())
	}
	if body := e.waitHTTP(ip); !strings.HasPrefix(body, "hello from orch task ") {
		t.Errorf("task at %s serves %q", ip, body)
	}
	// The requests served while the agent was down and since are in the task's logs.
	e.waitLogsMatch("default", id, fmt.Sprintf("at least %d lines response:200", served+2), func(logs string) bool {
		return strings.Count(logs, "response:200") >= served+2
	})

	// Exactly the two tasks' things exist: nothing started twice, nothing left over.
	wantCtrs := []string{id + "-web", id2 + "-web"}
	wantNetns := []string{"orch-" + id[:12], "orch-" + id2[:12]}
	wantVeths := []string{"ve" + id[:12], "ve" + id2[:12]}
	for _, w := range [][]string{wantCtrs, wantNetns, wantVeths} {
		slices.Sort(w)
	}
	if got := e.containersOf(""); !slices.Equal(got, wantCtrs) {
		t.Errorf("containerd containers %v, want %v", got, wantCtrs)
	}
	for _, tid := range []string{id, id2} {
		if got := e.snapshotsOf(tid); !slices.Equal(got, []string{tid + "-web"}) {
			t.Errorf("task %s: snapshots %v, want its container's alone", tid, got)
		}
	}
	if got := sorted(e.netnsFiles()); !slices.Equal(got, wantNetns) {
		t.Errorf("netns dir holds %v, want %v", got, wantNetns)
	}
	if got := sorted(e.hostLinks("ve")); !slices.Equal(got, wantVeths) {
		t.Errorf("host veths %v, want %v", got, wantVeths)
	}

	// The adopted task stops like any other, and then nothing is left.
	for _, tid := range []string{id, id2} {
		if st := e.stopTask("default", tid); container(t, st, "web").ExitCode == nil {
			t.Errorf("task %s: stopped container has no exitCode", tid)
		}
	}
	if got := e.containersOf(""); len(got) > 0 {
		t.Errorf("containers left after stopping every task: %v", got)
	}
	if got := e.netnsFiles(); len(got) > 0 {
		t.Errorf("netns files left after stopping every task: %v", got)
	}
	for _, tid := range []string{id, id2} {
		if got := e.snapshotsOf(tid); len(got) > 0 {
			t.Errorf("task %s: snapshots left after it stopped: %v", tid, got)
		}
	}
	if got := e.hostLinks("ve"); len(got) > 0 {
		t.Errorf("host veths left after stopping every task: %v", got)
	}
	if processAlive(int(pid)) {
		t.Errorf("container process %d still alive after its task stopped", pid)
	}
}

// agentIdentity is the content of the agent's identity files (<agent data>/tls).
func (e *env) agentIdentity() string {
	e.t.Helper()
	var all strings.Builder
	for _, f := range []string{"ca.pem", "node.pem", "node-key.pem"} {
		b, err := os.ReadFile(filepath.Join(e.agentData, "tls", f))
		if err != nil {
			e.t.Fatalf("agent identity: %v", err)
		}
		all.Write(b)
	}
	return all.String()
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
