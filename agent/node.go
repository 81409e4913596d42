package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"orch/agent/logs"
	orchv1 "orch/proto/orch/v1"
)

// nodeService serves the agent's node API to the schedulers.
type nodeService struct {
	orchv1.UnimplementedNodeServiceServer
	a *Agent
}

// GetLogs streams a task's container logs; with several containers and follow, their entries
// interleave as they are written.
func (n *nodeService) GetLogs(req *orchv1.GetLogsRequest, stream orchv1.NodeService_GetLogsServer) error {
	n.a.mu.Lock()
	e := n.a.tasks[req.GetTask()]
	var names []string
	if e != nil {
		for _, c := range e.a.GetTaskDefinition().GetContainerDefinitions() {
			if req.GetContainer() == "" || c.GetName() == req.GetContainer() {
				names = append(names, c.GetName())
			}
		}
	}
	n.a.mu.Unlock()
	if e == nil {
		return status.Errorf(codes.NotFound, "task %s: no logs on this host (unknown, or stopped and forgotten)", req.GetTask())
	}
	ctx := stream.Context()
	var sendMu sync.Mutex
	read := func(name string) error {
		path := filepath.Join(n.a.logDir(req.GetTask()), name+".log")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && !req.GetFollow() {
			return nil
		}
		// Lines longer than 16 KiB are stored as partial entries: join them back per stream.
		partial := map[string]string{}
		return logs.Read(ctx, path, logs.ReadOptions{Tail: int(req.GetTail()), Follow: req.GetFollow()}, func(le logs.Entry) error {
			if le.Partial {
				partial[le.Stream] += le.Message
				return nil
			}
			msg := partial[le.Stream] + le.Message
			delete(partial, le.Stream)
			sendMu.Lock()
			defer sendMu.Unlock()
			return stream.Send(&orchv1.LogEntry{
				Container: name, Stream: le.Stream, TimestampUnixNano: le.Time.UnixNano(), Message: msg,
			})
		})
	}
	if !req.GetFollow() {
		for _, name := range names {
			if err := read(name); err != nil {
				return err
			}
		}
		return nil
	}
	errc := make(chan error, len(names))
	for _, name := range names {
		go func() { errc <- read(name) }()
	}
	for range names {
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return nil
}
