package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

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

// applyInitPKI stores the cluster CA and join tokens unless the cluster has them already (the
// first leader of a new cluster writes them; later attempts change nothing). It returns the
// record in force.
func applyInitPKI(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.InitPKICommand
	decode(buf, &cmd)
	cur, err := w.PKI(nil)
	if err != nil || cur != nil {
		return cur, err
	}
	p := cmd.GetPki()
	if len(p.GetCa()) == 0 || p.GetWorkerToken() == "" || p.GetManagerToken() == "" {
		return nil, fmt.Errorf("cluster PKI: the CA and both join tokens are required: %w", state.ErrInvalid)
	}
	return p, w.PutPKI(p)
}

// applyRotateJoinToken replaces the join tokens the command carries.
func applyRotateJoinToken(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.RotateJoinTokenCommand
	decode(buf, &cmd)
	cur, err := w.PKI(nil)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, fmt.Errorf("join tokens: the cluster has no CA yet: %w", state.ErrConflict)
	}
	next := proto.Clone(cur).(*orchv1.ClusterPKI)
	if t := cmd.GetWorkerToken(); t != "" {
		next.WorkerToken = t
	}
	if t := cmd.GetManagerToken(); t != "" {
		next.ManagerToken = t
	}
	return next, w.PutPKI(next)
}
