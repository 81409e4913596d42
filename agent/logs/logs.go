// Package logs owns the per-container log files of a node: the containerd binary log driver
// that writes them (DriverMain, run by the shim), their on-disk format and rotation (Writer),
// and the reader that `orchctl logs [--follow]` streams from (Read).
//
// Why a binary log driver: containerd's shim owns the container's stdout/stderr pipes and
// hands them to a logging process it starts itself (cio.BinaryIO). Because that process is a
// child of the shim and not of orch-agent, container output keeps being written while the
// agent restarts or is upgraded, and a full disk or a slow reader never reaches the agent.
// orch reuses its own executable as that driver: main calls IsDriver(os.Args) first and, if
// true, os.Exit(DriverMain(os.Args[1:])).
//
// The file format is the CRI (Kubernetes) container log format, one entry per line:
//
//	<RFC3339Nano UTC time> <stdout|stderr> <F|P> <content>\n
//
// Output lines longer than MaxLineSize are split into P (partial) entries followed by one F
// (full) entry that ends the line. Both streams share one file; files rotate by size into
// path.1, path.2, ... (path.1 is the newest rotated file).
package logs

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Stream names as they appear in the log file and in Entry.Stream.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// MaxLineSize is the largest content of one entry; longer output lines are split into
// partial entries of this size (the CRI limit, so kubelet-style tools read the files).
const MaxLineSize = 16 * 1024

// Defaults applied by DriverMain and NewWriter when a size or count is not positive.
const (
	DefaultMaxSize  int64 = 10 << 20
	DefaultMaxFiles       = 3
)

const (
	tagFull    = "F"
	tagPartial = "P"
)

// Entry is one line of a log file. Message excludes the line terminator: an F entry ends an
// output line (print Message plus "\n"), a P entry is a piece of a longer line that continues
// in the next entry of the same stream (print Message alone).
type Entry struct {
	Time    time.Time
	Stream  string // Stdout or Stderr
	Partial bool
	Message string
}

// appendEntry appends the file representation of one entry, newline included, to dst.
func appendEntry(dst []byte, t time.Time, stream string, partial bool, msg []byte) []byte {
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, ' ')
	dst = append(dst, stream...)
	if partial {
		dst = append(dst, " "+tagPartial+" "...)
	} else {
		dst = append(dst, " "+tagFull+" "...)
	}
	dst = append(dst, msg...)
	return append(dst, '\n')
}

var errMalformed = errors.New("malformed log line")

// parseEntry parses one line of a log file, without its trailing newline.
func parseEntry(line []byte) (Entry, error) {
	var e Entry
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return e, fmt.Errorf("%w: no stream", errMalformed)
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return e, fmt.Errorf("%w: time: %v", errMalformed, err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return e, fmt.Errorf("%w: no tag", errMalformed)
	}
	switch string(stream) {
	case Stdout:
		e.Stream = Stdout
	case Stderr:
		e.Stream = Stderr
	default:
		return e, fmt.Errorf("%w: stream %q", errMalformed, stream)
	}
	// The content is optional after the tag: "<time> stdout F" is an empty line, as is
	// "<time> stdout F ". CRI tags may carry more fields after ':'; only the first matters.
	tag, msg, _ := bytes.Cut(rest, []byte{' '})
	tag, _, _ = bytes.Cut(tag, []byte{':'})
	switch string(tag) {
	case tagFull:
	case tagPartial:
		e.Partial = true
	default:
		return e, fmt.Errorf("%w: tag %q", errMalformed, tag)
	}
	e.Time = t
	e.Message = string(msg)
	return e, nil
}

// splitLines cuts buf into entries: every complete line (up to MaxLineSize bytes) becomes a
// full entry, and while no newline lies within the first MaxLineSize bytes the first
// MaxLineSize bytes become a partial entry. It returns what is left (an incomplete line
// shorter than MaxLineSize), moved to the start of buf's backing array so that callers can
// keep reading into the free capacity.
func splitLines(buf []byte, emit func(msg []byte, partial bool)) []byte {
	rest := buf
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		switch {
		case i >= 0 && i <= MaxLineSize:
			emit(rest[:i], false)
			rest = rest[i+1:]
		case len(rest) >= MaxLineSize:
			emit(rest[:MaxLineSize], true)
			rest = rest[MaxLineSize:]
		default:
			return buf[:copy(buf, rest)]
		}
	}
	return buf[:0]
}
