package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewCA(t *testing.T) {
	ca, err := NewCA("prod", t0)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.IsCA || ca.Cert.Subject.CommonName != caCommonName || ca.ClusterName() != "prod" {
		t.Fatalf("CA subject %q IsCA %v", ca.Cert.Subject, ca.Cert.IsCA)
	}
	if got := ca.Cert.NotAfter.Sub(t0); got != CAValidity {
		t.Fatalf("CA valid for %s after now, want %s", got, CAValidity)
	}
	if _, err := ca.Cert.Verify(x509.VerifyOptions{Roots: caPool(ca.Cert), CurrentTime: t0}); err != nil {
		t.Fatalf("self-signed CA does not verify: %v", err)
	}
	got, err := ParseCertificatePEM(ca.CertPEM)
	if err != nil || !got.Equal(ca.Cert) {
		t.Fatalf("CertPEM does not hold the certificate: %v", err)
	}
	if _, err := NewCA("", t0); err == nil {
		t.Fatal("NewCA with an empty cluster name succeeded")
	}
}

func TestCAMarshalRoundTrip(t *testing.T) {
	ca := newTestCA(t, "prod")
	pass := []byte("s3cret passphrase")
	sealed, err := ca.Marshal(pass)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := ca.MarshalPlain()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "BEGIN PRIVATE KEY") {
		t.Fatal("Marshal output holds an unencrypted key")
	}
	if _, err := ca.Marshal(nil); !errors.Is(err, ErrEmptyPassphrase) {
		t.Fatalf("Marshal with an empty passphrase: %v", err)
	}
	for _, tc := range []struct {
		name    string
		load    func() (*CA, error)
		wantErr error // nil with wantOK false: any error
		wantOK  bool
	}{
		{"sealed", func() (*CA, error) { return UnmarshalCA(sealed, pass) }, nil, true},
		{"sealed wrong passphrase", func() (*CA, error) { return UnmarshalCA(sealed, []byte("guess")) }, ErrWrongPassphrase, false},
		{"sealed empty passphrase", func() (*CA, error) { return UnmarshalCA(sealed, nil) }, ErrEmptyPassphrase, false},
		{"plain", func() (*CA, error) { return UnmarshalPlain(plain) }, nil, true},
		{"plain read as sealed", func() (*CA, error) { return UnmarshalCA(plain, pass) }, nil, false},
		{"sealed read as plain", func() (*CA, error) { return UnmarshalPlain(sealed) }, nil, false},
		{"certificate only", func() (*CA, error) { return UnmarshalPlain(ca.CertPEM) }, nil, false},
		{"garbage", func() (*CA, error) { return UnmarshalPlain([]byte("nope")) }, nil, false},
		{"key of another CA", func() (*CA, error) {
			other, err := newTestCA(t, "other").MarshalPlain()
			if err != nil {
				return nil, err
			}
			_, otherKey, _ := strings.Cut(string(other), "-----END CERTIFICATE-----\n")
			return UnmarshalPlain(append(slices.Clone(ca.CertPEM), otherKey...))
		}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.load()
			if !tc.wantOK {
				if err == nil {
					t.Fatal("load succeeded")
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %q, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Cert.Equal(ca.Cert) || string(got.CertPEM) != string(ca.CertPEM) {
				t.Fatal("restored CA certificate differs")
			}
			// The restored key signs certificates the original CA certificate verifies.
			certPEM, _ := issue(t, got, "node-1", RoleAgent, time.Hour)
			leaf, err := ParseCertificatePEM(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: caPool(ca.Cert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("certificate from restored CA: %v", err)
			}
		})
	}
}

func TestIssue(t *testing.T) {
	ca := newTestCA(t, "prod")
	other := newTestCA(t, "other")
	_, csr, err := NewKeyAndCSR("ignored-cn")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name       string
		nodeID     string
		role       string
		sans       []string
		ttl        time.Duration
		wantUsages []x509.ExtKeyUsage // each must verify
		denyUsage  x509.ExtKeyUsage   // must not verify (0: none)
		wantDNS    []string
		wantIPs    []string
	}{
		{
			name: "scheduler", nodeID: "sched-1", role: RoleScheduler, ttl: 24 * time.Hour,
			sans:       []string{"10.0.0.5", "sched-1.example.com", " ", "::1"},
			wantUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			wantDNS:    []string{SchedulerServerName, "sched-1.example.com"},
			wantIPs:    []string{"10.0.0.5", "::1"},
		},
		{
			name: "agent", nodeID: "node-7", role: RoleAgent, ttl: time.Hour,
			sans:       []string{"10.0.0.9"}, // ignored: agents are verified by id, not address
			wantUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certPEM, err := ca.Issue(csr, tc.nodeID, tc.role, tc.sans, tc.ttl, now)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := ParseCertificatePEM(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			id, role, ok := CertIdentity(leaf)
			if !ok || id != tc.nodeID || role != tc.role {
				t.Fatalf("identity %q %q %v, want %q %q", id, role, ok, tc.nodeID, tc.role)
			}
			if leaf.Subject.Organization[0] != "prod" {
				t.Fatalf("organization %v, want the cluster name", leaf.Subject.Organization)
			}
			if !leaf.NotAfter.Equal(now.Add(tc.ttl).Truncate(time.Second)) {
				t.Fatalf("NotAfter %s, want %s", leaf.NotAfter, now.Add(tc.ttl))
			}
			if !leaf.NotBefore.Before(now) {
				t.Fatalf("NotBefore %s is not backdated from %s", leaf.NotBefore, now)
			}
			for _, u := range tc.wantUsages {
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: caPool(ca.Cert), KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
					t.Errorf("verify for usage %v: %v", u, err)
				}
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: caPool(other.Cert), KeyUsages: []x509.ExtKeyUsage{u}}); err == nil {
					t.Errorf("verifies against another cluster's CA")
				}
			}
			if tc.denyUsage != 0 {
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: caPool(ca.Cert), KeyUsages: []x509.ExtKeyUsage{tc.denyUsage}}); err == nil {
					t.Errorf("verifies for usage %v", tc.denyUsage)
				}
			}
			if !slices.Equal(leaf.DNSNames, tc.wantDNS) {
				t.Errorf("DNS SANs %v, want %v", leaf.DNSNames, tc.wantDNS)
			}
			var ips []string
			for _, ip := range leaf.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tc.wantIPs) {
				t.Errorf("IP SANs %v, want %v", ips, tc.wantIPs)
			}
			if tc.role == RoleScheduler {
				if err := leaf.VerifyHostname(SchedulerServerName); err != nil {
					t.Errorf("scheduler name: %v", err)
				}
			}
		})
	}
}

func TestIssueCappedAtCAExpiry(t *testing.T) {
	ca := newTestCA(t, "prod")
	_, csr, err := NewKeyAndCSR("n")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Issue(csr, "n", RoleAgent, nil, 2*CAValidity, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := ParseCertificatePEM(certPEM)
	if !leaf.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Fatalf("NotAfter %s, want the CA's %s", leaf.NotAfter, ca.Cert.NotAfter)
	}
}

func TestIssueRejects(t *testing.T) {
	ca := newTestCA(t, "prod")
	_, csr, err := NewKeyAndCSR("n")
	if err != nil {
		t.Fatal(err)
	}
	tampered := slices.Clone(csr)
	tampered[len(tampered)-3] ^= 0xff // inside the signature
	// A CSR whose subject was changed after signing: same structure, broken signature.
	_, victim, err := NewKeyAndCSR("node-a")
	if err != nil {
		t.Fatal(err)
	}
	relabelled := bytes.Replace(victim, []byte("node-a"), []byte("node-b"), 1)
	if bytes.Equal(relabelled, victim) {
		t.Fatal("test setup: CN not found in the CSR")
	}
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	weakCSR, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "n"}}, p521)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		csr    []byte
		nodeID string
		role   string
		sans   []string
		ttl    time.Duration
		want   string
	}{
		{"signature tampered", tampered, "n", RoleAgent, nil, time.Hour, "CSR"},
		{"subject tampered", relabelled, "n", RoleAgent, nil, time.Hour, "CSR signature"},
		{"not a CSR", []byte("garbage"), "n", RoleAgent, nil, time.Hour, "parse CSR"},
		{"P-521 key", weakCSR, "n", RoleAgent, nil, time.Hour, "curve"},
		{"empty node id", csr, "", RoleAgent, nil, time.Hour, "node id is empty"},
		{"unknown role", csr, "n", "admin", nil, time.Hour, "unknown role"},
		{"zero ttl", csr, "n", RoleAgent, nil, 0, "ttl"},
		{"bad SAN", csr, "n", RoleScheduler, []string{"not a name!"}, time.Hour, "SAN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.Issue(tc.csr, tc.nodeID, tc.role, tc.sans, tc.ttl, time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Issue error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestCSRFromKey(t *testing.T) {
	ca := newTestCA(t, "prod")
	keyPEM, _, err := NewKeyAndCSR("n")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := CSRFromKey("n", keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Issue(csr, "n", RoleAgent, nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := KeyPair(certPEM, keyPEM, ca.Cert); err != nil {
		t.Fatalf("renewed certificate does not match the kept key: %v", err)
	}
}

func TestCertIdentity(t *testing.T) {
	for _, tc := range []struct {
		name    string
		subject pkix.Name
		ok      bool
	}{
		{"scheduler", pkix.Name{CommonName: "s1", OrganizationalUnit: []string{RoleScheduler}}, true},
		{"agent", pkix.Name{CommonName: "a1", OrganizationalUnit: []string{RoleAgent}}, true},
		{"no role", pkix.Name{CommonName: "a1"}, false},
		{"unknown role", pkix.Name{CommonName: "a1", OrganizationalUnit: []string{"admin"}}, false},
		{"two roles", pkix.Name{CommonName: "a1", OrganizationalUnit: []string{RoleAgent, RoleScheduler}}, false},
		{"no id", pkix.Name{OrganizationalUnit: []string{RoleAgent}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, ok := CertIdentity(&x509.Certificate{Subject: tc.subject})
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
		})
	}
}
