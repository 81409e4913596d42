package chaos

// The workload: concurrent clients calling random schedulers with short timeouts. Tag clients
// share a few keys of the chaos cluster's tags: TagResource with a value unique to each call,
// UntagResource, and ListTagsForResource both consistent (linearizable, checked) and local
// (may be stale, not checked). One task client runs tasks (count 1, each with its own
// startedBy) and sometimes stops one it ran.

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"time"

	orchv1 "orch/proto/orch/v1"
)

const (
	tagClients   = 5
	writeTimeout = 2 * time.Second
	readTimeout  = time.Second
	taskTimeout  = 5 * time.Second
	// maxLiveTasks bounds the tasks the task client keeps running.
	maxLiveTasks = 8
)

// workloadKeys are the tag keys the clients share.
var workloadKeys = []string{"k0", "k1", "k2", "k3", "k4", "k5"}

type workload struct {
	e   *env
	rec *recorder
	wg  sync.WaitGroup
}

// start runs the clients until ctx ends; each client's choices come from its own source
// seeded from seed.
func (w *workload) start(ctx context.Context, seed int64) {
	for c := 0; c < tagClients; c++ {
		rng := rand.New(rand.NewSource(seed + int64(c) + 1))
		w.wg.Add(1)
		go func() { defer w.wg.Done(); w.tagClient(ctx, c, rng) }()
	}
	rng := rand.New(rand.NewSource(seed + 100))
	w.wg.Add(1)
	go func() { defer w.wg.Done(); w.taskClient(ctx, tagClients, rng) }()
}

// wait waits for the clients to finish their last call.
func (w *workload) wait() { w.wg.Wait() }

// call runs fn against s with a timeout and records its interval in ev.
func (w *workload) call(ev *event, s *scheduler, timeout time.Duration, fn func(ctx context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ev.Server = s.id
	ev.Call = w.rec.now()
	err := fn(ctx)
	ev.Return = w.rec.now()
	ev.OK = err == nil
	if err != nil {
		ev.Err, ev.Failed = err.Error(), notApplied(err)
	}
}

func (w *workload) tagClient(ctx context.Context, id int, rng *rand.Rand) {
	arn := w.e.clusterARN
	for seq := 0; ctx.Err() == nil; seq++ {
		s := w.e.scheds[rng.Intn(len(w.e.scheds))]
		ev := event{Client: id, Key: workloadKeys[rng.Intn(len(workloadKeys))]}
		switch x := rng.Float64(); {
		case x < 0.45:
			ev.Kind, ev.Value = callTag, fmt.Sprintf("c%d-%d", id, seq)
			w.call(&ev, s, writeTimeout, func(ctx context.Context) error {
				_, err := s.orch.TagResource(ctx, &orchv1.TagResourceRequest{ResourceArn: arn,
					Tags: []*orchv1.Tag{{Key: ev.Key, Value: ev.Value}}})
				return err
			})
		case x < 0.55:
			ev.Kind = callUntag
			w.call(&ev, s, writeTimeout, func(ctx context.Context) error {
				_, err := s.orch.UntagResource(ctx, &orchv1.UntagResourceRequest{ResourceArn: arn, TagKeys: []string{ev.Key}})
				return err
			})
		default:
			consistent := x < 0.9
			ev.Kind, ev.Key = callReadLocal, ""
			if consistent {
				ev.Kind = callRead
			}
			w.call(&ev, s, readTimeout, func(ctx context.Context) error {
				resp, err := s.orch.ListTagsForResource(ctx, &orchv1.ListTagsForResourceRequest{ResourceArn: arn, Consistent: consistent})
				if err == nil {
					ev.Tags = tagMap(resp.GetTags())
				}
				return err
			})
		}
		w.rec.add(ev)
		pause := time.Duration(5+rng.Intn(20)) * time.Millisecond
		if !ev.OK {
			pause += 100 * time.Millisecond // a server that is down fails fast; do not spin
		}
		sleepCtx(ctx, pause)
	}
}

func (w *workload) taskClient(ctx context.Context, id int, rng *rand.Rand) {
	var mine []string // ids of acknowledged tasks not stopped yet
	for seq := 0; ctx.Err() == nil; seq++ {
		sleepCtx(ctx, time.Duration(1500+rng.Intn(1000))*time.Millisecond)
		if ctx.Err() != nil {
			return
		}
		s := w.e.scheds[rng.Intn(len(w.e.scheds))]
		ev := event{Client: id}
		// Stop one now and then, and always when many run: soak runs stay small.
		if len(mine) >= maxLiveTasks || len(mine) > 3 && rng.Float64() < 0.3 {
			i := rng.Intn(len(mine))
			ev.Kind, ev.TaskID = callStopTask, mine[i]
			w.call(&ev, s, taskTimeout, func(ctx context.Context) error {
				_, err := s.orch.StopTask(ctx, &orchv1.StopTaskRequest{Cluster: clusterName, Task: ev.TaskID, Reason: "chaos"})
				return err
			})
			if ev.OK {
				mine = append(mine[:i], mine[i+1:]...)
			}
			w.rec.add(ev)
			continue
		}
		ev.Kind, ev.StartedBy = callRunTask, fmt.Sprintf("chaos-%d", seq)
		w.call(&ev, s, taskTimeout, func(ctx context.Context) error {
			resp, err := s.orch.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: clusterName, TaskDefinition: familyName,
				Count: 1, StartedBy: ev.StartedBy})
			if err != nil {
				return err
			}
			if len(resp.GetTasks()) > 1 {
				return fmt.Errorf("run-task with count 1 returned %d tasks", len(resp.GetTasks()))
			}
			if len(resp.GetTasks()) == 1 {
				ev.TaskID, ev.IP = taskIDOf(resp.GetTasks()[0]), taskIP(resp.GetTasks()[0])
			} else if len(resp.GetFailures()) > 0 {
				ev.Err = fmt.Sprintf("failure %s: %s", resp.GetFailures()[0].GetReason(), resp.GetFailures()[0].GetDetail())
			}
			return nil
		})
		if ev.OK && ev.TaskID != "" {
			mine = append(mine, ev.TaskID)
		}
		w.rec.add(ev)
	}
}

func tagMap(tags []*orchv1.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[t.GetKey()] = t.GetValue()
	}
	return m
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
