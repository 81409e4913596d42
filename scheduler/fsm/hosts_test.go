package fsm

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

// Each new container instance takes the lowest free /24 of its cluster, as the full scan of the
// cluster's instances finds it, until the CIDR is full.
func TestFreeSubnet(t *testing.T) {
	tests := []struct {
		name  string
		cidr  string
		hosts int
		want  []string // the instances' subnets, in registration order; "full" when refused
	}{
		{name: "first /24s in order", cidr: "10.64.0.0/16", hosts: 3, want: []string{"10.64.0.0/24", "10.64.1.0/24", "10.64.2.0/24"}},
		{name: "across an octet", cidr: "100.64.0.0/10", hosts: 258, want: nil},
		{name: "a full CIDR refuses", cidr: "10.9.0.0/23", hosts: 3, want: []string{"10.9.0.0/24", "10.9.1.0/24", "full"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.must(CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: "c", Cidr: tt.cidr}})
			// Another cluster's instances do not count.
			h.must(CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: "c2", Cidr: "10.200.0.0/16"}})
			h.must(CmdRegisterHost, &orchv1.RegisterHostCommand{Host: &orchv1.Host{Id: "other", Clusters: []string{"c2"}, Cpu: 1, Memory: 1, RegisteredAt: timestamppb.Now()}})
			for i := 0; i < tt.hosts; i++ {
				c, _ := h.f.Store().Read().Cluster(nil, "c")
				w := h.f.Store().Write(0)
				scanned, scanErr := scanSubnets(w, c)
				w.Abort()
				v, err := h.apply(CmdRegisterHost, &orchv1.RegisterHostCommand{Host: &orchv1.Host{
					Id: fmt.Sprintf("h%d", i), Clusters: []string{"c"}, Cpu: 1024, Memory: 1024, RegisteredAt: timestamppb.Now(),
				}})
				got := "full"
				if err == nil {
					got = v.(*orchv1.RegisterHostResponse).GetContainerInstances()[0].GetSubnet()
				} else if !errors.Is(err, state.ErrConflict) {
					t.Fatalf("host %d: %v", i, err)
				}
				if (scanErr != nil) != (got == "full") || (scanErr == nil && scanned != got) {
					t.Fatalf("host %d: got %s, the full scan gives %s (%v)", i, got, scanned, scanErr)
				}
				if tt.want != nil && got != tt.want[i] {
					t.Fatalf("host %d: got %s, want %s", i, got, tt.want[i])
				}
			}
		})
	}
}
