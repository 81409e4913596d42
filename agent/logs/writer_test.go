package logs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func newTestWriter(t *testing.T, path string, maxSize int64, maxFiles int) *Writer {
	t.Helper()
	w, err := NewWriter(path, maxSize, maxFiles)
	if err != nil {
		t.Fatalf("new writer: %v", err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

func writeN(t *testing.T, w *Writer, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := w.Write(Entry{Stream: Stdout, Message: fmt.Sprintf("entry %04d", i)}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
}

// checkSuffix checks that msgs are "entry <i>" for consecutive i ending at last.
func checkSuffix(t *testing.T, msgs []string, last int) {
	t.Helper()
	if len(msgs) == 0 {
		t.Fatalf("no entries")
	}
	first := last - len(msgs) + 1
	for i, m := range msgs {
		if want := fmt.Sprintf("entry %04d", first+i); m != want {
			t.Fatalf("entry %d = %q, want %q", i, m, want)
		}
	}
}

func TestWriterRotation(t *testing.T) {
	const maxSize = 500 // about 10 entries of ~47 bytes
	tests := []struct {
		name     string
		maxFiles int
	}{
		{"one file", 1},
		{"two files", 2},
		{"three files", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			w := newTestWriter(t, path, maxSize, tt.maxFiles)
			writeN(t, w, 0, 200)
			for i := range tt.maxFiles + 2 {
				fi, err := os.Stat(rotatedName(path, i))
				if i >= tt.maxFiles {
					if err == nil {
						t.Errorf("%s exists with max-files %d", rotatedName(path, i), tt.maxFiles)
					}
					continue
				}
				if err != nil {
					t.Fatalf("stat: %v", err)
				}
				if fi.Size() > maxSize || fi.Size() == 0 {
					t.Errorf("%s: %d bytes, want 1..%d", rotatedName(path, i), fi.Size(), maxSize)
				}
			}
			msgs := messages(readAll(t, path, ReadOptions{}))
			checkSuffix(t, msgs, 199)
			if lo, hi := (tt.maxFiles-1)*9+1, tt.maxFiles*11; len(msgs) < lo || len(msgs) > hi {
				t.Errorf("%d entries kept, want %d..%d", len(msgs), lo, hi)
			}
		})
	}
}

func TestWriterEntryLargerThanMaxSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w := newTestWriter(t, path, 100, 3)
	big := strings.Repeat("b", 300)
	for _, m := range []string{"small", big, "after"} {
		if err := w.Write(Entry{Stream: Stderr, Message: m}); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	for i, want := range []string{"after", big, "small"} {
		got := messages(readOne(t, rotatedName(path, i)))
		if !slices.Equal(got, []string{want}) {
			t.Errorf("%s holds %d entries, want only the %d-byte one", rotatedName(path, i), len(got), len(want))
		}
	}
}

// readOne parses one file of a log, ignoring its rotation chain.
func readOne(t *testing.T, name string) []Entry {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var out []Entry
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		e, err := parseEntry([]byte(line))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, e)
	}
	return out
}

// TestWriterRecovers: a failed write is dropped and counted, and the next write reopens the
// file and succeeds.
func TestWriterRecovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w := newTestWriter(t, path, DefaultMaxSize, DefaultMaxFiles)
	if err := w.Open(); err != nil {
		t.Fatalf("open: %v", err)
	}
	writeN(t, w, 0, 1)
	_ = w.f.Close() // the descriptor goes bad under the writer
	if err := w.Write(Entry{Message: "lost"}); err == nil {
		t.Fatalf("write to a closed file succeeded")
	}
	if got := w.Dropped(); got != 1 {
		t.Fatalf("dropped = %d, want 1", got)
	}
	writeN(t, w, 1, 2)
	if got := messages(readAll(t, path, ReadOptions{})); !slices.Equal(got, []string{"entry 0000", "entry 0001"}) {
		t.Fatalf("entries = %q", got)
	}
}

// TestWriterOpenExisting: a restarted driver appends, terminates a torn last line so the
// next entry stays parseable, and removes rotated files beyond max-files.
func TestWriterOpenExisting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	old := string(appendEntry(nil, time.Now(), Stdout, false, []byte("old")))
	if err := os.WriteFile(path, []byte(old+"2024-01-01T00:00:00Z stdout F torn-by-kil"), 0o640); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{3, 7} {
		if err := os.WriteFile(rotatedName(path, i), []byte(old), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	w := newTestWriter(t, path, DefaultMaxSize, 3)
	if err := w.Open(); err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := w.Write(Entry{Stream: Stdout, Message: "new"}); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := messages(readAll(t, path, ReadOptions{}))
	// The torn line parses (its content is cut short, not its header) and stays a line of
	// its own; "new" is not glued to it.
	if !slices.Equal(got, []string{"old", "torn-by-kil", "new"}) {
		t.Fatalf("entries = %q", got)
	}
	for _, i := range []int{3, 7} {
		if _, err := os.Stat(rotatedName(path, i)); err == nil {
			t.Errorf("stale %s not removed", rotatedName(path, i))
		}
	}
}

func TestWriterRejects(t *testing.T) {
	if _, err := NewWriter("", 0, 0); err == nil {
		t.Errorf("NewWriter with empty path succeeded")
	}
	w := newTestWriter(t, filepath.Join(t.TempDir(), "c.log"), 0, 0)
	if w.maxSize != DefaultMaxSize || w.maxFiles != DefaultMaxFiles {
		t.Errorf("defaults not applied: %d %d", w.maxSize, w.maxFiles)
	}
	tests := []struct {
		name string
		e    Entry
	}{
		{"newline in message", Entry{Stream: Stdout, Message: "a\nb"}},
		{"unknown stream", Entry{Stream: "stdin", Message: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := w.Write(tt.e); err == nil {
				t.Fatalf("Write(%+v) succeeded", tt.e)
			}
		})
	}
}
