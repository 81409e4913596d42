package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	orchv1 "orch/proto/orch/v1"
	"orch/test/harness"
)

// Short liveness timeouts, so that a lost host is declared in seconds. The grace must exceed
// the agent's heartbeat interval (5s), or a live host is marked disconnected between beats.
var livenessFlags = []string{"--heartbeat-grace", "7s", "--host-lost-after", "2s"}

// TestHostLost kills the agent while its task runs: after the heartbeat grace the instance is
// disconnected, after the lost timeout the task is STOPPED (stopCode HostLost) while it still
// runs on the host, and its address stays held. The restarted agent adopts the task, finds it
// missing from its desired set and stops it; its STOPPED report frees the address, which the
// next task gets.
func TestHostLost(t *testing.T) {
	harness.RequireRoot(t)
	bins := harness.BuildBinaries(t, harness.OrchCommands...)
	out, _ := exec.Command(bins["orch-scheduler"], "--help").CombinedOutput()
	if !strings.Contains(string(out), "heartbeat-grace") {
		t.Skip("orch-scheduler has no --heartbeat-grace flag yet: the node liveness controller is not wired in")
	}
	e := newEnv(t, envOpts{schedulerArgs: livenessFlags})

	e.registerTaskDef(webTaskDef)
	var run orchv1.RunTaskResponse
	e.orchctlJSON(&run, "run-task", "--cluster", "default", "--task-definition", "web", "--wait")
	id := taskID(run.GetTasks()[0])
	ip := attachmentIP(e.describeTask("default", id))
	e.waitHTTP(ip)

	e.killAgent()
	e.waitInstance("default", "agentConnected false", func(ci *orchv1.ContainerInstance) bool { return !ci.GetAgentConnected() })
	lost := e.waitStatus("default", id, "STOPPED")
	if lost.GetStopCode() != "HostLost" || !strings.Contains(lost.GetStoppedReason(), "was lost: no heartbeat since") ||
		!lost.GetEniHeld() || lost.GetDesiredStatus() != "STOPPED" {
		t.Fatalf("lost task:\n%s", protojson.Format(lost))
	}
	// The scheduler has written it off, but the host still runs it: that is why its address
	// stays held.
	e.waitHTTP(ip)

	e.startAgent() // no join token: it has its identity
	e.waitAgentConnected("default")
	confirmed := e.waitTask("default", id, "confirmed stopped by its agent", func(t *orchv1.Task) bool { return !t.GetEniHeld() })
	if confirmed.GetStopCode() != "HostLost" || confirmed.GetLastStatus() != "STOPPED" {
		t.Errorf("the agent's report changed the lost task:\n%s", protojson.Format(confirmed))
	}
	if got := e.containersOf(id); len(got) > 0 {
		t.Errorf("containers of the lost task left after its agent stopped it: %v", got)
	}
	if got := e.netnsFiles(); len(got) > 0 {
		t.Errorf("netns files left after the agent stopped the lost task: %v", got)
	}
	if _, err := e.httpGet(ip); err == nil {
		t.Errorf("%s still answers after the agent stopped the lost task", ip)
	}

	var again orchv1.RunTaskResponse
	e.orchctlJSON(&again, "run-task", "--cluster", "default", "--task-definition", "web", "--wait")
	if got := attachmentIP(again.GetTasks()[0]); got != ip {
		t.Errorf("the next task got %s, want the freed %s", got, ip)
	}
	e.waitHTTP(ip)
	e.stopTask("default", taskID(again.GetTasks()[0]))
}
