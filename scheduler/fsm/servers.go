package fsm

import (
	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

func applyRegisterServer(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.RegisterServerCommand
	decode(buf, &cmd)
	srv := proto.Clone(cmd.GetServer()).(*orchv1.SchedulerServer)
	srv.Leader, srv.Voter, srv.State = false, false, "" // live facts come from Raft, not the log
	return srv, w.PutServer(srv)
}

func applyDeregisterServer(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.DeregisterServerCommand
	decode(buf, &cmd)
	srv, err := w.Server(nil, cmd.GetId())
	if err != nil || srv == nil {
		return nil, err
	}
	return nil, w.DeleteServer(srv)
}
