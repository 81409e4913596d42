package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/rpcerr"
	"orch/scheduler/state"
)

// snapshotMagic opens every file written by `orchctl operator snapshot save`.
const snapshotMagic = "ORCHSNAP1\n"

// operator implements orchv1.OperatorServer.
type operator struct {
	orchv1.UnimplementedOperatorServer
	s *Server
}

func (o *operator) self() *orchv1.SchedulerServer {
	return &orchv1.SchedulerServer{
		Id: o.s.cfg.NodeID, RaftAddress: o.s.raft.Address(), GrpcAddress: o.s.cfg.AdvertiseGRPC, HttpAddress: o.s.cfg.HTTPAddr,
	}
}

// ServerInfo implements orchv1.OperatorServer.
func (o *operator) ServerInfo(ctx context.Context, _ *orchv1.ServerInfoRequest) (*orchv1.SchedulerServer, error) {
	return o.self(), nil
}

// RaftListPeers implements orchv1.OperatorServer from this server's view of the Raft
// configuration.
func (o *operator) RaftListPeers(ctx context.Context, _ *orchv1.RaftListPeersRequest) (*orchv1.RaftListPeersResponse, error) {
	f := o.s.raft.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "raft configuration: %v", err)
	}
	_, leader := o.s.raft.Raft().LeaderWithID()
	r := o.s.store.Read()
	resp := &orchv1.RaftListPeersResponse{}
	for _, srv := range f.Configuration().Servers {
		p := &orchv1.SchedulerServer{
			Id: string(srv.ID), RaftAddress: string(srv.Address),
			Leader: srv.ID == leader, Voter: srv.Suffrage == raft.Voter,
		}
		if rec, _ := r.Server(nil, string(srv.ID)); rec != nil {
			p.GrpcAddress, p.HttpAddress = rec.GetGrpcAddress(), rec.GetHttpAddress()
		}
		if string(srv.ID) == o.s.cfg.NodeID {
			p.State = "alive (this server)"
		}
		resp.Servers = append(resp.Servers, p)
	}
	return resp, nil
}

// RaftRemovePeer implements orchv1.OperatorServer (on the leader: forwarded there).
func (o *operator) RaftRemovePeer(ctx context.Context, req *orchv1.RaftRemovePeerRequest) (*orchv1.RaftRemovePeerResponse, error) {
	f := o.s.raft.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "raft configuration: %v", err)
	}
	var target *raft.Server
	r := o.s.store.Read()
	for _, srv := range f.Configuration().Servers {
		rec, _ := r.Server(nil, string(srv.ID))
		if (req.GetId() != "" && string(srv.ID) == req.GetId()) ||
			(req.GetAddress() != "" && (string(srv.Address) == req.GetAddress() || rec.GetGrpcAddress() == req.GetAddress())) {
			srv := srv
			target = &srv
		}
	}
	if target == nil {
		return nil, status.Errorf(codes.NotFound, "no raft peer with id %q or address %q", req.GetId(), req.GetAddress())
	}
	if string(target.ID) == o.s.cfg.NodeID {
		return nil, status.Errorf(codes.FailedPrecondition, "peer %s is the leader; stop it (leadership moves on shutdown) or remove it from another server", target.ID)
	}
	if err := o.s.raft.Raft().RemoveServer(target.ID, 0, 10*time.Second).Error(); err != nil {
		return nil, toStatus(err)
	}
	if _, err := o.s.raft.Apply(ctx, fsm.CmdDeregisterServer, &orchv1.DeregisterServerCommand{Id: string(target.ID)}); err != nil {
		return nil, toStatus(err)
	}
	o.s.log.Info("removed raft peer", "peer", target.ID, "address", target.Address)
	return &orchv1.RaftRemovePeerResponse{}, nil
}

// Join implements orchv1.OperatorServer (on the leader): it adds the caller as a voter and
// records its addresses. Joining again with the same id and address changes nothing.
func (o *operator) Join(ctx context.Context, req *orchv1.JoinRequest) (*orchv1.JoinResponse, error) {
	srv := req.GetServer()
	if srv.GetId() == "" || srv.GetRaftAddress() == "" || srv.GetGrpcAddress() == "" {
		return nil, status.Error(codes.InvalidArgument, "server: id, raftAddress and grpcAddress are required")
	}
	f := o.s.raft.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, toStatus(err)
	}
	member := false
	for _, c := range f.Configuration().Servers {
		if string(c.ID) == srv.GetId() && string(c.Address) == srv.GetRaftAddress() {
			member = true
		}
	}
	if !member {
		if err := o.s.raft.Raft().AddVoter(raft.ServerID(srv.GetId()), raft.ServerAddress(srv.GetRaftAddress()), 0, 10*time.Second).Error(); err != nil {
			return nil, toStatus(err)
		}
		o.s.log.Info("added raft voter", "peer", srv.GetId(), "address", srv.GetRaftAddress())
	}
	if rec, _ := o.s.store.Read().Server(nil, srv.GetId()); rec == nil || rec.GetGrpcAddress() != srv.GetGrpcAddress() ||
		rec.GetRaftAddress() != srv.GetRaftAddress() || rec.GetHttpAddress() != srv.GetHttpAddress() {
		if _, err := o.s.raft.Apply(ctx, fsm.CmdRegisterServer, &orchv1.RegisterServerCommand{Server: srv}); err != nil {
			return nil, toStatus(err)
		}
	}
	servers, _ := o.s.store.Read().Servers(nil)
	return &orchv1.JoinResponse{Servers: servers}, nil
}

// SnapshotSave implements orchv1.OperatorServer: a fresh Raft snapshot of the leader's state.
func (o *operator) SnapshotSave(_ *orchv1.SnapshotSaveRequest, stream orchv1.Operator_SnapshotSaveServer) error {
	if !o.s.raft.IsLeader() {
		return o.forwardSave(stream)
	}
	var buf bytes.Buffer
	buf.WriteString(snapshotMagic)
	// The state as of the last applied entry; streamed the way Raft persists it.
	if err := o.s.raft.Barrier(10 * time.Second); err != nil {
		return toStatus(err)
	}
	r := o.s.store.Read()
	stream.SetTrailer(metadata.Pairs("orch-snapshot-index", strconv.FormatUint(r.LatestIndex(), 10)))
	if err := r.WriteSnapshot(&buf); err != nil {
		return status.Errorf(codes.Internal, "snapshot: %v", err)
	}
	for b := buf.Bytes(); len(b) > 0; {
		n := min(len(b), 1<<20)
		if err := stream.Send(&orchv1.SnapshotChunk{Data: b[:n]}); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (o *operator) forwardSave(stream orchv1.Operator_SnapshotSaveServer) error {
	conn, err := o.s.leaderConn()
	if err != nil {
		return err
	}
	in, err := orchv1.NewOperatorClient(conn).SnapshotSave(o.s.forwardCtx(stream.Context()), &orchv1.SnapshotSaveRequest{})
	if err != nil {
		return err
	}
	for {
		c, err := in.Recv()
		if errors.Is(err, io.EOF) {
			stream.SetTrailer(in.Trailer())
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(c); err != nil {
			return err
		}
	}
}

// SnapshotRestore implements orchv1.OperatorServer: it checks the snapshot, then has Raft
// install it on every server (raft.Restore), replacing the whole state.
func (o *operator) SnapshotRestore(stream orchv1.Operator_SnapshotRestoreServer) error {
	tmp, err := os.CreateTemp(o.s.cfg.DataDir, "restore-*.snap")
	if err != nil {
		return status.Errorf(codes.Internal, "restore: %v", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if _, err := tmp.Write(c.GetData()); err != nil {
			return status.Errorf(codes.Internal, "restore: %v", err)
		}
	}
	if !o.s.raft.IsLeader() {
		return o.forwardRestore(stream, tmp)
	}
	body, snap, err := checkSnapshot(tmp)
	if err != nil {
		return err
	}
	ca, err := snapshotCA(snap)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if !ca.Cert.Equal(o.s.id.ca) {
		return status.Errorf(codes.FailedPrecondition, "snapshot: it is of another cluster (CA %s; this cluster's is %s): restore it onto a blank machine with `orch-scheduler --restore FILE`",
			pki.CADigest(ca.Cert), pki.CADigest(o.s.id.ca))
	}
	fi, err := tmp.Stat()
	if err != nil {
		return status.Errorf(codes.Internal, "restore: %v", err)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: fi.Size() - int64(len(snapshotMagic))}
	if err := o.s.raft.Raft().Restore(meta, body, 0); err != nil {
		return status.Errorf(codes.Internal, "restore: %v", err)
	}
	idx := o.s.raft.Raft().AppliedIndex()
	o.s.log.Warn("state restored from a snapshot", "index", idx)
	return stream.SendAndClose(&orchv1.SnapshotRestoreResponse{Index: idx})
}

// checkSnapshot verifies the header and that the body decodes, and returns the body and
// what it decodes to.
func checkSnapshot(f *os.File) (io.Reader, *state.Store, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, nil, status.Errorf(codes.Internal, "restore: %v", err)
	}
	head := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(f, head); err != nil || string(head) != snapshotMagic {
		return nil, nil, status.Error(codes.InvalidArgument, "snapshot: not an orch snapshot (bad header; sealed snapshots are opened by orchctl)")
	}
	st, err := state.ReadSnapshot(f)
	if err != nil {
		return nil, nil, status.Errorf(codes.InvalidArgument, "snapshot: %v", err)
	}
	if _, err := f.Seek(int64(len(snapshotMagic)), io.SeekStart); err != nil {
		return nil, nil, status.Errorf(codes.Internal, "restore: %v", err)
	}
	return f, st, nil
}

func (o *operator) forwardRestore(stream orchv1.Operator_SnapshotRestoreServer, f *os.File) error {
	conn, err := o.s.leaderConn()
	if err != nil {
		return err
	}
	out, err := orchv1.NewOperatorClient(conn).SnapshotRestore(o.s.forwardCtx(stream.Context()))
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if err := out.Send(&orchv1.SnapshotChunk{Data: append([]byte(nil), buf[:n]...)}); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	resp, err := out.CloseAndRecv()
	if err != nil {
		return err
	}
	return stream.SendAndClose(resp)
}

var toStatus = rpcerr.ToStatus
