// Package harness starts the real parts that orch's integration, e2e, chaos and bench tests run
// against: a private containerd (its own root, state, config and socket in a temp dir, never the
// machine's /run/containerd), a private OCI registry (Debian's docker-registry on 127.0.0.1),
// test images built from busybox-static and pushed there, child processes with their logs,
// orch's own binaries built once per test binary, and the credentials a started scheduler
// gives out (Bootstrap: its CA file, the API token of the one-time bootstrap, the join tokens).
//
// Every Start* function takes a testing.TB, registers its cleanup with t.Cleanup and prints the
// tail of the part's log when the test fails. The Run* variants are for programs (make run,
// bench) and return a value whose Stop method cleans up the same way.
package harness

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// RequireRoot skips the test when it does not run as root: the real parts need mounts,
// namespaces and cgroups.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: this test needs root (containerd, mounts, namespaces); run it as root, e.g. `sudo go test` or `make test`")
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := FreeLoopbackPort()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return port
}

// FreeLoopbackPort returns a TCP port free on 127.0.0.1 now (FreePort without testing.T).
func FreeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("listen on 127.0.0.1:0: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RandomSuffix returns 8 random hex characters, for names that must not collide with those of
// other tests or earlier runs (netns, links, containerd namespaces).
func RandomSuffix() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never happens on Linux
	}
	return hex.EncodeToString(b[:])
}

// logTailLines is how much of a part's log is printed when a test fails.
const logTailLines = 60

// TailFile returns the last n lines of the file at path, or a note saying why it cannot.
func TailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	data = bytes.TrimRight(data, "\n")
	lines := strings.Split(string(data), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines in %s)", len(lines)-n, path)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// startChild starts cmd from a goroutine locked to its OS thread, which then waits for it,
// stores its exit error in *waitErr and closes exited. Pdeathsig is tied to the thread that
// started the child, not to the process: started from an ordinary goroutine, a child would be
// killed whenever the Go runtime retires that thread (it does so for a goroutine that exits
// locked, as namespace code does). The locked thread lives exactly as long as the child.
func startChild(cmd *exec.Cmd, exited chan struct{}, waitErr *error) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		*waitErr = cmd.Wait()
		close(exited)
	}()
	return <-started
}
