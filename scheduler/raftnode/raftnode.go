// Package raftnode wires hashicorp/raft for the scheduler: BoltDB log and stable store
// (raft-boltdb/v2, fsync on every append, so an acknowledged write survives kill -9), file
// snapshots, a transport over mutual TLS (TLSStreamLayer), bootstrap of a new cluster, and
// Apply of typed commands.
package raftnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/protobuf/proto"

	"orch/scheduler/fsm"
)

// ErrNotLeader is returned by Apply on a server that is not the leader: the command was not
// written, and another leader may take it.
var ErrNotLeader = errors.New("not the leader")

// ErrLeadershipLost is returned by Apply when this server lost the leadership after it wrote
// the command but before the command was committed: a new leader may or may not commit it, so
// it must not be sent again blindly.
var ErrLeadershipLost = errors.New("leadership lost while the write was being committed: it may or may not have been applied")

// Config configures one Raft voter.
type Config struct {
	ID        string // server id, stable across restarts
	DataDir   string
	BindAddr  string // raft transport, host:port
	Advertise string // address other servers reach this one at; default BindAddr
	// Bootstrap forms a new single-voter cluster when DataDir holds no Raft state.
	Bootstrap bool
	Logger    *slog.Logger
	// ApplyTimeout bounds how long Apply waits to enqueue a command; default 10s.
	ApplyTimeout time.Duration
	// ServerTLS and ClientTLS secure the Raft transport (required; see NewTLSStreamLayer):
	// only schedulers of the cluster CA talk Raft.
	ServerTLS, ClientTLS *tls.Config
}

// Node is a running Raft server.
type Node struct {
	hasState  bool // the data dir held Raft state at start
	raft      *raft.Raft
	fsm       *fsm.FSM
	transport *raft.NetworkTransport
	store     *raftboltdb.BoltStore
	cfg       Config
}

// logCacheSize is how many of the latest log entries the leader keeps in memory to replicate:
// a follower that keeps up asks only for those. Small, since an entry can hold a thousand
// tasks (up to ~1 MB, scheduler/api maxPlanTasks); one raft replicates at most 64 per call.
const logCacheSize = 64

// New starts the Raft server for fsm.
func New(cfg Config, f *fsm.FSM) (*Node, error) {
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if cfg.Advertise == "" {
		cfg.Advertise = cfg.BindAddr
	}
	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("raft dir %s: %w", dir, err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("raft store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclogger("raft-snapshots"))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raft snapshots: %w", err)
	}
	adv, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raft advertise address %q: %w", cfg.Advertise, err)
	}
	// Pipelined replication is off (MaxRPCsInFlight 1): its response reader can deadlock with
	// the replication loop (hashicorp/raft#612), which hung graceful shutdowns in the chaos
	// suite and can silently stall replication to one follower.
	stream, err := NewTLSStreamLayer(cfg.BindAddr, adv, cfg.ServerTLS, cfg.ClientTLS, WithTLSStreamLogger(cfg.Logger))
	if err != nil {
		store.Close()
		return nil, err
	}
	transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, MaxRPCsInFlight: 1, Logger: hclogger("raft-net"),
	})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hclogger("raft")
	rc.SnapshotThreshold = 8192
	rc.TrailingLogs = 10240
	// Half of hashicorp/raft's defaults: schedulers sit on one LAN (a homelab, a rack), where a
	// heartbeat takes well under a millisecond, and a dead leader should cost about a second of
	// writes, not two or three. (Measured with orch-bench -ha: median kill -9 to first
	// acknowledged write 2.2 s with the defaults.)
	rc.HeartbeatTimeout = 500 * time.Millisecond
	rc.ElectionTimeout = 500 * time.Millisecond
	// The leader steps down when it has not heard from a quorum for this long. It does not
	// bound failover (the followers' heartbeat timeout does) nor guard reads (consistent reads
	// ask a quorum, VerifyLeader), so it is as long as Raft allows: at 250 ms a busy leader on
	// a starved machine (3 schedulers and 10,000 simulated nodes on 2 cores) stepped down
	// while its followers were fine.
	rc.LeaderLeaseTimeout = rc.HeartbeatTimeout
	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		transport.Close()
		store.Close()
		return nil, fmt.Errorf("raft state: %w", err)
	}
	if cfg.Bootstrap {
		if !existing {
			conf := raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter, ID: rc.LocalID, Address: transport.LocalAddr(),
			}}}
			if err := raft.BootstrapCluster(rc, store, store, snaps, transport, conf); err != nil {
				transport.Close()
				store.Close()
				return nil, fmt.Errorf("raft bootstrap: %w", err)
			}
		}
	}
	// The leader sends followers the entries it has just written: from a cache of the latest
	// ones, not read back from BoltDB and decoded again for each follower (as Consul and Nomad).
	logs, err := raft.NewLogCache(logCacheSize, store)
	if err != nil {
		transport.Close()
		store.Close()
		return nil, fmt.Errorf("raft log cache: %w", err)
	}
	r, err := raft.NewRaft(rc, f, logs, store, snaps, transport)
	if err != nil {
		transport.Close()
		store.Close()
		return nil, fmt.Errorf("raft: %w", err)
	}
	return &Node{hasState: existing, raft: r, fsm: f, transport: transport, store: store, cfg: cfg}, nil
}

func hclogger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Warn, Output: os.Stderr})
}

// HasState reports whether the data dir held Raft state when the node started (it has been
// part of a cluster before and must not bootstrap one).
func (n *Node) HasState() bool { return n.hasState }

// ID is this server's Raft id.
func (n *Node) ID() string { return n.cfg.ID }

// Address is this server's Raft address as others reach it.
func (n *Node) Address() string { return string(n.transport.LocalAddr()) }

// BootstrapWith forms a new cluster of the given voters (id -> raft address). Every server of a
// --bootstrap-expect group calls it with the same set, which Raft allows.
func (n *Node) BootstrapWith(voters map[string]string) error {
	conf := raft.Configuration{}
	for id, addr := range voters {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(addr)})
	}
	return n.raft.BootstrapCluster(conf).Error()
}

// VerifyLeader confirms with a quorum that this server still leads: a read after it is
// linearizable (the leader applied everything committed before serving, see Barrier).
func (n *Node) VerifyLeader() error {
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return nil
}

// Raft exposes the underlying server (leadership, configuration changes).
func (n *Node) Raft() *raft.Raft { return n.raft }

// IsLeader reports whether this server is the leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// LeaderCh receives true when this server gains leadership and false when it loses it.
func (n *Node) LeaderCh() <-chan bool { return n.raft.LeaderCh() }

// Apply replicates one command and returns what the FSM returned for it. It returns once the
// entry is committed and applied on this server (so a read that follows sees it).
func (n *Node) Apply(ctx context.Context, t fsm.CommandType, m proto.Message) (any, error) {
	if !n.IsLeader() {
		return nil, ErrNotLeader
	}
	b, err := fsm.Encode(t, m)
	if err != nil {
		return nil, err
	}
	timeout := n.cfg.ApplyTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	f := n.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader):
			return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
		case errors.Is(err, raft.ErrLeadershipLost):
			return nil, ErrLeadershipLost
		}
		return nil, fmt.Errorf("raft apply: %w", err)
	}
	res, _ := f.Response().(fsm.Result)
	return res.Value, res.Err
}

// Barrier waits until every entry committed before it has been applied locally.
func (n *Node) Barrier(timeout time.Duration) error { return n.raft.Barrier(timeout).Error() }

// Shutdown stops the server and closes its stores. A leader of a cluster with other voters
// hands leadership over first, so that the cluster does not wait out an election timeout.
func (n *Node) Shutdown() error {
	if n.IsLeader() {
		if f := n.raft.GetConfiguration(); f.Error() == nil && len(f.Configuration().Servers) > 1 {
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				n.cfg.Logger.Warn("leadership transfer before shutdown", "err", err)
			}
		}
	}
	// Shutdown waits for Raft's goroutines; do not let a stuck one hang the process forever.
	done := make(chan error, 1)
	go func() { done <- n.raft.Shutdown().Error() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(15 * time.Second):
		err = errors.New("raft shutdown timed out after 15s")
	}
	n.transport.Close()
	if cerr := n.store.Close(); err == nil {
		err = cerr
	}
	return err
}
