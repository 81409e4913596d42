package server

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/dispatcher"
	"orch/scheduler/fsm"
)

// Who may call what. Every connection is TLS; nodes present certificates of the cluster CA
// (identity.go), clients API tokens, as Nomad's ACLs:
//   - the client API and the operator API: an API token ("authorization: Bearer <secret>")
//     whose hash is in the replicated state; the first comes from `orchctl operator
//     bootstrap-token`, once;
//   - BootstrapToken (works once) and Enroll (the join token is the credential): anybody;
//   - RenewCertificate: any node certificate; the new one has the same identity;
//   - ServerInfo and Join: a scheduler certificate;
//   - the agent API: an agent certificate, and the agent acts as the host its certificate
//     names (dispatcher.WithHostID); a follower forwarding an agent's call passes that
//     identity on in forwardedHostKey, which is believed from schedulers only.

// forwardedHostKey carries an agent's host id on a call a follower forwards to the leader.
const forwardedHostKey = "orch-host-id"

var openMethods = map[string]bool{
	orchv1.Operator_Enroll_FullMethodName:         true,
	orchv1.Operator_BootstrapToken_FullMethodName: true,
}

var schedulerMethods = map[string]bool{
	orchv1.Operator_ServerInfo_FullMethodName: true,
	orchv1.Operator_Join_FullMethodName:       true,
}

// caller is the node on the other end of a mutual TLS connection.
type caller struct{ id, role string }

type callerKey struct{}

func callerFrom(ctx context.Context) (caller, bool) {
	c, ok := ctx.Value(callerKey{}).(caller)
	return c, ok
}

// authenticate checks the caller's credentials for method and returns the context handlers
// see (with the caller's identity).
func (s *Server) authenticate(ctx context.Context, method string) (context.Context, error) {
	var who caller
	var node bool
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			who.id, who.role, node = pki.PeerIdentity(ti.State)
		}
	}
	if node {
		ctx = context.WithValue(ctx, callerKey{}, who)
	}
	switch {
	case openMethods[method]:
		return ctx, nil
	case method == orchv1.Operator_RenewCertificate_FullMethodName:
		if !node {
			return nil, status.Error(codes.Unauthenticated, "renewing a certificate needs the current one (mutual TLS)")
		}
		return ctx, nil
	case schedulerMethods[method]:
		if !node || who.role != pki.RoleScheduler {
			return nil, status.Errorf(codes.PermissionDenied, "%s is for schedulers of this cluster (a scheduler certificate is required)", method)
		}
		return ctx, nil
	case strings.HasPrefix(method, "/"+orchv1.AgentService_ServiceDesc.ServiceName+"/"):
		md, _ := metadata.FromIncomingContext(ctx)
		switch fwd := md.Get(forwardedHostKey); {
		case node && who.role == pki.RoleAgent:
			return dispatcher.WithHostID(ctx, who.id), nil
		case node && who.role == pki.RoleScheduler && len(fwd) == 1:
			return dispatcher.WithHostID(ctx, fwd[0]), nil
		}
		return nil, status.Error(codes.PermissionDenied, "the agent API needs an agent certificate (start orch-agent with a worker join token)")
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var secret string
	for _, v := range md.Get("authorization") {
		if t, ok := strings.CutPrefix(v, "Bearer "); ok {
			secret = strings.TrimSpace(t)
		}
	}
	if secret == "" {
		return nil, status.Error(codes.Unauthenticated, "an API token is required (orchctl --token, ORCH_TOKEN or `orchctl configure --token`; the first comes from `orchctl operator bootstrap-token`)")
	}
	tok, err := s.store.Read().TokenBySecretHash(pki.HashToken(secret))
	if err == nil && tok != nil {
		return ctx, nil
	}
	// Only the leader's state is sure to hold every token: a follower may lag (it has just
	// restarted, or a token was created a moment ago). It lets the leader decide (forward.go);
	// a call already forwarded is answered here, by the leader.
	md, _ = metadata.FromIncomingContext(ctx)
	if !s.raft.IsLeader() && len(md.Get(forwardedKey)) == 0 {
		return context.WithValue(ctx, tokenUnknownKey{}, true), nil
	}
	return nil, status.Error(codes.PermissionDenied, "the API token is not valid")
}

// tokenUnknownKey marks a call whose API token this follower does not know: only the leader
// may serve it (or refuse it).
type tokenUnknownKey struct{}

func tokenUnknown(ctx context.Context) bool {
	v, _ := ctx.Value(tokenUnknownKey{}).(bool)
	return v
}

func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := s.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := s.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	if tokenUnknown(ctx) { // streams are not forwarded
		return status.Errorf(codes.Unavailable, "scheduler %s does not know this API token (it may still be catching up with the cluster); retry, or ask the leader", s.cfg.NodeID)
	}
	return handler(srv, &streamWithContext{ServerStream: ss, ctx: ctx})
}

// streamWithContext is a server stream whose handler sees ctx.
type streamWithContext struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *streamWithContext) Context() context.Context { return s.ctx }

// BootstrapToken implements orchv1.OperatorServer: the first management token, once.
func (o *operator) BootstrapToken(ctx context.Context, _ *orchv1.BootstrapTokenRequest) (*orchv1.BootstrapTokenResponse, error) {
	secret, hash, err := pki.NewAPIToken()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	accessor, _, err := pki.NewAPIToken()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	accessor = strings.TrimPrefix(accessor, "orch_")[:24]
	tok := &orchv1.APIToken{
		AccessorId: accessor, Name: "bootstrap", SecretHash: hash, Type: "management", CreatedAt: timestamppb.New(time.Now()),
	}
	if _, err := o.s.raft.Apply(ctx, fsm.CmdBootstrapToken, &orchv1.BootstrapTokenCommand{Token: tok}); err != nil {
		return nil, toStatus(err)
	}
	o.s.log.Warn("API token bootstrap done", "accessor", accessor)
	return &orchv1.BootstrapTokenResponse{AccessorId: accessor, SecretId: secret}, nil
}
