package agent

// The agent's cluster identity. An agent proves who it is with a certificate of the cluster
// CA whose common name is its host id (role "agent"); it gets the first one by enrolling with
// a worker join token, keeps it in <data-dir>/tls (pki.NodeFiles) and renews it over mutual
// TLS before it expires. The scheduler enforces host id == certificate CN, so the host id is
// chosen by the scheduler at enrollment and never changes afterwards.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
)

const (
	tlsDirName     = "tls"
	rpcTimeout     = 15 * time.Second
	enrollMinRetry = time.Second
	enrollMaxRetry = 30 * time.Second
)

// tokenSources names where a join token can come from, for error messages.
const tokenSources = "--join-token, --join-token-file or ORCH_JOIN_TOKEN"

// Enrolled reports whether an agent with this data directory has a cluster identity already
// (<dataDir>/tls holds its CA, certificate and key), so that it needs no join token.
func Enrolled(dataDir string) bool { return nodeFiles(dataDir).Exists() }

func nodeFiles(dataDir string) pki.NodeFiles {
	return pki.NodeFiles{Dir: filepath.Join(dataDir, tlsDirName)}
}

// identity is the agent's certificate, kept fresh by a Renewer.
type identity struct {
	files     pki.NodeFiles
	ca        *x509.Certificate
	nodeID    string
	keyPEM    []byte
	endpoints []string
	renewer   *pki.Renewer
	log       *slog.Logger
}

// loadIdentity reads the node files and checks that they hold a valid agent certificate of
// their CA.
func loadIdentity(files pki.NodeFiles, endpoints []string, log *slog.Logger) (*identity, error) {
	caPEM, certPEM, keyPEM, err := files.Load()
	if err != nil {
		return nil, err
	}
	ca, err := pki.ParseCertificatePEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("node identity %s: CA: %w", files.Dir, err)
	}
	pair, err := pki.KeyPair(certPEM, keyPEM, ca)
	if err != nil {
		return nil, fmt.Errorf("node identity %s: %w", files.Dir, err)
	}
	nodeID, err := checkAgentCert(pair.Leaf, ca, "", time.Now())
	if err != nil {
		return nil, fmt.Errorf("node identity %s: %w", files.Dir, err)
	}
	id := &identity{files: files, ca: ca, nodeID: nodeID, keyPEM: keyPEM, endpoints: endpoints, log: log}
	id.renewer = pki.NewRenewer(func() (*tls.Certificate, error) { return pair, nil }, id.renew, nil, pki.WithRenewLogger(log))
	return id, nil
}

// checkAgentCert verifies that leaf is a current agent certificate of ca for client and
// server authentication, with common name wantID if given, and returns its node id.
func checkAgentCert(leaf *x509.Certificate, ca *x509.Certificate, wantID string, now time.Time) (string, error) {
	id, role, ok := pki.CertIdentity(leaf)
	switch {
	case !ok:
		return "", fmt.Errorf("certificate %q carries no orch node identity", leaf.Subject)
	case role != pki.RoleAgent:
		return "", fmt.Errorf("certificate of %s is a %s certificate, not an agent's", id, role)
	case wantID != "" && id != wantID:
		return "", fmt.Errorf("certificate is for node %s, want %s", id, wantID)
	case now.After(leaf.NotAfter):
		return "", fmt.Errorf("certificate of node %s expired at %s: it can no longer renew itself; move <data-dir>/%s away and start the agent with a new worker join token (%s) to enroll again (as a new host)",
			id, leaf.NotAfter.Format(time.RFC3339), tlsDirName, tokenSources)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: now}); err != nil {
			return "", fmt.Errorf("certificate of node %s: %w", id, err)
		}
	}
	return id, nil
}

// clientCreds is what the agent dials schedulers with: mutual TLS, the scheduler verified
// against the cluster CA and its role name, the agent presenting its current certificate.
func (id *identity) clientCreds() credentials.TransportCredentials {
	return credentials.NewTLS(pki.ClientTLSWith(id.ca, id.renewer.GetClientCertificate, ""))
}

// serverCreds is what the node API serves with: only schedulers of the cluster may call it.
func (id *identity) serverCreds() credentials.TransportCredentials {
	return credentials.NewTLS(pki.ServerTLSRequiring(id.ca, id.renewer.GetCertificate, pki.RoleScheduler))
}

// renew is the Renewer's callback: a new certificate for the same key from any scheduler,
// asked over mutual TLS with the current certificate, saved before it is used.
func (id *identity) renew(ctx context.Context) (*tls.Certificate, error) {
	csr, err := pki.CSRFromKey(id.nodeID, id.keyPEM)
	if err != nil {
		return nil, fmt.Errorf("renew certificate of node %s: %w", id.nodeID, err)
	}
	var errs []error
	for _, ep := range id.endpoints {
		pair, certPEM, err := id.renewAt(ctx, ep, csr)
		if err != nil {
			errs = append(errs, fmt.Errorf("scheduler %s: %w", ep, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if err := id.files.SaveCert(certPEM); err != nil {
			return nil, fmt.Errorf("renew certificate of node %s: %w", id.nodeID, err)
		}
		id.log.Info("renewed certificate saved", "node_id", id.nodeID, "scheduler", ep,
			"path", filepath.Join(id.files.Dir, "node.pem"), "not_after", pair.Leaf.NotAfter)
		return pair, nil
	}
	return nil, fmt.Errorf("renew certificate of node %s: %w", id.nodeID, errors.Join(errs...))
}

func (id *identity) renewAt(ctx context.Context, endpoint string, csr []byte) (*tls.Certificate, []byte, error) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(id.clientCreds()))
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	resp, err := orchv1.NewOperatorClient(conn).RenewCertificate(rctx, &orchv1.RenewCertificateRequest{Csr: csr})
	if err != nil {
		return nil, nil, err
	}
	pair, err := pki.KeyPair(resp.GetCertificate(), id.keyPEM, id.ca)
	if err != nil {
		return nil, nil, fmt.Errorf("renewed certificate: %w", err)
	}
	if _, err := checkAgentCert(pair.Leaf, id.ca, id.nodeID, time.Now()); err != nil {
		return nil, nil, fmt.Errorf("renewed certificate: %w", err)
	}
	return pair, resp.GetCertificate(), nil
}

// parseJoinToken checks the token an agent without an identity needs.
func parseJoinToken(s, dir string) (pki.JoinToken, error) {
	if s == "" {
		return pki.JoinToken{}, fmt.Errorf("this agent has not joined a cluster yet (no identity in %s): a worker join token is required on the first start (%s; `orchctl operator join-token worker` prints it)", dir, tokenSources)
	}
	tok, err := pki.ParseJoinToken(s)
	if err != nil {
		return pki.JoinToken{}, fmt.Errorf("join token (%s): %w", tokenSources, err)
	}
	if tok.Kind != pki.KindWorker {
		return pki.JoinToken{}, fmt.Errorf("join token (%s) is a manager token, which enrolls schedulers: an agent needs the worker token (`orchctl operator join-token worker`)", tokenSources)
	}
	return tok, nil
}

// enrollment is what a successful Enroll brings: files to save and the host id.
type enrollment struct {
	nodeID                 string
	caPEM, certPEM, keyPEM []byte
}

// errPermanent marks enrollment failures that retrying cannot fix.
type errPermanent struct{ err error }

func (e errPermanent) Error() string { return e.err.Error() }
func (e errPermanent) Unwrap() error { return e.err }

// enroll obtains the agent's first certificate with the join token, trying the endpoints in
// turn and retrying (the schedulers may still be starting or electing a leader) until ctx
// ends. A token the cluster refuses or a scheduler of another cluster ends it at once.
func enroll(ctx context.Context, endpoints []string, tok pki.JoinToken, hostname string, log *slog.Logger) (*enrollment, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("enroll: no scheduler endpoints")
	}
	keyPEM, csr, err := pki.NewKeyAndCSR(hostname)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	backoff := enrollMinRetry
	for {
		var errs []error
		for _, ep := range endpoints {
			e, err := enrollAt(ctx, ep, tok, csr, keyPEM)
			if err == nil {
				log.Info("enrolled", "node_id", e.nodeID, "scheduler", ep)
				return e, nil
			}
			err = fmt.Errorf("enroll with scheduler %s: %w", ep, err)
			if errors.As(err, new(errPermanent)) {
				return nil, err
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				return nil, errors.Join(errs...)
			}
		}
		log.Warn("enrollment failed; retrying", "err", errors.Join(errs...), "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil, errors.Join(append(errs, ctx.Err())...)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, enrollMaxRetry)
	}
}

func enrollAt(ctx context.Context, endpoint string, tok pki.JoinToken, csr, keyPEM []byte) (*enrollment, error) {
	cfg := pki.PinnedTLS(tok.CADigest)
	// Remember why the pin failed: gRPC reports a handshake failure as Unavailable, which
	// looks like a scheduler that is down, but a scheduler of another cluster is no reason to
	// retry.
	var pinMu sync.Mutex
	var pinErr error
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		err := verify(cs)
		if err != nil {
			pinMu.Lock()
			pinErr = err
			pinMu.Unlock()
		}
		return err
	}
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, errPermanent{err}
	}
	defer conn.Close()
	rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	resp, err := orchv1.NewOperatorClient(conn).Enroll(rctx, &orchv1.EnrollRequest{Token: tok.String(), Csr: csr})
	if err != nil {
		pinMu.Lock()
		perr := pinErr
		pinMu.Unlock()
		if perr != nil {
			return nil, errPermanent{fmt.Errorf("the scheduler is not of the cluster the join token belongs to (check --scheduler and the token): %w", perr)}
		}
		switch status.Code(err) {
		case codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.Unimplemented:
			return nil, errPermanent{fmt.Errorf("refused (is the worker join token current? `orchctl operator join-token worker` prints it): %w", err)}
		}
		return nil, err
	}
	e, err := checkEnrollment(resp, tok, keyPEM)
	if err != nil {
		return nil, errPermanent{err}
	}
	return e, nil
}

// checkEnrollment verifies an Enroll answer before anything is saved: the CA is the one the
// token pins, the certificate is an agent certificate of it for our key and the returned id.
func checkEnrollment(resp *orchv1.EnrollResponse, tok pki.JoinToken, keyPEM []byte) (*enrollment, error) {
	if resp.GetNodeId() == "" {
		return nil, errors.New("answer carries no node id")
	}
	ca, err := pki.ParseCertificatePEM(resp.GetCaCertificate())
	if err != nil {
		return nil, fmt.Errorf("answer's CA certificate: %w", err)
	}
	if !tok.PinsCA(ca) {
		return nil, errors.New("answer's CA certificate is not the one the join token pins")
	}
	pair, err := pki.KeyPair(resp.GetCertificate(), keyPEM, ca)
	if err != nil {
		return nil, fmt.Errorf("answer's certificate: %w", err)
	}
	if _, err := checkAgentCert(pair.Leaf, ca, resp.GetNodeId(), time.Now()); err != nil {
		return nil, fmt.Errorf("answer's certificate: %w", err)
	}
	return &enrollment{nodeID: resp.GetNodeId(), caPEM: resp.GetCaCertificate(), certPEM: resp.GetCertificate(), keyPEM: keyPEM}, nil
}

// prepareIdentity (New) loads the identity when the agent has enrolled before, and otherwise
// checks that it has a usable join token, so that configuration mistakes show at once.
func (a *Agent) prepareIdentity() error {
	files := nodeFiles(a.cfg.DataDir)
	if files.Exists() {
		if a.cfg.JoinToken != "" {
			a.log.Debug("agent has enrolled before; join token ignored", "dir", files.Dir)
		}
		return a.useIdentity(files, false)
	}
	tok, err := parseJoinToken(a.cfg.JoinToken, files.Dir)
	if err != nil {
		return err
	}
	a.joinToken = tok
	return nil
}

// ensureIdentity (Run) enrolls when prepareIdentity found no identity.
func (a *Agent) ensureIdentity(ctx context.Context) error {
	if a.identity() != nil {
		return nil
	}
	files := nodeFiles(a.cfg.DataDir)
	e, err := enroll(ctx, a.cfg.Endpoints, a.joinToken, a.cfg.Hostname, a.log)
	if err != nil {
		return err
	}
	// The host id first: a crash before the files are complete leaves no identity, and the
	// next start enrolls again and replaces the id.
	if err := a.db.SetHostID(e.nodeID); err != nil {
		return fmt.Errorf("enrolled as %s: save host id: %w", e.nodeID, err)
	}
	if err := files.Save(e.caPEM, e.certPEM, e.keyPEM); err != nil {
		return fmt.Errorf("enrolled as %s: %w", e.nodeID, err)
	}
	return a.useIdentity(files, true)
}

// useIdentity loads the identity, reconciles the host id with it and starts renewing.
// enrolled says the identity is new: it replaces whatever host id the checkpoint held from
// before (an agent of a plaintext cluster). Otherwise the two must agree.
func (a *Agent) useIdentity(files pki.NodeFiles, enrolled bool) error {
	id, err := loadIdentity(files, a.cfg.Endpoints, a.log)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.hostID == id.nodeID:
	case a.hostID == "" || enrolled:
		if a.hostID != "" {
			a.log.Warn("host id replaced by the enrolled identity", "old_host_id", a.hostID, "node_id", id.nodeID)
		}
		if err := a.db.SetHostID(id.nodeID); err != nil {
			return fmt.Errorf("host id %s: %w", id.nodeID, err)
		}
		a.hostID = id.nodeID
	default:
		return fmt.Errorf("the checkpoint in %s says this is host %s, but the certificate in %s is for host %s: the data directory mixes two identities (restore the matching %s directory, or move both agent.db and %s away to enroll as a new host)",
			a.cfg.DataDir, a.hostID, files.Dir, id.nodeID, tlsDirName, tlsDirName)
	}
	a.id = id
	ctx, cancel := context.WithCancel(context.Background())
	a.stopRenew = cancel
	a.renewWG.Add(1)
	go func() {
		defer a.renewWG.Done()
		id.renewer.Run(ctx)
	}()
	return nil
}

func (a *Agent) identity() *identity {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.id
}
