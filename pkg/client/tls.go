package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"

	"google.golang.org/grpc/credentials"

	"orch/pkg/pki"
)

// EnvCACert names the environment variable that holds the path of the cluster CA certificate
// (PEM), used when no WithCA, WithCAFile or WithInsecure is given.
const EnvCACert = "ORCH_CA_CERT"

// ErrCARequired is Dial's error when nothing says how to verify the scheduler.
var ErrCARequired = errors.New("a CA certificate is required to verify the scheduler (--ca-cert or " +
	EnvCACert + "; each scheduler writes it to <data-dir>/ca.pem)")

// CAError is Dial's error about the CA certificate it was given: a file that cannot be read,
// PEM without a certificate, a certificate that is not a CA.
type CAError struct {
	File string // empty for WithCA
	Err  error
}

func (e *CAError) Error() string {
	if e.File == "" {
		return "CA certificate: " + e.Err.Error()
	}
	return "CA certificate file " + e.File + ": " + e.Err.Error()
}

func (e *CAError) Unwrap() error { return e.Err }

// trust is how Dial authenticates the scheduler; the last of WithCA, WithCAFile and
// WithInsecure wins.
type trust int

const (
	trustDefault  trust = iota // $ORCH_CA_CERT
	trustCAPEM                 // WithCA
	trustCAFile                // WithCAFile
	trustInsecure              // WithInsecure
	trustCreds                 // WithTransportCredentials
)

// WithCA makes Dial verify the scheduler against the CA certificate caPEM (the cluster CA,
// which every scheduler writes to <data-dir>/ca.pem).
func WithCA(caPEM []byte) Opt {
	return func(o *options) { o.trust, o.caPEM, o.caFile = trustCAPEM, caPEM, "" }
}

// WithCAFile is WithCA with the certificate read from path when Dial runs; Dial fails with a
// *CAError naming path when the file cannot be read or holds no CA certificate.
func WithCAFile(path string) Opt {
	return func(o *options) { o.trust, o.caPEM, o.caFile = trustCAFile, nil, path }
}

// WithInsecure makes Dial use plaintext and verify nothing. It exists ONLY for unit tests
// against in-process fake servers: schedulers serve TLS only.
func WithInsecure() Opt {
	return func(o *options) { o.trust, o.caPEM, o.caFile = trustInsecure, nil, "" }
}

// WithTransportCredentials makes Dial use creds, for example mutual TLS for a node dialing
// with its own certificate.
func WithTransportCredentials(creds credentials.TransportCredentials) Opt {
	return func(o *options) { o.trust, o.creds, o.caPEM, o.caFile = trustCreds, creds, nil, "" }
}

// transport is the security Dial settled on: plaintext, TLS verified against ca, or the
// caller's credentials.
type transport struct {
	insecure bool
	ca       *x509.Certificate
	creds    credentials.TransportCredentials
}

func (o *options) transport() (transport, error) {
	switch o.trust {
	case trustInsecure:
		return transport{insecure: true}, nil
	case trustCAPEM:
		ca, err := parseCA(o.caPEM)
		if err != nil {
			return transport{}, &CAError{Err: err}
		}
		return transport{ca: ca}, nil
	case trustCAFile:
		return loadCAFile(o.caFile)
	case trustCreds:
		return transport{creds: o.creds}, nil
	}
	if f := os.Getenv(EnvCACert); f != "" {
		return loadCAFile(f)
	}
	return transport{}, ErrCARequired
}

func loadCAFile(path string) (transport, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in CAError already
		}
		return transport{}, &CAError{File: path, Err: err}
	}
	ca, err := parseCA(b)
	if err != nil {
		return transport{}, &CAError{File: path, Err: err}
	}
	return transport{ca: ca}, nil
}

func parseCA(caPEM []byte) (*x509.Certificate, error) {
	if len(caPEM) == 0 {
		return nil, errors.New("empty")
	}
	ca, err := pki.ParseCertificatePEM(caPEM)
	if err != nil {
		return nil, err
	}
	if !ca.IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA certificate (want the cluster CA, <data-dir>/ca.pem of a scheduler)", ca.Subject)
	}
	return ca, nil
}

// verifyingCreds is TLS verified against the cluster CA under pki.SchedulerServerName, the
// name every scheduler certificate carries, whatever address is dialed (gRPC already passes
// the configured server name as the authority; the wrapper makes it explicit). It records
// handshake errors for connect's message: gRPC itself only reports TRANSIENT_FAILURE.
type verifyingCreds struct {
	credentials.TransportCredentials
	serverName string
	last       *lastError
}

func newVerifyingCreds(ca *x509.Certificate, last *lastError) credentials.TransportCredentials {
	cfg := pki.ClientTLSWith(ca, nil, "")
	return &verifyingCreds{TransportCredentials: credentials.NewTLS(cfg), serverName: cfg.ServerName, last: last}
}

func (c *verifyingCreds) ClientHandshake(ctx context.Context, _ string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, c.serverName, raw)
	if err != nil {
		c.last.set(handshakeError(err))
	}
	return conn, info, err
}

func (c *verifyingCreds) Clone() credentials.TransportCredentials {
	return &verifyingCreds{TransportCredentials: c.TransportCredentials.Clone(), serverName: c.serverName, last: c.last}
}

// handshakeError says what a failed TLS handshake most likely means.
func handshakeError(err error) error {
	var unknownCA x509.UnknownAuthorityError
	var record tls.RecordHeaderError
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Errorf("TLS handshake: the scheduler's certificate is not signed by the CA certificate given (is it this cluster's CA, <data-dir>/ca.pem of a scheduler?): %w", err)
	case errors.As(err, &record):
		return fmt.Errorf("TLS handshake: the endpoint does not speak TLS (is it an orch scheduler?): %w", err)
	}
	return fmt.Errorf("TLS handshake: %w", err)
}
