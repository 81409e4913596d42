package server

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/state"
)

// How a control plane forms (certificates first, see identity.go):
//   - one server, --bootstrap: it bootstraps itself (the default, and --dev);
//   - --bootstrap-expect N --join a,b: each server asks the --join addresses who they are until
//     it knows N servers (itself included), then all bootstrap the same N-voter configuration,
//     which Raft allows; no operator step and no single point that must start first;
//   - --join a,b on a server with an empty data dir and no --bootstrap-expect: it asks the
//     cluster (any server; followers forward to the leader) to add it as a voter.
// A server with Raft state from an earlier run just starts; Raft knows its peers.
// Every server keeps its own record (id, Raft and API addresses) in the replicated state, so
// that followers can forward writes to the leader's API address.

func (s *Server) form(ctx context.Context) {
	defer s.wg.Done()
	if !s.raft.HasState() {
		switch {
		case s.cfg.BootstrapExpect > 1:
			if err := s.bootstrapExpect(ctx); err != nil {
				s.log.Error("forming the cluster", "err", err)
				return
			}
		case len(s.cfg.Join) > 0:
			s.joinLoop(ctx)
		}
	}
	s.registerSelf(ctx)
}

// bootstrapExpect waits until BootstrapExpect servers answer, then bootstraps them all.
func (s *Server) bootstrapExpect(ctx context.Context) error {
	self := (&operator{s: s}).self()
	for {
		if s.raft.Raft().LastIndex() > 0 {
			// The others bootstrapped the cluster and its leader already replicates to this
			// server: it is formed, even if one of them has gone since.
			return nil
		}
		known := map[string]*orchv1.SchedulerServer{self.GetId(): self}
		for _, addr := range s.cfg.Join {
			if info, err := s.serverInfo(ctx, addr); err == nil {
				known[info.GetId()] = info
			}
		}
		if len(known) >= s.cfg.BootstrapExpect {
			ids := make([]string, 0, len(known))
			voters := map[string]string{}
			for id, info := range known {
				ids = append(ids, id)
				voters[id] = info.GetRaftAddress()
			}
			sort.Strings(ids)
			s.log.Info("bootstrapping the cluster", "servers", ids)
			if err := s.raft.BootstrapWith(voters); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				return err
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (s *Server) serverInfo(ctx context.Context, addr string) (*orchv1.SchedulerServer, error) {
	conn, err := s.conn(addr)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return orchv1.NewOperatorClient(conn).ServerInfo(cctx, &orchv1.ServerInfoRequest{})
}

// joinLoop asks the --join addresses to add this server until one accepts.
func (s *Server) joinLoop(ctx context.Context) {
	self := (&operator{s: s}).self()
	for {
		for _, addr := range s.cfg.Join {
			conn, err := s.conn(addr)
			if err != nil {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			_, err = orchv1.NewOperatorClient(conn).Join(cctx, &orchv1.JoinRequest{Server: self})
			cancel()
			if err == nil {
				s.log.Info("joined the cluster", "via", addr)
				return
			}
			s.log.Warn("join", "via", addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// registerSelf keeps this server's record in the state current, also after a restore
// replaced the table: the leader writes it, a follower asks the leader through Join (which
// also makes sure it is a voter).
func (s *Server) registerSelf(ctx context.Context) {
	self := (&operator{s: s}).self()
	for {
		ws := state.NewWatchSet()
		rec, _ := s.store.Read().Server(ws, self.GetId())
		if rec != nil && rec.GetGrpcAddress() == self.GetGrpcAddress() && rec.GetRaftAddress() == self.GetRaftAddress() &&
			rec.GetHttpAddress() == self.GetHttpAddress() {
			if ws.WatchCtx(ctx) != nil {
				return
			}
			continue
		}
		var err error
		if s.raft.IsLeader() {
			_, err = s.raft.Apply(ctx, fsm.CmdRegisterServer, &orchv1.RegisterServerCommand{Server: self})
		} else if conn, cerr := s.leaderConn(); cerr == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = orchv1.NewOperatorClient(conn).Join(cctx, &orchv1.JoinRequest{Server: self})
			cancel()
		} else {
			err = cerr
		}
		if err != nil && status.Code(err) != codes.Unavailable {
			s.log.Debug("publishing this server's addresses", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.gained:
		case <-time.After(500 * time.Millisecond):
		}
	}
}
