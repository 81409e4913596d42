package logs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestReadTailAcrossRotatedFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w := newTestWriter(t, path, 500, 50) // ~10 entries a file, nothing dropped
	writeN(t, w, 0, 100)
	if _, err := os.Stat(rotatedName(path, 5)); err != nil {
		t.Fatalf("want several rotated files: %v", err)
	}
	tests := []struct {
		tail int
		want int
	}{
		{0, 100},
		{1, 1},
		{15, 15}, // the live file and part of path.1
		{42, 42},
		{100, 100},
		{1000, 100},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("tail ", tt.tail), func(t *testing.T) {
			msgs := messages(readAll(t, path, ReadOptions{Tail: tt.tail}))
			if len(msgs) != tt.want {
				t.Fatalf("%d entries, want %d", len(msgs), tt.want)
			}
			checkSuffix(t, msgs, 99)
		})
	}
}

func TestReadSince(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w := newTestWriter(t, path, 300, 10)
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 20 {
		if err := w.Write(Entry{Time: base.Add(time.Duration(i) * time.Second), Stream: Stdout, Message: fmt.Sprintf("entry %04d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		opts  ReadOptions
		first int
		n     int
	}{
		{"since middle", ReadOptions{Since: base.Add(12 * time.Second)}, 12, 8},
		{"since before all", ReadOptions{Since: base.Add(-time.Hour)}, 0, 20},
		{"since after all", ReadOptions{Since: base.Add(time.Hour)}, 0, 0},
		{"since and tail", ReadOptions{Since: base.Add(5 * time.Second), Tail: 3}, 17, 3},
		{"tail larger than since", ReadOptions{Since: base.Add(18 * time.Second), Tail: 5}, 18, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := messages(readAll(t, path, tt.opts))
			var want []string
			for i := tt.first; i < tt.first+tt.n; i++ {
				want = append(want, fmt.Sprintf("entry %04d", i))
			}
			if !slices.Equal(msgs, want) {
				t.Fatalf("got %q, want %q", msgs, want)
			}
		})
	}
}

func TestReadMissing(t *testing.T) {
	err := Read(context.Background(), filepath.Join(t.TempDir(), "none.log"), ReadOptions{}, func(Entry) error { return nil })
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestReadStopsOnCallbackError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w := newTestWriter(t, path, 500, 10)
	writeN(t, w, 0, 50)
	stop := errors.New("enough")
	for _, opts := range []ReadOptions{{}, {Tail: 20}, {Follow: true}} {
		n := 0
		err := Read(context.Background(), path, opts, func(Entry) error {
			n++
			if n == 3 {
				return stop
			}
			return nil
		})
		if err != stop || n != 3 {
			t.Errorf("opts %+v: err %v after %d entries, want %v after 3", opts, err, n, stop)
		}
	}
}

// follower runs Read with Follow in the background.
type follower struct {
	cancel context.CancelFunc
	got    chan Entry
	done   chan error
}

func startFollower(t *testing.T, path string, opts ReadOptions) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{cancel: cancel, got: make(chan Entry, 10000), done: make(chan error, 1)}
	opts.Follow = true
	go func() {
		f.done <- Read(ctx, path, opts, func(e Entry) error {
			f.got <- e
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-f.done
	})
	return f
}

// expect receives entries "entry from".."entry to-1" in order, then nothing more for a while.
func (f *follower) expect(t *testing.T, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		select {
		case e := <-f.got:
			if want := fmt.Sprintf("entry %04d", i); e.Message != want {
				t.Fatalf("got %q, want %q", e.Message, want)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("follower stuck before entry %d", i)
		}
	}
	select {
	case e := <-f.got:
		t.Fatalf("unexpected extra entry %q", e.Message)
	case <-time.After(3 * pollInterval):
	}
}

func (f *follower) stop(t *testing.T) {
	t.Helper()
	f.cancel()
	select {
	case err := <-f.done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Read returned %v, want context.Canceled", err)
		}
		f.done <- err // for the cleanup
	case <-time.After(2 * time.Second):
		t.Fatalf("Read did not return after cancel")
	}
}

// TestFollowAcrossRotations follows a log through many rotations, paced and in bursts that
// rotate several times between two polls, with and without rotated files to fall back on.
func TestFollowAcrossRotations(t *testing.T) {
	// With max-files 1 a rotation deletes the old file, so a follower that sleeps through
	// two rotations loses the middle file; with n files, through n+1. The paced cases keep
	// rotations ~200 ms apart, four polls, to stay clear of that on a loaded machine.
	tests := []struct {
		name     string
		maxSize  int64
		maxFiles int
		pace     time.Duration // between writes; 0 = one burst
		n        int
	}{
		{"paced, one file", 2000, 1, 5 * time.Millisecond, 130},
		{"paced, three files", 2000, 3, 5 * time.Millisecond, 130},
		{"burst, many files", 500, 100, 0, 600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			w := newTestWriter(t, path, tt.maxSize, tt.maxFiles)
			writeN(t, w, 0, 5) // existing entries come first
			f := startFollower(t, path, ReadOptions{})
			f.expect(t, 0, 5)
			for i := 5; i < tt.n; i++ {
				writeN(t, w, i, i+1)
				if tt.pace > 0 {
					time.Sleep(tt.pace)
				}
			}
			f.expect(t, 5, tt.n)
			f.stop(t)
		})
	}
}

func TestFollowWithTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w := newTestWriter(t, path, 500, 10)
	writeN(t, w, 0, 30)
	f := startFollower(t, path, ReadOptions{Tail: 4})
	f.expect(t, 26, 30)
	writeN(t, w, 30, 40)
	f.expect(t, 30, 40)
	f.stop(t)
}

// TestFollowWaitsForFile: a follower started before the container wrote anything picks the
// log up once it appears.
func TestFollowWaitsForFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "later", "c.log")
	f := startFollower(t, path, ReadOptions{})
	time.Sleep(2 * pollInterval)
	w := newTestWriter(t, path, 500, 3)
	writeN(t, w, 0, 20)
	f.expect(t, 0, 20)
	f.stop(t)
}

// TestFollowTruncated: a file truncated in place (copytruncate by an outside tool) is read
// again from its start.
func TestFollowTruncated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w := newTestWriter(t, path, DefaultMaxSize, 3)
	writeN(t, w, 0, 10)
	f := startFollower(t, path, ReadOptions{})
	f.expect(t, 0, 10)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * pollInterval) // let the follower see the shrink before the file regrows
	writeN(t, w, 10, 13)
	f.expect(t, 10, 13)
	f.stop(t)
}
