package harness

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestProcess(t *testing.T) {
	for _, tc := range []struct {
		name    string
		script  string
		act     func(t *testing.T, p *Process)
		wantErr bool // from Wait
		wantLog string
	}{
		{
			name:    "exits 0",
			script:  "echo out; echo err >&2",
			act:     func(t *testing.T, p *Process) {},
			wantLog: "out\nerr\n",
		},
		{
			name:    "exits 3",
			script:  "exit 3",
			act:     func(t *testing.T, p *Process) {},
			wantErr: true,
		},
		{
			name:   "kill -9",
			script: "echo ready; sleep 100",
			act: func(t *testing.T, p *Process) {
				if err := p.WaitLog("ready", 5*time.Second); err != nil {
					t.Fatal(err)
				}
				if err := p.Kill9(); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: true,
			wantLog: "ready\n",
		},
		{
			name:    "env",
			script:  `echo "X=$HARNESS_X"`,
			act:     func(t *testing.T, p *Process) {},
			wantLog: "X=42\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := StartProcess(t, "/bin/sh", []string{"HARNESS_X=42"}, "-c", tc.script)
			tc.act(t, p)
			err := p.Wait()
			if (err != nil) != tc.wantErr {
				t.Errorf("Wait() = %v, want error %v", err, tc.wantErr)
			}
			if err2 := p.Wait(); (err2 == nil) != (err == nil) {
				t.Errorf("second Wait() = %v, first %v", err2, err)
			}
			if tc.wantLog != "" && p.Log() != tc.wantLog {
				t.Errorf("log = %q, want %q", p.Log(), tc.wantLog)
			}
		})
	}
}

// TestProcessCleanupKillsGroup checks that the cleanup ends the whole process group, also a
// child that ignores SIGTERM, and also when the main process was killed with -9 before.
func TestProcessCleanupKillsGroup(t *testing.T) {
	for _, kill9 := range []bool{false, true} {
		t.Run("kill9="+strconv.FormatBool(kill9), func(t *testing.T) {
			var child int
			t.Run("inner", func(t *testing.T) {
				p := StartProcess(t, "/bin/sh", nil, "-c", `sh -c 'trap "" TERM; echo child $$; exec sleep 100' & wait`)
				if err := p.WaitLog("child ", 5*time.Second); err != nil {
					t.Fatal(err)
				}
				f := strings.Fields(p.Log())
				var err error
				if child, err = strconv.Atoi(f[len(f)-1]); err != nil {
					t.Fatalf("child pid from %q: %v", p.Log(), err)
				}
				if kill9 {
					if err := p.Kill9(); err != nil {
						t.Fatal(err)
					}
					if !processAlive(child) {
						t.Errorf("kill -9 of the main process killed its child %d too", child)
					}
				}
			})
			if err := waitGone([]int{child}, 2*time.Second); err != nil {
				t.Errorf("child after cleanup: %v", err)
			}
		})
	}
}

func TestProcessSignalStopCont(t *testing.T) {
	p := StartProcess(t, "/bin/sh", nil, "-c", "echo ready; sleep 100")
	if err := p.WaitLog("ready", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if p.Exited() {
		t.Fatal("stopped process counts as exited")
	}
	// The cleanup must still end a stopped process (SIGCONT before SIGTERM).
}

func TestBuildBinaries(t *testing.T) {
	if _, err := GoTool(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	start := time.Now()
	bins := BuildBinaries(t, "./test/harness/cmd/orch-testimage")
	first := time.Since(start)
	path := bins["orch-testimage"]
	if path == "" || filepath.Dir(path) == "" {
		t.Fatalf("bins = %v", bins)
	}
	out, err := exec.Command(path, "-help").CombinedOutput()
	if !strings.Contains(string(out), "-demo-web") {
		t.Errorf("orch-testimage -help: %v: %s", err, out)
	}
	start = time.Now()
	again := BuildBinaries(t, "./test/harness/cmd/orch-testimage")
	if again["orch-testimage"] != path {
		t.Errorf("second build gave %s, first %s", again["orch-testimage"], path)
	}
	if d := time.Since(start); d > first/2+10*time.Millisecond && d > 50*time.Millisecond {
		t.Errorf("second call took %s (first %s): not cached", d, first)
	}
	if _, err := buildBinaries("./no/such/package"); err == nil {
		t.Error("building a missing package succeeded")
	}
}

// TestOrchTestimage runs the program as `make run` does, against a real registry.
func TestOrchTestimage(t *testing.T) {
	if _, err := GoTool(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	reg := StartRegistry(t)
	bin := BuildBinaries(t, "./test/harness/cmd/orch-testimage")["orch-testimage"]
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "demo web", args: []string{"-demo-web"}, want: reg.Addr + "/demo/web:latest"},
		{name: "json cmd", args: []string{"-image", "t/json:1", "-cmd", `["sh","-c","echo hi"]`}, want: reg.Addr + "/t/json:1"},
		{name: "comma entrypoint", args: []string{"-image", "t/sleep:1", "-entrypoint", "sleep,60", "-env", "A=1"}, want: reg.Addr + "/t/sleep:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(bin, append([]string{"-registry", reg.Addr}, tc.args...)...).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != tc.want {
				t.Errorf("orch-testimage %v: %v: %q, want %q", tc.args, err, out, tc.want)
			}
		})
	}
}

// TestProcessOutlivesStartingThread starts a process from a goroutine that exits locked to its
// thread (as namespace code does), which makes the Go runtime end the thread: the process must
// survive, though Pdeathsig is tied to the starting thread.
func TestProcessOutlivesStartingThread(t *testing.T) {
	var p *Process
	onRetiredThread(func() {
		p = StartProcess(t, "/bin/sh", nil, "-c", "echo ready; sleep 100")
	})
	if err := p.WaitLog("ready", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if p.Exited() {
		t.Fatalf("process died with the thread that started it: %v", p.Wait())
	}
}

// onRetiredThread runs f on an OS thread that the Go runtime ends right after (f's goroutine
// exits locked). The main thread is never ended, so a goroutine that lands there holds it and
// tries again from another goroutine.
func onRetiredThread(f func()) {
	done := make(chan struct{})
	var try func()
	try = func() {
		runtime.LockOSThread()
		if syscall.Gettid() == syscall.Getpid() {
			go try()
			<-done
			runtime.UnlockOSThread()
			return
		}
		f()
		close(done) // return locked: the runtime ends this thread
	}
	go try()
	<-done
}
