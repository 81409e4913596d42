package rpcerr

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"orch/pkg/taskdef"
	"orch/scheduler/raftnode"
	"orch/scheduler/state"
)

func TestToStatus(t *testing.T) {
	tests := []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("cluster x: %w", state.ErrNotFound), codes.NotFound},
		{fmt.Errorf("cidr: %w", state.ErrConflict), codes.FailedPrecondition},
		{fmt.Errorf("bad: %w", state.ErrInvalid), codes.InvalidArgument},
		{&taskdef.ValidationError{Errors: []taskdef.FieldError{{Path: "family", Message: "required"}}}, codes.InvalidArgument},
		{fmt.Errorf("%w: lost", raftnode.ErrNotLeader), codes.Unavailable},
		{raft.ErrLeadershipLost, codes.Unavailable},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{status.Error(codes.AlreadyExists, "kept"), codes.AlreadyExists},
		{errors.New("boom"), codes.Internal},
	}
	for _, tt := range tests {
		if got := status.Code(ToStatus(tt.err)); got != tt.want {
			t.Errorf("ToStatus(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
	if ToStatus(nil) != nil {
		t.Error("nil must stay nil")
	}
}

// Only a request that was certainly not applied is marked safe to send again.
func TestIsNotLeader(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{ToStatus(fmt.Errorf("%w: stepped down", raftnode.ErrNotLeader)), true},
		{ToStatus(raft.ErrNotLeader), true},
		{NotLeader("no leader elected yet"), true},
		{ToStatus(raftnode.ErrLeadershipLost), false},
		{ToStatus(raft.ErrLeadershipLost), false},
		{status.Error(codes.Unavailable, "connection refused"), false},
		{status.Error(codes.Internal, "boom"), false},
		{errors.New("not a status"), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := IsNotLeader(tt.err); got != tt.want {
			t.Errorf("IsNotLeader(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
