package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

func applyRegisterTaskDefinition(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.RegisterTaskDefinitionCommand
	decode(buf, &cmd)
	td := proto.Clone(cmd.GetTaskDefinition()).(*orchv1.TaskDefinition)
	latest, err := w.LatestRevision(td.GetFamily())
	if err != nil {
		return nil, err
	}
	td.Revision = latest + 1
	td.TaskDefinitionArn = f.arns.TaskDefinition(td.GetFamily(), td.GetRevision())
	td.Status = "ACTIVE"
	if err := w.PutTaskDefinition(td); err != nil {
		return nil, err
	}
	return td, nil
}

func applyDeregisterTaskDefinition(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.DeregisterTaskDefinitionCommand
	decode(buf, &cmd)
	td, err := w.TaskDefinition(nil, cmd.GetFamily(), cmd.GetRevision())
	if err != nil {
		return nil, err
	}
	if td == nil {
		return nil, fmt.Errorf("task definition %s:%d: %w", cmd.GetFamily(), cmd.GetRevision(), state.ErrNotFound)
	}
	if td.GetStatus() == "INACTIVE" {
		return td, nil
	}
	td = proto.Clone(td).(*orchv1.TaskDefinition)
	td.Status = "INACTIVE"
	td.DeregisteredAt = cmd.GetAt()
	return td, w.PutTaskDefinition(td)
}
