package e2e

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	orchv1 "orch/proto/orch/v1"
)

// TestTaskNetworking checks, on the single-process dev mode whose agent serves every cluster,
// that tasks of one cluster on a node reach each other by IP and that a task of another
// cluster on the same node cannot.
func TestTaskNetworking(t *testing.T) {
	e := newEnv(t, envOpts{dev: true})
	e.orchctlOK("create-cluster", "--cluster-name", "blue")
	e.waitAgentConnected("blue")
	e.registerTaskDef(webTaskDef)
	e.registerTaskDef(`{
  "family": "probe",
  "networkMode": "awsvpc",
  "memory": "64",
  "containerDefinitions": [{"name": "probe", "image": "%BUSYBOX%", "essential": true}]
}`)

	// A web task in each cluster.
	webIP := map[string]string{}
	webID := map[string]string{}
	for _, cluster := range []string{"default", "blue"} {
		var web orchv1.RunTaskResponse
		e.orchctlJSON(&web, "run-task", "--cluster", cluster, "--task-definition", "web", "--wait")
		webID[cluster] = taskID(web.GetTasks()[0])
		webIP[cluster] = attachmentIP(e.describeTask(cluster, webID[cluster]))
		e.waitHTTP(webIP[cluster])
	}
	if webIP["default"] == webIP["blue"] {
		t.Fatalf("both clusters' tasks have IP %s", webIP["default"])
	}

	// probe runs in a cluster, fetches http://ip/ and exits with wget's status. busybox wget's
	// -T crashes (Debian busybox 1.35), so timeout bounds it instead; "; exit $?" keeps sh as
	// the container's pid 1, since pid 1 ignores timeout's SIGTERM.
	probe := func(cluster, ip string) string {
		t.Helper()
		overrides := fmt.Sprintf(`{"containerOverrides": [{"name": "probe", "command": ["sh", "-c", "timeout 5 wget -qO- http://%s/; exit $?"]}]}`, ip)
		return taskID(e.runTask(cluster, "probe", "--overrides", overrides))
	}
	tests := []struct {
		from, to string
		reach    bool
	}{
		{from: "default", to: "default", reach: true},
		{from: "blue", to: "blue", reach: true},
		{from: "blue", to: "default", reach: false},
		{from: "default", to: "blue", reach: false},
	}
	probes := make([]string, len(tests)) // all at once: the unreachable ones take 5s each
	for i, tt := range tests {
		probes[i] = probe(tt.from, webIP[tt.to])
	}
	for i, tt := range tests {
		task := e.waitStatus(tt.from, probes[i], "STOPPED")
		c := container(t, task, "probe")
		switch {
		case c.ExitCode == nil:
			t.Errorf("probe from %s to %s's task: no exit code:\n%s", tt.from, tt.to, protojson.Format(task))
		case tt.reach && c.GetExitCode() != 0:
			t.Errorf("a task of %s could not fetch http://%s/ from a task of %s: exitCode %d", tt.from, webIP[tt.to], tt.to, c.GetExitCode())
		case tt.reach:
			e.waitLogs(tt.from, taskID(task), "hello from orch task ")
		case c.GetExitCode() == 0:
			t.Errorf("a task of %s reached http://%s/, a task of the other cluster %s", tt.from, webIP[tt.to], tt.to)
		}
	}

	for cluster, id := range webID {
		e.stopTask(cluster, id)
	}
}
