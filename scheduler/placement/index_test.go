package placement

import (
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"testing"
)

func cloneNodes(ns []*Node) []*Node {
	out := make([]*Node, len(ns))
	for i, n := range ns {
		c := *n
		if n.UsedPorts != nil {
			c.UsedPorts = map[string]bool{}
			for k, v := range n.UsedPorts {
				c.UsedPorts[k] = v
			}
		}
		out[i] = &c
	}
	return out
}

func ids(ns []*Node) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.ID)
	}
	return strings.Join(s, ",")
}

// Index.Place must pick what Place picks, fail with the same reasons and leave the nodes in
// the same state, request after request.
func TestIndexPlaceMatchesPlace(t *testing.T) {
	tests := []struct {
		name  string
		nodes []*Node
		reqs  []Request
		count int
	}{
		{name: "fixture", nodes: nodes(), reqs: []Request{{CPU: 256, Memory: 512}, {Memory: 100000}, {CPU: 3000, Memory: 10}, {Memory: 2000}}, count: 3},
		{name: "ties go to the lowest id", nodes: []*Node{
			{ID: "c", HostID: "h3", Status: "ACTIVE", Connected: true, CPU: 1024, Memory: 1024, FreeIPs: 9},
			{ID: "a", HostID: "h1", Status: "ACTIVE", Connected: true, CPU: 1024, Memory: 1024, FreeIPs: 9},
			{ID: "b", HostID: "h2", Status: "ACTIVE", Connected: true, CPU: 1024, Memory: 1024, FreeIPs: 9},
		}, reqs: []Request{{Memory: 100}, {Memory: 1000}, {Memory: 100}}, count: 4},
		{name: "addresses run out", nodes: []*Node{
			{ID: "a", HostID: "h1", Status: "ACTIVE", Connected: true, CPU: 4096, Memory: 4096, FreeIPs: 2},
			{ID: "b", HostID: "h2", Status: "ACTIVE", Connected: true, CPU: 4096, Memory: 8192, FreeIPs: 1},
		}, reqs: []Request{{Memory: 10}, {Memory: 10}}, count: 3},
		{name: "cpu short on the fullest", nodes: []*Node{
			{ID: "a", HostID: "h1", Status: "ACTIVE", Connected: true, CPU: 100, Memory: 1024, FreeIPs: 9},
			{ID: "b", HostID: "h2", Status: "ACTIVE", Connected: true, CPU: 4096, Memory: 8192, FreeIPs: 9},
		}, reqs: []Request{{CPU: 200, Memory: 10}}, count: 3},
		{name: "ports", nodes: []*Node{
			{ID: "a", HostID: "h1", Status: "ACTIVE", Connected: true, CPU: 4096, Memory: 1024, FreeIPs: 9, UsedPorts: map[string]bool{"tcp/80": true}},
			{ID: "b", HostID: "h2", Status: "ACTIVE", Connected: true, CPU: 4096, Memory: 8192, FreeIPs: 9},
		}, reqs: []Request{{Memory: 10, TCP: []int32{80}}, {Memory: 10, UDP: []int32{53}}}, count: 2},
		{name: "shared host", nodes: []*Node{
			{ID: "a", HostID: "h", Status: "ACTIVE", Connected: true, CPU: 1024, Memory: 1000, FreeIPs: 250},
			{ID: "b", HostID: "h", Status: "ACTIVE", Connected: true, CPU: 1024, Memory: 1000, FreeIPs: 250},
			{ID: "c", HostID: "h2", Status: "ACTIVE", Connected: true, CPU: 1024, Memory: 2000, FreeIPs: 250},
		}, reqs: []Request{{Memory: 600}, {Memory: 300}}, count: 3},
		{name: "overcommitted node", nodes: []*Node{
			{ID: "a", HostID: "h1", Status: "ACTIVE", Connected: true, CPU: 1024, Memory: 512, UsedMem: 1024, FreeIPs: 9},
			{ID: "b", HostID: "h2", Status: "ACTIVE", Connected: true, CPU: 1024, Memory: 512, FreeIPs: 9},
		}, reqs: []Request{{Memory: 0}, {Memory: 100}}, count: 2},
		{name: "none", nodes: []*Node{
			{ID: "a", HostID: "h1", Status: "DRAINING", Connected: true, CPU: 1024, Memory: 512, FreeIPs: 9},
			{ID: "b", HostID: "h2", Status: "ACTIVE", Connected: false, CPU: 1024, Memory: 512, FreeIPs: 9},
			{ID: "c", HostID: "h3", Status: "ACTIVE", Connected: true, CPU: 1024, Memory: 512, FreeIPs: 0},
		}, reqs: []Request{{Memory: 10}}, count: 1},
		{name: "random", nodes: randomNodes(rand.New(rand.NewSource(1)), 200), reqs: randomRequests(rand.New(rand.NewSource(2)), 300), count: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := cloneNodes(tt.nodes)
			x := NewIndex(cloneNodes(tt.nodes))
			for i, req := range tt.reqs {
				wp, wf := Place(want, req, tt.count)
				gp, gf := x.Place(req, tt.count)
				if ids(gp) != ids(wp) || !reflect.DeepEqual(gf, wf) {
					t.Fatalf("request %d %+v: Index.Place = %s %+v; Place = %s %+v", i, req, ids(gp), gf, ids(wp), wf)
				}
			}
			if !reflect.DeepEqual(x.Nodes(), want) {
				t.Fatalf("nodes differ after placing:\n%s\n%s", dump(x.Nodes()), dump(want))
			}
			checkOrder(t, x)
		})
	}
}

// Update keeps the order whatever changes: usage up or down, a node leaving or rejoining the
// candidates (addresses, status, agent).
func TestIndexUpdate(t *testing.T) {
	tests := []struct {
		name   string
		id     string
		change func(*Node)
		want   string // the eligible nodes in order
	}{
		{name: "more used moves ahead", id: "d", change: func(n *Node) { n.UsedMem = 7000 }, want: "d,a,b,c"},
		{name: "less used moves back", id: "a", change: func(n *Node) { n.UsedMem = 0 }, want: "b,c,a,d"},
		{name: "equal remaining: id order", id: "c", change: func(n *Node) { n.UsedMem = 2000 }, want: "a,b,c,d"},
		{name: "no address leaves", id: "b", change: func(n *Node) { n.FreeIPs = 0 }, want: "a,c,d"},
		{name: "draining leaves", id: "c", change: func(n *Node) { n.Status = "DRAINING" }, want: "a,b,d"},
		{name: "disconnected leaves", id: "a", change: func(n *Node) { n.Connected = false }, want: "b,c,d"},
		{name: "address freed rejoins", id: "e", change: func(n *Node) { n.FreeIPs = 1 }, want: "a,e,b,c,d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := []*Node{
				{ID: "a", HostID: "h1", Status: "ACTIVE", Connected: true, Memory: 8192, UsedMem: 6000, FreeIPs: 5},
				{ID: "b", HostID: "h2", Status: "ACTIVE", Connected: true, Memory: 8192, UsedMem: 4000, FreeIPs: 5},
				{ID: "c", HostID: "h3", Status: "ACTIVE", Connected: true, Memory: 8192, UsedMem: 2192, FreeIPs: 5},
				{ID: "d", HostID: "h4", Status: "ACTIVE", Connected: true, Memory: 8192, FreeIPs: 5},
				{ID: "e", HostID: "h5", Status: "ACTIVE", Connected: true, Memory: 8192, UsedMem: 5000, FreeIPs: 0},
			}
			x := NewIndex(ns)
			for _, n := range ns {
				if n.ID == tt.id {
					x.Update(n, tt.change)
				}
			}
			if got := ids(x.ready); got != tt.want {
				t.Fatalf("order %s, want %s", got, tt.want)
			}
			checkOrder(t, x)
		})
	}
}

func checkOrder(t *testing.T, x *Index) {
	t.Helper()
	n := 0
	for _, m := range x.all {
		if eligible(m) {
			n++
		}
	}
	if n != len(x.ready) {
		t.Fatalf("%d eligible nodes, %d in order", n, len(x.ready))
	}
	for i := 1; i < len(x.ready); i++ {
		if !less(x.ready[i-1], x.ready[i]) {
			t.Fatalf("out of order at %d: %s", i, dump(x.ready))
		}
	}
}

func dump(ns []*Node) string {
	var b strings.Builder
	for _, n := range ns {
		fmt.Fprintf(&b, "%+v\n", *n)
	}
	return b.String()
}

func randomNodes(r *rand.Rand, n int) []*Node {
	statuses := []string{"ACTIVE", "ACTIVE", "ACTIVE", "ACTIVE", "DRAINING"}
	var ns []*Node
	perm := r.Perm(n) // ids are unique, in no particular order
	for i := 0; i < n; i++ {
		mem := 256 * (1 + r.Intn(16))
		ns = append(ns, &Node{
			ID: fmt.Sprintf("n%04d", perm[i]), HostID: fmt.Sprintf("h%d", r.Intn(n*3/4)), Status: statuses[r.Intn(len(statuses))],
			Connected: r.Intn(10) > 0, CPU: 1024 * (1 + r.Intn(4)), Memory: mem, UsedMem: r.Intn(mem), UsedCPU: r.Intn(1024),
			FreeIPs: r.Intn(12),
		})
	}
	return ns
}

func randomRequests(r *rand.Rand, n int) []Request {
	var reqs []Request
	for i := 0; i < n; i++ {
		req := Request{CPU: r.Intn(512), Memory: 8 * (1 + r.Intn(64))}
		if r.Intn(10) == 0 {
			req.TCP = []int32{int32(80 + r.Intn(3))}
		}
		reqs = append(reqs, req)
	}
	return reqs
}
