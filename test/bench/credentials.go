package bench

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"orch/pkg/pki"
)

// writeCA creates a cluster CA for a --bootstrap-expect group and writes its certificate and
// key into dir, as `orchctl operator ca create --out DIR` does.
func writeCA(dir string) (ca *x509.Certificate, certFile, keyFile string, err error) {
	c, err := pki.NewCA("bench", time.Now())
	if err != nil {
		return nil, "", "", fmt.Errorf("cluster CA: %w", err)
	}
	certFile, keyFile, err = c.WriteFiles(dir)
	return c.Cert, certFile, keyFile, err
}

// bearer is an API token as gRPC per-call credentials ("authorization: Bearer <token>").
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (b bearer) RequireTransportSecurity() bool { return true }
