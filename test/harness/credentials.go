package harness

// Credentials of a secured control plane: every scheduler serves TLS only (verified against
// the cluster CA it writes to <data-dir>/ca.pem) and every API call needs an API token, the
// first of which comes from the one-time API bootstrap. Agents enroll with a worker join
// token.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"orch/pkg/client"
	orchv1 "orch/proto/orch/v1"
)

// CredentialsTimeout bounds BootstrapCredentials: the scheduler starts, elects itself and
// writes the cluster CA and join tokens in well under a second on an idle machine.
const CredentialsTimeout = 60 * time.Second

// Credentials are what clients and agents need to talk to the schedulers of one cluster.
type Credentials struct {
	// CAFile is the cluster CA certificate a scheduler wrote, <data-dir>/ca.pem: for orchctl
	// --ca-cert, $ORCH_CA_CERT or client.WithCAFile.
	CAFile string
	// Token is the management API token of the API bootstrap (its secret id): for orchctl
	// --token, $ORCH_TOKEN or client.WithToken.
	Token string
	// AccessorID names Token (it is not a secret).
	AccessorID string
	// WorkerToken enrolls agents (orch-agent --join-token); ManagerToken enrolls schedulers
	// (orch-scheduler --join --join-token). Both as they were when fetched: a rotation
	// replaces them (JoinTokens fetches the current ones).
	WorkerToken, ManagerToken string
}

// CAFilePath is where the scheduler with data dir dataDir writes the cluster CA certificate.
func CAFilePath(dataDir string) string { return filepath.Join(dataDir, "ca.pem") }

// Env returns $ORCH_CA_CERT and $ORCH_TOKEN for a child's environment (orchctl, or programs
// using pkg/client with the environment defaults).
func (c Credentials) Env() []string {
	return []string{client.EnvCACert + "=" + c.CAFile, client.EnvToken + "=" + c.Token}
}

// ClientOpts returns the pkg/client options that verify the scheduler against CAFile and send
// Token with every call.
func (c Credentials) ClientOpts() []client.Opt {
	return []client.Opt{client.WithCAFile(c.CAFile), client.WithToken(c.Token)}
}

// WaitCAFile waits until the scheduler with data dir dataDir has written its CA certificate
// (it does so before it listens) and returns the file's path.
func WaitCAFile(ctx context.Context, dataDir string) (string, error) {
	path := CAFilePath(dataDir)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return path, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("the scheduler did not write its CA certificate %s: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Bootstrap obtains the credentials of a newly started cluster: it waits for
// <dataDir>/ca.pem of one of its schedulers, does the API bootstrap (Operator.BootstrapToken,
// which works once per cluster) and fetches the join tokens, through the first of endpoints
// that answers. It retries while the schedulers start and elect a leader, until ctx ends. A
// cluster bootstrapped already makes it fail: the API token's secret is shown only once.
func Bootstrap(ctx context.Context, dataDir string, endpoints ...string) (Credentials, error) {
	caFile, err := WaitCAFile(ctx, dataDir)
	if err != nil {
		return Credentials{}, err
	}
	creds := Credentials{CAFile: caFile}
	err = retryUnavailable(ctx, endpoints, []client.Opt{client.WithCAFile(caFile)}, func(c *client.Client) error {
		resp, err := orchv1.NewOperatorClient(c.Conn()).BootstrapToken(ctx, &orchv1.BootstrapTokenRequest{})
		if err != nil {
			return err
		}
		creds.Token, creds.AccessorID = resp.GetSecretId(), resp.GetAccessorId()
		return nil
	})
	if err != nil {
		return Credentials{}, fmt.Errorf("API bootstrap: %w", err)
	}
	tokens, err := JoinTokens(ctx, creds, endpoints...)
	if err != nil {
		return Credentials{}, err
	}
	creds.WorkerToken, creds.ManagerToken = tokens.GetWorker(), tokens.GetManager()
	return creds, nil
}

// JoinTokens fetches the cluster's current join tokens (Operator.GetJoinTokens) with the
// API token of creds, retrying until the cluster has them (its first leader writes them) or
// ctx ends.
func JoinTokens(ctx context.Context, creds Credentials, endpoints ...string) (*orchv1.JoinTokens, error) {
	var tokens *orchv1.JoinTokens
	err := retryUnavailable(ctx, endpoints, creds.ClientOpts(), func(c *client.Client) error {
		t, err := orchv1.NewOperatorClient(c.Conn()).GetJoinTokens(ctx, &orchv1.GetJoinTokensRequest{})
		if err != nil {
			return err
		}
		if t.GetWorker() == "" || t.GetManager() == "" {
			return status.Errorf(codes.Unavailable, "join tokens not set yet: %v", t)
		}
		tokens = t
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("join tokens: %w", err)
	}
	return tokens, nil
}

// BootstrapCredentials is Bootstrap for tests: it fails the test when the credentials cannot
// be had within CredentialsTimeout.
func BootstrapCredentials(t testing.TB, dataDir string, endpoints ...string) Credentials {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CredentialsTimeout)
	defer cancel()
	creds, err := Bootstrap(ctx, dataDir, endpoints...)
	if err != nil {
		t.Fatalf("credentials of the scheduler at %s (data dir %s): %v", strings.Join(endpoints, ","), dataDir, err)
	}
	return creds
}

// retryUnavailable dials endpoints and calls call until it succeeds, fails with an error other
// than codes.Unavailable (no leader yet, not ready), or ctx ends.
func retryUnavailable(ctx context.Context, endpoints []string, opts []client.Opt, call func(*client.Client) error) error {
	if len(endpoints) == 0 {
		return errors.New("no scheduler endpoint")
	}
	opts = append([]client.Opt{client.WithConnectTimeout(2 * time.Second)}, opts...)
	for {
		var err error
		var c *client.Client
		if c, err = client.Dial(ctx, endpoints, opts...); err == nil {
			err = call(c)
			c.Close()
			if err == nil {
				return nil
			}
			if status.Code(err) != codes.Unavailable {
				return err
			}
		} else {
			var caErr *client.CAError
			if errors.As(err, &caErr) || errors.Is(err, client.ErrCARequired) {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
