package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
)

// TestMain makes the test binary a log driver when the "shim" (startDriver) runs it with
// DriverArgs, exactly as orch-agent's main does.
func TestMain(m *testing.M) {
	if IsDriver(os.Args) {
		os.Exit(DriverMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// driverProc is a log driver subprocess and the shim's ends of its pipes.
type driverProc struct {
	cmd    *exec.Cmd
	stdout *os.File // write end of the container's stdout
	stderr *os.File // write end of the container's stderr
	ready  *os.File // read end of the ready pipe
	done   chan struct{}
	err    error         // from Wait, once done is closed
	diag   *syncBuffer   // the driver's own stderr
	exited time.Duration // how long after start it exited
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDriver starts the test binary as a log driver the way containerd's shim does
// (pkg/process NewBinaryIO and NewBinaryCmd): the arguments come from the query of the URI
// that cio.BinaryIO builds, in map order; the environment holds only CONTAINER_ID and
// CONTAINER_NAMESPACE; fds 3, 4 and 5 are the stdout, stderr and ready pipes.
func startDriver(t *testing.T, args map[string]string) *driverProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("executable: %v", err)
	}
	uri, err := cio.LogURIGenerator("binary", exe, args)
	if err != nil {
		t.Fatalf("log uri: %v", err)
	}
	var argv []string
	for k, vs := range uri.Query() {
		argv = append(argv, k)
		if len(vs) > 0 {
			argv = append(argv, vs[0])
		}
	}
	cmd := exec.Command(uri.Path, argv...)
	cmd.Env = []string{
		fmt.Sprintf("CONTAINER_ID=logs-test-%08x", rand.Uint32()),
		"CONTAINER_NAMESPACE=orch-test",
		// Not from the shim: only makes -race runs skip the race runtime's 1 s exit delay.
		"GORACE=atexit_sleep_ms=0",
	}
	outR, outW := mustPipe(t)
	errR, errW := mustPipe(t)
	readyR, readyW := mustPipe(t)
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	d := &driverProc{cmd: cmd, stdout: outW, stderr: errW, ready: readyR, done: make(chan struct{}), diag: &syncBuffer{}}
	cmd.Stderr = d.diag
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start driver: %v", err)
	}
	// The shim closes its copies of what the driver now owns.
	for _, f := range []*os.File{outR, errR, readyW} {
		_ = f.Close()
	}
	go func() {
		d.err = cmd.Wait()
		d.exited = time.Since(start)
		close(d.done)
	}()
	t.Cleanup(func() {
		_ = d.stdout.Close()
		_ = d.stderr.Close()
		_ = d.ready.Close()
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("driver diagnostics:\n%s", d.diag.String())
		}
	})
	return d
}

func mustPipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatalf("pipe: %v", err)
	}
	return r, w
}

// waitReady waits for the driver to close the ready pipe, as the shim does before it starts
// the container.
func (d *driverProc) waitReady(t *testing.T) {
	t.Helper()
	if err := d.ready.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatalf("ready deadline: %v", err)
	}
	n, err := d.ready.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("ready pipe: read %d bytes, err %v; want EOF", n, err)
	}
}

// wait waits for the driver to exit and returns its exit code.
func (d *driverProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		t.Fatalf("driver still running after %v", timeout)
	}
	var exitErr *exec.ExitError
	switch {
	case d.err == nil:
		return 0
	case errors.As(d.err, &exitErr):
		return exitErr.ExitCode()
	default:
		t.Fatalf("wait driver: %v", d.err)
		return -1
	}
}

// closeStreams closes the container's ends, as when the container exits and the shim
// deletes it.
func (d *driverProc) closeStreams() {
	_ = d.stdout.Close()
	_ = d.stderr.Close()
}

func writeString(t *testing.T, f *os.File, s string) {
	t.Helper()
	if _, err := io.WriteString(f, s); err != nil {
		t.Fatalf("write %s: %v", f.Name(), err)
	}
}

// readAll returns every entry of the log at path.
func readAll(t *testing.T, path string, opts ReadOptions) []Entry {
	t.Helper()
	var out []Entry
	err := Read(context.Background(), path, opts, func(e Entry) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return out
}

func messages(entries []Entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Message
	}
	return out
}

func driverArgs(path string, maxSize int64, maxFiles int, extra map[string]string) map[string]string {
	args := DriverArgs(path, maxSize, maxFiles)
	maps.Copy(args, extra)
	return args
}
