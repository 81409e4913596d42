package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"syscall"
	"time"
)

// ReadOptions select what Read delivers.
type ReadOptions struct {
	Tail   int       // only the last Tail entries of what exists when Read starts; 0 = all
	Follow bool      // then keep delivering new entries until ctx is done
	Since  time.Time // skip entries older than this; zero = no limit
}

// pollInterval is how often a follower looks for new entries and rotations. Polling keeps
// the reader simple and portable; at 50 ms a line shows up well within the 100 ms target.
var pollInterval = 50 * time.Millisecond

const (
	readBufSize = 64 << 10
	// maxFileLine bounds the memory for one line of a log file. The driver's lines are at
	// most MaxLineSize plus a header; longer ones come from elsewhere and are skipped.
	maxFileLine = 1 << 20
	// maxGapFill bounds how many missing rotated numbers openChain tries between two listed
	// ones; Writer numbers its files without gaps, so only a foreign file makes a big one.
	maxGapFill = 1024
	// maxScans bounds the retries of openChain while rotations keep moving files; the last
	// scan is used as it is.
	maxScans = 20
)

// Read calls fn for each entry of the log at path: its rotated files first, oldest first,
// then the live file. With Follow it then keeps following the live file across rotations
// until ctx is done (returning ctx.Err()) or fn returns an error (returned as is). Lines that
// do not parse are skipped. Without Follow, a log with no file at all is an error wrapping
// fs.ErrNotExist; with Follow, Read waits for the file to appear.
func Read(ctx context.Context, path string, opts ReadOptions, fn func(Entry) error) error {
	var tail *ring
	if opts.Tail > 0 {
		tail = newRing(opts.Tail)
	}
	emit := func(line []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := parseEntry(line)
		if err != nil {
			return nil // a torn or foreign line: skip it, the rest of the file is fine
		}
		if !opts.Since.IsZero() && e.Time.Before(opts.Since) {
			return nil
		}
		if tail != nil {
			tail.push(e)
			return nil
		}
		return fn(e)
	}

	files := openChain(path)
	defer func() {
		for _, lf := range files {
			lf.close()
		}
	}()
	if len(files) == 0 && !opts.Follow {
		return fmt.Errorf("log %s: %w", path, fs.ErrNotExist)
	}
	for _, lf := range files {
		if err := lf.drain(emit); err != nil {
			return err
		}
	}
	if tail != nil {
		entries := tail.entries()
		tail = nil // from here on, emit delivers directly
		for _, e := range entries {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	if !opts.Follow {
		return nil
	}
	var cur *logFile
	if len(files) > 0 {
		cur = files[len(files)-1]
		files = files[:len(files)-1]
		for _, lf := range files {
			lf.close()
		}
		files = nil
	}
	return follow(ctx, path, cur, emit)
}

// follow delivers what is appended to cur, the newest file read so far (nil if none), and
// moves on when path turns out to be another file. The old file is drained once more before
// that (the writer closes a file before renaming it, so nothing is written to it after the
// rename), then the files that are newer than it are read in order, so that no entry is
// lost or repeated even when several rotations happen between two polls. Entries are lost
// only when a file is deleted before the follower gets to it: more than maxFiles rotations
// within one poll interval (cur itself stays readable through its descriptor).
func follow(ctx context.Context, path string, cur *logFile, emit func([]byte) error) error {
	defer func() {
		if cur != nil {
			cur.close()
		}
	}()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if cur != nil {
			if err := cur.drain(emit); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		fi, err := os.Stat(path)
		if err != nil {
			continue // not created yet, or between the rename and the create of a rotation
		}
		if cur != nil && fileIDOf(fi) == cur.id {
			if fi.Size() < cur.off {
				// Truncated in place (not something Writer does): start over.
				if err := cur.rewind(); err != nil {
					return err
				}
			}
			continue
		}
		if cur != nil {
			if err := cur.drain(emit); err != nil {
				return err
			}
		}
		chain, start := newerThan(path, cur)
		for _, lf := range chain[:start] {
			lf.close()
		}
		if start == len(chain) {
			continue // the new file vanished again: keep cur and look once more
		}
		newer := chain[start:]
		for i, lf := range newer[:len(newer)-1] {
			if err := lf.drain(emit); err != nil {
				for _, rest := range newer[i:] {
					rest.close()
				}
				return err
			}
			lf.close()
		}
		if cur != nil {
			cur.close()
		}
		cur = newer[len(newer)-1]
	}
}

// newerThan opens the files of the log at path, oldest first, and returns them with the
// index of the first one newer than cur (0 when cur is nil). cur is missing from the chain
// either because it was deleted (maxFiles 1, or more rotations than files since the last
// poll: then all files are newer) or because a rotation moved it past the names the scan
// tried; the latter is retried.
func newerThan(path string, cur *logFile) ([]*logFile, int) {
	for attempt := 1; ; attempt++ {
		chain := openChain(path)
		if cur == nil {
			return chain, 0
		}
		if i := slices.IndexFunc(chain, func(lf *logFile) bool { return lf.id == cur.id }); i >= 0 {
			return chain, i + 1
		}
		if attempt == 10 || !cur.linked() {
			return chain, 0
		}
		for _, lf := range chain {
			lf.close()
		}
	}
}

// openChain opens the files of the log at path and returns them oldest first.
//
// It opens them by name, newest first (path, path.1, path.2, ...), trying every number up to
// the highest listed (a listing taken during a rotation has gaps), and then checks that each
// file is still at the name it was opened from. Rotation only moves a file to a higher
// number, so when the check passes the numbers give the age order, and a file newer than
// one found at path.n was found at a lower number: nothing newer than a file in the chain
// is missed. A rotation during the scan fails the check and the scan is repeated.
func openChain(path string) []*logFile {
	for attempt := 1; ; attempt++ {
		files, names := scanChain(path)
		if attempt == maxScans || namesHold(files, names) {
			slices.Reverse(files)
			return files
		}
		for _, lf := range files {
			lf.close()
		}
	}
}

// scanChain opens the files of the log newest first and returns them with the names they
// were opened from; a file seen under two names (moved during the scan) is kept once.
func scanChain(path string) ([]*logFile, []string) {
	var (
		files []*logFile
		names []string
	)
	seen := make(map[fileID]bool)
	add := func(name string) {
		f, err := os.Open(name)
		if err != nil {
			return // not there, or rotated away since it was listed
		}
		fi, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return
		}
		id := fileIDOf(fi)
		if seen[id] {
			_ = f.Close()
			return
		}
		seen[id] = true
		files = append(files, &logFile{f: f, id: id})
		names = append(names, name)
	}
	add(path)
	next := 1
	for _, r := range listRotated(path) {
		// Fill gaps below each listed number, within reason: a stray path.100000 must not
		// cost 100000 opens.
		if r.index-next > maxGapFill {
			next = r.index
		}
		for ; next <= r.index; next++ {
			add(rotatedName(path, next))
		}
	}
	return files, names
}

// namesHold reports whether every file is still at the name it was opened from.
func namesHold(files []*logFile, names []string) bool {
	for i, lf := range files {
		fi, err := os.Stat(names[i])
		if err != nil || fileIDOf(fi) != lf.id {
			return false
		}
	}
	return true
}

// fileID identifies a file independently of its name.
type fileID struct{ dev, ino uint64 }

func fileIDOf(fi os.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}
}

// logFile is one open log file read sequentially; it keeps an incomplete last line (the
// writer may be in the middle of appending it) until the rest arrives.
type logFile struct {
	f    *os.File
	id   fileID
	off  int64  // bytes read from f
	buf  []byte // unread bytes: an incomplete line
	skip bool   // discarding an over-long line up to its newline
}

// drain reads to the current end of the file and emits every complete line.
func (lf *logFile) drain(emit func([]byte) error) error {
	if lf.buf == nil {
		lf.buf = make([]byte, 0, readBufSize)
	}
	for {
		if len(lf.buf) == cap(lf.buf) {
			if cap(lf.buf) >= maxFileLine {
				lf.buf, lf.skip = lf.buf[:0], true
			} else {
				lf.buf = slices.Grow(lf.buf, cap(lf.buf))
			}
		}
		n, err := lf.f.Read(lf.buf[len(lf.buf):cap(lf.buf)])
		lf.off += int64(n)
		lf.buf = lf.buf[:len(lf.buf)+n]
		rest := lf.buf
		for {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				break
			}
			line := rest[:i]
			rest = rest[i+1:]
			if lf.skip {
				lf.skip = false
				continue
			}
			if emitErr := emit(line); emitErr != nil {
				return emitErr
			}
		}
		lf.buf = lf.buf[:copy(lf.buf, rest)]
		if errors.Is(err, io.EOF) || (n == 0 && err == nil) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("log %s: read: %w", lf.f.Name(), err)
		}
	}
}

func (lf *logFile) rewind() error {
	if _, err := lf.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("log %s: seek: %w", lf.f.Name(), err)
	}
	lf.off, lf.buf, lf.skip = 0, lf.buf[:0], false
	return nil
}

func (lf *logFile) close() { _ = lf.f.Close() } // read-only: nothing to lose

// linked reports whether the file still has a name in the file system.
func (lf *logFile) linked() bool {
	fi, err := lf.f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return !ok || st.Nlink > 0
}

// ring keeps the last n entries pushed; it grows to n only as entries arrive, so a huge
// Tail costs no more than the log holds.
type ring struct {
	n    int
	buf  []Entry
	next int // where the next entry goes once buf is full
}

func newRing(n int) *ring { return &ring{n: n} }

func (r *ring) push(e Entry) {
	if len(r.buf) < r.n {
		r.buf = append(r.buf, e)
		return
	}
	r.buf[r.next] = e
	r.next = (r.next + 1) % r.n
}

// entries returns the kept entries, oldest first.
func (r *ring) entries() []Entry {
	return append(slices.Clone(r.buf[r.next:]), r.buf[:r.next]...)
}
