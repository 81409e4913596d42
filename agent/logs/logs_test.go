package logs

import (
	"strings"
	"testing"
	"time"
)

func TestEntryRoundTrip(t *testing.T) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 3600))
	tests := []struct {
		name    string
		stream  string
		partial bool
		msg     string
		line    string
	}{
		{"full", Stdout, false, "hello world", "2024-05-06T06:08:09.123456789Z stdout F hello world"},
		{"partial", Stderr, true, "abc", "2024-05-06T06:08:09.123456789Z stderr P abc"},
		{"empty", Stdout, false, "", "2024-05-06T06:08:09.123456789Z stdout F "},
		{"spaces kept", Stdout, false, "  a  b ", "2024-05-06T06:08:09.123456789Z stdout F   a  b "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(appendEntry(nil, at, tt.stream, tt.partial, []byte(tt.msg)))
			if got != tt.line+"\n" {
				t.Fatalf("format = %q, want %q", got, tt.line+"\n")
			}
			e, err := parseEntry([]byte(tt.line))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			want := Entry{Time: at, Stream: tt.stream, Partial: tt.partial, Message: tt.msg}
			if !e.Time.Equal(want.Time) || e.Stream != want.Stream || e.Partial != want.Partial || e.Message != want.Message {
				t.Fatalf("parse = %+v, want %+v", e, want)
			}
		})
	}
}

func TestParseEntryRejects(t *testing.T) {
	tests := []struct {
		name string
		line string
		ok   bool
	}{
		{"no content separator", "2024-05-06T06:08:09Z stdout F", true},
		{"cri tag with fields", "2024-05-06T06:08:09Z stdout F:x hi", true},
		{"garbage", "garbage-no-newline", false},
		{"bad time", "yesterday stdout F hi", false},
		{"bad stream", "2024-05-06T06:08:09Z stdin F hi", false},
		{"bad tag", "2024-05-06T06:08:09Z stdout X hi", false},
		{"no tag", "2024-05-06T06:08:09Z stdout", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseEntry([]byte(tt.line))
			if (err == nil) != tt.ok {
				t.Fatalf("parse %q: err %v, want ok=%v", tt.line, err, tt.ok)
			}
		})
	}
}

func TestSplitLines(t *testing.T) {
	type piece struct {
		msg     string
		partial bool
	}
	long := strings.Repeat("x", MaxLineSize)
	tests := []struct {
		name string
		in   string
		want []piece
		rest string
	}{
		{"empty", "", nil, ""},
		{"one line", "a\n", []piece{{"a", false}}, ""},
		{"two lines and rest", "a\nb\nc", []piece{{"a", false}, {"b", false}}, "c"},
		{"empty lines", "\n\n", []piece{{"", false}, {"", false}}, ""},
		{"exactly max", long + "\n", []piece{{long, false}}, ""},
		{"max plus one", long + "y\n", []piece{{long, true}, {"y", false}}, ""},
		{"max without newline", long, []piece{{long, true}}, ""},
		{"two max and rest", long + long + "zz", []piece{{long, true}, {long, true}}, "zz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []piece
			rest := splitLines([]byte(tt.in), func(msg []byte, partial bool) {
				got = append(got, piece{string(msg), partial})
			})
			if len(got) != len(tt.want) {
				t.Fatalf("got %d pieces, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("piece %d = (%d bytes, partial %v), want (%d bytes, partial %v)",
						i, len(got[i].msg), got[i].partial, len(tt.want[i].msg), tt.want[i].partial)
				}
			}
			if string(rest) != tt.rest {
				t.Errorf("rest = %q, want %q", rest, tt.rest)
			}
		})
	}
}

func TestIsDriver(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{[]string{"/usr/bin/orch-agent"}, false},
		{[]string{"/usr/bin/orch-agent", "--config", "x"}, false},
		{[]string{"/usr/bin/orch-agent", DriverFlag, "1"}, true},
		{[]string{"/usr/bin/orch-agent", "--path", "/x", "--max-files", "3", DriverFlag, "1"}, true},
		{nil, false},
	}
	for _, tt := range tests {
		if got := IsDriver(tt.args); got != tt.want {
			t.Errorf("IsDriver(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}

func TestParseDriverArgs(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		want     driverConfig
		warnings int
		wantErr  bool
	}{
		{
			name: "all in shim order",
			args: []string{"--max-files", "5", "--path", "/l/c.log", DriverFlag, "1", "--max-size", "1024"},
			want: driverConfig{path: "/l/c.log", maxSize: 1024, maxFiles: 5, termGrace: defaultTermGrace},
		},
		{
			name: "defaults",
			args: []string{DriverFlag, "1", "--path", "/l/c.log"},
			want: driverConfig{path: "/l/c.log", maxSize: DefaultMaxSize, maxFiles: DefaultMaxFiles, termGrace: defaultTermGrace},
		},
		{
			name:     "grace and unknown key",
			args:     []string{"--path", "/l/c.log", "--term-grace", "100ms", "--new-thing", "x"},
			want:     driverConfig{path: "/l/c.log", maxSize: DefaultMaxSize, maxFiles: DefaultMaxFiles, termGrace: 100 * time.Millisecond},
			warnings: 1,
		},
		{name: "no path", args: []string{DriverFlag, "1"}, wantErr: true},
		{name: "relative path", args: []string{"--path", "c.log"}, wantErr: true},
		{name: "odd", args: []string{"--path"}, wantErr: true},
		{
			name:     "bad numbers fall back to defaults",
			args:     []string{"--path", "/c.log", "--max-size", "10M", "--max-files", "0", "--term-grace", "-1s"},
			want:     driverConfig{path: "/c.log", maxSize: DefaultMaxSize, maxFiles: DefaultMaxFiles, termGrace: defaultTermGrace},
			warnings: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, warnings, err := parseDriverArgs(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if got != tt.want || len(warnings) != tt.warnings {
				t.Fatalf("got %+v (warnings %q), want %+v (%d warnings)", got, warnings, tt.want, tt.warnings)
			}
		})
	}
}

func TestDriverArgsRoundTrip(t *testing.T) {
	m := DriverArgs("/var/log/orch/t 1/c.log", 4096, 7)
	if m[DriverFlag] != "1" {
		t.Fatalf("DriverArgs lacks %s: %v", DriverFlag, m)
	}
	var args []string
	for k, v := range m {
		args = append(args, k, v)
	}
	if !IsDriver(append([]string{"/bin/x"}, args...)) {
		t.Fatalf("IsDriver false for %q", args)
	}
	cfg, warnings, err := parseDriverArgs(args)
	if err != nil || len(warnings) != 0 {
		t.Fatalf("parse %q: %v (warnings %q)", args, err, warnings)
	}
	if cfg.path != "/var/log/orch/t 1/c.log" || cfg.maxSize != 4096 || cfg.maxFiles != 7 {
		t.Fatalf("parsed %+v", cfg)
	}
}

func TestQueueDropsWhenFull(t *testing.T) {
	q := newQueue(100)
	for range 3 {
		q.push(make([]byte, 40))
	}
	if got := q.droppedCount(); got != 1 {
		t.Fatalf("dropped = %d, want 1", got)
	}
	recs, ok := q.take(nil)
	if !ok || len(recs) != 2 {
		t.Fatalf("take = %d records, %v; want 2, true", len(recs), ok)
	}
	q.push(make([]byte, 90)) // room again after take
	q.close()
	q.push(make([]byte, 1)) // after close: dropped
	if recs, ok := q.take(recs); !ok || len(recs) != 1 {
		t.Fatalf("take after close = %d records, %v; want 1, true", len(recs), ok)
	}
	if _, ok := q.take(nil); ok {
		t.Fatalf("take on closed, empty queue returned ok")
	}
	if got := q.droppedCount(); got != 2 {
		t.Fatalf("dropped = %d, want 2", got)
	}
}
