package fsm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"

	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/placement"
	"orch/scheduler/state"
)

// memberOf reports whether host h serves cluster.
func memberOf(h *orchv1.Host, cluster string) bool {
	return slices.Contains(h.GetClusters(), "*") || listsCluster(h, cluster)
}

// listsCluster reports whether h names cluster explicitly.
func listsCluster(h *orchv1.Host, cluster string) bool {
	return slices.Contains(h.GetClusters(), cluster)
}

// InstanceID is the container instance id of host in cluster: derived, so that every server
// computes the same one and a host that registers again keeps it.
func InstanceID(host, cluster string) string {
	sum := sha256.Sum256([]byte(host + "/" + cluster))
	return hex.EncodeToString(sum[:16])
}

func applyRegisterHost(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.RegisterHostCommand
	decode(buf, &cmd)
	h := proto.Clone(cmd.GetHost()).(*orchv1.Host)
	old, err := w.Host(nil, h.GetId())
	if err != nil {
		return nil, err
	}
	if old != nil {
		h.RegisteredAt = old.GetRegisteredAt()
		h.Connected = old.GetConnected()
		h.LastSeenAt = old.GetLastSeenAt()
	}
	clusters, err := w.Clusters(nil)
	if err != nil {
		return nil, err
	}
	for _, name := range h.GetClusters() {
		if name == "*" {
			continue
		}
		c, err := w.Cluster(nil, name)
		if err != nil {
			return nil, err
		}
		if c == nil || c.GetStatus() != "ACTIVE" {
			return nil, fmt.Errorf("cluster %s: %w", name, state.ErrNotFound)
		}
	}
	if err := w.PutHost(h); err != nil {
		return nil, err
	}
	resp := &orchv1.RegisterHostResponse{Host: h}
	for _, c := range clusters {
		if c.GetStatus() != "ACTIVE" || !memberOf(h, c.GetClusterName()) {
			continue
		}
		ci, err := ensureInstance(f, w, h, c)
		if err != nil {
			return nil, err
		}
		resp.ContainerInstances = append(resp.ContainerInstances, ci)
	}
	// Instances of clusters the host no longer serves become INACTIVE.
	instances, err := w.InstancesByHost(nil, h.GetId())
	if err != nil {
		return nil, err
	}
	for _, ci := range instances {
		if !memberOf(h, ci.GetCluster()) && ci.GetStatus() != "INACTIVE" {
			ci = proto.Clone(ci).(*orchv1.ContainerInstance)
			ci.Status = "INACTIVE"
			ci.Version++
			if err := w.PutInstance(ci); err != nil {
				return nil, err
			}
		}
	}
	return resp, nil
}

// ensureInstance returns host's container instance in cluster, creating it with the next free
// /24 of the cluster's CIDR, and refreshing its resources and attributes from the host.
func ensureInstance(f *FSM, w *state.WriteTxn, h *orchv1.Host, c *orchv1.Cluster) (*orchv1.ContainerInstance, error) {
	id := InstanceID(h.GetId(), c.GetClusterName())
	ci, err := w.Instance(nil, id)
	if err != nil {
		return nil, err
	}
	if ci == nil {
		subnet, err := freeSubnet(w, c)
		if err != nil {
			return nil, err
		}
		ci = &orchv1.ContainerInstance{
			Id:                   id,
			ContainerInstanceArn: f.arns.ContainerInstance(c.GetClusterName(), id),
			Cluster:              c.GetClusterName(),
			HostId:               h.GetId(),
			Subnet:               subnet,
			RegisteredAt:         h.GetRegisteredAt(),
		}
	} else {
		ci = proto.Clone(ci).(*orchv1.ContainerInstance)
	}
	ci.Ec2InstanceId = h.GetId()
	ci.Hostname = h.GetHostname()
	ci.Status = "ACTIVE"
	ci.Attributes = h.GetAttributes()
	ci.VersionInfo = &orchv1.VersionInfo{AgentVersion: h.GetAgentVersion()}
	ci.RegisteredResources = []*orchv1.Resource{
		{Name: "CPU", Type: "INTEGER", IntegerValue: h.GetCpu()},
		{Name: "MEMORY", Type: "INTEGER", IntegerValue: h.GetMemory()},
	}
	ci.Version++
	if err := w.PutInstance(ci); err != nil {
		return nil, err
	}
	return ci, nil
}

// freeSubnet returns the lowest /24 of the cluster's CIDR that none of its container
// instances has. The instances of a cluster always hold its first k /24s: each takes the
// lowest free one, and they are deleted only all together, with their cluster. So the lowest
// free /24 is the one after the highest taken, which the subnet index gives without reading
// every instance (that made registering 10,000 hosts quadratic). When there is no next one
// (the CIDR is full), the full scan says so.
func freeSubnet(w *state.WriteTxn, c *orchv1.Cluster) (string, error) {
	high, err := w.HighestSubnet(c.GetClusterName())
	if err != nil {
		return "", err
	}
	if high == "" {
		if s, err := placement.SubnetFor(c.GetCidr(), 0); err == nil {
			return s, nil
		}
	} else if n, ok := subnetNumber(c.GetCidr(), high); ok {
		if s, err := placement.SubnetFor(c.GetCidr(), n+1); err == nil {
			return s, nil
		}
	}
	return scanSubnets(w, c)
}

// subnetNumber is n such that placement.SubnetFor(cidr, n) == subnet.
func subnetNumber(cidr, subnet string) (int, bool) {
	pc, err1 := netip.ParsePrefix(cidr)
	ps, err2 := netip.ParsePrefix(subnet)
	if err1 != nil || err2 != nil || !pc.Addr().Is4() || !ps.Addr().Is4() || !pc.Contains(ps.Addr()) {
		return 0, false
	}
	b, a := pc.Masked().Addr().As4(), ps.Masked().Addr().As4()
	base := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8
	addr := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8
	return int((addr - base) >> 8), true
}

func scanSubnets(w *state.WriteTxn, c *orchv1.Cluster) (string, error) {
	instances, err := w.InstancesByCluster(nil, c.GetClusterName())
	if err != nil {
		return "", err
	}
	used := map[string]bool{}
	for _, ci := range instances {
		used[ci.GetSubnet()] = true
	}
	for n := 0; ; n++ {
		s, err := placement.SubnetFor(c.GetCidr(), n)
		if err != nil {
			return "", fmt.Errorf("cluster %s: no free /24 left in %s: %w", c.GetClusterName(), c.GetCidr(), state.ErrConflict)
		}
		if !used[s] {
			return s, nil
		}
	}
}

func applyHostConnection(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.HostConnectionCommand
	decode(buf, &cmd)
	h, err := w.Host(nil, cmd.GetHostId())
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("host %s: %w", cmd.GetHostId(), state.ErrNotFound)
	}
	h = proto.Clone(h).(*orchv1.Host)
	h.Connected = cmd.GetConnected()
	h.LastSeenAt = cmd.GetAt()
	return h, w.PutHost(h)
}
