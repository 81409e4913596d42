package raftnode

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"orch/pkg/arn"
	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/state"
)

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var testCA = func() *pki.CA {
	ca, err := pki.NewCA("raftnode-test", time.Now())
	if err != nil {
		panic(err)
	}
	return ca
}()

func start(t *testing.T, dir, addr string) (*Node, *state.Store) {
	t.Helper()
	st, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	id := newTLSIdentity(t, testCA, "s1", pki.RoleScheduler)
	n, err := New(Config{ID: "s1", DataDir: dir, BindAddr: addr, Bootstrap: true, Logger: log,
		ServerTLS: id.server(t), ClientTLS: id.client(t)}, fsm.New(st, arn.Default, log))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !n.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leadership")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n, st
}

// TestAppliedWritesSurviveRestart: every acknowledged write is in the log on disk; a restarted
// server replays it into a fresh store.
func TestAppliedWritesSurviveRestart(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	n, _ := start(t, dir, addr)
	ctx := context.Background()
	for i := range 20 {
		if _, err := n.Apply(ctx, fsm.CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: fmt.Sprint("c", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	n, st := start(t, dir, addr)
	defer n.Shutdown()
	if err := n.Barrier(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	cs, _ := st.Read().Clusters(nil)
	if len(cs) != 20 {
		t.Fatalf("%d clusters after restart, want 20", len(cs))
	}
}
