package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	orchv1 "orch/proto/orch/v1"
)

// webTaskDef is the demo web server as a user would write it: busybox httpd on port 80, with
// an init process so that SIGTERM stops it promptly.
const webTaskDef = `{
  "family": "web",
  "networkMode": "awsvpc",
  "requiresCompatibilities": ["EC2"],
  "cpu": "256",
  "memory": "128",
  "containerDefinitions": [
    {
      "name": "web",
      "image": "%WEB%",
      "essential": true,
      "portMappings": [{"containerPort": 80, "protocol": "tcp"}],
      "linuxParameters": {"initProcessEnabled": true},
      "stopTimeout": 10
    }
  ]
}`

// TestRunServeStop follows one web task through its whole life: run-task --wait, describe,
// HTTP from the host, logs, stop-task --wait, and checks that nothing of it is left behind
// and that its IP can be used again.
func TestRunServeStop(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.registerTaskDef(webTaskDef)

	var run orchv1.RunTaskResponse
	e.orchctlJSON(&run, "run-task", "--cluster", "default", "--task-definition", "web", "--wait")
	if len(run.GetTasks()) != 1 || len(run.GetFailures()) != 0 {
		t.Fatalf("run-task --wait: want one task and no failure:\n%s", protojson.Format(&run))
	}
	id := taskID(run.GetTasks()[0])
	if got := run.GetTasks()[0].GetLastStatus(); got != "RUNNING" {
		t.Errorf("run-task --wait printed the task as %s, want RUNNING", got)
	}

	task := e.describeTask("default", id)
	ip := attachmentIP(task)
	switch {
	case task.GetLastStatus() != "RUNNING" || task.GetDesiredStatus() != "RUNNING":
		t.Errorf("describe-tasks: lastStatus %s desiredStatus %s, want RUNNING RUNNING", task.GetLastStatus(), task.GetDesiredStatus())
	case ip == "":
		t.Errorf("describe-tasks: no ENI attachment with privateIPv4Address")
	case task.GetStartedAt() == nil || task.GetPullStartedAt() == nil || task.GetPullStoppedAt() == nil:
		t.Errorf("describe-tasks: want startedAt, pullStartedAt and pullStoppedAt set")
	case task.GetPullStoppedAt().AsTime().Before(task.GetPullStartedAt().AsTime()),
		task.GetStartedAt().AsTime().Before(task.GetPullStoppedAt().AsTime()):
		t.Errorf("describe-tasks: want pullStartedAt <= pullStoppedAt <= startedAt")
	}
	if c := container(t, task, "web"); c.GetLastStatus() != "RUNNING" {
		t.Errorf("container web is %s, want RUNNING", c.GetLastStatus())
	}
	if t.Failed() {
		t.Fatalf("task as described:\n%s", protojson.Format(task))
	}

	body := e.waitHTTP(ip)
	if !strings.HasPrefix(body, "hello from orch task ") {
		t.Errorf("GET http://%s/ from the host = %q, want the page the task serves (hello from orch task ...)", ip, body)
	}
	e.waitLogs("default", id, "demo-web: serving /var/www on port 80")

	stopped := e.stopTask("default", id)
	c := container(t, stopped, "web")
	if c.ExitCode == nil {
		t.Errorf("stopped container web has no exitCode")
	}
	if stopped.GetStopCode() != "UserInitiated" || stopped.GetStoppedReason() != "e2e: done" {
		t.Errorf("stopCode %q stoppedReason %q, want UserInitiated and the --reason given", stopped.GetStopCode(), stopped.GetStoppedReason())
	}
	if stopped.GetDesiredStatus() != "STOPPED" || stopped.GetStoppedAt() == nil {
		t.Errorf("desiredStatus %s stoppedAt %v, want STOPPED and a time", stopped.GetDesiredStatus(), stopped.GetStoppedAt())
	}

	// STOPPED means everything the task had is released.
	if slices.Contains(e.netnsFiles(), "orch-"+id[:12]) {
		t.Errorf("netns file orch-%s is still in %s after STOPPED", id[:12], e.netnsDir)
	}
	if links := e.hostLinks("ve" + id[:12]); len(links) > 0 {
		t.Errorf("host veth %v still exists after STOPPED", links)
	}
	if ctrs := e.containersOf(id); len(ctrs) > 0 {
		t.Errorf("containerd still has containers %v after STOPPED", ctrs)
	}
	if snaps := e.snapshotsOf(id); len(snaps) > 0 {
		t.Errorf("containerd still has snapshots %v after STOPPED", snaps)
	}

	// The next task gets the lowest free address: the one just released, and it works.
	var again orchv1.RunTaskResponse
	e.orchctlJSON(&again, "run-task", "--cluster", "default", "--task-definition", "web", "--wait")
	if len(again.GetTasks()) != 1 {
		t.Fatalf("second run-task: %s", protojson.Format(&again))
	}
	id2 := taskID(again.GetTasks()[0])
	ip2 := attachmentIP(e.describeTask("default", id2))
	if ip2 != ip {
		t.Errorf("second task got IP %s, want the freed %s", ip2, ip)
	}
	if body := e.waitHTTP(ip2); !strings.HasPrefix(body, "hello from orch task ") {
		t.Errorf("second task at %s serves %q", ip2, body)
	}
	e.stopTask("default", id2)
}

// TestEssentialContainerExit checks that an essential container's exit stops its task with
// the exit code, and that a non-essential container's exit does not.
func TestEssentialContainerExit(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.registerTaskDef(`{
  "family": "crash",
  "networkMode": "awsvpc",
  "memory": "64",
  "containerDefinitions": [
    {"name": "main", "image": "%BUSYBOX%", "essential": true, "command": ["sh", "-c", "echo crashing; exit 3"]}
  ]
}`)
	e.registerTaskDef(`{
  "family": "sidecar",
  "networkMode": "awsvpc",
  "memory": "64",
  "containerDefinitions": [
    {"name": "main", "image": "%BUSYBOX%", "essential": true, "stopTimeout": 2},
    {"name": "side", "image": "%BUSYBOX%", "essential": false, "command": ["sh", "-c", "echo side done; exit 5"]}
  ]
}`)

	// The container exits right after it starts: the task may well be seen RUNNING first, so
	// this waits for STOPPED with describe-tasks rather than with run-task --wait.
	id := taskID(e.runTask("default", "crash"))
	task := e.waitStatus("default", id, "STOPPED")
	if c := container(t, task, "main"); c.ExitCode == nil || c.GetExitCode() != 3 {
		t.Errorf("container main exitCode %s, want 3", exitCodeOf(c))
	}
	if task.GetStopCode() != "EssentialContainerExited" || task.GetDesiredStatus() != "STOPPED" {
		t.Errorf("stopCode %q desiredStatus %s, want EssentialContainerExited STOPPED", task.GetStopCode(), task.GetDesiredStatus())
	}
	e.waitLogs("default", id, "crashing")

	// A non-essential container's exit is recorded; the task keeps running.
	var side orchv1.RunTaskResponse
	e.orchctlJSON(&side, "run-task", "--cluster", "default", "--task-definition", "sidecar", "--wait")
	sid := taskID(side.GetTasks()[0])
	task = e.waitTask("default", sid, "showing side's exit", func(t *orchv1.Task) bool {
		for _, c := range t.GetContainers() {
			if c.GetName() == "side" && c.ExitCode != nil {
				return true
			}
		}
		return t.GetLastStatus() == "STOPPED"
	})
	if c := container(t, task, "side"); c.GetExitCode() != 5 || c.GetLastStatus() != "STOPPED" {
		t.Errorf("container side: lastStatus %s exitCode %s, want STOPPED 5", c.GetLastStatus(), exitCodeOf(c))
	}
	// The exit was reported; the task must still be running a moment later.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(pollEvery) {
		if task = e.describeTask("default", sid); task.GetLastStatus() != "RUNNING" {
			t.Fatalf("the exit of the non-essential container stopped the task:\n%s", protojson.Format(task))
		}
	}
	if c := container(t, task, "main"); c.GetLastStatus() != "RUNNING" {
		t.Errorf("container main is %s, want RUNNING", c.GetLastStatus())
	}
	if stopped := e.stopTask("default", sid); stopped.GetStopCode() != "UserInitiated" {
		t.Errorf("stopCode %q, want UserInitiated", stopped.GetStopCode())
	}
}

// TestTaskLargerThanAnyNode checks that a task no node can hold is refused with ECS's
// failure reason and leaves no task behind.
func TestTaskLargerThanAnyNode(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.registerTaskDef(`{
  "family": "huge",
  "networkMode": "awsvpc",
  "cpu": "256",
  "memory": "10000000",
  "containerDefinitions": [{"name": "main", "image": "%BUSYBOX%"}]
}`)

	r := e.orchctl("run-task", "--cluster", "default", "--task-definition", "huge")
	if r.code != 1 || !strings.Contains(r.stdout, "RESOURCE:MEMORY") {
		t.Errorf("run-task of a too large task: want exit code 1 and a RESOURCE:MEMORY failure; got %s", r)
	}
	r = e.orchctl("run-task", "--cluster", "default", "--task-definition", "huge", "-o", "json")
	var run orchv1.RunTaskResponse
	decodeJSON(t, r.stdout, &run)
	if r.code != 1 || len(run.GetTasks()) != 0 || len(run.GetFailures()) == 0 {
		t.Fatalf("run-task -o json: want exit code 1, no task and failures; got %s", r)
	}
	for _, f := range run.GetFailures() {
		if f.GetReason() != "RESOURCE:MEMORY" {
			t.Errorf("failure reason %q (detail %q), want RESOURCE:MEMORY", f.GetReason(), f.GetDetail())
		}
	}
	for _, desired := range []string{"RUNNING", "STOPPED"} {
		var list orchv1.ListTasksResponse
		e.orchctlJSON(&list, "list-tasks", "--cluster", "default", "--desired-status", desired)
		if len(list.GetTaskArns()) != 0 {
			t.Errorf("list-tasks --desired-status %s: %v, want none", desired, list.GetTaskArns())
		}
	}
}
