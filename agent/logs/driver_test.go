package logs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDriverStreams runs the driver as the shim would and checks that each stream's lines
// arrive in order with the right stream, that a line split across writes is one entry, and
// that the driver keeps running until both pipes reach EOF, then exits 0.
func TestDriverStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	d := startDriver(t, DriverArgs(path, DefaultMaxSize, DefaultMaxFiles))
	d.waitReady(t)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("log file not created by the time the driver is ready: %v", err)
	}

	const n = 200
	for i := range n {
		writeString(t, d.stdout, fmt.Sprintf("out %d\n", i))
		writeString(t, d.stderr, fmt.Sprintf("err %d\n", i))
	}
	writeString(t, d.stdout, "split ")
	time.Sleep(20 * time.Millisecond)
	writeString(t, d.stdout, "across writes\n")
	writeString(t, d.stderr, "no newline at EOF")

	_ = d.stdout.Close()
	select {
	case <-d.done:
		t.Fatalf("driver exited after stdout EOF alone (err %v)", d.err)
	case <-time.After(200 * time.Millisecond):
	}
	_ = d.stderr.Close()
	if code := d.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}

	entries := readAll(t, path, ReadOptions{})
	byStream := map[string][]string{}
	for _, e := range entries {
		if e.Partial {
			t.Errorf("unexpected partial entry %q", e.Message)
		}
		if e.Time.IsZero() || time.Since(e.Time) > time.Minute {
			t.Errorf("entry %q has time %v", e.Message, e.Time)
		}
		byStream[e.Stream] = append(byStream[e.Stream], e.Message)
	}
	for _, stream := range []string{Stdout, Stderr} {
		var want []string
		for i := range n {
			want = append(want, fmt.Sprintf("%s %d", stream[3:], i))
		}
		if stream == Stdout {
			want = append(want, "split across writes")
		} else {
			want = append(want, "no newline at EOF")
		}
		if got := byStream[stream]; !slices.Equal(got, want) {
			t.Errorf("%s: got %d entries %q..., want %d", stream, len(got), head(got), len(want))
		}
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }

func TestDriverPartialLines(t *testing.T) {
	long := strings.Repeat("0123456789", 4000) // 40000 bytes: P 16384, P 16384, F 7232
	tests := []struct {
		name        string
		line        string
		wantPartial int
	}{
		{"long", long, 2},
		{"exactly max", long[:MaxLineSize], 0},
		{"max plus one", long[:MaxLineSize+1], 1},
	}
	path := filepath.Join(t.TempDir(), "c.log")
	d := startDriver(t, DriverArgs(path, DefaultMaxSize, DefaultMaxFiles))
	d.waitReady(t)
	for _, tt := range tests {
		writeString(t, d.stdout, tt.line+"\n")
	}
	d.closeStreams()
	if code := d.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	entries := readAll(t, path, ReadOptions{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var line strings.Builder
			partials := 0
			for len(entries) > 0 {
				e := entries[0]
				entries = entries[1:]
				if len(e.Message) > MaxLineSize {
					t.Errorf("entry of %d bytes exceeds MaxLineSize", len(e.Message))
				}
				line.WriteString(e.Message)
				if !e.Partial {
					break
				}
				partials++
			}
			if line.String() != tt.line {
				t.Errorf("reassembled %d bytes, want %d", line.Len(), len(tt.line))
			}
			if partials != tt.wantPartial {
				t.Errorf("%d partial entries, want %d", partials, tt.wantPartial)
			}
		})
	}
}

// TestDriverRotation writes enough through the driver to rotate many times and checks that
// max-files files remain, none above max-size, holding the newest lines in order.
func TestDriverRotation(t *testing.T) {
	const maxSize, maxFiles, n = 2048, 3, 400
	path := filepath.Join(t.TempDir(), "c.log")
	d := startDriver(t, DriverArgs(path, maxSize, maxFiles))
	d.waitReady(t)
	for i := range n {
		writeString(t, d.stdout, fmt.Sprintf("line %04d\n", i))
	}
	d.closeStreams()
	if code := d.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	for i := range maxFiles + 1 {
		fi, err := os.Stat(rotatedName(path, i))
		if i == maxFiles {
			if err == nil {
				t.Errorf("%s exists; want at most %d files", rotatedName(path, i), maxFiles)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", rotatedName(path, i), err)
		}
		if fi.Size() > maxSize {
			t.Errorf("%s is %d bytes, max %d", rotatedName(path, i), fi.Size(), maxSize)
		}
	}
	msgs := messages(readAll(t, path, ReadOptions{}))
	if len(msgs) == 0 || len(msgs) >= n {
		t.Fatalf("read %d entries; want the newest part of %d", len(msgs), n)
	}
	first := n - len(msgs)
	for i, m := range msgs {
		if want := fmt.Sprintf("line %04d", first+i); m != want {
			t.Fatalf("entry %d = %q, want %q (entries must be the newest, in order)", i, m, want)
		}
	}

	tail := messages(readAll(t, path, ReadOptions{Tail: 5}))
	if want := []string{"line 0395", "line 0396", "line 0397", "line 0398", "line 0399"}; !slices.Equal(tail, want) {
		t.Fatalf("tail 5 = %q, want %q", tail, want)
	}
	// The oldest remaining file holds the oldest lines: a tail longer than the live file
	// has to reach into the rotated ones.
	if all := messages(readAll(t, path, ReadOptions{Tail: len(msgs) - 1})); !slices.Equal(all, msgs[1:]) {
		t.Fatalf("tail %d across rotated files: got %d entries", len(msgs)-1, len(all))
	}
}

func TestDriverCreatesDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks", "t1", "web", "c.log")
	d := startDriver(t, DriverArgs(path, DefaultMaxSize, DefaultMaxFiles))
	d.waitReady(t)
	writeString(t, d.stderr, "hello\n")
	d.closeStreams()
	if code := d.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	got := readAll(t, path, ReadOptions{})
	if len(got) != 1 || got[0].Message != "hello" || got[0].Stream != Stderr {
		t.Fatalf("entries = %+v", got)
	}
}

// TestDriverSIGTERM: the shim sends SIGTERM when it deletes the process. The driver drains
// for the grace period, writes what it holds (including an unterminated line) and exits 0
// even if something still holds the pipes open.
func TestDriverSIGTERM(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	d := startDriver(t, driverArgs(path, DefaultMaxSize, DefaultMaxFiles, map[string]string{argTermGrace: "200ms"}))
	d.waitReady(t)
	writeString(t, d.stdout, "before\nunterminated")
	time.Sleep(50 * time.Millisecond)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal: %v", err)
	}
	if code := d.wait(t, 3*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if got := messages(readAll(t, path, ReadOptions{})); !slices.Equal(got, []string{"before", "unterminated"}) {
		t.Fatalf("entries = %q", got)
	}
}

// TestDriverBadArgs: with unusable arguments the driver still says it is ready and reads the
// pipes to EOF, so the container is never blocked, and exits 2.
func TestDriverBadArgs(t *testing.T) {
	d := startDriver(t, map[string]string{DriverFlag: "1", argMaxFiles: "3"})
	d.waitReady(t)
	writeString(t, d.stdout, strings.Repeat("discarded\n", 20000)) // more than a pipe holds
	d.closeStreams()
	if code := d.wait(t, 5*time.Second); code != exitUsage {
		t.Fatalf("exit code %d, want %d", code, exitUsage)
	}
}

// TestDriverFollow follows a log while the driver writes and rotates it: every line is seen
// once, in order and promptly, across rotations; cancelling the context ends Read.
func TestDriverFollow(t *testing.T) {
	const n = 60
	path := filepath.Join(t.TempDir(), "c.log")
	d := startDriver(t, DriverArgs(path, 1024, 4))
	d.waitReady(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan Entry, 2*n)
	readErr := make(chan error, 1)
	go func() {
		readErr <- Read(ctx, path, ReadOptions{Follow: true}, func(e Entry) error {
			got <- e
			return nil
		})
	}()

	// Latency: one line, written after the follower is running.
	time.Sleep(100 * time.Millisecond)
	sent := time.Now()
	writeString(t, d.stdout, "line 00 padding-padding-padding\n")
	select {
	case e := <-got:
		if e.Message != "line 00 padding-padding-padding" {
			t.Fatalf("first entry %q", e.Message)
		}
		lat := time.Since(sent)
		t.Logf("follow latency %v", lat)
		if lat > time.Second {
			t.Errorf("line took %v to reach the follower", lat)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("follower saw nothing")
	}
	for i := 1; i < n; i++ {
		writeString(t, d.stdout, fmt.Sprintf("line %02d padding-padding-padding\n", i))
		time.Sleep(5 * time.Millisecond)
	}
	for i := 1; i < n; i++ {
		select {
		case e := <-got:
			if want := fmt.Sprintf("line %02d padding-padding-padding", i); e.Message != want {
				t.Fatalf("entry %q, want %q", e.Message, want)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("follower stopped after %d lines", i)
		}
	}
	if _, err := os.Stat(rotatedName(path, 2)); err != nil {
		t.Fatalf("expected the log to have rotated at least twice: %v", err)
	}

	cancel()
	select {
	case err := <-readErr:
		if err != context.Canceled {
			t.Fatalf("Read returned %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("Read did not return after cancel")
	}
	select {
	case e := <-got:
		t.Fatalf("extra entry %q", e.Message)
	default:
	}
	d.closeStreams()
	if code := d.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}
