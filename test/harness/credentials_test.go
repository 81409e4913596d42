package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"orch/pkg/client"
	orchv1 "orch/proto/orch/v1"
)

// TestBootstrapCredentials starts a real orch-scheduler and checks that Bootstrap's
// credentials work (the API token, the CA file, the join tokens as the scheduler shows them),
// that a second Bootstrap fails, and that Bootstrap gives up when no scheduler writes a CA.
func TestBootstrapCredentials(t *testing.T) {
	bins := BuildBinaries(t, "./cmd/orch-scheduler")
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", FreePort(t)) }
	grpcAddr := addr()
	dataDir := filepath.Join(t.TempDir(), "scheduler")
	StartProcess(t, bins["orch-scheduler"], []string{"ORCH_JOIN_TOKEN="}, "--data-dir", dataDir,
		"--grpc-addr", grpcAddr, "--http-addr", addr(), "--raft-addr", addr())

	creds := BootstrapCredentials(t, dataDir, grpcAddr)
	switch {
	case creds.CAFile != filepath.Join(dataDir, "ca.pem"):
		t.Errorf("CAFile %q, want <data-dir>/ca.pem", creds.CAFile)
	case creds.Token == "" || creds.AccessorID == "":
		t.Errorf("no API token: %+v", creds)
	case !strings.HasPrefix(creds.WorkerToken, "ORCH1-W-") || !strings.HasPrefix(creds.ManagerToken, "ORCH1-M-"):
		t.Errorf("join tokens %q %q, want ORCH1-W-... and ORCH1-M-...", creds.WorkerToken, creds.ManagerToken)
	}
	if got := creds.Env(); len(got) != 2 || got[0] != client.EnvCACert+"="+creds.CAFile || got[1] != client.EnvToken+"="+creds.Token {
		t.Errorf("Env() = %q", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, []string{grpcAddr}, creds.ClientOpts()...)
	if err != nil {
		t.Fatalf("dial with ClientOpts: %v", err)
	}
	defer c.Close()
	if _, err := c.ListClusters(ctx, &orchv1.ListClustersRequest{}); err != nil {
		t.Errorf("ListClusters with the bootstrap token: %v", err)
	}
	rotated, err := orchv1.NewOperatorClient(c.Conn()).RotateJoinToken(ctx, &orchv1.RotateJoinTokenRequest{Kind: "worker"})
	if err != nil {
		t.Fatalf("rotate the worker token: %v", err)
	}
	tokens, err := JoinTokens(ctx, creds, grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	if tokens.GetWorker() != rotated.GetWorker() || tokens.GetWorker() == creds.WorkerToken || tokens.GetManager() != creds.ManagerToken {
		t.Errorf("JoinTokens after a worker rotation: %v, want worker %s and manager %s", tokens, rotated.GetWorker(), creds.ManagerToken)
	}

	if _, err := Bootstrap(ctx, dataDir, grpcAddr); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("a second Bootstrap: %v, want an error saying it was done already", err)
	}

	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	empty := t.TempDir()
	if _, err := Bootstrap(short, empty, grpcAddr); err == nil || !strings.Contains(err.Error(), filepath.Join(empty, "ca.pem")) {
		t.Errorf("Bootstrap with no CA file: %v, want an error naming %s/ca.pem", err, empty)
	}
}
