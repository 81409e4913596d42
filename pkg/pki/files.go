package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// NodeFiles is where a node keeps its identity: Dir/ca.pem (the cluster CA certificate),
// Dir/node.pem (its certificate) and Dir/node-key.pem (its private key, mode 0600). Every
// write replaces a file atomically, so a crash leaves the old or the new file, never half.
type NodeFiles struct{ Dir string }

const (
	caFile   = "ca.pem"
	certFile = "node.pem"
	keyFile  = "node-key.pem"
)

// Exists reports whether the node has enrolled: all three files are present.
func (f NodeFiles) Exists() bool {
	for _, n := range []string{caFile, certFile, keyFile} {
		if _, err := os.Stat(filepath.Join(f.Dir, n)); err != nil {
			return false
		}
	}
	return true
}

// Load reads the three files.
func (f NodeFiles) Load() (caPEM, certPEM, keyPEM []byte, err error) {
	read := func(n string) []byte {
		if err != nil {
			return nil
		}
		var b []byte
		if b, err = os.ReadFile(filepath.Join(f.Dir, n)); err != nil {
			err = fmt.Errorf("node identity: %w", err)
		}
		return b
	}
	caPEM, certPEM, keyPEM = read(caFile), read(certFile), read(keyFile)
	return caPEM, certPEM, keyPEM, err
}

// Save writes all three files (the key first, the certificate last).
func (f NodeFiles) Save(caPEM, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return fmt.Errorf("node identity: %w", err)
	}
	if err := WriteFileAtomic(filepath.Join(f.Dir, keyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(f.Dir, caFile), caPEM, 0o644); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(f.Dir, certFile), certPEM, 0o644)
}

// SaveCert replaces the certificate (after a renewal that kept the key).
func (f NodeFiles) SaveCert(certPEM []byte) error {
	return WriteFileAtomic(filepath.Join(f.Dir, certFile), certPEM, 0o644)
}

// Identity loads the files as the CA certificate and the node's key pair (the CA appended to
// the chain, see KeyPair).
func (f NodeFiles) Identity() (*x509.Certificate, *tls.Certificate, error) {
	caPEM, certPEM, keyPEM, err := f.Load()
	if err != nil {
		return nil, nil, err
	}
	ca, err := ParseCertificatePEM(caPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("node identity %s: %w", filepath.Join(f.Dir, caFile), err)
	}
	pair, err := KeyPair(certPEM, keyPEM, ca)
	if err != nil {
		return nil, nil, fmt.Errorf("node identity %s: %w", f.Dir, err)
	}
	return ca, pair, nil
}

// WriteFileAtomic writes b to path through a temporary file, fsync and a rename.
func WriteFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := errors.Join(tmp.Chmod(mode), tmp.Sync(), tmp.Close()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// CA file names, as `orchctl operator ca create` writes them and `orch-scheduler --ca-cert
// --ca-key` reads them.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// WriteFiles writes the CA certificate to dir/ca.pem and its unencrypted PKCS#8 key to
// dir/ca-key.pem (mode 0600, written first), creating dir if needed. It never overwrites: an
// existing file is an error wrapping fs.ErrExist that names it.
func (c *CA) WriteFiles(dir string) (certFile, keyFile string, err error) {
	plain, err := c.MarshalPlain()
	if err != nil {
		return "", "", err
	}
	// MarshalPlain is the certificate block, then the key block.
	_, rest := pem.Decode(plain)
	key, _ := pem.Decode(rest)
	if key == nil {
		return "", "", errors.New("CA files: no private key")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("CA files: %w", err)
	}
	certFile, keyFile = filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	if err := writeNew(keyFile, pem.EncodeToMemory(key), 0o600); err != nil {
		return "", "", err
	}
	if err := writeNew(certFile, c.CertPEM, 0o644); err != nil {
		os.Remove(keyFile)
		return "", "", err
	}
	return certFile, keyFile, nil
}

// writeNew creates path with b, failing if it exists.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("CA files: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("CA files: %s: %w", path, err)
	}
	return nil
}
