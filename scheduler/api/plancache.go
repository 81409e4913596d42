package api

import (
	"net/netip"

	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/placement"
	"orch/scheduler/state"
)

// planCache is the planner's picture of the clusters' capacity, kept from one plan to the
// next: per host, what its live tasks reserve; per cluster, a placement.Index of its container
// instances. A host's usage is read again only after a commit changed one of its tasks
// (state.Store.TrackHosts) or a plan that reserved on it was written or refused; a cluster's
// index is rebuilt only when the hosts or instances table changed (registration, connection,
// drain, deregistration). So a plan costs what changed since the previous one, not every
// instance of the cluster.
//
// On top of what the state says, a host carries the reservations that are not in the state
// yet: the current plan's, and the plan in flight's until its entry shows in the snapshot (a
// refused plan's until the planner learns of it). Only the planner (one goroutine at a time,
// plan.go) uses the cache.
type planCache struct {
	store    *state.Store
	changes  *state.HostChanges
	hosts    map[string]*hostEntry
	clusters map[string]*clusterEntry

	current  *plannedBatch // the plan being made
	inflight *plannedBatch // the plan being written, set by the planner; nil when none
	// inflightSeen is whether the current plan's snapshot has the plan in flight's tasks.
	inflightSeen bool
	recompute    []string // hosts of plans that landed: read them again
}

type hostEntry struct {
	u     *hostUsage
	extra []reservation      // not in u: the current plan's and the one in flight's
	nodes map[string]nodeRef // by cluster: the host's instance in each cached cluster
}

type reservation struct {
	instance string
	req      placement.Request
}

// plannedBatch is what one plan reserved.
type plannedBatch struct {
	firstTask string                   // the first task of its entry: seen in a snapshot, all are
	byHost    map[string][]reservation // every pick, whether or not its task was written
	ips       map[string][]netip.Addr  // addresses handed out, by container instance
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
	for _, id := range c.recompute {
		if h, ok := c.hosts[id]; ok {
			stale[id] = h
		}
	}
	c.recompute = c.recompute[:0]
	r := c.store.Read()
	c.current = &plannedBatch{byHost: map[string][]reservation{}, ips: map[string][]netip.Addr{}}
	c.inflightSeen = false
	if c.inflight != nil {
		t, err := r.Task(nil, c.inflight.firstTask)
		if err != nil {
			return nil, err
		}
		c.inflightSeen = t != nil
	}
	for id, h := range stale {
		u, err := usageByHost(r, id)
		if err != nil {
			c.reset()
			return nil, err
		}
		h.u, h.extra = u, c.inflightExtra(id)
		for _, ref := range h.nodes {
			ref.idx.Update(ref.node, func(n *placement.Node) { setUsage(n, h.u, h.extra, ref.subnet) })
		}
	}
	return r, nil
}

// inflightExtra is what the plan in flight reserved on host, unless the snapshot has it.
func (c *planCache) inflightExtra(host string) []reservation {
	if c.inflight == nil || c.inflightSeen {
		return nil
	}
	return append([]reservation(nil), c.inflight.byHost[host]...)
}

// reset forgets everything; the next plan starts from the state (and the plan in flight).
func (c *planCache) reset() {
	c.hosts = map[string]*hostEntry{}
	c.clusters = map[string]*clusterEntry{}
	c.recompute = nil
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
			c.hosts[h.GetId()] = &hostEntry{u: u, extra: c.inflightExtra(h.GetId()), nodes: map[string]nodeRef{}}
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
		setUsage(b.node, h.u, h.extra, b.subnet)
		nodes[i] = b.node
	}
	idx := placement.NewIndex(nodes)
	for _, b := range builds {
		c.hosts[b.node.HostID].nodes[cluster] = nodeRef{idx: idx, node: b.node, subnet: b.subnet}
	}
	c.clusters[cluster] = &clusterEntry{idx: idx, hostsAt: hostsAt, instanceAt: instanceAt}
	return idx, nil
}

// reserved records that the plan placed a task needing req on n, in cluster. The cluster's
// own index charged it already; the host's instances in the other cached clusters share its
// resources.
func (c *planCache) reserved(cluster string, n *placement.Node, req placement.Request) {
	h := c.hosts[n.HostID]
	res := reservation{instance: n.ID, req: req}
	h.extra = append(h.extra, res)
	c.current.byHost[n.HostID] = append(c.current.byHost[n.HostID], res)
	for name, ref := range h.nodes {
		if name != cluster {
			ref.idx.Update(ref.node, func(n *placement.Node) { placement.Reserve(n, req) })
		}
	}
}

// addrs hands out the free addresses of container instance ci's subnet: not those of its live
// tasks in r, nor those of the plan in flight unless r has it.
func (c *planCache) addrs(r *state.ReadTxn, ci *orchv1.ContainerInstance) (*placement.Addrs, error) {
	used, err := liveIPs(r, ci.GetId())
	if err != nil {
		return nil, err
	}
	if c.inflight != nil && !c.inflightSeen {
		for _, ip := range c.inflight.ips[ci.GetId()] {
			used[ip] = true
		}
	}
	return &placement.Addrs{Subnet: ci.GetSubnet(), Used: used}, nil
}

// planned closes the current plan with the tasks it writes and returns it.
func (c *planCache) planned(tasks []*orchv1.Task) *plannedBatch {
	p := c.current
	c.current = nil
	if len(tasks) > 0 {
		p.firstTask = tasks[0].GetId()
	}
	for _, t := range tasks {
		if ip, err := netip.ParseAddr(t.GetEni().GetIp()); err == nil {
			p.ips[t.GetContainerInstanceId()] = append(p.ips[t.GetContainerInstanceId()], ip)
		}
	}
	return p
}

// landed tells the cache that plan p was written or refused: its hosts are read again from
// the next snapshot, which has its tasks or never will.
func (c *planCache) landed(p *plannedBatch) {
	for host := range p.byHost {
		c.recompute = append(c.recompute, host)
	}
}

// setUsage sets what the host's tasks use on n, one of its instances, plus the reservations
// not in the state yet.
func setUsage(n *placement.Node, u *hostUsage, extra []reservation, subnet int) {
	n.UsedCPU, n.UsedMem, n.UsedPorts = u.cpu, u.mem, nil
	if len(u.ports) > 0 {
		n.UsedPorts = make(map[string]bool, len(u.ports))
		for k := range u.ports {
			n.UsedPorts[k] = true
		}
	}
	n.FreeIPs = subnet - u.addresses[n.ID]
	for _, res := range extra {
		placement.Reserve(n, res.req)
		if res.instance == n.ID {
			n.FreeIPs--
		}
	}
}
