package api

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"google.golang.org/protobuf/proto"

	"orch/pkg/arn"
	"orch/pkg/lifecycle"
	"orch/pkg/taskdef"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

// hostUsage is what live tasks reserve on a host, across all its clusters.
type hostUsage struct {
	cpu, mem         int
	ports            map[string]bool
	running, pending map[string]int // by container instance
	addresses        map[string]int // ENI addresses held, by container instance
}

// usageByHost sums the reservations of every task that is not STOPPED, per host.
func usageByHost(r *state.ReadTxn, host string) (*hostUsage, error) {
	u := &hostUsage{ports: map[string]bool{}, running: map[string]int{}, pending: map[string]int{}, addresses: map[string]int{}}
	tasks, err := r.TasksByHost(host)
	if err != nil {
		return nil, err
	}
	tdCache := map[string]*orchv1.TaskDefinition{}
	for _, t := range tasks {
		if t.GetLastStatus() == lifecycle.Stopped {
			if t.GetEniHeld() {
				u.addresses[t.GetContainerInstanceId()]++
			}
			continue
		}
		u.addresses[t.GetContainerInstanceId()]++
		cpu, _ := strconv.Atoi(t.GetCpu())
		mem, _ := strconv.Atoi(t.GetMemory())
		u.cpu += cpu
		u.mem += mem
		td, ok := tdCache[t.GetTaskDefinitionArn()]
		if !ok {
			family, rev, err := taskdef.ParseRef(t.GetTaskDefinitionArn())
			if err == nil {
				td, _ = r.TaskDefinition(nil, family, rev)
			}
			tdCache[t.GetTaskDefinitionArn()] = td
		}
		if td != nil && bindsNodePorts(td) {
			tcp, udp := reservedPorts(taskdef.ApplyOverrides(td, t.GetOverrides()))
			for _, p := range tcp {
				u.ports[fmt.Sprintf("tcp/%d", p)] = true
			}
			for _, p := range udp {
				u.ports[fmt.Sprintf("udp/%d", p)] = true
			}
		}
		if t.GetLastStatus() == lifecycle.Running {
			u.running[t.GetContainerInstanceId()]++
		} else if lifecycle.Rank(t.GetLastStatus()) < lifecycle.Rank(lifecycle.Running) {
			u.pending[t.GetContainerInstanceId()]++
		}
	}
	return u, nil
}

// reservedPorts are the host ports a task takes on its node. Every orch task has its own ENI
// (awsvpc, and orch's default when networkMode is empty), so its ports are on its own address
// and never collide with another task's; only bridge and host mode bind the node's ports.
func reservedPorts(td *orchv1.TaskDefinition) (tcp, udp []int32) {
	if !bindsNodePorts(td) {
		return nil, nil
	}
	return taskdef.HostPorts(td)
}

func bindsNodePorts(td *orchv1.TaskDefinition) bool {
	m := td.GetNetworkMode()
	return m != "" && m != "awsvpc"
}

// instanceView fills what ECS computes: connection, remaining resources and task counts.
func instanceView(r *state.ReadTxn, ci *orchv1.ContainerInstance) *orchv1.ContainerInstance {
	out := proto.Clone(ci).(*orchv1.ContainerInstance)
	h, _ := r.Host(nil, ci.GetHostId())
	u, err := usageByHost(r, ci.GetHostId())
	if h == nil || err != nil {
		return out
	}
	out.AgentConnected = h.GetConnected()
	out.RunningTasksCount = int32(u.running[ci.GetId()])
	out.PendingTasksCount = int32(u.pending[ci.GetId()])
	var tcp, udp []string
	for p := range u.ports {
		if len(p) > 4 && p[:4] == "tcp/" {
			tcp = append(tcp, p[4:])
		} else if len(p) > 4 {
			udp = append(udp, p[4:])
		}
	}
	sort.Strings(tcp)
	sort.Strings(udp)
	out.RemainingResources = []*orchv1.Resource{
		{Name: "CPU", Type: "INTEGER", IntegerValue: h.GetCpu() - int32(u.cpu)},
		{Name: "MEMORY", Type: "INTEGER", IntegerValue: h.GetMemory() - int32(u.mem)},
		{Name: "PORTS", Type: "STRINGSET", StringSetValue: tcp},
		{Name: "PORTS_UDP", Type: "STRINGSET", StringSetValue: udp},
	}
	return out
}

// ListContainerInstances implements orchv1.OrchServer.
func (s *Server) ListContainerInstances(ctx context.Context, req *orchv1.ListContainerInstancesRequest) (*orchv1.ListContainerInstancesResponse, error) {
	r := s.store.Read()
	c, err := activeCluster(r, clusterName(req.GetCluster()))
	if err != nil {
		return nil, err
	}
	instances, err := r.InstancesByCluster(nil, c.GetClusterName())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &orchv1.ListContainerInstancesResponse{}
	for _, ci := range instances {
		if req.GetStatus() != "" && ci.GetStatus() != req.GetStatus() {
			continue
		}
		resp.ContainerInstanceArns = append(resp.ContainerInstanceArns, ci.GetContainerInstanceArn())
	}
	return resp, nil
}

// DescribeContainerInstances implements orchv1.OrchServer; no ids means every instance of the
// cluster.
func (s *Server) DescribeContainerInstances(ctx context.Context, req *orchv1.DescribeContainerInstancesRequest) (*orchv1.DescribeContainerInstancesResponse, error) {
	r := s.store.Read()
	c, err := activeCluster(r, clusterName(req.GetCluster()))
	if err != nil {
		return nil, err
	}
	resp := &orchv1.DescribeContainerInstancesResponse{}
	if len(req.GetContainerInstances()) == 0 {
		instances, err := r.InstancesByCluster(nil, c.GetClusterName())
		if err != nil {
			return nil, toStatus(err)
		}
		for _, ci := range instances {
			resp.ContainerInstances = append(resp.ContainerInstances, instanceView(r, ci))
		}
		return resp, nil
	}
	for _, ref := range req.GetContainerInstances() {
		ci, err := r.Instance(nil, arn.LastSegment(ref))
		if err != nil {
			return nil, toStatus(err)
		}
		if ci == nil || ci.GetCluster() != c.GetClusterName() {
			resp.Failures = append(resp.Failures, &orchv1.Failure{Arn: s.arns.ContainerInstance(c.GetClusterName(), arn.LastSegment(ref)), Reason: "MISSING"})
			continue
		}
		resp.ContainerInstances = append(resp.ContainerInstances, instanceView(r, ci))
	}
	return resp, nil
}
