package cli

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"

	orchv1 "orch/proto/orch/v1"
)

// fakeOrchTags is fakeOrch with the tagging calls; unset ones answer Unimplemented.
type fakeOrchTags struct {
	*fakeOrch

	TagResourceFn         func(context.Context, *orchv1.TagResourceRequest) (*orchv1.TagResourceResponse, error)
	UntagResourceFn       func(context.Context, *orchv1.UntagResourceRequest) (*orchv1.UntagResourceResponse, error)
	ListTagsForResourceFn func(context.Context, *orchv1.ListTagsForResourceRequest) (*orchv1.ListTagsForResourceResponse, error)
}

func (f *fakeOrchTags) TagResource(ctx context.Context, r *orchv1.TagResourceRequest) (*orchv1.TagResourceResponse, error) {
	if f.TagResourceFn == nil {
		return f.UnimplementedOrchServer.TagResource(ctx, r)
	}
	return f.TagResourceFn(ctx, r)
}

func (f *fakeOrchTags) UntagResource(ctx context.Context, r *orchv1.UntagResourceRequest) (*orchv1.UntagResourceResponse, error) {
	if f.UntagResourceFn == nil {
		return f.UnimplementedOrchServer.UntagResource(ctx, r)
	}
	return f.UntagResourceFn(ctx, r)
}

func (f *fakeOrchTags) ListTagsForResource(ctx context.Context, r *orchv1.ListTagsForResourceRequest) (*orchv1.ListTagsForResourceResponse, error) {
	if f.ListTagsForResourceFn == nil {
		return f.UnimplementedOrchServer.ListTagsForResource(ctx, r)
	}
	return f.ListTagsForResourceFn(ctx, r)
}

// tagFake is fx.fake() with the tagging calls recorded and answered like the others.
func (fx *fixture) tagFake() *fakeOrchTags {
	return &fakeOrchTags{
		fakeOrch:              fx.fake(),
		TagResourceFn:         unary[*orchv1.TagResourceRequest, *orchv1.TagResourceResponse](fx, "TagResource"),
		UntagResourceFn:       unary[*orchv1.UntagResourceRequest, *orchv1.UntagResourceResponse](fx, "UntagResource"),
		ListTagsForResourceFn: unary[*orchv1.ListTagsForResourceRequest, *orchv1.ListTagsForResourceResponse](fx, "ListTagsForResource"),
	}
}

// fakeOperator is an Operator server whose methods call the XxxFn fields; unset ones answer
// Unimplemented.
type fakeOperator struct {
	orchv1.UnimplementedOperatorServer

	RaftListPeersFn   func(context.Context, *orchv1.RaftListPeersRequest) (*orchv1.RaftListPeersResponse, error)
	RaftRemovePeerFn  func(context.Context, *orchv1.RaftRemovePeerRequest) (*orchv1.RaftRemovePeerResponse, error)
	SnapshotSaveFn    func(*orchv1.SnapshotSaveRequest, grpc.ServerStreamingServer[orchv1.SnapshotChunk]) error
	SnapshotRestoreFn func(grpc.ClientStreamingServer[orchv1.SnapshotChunk, orchv1.SnapshotRestoreResponse]) error
	BootstrapTokenFn  func(context.Context, *orchv1.BootstrapTokenRequest) (*orchv1.BootstrapTokenResponse, error)
	GetJoinTokensFn   func(context.Context, *orchv1.GetJoinTokensRequest) (*orchv1.JoinTokens, error)
	RotateJoinTokenFn func(context.Context, *orchv1.RotateJoinTokenRequest) (*orchv1.JoinTokens, error)
}

func (f *fakeOperator) BootstrapToken(ctx context.Context, r *orchv1.BootstrapTokenRequest) (*orchv1.BootstrapTokenResponse, error) {
	if f.BootstrapTokenFn == nil {
		return f.UnimplementedOperatorServer.BootstrapToken(ctx, r)
	}
	return f.BootstrapTokenFn(ctx, r)
}

func (f *fakeOperator) GetJoinTokens(ctx context.Context, r *orchv1.GetJoinTokensRequest) (*orchv1.JoinTokens, error) {
	if f.GetJoinTokensFn == nil {
		return f.UnimplementedOperatorServer.GetJoinTokens(ctx, r)
	}
	return f.GetJoinTokensFn(ctx, r)
}

func (f *fakeOperator) RotateJoinToken(ctx context.Context, r *orchv1.RotateJoinTokenRequest) (*orchv1.JoinTokens, error) {
	if f.RotateJoinTokenFn == nil {
		return f.UnimplementedOperatorServer.RotateJoinToken(ctx, r)
	}
	return f.RotateJoinTokenFn(ctx, r)
}

func (f *fakeOperator) RaftListPeers(ctx context.Context, r *orchv1.RaftListPeersRequest) (*orchv1.RaftListPeersResponse, error) {
	if f.RaftListPeersFn == nil {
		return f.UnimplementedOperatorServer.RaftListPeers(ctx, r)
	}
	return f.RaftListPeersFn(ctx, r)
}

func (f *fakeOperator) RaftRemovePeer(ctx context.Context, r *orchv1.RaftRemovePeerRequest) (*orchv1.RaftRemovePeerResponse, error) {
	if f.RaftRemovePeerFn == nil {
		return f.UnimplementedOperatorServer.RaftRemovePeer(ctx, r)
	}
	return f.RaftRemovePeerFn(ctx, r)
}

func (f *fakeOperator) SnapshotSave(r *orchv1.SnapshotSaveRequest, s grpc.ServerStreamingServer[orchv1.SnapshotChunk]) error {
	if f.SnapshotSaveFn == nil {
		return f.UnimplementedOperatorServer.SnapshotSave(r, s)
	}
	return f.SnapshotSaveFn(r, s)
}

func (f *fakeOperator) SnapshotRestore(s grpc.ClientStreamingServer[orchv1.SnapshotChunk, orchv1.SnapshotRestoreResponse]) error {
	if f.SnapshotRestoreFn == nil {
		return f.UnimplementedOperatorServer.SnapshotRestore(s)
	}
	return f.SnapshotRestoreFn(s)
}

// operatorFake is a fakeOperator whose unary calls are recorded and answered by fx.
func (fx *fixture) operatorFake() *fakeOperator {
	return &fakeOperator{
		RaftListPeersFn:   unary[*orchv1.RaftListPeersRequest, *orchv1.RaftListPeersResponse](fx, "RaftListPeers"),
		RaftRemovePeerFn:  unary[*orchv1.RaftRemovePeerRequest, *orchv1.RaftRemovePeerResponse](fx, "RaftRemovePeer"),
		BootstrapTokenFn:  unary[*orchv1.BootstrapTokenRequest, *orchv1.BootstrapTokenResponse](fx, "BootstrapToken"),
		GetJoinTokensFn:   unary[*orchv1.GetJoinTokensRequest, *orchv1.JoinTokens](fx, "GetJoinTokens"),
		RotateJoinTokenFn: unary[*orchv1.RotateJoinTokenRequest, *orchv1.JoinTokens](fx, "RotateJoinToken"),
	}
}

// serveAll starts orch and op (either may be nil) on one loopback gRPC server, as a scheduler
// serves both (with TLS), and returns its address.
func serveAll(t *testing.T, orch orchv1.OrchServer, op orchv1.OperatorServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(serverCreds())
	if orch != nil {
		orchv1.RegisterOrchServer(srv, orch)
	}
	if op != nil {
		orchv1.RegisterOperatorServer(srv, op)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}
