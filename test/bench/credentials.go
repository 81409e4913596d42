package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
)

// writeCA creates a cluster CA for a --bootstrap-expect group and writes its certificate and
// key into dir, as `orchctl operator ca create --out DIR` does.
func writeCA(dir string) (ca *x509.Certificate, certFile, keyFile string, err error) {
	c, err := pki.NewCA("bench", time.Now())
	if err != nil {
		return nil, "", "", fmt.Errorf("cluster CA: %w", err)
	}
	both, err := c.MarshalPlain() // the certificate's PEM, then the key's
	if err != nil {
		return nil, "", "", fmt.Errorf("cluster CA: %w", err)
	}
	certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if err := os.WriteFile(certFile, c.CertPEM, 0o644); err != nil {
		return nil, "", "", err
	}
	if err := os.WriteFile(keyFile, bytes.TrimPrefix(both, c.CertPEM), 0o600); err != nil {
		return nil, "", "", err
	}
	return c.Cert, certFile, keyFile, nil
}

// bootstrapToken takes a new cluster's API token (Operator.BootstrapToken, which works once)
// through whichever of addrs answers, retrying while the servers start and elect a leader,
// until ctx ends. A call that timed out may have used the bootstrap up; the next one then
// fails with FailedPrecondition, which ends the attempt.
func bootstrapToken(ctx context.Context, addrs []string, tlsConf *tls.Config) (string, error) {
	var last error
	for {
		for _, addr := range addrs {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)))
			if err != nil {
				return "", err
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			resp, err := orchv1.NewOperatorClient(conn).BootstrapToken(cctx, &orchv1.BootstrapTokenRequest{})
			cancel()
			conn.Close()
			if err == nil {
				return resp.GetSecretId(), nil
			}
			if status.Code(err) == codes.FailedPrecondition {
				return "", fmt.Errorf("API bootstrap via %s: %w", addr, err)
			}
			last = fmt.Errorf("API bootstrap via %s: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// bearer is an API token as gRPC per-call credentials ("authorization: Bearer <token>").
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (b bearer) RequireTransportSecurity() bool { return true }
