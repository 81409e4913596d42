package fsm

import (
	"errors"
	"testing"

	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

func TestPutServicesCompareAndSet(t *testing.T) {
	h := newHarness(t)
	if _, err := h.apply(CmdPutServices, &orchv1.PutServicesCommand{Puts: []*orchv1.PutServicesCommand_Put{{
		Service: &orchv1.Service{Cluster: "c", ServiceName: "web", Status: "ACTIVE"}}}}); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("a service in a missing cluster: %v, want not found", err)
	}
	h.must(CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: "c"}})
	svc := func(status string, desired int32) *orchv1.Service {
		return &orchv1.Service{Cluster: "c", ServiceName: "web", Status: status, DesiredCount: desired}
	}
	put := func(s *orchv1.Service, expect uint64) (*orchv1.Service, error) {
		v, err := h.apply(CmdPutServices, &orchv1.PutServicesCommand{Puts: []*orchv1.PutServicesCommand_Put{{Service: s, ExpectModifyIndex: expect}}})
		if err != nil {
			return nil, err
		}
		return v.([]*orchv1.Service)[0], nil
	}
	created, err := put(svc("ACTIVE", 2), 0)
	if err != nil || created.GetModifyIndex() == 0 {
		t.Fatalf("create: %v %v", created, err)
	}
	steps := []struct {
		name    string
		svc     *orchv1.Service
		expect  uint64
		wantErr error
	}{
		{"create again", svc("ACTIVE", 3), 0, state.ErrConflict},
		{"stale update", svc("ACTIVE", 3), created.GetModifyIndex() - 1, state.ErrConflict},
		{"no name", &orchv1.Service{Cluster: "c"}, 0, state.ErrInvalid},
		{"update", svc("ACTIVE", 3), created.GetModifyIndex(), nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			_, err := put(st.svc, st.expect)
			if !errors.Is(err, st.wantErr) {
				t.Fatalf("err = %v, want %v", err, st.wantErr)
			}
		})
	}
	got, _ := h.f.store.Read().Service(nil, "c", "web")
	if got.GetDesiredCount() != 3 {
		t.Fatalf("desired = %d, want 3", got.GetDesiredCount())
	}
	if _, err := h.apply(CmdDeleteCluster, &orchv1.DeleteClusterCommand{ClusterName: "c"}); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("deleting a cluster with an active service: %v, want conflict", err)
	}
	// An ACTIVE service is not deleted; an INACTIVE one is, and its name can be used again.
	h.must(CmdDeleteServices, &orchv1.DeleteServicesCommand{Services: []*orchv1.DeleteServicesCommand_Ref{{Cluster: "c", ServiceName: "web"}}})
	if got, _ := h.f.store.Read().Service(nil, "c", "web"); got == nil {
		t.Fatal("an ACTIVE service was deleted")
	}
	if _, err := put(svc("INACTIVE", 0), got.GetModifyIndex()); err != nil {
		t.Fatal(err)
	}
	if _, err := put(svc("ACTIVE", 1), 0); err != nil {
		t.Fatalf("re-create over an INACTIVE service: %v", err)
	}
	put(svc("INACTIVE", 0), func() uint64 { s, _ := h.f.store.Read().Service(nil, "c", "web"); return s.GetModifyIndex() }())
	h.must(CmdDeleteServices, &orchv1.DeleteServicesCommand{Services: []*orchv1.DeleteServicesCommand_Ref{{Cluster: "c", ServiceName: "web"}}})
	if got, _ := h.f.store.Read().Service(nil, "c", "web"); got != nil {
		t.Fatalf("INACTIVE service not deleted: %v", got)
	}
}
