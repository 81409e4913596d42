// Package placement chooses container instances for tasks. It is pure: it reads a description
// of the candidate nodes and returns picks and failures; the leader's apply path writes. Each
// feasibility filter counts its rejections so that a failure explains itself ("0 of 3 container
// instances: memory 2, agent 1") the way swarmkit's Filter.Explain does.
package placement

import (
	"fmt"
	"sort"
	"strings"
)

// ECS failure reasons.
const (
	ReasonCPU    = "RESOURCE:CPU"
	ReasonMemory = "RESOURCE:MEMORY"
	ReasonPorts  = "RESOURCE:PORTS"
	ReasonENI    = "RESOURCE:ENI" // the container instance's subnet has no free address
	ReasonAgent  = "AGENT"
	ReasonStatus = "INACTIVE" // the instance is DRAINING or INACTIVE
)

// Node is one candidate container instance with the resources already used on its host.
type Node struct {
	ID        string // container instance id
	HostID    string
	Status    string // ACTIVE | DRAINING | INACTIVE
	Connected bool
	CPU       int // registered, ECS units
	Memory    int // registered, MiB
	UsedCPU   int
	UsedMem   int
	UsedPorts map[string]bool // "tcp/80"
	// FreeIPs is how many addresses of the instance's subnet are free; each task takes one.
	FreeIPs int
}

// RemainingMemory is the memory not reserved by tasks.
func (n *Node) RemainingMemory() int { return n.Memory - n.UsedMem }

// Request is what one task needs.
type Request struct {
	CPU    int
	Memory int
	TCP    []int32
	UDP    []int32
}

// Failure says why a task could not be placed.
type Failure struct {
	Reason string
	Detail string
}

// filter is one feasibility check; it returns "" when the node fits or the ECS reason.
type filter struct {
	name  string
	check func(n *Node, r Request) string
}

var filters = []filter{
	{"status", func(n *Node, _ Request) string {
		if n.Status != "ACTIVE" {
			return ReasonStatus
		}
		return ""
	}},
	{"agent", func(n *Node, _ Request) string {
		if !n.Connected {
			return ReasonAgent
		}
		return ""
	}},
	{"cpu", func(n *Node, r Request) string {
		if n.CPU-n.UsedCPU < r.CPU {
			return ReasonCPU
		}
		return ""
	}},
	{"memory", func(n *Node, r Request) string {
		if n.Memory-n.UsedMem < r.Memory {
			return ReasonMemory
		}
		return ""
	}},
	{"eni", func(n *Node, _ Request) string {
		if n.FreeIPs < 1 {
			return ReasonENI
		}
		return ""
	}},
	{"ports", func(n *Node, r Request) string {
		for _, p := range r.TCP {
			if n.UsedPorts[fmt.Sprintf("tcp/%d", p)] {
				return ReasonPorts
			}
		}
		for _, p := range r.UDP {
			if n.UsedPorts[fmt.Sprintf("udp/%d", p)] {
				return ReasonPorts
			}
		}
		return ""
	}},
}

// Place picks a node for each of count tasks, binpacking on memory (the node with the least
// remaining memory that still fits goes first, as ECS's binpack:memory), and accounts for each
// pick before the next. Nodes sharing a host share its used resources. It returns the picks (in
// order; len(picks)+len(failures) == count) and one failure per task that fit nowhere.
func Place(nodes []*Node, req Request, count int) ([]*Node, []Failure) {
	var picks []*Node
	var failures []Failure
	for i := 0; i < count; i++ {
		n, fail := pickOne(nodes, req)
		if n == nil {
			failures = append(failures, fail)
			continue
		}
		picks = append(picks, n)
		n.FreeIPs--
		reserve(nodes, n.HostID, req)
	}
	return picks, failures
}

func pickOne(nodes []*Node, req Request) (*Node, Failure) {
	var rejected map[string]int
	var best *Node
	for _, n := range nodes {
		if reason := feasible(n, req); reason != "" {
			if rejected == nil {
				rejected = map[string]int{}
			}
			rejected[reason]++
			continue
		}
		// binpack: the least remaining memory wins; ties go to the lowest id (stable).
		if best == nil || n.RemainingMemory() < best.RemainingMemory() ||
			(n.RemainingMemory() == best.RemainingMemory() && n.ID < best.ID) {
			best = n
		}
	}
	if best == nil {
		return nil, explain(len(nodes), rejected)
	}
	return best, Failure{}
}

func feasible(n *Node, req Request) string {
	for _, f := range filters {
		if reason := f.check(n, req); reason != "" {
			return reason
		}
	}
	return ""
}

// reserve charges req to every node on host (a host's container instances share its resources).
func reserve(nodes []*Node, host string, req Request) {
	for _, n := range nodes {
		if n.HostID == host {
			Reserve(n, req)
		}
	}
}

// Reserve charges one task's resources to a node.
func Reserve(n *Node, req Request) {
	n.UsedCPU += req.CPU
	n.UsedMem += req.Memory
	if len(req.TCP)+len(req.UDP) == 0 {
		return
	}
	if n.UsedPorts == nil {
		n.UsedPorts = map[string]bool{}
	}
	for _, p := range req.TCP {
		n.UsedPorts[fmt.Sprintf("tcp/%d", p)] = true
	}
	for _, p := range req.UDP {
		n.UsedPorts[fmt.Sprintf("udp/%d", p)] = true
	}
}

// explain names the most common rejection as the ECS reason and lists all counts in the detail.
func explain(total int, rejected map[string]int) Failure {
	reasons := make([]string, 0, len(rejected))
	for r := range rejected {
		reasons = append(reasons, r)
	}
	// Most rejections first; ties in filter order, resources before agent and status, since a
	// resource shortage is what a user can act on.
	order := map[string]int{ReasonMemory: 0, ReasonCPU: 1, ReasonPorts: 2, ReasonENI: 3, ReasonAgent: 4, ReasonStatus: 5}
	sort.Slice(reasons, func(i, j int) bool {
		if rejected[reasons[i]] != rejected[reasons[j]] {
			return rejected[reasons[i]] > rejected[reasons[j]]
		}
		return order[reasons[i]] < order[reasons[j]]
	})
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%s %d", label[r], rejected[r])
	}
	return Failure{
		Reason: reasons[0],
		Detail: fmt.Sprintf("0 of %d container instances fit: %s", total, strings.Join(parts, ", ")),
	}
}

var label = map[string]string{
	ReasonCPU: "insufficient cpu", ReasonMemory: "insufficient memory", ReasonPorts: "ports in use",
	ReasonAgent: "agent disconnected", ReasonStatus: "not ACTIVE", ReasonENI: "no free address",
}
