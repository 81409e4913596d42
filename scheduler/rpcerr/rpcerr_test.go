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
