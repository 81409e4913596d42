package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"orch/pkg/pki"
)

const testPassphrase = "correct horse battery"

// fakeTerminal makes ReadPassphrase take stdin for a terminal (with typed as what the user
// types) for the rest of the test.
func fakeTerminal(t *testing.T, typed string) {
	t.Helper()
	orig := openTerminal
	openTerminal = func(io.Reader) (io.Reader, func(), bool) {
		return strings.NewReader(typed), func() {}, true
	}
	t.Cleanup(func() { openTerminal = orig })
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSnapshotSave(t *testing.T) {
	data := randomBytes(5500)
	passFile := writeTemp(t, "pass", []byte(testPassphrase+"\n"))
	shortFile := writeTemp(t, "short", []byte("1234567\n"))
	tests := []struct {
		name     string
		index    string
		fail     error
		existing bool   // FILE exists before the save
		env      string // $ORCH_SNAPSHOT_PASSPHRASE
		terminal *string
		args     []string
		wantCode int
		wantOut  string
		errHas   string
		calls    int
	}{
		{name: "with index", env: testPassphrase, index: "1234", wantOut: "Saved snapshot to FILE (5.4KiB sealed, index 1234)\n", calls: 1},
		{name: "without index", env: testPassphrase, existing: true, wantOut: "Saved snapshot to FILE (5.4KiB sealed)\n", calls: 1},
		{name: "json", env: testPassphrase, index: "7", args: []string{"-o", "json"}, wantOut: "{\n  \"file\": \"FILE\",\n  \"size\": 5559,\n  \"index\": 7\n}\n", calls: 1},
		{name: "passphrase file beats env", env: "wrong passphrase", args: []string{"--passphrase-file", passFile}, wantOut: "Saved snapshot to FILE (5.4KiB sealed)\n", calls: 1},
		{name: "typed twice", terminal: ptr(testPassphrase + "\n" + testPassphrase + "\n"), wantOut: "Saved snapshot to FILE (5.4KiB sealed)\n", calls: 1},
		{
			name: "server fails midway", env: testPassphrase, existing: true, fail: status.Error(codes.Unavailable, "leadership lost"),
			wantCode: 254, errHas: "An error occurred (Unavailable) when calling the SnapshotSave operation: leadership lost", calls: 1,
		},
		{name: "no passphrase", wantCode: 252, errHas: "orchctl: error: snapshot FILE: a passphrase is required (--passphrase-file or ORCH_SNAPSHOT_PASSPHRASE)"},
		{name: "short passphrase", env: "1234567", wantCode: 255, errHas: "snapshot FILE: $ORCH_SNAPSHOT_PASSPHRASE is 7 characters long: a passphrase needs at least 8"},
		{name: "short passphrase file", args: []string{"--passphrase-file", shortFile}, wantCode: 255, errHas: "passphrase file " + shortFile + " is 7 characters long: a passphrase needs at least 8"},
		{name: "missing passphrase file", args: []string{"--passphrase-file", shortFile + ".nope"}, wantCode: 255, errHas: "passphrase file: open " + shortFile + ".nope: no such file or directory"},
		{name: "typed differently", terminal: ptr(testPassphrase + "\nsomething else\n"), wantCode: 255, errHas: "the passphrases typed do not match"},
		{name: "typed short", terminal: ptr("short\n"), wantCode: 255, errHas: "the passphrase typed is 5 characters long: a passphrase needs at least 8"},
		{name: "nothing typed", terminal: ptr(""), wantCode: 252, errHas: "a passphrase is required: none typed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvSnapshotPassphrase, tt.env)
			if tt.terminal != nil {
				fakeTerminal(t, *tt.terminal)
			}
			dir := t.TempDir()
			file := filepath.Join(dir, "backup.snap")
			if tt.existing {
				if err := os.WriteFile(file, []byte("old"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			srv := &snapshotServer{data: data, index: tt.index, failSave: tt.fail}
			addr := serveAll(t, nil, srv.fake())
			res := orchctl(t, addr, "", append([]string{"operator", "snapshot", "save", file}, tt.args...)...)
			if res.code != tt.wantCode {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			if want := strings.ReplaceAll(tt.wantOut, "FILE", file); res.stdout != want {
				t.Errorf("stdout %q, want %q", res.stdout, want)
			}
			if want := strings.ReplaceAll(tt.errHas, "FILE", file); !strings.Contains(res.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
			}
			if tt.terminal != nil && !strings.Contains(res.stderr, "Snapshot passphrase: ") {
				t.Errorf("no prompt on stderr:\n%s", res.stderr)
			}
			if n := srv.callCount(); n != tt.calls {
				t.Errorf("%d server calls, want %d", n, tt.calls)
			}
			if left := leftovers(t, dir, "backup.snap"); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
			got, err := os.ReadFile(file)
			switch {
			case tt.wantCode != 0 && tt.existing:
				if string(got) != "old" {
					t.Errorf("a failed save changed the existing file: %d bytes, %v", len(got), err)
				}
			case tt.wantCode != 0:
				if !os.IsNotExist(err) {
					t.Errorf("a failed save wrote the file: %v", err)
				}
			default:
				if bytes.Contains(got, data[:64]) {
					t.Fatal("the file holds the snapshot in the clear")
				}
				plain, err := pki.Open(got, []byte(testPassphrase))
				if err != nil {
					t.Fatalf("open the saved file: %v", err)
				}
				if !bytes.Equal(plain, data) {
					t.Fatalf("sealed %d bytes, want the %d sent", len(plain), len(data))
				}
				if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
					t.Errorf("mode %v, want 0600", st.Mode().Perm())
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestSnapshotSaveUnwritable(t *testing.T) {
	t.Setenv(EnvSnapshotPassphrase, testPassphrase)
	srv := &snapshotServer{data: []byte("x")}
	addr := serveAll(t, nil, srv.fake())
	file := filepath.Join(t.TempDir(), "missing-dir", "backup.snap")
	res := orchctl(t, addr, "", "operator", "snapshot", "save", file)
	if res.code != 255 || !strings.Contains(res.stderr, "snapshot "+file+": ") || srv.callCount() != 0 {
		t.Fatalf("exit code %d, %d server calls, stderr:\n%s", res.code, srv.callCount(), res.stderr)
	}
	res = orchctl(t, addr, "", "operator", "snapshot", "save")
	if res.code != 252 || !strings.Contains(res.stderr, "accepts 1 arg(s), received 0") {
		t.Fatalf("no FILE: exit code %d, stderr:\n%s", res.code, res.stderr)
	}
}

func TestSnapshotRestore(t *testing.T) {
	dir := t.TempDir()
	data := randomBytes(3*snapshotChunkSize + 123) // several chunks and a short one
	sealed, err := pki.Seal(data, []byte(testPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "backup.snap")
	if err := os.WriteFile(file, sealed, 0o600); err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)/2] ^= 1
	modified := writeTemp(t, "modified.snap", tampered)
	plainFile := writeTemp(t, "plain.snap", data)
	empty := writeTemp(t, "empty.snap", nil)
	passFile := writeTemp(t, "pass", []byte(testPassphrase+"\r\n"))

	tests := []struct {
		name      string
		args      []string
		env       string
		terminal  *string
		fail      error
		wantCode  int
		wantOut   string
		errHas    string
		wantCalls int
	}{
		{name: "restore", env: testPassphrase, args: []string{file, "--yes"}, wantOut: "Restored snapshot " + file + " (768.1KiB) at index 42\n", wantCalls: 1},
		{name: "json", env: testPassphrase, args: []string{file, "--yes", "-o", "json"}, wantOut: "{\n  \"index\": \"42\"\n}\n", wantCalls: 1},
		{name: "passphrase file", args: []string{file, "--yes", "--passphrase-file", passFile}, wantOut: "Restored snapshot " + file + " (768.1KiB) at index 42\n", wantCalls: 1},
		{name: "typed once", terminal: ptr(testPassphrase + "\n"), args: []string{file, "--yes"}, wantOut: "Restored snapshot " + file + " (768.1KiB) at index 42\n", wantCalls: 1},
		{name: "wrong passphrase", env: "not the passphrase", args: []string{file, "--yes"}, wantCode: 255,
			errHas: "snapshot " + file + ": wrong passphrase, or the file was modified; nothing was restored"},
		{name: "wrong passphrase typed", terminal: ptr("not the passphrase\n"), args: []string{file, "--yes"}, wantCode: 255, errHas: "wrong passphrase"},
		{name: "modified file", env: testPassphrase, args: []string{modified, "--yes"}, wantCode: 255, errHas: "wrong passphrase, or the file was modified"},
		{name: "not sealed", env: testPassphrase, args: []string{plainFile, "--yes"}, wantCode: 255, errHas: "not a sealed orch snapshot"},
		{name: "no passphrase", args: []string{file, "--yes"}, wantCode: 252, errHas: "a passphrase is required (--passphrase-file or ORCH_SNAPSHOT_PASSPHRASE)"},
		{name: "without --yes", env: testPassphrase, args: []string{file}, wantCode: 252, errHas: "argument --yes: restoring " + file + " replaces the whole state of the control plane; pass --yes to confirm"},
		{name: "missing file", env: testPassphrase, args: []string{filepath.Join(dir, "nope.snap"), "--yes"}, wantCode: 255, errHas: "no such file or directory"},
		{name: "empty file", env: testPassphrase, args: []string{empty, "--yes"}, wantCode: 255, errHas: "not a snapshot file"},
		{name: "directory", env: testPassphrase, args: []string{dir, "--yes"}, wantCode: 255, errHas: "not a snapshot file"},
		{
			name: "server refuses", env: testPassphrase, args: []string{file, "--yes"}, fail: status.Error(codes.InvalidArgument, "snapshot: bad magic"),
			wantCode: 254, errHas: "An error occurred (InvalidArgument) when calling the SnapshotRestore operation: snapshot: bad magic", wantCalls: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvSnapshotPassphrase, tt.env)
			if tt.terminal != nil {
				fakeTerminal(t, *tt.terminal)
			}
			srv := &snapshotServer{failRest: tt.fail}
			addr := serveAll(t, nil, srv.fake())
			res := orchctl(t, addr, "", append([]string{"operator", "snapshot", "restore"}, tt.args...)...)
			if res.code != tt.wantCode {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			if res.stdout != tt.wantOut {
				t.Errorf("stdout %q, want %q", res.stdout, tt.wantOut)
			}
			if !strings.Contains(res.stderr, tt.errHas) {
				t.Errorf("stderr lacks %q:\n%s", tt.errHas, res.stderr)
			}
			if n := srv.callCount(); n != tt.wantCalls {
				t.Errorf("%d server calls, want %d", n, tt.wantCalls)
			}
			if tt.wantCode == 0 && !bytes.Equal(srv.received(), data) {
				t.Errorf("server received %d bytes, want the %d of the snapshot", len(srv.received()), len(data))
			}
		})
	}
}

func TestReadPassphrase(t *testing.T) {
	file := writeTemp(t, "pass", []byte(testPassphrase+"\n\n"))
	tests := []struct {
		name     string
		p        Passphrase
		env      string
		terminal *string
		want     string
		wantErr  string
		required bool // the error wraps ErrPassphraseRequired
	}{
		{name: "file", p: Passphrase{File: file}, env: "env passphrase", want: testPassphrase},
		{name: "env", env: "env passphrase", want: "env passphrase"},
		{name: "env kept as is", env: " spaced passphrase\n", want: " spaced passphrase\n"},
		{name: "terminal", terminal: ptr("typed passphrase\n"), want: "typed passphrase"},
		{name: "terminal confirm", p: Passphrase{Confirm: true}, terminal: ptr("typed passphrase\r\ntyped passphrase"), want: "typed passphrase"},
		{name: "eight characters", env: "ünïcödé", wantErr: "is 7 characters long"},
		{name: "none", p: Passphrase{In: strings.NewReader(testPassphrase + "\n")}, required: true,
			wantErr: "a passphrase is required (--passphrase-file or ORCH_SNAPSHOT_PASSPHRASE)"},
		{name: "scheduler's flag", p: Passphrase{FileFlag: "--snapshot-passphrase-file"}, required: true,
			wantErr: "a passphrase is required (--snapshot-passphrase-file or ORCH_SNAPSHOT_PASSPHRASE)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvSnapshotPassphrase, tt.env)
			if tt.terminal != nil {
				fakeTerminal(t, *tt.terminal)
			}
			var prompt bytes.Buffer
			tt.p.Prompt = &prompt
			if tt.p.In == nil {
				tt.p.In = strings.NewReader("")
			}
			got, err := ReadPassphrase(context.Background(), tt.p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if errors.Is(err, ErrPassphraseRequired) != tt.required {
					t.Errorf("errors.Is(%v, ErrPassphraseRequired) = %v", err, !tt.required)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("passphrase %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadPassphraseCancelled(t *testing.T) {
	t.Setenv(EnvSnapshotPassphrase, "")
	pr, pw := io.Pipe() // a terminal nobody types on
	defer pw.Close()
	restored := false
	orig := openTerminal
	openTerminal = func(io.Reader) (io.Reader, func(), bool) { return pr, func() { restored = true }, true }
	t.Cleanup(func() { openTerminal = orig })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ReadPassphrase(ctx, Passphrase{Prompt: io.Discard}); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if !restored {
		t.Error("the terminal was not restored")
	}
}
