package fsm

import (
	"fmt"

	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

// applyBootstrapToken stores the first management token, and only the first.
func applyBootstrapToken(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.BootstrapTokenCommand
	decode(buf, &cmd)
	existing, err := w.Tokens(nil)
	if err != nil {
		return nil, err
	}
	if len(existing) > 0 {
		return nil, fmt.Errorf("the API token bootstrap has been done already (token %s): %w", existing[0].GetAccessorId(), state.ErrConflict)
	}
	return cmd.GetToken(), w.PutToken(cmd.GetToken())
}
