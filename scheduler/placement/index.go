package placement

import (
	"slices"
	"sort"
)

// Index holds a cluster's candidate nodes in binpack order so that a pick does not visit every
// node. The nodes that pass the filters which do not depend on the request (ACTIVE, agent
// connected, a free address) are kept sorted by remaining memory, then id; the best fit for a
// request is then the first of them, from the first with enough memory on, that passes the
// other filters. Index.Place picks exactly what Place would pick from the same nodes; only
// when nothing fits does it visit every node, to explain why.
//
// Nodes belong to the index once added: change them only through Update, which keeps the
// order. An Index is not safe for concurrent use.
type Index struct {
	all    []*Node
	ready  []*Node // eligible nodes by (RemainingMemory, ID)
	byHost map[string][]*Node
}

// NewIndex indexes nodes.
func NewIndex(nodes []*Node) *Index {
	x := &Index{all: nodes, byHost: make(map[string][]*Node, len(nodes))}
	for _, n := range nodes {
		x.byHost[n.HostID] = append(x.byHost[n.HostID], n)
		if eligible(n) {
			x.ready = append(x.ready, n)
		}
	}
	sort.Slice(x.ready, func(i, j int) bool { return less(x.ready[i], x.ready[j]) })
	return x
}

// Len is how many nodes the index holds, eligible or not.
func (x *Index) Len() int { return len(x.all) }

// Nodes returns every node of the index, in the order given to NewIndex. Do not change them
// but through Update.
func (x *Index) Nodes() []*Node { return x.all }

// Place is Place(x.Nodes(), req, count) without the walk over every node: it picks a node for
// each of count tasks, binpacking on memory, and charges each pick to the node (an address)
// and to every node of its host in the index (its resources).
func (x *Index) Place(req Request, count int) ([]*Node, []Failure) {
	var picks []*Node
	var failures []Failure
	for i := 0; i < count; i++ {
		n := x.best(req)
		if n == nil {
			// Nothing fits: the full walk explains why (and would find a node, were the order
			// ever wrong).
			var fail Failure
			if n, fail = pickOne(x.all, req); n == nil {
				failures = append(failures, fail)
				continue
			}
		}
		picks = append(picks, n)
		x.Update(n, func(n *Node) { n.FreeIPs-- })
		for _, m := range x.byHost[n.HostID] {
			x.Update(m, func(m *Node) { Reserve(m, req) })
		}
	}
	return picks, failures
}

// best returns the feasible node with the least remaining memory (the lowest id among equals),
// or nil.
func (x *Index) best(req Request) *Node {
	i := sort.Search(len(x.ready), func(i int) bool { return x.ready[i].RemainingMemory() >= req.Memory })
	for ; i < len(x.ready); i++ {
		if n := x.ready[i]; feasible(n, req) == "" {
			return n
		}
	}
	return nil
}

// Update applies change to n, a node of the index, and puts n back in order.
func (x *Index) Update(n *Node, change func(*Node)) {
	i, was := x.find(n)
	change(n)
	now := eligible(n)
	switch {
	case was && now:
		x.reorder(i)
	case was:
		x.ready = slices.Delete(x.ready, i, i+1)
	case now:
		j := sort.Search(len(x.ready), func(k int) bool { return !less(x.ready[k], n) })
		x.ready = slices.Insert(x.ready, j, n)
	}
}

// find returns n's position in ready, and whether it is there.
func (x *Index) find(n *Node) (int, bool) {
	i := sort.Search(len(x.ready), func(k int) bool { return !less(x.ready[k], n) })
	return i, i < len(x.ready) && x.ready[i] == n
}

// reorder moves ready[i], whose key changed, to its place; only the nodes in between shift.
func (x *Index) reorder(i int) {
	r := x.ready
	n := r[i]
	switch {
	case i > 0 && less(n, r[i-1]):
		j := sort.Search(i, func(k int) bool { return !less(r[k], n) })
		copy(r[j+1:i+1], r[j:i])
		r[j] = n
	case i+1 < len(r) && less(r[i+1], n):
		k := i + 1 + sort.Search(len(r)-i-1, func(m int) bool { return less(n, r[i+1+m]) })
		copy(r[i:k-1], r[i+1:k])
		r[k-1] = n
	}
}

// eligible reports whether n passes the filters that do not depend on the request.
func eligible(n *Node) bool {
	return n.Status == "ACTIVE" && n.Connected && n.FreeIPs >= 1
}

// less is binpack's order: least remaining memory first, then lowest id.
func less(a, b *Node) bool {
	ra, rb := a.RemainingMemory(), b.RemainingMemory()
	return ra < rb || (ra == rb && a.ID < b.ID)
}
