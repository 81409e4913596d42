package bench

import (
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
