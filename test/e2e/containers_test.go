package e2e

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	orchv1 "orch/proto/orch/v1"
)

// TestContainersOfOneTask checks what the containers of one task share and how dependsOn
// orders them: they talk over localhost, an init container prepares a task volume for the
// app, and a failing init keeps the app from starting.
func TestContainersOfOneTask(t *testing.T) {
	e := newEnv(t, envOpts{})

	t.Run("localhost", func(t *testing.T) {
		e := e.on(t)
		// The server listens on 127.0.0.1 only: the client reaches it only if both share the
		// task's network namespace.
		e.registerTaskDef(`{
  "family": "pair",
  "networkMode": "awsvpc",
  "memory": "128",
  "containerDefinitions": [
    {
      "name": "server", "image": "%BUSYBOX%", "essential": true, "stopTimeout": 2,
      "command": ["sh", "-c", "mkdir -p /srv && echo hello-over-localhost > /srv/index.html && exec httpd -f -p 127.0.0.1:8080 -h /srv"]
    },
    {
      "name": "client", "image": "%BUSYBOX%", "essential": false,
      "dependsOn": [{"containerName": "server", "condition": "START"}],
      "command": ["sh", "-c", "for i in $(seq 1 50); do if wget -qO- http://127.0.0.1:8080/; then exit 0; fi; sleep 0.2; done; exit 1"]
    }
  ]
}`)
		id := taskID(e.runTask("default", "pair"))
		task := e.waitTask("default", id, "showing the client's exit", func(t *orchv1.Task) bool {
			for _, c := range t.GetContainers() {
				if c.GetName() == "client" && c.ExitCode != nil {
					return true
				}
			}
			return t.GetLastStatus() == "STOPPED"
		})
		if c := container(t, task, "client"); c.ExitCode == nil || c.GetExitCode() != 0 {
			t.Errorf("client exitCode %s, want 0 (it fetched http://127.0.0.1:8080/ from the server)", exitCodeOf(c))
		}
		if task.GetLastStatus() != "RUNNING" {
			t.Errorf("task is %s, want RUNNING (the client is not essential)", task.GetLastStatus())
		}
		e.waitLogs("default", id, "hello-over-localhost", "--container", "client")
		e.stopTask("default", id)
	})

	t.Run("dependsOn SUCCESS", func(t *testing.T) {
		e := e.on(t)
		// init waits a second before writing: an app started too early would not find the file.
		e.registerTaskDef(`{
  "family": "initapp",
  "networkMode": "awsvpc",
  "memory": "128",
  "volumes": [{"name": "shared"}],
  "containerDefinitions": [
    {
      "name": "init", "image": "%BUSYBOX%", "essential": false,
      "mountPoints": [{"sourceVolume": "shared", "containerPath": "/data"}],
      "command": ["sh", "-c", "sleep 1; echo written-by-init > /data/msg"]
    },
    {
      "name": "app", "image": "%BUSYBOX%", "essential": true,
      "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}],
      "mountPoints": [{"sourceVolume": "shared", "containerPath": "/data", "readOnly": true}],
      "command": ["sh", "-c", "cat /data/msg; test \"$(cat /data/msg)\" = written-by-init"]
    }
  ]
}`)
		id := taskID(e.runTask("default", "initapp"))
		task := e.waitStatus("default", id, "STOPPED")
		init, app := container(t, task, "init"), container(t, task, "app")
		if init.ExitCode == nil || init.GetExitCode() != 0 || app.ExitCode == nil || app.GetExitCode() != 0 {
			t.Errorf("exit codes: init %s app %s, want 0 and 0 (app read what init wrote):\n%s",
				exitCodeOf(init), exitCodeOf(app), protojson.Format(task))
		}
		if task.GetStopCode() != "EssentialContainerExited" {
			t.Errorf("stopCode %q, want EssentialContainerExited (app, essential, finished)", task.GetStopCode())
		}
		e.waitLogs("default", id, "written-by-init", "--container", "app")
	})

	t.Run("failing init", func(t *testing.T) {
		e := e.on(t)
		e.registerTaskDef(`{
  "family": "initfail",
  "networkMode": "awsvpc",
  "memory": "128",
  "containerDefinitions": [
    {"name": "init", "image": "%BUSYBOX%", "essential": false, "command": ["sh", "-c", "echo init failing; exit 1"]},
    {
      "name": "app", "image": "%BUSYBOX%", "essential": true,
      "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}],
      "command": ["sh", "-c", "echo app started; exec sleep 3600"]
    }
  ]
}`)
		id := taskID(e.runTask("default", "initfail"))
		task := e.waitStatus("default", id, "STOPPED")
		init, app := container(t, task, "init"), container(t, task, "app")
		if init.ExitCode == nil || init.GetExitCode() != 1 {
			t.Errorf("init exitCode %s, want 1", exitCodeOf(init))
		}
		if app.ExitCode != nil || app.GetLastStatus() == "RUNNING" {
			t.Errorf("app: lastStatus %s exitCode %s, want never started (no exit code)", app.GetLastStatus(), exitCodeOf(app))
		}
		if task.GetStopCode() != "TaskFailedToStart" || !strings.Contains(task.GetStoppedReason(), "init") {
			t.Errorf("stopCode %q stoppedReason %q, want TaskFailedToStart and a reason naming init", task.GetStopCode(), task.GetStoppedReason())
		}
		e.waitLogs("default", id, "init failing", "--container", "init")
		if r := e.orchctl("logs", "--cluster", "default", id, "--container", "app"); strings.Contains(r.stdout, "app started") {
			t.Errorf("app wrote logs, so it ran: %s", r)
		}
	})
}
