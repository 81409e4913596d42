package logs

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	dirPerm  = 0o750
	filePerm = 0o640
)

// Writer appends entries to a log file and rotates it by size: when the next entry would make
// the file larger than maxSize, path.(n-1) moves to path.n (the one at maxFiles-1 is dropped),
// path moves to path.1 and a new path is created, so at most maxFiles files exist. An entry
// larger than maxSize goes alone into a fresh file.
//
// A Writer never fails its caller for I/O reasons: it creates the directory when missing,
// drops (and counts) what it cannot write, and reopens the file on the next write. Every
// write goes straight to the kernel, so readers see an entry as soon as Write returns.
type Writer struct {
	path     string
	maxSize  int64
	maxFiles int

	mu   sync.Mutex
	f    *os.File
	size int64
	torn bool // a failed write may have left an incomplete line at the end of the file
	buf  []byte

	dropped atomic.Uint64
}

// NewWriter returns a Writer for the log at path; maxSize <= 0 and maxFiles <= 0 select
// DefaultMaxSize and DefaultMaxFiles. It does not touch the disk: call Open to create the
// file up front, otherwise the first write does.
func NewWriter(path string, maxSize int64, maxFiles int) (*Writer, error) {
	if path == "" {
		return nil, errors.New("log writer: empty path")
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if maxFiles <= 0 {
		maxFiles = DefaultMaxFiles
	}
	return &Writer{path: filepath.Clean(path), maxSize: maxSize, maxFiles: maxFiles}, nil
}

// Open creates (or reopens for appending) the live file if it is not open yet, and removes
// rotated files beyond maxFiles left by an earlier configuration.
func (w *Writer) Open() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		return nil
	}
	w.removeStale()
	return w.open()
}

// Write appends one entry. The message must not contain a newline; content longer than
// MaxLineSize is written as it is: splitting output into entries is the caller's business
// (the driver does it).
func (w *Writer) Write(e Entry) error {
	stream := e.Stream
	switch stream {
	case "":
		stream = Stdout
	case Stdout, Stderr:
	default:
		return fmt.Errorf("log %s: invalid stream %q", w.path, e.Stream)
	}
	if strings.ContainsRune(e.Message, '\n') {
		return fmt.Errorf("log %s: message contains a newline", w.path)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	rec := appendEntry(nil, e.Time, stream, e.Partial, []byte(e.Message))
	return w.writeRecords([][]byte{rec})
}

// Dropped is the number of entries that could not be written.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Close closes the live file; a later write reopens it.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return fmt.Errorf("log %s: close: %w", w.path, err)
	}
	return nil
}

// writeRecords appends formatted entries (each ending in '\n'), batching those that fit in
// the current file into one write. It returns the first error; the entries it concerns are
// counted as dropped and the rest are still attempted after a reopen.
func (w *Writer) writeRecords(recs [][]byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var firstErr error
	keep := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	w.buf = w.buf[:0]
	pending := 0 // entries in w.buf
	for i, rec := range recs {
		if w.f == nil {
			if err := w.open(); err != nil {
				keep(err)
				w.dropped.Add(uint64(len(recs) - i))
				return firstErr
			}
		}
		if w.size+int64(len(w.buf)) > 0 && w.size+int64(len(w.buf)+len(rec)) > w.maxSize {
			keep(w.flush(pending))
			pending = 0
			if w.f != nil {
				keep(w.rotate())
			}
			if w.f == nil {
				if err := w.open(); err != nil {
					keep(err)
					w.dropped.Add(uint64(len(recs) - i))
					return firstErr
				}
			}
		}
		w.buf = append(w.buf, rec...)
		pending++
	}
	keep(w.flush(pending))
	if cap(w.buf) > 1<<20 {
		w.buf = nil // do not pin a burst's worth of memory
	}
	return firstErr
}

// flush writes w.buf (n entries) to the live file. On failure the entries are counted as
// dropped and the file is closed so that the next write reopens it.
func (w *Writer) flush(n int) error {
	if len(w.buf) == 0 {
		return nil
	}
	defer func() { w.buf = w.buf[:0] }()
	written, err := w.f.Write(w.buf)
	w.size += int64(written)
	if err == nil {
		return nil
	}
	w.dropped.Add(uint64(n))
	w.torn = w.torn || written > 0
	_ = w.f.Close() // the write error is the one worth reporting
	w.f = nil
	return fmt.Errorf("log %s: write: %w", w.path, err)
}

// open opens the live file for appending, creating it and its directory when missing. An
// incomplete last line (a failed write, or a driver killed mid-write) is terminated first so
// the next entry starts on a line of its own; the reader skips the broken line.
func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, filePerm)
	if errors.Is(err, fs.ErrNotExist) {
		if mkErr := os.MkdirAll(filepath.Dir(w.path), dirPerm); mkErr != nil {
			return fmt.Errorf("log %s: create directory: %w", w.path, mkErr)
		}
		f, err = os.OpenFile(w.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, filePerm)
	}
	if err != nil {
		return fmt.Errorf("log %s: open: %w", w.path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("log %s: stat: %w", w.path, err)
	}
	size := fi.Size()
	if size > 0 {
		terminate := w.torn
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, size-1); err == nil && last[0] != '\n' {
			terminate = true
		}
		if terminate {
			n, err := f.Write([]byte{'\n'})
			size += int64(n)
			if err != nil {
				_ = f.Close()
				return fmt.Errorf("log %s: terminate torn line: %w", w.path, err)
			}
		}
	}
	w.f, w.size, w.torn = f, size, false
	return nil
}

// rotate closes the live file and shifts the rotated ones; the caller opens the new file.
// Renames that fail leave the file in place: it is then appended to and rotation is retried
// at the next write, so a failure costs size, never entries.
func (w *Writer) rotate() error {
	err := w.f.Close()
	w.f = nil
	if err != nil {
		err = fmt.Errorf("log %s: close for rotation: %w", w.path, err)
	}
	if w.maxFiles == 1 {
		if rmErr := os.Remove(w.path); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
			return errors.Join(err, fmt.Errorf("log %s: rotate: %w", w.path, rmErr))
		}
		return err
	}
	for i := w.maxFiles - 1; i >= 1; i-- {
		src := rotatedName(w.path, i-1)
		if mvErr := os.Rename(src, rotatedName(w.path, i)); mvErr != nil && !errors.Is(mvErr, fs.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("log %s: rotate: %w", w.path, mvErr))
		}
	}
	return err
}

// removeStale deletes rotated files numbered maxFiles or higher.
func (w *Writer) removeStale() {
	for _, r := range listRotated(w.path) {
		if r.index >= w.maxFiles {
			_ = os.Remove(r.name) // best effort: a leftover only costs disk space
		}
	}
}

// rotatedName is path for i == 0 and path.i otherwise.
func rotatedName(path string, i int) string {
	if i == 0 {
		return path
	}
	return path + "." + strconv.Itoa(i)
}

type rotatedFile struct {
	name  string
	index int
}

// listRotated returns the rotated files of path (path.1, path.2, ...) sorted newest first.
// It lists the directory rather than probing path.1, path.2 in turn, because a rotation in
// progress leaves transient gaps in the numbering.
func listRotated(path string) []rotatedFile {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []rotatedFile
	for _, de := range des {
		suffix, ok := strings.CutPrefix(de.Name(), base+".")
		if !ok {
			continue
		}
		i, err := strconv.Atoi(suffix)
		if err != nil || i < 1 || strconv.Itoa(i) != suffix {
			continue
		}
		out = append(out, rotatedFile{name: filepath.Join(dir, de.Name()), index: i})
	}
	slices.SortFunc(out, func(a, b rotatedFile) int { return cmp.Compare(a.index, b.index) })
	return out
}
