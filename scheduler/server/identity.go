package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/state"
)

// Every scheduler has a certificate of the cluster CA (CN = its id, role scheduler) kept in
// <data-dir>/tls (pki.NodeFiles) and renewed by itself at about half its lifetime. Where the
// first one comes from:
//   - a new single-server cluster (--bootstrap): the server creates the CA;
//   - --bootstrap-expect N: every server is given the same CA (--ca-cert, --ca-key);
//   - --join with a manager join token: the server enrolls with the running cluster;
//   - --restore: the CA of the snapshot.
// In the first, second and fourth cases the CA key stays in <data-dir>/tls/bootstrap-ca.pem
// until the replicated state holds the cluster CA (the first leader writes it, with new join
// tokens); after that every scheduler signs with the CA of the state, which is how any of them
// enrolls and renews nodes.

// DefaultCertTTL is the lifetime of node certificates; they renew at 50-60% of it.
const DefaultCertTTL = 30 * 24 * time.Hour

// identity is this scheduler's TLS identity.
type identity struct {
	files   pki.NodeFiles
	ca      *x509.Certificate
	caPEM   []byte
	keyPEM  []byte
	renewer *pki.Renewer

	mu     sync.Mutex
	bootCA *pki.CA // signs until the state has the cluster CA; nil afterwards
	// stateCA caches the parsed CA of the state (keyed by its PEM).
	stateCA    *pki.CA
	stateCAPEM []byte
}

func (s *Server) bootCAPath() string { return filepath.Join(s.cfg.DataDir, "tls", "bootstrap-ca.pem") }

// setupIdentity loads or obtains this scheduler's certificate before anything listens.
func (s *Server) setupIdentity(ctx context.Context, restoreCA *pki.CA) error {
	id := &identity{files: pki.NodeFiles{Dir: filepath.Join(s.cfg.DataDir, "tls")}}
	s.id = id
	switch {
	case restoreCA != nil:
		id.bootCA = restoreCA
	case fileExists(s.bootCAPath()):
		b, err := os.ReadFile(s.bootCAPath())
		if err != nil {
			return fmt.Errorf("bootstrap CA: %w", err)
		}
		if id.bootCA, err = pki.UnmarshalPlain(b); err != nil {
			return fmt.Errorf("bootstrap CA %s: %w", s.bootCAPath(), err)
		}
	case (s.cfg.CACertFile != "" || s.cfg.CAKeyFile != "") && !id.files.Exists():
		// Only a server without a certificate needs them: after the cluster formed, the key
		// file may be gone.
		ca, err := loadCAFiles(s.cfg.CACertFile, s.cfg.CAKeyFile)
		if err != nil {
			return err
		}
		id.bootCA = ca
	}
	if !id.files.Exists() {
		if err := s.obtainCertificate(ctx); err != nil {
			return err
		}
	}
	if id.bootCA != nil && !fileExists(s.bootCAPath()) {
		b, err := id.bootCA.MarshalPlain()
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(s.bootCAPath()), 0o700); err != nil {
			return err
		}
		if err := pki.WriteFileAtomic(s.bootCAPath(), b, 0o600); err != nil {
			return err
		}
	}
	ca, pair, err := id.files.Identity()
	if err != nil {
		return err
	}
	if id.caPEM, _, id.keyPEM, err = id.files.Load(); err != nil {
		return err
	}
	if got, role, ok := pki.CertIdentity(pair.Leaf); !ok || role != pki.RoleScheduler || got != s.cfg.NodeID {
		return fmt.Errorf("certificate in %s is for %s %q, not scheduler %q: remove the data dir's tls folder and join again", id.files.Dir, role, got, s.cfg.NodeID)
	}
	if id.bootCA != nil && !id.bootCA.Cert.Equal(ca) {
		return fmt.Errorf("the CA given (%s) is not the CA of this server's certificate (%s)", pki.CADigest(id.bootCA.Cert), pki.CADigest(ca))
	}
	id.ca = ca
	id.renewer = pki.NewRenewer(func() (*tls.Certificate, error) { return pair, nil }, s.renewOwn, nil, pki.WithRenewLogger(s.log))
	// The CA certificate, public, for clients (orchctl --ca-cert).
	return pki.WriteFileAtomic(filepath.Join(s.cfg.DataDir, "ca.pem"), id.caPEM, 0o644)
}

// obtainCertificate gets this server its first certificate.
func (s *Server) obtainCertificate(ctx context.Context) error {
	id := s.id
	switch {
	case id.bootCA != nil:
	case s.cfg.JoinToken != "":
		return s.enrollSelf(ctx)
	case s.cfg.BootstrapExpect > 1:
		return errors.New("--bootstrap-expect needs the cluster CA on every server (--ca-cert and --ca-key; create them once with `orchctl operator ca create --out DIR`)")
	case len(s.cfg.Join) > 0:
		return errors.New("--join needs a manager join token (--join-token or ORCH_JOIN_TOKEN; `orchctl operator join-token manager` shows it)")
	case s.cfg.Bootstrap:
		ca, err := pki.NewCA("orch", time.Now())
		if err != nil {
			return err
		}
		id.bootCA = ca
		s.log.Info("created the cluster CA", "digest", pki.CADigest(ca.Cert))
	default:
		return errors.New("no certificate: bootstrap a cluster, or join one with --join and --join-token")
	}
	keyPEM, csr, err := pki.NewKeyAndCSR(s.cfg.NodeID)
	if err != nil {
		return err
	}
	cert, err := id.bootCA.Issue(csr, s.cfg.NodeID, pki.RoleScheduler, s.sans(), s.cfg.CertTTL, time.Now())
	if err != nil {
		return err
	}
	return id.files.Save(id.bootCA.CertPEM, cert, keyPEM)
}

// enrollSelf enrolls this server with a running cluster using the manager join token.
func (s *Server) enrollSelf(ctx context.Context) error {
	tok, err := pki.ParseJoinToken(s.cfg.JoinToken)
	if err != nil {
		return fmt.Errorf("--join-token: %w", err)
	}
	if tok.Kind != pki.KindManager {
		return errors.New("--join-token: a scheduler joins with a manager token (ORCH1-M-...), not a worker token")
	}
	keyPEM, csr, err := pki.NewKeyAndCSR(s.cfg.NodeID)
	if err != nil {
		return err
	}
	var errs []error
	for attempt := 0; ; attempt++ {
		for _, addr := range s.cfg.Join {
			resp, err := enroll(ctx, addr, tok, &orchv1.EnrollRequest{Token: s.cfg.JoinToken, Csr: csr, NodeId: s.cfg.NodeID, Sans: s.sans()})
			if err == nil {
				s.log.Info("enrolled with the cluster", "via", addr, "node_id", resp.GetNodeId())
				return s.id.files.Save(resp.GetCaCertificate(), resp.GetCertificate(), keyPEM)
			}
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		}
		if attempt == 30 {
			return fmt.Errorf("enrolling with the cluster: %w", errors.Join(errs...))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// enroll calls Operator.Enroll on addr, verifying the server with the token's CA digest.
func enroll(ctx context.Context, addr string, tok pki.JoinToken, req *orchv1.EnrollRequest) (*orchv1.EnrollResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.PinnedTLS(tok.CADigest))))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return orchv1.NewOperatorClient(conn).Enroll(cctx, req)
}

// sans are the addresses this server's certificate carries besides pki.SchedulerServerName.
func (s *Server) sans() []string {
	var out []string
	for _, a := range []string{s.cfg.AdvertiseGRPC, s.cfg.GRPCAddr, s.cfg.AdvertiseRaft, s.cfg.RaftAddr} {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" {
			if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
				continue
			}
			out = append(out, h)
		}
	}
	return out
}

// signingCA is the CA this server signs with: the cluster CA of the state, else the
// bootstrap CA while the cluster forms.
func (s *Server) signingCA() (*pki.CA, error) {
	id := s.id
	p, err := s.store.Read().PKI(nil)
	if err != nil {
		return nil, err
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	if p == nil {
		if id.bootCA == nil {
			return nil, errors.New("the cluster has no CA yet (it is still forming); retry")
		}
		return id.bootCA, nil
	}
	if !bytes.Equal(p.GetCa(), id.stateCAPEM) {
		ca, err := pki.UnmarshalPlain(p.GetCa())
		if err != nil {
			return nil, fmt.Errorf("cluster CA in the state: %w", err)
		}
		id.stateCA, id.stateCAPEM = ca, p.GetCa()
	}
	return id.stateCA, nil
}

// renewOwn is the Renewer's callback: schedulers sign their own renewals with the cluster CA
// they all hold, keeping their key.
func (s *Server) renewOwn(ctx context.Context) (*tls.Certificate, error) {
	ca, err := s.signingCA()
	if err != nil {
		return nil, err
	}
	csr, err := pki.CSRFromKey(s.cfg.NodeID, s.id.keyPEM)
	if err != nil {
		return nil, err
	}
	cert, err := ca.Issue(csr, s.cfg.NodeID, pki.RoleScheduler, s.sans(), s.cfg.CertTTL, time.Now())
	if err != nil {
		return nil, err
	}
	if err := s.id.files.SaveCert(cert); err != nil {
		return nil, err
	}
	return pki.KeyPair(cert, s.id.keyPEM, s.id.ca)
}

// initPKI runs on a new leader: a cluster formed from a bootstrap CA gets it into the state,
// with new join tokens; the local copy of the key is then removed.
func (s *Server) initPKI(ctx context.Context) error {
	p, err := s.store.Read().PKI(nil)
	if err != nil {
		return err
	}
	s.id.mu.Lock()
	boot := s.id.bootCA
	s.id.mu.Unlock()
	if p == nil {
		if boot == nil {
			return errors.New("the cluster has no CA and this server was given none")
		}
		caPEM, err := boot.MarshalPlain()
		if err != nil {
			return err
		}
		worker, _, err := pki.NewJoinToken(pki.KindWorker, boot.Cert)
		if err != nil {
			return err
		}
		manager, _, err := pki.NewJoinToken(pki.KindManager, boot.Cert)
		if err != nil {
			return err
		}
		if _, err := s.raft.Apply(ctx, fsm.CmdInitPKI, &orchv1.InitPKICommand{Pki: &orchv1.ClusterPKI{
			Ca: caPEM, WorkerToken: worker, ManagerToken: manager,
		}}); err != nil {
			return fmt.Errorf("storing the cluster CA: %w", err)
		}
		s.log.Info("cluster CA and join tokens stored; show them with `orchctl operator join-token worker|manager`")
	}
	return nil
}

// forgetBootCA drops the local copy of the CA key once the state holds the cluster CA.
func (s *Server) forgetBootCA(ctx context.Context) {
	for {
		ws := state.NewWatchSet()
		p, err := s.store.Read().PKI(ws)
		if err == nil && p != nil {
			s.id.mu.Lock()
			boot := s.id.bootCA
			s.id.bootCA = nil
			s.id.mu.Unlock()
			if boot != nil {
				if ca, err := pki.UnmarshalPlain(p.GetCa()); err == nil && !ca.Cert.Equal(boot.Cert) {
					s.log.Warn("the cluster's CA is not the one this server was given; using the cluster's", "given", pki.CADigest(boot.Cert), "cluster", pki.CADigest(ca.Cert))
				}
				if err := os.Remove(s.bootCAPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
					s.log.Warn("removing the bootstrap CA key", "err", err)
				}
			}
			return
		}
		if err := ws.WatchCtx(ctx); err != nil {
			return
		}
	}
}

// serverCreds are the gRPC listener's credentials: this server's certificate; client
// certificates verified if presented (clients use API tokens instead; see auth.go).
func (s *Server) serverCreds() credentials.TransportCredentials {
	return credentials.NewTLS(pki.ServerTLSWith(s.id.ca, s.id.renewer.GetCertificate))
}

// peerCreds authenticate this server to another scheduler and verify it (mutual TLS).
func (s *Server) peerCreds() credentials.TransportCredentials {
	return credentials.NewTLS(pki.ClientTLSWith(s.id.ca, s.id.renewer.GetClientCertificate, ""))
}

// nodeCreds reach the node API of agent hostID, verified by its id.
func (s *Server) nodeCreds(hostID string) credentials.TransportCredentials {
	return credentials.NewTLS(pki.NodeTLS(s.id.ca, s.id.renewer.GetClientCertificate, hostID, pki.RoleAgent))
}

// CACertificate is the cluster CA certificate (PEM), as written to <data-dir>/ca.pem.
func (s *Server) CACertificate() []byte { return s.id.caPEM }

// JoinTokens waits until the cluster has its CA and returns the worker and manager tokens.
func (s *Server) JoinTokens(ctx context.Context) (worker, manager string, err error) {
	for {
		ws := state.NewWatchSet()
		p, err := s.store.Read().PKI(ws)
		if err != nil {
			return "", "", err
		}
		if p != nil {
			return p.GetWorkerToken(), p.GetManagerToken(), nil
		}
		if err := ws.WatchCtx(ctx); err != nil {
			return "", "", fmt.Errorf("waiting for the cluster CA: %w", err)
		}
	}
}

func loadCAFiles(certFile, keyFile string) (*pki.CA, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--ca-cert and --ca-key go together")
	}
	c, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-cert: %w", err)
	}
	k, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-key: %w", err)
	}
	ca, err := pki.UnmarshalPlain(append(append(c, '\n'), k...))
	if err != nil {
		return nil, fmt.Errorf("--ca-cert %s / --ca-key %s: %w", certFile, keyFile, err)
	}
	return ca, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
