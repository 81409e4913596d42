package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"orch/pkg/client"
	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
)

// waitTasks follows tasks on the WatchTasks stream until each one has reached target, or, when
// target is RUNNING, has stopped instead. Each status change prints a progress line to stderr
// ("0f3c1e5a RUNNING 10.64.0.5"). It returns the tasks' last known states in the order given
// (never nil, even with an error) and an error if a task did not reach target: exit 1 with the
// stop details, 254 if the stream failed, 130 if interrupted.
func (a *app) waitTasks(cmd *cobra.Command, c *client.Client, cluster string, tasks []*orchv1.Task, target string) ([]*orchv1.Task, error) {
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	stderr := cmd.ErrOrStderr()

	ids := make([]string, len(tasks))
	latest := make(map[string]*orchv1.Task, len(tasks))
	printed := make(map[string]string, len(tasks))
	for i, t := range tasks {
		ids[i] = taskID(t)
		latest[ids[i]] = t
	}
	final := func() []*orchv1.Task {
		out := make([]*orchv1.Task, len(ids))
		for i, id := range ids {
			out[i] = latest[id]
		}
		return out
	}

	follow := func(ids []string, until string) error {
		stream, err := c.WatchTasks(ctx, &orchv1.WatchTasksRequest{Cluster: cluster, Tasks: ids, UntilStatus: until})
		if err != nil {
			return apiError(cmd.Context(), "WatchTasks", err)
		}
		for !settled(final(), target) {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil // the server ends the stream once every task reached until
			}
			if err != nil {
				return apiError(cmd.Context(), "WatchTasks", err)
			}
			for _, t := range msg.Tasks {
				id := taskID(t)
				if _, ok := latest[id]; !ok {
					continue // not one of ours
				}
				latest[id] = t
				if t.LastStatus != printed[id] {
					printed[id] = t.LastStatus
					line := shortID(id) + " " + t.LastStatus
					if ip := taskIP(t); ip != "" && t.LastStatus == lifecycle.Running {
						line += " " + ip
					}
					fmt.Fprintln(stderr, line)
				}
			}
		}
		return nil
	}

	if !settled(final(), target) {
		if err := follow(ids, target); err != nil {
			return final(), err
		}
	}
	// A task past target but not yet STOPPED (DEACTIVATING, STOPPING, ...) ends a watch
	// "until RUNNING" yet has not said why it stops: follow those until STOPPED.
	var stopping []string
	for _, id := range ids {
		if st := latest[id].LastStatus; st != lifecycle.Stopped && lifecycle.Rank(st) > lifecycle.Rank(target) {
			stopping = append(stopping, id)
		}
	}
	if len(stopping) > 0 {
		if err := follow(stopping, lifecycle.Stopped); err != nil {
			return final(), err
		}
	}
	return final(), checkReached(final(), target)
}

// settled reports whether waiting can end: every task is at target, or stopped.
func settled(tasks []*orchv1.Task, target string) bool {
	for _, t := range tasks {
		if t.LastStatus != target && t.LastStatus != lifecycle.Stopped {
			return false
		}
	}
	return true
}

// checkReached returns an exit-1 error describing each task that is not at target.
func checkReached(tasks []*orchv1.Task, target string) error {
	var msgs []string
	for _, t := range tasks {
		switch {
		case t.LastStatus == target:
		case t.LastStatus == lifecycle.Stopped:
			msgs = append(msgs, stoppedDetail(t))
		default:
			msgs = append(msgs, fmt.Sprintf("Task %s is %s, not %s: the watch ended early.", taskID(t), t.LastStatus, target))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return taskFailed(strings.Join(msgs, "\n"))
}
