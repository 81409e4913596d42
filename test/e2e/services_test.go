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
	t.Cleanup(func() {
		if r := e.orchctl("describe-services", "--services", svc, "-o", "json"); r.code == 0 && strings.Contains(r.stdout, `"status": "ACTIVE"`) {
			e.orchctl("delete-service", "--service", svc, "--force")
		}
	})

	// create-service, then wait services-stable.
	var created orchv1.CreateServiceResponse
	e.orchctlJSON(&created, "create-service", "--cluster", "default", "--service-name", svc,
		"--task-definition", "svcweb:1", "--desired-count", "2",
		"--deployment-configuration", "maximumPercent=200,minimumHealthyPercent=100,deploymentCircuitBreaker={enable=true,rollback=true}")
	s := created.GetService()
	if s.GetStatus() != "ACTIVE" || s.GetDesiredCount() != 2 || s.GetTaskDefinition() != rev1.GetTaskDefinitionArn() ||
		len(s.GetDeployments()) != 1 || s.GetDeployments()[0].GetStatus() != "PRIMARY" {
		t.Fatalf("create-service: want an ACTIVE service of %s with desiredCount 2 and one PRIMARY deployment:\n%s",
			rev1.GetTaskDefinitionArn(), protojson.Format(&created))
	}
	if cb := s.GetDeploymentConfiguration(); cb.GetMaximumPercent() != 200 || cb.GetMinimumHealthyPercent() != 100 ||
		!cb.GetDeploymentCircuitBreaker().GetEnable() || !cb.GetDeploymentCircuitBreaker().GetRollback() {
		t.Errorf("create-service: deploymentConfiguration %v, want the one given", cb)
	}
	dep1 := s.GetDeployments()[0].GetId()
	e.waitServicesStable(svc)

	s = e.describeService(svc)
	if s.GetRunningCount() != 2 || s.GetPendingCount() != 0 {
		t.Errorf("after services-stable: runningCount %d pendingCount %d, want 2 and 0", s.GetRunningCount(), s.GetPendingCount())
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
	replacement := e.waitService(svc, "a task started in place of the killed one", func(s *orchv1.Service) bool {
		return s.GetRunningCount() == 2 && len(e.serviceTasks(svc)) == 2
	})
	var newID string
	for _, task := range e.serviceTasks(svc) {
		if taskID(task) != taskID(tasks[0]) && taskID(task) != taskID(tasks[1]) {
			newID = taskID(task)
		}
	}
	if newID == "" {
		t.Fatalf("no new task of group service:%s after %s was killed", svc, taskID(victim))
	}
	if want := fmt.Sprintf("(service %s) has started 1 tasks: (task %s).", svc, newID); !hasEvent(replacement, want) {
		t.Errorf("no event %q:\n%s", want, eventList(replacement))
	}
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
	final := e.waitService(svc, "rolled out to revision 2", func(s *orchv1.Service) bool {
		if s.GetRunningCount() < 2 {
			t.Errorf("during the deployment: runningCount %d < 2 (minimumHealthyPercent 100):\n%s", s.GetRunningCount(), stateOf(s))
		}
		d := s.GetDeployments()
		return len(d) == 1 && d[0].GetId() == dep2 && d[0].GetRolloutState() == "COMPLETED" && s.GetRunningCount() == 2 &&
			hasEvent(s, fmt.Sprintf("(service %s) has reached a steady state.", svc))
	})
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
	for _, old := range oldTasks {
		task := e.waitStatus("default", taskID(old), "STOPPED")
		if task.GetStopCode() != "ServiceSchedulerInitiated" || !strings.HasPrefix(task.GetStoppedReason(), "Scaling activity initiated by (deployment ") {
			t.Errorf("old task %s: stopCode %q stoppedReason %q, want ServiceSchedulerInitiated and \"Scaling activity initiated by (deployment ...)\"",
				taskID(old), task.GetStopCode(), task.GetStoppedReason())
		}
	}
	for _, want := range []string{
		fmt.Sprintf("(service %s) has started 1 tasks: (task ", svc),
		fmt.Sprintf("(service %s) has stopped 1 running tasks: (task %s).", svc, taskID(oldTasks[0])),
		fmt.Sprintf("(service %s) has stopped 1 running tasks: (task %s).", svc, taskID(oldTasks[1])),
		fmt.Sprintf("(service %s) has reached a steady state.", svc),
	} {
		if !hasEventPrefix(final, want) {
			t.Errorf("no event %q after the deployment:\n%s", want, eventList(final))
		}
	}

	// Scale to 0 with update-service --wait, then delete.
	var scaled orchv1.UpdateServiceResponse
	e.orchctlJSON(&scaled, "update-service", "--service", svc, "--desired-count", "0", "--wait", "--wait-timeout", waitTimeout.String())
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
	e.orchctlJSON(&list, "list-tasks")
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

func hasEventPrefix(s *orchv1.Service, prefix string) bool {
	return slices.ContainsFunc(s.GetEvents(), func(ev *orchv1.ServiceEvent) bool { return strings.HasPrefix(ev.GetMessage(), prefix) })
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
