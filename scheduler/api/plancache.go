package api

import (
	"orch/scheduler/placement"
	"orch/scheduler/state"
)

// planCache is the planner's picture of the clusters' capacity, kept from one plan to the
// next: per host, what its live tasks reserve; per cluster, a placement.Index of its container
// instances. A host's usage is recomputed only after a commit changed one of its tasks
// (state.Store.TrackHosts) or the planner reserved on it; a cluster's index is rebuilt only when
// the hosts or instances table changed (registration, connection, drain, deregistration). So a
// plan costs what changed since the previous one, not every instance of the cluster. Only the
// planner (one goroutine at a time, plan.go) uses it.
type planCache struct {
	store        *state.Store
	changes      *state.HostChanges
	hosts        map[string]*hostEntry
	clusters     map[string]*clusterEntry
	pendingHosts []string // hosts with pending reservations
}

type hostEntry struct {
	u *hostUsage
	// pending is what the current plan reserved on the host, not yet in u; it makes the host
	// stale for the next plan, which reads the outcome from the state, committed or not.
	pending []placement.Request
	nodes   map[string]nodeRef // by cluster: the host's instance in each cached cluster
}

type nodeRef struct {
	idx    *placement.Index
	node   *placement.Node
	subnet int // addresses in the instance's subnet
}

type clusterEntry struct {
	idx                 *placement.Index
	hostsAt, instanceAt uint64 // the tables' indexes the entry was built from
}

func newPlanCache(store *state.Store) *planCache {
	return &planCache{store: store, changes: store.TrackHosts(), hosts: map[string]*hostEntry{}, clusters: map[string]*clusterEntry{}}
}

// begin brings the cached hosts up to date and returns the snapshot to plan against.
func (c *planCache) begin() (*state.ReadTxn, error) {
	// What changed first, then the snapshot: a change in between is in the snapshot and is
	// taken again at the next plan, never missed.
	changed, all := c.changes.Take()
	if all {
		c.reset()
	}
	stale := map[string]*hostEntry{}
	for id := range changed {
		if h, ok := c.hosts[id]; ok {
			stale[id] = h
		}
	}
	for _, id := range c.pendingHosts {
		stale[id] = c.hosts[id]
	}
	c.pendingHosts = c.pendingHosts[:0]
	r := c.store.Read()
	for id, h := range stale {
		u, err := usageByHost(r, id)
		if err != nil {
			c.reset()
			return nil, err
		}
		h.u, h.pending = u, nil
		for _, ref := range h.nodes {
			ref.idx.Update(ref.node, func(n *placement.Node) { setUsage(n, u, nil, ref.subnet) })
		}
	}
	return r, nil
}

// reset forgets everything; the next plan starts from the state.
func (c *planCache) reset() {
	c.hosts, c.pendingHosts = map[string]*hostEntry{}, nil
	c.clusters = map[string]*clusterEntry{}
}

// index returns the cluster's container instances as of r, with what the current plan
// reserved so far.
func (c *planCache) index(r *state.ReadTxn, cluster string) (*placement.Index, error) {
	hostsAt, instanceAt := r.TableIndex(state.TableHosts), r.TableIndex(state.TableInstances)
	if e, ok := c.clusters[cluster]; ok && e.hostsAt == hostsAt && e.instanceAt == instanceAt {
		return e.idx, nil
	}
	if e, ok := c.clusters[cluster]; ok {
		for _, n := range e.idx.Nodes() {
			delete(c.hosts[n.HostID].nodes, cluster)
		}
		delete(c.clusters, cluster)
	}
	instances, err := r.InstancesByCluster(nil, cluster)
	if err != nil {
		return nil, err
	}
	type build struct {
		node   *placement.Node
		subnet int
	}
	var builds []build
	for _, ci := range instances {
		if ci.GetStatus() == "INACTIVE" {
			continue
		}
		h, err := r.Host(nil, ci.GetHostId())
		if err != nil || h == nil {
			continue
		}
		if _, ok := c.hosts[h.GetId()]; !ok {
			// First sight: r is later than the last Take of changes, so it is current.
			u, err := usageByHost(r, h.GetId())
			if err != nil {
				return nil, err
			}
			c.hosts[h.GetId()] = &hostEntry{u: u, nodes: map[string]nodeRef{}}
		}
		builds = append(builds, build{
			node: &placement.Node{
				ID: ci.GetId(), HostID: h.GetId(), Status: ci.GetStatus(), Connected: h.GetConnected(),
				CPU: int(h.GetCpu()), Memory: int(h.GetMemory()),
			},
			subnet: placement.SubnetSize(ci.GetSubnet()),
		})
	}
	nodes := make([]*placement.Node, len(builds))
	for i, b := range builds {
		h := c.hosts[b.node.HostID]
		setUsage(b.node, h.u, h.pending, b.subnet)
		nodes[i] = b.node
	}
	idx := placement.NewIndex(nodes)
	for _, b := range builds {
		c.hosts[b.node.HostID].nodes[cluster] = nodeRef{idx: idx, node: b.node, subnet: b.subnet}
	}
	c.clusters[cluster] = &clusterEntry{idx: idx, hostsAt: hostsAt, instanceAt: instanceAt}
	return idx, nil
}

// reserved records that the plan placed a task needing req on host, in cluster: the host's
// instances in the other cached clusters share its resources. (The cluster's own index charged
// it already.)
func (c *planCache) reserved(cluster, host string, req placement.Request) {
	h := c.hosts[host]
	if len(h.pending) == 0 {
		c.pendingHosts = append(c.pendingHosts, host)
	}
	h.pending = append(h.pending, req)
	for name, ref := range h.nodes {
		if name != cluster {
			ref.idx.Update(ref.node, func(n *placement.Node) { placement.Reserve(n, req) })
		}
	}
}

// setUsage sets what the host's tasks use on n, one of its instances, plus pending
// reservations.
func setUsage(n *placement.Node, u *hostUsage, pending []placement.Request, subnet int) {
	n.UsedCPU, n.UsedMem, n.UsedPorts = u.cpu, u.mem, nil
	if len(u.ports) > 0 {
		n.UsedPorts = make(map[string]bool, len(u.ports))
		for k := range u.ports {
			n.UsedPorts[k] = true
		}
	}
	n.FreeIPs = subnet - u.addresses[n.ID]
	for _, req := range pending {
		placement.Reserve(n, req)
	}
}
