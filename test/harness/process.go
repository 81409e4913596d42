package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Process is a program the test runs as a child: in its own process group, killed by the
// kernel if the test binary dies (Pdeathsig SIGKILL), with stdout and stderr in LogPath.
type Process struct {
	Cmd     *exec.Cmd
	LogPath string

	name    string
	exited  chan struct{} // closed once Cmd.Wait has returned and waitErr is set
	waitErr error
}

// StartProcess starts name with args; env is added to the test's environment (later entries
// win). To run a program in a named network namespace, start it through `ip netns exec`
// (StartProcess(t, "ip", env, "netns", "exec", ns, bin, args...)): ip execs the program, so
// the pid, Kill9 and the log are still the program's. Its cleanup sends SIGTERM to the process group, SIGKILL after 5s, and waits; when the
// test has failed, the tail of the log is printed.
func StartProcess(t testing.TB, name string, env []string, args ...string) *Process {
	t.Helper()
	logDir := t.TempDir()
	p, err := startProcess(logDir, name, env, args...)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		p.stop(5 * time.Second)
		if t.Failed() {
			t.Logf("tail of %s log (%s):\n%s", filepath.Base(name), p.LogPath, TailFile(p.LogPath, logTailLines))
		}
	})
	return p
}

func startProcess(logDir, name string, env []string, args ...string) (*Process, error) {
	base := filepath.Base(name)
	logPath := filepath.Join(logDir, fmt.Sprintf("%s-%s.log", base, RandomSuffix()))
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Process{Cmd: cmd, LogPath: logPath, name: base, exited: make(chan struct{})}
	if err := startChild(cmd, p.exited, &p.waitErr); err != nil {
		return nil, err
	}
	return p, nil
}

// Pid is the process id (and process group id).
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Signal sends sig to the process alone (SIGSTOP and SIGCONT for "frozen node" tests).
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return fmt.Errorf("%s (pid %d): already exited", p.name, p.Pid())
	}
	if err := syscall.Kill(p.Pid(), sig); err != nil {
		return fmt.Errorf("%s (pid %d): signal %v: %w", p.name, p.Pid(), sig, err)
	}
	return nil
}

// Kill9 kills the process alone with SIGKILL, as `kill -9 <pid>` would: children it started
// in its process group are not killed (the cleanup kills the group). It waits for the exit.
func (p *Process) Kill9() error {
	if p.Exited() {
		return nil
	}
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s (pid %d): kill -9: %w", p.name, p.Pid(), err)
	}
	<-p.exited
	return nil
}

// Wait waits for the process to exit and returns its exit error (nil for exit status 0). It
// may be called any number of times.
func (p *Process) Wait() error {
	<-p.exited
	return p.waitErr
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.exited }

// Log returns everything the process has written so far.
func (p *Process) Log() string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
	}
	return string(data)
}

// WaitLog waits until the log contains substr, the process exits or timeout passes.
func (p *Process) WaitLog(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(p.Log(), substr) {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited (%v) before logging %q", p.name, p.Wait(), substr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not log %q within %s", p.name, substr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM to the process group, SIGKILL to the group after grace, and waits for
// the process; a group member still alive after the process exits is killed too.
func (p *Process) stop(grace time.Duration) {
	pgid := p.Pid()
	if !p.Exited() {
		_ = syscall.Kill(-pgid, syscall.SIGCONT) // a stopped process cannot handle SIGTERM
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(grace):
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.exited
}
