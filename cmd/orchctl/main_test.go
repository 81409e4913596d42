package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
)

// TestMain lets the tests run this binary as orchctl: with ORCHCTL_TEST_MAIN=1 it is main().
func TestMain(m *testing.M) {
	if os.Getenv("ORCHCTL_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// testCA is the CA of the test schedulers' certificates, written to caFile.
type testCA struct {
	server *tls.Config
	caFile string
}

// newTestCA creates a CA and a scheduler certificate it signed.
func newTestCA(t *testing.T) testCA {
	t.Helper()
	ca, err := pki.NewCA("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csr, err := pki.NewKeyAndCSR("sched-test")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Issue(csr, "sched-test", pki.RoleScheduler, nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := pki.KeyPair(certPEM, keyPEM, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return testCA{
		server: pki.ServerTLSWith(ca.Cert, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pair, nil }),
		caFile: caFile,
	}
}

// orchctl returns a command that runs main() with args in a child process, verifying
// schedulers against caFile (none when empty) and reading no config file.
func orchctl(t *testing.T, caFile string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "ORCHCTL_TEST_MAIN=1", "ORCH_ADDR=", "ORCH_TOKEN=",
		"ORCH_CA_CERT="+caFile, "ORCH_CONFIG="+filepath.Join(t.TempDir(), "config.json"))
	return cmd
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestExitCodes(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := lis.Addr().String()
	lis.Close()
	ca := newTestCA(t)
	tests := []struct {
		args   []string
		caFile string
		want   int
	}{
		{[]string{"version"}, "", 0},
		{[]string{"completion", "bash"}, "", 0},
		{[]string{"run-task", "--no-such-flag"}, "", 252},
		{[]string{"list-clusters", "--endpoint", down}, "", 253}, // no CA certificate
		{[]string{"list-clusters", "--endpoint", down}, ca.caFile, 255},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " ")+" ca="+tt.caFile, func(t *testing.T) {
			out, err := orchctl(t, tt.caFile, tt.args...).CombinedOutput()
			if got := exitCode(err); got != tt.want {
				t.Errorf("exit code %d, want %d; output:\n%s", got, tt.want, out)
			}
		})
	}
}

// followServer streams one log line and then keeps the stream open.
type followServer struct {
	orchv1.UnimplementedOrchServer
}

func (followServer) DescribeTasks(context.Context, *orchv1.DescribeTasksRequest) (*orchv1.DescribeTasksResponse, error) {
	return &orchv1.DescribeTasksResponse{}, nil
}

func (followServer) GetLogs(_ *orchv1.GetLogsRequest, s grpc.ServerStreamingServer[orchv1.LogEntry]) error {
	if err := s.Send(&orchv1.LogEntry{Container: "web", Message: "hello"}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func TestFollowEndsOnSIGINT(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(ca.server)))
	orchv1.RegisterOrchServer(srv, followServer{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	cmd := orchctl(t, ca.caFile, "--endpoint", lis.Addr().String(), "logs", "-f", "0123456789abcdef0123456789abcdef")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if l != "hello" {
			t.Fatalf("first line %q, want hello", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no log line within 10s")
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if code := exitCode(err); code != 0 {
			t.Errorf("exit code %d after SIGINT, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("orchctl logs -f did not exit after SIGINT")
	}
}
