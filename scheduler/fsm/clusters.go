package fsm

import (
	"fmt"
	"net/netip"

	"google.golang.org/protobuf/proto"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/placement"
	"orch/scheduler/state"
)

// DefaultCIDRPool is where clusters created without a CIDR get a /16 from.
const DefaultCIDRPool = "10.64.0.0/10"

func applyCreateCluster(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.CreateClusterCommand
	decode(buf, &cmd)
	c := proto.Clone(cmd.GetCluster()).(*orchv1.Cluster)
	existing, err := w.Cluster(nil, c.GetClusterName())
	if err != nil {
		return nil, err
	}
	if existing != nil && existing.GetStatus() == "ACTIVE" {
		// CreateCluster is idempotent in ECS: the existing cluster is returned.
		return existing, nil
	}
	others, err := w.Clusters(nil)
	if err != nil {
		return nil, err
	}
	var taken []string
	for _, o := range others {
		if o.GetStatus() == "ACTIVE" && o.GetClusterName() != c.GetClusterName() {
			taken = append(taken, o.GetCidr())
		}
	}
	if c.GetCidr() == "" {
		cidr, err := freeCIDR(taken)
		if err != nil {
			return nil, err
		}
		c.Cidr = cidr
	}
	for _, t := range taken {
		if placement.Overlaps(t, c.GetCidr()) {
			return nil, fmt.Errorf("cidr %s overlaps %s of another cluster: %w", c.GetCidr(), t, state.ErrConflict)
		}
	}
	c.ClusterArn = f.arns.Cluster(c.GetClusterName())
	c.Status = "ACTIVE"
	if err := w.PutCluster(c); err != nil {
		return nil, err
	}
	hosts, err := w.Hosts(nil)
	if err != nil {
		return nil, err
	}
	for _, h := range hosts {
		if memberOf(h, c.GetClusterName()) {
			if _, err := ensureInstance(f, w, h, c); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// freeCIDR returns the first /16 of the default pool that overlaps none of taken.
func freeCIDR(taken []string) (string, error) {
	pool := netip.MustParsePrefix(DefaultCIDRPool)
	for a := pool.Addr(); pool.Contains(a); {
		cand := netip.PrefixFrom(a, 16)
		free := true
		for _, t := range taken {
			if placement.Overlaps(t, cand.String()) {
				free = false
				break
			}
		}
		if free {
			return cand.String(), nil
		}
		b := a.As4()
		a = netip.AddrFrom4([4]byte{b[0], b[1] + 1, 0, 0})
	}
	return "", fmt.Errorf("no free /16 left in %s; give the cluster a --cidr: %w", DefaultCIDRPool, state.ErrConflict)
}

func applyDeleteCluster(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.DeleteClusterCommand
	decode(buf, &cmd)
	c, err := w.Cluster(nil, cmd.GetClusterName())
	if err != nil {
		return nil, err
	}
	if c == nil || c.GetStatus() != "ACTIVE" {
		return nil, fmt.Errorf("cluster %s: %w", cmd.GetClusterName(), state.ErrNotFound)
	}
	services, err := w.ServicesByCluster(nil, c.GetClusterName())
	if err != nil {
		return nil, err
	}
	for _, svc := range services {
		if svc.GetStatus() != "INACTIVE" {
			return nil, fmt.Errorf("cluster %s: the cluster cannot be deleted while services are active (service %s is %s): %w",
				c.GetClusterName(), svc.GetServiceName(), svc.GetStatus(), state.ErrConflict)
		}
	}
	tasks, err := w.TasksByCluster(c.GetClusterName())
	if err != nil {
		return nil, err
	}
	for _, t := range tasks {
		if t.GetLastStatus() != lifecycle.Stopped {
			return nil, fmt.Errorf("cluster %s: the cluster cannot be deleted while tasks are active (task %s is %s): %w",
				c.GetClusterName(), t.GetId(), t.GetLastStatus(), state.ErrConflict)
		}
	}
	instances, err := w.InstancesByCluster(nil, c.GetClusterName())
	if err != nil {
		return nil, err
	}
	for _, ci := range instances {
		h, err := w.Host(nil, ci.GetHostId())
		if err != nil {
			return nil, err
		}
		if h != nil && listsCluster(h, c.GetClusterName()) && ci.GetStatus() == "ACTIVE" {
			return nil, fmt.Errorf("cluster %s: the cluster cannot be deleted while container instances are active (%s on %s): %w",
				c.GetClusterName(), ci.GetId(), h.GetHostname(), state.ErrConflict)
		}
	}
	for _, ci := range instances {
		if err := w.DeleteInstance(ci); err != nil {
			return nil, err
		}
	}
	c = proto.Clone(c).(*orchv1.Cluster)
	c.Status = "INACTIVE"
	if err := w.PutCluster(c); err != nil {
		return nil, err
	}
	return c, nil
}
