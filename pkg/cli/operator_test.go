package cli

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

func TestOperatorRaftCommands(t *testing.T) {
	peers := &orchv1.RaftListPeersResponse{Servers: []*orchv1.SchedulerServer{
		{Id: "s1", RaftAddress: "10.0.0.1:7402", GrpcAddress: "10.0.0.1:7400", Leader: true, Voter: true, State: "alive"},
		{Id: "s2", RaftAddress: "10.0.0.2:7402", GrpcAddress: "10.0.0.2:7400", Voter: true, State: "alive"},
		{Id: "s3", RaftAddress: "10.0.0.3:7402", State: "failed"},
	}}
	runUnaryCases(t, []unaryCase{
		{
			name:      "list-peers",
			args:      []string{"operator", "raft", "list-peers"},
			responses: map[string]proto.Message{"RaftListPeers": peers},
			wantCalls: []call{{"RaftListPeers", &orchv1.RaftListPeersRequest{}}},
			wantOut: str("" +
				"ID  ADDRESS        API            LEADER  VOTER  STATE\n" +
				"s1  10.0.0.1:7402  10.0.0.1:7400  true    true   alive\n" +
				"s2  10.0.0.2:7402  10.0.0.2:7400  false   true   alive\n" +
				"s3  10.0.0.3:7402  -              false   false  failed\n"),
		},
		{
			name:      "list-peers json",
			args:      []string{"operator", "raft", "list-peers", "-o", "json"},
			responses: map[string]proto.Message{"RaftListPeers": &orchv1.RaftListPeersResponse{Servers: peers.Servers[:1]}},
			wantCalls: []call{{"RaftListPeers", &orchv1.RaftListPeersRequest{}}},
			outHas:    []string{"{\n  \"servers\": [\n    {\n      \"id\": \"s1\",\n      \"raftAddress\": \"10.0.0.1:7402\",\n", `"leader": true`},
		},
		{
			name:      "list-peers no leader",
			args:      []string{"operator", "raft", "list-peers"},
			errs:      map[string]error{"RaftListPeers": status.Error(codes.Unavailable, "no leader")},
			wantCalls: []call{{"RaftListPeers", &orchv1.RaftListPeersRequest{}}},
			wantCode:  254,
			errHas:    []string{"An error occurred (Unavailable) when calling the RaftListPeers operation: no leader\n"},
		},
		{
			name:      "remove-peer by id",
			args:      []string{"operator", "raft", "remove-peer", "--peer-id", "s3"},
			wantCalls: []call{{"RaftRemovePeer", &orchv1.RaftRemovePeerRequest{Id: "s3"}}},
			wantOut:   str("Removed peer with id \"s3\"\n"),
		},
		{
			name:      "remove-peer by address json",
			args:      []string{"operator", "raft", "remove-peer", "--peer-address", "10.0.0.3:7402", "-o", "json"},
			wantCalls: []call{{"RaftRemovePeer", &orchv1.RaftRemovePeerRequest{Address: "10.0.0.3:7402"}}},
			wantOut:   str("{}\n"),
		},
		{
			name:      "remove-peer unknown",
			args:      []string{"operator", "raft", "remove-peer", "--peer-id", "s9"},
			errs:      map[string]error{"RaftRemovePeer": status.Error(codes.NotFound, "server s9 is not a peer")},
			wantCalls: []call{{"RaftRemovePeer", &orchv1.RaftRemovePeerRequest{Id: "s9"}}},
			wantCode:  254,
			errHas:    []string{"An error occurred (NotFound) when calling the RaftRemovePeer operation: server s9 is not a peer"},
		},
		{
			name:     "remove-peer without peer",
			args:     []string{"operator", "raft", "remove-peer"},
			wantCode: 252,
			errHas:   []string{"peer-id", "peer-address", "See 'orchctl operator raft remove-peer --help'."},
		},
		{
			name:     "remove-peer empty id",
			args:     []string{"operator", "raft", "remove-peer", "--peer-id", ""},
			wantCode: 252,
			errHas:   []string{"one of --peer-id and --peer-address is required"},
		},
		{
			name:     "remove-peer both",
			args:     []string{"operator", "raft", "remove-peer", "--peer-id", "s3", "--peer-address", "10.0.0.3:7402"},
			wantCode: 252,
			errHas:   []string{"none of the others can be"},
		},
		{
			name:    "operator alone prints its help",
			args:    []string{"operator"},
			outHas:  []string{"raft", "snapshot", "Usage:"},
			errHas:  nil,
			wantOut: nil,
		},
		{
			name:     "unknown operator command",
			args:     []string{"operator", "raft", "list-pears"},
			wantCode: 252,
			errHas:   []string{`unknown command "list-pears" for "orchctl operator raft"`},
		},
		{
			name:   "root help lists the new groups",
			args:   []string{"--help"},
			outHas: []string{"Tagging:\n  list-tags-for-resource", "tag-resource", "Control plane:\n  operator"},
		},
	})
}

// snapshotServer is a fake Operator holding one snapshot: SnapshotSave streams it in chunks and
// SnapshotRestore replaces it.
type snapshotServer struct {
	mu       sync.Mutex
	data     []byte
	index    string // sent in the trailer when set
	failSave error  // returned after the first chunk
	failRest error  // returned after the first chunk
	restored []byte
	calls    int
}

func (s *snapshotServer) fake() *fakeOperator {
	return &fakeOperator{
		SnapshotSaveFn: func(_ *orchv1.SnapshotSaveRequest, stream grpc.ServerStreamingServer[orchv1.SnapshotChunk]) error {
			s.mu.Lock()
			s.calls++
			data, index, fail := s.data, s.index, s.failSave
			s.mu.Unlock()
			if index != "" {
				stream.SetTrailer(metadata.Pairs(SnapshotIndexMetadata, index))
			}
			for i := 0; i < len(data); i += 1000 {
				if err := stream.Send(&orchv1.SnapshotChunk{Data: data[i:min(i+1000, len(data))]}); err != nil {
					return err
				}
				if fail != nil {
					return fail
				}
			}
			return nil
		},
		SnapshotRestoreFn: func(stream grpc.ClientStreamingServer[orchv1.SnapshotChunk, orchv1.SnapshotRestoreResponse]) error {
			s.mu.Lock()
			s.calls++
			fail := s.failRest
			s.mu.Unlock()
			var buf bytes.Buffer
			for {
				c, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return err
				}
				buf.Write(c.GetData())
				if fail != nil {
					return fail
				}
			}
			s.mu.Lock()
			s.restored = buf.Bytes()
			s.mu.Unlock()
			return stream.SendAndClose(&orchv1.SnapshotRestoreResponse{Index: 42})
		},
	}
}

func (s *snapshotServer) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *snapshotServer) received() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restored
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// leftovers returns the names in dir other than keep (temporary files a save left behind).
func leftovers(t *testing.T, dir string, keep ...string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
outer:
	for _, e := range entries {
		for _, k := range keep {
			if e.Name() == k {
				continue outer
			}
		}
		names = append(names, e.Name())
	}
	return names
}

func TestSnapshotSave(t *testing.T) {
	data := randomBytes(5500)
	tests := []struct {
		name     string
		index    string
		fail     error
		existing bool // FILE exists before the save
		args     []string
		wantCode int
		wantOut  string
		errHas   string
	}{
		{name: "with index", index: "1234", wantOut: "Saved snapshot to FILE (5.4KiB, index 1234)\n"},
		{name: "without index", existing: true, wantOut: "Saved snapshot to FILE (5.4KiB)\n"},
		{name: "json", index: "7", args: []string{"-o", "json"}, wantOut: "{\n  \"file\": \"FILE\",\n  \"size\": 5500,\n  \"index\": 7\n}\n"},
		{
			name: "server fails midway", existing: true, fail: status.Error(codes.Unavailable, "leadership lost"),
			wantCode: 254, errHas: "An error occurred (Unavailable) when calling the SnapshotSave operation: leadership lost",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
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
			if !strings.Contains(res.stderr, tt.errHas) {
				t.Errorf("stderr lacks %q:\n%s", tt.errHas, res.stderr)
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
				if !bytes.Equal(got, data) {
					t.Fatalf("saved %d bytes, want the %d sent (%v)", len(got), len(data), err)
				}
				if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
					t.Errorf("mode %v, want 0600", st.Mode().Perm())
				}
			}
		})
	}
}

func TestSnapshotSaveUnwritable(t *testing.T) {
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
	file := filepath.Join(dir, "backup.snap")
	data := randomBytes(3*snapshotChunkSize + 123) // several chunks and a short one
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.snap")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string
		fail      error
		wantCode  int
		wantOut   string
		errHas    string
		wantCalls int
	}{
		{name: "restore", args: []string{file, "--yes"}, wantOut: "Restored snapshot " + file + " (768.1KiB) at index 42\n", wantCalls: 1},
		{name: "json", args: []string{file, "--yes", "-o", "json"}, wantOut: "{\n  \"index\": \"42\"\n}\n", wantCalls: 1},
		{name: "without --yes", args: []string{file}, wantCode: 252, errHas: "argument --yes: restoring " + file + " replaces the whole state of the control plane; pass --yes to confirm"},
		{name: "missing file", args: []string{filepath.Join(dir, "nope.snap"), "--yes"}, wantCode: 255, errHas: "no such file or directory"},
		{name: "empty file", args: []string{empty, "--yes"}, wantCode: 255, errHas: "not a snapshot file"},
		{name: "directory", args: []string{dir, "--yes"}, wantCode: 255, errHas: "not a snapshot file"},
		{
			name: "server refuses", args: []string{file, "--yes"}, fail: status.Error(codes.InvalidArgument, "snapshot: bad magic"),
			wantCode: 254, errHas: "An error occurred (InvalidArgument) when calling the SnapshotRestore operation: snapshot: bad magic", wantCalls: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
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
				t.Errorf("server received %d bytes, want the %d of the file", len(srv.received()), len(data))
			}
		})
	}
}
