package fsm

import (
	"fmt"

	"orch/scheduler/state"
)

// applyTasksLost is written with the node liveness controller.
func applyTasksLost(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	return nil, fmt.Errorf("tasks lost: not implemented yet: %w", state.ErrInvalid)
}
