// Package fsm is the scheduler's raft.FSM: every Raft entry is one typed command (one byte of
// CommandType, then a protobuf message), applied to the state store by one applyX function.
// Apply is deterministic: times, ids and placements come from the leader inside the command.
// A command that cannot be decoded is a bug and panics (Nomad's rule); a command that is
// refused (a cluster that does not exist, an address already taken) returns an error value to
// the caller of raft.Apply and changes nothing.
package fsm

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"orch/pkg/arn"
	"orch/scheduler/state"
)

// CommandType is the first byte of every Raft entry.
type CommandType byte

// Command types. Never renumber: they are in every Raft log on disk.
const (
	CmdCreateCluster            CommandType = 1
	CmdDeleteCluster            CommandType = 2
	CmdRegisterTaskDefinition   CommandType = 3
	CmdDeregisterTaskDefinition CommandType = 4
	CmdRegisterHost             CommandType = 5
	CmdHostConnection           CommandType = 6
	CmdPlaceTasks               CommandType = 7
	CmdStopTasks                CommandType = 8
	CmdTaskStatus               CommandType = 9
	CmdTaskUsage                CommandType = 10
	CmdDeleteTasks              CommandType = 11
	CmdRegisterServer           CommandType = 12
	CmdDeregisterServer         CommandType = 13
	CmdTagResource              CommandType = 14
	CmdTasksLost                CommandType = 15
	CmdBootstrapToken           CommandType = 16
	CmdInitPKI                  CommandType = 17
	CmdRotateJoinToken          CommandType = 18
	CmdPutServices              CommandType = 19
	CmdDeleteServices           CommandType = 20
	CmdTaskStatusBatch          CommandType = 21

	// IgnoreUnknownFlag marks a command that older servers may skip when they do not know it.
	IgnoreUnknownFlag CommandType = 128
)

// Encode makes a Raft entry of a command.
func Encode(t CommandType, m proto.Message) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", t, err)
	}
	return append([]byte{byte(t)}, b...), nil
}

// Result is what Apply returns to the caller of raft.Apply.
type Result struct {
	Value any
	Err   error
}

// FSM applies commands to a state store.
type FSM struct {
	store *state.Store
	arns  arn.Builder
	log   *slog.Logger
}

// New returns an FSM writing to store.
func New(store *state.Store, arns arn.Builder, log *slog.Logger) *FSM {
	return &FSM{store: store, arns: arns, log: log}
}

// Store returns the state store the FSM writes.
func (f *FSM) Store() *state.Store { return f.store }

type applyFn func(f *FSM, w *state.WriteTxn, buf []byte) (any, error)

var appliers = map[CommandType]applyFn{
	CmdCreateCluster:            applyCreateCluster,
	CmdDeleteCluster:            applyDeleteCluster,
	CmdRegisterTaskDefinition:   applyRegisterTaskDefinition,
	CmdDeregisterTaskDefinition: applyDeregisterTaskDefinition,
	CmdRegisterHost:             applyRegisterHost,
	CmdHostConnection:           applyHostConnection,
	CmdPlaceTasks:               applyPlaceTasks,
	CmdStopTasks:                applyStopTasks,
	CmdTaskStatus:               applyTaskStatus,
	CmdTaskUsage:                applyTaskUsage,
	CmdDeleteTasks:              applyDeleteTasks,
	CmdRegisterServer:           applyRegisterServer,
	CmdDeregisterServer:         applyDeregisterServer,
	CmdTagResource:              applyTagResource,
	CmdTasksLost:                applyTasksLost,
	CmdBootstrapToken:           applyBootstrapToken,
	CmdInitPKI:                  applyInitPKI,
	CmdRotateJoinToken:          applyRotateJoinToken,
	CmdPutServices:              applyPutServices,
	CmdDeleteServices:           applyDeleteServices,
	CmdTaskStatusBatch:          applyTaskStatusBatch,
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand || len(l.Data) == 0 {
		return nil
	}
	t := CommandType(l.Data[0])
	fn, ok := appliers[t&^IgnoreUnknownFlag]
	if !ok {
		if t&IgnoreUnknownFlag != 0 {
			f.log.Warn("skipping unknown raft command", "type", t, "index", l.Index)
			return nil
		}
		panic(fmt.Sprintf("fsm: unknown command type %d at index %d", t, l.Index))
	}
	w := f.store.Write(l.Index)
	v, err := fn(f, w, l.Data[1:])
	if err != nil {
		w.Abort()
		return Result{Err: err}
	}
	if err := w.Commit(); err != nil {
		return Result{Err: err}
	}
	return Result{Value: v}
}

func decode(buf []byte, m proto.Message) {
	if err := proto.Unmarshal(buf, m); err != nil {
		panic(fmt.Sprintf("fsm: decode %T: %v", m, err))
	}
}

// Snapshot implements raft.FSM with an MVCC read of the store; Persist streams it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{txn: f.store.Read()}, nil
}

// Restore implements raft.FSM: it replaces the whole state with the snapshot.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := state.ReadSnapshot(rc)
	if err != nil {
		return err
	}
	f.store.Replace(s)
	return nil
}

type snapshot struct{ txn *state.ReadTxn }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.txn.WriteSnapshot(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
