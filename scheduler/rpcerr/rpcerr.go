// Package rpcerr converts the scheduler's errors to gRPC status errors, once, at the edge
// (STYLE.md pattern 8): the sentinels of state, taskdef and raft map to codes; an error that
// already carries a status keeps it.
package rpcerr

import (
	"context"
	"errors"

	"github.com/hashicorp/raft"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
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
	if errors.Is(err, raftnode.ErrNotLeader) || errors.Is(err, raft.ErrNotLeader) {
		return NotLeader(err.Error())
	}
	return status.Error(Code(err), err.Error())
}

// notLeaderReason marks an Unavailable status whose request changed nothing because the
// scheduler was not (or no longer) the leader: it is safe to send again, to the new leader.
// Other Unavailable errors (a connection lost mid-call, leadership lost while committing) may
// have been applied.
const notLeaderReason = "NOT_LEADER"

// NotLeader is the Unavailable status of a request that was not applied because this scheduler
// does not lead (see IsNotLeader).
func NotLeader(msg string) error {
	st, err := status.New(codes.Unavailable, msg).WithDetails(&errdetails.ErrorInfo{Reason: notLeaderReason, Domain: "orch"})
	if err != nil {
		return status.Error(codes.Unavailable, msg)
	}
	return st.Err()
}

// IsNotLeader reports whether err is a NotLeader status, from this server or relayed from
// another: the request was not applied and may be sent again.
func IsNotLeader(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == notLeaderReason && info.GetDomain() == "orch" {
			return true
		}
	}
	return false
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
	case errors.Is(err, raftnode.ErrNotLeader), errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raftnode.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipLost):
		return codes.Unavailable
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Internal
}
