// Package fsmtest applies commands to a real FSM in order, as a single Raft voter would, so
// that the packages above the FSM (api, dispatcher, controllers) are tested against the real
// apply path and state store without starting Raft.
package fsmtest

import (
	"context"
	"io"
	"log/slog"
	"sync"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"orch/pkg/arn"
	"orch/scheduler/fsm"
	"orch/scheduler/state"
)

// Applier implements the Apply method that api, dispatcher and controllers write through.
type Applier struct {
	mu    sync.Mutex
	fsm   *fsm.FSM
	index uint64
}

// New returns an Applier writing to store with the default ARNs.
func New(store *state.Store) *Applier {
	return &Applier{fsm: fsm.New(store, arn.Default, slog.New(slog.NewTextHandler(io.Discard, nil)))}
}

// Apply encodes the command as a Raft entry and applies it at the next index.
func (a *Applier) Apply(_ context.Context, t fsm.CommandType, m proto.Message) (any, error) {
	b, err := fsm.Encode(t, m)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.index++
	res := a.fsm.Apply(&raft.Log{Index: a.index, Type: raft.LogCommand, Data: b}).(fsm.Result)
	return res.Value, res.Err
}

// Index is the index of the last entry applied: a test can tell whether a call reached Raft.
func (a *Applier) Index() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.index
}
