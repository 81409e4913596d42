package api

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/taskdef"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/placement"
)

// Placement is a single pipeline, as Nomad's plan applier: RunTask calls queue their jobs, and
// one planner at a time takes everything queued, places it against one snapshot (each job
// accounting for the ones before it), and writes all resulting tasks in one Raft entry. Under
// load many calls share one log append and one fsync; alone, a call is planned at once.
//
// The planner does not wait for a plan's entry to be written before it plans the next batch:
// while plan k is in flight, plan k+1 counts k's reservations and addresses as taken (the plan
// cache holds them until k's outcome is in the state, plancache.go), and it waits for k only
// before planning k+2. So at most two plans are in flight, and planning overlaps the write.

// maxBatchJobs bounds how many RunTask calls share one Raft entry (10 tasks each at most), and
// maxPlanTasks the tasks of one entry (a service's launch can be a thousand), but a job is never
// split. Past about a thousand tasks an entry costs each server twice as much per task: go-memdb's
// radix trees track up to 8192 changed nodes per index and transaction, and beyond that their
// commit walks the whole tree to find them (BenchmarkPlaceAndRun: 17 µs per task at 1,024 per
// entry, 31 µs at 2,048).
const (
	maxBatchJobs = 64
	maxPlanTasks = 1024
)

type planJob struct {
	req     *orchv1.RunTaskRequest
	cluster *orchv1.Cluster
	td      *orchv1.TaskDefinition
	eff     *orchv1.TaskDefinition // td with the request's overrides
	want    placement.Request
	count   int
	done    chan planResult
}

// newPlanJob is the job placing count tasks of td in cluster for req; eff is td with the
// request's overrides applied, which decides what the tasks reserve.
func newPlanJob(req *orchv1.RunTaskRequest, cluster *orchv1.Cluster, td, eff *orchv1.TaskDefinition, count int) *planJob {
	cpu, mem := taskdef.TaskResources(eff)
	tcp, udp := reservedPorts(eff)
	return &planJob{
		req: req, cluster: cluster, td: td, eff: eff, count: count, done: make(chan planResult, 1),
		want: placement.Request{CPU: cpu, Memory: mem, TCP: tcp, UDP: udp},
	}
}

type planResult struct {
	resp *orchv1.RunTaskResponse
	err  error
}

// submit queues a job and waits for its result; the first caller to find no planner running
// starts one.
func (s *Server) submit(ctx context.Context, j *planJob) (*orchv1.RunTaskResponse, error) {
	s.planMu.Lock()
	s.queue = append(s.queue, j)
	start := !s.planning
	s.planning = true
	s.planMu.Unlock()
	if start {
		go s.planLoop()
	} else {
		select { // a planner waiting for its plan in flight plans this job now
		case s.planWake <- struct{}{}:
		default:
		}
	}
	select {
	case r := <-j.done:
		return r.resp, r.err
	case <-ctx.Done():
		// The job may still be placed: the caller learns nothing, as with any write whose
		// acknowledgement was lost.
		return nil, toStatus(ctx.Err())
	}
}

func (s *Server) planLoop() {
	var prev *flight // the plan in flight, if any
	for {
		s.planMu.Lock()
		n, tasks := 0, 0
		for n < min(len(s.queue), maxBatchJobs) && (n == 0 || tasks+s.queue[n].count <= maxPlanTasks) {
			tasks += s.queue[n].count
			n++
		}
		batch := s.queue[:n:n]
		s.queue = s.queue[n:]
		if n == 0 && prev == nil {
			s.planning = false
			s.planMu.Unlock()
			return
		}
		s.planMu.Unlock()
		if n == 0 {
			// Nothing to plan: wait for the plan in flight, or for a job to plan meanwhile.
			select {
			case <-prev.done:
				s.cache.landed(prev.plan)
				prev, s.cache.inflight = nil, nil
			case <-s.planWake:
			}
			continue
		}
		next := s.planBatch(batch)
		if prev != nil {
			<-prev.done
			s.cache.landed(prev.plan)
		}
		prev = next
		s.cache.inflight = nil
		if next != nil {
			s.cache.inflight = next.plan
		}
	}
}

// flight is a plan whose entry is being written.
type flight struct {
	plan *plannedBatch
	done chan struct{} // closed once written (or refused) and its jobs answered
}

// planBatch places a batch of jobs, starts writing the tasks, and answers each job once they
// are written; it returns the write in flight, or nil when there is nothing to write.
func (s *Server) planBatch(batch []*planJob) *flight {
	type part struct {
		job      *planJob
		resp     *orchv1.RunTaskResponse
		err      error
		from, to int // its tasks in the command
	}
	parts := make([]*part, len(batch))
	t0 := time.Now()
	r, err := s.cache.begin()
	if err != nil {
		for _, j := range batch {
			j.done <- planResult{err: toStatus(err)}
		}
		return nil
	}
	addrs := map[string]*placement.Addrs{} // per container instance
	now := timestamppb.New(s.now())
	cmd := &orchv1.PlaceTasksCommand{}
	for i, j := range batch {
		p := &part{job: j, resp: &orchv1.RunTaskResponse{}}
		parts[i] = p
		name := j.cluster.GetClusterName()
		idx, err := s.cache.index(r, name)
		if err != nil {
			p.err = toStatus(err)
			continue
		}
		if idx.Len() == 0 {
			p.err = invalid("cluster %s: no container instances were found in your cluster", name)
			continue
		}
		picks, fails := idx.Place(j.want, j.count)
		for _, n := range picks {
			s.cache.reserved(name, n, j.want)
		}
		for _, f := range fails {
			p.resp.Failures = append(p.resp.Failures, &orchv1.Failure{Arn: j.cluster.GetClusterArn(), Reason: f.Reason, Detail: f.Detail})
		}
		p.from = len(cmd.Tasks)
		for _, n := range picks {
			ci, err := r.Instance(nil, n.ID)
			if err == nil && addrs[n.ID] == nil {
				addrs[n.ID], err = s.cache.addrs(r, ci)
			}
			var t *orchv1.Task
			if err == nil {
				t, err = s.newTask(j, ci, addrs[n.ID], now)
			}
			if err != nil {
				p.err = toStatus(err)
				break
			}
			cmd.Tasks = append(cmd.Tasks, t)
		}
		if p.err != nil {
			cmd.Tasks = cmd.Tasks[:p.from]
		}
		p.to = len(cmd.Tasks)
	}
	answer := func(placed []*orchv1.Task, applyErr error) {
		for _, p := range parts {
			switch {
			case p.err != nil:
				p.job.done <- planResult{err: p.err}
			case p.to > p.from && applyErr != nil:
				p.job.done <- planResult{err: applyErr}
			default:
				for _, t := range placed[p.from:p.to] {
					p.resp.Tasks = append(p.resp.Tasks, s.taskView(t))
				}
				p.job.done <- planResult{resp: p.resp}
			}
		}
	}
	plan := s.cache.planned(cmd.Tasks)
	s.placeTime.Observe(time.Since(t0).Seconds())
	if len(cmd.Tasks) == 0 {
		s.cache.landed(plan) // picks whose tasks failed still reserved
		answer(nil, nil)
		return nil
	}
	f := &flight{plan: plan, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		t1 := time.Now()
		v, err := s.raft.Apply(ctx, fsm.CmdPlaceTasks, cmd)
		s.commitTime.Observe(time.Since(t1).Seconds())
		if err != nil {
			answer(nil, toStatus(err))
			return
		}
		answer(v.([]*orchv1.Task), nil)
	}()
	return f
}
