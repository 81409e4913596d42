package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"orch/pkg/client"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/dispatcher"
	"orch/scheduler/rpcerr"
)

// Any scheduler answers any request: reads are served from the local state; writes (and reads
// that ask to be consistent) are forwarded to the leader, whose Raft log orders them. A
// forwarded call carries forwardedKey so that it is never forwarded twice: a server that
// receives a forwarded write but no longer leads says so (rpcerr.NotLeader).
//
// During an election (about a second; longer on a starved machine) a write is held, as
// Consul's RPC hold: the server that received it waits for a leader and hands the call to it,
// for up to holdTimeout or the call's deadline, instead of failing. Only calls that certainly
// changed nothing are sent again: refused with rpcerr.NotLeader, or not sent at all because
// there was no leader or no connection to it. A call whose outcome is unknown (the leader
// lost its leadership while committing it, or the connection broke mid-call) fails as it did.
const forwardedKey = "orch-forwarded"

// holdTimeout bounds how long a call waits for a leader; holdPoll is how often it looks.
const (
	holdTimeout = 7 * time.Second
	holdPoll    = 50 * time.Millisecond
)

// leaderMethods must run on the leader.
var leaderMethods = map[string]bool{
	orchv1.Orch_CreateCluster_FullMethodName:            true,
	orchv1.Orch_DeleteCluster_FullMethodName:            true,
	orchv1.Orch_RegisterTaskDefinition_FullMethodName:   true,
	orchv1.Orch_DeregisterTaskDefinition_FullMethodName: true,
	orchv1.Orch_RunTask_FullMethodName:                  true,
	orchv1.Orch_StopTask_FullMethodName:                 true,
	orchv1.Orch_CreateService_FullMethodName:            true,
	orchv1.Orch_UpdateService_FullMethodName:            true,
	orchv1.Orch_DeleteService_FullMethodName:            true,
	orchv1.Orch_TagResource_FullMethodName:              true,
	orchv1.Orch_UntagResource_FullMethodName:            true,
	orchv1.AgentService_Register_FullMethodName:         true,
	orchv1.Operator_RaftRemovePeer_FullMethodName:       true,
	orchv1.Operator_Join_FullMethodName:                 true,
	orchv1.Operator_BootstrapToken_FullMethodName:       true,
	orchv1.Operator_RotateJoinToken_FullMethodName:      true,
}

// consistentRequest is a read that asks to be served by the leader.
type consistentRequest interface{ GetConsistent() bool }

func (s *Server) forwardUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	write := leaderMethods[info.FullMethod]
	// A read asks for consistency with the request field (ListTagsForResource, checked by the
	// handler) or, for any read, with the client.ConsistentHeader metadata (checked here).
	header := !write && len(md.Get(client.ConsistentHeader)) > 0
	need := write || header || tokenUnknown(ctx)
	if c, ok := req.(consistentRequest); ok && c.GetConsistent() {
		need = true
	}
	if !need {
		return handler(ctx, req)
	}
	forwarded := len(md.Get(forwardedKey)) > 0
	hold := time.Now().Add(holdTimeout)
	for {
		resp, err := s.leaderCall(ctx, req, info, handler, header, forwarded)
		if forwarded || !rpcerr.IsNotLeader(err) || time.Now().After(hold) {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(holdPoll):
		}
	}
}

// leaderCall serves the call as the leader, or hands it to the leader; a forwarded call is
// only served. rpcerr.NotLeader means nothing was done.
func (s *Server) leaderCall(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler, header, forwarded bool) (any, error) {
	if s.raft.IsLeader() {
		if header {
			if err := s.consistentRead(ctx); err != nil {
				return nil, toStatus(err)
			}
		}
		return handler(ctx, req)
	}
	if forwarded {
		return nil, rpcerr.NotLeader(fmt.Sprintf("scheduler %s is not the leader (forwarded call)", s.cfg.NodeID))
	}
	conn, err := s.leaderConn()
	if err != nil {
		return nil, err
	}
	if !ready(ctx, conn) {
		// The leader we know is not reachable (it may be gone): nothing was sent.
		return nil, rpcerr.NotLeader(fmt.Sprintf("the leader is not reachable (%s)", conn.GetState()))
	}
	resp, err := newResponse(info.FullMethod)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := conn.Invoke(s.forwardCtx(ctx), info.FullMethod, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// ready connects conn if it is idle and reports whether it is connected, waiting up to a
// second for a connection attempt in progress: a call is only sent over a connection that is
// up, so that a failure to reach a leader that is gone is known to have sent nothing.
func ready(ctx context.Context, conn *grpc.ClientConn) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for {
		st := conn.GetState()
		switch st {
		case connectivity.Ready:
			return true
		case connectivity.TransientFailure, connectivity.Shutdown:
			return false
		case connectivity.Idle:
			conn.Connect()
		}
		if !conn.WaitForStateChange(ctx, st) {
			return false
		}
	}
}

// forwardCtx is the outgoing context of a call forwarded to the leader: marked as forwarded,
// with the caller's credentials and consistency request.
func (s *Server) forwardCtx(ctx context.Context) context.Context {
	octx := metadata.AppendToOutgoingContext(ctx, forwardedKey, s.cfg.NodeID)
	if host, ok := dispatcher.HostID(ctx); ok {
		octx = metadata.AppendToOutgoingContext(octx, forwardedHostKey, host)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, k := range []string{"authorization", client.ConsistentHeader} {
		for _, v := range md.Get(k) {
			octx = metadata.AppendToOutgoingContext(octx, k, v)
		}
	}
	return octx
}

// newResponse makes an empty response message of a method, from the registered descriptors.
func newResponse(fullMethod string) (proto.Message, error) {
	parts := strings.Split(strings.TrimPrefix(fullMethod, "/"), "/")
	if len(parts) != 2 {
		return nil, fmt.Errorf("method %q", fullMethod)
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(parts[0]))
	if err != nil {
		return nil, fmt.Errorf("service of %s: %w", fullMethod, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service", parts[0])
	}
	md := sd.Methods().ByName(protoreflect.Name(parts[1]))
	if md == nil {
		return nil, fmt.Errorf("no method %s", fullMethod)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, err
	}
	return mt.New().Interface(), nil
}

// leaderAddr returns the leader's API address, from the servers table.
func (s *Server) leaderAddr() (string, error) {
	_, id := s.raft.Raft().LeaderWithID()
	if id == "" {
		return "", rpcerr.NotLeader("no leader elected yet; retry")
	}
	srv, err := s.store.Read().Server(nil, string(id))
	if err != nil || srv == nil || srv.GetGrpcAddress() == "" {
		return "", rpcerr.NotLeader(fmt.Sprintf("leader %s has not published its API address yet; retry", id))
	}
	return srv.GetGrpcAddress(), nil
}

func (s *Server) leaderConn() (*grpc.ClientConn, error) {
	addr, err := s.leaderAddr()
	if err != nil {
		return nil, err
	}
	return s.conn(addr)
}

// conn returns a cached client connection to another scheduler.
func (s *Server) conn(addr string) (*grpc.ClientConn, error) {
	return s.cachedConn(addr, addr, s.peerCreds)
}

// cachedConn returns the connection kept under key, dialing addr with creds the first time.
func (s *Server) cachedConn(key, addr string, creds func() credentials.TransportCredentials) (*grpc.ClientConn, error) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if c, ok := s.conns[key]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds()))
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "dial %s: %v", addr, err)
	}
	s.conns[key] = c
	return c, nil
}
