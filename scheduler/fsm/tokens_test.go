package fsm

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

func TestClusterPKI(t *testing.T) {
	first := &orchv1.ClusterPKI{Ca: []byte("ca-1"), WorkerToken: "w1", ManagerToken: "m1"}
	steps := []struct {
		name    string
		cmd     CommandType
		msg     proto.Message
		wantErr error
		want    *orchv1.ClusterPKI // the record after the step
	}{
		{name: "rotate before init", cmd: CmdRotateJoinToken, msg: &orchv1.RotateJoinTokenCommand{WorkerToken: "w0"}, wantErr: state.ErrConflict},
		{name: "init without tokens", cmd: CmdInitPKI, msg: &orchv1.InitPKICommand{Pki: &orchv1.ClusterPKI{Ca: []byte("ca")}}, wantErr: state.ErrInvalid},
		{name: "init", cmd: CmdInitPKI, msg: &orchv1.InitPKICommand{Pki: first}, want: first},
		{name: "second init changes nothing", cmd: CmdInitPKI, msg: &orchv1.InitPKICommand{Pki: &orchv1.ClusterPKI{Ca: []byte("ca-2"), WorkerToken: "w2", ManagerToken: "m2"}}, want: first},
		{name: "rotate worker", cmd: CmdRotateJoinToken, msg: &orchv1.RotateJoinTokenCommand{WorkerToken: "w3"},
			want: &orchv1.ClusterPKI{Ca: []byte("ca-1"), WorkerToken: "w3", ManagerToken: "m1"}},
		{name: "rotate both", cmd: CmdRotateJoinToken, msg: &orchv1.RotateJoinTokenCommand{WorkerToken: "w4", ManagerToken: "m4"},
			want: &orchv1.ClusterPKI{Ca: []byte("ca-1"), WorkerToken: "w4", ManagerToken: "m4"}},
	}
	h := newHarness(t)
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			_, err := h.apply(st.cmd, st.msg)
			if st.wantErr != nil {
				if !errors.Is(err, st.wantErr) {
					t.Fatalf("err = %v, want %v", err, st.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := h.f.store.Read().PKI(nil)
			if err != nil || !proto.Equal(got, st.want) {
				t.Fatalf("PKI = %v, %v; want %v", got, err, st.want)
			}
		})
	}

	// The record travels in snapshots.
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.(*snapshot).txn.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t)
	if err := h2.f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	got, _ := h2.f.store.Read().PKI(nil)
	if !proto.Equal(got, steps[len(steps)-1].want) {
		t.Fatalf("restored PKI = %v", got)
	}
}
