package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

// applyPutServices writes services, each compare-and-set on its modify index: a put whose
// expectation no longer holds (someone changed the service since it was read) fails the
// whole command with ErrConflict and writes nothing, and the writer reads again. It returns
// the services as stored.
func applyPutServices(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.PutServicesCommand
	decode(buf, &cmd)
	out := make([]*orchv1.Service, 0, len(cmd.GetPuts()))
	for _, p := range cmd.GetPuts() {
		svc := p.GetService()
		if svc.GetCluster() == "" || svc.GetServiceName() == "" {
			return nil, fmt.Errorf("service: cluster and serviceName are required: %w", state.ErrInvalid)
		}
		cur, err := w.Service(nil, svc.GetCluster(), svc.GetServiceName())
		if err != nil {
			return nil, err
		}
		if cur == nil || cur.GetStatus() == "INACTIVE" {
			// A new service needs its cluster, checked here too so that a DeleteCluster
			// ordered just before cannot leave it in a deleted cluster.
			c, err := w.Cluster(nil, svc.GetCluster())
			if err != nil {
				return nil, err
			}
			if c == nil || c.GetStatus() != "ACTIVE" {
				return nil, fmt.Errorf("cluster %s: %w", svc.GetCluster(), state.ErrNotFound)
			}
		}
		switch {
		case p.GetExpectModifyIndex() == 0 && cur != nil && cur.GetStatus() != "INACTIVE":
			return nil, fmt.Errorf("service %s already exists in cluster %s: %w", svc.GetServiceName(), svc.GetCluster(), state.ErrConflict)
		case p.GetExpectModifyIndex() != 0 && (cur == nil || cur.GetModifyIndex() != p.GetExpectModifyIndex()):
			return nil, fmt.Errorf("service %s of cluster %s changed meanwhile: %w", svc.GetServiceName(), svc.GetCluster(), state.ErrConflict)
		}
		next := proto.Clone(svc).(*orchv1.Service)
		next.ModifyIndex = w.Index()
		if err := w.PutService(next); err != nil {
			return nil, err
		}
		out = append(out, next)
	}
	return out, nil
}

// applyDeleteServices forgets INACTIVE services; others are left alone.
func applyDeleteServices(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.DeleteServicesCommand
	decode(buf, &cmd)
	for _, ref := range cmd.GetServices() {
		cur, err := w.Service(nil, ref.GetCluster(), ref.GetServiceName())
		if err != nil {
			return nil, err
		}
		if cur != nil && cur.GetStatus() == "INACTIVE" {
			if err := w.DeleteService(cur); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}
