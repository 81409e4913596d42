// Package controllers holds the scheduler's leader-only loops. Each reads the state store,
// decides, and writes only through Raft commands, so that a new leader picks up where the old
// one stopped; each is started when its server gains leadership and stopped when it loses it.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/state"
)

// Applier replicates a command (raftnode.Node).
type Applier interface {
	Apply(ctx context.Context, t fsm.CommandType, m proto.Message) (any, error)
}

// Liveness defaults.
const (
	DefaultGrace     = 10 * time.Second
	DefaultLostAfter = 60 * time.Second
	DefaultInterval  = time.Second
)

// LivenessConfig tunes the node liveness controller; zero values take the defaults.
type LivenessConfig struct {
	// Grace is how long a host may stay silent (no heartbeat nor any other session message)
	// before it is marked disconnected (agentConnected false); default 10s. Agents heartbeat
	// every 5s, so it must be longer than that, or a live host is disconnected between beats.
	Grace time.Duration
	// LostAfter is how long a host may stay disconnected before its tasks are marked lost
	// (STOPPED, stopCode HostLost); default 60s.
	LostAfter time.Duration
	// Interval is how often hosts are checked; default 1s.
	Interval time.Duration
	Logger   *slog.Logger
	// Registerer receives the controller's metrics; nil for none.
	Registerer prometheus.Registerer
}

// Liveness is the node liveness controller. Signs of life are not replicated (a heartbeat is
// not worth a Raft entry): they arrive on the leader's dispatcher, which remembers when each
// host last spoke (LastSeen). From those, per host:
//
//   - recorded connected, silent for longer than Grace: mark it disconnected, so that
//     placement skips it;
//   - recorded disconnected while it speaks again on a session (a stall that outlasted the
//     grace without breaking the stream): mark it connected;
//   - recorded disconnected and silent for longer than Grace+LostAfter: mark its tasks lost.
//
// Silence is counted from the later of the last sign of life and the moment this server
// became leader: a new leader has heard from no one yet, and every agent needs time to find it
// and reconnect, so every host gets a fresh grace period (and a fresh lost timeout) on each
// election. That errs on the side of waiting, never of losing a live host's tasks.
//
// A lost task's address stays held until the host confirms the task stopped (see
// fsm.applyTasksLost): when the host comes back, its agent gets a full desired set without the
// lost tasks, stops them, and reports them STOPPED.
type Liveness struct {
	store    *state.Store
	raft     Applier
	lastSeen func(host string) (time.Time, bool)
	now      func() time.Time
	cfg      LivenessConfig
	log      *slog.Logger

	disconnected prometheus.Counter
	lost         prometheus.Counter
}

// NewLiveness returns the controller. lastSeen is the dispatcher's (Dispatcher.LastSeen); now is
// the clock (time.Now).
func NewLiveness(store *state.Store, raft Applier, lastSeen func(host string) (time.Time, bool), now func() time.Time, cfg LivenessConfig) *Liveness {
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.LostAfter <= 0 {
		cfg.LostAfter = DefaultLostAfter
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	c := &Liveness{
		store: store, raft: raft, lastSeen: lastSeen, now: now, cfg: cfg, log: cfg.Logger,
		disconnected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orch_liveness_hosts_disconnected_total", Help: "Hosts marked disconnected after missing their heartbeats.",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orch_liveness_tasks_lost_total", Help: "Tasks marked STOPPED because their host was lost.",
		}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.disconnected, c.lost)
	}
	return c
}

// Run checks every host each Interval until ctx ends (the end of this server's leadership).
func (c *Liveness) Run(ctx context.Context) {
	leaderSince := c.now()
	c.log.Info("node liveness controller started", "grace", c.cfg.Grace, "lost_after", c.cfg.LostAfter)
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.check(ctx, leaderSince); err != nil && ctx.Err() == nil {
			c.log.Warn("node liveness", "err", err)
		}
	}
}

// check makes one pass over the hosts; leaderSince is when this server became leader.
func (c *Liveness) check(ctx context.Context, leaderSince time.Time) error {
	r := c.store.Read()
	hosts, err := r.Hosts(nil)
	if err != nil {
		return err
	}
	now := c.now()
	var errs []error
	for _, h := range hosts {
		if err := c.checkHost(ctx, r, h, leaderSince, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Liveness) checkHost(ctx context.Context, r *state.ReadTxn, h *orchv1.Host, leaderSince, now time.Time) error {
	id := h.GetId()
	seen, heard := c.lastSeen(id)
	alive := leaderSince // this leader cannot know of anything earlier
	if heard && seen.After(alive) {
		alive = seen
	}
	silent := now.Sub(alive)
	connected := h.GetConnected()
	switch {
	case connected && silent > c.cfg.Grace:
		// At is the last sign of life: Host.lastSeenAt stays what it says.
		if err := c.setConnected(ctx, id, false, alive); err != nil {
			return err
		}
		c.disconnected.Inc()
		c.log.Warn("host missed its heartbeats; marked disconnected", "host_id", id, "hostname", h.GetHostname(), "silent", silent.Round(time.Millisecond))
		connected = false
	case !connected && heard && silent <= c.cfg.Grace && seen.After(h.GetLastSeenAt().AsTime()):
		// Spoken since it was recorded disconnected: its session outlived a stall (or opened
		// while the disconnection was being recorded). A session that ended is recorded
		// disconnected at its end, after its last message, so it does not come here.
		if err := c.setConnected(ctx, id, true, seen); err != nil {
			return err
		}
		c.log.Info("host heartbeats again; marked connected", "host_id", id, "hostname", h.GetHostname())
		return nil
	}
	if connected || silent <= c.cfg.Grace+c.cfg.LostAfter {
		return nil
	}
	tasks, err := r.TasksByHost(id)
	if err != nil {
		return err
	}
	cmd := &orchv1.TasksLostCommand{HostId: id, Reason: lostReason(h, alive, heard && seen.Equal(alive)), At: timestamppb.New(now)}
	for _, t := range tasks {
		if t.GetLastStatus() != lifecycle.Stopped {
			cmd.TaskIds = append(cmd.TaskIds, t.GetId())
		}
	}
	if len(cmd.TaskIds) == 0 {
		return nil
	}
	v, err := c.raft.Apply(ctx, fsm.CmdTasksLost, cmd)
	if err != nil {
		return fmt.Errorf("host %s: marking %d tasks lost: %w", id, len(cmd.TaskIds), err)
	}
	n := len(v.([]*orchv1.Task))
	c.lost.Add(float64(n))
	c.log.Warn("host lost; its tasks are marked STOPPED", "host_id", id, "hostname", h.GetHostname(), "tasks", n, "silent", silent.Round(time.Millisecond))
	return nil
}

func (c *Liveness) setConnected(ctx context.Context, host string, connected bool, at time.Time) error {
	if _, err := c.raft.Apply(ctx, fsm.CmdHostConnection, &orchv1.HostConnectionCommand{
		HostId: host, Connected: connected, At: timestamppb.New(at),
	}); err != nil {
		return fmt.Errorf("host %s: recording connected=%t: %w", host, connected, err)
	}
	return nil
}

// lostReason is the stoppedReason of a lost host's tasks. heard says whether since is the
// host's last message to this leader, or the moment this server became leader (the host has
// not spoken to it at all).
func lostReason(h *orchv1.Host, since time.Time, heard bool) string {
	name := h.GetId()
	if hn := h.GetHostname(); hn != "" && hn != name {
		name = fmt.Sprintf("%s (%s)", hn, h.GetId())
	}
	ts := since.UTC().Format(time.RFC3339)
	if !heard {
		ts += " (when this scheduler became the leader)"
	}
	return fmt.Sprintf("Host %s was lost: no heartbeat since %s", name, ts)
}
