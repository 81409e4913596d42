package cli

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"orch/pkg/client"
	"orch/pkg/pki"
)

// testPKI is the CA the fake schedulers' certificate comes from; every orchctl run of the
// tests verifies them against it, as it would a real scheduler.
var testPKI struct {
	ca     *pki.CA
	caFile string // ca.pem, also in $ORCH_CA_CERT
	server *tls.Config
}

// setupTestEnv creates the test CA and a scheduler certificate in dir, points $ORCH_CA_CERT at
// the CA and $ORCH_CONFIG at a file that does not exist (so the user's config file is never
// read), and clears the other variables orchctl reads.
func setupTestEnv(dir string) error {
	ca, err := pki.NewCA("test", time.Now())
	if err != nil {
		return err
	}
	keyPEM, csr, err := pki.NewKeyAndCSR("sched-test")
	if err != nil {
		return err
	}
	certPEM, err := ca.Issue(csr, "sched-test", pki.RoleScheduler, nil, time.Hour, time.Now())
	if err != nil {
		return err
	}
	pair, err := pki.KeyPair(certPEM, keyPEM, ca.Cert)
	if err != nil {
		return err
	}
	testPKI.ca = ca
	testPKI.caFile = filepath.Join(dir, "ca.pem")
	testPKI.server = pki.ServerTLSWith(ca.Cert, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pair, nil })
	if err := os.WriteFile(testPKI.caFile, ca.CertPEM, 0o644); err != nil {
		return err
	}
	for k, v := range map[string]string{
		client.EnvCACert:      testPKI.caFile,
		EnvConfig:             filepath.Join(dir, "no-such-config.json"),
		client.EnvToken:       "",
		EnvSnapshotPassphrase: "",
	} {
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("setenv %s: %w", k, err)
		}
	}
	return nil
}

// serverCreds is the TLS of a scheduler with a certificate of the test CA.
func serverCreds() grpc.ServerOption {
	return grpc.Creds(credentials.NewTLS(testPKI.server))
}
