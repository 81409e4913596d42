package api

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/protobuf/types/known/timestamppb"

	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/state"
)

// The service controller starts and stops tasks through these two methods: the same placement
// pipeline (plan.go) and stop command as RunTask and StopTask, so that service tasks and
// standalone tasks are placed against one view of the cluster and share its batched writes.

// maxJobTasks is how many tasks one planJob places, as RunTask's count limit.
const maxJobTasks = 10

// LaunchTasks places count tasks of taskDefinitionArn in cluster, with group and startedBy
// (a service's "service:<name>" and deployment id). It queues jobs of at most 10 tasks each,
// all at once, so the planner places them in as few Raft entries as it can, and merges their
// results: the tasks placed and one failure per task that fit nowhere. An error from some jobs
// is returned with the tasks the others placed. Unlike RunTask it accepts an INACTIVE task
// definition, as ECS lets a service keep scaling one that was deregistered.
func (s *Server) LaunchTasks(ctx context.Context, cluster, taskDefinitionArn string, count int, group, startedBy string) (*orchv1.RunTaskResponse, error) {
	resp := &orchv1.RunTaskResponse{}
	if count <= 0 {
		return resp, nil
	}
	r := s.store.Read()
	c, err := activeCluster(r, cluster)
	if err != nil {
		return nil, err
	}
	td, err := s.resolveTaskDefinition(r, taskDefinitionArn)
	if err != nil {
		return nil, err
	}
	n := (count + maxJobTasks - 1) / maxJobTasks
	results := make([]planResult, n)
	var wg sync.WaitGroup
	for i := range n {
		k := min(maxJobTasks, count-i*maxJobTasks)
		job := newPlanJob(&orchv1.RunTaskRequest{
			Cluster: c.GetClusterName(), TaskDefinition: td.GetTaskDefinitionArn(), Count: int32(k), Group: group, StartedBy: startedBy,
		}, c, td, td, k)
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].resp, results[i].err = s.submit(ctx, job)
		}()
	}
	wg.Wait()
	var errs []error
	for _, res := range results {
		if res.err != nil {
			errs = append(errs, res.err)
			continue
		}
		resp.Tasks = append(resp.Tasks, res.resp.GetTasks()...)
		resp.Failures = append(resp.Failures, res.resp.GetFailures()...)
	}
	if len(errs) > 0 {
		// The jobs fail alike (a cluster without instances, a lost leadership): one is enough.
		return resp, fmt.Errorf("launching %d tasks of %s in cluster %s (%d of %d batches failed): %w",
			count, td.GetTaskDefinitionArn(), cluster, len(errs), n, errs[0])
	}
	return resp, nil
}

// StopTasks asks for tasks of cluster to stop, in one Raft entry (StopTask's command). Tasks
// already stopping keep their first stop code and reason.
func (s *Server) StopTasks(ctx context.Context, cluster string, ids []string, stopCode, reason string) error {
	if len(ids) == 0 {
		return nil
	}
	r := s.store.Read()
	for _, id := range ids {
		t, err := r.Task(nil, id)
		if err != nil {
			return err
		}
		if t == nil || t.GetCluster() != cluster {
			return fmt.Errorf("stopping task %s: not in cluster %s: %w", id, cluster, state.ErrNotFound)
		}
	}
	_, err := s.raft.Apply(ctx, fsm.CmdStopTasks, &orchv1.StopTasksCommand{
		TaskIds: ids, StopCode: stopCode, Reason: reason, At: timestamppb.New(s.now()),
	})
	if err != nil {
		return fmt.Errorf("stopping %d tasks of cluster %s: %w", len(ids), cluster, err)
	}
	return nil
}
