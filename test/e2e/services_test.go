package e2e

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	orchv1 "orch/proto/orch/v1"
)

// svcWebTaskDef is the demo web server of webTaskDef as the family svcweb; %REV% marks the
// revision in its environment so that two registrations differ.
const svcWebTaskDef = `{
  "family": "svcweb",
  "networkMode": "awsvpc",
  "cpu": "256",
  "memory": "128",
  "containerDefinitions": [
    {
      "name": "web",
      "image": "%WEB%",
      "essential": true,
      "portMappings": [{"containerPort": 80, "protocol": "tcp"}],
      "environment": [{"name": "REVISION", "value": "%REV%"}],
      "linuxParameters": {"initProcessEnabled": true},
      "stopTimeout": 5
    }
  ]
}`

// TestServiceLifecycle follows an ECS service through its life with the real scheduler,
// agent and containerd: create-service and wait services-stable (2 RUNNING tasks of group
// service:web, distinct IPs, serving HTTP); a killed task replaced; a rolling deployment to a
// new revision within minimumHealthyPercent 100 (old tasks STOPPED with ServiceSchedulerInitiated,
// ECS's events); scale to 0, delete-service, INACTIVE.
func TestServiceLifecycle(t *testing.T) {
	e := newEnv(t, envOpts{})
	const svc = "web"
	rev1 := e.registerTaskDef(strings.ReplaceAll(svcWebTaskDef, "%REV%", "1"))
	rev2 := e.registerTaskDef(strings.ReplaceAll(svcWebTaskDef, "%REV%", "2"))
	// Registered after newEnv's cleanups, so it runs before them, while the scheduler is up: a
	// failed test leaves no service behind to restart its tasks while the env goes away.
	t.Cleanup(func() { e.orchctl("delete-service", "--service", svc, "--force") })

	// create-service --wait prints the service once it is stable.
	var created orchv1.CreateServiceResponse
	e.orchctlJSON(&created, "create-service", "--cluster", "default", "--service-name", svc,
		"--task-definition", "svcweb:1", "--desired-count", "2", "--wait", "--wait-timeout", waitTimeout.String(),
		"--deployment-configuration", "maximumPercent=200,minimumHealthyPercent=100,deploymentCircuitBreaker={enable=true,rollback=true}")
	s := created.GetService()
	if s.GetStatus() != "ACTIVE" || s.GetDesiredCount() != 2 || s.GetRunningCount() != 2 || s.GetPendingCount() != 0 ||
		s.GetTaskDefinition() != rev1.GetTaskDefinitionArn() || len(s.GetDeployments()) != 1 || s.GetDeployments()[0].GetStatus() != "PRIMARY" {
		t.Fatalf("create-service --wait: want an ACTIVE service of %s running 2 of 2 tasks, one PRIMARY deployment:\n%s",
			rev1.GetTaskDefinitionArn(), protojson.Format(&created))
	}
	if cb := s.GetDeploymentConfiguration(); cb.GetMaximumPercent() != 200 || cb.GetMinimumHealthyPercent() != 100 ||
		!cb.GetDeploymentCircuitBreaker().GetEnable() || !cb.GetDeploymentCircuitBreaker().GetRollback() {
		t.Errorf("create-service: deploymentConfiguration %v, want the one given", cb)
	}
	dep1 := s.GetDeployments()[0].GetId()

	// ECS refuses to delete a service scaled above 0, and a second service of the name.
	if r := e.orchctl("delete-service", "--service", svc); r.code != 254 || !strings.Contains(r.stderr, "when calling the DeleteService operation") {
		t.Errorf("delete-service of a service running 2 tasks without --force: want exit 254 from the server: %s", r)
	}
	if r := e.orchctl("create-service", "--service-name", svc, "--task-definition", "svcweb:2", "--desired-count", "1"); r.code != 254 {
		t.Errorf("create-service of a name in use with other settings: want exit 254: %s", r)
	}
	tasks := e.serviceTasks(svc)
	if len(tasks) != 2 {
		t.Fatalf("want 2 RUNNING tasks of group service:%s, got %d", svc, len(tasks))
	}
	ips := map[string]bool{}
	for _, task := range tasks {
		ip := attachmentIP(task)
		if task.GetLastStatus() != "RUNNING" || task.GetTaskDefinitionArn() != rev1.GetTaskDefinitionArn() || task.GetStartedBy() != dep1 {
			t.Errorf("task %s: lastStatus %s, taskDefinition %s, startedBy %q; want RUNNING, %s, the deployment id %s",
				taskID(task), task.GetLastStatus(), task.GetTaskDefinitionArn(), task.GetStartedBy(), rev1.GetTaskDefinitionArn(), dep1)
		}
		if ip == "" || ips[ip] {
			t.Errorf("task %s: IP %q, want one of its own", taskID(task), ip)
		}
		ips[ip] = true
		if body := e.waitHTTP(ip); !strings.HasPrefix(body, "hello from orch task ") {
			t.Errorf("task %s at %s serves %q", taskID(task), ip, body)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// A task whose container dies is replaced.
	victim := tasks[0]
	pid := e.containerPID(taskID(victim), "web")
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatalf("kill the container process %d of task %s: %v", pid, taskID(victim), err)
	}
	dead := e.waitStatus("default", taskID(victim), "STOPPED")
	if dead.GetStopCode() != "EssentialContainerExited" {
		t.Errorf("killed task: stopCode %q, want EssentialContainerExited", dead.GetStopCode())
	}
	var newID string
	e.waitService(svc, "running 2 tasks again, one new", func(s *orchv1.Service) bool {
		if s.GetRunningCount() != 2 {
			return false
		}
		newID = ""
		running := e.serviceTasks(svc)
		for _, task := range running {
			if taskID(task) != taskID(tasks[0]) && taskID(task) != taskID(tasks[1]) && task.GetLastStatus() == "RUNNING" {
				newID = taskID(task)
			}
		}
		return len(running) == 2 && newID != ""
	})
	started := fmt.Sprintf("(service %s) has started 1 tasks: (task %s).", svc, newID)
	e.waitService(svc, "with the event "+started, func(s *orchv1.Service) bool { return hasEvent(s, started) })
	e.waitServicesStable(svc)

	// A rolling deployment to revision 2, sampled as it goes: with minimumHealthyPercent 100 the
	// service never has fewer than 2 tasks running.
	oldTasks := e.serviceTasks(svc)
	var updated orchv1.UpdateServiceResponse
	e.orchctlJSON(&updated, "update-service", "--service", svc, "--task-definition", "svcweb:2")
	if d := updated.GetService().GetDeployments(); len(d) != 2 || d[0].GetStatus() != "PRIMARY" || d[0].GetTaskDefinition() != rev2.GetTaskDefinitionArn() ||
		d[1].GetStatus() != "ACTIVE" || d[1].GetId() != dep1 {
		t.Errorf("update-service: want a PRIMARY deployment of %s and the former one ACTIVE:\n%s", rev2.GetTaskDefinitionArn(), protojson.Format(&updated))
	}
	dep2 := updated.GetService().GetDeployments()[0].GetId()
	var belowMin []string // samples with fewer than 2 tasks running
	final := e.waitService(svc, "rolled out to revision 2", func(s *orchv1.Service) bool {
		if s.GetRunningCount() < 2 {
			belowMin = append(belowMin, stateOf(s))
		}
		d := s.GetDeployments()
		return len(d) == 1 && d[0].GetId() == dep2 && d[0].GetRolloutState() == "COMPLETED" && s.GetRunningCount() == 2 &&
			hasEvent(s, fmt.Sprintf("(service %s) has reached a steady state.", svc))
	})
	if len(belowMin) > 0 {
		t.Errorf("during the deployment the service ran fewer than 2 tasks (minimumHealthyPercent 100) %d times; first:\n%s", len(belowMin), belowMin[0])
	}
	if final.GetTaskDefinition() != rev2.GetTaskDefinitionArn() {
		t.Errorf("service taskDefinition %s, want %s", final.GetTaskDefinition(), rev2.GetTaskDefinitionArn())
	}
	newTasks := e.serviceTasks(svc)
	if len(newTasks) != 2 {
		t.Errorf("after the deployment: %d RUNNING tasks of group service:%s, want 2", len(newTasks), svc)
	}
	for _, task := range newTasks {
		if task.GetTaskDefinitionArn() != rev2.GetTaskDefinitionArn() || task.GetStartedBy() != dep2 {
			t.Errorf("task %s after the deployment: %s started by %q, want %s by %s", taskID(task), task.GetTaskDefinitionArn(), task.GetStartedBy(), rev2.GetTaskDefinitionArn(), dep2)
		}
		e.waitHTTP(attachmentIP(task))
	}
	// With minimumHealthyPercent 100, no old task stops before a new one runs.
	var firstNewStart time.Time
	for _, task := range newTasks {
		if at := task.GetStartedAt().AsTime(); firstNewStart.IsZero() || at.Before(firstNewStart) {
			firstNewStart = at
		}
	}
	for _, old := range oldTasks {
		task := e.waitStatus("default", taskID(old), "STOPPED")
		if task.GetStopCode() != "ServiceSchedulerInitiated" || !strings.HasPrefix(task.GetStoppedReason(), "Scaling activity initiated by (deployment ") {
			t.Errorf("old task %s: stopCode %q stoppedReason %q, want ServiceSchedulerInitiated and \"Scaling activity initiated by (deployment ...)\"",
				taskID(old), task.GetStopCode(), task.GetStoppedReason())
		}
		if at := task.GetStoppingAt(); at != nil && at.AsTime().Before(firstNewStart) {
			t.Errorf("old task %s was stopping at %s, before the first new task started (%s): minimumHealthyPercent 100 not kept",
				taskID(old), at.AsTime().Format(time.StampMicro), firstNewStart.Format(time.StampMicro))
		}
	}
	// ECS's events name each task started or stopped, one or several per event ("(service web)
	// has stopped 2 running tasks: (task a) (task b).").
	for _, task := range newTasks {
		if !hasTaskEvent(final, fmt.Sprintf("(service %s) has started ", svc), taskID(task)) {
			t.Errorf("no event \"(service %s) has started N tasks: ... (task %s)\":\n%s", svc, taskID(task), eventList(final))
		}
	}
	for _, task := range oldTasks {
		if !hasTaskEvent(final, fmt.Sprintf("(service %s) has stopped ", svc), taskID(task)) {
			t.Errorf("no event \"(service %s) has stopped N running tasks: ... (task %s)\":\n%s", svc, taskID(task), eventList(final))
		}
	}
	if want := fmt.Sprintf("(service %s) (deployment %s) deployment completed.", svc, dep2); !hasEvent(final, want) {
		t.Errorf("no event %q:\n%s", want, eventList(final))
	}
	// The table a user reads.
	table := e.orchctlOK("describe-services", "--services", svc).stdout
	if lines := strings.Split(table, "\n"); len(lines) < 2 ||
		strings.Join(strings.Fields(lines[1]), " ") != "web ACTIVE 2 2 0 svcweb:2 COMPLETED" {
		t.Errorf("describe-services: want the row \"web ACTIVE 2 2 0 svcweb:2 COMPLETED\":\n%s", table)
	}
	t.Logf("orchctl describe-services --services %s:\n%s", svc, table)

	// Scale to 0 with update-service --wait, then delete.
	var scaled orchv1.UpdateServiceResponse
	r := e.orchctlOK("update-service", "--service", svc, "--desired-count", "0", "--wait", "--wait-timeout", waitTimeout.String(), "-o", "json")
	decodeJSON(t, r.stdout, &scaled)
	t.Logf("update-service --desired-count 0 --wait, progress on stderr:\n%s", r.stderr)
	if s := scaled.GetService(); s.GetDesiredCount() != 0 || s.GetRunningCount() != 0 || len(s.GetDeployments()) != 1 {
		t.Errorf("update-service --desired-count 0 --wait: want desired 0, running 0, one deployment:\n%s", stateOf(s))
	}
	for _, task := range newTasks {
		if task := e.waitStatus("default", taskID(task), "STOPPED"); task.GetStopCode() != "ServiceSchedulerInitiated" {
			t.Errorf("task %s scaled in: stopCode %q, want ServiceSchedulerInitiated", taskID(task), task.GetStopCode())
		}
	}
	var deleted orchv1.DeleteServiceResponse
	e.orchctlJSON(&deleted, "delete-service", "--service", svc)
	if st := deleted.GetService().GetStatus(); st != "DRAINING" && st != "INACTIVE" {
		t.Errorf("delete-service: status %s, want DRAINING (or INACTIVE)", st)
	}
	e.orchctlOK("wait", "services-inactive", "--services", svc, "--interval", "200ms", "--timeout", waitTimeout.String())
	if s := e.describeService(svc); s.GetStatus() != "INACTIVE" {
		t.Errorf("describe-services after delete: status %s, want INACTIVE", s.GetStatus())
	}
	if r := e.orchctlOK("list-services"); strings.Contains(r.stdout, ":service/default/"+svc) {
		t.Errorf("list-services still lists the deleted service:\n%s", r.stdout)
	}
}

// describeService describes one service of the default cluster.
func (e *env) describeService(name string) *orchv1.Service {
	e.t.Helper()
	var resp orchv1.DescribeServicesResponse
	e.orchctlJSON(&resp, "describe-services", "--services", name)
	if len(resp.GetServices()) != 1 {
		e.t.Fatalf("describe-services %s: want one service, got %s", name, protojson.Format(&resp))
	}
	return resp.GetServices()[0]
}

// waitService polls describe-services until cond holds and returns the service.
func (e *env) waitService(name, what string, cond func(*orchv1.Service) bool) *orchv1.Service {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		s := e.describeService(name)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("service %s: not %s after %s; last seen:\n%s", name, what, waitTimeout, stateOf(s))
		}
		time.Sleep(pollEvery)
	}
}

// waitServicesStable runs orchctl wait services-stable, as a deploy script would.
func (e *env) waitServicesStable(name string) {
	e.t.Helper()
	r := e.orchctl("wait", "services-stable", "--services", name, "--interval", "200ms", "--timeout", waitTimeout.String())
	if r.code != 0 {
		e.t.Fatalf("orchctl wait services-stable: %s\nservice:\n%s", r, stateOf(e.describeService(name)))
	}
}

// serviceTasks describes the tasks of group service:NAME in the default cluster whose desired
// status is RUNNING.
func (e *env) serviceTasks(name string) []*orchv1.Task {
	e.t.Helper()
	var list orchv1.ListTasksResponse
	e.orchctlJSON(&list, "list-tasks", "--service-name", name)
	if len(list.GetTaskArns()) == 0 {
		return nil
	}
	var resp orchv1.DescribeTasksResponse
	e.orchctlJSON(&resp, append([]string{"describe-tasks", "--tasks"}, list.GetTaskArns()...)...)
	var out []*orchv1.Task
	for _, task := range resp.GetTasks() {
		if task.GetGroup() == "service:"+name && task.GetDesiredStatus() == "RUNNING" {
			out = append(out, task)
		}
	}
	slices.SortFunc(out, func(a, b *orchv1.Task) int { return strings.Compare(taskID(a), taskID(b)) })
	return out
}

func hasEvent(s *orchv1.Service, msg string) bool {
	return slices.ContainsFunc(s.GetEvents(), func(ev *orchv1.ServiceEvent) bool { return ev.GetMessage() == msg })
}

// hasTaskEvent reports whether an event starting with prefix names the task: "(task <id>)".
func hasTaskEvent(s *orchv1.Service, prefix, id string) bool {
	return slices.ContainsFunc(s.GetEvents(), func(ev *orchv1.ServiceEvent) bool {
		return strings.HasPrefix(ev.GetMessage(), prefix) && strings.Contains(ev.GetMessage(), "(task "+id+")")
	})
}

// eventList prints a service's events, newest first.
func eventList(s *orchv1.Service) string {
	var b strings.Builder
	for _, ev := range s.GetEvents() {
		fmt.Fprintf(&b, "  %s %s\n", ev.GetCreatedAt().AsTime().Format(time.TimeOnly), ev.GetMessage())
	}
	return b.String()
}

// stateOf sums up a service for failure messages: counts, deployments, events.
func stateOf(s *orchv1.Service) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s desired %d running %d pending %d\n", s.GetServiceName(), s.GetStatus(), s.GetDesiredCount(), s.GetRunningCount(), s.GetPendingCount())
	for _, d := range s.GetDeployments() {
		fmt.Fprintf(&b, "  deployment %s %s %s desired %d running %d pending %d failed %d %s %s\n", d.GetId(), d.GetStatus(),
			d.GetTaskDefinition(), d.GetDesiredCount(), d.GetRunningCount(), d.GetPendingCount(), d.GetFailedTasks(), d.GetRolloutState(), d.GetRolloutStateReason())
	}
	return b.String() + eventList(s)
}
