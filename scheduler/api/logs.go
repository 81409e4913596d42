package api

import (
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchv1 "orch/proto/orch/v1"
)

// GetLogs implements orchv1.OrchServer by relaying the stream of the agent that runs the task.
func (s *Server) GetLogs(req *orchv1.GetLogsRequest, stream orchv1.Orch_GetLogsServer) error {
	if req.GetTask() == "" {
		return invalid("task: required")
	}
	if req.GetTail() < 0 {
		return invalid("tail: %d must not be negative", req.GetTail())
	}
	cluster := clusterName(req.GetCluster())
	r := s.store.Read()
	t, err := findTask(r, cluster, req.GetTask())
	if err != nil {
		return toStatus(err)
	}
	if t == nil {
		return status.Errorf(codes.NotFound, "task %s: not found in cluster %s", req.GetTask(), cluster)
	}
	if c := req.GetContainer(); c != "" {
		found := false
		for _, tc := range t.GetContainers() {
			found = found || tc.GetName() == c
		}
		if !found {
			return invalid("container: task %s has no container %q", t.GetId(), c)
		}
	}
	h, err := r.Host(nil, t.GetHostId())
	if err != nil {
		return toStatus(err)
	}
	if h == nil || h.GetAddress() == "" || s.dial == nil {
		return status.Errorf(codes.Unavailable, "task %s: its host %s cannot be reached for logs", t.GetId(), t.GetHostId())
	}
	client, err := s.dial(stream.Context(), h.GetId(), h.GetAddress())
	if err != nil {
		return status.Errorf(codes.Unavailable, "host %s at %s: %v", h.GetId(), h.GetAddress(), err)
	}
	fwd := &orchv1.GetLogsRequest{Cluster: cluster, Task: t.GetId(), Container: req.GetContainer(), Follow: req.GetFollow(), Tail: req.GetTail()}
	in, err := client.GetLogs(stream.Context(), fwd)
	if err != nil {
		return err
	}
	for {
		e, err := in.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(e); err != nil {
			return err
		}
	}
}
