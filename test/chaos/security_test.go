package chaos

// The control plane's credentials as the suite uses them: the cluster CA given to the three
// schedulers (--ca-cert, --ca-key: a --bootstrap-expect group must share it), the test's TLS
// connections that verify the schedulers against it, the API token (the bootstrap token,
// taken once) that every call carries, and the worker join token the agent enrolls with. At
// the end the schedulers must still refuse a client without a valid token.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
)

// clusterCA is the CA every scheduler is started with, and its files.
type clusterCA struct {
	ca                *pki.CA
	certFile, keyFile string
}

// newClusterCA creates the cluster CA and writes its certificate and key where the schedulers
// read them (as `orchctl operator ca create --out DIR` does).
func newClusterCA(dir string) (*clusterCA, error) {
	ca, err := pki.NewCA(clusterName, time.Now())
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	c := &clusterCA{ca: ca}
	if c.certFile, c.keyFile, err = ca.WriteFiles(dir); err != nil {
		return nil, err
	}
	return c, nil
}

// clientTLS verifies a scheduler against the CA and presents no certificate: the test is an
// API client, not a node.
func (c *clusterCA) clientTLS() *tls.Config { return pki.ClientTLSWith(c.ca.Cert, nil, "") }

// bearer is the per-call credential of the test's connections: the API token once the
// bootstrap has given it, nothing before (BootstrapToken itself needs none).
type bearer struct{ token atomic.Pointer[string] }

func (b *bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if t := b.token.Load(); t != nil {
		return map[string]string{"authorization": "Bearer " + *t}, nil
	}
	return nil, nil
}

func (b *bearer) RequireTransportSecurity() bool { return true }

// bootstrapToken takes the cluster's first API token (BootstrapToken works once) through
// whichever scheduler answers: any of them forwards the call to the leader once there is one.
// A call that timed out might have used the bootstrap up; the next attempt then says so, and
// the setup fails with that.
func (e *env) bootstrapToken(timeout time.Duration) {
	e.t.Helper()
	e.retry("bootstrap the API token", timeout, func(ctx context.Context, s *scheduler) error {
		resp, err := s.op.BootstrapToken(ctx, &orchv1.BootstrapTokenRequest{})
		if status.Code(err) == codes.FailedPrecondition || status.Code(err) == codes.AlreadyExists {
			e.t.Fatalf("bootstrap the API token via %s: %v (an earlier attempt that timed out was applied)", s.id, err)
		}
		if err != nil {
			return err
		}
		secret := resp.GetSecretId()
		e.bearer.token.Store(&secret)
		return nil
	})
}

// workerJoinToken reads the worker join token the agent enrolls with. The first leader writes
// the join tokens just after the cluster forms; a scheduler that has not applied that yet
// says Unavailable.
func (e *env) workerJoinToken(timeout time.Duration) string {
	e.t.Helper()
	var token string
	e.retry("read the worker join token", timeout, func(ctx context.Context, s *scheduler) error {
		resp, err := s.op.GetJoinTokens(ctx, &orchv1.GetJoinTokensRequest{})
		if err != nil {
			return err
		}
		if resp.GetWorker() == "" {
			return fmt.Errorf("%s has no worker join token", s.id)
		}
		token = resp.GetWorker()
		return nil
	})
	return token
}

// checkCredentials checks, after the faults, that every scheduler still serves the cluster
// CA's certificate to its clients (<data-dir>/ca.pem) and still refuses calls without a valid
// API token: a restart with saved identities must not have opened anything. The connections
// verify each scheduler against the CA, so a scheduler that lost its identity fails here too.
func (e *env) checkCredentials() {
	e.t.Helper()
	for _, s := range e.scheds {
		if b, err := os.ReadFile(filepath.Join(s.dataDir, "ca.pem")); err != nil || !bytes.Equal(b, e.ca.ca.CertPEM) {
			e.t.Errorf("scheduler %s: %s is not the cluster CA certificate (read error %v)", s.id, filepath.Join(s.dataDir, "ca.pem"), err)
		}
		for _, tc := range []struct {
			name  string
			token string
			want  codes.Code
		}{
			{"no token", "", codes.Unauthenticated},
			{"unknown token", "orch_" + e.net.suffix + "notatoken", codes.PermissionDenied},
		} {
			if err := e.refused(s, tc.token, tc.want); err != nil {
				e.t.Errorf("scheduler %s, client with %s: %v", s.id, tc.name, err)
			}
		}
	}
}

// refused calls a write and a read on s with token (none if empty) over a connection verified
// against the CA, and returns an error unless both are refused with want. Unavailable (the
// scheduler not answering yet) is retried for a while.
func (e *env) refused(s *scheduler, token string, want codes.Code) error {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(e.ca.clientTLS())),
		grpc.WithContextDialer(e.net.dialer("client")),
	}
	if token != "" {
		b := &bearer{}
		b.token.Store(&token)
		opts = append(opts, grpc.WithPerRPCCredentials(b))
	}
	conn, err := grpc.NewClient("passthrough:///"+s.addr(), opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	orch := orchv1.NewOrchClient(conn)
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"TagResource", func(ctx context.Context) error {
			_, err := orch.TagResource(ctx, &orchv1.TagResourceRequest{ResourceArn: e.clusterARN,
				Tags: []*orchv1.Tag{{Key: "intruder", Value: "x"}}})
			return err
		}},
		{"ListTagsForResource", func(ctx context.Context) error {
			_, err := orch.ListTagsForResource(ctx, &orchv1.ListTagsForResourceRequest{ResourceArn: e.clusterARN})
			return err
		}},
	}
	for _, c := range calls {
		deadline := time.Now().Add(10 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := c.call(ctx)
			cancel()
			if status.Code(err) == want {
				break
			}
			if err == nil {
				return fmt.Errorf("%s succeeded, want %s", c.name, want)
			}
			if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
				return fmt.Errorf("%s: %v, want %s", c.name, err, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}
