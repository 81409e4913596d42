package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
)

// schedulerIDPattern is what a scheduler may call itself (its certificate's common name).
var schedulerIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Enroll implements orchv1.OperatorServer: a join token and a CSR buy a certificate. Any
// scheduler answers: every one holds the cluster CA.
func (o *operator) Enroll(ctx context.Context, req *orchv1.EnrollRequest) (*orchv1.EnrollResponse, error) {
	tok, err := pki.ParseJoinToken(req.GetToken())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "token: %v", err)
	}
	p, err := o.s.store.Read().PKI(nil)
	if err != nil {
		return nil, toStatus(err)
	}
	if p == nil {
		return nil, status.Error(codes.Unavailable, "the cluster has no CA yet (it is still forming); retry")
	}
	ca, err := o.s.signingCA()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	want := p.GetWorkerToken()
	if tok.Kind == pki.KindManager {
		want = p.GetManagerToken()
	}
	cur, err := pki.ParseJoinToken(want)
	if err != nil || !tok.PinsCA(ca.Cert) || !tok.Matches(cur.SecretHash()) {
		o.s.log.Warn("enrollment refused: join token not valid", "kind", kindName(tok.Kind))
		return nil, status.Errorf(codes.PermissionDenied, "the %s join token is not valid for this cluster (rotated? `orchctl operator join-token %s` shows the current one)", kindName(tok.Kind), kindName(tok.Kind))
	}
	var nodeID, role string
	var sans []string
	switch tok.Kind {
	case pki.KindManager:
		nodeID, role, sans = req.GetNodeId(), pki.RoleScheduler, req.GetSans()
		if !schedulerIDPattern.MatchString(nodeID) {
			return nil, status.Errorf(codes.InvalidArgument, "nodeId %q: a scheduler id is 1-128 letters, digits, '.', '_' or '-'", nodeID)
		}
	default:
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		nodeID, role = hex.EncodeToString(b[:]), pki.RoleAgent
	}
	cert, err := ca.Issue(req.GetCsr(), nodeID, role, sans, o.s.cfg.CertTTL, time.Now())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	o.s.log.Info("node enrolled", "node_id", nodeID, "role", role)
	return &orchv1.EnrollResponse{NodeId: nodeID, Role: role, Certificate: cert, CaCertificate: ca.CertPEM}, nil
}

// RenewCertificate implements orchv1.OperatorServer: a new certificate for the key in the CSR,
// with the identity of the certificate presented on this connection (auth.go checked it).
func (o *operator) RenewCertificate(ctx context.Context, req *orchv1.RenewCertificateRequest) (*orchv1.EnrollResponse, error) {
	who, ok := callerFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "renewing a certificate needs the current one (mutual TLS)")
	}
	ca, err := o.s.signingCA()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	var sans []string
	if who.role == pki.RoleScheduler {
		sans = req.GetSans()
	}
	cert, err := ca.Issue(req.GetCsr(), who.id, who.role, sans, o.s.cfg.CertTTL, time.Now())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	o.s.log.Debug("certificate renewed", "node_id", who.id, "role", who.role)
	return &orchv1.EnrollResponse{NodeId: who.id, Role: who.role, Certificate: cert, CaCertificate: ca.CertPEM}, nil
}

// GetJoinTokens implements orchv1.OperatorServer.
func (o *operator) GetJoinTokens(ctx context.Context, _ *orchv1.GetJoinTokensRequest) (*orchv1.JoinTokens, error) {
	p, err := o.s.store.Read().PKI(nil)
	if err != nil {
		return nil, toStatus(err)
	}
	if p == nil {
		return nil, status.Error(codes.Unavailable, "the cluster has no CA yet (it is still forming); retry")
	}
	return o.joinTokens(p), nil
}

func (o *operator) joinTokens(p *orchv1.ClusterPKI) *orchv1.JoinTokens {
	out := &orchv1.JoinTokens{Worker: p.GetWorkerToken(), Manager: p.GetManagerToken()}
	if t, err := pki.ParseJoinToken(p.GetWorkerToken()); err == nil {
		out.CaDigest = t.CADigest
	}
	return out
}

// RotateJoinToken implements orchv1.OperatorServer (on the leader).
func (o *operator) RotateJoinToken(ctx context.Context, req *orchv1.RotateJoinTokenRequest) (*orchv1.JoinTokens, error) {
	var kinds []pki.TokenKind
	switch req.GetKind() {
	case "":
		kinds = []pki.TokenKind{pki.KindWorker, pki.KindManager}
	case "worker":
		kinds = []pki.TokenKind{pki.KindWorker}
	case "manager":
		kinds = []pki.TokenKind{pki.KindManager}
	default:
		return nil, status.Errorf(codes.InvalidArgument, "kind %q: want worker, manager or empty for both", req.GetKind())
	}
	ca, err := o.s.signingCA()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	cmd := &orchv1.RotateJoinTokenCommand{}
	for _, k := range kinds {
		t, _, err := pki.NewJoinToken(k, ca.Cert)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if k == pki.KindWorker {
			cmd.WorkerToken = t
		} else {
			cmd.ManagerToken = t
		}
	}
	v, err := o.s.raft.Apply(ctx, fsm.CmdRotateJoinToken, cmd)
	if err != nil {
		return nil, toStatus(err)
	}
	o.s.log.Warn("join tokens rotated", "kind", req.GetKind())
	return o.joinTokens(v.(*orchv1.ClusterPKI)), nil
}

func kindName(k pki.TokenKind) string {
	if k == pki.KindManager {
		return "manager"
	}
	return "worker"
}
