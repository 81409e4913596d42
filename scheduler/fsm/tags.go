package fsm

import (
	"fmt"

	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

// applyTagResource is written with the tagging API (TagResource, UntagResource).
func applyTagResource(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.TagResourceCommand
	decode(buf, &cmd)
	return nil, fmt.Errorf("tagging %s: not implemented yet: %w", cmd.GetResourceArn(), state.ErrInvalid)
}
