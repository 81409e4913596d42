package client

import (
	"context"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials/insecure"

	orchv1 "orch/proto/orch/v1"
)

func TestDialTLS(t *testing.T) {
	tlsAddr, caPEM := startServer(t)
	plainAddr := startPlainServer(t)
	otherCA := newCA(t).CertPEM

	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", caPEM)
	otherFile := write("other.pem", otherCA)
	garbage := write("garbage.pem", []byte("not a certificate\n"))
	missing := filepath.Join(dir, "missing.pem")
	// A certificate that is not a CA: a scheduler's own certificate, a likely mix-up.
	leafPEM := func() []byte {
		ca := newCA(t)
		cfg := schedulerTLS(t, ca)
		pair, err := cfg.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return pemCert(pair.Certificate[0])
	}()
	leafFile := write("node.pem", leafPEM)

	tests := []struct {
		name    string
		addr    string
		env     string // $ORCH_CA_CERT
		opts    []Opt
		wantErr []string // empty: Dial and a call succeed
		is      error
		caFile  string // the error is a *CAError naming this file
	}{
		{name: "CA", addr: tlsAddr, opts: []Opt{WithCA(caPEM)}},
		{name: "CA file", addr: tlsAddr, opts: []Opt{WithCAFile(caFile)}},
		{name: "CA from env", addr: tlsAddr, env: caFile},
		{name: "option beats env", addr: tlsAddr, env: otherFile, opts: []Opt{WithCAFile(caFile)}},
		{name: "last option wins", addr: tlsAddr, opts: []Opt{WithInsecure(), WithCA(otherCA), WithCA(caPEM)}},
		{name: "insecure", addr: plainAddr, opts: []Opt{WithInsecure()}},
		{name: "transport credentials", addr: plainAddr,
			opts: []Opt{WithTransportCredentials(insecure.NewCredentials())}},
		{
			name: "another CA", addr: tlsAddr, opts: []Opt{WithCA(otherCA)},
			wantErr: []string{"endpoint " + tlsAddr + ": TLS handshake: the scheduler's certificate is not signed by the CA certificate given",
				"certificate signed by unknown authority"},
		},
		{
			name: "another CA from env", addr: tlsAddr, env: otherFile,
			wantErr: []string{"TLS handshake", "unknown authority"},
		},
		{name: "no CA", addr: tlsAddr, is: ErrCARequired, wantErr: []string{
			"a CA certificate is required to verify the scheduler (--ca-cert or ORCH_CA_CERT; each scheduler writes it to <data-dir>/ca.pem)"}},
		{name: "missing CA file", addr: tlsAddr, opts: []Opt{WithCAFile(missing)}, caFile: missing,
			wantErr: []string{"CA certificate file " + missing + ": no such file or directory"}},
		{name: "missing CA file from env", addr: tlsAddr, env: missing, caFile: missing,
			wantErr: []string{"CA certificate file " + missing + ": no such file or directory"}},
		{name: "not PEM", addr: tlsAddr, opts: []Opt{WithCAFile(garbage)}, caFile: garbage,
			wantErr: []string{"CA certificate file " + garbage + ": ", "no CERTIFICATE PEM block"}},
		{name: "not a CA", addr: tlsAddr, opts: []Opt{WithCAFile(leafFile)}, caFile: leafFile,
			wantErr: []string{"is not a CA certificate"}},
		{name: "empty PEM", addr: tlsAddr, opts: []Opt{WithCA(nil)}, wantErr: []string{"CA certificate: empty"}},
		{name: "TLS to a plaintext server", addr: plainAddr, opts: []Opt{WithCA(caPEM)},
			wantErr: []string{"TLS handshake: the endpoint does not speak TLS"}},
		{name: "plaintext to a TLS server", addr: tlsAddr, opts: []Opt{WithInsecure()}, wantErr: []string{"endpoint " + tlsAddr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvCACert, tt.env)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, []string{tt.addr}, append(tt.opts, WithConnectTimeout(3*time.Second))...)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer c.Close()
				if _, err := c.ListClusters(ctx, &orchv1.ListClustersRequest{}); err != nil {
					t.Fatalf("ListClusters: %v", err)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded, want an error")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			var caErr *CAError
			if tt.caFile != "" && (!errors.As(err, &caErr) || caErr.File != tt.caFile) {
				t.Errorf("error %v is not a *CAError for %s", err, tt.caFile)
			}
		})
	}
}

// TestDialTLSAnyAddress dials the scheduler by an address its certificate does not carry:
// clients verify pki.SchedulerServerName, not the address.
func TestDialTLSAnyAddress(t *testing.T) {
	t.Setenv(EnvCACert, "")
	addr, caPEM := startServer(t)
	_, port, _ := strings.Cut(addr, ":")
	c, err := Dial(context.Background(), []string{"localhost:" + port}, WithCA(caPEM))
	if err != nil {
		t.Fatalf("Dial localhost:%s: %v", port, err)
	}
	defer c.Close()
	if _, err := c.ListClusters(context.Background(), &orchv1.ListClustersRequest{}); err != nil {
		t.Fatal(err)
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
