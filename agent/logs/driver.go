package logs

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// DriverFlag marks a command line as a log driver invocation (see IsDriver).
const DriverFlag = "--orch-log-driver"

const (
	argPath     = "--path"
	argMaxSize  = "--max-size"
	argMaxFiles = "--max-files"
	// argTermGrace bounds the drain after SIGTERM (a Go duration). DriverArgs never sets it;
	// it exists so tests need not wait for the default.
	argTermGrace = "--term-grace"
)

// The descriptors containerd's shim passes to a binary log driver (pkg/process NewBinaryIO:
// cmd.ExtraFiles = out.r, serr.r, w): the container's stdout and stderr pipes, and a pipe the
// shim reads from, and waits on, until the driver closes it to say it is ready.
const (
	fdStdout = 3
	fdStderr = 4
	fdReady  = 5
)

const (
	// defaultTermGrace is how long the driver keeps draining after SIGTERM. The shim closes
	// its ends of the pipes before it signals and kills the driver 12 s later, so EOF
	// normally arrives at once; the grace only matters if something else holds a pipe open.
	defaultTermGrace = 5 * time.Second
	// queueMaxBytes bounds the entries read but not yet written. When the disk stalls, the
	// driver drops new entries beyond this instead of letting the pipes fill up and block
	// the container's writes.
	queueMaxBytes = 2 << 20
	// readChunk is the size of one read from a pipe.
	readChunk = 64 << 10
)

// Exit codes of DriverMain.
const (
	exitOK      = 0
	exitDropped = 1 // some entries could not be written
	exitUsage   = 2 // bad arguments: output was read and discarded
)

// DriverArgs returns the query arguments for cio.BinaryIO that make orch's own executable run
// as the log driver writing to path (absolute). maxSize <= 0 and maxFiles <= 0 select
// DefaultMaxSize and DefaultMaxFiles. The shim passes every pair as two arguments, in map
// (random) order.
func DriverArgs(path string, maxSize int64, maxFiles int) map[string]string {
	return map[string]string{
		DriverFlag:  "1",
		argPath:     path,
		argMaxSize:  strconv.FormatInt(maxSize, 10),
		argMaxFiles: strconv.Itoa(maxFiles),
	}
}

// IsDriver reports whether args (os.Args) is a log driver invocation: DriverFlag appears
// anywhere, since the shim orders the arguments at random.
func IsDriver(args []string) bool {
	return slices.Contains(args, DriverFlag)
}

type driverConfig struct {
	path      string
	maxSize   int64
	maxFiles  int
	termGrace time.Duration
}

// parseDriverArgs reads the key/value pairs of a driver command line, in any order. Only a
// missing or relative path is an error: a bad size, count or grace falls back to its
// default, because refusing would lose the container's output. Such values and unknown keys
// come back as warnings.
func parseDriverArgs(args []string) (driverConfig, []string, error) {
	cfg := driverConfig{maxSize: DefaultMaxSize, maxFiles: DefaultMaxFiles, termGrace: defaultTermGrace}
	if len(args)%2 != 0 {
		return cfg, nil, fmt.Errorf("log driver: %d arguments, want key/value pairs", len(args))
	}
	var warnings []string
	for i := 0; i < len(args); i += 2 {
		k, v := args[i], args[i+1]
		switch k {
		case DriverFlag:
		case argPath:
			cfg.path = v
		case argMaxSize:
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				cfg.maxSize = n
			} else {
				warnings = append(warnings, fmt.Sprintf("%s %q: using %d", k, v, DefaultMaxSize))
			}
		case argMaxFiles:
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				cfg.maxFiles = n
			} else {
				warnings = append(warnings, fmt.Sprintf("%s %q: using %d", k, v, DefaultMaxFiles))
			}
		case argTermGrace:
			if d, err := time.ParseDuration(v); err == nil && d >= 0 {
				cfg.termGrace = d
			} else {
				warnings = append(warnings, fmt.Sprintf("%s %q: using %s", k, v, defaultTermGrace))
			}
		default:
			warnings = append(warnings, fmt.Sprintf("unknown argument %s", k))
		}
	}
	if cfg.path == "" {
		return cfg, nil, fmt.Errorf("log driver: %s is required", argPath)
	}
	if !filepath.IsAbs(cfg.path) {
		return cfg, nil, fmt.Errorf("log driver: %s %q: must be absolute", argPath, cfg.path)
	}
	return cfg, warnings, nil
}

// DriverMain runs the log driver: args are the key/value pairs from DriverArgs (os.Args[1:]),
// fds 3 and 4 the container's stdout and stderr, fd 5 the ready pipe. It closes fd 5 once the
// log file is open, copies both streams into the log until both reach EOF (or SIGTERM plus a
// grace period), and returns the process exit code: 0, 1 when entries were dropped, 2 for bad
// arguments (the output is then read and discarded, so the container never blocks or gets
// EPIPE). Diagnostics go to stderr, which the shim connects to /dev/null.
func DriverMain(args []string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With(
		"component", "log-driver",
		"container_id", os.Getenv("CONTAINER_ID"),
		"namespace", os.Getenv("CONTAINER_NAMESPACE"))

	// Before the ready pipe closes: from then on the shim may signal us.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(term)

	cfg, warnings, cfgErr := parseDriverArgs(args)
	var w *Writer
	if cfgErr != nil {
		log.Error("bad arguments; discarding container output", "err", cfgErr)
	} else {
		for _, w := range warnings {
			log.Warn("argument ignored", "detail", w)
		}
		w, _ = NewWriter(cfg.path, cfg.maxSize, cfg.maxFiles) // cannot fail: path is set
		if err := w.Open(); err != nil {
			log.Error("open log; will retry on the next write", "path", cfg.path, "err", err)
		}
	}

	streams := []struct {
		f    *os.File
		name string
	}{
		{inheritedPipe(fdStdout, "stdout"), Stdout},
		{inheritedPipe(fdStderr, "stderr"), Stderr},
	}
	if ready := inheritedPipe(fdReady, "ready"); ready != nil {
		_ = ready.Close() // EOF is the signal; an error here changes nothing for the shim
	}

	q := newQueue(queueMaxBytes)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		writeLoop(w, q, log)
	}()

	var readers sync.WaitGroup
	for _, s := range streams {
		if s.f == nil {
			continue
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			pump(s.f, s.name, q.push)
		}()
	}
	readersDone := make(chan struct{})
	go func() {
		readers.Wait()
		close(readersDone)
	}()

	select {
	case <-readersDone:
	case sig := <-term:
		log.Info("draining after signal", "signal", sig.String(), "grace", cfg.termGrace)
		select {
		case <-readersDone:
		case <-time.After(cfg.termGrace):
			// Make pending reads return; pump then writes any incomplete line it holds.
			for _, s := range streams {
				if s.f != nil {
					_ = s.f.SetReadDeadline(time.Now())
				}
			}
			select {
			case <-readersDone:
			case <-time.After(time.Second):
				log.Warn("readers did not stop; exiting anyway")
			}
		}
	}
	q.close()
	<-writerDone

	if cfgErr != nil {
		return exitUsage
	}
	if err := w.Close(); err != nil {
		log.Warn("close log", "err", err)
	}
	if lost := q.droppedCount() + w.Dropped(); lost > 0 {
		log.Warn("log entries dropped", "count", lost)
		return exitDropped
	}
	return exitOK
}

// inheritedPipe returns the inherited descriptor fd, or nil when fd is not open or is not a
// pipe or socket: a driver started by hand may not have it, and then the number may belong
// to a file the Go runtime opened itself. The pipe is made non-blocking so that reads go
// through the runtime poller and can be interrupted with a deadline.
func inheritedPipe(fd int, name string) *os.File {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFIFO, syscall.S_IFSOCK:
	default:
		return nil
	}
	_ = syscall.SetNonblock(fd, true) // without it reads still work, only without deadlines
	return os.NewFile(uintptr(fd), name)
}

// pump reads one stream until EOF (or a read deadline), cutting it into entries stamped with
// the time their bytes were read. An incomplete last line is written as a full entry.
func pump(f *os.File, stream string, push func([]byte)) {
	// splitLines leaves less than MaxLineSize bytes, so there is always room for a chunk.
	buf := make([]byte, 0, MaxLineSize+readChunk)
	for {
		n, err := f.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			now := time.Now()
			buf = splitLines(buf[:len(buf)+n], func(msg []byte, partial bool) {
				push(appendEntry(nil, now, stream, partial, msg))
			})
		}
		if err != nil {
			if len(buf) > 0 {
				push(appendEntry(nil, time.Now(), stream, false, buf))
			}
			return
		}
	}
}

// writeLoop writes queued entries until the queue is closed and empty. With a nil Writer it
// discards them. After entries were dropped it adds one stderr entry saying how many, so that
// a reader of the log learns about the gap.
func writeLoop(w *Writer, q *queue, log *slog.Logger) {
	var (
		batch    [][]byte
		reported uint64
		failing  bool
	)
	for {
		recs, ok := q.take(batch)
		if !ok {
			return
		}
		if w != nil {
			err := w.writeRecords(recs)
			switch {
			case err != nil && !failing:
				log.Error("writing log; dropping entries until it works again", "err", err)
			case err == nil && failing:
				log.Info("writing log again")
			}
			failing = err != nil
			if lost := q.droppedCount() + w.Dropped(); !failing && lost > reported {
				msg := fmt.Appendf(nil, "[orch log driver] %d log entries dropped (disk errors or disk too slow)", lost-reported)
				_ = w.writeRecords([][]byte{appendEntry(nil, time.Now(), Stderr, false, msg)})
				// A marker that failed is counted too: it is not worth a marker of its own.
				reported = q.droppedCount() + w.Dropped()
			}
		}
		clear(recs)
		batch = recs[:0]
	}
}

// queue hands formatted entries from the pipe readers to the writer. It never blocks a
// reader: past maxBytes of pending entries it drops and counts.
type queue struct {
	mu       sync.Mutex
	recs     [][]byte
	bytes    int
	maxBytes int
	closed   bool
	dropped  uint64
	wake     chan struct{}
}

func newQueue(maxBytes int) *queue {
	return &queue{maxBytes: maxBytes, wake: make(chan struct{}, 1)}
}

func (q *queue) push(rec []byte) {
	q.mu.Lock()
	if q.closed || q.bytes+len(rec) > q.maxBytes {
		q.dropped++
		q.mu.Unlock()
		return
	}
	q.recs = append(q.recs, rec)
	q.bytes += len(rec)
	q.mu.Unlock()
	q.notify()
}

func (q *queue) notify() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take waits for entries and returns all of them, reusing spare (emptied) as the next
// buffer. It returns false once the queue is closed and drained.
func (q *queue) take(spare [][]byte) ([][]byte, bool) {
	for {
		q.mu.Lock()
		if len(q.recs) > 0 {
			out := q.recs
			q.recs, q.bytes = spare[:0], 0
			q.mu.Unlock()
			return out, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		<-q.wake
	}
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.notify()
}

func (q *queue) droppedCount() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}
