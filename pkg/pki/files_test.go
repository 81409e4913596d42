package pki

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNodeFilesRoundTrip(t *testing.T) {
	ca := newTestCA(t, "prod")
	certPEM, keyPEM := issue(t, ca, "node-1", RoleAgent, time.Hour)
	f := NodeFiles{Dir: filepath.Join(t.TempDir(), "data", "tls")} // parents created by Save

	if f.Exists() {
		t.Fatal("Exists before Save")
	}
	if err := f.Save(ca.CertPEM, certPEM, keyPEM); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if !f.Exists() {
		t.Fatal("not Exists after Save")
	}
	for _, tc := range []struct {
		name string
		mode os.FileMode
	}{
		{"", 0o700 | os.ModeDir},
		{keyFile, 0o600},
		{certFile, 0o644},
		{caFile, 0o644},
	} {
		st, err := os.Stat(filepath.Join(f.Dir, tc.name))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode() & (os.ModePerm | os.ModeDir); got != tc.mode {
			t.Errorf("%s/%s mode %v, want %v", f.Dir, tc.name, got, tc.mode)
		}
	}
	gotCA, gotCert, gotKey, err := f.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !bytes.Equal(gotCA, ca.CertPEM) || !bytes.Equal(gotCert, certPEM) || !bytes.Equal(gotKey, keyPEM) {
		t.Fatal("Load returned other bytes than Save wrote")
	}
	caCert, pair, err := f.Identity()
	if err != nil {
		t.Fatalf("Identity: %v", err)
	}
	if !caCert.Equal(ca.Cert) {
		t.Fatal("Identity: wrong CA")
	}
	if id, role, ok := CertIdentity(pair.Leaf); !ok || id != "node-1" || role != RoleAgent {
		t.Fatalf("Identity: leaf is %q %q %v", id, role, ok)
	}
	if n := len(pair.Certificate); n != 2 || !bytes.Equal(pair.Certificate[1], ca.Cert.Raw) {
		t.Fatalf("Identity: chain of %d certificates, want leaf and CA", n)
	}

	// A renewal keeps the key and replaces the certificate.
	renewed, err := ca.Issue(mustCSR(t, "node-1", keyPEM), "node-1", RoleAgent, nil, 2*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SaveCert(renewed); err != nil {
		t.Fatalf("SaveCert: %v", err)
	}
	_, pair2, err := f.Identity()
	if err != nil {
		t.Fatalf("Identity after SaveCert: %v", err)
	}
	if pair2.Leaf.SerialNumber.Cmp(pair.Leaf.SerialNumber) == 0 {
		t.Fatal("Identity after SaveCert still returns the old certificate")
	}
	entries, err := os.ReadDir(f.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only the three files (no temporary files left)", names)
	}
}

func mustCSR(t *testing.T, nodeID string, keyPEM []byte) []byte {
	t.Helper()
	csr, err := CSRFromKey(nodeID, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func TestNodeFilesMissing(t *testing.T) {
	ca := newTestCA(t, "prod")
	certPEM, keyPEM := issue(t, ca, "node-1", RoleAgent, time.Hour)
	for _, missing := range []string{caFile, certFile, keyFile} {
		t.Run(missing, func(t *testing.T) {
			f := NodeFiles{Dir: t.TempDir()}
			if err := f.Save(ca.CertPEM, certPEM, keyPEM); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(f.Dir, missing)); err != nil {
				t.Fatal(err)
			}
			if f.Exists() {
				t.Fatal("Exists with a file missing")
			}
			_, _, _, err := f.Load()
			if err == nil || !strings.Contains(err.Error(), filepath.Join(f.Dir, missing)) {
				t.Fatalf("Load: err = %v, want one naming %s", err, missing)
			}
			if _, _, err := f.Identity(); err == nil || !strings.Contains(err.Error(), missing) {
				t.Fatalf("Identity: err = %v, want one naming %s", err, missing)
			}
		})
	}
	if (NodeFiles{Dir: filepath.Join(t.TempDir(), "nowhere")}).Exists() {
		t.Fatal("Exists for a directory that does not exist")
	}
}

func TestNodeFilesIdentityErrors(t *testing.T) {
	ca := newTestCA(t, "prod")
	certPEM, keyPEM := issue(t, ca, "node-1", RoleAgent, time.Hour)
	_, otherKey := issue(t, ca, "node-2", RoleAgent, time.Hour)
	for _, tc := range []struct {
		name                   string
		caPEM, certPEM, keyPEM []byte
		want                   string
	}{
		{"CA not PEM", []byte("garbage"), certPEM, keyPEM, caFile},
		{"certificate not PEM", ca.CertPEM, []byte("garbage"), keyPEM, "key pair"},
		{"key of another node", ca.CertPEM, certPEM, otherKey, "key pair"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := NodeFiles{Dir: t.TempDir()}
			if err := f.Save(tc.caPEM, tc.certPEM, tc.keyPEM); err != nil {
				t.Fatal(err)
			}
			_, _, err := f.Identity()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), f.Dir) {
				t.Fatalf("Identity: err = %v, want one naming %s and %q", err, f.Dir, tc.want)
			}
		})
	}
}

func TestWriteFileAtomicReplacesModeAndContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, keyFile)
	// A key file left world-readable by hand is tightened by the next Save.
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := NodeFiles{Dir: dir}
	ca := newTestCA(t, "prod")
	certPEM, keyPEM := issue(t, ca, "node-1", RoleAgent, time.Hour)
	if err := f.Save(ca.CertPEM, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v after Save, want 0600", st.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, keyPEM) {
		t.Fatal("key not replaced")
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing-dir", "x"), []byte("x"), 0o600); err == nil || !strings.Contains(err.Error(), "missing-dir") {
		t.Fatalf("WriteFileAtomic into a missing directory: err = %v", err)
	}
}

func TestCAWriteFiles(t *testing.T) {
	ca, err := NewCA("files", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "new")
	certFile, keyFile, err := ca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := os.ReadFile(certFile)
	k, _ := os.ReadFile(keyFile)
	back, err := UnmarshalPlain(append(append(c, '\n'), k...))
	if err != nil || !back.Cert.Equal(ca.Cert) {
		t.Fatalf("the files do not hold the CA: %v", err)
	}
	if fi, _ := os.Stat(keyFile); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode().Perm())
	}
	if _, _, err := ca.WriteFiles(dir); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), keyFile) {
		t.Fatalf("second write: %v, want an existing-file error naming %s", err, keyFile)
	}
}
