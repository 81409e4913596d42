// Package rpcerr converts the scheduler's errors to gRPC status errors, once, at the edge
// (STYLE.md pattern 8): the sentinels of state, taskdef and raft map to codes; an error that
// already carries a status keeps it.
package rpcerr

import (
	"context"
	"errors"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"orch/pkg/taskdef"
	"orch/scheduler/raftnode"
	"orch/scheduler/state"
)

// ToStatus returns err as a gRPC status error (nil for nil).
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(Code(err), err.Error())
}

// Code is the gRPC code of err.
func Code(err error) codes.Code {
	switch {
	case errors.Is(err, state.ErrInvalid), errors.Is(err, taskdef.ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, state.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, state.ErrConflict):
		return codes.FailedPrecondition
	case errors.Is(err, raftnode.ErrNotLeader), errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
		return codes.Unavailable
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Internal
}
