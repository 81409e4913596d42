package cli

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
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
